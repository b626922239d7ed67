//! Compare releases: `GET /api/{space}/releases/{id}/compare/{otherId}` shows what changed
//! between two releases of one project — the packages they picked, the steps of their process
//! snapshots and the variables of their variable snapshots (the project's and each included
//! library set's). See `docs/release-diff.md` for the shape and the matching rules.
//!
//! Sensitive values are never shown. Whether one changed is decided by opening both sealed
//! values with the master key (sealing is randomised, so the sealed texts always differ) and
//! comparing the plaintexts in memory; only `{"Sensitive": true, "Changed": …}` leaves here.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use ferry_crypto::{MasterKey, open, variable_aad};
use ferry_domain::{
    DeploymentAction, DeploymentProcess, DeploymentStep, Project, Release, Variable, VariableScope,
};
use serde_json::{Map, Value, json};

use super::variables::{SourcedSet, release_sets};
use super::*;

/// At most this many changed lines of a script are shown.
const MAX_SCRIPT_LINES: usize = 20;
/// Bigger scripts are not diffed line by line (old lines removed, new lines added instead).
const MAX_DIFF_CELLS: usize = 4_000_000;
const SCRIPT_BODY: &str = "Octopus.Action.Script.ScriptBody";
const TARGET_ROLES: &str = "Octopus.Action.TargetRoles";

/// `GET /releases/{id}/compare/{otherId}`: what changed from release `id` to release `otherId`.
pub async fn compare(
    State(st): State<AppState>,
    Path((space, id, other)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, from): (_, Release) = load(&st, "Releases", &space, &id, "Release").await?;
    let (_, to): (_, Release) = load(&st, "Releases", &space, &other, "Release").await?;
    if from.project_id != to.project_id {
        let a = project_name(&st, &from.project_id).await;
        let b = project_name(&st, &to.project_id).await;
        return Err(ApiError::bad_request(format!(
            "Release {} belongs to the project '{a}' and release {} to the project '{b}'; only releases of the same project can be compared",
            from.version, to.version
        )));
    }
    let from_process = snapshot(&st, &space, &from).await?;
    let to_process = snapshot(&st, &space, &to).await?;
    let from_sets = release_sets(&st, &space, &from).await?;
    let to_sets = release_sets(&st, &space, &to).await?;
    Ok(Json(json!({
        "From": {"Id": from.id, "Version": from.version},
        "To": {"Id": to.id, "Version": to.version},
        "Packages": diff_packages(&from, &to),
        "Steps": diff_steps(&from_process.steps, &to_process.steps),
        "Variables": diff_variables(&st.master_key, &from_sets, &to_sets),
    })))
}

async fn snapshot(st: &AppState, space: &str, r: &Release) -> ApiResult<DeploymentProcess> {
    let (_, p) = load(
        st,
        super::process::SNAPSHOTS,
        space,
        &r.project_deployment_process_snapshot_id,
        "Deployment process snapshot",
    )
    .await?;
    Ok(p)
}

async fn project_name(st: &AppState, id: &str) -> String {
    match st.db.get_doc(id).await {
        Ok(Some(d)) => parse_body::<Project>(&d)
            .map(|p| p.name)
            .unwrap_or_else(|_| id.to_string()),
        _ => id.to_string(),
    }
}

// ---- packages ----

fn diff_packages(from: &Release, to: &Release) -> Vec<Value> {
    let key = |s: &ferry_domain::SelectedPackage| {
        (
            s.action_name.to_lowercase(),
            s.package_reference_name.to_lowercase(),
        )
    };
    let old: BTreeMap<_, _> = from.selected_packages.iter().map(|s| (key(s), s)).collect();
    let new: BTreeMap<_, _> = to.selected_packages.iter().map(|s| (key(s), s)).collect();
    let mut out = Vec::new();
    for s in &to.selected_packages {
        match old.get(&key(s)) {
            Some(o) if o.version == s.version => {}
            o => out.push(json!({
                "ActionName": s.action_name,
                "PackageReferenceName": s.package_reference_name,
                "From": o.map(|o| o.version.clone()),
                "To": s.version,
            })),
        }
    }
    for s in &from.selected_packages {
        if !new.contains_key(&key(s)) {
            out.push(json!({
                "ActionName": s.action_name,
                "PackageReferenceName": s.package_reference_name,
                "From": s.version,
                "To": Value::Null,
            }));
        }
    }
    out
}

