//! The dashboard: the current deployment of every project × environment (× tenant), in
//! Octopus's shape, read from the cells the store maintains as deployments are queued and
//! finish (`ferry_store::dashboard`), so reading it never scans the task history.
//!
//! `GET /api/{space}/dashboard` is paged by project group (`skip`/`take` over the space's
//! project groups, default 20) and by tenant (`tenantSkip`/`tenantTake` over the space's
//! tenants, default 30: the tenanted items of the page's projects for those tenants).
//! `GET /api/{space}/dashboard/dynamic` is the same shape for the `projects` and `environments`
//! asked for, every project group at once unless `take` says otherwise, previous items only with
//! `includePrevious=true`. See `docs/dashboard.md`.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ferry_domain::task::TaskState;
use ferry_domain::time::{format_ms, human_duration, now_ms, parse_ms};
use ferry_domain::{Deployment, Release};
use ferry_store::{DashboardCell, DashboardQuery, DashboardQueued, Tx};
use serde::Serialize;
use serde_json::{Map, Value};

use super::dashboard_catalog::{GroupEntry, TenantEntry};
use super::*;
use crate::query::MAX_TAKE;

/// Project groups per page, and tenants per page, when the request does not say.
pub const DEFAULT_GROUP_TAKE: i64 = 20;
pub const DEFAULT_TENANT_TAKE: i64 = 30;

/// Records a deployment just queued in its dashboard cell, inside the deployment's
/// transaction. `task_seq` is the task's sequence number (the order of deployments).
pub async fn queued(
    tx: &mut Tx,
    d: &Deployment,
    release: &Release,
    task_seq: i64,
) -> ApiResult<()> {
    tx.dashboard_deployment_queued(&DashboardQueued {
        space_id: d.space_id.clone(),
        project_id: d.project_id.clone(),
        environment_id: d.environment_id.clone(),
        tenant_id: d.tenant_id.clone().unwrap_or_default(),
        deployment_id: d.id.clone(),
        task_id: d.task_id.clone(),
        task_seq,
        release_id: release.id.clone(),
        release_version: release.version.clone(),
        channel_id: d.channel_id.clone(),
        created: parse_ms(&d.created).unwrap_or_else(now_ms),
    })
    .await?;
    Ok(())
}

// ---- what is read from the documents -------------------------------------------------------

/// The few fields of a project the dashboard shows (the body has many more; serde skips them).
// ---- the response ---------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Dashboard<'a> {
    id: String,
    project_groups: Vec<GroupOut>,
    projects: Vec<ProjectOut>,
    environments: Vec<EnvOut>,
    tenants: Vec<Value>,
    items: Vec<Item<'a>>,
    previous_items: Vec<Item<'a>>,
    is_filtered: bool,
    total_project_groups: i64,
    total_tenants: i64,
    links: Map<String, Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GroupOut {
    id: String,
    name: String,
    slug: String,
    description: Option<String>,
    environment_ids: Vec<String>,
    links: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ProjectOut {
    id: String,
    name: String,
    slug: String,
    project_group_id: String,
    environment_ids: Vec<String>,
    tenanted_deployment_mode: String,
    can_perform_untenanted_deployment: bool,
    is_disabled: bool,
    links: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EnvOut {
    id: String,
    name: String,
    links: Value,
}

/// Epoch milliseconds shown as RFC 3339 with milliseconds and `+00:00` (as `format_ms`), written
/// straight into the output: a page has thousands of timestamps.
#[derive(Clone, Copy)]
struct Ts(i64);

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (days, ms) = (self.0.div_euclid(86_400_000), self.0.rem_euclid(86_400_000));
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        if !(0..=9999).contains(&year) {
            return f.write_str(&format_ms(self.0));
        }
        let secs = ms / 1000;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            ms % 1000
        )
    }
}

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `/api/{space}/{collection}/{id}` (or `/api/{collection}/{id}` without a space), written
/// straight into the output.
struct Link<'a> {
    space: Option<&'a str>,
    collection: &'static str,
    id: &'a str,
}

