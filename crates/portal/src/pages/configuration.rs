//! Configuration: users and service accounts, teams (members and role grants), the audit log,
//! a space's webhook subscriptions, and the signed-in user's own profile and API keys.
//!
//! These pages are system-wide; their URL carries `?space=Spaces-N` for the layout (the space
//! switcher and the main navigation), `Spaces-1` when absent. Subscriptions belong to a space
//! and live under `/app/{space}/configuration/subscriptions`.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use ferry_server::authz::Target;
use ferry_server::routes::Permission;
use serde_json::{Value, json};

use super::{Chrome, render};
use crate::PortalState;
use crate::ctx::{ApiFailure, FormData, PageError, PageResult, Viewer, see_other};
use crate::view::{arr, b, s, short_time, strs, url_encode};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route("/app/configuration", get(config_home))
        .route("/app/configuration/users", get(users).post(create_user))
        .route("/app/configuration/users/{id}", get(user_page))
        .route("/app/configuration/users/{id}/active", post(set_active))
        .route(
            "/app/configuration/users/{id}/apikeys/{key}/revoke",
            post(revoke_key),
        )
        .route("/app/configuration/teams", get(teams).post(create_team))
        .route("/app/configuration/teams/{id}", get(team_page))
        .route("/app/configuration/teams/{id}/members", post(add_member))
        .route(
            "/app/configuration/teams/{id}/members/remove",
            post(remove_member),
        )
        .route("/app/configuration/teams/{id}/grants", post(add_grant))
        .route(
            "/app/configuration/teams/{id}/grants/{grant}/delete",
            post(delete_grant),
        )
        .route("/app/configuration/audit", get(audit))
        .route("/app/profile", get(profile).post(profile_details))
        .route("/app/profile/password", post(profile_password))
        .route("/app/profile/apikeys", post(profile_create_key))
        .route(
            "/app/{space}/configuration/subscriptions",
            get(subscriptions).post(create_subscription),
        )
        .route(
            "/app/{space}/configuration/subscriptions/{id}",
            get(subscription_page),
        )
        .route(
            "/app/{space}/configuration/subscriptions/{id}/toggle",
            post(toggle_subscription),
        )
        .route(
            "/app/{space}/configuration/subscriptions/{id}/delete",
            post(delete_subscription),
        )
}

const PER_PAGE: i64 = 30;

/// Event categories offered by the audit filter and subscriptions.
const CATEGORIES: &[&str] = &[
    "Created",
    "Modified",
    "Deleted",
    "DeploymentQueued",
    "DeploymentStarted",
    "DeploymentSucceeded",
    "DeploymentFailed",
    "DeploymentResumed",
    "TaskCanceled",
    "TaskFailed",
    "TaskSucceeded",
    "TaskTimedOut",
    "MachineCreated",
    "MachineDeleted",
    "MachineEnabled",
    "MachineDisabled",
    "MachineHealthChanged",
    "MachineAvailableForDeployment",
    "MachineUnavailableForDeployment",
    "ManualInterventionInterruptionRaised",
    "GuidedFailureInterruptionRaised",
];

// ---- helpers shared with the tenants pages ----

/// Previous / next links and "1–30 of 75".
#[derive(Default)]
pub struct Pager {
    pub prev: String,
    pub next: String,
    pub note: String,
}

/// A pager for a list at `base` (which ends in `?` or `&`).
pub fn pager(base: &str, skip: i64, take: i64, total: i64, what: &str) -> Pager {
    Pager {
        prev: if skip > 0 {
            format!("{base}skip={}", (skip - take).max(0))
        } else {
            String::new()
        },
        next: if skip + take < total {
            format!("{base}skip={}", skip + take)
        } else {
            String::new()
        },
        note: if total > take {
            format!(
                "{what} {}–{} of {total}",
                skip + 1,
                (skip + take).min(total)
            )
        } else if total > 0 {
            format!("{total} {}", what.to_lowercase())
        } else {
            String::new()
        },
    }
}

/// The items of a paged answer (`Items`) or of a plain array.
pub fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a.as_slice(),
        _ => arr(v, "Items"),
    }
}

/// A page with another status (a form shown again with its errors).
pub fn with_status(mut r: Response, status: Option<StatusCode>) -> Response {
    if let Some(st) = status {
        *r.status_mut() = st;
    }
    r
}

/// The API's complaints that mention one of `words`, for showing next to a field.
pub fn field_error(f: &ApiFailure, words: &[&str]) -> Option<String> {
    let hits: Vec<&str> = f
        .errors
        .iter()
        .chain(std::iter::once(&f.message))
        .filter(|e| !e.is_empty() && words.iter().any(|w| e.contains(w)))
        .map(String::as_str)
        .collect();
    (!hits.is_empty()).then(|| hits.join(" "))
}

pub fn status_of(f: &ApiFailure) -> StatusCode {
    StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST)
}

use crate::view::{pairs, safe_next};

/// Days since 1970-01-01 as a civil date (proleptic Gregorian), `YYYY-MM-DD`.
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// The moment `days` from now as RFC 3339 (UTC).
fn days_from_now(days: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let at = now + days * 86_400;
    let (day, secs) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        civil_date(day),
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[derive(serde::Deserialize, Default)]
struct CfgQuery {
    #[serde(default)]
    space: String,
    #[serde(default)]
    skip: i64,
    #[serde(default)]
    q: String,
    /// Finds projects by name (team grants).
    #[serde(default)]
    pq: String,
}

/// Projects offered by a select at once (a search finds others): never every project.
const PROJECTS_SHOWN: i64 = 50;

fn space_of(s: &str) -> String {
    if ferry_domain::ids::is_space_id(s) {
        s.to_string()
    } else {
        ferry_domain::DEFAULT_SPACE_ID.to_string()
    }
}

/// A link in the configuration section's tabs.
pub struct Tab {
    pub label: &'static str,
    pub href: String,
    pub active: bool,
}

fn tabs(space: &str, active: &str) -> Vec<Tab> {
    [
        ("Users", format!("/app/configuration/users?space={space}")),
        ("Teams", format!("/app/configuration/teams?space={space}")),
        ("Audit", format!("/app/configuration/audit?space={space}")),
        (
            "Subscriptions",
            format!("/app/{space}/configuration/subscriptions"),
        ),
        ("Profile", format!("/app/profile?space={space}")),
    ]
    .into_iter()
    .map(|(label, href)| Tab {
        label,
        href,
        active: label == active,
    })
    .collect()
}

async fn config_home(Query(q): Query<CfgQuery>) -> Response {
    see_other(&format!(
        "/app/configuration/users?space={}",
        space_of(&q.space)
    ))
}

/// A 403 page that says which permission is needed.
fn forbidden(f: ApiFailure, what: &str) -> PageError {
    if f.status == 403 {
        PageError::Api(ApiFailure {
            status: 403,
            message: format!("You need the {what} permission to see this page."),
            errors: vec![f.text()],
        })
    } else {
        PageError::Api(f)
    }
}

#[derive(Template)]
#[template(path = "configuration/forbidden.html")]
struct ForbiddenPage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    message: String,
    detail: String,
}

