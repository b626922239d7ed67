//! [`AgentTarget`]: the executor's `Target` for a listening or polling agent. Every call is
//! retried on a new connection while the machine's retry window lasts; requests are
//! idempotent (script tickets, upload offsets), so a retry never runs anything twice.

use std::sync::Arc;
use std::time::Duration;

use ferry_executor::package_ops::{PackageFile, Transferred};
use ferry_executor::target::{
    BoxFuture, HealthInfo, ScriptOutcome, ScriptOutput, ScriptRequest, Stream, Syntax, Target,
    TargetError, TargetProvider, TaskRef,
};
use ferry_protocol::{
    CancelScript, CompleteScript, ErrorCode, GetStatus, Message, NameValue, PackageBasis,
    PackageBasisReply, PackageCacheLookup, PackageOp, PackageStage, PackageStageReply, ScriptState,
    StartScript, Stream as WireStream, Syntax as WireSyntax, UploadBegin, UploadChunk, UploadEnd,
};
use tokio_util::sync::CancellationToken;

use crate::hub::{AgentEndpoint, AgentHub};
use crate::rpc::{RpcConn, RpcError};

/// Bytes per upload chunk: the agent's limit (1 MiB), sent raw in a binary payload.
const CHUNK: usize = 1024 * 1024;
/// How long a status request may wait on the agent for new output.
const LONG_POLL_MS: u32 = 5_000;

/// How an [`AgentTarget`] gets a connection: the hub (listening and polling agents) or an SSH
/// session running `ferry agent stdio`.
pub trait Connector: Send + Sync {
    /// An open connection, or a new one; may wait up to `wait` (a polling agent to connect).
    fn connect(&self, wait: Duration) -> crate::serve::BoxFuture<'_, Result<RpcConn, RpcError>>;
}

struct HubConnector {
    hub: Arc<AgentHub>,
    ep: AgentEndpoint,
}

impl Connector for HubConnector {
    fn connect(&self, wait: Duration) -> crate::serve::BoxFuture<'_, Result<RpcConn, RpcError>> {
        Box::pin(self.hub.connection(&self.ep, wait))
    }
}

/// A target reached through the agent protocol: a listening or polling agent, or an SSH
/// target running `ferry agent stdio`.
pub struct AgentTarget {
    connector: Arc<dyn Connector>,
    name: String,
    /// How long to keep retrying when the agent cannot be reached.
    retry_window: Duration,
    call_timeout: Duration,
}

impl AgentTarget {
    pub fn new(hub: Arc<AgentHub>, ep: AgentEndpoint, retry_window: Duration) -> AgentTarget {
        let call_timeout = hub.options().call_timeout;
        let name = ep.name.clone();
        AgentTarget {
            connector: Arc::new(HubConnector { hub, ep }),
            name,
            retry_window,
            call_timeout,
        }
    }

    pub fn with_connector(
        name: &str,
        connector: Arc<dyn Connector>,
        retry_window: Duration,
        call_timeout: Duration,
    ) -> AgentTarget {
        AgentTarget {
            connector,
            name: name.to_string(),
            retry_window,
            call_timeout,
        }
    }

