//! Deployment targets reached through the real `ferry agent`, listening and polling, over
//! pinned mutual TLS: registration through the CLI, scripts and packages on several agents in
//! one deployment, refused certificates in both directions (zero scripts run), key rotation,
//! an agent killed mid-script, a network cut during a script, a server restart with connected
//! agents, and health checks. Multi-host cases run agents in network namespaces.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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

fn quick_retry() -> Opts {
    Opts {
        args: vec!["--agent-retry-seconds".into(), "3".into()],
        ..Opts::default()
    }
}

/// Polls the task's raw log until it contains `needle`.
async fn wait_log(s: &Server, task: &str, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let log = log_of(s, task).await;
        if log.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "'{needle}' not in the log: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The agent presents a certificate other than the registered one: the server refuses it
/// during the handshake, sends nothing (zero scripts), does not retry, and audits the
/// presented thumbprint.
#[tokio::test]
async fn an_agent_with_an_unregistered_certificate_is_refused_and_audited() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut a = Agent::register(&s, "rogue", "Test", &["web"], Mode::ListenLoopback);
    let registered = a.thumbprint();
    let out = Command::new(ferry_bin())
        .args(["agent", "create-identity", "--force", "--data-dir"])
        .arg(&a.dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let presented = a.thumbprint();
    assert_ne!(registered, presented);
    a.start();
    script_project(&s, "P", "web", "echo should-not-run").await;
    let started = Instant::now();
    let task = deploy_new_release(&s, "P", "1.0.0", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Failed");
    // Refused at once: a certificate mismatch is never retried.
    assert!(started.elapsed() < Duration::from_secs(20));
    let log = log_of(&s, &task).await;
    assert!(
        log.contains(&presented) && log.contains("nothing was sent"),
        "{log}"
    );
    assert!(!log.contains("should-not-run"));
    assert_eq!(a.scripts_started(), 0);
    let events = s.raw("/api/events?take=100").await;
    assert!(
        events.contains("MachineCertificateRejected") && events.contains(&presented),
        "{events}"
    );

    // A polling agent with a certificate no machine has: refused at the handshake, audited
    // once however often it retries, and it never receives work.
    let mut p = Agent::register(&s, "rogue-poll", "Test", &["poll"], Mode::Poll);
    Command::new(ferry_bin())
        .args(["agent", "create-identity", "--force", "--data-dir"])
        .arg(&p.dir)
        .output()
        .unwrap();
    let presented = p.thumbprint();
    p.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = s.raw("/api/events?take=200").await;
        if events.contains(&presented) {
            // The agent keeps retrying; the audit log records it once.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let events = s.raw("/api/events?take=200").await;
            let needle = format!("\"PresentedThumbprint\":\"{presented}\"");
            assert_eq!(events.matches(&needle).count(), 1, "{events}");
            assert!(
                p.log().matches("polling connection ended").count() >= 2,
                "{}",
                p.log()
            );
            break;
        }
        assert!(Instant::now() < deadline, "{events}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!p.log().contains("connected to the server"), "{}", p.log());
    assert_eq!(p.scripts_started(), 0);
}

/// The agents trust another server thumbprint: a listening agent refuses the server's
/// connection, a polling agent refuses to talk to the server and stops; zero scripts run.
#[tokio::test]
async fn agents_refuse_a_server_they_do_not_trust() {
    let s = Server::start_with(quick_retry());
    s.create_environment("Test").await;
    let other = "AB".repeat(32);
    let mut listening = Agent::register(&s, "l1", "Test", &["web"], Mode::ListenLoopback);
    let mut polling = Agent::register(&s, "p1", "Test", &["web"], Mode::Poll);
    for a in [&listening, &polling] {
        a.configure(&["--untrust", &s.thumbprint(), "--trust", &other]);
    }
    listening.start();
    polling.start();
    // The polling agent stops at once, naming the thumbprint it was shown.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = polling.exited() {
            break st;
        }
        assert!(Instant::now() < deadline, "{}", polling.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    assert!(polling.log().contains(&s.thumbprint()), "{}", polling.log());
    script_project(&s, "P", "web", "echo should-not-run").await;
    let task = deploy_new_release(&s, "P", "1.0.0", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Failed");
    let log = log_of(&s, &task).await;
    assert!(log.contains("could not be reached"), "{log}");
    assert!(!log.contains("should-not-run"));
    assert_eq!(listening.scripts_started(), 0);
    assert_eq!(polling.scripts_started(), 0);
    assert!(
        listening.log().contains("not trusted"),
        "{}",
        listening.log()
    );
}

/// Agents pin two server thumbprints; the server's key is replaced and they keep working.
#[tokio::test]
async fn server_key_rotation_with_two_pinned_thumbprints() {
    // A second identity, made by another server's first start.
    let next = Server::start();
    let next_tp = next.thumbprint();
    let next_dir = next.data_dir.clone();
    let polling_addr = format!("127.0.0.1:{}", free_port());
    let opts = Opts {
        polling_listen: Some(polling_addr.clone()),
        ..Opts::default()
    };
    let mut s = Server::start_with(opts.clone());
    let old_tp = s.thumbprint();
    s.create_environment("Test").await;
    let mut l = Agent::register(&s, "l1", "Test", &["web"], Mode::ListenLoopback);
    let mut p = Agent::register(&s, "p1", "Test", &["web"], Mode::Poll);
    for a in [&l, &p] {
        a.configure(&["--trust", &next_tp]);
    }
    l.start();
    p.start();
    wait_polling_connected(&s, &[&p]).await;
    script_project(&s, "P", "web", "echo ran-#{Octopus.Release.Number}").await;
    let task = deploy_new_release(&s, "P", "1.0.0", "Test").await;
    assert_eq!(
        s.wait_task(&task, Duration::from_secs(60)).await["State"],
        "Success"
    );

    // Rotate: the server restarts with the new key pair.
    s.stop();
    for f in ["server.crt.pem", "server.key.pem"] {
        std::fs::copy(next_dir.join(f), s.data_dir.join(f)).unwrap();
    }
    drop(next);
    s.restart(opts);
    assert_eq!(s.thumbprint(), next_tp);
    assert_ne!(old_tp, next_tp);
    let task = deploy_new_release(&s, "P", "1.0.1", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let log = log_of(&s, &task).await;
    assert_eq!(t["State"], "Success", "{log}");
    assert!(log.matches("ran-1.0.1").count() == 2, "{log}");
    assert_eq!(l.scripts_started(), 2);
    assert_eq!(p.scripts_started(), 2);
}

/// The agent is killed while its script runs: the step fails with a clear reason once the
/// retry window passes, and the target is not left locked.
#[tokio::test]
async fn an_agent_killed_mid_script_fails_the_step_and_frees_the_target() {
    let s = Server::start_with(quick_retry());
    s.create_environment("Test").await;
    let mut a = Agent::register(&s, "victim", "Test", &["web"], Mode::ListenLoopback);
    a.start();
    script_project(
        &s,
        "P",
        "web",
        "echo started-#{Octopus.Release.Number}; sleep 30",
    )
    .await;
    let task = deploy_new_release(&s, "P", "1.0.0", "Test").await;
    wait_log(&s, &task, "started-1.0.0", Duration::from_secs(30)).await;
    a.kill9();
    let killed = Instant::now();
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Failed");
    assert!(
        killed.elapsed() < Duration::from_secs(45),
        "{:?}",
        killed.elapsed()
    );
    let log = log_of(&s, &task).await;
    assert!(log.contains("victim could not be reached"), "{log}");

    // The agent comes back: the lost script is not run again, and new work runs.
    a.start();
    s.put(
        "/api/Spaces-1/projects/P/deploymentprocesses",
        json!({"Steps": [{"Name": "Run", "Properties": {"Octopus.Action.TargetRoles": "web"},
            "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo quick", "Octopus.Action.Script.Syntax": "Bash"}}]}]}),
    )
    .await;
    let task = deploy_new_release(&s, "P", "1.0.1", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Success", "{}", log_of(&s, &task).await);
    assert_eq!(a.scripts_started(), 2);
}

/// The server restarts while agents are connected: polling agents reconnect by themselves,
/// deployments work again, and nothing runs twice.
#[tokio::test]
async fn server_restart_with_connected_agents() {
    let opts = Opts {
        polling_listen: Some(format!("127.0.0.1:{}", free_port())),
        ..Opts::default()
    };
    let mut s = Server::start_with(opts.clone());
    s.create_environment("Test").await;
    let mut l = Agent::register(&s, "l1", "Test", &["web"], Mode::ListenLoopback);
    let mut p = Agent::register(&s, "p1", "Test", &["web"], Mode::Poll);
    l.start();
    p.start();
    wait_polling_connected(&s, &[&p]).await;
    script_project(&s, "P", "web", "echo ran").await;
    let task = deploy_new_release(&s, "P", "1.0.0", "Test").await;
    assert_eq!(
        s.wait_task(&task, Duration::from_secs(60)).await["State"],
        "Success"
    );
    s.stop();
    s.restart(opts);
    let task = deploy_new_release(&s, "P", "1.0.1", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(90)).await;
    assert_eq!(t["State"], "Success", "{}", log_of(&s, &task).await);
    assert!(p.log().matches("connected to the server").count() >= 2);
    assert_eq!(l.scripts_started(), 2);
    assert_eq!(p.scripts_started(), 2);
}

/// A 20-second network cut while scripts run on a listening and a polling agent: the
/// deployment succeeds and each script ran exactly once, its whole output kept.
#[tokio::test]
async fn a_network_cut_during_a_script_loses_nothing_and_runs_once() {
    let Some(net) = Net::new() else { return };
    let s = Server::start_with(Opts {
        listen: Some(format!("{}:0", net.gateway())),
        polling_listen: Some(format!("{}:0", net.gateway())),
        ..Opts::default()
    });
    s.create_environment("Test").await;
    let (h1, h2) = (net.host("cut-l"), net.host("cut-p"));
    let mut l = Agent::register(&s, "l1", "Test", &["web"], Mode::ListenIn(&h1));
    let mut p = Agent::register(&s, "p1", "Test", &["web"], Mode::PollIn(&h2));
    l.start();
    p.start();
    wait_polling_connected(&s, &[&p]).await;
    script_project(
        &s,
        "P",
        "web",
        "echo begin-$(get_octopusvariable Octopus.Machine.Name); for i in $(seq 1 25); do echo tick-$i; sleep 1; done; echo end-$(get_octopusvariable Octopus.Machine.Name)",
    )
    .await;
    let task = deploy_new_release(&s, "P", "1.0.0", "Test").await;
    wait_log(&s, &task, "begin-l1", Duration::from_secs(30)).await;
    wait_log(&s, &task, "begin-p1", Duration::from_secs(30)).await;
    h1.cut();
    h2.cut();
    tokio::time::sleep(Duration::from_secs(20)).await;
    h1.heal();
    h2.heal();
    let t = s.wait_task(&task, Duration::from_secs(150)).await;
    let log = log_of(&s, &task).await;
    assert_eq!(t["State"], "Success", "{log}");
    for who in ["l1", "p1"] {
        assert!(log.contains(&format!("end-{who}")), "{log}");
    }
    // Every line exactly once per target, none lost or repeated across the reconnect.
    for i in 1..=25 {
        assert_eq!(
            log.matches(&format!("tick-{i}\n")).count(),
            2,
            "tick-{i}: {log}"
        );
    }
    assert_eq!(l.scripts_started(), 1);
    assert_eq!(p.scripts_started(), 1);
    drop((l, p, h1, h2, net));
}

/// Health checks set Healthy, HasWarnings, Unhealthy and Unavailable; a project that skips
/// unavailable targets deploys to the rest, one that does not fails naming the target.
#[tokio::test]
async fn health_checks_and_unavailable_targets() {
    let s = Server::start_with(quick_retry());
    s.create_environment("Test").await;
    let mut ok = Agent::register(&s, "fine", "Test", &["web"], Mode::ListenLoopback);
    let mut warn = Agent::register(&s, "warn", "Test", &["web"], Mode::Poll);
    let mut sick = Agent::register(&s, "sick", "Test", &["web"], Mode::ListenLoopback);
    let _offline = Agent::register(&s, "offline", "Test", &["web"], Mode::Poll);
    ok.start();
    warn.start();
    sick.start();
    wait_polling_connected(&s, &[&warn]).await;
    // The default policy runs a script: it fails on "sick" and warns on "warn".
    let mut policy = s.get("/api/Spaces-1/machinepolicies/all").await[0].clone();
    let id = policy["Id"].as_str().unwrap().to_string();
    policy["MachineHealthCheckPolicy"]["BashHealthCheckPolicy"] = json!({"RunType": "Inline",
        "ScriptBody": "n=$(get_octopusvariable Octopus.Machine.Name)\necho checking $n\n[ \"$n\" = sick ] && exit 3\n[ \"$n\" = warn ] && echo 'low on coffee' >&2\nexit 0"});
    s.put(&format!("/api/Spaces-1/machinepolicies/{id}"), policy)
        .await;

    let t = s
        .post("/api/tasks", json!({"Name": "Health", "Arguments": {}}))
        .await;
    let task = t["Id"].as_str().unwrap().to_string();
    let done = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(done["State"], "Success");
    let health = |name: &str| {
        let name = name.to_string();
        let s = &s;
        async move { s.get(&format!("/api/Spaces-1/machines/{name}")).await }
    };
    assert_eq!(health("fine").await["HealthStatus"], "Healthy");
    let w = health("warn").await;
    assert_eq!(w["HealthStatus"], "HasWarnings", "{w}");
    assert!(
        w["StatusSummary"]
            .as_str()
            .unwrap()
            .contains("low on coffee")
    );
    let k = health("sick").await;
    assert_eq!(k["HealthStatus"], "Unhealthy", "{k}");
    assert!(k["StatusSummary"].as_str().unwrap().contains("exit code 3"));
    let o = health("offline").await;
    assert_eq!(o["HealthStatus"], "Unavailable", "{o}");
    assert_eq!(o["Status"], "Offline");
    assert_eq!(
        health("fine").await["Endpoint"]["TentacleVersionDetails"]["Version"],
        env!("CARGO_PKG_VERSION")
    );
    let list = s
        .get("/api/Spaces-1/machines?healthStatuses=Unavailable,Unhealthy")
        .await;
    assert_eq!(list["TotalResults"], 2, "{list}");

    // Without skipping, the offline target fails the deployment, named.
    script_project(
        &s,
        "P",
        "web",
        "echo ran-on-$(get_octopusvariable Octopus.Machine.Name)",
    )
    .await;
    let task = deploy_new_release(&s, "P", "1.0.0", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let log = log_of(&s, &task).await;
    assert_eq!(t["State"], "Failed", "{log}");
    assert!(log.contains("offline could not be reached"), "{log}");
    // Skipping unavailable and unhealthy targets: the deployment runs on the other two.
    let mut p = s.get("/api/Spaces-1/projects/P").await;
    p["ProjectConnectivityPolicy"]["SkipMachineBehavior"] = json!("SkipUnavailableMachines");
    p["ProjectConnectivityPolicy"]["ExcludeUnhealthyTargets"] = json!(true);
    let pid = p["Id"].as_str().unwrap().to_string();
    s.put(&format!("/api/Spaces-1/projects/{pid}"), p).await;
    let task = deploy_new_release(&s, "P", "1.0.1", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let log = log_of(&s, &task).await;
    assert_eq!(t["State"], "Success", "{log}");
    assert!(
        log.contains("ran-on-fine") && log.contains("ran-on-warn"),
        "{log}"
    );
    assert!(
        log.contains("Skipping offline") && log.contains("Skipping sick"),
        "{log}"
    );
}

/// A rolling window of one runs the step's targets one after another; two deployments to the
/// same target wait for each other (one deployment at a time per target) unless bypassed.
#[tokio::test]
async fn rolling_window_and_one_deployment_per_target() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::register(&s, &format!("r{i}"), "Test", &["web"], Mode::ListenLoopback))
        .collect();
    for a in &mut agents {
        a.start();
    }
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display().to_string();
    // Each run notes its start and end; with a window of 1 no two runs overlap.
    let body = format!(
        "n=$(get_octopusvariable Octopus.Machine.Name); echo \"start $n $(date +%s%N)\" >> {m}/#{{Octopus.Project.Name}}; sleep 0.3; echo \"end $n $(date +%s%N)\" >> {m}/#{{Octopus.Project.Name}}"
    );
    s.create_project("Rolling").await;
    s.put(
        "/api/Spaces-1/projects/Rolling/deploymentprocesses",
        json!({"Steps": [{"Name": "Run", "Properties": {"Octopus.Action.TargetRoles": "web", "Octopus.Action.MaxParallelism": "1"},
            "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": body, "Octopus.Action.Script.Syntax": "Bash"}}]}]}),
    )
    .await;
    let task = deploy_new_release(&s, "Rolling", "1.0.0", "Test").await;
    assert_eq!(
        s.wait_task(&task, Duration::from_secs(60)).await["State"],
        "Success"
    );
    let lines = std::fs::read_to_string(marks.path().join("Rolling")).unwrap();
    let kinds: Vec<&str> = lines
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["start", "end", "start", "end", "start", "end"],
        "{lines}"
    );

    // Two projects deploying to the same targets at once: the second waits on the mutex.
    script_project(&s, "A", "web", "sleep 1; echo a-done").await;
    script_project(&s, "B", "web", "echo b-done").await;
    s.create_release("A", "1.0.0").await;
    s.create_release("B", "1.0.0").await;
    let ta = s.deploy("A", "1.0.0", "Test").await;
    wait_log(&s, &ta, "Bash Environment", Duration::from_secs(30)).await;
    let tb = s.deploy("B", "1.0.0", "Test").await;
    let (a, b) = (
        s.wait_task(&ta, Duration::from_secs(60)).await,
        s.wait_task(&tb, Duration::from_secs(60)).await,
    );
    assert_eq!(
        (a["State"].as_str(), b["State"].as_str()),
        (Some("Success"), Some("Success"))
    );
    let log_b = log_of(&s, &tb).await;
    assert!(
        log_b.contains("Waiting for another deployment to finish"),
        "{log_b}"
    );
}

