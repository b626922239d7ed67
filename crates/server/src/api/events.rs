//! The audit log: every mutation, who made it, when, from where. Read-only through the API.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use ferry_domain::time::format_ms;
use ferry_store::{EventQuery, EventRow};
use serde_json::{Value, json};

use super::*;
use crate::query::page;

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

async fn list_events(st: &AppState, space: Option<&str>, raw: Option<String>) -> ApiResult<Value> {
    let params = Params::parse(raw.as_deref());
    let (skip, take) = (params.skip(), params.take());
    let q = EventQuery {
        space_id: space
            .map(str::to_string)
            .or_else(|| params.get("spaces").map(str::to_string)),
        regarding: params.get("regarding").map(str::to_string),
        category: params.get("eventCategories").map(str::to_string),
        user_id: params.get("user").map(str::to_string),
        skip,
        take: Some(take),
    };
    let (rows, total) = st.db.list_events(&q).await?;
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
        &format!("{base}{{/id}}{{?skip,take,regarding,user,eventCategories,spaces}}"),
    ))
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    Ok(Json(list_events(&st, Some(&space), raw).await?))
}

pub async fn list_all(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    Ok(Json(list_events(&st, None, raw).await?))
}

pub async fn get(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    match st.db.get_event(&id).await? {
        Some(e) => Ok(Json(render(&e))),
        None => Err(ApiError::not_found(format!("Event '{id}' was not found"))),
    }
}
