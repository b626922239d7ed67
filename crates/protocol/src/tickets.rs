//! Agent-side script bookkeeping as a pure state machine. The agent's runner asks
//! [`Tickets`] what to do for each request and reports what its processes do; `Tickets`
//! never spawns or kills anything itself, and takes the time as an argument.
//!
//! Rules (see `docs/protocol.md`):
//! - `StartScript` is idempotent by ticket: [`StartAction::Spawn`] is returned once per
//!   ticket, ever (a forgotten ticket is remembered as a tombstone and refused).
//! - Every command carries `(task_id, epoch)`; the highest epoch seen per task is kept and
//!   lower ones are refused with `StaleEpoch`, before anything else is looked at.
//! - Log lines are numbered per ticket without gaps; `GetStatus(log_offset)` returns lines from
//!   the offset and acknowledges (frees) the lines before it.
//! - The state serializes (`to_json` / `restore`) so an agent restart reloads it. Persist it
//!   after a `Spawn` and before spawning the process.

use crate::message::{
    AgentError, CancelScript, CompleteScript, ErrorCode, GetStatus, LogLine, ScriptState,
    ScriptStatus, StartScript, Stream,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Limits and retention of [`Tickets`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketsConfig {
    /// Unacknowledged lines kept per ticket; beyond it new lines are dropped and noted.
    pub max_log_lines: usize,
    /// Unacknowledged bytes kept per ticket.
    pub max_log_bytes: usize,
    /// Longer lines are truncated.
    pub max_line_bytes: usize,
    /// Lines per `ScriptStatus` reply.
    pub max_status_lines: usize,
    /// Text bytes per `ScriptStatus` reply (keeps replies under the frame limit).
    pub max_status_bytes: usize,
    /// Live tickets (running or finished but not yet forgotten).
    pub max_tickets: usize,
    /// Remembered forgotten/pre-canceled tickets.
    pub max_tombstones: usize,
    /// How long a finished ticket is kept when the server never completes it.
    pub retain_finished_ms: u64,
    /// How long a forgotten ticket is remembered (refusing a late duplicate start).
    pub retain_tombstones_ms: u64,
    /// How long a task's highest epoch is remembered after it was last seen.
    pub retain_epochs_ms: u64,
    /// Longest accepted ticket, task id or step.
    pub max_id_len: usize,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        TicketsConfig {
            max_log_lines: 10_000,
            max_log_bytes: 8 * 1024 * 1024,
            max_line_bytes: 16 * 1024,
            max_status_lines: 1_000,
            max_status_bytes: 1024 * 1024,
            max_tickets: 1_024,
            max_tombstones: 16_384,
            retain_finished_ms: 60 * 60 * 1000,
            retain_tombstones_ms: 24 * 60 * 60 * 1000,
            retain_epochs_ms: 7 * 24 * 60 * 60 * 1000,
            max_id_len: 200,
        }
    }
}

/// What the runner must do after `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAction {
    /// First time this ticket is seen: persist, then spawn the process.
    Spawn,
    /// A retry (or a re-attach by a newer epoch): nothing to start.
    Attach,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    pub action: StartAction,
    pub status: ScriptStatus,
}

