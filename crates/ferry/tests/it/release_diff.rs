//! Compare releases: `GET /api/{space}/releases/{id}/compare/{otherId}` and
//! `ferry release diff`. Two releases of a project with script steps changed, removed and
//! added, a role changed, plain and sensitive variables changed and added; the answer lists
//! exactly those changes and never a sensitive value, old or new. Also package versions,
//! unknown ids (404), releases of two projects (400) and the CLI's table and JSON output.

use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Server, ferry_bin};

const OLD_SECRET: &str = "pw-OLD-7f3a9d";
const NEW_SECRET: &str = "pw-NEW-8b2c1e";
const SAME_SECRET: &str = "tok-SAME-55c1aa";

fn ferry(s: &Server, args: &[&str]) -> Output {
    Command::new(ferry_bin())
        .args(args)
        .env("FERRY_URL", &s.url)
        .env("FERRY_API_KEY", &s.api_key)
        .env_remove("FERRY_SPACE")
        .output()
        .unwrap()
}

fn assert_no_secrets(what: &str, text: &str) {
    for secret in [OLD_SECRET, NEW_SECRET, SAME_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} shows a sensitive value:\n{text}"
        );
    }
}

async fn variable_set(s: &Server, project: &str) -> (String, Value) {
    let id = s.get(&format!("/api/Spaces-1/projects/{project}")).await["VariableSetId"]
        .as_str()
        .unwrap()
        .to_string();
    let set = s.get(&format!("/api/Spaces-1/variables/{id}")).await;
    (id, set)
}

fn script_step(name: &str, body: &str, roles: Option<&str>) -> Value {
    let mut step = json!({
        "Name": name,
        "Actions": [{
            "ActionType": "Octopus.Script",
            "Properties": {
                "Octopus.Action.Script.ScriptBody": body,
                "Octopus.Action.Script.Syntax": "Bash",
                "Octopus.Action.RunOnServer": "true"
            }
        }]
    });
    if let Some(r) = roles {
        step["Properties"] = json!({"Octopus.Action.TargetRoles": r});
    }
    step
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

fn by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["Name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {list}"))
}

