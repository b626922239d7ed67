//! What the dashboard shows of a space's documents (environments, project groups, projects
//! with their environments, tenants), kept between requests so a page reads only its cells.
//!
//! A catalog is rebuilt when a transaction of this process that changed one of those
//! collections has committed (`ferry_store::doc_generation`, taken before the documents are
//! read, so a write that commits during a rebuild is never hidden). Other server nodes' writes
//! do not move that token, so on PostgreSQL a catalog is also rebuilt when it is older than
//! `MAX_AGE_SHARED`: a project created on another node shows within that time.
//!
//! The cells of a page (`cells`) are kept the same way, keyed by the query, until a task's state
//! or a cell changes (`ferry_store::TASKS_GENERATION`, `CELLS_GENERATION`, moved by the store
//! functions that write them). Durations of running deployments are computed when the page is
//! rendered, never kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_domain::Lifecycle;
use ferry_domain::lifecycle::{EnvRef, effective_phases};
use ferry_store::{Backend, DashboardCell, DashboardQuery, DocQuery};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::*;

/// The collections a catalog is built from.
const COLLECTIONS: &[&str] = &[
    "Environments",
    "ProjectGroups",
    "Projects",
    "Channels",
    "Lifecycles",
    "Tenants",
];

/// How old a catalog may be when other nodes can write (PostgreSQL).
const MAX_AGE_SHARED: Duration = Duration::from_secs(2);

/// Catalogs per space, and the most recent cell reads.
#[derive(Default)]
pub struct DashboardCatalogs(Mutex<HashMap<String, Arc<Catalog>>>, Mutex<Vec<KeptCells>>);

/// A cell read, kept while no task or cell has changed since.
struct KeptCells {
    key: String,
    generation: u64,
    built: Instant,
    cells: Arc<Vec<DashboardCell>>,
}

/// How many different cell reads (pages, filters) are kept.
const KEPT_READS: usize = 16;

/// The cells of a query: the kept read while nothing has changed (tasks, cells) since it was
/// made, or a new read. On PostgreSQL other nodes run tasks too, so a kept read is also at most
/// `MAX_AGE_SHARED` old.
pub async fn cells(st: &AppState, q: &DashboardQuery) -> ApiResult<Arc<Vec<DashboardCell>>> {
    // For the benchmark's "right after a change" figure: read the cells every time.
    static NO_CELL_CACHE: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var_os("FERRY_DASHBOARD_NO_CELL_CACHE").is_some());
    if *NO_CELL_CACHE {
        return Ok(Arc::new(st.db.dashboard_cells(q).await?));
    }
    let generation = ferry_store::doc_generation(&[
        ferry_store::TASKS_GENERATION,
        ferry_store::CELLS_GENERATION,
    ]);
    let shared = st.db.backend() == Backend::Postgres;
    let key = format!(
        "{}|{}|{}|{}",
        q.space_id,
        q.project_ids.join(","),
        q.environment_ids.join(","),
        q.tenant_ids
            .as_ref()
            .map_or("-".to_string(), |t| t.join(","))
    );
    {
        let kept = st
            .dashboard_catalogs
            .1
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(k) = kept.iter().find(|k| k.key == key) {
            if k.generation == generation && !(shared && k.built.elapsed() > MAX_AGE_SHARED) {
                return Ok(k.cells.clone());
            }
        }
    }
    let built = Instant::now();
    let cells = Arc::new(st.db.dashboard_cells(q).await?);
    let mut kept = st
        .dashboard_catalogs
        .1
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    kept.retain(|k| k.key != key && k.generation == generation);
    if kept.len() >= KEPT_READS {
        kept.remove(0);
    }
    kept.push(KeptCells {
        key,
        generation,
        built,
        cells: cells.clone(),
    });
    Ok(cells)
}

pub struct Catalog {
    generation: u64,
    built: Instant,
    /// In their order.
    pub envs: Vec<EnvRef>,
    pub env_order: HashMap<String, usize>,
    /// In list order.
    pub groups: Vec<GroupEntry>,
    /// In list order.
    pub projects: Vec<ProjectEntry>,
    /// In list order.
    pub tenants: Vec<TenantEntry>,
}

pub struct GroupEntry {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
}

pub struct ProjectEntry {
    pub id: String,
    pub group_id: String,
    pub name: String,
    pub slug: String,
    pub tenanted_deployment_mode: String,
    pub is_disabled: bool,
    /// The environments of its lifecycle and its channels' lifecycles, in environment order.
    pub environment_ids: Vec<String>,
}

