//! Generated archives: random entry names (`..`, `/`, `\`, drive letters, unicode), kinds and
//! link targets never write outside the target; random and mutated bytes never panic.

use ferry_packages::archive::Limits;
use ferry_packages::filename::PackageFormat;
use proptest::prelude::*;

use crate::support::{
    DIRECTORY, HARD_LINK, REGULAR, RawEntry, RawTar, SYMLINK, Sandbox, gzip, raw_zip,
};

/// Mostly ordinary names, so that many archives extract and links get followed by entries;
/// otherwise names with `..`, `.`, empty components, drive letters, backslashes and absolute
/// paths.
fn name() -> impl Strategy<Value = String> {
    let ordinary = prop_oneof![
        4 => "[ab]{1,2}",
        1 => Just("A".to_string()),
        1 => Just("\u{e9}".to_string()),
        1 => Just("e\u{301}".to_string()),
        1 => Just("\u{65e5}\u{672c}".to_string()),
    ];
    let wild = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("C:".to_string()),
        "[a\\\\]{1,3}",
    ];
    let component = prop_oneof![6 => ordinary, 1 => wild];
    let separator = prop_oneof![4 => Just("/"), 1 => Just("\\")];
    (
        prop::bool::weighted(0.05),
        prop::collection::vec((component, separator), 1..4),
    )
        .prop_map(|(absolute, parts)| {
            let mut s = if absolute {
                "/".to_string()
            } else {
                String::new()
            };
            for (c, sep) in parts {
                s.push_str(&c);
                s.push_str(sep);
            }
            s.pop();
            s
        })
}

#[derive(Clone, Debug)]
enum Kind {
    File,
    Dir,
    Symlink(String),
    HardLink(String),
}

fn entry() -> impl Strategy<Value = (String, Kind)> {
    // `@OUTSIDE` becomes the sandbox's `outside/` directory, absolute.
    let target = prop_oneof![
        4 => name(),
        1 => Just("@OUTSIDE".to_string()),
        1 => Just("../../outside".to_string()),
        1 => Just("..".to_string()),
        1 => Just("a/..".to_string()),
    ];
    (
        name(),
        prop_oneof![
            3 => Just(Kind::File),
            1 => Just(Kind::Dir),
            2 => target.clone().prop_map(Kind::Symlink),
            1 => target.prop_map(Kind::HardLink),
        ],
    )
}

/// Random entries, where some links are followed by an entry written through them.
fn entries() -> impl Strategy<Value = Vec<(String, Kind)>> {
    (
        prop::collection::vec(entry(), 1..6),
        prop::collection::vec((any::<prop::sample::Index>(), prop::bool::ANY), 0..3),
    )
        .prop_map(|(mut entries, through)| {
            let links: Vec<String> = entries
                .iter()
                .filter(|(_, k)| matches!(k, Kind::Symlink(_)))
                .map(|(n, _)| n.clone())
                .collect();
            if !links.is_empty() {
                for (pick, as_dir) in through {
                    let link = pick.get(&links);
                    let kind = if as_dir { Kind::Dir } else { Kind::File };
                    entries.push((format!("{link}/child"), kind));
                }
            }
            entries
        })
}

fn build_tar(entries: &[(String, Kind)], outside: &str) -> Vec<u8> {
    let mut tar = RawTar::new();
    for (name, kind) in entries {
        let n = name.as_bytes();
        match kind {
            Kind::File => tar.push(n, REGULAR, "", 0o644, 4, b"data"),
            Kind::Dir => tar.push(n, DIRECTORY, "", 0o755, 0, &[]),
            Kind::Symlink(t) => {
                tar.push(n, SYMLINK, &t.replace("@OUTSIDE", outside), 0o777, 0, &[])
            }
            Kind::HardLink(t) => {
                tar.push(n, HARD_LINK, &t.replace("@OUTSIDE", outside), 0o644, 0, &[])
            }
        }
    }
    tar.finish()
}

fn build_zip(entries: &[(String, Kind)], outside: &str) -> Vec<u8> {
    let raw: Vec<RawEntry> = entries
        .iter()
        .map(|(name, kind)| match kind {
            Kind::File | Kind::HardLink(_) => RawEntry::file(name, b"data"),
            Kind::Dir => RawEntry::dir(&format!("{name}/")),
            Kind::Symlink(t) => RawEntry::symlink(name, &t.replace("@OUTSIDE", outside)),
        })
        .collect();
    raw_zip(&raw)
}

fn small_limits() -> Limits {
    Limits {
        max_total_bytes: 1 << 20,
        max_entries: 1000,
        max_ratio: 200,
        max_depth: 16,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_entries_never_escape(entries in entries()) {
        // Sandbox::extract asserts that nothing outside the target changed and that whatever
        // was written stays inside it.
        let sb = Sandbox::new();
        let outside = sb.outside().display().to_string();
        let tar = build_tar(&entries, &outside);
        let zip = build_zip(&entries, &outside);
        let _ = sb.extract("p.tar", &tar, PackageFormat::Tar, &small_limits());
        sb.reset();
        let _ = sb.extract("p.tar.gz", &gzip(&tar), PackageFormat::TarGz, &small_limits());
        sb.reset();
        let _ = sb.extract("p.zip", &zip, PackageFormat::Zip, &small_limits());
        sb.reset();
        let _ = sb.extract("p.nupkg", &zip, PackageFormat::Nupkg, &small_limits());
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000), prefix in 0usize..4) {
        // Start with each format's magic so that the parsers, not only the sniffer, see them.
        let heads: [&[u8]; 4] = [b"", b"PK\x03\x04", &[0x1f, 0x8b, 8, 0], b""];
        let mut data = heads[prefix].to_vec();
        data.extend_from_slice(&bytes);
        if prefix == 3 {
            let mut tar = RawTar::new().file("a", b"x").bytes;
            tar.extend_from_slice(&data);
            data = tar;
        }
        let sb = Sandbox::new();
        for format in [PackageFormat::Zip, PackageFormat::Nupkg, PackageFormat::Tar, PackageFormat::TarGz] {
            let _ = sb.extract("r.bin", &data, format, &small_limits());
            sb.reset();
        }
    }

    #[test]
    fn mutated_archives_never_panic_or_escape(
        entries in prop::collection::vec(entry(), 1..5),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let sb = Sandbox::new();
        let outside = sb.outside().display().to_string();
        let tar = build_tar(&entries, &outside);
        for (format, mut data) in [
            (PackageFormat::Zip, build_zip(&entries, &outside)),
            (PackageFormat::Tar, tar.clone()),
            (PackageFormat::TarGz, gzip(&tar)),
        ] {
            for (at, byte) in &flips {
                let i = at.index(data.len());
                data[i] = *byte;
            }
            if let Some(cut) = &cut {
                data.truncate(cut.index(data.len() + 1));
            }
            let _ = sb.extract("m.bin", &data, format, &small_limits());
            sb.reset();
        }
    }
}
