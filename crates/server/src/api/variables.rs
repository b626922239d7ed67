//! Variable sets: a project's variables and each library variable set's (`Variables[]` with
//! `Scope` keys in the singular), the snapshots releases take of them, and "explain", which
//! shows which value of each name wins in a context and why the others do not.
//!
//! Sensitive values are write-only. A `PUT` seals each new sensitive value with the master key
//! (XChaCha20-Poly1305, bound to the set's owner and the variable's id) into `SealedValue` and
//! stores no clear value; a sensitive variable sent with `Value: null` keeps its sealed value.
//! Reads show `Value: null`, `IsSensitive: true` and never `SealedValue`; audit events show a
//! salted hash. Scope ids are checked against what exists (environments, the project's steps
//! and channels, …); ids a variable already had are kept even if what they named is gone.

use std::collections::{BTreeSet, HashMap, HashSet};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use ferry_crypto::{MasterKey, open, seal, variable_aad};
use ferry_domain::ids::variable_set_id;
use ferry_domain::variables::{Applies, ScopeContext, SourceSet, VariableIndex};
use ferry_domain::{
    Channel, DeploymentProcess, Environment, Project, Release, Variable, VariableSet,
};
use ferry_store::DocQuery;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::libraryvariablesets::{self, LibraryVariableSet, is_library_id};
use super::*;
use crate::input::Body;

pub const C: &str = "VariableSets";
pub const SNAPSHOTS: &str = "VariableSetSnapshots";
/// How explain shows a sensitive value.
pub const MASK: &str = "********";

// ---- what a set's values may be scoped to ----

/// The scope values a variable set's owner offers: what `ScopeValues` lists and what scope
/// ids are checked against.
struct Universe {
    library: bool,
    owner_id: String,
    environments: Vec<(String, String)>,
    /// The project's process (none for a library set).
    process: Option<DeploymentProcess>,
    /// Step and action ids of the process.
    action_ids: HashSet<String>,
    channels: Vec<(String, String)>,
    /// Projects whose deployment process a value may be scoped to.
    processes: Vec<(String, String)>,
    /// The space's tenants (id, name) and canonical tag names.
    tenants: Vec<(String, String)>,
    tenant_tags: Vec<String>,
}

impl Universe {
    fn step_roles(&self) -> BTreeSet<String> {
        self.process
            .iter()
            .flat_map(|p| p.steps.iter())
            .flat_map(|s| step_roles(s).into_iter())
            .collect()
    }

    /// Actions as `ScopeValues` lists them: each action, and each step of several actions.
    fn actions(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for s in self.process.iter().flat_map(|p| p.steps.iter()) {
            if s.actions.len() != 1 {
                out.push((s.id.clone(), s.name.clone()));
            }
            for a in &s.actions {
                out.push((a.id.clone(), a.name.clone()));
            }
        }
        out
    }

    fn name_of<'a>(list: &'a [(String, String)], id: &'a str) -> &'a str {
        list.iter()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n.as_str())
            .unwrap_or(id)
    }
}

