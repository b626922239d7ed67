//! `ferry server`: configuration (flags, each also read from a `FERRY_*` variable), the master
//! key, the store, first-start bootstrap, the task worker and the HTTP listener, with graceful
//! shutdown on SIGTERM and SIGINT.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ferry_crypto::{MasterKey, Secret};
use ferry_executor::{Executor, ExecutorConfig};
use ferry_server::{AppState, ServerConfig};
use ferry_store::Db;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address to serve HTTP on (port 0 picks a free port).
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Directory for the embedded database, the master key and working files.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./ferry-data")]
    data_dir: PathBuf,
    /// Database URL: sqlite://PATH (default: ferry.db in the data directory) or postgres://….
    #[arg(long, env = "FERRY_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Log format of the server's own log.
    #[arg(long, env = "FERRY_LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
    /// The URL clients use to reach this server (default: http://LISTEN).
    #[arg(long, env = "FERRY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Most tasks this node runs at once.
    /// Where polling agents connect (mutual TLS). `off` disables the endpoint.
    #[arg(long, env = "FERRY_POLLING_LISTEN", default_value = "0.0.0.0:10943")]
    polling_listen: String,
    /// How long a step keeps retrying an agent it cannot reach before it fails.
    #[arg(long, env = "FERRY_AGENT_RETRY_SECONDS", default_value_t = 120)]
    agent_retry_seconds: u64,
    /// At most this many (step × target) runs at once on this node, across deployments.
    #[arg(long, env = "FERRY_TARGET_CAP", default_value_t = ferry_executor::DEFAULT_TARGET_CAP)]
    target_cap: usize,
    #[arg(long, env = "FERRY_TASK_CAP", default_value_t = 10)]
    task_cap: usize,
    /// This node's name (default: kept in the data directory).
    #[arg(long, env = "FERRY_NODE_NAME")]
    node_name: Option<String>,
    /// Seconds a task lease lasts without a heartbeat.
    #[arg(long, env = "FERRY_TASK_LEASE_SECONDS", default_value_t = 30)]
    task_lease_seconds: u64,
    /// The master key (base64 of 32 bytes); by default kept in DATA_DIR/master.key.
    #[arg(long, env = "FERRY_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// An API key for the admin user (API- and 26 or more uppercase letters or digits).
    #[arg(long, env = "FERRY_ADMIN_API_KEY", hide_env_values = true)]
    admin_api_key: Option<String>,
    /// Built-in feed retention, hourly: delete packages published more than this many days ago
    /// (never a version a release uses).
    #[arg(long, env = "FERRY_PACKAGE_RETENTION_DAYS", value_name = "DAYS")]
    package_retention_days: Option<u32>,
    /// Built-in feed retention, hourly: keep only this many of the highest versions of each
    /// package id (never deleting a version a release uses). With --package-retention-days too,
    /// a package goes only when both rules select it.
    #[arg(long, env = "FERRY_PACKAGE_RETENTION_VERSIONS", value_name = "N")]
    package_retention_versions: Option<u32>,
    /// The longest an API key may live, in days (a key asking for more is refused).
    #[arg(long, env = "FERRY_API_KEY_MAX_DAYS", value_name = "DAYS", default_value_t = 366,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    api_key_max_days: u32,
    /// Webhooks may reach this range although the built-in deny-list (loopback, link-local,
    /// private, CGNAT, multicast…) refuses it. Repeatable; comma-separated in the variable.
    #[arg(
        long,
        env = "FERRY_WEBHOOK_ALLOW",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    webhook_allow: Vec<String>,
    /// Webhooks may never reach this range (wins over --webhook-allow). Repeatable.
    #[arg(
        long,
        env = "FERRY_WEBHOOK_DENY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    webhook_deny: Vec<String>,
    /// Attempts per event and webhook before giving up on that event.
    #[arg(long, env = "FERRY_WEBHOOK_ATTEMPTS", default_value_t = 4)]
    webhook_attempts: u32,
    /// Delay before the first webhook retry, in milliseconds (doubled after each failure).
    #[arg(long, env = "FERRY_WEBHOOK_RETRY_MS", default_value_t = 1000)]
    webhook_retry_ms: u64,
    /// A reverse proxy whose X-Forwarded-For header is believed (the audit log's client
    /// address is then the right-most address not in these ranges). Repeatable.
    #[arg(
        long,
        env = "FERRY_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    trusted_proxy: Vec<String>,
    /// Audit events older than this many days are moved, hourly, to daily archive files under
    /// the data directory (`event-archives/`), downloadable through `/api/events/archives`.
    #[arg(long, env = "FERRY_EVENT_RETENTION_DAYS", value_name = "DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    event_retention_days: u32,
}

