//! The server's agent wiring: its TLS identity, the agent hub (listening dials and the polling
//! endpoint), the refresh of known machines, audit events for untrusted certificates, and
//! periodic health checks.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_agent::hub::{AgentEndpoint, AgentHub, HubEvents, HubOptions};
use ferry_crypto::tls::Identity;
use ferry_domain::Machine;
use ferry_domain::time::now_ms;
use ferry_store::{Db, DocQuery, EventRow};
use tokio_util::sync::CancellationToken;

/// The server identity agents pin: `DATA_DIR/server.crt.pem` + `server.key.pem` (0600).
pub fn server_identity(data_dir: &Path) -> anyhow::Result<Identity> {
    let (id, created) = ferry_agent::identity::load_or_create(data_dir, "server", || {
        Identity::generate_server().map_err(|e| e.to_string())
    })
    .map_err(anyhow::Error::msg)
    .context("could not load the server's TLS identity")?;
    if created {
        tracing::info!(thumbprint = %id.thumbprint(), "created the server's TLS identity");
    }
    Ok(id)
}

struct AuditEvents {
    db: Db,
}

impl HubEvents for AuditEvents {
    fn machines(&self) -> ferry_agent::serve::BoxFuture<'_, Vec<AgentEndpoint>> {
        Box::pin(async move {
            agent_machines(&self.db)
                .await
                .iter()
                .map(AgentEndpoint::from_machine)
                .collect()
        })
    }

    fn untrusted_certificate(
        &self,
        remote: &str,
        presented: &str,
        machine: Option<&AgentEndpoint>,
    ) {
        tracing::warn!(%remote, %presented, "refused a peer whose certificate is not trusted");
        let (message, related) = match machine {
            Some(m) => (
                format!(
                    "The agent {} at {remote} presented a certificate with thumbprint {presented}, not the registered {}; the connection was closed and nothing was sent",
                    m.name, m.thumbprint
                ),
                m.machine_id.clone(),
            ),
            None => (
                format!(
                    "A polling agent at {remote} presented a certificate with thumbprint {presented}, which no machine is registered with; the connection was closed"
                ),
                String::new(),
            ),
        };
        let details =
            serde_json::json!({"PresentedThumbprint": presented, "Remote": remote}).to_string();
        let ip = remote.split(':').next().unwrap_or_default().to_string();
        system_event(
            &self.db,
            "MachineCertificateRejected",
            message,
            related,
            details,
            ip,
        );
    }
}

/// Writes a system audit event in the background (the caller is inside a TLS or SSH
/// handshake and must not wait on the store).
fn system_event(
    db: &Db,
    category: &str,
    message: String,
    related: String,
    details: String,
    ip: String,
) {
    let db = db.clone();
    let category = category.to_string();
    tokio::spawn(async move {
        let _ = db
            .insert_event(&EventRow {
                id: String::new(),
                seq: 0,
                space_id: ferry_domain::DEFAULT_SPACE_ID.to_string(),
                category,
                message,
                username: "system".to_string(),
                user_id: "system".to_string(),
                occurred: now_ms(),
                related_document_ids: related,
                details,
                ip_address: ip,
            })
            .await;
    });
}

pub fn hub(db: &Db, identity: Identity) -> Arc<AgentHub> {
    AgentHub::new(
        identity,
        HubOptions::default(),
        Arc::new(AuditEvents { db: db.clone() }),
    )
}

/// Every agent in the store: deployment targets and workers.
pub async fn agent_machines(db: &Db) -> Vec<Machine> {
    all_machines(db)
        .await
        .into_iter()
        .filter(|m| {
            matches!(
                m.endpoint.communication_style.as_str(),
                "TentaclePassive" | "TentacleActive"
            )
        })
        .collect()
}

/// Keeps the hub's view of polling machines (subscription → thumbprint) current.
pub async fn refresh_loop(db: Db, hub: Arc<AgentHub>, every: Duration, stop: CancellationToken) {
    let mut last: Vec<AgentEndpoint> = Vec::new();
    loop {
        let eps: Vec<AgentEndpoint> = agent_machines(&db)
            .await
            .iter()
            .map(AgentEndpoint::from_machine)
            .collect();
        if eps != last {
            hub.set_machines(&eps);
            last = eps;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => break,
        }
    }
}

/// Queues a health check per machine policy on its interval (the first soon after start).
pub async fn health_loop(db: Db, executor: Arc<ferry_executor::Executor>, stop: CancellationToken) {
    let mut last: std::collections::HashMap<String, tokio::time::Instant> =
        std::collections::HashMap::new();
    let started = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.cancelled() => break,
        }
        let machines: Vec<Machine> = all_machines(&db)
            .await
            .into_iter()
            .filter(|m| !m.is_disabled)
            .collect();
        if machines.is_empty() {
            continue;
        }
        let (rows, _) = match db.list_docs(&DocQuery::new("MachinePolicies")).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        for row in rows {
            let Ok(p) = serde_json::from_str::<ferry_domain::MachinePolicy>(&row.body) else {
                continue;
            };
            let secs = ferry_server::api::machinepolicies::parse_timespan(
                &p.machine_health_check_policy.health_check_interval,
            )
            .unwrap_or(600)
            .max(60);
            let due = match last.get(&p.id) {
                Some(t) => t.elapsed() >= Duration::from_secs(secs),
                None => started.elapsed() >= Duration::from_secs(5),
            };
            if !due {
                continue;
            }
            let ids: Vec<String> = machines
                .iter()
                .filter(|m| m.machine_policy_id == p.id && m.space_id == p.space_id)
                .map(|m| m.id.clone())
                .collect();
            last.insert(p.id.clone(), tokio::time::Instant::now());
            if ids.is_empty() {
                continue;
            }
            let desc = format!("Check the health of {} machine(s) ({})", ids.len(), p.name);
            match ferry_executor::health::queue(&db, &p.space_id, &ids, &desc, "system").await {
                Ok(_) => executor.wake(),
                Err(e) => tracing::warn!(error = %e, "could not queue a health check"),
            }
        }
    }
}

