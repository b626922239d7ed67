//! The REST calls the benchmarks make against the `ferry server` they started.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::server::API_KEY;
use crate::timefmt::parse_rfc3339_ms;

/// The environment every benchmark deploys to.
pub const ENVIRONMENT: &str = "Bench";

/// The REST API of the server under test, with the admin key.
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    task_timeout: Duration,
}

impl Api {
    pub fn new(url: &str, task_timeout: Duration) -> anyhow::Result<Api> {
        Ok(Api {
            task_timeout,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(8)
                .build()?,
            url: url.trim_end_matches('/').to_string(),
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .header("X-Octopus-ApiKey", API_KEY);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path} answered non-JSON"))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(&body)).await
    }

    pub async fn raw(&self, task: &str) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/api/tasks/{task}/raw", self.url))
            .header("X-Octopus-ApiKey", API_KEY)
            .send()
            .await?
            .text()
            .await?)
    }

    /// Polls a task until it completes; fails (with the end of its log) unless it succeeded.
    pub async fn wait_success(&self, task: &str) -> anyhow::Result<Value> {
        let began = Instant::now();
        loop {
            let t = self.get(&format!("/api/tasks/{task}")).await?;
            if t["IsCompleted"] == json!(true) {
                if t["State"] != json!("Success") {
                    let log = self.raw(task).await.unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(40).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    bail!(
                        "task {task} ended as {}; the end of its log:\n{}",
                        t["State"],
                        tail.join("\n")
                    );
                }
                return Ok(t);
            }
            if began.elapsed() > self.task_timeout {
                bail!(
                    "task {task} did not complete within {:?}",
                    self.task_timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn create_release(&self, project: &str, version: &str) -> anyhow::Result<()> {
        self.post(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": project, "ReleaseVersion": version}),
        )
        .await
        .with_context(|| format!("cannot create release {version} of {project}"))?;
        Ok(())
    }

    /// Deploys an existing release to the bench environment; returns its task id.
    pub async fn deploy(&self, project: &str, version: &str) -> anyhow::Result<String> {
        let created = self
            .post(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": project, "ReleaseVersion": version,
                       "EnvironmentNames": [ENVIRONMENT]}),
            )
            .await
            .with_context(|| format!("cannot deploy release {version} of {project}"))?;
        Ok(created["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .with_context(|| format!("the deploy call answered without a ServerTaskId: {created}"))?
            .to_string())
    }

    pub async fn project(&self, name: &str, steps: Vec<Value>) -> anyhow::Result<()> {
        self.post("/api/Spaces-1/projects", json!({"Name": name}))
            .await
            .with_context(|| format!("cannot create project {name}"))?;
        self.put(
            &format!("/api/Spaces-1/projects/{name}/deploymentprocesses"),
            json!({"Steps": steps}),
        )
        .await
        .with_context(|| format!("cannot set the process of {name}"))?;
        Ok(())
    }

    pub async fn push(&self, file: &Path) -> anyhow::Result<()> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let bytes = tokio::fs::read(file).await?;
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name);
        let form = reqwest::multipart::Form::new().part("fileToUpload", part);
        let response = self
            .http
            .post(format!("{}/api/Spaces-1/packages/raw", self.url))
            .header("X-Octopus-ApiKey", API_KEY)
            .multipart(form)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "pushing {} answered {status}: {}",
                file.display(),
                response.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// A bash step on the targets with `role`.
pub fn script_step(name: &str, role: &str, body: &str) -> Value {
    json!({"Name": name, "Properties": {"Octopus.Action.TargetRoles": role},
        "Actions": [{"Name": name, "ActionType": "Octopus.Script", "Properties": {
            "Octopus.Action.Script.ScriptBody": body, "Octopus.Action.Script.Syntax": "Bash"}}]})
}

/// Task `StartTime` to `CompletedTime`, in ms.
pub fn task_ms(task: &Value) -> anyhow::Result<f64> {
    let time = |field: &str| {
        task[field]
            .as_str()
            .and_then(parse_rfc3339_ms)
            .with_context(|| format!("the task has no readable {field}: {task}"))
    };
    Ok((time("CompletedTime")? - time("StartTime")?) as f64)
}
