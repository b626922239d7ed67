//! `ferry agent …`: make the agent's identity, configure it, register it with a server, run it,
//! and install it as a systemd service.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ferry_agent::agent::{AgentConfig, IDENTITY, Mode};
use ferry_crypto::tls::{Identity, Thumbprint};
use serde_json::{Value, json};

use crate::cli::ConnArgs;

#[derive(Args, Debug, Clone)]
pub struct DataDir {
    /// The agent's data directory (key pair, configuration, package cache)
    #[arg(long, env = "FERRY_AGENT_DATA_DIR", default_value = "./ferry-agent")]
    pub data_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Make the agent's key pair and certificate (kept; --force replaces it)
    CreateIdentity {
        #[command(flatten)]
        dir: DataDir,
        /// Name in the certificate
        #[arg(long, default_value = "agent")]
        name: String,
        /// Replace an existing identity (the server must then be told the new thumbprint)
        #[arg(long)]
        force: bool,
    },
    /// Print the agent's certificate thumbprint
    ShowThumbprint {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Change the agent's configuration without the server
    Configure {
        #[command(flatten)]
        dir: DataDir,
        /// The agent's display name
        #[arg(long)]
        name: Option<String>,
        /// Listen on this port (or address:port) for the server
        #[arg(long, value_name = "PORT|ADDR", conflicts_with = "poll")]
        listen: Option<String>,
        /// Poll the server's polling endpoint instead of listening
        #[arg(long)]
        poll: bool,
        /// The server's polling endpoint (host:port)
        #[arg(long, value_name = "HOST:PORT")]
        polling_endpoint: Option<String>,
        /// The subscription id the machine is registered with (poll://ID/)
        #[arg(long)]
        subscription_id: Option<String>,
        /// Trust this server thumbprint too (repeat; several are trusted while keys rotate)
        #[arg(long, value_name = "THUMBPRINT")]
        trust: Vec<String>,
        /// Stop trusting this server thumbprint
        #[arg(long, value_name = "THUMBPRINT")]
        untrust: Vec<String>,
    },
    /// Register this agent with a server as a deployment target (--environment and --role) or
    /// as a worker (--worker-pool)
    Register {
        #[command(flatten)]
        dir: DataDir,
        /// The target's (or worker's) name on the server
        #[arg(long)]
        name: String,
        /// Environments (names or ids), repeatable
        #[arg(long = "environment", required_unless_present = "worker_pools")]
        environments: Vec<String>,
        /// Roles, repeatable
        #[arg(long = "role", required_unless_present = "worker_pools")]
        roles: Vec<String>,
        /// Register as a worker of this pool (name or id) instead of a deployment target,
        /// repeatable
        #[arg(
            long = "worker-pool",
            value_name = "NAME|ID",
            conflicts_with_all = ["environments", "roles", "tenants"]
        )]
        worker_pools: Vec<String>,
        /// Tenants (ids), repeatable
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Listening mode: the port to serve on (the server connects)
        #[arg(long, value_name = "PORT", conflicts_with = "poll")]
        listen: Option<u16>,
        /// Polling mode: the agent connects to the server
        #[arg(long)]
        poll: bool,
        /// Listening mode: the host name or address the server dials
        #[arg(long, value_name = "HOST")]
        public_host: Option<String>,
        /// Listening mode: the local address to bind (default 0.0.0.0)
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
        bind: String,
        /// Polling mode: the server's polling endpoint (default: the server's host and its
        /// polling port)
        #[arg(long, value_name = "HOST:PORT")]
        polling_endpoint: Option<String>,
        /// The server's thumbprint, checked against the one the API reports (pin it from a
        /// trusted source when the API is not served over HTTPS)
        #[arg(long, value_name = "THUMBPRINT")]
        server_thumbprint: Option<String>,
        /// Machine policy (name or id)
        #[arg(long)]
        policy: Option<String>,
        /// Replace a machine (or worker) with the same name
        #[arg(long)]
        force: bool,
    },
    /// Run the agent (listening or polling, as configured)
    Run {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Serve one connection on standard input and output (the server starts this on SSH
    /// targets)
    #[command(hide = true)]
    Stdio {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Write a systemd unit that runs the agent
    InstallService {
        #[command(flatten)]
        dir: DataDir,
        /// Where to write the unit
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        #[arg(long, default_value = "ferry-agent")]
        service_name: String,
        /// The user the service runs as
        #[arg(long, default_value = "root")]
        user: String,
    },
}

pub fn main(conn: ConnArgs, cmd: AgentCommand) -> i32 {
    let result = match cmd {
        AgentCommand::Run { dir } => run(dir.data_dir),
        AgentCommand::Stdio { dir } => stdio(dir.data_dir),
        AgentCommand::Register { .. } => {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(register(conn, cmd)),
                Err(e) => Err(e.into()),
            }
        }
        other => local(other),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn run(data_dir: PathBuf) -> anyhow::Result<()> {
    crate::server::init_tracing_plain();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let s2 = stop.clone();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            s2.cancel();
        });
        ferry_agent::agent::run(data_dir, stop)
            .await
            .map_err(anyhow::Error::msg)
    })
}

