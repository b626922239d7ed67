//! Users, sign-in, sessions with CSRF, throttling, API keys and the `ferry user|api-key|login`
//! commands, against the real binary.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Opts, Server, ferry_bin};

/// A sign-in session as a browser holds it.
struct Session {
    token: String,
    csrf: String,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookie<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn cookie_value(header: &str) -> String {
    header
        .split(';')
        .next()
        .and_then(|p| p.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// `POST /api/users/login`; returns the status, the body, the headers.
async fn login_raw(
    s: &Server,
    username: &str,
    password: &str,
    cookie: Option<&str>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut rb = http()
        .post(format!("{}/api/users/login", s.url))
        .json(&json!({"Username": username, "Password": password}));
    if let Some(c) = cookie {
        rb = rb.header("Cookie", c);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

async fn login(s: &Server, username: &str, password: &str) -> Session {
    let (status, body, headers) = login_raw(s, username, password, None).await;
    assert_eq!(status, StatusCode::OK, "login {username}: {body}");
    Session {
        token: cookie_value(set_cookie(&headers, "OctopusIdentificationToken").unwrap()),
        csrf: cookie_value(set_cookie(&headers, "Octopus-Csrf-Token").unwrap()),
    }
}

/// A request with the session cookie; `csrf` is the header value to send (if any).
async fn with_session(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = http()
        .request(m, format!("{}{path}", s.url))
        .header("Cookie", format!("OctopusIdentificationToken={token}"));
    if let Some(c) = csrf {
        rb = rb.header("X-Octopus-Csrf-Token", c);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn create_user(s: &Server, username: &str, password: &str) -> String {
    let u = s
        .post(
            "/api/users",
            json!({"Username": username, "DisplayName": username, "Password": password}),
        )
        .await;
    u["Id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn sessions_csrf_fixation_logout_and_password_change() {
    let s = Server::start();
    let id = create_user(&s, "alice", "correct horse 1").await;

    // Too short a password is refused.
    let (st, v) = s
        .request(
            "POST",
            "/api/users",
            Some(json!({"Username": "shorty", "DisplayName": "S", "Password": "short"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // User names are unique after normalisation.
    let (st, v) = s
        .request(
            "POST",
            "/api/users",
            Some(json!({"Username": " ALICE ", "DisplayName": "A", "Password": "long enough"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // Sign-in: a session cookie (HttpOnly, SameSite=Lax, Path=/) and a CSRF cookie scripts read.
    let (st, body, headers) = login_raw(&s, "alice", "correct horse 1", None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["Id"], json!(id));
    assert!(body.get("Password").is_none());
    let sc = set_cookie(&headers, "OctopusIdentificationToken").unwrap();
    assert!(sc.contains("HttpOnly") && sc.contains("SameSite=Lax") && sc.contains("Path=/"));
    assert!(!sc.contains("Secure"), "plain http: {sc}");
    let cc = set_cookie(&headers, "Octopus-Csrf-Token").unwrap();
    assert!(!cc.contains("HttpOnly"), "{cc}");
    let a = Session {
        token: cookie_value(sc),
        csrf: cookie_value(cc),
    };

    let (st, me) = with_session(&s, "GET", "/api/users/me", &a.token, None, None).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert_eq!(me["Username"], json!("alice"));
    assert_eq!(me["IsRequestor"], json!(true));

    // State-changing requests under a session need the CSRF header.
    let change = json!({"DisplayName": "Alice A."});
    let path = format!("/api/users/{id}");
    let (st, v) = with_session(&s, "PUT", &path, &a.token, None, Some(change.clone())).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = with_session(
        &s,
        "PUT",
        &path,
        &a.token,
        Some("wrong"),
        Some(change.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = with_session(&s, "PUT", &path, &a.token, Some(&a.csrf), Some(change)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["DisplayName"], json!("Alice A."));
    // API-key requests need no CSRF token.
    s.put(&path, json!({"EmailAddress": "alice@example.com"}))
        .await;

    // Fixation: a token planted before sign-in never becomes valid.
    let planted = "0123456789abcdef0123456789abcdef";
    let (st, _, headers) = login_raw(
        &s,
        "alice",
        "correct horse 1",
        Some(&format!("OctopusIdentificationToken={planted}")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let issued = cookie_value(set_cookie(&headers, "OctopusIdentificationToken").unwrap());
    assert_ne!(issued, planted);
    let (st, _) = with_session(&s, "GET", "/api/users/me", planted, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Logout ends the session and clears the cookies.
    let r = http()
        .post(format!("{}/api/users/logout", s.url))
        .header("Cookie", format!("OctopusIdentificationToken={issued}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "logout needs the CSRF token"
    );
    let b = login(&s, "alice", "correct horse 1").await;
    let r = http()
        .post(format!("{}/api/users/logout", s.url))
        .header("Cookie", format!("OctopusIdentificationToken={}", b.token))
        .header("X-Octopus-Csrf-Token", &b.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        set_cookie(r.headers(), "OctopusIdentificationToken")
            .unwrap()
            .contains("Max-Age=0")
    );
    let (st, _) = with_session(&s, "GET", "/api/users/me", &b.token, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // A password change ends the user's other sessions, keeps the one it came from, and
    // needs the current password.
    let c = login(&s, "alice", "correct horse 1").await;
    let (st, v) = with_session(
        &s,
        "PUT",
        &path,
        &a.token,
        Some(&a.csrf),
        Some(json!({"Password": "new password 2", "CurrentPassword": "wrong one"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = with_session(
        &s,
        "PUT",
        &path,
        &a.token,
        Some(&a.csrf),
        Some(json!({"Password": "new password 2", "CurrentPassword": "correct horse 1"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = with_session(&s, "GET", "/api/users/me", &c.token, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "other session ended");
    let (st, _) = with_session(&s, "GET", "/api/users/me", &a.token, None, None).await;
    assert_eq!(st, StatusCode::OK, "the changing session stays");
    let (st, _, _) = login_raw(&s, "alice", "correct horse 1", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    login(&s, "alice", "new password 2").await;

    // Disabling a user ends its sessions at once; you cannot disable yourself.
    let (st, v) = with_session(
        &s,
        "PUT",
        &path,
        &a.token,
        Some(&a.csrf),
        Some(json!({"IsActive": false})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    s.put(&path, json!({"IsActive": false})).await;
    let (st, _) = with_session(&s, "GET", "/api/users/me", &a.token, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_throttling_and_identical_failures() {
    let s = Server::start();
    create_user(&s, "carol", "carols password").await;

    // Wrong password and unknown user: the same 401 body.
    let (st1, b1, _) = login_raw(&s, "admin", "not the password", None).await;
    let (st2, b2, _) = login_raw(&s, "nobody-here", "not the password", None).await;
    assert_eq!(st1, StatusCode::UNAUTHORIZED);
    assert_eq!(st2, StatusCode::UNAUTHORIZED);
    assert_eq!(b1, b2);

    // Name variants share the account's limit: 5 failures, then 429 with Retry-After.
    for v in ["Admin", " admin ", "ad\u{0}min", "ＡＤＭＩＮ"] {
        let (st, b, _) = login_raw(&s, v, "not the password", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v:?}: {b}");
        assert_eq!(b, b1, "{v:?}");
    }
    let (st, b, h) = login_raw(&s, "\u{0430}dmin", "not the password", None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{b}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");

    // An unknown user gets the same answers.
    for _ in 0..4 {
        let (st, b, _) = login_raw(&s, "nobody-here", "x", None).await;
        assert_eq!((st, &b), (StatusCode::UNAUTHORIZED, &b1));
    }
    let (st, _, h) = login_raw(&s, "NOBODY-HERE", "x", None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(h.contains_key("retry-after"));

    // Once throttled, even the right password is refused.
    for v in ["carol", "Carol", "c\u{0430}rol", "ｃａｒｏｌ", "car ol"] {
        let (st, _, _) = login_raw(&s, v, "wrong", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v:?}");
    }
    let (st, _, _) = login_raw(&s, "carol", "carols password", None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);

    // Per address: 15 failures so far; five more with new names, then every name is refused.
    for i in 0..5 {
        let (st, _, _) = login_raw(&s, &format!("someone{i}"), "x", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let (st, _, _) = login_raw(&s, "fresh-name", "x", None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn api_keys_expiry_revocation_and_disabled_users() {
    let s = Server::start_with(Opts {
        args: vec!["--api-key-max-days".into(), "30".into()],
        ..Opts::default()
    });
    let id = create_user(&s, "bob", "bobs password").await;
    let keys = format!("/api/users/{id}/apikeys");

    // Created: shown once.
    let k = s.post(&keys, json!({"Purpose": "deploy bot"})).await;
    let key = k["ApiKey"].as_str().unwrap().to_string();
    assert!(key.starts_with("API-"), "{k}");
    assert_eq!(k["Purpose"], json!("deploy bot"));
    assert_eq!(k["UserId"], json!(id));
    // The server maximum (30 days here) bounds the default 180.
    let expires = ferry_domain::time::parse_ms(k["Expires"].as_str().unwrap()).unwrap();
    let now = ferry_domain::time::now_ms();
    assert!(expires <= now + 30 * 86_400_000 + 60_000, "{k}");
    let list = s.get(&keys).await;
    assert_eq!(list["Items"].as_array().unwrap().len(), 1);
    assert!(list["Items"][0].get("ApiKey").is_none());
    assert!(!list.to_string().contains(&key));
    let one = s
        .get(&format!("{keys}/{}", k["Id"].as_str().unwrap()))
        .await;
    assert_eq!(one["Purpose"], json!("deploy bot"));
    assert!(one.get("ApiKey").is_none());

    // Used: it is bob.
    let (st, me) = s
        .request_with_key("GET", "/api/users/me", None, Some(&key))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["Username"], json!("bob"));

    // Expiry: not in the past, not beyond the maximum.
    let at = |days: i64| ferry_domain::time::format_ms(now + days * 86_400_000);
    let (st, v) = s
        .request(
            "POST",
            &keys,
            Some(json!({"Purpose": "x", "Expires": at(-1)})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .request(
            "POST",
            &keys,
            Some(json!({"Purpose": "x", "Expires": at(40)})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // A key minted with a key expiring in 2 days cannot outlive it.
    let short = s
        .post(&keys, json!({"Purpose": "short", "Expires": at(2)}))
        .await;
    let short_key = short["ApiKey"].as_str().unwrap();
    let short_exp = ferry_domain::time::parse_ms(short["Expires"].as_str().unwrap()).unwrap();
    let (st, v) = s
        .request_with_key(
            "POST",
            &keys,
            Some(json!({"Purpose": "longer", "Expires": at(10)})),
            Some(short_key),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .request_with_key(
            "POST",
            &keys,
            Some(json!({"Purpose": "child"})),
            Some(short_key),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let child_exp = ferry_domain::time::parse_ms(v["Expires"].as_str().unwrap()).unwrap();
    assert!(child_exp <= short_exp, "{v}");
    // Nor one minted through a 12-hour session.
    let sess = login(&s, "bob", "bobs password").await;
    let (st, v) = with_session(
        &s,
        "POST",
        &keys,
        &sess.token,
        Some(&sess.csrf),
        Some(json!({"Purpose": "from session"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let from_session = ferry_domain::time::parse_ms(v["Expires"].as_str().unwrap()).unwrap();
    assert!(from_session <= ferry_domain::time::now_ms() + 12 * 3_600_000 + 60_000);

    // Disabled: its keys answer 401 at once; enabled again: they work.
    s.put(&format!("/api/users/{id}"), json!({"IsActive": false}))
        .await;
    let (st, _) = s
        .request_with_key("GET", "/api/users/me", None, Some(&key))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.put(&format!("/api/users/{id}"), json!({"IsActive": true}))
        .await;
    let (st, _) = s
        .request_with_key("GET", "/api/users/me", None, Some(&key))
        .await;
    assert_eq!(st, StatusCode::OK);

    // Revoked: 401 at once.
    let (st, _) = s
        .request(
            "DELETE",
            &format!("{keys}/{}", k["Id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .request_with_key("GET", "/api/users/me", None, Some(&key))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Service accounts: no password, no sign-in, keys only.
    let (st, v) = s
        .request(
            "POST",
            "/api/users",
            Some(json!({"Username": "ci", "DisplayName": "CI", "IsService": true, "Password": "some password"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let svc = s
        .post(
            "/api/users",
            json!({"Username": "ci", "DisplayName": "CI", "IsService": true}),
        )
        .await;
    assert_eq!(svc["IsService"], json!(true));
    let (st, b, _) = login_raw(&s, "ci", "some password", None).await;
    let (_, unknown, _) = login_raw(&s, "nobody", "some password", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(b, unknown);
    let svc_key = s
        .post(
            &format!("/api/users/{}/apikeys", svc["Id"].as_str().unwrap()),
            json!({"Purpose": "pipeline"}),
        )
        .await;
    let (st, _) = s
        .request_with_key(
            "GET",
            "/api/users/me",
            None,
            Some(svc_key["ApiKey"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // Deleting a user deletes its keys.
    let (st, _) = s.request("DELETE", &format!("/api/users/{id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .request_with_key("GET", "/api/users/me", None, Some(short_key))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

/// Runs the CLI with a private config directory and no key in the environment.
fn ferry(config: &std::path::Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(ferry_bin());
    cmd.args(args)
        .env_remove("FERRY_API_KEY")
        .env_remove("FERRY_URL")
        .env("XDG_CONFIG_HOME", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {out}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[tokio::test]
async fn cli_login_users_and_api_keys() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("cfg");
    let admin = [
        ("FERRY_URL", s.url.as_str()),
        ("FERRY_API_KEY", s.api_key.as_str()),
    ];

    let out = ok(&ferry(
        &config,
        &["user", "create", "dave", "--password-stdin"],
        "daves password\n",
        &admin,
    ));
    assert!(out.contains("Created user dave"), "{out}");
    let out = ok(&ferry(&config, &["user", "list"], "", &admin));
    assert!(out.contains("dave") && out.contains("admin"), "{out}");

    // Without a key, commands fail.
    let o = ferry(&config, &["api-key", "list", "--server", &s.url], "", &[]);
    assert!(!o.status.success());

    let out = ok(&ferry(
        &config,
        &[
            "login",
            "--server",
            &s.url,
            "--username",
            "dave",
            "--password-stdin",
        ],
        "daves password\n",
        &[],
    ));
    assert!(out.contains("Signed in"), "{out}");
    let file = config.join("ferry").join("config.toml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(config.join("ferry"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let saved = std::fs::read_to_string(&file).unwrap();
    let key = saved
        .lines()
        .find_map(|l| l.strip_prefix("api_key = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();

    // Later commands use the saved server and key.
    let out = ok(&ferry(&config, &["user", "show", "me"], "", &[]));
    assert!(out.contains("dave"), "{out}");
    let out = ok(&ferry(&config, &["api-key", "list"], "", &[]));
    assert!(out.contains("ferry CLI on"), "{out}");
    assert!(!out.contains(&key));
    let out = ok(&ferry(
        &config,
        &[
            "api-key",
            "create",
            "--purpose",
            "scripted",
            "--expires-days",
            "5",
        ],
        "",
        &[],
    ));
    let minted = out
        .lines()
        .find(|l| l.starts_with("API-"))
        .unwrap()
        .to_string();
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("APIKeys-"))
        .unwrap()
        .to_string();
    let (st, _) = s
        .request_with_key("GET", "/api/users/me", None, Some(&minted))
        .await;
    assert_eq!(st, StatusCode::OK);
    ok(&ferry(&config, &["api-key", "revoke", &id], "", &[]));
    let (st, _) = s
        .request_with_key("GET", "/api/users/me", None, Some(&minted))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Your own password: the current one first.
    let o = ferry(
        &config,
        &["user", "set-password", "me", "--password-stdin"],
        "wrong password\nnew daves password\n",
        &[],
    );
    assert!(!o.status.success());
    ok(&ferry(
        &config,
        &["user", "set-password", "me", "--password-stdin"],
        "daves password\nnew daves password\n",
        &[],
    ));
    login(&s, "dave", "new daves password").await;
    // An administrator disables and enables dave; the saved key follows.
    ok(&ferry(&config, &["user", "disable", "dave"], "", &admin));
    assert!(
        !ferry(&config, &["user", "show", "me"], "", &[])
            .status
            .success()
    );
    ok(&ferry(&config, &["user", "enable", "dave"], "", &admin));
    ok(&ferry(&config, &["user", "show", "me"], "", &[]));

    // Logout revokes the saved key and removes it.
    let out = ok(&ferry(&config, &["logout"], "", &[]));
    assert!(out.contains("Signed out"), "{out}");
    assert!(!file.exists());
    let (st, _) = s
        .request_with_key("GET", "/api/users/me", None, Some(&key))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn users_manage_themselves_only() {
    let s = Server::start();
    let eve = create_user(&s, "eve", "eves password").await;
    let other = create_user(&s, "frank", "franks password").await;
    let k = s
        .post(
            &format!("/api/users/{eve}/apikeys"),
            json!({"Purpose": "eve"}),
        )
        .await;
    let key = k["ApiKey"].as_str().unwrap();
    let as_eve = |m: &'static str, p: String, b: Option<Value>| {
        let s = &s;
        async move { s.request_with_key(m, &p, b, Some(key)).await }
    };

    // Yourself: read, change, keys.
    let (st, v) = as_eve("GET", format!("/api/users/{eve}"), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = as_eve(
        "PUT",
        format!("/api/users/{eve}"),
        Some(json!({"DisplayName": "Eve E."})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = as_eve("GET", format!("/api/users/{eve}/apikeys"), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Others: refused without UserView / UserEdit.
    let (st, v) = as_eve("GET", format!("/api/users/{other}"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = as_eve(
        "PUT",
        format!("/api/users/{other}"),
        Some(json!({"Password": "taken over!"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = as_eve(
        "POST",
        format!("/api/users/{other}/apikeys"),
        Some(json!({"Purpose": "steal"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = as_eve(
        "POST",
        "/api/users".to_string(),
        Some(json!({"Username": "mallory", "DisplayName": "M", "Password": "long enough"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = as_eve("DELETE", format!("/api/users/{other}"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // The admin can.
    s.put(
        &format!("/api/users/{other}"),
        json!({"Password": "reset by admin"}),
    )
    .await;
    login(&s, "frank", "reset by admin").await;
}

#[tokio::test]
async fn cli_teams() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("cfg");
    let admin = [
        ("FERRY_URL", s.url.as_str()),
        ("FERRY_API_KEY", s.api_key.as_str()),
    ];
    s.create_environment("Test").await;
    s.create_environment("Production").await;
    ok(&ferry(
        &config,
        &["user", "create", "tess", "--password-stdin"],
        "tesss password\n",
        &admin,
    ));

    let out = ok(&ferry(&config, &["team", "create", "Testers"], "", &admin));
    assert!(out.contains("Created team Testers"), "{out}");
    let out = ok(&ferry(
        &config,
        &["team", "add-member", "Testers", "tess"],
        "",
        &admin,
    ));
    assert!(out.contains("Added"), "{out}");
    let out = ok(&ferry(
        &config,
        &[
            "team",
            "grant",
            "Testers",
            "Project deployer",
            "--environment",
            "Test",
        ],
        "",
        &admin,
    ));
    assert!(out.contains("Granted"), "{out}");
    let out = ok(&ferry(&config, &["team", "list"], "", &admin));
    let line = out.lines().find(|l| l.contains("Testers")).unwrap();
    assert!(line.ends_with('1'), "one member: {out}");
    let team_id = line.split_whitespace().next().unwrap().to_string();
    let grants = s
        .get(&format!("/api/teams/{team_id}/scopeduserroles"))
        .await;
    let g = &grants["Items"][0];
    assert_eq!(
        g["UserRoleId"],
        json!("userroles-projectdeployer"),
        "{grants}"
    );
    assert_eq!(g["EnvironmentIds"].as_array().unwrap().len(), 1, "{grants}");

    // The testers scenario through the CLI: Tess deploys to Test, not to Production.
    s.create_project("Web").await;
    s.set_scripts("Web", &[("Say", "echo hi")]).await;
    s.create_release("Web", "1.0.0").await;
    let out = ok(&ferry(
        &config,
        &[
            "api-key",
            "create",
            "--user",
            "tess",
            "--purpose",
            "cli test",
        ],
        "",
        &admin,
    ));
    let key = out
        .lines()
        .find(|l| l.trim().starts_with("API-"))
        .unwrap()
        .trim()
        .to_string();
    let tess = [
        ("FERRY_URL", s.url.as_str()),
        ("FERRY_API_KEY", key.as_str()),
    ];
    let deploy = |env: &str| {
        ferry(
            &config,
            &[
                "release",
                "deploy",
                "--project",
                "Web",
                "--version",
                "1.0.0",
                "--environment",
                env,
                "--wait",
            ],
            "",
            &tess,
        )
    };
    ok(&deploy("Test"));
    let refused = deploy("Production");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(err.contains("DeploymentCreate"), "{err}");
    assert!(err.contains("Octopus Administrators"), "{err}");

    ok(&ferry(
        &config,
        &["team", "remove-member", "Testers", "tess"],
        "",
        &admin,
    ));
    let t = s.get(&format!("/api/teams/{team_id}")).await;
    assert_eq!(t["MemberUserIds"], json!([]));
    ok(&ferry(&config, &["team", "delete", "Testers"], "", &admin));
    let (st, _) = s
        .request("GET", &format!("/api/teams/{team_id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

// ---- store contract of the user, key and session queries (SQLite and PostgreSQL) ----------

mod store {
    use ferry_store::{ApiKeyRow, Db, SessionRow, StoreError, UserRow};

    use crate::pg::PgCluster;

    const T0: i64 = 1_700_000_000_000;

    fn user(id: &str, name: &str) -> UserRow {
        UserRow {
            id: id.into(),
            username: name.into(),
            username_key: name.to_lowercase(),
            display_name: name.into(),
            email: String::new(),
            password_hash: Some("$argon2id$fake".into()),
            is_service: 0,
            is_active: 1,
            created_at: T0,
        }
    }

    fn key(id: &str, user: &str, at: i64) -> ApiKeyRow {
        ApiKeyRow {
            id: id.into(),
            user_id: user.into(),
            key_hash: format!("hash-{id}"),
            purpose: "ünïcødé 'purpose'".into(),
            created_at: at,
            expires_at: Some(at + 1000),
        }
    }

    fn session(id: &str, user: &str, expires_at: i64) -> SessionRow {
        SessionRow {
            id: id.into(),
            token_hash: format!("token-{id}"),
            csrf_hash: format!("csrf-{id}"),
            user_id: user.into(),
            created_at: T0,
            expires_at,
        }
    }

    async fn suite(db: Db) {
        let mut tx = db.begin().await.unwrap();
        tx.insert_user(&user("Users-1", "Ann")).await.unwrap();
        tx.insert_user(&user("Users-2", "Ben")).await.unwrap();
        tx.insert_api_key(&key("APIKeys-2", "Users-1", T0 + 2))
            .await
            .unwrap();
        tx.insert_api_key(&key("APIKeys-1", "Users-1", T0 + 1))
            .await
            .unwrap();
        tx.insert_api_key(&key("APIKeys-3", "Users-2", T0))
            .await
            .unwrap();
        for (id, u, exp) in [
            ("S1", "Users-1", T0 + 10),
            ("S2", "Users-1", T0 + 20),
            ("S3", "Users-1", T0 + 30),
            ("S4", "Users-2", T0 + 5),
        ] {
            tx.insert_session(&session(id, u, exp)).await.unwrap();
        }
        tx.commit().await.unwrap();

        assert_eq!(
            db.find_user_by_key("ann").await.unwrap().map(|u| u.id),
            Some("Users-1".into())
        );
        assert_eq!(db.find_user_by_key("Ann").await.unwrap(), None);
        let keys = db.list_api_keys("Users-1").await.unwrap();
        assert_eq!(
            keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["APIKeys-1", "APIKeys-2"]
        );
        assert_eq!(keys[0], key("APIKeys-1", "Users-1", T0 + 1));
        let (s, u) = db.find_session("token-S2").await.unwrap().unwrap();
        assert_eq!(s, session("S2", "Users-1", T0 + 20));
        assert_eq!(u.id, "Users-1");
        assert_eq!(db.find_session("token-none").await.unwrap(), None);

        // Update, and the unique key.
        let mut tx = db.begin().await.unwrap();
        let mut ann = user("Users-1", "Ann");
        ann.display_name = "Ann B.".into();
        ann.is_active = 0;
        ann.password_hash = None;
        assert!(tx.update_user(&ann).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(db.get_user("Users-1").await.unwrap(), Some(ann));
        let mut tx = db.begin().await.unwrap();
        let clash = user("Users-2", "ANN");
        let e = tx.update_user(&clash).await;
        assert!(matches!(e, Err(StoreError::Conflict)), "{e:?}");
        drop(tx);

        // Keys: get and delete within the user only.
        let mut tx = db.begin().await.unwrap();
        assert!(
            tx.get_api_key("Users-2", "APIKeys-1")
                .await
                .unwrap()
                .is_none()
        );
        assert!(!tx.delete_api_key("Users-2", "APIKeys-1").await.unwrap());
        assert!(
            tx.get_api_key("Users-1", "APIKeys-1")
                .await
                .unwrap()
                .is_some()
        );
        assert!(tx.delete_api_key("Users-1", "APIKeys-1").await.unwrap());
        // Sessions: one by hash, the others but one, expired ones.
        assert!(tx.delete_session_by_hash("token-S1").await.unwrap());
        assert!(!tx.delete_session_by_hash("token-S1").await.unwrap());
        assert_eq!(
            tx.delete_sessions_of("Users-1", Some("token-S3"))
                .await
                .unwrap(),
            1
        );
        tx.commit().await.unwrap();
        assert!(db.find_session("token-S3").await.unwrap().is_some());
        assert!(db.find_session("token-S2").await.unwrap().is_none());
        assert_eq!(db.purge_expired_sessions(T0 + 5).await.unwrap(), 1);
        assert!(db.find_session("token-S4").await.unwrap().is_none());
        let mut tx = db.begin().await.unwrap();
        assert_eq!(tx.delete_sessions_of("Users-1", None).await.unwrap(), 1);
        tx.insert_session(&session("S5", "Users-2", T0 + 99))
            .await
            .unwrap();
        // Deleting a user takes its keys and sessions.
        assert!(tx.delete_user("Users-2").await.unwrap());
        assert!(!tx.delete_user("Users-2").await.unwrap());
        tx.commit().await.unwrap();
        assert!(db.list_api_keys("Users-2").await.unwrap().is_empty());
        assert!(db.find_api_key("hash-APIKeys-3").await.unwrap().is_none());
        assert!(db.find_session("token-S5").await.unwrap().is_none());
        assert_eq!(db.list_api_keys("Users-1").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn users_store_contract_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ferry.db").display());
        let db = Db::open(&url).await.unwrap();
        db.migrate().await.unwrap();
        suite(db).await;
    }

    #[tokio::test]
    async fn users_store_contract_postgres() {
        let Some(pg) = PgCluster::start() else { return };
        let db = Db::open(&pg.url("ferry")).await.unwrap();
        db.migrate().await.unwrap();
        suite(db).await;
    }
}
