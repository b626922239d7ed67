//! Running a deployment task: load the deployment, its release and the release's process
//! snapshot, then walk the steps in order, running each action through a `Target` and writing
//! the hierarchical log (task → step → target → lines).

use ferry_domain::task::{ActivityStatus, LogCategory, TaskState};
use ferry_domain::tenant::{
    Template, TenantVariables, library_value_key, project_value_key, step_runs_for, target_serves,
    tenant_variables_id,
};
use ferry_domain::variables::ScopeContext;
use ferry_domain::{
    Channel, Deployment, DeploymentAction, DeploymentProcess, DeploymentStep, Environment, Machine,
    Project, Release, Space, Tenant, Variable, VariableScope, VariableSet, prop_is_true,
};
use ferry_store::TaskRow;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::Executor;
use crate::log::{Activity, Masker, TaskLogger};
use crate::service_message::{OutputEvent, OutputInterpreter, ServiceMessage};
use crate::target::{ScriptOutcome, ScriptOutput, ScriptRequest, Stream, Syntax, Target, TaskRef};
use crate::variables::{Dictionary, OpenedSet, open_set, resolve, sensitive_values};

#[path = "step_flow.rs"]
mod step_flow;

/// What a task run produced.
pub(crate) struct Outcome {
    pub state: TaskState,
    pub error: Option<String>,
    pub has_warnings: bool,
}

impl Outcome {
    pub fn failed(msg: String) -> Outcome {
        Outcome {
            state: TaskState::Failed,
            error: Some(msg),
            has_warnings: true,
        }
    }
}

async fn load<T: DeserializeOwned>(ex: &Executor, id: &str, what: &str) -> Result<T, String> {
    let doc = ex
        .db
        .get_doc(id)
        .await
        .map_err(|e| format!("could not read {what} {id}: {e}"))?
        .ok_or_else(|| format!("{what} {id} no longer exists"))?;
    serde_json::from_str(&doc.body).map_err(|e| format!("{what} {id} is unreadable: {e}"))
}

struct Context {
    deployment: Deployment,
    release: Release,
    process: DeploymentProcess,
    environment: Environment,
    project: Project,
    channel: Option<Channel>,
    space: Option<Space>,
    /// The tenant of a tenanted deployment, read when the deployment runs.
    tenant: Option<Tenant>,
    /// The release's variable snapshots (project first, then library sets), values opened.
    sets: Vec<OpenedSet>,
    /// Prompted values given when the deployment was created (name → value).
    prompted: Vec<(String, String, bool)>,
    /// Enabled deployment targets in the deployment's environment (and tenant), by name.
    machines: Vec<Machine>,
    /// The space's worker pools and enabled workers.
    pools: Vec<ferry_domain::WorkerPool>,
    workers: Vec<Machine>,
    /// Targets excluded during the deployment by a guided-failure "Exclude machine" answer.
    excluded: std::sync::Mutex<Vec<String>>,
}

impl Context {
    /// Whether guided failure applies: the deployment asked for it, else the project's mode
    /// (`On`, `Off`, or the environment's default).
    fn guided_failure(&self) -> bool {
        self.deployment.use_guided_failure
            || match self.project.default_guided_failure_mode.as_str() {
                "On" => true,
                "Off" => false,
                _ => self.environment.use_guided_failure,
            }
    }

    fn is_excluded(&self, machine_id: &str) -> bool {
        self.excluded
            .lock()
            .is_ok_and(|e| e.iter().any(|x| x == machine_id))
    }

    fn exclude(&self, machine_id: &str) {
        if let Ok(mut e) = self.excluded.lock() {
            if !e.iter().any(|x| x == machine_id) {
                e.push(machine_id.to_string());
            }
        }
    }
}

async fn load_context(ex: &Executor, task: &TaskRow) -> Result<Context, String> {
    let dep_id = task
        .deployment_id
        .clone()
        .ok_or_else(|| "the task names no deployment".to_string())?;
    let deployment: Deployment = load(ex, &dep_id, "deployment").await?;
    let release: Release = load(ex, &deployment.release_id, "release").await?;
    let process: DeploymentProcess = load(
        ex,
        &release.project_deployment_process_snapshot_id,
        "deployment process snapshot",
    )
    .await?;
    let environment: Environment = load(ex, &deployment.environment_id, "environment").await?;
    let project: Project = load(ex, &deployment.project_id, "project").await?;
    let channel: Option<Channel> = load(ex, &release.channel_id, "channel").await.ok();
    let space: Option<Space> = load(ex, &release.space_id, "space").await.ok();
    let mut sets = Vec::new();
    let project_vars: VariableSet = load(
        ex,
        &release.project_variable_set_snapshot_id,
        "variable snapshot",
    )
    .await?;
    sets.push(open_set(&ex.cfg.master_key, &project_vars, "project")?);
    for id in &release.library_variable_set_snapshot_ids {
        let lib: VariableSet = load(ex, id, "library variable set snapshot").await?;
        let label = match ex.db.get_doc(&lib.owner_id).await {
            Ok(Some(d)) => d.name,
            _ => lib.owner_id.clone(),
        };
        sets.push(open_set(
            &ex.cfg.master_key,
            &lib,
            &format!("library variable set '{label}'"),
        )?);
    }
    let tenant: Option<Tenant> = match &deployment.tenant_id {
        Some(id) => Some(load(ex, id, "tenant").await?),
        None => None,
    };
    if let Some(t) = &tenant {
        // Tenant variables are not snapshotted: the current templates and values.
        sets.push(tenant_set(ex, t, &project, &deployment.environment_id).await?);
    }
    let prompted = prompted_values(ex, &deployment);
    let machines = load_machines(ex, &release.space_id, &deployment, tenant.as_ref()).await?;
    let (pools, workers) = load_workers(ex, &release.space_id).await?;
    Ok(Context {
        deployment,
        release,
        process,
        environment,
        project,
        channel,
        space,
        tenant,
        sets,
        prompted,
        machines,
        pools,
        workers,
        excluded: std::sync::Mutex::new(Vec::new()),
    })
}

