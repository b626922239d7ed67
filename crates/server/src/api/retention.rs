//! Retention of the built-in feed: deletes packages older than N days and/or beyond the newest
//! N versions of each package id, never a version that a remaining release uses.
//!
//! A release uses a package version through its `SelectedPackages` (`ActionName`,
//! `PackageReferenceName`, `Version`), resolved to a package id through the release's snapshot
//! of the deployment process (the action's package reference of that name, or the action's
//! `Octopus.Action.Package.PackageId` for the primary package). When the id cannot be resolved
//! (no snapshot, an unknown action, a package id bound by a variable) the version is kept for
//! every package id of the space: retention errs on the side of keeping.
//!
//! It runs from `POST /api/{space}/feeds/feeds-builtin/retention` (one space, optionally a dry
//! run) and, when the server is started with a policy (`--package-retention-days`,
//! `--package-retention-versions`), every hour over all spaces. See `docs/feed.md`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use ferry_domain::time::now_ms;
use ferry_domain::version::Version;
use ferry_domain::{BUILTIN_FEED_ID, DeploymentProcess};
use ferry_store::{DocQuery, PackageQuery, PackageRow, version_key};
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::auth::Principal;
use crate::input::Body;

const DAY_MS: i64 = 86_400_000;

/// What to delete. Each rule alone selects what it says; with both, a package goes only when
/// both select it (the newest N are always kept, and so is anything younger than D days).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Delete packages published more than this many days ago.
    pub older_than_days: Option<u32>,
    /// Keep only this many of the highest versions of each package id.
    pub keep_versions: Option<u32>,
}

impl Policy {
    pub fn is_active(&self) -> bool {
        self.older_than_days.is_some() || self.keep_versions.is_some()
    }
}

/// Package versions that remaining releases use.
#[derive(Clone, Debug, Default)]
pub struct InUse {
    /// (space, package key, version key).
    exact: HashSet<(String, String, String)>,
    /// (space, version key): a version whose package id could not be resolved.
    any_id: HashSet<(String, String)>,
}

impl InUse {
    fn contains(&self, p: &PackageRow) -> bool {
        self.exact.contains(&(
            p.space_id.clone(),
            p.package_key.clone(),
            p.version_key.clone(),
        )) || self
            .any_id
            .contains(&(p.space_id.clone(), p.version_key.clone()))
    }

    fn add(&mut self, space: &str, package_id: Option<&str>, version: &Version) {
        let v = version_key(version);
        match package_id {
            Some(id) => {
                self.exact
                    .insert((space.to_string(), ferry_store::package_key(id), v));
            }
            None => {
                self.any_id.insert((space.to_string(), v));
            }
        }
    }
}

/// A package id a release's selected package refers to, through the process snapshot.
/// `Some(None)`: the built-in feed may hold it but the id is unknown (keep the version for every
/// id). `None`: it is not a built-in feed package.
fn resolve(selected: &Value, snapshot: Option<&DeploymentProcess>) -> Option<Option<String>> {
    let text = |k: &str| {
        selected
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    // A selected package that names its package directly (newer shapes carry it).
    let direct = text("PackageId");
    if !direct.is_empty() {
        let feed = text("FeedId");
        if !feed.is_empty() && !feed.eq_ignore_ascii_case(BUILTIN_FEED_ID) && !feed.contains("#{") {
            return None;
        }
        return Some((!direct.contains("#{")).then_some(direct));
    }
    let Some(process) = snapshot else {
        return Some(None);
    };
    let action_name = text("ActionName");
    let step_name = text("StepName");
    let reference = text("PackageReferenceName");
    let action = process
        .steps
        .iter()
        .flat_map(|s| s.actions.iter().map(move |a| (s, a)))
        .find(|(s, a)| {
            (!action_name.is_empty() && a.name.eq_ignore_ascii_case(&action_name))
                || (action_name.is_empty() && s.name.eq_ignore_ascii_case(&step_name))
        })
        .map(|(_, a)| a);
    let Some(action) = action else {
        return Some(None);
    };
    let (package_id, feed_id) = match action
        .packages
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(&reference))
    {
        Some(p) => (p.package_id.clone(), p.feed_id.clone()),
        None if reference.is_empty() => (
            action
                .prop("Octopus.Action.Package.PackageId")
                .unwrap_or("")
                .to_string(),
            action
                .prop("Octopus.Action.Package.FeedId")
                .unwrap_or("")
                .to_string(),
        ),
        None => return Some(None),
    };
    let feed_id = feed_id.trim();
    if !feed_id.is_empty()
        && !feed_id.eq_ignore_ascii_case(BUILTIN_FEED_ID)
        && !feed_id.contains("#{")
    {
        return None;
    }
    let package_id = package_id.trim();
    if package_id.is_empty() || package_id.contains("#{") {
        return Some(None);
    }
    Some(Some(package_id.to_string()))
}

