//! Infrastructure: environments (ordered, created and edited here), deployment targets (health,
//! roles, environments; a page per target with a health check; registering agents and SSH
//! targets), workers, worker pools and machine policies.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_server::authz::{Checker, Target};
use ferry_server::routes::Permission;
use serde_json::{Value, json};

use super::{Chrome, page, render};
use crate::PortalState;
use crate::ctx::{ApiFailure, FormData, PageResult, Viewer, see_other};
use crate::view::{arr, b, n, s, strs, url_encode};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route(
        "/app/{space}/infrastructure/environments",
        get(environments).post(create_environment),
    )
    .route(
        "/app/{space}/infrastructure/environments/{id}",
        get(environment).post(edit_environment),
    )
    .route(
        "/app/{space}/infrastructure/environments/{id}/move",
        post(move_environment),
    )
    .route(
        "/app/{space}/infrastructure/environments/{id}/delete",
        post(delete_environment),
    )
    .route("/app/{space}/infrastructure/targets", get(targets))
    .route("/app/{space}/infrastructure/targets/new", get(new_target))
    .route(
        "/app/{space}/infrastructure/targets/new/ssh",
        post(create_ssh_target),
    )
    .route(
        "/app/{space}/infrastructure/targets/new/listening",
        post(create_listening_target),
    )
    .route("/app/{space}/infrastructure/targets/{id}", get(target))
    .route(
        "/app/{space}/infrastructure/targets/{id}/health",
        post(check_health),
    )
    .route(
        "/app/{space}/infrastructure/targets/{id}/delete",
        post(delete_target),
    )
    .route("/app/{space}/infrastructure/workers", get(workers))
    .route(
        "/app/{space}/infrastructure/workerpools",
        get(worker_pools).post(create_worker_pool),
    )
    .route(
        "/app/{space}/infrastructure/machinepolicies",
        get(machine_policies),
    )
    .route(
        "/app/{space}/infrastructure/machinepolicies/{id}",
        get(machine_policy).post(edit_machine_policy),
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with the library pages.

/// Previous/next links and "21–40 of 57".
#[derive(Default)]
pub(crate) struct Pager {
    pub prev: String,
    pub next: String,
    pub note: String,
}

/// The pager for a page of `take` items from `skip` of `total`; `base` is the portal URL with
/// its filters (with or without a query).
pub(crate) fn pager(base: &str, skip: i64, take: i64, total: i64) -> Pager {
    let sep = if base.contains('?') { '&' } else { '?' };
    let prev = if skip > 0 {
        format!("{base}{sep}skip={}", (skip - take).max(0))
    } else {
        String::new()
    };
    let next = if skip + take < total {
        format!("{base}{sep}skip={}", skip + take)
    } else {
        String::new()
    };
    let note = if total > take {
        format!("{}–{} of {total}", skip + 1, (skip + take).min(total))
    } else {
        String::new()
    };
    Pager { prev, next, note }
}

/// `(Id, Name)` of each item of an array answer (or of a page's `Items`).
pub(crate) fn pairs(v: &Result<Value, ApiFailure>) -> Vec<(String, String)> {
    let items: &[Value] = match v {
        Ok(Value::Array(a)) => a,
        Ok(v) => arr(v, "Items"),
        Err(_) => &[],
    };
    items.iter().map(|x| (s(x, "Id"), s(x, "Name"))).collect()
}

/// The name of `id` among `pairs` (the id itself when unknown).
pub(crate) fn name_of(pairs: &[(String, String)], id: &str) -> String {
    pairs
        .iter()
        .find(|(i, _)| i == id)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| id.to_string())
}

/// The API's errors about one field: those starting with or naming one of `keys` (any case).
pub(crate) fn field_error(f: &ApiFailure, keys: &[&str]) -> String {
    let all: Vec<&String> = f.errors.iter().chain(std::iter::once(&f.message)).collect();
    let hits: Vec<&str> = all
        .iter()
        .filter(|e| {
            let l = e.to_lowercase();
            keys.iter().any(|k| {
                let k = k.to_lowercase();
                l.starts_with(&k)
                    || l.contains(&format!("'{k}'"))
                    || l.contains(&format!(" {k} "))
                    || l.ends_with(&format!(" {k}"))
            })
        })
        .map(|e| e.as_str())
        .filter(|e| !e.is_empty())
        .collect();
    hits.join(" ")
}