/// Canceling a deployment stops the script on the agent (its whole process group).
#[tokio::test]
async fn canceling_a_deployment_stops_the_script_on_the_agent() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut a = Agent::register(&s, "c1", "Test", &["web"], Mode::ListenLoopback);
    a.start();
    let marker = a.dir.join("survived");
    script_project(
        &s,
        "P",
        "web",
        &format!(
            "echo script-is-running; (sleep 5; touch {}) & sleep 30",
            marker.display()
        ),
    )
    .await;
    let task = deploy_new_release(&s, "P", "1.0.0", "Test").await;
    wait_log(&s, &task, "script-is-running", Duration::from_secs(30)).await;
    s.post(&format!("/api/tasks/{task}/cancel"), json!({}))
        .await;
    let t = s.wait_task(&task, Duration::from_secs(20)).await;
    assert_eq!(t["State"], "Canceled");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !marker.exists(),
        "the script's background child survived the cancel"
    );
    assert_eq!(a.scripts_started(), 1);
}

fn random_package(dir: &std::path::Path, version: &str, note: &str) -> PathBuf {
    let src = dir.join(format!("delta-src-{version}"));
    std::fs::create_dir_all(&src).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(src.join("blob.bin"), data).unwrap();
    std::fs::write(src.join("note.txt"), note).unwrap();
    let out = dir.join(format!("Delta.App.{version}.zip"));
    ferry_packages::archive::pack(&src, &out, ferry_packages::filename::PackageFormat::Zip)
        .unwrap();
    out
}

