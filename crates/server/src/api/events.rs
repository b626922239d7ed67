//! The audit log: every mutation, who made it, when, from where. Read-only through the API.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use ferry_domain::time::format_ms;
use ferry_store::{EventQuery, EventRow};
use serde_json::{Value, json};

use super::*;
use crate::authz::Target;
use crate::query::page;
use crate::routes::Permission;
use crate::visibility::Visibility;

pub fn render(e: &EventRow) -> Value {
    let details: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
    json!({
        "Id": e.id,
        "SpaceId": if e.space_id.is_empty() { Value::Null } else { json!(e.space_id) },
        "Category": e.category,
        "UserId": e.user_id,
        "Username": e.username,
        "IsService": false,
        "IdentityEstablishedWith": "API key",
        "UserAgent": "",
        "Occurred": format_ms(e.occurred),
        "Message": e.message,
        "MessageHtml": e.message,
        "MessageReferences": [],
        "Comments": null,
        "Details": details,
        "ChangeDetails": {"DocumentContext": null, "Differences": null},
        "RelatedDocumentIds": e.related_document_ids.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "IpAddress": e.ip_address,
        "Links": {"Self": format!("/api/events/{}", e.id)},
    })
}

/// Whether a restricted caller may see an event: space events by the project, environment and
/// tenant they concern (`EventView`); system events (no space) need `UserView`.
fn event_visible(v: &Visibility, system_view: bool, e: &EventRow) -> bool {
    if e.space_id.is_empty() {
        return system_view;
    }
    let related: Vec<&str> = e.related_document_ids.split(',').collect();
    let first = |prefix: &str| related.iter().copied().find(|r| r.starts_with(prefix));
    v.concerning(
        &e.space_id,
        first("Projects-"),
        first("Environments-"),
        first("Tenants-"),
    )
}

async fn list_events(
    st: &AppState,
    ctx: &Ctx,
    space: Option<&str>,
    raw: Option<String>,
) -> ApiResult<Value> {
    let params = Params::parse(raw.as_deref());
    let (skip, take) = (params.skip(), params.take());
    let visible = Visibility::of(st, ctx, space, Permission::EventView).await?;
    // Dates: `from`/`to` as ISO 8601 (a bare date is its midnight UTC).
    let date = |name: &str| -> ApiResult<Option<i64>> {
        match params.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => {
                let full = if v.len() == 10 {
                    format!("{v}T00:00:00Z")
                } else {
                    v.to_string()
                };
                ferry_domain::time::parse_ms(&full).map(Some).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "'{v}' is not a date for {name}; use ISO 8601 such as 2026-11-29 or 2026-11-29T10:00:00Z"
                    ))
                })
            }
        }
    };
    let mut users = params.list("users");
    users.extend(params.get("user").map(str::to_string));
    let regarding_any: Vec<Vec<String>> = ["projects", "environments", "tenants", "regardingAny"]
        .iter()
        .map(|n| params.list(n))
        .filter(|l| !l.is_empty())
        .collect();
    let mut q = EventQuery {
        space_id: space
            .map(str::to_string)
            .or_else(|| params.get("spaces").map(str::to_string)),
        regarding: params.get("regarding").map(str::to_string),
        categories: params.list("eventCategories"),
        users,
        from: date("from")?,
        to: date("to")?,
        regarding_any,
        skip,
        take: Some(take),
        ..EventQuery::default()
    };
    let (rows, total) = match &visible {
        None => st.db.list_events(&q).await?,
        // Filtered before paging, so totals count only what the caller may see.
        Some(v) => {
            q.skip = 0;
            q.take = None;
            let system_view =
                crate::authz::can(st, ctx, None, Permission::UserView, &Target::ANY).await?;
            let (all, _) = st.db.list_events(&q).await?;
            crate::query::keep_page(all, |e| event_visible(v, system_view, e), skip, take, false)
        }
    };
    let base = match space {
        Some(s) => format!("/api/{s}/events"),
        None => "/api/events".to_string(),
    };
    Ok(page(
        "Event",
        rows.iter().map(render).collect(),
        total,
        skip,
        take,
        &base,
        &format!(
            "{base}{{/id}}{{?skip,take,from,to,regarding,regardingAny,user,users,projects,environments,tenants,eventCategories,spaces}}"
        ),
    ))
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    Ok(Json(list_events(&st, &ctx, Some(&space), raw).await?))
}

pub async fn list_all(
    State(st): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    Ok(Json(list_events(&st, &ctx, None, raw).await?))
}

pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let not_found = || ApiError::not_found(format!("Event '{id}' was not found"));
    let e = st.db.get_event(&id).await?.ok_or_else(not_found)?;
    let space = Some(e.space_id.as_str()).filter(|s| !s.is_empty());
    if let Some(v) = Visibility::of(&st, &ctx, space, Permission::EventView).await? {
        let system_view =
            crate::authz::can(&st, &ctx, None, Permission::UserView, &Target::ANY).await?;
        if !event_visible(&v, system_view, &e) {
            return Err(not_found());
        }
    }
    Ok(Json(render(&e)))
}
