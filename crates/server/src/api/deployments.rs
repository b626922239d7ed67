//! Deployments: a release applied to an environment, run as a server task. Creating one checks
//! the release's prompted variables and lifecycle, then writes the deployment, its task and an
//! audit event in one transaction, and wakes the task worker.
//!
//! Prompted values are stored by the prompted variable's name: clear ones in `FormValues`,
//! sensitive ones sealed in `SealedFormValues` (never rendered), each sealed with
//! `variable_aad(deployment id, variable name)`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_crypto::{Secret, seal, variable_aad};
use ferry_domain::lifecycle::{Refusal, check_deploy};
use ferry_domain::time::{format_ms, now_ms};
use ferry_domain::{Deployment, Environment, Project, Release};
use ferry_store::{DocQuery, DocRow, TaskRow};
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "Deployments";

pub fn render(space: &str, d: &Deployment) -> Value {
    let base = format!("/api/{space}/deployments/{}", d.id);
    let mut out = with_links(
        d,
        links(
            base,
            &[
                ("Release", format!("/api/{space}/releases/{}", d.release_id)),
                (
                    "Environment",
                    format!("/api/{space}/environments/{}", d.environment_id),
                ),
                ("Project", format!("/api/{space}/projects/{}", d.project_id)),
                ("Task", format!("/api/tasks/{}", d.task_id)),
                (
                    "Tenant",
                    d.tenant_id
                        .as_ref()
                        .map(|t| format!("/api/{space}/tenants/{t}"))
                        .unwrap_or_default(),
                ),
                ("Web", format!("/app#/{space}/deployments/{}", d.id)),
            ],
        ),
    );
    if let Some(o) = out.as_object_mut() {
        o.remove("SealedFormValues");
    }
    out
}

fn render_row(space: &str, d: &DocRow) -> ApiResult<Value> {
    Ok(render(space, &parse_body(d)?))
}

/// What is needed to queue a deployment.
#[derive(Clone, Debug, Default)]
pub struct NewDeployment {
    pub comments: String,
    /// Prompted values of non-sensitive variables, by variable name.
    pub form_values: BTreeMap<String, String>,
    /// Prompted values of sensitive variables, by variable name; sealed when the deployment's
    /// id is known.
    pub sensitive_form_values: BTreeMap<String, Secret>,
    pub skip_actions: Vec<String>,
    pub specific_machine_ids: Vec<String>,
    pub excluded_machine_ids: Vec<String>,
    pub queue_time: Option<i64>,
    pub queue_time_expiry: Option<i64>,
    pub use_guided_failure: bool,
    pub force_package_download: bool,
    pub force_package_redeployment: bool,
    /// `DeploymentFreezeOverrideReason`: deploy despite an active freeze (needs permission to
    /// administer freezes; recorded in the audit event).
    pub freeze_override_reason: Option<String>,
    /// The tenant of a tenanted deployment (`None`: untenanted).
    pub tenant: Option<ferry_domain::Tenant>,
}

/// Prompted values for a deployment, checked against the release's variable snapshots.
#[derive(Clone, Debug, Default)]
pub struct PromptedValues {
    pub clear: BTreeMap<String, String>,
    pub sensitive: BTreeMap<String, Secret>,
}

