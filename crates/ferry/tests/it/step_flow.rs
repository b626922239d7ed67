//! The step loop in real deployments (`docs/step-flow.md`): every run condition kind, steps
//! started with the previous one overlapping in time (capped by `Octopus.Action.MaxParallelism`),
//! a rolling window of 2 over 5 agents with child steps run as a unit per target (and a child
//! condition on each target's own output), automatic retries and execution timeouts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::agents::{Agent, Mode};
use crate::harness::Server;

async fn put_variables(s: &Server, project: &str, vars: Value) {
    let id = s.get(&format!("/api/Spaces-1/projects/{project}")).await["VariableSetId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = s.get(&format!("/api/Spaces-1/variables/{id}")).await;
    body["Variables"] = vars;
    s.put(&format!("/api/Spaces-1/variables/{id}"), body).await;
}

/// A Bash step on the built-in worker; `extra` is merged into the step and its action.
fn worker_step(name: &str, body: &str, step_extra: Value, action_extra: Value) -> Value {
    let mut action = json!({"Name": name, "ActionType": "Octopus.Script", "Properties": {
        "Octopus.Action.Script.ScriptBody": body,
        "Octopus.Action.Script.Syntax": "Bash",
        "Octopus.Action.RunOnServer": "true"
    }});
    merge(&mut action, action_extra);
    let mut step = json!({"Name": name, "Actions": [action]});
    merge(&mut step, step_extra);
    step
}

fn merge(into: &mut Value, extra: Value) {
    if let Value::Object(m) = extra {
        for (k, v) in m {
            match (into.get_mut(&k), v) {
                (Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
                (_, v) => {
                    into[k] = v;
                }
            }
        }
    }
}

async fn deploy_new(s: &Server, project: &str, env: &str) -> (String, Value, String) {
    s.create_release(project, "1.0.0").await;
    let task = s.deploy(project, "1.0.0", env).await;
    let t = s.wait_task(&task, Duration::from_secs(90)).await;
    let log = s.raw(&format!("/api/tasks/{task}/raw")).await;
    (task, t, log)
}

/// (kind, who, what, nanoseconds) from marker lines "kind who what ns".
fn marks(text: &str) -> Vec<(String, String, String, u128)> {
    text.lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            (p.len() == 4).then(|| {
                (
                    p[0].to_string(),
                    p[1].to_string(),
                    p[2].to_string(),
                    p[3].parse().unwrap(),
                )
            })
        })
        .collect()
}

