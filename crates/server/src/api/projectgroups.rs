//! Project groups.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::ProjectGroup;
use ferry_domain::ids::slugify;
use ferry_store::DocQuery;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "ProjectGroups";

fn render(space: &str, g: &ProjectGroup) -> Value {
    let base = format!("/api/{space}/projectgroups/{}", g.id);
    with_links(
        g,
        links(
            base.clone(),
            &[("Projects", format!("{base}/projects{{?skip,take}}"))],
        ),
    )
}

fn query(space: &str) -> DocQuery {
    let mut q = DocQuery::new(C);
    q.space_id = Some(space.to_string());
    q
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/projectgroups");
    Ok(Json(
        list_page(
            &st,
            query(&space),
            &Params::parse(raw.as_deref()),
            "ProjectGroup",
            &base,
            &list_template(&base),
            |d| Ok(render(&space, &parse_body(d)?)),
        )
        .await?,
    ))
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
    match find::<ProjectGroup>(&st, C, &space, None, &id).await? {
        Some((_, g)) => Ok(Json(render(&space, &g))),
        None => Err(ApiError::not_found(format!(
            "Project group '{id}' was not found"
        ))),
    }
}

pub async fn projects(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let (_, g): (_, ProjectGroup) = load(&st, C, &space, &id, "Project group").await?;
    let mut q = DocQuery::new("Projects");
    q.space_id = Some(space.clone());
    q.ref1_in = vec![g.id.clone()];
    let base = format!("/api/{space}/projectgroups/{}/projects", g.id);
    Ok(Json(
        list_page(
            &st,
            q,
            &Params::parse(raw.as_deref()),
            "Project",
            &base,
            &list_template(&base),
            |d| super::projects::render_row(&space, d),
        )
        .await?,
    ))
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut g): Body<ProjectGroup>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let name = require_name(&g.name, "project group", 200)?;
    let seq = next_seq(&st, C).await?;
    g.id = format!("{C}-{seq}");
    g.space_id = space.clone();
    g.name = name.clone();
    g.slug = slugify(&name);
    let row = doc_row(C, &g.id, &space, "", &g.name, &g.slug, 0, seq, &g)?;
    insert_audited(
        &st,
        &ctx,
        Named {
            what: "project group",
            name: &name,
        },
        row,
        &g,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(render(&space, &g))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut g): Body<ProjectGroup>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, ProjectGroup) = load(&st, C, &space, &id, "Project group").await?;
    let name = require_name(&g.name, "project group", 200)?;
    g.id = old.id.clone();
    g.space_id = space.clone();
    g.name = name.clone();
    g.slug = slugify(&name);
    let new_row = doc_row(C, &g.id, &space, "", &g.name, &g.slug, 0, row.seq, &g)?;
    update_audited(
        &st,
        &ctx,
        Named {
            what: "project group",
            name: &name,
        },
        &row,
        new_row,
        &old,
        &g,
    )
    .await?;
    Ok(Json(render(&space, &g)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, g): (_, ProjectGroup) = load(&st, C, &space, &id, "Project group").await?;
    let mut q = DocQuery::new("Projects");
    q.ref1_in = vec![g.id.clone()];
    q.take = Some(0);
    let (_, n) = st.db.list_docs(&q).await?;
    if n > 0 {
        return Err(ApiError::bad_request(format!(
            "The project group {} still contains {n} project(s); move or delete them first",
            g.name
        )));
    }
    delete_audited(
        &st,
        &ctx,
        Named {
            what: "project group",
            name: &g.name,
        },
        &space,
        &g.id,
        &g,
    )
    .await?;
    Ok(Json(json!({})))
}
