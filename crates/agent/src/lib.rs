//! The Ferry agent and both ends of the server↔agent connection.
//!
//! - [`wire`]: the WebSocket settings and envelope encoding shared by both ends.
//! - [`rpc`]: the requester (the server): request/response matching, timeouts, keep-alives.
//! - [`serve`]: the responder (the agent): answers requests on one connection.
//! - [`runtime`]: the agent's handler: scripts under idempotent tickets, uploads into the
//!   package cache, package stages; state persisted in the data directory.
//! - [`agent`]: the agent process: data directory, configuration, listening and polling modes.
//! - [`hub`]: the server's side: dials listening agents, accepts polling agents, and
//!   [`remote::AgentTarget`] runs steps on them through the executor's `Target` trait.
//!
//! One message protocol (`ferry-protocol`) over WebSocket on mutual TLS in both modes; each side
//! pins the other's certificate thumbprint before any frame is read. See `docs/agent.md`.

pub mod agent;
pub mod hub;
pub mod identity;
pub mod remote;
pub mod rpc;
pub mod runtime;
pub mod serve;
pub mod wire;

#[cfg(test)]
mod tests;

/// The agent's version, reported in capabilities.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Default port a listening agent serves on.
pub const DEFAULT_LISTEN_PORT: u16 = 10933;
/// Default port of the server's polling endpoint.
pub const DEFAULT_POLLING_PORT: u16 = 10943;
