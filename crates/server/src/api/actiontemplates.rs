//! Step templates (Octopus "action templates") in a space's library, including import of a
//! community library file (`$Meta`, `Category`, … ignored; the library `Id` kept as
//! `CommunityActionTemplateId`). Each save increments `Version` and keeps a copy of every
//! version (`ActionTemplateVersions`, id `ActionTemplates-1-v2`, owned by the template), so a
//! step pinned to version N runs version N. Usage lists the process actions using a template;
//! `actionsUpdate` moves them to the latest version. See `docs/step-templates.md`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::action_template::{
    self as at, ActionTemplate, TEMPLATE_ID, TEMPLATE_VERSION, version_doc_id,
};
use ferry_domain::{DeploymentProcess, Project};
use ferry_store::{DocQuery, DocRow};
use serde_json::{Value, json};

use super::*;
use crate::input::{JsonValue, from_value};

pub const C: &str = "ActionTemplates";
pub const VERSIONS: &str = "ActionTemplateVersions";
const PROCESSES: &str = "DeploymentProcesses";

fn render(space: &str, t: &ActionTemplate) -> Value {
    let base = format!("/api/{space}/actiontemplates/{}", t.id);
    with_links(
        t,
        links(
            base.clone(),
            &[
                ("Usage", format!("{base}/usage")),
                ("Versions", format!("{base}/versions/{{version}}")),
                ("ActionsUpdate", format!("{base}/actionsUpdate")),
            ],
        ),
    )
}

fn render_row(space: &str, d: &DocRow) -> ApiResult<Value> {
    Ok(render(space, &parse_body(d)?))
}

fn query(space: &str) -> DocQuery {
    DocQuery {
        space_id: Some(space.to_string()),
        ..DocQuery::new(C)
    }
}

/// Reads a template from a request body (a template or a community library file) and checks it.
fn read_template(raw: Value) -> ApiResult<ActionTemplate> {
    let t: ActionTemplate = from_value(raw.clone())?;
    at::validate(&raw, &t).map_err(ApiError::bad_request)?;
    Ok(t)
}

/// Fills parameter ids and trims names.
fn prepare(t: &mut ActionTemplate) {
    t.name = t.name.trim().to_string();
    for p in &mut t.parameters {
        p.name = p.name.trim().to_string();
        if p.id.trim().is_empty() {
            p.id = uuid::Uuid::new_v4().to_string();
        }
    }
}

fn version_row(t: &ActionTemplate, seq: i64) -> ApiResult<DocRow> {
    doc_row(
        VERSIONS,
        &version_doc_id(&t.id, t.version),
        &t.space_id,
        &t.id,
        &format!("v{}", t.version),
        "",
        0,
        seq,
        t,
    )
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let params = Params::parse(raw.as_deref());
    let base = format!("/api/{space}/actiontemplates");
    Ok(Json(
        list_page(
            &st,
            query(&space),
            &params,
            "ActionTemplate",
            &base,
            &list_template(&base),
            |d| render_row(&space, d),
        )
        .await?,
    ))
}

pub async fn all(State(st): State<AppState>, Path(space): Path<String>) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    Ok(Json(
        list_all(&st, query(&space), |d| render_row(&space, d)).await?,
    ))
}

async fn resolve(st: &AppState, space: &str, key: &str) -> ApiResult<(DocRow, ActionTemplate)> {
    match find(st, C, space, None, key).await? {
        Some(x) => Ok(x),
        None => Err(ApiError::not_found(format!(
            "Step template '{key}' was not found"
        ))),
    }
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve(&st, &space, &id).await?;
    Ok(Json(render(&space, &t)))
}

