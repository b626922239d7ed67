//! Step templates (Octopus "action templates"): the resource, the checks a template must pass
//! to be stored (including one imported from the community library's JSON format), and how a
//! process action that uses a template is expanded at deploy time (the pinned version's
//! properties, the parameters as variables). Pure: the server stores templates, the executor
//! applies them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DeploymentAction;

/// The action property naming the template an action uses.
pub const TEMPLATE_ID: &str = "Octopus.Action.Template.Id";
/// The action property naming the template version an action is pinned to.
pub const TEMPLATE_VERSION: &str = "Octopus.Action.Template.Version";

/// The step types a template may have: the ones Ferry's executor runs.
pub const SUPPORTED_ACTION_TYPES: &[&str] = &["Octopus.Script", "Octopus.TentaclePackage"];

/// A step template as Octopus's API shows it (`Links` added by the server).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ActionTemplate {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub description: String,
    pub action_type: String,
    pub version: i64,
    pub community_action_template_id: Option<String>,
    pub packages: Vec<Value>,
    pub properties: BTreeMap<String, String>,
    pub parameters: Vec<TemplateParameter>,
}

/// A template parameter: it becomes a variable named `Name` in the steps using the template.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TemplateParameter {
    pub id: String,
    pub name: String,
    pub label: String,
    pub help_text: String,
    /// A string, or `null`; a sensitive default may come as `{HasValue, NewValue}`.
    pub default_value: Value,
    pub display_settings: BTreeMap<String, String>,
}

impl TemplateParameter {
    /// The control type (`SingleLineText` when not given).
    pub fn control_type(&self) -> &str {
        self.display_settings
            .get("Octopus.ControlType")
            .map(String::as_str)
            .unwrap_or("SingleLineText")
    }

    pub fn is_sensitive(&self) -> bool {
        self.control_type().eq_ignore_ascii_case("Sensitive")
    }

    /// The default value as text (empty when there is none).
    pub fn default_text(&self) -> String {
        value_text(&self.default_value)
    }
}

/// A property value as text: strings as they are, `null` as empty, a sensitive value object
/// (`{HasValue, NewValue}`) as its `NewValue`, anything else as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Object(o) => match o.get("NewValue").or_else(|| o.get("Value")) {
            Some(v) => value_text(v),
            None => String::new(),
        },
        other => other.to_string(),
    }
}

/// The id of the stored copy of version `version` of template `id`.
pub fn version_doc_id(id: &str, version: i64) -> String {
    format!("{id}-v{version}")
}

/// Checks a template before it is stored: required fields present, a step type Ferry can run
/// (scripts in Bash or Python), parameter names given and unique. `raw` is the request body as
/// sent (after key normalisation), used to tell a missing field from an empty one.
pub fn validate(raw: &Value, t: &ActionTemplate) -> Result<(), String> {
    let has = |k: &str| raw.get(k).is_some_and(|v| !v.is_null());
    if !has("Name") || t.name.trim().is_empty() {
        return Err("The step template has no Name".to_string());
    }
    if !has("ActionType") || t.action_type.trim().is_empty() {
        return Err(format!("The step template '{}' has no ActionType", t.name));
    }
    if !has("Properties") {
        return Err(format!("The step template '{}' has no Properties", t.name));
    }
    if !SUPPORTED_ACTION_TYPES.contains(&t.action_type.as_str()) {
        return Err(format!(
            "The step template '{}' has ActionType '{}', which Ferry cannot run; supported: {} (scripts in Bash or Python)",
            t.name,
            t.action_type,
            SUPPORTED_ACTION_TYPES.join(", ")
        ));
    }
    if t.action_type == "Octopus.Script" {
        check_script(&t.name, &t.properties)?;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, p) in t.parameters.iter().enumerate() {
        if p.name.trim().is_empty() {
            return Err(format!(
                "Parameter {} of the step template '{}' has no Name",
                i + 1,
                t.name
            ));
        }
        if !seen.insert(p.name.to_lowercase()) {
            return Err(format!(
                "The step template '{}' has two parameters named '{}'",
                t.name, p.name
            ));
        }
    }
    Ok(())
}

