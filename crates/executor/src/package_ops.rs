//! The file-system stages of the "Deploy a package" step, as one function that runs where the
//! files are: in the server process for the built-in worker, inside `ferry agent` for agents.
//! The server drives the stages (and the scripts between them) through the `Target` trait;
//! each stage is a `ferry_protocol::PackageOp`.

use std::path::{Path, PathBuf};

use ferry_packages::filename::PackageFormat;
use ferry_protocol::{PackageOp, PackageStageReply, PackagedScript, Syntax as WireSyntax};

use crate::package_step::{
    apply_retention, apply_retention_days, copy_to_custom_dir, installation_dir, packaged_script,
};
use crate::target::Syntax;
use crate::variables::Dictionary;

/// Where a target keeps packages and installations.
#[derive(Clone, Debug)]
pub struct Roots {
    /// Package files by hash: `<cache>/<sha256><extension>`.
    pub package_cache: PathBuf,
    /// Installations: `<apps root>/<environment>[/<tenant>]/<package id>/<version>`.
    pub apps_root: PathBuf,
}

/// A package file in the server's feed, to be put into a target's cache.
#[derive(Clone, Debug)]
pub struct PackageFile {
    /// The package's id (targets keep it beside the file, to find a basis for deltas).
    pub package_id: String,
    pub sha256: String,
    pub size: u64,
    /// `.zip`, `.tar.gz`, …
    pub extension: String,
    /// The file on the server.
    pub source: PathBuf,
}

/// What a transfer to a target sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transferred {
    /// Bytes sent over the wire (the delta's size for a delta transfer).
    pub bytes: u64,
    /// Set when an rsync delta against this cached file was sent instead of the whole file.
    pub delta_from: Option<String>,
}

/// Checks an extension a peer sent: a known package format, nothing path-like.
pub fn check_extension(ext: &str) -> Result<PackageFormat, String> {
    if ext.contains('/') || ext.contains('\\') || ext.contains("..") {
        return Err(format!("'{ext}' is not a package extension"));
    }
    PackageFormat::from_extension(ext)
        .ok_or_else(|| format!("the package extension '{ext}' is not supported"))
}

/// The cache file for a package.
pub fn cache_path(roots: &Roots, sha256: &str, extension: &str) -> Result<PathBuf, String> {
    if !ferry_protocol::is_sha256_hex(sha256) {
        return Err("the package hash is not a SHA-256 in lower-case hex".to_string());
    }
    check_extension(extension)?;
    Ok(roots.package_cache.join(format!("{sha256}{extension}")))
}

/// Whether the cache holds the package with the expected size.
pub fn cached(roots: &Roots, sha256: &str, extension: &str, size: u64) -> bool {
    cache_path(roots, sha256, extension)
        .ok()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.len() == size)
}

/// Copies a local file into the cache (the built-in worker's "transfer").
pub fn copy_into_cache(roots: &Roots, pkg: &PackageFile) -> Result<u64, String> {
    let dest = cache_path(roots, &pkg.sha256, &pkg.extension)?;
    let write = || -> std::io::Result<u64> {
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p)?;
        }
        let tmp = dest.with_extension("partial");
        let n = std::fs::copy(&pkg.source, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        Ok(n)
    };
    write().map_err(|e| format!("could not copy the package to the target's cache: {e}"))
}

fn wire_syntax(s: Syntax) -> WireSyntax {
    match s {
        Syntax::Bash => WireSyntax::Bash,
        Syntax::Python => WireSyntax::Python,
    }
}

