//! "Substitute Variables in Templates" (Octopus: Substitute Variables in Files): every file
//! matched by a newline-separated list of globs is rendered through the template engine and
//! rewritten in place, in the encoding it was read in.
//!
//! This module also holds what both file conventions share: target-file globs confined to the
//! package directory, text decoding that remembers the encoding, and in-place rewriting. See
//! `docs/conventions.md`.
//!
//! Pure with respect to deployments: no tasks, no logging. Warnings come back as data.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ferry_template::{Options, TemplateError, VariableSource};

/// Files larger than this are refused by both file conventions.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The text encoding a file was read in, and is written back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// UTF-8 without a byte order mark.
    Utf8,
    /// UTF-8 with a byte order mark (`EF BB BF`).
    Utf8Bom,
    /// UTF-16 little endian, with its byte order mark (`FF FE`).
    Utf16Le,
    /// UTF-16 big endian, with its byte order mark (`FE FF`).
    Utf16Be,
    /// Not valid UTF-8 and no byte order mark: read as Windows-1252, as Calamari does.
    Windows1252,
}

impl fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Utf8Bom => "UTF-8 with BOM",
            TextEncoding::Utf16Le => "UTF-16 LE",
            TextEncoding::Utf16Be => "UTF-16 BE",
            TextEncoding::Windows1252 => "Windows-1252",
        })
    }
}

/// What [`substitute_files`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubstituteReport {
    /// Every file matched, in pattern order (files matched twice are listed once).
    pub files: Vec<SubstitutedFile>,
    /// Things to tell the user that did not stop the convention: patterns that matched
    /// nothing, tokens left unresolved when errors are ignored, re-encoded files.
    pub warnings: Vec<String>,
}

/// One file handled by [`substitute_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubstitutedFile {
    /// Relative to the root, with `/` separators.
    pub path: PathBuf,
    /// The encoding the file was read in (it is written back in the same one, unless a
    /// warning says it had to become UTF-8).
    pub encoding: TextEncoding,
    /// Whether the content changed (unchanged files are not rewritten).
    pub changed: bool,
    /// Tokens left in the file unchanged, as written (only when errors are ignored).
    pub unresolved: Vec<String>,
}

/// Why one file could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFailure {
    /// Relative to the root.
    pub path: PathBuf,
    pub problem: FileProblem,
}

/// What went wrong in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// Tokens that could not be evaluated (undefined variables, unknown filters), as written.
    Unresolved(Vec<String>),
    /// The template engine stopped (a variable refers to itself, limits).
    Template(TemplateError),
}

impl fmt::Display for FileFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            FileProblem::Unresolved(tokens) => write!(
                f,
                "`{}` has unresolved {}: {}",
                self.path.display(),
                if tokens.len() == 1 { "token" } else { "tokens" },
                tokens.join(", ")
            ),
            FileProblem::Template(e) => write!(f, "`{}`: {e}", self.path.display()),
        }
    }
}

/// Why [`substitute_files`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SubstituteError {
    /// A target pattern is malformed or reaches outside the package directory.
    #[error("target file pattern `{pattern}` {reason}")]
    Pattern { pattern: String, reason: String },
    /// A matched path is a symbolic link to somewhere outside the package directory.
    #[error("`{}` links to a file outside the package directory; refusing to change it", path.display())]
    OutsideRoot { path: PathBuf },
    /// Reading, listing or writing failed.
    #[error("could not {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file has a UTF-16 byte order mark but is not valid UTF-16.
    #[error("`{}` is not valid text: {reason}", path.display())]
    Decode { path: PathBuf, reason: String },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("`{}` is {size} bytes; files over {MAX_FILE_BYTES} bytes are not substituted", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    /// Some files had unresolved tokens or could not be rendered (and errors are not
    /// ignored). Those files were left unchanged; the other matched files were substituted.
    #[error(
        "variable substitution failed in {} {}: {}; the {} left unchanged (setting Octopus.Action.Package.IgnoreVariableReplacementErrors to True turns these errors into warnings)",
        failures.len(),
        if failures.len() == 1 { "file" } else { "files" },
        failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        if failures.len() == 1 { "file was" } else { "files were" }
    )]
    Failed { failures: Vec<FileFailure> },
}

