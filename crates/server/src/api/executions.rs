//! The "executions API" used by CI plugins and the official clients:
//! `releases/create/v1`, `deployments/create/untenanted/v1` and `deployments/create/tenanted/v1`. Bodies arrive in PascalCase
//! (TypeScript client) or camelCase (Go CLI); the URL's space is authoritative.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use ferry_domain::tenant::select_tenants;
use ferry_domain::{Environment, Project, Release, Tenant};
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
    let auto = super::autodeploy::deployed_environment_names(st, space, &r.id).await?;
    Ok(
        json!({"ReleaseId": r.id, "ReleaseVersion": r.version, "AutomaticallyDeployedEnvironments": auto}),
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

/// What both deploy commands take besides the release and where (or to whom) it goes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeployOptionsV1 {
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

impl DeployOptionsV1 {
    /// Resolves the options (step names to actions, machine names to ids, times) into the
    /// deployment every target of the command starts from, and the variable values given.
    async fn resolve(
        self,
        st: &AppState,
        space: &str,
        release: &Release,
    ) -> ApiResult<(NewDeployment, BTreeMap<String, String>)> {
        let nd = NewDeployment {
            skip_actions: skip_actions(st, space, release, &self.skip_step_names).await?,
            specific_machine_ids: machine_ids(
                st,
                space,
                &self.specific_machine_names,
                "SpecificMachineNames",
            )
            .await?,
            excluded_machine_ids: machine_ids(
                st,
                space,
                &self.excluded_machine_names,
                "ExcludedMachineNames",
            )
            .await?,
            queue_time: parse_time("RunAt", self.run_at.as_deref())?,
            queue_time_expiry: parse_time("NoRunAfter", self.no_run_after.as_deref())?,
            use_guided_failure: self.use_guided_failure,
            force_package_download: self.force_package_download,
            force_package_redeployment: self.force_package_redeployment,
            freeze_override_reason: self.deployment_freeze_override_reason,
            ..NewDeployment::default()
        };
        Ok((nd, form_values(self.variables)))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeployUntenantedV1 {
    pub project_name: String,
    pub release_version: String,
    pub environment_names: Vec<String>,
    #[serde(flatten)]
    pub options: DeployOptionsV1,
}

/// The project and release a deploy command names.
async fn project_and_release(
    st: &AppState,
    space: &str,
    project_name: &str,
    release_version: &str,
) -> ApiResult<(Project, Release)> {
    if project_name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "Please provide the ProjectName (a project name, slug or id)",
        ));
    }
    if release_version.trim().is_empty() {
        return Err(ApiError::bad_request(
            "Please provide the ReleaseVersion to deploy",
        ));
    }
    let (_, project): (_, Project) = find(st, "Projects", space, None, project_name.trim())
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(format!("Project '{project_name}' could not be found"))
        })?;
    let (_, release): (_, Release) = find(
        st,
        "Releases",
        space,
        Some(&project.id),
        release_version.trim(),
    )
    .await?
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "Release '{release_version}' of project '{}' could not be found",
            project.name
        ))
    })?;
    Ok((project, release))
}

/// The action ids of the steps (or actions) named in `SkipStepNames`.
async fn skip_actions(
    st: &AppState,
    space: &str,
    release: &Release,
    names: &[String],
) -> ApiResult<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let (_, process): (_, ferry_domain::DeploymentProcess) = load(
        st,
        "DeploymentProcessSnapshots",
        space,
        &release.project_deployment_process_snapshot_id,
        "Process snapshot",
    )
    .await?;
    let mut skip_actions = Vec::new();
    for name in names {
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
        for id in found {
            if !skip_actions.contains(&id) {
                skip_actions.push(id);
            }
        }
    }
    Ok(skip_actions)
}

/// Resolves deployment target names (or ids) of the space to ids; every unknown one is named.
async fn machine_ids(
    st: &AppState,
    space: &str,
    names: &[String],
    field: &str,
) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        match find::<Value>(st, "Machines", space, None, n).await? {
            Some((d, _)) => {
                if !out.contains(&d.id) {
                    out.push(d.id);
                }
            }
            None => unknown.push(format!("'{n}'")),
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{field}: no deployment target named {} exists in this space",
            unknown.join(", ")
        )));
    }
    Ok(out)
}

fn form_values(variables: BTreeMap<String, Value>) -> BTreeMap<String, String> {
    variables
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
        .collect()
}

