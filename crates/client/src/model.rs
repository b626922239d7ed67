//! Typed views of the Octopus-shaped resources and commands the CLI uses.
//!
//! Each view reads only the fields the client needs; [`Resource`] keeps the whole JSON the
//! server sent next to it, so `--output json` can print the API's answer unchanged.

use std::collections::BTreeMap;
use std::ops::Deref;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ClientError;

/// A typed view of a resource together with the JSON it was read from.
#[derive(Debug, Clone)]
pub struct Resource<T> {
    pub data: T,
    pub json: Value,
}

impl<T: DeserializeOwned> Resource<T> {
    /// Reads the typed view out of `json`, keeping `json` as it is.
    pub fn from_json(json: Value) -> Result<Self, ClientError> {
        let data = T::deserialize(&json).map_err(|error| {
            ClientError::Decode(format!(
                "the server sent a {} the client cannot read: {error}",
                short_type_name::<T>()
            ))
        })?;
        Ok(Resource { data, json })
    }

    /// Reads a bare JSON array (an Octopus `…/all` answer) into typed resources.
    pub fn list_from_json(json: Value) -> Result<Vec<Self>, ClientError> {
        match json {
            Value::Array(items) => items.into_iter().map(Resource::from_json).collect(),
            other => Err(ClientError::Decode(format!(
                "expected a JSON array of {} but the server sent {}",
                short_type_name::<T>(),
                json_kind(&other)
            ))),
        }
    }
}

impl<T> Deref for Resource<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.data
    }
}

/// Octopus sends `null` for many strings that are usually present; read it as "".
fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Space {
    #[serde(deserialize_with = "null_as_empty")]
    pub id: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub name: String,
    pub is_default: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Environment {
    #[serde(deserialize_with = "null_as_empty")]
    pub id: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Project {
    #[serde(deserialize_with = "null_as_empty")]
    pub id: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub name: String,
    pub slug: Option<String>,
    pub description: Option<String>,
    pub project_group_id: Option<String>,
    pub lifecycle_id: Option<String>,
}

/// Any resource read only for its id and name: project groups, lifecycles, channels.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Named {
    #[serde(deserialize_with = "null_as_empty")]
    pub id: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub name: String,
}

/// A deployment target (Octopus's machine resource).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Machine {
    #[serde(deserialize_with = "null_as_empty")]
    pub id: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub name: String,
    pub is_disabled: bool,
    pub environment_ids: Vec<String>,
    pub roles: Vec<String>,
    pub tenant_ids: Vec<String>,
    #[serde(deserialize_with = "null_as_empty")]
    pub machine_policy_id: String,
    /// `Healthy | HasWarnings | Unhealthy | Unavailable | Unknown`.
    #[serde(deserialize_with = "null_as_empty")]
    pub health_status: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub status_summary: String,
    pub endpoint: MachineEndpoint,
}

/// How the server reaches a target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineEndpoint {
    /// `TentaclePassive` (listening) or `TentacleActive` (polling), for now.
    #[serde(deserialize_with = "null_as_empty")]
    pub communication_style: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub uri: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub thumbprint: String,
}

/// A server task: a deployment, runbook run or system job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServerTask {
    #[serde(deserialize_with = "null_as_empty")]
    pub id: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub name: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub description: String,
    /// `Queued | Executing | Cancelling | Success | Failed | Canceled | TimedOut`.
    #[serde(deserialize_with = "null_as_empty")]
    pub state: String,
    pub is_completed: bool,
    pub finished_successfully: bool,
    pub error_message: Option<String>,
}

impl ServerTask {
    /// Completed and not successful: Failed, Canceled or TimedOut.
    pub fn ended_unsuccessfully(&self) -> bool {
        self.is_completed && !self.finished_successfully
    }
}

/// `POST /api/{space}/environments`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewEnvironment {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `POST /api/{space}/projects`. The server fills in the default group and lifecycle.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewProject {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_id: Option<String>,
    /// `Untenanted | TenantedOrUntenanted | Tenanted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenanted_deployment_mode: Option<String>,
}