fn step_roles(s: &ferry_domain::DeploymentStep) -> Vec<String> {
    s.properties
        .get("Octopus.Action.TargetRoles")
        .map(|r| {
            r.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

async fn id_names<T: serde::de::DeserializeOwned>(
    st: &AppState,
    q: DocQuery,
    pick: impl Fn(T) -> (String, String),
) -> ApiResult<Vec<(String, String)>> {
    let (rows, _) = st.db.list_docs(&q).await?;
    rows.iter().map(|r| parse_body::<T>(r).map(&pick)).collect()
}

async fn universe(st: &AppState, space: &str, owner_id: &str) -> ApiResult<Universe> {
    let in_space = |c: &str| DocQuery {
        space_id: Some(space.to_string()),
        ..DocQuery::new(c)
    };
    let environments = id_names(st, in_space("Environments"), |e: Environment| {
        (e.id, e.name)
    })
    .await?;
    let tenants = id_names(st, in_space("Tenants"), |t: ferry_domain::Tenant| {
        (t.id, t.name)
    })
    .await?;
    let tenant_tags = super::tagsets::all_sets(st, space)
        .await?
        .into_iter()
        .flat_map(|s| s.tags.into_iter().map(|t| t.canonical_tag_name))
        .collect();
    let mut u = Universe {
        library: is_library_id(owner_id),
        owner_id: owner_id.to_string(),
        environments,
        process: None,
        action_ids: HashSet::new(),
        channels: Vec::new(),
        processes: Vec::new(),
        tenants,
        tenant_tags,
    };
    if u.library {
        u.processes = id_names(st, in_space("Projects"), |p: Project| (p.id, p.name)).await?;
        return Ok(u);
    }
    let project: Project = match st.db.get_doc(owner_id).await? {
        Some(d) if d.collection == "Projects" => parse_body(&d)?,
        _ => return Ok(u),
    };
    u.channels = id_names(
        st,
        DocQuery {
            owner_id: Some(project.id.clone()),
            ..in_space("Channels")
        },
        |c: Channel| (c.id, c.name),
    )
    .await?;
    if let Some(d) = st.db.get_doc(&project.deployment_process_id).await? {
        let process: DeploymentProcess = parse_body(&d)?;
        for s in &process.steps {
            u.action_ids.insert(s.id.clone());
            u.action_ids.extend(s.actions.iter().map(|a| a.id.clone()));
        }
        u.process = Some(process);
    }
    u.processes = vec![(project.id, project.name)];
    Ok(u)
}

fn id_name_list(items: &[(String, String)]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|(id, name)| json!({"Id": id, "Name": name}))
            .collect(),
    )
}

/// Octopus's `ScopeValues`: every value the set's variables may be scoped to, with names.
fn scope_values(u: &Universe, set: &VariableSet) -> Value {
    let mut roles = u.step_roles();
    roles.extend(
        set.variables
            .iter()
            .flat_map(|v| v.scope.role.iter().cloned()),
    );
    let roles: Vec<(String, String)> = roles.into_iter().map(|r| (r.clone(), r)).collect();
    let processes: Vec<Value> = u
        .processes
        .iter()
        .map(|(id, name)| json!({"ProcessType": "Deployment", "Id": id, "Name": name}))
        .collect();
    json!({
        "Environments": id_name_list(&u.environments),
        "Machines": [],
        "Actions": id_name_list(&u.actions()),
        "Roles": id_name_list(&roles),
        "Channels": id_name_list(&u.channels),
        "TenantTags": u.tenant_tags.iter().map(|t| json!({"Id": t, "Name": t})).collect::<Vec<_>>(),
        "Tenants": id_name_list(&u.tenants),
        "Processes": processes,
    })
}

/// A scope with names instead of ids, for people: `Environment: Production; Role: web`.
fn scope_text(u: &Universe, v: &Variable) -> String {
    let s = &v.scope;
    let names = |list: &[(String, String)], ids: &[String]| -> String {
        ids.iter()
            .map(|i| Universe::name_of(list, i).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let actions = u.actions();
    let parts = [
        ("Environment", names(&u.environments, &s.environment)),
        ("Role", s.role.join(", ")),
        ("Machine", s.machine.join(", ")),
        ("Step", names(&actions, &s.action)),
        ("Channel", names(&u.channels, &s.channel)),
        ("Tenant", names(&u.tenants, &s.tenant)),
        ("Tenant tag", s.tenant_tag.join(", ")),
        ("Process", names(&u.processes, &s.process_owner)),
    ];
    parts
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

// ---- reading ----

/// The variables as the API shows them: a sensitive variable has `Value: null` and no
/// `SealedValue`, always.
pub fn public_variables(vars: &[Variable]) -> Vec<Variable> {
    vars.iter()
        .map(|v| {
            let mut v = v.clone();
            if v.is_sensitive || v.sealed_value.is_some() {
                v.is_sensitive = true;
                v.value = None;
            }
            v.sealed_value = None;
            v
        })
        .collect()
}

async fn render(st: &AppState, space: &str, v: &VariableSet) -> ApiResult<Value> {
    let u = universe(st, space, &v.owner_id).await?;
    Ok(render_with(&u, space, v))
}

fn render_with(u: &Universe, space: &str, v: &VariableSet) -> Value {
    let public = VariableSet {
        variables: public_variables(&v.variables),
        ..v.clone()
    };
    let mut extra = vec![];
    if u.library {
        extra.push((
            "LibraryVariableSet",
            format!("/api/{space}/libraryvariablesets/{}", v.owner_id),
        ));
    } else {
        extra.push(("Project", format!("/api/{space}/projects/{}", v.owner_id)));
    }
    let mut out = with_links(
        &public,
        links(format!("/api/{space}/variables/{}", v.id), &extra),
    );
    if let Some(o) = out.as_object_mut() {
        o.insert("ScopeValues".to_string(), scope_values(u, v));
    }
    out
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    match st.db.get_doc(&id).await? {
        Some(d) if (d.collection == C || d.collection == SNAPSHOTS) && d.space_id == space => {
            Ok(Json(render(&st, &space, &parse_body(&d)?).await?))
        }
        _ => Err(ApiError::not_found(format!(
            "Variable set '{id}' was not found"
        ))),
    }
}

pub async fn get_for_project(
    State(st): State<AppState>,
    Path((space, project)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, p) = super::projects::resolve(&st, &space, &project).await?;
    get(State(st), Path((space, variable_set_id(&p.id)))).await
}

// ---- writing ----

fn is_sensitive_kind(kind: &str) -> bool {
    kind.eq_ignore_ascii_case("Sensitive")
}

/// Checks the scope ids a variable newly names (ids it already had are kept as they are).
fn check_scope(u: &Universe, v: &Variable, old: Option<&Variable>, problems: &mut Vec<String>) {
    let empty = ferry_domain::VariableScope::default();
    let before = old.map(|o| &o.scope).unwrap_or(&empty);
    let added = |now: &[String], then: &[String]| -> Vec<String> {
        now.iter().filter(|i| !then.contains(i)).cloned().collect()
    };
    let who = format!("Variable '{}'", v.name);
    for id in added(&v.scope.environment, &before.environment) {
        if !u.environments.iter().any(|(i, _)| *i == id) {
            let hint = u
                .environments
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(&id))
                .map(|(i, _)| format!(" (scopes take ids: use {i})"))
                .unwrap_or_default();
            problems.push(format!(
                "{who}: the Environment scope names '{id}', which is not an environment of this space{hint}"
            ));
        }
    }
    for id in added(&v.scope.machine, &before.machine) {
        problems.push(format!(
            "{who}: the Machine scope names '{id}', but this space has no deployment target with that id"
        ));
    }
    for id in added(&v.scope.action, &before.action) {
        if u.library {
            problems.push(format!(
                "{who}: library variable set values cannot be scoped to steps (Action scope '{id}')"
            ));
        } else if !u.action_ids.contains(&id) {
            problems.push(format!(
                "{who}: the Action scope names '{id}', which is not a step or action of the project's deployment process"
            ));
        }
    }
    for id in added(&v.scope.channel, &before.channel) {
        if u.library {
            problems.push(format!(
                "{who}: library variable set values cannot be scoped to channels (Channel scope '{id}')"
            ));
        } else if !u.channels.iter().any(|(i, _)| *i == id) {
            problems.push(format!(
                "{who}: the Channel scope names '{id}', which is not a channel of this project"
            ));
        }
    }
    for id in added(&v.scope.tenant, &before.tenant) {
        if !u.tenants.iter().any(|(i, _)| *i == id) {
            let hint = u
                .tenants
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(&id))
                .map(|(i, _)| format!(" (scopes take ids: use {i})"))
                .unwrap_or_default();
            problems.push(format!(
                "{who}: the Tenant scope names '{id}', which is not a tenant of this space{hint}"
            ));
        }
    }
    for id in added(&v.scope.tenant_tag, &before.tenant_tag) {
        if !u.tenant_tags.contains(&id) {
            let hint = u
                .tenant_tags
                .iter()
                .find(|t| t.eq_ignore_ascii_case(&id))
                .map(|t| format!(" (did you mean '{t}'?)"))
                .unwrap_or_default();
            problems.push(format!(
                "{who}: the TenantTag scope names '{id}', which is not a tag of this space (tags are written 'Tag set/Tag'){hint}"
            ));
        }
    }
    for id in added(&v.scope.process_owner, &before.process_owner) {
        if u.processes.iter().any(|(i, _)| *i == id) {
            continue;
        }
        if u.library {
            problems.push(format!(
                "{who}: the ProcessOwner scope names '{id}', which is not a project of this space"
            ));
        } else {
            problems.push(format!(
                "{who}: the ProcessOwner scope names '{id}'; a project's variables can only be scoped to its own deployment process ({})",
                u.owner_id
            ));
        }
    }
}

/// Octopus's prompt shape, `{Label, Description, Required, DisplaySettings}`.
fn normalize_prompt(name: &str, p: Option<Value>, problems: &mut Vec<String>) -> Option<Value> {
    let m = match p? {
        Value::Object(m) => m,
        _ => {
            problems.push(format!(
                "Variable '{name}': Prompt must be an object {{Label, Description, Required, DisplaySettings}}"
            ));
            return None;
        }
    };
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let required = match m.get("Required") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    };
    let mut display = match m.get("DisplaySettings") {
        Some(Value::Object(d)) => d.clone(),
        _ => Map::new(),
    };
    display
        .entry("Octopus.ControlType")
        .or_insert_with(|| json!("SingleLineText"));
    Some(json!({
        "Label": text("Label"),
        "Description": text("Description"),
        "Required": required,
        "DisplaySettings": display,
    }))
}

/// Gives new variables ids, seals sensitive values, keeps the sealed value of a sensitive
/// variable sent without one, normalises prompts and checks scopes. All problems at once.
fn prepare(
    key: &MasterKey,
    u: &Universe,
    old: &VariableSet,
    vars: &mut [Variable],
) -> ApiResult<()> {
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    for var in vars.iter_mut() {
        var.name = var.name.trim().to_string();
        if var.name.is_empty() {
            problems.push("Every variable needs a Name".to_string());
            continue;
        }
        if var.id.is_empty() || !ids.insert(var.id.clone()) {
            var.id = uuid::Uuid::new_v4().to_string();
            ids.insert(var.id.clone());
        }
        let before = old.variables.iter().find(|o| o.id == var.id);
        // Only the server seals; whatever a client sends here is ignored.
        var.sealed_value = None;
        if var.is_sensitive || is_sensitive_kind(&var.kind) {
            var.is_sensitive = true;
            if var.kind.is_empty() || var.kind.eq_ignore_ascii_case("String") {
                var.kind = "Sensitive".to_string();
            }
            var.sealed_value = match var.value.take() {
                Some(plain) => Some(seal(key, &variable_aad(&old.owner_id, &var.id), &plain)),
                None => before
                    .filter(|b| b.is_sensitive)
                    .and_then(|b| b.sealed_value.clone()),
            };
        } else if before.is_some_and(|b| b.is_sensitive) && var.value.is_none() {
            problems.push(format!(
                "Variable '{}' was sensitive: to make it non-sensitive, give it a new Value (its old value cannot be shown)",
                var.name
            ));
        }
        var.prompt = normalize_prompt(&var.name, var.prompt.take(), &mut problems);
        let mut roles = Vec::new();
        for r in var.scope.role.drain(..) {
            let r = r.trim().to_string();
            if !r.is_empty() && !roles.contains(&r) {
                roles.push(r);
            }
        }
        var.scope.role = roles;
        check_scope(u, var, before, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = problems;
        Err(e)
    }
}

/// A salted SHA-256 of a sensitive value for the audit log: shows that it changed, never what
/// it is. The salt is derived from the master key, so it is per installation and secret.
fn audit_hash(key: &MasterKey, value: &str) -> String {
    let salt = Sha256::digest(format!("ferry/audit-salt/{}", key.to_base64()).as_bytes());
    let mut h = Sha256::new();
    h.update(salt);
    h.update(value.as_bytes());
    format!("salted-sha256:{}", hex::encode(h.finalize()))
}

/// A variable as the audit log records it: sensitive values only as a salted hash.
fn audit_view(key: &MasterKey, owner: &str, v: &Variable) -> Value {
    let value = if v.is_sensitive {
        match &v.sealed_value {
            Some(s) => match open(key, &variable_aad(owner, &v.id), s) {
                Ok(plain) => json!(audit_hash(key, &plain)),
                Err(_) => json!("(sealed value that cannot be opened)"),
            },
            None => Value::Null,
        }
    } else {
        json!(v.value)
    };
    json!({
        "Name": v.name,
        "Value": value,
        "IsSensitive": v.is_sensitive,
        "Type": v.kind,
        "Description": v.description,
        "Scope": v.scope,
        "Prompt": v.prompt,
    })
}

/// What a `PUT` changed, variable by variable.
fn changes(key: &MasterKey, old: &VariableSet, new: &VariableSet) -> Vec<Value> {
    let owner = &old.owner_id;
    let mut out = Vec::new();
    for n in &new.variables {
        let after = audit_view(key, owner, n);
        match old.variables.iter().find(|o| o.id == n.id) {
            None => {
                out.push(json!({"Change": "Added", "Id": n.id, "Name": n.name, "After": after}))
            }
            Some(o) => {
                let before = audit_view(key, owner, o);
                if before != after {
                    out.push(json!({"Change": "Modified", "Id": n.id, "Name": n.name, "Before": before, "After": after}));
                }
            }
        }
    }
    for o in &old.variables {
        if !new.variables.iter().any(|n| n.id == o.id) {
            out.push(json!({"Change": "Removed", "Id": o.id, "Name": o.name, "Before": audit_view(key, owner, o)}));
        }
    }
    out
}

pub async fn put(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut v): Body<VariableSet>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, VariableSet) = match st.db.get_doc(&id).await? {
        Some(d) if d.collection == C && d.space_id == space => {
            let t = parse_body(&d)?;
            (d, t)
        }
        Some(d) if d.collection == SNAPSHOTS && d.space_id == space => {
            return Err(ApiError::bad_request(
                "A release's variable snapshot cannot be changed; change the project's variables and update the release's variables instead",
            ));
        }
        _ => {
            return Err(ApiError::not_found(format!(
                "Variable set '{id}' was not found"
            )));
        }
    };
    if v.version != 0 && v.version != old.version {
        return Err(ApiError::conflict(format!(
            "The variable set was changed by someone else (version {} is current); reload it and try again",
            old.version
        )));
    }
    let u = universe(&st, &space, &old.owner_id).await?;
    prepare(&st.master_key, &u, &old, &mut v.variables)?;
    v.id = old.id.clone();
    v.space_id = space.clone();
    v.owner_id = old.owner_id.clone();
    v.version = old.version + 1;
    let owner_name = match st.db.get_doc(&old.owner_id).await? {
        Some(d) if u.library => format!("library variable set {}", d.name),
        Some(d) => format!("project {}", d.name),
        None => old.owner_id.clone(),
    };
    let mut tx = st.db.begin().await?;
    let mut r = doc_row(C, &v.id, &space, &v.owner_id, &v.id, "", 0, row.seq, &v)?;
    r.created_at = row.created_at;
    tx.update_doc(&r).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Modified",
        format!("Variables of {owner_name} were modified"),
        &[&v.id, &v.owner_id],
        json!({
            "VariableSetId": v.id,
            "Version": v.version,
            "Changes": changes(&st.master_key, &old, &v),
            // Field by field; sensitive and sealed values only as salted hashes.
            "Diff": crate::audit_diff::diff_of(&old, &v, &crate::audit_diff::salt(&st.master_key)),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render_with(&u, &space, &v)))
}