pub async fn deploy_untenanted(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(b): Body<DeployUntenantedV1>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let (project, mut release) =
        project_and_release(&st, &space, &b.project_name, &b.release_version).await?;
    if b.environment_names.is_empty() {
        return Err(ApiError::bad_request(
            "Please provide at least one environment in EnvironmentNames",
        ));
    }
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
    let update_variables = b.options.update_variable_snapshot;
    let (template, form_values) = b.options.resolve(&st, &space, &release).await?;
    // Check every environment before queueing any, so a refusal queues nothing.
    for e in &envs {
        super::deployments::require_deploy(&st, &ctx, &space, &project, e, None).await?;
        super::tenants::check_deployment(&st, &space, &project, e, None).await?;
        super::deployments::check_lifecycle(&st, &space, &release, &project, e).await?;
        super::freezes::check(
            &st,
            &space,
            &ctx,
            &project,
            e,
            template.queue_time,
            template.freeze_override_reason.as_deref(),
        )
        .await?;
    }
    if update_variables {
        release = super::releases::update_variables(&st, &space, &ctx, &release.id).await?;
    }
    // Prompted values are checked against the (possibly updated) snapshots, still before
    // anything is queued.
    let prompted = super::deployments::prompted_values(&st, &space, &release, &form_values).await?;
    let mut out = Vec::new();
    for e in &envs {
        let nd = NewDeployment {
            form_values: prompted.clear.clone(),
            sensitive_form_values: prompted.sensitive.clone(),
            ..template.clone()
        };
        let d = create_deployment(&st, &space, &ctx, &release, &project, e, nd).await?;
        out.push(json!({"DeploymentId": d.id, "ServerTaskId": d.task_id}));
    }
    Ok(Json(json!({"DeploymentServerTasks": out})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeployTenantedV1 {
    pub project_name: String,
    pub release_version: String,
    pub environment_name: String,
    pub tenants: Vec<String>,
    pub tenant_tags: Vec<String>,
    #[serde(flatten)]
    pub options: DeployOptionsV1,
}

/// `deployments/create/tenanted/v1`: one deployment (and task) per tenant that matches
/// `Tenants` (names or ids) or the `TenantTags` filter and is connected to the project in the
/// environment. Every tenant is checked (mode, connection, disabled, tenant variables,
/// lifecycle per tenant, freezes, prompted values) before anything is queued.
pub async fn deploy_tenanted(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(b): Body<DeployTenantedV1>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let (project, mut release) =
        project_and_release(&st, &space, &b.project_name, &b.release_version).await?;
    let env_name = b.environment_name.trim();
    if env_name.is_empty() {
        return Err(ApiError::bad_request(
            "Please provide the EnvironmentName to deploy to",
        ));
    }
    let (_, env): (_, Environment) = find(&st, "Environments", &space, None, env_name)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(format!("Environment '{env_name}' could not be found"))
        })?;
    if b.tenants.iter().all(|t| t.trim().is_empty())
        && b.tenant_tags.iter().all(|t| t.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "Please provide the tenants to deploy to: tenant names or ids in Tenants, or tags ('Tag set/Tag') in TenantTags",
        ));
    }
    if project.tenanted_deployment_mode == "Untenanted" {
        return Err(ApiError::bad_request(format!(
            "Project '{}' does not allow tenanted deployments (its tenanted deployment mode is Untenanted): deploy it without tenants, or change the project's tenanted deployment mode",
            project.name
        )));
    }
    let all = super::tenants::all_tenants(&st, &space).await?;
    let mut errors = Vec::new();
    let mut named: Vec<String> = Vec::new();
    for key in b.tenants.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        match all
            .iter()
            .find(|t| t.id == key)
            .or_else(|| all.iter().find(|t| t.name.eq_ignore_ascii_case(key)))
        {
            Some(t) => named.push(t.id.clone()),
            None => errors.push(format!("Tenants: the tenant '{key}' could not be found")),
        }
    }
    let tags =
        super::tagsets::canonical_tags(&st, &space, &b.tenant_tags, "TenantTags", &mut errors)
            .await?;
    if !errors.is_empty() {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        return Err(e);
    }
    // Named tenants must be connected (naming one that is not is an error); tenants found by
    // tag are those connected to the project in the environment.
    // Tenants found by tag must also pass the release channel's tenant filter (a named one
    // that does not is refused by the checks below, saying so).
    let channel_tags: Vec<String> = match st.db.get_doc(&release.channel_id).await? {
        Some(d) => parse_body::<ferry_domain::Channel>(&d)?.tenant_tags,
        None => Vec::new(),
    };
    let selected = select_tenants(&all, &named, &tags);
    let mut tenants: Vec<Tenant> = Vec::new();
    for t in selected {
        let connected = t.is_connected(&project.id, &env.id);
        let in_channel = channel_tags.is_empty()
            || ferry_domain::tenant::tags_match(&channel_tags, &t.tenant_tags);
        if named.contains(&t.id) || (connected && in_channel) {
            tenants.push(t.clone());
        }
    }
    if tenants.is_empty() {
        return Err(ApiError::bad_request(format!(
            "No tenant matching {} is connected to project '{}' in environment '{}'; connect tenants to the project and environment first",
            tags.iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(" and "),
            project.name,
            env.name
        )));
    }
    let update_variables = b.options.update_variable_snapshot;
    let (template, form_values) = b.options.resolve(&st, &space, &release).await?;
    // Every tenant is checked before anything is queued; all refusals are reported together.
    let mut refusals = Vec::new();
    for t in &tenants {
        super::deployments::require_deploy(&st, &ctx, &space, &project, &env, Some(&t.id)).await?;
        let checked = async {
            super::tenants::check_deployment(&st, &space, &project, &env, Some(t)).await?;
            super::deployments::check_lifecycle_for(&st, &space, &release, &project, &env, Some(t))
                .await
        };
        if let Err(e) = checked.await {
            if e.status != axum::http::StatusCode::BAD_REQUEST {
                return Err(e);
            }
            refusals.extend(e.errors);
        }
    }
    if !refusals.is_empty() {
        let mut e = ApiError::bad_request(String::new());
        e.errors = refusals;
        return Err(e);
    }
    super::freezes::check(
        &st,
        &space,
        &ctx,
        &project,
        &env,
        template.queue_time,
        template.freeze_override_reason.as_deref(),
    )
    .await?;
    if update_variables {
        release = super::releases::update_variables(&st, &space, &ctx, &release.id).await?;
    }
    let prompted = super::deployments::prompted_values(&st, &space, &release, &form_values).await?;
    let mut out = Vec::new();
    for t in tenants {
        let nd = NewDeployment {
            form_values: prompted.clear.clone(),
            sensitive_form_values: prompted.sensitive.clone(),
            tenant: Some(t),
            ..template.clone()
        };
        let d = create_deployment(&st, &space, &ctx, &release, &project, &env, nd).await?;
        out.push(json!({"DeploymentId": d.id, "ServerTaskId": d.task_id}));
    }
    Ok(Json(json!({"DeploymentServerTasks": out})))
}
