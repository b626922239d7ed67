//! `ferry-bench dashboard`: the latency of `GET /api/{space}/dashboard` on a large space.
//!
//! A real `ferry server` starts once on a new data directory (first-start bootstrap) and stops.
//! The bench then seeds its SQLite database directly through `ferry-store` (the REST API
//! would take hours for this much history): P projects in P/10 project groups, 5 environments,
//! 50 releases per project, each release deployed to some environments (every release to the
//! first, every second to the second, …; 115 deployments per project, all finished, the newest
//! of the last environment failed for every seventh project so that there are previous items),
//! and 100 tenants, each connected to 20 of the tenanted projects (every tenth project) in all
//! environments with two deployments per cell. The untenanted cells are computed per project by
//! the store's rebuild (`Tx::rebuild_dashboard_project`, what deleting a release runs); the
//! tenanted deployments go through the call the API makes when it queues one
//! (`Tx::dashboard_deployment_queued`). The server
//! is then started again on that database and each request below is timed from the client
//! (send until the whole body is read), one at a time, after warm-up requests.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_domain::time::format_ms;
use ferry_domain::{Channel, Deployment, Environment, Lifecycle, Project, ProjectGroup, Release};
use ferry_store::{DashboardQueued, Db, DocRow, TaskRow, Tx, name_key};
use serde_json::{Value, json};

use crate::report::Metric;
use crate::server::{API_KEY, Server};

pub struct Options {
    pub ferry: std::path::PathBuf,
    pub projects: usize,
    pub samples: usize,
    /// Keep the seeded data directory (and print where it is) instead of removing it.
    pub keep: bool,
}

const ENVIRONMENTS: usize = 5;
const RELEASES: usize = 50;
const TENANTS: usize = 100;
/// Tenanted projects each tenant is connected to.
const TENANT_PROJECTS: usize = 20;
const SPACE: &str = "Spaces-1";
/// A fixed clock for the seeded history: one minute per deployment step.
const T0: i64 = 1_764_000_000_000;

/// What was seeded, for the table.
#[derive(Default)]
struct Seeded {
    projects: usize,
    groups: usize,
    releases: usize,
    deployments: usize,
    cells: usize,
    tenants: usize,
}

struct Seeder {
    tx: Option<Tx>,
    seeded: Seeded,
    clock: i64,
}

impl Seeder {
    fn tx(&mut self) -> anyhow::Result<&mut Tx> {
        self.tx.as_mut().context("the seeding transaction is gone")
    }