/// Matches given values (keyed by a prompted variable's id, name or label, case-insensitively)
/// to the prompted variables of the release's snapshots. A required prompted variable needs a
/// non-blank value, given now or as its own value; values for anything that is not a prompted
/// variable are ignored. All problems are reported at once.
pub async fn prompted_values(
    st: &AppState,
    space: &str,
    release: &Release,
    given: &BTreeMap<String, String>,
) -> ApiResult<PromptedValues> {
    let sets = super::variables::release_sets(st, space, release).await?;
    // Prompted variables grouped by name, in order of appearance.
    let mut groups: Vec<Vec<&ferry_domain::Variable>> = Vec::new();
    for v in sets
        .iter()
        .flat_map(|s| s.set.variables.iter())
        .filter(|v| v.prompt.is_some())
    {
        match groups.iter_mut().find(|g| {
            g.first()
                .is_some_and(|f| f.name.eq_ignore_ascii_case(&v.name))
        }) {
            Some(g) => g.push(v),
            None => groups.push(vec![v]),
        }
    }
    let label_of = |v: &ferry_domain::Variable| -> String {
        v.prompt
            .as_ref()
            .and_then(|p| p.get("Label"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let mut out = PromptedValues::default();
    let mut missing = Vec::new();
    for group in &groups {
        let Some(first) = group.first() else { continue };
        let name = first.name.clone();
        let label = group.iter().map(|v| label_of(v)).find(|l| !l.is_empty());
        let matches_key = |k: &str| {
            let k = k.trim();
            group.iter().any(|v| {
                v.id == k
                    || v.name.eq_ignore_ascii_case(k)
                    || (!label_of(v).is_empty() && label_of(v).eq_ignore_ascii_case(k))
            })
        };
        let value = given
            .iter()
            .find(|(k, _)| matches_key(k))
            .map(|(_, v)| v.clone());
        let required = group.iter().any(|v| {
            v.prompt
                .as_ref()
                .and_then(|p| p.get("Required"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        });
        let has_default = group.iter().any(|v| {
            v.sealed_value.is_some() || v.value.as_deref().is_some_and(|x| !x.trim().is_empty())
        });
        let blank = match &value {
            Some(v) => v.trim().is_empty(),
            None => !has_default,
        };
        if required && blank {
            missing.push(match &label {
                Some(l) => format!(
                    "The prompted variable '{l}' ({name}) is required: give it a value that is not empty"
                ),
                None => format!(
                    "The prompted variable '{name}' is required: give it a value that is not empty"
                ),
            });
            continue;
        }
        if let Some(value) = value {
            if group.iter().any(|v| v.is_sensitive) {
                out.sensitive.insert(name, Secret::new(value));
            } else {
                out.clear.insert(name, value);
            }
        }
    }
    if !missing.is_empty() {
        let mut e = ApiError::bad_request(String::new());
        e.errors = missing;
        return Err(e);
    }
    Ok(out)
}

/// Refuses a deployment the release's lifecycle does not allow yet (or of a disabled project),
/// naming the phase to complete and the environments still to deploy.
pub async fn check_lifecycle(
    st: &AppState,
    space: &str,
    release: &Release,
    project: &Project,
    env: &Environment,
) -> ApiResult<()> {
    check_lifecycle_for(st, space, release, project, env, None).await
}

/// [`check_lifecycle`] for a tenanted deployment: progression counts only the tenant's own
/// deployments of the release (as Octopus does); `None` is the untenanted check.
pub async fn check_lifecycle_for(
    st: &AppState,
    space: &str,
    release: &Release,
    project: &Project,
    env: &Environment,
    tenant: Option<&ferry_domain::Tenant>,
) -> ApiResult<()> {
    if project.is_disabled {
        return Err(ApiError::bad_request(format!(
            "Project '{}' is disabled",
            project.name
        )));
    }
    // A channel's tenant filter limits which tenants its releases reach.
    if let Some(t) = tenant {
        if let Some(d) = st.db.get_doc(&release.channel_id).await? {
            let channel: ferry_domain::Channel = parse_body(&d)?;
            if !channel.tenant_tags.is_empty()
                && !ferry_domain::tenant::tags_match(&channel.tenant_tags, &t.tenant_tags)
            {
                return Err(ApiError::bad_request(format!(
                    "Release {} is in channel '{}', whose tenant filter ({}) does not include tenant '{}'",
                    release.version,
                    channel.name,
                    channel.tenant_tags.join(", "),
                    t.name
                )));
            }
        }
    }
    let pr =
        super::releases::progress_for(st, space, release, project, tenant.map(|t| t.id.as_str()))
            .await?;
    super::releases::check_progression(release, &pr.deployed, env)?;
    if let Err(refusal) = check_deploy(&pr.phases, &pr.succeeded, &pr.deployed, &env.id) {
        let name_of = |id: &String| {
            pr.environments
                .iter()
                .find(|e| &e.id == id)
                .map(|e| e.name.clone())
                .unwrap_or_else(|| id.clone())
        };
        let msg = match refusal {
            Refusal::NotInLifecycle => format!(
                "Release {} of {} cannot be deployed to {}: the environment is not part of the release's lifecycle",
                release.version, project.name, env.name
            ),
            Refusal::PhaseIncomplete { phase, remaining } => format!(
                "Release {} of {} cannot be deployed to {}{} yet: the lifecycle phase '{phase}' must be completed first (still to deploy successfully{}: {})",
                release.version,
                project.name,
                env.name,
                tenant
                    .map(|t| format!(" for tenant '{}'", t.name))
                    .unwrap_or_default(),
                tenant
                    .map(|t| format!(" for tenant '{}'", t.name))
                    .unwrap_or_default(),
                remaining.iter().map(name_of).collect::<Vec<_>>().join(", ")
            ),
        };
        return Err(ApiError::bad_request(msg));
    }
    Ok(())
}

/// Refuses (403) unless the caller may deploy `project` to `env` for `tenant` (`None`:
/// untenanted).
pub async fn require_deploy(
    st: &AppState,
    ctx: &Ctx,
    space: &str,
    project: &Project,
    env: &Environment,
    tenant: Option<&str>,
) -> ApiResult<()> {
    let target = crate::authz::Target::deployment(
        Some(crate::authz::ProjectRef {
            id: project.id.clone(),
            group_id: project.project_group_id.clone(),
        }),
        Some(&env.id),
        tenant,
    );
    crate::authz::require(
        st,
        ctx,
        Some(space),
        crate::routes::Permission::DeploymentCreate,
        &target,
    )
    .await
}

/// Queues a deployment of `release` to `env` after checking the lifecycle.
pub async fn create_deployment(
    st: &AppState,
    space: &str,
    ctx: &Ctx,
    release: &Release,
    project: &Project,
    env: &Environment,
    nd: NewDeployment,
) -> ApiResult<Deployment> {
    require_deploy(
        st,
        ctx,
        space,
        project,
        env,
        nd.tenant.as_ref().map(|t| t.id.as_str()),
    )
    .await?;
    super::tenants::check_deployment(st, space, project, env, nd.tenant.as_ref()).await?;
    check_lifecycle_for(st, space, release, project, env, nd.tenant.as_ref()).await?;
    check_skipped_steps(st, space, release, &nd.skip_actions).await?;
    let now = now_ms();
    if let (Some(at), Some(exp)) = (nd.queue_time, nd.queue_time_expiry) {
        if exp <= at {
            return Err(ApiError::bad_request(
                "NoRunAfter (QueueTimeExpiry) must be later than RunAt (QueueTime)",
            ));
        }
    }
    let overrides = super::freezes::check(
        st,
        space,
        ctx,
        project,
        env,
        nd.queue_time,
        nd.freeze_override_reason.as_deref(),
    )
    .await?;
    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq(C).await?;
    let tseq = tx.next_seq("ServerTasks").await?;
    let task_id = format!("ServerTasks-{tseq}");
    let tenant_suffix = nd
        .tenant
        .as_ref()
        .map(|t| format!(" for {}", t.name))
        .unwrap_or_default();
    let d = Deployment {
        id: format!("{C}-{seq}"),
        space_id: space.to_string(),
        name: format!("Deploy to {}{tenant_suffix}", env.name),
        project_id: project.id.clone(),
        release_id: release.id.clone(),
        channel_id: release.channel_id.clone(),
        environment_id: env.id.clone(),
        tenant_id: nd.tenant.as_ref().map(|t| t.id.clone()),
        task_id: task_id.clone(),
        deployment_process_id: release.project_deployment_process_snapshot_id.clone(),
        manifest_variable_set_id: format!("variableset-{C}-{seq}"),
        created: format_ms(now),
        queue_time: nd.queue_time.map(format_ms),
        queue_time_expiry: nd.queue_time_expiry.map(format_ms),
        comments: nd.comments,
        form_values: nd.form_values,
        sealed_form_values: nd
            .sensitive_form_values
            .iter()
            .map(|(name, value)| {
                let aad = variable_aad(&format!("{C}-{seq}"), name);
                (name.clone(), seal(&st.master_key, &aad, value.expose()))
            })
            .collect(),
        skip_actions: nd.skip_actions,
        specific_machine_ids: nd.specific_machine_ids,
        excluded_machine_ids: nd.excluded_machine_ids,
        force_package_download: nd.force_package_download,
        force_package_redeployment: nd.force_package_redeployment,
        use_guided_failure: nd.use_guided_failure,
        deployed_by: ctx.principal.username.clone(),
        deployed_by_id: ctx.principal.user_id.clone(),
        ..Deployment::default()
    };
    let description = format!(
        "Deploy {} release {} to {}{tenant_suffix}",
        project.name, release.version, env.name
    );
    let mut row = doc_row(C, &d.id, space, &project.id, &d.id, "", 0, seq, &d)?;
    row.ref1 = env.id.clone();
    row.ref2 = release.id.clone();
    tx.insert_doc(&row).await?;
    tx.insert_task(&TaskRow {
        id: task_id.clone(),
        seq: tseq,
        space_id: space.to_string(),
        name: "Deploy".to_string(),
        description: description.clone(),
        state: "Queued".to_string(),
        arguments: json!({"DeploymentId": d.id}).to_string(),
        project_id: Some(project.id.clone()),
        environment_id: Some(env.id.clone()),
        tenant_id: d.tenant_id.clone(),
        deployment_id: Some(d.id.clone()),
        release_id: Some(release.id.clone()),
        queue_time: now,
        queue_time_expiry: nd.queue_time_expiry,
        start_time: None,
        completed_time: None,
        last_updated: now,
        error_message: String::new(),
        has_warnings_or_errors: 0,
        lease_owner: None,
        lease_expires_at: None,
        epoch: 0,
        attempts: 0,
        queue_after: nd.queue_time.unwrap_or(now),
        cancel_requested: 0,
        created_by: ctx.principal.username.clone(),
    })
    .await?;
    super::dashboard::queued(&mut tx, &d, release, tseq).await?;
    let mut message = format!("{description} was queued");
    let mut details = json!({"DeploymentId": d.id, "TaskId": task_id});
    if !overrides.freezes.is_empty() {
        message = format!("{message}. {}", overrides.message());
        details["DeploymentFreezeOverrideReason"] = json!(overrides.reason);
        details["OverriddenDeploymentFreezes"] = json!(
            overrides
                .freezes
                .iter()
                .map(|f| json!({"Id": f.id, "Name": f.name, "End": f.end}))
                .collect::<Vec<_>>()
        );
    }
    let mut related: Vec<&str> = vec![&d.id, &task_id, &release.id, &project.id, &env.id];
    if let Some(t) = &d.tenant_id {
        related.push(t);
    }
    related.extend(overrides.freezes.iter().map(|f| f.id.as_str()));
    audit(
        &mut tx,
        ctx,
        space,
        "DeploymentQueued",
        message,
        &related,
        details,
    )
    .await?;
    tx.commit().await?;
    st.executor.wake();
    Ok(d)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    pub release_id: String,
    pub environment_id: String,
    pub comments: Option<String>,
    pub form_values: BTreeMap<String, String>,
    pub skip_actions: Vec<String>,
    pub specific_machine_ids: Vec<String>,
    pub excluded_machine_ids: Vec<String>,
    pub queue_time: Option<String>,
    pub queue_time_expiry: Option<String>,
    pub use_guided_failure: bool,
    pub force_package_download: bool,
    pub force_package_redeployment: bool,
    pub tenant_id: Option<String>,
    pub deployment_freeze_override_reason: Option<String>,
}

/// Parses an optional timestamp field, naming it on error.
pub fn parse_time(field: &str, v: Option<&str>) -> ApiResult<Option<i64>> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => ferry_domain::time::parse_ms(s)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{field} '{s}' is not a date and time with an offset, such as 2030-01-01T10:00:00+00:00"))),
    }
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(b): Body<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant = match b
        .tenant_id
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(key) => Some(
            super::tenants::resolve(&st, &space, key)
                .await?
                .map(|(_, t)| t)
                .ok_or_else(|| ApiError::bad_request(format!("Tenant '{key}' was not found")))?,
        ),
        None => None,
    };
    let (_, release): (_, Release) = load(&st, "Releases", &space, &b.release_id, "Release")
        .await
        .map_err(|_| ApiError::bad_request(format!("Release '{}' was not found", b.release_id)))?;
    let (_, env): (_, Environment) = find(&st, "Environments", &space, None, &b.environment_id)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(format!("Environment '{}' was not found", b.environment_id))
        })?;
    let (_, project): (_, Project) =
        load(&st, "Projects", &space, &release.project_id, "Project").await?;
    let prompted = prompted_values(&st, &space, &release, &b.form_values).await?;
    let nd = NewDeployment {
        comments: b.comments.unwrap_or_default(),
        form_values: prompted.clear,
        sensitive_form_values: prompted.sensitive,
        skip_actions: b.skip_actions,
        specific_machine_ids: b.specific_machine_ids,
        excluded_machine_ids: b.excluded_machine_ids,
        queue_time: parse_time("QueueTime", b.queue_time.as_deref())?,
        queue_time_expiry: parse_time("QueueTimeExpiry", b.queue_time_expiry.as_deref())?,
        use_guided_failure: b.use_guided_failure,
        force_package_download: b.force_package_download,
        force_package_redeployment: b.force_package_redeployment,
        freeze_override_reason: b.deployment_freeze_override_reason,
        tenant,
    };
    let d = create_deployment(&st, &space, &ctx, &release, &project, &env, nd).await?;
    Ok((StatusCode::CREATED, Json(render(&space, &d))))
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let params = Params::parse(raw.as_deref());
    let base = format!("/api/{space}/deployments");
    let mut q = DocQuery {
        space_id: Some(space.clone()),
        newest_first: true,
        owner_in: params.list("projects"),
        ref1_in: params.list("environments"),
        ..DocQuery::new(C)
    };
    let states = params.list("taskState");
    if !states.is_empty() {
        let mut wanted = Vec::new();
        for s in &states {
            match ferry_domain::task::TaskState::parse(s) {
                Some(t) => wanted.push(t.as_str().to_string()),
                None => return Err(ApiError::bad_request(format!("'{s}' is not a task state"))),
            }
        }
        let (tasks, _) = st
            .db
            .list_tasks(&ferry_store::TaskQuery {
                space_id: Some(space.clone()),
                states: wanted,
                ..ferry_store::TaskQuery::default()
            })
            .await?;
        q.ids = tasks.into_iter().filter_map(|t| t.deployment_id).collect();
        if q.ids.is_empty() {
            // Nothing in those states: an id no document has.
            q.ids.push("-".to_string());
        }
    }
    let tenants = params.list("tenants");
    if !tenants.is_empty() {
        // Deployments of these tenants (the tenant is in the body only).
        let (rows, _) = st.db.list_docs(&q).await?;
        let mut ids = Vec::new();
        for r in &rows {
            let d: Deployment = parse_body(r)?;
            if d.tenant_id.as_ref().is_some_and(|t| tenants.contains(t)) {
                ids.push(d.id);
            }
        }
        if ids.is_empty() {
            ids.push("-".to_string());
        }
        q.ids = ids;
    }
    let visible = crate::visibility::Visibility::of(
        &st,
        &ctx,
        Some(&space),
        crate::routes::Permission::DeploymentView,
    )
    .await?;
    Ok(Json(list_page_visible(&st, q, &params, "Deployment", &base, &format!("{base}{{/id}}{{?skip,take,ids,projects,environments,tenants,channels,taskState,partialName}}"), visible.as_ref(), |d| render_row(&space, d)).await?))
}

