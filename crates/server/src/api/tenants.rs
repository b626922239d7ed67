//! Tenants (`/api/{space}/tenants`): customers or locations a project is deployed for, one
//! deployment per tenant. A tenant carries canonical tags (`Set/Tag`) and is connected, per
//! project, to environments of that project's lifecycles (`ProjectEnvironments`).
//!
//! Tenant variables (`/tenants/{id}/variables`, Octopus's legacy shape) fill the variable
//! templates of the connected projects (one value per environment) and of the library variable
//! sets those projects include (one value per tenant). Values live in one document per tenant
//! (`TenantVariables`, `tenantvariables-Tenants-1`); sensitive ones are sealed with
//! `variable_aad(tenant id, project_value_key | library_value_key)` and never returned. They
//! are not snapshotted: a deployment reads them when it runs.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_crypto::{seal, variable_aad};
use ferry_domain::ids::slugify;
use ferry_domain::lifecycle::{EnvRef, effective_phases};
use ferry_domain::tenant::{
    StoredValue, Template, TenantVariables, library_value_key, project_value_key, tags_match,
    tenant_variables_id,
};
use ferry_domain::{Channel, Environment, Lifecycle, Project, Tenant};
use ferry_store::{DocQuery, DocRow};
use serde_json::{Map, Value, json};

use super::libraryvariablesets::LibraryVariableSet;
use super::*;
use crate::input::{Body, JsonValue};

pub const C: &str = "Tenants";
pub const VARIABLES: &str = "TenantVariables";

pub fn render(space: &str, t: &Tenant) -> Value {
    let base = format!("/api/{space}/tenants/{}", t.id);
    with_links(
        t,
        links(
            base.clone(),
            &[
                ("Variables", format!("{base}/variables")),
                ("Web", format!("/app#/{space}/tenants/{}", t.id)),
            ],
        ),
    )
}

fn query(space: &str) -> DocQuery {
    DocQuery {
        space_id: Some(space.to_string()),
        ..DocQuery::new(C)
    }
}

/// Every tenant of a space, in creation order.
pub async fn all_tenants(st: &AppState, space: &str) -> ApiResult<Vec<Tenant>> {
    let (rows, _) = st.db.list_docs(&query(space)).await?;
    rows.iter().map(parse_body).collect()
}

/// Finds a tenant by id, slug or name.
pub async fn resolve(st: &AppState, space: &str, key: &str) -> ApiResult<Option<(DocRow, Tenant)>> {
    find(st, C, space, None, key.trim()).await
}

async fn resolve_or_404(st: &AppState, space: &str, key: &str) -> ApiResult<(DocRow, Tenant)> {
    resolve(st, space, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Tenant '{key}' was not found")))
}

const TEMPLATE: &str = "{?skip,projectId,tags,take,ids,clone,partialName,clonedFromTenantId}";

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let visible = crate::visibility::Visibility::of(
        &st,
        &ctx,
        Some(&space),
        crate::routes::Permission::TenantView,
    )
    .await?;
    let params = Params::parse(raw.as_deref());
    let base = format!("/api/{space}/tenants");
    let ids = params.list("ids");
    let tags = params.list("tags");
    let project = params.get("projectId").map(str::to_string);
    let partial = params.get("partialName").map(str::to_lowercase);
    let name = params.get("name").map(str::to_lowercase);
    let cloned = params.get("clonedFromTenantId").map(str::to_string);
    let matching: Vec<Tenant> = all_tenants(&st, &space)
        .await?
        .into_iter()
        .filter(|t| ids.is_empty() || ids.contains(&t.id))
        .filter(|t| {
            visible
                .as_ref()
                .is_none_or(|v| v.concerning(&space, None, None, Some(&t.id)))
        })
        .filter(|t| tags.is_empty() || tags_match(&tags, &t.tenant_tags))
        .filter(|t| {
            project
                .as_ref()
                .is_none_or(|p| t.project_environments.contains_key(p))
        })
        .filter(|t| {
            partial
                .as_ref()
                .is_none_or(|p| t.name.to_lowercase().contains(p))
        })
        .filter(|t| name.as_ref().is_none_or(|n| t.name.to_lowercase() == *n))
        .filter(|t| {
            cloned
                .as_ref()
                .is_none_or(|c| t.cloned_from_tenant_id.as_deref() == Some(c.as_str()))
        })
        .collect();
    let total = i64::try_from(matching.len()).unwrap_or(i64::MAX);
    // With `ids`, every match is returned (as the tasks endpoint does).
    let (skip, take) = if ids.is_empty() {
        (params.skip(), params.take())
    } else {
        (0, total.max(params.take()))
    };
    let items: Vec<Value> = matching
        .iter()
        .skip(usize::try_from(skip).unwrap_or(0))
        .take(usize::try_from(take).unwrap_or(0))
        .map(|t| render(&space, t))
        .collect();
    Ok(Json(crate::query::page(
        "Tenant",
        items,
        total,
        skip,
        take,
        &base,
        &format!("{base}{{/id}}{TEMPLATE}"),
    )))
}

