//! The step loop of a deployment (see `docs/step-flow.md`): steps grouped by their start
//! trigger and run concurrently within a group, run conditions (per step, and per target when
//! an expression names the machine), rolling units (a step's child actions in order on one
//! target, at most the window's targets at once), automatic retries and execution timeouts.
//!
//! A child module of `deploy` (it uses the runner's private pieces).

use std::sync::Mutex;
use std::time::Duration;

use ferry_domain::task::{ActivityStatus, LogCategory};
use ferry_domain::{DeploymentAction, DeploymentStep, Machine};
use ferry_store::TaskRow;
use tokio_util::sync::CancellationToken;

use super::{
    ActionOutput, ActionResult, ActionRun, Context, Placement, bypass_mutex, record_outputs,
    resolve_targets, run_action, skip_reason, step_dictionary, step_window, template_options,
    tenant_skip_reason,
};
use crate::Executor;
use crate::log::{Activity, TaskLogger};
use crate::target::TaskRef;
use crate::variables::Dictionary;

/// Steps that may run at once when start triggers put them in parallel (Octopus's default for
/// `Octopus.Action.MaxParallelism`).
pub(crate) const DEFAULT_MAX_PARALLELISM: usize = 10;
/// Octopus's default delay between automatic retries, in seconds.
pub(crate) const DEFAULT_RETRY_BACKOFF_SECS: f64 = 15.0;

/// Groups step indexes by start trigger: a step that starts after the previous one opens a new
/// group; each following `StartWithPrevious` step joins it. The first step always opens one.
pub(crate) fn step_groups(steps: &[DeploymentStep]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let with_previous = s.start_trigger.eq_ignore_ascii_case("StartWithPrevious");
        match groups.last_mut() {
            Some(g) if with_previous => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

/// How many steps of a parallel group run at once: `Octopus.Action.MaxParallelism` as a
/// variable (a positive integer), else 10.
pub(crate) fn max_parallel_steps(value: Option<&str>) -> usize {
    value
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_PARALLELISM)
}

/// Automatic retries of an action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Attempts in all: 1 + `Octopus.Action.AutoRetry.MaximumCount`.
    pub attempts: u32,
    /// Delay before each retry (`Octopus.Action.AutoRetry.MinimumBackoff`, seconds).
    pub backoff: Duration,
}

/// Action types Octopus never retries (nor times out).
fn never_retried(action_type: &str) -> bool {
    matches!(
        action_type,
        "Octopus.Manual" | "Octopus.Email" | "Octopus.HealthCheck" | "Octopus.DeployRelease"
    )
}

/// Reads a count of retries and a backoff in seconds. Missing, empty or zero count: no
/// retries. A count that is not a number is an error naming the property.
pub(crate) fn retry_policy(
    action_type: &str,
    count: Option<&str>,
    backoff: Option<&str>,
) -> Result<RetryPolicy, String> {
    let none = RetryPolicy {
        attempts: 1,
        backoff: Duration::ZERO,
    };
    if never_retried(action_type) {
        return Ok(none);
    }
    let count = match count.map(str::trim).filter(|c| !c.is_empty()) {
        None => return Ok(none),
        Some(c) => c.parse::<u32>().map_err(|_| {
            format!("Octopus.Action.AutoRetry.MaximumCount '{c}' is not a whole number of retries")
        })?,
    };
    let secs = match backoff.map(str::trim).filter(|b| !b.is_empty()) {
        None => DEFAULT_RETRY_BACKOFF_SECS,
        Some(b) => b
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
            .ok_or_else(|| {
                format!("Octopus.Action.AutoRetry.MinimumBackoff '{b}' is not a number of seconds")
            })?,
    };
    Ok(RetryPolicy {
        attempts: count.min(100).saturating_add(1),
        backoff: Duration::from_secs_f64(secs),
    })
}

