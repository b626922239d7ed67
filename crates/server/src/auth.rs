//! Authentication and the permission check, driven by the route table. API keys arrive as
//! `X-Octopus-ApiKey` (an empty header counts as missing), `Authorization: Bearer …`, or the
//! documented `?apikey=` query parameter. Keys are looked up by their SHA-256 hash.
//!
//! Until teams and roles exist, every active user holds every permission; the check is still
//! made here, in one place, against each route's declared permission.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::routes::Permission;
use crate::{ApiError, AppState};

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub is_service: bool,
}

/// The caller and their address, for handlers that write audit events.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub principal: Principal,
    pub ip: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        Ok(Ctx { principal, ip })
    }
}

fn presented_key(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Some(k) = h
        .get("x-octopus-apikey")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        return Some(k.to_string());
    }
    if let Some(b) = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        return Some(b.to_string());
    }
    let q = crate::query::Params::parse(req.uri().query());
    q.get("apikey").map(str::to_string)
}

/// The auth layer (a route layer, so the matched path is known).
pub async fn layer(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let Some(permission) = st.routes.permission(req.method(), &matched) else {
        // Unreachable by construction (routes are added with a permission), but fail closed.
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "This endpoint declares no permission, so it is refused",
        )
        .into_response();
    };
    if permission == Permission::Anonymous {
        return next.run(req).await;
    }
    let Some(key) = presented_key(&req) else {
        return ApiError::unauthorized().into_response();
    };
    let hash = ferry_crypto::hash_api_key(&key);
    let found = match st.db.find_api_key(&hash).await {
        Ok(f) => f,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some((api_key, user)) = found else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "The API key you provided was not valid. Please double-check your API key and try again.",
        )
        .into_response();
    };
    let now = ferry_domain::time::now_ms();
    if user.is_active == 0 || api_key.expires_at.is_some_and(|e| e <= now) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "The API key you provided was not valid. Please double-check your API key and try again.",
        )
        .into_response();
    }
    req.extensions_mut().insert(Principal {
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        is_service: user.is_service != 0,
    });
    next.run(req).await
}
