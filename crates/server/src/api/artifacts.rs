//! Artifacts: files scripts collected with `new_octopusartifact` / `createartifact`, stored by
//! the executor (`ferry_executor::artifacts`): `Artifacts` documents (Octopus's shape) and their
//! bytes in `ArtifactContents`. `regarding` lists those related to a document (the task, the
//! deployment, the release, the project or the environment).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ferry_executor::artifacts::{Artifact, COLLECTION, CONTENTS, content_id, decode_content};
use ferry_store::DocQuery;
use serde_json::{Value, json};

use super::*;

fn render(space: &str, a: &Artifact) -> Value {
    let base = format!("/api/{space}/artifacts/{}", a.id);
    with_links(
        a,
        links(base.clone(), &[("Content", format!("{base}/content"))]),
    )
}

async fn load_artifact(st: &AppState, space: &str, id: &str) -> ApiResult<Artifact> {
    Ok(load::<Artifact>(st, COLLECTION, space, id, "Artifact")
        .await?
        .1)
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let params = Params::parse(raw.as_deref());
    let regarding = params.get("regarding").map(str::to_string);
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.clone()),
            ..DocQuery::new(COLLECTION)
        })
        .await?;
    let mut items = Vec::new();
    for r in &rows {
        let a: Artifact = parse_body(r)?;
        let matches = regarding.as_deref().is_none_or(|id| {
            a.server_task_id == id || a.related_document_ids.iter().any(|r| r == id)
        });
        if matches {
            items.push(a);
        }
    }
    // Only those of tasks the caller may see.
    let visible = crate::visibility::Visibility::of(
        &st,
        &ctx,
        Some(&space),
        crate::routes::Permission::ArtifactView,
    )
    .await?;
    if let Some(v) = &visible {
        let tasks: Vec<String> = items.iter().map(|a| a.server_task_id.clone()).collect();
        let seen = v.visible_tasks(&st, &tasks).await?;
        items.retain(|a| seen.contains(&a.server_task_id));
    }
    // Newest first, as Octopus lists them.
    items.sort_by_key(|a| std::cmp::Reverse(id_seq(&a.id)));
    let total = items.len() as i64;
    let (skip, take) = (params.skip(), params.take());
    let page_items = items
        .iter()
        .skip(usize::try_from(skip).unwrap_or(0))
        .take(usize::try_from(take).unwrap_or(usize::MAX))
        .map(|a| render(&space, a))
        .collect();
    let base = format!("/api/{space}/artifacts");
    Ok(Json(crate::query::page(
        "Artifact",
        page_items,
        total,
        skip,
        take,
        &base,
        &format!("{base}{{/id}}{{?regarding,skip,take,order}}"),
    )))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(render(
        &space,
        &load_artifact(&st, &space, &id).await?,
    )))
}

pub async fn content(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let a = load_artifact(&st, &space, &id).await?;
    let body = match st.db.get_doc(&content_id(&a.id)).await? {
        Some(d) if d.collection == CONTENTS => d.body,
        _ => {
            return Err(ApiError::not_found(format!(
                "The content of artifact '{id}' was not found"
            )));
        }
    };
    let bytes = decode_content(&body).map_err(ApiError::internal)?;
    let safe: String = a
        .filename
        .chars()
        .map(|c| if c == '"' || c.is_control() { '_' } else { c })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let a = load_artifact(&st, &space, &id).await?;
    let mut tx = st.db.begin().await?;
    tx.delete_docs_owned_by(&a.id).await?;
    tx.delete_doc(&a.id).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Deleted",
        format!("Artifact {} was deleted", a.filename),
        &[&a.id, &a.server_task_id],
        json!({"Document": a}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}