pub async fn all(State(st): State<AppState>, Path(space): Path<String>) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    Ok(Json(
        list_all(&st, query(&space), |d| Ok(render(&space, &parse_body(d)?))).await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve_or_404(&st, &space, &id).await?;
    Ok(Json(render(&space, &t)))
}

/// The environments a project can be deployed to: those in the phases of its lifecycle and of
/// its channels' lifecycles.
pub async fn project_environments(
    st: &AppState,
    space: &str,
    project: &Project,
    envs: &[Environment],
) -> ApiResult<Vec<String>> {
    let refs: Vec<EnvRef> = envs
        .iter()
        .map(|e| EnvRef {
            id: e.id.clone(),
            name: e.name.clone(),
        })
        .collect();
    let mut lifecycles = vec![project.lifecycle_id.clone()];
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            owner_id: Some(project.id.clone()),
            ..DocQuery::new("Channels")
        })
        .await?;
    for r in &rows {
        let c: Channel = parse_body(r)?;
        if let Some(l) = c.lifecycle_id.filter(|l| !l.is_empty()) {
            if !lifecycles.contains(&l) {
                lifecycles.push(l);
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for id in lifecycles {
        let Some((_, l)) = find::<Lifecycle>(st, "Lifecycles", space, None, &id).await? else {
            continue;
        };
        for p in effective_phases(&l.phases, &refs) {
            for e in p.environments {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
    }
    Ok(out)
}

async fn space_environments(st: &AppState, space: &str) -> ApiResult<Vec<Environment>> {
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            ..DocQuery::new("Environments")
        })
        .await?;
    rows.iter().map(parse_body).collect()
}

/// Validates a tenant: name, tags (stored canonical), project connections (projects stored by
/// id, each tenanted, environments stored by id, each in one of the project's lifecycles).
async fn prepare(st: &AppState, space: &str, t: &mut Tenant) -> ApiResult<()> {
    t.name = require_name(&t.name, "tenant", 200)?;
    let mut errors = Vec::new();
    t.tenant_tags =
        super::tagsets::canonical_tags(st, space, &t.tenant_tags, "TenantTags", &mut errors)
            .await?;
    let envs = space_environments(st, space).await?;
    let mut connections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, wanted) in std::mem::take(&mut t.project_environments) {
        let Some((_, p)) = find::<Project>(st, "Projects", space, None, key.trim()).await? else {
            errors.push(format!(
                "ProjectEnvironments: the project '{key}' was not found in this space"
            ));
            continue;
        };
        if p.tenanted_deployment_mode == "Untenanted" {
            errors.push(format!(
                "ProjectEnvironments: the project '{}' does not allow tenanted deployments; change its tenanted deployment mode (TenantedDeploymentMode) to TenantedOrUntenanted or Tenanted before connecting tenants",
                p.name
            ));
            continue;
        }
        let allowed = project_environments(st, space, &p, &envs).await?;
        let mut ids: Vec<String> = Vec::new();
        for e in wanted.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let found = envs
                .iter()
                .find(|x| x.id == e || x.name.eq_ignore_ascii_case(e) || x.slug == e);
            match found {
                None => errors.push(format!(
                    "ProjectEnvironments: the environment '{e}' (project '{}') was not found in this space",
                    p.name
                )),
                Some(x) if !allowed.contains(&x.id) => errors.push(format!(
                    "ProjectEnvironments: the environment '{}' is not in the lifecycle of project '{}' (nor of its channels), so the tenant cannot be connected to it",
                    x.name, p.name
                )),
                Some(x) => {
                    if !ids.contains(&x.id) {
                        ids.push(x.id.clone());
                    }
                }
            }
        }
        connections.entry(p.id.clone()).or_default().extend(ids);
    }
    t.project_environments = connections;
    if errors.is_empty() {
        Ok(())
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
    }
}

