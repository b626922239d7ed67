//! Typed async client for Ferry's Octopus Deploy-compatible REST API.
//!
//! Used by the `ferry` command line and by tests. [`Client`] has generic JSON calls
//! (`get_json`, `post_json`, `put_json`, `delete`, `get_text`) and typed helpers for the
//! resources the CLI works with. Every failure is a [`ClientError`]: the server refused
//! ([`ClientError::Api`], with the Octopus error body as it came), could not be reached
//! ([`ClientError::Transport`]) or sent something unreadable ([`ClientError::Decode`]).
//!
//! Paths are absolute API paths (`/api/Spaces-1/projects/all`); names put into a path
//! segment go through [`url::segment`].

mod error;
pub mod model;
pub mod packages;
pub mod process;
pub mod tasklog;
pub mod url;
pub mod variables;

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

pub use error::ClientError;
use model::{
    CreateRelease, DeployRelease, DeploymentsCreated, Environment, Machine, Named, NewEnvironment,
    NewProject, Project, ReleaseCreated, Resource, ServerTask, Space,
};
use url::segment;

/// How long one request may take before the server counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An API key; its `Debug` output never shows the key.
#[derive(Clone)]
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// A connection to one server, authenticated with an optional API key.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: Option<ApiKey>,
}

impl Client {
    /// `base_url` is the server's address, e.g. `http://127.0.0.1:8080` (a trailing `/api`
    /// is accepted). The key is sent as `X-Octopus-ApiKey`; an empty key counts as none.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Client, ClientError> {
        let base = url::normalize_base(base_url)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| {
                ClientError::Transport(format!("cannot start HTTP client: {error}"))
            })?;
        let api_key = api_key.filter(|key| !key.trim().is_empty()).map(ApiKey);
        Ok(Client {
            http,
            base,
            api_key,
        })
    }

    /// The normalised server address requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Whether an API key will be sent.
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    // ---- generic calls ----

    /// `GET path` and parse the JSON answer.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.send(Method::GET, path, None).await?;
        self.read_json(Method::GET, path, response).await
    }

    /// `POST path` with a JSON body and parse the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let response = self.send(Method::POST, path, Some(body)).await?;
        self.read_json(Method::POST, path, response).await
    }

    /// `PUT path` with a JSON body and parse the JSON answer.
    pub async fn put_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let response = self.send(Method::PUT, path, Some(body)).await?;
        self.read_json(Method::PUT, path, response).await
    }

    /// `DELETE path`; an empty answer is `Value::Null`.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.send(Method::DELETE, path, None).await?;
        self.read_json(Method::DELETE, path, response).await
    }

    /// `GET path` and return the body as text (task logs, `…/raw`).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let response = self.send(Method::GET, path, None).await?;
        response
            .text()
            .await
            .map_err(|error| self.transport_error(&error))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .http
            .request(method, url::join(&self.base, path))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(ApiKey(key)) = &self.api_key {
            request = request.header("X-Octopus-ApiKey", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(ClientError::from_error_body(
            status.as_u16(),
            status.canonical_reason(),
            &body,
        ))
    }

    async fn read_json(
        &self,
        method: Method,
        path: &str,
        response: reqwest::Response,
    ) -> Result<Value, ClientError> {
        let text = response
            .text()
            .await
            .map_err(|error| self.transport_error(&error))?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|error| {
            ClientError::Decode(format!(
                "the answer to {method} {path} is not JSON: {error}"
            ))
        })
    }

    fn transport_error(&self, error: &reqwest::Error) -> ClientError {
        if error.is_timeout() {
            return ClientError::Transport(format!(
                "the server at {} did not answer in time",
                self.base
            ));
        }
        // reqwest's own text ("error sending request") hides the cause; the innermost
        // source says what happened ("Connection refused (os error 111)").
        let mut cause: &dyn std::error::Error = error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        ClientError::Transport(format!(
            "the server could not be reached at {}: {cause}",
            self.base
        ))
    }

    // ---- spaces ----

    /// `GET /api/spaces/all`.
    pub async fn spaces(&self) -> Result<Vec<Resource<Space>>, ClientError> {
        Resource::list_from_json(self.get_json("/api/spaces/all").await?)
    }

    /// Finds a space by name (case-insensitive) or id, as the Octopus CLI does.
    pub async fn resolve_space(&self, name_or_id: &str) -> Result<Resource<Space>, ClientError> {
        let spaces = self.spaces().await?;
        pick_by_name_or_id(spaces, name_or_id, |space| (&space.name, &space.id)).map_err(|known| {
            ClientError::NotFound(format!(
                "no space is named or has the id '{name_or_id}'; spaces on this server: {known}"
            ))
        })
    }

    // ---- environments ----

    /// `GET /api/{space}/environments/all`.
    pub async fn environments(
        &self,
        space_id: &str,
    ) -> Result<Vec<Resource<Environment>>, ClientError> {
        let path = format!("/api/{}/environments/all", segment(space_id));
        Resource::list_from_json(self.get_json(&path).await?)
    }

    /// `POST /api/{space}/environments`.
    pub async fn create_environment(
        &self,
        space_id: &str,
        environment: &NewEnvironment,
    ) -> Result<Resource<Environment>, ClientError> {
        let path = format!("/api/{}/environments", segment(space_id));
        Resource::from_json(self.post_json(&path, &to_value(environment)?).await?)
    }

    // ---- deployment targets ----

    /// `GET /api/{space}/machines`, every page at once, with any of `roles` and in any of
    /// `environment_ids` (an empty list does not filter).
    pub async fn machines(
        &self,
        space_id: &str,
        roles: &[String],
        environment_ids: &[String],
    ) -> Result<Vec<Resource<Machine>>, ClientError> {
        let mut path = format!("/api/{}/machines?skip=0&take=2147483647", segment(space_id));
        let join = |values: &[String]| {
            values
                .iter()
                .map(|v| segment(v))
                .collect::<Vec<_>>()
                .join(",")
        };
        if !roles.is_empty() {
            path.push_str(&format!("&roles={}", join(roles)));
        }
        if !environment_ids.is_empty() {
            path.push_str(&format!("&environmentIds={}", join(environment_ids)));
        }
        match self.get_json(&path).await? {
            Value::Object(mut page) => match page.remove("Items") {
                Some(items) => Resource::list_from_json(items),
                None => Err(ClientError::Decode(format!(
                    "the answer to GET {path} has no Items list"
                ))),
            },
            other => Err(ClientError::Decode(format!(
                "expected a page of machines from GET {path} but the server sent {}",
                model::json_kind(&other)
            ))),
        }
    }

    /// `GET /api/{space}/machines/{idOrName}`; a 404 means no such machine.
    pub async fn machine(
        &self,
        space_id: &str,
        id_or_name: &str,
    ) -> Result<Resource<Machine>, ClientError> {
        let path = format!(
            "/api/{}/machines/{}",
            segment(space_id),
            segment(id_or_name)
        );
        Resource::from_json(self.get_json(&path).await?)
    }

    /// `PUT /api/{space}/machines/{id}` with the whole machine document.
    pub async fn put_machine(
        &self,
        space_id: &str,
        machine_id: &str,
        machine: &Value,
    ) -> Result<Resource<Machine>, ClientError> {
        let path = format!(
            "/api/{}/machines/{}",
            segment(space_id),
            segment(machine_id)
        );
        Resource::from_json(self.put_json(&path, machine).await?)
    }

    /// `DELETE /api/{space}/machines/{id}`.
    pub async fn delete_machine(
        &self,
        space_id: &str,
        machine_id: &str,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/api/{}/machines/{}",
            segment(space_id),
            segment(machine_id)
        );
        self.delete(&path).await.map(|_| ())
    }

    // ---- projects ----

    /// `GET /api/{space}/projects/all`.
    pub async fn projects(&self, space_id: &str) -> Result<Vec<Resource<Project>>, ClientError> {
        let path = format!("/api/{}/projects/all", segment(space_id));
        Resource::list_from_json(self.get_json(&path).await?)
    }

    /// `GET /api/{space}/projects/{idOrSlugOrName}`; a 404 means no such project.
    pub async fn project(
        &self,
        space_id: &str,
        id_slug_or_name: &str,
    ) -> Result<Resource<Project>, ClientError> {
        let path = format!(
            "/api/{}/projects/{}",
            segment(space_id),
            segment(id_slug_or_name)
        );
        Resource::from_json(self.get_json(&path).await?)
    }

    /// `POST /api/{space}/projects`.
    pub async fn create_project(
        &self,
        space_id: &str,
        project: &NewProject,
    ) -> Result<Resource<Project>, ClientError> {
        let path = format!("/api/{}/projects", segment(space_id));
        Resource::from_json(self.post_json(&path, &to_value(project)?).await?)
    }

    /// Finds a project group by name (case-insensitive) or id.
    pub async fn find_project_group(
        &self,
        space_id: &str,
        name_or_id: &str,
    ) -> Result<Resource<Named>, ClientError> {
        self.find_named(space_id, "projectgroups", "project group", name_or_id)
            .await
    }

    /// Finds a lifecycle by name (case-insensitive) or id.
    pub async fn find_lifecycle(
        &self,
        space_id: &str,
        name_or_id: &str,
    ) -> Result<Resource<Named>, ClientError> {
        self.find_named(space_id, "lifecycles", "lifecycle", name_or_id)
            .await
    }

    async fn find_named(
        &self,
        space_id: &str,
        collection: &str,
        kind: &str,
        name_or_id: &str,
    ) -> Result<Resource<Named>, ClientError> {
        let items = self.list_all(space_id, collection).await?;
        let items = items
            .into_iter()
            .map(Resource::<Named>::from_json)
            .collect::<Result<Vec<_>, _>>()?;
        pick_by_name_or_id(items, name_or_id, |item| (&item.name, &item.id)).map_err(|known| {
            ClientError::NotFound(format!(
                "no {kind} is named or has the id '{name_or_id}'; {kind}s in this space: {known}"
            ))
        })
    }

    /// Every item of a space collection: `…/all` (a bare array), or the paged list when the
    /// server has no `…/all` route for it.
    async fn list_all(&self, space_id: &str, collection: &str) -> Result<Vec<Value>, ClientError> {
        let all = format!("/api/{}/{collection}/all", segment(space_id));
        match self.get_json(&all).await {
            Ok(Value::Array(items)) => return Ok(items),
            Ok(_) | Err(ClientError::Api { status: 404, .. }) => {}
            Err(error) => return Err(error),
        }
        let paged = format!(
            "/api/{}/{collection}?skip=0&take=2147483647",
            segment(space_id)
        );
        match self.get_json(&paged).await? {
            Value::Object(mut page) => match page.remove("Items") {
                Some(Value::Array(items)) => Ok(items),
                _ => Err(ClientError::Decode(format!(
                    "the answer to GET {paged} has no Items list"
                ))),
            },
            other => Err(ClientError::Decode(format!(
                "expected a page of {collection} from GET {paged} but the server sent {}",
                model::json_kind(&other)
            ))),
        }
    }

    // ---- deployment process ----

    /// `GET /api/{space}/projects/{projectId}/deploymentprocesses`, as JSON so that an edit
    /// can send back every field unchanged.
    pub async fn deployment_process(
        &self,
        space_id: &str,
        project_id: &str,
    ) -> Result<Value, ClientError> {
        self.get_json(&process_path(space_id, project_id)).await
    }

    /// `PUT /api/{space}/projects/{projectId}/deploymentprocesses`.
    pub async fn put_deployment_process(
        &self,
        space_id: &str,
        project_id: &str,
        process: &Value,
    ) -> Result<Value, ClientError> {
        self.put_json(&process_path(space_id, project_id), process)
            .await
    }

    // ---- variables ----

    /// `GET /api/{space}/projects/{project}/variables`: the project's variable set, as JSON so
    /// that an edit can send back every field unchanged.
    pub async fn project_variables(
        &self,
        space_id: &str,
        project_id: &str,
    ) -> Result<Value, ClientError> {
        let path = format!(
            "/api/{}/projects/{}/variables",
            segment(space_id),
            segment(project_id)
        );
        self.get_json(&path).await
    }

    /// `PUT /api/{space}/variables/{id}`: replaces the whole set. Sensitive variables sent with
    /// `Value: null` keep their values.
    pub async fn put_variable_set(
        &self,
        space_id: &str,
        set_id: &str,
        set: &Value,
    ) -> Result<Value, ClientError> {
        let path = format!("/api/{}/variables/{}", segment(space_id), segment(set_id));
        self.put_json(&path, set).await
    }

    /// `GET /api/{space}/projects/{project}/variables/explain?…`.
    pub async fn explain_variables(
        &self,
        space_id: &str,
        project_id: &str,
        context: &variables::ExplainContext,
    ) -> Result<Value, ClientError> {
        let path = format!(
            "/api/{}/projects/{}/variables/explain{}",
            segment(space_id),
            segment(project_id),
            context.query()
        );
        self.get_json(&path).await
    }

    /// Finds an environment by name (case-insensitive) or id.
    pub async fn find_environment(
        &self,
        space_id: &str,
        name_or_id: &str,
    ) -> Result<Resource<Named>, ClientError> {
        self.find_named(space_id, "environments", "environment", name_or_id)
            .await
    }

    // ---- releases and deployments (executions API) ----

    /// `POST /api/{space}/releases/create/v1`.
    pub async fn create_release(
        &self,
        space_id: &str,
        command: &CreateRelease,
    ) -> Result<Resource<ReleaseCreated>, ClientError> {
        let path = format!("/api/{}/releases/create/v1", segment(space_id));
        Resource::from_json(self.post_json(&path, &to_value(command)?).await?)
    }

    /// `POST /api/{space}/deployments/create/untenanted/v1`.
    pub async fn deploy_release(
        &self,
        space_id: &str,
        command: &DeployRelease,
    ) -> Result<Resource<DeploymentsCreated>, ClientError> {
        let path = format!(
            "/api/{}/deployments/create/untenanted/v1",
            segment(space_id)
        );
        Resource::from_json(self.post_json(&path, &to_value(command)?).await?)
    }

    /// `POST /api/{space}/deployments/create/tenanted/v1`.
    pub async fn deploy_tenanted(
        &self,
        space_id: &str,
        command: &crate::model::DeployTenanted,
    ) -> Result<Resource<DeploymentsCreated>, ClientError> {
        let path = format!("/api/{}/deployments/create/tenanted/v1", segment(space_id));
        Resource::from_json(self.post_json(&path, &to_value(command)?).await?)
    }

    // ---- tasks ----

    /// `GET /api/{space}/tasks/{id}`.
    pub async fn task(
        &self,
        space_id: &str,
        task_id: &str,
    ) -> Result<Resource<ServerTask>, ClientError> {
        Resource::from_json(self.get_json(&task_path(space_id, task_id, "")).await?)
    }

    /// `GET /api/{space}/tasks/{id}/details` (ServerTaskDetails with the activity log).
    pub async fn task_details(&self, space_id: &str, task_id: &str) -> Result<Value, ClientError> {
        self.get_json(&task_path(space_id, task_id, "/details"))
            .await
    }

    /// `GET /api/{space}/tasks/{id}/raw`: the task log as plain text, one line per entry.
    pub async fn task_raw(&self, space_id: &str, task_id: &str) -> Result<String, ClientError> {
        self.get_text(&task_path(space_id, task_id, "/raw")).await
    }

    /// `POST /api/tasks/{id}/cancel`. Octopus answers with the task; `None` if the server
    /// answered with an empty body.
    pub async fn cancel_task(
        &self,
        task_id: &str,
    ) -> Result<Option<Resource<ServerTask>>, ClientError> {
        let path = format!("/api/tasks/{}/cancel", segment(task_id));
        match self.post_json(&path, &json!({})).await? {
            Value::Null => Ok(None),
            task => Resource::from_json(task).map(Some),
        }
    }
}

