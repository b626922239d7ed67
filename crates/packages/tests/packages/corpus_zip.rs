//! Hand-made evil zip and nupkg archives: each is refused (or neutralised, as the module
//! documentation of `archive` says) and nothing outside the target changes.

use std::fs;

use ferry_packages::archive::{ExtractError, Limits};
use ferry_packages::filename::PackageFormat::{self, Nupkg, Zip};

use crate::support::{RawEntry, Sandbox, limits, raw_zip};

fn refused(sb: &Sandbox, entries: &[RawEntry], format: PackageFormat) -> String {
    let result = sb.extract("evil.zip", &raw_zip(entries), format, &limits());
    match result {
        Err(e) => e.to_string(),
        Ok(s) => panic!("the archive was extracted: {s:?}"),
    }
}

fn refuses_zip(entries: &[RawEntry], expected: &str) {
    let sb = Sandbox::new();
    let message = refused(&sb, entries, Zip);
    assert!(
        message.contains(expected),
        "{message:?} should contain {expected:?}"
    );
}

#[test]
fn refuses_names_that_escape() {
    let sb = Sandbox::new();
    let abs = format!("{}/evil", sb.outside().display());
    let cases: Vec<(String, &str)> = vec![
        ("../evil".into(), "contains '..'"),
        ("../../outside/evil".into(), "contains '..'"),
        ("ok/../../evil".into(), "contains '..'"),
        (abs, "is an absolute path"),
        ("/etc/ferry-evil".into(), "is an absolute path"),
        ("C:\\x".into(), "Windows drive letter"),
        ("C:x".into(), "Windows drive letter"),
        ("a\\..\\..\\x".into(), "contains '..'"),
        ("\\\\server\\share\\x".into(), "is an absolute path"),
        ("a\0b".into(), "NUL"),
    ];
    for (name, expected) in cases {
        let entries = [
            RawEntry::file("fine.txt", b"fine"),
            RawEntry::file(&name, b"evil"),
        ];
        let message = refused(&sb, &entries, Zip);
        assert!(message.contains(expected), "{name:?}: {message}");
        assert!(
            message.starts_with("the archive was refused because of its entry '"),
            "{message}"
        );
    }
}

#[test]
fn refuses_links_that_escape_and_writes_through_links() {
    let sb = Sandbox::new();
    let outside = sb.outside().display().to_string();
    let cases: Vec<(Vec<RawEntry>, &str)> = vec![
        // Symlink to a directory outside, then a file through it.
        (
            vec![
                RawEntry::symlink("link", &outside),
                RawEntry::file("link/evil", b"x"),
            ],
            "is a link to the absolute path",
        ),
        (
            vec![
                RawEntry::symlink("tmp", "/tmp"),
                RawEntry::file("tmp/ferry-evil-zip", b"x"),
            ],
            "is a link to the absolute path",
        ),
        (
            vec![
                RawEntry::symlink("up", ".."),
                RawEntry::file("up/evil", b"x"),
            ],
            "outside the target directory",
        ),
        (
            vec![RawEntry::symlink("a/up", "../../outside")],
            "outside the target directory",
        ),
        // A link that stays inside, then a file written through it.
        (
            vec![
                RawEntry::dir("real/"),
                RawEntry::symlink("alias", "real"),
                RawEntry::file("alias/x", b"x"),
            ],
            "written through the symbolic link 'alias'",
        ),
        // A directory entry through a link (RUSTSEC-2026-0067 class).
        (
            vec![
                RawEntry::dir("real/"),
                RawEntry::symlink("alias", "real"),
                RawEntry::dir("alias/sub/"),
            ],
            "written through the symbolic link 'alias'",
        ),
        // A chain: a/b/c/up points to a, so a/esc really points three levels up.
        (
            vec![
                RawEntry::dir("a/b/c/"),
                RawEntry::symlink("a/b/c/up", "../.."),
                RawEntry::symlink("a/esc", "b/c/up/../../.."),
            ],
            "passes through the symbolic link 'a/b/c/up'",
        ),
        (vec![RawEntry::symlink("l", "C:\\Windows")], "absolute path"),
    ];
    for (entries, expected) in cases {
        let message = refused(&sb, &entries, Zip);
        assert!(message.contains(expected), "{message}");
    }
    assert!(fs::symlink_metadata("/tmp/ferry-evil-zip").is_err());
}

