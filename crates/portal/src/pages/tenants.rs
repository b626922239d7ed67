//! Tenants: the list (paged, filtered by name and tag) with a create form, and a tenant's page:
//! its tags and description, the projects and environments it is connected to (connect and
//! disconnect), its variables as a grid (project templates per environment, library set
//! templates once) with missing values marked, and edit and delete.
//!
//! Sensitive variable values are never read back: the API answers only whether one is set, the
//! page shows "••••••", and an empty field keeps the stored value when saving.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use ferry_server::authz::Target;
use ferry_server::routes::Permission;
use serde_json::{Map, Value, json};

use super::configuration::{Pager, field_error, items, pager, with_status};
use super::{Chrome, render};
use crate::PortalState;
use crate::ctx::{ApiFailure, FormData, PageResult, Viewer, see_other};
use crate::view::{arr, b, s, strs, url_encode};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route("/app/{space}/tenants", get(list).post(create))
        .route("/app/{space}/tenants/{id}", get(show).post(edit))
        .route("/app/{space}/tenants/{id}/delete", post(delete))
        .route("/app/{space}/tenants/{id}/connect", post(connect))
        .route("/app/{space}/tenants/{id}/disconnect", post(disconnect))
        .route("/app/{space}/tenants/{id}/variables", post(save_variables))
}

const PER_PAGE: i64 = 30;
/// Projects offered by the connect form at once.
const PROJECTS_SHOWN: i64 = 50;

/// A tag: its name as text; its colour only as a decoration.
pub struct TagView {
    pub canonical: String,
    /// For element ids.
    pub slug: String,
    pub name: String,
    pub set: String,
    pub color: String,
    pub checked: bool,
}

pub struct TagSetView {
    pub name: String,
    pub tags: Vec<TagView>,
}

/// A colour safe to put in a style attribute (`#rgb` / `#rrggbb`), else grey.
fn safe_color(c: &str) -> String {
    let ok = c.starts_with('#')
        && matches!(c.len(), 4 | 7)
        && c[1..].chars().all(|x| x.is_ascii_hexdigit());
    if ok {
        c.to_string()
    } else {
        "#777777".to_string()
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The tag sets of a space, with `checked` tags ticked.
fn tag_sets(sets: &Value, checked: &[String]) -> Vec<TagSetView> {
    items(sets)
        .iter()
        .map(|ts| TagSetView {
            name: s(ts, "Name"),
            tags: arr(ts, "Tags")
                .iter()
                .map(|t| {
                    let canonical = s(t, "CanonicalTagName");
                    TagView {
                        checked: checked.contains(&canonical),
                        slug: slug(&canonical),
                        canonical,
                        name: s(t, "Name"),
                        set: s(ts, "Name"),
                        color: safe_color(&s(t, "Color")),
                    }
                })
                .collect(),
        })
        .collect()
}

/// A tenant's tags as views (by canonical name, coloured from the tag sets).
fn tags_of(tenant: &Value, sets: &[TagSetView]) -> Vec<TagView> {
    strs(tenant, "TenantTags")
        .into_iter()
        .map(|c| {
            let found = sets
                .iter()
                .flat_map(|ts| ts.tags.iter())
                .find(|t| t.canonical == c);
            let (set, name) = c.split_once('/').unwrap_or(("", c.as_str()));
            TagView {
                name: found.map(|t| t.name.clone()).unwrap_or(name.to_string()),
                set: set.to_string(),
                color: found
                    .map(|t| t.color.clone())
                    .unwrap_or_else(|| safe_color("")),
                checked: true,
                slug: slug(&c),
                canonical: c,
            }
        })
        .collect()
}

// ---- the list ----

pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub disabled: bool,
    pub tags: Vec<TagView>,
}

#[derive(Default)]
struct NewTenant {
    name: String,
    description: String,
    tags: Vec<String>,
    error: String,
    name_error: String,
}

#[derive(Template)]
#[template(path = "tenants/list.html")]
struct ListPage {
    chrome: Chrome,
    tenants: Vec<TenantRow>,
    tag_sets: Vec<TagSetView>,
    filter_tags: Vec<(String, String)>,
    q: String,
    tag: String,
    pager: Pager,
    can_create: bool,
    form: NewTenant,
    filtered: bool,
}

#[derive(serde::Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    skip: i64,
}

