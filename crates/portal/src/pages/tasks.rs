//! Tasks: the list (filtered by state, project and environment, paged) and a task's page —
//! its state (icon and word), times, links to what it deployed, artifacts, per-step and
//! per-target status, the hierarchical log, pending interruptions with one button per offered
//! answer, and Cancel. Everything that changes while the task runs is the partial
//! `tasks/body.html`, which `/live` streams as server-sent events (`task` whenever it changed,
//! `done` once the task finished); without JavaScript the page refreshes itself.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_server::authz::{ProjectRef, Target};
use ferry_server::routes::Permission;
use serde_json::{Value, json};

use super::{Chrome, page, render};
use crate::PortalState;
use crate::ctx::{ApiFailure, FormData, PageResult, Viewer, see_other};
use crate::view::{StateView, arr, b, s, short_time, strs, url_encode};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route("/app/{space}/tasks", get(list))
        .route("/app/{space}/tasks/{id}", get(show))
        .route("/app/{space}/tasks/{id}/live", get(live))
        .route("/app/{space}/tasks/{id}/cancel", post(cancel))
        .route("/app/{space}/interruptions/{id}", post(answer))
}

/// Tasks per page.
const PER_PAGE: i64 = 30;
/// Up to this many projects, the project filter is a select.
const PROJECT_CHOICES: i64 = 100;
/// How often the live stream reads the task.
const POLL: Duration = Duration::from_millis(500);
/// The longest a live stream stays open (the browser reconnects if it still wants more).
const LIVE_FOR: Duration = Duration::from_secs(30 * 60);

const STATES: &[(&str, &str)] = &[
    ("Queued", "Queued"),
    ("Executing", "Running"),
    ("Cancelling", "Cancelling"),
    ("Success", "Succeeded"),
    ("Failed", "Failed"),
    ("Canceled", "Cancelled"),
    ("TimedOut", "Timed out"),
];

use super::with_status;

use crate::view::pairs;

fn task_state(t: &Value) -> StateView {
    StateView::of(
        &s(t, "State"),
        b(t, "HasWarningsOrErrors"),
        b(t, "HasPendingInterruptions"),
    )
}

/// An activity's status (Pending, Running, Success, SuccessWithWarning, Failed, Skipped,
/// Canceled) with an icon and a word.
fn activity_state(status: &str) -> StateView {
    match status {
        "Running" => StateView::of("Executing", false, false),
        "SuccessWithWarning" => StateView::of("Success", true, false),
        "Pending" => StateView {
            name: status.to_string(),
            class: "st-queued",
            icon: "◷",
            label: "Pending".into(),
        },
        "Skipped" => StateView {
            name: status.to_string(),
            class: "st-none",
            icon: "↷",
            label: "Skipped".into(),
        },
        other => StateView::of(other, false, false),
    }
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// `11:40:12` of an ISO time.
fn clock(iso: &str) -> &str {
    iso.get(11..19).unwrap_or(iso)
}

// ---------------------------------------------------------------- list

#[derive(serde::Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    skip: i64,
    #[serde(default)]
    state: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    environment: String,
}

pub struct TaskRow {
    pub id: String,
    pub description: String,
    pub state: StateView,
    pub queued: String,
    pub started: String,
    pub completed: String,
    pub duration: String,
}

#[derive(Template)]
#[template(path = "tasks/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<TaskRow>,
    states: Vec<(String, String)>,
    projects: Vec<(String, String)>,
    /// Whether the projects fit a select (otherwise the filter is a name to type).
    project_select: bool,
    environments: Vec<(String, String)>,
    q_state: String,
    q_project: String,
    q_environment: String,
    filtered: bool,
    prev_href: String,
    next_href: String,
    page_note: String,
}

