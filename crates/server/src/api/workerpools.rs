//! Worker pools (`/api/{space}/workerpools`): named groups of workers that run the steps not
//! tied to a deployment target (`Octopus.Action.RunOnServer`). Every space has exactly one
//! default pool, `Default Worker Pool`, seeded with the space and created here on first use for
//! stores older than pools; while it has no workers, the built-in worker serves it. Making
//! another pool the default takes the flag from the old one in the same transaction. The
//! default pool and pools that still have workers cannot be deleted. Ferry has only static
//! pools (`StaticWorkerPool`).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::ids::slugify;
use ferry_domain::{DEFAULT_WORKER_POOL_NAME, Machine, WorkerPool};
use ferry_store::{DocQuery, DocRow, StoreError};
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

pub(crate) const C: &str = "WorkerPools";
const STATIC: &str = "StaticWorkerPool";

fn render(space: &str, p: &WorkerPool) -> Value {
    with_links(
        p,
        links(
            format!("/api/{space}/workerpools/{}", p.id),
            &[
                (
                    "Workers",
                    format!("/api/{space}/workerpools/{}/workers{{?skip,take}}", p.id),
                ),
                (
                    "Web",
                    format!("/app#/{space}/infrastructure/workerpools/{}", p.id),
                ),
            ],
        ),
    )
}

fn query(space: &str) -> DocQuery {
    let mut q = DocQuery::new(C);
    q.space_id = Some(space.to_string());
    q
}

fn row(p: &WorkerPool, seq: i64) -> ApiResult<DocRow> {
    doc_row(
        C,
        &p.id,
        &p.space_id,
        "",
        &p.name,
        &p.slug,
        p.sort_order,
        seq,
        p,
    )
}

/// The `Default Worker Pool` a space starts with.
pub fn default_pool(space_id: &str, id: &str) -> WorkerPool {
    WorkerPool {
        id: id.to_string(),
        space_id: space_id.to_string(),
        name: DEFAULT_WORKER_POOL_NAME.to_string(),
        slug: slugify(DEFAULT_WORKER_POOL_NAME),
        description: "The default worker pool: steps that run on a worker use it unless they \
                      name another pool; while it has no workers, the built-in worker serves it."
            .to_string(),
        is_default: true,
        sort_order: 1,
        worker_pool_type: STATIC.to_string(),
        can_add_workers: true,
    }
}

/// The space's default pool, created if the space has none (a store from before pools). A
/// pool already named `Default Worker Pool` becomes the default then.
pub async fn ensure_default(st: &AppState, space: &str) -> ApiResult<WorkerPool> {
    for _ in 0..3 {
        let (rows, _) = st.db.list_docs(&query(space)).await?;
        let mut named: Option<(&DocRow, WorkerPool)> = None;
        for r in &rows {
            let p: WorkerPool = parse_body(r)?;
            if p.is_default {
                return Ok(p);
            }
            if p.name.eq_ignore_ascii_case(DEFAULT_WORKER_POOL_NAME) {
                named = Some((r, p));
            }
        }
        let mut tx = st.db.begin().await?;
        let written = match named {
            Some((old, mut p)) => {
                p.is_default = true;
                let mut r = row(&p, old.seq)?;
                r.created_at = old.created_at;
                tx.update_doc(&r).await.map(|_| p)
            }
            None => {
                let seq = tx.next_seq(C).await?;
                let p = default_pool(space, &format!("{C}-{seq}"));
                let r = row(&p, seq)?;
                tx.insert_doc(&r).await.map(|()| p)
            }
        };
        match written {
            Ok(p) => {
                tx.commit().await?;
                return Ok(p);
            }
            // Another request created it at the same moment: look again.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(format!(
        "space {space} has no default worker pool and '{DEFAULT_WORKER_POOL_NAME}' cannot be created"
    )))
}

/// Finds a pool of the space by id, slug or name; 404 otherwise.
async fn find_pool(st: &AppState, space: &str, key: &str) -> ApiResult<(DocRow, WorkerPool)> {
    match find::<WorkerPool>(st, C, space, None, key).await? {
        Some(found) => Ok(found),
        None => Err(ApiError::not_found(format!(
            "Worker pool '{key}' was not found"
        ))),
    }
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    ensure_default(&st, &space).await?;
    let base = format!("/api/{space}/workerpools");
    let v = list_page(
        &st,
        query(&space),
        &Params::parse(raw.as_deref()),
        "WorkerPool",
        &base,
        &format!("{base}{{/id}}{{?skip,take,ids,partialName,name}}"),
        |d| Ok(render(&space, &parse_body(d)?)),
    )
    .await?;
    Ok(Json(v))
}