/// The space's worker pools and its enabled workers.
async fn load_workers(
    ex: &Executor,
    space_id: &str,
) -> Result<(Vec<ferry_domain::WorkerPool>, Vec<Machine>), String> {
    let mut q = ferry_store::DocQuery::new("WorkerPools");
    q.space_id = Some(space_id.to_string());
    let (rows, _) = ex
        .db
        .list_docs(&q)
        .await
        .map_err(|e| format!("could not read the worker pools: {e}"))?;
    let pools = rows
        .iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect();
    let mut q = ferry_store::DocQuery::new("Workers");
    q.space_id = Some(space_id.to_string());
    let (rows, _) = ex
        .db
        .list_docs(&q)
        .await
        .map_err(|e| format!("could not read the workers: {e}"))?;
    let mut workers: Vec<Machine> = rows
        .iter()
        .filter_map(|r| serde_json::from_str::<Machine>(&r.body).ok())
        .filter(|m| !m.is_disabled)
        .collect();
    workers.sort_by_key(|m| m.name.to_lowercase());
    Ok((pools, workers))
}

/// The enabled targets a deployment can use: in its environment, and for a tenanted deployment
/// connected to its tenant (an untenanted one uses untenanted targets).
async fn load_machines(
    ex: &Executor,
    space_id: &str,
    deployment: &Deployment,
    tenant: Option<&Tenant>,
) -> Result<Vec<Machine>, String> {
    let mut q = ferry_store::DocQuery::new("Machines");
    q.space_id = Some(space_id.to_string());
    let (rows, _) = ex
        .db
        .list_docs(&q)
        .await
        .map_err(|e| format!("could not read the deployment targets: {e}"))?;
    let mut out = Vec::new();
    for r in rows {
        let Ok(m) = serde_json::from_str::<Machine>(&r.body) else {
            continue;
        };
        if m.is_disabled || !m.environment_ids.contains(&deployment.environment_id) {
            continue;
        }
        // A tenanted deployment uses targets that take part in tenanted deployments and serve
        // the tenant (by id or by tag filter); an untenanted one those that allow untenanted.
        let tenant_ok = match tenant {
            Some(t) => {
                m.tenanted_deployment_participation != "Untenanted"
                    && target_serves(&m.tenant_ids, &m.tenant_tags, &t.id, &t.tenant_tags)
            }
            None => m.tenanted_deployment_participation != "Tenanted",
        };
        if tenant_ok {
            out.push(m);
        }
    }
    out.sort_by_key(|m| m.name.to_lowercase());
    Ok(out)
}

/// Prompted values of the deployment: clear ones from `FormValues`, sensitive ones sealed.
fn prompted_values(ex: &Executor, d: &Deployment) -> Vec<(String, String, bool)> {
    let mut out: Vec<(String, String, bool)> = d
        .form_values
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), false))
        .collect();
    for (k, sealed) in &d.sealed_form_values {
        let aad = ferry_crypto::variable_aad(&d.id, k);
        if let Ok(v) = ferry_crypto::open(&ex.cfg.master_key, &aad, sealed) {
            out.push((k.clone(), v, true));
        }
    }
    out
}

/// The variables every step of this deployment sees.
fn deployment_variables(ex: &Executor, task: &TaskRow, ctx: &Context) -> Dictionary {
    let mut d = Dictionary::default();
    let r = &ctx.release;
    let dep = &ctx.deployment;
    let web = ex.cfg.server_uri.trim_end_matches('/').to_string();
    let space_id = r.space_id.clone();
    d.set("Octopus.Release.Number", r.version.clone());
    d.set("Octopus.Release.Id", r.id.clone());
    d.set(
        "Octopus.Release.Notes",
        r.release_notes.clone().unwrap_or_default(),
    );
    d.set("Octopus.Release.Created", r.assembled.clone());
    d.set("Octopus.Release.Channel.Id", r.channel_id.clone());
    if let Some(c) = &ctx.channel {
        d.set("Octopus.Release.Channel.Name", c.name.clone());
    }
    for (k, v) in &r.custom_fields {
        d.set(&format!("Octopus.Release.CustomFields[{k}]"), v.clone());
    }
    d.set("Octopus.Deployment.Id", dep.id.clone());
    d.set("Octopus.Deployment.Name", dep.name.clone());
    d.set("Octopus.Deployment.Comments", dep.comments.clone());
    d.set("Octopus.Deployment.Created", dep.created.clone());
    d.set(
        "Octopus.Deployment.CreatedBy.Username",
        dep.deployed_by.clone(),
    );
    d.set(
        "Octopus.Deployment.CreatedBy.Id",
        dep.deployed_by_id.clone(),
    );
    d.set(
        "Octopus.Deployment.CreatedBy.DisplayName",
        dep.deployed_by.clone(),
    );
    d.set(
        "Octopus.Deployment.ForcePackageDownload",
        if dep.force_package_download {
            "True"
        } else {
            "False"
        },
    );
    if let Some(t) = &ctx.tenant {
        d.set("Octopus.Deployment.Tenant.Id", t.id.clone());
        d.set("Octopus.Deployment.Tenant.Name", t.name.clone());
        d.set("Octopus.Deployment.Tenant.Tags", t.tenant_tags.join(","));
    }
    d.set("Octopus.Environment.Name", ctx.environment.name.clone());
    d.set("Octopus.Environment.Id", ctx.environment.id.clone());
    d.set(
        "Octopus.Environment.SortOrder",
        ctx.environment.sort_order.to_string(),
    );
    d.set("Octopus.Project.Name", ctx.project.name.clone());
    d.set("Octopus.Project.Id", ctx.project.id.clone());
    d.set("Octopus.Project.Slug", ctx.project.slug.clone());
    d.set("Octopus.Space.Id", space_id.clone());
    if let Some(s) = &ctx.space {
        d.set("Octopus.Space.Name", s.name.clone());
    }
    d.set("Octopus.Task.Id", task.id.clone());
    d.set("Octopus.Task.Name", task.description.clone());
    d.set("Octopus.Web.ServerUri", web.clone());
    d.set("Octopus.Web.BaseUrl", web.clone());
    d.set(
        "Octopus.Web.ProjectLink",
        format!("/app#/{space_id}/projects/{}", ctx.project.slug),
    );
    d.set(
        "Octopus.Web.ReleaseLink",
        format!("/app#/{space_id}/releases/{}", r.id),
    );
    d.set(
        "Octopus.Web.DeploymentLink",
        format!("/app#/{space_id}/deployments/{}", dep.id),
    );
    d
}