/// The most intervals open at once.
fn max_overlap(intervals: &[(u128, u128)]) -> usize {
    let mut ev: Vec<(u128, i32)> = intervals
        .iter()
        .flat_map(|(a, b)| [(*a, 1), (*b, -1)])
        .collect();
    // Ends before starts at the same instant.
    ev.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

fn marker_script(file: &str, who: &str, what: &str, sleep: &str) -> String {
    format!(
        "echo \"start {who} {what} $(date +%s%N)\" >> {file}; sleep {sleep}; echo \"end {who} {what} $(date +%s%N)\" >> {file}"
    )
}

/// Environments (only these / skip these), channels, previous succeeded / failed / always,
/// variable expressions true and false.
#[tokio::test]
async fn every_run_condition_kind() {
    let s = Server::start();
    let test = s.create_environment("Test").await["Id"].clone();
    let prod = s.create_environment("Prod").await["Id"].clone();
    let project = s.create_project("Cond").await;
    let beta = s
        .post(
            "/api/Spaces-1/channels",
            json!({"ProjectId": project["Id"], "Name": "Beta"}),
        )
        .await["Id"]
        .clone();
    assert!(beta.is_string(), "{beta}");
    put_variables(&s, "Cond", json!([{"Name": "Flag", "Value": "on"}])).await;
    let steps = json!([
        worker_step(
            "OnlyTest",
            "echo ran-OnlyTest",
            json!({}),
            json!({"Environments": [test]})
        ),
        worker_step(
            "OnlyProd",
            "echo ran-OnlyProd",
            json!({}),
            json!({"Environments": [prod]})
        ),
        worker_step(
            "SkipTest",
            "echo ran-SkipTest",
            json!({}),
            json!({"ExcludedEnvironments": [test]})
        ),
        worker_step(
            "SkipProd",
            "echo ran-SkipProd",
            json!({}),
            json!({"ExcludedEnvironments": [prod]})
        ),
        worker_step(
            "BetaOnly",
            "echo ran-BetaOnly",
            json!({}),
            json!({"Channels": [beta]})
        ),
        worker_step(
            "VarTrue",
            "echo ran-VarTrue",
            json!({"Condition": "Variable", "Properties": {"Octopus.Step.ConditionVariableExpression": "#{if Flag == \"on\"}True#{/if}"}}),
            json!({})
        ),
        worker_step(
            "VarFalse",
            "echo ran-VarFalse",
            json!({"Condition": "Variable", "Properties": {"Octopus.Step.ConditionVariableExpression": "#{if Flag == \"off\"}True#{/if}"}}),
            json!({})
        ),
        worker_step(
            "OnFailureEarly",
            "echo ran-OnFailureEarly",
            json!({"Condition": "Failure"}),
            json!({})
        ),
        worker_step("Breaks", "echo ran-Breaks; exit 3", json!({}), json!({})),
        worker_step(
            "AfterFailure",
            "echo ran-AfterFailure",
            json!({}),
            json!({})
        ),
        worker_step(
            "OnFailure",
            "echo ran-OnFailure \"#{Octopus.Deployment.Error}\"",
            json!({"Condition": "Failure"}),
            json!({})
        ),
        worker_step(
            "Always",
            "echo ran-Always",
            json!({"Condition": "Always"}),
            json!({})
        ),
        worker_step(
            "UnlessError",
            "echo ran-UnlessError",
            json!({"Condition": "Variable", "Properties": {"Octopus.Step.ConditionVariableExpression": "#{unless Octopus.Deployment.Error}True#{/unless}"}}),
            json!({})
        ),
    ]);
    s.put(
        "/api/Spaces-1/projects/Cond/deploymentprocesses",
        json!({ "Steps": steps }),
    )
    .await;
    let (_, t, log) = deploy_new(&s, "Cond", "Test").await;
    assert_eq!(t["State"], "Failed", "{log}");
    let ran = |n: &str| log.contains(&format!("ran-{n}"));
    for n in [
        "OnlyTest",
        "SkipProd",
        "VarTrue",
        "Breaks",
        "OnFailure",
        "Always",
    ] {
        assert!(ran(n), "{n} should have run:\n{log}");
    }
    for n in [
        "OnlyProd",
        "SkipTest",
        "BetaOnly",
        "VarFalse",
        "OnFailureEarly",
        "AfterFailure",
        "UnlessError",
    ] {
        assert!(!ran(n), "{n} should have been skipped:\n{log}");
    }
    assert!(
        log.contains("ran-OnFailure Step 'Breaks' failed: the script returned exit code 3"),
        "{log}"
    );
    assert!(
        log.contains("Skipped because the step's run condition is false"),
        "{log}"
    );
    assert!(
        log.contains("Skipped because this step runs only when a previous step failed"),
        "{log}"
    );
}

/// A run condition that does not parse fails the step, naming the expression and position.
#[tokio::test]
async fn a_condition_that_does_not_parse_fails_the_step() {
    let s = Server::start();
    s.create_environment("Test").await;
    s.create_project("Bad").await;
    s.put(
        "/api/Spaces-1/projects/Bad/deploymentprocesses",
        json!({"Steps": [
            worker_step("Broken", "echo ran-Broken",
                json!({"Condition": "Variable", "Properties": {"Octopus.Step.ConditionVariableExpression": "#{if Flag}True"}}), json!({})),
            worker_step("Later", "echo ran-Later", json!({}), json!({})),
        ]}),
    )
    .await;
    let (_, t, log) = deploy_new(&s, "Bad", "Test").await;
    assert_eq!(t["State"], "Failed", "{log}");
    let err = t["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        err.contains(
            "Step 'Broken' failed: the run condition of step 'Broken' does not parse: `#{if Flag}True` at line 1, column"
        ),
        "{err}"
    );
    assert!(
        !log.contains("ran-Broken") && !log.contains("ran-Later"),
        "{log}"
    );
}

