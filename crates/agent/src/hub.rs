//! The server's side of agent connections.
//!
//! - **Listening agents**: the hub dials `https://host:port/` on demand, pinning the machine's
//!   registered thumbprint, and keeps the connection for later steps.
//! - **Polling agents**: the hub serves the polling endpoint; an agent connects, proves its
//!   certificate (pinned against every registered polling machine), says `Hello` with its
//!   subscription id, and waits for requests. A request for a polling machine waits (within
//!   the caller's retry window) until its agent is connected.
//!
//! A certificate that is not pinned closes the connection during the TLS handshake, before any
//! frame is read, and is reported through [`HubEvents`] (the server writes an audit event).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_crypto::tls::{self, Identity, PinSet, Thumbprint};
use ferry_protocol::{AgentError, Envelope, ErrorCode, Message};
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::rpc::{RpcConn, RpcError};
use crate::wire;

/// How an agent is reached: from the machine resource's endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentEndpoint {
    pub machine_id: String,
    pub name: String,
    /// `TentaclePassive` (listening) or `TentacleActive` (polling).
    pub style: String,
    /// `https://host:port/` or `poll://subscription/`.
    pub uri: String,
    pub thumbprint: String,
}

impl AgentEndpoint {
    pub fn from_machine(m: &ferry_domain::Machine) -> AgentEndpoint {
        AgentEndpoint {
            machine_id: m.id.clone(),
            name: m.name.clone(),
            style: m.endpoint.communication_style.clone(),
            uri: m.endpoint.uri.clone(),
            thumbprint: m.endpoint.thumbprint.clone(),
        }
    }

    fn subscription(&self) -> Option<String> {
        self.uri
            .strip_prefix("poll://")
            .map(|s| s.trim_end_matches('/').to_ascii_lowercase())
    }

    fn host_port(&self) -> Result<(String, u16), String> {
        let rest = self
            .uri
            .strip_prefix("https://")
            .ok_or_else(|| format!("'{}' is not an https:// address", self.uri))?;
        let hostport = rest.split('/').next().unwrap_or_default();
        if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6.split_once(']').unwrap_or((v6, ""));
            let port = p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(crate::DEFAULT_LISTEN_PORT);
            return Ok((h.to_string(), port));
        }
        match hostport.rsplit_once(':') {
            Some((h, p)) => Ok((
                h.to_string(),
                p.parse()
                    .map_err(|_| format!("'{}' has an invalid port", self.uri))?,
            )),
            None => Ok((hostport.to_string(), crate::DEFAULT_LISTEN_PORT)),
        }
    }
}

/// What the hub tells the server about, and asks it for.
pub trait HubEvents: Send + Sync {
    /// A peer presented a certificate that is not pinned. `machine` is set when the server was
    /// dialling a known listening agent.
    fn untrusted_certificate(&self, remote: &str, presented: &str, machine: Option<&AgentEndpoint>);

    /// The agent machines as stored now (used when a polling agent presents a thumbprint the
    /// hub does not know yet: it may have registered a moment ago).
    fn machines(&self) -> crate::serve::BoxFuture<'_, Vec<AgentEndpoint>> {
        Box::pin(async { Vec::new() })
    }
}

/// Timeouts of the hub.
#[derive(Clone, Debug)]
pub struct HubOptions {
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(60),
        }
    }
}

struct Polled {
    conn: RpcConn,
    thumbprint: Thumbprint,
}

/// The server's agent connections.
pub struct AgentHub {
    identity: Identity,
    options: HubOptions,
    events: Arc<dyn HubEvents>,
    /// Subscription id → the thumbprints allowed to hold it.
    registry: std::sync::RwLock<HashMap<String, BTreeSet<Thumbprint>>>,
    /// Every polling machine's thumbprint: the TLS server's client pins.
    polling_pins: PinSet,
    polling: std::sync::Mutex<HashMap<String, Polled>>,
    polling_changed: Notify,
    /// Open connections to listening agents by machine id, with the endpoint they were made for.
    listening: tokio::sync::Mutex<HashMap<String, (AgentEndpoint, RpcConn)>>,
    /// When each refused thumbprint was last audited.
    refused: std::sync::Mutex<HashMap<Thumbprint, tokio::time::Instant>>,
}

