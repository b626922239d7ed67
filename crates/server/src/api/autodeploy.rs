//! Lifecycle automatic deployment: when a release enters a phase (it is created, or a
//! deployment of it succeeds and completes the phases before), Ferry queues a deployment to
//! each of that phase's automatic environments the release has not been deployed to yet.
//!
//! Rules:
//! - A phase is entered when every phase before it is complete (`EffectivePhase::is_complete`).
//!   Entering several phases at once (an optional first phase, say) deploys to the automatic
//!   environments of each.
//! - Optional phases never deploy automatically (Octopus's rule).
//! - An environment that already has a deployment of the release (in any state, queued
//!   included) is never deployed to again automatically: a failed automatic deployment is not
//!   retried, and two completions at once do not queue the same environment twice (promotions
//!   are serialised on this node, and the queued deployment counts as "deployed").
//! - The deployments are queued by the `system` user through the same path as any deployment,
//!   so lifecycle, freezes, prevented progression and required prompted variables still
//!   apply; a refusal is recorded as an `AutoDeployFailed` event naming the reason.
//! - A disabled project gets none. A tenanted project gets one per connected tenant when the
//!   release is created (and a tenant's next ones after its own deployment succeeds), filtered
//!   by the channel's tenant tags; a `Tenanted`-only project gets no untenanted ones.

use ferry_domain::time::now_ms;
use ferry_domain::{Deployment, Environment, Project, Release, Tenant};
use ferry_store::{EventRow, TaskQuery};
use serde_json::json;

use super::deployments::{NewDeployment, create_deployment};
use super::*;
use crate::auth::{Ctx, Principal};

/// One promotion at a time on this node.
static PROMOTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The identity automatic deployments are queued as.
pub fn system_ctx() -> Ctx {
    Ctx {
        principal: Principal::system("system", "Ferry (automatic deployment)"),
        ip: String::new(),
    }
}