/// A 403 inside the configuration section (its tabs stay, so the profile is a click away).
fn forbidden_page(chrome: Chrome, tabs: Vec<Tab>, what: &str, f: &ApiFailure) -> Response {
    let p = ForbiddenPage {
        chrome,
        tabs,
        message: format!("You need the {what} permission to see this page."),
        detail: f.text(),
    };
    with_status(render(&p), Some(StatusCode::FORBIDDEN))
}

// ---- users ----

pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub active: bool,
    pub service: bool,
    pub is_self: bool,
}

fn user_view(u: &Value) -> UserView {
    UserView {
        id: s(u, "Id"),
        username: s(u, "Username"),
        display_name: s(u, "DisplayName"),
        email: s(u, "EmailAddress"),
        active: b(u, "IsActive"),
        service: b(u, "IsService"),
        is_self: b(u, "IsRequestor"),
    }
}

#[derive(Default)]
struct NewUser {
    username: String,
    display_name: String,
    email: String,
    service: bool,
    error: String,
    username_error: String,
    display_error: String,
    email_error: String,
    password_error: String,
}

#[derive(Template)]
#[template(path = "configuration/users.html")]
struct UsersPage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    users: Vec<UserView>,
    q: String,
    pager: Pager,
    can_edit: bool,
    form: NewUser,
    here: String,
}

async fn users(viewer: Viewer, Query(q): Query<CfgQuery>) -> PageResult {
    users_page(viewer, q, NewUser::default(), None).await
}

async fn users_page(
    viewer: Viewer,
    q: CfgQuery,
    form: NewUser,
    status: Option<StatusCode>,
) -> PageResult {
    let space = space_of(&q.space);
    let skip = q.skip.max(0);
    let mut api = format!("/api/users?skip={skip}&take={PER_PAGE}");
    if !q.q.trim().is_empty() {
        api.push_str(&format!("&filter={}", url_encode(q.q.trim())));
    }
    let (chrome, list, can_edit) = tokio::join!(
        viewer.chrome(&space, "configuration", "Users"),
        viewer.get(&api),
        viewer.can(None, Permission::UserEdit, &Target::ANY),
    );
    let list = match list {
        Ok(l) => l,
        Err(f) if f.status == 403 => {
            return Ok(forbidden_page(
                chrome,
                tabs(&space, "Users"),
                "UserView",
                &f,
            ));
        }
        Err(f) => return Err(f.into()),
    };
    let total = list
        .get("TotalResults")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut base = format!("/app/configuration/users?space={space}&");
    if !q.q.is_empty() {
        base.push_str(&format!("q={}&", url_encode(&q.q)));
    }
    let p = UsersPage {
        chrome,
        tabs: tabs(&space, "Users"),
        users: items(&list).iter().map(user_view).collect(),
        pager: pager(&base, skip, PER_PAGE, total, "Users"),
        here: format!("/app/configuration/users?space={space}&skip={skip}"),
        q: q.q,
        can_edit,
        form,
    };
    Ok(with_status(render(&p), status))
}

async fn create_user(
    viewer: Viewer,
    Query(q): Query<CfgQuery>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let space = space_of(&q.space);
    let service = form.checked("user-service");
    let mut body = json!({
        "Username": form.get("user-username"),
        "DisplayName": form.get("user-display-name"),
        "EmailAddress": form.get("user-email"),
        "IsService": service,
        "IsActive": true,
    });
    let password = form.raw("user-password");
    if !password.is_empty() {
        body["Password"] = json!(password);
    }
    match viewer
        .send(Method::POST, "/api/users", &form.csrf(), Some(&body))
        .await
    {
        Ok(u) => Ok(see_other(&format!(
            "/app/configuration/users/{}?space={space}",
            s(&u, "Id")
        ))),
        Err(f) => {
            let nf = NewUser {
                username: form.get("user-username"),
                display_name: form.get("user-display-name"),
                email: form.get("user-email"),
                service,
                error: f.text(),
                username_error: field_error(&f, &["Username", "user name"]).unwrap_or_default(),
                display_error: field_error(&f, &["Display name"]).unwrap_or_default(),
                email_error: field_error(&f, &["EmailAddress"]).unwrap_or_default(),
                password_error: field_error(&f, &["assword"]).unwrap_or_default(),
            };
            let st = Some(status_of(&f));
            users_page(viewer, q, nf, st).await
        }
    }
}

pub struct KeyView {
    pub id: String,
    pub purpose: String,
    pub created: String,
    pub expires: String,
}

fn key_views(v: &Value) -> Vec<KeyView> {
    items(v)
        .iter()
        .map(|k| KeyView {
            id: s(k, "Id"),
            purpose: s(k, "Purpose"),
            created: short_time(&s(k, "Created")),
            expires: {
                let e = s(k, "Expires");
                if e.is_empty() {
                    "never".to_string()
                } else {
                    short_time(&e)
                }
            },
        })
        .collect()
}

#[derive(Template)]
#[template(path = "configuration/user.html")]
struct UserPage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    user: UserView,
    teams: Vec<(String, String)>,
    keys: Option<Vec<KeyView>>,
    can_edit: bool,
    here: String,
}

