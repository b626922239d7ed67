//! Users, service accounts, passwords, sign-in and API keys (Octopus's shapes; see
//! `docs/users.md`).
//!
//! - Users: `GET /api/users`, `/api/users/all`, `/api/users/me`, `/api/users/{id}`,
//!   `POST /api/users`, `PUT /api/users/{id}` (names, email, `IsActive`, `Password`),
//!   `DELETE /api/users/{id}`.
//! - Sign-in: `POST /api/users/login` (throttled, see `crate::throttle`) creates a session
//!   (cookie `OctopusIdentificationToken` plus the CSRF cookie `Octopus-Csrf-Token`);
//!   `POST /api/users/logout` ends it.
//! - API keys: `GET/POST /api/users/{id}/apikeys`, `DELETE /api/users/{id}/apikeys/{keyId}`.
//!
//! Anyone may read and change themselves; reading others needs `UserView`, changing them
//! `UserEdit`.

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ferry_domain::time::{format_ms, now_ms, parse_ms};
use ferry_store::{ApiKeyRow, SessionRow, StoreError, UserRow};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Ctx;
use crate::authn::{CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, changes_state, cookie};
use crate::input::{Body, JsonValue};
use crate::query::{Params, page};
use crate::routes::{Permission, Routes};
use crate::throttle::{self, Verdict};
use crate::{ApiError, ApiResult, AppState};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (Argon2 hashes any length; this bounds the work per request).
const MAX_PASSWORD_CHARS: usize = 256;
/// A session without "remember me".
const SESSION_MS: i64 = 12 * 3600 * 1000;
/// A session with "remember me".
const REMEMBERED_SESSION_MS: i64 = 20 * 24 * 3600 * 1000;
/// An API key's lifetime when none is asked for.
const DEFAULT_KEY_DAYS: i64 = 180;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The one answer to a failed sign-in, whatever the reason.
const INVALID_LOGIN: &str = "Invalid username or password.";

/// A hash verified for unknown users, so a sign-in takes as long whether or not they exist.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    ferry_crypto::hash_password("ferry-dummy-password-for-timing").unwrap_or_default()
});

/// This module's routes.
pub fn routes(r: Routes) -> Routes {
    // Compute the dummy hash now rather than in the first sign-in of an unknown user.
    std::thread::spawn(|| LazyLock::force(&DUMMY_HASH));
    use Method as M;
    use Permission as P;
    r.add(
        M::GET,
        "/api/users/me",
        P::Authenticated,
        "The current user",
        me,
    )
    .add(M::GET, "/api/users", P::UserView, "List users", list_users)
    .add(
        M::GET,
        "/api/users/all",
        P::UserView,
        "All users",
        all_users,
    )
    .add(
        M::POST,
        "/api/users",
        P::UserEdit,
        "Create a user or service account",
        create_user,
    )
    .add(
        M::GET,
        "/api/users/{id}",
        P::Authenticated,
        "Get a user (yourself, or anyone with UserView)",
        get_user,
    )
    .add(
        M::PUT,
        "/api/users/{id}",
        P::Authenticated,
        "Change a user: names, email, active, password (yourself, or anyone with UserEdit)",
        update_user,
    )
    .add(
        M::DELETE,
        "/api/users/{id}",
        P::UserEdit,
        "Delete a user with its API keys and sessions",
        delete_user,
    )
    .add(
        M::POST,
        "/api/users/login",
        P::Anonymous,
        "Sign in with a user name and password (session cookie and CSRF token)",
        login,
    )
    .add(
        M::POST,
        "/api/users/logout",
        P::Anonymous,
        "End the current session",
        logout,
    )
    .add(
        M::GET,
        "/api/users/{id}/apikeys",
        P::Authenticated,
        "List a user's API keys (never the keys themselves)",
        list_keys,
    )
    .add(
        M::POST,
        "/api/users/{id}/apikeys",
        P::Authenticated,
        "Create an API key (shown once)",
        create_key,
    )
    .add(
        M::GET,
        "/api/users/{id}/apikeys/{key_id}",
        P::Authenticated,
        "Get one of a user's API keys (never the key itself)",
        get_key,
    )
    .add(
        M::DELETE,
        "/api/users/{id}/apikeys/{key_id}",
        P::Authenticated,
        "Revoke an API key",
        revoke_key,
    )
}