pub struct TenantEntry {
    pub id: String,
    pub name: String,
    pub project_environments: Map<String, Value>,
    pub tenant_tags: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ProjectLite {
    name: String,
    slug: String,
    tenanted_deployment_mode: String,
    is_disabled: bool,
}

impl Default for ProjectLite {
    fn default() -> Self {
        ProjectLite {
            name: String::new(),
            slug: String::new(),
            tenanted_deployment_mode: "Untenanted".to_string(),
            is_disabled: false,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ChannelLite {
    lifecycle_id: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct GroupLite {
    description: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TenantLite {
    project_environments: Map<String, Value>,
    tenant_tags: Option<Value>,
}

/// The space's catalog: the one kept, if still current, or a new one.
pub async fn get(st: &AppState, space: &str) -> ApiResult<Arc<Catalog>> {
    let generation = ferry_store::doc_generation(COLLECTIONS);
    let shared = st.db.backend() == Backend::Postgres;
    let kept = st
        .dashboard_catalogs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(space)
        .cloned();
    if let Some(c) = kept {
        if c.generation == generation && !(shared && c.built.elapsed() > MAX_AGE_SHARED) {
            return Ok(c);
        }
    }
    let built = Arc::new(build(st, space, generation).await?);
    st.dashboard_catalogs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(space.to_string(), built.clone());
    Ok(built)
}

async fn build(st: &AppState, space: &str, generation: u64) -> ApiResult<Catalog> {
    let built = Instant::now();
    let in_space = |collection: &str| DocQuery {
        space_id: Some(space.to_string()),
        ..DocQuery::new(collection)
    };
    let (env_rows, _) = st.db.list_docs(&in_space("Environments")).await?;
    let envs: Vec<EnvRef> = env_rows
        .iter()
        .map(|e| EnvRef {
            id: e.id.clone(),
            name: e.name.clone(),
        })
        .collect();
    let env_order: HashMap<String, usize> = envs
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.clone(), i))
        .collect();

    let (group_rows, _) = st.db.list_docs(&in_space("ProjectGroups")).await?;
    let groups = group_rows
        .iter()
        .map(|g| {
            let lite: GroupLite = parse_body(g)?;
            Ok(GroupEntry {
                id: g.id.clone(),
                name: g.name.clone(),
                slug: g.slug.clone(),
                description: lite.description,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;

    // Each lifecycle's environments, resolved once.
    let (lifecycle_rows, _) = st.db.list_docs(&in_space("Lifecycles")).await?;
    let mut by_lifecycle: HashMap<String, Vec<String>> = HashMap::new();
    for row in &lifecycle_rows {
        let l: Lifecycle = parse_body(row)?;
        let mut ids: Vec<String> = Vec::new();
        for phase in effective_phases(&l.phases, &envs) {
            for e in phase.environments {
                if !ids.contains(&e) {
                    ids.push(e);
                }
            }
        }
        by_lifecycle.insert(row.id.clone(), ids);
    }
    let mut channel_lifecycles: HashMap<String, Vec<String>> = HashMap::new();
    let (channel_rows, _) = st.db.list_docs(&in_space("Channels")).await?;
    for c in &channel_rows {
        let lite: ChannelLite = parse_body(c)?;
        if let Some(l) = lite.lifecycle_id.filter(|l| !l.is_empty()) {
            channel_lifecycles
                .entry(c.owner_id.clone())
                .or_default()
                .push(l);
        }
    }

    let (project_rows, _) = st.db.list_docs(&in_space("Projects")).await?;
    let projects = project_rows
        .iter()
        .map(|row| {
            let lite: ProjectLite = parse_body(row)?;
            let mut environment_ids: Vec<String> = Vec::new();
            for l in std::iter::once(&row.ref2)
                .chain(channel_lifecycles.get(&row.id).into_iter().flatten())
            {
                for e in by_lifecycle.get(l).into_iter().flatten() {
                    if !environment_ids.contains(e) {
                        environment_ids.push(e.clone());
                    }
                }
            }
            environment_ids
                .sort_by_key(|e| env_order.get(e.as_str()).copied().unwrap_or(usize::MAX));
            Ok(ProjectEntry {
                id: row.id.clone(),
                group_id: row.ref1.clone(),
                name: lite.name,
                slug: lite.slug,
                tenanted_deployment_mode: lite.tenanted_deployment_mode,
                is_disabled: lite.is_disabled,
                environment_ids,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;

    let (tenant_rows, _) = st.db.list_docs(&in_space("Tenants")).await?;
    let tenants = tenant_rows
        .iter()
        .map(|t| {
            let lite: TenantLite = parse_body(t)?;
            Ok(TenantEntry {
                id: t.id.clone(),
                name: t.name.clone(),
                project_environments: lite.project_environments,
                tenant_tags: lite.tenant_tags.unwrap_or(Value::Array(Vec::new())),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    tracing::debug!(
        space,
        projects = projects.len(),
        tenants = tenants.len(),
        ms = built.elapsed().as_secs_f64() * 1e3,
        "dashboard catalog built"
    );
    Ok(Catalog {
        generation,
        built,
        envs,
        env_order,
        groups,
        projects,
        tenants,
    })
}
