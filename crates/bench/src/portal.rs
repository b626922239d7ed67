//! `ferry-bench portal`: how long each portal page takes to answer on a large space.
//!
//! Seeds the same space as `ferry-bench dashboard` (1,000 projects in 100 groups, 5
//! environments, 50 releases each, 115,000 finished deployments, 100 tenants) directly through
//! `ferry-store`, starts the real server on it, and adds through the REST API what the seeded
//! projects lack for some pages: one project with a three-step process, variables and a real
//! finished deployment (whose task has a log), a package, a library variable set, a tag set, a
//! team and a user. A user who is in the administrators team signs in through the portal's
//! sign-in form; each page is then requested with that session, one at a time after warm-ups,
//! and timed from the client on loopback (send until the whole body is read), which bounds the
//! server's time from above.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::dashboard::{percentile, seed_space};
use crate::report::Metric;
use crate::server::{API_KEY, Server};

pub struct Options {
    pub ferry: std::path::PathBuf,
    pub projects: usize,
    pub samples: usize,
}

const SPACE: &str = "Spaces-1";
const USER: &str = "portal-bench";
const PASSWORD: &str = "portal-bench-password";

struct Http {
    http: reqwest::Client,
    url: String,
    cookies: String,
}

impl Http {
    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut r = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .header("X-Octopus-ApiKey", API_KEY);
        if let Some(b) = body {
            r = r
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = r.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.api(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.api(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Signs in through the portal's form and keeps the cookies.
    async fn sign_in(&mut self) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/app/sign-in", self.url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("username={USER}&password={PASSWORD}&next=%2Fapp"))
            .send()
            .await?;
        if resp.status() != reqwest::StatusCode::SEE_OTHER {
            bail!("signing in answered {}", resp.status());
        }
        let cookies: Vec<String> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::to_string)
            .collect();
        self.cookies = cookies.join("; ");
        Ok(())
    }

    /// One page: milliseconds from the client, the server's own time (`Server-Timing`) and the
    /// body size.
    async fn page(&self, path: &str) -> anyhow::Result<(f64, f64, usize)> {
        let began = Instant::now();
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .header("Cookie", &self.cookies)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let server_ms = resp
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("dur=").nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        let body = resp.bytes().await?;
        let ms = began.elapsed().as_secs_f64() * 1000.0;
        if status != reqwest::StatusCode::OK {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(2000)])
            );
        }
        Ok((ms, server_ms, body.len()))
    }
}

fn id(v: &Value) -> String {
    v["Id"].as_str().unwrap_or_default().to_string()
}

