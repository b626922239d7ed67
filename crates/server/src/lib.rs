//! Ferry's HTTP server: the Octopus-compatible REST API (the only API; the CLI and the tests use
//! it too), authentication, the route table with each endpoint's permission, metrics, and the
//! first-start bootstrap.
//!
//! Architecture invariant: only this crate knows HTTP routes, and every route is registered
//! through `Routes::add`, which requires its permission; the OpenAPI document and the auth
//! layer are generated from that one table.

pub mod api;
pub mod audit_diff;
pub mod auth;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod error;
pub mod input;
pub mod metrics;
pub mod outbound;
pub mod permissions;
pub mod query;
pub mod roles;
pub mod routes;
pub mod scope;
pub mod throttle;
pub mod visibility;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, Uri};
use ferry_executor::Executor;
use ferry_store::Db;
use tokio::net::TcpListener;

pub use error::{ApiError, ApiResult};

/// Server settings that handlers need.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The URL clients use to reach this server (links, `Octopus.Web.ServerUri`).
    pub public_url: String,
    /// The largest JSON body accepted.
    pub max_body_bytes: usize,
    /// The SHA-256 thumbprint of the certificate agents pin (empty when there is none).
    pub server_thumbprint: String,
    /// The polling endpoint's port, when it is served.
    pub polling_port: Option<u16>,
    /// Webhook delivery: the outbound address policy, attempts and retry delay.
    pub webhooks: outbound::WebhookSettings,
    /// The longest an API key may live, in days (`--api-key-max-days`).
    pub api_key_max_days: u32,
    /// Reverse proxies whose `X-Forwarded-For` is believed (`--trusted-proxy`).
    pub trusted_proxies: Vec<outbound::Cidr>,
    /// The server's data directory (event archive files live under it).
    pub data_dir: std::path::PathBuf,
    /// Audit events older than this many days move to archive files (`--event-retention-days`).
    pub event_retention_days: u32,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub executor: Arc<Executor>,
    pub config: Arc<ServerConfig>,
    pub installation_id: Arc<str>,
    /// Seals and opens sensitive values.
    pub master_key: Arc<ferry_crypto::MasterKey>,
    pub metrics: Arc<metrics::Metrics>,
    pub routes: Arc<routes::RouteTable>,
    /// The built-in feed's file storage.
    pub packages: Arc<api::packages::PackageStorage>,
    /// What the dashboard shows of each space's documents (`api::dashboard_catalog`).
    pub dashboard_catalogs: Arc<api::dashboard_catalog::DashboardCatalogs>,
    /// The security model (teams, grants, roles) as last read (`authz`).
    pub authz: Arc<authz::AuthzCache>,
}

/// The version string reported in the root document. It must be valid semver of at least
/// 2022.3.5512 for the official TypeScript client to create releases and deploy.
pub const OCTOPUS_COMPAT_VERSION: &str = "2025.2.9999";

/// Path segments directly under `/api/` that are not space-scoped.
const SYSTEM_SEGMENTS: &[&str] = &[
    "spaces",
    "users",
    "tasks",
    "events",
    "capabilities",
    "openapi.json",
    "serverstatus",
    "permissions",
    "configuration",
    "smtpconfiguration",
    "teams",
    "userroles",
    "scopeduserroles",
];

/// Maps default-space routes (`/api/projects/…`) onto space-scoped ones
/// (`/api/Spaces-1/projects/…`) before routing, and drops trailing slashes.
pub fn rewrite_default_space(mut req: Request<Body>) -> Request<Body> {
    let uri = req.uri().clone();
    let path = uri.path();
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let mut new_path = trimmed.to_string();
    if let Some(rest) = trimmed.strip_prefix("/api/") {
        let first = rest.split('/').next().unwrap_or("");
        let is_system = SYSTEM_SEGMENTS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(first))
            || rest.eq_ignore_ascii_case("certificates/certificate-global");
        if !first.is_empty() && !is_system && !ferry_domain::ids::is_space_id(first) {
            new_path = format!("/api/{}/{rest}", ferry_domain::DEFAULT_SPACE_ID);
        }
    }
    if new_path != path {
        let pq = match uri.query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        if let Ok(pq) = pq.parse::<axum::http::uri::PathAndQuery>() {
            let mut parts = uri.into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(u) = Uri::from_parts(parts) {
                *req.uri_mut() = u;
            }
        }
    }
    req
}

