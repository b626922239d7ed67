//! Tenants, tag sets and tenant variables: the resources as the API shows them and the pure
//! rules (tag filters, which templates a tenant must fill, where a stored value lives).
//!
//! Tag filters follow Octopus: tags are canonical `Set/Tag` names; a filter matches when, for
//! every tag set the filter names, the tenant has at least one of the filter's tags of that set
//! (OR within a set, AND across sets). Explicitly named tenants are unioned in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tag of a tag set. `Id` is `TagSets-1/Tags-1`; `CanonicalTagName` is `Set/Tag`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Tag {
    pub id: String,
    pub name: String,
    pub color: String,
    pub description: String,
    pub sort_order: i64,
    pub canonical_tag_name: String,
}

impl Default for Tag {
    fn default() -> Self {
        Tag {
            id: String::new(),
            name: String::new(),
            color: "#333333".to_string(),
            description: String::new(),
            sort_order: 0,
            canonical_tag_name: String::new(),
        }
    }
}

/// A tag set (`TagSets-1`): ordered, coloured tags.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TagSet {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub description: String,
    pub sort_order: i64,
    pub tags: Vec<Tag>,
}

/// A tenant (`Tenants-1`): its tags and the environments it is connected to, per project.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Tenant {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub description: Option<String>,
    pub cloned_from_tenant_id: Option<String>,
    pub is_disabled: bool,
    pub tenant_tags: Vec<String>,
    pub project_environments: BTreeMap<String, Vec<String>>,
}

impl Tenant {
    /// Whether the tenant is connected to `project` in `environment`.
    pub fn is_connected(&self, project: &str, environment: &str) -> bool {
        self.project_environments
            .get(project)
            .is_some_and(|envs| envs.iter().any(|e| e == environment))
    }
}

/// One stored tenant variable value: clear, or sealed with the master key (sensitive).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct StoredValue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_value: Option<String>,
}

impl StoredValue {
    pub fn has_value(&self) -> bool {
        self.sealed_value.is_some() || self.value.as_deref().is_some_and(|v| !v.is_empty())
    }
}

/// A tenant's variable values (collection `TenantVariables`, id `tenantvariables-Tenants-1`,
/// owned by the tenant). Never returned as such: the API renders them with the templates.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TenantVariables {
    pub id: String,
    pub space_id: String,
    pub tenant_id: String,
    /// Project id → environment id → template id → value.
    pub project_variables: BTreeMap<String, BTreeMap<String, BTreeMap<String, StoredValue>>>,
    /// Library variable set id → template id → value.
    pub library_variables: BTreeMap<String, BTreeMap<String, StoredValue>>,
}

/// The id of a tenant's variables document.
pub fn tenant_variables_id(tenant_id: &str) -> String {
    format!("tenantvariables-{tenant_id}")
}

/// What a sealed project template value is bound to (with the tenant id as owner).
pub fn project_value_key(project: &str, environment: &str, template: &str) -> String {
    format!("project/{project}/{environment}/{template}")
}

/// What a sealed common (library set) template value is bound to.
pub fn library_value_key(library_set: &str, template: &str) -> String {
    format!("library/{library_set}/{template}")
}

/// A variable template (project `Templates[]` or library set `Templates[]`), read leniently from
/// its JSON.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub label: String,
    pub default_value: Option<String>,
    pub control_type: String,
}

impl Template {
    pub fn from_value(v: &Value) -> Template {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let default_value = match v.get("DefaultValue") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Bool(b)) => Some(if *b { "True" } else { "False" }.to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Template {
            id: s("Id"),
            name: s("Name"),
            label: s("Label"),
            default_value,
            control_type: v
                .get("DisplaySettings")
                .and_then(|d| d.get("Octopus.ControlType"))
                .and_then(Value::as_str)
                .unwrap_or("SingleLineText")
                .to_string(),
        }
    }

    pub fn is_sensitive(&self) -> bool {
        self.control_type.eq_ignore_ascii_case("Sensitive")
    }

    pub fn has_default(&self) -> bool {
        self.default_value.as_deref().is_some_and(|d| !d.is_empty())
    }

    /// How the template is named in messages: `Label (Name)` or `Name`.
    pub fn display(&self) -> String {
        if self.label.trim().is_empty() || self.label == self.name {
            self.name.clone()
        } else {
            format!("{} ({})", self.label, self.name)
        }
    }
}

/// The control types a template may have.
pub const CONTROL_TYPES: [&str; 5] = [
    "SingleLineText",
    "MultiLineText",
    "Sensitive",
    "Checkbox",
    "Select",
];

/// Splits a canonical tag name `Set/Tag` at its first `/`.
pub fn split_tag(canonical: &str) -> Option<(&str, &str)> {
    let (set, tag) = canonical.split_once('/')?;
    let (set, tag) = (set.trim(), tag.trim());
    if set.is_empty() || tag.is_empty() {
        None
    } else {
        Some((set, tag))
    }
}

