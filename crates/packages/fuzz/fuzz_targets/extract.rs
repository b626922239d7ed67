//! Feeds arbitrary bytes to the extractor as every format. The first byte picks the format (so
//! that the fuzzer can steer each parser); the rest is the archive. Extraction must never
//! panic, and must never create anything outside the target: the target lives in `inner/`
//! of a fresh temporary directory, and `inner/`'s parent must hold nothing else afterwards.
#![no_main]

use std::fs;

use ferry_packages::archive::{self, Limits};
use ferry_packages::filename::PackageFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, archive_bytes)) = data.split_first() else {
        return;
    };
    let format = match selector % 4 {
        0 => PackageFormat::Zip,
        1 => PackageFormat::Nupkg,
        2 => PackageFormat::Tar,
        _ => PackageFormat::TarGz,
    };
    let Ok(tmp) = tempfile::tempdir() else { return };
    let outer = tmp.path();
    let inner = outer.join("inner");
    if fs::create_dir(&inner).is_err() {
        return;
    }
    let archive_path = outer.join("package.bin");
    if fs::write(&archive_path, archive_bytes).is_err() {
        return;
    }
    let limits = Limits {
        max_total_bytes: 16 << 20,
        max_entries: 10_000,
        max_ratio: 200,
        max_depth: 32,
    };
    let dest = inner.join("dest");
    let result = archive::extract(&archive_path, format, &dest, &limits);

    // Nothing may appear next to the archive or the target, and a failure leaves no target.
    let mut outer_names: Vec<_> = fs::read_dir(outer)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    outer_names.sort();
    assert_eq!(outer_names, ["inner", "package.bin"], "{result:?}");
    let inner_names: Vec<_> = fs::read_dir(&inner)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    match &result {
        Ok(_) => assert_eq!(inner_names, ["dest"]),
        Err(_) => assert!(inner_names.is_empty(), "{result:?} left {inner_names:?}"),
    }
    // Whatever was written resolves inside the target.
    if result.is_ok() {
        let Ok(root) = fs::canonicalize(&dest) else {
            return;
        };
        let mut stack = vec![dest.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.file_type().is_symlink() {
                    if let Ok(resolved) = fs::canonicalize(&path) {
                        assert!(resolved.starts_with(&root), "{} escapes", path.display());
                    }
                } else if meta.is_dir() {
                    stack.push(path);
                }
            }
        }
    }
});
