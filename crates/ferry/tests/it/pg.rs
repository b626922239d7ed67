//! A throwaway PostgreSQL cluster made from the system's binaries (`initdb`, `pg_ctl`), and the
//! PostgreSQL end-to-end test: two `ferry server` nodes started at once on one fresh database,
//! then one deployment that must run exactly once although both nodes poll the same queue.
//!
//! Each cluster lives in its own temporary directory (data, Unix socket and log) and listens on
//! a free loopback port, so several tests can each start one. As root the binaries run as the
//! `postgres` user (PostgreSQL refuses to run as root). `initdb` runs once per binary directory:
//! its result is kept under the target directory as a template, and each cluster copies it,
//! which makes a start take a fraction of a second.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Opts, Server, skip_or_fail};

/// Where to look for the server binaries, besides `FERRY_PG_BINDIR`, `pg_config --bindir` and
/// `PATH`: Debian and Ubuntu keep one directory per major version.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// A running temporary cluster. Dropping it stops the server and removes its directory.
pub struct PgCluster {
    bin: PathBuf,
    runner: Runner,
    dir: tempfile::TempDir,
    port: u16,
}

/// How the PostgreSQL binaries are run: directly, or as the `postgres` user when we are root.
#[derive(Clone, Debug)]
enum Runner {
    Direct,
    AsUser {
        tool: PathBuf,
        user: String,
        uid: u32,
        gid: u32,
    },
}

impl Runner {
    fn command(&self, program: &Path) -> Command {
        match self {
            Runner::Direct => Command::new(program),
            Runner::AsUser { tool, user, .. } => {
                let mut c = Command::new(tool);
                if tool.ends_with("sudo") {
                    c.args(["-n", "-u", user, "--"]);
                } else {
                    c.args(["-u", user, "--"]);
                }
                c.arg(program);
                c
            }
        }
    }

    /// Hands a directory we created to the user the server runs as.
    fn give(&self, dir: &Path) {
        if let Runner::AsUser { uid, gid, .. } = self {
            std::os::unix::fs::chown(dir, Some(*uid), Some(*gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
        }
    }
}

/// Finds a directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bindir() -> Option<PathBuf> {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Ok(d) = std::env::var("FERRY_PG_BINDIR") {
        let d = PathBuf::from(d);
        return complete(&d).then_some(d);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && complete(&d) {
            return Some(d);
        }
    }
    // Newest major version first.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_PG_ROOT)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    // On PATH, possibly through symlinks (e.g. /usr/local/bin/initdb).
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("initdb"))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|d| complete(d))
}