    /// Commits what was written so far and begins the next transaction.
    async fn commit(&mut self, db: &Db) -> anyhow::Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        self.tx = Some(db.begin().await?);
        Ok(())
    }

    async fn id(&mut self, collection: &str) -> anyhow::Result<(String, i64)> {
        let seq = self.tx()?.next_seq(collection).await?;
        Ok((format!("{collection}-{seq}"), seq))
    }

    async fn doc(
        &mut self,
        collection: &str,
        id: &str,
        owner: &str,
        name: &str,
        slug: &str,
        sort_order: i64,
        refs: (&str, &str),
        seq: i64,
        body: String,
    ) -> anyhow::Result<()> {
        let clock = self.clock;
        self.tx()?
            .insert_doc(&DocRow {
                id: id.to_string(),
                collection: collection.to_string(),
                space_id: SPACE.to_string(),
                owner_id: owner.to_string(),
                name: name.to_string(),
                name_key: name_key(name),
                slug: slug.to_string(),
                sort_order,
                ref1: refs.0.to_string(),
                ref2: refs.1.to_string(),
                seq,
                body,
                created_at: clock,
                updated_at: clock,
            })
            .await?;
        Ok(())
    }

    /// A finished deployment of `release` with its task and its dashboard cell.
    async fn deploy(
        &mut self,
        project: &Project,
        release: &Release,
        env: &str,
        tenant: Option<&str>,
        state: &str,
        record_cell: bool,
    ) -> anyhow::Result<()> {
        self.clock += 60_000;
        let (id, seq) = self.id("Deployments").await?;
        let (task_id, tseq) = self.id("ServerTasks").await?;
        let d = Deployment {
            id: id.clone(),
            space_id: SPACE.to_string(),
            name: format!("Deploy to {env}"),
            project_id: project.id.clone(),
            release_id: release.id.clone(),
            channel_id: release.channel_id.clone(),
            environment_id: env.to_string(),
            tenant_id: tenant.map(str::to_string),
            task_id: task_id.clone(),
            deployment_process_id: release.project_deployment_process_snapshot_id.clone(),
            manifest_variable_set_id: format!("variableset-{id}"),
            created: format_ms(self.clock),
            deployed_by: "admin".to_string(),
            deployed_by_id: "Users-1".to_string(),
            ..Deployment::default()
        };
        self.doc(
            "Deployments",
            &id,
            &project.id,
            &id,
            "",
            0,
            (env, &release.id),
            seq,
            serde_json::to_string(&d)?,
        )
        .await?;
        let failed = state != "Success";
        let clock = self.clock;
        self.tx()?
            .insert_task(&TaskRow {
                id: task_id.clone(),
                seq: tseq,
                space_id: SPACE.to_string(),
                name: "Deploy".to_string(),
                description: format!(
                    "Deploy {} release {} to {env}",
                    project.name, release.version
                ),
                state: state.to_string(),
                arguments: json!({"DeploymentId": id}).to_string(),
                project_id: Some(project.id.clone()),
                environment_id: Some(env.to_string()),
                tenant_id: tenant.map(str::to_string),
                deployment_id: Some(id.clone()),
                release_id: Some(release.id.clone()),
                queue_time: clock,
                queue_time_expiry: None,
                start_time: Some(clock + 100),
                completed_time: Some(clock + 20_000),
                last_updated: clock + 20_000,
                error_message: if failed {
                    "The step failed: exit code 1".to_string()
                } else {
                    String::new()
                },
                has_warnings_or_errors: i64::from(failed),
                lease_owner: None,
                lease_expires_at: None,
                epoch: 1,
                attempts: 1,
                queue_after: clock,
                cancel_requested: 0,
                created_by: "admin".to_string(),
            })
            .await?;
        if !record_cell {
            self.seeded.deployments += 1;
            return Ok(());
        }
        let clock = self.clock;
        self.tx()?
            .dashboard_deployment_queued(&DashboardQueued {
                space_id: SPACE.to_string(),
                project_id: project.id.clone(),
                environment_id: env.to_string(),
                tenant_id: tenant.unwrap_or("").to_string(),
                deployment_id: id,
                task_id,
                task_seq: tseq,
                release_id: release.id.clone(),
                release_version: release.version.clone(),
                channel_id: release.channel_id.clone(),
                created: clock,
            })
            .await?;
        self.seeded.deployments += 1;
        Ok(())
    }
}

