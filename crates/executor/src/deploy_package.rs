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
use crate::package_ops::PackageFile;
use crate::target::{ScriptOutcome, ScriptOutput, ScriptRequest, Syntax, Target, TaskRef};
use crate::variables::Dictionary;
use ferry_protocol::{CustomDirSpec, NameValue, PackageOp, PackageStageReply, SubstituteSpec};

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
    pub target: &'a dyn Target,
    pub task: &'a TaskRef,
    pub space_id: &'a str,
    pub environment: &'a str,
    pub tenant: Option<&'a str>,
    pub package: SelectedPackage,
    pub props: &'a BTreeMap<String, String>,
    pub dict: &'a Dictionary,
    pub cancel: &'a CancellationToken,
    pub force_download: bool,
    /// The lifecycle's retention of installations on targets.
    pub retention: Retention,
}

/// How many earlier installations of a package a target keeps: the lifecycle's (or its
/// phase's) `TentacleRetentionPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    Forever,
    Items(u32),
    Days(u32),
}

impl Default for Retention {
    fn default() -> Self {
        Retention::Items(KEEP_INSTALLATIONS as u32)
    }
}

impl Retention {
    pub fn from_policy(p: &ferry_domain::RetentionPeriod) -> Retention {
        let n = u32::try_from(p.quantity_to_keep.max(0)).unwrap_or(u32::MAX);
        if p.should_keep_forever || n == 0 {
            Retention::Forever
        } else if p.unit.eq_ignore_ascii_case("Items") {
            Retention::Items(n)
        } else {
            Retention::Days(n)
        }
    }
}

