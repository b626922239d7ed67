//! Step templates: templates of our own written in the community library's format (Bash and
//! Python, parameters, `get_octopusvariable`, output variables, a sensitive output,
//! `fail_step`), imported through the API and the CLI, used in processes, deployed to the
//! built-in worker and to an agent; version pinning and `actionsUpdate`; import refusals.

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::agents::{Agent, Mode};
use crate::harness::{Server, ferry_bin};

const BASH_BODY: &str = r#"name=$(get_octopusvariable "Greet.Name")
greeting=$(get_octopusvariable "Greet.Greeting")
token=$(get_octopusvariable "Greet.Token")

if [ "$(get_octopusvariable "Greet.Fail")" = "True" ]; then
    fail_step "Greeting failed for $name"
fi

write_highlight "$greeting, $name!"
echo "token is $token"
set_octopusvariable "Greeting" "$greeting, $name!"
set_octopusvariable "Secret" "s3cr3t-Out-$name" -sensitive
echo "secret is s3cr3t-Out-$name"
echo "on #{Octopus.Machine.Name}"
printf '%s\n' "$greeting, $name!" > greeting.txt
new_octopusartifact "$PWD/greeting.txt" "greeting-$name.txt"
"#;

const PY_BODY: &str = r#"name = get_octopusvariable("PyGreet.Name")
count = int(get_octopusvariable("PyGreet.Count"))
key = get_octopusvariable("PyGreet.Key")

if get_octopusvariable("PyGreet.Fail") == "True":
    failstep("Python greeting failed for " + name)

for i in range(count):
    print("py hello %s %d" % (name, i))
printhighlight("key is " + key)
set_octopusvariable("PyGreeting", "py:" + name)
with open("report.txt", "wb") as f:
    f.write(("report for " + name + "\n").encode() + bytes([0, 255]))
createartifact("report.txt", "py-report-" + name + ".bin")
"#;

