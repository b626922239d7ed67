//! Server tasks: list (per space and system-wide, `ids` returning every match), get, details
//! (the log tree), raw (plain text) and cancel (three routes, as the clients use them).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ferry_domain::task::TaskState;
use ferry_domain::time::{format_ms, human_duration, now_ms};
use ferry_store::{ActivityRow, LogRow, TaskQuery, TaskRow};
use serde_json::{Value, json};

use super::*;
use crate::input::Body;
use crate::query::page;
use axum::http::StatusCode;

/// The ServerTask resource.
pub fn render(t: &TaskRow) -> Value {
    let state = TaskState::parse(&t.state).unwrap_or(TaskState::Failed);
    let duration = t
        .start_time
        .map(|s| human_duration(t.completed_time.unwrap_or_else(now_ms) - s))
        .unwrap_or_default();
    let arguments: Value = serde_json::from_str(&t.arguments).unwrap_or_else(|_| json!({}));
    json!({
        "Id": t.id,
        "SpaceId": t.space_id,
        "Name": t.name,
        "Description": t.description,
        "Arguments": arguments,
        "State": state.as_str(),
        "QueueTime": format_ms(t.queue_time),
        "QueueTimeExpiry": t.queue_time_expiry.map(format_ms),
        "StartTime": t.start_time.map(format_ms),
        "LastUpdatedTime": format_ms(t.last_updated),
        "CompletedTime": t.completed_time.map(format_ms),
        "Completed": t.completed_time.map(format_ms),
        "Duration": duration,
        "ErrorMessage": t.error_message,
        "HasBeenPickedUpByProcessor": t.start_time.is_some(),
        "IsCompleted": state.is_completed(),
        "FinishedSuccessfully": state.finished_successfully(),
        "HasPendingInterruptions": false,
        "CanRerun": false,
        "HasWarningsOrErrors": t.has_warnings_or_errors != 0,
        "ServerNode": t.lease_owner,
        "ProjectId": t.project_id,
        "EnvironmentId": t.environment_id,
        "TenantId": t.tenant_id,
        "Links": {
            "Self": format!("/api/tasks/{}", t.id),
            "Web": format!("/app#/{}/tasks/{}", t.space_id, t.id),
            "Raw": format!("/api/{}/tasks/{}/raw", t.space_id, t.id),
            "Details": format!("/api/{}/tasks/{}/details{{?verbose,tail,ranges}}", t.space_id, t.id),
            "Cancel": format!("/api/tasks/{}/cancel", t.id),
        }
    })
}

fn task_query(params: &Params, space: Option<&str>) -> ApiResult<TaskQuery> {
    let mut states = Vec::new();
    for s in params.list("states") {
        match TaskState::parse(&s) {
            Some(st) => states.push(st.as_str().to_string()),
            None => {
                return Err(ApiError::bad_request(format!(
                    "'{s}' is not a task state; use Queued, Executing, Cancelling, Success, Failed, Canceled or TimedOut"
                )));
            }
        }
    }
    Ok(TaskQuery {
        space_id: space.map(str::to_string),
        ids: params.list("ids"),
        states,
        name: params.get("name").map(str::to_string),
        project_id: params.get("project").map(str::to_string),
        environment_id: params.get("environment").map(str::to_string),
        release_id: None,
        active_only: params.bool("active").unwrap_or(false)
            || params.bool("running").unwrap_or(false),
        skip: 0,
        take: None,
    })
}

