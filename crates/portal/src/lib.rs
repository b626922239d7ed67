//! Ferry's web portal: server-rendered pages (askama templates compiled into the binary), a
//! little hand-written JavaScript, and assets embedded with `include_str!`. Pages read and write
//! only through the REST API, called in-process with the browser's session (`ctx`), so the
//! portal can do nothing the API would refuse. See `docs/portal.md`.
//!
//! Every page lives under `/app`; `/` redirects there. A page with `{space}` in its path is in
//! that space.

pub mod ctx;
pub mod pages;
pub mod view;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use ferry_server::AppState;
use sha2::Digest;

/// What every portal handler shares.
#[derive(Clone)]
pub struct PortalState {
    pub st: AppState,
    /// The REST API, called in-process.
    pub api: Router,
}

/// The embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
];

/// A short hash of the assets, appended to their URLs so browsers cache them for good.
pub fn asset_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let mut h = sha2::Sha256::new();
        for (_, _, body) in ASSETS {
            h.update(body.as_bytes());
        }
        hex::encode(&h.finalize()[..6])
    })
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(ct)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

async fn not_found() -> Response {
    pages::error_page(&ctx::ApiFailure::new(
        404,
        "There is no portal page at this address.",
    ))
}

/// Adds `Server-Timing: page;dur=…` (milliseconds from the request to the response head), which
/// `ferry-bench portal` reads, and keeps pages out of shared caches.
async fn server_timing(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let began = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let ms = began.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("page;dur={ms:.1}")) {
        resp.headers_mut().insert("server-timing", v);
    }
    if !resp.headers().contains_key(header::CACHE_CONTROL) {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The portal's routes in front of `api` (the API router, which answers everything else).
pub fn mount(st: AppState, api: Router) -> Router {
    let state = PortalState {
        st,
        api: api.clone(),
    };
    let portal = pages::routes()
        .route("/app/assets/{name}", get(asset))
        .layer(axum::middleware::from_fn(server_timing))
        .with_state(state);
    Router::new()
        .route("/", get(|| async { Redirect::to("/app") }))
        .merge(portal)
        .fallback(move |req: axum::extract::Request| {
            let api = api.clone();
            async move {
                if req.uri().path().starts_with("/app/") {
                    return not_found().await;
                }
                match tower::ServiceExt::oneshot(api, req).await {
                    Ok(r) => r,
                    Err(e) => match e {},
                }
            }
        })
}
