//! Releases: immutable snapshots of a project's process and variables with a version unique
//! per project. Creating one copies the current process, the project's variable set and each
//! included library variable set into snapshot documents; later edits to the project never
//! change a release, except "update variables" (`snapshot-variables`), which takes new
//! variable snapshots and leaves the process alone.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::channel_rules::select_latest;
use ferry_domain::lifecycle::{EnvRef, allowed_environments, effective_phases};
use ferry_domain::time::{format_ms, now_ms};
use ferry_domain::version::Version;
use ferry_domain::{Channel, DeploymentProcess, Environment, Lifecycle, Project, Release};
use ferry_store::{DocQuery, DocRow, TaskQuery, Tx};
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "Releases";

pub fn render(space: &str, r: &Release) -> Value {
    let base = format!("/api/{space}/releases/{}", r.id);
    let mut v = render_with_links(space, r, &base);
    if let Some(o) = v.as_object_mut() {
        // Defects are shown through `/defects`; the release says whether one is in force.
        o.remove("Defects");
        o.insert(
            "HasUnresolvedDefect".into(),
            json!(unresolved_defect(r).is_some()),
        );
    }
    v
}

fn render_with_links(space: &str, r: &Release, base: &str) -> Value {
    let base = base.to_string();
    with_links(
        r,
        links(
            base.clone(),
            &[
                ("Project", format!("/api/{space}/projects/{}", r.project_id)),
                ("Channel", format!("/api/{space}/channels/{}", r.channel_id)),
                ("Deployments", format!("{base}/deployments{{?skip,take}}")),
                ("Progression", format!("{base}/progression")),
                ("Defects", format!("{base}/defects")),
                (
                    "ProjectDeploymentProcessSnapshot",
                    format!(
                        "/api/{space}/deploymentprocesses/{}",
                        r.project_deployment_process_snapshot_id
                    ),
                ),
                (
                    "ProjectVariableSnapshot",
                    format!(
                        "/api/{space}/variables/{}",
                        r.project_variable_set_snapshot_id
                    ),
                ),
                ("SnapshotVariables", format!("{base}/snapshot-variables")),
                ("Web", format!("/app#/{space}/releases/{}", r.id)),
            ],
        ),
    )
}

fn render_row(space: &str, d: &DocRow) -> ApiResult<Value> {
    Ok(render(space, &parse_body(d)?))
}

/// The project's variables a release template may use: unscoped ones, and those scoped only to
/// the release's channel (which win).
async fn release_template_vars(
    st: &AppState,
    space: &str,
    project: &Project,
    channel: &Channel,
) -> ApiResult<ferry_template::MapVariables> {
    let mut vars = ferry_template::MapVariables::new();
    let (_, set): (_, ferry_domain::VariableSet) = load(
        st,
        "VariableSets",
        space,
        &project.variable_set_id,
        "Variable set",
    )
    .await?;
    for v in set.variables.iter().filter(|v| !v.is_sensitive) {
        let scope = &v.scope;
        let channel_only = scope.environment.is_empty()
            && scope.role.is_empty()
            && scope.machine.is_empty()
            && scope.action.is_empty()
            && scope.tenant.is_empty()
            && scope.tenant_tag.is_empty()
            && (scope.channel.is_empty() || scope.channel.contains(&channel.id));
        if channel_only {
            if let Some(val) = &v.value {
                if !scope.channel.is_empty()
                    || ferry_template::VariableSource::get(&vars, &v.name).is_none()
                {
                    vars.set(v.name.clone(), val.clone());
                }
            }
        }
    }
    vars.set("Octopus.Project.Name".to_string(), project.name.clone());
    vars.set(
        "Octopus.Release.Channel.Name".to_string(),
        channel.name.clone(),
    );
    Ok(vars)
}

/// The special variables of a release version template (Octopus's documented list):
/// `Octopus.Version.(Last|Next)(Major|Minor|Patch|Build|Revision|Suffix)` of the project's
/// latest release, the same under `Octopus.Version.Channel.` for the release's channel and under
/// `Octopus.Version.Channel[Name].` for each channel of the project, `Octopus.Date.(Year|Month|
/// Day|DayOfYear)` and `Octopus.Time.(Hour|Minute|Second)` (UTC). `Build` and `Revision` are
/// both the fourth part (NuGet's revision); `Next*` is the part plus one; `Suffix` is the
/// pre-release label without its `-`.
pub(crate) fn version_variables(
    last: Option<&Version>,
    last_in_channel: Option<&Version>,
    channels: &[(String, Option<Version>)],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, String)> {
    use chrono::{Datelike, Timelike};
    let mut out = Vec::new();
    let mut prefixes: Vec<(String, Option<&Version>)> = vec![
        ("Octopus.Version".to_string(), last),
        ("Octopus.Version.Channel".to_string(), last_in_channel),
    ];
    for (name, v) in channels {
        prefixes.push((format!("Octopus.Version.Channel[{name}]"), v.as_ref()));
    }
    for (prefix, v) in prefixes {
        let part = |i: usize| v.map(|v| v.part(i)).unwrap_or(0);
        for (i, name) in ["Major", "Minor", "Patch", "Build", "Revision"]
            .iter()
            .enumerate()
        {
            let lastp = if i == 4 { part(3) } else { part(i) };
            out.push((format!("{prefix}.Last{name}"), lastp.to_string()));
            out.push((
                format!("{prefix}.Next{name}"),
                lastp.saturating_add(1).to_string(),
            ));
        }
        let suffix = v.map(|v| v.pre_release.clone()).unwrap_or_default();
        out.push((format!("{prefix}.LastSuffix"), suffix.clone()));
        out.push((format!("{prefix}.NextSuffix"), suffix));
    }
    out.push(("Octopus.Date.Year".to_string(), now.year().to_string()));
    out.push((
        "Octopus.Date.Month".to_string(),
        format!("{:02}", now.month()),
    ));
    out.push(("Octopus.Date.Day".to_string(), format!("{:02}", now.day())));
    out.push((
        "Octopus.Date.DayOfYear".to_string(),
        now.ordinal().to_string(),
    ));
    out.push((
        "Octopus.Time.Hour".to_string(),
        format!("{:02}", now.hour()),
    ));
    out.push((
        "Octopus.Time.Minute".to_string(),
        format!("{:02}", now.minute()),
    ));
    out.push((
        "Octopus.Time.Second".to_string(),
        format!("{:02}", now.second()),
    ));
    out
}

