//! The email step through the real binary, against a local SMTP sink started by the test:
//! SMTP settings (password write-only), a deployment sending a templated message to several
//! recipients with AUTH PLAIN, and the failures a user can cause (bad settings, no SMTP, an
//! unreachable server).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::Server;

const SP: &str = "/api/Spaces-1";

#[derive(Clone, Debug, Default)]
struct Received {
    auth: String,
    from: String,
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP server on loopback that records what it receives.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = l.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                let mut cur = Received::default();
                let _ = w.write_all(b"220 sink ready\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let up = line.to_ascii_uppercase();
                    let reply: &[u8] = if up.starts_with("EHLO") {
                        b"250-sink\r\n250 AUTH PLAIN LOGIN\r\n"
                    } else if up.starts_with("AUTH PLAIN ") {
                        cur.auth = line[11..].to_string();
                        b"235 ok\r\n"
                    } else if up.starts_with("MAIL FROM:") {
                        cur.from = line[10..].to_string();
                        b"250 ok\r\n"
                    } else if up.starts_with("RCPT TO:") {
                        cur.to.push(line[8..].to_string());
                        b"250 ok\r\n"
                    } else if up == "DATA" {
                        let _ = w.write_all(b"354 go\r\n").await;
                        while let Ok(Some(d)) = lines.next_line().await {
                            if d == "." {
                                break;
                            }
                            cur.data.push_str(&d);
                            cur.data.push('\n');
                        }
                        store.lock().unwrap().push(std::mem::take(&mut cur));
                        b"250 queued\r\n"
                    } else if up == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"500 what\r\n"
                    };
                    let _ = w.write_all(reply).await;
                }
            });
        }
    });
    (port, got)
}

fn decoded_body(data: &str) -> String {
    let body: String = data
        .split("\n\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .collect();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

async fn email_project(s: &Server, to: &str) {
    s.put(
        &format!("{SP}/projects/Mail/deploymentprocesses"),
        json!({"Steps": [{"Name": "Tell ops", "Actions": [{"ActionType": "Octopus.Email", "Properties": {
            "Octopus.Action.Email.To": to,
            "Octopus.Action.Email.Subject": "Deployed #{Octopus.Project.Name} #{Octopus.Release.Number} to #{Octopus.Environment.Name}",
            "Octopus.Action.Email.Body": "Hello,\n#{Octopus.Release.Number} is live in #{Octopus.Environment.Name}.",
            "Octopus.Action.Email.IsHtml": "False"}}]}]}),
    )
    .await;
}

#[tokio::test]
async fn the_email_step_sends_through_the_configured_smtp_server() {
    let s = Server::start();
    let (port, got) = smtp_sink().await;
    s.create_environment("Production").await;
    s.create_project("Mail").await;
    email_project(&s, "ops@example.com; dev@example.com").await;
    s.create_release("Mail", "1.2.3").await;

    // Not configured yet: the step fails saying so.
    assert_eq!(
        s.get("/api/smtpconfiguration/isconfigured").await["IsConfigured"],
        false
    );
    let task = s.deploy("Mail", "1.2.3", "Production").await;
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Failed");
    assert!(
        t["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("SMTP is not configured"),
        "{t}"
    );

    // Bad settings are refused, each named.
    let (st, v) = s
        .request(
            "PUT",
            "/api/smtpconfiguration",
            Some(json!({"SmtpPort": 70000, "SendEmailFrom": "not an address"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let e = v["Errors"].to_string();
    assert!(e.contains("SmtpPort") && e.contains("SendEmailFrom"), "{e}");

    let saved = s
        .put(
            "/api/smtpconfiguration",
            json!({"SmtpHost": "127.0.0.1", "SmtpPort": port, "SendEmailFrom": "ferry@example.com",
                "SmtpLogin": "mailer", "SmtpPassword": {"HasValue": true, "NewValue": "s3cret-pw"},
                "EnableSsl": false, "Timeout": 10000}),
        )
        .await;
    assert_eq!(
        saved["SmtpPassword"],
        json!({"HasValue": true, "NewValue": null})
    );
    assert!(
        !s.get("/api/smtpconfiguration")
            .await
            .to_string()
            .contains("s3cret-pw")
    );
    assert_eq!(
        s.get("/api/smtpconfiguration/isconfigured").await["IsConfigured"],
        true
    );

    let task = s.deploy("Mail", "1.2.3", "Production").await;
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{raw}");
    assert!(
        raw.contains("Sent the email 'Deployed Mail 1.2.3 to Production'"),
        "{raw}"
    );
    let msgs = got.lock().unwrap().clone();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    assert_eq!(m.from, "<ferry@example.com>");
    assert_eq!(m.to, vec!["<ops@example.com>", "<dev@example.com>"]);
    let auth = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&m.auth)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(auth, "\0mailer\0s3cret-pw");
    assert!(
        m.data
            .contains("Subject: Deployed Mail 1.2.3 to Production"),
        "{}",
        m.data
    );
    assert_eq!(
        decoded_body(&m.data),
        "Hello,\n1.2.3 is live in Production."
    );

    // An address that could smuggle SMTP commands is refused; an unreachable server fails.
    email_project(&s, "ops@example.com>\r\nRCPT TO:<x@evil.io").await;
    s.create_release("Mail", "1.2.4").await;
    let task = s.deploy("Mail", "1.2.4", "Production").await;
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Failed", "{t}");
    assert!(
        t["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("is not an email address"),
        "{t}"
    );
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    s.put("/api/smtpconfiguration", json!({"SmtpPort": dead_port}))
        .await;
    email_project(&s, "ops@example.com").await;
    s.create_release("Mail", "1.2.5").await;
    let task = s.deploy("Mail", "1.2.5", "Production").await;
    let t: Value = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Failed", "{t}");
    assert!(
        t["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("could not connect to the SMTP server"),
        "{t}"
    );
    assert_eq!(got.lock().unwrap().len(), 1);
}
