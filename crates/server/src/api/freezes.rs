//! Deployment freezes: time windows over projects × environments in which deployments are
//! refused. A freeze is `{Name, Start, End, ProjectEnvironmentScope}`; it is active while
//! `Start ≤ t < End`. Creating a deployment of a project to an environment a freeze scopes is
//! refused with 409 naming the freeze and its end, unless the request carries a
//! `DeploymentFreezeOverrideReason` and the caller may administer freezes; the reason is then
//! recorded in the deployment's `DeploymentQueued` audit event.
//!
//! Freezes live in the space of the request path (`/api/deploymentfreezes` is the default
//! space's), and their scope holds project and environment ids of that space.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::ids::slugify;
use ferry_domain::time::{format_ms, now_ms, parse_ms};
use ferry_domain::{Environment, Project};
use ferry_store::DocQuery;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

pub(crate) const C: &str = "DeploymentFreezes";

/// A stored freeze. `Start` and `End` are RFC 3339 with an offset; the scope maps project ids
/// to environment ids.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentFreeze {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub start: String,
    pub end: String,
    pub project_environment_scope: BTreeMap<String, Vec<String>>,
}

impl DeploymentFreeze {
    fn window(&self) -> (i64, i64) {
        (
            parse_ms(&self.start).unwrap_or(i64::MAX),
            parse_ms(&self.end).unwrap_or(i64::MIN),
        )
    }

    /// `Active`, `Expired` or `Scheduled` at `at` (epoch milliseconds).
    pub fn status(&self, at: i64) -> &'static str {
        let (start, end) = self.window();
        if at >= end {
            "Expired"
        } else if at < start {
            "Scheduled"
        } else {
            "Active"
        }
    }

    fn active_at(&self, at: i64) -> bool {
        let (start, end) = self.window();
        start <= at && at < end
    }

    fn covers(&self, project_id: &str, environment_id: &str) -> bool {
        self.project_environment_scope
            .get(project_id)
            .is_some_and(|envs| envs.iter().any(|e| e == environment_id))
    }
}

fn render(space: &str, f: &DeploymentFreeze) -> Value {
    let mut v = with_links(
        f,
        links(format!("/api/{space}/deploymentfreezes/{}", f.id), &[]),
    );
    if let Some(o) = v.as_object_mut() {
        o.insert("Status".into(), json!(f.status(now_ms())));
    }
    v
}

fn query(space: &str) -> DocQuery {
    let mut q = DocQuery::new(C);
    q.space_id = Some(space.to_string());
    q
}

fn named(f: &DeploymentFreeze) -> Named<'_> {
    Named {
        what: "deployment freeze",
        name: &f.name,
    }
}

async fn all_freezes(st: &AppState, space: &str) -> ApiResult<Vec<DeploymentFreeze>> {
    let (rows, _) = st.db.list_docs(&query(space)).await?;
    rows.iter().map(parse_body).collect()
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let params = Params::parse(raw.as_deref());
    let base = format!("/api/{space}/deploymentfreezes");
    let mut q = query(&space);
    if let Some(status) = params.get("status").filter(|s| !s.trim().is_empty()) {
        let wanted = ["Active", "Expired", "Scheduled"]
            .into_iter()
            .find(|s| s.eq_ignore_ascii_case(status.trim()))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "status '{status}' must be Active, Expired or Scheduled"
                ))
            })?;
        let now = now_ms();
        q.ids = all_freezes(&st, &space)
            .await?
            .into_iter()
            .filter(|f| f.status(now) == wanted)
            .map(|f| f.id)
            .collect();
        if q.ids.is_empty() {
            // Nothing has that status: an id no document has.
            q.ids.push("-".to_string());
        }
    }
    let v = list_page(
        &st,
        q,
        &params,
        "DeploymentFreeze",
        &base,
        &format!("{base}{{/id}}{{?skip,take,ids,partialName,status}}"),
        |d| Ok(render(&space, &parse_body(d)?)),
    )
    .await?;
    Ok(Json(v))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let (_, f): (_, DeploymentFreeze) = load(&st, C, &space, &id, "Deployment freeze").await?;
    Ok(Json(render(&space, &f)))
}

