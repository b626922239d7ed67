//! Deployment targets reached through the real `ferry agent`, listening and polling, over
//! pinned mutual TLS: registration through the CLI, scripts and packages on several agents in
//! one deployment, refused certificates in both directions (zero scripts run), key rotation,
//! an agent killed mid-script, a network cut during a script, a server restart with connected
//! agents, and health checks. Multi-host cases run agents in network namespaces.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{API_KEY, Opts, Server, ferry_bin};
use crate::netns::{Host, Net};

/// A `ferry agent` process and its data directory.
pub struct Agent {
    pub name: String,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    child: Option<Child>,
    /// Listening address printed by the agent.
    pub listening: Option<String>,
    host: Option<String>,
}

pub enum Mode<'a> {
    /// Listening on loopback, a free port.
    ListenLoopback,
    /// Listening inside a namespace on the default port.
    ListenIn(&'a Host),
    Poll,
    PollIn(&'a Host),
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(server: &Server) -> Command {
    let mut c = Command::new(ferry_bin());
    c.env("FERRY_URL", &server.url)
        .env("FERRY_API_KEY", API_KEY)
        .stdin(Stdio::null());
    c
}

impl Agent {
    /// Registers an agent with the server through `ferry agent register`.
    pub fn register(server: &Server, name: &str, env: &str, roles: &[&str], mode: Mode) -> Agent {
        let tmp = tempfile::Builder::new()
            .prefix("ferry-agent-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let mut c = cli(server);
        c.args(["agent", "register", "--data-dir"]).arg(&dir).args([
            "--name",
            name,
            "--environment",
            env,
        ]);
        for r in roles {
            c.args(["--role", r]);
        }
        let mut host = None;
        match &mode {
            Mode::ListenLoopback => {
                let port = free_port().to_string();
                c.args([
                    "--listen",
                    &port,
                    "--public-host",
                    "127.0.0.1",
                    "--bind",
                    "127.0.0.1",
                ]);
            }
            Mode::ListenIn(h) => {
                c.args(["--listen", "10933", "--public-host", &h.addr]);
                host = Some(h.name.clone());
            }
            Mode::Poll => {
                c.args(["--poll", "--polling-endpoint", &server.polling_addr()]);
            }
            Mode::PollIn(h) => {
                c.args(["--poll", "--polling-endpoint", &server.polling_addr()]);
                host = Some(h.name.clone());
            }
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "register {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Agent {
            name: name.to_string(),
            dir,
            _tmp: tmp,
            child: None,
            listening: None,
            host,
        }
    }

    /// Starts `ferry agent run` (inside its namespace, if any) and waits until it is ready.
    pub fn start(&mut self) {
        let mut c = match &self.host {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ferry_bin()]);
                c
            }
            None => Command::new(ferry_bin()),
        };
        c.args(["agent", "run", "--data-dir"])
            .arg(&self.dir)
            .env("FERRY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(self.dir.join("agent.log"))
                    .map(Stdio::from)
                    .unwrap(),
            );
        let mut child = c.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("Ferry agent listening on ") {
                    let _ = tx.send(a.trim().to_string());
                }
            }
        });
        let cfg = std::fs::read_to_string(self.dir.join("agent.json")).unwrap();
        if cfg.contains("\"Listen\"") {
            self.listening = Some(
                rx.recv_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|_| panic!("agent {} did not start listening", self.name)),
            );
        }
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `ip netns exec` execs the agent, so this pid is the agent itself.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }

    /// Whether the agent process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Scripts this agent started (one line each in `scripts.log`).
    pub fn scripts_started(&self) -> usize {
        std::fs::read_to_string(self.dir.join("scripts.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    pub fn thumbprint(&self) -> String {
        let out = Command::new(ferry_bin())
            .args(["agent", "show-thumbprint", "--data-dir"])
            .arg(&self.dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn configure(&self, args: &[&str]) {
        let out = Command::new(ferry_bin())
            .args(["agent", "configure", "--data-dir"])
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "configure: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until the server reports the polling agents as connected (a health check passes).
async fn wait_polling_connected(s: &Server, agents: &[&Agent]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for a in agents {
        loop {
            let log = a.log();
            if log.contains("connected to the server") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "agent {} did not connect: {log}",
                a.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let _ = s;
}

/// A project whose process runs `script` on targets with `role`.
async fn script_project(s: &Server, name: &str, role: &str, script: &str) {
    s.create_project(name).await;
    s.put(
        &format!("/api/Spaces-1/projects/{name}/deploymentprocesses"),
        json!({"Steps": [{"Name": "Run", "Properties": {"Octopus.Action.TargetRoles": role},
            "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]}]}),
    )
    .await;
}

async fn deploy_new_release(s: &Server, project: &str, version: &str, env: &str) -> String {
    s.create_release(project, version).await;
    s.deploy(project, version, env).await
}

async fn log_of(s: &Server, task: &str) -> String {
    s.raw(&format!("/api/tasks/{task}/raw")).await
}

fn details_children(d: &Value) -> Vec<Value> {
    d["ActivityLogs"][0]["Children"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------

/// Three listening and three polling agents in their own network namespaces, one deployment:
/// a package (extracted, configured per target) and a script, with a log section per target.
#[tokio::test]
async fn agents_in_namespaces_deploy_a_package_and_scripts() {
    let Some(net) = Net::new() else { return };
    let s = Server::start_with(Opts {
        listen: Some(format!("{}:0", net.gateway())),
        polling_listen: Some(format!("{}:0", net.gateway())),
        ..Opts::default()
    });
    s.create_environment("Production").await;
    let hosts: Vec<Host> = (0..6).map(|i| net.host(&format!("a{i}"))).collect();
    let mut agents = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let mode = if i < 3 {
            Mode::ListenIn(h)
        } else {
            Mode::PollIn(h)
        };
        let mut a = Agent::register(&s, &format!("web-{i}"), "Production", &["web"], mode);
        a.start();
        agents.push(a);
    }
    let refs: Vec<&Agent> = agents.iter().skip(3).collect();
    wait_polling_connected(&s, &refs).await;

    let work = tempfile::tempdir().unwrap();
    let pkg = crate::package_deploy::make_package(work.path(), "1.0.0");
    assert!(crate::package_deploy::push(&s, &pkg).await.is_success());
    s.create_project("Shop").await;
    s.put(
        "/api/Spaces-1/projects/Shop/deploymentprocesses",
        json!({"Steps": [
            {"Name": "Deploy web", "Properties": {"Octopus.Action.TargetRoles": "web"},
             "Actions": [{"ActionType": "Octopus.TentaclePackage", "Properties": {
                "Octopus.Action.Package.PackageId": "Acme.Web", "Octopus.Action.Package.FeedId": "feeds-builtin",
                "Octopus.Action.EnabledFeatures": "Octopus.Features.SubstituteInFiles",
                "Octopus.Action.SubstituteInFiles.TargetFiles": "config/app.template"}}]},
            {"Name": "Say", "Properties": {"Octopus.Action.TargetRoles": "web"},
             "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"on $(get_octopusvariable Octopus.Machine.Name) at $(hostname -I)\"",
                "Octopus.Action.Script.Syntax": "Bash"}}]}
        ]}),
    )
    .await;
    let vs = s.get("/api/Spaces-1/projects/Shop").await["VariableSetId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = s.get(&format!("/api/Spaces-1/variables/{vs}")).await;
    body["Variables"] = json!([{"Name": "DbHost", "Value": "db-#{Octopus.Machine.Name}"}]);
    s.put(&format!("/api/Spaces-1/variables/{vs}"), body).await;

    let task = deploy_new_release(&s, "Shop", "1.0.0", "Production").await;
    let t = s.wait_task(&task, Duration::from_secs(120)).await;
    let log = log_of(&s, &task).await;
    assert_eq!(t["State"], "Success", "{log}");
    for (i, (a, h)) in agents.iter().zip(&hosts).enumerate() {
        // Each target ran the script once per step, in its own namespace.
        assert!(
            log.contains(&format!("on web-{i} at {}", h.addr)),
            "web-{i}: {log}"
        );
        // PreDeploy.sh, Deploy.sh and PostDeploy.py from the package, then the script step.
        assert_eq!(a.scripts_started(), 4, "web-{i}");
        let installed = a
            .dir
            .join("apps/Production/Acme.Web/1.0.0/config/app.template");
        let text = std::fs::read_to_string(&installed).unwrap();
        assert_eq!(text, format!("env=Production db=db-web-{i}\n"));
    }
    // A log section per target under each step.
    let d = s.get(&format!("/api/tasks/{task}/details")).await;
    let steps = details_children(&d);
    assert_eq!(steps.len(), 2, "{d}");
    for step in &steps {
        let names: Vec<&str> = step["Children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 6, "{names:?}");
        for i in 0..6 {
            assert!(names.contains(&format!("web-{i}").as_str()), "{names:?}");
        }
    }
    drop(agents);
    drop(hosts);
    drop(net);
}