#[tokio::test]
async fn compare_releases_reports_exactly_what_changed() {
    let s = Server::start();
    let dev = s.create_environment("Development").await["Id"].clone();
    s.create_project("Shop").await;
    s.put(
        "/api/Spaces-1/projects/Shop/deploymentprocesses",
        json!({"Steps": [
            script_step("Build", "echo build\necho v1\necho done\n", None),
            script_step("Migrate", "echo migrate\n", None),
            script_step("Cleanup", "echo cleanup\n", Some("web")),
        ]}),
    )
    .await;
    let (set_id, mut set) = variable_set(&s, "Shop").await;
    set["Variables"] = json!([
        {"Name": "Greeting", "Value": "hello", "Scope": {"Environment": [dev]}},
        {"Name": "Region", "Value": "eu"},
        {"Name": "DbPassword", "Value": OLD_SECRET, "IsSensitive": true},
        {"Name": "ApiToken", "Value": SAME_SECRET, "IsSensitive": true},
    ]);
    s.put(&format!("/api/Spaces-1/variables/{set_id}"), set)
        .await;
    let r1 = s.create_release("Shop", "1.0.0").await["ReleaseId"]
        .as_str()
        .unwrap()
        .to_string();

    // Change a script, remove a step, add a step, change a role.
    let mut process = s
        .get("/api/Spaces-1/projects/Shop/deploymentprocesses")
        .await;
    let mut steps: Vec<Value> = process["Steps"].as_array().unwrap().clone();
    steps.retain(|st| st["Name"] != "Migrate");
    for st in steps.iter_mut() {
        if st["Name"] == "Build" {
            st["Actions"][0]["Properties"]["Octopus.Action.Script.ScriptBody"] =
                json!("echo build\necho v2\necho done\n");
        }
        if st["Name"] == "Cleanup" {
            st["Properties"]["Octopus.Action.TargetRoles"] = json!("api");
        }
    }
    steps.push(script_step("Notify", "echo notify\n", None));
    process["Steps"] = json!(steps);
    s.put("/api/Spaces-1/projects/Shop/deploymentprocesses", process)
        .await;
    // Change a plain value and a sensitive one, leave the other sensitive one, add one.
    let (_, mut set) = variable_set(&s, "Shop").await;
    for v in set["Variables"].as_array_mut().unwrap() {
        if v["Name"] == "Greeting" {
            v["Value"] = json!("hi");
        }
        if v["Name"] == "DbPassword" {
            v["Value"] = json!(NEW_SECRET);
        }
    }
    set["Variables"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Name": "Color", "Value": "blue"}));
    s.put(&format!("/api/Spaces-1/variables/{set_id}"), set)
        .await;
    let r2 = s.create_release("Shop", "1.0.1").await["ReleaseId"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, d) = s
        .request(
            "GET",
            &format!("/api/Spaces-1/releases/{r1}/compare/{r2}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_no_secrets("the compare endpoint", &d.to_string());
    assert_eq!(d["From"], json!({"Id": r1, "Version": "1.0.0"}));
    assert_eq!(d["To"], json!({"Id": r2, "Version": "1.0.1"}));
    assert_eq!(d["Packages"], json!([]));

    // Steps.
    assert_eq!(names(&d["Steps"]["Added"]), ["Notify"], "{d}");
    assert_eq!(names(&d["Steps"]["Removed"]), ["Migrate"], "{d}");
    let changed = &d["Steps"]["Changed"];
    assert_eq!(changed.as_array().unwrap().len(), 2, "{changed}");
    let build = by_name(changed, "Build");
    assert_eq!(
        build["Changes"],
        json!(["Octopus.Action.Script.ScriptBody changed"])
    );
    assert_eq!(
        build["ScriptDiffs"][0]["Lines"],
        json!(["-echo v1", "+echo v2"])
    );
    let cleanup = by_name(changed, "Cleanup");
    // Migrate was removed before it, which is not a move: only the roles changed.
    assert_eq!(
        cleanup["Changes"],
        json!(["Roles changed from [web] to [api]"]),
        "{cleanup}"
    );

    // Variables.
    let vars = &d["Variables"];
    assert_eq!(
        vars["Added"],
        json!([{"Name": "Color", "Source": "project", "Scope": {}, "Value": "blue"}])
    );
    assert_eq!(vars["Removed"], json!([]));
    assert_eq!(vars["Changed"].as_array().unwrap().len(), 2, "{vars}");
    let greeting = by_name(&vars["Changed"], "Greeting");
    assert_eq!(greeting["From"], "hello");
    assert_eq!(greeting["To"], "hi");
    assert_eq!(greeting["Scope"], json!({"Environment": [dev]}));
    assert_eq!(greeting["Changes"], json!(["Value"]));
    let password = by_name(&vars["Changed"], "DbPassword");
    assert_eq!(
        password["From"],
        json!({"Sensitive": true, "Changed": true})
    );
    assert_eq!(password["To"], json!({"Sensitive": true, "Changed": true}));
    assert_eq!(password["Changes"], json!(["Value"]));
    let token = by_name(&vars["SensitiveUnchanged"], "ApiToken");
    assert_eq!(token["To"], json!({"Sensitive": true, "Changed": false}));
    assert_eq!(vars["SensitiveUnchanged"].as_array().unwrap().len(), 1);

    // A release compared with itself: nothing changed, the sensitive values are unchanged.
    let same = s
        .get(&format!("/api/Spaces-1/releases/{r2}/compare/{r2}"))
        .await;
    assert_eq!(same["Steps"]["Changed"], json!([]));
    assert_eq!(same["Variables"]["Changed"], json!([]));
    assert_eq!(
        same["Variables"]["SensitiveUnchanged"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_no_secrets("the compare endpoint", &same.to_string());

    // Unknown ids: 404 naming the id.
    let (status, e) = s
        .request(
            "GET",
            &format!("/api/Spaces-1/releases/{r1}/compare/Releases-999"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
    assert!(
        e["ErrorMessage"].as_str().unwrap().contains("Releases-999"),
        "{e}"
    );
    let (status, _) = s
        .request(
            "GET",
            &format!("/api/Spaces-1/releases/Releases-998/compare/{r1}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Releases of two projects: 400 naming both.
    s.create_project("Other").await;
    s.set_scripts("Other", &[("Hello", "echo hi")]).await;
    let r3 = s.create_release("Other", "1.0.0").await["ReleaseId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, e) = s
        .request(
            "GET",
            &format!("/api/Spaces-1/releases/{r1}/compare/{r3}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    // Octopus puts a 400's reason in Errors.
    let message = e["Errors"][0].as_str().unwrap();
    assert!(
        message.contains("'Shop'") && message.contains("'Other'"),
        "{e}"
    );

    // The CLI: a table with the three sections, exit 0.
    let out = ferry(
        &s,
        &["release", "diff", "--project", "Shop", "1.0.0", "1.0.1"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_no_secrets("ferry release diff", &format!("{stdout}{stderr}"));
    for line in [
        "Comparing Shop 1.0.0",
        "\nPackages\n  (no changes)\n",
        "\nSteps\n",
        "  + Notify\n",
        "  - Migrate\n",
        "  ~ Build\n",
        "      Octopus.Action.Script.ScriptBody changed\n",
        "          -echo v1\n",
        "          +echo v2\n",
        "      Roles changed from [web] to [api]\n",
        "\nVariables\n",
        "  + Color = \"blue\"\n",
        "  ~ DbPassword: (sensitive) value changed\n",
        "  = ApiToken: (sensitive) value unchanged\n",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("  ~ Greeting [Environment: ") && stdout.contains("\"hello\" -> \"hi\""),
        "{stdout}"
    );
    // --output json prints the API's answer.
    let out = ferry(
        &s,
        &[
            "release",
            "diff",
            "--project",
            "Shop",
            "1.0.0",
            "1.0.1",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, d);
    // No differences is still exit 0.
    let out = ferry(
        &s,
        &["release", "diff", "--project", "Shop", "1.0.1", "1.0.1"],
    );
    assert!(out.status.success());
    // A missing release: exit 1 with the API's message.
    let out = ferry(
        &s,
        &["release", "diff", "--project", "Shop", "1.0.0", "9.9.9"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: Release '9.9.9' of project 'Shop' was not found"),
        "{stderr}"
    );
}

#[tokio::test]
async fn compare_releases_reports_package_versions() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    for v in ["1.0.0", "1.1.0"] {
        let file = crate::package_deploy::make_package(work.path(), v);
        assert!(crate::package_deploy::push(&s, &file).await.is_success());
    }
    s.create_project("Web").await;
    s.put(
        "/api/Spaces-1/projects/Web/deploymentprocesses",
        json!({"Steps": [{
            "Name": "Deploy web",
            "Actions": [{
                "ActionType": "Octopus.TentaclePackage",
                "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin", "AcquisitionLocation": "Server"}],
                "Properties": {
                    "Octopus.Action.RunOnServer": "true",
                    "Octopus.Action.Package.PackageId": "Acme.Web",
                    "Octopus.Action.Package.FeedId": "feeds-builtin"
                }
            }]
        }]}),
    )
    .await;
    let mut ids = Vec::new();
    for (release, package) in [("1.0.0", "1.0.0"), ("1.0.1", "1.1.0"), ("1.0.2", "1.1.0")] {
        let r = s
            .post(
                "/api/Spaces-1/releases/create/v1",
                json!({"ProjectName": "Web", "ReleaseVersion": release, "PackageVersion": package}),
            )
            .await;
        ids.push(r["ReleaseId"].as_str().unwrap().to_string());
    }
    let d = s
        .get(&format!(
            "/api/Spaces-1/releases/{}/compare/{}",
            ids[0], ids[1]
        ))
        .await;
    assert_eq!(
        d["Packages"],
        json!([{"ActionName": "Deploy web", "PackageReferenceName": "", "From": "1.0.0", "To": "1.1.0"}])
    );
    assert_eq!(d["Steps"]["Changed"], json!([]));
    let d = s
        .get(&format!(
            "/api/Spaces-1/releases/{}/compare/{}",
            ids[1], ids[2]
        ))
        .await;
    assert_eq!(d["Packages"], json!([]));
    let out = ferry(
        &s,
        &["release", "diff", "--project", "Web", "1.0.0", "1.0.1"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("\nPackages\n  ~ Deploy web: 1.0.0 -> 1.1.0\n"),
        "{stdout}"
    );
}
