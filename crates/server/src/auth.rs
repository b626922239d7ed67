//! The auth layer, driven by the route table: who is calling (`crate::authn`), then the
//! permission check.
//!
//! Every route's declared permission is checked here, in one place, against the space and the
//! object the path names (`crate::scope`, `crate::authz`).

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
    /// The API key the request came with (`None`: a session, or the server itself).
    pub api_key_id: Option<String>,
    /// When the credential the request came with expires (API key or session), if ever.
    pub credential_expires_at: Option<i64>,
    /// The server itself (automatic deployments, periodic jobs): holds every permission. Never
    /// set for a request.
    pub internal: bool,
}

impl Principal {
    /// The server acting on its own (automatic deployments, periodic retention).
    pub fn system(user_id: &str, display_name: &str) -> Principal {
        Principal {
            user_id: user_id.to_string(),
            username: "system".to_string(),
            display_name: display_name.to_string(),
            is_service: true,
            api_key_id: None,
            credential_expires_at: None,
            internal: true,
        }
    }
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
        let ip = match parts.extensions.get::<ClientIp>() {
            Some(c) => c.0.clone(),
            None => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
        };
        Ok(Ctx { principal, ip })
    }
}

/// The client's address as the audit log records it (set by the auth layer).
#[derive(Clone, Debug)]
pub struct ClientIp(pub String);

/// The client's address: the peer's, unless the peer is a trusted proxy; then the right-most
/// address of `X-Forwarded-For` that is not a trusted proxy (a client cannot forge the hops a
/// trusted proxy appends).
pub fn client_ip(
    peer: Option<std::net::IpAddr>,
    forwarded: Option<&str>,
    trusted: &[crate::outbound::Cidr],
) -> String {
    let Some(peer) = peer else {
        return String::new();
    };
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer.to_string();
    }
    let mut client = peer;
    if let Some(f) = forwarded {
        for hop in f.rsplit(',').map(str::trim) {
            match hop.parse::<std::net::IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !is_trusted(ip) {
                        break;
                    }
                }
                // An unreadable hop: stop at the last address that could be read.
                Err(_) => break,
            }
        }
    }
    client.to_string()
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
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = client_ip(peer, forwarded, &st.config.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    if permission == Permission::Anonymous {
        return next.run(req).await;
    }
    let principal =
        match crate::authn::authenticate(&st, req.method(), req.headers(), req.uri()).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
    if permission != Permission::Authenticated {
        if let Err(e) = authorize(&st, &principal, permission, &matched, req.uri().path()).await {
            return e.into_response();
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The route's permission, checked against the space and object its path names
/// (`crate::scope`). A space permission on a route without a space (`/api/tasks`) needs the
/// permission in some space; the handler filters what it returns.
async fn authorize(
    st: &AppState,
    principal: &Principal,
    permission: Permission,
    route: &str,
    path: &str,
) -> Result<(), ApiError> {
    let checker = crate::authz::checker(st, principal).await?;
    if checker.is_all_powerful() {
        return Ok(());
    }
    let (space, target) = crate::scope::resolve(st, route, path).await?;
    let space = if permission.is_system() { None } else { space };
    checker.require(space.as_deref(), permission, &target)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let proxies: Vec<crate::outbound::Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = |s: &str| Some(s.parse().unwrap());
        // No trusted proxy: the header is ignored.
        assert_eq!(
            client_ip(peer("203.0.113.9"), Some("1.2.3.4"), &proxies),
            "203.0.113.9"
        );
        // Behind two trusted proxies: the first untrusted address from the right; a forged
        // left-most entry is ignored.
        assert_eq!(
            client_ip(
                peer("10.0.0.2"),
                Some("6.6.6.6, 198.51.100.7, 10.0.0.1"),
                &proxies
            ),
            "198.51.100.7"
        );
        // A trusted proxy without the header: the proxy itself.
        assert_eq!(client_ip(peer("10.0.0.2"), None, &proxies), "10.0.0.2");
        assert_eq!(
            client_ip(peer("10.0.0.2"), Some("garbage"), &proxies),
            "10.0.0.2"
        );
    }
}
