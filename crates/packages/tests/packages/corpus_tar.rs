//! Hand-made evil tar and tar.gz archives: each is refused (or neutralised) and nothing
//! outside the target changes.

use std::fs;

use ferry_packages::archive::{ExtractError, Limits};
use ferry_packages::filename::PackageFormat::{Tar, TarGz};

use crate::support::{BLOCK_DEVICE, CHAR_DEVICE, FIFO, REGULAR, RawTar, Sandbox, gzip, limits};

/// Extracts the archive as .tar and as .tar.gz; both must be refused with `expected` in the
/// message.
fn refuses(tar: Vec<u8>, expected: &str) {
    let sb = Sandbox::new();
    for (name, bytes, format) in [
        ("evil.tar", tar.clone(), Tar),
        ("evil.tar.gz", gzip(&tar), TarGz),
    ] {
        match sb.extract(name, &bytes, format, &limits()) {
            Err(e) => assert!(
                e.to_string().contains(expected),
                "{name}: {e:?} should contain {expected:?}"
            ),
            Ok(s) => panic!("{name} was extracted: {s:?}"),
        }
    }
}

#[test]
fn refuses_names_that_escape() {
    let sb = Sandbox::new();
    let abs = format!("{}/evil", sb.outside().display());
    for (name, expected) in [
        ("../evil", "contains '..'"),
        ("../../outside/evil", "contains '..'"),
        (abs.as_str(), "is an absolute path"),
        ("/tmp/ferry-evil-tar", "is an absolute path"),
        ("C:\\x", "Windows drive letter"),
        ("a\\..\\..\\x", "contains '..'"),
    ] {
        refuses(
            RawTar::new()
                .file("fine", b"ok")
                .file(name, b"evil")
                .finish(),
            expected,
        );
    }
    assert!(fs::symlink_metadata("/tmp/ferry-evil-tar").is_err());
}

#[test]
fn refuses_links_that_escape_and_writes_through_links() {
    let sb = Sandbox::new();
    let outside = sb.outside().display().to_string();
    refuses(
        RawTar::new()
            .symlink("link", &outside)
            .file("link/evil", b"x")
            .finish(),
        "is a link to the absolute path",
    );
    refuses(
        RawTar::new()
            .symlink("tmp", "/tmp")
            .file("tmp/ferry-evil-tar2", b"x")
            .finish(),
        "is a link to the absolute path",
    );
    refuses(
        RawTar::new()
            .symlink("up", "..")
            .file("up/evil", b"x")
            .finish(),
        "outside the target directory",
    );
    refuses(
        RawTar::new()
            .dir("real")
            .symlink("alias", "real")
            .file("alias/x", b"x")
            .finish(),
        "written through the symbolic link 'alias'",
    );
    // RUSTSEC-2026-0067: a directory entry through a link, which tar-rs used to chmod.
    refuses(
        RawTar::new()
            .dir("real")
            .symlink("alias", "real")
            .dir("alias")
            .finish(),
        "written through the symbolic link 'alias'",
    );
    refuses(
        RawTar::new()
            .dir("real")
            .symlink("alias", "real")
            .dir("alias/sub")
            .finish(),
        "written through the symbolic link 'alias'",
    );
    // RUSTSEC-2021-0080: a link whose target needs directories created through a link.
    refuses(
        RawTar::new()
            .symlink("out", "../../outside")
            .symlink("x", "out/new/dir")
            .finish(),
        "outside the target directory",
    );
    refuses(
        RawTar::new()
            .dir("a/b/c")
            .symlink("a/b/c/up", "../..")
            .symlink("a/esc", "b/c/up/../../..")
            .finish(),
        "passes through the symbolic link 'a/b/c/up'",
    );
    assert!(fs::symlink_metadata("/tmp/ferry-evil-tar2").is_err());
}