/// The version of a release created without one: the project's versioning template rendered
/// with [`version_variables`] and the project's unscoped and channel-scoped variables
/// (`Octopus.Project.Name`, `Octopus.Release.Channel.Name` too); or a mask such as `1.2.c.i`
/// (`c` keeps the last release's part, `i` increments it). (A donor package's version is
/// handled by `create_release`.)
async fn next_version(
    st: &AppState,
    space: &str,
    project: &Project,
    channel: &Channel,
) -> ApiResult<String> {
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            owner_id: Some(project.id.clone()),
            ..DocQuery::new(C)
        })
        .await?;
    let mut last: Option<Version> = None;
    let mut by_channel: std::collections::HashMap<String, Version> = Default::default();
    for r in &rows {
        if let Some(v) = Version::parse(&r.name) {
            let slot = by_channel
                .entry(r.ref1.clone())
                .or_insert_with(|| v.clone());
            if &v > slot {
                *slot = v.clone();
            }
            if last.as_ref().is_none_or(|l| &v > l) {
                last = Some(v);
            }
        }
    }
    let template = project
        .versioning_strategy
        .template
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| {
            ferry_domain::VersioningStrategy::default()
                .template
                .unwrap_or_default()
        });
    let rendered = if !template.contains("#{") && is_mask(&template) {
        apply_mask(&template, last.as_ref())
    } else {
        let mut vars = release_template_vars(st, space, project, channel).await?;
        let (channel_rows, _) = st
            .db
            .list_docs(&DocQuery {
                space_id: Some(space.to_string()),
                owner_id: Some(project.id.clone()),
                ..DocQuery::new("Channels")
            })
            .await?;
        let channels: Vec<(String, Option<Version>)> = channel_rows
            .iter()
            .map(|c| (c.name.clone(), by_channel.get(&c.id).cloned()))
            .collect();
        for (k, v) in version_variables(
            last.as_ref(),
            by_channel.get(&channel.id),
            &channels,
            chrono::Utc::now(),
        ) {
            vars.set(k, v);
        }
        ferry_template::render(&template, &vars, &ferry_template::Options::default())
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "The project's release version template could not be rendered: {e}"
                ))
            })?
            .text
    };
    let rendered = rendered.trim().to_string();
    if Version::parse(&rendered).is_none() {
        return Err(ApiError::bad_request(format!(
            "The project's release version template '{template}' produced '{rendered}', which is not a valid version; give a ReleaseVersion or fix the template"
        )));
    }
    Ok(rendered)
}

fn is_mask(t: &str) -> bool {
    let parts: Vec<&str> = t.trim().split('.').collect();
    (1..=4).contains(&parts.len())
        && parts.iter().any(|p| *p == "i" || *p == "c")
        && parts.iter().all(|p| {
            *p == "i" || *p == "c" || (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Applies an Octopus version mask: `c` keeps the last version's part, `i` increments it and
/// resets the parts after it.
fn apply_mask(mask: &str, last: Option<&Version>) -> String {
    let parts: Vec<&str> = mask.trim().split('.').collect();
    let mut out: Vec<String> = Vec::with_capacity(parts.len());
    let mut incremented = false;
    for (i, p) in parts.iter().enumerate() {
        let prev = last.map(|v| v.part(i)).unwrap_or(0);
        let v = match *p {
            "c" if incremented => 0,
            "c" => prev,
            "i" if incremented => 0,
            "i" => {
                incremented = true;
                prev + 1
            }
            n => n.parse().unwrap_or(0),
        };
        out.push(v.to_string());
    }
    out.join(".")
}

/// What is needed to create a release.
#[derive(Clone, Debug, Default)]
pub struct NewRelease {
    pub project: String,
    pub channel: Option<String>,
    pub version: Option<String>,
    pub notes: Option<String>,
    pub ignore_if_exists: bool,
    pub ignore_channel_rules: bool,
    /// `step-or-package:version` or `reference:step-or-package:version` entries.
    pub packages: Vec<String>,
    /// The version for every package not named in `packages`.
    pub package_version: Option<String>,
    /// Explicit selections (the native create endpoint's `SelectedPackages`).
    pub selected: Vec<ferry_domain::SelectedPackage>,
    /// Custom fields (`Octopus.Release.CustomFields[name]`): at most 10, each at most 150
    /// characters, as Octopus allows.
    pub custom_fields: std::collections::BTreeMap<String, String>,
}

/// Splits a `Packages` entry at unescaped `:`, `/` or `=` (a backslash escapes a literal one).
fn split_package_entry(entry: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = entry.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if let Some(last) = parts.last_mut() {
                        last.push(n);
                    }
                }
            }
            ':' | '/' | '=' => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

/// Picks the version of every package the process deploys from the built-in feed: given
/// explicitly (by step or package id), the default `PackageVersion`, or the latest in the feed
/// that satisfies every rule of the channel that applies to the step's package (without rules,
/// stable versions first). An explicit version that is not in the feed, or that breaks a rule
/// (unless `IgnoreChannelRules`), is refused naming the package, the version, the channel and
/// the rule (`docs/channels.md`).
async fn select_packages(
    st: &AppState,
    space: &str,
    process: &DeploymentProcess,
    nr: &NewRelease,
    channel: &Channel,
    rules: &[super::channels::CompiledRule],
) -> ApiResult<Vec<ferry_domain::SelectedPackage>> {
    let mut explicit: Vec<(Option<String>, String, String)> = Vec::new();
    for entry in &nr.packages {
        let parts = split_package_entry(entry);
        match parts.as_slice() {
            [key, version] => explicit.push((None, key.clone(), version.clone())),
            [reference, key, version] => {
                explicit.push((Some(reference.clone()), key.clone(), version.clone()))
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "'{entry}' in Packages is not StepOrPackageId:Version (or Reference:StepOrPackageId:Version)"
                )));
            }
        }
    }
    let mut out = Vec::new();
    for step in &process.steps {
        for action in step.actions.iter().filter(|a| !a.is_disabled) {
            let Some(package_id) = ferry_executor::deploy_package::primary_package_id(action)
            else {
                continue;
            };
            let feed = action
                .packages
                .iter()
                .find(|p| p.name.is_empty())
                .map(|p| p.feed_id.clone())
                .or_else(|| {
                    action
                        .prop("Octopus.Action.Package.FeedId")
                        .map(str::to_string)
                })
                .unwrap_or_default();
            if !feed.is_empty() && !feed.eq_ignore_ascii_case(ferry_domain::BUILTIN_FEED_ID) {
                return Err(ApiError::bad_request(format!(
                    "Step '{}' uses the feed '{feed}'; only the built-in feed (feeds-builtin) is supported",
                    step.name
                )));
            }
            let applicable = if nr.ignore_channel_rules {
                Vec::new()
            } else {
                super::channels::rules_for(rules, &action.name, "")
            };
            let matches = |k: &str| {
                k.eq_ignore_ascii_case(&action.name)
                    || k.eq_ignore_ascii_case(&step.name)
                    || k.eq_ignore_ascii_case(&package_id)
            };
            let given = nr
                .selected
                .iter()
                .find(|s| {
                    s.action_name.eq_ignore_ascii_case(&action.name)
                        && s.package_reference_name.is_empty()
                })
                .map(|s| s.version.clone())
                .or_else(|| {
                    explicit
                        .iter()
                        .find(|(r, k, _)| r.as_deref().is_none_or(str::is_empty) && matches(k))
                        .map(|(_, _, v)| v.clone())
                })
                .or_else(|| nr.package_version.clone().filter(|v| !v.trim().is_empty()));
            let version = match given {
                Some(v) => {
                    let parsed = Version::parse(&v).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "'{v}' given for the package {package_id} is not a version"
                        ))
                    })?;
                    if let Some(rule) = applicable.iter().find(|r| !r.matcher.accepts(&parsed)) {
                        return Err(ApiError::bad_request(format!(
                            "The package {package_id} version {v} (step '{}') does not satisfy {} of the channel '{}'; choose a version it allows, another channel, or set IgnoreChannelRules",
                            step.name,
                            rule.describe(),
                            channel.name
                        )));
                    }
                    let found = st
                        .db
                        .find_package(
                            space,
                            &ferry_store::packages::package_key(&package_id),
                            &ferry_store::packages::version_key(&parsed),
                        )
                        .await?;
                    match found {
                        Some(p) => p.version,
                        None => {
                            return Err(ApiError::bad_request(format!(
                                "The package {package_id} version {v} (step '{}') is not in the built-in feed",
                                step.name
                            )));
                        }
                    }
                }
                None => {
                    let (rows, _) = st
                        .db
                        .list_packages(&ferry_store::packages::PackageQuery {
                            space_id: Some(space.to_string()),
                            package_id: Some(package_id.clone()),
                            ..Default::default()
                        })
                        .await?;
                    if rows.is_empty() {
                        return Err(ApiError::bad_request(format!(
                            "The package {package_id} used by step '{}' has no versions in the built-in feed; push one first or give a version",
                            step.name
                        )));
                    }
                    let parsed: Vec<(Version, String)> = rows
                        .into_iter()
                        .filter_map(|r| Version::parse(&r.version).map(|v| (v, r.version)))
                        .collect();
                    let matchers: Vec<&ferry_domain::channel_rules::RuleMatcher> =
                        applicable.iter().map(|r| &r.matcher).collect();
                    let best = select_latest(parsed.iter().map(|(v, _)| v), &matchers);
                    match best.and_then(|b| parsed.iter().find(|(v, _)| v == b)) {
                        Some((_, shown)) => shown.clone(),
                        None => {
                            let described: Vec<String> =
                                applicable.iter().map(|r| r.describe()).collect();
                            return Err(ApiError::bad_request(format!(
                                "No version of the package {package_id} (step '{}') in the built-in feed satisfies {} of the channel '{}'; push one, give a version with IgnoreChannelRules, or use another channel",
                                step.name,
                                described.join(" and "),
                                channel.name
                            )));
                        }
                    }
                }
            };
            out.push(ferry_domain::SelectedPackage {
                action_name: action.name.clone(),
                step_name: step.name.clone(),
                package_reference_name: String::new(),
                version,
            });
        }
    }
    Ok(out)
}

