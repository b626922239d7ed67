//! Variables in real deployments: substitution in script bodies, scoping by environment, system
//! variables, the Bash and Python helpers, output variables between steps, run conditions, and
//! masking of sensitive values in every sink.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::Server;

async fn put_variables(s: &Server, project: &str, vars: Value) {
    let id = s.get(&format!("/api/Spaces-1/projects/{project}")).await["VariableSetId"]
        .as_str()
        .unwrap()
        .to_string();
    let current = s.get(&format!("/api/Spaces-1/variables/{id}")).await;
    let mut body = current.clone();
    body["Variables"] = vars;
    s.put(&format!("/api/Spaces-1/variables/{id}"), body).await;
}

fn script_step(name: &str, body: &str, syntax: &str) -> Value {
    json!({
        "Name": name,
        "Actions": [{"ActionType": "Octopus.Script", "Properties": {
            "Octopus.Action.Script.ScriptBody": body,
            "Octopus.Action.Script.Syntax": syntax,
            "Octopus.Action.RunOnServer": "true"
        }}]
    })
}

#[tokio::test]
async fn variables_reach_scripts_scoped_and_with_outputs() {
    let s = Server::start();
    let dev = s.create_environment("Development").await["Id"].clone();
    let test = s.create_environment("Test").await["Id"].clone();
    s.create_project("Vars").await;
    put_variables(
        &s,
        "Vars",
        json!([
            {"Name": "Greeting", "Value": "Hello #{Octopus.Environment.Name}"},
            {"Name": "DbHost", "Value": "dev-db", "Scope": {"Environment": [dev]}},
            {"Name": "DbHost", "Value": "test-db", "Scope": {"Environment": [test]}},
            {"Name": "Quoted", "Value": "it's \"quoted\" $(touch /tmp/ferry-injection) `x`; echo pwned"}
        ]),
    )
    .await;
    let steps = json!([
        script_step(
            "Step One",
            "echo \"sub: #{Greeting} on #{DbHost} release #{Octopus.Release.Number} of #{Octopus.Project.Name} step #{Octopus.Step.Name} #{Octopus.Action.Number}\"\n\
             echo \"get: $(get_octopusvariable DbHost) $(get_octopusvariable Octopus.Deployment.Id)\"\n\
             echo \"quoted: $(get_octopusvariable Quoted)\"\n\
             set_octopusvariable \"Color\" \"blue\"\n\
             write_highlight \"highlighted text\"\n\
             write_warning \"a warning\"",
            "Bash"
        ),
        script_step(
            "Step Two",
            "print('py: ' + get_octopusvariable('Greeting') + ' / ' + get_octopusvariable('Octopus.Action[Step One].Output.Color'))\nset_octopusvariable('Size', 'large')",
            "Python"
        ),
        script_step("Step Three", "echo \"out: #{Octopus.Action[Step One].Output.Color} #{Octopus.Action[Step Two].Output.Size}\"", "Bash"),
        {
            "Name": "Conditional", "Condition": "Variable",
            "Properties": {"Octopus.Step.ConditionVariableExpression": "#{if DbHost == \"test-db\"}True#{/if}"},
            "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo conditional-ran", "Octopus.Action.RunOnServer": "true"}}]
        }
    ]);
    s.put(
        "/api/Spaces-1/projects/Vars/deploymentprocesses",
        json!({"Steps": steps}),
    )
    .await;
    s.create_release("Vars", "1.0.0").await;
    let _ = std::fs::remove_file("/tmp/ferry-injection");
    let task = s.deploy("Vars", "1.0.0", "Development").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{raw}");
    assert!(
        raw.contains("sub: Hello Development on dev-db release 1.0.0 of Vars step Step One 1"),
        "{raw}"
    );
    assert!(raw.contains("get: dev-db Deployments-"), "{raw}");
    assert!(
        raw.contains("quoted: it's \"quoted\" $(touch /tmp/ferry-injection) `x`; echo pwned"),
        "{raw}"
    );
    assert!(
        !std::path::Path::new("/tmp/ferry-injection").exists(),
        "a variable value ran as code"
    );
    assert!(raw.contains("py: Hello Development / blue"), "{raw}");
    assert!(raw.contains("out: blue large"), "{raw}");
    assert!(
        !raw.contains("conditional-ran"),
        "the condition is false in Development"
    );
    assert!(
        !raw.contains("##octopus["),
        "service messages are not logged as text: {raw}"
    );
    let d = s.get(&format!("/api/tasks/{task}/details")).await;
    let lines: Vec<Value> = collect_elements(&d["ActivityLogs"]);
    assert!(
        lines
            .iter()
            .any(|l| l["Category"] == "Highlight" && l["MessageText"] == "highlighted text")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["Category"] == "Warning" && l["MessageText"] == "a warning")
    );

    // Promote to Test: the Test-scoped value wins and the condition is true.
    let task = s.deploy("Vars", "1.0.0", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{raw}");
    assert!(raw.contains("sub: Hello Test on test-db"), "{raw}");
    assert!(raw.contains("conditional-ran"), "{raw}");
}

