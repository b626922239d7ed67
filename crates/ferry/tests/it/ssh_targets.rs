//! SSH targets against a real OpenSSH server: key and password accounts, a package and a
//! script, a changed host key (refused, audited, nothing run), wrong credentials in a health
//! check (said, not echoed), a session lost mid-script, and one deployment to listening,
//! polling and SSH targets in network namespaces.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::agents::{Agent, Mode};
use crate::harness::{Opts, Server};
use crate::netns::Net;
use crate::sshd::{self, Sshd};

async fn key_account(s: &Server, name: &str, user: &str, pem: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
    let a = s
        .post(
            "/api/Spaces-1/accounts",
            json!({"AccountType": "SshKeyPair", "Name": name, "Username": user,
                   "PrivateKeyFile": {"HasValue": true, "NewValue": b64}}),
        )
        .await;
    a["Id"].as_str().unwrap().to_string()
}

async fn password_account(s: &Server, name: &str, user: &str, password: &str) -> String {
    let a = s
        .post(
            "/api/Spaces-1/accounts",
            json!({"AccountType": "UsernamePassword", "Name": name, "Username": user,
                   "Password": {"HasValue": true, "NewValue": password}}),
        )
        .await;
    a["Id"].as_str().unwrap().to_string()
}

async fn ssh_machine(
    s: &Server,
    name: &str,
    env: &str,
    role: &str,
    d: &Sshd,
    account: &str,
) -> Value {
    s.post(
        "/api/Spaces-1/machines",
        json!({"Name": name, "EnvironmentIds": [env], "Roles": [role],
               "Endpoint": {"CommunicationStyle": "Ssh", "Host": d.host, "Port": d.port,
                            "Fingerprint": d.fingerprint, "AccountId": account}}),
    )
    .await
}