/// Every deployment target the server can reach: agents through the hub, SSH targets through
/// the SSH pool. Both are driven as `AgentTarget`s.
pub struct Targets {
    pub agents: ferry_agent::remote::HubTargets,
    pub ssh: Arc<ferry_ssh::SshPool>,
    pub retry_window: Duration,
}

impl ferry_executor::TargetProvider for Targets {
    fn target(&self, m: &Machine) -> Result<Arc<dyn ferry_executor::Target>, String> {
        if m.endpoint.communication_style != "Ssh" {
            return self.agents.target(m);
        }
        let ep = &m.endpoint;
        let host = ep
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .ok_or("the SSH target has no host")?;
        let fingerprint = ep
            .fingerprint
            .clone()
            .filter(|f| !f.is_empty())
            .ok_or("the SSH target has no pinned host key fingerprint")?;
        let account_id = ep
            .account_id
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or("the SSH target has no account")?;
        let connector = ferry_ssh::SshConnector {
            pool: self.ssh.clone(),
            ep: ferry_ssh::SshEndpoint {
                machine_id: m.id.clone(),
                name: m.name.clone(),
                host,
                port: ep.port.unwrap_or(22),
                fingerprint,
                account_id,
            },
        };
        Ok(Arc::new(ferry_agent::remote::AgentTarget::with_connector(
            &m.name,
            Arc::new(connector),
            self.retry_window,
            Duration::from_secs(60),
        )))
    }
}

/// Opens accounts for SSH sessions and audits changed host keys.
pub struct SshAudit {
    pub db: Db,
    pub key: Arc<ferry_crypto::MasterKey>,
}

impl ferry_ssh::SshEvents for SshAudit {
    fn credentials(
        &self,
        account_id: &str,
    ) -> ferry_agent::serve::BoxFuture<'_, Result<ferry_ssh::SshCredentials, String>> {
        let id = account_id.to_string();
        Box::pin(async move {
            let doc = self
                .db
                .get_doc(&id)
                .await
                .map_err(|e| format!("could not read the account {id}: {e}"))?
                .ok_or_else(|| format!("the account {id} no longer exists"))?;
            let a: ferry_domain::Account = serde_json::from_str(&doc.body)
                .map_err(|e| format!("the account {id} is unreadable: {e}"))?;
            let open = |field: &str, sealed: &Option<String>| -> Result<Option<String>, String> {
                match sealed {
                    None => Ok(None),
                    Some(s) => ferry_crypto::open(&self.key, &ferry_crypto::account_aad(&a.id, field), s)
                        .map(Some)
                        .map_err(|_| format!("the secret of the account '{}' cannot be opened with this server's master key", a.name)),
                }
            };
            let auth = match a.account_type.as_str() {
                "SshKeyPair" => ferry_ssh::SshAuth::Key {
                    pem: open("PrivateKeyFile", &a.sealed_private_key)?
                        .ok_or_else(|| format!("the account '{}' has no private key", a.name))?,
                    passphrase: open("PrivateKeyPassphrase", &a.sealed_private_key_passphrase)?,
                },
                "UsernamePassword" => ferry_ssh::SshAuth::Password(
                    open("Password", &a.sealed_password)?
                        .ok_or_else(|| format!("the account '{}' has no password", a.name))?,
                ),
                other => {
                    return Err(format!(
                        "the account '{}' is a {other} account, which SSH targets cannot use",
                        a.name
                    ));
                }
            };
            Ok(ferry_ssh::SshCredentials {
                username: a.username.clone(),
                auth,
            })
        })
    }

    fn host_key_mismatch(&self, ep: &ferry_ssh::SshEndpoint, presented: &str) {
        tracing::warn!(target = %ep.name, %presented, pinned = %ep.fingerprint, "refused an SSH host key");
        let message = format!(
            "The SSH target {} ({}:{}) presented the host key {presented}, not the pinned {}; the connection was closed and nothing was run",
            ep.name, ep.host, ep.port, ep.fingerprint
        );
        let details = serde_json::json!({"PresentedFingerprint": presented, "PinnedFingerprint": ep.fingerprint}).to_string();
        let related = ep.machine_id.clone();
        system_event(
            &self.db,
            "MachineHostKeyRejected",
            message,
            related,
            details,
            String::new(),
        );
    }
}

/// Every deployment target and worker, of any style.
pub async fn all_machines(db: &Db) -> Vec<Machine> {
    let mut out = Vec::new();
    for collection in ["Machines", "Workers"] {
        match db.list_docs(&DocQuery::new(collection)).await {
            Ok((rows, _)) => out.extend(
                rows.iter()
                    .filter_map(|r| serde_json::from_str::<Machine>(&r.body).ok()),
            ),
            Err(e) => tracing::warn!(error = %e, collection, "could not read machines"),
        }
    }
    out
}