/// `POST /api/{space}/releases/create/v1` (the executions API).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRelease {
    /// Project name, slug or id.
    pub project_name: String,
    /// Absent: the server computes it from the project's versioning strategy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_version: Option<String>,
    /// Channel name or id; absent: the project's default channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_notes: Option<String>,
    /// `StepOrPackageId:Version` entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// The version of every package not named in `packages`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_version: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_channel_rules: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_if_already_exists: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReleaseCreated {
    #[serde(deserialize_with = "null_as_empty")]
    pub release_id: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub release_version: String,
}

/// `POST /api/{space}/deployments/create/untenanted/v1` (the executions API).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeployRelease {
    /// Project name, slug or id.
    pub project_name: String,
    pub release_version: String,
    /// Environment names or ids; one deployment (and task) each.
    pub environment_names: Vec<String>,
    /// Values for prompted variables.
    pub variables: BTreeMap<String, String>,
    /// Only these targets (names or ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub specific_machine_names: Vec<String>,
    /// Not these targets (names or ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded_machine_names: Vec<String>,
    /// Steps to skip (names; required steps cannot be skipped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip_step_names: Vec<String>,
    /// Start no earlier than this (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// Drop the deployment if it has not started by then (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_run_after: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_package_download: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_guided_failure: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub update_variable_snapshot: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_freeze_override_reason: Option<String>,
}

/// `POST /api/{space}/deployments/create/tenanted/v1`: one environment, many tenants.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeployTenanted {
    pub project_name: String,
    pub release_version: String,
    pub environment_name: String,
    /// Tenant names or ids.
    pub tenants: Vec<String>,
    /// Canonical `Set/Tag` names; tenants with them are deployed to as well.
    pub tenant_tags: Vec<String>,
    pub variables: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub specific_machine_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded_machine_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip_step_names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_run_after: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_package_download: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_guided_failure: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub update_variable_snapshot: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_freeze_override_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentsCreated {
    pub deployment_server_tasks: Vec<DeploymentServerTask>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentServerTask {
    #[serde(deserialize_with = "null_as_empty")]
    pub deployment_id: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub server_task_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_keeps_the_json_and_reads_the_view() {
        let json = json!({"Id": "Environments-1", "Name": "Dev", "SortOrder": 3});
        let environment = Resource::<Environment>::from_json(json.clone());
        match environment {
            Ok(environment) => {
                assert_eq!(environment.name, "Dev");
                assert_eq!(environment.description, None);
                assert_eq!(environment.json, json);
            }
            Err(error) => assert_eq!(error.to_string(), "no error"),
        }
    }

    #[test]
    fn list_refuses_a_paged_envelope() {
        let result = Resource::<Environment>::list_from_json(json!({"Items": []}));
        match result {
            Err(ClientError::Decode(message)) => assert_eq!(
                message,
                "expected a JSON array of Environment but the server sent an object"
            ),
            other => assert_eq!(format!("{other:?}"), "a decode error"),
        }
    }

    #[test]
    fn commands_are_pascal_case_and_omit_absent_fields() {
        let body = serde_json::to_value(CreateRelease {
            project_name: "Hello World".into(),
            release_version: Some("1.0.0".into()),
            ..CreateRelease::default()
        })
        .unwrap_or_default();
        assert_eq!(
            body,
            json!({"ProjectName": "Hello World", "ReleaseVersion": "1.0.0"})
        );

        let body = serde_json::to_value(DeployRelease {
            project_name: "P".into(),
            release_version: "1.0.0".into(),
            environment_names: vec!["Dev".into(), "Test".into()],
            variables: BTreeMap::new(),
            ..DeployRelease::default()
        })
        .unwrap_or_default();
        assert_eq!(
            body,
            json!({"ProjectName": "P", "ReleaseVersion": "1.0.0",
                   "EnvironmentNames": ["Dev", "Test"], "Variables": {}})
        );
    }

    #[test]
    fn task_outcome() {
        let task = |state: &str, completed: bool, success: bool| ServerTask {
            state: state.into(),
            is_completed: completed,
            finished_successfully: success,
            ..ServerTask::default()
        };
        assert!(!task("Executing", false, false).ended_unsuccessfully());
        assert!(!task("Cancelling", false, false).ended_unsuccessfully());
        assert!(!task("Success", true, true).ended_unsuccessfully());
        assert!(task("Failed", true, false).ended_unsuccessfully());
        assert!(task("Canceled", true, false).ended_unsuccessfully());
        assert!(task("TimedOut", true, false).ended_unsuccessfully());
    }
}
