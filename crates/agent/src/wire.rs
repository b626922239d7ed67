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
