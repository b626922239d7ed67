//! Packing a directory and extracting it again, determinism, and file hashes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ferry_packages::archive::{self, PackError};
use ferry_packages::filename::PackageFormat;

use crate::support::limits;

fn tree(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::create_dir_all(root.join("conf/deep/er")).unwrap();
    fs::write(root.join("bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(root.join("conf/deep/er/settings.json"), "{\"a\": 1}").unwrap();
    fs::write(root.join("Zeta.txt"), "z".repeat(10_000)).unwrap();
    fs::write(root.join("\u{e9}t\u{e9}.txt"), "unicode").unwrap();
    let long = "n".repeat(120);
    fs::write(root.join("conf").join(&long), "long name").unwrap();
    std::os::unix::fs::symlink("../Zeta.txt", root.join("bin/zeta")).unwrap();
}

fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if m.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                let x = m.permissions().mode() & 0o111 != 0;
                out.push(format!(
                    "{rel} {} x={x}",
                    String::from_utf8_lossy(&fs::read(&p).unwrap())
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn packs_and_extracts_every_format_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src);
    for (format, name) in [
        (PackageFormat::Zip, "App.1.0.0.zip"),
        (PackageFormat::Tar, "App.1.0.0.tar"),
        (PackageFormat::TarGz, "App.1.0.0.tar.gz"),
    ] {
        let first = tmp.path().join(format!("first-{name}"));
        let s = archive::pack(&src, &first, format).unwrap();
        assert_eq!((s.files, s.directories, s.symlinks), (5, 5, 1), "{name}");
        archive::check_format(&first, format).unwrap();

        // Touching the files changes nothing in the archive.
        fs::write(src.join("Zeta.txt"), "z".repeat(10_000)).unwrap();
        let second = tmp.path().join(format!("second-{name}"));
        archive::pack(&src, &second, format).unwrap();
        assert_eq!(
            fs::read(&first).unwrap(),
            fs::read(&second).unwrap(),
            "{name} is deterministic"
        );

        let dest = tmp.path().join(format!("out-{name}"));
        archive::extract(&first, format, &dest, &limits()).unwrap();
        assert_eq!(listing(&src), listing(&dest), "{name}");
    }
}

#[test]
fn the_output_may_live_inside_the_packed_directory() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("a.txt"), "a").unwrap();
    let out = tmp.path().join("App.1.0.0.zip");
    archive::pack(tmp.path(), &out, PackageFormat::Zip).unwrap();
    // Packing again replaces the archive and does not include it.
    let s = archive::pack(tmp.path(), &out, PackageFormat::Zip).unwrap();
    assert_eq!(s.files, 1);
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("x");
    archive::extract(&out, PackageFormat::Zip, &dest, &limits()).unwrap();
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 1);
}

#[test]
fn refuses_what_cannot_be_packed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("passwd")).unwrap();
    let out = tmp.path().join("x.zip");
    let err = archive::pack(&src, &out, PackageFormat::Zip).unwrap_err();
    assert!(matches!(err, PackError::Unpackable { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is a link to the absolute path '/etc/passwd'; replace the link with a copy"),
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no temporary file is left"
    );

    let err = archive::pack(&src, &out, PackageFormat::Nupkg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Ferry packs zip, tar and tar.gz packages, not nupkg"
    );
    let err = archive::pack(&tmp.path().join("missing"), &out, PackageFormat::Zip).unwrap_err();
    assert!(err.to_string().starts_with("could not open"), "{err}");
}

#[test]
fn hashes_files_in_one_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("abc");
    fs::write(&p, "abc").unwrap();
    assert_eq!(
        archive::hashes(&p).unwrap(),
        (
            "a9993e364706816aba3e25717850c26c9cd0d89d".to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string(),
            3
        )
    );
    let big = tmp.path().join("big");
    fs::write(&big, vec![0u8; 200_000]).unwrap();
    let (sha1, sha256, size) = archive::hashes(&big).unwrap();
    assert_eq!((sha1.len(), sha256.len(), size), (40, 64, 200_000));
    assert!(archive::hashes(&tmp.path().join("missing")).is_err());
}