fn process_path(space_id: &str, project_id: &str) -> String {
    format!(
        "/api/{}/projects/{}/deploymentprocesses",
        segment(space_id),
        segment(project_id)
    )
}

fn task_path(space_id: &str, task_id: &str, suffix: &str) -> String {
    format!(
        "/api/{}/tasks/{}{suffix}",
        segment(space_id),
        segment(task_id)
    )
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ClientError> {
    serde_json::to_value(value)
        .map_err(|error| ClientError::Decode(format!("cannot encode the request: {error}")))
}

/// Picks the item whose name matches case-insensitively, else the one whose id does.
/// On no match, returns a short list of what exists, for the error message.
fn pick_by_name_or_id<T>(
    items: Vec<T>,
    wanted: &str,
    name_and_id: impl Fn(&T) -> (&String, &String),
) -> Result<T, String> {
    let by_name = items
        .iter()
        .position(|item| name_and_id(item).0.eq_ignore_ascii_case(wanted));
    let by_id = || {
        items
            .iter()
            .position(|item| name_and_id(item).1.eq_ignore_ascii_case(wanted))
    };
    match by_name.or_else(by_id) {
        Some(index) => Ok(items.into_iter().nth(index).ok_or_else(String::new)?),
        None if items.is_empty() => Err("none".to_owned()),
        None => Err(items
            .iter()
            .map(|item| {
                let (name, id) = name_and_id(item);
                format!("{name} ({id})")
            })
            .collect::<Vec<_>>()
            .join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, id: &str) -> Named {
        Named {
            id: id.into(),
            name: name.into(),
        }
    }

    fn pick(items: Vec<Named>, wanted: &str) -> Result<String, String> {
        pick_by_name_or_id(items, wanted, |item| (&item.name, &item.id)).map(|item| item.id)
    }

    #[test]
    fn names_win_over_ids_and_match_case_insensitively() {
        let items = || {
            vec![
                named("Default", "Spaces-1"),
                named("Spaces-1", "Spaces-2"),
                named("Ops", "Spaces-3"),
            ]
        };
        assert_eq!(pick(items(), "default"), Ok("Spaces-1".into()));
        assert_eq!(pick(items(), "Spaces-1"), Ok("Spaces-2".into()));
        assert_eq!(pick(items(), "spaces-3"), Ok("Spaces-3".into()));
        assert_eq!(
            pick(items(), "Nope"),
            Err("Default (Spaces-1), Spaces-1 (Spaces-2), Ops (Spaces-3)".into())
        );
        assert_eq!(pick(Vec::new(), "x"), Err("none".into()));
    }

    #[test]
    fn api_key_is_not_in_debug_output() {
        let client = Client::new("http://127.0.0.1:1", Some("API-SECRETSECRET".into()));
        match client {
            Ok(client) => {
                let debug = format!("{client:?}");
                assert!(!debug.contains("SECRET"), "{debug}");
                assert!(client.has_api_key());
            }
            Err(error) => assert_eq!(error.to_string(), "a client"),
        }
    }

    #[test]
    fn empty_api_key_counts_as_none() {
        let client = Client::new("http://127.0.0.1:1", Some("  ".into()));
        assert!(client.is_ok_and(|client| !client.has_api_key()));
    }

    #[test]
    fn names_are_encoded_in_paths() {
        assert_eq!(
            process_path("Spaces-1", "Hello World"),
            "/api/Spaces-1/projects/Hello%20World/deploymentprocesses"
        );
        assert_eq!(
            task_path("Spaces-1", "ServerTasks-3", "/raw"),
            "/api/Spaces-1/tasks/ServerTasks-3/raw"
        );
    }

    /// A port nothing listens on gives a transport error that names the server.
    #[test]
    fn unreachable_server_is_a_transport_error() {
        let runtime = tokio_runtime();
        let Some(runtime) = runtime else { return };
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0");
            match listener.and_then(|listener| listener.local_addr()) {
                Ok(address) => address.port(),
                Err(_) => return,
            }
        };
        let base = format!("http://127.0.0.1:{port}");
        let result = runtime.block_on(async {
            let client = Client::new(&base, None)?;
            client.get_json("/api").await
        });
        match result {
            Err(ClientError::Transport(message)) => assert!(
                message.starts_with(&format!("the server could not be reached at {base}: ")),
                "{message}"
            ),
            other => assert_eq!(format!("{other:?}"), "a transport error"),
        }
    }

    /// Serves one canned HTTP answer on a local port and hands back the request it read.
    async fn one_shot_server(
        status_line: &'static str,
        body: &'static str,
    ) -> std::io::Result<(String, tokio::task::JoinHandle<std::io::Result<String>>)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let mut request = Vec::new();
            let mut buffer = [0_u8; 4096];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).await?;
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            let answer = format!(
                "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            Ok(String::from_utf8_lossy(&request).into_owned())
        });
        Ok((base, served))
    }

    #[test]
    fn api_error_bodies_arrive_intact_and_the_key_and_path_are_sent() {
        let Some(runtime) = tokio_runtime() else {
            return;
        };
        let outcome = runtime.block_on(async {
            let (base, served) = one_shot_server(
                "HTTP/1.1 400 Bad Request",
                r#"{"ErrorMessage":"There was a problem with your request.","Errors":["Project 'Hello World' could not be found."]}"#,
            )
            .await?;
            let client = Client::new(&format!("{base}/api"), Some("API-TESTKEY".into()))
                .map_err(std::io::Error::other)?;
            let result = client.project("Spaces-1", "Hello World").await;
            let request = served.await.map_err(std::io::Error::other)??;
            Ok::<_, std::io::Error>((result, request))
        });
        let (result, request) = match outcome {
            Ok(outcome) => outcome,
            Err(error) => return assert_eq!(error.to_string(), "a served request"),
        };
        assert!(
            request.starts_with("GET /api/Spaces-1/projects/Hello%20World HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("x-octopus-apikey: api-testkey\r\n"),
            "{request}"
        );
        match result {
            Err(ClientError::Api {
                status,
                message,
                errors,
            }) => {
                assert_eq!(status, 400);
                assert_eq!(message, "There was a problem with your request.");
                assert_eq!(errors, vec!["Project 'Hello World' could not be found."]);
            }
            other => assert_eq!(format!("{other:?}"), "an API error"),
        }
    }

    #[test]
    fn a_non_json_success_is_a_decode_error() {
        let Some(runtime) = tokio_runtime() else {
            return;
        };
        let outcome = runtime.block_on(async {
            let (base, served) = one_shot_server("HTTP/1.1 200 OK", "<html>").await?;
            let client = Client::new(&base, None).map_err(std::io::Error::other)?;
            let result = client.get_json("/api").await;
            served.await.map_err(std::io::Error::other)??;
            Ok::<_, std::io::Error>(result)
        });
        match outcome {
            Ok(Err(ClientError::Decode(message))) => {
                assert!(
                    message.starts_with("the answer to GET /api is not JSON"),
                    "{message}"
                )
            }
            other => assert_eq!(format!("{other:?}"), "a decode error"),
        }
    }

    fn tokio_runtime() -> Option<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
    }
}
