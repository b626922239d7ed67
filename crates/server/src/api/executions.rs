//! The "executions API" used by CI plugins and the official clients:
//! `releases/create/v1` and `deployments/create/untenanted/v1`. Bodies arrive in PascalCase
//! (TypeScript client) or camelCase (Go CLI); the URL's space is authoritative.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use ferry_domain::{Environment, Project, Release};
use serde::Deserialize;
use serde_json::{Value, json};

use super::deployments::{NewDeployment, create_deployment, parse_time};
use super::releases::NewRelease;
use super::*;
use crate::input::Body;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateReleaseV1 {
    pub project_name: String,
    pub channel_name: Option<String>,
    pub release_version: Option<String>,
    pub package_version: Option<String>,
    pub packages: Vec<String>,
    pub release_notes: Option<String>,
    pub ignore_if_already_exists: bool,
    pub ignore_channel_rules: bool,
    pub git_ref: Option<String>,
    pub git_commit: Option<String>,
    pub custom_fields: std::collections::BTreeMap<String, Value>,
}

pub async fn create_release_v1(
    st: &AppState,
    space: &str,
    ctx: &Ctx,
    b: CreateReleaseV1,
) -> ApiResult<Value> {
    if b.project_name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "Please provide the ProjectName (a project name, slug or id)",
        ));
    }
    let (r, _) = super::releases::create_release(
        st,
        space,
        ctx,
        NewRelease {
            project: b.project_name,
            channel: b.channel_name,
            version: b.release_version,
            notes: b.release_notes,
            ignore_if_exists: b.ignore_if_already_exists,
            ignore_channel_rules: b.ignore_channel_rules,
            packages: b.packages,
            package_version: b.package_version,
            selected: Vec::new(),
            custom_fields: b
                .custom_fields
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        match v {
                            Value::String(s) => s,
                            other => other.to_string(),
                        },
                    )
                })
                .collect(),
        },
    )
    .await?;
    Ok(
        json!({"ReleaseId": r.id, "ReleaseVersion": r.version, "AutomaticallyDeployedEnvironments": []}),
    )
}

pub async fn create_release(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(b): Body<CreateReleaseV1>,
) -> ApiResult<Json<Value>> {
    Ok(Json(create_release_v1(&st, &space, &ctx, b).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeployUntenantedV1 {
    pub project_name: String,
    pub release_version: String,
    pub environment_names: Vec<String>,
    pub use_guided_failure: bool,
    pub variables: BTreeMap<String, Value>,
    pub run_at: Option<String>,
    pub no_run_after: Option<String>,
    pub force_package_download: bool,
    pub force_package_redeployment: bool,
    pub update_variable_snapshot: bool,
    pub specific_machine_names: Vec<String>,
    pub excluded_machine_names: Vec<String>,
    pub skip_step_names: Vec<String>,
    pub deployment_freeze_names: Vec<String>,
    pub deployment_freeze_override_reason: Option<String>,
}

pub async fn deploy_untenanted(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(b): Body<DeployUntenantedV1>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    if b.project_name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "Please provide the ProjectName (a project name, slug or id)",
        ));
    }
    if b.release_version.trim().is_empty() {
        return Err(ApiError::bad_request(
            "Please provide the ReleaseVersion to deploy",
        ));
    }
    if b.environment_names.is_empty() {
        return Err(ApiError::bad_request(
            "Please provide at least one environment in EnvironmentNames",
        ));
    }
    let (_, project): (_, Project) = find(&st, "Projects", &space, None, b.project_name.trim())
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(format!("Project '{}' could not be found", b.project_name))
        })?;
    let (_, mut release): (_, Release) = find(
        &st,
        "Releases",
        &space,
        Some(&project.id),
        b.release_version.trim(),
    )
    .await?
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "Release '{}' of project '{}' could not be found",
            b.release_version, project.name
        ))
    })?;
    let mut envs: Vec<Environment> = Vec::new();
    for name in &b.environment_names {
        let (_, e): (_, Environment) = find(&st, "Environments", &space, None, name.trim())
            .await?
            .ok_or_else(|| {
                ApiError::bad_request(format!("Environment '{name}' could not be found"))
            })?;
        if !envs.iter().any(|x| x.id == e.id) {
            envs.push(e);
        }
    }
    let (_, process): (_, ferry_domain::DeploymentProcess) = load(
        &st,
        "DeploymentProcessSnapshots",
        &space,
        &release.project_deployment_process_snapshot_id,
        "Process snapshot",
    )
    .await?;
    let mut skip_actions = Vec::new();
    for name in &b.skip_step_names {
        let found: Vec<String> = process
            .steps
            .iter()
            .filter(|s| s.name.eq_ignore_ascii_case(name))
            .flat_map(|s| s.actions.iter().map(|a| a.id.clone()))
            .chain(
                process
                    .steps
                    .iter()
                    .flat_map(|s| s.actions.iter())
                    .filter(|a| a.name.eq_ignore_ascii_case(name))
                    .map(|a| a.id.clone()),
            )
            .collect();
        if found.is_empty() {
            return Err(ApiError::bad_request(format!(
                "The step '{name}' in SkipStepNames is not part of release {}",
                release.version
            )));
        }
        skip_actions.extend(found);
    }
    let form_values: BTreeMap<String, String> = b
        .variables
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            )
        })
        .collect();
    let queue_time = parse_time("RunAt", b.run_at.as_deref())?;
    let queue_time_expiry = parse_time("NoRunAfter", b.no_run_after.as_deref())?;
    // Check every environment before queueing any, so a refusal queues nothing.
    for e in &envs {
        super::deployments::check_lifecycle(&st, &space, &release, &project, e).await?;
        super::freezes::check(
            &st,
            &space,
            &ctx,
            &project,
            e,
            queue_time,
            b.deployment_freeze_override_reason.as_deref(),
        )
        .await?;
    }
    if b.update_variable_snapshot {
        release = super::releases::update_variables(&st, &space, &ctx, &release.id).await?;
    }
    // Prompted values are checked against the (possibly updated) snapshots, still before
    // anything is queued.
    let prompted = super::deployments::prompted_values(&st, &space, &release, &form_values).await?;
    let mut out = Vec::new();
    for e in &envs {
        let nd = NewDeployment {
            comments: String::new(),
            form_values: prompted.clear.clone(),
            sensitive_form_values: prompted.sensitive.clone(),
            skip_actions: skip_actions.clone(),
            queue_time,
            queue_time_expiry,
            use_guided_failure: b.use_guided_failure,
            force_package_download: b.force_package_download,
            force_package_redeployment: b.force_package_redeployment,
            freeze_override_reason: b.deployment_freeze_override_reason.clone(),
            ..NewDeployment::default()
        };
        let d = create_deployment(&st, &space, &ctx, &release, &project, e, nd).await?;
        out.push(json!({"DeploymentId": d.id, "ServerTaskId": d.task_id}));
    }
    Ok(Json(json!({"DeploymentServerTasks": out})))
}