async fn list(viewer: Viewer, Path(space): Path<String>, Query(q): Query<ListQuery>) -> PageResult {
    list_page(viewer, space, q, NewTenant::default(), None).await
}

async fn list_page(
    viewer: Viewer,
    space: String,
    q: ListQuery,
    form: NewTenant,
    status: Option<StatusCode>,
) -> PageResult {
    let skip = q.skip.max(0);
    let mut api = format!("/api/{space}/tenants?skip={skip}&take={PER_PAGE}");
    if !q.q.trim().is_empty() {
        api.push_str(&format!("&partialName={}", url_encode(q.q.trim())));
    }
    if !q.tag.is_empty() {
        api.push_str(&format!("&tags={}", url_encode(&q.tag)));
    }
    let sets_path = format!("/api/{space}/tagsets/all");
    let (chrome, tenants, sets, can_create) = tokio::join!(
        viewer.chrome(&space, "tenants", "Tenants"),
        viewer.get(&api),
        viewer.get(&sets_path),
        viewer.can(Some(&space), Permission::TenantCreate, &Target::ANY),
    );
    let tenants = tenants?;
    let sets = sets.unwrap_or(Value::Null);
    let all_sets = tag_sets(&sets, &form.tags);
    let rows = items(&tenants)
        .iter()
        .map(|t| TenantRow {
            id: s(t, "Id"),
            name: s(t, "Name"),
            description: s(t, "Description"),
            disabled: b(t, "IsDisabled"),
            tags: tags_of(t, &all_sets),
        })
        .collect();
    let filter_tags = all_sets
        .iter()
        .flat_map(|ts| ts.tags.iter())
        .map(|t| (t.canonical.clone(), format!("{} / {}", t.set, t.name)))
        .collect();
    let mut base = format!("/app/{space}/tenants?");
    for (k, v) in [("q", &q.q), ("tag", &q.tag)] {
        if !v.is_empty() {
            base.push_str(&format!("{k}={}&", url_encode(v)));
        }
    }
    let total = tenants
        .get("TotalResults")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let p = ListPage {
        chrome,
        tenants: rows,
        tag_sets: all_sets,
        filter_tags,
        filtered: !q.q.trim().is_empty() || !q.tag.is_empty(),
        q: q.q,
        tag: q.tag,
        pager: pager(&base, skip, PER_PAGE, total, "Tenants"),
        can_create,
        form,
    };
    Ok(with_status(render(&p), status))
}

async fn create(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let body = json!({
        "Name": form.get("tenant-name"),
        "Description": form.get("tenant-description"),
        "TenantTags": form.all("tenant-tags"),
    });
    let path = format!("/api/{space}/tenants");
    match viewer
        .send(Method::POST, &path, &form.csrf(), Some(&body))
        .await
    {
        Ok(t) => Ok(see_other(&format!("/app/{space}/tenants/{}", s(&t, "Id")))),
        Err(f) => {
            let nf = NewTenant {
                name: form.get("tenant-name"),
                description: form.get("tenant-description"),
                tags: form.all("tenant-tags"),
                error: f.text(),
                name_error: field_error(&f, &["Name", "name"]).unwrap_or_default(),
            };
            list_page(viewer, space, ListQuery::default(), nf, Some(status_of(&f))).await
        }
    }
}

use super::configuration::status_of;

// ---- one tenant ----

pub struct Connection {
    pub project_id: String,
    pub project_name: String,
    pub environments: Vec<String>,
}

/// One value cell of the variables grid.
pub struct VarCell {
    /// The form field's name (and, with a prefix, its id).
    pub field: String,
    pub input_id: String,
    /// What a screen reader hears for the input.
    pub label: String,
    pub sensitive: bool,
    pub has_value: bool,
    /// The clear value (never a sensitive one).
    pub value: String,
    pub missing: bool,
    pub default: String,
}

pub struct VarRow {
    pub name: String,
    pub label: String,
    pub cells: Vec<VarCell>,
}