impl std::fmt::Display for Link<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.space {
            Some(space) => write!(f, "/api/{space}/{}/{}", self.collection, self.id),
            None => write!(f, "/api/{}/{}", self.collection, self.id),
        }
    }
}

impl Serialize for Link<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A dashboard item, borrowing from its cell.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Item<'a> {
    id: &'a str,
    project_id: &'a str,
    environment_id: &'a str,
    release_id: &'a str,
    deployment_id: &'a str,
    task_id: &'a str,
    tenant_id: Option<&'a str>,
    channel_id: &'a str,
    release_version: &'a str,
    created: Ts,
    queue_time: Ts,
    start_time: Option<Ts>,
    completed_time: Option<Ts>,
    state: &'static str,
    has_pending_interruptions: bool,
    has_pending_preconditions: bool,
    has_warnings_or_errors: bool,
    error_message: &'a str,
    duration: String,
    is_current: bool,
    is_previous: bool,
    is_completed: bool,
    links: ItemLinks<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ItemLinks<'a> {
    #[serde(rename = "Self")]
    self_link: Link<'a>,
    release: Link<'a>,
    task: Link<'a>,
}

/// A task's state and times, for an item.
struct TaskView<'a> {
    state: &'a str,
    queue_time: i64,
    start_time: Option<i64>,
    completed_time: Option<i64>,
    error_message: &'a str,
    has_warnings_or_errors: bool,
}

/// The ids and release of an item.
struct Ids<'a> {
    deployment: &'a str,
    task: &'a str,
    release: &'a str,
    channel: &'a str,
    version: &'a str,
    created: i64,
}

fn item<'a>(
    space: &'a str,
    c: &'a DashboardCell,
    ids: Ids<'a>,
    t: TaskView<'a>,
    current: bool,
) -> Item<'a> {
    let state = TaskState::parse(t.state).unwrap_or(TaskState::Failed);
    let duration = t
        .start_time
        .map(|s| human_duration(t.completed_time.unwrap_or_else(now_ms) - s))
        .unwrap_or_default();
    Item {
        id: ids.deployment,
        project_id: &c.project_id,
        environment_id: &c.environment_id,
        release_id: ids.release,
        deployment_id: ids.deployment,
        task_id: ids.task,
        tenant_id: (!c.tenant_id.is_empty()).then_some(c.tenant_id.as_str()),
        channel_id: ids.channel,
        release_version: ids.version,
        created: Ts(ids.created),
        queue_time: Ts(t.queue_time),
        start_time: t.start_time.map(Ts),
        completed_time: t.completed_time.map(Ts),
        state: state.as_str(),
        has_pending_interruptions: false,
        has_pending_preconditions: false,
        has_warnings_or_errors: t.has_warnings_or_errors,
        error_message: t.error_message,
        duration,
        is_current: current,
        is_previous: !current,
        is_completed: state.is_completed(),
        links: ItemLinks {
            self_link: Link {
                space: Some(space),
                collection: "deployments",
                id: ids.deployment,
            },
            release: Link {
                space: Some(space),
                collection: "releases",
                id: ids.release,
            },
            task: Link {
                space: None,
                collection: "tasks",
                id: ids.task,
            },
        },
    }
}

fn current_item<'a>(space: &'a str, c: &'a DashboardCell) -> Item<'a> {
    item(
        space,
        c,
        Ids {
            deployment: &c.deployment_id,
            task: &c.task_id,
            release: &c.release_id,
            channel: &c.channel_id,
            version: &c.release_version,
            created: c.created,
        },
        TaskView {
            state: &c.state,
            queue_time: c.queue_time,
            start_time: c.start_time,
            completed_time: c.completed_time,
            error_message: &c.error_message,
            has_warnings_or_errors: c.has_warnings_or_errors != 0,
        },
        true,
    )
}