    /// One request, retried on new connections within the retry window.
    async fn call(&self, msg: Message, timeout: Duration) -> Result<Message, RpcError> {
        let deadline = tokio::time::Instant::now() + self.retry_window;
        let mut delay = Duration::from_millis(100);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = match self.connector.connect(left).await {
                Ok(conn) => {
                    let r = conn.call(msg.clone(), timeout).await;
                    if matches!(r, Err(RpcError::Timeout(_))) {
                        // A silent connection is not trusted again.
                        conn.close("a request timed out");
                    }
                    r
                }
                Err(e) => Err(e),
            };
            match attempt {
                Err(e) if e.retryable() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(agent = %self.name, error = %e, "retrying");
                    tokio::time::sleep(
                        delay.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
                    )
                    .await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) if e.retryable() => {
                    return Err(RpcError::Connect(format!(
                        "{} could not be reached for {}s ({e})",
                        self.name,
                        self.retry_window.as_secs()
                    )));
                }
                other => return other,
            }
        }
    }

    fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    async fn run(
        &self,
        req: ScriptRequest,
        out: &dyn ScriptOutput,
        cancel: CancellationToken,
    ) -> Result<ScriptOutcome, TargetError> {
        let start = StartScript {
            ticket: req.ticket.clone(),
            task_id: req.task_id.clone(),
            step: req.ticket.clone(),
            attempt: 0,
            epoch: req.epoch,
            syntax: match req.syntax {
                Syntax::Bash => WireSyntax::Bash,
                Syntax::Python => WireSyntax::Python,
            },
            body: req.body,
            variables: req
                .variables
                .into_iter()
                .map(|(name, value)| NameValue { name, value })
                .collect(),
            env: req
                .env
                .into_iter()
                .map(|(name, value)| NameValue { name, value })
                .collect(),
            cwd: req.cwd.map(|p| p.display().to_string()),
        };
        let ticket = start.ticket.clone();
        let task_id = start.task_id.clone();
        let epoch = start.epoch;
        match self
            .call(Message::StartScript(start), self.call_timeout())
            .await
            .map_err(err)?
        {
            Message::ScriptStatus(_) => {}
            other => return Err(unexpected(&other)),
        }
        let mut offset = 0u64;
        let mut cancel_sent = false;
        loop {
            if cancel.is_cancelled() && !cancel_sent {
                cancel_sent = true;
                let _ = self
                    .call(
                        Message::CancelScript(CancelScript {
                            ticket: ticket.clone(),
                            task_id: task_id.clone(),
                            epoch,
                        }),
                        self.call_timeout(),
                    )
                    .await;
            }
            let get = Message::GetStatus(GetStatus {
                ticket: ticket.clone(),
                task_id: task_id.clone(),
                epoch,
                log_offset: offset,
                wait_ms: if cancel_sent { 500 } else { LONG_POLL_MS },
            });
            let timeout = self.call_timeout() + Duration::from_millis(u64::from(LONG_POLL_MS));
            let reply = tokio::select! {
                r = self.call(get, timeout) => match r {
                    // The agent's log for the ticket starts over: it restarted, and the
                    // script's process and output went with it.
                    Err(RpcError::Agent(e)) if e.code == ErrorCode::BadOffset => {
                        return Err(TargetError::Other(format!(
                            "the script was lost on {} (the agent restarted while it ran)",
                            self.name
                        )));
                    }
                    r => r.map_err(err)?,
                },
                _ = cancel.cancelled(), if !cancel_sent => continue,
            };
            let st = match reply {
                Message::ScriptStatus(s) => s,
                other => return Err(unexpected(&other)),
            };
            for line in &st.lines {
                match line.stream {
                    WireStream::Stdout => out.line(Stream::Stdout, &line.text),
                    WireStream::Stderr => out.line(Stream::Stderr, &line.text),
                    WireStream::Agent => {
                        out.line(Stream::Stdout, &format!("[agent] {}", line.text))
                    }
                }
            }
            offset = st.next_offset;
            if st.state.is_terminal() && st.end_of_log {
                let _ = self
                    .call(
                        Message::CompleteScript(CompleteScript {
                            ticket: ticket.clone(),
                            task_id: task_id.clone(),
                            epoch,
                        }),
                        self.call_timeout(),
                    )
                    .await;
                return match st.state {
                    ScriptState::Exited(code) => Ok(ScriptOutcome::Exited(code)),
                    ScriptState::Canceled => Ok(ScriptOutcome::Canceled),
                    ScriptState::Lost => Err(TargetError::Other(format!(
                        "the script was lost on {} (the agent restarted or could not start it)",
                        self.name
                    ))),
                    ScriptState::Unknown => Err(TargetError::Other(format!(
                        "{} has no record of the script (the agent may have lost its state)",
                        self.name
                    ))),
                    ScriptState::Running => Err(TargetError::Other("still running".into())),
                };
            }
        }
    }

    /// Sends the whole file, or (with `delta`) an rsync delta against a cached basis.
    async fn upload(
        &self,
        pkg: &PackageFile,
        delta: Option<(&str, &[u8])>,
    ) -> Result<u64, RpcError> {
        let transfer = uuid::Uuid::new_v4().simple().to_string();
        let (size, sha256, delta_from, result_sha256, result_size) = match delta {
            None => (pkg.size, pkg.sha256.clone(), None, None, None),
            Some((basis, bytes)) => {
                use sha2::Digest;
                (
                    bytes.len() as u64,
                    hex::encode(sha2::Sha256::digest(bytes)),
                    Some(basis.to_string()),
                    Some(pkg.sha256.clone()),
                    Some(pkg.size),
                )
            }
        };
        let begin = Message::UploadBegin(UploadBegin {
            transfer: transfer.clone(),
            name: Some(format!("{}{}", pkg.sha256, pkg.extension)),
            size,
            sha256,
            package_id: Some(pkg.package_id.clone()),
            delta_from,
            result_sha256,
            result_size,
        });
        self.call(begin, self.call_timeout()).await?;
        let mut offset = 0u64;
        match delta {
            Some((_, bytes)) => {
                for piece in bytes.chunks(CHUNK) {
                    let chunk = Message::UploadChunk(UploadChunk {
                        transfer: transfer.clone(),
                        offset,
                        data: piece.to_vec(),
                    });
                    self.call(chunk, self.call_timeout()).await?;
                    offset += piece.len() as u64;
                }
            }
            None => {
                let mut file =
                    Some(std::fs::File::open(&pkg.source).map_err(|e| {
                        RpcError::Protocol(format!("could not read the package: {e}"))
                    })?);
                loop {
                    // Read on a blocking thread straight into a fresh buffer, which then moves
                    // into the message: no intermediate copies.
                    let Some(f) = file.take() else { break };
                    let (f, buf, n) = tokio::task::spawn_blocking(move || {
                        let mut f = f;
                        let mut buf = Vec::with_capacity(CHUNK);
                        let n = read_chunk(&mut f, &mut buf);
                        (f, buf, n)
                    })
                    .await
                    .map_err(|e| RpcError::Protocol(e.to_string()))?;
                    file = Some(f);
                    let mut buf = buf;
                    let n = n.map_err(|e| {
                        RpcError::Protocol(format!("could not read the package: {e}"))
                    })?;
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    let chunk = Message::UploadChunk(UploadChunk {
                        transfer: transfer.clone(),
                        offset,
                        data: buf,
                    });
                    self.call(chunk, self.call_timeout()).await?;
                    offset += n as u64;
                }
            }
        }
        match self
            .call(
                Message::UploadEnd(UploadEnd {
                    transfer: transfer.clone(),
                }),
                self.call_timeout(),
            )
            .await?
        {
            Message::UploadDone(d) if d.sha256 == pkg.sha256 => Ok(size),
            other => Err(RpcError::Protocol(format!(
                "the upload ended with {}",
                other.kind()
            ))),
        }
    }

    /// A delta against the newest earlier version of the package on the target, when there
    /// is one and the delta is clearly smaller than the file.
    async fn try_delta(&self, pkg: &PackageFile) -> Option<(String, Arc<Vec<u8>>)> {
        let reply = self
            .call(
                Message::PackageBasis(PackageBasis {
                    package_id: pkg.package_id.clone(),
                    exclude_sha256: pkg.sha256.clone(),
                }),
                self.call_timeout(),
            )
            .await
            .ok()?;
        let Message::PackageBasisReply(PackageBasisReply { basis: Some(basis) }) = reply else {
            return None;
        };
        let key = (basis.sha256.clone(), pkg.sha256.clone());
        let cell = {
            let mut c = delta_cache().lock().ok()?;
            match c.iter().find(|(k, _)| *k == key) {
                Some((_, cell)) => cell.clone(),
                None => {
                    let cell: DeltaCell = Arc::new(tokio::sync::OnceCell::new());
                    c.insert(0, (key.clone(), cell.clone()));
                    c.truncate(DELTA_CACHE_ENTRIES);
                    cell
                }
            }
        };
        let source = pkg.source.clone();
        let size = pkg.size;
        let delta = cell
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || -> Option<Arc<Vec<u8>>> {
                    let data = std::fs::read(&source).ok()?;
                    let sig = fast_rsync::Signature::deserialize(basis.signature).ok()?;
                    let mut out = Vec::new();
                    fast_rsync::diff(&sig.index(), &data, &mut out).ok()?;
                    // Not worth it unless clearly smaller than the whole file.
                    ((out.len() as u64) < size.saturating_mul(9) / 10).then(|| Arc::new(out))
                })
                .await
                .ok()
                .flatten()
            })
            .await
            .clone()?;
        Some((key.0, delta))
    }
}