#[test]
fn hard_links_copy_earlier_files_only() {
    refuses(
        RawTar::new().hard_link("passwd", "/etc/passwd").finish(),
        "it is a hard link to '/etc/passwd': the name is an absolute path",
    );
    refuses(
        RawTar::new()
            .hard_link("v", "../../outside/victim.txt")
            .finish(),
        "the name contains '..'",
    );
    refuses(
        RawTar::new()
            .hard_link("early", "later")
            .file("later", b"x")
            .finish(),
        "which is not a file earlier in the archive",
    );
    refuses(
        RawTar::new()
            .dir("d")
            .symlink("l", "d")
            .hard_link("h", "l")
            .finish(),
        "which is not a file earlier in the archive",
    );

    let sb = Sandbox::new();
    let tar = RawTar::new()
        .file("a.txt", b"shared")
        .hard_link("b.txt", "a.txt")
        .finish();
    let s = sb.extract("links.tar", &tar, Tar, &limits()).unwrap();
    assert_eq!((s.files, s.bytes), (2, 12));
    assert_eq!(fs::read(sb.dest().join("b.txt")).unwrap(), b"shared");
    use std::os::unix::fs::MetadataExt;
    let ino = |n: &str| fs::metadata(sb.dest().join(n)).unwrap().ino();
    assert_ne!(ino("a.txt"), ino("b.txt"), "a hard link becomes a copy");

    // Copies count against the size limit.
    let sb = Sandbox::new();
    let small = Limits {
        max_total_bytes: 10,
        ..Limits::default()
    };
    let err = sb.extract("links.tar", &tar, Tar, &small).unwrap_err();
    assert!(matches!(err, ExtractError::LimitExceeded(_)), "{err}");
}

#[test]
fn refuses_special_files() {
    refuses(RawTar::new().special("fifo", FIFO).finish(), "it is a FIFO");
    refuses(
        RawTar::new().special("tty", CHAR_DEVICE).finish(),
        "it is a character device",
    );
    refuses(
        RawTar::new().special("sda", BLOCK_DEVICE).finish(),
        "it is a block device",
    );
    refuses(RawTar::new().special("sparse", b'S').finish(), "sparse");
    refuses(
        RawTar::new().special("volume", b'V').finish(),
        "unsupported tar entry type 'V'",
    );
}