/// Checks a freeze and normalises it: the name, the times (RFC 3339, `Start` before `End`)
/// and the scope (project and environment names or slugs become ids). Every problem is
/// reported at once, each naming its field.
async fn validate(st: &AppState, space: &str, f: &mut DeploymentFreeze) -> ApiResult<()> {
    let mut errors = Vec::new();
    match require_name(&f.name, "deployment freeze", 200) {
        Ok(n) => f.name = n,
        Err(e) => errors.extend(e.errors),
    }
    let mut times = [None, None];
    for (i, (field, value)) in [("Start", &mut f.start), ("End", &mut f.end)]
        .into_iter()
        .enumerate()
    {
        if value.trim().is_empty() {
            errors.push(format!(
                "Please provide the {field} of the deployment freeze (a date and time with an offset, such as 2030-01-01T10:00:00+00:00)"
            ));
            continue;
        }
        match parse_ms(value) {
            Some(ms) => {
                *value = format_ms(ms);
                times[i] = Some(ms);
            }
            None => errors.push(format!(
                "{field} '{value}' is not a date and time with an offset, such as 2030-01-01T10:00:00+00:00"
            )),
        }
    }
    if let [Some(start), Some(end)] = times {
        if start >= end {
            errors.push(format!(
                "Start ({}) must be earlier than End ({})",
                f.start, f.end
            ));
        }
    }
    let mut scope: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (pkey, envs) in &f.project_environment_scope {
        let project: Option<(_, Project)> = find(st, "Projects", space, None, pkey.trim()).await?;
        let Some((_, project)) = project else {
            errors.push(format!(
                "ProjectEnvironmentScope: the project '{pkey}' was not found"
            ));
            continue;
        };
        let entry = scope.entry(project.id.clone()).or_default();
        for ekey in envs {
            let env: Option<(_, Environment)> =
                find(st, "Environments", space, None, ekey.trim()).await?;
            match env {
                Some((_, e)) => {
                    if !entry.contains(&e.id) {
                        entry.push(e.id);
                    }
                }
                None => errors.push(format!(
                    "ProjectEnvironmentScope: the environment '{ekey}' (for project '{}') was not found",
                    project.name
                )),
            }
        }
    }
    scope.retain(|_, envs| !envs.is_empty());
    if scope.is_empty() && errors.is_empty() {
        errors.push(
            "ProjectEnvironmentScope must name at least one project with at least one environment"
                .to_string(),
        );
    }
    f.project_environment_scope = scope;
    if errors.is_empty() {
        Ok(())
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
    }
}

fn row(f: &DeploymentFreeze, seq: i64) -> ApiResult<ferry_store::DocRow> {
    doc_row(
        C,
        &f.id,
        &f.space_id,
        "",
        &f.name,
        &slugify(&f.name),
        0,
        seq,
        f,
    )
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut f): Body<DeploymentFreeze>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    validate(&st, &space, &mut f).await?;
    let seq = next_seq(&st, C).await?;
    f.id = format!("{C}-{seq}");
    f.space_id = space.clone();
    insert_audited(&st, &ctx, named(&f), row(&f, seq)?, &f).await?;
    Ok((StatusCode::CREATED, Json(render(&space, &f))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut f): Body<DeploymentFreeze>,
) -> ApiResult<Json<Value>> {
    let (old_row, old): (_, DeploymentFreeze) =
        load(&st, C, &space, &id, "Deployment freeze").await?;
    validate(&st, &space, &mut f).await?;
    f.id = old.id.clone();
    f.space_id = space.clone();
    let new_row = row(&f, old_row.seq)?;
    update_audited(&st, &ctx, named(&f), &old_row, new_row, &old, &f).await?;
    Ok(Json(render(&space, &f)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, f): (_, DeploymentFreeze) = load(&st, C, &space, &id, "Deployment freeze").await?;
    delete_audited(&st, &ctx, named(&f), &space, &f.id, &f).await?;
    Ok(Json(json!({})))
}

/// Whether the caller may administer deployment freezes in `space` (and so override one):
/// the one place the `DeploymentFreezeAdminister` rule is decided for overrides.
pub async fn may_administer(st: &AppState, ctx: &Ctx, space: &str) -> ApiResult<bool> {
    crate::authz::can(
        st,
        ctx,
        Some(space),
        crate::routes::Permission::DeploymentFreezeAdminister,
        &crate::authz::Target::ANY,
    )
    .await
}

/// The freezes a deployment overrode, for its audit event.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub reason: String,
    pub freezes: Vec<DeploymentFreeze>,
}

impl Overrides {
    /// "Override of freeze 'Black Friday': <reason>" (one clause per freeze).
    pub fn message(&self) -> String {
        self.freezes
            .iter()
            .map(|f| format!("Override of freeze '{}': {}", f.name, self.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Refuses a deployment of `project` to `env` that a freeze active now or at `queue_time`
/// covers (409 naming the freeze and its end), unless `override_reason` is given and the
/// caller may administer freezes; an override reason from a caller who may not is a 403.
/// Returns the overridden freezes (empty when none applied).
pub async fn check(
    st: &AppState,
    space: &str,
    ctx: &Ctx,
    project: &Project,
    env: &Environment,
    queue_time: Option<i64>,
    override_reason: Option<&str>,
) -> ApiResult<Overrides> {
    let reason = override_reason.map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some() && !may_administer(st, ctx, space).await? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action. Overriding a deployment freeze (DeploymentFreezeOverrideReason) requires the DeploymentFreezeAdminister permission.",
        ));
    }
    let now = now_ms();
    let times: Vec<i64> = std::iter::once(now).chain(queue_time).collect();
    let hits: Vec<DeploymentFreeze> = all_freezes(st, space)
        .await?
        .into_iter()
        .filter(|f| f.covers(&project.id, &env.id) && times.iter().any(|t| f.active_at(*t)))
        .collect();
    // The freeze that lasts longest names the refusal.
    let Some(first) = hits.iter().max_by_key(|f| f.window().1).cloned() else {
        return Ok(Overrides::default());
    };
    match reason {
        Some(r) => Ok(Overrides {
            reason: r.to_string(),
            freezes: hits,
        }),
        None => {
            let msg = format!(
                "Deployments of {} to {} are frozen by '{}' until {}. To deploy anyway, give a DeploymentFreezeOverrideReason (requires the DeploymentFreezeAdminister permission).",
                project.name, env.name, first.name, first.end
            );
            let mut e = ApiError::conflict(msg.clone());
            e.message = msg;
            Err(e)
        }
    }
}
