//! The "Deploy a package" step's work on a target's file system, in Octopus's order:
//! acquire the package into the target's cache (by hash; skipped when present), extract it into
//! a fresh directory `<apps root>/<environment>/<package id>/<version>[_n]`, then PreDeploy
//! scripts, substitute variables in files, structured configuration variables, copy to a
//! custom installation directory, Deploy scripts, PostDeploy scripts; DeployFailed scripts on
//! failure; then retention of earlier installations.
//!
//! This module does the file-system parts that are not scripts: directory naming, caching,
//! retention and the custom installation directory. It runs where the files are (the built-in
//! worker now; the agent later), so it takes plain paths.

use std::path::{Path, PathBuf};

/// The directory an installation goes to: `root/<environment>[/<tenant>]/<package id>/<version>`,
/// with `_1`, `_2`, … appended when that directory already exists (a redeploy of the same
/// version gets a fresh directory, as in Octopus).
pub fn installation_dir(
    apps_root: &Path,
    environment: &str,
    tenant: Option<&str>,
    package_id: &str,
    version: &str,
) -> PathBuf {
    let mut base = apps_root.join(safe_segment(environment));
    if let Some(t) = tenant {
        base = base.join(safe_segment(t));
    }
    let base = base.join(safe_segment(package_id));
    let v = safe_segment(version);
    // Suffixes only grow (`1.0.0`, `1.0.0_1`, `1.0.0_2`, …), even after retention removed some,
    // so a directory name never comes back.
    let mut highest: Option<u64> = None;
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let n = if name == v {
                Some(0)
            } else {
                name.strip_prefix(&format!("{v}_"))
                    .and_then(|n| n.parse::<u64>().ok())
            };
            if let Some(n) = n {
                highest = Some(highest.map_or(n, |h| h.max(n)));
            }
        }
    }
    let journal = read_journal(&base);
    for name in &journal {
        if name == &v {
            highest = Some(highest.unwrap_or(0));
        } else if let Some(n) = name
            .strip_prefix(&format!("{v}_"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            highest = Some(highest.map_or(n, |h| h.max(n)));
        }
    }
    match highest {
        None => base.join(v),
        Some(n) => base.join(format!("{v}_{}", n + 1)),
    }
}

const JOURNAL: &str = ".ferry-installations";

fn read_journal(package_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(package_dir.join(JOURNAL))
        .map(|t| {
            t.lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Records a finished installation in its package directory's journal (oldest first).
pub fn record_installation(dir: &Path) -> std::io::Result<()> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Ok(());
    };
    let mut entries = read_journal(parent);
    let name = name.to_string_lossy().to_string();
    entries.retain(|e| e != &name);
    entries.push(name);
    std::fs::write(parent.join(JOURNAL), entries.join("\n") + "\n")
}

/// A name usable as one path segment: no separators, no `.`/`..`, no control characters.
pub fn safe_segment(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() || c == ':' {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => "_".to_string(),
        _ => cleaned,
    }
}

/// Removes earlier installations of a package, keeping the last `keep` recorded in its
/// journal (the current one always among them). Directories the journal does not list are
/// never touched. Returns the directories removed.
pub fn apply_retention(current: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    record_installation(current)?;
    let Some(parent) = current.parent() else {
        return Ok(Vec::new());
    };
    let entries: Vec<String> = read_journal(parent)
        .into_iter()
        .filter(|e| parent.join(e).exists())
        .collect();
    let keep = keep.max(1);
    let cut = entries.len().saturating_sub(keep);
    let current_name = current.file_name().map(|n| n.to_string_lossy().to_string());
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        if i < cut && Some(&e) != current_name.as_ref() {
            let d = parent.join(&e);
            if std::fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&d)?;
                removed.push(d);
            }
        } else {
            kept.push(e);
        }
    }
    std::fs::write(parent.join(JOURNAL), kept.join("\n") + "\n")?;
    Ok(removed)
}

/// Removes earlier installations of a package older than `days` days (by the directory's
/// modification time), never the current one. Directories the journal does not list are never
/// touched. Returns the directories removed.
pub fn apply_retention_days(current: &Path, days: u32) -> std::io::Result<Vec<PathBuf>> {
    record_installation(current)?;
    let Some(parent) = current.parent() else {
        return Ok(Vec::new());
    };
    let cutoff = std::time::SystemTime::now()
        .checked_sub(std::time::Duration::from_secs(u64::from(days) * 86_400))
        .unwrap_or(std::time::UNIX_EPOCH);
    let current_name = current.file_name().map(|n| n.to_string_lossy().to_string());
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for e in read_journal(parent) {
        let d = parent.join(&e);
        let Ok(meta) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        let old = meta.modified().is_ok_and(|m| m < cutoff);
        if old && meta.is_dir() && Some(&e) != current_name.as_ref() {
            std::fs::remove_dir_all(&d)?;
            removed.push(d);
        } else {
            kept.push(e);
        }
    }
    std::fs::write(parent.join(JOURNAL), kept.join("\n") + "\n")?;
    Ok(removed)
}

/// Copies the extracted package to a custom installation directory. With `purge`, the
/// directory is emptied first except for paths matching `exclusions` (newline-separated globs
/// relative to the directory, e.g. `logs/**` or `**/*.config`). Symlinks are not followed.
pub fn copy_to_custom_dir(
    from: &Path,
    to: &Path,
    purge: bool,
    exclusions: &str,
) -> Result<usize, String> {
    let excl = build_globs(exclusions)?;
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    if purge {
        purge_dir(to, to, &excl).map_err(|e| format!("cannot purge {}: {e}", to.display()))?;
    }
    copy_tree(from, to).map_err(|e| format!("cannot copy into {}: {e}", to.display()))
}

