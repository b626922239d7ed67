//! Project pages: the project list, creating a project, the overview (releases × environments
//! per channel), variables, channels, triggers and settings. `ProjectNav` is the heading and
//! tabs every project page shows (`templates/projects/tabs.html`). The process editor is in
//! `process.rs`.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use ferry_server::authz::Target;
use ferry_server::routes::Permission;
use serde_json::{Value, json};

use super::{Chrome, page, render};
use crate::PortalState;
use crate::ctx::{ApiFailure, FormData, PageResult, Viewer, see_other};
use crate::view::{StateView, arr, b, s, short_time, strs, url_encode};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route("/app/{space}/projects", get(list).post(create))
        .route("/app/{space}/projects/new", get(new_form))
        .route("/app/{space}/projects/{id}", get(overview))
        .route(
            "/app/{space}/projects/{id}/settings",
            get(settings).post(save_settings),
        )
        .route("/app/{space}/projects/{id}/delete", post(delete_project))
        .route(
            "/app/{space}/projects/{id}/variables",
            get(variables).post(add_variable),
        )
        .route(
            "/app/{space}/projects/{id}/variables/libraries",
            post(save_libraries),
        )
        .route(
            "/app/{space}/projects/{id}/variables/{var}",
            get(edit_variable).post(update_variable),
        )
        .route(
            "/app/{space}/projects/{id}/variables/{var}/delete",
            post(delete_variable),
        )
        .route(
            "/app/{space}/projects/{id}/channels",
            get(channels).post(create_channel),
        )
        .route(
            "/app/{space}/projects/{id}/channels/{channel}/delete",
            post(delete_channel),
        )
        .route(
            "/app/{space}/projects/{id}/triggers",
            get(triggers).post(save_trigger),
        )
}

// ---------------------------------------------------------------------------------------------
// Shared by the project pages (and process.rs).

/// The project heading and tabs shown on every project page. A page's template includes
/// `projects/tabs.html` and has a field `nav: ProjectNav`.
#[derive(Clone, Debug, Default)]
pub struct ProjectNav {
    pub space: String,
    pub id: String,
    pub name: String,
    /// The active tab: overview, process, variables, channels, triggers, releases, settings.
    pub active: &'static str,
}

/// The tabs: label, path under the project, key.
const TABS: &[(&str, &str, &str)] = &[
    ("Overview", "", "overview"),
    ("Process", "/process", "process"),
    ("Variables", "/variables", "variables"),
    ("Channels", "/channels", "channels"),
    ("Triggers", "/triggers", "triggers"),
    ("Releases", "/releases", "releases"),
    ("Settings", "/settings", "settings"),
];

impl ProjectNav {
    /// The project's portal URL.
    pub fn href(&self) -> String {
        format!("/app/{}/projects/{}", self.space, self.id)
    }

    /// (label, href, active) of each tab.
    pub fn tabs(&self) -> Vec<(&'static str, String, bool)> {
        let base = self.href();
        TABS.iter()
            .map(|(label, path, key)| (*label, format!("{base}{path}"), *key == self.active))
            .collect()
    }
}

/// Reads the project (`/api/{space}/projects/{id}`) and gives its navigation and its JSON.
pub async fn project_nav(
    viewer: &Viewer,
    space: &str,
    project_id: &str,
    active: &'static str,
) -> Result<(ProjectNav, Value), ApiFailure> {
    let project = viewer
        .get(&format!("/api/{space}/projects/{project_id}"))
        .await?;
    let mut id = s(&project, "Id");
    if id.is_empty() {
        id = project_id.to_string();
    }
    let nav = ProjectNav {
        space: space.to_string(),
        id,
        name: s(&project, "Name"),
        active,
    };
    Ok((nav, project))
}

/// (Id, Name) of each item of an API answer (a bare array or a page with `Items`).
pub(crate) fn pairs(v: &Value) -> Vec<(String, String)> {
    items(v)
        .iter()
        .map(|x| (s(x, "Id"), s(x, "Name")))
        .collect()
}

/// The items of an API answer (a bare array or a page with `Items`).
pub(crate) fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a.as_slice(),
        _ => arr(v, "Items"),
    }
}

/// (Id, Name) pairs of an answer that may have failed (empty then).
pub(crate) fn pairs_of(v: &Result<Value, ApiFailure>) -> Vec<(String, String)> {
    v.as_ref().map(pairs).unwrap_or_default()
}

/// The name of `id` among `pairs` (the id itself when unknown).
pub(crate) fn name_of(pairs: &[(String, String)], id: &str) -> String {
    pairs
        .iter()
        .find(|(i, _)| i == id)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| id.to_string())
}

/// A rendered form page with the API's status (400, 403, 409…).
pub(crate) fn with_status(mut r: Response, status: u16) -> Response {
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r
}

/// The part of an API failure about a field: any message or detail containing one of `keys`.
pub(crate) fn field_error(f: &ApiFailure, keys: &[&str]) -> String {
    let hits: Vec<&str> = f
        .errors
        .iter()
        .chain(std::iter::once(&f.message))
        .filter(|e| keys.iter().any(|k| e.contains(k)))
        .map(String::as_str)
        .collect();
    hits.join(" ")
}

/// The project's permission target.
pub(crate) fn project_target(project: &Value) -> Target {
    Target::project(&s(project, "Id"), &s(project, "ProjectGroupId"))
}