impl AgentHub {
    pub fn new(
        identity: Identity,
        options: HubOptions,
        events: Arc<dyn HubEvents>,
    ) -> Arc<AgentHub> {
        Arc::new(AgentHub {
            identity,
            options,
            events,
            registry: std::sync::RwLock::new(HashMap::new()),
            polling_pins: PinSet::new(),
            polling: std::sync::Mutex::new(HashMap::new()),
            polling_changed: Notify::new(),
            listening: tokio::sync::Mutex::new(HashMap::new()),
            refused: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Whether a refused thumbprint should be audited now (not within the last minute).
    fn first_sighting(&self, tp: &Thumbprint) -> bool {
        let Ok(mut r) = self.refused.lock() else {
            return true;
        };
        let now = tokio::time::Instant::now();
        r.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
        if r.len() > 10_000 {
            return false;
        }
        if r.contains_key(tp) {
            return false;
        }
        r.insert(tp.clone(), now);
        true
    }

    pub fn options(&self) -> &HubOptions {
        &self.options
    }

    pub fn thumbprint(&self) -> &Thumbprint {
        self.identity.thumbprint()
    }

    /// Replaces the set of known machines (called when machines change). Polling agents whose
    /// machine is gone or whose thumbprint changed are disconnected.
    pub fn set_machines(&self, machines: &[AgentEndpoint]) {
        let mut reg: HashMap<String, BTreeSet<Thumbprint>> = HashMap::new();
        for m in machines {
            if let (Some(sub), Ok(tp)) = (m.subscription(), m.thumbprint.parse::<Thumbprint>()) {
                reg.entry(sub).or_default().insert(tp);
            }
        }
        self.polling_pins
            .replace(reg.values().flat_map(|s| s.iter().cloned()));
        if let Ok(mut p) = self.polling.lock() {
            p.retain(|sub, polled| {
                let keep = reg.get(sub).is_some_and(|s| s.contains(&polled.thumbprint));
                if !keep {
                    polled
                        .conn
                        .close("the machine was removed or its thumbprint changed");
                }
                keep
            });
        }
        if let Ok(mut r) = self.registry.write() {
            *r = reg;
        }
    }

    /// How many polling agents are connected now.
    pub fn polling_connected(&self) -> usize {
        self.polling
            .lock()
            .map(|p| p.values().filter(|x| !x.conn.is_closed()).count())
            .unwrap_or(0)
    }

    /// Whether the polling agent with this subscription is connected.
    pub fn is_polling_connected(&self, uri: &str) -> bool {
        let ep = AgentEndpoint {
            machine_id: String::new(),
            name: String::new(),
            style: "TentacleActive".into(),
            uri: uri.to_string(),
            thumbprint: String::new(),
        };
        let Some(sub) = ep.subscription() else {
            return false;
        };
        self.polling
            .lock()
            .map(|p| p.get(&sub).is_some_and(|x| !x.conn.is_closed()))
            .unwrap_or(false)
    }

    /// A connection to the agent: an open one, a new dial (listening), or the polling agent's
    /// (waiting up to `wait` for it to connect).
    pub async fn connection(
        &self,
        ep: &AgentEndpoint,
        wait: Duration,
    ) -> Result<RpcConn, RpcError> {
        match ep.style.as_str() {
            "TentaclePassive" => self.dial(ep).await,
            "TentacleActive" => self.polled(ep, wait).await,
            other => Err(RpcError::Connect(format!(
                "communication style '{other}' is not an agent"
            ))),
        }
    }

    async fn polled(&self, ep: &AgentEndpoint, wait: Duration) -> Result<RpcConn, RpcError> {
        let sub = ep
            .subscription()
            .ok_or_else(|| RpcError::Connect(format!("'{}' is not a poll:// address", ep.uri)))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.polling_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(p) = self.polling.lock() {
                if let Some(x) = p.get(&sub) {
                    if !x.conn.is_closed() {
                        return Ok(x.conn.clone());
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RpcError::Connect(format!(
                    "the polling agent {} is not connected",
                    ep.name
                )));
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn dial(&self, ep: &AgentEndpoint) -> Result<RpcConn, RpcError> {
        let mut cache = self.listening.lock().await;
        if let Some((known, c)) = cache.get(&ep.machine_id) {
            if !c.is_closed() && known == ep {
                return Ok(c.clone());
            }
            // The machine's address or thumbprint changed: never reuse the old connection.
            c.close("the machine's endpoint changed");
        }
        let pin: Thumbprint = ep.thumbprint.parse().map_err(|e| {
            RpcError::Untrusted(format!("the machine's thumbprint is invalid: {e}"))
        })?;
        let pins = PinSet::new();
        pins.insert(pin);
        let config = tls::client_config(&self.identity, pins)
            .map_err(|e| RpcError::Connect(e.to_string()))?;
        let (host, port) = ep.host_port().map_err(RpcError::Connect)?;
        let remote = format!("{host}:{port}");
        let tcp = tokio::time::timeout(
            self.options.connect_timeout,
            TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| RpcError::Connect(format!("connecting to {remote} timed out")))?
        .map_err(|e| RpcError::Connect(format!("{remote}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.clone()).unwrap_or_else(|_| {
            ServerName::try_from("ferry-agent")
                .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = match tokio::time::timeout(wire::HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
            .await
        {
            Err(_) => {
                return Err(RpcError::Connect(format!(
                    "the TLS handshake with {remote} timed out"
                )));
            }
            Ok(Err(e)) => {
                if let Some(m) = tls::pin_mismatch(&e) {
                    self.events
                        .untrusted_certificate(&remote, m.presented.as_str(), Some(ep));
                    return Err(RpcError::Untrusted(format!(
                        "the agent at {remote} presented a certificate with thumbprint {}, not the registered {}; nothing was sent",
                        m.presented, ep.thumbprint
                    )));
                }
                return Err(RpcError::Connect(format!("TLS with {remote}: {e}")));
            }
            Ok(Ok(t)) => t,
        };
        let url = format!("wss://{host}:{port}{}", wire::WS_PATH);
        let (ws, _) = tokio::time::timeout(
            wire::HANDSHAKE_TIMEOUT,
            tokio_tungstenite::client_async_with_config(url, tls, Some(wire::ws_config())),
        )
        .await
        .map_err(|_| RpcError::Connect(format!("the WebSocket handshake with {remote} timed out")))?
        .map_err(|e| RpcError::Connect(format!("WebSocket with {remote}: {e}")))?;
        let conn = RpcConn::spawn(ws, format!("{} ({remote})", ep.name));
        cache.insert(ep.machine_id.clone(), (ep.clone(), conn.clone()));
        Ok(conn)
    }

    /// Serves the polling endpoint until `shutdown`.
    pub async fn serve_polling(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) {
        let config = match tls::server_config(&self.identity, self.polling_pins.clone()) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!(error = %e, "the polling endpoint cannot start");
                return;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let (tcp, addr) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed on the polling endpoint");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            let hub = self.clone();
            let acceptor = acceptor.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = hub.accept_polling(acceptor, tcp, addr, stop).await {
                    tracing::debug!(remote = %addr, error = %e, "polling connection refused");
                }
            });
        }
        // Close every polling connection so agents reconnect elsewhere.
        if let Ok(mut p) = self.polling.lock() {
            for (_, x) in p.drain() {
                x.conn.close("the server is shutting down");
            }
        }
    }

    async fn accept_polling(
        &self,
        acceptor: tokio_rustls::TlsAcceptor,
        tcp: TcpStream,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> Result<(), String> {
        let _ = tcp.set_nodelay(true);
        let tls = match tokio::time::timeout(wire::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Err(_) => return Err("TLS handshake timed out".into()),
            Ok(Err(e)) => {
                if let Some(m) = tls::pin_mismatch(&e) {
                    // A machine registered since the last refresh is not an intruder: reload,
                    // and let its next attempt in. Anything else is audited (once a minute per
                    // thumbprint, so a stranger cannot flood the audit log).
                    let fresh = self.events.machines().await;
                    self.set_machines(&fresh);
                    if !self.polling_pins.contains(&m.presented)
                        && self.first_sighting(&m.presented)
                    {
                        self.events.untrusted_certificate(
                            &addr.to_string(),
                            m.presented.as_str(),
                            None,
                        );
                    }
                }
                return Err(format!("TLS: {e}"));
            }
            Ok(Ok(t)) => t,
        };
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Thumbprint::of_der(c.as_ref()))
            .ok_or("no client certificate")?;
        let mut ws = tokio::time::timeout(
            wire::HANDSHAKE_TIMEOUT,
            tokio_tungstenite::accept_async_with_config(tls, Some(wire::ws_config())),
        )
        .await
        .map_err(|_| "WebSocket handshake timed out".to_string())?
        .map_err(|e| format!("WebSocket: {e}"))?;
        let first = tokio::time::timeout(wire::HANDSHAKE_TIMEOUT, ws.next())
            .await
            .map_err(|_| "no hello".to_string())?
            .ok_or("closed before hello")?
            .map_err(|e| e.to_string())?;
        let env = wire::decode(&first)
            .map_err(|e| e.to_string())?
            .ok_or("no hello")?;
        let Message::Hello(hello) = env.message else {
            return Err("the first message was not a hello".into());
        };
        let sub = hello.agent_id.trim().to_ascii_lowercase();
        let allowed = self
            .registry
            .read()
            .map(|r| r.get(&sub).is_some_and(|s| s.contains(&presented)))
            .unwrap_or(false);
        if !allowed {
            let refuse = Message::Error(AgentError {
                code: ErrorCode::BadRequest,
                message: format!(
                    "no polling machine with subscription '{sub}' has thumbprint {presented}"
                ),
                current_epoch: None,
                expected_offset: None,
            });
            if let Ok(m) = wire::encode(&Envelope::new(env.id, refuse)) {
                let _ = ws.send(m).await;
            }
            let _ = ws.close(None).await;
            return Err(format!(
                "subscription '{sub}' is not registered for {presented}"
            ));
        }
        let ack = wire::encode(&Envelope::new(env.id, Message::Ack)).map_err(|e| e.to_string())?;
        ws.send(ack).await.map_err(|e| e.to_string())?;
        let conn = RpcConn::spawn(ws, format!("poll://{sub} ({addr})"));
        if let Ok(mut p) = self.polling.lock() {
            if let Some(old) = p.insert(
                sub.clone(),
                Polled {
                    conn: conn.clone(),
                    thumbprint: presented,
                },
            ) {
                old.conn
                    .close("replaced by a newer connection from the same agent");
            }
        }
        self.polling_changed.notify_waiters();
        tracing::info!(subscription = %sub, remote = %addr, "polling agent connected");
        tokio::select! {
            _ = conn.closed() => {}
            _ = shutdown.cancelled() => conn.close("the server is shutting down"),
        }
        if let Ok(mut p) = self.polling.lock() {
            if p.get(&sub).is_some_and(|x| x.conn.is_closed()) {
                p.remove(&sub);
            }
        }
        Ok(())
    }
}
