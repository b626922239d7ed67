//! The REST API through the real binary: bootstrap and discovery, authentication, CRUD with
//! paging and lookups, bad input, releases and their snapshots, deployments that succeed and
//! fail, lifecycle order, and the audit log.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;

fn semver_at_least(v: &str, min: (u64, u64, u64)) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<u64> = core.split('.').filter_map(|p| p.parse().ok()).collect();
    parts.len() == 3 && (parts[0], parts[1], parts[2]) >= min
}

#[tokio::test]
async fn bootstrap_root_and_discovery() {
    let s = Server::start();
    // Anonymous root document, with and without the trailing slash.
    for path in ["/api", "/api/"] {
        let (st, root) = s.request_with_key("GET", path, None, None).await;
        assert_eq!(st, StatusCode::OK);
        assert!(
            semver_at_least(root["Version"].as_str().unwrap(), (2022, 3, 5512)),
            "{root}"
        );
        let iid = root["InstallationId"].as_str().unwrap();
        assert_eq!(iid.len(), 36);
        assert_eq!(iid.matches('-').count(), 4);
        for l in ["Spaces", "SpaceHome", "CurrentUser", "Tasks"] {
            assert!(root["Links"][l].is_string(), "missing link {l}");
        }
    }
    // Spaces: paged and bare-array forms; the default space.
    let spaces = s.get("/api/spaces").await;
    assert_eq!(spaces["TotalResults"], 1);
    assert_eq!(spaces["Items"][0]["Id"], "Spaces-1");
    assert_eq!(spaces["Items"][0]["IsDefault"], true);
    let all = s.get("/api/spaces/all").await;
    assert!(all.is_array());
    assert_eq!(all[0]["Name"], "Default");
    let home = s.get("/api/Spaces-1").await;
    for l in [
        "Projects",
        "Releases",
        "Channels",
        "Environments",
        "Tasks",
        "Spaces",
        "Deployments",
        "Lifecycles",
        "ProjectGroups",
        "Feeds",
        "Variables",
        "DeploymentProcesses",
    ] {
        assert!(
            home["Links"][l]
                .as_str()
                .is_some_and(|v| v.starts_with("/api/")),
            "space link {l}"
        );
    }
    // Seeded resources.
    let lc = s.get("/api/Spaces-1/lifecycles/all").await;
    assert_eq!(lc[0]["Name"], "Default Lifecycle");
    let pg = s.get("/api/Spaces-1/projectgroups/all").await;
    assert_eq!(pg[0]["Name"], "Default Project Group");
    let feed = s.get("/api/Spaces-1/feeds/feeds-builtin").await;
    assert_eq!(feed["FeedType"], "BuiltIn");
    let me = s.get("/api/users/me").await;
    assert_eq!(me["Username"], "admin");
    // Health, metrics and the OpenAPI document.
    let (st, _) = s.request_with_key("GET", "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, metrics) = s.request_with_key("GET", "/metrics", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("ferry_tasks{state=\"Queued\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_http_requests_total"));
    let (_, openapi) = s
        .request_with_key("GET", "/api/openapi.json", None, None)
        .await;
    assert_eq!(openapi["openapi"], "3.0.3");
    assert!(openapi["paths"]["/api/{space_id}/releases/create/v1"]["post"].is_object());
    assert!(openapi["paths"]["/api/{space_id}/projects"]["get"]["x-ferry-permission"].is_string());
    // First start printed the admin password once.
    assert!(s.output_text().contains("Admin password:"));
}