fn previous_item<'a>(space: &'a str, c: &'a DashboardCell) -> Option<Item<'a>> {
    Some(item(
        space,
        c,
        Ids {
            deployment: c.prev_deployment_id.as_deref()?,
            task: c.prev_task_id.as_deref()?,
            release: c.prev_release_id.as_deref().unwrap_or(""),
            channel: c.prev_channel_id.as_deref().unwrap_or(""),
            version: c.prev_release_version.as_deref().unwrap_or(""),
            created: c.prev_created.unwrap_or(0),
        },
        TaskView {
            state: c.prev_state.as_deref().unwrap_or("Success"),
            queue_time: c.prev_queue_time.unwrap_or(0),
            start_time: c.prev_start_time,
            completed_time: c.prev_completed_time,
            error_message: "",
            has_warnings_or_errors: c.prev_has_warnings_or_errors.unwrap_or(0) != 0,
        },
        false,
    ))
}

// ---- the request ----------------------------------------------------------------------------

/// A non-negative whole number parameter; 400 naming it otherwise.
fn count_param(params: &Params, names: &[&str], default: i64) -> ApiResult<i64> {
    for name in names {
        if let Some(v) = params.get(name) {
            return match v.trim().parse::<i64>() {
                Ok(n) if n >= 0 => Ok(n.min(MAX_TAKE)),
                _ => Err(ApiError::bad_request(format!(
                    "The parameter '{name}' must be a whole number of at least 0, not '{v}'"
                ))),
            };
        }
    }
    Ok(default)
}

/// A boolean parameter; 400 naming it when it is neither true nor false.
fn bool_param(params: &Params, name: &str, default: bool) -> ApiResult<bool> {
    match params.get(name).map(str::trim) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!(
            "The parameter '{name}' must be true or false, not '{v}'"
        ))),
    }
}

