//! `ferry-bench foundation`: what the foundation costs on this machine. Cold start (new and
//! existing data directory), idle memory, the orchestration overhead of a 20-step deployment
//! of `true` scripts on the built-in worker, and for context the cost of a bare `bash` spawn.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_client::Client;
use serde_json::{Value, json};

use crate::procfs;
use crate::report::{Metric, max, median};
use crate::server::{API_KEY, Server};
use crate::timefmt::parse_rfc3339_ms;

/// Steps in the measured deployment.
pub const STEPS: usize = 20;
/// The body of every step and of every directly run script.
const SCRIPT: &str = "true\n";
/// How often the client asks whether the deployment is done.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// Idle time before memory is read.
const SETTLE_AFTER_START: Duration = Duration::from_secs(3);
const SETTLE_AFTER_DEPLOYMENTS: Duration = Duration::from_secs(2);
/// `GET /api/tasks/{id}` calls used to price one poll in server CPU.
const POLL_CALIBRATION_CALLS: usize = 1000;
/// `bash -c true` spawns for the per-command figure.
const BASH_SPAWNS: usize = 50;
/// A deployment that takes longer than this is reported as stuck.
const DEPLOYMENT_TIMEOUT: Duration = Duration::from_secs(60);

const ENVIRONMENT: &str = "Bench";
const PROJECT: &str = "Bench20";

#[derive(Clone, Debug)]
pub struct Options {
    pub ferry: PathBuf,
    /// Cold starts of each kind.
    pub runs: usize,
    /// Measured deployments (after one warm-up).
    pub deployments: usize,
}

/// Everything measured, as rows for the table and as raw samples.
pub struct Results {
    pub ferry_version: String,
    pub metrics: Vec<Metric>,
    pub samples: Value,
}

/// One measured deployment.
#[derive(Clone, Debug, Default)]
struct Deployment {
    /// Task `StartTime` to `CompletedTime`, as the server recorded them.
    server_ms: f64,
    /// From just before the deploy call until a poll saw the task completed.
    client_ms: f64,
    /// The same 20 scripts run directly just before, spawn to exit one after another.
    direct_ms: f64,
    polls: u64,
    cpu_ticks: u64,
    /// `QueueTime` to `StartTime`: how soon the worker claimed the task.
    claim_ms: f64,
    /// `StartTime` to the first step's start: loading the deployment.
    lead_ms: f64,
    /// Summed step activity time (`Started` to `Ended`) divided by the steps.
    in_step_ms: f64,
    /// Summed time between one step's end and the next one's start, divided by the gaps.
    gap_ms: f64,
    /// The last step's end to `CompletedTime`: closing the log and recording the outcome.
    tail_ms: f64,
}

