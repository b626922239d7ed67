//! Signing in and out, the portal's front door, and the space switcher.

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Method, Request, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::render;
use crate::PortalState;
use crate::ctx::{FormData, PageResult, Viewer, api_call};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route("/app", get(home))
        .route("/app/sign-in", get(sign_in_form).post(sign_in))
        .route("/app/sign-out", post(sign_out))
        .route("/app/switch", get(switch))
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignIn {
    asset_v: &'static str,
    next: String,
    username: String,
    error: String,
}

/// Where to go after signing in: only a portal path (never another site).
fn safe_next(next: &str) -> String {
    crate::view::safe_next(next, "/app")
}

#[derive(serde::Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

async fn sign_in_form(Query(q): Query<NextQuery>) -> Response {
    render(&SignIn {
        asset_v: crate::asset_version(),
        next: safe_next(&q.next),
        username: String::new(),
        error: String::new(),
    })
}

async fn sign_in(
    State(state): State<PortalState>,
    parts: axum::http::request::Parts,
    axum::Form(form): axum::Form<FormData>,
) -> Response {
    let body = json!({
        "Username": form.get("username"),
        "Password": form.raw("password"),
        "RememberMe": form.checked("remember"),
    });
    let headers = &parts.headers;
    let peer = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .cloned();
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/api/users/login")
        .header(header::CONTENT_TYPE, "application/json");
    for name in [header::HOST, header::COOKIE] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v.clone());
        }
    }
    if let Some(v) = headers.get("x-forwarded-for") {
        req = req.header("x-forwarded-for", v.clone());
    }
    let mut req = req
        .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
        .unwrap_or_default();
    if let Some(p) = peer {
        req.extensions_mut().insert(p);
    }
    match api_call(&state, req).await {
        Ok(answer) => {
            let mut r = Redirect::to(&safe_next(&form.get("next"))).into_response();
            for c in answer.headers.get_all(header::SET_COOKIE) {
                r.headers_mut().append(header::SET_COOKIE, c.clone());
            }
            r
        }
        Err(f) => {
            let mut r = render(&SignIn {
                asset_v: crate::asset_version(),
                next: safe_next(&form.get("next")),
                username: form.get("username"),
                error: f.text(),
            });
            *r.status_mut() = axum::http::StatusCode::from_u16(f.status)
                .unwrap_or(axum::http::StatusCode::UNAUTHORIZED);
            r
        }
    }
}

async fn sign_out(viewer: Viewer, axum::Form(form): axum::Form<FormData>) -> PageResult {
    let csrf = form.csrf();
    let req = viewer.request(
        Method::POST,
        "/api/users/logout",
        Some(&csrf),
        Body::empty(),
    );
    let answer = viewer.call(req).await?;
    let mut r = Redirect::to("/app/sign-in").into_response();
    for c in answer.headers.get_all(header::SET_COOKIE) {
        r.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    Ok(r)
}

async fn home(viewer: Viewer) -> Response {
    let _ = viewer;
    Redirect::to(&format!(
        "/app/{}/dashboard",
        ferry_domain::DEFAULT_SPACE_ID
    ))
    .into_response()
}

#[derive(serde::Deserialize)]
struct SwitchQuery {
    #[serde(default)]
    space: String,
}

async fn switch(Query(q): Query<SwitchQuery>) -> Response {
    if ferry_domain::ids::is_space_id(&q.space) {
        Redirect::to(&format!("/app/{}/dashboard", q.space)).into_response()
    } else {
        Redirect::to("/app").into_response()
    }
}