#[tokio::test]
async fn authentication() {
    let s = Server::start();
    let (st, body) = s
        .request_with_key("GET", "/api/Spaces-1/projects", None, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(body["ErrorMessage"].as_str().is_some_and(|m| !m.is_empty()));
    let (st, _) = s
        .request_with_key("GET", "/api/Spaces-1/projects", None, Some(""))
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "an empty key header counts as missing"
    );
    let (st, _) = s
        .request_with_key(
            "GET",
            "/api/Spaces-1/projects",
            None,
            Some("API-WRONGWRONGWRONGWRONGWRONGWR"),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Bearer and ?apikey= are accepted too.
    let r = reqwest::Client::new()
        .get(format!("{}/api/users/me", s.url))
        .header("Authorization", format!("Bearer {}", s.api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = reqwest::get(format!("{}/api/users/me?apikey={}", s.url, s.api_key))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn crud_paging_lookups_and_bad_input() {
    let s = Server::start();
    for i in 0..35 {
        s.create_environment(&format!("Env {i:02}")).await;
    }
    // Default page of 30 with Page.Next; last page without it.
    let p1 = s.get("/api/Spaces-1/environments").await;
    assert_eq!(p1["TotalResults"], 35);
    assert_eq!(p1["ItemsPerPage"], 30);
    assert_eq!(p1["NumberOfPages"], 2);
    assert_eq!(p1["LastPageNumber"], 1);
    assert_eq!(p1["Items"].as_array().unwrap().len(), 30);
    assert_eq!(p1["ItemType"], "Environment");
    let next = p1["Links"]["Page.Next"].as_str().unwrap().to_string();
    assert!(next.starts_with("/api/"));
    let p2 = s.get(&next).await;
    assert_eq!(p2["Items"].as_array().unwrap().len(), 5);
    assert!(p2["Links"].get("Page.Next").is_none());
    // Ordered by SortOrder.
    assert_eq!(p1["Items"][0]["Name"], "Env 00");
    assert_eq!(p1["Items"][1]["SortOrder"], 1);
    // take = int32 max, and the bare array.
    let big = s
        .get("/api/Spaces-1/environments?skip=0&take=2147483647")
        .await;
    assert_eq!(big["Items"].as_array().unwrap().len(), 35);
    assert_eq!(
        s.get("/api/Spaces-1/environments/all")
            .await
            .as_array()
            .unwrap()
            .len(),
        35
    );
    // ids in three encodings return every match whatever skip/take say.
    for q in [
        "ids=Environments-1,Environments-34",
        "ids=Environments-1%2CEnvironments-34",
        "ids=Environments-1&ids=Environments-34&skip=30&take=1",
    ] {
        let v = s.get(&format!("/api/Spaces-1/environments?{q}")).await;
        assert_eq!(v["Items"].as_array().unwrap().len(), 2, "{q}");
    }
    // partialName is a case-insensitive substring, with + or %20 for spaces.
    for q in ["partialName=env+3", "partialName=ENV%203"] {
        let v = s.get(&format!("/api/Spaces-1/environments?{q}")).await;
        assert_eq!(v["TotalResults"], 5, "{q}");
    }
    // Default-space routes reach Spaces-1.
    assert_eq!(
        s.get("/api/environments/all")
            .await
            .as_array()
            .unwrap()
            .len(),
        35
    );

    // Projects: lookup by id, slug or name; 404 JSON otherwise.
    let p = s.create_project("Fire Project").await;
    assert_eq!(p["Slug"], "fire-project");
    assert_eq!(p["LifecycleId"], "Lifecycles-1");
    assert_eq!(p["ProjectGroupId"], "ProjectGroups-1");
    assert_eq!(p["PersistenceSettings"]["Type"], "Database");
    let id = p["Id"].as_str().unwrap();
    for key in [id, "fire-project", "Fire%20Project", "fire%20project"] {
        let v = s.get(&format!("/api/Spaces-1/projects/{key}")).await;
        assert_eq!(v["Id"], id, "{key}");
    }
    let (st, body) = s
        .request("GET", "/api/Spaces-1/projects/Nope%20Project", None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body["ErrorMessage"].is_string() && body["Errors"].is_array());
    let (st, _) = s.request("GET", "/api/Spaces-9/projects", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, body) = s.request("GET", "/api/no/such/route", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body["ErrorMessage"].is_string());
    // The project got a default channel, a process and a variable set.
    let ch = s
        .get(&format!("/api/Spaces-1/projects/{id}/channels"))
        .await;
    assert_eq!(ch["Items"][0]["IsDefault"], true);
    let proc_ = s
        .get(&format!("/api/Spaces-1/projects/{id}/deploymentprocesses"))
        .await;
    assert_eq!(proc_["Steps"], json!([]));
    let vars = s
        .get(&format!("/api/Spaces-1/variables/variableset-{id}"))
        .await;
    assert_eq!(vars["Variables"], json!([]));

    // Duplicates: 409 naming the resource; nothing half-written.
    let (st, body) = s
        .request(
            "POST",
            "/api/Spaces-1/projects",
            Some(json!({"Name": "fire project"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(body["Errors"][0].as_str().unwrap().contains("fire project"));
    assert_eq!(
        s.get("/api/Spaces-1/projects/all")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Invalid bodies: 400 with the field named.
    let (st, body) = s
        .request(
            "POST",
            "/api/Spaces-1/environments",
            Some(json!({"Name": ""})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["Errors"][0].as_str().unwrap().contains("Name"),
        "{body}"
    );
    let (st, body) = s
        .request(
            "POST",
            "/api/Spaces-1/environments",
            Some(json!({"Name": "X", "SortOrder": "first"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["Errors"][0].as_str().unwrap().contains("SortOrder"),
        "{body}"
    );
    let r = reqwest::Client::new()
        .post(format!("{}/api/Spaces-1/environments", s.url))
        .header("X-Octopus-ApiKey", &s.api_key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert!(b["Errors"][0].as_str().unwrap().contains("JSON"));
    // Oversize body: 413 JSON, answered from the declared length before the body is sent.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = s.url.trim_start_matches("http://").to_string();
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/Spaces-1/environments HTTP/1.1\r\nHost: {addr}\r\nX-Octopus-ApiKey: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
            s.api_key,
            50 * 1024 * 1024
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let resp = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
        assert!(resp.contains("ErrorMessage"), "{resp}");
    }
    // Lifecycle naming an unknown environment.
    let (st, body) = s
        .request("POST", "/api/Spaces-1/lifecycles", Some(json!({"Name": "L", "Phases": [{"Name": "P", "OptionalDeploymentTargets": ["Environments-999"]}]})))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["Errors"][0]
            .as_str()
            .unwrap()
            .contains("Environments-999")
    );
    // A process with two steps of the same name.
    let (st, body) = s
        .request(
            "PUT",
            &format!("/api/Spaces-1/projects/{id}/deploymentprocesses"),
            Some(json!({"Steps": [
                {"Name": "A", "Actions": [{"ActionType": "Octopus.Script"}]},
                {"Name": "a", "Actions": [{"ActionType": "Octopus.Script"}]}
            ]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");

    // Case-insensitive bodies (the Go CLI sends camelCase), update and delete.
    let e = s
        .post(
            "/api/Spaces-1/environments",
            json!({"name": "Camel", "description": "lower keys", "useGuidedFailure": null}),
        )
        .await;
    assert_eq!(e["Name"], "Camel");
    assert_eq!(e["Description"], "lower keys");
    let eid = e["Id"].as_str().unwrap().to_string();
    let mut upd = e.clone();
    upd["Name"] = json!("Camel Case");
    let u = s
        .put(&format!("/api/Spaces-1/environments/{eid}"), upd)
        .await;
    assert_eq!(u["Slug"], "camel-case");
    let (st, _) = s
        .request("DELETE", &format!("/api/Spaces-1/environments/{eid}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .request("GET", &format!("/api/Spaces-1/environments/{eid}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Project groups and lifecycles CRUD.
    let g = s
        .post("/api/Spaces-1/projectgroups", json!({"Name": "Team A"}))
        .await;
    let gid = g["Id"].as_str().unwrap();
    let p2 = s
        .post(
            "/api/Spaces-1/projects",
            json!({"Name": "In Group", "ProjectGroupId": gid}),
        )
        .await;
    assert_eq!(p2["ProjectGroupId"], gid);
    let gp = s
        .get(&format!("/api/Spaces-1/projectgroups/{gid}/projects"))
        .await;
    assert_eq!(gp["TotalResults"], 1);
    let (st, _) = s
        .request(
            "DELETE",
            &format!("/api/Spaces-1/projectgroups/{gid}"),
            None,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "a group with projects is not deleted"
    );
    let l = s.post("/api/Spaces-1/lifecycles", json!({"Name": "Fast", "Phases": [{"Name": "Only", "OptionalDeploymentTargets": ["Environments-1"]}]})).await;
    assert_eq!(
        l["Phases"][0]["OptionalDeploymentTargets"],
        json!(["Environments-1"])
    );
    // Every mutation is in the audit log, with who and what.
    let ev = s.get("/api/events?take=100").await;
    let items = ev["Items"].as_array().unwrap();
    assert!(items.iter().any(|e| e["Category"] == "Created"
        && e["Message"].as_str().unwrap().contains("Fire Project")
        && e["Username"] == "admin"));
    assert!(items.iter().any(|e| {
        e["Category"] == "Deleted"
            && e["RelatedDocumentIds"]
                .as_array()
                .unwrap()
                .contains(&json!(eid))
    }));
    assert!(items.iter().any(|e| e["Category"] == "Modified"));
}

#[tokio::test]
async fn releases_snapshot_and_versions() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Snap").await;
    s.set_scripts("Snap", &[("Say", "echo version-one")]).await;
    let r1 = s.create_release("Snap", "1.0.0").await;
    assert_eq!(r1["ReleaseVersion"], "1.0.0");
    let rid = r1["ReleaseId"].as_str().unwrap().to_string();
    // Change the process after the release: the release keeps its snapshot.
    s.set_scripts("Snap", &[("Say", "echo version-two"), ("More", "true")])
        .await;
    let rel = s.get(&format!("/api/Spaces-1/releases/{rid}")).await;
    let snap = s
        .get(&format!(
            "/api/Spaces-1/deploymentprocesses/{}",
            rel["ProjectDeploymentProcessSnapshotId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(snap["Steps"].as_array().unwrap().len(), 1);
    assert_eq!(
        snap["Steps"][0]["Actions"][0]["Properties"]["Octopus.Action.Script.ScriptBody"],
        "echo version-one"
    );
    let (st, _) = s
        .request(
            "PUT",
            &format!(
                "/api/Spaces-1/deploymentprocesses/{}",
                rel["ProjectDeploymentProcessSnapshotId"].as_str().unwrap()
            ),
            Some(json!({"Steps": []})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "snapshots are immutable");
    let task = s.deploy("Snap", "1.0.0", "Development").await;
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Success");
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert!(
        raw.contains("version-one") && !raw.contains("version-two"),
        "{raw}"
    );

    // Duplicate version: 409; IgnoreIfAlreadyExists returns the same release.
    let (st, body) = s
        .request(
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": "Snap", "ReleaseVersion": "1.0.0"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let again = s
        .post("/api/Spaces-1/releases/create/v1", json!({"projectName": "snap", "releaseVersion": "1.0.0", "ignoreIfAlreadyExists": true}))
        .await;
    assert_eq!(again["ReleaseId"], json!(rid));
    // Bad version, unknown project: 400 with the problem named.
    let (st, body) = s
        .request(
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": "Snap", "ReleaseVersion": "one.two"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body["Errors"][0].as_str().unwrap().contains("one.two"));
    let (st, body) = s
        .request(
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": "Ghost", "ReleaseVersion": "1.0.0"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body["Errors"][0].as_str().unwrap().contains("Ghost"));
    // No version: the next patch after the latest.
    let auto = s
        .post(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Snap"}),
        )
        .await;
    assert_eq!(auto["ReleaseVersion"], "1.0.1");
    // Listing: newest first; by version.
    let list = s.get("/api/Spaces-1/projects/Snap/releases").await;
    assert_eq!(list["Items"][0]["Version"], "1.0.1");
    let byv = s.get("/api/Spaces-1/projects/Snap/releases/1.0.0").await;
    assert_eq!(byv["Id"], json!(rid));
    assert!(byv["Assembled"].as_str().unwrap().ends_with("+00:00"));
    // Custom fields are kept on the release (at most 10, 150 characters each).
    let cf = s
        .post("/api/Spaces-1/releases/create/v1", json!({"projectName": "Snap", "releaseVersion": "1.5.0", "customFields": {"Ticket": "ABC-1"}}))
        .await;
    let rel = s
        .get(&format!(
            "/api/Spaces-1/releases/{}",
            cf["ReleaseId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rel["CustomFields"]["Ticket"], "ABC-1");
    let many: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("F{i}"), json!("x"))).collect();
    let (st, _) = s
        .request(
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": "Snap", "ReleaseVersion": "1.6.0", "CustomFields": many})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // The native create endpoint too.
    let pid = s.get("/api/Spaces-1/projects/Snap").await["Id"].clone();
    let (st, native) = s
        .request(
            "POST",
            "/api/Spaces-1/releases",
            Some(json!({"ProjectId": pid, "Version": "2.0.0-beta.1"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{native}");
}

#[tokio::test]
async fn deployments_succeed_fail_and_follow_the_lifecycle() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_environment("Test").await;
    s.create_project("App").await;
    s.set_scripts(
        "App",
        &[
            (
                "Greet",
                "echo hello from $OCTOPUS_TASK_ID\necho to-stderr >&2",
            ),
            (
                "Check",
                "if [ -f /nonexistent-ferry ]; then exit 0; fi\necho failing; exit 3",
            ),
            ("Never", "echo should-not-run"),
        ],
    )
    .await;
    // Add a step that runs only on failure.
    let mut process = s
        .get("/api/Spaces-1/projects/App/deploymentprocesses")
        .await;
    process["Steps"].as_array_mut().unwrap().push(json!({
        "Name": "Cleanup", "Condition": "Failure",
        "Actions": [{"ActionType": "Octopus.Script", "Properties": {"Octopus.Action.Script.ScriptBody": "echo cleaning-up", "Octopus.Action.RunOnServer": "true"}}]
    }));
    s.put("/api/Spaces-1/projects/App/deploymentprocesses", process)
        .await;
    s.create_release("App", "1.0.0").await;

    // Test before Development is refused, naming the phase.
    let (st, body) = s
        .request("POST", "/api/Spaces-1/deployments/create/untenanted/v1", Some(json!({"ProjectName": "App", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"]})))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let msg = body["Errors"][0].as_str().unwrap();
    assert!(
        msg.contains("Development") && msg.contains("phase"),
        "{msg}"
    );
    assert_eq!(
        s.get("/api/tasks").await["TotalResults"],
        0,
        "a refusal queues nothing"
    );

    let task = s.deploy("App", "1.0.0", "Development").await;
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Failed");
    assert_eq!(t["IsCompleted"], true);
    assert_eq!(t["FinishedSuccessfully"], false);
    assert!(
        t["ErrorMessage"].as_str().unwrap().contains("exit code 3"),
        "{t}"
    );
    let raw = s.raw(&format!("/api/Spaces-1/tasks/{task}/raw")).await;
    assert!(raw.contains("hello from ServerTasks-"), "{raw}");
    assert!(raw.contains("to-stderr"));
    assert!(raw.contains("cleaning-up"));
    assert!(!raw.contains("should-not-run"));
    let d = s.get(&format!("/api/Spaces-1/tasks/{task}/details")).await;
    let root = &d["ActivityLogs"][0];
    assert_eq!(root["Status"], "Failed");
    let steps = root["Children"].as_array().unwrap();
    let statuses: Vec<&str> = steps
        .iter()
        .map(|c| c["Status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["Success", "Failed", "Skipped", "Success"]);
    let elements = steps[0]["Children"][0]["LogElements"].as_array().unwrap();
    assert!(
        elements.iter().any(|e| e["Category"] == "Info"
            && e["MessageText"].as_str().unwrap().starts_with("hello from"))
    );
    assert!(
        elements
            .iter()
            .any(|e| e["Category"] == "Error" && e["MessageText"] == "to-stderr")
    );
    // A failed deployment does not complete the phase: Test is still refused.
    let (st, _) = s
        .request("POST", "/api/Spaces-1/deployments/create/untenanted/v1", Some(json!({"ProjectName": "App", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"]})))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Fix the process; a new release deploys to Development then Test.
    s.set_scripts("App", &[("Greet", "echo ok")]).await;
    s.create_release("App", "1.0.1").await;
    let t1 = s.deploy("App", "1.0.1", "Development").await;
    assert_eq!(
        s.wait_task(&t1, Duration::from_secs(30)).await["State"],
        "Success"
    );
    let t2 = s.deploy("App", "1.0.1", "Test").await;
    let done = s.wait_task(&t2, Duration::from_secs(30)).await;
    assert_eq!(done["State"], "Success");
    assert_eq!(done["FinishedSuccessfully"], true);
    // The deploy action's follow-up joins.
    let deps = s.get("/api/Spaces-1/deployments?take=10").await;
    let dep = deps["Items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["TaskId"] == json!(t2))
        .unwrap()
        .clone();
    let env = s
        .get(&format!(
            "/api/Spaces-1/environments?ids={}",
            dep["EnvironmentId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(env["Items"][0]["Name"], "Test");
    let (st, _) = s
        .request(
            "GET",
            "/api/Spaces-1/environments/v2?ids=Environments-1",
            None,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "v2 answers 404 so clients fall back"
    );
    // Task lists: per space and system-wide, with every requested id.
    let tl = s
        .get(&format!(
            "/api/Spaces-1/tasks?skip=300&take=300&ids={task},{t1},{t2}"
        ))
        .await;
    assert_eq!(tl["Items"].as_array().unwrap().len(), 3);
    let st_ = s.get("/api/tasks?states=Success").await;
    assert_eq!(st_["TotalResults"], 2);
    let events = s.get("/api/events?take=200").await;
    let cats: Vec<&str> = events["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Category"].as_str().unwrap())
        .collect();
    assert!(
        cats.contains(&"DeploymentQueued")
            && cats.contains(&"DeploymentFailed")
            && cats.contains(&"DeploymentSucceeded"),
        "{cats:?}"
    );
}

#[tokio::test]
async fn release_versions_from_templates_and_masks() {
    let s = Server::start();
    let p = s.create_project("Versioned").await;
    let pid = p["Id"].as_str().unwrap().to_string();
    let set_template = |t: &str| {
        let mut p = p.clone();
        p["VersioningStrategy"]["Template"] = json!(t);
        p
    };
    // Octopus.Version.* and a project variable.
    let vs = s.get(&format!("/api/Spaces-1/projects/{pid}")).await["VariableSetId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut vars = s.get(&format!("/api/Spaces-1/variables/{vs}")).await;
    vars["Variables"] = json!([{"Name": "Suffix", "Value": "rc"}]);
    s.put(&format!("/api/Spaces-1/variables/{vs}"), vars).await;
    s.put(
        &format!("/api/Spaces-1/projects/{pid}"),
        set_template("#{Octopus.Version.LastMajor}.#{Octopus.Version.NextMinor}.0-#{Suffix}"),
    )
    .await;
    let r = s
        .post(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Versioned"}),
        )
        .await;
    assert_eq!(r["ReleaseVersion"], "0.1.0-rc");
    let r = s
        .post(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Versioned"}),
        )
        .await;
    assert_eq!(r["ReleaseVersion"], "0.2.0-rc");
    // A mask: c keeps, i increments.
    s.put(
        &format!("/api/Spaces-1/projects/{pid}"),
        set_template("0.c.i"),
    )
    .await;
    let r = s
        .post(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Versioned"}),
        )
        .await;
    assert_eq!(r["ReleaseVersion"], "0.2.1");
    // Dates.
    s.put(
        &format!("/api/Spaces-1/projects/{pid}"),
        set_template("#{Octopus.Date.Year}.#{Octopus.Date.Month}.#{Octopus.Version.NextPatch}"),
    )
    .await;
    let r = s
        .post(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Versioned"}),
        )
        .await;
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(
        r["ReleaseVersion"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{year}.")),
        "{r}"
    );
    // A template that does not make a version: 400 naming what it produced.
    s.put(
        &format!("/api/Spaces-1/projects/{pid}"),
        set_template("build-#{Octopus.Version.NextPatch}"),
    )
    .await;
    let (st, body) = s
        .request(
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": "Versioned"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["Errors"][0].as_str().unwrap().contains("build-"),
        "{body}"
    );
}
