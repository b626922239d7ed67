//! No sensitive value in plain text anywhere: a server is given one secret of every kind (a
//! sensitive project variable used by a deployment, an account password, the SMTP password, a
//! webhook header value, a user's password, API keys), then every GET route of its own table
//! (`/api/openapi.json`, with ids of real objects), the server's log (at debug level) and every
//! file of its data directory (the SQLite database and its WAL included) are searched for each
//! secret. The only response allowed to carry one is the API key's creation (shown once).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Opts, Server};

const SP: &str = "/api/Spaces-1";

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_secret_in_responses_logs_or_files() {
    let mut s = Server::start_with(Opts {
        env: vec![("FERRY_LOG".into(), "debug".into())],
        ..Opts::default()
    });
    let var = "sv-4b1d0e5a-VARIABLE";
    let acct = "sv-91c2aa07-ACCOUNT";
    let smtp = "sv-5f3e8d21-SMTP";
    let hook = "sv-c0ffee42-WEBHOOK";
    let pass = "sv-7a7a7a7a-PASSWORD";

    s.create_environment("Test").await;
    let p = s.create_project("Vault").await;
    let pid = p["Id"].as_str().unwrap().to_string();
    s.set_scripts(
        "Vault",
        &[(
            "Use",
            "echo \"the secret is #{DbPassword}\"; set_octopusvariable Out \"#{DbPassword}\" -sensitive",
        )],
    )
    .await;
    let vpath = format!("{SP}/variables/variableset-{pid}");
    let mut vars = s.get(&vpath).await;
    vars["Variables"] = json!([{"Name": "DbPassword", "Value": var, "IsSensitive": true}]);
    s.put(&vpath, vars).await;
    s.post(
        &format!("{SP}/accounts"),
        json!({"AccountType": "UsernamePassword", "Name": "Ops", "Username": "ops",
            "Password": {"HasValue": true, "NewValue": acct}}),
    )
    .await;
    s.put(
        "/api/smtpconfiguration",
        json!({"SmtpHost": "127.0.0.1", "SmtpPort": 2525, "SendEmailFrom": "ferry@example.com",
            "SmtpLogin": "mailer", "SmtpPassword": {"HasValue": true, "NewValue": smtp},
            "EnableSsl": false, "Timeout": 10000}),
    )
    .await;
    s.post(
        &format!("{SP}/subscriptions"),
        json!({"Name": "Hook", "Type": "Event", "IsDisabled": true,
            "EventNotificationSubscription": {
                "Filter": {}, "WebhookURI": "https://hooks.example.com/x",
                "WebhookHeaderKey": "X-Token", "WebhookHeaderValue": hook}}),
    )
    .await;
    let user = s
        .post(
            "/api/users",
            json!({"Username": "carol", "DisplayName": "Carol", "Password": pass}),
        )
        .await;
    let uid = user["Id"].as_str().unwrap().to_string();
    // The key is shown once, in this response only.
    let key = s
        .post(
            &format!("/api/users/{uid}/apikeys"),
            json!({"Purpose": "scan"}),
        )
        .await["ApiKey"]
        .as_str()
        .unwrap()
        .to_string();
    // It works, and its use is logged without it.
    let (st, _) = s
        .request_with_key("GET", "/api/users/me", None, Some(&key))
        .await;
    assert!(st.is_success());
    // Signing in with the password (the request body is not logged).
    let _ = s
        .request(
            "POST",
            "/api/users/login",
            Some(json!({"Username": "carol", "Password": pass})),
        )
        .await;

    s.create_release("Vault", "1.0.0").await;
    let task = s.deploy("Vault", "1.0.0", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Success", "{t}");
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert!(raw.contains("the secret is ********"), "{raw}");

    let admin_key = s.api_key.clone();
    let secrets = [
        var,
        acct,
        smtp,
        hook,
        pass,
        key.as_str(),
        admin_key.as_str(),
    ];

    // Every GET route, with the ids of real objects where the route names one.
    let openapi = s.get("/api/openapi.json").await;
    let mut ids: Vec<(String, String)> = Vec::new(); // (collection segment, id)
    for (path, ops) in openapi["paths"].as_object().unwrap() {
        if ops.get("get").is_none() || path.contains('{') && !path.ends_with("{id}") {
            continue;
        }
        if !path.contains('{') || path == "/api/{space_id}" {
            continue;
        }
        // A list next to the `{id}` route gives real ids.
        let list = path
            .trim_end_matches("/{id}")
            .replace("{space_id}", "Spaces-1");
        let (st, v) = s.request("GET", &list, None).await;
        if st.is_success() {
            let collection = path
                .trim_end_matches("/{id}")
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            let items = v["Items"]
                .as_array()
                .cloned()
                .or_else(|| v.as_array().cloned());
            for i in items.into_iter().flatten().take(3) {
                if let Some(id) = i["Id"].as_str() {
                    ids.push((collection.clone(), id.to_string()));
                }
            }
        }
    }
    ids.push(("tasks".into(), task.clone()));
    ids.push(("variables".into(), format!("variableset-{pid}")));
    ids.push(("users".into(), uid.clone()));
    let mut scanned = 0;
    let mut leaks = Vec::new();
    for (path, ops) in openapi["paths"].as_object().unwrap() {
        if ops.get("get").is_none() {
            continue;
        }
        let segs: Vec<&str> = path.split('/').collect();
        let collection = segs
            .iter()
            .position(|x| *x == "{id}")
            .map(|i| segs[i - 1].to_string());
        let candidates: Vec<String> = match &collection {
            None => vec![String::new()],
            Some(c) => ids
                .iter()
                .filter(|(col, _)| col == c)
                .map(|(_, id)| id.clone())
                .collect(),
        };
        for id in candidates {
            let url: String = segs
                .iter()
                .map(|seg| match *seg {
                    "{space_id}" => "Spaces-1".to_string(),
                    "{id}" => id.clone(),
                    x if x.starts_with('{') => "1.0.0".to_string(),
                    x => x.to_string(),
                })
                .collect::<Vec<_>>()
                .join("/");
            let (_, v) = s.request("GET", &url, None).await;
            scanned += 1;
            let text = match &v {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            for secret in &secrets {
                if text.contains(secret) {
                    leaks.push(format!("GET {url} shows a secret"));
                }
            }
        }
    }
    assert!(scanned > 100, "only {scanned} responses scanned");

    // The server's log (debug level) and every file of its data directory.
    s.stop();
    let log = s.output_text();
    for secret in &secrets {
        if log.contains(secret) {
            leaks.push(format!("the server log contains {secret}"));
        }
    }
    let mut files = Vec::new();
    files_under(&s.data_dir, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with("ferry.db")),
        "{files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        for secret in &secrets {
            if contains(&bytes, secret) {
                leaks.push(format!("{} contains {secret}", f.display()));
            }
        }
    }
    println!(
        "secrets scan: {scanned} responses, {} log bytes, {} files: {} leaks",
        log.len(),
        files.len(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}
