//! Releases and deployments: a project's releases (paged), creating a release (channel,
//! version, package versions picked by the channel's rules, notes), a release's page (packages,
//! process snapshot, deployments, Deploy/Promote buttons only where the viewer may deploy,
//! compare with another release) and the deploy form (environments, tenants, prompted
//! variables, specific and excluded targets, schedule, guided failure).

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::routing::get;
use ferry_domain::channel_rules::{RuleMatcher, action_packages, select_latest};
use ferry_domain::version::Version;
use ferry_server::authz::{ProjectRef, Target};
use ferry_server::routes::Permission;
use serde_json::{Value, json};

use super::projects::{ProjectNav, project_nav};
use super::{Chrome, page, render};
use crate::PortalState;
use crate::ctx::{ApiFailure, FormData, PageResult, Viewer, see_other};
use crate::view::{StateView, arr, b, s, short_time, strs, url_encode};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route(
        "/app/{space}/projects/{id}/releases",
        get(list).post(create),
    )
    .route("/app/{space}/projects/{id}/releases/new", get(new_form))
    .route("/app/{space}/releases/{id}", get(show))
    .route("/app/{space}/releases/{id}/compare", get(compare))
    .route(
        "/app/{space}/releases/{id}/deploy",
        get(deploy_form).post(deploy),
    )
}

/// Releases per page.
const PER_PAGE: i64 = 30;

#[derive(serde::Deserialize, Default)]
struct SkipQuery {
    #[serde(default)]
    skip: i64,
}

use crate::view::pairs;

fn name_of(list: &[(String, String)], id: &str) -> String {
    list.iter()
        .find(|(i, _)| i == id)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| id.to_string())
}

use super::with_status;

fn project_ref(project: &Value) -> ProjectRef {
    ProjectRef {
        id: s(project, "Id"),
        group_id: s(project, "ProjectGroupId"),
    }
}

// ---------------------------------------------------------------- list

pub struct ReleaseRow {
    pub id: String,
    pub version: String,
    pub channel: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "releases/list.html")]
struct ListPage {
    chrome: Chrome,
    nav: ProjectNav,
    rows: Vec<ReleaseRow>,
    can_create: bool,
    prev_href: String,
    next_href: String,
    page_note: String,
}

async fn list(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    Query(q): Query<SkipQuery>,
) -> PageResult {
    let skip = q.skip.max(0);
    let rel_path = format!("/api/{space}/projects/{id}/releases?skip={skip}&take={PER_PAGE}");
    let ch_path = format!("/api/{space}/projects/{id}/channels?take=1000");
    let (chrome, navp, rels, chans) = tokio::join!(
        viewer.chrome(&space, "projects", "Releases"),
        project_nav(&viewer, &space, &id, "releases"),
        viewer.get(&rel_path),
        viewer.get(&ch_path),
    );
    let (nav, project) = navp?;
    let rels = rels?;
    let channels = chans.map(|c| pairs(&c)).unwrap_or_default();
    let rows = arr(&rels, "Items")
        .iter()
        .map(|r| ReleaseRow {
            id: s(r, "Id"),
            version: s(r, "Version"),
            channel: name_of(&channels, &s(r, "ChannelId")),
            created: short_time(&s(r, "Assembled")),
        })
        .collect();
    let total = rels
        .get("TotalResults")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let base = format!("/app/{space}/projects/{id}/releases");
    let prev_href = if skip > 0 {
        format!("{base}?skip={}", (skip - PER_PAGE).max(0))
    } else {
        String::new()
    };
    let next_href = if skip + PER_PAGE < total {
        format!("{base}?skip={}", skip + PER_PAGE)
    } else {
        String::new()
    };
    let page_note = if total > PER_PAGE {
        format!(
            "Releases {}–{} of {total}",
            skip + 1,
            (skip + PER_PAGE).min(total)
        )
    } else {
        String::new()
    };
    let can_create = viewer
        .can(
            Some(&space),
            Permission::ReleaseCreate,
            &Target::project(&s(&project, "Id"), &s(&project, "ProjectGroupId")),
        )
        .await;
    let mut chrome = chrome;
    chrome.title = format!("Releases · {}", nav.name);
    page(&ListPage {
        chrome,
        nav,
        rows,
        can_create,
        prev_href,
        next_href,
        page_note,
    })
}

// ---------------------------------------------------------------- create

/// A package the release picks a version of.
pub struct PackageField {
    pub action: String,
    pub step: String,
    pub package_id: String,
    pub value: String,
    pub versions: Vec<String>,
    pub rules: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "releases/new.html")]
struct NewPage {
    chrome: Chrome,
    nav: ProjectNav,
    channels: Vec<(String, String)>,
    channel: String,
    version: String,
    version_hint: String,
    version_error: String,
    notes: String,
    packages: Vec<PackageField>,
    error: String,
}