/// The version of the donor package when the project's versioning strategy takes the release
/// version from a package (`DonorPackage {DeploymentAction, PackageReference}`, or the legacy
/// `DonorPackageStepId`); `None` when it uses a template. An action that is not in the process,
/// or deploys no package, is refused naming it.
fn donor_action(project: &Project, process: &DeploymentProcess) -> ApiResult<Option<String>> {
    let vs = &project.versioning_strategy;
    let named = vs
        .donor_package
        .as_ref()
        .and_then(|d| d.as_object())
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("DeploymentAction"))
                .and_then(|(_, v)| v.as_str())
        })
        .map(str::trim)
        .filter(|a| !a.is_empty());
    let actions = || {
        process
            .steps
            .iter()
            .flat_map(|s| s.actions.iter().map(move |a| (s, a)))
    };
    let action = match (named, vs.donor_package_step_id.as_deref().map(str::trim)) {
        (Some(name), _) => actions()
            .find(|(_, a)| a.name.eq_ignore_ascii_case(name))
            .map(|(_, a)| a)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "The project's release versioning takes the version from the package of the action '{name}', which is not in the deployment process"
                ))
            })?,
        (None, Some(step_id)) if !step_id.is_empty() => actions()
            .find(|(s, a)| s.id == step_id || a.id == step_id)
            .map(|(_, a)| a)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "The project's release versioning takes the version from the package of the step '{step_id}', which is not in the deployment process"
                ))
            })?,
        _ => return Ok(None),
    };
    if ferry_executor::deploy_package::primary_package_id(action).is_none() || action.is_disabled {
        return Err(ApiError::bad_request(format!(
            "The project's release versioning takes the version from the package of the action '{}', which deploys no package",
            action.name
        )));
    }
    Ok(Some(action.name.clone()))
}

/// Build information of the selected packages, and `Octopus.Release.Package` for a release
/// notes template: per package `PackageId`, `Version`, the build fields, `Commits`
/// (`CommitId`, `Comment`, `LinkUrl`) and `WorkItems` (`Id`, `Description`, `LinkUrl`).
/// Returns (every package, for the template; those with build information, for the release).
async fn release_build_information(
    st: &AppState,
    space: &str,
    process: &DeploymentProcess,
    selected: &[ferry_domain::SelectedPackage],
) -> ApiResult<(Vec<Value>, Vec<Value>)> {
    let mut all = Vec::new();
    let mut with_info = Vec::new();
    for sp in selected {
        let Some(package_id) = process
            .steps
            .iter()
            .flat_map(|s| s.actions.iter())
            .find(|a| a.name.eq_ignore_ascii_case(&sp.action_name))
            .and_then(ferry_executor::deploy_package::primary_package_id)
        else {
            continue;
        };
        let info = match Version::parse(&sp.version) {
            Some(v) => {
                st.db
                    .find_build_information(
                        space,
                        &ferry_store::packages::package_key(&package_id),
                        &ferry_store::packages::version_key(&v),
                    )
                    .await?
            }
            None => None,
        };
        let details: Option<super::buildinfo::Details> =
            info.and_then(|row| serde_json::from_str(&row.body).ok());
        let d = details.clone().unwrap_or_default();
        let field = |v: &Value, k: &str| -> String {
            v.as_object()
                .and_then(|o| {
                    o.iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(k))
                        .map(|(_, v)| match v {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        })
                })
                .unwrap_or_default()
        };
        let commits: Vec<Value> = d
            .commits
            .iter()
            .map(|c| json!({"CommitId": c.id, "Id": c.id, "Comment": c.comment, "LinkUrl": c.link_url}))
            .collect();
        let work_items: Vec<Value> = d
            .work_items
            .iter()
            .map(|w| {
                json!({
                    "Id": field(w, "Id"),
                    "Description": field(w, "Description"),
                    "LinkUrl": field(w, "LinkUrl"),
                    "Source": field(w, "Source"),
                })
            })
            .collect();
        let entry = json!({
            "PackageId": package_id,
            "Version": sp.version,
            "BuildEnvironment": d.build_environment,
            "BuildNumber": d.build_number,
            "BuildUrl": d.build_url,
            "Branch": d.branch,
            "VcsType": d.vcs_type,
            "VcsRoot": d.vcs_root,
            "VcsCommitNumber": d.vcs_commit_number,
            "VcsCommitUrl": d.vcs_commit_url,
            "IssueTrackerName": d.issue_tracker_name,
            "Commits": commits,
            "WorkItems": work_items,
        });
        if details.is_some() {
            with_info.push(entry.clone());
        }
        all.push(entry);
    }
    Ok((all, with_info))
}

/// Renders the project's release notes template over the project's variables and the
/// packages' build information (`Octopus.Release.Package`, `Octopus.Release.WorkItems`), with
/// `Octopus.Release.Number` the release's version.
fn render_release_notes(
    template: &str,
    mut vars: ferry_template::MapVariables,
    version: &str,
    packages: &[Value],
) -> ApiResult<String> {
    let mut work_items: Vec<Value> = Vec::new();
    for p in packages {
        for w in p["WorkItems"].as_array().into_iter().flatten() {
            if !work_items.iter().any(|x| x["Id"] == w["Id"]) {
                work_items.push(w.clone());
            }
        }
    }
    vars.set("Octopus.Release.Number".to_string(), version.to_string());
    vars.set(
        "Octopus.Release.Package".to_string(),
        Value::Array(packages.to_vec()).to_string(),
    );
    vars.set(
        "Octopus.Release.WorkItems".to_string(),
        Value::Array(work_items).to_string(),
    );
    Ok(
        ferry_template::render(template, &vars, &ferry_template::Options::default())
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "The project's release notes template could not be rendered: {e}"
                ))
            })?
            .text,
    )
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..5].to_uppercase()
}