pub(crate) async fn run(ex: &Executor, task: &TaskRow, cancel: CancellationToken) -> Outcome {
    let mut logger = TaskLogger::start(ex.db.clone(), &task.id, Masker::default());
    let root = logger.open(None, &task.description);
    let ctx = match load_context(ex, task).await {
        Ok(c) => c,
        Err(e) => {
            logger.line(&root, LogCategory::Fatal, &e);
            logger.close(&root, ActivityStatus::Failed);
            logger.flush().await;
            return Outcome::failed(e);
        }
    };
    let mut secrets = sensitive_values(&ctx.sets);
    secrets.extend(ctx.prompted.iter().filter(|p| p.2).map(|p| p.1.clone()));
    // Sensitive output variables join this (shared) set as the scripts set them: see LogOutput.
    logger.set_masker(Masker::new(secrets));
    let base = deployment_variables(ex, task, &ctx);
    // Output variables and deployment state set by earlier steps.
    let outputs = Dictionary::default();
    logger.info(
        &root,
        &format!(
            "Deploying {} release {} to {}",
            ctx.project.name, ctx.release.version, ctx.environment.name
        ),
    );
    let mut failure: Option<String> = None;
    let mut canceled = false;
    let outputs = std::sync::Mutex::new(outputs);
    let task_ref = TaskRef {
        task_id: task.id.clone(),
        epoch: u64::try_from(task.epoch).unwrap_or(0),
    };
    let env = step_flow::StepEnv {
        ex,
        ctx: &ctx,
        task,
        task_ref: &task_ref,
        logger: &logger,
        root: &root,
        base: &base,
        outputs: &outputs,
        cancel: &cancel,
    };
    // Steps grouped by start trigger: a group's steps run at once (at most
    // `Octopus.Action.MaxParallelism`), each seeing the failures of earlier groups.
    let max_steps = {
        let d = ctx
            .process
            .steps
            .first()
            .map(|s| step_dictionary(&ctx, &base, &Dictionary::default(), s, None, 1, 0, None));
        step_flow::max_parallel_steps(
            d.as_ref()
                .and_then(|d| d.get_value("Octopus.Action.MaxParallelism")),
        )
    };
    let step_sem = tokio::sync::Semaphore::new(max_steps);
    for group in step_flow::step_groups(&ctx.process.steps) {
        if canceled {
            for &index in &group {
                let title = format!("Step {}: {}", index + 1, ctx.process.steps[index].name);
                let a = logger.open(Some(&root), &title);
                logger.close(&a, ActivityStatus::Canceled);
            }
            continue;
        }
        let failed_before = failure.is_some();
        let runs = group.iter().map(|&index| {
            let (env, step_sem) = (&env, &step_sem);
            let step = &ctx.process.steps[index];
            async move {
                let _slot = step_sem.acquire().await.ok();
                step_flow::run_step(env, index, step, failed_before).await
            }
        });
        for result in futures_util::future::join_all(runs).await {
            canceled |= result.canceled;
            if let Some(f) = result.failure
                && failure.is_none()
            {
                if let Ok(mut o) = outputs.lock() {
                    o.set("Octopus.Deployment.Error", f.clone());
                    o.set("Octopus.Deployment.ErrorDetail", result.detail.clone());
                }
                failure = Some(f);
            }
        }
    }
    let (state, status) = if canceled {
        (TaskState::Canceled, ActivityStatus::Canceled)
    } else if failure.is_some() {
        (TaskState::Failed, ActivityStatus::Failed)
    } else if logger.has_warnings_or_errors() {
        (TaskState::Success, ActivityStatus::SuccessWithWarning)
    } else {
        (TaskState::Success, ActivityStatus::Success)
    };
    match (&failure, canceled) {
        (_, true) => logger.line(&root, LogCategory::Warning, "The deployment was canceled"),
        (Some(f), false) => logger.line(&root, LogCategory::Fatal, f),
        (None, false) => logger.info(&root, "The deployment completed successfully"),
    }
    logger.close(&root, status);
    logger.flush().await;
    Outcome {
        state,
        error: if canceled {
            None
        } else {
            failure.map(|f| logger.masker().mask(&f))
        },
        has_warnings: logger.has_warnings_or_errors(),
    }
}