// ---- steps ----

/// Pairs items by id first, then (case-insensitively) by name. Returns the pairs in the order
/// of `new`, the unmatched new items and the unmatched old items.
#[allow(clippy::type_complexity)]
fn pair<'a, T>(
    old: &'a [T],
    new: &'a [T],
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> (Vec<(&'a T, &'a T)>, Vec<&'a T>, Vec<&'a T>) {
    let mut taken = vec![false; old.len()];
    let mut matched: Vec<Option<usize>> = vec![None; new.len()];
    for (j, n) in new.iter().enumerate() {
        if id(n).is_empty() {
            continue;
        }
        if let Some(i) = (0..old.len()).find(|&i| !taken[i] && id(&old[i]) == id(n)) {
            taken[i] = true;
            matched[j] = Some(i);
        }
    }
    for (j, n) in new.iter().enumerate() {
        if matched[j].is_some() {
            continue;
        }
        if let Some(i) =
            (0..old.len()).find(|&i| !taken[i] && name(&old[i]).eq_ignore_ascii_case(name(n)))
        {
            taken[i] = true;
            matched[j] = Some(i);
        }
    }
    let mut pairs = Vec::new();
    let mut added = Vec::new();
    for (j, n) in new.iter().enumerate() {
        match matched[j] {
            Some(i) => pairs.push((&old[i], n)),
            None => added.push(n),
        }
    }
    let removed = old
        .iter()
        .enumerate()
        .filter(|(i, _)| !taken[*i])
        .map(|(_, o)| o)
        .collect();
    (pairs, added, removed)
}

fn diff_steps(old: &[DeploymentStep], new: &[DeploymentStep]) -> Value {
    let (pairs, added, removed) = pair(old, new, |s| &s.id, |s| &s.name);
    let mut matched_old: Vec<*const DeploymentStep> =
        pairs.iter().map(|(o, _)| std::ptr::from_ref(*o)).collect();
    matched_old.sort_by_key(|p| old.iter().position(|s| std::ptr::eq(s, *p)));
    let rank_old: std::collections::HashMap<*const DeploymentStep, usize> = matched_old
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, i))
        .collect();
    let mut changed = Vec::new();
    for (rank_new, (o, n)) in pairs.into_iter().enumerate() {
        let mut changes = Vec::new();
        let mut scripts = Vec::new();
        if o.name != n.name {
            changes.push(format!("Renamed from '{}' to '{}'", o.name, n.name));
        }
        // Moved: its place among the steps both releases have changed (steps added or
        // removed around it do not count).
        if let Some(a) = rank_old.get(&std::ptr::from_ref(o)) {
            if *a != rank_new {
                changes.push(format!(
                    "Moved from position {} to {} (among the steps both releases have)",
                    a + 1,
                    rank_new + 1
                ));
            }
        }
        scalar(&mut changes, "Condition", &o.condition, &n.condition);
        scalar(
            &mut changes,
            "StartTrigger",
            &o.start_trigger,
            &n.start_trigger,
        );
        scalar(
            &mut changes,
            "PackageRequirement",
            &o.package_requirement,
            &n.package_requirement,
        );
        diff_properties(&mut changes, &mut scripts, "", &o.properties, &n.properties);
        let multi = o.actions.len() > 1 || n.actions.len() > 1;
        let (apairs, aadded, aremoved) = pair(&o.actions, &n.actions, |a| &a.id, |a| &a.name);
        for a in aadded {
            changes.push(format!("Action '{}' added", a.name));
        }
        for a in aremoved {
            changes.push(format!("Action '{}' removed", a.name));
        }
        for (oa, na) in apairs {
            let prefix = if multi {
                format!("Action '{}': ", na.name)
            } else {
                String::new()
            };
            diff_action(&mut changes, &mut scripts, &prefix, oa, na);
        }
        if !changes.is_empty() {
            let mut entry = json!({"Name": n.name, "Changes": changes});
            if !scripts.is_empty() {
                entry["ScriptDiffs"] = Value::Array(scripts);
            }
            changed.push(entry);
        }
    }
    json!({
        "Added": added.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "Removed": removed.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "Changed": changed,
    })
}

