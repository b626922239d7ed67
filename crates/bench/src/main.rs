//! `ferry-bench`: measurements of a release build of Ferry on the machine it runs on.
//!
//! `ferry-bench foundation [--ferry PATH] [--runs N] [--deployments N] [--json]` starts real
//! `ferry server` processes in temporary directories, measures start-up, memory and the
//! orchestration overhead of a 20-step deployment, and prints a table (or JSON). See
//! `docs/PERFORMANCE.md` for the figures and how to read them.

mod agents;
mod api;
mod dashboard;
mod foundation;
mod packages;
mod portal;
mod procfs;
mod report;
mod server;
mod ssh;
mod timefmt;
mod variables;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;

const USAGE: &str = "\
usage: ferry-bench foundation [--ferry PATH] [--runs N] [--deployments N] [--json]
       ferry-bench variables [--runs N]
       ferry-bench packages [--ferry PATH] [--size-mb N]
       ferry-bench agents [--ferry PATH] [--runs N] [--idle N] [--targets N] [--json]
       ferry-bench ssh [--ferry PATH] [--targets N] [--size-mb M] [--skip-peers] [--json]
       ferry-bench dashboard [--ferry PATH] [--projects N] [--samples N] [--keep]
       ferry-bench portal [--ferry PATH] [--projects N] [--samples N]

  --ferry PATH       the ferry binary (default: ferry next to this binary)
  --runs N           cold starts of each kind, new and existing data directory (default 10)
  --deployments N    measured 20-step deployments, after one warm-up (default 5)
  --json             print the results as JSON instead of a table

agents: in-process listening and polling agents against a real server
  --runs N           deployments per mode for the first-byte figure (default 20)
  --idle N           idle polling agents connected to one server (default 1000)
  --targets N        polling targets of the package redeploy (default 100)

ssh: Ferry over SSH beside a plain OpenSSH fan-out (the floor), pyinfra, Ansible and Ferry's
polling agents, one run, N local sshd instances (run as root: makes the user ferrybench)
  --targets N        sshd instances, and the parallelism of every tool (default 50)
  --size-mb M        the incompressible package, in MB (default 50)
  --skip-peers       do not install or run pyinfra and Ansible

dashboard: GET /dashboard latency on a space seeded directly through ferry-store
  --projects N       projects (in N/10 project groups; 5 environments, 50 releases each,
                     100 tenants) (default 1000)
  --samples N        timed requests per scenario, after 5 warm-ups (default 300)
  --keep             keep the seeded data directory and say where it is

portal: every portal page's latency, signed in, on the dashboard's data set (plus one project
with a real deployment, added through the API)
  --projects N       projects (default 1000)
  --samples N        timed requests per page, after 3 warm-ups (default 50)";

struct Args {
    options: foundation::Options,
    json: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    match args.next().as_deref() {
        Some("foundation") => {}
        Some("-h" | "--help") | None => return Ok(None),
        Some(other) => bail!("unknown benchmark '{other}'\n{USAGE}"),
    }
    let mut ferry = None;
    let mut runs = 10;
    let mut deployments = 5;
    let mut json = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--ferry" => ferry = Some(PathBuf::from(value("--ferry")?)),
            "--runs" => runs = positive(&value("--runs")?, "--runs")?,
            "--deployments" => deployments = positive(&value("--deployments")?, "--deployments")?,
            "--json" => json = true,
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown option '{other}'\n{USAGE}"),
        }
    }
    let ferry = match ferry {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot tell where this binary is; pass --ferry PATH")?
            .with_file_name("ferry"),
    };
    Ok(Some(Args {
        options: foundation::Options {
            ferry,
            runs,
            deployments,
        },
        json,
    }))
}