/// The action's properties with variables substituted. A template that cannot be rendered (a
/// reference loop, a limit) fails the action with the property named.
fn render_properties(
    action: &DeploymentAction,
    dict: &Dictionary,
    opts: &ferry_template::Options,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in &action.properties {
        let value = if v.contains("#{") {
            ferry_template::render(v, dict, opts)
                .map_err(|e| format!("the property {k} could not be prepared: {e}"))?
                .text
        } else {
            v.clone()
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

pub(crate) fn template_options() -> ferry_template::Options {
    ferry_template::Options::default()
}

/// The variables one action sees: user variables resolved for its scope, prompted values,
/// system variables, then output variables of earlier steps.
fn step_dictionary(
    ctx: &Context,
    base: &Dictionary,
    outputs: &Dictionary,
    step: &DeploymentStep,
    action: Option<&DeploymentAction>,
    number: usize,
    child: usize,
    machine: Option<&Machine>,
) -> Dictionary {
    let roles = step_roles(step);
    let scope = ScopeContext {
        environment: Some(ctx.environment.id.clone()),
        machine: machine.map(|m| m.id.clone()),
        machine_roles: machine.map(|m| m.roles.clone()).unwrap_or_default(),
        step_roles: roles.clone(),
        action: action.map(|a| a.id.clone()),
        step: Some(step.id.clone()),
        channel: Some(ctx.release.channel_id.clone()),
        tenant: ctx.deployment.tenant_id.clone(),
        tenant_tags: ctx
            .tenant
            .as_ref()
            .map(|t| t.tenant_tags.clone())
            .unwrap_or_default(),
        process_owner: Some(ctx.project.id.clone()),
    };
    let mut d = resolve(&ctx.sets, &scope);
    for (name, value, sensitive) in &ctx.prompted {
        let sens = *sensitive || d.is_sensitive(name);
        d.set_with(name, value.clone(), sens);
    }
    d.extend(base);
    d.set("Octopus.Step.Name", step.name.clone());
    d.set("Octopus.Step.Id", step.id.clone());
    d.set("Octopus.Step.Number", number.to_string());
    if let Some(a) = action {
        d.set("Octopus.Action.Name", a.name.clone());
        d.set("Octopus.Action.Id", a.id.clone());
        d.set(
            "Octopus.Action.Number",
            if child > 0 {
                format!("{number}.{child}")
            } else {
                number.to_string()
            },
        );
        d.set("Octopus.Action.TargetRoles", roles.join(","));
        d.set("Octopus.Action.Type", a.action_type.clone());
    }
    if let Some(m) = machine {
        d.set("Octopus.Machine.Id", m.id.clone());
        d.set("Octopus.Machine.Name", m.name.clone());
        d.set("Octopus.Machine.Roles", m.roles.join(","));
        d.set("Octopus.Machine.Hostname", machine_host(m));
    }
    d.extend(outputs);
    d
}

/// The host part of a machine's endpoint URI (empty for polling agents).
fn machine_host(m: &Machine) -> String {
    let uri = &m.endpoint.uri;
    match uri.strip_prefix("https://") {
        Some(rest) => rest
            .split(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_string(),
        None => String::new(),
    }
}

/// `OctopusBypassDeploymentMutex`: several deployments may run on one target at once.
fn bypass_mutex(dict: &Dictionary) -> bool {
    prop_is_true(dict.get_value("OctopusBypassDeploymentMutex"))
}

/// How many targets of a step run at once: the rolling window (the step's property
/// `Octopus.Action.MaxParallelism`) if the step sets one, otherwise the variable of the same
/// name (`variable`), otherwise 10 (Octopus's default).
fn step_window(step: &DeploymentStep, targets: usize, variable: Option<&str>) -> usize {
    let positive = |v: &str| v.trim().parse::<usize>().ok().filter(|n| *n > 0);
    step.properties
        .get("Octopus.Action.MaxParallelism")
        .and_then(|v| positive(v))
        .or_else(|| variable.and_then(positive))
        .unwrap_or(step_flow::DEFAULT_MAX_PARALLELISM)
        .clamp(1, targets.max(1))
}

/// The worker an action runs on: a worker of the action's pool (`WorkerPoolId`, else the
/// space's default pool), taken in turn; the built-in worker while the default pool has no
/// workers (or the space has no pools). A pool that is not the default and has no usable
/// worker fails the step.
fn pick_worker(
    ex: &Executor,
    ctx: &Context,
    action: &DeploymentAction,
) -> Result<Arc<dyn Target>, String> {
    let wanted = action
        .worker_pool_id
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let pool = match wanted {
        Some(p) => ctx
            .pools
            .iter()
            .find(|x| x.id == p || x.name.eq_ignore_ascii_case(p) || x.slug == p)
            .ok_or_else(|| format!("the worker pool '{p}' does not exist in this space"))?
            .clone(),
        None => match ctx.pools.iter().find(|x| x.is_default) {
            Some(p) => p.clone(),
            None => return Ok(ex.local_target()),
        },
    };
    let members: Vec<&Machine> = ctx
        .workers
        .iter()
        .filter(|w| w.worker_pool_ids.contains(&pool.id))
        .collect();
    let usable: Vec<&Machine> = members
        .iter()
        .copied()
        .filter(|w| !matches!(w.health_status.as_str(), "Unavailable" | "Unhealthy"))
        .collect();
    let choices = if usable.is_empty() { members } else { usable };
    if choices.is_empty() {
        if pool.is_default {
            return Ok(ex.local_target());
        }
        return Err(format!(
            "the worker pool '{}' has no workers to run the step on",
            pool.name
        ));
    }
    let n = ex
        .worker_turn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let w = choices[n % choices.len()];
    let provider = ex
        .targets()
        .ok_or("workers cannot be reached: this server has no agent transport")?;
    provider
        .target(w)
        .map_err(|e| format!("the worker {} cannot be used: {e}", w.name))
}

/// A target shown under another name (a deployment target's section run on a worker).
struct Labelled {
    inner: Arc<dyn Target>,
    label: String,
}

impl Target for Labelled {
    fn name(&self) -> &str {
        &self.label
    }
    fn run_script<'a>(
        &'a self,
        req: ScriptRequest,
        out: &'a dyn ScriptOutput,
        cancel: CancellationToken,
    ) -> crate::target::BoxFuture<'a, Result<ScriptOutcome, crate::target::TargetError>> {
        self.inner.run_script(req, out, cancel)
    }
    fn put_package<'a>(
        &'a self,
        pkg: &'a crate::package_ops::PackageFile,
        force: bool,
        task: &'a TaskRef,
    ) -> crate::target::BoxFuture<
        'a,
        Result<Option<crate::package_ops::Transferred>, crate::target::TargetError>,
    > {
        self.inner.put_package(pkg, force, task)
    }
    fn package_stage<'a>(
        &'a self,
        op: ferry_protocol::PackageOp,
        task: &'a TaskRef,
    ) -> crate::target::BoxFuture<
        'a,
        Result<ferry_protocol::PackageStageReply, crate::target::TargetError>,
    > {
        self.inner.package_stage(op, task)
    }
    fn health(
        &self,
    ) -> crate::target::BoxFuture<'_, Result<crate::target::HealthInfo, crate::target::TargetError>>
    {
        self.inner.health()
    }
}

/// A target an action runs on, with its machine (none for the built-in worker).
type Placement = (Option<Machine>, Arc<dyn Target>);