/// The status a re-rendered form answers with.
pub(crate) fn status_of(f: &ApiFailure) -> StatusCode {
    match f.status {
        403 | 404 | 409 => StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A rendered page with a status.
pub(crate) fn with_status(status: StatusCode, r: Response) -> Response {
    (status, r).into_response()
}

/// Whether the viewer may `p` anywhere in `space`.
pub(crate) fn may(c: &Option<Checker>, space: &str, p: Permission) -> bool {
    c.as_ref()
        .is_some_and(|c| c.can(Some(space), p, &Target::ANY))
}

/// A comma- or newline-separated list.
pub(crate) fn split_list(v: &str) -> Vec<String> {
    v.split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub skip: i64,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub health: String,
    #[serde(default)]
    pub roles: String,
    #[serde(default)]
    pub mode: String,
}

/// A machine's health as an icon, a word and a class (never colour alone).
pub struct Health {
    pub class: &'static str,
    pub icon: &'static str,
    pub label: String,
}

fn health_of(m: &Value) -> Health {
    if b(m, "IsDisabled") {
        return Health {
            class: "st-canceled",
            icon: "⊘",
            label: "Disabled".into(),
        };
    }
    let (class, icon, label) = match s(m, "HealthStatus").as_str() {
        "Healthy" => ("st-success", "✓", "Healthy"),
        "HasWarnings" => ("st-warning", "⚠", "Healthy with warnings"),
        "Unhealthy" => ("st-failed", "✗", "Unhealthy"),
        "Unavailable" => ("st-failed", "⊗", "Unavailable"),
        _ => ("st-none", "?", "Unknown"),
    };
    Health {
        class,
        icon,
        label: label.into(),
    }
}

fn comm_style(m: &Value) -> String {
    let ep = m.get("Endpoint").cloned().unwrap_or(Value::Null);
    match s(&ep, "CommunicationStyle").as_str() {
        "TentaclePassive" => "Listening agent".into(),
        "TentacleActive" => "Polling agent".into(),
        "Ssh" => "SSH".into(),
        "" => "—".into(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Environments

pub struct EnvRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub guided: bool,
    pub first: bool,
    pub last: bool,
}

#[derive(Template)]
#[template(path = "infrastructure/environments.html")]
struct EnvironmentsPage {
    chrome: Chrome,
    tab: &'static str,
    envs: Vec<EnvRow>,
    pager: Pager,
    can_create: bool,
    can_edit: bool,
    can_delete: bool,
    error: String,
    name_error: String,
    f_name: String,
    f_description: String,
    f_guided: bool,
}

const ENVS_PER_PAGE: i64 = 100;

async fn environments_page(
    viewer: &Viewer,
    space: &str,
    skip: i64,
    form: Option<(&FormData, &ApiFailure)>,
) -> PageResult {
    let api = format!("/api/{space}/environments?skip={skip}&take={ENVS_PER_PAGE}");
    let (chrome, list, checker) = tokio::join!(
        viewer.chrome(space, "infrastructure", "Environments"),
        viewer.get(&api),
        viewer.checker(),
    );
    let list = list?;
    let checker = checker.ok();
    let total = n(&list, "TotalResults");
    let items = arr(&list, "Items");
    let envs = items
        .iter()
        .enumerate()
        .map(|(i, e)| EnvRow {
            id: s(e, "Id"),
            name: s(e, "Name"),
            description: s(e, "Description"),
            guided: b(e, "UseGuidedFailure"),
            first: skip == 0 && i == 0,
            last: skip + i as i64 + 1 >= total,
        })
        .collect();
    let (error, name_error, f_name, f_description, f_guided) = match form {
        Some((f, e)) => (
            e.text(),
            field_error(e, &["Name"]),
            f.get("name"),
            f.get("description"),
            f.checked("guided_failure"),
        ),
        None => Default::default(),
    };
    page(&EnvironmentsPage {
        chrome,
        tab: "environments",
        envs,
        pager: pager(
            &format!("/app/{space}/infrastructure/environments"),
            skip,
            ENVS_PER_PAGE,
            total,
        ),
        can_create: may(&checker, space, Permission::EnvironmentCreate),
        can_edit: may(&checker, space, Permission::EnvironmentEdit),
        can_delete: may(&checker, space, Permission::EnvironmentDelete),
        error,
        name_error,
        f_name,
        f_description,
        f_guided,
    })
}

async fn environments(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    environments_page(&viewer, &space, q.skip.max(0), None).await
}

async fn create_environment(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let body = json!({
        "Name": form.get("name"),
        "Description": form.get("description"),
        "UseGuidedFailure": form.checked("guided_failure"),
    });
    match viewer
        .send(
            Method::POST,
            &format!("/api/{space}/environments"),
            &form.csrf(),
            Some(&body),
        )
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/infrastructure/environments"
        ))),
        Err(e) => {
            let r = environments_page(&viewer, &space, 0, Some((&form, &e))).await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

/// Moves an environment one place up or down: the space's environments are renumbered
/// 0, 1, 2… in their new order (only those whose place changed are written).
async fn move_environment(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let all = viewer
        .get(&format!("/api/{space}/environments/all"))
        .await?;
    let mut envs: Vec<Value> = all.as_array().cloned().unwrap_or_default();
    let Some(i) = envs.iter().position(|e| s(e, "Id") == id) else {
        return Err(ApiFailure::new(404, format!("Environment '{id}' was not found")).into());
    };
    let j = if form.get("dir") == "up" {
        i.checked_sub(1)
    } else {
        Some(i + 1).filter(|j| *j < envs.len())
    };
    if let Some(j) = j {
        envs.swap(i, j);
        let csrf = form.csrf();
        for (k, e) in envs.iter_mut().enumerate() {
            if n(e, "SortOrder") != k as i64 {
                e["SortOrder"] = json!(k);
                let eid = s(e, "Id");
                viewer
                    .send(
                        Method::PUT,
                        &format!("/api/{space}/environments/{eid}"),
                        &csrf,
                        Some(e),
                    )
                    .await?;
            }
        }
    }
    Ok(see_other(&format!(
        "/app/{space}/infrastructure/environments"
    )))
}

#[derive(Template)]
#[template(path = "infrastructure/environment.html")]
struct EnvironmentPage {
    chrome: Chrome,
    tab: &'static str,
    id: String,
    can_edit: bool,
    can_delete: bool,
    error: String,
    name_error: String,
    f_name: String,
    f_description: String,
    f_guided: bool,
}

async fn environment(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    let path = format!("/api/{space}/environments/{}", url_encode(&id));
    let (chrome, env, checker) = tokio::join!(
        viewer.chrome(&space, "infrastructure", "Environment"),
        viewer.get(&path),
        viewer.checker(),
    );
    let env = env?;
    let checker = checker.ok();
    let mut chrome = chrome;
    chrome.title = s(&env, "Name");
    page(&EnvironmentPage {
        chrome,
        tab: "environments",
        id: s(&env, "Id"),
        can_edit: may(&checker, &space, Permission::EnvironmentEdit),
        can_delete: may(&checker, &space, Permission::EnvironmentDelete),
        error: String::new(),
        name_error: String::new(),
        f_name: s(&env, "Name"),
        f_description: s(&env, "Description"),
        f_guided: b(&env, "UseGuidedFailure"),
    })
}

async fn edit_environment(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let path = format!("/api/{space}/environments/{}", url_encode(&id));
    let mut env = viewer.get(&path).await?;
    env["Name"] = json!(form.get("name"));
    env["Description"] = json!(form.get("description"));
    env["UseGuidedFailure"] = json!(form.checked("guided_failure"));
    match viewer
        .send(Method::PUT, &path, &form.csrf(), Some(&env))
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/infrastructure/environments"
        ))),
        Err(e) => {
            let (chrome, checker) = tokio::join!(
                viewer.chrome(&space, "infrastructure", "Edit environment"),
                viewer.checker()
            );
            let checker = checker.ok();
            let r = render(&EnvironmentPage {
                chrome,
                tab: "environments",
                id,
                can_edit: may(&checker, &space, Permission::EnvironmentEdit),
                can_delete: may(&checker, &space, Permission::EnvironmentDelete),
                error: e.text(),
                name_error: field_error(&e, &["Name"]),
                f_name: form.get("name"),
                f_description: form.get("description"),
                f_guided: form.checked("guided_failure"),
            });
            Ok(with_status(status_of(&e), r))
        }
    }
}