/// Renders every file matching `patterns` (newline-separated globs relative to `root`) through
/// the template engine and rewrites it in place, in its original encoding.
///
/// - Globs: `*` and `?` within one path segment, `**` for any number of directories, `{a,b}`,
///   `[abc]`; `\` is read as `/`; matching ignores case, as Calamari's does. A pattern that
///   matches nothing gives a warning; directories are skipped.
/// - `##{x}` gives a literal `#{x}` (the template engine's escape).
/// - Unresolved tokens (undefined variables, unknown filters) and render errors are errors
///   naming each file and token, unless `ignore_errors`, when they are warnings (the tokens
///   stay in the file; a file whose render stopped is left unchanged).
/// - Nothing outside `root` is read or written: `..` and absolute paths outside it are refused,
///   directory links are not followed, and a matched file link must resolve inside `root`.
pub fn substitute_files(
    root: &Path,
    patterns: &str,
    vars: &dyn VariableSource,
    opts: &Options,
    ignore_errors: bool,
) -> Result<SubstituteReport, SubstituteError> {
    let matched = match_files(root, patterns, "substitution")?;
    let mut report = SubstituteReport {
        files: Vec::new(),
        warnings: matched.warnings,
    };
    let mut failures = Vec::new();
    for file in matched.files {
        let (text, encoding) = read_text(&file)?;
        let rendered = match ferry_template::render(&text, vars, opts) {
            Ok(rendered) => rendered,
            Err(e) => {
                if ignore_errors {
                    report
                        .warnings
                        .push(format!("`{}` was left unchanged: {e}", file.rel.display()));
                    report.files.push(SubstitutedFile {
                        path: file.rel,
                        encoding,
                        changed: false,
                        unresolved: Vec::new(),
                    });
                } else {
                    failures.push(FileFailure {
                        path: file.rel,
                        problem: FileProblem::Template(e),
                    });
                }
                continue;
            }
        };
        if !rendered.unresolved.is_empty() {
            if !ignore_errors {
                failures.push(FileFailure {
                    path: file.rel,
                    problem: FileProblem::Unresolved(rendered.unresolved),
                });
                continue;
            }
            report.warnings.push(format!(
                "`{}`: left {} unresolved: {}",
                file.rel.display(),
                if rendered.unresolved.len() == 1 {
                    "a token"
                } else {
                    "tokens"
                },
                rendered.unresolved.join(", ")
            ));
        }
        let changed = rendered.text != text;
        if changed {
            if let Some(warning) = write_text(&file, &rendered.text, encoding)? {
                report.warnings.push(warning);
            }
        }
        report.files.push(SubstitutedFile {
            path: file.rel,
            encoding,
            changed,
            unresolved: rendered.unresolved,
        });
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(SubstituteError::Failed { failures })
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by both conventions: matching target files, reading and writing text.

/// A file matched by a target pattern.
#[derive(Debug, Clone)]
pub(crate) struct MatchedFile {
    /// Relative to the root, for messages and reports.
    pub rel: PathBuf,
    /// The real location to read and write (inside the canonical root).
    pub real: PathBuf,
}

#[derive(Debug, Default)]
pub(crate) struct Matched {
    pub files: Vec<MatchedFile>,
    pub warnings: Vec<String>,
}

/// File-level failures common to both conventions.
#[derive(Debug)]
pub(crate) enum FsError {
    Pattern {
        pattern: String,
        reason: String,
    },
    OutsideRoot {
        path: PathBuf,
    },
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    Decode {
        path: PathBuf,
        reason: String,
    },
    TooLarge {
        path: PathBuf,
        size: u64,
    },
}

impl From<FsError> for SubstituteError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Pattern { pattern, reason } => SubstituteError::Pattern { pattern, reason },
            FsError::OutsideRoot { path } => SubstituteError::OutsideRoot { path },
            FsError::Io {
                action,
                path,
                source,
            } => SubstituteError::Io {
                action,
                path,
                source,
            },
            FsError::Decode { path, reason } => SubstituteError::Decode { path, reason },
            FsError::TooLarge { path, size } => SubstituteError::TooLarge { path, size },
        }
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsError + use<> {
    let path = path.to_path_buf();
    move |source| FsError::Io {
        action,
        path,
        source,
    }
}

/// One entry found under the root while walking (directory links are not followed).
#[derive(Debug)]
struct Entry {
    rel: PathBuf,
    is_link: bool,
}

/// Finds the files matching `patterns` under `root`. `what` names the convention in warnings
/// ("substitution", "replacement").
pub(crate) fn match_files(root: &Path, patterns: &str, what: &str) -> Result<Matched, FsError> {
    let root_real = fs::canonicalize(root).map_err(io_err("open the directory", root))?;
    let mut compiled = Vec::new();
    for raw in patterns.lines() {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let normal = normalise_pattern(raw, root, &root_real)?;
        let glob = globset::GlobBuilder::new(&normal)
            .case_insensitive(true)
            .literal_separator(true)
            .backslash_escape(false)
            .build()
            .map_err(|e| FsError::Pattern {
                pattern: raw.to_string(),
                reason: format!("is not a valid glob: {}", e.kind()),
            })?
            .compile_matcher();
        compiled.push((raw.to_string(), normal, glob));
    }
    let mut out = Matched::default();
    if compiled.is_empty() {
        return Ok(out);
    }
    let entries = walk(&root_real)?;
    let mut seen = HashSet::new();
    for (raw, normal, glob) in compiled {
        let mut any = false;
        for entry in entries.iter().filter(|e| glob.is_match(&e.rel)) {
            let path = root_real.join(&entry.rel);
            let real = if entry.is_link {
                let Ok(target) = fs::canonicalize(&path) else {
                    out.warnings.push(format!(
                        "`{}` is a broken link; skipped",
                        entry.rel.display()
                    ));
                    any = true;
                    continue;
                };
                if !target.starts_with(&root_real) {
                    return Err(FsError::OutsideRoot {
                        path: entry.rel.clone(),
                    });
                }
                if target.is_dir() {
                    continue;
                }
                target
            } else {
                path
            };
            any = true;
            if seen.insert(real.clone()) {
                out.files.push(MatchedFile {
                    rel: entry.rel.clone(),
                    real,
                });
            }
        }
        if !any {
            let literal = !normal.contains(['*', '?', '[', '{']);
            if literal && root_real.join(&normal).is_dir() {
                out.warnings.push(format!(
                    "Skipping {what} on `{raw}` because it is a directory"
                ));
            } else {
                out.warnings.push(format!(
                    "No files were found that match the {what} target pattern `{raw}`"
                ));
            }
        }
    }
    Ok(out)
}

/// Makes a pattern relative to the root with `/` separators, refusing anything that could
/// reach outside it.
fn normalise_pattern(raw: &str, root: &Path, root_real: &Path) -> Result<String, FsError> {
    let refuse = |reason: &str| FsError::Pattern {
        pattern: raw.to_string(),
        reason: reason.to_string(),
    };
    let mut p = raw.replace('\\', "/");
    let bytes = p.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Err(refuse(
            "is a Windows absolute path; give paths relative to the package directory",
        ));
    }
    if p.starts_with('/') {
        let mut relative = None;
        for base in [root, root_real] {
            let base = base.to_string_lossy().replace('\\', "/");
            let base = base.trim_end_matches('/');
            if let Some(rest) = p.strip_prefix(base) {
                if rest.is_empty() || rest.starts_with('/') {
                    relative = Some(rest.trim_start_matches('/').to_string());
                    break;
                }
            }
        }
        match relative {
            Some(rest) => p = rest,
            None => {
                return Err(refuse(
                    "is an absolute path outside the package directory; give paths relative to it",
                ));
            }
        }
    }
    let mut parts = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(refuse(
                    "refers to a parent directory (`..`); only files inside the package directory can be changed",
                ));
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(refuse(
            "names the package directory itself, not files in it",
        ));
    }
    Ok(parts.join("/"))
}