fn tenant_row(t: &Tenant, seq: i64) -> ApiResult<DocRow> {
    doc_row(
        C,
        &t.id,
        &t.space_id,
        "",
        &t.name,
        &slugify(&t.name),
        0,
        seq,
        t,
    )
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut t): Body<Tenant>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    prepare(&st, &space, &mut t).await?;
    if let Some(c) = t.cloned_from_tenant_id.as_deref().filter(|c| !c.is_empty()) {
        let (_, from) = resolve(&st, &space, c).await?.ok_or_else(|| {
            ApiError::bad_request(format!(
                "ClonedFromTenantId: the tenant '{c}' was not found"
            ))
        })?;
        t.cloned_from_tenant_id = Some(from.id);
    } else {
        t.cloned_from_tenant_id = None;
    }
    let seq = next_seq(&st, C).await?;
    t.id = format!("{C}-{seq}");
    t.space_id = space.clone();
    let row = tenant_row(&t, seq)?;
    let name = t.name.clone();
    insert_audited(
        &st,
        &ctx,
        Named {
            what: "tenant",
            name: &name,
        },
        row,
        &t,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(render(&space, &t))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut t): Body<Tenant>,
) -> ApiResult<Json<Value>> {
    let (row, old) = resolve_or_404(&st, &space, &id).await?;
    t.id = old.id.clone();
    t.space_id = space.clone();
    t.cloned_from_tenant_id = old.cloned_from_tenant_id.clone();
    prepare(&st, &space, &mut t).await?;
    let new_row = tenant_row(&t, row.seq)?;
    let name = t.name.clone();
    update_audited(
        &st,
        &ctx,
        Named {
            what: "tenant",
            name: &name,
        },
        &row,
        new_row,
        &old,
        &t,
    )
    .await?;
    Ok(Json(render(&space, &t)))
}