async fn delete_environment(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    viewer
        .send(
            Method::DELETE,
            &format!("/api/{space}/environments/{}", url_encode(&id)),
            &form.csrf(),
            None,
        )
        .await?;
    Ok(see_other(&format!(
        "/app/{space}/infrastructure/environments"
    )))
}

// ---------------------------------------------------------------------------------------------
// Deployment targets

pub struct MachineRow {
    pub id: String,
    pub name: String,
    pub health: Health,
    pub summary: String,
    pub roles: Vec<String>,
    pub environments: Vec<String>,
    pub tenants: Vec<String>,
    pub style: String,
}

#[derive(Template)]
#[template(path = "infrastructure/targets.html")]
struct TargetsPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<MachineRow>,
    pager: Pager,
    all_environments: Vec<(String, String)>,
    q_environment: String,
    q_role: String,
    q_health: String,
    can_create: bool,
    filtered: bool,
}

const TARGETS_PER_PAGE: i64 = 30;
const HEALTH_CHOICES: &[(&str, &str)] = &[
    ("Healthy", "Healthy"),
    ("HasWarnings", "Healthy with warnings"),
    ("Unhealthy", "Unhealthy"),
    ("Unavailable", "Unavailable"),
    ("Unknown", "Unknown"),
];

async fn targets(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let skip = q.skip.max(0);
    let mut api = format!("/api/{space}/machines?skip={skip}&take={TARGETS_PER_PAGE}");
    let mut base = format!("/app/{space}/infrastructure/targets");
    let mut filters = Vec::new();
    for (param, key, v) in [
        ("environmentIds", "environment", &q.environment),
        ("roles", "role", &q.role),
        ("healthStatuses", "health", &q.health),
    ] {
        if !v.is_empty() {
            api.push_str(&format!("&{param}={}", url_encode(v)));
            filters.push(format!("{key}={}", url_encode(v)));
        }
    }
    if !filters.is_empty() {
        base.push('?');
        base.push_str(&filters.join("&"));
    }
    let (chrome, list, envs, checker) = tokio::join!(
        viewer.chrome(&space, "infrastructure", "Deployment targets"),
        viewer.get(&api),
        fetch(&viewer, format!("/api/{space}/environments/all")),
        viewer.checker(),
    );
    let list = list?;
    let envs = pairs(&envs);
    let items = arr(&list, "Items");
    // The tenants named on this page, in one read.
    let mut tenant_ids: Vec<String> = items.iter().flat_map(|m| strs(m, "TenantIds")).collect();
    tenant_ids.sort();
    tenant_ids.dedup();
    let tenants = if tenant_ids.is_empty() {
        Vec::new()
    } else {
        pairs(
            &viewer
                .get(&format!(
                    "/api/{space}/tenants?ids={}&take={}",
                    url_encode(&tenant_ids.join(",")),
                    tenant_ids.len()
                ))
                .await,
        )
    };
    let rows = items
        .iter()
        .map(|m| MachineRow {
            id: s(m, "Id"),
            name: s(m, "Name"),
            health: health_of(m),
            summary: s(m, "StatusSummary"),
            roles: strs(m, "Roles"),
            environments: strs(m, "EnvironmentIds")
                .iter()
                .map(|e| name_of(&envs, e))
                .collect(),
            tenants: strs(m, "TenantIds")
                .iter()
                .map(|t| name_of(&tenants, t))
                .collect(),
            style: comm_style(m),
        })
        .collect();
    let checker = checker.ok();
    page(&TargetsPage {
        chrome,
        tab: "targets",
        rows,
        pager: pager(&base, skip, TARGETS_PER_PAGE, n(&list, "TotalResults")),
        all_environments: envs,
        filtered: !filters.is_empty(),
        q_environment: q.environment,
        q_role: q.role,
        q_health: q.health,
        can_create: may(&checker, &space, Permission::MachineCreate),
    })
}