#[derive(serde::Deserialize, Default)]
struct NewQuery {
    #[serde(default)]
    channel: String,
}

/// The primary package of an action (as the server picks it), if it deploys one.
fn primary_package(action: &Value) -> Option<String> {
    arr(action, "Packages")
        .iter()
        .find(|p| s(p, "Name").is_empty() && !s(p, "PackageId").is_empty())
        .map(|p| s(p, "PackageId"))
        .or_else(|| {
            action
                .get("Properties")
                .map(|p| s(p, "Octopus.Action.Package.PackageId"))
                .filter(|p| !p.trim().is_empty())
        })
}

/// The release version the server would pick for the project's versioning template, when the
/// template uses only the last release's parts (`#{Octopus.Version.NextPatch}` …); `None` when
/// the server must decide (other variables, a donor package).
fn next_version(project: &Value, releases: &Value) -> Option<String> {
    let vs = project
        .get("VersioningStrategy")
        .cloned()
        .unwrap_or(json!({}));
    if vs.get("DonorPackage").is_some_and(|d| !d.is_null())
        || !s(&vs, "DonorPackageStepId").is_empty()
    {
        return None;
    }
    let mut template = s(&vs, "Template");
    if template.trim().is_empty() {
        template = "#{Octopus.Version.LastMajor}.#{Octopus.Version.LastMinor}.#{Octopus.Version.NextPatch}".into();
    }
    let last = arr(releases, "Items")
        .iter()
        .filter_map(|r| Version::parse(&s(r, "Version")))
        .max();
    let part = |i: usize| last.as_ref().map(|v| v.part(i)).unwrap_or(0);
    let mut out = template;
    for prefix in ["Octopus.Version.Channel.", "Octopus.Version."] {
        for (i, name) in ["Major", "Minor", "Patch", "Build", "Revision"]
            .iter()
            .enumerate()
        {
            let p = if i == 4 { part(3) } else { part(i) };
            out = out.replace(&format!("#{{{prefix}Last{name}}}"), &p.to_string());
            out = out.replace(
                &format!("#{{{prefix}Next{name}}}"),
                &p.saturating_add(1).to_string(),
            );
        }
    }
    (!out.contains("#{") && Version::parse(&out).is_some()).then_some(out)
}

/// The package fields of the release form, each with the feed's versions and the latest one
/// the channel's rules allow.
async fn package_fields(
    viewer: &Viewer,
    space: &str,
    process: &Value,
    channel: &Value,
) -> Vec<PackageField> {
    let mut fields = Vec::new();
    for step in arr(process, "Steps") {
        for action in arr(step, "Actions") {
            if b(action, "IsDisabled") {
                continue;
            }
            if let Some(pkg) = primary_package(action) {
                fields.push(PackageField {
                    action: s(action, "Name"),
                    step: s(step, "Name"),
                    package_id: pkg,
                    value: String::new(),
                    versions: Vec::new(),
                    rules: String::new(),
                    error: String::new(),
                });
            }
        }
    }
    let reads = fields.iter().map(|f| {
        viewer.get_owned(format!(
            "/api/{space}/feeds/feeds-builtin/packages/versions?packageId={}&take=100",
            url_encode(&f.package_id)
        ))
    });
    let answers = futures_util::future::join_all(reads).await;
    for (f, answer) in fields.iter_mut().zip(answers) {
        let versions: Vec<String> = answer
            .map(|v| arr(&v, "Items").iter().map(|x| s(x, "Version")).collect())
            .unwrap_or_default();
        let mut matchers = Vec::new();
        for rule in arr(channel, "Rules") {
            let applies = action_packages(arr(rule, "ActionPackages"))
                .iter()
                .any(|(a, r)| a.eq_ignore_ascii_case(&f.action) && r.is_empty());
            if applies {
                if let Ok(m) = RuleMatcher::compile(&s(rule, "VersionRange"), &s(rule, "Tag")) {
                    matchers.push(m);
                }
            }
        }
        let parsed: Vec<(Version, &String)> = versions
            .iter()
            .filter_map(|v| Version::parse(v).map(|p| (p, v)))
            .collect();
        let refs: Vec<&RuleMatcher> = matchers.iter().collect();
        if let Some(best) = select_latest(parsed.iter().map(|(v, _)| v), &refs) {
            if let Some((_, shown)) = parsed.iter().find(|(v, _)| v == best) {
                f.value = (*shown).clone();
            }
        }
        f.rules = matchers
            .iter()
            .map(RuleMatcher::describe)
            .collect::<Vec<_>>()
            .join("; ");
        f.versions = versions;
    }
    fields
}

struct FormInput {
    channel: String,
    version: String,
    notes: String,
    packages: BTreeMap<String, String>,
}

