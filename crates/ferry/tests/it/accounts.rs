//! Accounts through the real server: both supported types, their write-only secrets (never in a
//! response, an audit event, the log or the database in clear), list filters, updates that
//! keep, replace and clear secrets, validation, and deletion refused while an SSH target uses
//! the account.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use ferry_crypto::{MasterKey, account_aad, open};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Server, skip_or_fail};

const FINGERPRINT: &str = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8";

/// A fresh ed25519 private key (OpenSSH PEM text), or `None` when ssh-keygen is missing.
fn generate_key(dir: &Path, name: &str) -> Option<String> {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-t", "ed25519", "-N", "", "-q", "-C", "ferry-test", "-f"])
        .arg(&path)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(std::fs::read_to_string(&path).unwrap()),
        Ok(o) => panic!("ssh-keygen failed: {o:?}"),
        Err(_) => None,
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The longest line of the key's body: what must never leak.
fn key_body_line(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .max_by_key(|l| l.len())
        .unwrap()
        .to_string()
}

/// The database files (with the write-ahead log) as one lossy string.
fn db_text(s: &Server) -> String {
    let mut bytes = Vec::new();
    for f in ["ferry.db", "ferry.db-wal"] {
        if let Ok(b) = std::fs::read(s.data_dir.join(f)) {
            bytes.extend_from_slice(&b);
        }
    }
    assert!(!bytes.is_empty(), "no sqlite database in {:?}", s.data_dir);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn master_key(s: &Server) -> MasterKey {
    let text = std::fs::read_to_string(s.data_dir.join("master.key")).unwrap();
    MasterKey::from_base64(&text).unwrap()
}

/// The account's document as stored.
async fn stored_doc(s: &Server, id: &str) -> Value {
    let url = format!("sqlite://{}", s.data_dir.join("ferry.db").display());
    let db = ferry_store::Db::open(&url).await.unwrap();
    let doc = db.get_doc(id).await.unwrap().unwrap();
    serde_json::from_str(&doc.body).unwrap()
}

/// Opens a stored account's sealed field.
fn unseal(key: &MasterKey, doc: &Value, member: &str, id: &str, field: &str) -> String {
    let sealed = doc[member]
        .as_str()
        .unwrap_or_else(|| panic!("no {member}"));
    assert!(sealed.starts_with("FERRY1:"), "{sealed}");
    open(key, &account_aad(id, field), sealed).unwrap()
}

fn ssh_target(name: &str, env: &str, account: &str) -> Value {
    json!({
        "Name": name, "EnvironmentIds": [env], "Roles": ["web"],
        "Endpoint": {"CommunicationStyle": "Ssh", "Host": name, "Fingerprint": FINGERPRINT, "AccountId": account}
    })
}

/// POSTs or PUTs expecting 400; returns the errors as one string.
async fn bad(s: &Server, method: &str, path: &str, body: Value) -> String {
    let (st, v) = s.request(method, path, Some(body.clone())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {v}");
    format!("{} {}", v["ErrorMessage"], v["Errors"])
}

#[tokio::test]
async fn accounts_crud_secrets_filters_and_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(key) = generate_key(tmp.path(), "k") else {
        skip_or_fail("accounts", "ssh-keygen is not installed");
        return;
    };
    let key2 = generate_key(tmp.path(), "k2").unwrap();
    let password = "correct-horse-battery-staple-71";
    let passphrase = "p4ss-phr4se-for-the-key";
    let s = Server::start();
    let dev = s.create_environment("Dev").await["Id"]
        .as_str()
        .unwrap()
        .to_string();

    // An SSH key pair, the key as base64 of the file (as Octopus's clients send it), the
    // environment by name.
    let (st, deploy) = s
        .request(
            "POST",
            "/api/Spaces-1/accounts",
            Some(json!({
                "AccountType": "SshKeyPair", "Name": "Deploy key", "Description": "the deploy user",
                "Username": "deploy", "EnvironmentIds": ["Dev"],
                "PrivateKeyFile": {"HasValue": true, "NewValue": b64(&key)},
                "PrivateKeyPassphrase": {"HasValue": true, "NewValue": passphrase},
            })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{deploy}");
    let deploy_id = deploy["Id"].as_str().unwrap().to_string();
    assert!(deploy_id.starts_with("Accounts-"), "{deploy}");
    assert_eq!(deploy["AccountType"], "SshKeyPair");
    assert_eq!(deploy["SpaceId"], "Spaces-1");
    assert_eq!(deploy["Slug"], "deploy-key");
    assert_eq!(deploy["Username"], "deploy");
    assert_eq!(deploy["EnvironmentIds"], json!([dev]));
    assert_eq!(deploy["TenantedDeploymentParticipation"], "Untenanted");
    assert_eq!(
        deploy["PrivateKeyFile"],
        json!({"HasValue": true, "NewValue": null})
    );
    assert_eq!(
        deploy["PrivateKeyPassphrase"],
        json!({"HasValue": true, "NewValue": null})
    );
    assert_eq!(
        deploy["Links"]["Self"],
        json!(format!("/api/Spaces-1/accounts/{deploy_id}"))
    );
    assert!(deploy["Links"]["Usages"].is_string(), "{deploy}");
    assert!(
        deploy
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("Sealed")),
        "{deploy}"
    );

    // Raw PEM text works too (camelCase keys, as the Go CLI sends them).
    let (st, raw) = s
        .request(
            "POST",
            "/api/Spaces-1/accounts",
            Some(json!({
                "accountType": "SshKeyPair", "name": "Raw key", "username": "root",
                "privateKeyFile": {"hasValue": true, "newValue": key2},
            })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{raw}");
    assert_eq!(raw["PrivateKeyPassphrase"]["HasValue"], false);
    let raw_id = raw["Id"].as_str().unwrap().to_string();

    let (st, userpass) = s
        .request(
            "POST",
            "/api/Spaces-1/accounts",
            Some(json!({
                "AccountType": "UsernamePassword", "Name": "Ops login", "Username": "ops",
                "Password": {"HasValue": true, "NewValue": password},
            })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{userpass}");
    let up_id = userpass["Id"].as_str().unwrap().to_string();
    assert_eq!(
        userpass["Password"],
        json!({"HasValue": true, "NewValue": null})
    );
    assert!(userpass.get("PrivateKeyFile").is_none(), "{userpass}");

    // List, filters, /all, get by id, slug or name.
    let p = s.get("/api/Spaces-1/accounts").await;
    assert_eq!(p["ItemType"], "Account");
    assert_eq!(p["TotalResults"], 3);
    let p = s.get("/api/Spaces-1/accounts?accountType=SshKeyPair").await;
    assert_eq!(p["TotalResults"], 2, "{p}");
    let p = s
        .get("/api/Spaces-1/accounts?accountType=usernamepassword")
        .await;
    assert_eq!(p["Items"][0]["Name"], "Ops login", "{p}");
    let p = s.get("/api/Spaces-1/accounts?partialName=KEY").await;
    assert_eq!(p["TotalResults"], 2, "{p}");
    let p = s
        .get(&format!("/api/Spaces-1/accounts?ids={up_id}&take=1"))
        .await;
    assert_eq!(p["Items"].as_array().unwrap().len(), 1);
    let p = s.get("/api/Spaces-1/accounts?take=1&skip=1").await;
    assert_eq!(p["Items"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.get("/api/Spaces-1/accounts/all")
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        s.get("/api/Spaces-1/accounts/deploy-key").await["Id"],
        json!(deploy_id)
    );
    assert_eq!(
        s.get("/api/Spaces-1/accounts/Ops login").await["Id"],
        json!(up_id)
    );
    assert_eq!(
        s.get("/api/accounts/Raw key").await["Id"],
        json!(raw_id),
        "the default space"
    );
    let (st, _) = s.request("GET", "/api/Spaces-1/accounts/nope", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // PUT: a secret without a new value is kept; the passphrase can be cleared; the key and
    // the password can be replaced.
    let path = format!("/api/Spaces-1/accounts/{deploy_id}");
    let mut edit = s.get(&path).await;
    edit["Description"] = json!("changed");
    let stored = stored_doc(&s, &deploy_id).await;
    let v = s.put(&path, edit.clone()).await;
    assert_eq!(v["Description"], "changed");
    assert_eq!(v["PrivateKeyFile"]["HasValue"], true);
    assert_eq!(v["PrivateKeyPassphrase"]["HasValue"], true);

    // At rest: sealed, bound to the account id and the field; the key as PEM text, whatever
    // form it was sent in; kept exactly when the PUT carries no new value.
    let mk = master_key(&s);
    let kept = stored_doc(&s, &deploy_id).await;
    assert_eq!(kept["SealedPrivateKey"], stored["SealedPrivateKey"]);
    let pem = |doc: &Value, id: &str| unseal(&mk, doc, "SealedPrivateKey", id, "PrivateKeyFile");
    assert_eq!(pem(&kept, &deploy_id), key);
    assert_eq!(
        unseal(
            &mk,
            &kept,
            "SealedPrivateKeyPassphrase",
            &deploy_id,
            "PrivateKeyPassphrase"
        ),
        passphrase
    );
    let sealed_key = kept["SealedPrivateKey"].as_str().unwrap();
    assert!(open(&mk, &account_aad(&raw_id, "PrivateKeyFile"), sealed_key).is_err());
    assert!(open(&mk, &account_aad(&deploy_id, "Password"), sealed_key).is_err());
    assert_eq!(pem(&stored_doc(&s, &raw_id).await, &raw_id), key2);
    let up_doc = stored_doc(&s, &up_id).await;
    assert_eq!(
        unseal(&mk, &up_doc, "SealedPassword", &up_id, "Password"),
        password
    );
    assert!(up_doc.get("SealedPrivateKey").is_none(), "{up_doc}");
    edit["PrivateKeyPassphrase"] = json!({"HasValue": false, "NewValue": null});
    let v = s.put(&path, edit.clone()).await;
    assert_eq!(v["PrivateKeyPassphrase"]["HasValue"], false, "{v}");
    assert_eq!(v["PrivateKeyFile"]["HasValue"], true, "{v}");
    let sealed_before = db_text(&s);
    edit["PrivateKeyFile"] = json!({"HasValue": true, "NewValue": b64(&key2)});
    edit["PrivateKeyPassphrase"] = json!({"HasValue": true, "NewValue": passphrase});
    let v = s.put(&path, edit.clone()).await;
    assert_eq!(v["PrivateKeyFile"]["HasValue"], true);
    assert_eq!(v["PrivateKeyPassphrase"]["HasValue"], true);
    assert_ne!(sealed_before, db_text(&s));
    // Dropping the key entirely keeps it too (it is required, so it cannot be cleared).
    edit.as_object_mut().unwrap().remove("PrivateKeyFile");
    let v = s.put(&path, edit.clone()).await;
    assert_eq!(v["PrivateKeyFile"]["HasValue"], true);
    // The type cannot change.
    let mut retype = edit.clone();
    retype["AccountType"] = json!("UsernamePassword");
    retype["Password"] = json!({"HasValue": true, "NewValue": "x"});
    let e = bad(&s, "PUT", &path, retype).await;
    assert!(e.contains("AccountType"), "{e}");
    let up_path = format!("/api/Spaces-1/accounts/{up_id}");
    let mut up = s.get(&up_path).await;
    up["Username"] = json!("ops2");
    assert_eq!(
        s.put(&up_path, up.clone()).await["Password"]["HasValue"],
        true
    );
    up["Password"] = json!({"HasValue": true, "NewValue": format!("{password}-new")});
    let v = s.put(&up_path, up.clone()).await;
    assert_eq!(v["Username"], "ops2");
    assert_eq!(v["Password"]["HasValue"], true);

    // 409 on a duplicate name (case-insensitively), on create and on rename.
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/accounts",
            Some(json!({
                "AccountType": "UsernamePassword", "Name": "OPS LOGIN", "Username": "x",
                "Password": {"HasValue": true, "NewValue": "y"},
            })),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let mut rename = up.clone();
    rename["Name"] = json!("deploy KEY");
    let (st, _) = s.request("PUT", &up_path, Some(rename)).await;
    assert_eq!(st, StatusCode::CONFLICT);

    // An SSH target uses the key pair: its deletion is refused, naming the target.
    let target = s
        .post(
            "/api/Spaces-1/machines",
            ssh_target("web01", &dev, "Deploy key"),
        )
        .await;
    assert_eq!(target["Endpoint"]["AccountId"], json!(deploy_id));
    let usages = s.get(&format!("{path}/usages")).await;
    assert_eq!(usages["Targets"][0]["TargetName"], "web01", "{usages}");
    let (st, v) = s.request("DELETE", &path, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("web01"), "{v}");
    s.get(&path).await;
    let tpath = format!("/api/Spaces-1/machines/{}", target["Id"].as_str().unwrap());
    let (st, _) = s.request("DELETE", &tpath, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.request("DELETE", &path, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.request("GET", &path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Every mutation is audited, with the secrets shown only as HasValue.
    let ev = s
        .get(&format!("/api/events?regarding={deploy_id}&take=100"))
        .await;
    let msgs: Vec<&str> = ev["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Message"].as_str().unwrap())
        .collect();
    assert!(msgs.contains(&"Account Deploy key was created"), "{msgs:?}");
    assert!(
        msgs.contains(&"Account Deploy key was modified"),
        "{msgs:?}"
    );
    assert!(msgs.contains(&"Account Deploy key was deleted"), "{msgs:?}");

    // No secret, nor any part of one, appears in a response, an event, the log or the store.
    let mut seen = String::new();
    for p in [
        "/api/events?take=100".to_string(),
        format!("/api/events?regarding={up_id}&take=100"),
        "/api/Spaces-1/accounts".to_string(),
        "/api/Spaces-1/accounts/all".to_string(),
        up_path.clone(),
        format!("/api/Spaces-1/accounts/{raw_id}"),
    ] {
        seen.push_str(&s.raw(&p).await);
    }
    // The events show the secrets as sensitive values, as the responses do.
    let events = s.raw("/api/events?take=100").await;
    assert!(
        events.contains("\"PrivateKeyFile\":{\"HasValue\":true,\"NewValue\":null}"),
        "{events}"
    );
    assert!(
        events.contains("\"Password\":{\"HasValue\":true,\"NewValue\":null}"),
        "{events}"
    );
    assert!(
        !seen.contains("Sealed") && !seen.contains("FERRY1:"),
        "{seen}"
    );
    let store = db_text(&s);
    assert!(
        store.contains("SealedPassword"),
        "the store keeps the sealed values"
    );
    let log = s.output_text();
    for secret in [
        key_body_line(&key),
        key_body_line(&key2),
        b64(&key),
        b64(&key2)[..60].to_string(),
        password.to_string(),
        passphrase.to_string(),
        "OPENSSH PRIVATE KEY".to_string(),
    ] {
        assert!(!seen.contains(&secret), "a response shows {secret}");
        assert!(
            !store.contains(&secret),
            "the store holds {secret} in clear"
        );
        assert!(!log.contains(&secret), "the log shows {secret}");
    }
}

#[tokio::test]
async fn account_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(key) = generate_key(tmp.path(), "k") else {
        skip_or_fail("accounts", "ssh-keygen is not installed");
        return;
    };
    let s = Server::start();
    let ok = json!({
        "AccountType": "SshKeyPair", "Name": "k", "Username": "deploy",
        "PrivateKeyFile": {"HasValue": true, "NewValue": b64(&key)},
    });
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = ok.clone();
        f(&mut b);
        b
    };
    let public = std::fs::read_to_string(tmp.path().join("k.pub")).unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (
            with(&|b| b["AccountType"] = json!("AzureServicePrincipal")),
            "not supported",
        ),
        (
            with(&|b| b["AccountType"] = json!("Token")),
            "not supported",
        ),
        (with(&|b| b["AccountType"] = json!("")), "AccountType"),
        (with(&|b| b["Username"] = json!("")), "Username"),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("Username");
            }),
            "Username",
        ),
        (
            with(&|b| b["PrivateKeyFile"]["NewValue"] = json!("bm90IGEga2V5")),
            "PrivateKeyFile",
        ),
        (
            with(&|b| b["PrivateKeyFile"]["NewValue"] = json!("%%% not base64 %%%")),
            "PrivateKeyFile",
        ),
        (
            with(&|b| b["PrivateKeyFile"]["NewValue"] = json!(b64(&public))),
            "PrivateKeyFile",
        ),
        (
            with(&|b| {
                b["PrivateKeyFile"]["NewValue"] =
                    json!("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n")
            }),
            "PrivateKeyFile",
        ),
        (
            with(&|b| b["PrivateKeyFile"] = json!({"HasValue": false})),
            "PrivateKeyFile",
        ),
        (
            with(&|b| b["EnvironmentIds"] = json!(["Environments-999"])),
            "EnvironmentIds",
        ),
        (
            with(&|b| b["TenantIds"] = json!(["Tenants-1"])),
            "TenantIds",
        ),
        (
            with(&|b| b["TenantedDeploymentParticipation"] = json!("Sometimes")),
            "TenantedDeploymentParticipation",
        ),
        (with(&|b| b["Name"] = json!(" ")), "Name"),
        (
            json!({"AccountType": "UsernamePassword", "Name": "u", "Username": "x"}),
            "Password",
        ),
        (
            json!({"AccountType": "UsernamePassword", "Name": "u", "Username": "x",
                   "Password": {"HasValue": true, "NewValue": null}}),
            "Password",
        ),
    ];
    for (body, field) in cases {
        let e = bad(&s, "POST", "/api/Spaces-1/accounts", body.clone()).await;
        assert!(e.contains(field), "{body}: {e} should name {field}");
        // An error never repeats what was sent as a secret.
        if let Some(v) = body["PrivateKeyFile"]["NewValue"].as_str() {
            assert!(!e.contains(v), "{e}");
        }
    }
    // Several problems are reported together.
    let (_, v) = s
        .request(
            "POST",
            "/api/Spaces-1/accounts",
            Some(with(&|b| {
                b["Username"] = json!("");
                b["EnvironmentIds"] = json!(["Nope"]);
            })),
        )
        .await;
    assert_eq!(v["Errors"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        s.get("/api/Spaces-1/accounts/all")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (st, _) = s
        .request("POST", "/api/Spaces-99/accounts", Some(ok.clone()))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Another space may reuse the name; its environments are unknown here.
    s.post("/api/Spaces-1/accounts", ok.clone()).await;
    let ops = s.post("/api/spaces", json!({"Name": "Ops"})).await;
    let ops_id = ops["Id"].as_str().unwrap();
    let ops_env = s
        .post(
            &format!("/api/{ops_id}/environments"),
            json!({"Name": "OpsEnv"}),
        )
        .await;
    s.post(&format!("/api/{ops_id}/accounts"), ok.clone()).await;
    let e = bad(
        &s,
        "POST",
        "/api/Spaces-1/accounts",
        with(&|b| {
            b["Name"] = json!("k2");
            b["EnvironmentIds"] = json!([ops_env["Id"]]);
        }),
    )
    .await;
    assert!(e.contains("EnvironmentIds"), "{e}");
}