/// Which of `perms` the viewer holds for `target` (one permission check set).
pub(crate) async fn can_each<const N: usize>(
    viewer: &Viewer,
    space: &str,
    perms: [Permission; N],
    target: &Target,
) -> [bool; N] {
    match viewer.checker().await {
        Ok(c) => perms.map(|p| c.can(Some(space), p, target)),
        Err(_) => [false; N],
    }
}

// ---------------------------------------------------------------------------------------------
// The project list.

const PER_PAGE: i64 = 30;

#[derive(serde::Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    skip: i64,
    #[serde(default)]
    q: String,
}

struct ProjectRow {
    name: String,
    href: String,
    description: String,
    group: String,
    lifecycle: String,
    disabled: bool,
}

#[derive(Template)]
#[template(path = "projects/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<ProjectRow>,
    q: String,
    can_create: bool,
    prev_href: String,
    next_href: String,
    page_note: String,
}

async fn list(viewer: Viewer, Path(space): Path<String>, Query(q): Query<ListQuery>) -> PageResult {
    let skip = q.skip.max(0);
    let mut api = format!("/api/{space}/projects?skip={skip}&take={PER_PAGE}");
    if !q.q.trim().is_empty() {
        api.push_str(&format!("&partialName={}", url_encode(q.q.trim())));
    }
    let groups_path = format!("/api/{space}/projectgroups/all");
    let lifecycles_path = format!("/api/{space}/lifecycles/all");
    let (chrome, projects, groups, lifecycles, [can_create]) = tokio::join!(
        viewer.chrome(&space, "projects", "Projects"),
        viewer.get(&api),
        viewer.get(&groups_path),
        viewer.get(&lifecycles_path),
        can_each(&viewer, &space, [Permission::ProjectCreate], &Target::ANY),
    );
    let projects = projects?;
    let groups = pairs_of(&groups);
    let lifecycles = pairs_of(&lifecycles);
    let rows = items(&projects)
        .iter()
        .map(|p| ProjectRow {
            name: s(p, "Name"),
            href: format!("/app/{space}/projects/{}", s(p, "Id")),
            description: s(p, "Description"),
            group: name_of(&groups, &s(p, "ProjectGroupId")),
            lifecycle: name_of(&lifecycles, &s(p, "LifecycleId")),
            disabled: b(p, "IsDisabled"),
        })
        .collect();
    let total = projects
        .get("TotalResults")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let link = |skip: i64| {
        let mut h = format!("/app/{space}/projects?skip={skip}");
        if !q.q.is_empty() {
            h.push_str(&format!("&q={}", url_encode(&q.q)));
        }
        h
    };
    let prev_href = if skip > 0 {
        link((skip - PER_PAGE).max(0))
    } else {
        String::new()
    };
    let next_href = if skip + PER_PAGE < total {
        link(skip + PER_PAGE)
    } else {
        String::new()
    };
    let page_note = if total > 0 {
        format!(
            "Projects {}–{} of {total}",
            (skip + 1).min(total),
            (skip + PER_PAGE).min(total)
        )
    } else {
        String::new()
    };
    page(&ListPage {
        chrome,
        rows,
        q: q.q,
        can_create,
        prev_href,
        next_href,
        page_note,
    })
}

// ---------------------------------------------------------------------------------------------
// Creating a project.

#[derive(Template)]
#[template(path = "projects/new.html")]
struct NewPage {
    chrome: Chrome,
    groups: Vec<(String, String)>,
    lifecycles: Vec<(String, String)>,
    name: String,
    description: String,
    group: String,
    lifecycle: String,
    error: String,
    err_name: String,
    err_group: String,
    err_lifecycle: String,
}

async fn new_page(
    viewer: &Viewer,
    space: &str,
    form: &FormData,
    f: Option<ApiFailure>,
) -> Response {
    let groups_path = format!("/api/{space}/projectgroups/all");
    let lifecycles_path = format!("/api/{space}/lifecycles/all");
    let (chrome, groups, lifecycles) = tokio::join!(
        viewer.chrome(space, "projects", "New project"),
        viewer.get(&groups_path),
        viewer.get(&lifecycles_path),
    );
    let (error, status) = match &f {
        Some(f) => (f.text(), f.status),
        None => (String::new(), 200),
    };
    let fe = |keys: &[&str]| f.as_ref().map(|f| field_error(f, keys)).unwrap_or_default();
    let r = render(&NewPage {
        chrome,
        groups: pairs_of(&groups),
        lifecycles: pairs_of(&lifecycles),
        name: form.get("name"),
        description: form.get("description"),
        group: form.get("group"),
        lifecycle: form.get("lifecycle"),
        err_name: fe(&["Name"]),
        err_group: fe(&["project group", "ProjectGroupId"]),
        err_lifecycle: fe(&["ifecycle"]),
        error,
    });
    with_status(r, status)
}

async fn new_form(viewer: Viewer, Path(space): Path<String>) -> Response {
    new_page(&viewer, &space, &FormData::default(), None).await
}

