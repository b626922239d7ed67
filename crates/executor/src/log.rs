//! The task log writer. A deployment's log is domain data: a tree of activities (task → step →
//! target) with timed, levelled lines, kept in the store and readable while the task runs.
//!
//! Writes go through one background writer per task that batches them (one transaction per
//! batch), so a chatty script costs few commits. Every line passes the secret masker first.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ferry_domain::task::{ActivityStatus, LogCategory};
use ferry_domain::time::now_ms;
use ferry_store::{ActivityRow, Db, NewLogLine};
use tokio::sync::{mpsc, oneshot};

/// Replaces secret values in log text. Empty until sensitive variables exist.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    /// Values shorter than 4 characters are not masked (as in Octopus): masking them would hide
    /// ordinary text.
    pub fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|s| s.chars().count() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Masker { secrets }
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "********");
            }
        }
        out
    }
}

enum Msg {
    Activity(ActivityRow),
    Line(NewLogLine),
    Flush(oneshot::Sender<()>),
}

/// A handle for writing one task's log. Cheap to clone.
#[derive(Clone)]
pub struct TaskLogger {
    task_id: Arc<str>,
    tx: mpsc::UnboundedSender<Msg>,
    masker: Arc<Masker>,
    order: Arc<AtomicI64>,
    warnings: Arc<AtomicI64>,
}

/// One node of the log tree.
#[derive(Clone, Debug)]
pub struct Activity {
    pub id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub started: i64,
    sort_order: i64,
}

impl TaskLogger {
    /// Starts the writer for `task_id`.
    pub fn start(db: Db, task_id: &str, masker: Masker) -> TaskLogger {
        let (tx, rx) = mpsc::unbounded_channel();
        let task: Arc<str> = Arc::from(task_id);
        tokio::spawn(writer(db, task.clone(), rx));
        TaskLogger {
            task_id: task,
            tx,
            masker: Arc::new(masker),
            order: Arc::new(AtomicI64::new(0)),
            warnings: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Replaces the masker (when the secrets of a deployment become known).
    pub fn set_masker(&mut self, masker: Masker) {
        self.masker = Arc::new(masker);
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Opens a child activity (status Running).
    pub fn open(&self, parent: Option<&Activity>, name: &str) -> Activity {
        let n = self.order.fetch_add(1, Ordering::Relaxed);
        let id = match parent {
            Some(p) => format!("{}/{}", p.id, n),
            None => format!("{}_{}", self.task_id, n),
        };
        let a = Activity {
            id,
            parent_id: parent.map(|p| p.id.clone()),
            name: self.masker.mask(name),
            started: now_ms(),
            sort_order: n,
        };
        self.send_activity(&a, ActivityStatus::Running, None);
        a
    }

    /// Closes an activity with a final status.
    pub fn close(&self, a: &Activity, status: ActivityStatus) {
        self.send_activity(a, status, Some(now_ms()));
    }

    /// Records an activity that did not run (e.g. a skipped step).
    pub fn skipped(&self, parent: Option<&Activity>, name: &str) -> Activity {
        let a = self.open(parent, name);
        self.close(&a, ActivityStatus::Skipped);
        a
    }

    fn send_activity(&self, a: &Activity, status: ActivityStatus, ended: Option<i64>) {
        let _ = self.tx.send(Msg::Activity(ActivityRow {
            task_id: self.task_id.to_string(),
            activity_id: a.id.clone(),
            parent_id: a.parent_id.clone(),
            name: a.name.clone(),
            status: status.as_str().to_string(),
            started: Some(a.started),
            ended,
            sort_order: a.sort_order,
        }));
    }

    /// Writes one line under `activity`.
    pub fn line(&self, activity: &Activity, category: LogCategory, message: &str) {
        if matches!(
            category,
            LogCategory::Warning | LogCategory::Error | LogCategory::Fatal
        ) {
            self.warnings.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.tx.send(Msg::Line(NewLogLine {
            activity_id: activity.id.clone(),
            occurred_at: now_ms(),
            category: category.as_str().to_string(),
            message: self.masker.mask(message),
        }));
    }

    pub fn info(&self, a: &Activity, m: &str) {
        self.line(a, LogCategory::Info, m);
    }
    pub fn verbose(&self, a: &Activity, m: &str) {
        self.line(a, LogCategory::Verbose, m);
    }
    pub fn error(&self, a: &Activity, m: &str) {
        self.line(a, LogCategory::Error, m);
    }

    /// Whether any warning or error has been logged.
    pub fn has_warnings_or_errors(&self) -> bool {
        self.warnings.load(Ordering::Relaxed) > 0
    }

    /// Waits until everything sent so far is in the store.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(db: Db, task_id: Arc<str>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut activities: Vec<ActivityRow> = Vec::new();
    let mut lines: Vec<NewLogLine> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let Some(first) = rx.recv().await else {
            break;
        };
        let take = |m: Msg,
                    activities: &mut Vec<ActivityRow>,
                    lines: &mut Vec<NewLogLine>,
                    waiters: &mut Vec<oneshot::Sender<()>>| match m {
            Msg::Activity(a) => {
                if let Some(existing) = activities
                    .iter_mut()
                    .find(|x| x.activity_id == a.activity_id)
                {
                    *existing = a;
                } else {
                    activities.push(a);
                }
            }
            Msg::Line(l) => lines.push(l),
            Msg::Flush(w) => waiters.push(w),
        };
        take(first, &mut activities, &mut lines, &mut waiters);
        // Gather what arrives within a short window into the same transaction.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        while waiters.is_empty() && lines.len() < 500 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => take(m, &mut activities, &mut lines, &mut waiters),
                Ok(None) | Err(_) => break,
            }
        }
        while let Ok(m) = rx.try_recv() {
            take(m, &mut activities, &mut lines, &mut waiters);
        }
        if !activities.is_empty() || !lines.is_empty() {
            let mut attempt = 0;
            loop {
                match db.write_task_log(&task_id, &activities, &lines).await {
                    Ok(()) => break,
                    Err(e) => {
                        attempt += 1;
                        tracing::warn!(task = %task_id, error = %e, attempt, "writing the task log failed");
                        if attempt >= 5 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    }
                }
            }
            activities.clear();
            lines.clear();
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_long_values_only() {
        let m = Masker::new(vec!["abc".into(), "s3cr3t-value".into(), "s3cr3t".into()]);
        assert_eq!(
            m.mask("x s3cr3t-value y s3cr3t abc"),
            "x ******** y ******** abc"
        );
    }
}
