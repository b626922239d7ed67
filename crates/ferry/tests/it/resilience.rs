//! Cancel, restart, graceful shutdown, and `kill -9` in the middle of a deployment: a task is
//! never left stuck, the event log says what happened, and the store stays intact.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Opts, Server, wait_for_file};

#[tokio::test]
async fn cancel_stops_a_running_script() {
    let s = Server::start();
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    let pidfile = marks.path().join("pid");
    s.create_environment("Development").await;
    s.create_project("Slow").await;
    let script = format!(
        "echo $$ > {pid}\ntouch {started}\nsleep 60\necho not-reached",
        pid = pidfile.display(),
        started = started.display()
    );
    s.set_scripts("Slow", &[("Wait", &script)]).await;
    s.create_release("Slow", "1.0.0").await;
    let task = s.deploy("Slow", "1.0.0", "Development").await;
    wait_for_file(&started, Duration::from_secs(30)).await;
    let executing = s.get(&format!("/api/tasks/{task}")).await;
    assert_eq!(executing["State"], "Executing");
    assert_eq!(executing["IsCompleted"], false);
    let t0 = Instant::now();
    let after = s
        .post(&format!("/api/tasks/{task}/cancel"), json!({}))
        .await;
    assert!(
        after["State"] == "Cancelling" || after["State"] == "Canceled",
        "{after}"
    );
    if after["State"] == "Cancelling" {
        assert_eq!(after["IsCompleted"], false, "Cancelling is not completed");
    }
    let done = s.wait_task(&task, Duration::from_secs(15)).await;
    assert_eq!(done["State"], "Canceled");
    assert_eq!(done["FinishedSuccessfully"], false);
    assert!(t0.elapsed() < Duration::from_secs(10));
    // The script's process is gone.
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "script process {pid} still running"
    );
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert!(!raw.contains("not-reached"));
    let ev = s.get("/api/events?take=50").await;
    assert!(
        ev["Items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["Category"] == "TaskCanceled")
    );
}

#[tokio::test]
async fn scheduled_task_can_be_canceled_through_every_route() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Later").await;
    s.set_scripts("Later", &[("Hi", "echo hi")]).await;
    s.create_release("Later", "1.0.0").await;
    for (i, route) in [
        "/api/tasks/{id}/cancel",
        "/api/Spaces-1/tasks/{id}/cancel",
        "/api/spaces/Spaces-1/tasks/{id}/cancel",
    ]
    .iter()
    .enumerate()
    {
        let v = s
            .post(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": "Later", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Development"], "RunAt": "2099-01-01T00:00:00.000Z"}),
            )
            .await;
        let id = v["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .unwrap()
            .to_string();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = s.get(&format!("/api/tasks/{id}")).await;
        assert_eq!(
            t["State"], "Queued",
            "route {i}: a task scheduled for later waits"
        );
        let after = s.post(&route.replace("{id}", &id), json!({})).await;
        assert_eq!(after["State"], "Canceled", "route {route}");
        assert_eq!(after["IsCompleted"], true);
    }
}

