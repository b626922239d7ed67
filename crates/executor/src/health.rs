//! Health checks (`Health` tasks): each machine named by the task is asked for its
//! capabilities and health through its `Target`; when its machine policy says `RunScript` and
//! has a Bash script, the script runs too. The result goes into the machine resource:
//!
//! - `Unavailable`: the target could not be reached (or refused our certificate).
//! - `Unhealthy`: it answered, but the health script failed.
//! - `HasWarnings`: it answered with warnings (low disk, the script wrote warnings to stderr).
//! - `Healthy`: otherwise.

use std::collections::HashMap;
use std::time::Duration;

use ferry_domain::task::{ActivityStatus, LogCategory, TaskState};
use ferry_domain::time::now_ms;
use ferry_domain::{Machine, MachinePolicy};
use ferry_store::{Db, DocQuery, TaskRow};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Executor;
use crate::deploy::Outcome;
use crate::log::{Activity, Masker, TaskLogger};
use crate::target::{ScriptOutcome, ScriptOutput, ScriptRequest, Stream, Syntax};

/// How long one machine's check may take.
const MACHINE_TIMEOUT: Duration = Duration::from_secs(60);

/// Queues a health check of the given machines (all of the space's when empty).
pub async fn queue(
    db: &Db,
    space_id: &str,
    machine_ids: &[String],
    description: &str,
    created_by: &str,
) -> Result<String, ferry_store::StoreError> {
    let mut tx = db.begin().await?;
    let seq = tx.next_seq("ServerTasks").await?;
    let id = format!("ServerTasks-{seq}");
    let now = now_ms();
    tx.insert_task(&TaskRow {
        id: id.clone(),
        seq,
        space_id: space_id.to_string(),
        name: "Health".to_string(),
        description: description.to_string(),
        state: "Queued".to_string(),
        arguments: json!({"MachineIds": machine_ids}).to_string(),
        project_id: None,
        environment_id: None,
        tenant_id: None,
        deployment_id: None,
        release_id: None,
        queue_time: now,
        queue_time_expiry: None,
        start_time: None,
        completed_time: None,
        last_updated: now,
        error_message: String::new(),
        has_warnings_or_errors: 0,
        lease_owner: None,
        lease_expires_at: None,
        epoch: 0,
        attempts: 0,
        queue_after: now,
        cancel_requested: 0,
        created_by: created_by.to_string(),
    })
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The result of checking one machine.
#[derive(Clone, Debug)]
struct Checked {
    status: &'static str,
    summary: String,
    os: String,
    version: String,
}

#[derive(Default)]
struct Collect {
    lines: std::sync::Mutex<Vec<(Stream, String)>>,
}

impl ScriptOutput for Collect {
    fn line(&self, stream: Stream, text: &str) {
        if let Ok(mut l) = self.lines.lock() {
            l.push((stream, text.to_string()));
        }
    }
}

async fn check(
    ex: &Executor,
    m: &Machine,
    policy: Option<&MachinePolicy>,
    task: &TaskRow,
    logger: &TaskLogger,
    act: &Activity,
    cancel: &CancellationToken,
) -> Checked {
    let unavailable = |why: String| Checked {
        status: "Unavailable",
        summary: why,
        os: String::new(),
        version: String::new(),
    };
    let Some(provider) = ex.targets() else {
        return unavailable("this server has no agent transport".into());
    };
    let target = match provider.target(m) {
        Ok(t) => t,
        Err(e) => return unavailable(e),
    };
    let info = match tokio::time::timeout(MACHINE_TIMEOUT, target.health()).await {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => return unavailable(e.to_string()),
        Err(_) => return unavailable(format!("no answer within {MACHINE_TIMEOUT:?}")),
    };
    logger.info(
        act,
        &format!(
            "{} answered: agent {} on {}, {} script(s) running",
            m.name, info.agent_version, info.os, info.running_scripts
        ),
    );
    let mut warnings = info.warnings.clone();
    let mut failed: Option<String> = None;
    let script = policy.and_then(|p| {
        let hc = &p.machine_health_check_policy;
        let bash = &hc.bash_health_check_policy;
        (hc.health_check_type == "RunScript" && bash.run_type == "Inline")
            .then(|| bash.script_body.clone().unwrap_or_default())
            .filter(|s| !s.trim().is_empty())
    });
    if let Some(body) = script {
        let out = Collect::default();
        let req = ScriptRequest {
            ticket: format!("{}-health-{}", task.id, m.id),
            task_id: task.id.clone(),
            epoch: u64::try_from(task.epoch).unwrap_or(0),
            syntax: Syntax::Bash,
            body,
            env: Vec::new(),
            variables: vec![
                ("Octopus.Machine.Name".to_string(), m.name.clone()),
                ("Octopus.Machine.Id".to_string(), m.id.clone()),
            ],
            cwd: None,
        };
        let r = tokio::time::timeout(
            MACHINE_TIMEOUT,
            target.run_script(req, &out, cancel.clone()),
        )
        .await;
        let lines = out.lines.lock().map(|l| l.clone()).unwrap_or_default();
        for (stream, text) in &lines {
            match stream {
                Stream::Stdout => logger.info(act, text),
                Stream::Stderr => {
                    logger.line(act, LogCategory::Warning, text);
                    warnings.push(text.clone());
                }
            }
        }
        match r {
            Ok(Ok(ScriptOutcome::Exited(0))) => {}
            Ok(Ok(ScriptOutcome::Exited(c))) => {
                failed = Some(format!("the health check script returned exit code {c}"))
            }
            Ok(Ok(ScriptOutcome::Canceled)) => {
                failed = Some("the health check was canceled".into())
            }
            Ok(Err(e)) => return unavailable(e.to_string()),
            Err(_) => {
                failed = Some(format!(
                    "the health check script ran over {MACHINE_TIMEOUT:?}"
                ))
            }
        }
    }
    let (status, summary) = match (failed, warnings.is_empty()) {
        (Some(f), _) => ("Unhealthy", f),
        (None, false) => (
            "HasWarnings",
            format!(
                "The machine is healthy, with warnings: {}",
                warnings.join("; ")
            ),
        ),
        (None, true) => ("Healthy", "The machine is healthy".to_string()),
    };
    Checked {
        status,
        summary,
        os: info.os,
        version: info.agent_version,
    }
}

/// Writes the check's result into the machine resource.
async fn record(db: &Db, id: &str, c: &Checked) -> Result<(), String> {
    let mut tx = db.begin().await.map_err(|e| e.to_string())?;
    let Some(mut row) = tx.get_doc(id).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let mut m: Machine = serde_json::from_str(&row.body).map_err(|e| e.to_string())?;
    m.health_status = c.status.to_string();
    m.status_summary = format!(
        "{} (checked {})",
        c.summary,
        ferry_domain::time::format_ms(now_ms())
    );
    m.status = if m.is_disabled {
        "Disabled".to_string()
    } else if c.status == "Unavailable" {
        "Offline".to_string()
    } else {
        "Online".to_string()
    };
    if !c.os.is_empty() {
        m.operating_system = c.os.clone();
        m.shell_name = "Bash".to_string();
        m.endpoint.tentacle_version_details = Some(json!({
            "UpgradeLocked": false, "Version": c.version, "UpgradeSuggested": false, "UpgradeRequired": false
        }));
    }
    row.body = serde_json::to_string(&m).map_err(|e| e.to_string())?;
    row.updated_at = now_ms();
    tx.update_doc(&row).await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}

pub(crate) async fn run(ex: &Executor, task: &TaskRow, cancel: CancellationToken) -> Outcome {
    let logger = TaskLogger::start(ex.db.clone(), &task.id, Masker::default());
    let root = logger.open(None, &task.description);
    let args: serde_json::Value = serde_json::from_str(&task.arguments).unwrap_or_default();
    let wanted: Vec<String> = args["MachineIds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let env = args["EnvironmentId"].as_str().map(str::to_string);
    // Deployment targets and workers alike.
    let mut machines: Vec<Machine> = Vec::new();
    for collection in ["Machines", "Workers"] {
        let mut q = DocQuery::new(collection);
        q.space_id = Some(task.space_id.clone());
        q.ids = wanted.clone();
        match ex.db.list_docs(&q).await {
            Ok((rows, _)) => machines.extend(
                rows.iter()
                    .filter_map(|r| serde_json::from_str::<Machine>(&r.body).ok())
                    .filter(|m| !m.is_disabled)
                    .filter(|m| env.as_ref().is_none_or(|e| m.environment_ids.contains(e))),
            ),
            Err(e) => {
                let msg = format!("could not read the machines: {e}");
                logger.line(&root, LogCategory::Fatal, &msg);
                logger.close(&root, ActivityStatus::Failed);
                logger.flush().await;
                return Outcome::failed(msg);
            }
        }
    }
    let mut policies: HashMap<String, MachinePolicy> = HashMap::new();
    for m in &machines {
        if !policies.contains_key(&m.machine_policy_id) {
            if let Ok(Some(d)) = ex.db.get_doc(&m.machine_policy_id).await {
                if let Ok(p) = serde_json::from_str::<MachinePolicy>(&d.body) {
                    policies.insert(m.machine_policy_id.clone(), p);
                }
            }
        }
    }
    logger.info(
        &root,
        &format!("Checking the health of {} machine(s)", machines.len()),
    );
    let checks = machines.iter().map(|m| {
        let (logger, root, policies, cancel) = (&logger, &root, &policies, &cancel);
        async move {
            let act = logger.open(Some(root), &m.name);
            let c = check(
                ex,
                m,
                policies.get(&m.machine_policy_id),
                task,
                logger,
                &act,
                cancel,
            )
            .await;
            let cat = match c.status {
                "Healthy" => LogCategory::Info,
                "HasWarnings" => LogCategory::Warning,
                _ => LogCategory::Error,
            };
            logger.line(
                &act,
                cat,
                &format!("{}: {} ({})", m.name, c.status, c.summary),
            );
            if let Err(e) = record(&ex.db, &m.id, &c).await {
                logger.line(
                    &act,
                    LogCategory::Error,
                    &format!("could not record the result: {e}"),
                );
            }
            logger.close(
                &act,
                match c.status {
                    "Healthy" => ActivityStatus::Success,
                    "HasWarnings" => ActivityStatus::SuccessWithWarning,
                    _ => ActivityStatus::Failed,
                },
            );
            c
        }
    });
    let results = futures_util::future::join_all(checks).await;
    let bad = results.iter().filter(|c| c.status != "Healthy").count();
    let status = if bad == 0 {
        ActivityStatus::Success
    } else {
        ActivityStatus::SuccessWithWarning
    };
    logger.info(
        &root,
        &format!(
            "{} of {} machine(s) healthy",
            results.len() - bad,
            results.len()
        ),
    );
    logger.close(&root, status);
    logger.flush().await;
    // A health check succeeds even when machines are not healthy (as in Octopus); the
    // machines carry the result.
    Outcome {
        state: TaskState::Success,
        error: None,
        has_warnings: bad > 0,
    }
}