/// What the runner must do after `cancel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canceled {
    /// True once per ticket: kill the process.
    pub kill: bool,
    pub status: ScriptStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EpochRecord {
    epoch: u64,
    seen_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Tombstone {
    task_id: String,
    at_ms: u64,
    /// Canceled before any start arrived: a late start reports Canceled and never spawns.
    canceled_before_start: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Run {
    task_id: String,
    step: String,
    attempt: u32,
    state: ScriptState,
    cancel_requested: bool,
    started_ms: u64,
    finished_ms: Option<u64>,
    /// Offset of `lines[0]`.
    first_offset: u64,
    lines: VecDeque<LogLine>,
    bytes: usize,
    /// Offset the next line gets.
    next_offset: u64,
    /// Dropped since the last note.
    pending_dropped: u64,
    dropped_total: u64,
}

/// The agent's script bookkeeping. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tickets {
    #[serde(skip)]
    config: TicketsConfig,
    epochs: BTreeMap<String, EpochRecord>,
    runs: BTreeMap<String, Run>,
    tombstones: BTreeMap<String, Tombstone>,
}

impl Default for Tickets {
    fn default() -> Self {
        Tickets::new(TicketsConfig::default())
    }
}

fn err(code: ErrorCode, message: impl Into<String>) -> AgentError {
    AgentError::new(code, message)
}

impl Tickets {
    pub fn new(config: TicketsConfig) -> Self {
        Tickets {
            config,
            epochs: BTreeMap::new(),
            runs: BTreeMap::new(),
            tombstones: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &TicketsConfig {
        &self.config
    }

    /// Serialized state for the agent's data directory.
    pub fn to_json(&self) -> Result<Vec<u8>, AgentError> {
        serde_json::to_vec(self).map_err(|e| err(ErrorCode::Internal, e.to_string()))
    }

    /// Reloads state written by [`Tickets::to_json`] with the given limits. Scripts that were
    /// running are still `Running`: the agent checks them ([`Tickets::running`]) and reports
    /// each with [`Tickets::exited`] or [`Tickets::lost`].
    pub fn restore(bytes: &[u8], config: TicketsConfig) -> Result<Self, AgentError> {
        let mut t: Tickets = serde_json::from_slice(bytes)
            .map_err(|e| err(ErrorCode::Internal, format!("ticket state unreadable: {e}")))?;
        t.config = config;
        Ok(t)
    }

    /// The highest epoch seen for a task.
    pub fn epoch(&self, task_id: &str) -> Option<u64> {
        self.epochs.get(task_id).map(|r| r.epoch)
    }

    /// Tickets whose process is (as far as the book knows) running.
    pub fn running(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|(_, r)| r.state == ScriptState::Running)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Live (not forgotten) tickets.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    fn check_id(&self, what: &str, s: &str) -> Result<(), AgentError> {
        if s.is_empty() || s.len() > self.config.max_id_len || s.chars().any(char::is_control) {
            return Err(err(
                ErrorCode::BadRequest,
                format!(
                    "{what} must be 1..={} printable bytes",
                    self.config.max_id_len
                ),
            ));
        }
        Ok(())
    }

    /// The fence: refuses an epoch lower than the highest seen for the task, raises it otherwise.
    fn fence(&mut self, task_id: &str, epoch: u64, now: u64) -> Result<(), AgentError> {
        self.check_id("task_id", task_id)?;
        match self.epochs.get_mut(task_id) {
            Some(rec) if epoch < rec.epoch => Err(AgentError {
                current_epoch: Some(rec.epoch),
                ..err(
                    ErrorCode::StaleEpoch,
                    format!(
                        "epoch {epoch} for task {task_id} is stale; the agent has seen {}",
                        rec.epoch
                    ),
                )
            }),
            Some(rec) => {
                rec.epoch = epoch;
                rec.seen_ms = rec.seen_ms.max(now);
                Ok(())
            }
            None => {
                self.epochs.insert(
                    task_id.to_owned(),
                    EpochRecord {
                        epoch,
                        seen_ms: now,
                    },
                );
                Ok(())
            }
        }
    }

    fn same_task(run_task: &str, ticket: &str, task_id: &str) -> Result<(), AgentError> {
        if run_task != task_id {
            return Err(err(
                ErrorCode::TicketConflict,
                format!("ticket {ticket} belongs to another task"),
            ));
        }
        Ok(())
    }

    /// `StartScript`. `Spawn` exactly once per ticket.
    pub fn start(&mut self, req: &StartScript, now: u64) -> Result<Started, AgentError> {
        self.check_id("ticket", &req.ticket)?;
        self.check_id("step", &req.step)?;
        self.fence(&req.task_id, req.epoch, now)?;
        if let Some(run) = self.runs.get(&req.ticket) {
            Self::same_task(&run.task_id, &req.ticket, &req.task_id)?;
            if run.step != req.step || run.attempt != req.attempt {
                return Err(err(
                    ErrorCode::TicketConflict,
                    format!(
                        "ticket {} was started for another step or attempt",
                        req.ticket
                    ),
                ));
            }
            return Ok(Started {
                action: StartAction::Attach,
                status: status_of(&req.ticket, run, run.next_offset, 0, 0),
            });
        }
        if let Some(tomb) = self.tombstones.get(&req.ticket) {
            Self::same_task(&tomb.task_id, &req.ticket, &req.task_id)?;
            if tomb.canceled_before_start {
                return Ok(Started {
                    action: StartAction::Attach,
                    status: empty_status(&req.ticket, ScriptState::Canceled, 0),
                });
            }
            return Err(err(
                ErrorCode::TicketConflict,
                format!("ticket {} was completed and forgotten", req.ticket),
            ));
        }
        if self.runs.len() >= self.config.max_tickets {
            return Err(err(
                ErrorCode::Busy,
                format!("the agent holds {} tickets", self.runs.len()),
            ));
        }
        let run = Run {
            task_id: req.task_id.clone(),
            step: req.step.clone(),
            attempt: req.attempt,
            state: ScriptState::Running,
            cancel_requested: false,
            started_ms: now,
            finished_ms: None,
            first_offset: 0,
            lines: VecDeque::new(),
            bytes: 0,
            next_offset: 0,
            pending_dropped: 0,
            dropped_total: 0,
        };
        let status = status_of(&req.ticket, &run, 0, 0, 0);
        self.runs.insert(req.ticket.clone(), run);
        Ok(Started {
            action: StartAction::Spawn,
            status,
        })
    }

    /// `GetStatus`. Lines before `log_offset` are acknowledged and freed.
    pub fn status(&mut self, req: &GetStatus, now: u64) -> Result<ScriptStatus, AgentError> {
        self.fence(&req.task_id, req.epoch, now)?;
        let cfg = self.config.clone();
        if let Some(run) = self.runs.get_mut(&req.ticket) {
            Self::same_task(&run.task_id, &req.ticket, &req.task_id)?;
            if req.log_offset > run.next_offset {
                return Err(AgentError {
                    expected_offset: Some(run.next_offset),
                    ..err(
                        ErrorCode::BadOffset,
                        format!(
                            "log offset {} is beyond the end of the log ({})",
                            req.log_offset, run.next_offset
                        ),
                    )
                });
            }
            run.ack(req.log_offset);
            run.flush_note(&cfg, now, false);
            return Ok(status_of(
                &req.ticket,
                run,
                req.log_offset,
                cfg.max_status_lines,
                cfg.max_status_bytes,
            ));
        }
        let state = match self.tombstones.get(&req.ticket) {
            Some(t) if t.task_id == req.task_id && t.canceled_before_start => ScriptState::Canceled,
            _ => ScriptState::Unknown,
        };
        Ok(empty_status(&req.ticket, state, req.log_offset))
    }

    /// `CancelScript`. `kill` is true once per running ticket. A cancel for a ticket never
    /// started leaves a tombstone so a late `StartScript` does not spawn.
    pub fn cancel(&mut self, req: &CancelScript, now: u64) -> Result<Canceled, AgentError> {
        self.check_id("ticket", &req.ticket)?;
        self.fence(&req.task_id, req.epoch, now)?;
        let cfg = self.config.clone();
        if let Some(run) = self.runs.get_mut(&req.ticket) {
            Self::same_task(&run.task_id, &req.ticket, &req.task_id)?;
            let kill = run.state == ScriptState::Running && !run.cancel_requested;
            if kill {
                run.cancel_requested = true;
                run.push(&cfg, Stream::Agent, "cancel requested".into(), now, true);
            }
            return Ok(Canceled {
                kill,
                status: status_of(&req.ticket, run, run.next_offset, 0, 0),
            });
        }
        if let Some(t) = self.tombstones.get(&req.ticket) {
            Self::same_task(&t.task_id, &req.ticket, &req.task_id)?;
            let state = if t.canceled_before_start {
                ScriptState::Canceled
            } else {
                ScriptState::Unknown
            };
            return Ok(Canceled {
                kill: false,
                status: empty_status(&req.ticket, state, 0),
            });
        }
        if self.tombstones.len() >= self.config.max_tombstones {
            return Err(err(ErrorCode::Busy, "too many remembered tickets"));
        }
        self.tombstones.insert(
            req.ticket.clone(),
            Tombstone {
                task_id: req.task_id.clone(),
                at_ms: now,
                canceled_before_start: true,
            },
        );
        Ok(Canceled {
            kill: false,
            status: empty_status(&req.ticket, ScriptState::Canceled, 0),
        })
    }

    /// `CompleteScript`: forgets a finished ticket (idempotent; unknown tickets are fine).
    pub fn complete(&mut self, req: &CompleteScript, now: u64) -> Result<(), AgentError> {
        self.fence(&req.task_id, req.epoch, now)?;
        if let Some(run) = self.runs.get(&req.ticket) {
            Self::same_task(&run.task_id, &req.ticket, &req.task_id)?;
            if run.state == ScriptState::Running {
                return Err(err(
                    ErrorCode::BadRequest,
                    format!("ticket {} is still running; cancel it first", req.ticket),
                ));
            }
            self.forget(&req.ticket, now);
        }
        Ok(())
    }

    fn forget(&mut self, ticket: &str, now: u64) {
        if let Some(run) = self.runs.remove(ticket) {
            self.tombstones.insert(
                ticket.to_owned(),
                Tombstone {
                    task_id: run.task_id,
                    at_ms: now,
                    canceled_before_start: false,
                },
            );
            // Keep the tombstone set bounded: evict the oldest.
            while self.tombstones.len() > self.config.max_tombstones {
                let oldest = self
                    .tombstones
                    .iter()
                    .min_by_key(|(_, t)| t.at_ms)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => {
                        self.tombstones.remove(&k);
                    }
                    None => break,
                }
            }
        }
    }

    /// Runner: a line of output. Unknown tickets are refused with `UnknownTicket`.
    pub fn append(
        &mut self,
        ticket: &str,
        stream: Stream,
        text: &str,
        now: u64,
    ) -> Result<(), AgentError> {
        let cfg = self.config.clone();
        let run = self
            .runs
            .get_mut(ticket)
            .ok_or_else(|| err(ErrorCode::UnknownTicket, format!("no ticket {ticket}")))?;
        run.push(&cfg, stream, truncate(text, cfg.max_line_bytes), now, false);
        Ok(())
    }

    /// Runner: the process exited. A canceled run ends `Canceled`.
    pub fn exited(&mut self, ticket: &str, code: i32, now: u64) -> Result<ScriptState, AgentError> {
        let state = match self.runs.get(ticket) {
            Some(r) if r.cancel_requested => ScriptState::Canceled,
            _ => ScriptState::Exited(code),
        };
        self.finish(ticket, state, None, now)
    }

    /// Runner: the script ended without an exit code (spawn failed, or the agent restarted and
    /// the process is gone). The reason goes into the log.
    pub fn lost(
        &mut self,
        ticket: &str,
        reason: &str,
        now: u64,
    ) -> Result<ScriptState, AgentError> {
        self.finish(ticket, ScriptState::Lost, Some(reason), now)
    }

    fn finish(
        &mut self,
        ticket: &str,
        state: ScriptState,
        reason: Option<&str>,
        now: u64,
    ) -> Result<ScriptState, AgentError> {
        let cfg = self.config.clone();
        let run = self
            .runs
            .get_mut(ticket)
            .ok_or_else(|| err(ErrorCode::UnknownTicket, format!("no ticket {ticket}")))?;
        if run.state.is_terminal() {
            return Ok(run.state);
        }
        run.flush_note(&cfg, now, true);
        if let Some(reason) = reason {
            let text = truncate(reason, cfg.max_line_bytes);
            run.push(&cfg, Stream::Agent, text, now, true);
        }
        run.state = state;
        run.finished_ms = Some(now);
        Ok(state)
    }

    /// Forgets finished tickets kept longer than `retain_finished_ms`, old tombstones and old
    /// epochs (of tasks with no live ticket). Returns the forgotten tickets.
    pub fn expire(&mut self, now: u64) -> Vec<String> {
        let cfg = &self.config;
        let old: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, r)| {
                r.finished_ms
                    .is_some_and(|f| now.saturating_sub(f) >= cfg.retain_finished_ms)
            })
            .map(|(t, _)| t.clone())
            .collect();
        for t in &old {
            self.forget(t, now);
        }
        let keep_tomb = self.config.retain_tombstones_ms;
        self.tombstones
            .retain(|_, t| now.saturating_sub(t.at_ms) < keep_tomb);
        let keep_epoch = self.config.retain_epochs_ms;
        let live: std::collections::BTreeSet<&str> =
            self.runs.values().map(|r| r.task_id.as_str()).collect();
        self.epochs.retain(|task, rec| {
            live.contains(task.as_str()) || now.saturating_sub(rec.seen_ms) < keep_epoch
        });
        old
    }
}