// ---- shapes ----------------------------------------------------------------------------------

fn user_json(u: &UserRow, requestor: &str) -> Value {
    let base = format!("/api/users/{}", u.id);
    json!({
        "Id": u.id,
        "Username": u.username,
        "DisplayName": u.display_name,
        "EmailAddress": u.email,
        "IsActive": u.is_active != 0,
        "IsService": u.is_service != 0,
        "IsRequestor": u.id == requestor,
        "CanPasswordBeEdited": u.is_service == 0,
        "Identities": [],
        "Created": format_ms(u.created_at),
        "Links": {
            "Self": base,
            "ApiKeys": format!("{base}/apikeys{{/id}}{{?skip,take}}"),
            "Permissions": format!("{base}/permissions"),
            "Teams": format!("{base}/teams"),
            "Avatar": "",
        },
    })
}

fn key_json(k: &ApiKeyRow) -> Value {
    json!({
        "Id": k.id,
        "Purpose": k.purpose,
        "UserId": k.user_id,
        "Created": format_ms(k.created_at),
        "Expires": k.expires_at.map(format_ms),
        "Links": {"Self": format!("/api/users/{}/apikeys/{}", k.user_id, k.id)},
    })
}

fn user_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("User '{id}' was not found"))
}

async fn load_user(st: &AppState, id: &str) -> ApiResult<UserRow> {
    st.db.get_user(id).await?.ok_or_else(|| user_not_found(id))
}

fn is_self(ctx: &Ctx, id: &str) -> bool {
    ctx.principal.user_id == id
}

/// Yourself, or `permission` (a system permission).
async fn require_self_or(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    permission: Permission,
) -> ApiResult<()> {
    if is_self(ctx, id) {
        return Ok(());
    }
    crate::authz::require_system(st, ctx, permission).await
}

// ---- users -----------------------------------------------------------------------------------

async fn me(State(st): State<AppState>, ctx: Ctx) -> ApiResult<Json<Value>> {
    match st.db.get_user(&ctx.principal.user_id).await? {
        Some(u) => Ok(Json(user_json(&u, &ctx.principal.user_id))),
        None => Err(ApiError::unauthorized()),
    }
}

async fn list_users(State(st): State<AppState>, ctx: Ctx, uri: Uri) -> ApiResult<Json<Value>> {
    let q = Params::parse(uri.query());
    let filter = q.get("filter").map(str::to_lowercase);
    let ids = q.list("ids");
    let users: Vec<UserRow> = st
        .db
        .list_users()
        .await?
        .into_iter()
        .filter(|u| ids.is_empty() || ids.contains(&u.id))
        .filter(|u| {
            filter.as_ref().is_none_or(|f| {
                u.username.to_lowercase().contains(f) || u.display_name.to_lowercase().contains(f)
            })
        })
        .collect();
    let total = i64::try_from(users.len()).unwrap_or(i64::MAX);
    let (skip, take) = (q.skip(), q.take());
    let items = users
        .iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(usize::try_from(take).unwrap_or(usize::MAX))
        .map(|u| user_json(u, &ctx.principal.user_id))
        .collect();
    Ok(Json(page(
        "User",
        items,
        total,
        skip,
        take,
        "/api/users",
        "/api/users{/id}{?skip,take,ids,filter}",
    )))
}

async fn all_users(State(st): State<AppState>, ctx: Ctx) -> ApiResult<Json<Value>> {
    let users = st.db.list_users().await?;
    Ok(Json(Value::Array(
        users
            .iter()
            .map(|u| user_json(u, &ctx.principal.user_id))
            .collect(),
    )))
}

