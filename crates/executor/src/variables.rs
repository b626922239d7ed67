//! A deployment's variables: the release's variable snapshots (project and library sets) with
//! sensitive values opened, resolved per step and target by scope, plus Octopus's system
//! variables, output variables set by earlier steps, and prompted values.
//!
//! `Dictionary` is what the template engine reads (`VariableSource`) and what a script's
//! private variables file is written from.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ferry_crypto::{MasterKey, open, variable_aad};
use ferry_domain::variables::{ScopeContext, SourceSet, VariableIndex};
use ferry_domain::{Variable, VariableSet};
use ferry_template::VariableSource;

/// One variable set with its sensitive values opened.
#[derive(Clone, Debug)]
pub struct OpenedSet {
    pub owner: String,
    pub label: String,
    pub variables: Vec<Variable>,
}

/// Opens the sealed values of a set. A value that cannot be opened (wrong master key,
/// tampered) is an error naming the variable, never its value.
pub fn open_set(key: &MasterKey, set: &VariableSet, label: &str) -> Result<OpenedSet, String> {
    let mut variables = set.variables.clone();
    for v in variables.iter_mut() {
        if let Some(sealed) = v.sealed_value.take() {
            let plain = open(key, &variable_aad(&set.owner_id, &v.id), &sealed).map_err(|e| {
                format!(
                    "the sensitive variable '{}' of {} could not be opened: {e}",
                    v.name, label
                )
            })?;
            v.value = Some(plain);
            v.is_sensitive = true;
        }
    }
    Ok(OpenedSet {
        owner: set.owner_id.clone(),
        label: label.to_string(),
        variables,
    })
}

/// Every sensitive value in the sets (masked in logs wherever it appears, whatever its scope).
pub fn sensitive_values(sets: &[OpenedSet]) -> Vec<String> {
    sets.iter()
        .flat_map(|s| s.variables.iter())
        .filter(|v| v.is_sensitive)
        .filter_map(|v| v.value.clone())
        .collect()
}

/// Resolves the sets for a context into a dictionary.
pub fn resolve(sets: &[OpenedSet], ctx: &ScopeContext) -> Dictionary {
    let index = VariableIndex::new(
        sets.iter()
            .map(|s| SourceSet {
                owner: &s.owner,
                label: &s.label,
                variables: &s.variables,
            })
            .collect(),
    );
    let mut d = Dictionary::default();
    for r in index.resolve(ctx) {
        d.set_with(r.name, r.value.unwrap_or(""), r.sensitive);
    }
    d
}

/// Variables by case-insensitive name, in a sorted map so prefix walks are range scans.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    map: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    value: String,
    sensitive: bool,
}

impl Dictionary {
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.set_with(name, value, false);
    }

    pub fn set_with(&mut self, name: &str, value: impl Into<String>, sensitive: bool) {
        self.map.insert(
            name.to_lowercase(),
            Entry {
                name: name.to_string(),
                value: value.into(),
                sensitive,
            },
        );
    }

    /// Sets a variable unless it already has a value.
    pub fn set_default(&mut self, name: &str, value: impl Into<String>) {
        self.map
            .entry(name.to_lowercase())
            .or_insert_with(|| Entry {
                name: name.to_string(),
                value: value.into(),
                sensitive: false,
            });
    }

    pub fn get_value(&self, name: &str) -> Option<&str> {
        self.map.get(&name.to_lowercase()).map(|e| e.value.as_str())
    }

    pub fn is_sensitive(&self, name: &str) -> bool {
        self.map
            .get(&name.to_lowercase())
            .is_some_and(|e| e.sensitive)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Copies every entry of `other` over this one.
    pub fn extend(&mut self, other: &Dictionary) {
        for (k, e) in &other.map {
            self.map.insert(k.clone(), e.clone());
        }
    }

    /// (name, raw value) pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map
            .values()
            .map(|e| (e.name.as_str(), e.value.as_str()))
    }

    /// Every value fully evaluated (composite values rendered), for a script's variables file.
    /// A value whose evaluation fails (a reference loop, a limit) keeps its raw text.
    pub fn evaluated(&self, opts: &ferry_template::Options) -> Vec<(String, String)> {
        self.map
            .values()
            .map(|e| {
                let v = if e.value.contains("#{") {
                    ferry_template::render(&e.value, self, opts)
                        .map(|r| r.text)
                        .unwrap_or_else(|_| e.value.clone())
                } else {
                    e.value.clone()
                };
                (e.name.clone(), v)
            })
            .collect()
    }
}

impl VariableSource for Dictionary {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.map
            .get(&name.to_lowercase())
            .map(|e| Cow::Borrowed(e.value.as_str()))
    }

    fn visit_names_with_prefix(&self, prefix: &str, visit: &mut dyn FnMut(&str)) {
        let p = prefix.to_lowercase();
        for (k, e) in self.map.range(p.clone()..) {
            if !k.starts_with(&p) {
                break;
            }
            visit(&e.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_domain::VariableScope;

    #[test]
    fn opens_resolves_and_renders() {
        let key = MasterKey::generate();
        let mut set = VariableSet {
            id: "variableset-Projects-1".into(),
            owner_id: "Projects-1".into(),
            ..VariableSet::default()
        };
        set.variables.push(Variable {
            id: "v1".into(),
            name: "Password".into(),
            is_sensitive: true,
            sealed_value: Some(ferry_crypto::seal(
                &key,
                &variable_aad("Projects-1", "v1"),
                "s3cret!",
            )),
            ..Variable::default()
        });
        set.variables.push(Variable {
            id: "v2".into(),
            name: "Conn".into(),
            value: Some("Server=#{Host};Password=#{Password}".into()),
            ..Variable::default()
        });
        set.variables.push(Variable {
            id: "v3".into(),
            name: "Host".into(),
            value: Some("prod-db".into()),
            scope: VariableScope {
                environment: vec!["Environments-2".into()],
                ..VariableScope::default()
            },
            ..Variable::default()
        });
        let opened = open_set(&key, &set, "project").unwrap_or_else(|e| OpenedSet {
            owner: e,
            label: String::new(),
            variables: vec![],
        });
        assert_eq!(
            sensitive_values(std::slice::from_ref(&opened)),
            vec!["s3cret!".to_string()]
        );
        let ctx = ScopeContext {
            environment: Some("Environments-2".into()),
            ..ScopeContext::default()
        };
        let d = resolve(std::slice::from_ref(&opened), &ctx);
        assert!(d.is_sensitive("password"));
        let out = d.evaluated(&ferry_template::Options::default());
        let conn = out
            .iter()
            .find(|(n, _)| n == "Conn")
            .map(|(_, v)| v.clone());
        assert_eq!(conn.as_deref(), Some("Server=prod-db;Password=s3cret!"));
        // Another owner cannot open the sealed value.
        let mut stolen = set.clone();
        stolen.owner_id = "Projects-2".into();
        assert!(open_set(&key, &stolen, "other").is_err_and(|e| !e.contains("s3cret")));
    }

    #[test]
    fn prefix_walk() {
        let mut d = Dictionary::default();
        d.set("Endpoint[A].Address", "a");
        d.set("Endpoint[B].Address", "b");
        d.set("Other", "x");
        let mut seen = Vec::new();
        d.visit_names_with_prefix("endpoint[", &mut |n| seen.push(n.to_string()));
        assert_eq!(seen, vec!["Endpoint[A].Address", "Endpoint[B].Address"]);
    }
}
