//! Worker pools and workers through the real server: the default pool of each space (exactly
//! one, moved by making another pool the default), pool CRUD and its 409s, worker CRUD with
//! validation and filters, a pool's workers; `ferry agent register --worker-pool` with a real
//! listening agent, and steps that run on a worker of their pool.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Server, ferry_bin};

const POOLS: &str = "/api/Spaces-1/workerpools";
const WORKERS: &str = "/api/Spaces-1/workers";

fn thumb(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn passive(name: &str, pools: &[&str], t: char) -> Value {
    json!({
        "Name": name, "WorkerPoolIds": pools,
        "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": format!("https://{name}:10933/"), "Thumbprint": thumb(t)}
    })
}

fn active(name: &str, pools: &[&str], t: char) -> Value {
    json!({
        "Name": name, "WorkerPoolIds": pools,
        "Endpoint": {"CommunicationStyle": "TentacleActive", "Uri": format!("poll://{name}/"), "Thumbprint": thumb(t)}
    })
}

fn names(v: &Value) -> Vec<String> {
    let items = v.get("Items").unwrap_or(v);
    let mut out: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn id(v: &Value) -> String {
    v["Id"].as_str().unwrap().to_string()
}

async fn workers(s: &Server, query: &str) -> Vec<String> {
    names(&s.get(&format!("{WORKERS}?{query}")).await)
}

/// Sends a request expecting `status`; returns every error line joined.
async fn refused(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: StatusCode,
) -> String {
    let (st, v) = s.request(method, path, body.clone()).await;
    assert_eq!(st, status, "{method} {path} {body:?} -> {v}");
    v["Errors"].to_string()
}

async fn defaults(s: &Server) -> Vec<String> {
    let all = s.get(&format!("{POOLS}/all")).await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|p| p["IsDefault"] == json!(true))
        .map(|p| p["Name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn worker_pools_default_crud_and_conflicts() {
    let s = Server::start();

    // The space starts with exactly one pool, the default.
    let all = s.get(&format!("{POOLS}/all")).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    let default = all[0].clone();
    assert_eq!(default["Name"], "Default Worker Pool");
    assert_eq!(default["Slug"], "default-worker-pool");
    assert_eq!(default["IsDefault"], true);
    assert_eq!(default["SpaceId"], "Spaces-1");
    assert_eq!(default["WorkerPoolType"], "StaticWorkerPool");
    assert_eq!(default["CanAddWorkers"], true);
    let default_id = id(&default);
    assert!(default_id.starts_with("WorkerPools-"), "{default}");
    assert_eq!(
        default["Links"]["Self"],
        json!(format!("{POOLS}/{default_id}"))
    );
    let page = s.get(POOLS).await;
    assert_eq!(page["ItemType"], "WorkerPool");
    assert_eq!(page["TotalResults"], 1);
    // By id, slug or name.
    for key in [
        default_id.as_str(),
        "default-worker-pool",
        "Default%20Worker%20Pool",
    ] {
        assert_eq!(
            s.get(&format!("{POOLS}/{key}")).await["Id"],
            json!(default_id)
        );
    }
    // The space root links to pools and workers.
    let home = s.get("/api/Spaces-1").await;
    assert!(home["Links"]["WorkerPools"].is_string(), "{home}");
    assert!(home["Links"]["Workers"].is_string(), "{home}");

    // Create and rename.
    let (st, builders) = s
        .request(
            "POST",
            POOLS,
            Some(json!({"Name": " Builders ", "Description": "CI boxes"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{builders}");
    assert_eq!(builders["Name"], "Builders");
    assert_eq!(builders["IsDefault"], false);
    assert_eq!(builders["WorkerPoolType"], "StaticWorkerPool");
    assert_eq!(builders["CanAddWorkers"], true);
    assert_eq!(builders["SortOrder"], 2);
    let builders_id = id(&builders);
    let mut edit = builders.clone();
    edit["Name"] = json!("Build Farm");
    let farm = s.put(&format!("{POOLS}/{builders_id}"), edit).await;
    assert_eq!(farm["Name"], "Build Farm");
    assert_eq!(farm["Slug"], "build-farm");
    assert_eq!(farm["Description"], "CI boxes");
    assert_eq!(
        names(&s.get(&format!("{POOLS}?partialName=farm")).await),
        ["Build Farm"]
    );
    assert_eq!(
        names(&s.get(&format!("{POOLS}?ids={builders_id}")).await),
        ["Build Farm"]
    );

    // Validation and unique names.
    let e = refused(
        &s,
        "POST",
        POOLS,
        Some(json!({"Name": "build farm"})),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(e.contains("Build Farm") || e.contains("build farm"), "{e}");
    let e = refused(
        &s,
        "POST",
        POOLS,
        Some(json!({"Name": "Cloud", "WorkerPoolType": "DynamicWorkerPool"})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(e.contains("WorkerPoolType"), "{e}");
    let e = refused(
        &s,
        "POST",
        POOLS,
        Some(json!({"Name": " "})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(e.contains("Name"), "{e}");
    let mut dup = farm.clone();
    dup["Name"] = json!("Default Worker Pool");
    refused(
        &s,
        "PUT",
        &format!("{POOLS}/{builders_id}"),
        Some(dup),
        StatusCode::CONFLICT,
    )
    .await;

    // Clearing the flag on the default does not leave the space without one.
    let mut keep = default.clone();
    keep["IsDefault"] = json!(false);
    assert_eq!(
        s.put(&format!("{POOLS}/{default_id}"), keep).await["IsDefault"],
        true
    );
    assert_eq!(defaults(&s).await, ["Default Worker Pool"]);

    // Moving the default: exactly one at all times.
    let mut make = farm.clone();
    make["IsDefault"] = json!(true);
    assert_eq!(
        s.put(&format!("{POOLS}/{builders_id}"), make).await["IsDefault"],
        true
    );
    assert_eq!(defaults(&s).await, ["Build Farm"]);
    assert_eq!(
        s.get(&format!("{POOLS}/{default_id}")).await["IsDefault"],
        false
    );
    let e = refused(
        &s,
        "DELETE",
        &format!("{POOLS}/{builders_id}"),
        None,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(e.contains("default"), "{e}");
    // A new pool may take the default when created.
    let edge = s
        .post(POOLS, json!({"Name": "Edge", "IsDefault": true}))
        .await;
    assert_eq!(edge["IsDefault"], true);
    assert_eq!(defaults(&s).await, ["Edge"]);
    let mut back = s.get(&format!("{POOLS}/{default_id}")).await;
    back["IsDefault"] = json!(true);
    s.put(&format!("{POOLS}/{default_id}"), back).await;
    assert_eq!(defaults(&s).await, ["Default Worker Pool"]);

    // A pool with workers cannot be deleted; without them it can.
    let w = s
        .post(WORKERS, passive("builder-1", &[&builders_id], 'a'))
        .await;
    let e = refused(
        &s,
        "DELETE",
        &format!("{POOLS}/{builders_id}"),
        None,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(e.contains("builder-1") && e.contains(&id(&w)), "{e}");
    let (st, _) = s
        .request("DELETE", &format!("{WORKERS}/{}", id(&w)), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .request("DELETE", &format!("{POOLS}/{builders_id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    refused(
        &s,
        "GET",
        &format!("{POOLS}/{builders_id}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        names(&s.get(&format!("{POOLS}/all")).await),
        ["Default Worker Pool", "Edge"]
    );

    // Audited.
    let ev = s.get(&format!("/api/events?regarding={builders_id}")).await;
    let messages: Vec<&str> = ev["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"Worker pool Build Farm was deleted"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"Worker pool Build Farm was modified"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"Worker pool Builders was created"),
        "{messages:?}"
    );

    // Every new space has its own default pool.
    let ops = s.post("/api/spaces", json!({"Name": "Ops"})).await;
    let theirs = s.get(&format!("/api/{}/workerpools/all", id(&ops))).await;
    assert_eq!(theirs.as_array().unwrap().len(), 1, "{theirs}");
    assert_eq!(theirs[0]["Name"], "Default Worker Pool");
    assert_eq!(theirs[0]["IsDefault"], true);
    assert_ne!(theirs[0]["Id"], json!(default_id));
}

#[tokio::test]
async fn workers_crud_validation_filters_and_pool_listing() {
    let s = Server::start();
    let default_id = id(&s.get(&format!("{POOLS}/Default%20Worker%20Pool")).await);
    let linux_id = id(&s.post(POOLS, json!({"Name": "Linux"})).await);

    // Create: pools by name or id, stored as ids; a worker has no environments or roles.
    let mut body = passive("w1", &["Default Worker Pool", &linux_id, "linux"], 'a');
    body["Endpoint"]["Uri"] = json!("HTTPS://W1:10933");
    body["HealthStatus"] = json!("Healthy");
    let (st, w1) = s.request("POST", WORKERS, Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{w1}");
    let w1_id = id(&w1);
    assert!(w1_id.starts_with("Workers-"), "{w1}");
    assert_eq!(w1["WorkerPoolIds"], json!([default_id, linux_id]));
    assert_eq!(w1["SpaceId"], "Spaces-1");
    assert_eq!(w1["HealthStatus"], "Unknown");
    assert_eq!(w1["Status"], "Unknown");
    assert_eq!(w1["Endpoint"]["Uri"], "https://w1:10933/");
    assert_eq!(w1["Thumbprint"], json!(thumb('A')));
    assert!(
        w1["MachinePolicyId"]
            .as_str()
            .unwrap()
            .starts_with("MachinePolicies-")
    );
    for absent in [
        "EnvironmentIds",
        "Roles",
        "TenantIds",
        "TenantedDeploymentParticipation",
    ] {
        assert!(w1.get(absent).is_none(), "{absent}: {w1}");
    }
    assert_eq!(w1["Links"]["Self"], json!(format!("{WORKERS}/{w1_id}")));

    let mut poll = active("poll-1", &["Linux"], 'b');
    poll["IsDisabled"] = json!(true);
    let p1 = s.post(WORKERS, poll).await;
    assert_eq!(p1["Status"], "Disabled");
    assert_eq!(p1["WorkerPoolIds"], json!([linux_id]));
    // A deployment target's certificate may be reused by a worker (one agent, both roles).
    let env = s.create_environment("Dev").await;
    s.post(
        "/api/Spaces-1/machines",
        json!({"Name": "t1", "EnvironmentIds": [id(&env)], "Roles": ["web"],
            "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "https://t1:10933/", "Thumbprint": thumb('c')}}),
    )
    .await;
    s.post(WORKERS, passive("w3", &["Default Worker Pool"], 'c'))
        .await;
    // Workers are not deployment targets, and the other way round.
    assert_eq!(names(&s.get("/api/Spaces-1/machines").await), ["t1"]);

    // Listing and filters.
    let page = s.get(WORKERS).await;
    assert_eq!(page["ItemType"], "Worker");
    assert_eq!(page["TotalResults"], 3);
    assert_eq!(workers(&s, "").await, ["poll-1", "w1", "w3"]);
    assert_eq!(workers(&s, "partialName=W").await, ["w1", "w3"]);
    assert_eq!(workers(&s, "name=W1").await, ["w1"]);
    assert_eq!(
        workers(&s, &format!("thumbprint={}", thumb('b'))).await,
        ["poll-1"]
    );
    assert_eq!(workers(&s, "commStyles=TentacleActive").await, ["poll-1"]);
    assert_eq!(workers(&s, "isDisabled=true").await, ["poll-1"]);
    assert_eq!(workers(&s, "isDisabled=false").await, ["w1", "w3"]);
    assert_eq!(workers(&s, "healthStatuses=Unknown").await.len(), 3);
    assert!(workers(&s, "healthStatuses=Healthy").await.is_empty());
    assert_eq!(workers(&s, &format!("ids={w1_id}")).await, ["w1"]);
    assert_eq!(
        workers(&s, &format!("workerPoolIds={linux_id}")).await,
        ["poll-1", "w1"]
    );
    let skip = s.get(&format!("{WORKERS}?skip=1&take=1")).await;
    assert_eq!(skip["Items"].as_array().unwrap().len(), 1);
    assert_eq!(skip["TotalResults"], 3);
    assert_eq!(
        names(&s.get(&format!("{WORKERS}/all")).await),
        ["poll-1", "w1", "w3"]
    );
    for key in [w1_id.as_str(), "w1"] {
        assert_eq!(s.get(&format!("{WORKERS}/{key}")).await["Id"], json!(w1_id));
    }

    // A pool's workers.
    let members = s.get(&format!("{POOLS}/{linux_id}/workers")).await;
    assert_eq!(members["ItemType"], "Worker");
    assert_eq!(names(&members), ["poll-1", "w1"]);
    assert_eq!(
        names(
            &s.get(&format!("{POOLS}/Default%20Worker%20Pool/workers"))
                .await
        ),
        ["w1", "w3"]
    );
    let paged = s.get(&format!("{POOLS}/{linux_id}/workers?take=1")).await;
    assert_eq!(paged["TotalResults"], 2);
    assert_eq!(paged["Items"].as_array().unwrap().len(), 1);

    // Validation: every problem, each naming its field.
    let mut none = passive("w9", &[], 'd');
    none["WorkerPoolIds"] = json!([]);
    let e = refused(&s, "POST", WORKERS, Some(none), StatusCode::BAD_REQUEST).await;
    assert!(e.contains("WorkerPoolIds"), "{e}");
    let mut both = passive("w9", &["Nowhere"], 'd');
    both["Endpoint"]["Thumbprint"] = json!("abc");
    let e = refused(&s, "POST", WORKERS, Some(both), StatusCode::BAD_REQUEST).await;
    assert!(e.contains("WorkerPoolIds") && e.contains("Nowhere"), "{e}");
    assert!(e.contains("Endpoint.Thumbprint"), "{e}");
    let mut bad_uri = passive("w9", &["Linux"], 'd');
    bad_uri["Endpoint"]["Uri"] = json!("http://w9/");
    let e = refused(&s, "POST", WORKERS, Some(bad_uri), StatusCode::BAD_REQUEST).await;
    assert!(e.contains("Endpoint.Uri"), "{e}");
    let mut no_style = passive("w9", &["Linux"], 'd');
    no_style["Endpoint"]["CommunicationStyle"] = json!("");
    let e = refused(&s, "POST", WORKERS, Some(no_style), StatusCode::BAD_REQUEST).await;
    assert!(e.contains("Endpoint.CommunicationStyle"), "{e}");
    let mut policy = passive("w9", &["Linux"], 'd');
    policy["MachinePolicyId"] = json!("MachinePolicies-999");
    let e = refused(&s, "POST", WORKERS, Some(policy), StatusCode::BAD_REQUEST).await;
    assert!(e.contains("MachinePolicyId"), "{e}");
    let e = refused(
        &s,
        "POST",
        WORKERS,
        Some(passive(" ", &["Linux"], 'd')),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(e.contains("Name"), "{e}");
    // Unique names and thumbprints among workers.
    let e = refused(
        &s,
        "POST",
        WORKERS,
        Some(passive("W1", &["Linux"], 'd')),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(e.contains("W1") || e.contains("w1"), "{e}");
    let e = refused(
        &s,
        "POST",
        WORKERS,
        Some(passive("w9", &["Linux"], 'a')),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(e.contains("Thumbprint") && e.contains("w1"), "{e}");

    // Update: pools change, health stays the server's, disabling shows in Status.
    let mut edit = w1.clone();
    edit["WorkerPoolIds"] = json!(["Linux"]);
    edit["HealthStatus"] = json!("Healthy");
    edit["IsDisabled"] = json!(true);
    let saved = s.put(&format!("{WORKERS}/{w1_id}"), edit).await;
    assert_eq!(saved["WorkerPoolIds"], json!([linux_id]));
    assert_eq!(saved["HealthStatus"], "Unknown");
    assert_eq!(saved["Status"], "Disabled");
    assert_eq!(
        names(&s.get(&format!("{POOLS}/{default_id}/workers")).await),
        ["w3"]
    );
    let mut steal = saved.clone();
    steal["Endpoint"]["Thumbprint"] = json!(thumb('b'));
    refused(
        &s,
        "PUT",
        &format!("{WORKERS}/{w1_id}"),
        Some(steal),
        StatusCode::CONFLICT,
    )
    .await;

    // Delete, audited.
    let (st, _) = s
        .request("DELETE", &format!("{WORKERS}/{w1_id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    refused(
        &s,
        "GET",
        &format!("{WORKERS}/{w1_id}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    let ev = s.get(&format!("/api/events?regarding={w1_id}")).await;
    let messages: Vec<&str> = ev["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "Worker w1 was deleted",
            "Worker w1 was modified",
            "Worker w1 was created"
        ]
    );
}

// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ferry(s: &Server, args: &[&str]) -> Output {
    Command::new(ferry_bin())
        .args(args)
        .env("FERRY_URL", &s.url)
        .env("FERRY_API_KEY", &s.api_key)
        .env_remove("FERRY_SPACE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A `ferry agent` registered as a worker, listening on loopback.
struct WorkerAgent {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    child: Option<Child>,
}

impl WorkerAgent {
    fn register(s: &Server, name: &str, pools: &[&str]) -> (WorkerAgent, String) {
        let tmp = tempfile::Builder::new()
            .prefix("ferry-worker-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let port = free_port().to_string();
        let mut args = vec![
            "agent",
            "register",
            "--data-dir",
            dir.to_str().unwrap(),
            "--name",
            name,
            "--listen",
            &port,
            "--public-host",
            "127.0.0.1",
            "--bind",
            "127.0.0.1",
        ];
        for p in pools {
            args.extend(["--worker-pool", p]);
        }
        let out = ferry(s, &args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "register {name}: {text}");
        (
            WorkerAgent {
                dir,
                _tmp: tmp,
                child: None,
            },
            text,
        )
    }

    fn start(&mut self) {
        let mut child = Command::new(ferry_bin())
            .args(["agent", "run", "--data-dir"])
            .arg(&self.dir)
            .env("FERRY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(self.dir.join("agent.log"))
                    .map(Stdio::from)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Ferry agent listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the worker agent did not start listening");
        self.child = Some(child);
    }

    fn scripts_started(&self) -> usize {
        std::fs::read_to_string(self.dir.join("scripts.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for WorkerAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A project with one script step run on a worker of `pool`.
async fn pool_project(s: &Server, name: &str, pool: &str, script: &str) {
    s.create_project(name).await;
    s.put(
        &format!("/api/Spaces-1/projects/{name}/deploymentprocesses"),
        json!({"Steps": [{"Name": "Build", "Actions": [{
            "Name": "Build", "ActionType": "Octopus.Script", "WorkerPoolId": pool,
            "Properties": {"Octopus.Action.Script.ScriptBody": script,
                "Octopus.Action.Script.Syntax": "Bash", "Octopus.Action.RunOnServer": "true"}}]}]}),
    )
    .await;
}

#[tokio::test]
async fn an_agent_registered_as_a_worker_runs_the_steps_of_its_pool() {
    let s = Server::start();
    let builders = id(&s.post(POOLS, json!({"Name": "Builders"})).await);

    // Neither a pool nor environment and role: refused; a pool with an environment: refused.
    let o = ferry(
        &s,
        &["agent", "register", "--name", "x", "--listen", "10933"],
    );
    assert!(!o.status.success(), "{o:?}");
    let o = ferry(
        &s,
        &[
            "agent",
            "register",
            "--name",
            "x",
            "--listen",
            "10933",
            "--worker-pool",
            "Builders",
            "--environment",
            "Dev",
        ],
    );
    assert!(!o.status.success(), "{o:?}");
    assert!(workers(&s, "").await.is_empty());

    let (mut agent, said) = WorkerAgent::register(&s, "build-1", &["Builders"]);
    assert!(said.contains("as worker Workers-"), "{said}");
    let all = s.get(&format!("{WORKERS}/all")).await;
    assert_eq!(names(&all), ["build-1"]);
    let w = &all[0];
    assert_eq!(w["WorkerPoolIds"], json!([builders]));
    assert_eq!(w["Endpoint"]["CommunicationStyle"], "TentaclePassive");
    assert!(
        w["Endpoint"]["Uri"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{w}"
    );
    assert!(
        s.get("/api/Spaces-1/machines").await["Items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Registering the same name again needs --force.
    let o = ferry(
        &s,
        &[
            "agent",
            "register",
            "--data-dir",
            agent.dir.to_str().unwrap(),
            "--name",
            "build-1",
            "--listen",
            "10999",
            "--worker-pool",
            "Builders",
        ],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("worker named 'build-1' already exists"),
        "{o:?}"
    );
    agent.start();

    // A step of the pool runs on the agent.
    s.create_environment("Dev").await;
    pool_project(&s, "Compile", &builders, "echo \"worker-pwd=$PWD\"").await;
    s.create_release("Compile", "1.0.0").await;
    let task = s.deploy("Compile", "1.0.0", "Dev").await;
    let t = s.wait_task(&task, Duration::from_secs(120)).await;
    let log = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{log}");
    assert_eq!(agent.scripts_started(), 1, "{log}");
    let pwd = log
        .lines()
        .find_map(|l| {
            l.split_once("worker-pwd=")
                .map(|(_, p)| p.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no pwd in {log}"));
    let data = std::fs::canonicalize(&agent.dir).unwrap();
    let ran = std::fs::canonicalize(&pwd).unwrap_or_else(|_| PathBuf::from(&pwd));
    assert!(
        ran.starts_with(&data),
        "ran in {pwd}, not under {}: {log}",
        data.display()
    );

    // A pool without workers fails the step, naming the pool.
    s.post(POOLS, json!({"Name": "Empty Pool"})).await;
    pool_project(&s, "Orphan", "Empty Pool", "echo never").await;
    s.create_release("Orphan", "1.0.0").await;
    let task = s.deploy("Orphan", "1.0.0", "Dev").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let log = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Failed", "{log}");
    assert!(log.contains("Empty Pool"), "{log}");
    assert_eq!(agent.scripts_started(), 1);
}

/// A step with roles that runs on a worker runs once per matching target, on the worker, with
/// each target's variables; the log names both.
#[tokio::test]
async fn a_worker_step_on_behalf_of_a_role_runs_once_per_target() {
    let s = Server::start();
    s.create_environment("Dev").await;
    let pool = id(&s.post(POOLS, json!({"Name": "Runners"})).await);
    let (mut worker, _) = WorkerAgent::register(&s, "runner-1", &["Runners"]);
    worker.start();
    // Two deployment targets with the role (never started: the step does not touch them).
    for name in ["db-a", "db-b"] {
        s.post(
            "/api/Spaces-1/machines",
            json!({"Name": name, "EnvironmentIds": ["Dev"], "Roles": ["db"],
                   "Endpoint": {"CommunicationStyle": "TentaclePassive",
                                "Uri": "https://127.0.0.1:9/", "Thumbprint": thumb(if name == "db-a" { 'A' } else { 'B' })}}),
        )
        .await;
    }
    s.create_project("Migrate").await;
    s.put(
        "/api/Spaces-1/projects/Migrate/deploymentprocesses",
        json!({"Steps": [{"Name": "Migrate", "Properties": {"Octopus.Action.TargetRoles": "db"},
            "Actions": [{"Name": "Migrate", "ActionType": "Octopus.Script", "WorkerPoolId": pool,
                "Properties": {"Octopus.Action.Script.ScriptBody": "echo \"migrating $(get_octopusvariable Octopus.Machine.Name) from $PWD\"",
                    "Octopus.Action.Script.Syntax": "Bash", "Octopus.Action.RunOnServer": "true"}}]}]}),
    )
    .await;
    s.create_release("Migrate", "1.0.0").await;
    let task = s.deploy("Migrate", "1.0.0", "Dev").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let log = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{log}");
    let wd = worker.dir.display().to_string();
    for name in ["db-a", "db-b"] {
        assert!(
            log.contains(&format!("migrating {name} from {wd}")),
            "{name}: {log}"
        );
        assert!(log.contains(&format!("{name} (on runner-1)")), "{log}");
    }
    assert_eq!(worker.scripts_started(), 2);
}
