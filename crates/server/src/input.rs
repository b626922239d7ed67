//! Reading request bodies the way Octopus's clients need: JSON keys case-insensitively (the TS
//! client sends PascalCase, the Go CLI camelCase), unknown keys ignored, `null` accepted for any
//! optional field, size limits answered with 413, and errors that name the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Keys whose values are maps of user data: their keys are kept as they are.
const MAP_KEYS: &[&str] = &[
    "Properties",
    "Variables",
    "FormValues",
    "CustomFields",
    "ProjectEnvironments",
    "Links",
    "Arguments",
    "Details",
    "DisplaySettings",
];

/// Canonical spellings that plain capitalisation of the first letter would get wrong.
const CANONICAL: &[&str] = &[
    "SpaceId",
    "SpaceIdOrName",
    "SpaceName",
    "ProjectName",
    "ProjectId",
    "ProjectGroupId",
    "LifecycleId",
    "ChannelName",
    "ChannelId",
    "ReleaseVersion",
    "ReleaseId",
    "ReleaseNotes",
    "PackageVersion",
    "GitRef",
    "GitCommit",
    "IgnoreIfAlreadyExists",
    "IgnoreChannelRules",
    "EnvironmentNames",
    "EnvironmentName",
    "EnvironmentId",
    "EnvironmentIds",
    "UseGuidedFailure",
    "RunAt",
    "NoRunAfter",
    "ForcePackageDownload",
    "ForcePackageRedeployment",
    "UpdateVariableSnapshot",
    "SpecificMachineNames",
    "ExcludedMachineNames",
    "SkipStepNames",
    "DeploymentFreezeNames",
    "DeploymentFreezeOverrideReason",
    "SortOrder",
    "IsDefault",
    "TaskQueueStopped",
    "IsDisabled",
    "TenantedDeploymentMode",
    "ActionType",
    "TargetRoles",
    "StartTrigger",
    "PackageRequirement",
    "IsRequired",
    "IsSensitive",
    "QueueTime",
    "QueueTimeExpiry",
    "SkipActions",
    "SpecificMachineIds",
    "ExcludedMachineIds",
    "TenantId",
    "OverwriteMode",
    "MinimumEnvironmentsBeforePromotion",
    "IsOptionalPhase",
    "AutomaticDeploymentTargets",
    "OptionalDeploymentTargets",
    "ReleaseRetentionPolicy",
    "TentacleRetentionPolicy",
    "QuantityToKeep",
    "ShouldKeepForever",
    "VersioningStrategy",
    "DeploymentProcessId",
    "VariableSetId",
    "UseGuidedFailure",
    "AllowDynamicInfrastructure",
    "IncludedLibraryVariableSetIds",
    "LibraryVariableSetSnapshotIds",
    "ProjectVariableSetSnapshotId",
    "ContentType",
    "IsEditable",
    "ProcessOwner",
    "TenantTag",
    "DisplaySettings",
    "SealedValue",
    "SealedFormValues",
    "Id",
    "Name",
];

fn canonical_key(k: &str) -> String {
    if let Some(c) = CANONICAL.iter().find(|c| c.eq_ignore_ascii_case(k)) {
        return (*c).to_string();
    }
    let mut chars = k.chars();
    match chars.next() {
        Some(f) => f.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Rewrites object keys to their canonical PascalCase, except inside user-data maps, and
/// stringifies scalar values inside `Properties` (Octopus properties are always strings).
/// A user-data key holding an array (a variable set's `Variables`) is a list of resources,
/// normalised like any other.
pub fn normalize(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let key = canonical_key(&k);
                let value = if MAP_KEYS.contains(&key.as_str()) && !v.is_array() {
                    if key == "Properties" {
                        stringify_properties(v)
                    } else {
                        v
                    }
                } else {
                    normalize(v)
                };
                // The first spelling wins when a body repeats a key in two casings.
                out.entry(key).or_insert(value);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn stringify_properties(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s,
                        Value::Bool(true) => "True".to_string(),
                        Value::Bool(false) => "False".to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::Null => return None,
                        other => other.to_string(),
                    };
                    Some((k, Value::String(s)))
                })
                .collect(),
        ),
        other => other,
    }
}

/// Deserialises a normalised value, naming the offending field on error. The message never
/// repeats the offending value (it may be a secret): serde's quoted literals are replaced.
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    let v = strip_nulls(v);
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = redact_serde_message(&e.into_inner().to_string());
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("The request body is not valid: {inner}"))
        } else {
            ApiError::bad_request(format!("The field '{path}' is not valid: {inner}"))
        }
    })
}

/// What replaces a value quoted in a serde message.
const HIDDEN: &str = "(value not shown)";