/// What refers to a tenant by id: targets, accounts and variable scopes.
async fn tenant_usages(st: &AppState, space: &str, id: &str) -> ApiResult<Vec<String>> {
    let in_space = |c: &str| DocQuery {
        space_id: Some(space.to_string()),
        ..DocQuery::new(c)
    };
    let mut out = Vec::new();
    for (collection, what) in [("Machines", "deployment target"), ("Accounts", "account")] {
        let (rows, _) = st.db.list_docs(&in_space(collection)).await?;
        for r in rows {
            let v: Value = parse_body(&r)?;
            let uses = v
                .get("TenantIds")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(id)));
            if uses {
                out.push(format!("{what} '{}'", r.name));
            }
        }
    }
    let (rows, _) = st.db.list_docs(&in_space("VariableSets")).await?;
    for r in rows {
        let vs: ferry_domain::VariableSet = parse_body(&r)?;
        for v in vs
            .variables
            .iter()
            .filter(|v| v.scope.tenant.iter().any(|t| t == id))
        {
            out.push(format!("variable '{}' of {}", v.name, vs.owner_id));
        }
    }
    Ok(out)
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve_or_404(&st, &space, &id).await?;
    let users = tenant_usages(&st, &space, &t.id).await?;
    if !users.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Tenant '{}' cannot be deleted while {} refer to it; remove it there first",
            t.name,
            users.join(", ")
        )));
    }
    let mut tx = st.db.begin().await?;
    // Its variable values; deployments and tasks keep the tenant's id.
    tx.delete_docs_owned_by(&t.id).await?;
    tx.delete_doc(&t.id).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Deleted",
        format!("Tenant {} was deleted, with its variable values", t.name),
        &[&t.id],
        json!({"Document": t}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

// ---- tenant variables ----

/// The templates a tenant fills for one project: the project's own and its library sets'.
pub struct ProjectTemplates {
    pub project: Project,
    pub templates: Vec<Template>,
    pub raw_templates: Vec<Value>,
    pub libraries: Vec<LibraryVariableSet>,
}

/// Loads the project templates and the library sets a project includes.
pub async fn project_templates(
    st: &AppState,
    space: &str,
    project: Project,
) -> ApiResult<ProjectTemplates> {
    let mut libraries = Vec::new();
    for id in &project.included_library_variable_set_ids {
        if let Some(l) = super::libraryvariablesets::resolve(st, space, id).await? {
            libraries.push(l);
        }
    }
    Ok(ProjectTemplates {
        templates: project.templates.iter().map(Template::from_value).collect(),
        raw_templates: project.templates.clone(),
        project,
        libraries,
    })
}

async fn load_values(st: &AppState, t: &Tenant) -> ApiResult<(Option<DocRow>, TenantVariables)> {
    match st.db.get_doc(&tenant_variables_id(&t.id)).await? {
        Some(d) if d.collection == VARIABLES => {
            let v = parse_body(&d)?;
            Ok((Some(d), v))
        }
        _ => Ok((
            None,
            TenantVariables {
                id: tenant_variables_id(&t.id),
                space_id: t.space_id.clone(),
                tenant_id: t.id.clone(),
                ..TenantVariables::default()
            },
        )),
    }
}

/// A variable a tenant has no value for (and whose template has no default).
#[derive(Clone, Debug)]
pub struct MissingVariable {
    pub template: Template,
    pub project: Option<(String, String)>,
    pub library_set: Option<(String, String)>,
}

impl MissingVariable {
    pub fn describe(&self) -> String {
        match (&self.project, &self.library_set) {
            (_, Some((_, name))) => format!(
                "{} (common template of library variable set '{name}')",
                self.template.display()
            ),
            (Some((_, name)), None) => {
                format!("{} (template of project '{name}')", self.template.display())
            }
            _ => self.template.display(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "VariableTemplateId": self.template.id,
            "VariableTemplateName": self.template.name,
            "VariableTemplateLabel": self.template.label,
            "ProjectId": self.project.as_ref().map(|p| &p.0),
            "ProjectName": self.project.as_ref().map(|p| &p.1),
            "LibraryVariableSetId": self.library_set.as_ref().map(|l| &l.0),
            "LibraryVariableSetName": self.library_set.as_ref().map(|l| &l.1),
        })
    }
}

fn missing_in(pt: &ProjectTemplates, values: &TenantVariables, env: &str) -> Vec<MissingVariable> {
    let mut out = Vec::new();
    let project_values = values
        .project_variables
        .get(&pt.project.id)
        .and_then(|m| m.get(env));
    for t in &pt.templates {
        let has = project_values
            .and_then(|m| m.get(&t.id))
            .is_some_and(StoredValue::has_value);
        if !has && !t.has_default() {
            out.push(MissingVariable {
                template: t.clone(),
                project: Some((pt.project.id.clone(), pt.project.name.clone())),
                library_set: None,
            });
        }
    }
    for l in &pt.libraries {
        let lib_values = values.library_variables.get(&l.id);
        for t in l.templates.iter().map(Template::from_value) {
            let has = lib_values
                .and_then(|m| m.get(&t.id))
                .is_some_and(StoredValue::has_value);
            if !has && !t.has_default() {
                out.push(MissingVariable {
                    template: t,
                    project: Some((pt.project.id.clone(), pt.project.name.clone())),
                    library_set: Some((l.id.clone(), l.name.clone())),
                });
            }
        }
    }
    out
}

/// The variables `tenant` is missing to deploy `project` to `env`.
pub async fn missing_variables(
    st: &AppState,
    space: &str,
    tenant: &Tenant,
    project: &Project,
    env: &str,
) -> ApiResult<Vec<MissingVariable>> {
    let pt = project_templates(st, space, project.clone()).await?;
    let (_, values) = load_values(st, tenant).await?;
    Ok(missing_in(&pt, &values, env))
}

/// Checks that a deployment of `project` to `env` for `tenant` (or untenanted, `None`) is
/// allowed by the project's tenanted mode and the tenant's connections, that the tenant is
/// enabled, and that it has every tenant variable the deployment needs.
pub async fn check_deployment(
    st: &AppState,
    space: &str,
    project: &Project,
    env: &Environment,
    tenant: Option<&Tenant>,
) -> ApiResult<()> {
    let Some(t) = tenant else {
        if project.tenanted_deployment_mode == "Tenanted" {
            return Err(ApiError::bad_request(format!(
                "Project '{}' can only be deployed to tenants (its tenanted deployment mode is Tenanted): choose one or more tenants, or change the project's tenanted deployment mode",
                project.name
            )));
        }
        return Ok(());
    };
    if project.tenanted_deployment_mode == "Untenanted" {
        return Err(ApiError::bad_request(format!(
            "Project '{}' does not allow tenanted deployments (its tenanted deployment mode is Untenanted), so it cannot be deployed for tenant '{}': deploy it without a tenant, or change the project's tenanted deployment mode",
            project.name, t.name
        )));
    }
    if t.is_disabled {
        return Err(ApiError::bad_request(format!(
            "Tenant '{}' is disabled, so nothing can be deployed for it",
            t.name
        )));
    }
    if !t.is_connected(&project.id, &env.id) {
        return Err(ApiError::bad_request(format!(
            "Tenant '{}' is not connected to project '{}' in environment '{}'; connect it first (the tenant's ProjectEnvironments)",
            t.name, project.name, env.name
        )));
    }
    let missing = missing_variables(st, space, t, project, &env.id).await?;
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Tenant '{}' is missing values for {} tenant variable{} needed to deploy project '{}' to {}: {}. Set them in the tenant's variables (/api/{space}/tenants/{}/variables)",
            t.name,
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            project.name,
            env.name,
            missing
                .iter()
                .map(MissingVariable::describe)
                .collect::<Vec<_>>()
                .join("; "),
            t.id
        )));
    }
    Ok(())
}

