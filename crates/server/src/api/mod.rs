//! The API handlers, one module per resource, and the helpers they share: loading documents
//! by id within a space, paged listing, writing documents with an audit event in the same
//! transaction.

pub mod accounts;
pub mod actiontemplates;
pub mod artifacts;
pub mod autodeploy;
pub mod buildinfo;
pub mod channels;
pub mod dashboard;
pub mod dashboard_catalog;
pub mod deployments;
pub mod deploytemplate;
pub mod environments;
pub mod event_archives;
pub mod events;
pub mod executions;
pub mod freezes;
pub mod interruptions;
pub mod libraryvariablesets;
pub mod lifecycles;
pub mod machinepolicies;
pub mod machines;
pub mod misc;
pub mod packages;
pub mod process;
pub mod progression;
pub mod projectgroups;
pub mod projects;
pub mod release_retention;
pub mod releasediff;
pub mod releases;
pub mod retention;
pub mod smtp;
pub mod spaces;
pub mod subscriptions;
pub mod tagsets;
pub mod tasks;
pub mod teams;
pub mod tenants;
pub mod users;
pub mod variables;
pub mod workerpools;
pub mod workers;

use ferry_domain::time::now_ms;
use ferry_store::{DocQuery, DocRow, EventRow, Tx};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::Ctx;
use crate::query::{Params, page};
use crate::{ApiError, ApiResult, AppState};

/// Parses a stored document body.
pub fn parse_body<T: DeserializeOwned>(d: &DocRow) -> ApiResult<T> {
    serde_json::from_str(&d.body)
        .map_err(|e| ApiError::internal(format!("document {} is unreadable: {e}", d.id)))
}

/// Serialises a resource and adds its `Links`.
pub fn with_links<T: Serialize>(r: &T, links: Value) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("Links".to_string(), links);
    }
    v
}

/// Checks the space exists; 404 otherwise.
pub async fn require_space(st: &AppState, space_id: &str) -> ApiResult<ferry_domain::Space> {
    match st.db.get_doc(space_id).await? {
        Some(d) if d.collection == "Spaces" => parse_body(&d),
        _ => Err(ApiError::not_found(format!(
            "Space '{space_id}' was not found"
        ))),
    }
}

/// Loads a document of `collection` by id within `space`; 404 when it does not exist there.
pub async fn load<T: DeserializeOwned>(
    st: &AppState,
    collection: &str,
    space: &str,
    id: &str,
    what: &str,
) -> ApiResult<(DocRow, T)> {
    match st.db.get_doc(id).await? {
        Some(d) if d.collection == collection && d.space_id == space => {
            let t = parse_body(&d)?;
            Ok((d, t))
        }
        _ => Err(ApiError::not_found(format!("{what} '{id}' was not found"))),
    }
}

/// Finds a document by id, slug or name (case-insensitive).
pub async fn find<T: DeserializeOwned>(
    st: &AppState,
    collection: &str,
    space: &str,
    owner: Option<&str>,
    key: &str,
) -> ApiResult<Option<(DocRow, T)>> {
    match st.db.find_doc(collection, Some(space), owner, key).await? {
        Some(d) => {
            let t = parse_body(&d)?;
            Ok(Some((d, t)))
        }
        None => Ok(None),
    }
}

/// Lists documents as a paged collection. With `ids`, every match is returned whatever
/// `skip`/`take` say (the TS task waiter relies on it).
pub async fn list_page(
    st: &AppState,
    q: DocQuery,
    params: &Params,
    item_type: &str,
    base: &str,
    template: &str,
    render: impl Fn(&DocRow) -> ApiResult<Value>,
) -> ApiResult<Value> {
    list_page_visible(st, q, params, item_type, base, template, None, render).await
}

/// `list_page` showing only what `visible` lets the caller see (`None`: everything). A
/// filtered list is read whole and paged after filtering, so totals count only visible items.
#[allow(clippy::too_many_arguments)]
pub async fn list_page_visible(
    st: &AppState,
    mut q: DocQuery,
    params: &Params,
    item_type: &str,
    base: &str,
    template: &str,
    visible: Option<&crate::visibility::Visibility>,
    render: impl Fn(&DocRow) -> ApiResult<Value>,
) -> ApiResult<Value> {
    // A caller may pre-restrict the ids (e.g. deployments by task state); `ids=` narrows further.
    let requested = params.list("ids");
    q.ids = if q.ids.is_empty() {
        requested
    } else if requested.is_empty() {
        q.ids
    } else {
        q.ids
            .into_iter()
            .filter(|i| requested.contains(i))
            .collect()
    };
    q.partial_name = params.get("partialName").map(str::to_string);
    q.name = params.get("name").map(str::to_string);
    let (skip, take) = (params.skip(), params.take());
    let (rows, total) = match visible {
        None => {
            if q.ids.is_empty() {
                q.skip = skip;
                q.take = Some(take);
            }
            st.db.list_docs(&q).await?
        }
        Some(v) => {
            let (all, _) = st.db.list_docs(&q).await?;
            crate::query::keep_page(all, |r| v.doc(r), skip, take, !q.ids.is_empty())
        }
    };
    let items = rows.iter().map(&render).collect::<ApiResult<Vec<_>>>()?;
    let (skip, take) = if q.ids.is_empty() {
        (skip, take)
    } else {
        (0, total.max(take))
    };
    Ok(page(item_type, items, total, skip, take, base, template))
}

