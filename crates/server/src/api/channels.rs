//! Channels: per project; exactly one default channel per project. A channel's version rules
//! (`Rules`: a version range and a pre-release tag pattern for some package steps) are checked
//! when it is saved and applied when releases are created (`docs/channels.md`).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::channel_rules::{RuleMatcher, action_packages};
use ferry_domain::ids::slugify;
use ferry_domain::version::Version;
use ferry_domain::{Channel, DeploymentProcess, Project};
use ferry_store::{DocQuery, DocRow, Tx};
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "Channels";

pub fn render(space: &str, c: &Channel) -> Value {
    let base = format!("/api/{space}/channels/{}", c.id);
    with_links(
        c,
        links(
            base,
            &[
                ("Project", format!("/api/{space}/projects/{}", c.project_id)),
                (
                    "Releases",
                    format!(
                        "/api/{space}/channels/{}/releases{{?skip,take,searchByVersion}}",
                        c.id
                    ),
                ),
            ],
        ),
    )
}

/// The project's default channel, or the named/id'd one.
pub async fn resolve(
    st: &AppState,
    space: &str,
    project_id: &str,
    key: Option<&str>,
) -> ApiResult<Channel> {
    match key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) => match find::<Channel>(st, C, space, Some(project_id), k).await? {
            Some((_, c)) => Ok(c),
            None => Err(ApiError::bad_request(format!(
                "The channel '{k}' was not found in the project"
            ))),
        },
        None => {
            let (rows, _) = st
                .db
                .list_docs(&DocQuery {
                    space_id: Some(space.to_string()),
                    owner_id: Some(project_id.to_string()),
                    ..DocQuery::new(C)
                })
                .await?;
            let channels: Vec<Channel> = rows.iter().map(parse_body).collect::<ApiResult<_>>()?;
            channels
                .iter()
                .find(|c| c.is_default)
                .or(channels.first())
                .cloned()
                .ok_or_else(|| ApiError::bad_request("The project has no channel"))
        }
    }
}

/// A channel rule, compiled, with the `(action, package reference)` pairs it applies to.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// 1-based position in the channel's `Rules`.
    pub number: usize,
    pub matcher: RuleMatcher,
    pub targets: Vec<(String, String)>,
}

impl CompiledRule {
    pub fn applies_to(&self, action: &str, package_reference: &str) -> bool {
        self.targets.iter().any(|(a, r)| {
            a.eq_ignore_ascii_case(action) && r.eq_ignore_ascii_case(package_reference)
        })
    }

    /// `rule 1 (version range '[1.0,2.0)' and pre-release tag '^$')`.
    pub fn describe(&self) -> String {
        format!("rule {} ({})", self.number, self.matcher.describe())
    }
}

/// Compiles every rule of a channel; a rule that does not compile is a 400 naming the channel
/// and the rule.
pub fn compile_rules(c: &Channel) -> ApiResult<Vec<CompiledRule>> {
    c.rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let matcher = RuleMatcher::compile(&r.version_range, &r.tag).map_err(|e| {
                ApiError::bad_request(format!("Channel '{}' rule {}: {e}", c.name, i + 1))
            })?;
            Ok(CompiledRule {
                number: i + 1,
                matcher,
                targets: action_packages(&r.action_packages),
            })
        })
        .collect()
}

/// The rules of `rules` that apply to a package of an action.
pub fn rules_for<'a>(
    rules: &'a [CompiledRule],
    action: &str,
    package_reference: &str,
) -> Vec<&'a CompiledRule> {
    rules
        .iter()
        .filter(|r| r.applies_to(action, package_reference))
        .collect()
}