pub async fn run(options: &Options, progress: &dyn Fn(&str)) -> anyhow::Result<Results> {
    if !options.ferry.is_file() {
        bail!(
            "there is no ferry binary at {}; build it with `cargo build --release -p ferry` or pass --ferry PATH",
            options.ferry.display()
        );
    }
    let ticks_per_second = procfs::clock_ticks_per_second() as f64;
    let scratch = tempfile::Builder::new()
        .prefix("ferry-bench-")
        .tempdir()
        .context("cannot make a temporary directory")?;

    progress(&format!("bash: {BASH_SPAWNS} spawns of `bash -c true`"));
    let bash_ms = bash_spawns(BASH_SPAWNS)?;

    progress(&format!(
        "cold start: {} starts on a new data directory and {} restarts",
        options.runs, options.runs
    ));
    let mut fresh_ms = Vec::new();
    let mut fresh_listen_ms = Vec::new();
    let mut restart_ms = Vec::new();
    let mut restart_listen_ms = Vec::new();
    let mut version = String::new();
    for run in 0..options.runs {
        let dir = scratch.path().join(format!("start-{run}"));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log = dir.join("server.log");
        let (server, timing) = Server::start(&options.ferry, &data, &log).await?;
        version.clone_from(&server.version);
        fresh_ms.push(ms(timing.answered));
        fresh_listen_ms.push(ms(timing.listening));
        server.stop().await?;
        let (server, timing) = Server::start(&options.ferry, &data, &log).await?;
        restart_ms.push(ms(timing.answered));
        restart_listen_ms.push(ms(timing.listening));
        server.stop().await?;
        // Keep the disk small: each data directory holds a database with its WAL.
        let _ = std::fs::remove_dir_all(&dir);
    }

    progress("memory and deployments: one server");
    let dir = scratch.path().join("deploy");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (server, _) =
        Server::start(&options.ferry, &dir.join("data"), &dir.join("server.log")).await?;
    let measured = measure_deployments(&server, options, &dir, ticks_per_second, progress).await;
    let stopped = server.stop().await;
    let (idle_rss_kib, after_rss_kib, deployments, poll_cpu_ms) = measured?;
    stopped?;
    drop(scratch);

    let pick =
        |field: fn(&Deployment) -> f64| -> Vec<f64> { deployments.iter().map(field).collect() };
    let direct_ms = median(&pick(|d| d.direct_ms));
    let server_ms = median(&pick(|d| d.server_ms));
    let client_ms = median(&pick(|d| d.client_ms));
    let total_polls: u64 = deployments.iter().map(|d| d.polls).sum();
    let total_cpu_ms =
        deployments.iter().map(|d| d.cpu_ticks).sum::<u64>() as f64 * 1000.0 / ticks_per_second;
    let measured_steps = (deployments.len() * STEPS).max(1) as f64;
    let cpu_per_step_ms =
        (total_cpu_ms - total_polls as f64 * poll_cpu_ms).max(0.0) / measured_steps;
    let per_script_ms = direct_ms / STEPS as f64;
    let steps = STEPS as f64;
    let n = options.runs;
    let mb = |kib: u64| kib as f64 * 1024.0 / 1_000_000.0;

    let metrics = vec![
        Metric::new(
            "cold_start_new_median_ms",
            format!("Cold start to first answer, new data dir (median of {n})"),
            median(&fresh_ms),
            "ms",
        )
        .under(300.0),
        Metric::new(
            "cold_start_new_max_ms",
            format!("Cold start to first answer, new data dir (max of {n})"),
            max(&fresh_ms),
            "ms",
        )
        .under(300.0),
        Metric::new(
            "cold_start_restart_median_ms",
            format!("Cold start to first answer, restart (median of {n})"),
            median(&restart_ms),
            "ms",
        )
        .under(300.0),
        Metric::new(
            "cold_start_restart_max_ms",
            format!("Cold start to first answer, restart (max of {n})"),
            max(&restart_ms),
            "ms",
        )
        .under(300.0),
        Metric::new(
            "idle_rss_mb",
            format!("Idle RSS, {} s after start", SETTLE_AFTER_START.as_secs()),
            mb(idle_rss_kib),
            "MB",
        )
        .under(40.0),
        Metric::new(
            "idle_rss_after_deployments_mb",
            format!(
                "Idle RSS after {} 20-step deployments",
                deployments.len() + 1
            ),
            mb(after_rss_kib),
            "MB",
        )
        .under(40.0),
        Metric::new(
            "overhead_per_step_server_ms",
            "Overhead per step: task Start->Completed minus scripts",
            (server_ms - direct_ms) / steps,
            "ms",
        )
        .under(10.0),
        Metric::new(
            "overhead_per_step_client_ms",
            "Overhead per step: API call->completion minus scripts",
            (client_ms - direct_ms) / steps,
            "ms",
        )
        .under(10.0),
        Metric::new(
            "deployment_server_ms",
            "20-step deployment, task StartTime->CompletedTime",
            server_ms,
            "ms",
        ),
        Metric::new(
            "deployment_client_ms",
            format!(
                "20-step deployment, API call->completion ({} ms polls)",
                POLL_EVERY.as_millis()
            ),
            client_ms,
            "ms",
        ),
        Metric::new(
            "direct_scripts_ms",
            "The 20 scripts run directly (bash FILE, one after another)",
            direct_ms,
            "ms",
        ),
        Metric::new(
            "claim_ms",
            "  queued->started (the worker claims the task)",
            median(&pick(|d| d.claim_ms)),
            "ms",
        ),
        Metric::new(
            "lead_ms",
            "  started->first step (loading the deployment)",
            median(&pick(|d| d.lead_ms)),
            "ms",
        ),
        Metric::new(
            "in_step_overhead_ms",
            "  per step: inside the step, beyond the script",
            median(&pick(|d| d.in_step_ms)) - per_script_ms,
            "ms",
        ),
        Metric::new(
            "gap_ms",
            "  per step: between one step and the next",
            median(&pick(|d| d.gap_ms)),
            "ms",
        ),
        Metric::new(
            "tail_ms",
            "  last step->completed (log flush, outcome)",
            median(&pick(|d| d.tail_ms)),
            "ms",
        ),
        Metric::new(
            "server_cpu_per_step_ms",
            "Server CPU per step (utime+stime, polls excluded)",
            cpu_per_step_ms,
            "ms",
        ),
        Metric::new(
            "poll_cpu_ms",
            "Server CPU per GET /api/tasks/{id}",
            poll_cpu_ms,
            "ms",
        ),
        Metric::new(
            "bash_spawn_ms",
            format!("bash -c true, spawn to exit (median of {BASH_SPAWNS})"),
            median(&bash_ms),
            "ms",
        ),
    ];
    let samples = json!({
        "cold_start_new_ms": fresh_ms,
        "cold_start_new_listening_line_ms": fresh_listen_ms,
        "cold_start_restart_ms": restart_ms,
        "cold_start_restart_listening_line_ms": restart_listen_ms,
        "idle_rss_kib": idle_rss_kib,
        "idle_rss_after_deployments_kib": after_rss_kib,
        "deployments": deployments.iter().map(|d| json!({
            "server_ms": d.server_ms,
            "client_ms": d.client_ms,
            "direct_scripts_ms": d.direct_ms,
            "polls": d.polls,
            "server_cpu_ms": d.cpu_ticks as f64 * 1000.0 / ticks_per_second,
            "claim_ms": d.claim_ms,
            "lead_ms": d.lead_ms,
            "in_step_ms_per_step": d.in_step_ms,
            "gap_ms_per_step": d.gap_ms,
            "tail_ms": d.tail_ms,
        })).collect::<Vec<_>>(),
        "bash_spawn_ms": bash_ms,
    });
    Ok(Results {
        ferry_version: version,
        metrics,
        samples,
    })
}

