//! Reading and editing an Octopus-shaped deployment process as JSON.
//!
//! The process is edited as a `serde_json::Value` so that fields this client does not know
//! about survive a GET, edit, PUT round trip unchanged.

use serde_json::{Map, Value, json};

/// Target roles of a step, as CSV in the step's properties.
pub const TARGET_ROLES: &str = "Octopus.Action.TargetRoles";
pub const SCRIPT_BODY: &str = "Octopus.Action.Script.ScriptBody";
pub const SCRIPT_SYNTAX: &str = "Octopus.Action.Script.Syntax";
pub const SCRIPT_SOURCE: &str = "Octopus.Action.Script.ScriptSource";
pub const RUN_ON_SERVER: &str = "Octopus.Action.RunOnServer";
pub const SCRIPT_ACTION_TYPE: &str = "Octopus.Script";

/// Why a process could not be edited.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the process already has a step named '{0}'; choose another name")]
    DuplicateStep(String),
    #[error("the deployment process sent by the server has no Steps list")]
    NoSteps,
}

/// The language of an inline script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptSyntax {
    Bash,
    Python,
}

impl ScriptSyntax {
    /// The value of `Octopus.Action.Script.Syntax`.
    pub fn as_octopus(self) -> &'static str {
        match self {
            ScriptSyntax::Bash => "Bash",
            ScriptSyntax::Python => "Python",
        }
    }
}

/// A "Run a script" step with an inline script.
#[derive(Debug, Clone)]
pub struct ScriptStep {
    pub name: String,
    pub script: String,
    pub syntax: ScriptSyntax,
    /// Empty: the script runs on the server itself.
    pub roles: Vec<String>,
}

impl ScriptStep {
    /// The step in the DeploymentProcess shape. Ids are left for the server to assign.
    pub fn to_json(&self) -> Value {
        let mut step_properties = Map::new();
        if !self.roles.is_empty() {
            step_properties.insert(TARGET_ROLES.into(), Value::String(self.roles.join(",")));
        }
        let run_on_server = if self.roles.is_empty() {
            "true"
        } else {
            "false"
        };
        json!({
            "Name": self.name,
            "Condition": "Success",
            "StartTrigger": "StartAfterPrevious",
            "PackageRequirement": "LetOctopusDecide",
            "Properties": step_properties,
            "Actions": [{
                "Name": self.name,
                "ActionType": SCRIPT_ACTION_TYPE,
                "IsDisabled": false,
                "IsRequired": false,
                "Environments": [],
                "ExcludedEnvironments": [],
                "Channels": [],
                "TenantTags": [],
                "Condition": "Success",
                "Packages": [],
                "Properties": {
                    SCRIPT_BODY: self.script,
                    SCRIPT_SYNTAX: self.syntax.as_octopus(),
                    SCRIPT_SOURCE: "Inline",
                    RUN_ON_SERVER: run_on_server,
                },
            }],
        })
    }
}

/// A "Deploy a package" step: a package from the built-in feed, with the file conventions.
#[derive(Debug, Clone)]
pub struct PackageStep {
    pub name: String,
    pub package_id: String,
    /// Newline-separated globs for "Substitute variables in files".
    pub substitute: Vec<String>,
    /// Newline-separated globs for "Structured configuration variables".
    pub structured: Vec<String>,
    /// Empty: the package is deployed on the server's built-in worker.
    pub roles: Vec<String>,
}

impl PackageStep {
    /// The step in the DeploymentProcess shape (`Octopus.TentaclePackage`).
    pub fn to_json(&self) -> Value {
        let mut step_properties = Map::new();
        if !self.roles.is_empty() {
            step_properties.insert(TARGET_ROLES.into(), Value::String(self.roles.join(",")));
        }
        let mut features = Vec::new();
        let mut props = Map::new();
        props.insert(
            "Octopus.Action.Package.PackageId".into(),
            json!(self.package_id),
        );
        props.insert(
            "Octopus.Action.Package.FeedId".into(),
            json!("feeds-builtin"),
        );
        props.insert(
            RUN_ON_SERVER.into(),
            json!(if self.roles.is_empty() {
                "true"
            } else {
                "false"
            }),
        );
        if !self.substitute.is_empty() {
            features.push("Octopus.Features.SubstituteInFiles");
            props.insert(
                "Octopus.Action.SubstituteInFiles.TargetFiles".into(),
                json!(self.substitute.join("\n")),
            );
        }
        if !self.structured.is_empty() {
            features.push("Octopus.Features.JsonConfigurationVariables");
            props.insert(
                "Octopus.Action.Package.JsonConfigurationVariablesTargets".into(),
                json!(self.structured.join("\n")),
            );
        }
        props.insert(
            "Octopus.Action.EnabledFeatures".into(),
            json!(features.join(",")),
        );
        json!({
            "Name": self.name,
            "Condition": "Success",
            "StartTrigger": "StartAfterPrevious",
            "PackageRequirement": "LetOctopusDecide",
            "Properties": step_properties,
            "Actions": [{
                "Name": self.name,
                "ActionType": "Octopus.TentaclePackage",
                "Packages": [{"Name": "", "PackageId": self.package_id, "FeedId": "feeds-builtin", "AcquisitionLocation": "Server", "Properties": {}}],
                "Properties": props,
            }],
        })
    }
}

