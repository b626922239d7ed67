//! Release retention: each lifecycle (and each phase) says how many releases, or how many days
//! of releases, to keep; older ones are deleted with their deployments, tasks, logs and
//! snapshots. See `docs/lifecycles.md` ("Retention").
//!
//! Rules (Octopus's, simplified where noted):
//! - A release's policy is the release retention policy of the furthest phase it reached (a
//!   phase with a successful deployment of it); a phase without its own policy inherits from the
//!   nearest earlier phase with one, else the lifecycle's. A release deployed nowhere
//!   successfully uses the lifecycle's policy.
//! - "Keep N" keeps the N newest releases governed by the same policy source (per project, and
//!   per channel when the project has discrete channel releases); "keep N days" keeps releases
//!   created in the last N days; "keep forever" keeps everything.
//! - Never deleted: a release that is the latest deployment in any environment (× tenant) — what
//!   a dashboard shows — nor the latest *successful* release before it there (the rollback
//!   target), nor a release with a deployment queued or running.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use ferry_domain::lifecycle::{EnvRef, effective_phases};
use ferry_domain::time::{now_ms, parse_ms};
use ferry_domain::{Channel, Environment, Lifecycle, Project, Release, RetentionPeriod};
use ferry_store::{DocQuery, TaskQuery, Tx};
use serde_json::{Value, json};

use super::*;

const DAY_MS: i64 = 86_400_000;

/// How often the server applies release retention.
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// A release retention decided to delete.
#[derive(Clone, Debug)]
pub struct Doomed {
    pub release: Release,
    pub project_name: String,
    pub reason: String,
}

/// Deletes a release with its deployments, their tasks (logs, activities) and its snapshots,
/// inside `tx`. The caller checks nothing of it is running.
pub async fn purge_release(st: &AppState, tx: &mut Tx, r: &Release) -> ApiResult<usize> {
    let (deployments, _) = st
        .db
        .list_docs(&DocQuery {
            ref2_in: vec![r.id.clone()],
            ..DocQuery::new("Deployments")
        })
        .await?;
    let (tasks, _) = st
        .db
        .list_tasks(&TaskQuery {
            release_id: Some(r.id.clone()),
            ..TaskQuery::default()
        })
        .await?;
    for t in &tasks {
        tx.delete_task(&t.id).await?;
    }
    for d in &deployments {
        tx.delete_doc(&d.id).await?;
    }
    for id in std::iter::once(&r.project_deployment_process_snapshot_id)
        .chain(std::iter::once(&r.project_variable_set_snapshot_id))
        .chain(r.library_variable_set_snapshot_ids.iter())
        .filter(|id| !id.is_empty())
    {
        tx.delete_doc(id).await?;
    }
    tx.delete_doc(&r.id).await?;
    Ok(deployments.len())
}

fn policy_text(p: &RetentionPeriod) -> String {
    if p.should_keep_forever || p.quantity_to_keep <= 0 {
        "keep all".to_string()
    } else if p.unit.eq_ignore_ascii_case("Items") {
        format!("keep the last {}", p.quantity_to_keep)
    } else {
        format!("keep {} days", p.quantity_to_keep)
    }
}