/// How a stored value is shown: clear text, or the write-only shape for sensitive templates.
fn show_value(template: Option<&Template>, v: &StoredValue) -> Value {
    if template.is_some_and(Template::is_sensitive) || v.sealed_value.is_some() {
        json!({"HasValue": v.has_value(), "NewValue": null, "IsSensitive": true})
    } else {
        json!(v.value)
    }
}

/// The projects a tenant is connected to, with their templates.
async fn connected(st: &AppState, space: &str, t: &Tenant) -> ApiResult<Vec<ProjectTemplates>> {
    let mut out = Vec::new();
    for pid in t.project_environments.keys() {
        if let Some((_, p)) = find::<Project>(st, "Projects", space, None, pid).await? {
            out.push(project_templates(st, space, p).await?);
        }
    }
    Ok(out)
}

fn render_variables(
    space: &str,
    t: &Tenant,
    pts: &[ProjectTemplates],
    values: &TenantVariables,
) -> Value {
    let mut projects = Map::new();
    let mut libraries = Map::new();
    for pt in pts {
        let mut per_env = Map::new();
        for env in t
            .project_environments
            .get(&pt.project.id)
            .into_iter()
            .flatten()
        {
            let mut m = Map::new();
            if let Some(vals) = values
                .project_variables
                .get(&pt.project.id)
                .and_then(|x| x.get(env))
            {
                for (tid, v) in vals {
                    let tpl = pt.templates.iter().find(|x| &x.id == tid);
                    if tpl.is_some() {
                        m.insert(tid.clone(), show_value(tpl, v));
                    }
                }
            }
            per_env.insert(env.clone(), Value::Object(m));
        }
        projects.insert(
            pt.project.id.clone(),
            json!({
                "ProjectId": pt.project.id,
                "ProjectName": pt.project.name,
                "Templates": pt.raw_templates,
                "Variables": per_env,
                "Links": {"Project": format!("/api/{space}/projects/{}", pt.project.id)},
            }),
        );
        for l in &pt.libraries {
            if libraries.contains_key(&l.id) {
                continue;
            }
            let templates: Vec<Template> = l.templates.iter().map(Template::from_value).collect();
            let mut m = Map::new();
            if let Some(vals) = values.library_variables.get(&l.id) {
                for (tid, v) in vals {
                    let tpl = templates.iter().find(|x| &x.id == tid);
                    if tpl.is_some() {
                        m.insert(tid.clone(), show_value(tpl, v));
                    }
                }
            }
            libraries.insert(
                l.id.clone(),
                json!({
                    "LibraryVariableSetId": l.id,
                    "LibraryVariableSetName": l.name,
                    "Templates": l.templates,
                    "Variables": m,
                    "Links": {"LibraryVariableSet": format!("/api/{space}/libraryvariablesets/{}", l.id)},
                }),
            );
        }
    }
    json!({
        "TenantId": t.id,
        "TenantName": t.name,
        "SpaceId": space,
        "ProjectVariables": projects,
        "LibraryVariables": libraries,
        "Links": {"Self": format!("/api/{space}/tenants/{}/variables", t.id)},
    })
}

