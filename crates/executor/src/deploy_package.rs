//! The "Deploy a package" action (`Octopus.TentaclePackage`) on the built-in worker, in
//! Octopus's order: acquire (target cache, by hash), extract into a fresh directory, PreDeploy
//! scripts, substitute variables in files, structured configuration variables, custom
//! installation directory, Deploy scripts, PostDeploy scripts; DeployFailed scripts when
//! anything fails; retention of earlier installations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_domain::task::LogCategory;
use ferry_domain::{DeploymentAction, prop_is_true};
use ferry_packages::filename::PackageFormat;
use tokio_util::sync::CancellationToken;

use crate::Executor;
use crate::log::{Activity, TaskLogger};
use crate::package_step::{apply_retention, copy_to_custom_dir, installation_dir, packaged_script};
use crate::target::{ScriptOutcome, ScriptOutput, ScriptRequest, Syntax, Target};
use crate::variables::Dictionary;

/// Installations of one package kept on a target (Octopus's default target retention).
pub const KEEP_INSTALLATIONS: usize = 3;

/// The package an action deploys: its id and the version the release selected.
#[derive(Clone, Debug)]
pub struct SelectedPackage {
    pub package_id: String,
    pub version: String,
}

/// The primary package of an action: `Packages[]` with an empty name, or the
/// `Octopus.Action.Package.PackageId` property.
pub fn primary_package_id(action: &DeploymentAction) -> Option<String> {
    action
        .packages
        .iter()
        .find(|p| p.name.is_empty() && !p.package_id.is_empty())
        .map(|p| p.package_id.clone())
        .or_else(|| {
            action
                .prop("Octopus.Action.Package.PackageId")
                .filter(|p| !p.trim().is_empty())
                .map(str::to_string)
        })
}

/// What the action produced.
pub struct PackageResult {
    pub installation_dir: PathBuf,
}

/// Everything the action needs.
pub struct PackageRun<'a> {
    pub ex: &'a Executor,
    pub logger: &'a TaskLogger,
    pub activity: &'a Activity,
    pub out: &'a dyn ScriptOutput,
    pub ticket: String,
    pub space_id: &'a str,
    pub environment: &'a str,
    pub tenant: Option<&'a str>,
    pub package: SelectedPackage,
    pub props: &'a BTreeMap<String, String>,
    pub dict: &'a Dictionary,
    pub cancel: &'a CancellationToken,
    pub force_download: bool,
}

fn enabled(props: &BTreeMap<String, String>, feature: &str, switch: &str) -> bool {
    prop_is_true(props.get(switch).map(String::as_str))
        || props
            .get("Octopus.Action.EnabledFeatures")
            .is_some_and(|f| f.split(',').any(|x| x.trim().eq_ignore_ascii_case(feature)))
}