pub async fn get_version(
    State(st): State<AppState>,
    Path((space, id, version)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve(&st, &space, &id).await?;
    let v: i64 = version.trim().parse().map_err(|_| {
        ApiError::bad_request(format!("Version '{version}' is not a version number"))
    })?;
    match load_version(&st, &space, &t.id, v).await? {
        Some(old) => Ok(Json(render(&space, &old))),
        None => Err(ApiError::not_found(format!(
            "Version {v} of step template '{}' was not found",
            t.name
        ))),
    }
}

async fn load_version(
    st: &AppState,
    space: &str,
    id: &str,
    version: i64,
) -> ApiResult<Option<ActionTemplate>> {
    match st.db.get_doc(&version_doc_id(id, version)).await? {
        Some(d) if d.collection == VERSIONS && d.space_id == space => Ok(Some(parse_body(&d)?)),
        _ => Ok(None),
    }
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    JsonValue(raw): JsonValue,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    // A community library file carries its own `Id` (a GUID): kept as the community id.
    let library_id = raw
        .get("Id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty() && !s.starts_with("ActionTemplates-"))
        .map(str::to_string);
    let mut t = read_template(raw)?;
    prepare(&mut t);
    if t.community_action_template_id.is_none() {
        t.community_action_template_id = library_id;
    }
    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq(C).await?;
    t.id = format!("{C}-{seq}");
    t.space_id = space.clone();
    t.version = 1;
    tx.insert_doc(&doc_row(C, &t.id, &space, "", &t.name, "", 0, seq, &t)?)
        .await
        .map_err(|e| name_conflict(e, "step template", &t.name))?;
    tx.insert_doc(&version_row(&t, seq)?).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Created",
        format!("Step template {} was created", t.name),
        &[&t.id],
        json!({"Document": t}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render(&space, &t))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    JsonValue(raw): JsonValue,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, ActionTemplate) = load(&st, C, &space, &id, "Step template").await?;
    let mut t = read_template(raw)?;
    prepare(&mut t);
    t.id = old.id.clone();
    t.space_id = space.clone();
    t.version = old.version + 1;
    if t.community_action_template_id.is_none() {
        t.community_action_template_id = old.community_action_template_id.clone();
    }
    let mut new_row = doc_row(C, &t.id, &space, "", &t.name, "", 0, row.seq, &t)?;
    new_row.created_at = row.created_at;
    let mut tx = st.db.begin().await?;
    tx.update_doc(&new_row)
        .await
        .map_err(|e| name_conflict(e, "step template", &t.name))?;
    tx.insert_doc(&version_row(&t, row.seq)?).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Modified",
        format!(
            "Step template {} was modified (version {})",
            t.name, t.version
        ),
        &[&t.id],
        json!({"Before": old, "After": t}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render(&space, &t)))
}

/// One action using a template, as Octopus's `ActionTemplateUsageResource` shows it.
struct Usage {
    process: DeploymentProcess,
    project: Option<Project>,
    step: usize,
    action: usize,
    version: Option<i64>,
}

async fn usages(st: &AppState, space: &str, id: &str) -> ApiResult<Vec<Usage>> {
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            ..DocQuery::new(PROCESSES)
        })
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let p: DeploymentProcess = parse_body(r)?;
        let mut project = None;
        for (si, s) in p.steps.iter().enumerate() {
            for (ai, a) in s.actions.iter().enumerate() {
                let Ok(Some((tid, version))) = at::action_template_ref(a) else {
                    continue;
                };
                if tid != id {
                    continue;
                }
                if project.is_none() {
                    project = match st.db.get_doc(&p.project_id).await? {
                        Some(d) => parse_body::<Project>(&d).ok(),
                        None => None,
                    };
                }
                out.push(Usage {
                    process: p.clone(),
                    project: project.clone(),
                    step: si,
                    action: ai,
                    version,
                });
            }
        }
    }
    Ok(out)
}