async fn user_page(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<CfgQuery>,
) -> PageResult {
    let space = space_of(&q.space);
    let uid = url_encode(&id);
    let user_path = format!("/api/users/{uid}");
    let teams_path = format!("/api/users/{uid}/teams");
    let (chrome, user, teams, can_edit) = tokio::join!(
        viewer.chrome(&space, "configuration", "User"),
        viewer.get(&user_path),
        viewer.get(&teams_path),
        viewer.can(None, Permission::UserEdit, &Target::ANY),
    );
    let user = user.map_err(|f| forbidden(f, "UserView"))?;
    let keys = if can_edit || viewer.principal.user_id == id {
        viewer
            .get(&format!("/api/users/{uid}/apikeys?take=100"))
            .await
            .ok()
            .map(|k| key_views(&k))
    } else {
        None
    };
    let mut chrome = chrome;
    chrome.title = format!("User {}", s(&user, "Username"));
    let p = UserPage {
        chrome,
        tabs: tabs(&space, "Users"),
        user: user_view(&user),
        teams: teams.map(|t| pairs(&t)).unwrap_or_default(),
        keys,
        can_edit,
        here: format!("/app/configuration/users/{uid}?space={space}"),
    };
    Ok(render(&p))
}

async fn set_active(
    viewer: Viewer,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let active = form.get("active") == "true";
    viewer
        .send(
            Method::PUT,
            &format!("/api/users/{}", url_encode(&id)),
            &form.csrf(),
            Some(&json!({"IsActive": active})),
        )
        .await?;
    Ok(see_other(&safe_next(
        &form.get("next"),
        "/app/configuration/users",
    )))
}

async fn revoke_key(
    viewer: Viewer,
    Path((id, key)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    viewer
        .send(
            Method::DELETE,
            &format!(
                "/api/users/{}/apikeys/{}",
                url_encode(&id),
                url_encode(&key)
            ),
            &form.csrf(),
            None,
        )
        .await?;
    Ok(see_other(&safe_next(&form.get("next"), "/app/profile")))
}

// ---- teams ----

pub struct TeamRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub scope: String,
    pub members: usize,
}

#[derive(Default)]
struct NewTeam {
    name: String,
    description: String,
    error: String,
    name_error: String,
}

#[derive(Template)]
#[template(path = "configuration/teams.html")]
struct TeamsPage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    teams: Vec<TeamRow>,
    q: String,
    pager: Pager,
    can_create_system: bool,
    can_create_space: bool,
    form: NewTeam,
}

async fn teams(viewer: Viewer, Query(q): Query<CfgQuery>) -> PageResult {
    teams_page(viewer, q, NewTeam::default(), None).await
}

async fn teams_page(
    viewer: Viewer,
    q: CfgQuery,
    form: NewTeam,
    status: Option<StatusCode>,
) -> PageResult {
    let space = space_of(&q.space);
    let skip = q.skip.max(0);
    let mut api = format!("/api/teams?skip={skip}&take={PER_PAGE}");
    if !q.q.trim().is_empty() {
        api.push_str(&format!("&partialName={}", url_encode(q.q.trim())));
    }
    let (chrome, list, checker) = tokio::join!(
        viewer.chrome(&space, "configuration", "Teams"),
        viewer.get(&api),
        viewer.checker(),
    );
    let list = match list {
        Ok(l) => l,
        Err(f) if f.status == 403 => {
            return Ok(forbidden_page(
                chrome,
                tabs(&space, "Teams"),
                "TeamView",
                &f,
            ));
        }
        Err(f) => return Err(f.into()),
    };
    let (can_create_system, can_create_space) = match &checker {
        Ok(c) => (
            c.can(None, Permission::UserEdit, &Target::ANY),
            c.can(Some(&space), Permission::TeamCreate, &Target::ANY),
        ),
        Err(_) => (false, false),
    };
    let space_names: HashMap<String, String> = chrome.spaces.iter().cloned().collect();
    let total = list
        .get("TotalResults")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let rows = items(&list)
        .iter()
        .map(|t| {
            let ts = s(t, "SpaceId");
            TeamRow {
                id: s(t, "Id"),
                name: s(t, "Name"),
                description: s(t, "Description"),
                scope: if ts.is_empty() {
                    "All spaces".to_string()
                } else {
                    space_names.get(&ts).cloned().unwrap_or(ts)
                },
                members: arr(t, "MemberUserIds").len(),
            }
        })
        .collect();
    let mut base = format!("/app/configuration/teams?space={space}&");
    if !q.q.is_empty() {
        base.push_str(&format!("q={}&", url_encode(&q.q)));
    }
    let p = TeamsPage {
        chrome,
        tabs: tabs(&space, "Teams"),
        teams: rows,
        pager: pager(&base, skip, PER_PAGE, total, "Teams"),
        q: q.q,
        can_create_system,
        can_create_space,
        form,
    };
    Ok(with_status(render(&p), status))
}

async fn create_team(
    viewer: Viewer,
    Query(q): Query<CfgQuery>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let space = space_of(&q.space);
    let team_space = form.get("team-space");
    let body = json!({
        "Name": form.get("team-name"),
        "Description": form.get("team-description"),
        "SpaceId": if team_space.is_empty() { Value::Null } else { json!(team_space) },
        "MemberUserIds": [],
    });
    match viewer
        .send(Method::POST, "/api/teams", &form.csrf(), Some(&body))
        .await
    {
        Ok(t) => Ok(see_other(&format!(
            "/app/configuration/teams/{}?space={space}",
            s(&t, "Id")
        ))),
        Err(f) => {
            let nf = NewTeam {
                name: form.get("team-name"),
                description: form.get("team-description"),
                error: f.text(),
                name_error: field_error(&f, &["Name", "name"]).unwrap_or_default(),
            };
            let st = Some(status_of(&f));
            teams_page(viewer, q, nf, st).await
        }
    }
}

pub struct GrantView {
    pub id: String,
    pub role: String,
    pub space: String,
    pub scopes: Vec<String>,
}

#[derive(Default)]
struct TeamErrors {
    error: String,
    member_error: String,
    grant_error: String,
}

