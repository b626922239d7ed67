//! Lifecycles and their phases. Phase environments must exist in the space.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::Lifecycle;
use ferry_domain::ids::slugify;
use ferry_store::DocQuery;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "Lifecycles";

fn render(space: &str, l: &Lifecycle) -> Value {
    let base = format!("/api/{space}/lifecycles/{}", l.id);
    with_links(
        l,
        links(
            base.clone(),
            &[
                ("Preview", format!("{base}/preview")),
                ("Projects", format!("{base}/projects")),
            ],
        ),
    )
}

fn query(space: &str) -> DocQuery {
    let mut q = DocQuery::new(C);
    q.space_id = Some(space.to_string());
    q
}

async fn validate(st: &AppState, space: &str, l: &mut Lifecycle) -> ApiResult<()> {
    // An environment belongs to at most one phase (its place in the order must be clear).
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, p) in l.phases.iter().enumerate() {
        let phase = if p.name.trim().is_empty() {
            format!("Phase {}", i + 1)
        } else {
            p.name.trim().to_string()
        };
        let mut mine: Vec<&String> = Vec::new();
        for env in p
            .automatic_deployment_targets
            .iter()
            .chain(p.optional_deployment_targets.iter())
        {
            if mine.contains(&env) {
                continue;
            }
            mine.push(env);
            if let Some((_, other)) = seen.iter().find(|(e, _)| e == env) {
                return Err(ApiError::bad_request(format!(
                    "The environment '{env}' is in both phase '{other}' and phase '{phase}'; an environment can be in only one phase of a lifecycle"
                )));
            }
            seen.push((env.clone(), phase.clone()));
        }
    }
    for (i, p) in l.phases.iter_mut().enumerate() {
        if p.name.trim().is_empty() {
            p.name = format!("Phase {}", i + 1);
        }
        if p.id.is_empty() {
            p.id = uuid::Uuid::new_v4().to_string();
        }
        if p.minimum_environments_before_promotion < 0 {
            return Err(ApiError::bad_request(format!(
                "Phase '{}': MinimumEnvironmentsBeforePromotion cannot be negative",
                p.name
            )));
        }
        for env in p
            .automatic_deployment_targets
            .iter()
            .chain(p.optional_deployment_targets.iter())
        {
            match st.db.get_doc(env).await? {
                Some(d) if d.collection == "Environments" && d.space_id == space => {}
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "Phase '{}' names the environment '{env}', which does not exist in this space",
                        p.name
                    )));
                }
            }
        }
    }
    Ok(())
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/lifecycles");
    Ok(Json(
        list_page(
            &st,
            query(&space),
            &Params::parse(raw.as_deref()),
            "Lifecycle",
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
    match find::<Lifecycle>(&st, C, &space, None, &id).await? {
        Some((_, l)) => Ok(Json(render(&space, &l))),
        None => Err(ApiError::not_found(format!(
            "Lifecycle '{id}' was not found"
        ))),
    }
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut l): Body<Lifecycle>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let name = require_name(&l.name, "lifecycle", 200)?;
    validate(&st, &space, &mut l).await?;
    let seq = next_seq(&st, C).await?;
    l.id = format!("{C}-{seq}");
    l.space_id = space.clone();
    l.name = name.clone();
    l.slug = slugify(&name);
    let row = doc_row(C, &l.id, &space, "", &l.name, &l.slug, 0, seq, &l)?;
    insert_audited(
        &st,
        &ctx,
        Named {
            what: "lifecycle",
            name: &name,
        },
        row,
        &l,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(render(&space, &l))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut l): Body<Lifecycle>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, Lifecycle) = load(&st, C, &space, &id, "Lifecycle").await?;
    let name = require_name(&l.name, "lifecycle", 200)?;
    validate(&st, &space, &mut l).await?;
    l.id = old.id.clone();
    l.space_id = space.clone();
    l.name = name.clone();
    l.slug = slugify(&name);
    let new_row = doc_row(C, &l.id, &space, "", &l.name, &l.slug, 0, row.seq, &l)?;
    update_audited(
        &st,
        &ctx,
        Named {
            what: "lifecycle",
            name: &name,
        },
        &row,
        new_row,
        &old,
        &l,
    )
    .await?;
    Ok(Json(render(&space, &l)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, l): (_, Lifecycle) = load(&st, C, &space, &id, "Lifecycle").await?;
    let mut q = DocQuery::new("Projects");
    q.ref2_in = vec![l.id.clone()];
    q.take = Some(0);
    let (_, n) = st.db.list_docs(&q).await?;
    if n > 0 {
        return Err(ApiError::bad_request(format!(
            "The lifecycle {} is used by {n} project(s)",
            l.name
        )));
    }
    delete_audited(
        &st,
        &ctx,
        Named {
            what: "lifecycle",
            name: &l.name,
        },
        &space,
        &l.id,
        &l,
    )
    .await?;
    Ok(Json(json!({})))
}