/// Checks a channel before it is saved: every rule compiles (range and tag), names at least
/// one package step, and each of its `ActionPackages` is a package-deploying action (and
/// package reference) of the project's current process; `LifecycleId` is empty or a lifecycle
/// of the space. Gives each rule without an id a new one.
async fn validate(st: &AppState, space: &str, project: &Project, c: &mut Channel) -> ApiResult<()> {
    if let Some(l) = c.lifecycle_id.as_deref().map(str::trim) {
        if l.is_empty() {
            c.lifecycle_id = None;
        } else if load::<ferry_domain::Lifecycle>(st, "Lifecycles", space, l, "Lifecycle")
            .await
            .is_err()
        {
            return Err(ApiError::bad_request(format!(
                "Channel '{}': the lifecycle '{l}' does not exist in this space (LifecycleId: null uses the project's lifecycle)",
                c.name
            )));
        }
    }
    compile_rules(c)?;
    // The tenant filter's tags must exist; they are stored canonical (`Set/Tag`).
    if !c.tenant_tags.is_empty() {
        let mut errors = Vec::new();
        c.tenant_tags = super::tagsets::canonical_tags(
            st,
            space,
            &c.tenant_tags,
            &format!("Channel '{}' TenantTags", c.name),
            &mut errors,
        )
        .await?;
        if !errors.is_empty() {
            let mut e = ApiError::bad_request(String::new());
            e.errors = errors;
            return Err(e);
        }
    }
    let process: Option<DeploymentProcess> =
        match st.db.get_doc(&project.deployment_process_id).await? {
            Some(d) => Some(parse_body(&d)?),
            None => None,
        };
    let actions: Vec<&ferry_domain::DeploymentAction> = process
        .iter()
        .flat_map(|p| p.steps.iter())
        .flat_map(|s| s.actions.iter())
        .collect();
    for (i, rule) in c.rules.iter_mut().enumerate() {
        let n = i + 1;
        let targets = action_packages(&rule.action_packages);
        if targets.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Channel '{}' rule {n} names no package step: give ActionPackages [{{\"DeploymentAction\": \"<step>\", \"PackageReference\": \"\"}}]",
                c.name
            )));
        }
        for (action_name, reference) in &targets {
            let Some(action) = actions
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(action_name))
            else {
                return Err(ApiError::bad_request(format!(
                    "Channel '{}' rule {n} names the action '{action_name}', which is not in the project's deployment process",
                    c.name
                )));
            };
            let deploys = if reference.is_empty() {
                ferry_executor::deploy_package::primary_package_id(action).is_some()
            } else {
                action
                    .packages
                    .iter()
                    .any(|p| p.name.eq_ignore_ascii_case(reference))
            };
            if !deploys {
                let what = if reference.is_empty() {
                    "deploys no package".to_string()
                } else {
                    format!("has no package reference '{reference}'")
                };
                return Err(ApiError::bad_request(format!(
                    "Channel '{}' rule {n} names the action '{action_name}', which {what}; version rules apply only to package steps",
                    c.name
                )));
            }
        }
        if rule.id.trim().is_empty() {
            rule.id = uuid::Uuid::new_v4().to_string();
        }
    }
    Ok(())
}

/// The project's other channels that are marked default (normally none or one).
async fn other_defaults(
    st: &AppState,
    space: &str,
    c: &Channel,
) -> ApiResult<Vec<(DocRow, Channel)>> {
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            owner_id: Some(c.project_id.clone()),
            ..DocQuery::new(C)
        })
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let other: Channel = parse_body(&r)?;
        if other.id != c.id && other.is_default {
            out.push((r, other));
        }
    }
    Ok(out)
}

/// Makes `c` the only default channel of its project: clears the flag of the others in `tx`.
async fn clear_other_defaults(
    tx: &mut Tx,
    others: Vec<(DocRow, Channel)>,
) -> ApiResult<Vec<String>> {
    let mut names = Vec::new();
    for (row, mut other) in others {
        other.is_default = false;
        let mut r = doc_row(
            C,
            &other.id,
            &other.space_id,
            &other.project_id,
            &other.name,
            &other.slug,
            0,
            row.seq,
            &other,
        )?;
        r.created_at = row.created_at;
        tx.update_doc(&r).await?;
        names.push(other.name);
    }
    Ok(names)
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/channels");
    let q = DocQuery {
        space_id: Some(space.clone()),
        ..DocQuery::new(C)
    };
    Ok(Json(
        list_page(
            &st,
            q,
            &Params::parse(raw.as_deref()),
            "Channel",
            &base,
            &list_template(&base),
            |d| Ok(render(&space, &parse_body(d)?)),
        )
        .await?,
    ))
}

