//! The responder's end (the agent's, in both modes): reads requests, answers each with the
//! handler, concurrently; answers pings; sends its own pings; closes on silence or on a
//! malformed frame (nothing after a bad frame is trusted).

use std::sync::Arc;
use std::time::Instant;

use ferry_protocol::{Envelope, Hello, KeepAlive, Message};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::wire;

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Answers one request.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, msg: Message) -> BoxFuture<'_, Message>;
}

/// Serves one connection until it closes or `shutdown` fires. A polling agent passes its
/// `hello`, which is sent first and must be acknowledged. Returns why the connection ended.
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
    let (mut sink, mut stream) = ws.split();
    if let Some(h) = hello {
        let Ok(frame) = wire::encode(&Envelope::new(0, Message::Hello(h))) else {
            return "could not encode hello".to_string();
        };
        if let Err(e) = sink.send(frame).await {
            return format!("could not send hello: {e}");
        }
        match tokio::time::timeout(wire::HANDSHAKE_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(m))) => match wire::decode(&m) {
                Ok(Some(Envelope {
                    message: Message::Ack,
                    ..
                })) => {}
                Ok(Some(Envelope {
                    message: Message::Error(e),
                    ..
                })) => return format!("the server refused the connection: {}", e.message),
                _ => return "the server did not acknowledge the hello".to_string(),
            },
            _ => return "the server did not acknowledge the hello".to_string(),
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<WsMessage>();
    let stop = shutdown.child_token();
    let writer_stop = stop.clone();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(wire::PING_EVERY);
        tick.tick().await;
        let mut nonce = 0u64;
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => if sink.send(m).await.is_err() { break },
                    None => break,
                },
                _ = tick.tick() => {
                    nonce += 1;
                    if let Ok(m) = wire::encode(&Envelope::new(u64::MAX - nonce, Message::Ping(KeepAlive { nonce }))) {
                        if sink.send(m).await.is_err() { break }
                    }
                }
                _ = writer_stop.cancelled() => break,
            }
        }
        let _ = sink.close().await;
    });
    let mut last = Instant::now();
    let why = loop {
        let wait = wire::IDLE_LIMIT.saturating_sub(last.elapsed());
        let next = tokio::select! {
            n = tokio::time::timeout(wait, stream.next()) => n,
            _ = stop.cancelled() => break "shutting down".to_string(),
        };
        let msg = match next {
            Err(_) => break format!("nothing received for {:?}", wire::IDLE_LIMIT),
            Ok(None) => break "closed by the server".to_string(),
            Ok(Some(Err(e))) => break format!("read failed: {e}"),
            Ok(Some(Ok(m))) => m,
        };
        last = Instant::now();
        let env = match wire::decode(&msg) {
            Ok(Some(e)) => e,
            Ok(None) => {
                if matches!(msg, WsMessage::Close(_)) {
                    break "closed by the server".to_string();
                }
                continue;
            }
            Err(e) => break format!("malformed frame: {e}"),
        };
        match env.message {
            Message::Ping(k) => {
                if let Ok(m) = wire::encode(&Envelope::new(env.id, Message::Pong(k))) {
                    let _ = tx.send(m);
                }
            }
            Message::Pong(_) | Message::Ack => {}
            m if m.is_request() => {
                let h = handler.clone();
                let tx = tx.clone();
                let id = env.id;
                tokio::spawn(async move {
                    let reply = h.handle(m).await;
                    if let Ok(frame) = wire::encode(&Envelope::new(id, reply)) {
                        let _ = tx.send(frame);
                    }
                });
            }
            other => {
                tracing::debug!(kind = other.kind(), "ignoring a non-request message");
            }
        }
    };
    stop.cancel();
    drop(tx);
    let _ = writer.await;
    why
}
