//! The Ferry server↔agent protocol as pure code: message types in a versioned envelope,
//! length-limited framing, the agent-side script bookkeeping ([`Tickets`]) and the upload
//! assembler ([`UploadAssembler`]). No sockets: transports (listening and polling, WebSocket
//! on mutual TLS) carry these frames. See `docs/protocol.md`.

pub mod frame;
pub mod message;
pub mod tickets;
pub mod upload;

pub use frame::{
    DEFAULT_MAX_FRAME, FrameDecoder, FrameError, decode_payload, encode_frame, encode_frame_split,
    encode_payload,
};
pub use message::*;
pub use tickets::{Canceled, StartAction, Started, Tickets, TicketsConfig};
pub use upload::{UploadAssembler, UploadLimits, is_sha256_hex, validate_file_name};

#[cfg(test)]
mod tests;