fn scalar(changes: &mut Vec<String>, what: &str, old: &str, new: &str) {
    if old != new {
        changes.push(format!("{what} changed from {old} to {new}"));
    }
}

fn list_text(l: &[String]) -> String {
    format!("[{}]", l.join(", "))
}

fn list(changes: &mut Vec<String>, what: &str, old: &[String], new: &[String]) {
    let mut a = old.to_vec();
    let mut b = new.to_vec();
    a.sort();
    b.sort();
    if a != b {
        changes.push(format!(
            "{what} changed from {} to {}",
            list_text(old),
            list_text(new)
        ));
    }
}

fn roles(v: Option<&String>) -> Vec<String> {
    v.map(|r| {
        r.split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// Property differences: names added, removed or changed (never values, which may be long or
/// private); roles as lists; a script body also as a short line diff.
fn diff_properties(
    changes: &mut Vec<String>,
    scripts: &mut Vec<Value>,
    prefix: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) {
    if old.get(TARGET_ROLES) != new.get(TARGET_ROLES) {
        list(
            changes,
            &format!("{prefix}Roles"),
            &roles(old.get(TARGET_ROLES)),
            &roles(new.get(TARGET_ROLES)),
        );
    }
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in names {
        if k == TARGET_ROLES {
            continue;
        }
        match (old.get(k), new.get(k)) {
            (None, Some(_)) => changes.push(format!("{prefix}{k} added")),
            (Some(_), None) => changes.push(format!("{prefix}{k} removed")),
            (Some(a), Some(b)) if a != b => {
                changes.push(format!("{prefix}{k} changed"));
                if k == SCRIPT_BODY {
                    let (lines, more) = line_diff(a, b);
                    scripts.push(json!({
                        "Property": k,
                        "Lines": lines,
                        "MoreLines": more,
                    }));
                }
            }
            _ => {}
        }
    }
}

fn diff_action(
    changes: &mut Vec<String>,
    scripts: &mut Vec<Value>,
    prefix: &str,
    o: &DeploymentAction,
    n: &DeploymentAction,
) {
    if o.name != n.name {
        changes.push(format!(
            "{prefix}Action renamed from '{}' to '{}'",
            o.name, n.name
        ));
    }
    scalar(
        changes,
        &format!("{prefix}ActionType"),
        &o.action_type,
        &n.action_type,
    );
    if o.is_disabled != n.is_disabled {
        changes.push(format!(
            "{prefix}{}",
            if n.is_disabled { "Disabled" } else { "Enabled" }
        ));
    }
    if o.is_required != n.is_required {
        changes.push(format!(
            "{prefix}{}",
            if n.is_required {
                "Now required"
            } else {
                "No longer required"
            }
        ));
    }
    scalar(
        changes,
        &format!("{prefix}Condition"),
        &o.condition,
        &n.condition,
    );
    list(
        changes,
        &format!("{prefix}Environments"),
        &o.environments,
        &n.environments,
    );
    list(
        changes,
        &format!("{prefix}ExcludedEnvironments"),
        &o.excluded_environments,
        &n.excluded_environments,
    );
    list(
        changes,
        &format!("{prefix}Channels"),
        &o.channels,
        &n.channels,
    );
    list(
        changes,
        &format!("{prefix}TenantTags"),
        &o.tenant_tags,
        &n.tenant_tags,
    );
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_string());
    if o.worker_pool_id != n.worker_pool_id {
        scalar(
            changes,
            &format!("{prefix}WorkerPoolId"),
            &opt(&o.worker_pool_id),
            &opt(&n.worker_pool_id),
        );
    }
    if o.worker_pool_variable != n.worker_pool_variable {
        scalar(
            changes,
            &format!("{prefix}WorkerPoolVariable"),
            &opt(&o.worker_pool_variable),
            &opt(&n.worker_pool_variable),
        );
    }
    if o.notes != n.notes {
        changes.push(format!("{prefix}Notes changed"));
    }
    if container(&o.container) != container(&n.container) {
        changes.push(format!("{prefix}Container changed"));
    }
    let (ppairs, padded, premoved) = pair(&o.packages, &n.packages, |p| &p.id, |p| p.name.as_str());
    let pname = |p: &ferry_domain::PackageReference| {
        if p.name.is_empty() {
            p.package_id.clone()
        } else {
            p.name.clone()
        }
    };
    for p in padded {
        changes.push(format!("{prefix}Package reference '{}' added", pname(p)));
    }
    for p in premoved {
        changes.push(format!("{prefix}Package reference '{}' removed", pname(p)));
    }
    for (op, np) in ppairs {
        if op.package_id != np.package_id {
            changes.push(format!(
                "{prefix}Package changed from {} to {}",
                op.package_id, np.package_id
            ));
        } else if op != np {
            changes.push(format!("{prefix}Package reference '{}' changed", pname(np)));
        }
    }
    diff_properties(changes, scripts, prefix, &o.properties, &n.properties);
}

/// A container setting without its empty parts: `null`, `{}` and `{"Image": null, "FeedId":
/// null}` all mean "no container".
fn container(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o
            .iter()
            .filter(|(_, v)| !v.is_null() && v.as_str() != Some(""))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => Map::new(),
    }
}

/// The changed lines of `old` → `new` (`-line`, `+line`), at most [`MAX_SCRIPT_LINES`], and
/// how many more there are.
fn line_diff(old: &str, new: &str) -> (Vec<String>, usize) {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut out = Vec::new();
    if a.len().saturating_mul(b.len()) > MAX_DIFF_CELLS {
        out.extend(a.iter().map(|l| format!("-{l}")));
        out.extend(b.iter().map(|l| format!("+{l}")));
    } else {
        // Longest common subsequence, then walk it.
        let (n, m) = (a.len(), b.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        let at = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[at(i, j)] = if a[i] == b[j] {
                    lcs[at(i + 1, j + 1)] + 1
                } else {
                    lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && a[i] == b[j] {
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
                out.push(format!("-{}", a[i]));
                i += 1;
            } else {
                out.push(format!("+{}", b[j]));
                j += 1;
            }
        }
    }
    let more = out.len().saturating_sub(MAX_SCRIPT_LINES);
    out.truncate(MAX_SCRIPT_LINES);
    (out, more)
}

// ---- variables ----

/// A variable of a release with where it comes from.
struct Entry<'a> {
    owner: &'a str,
    source: &'a str,
    var: &'a Variable,
    key: (String, String, String),
}

fn sorted_scope(s: &VariableScope) -> VariableScope {
    let sort = |v: &Vec<String>| {
        let mut v = v.clone();
        v.sort();
        v
    };
    VariableScope {
        environment: sort(&s.environment),
        role: sort(&s.role),
        machine: sort(&s.machine),
        action: sort(&s.action),
        channel: sort(&s.channel),
        tenant: sort(&s.tenant),
        tenant_tag: sort(&s.tenant_tag),
        process_owner: sort(&s.process_owner),
    }
}

/// The scope as stored, without its empty parts.
fn scope_json(s: &VariableScope) -> Value {
    let mut m = Map::new();
    for (k, v) in [
        ("Environment", &s.environment),
        ("Role", &s.role),
        ("Machine", &s.machine),
        ("Action", &s.action),
        ("Channel", &s.channel),
        ("Tenant", &s.tenant),
        ("TenantTag", &s.tenant_tag),
        ("ProcessOwner", &s.process_owner),
    ] {
        if !v.is_empty() {
            m.insert(k.to_string(), json!(v));
        }
    }
    Value::Object(m)
}

fn entries(sets: &[SourcedSet]) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    for s in sets {
        for v in &s.set.variables {
            out.push(Entry {
                owner: &s.set.owner_id,
                source: &s.label,
                var: v,
                key: (
                    s.set.owner_id.clone(),
                    v.name.to_lowercase(),
                    serde_json::to_string(&sorted_scope(&v.scope)).unwrap_or_default(),
                ),
            });
        }
    }
    out
}

