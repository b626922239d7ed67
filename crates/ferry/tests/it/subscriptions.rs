//! Webhook subscriptions through the real binary: Octopus's payload delivered to a local
//! listener, retries with backoff and the delivery log, the SSRF deny-list at save time, at
//! delivery (a name resolving to loopback) and on redirects, progress kept across a restart,
//! and audit diffs that show a sensitive variable changed without its values.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{Opts, Server};

const SPACE: &str = "/api/Spaces-1";

/// A request the listener received: its head (request line and headers) and body.
#[derive(Clone, Debug)]
struct Received {
    head: String,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A minimal HTTP/1.1 listener: answers with the queued responses (status, extra headers,
/// delay), then 200, and records every request.
#[derive(Clone)]
struct Hook {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<(u16, String, Duration)>>>,
}

impl Hook {
    async fn start(ip: &str) -> Hook {
        let l = TcpListener::bind((ip, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hook = Hook {
            port,
            received: Arc::default(),
            answers: Arc::default(),
        };
        let h = hook.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let h = h.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, body) = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(i) = text.find("\r\n\r\n") {
                            let head = text[..i].to_string();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() >= i + 4 + len {
                                let body =
                                    String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).to_string();
                                break (head, body);
                            }
                        }
                    };
                    let (status, extra, delay) = h.answers.lock().unwrap().pop_front().unwrap_or((
                        200,
                        String::new(),
                        Duration::ZERO,
                    ));
                    h.received.lock().unwrap().push(Received { head, body });
                    tokio::time::sleep(delay).await;
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n"
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        hook
    }

    fn answer(&self, status: u16, extra_headers: &str, delay: Duration) {
        self.answers
            .lock()
            .unwrap()
            .push_back((status, extra_headers.to_string(), delay));
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.received();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} webhook requests, got {}: {r:?}",
                r.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn allow_loopback() -> Opts {
    Opts {
        args: vec![
            "--webhook-allow".into(),
            "127.0.0.1/32".into(),
            "--webhook-retry-ms".into(),
            "200".into(),
        ],
        ..Opts::default()
    }
}

/// A subscription to environment `Created` events posting to `url`.
fn env_subscription(name: &str, url: &str) -> Value {
    json!({
        "Name": name,
        "Type": "Event",
        "IsDisabled": false,
        "EventNotificationSubscription": {
            "Filter": {"EventCategories": ["Created"], "DocumentTypes": ["Environments"]},
            "WebhookURI": url,
            "WebhookTimeout": "00:00:05",
        }
    })
}

async fn deliveries(s: &Server, sub: &str) -> Vec<Value> {
    let v = s
        .get(&format!("{SPACE}/subscriptions/{sub}/deliveries?take=100"))
        .await;
    v["Items"].as_array().cloned().unwrap_or_default()
}

async fn wait_deliveries(s: &Server, sub: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = deliveries(s, sub).await;
        if pred(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "delivery log not as expected: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn errors(v: &Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn webhook_payload_retry_redirect_and_restart() {
    let mut s = Server::start_with(allow_loopback());
    let hook = Hook::start("127.0.0.1").await;

    // Payload shape and the configured header; the header value is write-only.
    let sub = s
        .post(&format!("{SPACE}/subscriptions"), {
            let mut b =
                env_subscription("Env hook", &format!("http://127.0.0.1:{}/hook", hook.port));
            b["EventNotificationSubscription"]["WebhookHeaderKey"] = json!("X-Hook-Token");
            b["EventNotificationSubscription"]["WebhookHeaderValue"] = json!("hdr-secret-93x");
            b
        })
        .await;
    let sub_id = sub["Id"].as_str().unwrap().to_string();
    assert_eq!(sub["Type"], "Event");
    assert_eq!(sub["SpaceId"], "Spaces-1");
    let got = s.get(&format!("{SPACE}/subscriptions/{sub_id}")).await;
    assert!(!got.to_string().contains("hdr-secret-93x"), "{got}");
    assert_eq!(
        got["EventNotificationSubscription"]["WebhookHeaderValue"]["HasValue"],
        true
    );
    let env = s.create_environment("Hooked").await;
    let env_id = env["Id"].as_str().unwrap();
    let r = hook.wait_for(1, Duration::from_secs(20)).await;
    assert!(r[0].head.starts_with("POST /hook "), "{}", r[0].head);
    assert!(
        r[0].head
            .to_ascii_lowercase()
            .contains("x-hook-token: hdr-secret-93x"),
        "{}",
        r[0].head
    );
    let p = r[0].json();
    assert_eq!(p["EventType"], "SubscriptionPayload", "{p}");
    assert!(p["Timestamp"].is_string());
    let pl = &p["Payload"];
    assert_eq!(pl["ServerUri"], s.url.as_str());
    assert!(pl["ServerAuditUri"].as_str().unwrap().starts_with(&s.url));
    assert!(pl["BatchProcessingDate"].is_string());
    assert!(pl["BatchId"].is_string());
    assert_eq!(pl["TotalEventsInBatch"], 1);
    assert_eq!(pl["EventNumberInBatch"], 1);
    assert_eq!(pl["Subscription"]["Id"], sub_id.as_str());
    assert!(!p.to_string().contains("hdr-secret-93x"));
    let e = &pl["Event"];
    assert_eq!(e["Category"], "Created");
    assert_eq!(e["SpaceId"], "Spaces-1");
    assert!(e["Id"].as_str().unwrap().starts_with("Events-"));
    assert!(e["Occurred"].is_string() && e["Message"].is_string() && e["Username"].is_string());
    assert!(
        e["RelatedDocumentIds"]
            .as_array()
            .unwrap()
            .contains(&json!(env_id)),
        "{e}"
    );
    let d = wait_deliveries(&s, &sub_id, |d| !d.is_empty()).await;
    assert_eq!(d[0]["Outcome"], "Delivered");
    assert_eq!(d[0]["StatusCode"], 200);
    assert_eq!(d[0]["EventId"], e["Id"]);
    // A filtered-out event (a project) is not delivered.
    s.create_project("Not an environment").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.received().len(), 1);
    s.request("DELETE", &format!("{SPACE}/subscriptions/{sub_id}"), None)
        .await;

    // Retry: 500 twice, then 200: three attempts logged, delivered once.
    let flaky = Hook::start("127.0.0.1").await;
    flaky.answer(500, "", Duration::ZERO);
    flaky.answer(500, "", Duration::ZERO);
    let sub = s
        .post(
            &format!("{SPACE}/subscriptions"),
            env_subscription("Flaky hook", &format!("http://127.0.0.1:{}/", flaky.port)),
        )
        .await;
    let flaky_id = sub["Id"].as_str().unwrap().to_string();
    s.create_environment("Retried").await;
    let d = wait_deliveries(&s, &flaky_id, |d| {
        d.iter().any(|x| x["Outcome"] == "Delivered")
    })
    .await;
    let mut d = d;
    d.reverse();
    assert_eq!(d.len(), 3, "{d:?}");
    let attempts: Vec<_> = d.iter().map(|x| x["Attempt"].clone()).collect();
    assert_eq!(attempts, vec![json!(1), json!(2), json!(3)]);
    let codes: Vec<_> = d.iter().map(|x| x["StatusCode"].clone()).collect();
    assert_eq!(codes, vec![json!(500), json!(500), json!(200)]);
    assert_eq!(d.iter().filter(|x| x["Outcome"] == "Delivered").count(), 1);
    assert_eq!(d[0]["EventId"], d[2]["EventId"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(flaky.received().len(), 3);
    s.request("DELETE", &format!("{SPACE}/subscriptions/{flaky_id}"), None)
        .await;

    // A redirect from the allowed listener to a denied address is not followed.
    let denied_target = Hook::start("127.0.0.2").await;
    let redirector = Hook::start("127.0.0.1").await;
    redirector.answer(
        302,
        &format!(
            "location: http://127.0.0.2:{}/stolen\r\n",
            denied_target.port
        ),
        Duration::ZERO,
    );
    let sub = s
        .post(
            &format!("{SPACE}/subscriptions"),
            env_subscription(
                "Redirected",
                &format!("http://127.0.0.1:{}/", redirector.port),
            ),
        )
        .await;
    let redir_id = sub["Id"].as_str().unwrap().to_string();
    s.create_environment("Redirect me").await;
    let d = wait_deliveries(&s, &redir_id, |d| !d.is_empty()).await;
    assert_eq!(d.len(), 1, "a denied hop is not retried: {d:?}");
    assert_eq!(d[0]["Outcome"], "Denied", "{d:?}");
    let err = d[0]["Error"].as_str().unwrap();
    assert!(
        err.contains("127.0.0.2") && err.contains("loopback"),
        "{err}"
    );
    assert_eq!(redirector.received().len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(denied_target.received().is_empty());
    s.request("DELETE", &format!("{SPACE}/subscriptions/{redir_id}"), None)
        .await;

    // Progress survives a restart: slow answers, stop mid-way, every event arrives after.
    let slow = Hook::start("127.0.0.1").await;
    for _ in 0..20 {
        slow.answer(200, "", Duration::from_millis(800));
    }
    let sub = s
        .post(
            &format!("{SPACE}/subscriptions"),
            env_subscription("Slow hook", &format!("http://127.0.0.1:{}/", slow.port)),
        )
        .await;
    let slow_id = sub["Id"].as_str().unwrap().to_string();
    let mut env_ids = Vec::new();
    for i in 0..5 {
        let e = s.create_environment(&format!("Restart {i}")).await;
        env_ids.push(e["Id"].as_str().unwrap().to_string());
    }
    slow.wait_for(1, Duration::from_secs(20)).await;
    s.stop();
    let before = slow.received().len();
    assert!(
        before < 5,
        "the restart should happen mid-way ({before} delivered)"
    );
    s.restart(allow_loopback());
    let r = slow.wait_for(5, Duration::from_secs(30)).await;
    let mut seen: Vec<String> = Vec::new();
    for x in &r {
        for id in x.json()["Payload"]["Event"]["RelatedDocumentIds"]
            .as_array()
            .unwrap()
        {
            seen.push(id.as_str().unwrap().to_string());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env_ids.iter().all(|id| seen.contains(id)) {
        assert!(
            Instant::now() < deadline,
            "lost an event: {seen:?} vs {env_ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = slow
            .received()
            .iter()
            .flat_map(|x| {
                x.json()["Payload"]["Event"]["RelatedDocumentIds"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = slow.received().len();
    assert!(
        total <= env_ids.len() + 1,
        "at most the in-flight event is sent twice: {total} requests for {} events",
        env_ids.len()
    );
    let d = deliveries(&s, &slow_id).await;
    assert!(d.iter().filter(|x| x["Outcome"] == "Delivered").count() >= 5);
}

#[tokio::test]
async fn deny_list_with_default_options() {
    let s = Server::start();
    let hook = Hook::start("127.0.0.1").await;
    // Literal denied addresses are refused at save time, naming the reason.
    for (url, reason) in [
        (format!("http://127.0.0.1:{}/", hook.port), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data".to_string(),
            "link-local",
        ),
        ("http://[::1]/".to_string(), "loopback"),
        ("http://10.0.0.1/".to_string(), "private"),
        ("http://2130706433/".to_string(), "loopback"),
    ] {
        let (status, v) = s
            .request(
                "POST",
                &format!("{SPACE}/subscriptions"),
                Some(env_subscription("Bad", &url)),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert!(errors(&v).contains(reason), "{url}: {v}");
    }
    // Other validation.
    for (body, needle) in [
        (env_subscription("", "http://example.com/"), "Name"),
        (env_subscription("Rel", "/relative"), "WebhookURI"),
        (
            env_subscription("Ftp", "ftp://example.com/"),
            "http or https",
        ),
        (
            json!({"Name": "Unknown env", "EventNotificationSubscription": {"Filter": {"Environments": ["Environments-999"]}, "WebhookURI": "http://example.com/"}}),
            "Environments-999",
        ),
        (
            json!({"Name": "Unknown project", "EventNotificationSubscription": {"Filter": {"Projects": ["Projects-999"]}}}),
            "Projects-999",
        ),
        (
            json!({"Name": "Unknown tenant", "EventNotificationSubscription": {"Filter": {"Tenants": ["Tenants-999"]}}}),
            "Tenants-999",
        ),
    ] {
        let (status, v) = s
            .request("POST", &format!("{SPACE}/subscriptions"), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(errors(&v).contains(needle), "{needle}: {v}");
        assert!(v["ErrorMessage"].is_string(), "{v}");
    }
    // A name that resolves to loopback passes at save time and is refused at delivery.
    let sub = s
        .post(
            &format!("{SPACE}/subscriptions"),
            env_subscription("Via name", &format!("http://localhost:{}/", hook.port)),
        )
        .await;
    let sub_id = sub["Id"].as_str().unwrap().to_string();
    s.create_environment("Somewhere").await;
    let d = wait_deliveries(&s, &sub_id, |d| !d.is_empty()).await;
    assert_eq!(d[0]["Outcome"], "Denied", "{d:?}");
    assert!(
        d[0]["Error"].as_str().unwrap().contains("loopback"),
        "{d:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hook.received().is_empty());
    // Listing, update and delete.
    let list = s.get(&format!("{SPACE}/subscriptions")).await;
    assert_eq!(list["TotalResults"], 1);
    let mut body = s.get(&format!("{SPACE}/subscriptions/{sub_id}")).await;
    body["IsDisabled"] = json!(true);
    let put = s
        .put(&format!("{SPACE}/subscriptions/{sub_id}"), body)
        .await;
    assert_eq!(put["IsDisabled"], true);
    let (status, _) = s
        .request("DELETE", &format!("{SPACE}/subscriptions/{sub_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .request("GET", &format!("{SPACE}/subscriptions/{sub_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn audit_diff_hides_sensitive_variable_values() {
    const OLD: &str = "old-Secret-value-4471";
    const NEW: &str = "new-Secret-value-9902";
    let s = Server::start();
    let p = s.create_project("Audited").await;
    let pid = p["Id"].as_str().unwrap();
    let path = format!("{SPACE}/variables/variableset-{pid}");
    s.put(
        &path,
        json!({"Variables": [
            {"Name": "DbPassword", "Value": OLD, "IsSensitive": true},
            {"Name": "Plain", "Value": "one"},
        ]}),
    )
    .await;
    let mut got = s.get(&path).await;
    for v in got["Variables"].as_array_mut().unwrap() {
        if v["Name"] == "DbPassword" {
            v["Value"] = json!(NEW);
        }
        if v["Name"] == "Plain" {
            v["Value"] = json!("two");
        }
    }
    s.put(&path, got).await;
    let events = s
        .get(&format!("/api/events?regarding=variableset-{pid}&take=100"))
        .await;
    let text = events.to_string();
    assert!(!text.contains(OLD) && !text.contains(NEW), "{text}");
    let last = events["Items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Category"] == "Modified" && e["Details"]["Version"] == 2)
        .cloned()
        .unwrap_or_else(|| panic!("no Modified event for version 2: {events}"));
    let changes = last["Details"]["Diff"]["Changes"].as_array().unwrap();
    let secret = changes
        .iter()
        .find(|c| {
            let p = c["Path"].as_str().unwrap_or("");
            p.starts_with("Variables[") && p.ends_with("SealedValue")
        })
        .unwrap_or_else(|| panic!("the sensitive change is not shown: {last}"));
    let (old, new) = (
        secret["Old"].as_str().unwrap(),
        secret["New"].as_str().unwrap(),
    );
    assert!(old.starts_with("salted-sha256:") && new.starts_with("salted-sha256:"));
    assert_ne!(old, new);
    assert!(
        changes
            .iter()
            .any(|c| c["Old"] == "one" && c["New"] == "two"),
        "{last}"
    );
    // The whole audit log (all events) holds neither value either.
    let all = s.raw("/api/events?take=1000").await;
    assert!(!all.contains(OLD) && !all.contains(NEW));

    // Project PUT records the changed fields only.
    let mut proj = s.get(&format!("{SPACE}/projects/{pid}")).await;
    proj["Description"] = json!("now described");
    s.put(&format!("{SPACE}/projects/{pid}"), proj).await;
    let events = s
        .get(&format!("/api/events?regarding={pid}&take=100"))
        .await;
    let modified = events["Items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Category"] == "Modified" && e["RelatedDocumentIds"][0] == pid)
        .cloned()
        .unwrap_or_else(|| panic!("no project Modified event: {events}"));
    let changes = modified["Details"]["Diff"]["Changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["Path"] == "Description" && c["New"] == "now described"),
        "{modified}"
    );
    assert!(changes.iter().all(|c| c["Path"] != "Name"), "{modified}");
}