async fn list_tasks(
    st: &AppState,
    ctx: &Ctx,
    space: Option<&str>,
    raw: Option<String>,
) -> ApiResult<Value> {
    let params = Params::parse(raw.as_deref());
    let mut q = task_query(&params, space)?;
    let (skip, take) = (params.skip(), params.take());
    let with_ids = !q.ids.is_empty();
    let visible =
        crate::visibility::Visibility::of(st, ctx, space, crate::routes::Permission::TaskView)
            .await?;
    let (rows, total) = match &visible {
        None => {
            if !with_ids {
                q.skip = skip;
                q.take = Some(take);
            }
            st.db.list_tasks(&q).await?
        }
        // Filtered before paging, so totals count only what the caller may see.
        Some(v) => {
            let (all, _) = st.db.list_tasks(&q).await?;
            crate::query::keep_page(all, |t| v.task(t), skip, take, with_ids)
        }
    };
    let base = match space {
        Some(s) => format!("/api/{s}/tasks"),
        None => "/api/tasks".to_string(),
    };
    let template = format!(
        "{base}{{/id}}{{?skip,active,environment,tenant,runbook,project,name,node,running,states,hasPendingInterruptions,hasWarningsOrErrors,take,ids,partialName,spaces,includeSystem}}"
    );
    let active: Vec<String> = rows
        .iter()
        .filter(|t| matches!(t.state.as_str(), "Executing" | "Cancelling"))
        .map(|t| t.id.clone())
        .collect();
    let pending = super::interruptions::pending_tasks(st, &active).await?;
    let items = rows
        .iter()
        .map(|t| {
            let mut v = render(t);
            if pending.contains(&t.id) {
                v["HasPendingInterruptions"] = json!(true);
            }
            v
        })
        .collect();
    let (skip, take) = if with_ids {
        (0, total.max(take))
    } else {
        (skip, take)
    };
    Ok(page(
        "ServerTask",
        items,
        total,
        skip,
        take,
        &base,
        &template,
    ))
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    Ok(Json(list_tasks(&st, &ctx, Some(&space), raw).await?))
}

pub async fn list_all(
    State(st): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    Ok(Json(list_tasks(&st, &ctx, None, raw).await?))
}

async fn load_task(st: &AppState, space: Option<&str>, id: &str) -> ApiResult<TaskRow> {
    match st.db.get_task(id).await? {
        Some(t) if space.is_none_or(|s| s == t.space_id) => Ok(t),
        _ => Err(ApiError::not_found(format!("Task '{id}' was not found"))),
    }
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t = load_task(&st, Some(&space), &id).await?;
    Ok(Json(render_checked(&st, &t).await?))
}

pub async fn get_any(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let t = load_task(&st, None, &id).await?;
    Ok(Json(render_checked(&st, &t).await?))
}

/// `render` with `HasPendingInterruptions` looked up (for a running task).
async fn render_checked(st: &AppState, t: &TaskRow) -> ApiResult<Value> {
    let mut v = render(t);
    if matches!(t.state.as_str(), "Executing" | "Cancelling")
        && !super::interruptions::pending_tasks(st, std::slice::from_ref(&t.id))
            .await?
            .is_empty()
    {
        v["HasPendingInterruptions"] = json!(true);
    }
    Ok(v)
}

/// The most log lines a details or raw response carries.
const MAX_LINES: i64 = 100_000;

async fn log_of(st: &AppState, t: &TaskRow) -> ApiResult<(Vec<ActivityRow>, Vec<LogRow>)> {
    let activities = st.db.task_activities(&t.id).await?;
    let lines = st.db.task_log(&t.id, 0, MAX_LINES).await?;
    Ok((activities, lines))
}

