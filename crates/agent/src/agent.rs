//! The agent process: its data directory, configuration, and the two ways it is reached.
//!
//! Data directory: `agent.crt.pem` / `agent.key.pem` (0600), `agent.json` (this file's
//! [`AgentConfig`]), `tickets.json` (script state), `scripts.log` (one line per started
//! script), `packages/` (cache by hash), `apps/` (installations), `work/`, `staging/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_crypto::tls::{self, Identity, PinSet, Thumbprint};
use ferry_protocol::{Hello, PROTOCOL_VERSION};
use rand::Rng;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::runtime::{AgentHandler, Runtime};
use crate::serve::serve;
use crate::wire;

pub const IDENTITY: &str = "agent";
pub const CONFIG_FILE: &str = "agent.json";

/// How the agent is reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Mode")]
pub enum Mode {
    /// Serves TLS on this address; the server connects.
    Listen {
        #[serde(rename = "Address")]
        address: String,
    },
    /// Dials the server's polling endpoint and keeps one connection.
    Poll {
        /// `host:port` of the server's polling endpoint.
        #[serde(rename = "Endpoint")]
        endpoint: String,
        /// The subscription id the machine was registered with (`poll://<id>/`).
        #[serde(rename = "SubscriptionId")]
        subscription_id: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentConfig {
    pub name: String,
    pub mode: Mode,
    /// The server thumbprints this agent trusts (several while keys rotate).
    pub trusted_server_thumbprints: Vec<String>,
    #[serde(default)]
    pub server_url: Option<String>,
    #[serde(default)]
    pub machine_id: Option<String>,
}

impl AgentConfig {
    pub fn load(data_dir: &Path) -> Result<AgentConfig, String> {
        let p = data_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            format!(
                "could not read {} ({e}); run `ferry agent register` or `ferry agent configure` first",
                p.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{} is invalid: {e}", p.display()))
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("could not create {}: {e}", data_dir.display()))?;
        let p = data_dir.join(CONFIG_FILE);
        let tmp = data_dir.join(format!(".{CONFIG_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .map_err(|e| format!("could not write {}: {e}", p.display()))
    }

    /// The trusted server thumbprints, checked.
    pub fn pins(&self) -> Result<PinSet, String> {
        let pins = PinSet::new();
        for t in &self.trusted_server_thumbprints {
            let tp: Thumbprint = t
                .parse()
                .map_err(|e| format!("trusted server thumbprint '{t}': {e}"))?;
            pins.insert(tp);
        }
        if pins.snapshot().is_empty() {
            return Err("the agent trusts no server thumbprint; run `ferry agent configure --trust THUMBPRINT`".into());
        }
        Ok(pins)
    }
}

/// Loads the agent's identity, or explains how to make one.
pub fn load_identity(data_dir: &Path) -> Result<Identity, String> {
    crate::identity::load(data_dir, IDENTITY)?.ok_or_else(|| {
        format!(
            "{} holds no agent identity; run `ferry agent create-identity --data-dir {}`",
            data_dir.display(),
            data_dir.display()
        )
    })
}

/// Runs the agent until `shutdown`.
pub async fn run(data_dir: PathBuf, shutdown: CancellationToken) -> Result<(), String> {
    let config = AgentConfig::load(&data_dir)?;
    let identity = load_identity(&data_dir)?;
    let pins = config.pins()?;
    let _lock = lock_data_dir(&data_dir, Duration::from_secs(5)).await?;
    let rt = Runtime::open(&data_dir, shutdown.clone())?;
    let handler = Arc::new(AgentHandler { rt });
    tracing::info!(
        name = %config.name,
        thumbprint = %identity.thumbprint(),
        "agent starting"
    );
    match &config.mode {
        Mode::Listen { address } => {
            listen(address, &identity, pins, handler, shutdown, |local| {
                // Tests and scripts wait for this line.
                println!("Ferry agent listening on {local}");
            })
            .await
        }
        Mode::Poll {
            endpoint,
            subscription_id,
        } => {
            poll(
                endpoint,
                subscription_id,
                &identity,
                pins,
                handler,
                shutdown,
            )
            .await
        }
    }
}

pub async fn listen(
    address: &str,
    identity: &Identity,
    pins: PinSet,
    handler: Arc<AgentHandler>,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    let config = tls::server_config(identity, pins).map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("could not listen on {address}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    on_listening(local);
    tracing::info!(%local, "listening");
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(wire::HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    match tls::pin_mismatch(&e) {
                        Some(m) => {
                            tracing::warn!(%remote, presented = %m.presented, "refused a server whose certificate is not trusted")
                        }
                        None => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    }
                    return;
                }
                Err(_) => return,
            };
            let ws = match tokio::time::timeout(
                wire::HANDSHAKE_TIMEOUT,
                tokio_tungstenite::accept_async_with_config(tls, Some(wire::ws_config())),
            )
            .await
            {
                Ok(Ok(ws)) => ws,
                _ => return,
            };
            let why = serve(ws, handler, None, stop).await;
            tracing::info!(%remote, reason = %why, "server connection ended");
        });
    }
}

/// Why a polling connection attempt ended.
enum PollEnd {
    /// Try again after a backoff.
    Retry(String),
    /// The server is not the one we trust: stop.
    Untrusted(String),
}

pub async fn poll(
    endpoint: &str,
    subscription: &str,
    identity: &Identity,
    pins: PinSet,
    handler: Arc<AgentHandler>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let config = Arc::new(tls::client_config(identity, pins).map_err(|e| e.to_string())?);
    let mut failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let started = tokio::time::Instant::now();
        match poll_once(
            endpoint,
            subscription,
            config.clone(),
            handler.clone(),
            shutdown.clone(),
        )
        .await
        {
            PollEnd::Untrusted(why) => {
                // No retry: a server with an unknown certificate is never trusted later.
                tracing::error!(reason = %why, "refusing to talk to the server");
                return Err(why);
            }
            PollEnd::Retry(why) => {
                if started.elapsed() > Duration::from_secs(30) {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                // Exponential backoff with full jitter: 0.25 s doubling up to 30 s.
                let cap = Duration::from_millis(250u64.saturating_mul(1u64 << failures.min(7)))
                    .min(Duration::from_secs(30));
                let delay = Duration::from_millis(
                    rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64),
                );
                tracing::info!(reason = %why, retry_in_ms = delay.as_millis() as u64, "polling connection ended");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }
}

async fn poll_once(
    endpoint: &str,
    subscription: &str,
    config: Arc<rustls::ClientConfig>,
    handler: Arc<AgentHandler>,
    shutdown: CancellationToken,
) -> PollEnd {
    let tcp =
        match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(endpoint)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return PollEnd::Retry(format!("connect to {endpoint}: {e}")),
            Err(_) => return PollEnd::Retry(format!("connect to {endpoint} timed out")),
        };
    let _ = tcp.set_nodelay(true);
    let host = endpoint
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(endpoint)
        .to_string();
    let name = ServerName::try_from(host.clone())
        .or_else(|_| ServerName::try_from("ferry-server"))
        .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = match tokio::time::timeout(wire::HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            if let Some(m) = tls::pin_mismatch(&e) {
                return PollEnd::Untrusted(format!(
                    "the server at {endpoint} presented a certificate with thumbprint {}, which this agent does not trust",
                    m.presented
                ));
            }
            return PollEnd::Retry(format!("TLS with {endpoint}: {e}"));
        }
        Err(_) => return PollEnd::Retry("TLS handshake timed out".into()),
    };
    let url = format!("wss://{host}{}", wire::WS_PATH);
    let ws = match tokio::time::timeout(
        wire::HANDSHAKE_TIMEOUT,
        tokio_tungstenite::client_async_with_config(url, tls, Some(wire::ws_config())),
    )
    .await
    {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return PollEnd::Retry(format!("WebSocket: {e}")),
        Err(_) => return PollEnd::Retry("WebSocket handshake timed out".into()),
    };
    tracing::info!(%endpoint, "connected to the server");
    let hello = Hello {
        agent_id: subscription.to_string(),
        agent_version: crate::AGENT_VERSION.to_string(),
        protocol_versions: vec![PROTOCOL_VERSION],
    };
    PollEnd::Retry(serve(ws, handler, Some(hello), shutdown).await)
}

