//! The responder's end (the agent's, in both modes): reads requests, answers each with the
//! handler, concurrently; answers pings; sends its own pings; closes on silence or on a
//! malformed frame (nothing after a bad frame is trusted).

use std::sync::Arc;
use std::time::Instant;

use ferry_protocol::{Envelope, Hello, KeepAlive, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::wire;

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Answers one request.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, msg: Message) -> BoxFuture<'_, Message>;
}

/// Serves one WebSocket connection until it closes or `shutdown` fires. A polling agent passes
/// its `hello`, which is sent first and must be acknowledged. Returns why the connection ended.
pub async fn serve<S, H>(
    ws: WebSocketStream<S>,
    handler: Arc<H>,
    hello: Option<Hello>,
    shutdown: CancellationToken,
) -> String
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let (incoming, outgoing) = crate::wire::pump_ws(ws);
    serve_channels(incoming, outgoing, handler, hello, shutdown).await
}

/// Serves length-prefixed frames on a byte stream (`ferry agent stdio` on stdin/stdout).
pub async fn serve_framed<R, W, H>(
    reader: R,
    writer: W,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> String
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let (incoming, outgoing) = crate::wire::pump_framed(reader, writer);
    serve_channels(incoming, outgoing, handler, None, shutdown).await
}

/// The transport-independent responder.
pub async fn serve_channels<H: Handler>(
    mut incoming: crate::wire::Incoming,
    outgoing: crate::wire::Outgoing,
    handler: Arc<H>,
    hello: Option<Hello>,
    shutdown: CancellationToken,
) -> String {
    if let Some(h) = hello {
        if outgoing.send(Envelope::new(0, Message::Hello(h))).is_err() {
            return "could not send hello".to_string();
        }
        match tokio::time::timeout(wire::HANDSHAKE_TIMEOUT, incoming.recv()).await {
            Ok(Some(Ok(Envelope {
                message: Message::Ack,
                ..
            }))) => {}
            Ok(Some(Ok(Envelope {
                message: Message::Error(e),
                ..
            }))) => return format!("the server refused the connection: {}", e.message),
            _ => return "the server did not acknowledge the hello".to_string(),
        }
    }
    let stop = shutdown.child_token();
    let pinger_stop = stop.clone();
    let pinger_out = outgoing.clone();
    let pinger = tokio::spawn(async move {
        let mut tick = tokio::time::interval(wire::PING_EVERY);
        tick.tick().await;
        let mut nonce = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    nonce += 1;
                    if pinger_out.send(Envelope::new(u64::MAX - nonce, Message::Ping(KeepAlive { nonce }))).is_err() {
                        break;
                    }
                }
                _ = pinger_stop.cancelled() => break,
            }
        }
    });
    let mut last = Instant::now();
    let why = loop {
        let wait = wire::IDLE_LIMIT.saturating_sub(last.elapsed());
        let next = tokio::select! {
            n = tokio::time::timeout(wait, incoming.recv()) => n,
            _ = stop.cancelled() => break "shutting down".to_string(),
        };
        let env = match next {
            Err(_) => break format!("nothing received for {:?}", wire::IDLE_LIMIT),
            Ok(None) => break "closed by the server".to_string(),
            Ok(Some(Err(why))) => break why,
            Ok(Some(Ok(env))) => env,
        };
        last = Instant::now();
        match env.message {
            Message::Ping(k) => {
                let _ = outgoing.send(Envelope::new(env.id, Message::Pong(k)));
            }
            Message::Pong(_) | Message::Ack => {}
            m if m.is_request() => {
                let h = handler.clone();
                let tx = outgoing.clone();
                let id = env.id;
                tokio::spawn(async move {
                    let reply = h.handle(m).await;
                    let _ = tx.send(Envelope::new(id, reply));
                });
            }
            other => {
                tracing::debug!(kind = other.kind(), "ignoring a non-request message");
            }
        }
    };
    stop.cancel();
    let _ = pinger.await;
    why
}