fn activity_json(
    a: &ActivityRow,
    all: &[ActivityRow],
    lines: &HashMap<&str, Vec<&LogRow>>,
) -> Value {
    let children: Vec<Value> = all
        .iter()
        .filter(|c| c.parent_id.as_deref() == Some(a.activity_id.as_str()))
        .map(|c| activity_json(c, all, lines))
        .collect();
    let elements: Vec<Value> = lines
        .get(a.activity_id.as_str())
        .map(|ls| {
            ls.iter()
                .enumerate()
                .map(|(i, l)| json!({"Category": l.category, "OccurredAt": format_ms(l.occurred_at), "MessageText": l.message, "Detail": null, "Number": i + 1}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "Id": a.activity_id,
        "Name": a.name,
        "Started": a.started.map(format_ms),
        "Ended": a.ended.map(format_ms),
        "Status": a.status,
        "ShowAtSummaryLevel": a.parent_id.is_none(),
        "ProgressPercentage": 0,
        "ProgressMessage": "",
        "LogElements": elements,
        "Children": children,
    })
}

async fn details_of(st: &AppState, t: TaskRow) -> ApiResult<Value> {
    let (activities, lines) = log_of(st, &t).await?;
    let mut by_activity: HashMap<&str, Vec<&LogRow>> = HashMap::new();
    let mut size = 0usize;
    for l in &lines {
        size += l.message.len();
        by_activity
            .entry(l.activity_id.as_str())
            .or_default()
            .push(l);
    }
    let roots: Vec<Value> = activities
        .iter()
        .filter(|a| a.parent_id.is_none())
        .map(|a| activity_json(a, &activities, &by_activity))
        .collect();
    let done = TaskState::parse(&t.state).is_some_and(TaskState::is_completed);
    Ok(json!({
        "Task": render_checked(st, &t).await?,
        "Progress": {"ProgressPercentage": if done { 100 } else { 0 }, "EstimatedTimeRemaining": ""},
        "PhysicalLogSize": size,
        "ActivityLogs": roots,
        "Links": {"Self": format!("/api/{}/tasks/{}/details", t.space_id, t.id)},
    }))
}

pub async fn details(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t = load_task(&st, Some(&space), &id).await?;
    Ok(Json(details_of(&st, t).await?))
}

pub async fn details_any(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let t = load_task(&st, None, &id).await?;
    Ok(Json(details_of(&st, t).await?))
}

/// The plain-text log: a header, then each activity's lines, indented by depth.
pub fn raw_text(t: &TaskRow, activities: &[ActivityRow], lines: &[LogRow]) -> String {
    let mut out = String::new();
    let opt = |v: Option<i64>| v.map(format_ms).unwrap_or_default();
    out.push_str(&format!("Task ID:        {}\n", t.id));
    out.push_str(&format!("Task status:    {}\n", t.state));
    out.push_str(&format!("Task queued:    {}\n", format_ms(t.queue_time)));
    out.push_str(&format!("Task started:   {}\n", opt(t.start_time)));
    out.push_str(&format!("Task completed: {}\n", opt(t.completed_time)));
    if let Some(s) = t.start_time {
        out.push_str(&format!(
            "Task duration:  {}\n",
            human_duration(t.completed_time.unwrap_or_else(now_ms) - s)
        ));
    }
    if !t.error_message.is_empty() {
        out.push_str(&format!("Task error:     {}\n", t.error_message));
    }
    out.push_str(&format!(
        "Server version: {}\n\n",
        env!("CARGO_PKG_VERSION")
    ));
    let mut by_activity: HashMap<&str, Vec<&LogRow>> = HashMap::new();
    for l in lines {
        by_activity
            .entry(l.activity_id.as_str())
            .or_default()
            .push(l);
    }
    fn walk(
        a: &ActivityRow,
        depth: usize,
        all: &[ActivityRow],
        by: &HashMap<&str, Vec<&LogRow>>,
        out: &mut String,
    ) {
        let pad = "  ".repeat(depth);
        out.push_str(&format!(
            "                    | {pad}== {}: {} ==\n",
            a.status, a.name
        ));
        // Lines and child activities interleaved in time order.
        enum Item<'a> {
            Line(&'a LogRow),
            Child(&'a ActivityRow),
        }
        let mut items: Vec<(i64, u8, i64, Item)> = Vec::new();
        if let Some(ls) = by.get(a.activity_id.as_str()) {
            for l in ls {
                items.push((l.occurred_at, 0, l.id, Item::Line(l)));
            }
        }
        for c in all
            .iter()
            .filter(|c| c.parent_id.as_deref() == Some(a.activity_id.as_str()))
        {
            items.push((
                c.started.unwrap_or(i64::MAX),
                1,
                c.sort_order,
                Item::Child(c),
            ));
        }
        items.sort_by_key(|(t, k, n, _)| (*t, *k, *n));
        for (_, _, _, item) in items {
            match item {
                Item::Line(l) => {
                    let time = format_ms(l.occurred_at);
                    let hms = time.get(11..19).unwrap_or("");
                    for (i, part) in l.message.split('\n').enumerate() {
                        if i == 0 {
                            out.push_str(&format!("{hms}   {:<9}| {pad}  {part}\n", l.category));
                        } else {
                            out.push_str(&format!("                    | {pad}  {part}\n"));
                        }
                    }
                }
                Item::Child(c) => {
                    out.push_str(&format!("                    | {pad}\n"));
                    walk(c, depth + 1, all, by, out);
                }
            }
        }
    }
    for a in activities.iter().filter(|a| a.parent_id.is_none()) {
        walk(a, 0, activities, &by_activity, &mut out);
    }
    out
}

async fn raw_of(st: &AppState, t: TaskRow) -> ApiResult<Response> {
    let (activities, lines) = log_of(st, &t).await?;
    let text = raw_text(&t, &activities, &lines);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

pub async fn raw(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let t = load_task(&st, Some(&space), &id).await?;
    raw_of(&st, t).await
}

pub async fn raw_any(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let t = load_task(&st, None, &id).await?;
    raw_of(&st, t).await
}

async fn cancel_task(st: &AppState, space: Option<&str>, id: &str, ctx: &Ctx) -> ApiResult<Value> {
    let t = load_task(st, space, id).await?;
    let mut tx = st.db.begin().await?;
    let after = tx
        .request_cancel(&t.id, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Task '{id}' was not found")))?;
    if after.state != t.state {
        audit(
            &mut tx,
            ctx,
            &t.space_id,
            "TaskCanceled",
            format!("{} was canceled", t.description),
            &[&t.id],
            json!({"From": t.state, "To": after.state}),
        )
        .await?;
    }
    tx.commit().await?;
    if after.state == "Cancelling" {
        st.executor.cancel_local(&t.id);
    }
    Ok(render(&after))
}

pub async fn cancel(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    Ok(Json(cancel_task(&st, Some(&space), &id, &ctx).await?))
}

pub async fn cancel_any(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    Ok(Json(cancel_task(&st, None, &id, &ctx).await?))
}

/// `POST /api/{space}/tasks` with `{"Name": "Health", "Arguments": {"MachineIds": […],
/// "EnvironmentId": "…"}}`: queues a health check (the only task type created this way).
pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(input): Body<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    create_in(&st, &space, &ctx, input).await
}

pub async fn create_default(
    State(st): State<AppState>,
    ctx: Ctx,
    Body(input): Body<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    create_in(&st, ferry_domain::DEFAULT_SPACE_ID, &ctx, input).await
}

async fn create_in(
    st: &AppState,
    space: &str,
    ctx: &Ctx,
    input: Value,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = input["Name"].as_str().unwrap_or_default();
    if !name.eq_ignore_ascii_case("Health") {
        return Err(ApiError::bad_request(format!(
            "Name: tasks of type '{name}' cannot be created here; use 'Health' (deployments are created through /deployments)"
        )));
    }
    let args = &input["Arguments"];
    let mut ids: Vec<String> = args["MachineIds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(env) = args["EnvironmentId"].as_str().filter(|e| !e.is_empty()) {
        let mut q = ferry_store::DocQuery::new("Machines");
        q.space_id = Some(space.to_string());
        let (rows, _) = st.db.list_docs(&q).await?;
        let in_env: Vec<String> = rows
            .iter()
            .filter_map(|r| serde_json::from_str::<ferry_domain::Machine>(&r.body).ok())
            .filter(|m| m.environment_ids.iter().any(|e| e == env))
            .map(|m| m.id)
            .collect();
        if ids.is_empty() {
            ids = in_env;
        } else {
            ids.retain(|i| in_env.contains(i));
        }
        if ids.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Arguments.EnvironmentId: the environment '{env}' has no machines to check"
            )));
        }
    }
    let description = input["Description"]
        .as_str()
        .filter(|d| !d.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| "Check deployment target health".to_string());
    let id =
        ferry_executor::health::queue(&st.db, space, &ids, &description, &ctx.principal.username)
            .await?;
    st.executor.wake();
    let t = load_task(st, Some(space), &id).await?;
    Ok((StatusCode::CREATED, Json(render(&t))))
}