/// The execution timeout: `Octopus.Action.ExecutionTimeout.Minutes`. Empty or 0: none.
/// Decimal minutes are accepted (a Ferry extension; Octopus's UI takes whole minutes).
pub(crate) fn execution_timeout(
    action_type: &str,
    minutes: Option<&str>,
) -> Result<Option<Duration>, String> {
    if never_retried(action_type) {
        return Ok(None);
    }
    let Some(m) = minutes.map(str::trim).filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    let v = m
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 525_600.0)
        .ok_or_else(|| {
            format!("Octopus.Action.ExecutionTimeout.Minutes '{m}' is not a number of minutes")
        })?;
    Ok((v > 0.0).then(|| Duration::from_secs_f64(v * 60.0)))
}

/// "1 minute", "2 minutes", "0.05 minutes".
pub(crate) fn minutes_text(d: Duration) -> String {
    let m = d.as_secs_f64() / 60.0;
    let n = if (m - m.round()).abs() < 1e-9 {
        format!("{}", m.round() as u64)
    } else {
        format!("{m}")
    };
    format!("{n} minute{}", if n == "1" { "" } else { "s" })
}

/// "15s", "1.5s", "0s".
pub(crate) fn seconds_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 1e-9 {
        format!("{}s", s.round() as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// Evaluates a variable run condition. The expression must parse (strictly): one that does
/// not fails with the expression and the position of the problem.
pub(crate) fn evaluate_condition(
    what: &str,
    expr: &str,
    dict: &Dictionary,
) -> Result<bool, String> {
    if let Err(e) = ferry_template::parse(expr) {
        return Err(format!(
            "the run condition of {what} does not parse: `{expr}` at {e}"
        ));
    }
    ferry_template::evaluate_truthy(expr, dict, &template_options())
        .map_err(|e| format!("the run condition of {what} could not be evaluated: {e}"))
}

/// Whether an expression must be evaluated per target (it names the machine).
pub(crate) fn names_machine(expr: &str) -> bool {
    expr.contains("Octopus.Machine.")
}

/// A step's variable expression (`Octopus.Step.ConditionVariableExpression`; some clients
/// store it as `Octopus.Action.ConditionVariableExpression` on the step).
fn step_expression(step: &DeploymentStep) -> String {
    step.properties
        .get("Octopus.Step.ConditionVariableExpression")
        .or_else(|| {
            step.properties
                .get("Octopus.Action.ConditionVariableExpression")
        })
        .cloned()
        .unwrap_or_default()
}

/// A child step's variable expression (`Octopus.Action.ConditionVariableExpression` on the
/// action).
fn action_expression(action: &DeploymentAction) -> String {
    action
        .properties
        .get("Octopus.Action.ConditionVariableExpression")
        .cloned()
        .unwrap_or_default()
}

/// Whether an action's environment and channel filters let it run in this deployment.
fn action_applies(a: &DeploymentAction, ctx: &Context) -> bool {
    let env = &ctx.environment.id;
    (a.environments.is_empty() || a.environments.contains(env))
        && !a.excluded_environments.contains(env)
        && (a.channels.is_empty() || a.channels.contains(&ctx.release.channel_id))
}

/// What to do with a child step (an action of a step with several) on one target.
#[derive(Debug, PartialEq)]
pub(crate) enum ChildDecision {
    Run,
    /// Evaluate its variable expression (`Octopus.Action.ConditionVariableExpression`).
    Evaluate,
    Skip(&'static str),
}

/// A child step's run condition on one target: `Success` (and a step's only action) runs while
/// nothing failed, before the step or on this target; `Failure` only after a failure; `Always`
/// always; `Variable` while nothing failed on this target, when its expression is true.
pub(crate) fn child_decision(
    condition: &str,
    failed_before: bool,
    failed_here: bool,
) -> ChildDecision {
    match condition {
        c if c.eq_ignore_ascii_case("Always") => ChildDecision::Run,
        c if c.eq_ignore_ascii_case("Failure") => {
            if failed_before || failed_here {
                ChildDecision::Run
            } else {
                ChildDecision::Skip("this step runs only when a previous step failed")
            }
        }
        _ if failed_here => ChildDecision::Skip("a previous step failed on this target"),
        c if c.eq_ignore_ascii_case("Variable") => ChildDecision::Evaluate,
        _ => ChildDecision::Run,
    }
}

/// What a step produced.
#[derive(Default)]
pub(crate) struct StepResult {
    /// "Step 'X' failed: …" (`Octopus.Deployment.Error`).
    pub failure: Option<String>,
    /// The cause alone (`Octopus.Deployment.ErrorDetail`).
    pub detail: String,
    pub canceled: bool,
}

/// Everything a step needs from the deployment.
pub(crate) struct StepEnv<'a> {
    pub ex: &'a Executor,
    pub ctx: &'a Context,
    pub task: &'a TaskRow,
    pub task_ref: &'a TaskRef,
    pub logger: &'a TaskLogger,
    pub root: &'a Activity,
    pub base: &'a Dictionary,
    pub outputs: &'a Mutex<Dictionary>,
    pub cancel: &'a CancellationToken,
}

impl StepEnv<'_> {
    fn snapshot(&self) -> Dictionary {
        self.outputs.lock().map(|o| o.clone()).unwrap_or_default()
    }

    fn dict(
        &self,
        step: &DeploymentStep,
        action: Option<&DeploymentAction>,
        number: usize,
        child: usize,
        machine: Option<&Machine>,
    ) -> Dictionary {
        let outputs = self.snapshot();
        step_dictionary(
            self.ctx, self.base, &outputs, step, action, number, child, machine,
        )
    }
}

/// Runs one step (all its actions on all its targets). `failed_before` is the deployment's
/// failure as it stood when the step's group started.
pub(crate) async fn run_step(
    env: &StepEnv<'_>,
    index: usize,
    step: &DeploymentStep,
    failed_before: bool,
) -> StepResult {
    let (ctx, logger, root) = (env.ctx, env.logger, env.root);
    let number = index + 1;
    let title = format!("Step {number}: {}", step.name);
    if env.cancel.is_cancelled() {
        let a = logger.open(Some(root), &title);
        logger.close(&a, ActivityStatus::Canceled);
        return StepResult {
            canceled: true,
            ..StepResult::default()
        };
    }
    if let Some(why) = skip_reason(step, ctx) {
        let a = logger.skipped(Some(root), &title);
        logger.verbose(&a, &why);
        return StepResult::default();
    }
    let what = format!("step '{}'", step.name);
    // A variable expression naming the machine is evaluated per target, below.
    let mut per_target_expr: Option<String> = None;
    let run_it = match step.condition.as_str() {
        "Failure" => Ok(failed_before),
        "Always" => Ok(true),
        "Variable" => {
            let expr = step_expression(step);
            if names_machine(&expr) {
                per_target_expr = Some(expr);
                Ok(true)
            } else {
                evaluate_condition(&what, &expr, &env.dict(step, None, number, 0, None))
            }
        }
        _ => Ok(!failed_before),
    };
    let run_it = match run_it {
        Ok(b) => b,
        Err(e) => {
            let a = logger.open(Some(root), &title);
            logger.error(&a, &e);
            logger.close(&a, ActivityStatus::Failed);
            return StepResult {
                failure: Some(format!("Step '{}' failed: {e}", step.name)),
                detail: e,
                canceled: false,
            };
        }
    };
    if !run_it {
        let a = logger.skipped(Some(root), &title);
        logger.verbose(
            &a,
            match step.condition.as_str() {
                "Variable" => "Skipped because the step's run condition is false",
                "Failure" => "Skipped because this step runs only when a previous step failed",
                _ => "Skipped because a previous step failed",
            },
        );
        return StepResult::default();
    }
    let step_act = logger.open(Some(root), &title);
    let (failed, canceled) =
        run_units(env, step, number, &step_act, per_target_expr, failed_before).await;
    if canceled {
        logger.close(&step_act, ActivityStatus::Canceled);
        StepResult {
            canceled: true,
            ..StepResult::default()
        }
    } else if let Some(msg) = failed {
        logger.line(&step_act, LogCategory::Error, &msg);
        logger.close(&step_act, ActivityStatus::Failed);
        StepResult {
            failure: Some(format!("Step '{}' failed: {msg}", step.name)),
            detail: msg,
            canceled: false,
        }
    } else {
        logger.close(&step_act, ActivityStatus::Success);
        StepResult::default()
    }
}

/// One action of a unit.
struct Child<'a> {
    action: &'a DeploymentAction,
    /// 1-based position among the step's actions when it has several, else 0.
    child: usize,
}