async fn create(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> Response {
    let body = json!({
        "Name": form.get("name"),
        "Description": form.get("description"),
        "ProjectGroupId": form.get("group"),
        "LifecycleId": form.get("lifecycle"),
    });
    match viewer
        .send(
            Method::POST,
            &format!("/api/{space}/projects"),
            &form.csrf(),
            Some(&body),
        )
        .await
    {
        Ok(p) => see_other(&format!("/app/{space}/projects/{}/process", s(&p, "Id"))),
        Err(f) => new_page(&viewer, &space, &form, Some(f)).await,
    }
}

// ---------------------------------------------------------------------------------------------
// The overview: releases × environments per channel.

struct OvCell {
    tenant: String,
    href: String,
    state: StateView,
    when: String,
}

struct OvRow {
    version: String,
    href: String,
    /// One per environment column.
    cells: Vec<OvColumn>,
}

/// A release's deployments to one environment (several when tenanted), and the deploy form's
/// address when the lifecycle lets the release go there next and the viewer may deploy there
/// ("" otherwise).
struct OvColumn {
    deps: Vec<OvCell>,
    promote: String,
    promote_label: String,
}

struct OvChannel {
    name: String,
    environments: Vec<String>,
    rows: Vec<OvRow>,
}

#[derive(Template)]
#[template(path = "projects/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    nav: ProjectNav,
    description: String,
    disabled: bool,
    channels: Vec<OvChannel>,
    can_release: bool,
    has_steps: bool,
    create_release_href: String,
}