#[test]
fn neutralises_setuid_and_world_writable_modes() {
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .file_mode("suid", 0o4755, b"x")
        .file_mode("sgid-sticky", 0o3777, b"x")
        .file_mode("plain", 0o600, b"x")
        .finish();
    sb.extract("modes.tar", &tar, Tar, &limits()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |n: &str| {
        fs::metadata(sb.dest().join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("suid"), 0o755);
    assert_eq!(mode("sgid-sticky"), 0o755);
    assert_eq!(mode("plain"), 0o600);
}

#[test]
fn stops_a_gzip_bomb_while_streaming() {
    let tar = RawTar::new().file("zeros", &vec![0u8; 8 << 20]).finish();
    let gz = gzip(&tar);
    assert!(gz.len() < 64 << 10);
    let sb = Sandbox::new();
    let err = sb
        .extract("bomb.tar.gz", &gz, TarGz, &limits())
        .unwrap_err();
    assert!(err.to_string().contains("expands more than 200:1"), "{err}");
    // The same data uncompressed is no bomb.
    let s = sb.extract("big.tar", &tar, Tar, &limits()).unwrap();
    assert_eq!(s.bytes, 8 << 20);
}

#[test]
fn checks_sizes_from_headers_before_writing() {
    // A header that declares 20 GiB is refused before any byte is written, not found
    // truncated later.
    let mut raw = RawTar::new();
    raw.push(b"huge", REGULAR, "", 0o644, 20 << 30, b"tiny");
    let tar = raw.finish();
    refuses(tar, "it would extract to more than 10737418240 bytes");

    let sb = Sandbox::new();
    let small = Limits {
        max_total_bytes: 1000,
        ..Limits::default()
    };
    let tar = RawTar::new()
        .file("a", &[1; 600])
        .file("b", &[2; 600])
        .finish();
    let err = sb.extract("two.tar", &tar, Tar, &small).unwrap_err();
    assert!(err.to_string().contains("more than 1000 bytes"), "{err}");

    let few = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let tar = RawTar::new()
        .dir("d")
        .file("d/a", b"a")
        .file("d/b", b"b")
        .finish();
    let err = sb.extract("three.tar", &tar, Tar, &few).unwrap_err();
    assert!(err.to_string().contains("more than 2 entries"), "{err}");
}

#[test]
fn refuses_huge_headers() {
    // A PAX header of 2 MiB would be held in memory by the tar reader.
    let long = "a".repeat(2 << 20);
    refuses(
        RawTar::new()
            .pax(&[("comment", &long)])
            .file("x", b"x")
            .finish(),
        "tar headers and extensions take more than",
    );
}

#[test]
fn pax_size_overrides_the_header_size() {
    // RUSTSEC-2026-0068: the ustar header says 0 bytes, the PAX record says 1024. A reader that
    // ignored the PAX size would take the embedded header for a second entry, `../../evil`.
    let embedded = crate::support::header(b"../../outside/evil", REGULAR, b"", 0o644, 0);
    let mut data = embedded.to_vec();
    data.extend_from_slice(&[0u8; 512]);
    let mut raw = RawTar::new().pax(&[("size", "1024")]);
    raw.push(b"innocent", REGULAR, "", 0o644, 0, &data);
    let tar = raw.finish();
    let sb = Sandbox::new();
    for (name, bytes, format) in [
        ("pax.tar", tar.clone(), Tar),
        ("pax.tar.gz", gzip(&tar), TarGz),
    ] {
        let s = sb.extract(name, &bytes, format, &limits()).unwrap();
        assert_eq!((s.files, s.bytes), (1, 1024), "{name}");
        assert_eq!(fs::read(sb.dest().join("innocent")).unwrap(), data);
        sb.reset();
    }
}

#[test]
fn long_names_through_pax() {
    let long = format!("{}/file.txt", "d".repeat(150));
    let sb = Sandbox::new();
    let mut raw = RawTar::new().pax(&[("path", &long)]);
    raw.push(b"short", REGULAR, "", 0o644, 2, b"ok");
    let s = sb
        .extract("long.tar", &raw.finish(), Tar, &limits())
        .unwrap();
    assert_eq!(s.files, 1);
    assert_eq!(fs::read(sb.dest().join(&long)).unwrap(), b"ok");

    let mut raw = RawTar::new().pax(&[("path", "../../outside/evil")]);
    raw.push(b"innocent", REGULAR, "", 0o644, 1, b"x");
    refuses(raw.finish(), "contains '..'");
}

#[test]
fn refuses_duplicates_and_conflicts() {
    refuses(
        RawTar::new()
            .file("a.txt", b"1")
            .file("a.txt", b"2")
            .finish(),
        "'a.txt': it appears more than once in the archive",
    );
    refuses(
        RawTar::new().file("a", b"1").file("a/b", b"2").finish(),
        "'a' is a file in the archive, so it cannot hold other entries",
    );
    refuses(
        RawTar::new().symlink("l", ".").file("l", b"x").finish(),
        "appears more than once",
    );
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .dir("d")
        .dir("d/")
        .dir("./d")
        .file("d/x", b"x")
        .finish();
    sb.extract("dirs.tar", &tar, Tar, &limits()).unwrap();
}

#[test]
fn refuses_truncated_and_foreign_files() {
    let tar = RawTar::new()
        .file("a", &[b'a'; 5000])
        .file("b", b"b")
        .finish();
    let sb = Sandbox::new();
    for cut in [600, 3000, 5700] {
        let err = sb
            .extract("cut.tar", &tar[..cut], Tar, &limits())
            .unwrap_err();
        assert!(
            matches!(err, ExtractError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
    }
    let gz = gzip(&tar);
    for cut in [10, gz.len() / 2, gz.len() - 4] {
        let err = sb
            .extract("cut.tar.gz", &gz[..cut], TarGz, &limits())
            .unwrap_err();
        assert!(
            matches!(err, ExtractError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
        assert!(
            err.to_string().contains("is not a valid tar.gz archive"),
            "{err}"
        );
    }
    let err = sb
        .extract("text.tar", &[b'x'; 2000], Tar, &limits())
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "is named as a tar package but its content is not an archive Ferry recognises"
        ),
        "{err}"
    );
    let err = sb
        .extract("plain.tar.gz", &tar, TarGz, &limits())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is named as a tar.gz package but its content is a tar archive"),
        "{err}"
    );
    let err = sb
        .extract("gz-of-text.tar.gz", &gzip(&[b'x'; 2000]), TarGz, &limits())
        .unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");
}

#[test]
fn extracts_a_normal_tar() {
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .dir("./app/")
        .file("./app/main.js", b"main")
        .file_mode("./app/run.sh", 0o755, b"#!/bin/sh")
        .symlink("./app/current", "main.js")
        .dir("./app/empty")
        .pax(&[("comment", "hello")])
        .file("app/conf/x.json", b"{}")
        .finish();
    let mut global = RawTar::new();
    global.push(b"pax_global_header", b'g', "", 0o644, 0, &[]);
    let mut bytes = global.bytes;
    bytes.extend_from_slice(&tar);
    let s = sb
        .extract("app.1.0.0.tar.gz", &gzip(&bytes), TarGz, &limits())
        .unwrap();
    assert_eq!((s.files, s.symlinks, s.skipped), (3, 1, 1));
    assert_eq!(fs::read(sb.dest().join("app/current")).unwrap(), b"main");
    assert!(sb.dest().join("app/empty").is_dir());
    assert_eq!(fs::read(sb.dest().join("app/conf/x.json")).unwrap(), b"{}");
}
