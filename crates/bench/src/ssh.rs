//! `ferry-bench ssh`: Ferry deploying over SSH, side by side in one run with a plain OpenSSH
//! fan-out (the floor), pyinfra and Ansible, and with Ferry's own polling agents.
//!
//! N real `sshd` processes listen on loopback, each with its own config, host key and
//! `SetEnv FERRY_HOME=…` (so each is a separate "machine" for Ferry's agent), all logging in as
//! one dedicated user (`ferrybench`, `/bin/sh`, nothing in its shell start-up). Every sshd pins
//! the same key exchange and cipher, which every client supports: Ferry's russh, OpenSSH's
//! `ssh` (floor and Ansible) and paramiko (pyinfra).
//!
//! The workload: an M MB incompressible `.tar.gz` (one random file and a few small ones) put on
//! every target, extracted, then a short hook script, with N-way parallelism for every tool.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use ferry_agent::runtime::{AgentHandler, Runtime as AgentRuntime};
use ferry_crypto::tls::{Identity, PinSet, Thumbprint};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ENVIRONMENT, script_step, task_ms};
use crate::report::median;
use crate::server::Server;
use crate::timefmt::parse_rfc3339_ms;

/// What to run.
pub struct Options {
    pub ferry: PathBuf,
    pub targets: usize,
    pub size_mb: u64,
    pub skip_peers: bool,
}

/// The one login of every target.
const USER: &str = "ferrybench";
const SSHD: &str = "/usr/sbin/sshd";
/// Key exchange every tool uses. Both names are the same algorithm (RFC 8731 and its older
/// libssh name): OpenSSH and russh pick the first, paramiko knows only the second.
const SSHD_KEX: &str = "curve25519-sha256,curve25519-sha256@libssh.org";
const CLIENT_KEX: &str = "curve25519-sha256";
/// The cipher every tool uses: russh 0.65 offers chacha20-poly1305 and aes256-gcm (no
/// aes128-gcm), paramiko 4 offers the AES modes only, so aes256-gcm is the common choice
/// (AES-NI on this machine).
const CIPHER: &str = "aes256-gcm@openssh.com";
const TASK_TIMEOUT: Duration = Duration::from_secs(900);
const TRIVIAL_STEPS: usize = 20;
const TRIVIAL_TARGETS: usize = 10;
const TRIVIAL_RUNS: usize = 3;
const HOOK: &str = "echo done > hook.out\n";

/// One row of the table: a figure, or the reason there is none.
pub struct Row {
    key: String,
    label: String,
    value: Result<f64, String>,
    unit: &'static str,
    /// The ratio to the floor, for the tools' times.
    ratio: Option<f64>,
    goal: Option<f64>,
}

impl Row {
    fn new(key: &str, label: impl Into<String>, value: f64, unit: &'static str) -> Row {
        Row {
            key: key.to_string(),
            label: label.into(),
            value: Ok(value),
            unit,
            ratio: None,
            goal: None,
        }
    }

    fn failed(key: &str, label: impl Into<String>, reason: String) -> Row {
        Row {
            key: key.to_string(),
            label: label.into(),
            value: Err(reason),
            unit: "",
            ratio: None,
            goal: None,
        }
    }

    fn under(mut self, goal: f64) -> Row {
        self.goal = Some(goal);
        self
    }

    fn met(&self) -> Option<bool> {
        let value = self.value.as_ref().ok()?;
        let goal = self.goal?;
        Some(*value < goal)
    }
}

