//! The agent's request handler. Scripts run as child processes through the executor's
//! `LocalTarget` (the same bootstrap as the built-in worker), detached from any connection:
//! their output goes into [`Tickets`] and waits there until the server has read it, so a
//! dropped connection loses nothing and a retried start never runs a second process.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ferry_executor::LocalTarget;
use ferry_executor::package_ops::{self, Roots};
use ferry_executor::target::{ScriptOutcome, ScriptOutput, ScriptRequest, Stream, Syntax, Target};
use ferry_protocol::{
    AgentError, CapabilitiesReply, ErrorCode, HealthReply, Message, PROTOCOL_VERSION,
    PackageCacheReply, ScriptState, StartAction, StartScript, Stream as WireStream,
    Syntax as WireSyntax, Tickets, TicketsConfig, UploadAssembler, UploadLimits, UploadProgress,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::serve::{BoxFuture, Handler};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn error(code: ErrorCode, message: impl Into<String>) -> AgentError {
    AgentError {
        code,
        message: message.into(),
        current_epoch: None,
        expected_offset: None,
    }
}

struct Upload {
    asm: UploadAssembler,
    staging: PathBuf,
    file: std::fs::File,
    /// `<sha256><extension>` in the package cache.
    dest: PathBuf,
    package_id: Option<String>,
    /// Delta transfer: (basis SHA-256, expected SHA-256 and size of the rebuilt file).
    delta: Option<(String, String, u64)>,
}

/// Beside each cached package: which package it is and when it arrived.
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheMeta {
    package_id: String,
    stored_ms: u64,
}

fn write_meta(dest: &std::path::Path, package_id: &str) {
    let meta = CacheMeta {
        package_id: package_id.to_string(),
        stored_ms: now_ms(),
    };
    if let Ok(text) = serde_json::to_string(&meta) {
        let _ = std::fs::write(dest.with_extension("meta"), text);
    }
}

/// The agent's state: tickets, running scripts, uploads.
pub struct Runtime {
    data_dir: PathBuf,
    tickets: std::sync::Mutex<Tickets>,
    /// Wakes long-polling `GetStatus` requests when output or state changes.
    changed: Notify,
    cancels: std::sync::Mutex<HashMap<String, CancellationToken>>,
    uploads: tokio::sync::Mutex<HashMap<String, Upload>>,
    local: LocalTarget,
    running: AtomicU32,
    shutdown: CancellationToken,
    /// Serialises writes of `tickets.json` (they share one temporary file).
    persist_lock: std::sync::Mutex<()>,
}

impl Runtime {
    /// Opens the runtime in a data directory, restoring the tickets of an earlier run: any
    /// script that was running then is reported lost (its output is gone with the process).
    pub fn open(data_dir: &Path, shutdown: CancellationToken) -> Result<Arc<Runtime>, String> {
        let work = data_dir.join("work");
        let roots = Roots {
            package_cache: data_dir.join("packages"),
            apps_root: data_dir.join("apps"),
        };
        for d in [
            &work,
            &roots.package_cache,
            &roots.apps_root,
            &data_dir.join("staging"),
        ] {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("could not create {}: {e}", d.display()))?;
        }
        let state = data_dir.join("tickets.json");
        let mut tickets = match std::fs::read(&state) {
            Ok(bytes) => Tickets::restore(&bytes, TicketsConfig::default()).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the saved script state is unreadable; starting afresh");
                Tickets::new(TicketsConfig::default())
            }),
            Err(_) => Tickets::new(TicketsConfig::default()),
        };
        let now = now_ms();
        for t in tickets.running() {
            let _ = tickets.lost(&t, "the agent restarted while the script was running", now);
        }
        let rt = Arc::new(Runtime {
            data_dir: data_dir.to_path_buf(),
            tickets: std::sync::Mutex::new(tickets),
            changed: Notify::new(),
            cancels: std::sync::Mutex::new(HashMap::new()),
            uploads: tokio::sync::Mutex::new(HashMap::new()),
            local: LocalTarget::new(work).with_roots(roots).with_name("agent"),
            running: AtomicU32::new(0),
            shutdown,
            persist_lock: std::sync::Mutex::new(()),
        });
        rt.persist();
        // Forget old tickets now and then.
        let weak = Arc::downgrade(&rt);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(rt) = weak.upgrade() else { break };
                let expired = rt.lock().expire(now_ms());
                if !expired.is_empty() {
                    rt.persist();
                }
            }
        });
        Ok(rt)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn roots(&self) -> &Roots {
        self.local.roots()
    }

    /// Saves the tickets (atomically). Called after a spawn is decided and before it happens.
    fn persist(&self) {
        let _guard = self.persist_lock.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = match self.lock().to_json() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "could not serialise the script state");
                return;
            }
        };
        let path = self.data_dir.join("tickets.json");
        let tmp = self.data_dir.join("tickets.json.tmp");
        let r = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            tracing::error!(error = %e, "could not save the script state");
        }
    }

    /// Appends one line per started script to `scripts.log` (tests count them).
    fn note_spawn(&self, ticket: &str) {
        let line = format!("{} {ticket}\n", now_ms());
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("scripts.log"))
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }

    async fn start(self: &Arc<Self>, req: StartScript) -> Message {
        let started = self.lock().start(&req, now_ms());
        let started = match started {
            Ok(s) => s,
            Err(e) => return Message::Error(e),
        };
        if started.action == StartAction::Spawn {
            self.persist();
            self.note_spawn(&req.ticket);
            self.spawn(req);
        }
        Message::ScriptStatus(started.status)
    }

    fn spawn(self: &Arc<Self>, req: StartScript) {
        let cancel = self.shutdown.child_token();
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(req.ticket.clone(), cancel.clone());
        }
        self.running.fetch_add(1, Ordering::Relaxed);
        let rt = self.clone();
        tokio::spawn(async move {
            let ticket = req.ticket.clone();
            let sreq = ScriptRequest {
                ticket: ticket.clone(),
                task_id: req.task_id.clone(),
                epoch: req.epoch,
                syntax: match req.syntax {
                    WireSyntax::Bash => Syntax::Bash,
                    WireSyntax::Python => Syntax::Python,
                },
                body: req.body,
                env: req.env.into_iter().map(|nv| (nv.name, nv.value)).collect(),
                variables: req
                    .variables
                    .into_iter()
                    .map(|nv| (nv.name, nv.value))
                    .collect(),
                cwd: req.cwd.map(PathBuf::from),
            };
            let sink = Sink {
                rt: rt.clone(),
                ticket: ticket.clone(),
            };
            let result = rt.local.run_script(sreq, &sink, cancel).await;
            let now = now_ms();
            {
                let mut t = rt.lock();
                let _ = match result {
                    Ok(ScriptOutcome::Exited(code)) => t.exited(&ticket, code, now),
                    Ok(ScriptOutcome::Canceled) => t.exited(&ticket, -1, now),
                    Err(e) => t.lost(&ticket, &format!("the script could not run: {e}"), now),
                };
            }
            if let Ok(mut c) = rt.cancels.lock() {
                c.remove(&ticket);
            }
            rt.running.fetch_sub(1, Ordering::Relaxed);
            rt.persist();
            rt.changed.notify_waiters();
        });
    }

    async fn status(&self, req: ferry_protocol::GetStatus) -> Message {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(u64::from(req.wait_ms.min(30_000)));
        loop {
            // Register interest before looking, so a change in between is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let st = match self.lock().status(&req, now_ms()) {
                Ok(s) => s,
                Err(e) => return Message::Error(e),
            };
            let idle = st.lines.is_empty() && st.state == ScriptState::Running;
            if !idle || tokio::time::Instant::now() >= deadline {
                return Message::ScriptStatus(st);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn cancel(&self, req: ferry_protocol::CancelScript) -> Message {
        let r = self.lock().cancel(&req, now_ms());
        match r {
            Ok(c) => {
                if c.kill {
                    if let Ok(cs) = self.cancels.lock() {
                        if let Some(t) = cs.get(&req.ticket) {
                            t.cancel();
                        }
                    }
                }
                self.persist();
                Message::ScriptStatus(c.status)
            }
            Err(e) => Message::Error(e),
        }
    }

    fn complete(&self, req: ferry_protocol::CompleteScript) -> Message {
        let r = self.lock().complete(&req, now_ms());
        match r {
            Ok(()) => {
                self.persist();
                Message::Ack
            }
            Err(e) => Message::Error(e),
        }
    }

    fn fence(&self, task_id: &str, epoch: u64) -> Result<(), AgentError> {
        match self.lock().epoch(task_id) {
            Some(current) if current > epoch => Err(AgentError {
                code: ErrorCode::StaleEpoch,
                message: format!(
                    "task {task_id} is at epoch {current}; a command from epoch {epoch} is stale"
                ),
                current_epoch: Some(current),
                expected_offset: None,
            }),
            _ => Ok(()),
        }
    }

    fn cached_file(&self, sha256: &str) -> Option<(PathBuf, u64)> {
        let dir = std::fs::read_dir(&self.roots().package_cache).ok()?;
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(sha256) && !name.ends_with(".partial") && !name.ends_with(".meta") {
                if let Ok(m) = e.metadata() {
                    return Some((e.path(), m.len()));
                }
            }
        }
        None
    }

    async fn upload_begin(&self, req: ferry_protocol::UploadBegin) -> Result<Message, AgentError> {
        let asm = UploadAssembler::begin(&req, UploadLimits::default())?;
        let delta = match (&req.delta_from, &req.result_sha256, req.result_size) {
            (Some(from), Some(sha), Some(size)) => {
                if !ferry_protocol::is_sha256_hex(from) || !ferry_protocol::is_sha256_hex(sha) {
                    return Err(error(
                        ErrorCode::BadRequest,
                        "a delta names its basis and result by SHA-256",
                    ));
                }
                if self.cached_file(from).is_none() {
                    return Err(error(
                        ErrorCode::BadRequest,
                        "the delta's basis is not in the cache",
                    ));
                }
                Some((from.clone(), sha.clone(), size))
            }
            (None, None, None) => None,
            _ => {
                return Err(error(
                    ErrorCode::BadRequest,
                    "a delta needs delta_from, result_sha256 and result_size",
                ));
            }
        };
        // Uploads go to the package cache as `<sha256><extension>` (of the rebuilt file for
        // a delta).
        let final_sha = delta
            .as_ref()
            .map(|d| d.1.clone())
            .unwrap_or_else(|| req.sha256.clone());
        let name = req.name.clone().unwrap_or_else(|| final_sha.clone());
        let ext = name.strip_prefix(&final_sha).ok_or_else(|| {
            error(
                ErrorCode::BadRequest,
                "an upload's name must be its SHA-256 followed by the package extension",
            )
        })?;
        if !ext.is_empty() {
            package_ops::check_extension(ext).map_err(|e| error(ErrorCode::BadRequest, e))?;
        }
        let mut uploads = self.uploads.lock().await;
        if let Some(u) = uploads.get(&req.transfer) {
            return Ok(Message::UploadProgress(UploadProgress {
                transfer: req.transfer,
                received: u.asm.received(),
            }));
        }
        let staging = self
            .data_dir
            .join("staging")
            .join(format!("{}.upload", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&staging).map_err(|e| {
            error(
                ErrorCode::Internal,
                format!("could not stage the upload: {e}"),
            )
        })?;
        let dest = self.roots().package_cache.join(&name);
        uploads.insert(
            req.transfer.clone(),
            Upload {
                asm,
                staging,
                file,
                dest,
                package_id: req.package_id.clone(),
                delta,
            },
        );
        Ok(Message::UploadProgress(UploadProgress {
            transfer: req.transfer,
            received: 0,
        }))
    }

    async fn upload_chunk(&self, req: ferry_protocol::UploadChunk) -> Result<Message, AgentError> {
        let mut uploads = self.uploads.lock().await;
        let u = uploads
            .get_mut(&req.transfer)
            .ok_or_else(|| error(ErrorCode::UnknownTransfer, "no such transfer; begin again"))?;
        let fresh = u.asm.chunk(req.offset, &req.data)?;
        if !fresh.is_empty() {
            u.file
                .write_all(fresh)
                .map_err(|e| error(ErrorCode::Internal, format!("could not write: {e}")))?;
        }
        Ok(Message::UploadProgress(UploadProgress {
            transfer: req.transfer,
            received: u.asm.received(),
        }))
    }

    async fn upload_end(&self, req: ferry_protocol::UploadEnd) -> Result<Message, AgentError> {
        let mut uploads = self.uploads.lock().await;
        let u = uploads
            .get_mut(&req.transfer)
            .ok_or_else(|| error(ErrorCode::UnknownTransfer, "no such transfer; begin again"))?;
        match u.asm.finish() {
            Ok(done) => {
                u.file
                    .sync_all()
                    .map_err(|e| error(ErrorCode::Internal, format!("could not sync: {e}")))?;
                let Some(u) = uploads.remove(&req.transfer) else {
                    return Err(error(ErrorCode::UnknownTransfer, "no such transfer"));
                };
                drop(uploads);
                let (staging, dest, package_id) = (u.staging, u.dest, u.package_id);
                match u.delta {
                    None => {
                        std::fs::rename(&staging, &dest).map_err(|e| {
                            error(
                                ErrorCode::Internal,
                                format!("could not store the file: {e}"),
                            )
                        })?;
                        if let Some(id) = &package_id {
                            write_meta(&dest, id);
                        }
                        Ok(Message::UploadDone(done))
                    }
                    Some((from, sha, size)) => {
                        let basis = self.cached_file(&from).map(|b| b.0);
                        let transfer = req.transfer.clone();
                        let (dest2, sha2) = (dest.clone(), sha.clone());
                        let r = tokio::task::spawn_blocking(move || {
                            rebuild(basis, &staging, &dest2, &sha2, size)
                        })
                        .await
                        .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
                        match r {
                            Ok(()) => {
                                if let Some(id) = &package_id {
                                    write_meta(&dest, id);
                                }
                                Ok(Message::UploadDone(ferry_protocol::UploadDone {
                                    transfer,
                                    size,
                                    sha256: sha,
                                }))
                            }
                            Err(e) => Err(e),
                        }
                    }
                }
            }
            Err(e) => {
                if e.code == ErrorCode::HashMismatch {
                    if let Some(u) = uploads.remove(&req.transfer) {
                        let _ = std::fs::remove_file(&u.staging);
                    }
                }
                Err(e)
            }
        }
    }

    /// The newest cached file of a package (other than `exclude`), with its rsync signature.
    async fn basis(&self, req: ferry_protocol::PackageBasis) -> Message {
        let dir = self.roots().package_cache.clone();
        let r = tokio::task::spawn_blocking(move || -> Option<ferry_protocol::BasisInfo> {
            // One listing of the cache: `.meta` files name the package, the file beside each
            // (same SHA-256 prefix) is the package itself.
            let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .collect();
            let mut best: Option<(u64, PathBuf, String)> = None;
            for p in entries
                .iter()
                .filter(|p| p.extension().is_some_and(|x| x == "meta"))
            {
                let Ok(text) = std::fs::read_to_string(p) else {
                    continue;
                };
                let Ok(meta) = serde_json::from_str::<CacheMeta>(&text) else {
                    continue;
                };
                if !meta.package_id.eq_ignore_ascii_case(&req.package_id) {
                    continue;
                }
                let stem = p.file_name()?.to_string_lossy().to_string();
                let sha: String = stem.chars().take(64).collect();
                if sha == req.exclude_sha256 || !ferry_protocol::is_sha256_hex(&sha) {
                    continue;
                }
                let file = entries.iter().find(|f| {
                    let n = f
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default();
                    n.starts_with(&sha) && !n.ends_with(".meta") && !n.ends_with(".partial")
                });
                let Some(file) = file else { continue };
                if best.as_ref().is_none_or(|b| meta.stored_ms > b.0) {
                    best = Some((meta.stored_ms, file.clone(), sha));
                }
            }
            let (_, file, sha) = best?;
            let data = std::fs::read(&file).ok()?;
            let sig = fast_rsync::Signature::calculate(
                &data,
                fast_rsync::SignatureOptions {
                    block_size: DELTA_BLOCK,
                    crypto_hash_size: 8,
                },
            );
            Some(ferry_protocol::BasisInfo {
                sha256: sha,
                size: data.len() as u64,
                signature: sig.into_serialized(),
            })
        })
        .await
        .ok()
        .flatten();
        Message::PackageBasisReply(ferry_protocol::PackageBasisReply { basis: r })
    }

    fn health(&self) -> Message {
        let mut warnings = Vec::new();
        let free = nix_free_bytes(&self.data_dir);
        if let Some(f) = free {
            if f < 100 * 1024 * 1024 {
                warnings.push(format!(
                    "only {} MB of disk space is free in the agent's data directory",
                    f / (1024 * 1024)
                ));
            }
        }
        Message::HealthReply(HealthReply {
            healthy: true,
            running_scripts: self.running.load(Ordering::Relaxed),
            free_disk_bytes: free,
            warnings,
        })
    }
}

/// The block size of delta signatures: 4 KiB (a 50 MB basis has a 150 KB signature).
const DELTA_BLOCK: u32 = 4096;

/// Rebuilds a file from a basis and a delta, keeping it only when it has the expected size and
/// SHA-256; the delta is removed either way.
fn rebuild(
    basis: Option<PathBuf>,
    delta_path: &Path,
    dest: &Path,
    sha: &str,
    size: u64,
) -> Result<(), AgentError> {
    use sha2::Digest;
    let result = (|| {
        let basis =
            basis.ok_or_else(|| error(ErrorCode::BadRequest, "the delta's basis is gone"))?;
        let base = std::fs::read(&basis).map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
        let delta =
            std::fs::read(delta_path).map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
        let limit = usize::try_from(size).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(limit.min(1 << 30));
        fast_rsync::apply_limited(&base, &delta, &mut out, limit).map_err(|e| {
            error(
                ErrorCode::HashMismatch,
                format!("the delta does not apply to the basis: {e}"),
            )
        })?;
        let got = hex::encode(sha2::Sha256::digest(&out));
        if out.len() as u64 != size || got != sha {
            return Err(error(
                ErrorCode::HashMismatch,
                "the package rebuilt from the delta does not hash right; it was discarded",
            ));
        }
        let tmp = dest.with_extension("partial");
        std::fs::write(&tmp, &out)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|_| std::fs::rename(&tmp, dest))
            .map_err(|e| {
                error(
                    ErrorCode::Internal,
                    format!("could not store the file: {e}"),
                )
            })
    })();
    let _ = std::fs::remove_file(delta_path);
    result
}