async fn get_user(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_self_or(&st, &ctx, &id, Permission::UserView).await?;
    let u = load_user(&st, &id).await?;
    Ok(Json(user_json(&u, &ctx.principal.user_id)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NewUser {
    username: String,
    display_name: Option<String>,
    email_address: Option<String>,
    is_service: bool,
    is_active: Option<bool>,
    password: Option<String>,
}

/// A user name as given (trimmed) and its normalised key, or the 400 saying why not.
fn check_username(name: &str) -> ApiResult<(String, String)> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("Please provide a Username"));
    }
    if name.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "The Username must be at most 64 characters",
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "The Username must not contain control characters",
        ));
    }
    let key = throttle::account_key(name);
    if key.is_empty() {
        return Err(ApiError::bad_request(
            "The Username must contain visible characters",
        ));
    }
    Ok((name.to_string(), key))
}

fn check_display_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("Please enter a Display name."));
    }
    if name.chars().count() > 64 || name.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "Please enter a Display name with less than 64 characters and no control characters.",
        ));
    }
    Ok(name.to_string())
}

fn check_email(email: &str) -> ApiResult<String> {
    let email = email.trim();
    if email.chars().count() > 256 || email.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "The EmailAddress must be at most 256 characters without control characters",
        ));
    }
    Ok(email.to_string())
}

fn check_password(password: &str) -> ApiResult<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "The password must be at least {MIN_PASSWORD_CHARS} characters long"
        )));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "The password must be at most {MAX_PASSWORD_CHARS} characters long"
        )));
    }
    Ok(())
}

async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || ferry_crypto::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn verify_password(password: String, hash: Option<String>) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        let real = hash.is_some();
        let phc = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        ferry_crypto::verify_password(&password, &phc) && real
    })
    .await
    .map_err(ApiError::internal)
}

fn username_taken(e: StoreError, name: &str) -> ApiError {
    match e {
        StoreError::Conflict => ApiError::conflict(format!(
            "A user with the user name '{name}' (or one that differs only in case, spacing or look-alike letters) already exists"
        )),
        other => other.into(),
    }
}

async fn create_user(
    State(st): State<AppState>,
    ctx: Ctx,
    Body(n): Body<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    crate::authz::require_system(&st, &ctx, Permission::UserEdit).await?;
    let (username, key) = check_username(&n.username)?;
    let display_name = check_display_name(n.display_name.as_deref().unwrap_or(&username))?;
    let email = check_email(n.email_address.as_deref().unwrap_or(""))?;
    let password = n.password.filter(|p| !p.is_empty());
    let password_hash = match (n.is_service, password) {
        (true, Some(_)) => {
            return Err(ApiError::bad_request(
                "A service account has no password: it signs in with API keys only",
            ));
        }
        (true, None) => None,
        (false, None) => {
            return Err(ApiError::bad_request(
                "Please provide a Password for the user (service accounts have none)",
            ));
        }
        (false, Some(p)) => {
            check_password(&p)?;
            Some(hash_password(p).await?)
        }
    };
    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq("Users").await?;
    let user = UserRow {
        id: format!("Users-{seq}"),
        username,
        username_key: key,
        display_name,
        email,
        password_hash,
        is_service: i64::from(n.is_service),
        is_active: i64::from(n.is_active.unwrap_or(true)),
        created_at: now_ms(),
    };
    tx.insert_user(&user)
        .await
        .map_err(|e| username_taken(e, &user.username))?;
    let what = if n.is_service {
        "Service account"
    } else {
        "User"
    };
    crate::api::audit(
        &mut tx,
        &ctx,
        "",
        "Created",
        format!("{what} {} was created", user.username),
        &[&user.id],
        json!({"Document": user_json(&user, "")}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(user_json(&user, &ctx.principal.user_id)),
    ))
}

fn str_field<'v>(v: &'v Value, key: &str) -> ApiResult<Option<&'v str>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!(
            "The field '{key}' must be a string"
        ))),
    }
}

fn bool_field(v: &Value, key: &str) -> ApiResult<Option<bool>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad_request(format!(
            "The field '{key}' must be true or false"
        ))),
    }
}

/// The SHA-256 of the session token this request came with, if any.
fn presented_session(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE).map(|t| ferry_crypto::hash_api_key(&t))
}