/// Holds the data directory's lock file (`agent.lock`) so that two agent processes never share
/// one ticket state. Waits up to `wait` for an earlier process (an SSH session that has not
/// noticed its disconnect yet) to let go.
pub async fn lock_data_dir(data_dir: &Path, wait: Duration) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("could not create {}: {e}", data_dir.display()))?;
    let path = data_dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("could not open {}: {e}", path.display()))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another agent process is using {}",
                    data_dir.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("could not lock {}: {e}", path.display()));
            }
        }
    }
}

/// `ferry agent stdio`: one connection on standard input and output (length-prefixed frames),
/// for SSH targets: the server starts this over an SSH channel. Ends when the input closes;
/// scripts still running then are stopped (their step fails, naming the lost connection).
pub async fn stdio(data_dir: PathBuf, shutdown: CancellationToken) -> Result<(), String> {
    let _lock = lock_data_dir(&data_dir, Duration::from_secs(30)).await?;
    let rt = Runtime::open(&data_dir, shutdown.clone())?;
    let handler = Arc::new(AgentHandler { rt });
    let why = crate::serve::serve_framed(
        tokio::io::stdin(),
        tokio::io::stdout(),
        handler,
        shutdown.clone(),
    )
    .await;
    tracing::info!(reason = %why, "stdio connection ended");
    shutdown.cancel();
    Ok(())
}
