//! Channels: per project; exactly one default channel per project.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::Channel;
use ferry_domain::ids::slugify;
use ferry_store::DocQuery;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "Channels";

pub fn render(space: &str, c: &Channel) -> Value {
    let base = format!("/api/{space}/channels/{}", c.id);
    with_links(
        c,
        links(
            base,
            &[
                ("Project", format!("/api/{space}/projects/{}", c.project_id)),
                (
                    "Releases",
                    format!(
                        "/api/{space}/channels/{}/releases{{?skip,take,searchByVersion}}",
                        c.id
                    ),
                ),
            ],
        ),
    )
}

/// The project's default channel, or the named/id'd one.
pub async fn resolve(
    st: &AppState,
    space: &str,
    project_id: &str,
    key: Option<&str>,
) -> ApiResult<Channel> {
    match key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) => match find::<Channel>(st, C, space, Some(project_id), k).await? {
            Some((_, c)) => Ok(c),
            None => Err(ApiError::bad_request(format!(
                "The channel '{k}' was not found in the project"
            ))),
        },
        None => {
            let (rows, _) = st
                .db
                .list_docs(&DocQuery {
                    space_id: Some(space.to_string()),
                    owner_id: Some(project_id.to_string()),
                    ..DocQuery::new(C)
                })
                .await?;
            let channels: Vec<Channel> = rows.iter().map(parse_body).collect::<ApiResult<_>>()?;
            channels
                .iter()
                .find(|c| c.is_default)
                .or(channels.first())
                .cloned()
                .ok_or_else(|| ApiError::bad_request("The project has no channel"))
        }
    }
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/channels");
    let q = DocQuery {
        space_id: Some(space.clone()),
        ..DocQuery::new(C)
    };
    Ok(Json(
        list_page(
            &st,
            q,
            &Params::parse(raw.as_deref()),
            "Channel",
            &base,
            &list_template(&base),
            |d| Ok(render(&space, &parse_body(d)?)),
        )
        .await?,
    ))
}

pub async fn for_project(
    State(st): State<AppState>,
    Path((space, project)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let (_, p) = super::projects::resolve(&st, &space, &project).await?;
    let base = format!("/api/{space}/projects/{}/channels", p.id);
    let q = DocQuery {
        space_id: Some(space.clone()),
        owner_id: Some(p.id.clone()),
        ..DocQuery::new(C)
    };
    Ok(Json(
        list_page(
            &st,
            q,
            &Params::parse(raw.as_deref()),
            "Channel",
            &base,
            &list_template(&base),
            |d| Ok(render(&space, &parse_body(d)?)),
        )
        .await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, c): (_, Channel) = load(&st, C, &space, &id, "Channel").await?;
    Ok(Json(render(&space, &c)))
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut c): Body<Channel>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = require_name(&c.name, "channel", 200)?;
    let (_, p) = super::projects::resolve(&st, &space, &c.project_id)
        .await
        .map_err(|_| {
            ApiError::bad_request(format!("The project '{}' does not exist", c.project_id))
        })?;
    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq(C).await?;
    c.id = format!("{C}-{seq}");
    c.space_id = space.clone();
    c.project_id = p.id.clone();
    c.name = name.clone();
    c.slug = slugify(&name);
    c.is_default = false;
    tx.insert_doc(&doc_row(
        C, &c.id, &space, &p.id, &c.name, &c.slug, 0, seq, &c,
    )?)
    .await
    .map_err(|e| name_conflict(e, "channel", &name))?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Created",
        format!("Channel {} of project {} was created", c.name, p.name),
        &[&c.id, &p.id],
        json!({"Document": c}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render(&space, &c))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut c): Body<Channel>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, Channel) = load(&st, C, &space, &id, "Channel").await?;
    let name = require_name(&c.name, "channel", 200)?;
    c.id = old.id.clone();
    c.space_id = space.clone();
    c.project_id = old.project_id.clone();
    c.name = name.clone();
    c.slug = slugify(&name);
    c.is_default = old.is_default;
    let mut tx = st.db.begin().await?;
    let mut r = doc_row(
        C,
        &c.id,
        &space,
        &c.project_id,
        &c.name,
        &c.slug,
        0,
        row.seq,
        &c,
    )?;
    r.created_at = row.created_at;
    tx.update_doc(&r)
        .await
        .map_err(|e| name_conflict(e, "channel", &name))?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Modified",
        format!("Channel {} was modified", c.name),
        &[&c.id, &c.project_id],
        json!({"Before": old, "After": c}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render(&space, &c)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, c): (_, Channel) = load(&st, C, &space, &id, "Channel").await?;
    if c.is_default {
        return Err(ApiError::bad_request(
            "The default channel of a project cannot be deleted",
        ));
    }
    let mut tx = st.db.begin().await?;
    tx.delete_doc(&c.id).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Deleted",
        format!("Channel {} was deleted", c.name),
        &[&c.id, &c.project_id],
        json!({"Document": c}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}