/// Finds how to run the binaries: as root through `runuser` (or `sudo`) as `postgres`.
fn find_runner() -> Result<Runner, String> {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if !root {
        return Ok(Runner::Direct);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let (uid, gid) = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or("running as root, but there is no 'postgres' user to run PostgreSQL as")?;
    let tool = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser", "/usr/bin/sudo"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("running as root, but neither runuser nor sudo is installed to run PostgreSQL as 'postgres'")?;
    Ok(Runner::AsUser {
        tool,
        user: "postgres".to_string(),
        uid,
        gid,
    })
}

fn run_ok(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Serialises template creation within this test process; other processes are handled by
/// building the template under a unique name and renaming it into place.
static TEMPLATE_LOCK: Mutex<()> = Mutex::new(());

/// Returns a data directory made by `initdb` for these binaries, making it on first use.
fn template(bin: &Path, runner: &Runner) -> PathBuf {
    let _guard = TEMPLATE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let key: String = bin
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pg-templates");
    let ready = cache.join(&key);
    if ready.join("PG_VERSION").is_file() {
        return ready;
    }
    std::fs::create_dir_all(&cache).unwrap();
    // initdb runs as `postgres`, which may not be able to enter the target directory: make the
    // cluster in /tmp, then copy it next to the cache and rename it into place.
    let scratch = tempfile::Builder::new()
        .prefix("ferry-pg-initdb-")
        .tempdir()
        .unwrap();
    runner.give(scratch.path());
    let data = scratch.path().join("data");
    run_ok(
        "initdb",
        runner
            .command(&bin.join("initdb"))
            .current_dir(scratch.path())
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]),
    );
    let staging = cache.join(format!("{key}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    run_ok(
        "copy the initdb template",
        Command::new("cp").arg("-a").arg(&data).arg(&staging),
    );
    if std::fs::rename(&staging, &ready).is_err() {
        // Another test process won the race; its template is as good as ours.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        ready.join("PG_VERSION").is_file(),
        "no template at {}",
        ready.display()
    );
    ready
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

impl PgCluster {
    /// Starts a cluster with a database named `ferry`. Returns `None` (after saying the suite was
    /// skipped, or failing under `CI=true`) when the PostgreSQL binaries are not installed.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = find_bindir() else {
            skip_or_fail(
                "postgres",
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via FERRY_PG_BINDIR, \
                 pg_config, /usr/lib/postgresql/*/bin or PATH; install them with \
                 `apt-get install -y postgresql`",
            );
            return None;
        };
        let runner = match find_runner() {
            Ok(r) => r,
            Err(why) => {
                skip_or_fail("postgres", &why);
                return None;
            }
        };
        let started = Instant::now();
        let template = template(&bin, &runner);
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir()
            .unwrap();
        runner.give(dir.path());
        let data = dir.path().join("data");
        run_ok(
            "copy the initdb template",
            Command::new("cp").arg("-a").arg(&template).arg(&data),
        );
        runner.give(&data);
        let mut cluster = PgCluster {
            bin,
            runner,
            dir,
            port: 0,
        };
        // The port is free when picked but another process may take it before the server
        // binds it; then pick another.
        let mut last_error = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    cluster.create_database("ferry");
                    eprintln!(
                        "postgres: cluster on 127.0.0.1:{} in {} ready in {:?}",
                        cluster.port,
                        cluster.dir.path().display(),
                        started.elapsed()
                    );
                    return Some(cluster);
                }
                Err(e) => last_error = e,
            }
        }
        panic!("PostgreSQL did not start:\n{last_error}");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .runner
            .command(&self.bin.join("pg_ctl"))
            .current_dir(self.dir.path())
            .arg("start")
            .arg("-w")
            .args(["-t", "60"])
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(&options)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run pg_ctl: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        // A failed start may leave a postmaster behind; make sure it is gone before retrying.
        self.stop();
        let _ = std::fs::remove_file(&log);
        Err(format!(
            "pg_ctl start on port {} failed ({}): {}\n{}\n{log_text}",
            self.port,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// A URL for database `db` (trust authentication, so no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database (the name is a plain identifier: letters, digits, underscores).
    pub fn create_database(&self, name: &str) {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database name {name:?} is not a plain identifier"
        );
        run_ok(
            &format!("CREATE DATABASE {name}"),
            Command::new(self.bin.join("psql"))
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                ])
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-d", "postgres", "-c"])
                .arg(format!("CREATE DATABASE \"{name}\"")),
        );
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), killing it if that fails.
    fn stop(&self) {
        let stopped = self
            .runner
            .command(&self.bin.join("pg_ctl"))
            .current_dir(self.dir.path())
            .args(["stop", "-m", "immediate", "-w", "-t", "10", "-D"])
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if stopped {
            return;
        }
        let pid = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if let Some(pid) = pid.filter(|p| *p > 0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
        // The TempDir removes the directory (root may remove the postgres user's files).
    }
}

/// Counts the lines of a file (0 when it does not exist).
fn line_count(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Two `ferry server` nodes start at the same moment on one fresh PostgreSQL database (both
/// migrate and bootstrap concurrently), then a deployment made through one node runs exactly once
/// although both nodes' workers poll the same queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_postgres_database() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.url("ferry");
    let started = Instant::now();
    let start = |url: String| {
        tokio::task::spawn_blocking(move || {
            Server::start_with(Opts {
                database_url: Some(url),
                ..Opts::default()
            })
        })
    };
    let (a, b) = tokio::join!(start(url.clone()), start(url.clone()));
    let (a, b) = (a.unwrap(), b.unwrap());
    eprintln!("postgres: two nodes up in {:?}", started.elapsed());

    // Both nodes serve the same store, bootstrapped once.
    let root_a = a.get("/api").await;
    let root_b = b.get("/api").await;
    assert_eq!(root_a["InstallationId"], root_b["InstallationId"]);
    let spaces = b.get("/api/spaces/all").await;
    assert_eq!(
        spaces.as_array().map(Vec::len),
        Some(1),
        "one Default space, not one per node: {spaces}"
    );
    let nodes: Vec<String> = [&a, &b]
        .iter()
        .map(|s| {
            let out = s.output_text();
            out.lines()
                .find_map(|l| l.trim().strip_prefix("Node:").map(|n| n.trim().to_string()))
                .unwrap_or_default()
        })
        .collect();
    assert_ne!(
        nodes[0], nodes[1],
        "the two servers must be different nodes"
    );
    let admin_created = [&a, &b]
        .iter()
        .filter(|s| s.output_text().contains("created the user 'admin'"))
        .count();
    assert_eq!(admin_created, 1, "exactly one node creates the admin user");

    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs.txt");
    a.create_environment("Production").await;
    let project = a.create_project("Shared Queue").await;
    let project_id = project["Id"].as_str().unwrap().to_string();
    // Made through node A, deployed through node B: both see the same store.
    a.set_scripts(
        &project_id,
        &[(
            "Record the run",
            &format!("echo \"ran as pid $$\" >> '{}'", runs.display()),
        )],
    )
    .await;
    b.create_release("Shared Queue", "1.0.0").await;
    let task_id = b.deploy("Shared Queue", "1.0.0", "Production").await;
    let task = a.wait_task(&task_id, Duration::from_secs(60)).await;
    assert_eq!(task["State"], json!("Success"), "task: {task}");
    assert_eq!(line_count(&runs), 1, "the script ran more than once");
    // Both workers poll every second; give the other node time to (wrongly) claim it again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        line_count(&runs),
        1,
        "the script ran again after the task ended"
    );
    let seen_by_b = b.get(&format!("/api/tasks/{task_id}")).await;
    assert_eq!(seen_by_b["State"], json!("Success"));
    eprintln!(
        "postgres: two-node deployment done in {:?}",
        started.elapsed()
    );
}
