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
