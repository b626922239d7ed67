//! Where user code runs. Every execution goes through the `Target` trait; the built-in worker
//! (`LocalTarget`) runs scripts as child processes on the server host, each in a fresh working
//! directory. Agents and SSH targets implement the same trait.
//!
//! Architecture invariant: the server never runs a user script except through a `Target`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;

use ferry_protocol::{PackageOp, PackageStageReply};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::package_ops::{PackageFile, Roots, Transferred};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Script languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Bash,
    Python,
}

impl Syntax {
    /// Parses `Octopus.Action.Script.Syntax`; absent means Bash on Linux.
    pub fn parse(s: Option<&str>) -> Result<Syntax, String> {
        match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("bash") => Ok(Syntax::Bash),
            Some("python") => Ok(Syntax::Python),
            Some(other) => Err(format!(
                "script syntax '{other}' is not supported on this worker; use Bash or Python"
            )),
        }
    }
}

/// A script to run.
#[derive(Clone, Debug)]
pub struct ScriptRequest {
    /// Unique per (task, step, target, attempt): the idempotency ticket. A retried start with
    /// the same ticket never runs a second process on an agent.
    pub ticket: String,
    /// The task and its lease epoch: agents refuse commands from a stale epoch.
    pub task_id: String,
    pub epoch: u64,
    pub syntax: Syntax,
    pub body: String,
    /// Extra environment variables (never secrets; those go through a private file).
    pub env: Vec<(String, String)>,
    /// The variables the script can read (fully evaluated), written to a private file.
    pub variables: Vec<(String, String)>,
    /// Run from this directory (e.g. an extracted package) instead of the private scratch
    /// directory; the bootstrap and variables files stay in the scratch directory.
    pub cwd: Option<PathBuf>,
}

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives a script's output as it happens.
pub trait ScriptOutput: Send + Sync {
    fn line(&self, stream: Stream, text: &str);
}

/// How a script ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptOutcome {
    Exited(i32),
    Canceled,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("could not prepare the working directory: {0}")]
    WorkDir(std::io::Error),
    #[error("could not start the script: {0}")]
    Spawn(std::io::Error),
    #[error("{0}")]
    Other(String),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The task a command belongs to, for fencing on the target.
#[derive(Clone, Debug, Default)]
pub struct TaskRef {
    pub task_id: String,
    pub epoch: u64,
}

/// What a target said about itself in a health check.
#[derive(Clone, Debug, Default)]
pub struct HealthInfo {
    pub healthy: bool,
    pub warnings: Vec<String>,
    pub agent_version: String,
    pub os: String,
    pub running_scripts: u32,
}

/// A place where scripts run.
pub trait Target: Send + Sync {
    /// A display name for logs ("Built-in worker", a machine name, …).
    fn name(&self) -> &str;

    /// Runs a script to completion, streaming its output, stopping it when `cancel` fires.
    fn run_script<'a>(
        &'a self,
        req: ScriptRequest,
        out: &'a dyn ScriptOutput,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ScriptOutcome, TargetError>>;

    /// Puts a package into the target's cache unless it holds it already (same hash and size)
    /// and `force` is false. Returns what was sent (`None`: nothing, it was there).
    fn put_package<'a>(
        &'a self,
        pkg: &'a PackageFile,
        force: bool,
        task: &'a TaskRef,
    ) -> BoxFuture<'a, Result<Option<Transferred>, TargetError>>;

    /// Runs one file-system stage of the "Deploy a package" step on the target.
    fn package_stage<'a>(
        &'a self,
        op: PackageOp,
        task: &'a TaskRef,
    ) -> BoxFuture<'a, Result<PackageStageReply, TargetError>>;

    /// Checks that the target answers (and how it is).
    fn health(&self) -> BoxFuture<'_, Result<HealthInfo, TargetError>>;
}

