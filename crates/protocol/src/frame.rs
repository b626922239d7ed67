//! Framing. A WebSocket message carries one payload (the envelope's JSON); stream transports
//! prefix each payload with its length as a 4-byte big-endian integer. Both paths enforce a
//! hard size limit before reading the payload, and decoding never panics.

use crate::message::{Envelope, Message, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};

/// Default hard limit on one payload: 4 MiB (upload chunks are at most 1 MiB of data).
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// Length prefix size of stream frames.
pub const HEADER_LEN: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("empty frame")]
    Empty,
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("unsupported protocol version {0} (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    #[error("decoder closed after an earlier error")]
    Poisoned,
}

#[derive(Serialize)]
struct WireOut<'a> {
    v: u16,
    id: u64,
    #[serde(flatten)]
    message: &'a Message,
}

#[derive(Deserialize)]
struct WireIn {
    v: u16,
    id: u64,
    kind: String,
    #[serde(default)]
    body: serde_json::Value,
}

/// First byte of a binary payload. A JSON payload starts with `{`, so the two never mix.
pub const BINARY_MAGIC: u8 = 0xB1;

/// Encodes an envelope as one payload (for a WebSocket message). An `UploadChunk` with data is
/// a binary payload: `BINARY_MAGIC`, the length of a JSON header (4 bytes, big-endian), the
/// header (the envelope with empty `data`), then the raw bytes. Everything else is JSON.
pub fn encode_payload(env: &Envelope, limit: usize) -> Result<Vec<u8>, FrameError> {
    encode_with_prefix(env, limit, 0)
}

