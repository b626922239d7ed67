//! Who is looking at a page, and how a page reads and writes: every read and write goes through
//! the REST API in-process (`PortalState::api`), carrying the browser's session cookie, so the
//! API's permission checks, read filtering, validation and audit apply to the portal unchanged.
//! Writes carry the form's CSRF token as the API's `X-Octopus-Csrf-Token` header: a form posted
//! from another site has no token and the API refuses it.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ferry_server::auth::Principal;
use ferry_server::authn::{CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, cookie};
use ferry_server::authz::{Checker, Target};
use ferry_server::routes::Permission;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::PortalState;

/// The largest API answer a page reads (a page never needs more; the API pages its lists).
const MAX_API_ANSWER: usize = 64 * 1024 * 1024;

/// A signed-in user looking at a page.
#[derive(Clone)]
pub struct Viewer {
    pub state: PortalState,
    pub principal: Principal,
    /// The session's CSRF token (from its readable cookie), put into every form.
    pub csrf: String,
    cookie_header: Option<HeaderValue>,
    forwarded_for: Option<HeaderValue>,
    peer: Option<ConnectInfo<SocketAddr>>,
}

/// A failed page: shown as an error page (or a redirect to sign in).
#[derive(Debug)]
pub enum PageError {
    SignIn { next: String },
    Api(ApiFailure),
}

/// What the API answered when it refused.
#[derive(Debug, Clone, Default)]
pub struct ApiFailure {
    pub status: u16,
    pub message: String,
    pub errors: Vec<String>,
}

impl ApiFailure {
    pub fn new(status: u16, message: impl Into<String>) -> ApiFailure {
        ApiFailure {
            status,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// The headline and details in one line.
    pub fn text(&self) -> String {
        if self.errors.is_empty() {
            self.message.clone()
        } else {
            format!("{} {}", self.message, self.errors.join(" "))
        }
    }

    /// The details that name a field (`'Name'` or `Name` in the message), for showing next to
    /// that field.
    pub fn for_field(&self, field: &str) -> Option<String> {
        let quoted = format!("'{field}'");
        let hits: Vec<&str> = self
            .errors
            .iter()
            .chain(std::iter::once(&self.message))
            .filter(|e| e.contains(&quoted) || e.starts_with(field) || names_word(e, field))
            .map(String::as_str)
            .collect();
        (!hits.is_empty()).then(|| hits.join(" "))
    }
}

/// Whether `text` has `field` as a word of its own after a space ("… the account Name").
fn names_word(text: &str, field: &str) -> bool {
    let needle = format!(" {field}");
    text.match_indices(&needle).any(|(i, _)| {
        text[i + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric())
    })
}

impl From<ApiFailure> for PageError {
    fn from(f: ApiFailure) -> Self {
        PageError::Api(f)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn { next } => Redirect::to(&format!(
                "/app/sign-in?next={}",
                crate::view::url_encode(&next)
            ))
            .into_response(),
            PageError::Api(f) => crate::pages::error_page(&f),
        }
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;

impl FromRequestParts<PortalState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &PortalState,
    ) -> Result<Self, Self::Rejection> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/app".to_string());
        if cookie(&parts.headers, SESSION_COOKIE).is_none() {
            return Err(PageError::SignIn { next });
        }
        // Authenticated as a read: the CSRF token is checked by the API on each write.
        let principal = match ferry_server::authn::authenticate(
            &state.st,
            &Method::GET,
            &parts.headers,
            &parts.uri,
        )
        .await
        {
            Ok(p) => p,
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                return Err(PageError::SignIn { next });
            }
            Err(e) => {
                return Err(PageError::Api(ApiFailure {
                    status: e.status.as_u16(),
                    message: e.message,
                    errors: e.errors,
                }));
            }
        };
        Ok(Viewer {
            state: state.clone(),
            principal,
            csrf: cookie(&parts.headers, CSRF_COOKIE).unwrap_or_default(),
            cookie_header: parts.headers.get(header::COOKIE).cloned(),
            forwarded_for: parts.headers.get("x-forwarded-for").cloned(),
            peer: parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned(),
        })
    }
}

