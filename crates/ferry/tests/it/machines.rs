//! Deployment targets and machine policies through the real server: CRUD, every list filter
//! with paging, validation (400 naming the field, 409 for names and thumbprints), SSH targets
//! (normalisation, their account, no thumbprint), the default policy of each space, audit
//! events, and the `ferry target` commands.

use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Server, ferry_bin};

fn thumb(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn passive(name: &str, envs: &[&str], roles: &[&str], t: char) -> Value {
    json!({
        "Name": name, "EnvironmentIds": envs, "Roles": roles,
        "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": format!("https://{name}:10933/"), "Thumbprint": thumb(t)}
    })
}

fn active(name: &str, envs: &[&str], roles: &[&str], t: char) -> Value {
    json!({
        "Name": name, "EnvironmentIds": envs, "Roles": roles,
        "Endpoint": {"CommunicationStyle": "TentacleActive", "Uri": format!("poll://{name}/"), "Thumbprint": thumb(t)}
    })
}

fn names(page: &Value) -> Vec<String> {
    let mut v: Vec<String> = page["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

async fn list(s: &Server, query: &str) -> Vec<String> {
    names(&s.get(&format!("/api/Spaces-1/machines?{query}")).await)
}

/// POSTs a machine expecting `status`; returns the first error line.
async fn refused(s: &Server, body: Value, status: StatusCode) -> String {
    let (st, v) = s
        .request("POST", "/api/Spaces-1/machines", Some(body.clone()))
        .await;
    assert_eq!(st, status, "{body} -> {v}");
    v["Errors"][0].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn machines_crud_filters_paging_and_audit() {
    let s = Server::start();
    let dev = s.create_environment("Dev").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let prod = s.create_environment("Prod").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let policy = s.get("/api/Spaces-1/machinepolicies/all").await;
    let policy_id = policy[0]["Id"].as_str().unwrap().to_string();

    // Create: roles trimmed and unique, thumbprint upper-cased, Uri normalised, defaults set.
    let mut body = passive("web01", &[&dev], &[" web ", "web", "app", "WEB"], 'a');
    body["Endpoint"]["Uri"] = json!("HTTPS://Web01:10933");
    let (st, web01) = s
        .request("POST", "/api/Spaces-1/machines", Some(body))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{web01}");
    let id1 = web01["Id"].as_str().unwrap().to_string();
    assert!(id1.starts_with("Machines-"), "{web01}");
    assert_eq!(web01["SpaceId"], "Spaces-1");
    assert_eq!(web01["Roles"], json!(["web", "app"]));
    assert_eq!(web01["HealthStatus"], "Unknown");
    assert_eq!(web01["Status"], "Unknown");
    assert_eq!(web01["IsDisabled"], false);
    assert_eq!(web01["MachinePolicyId"], json!(policy_id));
    assert_eq!(web01["TenantedDeploymentParticipation"], "Untenanted");
    assert_eq!(web01["Endpoint"]["Thumbprint"], json!(thumb('A')));
    assert_eq!(web01["Thumbprint"], json!(thumb('A')));
    assert_eq!(web01["Endpoint"]["Uri"], "https://web01:10933/");
    assert_eq!(web01["Uri"], "https://web01:10933/");
    assert_eq!(
        web01["Links"]["Self"],
        json!(format!("/api/Spaces-1/machines/{id1}"))
    );

    s.post(
        "/api/Spaces-1/machines",
        passive("web02", &[&prod], &["web"], 'b'),
    )
    .await;
    // Environments may be given by name; they are stored as ids.
    let mut poll = active("poll01", &[&dev, "Prod"], &["worker"], 'c');
    poll["IsDisabled"] = json!(true);
    let poll01 = s.post("/api/Spaces-1/machines", poll).await;
    assert_eq!(poll01["EnvironmentIds"], json!([dev, prod]));
    assert_eq!(poll01["Status"], "Disabled");
    assert_eq!(poll01["Endpoint"]["Uri"], "poll://poll01/");

    // Filters.
    assert_eq!(list(&s, "").await, ["poll01", "web01", "web02"]);
    assert_eq!(list(&s, "roles=web").await, ["web01", "web02"]);
    assert_eq!(list(&s, "roles=worker,app").await, ["poll01", "web01"]);
    assert_eq!(
        list(&s, "roles=worker&roles=APP").await,
        ["poll01", "web01"]
    );
    assert_eq!(
        list(&s, &format!("environmentIds={dev}")).await,
        ["poll01", "web01"]
    );
    assert_eq!(
        list(&s, &format!("environmentIds={prod}&roles=web")).await,
        ["web02"]
    );
    assert_eq!(list(&s, "healthStatuses=Unknown").await.len(), 3);
    assert!(
        list(&s, "healthStatuses=Healthy,Unhealthy")
            .await
            .is_empty()
    );
    assert_eq!(list(&s, "commStyles=TentacleActive").await, ["poll01"]);
    assert_eq!(
        list(&s, "commStyles=TentaclePassive").await,
        ["web01", "web02"]
    );
    assert_eq!(list(&s, "isDisabled=true").await, ["poll01"]);
    assert_eq!(list(&s, "isDisabled=false").await, ["web01", "web02"]);
    assert_eq!(list(&s, "partialName=WEB").await, ["web01", "web02"]);
    assert_eq!(list(&s, "name=web02").await, ["web02"]);
    assert_eq!(
        list(&s, &format!("thumbprint={}", thumb('c'))).await,
        ["poll01"]
    );
    let poll_id = poll01["Id"].as_str().unwrap();
    assert_eq!(
        list(&s, &format!("ids={id1},{poll_id}&take=1")).await,
        ["poll01", "web01"]
    );

    // Paging stays right when filtering in memory.
    let p = s.get("/api/Spaces-1/machines?take=2").await;
    assert_eq!(p["TotalResults"], 3);
    assert_eq!(p["Items"].as_array().unwrap().len(), 2);
    assert_eq!(p["ItemType"], "DeploymentTarget");
    let p = s.get("/api/Spaces-1/machines?skip=2&take=2").await;
    assert_eq!(p["Items"].as_array().unwrap().len(), 1);
    let p = s.get("/api/Spaces-1/machines?roles=web&take=1").await;
    assert_eq!(p["TotalResults"], 2);
    assert_eq!(p["Items"].as_array().unwrap().len(), 1);
    let p = s
        .get("/api/Spaces-1/machines?roles=web&skip=1&take=1")
        .await;
    assert_eq!(p["Items"].as_array().unwrap().len(), 1);

    // /all, the environment's machines, the space root link.
    assert_eq!(
        s.get("/api/Spaces-1/machines/all")
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let em = s
        .get(&format!("/api/Spaces-1/environments/{prod}/machines"))
        .await;
    assert_eq!(names(&em), ["poll01", "web02"]);
    let em = s
        .get(&format!(
            "/api/Spaces-1/environments/{prod}/machines?roles=worker"
        ))
        .await;
    assert_eq!(names(&em), ["poll01"]);
    let (st, _) = s
        .request("GET", "/api/Spaces-1/environments/Nope/machines", None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let root = s.get("/api/Spaces-1").await;
    assert!(
        root["Links"]["Machines"]
            .as_str()
            .unwrap()
            .starts_with("/api/Spaces-1/machines{/id}")
    );

    // Get by id or name; 404 otherwise.
    assert_eq!(
        s.get("/api/Spaces-1/machines/web01").await["Id"],
        json!(id1)
    );
    let (st, _) = s.request("GET", "/api/Spaces-1/machines/nope", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Update: the caller cannot set what health checks learn.
    let mut edit = web01.clone();
    edit["Name"] = json!("web01a");
    edit["IsDisabled"] = json!(true);
    edit["HealthStatus"] = json!("Healthy");
    edit["Roles"] = json!(["web", "db"]);
    let updated = s.put(&format!("/api/Spaces-1/machines/{id1}"), edit).await;
    assert_eq!(updated["Name"], "web01a");
    assert_eq!(updated["HealthStatus"], "Unknown");
    assert_eq!(updated["Status"], "Disabled");
    assert_eq!(updated["Roles"], json!(["web", "db"]));
    assert_eq!(list(&s, "roles=db").await, ["web01a"]);

    // Delete.
    let web02 = s.get("/api/Spaces-1/machines/web02").await;
    let path = format!("/api/Spaces-1/machines/{}", web02["Id"].as_str().unwrap());
    let (st, _) = s.request("DELETE", &path, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.request("GET", &path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Every mutation is audited.
    let ev = s
        .get(&format!("/api/events?regarding={id1}&take=100"))
        .await;
    let msgs: Vec<&str> = ev["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Message"].as_str().unwrap())
        .collect();
    assert!(msgs.contains(&"Machine web01 was created"), "{msgs:?}");
    assert!(msgs.contains(&"Machine web01a was modified"), "{msgs:?}");
    let ev = s.get("/api/events?take=200").await;
    assert!(
        ev["Items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["Message"] == "Machine web02 was deleted"),
        "{ev}"
    );
}

#[tokio::test]
async fn machine_validation_and_conflicts() {
    let s = Server::start();
    let dev = s.create_environment("Dev").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = StatusCode::BAD_REQUEST;
    let ok = passive("m1", &[&dev], &["web"], 'a');

    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = ok.clone();
        f(&mut b);
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&|b| b["Roles"] = json!([])), "Roles"),
        (with(&|b| b["Roles"] = json!(["  ", ""])), "Roles"),
        (with(&|b| b["Roles"] = json!(["a,b"])), "Roles"),
        (with(&|b| b["EnvironmentIds"] = json!([])), "EnvironmentIds"),
        (
            with(&|b| b["EnvironmentIds"] = json!(["Environments-999"])),
            "EnvironmentIds",
        ),
        (
            with(&|b| b["Endpoint"]["CommunicationStyle"] = json!("Ssh")),
            "Endpoint.Host",
        ),
        (
            with(&|b| b["Endpoint"]["CommunicationStyle"] = json!("Kubernetes")),
            "Endpoint.CommunicationStyle",
        ),
        (
            with(&|b| b["Endpoint"] = json!({})),
            "Endpoint.CommunicationStyle",
        ),
        (
            with(&|b| b["Endpoint"]["Thumbprint"] = json!("ABC")),
            "Endpoint.Thumbprint",
        ),
        (
            with(&|b| b["Endpoint"]["Thumbprint"] = json!(thumb('g'))),
            "Endpoint.Thumbprint",
        ),
        (
            with(&|b| b["Endpoint"]["Thumbprint"] = json!(null)),
            "Endpoint.Thumbprint",
        ),
        (
            with(&|b| b["Endpoint"]["Uri"] = json!("poll://m1/")),
            "Endpoint.Uri",
        ),
        (
            with(&|b| b["Endpoint"]["Uri"] = json!("http://m1:10933/")),
            "Endpoint.Uri",
        ),
        (
            with(&|b| {
                b["Endpoint"]["CommunicationStyle"] = json!("TentacleActive");
            }),
            "Endpoint.Uri",
        ),
        (
            with(&|b| b["MachinePolicyId"] = json!("MachinePolicies-999")),
            "MachinePolicyId",
        ),
        (
            with(&|b| b["TenantIds"] = json!(["Tenants-1"])),
            "TenantIds",
        ),
        (
            with(&|b| b["TenantedDeploymentParticipation"] = json!("Sometimes")),
            "TenantedDeploymentParticipation",
        ),
        (with(&|b| b["Name"] = json!("  ")), "Name"),
    ];
    for (body, field) in cases {
        let (st, v) = s
            .request("POST", "/api/Spaces-1/machines", Some(body.clone()))
            .await;
        assert_eq!(st, bad, "{body} -> {v}");
        let errors = v["Errors"].to_string();
        assert!(
            errors.contains(field),
            "{body}: {errors} should name {field}"
        );
    }
    // Several problems are reported together.
    let (_, v) = s
        .request(
            "POST",
            "/api/Spaces-1/machines",
            Some(with(&|b| {
                b["Roles"] = json!([]);
                b["Endpoint"]["Thumbprint"] = json!("x");
            })),
        )
        .await;
    assert_eq!(v["Errors"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        s.get("/api/Spaces-1/machines/all")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Conflicts: a name (case-insensitively) and a thumbprint are unique per space.
    let m1 = s.post("/api/Spaces-1/machines", ok.clone()).await;
    let conflict = StatusCode::CONFLICT;
    let e = refused(&s, passive("M1", &[&dev], &["web"], 'b'), conflict).await;
    assert!(e.contains("M1"), "{e}");
    let lower = thumb('a');
    let e = refused(&s, active("m2", &[&dev], &["web"], 'A'), conflict).await;
    assert!(e.contains("Thumbprint") && e.contains("m1"), "{e}");
    let mut again = passive("m2", &[&dev], &["web"], 'b');
    again["Endpoint"]["Thumbprint"] = json!(lower);
    refused(&s, again, conflict).await;
    let m2 = s
        .post(
            "/api/Spaces-1/machines",
            passive("m2", &[&dev], &["web"], 'b'),
        )
        .await;
    let m2_path = format!("/api/Spaces-1/machines/{}", m2["Id"].as_str().unwrap());
    let mut edit = m2.clone();
    edit["Endpoint"]["Thumbprint"] = json!(thumb('a'));
    let (st, v) = s.request("PUT", &m2_path, Some(edit)).await;
    assert_eq!(st, conflict, "{v}");
    let mut edit = m2.clone();
    edit["Name"] = json!("m1");
    let (st, _) = s.request("PUT", &m2_path, Some(edit)).await;
    assert_eq!(st, conflict);
    // Keeping its own thumbprint is fine.
    s.put(&m2_path, m2.clone()).await;
    // An invalid update is refused and changes nothing.
    let mut edit = m2.clone();
    edit["Roles"] = json!([]);
    let (st, _) = s.request("PUT", &m2_path, Some(edit)).await;
    assert_eq!(st, bad);
    assert_eq!(s.get(&m2_path).await["Roles"], json!(["web"]));
    // Another space may reuse the name and thumbprint.
    let ops = s.post("/api/spaces", json!({"Name": "Ops"})).await;
    let ops_id = ops["Id"].as_str().unwrap();
    let ops_env = s
        .post(
            &format!("/api/{ops_id}/environments"),
            json!({"Name": "Dev"}),
        )
        .await;
    let other = s
        .post(
            &format!("/api/{ops_id}/machines"),
            passive("m1", &[ops_env["Id"].as_str().unwrap()], &["web"], 'a'),
        )
        .await;
    assert_eq!(other["SpaceId"], json!(ops_id));
    // Environments of another space are unknown here.
    let e = refused(
        &s,
        passive("m3", &[ops_env["Id"].as_str().unwrap()], &["web"], 'd'),
        bad,
    )
    .await;
    assert!(e.contains("EnvironmentIds"), "{e}");
    let _ = m1;
}

/// A host key fingerprint as `ssh-keygen -l` prints it, without its `SHA256:` prefix.
const FP: &str = "nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8";

fn ssh(name: &str, envs: &[&str], account: &str) -> Value {
    json!({
        "Name": name, "EnvironmentIds": envs, "Roles": ["web"],
        "Endpoint": {"CommunicationStyle": "Ssh", "Host": name, "Fingerprint": FP, "AccountId": account}
    })
}

async fn account(s: &Server, name: &str, kind: &str) -> String {
    let body = if kind == "SshKeyPair" {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n";
        json!({"AccountType": kind, "Name": name, "Username": "deploy",
               "PrivateKeyFile": {"HasValue": true, "NewValue": key}})
    } else {
        json!({"AccountType": kind, "Name": name, "Username": "deploy",
               "Password": {"HasValue": true, "NewValue": "hunter2-but-longer"}})
    };
    s.post("/api/Spaces-1/accounts", body).await["Id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn ssh_targets_are_normalised_and_validated() {
    let s = Server::start();
    let dev = s.create_environment("Dev").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let key_acc = account(&s, "Deploy key", "SshKeyPair").await;
    let pw_acc = account(&s, "Ops login", "UsernamePassword").await;

    // Fingerprint without its prefix, default port and platform, the account by name.
    let mut body = ssh("Web01.Example.com", &[&dev], "Deploy key");
    body["Thumbprint"] = json!("ignored for ssh");
    let (st, m) = s
        .request("POST", "/api/Spaces-1/machines", Some(body))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    let ep = &m["Endpoint"];
    assert_eq!(ep["CommunicationStyle"], "Ssh");
    assert_eq!(ep["Host"], "web01.example.com");
    assert_eq!(ep["Port"], 22);
    assert_eq!(ep["Fingerprint"], json!(format!("SHA256:{FP}")));
    assert_eq!(ep["AccountId"], json!(key_acc));
    assert_eq!(ep["DotNetCorePlatform"], "linux-x64");
    assert_eq!(ep["Uri"], "ssh://web01.example.com:22/");
    assert_eq!(m["Uri"], "ssh://web01.example.com:22/");
    assert_eq!(ep["Thumbprint"], "");
    assert_eq!(m["Thumbprint"], "");
    let id = m["Id"].as_str().unwrap().to_string();
    let got = s.get(&format!("/api/Spaces-1/machines/{id}")).await;
    assert_eq!(got["Endpoint"], m["Endpoint"]);

    // A second SSH target (no thumbprint to collide on), another port, a password account by
    // id, the prefixed fingerprint, an IP address.
    let mut body = ssh("db01", &[&dev], &pw_acc);
    body["Endpoint"]["Host"] = json!("10.0.0.7");
    body["Endpoint"]["Port"] = json!(2222);
    body["Endpoint"]["Fingerprint"] = json!(format!("SHA256:{FP}"));
    body["Endpoint"]["DotNetCorePlatform"] = json!("linux-arm64");
    let db = s.post("/api/Spaces-1/machines", body).await;
    assert_eq!(db["Endpoint"]["Uri"], "ssh://10.0.0.7:2222/");
    assert_eq!(db["Endpoint"]["AccountId"], json!(pw_acc));
    assert_eq!(db["Endpoint"]["DotNetCorePlatform"], "linux-arm64");
    // Listed and filtered with the agents.
    s.post(
        "/api/Spaces-1/machines",
        passive("agent01", &[&dev], &["web"], 'a'),
    )
    .await;
    assert_eq!(
        list(&s, "commStyles=Ssh").await,
        ["Web01.Example.com", "db01"]
    );
    assert_eq!(list(&s, "").await.len(), 3);

    // Update: the object as read comes back unchanged; a changed port moves the Uri.
    let path = format!("/api/Spaces-1/machines/{id}");
    let same = s.put(&path, got.clone()).await;
    assert_eq!(same["Endpoint"], got["Endpoint"]);
    let mut edit = got.clone();
    edit["Endpoint"]["Port"] = json!(2200);
    edit["IsDisabled"] = json!(true);
    let v = s.put(&path, edit).await;
    assert_eq!(v["Uri"], "ssh://web01.example.com:2200/");
    assert_eq!(v["Status"], "Disabled");
    // A client that sends only the ssh:// address.
    let mut flat = ssh("app01", &[&dev], &key_acc);
    flat["Endpoint"].as_object_mut().unwrap().remove("Host");
    flat["Uri"] = json!("ssh://App01:2022/");
    let app = s.post("/api/Spaces-1/machines", flat).await;
    assert_eq!(app["Endpoint"]["Host"], "app01");
    assert_eq!(app["Endpoint"]["Port"], 2022);

    // Validation: each problem names its field; the fingerprint error says how to get it.
    let bad = StatusCode::BAD_REQUEST;
    let ok = ssh("m1", &[&dev], &key_acc);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = ok.clone();
        f(&mut b);
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            with(&|b| {
                b["Endpoint"].as_object_mut().unwrap().remove("Host");
            }),
            "Endpoint.Host",
        ),
        (
            with(&|b| b["Endpoint"]["Host"] = json!("ssh://m1")),
            "Endpoint.Host",
        ),
        (
            with(&|b| b["Endpoint"]["Host"] = json!("m 1")),
            "Endpoint.Host",
        ),
        (
            with(&|b| b["Endpoint"]["Host"] = json!("root@m1")),
            "Endpoint.Host",
        ),
        (with(&|b| b["Endpoint"]["Port"] = json!(0)), "Endpoint.Port"),
        (
            with(&|b| b["Endpoint"]["Port"] = json!(70000)),
            "Endpoint.Port",
        ),
        (
            with(&|b| {
                b["Endpoint"].as_object_mut().unwrap().remove("AccountId");
            }),
            "Endpoint.AccountId",
        ),
        (
            with(&|b| b["Endpoint"]["AccountId"] = json!("Accounts-999")),
            "Endpoint.AccountId: the account 'Accounts-999' was not found",
        ),
        (
            with(&|b| {
                b["Endpoint"].as_object_mut().unwrap().remove("Fingerprint");
            }),
            "ssh-keyscan -p 22 m1 | ssh-keygen -lf -",
        ),
        (
            with(&|b| b["Endpoint"]["Fingerprint"] = json!("MD5:16:27:ac:a5:76:28:2d:36")),
            "Endpoint.Fingerprint",
        ),
        (
            with(&|b| {
                b["Endpoint"]["Fingerprint"] = json!(&FP[..40]);
                b["Endpoint"]["Port"] = json!(2222);
            }),
            "ssh-keyscan -p 2222 m1 | ssh-keygen -lf -",
        ),
    ];
    for (body, field) in cases {
        let (st, v) = s
            .request("POST", "/api/Spaces-1/machines", Some(body.clone()))
            .await;
        assert_eq!(st, bad, "{body} -> {v}");
        let errors = format!("{} {}", v["ErrorMessage"], v["Errors"]);
        assert!(
            errors.contains(field),
            "{body}: {errors} should name {field}"
        );
    }
    // Another space's account is unknown here.
    let ops = s.post("/api/spaces", json!({"Name": "Ops"})).await;
    let ops_id = ops["Id"].as_str().unwrap();
    let other = s
        .post(
            &format!("/api/{ops_id}/accounts"),
            json!({"AccountType": "UsernamePassword", "Name": "elsewhere", "Username": "u",
                   "Password": {"HasValue": true, "NewValue": "pw-elsewhere"}}),
        )
        .await;
    let e = refused(&s, ssh("m2", &[&dev], other["Id"].as_str().unwrap()), bad).await;
    assert!(e.contains("Endpoint.AccountId"), "{e}");
    // A Tentacle keeps needing its thumbprint; SSH fields sent with it are dropped.
    let mut agent = passive("agent02", &[&dev], &["web"], 'b');
    agent["Endpoint"]["Host"] = json!("agent02");
    agent["Endpoint"]["AccountId"] = json!(key_acc);
    let a2 = s.post("/api/Spaces-1/machines", agent).await;
    assert!(a2["Endpoint"].get("AccountId").is_none(), "{a2}");
    assert_eq!(a2["Thumbprint"], json!(thumb('B')));
}

#[tokio::test]
async fn machine_policies_default_per_space_and_validation() {
    let s = Server::start();
    let page = s.get("/api/Spaces-1/machinepolicies").await;
    assert_eq!(page["TotalResults"], 1);
    let p = page["Items"][0].clone();
    assert_eq!(p["Name"], "Default Machine Policy");
    assert_eq!(p["IsDefault"], true);
    assert_eq!(p["SpaceId"], "Spaces-1");
    assert_eq!(
        p["MachineHealthCheckPolicy"]["HealthCheckInterval"],
        "00:10:00"
    );
    assert_eq!(
        p["MachineHealthCheckPolicy"]["HealthCheckType"],
        "RunScript"
    );
    assert_eq!(
        p["MachineConnectivityPolicy"]["MachineConnectivityBehavior"],
        "ExpectedToBeOnline"
    );
    let id = p["Id"].as_str().unwrap().to_string();
    assert!(id.starts_with("MachinePolicies-"), "{id}");
    let path = format!("/api/Spaces-1/machinepolicies/{id}");
    assert_eq!(s.get(&path).await["Name"], "Default Machine Policy");

    // Update what Ferry acts on; the default flag stays.
    let mut edit = p.clone();
    edit["MachineHealthCheckPolicy"]["HealthCheckInterval"] = json!("0.00:05:00");
    edit["MachineHealthCheckPolicy"]["HealthCheckType"] = json!("OnlyConnectivity");
    edit["MachineConnectivityPolicy"]["MachineConnectivityBehavior"] =
        json!("MayBeOfflineAndCanBeSkipped");
    edit["IsDefault"] = json!(false);
    let saved = s.put(&path, edit).await;
    assert_eq!(
        saved["MachineHealthCheckPolicy"]["HealthCheckInterval"],
        "00:05:00"
    );
    assert_eq!(saved["IsDefault"], true);
    assert_eq!(
        s.get(&path).await["MachineConnectivityPolicy"]["MachineConnectivityBehavior"],
        "MayBeOfflineAndCanBeSkipped"
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/MachineHealthCheckPolicy/HealthCheckInterval",
            json!("ten minutes"),
            "HealthCheckInterval",
        ),
        (
            "/MachineHealthCheckPolicy/HealthCheckInterval",
            json!("00:00:10"),
            "HealthCheckInterval",
        ),
        (
            "/MachineHealthCheckPolicy/HealthCheckType",
            json!("Ping"),
            "HealthCheckType",
        ),
        (
            "/MachineHealthCheckPolicy/BashHealthCheckPolicy",
            json!({"RunType": "Inline", "ScriptBody": ""}),
            "ScriptBody",
        ),
        (
            "/MachineConnectivityPolicy/MachineConnectivityBehavior",
            json!("Whatever"),
            "MachineConnectivityBehavior",
        ),
        (
            "/MachineCleanupPolicy/DeleteMachinesBehavior",
            json!("Sometimes"),
            "DeleteMachinesBehavior",
        ),
        ("/Name", json!(""), "Name"),
    ];
    for (pointer, value, field) in cases {
        let mut b = p.clone();
        *b.pointer_mut(pointer).unwrap() = value;
        let (st, v) = s.request("PUT", &path, Some(b)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{pointer}: {v}");
        assert!(v["Errors"].to_string().contains(field), "{pointer}: {v}");
    }
    let (st, _) = s
        .request(
            "GET",
            "/api/Spaces-1/machinepolicies/MachinePolicies-999",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A machine names the policy explicitly, or gets the default.
    let env = s.create_environment("Dev").await;
    let mut m = passive("m1", &[env["Id"].as_str().unwrap()], &["web"], 'e');
    m["MachinePolicyId"] = json!("Default Machine Policy");
    let m = s.post("/api/Spaces-1/machines", m).await;
    assert_eq!(m["MachinePolicyId"], json!(id));

    // Each new space has its own default policy; the update was audited.
    let ops = s.post("/api/spaces", json!({"Name": "Ops"})).await;
    let ops_id = ops["Id"].as_str().unwrap();
    let theirs = s.get(&format!("/api/{ops_id}/machinepolicies/all")).await;
    assert_eq!(theirs.as_array().unwrap().len(), 1);
    assert_eq!(theirs[0]["IsDefault"], true);
    assert_ne!(theirs[0]["Id"], json!(id));
    let ev = s.get(&format!("/api/events?regarding={id}")).await;
    assert_eq!(
        ev["Items"][0]["Message"],
        "Machine policy Default Machine Policy was modified"
    );
}

fn ferry(s: &Server, args: &[&str]) -> Output {
    Command::new(ferry_bin())
        .args(args)
        .env("FERRY_URL", &s.url)
        .env("FERRY_API_KEY", &s.api_key)
        .env_remove("FERRY_SPACE")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test]
async fn target_cli_lists_shows_toggles_and_deletes() {
    let s = Server::start();
    let dev = s.create_environment("Dev").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let prod = s.create_environment("Prod").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let web = s
        .post(
            "/api/Spaces-1/machines",
            passive("web01", &[&dev], &["web"], 'a'),
        )
        .await;
    s.post(
        "/api/Spaces-1/machines",
        active("poll01", &[&prod], &["worker"], 'b'),
    )
    .await;

    let o = ferry(&s, &["target", "list"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.starts_with("ID"), "{out}");
    assert!(out.contains("web01") && out.contains("poll01"), "{out}");
    assert!(
        out.contains("TentacleActive") && out.contains("Prod"),
        "{out}"
    );

    let out = stdout(&ferry(&s, &["target", "list", "--role", "web"]));
    assert!(out.contains("web01") && !out.contains("poll01"), "{out}");
    let out = stdout(&ferry(&s, &["target", "list", "--environment", "Prod"]));
    assert!(!out.contains("web01") && out.contains("poll01"), "{out}");
    let out = stdout(&ferry(&s, &["target", "list", "--role", "nothing"]));
    assert_eq!(out.trim(), "No deployment targets");
    let o = ferry(&s, &["target", "list", "--environment", "Nope"]);
    assert_eq!(o.status.code(), Some(1));

    let o = ferry(&s, &["target", "list", "--output", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);

    let out = stdout(&ferry(&s, &["target", "show", "web01"]));
    assert!(out.contains("https://web01:10933/"), "{out}");
    assert!(out.contains(&thumb('A')), "{out}");
    assert!(out.contains("Unknown"), "{out}");
    let o = ferry(&s, &["target", "show", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"), "{o:?}");

    let id = web["Id"].as_str().unwrap();
    let o = ferry(&s, &["target", "disable", "web01"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("Disabled target web01"));
    let m = s.get(&format!("/api/Spaces-1/machines/{id}")).await;
    assert_eq!(m["IsDisabled"], true);
    assert_eq!(m["Roles"], json!(["web"]), "the rest is unchanged");
    let out = stdout(&ferry(&s, &["target", "list"]));
    assert!(out.contains("(disabled)"), "{out}");
    let o = ferry(&s, &["target", "enable", id]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        s.get(&format!("/api/Spaces-1/machines/{id}")).await["IsDisabled"],
        false
    );

    let o = ferry(&s, &["target", "delete", "web01"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains(&format!("Deleted target web01 ({id})")));
    let (st, _) = s
        .request("GET", &format!("/api/Spaces-1/machines/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let ev = s.get(&format!("/api/events?regarding={id}")).await;
    let cats: Vec<&str> = ev["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Category"].as_str().unwrap())
        .collect();
    assert!(
        cats.contains(&"Deleted") && cats.contains(&"Modified"),
        "{cats:?}"
    );
}