#[tokio::test]
async fn restart_keeps_everything_and_sigterm_is_graceful() {
    let mut s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Keep").await;
    s.set_scripts("Keep", &[("Hi", "echo kept")]).await;
    s.create_release("Keep", "1.0.0").await;
    let task = s.deploy("Keep", "1.0.0", "Development").await;
    s.wait_task(&task, Duration::from_secs(30)).await;
    let iid = s.get("/api").await["InstallationId"].clone();
    assert_eq!(s.stop(), Some(0), "SIGTERM exits cleanly");
    s.restart(Opts::default());
    assert_eq!(s.get("/api").await["InstallationId"], iid);
    assert!(
        !s.output_text().contains("Admin password:"),
        "credentials are printed only on first start"
    );
    assert_eq!(s.get("/api/Spaces-1/projects/Keep").await["Name"], "Keep");
    let t = s.get(&format!("/api/tasks/{task}")).await;
    assert_eq!(t["State"], "Success");
    assert!(
        s.raw(&format!("/api/tasks/{task}/raw"))
            .await
            .contains("kept")
    );
    // Ids keep counting after a restart.
    let t2 = s.deploy("Keep", "1.0.0", "Development").await;
    assert_ne!(t2, task);
    assert_eq!(
        s.wait_task(&t2, Duration::from_secs(30)).await["State"],
        "Success"
    );
    // The master key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.data_dir.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn kill_9_mid_deployment_ends_the_task_with_a_reason() {
    let mut s = Server::start();
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    s.create_environment("Development").await;
    s.create_project("Crash").await;
    let script = format!("touch {}\nsleep 30\necho after-sleep", started.display());
    s.set_scripts("Crash", &[("Long", &script)]).await;
    s.create_release("Crash", "1.0.0").await;
    let task = s.deploy("Crash", "1.0.0", "Development").await;
    wait_for_file(&started, Duration::from_secs(30)).await;
    // Let the log writer commit the step's start.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.kill9();
    let t0 = Instant::now();
    s.restart(Opts::default());
    let t = s.wait_task(&task, Duration::from_secs(10)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "recovery took {:?}",
        t0.elapsed()
    );
    assert_eq!(t["State"], "Failed");
    let err = t["ErrorMessage"].as_str().unwrap();
    assert!(
        err.contains("stopped while this task was executing"),
        "{err}"
    );
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert!(
        raw.contains("stopped while this task was executing"),
        "{raw}"
    );
    assert!(!raw.contains("after-sleep"));
    // Nothing stuck: no active tasks remain; the event log says what happened.
    assert_eq!(s.get("/api/tasks?active=true").await["TotalResults"], 0);
    let ev = s.get(&format!("/api/events?regarding={task}")).await;
    assert!(
        ev["Items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["Category"] == "DeploymentFailed"
                && e["Message"].as_str().unwrap().contains("stopped")),
        "{ev}"
    );
    // The server works normally afterwards.
    s.set_scripts("Crash", &[("Quick", "echo fine")]).await;
    s.create_release("Crash", "1.0.1").await;
    let t2 = s.deploy("Crash", "1.0.1", "Development").await;
    assert_eq!(
        s.wait_task(&t2, Duration::from_secs(30)).await["State"],
        "Success"
    );
    // The store survived the kill: SQLite's integrity check passes.
    s.stop();
    let db = ferry_store::Db::open(&format!(
        "sqlite://{}",
        s.data_dir.join("ferry.db").display()
    ))
    .await
    .unwrap();
    assert_eq!(db.integrity_check().await.unwrap(), "ok");
    db.close().await;
}

#[tokio::test]
async fn unknown_database_scheme_is_refused_clearly() {
    let out = std::process::Command::new(crate::harness::ferry_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .args(["--database-url", "mysql://localhost/ferry"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown scheme") && err.contains("postgres://"),
        "{err}"
    );
    let out = std::process::Command::new(crate::harness::ferry_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env("FERRY_ADMIN_API_KEY", "API-lowercase")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FERRY_ADMIN_API_KEY"));
}

#[tokio::test]
async fn a_scheduled_deployment_starts_on_time_or_times_out() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Timed").await;
    s.set_scripts("Timed", &[("Hi", "echo on-time")]).await;
    s.create_release("Timed", "1.0.0").await;
    let now = chrono::Utc::now();
    let run_at = (now + chrono::Duration::seconds(2)).to_rfc3339();
    let v = s
        .post(
            "/api/Spaces-1/deployments/create/untenanted/v1",
            json!({"ProjectName": "Timed", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Development"], "RunAt": run_at}),
        )
        .await;
    let id = v["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.get(&format!("/api/tasks/{id}")).await["State"], "Queued");
    let t = s.wait_task(&id, Duration::from_secs(15)).await;
    assert_eq!(t["State"], "Success");
    let started = chrono::DateTime::parse_from_rfc3339(t["StartTime"].as_str().unwrap()).unwrap();
    assert!(
        started >= now + chrono::Duration::seconds(2) - chrono::Duration::milliseconds(50),
        "started early: {started}"
    );
    // A RunAt/NoRunAfter window that is over before the task can start ends TimedOut.
    let (st, body) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Timed", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Development"],
                "RunAt": "2030-01-01T00:00:00Z", "NoRunAfter": "2029-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::BAD_REQUEST, "{body}");
    let v = s
        .post(
            "/api/Spaces-1/deployments/create/untenanted/v1",
            json!({"ProjectName": "Timed", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Development"],
                "RunAt": "2020-01-01T00:00:00Z", "NoRunAfter": "2020-01-01T01:00:00+00:00"}),
        )
        .await;
    let id = v["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    let t = s.wait_task(&id, Duration::from_secs(15)).await;
    assert_eq!(t["State"], "TimedOut");
    assert!(
        t["ErrorMessage"].as_str().unwrap().contains("expiry"),
        "{t}"
    );
}