#[derive(Template)]
#[template(path = "infrastructure/target.html")]
struct TargetPage {
    chrome: Chrome,
    tab: &'static str,
    id: String,
    name: String,
    health: Health,
    summary: String,
    style: String,
    details: Vec<(String, String)>,
    roles: Vec<String>,
    environments: Vec<String>,
    tenants: Vec<String>,
    can_check: bool,
    can_delete: bool,
}

async fn target(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    let (chrome, m, envs, checker) = tokio::join!(
        viewer.chrome(&space, "infrastructure", "Deployment target"),
        fetch(
            &viewer,
            format!("/api/{space}/machines/{}", url_encode(&id))
        ),
        fetch(&viewer, format!("/api/{space}/environments/all")),
        viewer.checker(),
    );
    let m = m?;
    let envs = pairs(&envs);
    let tenant_ids = strs(&m, "TenantIds");
    let tenants = if tenant_ids.is_empty() {
        Vec::new()
    } else {
        pairs(
            &viewer
                .get(&format!(
                    "/api/{space}/tenants?ids={}&take={}",
                    url_encode(&tenant_ids.join(",")),
                    tenant_ids.len()
                ))
                .await,
        )
    };
    let ep = m.get("Endpoint").cloned().unwrap_or(Value::Null);
    let mut details = Vec::new();
    for (label, v) in [
        ("Address", s(&ep, "Uri")),
        ("Thumbprint", s(&ep, "Thumbprint")),
        ("Host", s(&ep, "Host")),
        ("Port", s(&ep, "Port")),
        ("Host key fingerprint", s(&ep, "Fingerprint")),
        ("Account", s(&ep, "AccountId")),
        ("Operating system", s(&m, "OperatingSystem")),
        ("Shell", s(&m, "ShellName")),
        ("Agent version", s(&m, "AgentVersion")),
        ("Machine policy", s(&m, "MachinePolicyId")),
        (
            "Tenanted deployments",
            s(&m, "TenantedDeploymentParticipation"),
        ),
    ] {
        if !v.is_empty() && v != "Unknown" {
            details.push((label.to_string(), v));
        }
    }
    let checker = checker.ok();
    let mut chrome = chrome;
    chrome.title = s(&m, "Name");
    page(&TargetPage {
        chrome,
        tab: "targets",
        id: s(&m, "Id"),
        name: s(&m, "Name"),
        health: health_of(&m),
        summary: s(&m, "StatusSummary"),
        style: comm_style(&m),
        details,
        roles: strs(&m, "Roles"),
        environments: strs(&m, "EnvironmentIds")
            .iter()
            .map(|e| name_of(&envs, e))
            .collect(),
        tenants: tenant_ids.iter().map(|t| name_of(&tenants, t)).collect(),
        can_check: may(&checker, &space, Permission::MachineEdit),
        can_delete: may(&checker, &space, Permission::MachineDelete),
    })
}