fn check_script(name: &str, props: &BTreeMap<String, String>) -> Result<(), String> {
    let source = props
        .get("Octopus.Action.Script.ScriptSource")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .unwrap_or("Inline");
    if !source.eq_ignore_ascii_case("Inline") {
        return Err(format!(
            "The step template '{name}' runs a script from '{source}'; Ferry runs inline scripts only"
        ));
    }
    // Octopus's default syntax is PowerShell.
    let syntax = props
        .get("Octopus.Action.Script.Syntax")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .unwrap_or("PowerShell");
    match syntax.to_ascii_lowercase().as_str() {
        "bash" | "python" => Ok(()),
        "powershell" => Err(format!(
            "The step template '{name}' is a PowerShell script; PowerShell is not supported on Ferry's Linux targets (use a Bash or Python template)"
        )),
        _ => Err(format!(
            "The step template '{name}' has script syntax '{syntax}'; Ferry runs Bash and Python"
        )),
    }
}

/// The template and version an action uses, if any. A version that is not a number is an error.
pub fn action_template_ref(a: &DeploymentAction) -> Result<Option<(String, Option<i64>)>, String> {
    let Some(id) = a
        .properties
        .get(TEMPLATE_ID)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let version = match a
        .properties
        .get(TEMPLATE_VERSION)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| {
            format!(
                "Action '{}': {TEMPLATE_VERSION} '{v}' is not a version number",
                a.name
            )
        })?),
    };
    Ok(Some((id.to_string(), version)))
}

/// The action as it runs: the template's properties (script body, syntax, …) of the pinned
/// version replace the action's copies; the action's own other properties (parameter values,
/// target roles, …) stay.
pub fn apply(t: &ActionTemplate, action: &DeploymentAction) -> DeploymentAction {
    let mut a = action.clone();
    a.action_type = t.action_type.clone();
    for (k, v) in &t.properties {
        a.properties.insert(k.clone(), v.clone());
    }
    a
}

/// Each parameter as a variable: (name, value, sensitive). The value is the action's property
/// named by the parameter, else the parameter's default, else empty.
/// How a Sensitive parameter's value is stored in an action's properties: this prefix, then the
/// value sealed with the master key (`ferry_crypto::seal`) and [`parameter_aad`]. The process
/// API shows the sealed text, never the value; sending it back keeps the value.
pub const SEALED_PREFIX: &str = "ferry-sealed:";

/// The associated data a Sensitive parameter's value is sealed with: the template and the
/// parameter, so a sealed value cannot be moved to another parameter.
pub fn parameter_aad(template_id: &str, parameter: &str) -> Vec<u8> {
    format!("ferry:action-template:{template_id}:{parameter}").into_bytes()
}