async fn release_form(
    viewer: &Viewer,
    space: &str,
    id: &str,
    wanted: &str,
    input: Option<FormInput>,
    failure: Option<&ApiFailure>,
) -> PageResult {
    let ch_path = format!("/api/{space}/projects/{id}/channels?take=1000");
    let proc_path = format!("/api/{space}/projects/{id}/deploymentprocesses");
    let rel_path = format!("/api/{space}/projects/{id}/releases?take={PER_PAGE}");
    let (chrome, navp, chans, process, rels) = tokio::join!(
        viewer.chrome(space, "projects", "Create a release"),
        project_nav(viewer, space, id, "releases"),
        viewer.get(&ch_path),
        viewer.get(&proc_path),
        viewer.get(&rel_path),
    );
    let (nav, project) = navp?;
    let chans = chans?;
    let process = process?;
    let channel_list = arr(&chans, "Items");
    let channel = channel_list
        .iter()
        .find(|c| !wanted.is_empty() && s(c, "Id") == wanted)
        .or_else(|| channel_list.iter().find(|c| b(c, "IsDefault")))
        .or(channel_list.first())
        .cloned()
        .unwrap_or(Value::Null);
    let mut packages = package_fields(viewer, space, &process, &channel).await;
    let suggested = rels.ok().and_then(|r| next_version(&project, &r));
    let version_hint = if suggested.is_some() {
        "The next version by the project's versioning template; change it if you like."
    } else {
        "Leave empty to let the server apply the project's versioning rules."
    };
    let mut page_error = String::new();
    let mut version_error = String::new();
    let (version, notes) = match &input {
        Some(i) => {
            for p in packages.iter_mut() {
                if let Some(v) = i.packages.get(&p.action) {
                    p.value = v.clone();
                }
            }
            (i.version.clone(), i.notes.clone())
        }
        None => (suggested.unwrap_or_default(), String::new()),
    };
    if let Some(f) = failure {
        page_error = f.text();
        let details: Vec<String> = if f.errors.is_empty() {
            vec![f.message.clone()]
        } else {
            f.errors.clone()
        };
        for d in &details {
            let lower = d.to_lowercase();
            let pkg = packages.iter_mut().find(|p| {
                d.contains(&format!("package {} ", p.package_id))
                    || d.contains(&format!("'{}'", p.step))
            });
            if let Some(p) = pkg {
                p.error = d.clone();
            } else if lower.contains("version") {
                version_error = d.clone();
            }
        }
    }
    let mut chrome = chrome;
    chrome.title = format!("Create a release · {}", nav.name);
    let r = render(&NewPage {
        chrome,
        nav,
        channels: pairs(&chans),
        channel: s(&channel, "Id"),
        version,
        version_hint: version_hint.to_string(),
        version_error,
        notes,
        packages,
        error: page_error,
    });
    Ok(match failure {
        Some(f) => with_status(r, f.status),
        None => r,
    })
}

async fn new_form(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    Query(q): Query<NewQuery>,
) -> PageResult {
    release_form(&viewer, &space, &id, &q.channel, None, None).await
}

async fn create(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let mut packages = BTreeMap::new();
    let mut selected = Vec::new();
    for (k, v) in &form.0 {
        if let Some(action) = k.strip_prefix("package:") {
            let v = v.trim().to_string();
            packages.insert(action.to_string(), v.clone());
            if !v.is_empty() {
                selected.push(json!({"ActionName": action, "Version": v}));
            }
        }
    }
    let input = FormInput {
        channel: form.get("channel"),
        version: form.get("version"),
        notes: form.raw("notes"),
        packages,
    };
    let project = match viewer.get(&format!("/api/{space}/projects/{id}")).await {
        Ok(p) => p,
        Err(f) => return Err(f.into()),
    };
    let body = json!({
        "ProjectId": s(&project, "Id"),
        "ChannelId": (!input.channel.is_empty()).then(|| input.channel.clone()),
        "Version": (!input.version.is_empty()).then(|| input.version.clone()),
        "ReleaseNotes": (!input.notes.trim().is_empty()).then(|| input.notes.clone()),
        "SelectedPackages": selected,
    });
    match viewer
        .send(
            Method::POST,
            &format!("/api/{space}/releases"),
            &form.csrf(),
            Some(&body),
        )
        .await
    {
        Ok(r) => Ok(see_other(&format!("/app/{space}/releases/{}", s(&r, "Id")))),
        Err(f) => {
            let channel = input.channel.clone();
            release_form(&viewer, &space, &id, &channel, Some(input), Some(&f)).await
        }
    }
}

// ---------------------------------------------------------------- release page

pub struct DeployButton {
    pub env_id: String,
    pub name: String,
    pub allowed: bool,
}

pub struct DeploymentRow {
    pub environment: String,
    pub tenant: String,
    pub state: StateView,
    pub when: String,
    pub task_href: String,
}

pub struct StepRow {
    pub name: String,
    pub actions: Vec<(String, String, bool)>,
}

