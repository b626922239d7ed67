//! The project pages over HTTP: the project list and creating a project, the process editor
//! (script, package and manual steps through the forms; reordering; disabling), settings,
//! variables (a sensitive value never reaches the page), channels, triggers, the overview,
//! errors next to fields, and what a user without permissions sees.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;
use crate::portal_client::{Portal, admin_password, create_user};

fn id_from(location: &str, prefix: &str) -> String {
    location
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{location} does not start with {prefix}"))
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

async fn process(s: &Server, project: &str) -> Value {
    s.get(&format!(
        "/api/Spaces-1/projects/{project}/deploymentprocesses"
    ))
    .await
}

fn step<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["Steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {p}"))
}

#[tokio::test]
async fn projects_process_settings_and_variables() {
    let s = Server::start();
    let dev = s.create_environment("Development").await;
    let p = Portal::sign_in(&s, "admin", &admin_password(&s)).await;

    // The empty list offers to add a project.
    let list = p.html("/app/Spaces-1/projects").await;
    assert!(list.contains("id=\"add-project\""), "{list}");
    assert!(list.contains("No projects yet"), "{list}");

    // A bad input: the error next to the field, with 400, and the values kept.
    let form = p.html("/app/Spaces-1/projects/new").await;
    for id in [
        "project-name",
        "project-description",
        "project-group",
        "project-lifecycle",
        "project-create",
    ] {
        assert!(form.contains(&format!("id=\"{id}\"")), "{id}: {form}");
    }
    let bad = p
        .post(
            "/app/Spaces-1/projects",
            &[("name", "  "), ("description", "kept text")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body.contains("id=\"project-name-error\""),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("kept text"), "{}", bad.body);

    // Create through the form: to the process page.
    let groups = s.get("/api/Spaces-1/projectgroups/all").await;
    let lifecycles = s.get("/api/Spaces-1/lifecycles/all").await;
    let made = p
        .post(
            "/app/Spaces-1/projects",
            &[
                ("name", "Web shop"),
                ("description", "The shop"),
                ("group", groups[0]["Id"].as_str().unwrap()),
                ("lifecycle", lifecycles[0]["Id"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let pid = id_from(&made.location, "/app/Spaces-1/projects/");
    assert!(made.location.ends_with("/process"), "{}", made.location);
    let api = s.get(&format!("/api/Spaces-1/projects/{pid}")).await;
    assert_eq!(api["Name"], "Web shop");
    assert_eq!(api["Description"], "The shop");
    let list = p.html("/app/Spaces-1/projects?q=shop").await;
    assert!(
        list.contains("Web shop") && list.contains(groups[0]["Name"].as_str().unwrap()),
        "{list}"
    );
    let none = p.html("/app/Spaces-1/projects?q=nothing-like-it").await;
    assert!(none.contains("No projects match"), "{none}");

    // The process page: empty, with the add links and the tabs.
    let base = format!("/app/Spaces-1/projects/{pid}");
    let page = p.html(&format!("{base}/process")).await;
    for id in [
        "add-step-script",
        "add-step-package",
        "add-step-manual",
        "process-empty",
        "project-tabs",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}: {page}");
    }
    assert!(page.contains("aria-current=\"page\">Process"), "{page}");

    // A script step on targets, a package step on the server, a manual step.
    let form = p.html(&format!("{base}/process/new?type=script")).await;
    for id in [
        "step-name",
        "step-run-on-server",
        "step-run-on-targets",
        "step-roles",
        "step-script",
        "step-syntax",
        "step-condition",
        "step-condition-expression",
        "step-environments",
        "step-required",
        "step-save",
    ] {
        assert!(form.contains(&format!("id=\"{id}\"")), "{id}: {form}");
    }
    let empty = p
        .post(
            &format!("{base}/process/steps"),
            &[("kind", "script"), ("name", ""), ("script", "echo hi")],
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
    assert!(
        empty.body.contains("id=\"step-name-error\""),
        "{}",
        empty.body
    );
    assert!(empty.body.contains("echo hi"), "{}", empty.body);
    let r = p
        .post(
            &format!("{base}/process/steps"),
            &[
                ("kind", "script"),
                ("name", "Migrate"),
                ("run_on", "targets"),
                ("roles", "web, db"),
                ("script", "echo migrate\n"),
                ("syntax", "Python"),
                ("condition", "Variable"),
                ("condition_expression", "#{if Flag}True#{/if}"),
                ("environments", dev["Id"].as_str().unwrap()),
                ("required", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location, format!("{base}/process"));
    let form = p.html(&format!("{base}/process/new?type=package")).await;
    assert!(form.contains("id=\"step-package-id\""), "{form}");
    let r = p
        .post(
            &format!("{base}/process/steps"),
            &[
                ("kind", "package"),
                ("name", "Deploy web"),
                ("run_on", "server"),
                ("package_id", "Acme.Web"),
                ("condition", "Success"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let form = p.html(&format!("{base}/process/new?type=manual")).await;
    assert!(
        form.contains("id=\"step-instructions\"") && form.contains("id=\"step-responsible-teams\""),
        "{form}"
    );
    let r = p
        .post(
            &format!("{base}/process/steps"),
            &[
                ("kind", "manual"),
                ("name", "Approve"),
                ("instructions", "Check the dashboards"),
                ("condition", "Always"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // A step template step: one input per parameter, with its default.
    let tpl = s
        .post(
            "/api/Spaces-1/actiontemplates",
            json!({"Name": "Greet", "ActionType": "Octopus.Script",
                   "Properties": {"Octopus.Action.Script.ScriptBody": "echo hi #{Greet.Who}", "Octopus.Action.Script.Syntax": "Bash"},
                   "Parameters": [{"Name": "Greet.Who", "Label": "Who to greet", "HelpText": "A name", "DefaultValue": "world",
                                   "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}}]}),
        )
        .await;
    let tid = tpl["Id"].as_str().unwrap();
    let page = p.html(&format!("{base}/process")).await;
    assert!(
        page.contains("id=\"add-step-template\"") && page.contains(tid),
        "{page}"
    );
    let form = p
        .html(&format!("{base}/process/new?type=template&template={tid}"))
        .await;
    assert!(
        form.contains("id=\"step-param-Greet.Who\"") && form.contains("name=\"param-Greet.Who\""),
        "{form}"
    );
    assert!(
        form.contains("Who to greet") && form.contains("value=\"world\""),
        "{form}"
    );
    let r = p
        .post(
            &format!("{base}/process/steps"),
            &[
                ("kind", "template"),
                ("template", tid),
                ("name", "Say hi"),
                ("run_on", "server"),
                ("param-Greet.Who", "Ferry"),
                ("condition", "Success"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let proc = process(&s, &pid).await;
    let g = &step(&proc, "Say hi")["Actions"][0];
    assert_eq!(g["Properties"]["Octopus.Action.Template.Id"], tpl["Id"]);
    assert_eq!(g["Properties"]["Greet.Who"], "Ferry");
    assert_eq!(
        g["Properties"]["Octopus.Action.Script.ScriptBody"],
        "echo hi #{Greet.Who}"
    );
    let gid = step(&proc, "Say hi")["Id"].as_str().unwrap().to_string();
    let r = p
        .post(&format!("{base}/process/steps/{gid}/delete"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    let proc = process(&s, &pid).await;
    assert_eq!(proc["Steps"].as_array().unwrap().len(), 3, "{proc}");
    let m = step(&proc, "Migrate");
    assert_eq!(m["Condition"], "Variable");
    assert_eq!(m["Properties"]["Octopus.Action.TargetRoles"], "web,db");
    assert_eq!(
        m["Properties"]["Octopus.Step.ConditionVariableExpression"],
        "#{if Flag}True#{/if}"
    );
    let a = &m["Actions"][0];
    assert_eq!(a["ActionType"], "Octopus.Script");
    assert_eq!(
        a["Properties"]["Octopus.Action.Script.ScriptBody"],
        "echo migrate\n"
    );
    assert_eq!(a["Properties"]["Octopus.Action.Script.Syntax"], "Python");
    assert_eq!(a["Properties"]["Octopus.Action.RunOnServer"], "false");
    assert_eq!(a["Environments"], json!([dev["Id"]]));
    assert_eq!(a["IsRequired"], true);
    let d = &step(&proc, "Deploy web")["Actions"][0];
    assert_eq!(d["ActionType"], "Octopus.TentaclePackage");
    assert_eq!(
        d["Properties"]["Octopus.Action.Package.PackageId"],
        "Acme.Web"
    );
    assert_eq!(
        d["Properties"]["Octopus.Action.Package.FeedId"],
        "feeds-builtin"
    );
    assert_eq!(d["Properties"]["Octopus.Action.RunOnServer"], "true");
    assert_eq!(d["Packages"][0]["PackageId"], "Acme.Web");
    assert_eq!(d["Packages"][0]["FeedId"], "feeds-builtin");
    let ap = step(&proc, "Approve");
    assert_eq!(ap["Condition"], "Always");
    assert_eq!(ap["Actions"][0]["ActionType"], "Octopus.Manual");
    assert_eq!(
        ap["Actions"][0]["Properties"]["Octopus.Action.Manual.Instructions"],
        "Check the dashboards"
    );

    // The process page lists them in words.
    let page = p.html(&format!("{base}/process")).await;
    assert!(page.contains("targets with roles web, db"), "{page}");
    assert!(page.contains("Ferry server"), "{page}");
    assert!(
        page.contains("Deploy a package") && page.contains("Manual intervention"),
        "{page}"
    );
    assert!(page.contains("Only Development"), "{page}");

    // Edit one step: the form shows its values; the others are untouched.
    let mid = m["Id"].as_str().unwrap();
    let edit = p.html(&format!("{base}/process/steps/{mid}")).await;
    assert!(
        edit.contains("echo migrate") && edit.contains("value=\"web, db\""),
        "{edit}"
    );
    let r = p
        .post(
            &format!("{base}/process/steps/{mid}"),
            &[
                ("kind", "script"),
                ("name", "Migrate db"),
                ("run_on", "server"),
                ("script", "echo v2"),
                ("syntax", "Bash"),
                ("condition", "Success"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let proc = process(&s, &pid).await;
    let m2 = step(&proc, "Migrate db");
    assert_eq!(m2["Id"], m["Id"]);
    assert!(
        m2["Properties"].get("Octopus.Action.TargetRoles").is_none(),
        "{m2}"
    );
    assert_eq!(
        m2["Actions"][0]["Properties"]["Octopus.Action.RunOnServer"],
        "true"
    );
    assert_eq!(
        m2["Actions"][0]["Properties"]["Octopus.Action.Script.ScriptBody"],
        "echo v2"
    );

    // Reorder: Approve (third) up, then disable and re-enable it.
    let apid = ap["Id"].as_str().unwrap();
    let r = p
        .post(
            &format!("{base}/process/steps/{apid}/move"),
            &[("direction", "up")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let proc = process(&s, &pid).await;
    let names: Vec<&str> = proc["Steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Migrate db", "Approve", "Deploy web"]);
    let r = p
        .post(&format!("{base}/process/steps/{apid}/toggle"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        step(&process(&s, &pid).await, "Approve")["Actions"][0]["IsDisabled"],
        true
    );
    let page = p.html(&format!("{base}/process")).await;
    assert!(
        page.contains("step-disabled") && page.contains(">Enable<"),
        "{page}"
    );
    // Delete the package step.
    let did = step(&proc, "Deploy web")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = p
        .post(&format!("{base}/process/steps/{did}/delete"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        process(&s, &pid).await["Steps"].as_array().unwrap().len(),
        2
    );

    // Settings round trip.
    let page = p.html(&format!("{base}/settings")).await;
    for id in [
        "settings-name",
        "settings-description",
        "settings-group",
        "settings-lifecycle",
        "settings-version-template",
        "settings-tenanted",
        "settings-disabled",
        "settings-save",
        "settings-delete",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}: {page}");
    }
    let r = p
        .post(
            &format!("{base}/settings"),
            &[
                ("name", "Web shop 2"),
                ("description", "Changed"),
                ("group", groups[0]["Id"].as_str().unwrap()),
                ("lifecycle", lifecycles[0]["Id"].as_str().unwrap()),
                ("version_template", "1.0.#{Octopus.Version.NextPatch}"),
                ("tenanted", "TenantedOrUntenanted"),
                ("disabled", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let api = s.get(&format!("/api/Spaces-1/projects/{pid}")).await;
    assert_eq!(api["Name"], "Web shop 2");
    assert_eq!(api["Description"], "Changed");
    assert_eq!(api["TenantedDeploymentMode"], "TenantedOrUntenanted");
    assert_eq!(api["IsDisabled"], true);
    assert_eq!(
        api["VersioningStrategy"]["Template"],
        "1.0.#{Octopus.Version.NextPatch}"
    );
    let page = p.html(&format!("{base}/settings")).await;
    assert!(
        page.contains("value=\"Web shop 2\"")
            && page.contains("id=\"settings-disabled\" name=\"disabled\" value=\"true\" checked"),
        "{page}"
    );
    let bad = p
        .post(
            &format!("{base}/settings"),
            &[("name", ""), ("tenanted", "Untenanted")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body.contains("id=\"settings-name-error\""),
        "{}",
        bad.body
    );

    // Variables: a plain one and a sensitive one; the secret never reaches the page.
    let page = p.html(&format!("{base}/variables")).await;
    for id in [
        "var-name",
        "var-value",
        "var-sensitive",
        "var-environments",
        "var-roles",
        "var-prompt-label",
        "var-add",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}: {page}");
    }
    let r = p
        .post(
            &format!("{base}/variables"),
            &[
                ("name", "DbHost"),
                ("value", "db.internal"),
                ("environments", dev["Id"].as_str().unwrap()),
                ("roles", "web"),
                ("prompt_label", "Database host"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = p
        .post(
            &format!("{base}/variables"),
            &[
                ("name", "DbPassword"),
                ("value", "hunter2-very-secret"),
                ("sensitive", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = p.html(&format!("{base}/variables")).await;
    assert!(!page.contains("hunter2-very-secret"), "{page}");
    assert!(
        page.contains("••••••") && page.contains("db.internal"),
        "{page}"
    );
    assert!(
        page.contains("Environment: Development") && page.contains("Role: web"),
        "{page}"
    );
    assert!(page.contains("Prompted: Database host"), "{page}");
    let vars = s
        .get(&format!("/api/Spaces-1/projects/{pid}/variables"))
        .await;
    let secret = vars["Variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "DbPassword")
        .unwrap()
        .clone();
    assert_eq!(secret["IsSensitive"], true);
    // Editing the sensitive variable's scope keeps its value (sent back unchanged).
    let vid = secret["Id"].as_str().unwrap();
    let edit = p.html(&format!("{base}/variables/{vid}")).await;
    assert!(!edit.contains("hunter2-very-secret"), "{edit}");
    let r = p
        .post(
            &format!("{base}/variables/{vid}"),
            &[
                ("name", "DbPassword"),
                ("value", ""),
                ("sensitive", "true"),
                ("roles", "db"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let explain = s
        .get(&format!("/api/Spaces-1/projects/{pid}/variables"))
        .await;
    let v = explain["Variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "DbPassword")
        .unwrap()
        .clone();
    assert_eq!(v["Scope"]["Role"], json!(["db"]));
    assert_eq!(v["IsSensitive"], true);
    // An empty name: the error next to the field.
    let bad = p
        .post(
            &format!("{base}/variables"),
            &[("name", ""), ("value", "x")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("id=\"var-name-error\""), "{}", bad.body);
    // Delete the plain one.
    let plain = vars["Variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "DbHost")
        .unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = p
        .post(&format!("{base}/variables/{plain}/delete"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let vars = s
        .get(&format!("/api/Spaces-1/projects/{pid}/variables"))
        .await;
    assert_eq!(vars["Variables"].as_array().unwrap().len(), 1, "{vars}");

    // Channels: a second channel; overview and triggers answer.
    let page = p.html(&format!("{base}/channels")).await;
    for id in [
        "channel-name",
        "channel-lifecycle",
        "channel-rule-action",
        "channel-rule-range",
        "channel-rule-tag",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}: {page}");
    }
    let r = p
        .post(
            &format!("{base}/channels"),
            &[("name", "Hotfix"), ("lifecycle", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = p.html(&format!("{base}/channels")).await;
    assert!(
        page.contains("Hotfix") && page.contains("Default"),
        "{page}"
    );
    let trig = p.html(&format!("{base}/triggers")).await;
    assert!(trig.contains("package-trigger-state"), "{trig}");
    let ov = p.html(&base).await;
    assert!(
        ov.contains("Define the process, then create a release"),
        "{ov}"
    );
    assert!(ov.contains("id=\"create-release\""), "{ov}");
    assert!(
        ov.contains("<h1 id=\"project-title\">Web shop 2</h1>"),
        "{ov}"
    );
}

#[tokio::test]
async fn overview_and_a_user_without_permissions() {
    let s = Server::start();
    s.create_environment("Development").await;
    let project = s.create_project("Api").await;
    let pid = project["Id"].as_str().unwrap();
    s.set_scripts("Api", &[("Hello", "echo hello")]).await;
    s.create_release("Api", "1.0.0").await;
    let task = s.deploy("Api", "1.0.0", "Development").await;
    s.wait_task(&task, std::time::Duration::from_secs(60)).await;

    let admin = Portal::sign_in(&s, "admin", &admin_password(&s)).await;
    let ov = admin.html(&format!("/app/Spaces-1/projects/{pid}")).await;
    assert!(ov.contains("1.0.0") && ov.contains("Development"), "{ov}");
    assert!(ov.contains(&format!("/app/Spaces-1/tasks/{task}")), "{ov}");
    assert!(ov.contains("/app/Spaces-1/releases/Releases-"), "{ov}");
    assert!(ov.contains("Succeeded"), "{ov}");

    // A user in no team: no "Add project", no step actions (or refused).
    create_user(&s, "nobody", "Passw0rd-nobody!").await;
    let u = Portal::sign_in(&s, "nobody", "Passw0rd-nobody!").await;
    let list = u.get("/app/Spaces-1/projects").await;
    assert!(!list.body.contains("id=\"add-project\""), "{}", list.body);
    let page = u
        .get(&format!("/app/Spaces-1/projects/{pid}/process"))
        .await;
    assert!(
        page.status == StatusCode::FORBIDDEN
            || page.status == StatusCode::NOT_FOUND
            || page.status == StatusCode::OK,
        "{}",
        page.status
    );
    assert!(
        !page.body.contains("id=\"add-step-script\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("step-edit"), "{}", page.body);
    // Posting anyway is refused by the API.
    let r = u
        .post(
            &format!("/app/Spaces-1/projects/{pid}/process/steps"),
            &[("kind", "script"), ("name", "Sneaky"), ("script", "echo")],
        )
        .await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
    assert_eq!(
        s.get(&format!("/api/Spaces-1/projects/{pid}/deploymentprocesses"))
            .await["Steps"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