/// Removes the literals serde quotes from the input (`string "hunter2"`, ``integer `5` ``,
/// ``unknown variant `x` ``) and keeps everything else, including field names
/// (``missing field `Name` ``) and the expected type.
pub fn redact_serde_message(msg: &str) -> String {
    /// Words before a backticked literal that came from the input.
    const VALUE_BEFORE_BACKTICK: &[&str] = &[
        "integer ",
        "floating point ",
        "boolean ",
        "character ",
        "unknown variant ",
        "char ",
    ];
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(['"', '`']) {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let quote = if tail.starts_with('"') { '"' } else { '`' };
        let body = &tail[1..];
        // The end of the literal: serde writes strings with Debug escapes (`\"`).
        let mut end = None;
        let mut escaped = false;
        for (j, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && quote == '"' {
                escaped = true;
            } else if c == quote {
                end = Some(j);
                break;
            }
        }
        let Some(end) = end else {
            // An unbalanced quote: hide everything after it.
            out.push_str(HIDDEN);
            return out;
        };
        let literal = &body[..end];
        let from_input = quote == '"' || VALUE_BEFORE_BACKTICK.iter().any(|w| out.ends_with(w));
        if from_input {
            out.push_str(HIDDEN);
        } else {
            out.push(quote);
            out.push_str(literal);
            out.push(quote);
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Removes `null` members so that `#[serde(default)]` fields take their defaults (clients send
/// `null` for booleans such as `useGuidedFailure`).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// A JSON body read case-insensitively.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let v = read_json(req, state).await?;
        Ok(Body(from_value(v)?))
    }
}

/// A JSON body as a normalised `Value` (empty body → `{}`).
pub struct JsonValue(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonValue {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonValue(read_json(req, state).await?))
    }
}

async fn read_json<S: Send + Sync>(req: Request, state: &S) -> Result<Value, ApiError> {
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is larger than the server accepts.",
            )
        } else {
            ApiError::bad_request(format!("The request body could not be read: {e}"))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object",
        ));
    }
    Ok(normalize(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalizes_casing_but_not_user_maps() {
        let v = normalize(json!({
            "projectName": "P", "spaceidorname": "x", "PROJECTID": "y",
            "variables": {"myVar": "1"},
            "Steps": [{"name": "s", "properties": {"a.b": true, "n": 3, "z": null}}]
        }));
        assert_eq!(
            v,
            json!({
                "ProjectName": "P", "SpaceIdOrName": "x", "ProjectId": "y",
                "Variables": {"myVar": "1"},
                "Steps": [{"Name": "s", "Properties": {"a.b": "True", "n": "3"}}]
            })
        );
        // A variable set's `Variables` is a list of resources, not a user-data map.
        let v = normalize(json!({"variables": [{"name": "A", "isSensitive": true,
            "prompt": {"label": "L", "displaySettings": {"Octopus.ControlType": "Sensitive"}}}]}));
        assert_eq!(
            v,
            json!({"Variables": [{"Name": "A", "IsSensitive": true,
                "Prompt": {"Label": "L", "DisplaySettings": {"Octopus.ControlType": "Sensitive"}}}]})
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    #[allow(dead_code)]
    struct Probe {
        is_sensitive: Option<bool>,
        count: Option<u8>,
        kind: Option<Kind>,
        name: String,
        chars: Option<char>,
    }

    #[derive(Debug, serde::Deserialize)]
    enum Kind {
        Text,
    }

    #[test]
    fn errors_name_the_field_but_never_echo_the_value() {
        let cases = [
            (
                json!({"Name": "n", "IsSensitive": "hunter2 \"quoted\" s3cr`et"}),
                "IsSensitive",
            ),
            (json!({"Name": "n", "Count": 99999}), "Count"),
            (json!({"Name": "n", "Count": -5}), "Count"),
            (json!({"Name": "n", "Count": 1.5}), "Count"),
            (json!({"Name": "n", "Kind": "hunter2"}), "Kind"),
            (json!({"Name": "n", "IsSensitive": 424242}), "IsSensitive"),
            (json!({"Name": "n", "Chars": "hunter2"}), "Chars"),
            (json!({"Name": 424242}), "Name"),
        ];
        for (body, field) in cases {
            let e = from_value::<Probe>(body.clone()).err();
            assert!(e.is_some(), "{body} parsed");
            let text = e.map(|e| e.errors.join(" ")).unwrap_or_default();
            assert!(text.contains(&format!("'{field}'")), "{text}");
            for secret in ["hunter2", "s3cr", "99999", "-5", "1.5", "424242"] {
                assert!(!text.contains(secret), "{body} → {text}");
            }
        }
        let e = from_value::<Probe>(json!({}))
            .err()
            .map(|e| e.errors.join(" "));
        assert!(e.is_some_and(|t| t.contains("missing field `Name`")));
        assert_eq!(
            redact_serde_message("unknown variant `pw`, expected `Text` or `Other`"),
            "unknown variant (value not shown), expected `Text` or `Other`"
        );
        assert_eq!(
            redact_serde_message("invalid type: string \"a\\\"b\", expected a boolean"),
            "invalid type: string (value not shown), expected a boolean"
        );
        assert_eq!(redact_serde_message("bad \"open"), "bad (value not shown)");
    }
}