/// Reads idle memory, runs a warm-up and the measured deployments, reads memory again, and
/// prices one poll in server CPU. Returns (idle KiB, after KiB, deployments, poll CPU ms).
async fn measure_deployments(
    server: &Server,
    options: &Options,
    dir: &Path,
    ticks_per_second: f64,
    progress: &dyn Fn(&str),
) -> anyhow::Result<(u64, u64, Vec<Deployment>, f64)> {
    tokio::time::sleep(SETTLE_AFTER_START).await;
    let idle_rss = procfs::rss_kib(server.pid)?;

    let client = Client::new(&server.url, Some(API_KEY.to_string()))?;
    set_up_project(&client).await?;
    let scripts = write_scripts(&dir.join("direct"))?;

    progress(&format!(
        "deployments: 1 warm-up and {} measured, {STEPS} steps each",
        options.deployments
    ));
    let mut task_id = deploy(&client, server.pid, "0.0.1").await?.0;
    let mut deployments = Vec::new();
    for number in 1..=options.deployments {
        let direct_ms = run_directly(&scripts)?;
        let (id, mut deployment) = deploy(&client, server.pid, &format!("1.0.{number}")).await?;
        deployment.direct_ms = direct_ms;
        deployments.push(deployment);
        task_id = id;
    }

    tokio::time::sleep(SETTLE_AFTER_DEPLOYMENTS).await;
    let after_rss = procfs::rss_kib(server.pid)?;

    let path = format!("/api/tasks/{task_id}");
    let before = procfs::cpu_ticks(server.pid)?;
    for _ in 0..POLL_CALIBRATION_CALLS {
        client.get_json(&path).await?;
    }
    let spent = procfs::cpu_ticks(server.pid)?.saturating_sub(before);
    let poll_cpu_ms = spent as f64 * 1000.0 / ticks_per_second / POLL_CALIBRATION_CALLS as f64;
    Ok((idle_rss, after_rss, deployments, poll_cpu_ms))
}

async fn set_up_project(client: &Client) -> anyhow::Result<()> {
    client
        .post_json(
            "/api/Spaces-1/environments",
            &json!({ "Name": ENVIRONMENT }),
        )
        .await
        .context("cannot create the environment")?;
    client
        .post_json("/api/Spaces-1/projects", &json!({ "Name": PROJECT }))
        .await
        .context("cannot create the project")?;
    let steps: Vec<Value> = (1..=STEPS)
        .map(|number| {
            json!({
                "Name": format!("step-{number:02}"),
                "Actions": [{
                    "Name": format!("step-{number:02}"),
                    "ActionType": "Octopus.Script",
                    "Properties": {
                        "Octopus.Action.Script.ScriptBody": SCRIPT,
                        "Octopus.Action.Script.Syntax": "Bash",
                        "Octopus.Action.RunOnServer": "true"
                    }
                }]
            })
        })
        .collect();
    client
        .put_json(
            &format!("/api/Spaces-1/projects/{PROJECT}/deploymentprocesses"),
            &json!({ "Steps": steps }),
        )
        .await
        .context("cannot set the deployment process")?;
    Ok(())
}

