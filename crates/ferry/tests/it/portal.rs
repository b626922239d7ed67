//! The portal over HTTP without a browser: signing in and out, CSRF on forms, pages answer.
//! The browser journey is in `portal_browser.rs`.

use reqwest::StatusCode;

use crate::harness::Server;
use crate::portal_client::{Portal, admin_password};

#[tokio::test]
async fn sign_in_dashboard_and_sign_out() {
    let s = Server::start();
    // Not signed in: every page sends the browser to the sign-in form, remembering where it was.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = anon
        .get(format!("{}/app/Spaces-1/dashboard", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        "/app/sign-in?next=%2Fapp%2FSpaces%2D1%2Fdashboard"
    );
    // A wrong password: the form again, with the error, and no cookie.
    let r = anon
        .post(format!("{}/app/sign-in", s.url))
        .form(&[("username", "admin"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("signin-error"));

    let p = Portal::sign_in(&s, "admin", &admin_password(&s)).await;
    let home = p.get("/app").await;
    assert_eq!(home.location, "/app/Spaces-1/dashboard");
    let dash = p.html("/app/Spaces-1/dashboard").await;
    assert!(dash.contains("dashboard-empty"), "{dash}");
    assert!(dash.contains("creating environments"), "{dash}");

    // A form without the CSRF token is refused and the session stays.
    let out = p.post_raw("/app/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::FORBIDDEN, "{}", out.body);
    assert_eq!(
        p.get("/app/Spaces-1/dashboard").await.status,
        StatusCode::OK
    );
    let out = p.post("/app/sign-out", &[]).await;
    assert_eq!(out.location, "/app/sign-in");
    assert_eq!(
        p.get("/app/Spaces-1/dashboard").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn assets_are_embedded_and_cached() {
    let s = Server::start();
    let r = reqwest::get(format!("{}/app/assets/app.css", s.url))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let r = reqwest::get(format!("{}/app/assets/nope.js", s.url))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Names and log lines are text, never markup: a project, an environment and a script's output
/// that look like HTML are shown escaped on the dashboard, the project list and the task page.
#[tokio::test]
async fn markup_in_names_and_logs_is_escaped() {
    let s = Server::start();
    let evil = "<img src=x onerror=alert(1)>";
    s.create_environment(&format!("Dev {evil}")).await;
    let project = s.create_project(&format!("P {evil}")).await;
    let name = project["Name"].as_str().unwrap().to_string();
    s.set_scripts(&name, &[("Say", "echo '<script>alert(2)</script>'")])
        .await;
    s.create_release(&name, "1.0.0").await;
    let task = s.deploy(&name, "1.0.0", &format!("Dev {evil}")).await;
    s.wait_state(&task, "Success", std::time::Duration::from_secs(60))
        .await;

    let p = Portal::sign_in(&s, "admin", &admin_password(&s)).await;
    for path in [
        "/app/Spaces-1/dashboard".to_string(),
        "/app/Spaces-1/projects".to_string(),
        format!("/app/Spaces-1/tasks/{task}"),
        "/app/Spaces-1/tasks".to_string(),
        "/app/Spaces-1/infrastructure/environments".to_string(),
    ] {
        let html = p.html(&path).await;
        assert!(!html.contains(evil), "{path} shows raw markup");
        assert!(
            !html.contains("<script>alert(2)"),
            "{path} shows raw markup"
        );
        assert!(
            html.contains("&lt;img src=x") || html.contains("&#60;img src=x"),
            "{path}: {html}"
        );
    }
    let log = p.html(&format!("/app/Spaces-1/tasks/{task}")).await;
    assert!(log.contains("&lt;script&gt;alert(2)"), "{log}");
}

/// Accounts for SSH targets are created and deleted in the portal; their secrets never come
/// back to a page, and a bad form shows the error next to the field.
#[tokio::test]
async fn accounts_are_created_with_write_only_secrets() {
    let s = Server::start();
    let p = Portal::sign_in(&s, "admin", &admin_password(&s)).await;
    let path = "/app/Spaces-1/infrastructure/accounts";
    let empty = p.html(path).await;
    assert!(empty.contains("accounts-empty"), "{empty}");
    let new_target = p.html("/app/Spaces-1/infrastructure/targets/new").await;
    assert!(
        new_target.contains(&format!("href=\"{path}\"")),
        "{new_target}"
    );

    let secret = "pa55-word-never-shown";
    let bad = p
        .post(
            path,
            &[
                ("name", ""),
                ("kind", "UsernamePassword"),
                ("username", "deploy"),
                ("password", secret),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("field-error"), "{}", bad.body);
    assert!(bad.body.contains("value=\"deploy\""), "{}", bad.body);
    assert!(!bad.body.contains(secret));

    let ok = p
        .post(
            path,
            &[
                ("name", "Deploy user"),
                ("kind", "UsernamePassword"),
                ("username", "deploy"),
                ("password", secret),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let listed = s.get("/api/Spaces-1/accounts/all").await;
    let id = listed[0]["Id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["Username"], "deploy");
    let html = p.html(path).await;
    assert!(
        html.contains("Deploy user") && html.contains("User name and password"),
        "{html}"
    );
    assert!(!html.contains(secret), "the password reached the page");

    let gone = p.post(&format!("{path}/{id}/delete"), &[]).await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER, "{}", gone.body);
    assert_eq!(
        s.get("/api/Spaces-1/accounts/all").await,
        serde_json::json!([])
    );
}