async fn update_user(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<Value>> {
    let own = is_self(&ctx, &id);
    require_self_or(&st, &ctx, &id, Permission::UserEdit).await?;
    let old = load_user(&st, &id).await?;
    let mut user = old.clone();
    if let Some(name) = str_field(&body, "Username")? {
        let (name, key) = check_username(name)?;
        user.username = name;
        user.username_key = key;
    }
    if let Some(d) = str_field(&body, "DisplayName")? {
        user.display_name = check_display_name(d)?;
    }
    if let Some(e) = str_field(&body, "EmailAddress")? {
        user.email = check_email(e)?;
    }
    if bool_field(&body, "IsService")?.is_some_and(|s| s != (old.is_service != 0)) {
        return Err(ApiError::bad_request(
            "IsService cannot be changed after the user is created",
        ));
    }
    if let Some(active) = bool_field(&body, "IsActive")? {
        if own && !active {
            return Err(ApiError::bad_request(
                "You cannot disable your own account; ask another administrator",
            ));
        }
        user.is_active = i64::from(active);
    }
    let new_password = str_field(&body, "Password")?.filter(|p| !p.is_empty());
    if let Some(p) = new_password {
        if old.is_service != 0 {
            return Err(ApiError::bad_request(
                "A service account has no password: it signs in with API keys only",
            ));
        }
        check_password(p)?;
        if own {
            let current = str_field(&body, "CurrentPassword")?
                .or(str_field(&body, "OldPassword")?)
                .unwrap_or("");
            let account = old.username_key.clone();
            let addr = ctx.ip.clone();
            if let Verdict::Throttled { retry_after_secs } =
                throttle::check(&account, &addr, now_ms())
            {
                return Err(too_many(retry_after_secs));
            }
            if current.is_empty()
                || !verify_password(current.to_string(), old.password_hash.clone()).await?
            {
                throttle::record_failure(&account, &addr, now_ms());
                return Err(ApiError::bad_request(
                    "To change your own password, give your current password in CurrentPassword",
                ));
            }
        }
        user.password_hash = Some(hash_password(p.to_string()).await?);
    }
    let mut tx = st.db.begin().await?;
    tx.update_user(&user)
        .await
        .map_err(|e| username_taken(e, &user.username))?;
    let mut ended = 0;
    if user.is_active == 0 {
        ended = tx.delete_sessions_of(&id, None).await?;
    } else if new_password.is_some() {
        // A password change ends the user's other sessions (and all of them when an
        // administrator changes someone else's password).
        let keep = if own {
            presented_session(&headers)
        } else {
            None
        };
        ended = tx.delete_sessions_of(&id, keep.as_deref()).await?;
    }
    let mut changes = Vec::new();
    if user.username != old.username {
        changes.push(format!("user name {} → {}", old.username, user.username));
    }
    if user.display_name != old.display_name {
        changes.push("display name".to_string());
    }
    if user.email != old.email {
        changes.push("email address".to_string());
    }
    if user.is_active != old.is_active {
        changes.push(if user.is_active != 0 {
            "enabled".to_string()
        } else {
            "disabled".to_string()
        });
    }
    if new_password.is_some() {
        changes.push("password changed".to_string());
    }
    crate::api::audit(
        &mut tx,
        &ctx,
        "",
        "Modified",
        format!(
            "User {} was modified ({}{})",
            user.username,
            if changes.is_empty() {
                "no change".to_string()
            } else {
                changes.join(", ")
            },
            if ended > 0 {
                format!("; {ended} session(s) ended")
            } else {
                String::new()
            }
        ),
        &[&user.id],
        json!({"Before": user_json(&old, ""), "After": user_json(&user, "")}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(user_json(&user, &ctx.principal.user_id)))
}

async fn delete_user(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    crate::authz::require_system(&st, &ctx, Permission::UserEdit).await?;
    if is_self(&ctx, &id) {
        return Err(ApiError::bad_request(
            "You cannot delete your own account; ask another administrator",
        ));
    }
    let user = load_user(&st, &id).await?;
    let mut tx = st.db.begin().await?;
    if !tx.delete_user(&id).await? {
        return Err(user_not_found(&id));
    }
    crate::api::audit(
        &mut tx,
        &ctx,
        "",
        "Deleted",
        format!(
            "User {} was deleted with its API keys and sessions",
            user.username
        ),
        &[&user.id],
        json!({"Document": user_json(&user, "")}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

// ---- sign-in ---------------------------------------------------------------------------------

/// The client's address: the socket's, or behind a trusted proxy (`--trusted-proxy`) the
/// right-most untrusted `X-Forwarded-For` hop (`crate::auth::client_ip`), so clients behind a
/// proxy do not share one throttle.
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<crate::auth::ClientIp>() {
            return Ok(ClientAddr(c.0.clone()));
        }
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
        ))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct LoginCommand {
    username: String,
    password: String,
    remember_me: bool,
}

fn too_many(retry_after_secs: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("Too many failed sign-in attempts. Try again in {retry_after_secs} seconds."),
    )
}

fn with_retry_after(e: ApiError, retry_after_secs: u64) -> Response {
    let mut r = e.into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Whether cookies get `Secure`: the public URL is https, or the request came over https
/// (directly or, as a proxy says, through it; `Secure` only ever narrows where a cookie goes).
fn secure_cookies(st: &AppState, uri: &Uri, headers: &HeaderMap) -> bool {
    st.config
        .public_url
        .to_ascii_lowercase()
        .starts_with("https://")
        || uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(
    r: &mut Response,
    name: &str,
    value: &str,
    http_only: bool,
    secure: bool,
    max_age: Option<i64>,
) {
    let mut c = format!("{name}={value}; Path=/; SameSite=Lax");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

async fn login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    uri: Uri,
    headers: HeaderMap,
    Body(cmd): Body<LoginCommand>,
) -> Response {
    match login_inner(&st, &addr, &uri, &headers, cmd).await {
        Ok(r) => r,
        Err((e, Some(secs))) => with_retry_after(e, secs),
        Err((e, None)) => e.into_response(),
    }
}

async fn login_inner(
    st: &AppState,
    addr: &str,
    uri: &Uri,
    headers: &HeaderMap,
    cmd: LoginCommand,
) -> Result<Response, (ApiError, Option<u64>)> {
    let plain = |e: ApiError| (e, None);
    let now = now_ms();
    let account = throttle::account_key(&cmd.username);
    if let Verdict::Throttled { retry_after_secs } = throttle::check(&account, addr, now) {
        return Err((too_many(retry_after_secs), Some(retry_after_secs)));
    }
    let user = if account.is_empty() {
        None
    } else {
        st.db
            .find_user_by_key(&account)
            .await
            .map_err(|e| plain(e.into()))?
    };
    let hash = user
        .as_ref()
        .filter(|u| u.is_active != 0 && u.is_service == 0)
        .and_then(|u| u.password_hash.clone());
    let ok = verify_password(cmd.password, hash).await.map_err(plain)?;
    let Some(user) = user.filter(|_| ok) else {
        throttle::record_failure(&account, addr, now_ms());
        return Err(plain(ApiError::new(
            StatusCode::UNAUTHORIZED,
            INVALID_LOGIN,
        )));
    };
    throttle::record_success(&account);

    // Always a new token: one presented before sign-in (planted or old) is ended, never kept.
    let token = random_token();
    let csrf = random_token();
    let lifetime = if cmd.remember_me {
        REMEMBERED_SESSION_MS
    } else {
        SESSION_MS
    };
    let session = SessionRow {
        id: format!("Sessions-{}", uuid::Uuid::new_v4().simple()),
        token_hash: ferry_crypto::hash_api_key(&token),
        csrf_hash: ferry_crypto::hash_api_key(&csrf),
        user_id: user.id.clone(),
        created_at: now,
        expires_at: now + lifetime,
    };
    let write = async {
        let mut tx = st.db.begin().await?;
        if let Some(old) = presented_session(headers) {
            tx.delete_session_by_hash(&old).await?;
        }
        tx.insert_session(&session).await?;
        tx.commit().await
    };
    write.await.map_err(|e| plain(e.into()))?;
    if let Err(e) = st.db.purge_expired_sessions(now).await {
        tracing::warn!(error = %e, "could not purge expired sessions");
    }
    let secure = secure_cookies(st, uri, headers);
    let max_age = cmd.remember_me.then_some(lifetime / 1000);
    let mut r = Json(user_json(&user, &user.id)).into_response();
    set_cookie(&mut r, SESSION_COOKIE, &token, true, secure, max_age);
    set_cookie(&mut r, CSRF_COOKIE, &csrf, false, secure, max_age);
    Ok(r)
}

async fn logout(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(hash) = presented_session(&headers) {
        if let Some((session, _)) = st.db.find_session(&hash).await? {
            // Ending a live session is a state change like any other: it needs the CSRF token.
            let presented = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .unwrap_or("");
            if changes_state(&method)
                && (presented.is_empty()
                    || ferry_crypto::hash_api_key(presented) != session.csrf_hash)
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "The request was refused because its CSRF token is missing or wrong. Send the value of the Octopus-Csrf-Token cookie in the X-Octopus-Csrf-Token header",
                ));
            }
            let mut tx = st.db.begin().await?;
            tx.delete_session_by_hash(&hash).await?;
            tx.commit().await?;
        }
    }
    let secure = secure_cookies(&st, &uri, &headers);
    let mut r = Json(json!({})).into_response();
    set_cookie(&mut r, SESSION_COOKIE, "", true, secure, Some(0));
    set_cookie(&mut r, CSRF_COOKIE, "", false, secure, Some(0));
    Ok(r)
}

// ---- API keys --------------------------------------------------------------------------------

async fn list_keys(
    State(st): State<AppState>,
    ctx: Ctx,
    uri: Uri,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_self_or(&st, &ctx, &id, Permission::UserEdit).await?;
    load_user(&st, &id).await?;
    let keys = st.db.list_api_keys(&id).await?;
    let q = Params::parse(uri.query());
    let total = i64::try_from(keys.len()).unwrap_or(i64::MAX);
    let (skip, take) = (q.skip(), q.take());
    let items = keys
        .iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(usize::try_from(take).unwrap_or(usize::MAX))
        .map(key_json)
        .collect();
    let base = format!("/api/users/{id}/apikeys");
    let template = format!("{base}{{?skip,take}}");
    Ok(Json(page(
        "ApiKey", items, total, skip, take, &base, &template,
    )))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NewKey {
    purpose: Option<String>,
    expires: Option<String>,
}

/// Parses `Expires`: RFC 3339, or a date (`2026-12-31`, midnight UTC).
fn parse_expiry(s: &str) -> ApiResult<i64> {
    if let Some(ms) = parse_ms(s) {
        return Ok(ms);
    }
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            ApiError::bad_request(
                "The field 'Expires' is not a date: give an ISO 8601 time such as 2026-12-31T00:00:00Z",
            )
        })
}