pub struct VarProject {
    pub id: String,
    pub name: String,
    pub environments: Vec<String>,
    pub rows: Vec<VarRow>,
}

pub struct VarLibrary {
    pub name: String,
    pub rows: Vec<VarRow>,
}

#[derive(Default)]
struct TenantErrors {
    error: String,
    name_error: String,
    connect_error: String,
    vars_error: String,
    flash: String,
    /// The project search of the connect form.
    project_query: String,
    /// Posted values of the edit form, kept when it failed.
    name: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
}

#[derive(Template)]
#[template(path = "tenants/show.html")]
struct TenantPage {
    chrome: Chrome,
    id: String,
    name: String,
    description: String,
    disabled: bool,
    tags: Vec<TagView>,
    tag_sets: Vec<TagSetView>,
    edit_name: String,
    edit_description: String,
    connections: Vec<Connection>,
    connect_projects: Vec<(String, String)>,
    more_projects: bool,
    environments: Vec<(String, String)>,
    var_projects: Vec<VarProject>,
    var_libraries: Vec<VarLibrary>,
    missing: usize,
    can_edit: bool,
    can_delete: bool,
    err: TenantErrors,
}

/// A template's value as the API shows it: (has a value, clear value, sensitive).
fn value_of(v: Option<&Value>) -> (bool, String, bool) {
    match v {
        Some(Value::String(x)) => (!x.is_empty(), x.clone(), false),
        Some(Value::Object(o)) => (
            o.get("HasValue").and_then(Value::as_bool).unwrap_or(false),
            String::new(),
            o.get("IsSensitive")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        ),
        Some(Value::Bool(x)) => (true, if *x { "True" } else { "False" }.into(), false),
        Some(Value::Number(n)) => (true, n.to_string(), false),
        _ => (false, String::new(), false),
    }
}

fn var_cell(field: String, label: String, tpl: &Value, stored: Option<&Value>) -> VarCell {
    let t = ferry_domain::tenant::Template::from_value(tpl);
    let (has_value, value, stored_sensitive) = value_of(stored);
    let sensitive = t.is_sensitive() || stored_sensitive;
    VarCell {
        input_id: format!("var-{}", field.replace('|', "-")),
        field,
        label,
        sensitive,
        has_value,
        value: if sensitive { String::new() } else { value },
        missing: !has_value && !t.has_default(),
        default: if sensitive {
            String::new()
        } else {
            t.default_value.unwrap_or_default()
        },
    }
}

fn template_label(tpl: &Value) -> (String, String) {
    let name = s(tpl, "Name");
    let label = s(tpl, "Label");
    (
        name.clone(),
        if label.trim().is_empty() { name } else { label },
    )
}

/// The variables grid from the API's answer, with environment names.
fn variables_grid(
    vars: &Value,
    env_names: &HashMap<String, String>,
) -> (Vec<VarProject>, Vec<VarLibrary>) {
    let mut projects = Vec::new();
    if let Some(pv) = vars.get("ProjectVariables").and_then(Value::as_object) {
        for (pid, p) in pv {
            let env_ids: Vec<String> = p
                .get("Variables")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let env_label = |e: &String| env_names.get(e).cloned().unwrap_or_else(|| e.to_string());
            let rows = arr(p, "Templates")
                .iter()
                .map(|tpl| {
                    let (name, label) = template_label(tpl);
                    let tid = s(tpl, "Id");
                    let cells = env_ids
                        .iter()
                        .map(|e| {
                            let stored = p
                                .get("Variables")
                                .and_then(|m| m.get(e))
                                .and_then(|m| m.get(&tid));
                            var_cell(
                                format!("pv|{pid}|{e}|{tid}"),
                                format!("{label} in {}", env_label(e)),
                                tpl,
                                stored,
                            )
                        })
                        .collect();
                    VarRow { name, label, cells }
                })
                .collect();
            projects.push(VarProject {
                id: pid.clone(),
                name: s(p, "ProjectName"),
                environments: env_ids.iter().map(env_label).collect(),
                rows,
            });
        }
    }
    let mut libraries = Vec::new();
    if let Some(lv) = vars.get("LibraryVariables").and_then(Value::as_object) {
        for (lid, l) in lv {
            let rows = arr(l, "Templates")
                .iter()
                .map(|tpl| {
                    let (name, label) = template_label(tpl);
                    let tid = s(tpl, "Id");
                    let stored = l.get("Variables").and_then(|m| m.get(&tid));
                    VarRow {
                        cells: vec![var_cell(
                            format!("lv|{lid}|{tid}"),
                            label.clone(),
                            tpl,
                            stored,
                        )],
                        name,
                        label,
                    }
                })
                .collect();
            libraries.push(VarLibrary {
                name: s(l, "LibraryVariableSetName"),
                rows,
            });
        }
    }
    (projects, libraries)
}