pub async fn get_variables(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve_or_404(&st, &space, &id).await?;
    let pts = connected(&st, &space, &t).await?;
    let (_, values) = load_values(&st, &t).await?;
    Ok(Json(render_variables(&space, &t, &pts, &values)))
}

/// A value as sent: `"x"`, `null`, or `{"NewValue": "x" | null, "HasValue": bool}` (keys in any
/// case). `Keep` means "the stored value stays" (a sensitive value sent back unchanged).
enum Incoming {
    Set(String),
    Keep,
    Clear,
}

fn incoming(v: &Value) -> Incoming {
    match v {
        Value::String(s) => Incoming::Set(s.clone()),
        Value::Bool(b) => Incoming::Set(if *b { "True" } else { "False" }.to_string()),
        Value::Number(n) => Incoming::Set(n.to_string()),
        Value::Object(o) => {
            let get = |k: &str| {
                o.iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v)
            };
            match get("NewValue") {
                Some(Value::String(s)) => Incoming::Set(s.clone()),
                Some(Value::Bool(b)) => {
                    Incoming::Set(if *b { "True" } else { "False" }.to_string())
                }
                Some(Value::Number(n)) => Incoming::Set(n.to_string()),
                _ => {
                    if get("HasValue").and_then(Value::as_bool).unwrap_or(false) {
                        Incoming::Keep
                    } else {
                        Incoming::Clear
                    }
                }
            }
        }
        _ => Incoming::Clear,
    }
}

/// Applies one incoming value to the new map, sealing sensitive ones. Returns whether something
/// changed (for the audit event, which names what changed, never values).
#[allow(clippy::too_many_arguments)]
fn apply_value(
    st: &AppState,
    tenant_id: &str,
    key: &str,
    template: &Template,
    incoming_value: &Value,
    old: Option<&StoredValue>,
    out: &mut BTreeMap<String, StoredValue>,
) -> bool {
    let new = match incoming(incoming_value) {
        Incoming::Keep => old.cloned(),
        Incoming::Clear => None,
        Incoming::Set(s) if s.is_empty() => None,
        Incoming::Set(s) if template.is_sensitive() => Some(StoredValue {
            value: None,
            sealed_value: Some(seal(&st.master_key, &variable_aad(tenant_id, key), &s)),
        }),
        Incoming::Set(s) => Some(StoredValue {
            value: Some(s),
            sealed_value: None,
        }),
    };
    let changed = match (&new, old) {
        (Some(n), Some(o)) => n.sealed_value.is_some() && n != o || n.value != o.value,
        (None, None) => false,
        _ => true,
    };
    if let Some(n) = new {
        out.insert(template.id.clone(), n);
    }
    changed
}

fn find_template<'a>(templates: &'a [Template], key: &str) -> Option<&'a Template> {
    templates
        .iter()
        .find(|t| t.id == key)
        .or_else(|| templates.iter().find(|t| t.name.eq_ignore_ascii_case(key)))
}

fn object_entries(v: Option<&Value>) -> Vec<(String, Value)> {
    v.and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Reads a member of a user-data object case-insensitively.
fn member<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
        .map(|(_, v)| v)
}

