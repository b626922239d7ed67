//! Package file names, `PackageId.Version.ext`, read and written the way Octopus and its
//! clients do (the Go CLI's `ParsePackageIDAndVersion`, ported from Octopus Server).
//!
//! The split between id and version is ambiguous (`Acme.Web.2.1.0.zip`): the version starts at
//! the first `.` followed by a digit such that the rest is a valid version, so the id is as
//! short as it can be. An id that itself holds `.` and digits can therefore read back
//! differently; [`file_name`] refuses such combinations instead of writing a name that lies.

use std::fmt;

use ferry_domain::version::Version;

/// How a package is stored; the file extension selects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PackageFormat {
    /// `.zip`, and `.jar` (a zip with a Java manifest).
    Zip,
    /// `.nupkg`: a zip holding NuGet's packaging metadata besides the files.
    Nupkg,
    /// `.tar`, uncompressed.
    Tar,
    /// `.tar.gz` or `.tgz`.
    TarGz,
}

/// Extensions Ferry reads, longest first so that `.tar.gz` wins over `.gz`-less `.tar`.
const EXTENSIONS: &[(&str, PackageFormat)] = &[
    (".tar.gz", PackageFormat::TarGz),
    (".nupkg", PackageFormat::Nupkg),
    (".tgz", PackageFormat::TarGz),
    (".zip", PackageFormat::Zip),
    (".jar", PackageFormat::Zip),
    (".tar", PackageFormat::Tar),
];

/// Extensions that Octopus knows but Ferry does not read, named in the error message.
const UNSUPPORTED: &[&str] = &[
    ".tar.bz2", ".tar.bz", ".tbz", ".tbz2", ".tar.z", ".tar.xz", ".war", ".ear", ".rar", ".7z",
    ".gz",
];

const ACCEPTED: &str = ".zip, .nupkg, .jar, .tar, .tar.gz or .tgz";

impl PackageFormat {
    /// The extension Ferry writes for this format, with its dot.
    pub fn extension(self) -> &'static str {
        match self {
            PackageFormat::Zip => ".zip",
            PackageFormat::Nupkg => ".nupkg",
            PackageFormat::Tar => ".tar",
            PackageFormat::TarGz => ".tar.gz",
        }
    }

    /// The format an extension selects (`.zip`, `zip`, `.TAR.GZ`, …), if Ferry reads it.
    pub fn from_extension(ext: &str) -> Option<PackageFormat> {
        let ext = ext.to_ascii_lowercase();
        let dotted = if ext.starts_with('.') {
            ext
        } else {
            format!(".{ext}")
        };
        EXTENSIONS
            .iter()
            .find(|(e, _)| *e == dotted)
            .map(|(_, f)| *f)
    }

    /// True for the formats stored as a zip file (zip, jar, nupkg).
    pub fn is_zip(self) -> bool {
        matches!(self, PackageFormat::Zip | PackageFormat::Nupkg)
    }
}

impl fmt::Display for PackageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PackageFormat::Zip => "zip",
            PackageFormat::Nupkg => "nupkg",
            PackageFormat::Tar => "tar",
            PackageFormat::TarGz => "tar.gz",
        })
    }
}

/// What a package file name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFileName {
    pub id: String,
    pub version: Version,
    /// The version exactly as written in the file name (`1.02.0`, where `version` prints `1.2.0`).
    pub version_text: String,
    pub format: PackageFormat,
    /// The extension as written, lowercased, with its dot (`.jar`, `.tgz`).
    pub extension: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error(
        "'{0}' is not a package file name: expected PackageId.Version.ext, e.g. MyApp.1.2.3.zip"
    )]
    NotAPackageFileName(String),
    #[error("'{name}' has the unsupported extension '{extension}': expected {ACCEPTED}")]
    UnsupportedExtension { name: String, extension: String },
    #[error(
        "'{0}' is not a valid package id: use letters, digits and '_', with single '.', '-' or '_' between them (e.g. Acme.Web-Api)"
    )]
    InvalidPackageId(String),
    #[error(
        "package id '{id}' with version '{version}' would be read back from its file name as id '{read_id}' and version '{read_version}'; avoid a '.' followed by digits in the id"
    )]
    Ambiguous {
        id: String,
        version: String,
        read_id: String,
        read_version: String,
    },
}

