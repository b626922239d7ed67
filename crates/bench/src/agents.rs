//! `ferry-bench agents`: deployments through real agents (listening and polling) against a real
//! `ferry server` process. The agents run in this process, each with its own data directory,
//! certificate, runtime and connection (the code path of `ferry agent run`: pinned mutual TLS,
//! WebSocket, tickets and real bash scripts), without one OS process per agent.
//!
//! Measured: how soon a script starts on a target after the deploy call, a 20-step deployment
//! on 10 agents, the server's memory with many idle polling agents, and redeploying an
//! unchanged package to many targets (no bytes transferred again).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use ferry_agent::runtime::{AgentHandler, Runtime as AgentRuntime};
use ferry_crypto::tls::{Identity, PinSet, Thumbprint};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ENVIRONMENT, script_step, task_ms};
use crate::procfs::rss_kib;
use crate::report::{Metric, max, median};
use crate::server::Server;
use crate::timefmt::parse_rfc3339_ms;

/// What to run.
pub struct Options {
    pub ferry: PathBuf,
    /// Deployments per mode for the first-byte figure.
    pub runs: usize,
    /// Idle polling agents.
    pub idle: usize,
    /// Polling targets of the package redeploy.
    pub targets: usize,
}

/// Deployments measured on 10 agents, after one warm-up.
const TRIVIAL_DEPLOYMENTS: usize = 5;
const TRIVIAL_STEPS: usize = 20;
/// How long any one task may take.
const TASK_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the idle agents may take to connect and answer a health check.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(180);

/// The HTTP side: one client, the server's address and key.
/// A server and the agents talking to it.
struct Fleet {
    server: Server,
    api: Api,
    environment_id: String,
    server_thumbprint: Thumbprint,
    polling_endpoint: String,
    /// The agents' own runtime, so that they do not share the bench's single thread.
    agents: tokio::runtime::Handle,
    shutdown: CancellationToken,
    dir: PathBuf,
    count: usize,
}

impl Fleet {
    async fn start(
        ferry: &Path,
        dir: &Path,
        agents: tokio::runtime::Handle,
    ) -> anyhow::Result<Fleet> {
        std::fs::create_dir_all(dir.join("data"))?;
        let (server, _) = Server::start(ferry, &dir.join("data"), &dir.join("server.log")).await?;
        let api = Api::new(&server.url, TASK_TIMEOUT)?;
        let cert = api.get("/api/certificates/certificate-global").await?;
        let server_thumbprint: Thumbprint = cert["Thumbprint"]
            .as_str()
            .context("the server reports no certificate thumbprint")?
            .parse()
            .map_err(|e| anyhow!("the server's thumbprint: {e}"))?;
        let port = cert["PollingPort"]
            .as_u64()
            .with_context(|| format!("the server reports no polling port: {cert}"))?;
        let env = api
            .post("/api/Spaces-1/environments", json!({"Name": ENVIRONMENT}))
            .await?;
        let environment_id = env["Id"]
            .as_str()
            .context("the new environment has no Id")?
            .to_string();
        Ok(Fleet {
            server,
            api,
            environment_id,
            server_thumbprint,
            polling_endpoint: format!("127.0.0.1:{port}"),
            agents,
            shutdown: CancellationToken::new(),
            dir: dir.to_path_buf(),
            count: 0,
        })
    }

    /// Registers a machine and returns how to start its agent (not started yet).
    async fn register(&mut self, role: &str, polling: bool) -> anyhow::Result<PendingAgent> {
        self.count += 1;
        let name = format!(
            "{}-{:04}",
            if polling { "poll" } else { "listen" },
            self.count
        );
        let dir = self.dir.join("agents").join(&name);
        std::fs::create_dir_all(&dir)?;
        let identity =
            Identity::generate_agent(&name).map_err(|e| anyhow!("agent certificate: {e}"))?;
        let (style, uri, address) = if polling {
            (
                "TentacleActive",
                format!("poll://{name}/"),
                self.polling_endpoint.clone(),
            )
        } else {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            (
                "TentaclePassive",
                format!("https://127.0.0.1:{port}/"),
                format!("127.0.0.1:{port}"),
            )
        };
        self.api
            .post(
                "/api/Spaces-1/machines",
                json!({"Name": name, "EnvironmentIds": [self.environment_id], "Roles": [role],
                    "Endpoint": {"CommunicationStyle": style, "Uri": uri,
                        "Thumbprint": identity.thumbprint().as_str()}}),
            )
            .await
            .with_context(|| format!("cannot register {name}"))?;
        Ok(PendingAgent {
            name,
            dir,
            identity,
            polling,
            address,
        })
    }

