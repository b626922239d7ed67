//! Starting and stopping a real `ferry server` process, timing how long it takes to answer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The admin API key of every bench server.
pub const API_KEY: &str = "API-FERRYBENCHKEY000000000000000";

/// How long a server may take to say where it listens before the bench gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server's start-up line says between its version and its address.
const LISTENING: &str = " server listening on ";

/// A running server; killed (SIGKILL) if dropped without `stop`.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub url: String,
    /// `x.y.z` from the "Ferry x.y.z server listening on" line.
    pub version: String,
    log_path: PathBuf,
}

/// When a start reached each point, counted from the spawn.
#[derive(Clone, Copy, Debug)]
pub struct StartTiming {
    /// The "listening on" line arrived on stdout.
    pub listening: Duration,
    /// `GET /api` answered 200.
    pub answered: Duration,
}

impl Server {
    /// Spawns `ferry server` on `data_dir`, writing its own log to `log_path`, and returns once
    /// `GET /api` has answered 200.
    pub async fn start(
        ferry: &Path,
        data_dir: &Path,
        log_path: &Path,
    ) -> anyhow::Result<(Server, StartTiming)> {
        Self::start_with_env(ferry, data_dir, log_path, &[]).await
    }

    /// `start`, with extra environment variables for the server.
    pub async fn start_with_env(
        ferry: &Path,
        data_dir: &Path,
        log_path: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<(Server, StartTiming)> {
        let log = std::fs::File::create(log_path)
            .with_context(|| format!("cannot create the server log {}", log_path.display()))?;
        let mut command = Command::new(ferry);
        command
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--polling-listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        // The server must see only the settings the bench gives it.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("FERRY_") {
                command.env_remove(name);
            }
        }
        command.env("FERRY_ADMIN_API_KEY", API_KEY);
        for (k, v) in env {
            command.env(k, v);
        }

        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", ferry.display()))?;
        let pid = child
            .id()
            .context("the server exited as soon as it was started")?;
        let stdout = child
            .stdout
            .take()
            .context("the server's stdout was not captured")?;
        let mut lines = BufReader::new(stdout).lines();
        let banner = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains(LISTENING) {
                    return Ok(Some(line));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let listening = spawned.elapsed();
        let banner = match banner {
            Ok(Ok(Some(banner))) => banner,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let _ = child.kill().await;
                bail!(
                    "the server exited before it listened; its log:\n{}",
                    read_log(log_path)
                );
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!(
                    "the server did not listen within {START_TIMEOUT:?}; its log:\n{}",
                    read_log(log_path)
                );
            }
        };
        // Keep reading stdout so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (head, tail) = banner.split_once(LISTENING).unwrap_or_default();
        let version = head.trim().trim_start_matches("Ferry ").to_string();
        let url = tail.trim().to_string();
        let address = url
            .strip_prefix("http://")
            .with_context(|| format!("the server listens on '{url}', not on http://HOST:PORT"))?
            .trim_end_matches('/')
            .to_string();
        loop {
            if probe_root(&address).await {
                break;
            }
            if spawned.elapsed() > START_TIMEOUT {
                let _ = child.kill().await;
                bail!("GET {url}/api did not answer 200 within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let answered = spawned.elapsed();
        Ok((
            Server {
                child,
                pid,
                url,
                version,
                log_path: log_path.to_path_buf(),
            },
            StartTiming {
                listening,
                answered,
            },
        ))
    }

    /// SIGTERM, then waits for a graceful exit (SIGKILL after 15 seconds).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // `kill` from the system: the workspace forbids `unsafe`, and std only sends SIGKILL.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => bail!(
                "the server stopped with {status}; its log:\n{}",
                read_log(&self.log_path)
            ),
            Ok(Err(error)) => Err(error).context("cannot wait for the server to stop"),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("the server did not stop within 15 seconds of SIGTERM and was killed")
            }
        }
    }
}

/// One `GET /api` over a fresh connection; true on a 200 answer. A raw request keeps the
/// probe's own cost (and any client-side pooling) out of the start-up figure.
async fn probe_root(address: &str) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(address).await?;
        let request = format!(
            "GET /api HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), attempt).await,
        Ok(Ok(true))
    )
}

/// The last lines of a server log, for an error message.
fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
