//! Audit diffs that never hold a secret: what changed between two JSON documents, field by
//! field, with every sensitive value replaced by a salted SHA-256 so that a change is visible
//! but the value is not.
//!
//! Sensitive is: a key named like a secret (`Password`, `…Secret…`, `Token`, `…HeaderValue`,
//! `SensitiveValue`, `SealedValue`, `PrivateKey`, `ApiKey`), the `Value` of an object with
//! `IsSensitive: true` on either side (a sensitive variable), and any string sealed with the
//! master key (`FERRY1:…`, or `ferry-sealed:…`). Arrays of objects with `Id`s are compared by `Id`.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The per-installation salt: derived from the master key, so it is secret and differs
/// between installations (the same derivation as the variables audit hashes).
pub fn salt(key: &ferry_crypto::MasterKey) -> Vec<u8> {
    Sha256::digest(format!("ferry/audit-salt/{}", key.to_base64()).as_bytes()).to_vec()
}

/// `salted-sha256:<hex>` of a JSON value (strings hashed as their text).
pub fn hash(v: &Value, salt: &[u8]) -> Value {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut h = Sha256::new();
    h.update(salt);
    h.update(text.as_bytes());
    json!(format!("salted-sha256:{}", hex::encode(h.finalize())))
}

/// Whether a field of this name holds a secret.
pub fn sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("token")
        || k.contains("headervalue")
        || k.contains("sensitivevalue")
        || k.contains("sealedvalue")
        || k.contains("privatekey")
        || k == "apikey"
}

fn is_sealed(v: &Value) -> bool {
    // `FERRY1:` is what `ferry_crypto::seal` writes; `ferry-sealed:` is the documented form.
    v.as_str()
        .is_some_and(|s| s.starts_with("FERRY1:") || s.starts_with("ferry-sealed:"))
}

fn marks_sensitive(v: Option<&Value>) -> bool {
    v.and_then(|o| o.get("IsSensitive"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A copy of `v` with its secrets hashed (`sensitive`: the whole value is a secret).
pub fn redact(v: &Value, sensitive: bool, salt: &[u8]) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    if sensitive || is_sealed(v) {
        return hash(v, salt);
    }
    match v {
        Value::Object(o) => {
            let var = marks_sensitive(Some(v));
            Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let s = sensitive_key(k) || (var && k == "Value");
                        (k.clone(), redact(x, s, salt))
                    })
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| redact(x, false, salt)).collect()),
        other => other.clone(),
    }
}

/// The changed fields between `before` and `after`: `{"Changes": [{"Path", "Old", "New"}…]}`,
/// where `Path` is like `Variables[Id=abc].Value` and a missing side is `null`. Sensitive
/// values appear only as salted hashes.
pub fn diff(before: &Value, after: &Value, salt: &[u8]) -> Value {
    let mut out = Vec::new();
    walk("", before, after, false, salt, &mut out);
    json!({ "Changes": out })
}