/// Seeds the space; returns what was written and the ids the requests use.
async fn seed(db: &Db, projects: usize) -> anyhow::Result<(Seeded, Vec<String>, Vec<String>)> {
    let mut s = Seeder {
        tx: Some(db.begin().await?),
        seeded: Seeded::default(),
        clock: T0,
    };
    let mut envs = Vec::new();
    for e in 0..ENVIRONMENTS {
        let (id, seq) = s.id("Environments").await?;
        let name = format!("Bench Env {}", e + 1);
        let env = Environment {
            id: id.clone(),
            space_id: SPACE.to_string(),
            name: name.clone(),
            slug: name.to_lowercase().replace(' ', "-"),
            sort_order: 100 + e as i64,
            ..Environment::default()
        };
        s.doc(
            "Environments",
            &id,
            "",
            &name,
            &env.slug,
            env.sort_order,
            ("", ""),
            seq,
            serde_json::to_string(&env)?,
        )
        .await?;
        envs.push(id);
    }
    // A lifecycle without phases: every environment, in order.
    let (lifecycle_id, lseq) = s.id("Lifecycles").await?;
    let lifecycle = Lifecycle {
        id: lifecycle_id.clone(),
        space_id: SPACE.to_string(),
        name: "Bench Lifecycle".to_string(),
        slug: "bench-lifecycle".to_string(),
        ..Lifecycle::default()
    };
    s.doc(
        "Lifecycles",
        &lifecycle_id,
        "",
        &lifecycle.name,
        &lifecycle.slug,
        0,
        ("", ""),
        lseq,
        serde_json::to_string(&lifecycle)?,
    )
    .await?;

    let mut groups = Vec::new();
    for g in 0..projects.div_ceil(10) {
        let (id, seq) = s.id("ProjectGroups").await?;
        let group = ProjectGroup {
            id: id.clone(),
            space_id: SPACE.to_string(),
            name: format!("Bench Group {g:04}"),
            slug: format!("bench-group-{g:04}"),
            description: format!("Projects {}0 to {}9", g, g),
            ..ProjectGroup::default()
        };
        s.doc(
            "ProjectGroups",
            &id,
            "",
            &group.name,
            &group.slug,
            0,
            ("", ""),
            seq,
            serde_json::to_string(&group)?,
        )
        .await?;
        groups.push(id);
    }
    s.seeded.groups = groups.len();

    let mut all_projects: Vec<Project> = Vec::new();
    let mut tenanted: Vec<(Project, Vec<Release>)> = Vec::new();
    for p in 0..projects {
        let (id, seq) = s.id("Projects").await?;
        let name = format!("Bench Project {p:04}");
        let project = Project {
            id: id.clone(),
            space_id: SPACE.to_string(),
            name: name.clone(),
            slug: name.to_lowercase().replace(' ', "-"),
            description: "A project seeded by ferry-bench dashboard".to_string(),
            project_group_id: groups[p / 10].clone(),
            lifecycle_id: lifecycle_id.clone(),
            deployment_process_id: format!("deploymentprocess-{id}"),
            variable_set_id: format!("variableset-{id}"),
            tenanted_deployment_mode: if p % 10 == 0 {
                "TenantedOrUntenanted".to_string()
            } else {
                "Untenanted".to_string()
            },
            ..Project::default()
        };
        s.doc(
            "Projects",
            &id,
            "",
            &name,
            &project.slug,
            0,
            (&project.project_group_id, &lifecycle_id),
            seq,
            serde_json::to_string(&project)?,
        )
        .await?;
        let (channel_id, cseq) = s.id("Channels").await?;
        let channel = Channel {
            id: channel_id.clone(),
            space_id: SPACE.to_string(),
            project_id: id.clone(),
            name: "Default".to_string(),
            slug: "default".to_string(),
            is_default: true,
            ..Channel::default()
        };
        s.doc(
            "Channels",
            &channel_id,
            &id,
            "Default",
            "default",
            0,
            ("", ""),
            cseq,
            serde_json::to_string(&channel)?,
        )
        .await?;
        let mut releases = Vec::new();
        for r in 0..RELEASES {
            s.clock += 60_000;
            let (rid, rseq) = s.id("Releases").await?;
            let release = Release {
                id: rid.clone(),
                space_id: SPACE.to_string(),
                project_id: id.clone(),
                channel_id: channel_id.clone(),
                version: format!("1.0.{r}"),
                assembled: format_ms(s.clock),
                project_deployment_process_snapshot_id: format!("deploymentprocess-{id}-s-{rseq}"),
                project_variable_set_snapshot_id: format!("variableset-{id}-s-{rseq}"),
                ..Release::default()
            };
            s.doc(
                "Releases",
                &rid,
                &id,
                &release.version,
                "",
                0,
                (&channel_id, ""),
                rseq,
                serde_json::to_string(&release)?,
            )
            .await?;
            s.seeded.releases += 1;
            for (e, env) in envs.iter().enumerate() {
                if r % (e + 1) != 0 {
                    continue;
                }
                let newest = r + e + 1 >= RELEASES;
                let state = if newest && e == ENVIRONMENTS - 1 && p % 7 == 0 {
                    "Failed"
                } else {
                    "Success"
                };
                s.deploy(&project, &release, env, None, state, false)
                    .await?;
            }
            releases.push(release);
        }
        // The project's untenanted cells, from its deployments: the store's rebuild (what
        // deleting a release runs) gives the cells the queue path would, in far fewer
        // statements. Tenanted deployments below go through the queue path.
        let written = s.tx()?.rebuild_dashboard_project(&project.id).await?;
        s.seeded.cells += usize::try_from(written).unwrap_or(0);
        if p % 10 == 0 {
            tenanted.push((project.clone(), releases));
        }
        all_projects.push(project);
        if p % 50 == 49 {
            s.commit(db).await?;
        }
    }
    s.seeded.projects = all_projects.len();

    // Tenants, each connected to TENANT_PROJECTS tenanted projects in every environment, with an
    // older and a newer deployment per cell.
    for t in 0..TENANTS {
        let (id, seq) = s.id("Tenants").await?;
        let name = format!("Bench Tenant {t:03}");
        let connected: Vec<&(Project, Vec<Release>)> = tenanted
            .iter()
            .enumerate()
            .filter(|(j, _)| {
                tenanted.len() <= TENANT_PROJECTS
                    || (j + t) % (tenanted.len() / TENANT_PROJECTS).max(1) == 0
            })
            .map(|(_, x)| x)
            .take(TENANT_PROJECTS)
            .collect();
        let mut pe = serde_json::Map::new();
        for (p, _) in &connected {
            pe.insert(p.id.clone(), json!(envs));
        }
        let body = json!({
            "Id": id, "SpaceId": SPACE, "Name": name, "Description": null,
            "ClonedFromTenantId": null, "IsDisabled": false,
            "TenantTags": [format!("Region/R{}", t % 4)],
            "ProjectEnvironments": Value::Object(pe),
        });
        s.doc(
            "Tenants",
            &id,
            "",
            &name,
            &name.to_lowercase().replace(' ', "-"),
            0,
            ("", ""),
            seq,
            serde_json::to_string(&body)?,
        )
        .await?;
        for (project, releases) in &connected {
            for env in &envs {
                for release in releases.iter().rev().take(2).rev() {
                    s.deploy(project, release, env, Some(&id), "Success", true)
                        .await?;
                }
                s.seeded.cells += 1;
            }
        }
        if t % 10 == 9 {
            s.commit(db).await?;
        }
    }
    s.seeded.tenants = TENANTS;
    if let Some(tx) = s.tx.take() {
        tx.commit().await?;
    }
    let project_ids = all_projects.iter().map(|p| p.id.clone()).collect();
    Ok((s.seeded, project_ids, envs))
}