pub async fn all(State(st): State<AppState>, Path(space): Path<String>) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    ensure_default(&st, &space).await?;
    Ok(Json(
        list_all(&st, query(&space), |d| Ok(render(&space, &parse_body(d)?))).await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    ensure_default(&st, &space).await?;
    let (_, p) = find_pool(&st, &space, &id).await?;
    Ok(Json(render(&space, &p)))
}

/// `GET /api/{space}/workerpools/{id}/workers`: the workers of one pool, paged.
pub async fn workers(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    ensure_default(&st, &space).await?;
    let (_, p) = find_pool(&st, &space, &id).await?;
    let base = format!("/api/{space}/workerpools/{}/workers", p.id);
    let params = Params::parse(raw.as_deref());
    Ok(Json(
        super::workers::filtered_page(&st, &space, &params, Some(&p.id), &base).await?,
    ))
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(input): Body<WorkerPool>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    ensure_default(&st, &space).await?;
    let mut p = validate(input)?;
    let seq = next_seq(&st, C).await?;
    p.id = format!("{C}-{seq}");
    p.space_id = space.clone();
    if p.sort_order <= 0 {
        p.sort_order = next_sort_order(&st, &space).await?;
    }
    write(&st, &ctx, &p, row(&p, seq)?, None).await?;
    Ok((StatusCode::CREATED, Json(render(&space, &p))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(input): Body<WorkerPool>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let (old_row, old) = find_pool(&st, &space, &id).await?;
    let mut p = validate(input)?;
    p.id = old.id.clone();
    p.space_id = space.clone();
    // The default moves only by making another pool the default.
    p.is_default = p.is_default || old.is_default;
    if p.sort_order <= 0 {
        p.sort_order = old.sort_order;
    }
    let r = row(&p, old_row.seq)?;
    write(&st, &ctx, &p, r, Some((&old_row, &old))).await?;
    Ok(Json(render(&space, &p)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let (_, p) = find_pool(&st, &space, &id).await?;
    if p.is_default {
        return Err(ApiError::conflict(format!(
            "The worker pool '{}' is the default pool of this space and cannot be deleted; make another pool the default first",
            p.name
        )));
    }
    let members = members(&st, &space, &p.id).await?;
    if !members.is_empty() {
        let list: Vec<String> = members
            .iter()
            .map(|m| format!("'{}' ({})", m.name, m.id))
            .collect();
        return Err(ApiError::conflict(format!(
            "The worker pool '{}' still has the workers {}; move or delete them first",
            p.name,
            list.join(", ")
        )));
    }
    delete_audited(
        &st,
        &ctx,
        Named {
            what: "worker pool",
            name: &p.name,
        },
        &space,
        &p.id,
        &p,
    )
    .await?;
    Ok(Json(json!({})))
}

/// The workers of the space that serve the pool.
async fn members(st: &AppState, space: &str, pool_id: &str) -> ApiResult<Vec<Machine>> {
    let mut q = DocQuery::new(super::workers::C);
    q.space_id = Some(space.to_string());
    let (rows, _) = st.db.list_docs(&q).await?;
    let mut out = Vec::new();
    for r in &rows {
        let m: Machine = parse_body(r)?;
        if m.worker_pool_ids.iter().any(|x| x == pool_id) {
            out.push(m);
        }
    }
    Ok(out)
}

/// One past the highest sort order of the space's pools.
async fn next_sort_order(st: &AppState, space: &str) -> ApiResult<i64> {
    let (rows, _) = st.db.list_docs(&query(space)).await?;
    Ok(rows.iter().map(|r| r.sort_order).max().unwrap_or(0) + 1)
}

/// Checks and normalises a pool as sent; every problem is reported, each naming its field.
fn validate(mut p: WorkerPool) -> ApiResult<WorkerPool> {
    let name = require_name(&p.name, "worker pool", 200)?;
    p.name = name.clone();
    p.slug = slugify(&name);
    p.description = p.description.trim().to_string();
    let mut errors = Vec::new();
    let kind = p.worker_pool_type.trim();
    if kind.is_empty() || kind == STATIC {
        p.worker_pool_type = STATIC.to_string();
    } else {
        errors.push(format!(
            "WorkerPoolType: '{kind}' is not supported; Ferry has only {STATIC} pools"
        ));
    }
    if p.sort_order < 0 {
        errors.push("SortOrder: must not be negative".to_string());
    }
    p.can_add_workers = true;
    if errors.is_empty() {
        Ok(p)
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
    }
}

/// Inserts (`old` is `None`) or replaces a pool with its audit event; a pool made the default
/// takes the flag from the space's other default pool in the same transaction.
async fn write(
    st: &AppState,
    ctx: &Ctx,
    p: &WorkerPool,
    mut r: DocRow,
    old: Option<(&DocRow, &WorkerPool)>,
) -> ApiResult<()> {
    let mut demoted = Vec::new();
    if p.is_default {
        let (rows, _) = st.db.list_docs(&query(&p.space_id)).await?;
        for d in rows {
            let other: WorkerPool = parse_body(&d)?;
            if other.is_default && other.id != p.id {
                demoted.push((d, other));
            }
        }
    }
    let mut tx = st.db.begin().await?;
    for (d, before) in &demoted {
        let mut after = before.clone();
        after.is_default = false;
        let mut nr = row(&after, d.seq)?;
        nr.created_at = d.created_at;
        tx.update_doc(&nr).await?;
        audit(
            &mut tx,
            ctx,
            &p.space_id,
            "Modified",
            format!(
                "Worker pool {} is no longer the default; {} is",
                before.name, p.name
            ),
            &[&before.id, &p.id],
            json!({"Before": before, "After": after}),
        )
        .await?;
    }
    match old {
        Some((old_row, before)) => {
            r.created_at = old_row.created_at;
            r.seq = old_row.seq;
            tx.update_doc(&r)
                .await
                .map_err(|e| name_conflict(e, "worker pool", &p.name))?;
            audit(
                &mut tx,
                ctx,
                &p.space_id,
                "Modified",
                format!("Worker pool {} was modified", p.name),
                &[&p.id],
                json!({"Before": before, "After": p}),
            )
            .await?;
        }
        None => {
            tx.insert_doc(&r)
                .await
                .map_err(|e| name_conflict(e, "worker pool", &p.name))?;
            audit(
                &mut tx,
                ctx,
                &p.space_id,
                "Created",
                format!("Worker pool {} was created", p.name),
                &[&p.id],
                json!({"Document": p}),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
