//! SSH targets. The server opens an SSH session (russh), checks the host key against the
//! fingerprint pinned when the target was created, authenticates with the target's account,
//! makes sure its own `ferry` binary is on the target (uploaded once, hash-checked), and runs
//! `ferry agent stdio` on a channel. From then on the target speaks the same protocol as an
//! agent: the executor drives it with `ferry_agent::remote::AgentTarget`, so step semantics,
//! the bootstrap, tickets, uploads and package stages are identical. One session per target is
//! kept open and shared by every step.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_agent::remote::Connector;
use ferry_agent::rpc::{RpcConn, RpcError};
use ferry_agent::serve::BoxFuture;
use ferry_agent::wire;
use ferry_protocol::{DEFAULT_MAX_FRAME, FrameDecoder};
use russh::ChannelMsg;
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use sha2::Digest;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

/// Where a target's agent lives: `$FERRY_HOME` if the login sets it (sshd's `SetEnv`, the
/// login's profile), else `~/.ferry`. A shell prefix that sets `D` to it.
const REMOTE_DIR: &str = r#"D="${FERRY_HOME:-$HOME/.ferry}";"#;

/// How an SSH target is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshEndpoint {
    pub machine_id: String,
    pub name: String,
    pub host: String,
    pub port: u16,
    /// `SHA256:<base64>`, as OpenSSH prints it.
    pub fingerprint: String,
    pub account_id: String,
}

/// The login of an account.
#[derive(Clone)]
pub enum SshAuth {
    Key {
        pem: String,
        passphrase: Option<String>,
    },
    Password(String),
}

#[derive(Clone)]
pub struct SshCredentials {
    pub username: String,
    pub auth: SshAuth,
}

impl std::fmt::Debug for SshCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.auth {
            SshAuth::Key { .. } => "key",
            SshAuth::Password(_) => "password",
        };
        write!(f, "SshCredentials({}, {kind})", self.username)
    }
}

/// What the pool asks the server for, and tells it.
pub trait SshEvents: Send + Sync {
    /// The account's username and secret (opened with the master key).
    fn credentials(&self, account_id: &str) -> BoxFuture<'_, Result<SshCredentials, String>>;
    /// The host presented another key than the pinned one.
    fn host_key_mismatch(&self, ep: &SshEndpoint, presented: &str);
}

/// The `ferry` binary the server uploads to targets (its own).
pub struct AgentBinary {
    path: PathBuf,
    sha256: tokio::sync::OnceCell<String>,
}

impl AgentBinary {
    pub fn new(path: PathBuf) -> AgentBinary {
        AgentBinary {
            path,
            sha256: tokio::sync::OnceCell::new(),
        }
    }

    /// This process's own executable.
    pub fn current() -> Result<AgentBinary, String> {
        std::env::current_exe()
            .map(AgentBinary::new)
            .map_err(|e| format!("cannot find this program's binary: {e}"))
    }

    async fn sha256(&self) -> Result<&str, String> {
        self.sha256
            .get_or_try_init(|| async {
                let path = self.path.clone();
                tokio::task::spawn_blocking(move || -> Result<String, String> {
                    let mut f = std::fs::File::open(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    let mut h = sha2::Sha256::new();
                    std::io::copy(&mut f, &mut h)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    Ok(hex::encode(h.finalize()))
                })
                .await
                .map_err(|e| e.to_string())?
            })
            .await
            .map(String::as_str)
    }
}

/// Timeouts of SSH sessions.
#[derive(Clone, Debug)]
pub struct SshOptions {
    pub connect_timeout: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            connect_timeout: Duration::from_secs(15),
        }
    }
}

struct Session {
    ep: SshEndpoint,
    handle: client::Handle<HostKeyCheck>,
    conn: RpcConn,
}

/// Open SSH sessions, one per target.
pub struct SshPool {
    sessions: Mutex<HashMap<String, Arc<Mutex<Option<Session>>>>>,
    binary: AgentBinary,
    events: Arc<dyn SshEvents>,
    options: SshOptions,
}

impl SshPool {
    pub fn new(
        binary: AgentBinary,
        events: Arc<dyn SshEvents>,
        options: SshOptions,
    ) -> Arc<SshPool> {
        Arc::new(SshPool {
            sessions: Mutex::new(HashMap::new()),
            binary,
            events,
            options,
        })
    }

