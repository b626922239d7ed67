//! [`AgentTarget`]: the executor's `Target` for a listening or polling agent. Every call is
//! retried on a new connection while the machine's retry window lasts; requests are
//! idempotent (script tickets, upload offsets), so a retry never runs anything twice.

use std::sync::Arc;
use std::time::Duration;

use ferry_executor::package_ops::PackageFile;
use ferry_executor::target::{
    BoxFuture, HealthInfo, ScriptOutcome, ScriptOutput, ScriptRequest, Stream, Syntax, Target,
    TargetError, TargetProvider, TaskRef,
};
use ferry_protocol::{
    CancelScript, CompleteScript, ErrorCode, GetStatus, Message, NameValue, PackageCacheLookup,
    PackageOp, PackageStage, PackageStageReply, ScriptState, StartScript, Stream as WireStream,
    Syntax as WireSyntax, UploadBegin, UploadChunk, UploadEnd,
};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::hub::{AgentEndpoint, AgentHub};
use crate::rpc::RpcError;

/// Bytes per upload chunk (base64 in the frame: well under the 4 MiB frame limit).
const CHUNK: usize = 512 * 1024;
/// How long a status request may wait on the agent for new output.
const LONG_POLL_MS: u32 = 5_000;

/// A listening or polling agent.
pub struct AgentTarget {
    hub: Arc<AgentHub>,
    ep: AgentEndpoint,
    /// How long to keep retrying when the agent cannot be reached.
    retry_window: Duration,
}

impl AgentTarget {
    pub fn new(hub: Arc<AgentHub>, ep: AgentEndpoint, retry_window: Duration) -> AgentTarget {
        AgentTarget {
            hub,
            ep,
            retry_window,
        }
    }

    /// One request, retried on new connections within the retry window.
    async fn call(&self, msg: Message, timeout: Duration) -> Result<Message, RpcError> {
        let deadline = tokio::time::Instant::now() + self.retry_window;
        let mut delay = Duration::from_millis(100);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = match self.hub.connection(&self.ep, left).await {
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
                    tracing::debug!(agent = %self.ep.name, error = %e, "retrying");
                    tokio::time::sleep(
                        delay.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
                    )
                    .await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) if e.retryable() => {
                    return Err(RpcError::Connect(format!(
                        "{} could not be reached for {}s ({e})",
                        self.ep.name,
                        self.retry_window.as_secs()
                    )));
                }
                other => return other,
            }
        }
    }

    fn call_timeout(&self) -> Duration {
        self.hub.options().call_timeout
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
                r = self.call(get, timeout) => r.map_err(err)?,
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
                        self.ep.name
                    ))),
                    ScriptState::Unknown => Err(TargetError::Other(format!(
                        "{} has no record of the script (the agent may have lost its state)",
                        self.ep.name
                    ))),
                    ScriptState::Running => Err(TargetError::Other("still running".into())),
                };
            }
        }
    }

    async fn upload(&self, pkg: &PackageFile) -> Result<(), RpcError> {
        let transfer = uuid::Uuid::new_v4().simple().to_string();
        let begin = Message::UploadBegin(UploadBegin {
            transfer: transfer.clone(),
            name: Some(format!("{}{}", pkg.sha256, pkg.extension)),
            size: pkg.size,
            sha256: pkg.sha256.clone(),
        });
        self.call(begin, self.call_timeout()).await?;
        let mut file = tokio::fs::File::open(&pkg.source)
            .await
            .map_err(|e| RpcError::Protocol(format!("could not read the package: {e}")))?;
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(&mut file, &mut buf)
                .await
                .map_err(|e| RpcError::Protocol(format!("could not read the package: {e}")))?;
            if n == 0 {
                break;
            }
            let chunk = Message::UploadChunk(UploadChunk {
                transfer: transfer.clone(),
                offset,
                data: buf[..n].to_vec(),
            });
            self.call(chunk, self.call_timeout()).await?;
            offset += n as u64;
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
            Message::UploadDone(d) if d.sha256 == pkg.sha256 => Ok(()),
            other => Err(RpcError::Protocol(format!(
                "the upload ended with {}",
                other.kind()
            ))),
        }
    }
}

async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

fn err(e: RpcError) -> TargetError {
    TargetError::Other(e.to_string())
}

fn unexpected(m: &Message) -> TargetError {
    TargetError::Other(format!("unexpected reply from the agent: {}", m.kind()))
}

impl Target for AgentTarget {
    fn name(&self) -> &str {
        &self.ep.name
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
    ) -> BoxFuture<'a, Result<bool, TargetError>> {
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
                        return Ok(false);
                    }
                }
            }
            // One retry from the start if the agent lost the transfer (it restarted).
            match self.upload(pkg).await {
                Err(RpcError::Agent(e)) if e.code == ErrorCode::UnknownTransfer => {
                    self.upload(pkg).await.map_err(err)?
                }
                r => r.map_err(err)?,
            }
            Ok(true)
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
                .hub
                .connection(&self.ep, Duration::from_secs(5))
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