async fn check_health(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let body = json!({
        "Name": "Health",
        "Description": "Check deployment target health",
        "Arguments": {"MachineIds": [id]},
    });
    let task = viewer
        .send(
            Method::POST,
            &format!("/api/{space}/tasks"),
            &form.csrf(),
            Some(&body),
        )
        .await?;
    Ok(see_other(&format!("/app/{space}/tasks/{}", s(&task, "Id"))))
}

async fn delete_target(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    viewer
        .send(
            Method::DELETE,
            &format!("/api/{space}/machines/{}", url_encode(&id)),
            &form.csrf(),
            None,
        )
        .await?;
    Ok(see_other(&format!("/app/{space}/infrastructure/targets")))
}

// ---- adding a target

#[derive(Template)]
#[template(path = "infrastructure/new_target.html")]
struct NewTargetPage {
    chrome: Chrome,
    tab: &'static str,
    all_environments: Vec<(String, String)>,
    accounts: Vec<(String, String)>,
    q_environment: String,
    q_roles: String,
    poll: bool,
    command: String,
    thumbprint: String,
    can_create: bool,
    /// Which form failed ("ssh" or "listening"), its error summary and field errors.
    failed: &'static str,
    error: String,
    errors: HashMap<&'static str, String>,
    form: FormData,
}

impl NewTargetPage {
    fn err(&self, key: &str) -> String {
        self.errors.get(key).cloned().unwrap_or_default()
    }

    fn val(&self, key: &str) -> String {
        self.form.get(key)
    }

    fn has(&self, key: &str, v: &str) -> bool {
        self.form.all(key).iter().any(|x| x == v)
    }
}

