//! The agent-side upload assembler: accepts chunks in order or retried (idempotent by offset),
//! enforces the size limits, and checks the SHA-256 at the end. It holds no file: `chunk`
//! returns the bytes the caller must append to its staging file; on any error from `finish`
//! the caller deletes the staging file.

use crate::message::{AgentError, ErrorCode, UploadBegin, UploadDone};
use sha2::{Digest, Sha256};

/// Limits on one transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadLimits {
    pub max_size: u64,
    pub max_chunk: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_size: 4 * 1024 * 1024 * 1024,
            max_chunk: 1024 * 1024,
        }
    }
}

/// True for 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A plain file name: no separators, no `.`/`..`, no control characters, at most 255 bytes.
pub fn validate_file_name(name: &str) -> Result<(), AgentError> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(AgentError::new(
            ErrorCode::BadRequest,
            format!("{name:?} is not a plain file name"),
        ));
    }
    Ok(())
}

/// One transfer in progress.
#[derive(Clone, Debug)]
pub struct UploadAssembler {
    transfer: String,
    name: Option<String>,
    size: u64,
    sha256: String,
    received: u64,
    max_chunk: usize,
    hasher: Sha256,
}

impl UploadAssembler {
    /// Validates an `UploadBegin` against the limits.
    pub fn begin(req: &UploadBegin, limits: UploadLimits) -> Result<Self, AgentError> {
        if req.transfer.is_empty() || req.transfer.len() > 200 {
            return Err(AgentError::new(
                ErrorCode::BadRequest,
                "transfer id must be 1..=200 bytes",
            ));
        }
        if let Some(name) = &req.name {
            validate_file_name(name)?;
        }
        if !is_sha256_hex(&req.sha256) {
            return Err(AgentError::new(
                ErrorCode::BadRequest,
                "sha256 must be 64 lower-case hex digits",
            ));
        }
        if req.size > limits.max_size {
            return Err(AgentError::new(
                ErrorCode::TooLarge,
                format!(
                    "file of {} bytes exceeds the limit of {}",
                    req.size, limits.max_size
                ),
            ));
        }
        Ok(UploadAssembler {
            transfer: req.transfer.clone(),
            name: req.name.clone(),
            size: req.size,
            sha256: req.sha256.clone(),
            received: 0,
            max_chunk: limits.max_chunk,
            hasher: Sha256::new(),
        })
    }

    pub fn transfer(&self) -> &str {
        &self.transfer
    }

    /// The staging file name, or `None` for the package cache (keyed by [`Self::sha256`]).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes accepted so far (the offset of the next new byte).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Accepts a chunk at `offset`; returns the new bytes to append (empty for a full
    /// duplicate, the unseen tail for an overlapping retry). A gap is refused with
    /// `BadOffset` and `expected_offset` so the sender resumes from there.
    pub fn chunk<'a>(&mut self, offset: u64, data: &'a [u8]) -> Result<&'a [u8], AgentError> {
        if data.len() > self.max_chunk {
            return Err(AgentError::new(
                ErrorCode::TooLarge,
                format!(
                    "chunk of {} bytes exceeds the limit of {}",
                    data.len(),
                    self.max_chunk
                ),
            ));
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > self.size {
            return Err(AgentError::new(
                ErrorCode::TooLarge,
                format!(
                    "chunk ends at {end}, beyond the declared size {}",
                    self.size
                ),
            ));
        }
        if offset > self.received {
            return Err(AgentError {
                expected_offset: Some(self.received),
                ..AgentError::new(
                    ErrorCode::BadOffset,
                    format!("chunk at {offset} leaves a gap; expected {}", self.received),
                )
            });
        }
        let skip = usize::try_from(self.received - offset).unwrap_or(usize::MAX);
        let new = data.get(skip..).unwrap_or(&[]);
        self.hasher.update(new);
        self.received += new.len() as u64;
        Ok(new)
    }

    /// Ends the transfer: all bytes present and the hash matching. A short transfer is refused
    /// with `BadOffset` (resume from `expected_offset`); `HashMismatch` means discard the file.
    pub fn finish(&self) -> Result<UploadDone, AgentError> {
        if self.received != self.size {
            return Err(AgentError {
                expected_offset: Some(self.received),
                ..AgentError::new(
                    ErrorCode::BadOffset,
                    format!("received {} of {} bytes", self.received, self.size),
                )
            });
        }
        let got = hex::encode(self.hasher.clone().finalize());
        if got != self.sha256 {
            return Err(AgentError::new(
                ErrorCode::HashMismatch,
                format!("sha256 is {got}, expected {}", self.sha256),
            ));
        }
        Ok(UploadDone {
            transfer: self.transfer.clone(),
            size: self.size,
            sha256: got,
        })
    }
}