#[derive(Template)]
#[template(path = "configuration/team.html")]
struct TeamPage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    id: String,
    name: String,
    description: String,
    team_space: String,
    team_space_name: String,
    members: Vec<(String, String)>,
    candidates: Vec<(String, String)>,
    grants: Vec<GrantView>,
    roles: Vec<(String, String)>,
    environments: Vec<(String, String)>,
    projects: Vec<(String, String)>,
    more_projects: bool,
    project_query: String,
    tenants: Vec<(String, String)>,
    scope_space: String,
    scope_space_name: String,
    can_change_members: bool,
    everyone: bool,
    can_edit: bool,
    err: TeamErrors,
}

async fn team_page(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<CfgQuery>,
) -> PageResult {
    show_team(viewer, id, q, TeamErrors::default(), None).await
}

async fn show_team(
    viewer: Viewer,
    id: String,
    q: CfgQuery,
    err: TeamErrors,
    status: Option<StatusCode>,
) -> PageResult {
    let space = space_of(&q.space);
    let tid = url_encode(&id);
    let team = viewer
        .get(&format!("/api/teams/{tid}"))
        .await
        .map_err(|f| forbidden(f, "TeamView"))?;
    let team_space = s(&team, "SpaceId");
    // Scopes are chosen in the team's space, or (a system team) the space being looked at.
    let scope_space = if team_space.is_empty() {
        space.clone()
    } else {
        team_space.clone()
    };
    let grants_path = format!("/api/teams/{tid}/scopeduserroles?take=200");
    let envs_path = format!("/api/{scope_space}/environments/all");
    let mut projects_path = format!("/api/{scope_space}/projects?take={PROJECTS_SHOWN}");
    if !q.pq.trim().is_empty() {
        projects_path.push_str(&format!("&partialName={}", url_encode(q.pq.trim())));
    }
    let tenants_path = format!("/api/{scope_space}/tenants?take=200");
    let (chrome, grants, roles, users, envs, projects, tenants, checker) = tokio::join!(
        viewer.chrome(
            &space,
            "configuration",
            format!("Team {}", s(&team, "Name"))
        ),
        viewer.get(&grants_path),
        viewer.get("/api/userroles?take=500"),
        viewer.get("/api/users?take=500"),
        viewer.get(&envs_path),
        viewer.get(&projects_path),
        viewer.get(&tenants_path),
        viewer.checker(),
    );
    let grants = grants.unwrap_or(Value::Null);
    // The names of the projects the grants name (they may not be on the page of projects).
    let mut granted: Vec<String> = items(&grants)
        .iter()
        .flat_map(|g| strs(g, "ProjectIds"))
        .collect();
    granted.sort();
    granted.dedup();
    let granted_projects = if granted.is_empty() {
        Vec::new()
    } else {
        let path = format!(
            "/api/{scope_space}/projects?ids={}",
            granted
                .iter()
                .map(|g| url_encode(g))
                .collect::<Vec<_>>()
                .join(",")
        );
        pairs(&viewer.get(&path).await.unwrap_or(Value::Null))
    };
    let projects = projects.unwrap_or(Value::Null);
    let more_projects = projects
        .get("TotalResults")
        .and_then(Value::as_i64)
        .is_some_and(|n| n > PROJECTS_SHOWN);
    let roles = pairs(&roles.unwrap_or(Value::Null));
    let users: Vec<(String, String)> = items(&users.unwrap_or(Value::Null))
        .iter()
        .map(|u| {
            (
                s(u, "Id"),
                format!("{} ({})", s(u, "DisplayName"), s(u, "Username")),
            )
        })
        .collect();
    let environments = pairs(&envs.unwrap_or(Value::Null));
    let projects = pairs(&projects);
    let tenants = pairs(&tenants.unwrap_or(Value::Null));
    let names: HashMap<&str, &str> = roles
        .iter()
        .chain(environments.iter())
        .chain(projects.iter())
        .chain(granted_projects.iter())
        .chain(tenants.iter())
        .chain(chrome.spaces.iter())
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let name_of = |id: &str| {
        names
            .get(id)
            .map(|n| n.to_string())
            .unwrap_or(id.to_string())
    };
    let user_names: HashMap<&str, &str> = users
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let member_ids = strs(&team, "MemberUserIds");
    let members: Vec<(String, String)> = member_ids
        .iter()
        .map(|m| {
            (
                m.clone(),
                user_names
                    .get(m.as_str())
                    .map(|n| n.to_string())
                    .unwrap_or(m.clone()),
            )
        })
        .collect();
    let candidates = users
        .iter()
        .filter(|(uid, _)| !member_ids.contains(uid))
        .cloned()
        .collect();
    let grant_views = items(&grants)
        .iter()
        .map(|g| {
            let mut scopes = Vec::new();
            for (key, label) in [
                ("EnvironmentIds", "Environments"),
                ("ProjectIds", "Projects"),
                ("ProjectGroupIds", "Project groups"),
                ("TenantIds", "Tenants"),
            ] {
                let ids = strs(g, key);
                if !ids.is_empty() {
                    scopes.push(format!(
                        "{label}: {}",
                        ids.iter()
                            .map(|i| name_of(i))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            let gs = s(g, "SpaceId");
            GrantView {
                id: s(g, "Id"),
                role: name_of(&s(g, "UserRoleId")),
                space: if gs.is_empty() {
                    "System (all spaces)".to_string()
                } else {
                    name_of(&gs)
                },
                scopes,
            }
        })
        .collect();
    let can_edit = match &checker {
        Ok(c) => {
            if team_space.is_empty() {
                c.can(None, Permission::UserEdit, &Target::ANY)
            } else {
                c.can(Some(&team_space), Permission::TeamEdit, &Target::ANY)
            }
        }
        Err(_) => false,
    };
    let p = TeamPage {
        tabs: tabs(&space, "Teams"),
        id: s(&team, "Id"),
        name: s(&team, "Name"),
        description: s(&team, "Description"),
        team_space_name: if team_space.is_empty() {
            String::new()
        } else {
            name_of(&team_space)
        },
        scope_space_name: name_of(&scope_space),
        team_space,
        scope_space,
        members,
        candidates,
        grants: grant_views,
        roles,
        environments,
        projects,
        more_projects,
        project_query: q.pq.clone(),
        tenants,
        can_change_members: b(&team, "CanChangeMembers"),
        everyone: s(&team, "Id") == "teams-everyone",
        can_edit,
        err,
        chrome,
    };
    Ok(with_status(render(&p), status))
}

/// Sets a team's members (read, change, write).
async fn put_members(
    viewer: &Viewer,
    id: &str,
    csrf: &str,
    change: impl FnOnce(&mut Vec<String>),
) -> Result<Value, ApiFailure> {
    let path = format!("/api/teams/{}", url_encode(id));
    let team = viewer.get(&path).await?;
    let mut members = strs(&team, "MemberUserIds");
    change(&mut members);
    let body = json!({
        "Name": s(&team, "Name"),
        "Description": s(&team, "Description"),
        "SpaceId": team.get("SpaceId").cloned().unwrap_or(Value::Null),
        "ExternalSecurityGroups": team.get("ExternalSecurityGroups").cloned().unwrap_or(json!([])),
        "MemberUserIds": members,
    });
    viewer.send(Method::PUT, &path, csrf, Some(&body)).await
}

fn team_href(id: &str, q: &CfgQuery) -> String {
    format!(
        "/app/configuration/teams/{}?space={}",
        url_encode(id),
        space_of(&q.space)
    )
}

async fn add_member(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<CfgQuery>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let user = form.get("team-add-member");
    let result = if user.is_empty() {
        Err(ApiFailure::new(400, "Choose a user to add."))
    } else {
        put_members(&viewer, &id, &form.csrf(), |m| m.push(user)).await
    };
    match result {
        Ok(_) => Ok(see_other(&team_href(&id, &q))),
        Err(f) => {
            let err = TeamErrors {
                error: f.text(),
                member_error: f.text(),
                ..TeamErrors::default()
            };
            let st = Some(status_of(&f));
            show_team(viewer, id, q, err, st).await
        }
    }
}

async fn remove_member(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<CfgQuery>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let user = form.get("user");
    match put_members(&viewer, &id, &form.csrf(), |m| m.retain(|x| *x != user)).await {
        Ok(_) => Ok(see_other(&team_href(&id, &q))),
        Err(f) => {
            let err = TeamErrors {
                error: f.text(),
                member_error: f.text(),
                ..TeamErrors::default()
            };
            let st = Some(status_of(&f));
            show_team(viewer, id, q, err, st).await
        }
    }
}

async fn add_grant(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<CfgQuery>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let grant_space = form.get("grant-space");
    let body = json!({
        "TeamId": id,
        "UserRoleId": form.get("grant-role"),
        "SpaceId": if grant_space.is_empty() { Value::Null } else { json!(grant_space) },
        "EnvironmentIds": form.all("grant-environments"),
        "ProjectIds": form.all("grant-projects"),
        "TenantIds": form.all("grant-tenants"),
        "ProjectGroupIds": [],
    });
    match viewer
        .send(
            Method::POST,
            "/api/scopeduserroles",
            &form.csrf(),
            Some(&body),
        )
        .await
    {
        Ok(_) => Ok(see_other(&format!("{}#grants", team_href(&id, &q)))),
        Err(f) => {
            let err = TeamErrors {
                error: f.text(),
                grant_error: f.text(),
                ..TeamErrors::default()
            };
            let st = Some(status_of(&f));
            show_team(viewer, id, q, err, st).await
        }
    }
}

async fn delete_grant(
    viewer: Viewer,
    Path((id, grant)): Path<(String, String)>,
    Query(q): Query<CfgQuery>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let path = format!("/api/scopeduserroles/{}", url_encode(&grant));
    match viewer.send(Method::DELETE, &path, &form.csrf(), None).await {
        Ok(_) => Ok(see_other(&format!("{}#grants", team_href(&id, &q)))),
        Err(f) => {
            let err = TeamErrors {
                error: f.text(),
                grant_error: f.text(),
                ..TeamErrors::default()
            };
            let st = Some(status_of(&f));
            show_team(viewer, id, q, err, st).await
        }
    }
}

// ---- profile ----

#[derive(Default)]
struct ProfileErrors {
    error: String,
    flash: String,
    display_error: String,
    email_error: String,
    password_error: String,
    key_error: String,
    /// The key just created: shown once, on the answer to the form that created it.
    new_key: String,
    display_name: Option<String>,
    email: Option<String>,
    purpose: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "configuration/profile.html")]
struct ProfilePage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    user: UserView,
    display_name: String,
    email: String,
    keys: Vec<KeyView>,
    err: ProfileErrors,
    here: String,
}

async fn profile(viewer: Viewer, Query(q): Query<CfgQuery>) -> PageResult {
    let flash = match q.q.as_str() {
        "saved" => "Your details were saved.",
        "password" => "Your password was changed.",
        _ => "",
    };
    let err = ProfileErrors {
        flash: flash.to_string(),
        ..ProfileErrors::default()
    };
    show_profile(viewer, q, err, None).await
}

async fn show_profile(
    viewer: Viewer,
    q: CfgQuery,
    err: ProfileErrors,
    status: Option<StatusCode>,
) -> PageResult {
    let space = space_of(&q.space);
    let me = url_encode(&viewer.principal.user_id);
    let keys_path = format!("/api/users/{me}/apikeys?take=100");
    let (chrome, user, keys) = tokio::join!(
        viewer.chrome(&space, "configuration", "Your profile"),
        viewer.get("/api/users/me"),
        viewer.get(&keys_path),
    );
    let user = user?;
    let mut chrome = chrome;
    chrome.flash = err.flash.clone();
    let p = ProfilePage {
        chrome,
        tabs: tabs(&space, "Profile"),
        display_name: err
            .display_name
            .clone()
            .unwrap_or_else(|| s(&user, "DisplayName")),
        email: err
            .email
            .clone()
            .unwrap_or_else(|| s(&user, "EmailAddress")),
        user: user_view(&user),
        keys: keys.map(|k| key_views(&k)).unwrap_or_default(),
        err,
        here: format!("/app/profile?space={space}"),
    };
    let mut r = with_status(render(&p), status);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn profile_details(
    viewer: Viewer,
    Query(q): Query<CfgQuery>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let body = json!({
        "DisplayName": form.get("profile-display-name"),
        "EmailAddress": form.get("profile-email"),
    });
    let path = format!("/api/users/{}", url_encode(&viewer.principal.user_id));
    match viewer
        .send(Method::PUT, &path, &form.csrf(), Some(&body))
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/app/profile?space={}&q=saved",
            space_of(&q.space)
        ))),
        Err(f) => {
            let err = ProfileErrors {
                error: f.text(),
                display_error: field_error(&f, &["Display name"]).unwrap_or_default(),
                email_error: field_error(&f, &["EmailAddress"]).unwrap_or_default(),
                display_name: Some(form.get("profile-display-name")),
                email: Some(form.get("profile-email")),
                ..ProfileErrors::default()
            };
            let st = Some(status_of(&f));
            show_profile(viewer, q, err, st).await
        }
    }
}