/// Quotes a shell word when it needs it.
fn sh(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

async fn new_target_page(
    viewer: &Viewer,
    space: &str,
    q: &ListQuery,
    failed: &'static str,
    failure: Option<&ApiFailure>,
    form: FormData,
) -> PageResult {
    let (chrome, envs, accounts, checker) = tokio::join!(
        viewer.chrome(space, "infrastructure", "Add a deployment target"),
        fetch(viewer, format!("/api/{space}/environments/all")),
        fetch(viewer, format!("/api/{space}/accounts?take=200")),
        viewer.checker(),
    );
    let envs = pairs(&envs);
    let accounts = pairs(&accounts);
    let cfg = &viewer.state.st.config;
    let env_name = if q.environment.is_empty() {
        envs.first()
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| "Development".to_string())
    } else {
        name_of(&envs, &q.environment)
    };
    let roles = split_list(&q.roles);
    let roles = if roles.is_empty() {
        vec!["web".to_string()]
    } else {
        roles
    };
    let poll = q.mode == "poll";
    let mut cmd = format!(
        "ferry agent register --server {} --space {} --api-key API-YOURAPIKEY \\\n  --data-dir /var/lib/ferry-agent --name \"$(hostname)\" \\\n  --environment {}",
        sh(&cfg.public_url),
        sh(space),
        sh(&env_name)
    );
    for r in &roles {
        cmd.push_str(&format!(" --role {}", sh(r)));
    }
    cmd.push_str(" \\\n  ");
    if poll {
        cmd.push_str("--poll");
    } else {
        cmd.push_str("--listen 10933 --public-host \"$(hostname -f)\"");
    }
    if !cfg.server_thumbprint.is_empty() {
        cmd.push_str(&format!(
            " \\\n  --server-thumbprint {}",
            cfg.server_thumbprint
        ));
    }
    cmd.push_str("\nferry agent run --data-dir /var/lib/ferry-agent");
    let mut errors = HashMap::new();
    let mut error = String::new();
    if let Some(f) = failure {
        error = f.text();
        for (key, names) in [
            ("name", &["Name"][..]),
            ("environments", &["EnvironmentIds"][..]),
            ("roles", &["Roles"][..]),
            ("host", &["Endpoint.Host"][..]),
            ("port", &["Endpoint.Port"][..]),
            ("fingerprint", &["Endpoint.Fingerprint"][..]),
            ("account", &["Endpoint.AccountId"][..]),
            ("url", &["Endpoint.Uri", "Uri"][..]),
            ("thumbprint", &["Endpoint.Thumbprint", "Thumbprint"][..]),
        ] {
            let e = field_error(f, names);
            if !e.is_empty() {
                errors.insert(key, e);
            }
        }
    }
    let checker = checker.ok();
    page(&NewTargetPage {
        chrome,
        tab: "targets",
        all_environments: envs,
        accounts,
        q_environment: q.environment.clone(),
        q_roles: roles.join(", "),
        poll,
        command: cmd,
        thumbprint: cfg.server_thumbprint.clone(),
        can_create: may(&checker, space, Permission::MachineCreate),
        failed,
        error,
        errors,
        form,
    })
}

async fn new_target(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    new_target_page(&viewer, &space, &q, "", None, FormData::default()).await
}