fn collect_elements(nodes: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for n in nodes.as_array().into_iter().flatten() {
        out.extend(n["LogElements"].as_array().into_iter().flatten().cloned());
        out.extend(collect_elements(&n["Children"]));
    }
    out
}

#[tokio::test]
async fn failure_details_reach_later_steps() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Fails").await;
    let steps = json!([
        script_step("Break", "echo breaking\nfail_step \"the database is unreachable\"", "Bash"),
        {
            "Name": "Report", "Condition": "Failure",
            "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"report: #{Octopus.Deployment.Error}\"", "Octopus.Action.RunOnServer": "true"}}]
        }
    ]);
    s.put(
        "/api/Spaces-1/projects/Fails/deploymentprocesses",
        json!({"Steps": steps}),
    )
    .await;
    s.create_release("Fails", "1.0.0").await;
    let task = s.deploy("Fails", "1.0.0", "Development").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Failed");
    assert!(
        t["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("the database is unreachable"),
        "{t}"
    );
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert!(
        raw.contains("report: Step 'Break' failed: the database is unreachable"),
        "{raw}"
    );
}

#[tokio::test]
async fn sensitive_values_are_masked_everywhere() {
    let mut s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Secrets").await;
    let secret = "Sup3r$ecret-V@lue/42";
    let other = "multi word secret";
    put_variables(
        &s,
        "Secrets",
        json!([
            {"Name": "Secret", "Value": secret, "IsSensitive": true, "Type": "Sensitive"},
            {"Name": "Other", "Value": other, "IsSensitive": true, "Type": "Sensitive"},
            {"Name": "Conn", "Value": "Server=db;Password=#{Secret}"}
        ]),
    )
    .await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let url = "Sup3r%24ecret-V%40lue%2F42";
    let steps = json!([
        script_step(
            "Print",
            "S=\"$(get_octopusvariable Secret)\"\n\
             echo \"plain: $S\"\n\
             echo \"substituted: #{Secret}\"\n\
             echo \"composite: #{Conn}\"\n\
             echo \"base64: $(printf '%s' \"$S\" | base64 -w0)\"\n\
             echo \"url: #{Secret | UriDataEscape}\"\n\
             echo \"json: #{Secret | JsonEscape}\"\n\
             printf 'split: Sup3r$ec'; printf 'ret-V@lue/42\\n'\n\
             echo \"stderr: $S\" >&2\n\
             echo \"other: #{Other}\"\n\
             set_octopusvariable \"Derived\" \"derived-$S\" -sensitive",
            "Bash"
        ),
        script_step(
            "Reuse",
            "echo \"derived: #{Octopus.Action[Print].Output.Derived}\"\nexit 1",
            "Bash"
        ),
    ]);
    s.put(
        "/api/Spaces-1/projects/Secrets/deploymentprocesses",
        json!({"Steps": steps}),
    )
    .await;
    s.create_release("Secrets", "1.0.0").await;
    let task = s.deploy("Secrets", "1.0.0", "Development").await;
    s.wait_task(&task, Duration::from_secs(60)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    // The lines ran (their labels are there), and no form of the secret is.
    for label in [
        "plain:",
        "substituted:",
        "composite: Server=db;Password=",
        "base64:",
        "url:",
        "json:",
        "split:",
        "stderr:",
        "other:",
        "derived:",
    ] {
        assert!(raw.contains(label), "{label} missing:\n{raw}");
    }
    let details = s.raw(&format!("/api/tasks/{task}/details")).await;
    let events = s.raw("/api/events?take=1000").await;
    let task_json = s.raw(&format!("/api/tasks/{task}")).await;
    let vars = s
        .raw(&format!(
            "/api/Spaces-1/variables/{}",
            s.get("/api/Spaces-1/projects/Secrets").await["VariableSetId"]
                .as_str()
                .unwrap()
        ))
        .await;
    s.stop();
    let server_log = s.output_text();
    let derived = format!("derived-{secret}");
    for (sink, text) in [
        ("raw log", &raw),
        ("details", &details),
        ("events", &events),
        ("task", &task_json),
        ("variables", &vars),
        ("server log", &server_log),
    ] {
        for form in [
            secret,
            b64.as_str(),
            url,
            other,
            derived.as_str(),
            "Sup3r$ecret",
        ] {
            assert!(!text.contains(form), "{sink} contains '{form}':\n{text}");
        }
    }
    assert!(raw.contains("********"));
    // The database files hold no plain secret either (sealed at rest, masked in logs).
    let mut db_bytes = Vec::new();
    for f in ["ferry.db", "ferry.db-wal"] {
        if let Ok(b) = std::fs::read(s.data_dir.join(f)) {
            db_bytes.extend(b);
        }
    }
    let db_text = String::from_utf8_lossy(&db_bytes);
    for form in [secret, other] {
        assert!(
            !db_text.contains(form),
            "the database holds '{form}' in plain text"
        );
    }
}

#[tokio::test]
async fn a_looping_template_fails_the_step_naming_the_variable() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Loop").await;
    put_variables(
        &s,
        "Loop",
        json!([{"Name": "Alpha", "Value": "a-#{Beta}"}, {"Name": "Beta", "Value": "b-#{Alpha}"}]),
    )
    .await;
    s.put(
        "/api/Spaces-1/projects/Loop/deploymentprocesses",
        json!({"Steps": [script_step("Echo", "echo #{Alpha}", "Bash")]}),
    )
    .await;
    s.create_release("Loop", "1.0.0").await;
    let task = s.deploy("Loop", "1.0.0", "Development").await;
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Failed");
    let err = t["ErrorMessage"].as_str().unwrap();
    assert!(err.contains("Alpha") && err.contains("Beta"), "{err}");
}

#[tokio::test]
async fn a_script_can_ask_for_a_value_to_be_masked() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Mask").await;
    s.put(
        "/api/Spaces-1/projects/Mask/deploymentprocesses",
        json!({"Steps": [
            script_step("Fetch", "T='token-from-a-vault-123'\necho \"##octopus[mask value='$(printf '%s' \"$T\" | base64 -w0)']\"\necho \"got $T\"\nset_octopusvariable Token \"$T\" -sensitive", "Bash"),
            script_step("Use", "echo \"again #{Octopus.Action[Fetch].Output.Token}\"", "Bash")
        ]}),
    )
    .await;
    s.create_release("Mask", "1.0.0").await;
    let task = s.deploy("Mask", "1.0.0", "Development").await;
    assert_eq!(
        s.wait_task(&task, Duration::from_secs(30)).await["State"],
        "Success"
    );
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert!(
        raw.contains("got ********") && raw.contains("again ********"),
        "{raw}"
    );
    assert!(!raw.contains("token-from-a-vault-123"), "{raw}");
}