/// Runs one stage. Blocking: call it from `spawn_blocking`.
pub fn apply(op: &PackageOp, roots: &Roots) -> Result<PackageStageReply, String> {
    let mut reply = PackageStageReply::default();
    match op {
        PackageOp::Extract {
            sha256,
            extension,
            environment,
            tenant,
            package_id,
            version,
        } => {
            let format = check_extension(extension)?;
            let file = cache_path(roots, sha256, extension)?;
            if !file.is_file() {
                return Err(format!(
                    "the package {package_id} {version} is not in the target's cache"
                ));
            }
            let dir = installation_dir(
                &roots.apps_root,
                environment,
                tenant.as_deref(),
                package_id,
                version,
            );
            let summary = ferry_packages::archive::extract(
                &file,
                format,
                &dir,
                &ferry_packages::archive::Limits::default(),
            )
            .map_err(|e| format!("could not extract the package: {e}"))?;
            reply.files = summary.files;
            reply.bytes = summary.bytes;
            reply.dir = Some(dir.display().to_string());
            reply.package_file = Some(file.display().to_string());
            reply.apps_root = Some(roots.apps_root.display().to_string());
        }
        PackageOp::Configure {
            dir,
            variables,
            substitute,
            structured,
            custom,
        } => {
            let dir = Path::new(dir);
            let mut dict = Dictionary::default();
            for v in variables {
                dict.set(&v.name, v.value.clone());
            }
            let opts = ferry_template::Options::default();
            if let Some(spec) = substitute {
                let report = ferry_packages::substitute::substitute_files(
                    dir,
                    &spec.targets,
                    &dict,
                    &opts,
                    spec.ignore_errors,
                )
                .map_err(|e| format!("Substitute variables in files failed: {e}"))?;
                for f in &report.files {
                    reply
                        .info
                        .push(format!("Substituted variables in {}", f.path.display()));
                }
                reply.warnings.extend(report.warnings);
            }
            if let Some(targets) = structured {
                let vars = dict.evaluated(&opts);
                let report =
                    ferry_packages::structured::replace_structured(dir, targets, &vars, false)
                        .map_err(|e| format!("Structured configuration variables failed: {e}"))?;
                for f in &report.files {
                    reply.info.push(format!(
                        "Structured configuration variables applied to {}",
                        f.path.display()
                    ));
                }
                reply.warnings.extend(report.warnings);
            }
            if let Some(c) = custom {
                let to = PathBuf::from(&c.dir);
                let n = copy_to_custom_dir(dir, &to, c.purge, &c.exclusions).map_err(|e| {
                    format!("Copying to the custom installation directory failed: {e}")
                })?;
                reply.info.push(format!(
                    "Copied {n} files to the custom installation directory {}",
                    to.display()
                ));
                reply.dir = Some(c.dir.clone());
            }
        }
        PackageOp::ReadArtifact {
            ticket,
            index,
            max_bytes,
        } => return crate::artifacts::read(roots, ticket, *index, *max_bytes),
        PackageOp::ReadScript { dir, stage } => {
            if !matches!(
                stage.as_str(),
                "PreDeploy" | "Deploy" | "PostDeploy" | "DeployFailed"
            ) {
                return Err(format!("'{stage}' is not a convention stage"));
            }
            if let Some((path, syntax)) = packaged_script(Path::new(dir), stage) {
                let body = std::fs::read_to_string(&path)
                    .map_err(|e| format!("could not read {}: {e}", path.display()))?;
                reply.script = Some(PackagedScript {
                    syntax: wire_syntax(syntax),
                    body,
                });
            }
        }
        PackageOp::Retain {
            dir,
            keep,
            keep_days,
        } => {
            let keep = usize::try_from(*keep).unwrap_or(usize::MAX).max(1);
            let result = match keep_days {
                Some(days) => apply_retention_days(Path::new(dir), *days)
                    .map(|r| (r, format!("keeping the last {days} day(s)"))),
                None => apply_retention(Path::new(dir), keep)
                    .map(|r| (r, format!("keeping the last {keep}"))),
            };
            match result {
                Ok((removed, kept)) if !removed.is_empty() => reply.info.push(format!(
                    "Retention removed {} earlier installation(s), {kept}",
                    removed.len()
                )),
                Ok(_) => {}
                Err(e) => reply
                    .warnings
                    .push(format!("Retention of earlier installations failed: {e}")),
            }
        }
    }
    Ok(reply)
}