pub async fn for_release(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let visible = crate::visibility::Visibility::of(
        &st,
        &ctx,
        Some(&space),
        crate::routes::Permission::DeploymentView,
    )
    .await?;
    let (_, r): (_, Release) = load(&st, "Releases", &space, &id, "Release").await?;
    let params = Params::parse(raw.as_deref());
    let base = format!("/api/{space}/releases/{}/deployments", r.id);
    let q = DocQuery {
        space_id: Some(space.clone()),
        newest_first: true,
        ref2_in: vec![r.id.clone()],
        ..DocQuery::new(C)
    };
    Ok(Json(
        list_page_visible(
            &st,
            q,
            &params,
            "Deployment",
            &base,
            &format!("{base}{{?skip,take}}"),
            visible.as_ref(),
            |d| render_row(&space, d),
        )
        .await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, d): (_, Deployment) = load(&st, C, &space, &id, "Deployment").await?;
    Ok(Json(render(&space, &d)))
}

/// Refuses skipping a step the release's process does not have, or one marked required.
async fn check_skipped_steps(
    st: &AppState,
    space: &str,
    release: &Release,
    skip: &[String],
) -> ApiResult<()> {
    if skip.is_empty() {
        return Ok(());
    }
    let (_, process): (_, ferry_domain::DeploymentProcess) = load(
        st,
        "DeploymentProcessSnapshots",
        space,
        &release.project_deployment_process_snapshot_id,
        "Process snapshot",
    )
    .await?;
    let mut problems = Vec::new();
    for id in skip {
        match process
            .steps
            .iter()
            .flat_map(|s| s.actions.iter().map(move |a| (s, a)))
            .find(|(_, a)| &a.id == id)
        {
            None => problems.push(format!(
                "The step '{id}' in SkipActions is not part of release {}",
                release.version
            )),
            Some((s, a)) if a.is_required => problems.push(format!(
                "The step '{}' is required and cannot be skipped",
                if a.name.is_empty() { &s.name } else { &a.name }
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut e = ApiError::bad_request(String::new());
    e.errors = problems;
    Err(e)
}