/// Gives the executor a `Target` for a deployment target (machine): agents, SSH, …. The server
/// binary wires the agent transport in; without one, only the built-in worker is available.
pub trait TargetProvider: Send + Sync {
    fn target(&self, machine: &ferry_domain::Machine) -> Result<Arc<dyn Target>, String>;
}

/// Environment variables that must never reach a user script.
const SCRUBBED_ENV: &[&str] = &[
    "FERRY_MASTER_KEY",
    "FERRY_ADMIN_API_KEY",
    "FERRY_DATABASE_URL",
    "FERRY_API_KEY",
];

/// The built-in worker: child processes on the server host.
#[derive(Clone, Debug)]
pub struct LocalTarget {
    work_root: PathBuf,
    roots: Roots,
    name: String,
}

impl LocalTarget {
    /// Scripts get directories under `work_root`; packages go to `work_root/packages` and
    /// `work_root/apps` unless [`LocalTarget::with_roots`] says otherwise.
    pub fn new(work_root: impl Into<PathBuf>) -> Self {
        let work_root = work_root.into();
        let roots = Roots {
            package_cache: work_root.join("packages"),
            apps_root: work_root.join("apps"),
        };
        LocalTarget {
            work_root,
            roots,
            name: "Built-in worker".to_string(),
        }
    }

    pub fn with_roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    pub fn work_root(&self) -> &Path {
        &self.work_root
    }

    async fn run(
        &self,
        req: ScriptRequest,
        out: &dyn ScriptOutput,
        cancel: CancellationToken,
    ) -> Result<ScriptOutcome, TargetError> {
        let dir = self.work_root.join(sanitize(&req.ticket));
        // Artifacts the script reports are copied aside before its directory goes.
        let stash = crate::artifacts::Stash::new(&self.roots, &req.ticket, out);
        let out: &dyn ScriptOutput = &stash;
        let prepared = crate::bootstrap::prepare(req.syntax, &req.body, &req.variables);
        // A fresh, private directory: anything left from an earlier attempt is removed.
        let dir2 = dir.clone();
        let prep2 = prepared.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::remove_dir_all(&dir2);
            if let Some(parent) = dir2.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::DirBuilder::new().mode(0o700).create(&dir2)?;
            crate::bootstrap::write_files(&dir2, &prep2)
        })
        .await
        .map_err(|e| TargetError::Other(e.to_string()))?
        .map_err(TargetError::WorkDir)?;

        // Paths into the scratch directory are absolute when the script runs elsewhere.
        let run_dir = req.cwd.clone().unwrap_or_else(|| dir.clone());
        let abs = |a: &String| -> String {
            if req.cwd.is_some() && prepared.files.iter().any(|f| &f.path == a) {
                dir.join(a).display().to_string()
            } else {
                a.clone()
            }
        };
        let args: Vec<String> = prepared.args.iter().map(abs).collect();
        let mut cmd = Command::new(&prepared.program);
        cmd.args(&args)
            .current_dir(&run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        for k in SCRUBBED_ENV {
            cmd.env_remove(k);
        }
        for (k, v) in &req.env {
            cmd.env(k, v);
        }
        for (k, v) in &prepared.env {
            cmd.env(k, abs(v));
        }
        let mut child = cmd.spawn().map_err(TargetError::Spawn)?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let pump = async {
            tokio::join!(
                pump_lines(stdout, Stream::Stdout, out),
                pump_lines(stderr, Stream::Stderr, out)
            )
        };
        let result = tokio::select! {
            (_, _) = pump => {
                let status = child.wait().await.map_err(TargetError::Spawn)?;
                Ok(ScriptOutcome::Exited(status.code().unwrap_or(-1)))
            }
            _ = cancel.cancelled() => {
                kill_group(pid);
                let _ = child.wait().await;
                Ok(ScriptOutcome::Canceled)
            }
        };
        // Kill anything the script left running in its process group.
        kill_group(pid);
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result
    }
}

