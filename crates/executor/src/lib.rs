//! The task worker: claims queued tasks from the store under a lease, renews the lease by
//! heartbeat, runs each task (a deployment walks its release's process through `Target`s), and
//! records the outcome fenced by the lease's epoch. A reaper ends tasks whose node died.

pub mod artifacts;
pub mod bootstrap;
mod deploy;
pub mod deploy_package;
pub mod email;
pub mod health;
pub mod interruptions;
pub mod log;
pub mod manual;
pub mod package_ops;
pub mod package_step;
pub mod script_modules;
pub mod service_message;
pub mod target;
mod templates;
pub mod variables;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_domain::task::TaskState;
use ferry_domain::time::now_ms;
use ferry_store::{Claim, Db, EventRow, NewLogLine, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use target::{LocalTarget, Target, TargetProvider};

/// Executor settings.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// This node's name; it owns the leases it takes.
    pub node: String,
    /// At most this many tasks run at once on this node.
    pub task_cap: usize,
    /// At most this many (action × target) runs at once on this node, across all tasks.
    pub target_cap: usize,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Where the built-in worker makes working directories.
    pub work_dir: PathBuf,
    /// The server's public URL (for `Octopus.Web.ServerUri`).
    pub server_uri: String,
    /// Opens sensitive values for the scripts that use them.
    pub master_key: Arc<ferry_crypto::MasterKey>,
    /// The built-in worker's package cache (packages by hash).
    pub package_cache: PathBuf,
    /// Where the built-in worker installs packages: `<apps root>/<environment>/<id>/<version>`.
    pub apps_root: PathBuf,
}

/// Why a running task was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Canceled,
    /// Another node took the lease: this node must not write anything more.
    Fenced,
    Shutdown,
}

struct Running {
    cancel: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

/// The task worker of one server node.
pub struct Executor {
    db: Db,
    cfg: ExecutorConfig,
    wake: Notify,
    running: Mutex<HashMap<String, Running>>,
    shutdown: CancellationToken,
    local: LocalTarget,
    /// The built-in feed's files.
    blobs: Option<Arc<dyn ferry_store::blobs::BlobStore>>,
    /// Deployment targets other than the built-in worker (agents), when wired.
    targets: std::sync::RwLock<Option<Arc<dyn TargetProvider>>>,
    /// The global cap on (action × target) runs at once on this node.
    target_slots: tokio::sync::Semaphore,
    /// One deployment at a time per target: a mutex per machine id.
    target_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Whose turn it is among a pool's workers.
    pub(crate) worker_turn: std::sync::atomic::AtomicUsize,
    /// Tasks this node has finished (for lifecycle auto-deployment and other followers).
    finished: tokio::sync::broadcast::Sender<FinishedTask>,
}

/// A task this node finished and recorded.
#[derive(Clone, Debug)]
pub struct FinishedTask {
    pub task_id: String,
    pub space_id: String,
    pub deployment_id: Option<String>,
    pub state: TaskState,
}

/// Default global cap on concurrent (action × target) runs per node.
pub const DEFAULT_TARGET_CAP: usize = 1000;

impl Executor {
    pub fn new(db: Db, cfg: ExecutorConfig) -> Arc<Executor> {
        Executor::with_blobs(db, cfg, None)
    }

    /// An executor that can deploy packages from the built-in feed's files.
    pub fn with_blobs(
        db: Db,
        cfg: ExecutorConfig,
        blobs: Option<Arc<dyn ferry_store::blobs::BlobStore>>,
    ) -> Arc<Executor> {
        let cfg_target_cap = cfg.target_cap.max(1);
        let local = LocalTarget::new(cfg.work_dir.clone()).with_roots(package_ops::Roots {
            package_cache: cfg.package_cache.clone(),
            apps_root: cfg.apps_root.clone(),
        });
        Arc::new(Executor {
            db,
            cfg,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            local,
            blobs,
            targets: std::sync::RwLock::new(None),
            target_slots: tokio::sync::Semaphore::new(cfg_target_cap),
            target_locks: Mutex::new(HashMap::new()),
            worker_turn: std::sync::atomic::AtomicUsize::new(0),
            finished: tokio::sync::broadcast::channel(1024).0,
        })
    }

    /// Tasks finished by this node from now on, in the order they were recorded. A receiver
    /// that falls more than 1024 behind is told how many it missed (`Lagged`).
    pub fn subscribe_finished(&self) -> tokio::sync::broadcast::Receiver<FinishedTask> {
        self.finished.subscribe()
    }

    /// Wires deployment targets (the agent transport) in.
    pub fn set_targets(&self, provider: Arc<dyn TargetProvider>) {
        if let Ok(mut t) = self.targets.write() {
            *t = Some(provider);
        }
    }

    pub(crate) fn targets(&self) -> Option<Arc<dyn TargetProvider>> {
        self.targets.read().ok().and_then(|t| t.clone())
    }

    pub(crate) fn local_target(&self) -> Arc<dyn Target> {
        Arc::new(self.local.clone())
    }