    /// The target's agent connection: the open one, or a new session.
    pub async fn connection(&self, ep: &SshEndpoint) -> Result<RpcConn, RpcError> {
        let slot = {
            let mut s = self.sessions.lock().await;
            s.entry(ep.machine_id.clone())
                .or_insert_with(|| Arc::new(Mutex::new(None)))
                .clone()
        };
        let mut slot = slot.lock().await;
        if let Some(s) = slot.as_ref() {
            if !s.conn.is_closed() && s.ep == *ep && !s.handle.is_closed() {
                return Ok(s.conn.clone());
            }
        }
        if let Some(old) = slot.take() {
            old.conn.close("replaced by a new SSH session");
            let _ = old
                .handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
        let session = self.open(ep).await?;
        let conn = session.conn.clone();
        *slot = Some(session);
        Ok(conn)
    }

    async fn open(&self, ep: &SshEndpoint) -> Result<Session, RpcError> {
        let creds = self
            .events
            .credentials(&ep.account_id)
            .await
            .map_err(RpcError::Refused)?;
        let addr = format!("{}:{}", ep.host, ep.port);
        let tcp = tokio::time::timeout(
            self.options.connect_timeout,
            tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)),
        )
        .await
        .map_err(|_| RpcError::Connect(format!("connecting to {addr} timed out")))?
        .map_err(|e| RpcError::Connect(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let presented = Arc::new(std::sync::Mutex::new(None::<String>));
        let check = HostKeyCheck {
            expected: ep.fingerprint.clone(),
            presented: presented.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            ..client::Config::default()
        });
        let connected = tokio::time::timeout(
            self.options.connect_timeout,
            client::connect_stream(config, tcp, check),
        )
        .await
        .map_err(|_| RpcError::Connect(format!("the SSH handshake with {addr} timed out")))?;
        let mut handle = match connected {
            Ok(h) => h,
            Err(e) => {
                let shown = presented.lock().ok().and_then(|p| p.clone());
                if let Some(p) = shown.filter(|p| *p != ep.fingerprint) {
                    self.events.host_key_mismatch(ep, &p);
                    return Err(RpcError::Untrusted(format!(
                        "the host key of {} ({addr}) has changed: it presented {p}, but {} was pinned when the target was created; nothing was run",
                        ep.name, ep.fingerprint
                    )));
                }
                return Err(RpcError::Connect(format!("SSH with {addr}: {e}")));
            }
        };
        let user = creds.username.clone();
        let ok = match &creds.auth {
            SshAuth::Key { pem, passphrase } => {
                let key =
                    russh::keys::decode_secret_key(pem, passphrase.as_deref()).map_err(|e| {
                        RpcError::Refused(format!(
                            "the private key of the target's account cannot be used: {e}"
                        ))
                    })?;
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| RpcError::Connect(format!("SSH with {addr}: {e}")))?
                    .flatten();
                handle
                    .authenticate_publickey(
                        user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
            }
            SshAuth::Password(pw) => handle.authenticate_password(user.clone(), pw.clone()).await,
        }
        .map_err(|e| RpcError::Connect(format!("SSH with {addr}: {e}")))?;
        if !ok.success() {
            return Err(RpcError::Refused(format!(
                "{addr} refused the login as '{user}' with the target's account (wrong key or password?)"
            )));
        }
        let binary = self.ensure_binary(&handle, &addr).await?;
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| RpcError::Connect(format!("SSH with {addr}: {e}")))?;
        channel
            .exec(
                true,
                format!(r#"{REMOTE_DIR} exec "$D/{binary}" agent stdio --data-dir "$D/agent""#),
            )
            .await
            .map_err(|e| RpcError::Connect(format!("SSH with {addr}: {e}")))?;
        let conn = pump(channel, format!("{} (ssh {addr})", ep.name));
        Ok(Session {
            ep: ep.clone(),
            handle,
            conn,
        })
    }