// ---- the sets a deployment sees ----

/// A variable set and where it comes from ("project", or "library variable set 'Name'", as
/// explain and the executor name it).
#[derive(Clone, Debug)]
pub struct SourcedSet {
    pub set: VariableSet,
    pub label: String,
}

pub fn library_label(name: &str) -> String {
    format!("library variable set '{name}'")
}

/// The project's current variable set and those of the library sets it includes, in the order
/// it includes them.
pub async fn current_sets(
    st: &AppState,
    space: &str,
    project: &Project,
) -> ApiResult<Vec<SourcedSet>> {
    let (_, set): (_, VariableSet) =
        load(st, C, space, &project.variable_set_id, "Variable set").await?;
    let mut out = vec![SourcedSet {
        set,
        label: "project".to_string(),
    }];
    for lib_id in &project.included_library_variable_set_ids {
        let lib: LibraryVariableSet = match st.db.get_doc(lib_id).await? {
            Some(d) if d.collection == libraryvariablesets::C && d.space_id == space => {
                parse_body(&d)?
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Project '{}' includes the library variable set '{lib_id}', which no longer exists; remove it from the project",
                    project.name
                )));
            }
        };
        let (_, set): (_, VariableSet) =
            load(st, C, space, &lib.variable_set_id, "Variable set").await?;
        out.push(SourcedSet {
            set,
            label: library_label(&lib.name),
        });
    }
    Ok(out)
}

