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