/// Works out which releases of one project retention deletes now.
async fn doomed_in_project(
    st: &AppState,
    space: &str,
    project: &Project,
    environments: &[Environment],
    now: i64,
) -> ApiResult<Vec<Doomed>> {
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            owner_id: Some(project.id.clone()),
            ..DocQuery::new("Releases")
        })
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Oldest first by creation order.
    let mut releases: Vec<(i64, Release)> = Vec::with_capacity(rows.len());
    for r in &rows {
        releases.push((r.seq, parse_body(r)?));
    }
    releases.sort_by_key(|(seq, _)| *seq);

    let (tasks, _) = st
        .db
        .list_tasks(&TaskQuery {
            project_id: Some(project.id.clone()),
            ..TaskQuery::default()
        })
        .await?;
    // Protected: running, current per cell, and the last success before the current one.
    let mut protected: HashSet<String> = HashSet::new();
    let mut succeeded: HashMap<String, HashSet<String>> = HashMap::new();
    // (environment, tenant) -> (task seq, release, succeeded), newest first once sorted.
    type Cells = HashMap<(String, String), Vec<(i64, String, bool)>>;
    let mut cells: Cells = HashMap::new();
    for t in &tasks {
        let (Some(release), Some(env)) = (&t.release_id, &t.environment_id) else {
            continue;
        };
        if t.name != "Deploy" {
            continue;
        }
        let ok = t.state == "Success";
        if !matches!(
            t.state.as_str(),
            "Success" | "Failed" | "Canceled" | "TimedOut"
        ) {
            protected.insert(release.clone());
        }
        if ok {
            succeeded
                .entry(release.clone())
                .or_default()
                .insert(env.clone());
        }
        cells
            .entry((env.clone(), t.tenant_id.clone().unwrap_or_default()))
            .or_default()
            .push((t.seq, release.clone(), ok));
    }
    for list in cells.values_mut() {
        list.sort_by_key(|(seq, _, _)| std::cmp::Reverse(*seq));
        if let Some((_, current, _)) = list.first() {
            protected.insert(current.clone());
            if let Some((_, previous, _)) =
                list.iter().skip(1).find(|(_, r, ok)| *ok && r != current)
            {
                protected.insert(previous.clone());
            }
        }
    }

    let refs: Vec<EnvRef> = environments
        .iter()
        .map(|e| EnvRef {
            id: e.id.clone(),
            name: e.name.clone(),
        })
        .collect();
    let mut lifecycles: HashMap<String, Lifecycle> = HashMap::new();
    let mut channels: HashMap<String, Option<Channel>> = HashMap::new();
    // (policy source key, channel or "") -> releases newest first, with their policy.
    let mut groups: HashMap<(String, String), Vec<(Release, RetentionPeriod)>> = HashMap::new();
    for (_, r) in releases.iter().rev() {
        if !channels.contains_key(&r.channel_id) {
            let c = match st.db.get_doc(&r.channel_id).await? {
                Some(d) => Some(parse_body::<Channel>(&d)?),
                None => None,
            };
            channels.insert(r.channel_id.clone(), c);
        }
        let lifecycle_id = channels
            .get(&r.channel_id)
            .and_then(|c| c.as_ref())
            .and_then(|c| c.lifecycle_id.clone())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| project.lifecycle_id.clone());
        if !lifecycles.contains_key(&lifecycle_id) {
            match st.db.get_doc(&lifecycle_id).await? {
                Some(d) if d.space_id == space => {
                    lifecycles.insert(lifecycle_id.clone(), parse_body(&d)?);
                }
                // A release whose lifecycle is gone is kept.
                _ => continue,
            }
        }
        let Some(lc) = lifecycles.get(&lifecycle_id) else {
            continue;
        };
        let phases = effective_phases(&lc.phases, &refs);
        let reached = succeeded.get(&r.id);
        let furthest = phases.iter().rposition(|p| {
            p.environments
                .iter()
                .any(|e| reached.is_some_and(|s| s.contains(e)))
        });
        // With phases, effective phase i is the lifecycle's phase i.
        let own = furthest.and_then(|i| {
            (0..=i).rev().find_map(|j| {
                lc.phases
                    .get(j)
                    .and_then(|p| p.release_retention_policy.clone())
                    .map(|pol| (format!("{lifecycle_id}/phase{j}"), pol))
            })
        });
        let (source, policy) =
            own.unwrap_or_else(|| (lifecycle_id.clone(), lc.release_retention_policy.clone()));
        let channel_key = if project.discrete_channel_release {
            r.channel_id.clone()
        } else {
            String::new()
        };
        groups
            .entry((source, channel_key))
            .or_default()
            .push((r.clone(), policy));
    }

    let mut out = Vec::new();
    for list in groups.values() {
        for (rank, (r, policy)) in list.iter().enumerate() {
            if policy.should_keep_forever || policy.quantity_to_keep <= 0 {
                continue;
            }
            let expired = if policy.unit.eq_ignore_ascii_case("Items") {
                rank as i64 >= policy.quantity_to_keep
            } else {
                parse_ms(&r.assembled).is_some_and(|t| t < now - policy.quantity_to_keep * DAY_MS)
            };
            if !expired || protected.contains(&r.id) {
                continue;
            }
            out.push(Doomed {
                release: r.clone(),
                project_name: project.name.clone(),
                reason: format!(
                    "the lifecycle's release retention says {}",
                    policy_text(policy)
                ),
            });
        }
    }
    Ok(out)
}