/// When a new key expires: as asked (or the default), never in the past, never beyond the
/// server's maximum, and never after the credential (key or session) the request came with.
fn key_expiry(
    asked: Option<&str>,
    now: i64,
    max_days: u32,
    credential_expires_at: Option<i64>,
) -> ApiResult<i64> {
    let max = now + i64::from(max_days) * DAY_MS;
    match asked.map(str::trim).filter(|s| !s.is_empty()) {
        None => {
            let default = (now + DEFAULT_KEY_DAYS * DAY_MS).min(max);
            Ok(credential_expires_at.map_or(default, |c| default.min(c)))
        }
        Some(s) => {
            let at = parse_expiry(s)?;
            if at <= now {
                return Err(ApiError::bad_request(
                    "The API key's expiry date must be in the future",
                ));
            }
            if at > max {
                return Err(ApiError::bad_request(format!(
                    "The API key's expiry date must be at most {max_days} days from now (the server's maximum)"
                )));
            }
            if let Some(c) = credential_expires_at.filter(|c| at > *c) {
                return Err(ApiError::bad_request(format!(
                    "An API key cannot outlive the API key or session used to create it, which expires {}",
                    format_ms(c)
                )));
            }
            Ok(at)
        }
    }
}

async fn create_key(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(n): Body<NewKey>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_self_or(&st, &ctx, &id, Permission::UserEdit).await?;
    let user = load_user(&st, &id).await?;
    let purpose = n.purpose.as_deref().map(str::trim).unwrap_or("");
    if purpose.is_empty() {
        return Err(ApiError::bad_request(
            "Please say what the API key is for in Purpose",
        ));
    }
    if purpose.chars().count() > 200 || purpose.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "The Purpose must be at most 200 characters without control characters",
        ));
    }
    let now = now_ms();
    let expires = key_expiry(
        n.expires.as_deref(),
        now,
        st.config.api_key_max_days,
        ctx.principal.credential_expires_at,
    )?;
    let key = ferry_crypto::generate_api_key();
    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq("APIKeys").await?;
    let row = ApiKeyRow {
        id: format!("APIKeys-{seq}"),
        user_id: user.id.clone(),
        key_hash: ferry_crypto::hash_api_key(key.expose()),
        purpose: purpose.to_string(),
        created_at: now,
        expires_at: Some(expires),
    };
    tx.insert_api_key(&row).await?;
    crate::api::audit(
        &mut tx,
        &ctx,
        "",
        "Created",
        format!(
            "API key {} ({}) was created for {}, expiring {}",
            row.id,
            row.purpose,
            user.username,
            format_ms(expires)
        ),
        &[&row.id, &user.id],
        json!({"Document": key_json(&row)}),
    )
    .await?;
    tx.commit().await?;
    let mut body = key_json(&row);
    body["ApiKey"] = json!(key.expose());
    Ok((StatusCode::CREATED, Json(body)))
}

