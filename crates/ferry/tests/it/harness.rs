//! Starts the real `ferry` binary on port 0 in a temporary data directory and talks to it over
//! HTTP. Also: the "skip or fail" rule for suites that need a system binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

/// The admin API key every test server gets.
pub const API_KEY: &str = "API-FERRYTESTKEY0000000000000000";

/// Whether the run is CI (where a missing system binary is a failure, never a skip).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Call when a suite cannot run here: fails under CI, prints a clear skip note otherwise.
/// Returns `true` when the caller should return (skip).
pub fn skip_or_fail(suite: &str, why: &str) -> bool {
    if in_ci() {
        panic!("{suite}: {why} (CI=true: a missing system binary is a failure, not a skip)");
    }
    eprintln!("SKIPPED {suite}: {why}");
    true
}

/// Options for starting a server.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Reuse this data directory (to restart a server on the same store).
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// `--listen` (default `127.0.0.1:0`).
    pub listen: Option<String>,
    /// `--polling-listen` (default `127.0.0.1:0`).
    pub polling_listen: Option<String>,
}

/// A running `ferry server` process.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub api_key: String,
    pub data_dir: PathBuf,
    _tmp: Option<Arc<tempfile::TempDir>>,
    pub output: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Opts::default())
    }

    pub fn start_with(opts: Opts) -> Server {
        let (data_dir, tmp) = match opts.data_dir.clone() {
            Some(d) => (d, None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("ferry-it-")
                    .tempdir()
                    .unwrap();
                (t.path().to_path_buf(), Some(Arc::new(t)))
            }
        };
        let mut cmd = Command::new(ferry_bin());
        cmd.arg("server")
            .arg("--listen")
            .arg(opts.listen.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--polling-listen")
            .arg(opts.polling_listen.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--data-dir")
            .arg(&data_dir)
            .env("FERRY_ADMIN_API_KEY", API_KEY)
            .env("FERRY_LOG", "info,sqlx=warn")
            .env_remove("FERRY_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(u) = &opts.database_url {
            cmd.arg("--database-url").arg(u);
        }
        for a in &opts.args {
            cmd.arg(a);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start ferry server");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(i) = line.find("listening on ") {
                        let _ = tx.send(line[i + "listening on ".len()..].trim().to_string());
                    }
                    output.lock().unwrap().push(line);
                }
            });
        }
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "ferry server did not start; output:\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            child: Some(child),
            url,
            api_key: API_KEY.to_string(),
            data_dir,
            _tmp: tmp,
            output,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// Starts another server on the same data directory (after `stop` or `kill9`).
    pub fn restart(&mut self, opts: Opts) {
        let mut opts = opts;
        opts.data_dir = Some(self.data_dir.clone());
        let next = Server::start_with(opts);
        self.url = next.url.clone();
        self.child = Some(
            // Move the child out of `next` without dropping (and killing) it.
            {
                let mut next = next;
                let c = next.child.take().unwrap();
                self.output = next.output.clone();
                c
            },
        );
    }

    /// Waits for a line of the startup banner that starts with `label` and returns the rest.
    fn banner(&self, label: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = self
                .output
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no '{label}' line in the server output"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The polling endpoint's address (`host:port`).
    pub fn polling_addr(&self) -> String {
        self.banner("Polling:")
    }

    /// The server certificate's thumbprint agents pin.
    pub fn thumbprint(&self) -> String {
        self.banner("Thumbprint:")
    }

    pub fn output_text(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the process to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.request_with_key(method, path, body, Some(&self.api_key))
            .await
    }

    pub async fn request_with_key(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{}", self.url, path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.http.request(m, &url);
        if let Some(k) = key {
            rb = rb.header("X-Octopus-ApiKey", k);
        }
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> Value {
        let (s, v) = self.request("GET", path, None).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.request("POST", path, Some(body)).await;
        assert!(s.is_success(), "POST {path}: {s} {v}");
        v
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.request("PUT", path, Some(body)).await;
        assert!(s.is_success(), "PUT {path}: {s} {v}");
        v
    }

    pub async fn raw(&self, path: &str) -> String {
        let url = format!("{}{}", self.url, path);
        self.http
            .get(&url)
            .header("X-Octopus-ApiKey", &self.api_key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    // ---- domain helpers ------------------------------------------------------------------

    pub async fn create_environment(&self, name: &str) -> Value {
        self.post("/api/Spaces-1/environments", json!({"Name": name}))
            .await
    }

    pub async fn create_project(&self, name: &str) -> Value {
        self.post("/api/Spaces-1/projects", json!({"Name": name}))
            .await
    }

    /// Sets a project's process to the given Bash scripts, one step each.
    pub async fn set_scripts(&self, project: &str, scripts: &[(&str, &str)]) -> Value {
        let steps: Vec<Value> = scripts
            .iter()
            .map(|(name, body)| {
                json!({
                    "Name": name,
                    "Actions": [{
                        "ActionType": "Octopus.Script",
                        "Properties": {
                            "Octopus.Action.Script.ScriptBody": body,
                            "Octopus.Action.Script.Syntax": "Bash",
                            "Octopus.Action.RunOnServer": "true"
                        }
                    }]
                })
            })
            .collect();
        self.put(
            &format!("/api/Spaces-1/projects/{project}/deploymentprocesses"),
            json!({"Steps": steps}),
        )
        .await
    }

    pub async fn create_release(&self, project: &str, version: &str) -> Value {
        self.post(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": project, "ReleaseVersion": version}),
        )
        .await
    }

    /// Deploys and returns the task id.
    pub async fn deploy(&self, project: &str, version: &str, env: &str) -> String {
        let v = self
            .post(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": project, "ReleaseVersion": version, "EnvironmentNames": [env]}),
            )
            .await;
        v["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits until the task is completed; returns it.
    pub async fn wait_task(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.get(&format!("/api/tasks/{id}")).await;
            if t["IsCompleted"] == json!(true) {
                return t;
            }
            if Instant::now() > deadline {
                panic!("task {id} did not complete in {timeout:?}: {t}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the task's state is `state`.
    pub async fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.get(&format!("/api/tasks/{id}")).await;
            if t["State"] == json!(state) {
                return t;
            }
            if Instant::now() > deadline {
                panic!("task {id} did not reach {state} in {timeout:?}: {t}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for a file to appear (scripts signal progress by touching files).
pub async fn wait_for_file(p: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !p.exists() {
        if Instant::now() > deadline {
            panic!("{} did not appear in {timeout:?}", p.display());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