async fn overview(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    let (nav, project) = project_nav(&viewer, &space, &id, "overview").await?;
    let pid = nav.id.clone();
    let tenanted = s(&project, "TenantedDeploymentMode") != "Untenanted";
    let prog_path = format!("/api/{space}/projects/{pid}/progression");
    let proc_path = format!("/api/{space}/projects/{pid}/deploymentprocesses");
    let tenants_path = format!("/api/{space}/tenants/all");
    let target = project_target(&project);
    let (chrome, prog, process, tenants, [can_release]) = tokio::join!(
        viewer.chrome(&space, "projects", nav.name.clone()),
        viewer.get(&prog_path),
        viewer.get(&proc_path),
        async {
            if tenanted {
                viewer.get(&tenants_path).await
            } else {
                Ok(Value::Null)
            }
        },
        can_each(&viewer, &space, [Permission::ReleaseCreate], &target),
    );
    let prog = prog.unwrap_or(Value::Null);
    let checker = viewer.checker().await.ok();
    let tenants = pairs_of(&tenants);
    let has_steps = process
        .map(|p| !arr(&p, "Steps").is_empty())
        .unwrap_or(false);
    let chan_envs = prog
        .get("ChannelEnvironments")
        .cloned()
        .unwrap_or(Value::Null);
    // Channels in the order their releases appear, each with its lifecycle's environments.
    let mut order: Vec<String> = Vec::new();
    let mut by_channel: HashMap<String, OvChannel> = HashMap::new();
    for r in arr(&prog, "Releases") {
        let rel = r.get("Release").cloned().unwrap_or(Value::Null);
        let ch = r.get("Channel").cloned().unwrap_or(Value::Null);
        let cid = s(&ch, "Id");
        let envs: Vec<(String, String)> = chan_envs
            .get(&cid)
            .map(|v| {
                v.as_array()
                    .map(|a| a.iter().map(|e| (s(e, "Id"), s(e, "Name"))).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let entry = by_channel.entry(cid.clone()).or_insert_with(|| {
            order.push(cid.clone());
            OvChannel {
                name: s(&ch, "Name"),
                environments: envs.iter().map(|(_, n)| n.clone()).collect(),
                rows: Vec::new(),
            }
        });
        let deps = r.get("Deployments").cloned().unwrap_or(Value::Null);
        let cells: Vec<Vec<OvCell>> = envs
            .iter()
            .map(|(eid, _)| {
                deps.get(eid)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|d| OvCell {
                                tenant: if s(d, "TenantId").is_empty() {
                                    String::new()
                                } else {
                                    name_of(&tenants, &s(d, "TenantId"))
                                },
                                href: format!("/app/{space}/tasks/{}", s(d, "TaskId")),
                                state: StateView::of(
                                    &s(d, "State"),
                                    b(d, "HasWarningsOrErrors"),
                                    b(d, "HasPendingInterruptions"),
                                ),
                                when: short_time(&if s(d, "CompletedTime").is_empty() {
                                    s(d, "QueueTime")
                                } else {
                                    s(d, "CompletedTime")
                                }),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        let next = strs(r, "NextDeployments");
        let rid = s(&rel, "Id");
        let cells = envs
            .iter()
            .zip(cells)
            .map(|((eid, ename), deps)| {
                let target = Target {
                    environments: Some(vec![eid.clone()]),
                    ..project_target(&project)
                };
                let may = checker
                    .as_ref()
                    .is_some_and(|c| c.can(Some(&space), Permission::DeploymentCreate, &target));
                // Where it has not been yet: a redeploy starts from the release page.
                let promote = if deps.is_empty() && next.contains(eid) && may {
                    format!(
                        "/app/{space}/releases/{}/deploy?environment={}",
                        url_encode(&rid),
                        url_encode(eid)
                    )
                } else {
                    String::new()
                };
                OvColumn {
                    deps,
                    promote,
                    promote_label: format!("Deploy {} to {ename}", s(&rel, "Version")),
                }
            })
            .collect();
        entry.rows.push(OvRow {
            version: s(&rel, "Version"),
            href: format!("/app/{space}/releases/{rid}"),
            cells,
        });
    }
    let channels = order
        .into_iter()
        .filter_map(|c| by_channel.remove(&c))
        .collect();
    page(&OverviewPage {
        chrome,
        description: s(&project, "Description"),
        disabled: b(&project, "IsDisabled"),
        create_release_href: format!("/app/{space}/projects/{pid}/releases/new"),
        nav,
        channels,
        can_release,
        has_steps,
    })
}

// ---------------------------------------------------------------------------------------------
// Settings.

#[derive(Template)]
#[template(path = "projects/settings.html")]
struct SettingsPage {
    chrome: Chrome,
    nav: ProjectNav,
    groups: Vec<(String, String)>,
    lifecycles: Vec<(String, String)>,
    name: String,
    description: String,
    group: String,
    lifecycle: String,
    version_template: String,
    tenanted: String,
    disabled: bool,
    can_edit: bool,
    can_delete: bool,
    error: String,
    err_name: String,
    err_group: String,
    err_lifecycle: String,
    err_tenanted: String,
}

async fn settings_page(
    viewer: &Viewer,
    space: &str,
    id: &str,
    form: Option<&FormData>,
    f: Option<ApiFailure>,
) -> PageResult {
    let (nav, project) = project_nav(viewer, space, id, "settings").await?;
    let groups_path = format!("/api/{space}/projectgroups/all");
    let lifecycles_path = format!("/api/{space}/lifecycles/all");
    let target = project_target(&project);
    let (chrome, groups, lifecycles, [can_edit, can_delete]) = tokio::join!(
        viewer.chrome(space, "projects", format!("{} settings", nav.name)),
        viewer.get(&groups_path),
        viewer.get(&lifecycles_path),
        can_each(
            viewer,
            space,
            [Permission::ProjectEdit, Permission::ProjectDelete],
            &target
        ),
    );
    let (error, status) = match &f {
        Some(f) => (f.text(), f.status),
        None => (String::new(), 200),
    };
    let fe = |keys: &[&str]| f.as_ref().map(|f| field_error(f, keys)).unwrap_or_default();
    let vt = project
        .get("VersioningStrategy")
        .map(|v| s(v, "Template"))
        .unwrap_or_default();
    let t = match form {
        Some(form) => SettingsPage {
            chrome,
            groups: pairs_of(&groups),
            lifecycles: pairs_of(&lifecycles),
            name: form.get("name"),
            description: form.get("description"),
            group: form.get("group"),
            lifecycle: form.get("lifecycle"),
            version_template: form.get("version_template"),
            tenanted: form.get("tenanted"),
            disabled: form.checked("disabled"),
            nav,
            can_edit,
            can_delete,
            err_name: fe(&["Name"]),
            err_group: fe(&["project group", "ProjectGroupId"]),
            err_lifecycle: fe(&["ifecycle"]),
            err_tenanted: fe(&["Tenanted"]),
            error,
        },
        None => SettingsPage {
            chrome,
            groups: pairs_of(&groups),
            lifecycles: pairs_of(&lifecycles),
            name: s(&project, "Name"),
            description: s(&project, "Description"),
            group: s(&project, "ProjectGroupId"),
            lifecycle: s(&project, "LifecycleId"),
            version_template: vt,
            tenanted: s(&project, "TenantedDeploymentMode"),
            disabled: b(&project, "IsDisabled"),
            nav,
            can_edit,
            can_delete,
            err_name: String::new(),
            err_group: String::new(),
            err_lifecycle: String::new(),
            err_tenanted: String::new(),
            error,
        },
    };
    Ok(with_status(render(&t), status))
}

async fn settings(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    settings_page(&viewer, &space, &id, None, None).await
}

async fn save_settings(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let path = format!("/api/{space}/projects/{id}");
    let mut project = viewer.get(&path).await?;
    if let Some(o) = project.as_object_mut() {
        o.remove("Links");
        o.insert("Name".into(), json!(form.get("name")));
        o.insert("Description".into(), json!(form.get("description")));
        o.insert("ProjectGroupId".into(), json!(form.get("group")));
        o.insert("LifecycleId".into(), json!(form.get("lifecycle")));
        o.insert("TenantedDeploymentMode".into(), json!(form.get("tenanted")));
        o.insert("IsDisabled".into(), json!(form.checked("disabled")));
        let vt = form.get("version_template");
        let mut strategy = o.get("VersioningStrategy").cloned().unwrap_or(json!({}));
        strategy["Template"] = if vt.is_empty() {
            Value::Null
        } else {
            json!(vt)
        };
        o.insert("VersioningStrategy".into(), strategy);
    }
    match viewer
        .send(Method::PUT, &path, &form.csrf(), Some(&project))
        .await
    {
        Ok(p) => Ok(see_other(&format!(
            "/app/{space}/projects/{}/settings",
            s(&p, "Id")
        ))),
        Err(f) => settings_page(&viewer, &space, &id, Some(&form), Some(f)).await,
    }
}

async fn delete_project(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    viewer
        .send(
            Method::DELETE,
            &format!("/api/{space}/projects/{id}"),
            &form.csrf(),
            None,
        )
        .await?;
    Ok(see_other(&format!("/app/{space}/projects")))
}

// ---------------------------------------------------------------------------------------------
// Variables.

/// What the variables page shows of one variable (never a sensitive value).
struct VarRow {
    id: String,
    name: String,
    value: String,
    sensitive: bool,
    scope: Vec<String>,
    prompt: String,
}

/// The add/edit form's values.
#[derive(Default)]
struct VarForm {
    name: String,
    value: String,
    sensitive: bool,
    environments: Vec<String>,
    roles: String,
    prompt_label: String,
    /// Editing a sensitive variable: its value is set (and is not shown).
    has_secret: bool,
}

impl VarForm {
    fn of_form(form: &FormData) -> VarForm {
        VarForm {
            name: form.get("name"),
            value: form.raw("value"),
            sensitive: form.checked("sensitive"),
            environments: form.all("environments"),
            roles: form.get("roles"),
            prompt_label: form.get("prompt_label"),
            has_secret: false,
        }
    }

    fn of_variable(v: &ferry_domain::Variable) -> VarForm {
        VarForm {
            name: v.name.clone(),
            value: if v.is_sensitive {
                String::new()
            } else {
                v.value.clone().unwrap_or_default()
            },
            sensitive: v.is_sensitive,
            environments: v.scope.environment.clone(),
            roles: v.scope.role.join(", "),
            prompt_label: v.prompt.as_ref().map(|p| s(p, "Label")).unwrap_or_default(),
            has_secret: v.is_sensitive,
        }
    }

    /// Writes the form into `v` (a blank value of a sensitive variable keeps its value).
    fn apply(&self, v: &mut ferry_domain::Variable) {
        v.name = self.name.clone();
        let keep_secret =
            self.sensitive && v.is_sensitive && self.value.is_empty() && !v.id.is_empty();
        v.value = if keep_secret {
            None
        } else {
            Some(self.value.clone())
        };
        v.is_sensitive = self.sensitive;
        v.kind = if self.sensitive {
            "Sensitive"
        } else {
            "String"
        }
        .to_string();
        v.scope.environment = self.environments.clone();
        v.scope.role = self
            .roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect();
        v.prompt = if self.prompt_label.is_empty() {
            None
        } else {
            let mut p = v.prompt.clone().unwrap_or_else(|| json!({}));
            p["Label"] = json!(self.prompt_label);
            Some(p)
        };
    }
}

#[derive(Template)]
#[template(path = "projects/variables.html")]
struct VariablesPage {
    chrome: Chrome,
    nav: ProjectNav,
    rows: Vec<VarRow>,
    environments: Vec<(String, String)>,
    libraries: Vec<(String, String, bool)>,
    can_edit: bool,
    can_edit_project: bool,
    form: VarForm,
    error: String,
    err_name: String,
    err_value: String,
    err_scope: String,
}

#[derive(Template)]
#[template(path = "projects/variable.html")]
struct VariablePage {
    chrome: Chrome,
    nav: ProjectNav,
    var_id: String,
    environments: Vec<(String, String)>,
    can_edit: bool,
    form: VarForm,
    error: String,
    err_name: String,
    err_value: String,
    err_scope: String,
}

fn vars_path(space: &str, project: &str) -> String {
    format!("/api/{space}/projects/{project}/variables")
}

async fn load_vars(
    viewer: &Viewer,
    space: &str,
    project: &str,
) -> Result<(ferry_domain::VariableSet, Value), ApiFailure> {
    let v = viewer.get(&vars_path(space, project)).await?;
    let set = serde_json::from_value(v.clone())
        .map_err(|e| ApiFailure::new(502, format!("The variables could not be read: {e}")))?;
    Ok((set, v))
}

async fn save_vars(
    viewer: &Viewer,
    space: &str,
    csrf: &str,
    set: &ferry_domain::VariableSet,
) -> Result<Value, ApiFailure> {
    let body = serde_json::to_value(set)
        .map_err(|e| ApiFailure::new(500, format!("The variables could not be sent: {e}")))?;
    viewer
        .send(
            Method::PUT,
            &format!("/api/{space}/variables/{}", set.id),
            csrf,
            Some(&body),
        )
        .await
}

/// "Environment: Production" tags of a variable's scope, with names from `ScopeValues`.
fn scope_tags(v: &ferry_domain::Variable, sv: &Value) -> Vec<String> {
    let names = |key: &str, ids: &[String]| -> Vec<String> {
        let list = sv.get(key).map(pairs).unwrap_or_default();
        ids.iter().map(|i| name_of(&list, i)).collect()
    };
    let sc = &v.scope;
    let mut out = Vec::new();
    for (label, vals) in [
        ("Environment", names("Environments", &sc.environment)),
        ("Role", sc.role.clone()),
        ("Target", names("Machines", &sc.machine)),
        ("Step", names("Actions", &sc.action)),
        ("Channel", names("Channels", &sc.channel)),
        ("Tenant", names("Tenants", &sc.tenant)),
        ("Tenant tag", sc.tenant_tag.clone()),
        ("Process", names("Processes", &sc.process_owner)),
    ] {
        for v in vals {
            out.push(format!("{label}: {v}"));
        }
    }
    out
}

fn var_errors(f: &Option<ApiFailure>) -> (String, u16, String, String, String) {
    match f {
        Some(f) => (
            f.text(),
            f.status,
            field_error(f, &["Name"]),
            field_error(f, &["Value", "sensitive"]),
            field_error(f, &["scope", "Scope"]),
        ),
        None => (
            String::new(),
            200,
            String::new(),
            String::new(),
            String::new(),
        ),
    }
}

async fn variables_page(
    viewer: &Viewer,
    space: &str,
    id: &str,
    form: VarForm,
    f: Option<ApiFailure>,
) -> PageResult {
    let (nav, project) = project_nav(viewer, space, id, "variables").await?;
    let target = project_target(&project);
    let libs_path = format!("/api/{space}/libraryvariablesets/all");
    let envs_path = format!("/api/{space}/environments/all");
    let (chrome, vars, libs, envs, [can_edit, can_edit_project]) = tokio::join!(
        viewer.chrome(space, "projects", format!("{} variables", nav.name)),
        load_vars(viewer, space, &nav.id),
        viewer.get(&libs_path),
        viewer.get(&envs_path),
        can_each(
            viewer,
            space,
            [Permission::VariableEdit, Permission::ProjectEdit],
            &target
        ),
    );
    let (set, raw) = vars?;
    let sv = raw.get("ScopeValues").cloned().unwrap_or(Value::Null);
    let mut rows: Vec<VarRow> = set
        .variables
        .iter()
        .map(|v| VarRow {
            id: v.id.clone(),
            name: v.name.clone(),
            value: if v.is_sensitive {
                String::new()
            } else {
                v.value.clone().unwrap_or_default()
            },
            sensitive: v.is_sensitive,
            scope: scope_tags(v, &sv),
            prompt: v.prompt.as_ref().map(|p| s(p, "Label")).unwrap_or_default(),
        })
        .collect();
    rows.sort_by_key(|a| a.name.to_lowercase());
    let included = strs(&project, "IncludedLibraryVariableSetIds");
    let libraries = pairs_of(&libs)
        .into_iter()
        .map(|(i, n)| {
            let on = included.contains(&i);
            (i, n, on)
        })
        .collect();
    let (error, status, err_name, err_value, err_scope) = var_errors(&f);
    let t = VariablesPage {
        chrome,
        nav,
        rows,
        environments: pairs_of(&envs),
        libraries,
        can_edit,
        can_edit_project,
        form,
        error,
        err_name,
        err_value,
        err_scope,
    };
    Ok(with_status(render(&t), status))
}

async fn variables(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    variables_page(&viewer, &space, &id, VarForm::default(), None).await
}

async fn add_variable(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let vf = VarForm::of_form(&form);
    let result = async {
        if vf.name.is_empty() {
            return Err(ApiFailure::new(400, "Every variable needs a Name"));
        }
        let (mut set, _) = load_vars(&viewer, &space, &id).await?;
        let mut v = ferry_domain::Variable::default();
        vf.apply(&mut v);
        set.variables.push(v);
        save_vars(&viewer, &space, &form.csrf(), &set).await
    }
    .await;
    match result {
        Ok(_) => Ok(see_other(&format!("/app/{space}/projects/{id}/variables"))),
        Err(f) => variables_page(&viewer, &space, &id, vf, Some(f)).await,
    }
}

async fn variable_page(
    viewer: &Viewer,
    space: &str,
    id: &str,
    var_id: &str,
    form: Option<VarForm>,
    f: Option<ApiFailure>,
) -> PageResult {
    let (nav, project) = project_nav(viewer, space, id, "variables").await?;
    let target = project_target(&project);
    let envs_path = format!("/api/{space}/environments/all");
    let (chrome, vars, envs, [can_edit]) = tokio::join!(
        viewer.chrome(space, "projects", format!("{} variables", nav.name)),
        load_vars(viewer, space, &nav.id),
        viewer.get(&envs_path),
        can_each(viewer, space, [Permission::VariableEdit], &target),
    );
    let (set, _) = vars?;
    let var = set
        .variables
        .iter()
        .find(|v| v.id == var_id)
        .ok_or_else(|| ApiFailure::new(404, format!("Variable '{var_id}' was not found")))?;
    let form = match form {
        Some(mut fm) => {
            fm.has_secret = var.is_sensitive;
            fm
        }
        None => VarForm::of_variable(var),
    };
    let (error, status, err_name, err_value, err_scope) = var_errors(&f);
    let t = VariablePage {
        chrome,
        nav,
        var_id: var_id.to_string(),
        environments: pairs_of(&envs),
        can_edit,
        form,
        error,
        err_name,
        err_value,
        err_scope,
    };
    Ok(with_status(render(&t), status))
}

async fn edit_variable(
    viewer: Viewer,
    Path((space, id, var)): Path<(String, String, String)>,
) -> PageResult {
    variable_page(&viewer, &space, &id, &var, None, None).await
}

async fn update_variable(
    viewer: Viewer,
    Path((space, id, var)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let vf = VarForm::of_form(&form);
    let result = async {
        if vf.name.is_empty() {
            return Err(ApiFailure::new(400, "Every variable needs a Name"));
        }
        let (mut set, _) = load_vars(&viewer, &space, &id).await?;
        let v = set
            .variables
            .iter_mut()
            .find(|v| v.id == var)
            .ok_or_else(|| ApiFailure::new(404, format!("Variable '{var}' was not found")))?;
        vf.apply(v);
        save_vars(&viewer, &space, &form.csrf(), &set).await
    }
    .await;
    match result {
        Ok(_) => Ok(see_other(&format!("/app/{space}/projects/{id}/variables"))),
        Err(f) => variable_page(&viewer, &space, &id, &var, Some(vf), Some(f)).await,
    }
}

async fn delete_variable(
    viewer: Viewer,
    Path((space, id, var)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let (mut set, _) = load_vars(&viewer, &space, &id).await?;
    set.variables.retain(|v| v.id != var);
    save_vars(&viewer, &space, &form.csrf(), &set).await?;
    Ok(see_other(&format!("/app/{space}/projects/{id}/variables")))
}

/// Puts the project back with `change` applied (its `Links` dropped).
async fn change_project(
    viewer: &Viewer,
    space: &str,
    id: &str,
    csrf: &str,
    change: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<Value, ApiFailure> {
    let path = format!("/api/{space}/projects/{id}");
    let mut project = viewer.get(&path).await?;
    if let Some(o) = project.as_object_mut() {
        o.remove("Links");
        change(o);
    }
    viewer.send(Method::PUT, &path, csrf, Some(&project)).await
}

async fn save_libraries(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let libs = form.all("library");
    change_project(&viewer, &space, &id, &form.csrf(), |o| {
        o.insert("IncludedLibraryVariableSetIds".into(), json!(libs));
    })
    .await?;
    Ok(see_other(&format!("/app/{space}/projects/{id}/variables")))
}

// ---------------------------------------------------------------------------------------------
// Channels.

struct ChannelRow {
    id: String,
    name: String,
    lifecycle: String,
    is_default: bool,
    rules: Vec<String>,
}

#[derive(Template)]
#[template(path = "projects/channels.html")]
struct ChannelsPage {
    chrome: Chrome,
    nav: ProjectNav,
    rows: Vec<ChannelRow>,
    lifecycles: Vec<(String, String)>,
    package_steps: Vec<String>,
    can_edit: bool,
    name: String,
    lifecycle: String,
    rule_action: String,
    rule_range: String,
    rule_tag: String,
    error: String,
    err_name: String,
    err_rule: String,
}

/// The names of the process's actions that deploy a package (for version rules and the trigger).
async fn package_actions(viewer: &Viewer, space: &str, project: &str) -> Vec<String> {
    match viewer
        .get(&format!(
            "/api/{space}/projects/{project}/deploymentprocesses"
        ))
        .await
    {
        Ok(p) => arr(&p, "Steps")
            .iter()
            .flat_map(|st| arr(st, "Actions").iter())
            .filter(|a| {
                s(a, "ActionType") == "Octopus.TentaclePackage"
                    || !arr(a, "Packages").is_empty()
                    || a.get("Properties")
                        .is_some_and(|p| !s(p, "Octopus.Action.Package.PackageId").is_empty())
            })
            .map(|a| s(a, "Name"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn channels_page(
    viewer: &Viewer,
    space: &str,
    id: &str,
    form: &FormData,
    f: Option<ApiFailure>,
) -> PageResult {
    let (nav, project) = project_nav(viewer, space, id, "channels").await?;
    let target = project_target(&project);
    let chans_path = format!("/api/{space}/projects/{}/channels?take=100", nav.id);
    let lifecycles_path = format!("/api/{space}/lifecycles/all");
    let (chrome, chans, lifecycles, package_steps, [can_edit]) = tokio::join!(
        viewer.chrome(space, "projects", format!("{} channels", nav.name)),
        viewer.get(&chans_path),
        viewer.get(&lifecycles_path),
        package_actions(viewer, space, &nav.id),
        can_each(viewer, space, [Permission::ProjectEdit], &target),
    );
    let chans = chans?;
    let lifecycles = pairs_of(&lifecycles);
    let project_lifecycle = name_of(&lifecycles, &s(&project, "LifecycleId"));
    let rows = items(&chans)
        .iter()
        .map(|c| {
            let lid = s(c, "LifecycleId");
            ChannelRow {
                id: s(c, "Id"),
                name: s(c, "Name"),
                lifecycle: if lid.is_empty() {
                    format!("{project_lifecycle} (the project's)")
                } else {
                    name_of(&lifecycles, &lid)
                },
                is_default: b(c, "IsDefault"),
                rules: arr(c, "Rules")
                    .iter()
                    .map(|r| {
                        let steps: Vec<String> = arr(r, "ActionPackages")
                            .iter()
                            .map(|ap| s(ap, "DeploymentAction"))
                            .collect();
                        let mut text = format!("{}:", steps.join(", "));
                        if !s(r, "VersionRange").is_empty() {
                            text.push_str(&format!(" versions {}", s(r, "VersionRange")));
                        }
                        if !s(r, "Tag").is_empty() {
                            text.push_str(&format!(" tag {}", s(r, "Tag")));
                        }
                        text
                    })
                    .collect(),
            }
        })
        .collect();
    let (error, status) = match &f {
        Some(f) => (f.text(), f.status),
        None => (String::new(), 200),
    };
    let fe = |keys: &[&str]| f.as_ref().map(|f| field_error(f, keys)).unwrap_or_default();
    let t = ChannelsPage {
        chrome,
        nav,
        rows,
        lifecycles,
        package_steps,
        can_edit,
        name: form.get("name"),
        lifecycle: form.get("lifecycle"),
        rule_action: form.get("rule_action"),
        rule_range: form.get("rule_range"),
        rule_tag: form.get("rule_tag"),
        err_name: fe(&["Name", "channel named"]),
        err_rule: fe(&["rule", "range", "Range", "Tag"]),
        error,
    };
    Ok(with_status(render(&t), status))
}

async fn channels(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    channels_page(&viewer, &space, &id, &FormData::default(), None).await
}

async fn create_channel(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let result = async {
        let project = viewer.get(&format!("/api/{space}/projects/{id}")).await?;
        let lifecycle = form.get("lifecycle");
        let action = form.get("rule_action");
        let rules = if action.is_empty() {
            json!([])
        } else {
            json!([{
                "VersionRange": form.get("rule_range"),
                "Tag": form.get("rule_tag"),
                "ActionPackages": [{"DeploymentAction": action, "PackageReference": ""}],
            }])
        };
        let body = json!({
            "ProjectId": s(&project, "Id"),
            "Name": form.get("name"),
            "Description": form.get("description"),
            "LifecycleId": if lifecycle.is_empty() { Value::Null } else { json!(lifecycle) },
            "Rules": rules,
        });
        viewer
            .send(
                Method::POST,
                &format!("/api/{space}/channels"),
                &form.csrf(),
                Some(&body),
            )
            .await
    }
    .await;
    match result {
        Ok(_) => Ok(see_other(&format!("/app/{space}/projects/{id}/channels"))),
        Err(f) => channels_page(&viewer, &space, &id, &form, Some(f)).await,
    }
}

async fn delete_channel(
    viewer: Viewer,
    Path((space, id, channel)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    viewer
        .send(
            Method::DELETE,
            &format!("/api/{space}/channels/{channel}"),
            &form.csrf(),
            None,
        )
        .await?;
    Ok(see_other(&format!("/app/{space}/projects/{id}/channels")))
}

// ---------------------------------------------------------------------------------------------
// Triggers: the built-in package trigger (a release when a package is pushed).

#[derive(Template)]
#[template(path = "projects/triggers.html")]
struct TriggersPage {
    chrome: Chrome,
    nav: ProjectNav,
    enabled: bool,
    action: String,
    channel: String,
    channel_name: String,
    package_steps: Vec<String>,
    channels: Vec<(String, String)>,
    can_edit: bool,
    error: String,
}

async fn triggers_page(
    viewer: &Viewer,
    space: &str,
    id: &str,
    f: Option<ApiFailure>,
) -> PageResult {
    let (nav, project) = project_nav(viewer, space, id, "triggers").await?;
    let target = project_target(&project);
    let chans_path = format!("/api/{space}/projects/{}/channels?take=100", nav.id);
    let (chrome, chans, package_steps, [can_edit]) = tokio::join!(
        viewer.chrome(space, "projects", format!("{} triggers", nav.name)),
        viewer.get(&chans_path),
        package_actions(viewer, space, &nav.id),
        can_each(viewer, space, [Permission::ProjectEdit], &target),
    );
    let channels = pairs_of(&chans);
    let strategy = project
        .get("ReleaseCreationStrategy")
        .cloned()
        .unwrap_or(Value::Null);
    let action = strategy
        .get("ReleaseCreationPackage")
        .map(|p| s(p, "DeploymentAction"))
        .unwrap_or_default();
    let channel = s(&strategy, "ChannelId");
    let (error, status) = match &f {
        Some(f) => (f.text(), f.status),
        None => (String::new(), 200),
    };
    let t = TriggersPage {
        chrome,
        nav,
        enabled: b(&project, "AutoCreateRelease"),
        channel_name: if channel.is_empty() {
            "the default channel".to_string()
        } else {
            name_of(&channels, &channel)
        },
        action,
        channel,
        package_steps,
        channels,
        can_edit,
        error,
    };
    Ok(with_status(render(&t), status))
}

async fn triggers(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    triggers_page(&viewer, &space, &id, None).await
}

async fn save_trigger(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let enabled = form.checked("enabled");
    let action = form.get("action");
    let channel = form.get("channel");
    if enabled && action.is_empty() {
        return triggers_page(
            &viewer,
            &space,
            &id,
            Some(ApiFailure::new(
                400,
                "Choose the package step whose pushed packages create releases",
            )),
        )
        .await;
    }
    let r = change_project(&viewer, &space, &id, &form.csrf(), |o| {
        o.insert("AutoCreateRelease".into(), json!(enabled));
        let mut strategy = o
            .get("ReleaseCreationStrategy")
            .cloned()
            .unwrap_or_else(|| json!({}));
        strategy["ReleaseCreationPackage"] = if action.is_empty() {
            Value::Null
        } else {
            json!({"DeploymentAction": action, "PackageReference": ""})
        };
        strategy["ChannelId"] = if channel.is_empty() {
            Value::Null
        } else {
            json!(channel)
        };
        o.insert("ReleaseCreationStrategy".into(), strategy);
    })
    .await;
    match r {
        Ok(_) => Ok(see_other(&format!("/app/{space}/projects/{id}/triggers"))),
        Err(f) => triggers_page(&viewer, &space, &id, Some(f)).await,
    }
}