/// The retention of files on targets for a deployment of `project` (in `channel`) to
/// `environment_id`: the policy of the environment's phase, else of the nearest earlier phase
/// that has one, else the lifecycle's. Falls back to keeping the last three when the lifecycle
/// cannot be read.
pub async fn target_retention(
    ex: &Executor,
    project: &ferry_domain::Project,
    channel: Option<&ferry_domain::Channel>,
    environment_id: &str,
) -> Retention {
    let lifecycle_id = channel
        .and_then(|c| c.lifecycle_id.clone())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| project.lifecycle_id.clone());
    let lifecycle: ferry_domain::Lifecycle = match ex.db.get_doc(&lifecycle_id).await {
        Ok(Some(d)) => match serde_json::from_str(&d.body) {
            Ok(l) => l,
            Err(_) => return Retention::default(),
        },
        _ => return Retention::default(),
    };
    let envs: Vec<ferry_domain::lifecycle::EnvRef> = match ex
        .db
        .list_docs(&ferry_store::DocQuery {
            space_id: Some(project.space_id.clone()),
            ..ferry_store::DocQuery::new("Environments")
        })
        .await
    {
        Ok((rows, _)) => rows
            .into_iter()
            .map(|r| ferry_domain::lifecycle::EnvRef {
                id: r.id,
                name: r.name,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let phases = ferry_domain::lifecycle::effective_phases(&lifecycle.phases, &envs);
    let own = phases
        .iter()
        .position(|p| p.environments.iter().any(|e| e == environment_id))
        .and_then(|i| {
            (0..=i).rev().find_map(|j| {
                lifecycle
                    .phases
                    .get(j)
                    .and_then(|p| p.tentacle_retention_policy.clone())
            })
        });
    Retention::from_policy(own.as_ref().unwrap_or(&lifecycle.tentacle_retention_policy))
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
    let target = r.target;
    let source = ex
        .blobs
        .as_ref()
        .and_then(|b| b.local_path(&row.sha256))
        .ok_or_else(|| "the built-in feed's file for this package is not available".to_string())?;
    let _ = format;
    let file = PackageFile {
        package_id: pkg.package_id.clone(),
        sha256: row.sha256.clone(),
        size: u64::try_from(row.size_bytes).unwrap_or(0),
        extension: row.file_extension.clone(),
        source,
    };
    let sent = target
        .put_package(&file, r.force_download, r.task)
        .await
        .map_err(|e| format!("could not transfer the package to the target: {e}"))?;
    match sent {
        Some(t) if t.delta_from.is_some() => logger.info(
            activity,
            &format!(
                "Acquired package {} {} as a delta of {} bytes against the earlier package on the target (the whole package is {} bytes)",
                pkg.package_id, pkg.version, t.bytes, file.size
            ),
        ),
        Some(t) => logger.info(
            activity,
            &format!(
                "Acquired package {} {} ({} bytes)",
                pkg.package_id, pkg.version, t.bytes
            ),
        ),
        None => logger.info(
            activity,
            &format!(
                "Package {} {} is already on the target (hash {}); not transferred again",
                pkg.package_id,
                pkg.version,
                &row.sha256[..12.min(row.sha256.len())]
            ),
        ),
    }

    // 3. Extract into a fresh directory.
    let extracted = target
        .package_stage(
            PackageOp::Extract {
                sha256: row.sha256.clone(),
                extension: row.file_extension.clone(),
                environment: r.environment.to_string(),
                tenant: r.tenant.map(str::to_string),
                package_id: pkg.package_id.clone(),
                version: pkg.version.clone(),
            },
            r.task,
        )
        .await
        .map_err(|e| e.to_string())?;
    let dir = PathBuf::from(extracted.dir.clone().unwrap_or_default());
    logger.info(
        activity,
        &format!(
            "Extracted {} files ({} bytes) to {}",
            extracted.files,
            extracted.bytes,
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
        extracted.package_file.clone().unwrap_or_default(),
    );
    dict.set(
        "Octopus.Tentacle.Agent.ApplicationDirectoryPath",
        extracted.apps_root.clone().unwrap_or_default(),
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

    // Retention: the lifecycle's policy for files on targets, never the current installation.
    let (keep, keep_days) = match r.retention {
        Retention::Forever => (u32::MAX, None),
        Retention::Items(n) => (n.max(1), None),
        Retention::Days(d) => (u32::MAX, Some(d)),
    };
    let outcome = if r.retention == Retention::Forever {
        Ok(PackageStageReply::default())
    } else {
        target
            .package_stage(
                PackageOp::Retain {
                    dir: dir.display().to_string(),
                    keep,
                    keep_days,
                },
                r.task,
            )
            .await
    };
    match outcome {
        Ok(rep) => report(logger, activity, &rep),
        Err(e) => logger.line(
            activity,
            LogCategory::Warning,
            &format!("Retention of earlier installations failed: {e}"),
        ),
    }
    Ok(PackageResult {
        installation_dir: final_dir,
    })
}

fn report(logger: &TaskLogger, activity: &Activity, rep: &PackageStageReply) {
    for i in &rep.info {
        logger.info(activity, i);
    }
    for w in &rep.warnings {
        logger.line(activity, LogCategory::Warning, w);
    }
}

async fn conventions(
    r: &PackageRun<'_>,
    dict: &mut Dictionary,
    dir: &Path,
    custom: Option<&Path>,
) -> Result<(), String> {
    let (logger, activity) = (r.logger, r.activity);
    run_stage(r, dict, dir, "PreDeploy").await?;

    let substitute = enabled(
        r.props,
        "Octopus.Features.SubstituteInFiles",
        "Octopus.Action.SubstituteInFiles.Enabled",
    )
    .then(|| SubstituteSpec {
        targets: prop(r.props, &["Octopus.Action.SubstituteInFiles.TargetFiles"])
            .unwrap_or("")
            .to_string(),
        ignore_errors: prop_is_true(
            dict.get_value("Octopus.Action.Package.IgnoreVariableReplacementErrors"),
        ),
    });
    let structured = (enabled(
        r.props,
        "Octopus.Features.JsonConfigurationVariables",
        "Octopus.Action.Package.JsonConfigurationVariablesEnabled",
    ) || enabled(
        r.props,
        "Octopus.Features.StructuredConfigurationVariables",
        "Octopus.Action.StructuredConfigurationVariables.Enabled",
    ))
    .then(|| {
        prop(
            r.props,
            &[
                "Octopus.Action.StructuredConfigurationVariables.Targets",
                "Octopus.Action.Package.JsonConfigurationVariablesTargets",
            ],
        )
        .unwrap_or("")
        .to_string()
    });
    let custom_spec = custom.map(|c| CustomDirSpec {
        dir: c.display().to_string(),
        purge: prop_is_true(
            r.props
                .get("Octopus.Action.Package.CustomInstallationDirectoryShouldBePurgedBeforeDeployment")
                .map(String::as_str),
        ),
        exclusions: r
            .props
            .get("Octopus.Action.Package.CustomInstallationDirectoryPurgeExclusions")
            .cloned()
            .unwrap_or_default(),
    });
    if substitute.is_some() || structured.is_some() || custom_spec.is_some() {
        let variables = dict
            .iter()
            .map(|(name, value)| NameValue {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect();
        let rep = r
            .target
            .package_stage(
                PackageOp::Configure {
                    dir: dir.display().to_string(),
                    variables,
                    substitute,
                    structured,
                    custom: custom_spec,
                },
                r.task,
            )
            .await
            .map_err(|e| e.to_string())?;
        report(logger, activity, &rep);
    }
    if let Some(custom) = custom {
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
        let rep = r
            .target
            .package_stage(
                PackageOp::ReadScript {
                    dir: dir.display().to_string(),
                    stage: stage.to_string(),
                },
                r.task,
            )
            .await
            .map_err(|e| e.to_string())?;
        if let Some(script) = rep.script {
            let syntax = match script.syntax {
                ferry_protocol::Syntax::Bash => Syntax::Bash,
                ferry_protocol::Syntax::Python => Syntax::Python,
            };
            scripts.push((
                format!("{stage} script in the package"),
                syntax,
                script.body,
            ));
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
            task_id: r.task.task_id.clone(),
            epoch: r.task.epoch,
            syntax,
            body,
            env: Vec::new(),
            variables: dict.evaluated(&opts),
            cwd: Some(dir.to_path_buf()),
        };
        match r.target.run_script(req, r.out, r.cancel.clone()).await {
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
