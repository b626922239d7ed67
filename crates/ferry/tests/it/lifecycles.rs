//! Lifecycles and deployment options through the real binary: a release cannot skip a phase
//! (the refusal names the phase), automatic deployment on entering a phase (on creation and
//! after a success), optional phases, "at least 1 of 2", two promotions at once, scheduled
//! deployments that start on time, and specific-target / excluded-target / skip-step
//! deployments on real agents.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::agents::{Agent, Mode};
use crate::harness::Server;

fn id(v: &Value) -> String {
    v["Id"].as_str().unwrap_or_default().to_string()
}

fn all_errors(v: &Value) -> String {
    let mut s = v["ErrorMessage"].as_str().unwrap_or_default().to_string();
    for e in v["Errors"].as_array().into_iter().flatten() {
        s.push_str(" | ");
        s.push_str(e.as_str().unwrap_or_default());
    }
    s
}

async fn deploy(s: &Server, project: &str, version: &str, envs: &[&str]) -> (StatusCode, Value) {
    s.request(
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(json!({"ProjectName": project, "ReleaseVersion": version, "EnvironmentNames": envs})),
    )
    .await
}

fn task_ids(v: &Value) -> Vec<String> {
    v["DeploymentServerTasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["ServerTaskId"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Deployments of a release, as (environment id, task id), oldest first.
async fn deployments_of(s: &Server, release_id: &str) -> Vec<(String, String)> {
    let v = s
        .get(&format!(
            "/api/Spaces-1/releases/{release_id}/deployments?take=100"
        ))
        .await;
    let mut out: Vec<(String, String)> = v["Items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["EnvironmentId"].as_str().unwrap_or_default().to_string(),
                d["TaskId"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.reverse();
    out.sort_by_key(|(_, t)| {
        t.trim_start_matches("ServerTasks-")
            .parse::<u64>()
            .unwrap_or(0)
    });
    out
}

/// Waits until the release has a deployment to `env` and returns its task id.
async fn wait_deployment_to(s: &Server, release_id: &str, env: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((_, t)) = deployments_of(s, release_id)
            .await
            .into_iter()
            .find(|(e, _)| e == env)
        {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no deployment of {release_id} to {env} appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn use_lifecycle(s: &Server, project: &str, phases: Value) -> String {
    let (st, lc) = s
        .request(
            "POST",
            "/api/Spaces-1/lifecycles",
            Some(json!({"Name": format!("{project} lifecycle"), "Phases": phases})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{lc}");
    let mut p = s.get(&format!("/api/Spaces-1/projects/{project}")).await;
    p["LifecycleId"] = lc["Id"].clone();
    let pid = id(&p);
    s.put(&format!("/api/Spaces-1/projects/{pid}"), p).await;
    id(&lc)
}

#[tokio::test]
async fn a_release_cannot_skip_a_phase_and_says_which() {
    let s = Server::start();
    let dev = id(&s.create_environment("Development").await);
    let test = id(&s.create_environment("Test").await);
    s.create_environment("Production").await;
    s.create_project("Shop").await;
    s.set_scripts("Shop", &[("Hello", "echo hi")]).await;
    let r = s.create_release("Shop", "1.0.0").await;
    let rid = r["ReleaseId"].as_str().unwrap().to_string();
    // The Default Lifecycle follows environment order: Production before Development is
    // refused, naming the phase to complete.
    let (st, v) = deploy(&s, "Shop", "1.0.0", &["Production"]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let e = all_errors(&v);
    assert!(
        e.contains("'Development' must be completed") && e.contains("Production"),
        "{e}"
    );
    let t = task_ids(&deploy(&s, "Shop", "1.0.0", &["Development"]).await.1);
    assert_eq!(
        s.wait_task(&t[0], Duration::from_secs(30)).await["State"],
        "Success"
    );
    // Test is next; Production still cannot skip it.
    let (st, v) = deploy(&s, "Shop", "1.0.0", &["Production"]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let e = all_errors(&v);
    assert!(
        e.contains("'Test' must be completed") && e.contains("still to deploy successfully: Test"),
        "{e}"
    );
    // Several environments at once: refused as a whole, nothing queued.
    let before = deployments_of(&s, &rid).await.len();
    let (st, _) = deploy(&s, "Shop", "1.0.0", &["Test", "Production"]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(deployments_of(&s, &rid).await.len(), before);
    // The progression shows what is next.
    let prog = s
        .get(&format!("/api/Spaces-1/releases/{rid}/progression"))
        .await;
    assert_eq!(prog["NextDeployments"], json!([dev, test]), "{prog}");
    // The deployment template offers the same, and says the project has not changed since.
    let tpl = s
        .get(&format!(
            "/api/Spaces-1/releases/{rid}/deployments/template"
        ))
        .await;
    let offered: Vec<&str> = tpl["PromoteTo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, vec!["Development", "Test"], "{tpl}");
    assert_eq!(tpl["IsDeploymentProcessModified"], false, "{tpl}");
    assert_eq!(tpl["IsVariableSetModified"], false, "{tpl}");
    s.set_scripts("Shop", &[("Hello", "echo changed")]).await;
    let tpl = s
        .get(&format!(
            "/api/Spaces-1/releases/{rid}/deployments/template"
        ))
        .await;
    assert_eq!(tpl["IsDeploymentProcessModified"], true, "{tpl}");

    // A lifecycle cannot put one environment in two phases.
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/lifecycles",
            Some(json!({"Name": "Twice", "Phases": [
                {"Name": "A", "OptionalDeploymentTargets": [dev]},
                {"Name": "B", "AutomaticDeploymentTargets": [dev]}]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(all_errors(&v).contains("phase 'A' and phase 'B'"), "{v}");
}

#[tokio::test]
async fn entering_a_phase_deploys_to_its_automatic_environments() {
    let s = Server::start();
    let dev = id(&s.create_environment("Development").await);
    let test = id(&s.create_environment("Test").await);
    let prod = id(&s.create_environment("Production").await);
    s.create_project("Auto").await;
    s.set_scripts(
        "Auto",
        &[("Hello", "echo auto #{Octopus.Environment.Name}")],
    )
    .await;
    use_lifecycle(
        &s,
        "Auto",
        json!([
            {"Name": "Dev", "AutomaticDeploymentTargets": [dev]},
            {"Name": "Test", "AutomaticDeploymentTargets": [test]},
            {"Name": "Prod", "OptionalDeploymentTargets": [prod]}
        ]),
    )
    .await;
    // Creating the release enters the first phase: Development is deployed automatically, and
    // the executions API says so.
    let r = s.create_release("Auto", "1.0.0").await;
    assert_eq!(
        r["AutomaticallyDeployedEnvironments"],
        json!(["Development"]),
        "{r}"
    );
    let rid = r["ReleaseId"].as_str().unwrap().to_string();
    let t_dev = wait_deployment_to(&s, &rid, &dev).await;
    assert_eq!(
        s.wait_task(&t_dev, Duration::from_secs(30)).await["State"],
        "Success"
    );
    // Its success completes the Dev phase: Test follows by itself; Production is manual.
    let t_test = wait_deployment_to(&s, &rid, &test).await;
    assert_eq!(
        s.wait_task(&t_test, Duration::from_secs(30)).await["State"],
        "Success"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deps = deployments_of(&s, &rid).await;
    assert_eq!(deps.len(), 2, "{deps:?}");
    assert!(!deps.iter().any(|(e, _)| e == &prod), "{deps:?}");
    // The automatic deployment is recorded as made by the system, with a comment.
    let d = s
        .get(&format!("/api/Spaces-1/releases/{rid}/deployments"))
        .await;
    let auto_dep = d["Items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["EnvironmentId"] == json!(test))
        .unwrap()
        .clone();
    assert_eq!(auto_dep["DeployedBy"], "system", "{auto_dep}");
    assert!(
        auto_dep["Comments"]
            .as_str()
            .unwrap_or_default()
            .contains("Automatic deployment"),
        "{auto_dep}"
    );

    // A failed automatic deployment does not promote and is not retried.
    s.set_scripts("Auto", &[("Hello", "exit 3")]).await;
    let r2 = s.create_release("Auto", "1.0.1").await;
    let rid2 = r2["ReleaseId"].as_str().unwrap().to_string();
    let t = wait_deployment_to(&s, &rid2, &dev).await;
    assert_eq!(
        s.wait_task(&t, Duration::from_secs(30)).await["State"],
        "Failed"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(deployments_of(&s, &rid2).await.len(), 1);

    // The project overview: newest release first, each with its latest deployment per
    // environment and where it can go next.
    let prog = s.get("/api/Spaces-1/projects/Auto/progression").await;
    let envs: Vec<&str> = prog["Environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(envs, vec!["Development", "Test", "Production"], "{prog}");
    let rels = prog["Releases"].as_array().unwrap();
    assert_eq!(rels[0]["Release"]["Version"], "1.0.1", "{prog}");
    assert_eq!(rels[0]["Deployments"][&dev][0]["State"], "Failed", "{prog}");
    assert_eq!(rels[1]["Release"]["Version"], "1.0.0", "{prog}");
    assert_eq!(
        rels[1]["Deployments"][&dev][0]["State"], "Success",
        "{prog}"
    );
    assert_eq!(
        rels[1]["Deployments"][&test][0]["State"], "Success",
        "{prog}"
    );
    assert!(
        rels[1]["NextDeployments"]
            .as_array()
            .unwrap()
            .contains(&json!(prod)),
        "{prog}"
    );
    let (st, _) = s
        .request(
            "GET",
            "/api/Spaces-1/projects/Auto/progression?releaseHistoryCount=0",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn optional_and_at_least_one_of_two_phases() {
    let s = Server::start();
    let dev = id(&s.create_environment("Development").await);
    let qa1 = id(&s.create_environment("QA1").await);
    let qa2 = id(&s.create_environment("QA2").await);
    let prod = id(&s.create_environment("Production").await);
    s.create_project("Phased").await;
    s.set_scripts("Phased", &[("Hello", "echo hi")]).await;
    use_lifecycle(
        &s,
        "Phased",
        json!([
            {"Name": "Dev", "OptionalDeploymentTargets": [dev], "IsOptionalPhase": true},
            {"Name": "QA", "OptionalDeploymentTargets": [qa1, qa2], "MinimumEnvironmentsBeforePromotion": 1},
            {"Name": "Prod", "OptionalDeploymentTargets": [prod]}
        ]),
    )
    .await;
    s.create_release("Phased", "1.0.0").await;
    // The optional Dev phase can be skipped: QA2 first.
    let (st, v) = deploy(&s, "Phased", "1.0.0", &["QA2"]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Production must wait for at least one QA environment.
    let (st, v) = deploy(&s, "Phased", "1.0.0", &["Production"]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let e = all_errors(&v);
    assert!(e.contains("'QA' must be completed"), "{e}");
    let t = task_ids(&v);
    assert!(t.is_empty());
    let (_, v) = deploy(&s, "Phased", "1.0.0", &["QA2"]).await;
    let t = task_ids(&v);
    assert_eq!(
        s.wait_task(&t[0], Duration::from_secs(30)).await["State"],
        "Success"
    );
    // One of the two is enough.
    let (st, v) = deploy(&s, "Phased", "1.0.0", &["Production"]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t = task_ids(&v);
    assert_eq!(
        s.wait_task(&t[0], Duration::from_secs(30)).await["State"],
        "Success"
    );
}

#[tokio::test]
async fn two_users_promoting_at_once_get_one_deployment_each() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_environment("Test").await;
    s.create_project("Race").await;
    s.set_scripts("Race", &[("Hello", "echo hi")]).await;
    let r = s.create_release("Race", "1.0.0").await;
    let rid = r["ReleaseId"].as_str().unwrap().to_string();
    let t = task_ids(&deploy(&s, "Race", "1.0.0", &["Development"]).await.1);
    s.wait_task(&t[0], Duration::from_secs(30)).await;
    let (a, b) = tokio::join!(
        deploy(&s, "Race", "1.0.0", &["Test"]),
        deploy(&s, "Race", "1.0.0", &["Test"])
    );
    assert_eq!(
        (a.0, b.0),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        a.1,
        b.1
    );
    let (ta, tb) = (task_ids(&a.1), task_ids(&b.1));
    assert_ne!(ta, tb);
    for t in ta.iter().chain(tb.iter()) {
        assert_eq!(
            s.wait_task(t, Duration::from_secs(30)).await["State"],
            "Success"
        );
    }
    assert_eq!(deployments_of(&s, &rid).await.len(), 3);
}

#[tokio::test]
async fn a_scheduled_deployment_starts_on_time() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Later").await;
    s.set_scripts("Later", &[("Hello", "echo later")]).await;
    s.create_release("Later", "1.0.0").await;
    let run_at = Utc::now() + chrono::Duration::seconds(3);
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Later", "ReleaseVersion": "1.0.0",
                "EnvironmentNames": ["Development"],
                "RunAt": run_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                "NoRunAfter": (run_at + chrono::Duration::minutes(5)).to_rfc3339_opts(SecondsFormat::Millis, true)})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t = task_ids(&v)[0].clone();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(s.get(&format!("/api/tasks/{t}")).await["State"], "Queued");
    let done = s.wait_task(&t, Duration::from_secs(30)).await;
    assert_eq!(done["State"], "Success", "{done}");
    let started = chrono::DateTime::parse_from_rfc3339(done["StartTime"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    assert!(
        started >= run_at - chrono::Duration::milliseconds(1),
        "{started} < {run_at}"
    );
    assert!(
        started < run_at + chrono::Duration::seconds(5),
        "{started} late for {run_at}"
    );
    // NoRunAfter must be later than RunAt.
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Later", "ReleaseVersion": "1.0.0",
                "EnvironmentNames": ["Development"],
                "RunAt": "2030-01-01T10:00:00Z", "NoRunAfter": "2030-01-01T09:00:00Z"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(all_errors(&v).contains("NoRunAfter"), "{v}");
}

#[tokio::test]
async fn specific_excluded_targets_and_skipped_steps() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| {
            Agent::register(
                &s,
                &format!("web{i}"),
                "Test",
                &["web"],
                Mode::ListenLoopback,
            )
        })
        .collect();
    for a in &mut agents {
        a.start();
    }
    s.create_project("Pick").await;
    s.put(
        "/api/Spaces-1/projects/Pick/deploymentprocesses",
        json!({"Steps": [
            {"Name": "On targets", "Properties": {"Octopus.Action.TargetRoles": "web"},
             "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"ran on #{Octopus.Machine.Name}\"",
                "Octopus.Action.Script.Syntax": "Bash"}}]},
            {"Name": "Optional", "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo optional-ran",
                "Octopus.Action.Script.Syntax": "Bash", "Octopus.Action.RunOnServer": "true"}}]},
            {"Name": "Required", "Actions": [{"ActionType": "Octopus.Script", "IsRequired": true, "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo required-ran",
                "Octopus.Action.Script.Syntax": "Bash", "Octopus.Action.RunOnServer": "true"}}]}
        ]}),
    )
    .await;
    s.create_release("Pick", "1.0.0").await;
    let log = |t: String| {
        let s = &s;
        async move {
            let done = s.wait_task(&t, Duration::from_secs(60)).await;
            assert_eq!(done["State"], "Success", "{done}");
            s.raw(&format!("/api/tasks/{t}/raw")).await
        }
    };
    // Only web1, and the Optional step skipped.
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Pick", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"],
                "SpecificMachineNames": ["web1"], "SkipStepNames": ["Optional"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let l = log(task_ids(&v)[0].clone()).await;
    assert!(l.contains("ran on web1"), "{l}");
    assert!(
        !l.contains("ran on web0") && !l.contains("ran on web2"),
        "{l}"
    );
    assert!(
        !l.contains("optional-ran") && l.contains("required-ran"),
        "{l}"
    );
    // Everything except web0.
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Pick", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"],
                "ExcludedMachineNames": ["web0"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let l = log(task_ids(&v)[0].clone()).await;
    assert!(
        l.contains("ran on web1") && l.contains("ran on web2"),
        "{l}"
    );
    assert!(
        !l.contains("ran on web0") && l.contains("optional-ran"),
        "{l}"
    );
    // Unknown machines and steps are named; a required step cannot be skipped.
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Pick", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"],
                "SpecificMachineNames": ["nope"]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(all_errors(&v).contains("nope"), "{v}");
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Pick", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"],
                "SkipStepNames": ["Required"]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(all_errors(&v).contains("Required"), "{v}");
}

#[tokio::test]
async fn release_retention_keeps_the_newest_and_what_is_deployed() {
    let s = Server::start();
    let dev = id(&s.create_environment("Development").await);
    s.create_project("Kept").await;
    s.set_scripts("Kept", &[("Hello", "echo hi")]).await;
    let (st, lc) = s
        .request(
            "POST",
            "/api/Spaces-1/lifecycles",
            Some(json!({"Name": "Short", "Phases": [{"Name": "Dev", "OptionalDeploymentTargets": [dev]}],
                "ReleaseRetentionPolicy": {"Unit": "Items", "QuantityToKeep": 2, "ShouldKeepForever": false}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{lc}");
    let mut p = s.get("/api/Spaces-1/projects/Kept").await;
    p["LifecycleId"] = lc["Id"].clone();
    s.put(&format!("/api/Spaces-1/projects/{}", id(&p)), p)
        .await;
    let mut ids = Vec::new();
    for v in ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4"] {
        ids.push(
            s.create_release("Kept", v).await["ReleaseId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for v in ["1.0.0", "1.0.1"] {
        let t = task_ids(&deploy(&s, "Kept", v, &["Development"]).await.1);
        assert_eq!(
            s.wait_task(&t[0], Duration::from_secs(30)).await["State"],
            "Success"
        );
    }
    // Keep 2: 1.0.4 and 1.0.3 are the newest; 1.0.1 is deployed (current) and 1.0.0 is the
    // rollback target before it, so only 1.0.2 goes.
    let dry = s
        .post("/api/Spaces-1/retention/releases?dryRun=true", json!({}))
        .await;
    let versions = |v: &Value| -> Vec<String> {
        v["Releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Version"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(versions(&dry), vec!["1.0.2"], "{dry}");
    assert!(s.get(&format!("/api/Spaces-1/releases/{}", ids[2])).await["Id"].is_string());
    let done = s.post("/api/Spaces-1/retention/releases", json!({})).await;
    assert_eq!(versions(&done), vec!["1.0.2"], "{done}");
    let (st, _) = s
        .request("GET", &format!("/api/Spaces-1/releases/{}", ids[2]), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for i in [0, 1, 3, 4] {
        let (st, _) = s
            .request("GET", &format!("/api/Spaces-1/releases/{}", ids[i]), None)
            .await;
        assert_eq!(st, StatusCode::OK, "release {i}");
    }
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/retention/releases?dryRun=maybe",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // Deleting a release takes its deployments and tasks with it.
    let deps = deployments_of(&s, &ids[0]).await;
    assert_eq!(deps.len(), 1);
    let (st, v) = s
        .request(
            "DELETE",
            &format!("/api/Spaces-1/releases/{}", ids[0]),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s
        .request("GET", &format!("/api/tasks/{}", deps[0].1), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let all = s.get("/api/Spaces-1/deployments?take=100").await;
    assert_eq!(all["TotalResults"], 1, "{all}");

    // Deleting the project takes its remaining deployments' tasks and dashboard cells too.
    let last_task = all["Items"][0]["TaskId"].as_str().unwrap().to_string();
    let dash = s.get("/api/Spaces-1/dashboard").await;
    assert_eq!(dash["Items"].as_array().unwrap().len(), 1, "{dash}");
    let (st, v) = s
        .request("DELETE", "/api/Spaces-1/projects/Kept", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s
        .request("GET", &format!("/api/tasks/{last_task}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let dash = s.get("/api/Spaces-1/dashboard").await;
    assert_eq!(dash["Items"], json!([]), "{dash}");
}

#[tokio::test]
async fn a_restarted_server_catches_up_on_automatic_deployments() {
    let mut s = Server::start();
    let dev = id(&s.create_environment("Development").await);
    let test = id(&s.create_environment("Test").await);
    s.create_project("Late").await;
    s.set_scripts("Late", &[("Hello", "echo hi")]).await;
    let lc = use_lifecycle(
        &s,
        "Late",
        json!([
            {"Name": "Dev", "OptionalDeploymentTargets": [dev]},
            {"Name": "Test", "OptionalDeploymentTargets": [test]}
        ]),
    )
    .await;
    let r = s.create_release("Late", "1.0.0").await;
    let rid = r["ReleaseId"].as_str().unwrap().to_string();
    let t = task_ids(&deploy(&s, "Late", "1.0.0", &["Development"]).await.1);
    assert_eq!(
        s.wait_task(&t[0], Duration::from_secs(30)).await["State"],
        "Success"
    );
    // Stand-in for a node that stopped between the success and the promotion: the success is
    // recorded, nothing followed (Test was manual then). With Test now automatic, a restarted
    // server promotes the release from its recent successes.
    let mut l = s.get(&format!("/api/Spaces-1/lifecycles/{lc}")).await;
    l["Phases"][1]["AutomaticDeploymentTargets"] = json!([test]);
    l["Phases"][1]["OptionalDeploymentTargets"] = json!([]);
    s.put(&format!("/api/Spaces-1/lifecycles/{lc}"), l).await;
    assert_eq!(deployments_of(&s, &rid).await.len(), 1);
    s.stop();
    s.restart(crate::harness::Opts::default());
    let t_test = wait_deployment_to(&s, &rid, &test).await;
    assert_eq!(
        s.wait_task(&t_test, Duration::from_secs(30)).await["State"],
        "Success"
    );
    // Restarting again queues nothing more.
    s.stop();
    s.restart(crate::harness::Opts::default());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(deployments_of(&s, &rid).await.len(), 2);
}