pub async fn for_project(
    State(st): State<AppState>,
    Path((space, project)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let (_, p) = super::projects::resolve(&st, &space, &project).await?;
    let base = format!("/api/{space}/projects/{}/channels", p.id);
    let q = DocQuery {
        space_id: Some(space.clone()),
        owner_id: Some(p.id.clone()),
        ..DocQuery::new(C)
    };
    Ok(Json(
        list_page(
            &st,
            q,
            &Params::parse(raw.as_deref()),
            "Channel",
            &base,
            &list_template(&base),
            |d| Ok(render(&space, &parse_body(d)?)),
        )
        .await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, c): (_, Channel) = load(&st, C, &space, &id, "Channel").await?;
    Ok(Json(render(&space, &c)))
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut c): Body<Channel>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = require_name(&c.name, "channel", 200)?;
    let (_, p) = super::projects::resolve(&st, &space, &c.project_id)
        .await
        .map_err(|_| {
            ApiError::bad_request(format!("The project '{}' does not exist", c.project_id))
        })?;
    c.space_id = space.clone();
    c.project_id = p.id.clone();
    c.name = name.clone();
    c.slug = slugify(&name);
    validate(&st, &space, &p, &mut c).await?;
    let others = if c.is_default {
        other_defaults(&st, &space, &c).await?
    } else {
        Vec::new()
    };
    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq(C).await?;
    c.id = format!("{C}-{seq}");
    let was_default = clear_other_defaults(&mut tx, others).await?;
    tx.insert_doc(&doc_row(
        C, &c.id, &space, &p.id, &c.name, &c.slug, 0, seq, &c,
    )?)
    .await
    .map_err(|e| name_conflict(e, "channel", &name))?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Created",
        format!("Channel {} of project {} was created", c.name, p.name),
        &[&c.id, &p.id],
        json!({"Document": c, "NoLongerDefault": was_default}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render(&space, &c))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut c): Body<Channel>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, Channel) = load(&st, C, &space, &id, "Channel").await?;
    let name = require_name(&c.name, "channel", 200)?;
    c.id = old.id.clone();
    c.space_id = space.clone();
    c.project_id = old.project_id.clone();
    c.name = name.clone();
    c.slug = slugify(&name);
    if old.is_default && !c.is_default {
        return Err(ApiError::bad_request(format!(
            "Channel '{}' is the project's default channel; make another channel the default (IsDefault: true) instead",
            old.name
        )));
    }
    let (_, p): (_, Project) = load(&st, "Projects", &space, &c.project_id, "Project").await?;
    validate(&st, &space, &p, &mut c).await?;
    let others = if c.is_default && !old.is_default {
        other_defaults(&st, &space, &c).await?
    } else {
        Vec::new()
    };
    let mut tx = st.db.begin().await?;
    let was_default = clear_other_defaults(&mut tx, others).await?;
    let mut r = doc_row(
        C,
        &c.id,
        &space,
        &c.project_id,
        &c.name,
        &c.slug,
        0,
        row.seq,
        &c,
    )?;
    r.created_at = row.created_at;
    tx.update_doc(&r)
        .await
        .map_err(|e| name_conflict(e, "channel", &name))?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Modified",
        format!("Channel {} was modified", c.name),
        &[&c.id, &c.project_id],
        json!({"Before": old, "After": c, "NoLongerDefault": was_default}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render(&space, &c)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, c): (_, Channel) = load(&st, C, &space, &id, "Channel").await?;
    if c.is_default {
        return Err(ApiError::bad_request(
            "The default channel of a project cannot be deleted",
        ));
    }
    let mut tx = st.db.begin().await?;
    tx.delete_doc(&c.id).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Deleted",
        format!("Channel {} was deleted", c.name),
        &[&c.id, &c.project_id],
        json!({"Document": c}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

/// `GET|POST /api/{space}/channels/rule-test?version=&versionRange=&preReleaseTag=` (the POST
/// may carry `Version`, `VersionRange` and `PreReleaseTag` in its body instead): whether a
/// version satisfies a rule's range and tag, with the reasons it could not be tested in
/// `Errors` (`Invalid Version Number`, a range or pattern that does not parse).
pub async fn rule_test(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let params = Params::parse(raw.as_deref());
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("The body is not JSON: {e}")))?
    };
    let field = |name: &str| -> String {
        params
            .get(name)
            .map(str::to_string)
            .or_else(|| {
                body.as_object().and_then(|o| {
                    o.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .and_then(|(_, v)| v.as_str())
                        .map(str::to_string)
                })
            })
            .unwrap_or_default()
    };
    let (version, range, tag) = (
        field("version"),
        field("versionRange"),
        field("preReleaseTag"),
    );
    let mut errors = Vec::new();
    let parsed = Version::parse(&version);
    if parsed.is_none() {
        errors.push("Invalid Version Number".to_string());
    }
    let range_ok = match RuleMatcher::compile(&range, "") {
        Ok(m) => parsed.as_ref().is_some_and(|v| m.accepts(v)),
        Err(e) => {
            errors.push(e.to_string());
            false
        }
    };
    let tag_ok = match RuleMatcher::compile("", &tag) {
        Ok(m) => parsed.as_ref().is_some_and(|v| m.accepts(v)),
        Err(e) => {
            errors.push(e.to_string());
            false
        }
    };
    Ok(Json(json!({
        "Errors": errors,
        "SatisfiesVersionRange": range_ok,
        "SatisfiesPreReleaseTag": tag_ok,
    })))
}