#[test]
fn refuses_special_files() {
    for (mode, expected) in [
        (0o010644, "it is a FIFO"),
        (0o020644, "it is a character device"),
        (0o060644, "it is a block device"),
        (0o140644, "it is a socket"),
    ] {
        refuses_zip(&[RawEntry::with_mode("special", mode, b"")], expected);
    }
}

#[test]
fn neutralises_setuid_and_world_writable_modes() {
    let sb = Sandbox::new();
    let entries = [
        RawEntry::with_mode("suid", 0o104755, b"#!/bin/sh\n"),
        RawEntry::with_mode("sgid", 0o102755, b"x"),
        RawEntry::with_mode("open", 0o100666, b"x"),
        RawEntry::with_mode("readonly", 0o100444, b"x"),
        RawEntry::with_mode("dos", 0, b"x"),
    ];
    sb.extract("modes.zip", &raw_zip(&entries), Zip, &limits())
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |n: &str| {
        fs::metadata(sb.dest().join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("suid"), 0o755);
    assert_eq!(mode("sgid"), 0o755);
    assert_eq!(mode("open"), 0o644);
    assert_eq!(mode("readonly"), 0o644);
}

#[test]
fn refuses_zip_bombs_before_writing() {
    // 8 MiB of zeros deflate to a few kilobytes: far beyond 200:1.
    let zeros = vec![0u8; 8 << 20];
    let entry = RawEntry::deflated("zeros.bin", &zeros);
    assert!(entry.stored.len() < 64 << 10);
    refuses_zip(std::slice::from_ref(&entry), "expand more than 200:1");

    // A lower total limit is checked against the central directory's sizes.
    let sb = Sandbox::new();
    let small = Limits {
        max_total_bytes: 1000,
        ..Limits::default()
    };
    let entries = [
        RawEntry::file("a", &[1; 600]),
        RawEntry::file("b", &[2; 600]),
    ];
    let err = sb
        .extract("big.zip", &raw_zip(&entries), Zip, &small)
        .unwrap_err();
    assert!(matches!(err, ExtractError::LimitExceeded(_)), "{err}");
    assert!(err.to_string().contains("more than 1000 bytes"), "{err}");
}

#[test]
fn refuses_too_many_entries() {
    let sb = Sandbox::new();
    let entries: Vec<RawEntry> = (0..6)
        .map(|i| RawEntry::file(&format!("f{i}"), b"x"))
        .collect();
    let few = Limits {
        max_entries: 5,
        ..Limits::default()
    };
    let err = sb
        .extract("many.zip", &raw_zip(&entries), Zip, &few)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the archive was refused because it has more than 5 entries; raise the extraction limits if it is genuine"
    );
    sb.extract("many.zip", &raw_zip(&entries[..5]), Zip, &few)
        .unwrap();
}

#[test]
fn refuses_deep_nesting() {
    let sb = Sandbox::new();
    let shallow = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let err = sb
        .extract(
            "deep.zip",
            &raw_zip(&[RawEntry::file("a/b/c/d", b"x")]),
            Zip,
            &shallow,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("nested deeper than 3 levels"),
        "{err}"
    );
}

#[test]
fn refuses_lying_sizes() {
    // The central directory says 10 bytes; the data inflates to 100 KiB.
    let mut liar = RawEntry::deflated("liar.bin", &vec![7u8; 100 << 10]);
    liar.size = 10;
    let sb = Sandbox::new();
    let err = sb
        .extract("liar.zip", &raw_zip(&[liar]), Zip, &limits())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("more data than the 10 bytes its header declares"),
        "{err}"
    );

    // Says more than it holds.
    let mut short = RawEntry::deflated("short.bin", b"only a little");
    short.size = 1000;
    let err = sb
        .extract("short.zip", &raw_zip(&[short]), Zip, &limits())
        .unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");

    // A bad checksum.
    let mut bad = RawEntry::file("bad.txt", b"hello");
    bad.crc ^= 1;
    let err = sb
        .extract("crc.zip", &raw_zip(&[bad]), Zip, &limits())
        .unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");
}