impl Run {
    fn full(&self, cfg: &TicketsConfig, len: usize) -> bool {
        self.lines.len() >= cfg.max_log_lines || self.bytes + len > cfg.max_log_bytes
    }

    /// Appends a line, or counts it as dropped when the buffer is full. `force` (agent notes)
    /// may exceed the limits by a line.
    fn push(&mut self, cfg: &TicketsConfig, stream: Stream, text: String, now: u64, force: bool) {
        if !force {
            self.flush_note(cfg, now, false);
            if self.pending_dropped > 0 || self.full(cfg, text.len()) {
                self.pending_dropped += 1;
                self.dropped_total += 1;
                return;
            }
        }
        self.bytes += text.len();
        self.lines.push_back(LogLine {
            offset: self.next_offset,
            stream,
            text,
            at_ms: now,
        });
        self.next_offset += 1;
    }

    /// Writes the "lines dropped" note once there is room again (or at the end, `force`).
    fn flush_note(&mut self, cfg: &TicketsConfig, now: u64, force: bool) {
        if self.pending_dropped == 0 {
            return;
        }
        let text = format!(
            "ferry agent: {} line(s) of output dropped: the log buffer for this script was full",
            self.pending_dropped
        );
        if force || !self.full(cfg, text.len()) {
            self.pending_dropped = 0;
            self.push(cfg, Stream::Agent, text, now, true);
        }
    }