pub async fn put_variables(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve_or_404(&st, &space, &id).await?;
    let pts = connected(&st, &space, &t).await?;
    let (old_row, old) = load_values(&st, &t).await?;
    let mut new = TenantVariables {
        id: old.id.clone(),
        space_id: space.clone(),
        tenant_id: t.id.clone(),
        ..TenantVariables::default()
    };
    let mut errors = Vec::new();
    let mut changed: Vec<String> = Vec::new();
    for (pkey, pv) in object_entries(member(&body, "ProjectVariables")) {
        let Some(pt) = pts
            .iter()
            .find(|p| p.project.id == pkey || p.project.name.eq_ignore_ascii_case(&pkey))
        else {
            errors.push(format!(
                "ProjectVariables: the tenant '{}' is not connected to the project '{pkey}'",
                t.name
            ));
            continue;
        };
        let envs = t
            .project_environments
            .get(&pt.project.id)
            .cloned()
            .unwrap_or_default();
        for (env, vals) in object_entries(member(&pv, "Variables")) {
            if !envs.contains(&env) {
                errors.push(format!(
                    "ProjectVariables: the tenant '{}' is not connected to project '{}' in the environment '{env}'",
                    t.name, pt.project.name
                ));
                continue;
            }
            let old_env = old
                .project_variables
                .get(&pt.project.id)
                .and_then(|m| m.get(&env));
            let mut out = BTreeMap::new();
            for (tkey, v) in object_entries(Some(&vals)) {
                let Some(tpl) = find_template(&pt.templates, &tkey) else {
                    errors.push(format!(
                        "ProjectVariables: project '{}' has no variable template '{tkey}'",
                        pt.project.name
                    ));
                    continue;
                };
                let key = project_value_key(&pt.project.id, &env, &tpl.id);
                if apply_value(
                    &st,
                    &t.id,
                    &key,
                    tpl,
                    &v,
                    old_env.and_then(|m| m.get(&tpl.id)),
                    &mut out,
                ) {
                    changed.push(format!("{} / {} / {}", pt.project.name, env, tpl.name));
                }
            }
            if !out.is_empty() {
                new.project_variables
                    .entry(pt.project.id.clone())
                    .or_default()
                    .insert(env, out);
            }
        }
    }
    for (lkey, lv) in object_entries(member(&body, "LibraryVariables")) {
        let Some(l) = pts
            .iter()
            .flat_map(|p| p.libraries.iter())
            .find(|l| l.id == lkey || l.name.eq_ignore_ascii_case(&lkey))
        else {
            errors.push(format!(
                "LibraryVariables: no project the tenant '{}' is connected to includes the library variable set '{lkey}'",
                t.name
            ));
            continue;
        };
        let templates: Vec<Template> = l.templates.iter().map(Template::from_value).collect();
        let old_lib = old.library_variables.get(&l.id);
        let mut out = BTreeMap::new();
        for (tkey, v) in object_entries(member(&lv, "Variables")) {
            let Some(tpl) = find_template(&templates, &tkey) else {
                errors.push(format!(
                    "LibraryVariables: library variable set '{}' has no variable template '{tkey}'",
                    l.name
                ));
                continue;
            };
            let key = library_value_key(&l.id, &tpl.id);
            if apply_value(
                &st,
                &t.id,
                &key,
                tpl,
                &v,
                old_lib.and_then(|m| m.get(&tpl.id)),
                &mut out,
            ) {
                changed.push(format!("{} / {}", l.name, tpl.name));
            }
        }
        if !out.is_empty() {
            new.library_variables.insert(l.id.clone(), out);
        }
    }
    // Values that were stored and are no longer sent are removed.
    for (p, envs) in &old.project_variables {
        for (e, vals) in envs {
            for tid in vals.keys() {
                let kept = new
                    .project_variables
                    .get(p)
                    .and_then(|m| m.get(e))
                    .is_some_and(|m| m.contains_key(tid));
                if !kept {
                    changed.push(format!("{p} / {e} / {tid} (removed)"));
                }
            }
        }
    }
    for (l, vals) in &old.library_variables {
        for tid in vals.keys() {
            if !new
                .library_variables
                .get(l)
                .is_some_and(|m| m.contains_key(tid))
            {
                changed.push(format!("{l} / {tid} (removed)"));
            }
        }
    }
    if !errors.is_empty() {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        return Err(e);
    }
    let mut row = doc_row(VARIABLES, &new.id, &space, &t.id, &new.id, "", 0, 0, &new)?;
    let mut tx = st.db.begin().await?;
    match &old_row {
        Some(o) => {
            row.created_at = o.created_at;
            row.seq = o.seq;
            tx.update_doc(&row).await?;
        }
        None => tx.insert_doc(&row).await?,
    }
    audit(
        &mut tx,
        &ctx,
        &space,
        "Modified",
        format!("Variables of tenant {} were modified", t.name),
        &[&t.id],
        json!({"Changed": changed}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render_variables(&space, &t, &pts, &new)))
}

