//! The one integration-test binary (one binary links faster than many on two cores). Every
//! module starts the real `ferry` binary, a real PostgreSQL cluster, real Node.js clients, and
//! so on; suites that need a missing system binary say they were skipped, and fail instead
//! under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod accounts;
mod agents;
mod api;
mod channels;
mod cli;
mod dashboard;
mod deploy_vars;
mod email;
mod freezes;
mod lifecycles;
mod machines;
mod manual;
mod netns;
mod package_deploy;
mod packages;
mod permissions;
mod pg;
mod portal;
mod portal_browser;
mod portal_client;
mod portal_config;
mod portal_infra;
mod portal_projects;
mod portal_releases;
mod release_diff;
mod resilience;
mod secrets_scan;
mod ssh_targets;
mod sshd;
mod step_flow;
mod step_templates;
mod store_contract;
mod subscriptions;
mod tenants;
mod ts_client;
mod users;
mod variables;
mod workers;