fn push(out: &mut Vec<Value>, path: &str, old: &Value, new: &Value, sensitive: bool, salt: &[u8]) {
    let path = if path.is_empty() { "$" } else { path };
    out.push(json!({
        "Path": path,
        "Old": redact(old, sensitive, salt),
        "New": redact(new, sensitive, salt),
    }));
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The `Id`s of an array whose elements are all objects with distinct string ids.
fn ids(a: &[Value]) -> Option<Vec<&str>> {
    let ids: Vec<&str> = a
        .iter()
        .map(|x| x.get("Id").and_then(Value::as_str))
        .collect::<Option<_>>()?;
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    (sorted.len() == ids.len()).then_some(ids)
}

fn walk(path: &str, a: &Value, b: &Value, sensitive: bool, salt: &[u8], out: &mut Vec<Value>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if !sensitive => {
            let var = marks_sensitive(Some(a)) || marks_sensitive(Some(b));
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let s = sensitive_key(k) || (var && k == "Value");
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                walk(&child(path, k), va, vb, s, salt, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if !sensitive => match (ids(x), ids(y)) {
            (Some(ix), Some(iy)) => {
                let find = |arr: &[Value], ids: &[&str], id: &str| {
                    ids.iter()
                        .position(|i| *i == id)
                        .and_then(|p| arr.get(p).cloned())
                        .unwrap_or(Value::Null)
                };
                let mut all: Vec<&str> = ix.iter().chain(iy.iter()).copied().collect();
                let mut seen = std::collections::HashSet::new();
                all.retain(|i| seen.insert(*i));
                for id in all {
                    let (va, vb) = (find(x, &ix, id), find(y, &iy, id));
                    walk(&format!("{path}[Id={id}]"), &va, &vb, false, salt, out);
                }
            }
            _ => {
                for i in 0..x.len().max(y.len()) {
                    let (va, vb) = (
                        x.get(i).unwrap_or(&Value::Null),
                        y.get(i).unwrap_or(&Value::Null),
                    );
                    walk(&format!("{path}[{i}]"), va, vb, false, salt, out);
                }
            }
        },
        _ => push(out, path, a, b, sensitive, salt),
    }
}

/// The diff of two serialisable documents (an empty diff if either cannot be serialised).
pub fn diff_of<T: serde::Serialize>(before: &T, after: &T, salt: &[u8]) -> Value {
    match (serde_json::to_value(before), serde_json::to_value(after)) {
        (Ok(a), Ok(b)) => diff(&a, &b, salt),
        _ => json!({ "Changes": Vec::<Value>::new() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &[u8] = b"test-salt";

    fn changes(v: &Value) -> Vec<Value> {
        v["Changes"].as_array().cloned().unwrap_or_default()
    }

    #[test]
    fn only_changed_fields() {
        let a = json!({"Name": "A", "Description": "x", "Same": 1});
        let b = json!({"Name": "B", "Description": "x", "Same": 1, "New": true});
        let c = changes(&diff(&a, &b, SALT));
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], json!({"Path": "Name", "Old": "A", "New": "B"}));
        assert_eq!(c[1], json!({"Path": "New", "Old": null, "New": true}));
        assert!(changes(&diff(&a, &a, SALT)).is_empty());
    }

    #[test]
    fn sensitive_values_are_hashed() {
        let a = json!({"Variables": [
            {"Id": "v1", "Name": "Pw", "Value": "old-secret-value", "IsSensitive": true},
            {"Id": "v2", "Name": "Plain", "Value": "a", "IsSensitive": false}
        ], "Password": "hunter2", "Nested": {"ApiToken": "tok-1"}});
        let b = json!({"Variables": [
            {"Id": "v1", "Name": "Pw", "Value": "new-secret-value", "IsSensitive": true},
            {"Id": "v2", "Name": "Plain", "Value": "b", "IsSensitive": false},
            {"Id": "v3", "Name": "Added", "Value": "added-secret", "IsSensitive": true}
        ], "Password": "hunter3", "Nested": {"ApiToken": "tok-2"}, "Other": "ferry-sealed:abc"});
        let d = diff(&a, &b, SALT);
        let text = d.to_string();
        for secret in [
            "old-secret-value",
            "new-secret-value",
            "added-secret",
            "hunter2",
            "hunter3",
            "tok-1",
            "tok-2",
            "ferry-sealed:abc",
        ] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        let c = changes(&d);
        let v1 = c
            .iter()
            .find(|x| x["Path"] == "Variables[Id=v1].Value")
            .cloned()
            .unwrap_or_default();
        assert!(
            v1["Old"]
                .as_str()
                .is_some_and(|s| s.starts_with("salted-sha256:"))
        );
        assert_ne!(v1["Old"], v1["New"]);
        assert!(
            c.iter()
                .any(|x| x["Path"] == "Variables[Id=v2].Value" && x["New"] == "b")
        );
        assert!(c.iter().any(|x| x["Path"] == "Variables[Id=v3]"));
        assert!(c.iter().any(|x| x["Path"] == "Password"));
        assert!(c.iter().any(|x| x["Path"] == "Nested.ApiToken"));
    }

    #[test]
    fn becoming_sensitive_hides_the_old_value_too() {
        let a = json!({"Id": "v", "Value": "was-plain", "IsSensitive": false});
        let b = json!({"Id": "v", "Value": "now-secret", "IsSensitive": true});
        let text = diff(&a, &b, SALT).to_string();
        assert!(!text.contains("was-plain") && !text.contains("now-secret"));
    }

    #[test]
    fn salt_changes_the_hash() {
        assert_ne!(hash(&json!("x"), b"a"), hash(&json!("x"), b"b"));
        assert_eq!(hash(&json!("x"), b"a"), hash(&json!("x"), b"a"));
    }
}