#[derive(Template)]
#[template(path = "releases/show.html")]
struct ShowPage {
    chrome: Chrome,
    release_id: String,
    version: String,
    project_id: String,
    project_name: String,
    channel: String,
    notes: String,
    created: String,
    packages: Vec<(String, String, String)>,
    steps: Vec<StepRow>,
    deployments: Vec<DeploymentRow>,
    buttons: Vec<DeployButton>,
    others: Vec<(String, String)>,
    modified_note: String,
    defect: bool,
}

async fn show(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    let release = viewer.get(&format!("/api/{space}/releases/{id}")).await?;
    let rid = s(&release, "Id");
    let pid = s(&release, "ProjectId");
    let proj_path = format!("/api/{space}/projects/{pid}");
    let chan_path = format!("/api/{space}/channels/{}", s(&release, "ChannelId"));
    let snap_path = format!(
        "/api/{space}/deploymentprocesses/{}",
        s(&release, "ProjectDeploymentProcessSnapshotId")
    );
    let deps_path = format!("/api/{space}/releases/{rid}/deployments?take=30");
    let tmpl_path = format!("/api/{space}/releases/{rid}/deployments/template");
    let envs_path = format!("/api/{space}/environments/all");
    let others_path = format!("/api/{space}/projects/{pid}/releases?take=50");
    let (chrome, project, channel, snap, deps, tmpl, envs, others, checker) = tokio::join!(
        viewer.chrome(
            &space,
            "projects",
            format!("Release {}", s(&release, "Version"))
        ),
        viewer.get(&proj_path),
        viewer.get(&chan_path),
        viewer.get(&snap_path),
        viewer.get(&deps_path),
        viewer.get(&tmpl_path),
        viewer.get(&envs_path),
        viewer.get(&others_path),
        viewer.checker(),
    );
    let project = project.unwrap_or(Value::Null);
    let envs = envs.map(|e| pairs(&e)).unwrap_or_default();
    let tmpl = tmpl.unwrap_or(Value::Null);
    let deps = deps.unwrap_or(Value::Null);
    let dep_items = arr(&deps, "Items");
    // The deployments' task states.
    let task_ids: Vec<String> = dep_items.iter().map(|d| s(d, "TaskId")).collect();
    let tasks = if task_ids.is_empty() {
        Value::Null
    } else {
        viewer
            .get(&format!(
                "/api/{space}/tasks?ids={}&take={}",
                url_encode(&task_ids.join(",")),
                task_ids.len()
            ))
            .await
            .unwrap_or(Value::Null)
    };
    let task_by_id: HashMap<String, &Value> = arr(&tasks, "Items")
        .iter()
        .map(|t| (s(t, "Id"), t))
        .collect();
    let mut tenants: Vec<(String, String)> = Vec::new();
    for t in arr(&tmpl, "TenantPromotions") {
        tenants.push((s(t, "Id"), s(t, "Name")));
    }
    let deployments = dep_items
        .iter()
        .map(|d| {
            let task = task_by_id.get(&s(d, "TaskId"));
            let state = match task {
                Some(t) => StateView::of(
                    &s(t, "State"),
                    b(t, "HasWarningsOrErrors"),
                    b(t, "HasPendingInterruptions"),
                ),
                None => StateView::of("Queued", false, false),
            };
            let when = task
                .map(|t| {
                    let c = s(t, "CompletedTime");
                    let q = s(t, "QueueTime");
                    short_time(if c.is_empty() { &q } else { &c })
                })
                .unwrap_or_else(|| short_time(&s(d, "Created")));
            let tenant = s(d, "TenantId");
            DeploymentRow {
                environment: name_of(&envs, &s(d, "EnvironmentId")),
                tenant: if tenant.is_empty() {
                    String::new()
                } else {
                    name_of(&tenants, &tenant)
                },
                state,
                when,
                task_href: format!("/app/{space}/tasks/{}", s(d, "TaskId")),
            }
        })
        .collect();
    // Where it can go now, and whether this viewer may deploy there.
    let mut promote: Vec<(String, String)> = arr(&tmpl, "PromoteTo")
        .iter()
        .map(|e| (s(e, "Id"), s(e, "Name")))
        .collect();
    for t in arr(&tmpl, "TenantPromotions") {
        for e in arr(t, "PromoteTo") {
            if !promote.iter().any(|(i, _)| *i == s(e, "Id")) {
                promote.push((s(e, "Id"), s(e, "Name")));
            }
        }
    }
    let pref = project_ref(&project);
    let buttons = promote
        .into_iter()
        .map(|(env_id, name)| {
            let allowed = match &checker {
                Ok(c) => c.can(
                    Some(&space),
                    Permission::DeploymentCreate,
                    &Target::deployment(Some(pref.clone()), Some(&env_id), None),
                ),
                Err(_) => false,
            };
            DeployButton {
                env_id,
                name,
                allowed,
            }
        })
        .collect();
    let packages = arr(&release, "SelectedPackages")
        .iter()
        .map(|p| (s(p, "StepName"), s(p, "ActionName"), s(p, "Version")))
        .collect();
    let snap = snap.unwrap_or(Value::Null);
    let steps = arr(&snap, "Steps")
        .iter()
        .map(|st| StepRow {
            name: s(st, "Name"),
            actions: arr(st, "Actions")
                .iter()
                .map(|a| (s(a, "Name"), s(a, "ActionType"), b(a, "IsDisabled")))
                .collect(),
        })
        .collect();
    let others = others
        .map(|o| {
            arr(&o, "Items")
                .iter()
                .filter(|r| s(r, "Id") != rid)
                .map(|r| (s(r, "Id"), s(r, "Version")))
                .collect()
        })
        .unwrap_or_default();
    let mut modified = Vec::new();
    if b(&tmpl, "IsDeploymentProcessModified") {
        modified.push("the deployment process");
    }
    if b(&tmpl, "IsVariableSetModified") {
        modified.push("the project's variables");
    }
    if b(&tmpl, "IsLibraryVariableSetModified") {
        modified.push("included library variable sets");
    }
    let modified_note = if modified.is_empty() {
        String::new()
    } else {
        format!(
            "Since this release was created, {} changed; deploying it uses its snapshot, not the changes.",
            modified.join(", ")
        )
    };
    page(&ShowPage {
        chrome,
        release_id: rid,
        version: s(&release, "Version"),
        project_id: pid,
        project_name: s(&project, "Name"),
        channel: channel.map(|c| s(&c, "Name")).unwrap_or_default(),
        notes: s(&release, "ReleaseNotes"),
        created: short_time(&s(&release, "Assembled")),
        packages,
        steps,
        deployments,
        buttons,
        others,
        modified_note,
        defect: b(&release, "HasUnresolvedDefect"),
    })
}

