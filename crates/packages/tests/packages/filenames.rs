//! Properties of package file names: what `file_name` writes, `parse` reads back.

use ferry_domain::version::Version;
use ferry_packages::filename::{self, FileNameError, PackageFormat};
use proptest::prelude::*;

fn id() -> impl Strategy<Value = String> {
    (
        "[A-Za-z_][A-Za-z0-9_]{0,5}",
        prop::collection::vec(("[.-]", "[A-Za-z0-9_]{1,4}"), 0..4),
    )
        .prop_map(|(first, rest)| {
            let mut s = first;
            for (sep, seg) in rest {
                s.push_str(&sep);
                s.push_str(&seg);
            }
            s
        })
}

fn version() -> impl Strategy<Value = Version> {
    (
        prop::collection::vec(0u64..1000, 1..=4),
        prop::option::of("[0-9A-Za-z-]{1,5}(\\.[0-9A-Za-z-]{1,5}){0,2}"),
        prop::option::of("[0-9A-Za-z-]{1,5}"),
    )
        .prop_map(|(parts, pre, meta)| Version {
            parts,
            pre_release: pre.unwrap_or_default(),
            metadata: meta.unwrap_or_default(),
        })
}

fn format() -> impl Strategy<Value = PackageFormat> {
    prop_oneof![
        Just(PackageFormat::Zip),
        Just(PackageFormat::Nupkg),
        Just(PackageFormat::Tar),
        Just(PackageFormat::TarGz),
    ]
}

/// True when the id holds a `.` followed by a digit, where the version could start.
fn could_be_misread(id: &str) -> bool {
    id.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'.' && w[1].is_ascii_digit())
}

proptest! {
    #[test]
    fn written_names_read_back(id in id(), version in version(), format in format()) {
        match filename::file_name(&id, &version, format) {
            Ok(name) => {
                let parsed = filename::parse(&name).unwrap();
                prop_assert_eq!(&parsed.id, &id);
                prop_assert_eq!(parsed.version_text, version.to_string());
                prop_assert!(parsed.version == version);
                prop_assert_eq!(parsed.format, format);
                prop_assert_eq!(parsed.extension, format.extension());
            }
            Err(FileNameError::Ambiguous { .. }) => prop_assert!(could_be_misread(&id), "{id}"),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn parse_never_panics_and_reads_valid_parts(name in "\\PC{0,30}", tail in "[A-Za-z0-9._+-]{0,20}\\.(zip|ZIP|tar\\.gz|tgz|nupkg|jar|tar)") {
        for text in [name, tail] {
            if let Ok(p) = filename::parse(&text) {
                prop_assert!(filename::is_valid_id(&p.id));
                prop_assert!(Version::parse(&p.version_text).is_some());
                let rebuilt = format!("{}.{}{}", p.id, p.version_text, p.extension);
                prop_assert_eq!(rebuilt.to_ascii_lowercase(), text.to_ascii_lowercase());
            }
        }
    }
}