async fn profile_password(
    viewer: Viewer,
    Query(q): Query<CfgQuery>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let password = form.raw("profile-password");
    let confirm = form.raw("profile-password-confirm");
    let result = if password.is_empty() {
        Err(ApiFailure::new(400, "Please enter a new password."))
    } else if password != confirm {
        Err(ApiFailure::new(
            400,
            "The new password and its confirmation do not match.",
        ))
    } else {
        let body = json!({
            "Password": password,
            "CurrentPassword": form.raw("profile-current-password"),
        });
        let path = format!("/api/users/{}", url_encode(&viewer.principal.user_id));
        viewer
            .send(Method::PUT, &path, &form.csrf(), Some(&body))
            .await
    };
    match result {
        Ok(_) => Ok(see_other(&format!(
            "/app/profile?space={}&q=password",
            space_of(&q.space)
        ))),
        Err(f) => {
            let err = ProfileErrors {
                error: f.text(),
                password_error: f.text(),
                ..ProfileErrors::default()
            };
            let st = Some(status_of(&f));
            show_profile(viewer, q, err, st).await
        }
    }
}

async fn profile_create_key(
    viewer: Viewer,
    Query(q): Query<CfgQuery>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let purpose = form.get("apikey-purpose");
    let days = form.get("apikey-expires");
    let mut body = json!({"Purpose": purpose});
    let mut bad_days = false;
    if !days.is_empty() {
        match days.parse::<i64>() {
            Ok(d) if (1..=36_500).contains(&d) => body["Expires"] = json!(days_from_now(d)),
            _ => bad_days = true,
        }
    }
    let result = if bad_days {
        Err(ApiFailure::new(
            400,
            "The field 'Expires' must be a number of days (1 or more).",
        ))
    } else {
        let path = format!(
            "/api/users/{}/apikeys",
            url_encode(&viewer.principal.user_id)
        );
        viewer
            .send(Method::POST, &path, &form.csrf(), Some(&body))
            .await
    };
    match result {
        Ok(k) => {
            let err = ProfileErrors {
                new_key: s(&k, "ApiKey"),
                flash: format!("API key for “{}” created.", s(&k, "Purpose")),
                ..ProfileErrors::default()
            };
            show_profile(viewer, q, err, None).await
        }
        Err(f) => {
            let err = ProfileErrors {
                error: f.text(),
                key_error: f.text(),
                purpose,
                expires: days,
                ..ProfileErrors::default()
            };
            let st = Some(status_of(&f));
            show_profile(viewer, q, err, st).await
        }
    }
}

