//! Projects. Creating one also creates its deployment process, its variable set and its
//! default channel, in one transaction. Lookup accepts id, slug or name (404 when none match,
//! which the Go CLI's name fallback relies on).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::ids::{deployment_process_id, slugify, variable_set_id};
use ferry_domain::{Channel, DeploymentProcess, Lifecycle, Project, ProjectGroup, VariableSet};
use ferry_store::{DocQuery, DocRow};
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "Projects";

pub fn render(space: &str, p: &Project) -> Value {
    let base = format!("/api/{space}/projects/{}", p.id);
    with_links(
        p,
        links(
            base.clone(),
            &[
                (
                    "Channels",
                    format!("{base}/channels{{/id}}{{?skip,take,partialName}}"),
                ),
                ("DeploymentProcess", format!("{base}/deploymentprocesses")),
                ("DeploymentSettings", format!("{base}/deploymentsettings")),
                (
                    "Releases",
                    format!("{base}/releases{{/version}}{{?skip,take,searchByVersion}}"),
                ),
                (
                    "Runbooks",
                    format!("{base}/runbooks{{?skip,take,partialName}}"),
                ),
                (
                    "Variables",
                    format!("/api/{space}/variables/{}", p.variable_set_id),
                ),
                ("Web", format!("/app#/{space}/projects/{}", p.slug)),
            ],
        ),
    )
}

pub fn render_row(space: &str, d: &DocRow) -> ApiResult<Value> {
    Ok(render(space, &parse_body(d)?))
}

fn query(space: &str) -> DocQuery {
    let mut q = DocQuery::new(C);
    q.space_id = Some(space.to_string());
    q
}

/// Finds a project by id, slug or name within a space; 404 otherwise.
pub async fn resolve(st: &AppState, space: &str, key: &str) -> ApiResult<(DocRow, Project)> {
    find(st, C, space, None, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Project '{key}' was not found")))
}

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
        crate::routes::Permission::ProjectView,
    )
    .await?;
    let base = format!("/api/{space}/projects");
    let template =
        format!("{base}{{/id}}{{?name,skip,ids,clone,take,partialName,clonedFromProjectId}}");
    Ok(Json(
        list_page_visible(
            &st,
            query(&space),
            &Params::parse(raw.as_deref()),
            "Project",
            &base,
            &template,
            visible.as_ref(),
            |d| render_row(&space, d),
        )
        .await?,
    ))
}

pub async fn all(State(st): State<AppState>, Path(space): Path<String>) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    Ok(Json(
        list_all(&st, query(&space), |d| render_row(&space, d)).await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, p) = resolve(&st, &space, &id).await?;
    Ok(Json(render(&space, &p)))
}

async fn check_refs(st: &AppState, space: &str, p: &mut Project) -> ApiResult<()> {
    // Tenant variable templates: ids given, names checked.
    let owner = format!("project '{}'", p.name.trim());
    super::tenants::prepare_templates(&mut p.templates, &owner)?;
    if p.project_group_id.is_empty() {
        let (rows, _) = st
            .db
            .list_docs(&DocQuery {
                space_id: Some(space.to_string()),
                take: Some(1),
                ..DocQuery::new("ProjectGroups")
            })
            .await?;
        p.project_group_id = rows.first().map(|r| r.id.clone()).ok_or_else(|| {
            ApiError::bad_request(
                "Please provide a ProjectGroupId; the space has no project groups",
            )
        })?;
    }
    if p.lifecycle_id.is_empty() {
        let (rows, _) = st
            .db
            .list_docs(&DocQuery {
                space_id: Some(space.to_string()),
                take: Some(1),
                ..DocQuery::new("Lifecycles")
            })
            .await?;
        p.lifecycle_id = rows.first().map(|r| r.id.clone()).ok_or_else(|| {
            ApiError::bad_request("Please provide a LifecycleId; the space has no lifecycles")
        })?;
    }
    if find::<ProjectGroup>(
        st,
        "ProjectGroups",
        space,
        None,
        &p.project_group_id.clone(),
    )
    .await?
    .map(|(_, g)| p.project_group_id = g.id)
    .is_none()
    {
        return Err(ApiError::bad_request(format!(
            "The project group '{}' does not exist in this space",
            p.project_group_id
        )));
    }
    if find::<Lifecycle>(st, "Lifecycles", space, None, &p.lifecycle_id.clone())
        .await?
        .map(|(_, l)| p.lifecycle_id = l.id)
        .is_none()
    {
        return Err(ApiError::bad_request(format!(
            "The lifecycle '{}' does not exist in this space",
            p.lifecycle_id
        )));
    }
    let mut included = Vec::with_capacity(p.included_library_variable_set_ids.len());
    for key in &p.included_library_variable_set_ids {
        match super::libraryvariablesets::resolve(st, space, key.trim()).await? {
            Some(l) if !included.contains(&l.id) => included.push(l.id),
            Some(_) => {}
            None => {
                return Err(ApiError::bad_request(format!(
                    "The library variable set '{key}' in IncludedLibraryVariableSetIds does not exist in this space"
                )));
            }
        }
    }
    p.included_library_variable_set_ids = included;
    if !matches!(
        p.tenanted_deployment_mode.as_str(),
        "Untenanted" | "TenantedOrUntenanted" | "Tenanted"
    ) {
        return Err(ApiError::bad_request(format!(
            "TenantedDeploymentMode '{}' is not one of Untenanted, TenantedOrUntenanted, Tenanted",
            p.tenanted_deployment_mode
        )));
    }
    Ok(())
}

