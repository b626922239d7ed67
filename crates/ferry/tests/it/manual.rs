//! Manual intervention through the real binary: the deployment waits (the task shows a
//! pending interruption), a user takes responsibility and proceeds or aborts with notes, the
//! outputs reach later steps, answered interruptions cannot be answered again, and cancelling
//! the task withdraws the interruption.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;

const SP: &str = "/api/Spaces-1";

/// The message and every error line of a refusal.
fn said(v: &Value) -> String {
    let mut out = v["ErrorMessage"].as_str().unwrap_or_default().to_string();
    for e in v["Errors"].as_array().into_iter().flatten() {
        out.push_str(" | ");
        out.push_str(e.as_str().unwrap_or_default());
    }
    out
}

async fn setup(s: &Server) {
    s.create_environment("Production").await;
    s.create_project("Gated").await;
    s.put(
        &format!("{SP}/projects/Gated/deploymentprocesses"),
        json!({"Steps": [
            {"Name": "Approve", "Actions": [{"ActionType": "Octopus.Manual", "Properties": {
                "Octopus.Action.Manual.Instructions": "Check #{Octopus.Environment.Name} dashboards first",
                "Octopus.Action.Manual.BlockConcurrentDeployments": "False"}}]},
            {"Name": "After", "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"approved=#{Octopus.Action[Approve].Output.Manual.Approved} by=#{Octopus.Action[Approve].Output.Manual.ResponsibleUser.Username} notes=#{Octopus.Action[Approve].Output.Manual.Notes}\"",
                "Octopus.Action.RunOnServer": "true"}}]}
        ]}),
    )
    .await;
}