/// An API answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Viewer {
    /// A request to the API as this viewer, with `csrf` as the CSRF header on writes.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        csrf: Option<&str>,
        body: Body,
    ) -> Request<Body> {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(c) = &self.cookie_header {
            req = req.header(header::COOKIE, c.clone());
        }
        if let Some(f) = &self.forwarded_for {
            req = req.header("x-forwarded-for", f.clone());
        }
        if let Some(t) = csrf {
            req = req.header(CSRF_HEADER, t);
        }
        let mut req = req.body(body).unwrap_or_default();
        if let Some(p) = &self.peer {
            req.extensions_mut().insert(*p);
        }
        req
    }

    /// Sends a request to the API and reads its JSON answer.
    pub async fn call(&self, req: Request<Body>) -> Result<Answer, ApiFailure> {
        api_call(&self.state, req).await
    }

    /// `GET path` as this viewer.
    pub async fn get(&self, path: &str) -> Result<Value, ApiFailure> {
        let req = self.request(Method::GET, path, None, Body::empty());
        Ok(self.call(req).await?.body)
    }

    /// A write (`POST`, `PUT`, `DELETE`) with a JSON body, using the form's CSRF token.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        csrf: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiFailure> {
        let b = match body {
            Some(v) => Body::from(serde_json::to_vec(v).unwrap_or_default()),
            None => Body::empty(),
        };
        let mut req = self.request(method, path, Some(csrf), b);
        if body.is_some() {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Ok(self.call(req).await?.body)
    }

    /// A write whose body is passed on as the browser sent it (package uploads).
    pub async fn forward(
        &self,
        method: Method,
        path: &str,
        csrf: &str,
        content_type: Option<HeaderValue>,
        body: Body,
    ) -> Result<Value, ApiFailure> {
        let mut req = self.request(method, path, Some(csrf), body);
        if let Some(ct) = content_type {
            req.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        Ok(self.call(req).await?.body)
    }

    /// The permission checker for this viewer (to hide or disable what they may not do).
    pub async fn checker(&self) -> Result<Checker, ApiFailure> {
        ferry_server::authz::checker(&self.state.st, &self.principal)
            .await
            .map_err(|e| ApiFailure {
                status: e.status.as_u16(),
                message: e.message,
                errors: e.errors,
            })
    }

    /// Whether this viewer holds `permission` in `space` for `target`.
    pub async fn can(&self, space: Option<&str>, permission: Permission, target: &Target) -> bool {
        match self.checker().await {
            Ok(c) => c.can(space, permission, target),
            Err(_) => false,
        }
    }
}

/// Sends a request to the API in-process and reads its JSON answer (a failure for any status
/// other than 2xx).
pub async fn api_call(state: &PortalState, req: Request<Body>) -> Result<Answer, ApiFailure> {
    let req = ferry_server::rewrite_default_space(req);
    let resp = match state.api.clone().oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_API_ANSWER)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(ApiFailure::new(502, "The API's answer could not be read.")),
    };
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    if !status.is_success() {
        return Err(failure(status, &body));
    }
    Ok(Answer {
        status,
        headers: parts.headers,
        body,
    })
}

fn failure(status: StatusCode, body: &Value) -> ApiFailure {
    let message = body
        .get("ErrorMessage")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| body.as_str().map(str::to_string))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_string());
    let errors = body
        .get("Errors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    ApiFailure {
        status: status.as_u16(),
        message,
        errors,
    }
}

/// A posted form's fields, in order (a name may repeat).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of `name`, trimmed ("" when absent).
    pub fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    }

    /// The first value of `name` as typed (not trimmed: scripts keep their whitespace).
    pub fn raw(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.replace("\r\n", "\n"))
            .unwrap_or_default()
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Whether a checkbox `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && v != "false")
    }

    /// The form's CSRF token.
    pub fn csrf(&self) -> String {
        self.get("csrf")
    }
}

/// `303 See Other` to `to` (after a successful form post).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}