/// Seeds the space in the server's database at `data` (the server must be stopped); returns
/// (projects, deployments) and the environment ids. Used by `ferry-bench portal`.
pub(crate) async fn seed_space(
    data: &std::path::Path,
    projects: usize,
) -> anyhow::Result<((usize, usize), Vec<String>)> {
    let db = Db::open(&format!("sqlite://{}", data.join("ferry.db").display())).await?;
    db.migrate().await?;
    let (seeded, _, envs) = seed(&db, projects).await?;
    db.close().await;
    Ok(((seeded.projects, seeded.deployments), envs))
}

/// Percentile `p` (0–100) of sorted samples, nearest rank.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Times `samples` GETs of `path` (after warm-ups); returns sorted milliseconds, the body size
/// and the numbers of items and previous items of the last answer.
async fn measure(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    samples: usize,
) -> anyhow::Result<(Vec<f64>, usize, usize, usize)> {
    let get = || async {
        let began = Instant::now();
        let response = http
            .get(format!("{url}{path}"))
            .header("X-Octopus-ApiKey", API_KEY)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let body = response.bytes().await?;
        let ms = began.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok::<_, anyhow::Error>((ms, body))
    };
    for _ in 0..5 {
        get().await?;
    }
    let mut times = Vec::with_capacity(samples);
    let mut last = None;
    for _ in 0..samples {
        let (ms, body) = get().await?;
        times.push(ms);
        last = Some(body);
    }
    times.sort_by(f64::total_cmp);
    let last = last.context("no samples")?;
    let v: Value = serde_json::from_slice(&last)?;
    let count = |k: &str| v[k].as_array().map_or(0, Vec::len);
    Ok((times, last.len(), count("Items"), count("PreviousItems")))
}

