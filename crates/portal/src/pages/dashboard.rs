//! The dashboard: project groups × environments, each cell the latest deployment (version,
//! state with icon and word, time), or tenants × environments for tenanted projects. Filters by
//! project group and environment; paged by project group as the API is.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query};
use axum::routing::get;
use serde_json::Value;

use super::{Chrome, page};
use crate::PortalState;
use crate::ctx::{PageResult, Viewer};
use crate::view::{StateView, arr, b, s, short_time, strs, url_encode};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route("/app/{space}/dashboard", get(dashboard))
}

/// Project groups per dashboard page.
const GROUPS_PER_PAGE: i64 = 20;

#[derive(serde::Deserialize, Default)]
struct DashQuery {
    #[serde(default)]
    group: String,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    view: String,
    #[serde(default)]
    skip: i64,
    #[serde(default, rename = "tenantSkip")]
    tenant_skip: i64,
}

/// One cell.
pub struct Cell {
    pub href: String,
    pub version: String,
    pub state: StateView,
    pub when: String,
    /// "for 3 tenants" when the cell sums tenanted deployments.
    pub note: String,
}

pub struct Row {
    pub name: String,
    pub href: String,
    /// The tenant's name in the tenant view.
    pub sub: String,
    pub cells: Vec<Option<Cell>>,
}

pub struct Group {
    pub name: String,
    pub rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    environments: Vec<(String, String)>,
    all_groups: Vec<(String, String)>,
    all_environments: Vec<(String, String)>,
    groups: Vec<Group>,
    q_group: String,
    q_environment: String,
    tenant_view: bool,
    prev_href: String,
    next_href: String,
    page_note: String,
    has_projects: bool,
    can_create_project: bool,
}

fn cell_of(space: &str, item: &Value, note: String) -> Cell {
    let state = StateView::of(
        &s(item, "State"),
        b(item, "HasWarningsOrErrors"),
        b(item, "HasPendingInterruptions"),
    );
    let when = if s(item, "CompletedTime").is_empty() {
        short_time(&s(item, "QueueTime"))
    } else {
        short_time(&s(item, "CompletedTime"))
    };
    Cell {
        href: format!("/app/{space}/tasks/{}", s(item, "TaskId")),
        version: s(item, "ReleaseVersion"),
        state,
        when,
        note,
    }
}

