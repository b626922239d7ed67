//! Authentication: who is calling. API keys arrive as `X-Octopus-ApiKey` (an empty header
//! counts as missing), `Authorization: Bearer …`, or the documented `?apikey=` query parameter.
//! Keys are looked up by their SHA-256 hash; a disabled user's keys and expired keys answer 401.
//!
//! Without a key, the portal's session cookie (`OctopusIdentificationToken`) is accepted; a
//! state-changing request (POST, PUT, PATCH, DELETE) authenticated by it must also carry the
//! session's CSRF token in `X-Octopus-Csrf-Token` (403 otherwise). See `docs/users.md`.

use axum::http::{HeaderMap, Method, StatusCode, Uri};

use crate::auth::Principal;
use crate::{ApiError, AppState};

fn presented_key(h: &HeaderMap, uri: &Uri) -> Option<String> {
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
    let q = crate::query::Params::parse(uri.query());
    q.get("apikey").map(str::to_string)
}

fn invalid_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "The API key you provided was not valid. Please double-check your API key and try again.",
    )
}

/// The session cookie's name (Octopus's).
pub const SESSION_COOKIE: &str = "OctopusIdentificationToken";
/// The cookie holding the CSRF token, readable by the portal's scripts.
pub const CSRF_COOKIE: &str = "Octopus-Csrf-Token";
/// The header a session's state-changing requests repeat the CSRF token in.
pub const CSRF_HEADER: &str = "x-octopus-csrf-token";

/// The value of cookie `name`, if the request has a non-empty one.
pub fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// Whether a method changes state (and so needs the CSRF token under a session).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "The request was refused because its CSRF token is missing or wrong. Send the value of the Octopus-Csrf-Token cookie in the X-Octopus-Csrf-Token header",
    )
}

fn session_expired() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Your session has expired or was ended. Please sign in again.",
    )
}

/// The caller of a request that needs authentication, or the 401 (403 for a missing CSRF
/// token) to answer.
pub async fn authenticate(
    st: &AppState,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Principal, ApiError> {
    let Some(key) = presented_key(headers, uri) else {
        return match cookie(headers, SESSION_COOKIE) {
            Some(token) => session(st, method, headers, &token).await,
            None => Err(ApiError::unauthorized()),
        };
    };
    let hash = ferry_crypto::hash_api_key(&key);
    let Some((api_key, user)) = st.db.find_api_key(&hash).await? else {
        return Err(invalid_key());
    };
    let now = ferry_domain::time::now_ms();
    if user.is_active == 0 || api_key.expires_at.is_some_and(|e| e <= now) {
        return Err(invalid_key());
    }
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        is_service: user.is_service != 0,
        api_key_id: Some(api_key.id),
        credential_expires_at: api_key.expires_at,
        internal: false,
    })
}

async fn session(
    st: &AppState,
    method: &Method,
    headers: &HeaderMap,
    token: &str,
) -> Result<Principal, ApiError> {
    let Some((session, user)) = st
        .db
        .find_session(&ferry_crypto::hash_api_key(token))
        .await?
    else {
        return Err(session_expired());
    };
    let now = ferry_domain::time::now_ms();
    if session.expires_at <= now || user.is_active == 0 || user.is_service != 0 {
        return Err(session_expired());
    }
    if changes_state(method) {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or("");
        if presented.is_empty() || ferry_crypto::hash_api_key(presented) != session.csrf_hash {
            return Err(csrf_refused());
        }
    }
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        is_service: false,
        api_key_id: None,
        credential_expires_at: Some(session.expires_at),
        internal: false,
    })
}