async fn create_target(
    viewer: Viewer,
    space: String,
    form: FormData,
    failed: &'static str,
    endpoint: Value,
) -> PageResult {
    let body = json!({
        "Name": form.get("name"),
        "EnvironmentIds": form.all("environments"),
        "Roles": split_list(&form.get("roles")),
        "Endpoint": endpoint,
    });
    match viewer
        .send(
            Method::POST,
            &format!("/api/{space}/machines"),
            &form.csrf(),
            Some(&body),
        )
        .await
    {
        Ok(m) => Ok(see_other(&format!(
            "/app/{space}/infrastructure/targets/{}",
            s(&m, "Id")
        ))),
        Err(e) => {
            let r = new_target_page(
                &viewer,
                &space,
                &ListQuery::default(),
                failed,
                Some(&e),
                form,
            )
            .await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

async fn create_ssh_target(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let port: Value = match form.get("port").parse::<u32>() {
        Ok(p) => json!(p),
        Err(_) => Value::Null,
    };
    let endpoint = json!({
        "CommunicationStyle": "Ssh",
        "Host": form.get("host"),
        "Port": port,
        "Fingerprint": form.get("fingerprint"),
        "AccountId": form.get("account"),
    });
    create_target(viewer, space, form, "ssh", endpoint).await
}

async fn create_listening_target(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let endpoint = json!({
        "CommunicationStyle": "TentaclePassive",
        "Uri": form.get("url"),
        "Thumbprint": form.get("thumbprint"),
    });
    create_target(viewer, space, form, "listening", endpoint).await
}

// ---------------------------------------------------------------------------------------------
// Workers, worker pools, machine policies

pub struct WorkerRow {
    pub name: String,
    pub health: Health,
    pub pools: Vec<String>,
    pub style: String,
}

#[derive(Template)]
#[template(path = "infrastructure/workers.html")]
struct WorkersPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<WorkerRow>,
    pager: Pager,
}

async fn workers(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let skip = q.skip.max(0);
    let (chrome, list, pools) = tokio::join!(
        viewer.chrome(&space, "infrastructure", "Workers"),
        fetch(
            &viewer,
            format!("/api/{space}/workers?skip={skip}&take={TARGETS_PER_PAGE}")
        ),
        fetch(&viewer, format!("/api/{space}/workerpools/all")),
    );
    let list = list?;
    let pools = pairs(&pools);
    let rows = arr(&list, "Items")
        .iter()
        .map(|w| WorkerRow {
            name: s(w, "Name"),
            health: health_of(w),
            pools: strs(w, "WorkerPoolIds")
                .iter()
                .map(|p| name_of(&pools, p))
                .collect(),
            style: comm_style(w),
        })
        .collect();
    page(&WorkersPage {
        chrome,
        tab: "workers",
        rows,
        pager: pager(
            &format!("/app/{space}/infrastructure/workers"),
            skip,
            TARGETS_PER_PAGE,
            n(&list, "TotalResults"),
        ),
    })
}

pub struct PoolRow {
    pub name: String,
    pub description: String,
    pub is_default: bool,
}

#[derive(Template)]
#[template(path = "infrastructure/workerpools.html")]
struct PoolsPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<PoolRow>,
    pager: Pager,
    can_create: bool,
    error: String,
    name_error: String,
    f_name: String,
    f_description: String,
}

async fn pools_page(
    viewer: &Viewer,
    space: &str,
    skip: i64,
    form: Option<(&FormData, &ApiFailure)>,
) -> PageResult {
    let (chrome, list, checker) = tokio::join!(
        viewer.chrome(space, "infrastructure", "Worker pools"),
        fetch(
            viewer,
            format!("/api/{space}/workerpools?skip={skip}&take={TARGETS_PER_PAGE}")
        ),
        viewer.checker(),
    );
    let list = list?;
    let rows = arr(&list, "Items")
        .iter()
        .map(|p| PoolRow {
            name: s(p, "Name"),
            description: s(p, "Description"),
            is_default: b(p, "IsDefault"),
        })
        .collect();
    let checker = checker.ok();
    let (error, name_error, f_name, f_description) = match form {
        Some((f, e)) => (
            e.text(),
            field_error(e, &["Name"]),
            f.get("name"),
            f.get("description"),
        ),
        None => Default::default(),
    };
    page(&PoolsPage {
        chrome,
        tab: "workerpools",
        rows,
        pager: pager(
            &format!("/app/{space}/infrastructure/workerpools"),
            skip,
            TARGETS_PER_PAGE,
            n(&list, "TotalResults"),
        ),
        can_create: may(&checker, space, Permission::WorkerEdit),
        error,
        name_error,
        f_name,
        f_description,
    })
}

async fn worker_pools(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    pools_page(&viewer, &space, q.skip.max(0), None).await
}

async fn create_worker_pool(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let body = json!({"Name": form.get("name"), "Description": form.get("description")});
    match viewer
        .send(
            Method::POST,
            &format!("/api/{space}/workerpools"),
            &form.csrf(),
            Some(&body),
        )
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/infrastructure/workerpools"
        ))),
        Err(e) => {
            let r = pools_page(&viewer, &space, 0, Some((&form, &e))).await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

#[derive(Template)]
#[template(path = "infrastructure/machinepolicies.html")]
struct PoliciesPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<(String, String, String, bool)>,
    pager: Pager,
}

async fn machine_policies(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let skip = q.skip.max(0);
    let (chrome, list) = tokio::join!(
        viewer.chrome(&space, "infrastructure", "Machine policies"),
        fetch(
            &viewer,
            format!("/api/{space}/machinepolicies?skip={skip}&take={TARGETS_PER_PAGE}")
        ),
    );
    let list = list?;
    let rows = arr(&list, "Items")
        .iter()
        .map(|p| {
            (
                s(p, "Id"),
                s(p, "Name"),
                s(p, "Description"),
                b(p, "IsDefault"),
            )
        })
        .collect();
    page(&PoliciesPage {
        chrome,
        tab: "machinepolicies",
        rows,
        pager: pager(
            &format!("/app/{space}/infrastructure/machinepolicies"),
            skip,
            TARGETS_PER_PAGE,
            n(&list, "TotalResults"),
        ),
    })
}

