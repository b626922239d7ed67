//! `GET /api/{space}/projects/{id}/progression{?releaseHistoryCount}`: Octopus's project
//! overview — the project's newest releases, each with its latest deployment per environment
//! (and tenant), the environments it can go to next, and the environments of each channel's
//! lifecycle.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use ferry_domain::lifecycle::{EnvRef, allowed_environments, effective_phases};
use ferry_domain::time::format_ms;
use ferry_domain::{Channel, Environment, Lifecycle, Project, Release};
use ferry_store::{DocQuery, TaskQuery, TaskRow};
use serde_json::{Value, json};

use super::*;

/// Releases shown when the caller does not say (Octopus's default history count).
const DEFAULT_RELEASES: i64 = 30;
const MAX_RELEASES: i64 = 500;

fn item(space: &str, t: &TaskRow, channel_id: &str, version: &str) -> Value {
    let completed = matches!(
        t.state.as_str(),
        "Success" | "Failed" | "Canceled" | "TimedOut"
    );
    json!({
        "Id": t.deployment_id,
        "ProjectId": t.project_id,
        "EnvironmentId": t.environment_id,
        "ReleaseId": t.release_id,
        "DeploymentId": t.deployment_id,
        "TaskId": t.id,
        "TenantId": t.tenant_id,
        "ChannelId": channel_id,
        "ReleaseVersion": version,
        "Created": format_ms(t.queue_time),
        "QueueTime": format_ms(t.queue_after),
        "StartTime": t.start_time.map(format_ms),
        "CompletedTime": t.completed_time.map(format_ms),
        "State": t.state,
        "HasPendingInterruptions": false,
        "HasWarningsOrErrors": t.has_warnings_or_errors != 0,
        "ErrorMessage": t.error_message,
        "IsCompleted": completed,
        "Links": {
            "Self": format!("/api/{space}/deployments/{}", t.deployment_id.clone().unwrap_or_default()),
            "Task": format!("/api/tasks/{}", t.id),
            "Release": format!("/api/{space}/releases/{}", t.release_id.clone().unwrap_or_default()),
        },
    })
}