/// A Bash template in the community library's format.
fn bash_template() -> Value {
    json!({
        "Id": "0d6f6d1e-5d0c-4c3e-9a55-3f1b7c2a9e01",
        "Name": "Ferry - Greet (Bash)",
        "Description": "Greets someone and sets the `Greeting` output variable.",
        "ActionType": "Octopus.Script",
        "Version": 4,
        "CommunityActionTemplateId": null,
        "Packages": [],
        "GitDependencies": [],
        "Properties": {
            "Octopus.Action.Script.ScriptSource": "Inline",
            "Octopus.Action.Script.Syntax": "Bash",
            "Octopus.Action.Script.ScriptBody": BASH_BODY
        },
        "Parameters": [
            {"Id": "c3a7a0a2-1111-4d6e-9d43-5d7f2b9c0001", "Name": "Greet.Name", "Label": "Name",
             "HelpText": "Who to greet.", "DefaultValue": "",
             "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}},
            {"Id": "c3a7a0a2-1111-4d6e-9d43-5d7f2b9c0002", "Name": "Greet.Greeting", "Label": "Greeting",
             "HelpText": "The greeting.", "DefaultValue": "Hello",
             "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}},
            {"Id": "c3a7a0a2-1111-4d6e-9d43-5d7f2b9c0003", "Name": "Greet.Token", "Label": "Token",
             "HelpText": "A secret token.", "DefaultValue": null,
             "DisplaySettings": {"Octopus.ControlType": "Sensitive"}},
            {"Id": "c3a7a0a2-1111-4d6e-9d43-5d7f2b9c0004", "Name": "Greet.Fail", "Label": "Fail",
             "HelpText": "Fail the step.", "DefaultValue": "False",
             "DisplaySettings": {"Octopus.ControlType": "Checkbox"}}
        ],
        "StepPackageId": "Octopus.Script",
        "$Meta": {"ExportedAt": "2026-01-01T00:00:00.000Z", "OctopusVersion": "2025.2.0", "Type": "ActionTemplate"},
        "LastModifiedBy": "ferry-tests",
        "Category": "other"
    })
}

/// A Python template in the community library's format.
fn python_template() -> Value {
    json!({
        "Id": "0d6f6d1e-5d0c-4c3e-9a55-3f1b7c2a9e02",
        "Name": "Ferry - Greet (Python)",
        "Description": "Greets someone from Python.",
        "ActionType": "Octopus.Script",
        "Version": 1,
        "CommunityActionTemplateId": null,
        "Packages": [],
        "Properties": {
            "Octopus.Action.Script.ScriptSource": "Inline",
            "Octopus.Action.Script.Syntax": "Python",
            "Octopus.Action.Script.ScriptBody": PY_BODY
        },
        "Parameters": [
            {"Id": "d1", "Name": "PyGreet.Name", "Label": "Name", "HelpText": "", "DefaultValue": "",
             "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}},
            {"Id": "d2", "Name": "PyGreet.Count", "Label": "Count", "HelpText": "", "DefaultValue": "2",
             "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}},
            {"Id": "d3", "Name": "PyGreet.Key", "Label": "Key", "HelpText": "", "DefaultValue": "pyKey-Default-5555",
             "DisplaySettings": {"Octopus.ControlType": "Sensitive"}},
            {"Id": "d4", "Name": "PyGreet.Fail", "Label": "Fail", "HelpText": "", "DefaultValue": "False",
             "DisplaySettings": {"Octopus.ControlType": "Checkbox"}}
        ],
        "$Meta": {"ExportedAt": "2026-01-01T00:00:00.000Z", "OctopusVersion": "2025.2.0", "Type": "ActionTemplate"},
        "LastModifiedBy": "ferry-tests",
        "Author": "ferry-tests",
        "Category": "other"
    })
}

fn template_step(name: &str, t: &Value, props: Value, roles: Option<&str>) -> Value {
    let mut p = json!({
        "Octopus.Action.Template.Id": t["Id"],
        "Octopus.Action.Template.Version": t["Version"].to_string(),
        "Octopus.Action.RunOnServer": if roles.is_some() { "false" } else { "true" },
    });
    for (k, v) in t["Properties"].as_object().unwrap() {
        p[k] = v.clone();
    }
    for (k, v) in props.as_object().unwrap() {
        p[k] = v.clone();
    }
    let step_props = match roles {
        Some(r) => json!({"Octopus.Action.TargetRoles": r}),
        None => json!({}),
    };
    json!({"Name": name, "Properties": step_props,
           "Actions": [{"ActionType": t["ActionType"], "Properties": p}]})
}

async fn import(s: &Server, t: Value) -> Value {
    let (st, v) = s
        .request("POST", "/api/Spaces-1/actiontemplates", Some(t))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

async fn deploy_log(s: &Server, project: &str, version: &str, state: &str) -> String {
    deploy_task(s, project, version, state).await.1
}

/// Deploys a new release; returns the task id and its log.
async fn deploy_task(s: &Server, project: &str, version: &str, state: &str) -> (String, String) {
    s.create_release(project, version).await;
    let t = s.deploy(project, version, "Test").await;
    let done = s.wait_task(&t, Duration::from_secs(90)).await;
    let log = s.raw(&format!("/api/tasks/{t}/raw")).await;
    assert_eq!(done["State"], state, "{done}\n{log}");
    (t, log)
}

/// The artifacts of a task: (Filename, Source, content).
async fn artifacts_of(s: &Server, task: &str) -> Vec<(String, String, Vec<u8>)> {
    let page = s
        .get(&format!("/api/Spaces-1/artifacts?regarding={task}"))
        .await;
    assert_eq!(page["ItemType"], "Artifact", "{page}");
    let mut out = Vec::new();
    for a in page["Items"].as_array().unwrap() {
        assert_eq!(a["ServerTaskId"], task, "{a}");
        assert!(a["Id"].as_str().unwrap().starts_with("Artifacts-"), "{a}");
        assert!(a["Created"].as_str().is_some(), "{a}");
        let link = a["Links"]["Content"].as_str().unwrap();
        let resp = reqwest::Client::new()
            .get(format!("{}{link}", s.url))
            .header("X-Octopus-ApiKey", &s.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = resp.bytes().await.unwrap().to_vec();
        out.push((
            a["Filename"].as_str().unwrap().to_string(),
            a["Source"].as_str().unwrap().to_string(),
            bytes,
        ));
    }
    out.sort();
    out
}

fn cli(s: &Server) -> Command {
    let mut c = Command::new(ferry_bin());
    c.env("FERRY_URL", &s.url)
        .env("FERRY_API_KEY", &s.api_key)
        .stdin(Stdio::null());
    c
}

fn run_cli(s: &Server, args: &[&str]) -> String {
    let out = cli(s).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "ferry {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn templates_run_with_parameters_outputs_and_masking() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut agent = Agent::register(&s, "web0", "Test", &["web"], Mode::ListenLoopback);
    agent.start();
    let bash = import(&s, bash_template()).await;
    assert_eq!(bash["Version"], 1, "{bash}");
    assert_eq!(bash["SpaceId"], "Spaces-1");
    assert_eq!(
        bash["CommunityActionTemplateId"],
        "0d6f6d1e-5d0c-4c3e-9a55-3f1b7c2a9e01"
    );
    assert_eq!(bash["Parameters"].as_array().unwrap().len(), 4);
    assert!(bash["Links"]["Usage"].as_str().is_some(), "{bash}");
    let py = import(&s, python_template()).await;
    let all = s.get("/api/Spaces-1/actiontemplates/all").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let page = s
        .get("/api/Spaces-1/actiontemplates?partialName=Python")
        .await;
    assert_eq!(page["TotalResults"], 1, "{page}");

    let project = s.create_project("Greeter").await;
    let vs = project["VariableSetId"].as_str().unwrap().to_string();
    let mut vars = s.get(&format!("/api/Spaces-1/variables/{vs}")).await;
    vars["Variables"] = json!([
        {"Name": "ProjectToken", "Value": "tok-Secret-9876", "IsSensitive": true, "Type": "Sensitive"},
        {"Name": "Who", "Value": "team"}
    ]);
    s.put(&format!("/api/Spaces-1/variables/{vs}"), vars).await;
    s.put(
        "/api/Spaces-1/projects/Greeter/deploymentprocesses",
        json!({"Steps": [
            template_step("Greet", &bash, json!({
                "Greet.Name": "#{Octopus.Environment.Name} #{Who}",
                "Greet.Token": "#{ProjectToken}"
            }), None),
            template_step("Greet web", &bash, json!({"Greet.Name": "agent", "Greet.Greeting": "Hi"}), Some("web")),
            template_step("Py", &py, json!({"PyGreet.Name": "snake"}), None),
            {"Name": "Later", "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody":
                    "echo \"later: #{Octopus.Action[Greet].Output.Greeting}\"\necho \"py: #{Octopus.Action[Py].Output.PyGreeting}\"\necho \"leak: #{Octopus.Action[Greet].Output.Secret}\"",
                "Octopus.Action.Script.Syntax": "Bash", "Octopus.Action.RunOnServer": "true"}}]}
        ]}),
    )
    .await;
    let usage = s
        .get(&format!(
            "/api/Spaces-1/actiontemplates/{}/usage",
            bash["Id"].as_str().unwrap()
        ))
        .await;
    let usage = usage.as_array().unwrap();
    assert_eq!(usage.len(), 2, "{usage:?}");
    assert_eq!(usage[0]["ProjectName"], "Greeter");
    assert_eq!(usage[0]["Version"], "1");

    let (task, log) = deploy_task(&s, "Greeter", "1.0.0", "Success").await;
    // Artifacts from the worker and the agent, with the right bytes.
    let arts = artifacts_of(&s, &task).await;
    assert_eq!(
        arts,
        vec![
            (
                "greeting-Test team.txt".to_string(),
                "Built-in worker".to_string(),
                b"Hello, Test team!\n".to_vec()
            ),
            (
                "greeting-agent.txt".to_string(),
                "web0".to_string(),
                b"Hi, agent!\n".to_vec()
            ),
            (
                "py-report-snake.bin".to_string(),
                "Built-in worker".to_string(),
                b"report for snake\n\0\xff".to_vec()
            ),
        ],
        "{log}"
    );
    assert!(
        log.contains("Collected the artifact 'greeting-agent.txt'"),
        "{log}"
    );
    // Parameters as variables: values substituted, defaults used.
    assert!(log.contains("Hello, Test team!"), "{log}");
    // The agent ran the same template with its own values.
    assert!(
        log.contains("Hi, agent!") && log.contains("on web0"),
        "{log}"
    );
    // Sensitive parameters (a sensitive project variable, a sensitive default) are masked.
    assert!(log.contains("token is ********"), "{log}");
    assert!(!log.contains("tok-Secret-9876"), "{log}");
    assert!(log.contains("key is ********"), "{log}");
    assert!(!log.contains("pyKey-Default-5555"), "{log}");
    // The sensitive output variable is masked where printed and where used.
    assert!(log.contains("secret is ********"), "{log}");
    assert!(log.contains("leak: ********"), "{log}");
    assert!(!log.contains("s3cr3t-Out-"), "{log}");
    // Python template: defaults, outputs.
    assert!(
        log.contains("py hello snake 0") && log.contains("py hello snake 1"),
        "{log}"
    );
    assert!(!log.contains("py hello snake 2"), "{log}");
    // Outputs reach a later step.
    assert!(log.contains("later: Hello, Test team!"), "{log}");
    assert!(log.contains("py: py:snake"), "{log}");
}

#[tokio::test]
async fn cli_import_version_pinning_actions_update_and_failure() {
    let s = Server::start();
    s.create_environment("Test").await;
    let dir = tempfile::tempdir().unwrap();
    let mut t = bash_template();
    t["Name"] = json!("Pinned greeting");
    t["Properties"]["Octopus.Action.Script.ScriptBody"] =
        json!(format!("echo template-v1-marker\n{BASH_BODY}"));
    let file = dir.path().join("pinned.json");
    std::fs::write(&file, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    let out = run_cli(&s, &["step-template", "import", file.to_str().unwrap()]);
    assert!(
        out.contains("Pinned greeting")
            && out.contains("ActionTemplates-")
            && out.contains("version 1"),
        "{out}"
    );
    let out = run_cli(&s, &["step-template", "list"]);
    assert!(out.contains("Pinned greeting"), "{out}");
    s.create_project("Pins").await;
    let out = run_cli(
        &s,
        &[
            "process",
            "add-template",
            "--project",
            "Pins",
            "--name",
            "Pinned",
            "--template",
            "Pinned greeting",
            "--param",
            "Greet.Name=pin",
        ],
    );
    assert!(out.contains("version 1"), "{out}");
    // An unknown parameter is refused by the CLI.
    let bad = cli(&s)
        .args([
            "process",
            "add-template",
            "--project",
            "Pins",
            "--name",
            "X",
            "--template",
            "Pinned greeting",
            "--param",
            "Nope=1",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Nope"));

    // A new version of the template.
    let cur = s.get("/api/Spaces-1/actiontemplates/Pinned greeting").await;
    let id = cur["Id"].as_str().unwrap().to_string();
    let mut v2 = cur.clone();
    v2["Properties"]["Octopus.Action.Script.ScriptBody"] =
        json!(format!("echo template-v2-marker\n{BASH_BODY}"));
    let saved = s
        .put(&format!("/api/Spaces-1/actiontemplates/{id}"), v2)
        .await;
    assert_eq!(saved["Version"], 2);
    let old = s
        .get(&format!("/api/Spaces-1/actiontemplates/{id}/versions/1"))
        .await;
    assert!(
        old["Properties"]["Octopus.Action.Script.ScriptBody"]
            .as_str()
            .unwrap()
            .contains("template-v1-marker")
    );
    let (st, _) = s
        .request(
            "GET",
            &format!("/api/Spaces-1/actiontemplates/{id}/versions/7"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The step is pinned to version 1 and keeps running it.
    let log = deploy_log(&s, "Pins", "1.0.0", "Success").await;
    assert!(
        log.contains("template-v1-marker") && log.contains("Hello, pin!"),
        "{log}"
    );
    assert!(!log.contains("template-v2-marker"), "{log}");
    let usage = s
        .get(&format!("/api/Spaces-1/actiontemplates/{id}/usage"))
        .await;
    assert_eq!(usage[0]["Version"], "1", "{usage}");
    assert_eq!(usage[0]["IsUpToDate"], false, "{usage}");
    // A stale Version in actionsUpdate is a conflict.
    let (st, _) = s
        .request(
            "POST",
            &format!("/api/Spaces-1/actiontemplates/{id}/actionsUpdate"),
            Some(json!({"Version": 1, "ActionIdsByProcessId": {}})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let process_id = usage[0]["DeploymentProcessId"].as_str().unwrap();
    let action_id = usage[0]["ActionId"].as_str().unwrap();
    let res = s
        .post(
            &format!("/api/Spaces-1/actiontemplates/{id}/actionsUpdate"),
            json!({"Version": 2, "ActionIdsByProcessId": {process_id: [action_id]},
                   "DefaultPropertyValues": {}, "Overrides": {}}),
        )
        .await;
    assert_eq!(res[0]["Id"], action_id, "{res}");
    assert_eq!(res[0]["Outcome"], "Success", "{res}");
    let usage = s
        .get(&format!("/api/Spaces-1/actiontemplates/{id}/usage"))
        .await;
    assert_eq!(usage[0]["Version"], "2", "{usage}");
    let log = deploy_log(&s, "Pins", "1.0.1", "Success").await;
    assert!(
        log.contains("template-v2-marker") && log.contains("Hello, pin!"),
        "{log}"
    );
    // The release made before the update still runs version 1.
    let t = s.deploy("Pins", "1.0.0", "Test").await;
    s.wait_task(&t, Duration::from_secs(60)).await;
    let log = s.raw(&format!("/api/tasks/{t}/raw")).await;
    assert!(log.contains("template-v1-marker"), "{log}");

    // A failing template fails the step with its message.
    let mut p = s
        .get("/api/Spaces-1/projects/Pins/deploymentprocesses")
        .await;
    p["Steps"][0]["Actions"][0]["Properties"]["Greet.Fail"] = json!("True");
    s.put("/api/Spaces-1/projects/Pins/deploymentprocesses", p)
        .await;
    let log = deploy_log(&s, "Pins", "1.0.2", "Failed").await;
    assert!(log.contains("Greeting failed for pin"), "{log}");
    let py = import(&s, python_template()).await;
    s.put(
        "/api/Spaces-1/projects/Pins/deploymentprocesses",
        json!({"Steps": [template_step("Py", &py, json!({"PyGreet.Name": "x", "PyGreet.Fail": "True"}), None)]}),
    )
    .await;
    let log = deploy_log(&s, "Pins", "1.0.3", "Failed").await;
    assert!(log.contains("Python greeting failed for x"), "{log}");

    // A missing artifact fails the step; one over the size limit is refused clearly.
    s.set_scripts(
        "Pins",
        &[("Missing", "new_octopusartifact /nonexistent/file.txt")],
    )
    .await;
    let log = deploy_log(&s, "Pins", "1.0.4", "Failed").await;
    assert!(log.contains("/nonexistent/file.txt"), "{log}");
    s.set_scripts(
        "Pins",
        &[(
            "Big",
            "head -c 3000000 /dev/zero > big.bin\nnew_octopusartifact \"$PWD/big.bin\"",
        )],
    )
    .await;
    let (task, log) = deploy_task(&s, "Pins", "1.0.5", "Failed").await;
    assert!(
        log.contains("The artifact 'big.bin'") && log.contains("could not be collected"),
        "{log}"
    );
    assert!(artifacts_of(&s, &task).await.is_empty());
    // Deleting an artifact.
    let all = s.get("/api/Spaces-1/artifacts").await;
    let first = all["Items"][0]["Id"].as_str().unwrap().to_string();
    let (st, _) = s
        .request("DELETE", &format!("/api/Spaces-1/artifacts/{first}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .request(
            "GET",
            &format!("/api/Spaces-1/artifacts/{first}/content"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn import_refusals_and_process_checks() {
    let s = Server::start();
    s.create_environment("Test").await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/Spaces-1/actiontemplates", s.url))
        .header("X-Octopus-ApiKey", &s.api_key)
        .header("Content-Type", "application/json")
        .body("{\"Name\": \"broken\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("not valid JSON"));
    let refuse = |body: Value, want: &'static str| {
        let s = &s;
        async move {
            let (st, v) = s
                .request("POST", "/api/Spaces-1/actiontemplates", Some(body))
                .await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
            assert!(v.to_string().contains(want), "{want}: {v}");
        }
    };
    let mut t = bash_template();
    t.as_object_mut().unwrap().remove("Name");
    refuse(t, "no Name").await;
    let mut t = bash_template();
    t.as_object_mut().unwrap().remove("ActionType");
    refuse(t, "no ActionType").await;
    let mut t = bash_template();
    t.as_object_mut().unwrap().remove("Properties");
    refuse(t, "no Properties").await;
    let mut t = bash_template();
    t["Properties"]["Octopus.Action.Script.Syntax"] = json!("PowerShell");
    refuse(t, "PowerShell is not supported on Ferry's Linux targets").await;
    let mut t = bash_template();
    t["ActionType"] = json!("Octopus.AzurePowerShell");
    refuse(t, "Ferry cannot run").await;
    let bash = import(&s, bash_template()).await;
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/actiontemplates",
            Some(bash_template()),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let cli_out = cli(&s)
        .args(["step-template", "import", "/nonexistent/file.json"])
        .output()
        .unwrap();
    assert!(!cli_out.status.success());

    // A process naming a missing template or version is refused.
    s.create_project("Checks").await;
    let put = |steps: Value| {
        let s = &s;
        async move {
            s.request(
                "PUT",
                "/api/Spaces-1/projects/Checks/deploymentprocesses",
                Some(json!({"Steps": steps})),
            )
            .await
        }
    };
    let mut missing = bash.clone();
    missing["Id"] = json!("ActionTemplates-999");
    let (st, v) = put(json!([template_step("S", &missing, json!({}), None)])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("does not exist"), "{v}");
    let mut wrong = bash.clone();
    wrong["Version"] = json!(9);
    let (st, v) = put(json!([template_step("S", &wrong, json!({}), None)])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("version 9"), "{v}");
    let (st, v) = put(json!([template_step("S", &bash, json!({}), None)])).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A template in use cannot be deleted.
    let id = bash["Id"].as_str().unwrap();
    let (st, v) = s
        .request(
            "DELETE",
            &format!("/api/Spaces-1/actiontemplates/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("Checks"), "{v}");
    put(json!([])).await;
    let (st, _) = s
        .request(
            "DELETE",
            &format!("/api/Spaces-1/actiontemplates/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .request("GET", &format!("/api/Spaces-1/actiontemplates/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// Creates a script module (a library variable set with `ContentType: "ScriptModule"`).
async fn script_module(s: &Server, name: &str, language: &str, body: &str) -> String {
    let lib = s
        .post(
            "/api/Spaces-1/libraryvariablesets",
            json!({"Name": name, "ContentType": "ScriptModule"}),
        )
        .await;
    assert_eq!(lib["ContentType"], "ScriptModule", "{lib}");
    let vs = lib["VariableSetId"].as_str().unwrap();
    let mut vars = s.get(&format!("/api/Spaces-1/variables/{vs}")).await;
    vars["Variables"] = json!([
        {"Name": format!("Octopus.Script.Module[{name}]"), "Value": body},
        {"Name": format!("Octopus.Script.Module.Language[{name}]"), "Value": language}
    ]);
    s.put(&format!("/api/Spaces-1/variables/{vs}"), vars).await;
    lib["Id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn script_modules_are_written_next_to_bash_and_python_scripts() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut agent = Agent::register(&s, "mod0", "Test", &["mod"], Mode::ListenLoopback);
    agent.start();
    let bash = script_module(
        &s,
        "Greeting Helpers",
        "Bash",
        "say_hi() {\n  echo \"module says hi to $1 in #{Octopus.Environment.Name}\"\n}\n",
    )
    .await;
    let py = script_module(
        &s,
        "PyHelpers",
        "Python",
        "def shout(name):\n    return 'PY MODULE ' + name.upper()\n",
    )
    .await;
    let modules = s
        .get("/api/Spaces-1/libraryvariablesets?contentType=ScriptModule")
        .await;
    assert_eq!(modules["TotalResults"], 2, "{modules}");
    let mut p = s.create_project("Mods").await;
    p["IncludedLibraryVariableSetIds"] = json!([bash, py]);
    s.put("/api/Spaces-1/projects/Mods", p).await;
    let script = |name: &str, body: &str, syntax: &str, role: Option<&str>| {
        json!({"Name": name,
               "Properties": role.map(|r| json!({"Octopus.Action.TargetRoles": r})).unwrap_or(json!({})),
               "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                   "Octopus.Action.Script.ScriptBody": body,
                   "Octopus.Action.Script.Syntax": syntax,
                   "Octopus.Action.RunOnServer": if role.is_some() { "false" } else { "true" }}}]})
    };
    s.put(
        "/api/Spaces-1/projects/Mods/deploymentprocesses",
        json!({"Steps": [
            script("Bash here", "source GreetingHelpers.sh\nsay_hi worker\n[ ! -e PyHelpers.py ] && echo no-python-module-here", "Bash", None),
            script("Bash agent", ". ./GreetingHelpers.sh\nsay_hi agent", "Bash", Some("mod")),
            script("Python", "import PyHelpers\nprint(PyHelpers.shout('snake'))", "Python", None)
        ]}),
    )
    .await;
    let log = deploy_log(&s, "Mods", "1.0.0", "Success").await;
    assert!(log.contains("module says hi to worker in Test"), "{log}");
    assert!(log.contains("module says hi to agent in Test"), "{log}");
    assert!(log.contains("no-python-module-here"), "{log}");
    assert!(log.contains("PY MODULE SNAKE"), "{log}");
}

/// The same templates and a script module, unchanged, on an SSH target.
#[tokio::test]
async fn templates_and_modules_run_on_an_ssh_target() {
    let Some(d) = crate::sshd::Sshd::start(None) else {
        return;
    };
    let s = Server::start();
    s.create_environment("Test").await;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &d.client_key);
    let account = s
        .post(
            "/api/Spaces-1/accounts",
            json!({"AccountType": "SshKeyPair", "Name": "root key", "Username": "root",
                   "PrivateKeyFile": {"HasValue": true, "NewValue": b64}}),
        )
        .await;
    s.post(
        "/api/Spaces-1/machines",
        json!({"Name": "ssh-box", "EnvironmentIds": ["Test"], "Roles": ["ssh"],
               "Endpoint": {"CommunicationStyle": "Ssh", "Host": d.host, "Port": d.port,
                            "Fingerprint": d.fingerprint, "AccountId": account["Id"]}}),
    )
    .await;
    let bash = import(&s, bash_template()).await;
    let py = import(&s, python_template()).await;
    let module = script_module(
        &s,
        "Ssh Helpers",
        "Bash",
        "ssh_hi() { echo \"ssh module $1\"; }\n",
    )
    .await;
    let mut p = s.create_project("OverSsh").await;
    p["IncludedLibraryVariableSetIds"] = json!([module]);
    s.put("/api/Spaces-1/projects/OverSsh", p).await;
    s.put(
        "/api/Spaces-1/projects/OverSsh/deploymentprocesses",
        json!({"Steps": [
            template_step("Greet", &bash, json!({"Greet.Name": "ssh", "Greet.Token": "ssh-Token-4321"}), Some("ssh")),
            template_step("Py", &py, json!({"PyGreet.Name": "sshpy", "PyGreet.Count": "1"}), Some("ssh")),
            {"Name": "Module", "Properties": {"Octopus.Action.TargetRoles": "ssh"},
             "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "source SshHelpers.sh\nssh_hi \"#{Octopus.Action[Greet].Output.Greeting}\"",
                "Octopus.Action.Script.Syntax": "Bash"}}]}
        ]}),
    )
    .await;
    let (task, log) = deploy_task(&s, "OverSsh", "1.0.0", "Success").await;
    let arts = artifacts_of(&s, &task).await;
    assert_eq!(arts.len(), 2, "{log}");
    assert_eq!(arts[0].0, "greeting-ssh.txt");
    assert_eq!(arts[0].1, "ssh-box");
    assert_eq!(arts[0].2, b"Hello, ssh!\n".to_vec());
    assert!(
        log.contains("Hello, ssh!") && log.contains("on ssh-box"),
        "{log}"
    );
    assert!(
        log.contains("token is ********") && !log.contains("ssh-Token-4321"),
        "{log}"
    );
    assert!(
        log.contains("py hello sshpy 0") && !log.contains("py hello sshpy 1"),
        "{log}"
    );
    assert!(log.contains("ssh module Hello, ssh!"), "{log}");
}

const WEBHOOK_BODY: &str = r#"url=$(get_octopusvariable "Webhook.Url")
body=$(get_octopusvariable "Webhook.Body")
ctype=$(get_octopusvariable "Webhook.ContentType")
out="$(mktemp)"
if ! status=$(curl -sS -o "$out" -w '%{http_code}' -X POST -H "Content-Type: $ctype" --data-binary "$body" "$url"); then
    fail_step "The webhook $url could not be reached"
fi
if [ "$status" -ge 400 ]; then
    fail_step "The webhook $url answered HTTP $status: $(cat "$out")"
fi
write_highlight "The webhook answered HTTP $status"
"#;

/// A webhook notification in the style of the community library's Bash HTTP templates.
fn webhook_template() -> Value {
    json!({
        "Id": "0d6f6d1e-5d0c-4c3e-9a55-3f1b7c2a9e03",
        "Name": "Ferry - Webhook POST (Bash)",
        "Description": "POSTs a message to a webhook URL with curl.",
        "ActionType": "Octopus.Script",
        "Version": 1,
        "Packages": [],
        "Properties": {
            "Octopus.Action.Script.ScriptSource": "Inline",
            "Octopus.Action.Script.Syntax": "Bash",
            "Octopus.Action.Script.ScriptBody": WEBHOOK_BODY
        },
        "Parameters": [
            {"Id": "w1", "Name": "Webhook.Url", "Label": "URL", "HelpText": "Where to POST.",
             "DefaultValue": "", "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}},
            {"Id": "w2", "Name": "Webhook.Body", "Label": "Body", "HelpText": "What to send.",
             "DefaultValue": "{\"text\": \"#{Octopus.Project.Name} #{Octopus.Release.Number} deployed to #{Octopus.Environment.Name}\"}",
             "DisplaySettings": {"Octopus.ControlType": "MultiLineText"}},
            {"Id": "w3", "Name": "Webhook.ContentType", "Label": "Content type", "HelpText": "",
             "DefaultValue": "application/json", "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}}
        ],
        "$Meta": {"ExportedAt": "2026-01-01T00:00:00.000Z", "OctopusVersion": "2025.2.0", "Type": "ActionTemplate"},
        "LastModifiedBy": "ferry-tests",
        "Category": "other"
    })
}

/// A tiny HTTP server on loopback: answers `/fail` with 500 and anything else with 200, and
/// records each request's path and body.
async fn webhook_sink() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let got: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
    let store = got.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let path = text.split(' ').nth(1).unwrap_or_default().to_string();
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                    store.lock().unwrap().push((path.clone(), body));
                    let (status, msg) = if path == "/fail" {
                        ("500 Internal Server Error", "nope")
                    } else {
                        ("200 OK", "ok")
                    };
                    let _ = sock
                        .write_all(
                            format!(
                                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                                msg.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (port, got)
}

#[tokio::test]
async fn a_webhook_notification_template_runs_unchanged() {
    let s = Server::start();
    s.create_environment("Production").await;
    let (port, got) = webhook_sink().await;
    let t = import(&s, webhook_template()).await;
    s.create_project("Notify").await;
    s.put(
        "/api/Spaces-1/projects/Notify/deploymentprocesses",
        json!({"Steps": [
            template_step("Tell chat", &t, json!({"Webhook.Url": format!("http://127.0.0.1:{port}/hook")}), None),
            template_step("Tell a broken hook", &t, json!({"Webhook.Url": format!("http://127.0.0.1:{port}/fail"), "Webhook.Body": "plain #{Octopus.Release.Number}", "Webhook.ContentType": "text/plain"}), None)
        ]}),
    )
    .await;
    s.create_release("Notify", "3.1.4").await;
    let task = s.deploy("Notify", "3.1.4", "Production").await;
    let done = s.wait_task(&task, Duration::from_secs(60)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(done["State"], "Failed", "{raw}");
    assert!(raw.contains("The webhook answered HTTP 200"), "{raw}");
    assert!(raw.contains("answered HTTP 500: nope"), "{raw}");
    let calls = got.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            (
                "/hook".to_string(),
                "{\"text\": \"Notify 3.1.4 deployed to Production\"}".to_string()
            ),
            ("/fail".to_string(), "plain 3.1.4".to_string()),
        ]
    );
}

#[tokio::test]
async fn sensitive_parameter_values_are_sealed_in_the_process() {
    let s = Server::start();
    s.create_environment("Test").await;
    let bash = import(&s, bash_template()).await;
    s.create_project("Sealed").await;
    s.put(
        "/api/Spaces-1/projects/Sealed/deploymentprocesses",
        json!({"Steps": [template_step("Greet", &bash,
            json!({"Greet.Name": "vault", "Greet.Token": "lit-Token-9911"}), None)]}),
    )
    .await;
    // The process never shows the value; sending what was read back keeps it.
    let process = s
        .get("/api/Spaces-1/projects/Sealed/deploymentprocesses")
        .await;
    let text = process.to_string();
    assert!(!text.contains("lit-Token-9911"), "{text}");
    assert!(text.contains("ferry-sealed:"), "{text}");
    s.put("/api/Spaces-1/projects/Sealed/deploymentprocesses", process)
        .await;
    let (task, log) = deploy_task(&s, "Sealed", "1.0.0", "Success").await;
    assert!(
        log.contains("token is ********") && !log.contains("lit-Token-9911"),
        "{task}: {log}"
    );
    // Nor does the release's snapshot.
    let rel = s.get("/api/Spaces-1/projects/Sealed/releases/1.0.0").await;
    let snap = s
        .get(&format!(
            "/api/Spaces-1/deploymentprocesses/{}",
            rel["ProjectDeploymentProcessSnapshotId"].as_str().unwrap()
        ))
        .await;
    assert!(!snap.to_string().contains("lit-Token-9911"), "{snap}");
}