fn build_globs(patterns: &str) -> Result<globset::GlobSet, String> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns.lines().map(str::trim).filter(|p| !p.is_empty()) {
        let p = p.replace('\\', "/");
        let g = globset::Glob::new(&p)
            .map_err(|e| format!("the exclusion '{p}' is not a valid pattern: {e}"))?;
        b.add(g);
        // `dir` also excludes everything below it.
        if let Ok(g) = globset::Glob::new(&format!("{}/**", p.trim_end_matches('/'))) {
            b.add(g);
        }
    }
    b.build().map_err(|e| e.to_string())
}

fn purge_dir(root: &Path, dir: &Path, excl: &globset::GlobSet) -> std::io::Result<bool> {
    // Returns whether anything excluded remains inside `dir`.
    let mut kept = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        if excl.is_match(&rel) {
            kept = true;
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            if purge_dir(root, &path, excl)? {
                kept = true;
            } else {
                std::fs::remove_dir(&path)?;
            }
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(kept)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&src)?;
        if meta.is_dir() {
            std::fs::create_dir_all(&dst)?;
            n += copy_tree(&src, &dst)?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&src)?;
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(target, &dst)?;
            n += 1;
        } else {
            std::fs::copy(&src, &dst)?;
            n += 1;
        }
    }
    Ok(n)
}

/// The convention scripts at the root of a package for a stage (`PreDeploy`, `Deploy`,
/// `PostDeploy`, `DeployFailed`), in Linux priority order (Bash, then Python); only the first
/// match runs, as in Octopus.
pub fn packaged_script(dir: &Path, stage: &str) -> Option<(PathBuf, crate::target::Syntax)> {
    for (ext, syntax) in [
        ("sh", crate::target::Syntax::Bash),
        ("py", crate::target::Syntax::Python),
    ] {
        let p = dir.join(format!("{stage}.{ext}"));
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            return Some((p, syntax));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn installation_dirs_are_fresh() {
        let t = tempfile::tempdir().unwrap();
        let d1 = installation_dir(t.path(), "Production", None, "Web", "1.0.0");
        assert!(d1.ends_with("Production/Web/1.0.0"));
        std::fs::create_dir_all(&d1).unwrap();
        let d2 = installation_dir(t.path(), "Production", None, "Web", "1.0.0");
        assert!(d2.ends_with("Production/Web/1.0.0_1"));
        assert_eq!(safe_segment(".."), "_");
        assert_eq!(safe_segment("a/b"), "a_b");
    }

    #[test]
    fn retention_keeps_the_newest_and_the_current() {
        let t = tempfile::tempdir().unwrap();
        let mut made = Vec::new();
        for _ in 0..5 {
            let d = installation_dir(t.path(), "Env", None, "Pkg", "1.0.0");
            std::fs::create_dir_all(&d).unwrap();
            apply_retention(&d, 3).unwrap();
            made.push(d.file_name().unwrap().to_string_lossy().to_string());
        }
        assert_eq!(
            made,
            vec!["1.0.0", "1.0.0_1", "1.0.0_2", "1.0.0_3", "1.0.0_4"]
        );
        let mut left: Vec<String> = std::fs::read_dir(t.path().join("Env/Pkg"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| !n.starts_with('.'))
            .collect();
        left.sort();
        assert_eq!(left, vec!["1.0.0_2", "1.0.0_3", "1.0.0_4"]);
        // A directory the journal does not list is never removed.
        std::fs::create_dir_all(t.path().join("Env/Pkg/manual")).unwrap();
        let d = installation_dir(t.path(), "Env", None, "Pkg", "2.0.0");
        std::fs::create_dir_all(&d).unwrap();
        apply_retention(&d, 1).unwrap();
        assert!(t.path().join("Env/Pkg/manual").exists());
        assert!(d.exists());
        assert!(!t.path().join("Env/Pkg/1.0.0_4").exists());
    }

    #[test]
    fn custom_dir_copy_with_purge_and_exclusions() {
        let t = tempfile::tempdir().unwrap();
        let from = t.path().join("from");
        let to = t.path().join("to");
        std::fs::create_dir_all(from.join("bin")).unwrap();
        std::fs::write(from.join("bin/app"), "new").unwrap();
        std::fs::write(from.join("app.config"), "cfg").unwrap();
        std::fs::create_dir_all(to.join("logs")).unwrap();
        std::fs::write(to.join("logs/today.log"), "keep").unwrap();
        std::fs::write(to.join("stale.txt"), "remove").unwrap();
        let n = copy_to_custom_dir(&from, &to, true, "logs\n").unwrap();
        assert_eq!(n, 2);
        assert!(to.join("logs/today.log").exists());
        assert!(!to.join("stale.txt").exists());
        assert_eq!(std::fs::read_to_string(to.join("bin/app")).unwrap(), "new");
        assert!(copy_to_custom_dir(&from, &to, true, "[").is_err());
    }

    #[test]
    fn packaged_scripts_prefer_bash() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("Deploy.py"), "print(1)").unwrap();
        assert_eq!(
            packaged_script(t.path(), "Deploy").map(|p| p.1),
            Some(crate::target::Syntax::Python)
        );
        std::fs::write(t.path().join("Deploy.sh"), "echo 1").unwrap();
        assert_eq!(
            packaged_script(t.path(), "Deploy").map(|p| p.1),
            Some(crate::target::Syntax::Bash)
        );
        assert!(packaged_script(t.path(), "PreDeploy").is_none());
    }
}