/// A new version of a package that changed a little moves as an rsync delta against the
/// version already on the target, and the installed files are the new ones.
#[tokio::test]
async fn a_changed_package_moves_as_a_delta() {
    let s = Server::start();
    s.create_environment("Test").await;
    let mut a = Agent::register(&s, "d1", "Test", &["web"], Mode::ListenLoopback);
    a.start();
    let work = tempfile::tempdir().unwrap();
    s.create_project("Delta").await;
    s.put(
        "/api/Spaces-1/projects/Delta/deploymentprocesses",
        json!({"Steps": [{"Name": "Deploy", "Properties": {"Octopus.Action.TargetRoles": "web"},
            "Actions": [{"ActionType": "Octopus.TentaclePackage", "Properties": {
                "Octopus.Action.Package.PackageId": "Delta.App", "Octopus.Action.Package.FeedId": "feeds-builtin"}}]}]}),
    )
    .await;
    let v1 = random_package(work.path(), "1.0.0", "first");
    assert!(crate::package_deploy::push(&s, &v1).await.is_success());
    let task = deploy_new_release(&s, "Delta", "1.0.0", "Test").await;
    assert_eq!(
        s.wait_task(&task, Duration::from_secs(60)).await["State"],
        "Success"
    );
    let v2 = random_package(work.path(), "1.0.1", "second");
    let full = std::fs::metadata(&v2).unwrap().len();
    assert!(crate::package_deploy::push(&s, &v2).await.is_success());
    let task = deploy_new_release(&s, "Delta", "1.0.1", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let log = log_of(&s, &task).await;
    assert_eq!(t["State"], "Success", "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("as a delta of"))
        .unwrap_or_else(|| panic!("no delta transfer: {log}"));
    let sent: u64 = line
        .split("as a delta of ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent * 20 < full, "sent {sent} of {full}: {line}");
    let note = std::fs::read_to_string(a.dir.join("apps/Test/Delta.App/1.0.1/note.txt")).unwrap();
    assert_eq!(note, "second");
}