/// New snapshots of a project's variables: its own set and each included library set's, with
/// snapshot ids `<set id>-s-<version>-<suffix>`. Variable ids and owners are kept, so sealed
/// values still open.
pub struct VariableSnapshots {
    pub project: ferry_domain::VariableSet,
    pub libraries: Vec<ferry_domain::VariableSet>,
}

impl VariableSnapshots {
    pub async fn take(st: &AppState, space: &str, project: &Project) -> ApiResult<Self> {
        let mut sets = super::variables::current_sets(st, space, project)
            .await?
            .into_iter()
            .map(|s| {
                let mut snap = s.set;
                snap.id = format!("{}-s-{}-{}", snap.id, snap.version, random_suffix());
                snap
            });
        let project_set = sets.next().ok_or_else(|| {
            ApiError::internal(format!("project {} has no variable set", project.id))
        })?;
        Ok(VariableSnapshots {
            project: project_set,
            libraries: sets.collect(),
        })
    }

    pub fn library_ids(&self) -> Vec<String> {
        self.libraries.iter().map(|s| s.id.clone()).collect()
    }

    /// Writes the snapshot documents. They belong to the project (deleted with it), whichever
    /// set they copy.
    pub async fn insert(
        &self,
        tx: &mut Tx,
        space: &str,
        project_id: &str,
        seq: i64,
    ) -> ApiResult<()> {
        for snap in std::iter::once(&self.project).chain(self.libraries.iter()) {
            tx.insert_doc(&doc_row(
                super::variables::SNAPSHOTS,
                &snap.id,
                space,
                project_id,
                &snap.id,
                "",
                0,
                seq,
                snap,
            )?)
            .await?;
        }
        Ok(())
    }
}

/// Creates a release (or returns the existing one with `ignore_if_exists`). Returns the release
/// and whether it was created now. An unknown project is a 400 (as the executions API expects).
pub async fn create_release(
    st: &AppState,
    space: &str,
    ctx: &Ctx,
    nr: NewRelease,
) -> ApiResult<(Release, bool)> {
    require_space(st, space).await?;
    let (_, project): (_, Project) = find(st, "Projects", space, None, nr.project.trim())
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(format!("Project '{}' could not be found", nr.project))
        })?;
    crate::authz::require(
        st,
        ctx,
        Some(space),
        crate::routes::Permission::ReleaseCreate,
        &crate::authz::Target::project(&project.id, &project.project_group_id),
    )
    .await?;
    if project.is_disabled {
        return Err(ApiError::bad_request(format!(
            "Project '{}' is disabled",
            project.name
        )));
    }
    let channel: Channel =
        super::channels::resolve(st, space, &project.id, nr.channel.as_deref()).await?;
    let rules = super::channels::compile_rules(&channel)?;
    let (_, process): (_, DeploymentProcess) = load(
        st,
        "DeploymentProcesses",
        space,
        &project.deployment_process_id,
        "Deployment process",
    )
    .await?;
    // With a donor package the version is that package's, so its packages are picked first.
    let mut early_selection = None;
    let version = match nr
        .version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        Some(v) => {
            if Version::parse(v).is_none() {
                return Err(ApiError::bad_request(format!(
                    "'{v}' is not a valid version; use a version such as 1.2.3, 1.2.3.4 or 1.2.3-beta.1"
                )));
            }
            v.to_string()
        }
        None => match donor_action(&project, &process)? {
            Some(action) => {
                let selected = select_packages(st, space, &process, &nr, &channel, &rules).await?;
                let v = selected
                    .iter()
                    .find(|s| s.action_name.eq_ignore_ascii_case(&action))
                    .map(|s| s.version.clone())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "The project's release versioning takes the version from the package of the action '{action}', which is disabled"
                        ))
                    })?;
                early_selection = Some(selected);
                v
            }
            None => next_version(st, space, &project, &channel).await?,
        },
    };
    if let Some((_, existing)) = find::<Release>(st, C, space, Some(&project.id), &version).await? {
        if existing.version.eq_ignore_ascii_case(&version) {
            if nr.ignore_if_exists {
                return Ok((existing, false));
            }
            return Err(ApiError::conflict(format!(
                "A release with the version {version} already exists for the project {}",
                project.name
            )));
        }
    }
    let vars = VariableSnapshots::take(st, space, &project).await?;
    let selected_packages = match early_selection {
        Some(s) => s,
        None => select_packages(st, space, &process, &nr, &channel, &rules).await?,
    };
    let (notes_packages, build_information) =
        release_build_information(st, space, &process, &selected_packages).await?;
    let notes = match (
        nr.notes.as_deref().filter(|n| !n.trim().is_empty()),
        project
            .release_notes_template
            .as_deref()
            .filter(|t| !t.trim().is_empty()),
    ) {
        (None, Some(template)) => Some(render_release_notes(
            template,
            release_template_vars(st, space, &project, &channel).await?,
            &version,
            &notes_packages,
        )?),
        // Given notes may use the same variables (Octopus evaluates them at creation); notes
        // that cannot be rendered are kept as written.
        (Some(given), _) if given.contains("#{") => Some(
            render_release_notes(
                given,
                release_template_vars(st, space, &project, &channel).await?,
                &version,
                &notes_packages,
            )
            .unwrap_or_else(|_| given.to_string()),
        ),
        _ => nr.notes.clone(),
    };
    if nr.custom_fields.len() > 10 {
        return Err(ApiError::bad_request(
            "A release can have at most 10 custom fields",
        ));
    }
    if let Some((k, _)) = nr
        .custom_fields
        .iter()
        .find(|(k, v)| k.chars().count() > 150 || v.chars().count() > 150)
    {
        return Err(ApiError::bad_request(format!(
            "The custom field '{k}' is longer than 150 characters"
        )));
    }

    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq(C).await?;
    let mut snap = process.clone();
    snap.id = format!("{}-s-{}-{}", process.id, process.version, random_suffix());
    let release = Release {
        id: format!("{C}-{seq}"),
        space_id: space.to_string(),
        project_id: project.id.clone(),
        channel_id: channel.id.clone(),
        version: version.clone(),
        release_notes: notes,
        assembled: format_ms(now_ms()),
        ignore_channel_rules: nr.ignore_channel_rules,
        project_deployment_process_snapshot_id: snap.id.clone(),
        project_variable_set_snapshot_id: vars.project.id.clone(),
        library_variable_set_snapshot_ids: vars.library_ids(),
        selected_packages,
        build_information,
        custom_fields: nr.custom_fields.clone(),
        ..Release::default()
    };
    tx.insert_doc(&doc_row(
        super::process::SNAPSHOTS,
        &snap.id,
        space,
        &project.id,
        &snap.id,
        "",
        0,
        seq,
        &snap,
    )?)
    .await?;
    vars.insert(&mut tx, space, &project.id, seq).await?;
    let mut row = doc_row(
        C,
        &release.id,
        space,
        &project.id,
        &release.version,
        "",
        0,
        seq,
        &release,
    )?;
    row.ref1 = channel.id.clone();
    tx.insert_doc(&row).await.map_err(|e| match e {
        ferry_store::StoreError::Conflict => ApiError::conflict(format!(
            "A release with the version {version} already exists for the project {}",
            project.name
        )),
        other => other.into(),
    })?;
    audit(
        &mut tx,
        ctx,
        space,
        "Created",
        format!("Release {version} of project {} was created", project.name),
        &[&release.id, &project.id, &channel.id],
        json!({"Document": release}),
    )
    .await?;
    tx.commit().await?;
    // Entering the lifecycle's first phase(s) deploys to their automatic environments.
    super::autodeploy::promote(st, space, &release, &project, None, true).await;
    Ok((release, true))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateReleaseBody {
    pub project_id: String,
    pub channel_id: Option<String>,
    pub version: Option<String>,
    pub release_notes: Option<String>,
    pub ignore_channel_rules: bool,
    pub selected_packages: Vec<ferry_domain::SelectedPackage>,
    pub custom_fields: std::collections::BTreeMap<String, String>,
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(b): Body<CreateReleaseBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if b.project_id.trim().is_empty() {
        return Err(ApiError::bad_request(
            "Please provide the ProjectId of the release",
        ));
    }
    let (r, _) = create_release(
        &st,
        &space,
        &ctx,
        NewRelease {
            project: b.project_id,
            channel: b.channel_id,
            version: b.version,
            notes: b.release_notes,
            ignore_if_exists: false,
            ignore_channel_rules: b.ignore_channel_rules,
            packages: Vec::new(),
            package_version: None,
            selected: b.selected_packages,
            custom_fields: b.custom_fields,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(render(&space, &r))))
}