/// What the API adds to the seeded space; returns the ids the pages need.
async fn furnish(h: &Http, envs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    // A user in the administrators team, for the portal session.
    let user = h
        .post(
            "/api/users",
            json!({"Username": USER, "DisplayName": "Portal Bench", "Password": PASSWORD, "IsActive": true}),
        )
        .await?;
    let mut admins = h.get("/api/teams/teams-administrators").await?;
    if let Some(m) = admins["MemberUserIds"].as_array_mut() {
        m.push(json!(id(&user)));
    }
    h.put("/api/teams/teams-administrators", admins).await?;

    let project = h
        .post(
            &format!("/api/{SPACE}/projects"),
            json!({"Name": "Portal Bench"}),
        )
        .await?;
    let pid = id(&project);
    let steps: Vec<Value> = (1..=3)
        .map(|i| {
            json!({
                "Name": format!("Step {i}"),
                "Actions": [{
                    "ActionType": "Octopus.Script",
                    "Properties": {
                        "Octopus.Action.Script.ScriptBody": format!("for n in $(seq 1 50); do echo \"step {i} line $n\"; done"),
                        "Octopus.Action.Script.Syntax": "Bash",
                        "Octopus.Action.RunOnServer": "true"
                    }
                }]
            })
        })
        .collect();
    h.put(
        &format!("/api/{SPACE}/projects/{pid}/deploymentprocesses"),
        json!({"Steps": steps}),
    )
    .await?;
    let mut vars = h
        .get(&format!("/api/{SPACE}/projects/{pid}/variables"))
        .await?;
    let list: Vec<Value> = (0..50)
        .map(|i| {
            json!({"Name": format!("Var{i}"), "Value": format!("value {i}"), "IsSensitive": i % 10 == 0,
                   "Scope": {"Environment": [envs[i % envs.len()]]}})
        })
        .collect();
    vars["Variables"] = json!(list);
    let set = id(&vars);
    h.put(&format!("/api/{SPACE}/variables/{set}"), vars)
        .await?;
    let release = h
        .post(
            &format!("/api/{SPACE}/releases/create/v1"),
            json!({"ProjectName": "Portal Bench", "ReleaseVersion": "1.0.0"}),
        )
        .await?;
    let rid = release["ReleaseId"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| id(&release));
    let dep = h
        .post(
            &format!("/api/{SPACE}/deployments"),
            json!({"ReleaseId": rid, "EnvironmentId": envs[0]}),
        )
        .await?;
    let task = dep["TaskId"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = h.get(&format!("/api/tasks/{task}")).await?;
        if t["IsCompleted"] == json!(true) {
            if t["State"] != json!("Success") {
                bail!("the bench deployment ended {}", t["State"]);
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("the bench deployment did not finish in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lvs = h
        .post(
            &format!("/api/{SPACE}/libraryvariablesets"),
            json!({"Name": "Bench Shared", "ContentType": "Variables"}),
        )
        .await?;
    let team = h
        .post(
            &format!("/api/{SPACE}/teams"),
            json!({"Name": "Bench Testers", "MemberUserIds": [id(&user)]}),
        )
        .await?;
    let seeded_project = h
        .get(&format!("/api/{SPACE}/projects?take=1&skip=500"))
        .await?;
    let seeded_pid = seeded_project["Items"][0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let tenants = h.get(&format!("/api/{SPACE}/tenants?take=1")).await?;
    let tenant = tenants["Items"][0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let machines_lifecycle = h.get(&format!("/api/{SPACE}/lifecycles/all")).await?;
    let lifecycle = machines_lifecycle[0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(vec![
        ("pid".into(), pid),
        ("rid".into(), rid),
        ("task".into(), task),
        ("lvs".into(), id(&lvs)),
        ("team".into(), id(&team)),
        ("user".into(), id(&user)),
        ("seeded".into(), seeded_pid),
        ("tenant".into(), tenant),
        ("lifecycle".into(), lifecycle),
    ])
}

pub async fn run(options: &Options, progress: &dyn Fn(&str)) -> anyhow::Result<Vec<Metric>> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-bench-portal-")
        .tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let log = dir.path().join("server.log");
    progress("first start (bootstrap)");
    let (server, _) = Server::start(&options.ferry, &data, &log).await?;
    server.stop().await?;
    progress(&format!("seeding {} projects", options.projects));
    let (seeded, envs) = seed_space(&data, options.projects).await?;
    progress(&format!(
        "seeded {} projects, {} deployments; flushing (sync)",
        seeded.0, seeded.1
    ));
    let _ = std::process::Command::new("sync").status();

    let (server, _) = Server::start(&options.ferry, &data, &log).await?;
    let mut h = Http {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()?,
        url: server.url.trim_end_matches('/').to_string(),
        cookies: String::new(),
    };
    progress("adding a project with a deployment, a user and a team through the API");
    let ids = furnish(&h, &envs).await?;
    let get = |k: &str| {
        ids.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    h.sign_in().await?;
    let (pid, rid, task, seeded_pid) = (get("pid"), get("rid"), get("task"), get("seeded"));
    let env0 = envs.first().cloned().unwrap_or_default();
    let pages: Vec<(&str, String)> = vec![
        ("Dashboard, first page", format!("/app/{SPACE}/dashboard")),
        (
            "Dashboard, page 3",
            format!("/app/{SPACE}/dashboard?skip=40"),
        ),
        (
            "Dashboard, tenant view",
            format!("/app/{SPACE}/dashboard?view=tenants"),
        ),
        ("Projects", format!("/app/{SPACE}/projects")),
        (
            "Projects, page 20",
            format!("/app/{SPACE}/projects?skip=570"),
        ),
        ("New project form", format!("/app/{SPACE}/projects/new")),
        (
            "Project overview (50 releases)",
            format!("/app/{SPACE}/projects/{seeded_pid}"),
        ),
        (
            "Project overview (bench project)",
            format!("/app/{SPACE}/projects/{pid}"),
        ),
        (
            "Process editor",
            format!("/app/{SPACE}/projects/{pid}/process"),
        ),
        (
            "Add a script step",
            format!("/app/{SPACE}/projects/{pid}/process/new?type=script"),
        ),
        (
            "Variables (50)",
            format!("/app/{SPACE}/projects/{pid}/variables"),
        ),
        ("Channels", format!("/app/{SPACE}/projects/{pid}/channels")),
        ("Triggers", format!("/app/{SPACE}/projects/{pid}/triggers")),
        (
            "Project settings",
            format!("/app/{SPACE}/projects/{pid}/settings"),
        ),
        (
            "Releases (50)",
            format!("/app/{SPACE}/projects/{seeded_pid}/releases"),
        ),
        (
            "Create release form",
            format!("/app/{SPACE}/projects/{pid}/releases/new"),
        ),
        ("Release", format!("/app/{SPACE}/releases/{rid}")),
        (
            "Deploy form",
            format!("/app/{SPACE}/releases/{rid}/deploy?environment={env0}"),
        ),
        ("Tasks", format!("/app/{SPACE}/tasks")),
        ("Task with its log", format!("/app/{SPACE}/tasks/{task}")),
        (
            "Environments",
            format!("/app/{SPACE}/infrastructure/environments"),
        ),
        (
            "Deployment targets",
            format!("/app/{SPACE}/infrastructure/targets"),
        ),
        (
            "Add a target",
            format!("/app/{SPACE}/infrastructure/targets/new"),
        ),
        ("Workers", format!("/app/{SPACE}/infrastructure/workers")),
        (
            "Worker pools",
            format!("/app/{SPACE}/infrastructure/workerpools"),
        ),
        (
            "Machine policies",
            format!("/app/{SPACE}/infrastructure/machinepolicies"),
        ),
        ("Accounts", format!("/app/{SPACE}/infrastructure/accounts")),
        ("Packages", format!("/app/{SPACE}/library/packages")),
        (
            "Step templates",
            format!("/app/{SPACE}/library/steptemplates"),
        ),
        (
            "Library variable sets",
            format!("/app/{SPACE}/library/variablesets"),
        ),
        ("Lifecycles", format!("/app/{SPACE}/library/lifecycles")),
        ("Tag sets", format!("/app/{SPACE}/library/tagsets")),
        ("Tenants", format!("/app/{SPACE}/tenants")),
        ("Tenant", format!("/app/{SPACE}/tenants/{}", get("tenant"))),
        ("Users", "/app/configuration/users".to_string()),
        ("Teams", "/app/configuration/teams".to_string()),
        ("Team", format!("/app/configuration/teams/{}", get("team"))),
        ("Audit log", "/app/configuration/audit".to_string()),
        (
            "Subscriptions",
            format!("/app/{SPACE}/configuration/subscriptions"),
        ),
        ("Profile and API keys", "/app/profile".to_string()),
    ];
    let mut metrics = vec![Metric::new(
        "seed",
        format!(
            "Data set: {} projects, {} deployments, 100 tenants",
            seeded.0, seeded.1
        ),
        seeded.0 as f64,
        "projects",
    )];
    let mut worst: f64 = 0.0;
    for (label, path) in &pages {
        progress(&format!("{} x {path}", options.samples));
        for _ in 0..3 {
            h.page(path).await?;
        }
        let mut times = Vec::with_capacity(options.samples);
        let mut server_times = Vec::with_capacity(options.samples);
        let mut bytes = 0;
        for _ in 0..options.samples {
            let (ms, server_ms, b) = h.page(path).await?;
            times.push(ms);
            server_times.push(server_ms);
            bytes = b;
        }
        times.sort_by(f64::total_cmp);
        server_times.sort_by(f64::total_cmp);
        let p99 = percentile(&server_times, 99.0);
        worst = worst.max(p99);
        metrics.push(Metric::new(
            "page",
            format!("{label} ({:.0} KB): server p50", bytes as f64 / 1024.0),
            percentile(&server_times, 50.0),
            "ms",
        ));
        metrics.push(Metric::new("page", format!("{label}: server p99"), p99, "ms").under(100.0));
        metrics.push(Metric::new(
            "page",
            format!("{label}: client p99 (loopback, whole body)"),
            percentile(&times, 99.0),
            "ms",
        ));
    }
    metrics.push(Metric::new("worst", "Slowest page's server p99", worst, "ms").under(100.0));
    server.stop().await?;
    Ok(metrics)
}
