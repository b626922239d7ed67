//! The requester's end of a connection (the server's, in both modes): sends requests, matches
//! responses by id, times them out, keeps the connection alive with pings and notices when it
//! dies. One reader task and one writer task per connection; no thread per connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_protocol::{AgentError, Envelope, KeepAlive, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::wire;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// The connection closed (or was never made); retrying on a new one may work.
    #[error("the connection to the agent was lost: {0}")]
    Closed(String),
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
    /// Could not connect; retrying later may work.
    #[error("could not connect to the agent: {0}")]
    Connect(String),
    /// The peer presented a certificate (or host key) we do not trust. Never retried.
    #[error("{0}")]
    Untrusted(String),
    /// The peer refused us (wrong credentials) or cannot run the agent. Never retried.
    #[error("{0}")]
    Refused(String),
    /// The agent answered with an error.
    #[error("the agent refused the request: {0}")]
    Agent(AgentError),
    #[error("unexpected reply from the agent: {0}")]
    Protocol(String),
}

impl RpcError {
    /// Whether a retry (on a new connection) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            RpcError::Closed(_) | RpcError::Timeout(_) | RpcError::Connect(_)
        )
    }
}

struct Inner {
    /// Taken (dropped) on close, which closes the transport's writer and so the connection.
    out: std::sync::Mutex<Option<wire::Outgoing>>,
    pending: std::sync::Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    next: AtomicU64,
    closed: CancellationToken,
    reason: std::sync::Mutex<String>,
    peer: String,
}

/// A live connection to one agent. Cheap to clone.
#[derive(Clone)]
pub struct RpcConn {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RpcConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcConn({})", self.inner.peer)
    }
}

impl RpcConn {
    /// Takes over an established WebSocket (after TLS and any hello).
    pub fn spawn<S>(ws: WebSocketStream<S>, peer: String) -> RpcConn
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (incoming, outgoing) = wire::pump_ws(ws);
        RpcConn::spawn_channels(incoming, outgoing, peer)
    }

    /// Takes over a byte stream carrying length-prefixed frames (an SSH channel to
    /// `ferry agent stdio`).
    pub fn spawn_framed<R, W>(reader: R, writer: W, peer: String) -> RpcConn
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (incoming, outgoing) = wire::pump_framed(reader, writer);
        RpcConn::spawn_channels(incoming, outgoing, peer)
    }

    /// The transport-independent part: pings when idle, matches responses to requests,
    /// answers pings, and closes on silence, a transport error or a malformed frame.
    pub fn spawn_channels(
        mut incoming: wire::Incoming,
        outgoing: wire::Outgoing,
        peer: String,
    ) -> RpcConn {
        let inner = Arc::new(Inner {
            out: std::sync::Mutex::new(Some(outgoing)),
            pending: std::sync::Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            closed: CancellationToken::new(),
            reason: std::sync::Mutex::new(String::new()),
            peer,
        });
        // Pinger.
        let w = inner.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(wire::PING_EVERY);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let nonce = w.next.fetch_add(1, Ordering::Relaxed);
                        if !w.send(Envelope::new(nonce, Message::Ping(KeepAlive { nonce }))) {
                            w.close("write failed");
                            break;
                        }
                    }
                    _ = w.closed.cancelled() => break,
                }
            }
        });
        // Reader: responses to their waiters; pings answered; silence means death.
        let r = inner.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                let wait = wire::IDLE_LIMIT.saturating_sub(last.elapsed());
                let next = tokio::select! {
                    n = tokio::time::timeout(wait, incoming.recv()) => n,
                    _ = r.closed.cancelled() => break,
                };
                let env = match next {
                    Err(_) => {
                        r.close(&format!("nothing received for {:?}", wire::IDLE_LIMIT));
                        break;
                    }
                    Ok(None) => {
                        r.close("closed by the agent");
                        break;
                    }
                    Ok(Some(Err(why))) => {
                        if why.starts_with("malformed") {
                            tracing::warn!(peer = %r.peer, reason = %why, "bad frame from agent; closing");
                        }
                        r.close(&why);
                        break;
                    }
                    Ok(Some(Ok(env))) => env,
                };
                last = Instant::now();
                match env.message {
                    Message::Ping(k) => {
                        r.send(Envelope::new(env.id, Message::Pong(k)));
                    }
                    Message::Pong(_) => {}
                    other => {
                        let waiter = r.pending.lock().ok().and_then(|mut p| p.remove(&env.id));
                        if let Some(w) = waiter {
                            let _ = w.send(other);
                        }
                    }
                }
            }
            // Dropping `incoming` here ends the transport's reader; the pinger stops on close.
        });
        RpcConn { inner }
    }

    pub fn peer(&self) -> &str {
        &self.inner.peer
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Resolves when the connection has closed.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await
    }

    /// Closes the connection (pending calls fail with `Closed`).
    pub fn close(&self, why: &str) {
        self.inner.close(why);
    }

    /// Sends a request and waits for its response. An `Error` reply becomes `RpcError::Agent`.
    pub async fn call(&self, msg: Message, timeout: Duration) -> Result<Message, RpcError> {
        if self.is_closed() {
            return Err(RpcError::Closed(self.inner.reason()));
        }
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.inner.pending.lock() {
            p.insert(id, tx);
        }
        if !self.inner.send(Envelope::new(id, msg)) {
            self.forget(id);
            return Err(RpcError::Closed(self.inner.reason()));
        }
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, rx) => match r {
                Ok(Ok(Message::Error(e))) => Err(RpcError::Agent(e)),
                Ok(Ok(m)) => Ok(m),
                Ok(Err(_)) => Err(RpcError::Closed(self.inner.reason())),
                Err(_) => Err(RpcError::Timeout(timeout)),
            },
            _ = self.inner.closed.cancelled() => Err(RpcError::Closed(self.inner.reason())),
        };
        self.forget(id);
        result
    }

    fn forget(&self, id: u64) {
        if let Ok(mut p) = self.inner.pending.lock() {
            p.remove(&id);
        }
    }
}

impl Inner {
    fn send(&self, env: Envelope) -> bool {
        self.out
            .lock()
            .ok()
            .and_then(|o| o.as_ref().map(|tx| tx.send(env).is_ok()))
            .unwrap_or(false)
    }

    fn close(&self, why: &str) {
        if let Ok(mut o) = self.out.lock() {
            o.take();
        }
        if let Ok(mut r) = self.reason.lock() {
            if r.is_empty() {
                *r = why.to_string();
            }
        }
        self.closed.cancel();
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }

    fn reason(&self) -> String {
        self.reason.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