fn stdio(data_dir: PathBuf) -> anyhow::Result<()> {
    crate::server::init_tracing_plain();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let s2 = stop.clone();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            s2.cancel();
        });
        ferry_agent::agent::stdio(data_dir, stop)
            .await
            .map_err(anyhow::Error::msg)
    })
}

fn load_or_make(dir: &Path, name: &str) -> anyhow::Result<(Identity, bool)> {
    ferry_agent::identity::load_or_create(dir, IDENTITY, || {
        Identity::generate_agent(name).map_err(|e| e.to_string())
    })
    .map_err(anyhow::Error::msg)
}

fn local(cmd: AgentCommand) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::CreateIdentity { dir, name, force } => {
            let d = &dir.data_dir;
            if force {
                let id = Identity::generate_agent(&name)?;
                ferry_agent::identity::save(d, IDENTITY, &id).map_err(anyhow::Error::msg)?;
                println!("{}", id.thumbprint());
                return Ok(());
            }
            let (id, created) = load_or_make(d, &name)?;
            if !created {
                eprintln!(
                    "{} already holds an identity (use --force to replace it)",
                    d.display()
                );
            }
            println!("{}", id.thumbprint());
            Ok(())
        }
        AgentCommand::ShowThumbprint { dir } => {
            let id =
                ferry_agent::agent::load_identity(&dir.data_dir).map_err(anyhow::Error::msg)?;
            println!("{}", id.thumbprint());
            Ok(())
        }
        AgentCommand::Configure {
            dir,
            name,
            listen,
            poll,
            polling_endpoint,
            subscription_id,
            trust,
            untrust,
        } => {
            let d = &dir.data_dir;
            let mut cfg = AgentConfig::load(d).unwrap_or(AgentConfig {
                name: name.clone().unwrap_or_else(hostname),
                mode: Mode::Listen {
                    address: format!("0.0.0.0:{}", ferry_agent::DEFAULT_LISTEN_PORT),
                },
                trusted_server_thumbprints: Vec::new(),
                server_url: None,
                machine_id: None,
            });
            if let Some(n) = name {
                cfg.name = n;
            }
            if let Some(l) = listen {
                cfg.mode = Mode::Listen {
                    address: listen_address(&l, "0.0.0.0"),
                };
            }
            if poll || polling_endpoint.is_some() || subscription_id.is_some() {
                let (mut ep, mut sub) = match &cfg.mode {
                    Mode::Poll {
                        endpoint,
                        subscription_id,
                    } => (endpoint.clone(), subscription_id.clone()),
                    Mode::Listen { .. } => (String::new(), new_subscription()),
                };
                if let Some(e) = polling_endpoint {
                    ep = e;
                }
                if let Some(s) = subscription_id {
                    sub = s;
                }
                if ep.is_empty() {
                    bail!("polling mode needs --polling-endpoint HOST:PORT");
                }
                cfg.mode = Mode::Poll {
                    endpoint: ep,
                    subscription_id: sub,
                };
            }
            for t in trust {
                let tp: Thumbprint = t.parse()?;
                if !cfg
                    .trusted_server_thumbprints
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(tp.as_str()))
                {
                    cfg.trusted_server_thumbprints.push(tp.as_str().to_string());
                }
            }
            for t in untrust {
                let tp: Thumbprint = t.parse()?;
                cfg.trusted_server_thumbprints
                    .retain(|x| !x.eq_ignore_ascii_case(tp.as_str()));
            }
            cfg.save(d).map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&cfg)?);
            Ok(())
        }
        AgentCommand::InstallService {
            dir,
            unit_dir,
            service_name,
            user,
        } => {
            let exe = std::env::current_exe().context("could not find this binary")?;
            let data = std::path::absolute(&dir.data_dir)?;
            let unit = format!(
                "[Unit]\nDescription=Ferry deployment agent\nAfter=network-online.target\nWants=network-online.target\n\n\
[Service]\nType=simple\nUser={user}\nExecStart={} agent run --data-dir {}\nRestart=always\nRestartSec=5\nKillMode=process\nLimitNOFILE=65536\n\n\
[Install]\nWantedBy=multi-user.target\n",
                exe.display(),
                data.display()
            );
            std::fs::create_dir_all(&unit_dir)?;
            let path = unit_dir.join(format!("{service_name}.service"));
            std::fs::write(&path, unit)
                .with_context(|| format!("could not write {}", path.display()))?;
            println!("Wrote {}", path.display());
            println!(
                "Start it with: systemctl daemon-reload && systemctl enable --now {service_name}"
            );
            Ok(())
        }
        AgentCommand::Run { .. } | AgentCommand::Stdio { .. } | AgentCommand::Register { .. } => {
            Ok(())
        }
    }
}

fn listen_address(l: &str, bind: &str) -> String {
    if l.contains(':') {
        l.to_string()
    } else {
        format!("{bind}:{l}")
    }
}

fn new_subscription() -> String {
    format!("agent-{}", uuid_like())
}