    /// Puts this server's `ferry` binary on the target unless it is there (by hash); returns
    /// its path relative to the home directory.
    async fn ensure_binary(
        &self,
        handle: &client::Handle<HostKeyCheck>,
        addr: &str,
    ) -> Result<String, RpcError> {
        let sha = self.binary.sha256().await.map_err(RpcError::Refused)?;
        // Relative to $D.
        let path = format!("bin/ferry-{}", &sha[..16]);
        let (code, out, _) = exec(
            handle,
            &format!(r#"{REMOTE_DIR} uname -sm; test -x "$D/{path}" && echo present"#),
            None,
        )
        .await
        .map_err(|e| RpcError::Connect(format!("SSH with {addr}: {e}")))?;
        let out = String::from_utf8_lossy(&out).to_string();
        let platform = out.lines().next().unwrap_or_default().trim().to_string();
        let want = format!("Linux {}", std::env::consts::ARCH);
        if code != 0 && !out.contains("present") && platform.is_empty() {
            return Err(RpcError::Refused(format!(
                "{addr} cannot run commands for this login"
            )));
        }
        if platform != want {
            return Err(RpcError::Refused(format!(
                "{addr} is '{platform}'; this server can only run its agent on '{want}'"
            )));
        }
        if out.lines().any(|l| l.trim() == "present") {
            return Ok(path);
        }
        tracing::info!(target = %addr, "uploading the agent binary");
        let partial = format!("bin/.ferry-{}.partial", &sha[..16]);
        let file = tokio::fs::File::open(&self.binary.path)
            .await
            .map_err(|e| RpcError::Refused(format!("cannot read the agent binary: {e}")))?;
        let (code, _, err) = exec(
            handle,
            &format!(
                r#"{REMOTE_DIR} umask 077 && mkdir -p "$D/bin" && cat > "$D/{partial}" && chmod 700 "$D/{partial}""#
            ),
            Some(file),
        )
        .await
        .map_err(|e| RpcError::Connect(format!("SSH with {addr}: {e}")))?;
        if code != 0 {
            return Err(RpcError::Refused(format!(
                "could not put the agent on {addr}: {}",
                String::from_utf8_lossy(&err).trim()
            )));
        }
        let (code, out, _) = exec(
            handle,
            &format!(
                r#"{REMOTE_DIR} sha256sum "$D/{partial}" && mv -f "$D/{partial}" "$D/{path}""#
            ),
            None,
        )
        .await
        .map_err(|e| RpcError::Connect(format!("SSH with {addr}: {e}")))?;
        let got = String::from_utf8_lossy(&out);
        if code != 0 || !got.starts_with(sha) {
            return Err(RpcError::Connect(format!(
                "the agent binary arrived damaged on {addr}; it will be sent again"
            )));
        }
        Ok(path)
    }
}

/// Runs a command, feeding `stdin` if given; returns the exit code, stdout and stderr.
async fn exec(
    handle: &client::Handle<HostKeyCheck>,
    command: &str,
    stdin: Option<tokio::fs::File>,
) -> Result<(u32, Vec<u8>, Vec<u8>), russh::Error> {
    let mut channel = handle.channel_open_session().await?;
    channel.exec(true, command).await?;
    if let Some(mut f) = stdin {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).await.map_err(russh::Error::IO)?;
            if n == 0 {
                break;
            }
            channel.data(&buf[..n]).await?;
        }
        channel.eof().await?;
    }
    let (mut code, mut out, mut err) = (255u32, Vec::new(), Vec::new());
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => code = exit_status,
            _ => {}
        }
    }
    Ok((code, out, err))
}

/// Turns the channel running `ferry agent stdio` into an agent connection.
fn pump(channel: russh::Channel<client::Msg>, peer: String) -> RpcConn {
    let (mut read_half, write_half) = channel.split();
    let (in_tx, in_rx) = tokio::sync::mpsc::channel(64);
    let who = peer.clone();
    tokio::spawn(async move {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut stderr_tail = String::new();
        loop {
            let end = match read_half.wait().await {
                Some(ChannelMsg::Data { data }) => match dec.feed(&data) {
                    Ok(envs) => {
                        for env in envs {
                            if in_tx.send(Ok(env)).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Err(e) => format!("malformed frame: {e}"),
                },
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let text = String::from_utf8_lossy(&data).to_string();
                    tracing::debug!(peer = %who, "agent: {}", text.trim_end());
                    stderr_tail.push_str(&text);
                    if stderr_tail.len() > 2000 {
                        let cut = stderr_tail.len() - 1000;
                        let cut = (cut..stderr_tail.len())
                            .find(|i| stderr_tail.is_char_boundary(*i))
                            .unwrap_or(stderr_tail.len());
                        stderr_tail.drain(..cut);
                    }
                    continue;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    format!("the agent on the target exited with code {exit_status}")
                }
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                    "the SSH session ended".to_string()
                }
                Some(_) => continue,
            };
            let last = stderr_tail
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string();
            let why = if last.is_empty() {
                end
            } else {
                format!("{end} ({last})")
            };
            let _ = in_tx.send(Err(why)).await;
            return;
        }
    });
    let out_tx = wire::frame_writer(write_half.make_writer());
    RpcConn::spawn_channels(in_rx, out_tx, peer)
}

/// Checks the host key against the pinned fingerprint, remembering what was presented.
struct HostKeyCheck {
    expected: String,
    presented: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fp = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.fingerprint(HashAlg::Sha256).to_string()
            }
            russh::keys::PublicKeyOrCertificate::Certificate(c) => {
                c.public_key().fingerprint(HashAlg::Sha256).to_string()
            }
        };
        let ok = fp == self.expected;
        if let Ok(mut p) = self.presented.lock() {
            *p = Some(fp);
        }
        Ok(ok)
    }
}

/// The executor's connector for one SSH target.
pub struct SshConnector {
    pub pool: Arc<SshPool>,
    pub ep: SshEndpoint,
}

impl Connector for SshConnector {
    fn connect(&self, _wait: Duration) -> BoxFuture<'_, Result<RpcConn, RpcError>> {
        Box::pin(self.pool.connection(&self.ep))
    }
}
