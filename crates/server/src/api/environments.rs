//! Environments: ordered by `SortOrder`; names unique per space.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::Environment;
use ferry_domain::ids::slugify;
use ferry_store::DocQuery;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "Environments";

fn render(space: &str, e: &Environment) -> Value {
    let base = format!("/api/{space}/environments/{}", e.id);
    with_links(
        e,
        links(
            base.clone(),
            &[(
                "Machines",
                format!(
                    "{base}/machines{{?skip,take,partialName,roles,isDisabled,healthStatuses,commStyles,tenantIds,tenantTags,shellNames}}"
                ),
            )],
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
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let visible = crate::visibility::Visibility::of(
        &st,
        &ctx,
        Some(&space),
        crate::routes::Permission::EnvironmentView,
    )
    .await?;
    let base = format!("/api/{space}/environments");
    let v = list_page_visible(
        &st,
        query(&space),
        &Params::parse(raw.as_deref()),
        "Environment",
        &base,
        &list_template(&base),
        visible.as_ref(),
        |d| Ok(render(&space, &parse_body(d)?)),
    )
    .await?;
    Ok(Json(v))
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
    let (_, e): (_, Environment) = match find(&st, C, &space, None, &id).await? {
        Some(x) => x,
        None => {
            return Err(ApiError::not_found(format!(
                "Environment '{id}' was not found"
            )));
        }
    };
    Ok(Json(render(&space, &e)))
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut e): Body<Environment>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let name = require_name(&e.name, "environment", 200)?;
    let seq = next_seq(&st, C).await?;
    let (_, count) = st
        .db
        .list_docs(&DocQuery {
            take: Some(0),
            ..query(&space)
        })
        .await?;
    e.id = format!("{C}-{seq}");
    e.space_id = space.clone();
    e.name = name.clone();
    e.slug = slugify(&name);
    if e.sort_order == 0 {
        e.sort_order = count;
    }
    let row = doc_row(
        C,
        &e.id,
        &space,
        "",
        &e.name,
        &e.slug,
        e.sort_order,
        seq,
        &e,
    )?;
    insert_audited(
        &st,
        &ctx,
        Named {
            what: "environment",
            name: &name,
        },
        row,
        &e,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(render(&space, &e))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut e): Body<Environment>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, Environment) = load(&st, C, &space, &id, "Environment").await?;
    let name = require_name(&e.name, "environment", 200)?;
    e.id = old.id.clone();
    e.space_id = space.clone();
    e.name = name.clone();
    e.slug = slugify(&name);
    let new_row = doc_row(
        C,
        &e.id,
        &space,
        "",
        &e.name,
        &e.slug,
        e.sort_order,
        row.seq,
        &e,
    )?;
    update_audited(
        &st,
        &ctx,
        Named {
            what: "environment",
            name: &name,
        },
        &row,
        new_row,
        &old,
        &e,
    )
    .await?;
    Ok(Json(render(&space, &e)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, e): (_, Environment) = load(&st, C, &space, &id, "Environment").await?;
    delete_audited(
        &st,
        &ctx,
        Named {
            what: "environment",
            name: &e.name,
        },
        &space,
        &e.id,
        &e,
    )
    .await?;
    Ok(Json(json!({})))
}
