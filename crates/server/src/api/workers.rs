//! Workers (`/api/{space}/workers`): machines that run the steps not tied to a deployment
//! target, grouped in worker pools. A worker is stored as a `Machine` document in the
//! collection `Workers` (ids `Workers-N`) and validated like a deployment target (name,
//! machine policy, a listening or polling agent's address and pinned thumbprint, or an SSH
//! host) except that, instead of environments, roles and tenants, it serves one or more pools
//! (`WorkerPoolIds`, given by id, slug or name and stored as ids). Names and agents'
//! thumbprints are unique among the space's workers; a deployment target may pin the same
//! certificate (one agent can be both). The store keeps the thumbprint in `ref1` and the
//! communication style in `ref2`; the other filters run in memory before paging.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::{Machine, WorkerPool};
use ferry_store::{DocQuery, DocRow};
use serde_json::{Value, json};

use super::*;
use crate::input::Body;
use crate::query::MAX_TAKE;

pub(crate) const C: &str = "Workers";

fn template(base: &str) -> String {
    format!(
        "{base}{{/id}}{{?skip,take,name,ids,partialName,isDisabled,healthStatuses,commStyles,thumbprint,workerPoolIds}}"
    )
}

/// Octopus's WorkerResource: the machine fields without environments, roles and tenants, plus
/// `WorkerPoolIds`.
pub(crate) fn render(space: &str, m: &Machine) -> Value {
    let mut v = with_links(
        m,
        links(
            format!("/api/{space}/workers/{}", m.id),
            &[(
                "Web",
                format!("/app#/{space}/infrastructure/workers/{}", m.id),
            )],
        ),
    );
    if let Some(o) = v.as_object_mut() {
        for k in [
            "EnvironmentIds",
            "Roles",
            "TenantIds",
            "TenantTags",
            "TenantedDeploymentParticipation",
        ] {
            o.remove(k);
        }
        o.insert("WorkerPoolIds".to_string(), json!(m.worker_pool_ids));
    }
    v
}

fn query(space: &str) -> DocQuery {
    let mut q = DocQuery::new(C);
    q.space_id = Some(space.to_string());
    q
}

fn row(m: &Machine, seq: i64) -> ApiResult<DocRow> {
    let mut r = doc_row(C, &m.id, &m.space_id, "", &m.name, &m.slug, 0, seq, m)?;
    r.ref1 = m.endpoint.thumbprint.clone();
    r.ref2 = m.endpoint.communication_style.clone();
    Ok(r)
}

fn any_eq(wanted: &[String], have: &[String]) -> bool {
    wanted
        .iter()
        .any(|w| have.iter().any(|h| h.eq_ignore_ascii_case(w)))
}

/// Lists the space's workers matching the query's filters (and serving `pool`, if given),
/// paged (all of them with `ids`).
pub(crate) async fn filtered_page(
    st: &AppState,
    space: &str,
    params: &Params,
    pool: Option<&str>,
    base: &str,
) -> ApiResult<Value> {
    let mut q = query(space);
    q.ids = params.list("ids");
    q.partial_name = params.get("partialName").map(str::to_string);
    q.name = params.get("name").map(str::to_string);
    q.ref1_in = params
        .list("thumbprint")
        .iter()
        .map(|t| t.to_ascii_uppercase())
        .collect();
    q.ref2_in = params.list("commStyles");
    let mut pools = params.list("workerPoolIds");
    if let Some(p) = pool {
        pools = vec![p.to_string()];
    }
    let health = params.list("healthStatuses");
    let disabled = params.bool("isDisabled");
    let (rows, _) = st.db.list_docs(&q).await?;
    let mut items = Vec::new();
    for r in &rows {
        let m: Machine = parse_body(r)?;
        let keep = (pools.is_empty() || any_eq(&pools, &m.worker_pool_ids))
            && (health.is_empty() || any_eq(&health, std::slice::from_ref(&m.health_status)))
            && disabled.is_none_or(|d| d == m.is_disabled);
        if keep {
            items.push(m);
        }
    }
    let total = i64::try_from(items.len()).unwrap_or(MAX_TAKE);
    let (skip, take) = if q.ids.is_empty() {
        (params.skip(), params.take())
    } else {
        (0, total.max(params.take()))
    };
    let page_items = items
        .iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(usize::try_from(take).unwrap_or(usize::MAX))
        .map(|m| render(space, m))
        .collect();
    Ok(page(
        "Worker",
        page_items,
        total,
        skip,
        take,
        base,
        &template(base),
    ))
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/workers");
    let params = Params::parse(raw.as_deref());
    Ok(Json(
        filtered_page(&st, &space, &params, None, &base).await?,
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
    match find::<Machine>(&st, C, &space, None, &id).await? {
        Some((_, m)) => Ok(Json(render(&space, &m))),
        None => Err(ApiError::not_found(format!("Worker '{id}' was not found"))),
    }
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(input): Body<Machine>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let mut m = validate(&st, &space, input).await?;
    let seq = next_seq(&st, C).await?;
    m.id = format!("{C}-{seq}");
    m.space_id = space.clone();
    super::machines::reset_server_owned(&mut m, "worker");
    super::machines::thumbprint_unused_in(&st, C, "worker", &space, &m).await?;
    let r = row(&m, seq)?;
    insert_audited(
        &st,
        &ctx,
        Named {
            what: "worker",
            name: &m.name,
        },
        r,
        &m,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(render(&space, &m))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(input): Body<Machine>,
) -> ApiResult<Json<Value>> {
    let (old_row, old): (_, Machine) = load(&st, C, &space, &id, "Worker").await?;
    let mut m = validate(&st, &space, input).await?;
    m.id = old.id.clone();
    m.space_id = space.clone();
    super::machines::keep_server_owned(&mut m, &old);
    super::machines::thumbprint_unused_in(&st, C, "worker", &space, &m).await?;
    let r = row(&m, old_row.seq)?;
    update_audited(
        &st,
        &ctx,
        Named {
            what: "worker",
            name: &m.name,
        },
        &old_row,
        r,
        &old,
        &m,
    )
    .await?;
    Ok(Json(render(&space, &m)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, m): (_, Machine) = load(&st, C, &space, &id, "Worker").await?;
    delete_audited(
        &st,
        &ctx,
        Named {
            what: "worker",
            name: &m.name,
        },
        &space,
        &m.id,
        &m,
    )
    .await?;
    Ok(Json(json!({})))
}

/// Validates and normalises a worker as sent: its pools here, the rest as for a deployment
/// target; every problem found is reported, each naming its field.
async fn validate(st: &AppState, space: &str, mut m: Machine) -> ApiResult<Machine> {
    // A store from before pools gets its default pool now, so it can be named.
    super::workerpools::ensure_default(st, space).await?;
    let mut errors = Vec::new();
    let mut pools: Vec<String> = Vec::new();
    for key in m
        .worker_pool_ids
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
    {
        match find::<WorkerPool>(st, super::workerpools::C, space, None, key).await? {
            Some((_, p)) if !pools.contains(&p.id) => pools.push(p.id),
            Some(_) => {}
            None => errors.push(format!(
                "WorkerPoolIds: the worker pool '{key}' was not found in this space"
            )),
        }
    }
    if pools.is_empty() && errors.is_empty() {
        errors.push("WorkerPoolIds: please provide at least one worker pool".to_string());
    }
    m.worker_pool_ids = pools;
    super::machines::validate_as(st, space, m, true, errors).await
}