async fn list(viewer: Viewer, Path(space): Path<String>, Query(q): Query<ListQuery>) -> PageResult {
    let skip = q.skip.max(0);
    // A project may be given by name (the text filter of a big space): resolve it to its id.
    let project_id = if q.project.is_empty() || q.project.starts_with("Projects-") {
        q.project.clone()
    } else {
        match viewer
            .get(&format!("/api/{space}/projects/{}", url_encode(&q.project)))
            .await
        {
            Ok(p) => s(&p, "Id"),
            Err(_) => "Projects-none".to_string(),
        }
    };
    let mut api = format!("/api/{space}/tasks?skip={skip}&take={PER_PAGE}");
    let mut filters = String::new();
    for (api_key, key, v, api_v) in [
        ("states", "state", &q.state, &q.state),
        ("project", "project", &q.project, &project_id),
        ("environment", "environment", &q.environment, &q.environment),
    ] {
        if !v.is_empty() {
            api.push_str(&format!("&{api_key}={}", url_encode(api_v)));
            filters.push_str(&format!("&{key}={}", url_encode(v)));
        }
    }
    let proj_path = format!("/api/{space}/projects?take={PROJECT_CHOICES}");
    let env_path = format!("/api/{space}/environments/all");
    let (chrome, tasks, projects, envs) = tokio::join!(
        viewer.chrome(&space, "tasks", "Tasks"),
        viewer.get(&api),
        viewer.get(&proj_path),
        viewer.get(&env_path),
    );
    let tasks = tasks?;
    let rows = arr(&tasks, "Items")
        .iter()
        .map(|t| TaskRow {
            id: s(t, "Id"),
            description: s(t, "Description"),
            state: task_state(t),
            queued: short_time(&s(t, "QueueTime")),
            started: short_time(&s(t, "StartTime")),
            completed: short_time(&s(t, "CompletedTime")),
            duration: s(t, "Duration"),
        })
        .collect();
    let total = tasks
        .get("TotalResults")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let base = format!("/app/{space}/tasks");
    let prev_href = if skip > 0 {
        format!("{base}?skip={}{filters}", (skip - PER_PAGE).max(0))
    } else {
        String::new()
    };
    let next_href = if skip + PER_PAGE < total {
        format!("{base}?skip={}{filters}", skip + PER_PAGE)
    } else {
        String::new()
    };
    let page_note = if total > 0 {
        format!(
            "Tasks {}–{} of {total}",
            (skip + 1).min(total),
            (skip + PER_PAGE).min(total)
        )
    } else {
        String::new()
    };
    page(&ListPage {
        chrome,
        rows,
        states: STATES
            .iter()
            .map(|(k, l)| (k.to_string(), l.to_string()))
            .collect(),
        project_select: projects
            .as_ref()
            .ok()
            .and_then(|p| p.get("TotalResults"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            <= PROJECT_CHOICES,
        projects: projects.map(|p| pairs(&p)).unwrap_or_default(),
        environments: envs.map(|e| pairs(&e)).unwrap_or_default(),
        filtered: !filters.is_empty(),
        q_state: q.state,
        q_project: q.project,
        q_environment: q.environment,
        prev_href,
        next_href,
        page_note,
    })
}

// ---------------------------------------------------------------- the live part

pub struct StepStatus {
    pub name: String,
    pub state: StateView,
    pub targets: Vec<(String, StateView)>,
}

pub struct Prompt {
    pub id: String,
    pub title: String,
    pub instructions: String,
    pub buttons: Vec<(String, String)>,
    /// Why this viewer cannot answer ("" when they can).
    pub reason: String,
    /// Who has taken responsibility (when someone else has).
    pub holder: String,
}

#[derive(Template)]
#[template(path = "tasks/body.html")]
struct Body {
    space: String,
    task_id: String,
    csrf: String,
    state: StateView,
    can_cancel: bool,
    queued: String,
    started: String,
    completed: String,
    duration: String,
    error_message: String,
    steps: Vec<StepStatus>,
    log_html: String,
    prompts: Vec<Prompt>,
}

/// The log tree as nested `<details>`.
fn log_tree(a: &Value, out: &mut String) {
    let st = activity_state(&s(a, "Status"));
    out.push_str(&format!(
        "<details id=\"log-{}\" open><summary><span class=\"state {}\"><span class=\"icon\" aria-hidden=\"true\">{}</span> {}</span> {}</summary>",
        esc(&s(a, "Id")),
        st.class,
        st.icon,
        esc(&st.label),
        esc(&s(a, "Name"))
    ));
    for l in arr(a, "LogElements") {
        out.push_str(&format!(
            "<div class=\"line lvl-{}\">{} {}</div>",
            esc(&s(l, "Category")),
            esc(clock(&s(l, "OccurredAt"))),
            esc(&s(l, "MessageText"))
        ));
    }
    for c in arr(a, "Children") {
        log_tree(c, out);
    }
    out.push_str("</details>");
}

/// What the viewer may not do about the task, decided once per page (or live stream).
#[derive(Clone, Default)]
struct Abilities {
    can_cancel: bool,
    /// The ids of the viewer's teams, when known.
    teams: Option<HashSet<String>>,
    all_powerful: bool,
}

async fn abilities(viewer: &Viewer, space: &str, task: &Value) -> Abilities {
    let project_id = s(task, "ProjectId");
    let project = if project_id.is_empty() {
        None
    } else {
        viewer
            .get(&format!("/api/{space}/projects/{project_id}"))
            .await
            .ok()
            .map(|p| ProjectRef {
                id: s(&p, "Id"),
                group_id: s(&p, "ProjectGroupId"),
            })
    };
    let env = s(task, "EnvironmentId");
    let tenant = s(task, "TenantId");
    let target = Target::deployment(
        project,
        (!env.is_empty()).then_some(env.as_str()),
        (!tenant.is_empty()).then_some(tenant.as_str()),
    );
    let teams_path = format!("/api/users/{}/teams", url_encode(&viewer.principal.user_id));
    let (checker, teams) = tokio::join!(viewer.checker(), viewer.get(&teams_path));
    let (can_cancel, all_powerful) = match &checker {
        Ok(c) => (
            c.can(Some(space), Permission::TaskCancel, &target),
            c.is_all_powerful(),
        ),
        Err(_) => (false, false),
    };
    Abilities {
        can_cancel,
        teams: teams
            .ok()
            .map(|t| pairs(&t).into_iter().map(|(id, _)| id).collect()),
        all_powerful,
    }
}

/// Reads the task and renders the live part. Returns the HTML, whether the task finished, and
/// the task.
async fn body_html(
    viewer: &Viewer,
    space: &str,
    id: &str,
    ab: &Abilities,
) -> Result<(String, bool, Value), ApiFailure> {
    let details_path = format!("/api/{space}/tasks/{}/details?verbose=true", url_encode(id));
    let int_path = format!(
        "/api/{space}/interruptions?regarding={}&pendingOnly=true",
        url_encode(id)
    );
    let (details, ints) = tokio::join!(viewer.get(&details_path), viewer.get(&int_path));
    let details = details?;
    let task = details.get("Task").cloned().unwrap_or(Value::Null);
    let finished = b(&task, "IsCompleted");
    let roots = arr(&details, "ActivityLogs");
    let step_list: &[Value] = match roots {
        [only] if !arr(only, "Children").is_empty() => arr(only, "Children"),
        other => other,
    };
    let steps = step_list
        .iter()
        .map(|st| StepStatus {
            name: s(st, "Name"),
            state: activity_state(&s(st, "Status")),
            targets: arr(st, "Children")
                .iter()
                .map(|t| (s(t, "Name"), activity_state(&s(t, "Status"))))
                .collect(),
        })
        .collect();
    let mut log_html = String::new();
    for r in roots {
        log_tree(r, &mut log_html);
    }
    let prompts = match ints {
        Ok(v) => arr(&v, "Items")
            .iter()
            .filter(|i| b(i, "IsPending"))
            .map(|i| prompt_of(i, viewer, ab))
            .collect(),
        Err(_) => Vec::new(),
    };
    // The two reads are not one snapshot: an interruption raised between them is pending here
    // before the task says so. What the page offers to answer decides the state it shows.
    let state = if !finished && !prompts.is_empty() {
        StateView::of(&s(&task, "State"), false, true)
    } else {
        task_state(&task)
    };
    let active = !finished;
    let html = Body {
        space: space.to_string(),
        task_id: s(&task, "Id"),
        csrf: viewer.csrf.clone(),
        state,
        can_cancel: active && ab.can_cancel,
        queued: short_time(&s(&task, "QueueTime")),
        started: short_time(&s(&task, "StartTime")),
        completed: short_time(&s(&task, "CompletedTime")),
        duration: s(&task, "Duration"),
        error_message: s(&task, "ErrorMessage"),
        steps,
        log_html,
        prompts,
    }
    .render()
    .map_err(|_| ApiFailure::new(500, "The task could not be shown."))?;
    Ok((html.replace('\r', ""), finished, task))
}

fn prompt_of(i: &Value, viewer: &Viewer, ab: &Abilities) -> Prompt {
    let form = i.get("Form").cloned().unwrap_or(Value::Null);
    let mut instructions = String::new();
    let mut buttons = Vec::new();
    for e in arr(&form, "Elements") {
        let control = e.get("Control").cloned().unwrap_or(Value::Null);
        match s(&control, "Type").as_str() {
            "Paragraph" => instructions = s(&control, "Text"),
            "SubmitButtonGroup" => {
                for bt in arr(&control, "Buttons") {
                    buttons.push((s(bt, "Value"), s(bt, "Text")));
                }
            }
            _ => {}
        }
    }
    let teams = strs(i, "ResponsibleTeamIds");
    let mut reason = String::new();
    if !b(i, "CanTakeResponsibility") {
        reason = "This interruption can no longer be taken.".into();
    } else if !teams.is_empty() && !ab.all_powerful {
        let member = match &ab.teams {
            Some(mine) => {
                teams.iter().any(|t| mine.contains(t))
                    || teams.iter().any(|t| t == "teams-everyone")
            }
            None => true,
        };
        if !member {
            reason = "Only members of the step's responsible teams may answer this.".into();
        }
    }
    let holder_id = s(i, "ResponsibleUserId");
    let holder = if !holder_id.is_empty() && holder_id != viewer.principal.user_id {
        holder_id
    } else {
        String::new()
    };
    Prompt {
        id: s(i, "Id"),
        title: s(i, "Title"),
        instructions,
        buttons,
        reason,
        holder,
    }
}

// ---------------------------------------------------------------- task page

pub struct Artifact {
    pub name: String,
    pub href: String,
    pub size: String,
}

#[derive(Template)]
#[template(path = "tasks/show.html")]
struct ShowPage {
    chrome: Chrome,
    task_id: String,
    description: String,
    active: bool,
    error: String,
    body: String,
    links: Vec<(&'static str, String, String)>,
    artifacts: Vec<Artifact>,
}

fn size_text(bytes: i64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// What the task deployed, as links: project, release, environment, tenant.
async fn deployment_links(
    viewer: &Viewer,
    space: &str,
    task: &Value,
) -> Vec<(&'static str, String, String)> {
    let deployment = task
        .get("Arguments")
        .map(|a| s(a, "DeploymentId"))
        .unwrap_or_default();
    let project = s(task, "ProjectId");
    let env = s(task, "EnvironmentId");
    let tenant = s(task, "TenantId");
    let get_opt = |path: Option<String>| async move {
        match path {
            Some(p) => viewer.get(&p).await.ok(),
            None => None,
        }
    };
    let (dep, proj, envv, ten) = tokio::join!(
        get_opt((!deployment.is_empty()).then(|| format!("/api/{space}/deployments/{deployment}"))),
        get_opt((!project.is_empty()).then(|| format!("/api/{space}/projects/{project}"))),
        get_opt((!env.is_empty()).then(|| format!("/api/{space}/environments/{env}"))),
        get_opt((!tenant.is_empty()).then(|| format!("/api/{space}/tenants/{tenant}"))),
    );
    let release = match &dep {
        Some(d) if !s(d, "ReleaseId").is_empty() => viewer
            .get(&format!("/api/{space}/releases/{}", s(d, "ReleaseId")))
            .await
            .ok(),
        _ => None,
    };
    let mut links = Vec::new();
    if let Some(p) = proj {
        links.push((
            "Project",
            format!("/app/{space}/projects/{}", s(&p, "Id")),
            s(&p, "Name"),
        ));
    }
    if let Some(r) = release {
        links.push((
            "Release",
            format!("/app/{space}/releases/{}", s(&r, "Id")),
            s(&r, "Version"),
        ));
    }
    if let Some(e) = envv {
        links.push((
            "Environment",
            format!("/app/{space}/infrastructure/environments/{}", s(&e, "Id")),
            s(&e, "Name"),
        ));
    }
    if let Some(t) = ten {
        links.push((
            "Tenant",
            format!("/app/{space}/tenants/{}", s(&t, "Id")),
            s(&t, "Name"),
        ));
    }
    links
}

async fn task_page(
    viewer: &Viewer,
    space: &str,
    id: &str,
    failure: Option<&ApiFailure>,
) -> PageResult {
    let task = viewer
        .get(&format!("/api/{space}/tasks/{}", url_encode(id)))
        .await?;
    let art_path = format!("/api/{space}/artifacts?regarding={}", url_encode(id));
    let (chrome, ab, links, arts) = tokio::join!(
        viewer.chrome(space, "tasks", s(&task, "Description")),
        abilities(viewer, space, &task),
        deployment_links(viewer, space, &task),
        viewer.get(&art_path),
    );
    let (body, finished, task) = body_html(viewer, space, id, &ab).await?;
    let artifacts = arts
        .map(|a| {
            arr(&a, "Items")
                .iter()
                .map(|x| Artifact {
                    name: s(x, "Filename"),
                    href: format!("/api/{space}/artifacts/{}/content", s(x, "Id")),
                    size: size_text(x.get("Length").and_then(Value::as_i64).unwrap_or(0)),
                })
                .collect()
        })
        .unwrap_or_default();
    let r = render(&ShowPage {
        chrome,
        task_id: s(&task, "Id"),
        description: s(&task, "Description"),
        active: !finished,
        error: failure.map(ApiFailure::text).unwrap_or_default(),
        body,
        links,
        artifacts,
    });
    Ok(match failure {
        Some(f) => with_status(r, f.status),
        None => r,
    })
}

async fn show(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    task_page(&viewer, &space, &id, None).await
}

// ---------------------------------------------------------------- live stream

struct Live {
    viewer: Viewer,
    space: String,
    id: String,
    ab: Abilities,
    last: String,
    started: Instant,
    polled: bool,
    /// 0: streaming; 1: the last `task` was sent, `done` is next; 2: ended.
    phase: u8,
}

async fn live(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> Response {
    let task = match viewer
        .get(&format!("/api/{space}/tasks/{}", url_encode(&id)))
        .await
    {
        Ok(t) => t,
        Err(f) => return super::error_page(&f),
    };
    let ab = abilities(&viewer, &space, &task).await;
    let state = Live {
        viewer,
        space,
        id,
        ab,
        last: String::new(),
        started: Instant::now(),
        polled: false,
        phase: 0,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        match st.phase {
            1 => {
                st.phase = 2;
                return Some((
                    Ok::<Event, Infallible>(Event::default().event("done").data("done")),
                    st,
                ));
            }
            2 => return None,
            _ => {}
        }
        loop {
            if st.polled {
                tokio::time::sleep(POLL).await;
            }
            st.polled = true;
            if st.started.elapsed() > LIVE_FOR {
                return None;
            }
            let (html, finished, _) = match body_html(&st.viewer, &st.space, &st.id, &st.ab).await {
                Ok(x) => x,
                Err(_) => return None,
            };
            if finished {
                st.phase = 1;
                return Some((Ok(Event::default().event("task").data(html)), st));
            }
            if html != st.last {
                st.last = html.clone();
                return Some((Ok(Event::default().event("task").data(html)), st));
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ---------------------------------------------------------------- actions

async fn cancel(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    match viewer
        .send(
            Method::POST,
            &format!("/api/{space}/tasks/{}/cancel", url_encode(&id)),
            &form.csrf(),
            None,
        )
        .await
    {
        Ok(_) => Ok(see_other(&format!("/app/{space}/tasks/{id}"))),
        Err(f) => task_page(&viewer, &space, &id, Some(&f)).await,
    }
}

async fn answer(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let base = format!("/api/{space}/interruptions/{}", url_encode(&id));
    let i = viewer.get(&base).await?;
    let task = s(&i, "TaskId");
    let csrf = form.csrf();
    let result: Result<Value, ApiFailure> = async {
        if !b(&i, "HasResponsibility") {
            viewer
                .send(Method::PUT, &format!("{base}/responsible"), &csrf, None)
                .await?;
        }
        let notes = form.get("notes");
        let body = json!({
            "Result": form.get("result"),
            "Notes": (!notes.is_empty()).then_some(notes),
        });
        viewer
            .send(Method::POST, &format!("{base}/submit"), &csrf, Some(&body))
            .await
    }
    .await;
    match result {
        Ok(_) => Ok(see_other(&format!("/app/{space}/tasks/{task}"))),
        Err(f) => task_page(&viewer, &space, &task, Some(&f)).await,
    }
}