/// Reads `PackageId.Version.ext`. Extensions match case-insensitively; the name must not hold a
/// directory (pass only the last path component).
pub fn parse(name: &str) -> Result<PackageFileName, FileNameError> {
    let not_a_name = || FileNameError::NotAPackageFileName(name.to_string());
    let lower = name.to_ascii_lowercase();
    let Some((extension, format)) = EXTENSIONS
        .iter()
        .find(|(e, _)| lower.ends_with(e) && lower.len() > e.len())
        .map(|(e, f)| (*e, *f))
    else {
        if let Some(ext) = UNSUPPORTED.iter().find(|e| lower.ends_with(*e)) {
            return Err(FileNameError::UnsupportedExtension {
                name: name.to_string(),
                extension: (*ext).to_string(),
            });
        }
        return Err(not_a_name());
    };
    // The extension is ASCII, so this byte index is a char boundary.
    let stem = &name[..name.len() - extension.len()];
    let (id, version_text, version) = split_stem(stem).ok_or_else(not_a_name)?;
    Ok(PackageFileName {
        id: id.to_string(),
        version,
        version_text: version_text.to_string(),
        format,
        extension: extension.to_string(),
    })
}

/// The file name for a package: `file_name("Acme.Web", 1.2.3, Zip)` is `Acme.Web.1.2.3.zip`.
/// Refuses an invalid id, and an id and version that would read back differently.
pub fn file_name(
    id: &str,
    version: &Version,
    format: PackageFormat,
) -> Result<String, FileNameError> {
    if !is_valid_id(id) {
        return Err(FileNameError::InvalidPackageId(id.to_string()));
    }
    let version_text = version.to_string();
    let name = format!("{id}.{version_text}{}", format.extension());
    match split_stem(&name[..name.len() - format.extension().len()]) {
        Some((read_id, read_version, _)) if read_id == id && read_version == version_text => {
            Ok(name)
        }
        Some((read_id, read_version, _)) => Err(FileNameError::Ambiguous {
            id: id.to_string(),
            version: version_text,
            read_id: read_id.to_string(),
            read_version: read_version.to_string(),
        }),
        // Only a version that does not print as a valid one (built by hand) gets here.
        None => Err(FileNameError::NotAPackageFileName(name)),
    }
}

/// True for ids of ASCII letters, digits and `_`, with single `.` or `-` between them: the Go
/// client's `\w+([_.-]\w+)*`.
pub fn is_valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    let sep = |c: u8| c == b'.' || c == b'-';
    !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || sep(c))
        && !sep(b[0])
        && !sep(b[b.len() - 1])
        && !b.windows(2).any(|w| sep(w[0]) && sep(w[1]))
}

/// Splits `Id.Version` at the first `.` followed by a digit where the id is valid and the rest
/// is a version.
fn split_stem(stem: &str) -> Option<(&str, &str, Version)> {
    let bytes = stem.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        if c != b'.' || !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            continue;
        }
        let (id, version_text) = (&stem[..i], &stem[i + 1..]);
        if !is_valid_id(id) {
            continue;
        }
        if let Some(version) = parse_strict_version(version_text) {
            return Some((id, version_text, version));
        }
    }
    None
}