#[derive(serde::Deserialize, Default)]
struct ShowQuery {
    #[serde(default)]
    saved: String,
    /// Finds projects to connect by name.
    #[serde(default)]
    pq: String,
}

async fn show(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    Query(q): Query<ShowQuery>,
) -> PageResult {
    let err = TenantErrors {
        flash: if q.saved.is_empty() {
            String::new()
        } else {
            "The tenant's variables were saved.".to_string()
        },
        project_query: q.pq,
        ..TenantErrors::default()
    };
    tenant_page(viewer, space, id, err, None).await
}

async fn tenant_page(
    viewer: Viewer,
    space: String,
    id: String,
    err: TenantErrors,
    status: Option<StatusCode>,
) -> PageResult {
    let tenant_path = format!("/api/{space}/tenants/{}", url_encode(&id));
    let vars_path = format!("{tenant_path}/variables");
    let sets_path = format!("/api/{space}/tagsets/all");
    let envs_path = format!("/api/{space}/environments/all");
    // A page of projects to connect (a search finds others): never every project.
    let mut projects_path = format!("/api/{space}/projects?take={PROJECTS_SHOWN}");
    if !err.project_query.trim().is_empty() {
        projects_path.push_str(&format!(
            "&partialName={}",
            url_encode(err.project_query.trim())
        ));
    }
    let checker = viewer.checker();
    let (tenant, vars, sets, envs, projects, checker) = tokio::join!(
        viewer.get(&tenant_path),
        viewer.get(&vars_path),
        viewer.get(&sets_path),
        viewer.get(&envs_path),
        viewer.get(&projects_path),
        checker,
    );
    let tenant = tenant?;
    let tid = s(&tenant, "Id");
    let mut chrome = viewer
        .chrome(&space, "tenants", format!("Tenant {}", s(&tenant, "Name")))
        .await;
    chrome.flash = err.flash.clone();
    let vars = vars.unwrap_or(Value::Null);
    let sets = sets.unwrap_or(Value::Null);
    let envs = envs.unwrap_or(Value::Null);
    let projects = projects.unwrap_or(Value::Null);
    let environments: Vec<(String, String)> = items(&envs)
        .iter()
        .map(|e| (s(e, "Id"), s(e, "Name")))
        .collect();
    let env_names: HashMap<String, String> = environments.iter().cloned().collect();
    let mut project_names: HashMap<String, String> = HashMap::new();
    if let Some(pv) = vars.get("ProjectVariables").and_then(Value::as_object) {
        for (pid, p) in pv {
            project_names.insert(pid.clone(), s(p, "ProjectName"));
        }
    }
    let connections: Vec<Connection> = tenant
        .get("ProjectEnvironments")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(pid, es)| Connection {
                    project_id: pid.clone(),
                    project_name: project_names
                        .get(pid)
                        .cloned()
                        .unwrap_or_else(|| pid.clone()),
                    environments: es
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(|e| env_names.get(e).cloned().unwrap_or(e.to_string()))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let connect_projects = items(&projects)
        .iter()
        .filter(|p| s(p, "TenantedDeploymentMode") != "Untenanted")
        .map(|p| (s(p, "Id"), s(p, "Name")))
        .collect();
    let checked = err
        .tags
        .clone()
        .unwrap_or_else(|| strs(&tenant, "TenantTags"));
    let all_sets = tag_sets(&sets, &checked);
    let tags = tags_of(&tenant, &all_sets);
    let (var_projects, var_libraries) = variables_grid(&vars, &env_names);
    let missing = var_projects
        .iter()
        .flat_map(|p| p.rows.iter())
        .chain(var_libraries.iter().flat_map(|l| l.rows.iter()))
        .flat_map(|r| r.cells.iter())
        .filter(|c| c.missing)
        .count();
    let target = Target {
        tenant: ferry_server::authz::TenantTarget::Tenant(tid.clone()),
        ..Target::ANY
    };
    let (can_edit, can_delete) = match &checker {
        Ok(c) => (
            c.can(Some(&space), Permission::TenantEdit, &target),
            c.can(Some(&space), Permission::TenantDelete, &target),
        ),
        Err(_) => (false, false),
    };
    let p = TenantPage {
        chrome,
        id: tid,
        name: s(&tenant, "Name"),
        description: s(&tenant, "Description"),
        disabled: b(&tenant, "IsDisabled"),
        tags,
        tag_sets: all_sets,
        edit_name: err.name.clone().unwrap_or_else(|| s(&tenant, "Name")),
        edit_description: err
            .description
            .clone()
            .unwrap_or_else(|| s(&tenant, "Description")),
        connections,
        connect_projects,
        more_projects: projects
            .get("TotalResults")
            .and_then(Value::as_i64)
            .is_some_and(|n| n > PROJECTS_SHOWN),
        environments,
        var_projects,
        var_libraries,
        missing,
        can_edit,
        can_delete,
        err,
    };
    Ok(with_status(render(&p), status))
}

/// The tenant as the API has it (for a read-modify-write).
async fn load(viewer: &Viewer, space: &str, id: &str) -> Result<Value, ApiFailure> {
    viewer
        .get(&format!("/api/{space}/tenants/{}", url_encode(id)))
        .await
}

async fn put_tenant(
    viewer: &Viewer,
    space: &str,
    id: &str,
    csrf: &str,
    t: &Value,
) -> Result<Value, ApiFailure> {
    viewer
        .send(
            Method::PUT,
            &format!("/api/{space}/tenants/{}", url_encode(id)),
            csrf,
            Some(t),
        )
        .await
}

async fn edit(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let mut t = load(&viewer, &space, &id).await?;
    t["Name"] = json!(form.get("tenant-name"));
    t["Description"] = json!(form.get("tenant-description"));
    t["TenantTags"] = json!(form.all("tenant-tags"));
    match put_tenant(&viewer, &space, &id, &form.csrf(), &t).await {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/tenants/{}",
            url_encode(&id)
        ))),
        Err(f) => {
            let err = TenantErrors {
                error: f.text(),
                name_error: field_error(&f, &["Name", "name"]).unwrap_or_default(),
                name: Some(form.get("tenant-name")),
                description: Some(form.get("tenant-description")),
                tags: Some(form.all("tenant-tags")),
                ..TenantErrors::default()
            };
            tenant_page(viewer, space, id, err, Some(status_of(&f))).await
        }
    }
}