// ---- audit ----

pub struct Change {
    pub path: String,
    pub old: String,
    pub new: String,
}

pub struct EventView {
    pub id: String,
    pub time: String,
    pub user: String,
    pub category: String,
    pub message: String,
    pub changes: Vec<Change>,
    pub details: String,
}

#[derive(serde::Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    space: String,
    #[serde(default)]
    skip: i64,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    category: String,
}

#[derive(Template)]
#[template(path = "configuration/audit.html")]
struct AuditPage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    events: Vec<EventView>,
    pager: Pager,
    q: AuditQuery,
    users: Vec<(String, String)>,
    environments: Vec<(String, String)>,
    categories: Vec<&'static str>,
    filter_error: String,
    filtered: bool,
}

fn show_json(v: &Value) -> String {
    match v {
        Value::Null => "—".to_string(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

/// What an event changed: field diffs (`Changes`, `Diff.Changes`), `Before`/`After` documents
/// compared field by field, or a list of changed names; else its details as JSON.
fn changes_of(details: &Value) -> (Vec<Change>, String) {
    let diff = details
        .get("Diff")
        .and_then(|d| d.get("Changes"))
        .or_else(|| details.get("Changes"))
        .and_then(Value::as_array);
    if let Some(list) = diff {
        let out = list
            .iter()
            .map(|c| Change {
                path: s(c, "Path"),
                old: show_json(c.get("Old").unwrap_or(&Value::Null)),
                new: show_json(c.get("New").unwrap_or(&Value::Null)),
            })
            .collect();
        return (out, String::new());
    }
    if let Some(list) = details.get("Changed").and_then(Value::as_array) {
        let out = list
            .iter()
            .map(|c| Change {
                path: show_json(c),
                old: String::new(),
                new: String::new(),
            })
            .collect();
        return (out, String::new());
    }
    if let (Some(before), Some(after)) = (
        details.get("Before").and_then(Value::as_object),
        details.get("After").and_then(Value::as_object),
    ) {
        let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
        keys.sort();
        keys.dedup();
        let out = keys
            .into_iter()
            .filter(|k| k.as_str() != "Links" && before.get(*k) != after.get(*k))
            .map(|k| Change {
                path: k.clone(),
                old: show_json(before.get(k).unwrap_or(&Value::Null)),
                new: show_json(after.get(k).unwrap_or(&Value::Null)),
            })
            .collect();
        return (out, String::new());
    }
    if details.is_null() || details.as_object().is_some_and(|o| o.is_empty()) {
        return (Vec::new(), String::new());
    }
    (
        Vec::new(),
        serde_json::to_string_pretty(details).unwrap_or_default(),
    )
}

async fn audit(viewer: Viewer, Query(q): Query<AuditQuery>) -> PageResult {
    let space = space_of(&q.space);
    let skip = q.skip.max(0);
    // The project filter takes a name (or an id): the name is looked up, never a list of
    // every project.
    let mut filter_error = String::new();
    let project_id = match q.project.trim() {
        "" => String::new(),
        p if p.starts_with("Projects-") => p.to_string(),
        p => {
            let path = format!("/api/{space}/projects?take=1&name={}", url_encode(p));
            match viewer.get(&path).await.ok().as_ref().map(items) {
                Some([found, ..]) => s(found, "Id"),
                _ => {
                    filter_error = format!("There is no project named “{p}” in this space.");
                    String::new()
                }
            }
        }
    };
    let mut filters = String::new();
    for (api_name, v) in [
        ("from", &q.from),
        ("to", &q.to),
        ("users", &q.user),
        ("projects", &project_id),
        ("environments", &q.environment),
        ("eventCategories", &q.category),
    ] {
        if !v.trim().is_empty() {
            filters.push_str(&format!("&{api_name}={}", url_encode(v.trim())));
        }
    }
    let api = format!("/api/events?skip={skip}&take={PER_PAGE}{filters}");
    let envs_path = format!("/api/{space}/environments/all");
    let (chrome, events, users, envs) = tokio::join!(
        viewer.chrome(&space, "configuration", "Audit"),
        async {
            if filter_error.is_empty() {
                viewer.get(&api).await
            } else {
                Ok(Value::Null)
            }
        },
        viewer.get("/api/users?take=500"),
        viewer.get(&envs_path),
    );
    let events = match events {
        Ok(l) => l,
        Err(f) if f.status == 403 => {
            return Ok(forbidden_page(
                chrome,
                tabs(&space, "Audit"),
                "EventView",
                &f,
            ));
        }
        Err(f) => return Err(f.into()),
    };
    let total = events
        .get("TotalResults")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let views = items(&events)
        .iter()
        .map(|e| {
            let (changes, details) = changes_of(e.get("Details").unwrap_or(&Value::Null));
            EventView {
                id: s(e, "Id"),
                time: short_time(&s(e, "Occurred")),
                user: s(e, "Username"),
                category: s(e, "Category"),
                message: s(e, "Message"),
                changes,
                details,
            }
        })
        .collect();
    let mut base = format!("/app/configuration/audit?space={space}&");
    for (k, v) in [
        ("from", &q.from),
        ("to", &q.to),
        ("user", &q.user),
        ("project", &q.project),
        ("environment", &q.environment),
        ("category", &q.category),
    ] {
        if !v.is_empty() {
            base.push_str(&format!("{k}={}&", url_encode(v)));
        }
    }
    let users = items(&users.unwrap_or(Value::Null))
        .iter()
        .map(|u| (s(u, "Id"), s(u, "Username")))
        .collect();
    let p = AuditPage {
        chrome,
        tabs: tabs(&space, "Audit"),
        events: views,
        pager: pager(&base, skip, PER_PAGE, total, "Events"),
        filtered: !filters.is_empty() || !filter_error.is_empty(),
        filter_error,
        q,
        users,
        environments: pairs(&envs.unwrap_or(Value::Null)),
        categories: CATEGORIES.to_vec(),
    };
    Ok(render(&p))
}

// ---- subscriptions ----

pub struct SubRow {
    pub id: String,
    pub name: String,
    pub url: String,
    pub categories: String,
    pub disabled: bool,
}

fn sub_row(v: &Value) -> SubRow {
    let n = v
        .get("EventNotificationSubscription")
        .unwrap_or(&Value::Null);
    let f = n.get("Filter").unwrap_or(&Value::Null);
    let mut cats = strs(f, "EventCategories");
    cats.extend(strs(f, "EventGroups"));
    SubRow {
        id: s(v, "Id"),
        name: s(v, "Name"),
        url: s(n, "WebhookURI"),
        categories: if cats.is_empty() {
            "All events".to_string()
        } else {
            cats.join(", ")
        },
        disabled: b(v, "IsDisabled"),
    }
}

#[derive(Default)]
struct NewSub {
    name: String,
    url: String,
    categories: Vec<String>,
    header_key: String,
    error: String,
    name_error: String,
    url_error: String,
    header_error: String,
}

#[derive(Template)]
#[template(path = "configuration/subscriptions.html")]
struct SubsPage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    subs: Vec<SubRow>,
    pager: Pager,
    can_create: bool,
    categories: Vec<(&'static str, bool)>,
    form: NewSub,
}

#[derive(serde::Deserialize, Default)]
struct SkipQuery {
    #[serde(default)]
    skip: i64,
}

async fn subscriptions(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<SkipQuery>,
) -> PageResult {
    subs_page(viewer, space, q.skip, NewSub::default(), None).await
}

async fn subs_page(
    viewer: Viewer,
    space: String,
    skip: i64,
    form: NewSub,
    status: Option<StatusCode>,
) -> PageResult {
    let skip = skip.max(0);
    let api = format!("/api/{space}/subscriptions?skip={skip}&take={PER_PAGE}");
    let (chrome, list, can_create) = tokio::join!(
        viewer.chrome(&space, "configuration", "Subscriptions"),
        viewer.get(&api),
        viewer.can(Some(&space), Permission::SubscriptionCreate, &Target::ANY),
    );
    let list = match list {
        Ok(l) => l,
        Err(f) if f.status == 403 => {
            return Ok(forbidden_page(
                chrome,
                tabs(&space, "Subscriptions"),
                "SubscriptionView",
                &f,
            ));
        }
        Err(f) => return Err(f.into()),
    };
    let total = list
        .get("TotalResults")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let categories = CATEGORIES
        .iter()
        .map(|c| (*c, form.categories.iter().any(|x| x == c)))
        .collect();
    let p = SubsPage {
        chrome,
        tabs: tabs(&space, "Subscriptions"),
        subs: items(&list).iter().map(sub_row).collect(),
        pager: pager(
            &format!("/app/{space}/configuration/subscriptions?"),
            skip,
            PER_PAGE,
            total,
            "Subscriptions",
        ),
        can_create,
        categories,
        form,
    };
    Ok(with_status(render(&p), status))
}

async fn create_subscription(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let header_key = form.get("sub-header-key");
    let header_value = form.raw("sub-header-value");
    let body = json!({
        "Name": form.get("sub-name"),
        "Type": "Event",
        "IsDisabled": false,
        "EventNotificationSubscription": {
            "WebhookURI": form.get("sub-url"),
            "Filter": {"EventCategories": form.all("sub-categories")},
            "WebhookHeaderKey": if header_key.is_empty() { Value::Null } else { json!(header_key) },
            "WebhookHeaderValue": if header_value.is_empty() { Value::Null } else { json!({"NewValue": header_value}) },
        },
    });
    let path = format!("/api/{space}/subscriptions");
    match viewer
        .send(Method::POST, &path, &form.csrf(), Some(&body))
        .await
    {
        Ok(v) => Ok(see_other(&format!(
            "/app/{space}/configuration/subscriptions/{}",
            s(&v, "Id")
        ))),
        Err(f) => {
            // The header value is never echoed back into the form.
            let nf = NewSub {
                name: form.get("sub-name"),
                url: form.get("sub-url"),
                categories: form.all("sub-categories"),
                header_key,
                error: f.text(),
                name_error: field_error(&f, &["Name", "name"]).unwrap_or_default(),
                url_error: field_error(&f, &["WebhookURI"]).unwrap_or_default(),
                header_error: field_error(&f, &["WebhookHeader"]).unwrap_or_default(),
            };
            let st = Some(status_of(&f));
            subs_page(viewer, space, 0, nf, st).await
        }
    }
}

pub struct DeliveryView {
    pub time: String,
    pub event_id: String,
    pub attempt: String,
    pub outcome: String,
    pub ok: bool,
    pub status: String,
    pub error: String,
    pub duration: String,
}

#[derive(Template)]
#[template(path = "configuration/subscription.html")]
struct SubPage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    sub: SubRow,
    header_key: String,
    has_header_value: bool,
    deliveries: Vec<DeliveryView>,
    pager: Pager,
    can_edit: bool,
    can_delete: bool,
    error: String,
}

async fn subscription_page(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    Query(q): Query<SkipQuery>,
) -> PageResult {
    show_sub(viewer, space, id, q.skip, String::new(), None).await
}

async fn show_sub(
    viewer: Viewer,
    space: String,
    id: String,
    skip: i64,
    error: String,
    status: Option<StatusCode>,
) -> PageResult {
    let skip = skip.max(0);
    let sid = url_encode(&id);
    let sub_path = format!("/api/{space}/subscriptions/{sid}");
    let del_path = format!("{sub_path}/deliveries?skip={skip}&take={PER_PAGE}");
    let (chrome, sub, deliveries, checker) = tokio::join!(
        viewer.chrome(&space, "configuration", "Subscription"),
        viewer.get(&sub_path),
        viewer.get(&del_path),
        viewer.checker(),
    );
    let sub = sub.map_err(|f| forbidden(f, "SubscriptionView"))?;
    let deliveries = deliveries.unwrap_or(Value::Null);
    let total = deliveries
        .get("TotalResults")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let n = sub
        .get("EventNotificationSubscription")
        .unwrap_or(&Value::Null);
    let (can_edit, can_delete) = match &checker {
        Ok(c) => (
            c.can(Some(&space), Permission::SubscriptionEdit, &Target::ANY),
            c.can(Some(&space), Permission::SubscriptionDelete, &Target::ANY),
        ),
        Err(_) => (false, false),
    };
    let mut chrome = chrome;
    chrome.title = format!("Subscription {}", s(&sub, "Name"));
    let p = SubPage {
        chrome,
        tabs: tabs(&space, "Subscriptions"),
        header_key: s(n, "WebhookHeaderKey"),
        has_header_value: n
            .get("WebhookHeaderValue")
            .map(|h| b(h, "HasValue"))
            .unwrap_or(false),
        deliveries: items(&deliveries)
            .iter()
            .map(|d| {
                let outcome = s(d, "Outcome");
                DeliveryView {
                    time: short_time(&s(d, "Time")),
                    event_id: s(d, "EventId"),
                    attempt: s(d, "Attempt"),
                    ok: outcome == "Delivered",
                    outcome,
                    status: s(d, "StatusCode"),
                    error: s(d, "Error"),
                    duration: format!("{} ms", s(d, "DurationMs")),
                }
            })
            .collect(),
        pager: pager(
            &format!("/app/{space}/configuration/subscriptions/{sid}?"),
            skip,
            PER_PAGE,
            total,
            "Deliveries",
        ),
        sub: sub_row(&sub),
        can_edit,
        can_delete,
        error,
    };
    Ok(with_status(render(&p), status))
}

async fn toggle_subscription(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let path = format!("/api/{space}/subscriptions/{}", url_encode(&id));
    let mut sub = viewer.get(&path).await?;
    let disabled = b(&sub, "IsDisabled");
    sub["IsDisabled"] = json!(!disabled);
    // The header value is kept as stored (the API shows only whether one is set).
    if let Some(n) = sub
        .get_mut("EventNotificationSubscription")
        .and_then(Value::as_object_mut)
    {
        n.insert("WebhookHeaderValue".into(), Value::Null);
    }
    match viewer
        .send(Method::PUT, &path, &form.csrf(), Some(&sub))
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/configuration/subscriptions/{}",
            url_encode(&id)
        ))),
        Err(f) => {
            let st = Some(status_of(&f));
            show_sub(viewer, space, id, 0, f.text(), st).await
        }
    }
}

async fn delete_subscription(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let path = format!("/api/{space}/subscriptions/{}", url_encode(&id));
    match viewer.send(Method::DELETE, &path, &form.csrf(), None).await {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/configuration/subscriptions"
        ))),
        Err(f) => {
            let st = Some(status_of(&f));
            show_sub(viewer, space, id, 0, f.text(), st).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_pagers() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_786), "2026-11-29");
        assert!(days_from_now(1).ends_with('Z'));
        let p = pager("/x?", 30, 30, 75, "Users");
        assert_eq!(p.prev, "/x?skip=0");
        assert_eq!(p.next, "/x?skip=60");
        assert_eq!(p.note, "Users 31–60 of 75");
    }

    #[test]
    fn changes_from_before_and_after() {
        let (c, _) =
            changes_of(&json!({"Before": {"Name": "a", "X": 1}, "After": {"Name": "b", "X": 1}}));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "Name");
        assert_eq!(c[0].old, "a");
        assert_eq!(c[0].new, "b");
    }
}