fn scripts_started(d: &Sshd) -> usize {
    std::fs::read_to_string(d.home.join("agent/scripts.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn project(s: &Server, name: &str, role: &str, script: &str) {
    s.create_project(name).await;
    s.put(
        &format!("/api/Spaces-1/projects/{name}/deploymentprocesses"),
        json!({"Steps": [{"Name": "Run", "Properties": {"Octopus.Action.TargetRoles": role},
            "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]}]}),
    )
    .await;
}

async fn deploy(s: &Server, project: &str, version: &str, env: &str) -> (Value, String) {
    s.create_release(project, version).await;
    let task = s.deploy(project, version, env).await;
    let t = s.wait_task(&task, Duration::from_secs(120)).await;
    let log = s.raw(&format!("/api/tasks/{task}/raw")).await;
    (t, log)
}

/// Key and password accounts; a package and a script on two SSH targets; the agent binary is
/// uploaded once per target and reused by later deployments.
#[tokio::test]
async fn ssh_targets_with_key_and_password_accounts() {
    let Some(key_host) = Sshd::start(None) else {
        return;
    };
    let Some(pw_host) = Sshd::start(None) else {
        return;
    };
    sshd::ensure_password_user();
    let s = Server::start();
    s.create_environment("Test").await;
    let key = key_account(&s, "root key", "root", &key_host.client_key).await;
    let pw = password_account(&s, "test login", sshd::PASSWORD_USER, sshd::PASSWORD).await;
    ssh_machine(&s, "ssh-key", "Test", "web", &key_host, &key).await;
    ssh_machine(&s, "ssh-pw", "Test", "web", &pw_host, &pw).await;

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
            {"Name": "Who", "Properties": {"Octopus.Action.TargetRoles": "web"},
             "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"$(get_octopusvariable Octopus.Machine.Name) is $(id -un)\"",
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
    let (t, log) = deploy(&s, "Shop", "1.0.0", "Test").await;
    assert_eq!(t["State"], "Success", "{log}");
    assert!(log.contains("ssh-key is root"), "{log}");
    assert!(
        log.contains(&format!("ssh-pw is {}", sshd::PASSWORD_USER)),
        "{log}"
    );
    for d in [&key_host, &pw_host] {
        let installed = d
            .home
            .join("agent/apps/Test/Acme.Web/1.0.0/config/app.template");
        let text = std::fs::read_to_string(&installed).unwrap();
        assert!(text.starts_with("env=Test"), "{text}");
        assert_eq!(scripts_started(d), 4);
    }
    // The secrets never appear in the log.
    assert!(!log.contains(sshd::PASSWORD));
    // A second deployment reuses the uploaded agent and the cached package.
    let (t, log) = deploy(&s, "Shop", "1.0.1", "Test").await;
    assert_eq!(t["State"], "Success", "{log}");
    assert_eq!(log.matches("is already on the target").count(), 2, "{log}");
    let bins = std::fs::read_dir(key_host.home.join("bin"))
        .unwrap()
        .count();
    assert_eq!(bins, 1);
}

/// The host key changes: the step fails at once naming both fingerprints, nothing runs, and
/// the refusal is audited.
#[tokio::test]
async fn a_changed_host_key_is_refused_and_audited() {
    let Some(mut d) = Sshd::start(None) else {
        return;
    };
    let s = Server::start();
    s.create_environment("Test").await;
    let key = key_account(&s, "root key", "root", &d.client_key).await;
    ssh_machine(&s, "box", "Test", "web", &d, &key).await;
    project(&s, "P", "web", "echo ran-#{Octopus.Release.Number}").await;
    let (t, log) = deploy(&s, "P", "1.0.0", "Test").await;
    assert_eq!(t["State"], "Success", "{log}");
    assert_eq!(scripts_started(&d), 1);

    let pinned = d.fingerprint.clone();
    d.change_host_key();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(d.dir.join("host_key.pub"))
        .output()
        .unwrap();
    let presented = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    // Drop the open session so the next step must reconnect (as after a restart).
    let _ = std::process::Command::new("pkill")
        .args([
            "-f",
            "--",
            &format!("--data-dir {}/agent", d.home.display()),
        ])
        .output();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (t, log) = deploy(&s, "P", "1.0.1", "Test").await;
    assert_eq!(t["State"], "Failed", "{log}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(log.contains(&presented) && log.contains(&pinned), "{log}");
    assert!(!log.contains("ran-1.0.1"));
    assert_eq!(scripts_started(&d), 1);
    let events = s.raw("/api/events?take=100").await;
    assert!(
        events.contains("MachineHostKeyRejected") && events.contains(&presented),
        "{events}"
    );
}

/// Wrong credentials: the health check marks the target unavailable and says why without the
/// secret; a deployment fails the same way without retrying for the whole window.
#[tokio::test]
async fn wrong_credentials_are_reported_without_the_secret() {
    let Some(d) = Sshd::start(None) else { return };
    sshd::ensure_password_user();
    let s = Server::start();
    s.create_environment("Test").await;
    let wrong = "not-the-Password-9";
    let pw = password_account(&s, "bad login", sshd::PASSWORD_USER, wrong).await;
    ssh_machine(&s, "locked", "Test", "web", &d, &pw).await;
    let t = s
        .post("/api/tasks", json!({"Name": "Health", "Arguments": {}}))
        .await;
    let task = t["Id"].as_str().unwrap().to_string();
    s.wait_task(&task, Duration::from_secs(60)).await;
    let m = s.get("/api/Spaces-1/machines/locked").await;
    assert_eq!(m["HealthStatus"], "Unavailable", "{m}");
    let summary = m["StatusSummary"].as_str().unwrap();
    assert!(summary.contains("refused the login"), "{summary}");
    let everything = format!(
        "{m}{}{}",
        s.raw(&format!("/api/tasks/{task}/raw")).await,
        s.raw("/api/events?take=100").await
    );
    assert!(!everything.contains(wrong));
    project(&s, "P", "web", "echo never").await;
    let started = Instant::now();
    let (t, log) = deploy(&s, "P", "1.0.0", "Test").await;
    assert_eq!(t["State"], "Failed");
    assert!(log.contains("refused the login"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(scripts_started(&d), 0);
}

/// The session dies mid-script (the agent on the target is killed): the step fails with a
/// clear reason.
#[tokio::test]
async fn an_ssh_session_lost_mid_script_fails_the_step_clearly() {
    let Some(d) = Sshd::start(None) else { return };
    let s = Server::start_with(Opts {
        args: vec!["--agent-retry-seconds".into(), "10".into()],
        ..Opts::default()
    });
    s.create_environment("Test").await;
    let key = key_account(&s, "root key", "root", &d.client_key).await;
    ssh_machine(&s, "box", "Test", "web", &d, &key).await;
    project(
        &s,
        "P",
        "web",
        "echo script-is-running; sleep 30; echo finished",
    )
    .await;
    s.create_release("P", "1.0.0").await;
    let task = s.deploy("P", "1.0.0", "Test").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s
        .raw(&format!("/api/tasks/{task}/raw"))
        .await
        .contains("script-is-running")
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("pkill")
        .args([
            "-9",
            "-f",
            "--",
            &format!("--data-dir {}/agent", d.home.display()),
        ])
        .output();
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let log = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Failed", "{log}");
    assert!(!log.contains("finished"));
    assert!(
        log.contains("was lost on box") || log.contains("could not be reached"),
        "{log}"
    );
}

/// One release to two listening agents, two polling agents and two SSH targets, each in its
/// own network namespace, in one deployment.
#[tokio::test]
async fn one_deployment_to_agents_and_ssh_targets_in_namespaces() {
    let Some(net) = Net::new() else { return };
    let s = Server::start_with(Opts {
        listen: Some(format!("{}:0", net.gateway())),
        polling_listen: Some(format!("{}:0", net.gateway())),
        ..Opts::default()
    });
    s.create_environment("Production").await;
    let hosts: Vec<_> = (0..6).map(|i| net.host(&format!("m{i}"))).collect();
    let mut agents = Vec::new();
    for (i, h) in hosts.iter().take(4).enumerate() {
        let mode = if i < 2 {
            Mode::ListenIn(h)
        } else {
            Mode::PollIn(h)
        };
        let mut a = Agent::register(&s, &format!("agent-{i}"), "Production", &["web"], mode);
        a.start();
        agents.push(a);
    }
    let mut sshds = Vec::new();
    for (i, h) in hosts.iter().skip(4).enumerate() {
        let Some(d) = Sshd::start(Some(h)) else {
            return;
        };
        let key = key_account(&s, &format!("key {i}"), "root", &d.client_key).await;
        ssh_machine(&s, &format!("ssh-{i}"), "Production", "web", &d, &key).await;
        sshds.push(d);
    }
    project(
        &s,
        "Mixed",
        "web",
        "echo \"hello from $(get_octopusvariable Octopus.Machine.Name) at $(hostname -I | tr -d ' ')\"",
    )
    .await;
    let (t, log) = deploy(&s, "Mixed", "1.0.0", "Production").await;
    assert_eq!(t["State"], "Success", "{log}");
    for (i, h) in hosts.iter().enumerate() {
        let name = if i < 4 {
            format!("agent-{i}")
        } else {
            format!("ssh-{}", i - 4)
        };
        assert!(
            log.contains(&format!("hello from {name} at {}", h.addr)),
            "{name}: {log}"
        );
    }
    drop(agents);
    drop(sshds);
    drop(hosts);
    drop(net);
}

/// An account scoped to environments serves only targets within them.
#[tokio::test]
async fn an_account_scoped_to_environments_serves_only_them() {
    let s = Server::start();
    s.create_environment("Test").await;
    s.create_environment("Production").await;
    let a = s
        .post(
            "/api/Spaces-1/accounts",
            json!({"AccountType": "UsernamePassword", "Name": "prod only", "Username": "u",
                   "Password": {"HasValue": true, "NewValue": "x-secret-x"}, "EnvironmentIds": ["Production"]}),
        )
        .await;
    let endpoint = json!({"CommunicationStyle": "Ssh", "Host": "10.1.2.3", "Port": 22,
        "Fingerprint": format!("SHA256:{}", "A".repeat(43)), "AccountId": a["Id"]});
    let (status, body) = s
        .request(
            "POST",
            "/api/Spaces-1/machines",
            Some(json!({"Name": "t1", "EnvironmentIds": ["Test"], "Roles": ["web"], "Endpoint": endpoint})),
        )
        .await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(
        body.to_string()
            .contains("may be used only in the environments"),
        "{body}"
    );
    let (status, body) = s
        .request(
            "POST",
            "/api/Spaces-1/machines",
            Some(json!({"Name": "t2", "EnvironmentIds": ["Production"], "Roles": ["web"], "Endpoint": endpoint})),
        )
        .await;
    assert_eq!(status.as_u16(), 201, "{body}");
}