async fn delete(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let path = format!("/api/{space}/tenants/{}", url_encode(&id));
    match viewer.send(Method::DELETE, &path, &form.csrf(), None).await {
        Ok(_) => Ok(see_other(&format!("/app/{space}/tenants"))),
        Err(f) => {
            let err = TenantErrors {
                error: f.text(),
                ..TenantErrors::default()
            };
            tenant_page(viewer, space, id, err, Some(status_of(&f))).await
        }
    }
}

async fn connect(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let project = form.get("connect-project");
    let envs = form.all("connect-environments");
    if project.is_empty() || envs.is_empty() {
        let err = TenantErrors {
            error: "Choose a project and at least one environment to connect.".into(),
            connect_error: "Choose a project and at least one environment.".into(),
            ..TenantErrors::default()
        };
        return tenant_page(viewer, space, id, err, Some(StatusCode::BAD_REQUEST)).await;
    }
    let mut t = load(&viewer, &space, &id).await?;
    let mut pe = t
        .get("ProjectEnvironments")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    pe.insert(project, json!(envs));
    t["ProjectEnvironments"] = Value::Object(pe);
    match put_tenant(&viewer, &space, &id, &form.csrf(), &t).await {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/tenants/{}#connections",
            url_encode(&id)
        ))),
        Err(f) => {
            let err = TenantErrors {
                error: f.text(),
                connect_error: f.text(),
                ..TenantErrors::default()
            };
            tenant_page(viewer, space, id, err, Some(status_of(&f))).await
        }
    }
}