fn num(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 0.1 || value == 0.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The rows as an aligned Markdown table.
pub fn table(rows: &[Row]) -> String {
    let header = ["metric", "value", "x floor", "goal", "met?"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.label.clone(),
                match &r.value {
                    Ok(v) => format!("{} {}", num(*v), r.unit),
                    Err(reason) => format!("not measured: {reason}"),
                },
                r.ratio.map(|x| format!("{x:.2}x")).unwrap_or_default(),
                r.goal
                    .map(|g| format!("< {} {}", num(g), r.unit))
                    .unwrap_or_else(|| "-".to_string()),
                match r.met() {
                    Some(true) => "yes".to_string(),
                    Some(false) => "NO".to_string(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let right = |col: usize| (1..=3).contains(&col);
    let line = |row: [&str; 5]| {
        let parts: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(col, (c, w))| {
                if right(col) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    let mut out = vec![line(header)];
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(col, w)| {
            if right(col) {
                format!("{}:", "-".repeat(w + 1))
            } else {
                "-".repeat(w + 2)
            }
        })
        .collect();
    out.push(format!("|{}|", rule.join("|")));
    for r in &cells {
        out.push(line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out.join("\n")
}

pub fn json_rows(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({"key": r.key, "metric": r.label,
                    "value": r.value.as_ref().ok(), "error": r.value.as_ref().err(),
                    "unit": r.unit, "ratio_to_floor": r.ratio, "goal_under": r.goal,
                    "met": r.met()})
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Small helpers: commands, /proc.

/// Runs a command to completion; fails with its stderr unless it succeeded.
fn sh(cmd: &mut std::process::Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn keygen(path: &Path) -> anyhow::Result<()> {
    sh(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-bench", "-f"])
        .arg(path))?;
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Fields 14-17 of /proc/PID/stat: utime, stime and the same of waited-for children, in ticks.
fn tree_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    Some(
        rest.split_whitespace()
            .skip(11)
            .take(4)
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .sum(),
    )
}

fn ticks_to_s(ticks: u64) -> f64 {
    ticks as f64 / crate::procfs::clock_ticks_per_second() as f64
}

/// Busy CPU time of the whole machine (all processes, all CPUs), in ticks, from /proc/stat.
fn machine_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .enumerate()
                    // user nice system idle iowait irq softirq steal: all but idle and iowait.
                    .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
                    .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
                    .sum()
            })
        })
        .unwrap_or(0)
}

/// Processes whose command line contains every needle, with their pids.
fn processes_with(needles: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&raw).replace('\0', " ");
        if needles.iter().all(|n| text.contains(n)) {
            found.push(pid);
        }
    }
    found
}

/// Every descendant of `root` (children first found by their parent id in /proc).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|at| stat.get(at + 1..))
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parent_of {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

/// SIGTERM to the given pids (the workspace forbids `unsafe`; std only sends SIGKILL).
fn terminate(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// CPU of the processes matching `needles` (e.g. the agents on the SSH targets), per pid.
fn cpu_of(needles: &[&str]) -> HashMap<u32, u64> {
    processes_with(needles)
        .into_iter()
        .filter_map(|pid| tree_ticks(pid).map(|t| (pid, t)))
        .collect()
}

/// CPU spent between two samples: the growth of processes seen twice, all of new ones.
fn cpu_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The targets.

struct Target {
    port: u16,
    fingerprint: String,
    /// FERRY_HOME of this target.
    home: PathBuf,
    /// Where the floor, pyinfra and Ansible work on this target (`$BENCH_DIR`).
    work: PathBuf,
    child: std::process::Child,
    log: PathBuf,
}

struct Targets {
    list: Vec<Target>,
    /// The client key (authorized for the bench user on every target).
    key: PathBuf,
}

impl Targets {
    fn start(dir: &Path, n: usize) -> anyhow::Result<Targets> {
        if !Path::new(SSHD).exists() {
            bail!("{SSHD} is not installed (apt-get install -y openssh-server)");
        }
        ensure_user()?;
        let _ = std::fs::create_dir_all("/run/sshd");
        std::fs::create_dir_all(dir)?;
        let key = dir.join("client_key");
        keygen(&key)?;
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        let mut list = Vec::with_capacity(n);
        for i in 0..n {
            let t = dir.join(format!("t{i:03}"));
            let home = t.join("home");
            let work = t.join("work");
            std::fs::create_dir_all(&home)?;
            std::fs::create_dir_all(&work)?;
            keygen(&t.join("host_key"))?;
            let fp = sh(std::process::Command::new("ssh-keygen")
                .arg("-lf")
                .arg(t.join("host_key.pub")))?;
            let fingerprint = fp
                .split_whitespace()
                .nth(1)
                .context("ssh-keygen -l printed no fingerprint")?
                .to_string();
            let port = free_port()?;
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {t}/host_key\nPidFile {t}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPermitRootLogin no\n\
                 AllowUsers {USER}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nPrintMotd no\nPrintLastLog no\nUseDNS no\n\
                 SetEnv FERRY_HOME={home} BENCH_DIR={work}\n\
                 MaxSessions 1000\nMaxStartups 1000:30:2000\n\
                 Subsystem sftp internal-sftp\n\
                 HostKeyAlgorithms ssh-ed25519\nKexAlgorithms {SSHD_KEX}\nCiphers {CIPHER}\n",
                t = t.display(),
                d = dir.display(),
                home = home.display(),
                work = work.display(),
            );
            std::fs::write(t.join("sshd_config"), config)?;
            let log = t.join("sshd.log");
            let child = std::process::Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(t.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .context("cannot start sshd")?;
            list.push(Target {
                port,
                fingerprint,
                home,
                work,
                child,
                log,
            });
        }
        // The bench user writes its homes and work directories; the rest stays readable.
        sh(std::process::Command::new("chmod").arg("0755").arg(dir))?;
        for t in &list {
            sh(std::process::Command::new("chown")
                .arg("-R")
                .arg(format!("{USER}:"))
                .arg(&t.home)
                .arg(&t.work))?;
        }
        let targets = Targets { list, key };
        let deadline = Instant::now() + Duration::from_secs(30);
        for t in &targets.list {
            loop {
                let log = std::fs::read_to_string(&t.log).unwrap_or_default();
                if log.contains("Server listening") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("sshd on port {} did not start: {log}", t.port);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(targets)
    }

    /// The `ssh` options every OpenSSH-based tool uses.
    fn ssh_options(&self) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &format!("KexAlgorithms={CLIENT_KEX}"),
            "-o",
            &format!("Ciphers={CIPHER}"),
            "-o",
            "HostKeyAlgorithms=ssh-ed25519",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Stops every sshd and what it started (sessions and the agents they run).
    fn stop(&mut self) {
        let mut pids = Vec::new();
        for t in &self.list {
            pids.extend(descendants(t.child.id()));
        }
        terminate(&pids);
        for t in &mut self.list {
            let _ = t.child.kill();
            let _ = t.child.wait();
        }
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes the bench user if missing (shell /bin/sh: nothing runs at login) and unlocks it for
/// key logins (sshd without PAM refuses a locked `!` password).
fn ensure_user() -> anyhow::Result<()> {
    let exists = std::process::Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        sh(std::process::Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]))
            .context("cannot make the bench user (run the bench as root)")?;
    }
    sh(std::process::Command::new("usermod").args(["-p", "*", USER]))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Packages.

struct Packages {
    /// Bench.Payload.1.0.0.tar.gz: the workload.
    payload: PathBuf,
    /// Bench.Payload.1.0.1.tar.gz: 1 MB of the big file changed (gzip spreads the change).
    payload_changed: PathBuf,
    /// Bench.Tiny.1.0.0.tar.gz: the warm-up.
    tiny: PathBuf,
    /// Bench.Delta.1.0.0.tar / 1.0.1.tar: the same contents uncompressed, and 1 MB changed.
    delta_old: PathBuf,
    delta_new: PathBuf,
}

fn random_bytes(len: usize) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

fn make_packages(dir: &Path, size_mb: u64) -> anyhow::Result<Packages> {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("config"))?;
    let big = random_bytes((size_mb * 1024 * 1024) as usize)?;
    std::fs::write(src.join("big.bin"), &big)?;
    std::fs::write(src.join("README.txt"), "Ferry ssh benchmark payload\n")?;
    std::fs::write(src.join("config/app.conf"), "greeting=hello\nlevel=info\n")?;
    std::fs::write(src.join("hook.sh"), HOOK)?;
    let files = ["big.bin", "README.txt", "config", "hook.sh"];
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    let tar = |name: &str, gz: bool| -> anyhow::Result<PathBuf> {
        let path = out.join(name);
        sh(std::process::Command::new("tar")
            .arg(if gz { "czf" } else { "cf" })
            .arg(&path)
            .arg("-C")
            .arg(&src)
            .args(files))?;
        Ok(path)
    };
    let payload = tar("Bench.Payload.1.0.0.tar.gz", true)?;
    let delta_old = tar("Bench.Delta.1.0.0.tar", false)?;
    // 1 MB in the middle of the big file changes.
    let mut changed = big;
    let at = changed.len() / 2;
    let len = (1024 * 1024).min(changed.len() - at);
    changed[at..at + len].copy_from_slice(&random_bytes(len)?);
    std::fs::write(src.join("big.bin"), &changed)?;
    let payload_changed = tar("Bench.Payload.1.0.1.tar.gz", true)?;
    let delta_new = tar("Bench.Delta.1.0.1.tar", false)?;
    std::fs::remove_file(src.join("big.bin"))?;
    let tiny_src = dir.join("tiny");
    std::fs::create_dir_all(&tiny_src)?;
    std::fs::write(tiny_src.join("hello.txt"), "hello\n")?;
    let tiny = out.join("Bench.Tiny.1.0.0.tar.gz");
    sh(std::process::Command::new("tar")
        .arg("czf")
        .arg(&tiny)
        .arg("-C")
        .arg(&tiny_src)
        .arg("hello.txt"))?;
    Ok(Packages {
        payload,
        payload_changed,
        tiny,
        delta_old,
        delta_new,
    })
}

// ---------------------------------------------------------------------------------------------
// The server's API.

impl Api {
    /// Creates release `version` of `project` and deploys it; returns the task, its log and
    /// the wall time from the deploy call to seeing the task complete.
    async fn release_and_deploy(
        &self,
        project: &str,
        version: &str,
    ) -> anyhow::Result<(Value, String, Duration)> {
        self.create_release(project, version).await?;
        let began = Instant::now();
        let task = self.deploy(project, version).await?;
        let t = self.wait_success(&task).await?;
        let wall = began.elapsed();
        let log = self.raw(&task).await?;
        Ok((t, log, wall))
    }
}

/// A "Deploy a package" step on role `web` with the hook as its PostDeploy script.
fn package_step(package_id: &str) -> Value {
    json!({"Name": "Deploy", "Properties": {"Octopus.Action.TargetRoles": "web"},
        "Actions": [{"Name": "Deploy", "ActionType": "Octopus.TentaclePackage", "Properties": {
            "Octopus.Action.Package.PackageId": package_id,
            "Octopus.Action.Package.FeedId": "feeds-builtin",
            "Octopus.Action.EnabledFeatures": "Octopus.Features.CustomScripts",
            "Octopus.Action.CustomScripts.PostDeploy.sh": HOOK}}]})
}

async fn environment(api: &Api) -> anyhow::Result<String> {
    let env = api
        .post("/api/Spaces-1/environments", json!({"Name": ENVIRONMENT}))
        .await?;
    Ok(env["Id"]
        .as_str()
        .context("the new environment has no Id")?
        .to_string())
}

/// Bytes of every "as a delta of N bytes" line (one per target).
fn delta_bytes(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| l.split("as a delta of ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|n| n.parse::<f64>().ok())
        .collect()
}

/// Bytes of every whole-package "Acquired package … (N bytes)" line.
fn full_bytes(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("Acquired package") && !l.contains("as a delta"))
        .filter_map(|l| l.rsplit_once('(').map(|(_, b)| b))
        .filter_map(|b| b.split_whitespace().next())
        .filter_map(|n| n.parse::<f64>().ok())
        .collect()
}

/// Removes `sub` under every target's work directory, or (`apps`, `agent`) what Ferry put
/// there, to keep the disk from filling: 50 targets x 50 MB add up quickly.
fn clean(targets: &Targets, sub: &str) {
    for t in &targets.list {
        let path = match sub {
            "apps" => t.home.join("agent/apps"),
            "agent" => t.home.join("agent"),
            _ => t.work.join(sub),
        };
        let _ = std::fs::remove_dir_all(path);
    }
}

/// Files called `name` under `dir`, counted.
fn count_files(dir: &Path, name: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            n += count_files(&e.path(), name);
        } else if e.file_name() == name {
            n += 1;
        }
    }
    n
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Checks the open-file limit from /proc/self/limits (no `unsafe` to raise it).
fn check_open_files(needed: u64) -> anyhow::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    match soft {
        Some(soft) if soft < needed => bail!(
            "this process may open only {soft} files and the bench needs about {needed}; raise it first (ulimit -n {needed})"
        ),
        _ => Ok(()),
    }
}

pub struct Outcome {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

pub async fn run(options: &Options, progress: &dyn Fn(&str)) -> anyhow::Result<Outcome> {
    check_open_files(options.targets as u64 * 8 + 256)?;
    let tmp = tempfile::Builder::new()
        .prefix("ferry-bench-ssh-")
        .tempdir()?;
    let dir = tmp.path().to_path_buf();
    // The bench user reaches its directories under this one.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    progress(&format!(
        "starting {} sshd instances in {}",
        options.targets,
        dir.display()
    ));
    let mut targets = Targets::start(&dir.join("targets"), options.targets)?;
    progress(&format!("making the {} MB packages", options.size_mb));
    let packages = make_packages(&dir.join("packages"), options.size_mb)?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let result = run_all(
        options, &dir, &targets, &packages, &mut rows, &mut notes, progress,
    )
    .await;
    targets.stop();
    // Leftover ssh control masters (Ansible's) live under the bench directory.
    terminate(&processes_with(&[&dir.display().to_string(), "ssh"]));
    drop(targets);
    if let Err(e) = result {
        // Report what was measured before the failure too.
        if rows.is_empty() {
            return Err(e);
        }
        notes.push(format!("the run stopped early: {e:#}"));
    }
    Ok(Outcome { rows, notes })
}

async fn run_all(
    options: &Options,
    dir: &Path,
    targets: &Targets,
    packages: &Packages,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let n = options.targets;
    let mb = options.size_mb;
    let package_bytes = std::fs::metadata(&packages.payload)?.len();
    notes.push(format!(
        "workload: {} ({} bytes: {mb} MB of random bytes, 3 small files, hook.sh) to {n} targets, extracted, then `{}`",
        packages.payload.file_name().unwrap_or_default().to_string_lossy(),
        package_bytes,
        HOOK.trim()
    ));
    notes.push(format!(
        "every sshd pins KexAlgorithms {SSHD_KEX}, Ciphers {CIPHER}, HostKeyAlgorithms ssh-ed25519; \
         ssh (floor, Ansible) uses {CLIENT_KEX}, paramiko (pyinfra) the @libssh.org name of the same curve25519 exchange"
    ));

    // 1. The floor: one ssh per target, package on stdin.
    let mut floor = f64::NAN;
    for attempt in 1..=2 {
        progress(&format!("OpenSSH floor, run {attempt} of 2"));
        let (secs, cpu) = floor_run(targets, &packages.payload).await?;
        progress(&format!(
            "  {secs:.2} s, machine CPU {cpu:.1} s (all processes: ssh, sshd, tar)"
        ));
        floor = if floor.is_nan() {
            secs
        } else {
            floor.min(secs)
        };
    }
    let hooks = targets
        .list
        .iter()
        .filter(|t| t.work.join("floor/d/hook.out").exists())
        .count();
    if hooks != n {
        bail!("the floor ran its hook on {hooks} of {n} targets");
    }
    clean(targets, "floor");
    let mut floor_row = Row::new(
        "floor_s",
        format!("OpenSSH floor: {n} parallel ssh, {mb} MB on stdin, tar xzf, hook (best of 2)"),
        floor,
        "s",
    );
    floor_row.ratio = Some(1.0);
    rows.push(floor_row);

    // 2. Ferry over SSH.
    let ferry_dir = dir.join("ferry-ssh");
    std::fs::create_dir_all(&ferry_dir)?;
    progress("Ferry over SSH: starting a server");
    let (server, _) = Server::start(
        &options.ferry,
        &ferry_dir.join("data"),
        &ferry_dir.join("server.log"),
    )
    .await?;
    let outcome = ferry_ssh(
        options, &server, targets, packages, floor, rows, notes, progress,
    )
    .await;
    let stopped = server.stop().await;
    if let Err(e) = outcome {
        progress(&format!("Ferry over SSH failed: {e:#}"));
        notes.push(format!("Ferry over SSH stopped early: {e:#}"));
    }
    clean(targets, "agent");
    if let Err(e) = stopped {
        notes.push(format!("the SSH server did not stop cleanly: {e:#}"));
    }

    // 3. The peers.
    if options.skip_peers {
        notes.push("pyinfra and Ansible skipped (--skip-peers)".to_string());
    } else {
        peers(dir, targets, packages, n, floor, rows, progress).await;
    }

    // 4. Ferry's polling agents, same workload.
    progress(&format!("Ferry agents: {n} in-process polling agents"));
    match ferry_agents(options, dir, packages, floor, progress).await {
        Ok(mut more) => rows.append(&mut more),
        Err(e) => rows.push(Row::failed(
            "agents_deploy_s",
            format!("Ferry polling agents: {mb} MB to {n} targets"),
            format!("{e:#}"),
        )),
    }
    Ok(())
}

async fn floor_run(targets: &Targets, package: &Path) -> anyhow::Result<(f64, f64)> {
    let opts = targets.ssh_options();
    let machine = machine_ticks();
    let began = Instant::now();
    let mut children = Vec::new();
    for t in &targets.list {
        let stdin = std::fs::File::open(package)?;
        let child = tokio::process::Command::new("ssh")
            .args(&opts)
            .arg("-i")
            .arg(&targets.key)
            .arg("-p")
            .arg(t.port.to_string())
            .arg("-l")
            .arg(USER)
            .arg("127.0.0.1")
            .arg(
                r#"cd "$BENCH_DIR" && rm -rf floor && mkdir floor && cd floor && cat > pkg.tgz && mkdir -p d && tar xzf pkg.tgz -C d && cd d && sh hook.sh"#,
            )
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run ssh")?;
        children.push(child);
    }
    let mut failures = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            failures.push(format!(
                "target {i}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let secs = began.elapsed().as_secs_f64();
    if !failures.is_empty() {
        bail!(
            "the OpenSSH floor failed on {} targets, e.g. {}",
            failures.len(),
            failures[0]
        );
    }
    Ok((secs, ticks_to_s(machine_ticks() - machine)))
}

#[allow(clippy::too_many_arguments)]
async fn ferry_ssh(
    options: &Options,
    server: &Server,
    targets: &Targets,
    packages: &Packages,
    floor: f64,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let n = options.targets;
    let mb = options.size_mb;
    let api = Api::new(&server.url, TASK_TIMEOUT)?;
    let env = environment(&api).await?;
    let key = std::fs::read(&targets.key)?;
    let account = api
        .post(
            "/api/Spaces-1/accounts",
            json!({"AccountType": "SshKeyPair", "Name": "bench key", "Username": USER,
                "PrivateKeyFile": {"HasValue": true,
                    "NewValue": base64::engine::general_purpose::STANDARD.encode(&key)}}),
        )
        .await?;
    let account = account["Id"]
        .as_str()
        .context("the new account has no Id")?
        .to_string();
    for (i, t) in targets.list.iter().enumerate() {
        let mut roles = vec!["web"];
        if i < TRIVIAL_TARGETS {
            roles.push("ten");
        }
        api.post(
            "/api/Spaces-1/machines",
            json!({"Name": format!("ssh-{i:03}"), "EnvironmentIds": [env], "Roles": roles,
                "Endpoint": {"CommunicationStyle": "Ssh", "Host": "127.0.0.1", "Port": t.port,
                    "Fingerprint": t.fingerprint, "AccountId": account}}),
        )
        .await
        .with_context(|| format!("cannot register SSH target {i}"))?;
    }
    let agents_dir = targets
        .list
        .first()
        .map(|t| {
            t.home
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/"))
                .display()
                .to_string()
        })
        .unwrap_or_default();
    let agent_cpu = || cpu_of(&["agent", "stdio", &agents_dir]);
    let pid = server.pid;

    // First contact: every target gets the agent binary.
    progress("Ferry over SSH: warm-up deployment (uploads the agent binary)");
    for p in [&packages.tiny, &packages.payload, &packages.delta_old] {
        api.push(p).await?;
    }
    api.project("Warmup", vec![package_step("Bench.Tiny")])
        .await?;
    let (_, log, wall) = api.release_and_deploy("Warmup", "1.0.0").await?;
    let binary_mb = std::fs::metadata(&options.ferry)?.len() as f64 / 1048576.0;
    progress(&format!(
        "  {:.2} s; {} 'uploading'/agent lines",
        wall.as_secs_f64(),
        log.matches("Acquired package").count()
    ));
    rows.push(Row::new(
        "ferry_ssh_first_contact_s",
        format!(
            "Ferry over SSH: first contact (agent upload, {binary_mb:.0} MB binary) + tiny package, {n} targets"
        ),
        wall.as_secs_f64(),
        "s",
    ));

    // The workload.
    progress(&format!("Ferry over SSH: {mb} MB package to {n} targets"));
    api.project("Payload", vec![package_step("Bench.Payload")])
        .await?;
    api.create_release("Payload", "1.0.0").await?;
    let machine = machine_ticks();
    let server_before = tree_ticks(pid).unwrap_or(0);
    let agents_before = agent_cpu();
    let began = Instant::now();
    let task = api.deploy("Payload", "1.0.0").await?;
    let t = api.wait_success(&task).await?;
    let wall = began.elapsed().as_secs_f64();
    let server_cpu = ticks_to_s(tree_ticks(pid).unwrap_or(0) - server_before);
    let agents_cpu = ticks_to_s(cpu_between(&agents_before, &agent_cpu()));
    let machine_cpu = ticks_to_s(machine_ticks() - machine);
    let log = api.raw(&task).await?;
    let hooks = targets
        .list
        .iter()
        .filter(|t| count_files(&t.home.join("agent"), "hook.out") > 0)
        .count();
    progress(&format!(
        "  {wall:.2} s (task {:.2} s); server CPU {server_cpu:.2} s, agents on targets {agents_cpu:.2} s, machine {machine_cpu:.1} s; hook.out on {hooks}/{n} targets",
        task_ms(&t)? / 1000.0
    ));
    progress(&format!("  {}", step_spans(&api, &task).await?));
    if hooks != n {
        notes.push(format!(
            "Ferry's PostDeploy hook left hook.out on {hooks} of {n} targets"
        ));
    }
    clean(targets, "apps");
    if log.matches("Acquired package Bench.Payload").count() != n {
        notes.push(format!(
            "{} of {n} targets logged 'Acquired package Bench.Payload'",
            log.matches("Acquired package Bench.Payload").count()
        ));
    }
    let mut row = Row::new(
        "ferry_ssh_deploy_s",
        format!(
            "Ferry over SSH: {mb} MB package to {n} targets, extract, hook (deploy call -> done)"
        ),
        wall,
        "s",
    )
    .under(floor * 1.15);
    row.ratio = Some(wall / floor);
    rows.push(row);
    rows.push(
        Row::new(
            "ferry_ssh_server_cpu_per_target_s",
            "  server CPU per target (utime+stime of ferry server)",
            server_cpu / n as f64,
            "CPU-s",
        )
        .under(0.05),
    );
    rows.push(Row::new(
        "ferry_ssh_agent_cpu_per_target_s",
        "  agent CPU per target (ferry agent stdio on the target)",
        agents_cpu / n as f64,
        "CPU-s",
    ));
    rows.push(Row::new(
        "ferry_ssh_machine_cpu_s",
        "  whole machine CPU during it (server, sshd, agents, others)",
        machine_cpu,
        "CPU-s",
    ));

    // No-change redeploy.
    progress("Ferry over SSH: no-change redeploy");
    let (_, log, wall) = api.release_and_deploy("Payload", "1.0.1").await?;
    let hits = log.matches("is already on the target").count();
    clean(targets, "apps");
    progress(&format!(
        "  {:.2} s; 'is already on the target' on {hits}/{n}",
        wall.as_secs_f64()
    ));
    rows.push(
        Row::new(
            "ferry_ssh_redeploy_s",
            format!(
                "Ferry over SSH: no-change redeploy (new release, same package; {hits}/{n} reused it)"
            ),
            wall.as_secs_f64(),
            "s",
        )
        .under(3.0),
    );

    // 20 trivial steps on 10 targets.
    let ten = TRIVIAL_TARGETS.min(n);
    progress(&format!(
        "Ferry over SSH: {TRIVIAL_STEPS} trivial steps on {ten} targets, 1 warm-up + {TRIVIAL_RUNS}"
    ));
    let steps = (1..=TRIVIAL_STEPS)
        .map(|i| script_step(&format!("step-{i:02}"), "ten", "true"))
        .collect();
    api.project("Trivial", steps).await?;
    let mut durations = Vec::new();
    let mut cpu_from = (0, HashMap::new());
    let mut last = String::new();
    for run in 0..=TRIVIAL_RUNS {
        if run == 1 {
            cpu_from = (tree_ticks(pid).unwrap_or(0), agent_cpu());
        }
        let (t, _, _) = api
            .release_and_deploy("Trivial", &format!("1.0.{run}"))
            .await?;
        if run > 0 {
            durations.push(task_ms(&t)?);
        }
        last = t["Id"].as_str().unwrap_or_default().to_string();
    }
    let server_cpu = ticks_to_s(tree_ticks(pid).unwrap_or(0) - cpu_from.0);
    let agents_cpu = ticks_to_s(cpu_between(&cpu_from.1, &agent_cpu()));
    let target_steps = (TRIVIAL_RUNS * TRIVIAL_STEPS * ten) as f64;
    progress(&format!(
        "  {durations:?} ms; server CPU {server_cpu:.2} s, agents {agents_cpu:.2} s over {TRIVIAL_RUNS} runs"
    ));
    progress(&format!("  {}", step_spans(&api, &last).await?));
    rows.push(
        Row::new(
            "ferry_ssh_trivial_s",
            format!(
                "Ferry over SSH: {TRIVIAL_STEPS} trivial steps x {ten} targets (task, median of {TRIVIAL_RUNS})"
            ),
            median(&durations) / 1000.0,
            "s",
        )
        .under(1.0),
    );
    rows.push(
        Row::new(
            "ferry_ssh_trivial_server_cpu_per_target_step_ms",
            "  server CPU per target-step",
            server_cpu * 1000.0 / target_steps,
            "ms",
        )
        .under(10.0),
    );
    rows.push(Row::new(
        "ferry_ssh_trivial_agent_cpu_per_target_step_ms",
        "  agent CPU per target-step (agent + its bash)",
        agents_cpu * 1000.0 / target_steps,
        "ms",
    ));

    // Delta: an uncompressed tar, 1 MB changed in the big file.
    progress(&format!(
        "Ferry over SSH: delta, {mb} MB .tar to {n} targets then 1 MB changed"
    ));
    api.project("Delta", vec![package_step("Bench.Delta")])
        .await?;
    let (_, _, wall_full) = api.release_and_deploy("Delta", "1.0.0").await?;
    clean(targets, "apps");
    api.push(&packages.delta_new).await?;
    let server_before = tree_ticks(pid).unwrap_or(0);
    let (_, log, wall) = api.release_and_deploy("Delta", "1.0.1").await?;
    let server_cpu = ticks_to_s(tree_ticks(pid).unwrap_or(0) - server_before);
    clean(targets, "apps");
    let deltas = delta_bytes(&log);
    let whole = full_bytes(&log);
    progress(&format!(
        "  full .tar {:.2} s; delta {:.2} s, server CPU {server_cpu:.2} s; {} targets took a delta (median {:.0} bytes), {} the whole file",
        wall_full.as_secs_f64(),
        wall.as_secs_f64(),
        deltas.len(),
        median(&deltas),
        whole.len()
    ));
    let moved: Vec<f64> = deltas.iter().chain(whole.iter()).copied().collect();
    rows.push(
        Row::new(
            "ferry_ssh_delta_mb_per_target",
            format!(
                "Ferry over SSH: 1 MB changed in a {mb} MB .tar: MB moved per target (median; {}/{n} as delta)",
                deltas.len()
            ),
            median(&moved) / 1048576.0,
            "MB",
        )
        .under(2.5),
    );
    rows.push(Row::new(
        "ferry_ssh_delta_deploy_s",
        format!(
            "  that deployment's time ({n} targets; the whole .tar took {:.1} s)",
            wall_full.as_secs_f64()
        ),
        wall.as_secs_f64(),
        "s",
    ));
    rows.push(Row::new(
        "ferry_ssh_delta_server_cpu_per_target_s",
        "  server CPU per target for it (signature in, delta computed)",
        server_cpu / n as f64,
        "CPU-s",
    ));

    // The same change in the .tar.gz: gzip spreads it to the end of the stream.
    progress("Ferry over SSH: the same 1 MB change in the .tar.gz");
    api.push(&packages.payload_changed).await?;
    let (_, log, wall) = api.release_and_deploy("Payload", "1.0.2").await?;
    let deltas = delta_bytes(&log);
    let whole = full_bytes(&log);
    let moved: Vec<f64> = deltas.iter().chain(whole.iter()).copied().collect();
    progress(&format!(
        "  {:.2} s; {} as delta, {} whole",
        wall.as_secs_f64(),
        deltas.len(),
        whole.len()
    ));
    rows.push(Row::new(
        "ferry_ssh_delta_gz_mb_per_target",
        format!(
            "  same 1 MB change inside the .tar.gz: MB moved per target ({}/{n} as delta, {:.1} s)",
            deltas.len(),
            wall.as_secs_f64()
        ),
        median(&moved) / 1048576.0,
        "MB",
    ));
    Ok(())
}

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
        let times: Vec<f64> = step["Children"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|t| {
                ms(t, "Ended")
                    .zip(ms(t, "Started"))
                    .map(|(e, s)| (e - s) as f64)
            })
            .collect();
        parts.push(format!(
            "{}/{:.0}/{:.0}",
            span.unwrap_or(-1),
            median(&times),
            crate::report::max(&times)
        ));
    }
    Ok(format!(
        "step ms / median target ms / slowest target ms: {}",
        parts.join(" ")
    ))
}

// ---------------------------------------------------------------------------------------------
// pyinfra and Ansible.

/// The virtualenv of the peers: kept under /tmp between runs.
const VENV: &str = "/tmp/ferry-bench-ssh-venv";

fn ensure_venv(progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let venv = PathBuf::from(VENV);
    let ready = venv.join("bin/pyinfra").exists() && venv.join("bin/ansible-playbook").exists();
    if !ready {
        progress(&format!(
            "installing pyinfra and ansible-core into {VENV} (pip)"
        ));
        sh(std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv))
        .context("python3 -m venv")?;
        sh(std::process::Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "pyinfra",
            "ansible-core",
        ]))
        .context("pip install pyinfra ansible-core")?;
    }
    Ok(venv)
}