    /// Frees lines before `offset` (the server has them).
    fn ack(&mut self, offset: u64) {
        while self.first_offset < offset {
            match self.lines.pop_front() {
                Some(l) => {
                    self.bytes = self.bytes.saturating_sub(l.text.len());
                    self.first_offset += 1;
                }
                None => break,
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated]", text.get(..end).unwrap_or(""))
}

fn empty_status(ticket: &str, state: ScriptState, offset: u64) -> ScriptStatus {
    ScriptStatus {
        ticket: ticket.to_owned(),
        state,
        lines: Vec::new(),
        next_offset: offset,
        end_of_log: true,
        dropped_lines: 0,
    }
}

/// Status with up to `max_lines` / `max_bytes` of lines from `offset`.
fn status_of(
    ticket: &str,
    run: &Run,
    offset: u64,
    max_lines: usize,
    max_bytes: usize,
) -> ScriptStatus {
    let from = offset.max(run.first_offset);
    let skip = usize::try_from(from - run.first_offset).unwrap_or(usize::MAX);
    let mut lines = Vec::new();
    let mut bytes = 0usize;
    for l in run.lines.iter().skip(skip) {
        if lines.len() >= max_lines || (!lines.is_empty() && bytes + l.text.len() > max_bytes) {
            break;
        }
        if max_lines == 0 {
            break;
        }
        bytes += l.text.len();
        lines.push(l.clone());
    }
    let next_offset = lines.last().map_or(from, |l| l.offset + 1);
    ScriptStatus {
        ticket: ticket.to_owned(),
        state: run.state,
        next_offset,
        end_of_log: next_offset == run.next_offset,
        dropped_lines: run.dropped_total,
        lines,
    }
}