fn prop<'a>(props: &'a BTreeMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| props.get(*n))
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// Runs the action; `Err` carries the failure message for the step.
pub async fn run(r: PackageRun<'_>) -> Result<PackageResult, String> {
    let PackageRun {
        ex,
        logger,
        activity,
        ..
    } = r;
    let pkg = &r.package;
    // 1. Find the package in the built-in feed.
    let version = ferry_domain::version::Version::parse(&pkg.version).ok_or_else(|| {
        format!(
            "the release selected '{}', which is not a version",
            pkg.version
        )
    })?;
    let row = ex
        .db
        .find_package(
            r.space_id,
            &ferry_store::packages::package_key(&pkg.package_id),
            &ferry_store::packages::version_key(&version),
        )
        .await
        .map_err(|e| format!("could not look up the package: {e}"))?
        .ok_or_else(|| {
            format!(
                "the package {} version {} is not in the built-in feed (it may have been deleted)",
                pkg.package_id, pkg.version
            )
        })?;
    let format = PackageFormat::from_extension(&row.file_extension).ok_or_else(|| {
        format!(
            "the package's extension '{}' is not supported",
            row.file_extension
        )
    })?;

    // 2. Acquire it into the target's cache, by hash.
    let cache = ex
        .cfg
        .package_cache
        .join(format!("{}{}", row.sha256, row.file_extension));
    let cached = !r.force_download
        && tokio::fs::metadata(&cache)
            .await
            .is_ok_and(|m| i64::try_from(m.len()).is_ok_and(|l| l == row.size_bytes));
    if cached {
        logger.info(
            activity,
            &format!(
                "Package {} {} is already on the target (hash {}); not transferred again",
                pkg.package_id,
                pkg.version,
                &row.sha256[..12]
            ),
        );
    } else {
        let source = ex
            .blobs
            .as_ref()
            .and_then(|b| b.local_path(&row.sha256))
            .ok_or_else(|| {
                "the built-in feed's file for this package is not available".to_string()
            })?;
        let dest = cache.clone();
        let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            if let Some(p) = dest.parent() {
                std::fs::create_dir_all(p)?;
            }
            let tmp = dest.with_extension("partial");
            let n = std::fs::copy(&source, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &dest)?;
            Ok(n)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("could not copy the package to the target's cache: {e}"))?;
        logger.info(
            activity,
            &format!(
                "Acquired package {} {} ({bytes} bytes)",
                pkg.package_id, pkg.version
            ),
        );
    }

    // 3. Extract into a fresh directory.
    let dir = installation_dir(
        &ex.cfg.apps_root,
        r.environment,
        r.tenant,
        &pkg.package_id,
        &pkg.version,
    );
    let (src, dst) = (cache.clone(), dir.clone());
    let summary = tokio::task::spawn_blocking(move || {
        ferry_packages::archive::extract(
            &src,
            format,
            &dst,
            &ferry_packages::archive::Limits::default(),
        )
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("could not extract the package: {e}"))?;
    logger.info(
        activity,
        &format!(
            "Extracted {} files ({} bytes) to {}",
            summary.files,
            summary.bytes,
            dir.display()
        ),
    );

    // The variables every convention sees.
    let mut dict = r.dict.clone();
    dict.set(
        "Octopus.Action.Package.InstallationDirectoryPath",
        dir.display().to_string(),
    );
    dict.set("Octopus.Action.Package.PackageId", pkg.package_id.clone());
    dict.set("Octopus.Action.Package.PackageVersion", pkg.version.clone());
    dict.set(
        "Octopus.Action.Package.FeedId",
        ferry_domain::BUILTIN_FEED_ID,
    );
    dict.set(
        "Octopus.Tentacle.CurrentDeployment.PackageFilePath",
        cache.display().to_string(),
    );
    dict.set(
        "Octopus.Tentacle.Agent.ApplicationDirectoryPath",
        ex.cfg.apps_root.display().to_string(),
    );
    let custom = prop(
        r.props,
        &["Octopus.Action.Package.CustomInstallationDirectory"],
    )
    .filter(|_| {
        enabled(
            r.props,
            "Octopus.Features.CustomDirectory",
            "Octopus.Action.Package.CustomInstallationDirectoryEnabled",
        ) || r
            .props
            .contains_key("Octopus.Action.Package.CustomInstallationDirectory")
    })
    .map(PathBuf::from);
    let final_dir = custom.clone().unwrap_or_else(|| dir.clone());

    let result = conventions(&r, &mut dict, &dir, custom.as_deref()).await;
    if let Err(e) = &result {
        logger.line(activity, LogCategory::Error, e);
        // DeployFailed scripts run on failure; their own failure is only logged.
        if let Err(e2) = run_stage(&r, &dict, &dir, "DeployFailed").await {
            logger.line(
                activity,
                LogCategory::Error,
                &format!("The DeployFailed script failed too: {e2}"),
            );
        }
        return Err(e.clone());
    }

    // Retention: keep the last installations of this package, never the current one.
    let current = dir.clone();
    match tokio::task::spawn_blocking(move || apply_retention(&current, KEEP_INSTALLATIONS)).await {
        Ok(Ok(removed)) if !removed.is_empty() => logger.verbose(
            activity,
            &format!("Retention removed {} earlier installation(s), keeping the last {KEEP_INSTALLATIONS}", removed.len()),
        ),
        Ok(Err(e)) => logger.line(activity, LogCategory::Warning, &format!("Retention of earlier installations failed: {e}")),
        _ => {}
    }
    Ok(PackageResult {
        installation_dir: final_dir,
    })
}