/// Builds the router with its state.
pub fn router(state: AppState) -> Router {
    let (router, _) = routes::build();
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::layer,
        ))
        .fallback(|| async { ApiError::not_found("There is no API endpoint at this address") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "This endpoint does not accept that HTTP method",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            declared_length_limit,
        ))
        .with_state(state)
}

/// Whether a request goes to a route that streams its body instead of reading it whole (the
/// package upload, `POST /api/{space}/packages/raw`), so no body size limit applies. Registered
/// with `Routes::add_streaming`.
pub fn streams_request_body(method: &axum::http::Method, path: &str) -> bool {
    let mut segments = path.trim_end_matches('/').split('/');
    method == axum::http::Method::POST
        && segments.next() == Some("")
        && segments.next() == Some("api")
        && segments.next().is_some_and(ferry_domain::ids::is_space_id)
        && segments.next() == Some("packages")
        && segments.next() == Some("raw")
        && segments.next().is_none()
}

/// Refuses a body whose declared length is over the limit before reading any of it (the
/// extractors also stop reading at the limit when no length is declared). Streaming routes
/// (package uploads) are exempt.
async fn declared_length_limit(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if streams_request_body(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.config.max_body_bytes as u64) {
        return ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The request body is larger than the server accepts ({} bytes at most).",
                st.config.max_body_bytes
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_app(listener, router(state), shutdown).await
}

/// Serves `router` (the API, with anything mounted in front of it, such as the portal) on
/// `listener` until `shutdown` resolves.
pub async fn serve_app(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = tower::util::MapRequest::new(router, rewrite_default_space);
    axum::serve(
        listener,
        axum::ServiceExt::<Request<Body>>::into_make_service_with_connect_info::<SocketAddr>(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// How long a graceful shutdown waits for running tasks.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(p: &str) -> String {
        let req = Request::builder()
            .uri(p)
            .body(Body::empty())
            .unwrap_or_default();
        rewrite_default_space(req).uri().to_string()
    }

    #[test]
    fn default_space_rewrite() {
        assert_eq!(rw("/api/projects/all"), "/api/Spaces-1/projects/all");
        assert_eq!(rw("/api/projects?take=1"), "/api/Spaces-1/projects?take=1");
        assert_eq!(rw("/api/Spaces-2/projects"), "/api/Spaces-2/projects");
        assert_eq!(rw("/api/spaces/all"), "/api/spaces/all");
        assert_eq!(rw("/api/tasks/ServerTasks-1"), "/api/tasks/ServerTasks-1");
        assert_eq!(rw("/api/"), "/api");
        assert_eq!(rw("/api"), "/api");
        assert_eq!(rw("/metrics"), "/metrics");
    }

    #[test]
    fn only_the_package_upload_streams() {
        use axum::http::Method;
        assert!(streams_request_body(
            &Method::POST,
            "/api/Spaces-1/packages/raw"
        ));
        assert!(streams_request_body(
            &Method::POST,
            "/api/Spaces-12/packages/raw/"
        ));
        assert!(!streams_request_body(
            &Method::GET,
            "/api/Spaces-1/packages/raw"
        ));
        assert!(!streams_request_body(
            &Method::POST,
            "/api/Spaces-1/packages"
        ));
        assert!(!streams_request_body(
            &Method::POST,
            "/api/Spaces-1/projects/raw"
        ));
        assert!(!streams_request_body(&Method::POST, "/api/packages/raw"));
        assert!(!streams_request_body(
            &Method::POST,
            "/api/Spaces-1/packages/raw/x"
        ));
    }
}
