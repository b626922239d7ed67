//! Ferry's domain: the resources users manage (spaces, environments, projects, processes,
//! releases, deployments, tasks), their identifiers, and the rules that need no IO, such as
//! lifecycle progression and task state transitions.
//!
//! Architecture invariant: this crate does no IO and depends on no runtime, database or web crate.

pub mod action_template;
pub mod channel_rules;
pub mod ids;
pub mod interruption;
pub mod lifecycle;
pub mod model;
pub mod task;
pub mod tenant;
pub mod time;
pub mod variables;
pub mod version;
pub mod version_range;

pub use model::*;
pub use tenant::{Tag, TagSet, Tenant};
