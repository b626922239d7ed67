//! Message types. Every frame is one [`Envelope`]: `{"v":1,"id":7,"kind":"StartScript","body":{…}}`.
//! A response carries the `id` of the request it answers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The protocol version this crate speaks (the envelope's `v`).
pub const PROTOCOL_VERSION: u16 = 1;

/// One protocol message with its version and correlation id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Protocol version; a decoder refuses versions it does not speak.
    pub v: u16,
    /// Chosen by the requester, unique per connection; a response repeats it.
    pub id: u64,
    pub message: Message,
}

impl Envelope {
    /// An envelope of the current version.
    pub fn new(id: u64, message: Message) -> Self {
        Envelope {
            v: PROTOCOL_VERSION,
            id,
            message,
        }
    }
}

/// Everything that travels between server and agent. Serialized as `kind` + `body`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body")]
pub enum Message {
    // --- requests, server → agent ---
    /// What the agent can do.
    Capabilities,
    /// Is the agent well.
    Health,
    StartScript(StartScript),
    GetStatus(GetStatus),
    CancelScript(CancelScript),
    /// The server has the whole outcome; the agent may forget the ticket.
    CompleteScript(CompleteScript),
    UploadBegin(UploadBegin),
    UploadChunk(UploadChunk),
    UploadEnd(UploadEnd),
    PackageCacheLookup(PackageCacheLookup),
    PackageStage(PackageStage),
    PackageBasis(PackageBasis),

    // --- responses, agent → server ---
    CapabilitiesReply(CapabilitiesReply),
    HealthReply(HealthReply),
    ScriptStatus(ScriptStatus),
    /// Bytes of a transfer received so far (reply to `UploadBegin` / `UploadChunk`).
    UploadProgress(UploadProgress),
    /// The transfer is complete and its hash verified (reply to `UploadEnd`).
    UploadDone(UploadDone),
    PackageCacheReply(PackageCacheReply),
    /// Success with nothing to say (reply to `CompleteScript`, `Hello`).
    PackageStageReply(PackageStageReply),
    PackageBasisReply(PackageBasisReply),
    Ack,
    /// A refused or failed request.
    Error(AgentError),

    // --- connection control (polling mode dials; both modes keep alive) ---
    /// First message of a polling agent on a new connection.
    Hello(Hello),
    Ping(KeepAlive),
    Pong(KeepAlive),
}

impl Message {
    /// The `kind` string of this message.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Capabilities => "Capabilities",
            Message::Health => "Health",
            Message::StartScript(_) => "StartScript",
            Message::GetStatus(_) => "GetStatus",
            Message::CancelScript(_) => "CancelScript",
            Message::CompleteScript(_) => "CompleteScript",
            Message::UploadBegin(_) => "UploadBegin",
            Message::UploadChunk(_) => "UploadChunk",
            Message::UploadEnd(_) => "UploadEnd",
            Message::PackageCacheLookup(_) => "PackageCacheLookup",
            Message::PackageStage(_) => "PackageStage",
            Message::PackageBasis(_) => "PackageBasis",
            Message::PackageBasisReply(_) => "PackageBasisReply",
            Message::PackageStageReply(_) => "PackageStageReply",
            Message::CapabilitiesReply(_) => "CapabilitiesReply",
            Message::HealthReply(_) => "HealthReply",
            Message::ScriptStatus(_) => "ScriptStatus",
            Message::UploadProgress(_) => "UploadProgress",
            Message::UploadDone(_) => "UploadDone",
            Message::PackageCacheReply(_) => "PackageCacheReply",
            Message::Ack => "Ack",
            Message::Error(_) => "Error",
            Message::Hello(_) => "Hello",
            Message::Ping(_) => "Ping",
            Message::Pong(_) => "Pong",
        }
    }

    /// True for requests the server sends to an agent.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Message::Capabilities
                | Message::Health
                | Message::StartScript(_)
                | Message::GetStatus(_)
                | Message::CancelScript(_)
                | Message::CompleteScript(_)
                | Message::UploadBegin(_)
                | Message::UploadChunk(_)
                | Message::UploadEnd(_)
                | Message::PackageCacheLookup(_)
                | Message::PackageStage(_)
                | Message::PackageBasis(_)
        )
    }
}