// ---------------------------------------------------------------- compare

#[derive(serde::Deserialize, Default)]
struct CompareQuery {
    #[serde(default)]
    with: String,
}

/// One line of the difference: css class ("diff-add", "diff-del", ""), sign, text.
pub struct DiffLine {
    pub class: &'static str,
    pub sign: &'static str,
    pub text: String,
}

#[derive(Template)]
#[template(path = "releases/compare.html")]
struct ComparePage {
    chrome: Chrome,
    release_id: String,
    from: String,
    to: String,
    packages: Vec<DiffLine>,
    steps: Vec<DiffLine>,
    variables: Vec<DiffLine>,
}

fn line(class: &'static str, sign: &'static str, text: String) -> DiffLine {
    DiffLine { class, sign, text }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(x) => format!("\"{x}\""),
        Value::Object(o) if o.get("Sensitive").and_then(Value::as_bool) == Some(true) => {
            "(sensitive)".into()
        }
        other => other.to_string(),
    }
}

fn scope_text(v: &Value) -> String {
    match v.get("Scope").and_then(Value::as_object) {
        Some(o) if !o.is_empty() => {
            let parts: Vec<String> = o
                .iter()
                .map(|(k, v)| {
                    let vals: Vec<String> = v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("{k}: {}", vals.join(", "))
                })
                .collect();
            format!(" [{}]", parts.join("; "))
        }
        _ => String::new(),
    }
}