impl Target for LocalTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn put_package<'a>(
        &'a self,
        pkg: &'a PackageFile,
        force: bool,
        _task: &'a TaskRef,
    ) -> BoxFuture<'a, Result<Option<Transferred>, TargetError>> {
        Box::pin(async move {
            let roots = self.roots.clone();
            let pkg = pkg.clone();
            tokio::task::spawn_blocking(move || {
                if !force
                    && crate::package_ops::cached(&roots, &pkg.sha256, &pkg.extension, pkg.size)
                {
                    return Ok(None);
                }
                crate::package_ops::copy_into_cache(&roots, &pkg).map(|bytes| {
                    Some(Transferred {
                        bytes,
                        delta_from: None,
                    })
                })
            })
            .await
            .map_err(|e| TargetError::Other(e.to_string()))?
            .map_err(TargetError::Other)
        })
    }

    fn package_stage<'a>(
        &'a self,
        op: PackageOp,
        _task: &'a TaskRef,
    ) -> BoxFuture<'a, Result<PackageStageReply, TargetError>> {
        Box::pin(async move {
            let roots = self.roots.clone();
            tokio::task::spawn_blocking(move || crate::package_ops::apply(&op, &roots))
                .await
                .map_err(|e| TargetError::Other(e.to_string()))?
                .map_err(TargetError::Other)
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<HealthInfo, TargetError>> {
        Box::pin(async move {
            Ok(HealthInfo {
                healthy: true,
                warnings: Vec::new(),
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                os: std::env::consts::OS.to_string(),
                running_scripts: 0,
            })
        })
    }

    fn run_script<'a>(
        &'a self,
        req: ScriptRequest,
        out: &'a dyn ScriptOutput,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ScriptOutcome, TargetError>> {
        Box::pin(self.run(req, out, cancel))
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

async fn pump_lines<R: AsyncRead + Unpin>(r: Option<R>, stream: Stream, out: &dyn ScriptOutput) {
    let Some(r) = r else { return };
    let mut reader = BufReader::new(r);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                out.line(stream, &String::from_utf8_lossy(&buf));
            }
        }
    }
}

/// Keeps a ticket usable as a directory name.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(Stream, String)>>);
    impl ScriptOutput for Collect {
        fn line(&self, stream: Stream, text: &str) {
            self.0.lock().unwrap().push((stream, text.to_string()));
        }
    }

    #[tokio::test]
    async fn runs_bash_and_captures_streams() {
        let dir = tempfile_dir();
        let t = LocalTarget::new(&dir);
        let out = Collect::default();
        let r = t
            .run_script(
                ScriptRequest {
                    ticket: "t1".into(),
                    task_id: "ServerTasks-1".into(),
                    epoch: 1,
                    syntax: Syntax::Bash,
                    body: "echo hello\necho oops >&2\nexit 3".into(),
                    env: vec![],
                    variables: vec![],
                    cwd: None,
                },
                &out,
                CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(r, ScriptOutcome::Exited(3));
        let lines = out.0.lock().unwrap().clone();
        assert!(lines.contains(&(Stream::Stdout, "hello".into())));
        assert!(lines.contains(&(Stream::Stderr, "oops".into())));
        assert!(!dir.join("t1").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn cancel_kills_the_process_group() {
        let dir = tempfile_dir();
        let t = LocalTarget::new(&dir);
        let out = Collect::default();
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            c2.cancel();
        });
        let start = std::time::Instant::now();
        let r = t
            .run_script(
                ScriptRequest {
                    ticket: "t2".into(),
                    task_id: "ServerTasks-1".into(),
                    epoch: 1,
                    syntax: Syntax::Bash,
                    body: "sleep 30 & sleep 30".into(),
                    env: vec![],
                    variables: vec![],
                    cwd: None,
                },
                &out,
                cancel,
            )
            .await
            .unwrap();
        assert_eq!(r, ScriptOutcome::Canceled);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-target-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