/// Free bytes on the file system holding `p`, from `df` (no unsafe code here).
fn nix_free_bytes(p: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(p)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let avail: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(avail * 1024)
}

struct Sink {
    rt: Arc<Runtime>,
    ticket: String,
}

impl ScriptOutput for Sink {
    fn line(&self, stream: Stream, text: &str) {
        let s = match stream {
            Stream::Stdout => WireStream::Stdout,
            Stream::Stderr => WireStream::Stderr,
        };
        let _ = self.rt.lock().append(&self.ticket, s, text, now_ms());
        self.rt.changed.notify_waiters();
    }
}

/// The handler behind every connection of one agent.
pub struct AgentHandler {
    pub rt: Arc<Runtime>,
}

impl Handler for AgentHandler {
    fn handle(&self, msg: Message) -> BoxFuture<'_, Message> {
        Box::pin(async move {
            let rt = &self.rt;
            let r: Result<Message, AgentError> = match msg {
                Message::Capabilities => Ok(Message::CapabilitiesReply(CapabilitiesReply {
                    agent_version: crate::AGENT_VERSION.to_string(),
                    protocol_versions: vec![PROTOCOL_VERSION],
                    syntaxes: vec![WireSyntax::Bash, WireSyntax::Python],
                    max_frame_bytes: ferry_protocol::DEFAULT_MAX_FRAME as u64,
                    max_chunk_bytes: UploadLimits::default().max_chunk as u64,
                    os: std::env::consts::OS.to_string(),
                    arch: std::env::consts::ARCH.to_string(),
                })),
                Message::Health => Ok(rt.health()),
                Message::StartScript(req) => Ok(rt.start(req).await),
                Message::GetStatus(req) => Ok(rt.status(req).await),
                Message::CancelScript(req) => Ok(rt.cancel(req)),
                Message::CompleteScript(req) => Ok(rt.complete(req)),
                Message::UploadBegin(req) => rt.upload_begin(req).await,
                Message::UploadChunk(req) => rt.upload_chunk(req).await,
                Message::UploadEnd(req) => rt.upload_end(req).await,
                Message::PackageCacheLookup(req) => {
                    let found = rt.cached_file(&req.sha256);
                    Ok(Message::PackageCacheReply(PackageCacheReply {
                        sha256: req.sha256,
                        present: found.is_some(),
                        size: found.map(|f| f.1),
                    }))
                }
                Message::PackageBasis(req) => Ok(rt.basis(req).await),
                Message::PackageStage(req) => match rt.fence(&req.task_id, req.epoch) {
                    Err(e) => Err(e),
                    Ok(()) => {
                        let roots = rt.roots().clone();
                        let op = req.op;
                        match tokio::task::spawn_blocking(move || package_ops::apply(&op, &roots))
                            .await
                        {
                            Ok(Ok(reply)) => Ok(Message::PackageStageReply(reply)),
                            Ok(Err(e)) => Err(error(ErrorCode::BadRequest, e)),
                            Err(e) => Err(error(ErrorCode::Internal, e.to_string())),
                        }
                    }
                },
                other => Err(error(
                    ErrorCode::BadRequest,
                    format!("{} is not a request", other.kind()),
                )),
            };
            r.unwrap_or_else(Message::Error)
        })
    }
}