/// Whether tags satisfy a tag filter: for every set the filter names, at least one of its tags
/// (OR within a set, AND across sets). Names compare ignoring case. An empty filter matches
/// nothing (a filter selects; it never selects everything by accident).
pub fn tags_match(filter: &[String], tags: &[String]) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut sets: Vec<(String, Vec<&str>)> = Vec::new();
    for f in filter {
        let set = split_tag(f)
            .map(|(s, _)| s.to_lowercase())
            .unwrap_or_else(|| f.to_lowercase());
        match sets.iter_mut().find(|(s, _)| *s == set) {
            Some((_, list)) => list.push(f),
            None => sets.push((set, vec![f])),
        }
    }
    sets.iter().all(|(_, wanted)| {
        wanted
            .iter()
            .any(|w| tags.iter().any(|t| t.trim().eq_ignore_ascii_case(w.trim())))
    })
}

/// The tenants selected by explicit ids and a tag filter: `Named ∪ Tagged(filter)`, in the
/// order of `tenants`.
pub fn select_tenants<'a>(
    tenants: &'a [Tenant],
    named_ids: &[String],
    tag_filter: &[String],
) -> Vec<&'a Tenant> {
    tenants
        .iter()
        .filter(|t| named_ids.contains(&t.id) || tags_match(tag_filter, &t.tenant_tags))
        .collect()
}

/// Whether a step (action) with these tenant tags runs for a deployment: a step without tags
/// always runs; a step with tags runs only for a tenanted deployment whose tenant matches
/// (untenanted deployments skip it, as Octopus does since 3.4).
pub fn step_runs_for(step_tags: &[String], tenant_tags: Option<&[String]>) -> bool {
    if step_tags.is_empty() {
        return true;
    }
    match tenant_tags {
        Some(tags) => tags_match(step_tags, tags),
        None => false,
    }
}

/// Whether a deployment target serves a tenant: named in its `TenantIds`, or matching its
/// `TenantTags` filter.
pub fn target_serves(
    target_tenant_ids: &[String],
    target_tags: &[String],
    tenant_id: &str,
    tenant_tags: &[String],
) -> bool {
    target_tenant_ids.iter().any(|t| t == tenant_id) || tags_match(target_tags, tenant_tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn tenant(id: &str, tags: &[&str]) -> Tenant {
        Tenant {
            id: id.into(),
            name: id.into(),
            tenant_tags: s(tags),
            ..Tenant::default()
        }
    }

    #[test]
    fn or_within_a_set_and_across_sets() {
        let f = s(&["Region/East", "Region/West", "Tier/Gold"]);
        assert!(tags_match(&f, &s(&["Region/East", "Tier/Gold"])));
        assert!(tags_match(&f, &s(&["region/west", "tier/gold", "X/Y"])));
        assert!(!tags_match(&f, &s(&["Region/East"])));
        assert!(!tags_match(&f, &s(&["Tier/Gold", "Region/North"])));
        assert!(!tags_match(&[], &s(&["Region/East"])));
        assert!(tags_match(&s(&["Region/East"]), &s(&["Region/East"])));
    }

    #[test]
    fn named_tenants_are_unioned_in() {
        let all = vec![
            tenant("Tenants-1", &["Region/East"]),
            tenant("Tenants-2", &["Region/West"]),
            tenant("Tenants-3", &[]),
        ];
        let got: Vec<&str> = select_tenants(&all, &s(&["Tenants-3"]), &s(&["Region/East"]))
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(got, ["Tenants-1", "Tenants-3"]);
        assert!(select_tenants(&all, &[], &[]).is_empty());
    }

    #[test]
    fn steps_and_targets() {
        let tags = s(&["Region/East"]);
        assert!(step_runs_for(&[], None));
        assert!(!step_runs_for(&tags, None));
        assert!(step_runs_for(&tags, Some(&tags)));
        assert!(!step_runs_for(&tags, Some(&s(&["Region/West"]))));
        assert!(target_serves(&s(&["Tenants-1"]), &[], "Tenants-1", &[]));
        assert!(target_serves(&[], &tags, "Tenants-2", &tags));
        assert!(!target_serves(
            &[],
            &tags,
            "Tenants-2",
            &s(&["Region/West"])
        ));
        assert!(!target_serves(&[], &[], "Tenants-2", &tags));
    }

    #[test]
    fn templates_are_read_leniently() {
        let t = Template::from_value(&serde_json::json!({
            "Id": "t1", "Name": "DbPassword", "Label": "Database password",
            "DisplaySettings": {"Octopus.ControlType": "Sensitive"}
        }));
        assert!(t.is_sensitive());
        assert!(!t.has_default());
        assert_eq!(t.display(), "Database password (DbPassword)");
        let t = Template::from_value(&serde_json::json!({"Name": "A", "DefaultValue": "x"}));
        assert_eq!(t.control_type, "SingleLineText");
        assert!(t.has_default());
        assert_eq!(split_tag("Region/East"), Some(("Region", "East")));
        assert_eq!(split_tag("Region/"), None);
        assert_eq!(
            split_tag("Release ring/Alpha/1"),
            Some(("Release ring", "Alpha/1"))
        );
    }
}