fn versions(venv: &Path) -> String {
    let out = std::process::Command::new(venv.join("bin/pip"))
        .args(["list", "--format=freeze"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    out.lines()
        .filter(|l| {
            l.starts_with("pyinfra==")
                || l.starts_with("ansible-core==")
                || l.starts_with("paramiko==")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn peers(
    dir: &Path,
    targets: &Targets,
    packages: &Packages,
    n: usize,
    floor: f64,
    rows: &mut Vec<Row>,
    progress: &dyn Fn(&str),
) {
    let mb = packages
        .payload
        .metadata()
        .map(|m| m.len() / 1048576)
        .unwrap_or(0);
    let venv = match ensure_venv(progress) {
        Ok(v) => v,
        Err(e) => {
            for (key, name) in [("pyinfra_s", "pyinfra"), ("ansible_s", "Ansible")] {
                rows.push(Row::failed(
                    key,
                    format!("{name}: {mb} MB to {n} targets"),
                    format!("cannot install: {e:#}"),
                ));
            }
            return;
        }
    };
    let which = versions(&venv);
    for (key, name) in [("pyinfra_s", "pyinfra"), ("ansible_s", "Ansible")] {
        progress(&format!("{name}: {n} targets, forks/parallel {n}"));
        let ran = if key == "pyinfra_s" {
            pyinfra(dir, &venv, targets, packages).await
        } else {
            ansible(dir, &venv, targets, packages).await
        };
        let sub = if key == "pyinfra_s" {
            "pyinfra"
        } else {
            "ansible"
        };
        let label = format!(
            "{name} ({}): put {mb} MB, extract, hook on {n} targets",
            which
                .split(", ")
                .find(|v| v.to_lowercase().starts_with(sub))
                .unwrap_or(sub)
        );
        match ran {
            Ok((secs, cpu)) => {
                let hooks = targets
                    .list
                    .iter()
                    .filter(|t| t.work.join(sub).join("d/hook.out").exists())
                    .count();
                progress(&format!(
                    "  {secs:.2} s, machine CPU {cpu:.1} s; hook.out on {hooks}/{n}"
                ));
                clean(targets, sub);
                if hooks != n {
                    rows.push(Row::failed(
                        key,
                        label,
                        format!("the hook ran on {hooks} of {n} targets"),
                    ));
                    continue;
                }
                let mut row = Row::new(key, label, secs, "s");
                row.ratio = Some(secs / floor);
                rows.push(row);
            }
            Err(e) => {
                progress(&format!("  failed: {e:#}"));
                let reason = format!("{e:#}");
                let reason: String = reason.chars().take(160).collect();
                rows.push(Row::failed(key, label, reason));
            }
        }
    }
}

/// Runs a peer's command; returns wall seconds and the machine's CPU seconds.
async fn timed(mut cmd: tokio::process::Command, log: &Path) -> anyhow::Result<(f64, f64)> {
    let machine = machine_ticks();
    let began = Instant::now();
    let out = cmd.stdin(Stdio::null()).kill_on_drop(true).output().await?;
    let secs = began.elapsed().as_secs_f64();
    let cpu = ticks_to_s(machine_ticks() - machine);
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    std::fs::write(log, &text)?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&text);
        let tail: Vec<&str> = text.lines().rev().take(6).collect();
        bail!(
            "{}: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        );
    }
    Ok((secs, cpu))
}

async fn pyinfra(
    dir: &Path,
    venv: &Path,
    targets: &Targets,
    packages: &Packages,
) -> anyhow::Result<(f64, f64)> {
    let d = dir.join("pyinfra");
    std::fs::create_dir_all(&d)?;
    let known = d.join("known_hosts");
    std::fs::write(&known, "")?;
    let mut inv = String::from("hosts = [\n");
    for (i, t) in targets.list.iter().enumerate() {
        let _ = writeln!(
            inv,
            "    ('t{i:03}', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {}, 'ssh_user': '{USER}', \
             'ssh_key': '{}', 'ssh_allow_agent': False, 'ssh_look_for_keys': False, \
             'ssh_known_hosts_file': '{}', 'ssh_strict_host_key_checking': 'no', \
             'ssh_config_file': '/dev/null', 'work': '{}'}}),",
            t.port,
            targets.key.display(),
            known.display(),
            t.work.display()
        );
    }
    inv.push_str("]\n");
    std::fs::write(d.join("inventory.py"), inv)?;
    let deploy = format!(
        "from pyinfra import host\n\
         from pyinfra.operations import files, server\n\
         work = host.data.work + '/pyinfra'\n\
         files.put(name='put the package', src='{pkg}', dest=work + '/pkg.tgz')\n\
         server.shell(name='extract and hook', commands=['cd ' + work + ' && rm -rf d && mkdir -p d && tar xzf pkg.tgz -C d && cd d && sh hook.sh'])\n",
        pkg = packages.payload.display()
    );
    std::fs::write(d.join("deploy.py"), deploy)?;
    let n = targets.list.len();
    let mut cmd = tokio::process::Command::new(venv.join("bin/pyinfra"));
    cmd.current_dir(&d)
        .arg("-y")
        .arg("--parallel")
        .arg(n.to_string())
        .arg("inventory.py")
        .arg("deploy.py");
    timed(cmd, &d.join("pyinfra.log")).await
}

async fn ansible(
    dir: &Path,
    venv: &Path,
    targets: &Targets,
    packages: &Packages,
) -> anyhow::Result<(f64, f64)> {
    let d = dir.join("ansible");
    std::fs::create_dir_all(d.join("cp"))?;
    std::fs::create_dir_all(d.join("tmp"))?;
    let common = targets.ssh_options().join(" ");
    let mut inv = String::from("[all]\n");
    for (i, t) in targets.list.iter().enumerate() {
        let _ = writeln!(
            inv,
            "t{i:03} ansible_host=127.0.0.1 ansible_port={} work={}",
            t.port,
            t.work.display()
        );
    }
    let _ = write!(
        inv,
        "\n[all:vars]\nansible_user={USER}\nansible_ssh_private_key_file={}\n\
         ansible_ssh_common_args='{common}'\nansible_python_interpreter=/usr/bin/python3\n\
         ansible_remote_tmp={{{{ work }}}}/.ansible-tmp\n",
        targets.key.display()
    );
    std::fs::write(d.join("inventory.ini"), inv)?;
    let play = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n\
         \x20   - name: directory\n      file: {{path: '{{{{ work }}}}/ansible/d', state: directory}}\n\
         \x20   - name: put the package\n      copy: {{src: '{pkg}', dest: '{{{{ work }}}}/ansible/pkg.tgz'}}\n\
         \x20   - name: extract\n      unarchive: {{src: '{{{{ work }}}}/ansible/pkg.tgz', dest: '{{{{ work }}}}/ansible/d', remote_src: true}}\n\
         \x20   - name: hook\n      command: {{cmd: sh hook.sh, chdir: '{{{{ work }}}}/ansible/d'}}\n",
        pkg = packages.payload.display()
    );
    std::fs::write(d.join("play.yml"), play)?;
    let n = targets.list.len();
    let mut cmd = tokio::process::Command::new(venv.join("bin/ansible-playbook"));
    cmd.current_dir(&d)
        .env("ANSIBLE_FORKS", n.to_string())
        .env("ANSIBLE_PIPELINING", "True")
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", d.join("cp"))
        .env("ANSIBLE_LOCAL_TEMP", d.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
        .env("ANSIBLE_CONFIG", d.join("none.cfg"))
        .arg("-i")
        .arg("inventory.ini")
        .arg("play.yml");
    timed(cmd, &d.join("ansible.log")).await
}

// ---------------------------------------------------------------------------------------------
// Ferry's polling agents, in this process.

async fn ferry_agents(
    options: &Options,
    dir: &Path,
    packages: &Packages,
    floor: f64,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Row>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-agents")
        .enable_all()
        .build()
        .context("cannot start the agents' runtime")?;
    let d = dir.join("ferry-agents");
    std::fs::create_dir_all(d.join("agents"))?;
    let (server, _) = Server::start(&options.ferry, &d.join("data"), &d.join("server.log")).await?;
    let shutdown = CancellationToken::new();
    let result = agents_inner(
        options,
        &d,
        &server,
        packages,
        floor,
        rt.handle(),
        &shutdown,
        progress,
    )
    .await;
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = server.stop().await;
    rt.shutdown_background();
    result
}

#[allow(clippy::too_many_arguments)]
async fn agents_inner(
    options: &Options,
    d: &Path,
    server: &Server,
    packages: &Packages,
    floor: f64,
    rt: &tokio::runtime::Handle,
    shutdown: &CancellationToken,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Row>> {
    let n = options.targets;
    let mb = options.size_mb;
    let api = Api::new(&server.url, TASK_TIMEOUT)?;
    let env = environment(&api).await?;
    let cert = api.get("/api/certificates/certificate-global").await?;
    let thumbprint: Thumbprint = cert["Thumbprint"]
        .as_str()
        .context("the server reports no certificate thumbprint")?
        .parse()
        .map_err(|e| anyhow!("the server's thumbprint: {e}"))?;
    let port = cert["PollingPort"]
        .as_u64()
        .with_context(|| format!("the server reports no polling port: {cert}"))?;
    let address = format!("127.0.0.1:{port}");
    let mut pending = Vec::new();
    for i in 0..n {
        let name = format!("poll-{i:03}");
        let adir = d.join("agents").join(&name);
        std::fs::create_dir_all(&adir)?;
        let identity =
            Identity::generate_agent(&name).map_err(|e| anyhow!("agent certificate: {e}"))?;
        api.post(
            "/api/Spaces-1/machines",
            json!({"Name": name, "EnvironmentIds": [env], "Roles": ["web"],
                "Endpoint": {"CommunicationStyle": "TentacleActive", "Uri": format!("poll://{name}/"),
                    "Thumbprint": identity.thumbprint().as_str()}}),
        )
        .await?;
        pending.push((name, adir, identity));
    }
    for (name, adir, identity) in pending {
        let pins = PinSet::new();
        pins.insert(thumbprint.clone());
        let shutdown = shutdown.clone();
        let address = address.clone();
        rt.spawn(async move {
            let runtime = match AgentRuntime::open(&adir, shutdown.clone()) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("agent {name}: {e}");
                    return;
                }
            };
            let handler = Arc::new(AgentHandler { rt: runtime });
            if let Err(e) =
                ferry_agent::agent::poll(&address, &name, &identity, pins, handler, shutdown).await
            {
                eprintln!("agent {name}: {e}");
            }
        });
    }
    // Wait until every agent answers a health check.
    let began = Instant::now();
    loop {
        let task = api
            .post("/api/tasks", json!({"Name": "Health", "Arguments": {}}))
            .await?;
        let id = task["Id"]
            .as_str()
            .context("health task without Id")?
            .to_string();
        loop {
            let t = api.get(&format!("/api/tasks/{id}")).await?;
            if t["IsCompleted"] == json!(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let machines = api.get("/api/Spaces-1/machines?take=100000").await?;
        let healthy = machines["Items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|m| m["HealthStatus"] == json!("Healthy"))
                    .count()
            })
            .unwrap_or(0);
        if healthy >= n {
            break;
        }
        if began.elapsed() > Duration::from_secs(180) {
            bail!("only {healthy} of {n} polling agents became healthy");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress(&format!(
        "  {n} agents healthy after {:.1} s",
        began.elapsed().as_secs_f64()
    ));
    api.push(&packages.payload).await?;
    api.project("Payload", vec![package_step("Bench.Payload")])
        .await?;
    api.create_release("Payload", "1.0.0").await?;
    let server_before = tree_ticks(server.pid).unwrap_or(0);
    let bench_before = tree_ticks(std::process::id()).unwrap_or(0);
    let began = Instant::now();
    let task = api.deploy("Payload", "1.0.0").await?;
    api.wait_success(&task).await?;
    let wall = began.elapsed().as_secs_f64();
    let server_cpu = ticks_to_s(tree_ticks(server.pid).unwrap_or(0) - server_before);
    let agents_cpu = ticks_to_s(tree_ticks(std::process::id()).unwrap_or(0) - bench_before);
    let hooks = count_files(&d.join("agents"), "hook.out");
    progress(&format!(
        "  {wall:.2} s; server CPU {server_cpu:.2} s, agents (this process + scripts) {agents_cpu:.2} s; hook.out {hooks}/{n}"
    ));
    progress(&format!("  {}", step_spans(&api, &task).await?));
    let mut row = Row::new(
        "agents_deploy_s",
        format!("Ferry polling agents (in-process): {mb} MB to {n} targets, extract, hook"),
        wall,
        "s",
    );
    row.ratio = Some(wall / floor);
    Ok(vec![
        row,
        Row::new(
            "agents_server_cpu_per_target_s",
            "  server CPU per target",
            server_cpu / n as f64,
            "CPU-s",
        ),
        Row::new(
            "agents_agent_cpu_per_target_s",
            "  agent CPU per target (bench process and its scripts)",
            agents_cpu / n as f64,
            "CPU-s",
        ),
    ])
}