/// Follows the tasks this node finishes and promotes the releases whose deployments
/// succeeded. Runs until the executor's channel closes.
pub async fn follow(
    st: AppState,
    mut rx: tokio::sync::broadcast::Receiver<ferry_executor::FinishedTask>,
) {
    loop {
        match rx.recv().await {
            Ok(t) => {
                if t.state != ferry_domain::task::TaskState::Success {
                    continue;
                }
                let Some(deployment_id) = t.deployment_id else {
                    continue;
                };
                if let Err(e) = after_success(&st, &t.space_id, &deployment_id).await {
                    tracing::warn!(deployment = %deployment_id, error = %e.message, "automatic deployment after a success failed");
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "automatic deployment missed finished tasks");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Spawns `catch_up`, then `follow`, on the runtime.
pub fn spawn(st: AppState) -> tokio::task::JoinHandle<()> {
    // Subscribe now, so tasks finished before the spawned loop first runs are not missed.
    let rx = st.executor.subscribe_finished();
    tokio::spawn(async move {
        catch_up(&st).await;
        follow(st, rx).await;
    })
}

/// How far back `catch_up` looks: successful deployments finished in the last day, at most
/// this many of the newest.
const CATCH_UP_TASKS: i64 = 200;
const CATCH_UP_MS: i64 = 86_400_000;

/// At start-up: promotes the releases of recently successful deployments, in case a node
/// stopped between recording a success and queueing what it entailed. Promotion is idempotent
/// (an environment with any deployment of the release is never deployed to automatically
/// again), so releases already promoted get nothing new.
pub async fn catch_up(st: &AppState) {
    let since = now_ms() - CATCH_UP_MS;
    let tasks = match st
        .db
        .list_tasks(&TaskQuery {
            name: Some("Deploy".to_string()),
            states: vec!["Success".to_string()],
            take: Some(CATCH_UP_TASKS),
            ..TaskQuery::default()
        })
        .await
    {
        Ok((rows, _)) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "automatic deployment could not read recent deployments");
            return;
        }
    };
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    for t in tasks {
        if t.completed_time.is_none_or(|c| c < since) {
            continue;
        }
        let Some(deployment_id) = t.deployment_id else {
            continue;
        };
        let key = (
            t.release_id.clone().unwrap_or_default(),
            t.tenant_id.clone(),
        );
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        if let Err(e) = after_success(st, &t.space_id, &deployment_id).await {
            tracing::warn!(deployment = %deployment_id, error = %e.message, "automatic deployment catch-up failed");
        }
    }
}

async fn after_success(st: &AppState, space: &str, deployment_id: &str) -> ApiResult<()> {
    let Some(row) = st.db.get_doc(deployment_id).await? else {
        return Ok(());
    };
    let d: Deployment = parse_body(&row)?;
    let Some(rrow) = st.db.get_doc(&d.release_id).await? else {
        return Ok(());
    };
    let release: Release = parse_body(&rrow)?;
    let (_, project): (_, Project) =
        load(st, "Projects", space, &release.project_id, "Project").await?;
    promote(st, space, &release, &project, d.tenant_id.as_deref(), false).await;
    Ok(())
}

/// Queues the automatic deployments of every phase `release` has entered, and returns them.
///
/// - `tenant: None` (a release was created, or an untenanted deployment succeeded): the
///   untenanted deployments, unless the project is `Tenanted` only; and, when `created`, one
///   deployment per connected tenant for a project that allows tenanted deployments (filtered
///   by the channel's tenant tags).
/// - `tenant: Some(t)` (a deployment for tenant `t` succeeded): `t`'s own next deployments,
///   by `t`'s own progression.
pub async fn promote(
    st: &AppState,
    space: &str,
    release: &Release,
    project: &Project,
    tenant: Option<&str>,
    created: bool,
) -> Vec<Deployment> {
    let _guard = PROMOTING.lock().await;
    let mut out = Vec::new();
    if project.is_disabled {
        return out;
    }
    // One read of the release's history serves every tenant: deployments queued below for one
    // tenant (or untenanted) never change another tenant's progression.
    let history = match super::releases::history(st, space, release, project).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(release = %release.id, error = %e.message, "could not read the release's lifecycle progression");
            return out;
        }
    };
    let mode = project.tenanted_deployment_mode.as_str();
    let tenants: Vec<Tenant> = if tenant.is_some() || (created && mode != "Untenanted") {
        match super::tenants::all_tenants(st, space).await {
            Ok(all) => all
                .into_iter()
                .filter(|t| !t.is_disabled && t.project_environments.contains_key(&project.id))
                .filter(|t| tenant.is_none_or(|id| t.id == id))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e.message, "automatic deployment could not list tenants");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    if tenant.is_none() && mode != "Tenanted" {
        out.extend(deploy_automatic(st, space, release, project, &history, None).await);
    }
    if tenant.is_some() || created {
        let channel_tags: Vec<String> = match st.db.get_doc(&release.channel_id).await {
            Ok(Some(d)) => parse_body::<ferry_domain::Channel>(&d)
                .map(|c| c.tenant_tags)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        for t in &tenants {
            if !channel_tags.is_empty()
                && !ferry_domain::tenant::tags_match(&channel_tags, &t.tenant_tags)
            {
                continue;
            }
            out.extend(deploy_automatic(st, space, release, project, &history, Some(t)).await);
        }
    }
    out
}

/// Queues the automatic deployments of `release` for one tenant (or untenanted).
async fn deploy_automatic(
    st: &AppState,
    space: &str,
    release: &Release,
    project: &Project,
    history: &super::releases::History,
    tenant: Option<&Tenant>,
) -> Vec<Deployment> {
    let mut out = Vec::new();
    let envs = automatic_environments(history, tenant);
    let ctx = system_ctx();
    for env in envs {
        if let Some(t) = tenant {
            if !t.is_connected(&project.id, &env.id) {
                continue;
            }
        }
        match create_deployment(
            st,
            space,
            &ctx,
            release,
            project,
            &env,
            NewDeployment {
                comments: format!(
                    "Automatic deployment: the release entered the lifecycle phase that deploys to {} automatically",
                    env.name
                ),
                tenant: tenant.cloned(),
                ..NewDeployment::default()
            },
        )
        .await
        {
            Ok(d) => out.push(d),
            Err(e) => refused(st, space, release, project, &env, tenant, &e).await,
        }
    }
    out
}

/// The automatic environments of every phase the release has entered (for the tenant, by its
/// own progression) that it has not been deployed to yet, in phase order.
fn automatic_environments(
    history: &super::releases::History,
    tenant: Option<&Tenant>,
) -> Vec<Environment> {
    let pr = history.progress(tenant.map(|t| t.id.as_str()));
    let mut out: Vec<Environment> = Vec::new();
    for phase in &pr.phases {
        if !phase.optional {
            for id in &phase.automatic {
                if pr.deployed.contains(id) || out.iter().any(|e| &e.id == id) {
                    continue;
                }
                if let Some(e) = pr.environments.iter().find(|e| &e.id == id) {
                    out.push(e.clone());
                }
            }
        }
        if !phase.is_complete(&pr.succeeded) {
            break;
        }
    }
    out
}

async fn refused(
    st: &AppState,
    space: &str,
    release: &Release,
    project: &Project,
    env: &Environment,
    tenant: Option<&Tenant>,
    e: &ApiError,
) {
    let mut reason = e.message.clone();
    if !e.errors.is_empty() {
        reason = format!("{reason} {}", e.errors.join("; "));
    }
    let reason = reason.trim().to_string();
    tracing::warn!(release = %release.id, environment = %env.id, %reason, "automatic deployment refused");
    let mut related: Vec<String> = vec![release.id.clone(), project.id.clone(), env.id.clone()];
    related.extend(tenant.map(|t| t.id.clone()));
    let for_tenant = tenant
        .map(|t| format!(" for tenant '{}'", t.name))
        .unwrap_or_default();
    let r = st
        .db
        .insert_event(&EventRow {
            id: String::new(),
            seq: 0,
            space_id: space.to_string(),
            category: "AutoDeployFailed".to_string(),
            message: format!(
                "Release {} of {} was not deployed automatically to {}{for_tenant}: {reason}",
                release.version, project.name, env.name
            ),
            username: "system".to_string(),
            user_id: "system".to_string(),
            occurred: now_ms(),
            related_document_ids: related.join(","),
            details: json!({"Reason": reason}).to_string(),
            ip_address: String::new(),
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "recording a refused automatic deployment failed");
    }
}

/// The names of the environments a release has deployments in (for
/// `AutomaticallyDeployedEnvironments` right after creation).
pub async fn deployed_environment_names(
    st: &AppState,
    space: &str,
    release_id: &str,
) -> ApiResult<Vec<String>> {
    let (tasks, _) = st
        .db
        .list_tasks(&TaskQuery {
            release_id: Some(release_id.to_string()),
            ..TaskQuery::default()
        })
        .await?;
    let mut names: Vec<String> = Vec::new();
    for t in tasks {
        let Some(e) = t.environment_id else { continue };
        if let Some(d) = st.db.get_doc(&e).await? {
            if d.space_id == space && !names.contains(&d.name) {
                names.push(d.name);
            }
        }
    }
    Ok(names)
}