/// Where an action runs: the built-in worker when the step names no roles (or runs on the
/// server), otherwise every matching target of the deployment.
fn resolve_targets(
    ex: &Executor,
    ctx: &Context,
    step: &DeploymentStep,
    action: &DeploymentAction,
    logger: &TaskLogger,
    step_act: &Activity,
) -> Result<Vec<Placement>, String> {
    let roles = step_roles(step);
    let on_worker = prop_is_true(action.prop("Octopus.Action.RunOnServer"));
    if roles.is_empty() {
        return Ok(vec![(None, pick_worker(ex, ctx, action)?)]);
    }
    let d = &ctx.deployment;
    let matching: Vec<&Machine> = ctx
        .machines
        .iter()
        .filter(|m| {
            m.roles
                .iter()
                .any(|r| roles.iter().any(|w| w.eq_ignore_ascii_case(r)))
        })
        .filter(|m| d.specific_machine_ids.is_empty() || d.specific_machine_ids.contains(&m.id))
        .filter(|m| !d.excluded_machine_ids.contains(&m.id))
        .filter(|m| !ctx.is_excluded(&m.id))
        .collect();
    if matching.is_empty() {
        return Err(format!(
            "the step runs on targets with the roles [{}], but there are no deployment targets in {} with those roles",
            roles.join(", "),
            ctx.environment.name
        ));
    }
    let policy = &ctx.project.project_connectivity_policy;
    let skip_unavailable = policy
        .skip_machine_behavior
        .eq_ignore_ascii_case("SkipUnavailableMachines");
    let skip_unhealthy = policy.exclude_unhealthy_targets;
    let provider = ex.targets();
    let mut out = Vec::new();
    for m in matching {
        let skip = match m.health_status.as_str() {
            "Unavailable" => skip_unavailable,
            "Unhealthy" => skip_unhealthy,
            _ => false,
        };
        if skip {
            logger.line(
                step_act,
                LogCategory::Warning,
                &format!(
                    "Skipping {}: its last health check found it {} and the project skips such targets",
                    m.name,
                    m.health_status.to_lowercase()
                ),
            );
            continue;
        }
        if on_worker {
            // On behalf of the target: its variables, on a worker of the step's pool.
            let w = pick_worker(ex, ctx, action)?;
            let label = format!("{} (on {})", m.name, w.name());
            let t: Arc<dyn Target> = Arc::new(Labelled { inner: w, label });
            out.push((Some(m.clone()), t));
            continue;
        }
        let Some(p) = &provider else {
            return Err(format!(
                "the deployment target {} cannot be reached: this server has no agent transport",
                m.name
            ));
        };
        let t = p
            .target(m)
            .map_err(|e| format!("the deployment target {} cannot be used: {e}", m.name))?;
        out.push((Some(m.clone()), t));
    }
    if out.is_empty() {
        return Err(format!(
            "every deployment target with the roles [{}] in {} is unavailable",
            roles.join(", "),
            ctx.environment.name
        ));
    }
    Ok(out)
}