fn uuid_like() -> String {
    use std::time::SystemTime;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

async fn register(conn: ConnArgs, cmd: AgentCommand) -> anyhow::Result<()> {
    let AgentCommand::Register {
        dir,
        name,
        environments,
        roles,
        worker_pools,
        tenants,
        listen,
        poll,
        public_host,
        bind,
        polling_endpoint,
        server_thumbprint,
        policy,
        force,
    } = cmd
    else {
        return Ok(());
    };
    if listen.is_none() && !poll {
        bail!("say how the server reaches the agent: --listen PORT or --poll");
    }
    let worker = !worker_pools.is_empty();
    if !worker && (environments.is_empty() || roles.is_empty()) {
        bail!(
            "say what the agent is: a deployment target (--environment and --role) or a worker (--worker-pool)"
        );
    }
    let d = &dir.data_dir;
    let (identity, _) = load_or_make(d, &name)?;
    let client = ferry_client::Client::new(&conn.server, conn.api_key.clone())?;
    // The server's thumbprint, read over the authenticated API.
    let cert = client
        .get_json("/api/certificates/certificate-global")
        .await
        .context("could not read the server's certificate thumbprint")?;
    let api_tp = cert
        .get("Thumbprint")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let pinned: Thumbprint = match &server_thumbprint {
        Some(given) => {
            let g: Thumbprint = given.parse()?;
            if !api_tp.is_empty() && !g.as_str().eq_ignore_ascii_case(&api_tp) {
                bail!(
                    "the server reports thumbprint {api_tp}, not the {} you gave; refusing to register",
                    g
                );
            }
            g
        }
        None => api_tp
            .parse()
            .context("the server did not report a valid certificate thumbprint")?,
    };
    let space = client.resolve_space(&conn.space).await?;
    let space_id = space.id.clone();
    let (mode, style, uri) = if poll {
        let ep = match polling_endpoint {
            Some(e) => e,
            None => {
                let port = cert
                    .get("PollingPort")
                    .and_then(Value::as_u64)
                    .context("the server has no polling endpoint; give --polling-endpoint")?;
                let host = url_host(&conn.server)?;
                format!("{host}:{port}")
            }
        };
        let sub = new_subscription();
        (
            Mode::Poll {
                endpoint: ep,
                subscription_id: sub.clone(),
            },
            "TentacleActive",
            format!("poll://{sub}/"),
        )
    } else {
        let port = listen.unwrap_or(ferry_agent::DEFAULT_LISTEN_PORT);
        let host = public_host.unwrap_or_else(hostname);
        (
            Mode::Listen {
                address: format!("{bind}:{port}"),
            },
            "TentaclePassive",
            format!("https://{host}:{port}/"),
        )
    };
    let endpoint = json!({
        "CommunicationStyle": style,
        "Uri": uri,
        "Thumbprint": identity.thumbprint().as_str(),
    });
    let mut body = if worker {
        json!({
            "Name": name,
            "WorkerPoolIds": worker_pools,
            "Endpoint": endpoint,
        })
    } else {
        json!({
            "Name": name,
            "EnvironmentIds": environments,
            "Roles": roles,
            "TenantIds": tenants,
            "TenantedDeploymentParticipation": if tenants.is_empty() { "Untenanted" } else { "TenantedOrUntenanted" },
            "Endpoint": endpoint,
        })
    };
    if let Some(p) = policy {
        body["MachinePolicyId"] = json!(p);
    }
    let (collection, kind) = if worker {
        ("workers", "worker")
    } else {
        ("machines", "deployment target")
    };
    let path = format!("/api/{space_id}/{collection}");
    let existing = client
        .get_json(&format!("{path}?name={}", urlencode(&name)))
        .await?;
    let found = existing
        .get("Items")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .cloned();
    let machine = match found {
        Some(m) if force => {
            let id = m.get("Id").and_then(Value::as_str).unwrap_or_default();
            client.put_json(&format!("{path}/{id}"), &body).await?
        }
        Some(_) => {
            bail!("a {kind} named '{name}' already exists; use --force to replace it")
        }
        None => client.post_json(&path, &body).await?,
    };
    let machine_id = machine
        .get("Id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let cfg = AgentConfig {
        name: name.clone(),
        mode,
        trusted_server_thumbprints: vec![pinned.as_str().to_string()],
        server_url: Some(conn.server.clone()),
        machine_id: Some(machine_id.clone()),
    };
    cfg.save(d).map_err(anyhow::Error::msg)?;
    if worker {
        println!("Registered {name} as worker {machine_id} ({style})");
    } else {
        println!("Registered {name} as {machine_id} ({style})");
    }
    println!("  Agent thumbprint:  {}", identity.thumbprint());
    println!("  Server thumbprint: {pinned}");
    println!("Start it with: ferry agent run --data-dir {}", d.display());
    Ok(())
}

fn url_host(url: &str) -> anyhow::Result<String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .context("the server URL has no scheme")?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let host = match hostport.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => hostport.split(':').next().unwrap_or_default().to_string(),
    };
    if host.is_empty() {
        bail!("the server URL '{url}' has no host");
    }
    Ok(host)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