/// Steps started with the previous one run at the same time, at most
/// `Octopus.Action.MaxParallelism` at once; the next sequential step waits for the whole group
/// and sees a failure in it.
#[tokio::test]
async fn parallel_steps_overlap_and_later_steps_see_their_failure() {
    let s = Server::start();
    s.create_environment("Test").await;
    s.create_project("Par").await;
    put_variables(
        &s,
        "Par",
        json!([{"Name": "Octopus.Action.MaxParallelism", "Value": "2"}]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("marks").display().to_string();
    let with = json!({"StartTrigger": "StartWithPrevious"});
    s.put(
        "/api/Spaces-1/projects/Par/deploymentprocesses",
        json!({"Steps": [
            worker_step("A", &marker_script(&f, "A", "x", "1"), json!({}), json!({})),
            worker_step("B", &marker_script(&f, "B", "x", "1"), with.clone(), json!({})),
            worker_step("C", &format!("{}; exit 4", marker_script(&f, "C", "x", "1")), with.clone(), json!({})),
            worker_step("D", &marker_script(&f, "D", "x", "0.1"), json!({}), json!({})),
            worker_step("E", &marker_script(&f, "E", "x", "0.1"), json!({"Condition": "Failure"}), json!({})),
        ]}),
    )
    .await;
    let (_, t, log) = deploy_new(&s, "Par", "Test").await;
    assert_eq!(t["State"], "Failed", "{log}");
    let text = std::fs::read_to_string(&f).unwrap();
    let m = marks(&text);
    let span = |who: &str| {
        let st = m.iter().find(|x| x.0 == "start" && x.1 == who).map(|x| x.3);
        let en = m.iter().find(|x| x.0 == "end" && x.1 == who).map(|x| x.3);
        (st, en)
    };
    let (a, b, c) = (span("A"), span("B"), span("C"));
    let spans: Vec<(u128, u128)> = [a, b, c]
        .iter()
        .map(|(s, e)| (s.unwrap(), e.unwrap()))
        .collect();
    // Two of the three ran together, never three.
    assert_eq!(max_overlap(&spans), 2, "{text}");
    // D (after a failed group) was skipped; E (on failure) started after the group ended.
    assert_eq!(span("D"), (None, None), "{text}");
    let group_end = spans.iter().map(|x| x.1).max().unwrap();
    assert!(span("E").0.unwrap() >= group_end, "{text}");
    let err = t["ErrorMessage"].as_str().unwrap_or_default();
    assert!(err.contains("Step 'C' failed"), "{err}");
}

/// A rolling step with three child steps over five targets, window 2: each target runs the
/// children in order as a unit, never more than two targets at once, the next target starting
/// as soon as one finishes; the third child runs only where the first child's output for that
/// machine says so.
#[tokio::test]
async fn rolling_window_of_two_runs_child_steps_as_a_unit_per_target() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut agents: Vec<Agent> = (0..5)
        .map(|i| Agent::register(&s, &format!("r{i}"), "Test", &["web"], Mode::ListenLoopback))
        .collect();
    for a in &mut agents {
        a.start();
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("marks").display().to_string();
    let child = |name: &str, body: String, extra: Value| {
        let mut a = json!({"Name": name, "ActionType": "Octopus.Script", "Properties": {
            "Octopus.Action.Script.ScriptBody": body, "Octopus.Action.Script.Syntax": "Bash"}});
        merge(&mut a, extra);
        a
    };
    let first = format!(
        "{}; case #{{Octopus.Machine.Name}} in r0|r2|r4) set_octopusvariable Smoke True;; *) set_octopusvariable Smoke False;; esac",
        marker_script(&f, "#{Octopus.Machine.Name}", "c1", "0.3")
    );
    s.create_project("Roll").await;
    s.put(
        "/api/Spaces-1/projects/Roll/deploymentprocesses",
        json!({"Steps": [{"Name": "Rolling", "Properties": {"Octopus.Action.TargetRoles": "web", "Octopus.Action.MaxParallelism": "2"},
            "Actions": [
                child("Drain", first, json!({})),
                child("Deploy", marker_script(&f, "#{Octopus.Machine.Name}", "c2", "0.3"), json!({})),
                child("Smoke", marker_script(&f, "#{Octopus.Machine.Name}", "c3", "0.1"), json!({
                    "Condition": "Variable",
                    "Properties": {"Octopus.Action.ConditionVariableExpression":
                        "#{if Octopus.Action[Drain].Output[#{Octopus.Machine.Name}].Smoke == \"True\"}True#{/if}"}})),
            ]},
            // A later step whose own condition names each machine's output.
            {"Name": "After", "Condition": "Variable", "Properties": {"Octopus.Action.TargetRoles": "web",
                "Octopus.Step.ConditionVariableExpression":
                    "#{if Octopus.Action[Drain].Output[#{Octopus.Machine.Name}].Smoke == \"True\"}True#{/if}"},
             "Actions": [child("After", "echo after-on-#{Octopus.Machine.Name}".to_string(), json!({}))]}]}),
    )
    .await;
    let (_, t, log) = deploy_new(&s, "Roll", "Test").await;
    assert_eq!(t["State"], "Success", "{log}");
    let text = std::fs::read_to_string(&f).unwrap();
    let m = marks(&text);
    let mut per: BTreeMap<String, Vec<(String, String, u128)>> = BTreeMap::new();
    for (kind, who, what, ns) in &m {
        per.entry(who.clone())
            .or_default()
            .push((kind.clone(), what.clone(), *ns));
    }
    assert_eq!(per.len(), 5, "{text}");
    let mut spans = Vec::new();
    for (who, evs) in &per {
        let seq: Vec<String> = evs.iter().map(|e| format!("{} {}", e.0, e.1)).collect();
        let mut want = vec!["start c1", "end c1", "start c2", "end c2"];
        if ["r0", "r2", "r4"].contains(&who.as_str()) {
            want.extend(["start c3", "end c3"]);
        }
        assert_eq!(seq, want, "{who}:\n{text}");
        spans.push((evs.first().unwrap().2, evs.last().unwrap().2));
    }
    assert_eq!(max_overlap(&spans), 2, "{text}");
    assert!(
        log.contains("Skipped on r1 because the step's run condition is false"),
        "{log}"
    );
    for (who, runs) in [
        ("r0", true),
        ("r1", false),
        ("r2", true),
        ("r3", false),
        ("r4", true),
    ] {
        assert_eq!(
            log.contains(&format!("after-on-{who}")),
            runs,
            "{who}:\n{log}"
        );
    }
    assert!(
        log.contains("Skipped on r3 because the step's run condition is false for this target"),
        "{log}"
    );
}

/// Automatic retries: a script that fails until its counter reaches 3 succeeds on the third
/// attempt, each retry logged with its delay.
#[tokio::test]
async fn retries_succeed_on_the_third_attempt() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut a = Agent::register(&s, "t1", "Test", &["web"], Mode::ListenLoopback);
    a.start();
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter").display().to_string();
    s.create_project("Retry").await;
    s.put(
        "/api/Spaces-1/projects/Retry/deploymentprocesses",
        json!({"Steps": [{"Name": "Flaky", "Properties": {"Octopus.Action.TargetRoles": "web"},
            "Actions": [{"Name": "Flaky", "ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": format!(
                    "n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo \"attempt-$n\"; [ $n -ge 3 ]"),
                "Octopus.Action.Script.Syntax": "Bash",
                "Octopus.Action.AutoRetry.MaximumCount": "2",
                "Octopus.Action.AutoRetry.MinimumBackoff": "1"}}]}]}),
    )
    .await;
    let started = Instant::now();
    let (_, t, log) = deploy_new(&s, "Retry", "Test").await;
    assert_eq!(t["State"], "Success", "{log}");
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(
        log.contains("Flaky failed on t1: the script returned exit code 1. Attempt 2 of 3 in 1s"),
        "{log}"
    );
    assert!(log.contains("Attempt 3 of 3 in 1s"), "{log}");
    assert!(log.contains("attempt-3"), "{log}");
    assert_eq!(a.scripts_started(), 3);
}