async fn compare(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    Query(q): Query<CompareQuery>,
) -> PageResult {
    if q.with.trim().is_empty() {
        return Ok(see_other(&format!("/app/{space}/releases/{id}")));
    }
    let path = format!(
        "/api/{space}/releases/{}/compare/{}",
        url_encode(&id),
        url_encode(q.with.trim())
    );
    let (chrome, diff) = tokio::join!(
        viewer.chrome(&space, "projects", "Compare releases"),
        viewer.get(&path)
    );
    let diff = diff?;
    let mut packages = Vec::new();
    for p in arr(&diff, "Packages") {
        let name = s(p, "ActionName");
        match (
            p.get("From").and_then(Value::as_str),
            p.get("To").and_then(Value::as_str),
        ) {
            (Some(f), Some(t)) => {
                packages.push(line("diff-del", "-", format!("{name} {f}")));
                packages.push(line("diff-add", "+", format!("{name} {t}")));
            }
            (None, Some(t)) => packages.push(line("diff-add", "+", format!("{name} {t}"))),
            (Some(f), None) => packages.push(line("diff-del", "-", format!("{name} {f}"))),
            (None, None) => {}
        }
    }
    let steps_v = diff.get("Steps").cloned().unwrap_or(Value::Null);
    let mut steps = Vec::new();
    for n in strs(&steps_v, "Added") {
        steps.push(line("diff-add", "+", format!("Step {n} added")));
    }
    for n in strs(&steps_v, "Removed") {
        steps.push(line("diff-del", "-", format!("Step {n} removed")));
    }
    for c in arr(&steps_v, "Changed") {
        steps.push(line("", "~", format!("Step {} changed", s(c, "Name"))));
        for ch in strs(c, "Changes") {
            steps.push(line("", " ", format!("    {ch}")));
        }
        for sd in arr(c, "ScriptDiffs") {
            for l in strs(sd, "Lines") {
                let class = if l.starts_with('+') {
                    "diff-add"
                } else if l.starts_with('-') {
                    "diff-del"
                } else {
                    ""
                };
                steps.push(line(class, " ", format!("        {l}")));
            }
            let more = sd.get("MoreLines").and_then(Value::as_i64).unwrap_or(0);
            if more > 0 {
                steps.push(line(
                    "",
                    " ",
                    format!("        … {more} more changed lines"),
                ));
            }
        }
    }
    let vars_v = diff.get("Variables").cloned().unwrap_or(Value::Null);
    let mut variables = Vec::new();
    for v in arr(&vars_v, "Added") {
        variables.push(line(
            "diff-add",
            "+",
            format!(
                "{}{} = {}",
                s(v, "Name"),
                scope_text(v),
                show_value(v.get("Value").unwrap_or(&Value::Null))
            ),
        ));
    }
    for v in arr(&vars_v, "Removed") {
        variables.push(line(
            "diff-del",
            "-",
            format!(
                "{}{} = {}",
                s(v, "Name"),
                scope_text(v),
                show_value(v.get("Value").unwrap_or(&Value::Null))
            ),
        ));
    }
    for v in arr(&vars_v, "Changed") {
        let name = format!("{}{}", s(v, "Name"), scope_text(v));
        let from = v.get("From").unwrap_or(&Value::Null);
        let to = v.get("To").unwrap_or(&Value::Null);
        if from.get("Sensitive").is_some() || to.get("Sensitive").is_some() {
            variables.push(line("", "~", format!("{name}: (sensitive) value changed")));
        } else {
            variables.push(line(
                "diff-del",
                "-",
                format!("{name} = {}", show_value(from)),
            ));
            variables.push(line(
                "diff-add",
                "+",
                format!("{name} = {}", show_value(to)),
            ));
        }
        let what = strs(v, "Changes");
        if !what.is_empty() {
            variables.push(line("", " ", format!("    changed: {}", what.join(", "))));
        }
    }
    for v in arr(&vars_v, "SensitiveUnchanged") {
        variables.push(line(
            "",
            "=",
            format!(
                "{}{}: (sensitive) value unchanged",
                s(v, "Name"),
                scope_text(v)
            ),
        ));
    }
    let from = diff.get("From").cloned().unwrap_or(Value::Null);
    let to = diff.get("To").cloned().unwrap_or(Value::Null);
    page(&ComparePage {
        chrome,
        release_id: s(&from, "Id"),
        from: s(&from, "Version"),
        to: s(&to, "Version"),
        packages,
        steps,
        variables,
    })
}

// ---------------------------------------------------------------- deploy

pub struct Choice {
    pub id: String,
    pub name: String,
    pub checked: bool,
}

pub struct Prompt {
    pub name: String,
    pub label: String,
    pub help: String,
    pub required: bool,
    pub sensitive: bool,
    pub value: String,
    pub error: String,
}

pub struct TargetChoice {
    pub id: String,
    pub name: String,
    pub environment: String,
    pub specific: bool,
    pub excluded: bool,
}

#[derive(Template)]
#[template(path = "releases/deploy.html")]
struct DeployPage {
    chrome: Chrome,
    release_id: String,
    version: String,
    project_id: String,
    project_name: String,
    environments: Vec<Choice>,
    denied: Vec<String>,
    tenanted: bool,
    tenants: Vec<Choice>,
    prompts: Vec<Prompt>,
    targets: Vec<TargetChoice>,
    queue_time: String,
    queue_time_error: String,
    guided_failure: bool,
    error: String,
    errors: Vec<String>,
    queued: Vec<(String, String)>,
}

/// What the deploy form was filled with.
#[derive(Default)]
struct DeployInput {
    environments: Vec<String>,
    tenants: Vec<String>,
    form_values: BTreeMap<String, String>,
    specific: Vec<String>,
    excluded: Vec<String>,
    queue_time: String,
    guided_failure: Option<bool>,
}

impl DeployInput {
    fn of(form: &FormData) -> DeployInput {
        let mut form_values = BTreeMap::new();
        for (k, v) in &form.0 {
            if let Some(name) = k.strip_prefix("form:") {
                form_values.insert(name.to_string(), v.clone());
            }
        }
        DeployInput {
            environments: form.all("environment"),
            tenants: form.all("tenant"),
            form_values,
            specific: form.all("target"),
            excluded: form.all("exclude"),
            queue_time: form.get("queue_time"),
            guided_failure: Some(form.checked("guided_failure")),
        }
    }
}

