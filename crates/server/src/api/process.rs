//! Deployment processes: a project's ordered steps. Reads also serve release snapshots
//! (`deploymentprocess-Projects-1-s-3-ABCDE`). Updates are validated, get ids for new steps and
//! actions, and bump `Version`; a stale `Version` is a 409.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use ferry_domain::DeploymentProcess;
use ferry_domain::ids::{deployment_process_id, slugify};
use ferry_store::DocQuery;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "DeploymentProcesses";
pub const SNAPSHOTS: &str = "DeploymentProcessSnapshots";

pub fn render(space: &str, p: &DeploymentProcess) -> Value {
    let base = format!("/api/{space}/deploymentprocesses/{}", p.id);
    with_links(
        p,
        links(
            base,
            &[("Project", format!("/api/{space}/projects/{}", p.project_id))],
        ),
    )
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/deploymentprocesses");
    let q = DocQuery {
        space_id: Some(space.clone()),
        ..DocQuery::new(C)
    };
    Ok(Json(
        list_page(
            &st,
            q,
            &Params::parse(raw.as_deref()),
            "DeploymentProcess",
            &base,
            &format!("{base}{{/id}}{{?skip,take,ids}}"),
            |d| Ok(render(&space, &parse_body(d)?)),
        )
        .await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    match st.db.get_doc(&id).await? {
        Some(d) if (d.collection == C || d.collection == SNAPSHOTS) && d.space_id == space => {
            Ok(Json(render(&space, &parse_body(&d)?)))
        }
        _ => Err(ApiError::not_found(format!(
            "Deployment process '{id}' was not found"
        ))),
    }
}

pub async fn get_for_project(
    State(st): State<AppState>,
    Path((space, project)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, p) = super::projects::resolve(&st, &space, &project).await?;
    get(State(st), Path((space, deployment_process_id(&p.id)))).await
}

pub async fn put_for_project(
    State(st): State<AppState>,
    Path((space, project)): Path<(String, String)>,
    ctx: Ctx,
    body: Body<DeploymentProcess>,
) -> ApiResult<Json<Value>> {
    let (_, p) = super::projects::resolve(&st, &space, &project).await?;
    put(
        State(st),
        Path((space, deployment_process_id(&p.id))),
        ctx,
        body,
    )
    .await
}

/// Checks a process and fills in generated ids, slugs and default names.
pub fn validate(process: &mut DeploymentProcess) -> ApiResult<()> {
    let mut step_names = HashSet::new();
    let mut action_names = HashSet::new();
    for (i, step) in process.steps.iter_mut().enumerate() {
        let n = i + 1;
        if step.name.trim().is_empty() {
            return Err(ApiError::bad_request(format!("Step {n} has no Name")));
        }
        step.name = step.name.trim().to_string();
        if !step_names.insert(step.name.to_lowercase()) {
            return Err(ApiError::bad_request(format!(
                "Step names must be unique; '{}' is used twice",
                step.name
            )));
        }
        if step.id.is_empty() {
            step.id = uuid::Uuid::new_v4().to_string();
        }
        step.slug = slugify(&step.name);
        if !matches!(
            step.condition.as_str(),
            "Success" | "Failure" | "Always" | "Variable"
        ) {
            return Err(ApiError::bad_request(format!(
                "Step '{}': Condition '{}' is not one of Success, Failure, Always, Variable",
                step.name, step.condition
            )));
        }
        if !matches!(
            step.start_trigger.as_str(),
            "StartAfterPrevious" | "StartWithPrevious"
        ) {
            return Err(ApiError::bad_request(format!(
                "Step '{}': StartTrigger '{}' is not one of StartAfterPrevious, StartWithPrevious",
                step.name, step.start_trigger
            )));
        }
        if step.actions.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Step '{}' has no actions",
                step.name
            )));
        }
        let single = step.actions.len() == 1;
        for action in step.actions.iter_mut() {
            if action.name.trim().is_empty() {
                if single {
                    action.name = step.name.clone();
                } else {
                    return Err(ApiError::bad_request(format!(
                        "An action of step '{}' has no Name",
                        step.name
                    )));
                }
            }
            if !action_names.insert(action.name.to_lowercase()) {
                return Err(ApiError::bad_request(format!(
                    "Action names must be unique; '{}' is used twice",
                    action.name
                )));
            }
            if action.action_type.trim().is_empty() {
                return Err(ApiError::bad_request(format!(
                    "Action '{}' has no ActionType",
                    action.name
                )));
            }
            if action.id.is_empty() {
                action.id = uuid::Uuid::new_v4().to_string();
            }
            action.slug = slugify(&action.name);
            for pkg in action.packages.iter_mut() {
                if pkg.id.is_empty() {
                    pkg.id = uuid::Uuid::new_v4().to_string();
                }
            }
        }
    }
    Ok(())
}

pub async fn put(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut p): Body<DeploymentProcess>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, DeploymentProcess) = match st.db.get_doc(&id).await? {
        Some(d) if d.collection == C && d.space_id == space => {
            let t = parse_body(&d)?;
            (d, t)
        }
        Some(d) if d.collection == SNAPSHOTS => {
            return Err(ApiError::bad_request(
                "A release's process snapshot cannot be changed",
            ));
        }
        _ => {
            return Err(ApiError::not_found(format!(
                "Deployment process '{id}' was not found"
            )));
        }
    };
    if p.version != 0 && p.version != old.version {
        return Err(ApiError::conflict(format!(
            "The deployment process was changed by someone else (version {} is current, the request was based on {}); reload it and try again",
            old.version, p.version
        )));
    }
    validate(&mut p)?;
    // Steps using step templates: the template and pinned version must exist.
    super::actiontemplates::check_process(&st, &space, &mut p).await?;
    // Tenant tags on steps must exist; they are stored canonical (`Set/Tag`).
    let mut errors = Vec::new();
    for step in &mut p.steps {
        for action in &mut step.actions {
            if action.tenant_tags.is_empty() {
                continue;
            }
            let field = format!("Step '{}' TenantTags", step.name);
            action.tenant_tags = super::tagsets::canonical_tags(
                &st,
                &space,
                &action.tenant_tags,
                &field,
                &mut errors,
            )
            .await?;
        }
    }
    if !errors.is_empty() {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        return Err(e);
    }
    p.id = old.id.clone();
    p.space_id = space.clone();
    p.project_id = old.project_id.clone();
    p.last_snapshot_id = old.last_snapshot_id.clone();
    p.version = old.version + 1;
    let mut tx = st.db.begin().await?;
    let mut r = doc_row(C, &p.id, &space, &p.project_id, &p.id, "", 0, row.seq, &p)?;
    r.created_at = row.created_at;
    tx.update_doc(&r).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Modified",
        format!(
            "Deployment process of {} was modified (version {})",
            p.project_id, p.version
        ),
        &[&p.id, &p.project_id],
        json!({"Before": old, "After": p}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render(&space, &p)))
}