/// Reads up to `CHUNK` bytes into `buf`'s spare capacity (no zero-filling).
fn read_chunk(f: &mut std::fs::File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::Read;
    f.take(CHUNK as u64).read_to_end(buf)
}

/// Deltas already computed, by (basis, new file): a fan-out to many targets holding the same
/// earlier version computes the delta once.
/// One cell per (basis, new file): the first target computes the delta, the others wait for it.
type DeltaCell = Arc<tokio::sync::OnceCell<Option<Arc<Vec<u8>>>>>;
type DeltaCache = std::sync::Mutex<Vec<((String, String), DeltaCell)>>;

fn delta_cache() -> &'static DeltaCache {
    static CACHE: std::sync::OnceLock<DeltaCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// How many deltas are kept (most recent first).
const DELTA_CACHE_ENTRIES: usize = 4;

fn err(e: RpcError) -> TargetError {
    TargetError::Other(e.to_string())
}

fn unexpected(m: &Message) -> TargetError {
    TargetError::Other(format!("unexpected reply from the agent: {}", m.kind()))
}

impl Target for AgentTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn run_script<'a>(
        &'a self,
        req: ScriptRequest,
        out: &'a dyn ScriptOutput,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ScriptOutcome, TargetError>> {
        Box::pin(self.run(req, out, cancel))
    }

    fn put_package<'a>(
        &'a self,
        pkg: &'a PackageFile,
        force: bool,
        _task: &'a TaskRef,
    ) -> BoxFuture<'a, Result<Option<Transferred>, TargetError>> {
        Box::pin(async move {
            if !force {
                let r = self
                    .call(
                        Message::PackageCacheLookup(PackageCacheLookup {
                            sha256: pkg.sha256.clone(),
                        }),
                        self.call_timeout(),
                    )
                    .await
                    .map_err(err)?;
                if let Message::PackageCacheReply(c) = r {
                    if c.present && c.size == Some(pkg.size) {
                        return Ok(None);
                    }
                }
            }
            // A delta against an earlier version when the target has one; the whole file
            // when there is none, or the delta does not rebuild the file exactly.
            if !force {
                if let Some((basis, delta)) = self.try_delta(pkg).await {
                    match self.upload(pkg, Some((&basis, &delta))).await {
                        Ok(bytes) => {
                            return Ok(Some(Transferred {
                                bytes,
                                delta_from: Some(basis),
                            }));
                        }
                        Err(e) => {
                            tracing::warn!(target = %self.name, error = %e, "delta transfer failed; sending the whole package");
                        }
                    }
                }
            }
            // One retry from the start if the agent lost the transfer (it restarted).
            let bytes = match self.upload(pkg, None).await {
                Err(RpcError::Agent(e)) if e.code == ErrorCode::UnknownTransfer => {
                    self.upload(pkg, None).await.map_err(err)?
                }
                r => r.map_err(err)?,
            };
            Ok(Some(Transferred {
                bytes,
                delta_from: None,
            }))
        })
    }

    fn package_stage<'a>(
        &'a self,
        op: PackageOp,
        task: &'a TaskRef,
    ) -> BoxFuture<'a, Result<PackageStageReply, TargetError>> {
        Box::pin(async move {
            let msg = Message::PackageStage(PackageStage {
                task_id: task.task_id.clone(),
                epoch: task.epoch,
                op,
            });
            match self.call(msg, self.call_timeout()).await {
                Ok(Message::PackageStageReply(r)) => Ok(r),
                Ok(other) => Err(unexpected(&other)),
                Err(RpcError::Agent(e)) => Err(TargetError::Other(e.message)),
                Err(e) => Err(err(e)),
            }
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<HealthInfo, TargetError>> {
        Box::pin(async move {
            let conn = self
                .connector
                .connect(Duration::from_secs(5))
                .await
                .map_err(err)?;
            let t = Duration::from_secs(20);
            let caps = match conn.call(Message::Capabilities, t).await.map_err(err)? {
                Message::CapabilitiesReply(c) => c,
                other => return Err(unexpected(&other)),
            };
            let health = match conn.call(Message::Health, t).await.map_err(err)? {
                Message::HealthReply(h) => h,
                other => return Err(unexpected(&other)),
            };
            Ok(HealthInfo {
                healthy: health.healthy,
                warnings: health.warnings,
                agent_version: caps.agent_version,
                os: format!("{} {}", caps.os, caps.arch),
                running_scripts: health.running_scripts,
            })
        })
    }
}

/// The executor's way to agents: a `TargetProvider` over the hub.
pub struct HubTargets {
    pub hub: Arc<AgentHub>,
    pub retry_window: Duration,
}

impl TargetProvider for HubTargets {
    fn target(&self, machine: &ferry_domain::Machine) -> Result<Arc<dyn Target>, String> {
        match machine.endpoint.communication_style.as_str() {
            "TentaclePassive" | "TentacleActive" => Ok(Arc::new(AgentTarget::new(
                self.hub.clone(),
                AgentEndpoint::from_machine(machine),
                self.retry_window,
            ))),
            other => Err(format!("communication style '{other}' is not supported")),
        }
    }
}