/// Adds the package versions one release uses.
fn add_release(in_use: &mut InUse, release: &Value, snapshot: Option<&DeploymentProcess>) {
    let space = release.get("SpaceId").and_then(Value::as_str).unwrap_or("");
    let Some(selected) = release.get("SelectedPackages").and_then(Value::as_array) else {
        return;
    };
    for s in selected {
        let Some(version) = s
            .get("Version")
            .and_then(Value::as_str)
            .and_then(Version::parse)
        else {
            continue;
        };
        if let Some(id) = resolve(s, snapshot) {
            in_use.add(space, id.as_deref(), &version);
        }
    }
}

/// Every package version that a release still existing uses, in all spaces.
pub async fn packages_in_use(db: &ferry_store::Db) -> ApiResult<InUse> {
    let (releases, _) = db.list_docs(&DocQuery::new("Releases")).await?;
    let mut in_use = InUse::default();
    let mut snapshots: HashMap<String, Option<DeploymentProcess>> = HashMap::new();
    for r in &releases {
        let body: Value = serde_json::from_str(&r.body)
            .map_err(|e| ApiError::internal(format!("release {} is unreadable: {e}", r.id)))?;
        if body
            .get("SelectedPackages")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            continue;
        }
        let snap_id = body
            .get("ProjectDeploymentProcessSnapshotId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !snapshots.contains_key(&snap_id) {
            let process = match db.get_doc(&snap_id).await? {
                Some(d) => serde_json::from_str::<DeploymentProcess>(&d.body).ok(),
                None => None,
            };
            snapshots.insert(snap_id.clone(), process);
        }
        let snapshot = snapshots.get(&snap_id).and_then(Option::as_ref);
        add_release(&mut in_use, &body, snapshot);
    }
    Ok(in_use)
}

/// The packages `policy` deletes from `packages` (ordered by id, then version descending, as
/// `list_packages` returns them), leaving out those in use. Pure.
pub fn select<'a>(
    packages: &'a [PackageRow],
    in_use: &InUse,
    policy: Policy,
    now: i64,
) -> Vec<&'a PackageRow> {
    if !policy.is_active() {
        return Vec::new();
    }
    let mut rank: HashMap<(&str, &str), u32> = HashMap::new();
    let mut out = Vec::new();
    for p in packages {
        let r = rank
            .entry((p.space_id.as_str(), p.package_key.as_str()))
            .or_insert(0);
        let position = *r;
        *r += 1;
        let too_old = policy
            .older_than_days
            .map(|d| p.published < now.saturating_sub(i64::from(d).saturating_mul(DAY_MS)));
        let too_many = policy.keep_versions.map(|n| position >= n);
        let selected = match (too_old, too_many) {
            (Some(a), Some(b)) => a && b,
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => false,
        };
        if selected && !in_use.contains(p) {
            out.push(p);
        }
    }
    out
}

/// What a retention run did (or would do).
#[derive(Debug, Default)]
pub struct Outcome {
    pub deleted: Vec<PackageRow>,
}

/// The principal retention's audit events name when the periodic job runs it.
fn system_ctx() -> Ctx {
    Ctx {
        principal: Principal::system("", "Package retention"),
        ip: String::new(),
    }
}

