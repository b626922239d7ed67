//! Reading and editing an Octopus-shaped variable set as JSON, and the explain query.
//!
//! The set is edited as a `serde_json::Value` so that fields this client does not know about
//! survive a GET, edit, PUT round trip. Sensitive variables come back from the server with
//! `Value: null`; sending them back that way keeps their values.

use serde_json::{Map, Value, json};

use crate::url::segment;

/// What the CLI shows instead of a sensitive value.
pub const MASK: &str = "********";

/// Why a variable set could not be edited.
#[derive(Debug, thiserror::Error)]
pub enum VariableEditError {
    #[error("the variable set sent by the server has no Variables list")]
    NoVariables,
}

/// One value to set: a name, its value, and the scope it applies in.
#[derive(Debug, Clone, Default)]
pub struct NewValue {
    pub name: String,
    pub value: String,
    pub sensitive: bool,
    /// Environment ids.
    pub environments: Vec<String>,
    pub roles: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = v
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Whether a variable's scope is exactly these environments and roles, and nothing else.
fn scope_is(variable: &Value, environments: &[String], roles: &[String]) -> bool {
    let scope = variable.get("Scope").and_then(Value::as_object);
    let mut environments = environments.to_vec();
    environments.sort();
    let mut roles = roles.to_vec();
    roles.sort();
    let Some(scope) = scope else {
        return environments.is_empty() && roles.is_empty();
    };
    scope.iter().all(|(key, list)| {
        let list = strings(Some(list));
        match key.as_str() {
            "Environment" => list == environments,
            "Role" => list == roles,
            _ => list.is_empty(),
        }
    }) && (environments.is_empty() || scope.contains_key("Environment"))
        && (roles.is_empty() || scope.contains_key("Role"))
}

/// Sets a value in a variable set: replaces the value of the variable with the same name
/// (case-insensitive) and exactly this scope, or adds a variable. A sensitive variable stays
/// sensitive. Returns whether an existing value was replaced.
pub fn set_value(set: &mut Value, new: &NewValue) -> Result<bool, VariableEditError> {
    let variables = set
        .get_mut("Variables")
        .and_then(Value::as_array_mut)
        .ok_or(VariableEditError::NoVariables)?;
    let existing = variables.iter_mut().find(|v| {
        v.get("Name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(&new.name))
            && scope_is(v, &new.environments, &new.roles)
    });
    match existing.and_then(Value::as_object_mut) {
        Some(variable) => {
            let sensitive =
                new.sensitive || variable.get("IsSensitive").and_then(Value::as_bool) == Some(true);
            variable.insert("Value".into(), json!(new.value));
            variable.insert("IsSensitive".into(), json!(sensitive));
            if sensitive {
                variable.insert("Type".into(), json!("Sensitive"));
            }
            Ok(true)
        }
        None => {
            let mut scope = Map::new();
            if !new.environments.is_empty() {
                scope.insert("Environment".into(), json!(new.environments));
            }
            if !new.roles.is_empty() {
                scope.insert("Role".into(), json!(new.roles));
            }
            variables.push(json!({
                "Name": new.name,
                "Value": new.value,
                "Type": if new.sensitive { "Sensitive" } else { "String" },
                "IsSensitive": new.sensitive,
                "Scope": scope,
            }));
            Ok(false)
        }
    }
}

/// A variable as `ferry variables list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableRow {
    pub name: String,
    /// The value, `********` for a sensitive one.
    pub value: String,
    /// `Environment: Production; Role: web`, with names from the set's `ScopeValues`.
    pub scope: String,
    /// The prompt's label, if the variable is prompted.
    pub prompt: Option<String>,
}

fn name_in(scope_values: Option<&Value>, list: &str, id: &str) -> String {
    scope_values
        .and_then(|s| s.get(list))
        .and_then(Value::as_array)
        .and_then(|items| {
            items
                .iter()
                .find(|i| i.get("Id").and_then(Value::as_str) == Some(id))
        })
        .and_then(|i| i.get("Name").and_then(Value::as_str))
        .unwrap_or(id)
        .to_owned()
}

/// The variables of a set, in the order the server keeps them.
pub fn summarize(set: &Value) -> Vec<VariableRow> {
    let scope_values = set.get("ScopeValues");
    let dimensions = [
        ("Environment", "Environment", Some("Environments")),
        ("Role", "Role", None),
        ("Machine", "Machine", Some("Machines")),
        ("Action", "Step", Some("Actions")),
        ("Channel", "Channel", Some("Channels")),
        ("Tenant", "Tenant", None),
        ("TenantTag", "Tenant tag", None),
        ("ProcessOwner", "Process", Some("Processes")),
    ];
    set.get("Variables")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let sensitive = v.get("IsSensitive").and_then(Value::as_bool) == Some(true);
            let value = if sensitive {
                MASK.to_owned()
            } else {
                v.get("Value")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let scope = dimensions
                .iter()
                .filter_map(|(key, label, list)| {
                    let ids = strings(v.get("Scope").and_then(|s| s.get(*key)));
                    if ids.is_empty() {
                        return None;
                    }
                    let names: Vec<String> = ids
                        .iter()
                        .map(|id| match list {
                            Some(list) => name_in(scope_values, list, id),
                            None => id.clone(),
                        })
                        .collect();
                    Some(format!("{label}: {}", names.join(", ")))
                })
                .collect::<Vec<_>>()
                .join("; ");
            let prompt = v.get("Prompt").filter(|p| p.is_object()).map(|p| {
                p.get("Label")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            });
            VariableRow {
                name: v
                    .get("Name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                value,
                scope,
                prompt,
            }
        })
        .collect()
}

/// The context `GET …/variables/explain` resolves for. Environment, step and channel may be
/// names or ids.
#[derive(Debug, Clone, Default)]
pub struct ExplainContext {
    pub environment: Option<String>,
    pub roles: Vec<String>,
    pub step: Option<String>,
    pub channel: Option<String>,
    pub machine: Option<String>,
    pub tenant: Option<String>,
}

impl ExplainContext {
    /// The query string, with a leading `?` when there is anything to send.
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |key: &str, value: &str| parts.push(format!("{key}={}", segment(value)));
        for (key, value) in [
            ("environment", &self.environment),
            ("step", &self.step),
            ("channel", &self.channel),
            ("machine", &self.machine),
            ("tenant", &self.tenant),
        ] {
            if let Some(value) = value {
                add(key, value);
            }
        }
        for role in &self.roles {
            add("role", role);
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// One row of `ferry variables explain`: the winning value of a name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainRow {
    pub name: String,
    /// The winning value (`********` if sensitive), or empty when none applies.
    pub value: String,
    pub source: String,
    pub why: String,
}

/// The rows of an explain answer.
pub fn explain_rows(answer: &Value) -> Vec<ExplainRow> {
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    answer
        .get("Variables")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let mut why = text(v, "Reason");
            let scope = text(v, "ScopeText");
            if !scope.is_empty() {
                why.push_str(&format!(" [{scope}]"));
            }
            ExplainRow {
                name: text(v, "Name"),
                value: text(v, "Value"),
                source: text(v, "Source"),
                why,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_value_replaces_same_scope_and_adds_otherwise() {
        let mut set = json!({"Id": "variableset-Projects-1", "Version": 2, "Variables": [
            {"Id": "a", "Name": "Url", "Value": "http://x", "Scope": {"Environment": ["Environments-1"]}},
            {"Id": "b", "Name": "Pw", "Value": null, "IsSensitive": true, "Type": "Sensitive", "Scope": {}},
        ]});
        let replaced = set_value(
            &mut set,
            &NewValue {
                name: "url".into(),
                value: "http://y".into(),
                environments: vec!["Environments-1".into()],
                ..NewValue::default()
            },
        );
        assert!(matches!(replaced, Ok(true)));
        assert_eq!(set["Variables"][0]["Value"], "http://y");
        // Same name, other scope: a new variable.
        let added = set_value(
            &mut set,
            &NewValue {
                name: "Url".into(),
                value: "http://z".into(),
                ..NewValue::default()
            },
        );
        assert!(matches!(added, Ok(false)));
        assert_eq!(set["Variables"][2]["Scope"], json!({}));
        // A sensitive variable stays sensitive.
        let _ = set_value(
            &mut set,
            &NewValue {
                name: "Pw".into(),
                value: "new".into(),
                ..NewValue::default()
            },
        );
        assert_eq!(set["Variables"][1]["IsSensitive"], true);
        assert_eq!(set["Variables"][1]["Value"], "new");
        assert!(set_value(&mut json!({}), &NewValue::default()).is_err());
    }

    #[test]
    fn summary_masks_sensitive_values_and_names_scopes() {
        let set = json!({"Variables": [
            {"Name": "Pw", "Value": null, "IsSensitive": true, "Scope": {"Environment": ["Environments-2"], "Role": ["web"]}},
            {"Name": "Who", "Value": "", "Prompt": {"Label": "Approver"}, "Scope": {}},
        ], "ScopeValues": {"Environments": [{"Id": "Environments-2", "Name": "Production"}]}});
        let rows = summarize(&set);
        assert_eq!(rows[0].value, MASK);
        assert_eq!(rows[0].scope, "Environment: Production; Role: web");
        assert_eq!(rows[1].prompt.as_deref(), Some("Approver"));
    }

    #[test]
    fn explain_query_encodes_names() {
        let q = ExplainContext {
            environment: Some("Prod East".into()),
            roles: vec!["web".into(), "db".into()],
            ..ExplainContext::default()
        };
        assert_eq!(q.query(), "?environment=Prod%20East&role=web&role=db");
        assert_eq!(ExplainContext::default().query(), "");
    }
}
