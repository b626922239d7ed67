//! Variables through the real binary: sensitive values are write-only and sealed at rest (the
//! database file never holds them), scope ids are checked, library variable sets and their
//! inclusion in release snapshots, prompted variables at deployment time, "update variables"
//! of a release, and explain through the API and the CLI. No secret reaches an API answer, an
//! audit event, an error body or the server's own log.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_crypto::{MasterKey, open, variable_aad};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Server, ferry_bin};

const SPACE: &str = "/api/Spaces-1";

fn set_path(project_id: &str) -> String {
    format!("{SPACE}/variables/variableset-{project_id}")
}

fn master_key(s: &Server) -> MasterKey {
    let text = std::fs::read_to_string(s.data_dir.join("master.key")).unwrap();
    MasterKey::from_base64(&text).unwrap()
}

async fn stored_doc(s: &Server, id: &str) -> Value {
    let url = format!("sqlite://{}", s.data_dir.join("ferry.db").display());
    let db = ferry_store::Db::open(&url).await.unwrap();
    let doc = db
        .get_doc(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no document {id}"));
    serde_json::from_str(&doc.body).unwrap()
}

/// Every byte the store has written: the database file and its WAL.
fn database_bytes(s: &Server) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&s.data_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("ferry.db") {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains_bytes(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Asserts that no secret appears in the API's answers we kept, the audit log, the database
/// files or the server's own log.
async fn assert_nowhere(s: &Server, secrets: &[&str], answers: &[&Value]) {
    let events = s.get("/api/events?take=100000").await.to_string();
    let db = database_bytes(s);
    let log = s.output_text();
    for secret in secrets {
        assert!(
            !events.contains(secret),
            "an event holds {secret}: {events}"
        );
        assert!(!contains_bytes(&db, secret), "the database holds {secret}");
        assert!(
            !log.contains(secret),
            "the server log holds {secret}:\n{log}"
        );
        for a in answers {
            assert!(
                !a.to_string().contains(secret),
                "an answer holds {secret}: {a}"
            );
        }
    }
}

fn variable<'a>(set: &'a Value, name: &str) -> &'a Value {
    set["Variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == name)
        .unwrap_or_else(|| panic!("no variable {name} in {set}"))
}

fn errors(body: &Value) -> String {
    body["Errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Runs a `ferry` client command against the server; returns success and stdout + stderr.
fn cli(s: &Server, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(ferry_bin())
        .args(args)
        .env("FERRY_URL", &s.url)
        .env("FERRY_API_KEY", &s.api_key)
        .env_remove("FERRY_SPACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn sensitive_values_are_write_only_and_sealed_at_rest() {
    const SECRET: &str = "hunter2-Zq8-never-shown";
    const TOKEN: &str = "tok-ABC-sensitive-2";
    const ROTATED: &str = "rotated-Secret-XYZ-77";
    let s = Server::start();
    s.create_environment("Production").await;
    let p = s.create_project("Vault").await;
    let pid = p["Id"].as_str().unwrap();
    let path = set_path(pid);
    let put = s
        .put(
            &path,
            json!({"Variables": [
                {"Name": "DbPassword", "Value": SECRET, "IsSensitive": true, "SealedValue": "FERRY1:forged"},
                {"name": "ApiToken", "value": TOKEN, "type": "Sensitive"},
                {"Name": "Plain", "Value": "visible"},
            ]}),
        )
        .await;
    for name in ["DbPassword", "ApiToken"] {
        let v = variable(&put, name);
        assert_eq!(v["Value"], Value::Null, "{v}");
        assert_eq!(v["IsSensitive"], true);
        assert_eq!(v["Type"], "Sensitive");
        assert!(v.get("SealedValue").is_none(), "{v}");
    }
    assert_eq!(variable(&put, "Plain")["Value"], "visible");
    let got = s.get(&path).await;
    assert_eq!(variable(&got, "DbPassword")["Value"], Value::Null);
    let text = got.to_string();
    assert!(
        !text.contains("SealedValue") && !text.contains("FERRY1"),
        "{text}"
    );

    // At rest: sealed (not what the client sent), bound to the owner and the variable's id.
    let key = master_key(&s);
    let id = variable(&got, "DbPassword")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = stored_doc(&s, &format!("variableset-{pid}")).await;
    let sealed = variable(&stored, "DbPassword")["SealedValue"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sealed.starts_with("FERRY1:") && sealed != "FERRY1:forged");
    assert_eq!(variable(&stored, "DbPassword")["Value"], Value::Null);
    assert_eq!(
        open(&key, &variable_aad(pid, &id), &sealed).as_deref(),
        Ok(SECRET)
    );

    // Sending the set back as read (Value: null) keeps the sealed value exactly.
    s.put(&path, got.clone()).await;
    let stored = stored_doc(&s, &format!("variableset-{pid}")).await;
    assert_eq!(
        variable(&stored, "DbPassword")["SealedValue"],
        sealed.as_str()
    );

    // Non-sensitive again only with a new value.
    let got = s.get(&path).await;
    assert_eq!(got["Version"], 2);
    let mut downgrade = got.clone();
    for v in downgrade["Variables"].as_array_mut().unwrap() {
        if v["Name"] == "DbPassword" {
            v["IsSensitive"] = json!(false);
            v["Type"] = json!("String");
        }
    }
    let (st, body) = s.request("PUT", &path, Some(downgrade)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        errors(&body).contains("'DbPassword' was sensitive"),
        "{body}"
    );

    // A new value replaces the sealed one.
    let mut rotate = got.clone();
    for v in rotate["Variables"].as_array_mut().unwrap() {
        if v["Name"] == "DbPassword" {
            v["Value"] = json!(ROTATED);
        }
    }
    let rotated = s.put(&path, rotate).await;
    let stored = stored_doc(&s, &format!("variableset-{pid}")).await;
    let resealed = variable(&stored, "DbPassword")["SealedValue"]
        .as_str()
        .unwrap();
    assert_ne!(resealed, sealed);
    assert_eq!(
        open(&key, &variable_aad(pid, &id), resealed).as_deref(),
        Ok(ROTATED)
    );

    // A bad body never echoes the value in the error.
    let (st, bad) = s
        .request(
            "PUT",
            &path,
            Some(json!({"Variables": [{"Name": "X", "IsSensitive": SECRET}]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(errors(&bad).contains("IsSensitive"), "{bad}");

    // The release's snapshot shows no value, and its sealed copy still opens.
    let r = s.create_release("Vault", "1.0.0").await;
    let release = s
        .get(&format!(
            "{SPACE}/releases/{}",
            r["ReleaseId"].as_str().unwrap()
        ))
        .await;
    let snap_id = release["ProjectVariableSetSnapshotId"].as_str().unwrap();
    let snap = s.get(&format!("{SPACE}/variables/{snap_id}")).await;
    assert_eq!(variable(&snap, "DbPassword")["Value"], Value::Null);
    assert_eq!(variable(&snap, "DbPassword")["Id"], id.as_str());
    let stored_snap = stored_doc(&s, snap_id).await;
    let snap_sealed = variable(&stored_snap, "DbPassword")["SealedValue"]
        .as_str()
        .unwrap();
    assert_eq!(
        open(&key, &variable_aad(pid, &id), snap_sealed).as_deref(),
        Ok(ROTATED)
    );
    // Snapshots are read-only.
    let (st, _) = s
        .request(
            "PUT",
            &format!("{SPACE}/variables/{snap_id}"),
            Some(snap.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // The audit log says what changed, with a salted hash instead of the value.
    let events = s.get("/api/events?take=1000").await;
    let modified: Vec<&Value> = events["Items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["Message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Variables of project Vault"))
        })
        .collect();
    assert!(modified.len() >= 3, "{events}");
    let details = serde_json::to_string(&modified).unwrap();
    assert!(details.contains("salted-sha256:"), "{details}");
    assert!(
        details.contains("visible"),
        "plain values are shown: {details}"
    );

    assert_nowhere(
        &s,
        &[SECRET, TOKEN, ROTATED],
        &[&put, &got, &rotated, &bad, &snap],
    )
    .await;
}

#[tokio::test]
async fn scope_ids_are_checked_and_scope_values_are_filled() {
    let s = Server::start();
    let dev = s.create_environment("Dev").await;
    let prod = s.create_environment("Production").await;
    let p = s.create_project("Scoped").await;
    let pid = p["Id"].as_str().unwrap();
    let process = s
        .put(
            &format!("{SPACE}/projects/{pid}/deploymentprocesses"),
            json!({"Steps": [{
                "Name": "Deploy web",
                "Properties": {"Octopus.Action.TargetRoles": "web"},
                "Actions": [{"Name": "Deploy web", "ActionType": "Octopus.Script",
                             "Properties": {"Octopus.Action.Script.ScriptBody": "true"}}]
            }]}),
        )
        .await;
    let step_id = process["Steps"][0]["Id"].as_str().unwrap();
    let action_id = process["Steps"][0]["Actions"][0]["Id"].as_str().unwrap();
    let channels = s.get(&format!("{SPACE}/projects/{pid}/channels")).await;
    let channel_id = channels["Items"][0]["Id"].as_str().unwrap();
    let other = s.create_project("Other").await;
    let path = set_path(pid);

    let refused = [
        (
            json!({"Environment": ["Environments-999"]}),
            "Environment scope names 'Environments-999'",
        ),
        (json!({"Environment": ["Production"]}), "use Environments-2"),
        (
            json!({"Machine": ["Machines-1"]}),
            "Machine scope names 'Machines-1'",
        ),
        (
            json!({"Action": ["not-a-step"]}),
            "Action scope names 'not-a-step'",
        ),
        (
            json!({"Channel": ["Channels-999"]}),
            "Channel scope names 'Channels-999'",
        ),
        (
            json!({"Tenant": ["Tenants-1"]}),
            "Tenant scope names 'Tenants-1'",
        ),
        (
            json!({"TenantTag": ["Region/East"]}),
            "TenantTag scope names 'Region/East'",
        ),
        (
            json!({"ProcessOwner": [other["Id"]]}),
            "ProcessOwner scope names 'Projects-2'",
        ),
    ];
    for (scope, expect) in refused {
        let (st, body) = s
            .request(
                "PUT",
                &path,
                Some(json!({"Variables": [{"Name": "X", "Value": "1", "Scope": scope}]})),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{scope}: {body}");
        let e = errors(&body);
        assert!(
            e.contains("Variable 'X'") && e.contains(expect),
            "{scope}: {e}"
        );
    }
    // Every problem at once.
    let (st, body) = s
        .request(
            "PUT",
            &path,
            Some(json!({"Variables": [
                {"Name": "A", "Value": "1", "Scope": {"Machine": ["Machines-7"]}},
                {"Name": "B", "Value": "1", "Scope": {"Tenant": ["Tenants-7"]}},
            ]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(body["Errors"].as_array().unwrap().len(), 2, "{body}");
    // Nothing was saved by the refusals.
    assert_eq!(s.get(&path).await["Variables"], json!([]));

    let saved = s
        .put(
            &path,
            json!({"Variables": [
                {"Name": "Conn", "Value": "prod", "Scope": {
                    "Environment": [prod["Id"]], "Role": ["db", " db ", ""], "Action": [step_id],
                    "Channel": [channel_id], "ProcessOwner": [pid]}},
                {"Name": "Conn", "Value": "dev", "Scope": {"environment": [dev["Id"]], "action": [action_id]}},
            ]}),
        )
        .await;
    assert_eq!(variable(&saved, "Conn")["Scope"]["Role"], json!(["db"]));
    let sv = &s.get(&path).await["ScopeValues"];
    assert!(
        sv["Environments"]
            .as_array()
            .unwrap()
            .contains(&json!({"Id": prod["Id"], "Name": "Production"})),
        "{sv}"
    );
    let roles: Vec<&str> = sv["Roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["db", "web"]);
    assert_eq!(
        sv["Channels"],
        json!([{"Id": channel_id, "Name": "Default"}])
    );
    assert_eq!(
        sv["Actions"],
        json!([{"Id": action_id, "Name": "Deploy web"}])
    );
    assert_eq!(
        sv["Processes"],
        json!([{"ProcessType": "Deployment", "Id": pid, "Name": "Scoped"}])
    );
    assert_eq!(sv["Machines"], json!([]));
    assert_eq!(sv["TenantTags"], json!([]));
}

#[tokio::test]
async fn library_variable_sets_crud_inclusion_and_snapshots() {
    const LIB_SECRET: &str = "library-Secret-Q1w2e3";
    let s = Server::start();
    s.create_environment("Dev").await;
    let (st, lib) = s
        .request(
            "POST",
            &format!("{SPACE}/libraryvariablesets"),
            Some(json!({"Name": "Common", "Description": "shared"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{lib}");
    assert_eq!(lib["Id"], "LibraryVariableSets-1");
    assert_eq!(lib["SpaceId"], "Spaces-1");
    assert_eq!(lib["VariableSetId"], "variableset-LibraryVariableSets-1");
    assert_eq!(lib["ContentType"], "Variables");
    assert_eq!(lib["Templates"], json!([]));
    assert_eq!(
        lib["Links"]["Self"],
        "/api/Spaces-1/libraryvariablesets/LibraryVariableSets-1"
    );
    let (st, _) = s
        .request(
            "POST",
            &format!("{SPACE}/libraryvariablesets"),
            Some(json!({"Name": "common"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let list = s.get(&format!("{SPACE}/libraryvariablesets")).await;
    assert_eq!(list["ItemType"], "LibraryVariableSet");
    assert_eq!(list["TotalResults"], 1);
    let none = s
        .get(&format!(
            "{SPACE}/libraryvariablesets?contentType=ScriptModule"
        ))
        .await;
    assert_eq!(none["TotalResults"], 0);
    let all = s.get("/api/libraryvariablesets/all").await;
    assert_eq!(all[0]["Name"], "Common");
    assert_eq!(
        s.get(&format!("{SPACE}/libraryvariablesets/Common")).await["Id"],
        lib["Id"]
    );
    let updated = s
        .put(
            &format!("{SPACE}/libraryvariablesets/LibraryVariableSets-1"),
            json!({"Name": "Common", "Description": "changed", "VariableSetId": "nope"}),
        )
        .await;
    assert_eq!(updated["Description"], "changed");
    assert_eq!(
        updated["VariableSetId"],
        "variableset-LibraryVariableSets-1"
    );

    // Its variables: no step or channel scopes; any project's process is fine.
    let other = s.create_project("Other").await;
    let lib_vars_path = format!("{SPACE}/variables/variableset-LibraryVariableSets-1");
    let lib_vars = s.get(&lib_vars_path).await;
    assert_eq!(lib_vars["OwnerId"], "LibraryVariableSets-1");
    for (scope, expect) in [
        (json!({"Action": ["x"]}), "cannot be scoped to steps"),
        (
            json!({"Channel": ["Channels-1"]}),
            "cannot be scoped to channels",
        ),
    ] {
        let (st, body) = s
            .request(
                "PUT",
                &lib_vars_path,
                Some(json!({"Variables": [{"Name": "X", "Value": "1", "Scope": scope}]})),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(errors(&body).contains(expect), "{body}");
    }
    let saved = s
        .put(
            &lib_vars_path,
            json!({"Variables": [
                {"Name": "Region", "Value": "eu", "Scope": {"ProcessOwner": [other["Id"]]}},
                {"Name": "LibSecret", "Value": LIB_SECRET, "IsSensitive": true},
            ]}),
        )
        .await;
    assert_eq!(
        saved["ScopeValues"]["Processes"][0]["Id"], other["Id"],
        "{saved}"
    );

    // Projects include library sets by id (or name); unknown ones are refused.
    let (st, body) = s
        .request(
            "POST",
            &format!("{SPACE}/projects"),
            Some(json!({"Name": "Uses", "IncludedLibraryVariableSetIds": ["LibraryVariableSets-99"]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(errors(&body).contains("LibraryVariableSets-99"), "{body}");
    let p = s
        .post(
            &format!("{SPACE}/projects"),
            json!({"Name": "Uses", "IncludedLibraryVariableSetIds": ["Common"]}),
        )
        .await;
    assert_eq!(
        p["IncludedLibraryVariableSetIds"],
        json!(["LibraryVariableSets-1"])
    );
    let pid = p["Id"].as_str().unwrap();

    // A release snapshots the library set too, keeping variable ids and owner.
    let r = s.create_release("Uses", "1.0.0").await;
    let release = s
        .get(&format!(
            "{SPACE}/releases/{}",
            r["ReleaseId"].as_str().unwrap()
        ))
        .await;
    let lib_snaps = release["LibraryVariableSetSnapshotIds"].as_array().unwrap();
    assert_eq!(lib_snaps.len(), 1);
    let lib_snap_id = lib_snaps[0].as_str().unwrap();
    assert!(
        lib_snap_id.starts_with("variableset-LibraryVariableSets-1-s-1-"),
        "{lib_snap_id}"
    );
    let snap = s.get(&format!("{SPACE}/variables/{lib_snap_id}")).await;
    assert_eq!(snap["OwnerId"], "LibraryVariableSets-1");
    let secret_id = variable(&saved, "LibSecret")["Id"].as_str().unwrap();
    assert_eq!(variable(&snap, "LibSecret")["Id"], secret_id);
    assert_eq!(variable(&snap, "LibSecret")["Value"], Value::Null);
    assert_eq!(variable(&snap, "Region")["Value"], "eu");
    let stored = stored_doc(&s, lib_snap_id).await;
    let sealed = variable(&stored, "LibSecret")["SealedValue"]
        .as_str()
        .unwrap();
    assert_eq!(
        open(
            &master_key(&s),
            &variable_aad("LibraryVariableSets-1", secret_id),
            sealed
        )
        .as_deref(),
        Ok(LIB_SECRET)
    );

    // An included set cannot be deleted; once no project includes it, it can.
    let lib_path = format!("{SPACE}/libraryvariablesets/LibraryVariableSets-1");
    let (st, body) = s.request("DELETE", &lib_path, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(errors(&body).contains("Uses"), "{body}");
    let mut project = s.get(&format!("{SPACE}/projects/{pid}")).await;
    project["IncludedLibraryVariableSetIds"] = json!([]);
    s.put(&format!("{SPACE}/projects/{pid}"), project).await;
    let (st, _) = s.request("DELETE", &lib_path, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.request("GET", &lib_path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.request("GET", &lib_vars_path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The release keeps its snapshot.
    s.get(&format!("{SPACE}/variables/{lib_snap_id}")).await;
    assert_nowhere(&s, &[LIB_SECRET], &[&saved, &snap]).await;
}

#[tokio::test]
async fn prompted_variables_are_required_and_sensitive_values_sealed() {
    const PROMPT_SECRET: &str = "prompted-Token-9x8y7z";
    let s = Server::start();
    s.create_environment("Dev").await;
    let p = s.create_project("Prompted").await;
    let pid = p["Id"].as_str().unwrap();
    let saved = s
        .put(
            &set_path(pid),
            json!({"Variables": [
                {"Name": "Approver", "Value": "", "Prompt": {"Label": "Who approves?", "Required": true}},
                {"Name": "DeployToken", "IsSensitive": true, "Prompt": {"label": "Deploy token", "required": "True",
                    "displaySettings": {"Octopus.ControlType": "Sensitive"}}},
                {"Name": "Note", "Value": "default note", "Prompt": {"Label": "Note", "Required": true}},
                {"Name": "NotPrompted", "Value": "x"},
            ]}),
        )
        .await;
    assert_eq!(
        variable(&saved, "DeployToken")["Prompt"],
        json!({"Label": "Deploy token", "Description": "", "Required": true,
               "DisplaySettings": {"Octopus.ControlType": "Sensitive"}})
    );
    assert_eq!(
        variable(&saved, "Approver")["Prompt"]["DisplaySettings"],
        json!({"Octopus.ControlType": "SingleLineText"})
    );
    s.set_scripts(
        pid,
        &[(
            "Show",
            "T=\"#{DeployToken}\"; echo \"approver=#{Approver} token-length=${#T}\"",
        )],
    )
    .await;
    let r = s.create_release("Prompted", "1.0.0").await;
    let release_id = r["ReleaseId"].as_str().unwrap();

    // Missing required values: 400 naming each (label and name), nothing queued. "Note" has
    // a default value, which counts.
    let (st, body) = s
        .request(
            "POST",
            &format!("{SPACE}/deployments/create/untenanted/v1"),
            Some(json!({"ProjectName": "Prompted", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let e = errors(&body);
    assert!(e.contains("'Who approves?' (Approver)"), "{e}");
    assert!(e.contains("'Deploy token' (DeployToken)"), "{e}");
    assert!(!e.contains("Note"), "{e}");
    let (st, body) = s
        .request(
            "POST",
            &format!("{SPACE}/deployments"),
            Some(json!({"ReleaseId": release_id, "EnvironmentId": "Dev",
                        "FormValues": {"Who approves?": "   ", "DeployToken": PROMPT_SECRET}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let e = errors(&body);
    assert!(
        e.contains("(Approver)") && !e.contains("DeployToken"),
        "{e}"
    );
    assert!(!body.to_string().contains(PROMPT_SECRET));
    assert_eq!(s.get("/api/tasks").await["TotalResults"], 0);
    assert_eq!(
        s.get(&format!("{SPACE}/deployments")).await["TotalResults"],
        0
    );

    // Matched by label or name, case-insensitively; the sensitive value is sealed, not shown.
    let created = s
        .post(
            &format!("{SPACE}/deployments/create/untenanted/v1"),
            json!({"ProjectName": "Prompted", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"],
                   "Variables": {"who approves?": "alice", "deploy TOKEN": PROMPT_SECRET, "Unknown": "ignored"}}),
        )
        .await;
    let dep_id = created["DeploymentServerTasks"][0]["DeploymentId"]
        .as_str()
        .unwrap();
    let dep = s.get(&format!("{SPACE}/deployments/{dep_id}")).await;
    assert_eq!(dep["FormValues"], json!({"Approver": "alice"}));
    assert!(dep.get("SealedFormValues").is_none(), "{dep}");
    let stored = stored_doc(&s, dep_id).await;
    let sealed = stored["SealedFormValues"]["DeployToken"].as_str().unwrap();
    assert_eq!(
        open(
            &master_key(&s),
            &variable_aad(dep_id, "DeployToken"),
            sealed
        )
        .as_deref(),
        Ok(PROMPT_SECRET)
    );
    assert_eq!(stored["FormValues"], json!({"Approver": "alice"}));
    // The deployment's script sees both values (the secret opened, by its length).
    let task_id = created["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap();
    let task = s.wait_task(task_id, Duration::from_secs(60)).await;
    let log = s.raw(&format!("/api/tasks/{task_id}/raw")).await;
    assert_eq!(task["State"], "Success", "{log}");
    assert!(
        log.contains(&format!(
            "approver=alice token-length={}",
            PROMPT_SECRET.len()
        )),
        "{log}"
    );

    // The native route, keyed by the variable's id.
    let approver_id = variable(&saved, "Approver")["Id"].as_str().unwrap();
    let (st, native) = s
        .request(
            "POST",
            &format!("{SPACE}/deployments"),
            Some(json!({"ReleaseId": release_id, "EnvironmentId": "Dev",
                        "FormValues": {approver_id: "bob", "DeployToken": PROMPT_SECRET, "Note": "custom"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{native}");
    assert_eq!(
        native["FormValues"],
        json!({"Approver": "bob", "Note": "custom"})
    );
    let listed = s.get(&format!("{SPACE}/deployments")).await;
    assert_nowhere(&s, &[PROMPT_SECRET], &[&dep, &native, &listed]).await;
}

#[tokio::test]
async fn updating_the_variables_of_a_release_takes_new_snapshots() {
    let s = Server::start();
    s.create_environment("Dev").await;
    let p = s.create_project("Greeter").await;
    let pid = p["Id"].as_str().unwrap();
    s.put(
        &set_path(pid),
        json!({"Variables": [{"Name": "Greeting", "Value": "hello"}]}),
    )
    .await;
    let lib = s
        .post(
            &format!("{SPACE}/libraryvariablesets"),
            json!({"Name": "Shared"}),
        )
        .await;
    let mut project = s.get(&format!("{SPACE}/projects/{pid}")).await;
    project["IncludedLibraryVariableSetIds"] = json!([lib["Id"]]);
    s.put(&format!("{SPACE}/projects/{pid}"), project).await;
    let r = s.create_release("Greeter", "1.0.0").await;
    let rid = r["ReleaseId"].as_str().unwrap();
    let before = s.get(&format!("{SPACE}/releases/{rid}")).await;

    let mut set = s.get(&set_path(pid)).await;
    set["Variables"][0]["Value"] = json!("bonjour");
    s.put(&set_path(pid), set).await;
    s.put(
        &format!(
            "{SPACE}/variables/{}",
            lib["VariableSetId"].as_str().unwrap()
        ),
        json!({"Variables": [{"Name": "Shared.Thing", "Value": "new"}]}),
    )
    .await;
    let after = s
        .post(
            &format!("{SPACE}/releases/{rid}/snapshot-variables"),
            json!({}),
        )
        .await;
    assert_eq!(after["Id"], rid);
    assert_eq!(
        after["ProjectDeploymentProcessSnapshotId"],
        before["ProjectDeploymentProcessSnapshotId"]
    );
    assert_ne!(
        after["ProjectVariableSetSnapshotId"],
        before["ProjectVariableSetSnapshotId"]
    );
    assert_ne!(
        after["LibraryVariableSetSnapshotIds"],
        before["LibraryVariableSetSnapshotIds"]
    );
    assert_eq!(s.get(&format!("{SPACE}/releases/{rid}")).await, after);
    let new_snap = s
        .get(&format!(
            "{SPACE}/variables/{}",
            after["ProjectVariableSetSnapshotId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(variable(&new_snap, "Greeting")["Value"], "bonjour");
    let lib_snap = s
        .get(&format!(
            "{SPACE}/variables/{}",
            after["LibraryVariableSetSnapshotIds"][0].as_str().unwrap()
        ))
        .await;
    assert_eq!(variable(&lib_snap, "Shared.Thing")["Value"], "new");
    let old_snap = s
        .get(&format!(
            "{SPACE}/variables/{}",
            before["ProjectVariableSetSnapshotId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(variable(&old_snap, "Greeting")["Value"], "hello");
    let events = s.get("/api/events").await.to_string();
    assert!(
        events.contains("Variables of release 1.0.0 of project Greeter were updated"),
        "{events}"
    );
    let (st, _) = s
        .request(
            "POST",
            &format!("{SPACE}/releases/Releases-999/snapshot-variables"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The executions API can update the snapshot as it deploys.
    let mut set = s.get(&set_path(pid)).await;
    set["Variables"][0]["Value"] = json!("hallo");
    s.put(&set_path(pid), set).await;
    s.post(
        &format!("{SPACE}/deployments/create/untenanted/v1"),
        json!({"ProjectName": "Greeter", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"],
               "UpdateVariableSnapshot": true}),
    )
    .await;
    let latest = s.get(&format!("{SPACE}/releases/{rid}")).await;
    let snap = s
        .get(&format!(
            "{SPACE}/variables/{}",
            latest["ProjectVariableSetSnapshotId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(variable(&snap, "Greeting")["Value"], "hallo");
}

async fn explain(s: &Server, query: &str) -> Value {
    s.get(&format!(
        "{SPACE}/projects/Explained/variables/explain{query}"
    ))
    .await
}

#[tokio::test]
async fn explain_shows_the_winner_and_why_through_the_api_and_the_cli() {
    const API_SECRET: &str = "explain-Secret-5150";
    let s = Server::start();
    let test = s.create_environment("Test").await;
    let prod = s.create_environment("Production").await;
    let p = s.create_project("Explained").await;
    let pid = p["Id"].as_str().unwrap();
    s.put(
        &format!("{SPACE}/projects/{pid}/deploymentprocesses"),
        json!({"Steps": [{
            "Name": "Deploy web",
            "Properties": {"Octopus.Action.TargetRoles": "web"},
            "Actions": [{"Name": "Deploy web", "ActionType": "Octopus.Script",
                         "Properties": {"Octopus.Action.Script.ScriptBody": "true"}}]
        }]}),
    )
    .await;
    let lib = s
        .post(
            &format!("{SPACE}/libraryvariablesets"),
            json!({"Name": "Common"}),
        )
        .await;
    s.put(
        &format!(
            "{SPACE}/variables/{}",
            lib["VariableSetId"].as_str().unwrap()
        ),
        json!({"Variables": [
            {"Name": "ConnectionString", "Value": "lib-default"},
            {"Name": "Region", "Value": "eu-west"},
        ]}),
    )
    .await;
    let mut project = s.get(&format!("{SPACE}/projects/{pid}")).await;
    project["IncludedLibraryVariableSetIds"] = json!([lib["Id"]]);
    s.put(&format!("{SPACE}/projects/{pid}"), project).await;
    s.put(
        &set_path(pid),
        json!({"Variables": [
            {"Name": "ConnectionString", "Value": "proj-default"},
            {"Name": "ConnectionString", "Value": "test-conn", "Scope": {"Environment": [test["Id"]]}},
            {"Name": "ConnectionString", "Value": "prod-conn", "Scope": {"Environment": [prod["Id"]]}},
            {"Name": "ConnectionString", "Value": "prod-web-conn", "Scope": {"Environment": [prod["Id"]], "Role": ["web"]}},
        ]}),
    )
    .await;

    // The CLI sets values (a secret read from standard input) and lists them masked.
    let (ok, out) = cli(
        &s,
        &[
            "variables",
            "set",
            "--project",
            "Explained",
            "LogLevel",
            "debug",
            "--environment",
            "Test",
        ],
        None,
    );
    assert!(ok, "{out}");
    assert!(out.contains("Added LogLevel in Explained (Test)"), "{out}");
    let (ok, out) = cli(
        &s,
        &[
            "variables",
            "set",
            "--project",
            "Explained",
            "ApiKey",
            "-",
            "--sensitive",
        ],
        Some(&format!("{API_SECRET}\n")),
    );
    assert!(ok, "{out}");
    assert!(!out.contains(API_SECRET), "{out}");
    let (ok, out) = cli(
        &s,
        &[
            "variables",
            "set",
            "--project",
            "Explained",
            "LogLevel",
            "info",
            "--environment",
            "Test",
        ],
        None,
    );
    assert!(ok && out.contains("Updated LogLevel"), "{out}");
    let (ok, out) = cli(&s, &["variables", "list", "--project", "Explained"], None);
    assert!(ok, "{out}");
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ApiKey") && l.contains("********")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("LogLevel")
            && l.contains("info")
            && l.contains("Environment: Test")),
        "{out}"
    );
    assert!(!out.contains(API_SECRET), "{out}");
    let key = master_key(&s);
    let stored = stored_doc(&s, &format!("variableset-{pid}")).await;
    let api_key = variable(&stored, "ApiKey");
    assert_eq!(
        open(
            &key,
            &variable_aad(pid, api_key["Id"].as_str().unwrap()),
            api_key["SealedValue"].as_str().unwrap()
        )
        .as_deref(),
        Ok(API_SECRET),
        "the trailing newline of standard input is not part of the value"
    );

    let find = |answer: &Value, name: &str| -> Value {
        answer["Variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["Name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {answer}"))
    };
    let prod_web = explain(&s, "?environment=Production&role=web").await;
    assert_eq!(prod_web["Context"]["Environment"]["Id"], prod["Id"]);
    let conn = find(&prod_web, "ConnectionString");
    assert_eq!(conn["Value"], "prod-web-conn");
    assert_eq!(conn["Source"], "project");
    assert!(
        conn["Reason"].as_str().unwrap().contains("most specific"),
        "{conn}"
    );
    assert_eq!(conn["ScopeText"], "Environment: Production; Role: web");
    let values = conn["Values"].as_array().unwrap();
    let by_value = |v: &str| values.iter().find(|x| x["Value"] == v).unwrap().clone();
    let t = by_value("test-conn");
    assert_eq!(t["Applies"], false);
    assert!(
        t["Reason"]
            .as_str()
            .unwrap()
            .contains("Environment scope does not include"),
        "{t}"
    );
    let pc = by_value("prod-conn");
    assert!(pc["Applies"] == true && pc["Won"] == false);
    assert!(
        pc["Reason"]
            .as_str()
            .unwrap()
            .contains("more specific value wins"),
        "{pc}"
    );
    let lib_value = by_value("lib-default");
    assert_eq!(lib_value["Source"], "library variable set 'Common'");
    assert_eq!(lib_value["SourceId"], lib["Id"]);
    let secret = find(&prod_web, "ApiKey");
    assert_eq!(secret["Value"], "********");
    assert_eq!(secret["IsSensitive"], true);
    assert_eq!(
        find(&prod_web, "Region")["Source"],
        "library variable set 'Common'"
    );
    let log_level = find(&prod_web, "LogLevel");
    assert_eq!(log_level["Value"], Value::Null);
    assert_eq!(log_level["Reason"], "no value applies in this context");

    assert_eq!(
        find(&explain(&s, "?environment=Test").await, "ConnectionString")["Value"],
        "test-conn"
    );
    let targeted = explain(&s, "?environment=Production&role=web&step=Deploy%20web").await;
    assert!(
        find(&targeted, "ConnectionString")["Reason"]
            .as_str()
            .unwrap()
            .contains("Role targeted by the step"),
        "{targeted}"
    );
    let bare = explain(&s, "").await;
    let conn = find(&bare, "ConnectionString");
    assert_eq!(conn["Value"], "proj-default");
    assert!(
        conn["Reason"]
            .as_str()
            .unwrap()
            .contains("unscoped value from the project"),
        "{conn}"
    );
    let values = conn["Values"].as_array().unwrap();
    let lib_value = values.iter().find(|x| x["Value"] == "lib-default").unwrap();
    assert!(
        lib_value["Reason"]
            .as_str()
            .unwrap()
            .contains("ties with the winner"),
        "{lib_value}"
    );
    let (st, body) = s
        .request(
            "GET",
            &format!("{SPACE}/projects/{pid}/variables/explain?environment=Nowhere"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(errors(&body).contains("Nowhere"));

    // The CLI's table: Name | Value | Source | Why.
    let (ok, out) = cli(
        &s,
        &[
            "variables",
            "explain",
            "--project",
            "Explained",
            "--environment",
            "Production",
            "--role",
            "web",
        ],
        None,
    );
    assert!(ok, "{out}");
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME")
            && header.contains("VALUE")
            && header.contains("SOURCE")
            && header.contains("WHY"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("ConnectionString")
            && l.contains("prod-web-conn")
            && l.contains("most specific")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ApiKey") && l.contains("********")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("Region") && l.contains("library variable set 'Common'")),
        "{out}"
    );
    let (ok, out) = cli(
        &s,
        &[
            "variables",
            "explain",
            "--project",
            "Explained",
            "--environment",
            "Nowhere",
        ],
        None,
    );
    assert!(!ok && out.contains("Nowhere"), "{out}");
    assert_nowhere(&s, &[API_SECRET], &[&prod_web, &bare]).await;
}