/// Lists everything under `root_real` (relative paths, sorted), without following directory
/// links.
fn walk(root_real: &Path) -> Result<Vec<Entry>, FsError> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let full = root_real.join(&dir);
        let read = fs::read_dir(&full).map_err(io_err("list the directory", &full))?;
        for item in read {
            let item = item.map_err(io_err("list the directory", &full))?;
            let kind = item
                .file_type()
                .map_err(io_err("inspect", &full.join(item.file_name())))?;
            let rel = dir.join(item.file_name());
            if kind.is_dir() {
                dirs.push(rel);
            } else if kind.is_symlink() {
                out.push(Entry { rel, is_link: true });
            } else if kind.is_file() {
                out.push(Entry {
                    rel,
                    is_link: false,
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Reads and decodes a matched file.
pub(crate) fn read_text(file: &MatchedFile) -> Result<(String, TextEncoding), FsError> {
    let handle = fs::File::open(&file.real).map_err(io_err("read", &file.rel))?;
    let size = handle.metadata().map_err(io_err("read", &file.rel))?.len();
    if size > MAX_FILE_BYTES {
        return Err(FsError::TooLarge {
            path: file.rel.clone(),
            size,
        });
    }
    let mut bytes = Vec::new();
    handle
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", &file.rel))?;
    decode(&bytes).map_err(|reason| FsError::Decode {
        path: file.rel.clone(),
        reason,
    })
}

/// Encodes `text` as `encoding` and replaces the file's content with it, keeping its
/// permissions. Returns a warning when the text could not be written in the original encoding.
pub(crate) fn write_text(
    file: &MatchedFile,
    text: &str,
    encoding: TextEncoding,
) -> Result<Option<String>, FsError> {
    let (bytes, written) = encode(text, encoding);
    write_replacing(&file.real, &bytes).map_err(io_err("write", &file.rel))?;
    Ok((written != encoding).then(|| {
        format!(
            "`{}` was read as {encoding} but the new content has characters {encoding} cannot hold; it was written as {written}",
            file.rel.display()
        )
    }))
}

/// Writes to a temporary file beside `path` and renames it over `path`, so a failure never
/// leaves a half-written file.
fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let permissions = fs::metadata(path)?.permissions();
    let mut attempt = 0u32;
    let (tmp, mut handle) = loop {
        let tmp = dir.join(format!(
            ".{name}.ferry-{}-{attempt}.tmp",
            std::process::id()
        ));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(handle) => break (tmp, handle),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let result = handle
        .write_all(bytes)
        .and_then(|()| handle.sync_all())
        .and_then(|()| fs::set_permissions(&tmp, permissions))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Encodings.

const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// Windows-1252 characters for bytes 0x80..=0x9F; the five undefined bytes map to the C1
/// control with the same number, so every byte sequence round-trips.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

/// Decodes file content: a UTF-8 or UTF-16 byte order mark decides; otherwise UTF-8 if valid,
/// else Windows-1252. The byte order mark is not part of the text.
pub(crate) fn decode(bytes: &[u8]) -> Result<(String, TextEncoding), String> {
    if let Some(rest) = bytes.strip_prefix(UTF8_BOM) {
        return String::from_utf8(rest.to_vec())
            .map(|t| (t, TextEncoding::Utf8Bom))
            .map_err(|e| format!("it starts with a UTF-8 byte order mark but {e}"));
    }
    for (bom, encoding) in [
        ([0xFF, 0xFE], TextEncoding::Utf16Le),
        ([0xFE, 0xFF], TextEncoding::Utf16Be),
    ] {
        if let Some(rest) = bytes.strip_prefix(&bom[..]) {
            if rest.len() % 2 != 0 {
                return Err(format!(
                    "it starts with a {encoding} byte order mark but has an odd number of bytes"
                ));
            }
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|pair| match encoding {
                    TextEncoding::Utf16Le => u16::from_le_bytes([pair[0], pair[1]]),
                    _ => u16::from_be_bytes([pair[0], pair[1]]),
                })
                .collect();
            return String::from_utf16(&units)
                .map(|t| (t, encoding))
                .map_err(|_| {
                    format!(
                        "it starts with a {encoding} byte order mark but is not valid {encoding}"
                    )
                });
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok((text.to_string(), TextEncoding::Utf8)),
        Err(_) => Ok((
            bytes.iter().map(|&b| cp1252_char(b)).collect(),
            TextEncoding::Windows1252,
        )),
    }
}

fn cp1252_char(b: u8) -> char {
    match b {
        0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

fn cp1252_byte(c: char) -> Option<u8> {
    match u32::from(c) {
        n @ (0..=0x7F | 0xA0..=0xFF) => u8::try_from(n).ok(),
        _ => CP1252_HIGH
            .iter()
            .position(|&h| h == c)
            .and_then(|i| u8::try_from(i + 0x80).ok()),
    }
}

/// Encodes `text` in `encoding` (with its byte order mark). Text that Windows-1252 cannot hold
/// is written as UTF-8 instead (as Calamari does); the second value says what was used.
pub(crate) fn encode(text: &str, encoding: TextEncoding) -> (Vec<u8>, TextEncoding) {
    match encoding {
        TextEncoding::Utf8 => (text.as_bytes().to_vec(), encoding),
        TextEncoding::Utf8Bom => {
            let mut out = UTF8_BOM.to_vec();
            out.extend_from_slice(text.as_bytes());
            (out, encoding)
        }
        TextEncoding::Utf16Le | TextEncoding::Utf16Be => {
            let le = encoding == TextEncoding::Utf16Le;
            let mut out = if le {
                vec![0xFF, 0xFE]
            } else {
                vec![0xFE, 0xFF]
            };
            for unit in text.encode_utf16() {
                out.extend_from_slice(&if le {
                    unit.to_le_bytes()
                } else {
                    unit.to_be_bytes()
                });
            }
            (out, encoding)
        }
        TextEncoding::Windows1252 => match text.chars().map(cp1252_byte).collect() {
            Some(bytes) => (bytes, encoding),
            None => (text.as_bytes().to_vec(), TextEncoding::Utf8),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use ferry_template::MapVariables;

    fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, content).unwrap();
        }
        dir
    }

    fn read(dir: &tempfile::TempDir, path: &str) -> String {
        fs::read_to_string(dir.path().join(path)).unwrap()
    }

    fn vars() -> MapVariables {
        MapVariables::new()
            .with("Server", "web01")
            .with("Port", "8080")
            .with("Octopus.Environment.Name", "Production")
            .with("ConnectionString", "Server=#{Server};Database=app")
    }

    fn run(
        dir: &tempfile::TempDir,
        patterns: &str,
        ignore: bool,
    ) -> Result<SubstituteReport, SubstituteError> {
        substitute_files(dir.path(), patterns, &vars(), &Options::default(), ignore)
    }

    #[test]
    fn substitutes_a_config_file_in_place() {
        let dir = tree(&[(
            "web.config",
            b"<add key=\"env\" value=\"#{Octopus.Environment.Name}\" />\n<add key=\"db\" value=\"#{ConnectionString}\" />\n",
        )]);
        let report = run(&dir, "web.config", false).unwrap();
        assert_eq!(
            read(&dir, "web.config"),
            "<add key=\"env\" value=\"Production\" />\n<add key=\"db\" value=\"Server=web01;Database=app\" />\n"
        );
        assert_eq!(report.files.len(), 1);
        assert!(report.files[0].changed);
        assert_eq!(report.files[0].path, PathBuf::from("web.config"));
        assert_eq!(report.files[0].encoding, TextEncoding::Utf8);
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn escaped_tokens_become_literal_tokens() {
        let dir = tree(&[("a.txt", b"##{Server} is #{Server}")]);
        run(&dir, "a.txt", false).unwrap();
        assert_eq!(read(&dir, "a.txt"), "#{Server} is web01");
    }

    #[test]
    fn unresolved_tokens_are_errors_naming_file_and_tokens() {
        let dir = tree(&[
            (
                "conf/a.txt",
                b"#{Server} #{Missing} #{Server | NoSuchFilter}",
            ),
            ("conf/b.txt", b"#{Port}"),
        ]);
        let err = run(&dir, "conf/*.txt", false).unwrap_err();
        let SubstituteError::Failed { failures } = &err else {
            panic!("{err}")
        };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].path, PathBuf::from("conf/a.txt"));
        assert_eq!(
            failures[0].problem,
            FileProblem::Unresolved(vec![
                "#{Missing}".to_string(),
                "#{Server | NoSuchFilter}".to_string()
            ])
        );
        let message = err.to_string();
        assert!(message.contains("conf/a.txt"), "{message}");
        assert!(message.contains("#{Missing}"), "{message}");
        // The failing file is untouched, the clean one substituted.
        assert_eq!(
            read(&dir, "conf/a.txt"),
            "#{Server} #{Missing} #{Server | NoSuchFilter}"
        );
        assert_eq!(read(&dir, "conf/b.txt"), "8080");
    }

    #[test]
    fn ignore_errors_turns_unresolved_tokens_into_warnings() {
        let dir = tree(&[("a.txt", b"#{Server} #{Missing}")]);
        let report = run(&dir, "a.txt", true).unwrap();
        assert_eq!(read(&dir, "a.txt"), "web01 #{Missing}");
        assert_eq!(report.files[0].unresolved, vec!["#{Missing}".to_string()]);
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].contains("#{Missing}"));
        assert!(report.warnings[0].contains("a.txt"));
    }

    #[test]
    fn render_errors_fail_unless_ignored() {
        let dir = tree(&[("a.txt", b"#{Loop}")]);
        let looping = MapVariables::new().with("Loop", "#{Loop}");
        let err = substitute_files(dir.path(), "a.txt", &looping, &Options::default(), false)
            .unwrap_err();
        assert!(matches!(
            &err,
            SubstituteError::Failed { failures } if matches!(failures[0].problem, FileProblem::Template(TemplateError::Recursion { .. }))
        ));
        let report =
            substitute_files(dir.path(), "a.txt", &looping, &Options::default(), true).unwrap();
        assert!(!report.files[0].changed);
        assert!(report.warnings[0].contains("left unchanged"));
        assert_eq!(read(&dir, "a.txt"), "#{Loop}");
    }

    #[test]
    fn globs_match_recursively_case_insensitively_and_once() {
        let dir = tree(&[
            ("appsettings.json", b"#{Port}"),
            ("config/App.JSON", b"#{Port}"),
            ("config/deep/x.json", b"#{Port}"),
            ("config/deep/x.txt", b"#{Port}"),
        ]);
        let report = run(&dir, "**/*.json\nconfig\\deep\\*.json\n\n", false).unwrap();
        let paths: Vec<_> = report.files.iter().map(|f| f.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                PathBuf::from("appsettings.json"),
                PathBuf::from("config/App.JSON"),
                PathBuf::from("config/deep/x.json"),
            ]
        );
        assert_eq!(read(&dir, "config/deep/x.json"), "8080");
        assert_eq!(read(&dir, "config/deep/x.txt"), "#{Port}");
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn single_star_stays_in_one_directory() {
        let dir = tree(&[("a.txt", b"#{Port}"), ("sub/b.txt", b"#{Port}")]);
        let report = run(&dir, "*.txt", false).unwrap();
        assert_eq!(report.files.len(), 1);
        assert_eq!(read(&dir, "sub/b.txt"), "#{Port}");
    }

    #[test]
    fn no_match_and_directories_are_warnings() {
        let dir = tree(&[("sub/b.txt", b"x")]);
        let report = run(&dir, "missing.config\nsub\n./sub/*.nothing", false).unwrap();
        assert!(report.files.is_empty());
        assert_eq!(report.warnings.len(), 3);
        assert!(report.warnings[0].contains("missing.config"));
        assert!(report.warnings[1].contains("is a directory"));
        assert!(report.warnings[2].contains("sub/*.nothing"));
    }

    #[test]
    fn paths_outside_the_root_are_refused() {
        let dir = tree(&[("a.txt", b"x")]);
        for pattern in [
            "../a.txt",
            "sub/../../x",
            "/etc/passwd",
            "C:\\Windows\\win.ini",
        ] {
            let err = run(&dir, pattern, false).unwrap_err();
            assert!(
                matches!(err, SubstituteError::Pattern { .. }),
                "{pattern}: {err}"
            );
        }
        // An absolute path inside the root is fine.
        let inside = format!("{}/a.txt", dir.path().display());
        assert_eq!(run(&dir, &inside, false).unwrap().files.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_root_are_refused_and_directory_links_not_followed() {
        let outside = tree(&[("secret.txt", b"#{Port}"), ("d/inner.txt", b"#{Port}")]);
        let dir = tree(&[("real.txt", b"#{Port}")]);
        std::os::unix::fs::symlink(outside.path().join("d"), dir.path().join("linkdir")).unwrap();
        let report = run(&dir, "**/*.txt", false).unwrap();
        assert_eq!(report.files.len(), 1);
        assert_eq!(read(&outside, "d/inner.txt"), "#{Port}");

        std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("s.txt"))
            .unwrap();
        let err = run(&dir, "*.txt", false).unwrap_err();
        assert!(matches!(err, SubstituteError::OutsideRoot { .. }), "{err}");
        assert_eq!(read(&outside, "secret.txt"), "#{Port}");
    }

    #[cfg(unix)]
    #[test]
    fn links_inside_the_root_are_substituted_once() {
        let dir = tree(&[("real.txt", b"#{Port}")]);
        std::os::unix::fs::symlink(dir.path().join("real.txt"), dir.path().join("alias.txt"))
            .unwrap();
        let report = run(&dir, "*.txt", false).unwrap();
        assert_eq!(report.files.len(), 1);
        assert_eq!(read(&dir, "real.txt"), "8080");
        assert!(
            fs::symlink_metadata(dir.path().join("alias.txt"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[cfg(unix)]
    #[test]
    fn permissions_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tree(&[("run.sh", b"echo #{Port}\n")]);
        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        run(&dir, "run.sh", false).unwrap();
        let mode = fs::metadata(dir.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(read(&dir, "run.sh"), "echo 8080\n");
    }

    #[test]
    fn unchanged_files_are_not_rewritten() {
        let dir = tree(&[("a.txt", b"plain text")]);
        let report = run(&dir, "a.txt", false).unwrap();
        assert!(!report.files[0].changed);
    }

    #[test]
    fn utf8_bom_is_kept() {
        let dir = tree(&[("a.txt", b"\xEF\xBB\xBFport=#{Port} \xC3\xA9")]);
        let report = run(&dir, "a.txt", false).unwrap();
        assert_eq!(report.files[0].encoding, TextEncoding::Utf8Bom);
        assert_eq!(
            fs::read(dir.path().join("a.txt")).unwrap(),
            b"\xEF\xBB\xBFport=8080 \xC3\xA9"
        );
    }

    #[test]
    fn utf16_both_byte_orders_are_kept() {
        for (bom, le) in [([0xFF, 0xFE], true), ([0xFE, 0xFF], false)] {
            let encode16 = |s: &str| {
                let mut out = bom.to_vec();
                for u in s.encode_utf16() {
                    out.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
                }
                out
            };
            let dir = tree(&[("a.txt", &encode16("port=#{Port} ü\r\n"))]);
            let report = run(&dir, "a.txt", false).unwrap();
            assert_eq!(
                report.files[0].encoding,
                if le {
                    TextEncoding::Utf16Le
                } else {
                    TextEncoding::Utf16Be
                }
            );
            assert_eq!(
                fs::read(dir.path().join("a.txt")).unwrap(),
                encode16("port=8080 ü\r\n")
            );
        }
    }

    #[test]
    fn windows_1252_is_kept_or_upgraded_to_utf8() {
        // 0xE9 = é, 0x80 = € in Windows-1252; not valid UTF-8.
        let dir = tree(&[("a.txt", b"caf\xE9 \x80 #{Port}")]);
        let report = run(&dir, "a.txt", false).unwrap();
        assert_eq!(report.files[0].encoding, TextEncoding::Windows1252);
        assert_eq!(
            fs::read(dir.path().join("a.txt")).unwrap(),
            b"caf\xE9 \x80 8080"
        );

        let dir = tree(&[("a.txt", b"caf\xE9 #{Name}")]);
        let name = MapVariables::new().with("Name", "Ωmega");
        let report =
            substitute_files(dir.path(), "a.txt", &name, &Options::default(), false).unwrap();
        assert_eq!(read(&dir, "a.txt"), "café Ωmega");
        assert!(
            report.warnings[0].contains("UTF-8"),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn invalid_utf16_is_a_decode_error() {
        let dir = tree(&[("a.txt", b"\xFF\xFEa")]);
        let err = run(&dir, "a.txt", false).unwrap_err();
        assert!(matches!(err, SubstituteError::Decode { .. }), "{err}");
    }

    #[test]
    fn every_byte_round_trips_through_windows_1252() {
        let all: Vec<u8> = (0..=255u8).collect();
        let (text, encoding) = decode(&all).unwrap();
        assert_eq!(encoding, TextEncoding::Windows1252);
        assert_eq!(encode(&text, encoding), (all, TextEncoding::Windows1252));
    }

    #[test]
    fn invalid_globs_are_pattern_errors() {
        let dir = tree(&[("a.txt", b"x")]);
        let err = run(&dir, "a[.txt", false).unwrap_err();
        assert!(matches!(err, SubstituteError::Pattern { .. }), "{err}");
    }

    #[test]
    fn brace_alternatives_match() {
        let dir = tree(&[
            ("a.config", b"#{Port}"),
            ("b.json", b"#{Port}"),
            ("c.txt", b"#{Port}"),
        ]);
        let report = run(&dir, "*.{config,json}", false).unwrap();
        assert_eq!(report.files.len(), 2);
    }
}