pub async fn progression(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = crate::query::Params::parse(raw.as_deref());
    let count = match params.get("releaseHistoryCount") {
        None => DEFAULT_RELEASES,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_RELEASES).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "releaseHistoryCount must be a number from 1 to {MAX_RELEASES}, not '{v}'"
                )));
            }
        },
    };
    let (_, project): (_, Project) = super::projects::resolve(&st, &space, &id).await?;

    let (env_rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.clone()),
            ..DocQuery::new("Environments")
        })
        .await?;
    let environments: Vec<Environment> =
        env_rows.iter().map(parse_body).collect::<ApiResult<_>>()?;
    let refs: Vec<EnvRef> = environments
        .iter()
        .map(|e| EnvRef {
            id: e.id.clone(),
            name: e.name.clone(),
        })
        .collect();
    let env_ref = |id: &str| -> Value {
        let name = environments
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.name.clone())
            .unwrap_or_default();
        json!({"Id": id, "Name": name})
    };

    // Channels and the environments of their lifecycles.
    let (channel_rows, _) = st
        .db
        .list_docs(&DocQuery {
            owner_id: Some(project.id.clone()),
            ..DocQuery::new("Channels")
        })
        .await?;
    let channels: Vec<Channel> = channel_rows
        .iter()
        .map(parse_body)
        .collect::<ApiResult<_>>()?;
    let mut lifecycles: HashMap<String, Lifecycle> = HashMap::new();
    let mut lifecycle_envs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut channel_envs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut all_envs: Vec<String> = Vec::new();
    for c in &channels {
        let lid = c
            .lifecycle_id
            .clone()
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| project.lifecycle_id.clone());
        if !lifecycles.contains_key(&lid) {
            let (_, l): (_, Lifecycle) = load(&st, "Lifecycles", &space, &lid, "Lifecycle").await?;
            let envs: Vec<String> = effective_phases(&l.phases, &refs)
                .into_iter()
                .flat_map(|p| p.environments)
                .collect();
            lifecycle_envs.insert(lid.clone(), envs);
            lifecycles.insert(lid.clone(), l);
        }
        let envs = lifecycle_envs.get(&lid).cloned().unwrap_or_default();
        for e in &envs {
            if !all_envs.contains(e) {
                all_envs.push(e.clone());
            }
        }
        channel_envs.insert(c.id.clone(), envs.iter().map(|e| env_ref(e)).collect());
    }
    // Environment order: the space's order.
    all_envs.sort_by_key(|id| environments.iter().position(|e| &e.id == id));

    let (release_rows, _) = st
        .db
        .list_docs(&DocQuery {
            owner_id: Some(project.id.clone()),
            newest_first: true,
            take: Some(count),
            ..DocQuery::new("Releases")
        })
        .await?;
    let (tasks, _) = st
        .db
        .list_tasks(&TaskQuery {
            project_id: Some(project.id.clone()),
            name: Some("Deploy".to_string()),
            ..TaskQuery::default()
        })
        .await?;
    let mut by_release: HashMap<String, Vec<&TaskRow>> = HashMap::new();
    for t in &tasks {
        if let Some(r) = &t.release_id {
            by_release.entry(r.clone()).or_default().push(t);
        }
    }

    let mut releases = Vec::new();
    for row in &release_rows {
        let r: Release = parse_body(row)?;
        let channel = channels.iter().find(|c| c.id == r.channel_id);
        let mine = by_release.get(&r.id).cloned().unwrap_or_default();
        // Newest first (tasks are listed newest first): keep the latest per (env, tenant).
        let mut deployments: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut seen: Vec<(String, Option<String>)> = Vec::new();
        let mut succeeded = std::collections::HashSet::new();
        let mut deployed = std::collections::HashSet::new();
        for t in &mine {
            let Some(env) = &t.environment_id else {
                continue;
            };
            if t.tenant_id.is_none() {
                deployed.insert(env.clone());
                if t.state == "Success" {
                    succeeded.insert(env.clone());
                }
            }
            let key = (env.clone(), t.tenant_id.clone());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            deployments.entry(env.clone()).or_default().push(item(
                &space,
                t,
                &r.channel_id,
                &r.version,
            ));
        }
        let lid = channel
            .and_then(|c| c.lifecycle_id.clone())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| project.lifecycle_id.clone());
        let next: Vec<String> = match lifecycles.get(&lid) {
            Some(l) => {
                let phases = effective_phases(&l.phases, &refs);
                let prevented = super::releases::unresolved_defect(&r).is_some();
                allowed_environments(&phases, &succeeded, &deployed)
                    .into_iter()
                    .filter(|e| !prevented || deployed.contains(e))
                    .collect()
            }
            None => Vec::new(),
        };
        releases.push(json!({
            "Release": super::releases::render(&space, &r),
            "Channel": channel.map(|c| super::channels::render(&space, c)),
            "Deployments": deployments,
            "NextDeployments": next,
            "HasUnresolvedDefect": super::releases::unresolved_defect(&r).is_some(),
            "ReleaseRetentionPeriod": lifecycles.get(&lid).map(|l| &l.release_retention_policy),
            "TentacleRetentionPeriod": lifecycles.get(&lid).map(|l| &l.tentacle_retention_policy),
        }));
    }

    Ok(Json(json!({
        "Environments": all_envs.iter().map(|e| env_ref(e)).collect::<Vec<_>>(),
        "ChannelEnvironments": channel_envs,
        "LifecycleEnvironments": lifecycle_envs
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|e| env_ref(e)).collect::<Vec<_>>()))
            .collect::<BTreeMap<_, _>>(),
        "Releases": releases,
    })))
}