/// The webhook delivery settings from the `--webhook-*` flags.
fn webhook_settings(args: &ServerArgs) -> anyhow::Result<ferry_server::outbound::WebhookSettings> {
    let parse = |list: &[String], flag: &str| {
        list.iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse::<ferry_server::outbound::Cidr>()
                    .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    Ok(ferry_server::outbound::WebhookSettings {
        policy: ferry_server::outbound::Policy {
            allow: parse(&args.webhook_allow, "--webhook-allow")?,
            deny: parse(&args.webhook_deny, "--webhook-deny")?,
        },
        attempts: args.webhook_attempts.clamp(1, 20),
        retry_base: Duration::from_millis(args.webhook_retry_ms.min(600_000)),
    })
}

/// How often the built-in feed's retention policy is applied.
const PACKAGE_RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// Temporary upload files older than this are left from a process that died mid-upload.
const STALE_UPLOAD_AGE: Duration = Duration::from_secs(3600);

pub fn main(args: ServerArgs) -> i32 {
    init_tracing(args.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Logging for `ferry agent run`: human-readable lines on stderr.
pub(crate) fn init_tracing_plain() {
    init_tracing(LogFormat::Pretty);
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Loads the master key from the environment, or from `master.key` in the data directory, or
/// makes one there (mode 0600) on first start.
fn master_key(data_dir: &Path, from_env: Option<&str>) -> anyhow::Result<MasterKey> {
    if let Some(k) = from_env {
        return MasterKey::from_base64(k).context("FERRY_MASTER_KEY is not usable");
    }
    let path = data_dir.join("master.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        restrict(&path)?;
        return MasterKey::from_base64(&text)
            .with_context(|| format!("{} does not hold a valid master key", path.display()));
    }
    let key = MasterKey::generate();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("could not create {}", path.display()))?;
    f.write_all(key.to_base64().as_bytes())?;
    f.sync_all()?;
    tracing::info!(path = %path.display(), "created the master key; back it up: without it sensitive values cannot be read");
    Ok(key)
}

fn restrict(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        tracing::warn!(path = %path.display(), "the master key file was readable by others; its mode is now 0600");
    }
    Ok(())
}

fn node_name(data_dir: &Path, given: Option<String>) -> anyhow::Result<String> {
    if let Some(n) = given.filter(|n| !n.trim().is_empty()) {
        return Ok(n);
    }
    let path = data_dir.join("node-name");
    if let Ok(n) = std::fs::read_to_string(&path) {
        let n = n.trim().to_string();
        if !n.is_empty() {
            return Ok(n);
        }
    }
    let n = format!("node-{}", &uuid_simple()[..8]);
    std::fs::write(&path, &n).with_context(|| format!("could not write {}", path.display()))?;
    Ok(n)
}

fn uuid_simple() -> String {
    ferry_crypto::hash_api_key(&format!(
        "{:?}{}",
        std::time::SystemTime::now(),
        std::process::id()
    ))
}

async fn run(args: ServerArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "could not create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| args.data_dir.clone());
    if let Some(k) = &args.admin_api_key {
        if !ferry_crypto::is_valid_api_key(k) {
            bail!(
                "FERRY_ADMIN_API_KEY must be API- followed by 26 or more uppercase letters or digits"
            );
        }
    }
    let key = master_key(&data_dir, args.master_key.as_deref())?;
    tracing::info!(fingerprint = %key.fingerprint(), "master key loaded");

    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("ferry.db").display()));
    let db = Db::open(&url).await.with_context(|| {
        format!(
            "could not open the database {}",
            ferry_store::redact_url(&url)
        )
    })?;
    db.migrate()
        .await
        .context("could not migrate the database")?;

    let admin_key = args.admin_api_key.clone().map(Secret::new);
    let boot = ferry_server::bootstrap::run(&db, admin_key.as_ref())
        .await
        .context("could not prepare the store")?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();

    // The built-in feed's files: DATA_DIR/packages/sha256/ab/abcdef…, uploads staged in
    // DATA_DIR/packages/tmp.
    let blobs: Arc<dyn ferry_store::blobs::BlobStore> = Arc::new(
        ferry_store::blobs::LocalDirStore::open(&data_dir.join("packages")).with_context(|| {
            format!(
                "could not create the package store in {}",
                data_dir.join("packages").display()
            )
        })?,
    );
    match blobs.sweep_staging(STALE_UPLOAD_AGE).await {
        Ok(n) if n > 0 => tracing::info!(count = n, "removed unfinished package uploads"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not sweep unfinished package uploads"),
    }
    let retention = ferry_server::api::retention::Policy {
        older_than_days: args.package_retention_days,
        keep_versions: args.package_retention_versions,
    };

    let node = node_name(&data_dir, args.node_name.clone())?;
    let executor = Executor::with_blobs(
        db.clone(),
        ExecutorConfig {
            node: node.clone(),
            task_cap: args.task_cap.max(1),
            target_cap: args.target_cap.max(1),
            lease: Duration::from_secs(args.task_lease_seconds.max(2)),
            work_dir: data_dir.join("work"),
            server_uri: public_url.clone(),
            master_key: Arc::new(key.clone()),
            package_cache: data_dir.join("work").join("package-cache"),
            apps_root: data_dir.join("applications"),
        },
        Some(blobs.clone()),
    );
    let recovered = executor
        .recover()
        .await
        .context("could not recover tasks")?;
    if recovered > 0 {
        tracing::warn!(
            count = recovered,
            "ended tasks left executing by this node's previous run"
        );
    }
    // Agents: the server's TLS identity, the hub, the polling endpoint.
    let identity = crate::agents::server_identity(&data_dir)?;
    let server_thumbprint = identity.thumbprint().as_str().to_string();
    let hub = crate::agents::hub(&db, identity);
    let agents_stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(crate::agents::refresh_loop(
        db.clone(),
        hub.clone(),
        Duration::from_secs(2),
        agents_stop.clone(),
    ));
    let polling_addr = if args.polling_listen.eq_ignore_ascii_case("off") {
        None
    } else {
        let l = tokio::net::TcpListener::bind(&args.polling_listen)
            .await
            .with_context(|| {
                format!(
                    "could not listen for polling agents on {}",
                    args.polling_listen
                )
            })?;
        let a = l.local_addr()?;
        tokio::spawn(hub.clone().serve_polling(l, agents_stop.clone()));
        Some(a)
    };
    let retry_window = Duration::from_secs(args.agent_retry_seconds.max(1));
    let ssh = ferry_ssh::SshPool::new(
        ferry_ssh::AgentBinary::current().map_err(anyhow::Error::msg)?,
        Arc::new(crate::agents::SshAudit {
            db: db.clone(),
            key: Arc::new(key.clone()),
        }),
        ferry_ssh::SshOptions::default(),
    );
    executor.set_targets(Arc::new(crate::agents::Targets {
        agents: ferry_agent::remote::HubTargets {
            hub: hub.clone(),
            retry_window,
        },
        ssh,
        retry_window,
    }));
    tokio::spawn(crate::agents::health_loop(
        db.clone(),
        executor.clone(),
        agents_stop.clone(),
    ));

    let state = AppState {
        db: db.clone(),
        executor: executor.clone(),
        config: Arc::new(ServerConfig {
            public_url: public_url.clone(),
            max_body_bytes: 20 * 1024 * 1024,
            server_thumbprint: server_thumbprint.clone(),
            polling_port: polling_addr.map(|a| a.port()),
            data_dir: data_dir.clone(),
            event_retention_days: args.event_retention_days,
            webhooks: webhook_settings(&args)?,
            api_key_max_days: args.api_key_max_days,
            trusted_proxies: args
                .trusted_proxy
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.parse::<ferry_server::outbound::Cidr>()
                        .map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        }),
        installation_id: Arc::from(boot.installation_id.as_str()),
        master_key: Arc::new(key.clone()),
        metrics: Arc::default(),
        routes: Arc::new(ferry_server::routes::table()),
        packages: Arc::new(ferry_server::api::packages::PackageStorage::new(
            blobs, retention,
        )),
        dashboard_catalogs: Arc::default(),
        authz: Arc::default(),
    };
    // Follow finished tasks (lifecycle automatic deployment) before the worker can finish any.
    let auto_deploy = ferry_server::api::autodeploy::spawn(state.clone());
    let release_retention = tokio::spawn(ferry_server::api::release_retention::periodic(
        state.clone(),
        ferry_server::api::release_retention::INTERVAL,
    ));
    let event_retention = tokio::spawn(ferry_server::api::event_archives::periodic(
        state.clone(),
        ferry_server::api::event_archives::INTERVAL,
    ));
    let webhooks = tokio::spawn(ferry_server::api::subscriptions::deliver_forever(
        state.clone(),
    ));
    let worker = tokio::spawn(executor.clone().run());
    let retention_job = retention.is_active().then(|| {
        tokio::spawn(ferry_server::api::retention::periodic(
            state.clone(),
            retention,
            PACKAGE_RETENTION_INTERVAL,
        ))
    });

    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Ferry {} server listening on {public_url}",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "  Portal:    {public_url}/app");
    let _ = writeln!(out, "  API:       {public_url}/api");
    let _ = writeln!(out, "  Node:      {node}");
    let _ = writeln!(out, "  Thumbprint: {server_thumbprint}");
    if let Some(a) = polling_addr {
        let _ = writeln!(out, "  Polling:   {a}");
    }
    let _ = writeln!(out, "  Data:      {}", data_dir.display());
    let _ = writeln!(out, "  Database:  {}", ferry_store::redact_url(&url));
    if let Some((password, key)) = &boot.admin_created {
        let _ = writeln!(
            out,
            "First start: created the user 'admin' (shown once, store them now):"
        );
        let _ = writeln!(out, "  Admin password: {}", password.expose());
        match key {
            Some(k) => {
                let _ = writeln!(out, "  Admin API key:  {}", k.expose());
            }
            None => {
                let _ = writeln!(
                    out,
                    "  Admin API key:  the one given in FERRY_ADMIN_API_KEY"
                );
            }
        }
    }
    let _ = out.flush();
    drop(out);

    let app = ferry_portal::mount(state.clone(), ferry_server::router(state));
    ferry_server::serve_app(listener, app, shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("shutting down: waiting for running tasks");
    agents_stop.cancel();
    executor.shutdown(ferry_server::SHUTDOWN_GRACE).await;
    worker.abort();
    auto_deploy.abort();
    release_retention.abort();
    event_retention.abort();
    webhooks.abort();
    if let Some(job) = retention_job {
        job.abort();
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