/// Appends `step` to the process's `Steps`, refusing a second step with the same name
/// (Octopus step names are unique within a process, compared case-insensitively).
pub fn append_step(process: &mut Value, step: Value) -> Result<(), EditError> {
    let new_name = step
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let steps = process
        .as_object_mut()
        .map(|object| object.entry("Steps").or_insert_with(|| json!([])))
        .and_then(Value::as_array_mut)
        .ok_or(EditError::NoSteps)?;
    let taken = steps.iter().any(|existing| {
        existing
            .get("Name")
            .and_then(Value::as_str)
            .is_some_and(|name| name.eq_ignore_ascii_case(&new_name))
    });
    if taken {
        return Err(EditError::DuplicateStep(new_name));
    }
    steps.push(step);
    Ok(())
}

/// What `ferry process show` prints about one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    pub name: String,
    pub action_types: Vec<String>,
    pub roles: Vec<String>,
    pub run_on_server: bool,
    pub syntax: Option<String>,
    pub script: Option<String>,
}

/// Summarises each step of a process, in order.
pub fn summarize(process: &Value) -> Vec<StepSummary> {
    let steps = process
        .get("Steps")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    steps.iter().map(summarize_step).collect()
}

fn summarize_step(step: &Value) -> StepSummary {
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let property = |value: &Value, key: &str| {
        value
            .get("Properties")
            .and_then(|properties| properties.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let actions = step
        .get("Actions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let first = actions.first();
    let roles: Vec<String> = property(step, TARGET_ROLES)
        .map(|csv| {
            csv.split(',')
                .map(str::trim)
                .filter(|role| !role.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let run_on_server = first
        .and_then(|action| property(action, RUN_ON_SERVER))
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    StepSummary {
        name: text(step, "Name").unwrap_or_default(),
        action_types: actions
            .iter()
            .filter_map(|action| text(action, "ActionType"))
            .collect(),
        roles,
        run_on_server,
        syntax: first.and_then(|action| property(action, SCRIPT_SYNTAX)),
        script: first.and_then(|action| property(action, SCRIPT_BODY)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, roles: &[&str]) -> ScriptStep {
        ScriptStep {
            name: name.into(),
            script: "echo hello".into(),
            syntax: ScriptSyntax::Bash,
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        }
    }

    #[test]
    fn server_step_runs_on_server_and_has_no_roles() {
        let json = step("Say hello", &[]).to_json();
        assert_eq!(json["Name"], "Say hello");
        assert_eq!(json["Properties"], json!({}));
        let action = &json["Actions"][0];
        assert_eq!(action["ActionType"], "Octopus.Script");
        assert_eq!(
            action["Properties"],
            json!({
                "Octopus.Action.Script.ScriptBody": "echo hello",
                "Octopus.Action.Script.Syntax": "Bash",
                "Octopus.Action.Script.ScriptSource": "Inline",
                "Octopus.Action.RunOnServer": "true",
            })
        );
    }

    #[test]
    fn roles_become_csv_and_the_step_runs_on_targets() {
        let json = step("Deploy", &["web", "app"]).to_json();
        assert_eq!(json["Properties"][TARGET_ROLES], "web,app");
        assert_eq!(json["Actions"][0]["Properties"][RUN_ON_SERVER], "false");
    }

    #[test]
    fn every_property_value_is_a_string() {
        let json = step("Deploy", &["web"]).to_json();
        let all_strings = |value: &Value| {
            value
                .as_object()
                .is_some_and(|object| object.values().all(Value::is_string))
        };
        assert!(all_strings(&json["Properties"]));
        assert!(all_strings(&json["Actions"][0]["Properties"]));
    }

    #[test]
    fn append_keeps_existing_steps_and_unknown_fields() {
        let mut process = json!({"Id": "deploymentprocess-Projects-1", "Version": 2,
                                 "Steps": [{"Name": "First", "Custom": 1}]});
        let appended = append_step(&mut process, step("Second", &[]).to_json());
        assert!(appended.is_ok(), "{appended:?}");
        assert_eq!(process["Version"], 2);
        assert_eq!(process["Steps"][0], json!({"Name": "First", "Custom": 1}));
        assert_eq!(process["Steps"][1]["Name"], "Second");
    }

    #[test]
    fn append_creates_a_missing_steps_list() {
        let mut process = json!({"Id": "deploymentprocess-Projects-1"});
        assert!(append_step(&mut process, step("Only", &[]).to_json()).is_ok());
        assert_eq!(summarize(&process).len(), 1);
    }

    #[test]
    fn append_refuses_a_duplicate_name() {
        let mut process = json!({"Steps": [{"Name": "Say Hello"}]});
        let result = append_step(&mut process, step("say hello", &[]).to_json());
        assert_eq!(
            result.map_err(|error| error.to_string()),
            Err("the process already has a step named 'say hello'; choose another name".into())
        );
    }

    #[test]
    fn append_refuses_a_process_that_is_not_an_object() {
        let mut process = json!([]);
        assert!(matches!(
            append_step(&mut process, step("x", &[]).to_json()),
            Err(EditError::NoSteps)
        ));
    }

    #[test]
    fn summary_reads_back_what_was_written() {
        let mut process = json!({"Steps": []});
        assert!(append_step(&mut process, step("A", &[]).to_json()).is_ok());
        assert!(append_step(&mut process, step("B", &["web", "db"]).to_json()).is_ok());
        let summary = summarize(&process);
        assert_eq!(
            summary,
            vec![
                StepSummary {
                    name: "A".into(),
                    action_types: vec!["Octopus.Script".into()],
                    roles: vec![],
                    run_on_server: true,
                    syntax: Some("Bash".into()),
                    script: Some("echo hello".into()),
                },
                StepSummary {
                    name: "B".into(),
                    action_types: vec!["Octopus.Script".into()],
                    roles: vec!["web".into(), "db".into()],
                    run_on_server: false,
                    syntax: Some("Bash".into()),
                    script: Some("echo hello".into()),
                },
            ]
        );
    }
}