fn project_row(p: &Project, seq: i64) -> ApiResult<DocRow> {
    let mut r = doc_row(C, &p.id, &p.space_id, "", &p.name, &p.slug, 0, seq, p)?;
    r.ref1 = p.project_group_id.clone();
    r.ref2 = p.lifecycle_id.clone();
    Ok(r)
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut p): Body<Project>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let name = require_name(&p.name, "project", 200)?;
    check_refs(&st, &space, &mut p).await?;
    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq(C).await?;
    p.id = format!("{C}-{seq}");
    p.space_id = space.clone();
    p.name = name.clone();
    p.slug = slugify(&name);
    p.deployment_process_id = deployment_process_id(&p.id);
    p.variable_set_id = variable_set_id(&p.id);
    tx.insert_doc(&project_row(&p, seq)?)
        .await
        .map_err(|e| name_conflict(e, "project", &name))?;
    let process = DeploymentProcess {
        id: p.deployment_process_id.clone(),
        space_id: space.clone(),
        project_id: p.id.clone(),
        version: 0,
        last_snapshot_id: None,
        steps: Vec::new(),
    };
    tx.insert_doc(&doc_row(
        "DeploymentProcesses",
        &process.id,
        &space,
        &p.id,
        &process.id,
        "",
        0,
        seq,
        &process,
    )?)
    .await?;
    let vars = VariableSet {
        id: p.variable_set_id.clone(),
        space_id: space.clone(),
        owner_id: p.id.clone(),
        version: 0,
        variables: Vec::new(),
    };
    tx.insert_doc(&doc_row(
        "VariableSets",
        &vars.id,
        &space,
        &p.id,
        &vars.id,
        "",
        0,
        seq,
        &vars,
    )?)
    .await?;
    let cseq = tx.next_seq("Channels").await?;
    let channel = Channel {
        id: format!("Channels-{cseq}"),
        space_id: space.clone(),
        project_id: p.id.clone(),
        name: "Default".to_string(),
        slug: "default".to_string(),
        is_default: true,
        ..Channel::default()
    };
    tx.insert_doc(&doc_row(
        "Channels",
        &channel.id,
        &space,
        &p.id,
        &channel.name,
        &channel.slug,
        0,
        cseq,
        &channel,
    )?)
    .await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Created",
        format!("Project {} was created", p.name),
        &[&p.id],
        json!({"Document": p}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render(&space, &p))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut p): Body<Project>,
) -> ApiResult<Json<Value>> {
    let (row, old) = resolve(&st, &space, &id).await?;
    let name = require_name(&p.name, "project", 200)?;
    check_refs(&st, &space, &mut p).await?;
    p.id = old.id.clone();
    p.space_id = space.clone();
    p.name = name.clone();
    p.slug = slugify(&name);
    p.deployment_process_id = old.deployment_process_id.clone();
    p.variable_set_id = old.variable_set_id.clone();
    let mut new_row = project_row(&p, row.seq)?;
    new_row.created_at = row.created_at;
    // The audit event holds the changed fields only, secrets as salted hashes.
    let diff = crate::audit_diff::diff_of(&old, &p, &crate::audit_diff::salt(&st.master_key));
    let mut tx = st.db.begin().await?;
    tx.update_doc(&new_row)
        .await
        .map_err(|e| name_conflict(e, "project", &name))?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Modified",
        format!("Project {name} was modified"),
        &[&p.id],
        json!({"Diff": diff}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render(&space, &p)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, p) = resolve(&st, &space, &id).await?;
    let (tasks, _) = st
        .db
        .list_tasks(&ferry_store::TaskQuery {
            project_id: Some(p.id.clone()),
            ..ferry_store::TaskQuery::default()
        })
        .await?;
    if tasks.iter().any(|t| {
        !matches!(
            t.state.as_str(),
            "Success" | "Failed" | "Canceled" | "TimedOut"
        )
    }) {
        return Err(ApiError::bad_request(format!(
            "Project {} has a deployment queued or in progress; wait for it or cancel it first",
            p.name
        )));
    }
    let mut tx = st.db.begin().await?;
    tx.delete_docs_owned_by(&p.id).await?;
    tx.delete_doc(&p.id).await?;
    // Its deployments' tasks and logs, and its dashboard cells, go too.
    for t in &tasks {
        tx.delete_task(&t.id).await?;
    }
    tx.rebuild_dashboard_project(&p.id).await?;
    audit(&mut tx, &ctx, &space, "Deleted", format!("Project {} was deleted, with its process, variables, channels, releases and deployments", p.name), &[&p.id], json!({"Document": p})).await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}