fn step_roles(step: &DeploymentStep) -> Vec<String> {
    step.properties
        .get("Octopus.Action.TargetRoles")
        .map(|r| {
            r.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What a script reported back.
#[derive(Default)]
pub(crate) struct ActionOutput {
    /// (name, value, sensitive) from `set_octopusvariable`.
    pub variables: Vec<(String, String, bool)>,
    /// The machine the action ran on (for `Output[Machine]`).
    pub machine: String,
}

fn record_outputs(outputs: &mut Dictionary, action: &DeploymentAction, out: ActionOutput) {
    for (name, value, sensitive) in out.variables {
        let a = &action.name;
        if !out.machine.is_empty() {
            outputs.set_with(
                &format!("Octopus.Action[{a}].Output[{}].{name}", out.machine),
                value.clone(),
                sensitive,
            );
        }
        outputs.set_with(
            &format!("Octopus.Action[{a}].Output.{name}"),
            value,
            sensitive,
        );
    }
}

/// Why a step does not apply to this deployment, if it does not.
fn skip_reason(step: &DeploymentStep, ctx: &Context) -> Option<String> {
    let actions: Vec<&DeploymentAction> = step.actions.iter().filter(|a| !a.is_disabled).collect();
    if actions.is_empty() {
        return Some("Skipped because the step is disabled".to_string());
    }
    let env = &ctx.environment.id;
    let applies = |a: &&DeploymentAction| {
        (a.environments.is_empty() || a.environments.contains(env))
            && !a.excluded_environments.contains(env)
            && (a.channels.is_empty() || a.channels.contains(&ctx.release.channel_id))
    };
    if actions.iter().any(applies)
        && !actions
            .iter()
            .any(|a| applies(a) && tenant_skip_reason(a, ctx).is_none())
    {
        return actions.iter().find_map(|a| tenant_skip_reason(a, ctx));
    }
    if !actions.iter().any(applies) {
        return Some(format!(
            "Skipped because the step does not run in {} or in this channel",
            ctx.environment.name
        ));
    }
    None
}

/// Why an action with tenant tags does not run for this deployment: an untenanted deployment
/// skips it, a tenanted one unless its tenant matches the tags (OR within a set, AND across).
fn tenant_skip_reason(action: &DeploymentAction, ctx: &Context) -> Option<String> {
    let tags = ctx.tenant.as_ref().map(|t| t.tenant_tags.as_slice());
    if step_runs_for(&action.tenant_tags, tags) {
        return None;
    }
    Some(match &ctx.tenant {
        Some(t) => format!(
            "Skipped because the step runs only for tenants tagged {} and tenant {} is not",
            action.tenant_tags.join(", "),
            t.name
        ),
        None => format!(
            "Skipped because the step runs only for tenants tagged {} and this deployment is untenanted",
            action.tenant_tags.join(", ")
        ),
    })
}

/// The tenant's variables for this deployment, as a variable set scoped to the tenant: the
/// project's templates with the values for the deployment's environment, and the common
/// templates of the library sets the project includes. A template without a value takes its
/// default (which may refer to other variables). Sensitive values are opened and stay
/// sensitive (masked in logs).
async fn tenant_set(
    ex: &Executor,
    tenant: &Tenant,
    project: &Project,
    environment: &str,
) -> Result<OpenedSet, String> {
    let values: TenantVariables = match ex.db.get_doc(&tenant_variables_id(&tenant.id)).await {
        Ok(Some(d)) => serde_json::from_str(&d.body).map_err(|e| {
            format!(
                "the variables of tenant {} are unreadable: {e}",
                tenant.name
            )
        })?,
        Ok(None) => TenantVariables::default(),
        Err(e) => {
            return Err(format!(
                "could not read the variables of tenant {}: {e}",
                tenant.name
            ));
        }
    };
    let scope = VariableScope {
        tenant: vec![tenant.id.clone()],
        ..VariableScope::default()
    };
    let mut variables = Vec::new();
    let mut add =
        |t: &Template, stored: Option<&ferry_domain::tenant::StoredValue>, key: String| {
            let (value, sensitive) = match stored {
                Some(v) if v.sealed_value.is_some() => {
                    let sealed = v.sealed_value.as_deref().unwrap_or_default();
                    let plain = ferry_crypto::open(
                    &ex.cfg.master_key,
                    &ferry_crypto::variable_aad(&tenant.id, &key),
                    sealed,
                )
                .map_err(|e| {
                    format!(
                        "the sensitive tenant variable '{}' of tenant {} could not be opened: {e}",
                        t.name, tenant.name
                    )
                })?;
                    (Some(plain), true)
                }
                Some(v) if v.has_value() => (v.value.clone(), t.is_sensitive()),
                _ => (t.default_value.clone(), t.is_sensitive()),
            };
            if let Some(value) = value {
                variables.push(Variable {
                    id: format!("tenant-{key}"),
                    name: t.name.clone(),
                    value: Some(value),
                    is_sensitive: sensitive,
                    scope: scope.clone(),
                    ..Variable::default()
                });
            }
            Ok::<(), String>(())
        };
    let project_values = values
        .project_variables
        .get(&project.id)
        .and_then(|m| m.get(environment));
    for t in project.templates.iter().map(Template::from_value) {
        if t.name.is_empty() {
            continue;
        }
        let key = project_value_key(&project.id, environment, &t.id);
        add(&t, project_values.and_then(|m| m.get(&t.id)), key)?;
    }
    for lib_id in &project.included_library_variable_set_ids {
        let lib: serde_json::Value = match ex.db.get_doc(lib_id).await {
            Ok(Some(d)) => serde_json::from_str(&d.body).unwrap_or_default(),
            _ => continue,
        };
        let lib_values = values.library_variables.get(lib_id);
        for t in lib
            .get("Templates")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .map(Template::from_value)
        {
            if t.name.is_empty() {
                continue;
            }
            let key = library_value_key(lib_id, &t.id);
            add(&t, lib_values.and_then(|m| m.get(&t.id)), key)?;
        }
    }
    Ok(OpenedSet {
        owner: tenant.id.clone(),
        label: format!("tenant '{}'", tenant.name),
        variables,
    })
}

enum ActionResult {
    Ok,
    Failed(String),
    Canceled,
}

struct LogOutput<'a> {
    logger: &'a TaskLogger,
    activity: &'a Activity,
    state: std::sync::Mutex<OutputState>,
}

#[derive(Default)]
struct OutputState {
    interpreter: OutputInterpreter,
    variables: Vec<(String, String, bool)>,
    failed: Option<String>,
    /// `createArtifact` messages: (name, path), in order.
    artifacts: Vec<(String, String)>,
}

impl<'a> LogOutput<'a> {
    fn new(logger: &'a TaskLogger, activity: &'a Activity) -> Self {
        LogOutput {
            logger,
            activity,
            state: std::sync::Mutex::new(OutputState::default()),
        }
    }

    fn take_variables(&self) -> Vec<(String, String, bool)> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.variables))
            .unwrap_or_default()
    }

    fn step_failed(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.failed.clone())
    }
}

impl ScriptOutput for LogOutput<'_> {
    fn line(&self, stream: Stream, text: &str) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let events = st.interpreter.line(stream, text);
        for ev in events {
            match ev {
                OutputEvent::Log { category, text } => {
                    self.logger.line(self.activity, category, &text)
                }
                OutputEvent::Message(ServiceMessage::SetVariable {
                    name,
                    value,
                    sensitive,
                }) => {
                    if sensitive {
                        self.logger.masker().add(&value);
                    }
                    self.logger.verbose(
                        self.activity,
                        &format!(
                            "Output variable '{name}' was set{}",
                            if sensitive { " (sensitive)" } else { "" }
                        ),
                    );
                    st.variables.push((name, value, sensitive));
                }
                OutputEvent::Message(ServiceMessage::Mask { value }) => {
                    self.logger.masker().add(&value)
                }
                OutputEvent::Message(ServiceMessage::StepFailed { message }) => {
                    st.failed = Some(if message.trim().is_empty() {
                        "the script failed the step".to_string()
                    } else {
                        message
                    });
                }
                OutputEvent::Message(ServiceMessage::CreateArtifact { name, path, .. }) => {
                    // Collected after the script (`artifacts::collect`).
                    st.artifacts.push((name, path));
                }
                OutputEvent::Message(_) => {}
                OutputEvent::Malformed(bad) => {
                    self.logger
                        .line(self.activity, LogCategory::Warning, &bad.to_string());
                }
            }
        }
    }
}

/// Everything `run_action` needs about where it runs.
struct ActionRun<'a> {
    ctx: &'a Context,
    ex: &'a Executor,
    logger: &'a TaskLogger,
    step_act: &'a Activity,
    action: &'a DeploymentAction,
    task: &'a TaskRow,
    task_ref: &'a TaskRef,
    step_number: usize,
    child: usize,
    cancel: &'a CancellationToken,
    target: &'a dyn Target,
    machine: Option<&'a Machine>,
    /// 1 for the first attempt; retries get their own ticket (a ticket re-attaches).
    attempt: u32,
}

impl ActionRun<'_> {
    /// One ticket per (task, step, action, target): a retried start re-attaches on an agent.
    fn ticket(&self) -> String {
        let where_ = self.machine.map(|m| m.id.as_str()).unwrap_or("local");
        let ticket = format!(
            "{}-s{}.{}-{}",
            self.task.id, self.step_number, self.child, where_
        );
        if self.attempt > 1 {
            format!("{ticket}-a{}", self.attempt)
        } else {
            ticket
        }
    }
}