/// Waits until the task shows a pending interruption; returns the interruption.
async fn pending(s: &Server, task: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = s.get(&format!("/api/tasks/{task}")).await;
        if t["HasPendingInterruptions"] == json!(true) {
            let list = s
                .get(&format!(
                    "{SP}/interruptions?regarding={task}&pendingOnly=true"
                ))
                .await;
            let items = list["Items"].as_array().unwrap();
            assert_eq!(items.len(), 1, "{list}");
            return items[0].clone();
        }
        assert!(Instant::now() < deadline, "no interruption for {task}: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn manual_intervention_proceeds_and_aborts() {
    let s = Server::start();
    setup(&s).await;
    s.create_release("Gated", "1.0.0").await;
    let task = s.deploy("Gated", "1.0.0", "Production").await;
    let i = pending(&s, &task).await;
    let id = i["Id"].as_str().unwrap().to_string();
    assert_eq!(i["Type"], "ManualIntervention");
    assert_eq!(i["IsPending"], true);
    assert_eq!(i["TaskId"], json!(task));
    assert_eq!(
        i["Form"]["Elements"][0]["Control"]["Text"], "Check Production dashboards first",
        "{i}"
    );
    let buttons: Vec<&str> = i["Form"]["Elements"][2]["Control"]["Buttons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["Value"].as_str().unwrap())
        .collect();
    assert_eq!(buttons, vec!["Proceed", "Abort"]);
    assert_eq!(
        s.get(&format!("/api/tasks/{task}")).await["State"],
        "Executing"
    );
    // The dashboard shows the deployment waiting.
    let dash = s.get(&format!("{SP}/dashboard")).await;
    assert_eq!(dash["Items"][0]["HasPendingInterruptions"], true, "{dash}");

    // A wrong answer is refused, naming the choices.
    let (st, v) = s
        .request(
            "POST",
            &format!("{SP}/interruptions/{id}/submit"),
            Some(json!({"Result": "Maybe"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(said(&v).contains("Proceed or Abort"), "{v}");

    // Take responsibility, then proceed with notes.
    let taken = s
        .put(&format!("{SP}/interruptions/{id}/responsible"), json!({}))
        .await;
    assert_eq!(taken["HasResponsibility"], true, "{taken}");
    let who = s.get(&format!("{SP}/interruptions/{id}/responsible")).await;
    assert_eq!(who["Username"], "admin", "{who}");
    let done = s
        .post(
            &format!("{SP}/interruptions/{id}/submit"),
            json!({"Result": "Proceed", "Notes": "dashboards green"}),
        )
        .await;
    assert_eq!(done["IsPending"], false, "{done}");
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Success", "{t}");
    let still = s
        .get(&format!(
            "{SP}/interruptions?regarding={task}&pendingOnly=true"
        ))
        .await;
    assert_eq!(still["TotalResults"], 0, "{still}");
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert!(
        raw.contains("approved=True by=admin notes=dashboards green"),
        "{raw}"
    );
    assert!(raw.contains("Waiting for manual intervention"), "{raw}");
    // Answered once only.
    let (st, v) = s
        .request(
            "POST",
            &format!("{SP}/interruptions/{id}/submit"),
            Some(json!({"Result": "Abort"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(said(&v).contains("no longer pending"), "{v}");
    // The answer is in the audit log.
    let ev = s.get(&format!("/api/events?regarding={id}")).await;
    assert!(ev.to_string().contains("chose Proceed"), "{ev}");

    // Abort: the deployment fails with the notes; the later step does not run.
    let task = s.deploy("Gated", "1.0.0", "Production").await;
    let i = pending(&s, &task).await;
    let id = i["Id"].as_str().unwrap().to_string();
    s.post(
        &format!("{SP}/interruptions/{id}/submit"),
        json!({"Result": "abort", "Notes": "alerts firing"}),
    )
    .await;
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Failed", "{t}");
    assert!(
        t["ErrorMessage"].as_str().unwrap().contains("aborted by"),
        "{t}"
    );
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert!(raw.contains("alerts firing"), "{raw}");
    assert!(!raw.contains("approved="), "{raw}");
}

#[tokio::test]
async fn cancelling_a_waiting_deployment_withdraws_its_interruption() {
    let s = Server::start();
    setup(&s).await;
    s.create_release("Gated", "1.0.0").await;
    let task = s.deploy("Gated", "1.0.0", "Production").await;
    let i = pending(&s, &task).await;
    let id = i["Id"].as_str().unwrap().to_string();
    s.post(&format!("/api/tasks/{task}/cancel"), json!({}))
        .await;
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Canceled", "{t}");
    let i = s.get(&format!("{SP}/interruptions/{id}")).await;
    assert_eq!(i["IsPending"], false, "{i}");
    let (st, v) = s
        .request(
            "POST",
            &format!("{SP}/interruptions/{id}/submit"),
            Some(json!({"Result": "Proceed"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(said(&v).contains("stopped waiting"), "{v}");
    let list = s.get(&format!("{SP}/interruptions?pendingOnly=true")).await;
    assert_eq!(list["TotalResults"], 0, "{list}");
}

/// Deploys with guided failure on; returns the task id.
async fn deploy_guided(s: &Server, version: &str) -> String {
    let v = s
        .post(
            "/api/Spaces-1/deployments/create/untenanted/v1",
            json!({"ProjectName": "Guided", "ReleaseVersion": version,
                "EnvironmentNames": ["Test"], "UseGuidedFailure": true}),
        )
        .await;
    v["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn guided_failure_retry_exclude_and_fail() {
    use crate::agents::{Agent, Mode};
    let s = Server::start();
    s.create_environment("Test").await;
    let mut agents: Vec<Agent> = (0..2)
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
    let marks = tempfile::tempdir().unwrap();
    let mark = marks.path().join("fixed");
    let script = format!(
        "if [ \"#{{Octopus.Machine.Name}}\" = web1 ] && [ ! -f {m} ]; then echo boom; exit 1; fi; echo \"ok-#{{Octopus.Machine.Name}}\"",
        m = mark.display()
    );
    s.create_project("Guided").await;
    s.put(
        &format!("{SP}/projects/Guided/deploymentprocesses"),
        json!({"Steps": [
            {"Name": "Flaky", "Properties": {"Octopus.Action.TargetRoles": "web"},
             "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]},
            {"Name": "Next", "Properties": {"Octopus.Action.TargetRoles": "web"},
             "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"next-#{Octopus.Machine.Name}\"",
                "Octopus.Action.Script.Syntax": "Bash"}}]}
        ]}),
    )
    .await;
    s.create_release("Guided", "1.0.0").await;

    // Retry after fixing the cause: the deployment succeeds.
    let task = deploy_guided(&s, "1.0.0").await;
    let i = pending(&s, &task).await;
    assert_eq!(i["Type"], "GuidedFailure", "{i}");
    let values: Vec<&str> = i["Form"]["Elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Name"] == "Guidance")
        .unwrap()["Control"]["Buttons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["Value"].as_str().unwrap())
        .collect();
    assert_eq!(values, vec!["Fail", "Retry", "Ignore", "Exclude"], "{i}");
    assert!(i["Title"].as_str().unwrap().contains("web1"), "{i}");
    std::fs::write(&mark, "x").unwrap();
    let id = i["Id"].as_str().unwrap();
    s.post(
        &format!("{SP}/interruptions/{id}/submit"),
        json!({"Guidance": "Retry", "Notes": "fixed the disk"}),
    )
    .await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{raw}");
    assert!(
        raw.contains("ok-web1") && raw.contains("chose to retry"),
        "{raw}"
    );
    assert!(
        raw.contains("next-web0") && raw.contains("next-web1"),
        "{raw}"
    );

    // Exclude the failing machine: the rest of the deployment goes on without it.
    std::fs::remove_file(&mark).unwrap();
    let task = deploy_guided(&s, "1.0.0").await;
    let i = pending(&s, &task).await;
    let id = i["Id"].as_str().unwrap();
    s.post(
        &format!("{SP}/interruptions/{id}/submit"),
        json!({"Guidance": "Exclude"}),
    )
    .await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{raw}");
    assert!(raw.contains("excluded web1"), "{raw}");
    assert!(
        raw.contains("next-web0") && !raw.contains("next-web1"),
        "{raw}"
    );

    // Fail: the deployment fails as it would have without guided failure.
    let task = deploy_guided(&s, "1.0.0").await;
    let i = pending(&s, &task).await;
    let id = i["Id"].as_str().unwrap();
    s.post(
        &format!("{SP}/interruptions/{id}/submit"),
        json!({"Guidance": "Fail"}),
    )
    .await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Failed", "{t}");

    // Without guided failure the same failure fails at once, asking nobody.
    let task = s.deploy("Guided", "1.0.0", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Failed", "{t}");
    let list = s.get(&format!("{SP}/interruptions?regarding={task}")).await;
    assert_eq!(list["TotalResults"], 0, "{list}");
}