/// A release's variable snapshots: the project's first, then the library sets'.
pub async fn release_sets(
    st: &AppState,
    space: &str,
    release: &Release,
) -> ApiResult<Vec<SourcedSet>> {
    let mut out = Vec::new();
    let ids = std::iter::once(&release.project_variable_set_snapshot_id)
        .chain(release.library_variable_set_snapshot_ids.iter());
    for (i, id) in ids.enumerate() {
        let (_, set): (_, VariableSet) =
            load(st, SNAPSHOTS, space, id, "Variable snapshot").await?;
        let label = if i == 0 {
            "project".to_string()
        } else {
            match st.db.get_doc(&set.owner_id).await? {
                Some(d) => library_label(&d.name),
                None => library_label(&set.owner_id),
            }
        };
        out.push(SourcedSet { set, label });
    }
    Ok(out)
}

// ---- explain ----

fn shown_value(v: &Variable) -> Value {
    if v.is_sensitive {
        if v.sealed_value.is_some() || v.value.is_some() {
            json!(MASK)
        } else {
            Value::Null
        }
    } else {
        json!(v.value)
    }
}

/// Picks an item by id or (case-insensitive) name.
fn pick<'a>(items: &'a [(String, String)], key: &str) -> Option<&'a (String, String)> {
    items
        .iter()
        .find(|(id, _)| id == key)
        .or_else(|| items.iter().find(|(_, n)| n.eq_ignore_ascii_case(key)))
}