/// Script languages an agent runs (mirrors the executor's `Syntax`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Syntax {
    Bash,
    Python,
}

/// A name and a value. `Debug` never prints the value (variables may be sensitive).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for NameValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=<{} bytes>", self.name, self.value.len())
    }
}

/// Start a script. Idempotent by `ticket`: a retry returns the existing run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartScript {
    /// Unique per (task, step, target, attempt); chosen by the server.
    pub ticket: String,
    pub task_id: String,
    pub step: String,
    pub attempt: u32,
    /// The task's fencing epoch (from the task lease).
    pub epoch: u64,
    pub syntax: Syntax,
    pub body: String,
    /// Evaluated variables; reach the script through a private file, never argv.
    pub variables: Vec<NameValue>,
    /// Extra environment (never secrets).
    pub env: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// Status and log lines from `log_offset`. Also acknowledges the lines before `log_offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetStatus {
    pub ticket: String,
    pub task_id: String,
    pub epoch: u64,
    pub log_offset: u64,
    /// Long poll: while the script runs and has no line at `log_offset`, the agent may hold
    /// the reply up to this many milliseconds (0 = answer at once).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_ms: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelScript {
    pub ticket: String,
    pub task_id: String,
    pub epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteScript {
    pub ticket: String,
    pub task_id: String,
    pub epoch: u64,
}

/// Begin a streamed file transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadBegin {
    /// Chosen by the server; unique per agent while the transfer lives.
    pub transfer: String,
    /// A plain file name for the staging area; `None` stores the file in the package cache
    /// under its `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Total size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    /// The package the file is (kept beside it in the cache, to find a basis for deltas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,
    /// Delta transfer: the bytes sent are an rsync delta (fast_rsync format) against the
    /// cached file with this SHA-256; `size`/`sha256` describe the delta, and the file the
    /// agent rebuilds must have `result_size` bytes and hash to `result_sha256`, or it is
    /// discarded (`HashMismatch`) and the server sends the whole file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_size: Option<u64>,
}

/// A chunk of a transfer at a byte offset. Retrying a chunk is harmless.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChunk {
    pub transfer: String,
    pub offset: u64,
    /// Base64 in JSON.
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEnd {
    pub transfer: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageCacheLookup {
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilitiesReply {
    pub agent_version: String,
    pub protocol_versions: Vec<u16>,
    pub syntaxes: Vec<Syntax>,
    pub max_frame_bytes: u64,
    pub max_chunk_bytes: u64,
    pub os: String,
    pub arch: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReply {
    pub healthy: bool,
    pub running_scripts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_disk_bytes: Option<u64>,
    /// Warnings worth showing on the target's health (e.g. low disk).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Where a script is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScriptState {
    Running,
    Exited(i32),
    Canceled,
    /// Ended without an exit code (could not start, or the agent restarted under it);
    /// the reason is in the log.
    Lost,
    /// The agent has no record of the ticket (never started, or completed and forgotten).
    Unknown,
}

impl ScriptState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, ScriptState::Running)
    }
}