pub async fn run(options: &Options, progress: &dyn Fn(&str)) -> anyhow::Result<Vec<Metric>> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-bench-dashboard-")
        .tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let log = dir.path().join("server.log");
    progress("first start (bootstrap)");
    let (server, _) = Server::start(&options.ferry, &data, &log).await?;
    server.stop().await?;

    progress(&format!(
        "seeding {} projects x {ENVIRONMENTS} environments x {RELEASES} releases, {TENANTS} tenants",
        options.projects
    ));
    let began = Instant::now();
    let db = Db::open(&format!("sqlite://{}", data.join("ferry.db").display())).await?;
    db.migrate().await?;
    let (seeded, projects, envs) = seed(&db, options.projects).await?;
    db.close().await;
    let seed_s = began.elapsed().as_secs_f64();
    let db_mb = std::fs::metadata(data.join("ferry.db")).map_or(0, |m| m.len()) as f64 / 1e6;
    progress(&format!(
        "seeded {} deployments, {} cells in {seed_s:.1} s ({db_mb:.0} MB)",
        seeded.deployments, seeded.cells
    ));
    // Let the kernel write the seeded database out before timing anything: otherwise the
    // first scenario competes with writing back hundreds of megabytes of dirty pages.
    progress("flushing the seeded database to disk (sync)");
    let synced = std::process::Command::new("sync").status();
    if !synced.is_ok_and(|s| s.success()) {
        progress("sync failed; the first scenario may include write-back");
    }

    let (server, _) = Server::start(&options.ferry, &data, &log).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = server.url.trim_end_matches('/').to_string();
    let groups = seeded.groups + 1; // and the bootstrap's Default Project Group
    let dynamic_projects: Vec<&str> = projects
        .iter()
        .step_by(97)
        .take(10)
        .map(String::as_str)
        .collect();
    let middle = groups / 2;
    let scenarios: Vec<(&'static str, String, String, Option<f64>)> = vec![
        (
            "first",
            "GET /dashboard, first page (default: 20 project groups, 30 tenants)".to_string(),
            format!("/api/{SPACE}/dashboard"),
            Some(50.0),
        ),
        (
            "middle",
            format!("GET /dashboard?skip={middle}, a middle page"),
            format!("/api/{SPACE}/dashboard?skip={middle}"),
            Some(50.0),
        ),
        (
            "tenants",
            "GET /dashboard?tenantSkip=60, other tenant rows".to_string(),
            format!("/api/{SPACE}/dashboard?tenantSkip=60"),
            Some(50.0),
        ),
        (
            "dynamic",
            "GET /dashboard/dynamic, 10 projects x 2 environments, previous".to_string(),
            format!(
                "/api/{SPACE}/dashboard/dynamic?projects={}&environments={},{}&includePrevious=true",
                dynamic_projects.join(","),
                envs[0],
                envs[ENVIRONMENTS - 1]
            ),
            Some(50.0),
        ),
        (
            "page30",
            "GET /dashboard?take=30, a larger page (30 project groups)".to_string(),
            format!("/api/{SPACE}/dashboard?take=30"),
            None,
        ),
        (
            "all",
            "GET /dashboard?take=all&tenantTake=100: everything at once".to_string(),
            format!("/api/{SPACE}/dashboard?take=2147483647&tenantTake={TENANTS}"),
            None,
        ),
    ];
    let mut metrics = vec![
        Metric::new("seed_s", format!(
            "Seeding: {} projects, {} groups, {} releases, {} deployments, {} cells, {} tenants",
            seeded.projects, seeded.groups, seeded.releases, seeded.deployments, seeded.cells, seeded.tenants
        ), seed_s, "s").under(120.0),
        Metric::new("db_mb", "Database size after seeding", db_mb, "MB"),
    ];
    for (key, label, path, goal) in scenarios {
        let samples = if key == "all" {
            options.samples.min(30)
        } else {
            options.samples
        };
        progress(&format!("{samples} x {path}"));
        let (times, bytes, items, previous) = measure(&http, &url, &path, samples).await?;
        let mut p99 = Metric::new(key, format!("{label}: p99"), percentile(&times, 99.0), "ms");
        if let Some(g) = goal {
            p99 = p99.under(g);
        }
        metrics.push(Metric::new(
            key,
            format!("{label}: p50"),
            percentile(&times, 50.0),
            "ms",
        ));
        metrics.push(Metric::new(
            key,
            format!("{label}: p95"),
            percentile(&times, 95.0),
            "ms",
        ));
        metrics.push(p99);
        metrics.push(Metric::new(
            key,
            format!(
                "  its answer: {items} items, {previous} previous items, {:.2} MB",
                bytes as f64 / 1e6
            ),
            bytes as f64 / 1e6,
            "MB",
        ));
    }
    server.stop().await?;

    // The same first page with the cells read on every request, as right after a deployment
    // changed state (what is kept between requests is then read again).
    let (server, _) = Server::start_with_env(
        &options.ferry,
        &data,
        &log,
        &[("FERRY_DASHBOARD_NO_CELL_CACHE", "1")],
    )
    .await?;
    let url = server.url.trim_end_matches('/').to_string();
    let path = format!("/api/{SPACE}/dashboard");
    progress(&format!(
        "{} x {path} (cells read every time)",
        options.samples
    ));
    let (times, _, _, _) = measure(&http, &url, &path, options.samples).await?;
    let label = "GET /dashboard, first page, cells read on every request (as after a change)";
    for (suffix, p) in [("p50", 50.0), ("p95", 95.0)] {
        metrics.push(Metric::new(
            "uncached",
            format!("{label}: {suffix}"),
            percentile(&times, p),
            "ms",
        ));
    }
    metrics.push(Metric::new(
        "uncached",
        format!("{label}: p99"),
        percentile(&times, 99.0),
        "ms",
    ));
    server.stop().await?;
    if options.keep {
        let kept = dir.keep();
        progress(&format!(
            "kept the data directory {}",
            kept.join("data").display()
        ));
    }
    Ok(metrics)
}