    /// Starts an agent in this process.
    fn start_agent(&self, agent: PendingAgent) {
        let pins = PinSet::new();
        pins.insert(self.server_thumbprint.clone());
        let shutdown = self.shutdown.clone();
        self.agents.spawn(async move {
            let rt = match AgentRuntime::open(&agent.dir, shutdown.clone()) {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("agent {}: {e}", agent.name);
                    return;
                }
            };
            let handler = Arc::new(AgentHandler { rt });
            let ended = if agent.polling {
                ferry_agent::agent::poll(
                    &agent.address,
                    &agent.name,
                    &agent.identity,
                    pins,
                    handler,
                    shutdown,
                )
                .await
            } else {
                ferry_agent::agent::listen(
                    &agent.address,
                    &agent.identity,
                    pins,
                    handler,
                    shutdown,
                    |_| {},
                )
                .await
            };
            if let Err(e) = ended {
                eprintln!("agent {}: {e}", agent.name);
            }
        });
    }

    /// Registers and starts agents; returns once every one answers a health check.
    async fn add_agents(
        &mut self,
        role: &str,
        listening: usize,
        polling: usize,
    ) -> anyhow::Result<()> {
        let mut pending = Vec::new();
        for i in 0..listening + polling {
            pending.push(self.register(role, i >= listening).await?);
        }
        // The server learns new polling machines within about 2 s; an agent refused before that
        // retries after a short backoff.
        for agent in pending {
            self.start_agent(agent);
        }
        self.wait_all_healthy().await
    }

    /// Runs health checks until every machine reports `Healthy`.
    async fn wait_all_healthy(&self) -> anyhow::Result<()> {
        let began = Instant::now();
        loop {
            let task = self
                .api
                .post("/api/tasks", json!({"Name": "Health", "Arguments": {}}))
                .await?;
            let id = task["Id"]
                .as_str()
                .with_context(|| format!("the health task has no Id: {task}"))?
                .to_string();
            loop {
                let t = self.api.get(&format!("/api/tasks/{id}")).await?;
                if t["IsCompleted"] == json!(true) {
                    break;
                }
                if began.elapsed() > CONNECT_TIMEOUT {
                    bail!("health check {id} did not complete within {CONNECT_TIMEOUT:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let machines = self.api.get("/api/Spaces-1/machines?take=100000").await?;
            let items = machines["Items"]
                .as_array()
                .with_context(|| format!("the machine list has no Items: {machines}"))?;
            let unhealthy: Vec<&str> = items
                .iter()
                .filter(|m| m["HealthStatus"] != json!("Healthy"))
                .filter_map(|m| m["Name"].as_str())
                .collect();
            if unhealthy.is_empty() {
                if items.len() < self.count {
                    bail!(
                        "the server lists {} machines, not {}",
                        items.len(),
                        self.count
                    );
                }
                return Ok(());
            }
            if began.elapsed() > CONNECT_TIMEOUT {
                bail!(
                    "{} machines were still not healthy after {CONNECT_TIMEOUT:?}, e.g. {:?}",
                    unhealthy.len(),
                    &unhealthy[..unhealthy.len().min(5)]
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the agents, then the server.
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.server.stop().await
    }
}

struct PendingAgent {
    name: String,
    dir: PathBuf,
    identity: Identity,
    polling: bool,
    address: String,
}

/// Checks that this process may open `needed` files, for the sockets of the agents.
fn check_open_files(needed: u64) -> anyhow::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    match soft {
        Some(soft) if soft < needed => bail!(
            "this process may open only {soft} files, and the agents need about {needed}; raise it (ulimit -n {needed})"
        ),
        _ => Ok(()),
    }
}

fn now_ns() -> anyhow::Result<i128> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_nanos() as i128)
}

pub async fn run(options: &Options, progress: &dyn Fn(&str)) -> anyhow::Result<Vec<Metric>> {
    check_open_files(options.idle.max(options.targets) as u64 * 3 + 200)?;
    let tmp = tempfile::Builder::new()
        .prefix("ferry-bench-agents-")
        .tempdir()?;
    let agents_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-agents")
        .enable_all()
        .build()
        .context("cannot start the agents' runtime")?;
    let result = run_all(options, tmp.path(), agents_rt.handle().clone(), progress).await;
    agents_rt.shutdown_background();
    result
}

async fn run_all(
    options: &Options,
    dir: &Path,
    agents: tokio::runtime::Handle,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Metric>> {
    let mut metrics = Vec::new();

    // One server for the deployments.
    progress("starting a server and 2 agents");
    let mut fleet = Fleet::start(&options.ferry, &dir.join("deploy"), agents.clone()).await?;
    let outcome = deployments(options, &mut fleet, &mut metrics, progress).await;
    let stopped = fleet.stop().await;
    outcome?;
    stopped?;

    // A fresh server for the idle agents, so that its memory is theirs alone.
    progress(&format!(
        "starting a server for {} idle polling agents",
        options.idle
    ));
    let mut fleet = Fleet::start(&options.ferry, &dir.join("idle"), agents).await?;
    let outcome = idle(options, &mut fleet, &mut metrics, progress).await;
    let stopped = fleet.stop().await;
    outcome?;
    stopped?;
    Ok(metrics)
}

async fn deployments(
    options: &Options,
    fleet: &mut Fleet,
    metrics: &mut Vec<Metric>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<()> {
    // 1. First byte on a target.
    fleet.add_agents("l", 1, 0).await?;
    fleet.add_agents("p", 0, 1).await?;
    let marks = fleet.dir.join("marks");
    std::fs::create_dir_all(&marks)?;
    for (mode, role) in [("listening", "l"), ("polling", "p")] {
        progress(&format!(
            "first byte on a {mode} agent: 1 warm-up + {} deployments",
            options.runs
        ));
        let project = format!("FirstByte-{role}");
        let file = marks.join(format!("{role}-#{{Octopus.Release.Number}}"));
        let body = format!("t=$(date +%s%N)\necho \"$t\" > '{}'", file.display());
        fleet
            .api
            .project(&project, vec![script_step("Mark", role, &body)])
            .await?;
        let mut samples = Vec::new();
        for run in 0..=options.runs {
            let version = format!("1.0.{run}");
            fleet.api.create_release(&project, &version).await?;
            let before = now_ns()?;
            let task = fleet.api.deploy(&project, &version).await?;
            fleet.api.wait_success(&task).await?;
            let path = marks.join(format!("{role}-{version}"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("the script did not write {}", path.display()))?;
            let stamp: i128 = text
                .trim()
                .parse()
                .with_context(|| format!("{} holds '{text}', not a time", path.display()))?;
            if run > 0 {
                samples.push((stamp - before) as f64 / 1e6);
            }
        }
        let (key_median, key_max) = match role {
            "l" => (
                "first_byte_listening_median_ms",
                "first_byte_listening_max_ms",
            ),
            _ => ("first_byte_polling_median_ms", "first_byte_polling_max_ms"),
        };
        metrics.push(
            Metric::new(
                key_median,
                format!("Deploy call -> script running on a {mode} agent, median"),
                median(&samples),
                "ms",
            )
            .under(100.0),
        );
        metrics.push(
            Metric::new(
                key_max,
                format!(
                    "Deploy call -> script running on a {mode} agent, max of {}",
                    options.runs
                ),
                max(&samples),
                "ms",
            )
            .under(100.0),
        );
    }

    // 2. 20 trivial steps on 10 agents.
    progress("20 steps on 10 agents: starting 5 listening and 5 polling agents");
    fleet.add_agents("web", 5, 5).await?;
    let steps = (1..=TRIVIAL_STEPS)
        .map(|n| script_step(&format!("step-{n:02}"), "web", "true"))
        .collect();
    fleet.api.project("Trivial", steps).await?;
    let mut durations = Vec::new();
    let mut cpu = (0, 0, 0);
    for run in 0..=TRIVIAL_DEPLOYMENTS {
        if run == 1 {
            cpu = (
                all_cpu_ticks(fleet.server.pid)?,
                crate::procfs::cpu_ticks(std::process::id())?,
                all_cpu_ticks(std::process::id())?,
            );
        }
        let version = format!("1.0.{run}");
        fleet.api.create_release("Trivial", &version).await?;
        let task = fleet.api.deploy("Trivial", &version).await?;
        let t = fleet.api.wait_success(&task).await?;
        if run > 0 {
            durations.push(task_ms(&t)?);
        }
        if run == TRIVIAL_DEPLOYMENTS {
            progress(&step_spans(&fleet.api, &task).await?);
        }
    }
    let wall: f64 = durations.iter().sum::<f64>() / 1000.0;
    let per_s = crate::procfs::clock_ticks_per_second() as f64;
    let server_cpu = (all_cpu_ticks(fleet.server.pid)? - cpu.0) as f64 / per_s;
    let agents_cpu = (crate::procfs::cpu_ticks(std::process::id())? - cpu.1) as f64 / per_s;
    let scripts_cpu = (all_cpu_ticks(std::process::id())? - cpu.2) as f64 / per_s - agents_cpu;
    progress(&format!(
        "20 steps on 10 agents: {durations:?} ms; CPU over those {wall:.1} s: server {server_cpu:.1} s, in-process agents {agents_cpu:.1} s, their bash processes {scripts_cpu:.1} s"
    ));
    metrics.push(
        Metric::new(
            "trivial_20_steps_10_agents_s",
            format!(
                "{TRIVIAL_STEPS} trivial steps x 10 agents (5 listening, 5 polling), median of {TRIVIAL_DEPLOYMENTS}"
            ),
            median(&durations) / 1000.0,
            "s",
        )
        .under(1.0),
    );

    // 4. An unchanged package redeployed to many polling targets.
    progress(&format!(
        "package to {} polling targets: starting them",
        options.targets
    ));
    fleet.add_agents("pkg", 0, options.targets).await?;
    let src = fleet.dir.join("package");
    std::fs::create_dir_all(src.join("assets"))?;
    std::fs::write(src.join("index.html"), "<h1>hello</h1>\n")?;
    std::fs::write(src.join("app.config"), "greeting=hello\n")?;
    let filler: String = (0..4096).map(|i| format!("line {i}\n")).collect();
    std::fs::write(src.join("assets/data.txt"), filler)?;
    let package = fleet.dir.join("Bench.Site.1.0.0.zip");
    ferry_packages::archive::pack(&src, &package, ferry_packages::filename::PackageFormat::Zip)?;
    let package_bytes = std::fs::metadata(&package)?.len();
    fleet.api.push(&package).await?;
    fleet
        .api
        .project(
            "Site",
            vec![json!({"Name": "Deploy", "Properties": {"Octopus.Action.TargetRoles": "pkg"},
                "Actions": [{"Name": "Deploy", "ActionType": "Octopus.TentaclePackage", "Properties": {
                    "Octopus.Action.Package.PackageId": "Bench.Site",
                    "Octopus.Action.Package.FeedId": "feeds-builtin"}}]})],
        )
        .await?;
    let mut times = Vec::new();
    let mut hits = 0;
    let mut sent = 0;
    for version in ["1.0.0", "1.0.1"] {
        progress(&format!(
            "package to {} polling targets: release {version}",
            options.targets
        ));
        fleet.api.create_release("Site", version).await?;
        let task = fleet.api.deploy("Site", version).await?;
        let t = fleet.api.wait_success(&task).await?;
        times.push(task_ms(&t)?);
        let log = fleet.api.raw(&task).await?;
        if version == "1.0.0" {
            sent = log.matches("Acquired package Bench.Site").count();
        } else {
            hits = log.matches("is already on the target").count();
        }
    }
    metrics.push(Metric::new(
        "package_first_deploy_ms",
        format!(
            "Deploy a {:.0} KB package to {} polling targets (first: transferred)",
            package_bytes as f64 / 1024.0,
            options.targets
        ),
        times[0],
        "ms",
    ));
    metrics.push(Metric::new(
        "package_redeploy_ms",
        format!("Redeploy it unchanged to the {} targets", options.targets),
        times[1],
        "ms",
    ));
    metrics.push(Metric::new(
        "package_first_deploy_transferred",
        "Targets that acquired it (transferred) on the first deploy",
        sent as f64,
        "targets",
    ));
    metrics.push(Metric::new(
        "package_redeploy_not_transferred",
        "Targets that said \"is already on the target\" on the redeploy",
        hits as f64,
        "targets",
    ));
    if hits < options.targets {
        progress(&format!(
            "warning: only {hits} of {} targets reused the package on the redeploy",
            options.targets
        ));
    }
    Ok(())
}

async fn idle(
    options: &Options,
    fleet: &mut Fleet,
    metrics: &mut Vec<Metric>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kib = rss_kib(fleet.server.pid)?;
    let bench_before_kib = rss_kib(std::process::id())?;
    progress(&format!("registering {} polling agents", options.idle));
    let mut pending = Vec::with_capacity(options.idle);
    for _ in 0..options.idle {
        pending.push(fleet.register("idle", true).await?);
    }
    // Let the server learn the subscriptions (it refreshes about every 2 s) before the agents
    // dial, so that the figure below is connecting, not waiting for the refresh.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    progress("starting them");
    let began = Instant::now();
    for agent in pending {
        fleet.start_agent(agent);
    }
    fleet.wait_all_healthy().await?;
    let connected_s = began.elapsed().as_secs_f64();
    progress(&format!(
        "all connected and healthy after {connected_s:.1} s; idling 5 s"
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_kib = rss_kib(fleet.server.pid)?;
    let bench_kib = rss_kib(std::process::id())?;
    let n = options.idle;
    metrics.push(Metric::new(
        "idle_server_rss_before_mb",
        "Server RSS before registering the idle agents",
        before_kib as f64 / 1024.0,
        "MB",
    ));
    metrics.push(Metric::new(
        "idle_server_rss_after_mb",
        format!("Server RSS with {n} polling agents connected, idle 5 s"),
        after_kib as f64 / 1024.0,
        "MB",
    ));
    metrics.push(Metric::new(
        "idle_server_rss_per_agent_kb",
        "Server RSS per connected polling agent",
        after_kib.saturating_sub(before_kib) as f64 / n as f64,
        "KB",
    ));
    metrics.push(Metric::new(
        "idle_connect_all_s",
        format!("Start {n} polling agents -> all healthy (health check)"),
        connected_s,
        "s",
    ));
    metrics.push(Metric::new(
        "idle_bench_rss_per_agent_kb",
        format!("Bench process (the {n} in-process agents) RSS per agent"),
        bench_kib.saturating_sub(bench_before_kib) as f64 / n as f64,
        "KB",
    ));
    Ok(())
}

/// Pushes a package file to the built-in feed.
/// Where a deployment's time went: each step's span and its slowest target, in ms.
async fn step_spans(api: &Api, task: &str) -> anyhow::Result<String> {
    let details = api.get(&format!("/api/tasks/{task}/details")).await?;
    let ms = |v: &Value, field: &str| v[field].as_str().and_then(parse_rfc3339_ms);
    let mut parts = Vec::new();
    for step in details["ActivityLogs"][0]["Children"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let span = ms(step, "Ended")
            .zip(ms(step, "Started"))
            .map(|(e, s)| e - s);
        let slowest = step["Children"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|t| ms(t, "Ended").zip(ms(t, "Started")).map(|(e, s)| e - s))
            .max();
        parts.push(format!("{}/{}", span.unwrap_or(-1), slowest.unwrap_or(-1)));
    }
    Ok(format!(
        "step ms / slowest target ms of the last deployment: {}",
        parts.join(" ")
    ))
}

/// CPU time of a process and of its waited-for children (utime + stime + cutime + cstime), in
/// clock ticks.
fn all_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let fields: Vec<u64> = stat
        .rfind(')')
        .and_then(|at| stat.get(at + 1..))
        .with_context(|| format!("{path} is not in the expected format"))?
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Ok(fields.iter().sum())
}