fn is_sensitive(v: &Variable) -> bool {
    v.is_sensitive || v.sealed_value.is_some()
}

/// A value as the diff shows it: the text of a plain variable, a marker for a sensitive one.
fn shown(v: &Variable) -> Value {
    if is_sensitive(v) {
        json!({"Sensitive": true})
    } else {
        json!(v.value)
    }
}

/// Whether two sensitive values differ, by opening both; `None` when one cannot be opened.
/// The plaintexts never leave this function.
fn sensitive_changed(key: &MasterKey, a: &Entry<'_>, b: &Entry<'_>) -> Option<bool> {
    let plain = |e: &Entry<'_>| -> Option<Option<String>> {
        match &e.var.sealed_value {
            Some(s) => open(key, &variable_aad(e.owner, &e.var.id), s)
                .ok()
                .map(Some),
            None => Some(e.var.value.clone()),
        }
    };
    let (x, y) = (plain(a)?, plain(b)?);
    Some(x != y)
}

fn base_entry(e: &Entry<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Name".into(), json!(e.var.name));
    m.insert("Source".into(), json!(e.source));
    m.insert("Scope".into(), scope_json(&e.var.scope));
    m
}

fn diff_variables(key: &MasterKey, old: &[SourcedSet], new: &[SourcedSet]) -> Value {
    let old = entries(old);
    let new = entries(new);
    let mut taken = vec![false; old.len()];
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut unchanged_sensitive = Vec::new();
    for n in &new {
        let Some(i) = (0..old.len()).find(|&i| !taken[i] && old[i].key == n.key) else {
            let mut m = base_entry(n);
            m.insert("Value".into(), shown(n.var));
            added.push(Value::Object(m));
            continue;
        };
        taken[i] = true;
        let o = &old[i];
        let mut what = Vec::new();
        let sensitive = is_sensitive(o.var) || is_sensitive(n.var);
        let value_changed = if sensitive {
            if is_sensitive(o.var) && is_sensitive(n.var) {
                sensitive_changed(key, o, n)
            } else {
                // Plain on one side, sensitive on the other: treat as changed without opening.
                Some(true)
            }
        } else {
            Some(o.var.value != n.var.value)
        };
        if value_changed != Some(false) {
            what.push("Value");
        }
        if is_sensitive(o.var) != is_sensitive(n.var) {
            what.push("IsSensitive");
        }
        if o.var.kind != n.var.kind {
            what.push("Type");
        }
        if o.var.description != n.var.description {
            what.push("Description");
        }
        if o.var.prompt != n.var.prompt {
            what.push("Prompt");
        }
        let mut m = base_entry(n);
        if sensitive {
            m.insert(
                "From".into(),
                json!({"Sensitive": is_sensitive(o.var), "Changed": value_changed}),
            );
            m.insert(
                "To".into(),
                json!({"Sensitive": is_sensitive(n.var), "Changed": value_changed}),
            );
        } else {
            m.insert("From".into(), json!(o.var.value));
            m.insert("To".into(), json!(n.var.value));
        }
        if what.is_empty() {
            if sensitive {
                unchanged_sensitive.push(Value::Object(m));
            }
            continue;
        }
        m.insert("Changes".into(), json!(what));
        changed.push(Value::Object(m));
    }
    let removed: Vec<Value> = old
        .iter()
        .enumerate()
        .filter(|(i, _)| !taken[*i])
        .map(|(_, o)| {
            let mut m = base_entry(o);
            m.insert("Value".into(), shown(o.var));
            Value::Object(m)
        })
        .collect();
    json!({
        "Added": added,
        "Removed": removed,
        "Changed": changed,
        "SensitiveUnchanged": unchanged_sensitive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_lists_changed_lines_only() {
        let (lines, more) = line_diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(lines, vec!["-b", "+B", "+d"]);
        assert_eq!(more, 0);
        let old: String = (0..30).map(|i| format!("x{i}\n")).collect();
        let (lines, more) = line_diff(&old, "");
        assert_eq!(lines.len(), MAX_SCRIPT_LINES);
        assert_eq!(more, 10);
    }

    #[test]
    fn steps_pair_by_id_then_name() {
        let step = |id: &str, name: &str| DeploymentStep {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        };
        let old = vec![step("1", "A"), step("2", "B"), step("3", "C")];
        let new = vec![step("1", "A2"), step("x", "b"), step("y", "D")];
        let (pairs, added, removed) = pair(&old, &new, |s| &s.id, |s| &s.name);
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].0.name, "A");
        assert_eq!(pairs[1].0.name, "B");
        assert_eq!(added[0].name, "D");
        assert_eq!(removed[0].name, "C");
    }
}
