//! Running a deployment task: load the deployment, its release and the release's process
//! snapshot, then walk the steps in order, running each action through a `Target` and writing
//! the hierarchical log (task → step → target → lines).

use ferry_domain::task::{ActivityStatus, LogCategory, TaskState};
use ferry_domain::{
    Deployment, DeploymentAction, DeploymentProcess, DeploymentStep, Environment, Project, Release,
    prop_is_true,
};
use ferry_store::TaskRow;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::Executor;
use crate::log::{Activity, Masker, TaskLogger};
use crate::target::{ScriptOutcome, ScriptOutput, ScriptRequest, Stream, Syntax, Target};

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
    Ok(Context {
        deployment,
        release,
        process,
        environment,
        project,
    })
}

pub(crate) async fn run(ex: &Executor, task: &TaskRow, cancel: CancellationToken) -> Outcome {
    let logger = TaskLogger::start(ex.db.clone(), &task.id, Masker::default());
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
    logger.info(
        &root,
        &format!(
            "Deploying {} release {} to {}",
            ctx.project.name, ctx.release.version, ctx.environment.name
        ),
    );
    let mut failure: Option<String> = None;
    let mut canceled = false;
    for (index, step) in ctx.process.steps.iter().enumerate() {
        let number = index + 1;
        let title = format!("Step {number}: {}", step.name);
        if canceled || cancel.is_cancelled() {
            canceled = true;
            let a = logger.open(Some(&root), &title);
            logger.close(&a, ActivityStatus::Canceled);
            continue;
        }
        if let Some(why) = skip_reason(step, &ctx) {
            let a = logger.skipped(Some(&root), &title);
            logger.verbose(&a, &why);
            continue;
        }
        let run_it = match step.condition.as_str() {
            "Failure" => failure.is_some(),
            "Always" => true,
            _ => failure.is_none(),
        };
        if !run_it {
            let a = logger.skipped(Some(&root), &title);
            logger.verbose(
                &a,
                if failure.is_some() {
                    "Skipped because a previous step failed"
                } else {
                    "Skipped because this step runs only when a previous step failed"
                },
            );
            continue;
        }
        let step_act = logger.open(Some(&root), &title);
        let mut step_failed: Option<String> = None;
        for action in step.actions.iter().filter(|a| !a.is_disabled) {
            if ctx.deployment.skip_actions.contains(&action.id) {
                let a = logger.skipped(Some(&step_act), &action.name);
                logger.verbose(&a, "Skipped because the deployment excludes this step");
                continue;
            }
            match run_action(
                ex, &logger, &step_act, step, action, &ctx, task, number, &cancel,
            )
            .await
            {
                ActionResult::Ok => {}
                ActionResult::Canceled => {
                    canceled = true;
                    break;
                }
                ActionResult::Failed(msg) => {
                    step_failed = Some(msg);
                    break;
                }
            }
        }
        if canceled {
            logger.close(&step_act, ActivityStatus::Canceled);
        } else if let Some(msg) = step_failed {
            logger.line(&step_act, LogCategory::Error, &msg);
            logger.close(&step_act, ActivityStatus::Failed);
            if failure.is_none() {
                failure = Some(format!("Step '{}' failed: {msg}", step.name));
            }
        } else {
            logger.close(&step_act, ActivityStatus::Success);
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
        error: if canceled { None } else { failure },
        has_warnings: logger.has_warnings_or_errors(),
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
    if !actions.iter().any(applies) {
        return Some(format!(
            "Skipped because the step does not run in {} or in this channel",
            ctx.environment.name
        ));
    }
    None
}

enum ActionResult {
    Ok,
    Failed(String),
    Canceled,
}

struct LogOutput<'a> {
    logger: &'a TaskLogger,
    activity: &'a Activity,
}

impl ScriptOutput for LogOutput<'_> {
    fn line(&self, stream: Stream, text: &str) {
        let cat = match stream {
            Stream::Stdout => LogCategory::Info,
            Stream::Stderr => LogCategory::Error,
        };
        self.logger.line(self.activity, cat, text);
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_action(
    ex: &Executor,
    logger: &TaskLogger,
    step_act: &Activity,
    step: &DeploymentStep,
    action: &DeploymentAction,
    ctx: &Context,
    task: &TaskRow,
    step_number: usize,
    cancel: &CancellationToken,
) -> ActionResult {
    match action.action_type.as_str() {
        "Octopus.Script" => {}
        other => {
            return ActionResult::Failed(format!(
                "the step type '{other}' is not supported by this version of Ferry"
            ));
        }
    }
    let roles = step
        .properties
        .get("Octopus.Action.TargetRoles")
        .map(|r| {
            r.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let on_server = prop_is_true(action.prop("Octopus.Action.RunOnServer"));
    if !on_server && !roles.is_empty() {
        return ActionResult::Failed(format!(
            "the step runs on targets with the roles [{}], but there are no deployment targets in {} with those roles",
            roles.join(", "),
            ctx.environment.name
        ));
    }
    let source = action
        .prop("Octopus.Action.Script.ScriptSource")
        .unwrap_or("Inline");
    if !source.eq_ignore_ascii_case("inline") {
        return ActionResult::Failed(format!("script source '{source}' is not supported yet"));
    }
    let syntax = match Syntax::parse(action.prop("Octopus.Action.Script.Syntax")) {
        Ok(s) => s,
        Err(e) => return ActionResult::Failed(e),
    };
    let body = action
        .prop("Octopus.Action.Script.ScriptBody")
        .unwrap_or("")
        .to_string();
    let target: &dyn Target = &ex.local;
    let target_act = logger.open(Some(step_act), target.name());
    let out = LogOutput {
        logger,
        activity: &target_act,
    };
    let req = ScriptRequest {
        ticket: format!(
            "{}-s{step_number}-{}",
            task.id,
            uuid::Uuid::new_v4().simple()
        ),
        syntax,
        body,
        env: vec![
            ("OCTOPUS_TASK_ID".to_string(), task.id.clone()),
            ("OCTOPUS_SERVER_URI".to_string(), ex.cfg.server_uri.clone()),
        ],
    };
    let result = match target.run_script(req, &out, cancel.clone()).await {
        Ok(ScriptOutcome::Exited(0)) => ActionResult::Ok,
        Ok(ScriptOutcome::Exited(code)) => {
            ActionResult::Failed(format!("the script returned exit code {code}"))
        }
        Ok(ScriptOutcome::Canceled) => ActionResult::Canceled,
        Err(e) => ActionResult::Failed(e.to_string()),
    };
    match &result {
        ActionResult::Ok => logger.close(&target_act, ActivityStatus::Success),
        ActionResult::Canceled => logger.close(&target_act, ActivityStatus::Canceled),
        ActionResult::Failed(msg) => {
            logger.line(&target_act, LogCategory::Error, msg);
            logger.close(&target_act, ActivityStatus::Failed);
        }
    }
    result
}
