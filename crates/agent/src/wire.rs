//! What both ends share: WebSocket limits and envelope encoding.

use std::time::Duration;

use ferry_protocol::{DEFAULT_MAX_FRAME, Envelope, FrameError, decode_payload, encode_payload};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Each side pings this often when it has nothing else to say.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// A connection with no frame received for this long is dead.
pub const IDLE_LIMIT: Duration = Duration::from_secs(35);
/// The TLS and WebSocket handshakes must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The WebSocket path both modes use.
pub const WS_PATH: &str = "/ferry/v1";

/// The WebSocket limits: one envelope per message, at most [`DEFAULT_MAX_FRAME`]. Small
/// buffers (the library defaults to 128 KiB each way per connection): a server holds
/// thousands of mostly idle polling connections.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(DEFAULT_MAX_FRAME))
        .max_frame_size(Some(DEFAULT_MAX_FRAME))
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}

pub fn encode(env: &Envelope) -> Result<WsMessage, FrameError> {
    let bytes = encode_payload(env, DEFAULT_MAX_FRAME)?;
    Ok(WsMessage::Binary(bytes.into()))
}

/// `Ok(None)` for control frames the library handles (ping/pong/frame).
pub fn decode(msg: &WsMessage) -> Result<Option<Envelope>, FrameError> {
    match msg {
        WsMessage::Binary(b) => decode_payload(b, DEFAULT_MAX_FRAME).map(Some),
        WsMessage::Text(t) => decode_payload(t.as_bytes(), DEFAULT_MAX_FRAME).map(Some),
        _ => Ok(None),
    }
}

/// What a transport delivers: envelopes, or why the connection ended.
pub type Incoming = tokio::sync::mpsc::Receiver<Result<Envelope, String>>;
/// What a transport sends.
pub type Outgoing = tokio::sync::mpsc::UnboundedSender<Envelope>;

/// Pumps a WebSocket into envelope channels (one reader task, one writer task). Control frames
/// are handled by the library; a Close, an error or a malformed frame ends the incoming side
/// with its reason.
pub fn pump_ws<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> (Incoming, Outgoing)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = ws.split();
    let (in_tx, in_rx) = tokio::sync::mpsc::channel(64);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Envelope>();
    tokio::spawn(async move {
        loop {
            let end = match stream.next().await {
                None => "closed by the peer".to_string(),
                Some(Err(e)) => format!("read failed: {e}"),
                Some(Ok(m)) => match decode(&m) {
                    Ok(Some(env)) => {
                        if in_tx.send(Ok(env)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(None) if matches!(m, WsMessage::Close(_)) => {
                        "closed by the peer".to_string()
                    }
                    Ok(None) => continue,
                    Err(e) => format!("malformed frame: {e}"),
                },
            };
            let _ = in_tx.send(Err(end)).await;
            return;
        }
    });
    tokio::spawn(async move {
        while let Some(env) = out_rx.recv().await {
            match encode(&env) {
                Ok(m) => {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not encode a message"),
            }
        }
        let _ = sink.close().await;
    });
    (in_rx, out_tx)
}

/// Pumps a byte stream (an SSH channel, a process's stdin/stdout) into envelope channels, with
/// 4-byte length-prefixed frames (`ferry_protocol::encode_frame` / `FrameDecoder`).
pub fn pump_framed<R, W>(mut reader: R, writer: W) -> (Incoming, Outgoing)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let (in_tx, in_rx) = tokio::sync::mpsc::channel(64);
    let out_tx = frame_writer(writer);
    tokio::spawn(async move {
        let mut dec = ferry_protocol::FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) => {
                    let _ = in_tx.send(Err("closed by the peer".to_string())).await;
                    return;
                }
                Ok(n) => n,
                Err(e) => {
                    let _ = in_tx.send(Err(format!("read failed: {e}"))).await;
                    return;
                }
            };
            match dec.feed(&buf[..n]) {
                Ok(envs) => {
                    for env in envs {
                        if in_tx.send(Ok(env)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = in_tx.send(Err(format!("malformed frame: {e}"))).await;
                    return;
                }
            }
        }
    });
    (in_rx, out_tx)
}

/// Writes outgoing envelopes to a byte stream as length-prefixed frames (an upload chunk's data
/// is written after its header without being copied); shuts the stream down when every sender
/// is gone.
pub fn frame_writer<W>(mut writer: W) -> Outgoing
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Envelope>();
    tokio::spawn(async move {
        while let Some(env) = out_rx.recv().await {
            match ferry_protocol::encode_frame_split(env, DEFAULT_MAX_FRAME) {
                Ok((head, tail)) => {
                    if writer.write_all(&head).await.is_err()
                        || (!tail.is_empty() && writer.write_all(&tail).await.is_err())
                        || writer.flush().await.is_err()
                    {
                        break;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not encode a message"),
            }
        }
        let _ = writer.shutdown().await;
    });
    out_tx
}