/// A version as a file name may hold it: no whitespace or other characters that
/// [`Version::parse`] would trim or that the Go client's pattern does not allow.
fn parse_strict_version(text: &str) -> Option<Version> {
    if !text
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+'))
    {
        return None;
    }
    Version::parse(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ok(name: &str) -> (String, String, PackageFormat, String) {
        match parse(name) {
            Ok(p) => (p.id, p.version_text, p.format, p.extension),
            Err(e) => (
                format!("ERR {e}"),
                String::new(),
                PackageFormat::Zip,
                String::new(),
            ),
        }
    }

    #[test]
    fn parses_like_octopus() {
        use PackageFormat::*;
        let cases = [
            ("MyApp.1.2.3.zip", "MyApp", "1.2.3", Zip, ".zip"),
            ("hello.1.0.0.zip", "hello", "1.0.0", Zip, ".zip"),
            ("Acme.Web.2.1.0.nupkg", "Acme.Web", "2.1.0", Nupkg, ".nupkg"),
            (
                "Acme.Web.2024.10.1.12.zip",
                "Acme.Web",
                "2024.10.1.12",
                Zip,
                ".zip",
            ),
            ("app.v2.1.0.0.tar.gz", "app.v2", "1.0.0", TarGz, ".tar.gz"),
            (
                "My.App.1.0.0-beta.1+build.5.tgz",
                "My.App",
                "1.0.0-beta.1+build.5",
                TarGz,
                ".tgz",
            ),
            ("my-app_x.3.tar", "my-app_x", "3", Tar, ".tar"),
            ("lib.1.2.3.4.5.jar", "lib.1", "2.3.4.5", Zip, ".jar"),
            ("Web.1.0.0-rc-1.ZIP", "Web", "1.0.0-rc-1", Zip, ".zip"),
            ("a.1.2.TAR.GZ", "a", "1.2", TarGz, ".tar.gz"),
            ("_x__y.01.0.zip", "_x__y", "01.0", Zip, ".zip"),
            // A hyphen is not a version separator: the id keeps the first number.
            ("MyApp-1.2.3.zip", "MyApp-1", "2.3", Zip, ".zip"),
        ];
        for (name, id, version, format, ext) in cases {
            assert_eq!(
                ok(name),
                (id.to_string(), version.to_string(), format, ext.to_string()),
                "{name}"
            );
        }
    }

    #[test]
    fn refuses_with_a_clear_message() {
        for name in [
            "MyApp.zip",
            ".1.2.3.zip",
            "-a.1.0.zip",
            "a..b.1.0.zip",
            "a.1.0 .zip",
            "a.1.0.zip.txt",
            "dir/a.1.0.zip",
            "..\\a.1.0.zip",
            "Ümlaut.1.0.zip",
            "a.1.0-.zip",
            "a.1.0+.zip",
            ".zip",
        ] {
            assert_eq!(
                parse(name),
                Err(FileNameError::NotAPackageFileName(name.to_string())),
                "{name}"
            );
        }
        assert_eq!(
            parse("x.1.0.zip.txt").map_err(|e| e.to_string()),
            Err("'x.1.0.zip.txt' is not a package file name: expected PackageId.Version.ext, e.g. MyApp.1.2.3.zip".to_string())
        );
        assert_eq!(
            parse("x.1.0.tar.bz2").map_err(|e| e.to_string()),
            Err("'x.1.0.tar.bz2' has the unsupported extension '.tar.bz2': expected .zip, .nupkg, .jar, .tar, .tar.gz or .tgz".to_string())
        );
    }

    #[test]
    fn writes_names_that_read_back() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(
            file_name("Acme.Web", &v("1.2.3"), PackageFormat::TarGz),
            Ok("Acme.Web.1.2.3.tar.gz".to_string())
        );
        assert_eq!(
            file_name("Acme", &v("01.2-RC.1+x"), PackageFormat::Nupkg),
            Ok("Acme.1.2-RC.1+x.nupkg".to_string())
        );
        assert_eq!(
            file_name("../etc", &v("1.0"), PackageFormat::Zip),
            Err(FileNameError::InvalidPackageId("../etc".into()))
        );
        assert_eq!(
            file_name("lib.1", &v("2.3"), PackageFormat::Zip).map_err(|e| e.to_string()),
            Err("package id 'lib.1' with version '2.3' would be read back from its file name as id 'lib' and version '1.2.3'; avoid a '.' followed by digits in the id".to_string())
        );
        assert_eq!(
            PackageFormat::from_extension("TGZ"),
            Some(PackageFormat::TarGz)
        );
        assert_eq!(
            PackageFormat::from_extension(".jar"),
            Some(PackageFormat::Zip)
        );
        assert_eq!(PackageFormat::from_extension(".rar"), None);
    }
}