async fn disconnect(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let project = form.get("project");
    let mut t = load(&viewer, &space, &id).await?;
    if let Some(pe) = t
        .get_mut("ProjectEnvironments")
        .and_then(Value::as_object_mut)
    {
        pe.remove(&project);
    }
    match put_tenant(&viewer, &space, &id, &form.csrf(), &t).await {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/tenants/{}#connections",
            url_encode(&id)
        ))),
        Err(f) => {
            let err = TenantErrors {
                error: f.text(),
                connect_error: f.text(),
                ..TenantErrors::default()
            };
            tenant_page(viewer, space, id, err, Some(status_of(&f))).await
        }
    }
}

/// What to send for one value: the typed value, "keep" for a sensitive value left empty, or
/// nothing (the value is removed). A field the form did not carry keeps its stored value.
fn outgoing(form: &FormData, field: &str, stored: Option<&Value>) -> Option<Value> {
    let (has_value, value, sensitive) = value_of(stored);
    let posted = form.0.iter().find(|(k, _)| k == field).map(|(_, v)| v);
    match posted {
        None if has_value => Some(if sensitive {
            json!({"HasValue": true})
        } else {
            json!(value)
        }),
        None => None,
        Some(v) if v.is_empty() => {
            if sensitive && has_value && !form.checked(&format!("clear|{field}")) {
                Some(json!({"HasValue": true}))
            } else {
                None
            }
        }
        Some(v) => {
            let v = v.replace("\r\n", "\n");
            Some(if sensitive {
                json!({"NewValue": v})
            } else {
                json!(v)
            })
        }
    }
}

async fn save_variables(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let path = format!("/api/{space}/tenants/{}/variables", url_encode(&id));
    let current = viewer.get(&path).await?;
    let mut projects = Map::new();
    if let Some(pv) = current.get("ProjectVariables").and_then(Value::as_object) {
        for (pid, p) in pv {
            let mut per_env = Map::new();
            if let Some(envs) = p.get("Variables").and_then(Value::as_object) {
                for (e, stored) in envs {
                    let mut vals = Map::new();
                    for tpl in arr(p, "Templates") {
                        let tid = s(tpl, "Id");
                        let sensitive =
                            ferry_domain::tenant::Template::from_value(tpl).is_sensitive();
                        let mut st = stored.get(&tid).cloned();
                        if sensitive && st.as_ref().is_some_and(Value::is_string) {
                            st = Some(json!({"HasValue": true, "IsSensitive": true}));
                        }
                        if let Some(v) =
                            outgoing(&form, &format!("pv|{pid}|{e}|{tid}"), st.as_ref())
                        {
                            vals.insert(tid, v);
                        }
                    }
                    per_env.insert(e.clone(), Value::Object(vals));
                }
            }
            projects.insert(pid.clone(), json!({"Variables": per_env}));
        }
    }
    let mut libraries = Map::new();
    if let Some(lv) = current.get("LibraryVariables").and_then(Value::as_object) {
        for (lid, l) in lv {
            let mut vals = Map::new();
            for tpl in arr(l, "Templates") {
                let tid = s(tpl, "Id");
                let stored = l.get("Variables").and_then(|m| m.get(&tid));
                if let Some(v) = outgoing(&form, &format!("lv|{lid}|{tid}"), stored) {
                    vals.insert(tid, v);
                }
            }
            libraries.insert(lid.clone(), json!({"Variables": vals}));
        }
    }
    let body = json!({"ProjectVariables": projects, "LibraryVariables": libraries});
    match viewer
        .send(Method::PUT, &path, &form.csrf(), Some(&body))
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/app/{space}/tenants/{}?saved=1#variables",
            url_encode(&id)
        ))),
        Err(f) => {
            let err = TenantErrors {
                error: f.text(),
                vars_error: f.text(),
                ..TenantErrors::default()
            };
            tenant_page(viewer, space, id, err, Some(status_of(&f))).await
        }
    }
}