/// Runs a step's actions: per target, the actions in order (a rolling unit), at most the
/// window's targets at once. Returns the first failure and whether it was canceled.
async fn run_units(
    env: &StepEnv<'_>,
    step: &DeploymentStep,
    number: usize,
    step_act: &Activity,
    per_target_expr: Option<String>,
    failed_before: bool,
) -> (Option<String>, bool) {
    let (ex, ctx, logger) = (env.ex, env.ctx, env.logger);
    let several = step.actions.len() > 1;
    let mut children: Vec<Child> = Vec::new();
    for (ai, action) in step.actions.iter().enumerate() {
        if action.is_disabled {
            continue;
        }
        if ctx.deployment.skip_actions.contains(&action.id) {
            let a = logger.skipped(Some(step_act), &action.name);
            logger.verbose(&a, "Skipped because the deployment excludes this step");
            continue;
        }
        if !action_applies(action, ctx) {
            let a = logger.skipped(Some(step_act), &action.name);
            logger.verbose(
                &a,
                &format!(
                    "Skipped because the step does not run in {} or in this channel",
                    ctx.environment.name
                ),
            );
            continue;
        }
        if let Some(why) = tenant_skip_reason(action, ctx) {
            let a = logger.skipped(Some(step_act), &action.name);
            logger.info(&a, &why);
            continue;
        }
        children.push(Child {
            action,
            child: if several { ai + 1 } else { 0 },
        });
    }
    if children.is_empty() {
        return (None, false);
    }
    // Where each action runs; the same targets for every action of the step (roles are the
    // step's), so units are formed per target.
    let mut placements: Vec<Vec<Placement>> = Vec::new();
    for c in &children {
        match resolve_targets(ex, ctx, step, c.action, logger, step_act) {
            Ok(p) => placements.push(p),
            Err(msg) => return (Some(msg), false),
        }
    }
    let n = placements.iter().map(Vec::len).min().unwrap_or(0);
    let mut units: Vec<Vec<(usize, Placement)>> = (0..n).map(|_| Vec::new()).collect();
    for (ci, ps) in placements.into_iter().enumerate() {
        for (ti, p) in ps.into_iter().take(n).enumerate() {
            units[ti].push((ci, p));
        }
    }
    let window = {
        let d = env.dict(step, None, number, 0, None);
        step_window(
            step,
            units.len(),
            d.get_value("Octopus.Action.MaxParallelism"),
        )
    };
    let window_sem = tokio::sync::Semaphore::new(window);
    let runs = units.into_iter().map(|unit| {
        let (window_sem, children, per_target_expr) = (&window_sem, &children, &per_target_expr);
        async move {
            let _window = window_sem.acquire().await.ok();
            let _slot = ex.target_slots.acquire().await.ok();
            let machine = unit.first().and_then(|(_, (m, _))| m.clone());
            let _lock = match &machine {
                Some(m) => {
                    let d = env.dict(step, None, number, 0, Some(m));
                    if bypass_mutex(&d) {
                        None
                    } else {
                        Some(ex.lock_target(&m.id, &m.name, logger, step_act).await)
                    }
                }
                None => None,
            };
            if env.cancel.is_cancelled() {
                return ActionResult::Canceled;
            }
            if let Some(expr) = per_target_expr {
                let d = env.dict(step, None, number, 0, machine.as_ref());
                let what = format!("step '{}'", step.name);
                match evaluate_condition(&what, expr, &d) {
                    Ok(true) => {}
                    Ok(false) => {
                        let name = machine.as_ref().map(|m| m.name.as_str()).unwrap_or("");
                        let a = logger.skipped(Some(step_act), name);
                        logger.verbose(
                            &a,
                            &format!(
                                "Skipped on {name} because the step's run condition is false for this target"
                            ),
                        );
                        return ActionResult::Ok;
                    }
                    Err(e) => return ActionResult::Failed(e),
                }
            }
            let mut unit_failed: Option<ActionResult> = None;
            for (ci, (m, target)) in &unit {
                let c = &children[*ci];
                if m.as_ref().is_some_and(|m| ctx.is_excluded(&m.id)) {
                    let a = logger.skipped(Some(step_act), &c.action.name);
                    logger.verbose(
                        &a,
                        &format!("Skipped on {} because it was excluded from the deployment", target.name()),
                    );
                    continue;
                }
                let failed_here = unit_failed.is_some();
                let skip = |why: &str| {
                    let a = logger.skipped(Some(step_act), &c.action.name);
                    logger.verbose(&a, &format!("Skipped on {} because {why}", target.name()));
                };
                let condition = if several {
                    c.action.condition.as_str()
                } else {
                    "Success"
                };
                let dict = match child_decision(condition, failed_before, failed_here) {
                    ChildDecision::Skip(why) => {
                        skip(why);
                        continue;
                    }
                    ChildDecision::Run => {
                        env.dict(step, Some(c.action), number, c.child, m.as_ref())
                    }
                    ChildDecision::Evaluate => {
                        let dict = env.dict(step, Some(c.action), number, c.child, m.as_ref());
                        let expr = action_expression(c.action);
                        let what = format!("step '{}'", c.action.name);
                        match evaluate_condition(&what, &expr, &dict) {
                            Ok(true) => dict,
                            Ok(false) => {
                                skip("the step's run condition is false");
                                continue;
                            }
                            Err(e) => {
                                unit_failed.get_or_insert(ActionResult::Failed(e));
                                continue;
                            }
                        }
                    }
                };
                let (result, out) =
                    run_with_retries(env, step_act, c, number, m.as_ref(), target, &dict).await;
                if let Ok(mut o) = env.outputs.lock() {
                    record_outputs(&mut o, c.action, out);
                }
                match result {
                    ActionResult::Ok => {}
                    ActionResult::Canceled => return ActionResult::Canceled,
                    failed @ ActionResult::Failed(_) => {
                        unit_failed.get_or_insert(failed);
                    }
                }
            }
            unit_failed.unwrap_or(ActionResult::Ok)
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let mut failed = None;
    let mut canceled = false;
    for r in results {
        match r {
            ActionResult::Ok => {}
            ActionResult::Canceled => canceled = true,
            ActionResult::Failed(msg) => {
                if failed.is_none() {
                    failed = Some(msg);
                }
            }
        }
    }
    (failed, canceled)
}

/// Step types a failure of which never raises guided failure (they ask a person already, or
/// are not on a target).
fn never_guided(action_type: &str) -> bool {
    matches!(action_type, "Octopus.Manual")
}

/// A person's answer to a guided failure.
enum Guidance {
    Fail,
    Retry(String),
    Ignore(String),
    Exclude(String),
    Withdrawn,
}

/// Raises a guided-failure interruption for a failed action and waits for the answer. A
/// required step is offered only Fail and Retry; Exclude is offered only on a deployment target.
async fn ask_guidance(
    env: &StepEnv<'_>,
    step_act: &Activity,
    action: &DeploymentAction,
    machine: Option<&Machine>,
    target_name: &str,
    msg: &str,
) -> Guidance {
    use ferry_domain::interruption::Choice;
    let choice = |v: &str, t: &str, confirm: bool| Choice {
        value: v.to_string(),
        text: t.to_string(),
        requires_confirmation: confirm,
    };
    let mut choices = vec![
        choice("Fail", "Fail", true),
        choice("Retry", "Retry", false),
    ];
    if !action.is_required {
        choices.push(choice("Ignore", "Ignore", true));
        if machine.is_some() {
            choices.push(choice("Exclude", "Exclude machine from deployment", true));
        }
    }
    let d = &env.ctx.deployment;
    let mut related = vec![
        d.id.clone(),
        d.project_id.clone(),
        d.environment_id.clone(),
        d.release_id.clone(),
    ];
    related.extend(d.tenant_id.clone());
    related.extend(machine.map(|m| m.id.clone()));
    let ask = crate::interruptions::Ask {
        space_id: env.ctx.release.space_id.clone(),
        task_id: env.task.id.clone(),
        correlation_id: step_act.id.clone(),
        kind: "GuidedFailure".to_string(),
        title: format!("{} failed on {target_name}", action.name),
        instructions: Some(msg.to_string()),
        choices,
        responsible_team_ids: Vec::new(),
        related_document_ids: related,
    };
    let logger = env.logger;
    let id = match crate::interruptions::raise(env.ex, &ask).await {
        Ok(id) => id,
        Err(e) => {
            logger.line(
                step_act,
                LogCategory::Error,
                &format!("Guided failure could not ask for guidance ({e}); failing"),
            );
            return Guidance::Fail;
        }
    };
    logger.line(
        step_act,
        LogCategory::Wait,
        &format!(
            "Guided failure: {} failed on {target_name}; waiting for someone to choose Fail, Retry, Ignore or Exclude ({id})",
            action.name
        ),
    );
    match crate::interruptions::wait(env.ex, &id, env.cancel).await {
        Ok(crate::interruptions::Answer::Submitted { result, by, .. }) => {
            let who = if by.display_name.is_empty() {
                by.username
            } else {
                by.display_name
            };
            match result.as_str() {
                "Retry" => Guidance::Retry(who),
                "Ignore" => Guidance::Ignore(who),
                "Exclude" => Guidance::Exclude(who),
                _ => Guidance::Fail,
            }
        }
        Ok(crate::interruptions::Answer::Withdrawn) => Guidance::Withdrawn,
        Err(e) => {
            logger.line(
                step_act,
                LogCategory::Error,
                &format!("Guided failure: {e}"),
            );
            Guidance::Fail
        }
    }
}

/// Runs one action on one target, under its execution timeout, retrying as configured.
async fn run_with_retries(
    env: &StepEnv<'_>,
    step_act: &Activity,
    c: &Child<'_>,
    number: usize,
    machine: Option<&Machine>,
    target: &std::sync::Arc<dyn crate::target::Target>,
    dict: &Dictionary,
) -> (ActionResult, ActionOutput) {
    let action = c.action;
    let logger = env.logger;
    let opts = template_options();
    let prop = |name: &str| -> Option<String> {
        // The variable `Octopus.Action[Name].X` overrides the action's property.
        let over = dict
            .get_value(&format!("Octopus.Action[{}].{name}", action.name))
            .map(str::to_string);
        over.or_else(|| {
            action
                .properties
                .get(&format!("Octopus.Action.{name}"))
                .cloned()
        })
        .map(|v| {
            if v.contains("#{") {
                ferry_template::render(&v, dict, &opts)
                    .map(|r| r.text)
                    .unwrap_or(v)
            } else {
                v
            }
        })
    };
    let policy = match retry_policy(
        &action.action_type,
        prop("AutoRetry.MaximumCount").as_deref(),
        prop("AutoRetry.MinimumBackoff").as_deref(),
    ) {
        Ok(p) => p,
        Err(e) => return (ActionResult::Failed(e), ActionOutput::default()),
    };
    let timeout = match execution_timeout(
        &action.action_type,
        prop("ExecutionTimeout.Minutes").as_deref(),
    ) {
        Ok(t) => t,
        Err(e) => return (ActionResult::Failed(e), ActionOutput::default()),
    };
    let mut attempt = 1u32;
    loop {
        let attempt_cancel = env.cancel.child_token();
        let run = ActionRun {
            ctx: env.ctx,
            ex: env.ex,
            logger,
            step_act,
            action,
            task: env.task,
            task_ref: env.task_ref,
            step_number: number,
            child: c.child,
            cancel: &attempt_cancel,
            target: target.as_ref(),
            machine,
            attempt,
        };
        let fut = run_action(run, dict);
        let (result, out) = match timeout {
            None => fut.await,
            Some(limit) => {
                tokio::pin!(fut);
                tokio::select! {
                    r = &mut fut => r,
                    _ = tokio::time::sleep(limit) => {
                        attempt_cancel.cancel();
                        let (r, out) = fut.await;
                        if env.cancel.is_cancelled() {
                            (r, out)
                        } else {
                            let msg = format!(
                                "{}: the step '{}' timed out after {} (Octopus.Action.ExecutionTimeout.Minutes); the script was canceled",
                                target.name(),
                                action.name,
                                minutes_text(limit)
                            );
                            logger.line(step_act, LogCategory::Error, &msg);
                            (ActionResult::Failed(msg), out)
                        }
                    }
                }
            }
        };
        let ActionResult::Failed(msg) = &result else {
            return (result, out);
        };
        if env.cancel.is_cancelled() {
            return (result, out);
        }
        if attempt >= policy.attempts {
            if !env.ctx.guided_failure() || never_guided(&action.action_type) {
                return (result, out);
            }
            let msg = msg.clone();
            match ask_guidance(env, step_act, action, machine, target.name(), &msg).await {
                Guidance::Retry(who) => {
                    attempt += 1;
                    logger.line(
                        step_act,
                        LogCategory::Warning,
                        &format!("{who} chose to retry {} on {}", action.name, target.name()),
                    );
                    continue;
                }
                Guidance::Ignore(who) => {
                    logger.line(
                        step_act,
                        LogCategory::Warning,
                        &format!(
                            "{who} chose to ignore the failure of {} on {}: {msg}",
                            action.name,
                            target.name()
                        ),
                    );
                    return (ActionResult::Ok, out);
                }
                Guidance::Exclude(who) => {
                    if let Some(m) = machine {
                        env.ctx.exclude(&m.id);
                    }
                    logger.line(
                        step_act,
                        LogCategory::Warning,
                        &format!(
                            "{who} excluded {} from the rest of the deployment after: {msg}",
                            target.name()
                        ),
                    );
                    return (ActionResult::Ok, out);
                }
                Guidance::Fail => return (result, out),
                Guidance::Withdrawn => return (ActionResult::Canceled, out),
            }
        }
        attempt += 1;
        logger.line(
            step_act,
            LogCategory::Warning,
            &format!(
                "{} failed on {}: {msg}. Attempt {attempt} of {} in {}",
                action.name,
                target.name(),
                policy.attempts,
                seconds_text(policy.backoff)
            ),
        );
        tokio::select! {
            _ = tokio::time::sleep(policy.backoff) => {}
            _ = env.cancel.cancelled() => return (ActionResult::Canceled, out),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn step(trigger: &str) -> DeploymentStep {
        DeploymentStep {
            start_trigger: trigger.to_string(),
            ..DeploymentStep::default()
        }
    }

    #[test]
    fn groups_follow_start_triggers() {
        let steps = [
            step("StartAfterPrevious"),
            step("StartWithPrevious"),
            step("StartWithPrevious"),
            step(""),
            step("StartWithPrevious"),
            step("StartAfterPrevious"),
        ];
        assert_eq!(
            step_groups(&steps),
            vec![vec![0, 1, 2], vec![3, 4], vec![5]]
        );
        // A first step that starts with "the previous" still opens the first group.
        assert_eq!(
            step_groups(&[step("StartWithPrevious"), step("StartWithPrevious")]),
            vec![vec![0, 1]]
        );
        assert!(step_groups(&[]).is_empty());
    }

    #[test]
    fn max_parallelism_defaults_to_ten() {
        assert_eq!(max_parallel_steps(None), 10);
        assert_eq!(max_parallel_steps(Some("0")), 10);
        assert_eq!(max_parallel_steps(Some("x")), 10);
        assert_eq!(max_parallel_steps(Some(" 3 ")), 3);
    }

    #[test]
    fn rolling_window_from_the_step_then_the_variable_then_ten() {
        let mut s = step("");
        assert_eq!(super::super::step_window(&s, 25, None), 10);
        assert_eq!(super::super::step_window(&s, 4, None), 4);
        assert_eq!(super::super::step_window(&s, 25, Some("3")), 3);
        s.properties
            .insert("Octopus.Action.MaxParallelism".into(), "2".into());
        assert_eq!(super::super::step_window(&s, 5, Some("3")), 2);
        assert_eq!(super::super::step_window(&s, 0, None), 1);
    }

    #[test]
    fn child_conditions() {
        use ChildDecision::*;
        assert_eq!(child_decision("Success", false, false), Run);
        assert_eq!(child_decision("", true, false), Run);
        assert!(matches!(child_decision("Success", false, true), Skip(_)));
        assert!(matches!(child_decision("Variable", false, true), Skip(_)));
        assert_eq!(child_decision("Variable", false, false), Evaluate);
        assert_eq!(child_decision("Always", false, true), Run);
        assert_eq!(child_decision("Failure", false, true), Run);
        assert_eq!(child_decision("Failure", true, false), Run);
        assert!(matches!(child_decision("Failure", false, false), Skip(_)));
    }

    #[test]
    fn retry_policies() {
        let p = retry_policy("Octopus.Script", Some("2"), Some("0.5")).unwrap();
        assert_eq!(p.attempts, 3);
        assert_eq!(p.backoff, Duration::from_millis(500));
        let p = retry_policy("Octopus.Script", Some("3"), None).unwrap();
        assert_eq!((p.attempts, p.backoff), (4, Duration::from_secs(15)));
        assert_eq!(
            retry_policy("Octopus.Script", None, None).unwrap().attempts,
            1
        );
        assert_eq!(
            retry_policy("Octopus.Script", Some("0"), None)
                .unwrap()
                .attempts,
            1
        );
        assert_eq!(
            retry_policy("Octopus.Manual", Some("3"), None)
                .unwrap()
                .attempts,
            1
        );
        let e = retry_policy("Octopus.Script", Some("three"), None).unwrap_err();
        assert!(
            e.contains("Octopus.Action.AutoRetry.MaximumCount 'three'"),
            "{e}"
        );
        let e = retry_policy("Octopus.Script", Some("1"), Some("-1")).unwrap_err();
        assert!(e.contains("MinimumBackoff"), "{e}");
    }

    #[test]
    fn timeouts() {
        assert_eq!(execution_timeout("Octopus.Script", None).unwrap(), None);
        assert_eq!(
            execution_timeout("Octopus.Script", Some("0")).unwrap(),
            None
        );
        assert_eq!(
            execution_timeout("Octopus.Script", Some("10")).unwrap(),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            execution_timeout("Octopus.Script", Some("0.05")).unwrap(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            execution_timeout("Octopus.Manual", Some("1")).unwrap(),
            None
        );
        assert!(execution_timeout("Octopus.Script", Some("soon")).is_err());
        assert_eq!(minutes_text(Duration::from_secs(60)), "1 minute");
        assert_eq!(minutes_text(Duration::from_secs(600)), "10 minutes");
        assert_eq!(minutes_text(Duration::from_secs(3)), "0.05 minutes");
        assert_eq!(seconds_text(Duration::from_secs(15)), "15s");
        assert_eq!(seconds_text(Duration::from_millis(500)), "0.5s");
    }

    #[test]
    fn conditions_parse_strictly_and_name_the_position() {
        let mut d = Dictionary::default();
        d.set("Flag", "True");
        assert!(evaluate_condition("step 'S'", "#{Flag}", &d).unwrap());
        assert!(!evaluate_condition("step 'S'", "#{if Flag == \"No\"}x#{/if}", &d).unwrap());
        let e = evaluate_condition("step 'S'", "#{if Flag}x", &d).unwrap_err();
        assert!(e.contains("does not parse: `#{if Flag}x`"), "{e}");
        assert!(e.contains("line 1, column"), "{e}");
        assert!(names_machine(
            "#{if Octopus.Action[A].Output[#{Octopus.Machine.Name}].Ok == \"True\"}True#{/if}"
        ));
        assert!(!names_machine("#{Flag}"));
    }
}