pub async fn usage(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve(&st, &space, &id).await?;
    let items: Vec<Value> = usages(&st, &space, &t.id)
        .await?
        .iter()
        .map(|u| {
            let s = &u.process.steps[u.step];
            let a = &s.actions[u.action];
            json!({
                "ActionTemplateId": t.id,
                "DeploymentProcessId": u.process.id,
                "ProjectId": u.process.project_id,
                "ProjectName": u.project.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
                "ProjectSlug": u.project.as_ref().map(|p| p.slug.clone()).unwrap_or_default(),
                "StepId": s.id,
                "StepName": s.name,
                "ActionId": a.id,
                "ActionName": a.name,
                "Version": u.version.map(|v| v.to_string()).unwrap_or_default(),
                "IsUpToDate": u.version == Some(t.version),
            })
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, t): (_, ActionTemplate) = load(&st, C, &space, &id, "Step template").await?;
    let used = usages(&st, &space, &t.id).await?;
    if !used.is_empty() {
        let mut names: Vec<String> = used
            .iter()
            .map(|u| {
                u.project
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| u.process.project_id.clone())
            })
            .collect();
        names.dedup();
        return Err(ApiError::bad_request(format!(
            "Step template '{}' is used by the deployment process of {}; remove those steps first",
            t.name,
            names.join(", ")
        )));
    }
    let mut tx = st.db.begin().await?;
    tx.delete_docs_owned_by(&t.id).await?;
    tx.delete_doc(&t.id).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Deleted",
        format!("Step template {} was deleted", t.name),
        &[&t.id],
        json!({"Document": t}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

/// `ActionsUpdateResource`: which actions to move to the latest version (`ActionIdsByProcessId`;
/// absent or empty means every usage), values for new parameters (`DefaultPropertyValues`, set
/// where the action has none) and values forced on every updated action (`Overrides`).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ActionsUpdate {
    version: Option<i64>,
    action_ids_by_process_id: BTreeMap<String, Vec<String>>,
    default_property_values: BTreeMap<String, Value>,
    overrides: BTreeMap<String, Value>,
}

pub async fn actions_update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    JsonValue(raw): JsonValue,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve(&st, &space, &id).await?;
    let mut body: ActionsUpdate = from_value(raw)?;
    // Keys are compared ignoring case (the body reader capitalises map keys).
    let lower = |m: BTreeMap<String, Value>| -> BTreeMap<String, Value> {
        m.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect()
    };
    body.default_property_values = lower(std::mem::take(&mut body.default_property_values));
    body.overrides = lower(std::mem::take(&mut body.overrides));
    body.action_ids_by_process_id = std::mem::take(&mut body.action_ids_by_process_id)
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect();
    if let Some(v) = body.version
        && v != t.version
    {
        return Err(ApiError::conflict(format!(
            "Step template '{}' is at version {}, not {v}; reload it and try again",
            t.name, t.version
        )));
    }
    let all = body.action_ids_by_process_id.is_empty();
    let mut results = Vec::new();
    let mut changed: BTreeMap<String, DeploymentProcess> = BTreeMap::new();
    for u in usages(&st, &space, &t.id).await? {
        let pid = u.process.id.clone();
        let action_id = u.process.steps[u.step].actions[u.action].id.clone();
        let wanted = all
            || body
                .action_ids_by_process_id
                .get(&pid.to_lowercase())
                .is_some_and(|ids| ids.contains(&action_id));
        if !wanted {
            continue;
        }
        // Parameters the pinned version did not have are new: they need a value or a default.
        let before: Vec<String> = match u.version {
            Some(v) => load_version(&st, &space, &t.id, v)
                .await?
                .map(|old| {
                    old.parameters
                        .iter()
                        .map(|p| p.name.to_lowercase())
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let p = changed.entry(pid).or_insert_with(|| u.process.clone());
        let a = &mut p.steps[u.step].actions[u.action];
        *a = at::apply(&t, a);
        a.properties
            .insert(TEMPLATE_VERSION.to_string(), t.version.to_string());
        let mut missing = Vec::new();
        for param in &t.parameters {
            if let Some(v) = body.overrides.get(&param.name.to_lowercase()) {
                a.properties.insert(param.name.clone(), at::value_text(v));
            } else if !a.properties.contains_key(&param.name) {
                if let Some(v) = body.default_property_values.get(&param.name.to_lowercase()) {
                    a.properties.insert(param.name.clone(), at::value_text(v));
                } else if param.default_value.is_null()
                    && !before.contains(&param.name.to_lowercase())
                {
                    missing.push(param.name.clone());
                }
            }
        }
        results.push(json!({
            "Id": action_id,
            "Outcome": if missing.is_empty() { "Success" } else { "DefaultParamterValueMissing" },
            "ManualMergeRequiredReasonsByPropertyName": {},
            "NamesOfNewParametersMissingDefaultValue": missing,
        }));
    }
    if !changed.is_empty() {
        let mut tx = st.db.begin().await?;
        for p in changed.values_mut() {
            let Some(row) = st.db.get_doc(&p.id).await? else {
                continue;
            };
            p.version += 1;
            let mut r = doc_row(
                PROCESSES,
                &p.id,
                &space,
                &p.project_id,
                &p.id,
                "",
                0,
                row.seq,
                p,
            )?;
            r.created_at = row.created_at;
            tx.update_doc(&r).await?;
        }
        audit(
            &mut tx,
            &ctx,
            &space,
            "Modified",
            format!(
                "Steps using step template {} were updated to version {}",
                t.name, t.version
            ),
            &[&t.id],
            json!({"Processes": changed.keys().collect::<Vec<_>>()}),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(Json(Value::Array(results)))
}

/// Checks the actions of a process being saved that use a template: the template exists in
/// the space, the version exists (filled with the latest when not given) and the action's type
/// is the template's.
pub async fn check_process(
    st: &AppState,
    space: &str,
    process: &mut DeploymentProcess,
) -> ApiResult<()> {
    for step in &mut process.steps {
        for a in &mut step.actions {
            let Some((tid, version)) = at::action_template_ref(a).map_err(ApiError::bad_request)?
            else {
                continue;
            };
            let t = match find::<ActionTemplate>(st, C, space, None, &tid).await? {
                Some((_, t)) => t,
                None => {
                    return Err(ApiError::bad_request(format!(
                        "Step '{}' uses the step template '{tid}', which does not exist",
                        a.name
                    )));
                }
            };
            let version = match version {
                Some(v) => v,
                None => t.version,
            };
            if version != t.version && load_version(st, space, &t.id, version).await?.is_none() {
                return Err(ApiError::bad_request(format!(
                    "Step '{}' uses version {version} of the step template '{}', which does not exist (latest: {})",
                    a.name, t.name, t.version
                )));
            }
            if !a.action_type.is_empty() && a.action_type != t.action_type {
                return Err(ApiError::bad_request(format!(
                    "Step '{}' has ActionType '{}' but its step template '{}' is '{}'",
                    a.name, a.action_type, t.name, t.action_type
                )));
            }
            // Sensitive parameter values are sealed in the action (never stored in clear).
            let pinned = if version == t.version {
                t.clone()
            } else {
                load_version(st, space, &t.id, version)
                    .await?
                    .unwrap_or_else(|| t.clone())
            };
            for p in pinned.parameters.iter().filter(|p| p.is_sensitive()) {
                if let Some(v) = a.properties.get_mut(&p.name) {
                    if !v.is_empty() && !v.starts_with(at::SEALED_PREFIX) {
                        let sealed = ferry_crypto::seal(
                            &st.master_key,
                            &at::parameter_aad(&t.id, &p.name),
                            v,
                        );
                        *v = format!("{}{sealed}", at::SEALED_PREFIX);
                    }
                }
            }
            a.properties.insert(TEMPLATE_ID.to_string(), t.id.clone());
            a.properties
                .insert(TEMPLATE_VERSION.to_string(), version.to_string());
        }
    }
    Ok(())
}