/// Values of all the given list parameters (repeated, comma-separated), in order, deduplicated.
fn list_params(params: &Params, names: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        for v in params.list(name) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

struct Request {
    group_ids: Vec<String>,
    project_ids: Vec<String>,
    environment_ids: Vec<String>,
    tenant_ids: Vec<String>,
    skip: i64,
    take: i64,
    tenant_skip: i64,
    tenant_take: i64,
    include_previous: bool,
}

impl Request {
    fn parse(params: &Params, dynamic: bool) -> ApiResult<Request> {
        // Accepted and ignored (documented): Octopus's display options.
        for name in ["showAll", "highestLatestVersionPerProjectAndEnvironment"] {
            bool_param(params, name, false)?;
        }
        Ok(Request {
            group_ids: list_params(
                params,
                &["projectGroupId", "projectGroupIds", "projectGroups"],
            ),
            project_ids: list_params(params, &["projectId", "projectIds", "projects"]),
            environment_ids: list_params(
                params,
                &["environmentId", "environmentIds", "environments"],
            ),
            tenant_ids: list_params(
                params,
                &["tenantId", "tenantIds", "tenants", "selectedTenants"],
            ),
            skip: count_param(params, &["skip"], 0)?,
            take: count_param(
                params,
                &["take"],
                if dynamic {
                    MAX_TAKE
                } else {
                    DEFAULT_GROUP_TAKE
                },
            )?,
            tenant_skip: count_param(params, &["tenantSkip"], 0)?,
            tenant_take: count_param(params, &["tenantTake"], DEFAULT_TENANT_TAKE)?,
            include_previous: bool_param(params, "includePrevious", !dynamic)?,
        })
    }

    fn is_filtered(&self) -> bool {
        !(self.group_ids.is_empty()
            && self.project_ids.is_empty()
            && self.environment_ids.is_empty()
            && self.tenant_ids.is_empty())
    }
}

/// Builds the dashboard and serialises it (the items borrow from the cells read here).
async fn build(
    st: &AppState,
    ctx: &Ctx,
    space: &str,
    raw: Option<&str>,
    dynamic: bool,
) -> ApiResult<Vec<u8>> {
    require_space(st, space).await?;
    // What the caller may not see is left out (projects, then cells by deployment scope).
    let see_projects = crate::visibility::Visibility::of(
        st,
        ctx,
        Some(space),
        crate::routes::Permission::ProjectView,
    )
    .await?;
    let see_deployments = crate::visibility::Visibility::of(
        st,
        ctx,
        Some(space),
        crate::routes::Permission::DeploymentView,
    )
    .await?;
    let began = std::time::Instant::now();
    let params = Params::parse(raw);
    let req = Request::parse(&params, dynamic)?;
    let catalog = super::dashboard_catalog::get(st, space).await?;
    let env_order = &catalog.env_order;
    let shown_env = |id: &str| {
        env_order.contains_key(id)
            && (req.environment_ids.is_empty() || req.environment_ids.iter().any(|e| e == id))
    };

    // Project groups: those asked for, or of the projects asked for, or all; then one page.
    let mut wanted_groups: Option<HashSet<&str>> =
        (!req.group_ids.is_empty()).then(|| req.group_ids.iter().map(String::as_str).collect());
    let asked_project =
        |id: &str| req.project_ids.is_empty() || req.project_ids.iter().any(|p| p == id);
    if !req.project_ids.is_empty() {
        let of_projects: HashSet<&str> = catalog
            .projects
            .iter()
            .filter(|p| asked_project(&p.id))
            .map(|p| p.group_id.as_str())
            .collect();
        wanted_groups = Some(match wanted_groups {
            Some(g) => g.intersection(&of_projects).copied().collect(),
            None => of_projects,
        });
    }
    let groups: Vec<&GroupEntry> = catalog
        .groups
        .iter()
        .filter(|g| {
            wanted_groups
                .as_ref()
                .is_none_or(|w| w.contains(g.id.as_str()))
        })
        .collect();
    let total_groups = i64::try_from(groups.len()).unwrap_or(i64::MAX);
    let page: Vec<&GroupEntry> = groups
        .into_iter()
        .skip(usize::try_from(req.skip).unwrap_or(usize::MAX))
        .take(usize::try_from(req.take).unwrap_or(usize::MAX))
        .collect();
    let page_ids: HashSet<&str> = page.iter().map(|g| g.id.as_str()).collect();

    // The projects of those groups (the ones asked for, when asked), with their environments.
    let mut projects = Vec::new();
    let mut project_ids: Vec<String> = Vec::new();
    let mut group_envs: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut tenanted_any = false;
    for p in catalog
        .projects
        .iter()
        .filter(|p| page_ids.contains(p.group_id.as_str()) && asked_project(&p.id))
        .filter(|p| {
            see_projects
                .as_ref()
                .is_none_or(|v| v.concerning(space, Some(&p.id), None, None))
        })
    {
        let environment_ids: Vec<String> = p
            .environment_ids
            .iter()
            .filter(|e| shown_env(e))
            .cloned()
            .collect();
        group_envs.entry(p.group_id.as_str()).or_default().extend(
            p.environment_ids
                .iter()
                .map(String::as_str)
                .filter(|e| shown_env(e)),
        );
        tenanted_any |= p.tenanted_deployment_mode != "Untenanted";
        project_ids.push(p.id.clone());
        projects.push(ProjectOut {
            id: p.id.clone(),
            name: p.name.clone(),
            slug: p.slug.clone(),
            project_group_id: p.group_id.clone(),
            environment_ids,
            can_perform_untenanted_deployment: p.tenanted_deployment_mode != "Tenanted",
            tenanted_deployment_mode: p.tenanted_deployment_mode.clone(),
            is_disabled: p.is_disabled,
            links: links(format!("/api/{space}/projects/{}", p.id), &[]),
        });
    }

    let project_groups = page
        .iter()
        .map(|g| {
            let mut environment_ids: Vec<String> = group_envs
                .get(g.id.as_str())
                .map(|s| s.iter().map(|e| e.to_string()).collect())
                .unwrap_or_default();
            environment_ids
                .sort_by_key(|e| env_order.get(e.as_str()).copied().unwrap_or(usize::MAX));
            GroupOut {
                id: g.id.clone(),
                name: g.name.clone(),
                slug: g.slug.clone(),
                description: g.description.clone(),
                environment_ids,
                links: links(format!("/api/{space}/projectgroups/{}", g.id), &[]),
            }
        })
        .collect::<Vec<_>>();

    // One page of tenants (those asked for, when asked).
    let asked_tenants: Vec<&TenantEntry> = catalog
        .tenants
        .iter()
        .filter(|t| req.tenant_ids.is_empty() || req.tenant_ids.contains(&t.id))
        .collect();
    let total_tenants = i64::try_from(asked_tenants.len()).unwrap_or(i64::MAX);
    let tenant_rows: Vec<&TenantEntry> = asked_tenants
        .into_iter()
        .skip(usize::try_from(req.tenant_skip).unwrap_or(usize::MAX))
        .take(usize::try_from(req.tenant_take).unwrap_or(usize::MAX))
        .collect();
    let page_projects: HashSet<&str> = project_ids.iter().map(String::as_str).collect();
    let tenants = tenant_rows
        .iter()
        .map(|t| {
            // Only the page's projects: a tenant may be connected to thousands.
            let pe: Map<String, Value> = t
                .project_environments
                .iter()
                .filter(|(p, _)| page_projects.contains(p.as_str()))
                .map(|(p, envs)| (p.clone(), envs.clone()))
                .collect();
            let mut out = Map::new();
            out.insert("Id".into(), Value::String(t.id.clone()));
            out.insert("Name".into(), Value::String(t.name.clone()));
            out.insert("ProjectEnvironments".into(), Value::Object(pe));
            out.insert("TenantTags".into(), t.tenant_tags.clone());
            out.insert(
                "Links".into(),
                links(format!("/api/{space}/tenants/{}", t.id), &[]),
            );
            Value::Object(out)
        })
        .collect::<Vec<_>>();
    let tenant_ids: Vec<String> = if tenanted_any {
        tenant_rows.iter().map(|t| t.id.clone()).collect()
    } else {
        Vec::new()
    };

    // The cells: one indexed read joined with their tasks by primary key.
    let docs_done = began.elapsed();
    let cells = if project_ids.is_empty() {
        std::sync::Arc::new(Vec::new())
    } else {
        super::dashboard_catalog::cells(
            st,
            &DashboardQuery {
                space_id: space.to_string(),
                project_ids: project_ids.clone(),
                environment_ids: req.environment_ids.clone(),
                tenant_ids: Some(tenant_ids),
            },
        )
        .await?
    };
    let cells_done = began.elapsed();
    let mut items = Vec::with_capacity(cells.len());
    let mut previous_items = Vec::new();
    // Running deployments waiting for a person (one indexed read, only when some are running).
    let running: Vec<String> = cells
        .iter()
        .filter(|c| c.state == "Executing" || c.state == "Cancelling")
        .map(|c| c.task_id.clone())
        .collect();
    let waiting = super::interruptions::pending_tasks(st, &running).await?;
    let visible_cell = |c: &DashboardCell| {
        see_deployments.as_ref().is_none_or(|v| {
            v.concerning(
                space,
                Some(&c.project_id),
                Some(&c.environment_id),
                Some(&c.tenant_id),
            )
        })
    };
    for c in cells
        .iter()
        .filter(|c| shown_env(&c.environment_id) && visible_cell(c))
    {
        let mut current = current_item(space, c);
        current.has_pending_interruptions = waiting.contains(&c.task_id);
        items.push(current);
        if req.include_previous {
            if let Some(p) = previous_item(space, c) {
                previous_items.push(p);
            }
        }
    }

    let environments = catalog
        .envs
        .iter()
        .filter(|e| shown_env(&e.id))
        .map(|e| EnvOut {
            id: e.id.clone(),
            name: e.name.clone(),
            links: links(format!("/api/{space}/environments/{}", e.id), &[]),
        })
        .collect();

    let base = if dynamic {
        format!("/api/{space}/dashboard/dynamic")
    } else {
        format!("/api/{space}/dashboard")
    };
    let mut page_links = Map::new();
    page_links.insert(
        "Self".into(),
        Value::String(format!(
            "{base}?skip={}&take={}&tenantSkip={}&tenantTake={}",
            req.skip, req.take, req.tenant_skip, req.tenant_take
        )),
    );
    if req.skip.saturating_add(req.take) < total_groups && req.take > 0 {
        page_links.insert(
            "Page.Next".into(),
            Value::String(format!(
                "{base}?skip={}&take={}&tenantSkip={}&tenantTake={}",
                req.skip + req.take,
                req.take,
                req.tenant_skip,
                req.tenant_take
            )),
        );
    }
    if req.tenant_skip.saturating_add(req.tenant_take) < total_tenants && req.tenant_take > 0 {
        page_links.insert(
            "Tenants.Next".into(),
            Value::String(format!(
                "{base}?skip={}&take={}&tenantSkip={}&tenantTake={}",
                req.skip,
                req.take,
                req.tenant_skip + req.tenant_take,
                req.tenant_take
            )),
        );
    }
    let dashboard = Dashboard {
        id: format!("{space}-dashboard"),
        project_groups,
        projects,
        environments,
        tenants,
        items,
        previous_items,
        is_filtered: req.is_filtered(),
        total_project_groups: total_groups,
        total_tenants,
        links: page_links,
    };
    // About 800 bytes per item: size the buffer once instead of doubling it a dozen times.
    let mut out = Vec::with_capacity(
        64 * 1024 + 800 * (dashboard.items.len() + dashboard.previous_items.len()),
    );
    serde_json::to_writer(&mut out, &dashboard).map_err(ApiError::internal)?;
    tracing::debug!(
        cells = cells.len(),
        bytes = out.len(),
        documents_ms = docs_done.as_secs_f64() * 1e3,
        cells_ms = (cells_done - docs_done).as_secs_f64() * 1e3,
        render_ms = (began.elapsed() - cells_done).as_secs_f64() * 1e3,
        "dashboard built"
    );
    Ok(out)
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /api/{space}/dashboard`.
pub async fn get(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    Ok(json_response(
        build(&st, &ctx, &space, raw.as_deref(), false).await?,
    ))
}

/// `GET /api/{space}/dashboard/dynamic`.
pub async fn dynamic(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    Ok(json_response(
        build(&st, &ctx, &space, raw.as_deref(), true).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_format_ms_does() {
        let mut ms = -86_400_000 * 800;
        while ms < 4_102_444_800_000 {
            assert_eq!(Ts(ms).to_string(), format_ms(ms), "{ms}");
            ms += 7_777_777_777 + 12_345;
        }
        for ms in [
            0,
            1,
            999,
            1_000,
            951_782_400_000,
            1_709_164_800_123,
            253_402_300_799_999,
        ] {
            assert_eq!(Ts(ms).to_string(), format_ms(ms), "{ms}");
        }
    }

    #[test]
    fn links_are_written_in_place() {
        let l = Link {
            space: Some("Spaces-1"),
            collection: "deployments",
            id: "Deployments-3",
        };
        assert_eq!(l.to_string(), "/api/Spaces-1/deployments/Deployments-3");
        let l = Link {
            space: None,
            collection: "tasks",
            id: "ServerTasks-9",
        };
        assert_eq!(l.to_string(), "/api/tasks/ServerTasks-9");
    }
}