/// An execution timeout cancels the script on the target (its whole process group) and fails
/// the step saying so.
#[tokio::test]
async fn a_timeout_cancels_the_script_and_fails_the_step() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut a = Agent::register(&s, "t1", "Test", &["web"], Mode::ListenLoopback);
    a.start();
    let marker = a.dir.join("survived");
    s.create_project("Slow").await;
    s.put(
        "/api/Spaces-1/projects/Slow/deploymentprocesses",
        json!({"Steps": [{"Name": "Slow", "Properties": {"Octopus.Action.TargetRoles": "web"},
            "Actions": [{"Name": "Slow", "ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": format!(
                    "echo slow-started; (sleep 6; touch {}) & sleep 60", marker.display()),
                "Octopus.Action.Script.Syntax": "Bash",
                "Octopus.Action.ExecutionTimeout.Minutes": "0.05"}}]},
            worker_step("Next", "echo ran-Next", json!({}), json!({}))]}),
    )
    .await;
    let started = Instant::now();
    let (_, t, log) = deploy_new(&s, "Slow", "Test").await;
    assert!(started.elapsed() < Duration::from_secs(30), "{log}");
    assert_eq!(t["State"], "Failed", "{log}");
    let err = t["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        err.contains("t1: the step 'Slow' timed out after 0.05 minutes"),
        "{err}"
    );
    assert!(log.contains("timed out after 0.05 minutes"), "{log}");
    assert!(
        log.contains("slow-started") && !log.contains("ran-Next"),
        "{log}"
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        !marker.exists(),
        "the script's background child survived the timeout"
    );
}