/// Takes new snapshots of the project's and library sets' variables for a release (Octopus's
/// "update variables"); the process snapshot is untouched. Returns the updated release.
pub async fn update_variables(
    st: &AppState,
    space: &str,
    ctx: &Ctx,
    release_id: &str,
) -> ApiResult<Release> {
    let (row, mut r): (_, Release) = load(st, C, space, release_id, "Release").await?;
    let (_, project): (_, Project) = load(st, "Projects", space, &r.project_id, "Project").await?;
    let vars = VariableSnapshots::take(st, space, &project).await?;
    let before = (
        r.project_variable_set_snapshot_id.clone(),
        r.library_variable_set_snapshot_ids.clone(),
    );
    r.project_variable_set_snapshot_id = vars.project.id.clone();
    r.library_variable_set_snapshot_ids = vars.library_ids();
    let mut tx = st.db.begin().await?;
    vars.insert(&mut tx, space, &project.id, row.seq).await?;
    let mut new_row = doc_row(C, &r.id, space, &project.id, &r.version, "", 0, row.seq, &r)?;
    new_row.ref1 = row.ref1.clone();
    new_row.created_at = row.created_at;
    tx.update_doc(&new_row).await?;
    audit(
        &mut tx,
        ctx,
        space,
        "Modified",
        format!(
            "Variables of release {} of project {} were updated",
            r.version, project.name
        ),
        &[&r.id, &project.id],
        json!({
            "Before": {"ProjectVariableSetSnapshotId": before.0, "LibraryVariableSetSnapshotIds": before.1},
            "After": {"ProjectVariableSetSnapshotId": r.project_variable_set_snapshot_id, "LibraryVariableSetSnapshotIds": r.library_variable_set_snapshot_ids},
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(r)
}

/// `POST /releases/{id}/snapshot-variables`.
pub async fn snapshot_variables(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let r = update_variables(&st, &space, &ctx, &id).await?;
    Ok(Json(render(&space, &r)))
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let visible = crate::visibility::Visibility::of(
        &st,
        &ctx,
        Some(&space),
        crate::routes::Permission::ReleaseView,
    )
    .await?;
    let base = format!("/api/{space}/releases");
    let q = DocQuery {
        space_id: Some(space.clone()),
        newest_first: true,
        ..DocQuery::new(C)
    };
    let params = Params::parse(raw.as_deref());
    Ok(Json(
        list_page_visible(
            &st,
            q,
            &params,
            "Release",
            &base,
            &format!("{base}{{/id}}{{?skip,ignoreChannelRules,take,ids}}"),
            visible.as_ref(),
            |d| render_row(&space, d),
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
    let params = Params::parse(raw.as_deref());
    let base = format!("/api/{space}/projects/{}/releases", p.id);
    let mut q = DocQuery {
        space_id: Some(space.clone()),
        owner_id: Some(p.id.clone()),
        newest_first: true,
        ..DocQuery::new(C)
    };
    q.partial_name = params.get("searchByVersion").map(str::to_string);
    let v = list_page(
        &st,
        q.clone(),
        &params,
        "Release",
        &base,
        &format!("{base}{{/version}}{{?skip,take,searchByVersion}}"),
        |d| render_row(&space, d),
    )
    .await?;
    Ok(Json(v))
}

pub async fn by_version(
    State(st): State<AppState>,
    Path((space, project, version)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, p) = super::projects::resolve(&st, &space, &project).await?;
    let mut q = DocQuery {
        space_id: Some(space.clone()),
        owner_id: Some(p.id.clone()),
        ..DocQuery::new(C)
    };
    q.name = Some(version.clone());
    let (rows, _) = st.db.list_docs(&q).await?;
    match rows.first() {
        Some(d) => Ok(Json(render_row(&space, d)?)),
        None => Err(ApiError::not_found(format!(
            "Release '{version}' of project '{}' was not found",
            p.name
        ))),
    }
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, r): (_, Release) = load(&st, C, &space, &id, "Release").await?;
    Ok(Json(render(&space, &r)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, r): (_, Release) = load(&st, C, &space, &id, "Release").await?;
    let (active, _) = st
        .db
        .list_tasks(&TaskQuery {
            release_id: Some(r.id.clone()),
            active_only: true,
            take: Some(1),
            ..TaskQuery::default()
        })
        .await?;
    if !active.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Release {} has a deployment in progress; wait for it or cancel it first",
            r.version
        )));
    }
    let mut tx = st.db.begin().await?;
    // Its deployments, their tasks and logs, and its snapshots go with it.
    super::release_retention::purge_release(&st, &mut tx, &r).await?;
    tx.rebuild_dashboard_project(&r.project_id).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Deleted",
        format!("Release {} was deleted", r.version),
        &[&r.id, &r.project_id],
        json!({"Document": r}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

/// The lifecycle phases that apply to a release, and where it has been deployed.
pub struct Progress {
    pub phases: Vec<ferry_domain::lifecycle::EffectivePhase>,
    pub succeeded: HashSet<String>,
    pub deployed: HashSet<String>,
    pub environments: Vec<Environment>,
}

pub async fn progress(
    st: &AppState,
    space: &str,
    release: &Release,
    project: &Project,
) -> ApiResult<Progress> {
    progress_for(st, space, release, project, None).await
}

/// [`progress`] for one tenant: only that tenant's deployments of the release count (lifecycle
/// progression is per tenant for tenanted deployments). `None` counts every deployment.
pub async fn progress_for(
    st: &AppState,
    space: &str,
    release: &Release,
    project: &Project,
    tenant: Option<&str>,
) -> ApiResult<Progress> {
    Ok(history(st, space, release, project).await?.progress(tenant))
}

/// A release's lifecycle phases and every deployment of it (environment, tenant, state), read
/// once; [`History::progress`] then gives the progression of any tenant without more reads.
pub struct History {
    phases: Vec<ferry_domain::lifecycle::EffectivePhase>,
    environments: Vec<Environment>,
    /// (environment, tenant, task state) of each deployment of the release.
    deployments: Vec<(String, Option<String>, String)>,
}

impl History {
    /// The progression counting only `tenant`'s deployments (`None`: every deployment).
    pub fn progress(&self, tenant: Option<&str>) -> Progress {
        let mut succeeded = HashSet::new();
        let mut deployed = HashSet::new();
        for (env, t, state) in &self.deployments {
            if tenant.is_some_and(|x| t.as_deref() != Some(x)) {
                continue;
            }
            if state == "Success" {
                succeeded.insert(env.clone());
            }
            deployed.insert(env.clone());
        }
        Progress {
            phases: self.phases.clone(),
            succeeded,
            deployed,
            environments: self.environments.clone(),
        }
    }
}

/// Reads a release's [`History`]: its lifecycle (the channel's, else the project's), the
/// space's environments and the release's deployments.
pub async fn history(
    st: &AppState,
    space: &str,
    release: &Release,
    project: &Project,
) -> ApiResult<History> {
    let channel: Option<Channel> = match st.db.get_doc(&release.channel_id).await? {
        Some(d) => Some(parse_body(&d)?),
        None => None,
    };
    let lifecycle_id = channel
        .and_then(|c| c.lifecycle_id)
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| project.lifecycle_id.clone());
    let (_, lifecycle): (_, Lifecycle) =
        load(st, "Lifecycles", space, &lifecycle_id, "Lifecycle").await?;
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            ..DocQuery::new("Environments")
        })
        .await?;
    let environments: Vec<Environment> = rows.iter().map(parse_body).collect::<ApiResult<_>>()?;
    let refs: Vec<EnvRef> = environments
        .iter()
        .map(|e| EnvRef {
            id: e.id.clone(),
            name: e.name.clone(),
        })
        .collect();
    let phases = effective_phases(&lifecycle.phases, &refs);
    let (tasks, _) = st
        .db
        .list_tasks(&TaskQuery {
            release_id: Some(release.id.clone()),
            ..TaskQuery::default()
        })
        .await?;
    let deployments = tasks
        .into_iter()
        .filter_map(|t| t.environment_id.map(|e| (e, t.tenant_id, t.state)))
        .collect();
    Ok(History {
        phases,
        environments,
        deployments,
    })
}

pub async fn progression(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, r): (_, Release) = load(&st, C, &space, &id, "Release").await?;
    let (_, p): (_, Project) = load(&st, "Projects", &space, &r.project_id, "Project").await?;
    let pr = progress(&st, &space, &r, &p).await?;
    let mut allowed = allowed_environments(&pr.phases, &pr.succeeded, &pr.deployed);
    if unresolved_defect(&r).is_some() {
        allowed.retain(|e| pr.deployed.contains(e));
    }
    let phases: Vec<Value> = pr
        .phases
        .iter()
        .map(|ph| {
            json!({
                "Name": ph.name,
                "EnvironmentIds": ph.environments,
                "AutomaticEnvironmentIds": ph.automatic,
                "IsOptional": ph.optional,
                "MinimumEnvironmentsBeforePromotion": ph.minimum,
                "IsComplete": ph.is_complete(&pr.succeeded),
            })
        })
        .collect();
    Ok(Json(json!({
        "ReleaseId": r.id,
        "Phases": phases,
        "SucceededEnvironmentIds": pr.succeeded.iter().collect::<Vec<_>>(),
        "NextDeployments": allowed,
        "HasUnresolvedDefect": unresolved_defect(&r).is_some(),
    })))
}