/// `GET /projects/{id}/variables/explain?environment=&machine=&role=&step=&action=&channel=&tenant=&tenantTag=`:
/// for each variable name, the value that wins in that context, where it comes from and why,
/// and every other value with why it does not apply or does not win. Sensitive values show as
/// `********`.
pub async fn explain(
    State(st): State<AppState>,
    Path((space, project)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let (_, p) = super::projects::resolve(&st, &space, &project).await?;
    let params = Params::parse(raw.as_deref());
    let u = universe(&st, &space, &p.id).await?;
    let mut ctx = ScopeContext {
        process_owner: Some(p.id.clone()),
        ..ScopeContext::default()
    };
    let mut shown = Map::new();
    if let Some(e) = params.get("environment") {
        let (id, name) = pick(&u.environments, e).ok_or_else(|| {
            ApiError::bad_request(format!("Environment '{e}' was not found in this space"))
        })?;
        ctx.environment = Some(id.clone());
        shown.insert("Environment".into(), json!({"Id": id, "Name": name}));
    }
    if let Some(c) = params.get("channel") {
        let (id, name) = pick(&u.channels, c).ok_or_else(|| {
            ApiError::bad_request(format!("Channel '{c}' is not a channel of {}", p.name))
        })?;
        ctx.channel = Some(id.clone());
        shown.insert("Channel".into(), json!({"Id": id, "Name": name}));
    }
    let steps = u
        .process
        .as_ref()
        .map(|x| x.steps.as_slice())
        .unwrap_or(&[]);
    if let Some(s) = params.get("step") {
        let step = steps
            .iter()
            .find(|x| x.id == s)
            .or_else(|| steps.iter().find(|x| x.name.eq_ignore_ascii_case(s)))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Step '{s}' is not part of {}'s deployment process",
                    p.name
                ))
            })?;
        ctx.step = Some(step.id.clone());
        if let [only] = step.actions.as_slice() {
            ctx.action = Some(only.id.clone());
        }
        ctx.step_roles = step_roles(step);
        shown.insert("Step".into(), json!({"Id": step.id, "Name": step.name}));
    }
    if let Some(a) = params.get("action") {
        let found = steps.iter().find_map(|s| {
            s.actions
                .iter()
                .find(|x| x.id == a || x.name.eq_ignore_ascii_case(a))
                .map(|x| (s, x))
        });
        let (step, action) = found.ok_or_else(|| {
            ApiError::bad_request(format!(
                "Action '{a}' is not part of {}'s deployment process",
                p.name
            ))
        })?;
        ctx.step = Some(step.id.clone());
        ctx.action = Some(action.id.clone());
        ctx.step_roles = step_roles(step);
        shown.insert(
            "Action".into(),
            json!({"Id": action.id, "Name": action.name}),
        );
    }
    if let Some(m) = params.get("machine") {
        ctx.machine = Some(m.to_string());
        shown.insert("Machine".into(), json!(m));
    }
    ctx.machine_roles = params.list("role");
    if !ctx.machine_roles.is_empty() {
        shown.insert("Roles".into(), json!(ctx.machine_roles));
    }
    if let Some(t) = params.get("tenant") {
        ctx.tenant = Some(t.to_string());
        shown.insert("Tenant".into(), json!(t));
    }
    ctx.tenant_tags = params.list("tenantTag");
    if !ctx.tenant_tags.is_empty() {
        shown.insert("TenantTags".into(), json!(ctx.tenant_tags));
    }

    let sets = current_sets(&st, &space, &p).await?;
    let owners: HashMap<&str, &str> = sets
        .iter()
        .map(|s| (s.label.as_str(), s.set.owner_id.as_str()))
        .collect();
    let index = VariableIndex::new(
        sets.iter()
            .map(|s| SourceSet {
                owner: &s.set.owner_id,
                label: &s.label,
                variables: &s.set.variables,
            })
            .collect(),
    );
    let mut names = index.explain(&ctx);
    names.sort_by_key(|(name, _)| name.to_lowercase());
    let mut out = Vec::with_capacity(names.len());
    for (name, values) in names {
        let winner = values.iter().find(|e| e.won);
        let list: Vec<Value> = values
            .iter()
            .map(|e| {
                json!({
                    "Id": e.variable.id,
                    "Value": shown_value(e.variable),
                    "IsSensitive": e.variable.is_sensitive,
                    "Scope": e.variable.scope,
                    "ScopeText": scope_text(&u, e.variable),
                    "Source": e.source,
                    "SourceId": owners.get(e.source).copied().unwrap_or(""),
                    "Applies": matches!(e.applies, Applies::Yes(_)),
                    "Won": e.won,
                    "Reason": e.reason,
                })
            })
            .collect();
        out.push(match winner {
            Some(w) => json!({
                "Name": name,
                "Value": shown_value(w.variable),
                "IsSensitive": w.variable.is_sensitive,
                "IsPrompted": w.variable.prompt.is_some(),
                "VariableId": w.variable.id,
                "Scope": w.variable.scope,
                "ScopeText": scope_text(&u, w.variable),
                "Source": w.source,
                "SourceId": owners.get(w.source).copied().unwrap_or(""),
                "Reason": w.reason,
                "Values": list,
            }),
            None => json!({
                "Name": name,
                "Value": null,
                "IsSensitive": false,
                "IsPrompted": false,
                "VariableId": null,
                "Scope": null,
                "ScopeText": "",
                "Source": null,
                "SourceId": null,
                "Reason": "no value applies in this context",
                "Values": list,
            }),
        });
    }
    Ok(Json(json!({
        "ProjectId": p.id,
        "Context": shown,
        "Variables": out,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn universe_for_test(library: bool) -> Universe {
        Universe {
            library,
            owner_id: if library {
                "LibraryVariableSets-1".into()
            } else {
                "Projects-1".into()
            },
            environments: vec![("Environments-1".into(), "Dev".into())],
            process: None,
            action_ids: ["step-1".to_string()].into_iter().collect(),
            channels: vec![("Channels-1".into(), "Default".into())],
            processes: vec![("Projects-1".into(), "P".into())],
            tenants: Vec::new(),
            tenant_tags: Vec::new(),
        }
    }

    fn set(vars: Vec<Variable>) -> VariableSet {
        VariableSet {
            id: "variableset-Projects-1".into(),
            owner_id: "Projects-1".into(),
            variables: vars,
            ..VariableSet::default()
        }
    }

    #[test]
    fn sensitive_values_are_sealed_and_kept() {
        let key = MasterKey::generate();
        let u = universe_for_test(false);
        let old = set(vec![]);
        let mut vars = vec![Variable {
            id: "v1".into(),
            name: "Pw".into(),
            value: Some("hunter2".into()),
            is_sensitive: true,
            sealed_value: Some("FERRY1:forged".into()),
            ..Variable::default()
        }];
        assert!(prepare(&key, &u, &old, &mut vars).is_ok());
        let sealed = vars[0].sealed_value.clone().unwrap_or_default();
        assert_eq!(vars[0].value, None);
        assert_eq!(vars[0].kind, "Sensitive");
        assert_eq!(
            open(&key, &variable_aad("Projects-1", "v1"), &sealed).as_deref(),
            Ok("hunter2")
        );
        // Sent again without a value: the sealed value stays.
        let old = set(vars.clone());
        let mut again = public_variables(&vars);
        assert!(again[0].value.is_none() && again[0].sealed_value.is_none());
        assert!(prepare(&key, &u, &old, &mut again).is_ok());
        assert_eq!(again[0].sealed_value.as_deref(), Some(sealed.as_str()));
        // Made non-sensitive without a new value: refused.
        let mut plain = public_variables(&vars);
        plain[0].is_sensitive = false;
        plain[0].kind = "String".into();
        let e = prepare(&key, &u, &old, &mut plain).err();
        assert!(e.is_some_and(|e| e.errors[0].contains("was sensitive")));
        // The audit view hashes, never shows.
        let c = changes(&key, &set(vec![]), &old);
        let text = serde_json::to_string(&c).unwrap_or_default();
        assert!(!text.contains("hunter2") && text.contains("salted-sha256:"));
    }

    #[test]
    fn scopes_are_checked_per_owner() {
        let key = MasterKey::generate();
        let scoped = |scope: ferry_domain::VariableScope| {
            vec![Variable {
                name: "X".into(),
                value: Some("1".into()),
                scope,
                ..Variable::default()
            }]
        };
        let s = |x: &str| vec![x.to_string()];
        use ferry_domain::VariableScope as S;
        let cases: Vec<(bool, S, Option<&str>)> = vec![
            (
                false,
                S {
                    environment: s("Environments-1"),
                    ..S::default()
                },
                None,
            ),
            (
                false,
                S {
                    environment: s("Dev"),
                    ..S::default()
                },
                Some("use Environments-1"),
            ),
            (
                false,
                S {
                    environment: s("Environments-9"),
                    ..S::default()
                },
                Some("Environment scope names 'Environments-9'"),
            ),
            (
                false,
                S {
                    machine: s("Machines-1"),
                    ..S::default()
                },
                Some("Machine scope names 'Machines-1'"),
            ),
            (
                false,
                S {
                    action: s("step-1"),
                    ..S::default()
                },
                None,
            ),
            (
                false,
                S {
                    action: s("nope"),
                    ..S::default()
                },
                Some("Action scope names 'nope'"),
            ),
            (
                true,
                S {
                    action: s("step-1"),
                    ..S::default()
                },
                Some("cannot be scoped to steps"),
            ),
            (
                false,
                S {
                    channel: s("Channels-1"),
                    ..S::default()
                },
                None,
            ),
            (
                true,
                S {
                    channel: s("Channels-1"),
                    ..S::default()
                },
                Some("cannot be scoped to channels"),
            ),
            (
                false,
                S {
                    tenant: s("Tenants-1"),
                    ..S::default()
                },
                Some("Tenant scope names 'Tenants-1'"),
            ),
            (
                false,
                S {
                    tenant_tag: s("Region/East"),
                    ..S::default()
                },
                Some("TenantTag scope names 'Region/East'"),
            ),
            (
                false,
                S {
                    process_owner: s("Projects-1"),
                    ..S::default()
                },
                None,
            ),
            (
                false,
                S {
                    process_owner: s("Projects-2"),
                    ..S::default()
                },
                Some("ProcessOwner scope names 'Projects-2'"),
            ),
            (
                true,
                S {
                    process_owner: s("Projects-1"),
                    ..S::default()
                },
                None,
            ),
            (
                false,
                S {
                    role: s("anything"),
                    ..S::default()
                },
                None,
            ),
        ];
        for (library, scope, expect) in cases {
            let u = universe_for_test(library);
            let mut vars = scoped(scope.clone());
            let got = prepare(&key, &u, &set(vec![]), &mut vars)
                .err()
                .map(|e| e.errors.join(" "));
            match expect {
                None => assert_eq!(got, None, "{scope:?}"),
                Some(text) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(text)),
                    "{scope:?}: {got:?}"
                ),
            }
        }
        // A stale id the variable already had is kept.
        let u = universe_for_test(false);
        let old = set(vec![Variable {
            id: "v".into(),
            name: "X".into(),
            scope: S {
                environment: s("Environments-gone"),
                ..S::default()
            },
            ..Variable::default()
        }]);
        let mut vars = old.variables.clone();
        assert!(prepare(&key, &u, &old, &mut vars).is_ok());
    }
}