/// Child steps after a failing child on a target: `Success` and `Variable` children are
/// skipped there, `Always` and `Failure` children run (e.g. re-adding the target to a load
/// balancer).
#[tokio::test]
async fn child_steps_after_a_failure_on_a_target() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut a = Agent::register(&s, "k1", "Test", &["web"], Mode::ListenLoopback);
    a.start();
    let child = |name: &str, body: &str, condition: &str| {
        json!({"Name": name, "ActionType": "Octopus.Script", "Condition": condition, "Properties": {
            "Octopus.Action.Script.ScriptBody": body, "Octopus.Action.Script.Syntax": "Bash",
            "Octopus.Action.ConditionVariableExpression": "True"}})
    };
    s.create_project("Kids").await;
    s.put(
        "/api/Spaces-1/projects/Kids/deploymentprocesses",
        json!({"Steps": [{"Name": "Unit", "Properties": {"Octopus.Action.TargetRoles": "web"},
        "Actions": [
            child("First", "echo ran-First", "Success"),
            child("Break", "echo ran-Break; exit 5", "Success"),
            child("AfterBreak", "echo ran-AfterBreak", "Success"),
            child("VarAfterBreak", "echo ran-VarAfterBreak", "Variable"),
            child("Cleanup", "echo ran-Cleanup", "Always"),
            child("OnFail", "echo ran-OnFail", "Failure"),
        ]}]}),
    )
    .await;
    let (_, t, log) = deploy_new(&s, "Kids", "Test").await;
    assert_eq!(t["State"], "Failed", "{log}");
    for n in ["First", "Break", "Cleanup", "OnFail"] {
        assert!(log.contains(&format!("ran-{n}")), "{n}:\n{log}");
    }
    for n in ["AfterBreak", "VarAfterBreak"] {
        assert!(!log.contains(&format!("ran-{n}")), "{n}:\n{log}");
    }
    assert!(
        log.contains("Skipped on k1 because a previous step failed on this target"),
        "{log}"
    );
    let err = t["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        err.contains("Step 'Unit' failed: the script returned exit code 5"),
        "{err}"
    );
}