async fn run_action(r: ActionRun<'_>, dict: &Dictionary) -> (ActionResult, ActionOutput) {
    // A step template: the pinned version's properties, its parameters as variables.
    let space = &r.ctx.release.space_id;
    let templated =
        match crate::templates::expand(r.ex, space, r.action, dict, r.logger.masker()).await {
            Ok(t) => t,
            Err(e) => return (ActionResult::Failed(e), ActionOutput::default()),
        };
    let (r, dict) = match &templated {
        Some((action, d)) => (ActionRun { action, ..r }, d),
        None => (r, dict),
    };
    let mut output = ActionOutput::default();
    match r.action.action_type.as_str() {
        "Octopus.Script" => {}
        "Octopus.TentaclePackage" => return run_package_action(r, dict).await,
        "Octopus.Manual" => return run_manual_action(r, dict).await,
        "Octopus.Email" => return run_email_action(r, dict).await,
        other => {
            return (
                ActionResult::Failed(format!(
                    "the step type '{other}' is not supported by this version of Ferry"
                )),
                output,
            );
        }
    }
    let ActionRun {
        ex,
        logger,
        step_act,
        action,
        task,
        task_ref,
        cancel,
        target,
        ..
    } = r;
    let source = action
        .prop("Octopus.Action.Script.ScriptSource")
        .unwrap_or("Inline");
    if !source.eq_ignore_ascii_case("inline") {
        return (
            ActionResult::Failed(format!("script source '{source}' is not supported yet")),
            output,
        );
    }
    let syntax = match Syntax::parse(action.prop("Octopus.Action.Script.Syntax")) {
        Ok(s) => s,
        Err(e) => return (ActionResult::Failed(e), output),
    };
    let opts = template_options();
    // Every text property of the action is run through the template engine before it runs.
    let props = match render_properties(action, dict, &opts) {
        Ok(p) => p,
        Err(e) => return (ActionResult::Failed(e), output),
    };
    let body = props
        .get("Octopus.Action.Script.ScriptBody")
        .cloned()
        .unwrap_or_default();
    let target_act = logger.open(Some(step_act), target.name());
    output.machine = target.name().to_string();
    let out = LogOutput::new(logger, &target_act);
    let req = ScriptRequest {
        ticket: r.ticket(),
        task_id: task_ref.task_id.clone(),
        epoch: task_ref.epoch,
        syntax,
        body,
        env: vec![
            ("OCTOPUS_TASK_ID".to_string(), task.id.clone()),
            ("OCTOPUS_SERVER_URI".to_string(), ex.cfg.server_uri.clone()),
        ],
        variables: dict.evaluated(&opts),
        cwd: None,
    };
    let result = match target.run_script(req, &out, cancel.clone()).await {
        Ok(ScriptOutcome::Exited(0)) => match out.step_failed() {
            Some(msg) => ActionResult::Failed(msg),
            None => ActionResult::Ok,
        },
        Ok(ScriptOutcome::Exited(code)) => ActionResult::Failed(
            out.step_failed()
                .unwrap_or_else(|| format!("the script returned exit code {code}")),
        ),
        Ok(ScriptOutcome::Canceled) => ActionResult::Canceled,
        Err(e) => ActionResult::Failed(format!("{}: {e}", target.name())),
    };
    let artifacts = out
        .state
        .lock()
        .map(|mut s| std::mem::take(&mut s.artifacts))
        .unwrap_or_default();
    let mut result = result;
    if !artifacts.is_empty() && !matches!(result, ActionResult::Canceled) {
        let c = &r.ctx;
        let related = [
            &task.id,
            &c.deployment.id,
            &c.release.id,
            &c.project.id,
            &c.environment.id,
        ];
        let place = crate::artifacts::Place {
            logger,
            activity: &target_act,
            target,
            task: task_ref,
        };
        let space = &c.release.space_id;
        let collected =
            crate::artifacts::collect(ex, space, &related, place, &r.ticket(), artifacts).await;
        match (collected, &result) {
            (Err(e), ActionResult::Ok) => result = ActionResult::Failed(e),
            (Err(e), _) => logger.line(&target_act, LogCategory::Error, &e),
            (Ok(()), _) => {}
        }
    }
    output.variables = out.take_variables();
    match &result {
        ActionResult::Ok => logger.close(&target_act, ActivityStatus::Success),
        ActionResult::Canceled => logger.close(&target_act, ActivityStatus::Canceled),
        ActionResult::Failed(msg) => {
            logger.line(&target_act, LogCategory::Error, msg);
            logger.close(&target_act, ActivityStatus::Failed);
        }
    }
    (result, output)
}

/// A "Deploy a package" action on one target (see `deploy_package`).
/// An email (`crate::email`), sent from the server with its SMTP settings.
async fn run_email_action(r: ActionRun<'_>, dict: &Dictionary) -> (ActionResult, ActionOutput) {
    let output = ActionOutput::default();
    let props = match render_properties(r.action, dict, &template_options()) {
        Ok(p) => p,
        Err(e) => return (ActionResult::Failed(e), output),
    };
    let get = |k: &str| props.get(k).cloned().unwrap_or_default();
    let m = crate::email::Message {
        to: crate::email::addresses(&get("Octopus.Action.Email.To")),
        cc: crate::email::addresses(&get("Octopus.Action.Email.CC")),
        bcc: crate::email::addresses(&get("Octopus.Action.Email.Bcc")),
        subject: get("Octopus.Action.Email.Subject"),
        body: get("Octopus.Action.Email.Body"),
        is_html: get("Octopus.Action.Email.IsHtml").eq_ignore_ascii_case("true"),
    };
    if !get("Octopus.Action.Email.ToTeamIds").trim().is_empty() {
        r.logger.line(
            r.step_act,
            LogCategory::Warning,
            "Sending to teams (Octopus.Action.Email.ToTeamIds) is not supported yet; only the addresses are used",
        );
    }
    let all: Vec<&String> = m.to.iter().chain(m.cc.iter()).chain(m.bcc.iter()).collect();
    if all.is_empty() {
        return (
            ActionResult::Failed(
                "the email step has no recipients (Octopus.Action.Email.To, CC or Bcc)".to_string(),
            ),
            output,
        );
    }
    if let Some(bad) = all.iter().find(|a| !crate::email::valid_address(a)) {
        return (
            ActionResult::Failed(format!("'{bad}' is not an email address")),
            output,
        );
    }
    let settings: crate::email::SmtpSettings =
        match r.ex.db.get_doc(crate::email::SMTP_DOC_ID).await {
            Ok(Some(d)) => serde_json::from_str(&d.body).unwrap_or_default(),
            _ => crate::email::SmtpSettings::default(),
        };
    if !settings.is_configured() {
        return (
            ActionResult::Failed(
                "SMTP is not configured: set the server's SMTP host and sender with PUT /api/smtpconfiguration".to_string(),
            ),
            output,
        );
    }
    let password = match &settings.sealed_password {
        Some(sealed) => {
            match ferry_crypto::open(&r.ex.cfg.master_key, &crate::email::password_aad(), sealed) {
                Ok(p) => Some(p),
                Err(e) => {
                    return (
                        ActionResult::Failed(format!("the SMTP password could not be opened: {e}")),
                        output,
                    );
                }
            }
        }
        None => None,
    };
    match crate::email::send(&settings, password.as_deref(), &m).await {
        Ok(()) => {
            r.logger.info(
                r.step_act,
                &format!(
                    "Sent the email '{}' to {} through {}:{}",
                    m.subject,
                    all.iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    settings.smtp_host,
                    settings.smtp_port
                ),
            );
            (ActionResult::Ok, output)
        }
        Err(e) => (ActionResult::Failed(e), output),
    }
}