async fn prompts_of(viewer: &Viewer, space: &str, release: &Value) -> Vec<Prompt> {
    let mut ids = vec![s(release, "ProjectVariableSetSnapshotId")];
    ids.extend(strs(release, "LibraryVariableSetSnapshotIds"));
    let reads = ids
        .iter()
        .filter(|i| !i.is_empty())
        .map(|i| viewer.get_owned(format!("/api/{space}/variables/{}", url_encode(i))));
    let sets = futures_util::future::join_all(reads).await;
    let mut out: Vec<Prompt> = Vec::new();
    for set in sets.into_iter().flatten() {
        for v in arr(&set, "Variables") {
            let Some(p) = v.get("Prompt").filter(|p| p.is_object()) else {
                continue;
            };
            let name = s(v, "Name");
            if out.iter().any(|o| o.name.eq_ignore_ascii_case(&name)) {
                continue;
            }
            let label = s(p, "Label");
            out.push(Prompt {
                label: if label.is_empty() {
                    name.clone()
                } else {
                    label
                },
                help: s(p, "Description"),
                required: b(p, "Required"),
                sensitive: b(v, "IsSensitive"),
                value: if b(v, "IsSensitive") {
                    String::new()
                } else {
                    s(v, "Value")
                },
                error: String::new(),
                name,
            });
        }
    }
    out
}

async fn deploy_page(
    viewer: &Viewer,
    space: &str,
    id: &str,
    input: DeployInput,
    failure: Option<(u16, String, Vec<String>)>,
    queued: Vec<(String, String)>,
) -> PageResult {
    let release = viewer.get(&format!("/api/{space}/releases/{id}")).await?;
    let rid = s(&release, "Id");
    let pid = s(&release, "ProjectId");
    let proj_path = format!("/api/{space}/projects/{pid}");
    let tmpl_path = format!("/api/{space}/releases/{rid}/deployments/template");
    let (chrome, project, tmpl, checker, prompts) = tokio::join!(
        viewer.chrome(
            space,
            "projects",
            format!("Deploy {}", s(&release, "Version"))
        ),
        viewer.get(&proj_path),
        viewer.get(&tmpl_path),
        viewer.checker(),
        prompts_of(viewer, space, &release),
    );
    let project = project?;
    let tmpl = tmpl?;
    let pref = project_ref(&project);
    let tenanted = s(&project, "TenantedDeploymentMode") != "Untenanted"
        && !arr(&tmpl, "TenantPromotions").is_empty();
    let mut promote: Vec<(String, String)> = arr(&tmpl, "PromoteTo")
        .iter()
        .map(|e| (s(e, "Id"), s(e, "Name")))
        .collect();
    for t in arr(&tmpl, "TenantPromotions") {
        for e in arr(t, "PromoteTo") {
            if !promote.iter().any(|(i, _)| *i == s(e, "Id")) {
                promote.push((s(e, "Id"), s(e, "Name")));
            }
        }
    }
    let mut environments = Vec::new();
    let mut denied = Vec::new();
    for (eid, name) in promote {
        let allowed = match &checker {
            Ok(c) => c.can(
                Some(space),
                Permission::DeploymentCreate,
                &Target::deployment(Some(pref.clone()), Some(&eid), None),
            ),
            Err(_) => false,
        };
        if allowed {
            environments.push(Choice {
                checked: input.environments.contains(&eid),
                id: eid,
                name,
            });
        } else {
            denied.push(name);
        }
    }
    let tenants = arr(&tmpl, "TenantPromotions")
        .iter()
        .map(|t| Choice {
            id: s(t, "Id"),
            name: s(t, "Name"),
            checked: input.tenants.contains(&s(t, "Id")),
        })
        .collect();
    // Targets of the chosen environments (or of every offered one when none is chosen yet).
    let env_ids: Vec<String> = {
        let chosen: Vec<String> = environments
            .iter()
            .filter(|e| e.checked)
            .map(|e| e.id.clone())
            .collect();
        if chosen.is_empty() {
            environments.iter().map(|e| e.id.clone()).collect()
        } else {
            chosen
        }
    };
    let reads = env_ids.iter().map(|e| {
        viewer.get_owned(format!(
            "/api/{space}/environments/{}/machines?take=100",
            url_encode(e)
        ))
    });
    let machine_lists = futures_util::future::join_all(reads).await;
    let mut targets: Vec<TargetChoice> = Vec::new();
    for (eid, ml) in env_ids.iter().zip(machine_lists) {
        let Ok(ml) = ml else { continue };
        let env_name = name_of(
            &environments
                .iter()
                .map(|e| (e.id.clone(), e.name.clone()))
                .collect::<Vec<_>>(),
            eid,
        );
        for m in arr(&ml, "Items") {
            let mid = s(m, "Id");
            if targets.iter().any(|t| t.id == mid) {
                continue;
            }
            targets.push(TargetChoice {
                specific: input.specific.contains(&mid),
                excluded: input.excluded.contains(&mid),
                name: s(m, "Name"),
                environment: env_name.clone(),
                id: mid,
            });
        }
    }
    let prompts: Vec<Prompt> = prompts
        .into_iter()
        .map(|mut p| {
            if let Some(v) = input
                .form_values
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&p.name))
                .map(|(_, v)| v.clone())
            {
                p.value = if p.sensitive { String::new() } else { v };
            }
            p
        })
        .collect();
    let guided_failure = input.guided_failure.unwrap_or(false);
    let (status, error, errors) = match failure {
        Some((st, e, es)) => (Some(st), e, es),
        None => (None, String::new(), Vec::new()),
    };
    let prompts: Vec<Prompt> = prompts
        .into_iter()
        .map(|mut p| {
            let by_name = format!("'{}'", p.name);
            let by_paren = format!("({})", p.name);
            let by_label = format!("'{}'", p.label);
            if let Some(e) = errors
                .iter()
                .find(|e| e.contains(&by_name) || e.contains(&by_paren) || e.contains(&by_label))
            {
                p.error = e.clone();
            }
            p
        })
        .collect();
    let r = render(&DeployPage {
        chrome,
        release_id: rid,
        version: s(&release, "Version"),
        project_id: pid,
        project_name: s(&project, "Name"),
        environments,
        denied,
        tenanted,
        tenants,
        prompts,
        targets,
        queue_time_error: errors
            .iter()
            .find(|e| e.contains("QueueTime"))
            .cloned()
            .unwrap_or_default(),
        queue_time: input.queue_time,
        guided_failure,
        error,
        errors,
        queued,
    });
    Ok(match status {
        Some(st) => with_status(r, st),
        None => r,
    })
}