async fn conventions(
    r: &PackageRun<'_>,
    dict: &mut Dictionary,
    dir: &Path,
    custom: Option<&Path>,
) -> Result<(), String> {
    let (logger, activity) = (r.logger, r.activity);
    run_stage(r, dict, dir, "PreDeploy").await?;

    let opts = crate::deploy::template_options();
    if enabled(
        r.props,
        "Octopus.Features.SubstituteInFiles",
        "Octopus.Action.SubstituteInFiles.Enabled",
    ) {
        let targets =
            prop(r.props, &["Octopus.Action.SubstituteInFiles.TargetFiles"]).unwrap_or("");
        let ignore =
            prop_is_true(dict.get_value("Octopus.Action.Package.IgnoreVariableReplacementErrors"));
        let report =
            ferry_packages::substitute::substitute_files(dir, targets, dict, &opts, ignore)
                .map_err(|e| format!("Substitute variables in files failed: {e}"))?;
        for f in &report.files {
            logger.info(
                activity,
                &format!("Substituted variables in {}", f.path.display()),
            );
        }
        for w in &report.warnings {
            logger.line(activity, LogCategory::Warning, w);
        }
    }

    if enabled(
        r.props,
        "Octopus.Features.JsonConfigurationVariables",
        "Octopus.Action.Package.JsonConfigurationVariablesEnabled",
    ) || enabled(
        r.props,
        "Octopus.Features.StructuredConfigurationVariables",
        "Octopus.Action.StructuredConfigurationVariables.Enabled",
    ) {
        let targets = prop(
            r.props,
            &[
                "Octopus.Action.StructuredConfigurationVariables.Targets",
                "Octopus.Action.Package.JsonConfigurationVariablesTargets",
            ],
        )
        .unwrap_or("");
        let vars = dict.evaluated(&opts);
        let report = ferry_packages::structured::replace_structured(dir, targets, &vars, false)
            .map_err(|e| format!("Structured configuration variables failed: {e}"))?;
        for f in &report.files {
            logger.info(
                activity,
                &format!(
                    "Structured configuration variables applied to {}",
                    f.path.display()
                ),
            );
        }
        for w in &report.warnings {
            logger.line(activity, LogCategory::Warning, w);
        }
    }

    if let Some(custom) = custom {
        let purge = prop_is_true(r.props.get("Octopus.Action.Package.CustomInstallationDirectoryShouldBePurgedBeforeDeployment").map(String::as_str));
        let exclusions = r
            .props
            .get("Octopus.Action.Package.CustomInstallationDirectoryPurgeExclusions")
            .cloned()
            .unwrap_or_default();
        let (from, to) = (dir.to_path_buf(), custom.to_path_buf());
        let n =
            tokio::task::spawn_blocking(move || copy_to_custom_dir(&from, &to, purge, &exclusions))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("Copying to the custom installation directory failed: {e}"))?;
        logger.info(
            activity,
            &format!(
                "Copied {n} files to the custom installation directory {}",
                custom.display()
            ),
        );
        dict.set(
            "Octopus.Action.Package.InstallationDirectoryPath",
            custom.display().to_string(),
        );
        dict.set(
            "Octopus.Action.Package.CustomInstallationDirectory",
            custom.display().to_string(),
        );
    }

    let scripts_dir = custom.unwrap_or(dir);
    run_stage(r, dict, scripts_dir, "Deploy").await?;
    run_stage(r, dict, scripts_dir, "PostDeploy").await?;
    Ok(())
}

/// Runs a convention stage's scripts: the package's own (`Deploy.sh`, … at its root, unless
/// `Octopus.Action.Package.RunScripts` is False), then the step's inline ones
/// (`Octopus.Action.CustomScripts.Deploy.sh` / `.py`).
async fn run_stage(
    r: &PackageRun<'_>,
    dict: &Dictionary,
    dir: &Path,
    stage: &str,
) -> Result<(), String> {
    let run_packaged = dict
        .get_value("Octopus.Action.Package.RunScripts")
        .is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"));
    let mut scripts: Vec<(String, Syntax, String)> = Vec::new();
    if run_packaged {
        if let Some((path, syntax)) = packaged_script(dir, stage) {
            let body = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| format!("could not read {}: {e}", path.display()))?;
            scripts.push((format!("{stage} script in the package"), syntax, body));
        }
    }
    for (ext, syntax) in [("sh", Syntax::Bash), ("py", Syntax::Python)] {
        if let Some(body) = r
            .props
            .get(&format!("Octopus.Action.CustomScripts.{stage}.{ext}"))
        {
            if !body.trim().is_empty() {
                scripts.push((format!("{stage} script of the step"), syntax, body.clone()));
            }
        }
    }
    let opts = crate::deploy::template_options();
    for (label, syntax, body) in scripts {
        r.logger.info(r.activity, &format!("Running the {label}"));
        let req = ScriptRequest {
            ticket: format!("{}-{}", r.ticket, stage.to_lowercase()),
            syntax,
            body,
            env: Vec::new(),
            variables: dict.evaluated(&opts),
            cwd: Some(dir.to_path_buf()),
        };
        let target: &dyn Target = &r.ex.local;
        match target.run_script(req, r.out, r.cancel.clone()).await {
            Ok(ScriptOutcome::Exited(0)) => {}
            Ok(ScriptOutcome::Exited(code)) => {
                return Err(format!("the {label} returned exit code {code}"));
            }
            Ok(ScriptOutcome::Canceled) => return Err("canceled".to_string()),
            Err(e) => return Err(format!("the {label} could not run: {e}")),
        }
    }
    Ok(())
}