#[test]
fn refuses_truncated_and_foreign_files() {
    let sb = Sandbox::new();
    let good = raw_zip(&[
        RawEntry::file("a.txt", &[b'a'; 4000]),
        RawEntry::file("b.txt", b"b"),
    ]);
    for cut in [good.len() / 2, good.len() - 10, 30] {
        let err = sb
            .extract("cut.zip", &good[..cut], Zip, &limits())
            .unwrap_err();
        assert!(
            matches!(err, ExtractError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
        assert!(
            err.to_string().contains("is not a valid zip archive"),
            "{err}"
        );
    }
    let err = sb
        .extract("text.zip", b"just some text", Zip, &limits())
        .unwrap_err();
    assert!(
        err.to_string().ends_with(
            "text.zip' is named as a zip package but its content is not an archive Ferry recognises"
        ),
        "{err}"
    );
    let err = sb
        .extract("gz.zip", &crate::support::gzip(b"x"), Zip, &limits())
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("gz.zip' is named as a zip package but its content is a gzip file"),
        "{err}"
    );
    let err = sb.extract("empty.zip", b"", Zip, &limits()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("but its content is an empty file"),
        "{err}"
    );
}

#[test]
fn refuses_duplicates_and_conflicts() {
    refuses_zip(
        &[
            RawEntry::file("a.txt", b"first"),
            RawEntry::file("a.txt", b"second"),
        ],
        "'a.txt': it appears more than once in the archive",
    );
    refuses_zip(
        &[RawEntry::file("a", b"file"), RawEntry::file("a/b", b"x")],
        "'a' is a file in the archive, so it cannot hold other entries",
    );
    refuses_zip(
        &[RawEntry::dir("a/"), RawEntry::file("a", b"x")],
        "appears more than once",
    );
    refuses_zip(
        &[
            RawEntry::file("x/a.txt", b"1"),
            RawEntry::file("x\\a.txt", b"2"),
        ],
        "appears more than once",
    );
    // Repeated directories are fine.
    let sb = Sandbox::new();
    let s = sb
        .extract(
            "dirs.zip",
            &raw_zip(&[
                RawEntry::dir("d/"),
                RawEntry::file("d/x", b"x"),
                RawEntry::dir("d/"),
            ]),
            Zip,
            &limits(),
        )
        .unwrap();
    assert_eq!((s.files, s.directories), (1, 1));
}

#[test]
fn names_colliding_by_case_or_normalisation_are_never_merged() {
    // On a case-sensitive file system both are written; where they are the same file the
    // archive is refused. Either way nothing is overwritten.
    let sb = Sandbox::new();
    let entries = [
        RawEntry::file("README", b"upper"),
        RawEntry::file("readme", b"lower"),
        RawEntry::file("caf\u{e9}", b"nfc"),
        RawEntry::file("cafe\u{301}", b"nfd"),
    ];
    match sb.extract("case.zip", &raw_zip(&entries), Zip, &limits()) {
        Ok(_) => {
            assert_eq!(fs::read(sb.dest().join("README")).unwrap(), b"upper");
            assert_eq!(fs::read(sb.dest().join("readme")).unwrap(), b"lower");
            assert_eq!(fs::read(sb.dest().join("caf\u{e9}")).unwrap(), b"nfc");
        }
        Err(e) => assert!(
            e.to_string().contains("collides with an earlier entry"),
            "{e}"
        ),
    }
}

#[test]
fn extracts_a_normal_zip() {
    let sb = Sandbox::new();
    let entries = [
        RawEntry::dir("app/"),
        RawEntry::deflated("app/main.js", b"console.log(1)"),
        RawEntry::file("./app/./conf//settings.json", b"{}"),
        RawEntry::file("win\\style\\path.txt", b"backslashes"),
        RawEntry::with_mode("run.sh", 0o100755, b"#!/bin/sh"),
        RawEntry::symlink("app/current", "main.js"),
        RawEntry::symlink("app/conf/up", "../.."),
        RawEntry::dir("./"),
        RawEntry::file("\u{65e5}\u{672c}/\u{e9}.txt", b"unicode"),
    ];
    let s = sb
        .extract("good.zip", &raw_zip(&entries), Zip, &limits())
        .unwrap();
    assert_eq!((s.files, s.symlinks, s.skipped), (5, 2, 0));
    let d = sb.dest();
    assert_eq!(fs::read(d.join("app/conf/settings.json")).unwrap(), b"{}");
    assert_eq!(
        fs::read(d.join("win/style/path.txt")).unwrap(),
        b"backslashes"
    );
    assert_eq!(fs::read(d.join("app/current")).unwrap(), b"console.log(1)");
    assert_eq!(
        fs::read_link(d.join("app/conf/up")).unwrap().to_str(),
        Some("../..")
    );
    assert_eq!(
        fs::read(d.join("\u{65e5}\u{672c}/\u{e9}.txt")).unwrap(),
        b"unicode"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(d.join("run.sh")).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // An empty zip gives an empty directory.
    sb.reset();
    let s = sb
        .extract("empty.zip", &raw_zip(&[]), Zip, &limits())
        .unwrap();
    assert_eq!(s, Default::default());
    assert_eq!(fs::read_dir(sb.dest()).unwrap().count(), 0);
}

#[test]
fn nupkg_leaves_out_nuget_metadata() {
    let sb = Sandbox::new();
    let entries = [
        RawEntry::file("_rels/.rels", b"<rels/>"),
        RawEntry::file("[Content_Types].xml", b"<types/>"),
        RawEntry::file(
            "package/services/metadata/core-properties/1.psmdcp",
            b"<p/>",
        ),
        RawEntry::file("MyApp.nuspec", b"<package/>"),
        RawEntry::file("content/My%20File.txt", b"spaced"),
        RawEntry::file("lib/MyApp.dll", b"MZ"),
    ];
    let s = sb
        .extract("MyApp.1.0.0.nupkg", &raw_zip(&entries), Nupkg, &limits())
        .unwrap();
    assert_eq!((s.files, s.skipped), (2, 4));
    assert_eq!(
        fs::read(sb.dest().join("content/My File.txt")).unwrap(),
        b"spaced"
    );
    assert!(!sb.dest().join("_rels").exists());
    assert!(!sb.dest().join("package").exists());
    assert!(!sb.dest().join("MyApp.nuspec").exists());

    // Escapes are decoded before the name is checked.
    let sb = Sandbox::new();
    let message = refused(&sb, &[RawEntry::file("%2e%2e/%2e%2e/evil", b"x")], Nupkg);
    assert!(
        message.contains("'../../evil': the name contains '..'"),
        "{message}"
    );
}

#[test]
fn refuses_a_destination_that_is_in_use() {
    let sb = Sandbox::new();
    fs::create_dir(sb.dest()).unwrap();
    fs::write(sb.dest().join("keep.txt"), "keep").unwrap();
    let archive = sb.write_archive("a.zip", &raw_zip(&[RawEntry::file("keep.txt", b"new")]));
    let err = ferry_packages::archive::extract(&archive, Zip, &sb.dest(), &limits()).unwrap_err();
    assert!(
        err.to_string().contains("already exists and is not empty"),
        "{err}"
    );
    assert_eq!(fs::read(sb.dest().join("keep.txt")).unwrap(), b"keep");

    // An empty directory is replaced.
    fs::remove_file(sb.dest().join("keep.txt")).unwrap();
    ferry_packages::archive::extract(&archive, Zip, &sb.dest(), &limits()).unwrap();
    assert_eq!(fs::read(sb.dest().join("keep.txt")).unwrap(), b"new");
    let leftovers: Vec<_> = fs::read_dir(sb.root().join("work"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}