pub fn parameter_variables(
    t: &ActionTemplate,
    action: &DeploymentAction,
) -> Vec<(String, String, bool)> {
    t.parameters
        .iter()
        .map(|p| {
            let value = action
                .properties
                .get(&p.name)
                .cloned()
                .unwrap_or_else(|| p.default_text());
            (p.name.clone(), value, p.is_sensitive())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn parse(v: &Value) -> Result<ActionTemplate, String> {
        let t: ActionTemplate = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        validate(v, &t).map(|_| t)
    }

    fn bash() -> Value {
        json!({
            "Id": "6e8a1b9c-0000-4000-8000-000000000001",
            "Name": "Say hello",
            "Description": "Says hello",
            "ActionType": "Octopus.Script",
            "Version": 3,
            "CommunityActionTemplateId": null,
            "Packages": [],
            "Properties": {
                "Octopus.Action.Script.ScriptSource": "Inline",
                "Octopus.Action.Script.Syntax": "Bash",
                "Octopus.Action.Script.ScriptBody": "echo hi"
            },
            "Parameters": [{
                "Id": "p1", "Name": "Hello.Name", "Label": "Name", "HelpText": "Who",
                "DefaultValue": "World",
                "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}
            }, {
                "Id": "p2", "Name": "Hello.Token", "Label": "Token", "HelpText": "",
                "DefaultValue": null,
                "DisplaySettings": {"Octopus.ControlType": "Sensitive"}
            }],
            "$Meta": {"ExportedAt": "2024-01-01T00:00:00Z", "OctopusVersion": "2024.1", "Type": "ActionTemplate"},
            "LastModifiedBy": "someone",
            "Category": "other"
        })
    }

    #[test]
    fn library_file_parses() {
        let t = parse(&bash()).unwrap();
        assert_eq!(t.name, "Say hello");
        assert_eq!(t.parameters.len(), 2);
        assert!(t.parameters[1].is_sensitive());
        assert_eq!(t.parameters[0].default_text(), "World");
        assert_eq!(t.parameters[1].default_text(), "");
    }

    #[test]
    fn refusals_name_the_problem() {
        let mut v = bash();
        v["Properties"]["Octopus.Action.Script.Syntax"] = json!("PowerShell");
        assert!(
            parse(&v)
                .unwrap_err()
                .contains("PowerShell is not supported")
        );
        let mut v = bash();
        v["Properties"]
            .as_object_mut()
            .unwrap()
            .remove("Octopus.Action.Script.Syntax");
        assert!(parse(&v).unwrap_err().contains("PowerShell"));
        let mut v = bash();
        v["ActionType"] = json!("Octopus.AzurePowerShell");
        assert!(parse(&v).unwrap_err().contains("cannot run"));
        let mut v = bash();
        v.as_object_mut().unwrap().remove("Properties");
        assert!(parse(&v).unwrap_err().contains("no Properties"));
        let mut v = bash();
        v.as_object_mut().unwrap().remove("Name");
        assert!(parse(&v).unwrap_err().contains("no Name"));
        let mut v = bash();
        v.as_object_mut().unwrap().remove("ActionType");
        assert!(parse(&v).unwrap_err().contains("no ActionType"));
        let mut v = bash();
        v["Parameters"][1]["Name"] = json!("hello.name");
        assert!(parse(&v).unwrap_err().contains("two parameters"));
        let mut v = bash();
        v["Properties"]["Octopus.Action.Script.ScriptSource"] = json!("Package");
        assert!(parse(&v).unwrap_err().contains("inline scripts only"));
        let mut v = bash();
        v["Properties"]["Octopus.Action.Script.Syntax"] = json!("Python");
        assert!(parse(&v).is_ok());
        let mut v = bash();
        v["ActionType"] = json!("Octopus.TentaclePackage");
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn apply_and_parameters() {
        let t = parse(&bash()).unwrap();
        let mut a = DeploymentAction {
            name: "Hi".into(),
            action_type: "Octopus.Script".into(),
            ..Default::default()
        };
        a.properties
            .insert("Octopus.Action.Script.ScriptBody".into(), "old".into());
        a.properties
            .insert(TEMPLATE_ID.into(), "ActionTemplates-1".into());
        a.properties.insert(TEMPLATE_VERSION.into(), "2".into());
        a.properties
            .insert("Hello.Token".into(), "#{Secret}".into());
        let run = apply(&t, &a);
        assert_eq!(
            run.properties["Octopus.Action.Script.ScriptBody"],
            "echo hi"
        );
        assert_eq!(run.properties[TEMPLATE_VERSION], "2");
        let vars = parameter_variables(&t, &a);
        assert_eq!(
            vars,
            vec![
                ("Hello.Name".into(), "World".into(), false),
                ("Hello.Token".into(), "#{Secret}".into(), true)
            ]
        );
        assert_eq!(
            action_template_ref(&a).unwrap(),
            Some(("ActionTemplates-1".into(), Some(2)))
        );
        a.properties.insert(TEMPLATE_VERSION.into(), "x".into());
        assert!(action_template_ref(&a).is_err());
    }

    #[test]
    fn value_text_forms() {
        assert_eq!(value_text(&json!({"HasValue": true, "NewValue": "s"})), "s");
        assert_eq!(value_text(&json!(null)), "");
        assert_eq!(value_text(&json!(true)), "True");
        assert_eq!(value_text(&json!(5)), "5");
    }
}