/// The channel a release created by the package trigger goes to: the trigger's configured
/// channel when its rules for the step accept the pushed version, else the first channel
/// (the default first, then in creation order) whose rules accept it; `None` when none does.
/// A channel without rules for the step accepts any version; a channel whose rules do not
/// compile accepts none.
async fn trigger_channel(
    st: &AppState,
    space: &str,
    project: &Project,
    configured: Option<&str>,
    action_name: &str,
    version: &str,
) -> ApiResult<Option<String>> {
    let Some(v) = Version::parse(version) else {
        return Ok(None);
    };
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            owner_id: Some(project.id.clone()),
            ..DocQuery::new("Channels")
        })
        .await?;
    let mut channels: Vec<Channel> = rows.iter().map(parse_body).collect::<ApiResult<_>>()?;
    // Stable sort: the configured channel, then the default, then creation order.
    channels.sort_by_key(|c| {
        (
            !configured.is_some_and(|k| k.eq_ignore_ascii_case(&c.id)),
            !c.is_default,
        )
    });
    for c in &channels {
        let Ok(rules) = super::channels::compile_rules(c) else {
            continue;
        };
        let accepts = super::channels::rules_for(&rules, action_name, "")
            .iter()
            .all(|r| r.matcher.accepts(&v));
        if accepts {
            return Ok(Some(c.id.clone()));
        }
    }
    Ok(None)
}