/// A manual intervention: wait for a person (`crate::manual`).
async fn run_manual_action(r: ActionRun<'_>, dict: &Dictionary) -> (ActionResult, ActionOutput) {
    let mut output = ActionOutput::default();
    let props = match render_properties(r.action, dict, &template_options()) {
        Ok(p) => p,
        Err(e) => return (ActionResult::Failed(e), output),
    };
    let d = &r.ctx.deployment;
    let mut related = vec![
        d.id.clone(),
        d.project_id.clone(),
        d.environment_id.clone(),
        d.release_id.clone(),
    ];
    related.extend(d.tenant_id.clone());
    let step_name = if r.action.name.is_empty() {
        "Manual intervention".to_string()
    } else {
        r.action.name.clone()
    };
    let m = crate::manual::Manual {
        ex: r.ex,
        logger: r.logger,
        activity: r.step_act,
        space_id: &r.ctx.release.space_id,
        task_id: &r.task.id,
        step_name: &step_name,
        instructions: props
            .get("Octopus.Action.Manual.Instructions")
            .cloned()
            .unwrap_or_default(),
        responsible_team_ids: props
            .get("Octopus.Action.Manual.ResponsibleTeamIds")
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        related,
        cancel: r.cancel,
    };
    let to_vars = |vars: Vec<(String, String)>| -> Vec<(String, String, bool)> {
        vars.into_iter().map(|(n, v)| (n, v, false)).collect()
    };
    match crate::manual::run(m).await {
        Ok(crate::manual::Outcome::Proceeded(vars)) => {
            output.variables = to_vars(vars);
            (ActionResult::Ok, output)
        }
        Ok(crate::manual::Outcome::Aborted(msg, vars)) => {
            output.variables = to_vars(vars);
            (ActionResult::Failed(msg), output)
        }
        Ok(crate::manual::Outcome::Withdrawn) => (ActionResult::Canceled, output),
        Err(e) => (
            ActionResult::Failed(format!("the manual intervention could not be raised: {e}")),
            output,
        ),
    }
}

async fn run_package_action(r: ActionRun<'_>, dict: &Dictionary) -> (ActionResult, ActionOutput) {
    let mut output = ActionOutput::default();
    let ActionRun {
        ctx,
        ex,
        logger,
        step_act,
        action,
        task_ref,
        cancel,
        target,
        ..
    } = r;
    let Some(package_id) = crate::deploy_package::primary_package_id(action) else {
        return (
            ActionResult::Failed("the step names no package".to_string()),
            output,
        );
    };
    let Some(selected) = ctx.release.selected_packages.iter().find(|p| {
        p.action_name.eq_ignore_ascii_case(&action.name) && p.package_reference_name.is_empty()
    }) else {
        return (
            ActionResult::Failed(format!(
                "release {} selected no version of the package {package_id} for this step",
                ctx.release.version
            )),
            output,
        );
    };
    let opts = template_options();
    let props = match render_properties(action, dict, &opts) {
        Ok(p) => p,
        Err(e) => return (ActionResult::Failed(e), output),
    };
    let target_act = logger.open(Some(step_act), target.name());
    output.machine = target.name().to_string();
    let out = LogOutput::new(logger, &target_act);
    let run = crate::deploy_package::PackageRun {
        ex,
        logger,
        activity: &target_act,
        out: &out,
        ticket: r.ticket(),
        target,
        task: task_ref,
        space_id: &ctx.release.space_id,
        environment: &ctx.environment.name,
        tenant: None,
        package: crate::deploy_package::SelectedPackage {
            package_id,
            version: selected.version.clone(),
        },
        props: &props,
        dict,
        cancel,
        force_download: ctx.deployment.force_package_download,
        retention: crate::deploy_package::target_retention(
            ex,
            &ctx.project,
            ctx.channel.as_ref(),
            &ctx.environment.id,
        )
        .await,
    };
    let result = crate::deploy_package::run(run).await;
    output.variables = out.take_variables();
    match result {
        Ok(r) => {
            output.variables.push((
                "Package.InstallationDirectoryPath".to_string(),
                r.installation_dir.display().to_string(),
                false,
            ));
            logger.close(&target_act, ActivityStatus::Success);
            (ActionResult::Ok, output)
        }
        Err(e) if cancel.is_cancelled() => {
            let _ = e;
            logger.close(&target_act, ActivityStatus::Canceled);
            (ActionResult::Canceled, output)
        }
        Err(e) => {
            logger.close(&target_act, ActivityStatus::Failed);
            (
                ActionResult::Failed(format!("{}: {e}", target.name())),
                output,
            )
        }
    }
}