async fn deploy_form(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    Query(q): Query<FormData>,
) -> PageResult {
    let input = DeployInput {
        environments: q.all("environment"),
        tenants: q.all("tenant"),
        ..DeployInput::default()
    };
    deploy_page(&viewer, &space, &id, input, None, Vec::new()).await
}

async fn deploy(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let input = DeployInput::of(&form);
    if input.environments.is_empty() {
        return deploy_page(
            &viewer,
            &space,
            &id,
            input,
            Some((
                400,
                "Choose at least one environment to deploy to.".into(),
                Vec::new(),
            )),
            Vec::new(),
        )
        .await;
    }
    let release = viewer.get(&format!("/api/{space}/releases/{id}")).await?;
    let rid = s(&release, "Id");
    let queue_time = if input.queue_time.is_empty() {
        Value::Null
    } else {
        // datetime-local has no offset: the form says the time is UTC.
        let t = &input.queue_time;
        let with_secs = if t.len() == 16 {
            format!("{t}:00")
        } else {
            t.clone()
        };
        json!(format!("{with_secs}+00:00"))
    };
    let tenants: Vec<Option<String>> = if input.tenants.is_empty() {
        vec![None]
    } else {
        input.tenants.iter().cloned().map(Some).collect()
    };
    let mut tasks: Vec<(String, String)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut status = 0u16;
    let csrf = form.csrf();
    for env in &input.environments {
        for tenant in &tenants {
            let body = json!({
                "ReleaseId": rid,
                "EnvironmentId": env,
                "TenantId": tenant,
                "FormValues": input.form_values,
                "SpecificMachineIds": input.specific,
                "ExcludedMachineIds": input.excluded,
                "QueueTime": queue_time,
                "UseGuidedFailure": input.guided_failure.unwrap_or(false),
            });
            match viewer
                .send(
                    Method::POST,
                    &format!("/api/{space}/deployments"),
                    &csrf,
                    Some(&body),
                )
                .await
            {
                Ok(d) => tasks.push((s(&d, "TaskId"), s(&d, "Name"))),
                Err(f) => {
                    if status == 0 {
                        status = f.status;
                    }
                    let t = f.text();
                    if !problems.contains(&t) {
                        problems.push(t);
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(match tasks.as_slice() {
            [(task, _)] => see_other(&format!("/app/{space}/tasks/{task}")),
            _ => see_other(&format!("/app/{space}/releases/{rid}")),
        });
    }
    let headline = if tasks.is_empty() {
        "The deployment was not queued.".to_string()
    } else {
        "Some deployments were queued; others were refused.".to_string()
    };
    deploy_page(
        &viewer,
        &space,
        &id,
        input,
        Some((status, headline, problems)),
        tasks,
    )
    .await
}

/// `Viewer::get` with an owned path (for `join_all` over computed paths).
trait GetOwned {
    fn get_owned(
        &self,
        path: String,
    ) -> impl std::future::Future<Output = Result<Value, ApiFailure>> + Send;
}

impl GetOwned for Viewer {
    async fn get_owned(&self, path: String) -> Result<Value, ApiFailure> {
        self.get(&path).await
    }
}