#[derive(Template)]
#[template(path = "infrastructure/machinepolicy.html")]
struct PolicyPage {
    chrome: Chrome,
    tab: &'static str,
    id: String,
    name: String,
    description: String,
    settings: Vec<(String, String)>,
    can_edit: bool,
    error: String,
    name_error: String,
    interval_error: String,
    f_name: String,
    f_description: String,
    f_interval: String,
}

/// A JSON object's settings as `Section › Field` = value rows (links and ids left out).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if ["Links", "Id", "SpaceId", "Name", "Slug", "Description"].contains(&k.as_str())
                    && prefix.is_empty()
                {
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix} › {k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Null => out.push((prefix.to_string(), "—".to_string())),
        Value::String(x) => out.push((prefix.to_string(), x.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

async fn policy_page(
    viewer: &Viewer,
    space: &str,
    id: &str,
    failed: Option<(&FormData, &ApiFailure)>,
) -> PageResult {
    let (chrome, p, checker) = tokio::join!(
        viewer.chrome(space, "infrastructure", "Machine policy"),
        fetch(
            viewer,
            format!("/api/{space}/machinepolicies/{}", url_encode(id))
        ),
        viewer.checker(),
    );
    let p = p?;
    let mut settings = Vec::new();
    flatten("", &p, &mut settings);
    let checker = checker.ok();
    let interval = p
        .get("MachineHealthCheckPolicy")
        .map(|h| s(h, "HealthCheckInterval"))
        .unwrap_or_default();
    let (error, name_error, interval_error, f_name, f_description, f_interval) = match failed {
        Some((f, e)) => (
            e.text(),
            field_error(e, &["Name"]),
            field_error(e, &["MachineHealthCheckPolicy.HealthCheckInterval"]),
            f.get("name"),
            f.get("description"),
            f.get("interval"),
        ),
        None => (
            String::new(),
            String::new(),
            String::new(),
            s(&p, "Name"),
            s(&p, "Description"),
            interval,
        ),
    };
    let mut chrome = chrome;
    chrome.title = s(&p, "Name");
    page(&PolicyPage {
        chrome,
        tab: "machinepolicies",
        id: s(&p, "Id"),
        name: s(&p, "Name"),
        description: s(&p, "Description"),
        settings,
        can_edit: may(&checker, space, Permission::MachinePolicyEdit),
        error,
        name_error,
        interval_error,
        f_name,
        f_description,
        f_interval,
    })
}

async fn machine_policy(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    policy_page(&viewer, &space, &id, None).await
}

async fn edit_machine_policy(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let path = format!("/api/{space}/machinepolicies/{}", url_encode(&id));
    let mut p = viewer.get(&path).await?;
    p["Name"] = json!(form.get("name"));
    p["Description"] = json!(form.get("description"));
    if !p["MachineHealthCheckPolicy"].is_object() {
        p["MachineHealthCheckPolicy"] = json!({});
    }
    p["MachineHealthCheckPolicy"]["HealthCheckInterval"] = json!(form.get("interval"));
    match viewer
        .send(Method::PUT, &path, &form.csrf(), Some(&p))
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/infrastructure/machinepolicies/{}",
            url_encode(&id)
        ))),
        Err(e) => {
            let r = policy_page(&viewer, &space, &id, Some((&form, &e))).await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

/// `GET path` as the viewer (an owned path, for `tokio::join!`).
pub(crate) async fn fetch(viewer: &Viewer, path: String) -> Result<Value, ApiFailure> {
    viewer.get(&path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pager_links() {
        let p = pager("/x?q=a", 30, 30, 100);
        assert_eq!(p.prev, "/x?q=a&skip=0");
        assert_eq!(p.next, "/x?q=a&skip=60");
        assert_eq!(p.note, "31–60 of 100");
        let p = pager("/x", 0, 30, 10);
        assert!(p.prev.is_empty() && p.next.is_empty() && p.note.is_empty());
    }

    #[test]
    fn field_errors_and_quoting() {
        let f = ApiFailure::new(400, "Please provide a value for the environment Name");
        assert!(!field_error(&f, &["Name"]).is_empty());
        let mut f = ApiFailure::new(400, "");
        f.errors = vec!["Roles: please provide at least one role".into()];
        assert!(field_error(&f, &["Name"]).is_empty());
        assert!(!field_error(&f, &["Roles"]).is_empty());
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("http://x:8080"), "http://x:8080");
    }
}