/// Encodes into a buffer that starts with `prefix` zero bytes (room for a frame header), so a
/// frame is built without copying the payload again.
fn encode_with_prefix(env: &Envelope, limit: usize, prefix: usize) -> Result<Vec<u8>, FrameError> {
    if let Message::UploadChunk(c) = &env.message {
        if !c.data.is_empty() {
            let header_env = Envelope {
                v: env.v,
                id: env.id,
                message: Message::UploadChunk(crate::message::UploadChunk {
                    transfer: c.transfer.clone(),
                    offset: c.offset,
                    data: Vec::new(),
                }),
            };
            let header = encode_json(&header_env, limit)?;
            let hlen = u32::try_from(header.len()).map_err(|_| FrameError::TooLarge {
                len: header.len(),
                limit,
            })?;
            let total = 1 + HEADER_LEN + header.len() + c.data.len();
            if total > limit {
                return Err(FrameError::TooLarge { len: total, limit });
            }
            let mut out = Vec::with_capacity(prefix + total);
            out.resize(prefix, 0);
            out.push(BINARY_MAGIC);
            out.extend_from_slice(&hlen.to_be_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(&c.data);
            return Ok(out);
        }
    }
    let mut out = vec![0u8; prefix];
    let out_json = WireOut {
        v: env.v,
        id: env.id,
        message: &env.message,
    };
    serde_json::to_writer(&mut out, &out_json).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if out.len() - prefix > limit {
        return Err(FrameError::TooLarge {
            len: out.len() - prefix,
            limit,
        });
    }
    Ok(out)
}

fn encode_json(env: &Envelope, limit: usize) -> Result<Vec<u8>, FrameError> {
    let out = WireOut {
        v: env.v,
        id: env.id,
        message: &env.message,
    };
    let bytes = serde_json::to_vec(&out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if bytes.len() > limit {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    Ok(bytes)
}

/// Encodes an envelope as a length-prefixed frame in two parts, head and tail, to be written
/// one after the other: an upload chunk's data (the tail) is moved out of the envelope rather
/// than copied into the frame. Everything else is all head.
pub fn encode_frame_split(env: Envelope, limit: usize) -> Result<(Vec<u8>, Vec<u8>), FrameError> {
    let Envelope { v, id, message } = env;
    match message {
        Message::UploadChunk(mut c) if !c.data.is_empty() => {
            let data = std::mem::take(&mut c.data);
            let header = encode_json(
                &Envelope {
                    v,
                    id,
                    message: Message::UploadChunk(c),
                },
                limit,
            )?;
            let payload_len = 1 + HEADER_LEN + header.len() + data.len();
            if payload_len > limit {
                return Err(FrameError::TooLarge {
                    len: payload_len,
                    limit,
                });
            }
            let len = u32::try_from(payload_len).map_err(|_| FrameError::TooLarge {
                len: payload_len,
                limit,
            })?;
            let hlen = u32::try_from(header.len()).map_err(|_| FrameError::TooLarge {
                len: header.len(),
                limit,
            })?;
            let mut head = Vec::with_capacity(HEADER_LEN + 1 + HEADER_LEN + header.len());
            head.extend_from_slice(&len.to_be_bytes());
            head.push(BINARY_MAGIC);
            head.extend_from_slice(&hlen.to_be_bytes());
            head.extend_from_slice(&header);
            Ok((head, data))
        }
        message => Ok((
            encode_frame(&Envelope { v, id, message }, limit)?,
            Vec::new(),
        )),
    }
}

/// Encodes an envelope as a length-prefixed frame (for stream transports).
pub fn encode_frame(env: &Envelope, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = encode_with_prefix(env, limit, HEADER_LEN)?;
    let len = out.len() - HEADER_LEN;
    let len = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, limit })?;
    out[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Decodes one payload (a WebSocket message). Checks the size first, then the version,
/// then the kind and body.
pub fn decode_payload(bytes: &[u8], limit: usize) -> Result<Envelope, FrameError> {
    if bytes.len() > limit {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    if bytes.is_empty() {
        return Err(FrameError::Empty);
    }
    if bytes[0] == BINARY_MAGIC {
        let len_bytes: [u8; HEADER_LEN] = bytes
            .get(1..1 + HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| FrameError::Malformed("binary payload without a header".into()))?;
        let hlen = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
        let start = 1 + HEADER_LEN;
        let end = start
            .checked_add(hlen)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| FrameError::Malformed("binary payload header overruns".into()))?;
        let mut env = decode_json(&bytes[start..end])?;
        match &mut env.message {
            Message::UploadChunk(c) if c.data.is_empty() => c.data = bytes[end..].to_vec(),
            _ => {
                return Err(FrameError::Malformed(
                    "a binary payload carries only an upload chunk".into(),
                ));
            }
        }
        return Ok(env);
    }
    decode_json(bytes)
}

fn decode_json(bytes: &[u8]) -> Result<Envelope, FrameError> {
    if bytes.is_empty() {
        return Err(FrameError::Empty);
    }
    // serde_json bounds recursion (128 levels), so deep nesting is an error, not a crash.
    let wire: WireIn =
        serde_json::from_slice(bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if wire.v != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion(wire.v));
    }
    let mut obj = serde_json::Map::new();
    obj.insert("kind".into(), serde_json::Value::String(wire.kind));
    if !wire.body.is_null() {
        obj.insert("body".into(), wire.body);
    }
    let message: Message = serde_json::from_value(serde_json::Value::Object(obj))
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(Envelope {
        v: wire.v,
        id: wire.id,
        message,
    })
}

/// Incremental decoder of length-prefixed frames. Holds at most one partial frame
/// (`HEADER_LEN + limit` bytes); refuses an oversized length before buffering its body.
/// After any error it stays poisoned: the transport must close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    limit: usize,
    header: Vec<u8>,
    body: Vec<u8>,
    need: Option<usize>,
    poisoned: bool,
}

impl FrameDecoder {
    pub fn new(limit: usize) -> Self {
        FrameDecoder {
            limit,
            header: Vec::with_capacity(HEADER_LEN),
            body: Vec::new(),
            need: None,
            poisoned: false,
        }
    }

    /// Bytes currently buffered (a partial frame).
    pub fn buffered(&self) -> usize {
        self.header.len() + self.body.len()
    }

    /// True when no partial frame is buffered (a clean place to close a stream).
    pub fn is_idle(&self) -> bool {
        self.buffered() == 0 && !self.poisoned
    }

    /// Feeds bytes; returns every envelope they complete, in order.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Vec<Envelope>, FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        let mut out = Vec::new();
        while !data.is_empty() {
            match self.need {
                None => {
                    let take = (HEADER_LEN - self.header.len()).min(data.len());
                    let (head, rest) = data.split_at(take);
                    self.header.extend_from_slice(head);
                    data = rest;
                    if self.header.len() == HEADER_LEN {
                        let mut len_bytes = [0u8; HEADER_LEN];
                        len_bytes.copy_from_slice(&self.header);
                        self.header.clear();
                        let len = u32::from_be_bytes(len_bytes) as usize;
                        if len > self.limit {
                            self.poisoned = true;
                            return Err(FrameError::TooLarge {
                                len,
                                limit: self.limit,
                            });
                        }
                        if len == 0 {
                            self.poisoned = true;
                            return Err(FrameError::Empty);
                        }
                        self.need = Some(len);
                        self.body = Vec::with_capacity(len.min(64 * 1024));
                    }
                }
                Some(len) => {
                    let take = (len - self.body.len()).min(data.len());
                    let (part, rest) = data.split_at(take);
                    self.body.extend_from_slice(part);
                    data = rest;
                    if self.body.len() == len {
                        self.need = None;
                        let body = std::mem::take(&mut self.body);
                        match decode_payload(&body, self.limit) {
                            Ok(env) => out.push(env),
                            Err(e) => {
                                self.poisoned = true;
                                return Err(e);
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