/// Lists every document as a bare array (the `/all` endpoints).
pub async fn list_all(
    st: &AppState,
    q: DocQuery,
    render: impl Fn(&DocRow) -> ApiResult<Value>,
) -> ApiResult<Value> {
    let (rows, _) = st.db.list_docs(&q).await?;
    Ok(Value::Array(
        rows.iter().map(render).collect::<ApiResult<Vec<_>>>()?,
    ))
}

/// A document row for a resource.
#[allow(clippy::too_many_arguments)]
pub fn doc_row<T: Serialize>(
    collection: &str,
    id: &str,
    space: &str,
    owner: &str,
    name: &str,
    slug: &str,
    sort_order: i64,
    seq: i64,
    body: &T,
) -> ApiResult<DocRow> {
    let now = now_ms();
    Ok(DocRow {
        id: id.to_string(),
        collection: collection.to_string(),
        space_id: space.to_string(),
        owner_id: owner.to_string(),
        name: name.to_string(),
        name_key: ferry_store::name_key(name),
        slug: slug.to_string(),
        sort_order,
        ref1: String::new(),
        ref2: String::new(),
        seq,
        body: serde_json::to_string(body).map_err(ApiError::internal)?,
        created_at: now,
        updated_at: now,
    })
}

/// The numeric part of an id such as `Projects-12` (for ordering).
pub fn id_seq(id: &str) -> i64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Writes an audit event inside `tx`.
pub async fn audit(
    tx: &mut Tx,
    ctx: &Ctx,
    space: &str,
    category: &str,
    message: String,
    related: &[&str],
    details: Value,
) -> ApiResult<()> {
    tx.insert_event(&EventRow {
        id: String::new(),
        seq: 0,
        space_id: space.to_string(),
        category: category.to_string(),
        message,
        username: ctx.principal.username.clone(),
        user_id: ctx.principal.user_id.clone(),
        occurred: now_ms(),
        related_document_ids: related.join(","),
        details: details.to_string(),
        ip_address: ctx.ip.clone(),
    })
    .await?;
    Ok(())
}

/// Requires a non-empty name of at most `max` characters.
pub fn require_name(name: &str, what: &str, max: usize) -> ApiResult<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Please provide a value for the {what} Name"
        )));
    }
    if n.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "The {what} Name must be at most {max} characters"
        )));
    }
    Ok(n.to_string())
}

/// Maps a unique-name conflict to a message naming the resource.
pub fn name_conflict(e: ferry_store::StoreError, what: &str, name: &str) -> ApiError {
    match e {
        ferry_store::StoreError::Conflict => {
            let article = if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "An"
            } else {
                "A"
            };
            ApiError::conflict(format!(
                "{article} {what} with the name '{name}' already exists"
            ))
        }
        other => other.into(),
    }
}

/// A link template with standard list parameters.
pub fn list_template(base: &str) -> String {
    format!("{base}{{/id}}{{?skip,take,ids,partialName}}")
}

/// Builds `{"Self": …}` plus extra links.
pub fn links(self_link: String, extra: &[(&str, String)]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("Self".into(), json!(self_link));
    for (k, v) in extra {
        m.insert((*k).to_string(), json!(v));
    }
    Value::Object(m)
}

/// Takes the next number of a collection's id sequence in its own transaction (a failed
/// request leaves a gap in the numbers, as Octopus's ids have).
pub async fn next_seq(st: &AppState, collection: &str) -> ApiResult<i64> {
    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq(collection).await?;
    tx.commit().await?;
    Ok(seq)
}

/// What a named resource is called in messages: "environment", "project group", …
pub struct Named<'a> {
    pub what: &'a str,
    pub name: &'a str,
}

fn capitalized(what: &str) -> String {
    let mut c = what.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Inserts a document and its `Created` audit event in one transaction; a duplicate name is a
/// 409 naming it.
pub async fn insert_audited<T: Serialize>(
    st: &AppState,
    ctx: &Ctx,
    n: Named<'_>,
    row: DocRow,
    doc: &T,
) -> ApiResult<()> {
    let mut tx = st.db.begin().await?;
    tx.insert_doc(&row)
        .await
        .map_err(|e| name_conflict(e, n.what, n.name))?;
    audit(
        &mut tx,
        ctx,
        &row.space_id,
        "Created",
        format!("{} {} was created", capitalized(n.what), n.name),
        &[&row.id],
        json!({"Document": doc}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces a document (keeping its creation time) and writes its `Modified` audit event with
/// the before and after, in one transaction.
pub async fn update_audited<T: Serialize>(
    st: &AppState,
    ctx: &Ctx,
    n: Named<'_>,
    old_row: &DocRow,
    mut row: DocRow,
    before: &T,
    after: &T,
) -> ApiResult<()> {
    row.created_at = old_row.created_at;
    row.seq = old_row.seq;
    let mut tx = st.db.begin().await?;
    tx.update_doc(&row)
        .await
        .map_err(|e| name_conflict(e, n.what, n.name))?;
    audit(
        &mut tx,
        ctx,
        &row.space_id,
        "Modified",
        format!("{} {} was modified", capitalized(n.what), n.name),
        &[&row.id],
        json!({"Before": before, "After": after}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes a document and writes its `Deleted` audit event in one transaction.
pub async fn delete_audited<T: Serialize>(
    st: &AppState,
    ctx: &Ctx,
    n: Named<'_>,
    space: &str,
    id: &str,
    doc: &T,
) -> ApiResult<()> {
    let mut tx = st.db.begin().await?;
    tx.delete_doc(id).await?;
    audit(
        &mut tx,
        ctx,
        space,
        "Deleted",
        format!("{} {} was deleted", capitalized(n.what), n.name),
        &[id],
        json!({"Document": doc}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