fn positive(text: &str, name: &str) -> anyhow::Result<usize> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{name} must be a whole number of at least 1, not '{text}'"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("variables") {
        let runs = match argv.iter().position(|a| a == "--runs") {
            Some(i) => positive(argv.get(i + 1).map(String::as_str).unwrap_or(""), "--runs")?,
            None => 5,
        };
        let metrics = variables::run(runs);
        println!(
            "Ferry variables benchmark, {}, {} ({} CPUs), release build: medians of {runs} runs",
            timefmt::today_utc(),
            procfs::cpu_model(),
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        println!("{}", report::table(&metrics));
        return Ok(());
    }
    if argv.first().map(String::as_str) == Some("packages") {
        let opt = |name: &str| {
            argv.iter()
                .position(|a| a == name)
                .and_then(|i| argv.get(i + 1))
                .cloned()
        };
        let size_mb = match opt("--size-mb") {
            Some(v) => positive(&v, "--size-mb")? as u64,
            None => 1024,
        };
        let ferry = match opt("--ferry") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()
                .context("cannot tell where this binary is; pass --ferry PATH")?
                .with_file_name("ferry"),
        };
        let began = Instant::now();
        let progress = |m: &str| eprintln!("[{:5.1} s] {m}", began.elapsed().as_secs_f64());
        let metrics = packages::run(&ferry, size_mb, &progress).await?;
        println!(
            "Ferry packages benchmark, {}, {} ({} CPUs), release build",
            timefmt::today_utc(),
            procfs::cpu_model(),
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        println!("{}", report::table(&metrics));
        return Ok(());
    }
    if argv.first().map(String::as_str) == Some("dashboard") {
        return run_dashboard(&argv[1..]).await;
    }
    if argv.first().map(String::as_str) == Some("portal") {
        return run_portal(&argv[1..]).await;
    }
    if argv.first().map(String::as_str) == Some("agents") {
        return run_agents(&argv[1..]).await;
    }
    if argv.first().map(String::as_str) == Some("ssh") {
        return run_ssh(&argv[1..]).await;
    }
    let Some(args) = parse_args(argv.into_iter())? else {
        println!("{USAGE}");
        return Ok(());
    };
    let began = Instant::now();
    let progress = |message: &str| eprintln!("[{:5.1} s] {message}", began.elapsed().as_secs_f64());
    let results = foundation::run(&args.options, &progress).await?;
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let date = timefmt::today_utc();
    let cpu = procfs::cpu_model();
    let kernel = procfs::kernel();
    if args.json {
        let document = json!({
            "benchmark": "foundation",
            "date": date,
            "ferry_version": results.ferry_version,
            "ferry": args.options.ferry.display().to_string(),
            "machine": { "cpus": cpus, "cpu_model": cpu, "kernel": kernel },
            "runs": args.options.runs,
            "deployments": args.options.deployments,
            "steps": foundation::STEPS,
            "metrics": report::json_rows(&results.metrics),
            "samples": results.samples,
            "elapsed_s": began.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        println!(
            "Ferry {} foundation benchmark, {date}, {cpus} CPUs ({cpu}), Linux {kernel}",
            results.ferry_version
        );
        println!("{}", report::table(&results.metrics));
        println!("(took {:.0} s)", began.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `ferry-bench agents [--ferry PATH] [--runs N] [--idle N] [--targets N] [--json]`.
async fn run_agents(argv: &[String]) -> anyhow::Result<()> {
    let mut options = agents::Options {
        ferry: PathBuf::new(),
        runs: 20,
        idle: 1000,
        targets: 100,
    };
    let mut ferry = None;
    let mut json = false;
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--ferry" => ferry = Some(PathBuf::from(value("--ferry")?)),
            "--runs" => options.runs = positive(&value("--runs")?, "--runs")?,
            "--idle" => options.idle = positive(&value("--idle")?, "--idle")?,
            "--targets" => options.targets = positive(&value("--targets")?, "--targets")?,
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown option '{other}'\n{USAGE}"),
        }
    }
    options.ferry = match ferry {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot tell where this binary is; pass --ferry PATH")?
            .with_file_name("ferry"),
    };
    let began = Instant::now();
    let progress = |m: &str| eprintln!("[{:5.1} s] {m}", began.elapsed().as_secs_f64());
    let metrics = agents::run(&options, &progress).await?;
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let date = timefmt::today_utc();
    let cpu = procfs::cpu_model();
    if json {
        let document = json!({
            "benchmark": "agents",
            "date": date,
            "ferry": options.ferry.display().to_string(),
            "machine": { "cpus": cpus, "cpu_model": cpu, "kernel": procfs::kernel() },
            "runs": options.runs,
            "idle": options.idle,
            "targets": options.targets,
            "metrics": report::json_rows(&metrics),
            "elapsed_s": began.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        println!(
            "Ferry agents benchmark, {date}, {cpus} CPUs ({cpu}), release build, agents in-process"
        );
        println!("{}", report::table(&metrics));
        println!("(took {:.0} s)", began.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `ferry-bench ssh [--ferry PATH] [--targets N] [--size-mb M] [--skip-peers] [--json]`.
async fn run_ssh(argv: &[String]) -> anyhow::Result<()> {
    let mut options = ssh::Options {
        ferry: PathBuf::new(),
        targets: 50,
        size_mb: 50,
        skip_peers: false,
    };
    let mut ferry = None;
    let mut json = false;
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--ferry" => ferry = Some(PathBuf::from(value("--ferry")?)),
            "--targets" => options.targets = positive(&value("--targets")?, "--targets")?,
            "--size-mb" => options.size_mb = positive(&value("--size-mb")?, "--size-mb")? as u64,
            "--skip-peers" => options.skip_peers = true,
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown option '{other}'\n{USAGE}"),
        }
    }
    options.ferry = match ferry {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot tell where this binary is; pass --ferry PATH")?
            .with_file_name("ferry"),
    };
    let began = Instant::now();
    let progress = |m: &str| eprintln!("[{:5.1} s] {m}", began.elapsed().as_secs_f64());
    let outcome = ssh::run(&options, &progress).await?;
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let date = timefmt::today_utc();
    let cpu = procfs::cpu_model();
    if json {
        let document = json!({
            "benchmark": "ssh",
            "date": date,
            "ferry": options.ferry.display().to_string(),
            "machine": { "cpus": cpus, "cpu_model": cpu, "kernel": procfs::kernel() },
            "targets": options.targets,
            "size_mb": options.size_mb,
            "metrics": ssh::json_rows(&outcome.rows),
            "notes": outcome.notes,
            "elapsed_s": began.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        println!(
            "Ferry ssh benchmark, {date}, {cpus} CPUs ({cpu}), release build, {} targets x {} MB, all on loopback",
            options.targets, options.size_mb
        );
        println!("{}", ssh::table(&outcome.rows));
        for note in &outcome.notes {
            println!("- {note}");
        }
        println!("(took {:.0} s)", began.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `ferry-bench dashboard [--ferry PATH] [--projects N] [--samples N]`.
async fn run_dashboard(argv: &[String]) -> anyhow::Result<()> {
    let mut options = dashboard::Options {
        ferry: PathBuf::new(),
        projects: 1000,
        samples: 300,
        keep: false,
    };
    let mut ferry = None;
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--ferry" => ferry = Some(PathBuf::from(value("--ferry")?)),
            "--projects" => options.projects = positive(&value("--projects")?, "--projects")?,
            "--samples" => options.samples = positive(&value("--samples")?, "--samples")?,
            "--keep" => options.keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown option '{other}'\n{USAGE}"),
        }
    }
    options.ferry = match ferry {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot tell where this binary is; pass --ferry PATH")?
            .with_file_name("ferry"),
    };
    let began = Instant::now();
    let progress = |m: &str| eprintln!("[{:5.1} s] {m}", began.elapsed().as_secs_f64());
    let metrics = dashboard::run(&options, &progress).await?;
    println!(
        "Ferry dashboard benchmark, {}, {} CPUs ({}), release build",
        timefmt::today_utc(),
        std::thread::available_parallelism().map_or(0, usize::from),
        procfs::cpu_model()
    );
    println!("{}", report::table(&metrics));
    println!("(took {:.0} s)", began.elapsed().as_secs_f64());
    Ok(())
}

/// `ferry-bench portal [--ferry PATH] [--projects N] [--samples N]`.
async fn run_portal(argv: &[String]) -> anyhow::Result<()> {
    let mut options = portal::Options {
        ferry: PathBuf::new(),
        projects: 1000,
        samples: 50,
    };
    let mut ferry = None;
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--ferry" => ferry = Some(PathBuf::from(value("--ferry")?)),
            "--projects" => options.projects = positive(&value("--projects")?, "--projects")?,
            "--samples" => options.samples = positive(&value("--samples")?, "--samples")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown option '{other}'\n{USAGE}"),
        }
    }
    options.ferry = match ferry {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot tell where this binary is; pass --ferry PATH")?
            .with_file_name("ferry"),
    };
    let began = Instant::now();
    let progress = |m: &str| eprintln!("[{:5.1} s] {m}", began.elapsed().as_secs_f64());
    let metrics = portal::run(&options, &progress).await?;
    println!(
        "Ferry portal benchmark, {}, {} CPUs ({}), release build",
        timefmt::today_utc(),
        std::thread::available_parallelism().map_or(0, usize::from),
        procfs::cpu_model()
    );
    println!("{}", report::table(&metrics));
    println!("(took {:.0} s)", began.elapsed().as_secs_f64());
    Ok(())
}
