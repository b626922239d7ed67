//! Variable sets (project variables). The full variable model (scopes, sensitive values,
//! library sets) grows on this shape: `Variables[]` with `Scope` keys in the singular.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, State};
use ferry_domain::VariableSet;
use ferry_domain::ids::variable_set_id;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "VariableSets";
pub const SNAPSHOTS: &str = "VariableSetSnapshots";

pub fn render(space: &str, v: &VariableSet) -> Value {
    let mut out = with_links(v, links(format!("/api/{space}/variables/{}", v.id), &[]));
    if let Some(o) = out.as_object_mut() {
        o.insert(
            "ScopeValues".to_string(),
            json!({"Environments": [], "Machines": [], "Actions": [], "Roles": [], "Channels": [], "TenantTags": [], "Processes": []}),
        );
    }
    out
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
            "Variable set '{id}' was not found"
        ))),
    }
}

pub async fn get_for_project(
    State(st): State<AppState>,
    Path((space, project)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, p) = super::projects::resolve(&st, &space, &project).await?;
    get(State(st), Path((space, variable_set_id(&p.id)))).await
}

pub async fn put(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut v): Body<VariableSet>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, VariableSet) = match st.db.get_doc(&id).await? {
        Some(d) if d.collection == C && d.space_id == space => {
            let t = parse_body(&d)?;
            (d, t)
        }
        Some(d) if d.collection == SNAPSHOTS => {
            return Err(ApiError::bad_request(
                "A release's variable snapshot cannot be changed",
            ));
        }
        _ => {
            return Err(ApiError::not_found(format!(
                "Variable set '{id}' was not found"
            )));
        }
    };
    if v.version != 0 && v.version != old.version {
        return Err(ApiError::conflict(format!(
            "The variable set was changed by someone else (version {} is current); reload it and try again",
            old.version
        )));
    }
    let mut ids = HashSet::new();
    for var in v.variables.iter_mut() {
        if var.name.trim().is_empty() {
            return Err(ApiError::bad_request("Every variable needs a Name"));
        }
        if var.id.is_empty() || !ids.insert(var.id.clone()) {
            var.id = uuid::Uuid::new_v4().to_string();
            ids.insert(var.id.clone());
        }
    }
    v.id = old.id.clone();
    v.space_id = space.clone();
    v.owner_id = old.owner_id.clone();
    v.version = old.version + 1;
    let mut tx = st.db.begin().await?;
    let mut r = doc_row(C, &v.id, &space, &v.owner_id, &v.id, "", 0, row.seq, &v)?;
    r.created_at = row.created_at;
    tx.update_doc(&r).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Modified",
        format!("Variable set {} was modified", v.id),
        &[&v.id, &v.owner_id],
        json!({"VariableCount": v.variables.len()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render(&space, &v)))
}