/// The built-in package repository trigger: after a new package version is pushed, every
/// project of the space with `AutoCreateRelease` whose `ReleaseCreationStrategy` names a step
/// that deploys this package gets a release (version from its template, this package version
/// for that step, the latest for the others), in the channel [`trigger_channel`] picks (none
/// accepting the version: no release, a warning and a `ReleaseCreationSkipped` event). Versions a release of
/// the project already uses do not fire. Returns the releases created; failures are logged.
pub async fn on_package_pushed(
    st: &AppState,
    space: &str,
    ctx: &Ctx,
    package_id: &str,
    version: &str,
) -> Vec<Release> {
    let mut created = Vec::new();
    let projects = match st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            ..DocQuery::new("Projects")
        })
        .await
    {
        Ok((rows, _)) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "the package trigger could not list projects");
            return created;
        }
    };
    for row in projects {
        let Ok(project) = parse_body::<Project>(&row) else {
            continue;
        };
        if !project.auto_create_release || project.is_disabled {
            continue;
        }
        let strategy = &project.release_creation_strategy;
        let Some(action_name) = strategy
            .release_creation_package
            .as_ref()
            .and_then(|p| p.get("DeploymentAction"))
            .and_then(|a| a.as_str())
            .map(str::to_string)
        else {
            continue;
        };
        let Ok((_, process)) = load::<DeploymentProcess>(
            st,
            "DeploymentProcesses",
            space,
            &project.deployment_process_id,
            "Deployment process",
        )
        .await
        else {
            continue;
        };
        let deploys_it = process
            .steps
            .iter()
            .flat_map(|s| s.actions.iter())
            .any(|a| {
                a.name.eq_ignore_ascii_case(&action_name)
                    && ferry_executor::deploy_package::primary_package_id(a)
                        .is_some_and(|p| p.eq_ignore_ascii_case(package_id))
            });
        if !deploys_it {
            continue;
        }
        // Not for a version a release of this project already uses.
        let used = match st
            .db
            .list_docs(&DocQuery {
                owner_id: Some(project.id.clone()),
                ..DocQuery::new(C)
            })
            .await
        {
            Ok((rows, _)) => rows
                .iter()
                .filter_map(|r| parse_body::<Release>(r).ok())
                .any(|r| {
                    r.selected_packages.iter().any(|s| {
                        s.action_name.eq_ignore_ascii_case(&action_name)
                            && s.version.eq_ignore_ascii_case(version)
                    })
                }),
            Err(_) => true,
        };
        if used {
            continue;
        }
        let channel_id = match trigger_channel(
            st,
            space,
            &project,
            strategy.channel_id.as_deref(),
            &action_name,
            version,
        )
        .await
        {
            Ok(Some(c)) => c,
            Ok(None) => {
                tracing::warn!(project = %project.name, package = %package_id, version = %version, "no channel of the project accepts the pushed version; no release created");
                let why = format!(
                    "No release of project {} was created for {package_id} {version}: no channel's version rules for the step '{action_name}' accept that version",
                    project.name
                );
                let noted = async {
                    let mut tx = st.db.begin().await?;
                    audit(
                        &mut tx,
                        ctx,
                        space,
                        "ReleaseCreationSkipped",
                        why,
                        &[&project.id],
                        json!({"PackageId": package_id, "Version": version, "DeploymentAction": action_name}),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok::<(), ApiError>(())
                };
                if let Err(e) = noted.await {
                    tracing::warn!(error = %e.message, "the package trigger could not record why it created no release");
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(project = %project.name, error = %e.message, "the package trigger could not read the project's channels");
                continue;
            }
        };
        let nr = NewRelease {
            project: project.id.clone(),
            channel: Some(channel_id),
            version: None,
            notes: Some(format!(
                "Created automatically when {package_id} {version} was pushed"
            )),
            ignore_if_exists: true,
            ignore_channel_rules: false,
            packages: vec![format!("{action_name}:{version}")],
            package_version: None,
            selected: Vec::new(),
            custom_fields: Default::default(),
        };
        // The trigger, not the pusher, creates the release (as Octopus's automatic release
        // creation does): a build server needs only BuiltInFeedPush.
        let trigger = Ctx {
            principal: crate::auth::Principal::system(
                "system",
                &format!("Package trigger (pushed by {})", ctx.principal.username),
            ),
            ip: ctx.ip.clone(),
        };
        match create_release(st, space, &trigger, nr).await {
            Ok((r, true)) => {
                tracing::info!(project = %project.name, release = %r.version, "created a release for a pushed package");
                created.push(r);
            }
            Ok((_, false)) => {}
            Err(e) => {
                tracing::warn!(project = %project.name, error = %e.message, errors = ?e.errors, "the package trigger could not create a release")
            }
        }
    }
    created
}

// ---------------------------------------------------------------------------------------------
// Prevent progression (Octopus's release "defects")

/// The reason the release is currently prevented from progressing, if it is.
pub fn unresolved_defect(release: &Release) -> Option<&ferry_domain::ReleaseDefect> {
    release
        .defects
        .iter()
        .rev()
        .find(|d| d.status == "Unresolved")
}

/// A release prevented from progressing may be deployed again only to environments it was
/// already deployed to (`deployed`); anywhere else is refused with the reason given.
pub fn check_progression(
    release: &Release,
    deployed: &HashSet<String>,
    env: &Environment,
) -> ApiResult<()> {
    match unresolved_defect(release) {
        Some(d) if !deployed.contains(&env.id) => Err(ApiError::bad_request(format!(
            "Release {} cannot be deployed to {}: it was prevented from progressing ({}); allow its progression first (POST /api/{}/releases/{}/defects/resolve)",
            release.version, env.name, d.description, release.space_id, release.id
        ))),
        _ => Ok(()),
    }
}

fn render_defect(space: &str, release_id: &str, d: &ferry_domain::ReleaseDefect) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("ReleaseId".into(), json!(release_id));
        o.insert(
            "Links".into(),
            json!({
                "Self": format!("/api/{space}/releases/{release_id}/defects"),
                "Release": format!("/api/{space}/releases/{release_id}"),
            }),
        );
    }
    v
}