/// Creates a release, deploys it, polls until the task completes and reads its timeline.
async fn deploy(client: &Client, pid: u32, version: &str) -> anyhow::Result<(String, Deployment)> {
    client
        .post_json(
            "/api/Spaces-1/releases/create/v1",
            &json!({ "ProjectName": PROJECT, "ReleaseVersion": version }),
        )
        .await
        .with_context(|| format!("cannot create release {version}"))?;

    let cpu_before = procfs::cpu_ticks(pid)?;
    let called = Instant::now();
    let created = client
        .post_json(
            "/api/Spaces-1/deployments/create/untenanted/v1",
            &json!({
                "ProjectName": PROJECT,
                "ReleaseVersion": version,
                "EnvironmentNames": [ENVIRONMENT],
            }),
        )
        .await
        .with_context(|| format!("cannot deploy release {version}"))?;
    let task_id = created["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .with_context(|| format!("the deploy call answered without a ServerTaskId: {created}"))?
        .to_string();
    let path = format!("/api/tasks/{task_id}");
    let mut polls = 0;
    let task = loop {
        let task = client.get_json(&path).await?;
        polls += 1;
        if task["IsCompleted"] == json!(true) {
            break task;
        }
        if called.elapsed() > DEPLOYMENT_TIMEOUT {
            bail!("deployment {task_id} did not complete within {DEPLOYMENT_TIMEOUT:?}: {task}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let client_ms = ms(called.elapsed());
    let cpu_ticks = procfs::cpu_ticks(pid)?.saturating_sub(cpu_before);
    if task["State"] != json!("Success") {
        let log = client
            .get_text(&format!("/api/tasks/{task_id}/raw"))
            .await
            .unwrap_or_default();
        bail!(
            "deployment {task_id} ended as {} instead of Success; its log:\n{log}",
            task["State"]
        );
    }

    let details = client.get_json(&format!("{path}/details")).await?;
    let time = |value: &Value, field: &str| -> anyhow::Result<f64> {
        value[field]
            .as_str()
            .and_then(parse_rfc3339_ms)
            .map(|ms| ms as f64)
            .with_context(|| format!("task {task_id} has no readable {field}: {value}"))
    };
    let queued = time(&task, "QueueTime")?;
    let started = time(&task, "StartTime")?;
    let completed = time(&task, "CompletedTime")?;
    let step_activities = details["ActivityLogs"][0]["Children"]
        .as_array()
        .with_context(|| format!("task {task_id} has no step activities: {details}"))?;
    let mut spans = Vec::new();
    for step in step_activities {
        spans.push((time(step, "Started")?, time(step, "Ended")?));
    }
    if spans.len() != STEPS {
        bail!(
            "task {task_id} logged {} step activities instead of {STEPS}",
            spans.len()
        );
    }
    let in_steps: f64 = spans.iter().map(|(start, end)| end - start).sum();
    let gaps: f64 = spans.windows(2).map(|pair| pair[1].0 - pair[0].1).sum();
    let (first_start, last_end) = (spans[0].0, spans[STEPS - 1].1);
    Ok((
        task_id,
        Deployment {
            server_ms: completed - started,
            client_ms,
            direct_ms: 0.0,
            polls,
            cpu_ticks,
            claim_ms: started - queued,
            lead_ms: first_start - started,
            in_step_ms: in_steps / STEPS as f64,
            gap_ms: gaps / (STEPS - 1) as f64,
            tail_ms: completed - last_end,
        },
    ))
}

/// Writes the deployment's scripts to files, one per step, as the built-in worker does.
fn write_scripts(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    (1..=STEPS)
        .map(|number| {
            let path = dir.join(format!("script-{number:02}.sh"));
            std::fs::write(&path, SCRIPT)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// Runs the scripts one after another as `bash FILE` with captured output; total milliseconds.
fn run_directly(scripts: &[PathBuf]) -> anyhow::Result<f64> {
    let started = Instant::now();
    for script in scripts {
        let output = std::process::Command::new("bash")
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .context("cannot run bash")?;
        if !output.status.success() {
            bail!("bash {} failed with {}", script.display(), output.status);
        }
    }
    Ok(ms(started.elapsed()))
}

/// Milliseconds of each of `count` runs of `bash -c true`.
fn bash_spawns(count: usize) -> anyhow::Result<Vec<f64>> {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            let status = std::process::Command::new("bash")
                .args(["-c", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("cannot run bash")?;
            if !status.success() {
                bail!("bash -c true failed with {status}");
            }
            Ok(ms(started.elapsed()))
        })
        .collect()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