/// `GET /tenants/variables-missing{?tenantId,projectId,environmentId}`: for each tenant,
/// connected project and environment, the template values it lacks (no value, no default).
pub async fn variables_missing(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let params = Params::parse(raw.as_deref());
    let tenant_f = params.get("tenantId").map(str::to_string);
    let project_f = params.get("projectId").map(str::to_string);
    let env_f = params.get("environmentId").map(str::to_string);
    let mut out = Vec::new();
    for t in all_tenants(&st, &space).await? {
        if tenant_f.as_ref().is_some_and(|f| *f != t.id) {
            continue;
        }
        let (_, values) = load_values(&st, &t).await?;
        for pt in connected(&st, &space, &t).await? {
            if project_f.as_ref().is_some_and(|f| *f != pt.project.id) {
                continue;
            }
            for env in t
                .project_environments
                .get(&pt.project.id)
                .into_iter()
                .flatten()
            {
                if env_f.as_ref().is_some_and(|f| f != env) {
                    continue;
                }
                let missing = missing_in(&pt, &values, env);
                if !missing.is_empty() {
                    out.push(json!({
                        "TenantId": t.id,
                        "ProjectId": pt.project.id,
                        "EnvironmentId": env,
                        "MissingVariables": missing.iter().map(MissingVariable::to_json).collect::<Vec<_>>(),
                    }));
                }
            }
        }
    }
    Ok(Json(Value::Array(out)))
}

/// Gives variable templates ids when they have none and validates them: a name, unique within
/// the list, and a known control type. Used for project and library set templates.
pub fn prepare_templates(templates: &mut [Value], owner: &str) -> ApiResult<()> {
    let mut errors = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, t) in templates.iter_mut().enumerate() {
        let Some(o) = t.as_object_mut() else {
            errors.push(format!(
                "Templates: template {} of {owner} is not an object",
                i + 1
            ));
            continue;
        };
        let name = o
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        if name.is_empty() {
            errors.push(format!(
                "Templates: template {} of {owner} has no Name; please provide one (it becomes the variable's name)",
                i + 1
            ));
            continue;
        }
        if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            errors.push(format!(
                "Templates: {owner} has more than one template named '{name}'"
            ));
            continue;
        }
        names.push(name.clone());
        o.insert("Name".into(), json!(name));
        let has_id = o
            .get("Id")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty());
        if !has_id {
            o.insert("Id".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
        for k in ["Label", "HelpText"] {
            if !o.get(k).is_some_and(Value::is_string) {
                o.insert(k.into(), json!(""));
            }
        }
        let ct = o
            .get("DisplaySettings")
            .and_then(|d| d.get("Octopus.ControlType"))
            .and_then(Value::as_str)
            .map(str::to_string);
        match ct {
            None => {
                let mut ds = o
                    .get("DisplaySettings")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                ds.insert("Octopus.ControlType".into(), json!("SingleLineText"));
                o.insert("DisplaySettings".into(), Value::Object(ds));
            }
            Some(c) if !ferry_domain::tenant::CONTROL_TYPES.contains(&c.as_str()) => {
                errors.push(format!(
                    "Templates: the template '{name}' of {owner} has the control type '{c}'; use one of {}",
                    ferry_domain::tenant::CONTROL_TYPES.join(", ")
                ));
            }
            Some(_) => {}
        }
        // A sensitive template's default is never stored in clear.
        let sensitive = o
            .get("DisplaySettings")
            .and_then(|d| d.get("Octopus.ControlType"))
            .and_then(Value::as_str)
            == Some("Sensitive");
        if sensitive && o.get("DefaultValue").is_some_and(|d| !d.is_null()) {
            errors.push(format!(
                "Templates: the sensitive template '{name}' of {owner} cannot have a default value (it would be stored in clear); give each tenant a value instead"
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
    }
}