/// Which stream a log line came from; `Agent` lines are the agent's own notes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
    Agent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Position in the ticket's log: 0, 1, 2, … with no gaps.
    pub offset: u64,
    pub stream: Stream,
    pub text: String,
    /// Milliseconds since the Unix epoch, agent clock.
    pub at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptStatus {
    pub ticket: String,
    pub state: ScriptState,
    /// Lines from the requested offset (or the oldest kept line), in order.
    pub lines: Vec<LogLine>,
    /// The offset to ask for next.
    pub next_offset: u64,
    /// True when `next_offset` is the end of the log so far; with a terminal state the
    /// server has everything.
    pub end_of_log: bool,
    /// Lines dropped for this ticket because its buffer was full (also noted in the log).
    #[serde(default)]
    pub dropped_lines: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadProgress {
    pub transfer: String,
    pub received: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadDone {
    pub transfer: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageCacheReply {
    pub sha256: String,
    pub present: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub agent_id: String,
    pub agent_version: String,
    pub protocol_versions: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepAlive {
    pub nonce: u64,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The command's epoch is lower than the highest the agent has seen for the task.
    StaleEpoch,
    UnknownTicket,
    UnknownTransfer,
    /// The ticket exists for another task/step/attempt, or was completed and forgotten.
    TicketConflict,
    HashMismatch,
    TooLarge,
    /// An upload chunk or a log offset beyond what the agent has; see `expected_offset`.
    BadOffset,
    BadRequest,
    /// The agent is at a limit (tickets, transfers); retry later.
    Busy,
    UnsupportedVersion,
    Internal,
}

/// An error response body; also the error type of [`crate::Tickets`] and
/// [`crate::UploadAssembler`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct AgentError {
    pub code: ErrorCode,
    pub message: String,
    /// With `StaleEpoch`: the agent's current epoch for the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_epoch: Option<u64>,
    /// With `BadOffset`: the offset the agent expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_offset: Option<u64>,
}

impl AgentError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AgentError {
            code,
            message: message.into(),
            current_epoch: None,
            expected_offset: None,
        }
    }
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// One stage of the "Deploy a package" step that touches the target's files. The target runs
/// it with the same code as the built-in worker (`ferry_executor::package_ops`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageStage {
    pub task_id: String,
    pub epoch: u64,
    pub op: PackageOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageOp {
    /// Extracts the cached package (by hash) into a fresh installation directory under the
    /// target's applications root; the reply names it and carries the package's own
    /// convention scripts (`PreDeploy.sh`, …).
    Extract {
        sha256: String,
        extension: String,
        environment: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        package_id: String,
        version: String,
    },
    /// Substitutes variables in files, applies structured configuration variables and copies
    /// to a custom installation directory, each only when given.
    Configure {
        dir: String,
        variables: Vec<NameValue>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        substitute: Option<SubstituteSpec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        structured: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        custom: Option<CustomDirSpec>,
    },
    /// Reads the package's convention script for a stage from a directory.
    ReadScript { dir: String, stage: String },
    /// Reads an artifact a script of this ticket created (`new_octopusartifact`): the copy the
    /// target kept of it, by its number in the script's output (0, 1, …), at most `max_bytes`.
    /// The copy is removed once read. Older agents refuse the unknown operation.
    ReadArtifact {
        ticket: String,
        index: u32,
        max_bytes: u64,
    },
    /// Keeps the last `keep` installations of the package installed in `dir` (`u32::MAX`:
    /// all); with `keep_days`, instead removes installations older than that many days. Older
    /// agents ignore `keep_days` and keep everything, which is safe.
    Retain {
        dir: String,
        keep: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_days: Option<u32>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubstituteSpec {
    pub targets: String,
    pub ignore_errors: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomDirSpec {
    pub dir: String,
    pub purge: bool,
    pub exclusions: String,
}

/// What a package stage did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageStageReply {
    /// `Extract`: the installation directory; `Configure`: the custom directory, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Where the package file is on the target (`Extract`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_file: Option<String>,
    /// The target's applications root (`Extract`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps_root: Option<String>,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// `ReadScript`: the script, if the package has one for the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<PackagedScript>,
    /// Lines for the task log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `ReadArtifact`: the file's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub content: Option<Vec<u8>>,
}

mod b64_opt {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match data {
            Some(d) => s.serialize_some(&STANDARD.encode(d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => STANDARD
                .decode(s.as_bytes())
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagedScript {
    pub syntax: Syntax,
    pub body: String,
}

/// Asks for a basis for a delta transfer: the newest cached file of the same package (other
/// than `exclude_sha256`) and its rsync signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageBasis {
    pub package_id: String,
    pub exclude_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageBasisReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<BasisInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasisInfo {
    pub sha256: String,
    pub size: u64,
    /// The fast_rsync signature of the basis, serialised.
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}