/// Applies `policy` to one space (or every space), deleting each selected package with its audit
/// event and then its file if no other package uses it. With `dry_run`, only says what it would
/// delete.
pub async fn run(
    st: &AppState,
    ctx: &Ctx,
    space: Option<&str>,
    policy: Policy,
    dry_run: bool,
) -> ApiResult<Outcome> {
    let (packages, _) = st
        .db
        .list_packages(&PackageQuery {
            space_id: space.map(str::to_string),
            ..PackageQuery::default()
        })
        .await?;
    let in_use = packages_in_use(&st.db).await?;
    let chosen = select(&packages, &in_use, policy, now_ms());
    let mut outcome = Outcome::default();
    for p in chosen {
        if dry_run {
            outcome.deleted.push(p.clone());
            continue;
        }
        let how = "was removed by retention from";
        if let Some(row) = super::packages::delete_package(st, ctx, &p.space_id, &p.id, how).await?
        {
            outcome.deleted.push(row);
        }
    }
    Ok(outcome)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RetentionBody {
    pub older_than_days: Option<u32>,
    pub keep_versions: Option<u32>,
    pub dry_run: bool,
}

/// `POST /api/{space}/feeds/{feedId}/retention` with `{"OlderThanDays": D, "KeepVersions": N,
/// "DryRun": false}`: applies the policy to the space's built-in feed now and lists the
/// packages deleted (or, with `DryRun`, those that would be).
pub async fn apply(
    State(st): State<AppState>,
    Path((space, feed_id)): Path<(String, String)>,
    ctx: Ctx,
    Body(b): Body<RetentionBody>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    if !feed_id.eq_ignore_ascii_case(BUILTIN_FEED_ID) {
        return Err(ApiError::not_found(format!(
            "Feed '{feed_id}' was not found"
        )));
    }
    let policy = Policy {
        older_than_days: b.older_than_days,
        keep_versions: b.keep_versions,
    };
    if !policy.is_active() {
        return Err(ApiError::bad_request(
            "Give OlderThanDays, KeepVersions or both: without a rule retention deletes nothing",
        ));
    }
    let outcome = run(&st, &ctx, Some(&space), policy, b.dry_run).await?;
    Ok(Json(json!({
        "DryRun": b.dry_run,
        "OlderThanDays": policy.older_than_days,
        "KeepVersions": policy.keep_versions,
        "Deleted": outcome
            .deleted
            .iter()
            .map(|p| super::packages::render(&space, p))
            .collect::<Vec<_>>(),
    })))
}

/// Runs `policy` over every space every `every`, for the server's lifetime.
pub async fn periodic(st: AppState, policy: Policy, every: Duration) {
    let ctx = system_ctx();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match run(&st, &ctx, None, policy, false).await {
            Ok(o) if !o.deleted.is_empty() => {
                tracing::info!(
                    count = o.deleted.len(),
                    "package retention deleted packages"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message, "package retention failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use ferry_domain::{DeploymentAction, DeploymentStep, PackageReference};

    use super::*;

    fn pkg(space: &str, id: &str, version: &str, published: i64) -> PackageRow {
        let v = Version::parse(version).unwrap();
        let mut p = PackageRow::keyed(space, BUILTIN_FEED_ID, id, version, &v);
        p.published = published;
        p
    }

    /// In the order `list_packages` gives: id, then version descending.
    fn feed() -> Vec<PackageRow> {
        let now = 100 * DAY_MS;
        vec![
            pkg("Spaces-1", "App", "3.0.0", now - DAY_MS),
            pkg("Spaces-1", "App", "2.0.0", now - 10 * DAY_MS),
            pkg("Spaces-1", "App", "1.0.0", now - 40 * DAY_MS),
            pkg("Spaces-2", "App", "1.0.0", now - 40 * DAY_MS),
            pkg("Spaces-1", "Lib", "1.0.0-beta", now - 50 * DAY_MS),
        ]
    }

    fn ids(v: &[&PackageRow]) -> Vec<String> {
        v.iter()
            .map(|p| format!("{}/{}", p.space_id, p.id))
            .collect()
    }

    #[test]
    fn policies_select_by_age_count_or_both() {
        let packages = feed();
        let now = 100 * DAY_MS;
        let none = InUse::default();
        let by_age = Policy {
            older_than_days: Some(30),
            keep_versions: None,
        };
        assert_eq!(
            ids(&select(&packages, &none, by_age, now)),
            vec![
                "Spaces-1/packages-App.1.0.0",
                "Spaces-2/packages-App.1.0.0",
                "Spaces-1/packages-Lib.1.0.0-beta"
            ]
        );
        let by_count = Policy {
            older_than_days: None,
            keep_versions: Some(1),
        };
        // Counted per space and id: Spaces-2's only App and the only Lib are kept.
        assert_eq!(
            ids(&select(&packages, &none, by_count, now)),
            vec!["Spaces-1/packages-App.2.0.0", "Spaces-1/packages-App.1.0.0"]
        );
        let both = Policy {
            older_than_days: Some(5),
            keep_versions: Some(1),
        };
        assert_eq!(
            ids(&select(&packages, &none, both, now)),
            vec!["Spaces-1/packages-App.2.0.0", "Spaces-1/packages-App.1.0.0"]
        );
        let both = Policy {
            older_than_days: Some(20),
            keep_versions: Some(1),
        };
        assert_eq!(
            ids(&select(&packages, &none, both, now)),
            vec!["Spaces-1/packages-App.1.0.0"]
        );
        assert!(select(&packages, &none, Policy::default(), now).is_empty());
    }

    fn process() -> DeploymentProcess {
        let action = |name: &str, refs: Vec<PackageReference>, primary: Option<&str>| {
            let mut a = DeploymentAction {
                name: name.into(),
                packages: refs,
                ..DeploymentAction::default()
            };
            if let Some(p) = primary {
                a.properties
                    .insert("Octopus.Action.Package.PackageId".into(), p.into());
                a.properties.insert(
                    "Octopus.Action.Package.FeedId".into(),
                    BUILTIN_FEED_ID.into(),
                );
            }
            a
        };
        let reference = |name: &str, id: &str, feed: &str| PackageReference {
            name: name.into(),
            package_id: id.into(),
            feed_id: feed.into(),
            ..PackageReference::default()
        };
        DeploymentProcess {
            steps: vec![DeploymentStep {
                name: "Deploy".into(),
                actions: vec![
                    action(
                        "Deploy app",
                        vec![
                            reference("", "App", BUILTIN_FEED_ID),
                            reference("tools", "Tools", BUILTIN_FEED_ID),
                            reference("ext", "Nginx", "Feeds-3"),
                            reference("dyn", "#{PackageName}", BUILTIN_FEED_ID),
                        ],
                        None,
                    ),
                    action("Legacy", vec![], Some("Lib")),
                ],
                ..DeploymentStep::default()
            }],
            ..DeploymentProcess::default()
        }
    }

    #[test]
    fn selected_packages_resolve_through_the_snapshot() {
        let release = json!({
            "SpaceId": "Spaces-1",
            "SelectedPackages": [
                {"ActionName": "Deploy app", "PackageReferenceName": "", "Version": "1.0.0"},
                {"ActionName": "deploy APP", "PackageReferenceName": "tools", "Version": "2.0.0"},
                {"ActionName": "Deploy app", "PackageReferenceName": "ext", "Version": "9.9.9"},
                {"ActionName": "Deploy app", "PackageReferenceName": "dyn", "Version": "7.0.0"},
                {"ActionName": "Legacy", "PackageReferenceName": "", "Version": "1.0.0-beta"},
                {"ActionName": "Gone", "PackageReferenceName": "", "Version": "5.0.0"},
                {"PackageId": "Direct", "FeedId": "feeds-builtin", "Version": "4.0"},
                {"ActionName": "Deploy app", "Version": "not a version"}
            ]
        });
        let mut in_use = InUse::default();
        add_release(&mut in_use, &release, Some(&process()));
        let has = |id: &str, v: &str| in_use.contains(&pkg("Spaces-1", id, v, 0));
        assert!(has("App", "1.0.0") && has("app", "1.0"));
        assert!(has("Tools", "2.0.0") && !has("Tools", "1.0.0"));
        assert!(has("Lib", "1.0.0-BETA"));
        assert!(has("Direct", "4.0.0"));
        // An external feed's package is not ours; its version protects nothing.
        assert!(!has("Nginx", "9.9.9") && !has("App", "9.9.9"));
        // Unresolvable ids (a variable, an unknown action) keep that version for every id.
        assert!(has("Anything", "7.0.0") && has("Other", "5.0.0"));
        // Only in the release's space.
        assert!(!in_use.contains(&pkg("Spaces-2", "App", "1.0.0", 0)));

        // Without a snapshot every selected version is kept for every id.
        let mut in_use = InUse::default();
        add_release(&mut in_use, &release, None);
        assert!(in_use.contains(&pkg("Spaces-1", "Whatever", "2.0.0", 0)));

        let packages = vec![
            pkg("Spaces-1", "App", "2.0.0", 0),
            pkg("Spaces-1", "App", "1.0.0", 0),
        ];
        let mut in_use = InUse::default();
        add_release(&mut in_use, &release, Some(&process()));
        let policy = Policy {
            older_than_days: None,
            keep_versions: Some(0),
        };
        assert_eq!(
            ids(&select(&packages, &in_use, policy, 0)),
            vec!["Spaces-1/packages-App.2.0.0"]
        );
    }
}