async fn dashboard(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<DashQuery>,
) -> PageResult {
    let tenant_view = q.view == "tenants";
    let mut api = format!(
        "/api/{space}/dashboard?skip={}&take={GROUPS_PER_PAGE}&tenantSkip={}&tenantTake=30&includePrevious=false",
        q.skip.max(0),
        q.tenant_skip.max(0)
    );
    if !q.group.is_empty() {
        api.push_str(&format!("&projectGroupId={}", url_encode(&q.group)));
    }
    if !q.environment.is_empty() {
        api.push_str(&format!("&environmentIds={}", url_encode(&q.environment)));
    }
    let chrome = viewer.chrome(&space, "dashboard", "Dashboard");
    let groups_path = format!("/api/{space}/projectgroups/all");
    let envs_path = format!("/api/{space}/environments/all");
    let (chrome, dash, groups_all, envs_all) = tokio::join!(
        chrome,
        viewer.get(&api),
        viewer.get(&groups_path),
        viewer.get(&envs_path),
    );
    let dash = dash?;
    let pairs = |v: Result<Value, _>| -> Vec<(String, String)> {
        match v {
            Ok(Value::Array(a)) => a.iter().map(|x| (s(x, "Id"), s(x, "Name"))).collect(),
            _ => Vec::new(),
        }
    };
    let all_groups = pairs(groups_all);
    let all_environments = pairs(envs_all);

    let environments: Vec<(String, String)> = arr(&dash, "Environments")
        .iter()
        .map(|e| (s(e, "Id"), s(e, "Name")))
        .collect();
    let env_index: HashMap<&str, usize> = environments
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let tenants: HashMap<String, String> = arr(&dash, "Tenants")
        .iter()
        .map(|t| (s(t, "Id"), s(t, "Name")))
        .collect();

    // Items by project, then by tenant ("" untenanted).
    let mut by_project: HashMap<String, Vec<&Value>> = HashMap::new();
    for item in arr(&dash, "Items") {
        by_project
            .entry(s(item, "ProjectId"))
            .or_default()
            .push(item);
    }
    let projects = arr(&dash, "Projects");
    let mut groups = Vec::new();
    for g in arr(&dash, "ProjectGroups") {
        let gid = s(g, "Id");
        let mut rows = Vec::new();
        for p in projects.iter().filter(|p| s(p, "ProjectGroupId") == gid) {
            let pid = s(p, "Id");
            let href = format!("/app/{space}/projects/{pid}");
            let items = by_project.get(&pid).map(Vec::as_slice).unwrap_or(&[]);
            let enabled: Vec<String> = strs(p, "EnvironmentIds");
            if tenant_view {
                let mut tenant_ids: Vec<String> = items
                    .iter()
                    .map(|i| s(i, "TenantId"))
                    .filter(|t| !t.is_empty())
                    .collect();
                tenant_ids.sort_by_key(|t| tenants.get(t).cloned().unwrap_or_default());
                tenant_ids.dedup();
                for t in tenant_ids {
                    let mut cells: Vec<Option<Cell>> = environments.iter().map(|_| None).collect();
                    for i in items.iter().filter(|i| s(i, "TenantId") == t) {
                        if let Some(ix) = env_index.get(s(i, "EnvironmentId").as_str()) {
                            cells[*ix] = Some(cell_of(&space, i, String::new()));
                        }
                    }
                    rows.push(Row {
                        name: s(p, "Name"),
                        href: href.clone(),
                        sub: tenants.get(&t).cloned().unwrap_or(t),
                        cells,
                    });
                }
                continue;
            }
            let mut cells: Vec<Option<Cell>> = Vec::with_capacity(environments.len());
            for (eid, _) in &environments {
                if !enabled.is_empty() && !enabled.contains(eid) {
                    cells.push(None);
                    continue;
                }
                let here: Vec<&&Value> = items
                    .iter()
                    .filter(|i| s(i, "EnvironmentId") == *eid)
                    .collect();
                let untenanted = here.iter().find(|i| s(i, "TenantId").is_empty());
                let cell = match untenanted {
                    Some(i) => Some(cell_of(&space, i, String::new())),
                    None => here
                        .iter()
                        .max_by_key(|i| s(i, "QueueTime"))
                        .map(|i| cell_of(&space, i, format!("latest of {} tenants", here.len()))),
                };
                cells.push(cell);
            }
            rows.push(Row {
                name: s(p, "Name"),
                href,
                sub: String::new(),
                cells,
            });
        }
        if !rows.is_empty() || !tenant_view {
            groups.push(Group {
                name: s(g, "Name"),
                rows,
            });
        }
    }

    let total = dash
        .get("TotalProjectGroups")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let skip = q.skip.max(0);
    let link = |skip: i64| {
        let mut h = format!("/app/{space}/dashboard?skip={skip}");
        for (k, v) in [
            ("group", &q.group),
            ("environment", &q.environment),
            ("view", &q.view),
        ] {
            if !v.is_empty() {
                h.push_str(&format!("&{k}={}", url_encode(v)));
            }
        }
        h
    };
    let prev_href = if skip > 0 {
        link((skip - GROUPS_PER_PAGE).max(0))
    } else {
        String::new()
    };
    let next_href = if skip + GROUPS_PER_PAGE < total {
        link(skip + GROUPS_PER_PAGE)
    } else {
        String::new()
    };
    let page_note = if total > GROUPS_PER_PAGE {
        format!(
            "Project groups {}–{} of {total}",
            skip + 1,
            (skip + GROUPS_PER_PAGE).min(total)
        )
    } else {
        String::new()
    };
    let can_create_project = viewer
        .can(
            Some(&space),
            ferry_server::routes::Permission::ProjectCreate,
            &ferry_server::authz::Target::ANY,
        )
        .await;
    page(&DashboardPage {
        chrome,
        has_projects: !projects.is_empty(),
        environments,
        all_groups,
        all_environments,
        groups,
        q_group: q.group,
        q_environment: q.environment,
        tenant_view,
        prev_href,
        next_href,
        page_note,
        can_create_project,
    })
}
