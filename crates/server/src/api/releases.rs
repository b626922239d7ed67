//! Releases: immutable snapshots of a project's process and variables with a version unique
//! per project. Creating one copies the current process, the project's variable set and each
//! included library variable set into snapshot documents; later edits to the project never
//! change a release, except "update variables" (`snapshot-variables`), which takes new
//! variable snapshots and leaves the process alone.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
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
    with_links(
        r,
        links(
            base.clone(),
            &[
                ("Project", format!("/api/{space}/projects/{}", r.project_id)),
                ("Channel", format!("/api/{space}/channels/{}", r.channel_id)),
                ("Deployments", format!("{base}/deployments{{?skip,take}}")),
                ("Progression", format!("{base}/progression")),
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

/// The version of a release created without one: the project's versioning template rendered
/// with `Octopus.Version.Last*/Next*` (of the project, and `Octopus.Version.Channel.*` of the
/// channel), `Octopus.Date.*`, `Octopus.Time.*` and the project's unscoped and channel-scoped
/// variables; or a mask such as `1.2.c.i` (`c` keeps the last release's part, `i` increments it).
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
    let mut last_in_channel: Option<Version> = None;
    for r in &rows {
        if let Some(v) = Version::parse(&r.name) {
            if r.ref1 == channel.id && last_in_channel.as_ref().is_none_or(|l| &v > l) {
                last_in_channel = Some(v.clone());
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
        for (prefix, v) in [
            ("Octopus.Version", last.as_ref()),
            ("Octopus.Version.Channel", last_in_channel.as_ref()),
        ] {
            let part = |i: usize| v.map(|v| v.part(i)).unwrap_or(0);
            for (i, name) in ["Major", "Minor", "Patch", "Build", "Revision"]
                .iter()
                .enumerate()
            {
                let lastp = if i == 4 { part(3) } else { part(i) };
                vars.set(format!("{prefix}.Last{name}"), lastp.to_string());
                vars.set(format!("{prefix}.Next{name}"), (lastp + 1).to_string());
            }
            vars.set(
                format!("{prefix}.LastSuffix"),
                v.map(|v| v.pre_release.clone()).unwrap_or_default(),
            );
        }
        let now = chrono::Utc::now();
        use chrono::{Datelike, Timelike};
        vars.set("Octopus.Date.Year".to_string(), now.year().to_string());
        vars.set(
            "Octopus.Date.Month".to_string(),
            format!("{:02}", now.month()),
        );
        vars.set("Octopus.Date.Day".to_string(), format!("{:02}", now.day()));
        vars.set(
            "Octopus.Date.DayOfYear".to_string(),
            now.ordinal().to_string(),
        );
        vars.set(
            "Octopus.Time.Hour".to_string(),
            format!("{:02}", now.hour()),
        );
        vars.set(
            "Octopus.Time.Minute".to_string(),
            format!("{:02}", now.minute()),
        );
        vars.set(
            "Octopus.Time.Second".to_string(),
            format!("{:02}", now.second()),
        );
        vars.set("Octopus.Project.Name".to_string(), project.name.clone());
        vars.set(
            "Octopus.Release.Channel.Name".to_string(),
            channel.name.clone(),
        );
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
/// (stable first). A version that is not in the feed is refused naming it.
async fn select_packages(
    st: &AppState,
    space: &str,
    process: &DeploymentProcess,
    nr: &NewRelease,
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
                    let mut latest = None;
                    for exclude_pre_release in [true, false] {
                        let (rows, _) = st
                            .db
                            .list_packages(&ferry_store::packages::PackageQuery {
                                space_id: Some(space.to_string()),
                                package_id: Some(package_id.clone()),
                                latest_only: true,
                                exclude_pre_release,
                                take: Some(1),
                                ..Default::default()
                            })
                            .await?;
                        if let Some(r) = rows.into_iter().next() {
                            latest = Some(r.version);
                            break;
                        }
                    }
                    latest.ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "The package {package_id} used by step '{}' has no versions in the built-in feed; push one first or give a version",
                            step.name
                        ))
                    })?
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
    if project.is_disabled {
        return Err(ApiError::bad_request(format!(
            "Project '{}' is disabled",
            project.name
        )));
    }
    let channel: Channel =
        super::channels::resolve(st, space, &project.id, nr.channel.as_deref()).await?;
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
        None => next_version(st, space, &project, &channel).await?,
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
    let (_, process): (_, DeploymentProcess) = load(
        st,
        "DeploymentProcesses",
        space,
        &project.deployment_process_id,
        "Deployment process",
    )
    .await?;
    let vars = VariableSnapshots::take(st, space, &project).await?;
    let selected_packages = select_packages(st, space, &process, &nr).await?;
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
        release_notes: nr.notes.clone(),
        assembled: format_ms(now_ms()),
        ignore_channel_rules: nr.ignore_channel_rules,
        project_deployment_process_snapshot_id: snap.id.clone(),
        project_variable_set_snapshot_id: vars.project.id.clone(),
        library_variable_set_snapshot_ids: vars.library_ids(),
        selected_packages,
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
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/releases");
    let q = DocQuery {
        space_id: Some(space.clone()),
        newest_first: true,
        ..DocQuery::new(C)
    };
    let params = Params::parse(raw.as_deref());
    Ok(Json(
        list_page(
            &st,
            q,
            &params,
            "Release",
            &base,
            &format!("{base}{{/id}}{{?skip,ignoreChannelRules,take,ids}}"),
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
    tx.delete_doc(&r.id).await?;
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
    let mut succeeded = HashSet::new();
    let mut deployed = HashSet::new();
    for t in tasks {
        if let Some(e) = t.environment_id {
            if t.state == "Success" {
                succeeded.insert(e.clone());
            }
            deployed.insert(e);
        }
    }
    Ok(Progress {
        phases,
        succeeded,
        deployed,
        environments,
    })
}

pub async fn progression(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, r): (_, Release) = load(&st, C, &space, &id, "Release").await?;
    let (_, p): (_, Project) = load(&st, "Projects", &space, &r.project_id, "Project").await?;
    let pr = progress(&st, &space, &r, &p).await?;
    let allowed = allowed_environments(&pr.phases, &pr.succeeded, &pr.deployed);
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
    })))
}

/// The built-in package repository trigger: after a new package version is pushed, every
/// project of the space with `AutoCreateRelease` whose `ReleaseCreationStrategy` names a step
/// that deploys this package gets a release (version from its template, this package version
/// for that step, the latest for the others), in the strategy's channel. Versions a release of
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
        let nr = NewRelease {
            project: project.id.clone(),
            channel: strategy.channel_id.clone(),
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
        match create_release(st, space, ctx, nr).await {
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