async fn get_key(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_self_or(&st, &ctx, &id, Permission::UserEdit).await?;
    let keys = st.db.list_api_keys(&id).await?;
    keys.iter()
        .find(|k| k.id == key_id)
        .map(|k| Json(key_json(k)))
        .ok_or_else(|| {
            ApiError::not_found(format!("API key '{key_id}' of user '{id}' was not found"))
        })
}

async fn revoke_key(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_self_or(&st, &ctx, &id, Permission::UserEdit).await?;
    let mut tx = st.db.begin().await?;
    let Some(row) = tx.get_api_key(&id, &key_id).await? else {
        return Err(ApiError::not_found(format!(
            "API key '{key_id}' of user '{id}' was not found"
        )));
    };
    tx.delete_api_key(&id, &key_id).await?;
    crate::api::audit(
        &mut tx,
        &ctx,
        "",
        "Deleted",
        format!("API key {} ({}) was revoked", row.id, row.purpose),
        &[&row.id, &id],
        json!({"Document": key_json(&row)}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn key_expiry_rules() {
        // Default: 180 days, bounded by the credential.
        assert_eq!(
            key_expiry(None, NOW, 366, None).ok(),
            Some(NOW + 180 * DAY_MS)
        );
        assert_eq!(
            key_expiry(None, NOW, 366, Some(NOW + DAY_MS)).ok(),
            Some(NOW + DAY_MS)
        );
        assert_eq!(
            key_expiry(None, NOW, 30, None).ok(),
            Some(NOW + 30 * DAY_MS)
        );
        // In the past, beyond the maximum, beyond the credential: refused.
        assert!(key_expiry(Some("2000-01-01T00:00:00Z"), NOW, 366, None).is_err());
        let far = format_ms(NOW + 400 * DAY_MS);
        assert!(key_expiry(Some(&far), NOW, 366, None).is_err());
        let later = format_ms(NOW + 10 * DAY_MS);
        assert!(key_expiry(Some(&later), NOW, 366, Some(NOW + 2 * DAY_MS)).is_err());
        assert_eq!(
            key_expiry(Some(&later), NOW, 366, None).ok(),
            Some(NOW + 10 * DAY_MS)
        );
        assert!(key_expiry(Some("soon"), NOW, 366, None).is_err());
    }
}