/// Applies release retention to one space (or only reports, with `dry_run`).
pub async fn apply_space(
    st: &AppState,
    space: &str,
    dry_run: bool,
    now: i64,
) -> ApiResult<Vec<Doomed>> {
    let (env_rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            ..DocQuery::new("Environments")
        })
        .await?;
    let environments: Vec<Environment> =
        env_rows.iter().map(parse_body).collect::<ApiResult<_>>()?;
    let (projects, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            ..DocQuery::new("Projects")
        })
        .await?;
    let mut all = Vec::new();
    for p in &projects {
        let project: Project = parse_body(p)?;
        let doomed = doomed_in_project(st, space, &project, &environments, now).await?;
        if doomed.is_empty() || dry_run {
            all.extend(doomed);
            continue;
        }
        let mut tx = st.db.begin().await?;
        for d in &doomed {
            let n = purge_release(st, &mut tx, &d.release).await?;
            audit(
                &mut tx,
                &super::autodeploy::system_ctx(),
                space,
                "Deleted",
                format!(
                    "Release {} of {} was deleted by retention ({}), with {n} deployment(s)",
                    d.release.version, d.project_name, d.reason
                ),
                &[&d.release.id, &project.id],
                json!({"Reason": d.reason, "Version": d.release.version}),
            )
            .await?;
        }
        tx.rebuild_dashboard_project(&project.id).await?;
        tx.commit().await?;
        all.extend(doomed);
    }
    Ok(all)
}

/// `POST /api/{space}/retention/releases{?dryRun}`: applies release retention now and lists
/// what was (or, with `dryRun=true`, would be) deleted.
pub async fn run_now(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let params = crate::query::Params::parse(raw.as_deref());
    let dry_run = match params.get("dryRun") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "dryRun must be true or false, not '{v}'"
            )));
        }
    };
    let doomed = apply_space(&st, &space, dry_run, now_ms()).await?;
    Ok(Json(json!({
        "DryRun": dry_run,
        "Releases": doomed.iter().map(|d| json!({
            "ReleaseId": d.release.id,
            "ProjectId": d.release.project_id,
            "ProjectName": d.project_name,
            "Version": d.release.version,
            "Reason": d.reason,
        })).collect::<Vec<_>>(),
    })))
}

/// Applies release retention to every space every `every`, until the process ends.
pub async fn periodic(st: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: skip it, so starting the server does not delete anything.
    tick.tick().await;
    loop {
        tick.tick().await;
        let spaces = match st.db.list_docs(&DocQuery::new("Spaces")).await {
            Ok((rows, _)) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "release retention could not list spaces");
                continue;
            }
        };
        for s in spaces {
            match apply_space(&st, &s.id, false, now_ms()).await {
                Ok(d) if !d.is_empty() => {
                    tracing::info!(space = %s.id, deleted = d.len(), "release retention deleted releases")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(space = %s.id, error = %e.message, "release retention failed")
                }
            }
        }
    }
}