/// `GET /releases/{id}/defects`: every time the release was prevented from progressing, newest
/// first, with `Status` `Unresolved` (still in force) or `Resolved`.
pub async fn defects(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, r): (_, Release) = load(&st, C, &space, &id, "Release").await?;
    let items: Vec<Value> = r
        .defects
        .iter()
        .rev()
        .map(|d| render_defect(&space, &r.id, d))
        .collect();
    let total = items.len() as i64;
    let base = format!("/api/{space}/releases/{}/defects", r.id);
    Ok(Json(crate::query::page(
        "Defect",
        items,
        total,
        0,
        total.max(1),
        &base,
        &base,
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DefectBody {
    pub description: String,
}

/// Writes the release document back (its row's indexes kept) with an audit event.
async fn save_release_audited(
    st: &AppState,
    ctx: &Ctx,
    space: &str,
    row: &DocRow,
    r: &Release,
    category: &str,
    message: String,
    details: Value,
) -> ApiResult<()> {
    let mut new_row = row.clone();
    new_row.body = serde_json::to_string(r).map_err(ApiError::internal)?;
    new_row.updated_at = now_ms();
    let mut tx = st.db.begin().await?;
    tx.update_doc(&new_row).await?;
    audit(
        &mut tx,
        ctx,
        space,
        category,
        message,
        &[&r.id, &r.project_id],
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /releases/{id}/defects` `{"Description": "why"}` (Octopus's "prevent progression"):
/// from now on the release is deployed only to environments it was already deployed to.
/// Preventing a release already prevented answers its current defect unchanged.
pub async fn prevent_progression(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(b): Body<DefectBody>,
) -> ApiResult<Json<Value>> {
    let (row, mut r): (_, Release) = load(&st, C, &space, &id, "Release").await?;
    let reason = b.description.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "Please give the Description: the reason the release may not progress",
        ));
    }
    if reason.chars().count() > 2000 {
        return Err(ApiError::bad_request(
            "The Description is longer than 2000 characters",
        ));
    }
    if let Some(d) = unresolved_defect(&r) {
        return Ok(Json(render_defect(&space, &r.id, d)));
    }
    let defect = ferry_domain::ReleaseDefect {
        id: format!("Defects-{}", r.defects.len() + 1),
        description: reason.clone(),
        status: "Unresolved".to_string(),
        created: format_ms(now_ms()),
        created_by: ctx.principal.username.clone(),
        resolved: None,
        resolved_by: None,
    };
    r.defects.push(defect.clone());
    save_release_audited(
        &st,
        &ctx,
        &space,
        &row,
        &r,
        "ReleaseProgressionPrevented",
        format!(
            "Release {} was prevented from progressing: {reason}",
            r.version
        ),
        json!({"Defect": defect}),
    )
    .await?;
    Ok(Json(render_defect(&space, &r.id, &defect)))
}

/// `POST /releases/{id}/defects/resolve` (Octopus's "allow progression"): resolves the
/// release's current defect. A release that is not prevented answers 400.
pub async fn allow_progression(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (row, mut r): (_, Release) = load(&st, C, &space, &id, "Release").await?;
    let by = ctx.principal.username.clone();
    let Some(d) = r
        .defects
        .iter_mut()
        .rev()
        .find(|d| d.status == "Unresolved")
    else {
        return Err(ApiError::bad_request(format!(
            "Release {} is not prevented from progressing",
            r.version
        )));
    };
    d.status = "Resolved".to_string();
    d.resolved = Some(format_ms(now_ms()));
    d.resolved_by = Some(by);
    let defect = d.clone();
    save_release_audited(
        &st,
        &ctx,
        &space,
        &row,
        &r,
        "ReleaseProgressionAllowed",
        format!(
            "Release {} may progress again (it was prevented: {})",
            r.version, defect.description
        ),
        json!({"Defect": defect}),
    )
    .await?;
    Ok(Json(render_defect(&space, &r.id, &defect)))
}

#[cfg(test)]
mod channel_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use chrono::TimeZone;

    fn render_with(template: &str, vars: &[(String, String)]) -> String {
        let mut m = ferry_template::MapVariables::new();
        for (k, v) in vars {
            m.set(k.clone(), v.clone());
        }
        ferry_template::render(template, &m, &ferry_template::Options::default())
            .unwrap()
            .text
    }

    #[test]
    fn version_template_variables() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 3, 5, 7, 8, 9)
            .single()
            .unwrap();
        let last = Version::parse("1.2.3.4-beta.2").unwrap();
        let in_channel = Version::parse("1.1.0").unwrap();
        let channels = vec![
            ("Default".to_string(), Some(in_channel.clone())),
            (
                "Hot Fix".to_string(),
                Some(Version::parse("7.0.1").unwrap()),
            ),
            ("Empty".to_string(), None),
        ];
        let vars = version_variables(Some(&last), Some(&in_channel), &channels, now);
        let get = |k: &str| {
            vars.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{k} missing"))
        };
        for (k, v) in [
            ("Octopus.Version.LastMajor", "1"),
            ("Octopus.Version.NextMajor", "2"),
            ("Octopus.Version.LastMinor", "2"),
            ("Octopus.Version.NextMinor", "3"),
            ("Octopus.Version.LastPatch", "3"),
            ("Octopus.Version.NextPatch", "4"),
            ("Octopus.Version.LastBuild", "4"),
            ("Octopus.Version.NextBuild", "5"),
            ("Octopus.Version.LastRevision", "4"),
            ("Octopus.Version.NextRevision", "5"),
            ("Octopus.Version.LastSuffix", "beta.2"),
            ("Octopus.Version.NextSuffix", "beta.2"),
            ("Octopus.Version.Channel.LastMinor", "1"),
            ("Octopus.Version.Channel.NextPatch", "1"),
            ("Octopus.Version.Channel[Hot Fix].NextPatch", "2"),
            ("Octopus.Version.Channel[Empty].NextMajor", "1"),
            ("Octopus.Date.Year", "2026"),
            ("Octopus.Date.Month", "03"),
            ("Octopus.Date.Day", "05"),
            ("Octopus.Date.DayOfYear", "64"),
            ("Octopus.Time.Hour", "07"),
            ("Octopus.Time.Minute", "08"),
            ("Octopus.Time.Second", "09"),
        ] {
            assert_eq!(get(k), v, "{k}");
        }
        assert_eq!(
            render_with(
                "#{Octopus.Version.LastMajor}.#{Octopus.Version.NextMinor}.0-#{Octopus.Date.Year}#{Octopus.Date.Month}#{Octopus.Date.Day}",
                &vars
            ),
            "1.3.0-20260305"
        );
        assert_eq!(
            render_with("#{Octopus.Version.Channel[Hot Fix].LastMajor}.x", &vars),
            "7.x"
        );
        // No release yet: zeros, so the default template gives 0.0.1.
        let none = version_variables(None, None, &[], now);
        assert_eq!(
            render_with(
                "#{Octopus.Version.LastMajor}.#{Octopus.Version.LastMinor}.#{Octopus.Version.NextPatch}",
                &none
            ),
            "0.0.1"
        );
    }

    #[test]
    fn donor_package_action() {
        let process: DeploymentProcess = serde_json::from_value(json!({"Steps": [
            {"Id": "step-1", "Name": "Deploy web", "Actions": [{"Id": "action-1", "Name": "Deploy web",
                "ActionType": "Octopus.TentaclePackage",
                "Properties": {"Octopus.Action.Package.PackageId": "Acme.Web"}}]},
            {"Id": "step-2", "Name": "Notify", "Actions": [{"Id": "action-2", "Name": "Notify",
                "ActionType": "Octopus.Script", "Properties": {}}]}
        ]}))
        .unwrap();
        let with = |strategy: Value| {
            let p = Project {
                versioning_strategy: serde_json::from_value(strategy).unwrap(),
                ..Project::default()
            };
            donor_action(&p, &process)
        };
        let text = |e: ApiError| format!("{} {}", e.message, e.errors.join(" "));
        assert_eq!(with(json!({"Template": "1.0.i"})).unwrap(), None);
        assert_eq!(
            with(
                json!({"DonorPackage": {"DeploymentAction": "deploy WEB", "PackageReference": ""}})
            )
            .unwrap(),
            Some("Deploy web".to_string())
        );
        assert_eq!(
            with(json!({"DonorPackageStepId": "step-1"})).unwrap(),
            Some("Deploy web".to_string())
        );
        let e = text(with(json!({"DonorPackage": {"DeploymentAction": "Gone"}})).unwrap_err());
        assert!(
            e.contains("'Gone'") && e.contains("not in the deployment process"),
            "{}",
            e
        );
        let e = text(with(json!({"DonorPackageStepId": "step-9"})).unwrap_err());
        assert!(e.contains("step-9"), "{}", e);
        let e = text(with(json!({"DonorPackage": {"DeploymentAction": "Notify"}})).unwrap_err());
        assert!(e.contains("deploys no package"), "{}", e);
    }

    #[test]
    fn release_notes_template_iterates_packages_and_work_items() {
        let packages = vec![
            json!({"PackageId": "Acme.Web", "Version": "1.2.3",
                "Commits": [{"CommitId": "abc", "Comment": "Fix it", "LinkUrl": "https://g/abc"}],
                "WorkItems": [{"Id": "JIRA-1", "Description": "Bug", "LinkUrl": ""},
                              {"Id": "JIRA-2", "Description": "Feature", "LinkUrl": ""}]}),
            json!({"PackageId": "Acme.Api", "Version": "2.0.0", "Commits": [],
                "WorkItems": [{"Id": "JIRA-2", "Description": "Feature", "LinkUrl": ""}]}),
        ];
        let vars = ferry_template::MapVariables::new().with("Team", "Blue");
        let notes = render_release_notes(
            "#{each package in Octopus.Release.Package}- #{package.PackageId} #{package.Version}#{each workItem in package.WorkItems} #{workItem.Id}#{/each}#{/each}",
            vars.clone(),
            "9.9.9",
            &packages,
        )
        .unwrap();
        assert_eq!(
            notes,
            "- Acme.Web 1.2.3 JIRA-1 JIRA-2- Acme.Api 2.0.0 JIRA-2"
        );
        let notes = render_release_notes(
            "#{Team} #{Octopus.Release.Number}:#{each c in Octopus.Release.Package[0].Commits} #{c.CommitId} #{c.Comment}#{/each} |#{each w in Octopus.Release.WorkItems} #{w.Id}#{/each}",
            vars,
            "9.9.9",
            &packages,
        )
        .unwrap();
        assert_eq!(notes, "Blue 9.9.9: abc Fix it | JIRA-1 JIRA-2");
    }
}