    /// Waits for the target's deployment mutex (logging when another deployment holds it).
    pub(crate) async fn lock_target(
        &self,
        machine_id: &str,
        machine_name: &str,
        logger: &log::TaskLogger,
        activity: &log::Activity,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.target_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks
                .entry(machine_id.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        match m.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                logger.info(
                    activity,
                    &format!(
                        "Waiting for another deployment to finish on {machine_name} (one deployment at a time per target)"
                    ),
                );
                m.lock_owned().await
            }
        }
    }

    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    /// Tells the worker a task was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops a task running on this node at once (the store already says `Cancelling`).
    pub fn cancel_local(&self, task_id: &str) {
        if let Ok(map) = self.running.lock() {
            if let Some(r) = map.get(task_id) {
                stop(r, StopReason::Canceled);
            }
        }
    }

    /// The number of tasks running on this node.
    pub fn running_count(&self) -> usize {
        self.running.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Ends tasks that this node's previous life left executing, then those whose lease expired.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let reason = format!(
            "The server node '{}' stopped while this task was executing (crash or restart). The task was \
             not resumed because its steps may have had side effects; deploy again to retry.",
            self.cfg.node
        );
        let ended = self
            .db
            .fail_orphaned_tasks(Some(&self.cfg.node), now_ms(), &reason)
            .await?;
        for t in &ended {
            self.record_orphan(t, &reason).await;
        }
        Ok(ended.len())
    }

    async fn reap_expired(&self) -> Result<usize, StoreError> {
        let reason = "The server node running this task stopped renewing its lease (it crashed or lost \
                      the database). The task was ended so that nothing stays stuck; deploy again to retry.";
        let ended = self.db.fail_orphaned_tasks(None, now_ms(), reason).await?;
        for t in &ended {
            self.record_orphan(t, reason).await;
        }
        Ok(ended.len())
    }

    async fn record_orphan(&self, t: &ferry_store::TaskRow, reason: &str) {
        let now = now_ms();
        let _ = self.db.close_open_activities(&t.id, "Failed", now).await;
        let activities = self.db.task_activities(&t.id).await.unwrap_or_default();
        let root = activities
            .iter()
            .find(|a| a.parent_id.is_none())
            .map(|a| a.activity_id.clone())
            .unwrap_or_else(|| format!("{}_0", t.id));
        let _ = self
            .db
            .write_task_log(
                &t.id,
                &[],
                &[NewLogLine {
                    activity_id: root,
                    occurred_at: now,
                    category: "Fatal".to_string(),
                    message: reason.to_string(),
                }],
            )
            .await;
        let mut related = vec![t.id.clone()];
        related.extend(t.deployment_id.clone());
        related.extend(t.project_id.clone());
        related.extend(t.environment_id.clone());
        let _ = self
            .db
            .insert_event(&EventRow {
                id: String::new(),
                seq: 0,
                space_id: t.space_id.clone(),
                category: if t.deployment_id.is_some() {
                    "DeploymentFailed".to_string()
                } else {
                    "TaskFailed".to_string()
                },
                message: format!(
                    "Task {} ({}) ended as Failed: {reason}",
                    t.id, t.description
                ),
                username: "system".to_string(),
                user_id: "system".to_string(),
                occurred: now,
                related_document_ids: related.join(","),
                details: "{}".to_string(),
                ip_address: String::new(),
            })
            .await;
    }

    /// Runs the worker until `shutdown` is called. Claims tasks up to the cap, runs each on its
    /// own tokio task, and reaps expired leases of other nodes now and then.
    pub async fn run(self: Arc<Self>) {
        let mut last_reap = 0i64;
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let mut claimed_any = false;
            while self.running_count() < self.cfg.task_cap {
                let now = now_ms();
                let lease_until = now + lease_ms(&self.cfg);
                match self.db.claim_task(&self.cfg.node, now, lease_until).await {
                    Ok(Some(claim)) => {
                        claimed_any = true;
                        self.clone().start(claim);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "claiming a task failed");
                        break;
                    }
                }
            }
            let now = now_ms();
            if now - last_reap > 10_000 {
                last_reap = now;
                if let Err(e) = self.reap_expired().await {
                    tracing::warn!(error = %e, "reaping expired task leases failed");
                }
            }
            if claimed_any && self.running_count() < self.cfg.task_cap {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
    }

    fn start(self: Arc<Self>, claim: Claim) {
        let cancel = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        if let Ok(mut map) = self.running.lock() {
            map.insert(
                claim.task.id.clone(),
                Running {
                    cancel: cancel.clone(),
                    reason: reason.clone(),
                },
            );
        }
        tokio::spawn(async move {
            let id = claim.task.id.clone();
            let heartbeat = tokio::spawn(self.clone().heartbeat(claim.clone()));
            self.execute(claim, cancel, reason).await;
            heartbeat.abort();
            if let Ok(mut map) = self.running.lock() {
                map.remove(&id);
            }
            self.wake();
        });
    }

    async fn heartbeat(self: Arc<Self>, claim: Claim) {
        let every = (self.cfg.lease / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            let now = now_ms();
            let r = self
                .db
                .renew_lease(
                    &claim.task.id,
                    &claim.node,
                    claim.epoch,
                    now,
                    now + lease_ms(&self.cfg),
                )
                .await;
            let why = match r {
                Ok(Some((_, true))) => Some(StopReason::Canceled),
                Ok(Some((_, false))) => None,
                Ok(None) => Some(StopReason::Fenced),
                Err(e) => {
                    tracing::warn!(task = %claim.task.id, error = %e, "renewing a task lease failed");
                    None
                }
            };
            if let Some(why) = why {
                if let Ok(map) = self.running.lock() {
                    if let Some(r) = map.get(&claim.task.id) {
                        stop(r, why);
                    }
                }
                if why == StopReason::Fenced {
                    return;
                }
            }
        }
    }

    async fn execute(
        &self,
        claim: Claim,
        cancel: CancellationToken,
        reason: Arc<Mutex<Option<StopReason>>>,
    ) {
        let task = &claim.task;
        // A cancel may have arrived between queueing and claiming.
        if task.cancel_requested != 0 {
            stop_with(&cancel, &reason, StopReason::Canceled);
        }
        let expired = task.queue_time_expiry.is_some_and(|e| e < now_ms());
        let outcome = match task.name.as_str() {
            _ if expired => deploy::Outcome {
                state: TaskState::TimedOut,
                error: Some(format!(
                    "The task did not start before its expiry time ({}), so it was not run",
                    ferry_domain::time::format_ms(task.queue_time_expiry.unwrap_or_default())
                )),
                has_warnings: true,
            },
            "Deploy" => deploy::run(self, task, cancel.clone()).await,
            "Health" => health::run(self, task, cancel.clone()).await,
            other => deploy::Outcome::failed(format!("Ferry cannot run tasks of type '{other}'")),
        };
        let why = reason.lock().ok().and_then(|r| *r);
        let (state, message) = match why {
            Some(StopReason::Fenced) => {
                tracing::warn!(task = %task.id, "lost the task lease to another node; not recording an outcome");
                return;
            }
            Some(StopReason::Canceled) => {
                (TaskState::Canceled, "The task was canceled".to_string())
            }
            Some(StopReason::Shutdown) => (
                TaskState::Failed,
                "The server shut down while this task was executing".to_string(),
            ),
            None => (outcome.state, outcome.error.unwrap_or_default()),
        };
        let now = now_ms();
        match self
            .db
            .finish_task(
                &task.id,
                &claim.node,
                claim.epoch,
                state.as_str(),
                &message,
                outcome.has_warnings || state != TaskState::Success,
                now,
            )
            .await
        {
            Ok(true) => {
                // Nobody listening is fine.
                let _ = self.finished.send(FinishedTask {
                    task_id: task.id.clone(),
                    space_id: task.space_id.clone(),
                    deployment_id: task.deployment_id.clone(),
                    state,
                });
            }
            Ok(false) => {
                tracing::warn!(task = %task.id, "task lease lost before the outcome was recorded")
            }
            Err(e) => {
                tracing::error!(task = %task.id, error = %e, "recording the task outcome failed")
            }
        }
        let category = match (task.deployment_id.is_some(), state) {
            (true, TaskState::Success) => "DeploymentSucceeded",
            (true, TaskState::Canceled) => "TaskCanceled",
            (_, TaskState::TimedOut) => "TaskTimedOut",
            (true, _) => "DeploymentFailed",
            (false, TaskState::Success) => "TaskSucceeded",
            (false, TaskState::Canceled) => "TaskCanceled",
            (false, _) => "TaskFailed",
        };
        let mut related = vec![task.id.clone()];
        related.extend(task.deployment_id.clone());
        related.extend(task.project_id.clone());
        related.extend(task.environment_id.clone());
        let msg = if message.is_empty() {
            format!("{} ended as {}", task.description, state.as_str())
        } else {
            format!(
                "{} ended as {}: {message}",
                task.description,
                state.as_str()
            )
        };
        if let Err(e) = self
            .db
            .insert_event(&EventRow {
                id: String::new(),
                seq: 0,
                space_id: task.space_id.clone(),
                category: category.to_string(),
                message: msg,
                username: "system".to_string(),
                user_id: "system".to_string(),
                occurred: now,
                related_document_ids: related.join(","),
                details: "{}".to_string(),
                ip_address: String::new(),
            })
            .await
        {
            tracing::warn!(task = %task.id, error = %e, "recording the task event failed");
        }
    }

    /// Stops claiming, asks running tasks to stop, and waits up to `grace` for them to record
    /// their outcome.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        if let Ok(map) = self.running.lock() {
            for r in map.values() {
                stop(r, StopReason::Shutdown);
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.running_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn lease_ms(cfg: &ExecutorConfig) -> i64 {
    i64::try_from(cfg.lease.as_millis()).unwrap_or(30_000)
}

fn stop(r: &Running, why: StopReason) {
    stop_with(&r.cancel, &r.reason, why);
}

fn stop_with(cancel: &CancellationToken, reason: &Mutex<Option<StopReason>>, why: StopReason) {
    if let Ok(mut g) = reason.lock() {
        if g.is_none() {
            *g = Some(why);
        }
    }
    cancel.cancel();
}
