//! A browserless client for the portal: signs in with a user name and password, keeps the
//! session and CSRF cookies, reads pages and posts forms as a browser would (no redirects are
//! followed, so a test sees where a form sends the user). Browser tests proper are in
//! `portal_browser.rs`.

#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Server;

/// The admin password the server printed at its first start (it prints it just after it says
/// it is listening, so this waits for the line).
pub fn admin_password(s: &Server) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = s.output_text();
        if let Some(p) = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Admin password:"))
        {
            return p.trim().to_string();
        }
        if std::time::Instant::now() > deadline {
            panic!("no admin password in the server's output:\n{out}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Creates an active user with a password through the API (as admin) and returns its id.
pub async fn create_user(s: &Server, username: &str, password: &str) -> String {
    let u = s
        .post(
            "/api/users",
            json!({"Username": username, "DisplayName": username, "Password": password, "IsActive": true}),
        )
        .await;
    u["Id"].as_str().unwrap().to_string()
}

/// A page as a browser got it.
pub struct Page {
    pub status: StatusCode,
    /// Where a redirect points ("" when none).
    pub location: String,
    pub body: String,
}

pub struct Portal {
    pub base: String,
    http: reqwest::Client,
    session: String,
    pub csrf: String,
}

impl Portal {
    /// Signs `username` in through the sign-in form.
    pub async fn sign_in(s: &Server, username: &str, password: &str) -> Portal {
        let mut p = Portal {
            base: s.url.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            session: String::new(),
            csrf: String::new(),
        };
        let r = p
            .http
            .post(format!("{}/app/sign-in", p.base))
            .form(&[
                ("username", username),
                ("password", password),
                ("next", "/app"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign-in as {username}");
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let kv = c.split(';').next().unwrap();
            if let Some(v) = kv.strip_prefix("OctopusIdentificationToken=") {
                p.session = v.to_string();
            }
            if let Some(v) = kv.strip_prefix("Octopus-Csrf-Token=") {
                p.csrf = v.to_string();
            }
        }
        assert!(
            !p.session.is_empty() && !p.csrf.is_empty(),
            "cookies after sign-in"
        );
        p
    }

    fn cookies(&self) -> String {
        format!(
            "OctopusIdentificationToken={}; Octopus-Csrf-Token={}",
            self.session, self.csrf
        )
    }

    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.text().await.unwrap();
        Page {
            status,
            location,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Page {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookies())
            .send()
            .await
            .unwrap();
        Self::page(r).await
    }

    /// `GET path`, which must answer 200; returns the HTML.
    pub async fn html(&self, path: &str) -> String {
        let p = self.get(path).await;
        assert_eq!(p.status, StatusCode::OK, "GET {path}: {}", p.body);
        p.body
    }

    /// Posts a form (the CSRF field is added).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &self.csrf));
        self.post_raw(path, &all).await
    }

    /// Posts a form exactly as given (no CSRF field unless it is in `fields`).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookies())
            .form(fields)
            .send()
            .await
            .unwrap();
        Self::page(r).await
    }
}
