//! "Structured Configuration Variables": variables whose names are colon-separated paths
//! (`Logging:LogLevel:Default`, `Servers:0:Host`) replace the matching settings in JSON, YAML
//! and Java properties files, as Calamari's `StructuredVariables` replacers do.
//!
//! [`replace_structured`] handles files (matching, format detection, encodings, rewriting);
//! [`replace_json`], [`replace_yaml`] and [`replace_properties`] are the pure transformations
//! of one file's text. See `docs/conventions.md` for the rules.
//!
//! Pure with respect to deployments: no tasks, no logging. Warnings come back as data.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::substitute::{FsError, MatchedFile, TextEncoding, match_files, read_text, write_text};

/// A structured file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StructuredFormat {
    Json,
    Yaml,
    /// Java `.properties`.
    Properties,
}

impl fmt::Display for StructuredFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StructuredFormat::Json => "JSON",
            StructuredFormat::Yaml => "YAML",
            StructuredFormat::Properties => "Java properties",
        })
    }
}

/// What [`replace_structured`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StructuredReport {
    /// Every file handled, in pattern order (files matched twice are listed once).
    pub files: Vec<StructuredFile>,
    /// Patterns that matched nothing, skipped files, values that could not be applied, files
    /// that could not be edited in place; each names the file or pattern.
    pub warnings: Vec<String>,
}

/// One file handled by [`replace_structured`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuredFile {
    /// Relative to the root, with `/` separators.
    pub path: PathBuf,
    /// The format the file was read as (the first that parsed).
    pub format: StructuredFormat,
    pub encoding: TextEncoding,
    /// Names of the variables that replaced something, in the order given.
    pub replaced: Vec<String>,
    /// Whether the file was rewritten (files where nothing matched are left untouched).
    pub changed: bool,
}

/// The result of replacing variables in one file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The new text (the input, unchanged, when nothing matched).
    pub text: String,
    /// Names of the variables that replaced something, in the order given.
    pub replaced: Vec<String>,
    /// Values that could not be applied, and similar notes.
    pub warnings: Vec<String>,
}

impl Replaced {
    fn unchanged(text: &str) -> Replaced {
        Replaced {
            text: text.to_string(),
            replaced: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Text that does not parse in the format tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
}

impl ParseError {
    fn new(message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
        }
    }
}

/// Why [`replace_structured`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StructuredError {
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
    /// The file is larger than [`crate::substitute::MAX_FILE_BYTES`].
    #[error("`{}` is {size} bytes; files over {} bytes are not processed", path.display(), crate::substitute::MAX_FILE_BYTES)]
    TooLarge { path: PathBuf, size: u64 },
    /// The file parses in none of the formats tried; `format` is the last one tried.
    #[error("structured variable replacement failed on `{}`: it could not be parsed as {format}: {message}", path.display())]
    Parse {
        path: PathBuf,
        format: StructuredFormat,
        message: String,
    },
}

impl From<FsError> for StructuredError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Pattern { pattern, reason } => StructuredError::Pattern { pattern, reason },
            FsError::OutsideRoot { path } => StructuredError::OutsideRoot { path },
            FsError::Io {
                action,
                path,
                source,
            } => StructuredError::Io {
                action,
                path,
                source,
            },
            FsError::Decode { path, reason } => StructuredError::Decode { path, reason },
            FsError::TooLarge { path, size } => StructuredError::TooLarge { path, size },
        }
    }
}

/// Replaces settings in every file matching `patterns` (newline-separated globs relative to
/// `root`, as for [`crate::substitute::substitute_files`]) with the values of `vars`
/// (resolved values, in order; a later value for the same name, in any letter case, wins).
///
/// The format comes from the extension: `.json` is JSON; `.yml`/`.yaml` and `.properties` are
/// tried as JSON first (as Calamari does, for backward compatibility); `.xml` is tried as JSON
/// and otherwise skipped with the warning "XML is not supported yet"; any other extension is
/// tried as JSON, then YAML, then properties, and the first that parses wins. `json_only`
/// tries JSON alone. A file that parses in none of its formats is an error.
pub fn replace_structured(
    root: &Path,
    patterns: &str,
    vars: &[(String, String)],
    json_only: bool,
) -> Result<StructuredReport, StructuredError> {
    let matched = match_files(root, patterns, "replacement")?;
    let mut report = StructuredReport {
        files: Vec::new(),
        warnings: matched.warnings,
    };
    for file in matched.files {
        let (text, encoding) = read_text(&file)?;
        let Some((format, replaced)) = replace_file(&file, &text, vars, json_only, &mut report)?
        else {
            continue;
        };
        let changed = replaced.text != text;
        if changed {
            if let Some(warning) = write_text(&file, &replaced.text, encoding)? {
                report.warnings.push(warning);
            }
        }
        report.warnings.extend(
            replaced
                .warnings
                .iter()
                .map(|w| format!("`{}`: {w}", file.rel.display())),
        );
        report.files.push(StructuredFile {
            path: file.rel,
            format,
            encoding,
            replaced: replaced.replaced,
            changed,
        });
    }
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    Json,
    /// `require_structure`: only accept documents with a mapping or sequence at the top (for
    /// files of unknown type, where almost any text would parse as a YAML string).
    Yaml {
        require_structure: bool,
    },
    Properties,
    Xml,
}

fn candidates(rel: &Path, text: &str, json_only: bool) -> Vec<Candidate> {
    use Candidate::*;
    if json_only {
        return vec![Json];
    }
    let name = rel.to_string_lossy().to_lowercase();
    if name.ends_with(".json") {
        vec![Json]
    } else if name.ends_with(".yml") || name.ends_with(".yaml") {
        vec![
            Json,
            Yaml {
                require_structure: false,
            },
        ]
    } else if name.ends_with(".properties") {
        vec![Json, Properties]
    } else if name.ends_with(".xml") || text.trim_start().starts_with('<') {
        vec![Json, Xml]
    } else {
        vec![
            Json,
            Yaml {
                require_structure: true,
            },
            Properties,
        ]
    }
}

/// Tries the file's candidate formats in order. `None`: the file was skipped (with a warning).
fn replace_file(
    file: &MatchedFile,
    text: &str,
    vars: &[(String, String)],
    json_only: bool,
    report: &mut StructuredReport,
) -> Result<Option<(StructuredFormat, Replaced)>, StructuredError> {
    let list = candidates(&file.rel, text, json_only);
    let mut last_error = None;
    for candidate in list {
        let (format, result) = match candidate {
            Candidate::Json => (StructuredFormat::Json, replace_json(text, vars)),
            Candidate::Yaml { require_structure } => (
                StructuredFormat::Yaml,
                yaml::replace(text, vars, require_structure),
            ),
            Candidate::Properties => (
                StructuredFormat::Properties,
                Ok(replace_properties(text, vars)),
            ),
            Candidate::Xml => {
                report.warnings.push(format!(
                    "`{}` was skipped: XML is not supported yet",
                    file.rel.display()
                ));
                return Ok(None);
            }
        };
        match result {
            Ok(replaced) => return Ok(Some((format, replaced))),
            Err(e) => last_error = Some((format, e)),
        }
    }
    let (format, error) =
        last_error.unwrap_or((StructuredFormat::Json, ParseError::new("no format to try")));
    Err(StructuredError::Parse {
        path: file.rel.clone(),
        format,
        message: error.message,
    })
}

// ---------------------------------------------------------------------------------------------
// Variables.

/// A variable to apply: the name as given, its lower-cased form, and the last value given.
#[derive(Debug, Clone)]
struct Var<'a> {
    name: &'a str,
    lower: String,
    value: &'a str,
}

/// Keeps the variables `keep` accepts (by lower-cased name); a later value for the same name
/// replaces an earlier one, keeping the first position.
fn prepare<'a>(vars: &'a [(String, String)], keep: fn(&str) -> bool) -> Vec<Var<'a>> {
    let mut out: Vec<Var<'a>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (name, value) in vars {
        let lower = name.to_lowercase();
        if !keep(&lower) {
            continue;
        }
        match index.get(&lower) {
            Some(&i) => {
                if let Some(existing) = out.get_mut(i) {
                    existing.value = value;
                }
            }
            None => {
                index.insert(lower.clone(), out.len());
                out.push(Var { name, lower, value });
            }
        }
    }
    out
}

/// JSON and YAML: names starting with `Octopus` are system variables and ignored, unless they
/// start with `Octopus:` (a path into an `Octopus` section), as in Calamari.
fn structural_name(lower: &str) -> bool {
    !lower.starts_with("octopus") || lower.starts_with("octopus:")
}

/// Properties: keys starting with `Octopus` are never replaced, as in Calamari.
fn properties_name(lower: &str) -> bool {
    !lower.starts_with("octopus")
}

/// The names of the variables at `indices`, in variable order.
fn names_in_order(vars: &[Var<'_>], indices: &HashSet<usize>) -> Vec<String> {
    vars.iter()
        .enumerate()
        .filter(|(i, _)| indices.contains(i))
        .map(|(_, v)| v.name.to_string())
        .collect()
}

/// `\r\n` when most line breaks in `text` are, else `\n`.
fn newline_of(text: &str) -> &'static str {
    let crlf = text.matches("\r\n").count();
    let lf = text.matches('\n').count() - crlf;
    if crlf > lf { "\r\n" } else { "\n" }
}

// ---------------------------------------------------------------------------------------------
// JSON.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Replaces settings in JSON text.
///
/// Each variable whose name (ignoring case) is the colon-joined path of a property or array
/// element is applied: a number keeps being a number when the value parses as one, a boolean
/// when it is `true`/`false`; strings and nulls become strings; an object or array is replaced
/// by the value parsed as JSON (a value that is not JSON leaves it unchanged, with a warning).
/// When an object is replaced, replacements inside it are lost, whatever their order.
///
/// Comments and trailing commas are accepted (and dropped when the file is rewritten). The
/// text is rewritten only when something matched: indented like the original (spaces or tabs,
/// as its first indented line), with its line breaks, keeping property order.
pub fn replace_json(text: &str, vars: &[(String, String)]) -> Result<Replaced, ParseError> {
    if text.trim().is_empty() {
        return Ok(Replaced::unchanged(text));
    }
    let mut root = parse_json_lenient(text)?;
    let vars = prepare(vars, structural_name);
    let mut index = HashMap::new();
    index_json(&root, &mut Vec::new(), &mut index);
    let mut updates: Vec<(usize, Vec<Seg>)> = vars
        .iter()
        .enumerate()
        .filter_map(|(i, v)| index.get(&v.lower).map(|path| (i, path.clone())))
        .collect();
    let mut out = Replaced::unchanged(text);
    if updates.is_empty() {
        return Ok(out);
    }
    // Deepest first: a replaced object then overrides replacements inside it, as in Calamari
    // (where they land in the detached old object).
    updates.sort_by_key(|(i, path)| (Reverse(path.len()), *i));
    let mut applied: Vec<(usize, Vec<Seg>, bool)> = Vec::new();
    for (i, path) in updates {
        let (Some(var), Some(node)) = (vars.get(i), json_at_mut(&mut root, &path)) else {
            continue;
        };
        let structure = matches!(node, Json::Object(_) | Json::Array(_));
        let new = match node {
            Json::Object(_) | Json::Array(_) => match parse_json_lenient(var.value) {
                Ok(parsed) => parsed,
                Err(e) => {
                    out.warnings.push(format!(
                        "unable to set `{}`: it names a JSON {}, which can only be replaced by JSON, and the value is not JSON ({e}); it was left unchanged",
                        var.name,
                        if matches!(node, Json::Object(_)) { "object" } else { "array" }
                    ));
                    continue;
                }
            },
            Json::Number(_) => json_number(var.value).unwrap_or_else(|| Json::from(var.value)),
            Json::Bool(_) => {
                let t = var.value.trim();
                if t.eq_ignore_ascii_case("true") {
                    Json::Bool(true)
                } else if t.eq_ignore_ascii_case("false") {
                    Json::Bool(false)
                } else {
                    Json::from(var.value)
                }
            }
            Json::String(_) | Json::Null => Json::from(var.value),
        };
        *node = new;
        applied.push((i, path, structure));
    }
    if applied.is_empty() {
        return Ok(out);
    }
    let survivors: HashSet<usize> = applied
        .iter()
        .filter(|(_, path, _)| {
            !applied.iter().any(|(_, other, structure)| {
                *structure && other.len() < path.len() && path.starts_with(other)
            })
        })
        .map(|(i, _, _)| *i)
        .collect();
    out.replaced = names_in_order(&vars, &survivors);
    out.text = write_json(&root, text)?;
    Ok(out)
}

/// Parses JSON, accepting `//` and `/* */` comments and trailing commas as Newtonsoft does.
fn parse_json_lenient(text: &str) -> Result<Json, ParseError> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(first) => serde_json::from_str(&clean_json(text))
            .map_err(|_| ParseError::new(format!("invalid JSON: {first}"))),
    }
}

/// Blanks out comments and trailing commas, keeping line and column positions.
fn clean_json(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    let mut in_string = false;
    let blank = |c: char| if c == '\n' || c == '\r' { c } else { ' ' };
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = next {
                    out.push(n);
                    i += 1;
                }
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match (c, next) {
            ('"', _) => {
                in_string = true;
                out.push(c);
                i += 1;
            }
            ('/', Some('/')) => {
                while let Some(&c) = chars.get(i) {
                    if c == '\n' || c == '\r' {
                        break;
                    }
                    out.push(' ');
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                out.extend([' ', ' ']);
                i += 2;
                while let Some(&c) = chars.get(i) {
                    if c == '*' && chars.get(i + 1) == Some(&'/') {
                        out.extend([' ', ' ']);
                        i += 2;
                        break;
                    }
                    out.push(blank(c));
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Trailing commas: a comma followed (after whitespace) by `}` or `]`.
    let mut in_string = false;
    let mut escaped = false;
    for k in 0..out.len() {
        let c = out[k];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        } else if c == ',' {
            let next = out[k + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                out[k] = ' ';
            }
        }
    }
    out.into_iter().collect()
}

fn index_json(value: &Json, path: &mut Vec<Seg>, index: &mut HashMap<String, Vec<Seg>>) {
    let mut visit = |seg: Seg, child: &Json, path: &mut Vec<Seg>| {
        path.push(seg);
        index.insert(json_path_key(path), path.clone());
        index_json(child, path, index);
        path.pop();
    };
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                visit(Seg::Key(k.clone()), v, path);
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                visit(Seg::Index(i), v, path);
            }
        }
        _ => {}
    }
}

fn json_path_key(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => k.to_lowercase(),
            Seg::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(":")
}

fn json_at_mut<'v>(mut value: &'v mut Json, path: &[Seg]) -> Option<&'v mut Json> {
    for seg in path {
        value = match (value, seg) {
            (Json::Object(map), Seg::Key(k)) => map.get_mut(k)?,
            (Json::Array(items), Seg::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// A number as Calamari reads one: a 64-bit integer, else a finite double.
fn json_number(value: &str) -> Option<Json> {
    let t = value.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(Json::from(i));
    }
    if let Ok(u) = t.parse::<u64>() {
        return Some(Json::from(u));
    }
    let f = t.parse::<f64>().ok().filter(|f| f.is_finite())?;
    serde_json::Number::from_f64(f).map(Json::Number)
}

/// Pretty-prints `root` indented like `original`, with its line breaks and final newline.
fn write_json(root: &Json, original: &str) -> Result<String, ParseError> {
    let pretty = serde_json::to_string_pretty(root)
        .map_err(|e| ParseError::new(format!("could not write JSON: {e}")))?;
    let unit = json_indent_unit(original);
    let newline = newline_of(original);
    let mut out = String::with_capacity(pretty.len() + pretty.len() / 8);
    for (n, line) in pretty.split('\n').enumerate() {
        if n > 0 {
            out.push_str(newline);
        }
        // serde_json indents with two spaces; strings never contain raw line breaks, so
        // leading spaces are indentation only.
        let spaces = line.len() - line.trim_start_matches(' ').len();
        for _ in 0..spaces / 2 {
            out.push_str(&unit);
        }
        out.push_str(&line[spaces..]);
    }
    if original.ends_with('\n') {
        out.push_str(newline);
    }
    Ok(out)
}

/// The indentation of the first indented line: a tab, or 1 to 8 spaces (2 if none).
fn json_indent_unit(text: &str) -> String {
    for line in text.lines().skip(1) {
        let rest = line.trim_start_matches([' ', '\t']);
        if rest.is_empty() || rest.len() == line.len() {
            continue;
        }
        if line.starts_with('\t') {
            return "\t".to_string();
        }
        let n = line.len() - line.trim_start_matches(' ').len();
        return " ".repeat(n.clamp(1, 8));
    }
    "  ".to_string()
}

// ---------------------------------------------------------------------------------------------
// Java properties.

/// One `key=value` entry (a logical line) of a properties file, with byte positions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PropEntry {
    /// The key with escapes and line continuations resolved.
    key: String,
    /// Whether a separator (`=`, `:` or whitespace) follows the key.
    has_separator: bool,
    value_start: usize,
    value_end: usize,
}

/// Replaces values in a Java properties file.
///
/// Keys are literal (a variable named `server.port` replaces the key `server.port`; colons are
/// not paths), compared ignoring case after resolving escapes. Every entry with a matching key
/// is replaced; keys starting with `Octopus` never are. The new value is escaped as Java
/// requires (`\\`, `\n`, `\t`, a leading space, and `\uXXXX` for characters outside ASCII);
/// everything else in the file (comments, blank lines, separators, order) stays as it is.
pub fn replace_properties(text: &str, vars: &[(String, String)]) -> Replaced {
    let vars = prepare(vars, properties_name);
    let by_name: HashMap<&str, usize> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| (v.lower.as_str(), i))
        .collect();
    let mut out = Replaced::unchanged(text);
    if by_name.is_empty() {
        return out;
    }
    let mut used = HashSet::new();
    let mut result = String::with_capacity(text.len());
    let mut copied = 0;
    for entry in parse_properties(text) {
        let Some((&i, var)) = by_name
            .get(entry.key.to_lowercase().as_str())
            .and_then(|i| vars.get(*i).map(|v| (i, v)))
        else {
            continue;
        };
        result.push_str(text.get(copied..entry.value_start).unwrap_or(""));
        if !entry.has_separator {
            result.push(':');
        }
        result.push_str(&escape_property_value(var.value));
        copied = entry.value_end;
        used.insert(i);
    }
    if used.is_empty() {
        return out;
    }
    result.push_str(text.get(copied..).unwrap_or(""));
    out.text = result;
    out.replaced = names_in_order(&vars, &used);
    out
}

fn is_prop_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\x0c')
}

fn is_line_break(b: u8) -> bool {
    matches!(b, b'\n' | b'\r')
}

/// Parses the logical lines of a properties file as `java.util.Properties.load` does.
fn parse_properties(text: &str) -> Vec<PropEntry> {
    let b = text.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let after_break = |i: usize| {
        if at(i) == b'\r' && at(i + 1) == b'\n' {
            i + 2
        } else {
            i + 1
        }
    };
    let skip_spaces = |mut i: usize| {
        while i < b.len() && is_prop_space(at(i)) {
            i += 1;
        }
        i
    };
    let char_len = |i: usize| {
        text.get(i..)
            .and_then(|s| s.chars().next())
            .map_or(1, char::len_utf8)
    };
    let mut entries = Vec::new();
    let mut i = 0;
    while i < b.len() {
        i = skip_spaces(i);
        if i >= b.len() {
            break;
        }
        if is_line_break(at(i)) {
            i = after_break(i);
            continue;
        }
        if at(i) == b'#' || at(i) == b'!' {
            while i < b.len() && !is_line_break(at(i)) {
                i += 1;
            }
            continue;
        }
        // The key runs to the first unescaped separator or whitespace.
        let mut key = String::new();
        let mut pending_high: Option<u16> = None;
        let mut has_separator = false;
        while i < b.len() && !is_line_break(at(i)) {
            match at(i) {
                b'\\' if i + 1 < b.len() => {
                    if is_line_break(at(i + 1)) {
                        i = skip_spaces(after_break(i + 1));
                        continue;
                    }
                    let (c, used) = property_escape(text, i + 1);
                    push_utf16_aware(&mut key, &mut pending_high, c);
                    i += 1 + used;
                }
                b'=' | b':' => {
                    has_separator = true;
                    i += 1;
                    break;
                }
                c if is_prop_space(c) => {
                    has_separator = true;
                    i = skip_spaces(i);
                    if at(i) == b'=' || at(i) == b':' {
                        i += 1;
                    }
                    break;
                }
                _ => {
                    let len = char_len(i);
                    key.push_str(text.get(i..i + len).unwrap_or(""));
                    i += len;
                }
            }
        }
        if let Some(high) = pending_high {
            key.push(char::from_u32(u32::from(high)).unwrap_or('\u{FFFD}'));
        }
        // Whitespace (and line continuations) before the value are not part of it.
        loop {
            i = skip_spaces(i);
            if at(i) == b'\\' && is_line_break(at(i + 1)) {
                i = after_break(i + 1);
            } else {
                break;
            }
        }
        let value_start = i;
        while i < b.len() && !is_line_break(at(i)) {
            if at(i) == b'\\' && i + 1 < b.len() {
                if is_line_break(at(i + 1)) {
                    i = skip_spaces(after_break(i + 1));
                } else {
                    i += 1 + char_len(i + 1);
                }
            } else {
                i += char_len(i);
            }
        }
        entries.push(PropEntry {
            key,
            has_separator,
            value_start,
            value_end: i,
        });
    }
    entries
}

/// The character an escape (the text after its backslash, at `i`) stands for, and how many
/// bytes it used. `\uXXXX` gives a UTF-16 unit as a `u32`-valued char where possible.
fn property_escape(text: &str, i: usize) -> (EscapedUnit, usize) {
    let Some(c) = text.get(i..).and_then(|s| s.chars().next()) else {
        return (EscapedUnit::Char('\\'), 0);
    };
    match c {
        't' => (EscapedUnit::Char('\t'), 1),
        'n' => (EscapedUnit::Char('\n'), 1),
        'r' => (EscapedUnit::Char('\r'), 1),
        'f' => (EscapedUnit::Char('\x0c'), 1),
        'u' => match text
            .get(i + 1..i + 5)
            .and_then(|h| u16::from_str_radix(h, 16).ok())
        {
            Some(unit) => (EscapedUnit::Unit(unit), 5),
            None => (EscapedUnit::Char('u'), 1),
        },
        other => (EscapedUnit::Char(other), other.len_utf8()),
    }
}

#[derive(Debug, Clone, Copy)]
enum EscapedUnit {
    Char(char),
    Unit(u16),
}

/// Appends an escaped character, pairing UTF-16 surrogates written as two `\u` escapes.
fn push_utf16_aware(out: &mut String, pending_high: &mut Option<u16>, unit: EscapedUnit) {
    let flush = |out: &mut String, pending: &mut Option<u16>| {
        if pending.take().is_some() {
            out.push('\u{FFFD}');
        }
    };
    match unit {
        EscapedUnit::Char(c) => {
            flush(out, pending_high);
            out.push(c);
        }
        EscapedUnit::Unit(u) if (0xD800..0xDC00).contains(&u) => {
            flush(out, pending_high);
            *pending_high = Some(u);
        }
        EscapedUnit::Unit(u) if (0xDC00..0xE000).contains(&u) => match pending_high.take() {
            Some(high) => out.push_str(&String::from_utf16_lossy(&[high, u])),
            None => out.push('\u{FFFD}'),
        },
        EscapedUnit::Unit(u) => {
            flush(out, pending_high);
            out.push(char::from_u32(u32::from(u)).unwrap_or('\u{FFFD}'));
        }
    }
}

/// Escapes a value for a properties file, as Calamari does.
fn escape_property_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for (n, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0c' => out.push_str("\\f"),
            ' ' if n == 0 => out.push_str("\\ "),
            // After a key and whitespace, a leading `=` or `:` would read as the separator.
            '=' | ':' if n == 0 => {
                out.push('\\');
                out.push(c);
            }
            c if (' '..='~').contains(&c) => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        }
    }
    out
}

/// Replaces settings in YAML text.
///
/// Variables match paths of mapping keys and sequence indexes (`spring:datasource:url`,
/// `servers:0:host`), ignoring case, in every document of the file. A scalar keeps its style:
/// a plain scalar stays plain when the value can be written plain (so its type follows the
/// value: `8080` is a number, `true` a boolean), a quoted one stays quoted (a string), a
/// block scalar stays a block. A mapping or sequence is replaced by the value parsed as YAML
/// (JSON is YAML); a value that does not parse becomes a string. The file is edited in place
/// so comments, ordering and formatting survive; when a match lies where the in-place editor
/// cannot safely go (inside a flow collection, in a multi-line plain scalar, ...), the file is
/// rewritten from its parsed content instead and a warning says comments were lost.
pub fn replace_yaml(text: &str, vars: &[(String, String)]) -> Result<Replaced, ParseError> {
    yaml::replace(text, vars, false)
}

// ---------------------------------------------------------------------------------------------
// YAML.

mod yaml {
    //! YAML replacement: an in-place line editor for block-style YAML, checked by re-parsing
    //! its result, with a rewrite from the parsed documents as the fallback.

    use std::cmp::Reverse;
    use std::collections::{HashMap, HashSet};

    use serde::Deserialize;
    use serde_yaml::Value as Yaml;
    use serde_yaml::value::TaggedValue;

    use super::{ParseError, Replaced, Var, names_in_order, newline_of, prepare, structural_name};

    pub(super) fn replace(
        text: &str,
        vars: &[(String, String)],
        require_structure: bool,
    ) -> Result<Replaced, ParseError> {
        let docs = parse_docs(text).map_err(|e| ParseError::new(format!("invalid YAML: {e}")))?;
        if require_structure
            && !docs
                .iter()
                .any(|d| matches!(untag(d), Yaml::Mapping(_) | Yaml::Sequence(_)))
        {
            return Err(ParseError::new(
                "the text has no YAML mapping or sequence at the top",
            ));
        }
        let vars = prepare(vars, structural_name);
        let mut real: HashMap<String, HashSet<usize>> = HashMap::new();
        for (d, doc) in docs.iter().enumerate() {
            walk_paths(doc, &mut Vec::new(), &mut |path| {
                real.entry(path.join(":").to_lowercase())
                    .or_default()
                    .insert(d);
            });
        }
        let matching: Vec<usize> = vars
            .iter()
            .enumerate()
            .filter(|(_, v)| real.contains_key(&v.lower))
            .map(|(i, _)| i)
            .collect();
        if matching.is_empty() {
            return Ok(Replaced::unchanged(text));
        }
        let reason = match in_place(text, &docs, &vars, &matching, &real) {
            Ok(done) => return Ok(done),
            Err(Bail(reason)) => reason,
        };
        let mut out = rewrite(docs, &vars, &matching, text)?;
        out.warnings.insert(
            0,
            format!(
                "could not edit the YAML in place ({reason}); it was rewritten from its parsed content, so its comments, anchors and formatting were not kept"
            ),
        );
        Ok(out)
    }

    fn parse_docs(text: &str) -> Result<Vec<Yaml>, serde_yaml::Error> {
        serde_yaml::Deserializer::from_str(text)
            .map(Yaml::deserialize)
            .collect()
    }

    fn untag(v: &Yaml) -> &Yaml {
        match v {
            Yaml::Tagged(t) => untag(&t.value),
            other => other,
        }
    }

    /// A mapping key as a path component (Calamari uses the key's text).
    fn key_text(k: &Yaml) -> Option<String> {
        match k {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Number(n) => Some(n.to_string()),
            Yaml::Bool(b) => Some(b.to_string()),
            Yaml::Tagged(t) => key_text(&t.value),
            _ => None,
        }
    }

    fn walk_paths(v: &Yaml, path: &mut Vec<String>, f: &mut dyn FnMut(&[String])) {
        match untag(v) {
            Yaml::Mapping(m) => {
                for (k, child) in m {
                    if let Some(key) = key_text(k) {
                        path.push(key);
                        f(path);
                        walk_paths(child, path, f);
                        path.pop();
                    }
                }
            }
            Yaml::Sequence(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(i.to_string());
                    f(path);
                    walk_paths(child, path, f);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn child_mut<'v>(v: &'v mut Yaml, comp: &str) -> Option<&'v mut Yaml> {
        match v {
            Yaml::Tagged(t) => child_mut(&mut t.value, comp),
            Yaml::Mapping(m) => {
                let index = m
                    .iter()
                    .position(|(k, _)| key_text(k).as_deref() == Some(comp))
                    .or_else(|| {
                        m.iter().position(|(k, _)| {
                            key_text(k).is_some_and(|t| t.to_lowercase() == comp.to_lowercase())
                        })
                    })?;
                m.iter_mut().nth(index).map(|(_, v)| v)
            }
            Yaml::Sequence(items) => comp.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
    }

    fn yaml_at_mut<'v>(mut v: &'v mut Yaml, path: &[String]) -> Option<&'v mut Yaml> {
        for comp in path {
            v = child_mut(v, comp)?;
        }
        Some(v)
    }

    // -----------------------------------------------------------------------------------------
    // New values.

    /// A value for a mapping or sequence: parsed as YAML (JSON is YAML), else a string.
    fn fragment(value: &str) -> Yaml {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Yaml::String(value.to_string());
        }
        match serde_yaml::from_str::<Yaml>(value) {
            Ok(Yaml::Null) if !matches!(trimmed, "~" | "null" | "Null" | "NULL") => {
                Yaml::String(value.to_string())
            }
            Ok(parsed) => parsed,
            Err(_) => Yaml::String(value.to_string()),
        }
    }

    /// Characters YAML cannot hold in plain, single-quoted or block scalars: controls, and the
    /// Unicode line and paragraph separators (line breaks to YAML 1.1 readers), and BOMs.
    fn needs_escape(c: char) -> bool {
        c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
    }

    fn has_control(v: &str) -> bool {
        v.chars().any(needs_escape)
    }

    /// Whether `v` can be written as a plain scalar (and read back as a scalar).
    pub(super) fn plain_ok(v: &str) -> bool {
        let mut chars = v.chars();
        let Some(first) = chars.next() else {
            return false;
        };
        if v.trim() != v
            || has_control(v)
            || v.contains(": ")
            || v.contains(" #")
            || v.ends_with(':')
            || v.starts_with("---")
            || v.starts_with("...")
            || "[]{},#&*!|>'\"%@`".contains(first)
            || (matches!(first, '-' | '?' | ':') && chars.next().is_none_or(|c| c == ' '))
        {
            return false;
        }
        matches!(
            serde_yaml::from_str::<Yaml>(v),
            Ok(Yaml::Null | Yaml::Bool(_) | Yaml::Number(_) | Yaml::String(_))
        )
    }

    fn single_quoted(v: &str) -> String {
        format!("'{}'", v.replace('\'', "''"))
    }

    fn double_quoted(v: &str) -> String {
        let mut out = String::with_capacity(v.len() + 2);
        out.push('"');
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                c if needs_escape(c) => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// A literal block scalar (`|`, content indented by two) that reads back as `v`.
    fn literal_block(v: &str) -> Option<String> {
        if v.is_empty() || v.chars().any(|c| needs_escape(c) && c != '\n') {
            return None;
        }
        let (body, chomp) = match v.strip_suffix('\n') {
            Some(b) if b.ends_with('\n') => (b, "+"),
            Some(b) => (b, ""),
            None => (v, "-"),
        };
        let lines: Vec<String> = body
            .split('\n')
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("  {l}")
                }
            })
            .collect();
        let text = format!("|{chomp}\n{}", lines.join("\n"));
        // In the file, a line break follows the last content line.
        (serde_yaml::from_str::<Yaml>(&format!("{text}\n")).ok()? == Yaml::String(v.to_string()))
            .then_some(text)
    }

    /// The text for a scalar in `style` (continuation lines not yet indented), and the value
    /// it reads back as with the node's anchor and tag `props`.
    fn scalar_text(value: &str, style: Style, props: &str) -> Result<(String, Yaml), Bail> {
        let first = match style {
            Style::Plain if plain_ok(value) => value.to_string(),
            Style::Plain | Style::Single if !has_control(value) => single_quoted(value),
            Style::Literal | Style::Folded => {
                literal_block(value).unwrap_or_else(|| double_quoted(value))
            }
            _ => double_quoted(value),
        };
        for candidate in [first, double_quoted(value)] {
            let source = if props.is_empty() {
                format!("{candidate}\n")
            } else {
                format!("{props} {candidate}\n")
            };
            if let Ok(parsed) = serde_yaml::from_str::<Yaml>(&source) {
                return Ok((candidate, parsed));
            }
        }
        Err(Bail(format!(
            "the new value cannot be written under the tag or anchor `{props}`"
        )))
    }

    /// Joins `rel`'s lines with `nl`, indenting all but the first by `base` spaces.
    fn continue_lines(rel: &str, base: usize, nl: &str) -> String {
        let pad = " ".repeat(base);
        let mut out = String::with_capacity(rel.len() + 16);
        for (i, line) in rel.split('\n').enumerate() {
            if i > 0 {
                out.push_str(nl);
                if !line.is_empty() {
                    out.push_str(&pad);
                }
            }
            out.push_str(line);
        }
        out
    }

    /// `v` in flow style (`[80, 443]`, `{a: 1}`), or `None` for values that have no one-line
    /// flow form here (multi-line strings are written quoted, so only odd keys fail).
    fn flow_text(v: &Yaml) -> Option<String> {
        Some(match v {
            Yaml::Null => "null".to_string(),
            Yaml::Bool(b) => b.to_string(),
            Yaml::Number(n) => n.to_string(),
            Yaml::String(s) => {
                if plain_ok(s) && !s.contains([',', '[', ']', '{', '}', '#', ':']) {
                    s.clone()
                } else {
                    double_quoted(s)
                }
            }
            Yaml::Sequence(items) => {
                let parts: Option<Vec<String>> = items.iter().map(flow_text).collect();
                format!("[{}]", parts?.join(", "))
            }
            Yaml::Mapping(m) => {
                let mut parts = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let key = match k {
                        Yaml::String(_) | Yaml::Number(_) | Yaml::Bool(_) => flow_text(k)?,
                        _ => return None,
                    };
                    parts.push(format!("{key}: {}", flow_text(v)?));
                }
                format!("{{{}}}", parts.join(", "))
            }
            Yaml::Tagged(t) => format!("{} {}", t.tag, flow_text(&t.value)?),
        })
    }

    // -----------------------------------------------------------------------------------------
    // The in-place editor.

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Bail(pub String);

    fn bail<T>(reason: &str) -> Result<T, Bail> {
        Err(Bail(reason.to_string()))
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Style {
        Plain,
        Single,
        Double,
        Literal,
        Folded,
    }

    /// What introduces a node: `key:` at a column, or `-` at a column.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Owner {
        Key(usize),
        Item(usize),
    }

    impl Owner {
        fn indent(self) -> usize {
            match self {
                Owner::Key(c) | Owner::Item(c) => c,
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum YValue {
        /// Nothing after the indicator (and any anchor or tag); `at` is where a value goes.
        Empty { at: usize },
        /// A scalar or alias; for block scalars `end` is the end of the last content line.
        Scalar {
            start: usize,
            end: usize,
            style: Style,
        },
        /// A flow collection on one line.
        Flow { start: usize, end: usize },
        /// A block mapping or sequence; `end` is the end of its last line.
        Block { end: usize, child_indent: usize },
    }

    #[derive(Debug, Clone)]
    struct YNode {
        doc: usize,
        path: Vec<String>,
        owner: Owner,
        /// Just after the `:` or `-`.
        after_indicator: usize,
        /// The end of the owner's line.
        line_end: usize,
        /// The anchor and tag text after the indicator (may be empty).
        props: (usize, usize),
        value: YValue,
    }

    impl YNode {
        fn value_end(&self) -> usize {
            match self.value {
                YValue::Empty { at } => at,
                YValue::Scalar { end, .. }
                | YValue::Flow { end, .. }
                | YValue::Block { end, .. } => end,
            }
        }
    }

    #[derive(Debug)]
    struct Frame {
        indent: usize,
        is_seq: bool,
        path: Vec<String>,
        next_index: usize,
        /// A sequence at the same column as the key that owns it.
        compact: bool,
        owner: Option<usize>,
        last_end: usize,
    }

    /// A line scanner for block-style YAML that records where each node's value is. It gives up
    /// (a [`Bail`]) on anything it does not model; the caller then rewrites the whole file.
    struct Scanner<'t> {
        text: &'t str,
        bytes: &'t [u8],
        nodes: Vec<YNode>,
        stack: Vec<Frame>,
        pending: Option<usize>,
        /// Inside a block scalar: its node and the column its content must exceed.
        block: Option<(usize, usize)>,
        doc: usize,
        started: bool,
        ended: bool,
        root_seen: bool,
        line_start: usize,
    }

    fn marker<'a>(rest: &'a str, m: &str) -> Option<&'a str> {
        let after = rest.strip_prefix(m)?;
        (after.is_empty() || after.starts_with([' ', '\t'])).then_some(after)
    }

    impl<'t> Scanner<'t> {
        fn scan(text: &'t str) -> Result<Scanner<'t>, Bail> {
            let mut s = Scanner {
                text,
                bytes: text.as_bytes(),
                nodes: Vec::new(),
                stack: Vec::new(),
                pending: None,
                block: None,
                doc: 0,
                started: false,
                ended: false,
                root_seen: false,
                line_start: 0,
            };
            let mut pos = 0;
            while pos < text.len() {
                let newline = text.get(pos..).and_then(|r| r.find('\n')).map(|i| pos + i);
                let raw_end = newline.unwrap_or(text.len());
                let end = if raw_end > pos && s.at(raw_end - 1) == b'\r' {
                    raw_end - 1
                } else {
                    raw_end
                };
                s.line(pos, end)?;
                pos = newline.map_or(text.len(), |i| i + 1);
            }
            s.close_doc();
            Ok(s)
        }

        fn at(&self, i: usize) -> u8 {
            self.bytes.get(i).copied().unwrap_or(0)
        }

        fn is_space(&self, i: usize) -> bool {
            matches!(self.at(i), b' ' | b'\t')
        }

        fn skip_spaces(&self, mut i: usize, end: usize) -> usize {
            while i < end && self.is_space(i) {
                i += 1;
            }
            i
        }

        fn is_dash(&self, i: usize, end: usize) -> bool {
            i < end && self.at(i) == b'-' && (i + 1 >= end || self.is_space(i + 1))
        }

        fn col(&self, i: usize) -> usize {
            self.text
                .get(self.line_start..i)
                .map_or(0, |s| s.chars().count())
        }

        fn line(&mut self, start: usize, end: usize) -> Result<(), Bail> {
            self.line_start = start;
            let line = self.text.get(start..end).unwrap_or("");
            let rest = line.trim_start_matches(' ');
            let indent = line.len() - rest.len();
            let content = rest.trim_start_matches([' ', '\t']);
            let blank = content.is_empty();
            if let Some((node, parent)) = self.block {
                if blank {
                    return Ok(());
                }
                if indent > parent {
                    if let Some(YValue::Scalar { end: e, .. }) =
                        self.nodes.get_mut(node).map(|n| &mut n.value)
                    {
                        *e = end;
                    }
                    if let Some(top) = self.stack.last_mut() {
                        top.last_end = end;
                    }
                    return Ok(());
                }
                self.block = None;
            }
            if blank || content.starts_with('#') {
                return Ok(());
            }
            if rest.starts_with('\t') {
                return bail("a line is indented with a tab");
            }
            if indent == 0 {
                if let Some(after) = marker(rest, "---") {
                    let after = after.trim_start_matches([' ', '\t']);
                    if !after.is_empty() && !after.starts_with('#') {
                        return bail("a document has content on its `---` line");
                    }
                    self.close_doc();
                    if self.started || self.ended {
                        self.doc += 1;
                    }
                    self.started = true;
                    self.ended = false;
                    return Ok(());
                }
                if marker(rest, "...").is_some() {
                    self.close_doc();
                    self.ended = true;
                    return Ok(());
                }
                if rest.starts_with('%') {
                    if self.started {
                        return bail("a directive inside a document");
                    }
                    return Ok(());
                }
            }
            if self.ended {
                return bail("content after a `...` document end without a new `---`");
            }
            self.started = true;
            self.content(indent, start + indent, end)
        }

        fn content(&mut self, col: usize, pos: usize, end: usize) -> Result<(), Bail> {
            let dash = self.is_dash(pos, end);
            if let Some(p) = self.pending.take() {
                if let Some((owner, path)) = self.nodes.get(p).map(|n| (n.owner, n.path.clone())) {
                    let oi = owner.indent();
                    if col > oi || (col == oi && dash && matches!(owner, Owner::Key(_))) {
                        if let Some(node) = self.nodes.get_mut(p) {
                            node.value = YValue::Block {
                                end,
                                child_indent: col,
                            };
                        }
                        self.stack.push(Frame {
                            indent: col,
                            is_seq: dash,
                            path,
                            next_index: 0,
                            compact: col == oi,
                            owner: Some(p),
                            last_end: end,
                        });
                        return self.entry(col, pos, end);
                    }
                }
            }
            while let Some(top) = self.stack.last() {
                if top.indent > col || (top.compact && top.indent == col && !dash) {
                    self.pop();
                } else {
                    break;
                }
            }
            match self.stack.last() {
                None => {
                    if self.root_seen {
                        return bail("a document has more than one top-level node");
                    }
                    self.root_seen = true;
                    self.stack.push(Frame {
                        indent: col,
                        is_seq: dash,
                        path: Vec::new(),
                        next_index: 0,
                        compact: false,
                        owner: None,
                        last_end: end,
                    });
                }
                Some(top) if top.indent != col => {
                    return bail(
                        "a value continues on the next line, or a line is indented unusually",
                    );
                }
                Some(_) => {}
            }
            self.entry(col, pos, end)
        }

        fn entry(&mut self, col: usize, pos: usize, end: usize) -> Result<(), Bail> {
            let Some(top) = self.stack.last_mut() else {
                return bail("no open collection");
            };
            top.last_end = end;
            let is_seq = top.is_seq;
            let mut path = top.path.clone();
            if is_seq {
                path.push(top.next_index.to_string());
                top.next_index += 1;
                if !self.is_dash(pos, end) {
                    return bail("a sequence holds something other than `- ` entries");
                }
                self.node(Owner::Item(col), path, pos + 1, end)
            } else {
                if self.is_dash(pos, end) {
                    return bail("a `- ` entry where a mapping key was expected");
                }
                let Some((key, after)) = self.key_at(pos, end)? else {
                    return bail("a line is neither a `key:` nor a `- ` entry");
                };
                path.push(key);
                self.node(Owner::Key(col), path, after, end)
            }
        }

        /// Records the node after a `key:` or `-` ending at `after`.
        fn node(
            &mut self,
            owner: Owner,
            path: Vec<String>,
            after: usize,
            end: usize,
        ) -> Result<(), Bail> {
            let props_start = self.skip_spaces(after, end);
            let mut i = props_start;
            let mut props_end = props_start;
            while i < end && matches!(self.at(i), b'&' | b'!') {
                let mut j = i;
                while j < end && !self.is_space(j) {
                    j += 1;
                }
                props_end = j;
                i = self.skip_spaces(j, end);
            }
            let has_props = props_end > props_start;
            let n = self.nodes.len();
            self.nodes.push(YNode {
                doc: self.doc,
                path: path.clone(),
                owner,
                after_indicator: after,
                line_end: end,
                props: (props_start, props_end),
                value: YValue::Empty {
                    at: if has_props { props_end } else { after },
                },
            });
            if i >= end || self.at(i) == b'#' {
                self.pending = Some(n);
                return Ok(());
            }
            if let Owner::Item(_) = owner {
                let dash = self.is_dash(i, end);
                if dash || self.key_at(i, end)?.is_some() {
                    if has_props {
                        return bail("an anchor or tag before a compact collection");
                    }
                    let c = self.col(i);
                    if let Some(node) = self.nodes.get_mut(n) {
                        node.value = YValue::Block {
                            end,
                            child_indent: c,
                        };
                    }
                    self.stack.push(Frame {
                        indent: c,
                        is_seq: dash,
                        path,
                        next_index: 0,
                        compact: false,
                        owner: Some(n),
                        last_end: end,
                    });
                    return self.entry(c, i, end);
                }
            }
            let value = self.value(n, i, end, owner.indent())?;
            if let Some(node) = self.nodes.get_mut(n) {
                node.value = value;
            }
            Ok(())
        }

        fn value(&mut self, n: usize, v: usize, end: usize, parent: usize) -> Result<YValue, Bail> {
            match self.at(v) {
                c @ (b'|' | b'>') => {
                    let header_end = self.comment_start(v, end);
                    let header = self
                        .text
                        .get(v..header_end)
                        .unwrap_or("")
                        .trim_end_matches([' ', '\t']);
                    if header.len() > 3
                        || !header
                            .chars()
                            .skip(1)
                            .all(|c| matches!(c, '1'..='9' | '+' | '-'))
                    {
                        return bail("an unusual block scalar header");
                    }
                    self.block = Some((n, parent));
                    Ok(YValue::Scalar {
                        start: v,
                        end: v + header.len(),
                        style: if c == b'|' {
                            Style::Literal
                        } else {
                            Style::Folded
                        },
                    })
                }
                q @ (b'"' | b'\'') => match self.quoted(v, end, q) {
                    Some((_, close)) => {
                        self.rest_blank(close, end)?;
                        Ok(YValue::Scalar {
                            start: v,
                            end: close,
                            style: if q == b'"' {
                                Style::Double
                            } else {
                                Style::Single
                            },
                        })
                    }
                    None => bail("a quoted value spans several lines"),
                },
                b'[' | b'{' => match self.flow_end(v, end) {
                    Some(close) => {
                        self.rest_blank(close, end)?;
                        Ok(YValue::Flow {
                            start: v,
                            end: close,
                        })
                    }
                    None => bail("a flow collection spans several lines"),
                },
                b'*' => {
                    let mut j = v;
                    while j < end && !self.is_space(j) {
                        j += 1;
                    }
                    self.rest_blank(j, end)?;
                    Ok(YValue::Scalar {
                        start: v,
                        end: j,
                        style: Style::Plain,
                    })
                }
                b'@' | b'`' | b'%' => bail("a value starts with a reserved indicator"),
                _ => {
                    let stop = self.comment_start(v, end);
                    let raw = self.text.get(v..stop).unwrap_or("");
                    Ok(YValue::Scalar {
                        start: v,
                        end: v + raw.trim_end_matches([' ', '\t']).len(),
                        style: Style::Plain,
                    })
                }
            }
        }

        /// Where a ` #` comment starts on the line, or `end`.
        fn comment_start(&self, v: usize, end: usize) -> usize {
            (v + 1..end)
                .find(|&i| self.at(i) == b'#' && self.is_space(i - 1))
                .unwrap_or(end)
        }

        fn rest_blank(&self, i: usize, end: usize) -> Result<(), Bail> {
            let j = self.skip_spaces(i, end);
            if j < end && self.at(j) != b'#' {
                bail("text follows a quoted value or flow collection")
            } else {
                Ok(())
            }
        }

        /// A quoted scalar starting at `v` and closed on this line: its value and the position
        /// after the closing quote.
        fn quoted(&self, v: usize, end: usize, q: u8) -> Option<(String, usize)> {
            let mut out = String::new();
            let mut i = v + 1;
            while i < end {
                let c = self.at(i);
                if q == b'\'' && c == b'\'' {
                    if i + 1 < end && self.at(i + 1) == b'\'' {
                        out.push('\'');
                        i += 2;
                        continue;
                    }
                    return Some((out, i + 1));
                }
                if q == b'"' && c == b'"' {
                    return Some((out, i + 1));
                }
                if q == b'"' && c == b'\\' {
                    let hex = |digits: usize| {
                        self.text
                            .get(i + 2..i + 2 + digits)
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32)
                            .map(|ch| (ch, 1 + digits))
                    };
                    let (ch, used) = match self.at(i + 1) {
                        b'n' => ('\n', 1),
                        b't' | b'\t' => ('\t', 1),
                        b'r' => ('\r', 1),
                        b'0' => ('\0', 1),
                        b'a' => ('\x07', 1),
                        b'b' => ('\x08', 1),
                        b'e' => ('\x1b', 1),
                        b'f' => ('\x0c', 1),
                        b'v' => ('\x0b', 1),
                        b'"' => ('"', 1),
                        b'\\' => ('\\', 1),
                        b'/' => ('/', 1),
                        b' ' => (' ', 1),
                        b'N' => ('\u{85}', 1),
                        b'_' => ('\u{a0}', 1),
                        b'L' => ('\u{2028}', 1),
                        b'P' => ('\u{2029}', 1),
                        b'x' => hex(2)?,
                        b'u' => hex(4)?,
                        b'U' => hex(8)?,
                        _ => return None,
                    };
                    out.push(ch);
                    i += 1 + used;
                    continue;
                }
                let ch = self.text.get(i..).and_then(|s| s.chars().next())?;
                out.push(ch);
                i += ch.len_utf8();
            }
            None
        }

        /// The position after the flow collection starting at `v`, if it closes on this line.
        fn flow_end(&self, v: usize, end: usize) -> Option<usize> {
            let mut depth = 0usize;
            let mut i = v;
            while i < end {
                match self.at(i) {
                    q @ (b'"' | b'\'') => {
                        i = self.quoted(i, end, q)?.1;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    b'#' if i > v && self.is_space(i - 1) => return None,
                    _ => {}
                }
                i += 1;
            }
            None
        }

        /// A `key:` starting at `pos`: the key's text and the position after the colon.
        fn key_at(&self, pos: usize, end: usize) -> Result<Option<(String, usize)>, Bail> {
            match self.at(pos) {
                q @ (b'"' | b'\'') => {
                    let Some((key, close)) = self.quoted(pos, end, q) else {
                        return Ok(None);
                    };
                    let c = self.skip_spaces(close, end);
                    if c < end && self.at(c) == b':' && (c + 1 >= end || self.is_space(c + 1)) {
                        Ok(Some((key, c + 1)))
                    } else {
                        Ok(None)
                    }
                }
                b'?' if pos + 1 >= end || self.is_space(pos + 1) => bail("a complex `? ` key"),
                b'[' | b'{' | b'&' | b'!' | b'*' | b'|' | b'>' | b'#' | b'%' | b'@' | b'`' => {
                    Ok(None)
                }
                _ => {
                    for i in pos..end {
                        let c = self.at(i);
                        if c == b':' && (i + 1 >= end || self.is_space(i + 1)) {
                            let key = self
                                .text
                                .get(pos..i)
                                .unwrap_or("")
                                .trim_end_matches([' ', '\t']);
                            return Ok((!key.is_empty()).then(|| (key.to_string(), i + 1)));
                        }
                        if c == b'#' && i > pos && self.is_space(i - 1) {
                            return Ok(None);
                        }
                    }
                    Ok(None)
                }
            }
        }

        fn pop(&mut self) {
            let Some(frame) = self.stack.pop() else {
                return;
            };
            if let Some(YValue::Block { end, .. }) = frame
                .owner
                .and_then(|o| self.nodes.get_mut(o))
                .map(|n| &mut n.value)
            {
                *end = frame.last_end;
            }
            if let Some(parent) = self.stack.last_mut() {
                parent.last_end = parent.last_end.max(frame.last_end);
            }
        }

        fn close_doc(&mut self) {
            self.block = None;
            self.pending = None;
            while !self.stack.is_empty() {
                self.pop();
            }
            self.root_seen = false;
        }

        /// The most common indentation step of nested mappings (2 when there are none).
        fn step(&self) -> usize {
            let mut counts: HashMap<usize, usize> = HashMap::new();
            for n in &self.nodes {
                if let (Owner::Key(k), YValue::Block { child_indent, .. }) = (n.owner, &n.value) {
                    if *child_indent > k {
                        *counts.entry(child_indent - k).or_default() += 1;
                    }
                }
            }
            counts
                .into_iter()
                .max_by_key(|&(step, count)| (count, Reverse(step)))
                .map_or(2, |(step, _)| step)
        }
    }

    #[derive(Debug)]
    struct Edit {
        start: usize,
        end: usize,
        text: String,
        node: usize,
        var: usize,
        expected: Yaml,
    }

    fn make_edit(
        scan: &Scanner<'_>,
        n: usize,
        var: usize,
        value: &str,
        nl: &str,
        step: usize,
    ) -> Result<Edit, Bail> {
        let Some(node) = scan.nodes.get(n) else {
            return bail("lost a node");
        };
        let base = match node.owner {
            Owner::Key(k) => k,
            Owner::Item(d) => d + 2,
        };
        let props = scan.text.get(node.props.0..node.props.1).unwrap_or("");
        let scalar = |style: Style| scalar_text(value, style, props);
        let (start, end, text, expected) = match node.value {
            YValue::Scalar { start, end, style } => {
                let (rel, expected) = scalar(style)?;
                (start, end, continue_lines(&rel, base, nl), expected)
            }
            YValue::Empty { at } => {
                let (rel, expected) = scalar(Style::Plain)?;
                (
                    at,
                    at,
                    format!(" {}", continue_lines(&rel, base, nl)),
                    expected,
                )
            }
            YValue::Flow { .. } | YValue::Block { .. } => {
                let frag = fragment(value);
                let body = serde_yaml::to_string(&frag)
                    .map_err(|e| Bail(format!("could not write the new value: {e}")))?;
                let body = body.strip_suffix('\n').unwrap_or(&body);
                let collection = match &frag {
                    Yaml::Mapping(m) => !m.is_empty(),
                    Yaml::Sequence(s) => !s.is_empty(),
                    _ => false,
                };
                let end = node.value_end();
                match node.owner {
                    Owner::Key(k) if collection => {
                        let is_seq = matches!(frag, Yaml::Sequence(_));
                        let child = match node.value {
                            YValue::Block { child_indent, .. }
                                if child_indent > k || (child_indent == k && is_seq) =>
                            {
                                child_indent
                            }
                            _ => k + step,
                        };
                        let pad = " ".repeat(child);
                        let mut text = String::new();
                        for line in body.split('\n') {
                            text.push_str(nl);
                            if !line.is_empty() {
                                text.push_str(&pad);
                                text.push_str(line);
                            }
                        }
                        let start = if matches!(node.value, YValue::Block { .. }) {
                            node.line_end
                        } else {
                            node.after_indicator
                        };
                        (start, end, text, frag)
                    }
                    Owner::Key(k) => (
                        node.after_indicator,
                        end,
                        format!(" {}", continue_lines(body, k + step, nl)),
                        frag,
                    ),
                    Owner::Item(_) => (
                        node.after_indicator,
                        end,
                        format!(" {}", continue_lines(body, base, nl)),
                        frag,
                    ),
                }
            }
        };
        Ok(Edit {
            start,
            end,
            text,
            node: n,
            var,
            expected,
        })
    }

    fn in_place(
        text: &str,
        docs: &[Yaml],
        vars: &[Var<'_>],
        matching: &[usize],
        real: &HashMap<String, HashSet<usize>>,
    ) -> Result<Replaced, Bail> {
        let scan = Scanner::scan(text)?;
        let mut by_path: HashMap<String, Vec<usize>> = HashMap::new();
        for (n, node) in scan.nodes.iter().enumerate() {
            by_path
                .entry(node.path.join(":").to_lowercase())
                .or_default()
                .push(n);
        }
        let targeted: HashSet<usize> = matching
            .iter()
            .filter_map(|&vi| vars.get(vi).and_then(|v| by_path.get(&v.lower)))
            .flatten()
            .copied()
            .collect();
        // Variables inside a one-line flow collection (`ports: [80, 443]`) rewrite that
        // collection, in flow style, unless the collection itself is replaced.
        let mut inside_flow: HashMap<usize, Vec<usize>> = HashMap::new();
        for &vi in matching {
            let Some(var) = vars.get(vi) else { continue };
            let mut covered: HashSet<usize> = by_path
                .get(&var.lower)
                .into_iter()
                .flatten()
                .filter_map(|&n| scan.nodes.get(n).map(|node| node.doc))
                .collect();
            for (n, node) in scan.nodes.iter().enumerate() {
                let inside = matches!(node.value, YValue::Flow { .. })
                    && var
                        .lower
                        .strip_prefix(&node.path.join(":").to_lowercase())
                        .is_some_and(|rest| rest.starts_with(':'));
                if inside {
                    // A replaced collection wins over replacements inside it.
                    if !targeted.contains(&n) {
                        inside_flow.entry(n).or_default().push(vi);
                    }
                    covered.insert(node.doc);
                }
            }
            if !real
                .get(&var.lower)
                .is_some_and(|docs| docs.is_subset(&covered))
            {
                return Err(Bail(format!(
                    "`{}` is inside a structure the in-place editor does not handle",
                    var.name
                )));
            }
        }
        let nl = newline_of(text);
        let step = scan.step();
        let mut edits = Vec::new();
        for &vi in matching {
            let Some(var) = vars.get(vi) else { continue };
            for &n in by_path.get(&var.lower).into_iter().flatten() {
                edits.push(make_edit(&scan, n, vi, var.value, nl, step)?);
            }
        }
        for (n, inner) in inside_flow {
            let Some(node) = scan.nodes.get(n) else {
                continue;
            };
            let YValue::Flow { start, end } = node.value else {
                continue;
            };
            let mut doc = docs.get(node.doc).cloned().unwrap_or(Yaml::Null);
            let Some(sub) = yaml_at_mut(&mut doc, &node.path) else {
                return bail("a flow collection could not be found in the parsed file");
            };
            let prefix = node.path.len();
            let relative: Vec<Var<'_>> = inner
                .iter()
                .filter_map(|&vi| vars.get(vi))
                .map(|v| Var {
                    name: v.name,
                    lower: v
                        .lower
                        .split(':')
                        .skip(prefix)
                        .collect::<Vec<_>>()
                        .join(":"),
                    value: v.value,
                })
                .collect();
            let all: Vec<usize> = (0..relative.len()).collect();
            let used = apply_to_value(sub, &relative, &all);
            let Some(text) = flow_text(sub) else {
                return bail("a flow collection holds values that cannot be written in flow style");
            };
            for (k, &vi) in inner.iter().enumerate() {
                if used.contains(&k) {
                    edits.push(Edit {
                        start,
                        end,
                        text: text.clone(),
                        node: n,
                        var: vi,
                        expected: sub.clone(),
                    });
                }
            }
        }
        // A replaced mapping or sequence wins over replacements inside it, as in Calamari.
        edits.sort_by_key(|e| (e.start, Reverse(e.end)));
        let mut kept: Vec<Edit> = Vec::new();
        let mut used: HashSet<usize> = HashSet::new();
        for edit in edits {
            if let Some(last) = kept.last() {
                if edit.start < last.end || (edit.start == last.start && edit.end == last.end) {
                    if edit.end <= last.end {
                        // Inside a replaced structure; or the same flow collection rewrite.
                        if edit.node == last.node {
                            used.insert(edit.var);
                        }
                        continue;
                    }
                    return bail("two replacements overlap");
                }
            }
            used.insert(edit.var);
            kept.push(edit);
        }
        let mut out = String::with_capacity(text.len() + 64);
        let mut copied = 0;
        for edit in &kept {
            out.push_str(text.get(copied..edit.start).unwrap_or(""));
            out.push_str(&edit.text);
            copied = edit.end;
        }
        out.push_str(text.get(copied..).unwrap_or(""));

        let mut expected = docs.to_vec();
        for edit in &kept {
            let slot = scan
                .nodes
                .get(edit.node)
                .and_then(|node| Some((expected.get_mut(node.doc)?, &node.path)))
                .and_then(|(doc, path)| yaml_at_mut(doc, path));
            match slot {
                Some(slot) => *slot = edit.expected.clone(),
                None => return bail("a replaced setting could not be found in the parsed file"),
            }
        }
        match parse_docs(&out) {
            Ok(actual) if actual == expected => {}
            Ok(_) => return bail("the edited text did not read back as intended"),
            Err(e) => return Err(Bail(format!("the edited text did not parse: {e}"))),
        }
        Ok(Replaced {
            text: out,
            replaced: names_in_order(vars, &used),
            warnings: Vec::new(),
        })
    }

    /// Applies the variables `which` to the parsed value `root` (deepest paths first, so a
    /// replaced mapping or sequence wins) and returns the variables that took effect.
    fn apply_to_value(root: &mut Yaml, vars: &[Var<'_>], which: &[usize]) -> HashSet<usize> {
        let mut by_path: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        walk_paths(root, &mut Vec::new(), &mut |p| {
            by_path
                .entry(p.join(":").to_lowercase())
                .or_default()
                .push(p.to_vec());
        });
        let mut updates: Vec<(usize, Vec<String>)> = Vec::new();
        for &vi in which {
            if let Some(paths) = vars.get(vi).and_then(|v| by_path.get(&v.lower)) {
                updates.extend(paths.iter().map(|p| (vi, p.clone())));
            }
        }
        updates.sort_by_key(|(vi, p)| (Reverse(p.len()), *vi));
        let mut applied: Vec<(usize, Vec<String>, bool)> = Vec::new();
        for (vi, path) in updates {
            let (Some(var), Some(slot)) = (vars.get(vi), yaml_at_mut(root, &path)) else {
                continue;
            };
            let structure = matches!(untag(slot), Yaml::Mapping(_) | Yaml::Sequence(_));
            let new = if structure {
                fragment(var.value)
            } else {
                match &*slot {
                    Yaml::String(_) => Yaml::String(var.value.to_string()),
                    Yaml::Tagged(t) => Yaml::Tagged(Box::new(TaggedValue {
                        tag: t.tag.clone(),
                        value: Yaml::String(var.value.to_string()),
                    })),
                    _ if plain_ok(var.value) => serde_yaml::from_str(var.value)
                        .unwrap_or_else(|_| Yaml::String(var.value.to_string())),
                    _ => Yaml::String(var.value.to_string()),
                }
            };
            *slot = new;
            applied.push((vi, path, structure));
        }
        applied
            .iter()
            .filter(|(_, path, _)| {
                !applied.iter().any(|(_, other, structure)| {
                    *structure && other.len() < path.len() && path.starts_with(other)
                })
            })
            .map(|(vi, _, _)| *vi)
            .collect()
    }

    /// The fallback: apply the variables to the parsed documents and write them out again.
    fn rewrite(
        mut docs: Vec<Yaml>,
        vars: &[Var<'_>],
        matching: &[usize],
        text: &str,
    ) -> Result<Replaced, ParseError> {
        let mut survivors = HashSet::new();
        for doc in &mut docs {
            survivors.extend(apply_to_value(doc, vars, matching));
        }
        let mut parts = Vec::with_capacity(docs.len());
        for doc in &docs {
            parts.push(
                serde_yaml::to_string(doc)
                    .map_err(|e| ParseError::new(format!("could not write YAML: {e}")))?,
            );
        }
        let mut body = parts.join("---\n");
        if newline_of(text) == "\r\n" {
            body = body.replace('\n', "\r\n");
        }
        Ok(Replaced {
            text: body,
            replaced: names_in_order(vars, &survivors),
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::fs;

    /// Replaces in YAML and checks the file was edited in place (no fallback rewrite).
    fn yaml_in_place(text: &str, vars: &[(String, String)]) -> Replaced {
        let out = replace_yaml(text, vars).unwrap();
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        out
    }

    fn v(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    // --- JSON ------------------------------------------------------------------------------

    const APPSETTINGS: &str = r#"{
  "Logging": {
    "LogLevel": {
      "Default": "Information",
      "Microsoft.AspNetCore": "Warning"
    }
  },
  "ConnectionStrings": {
    "DefaultConnection": "Server=(localdb)\\mssqllocaldb;Database=app"
  },
  "AllowedHosts": "*",
  "Kestrel": { "Port": 5000, "UseHttps": false, "Ratio": 0.5, "Banner": null },
  "Servers": [
    { "Host": "a.local", "Port": 80 },
    { "Host": "b.local", "Port": 81 }
  ],
  "Features": ["x", "y"]
}
"#;

    #[test]
    fn json_appsettings_nested_keys_and_connection_strings() {
        let out = replace_json(
            APPSETTINGS,
            &v(&[
                ("Logging:LogLevel:Default", "Debug"),
                (
                    "ConnectionStrings:DefaultConnection",
                    "Server=db;Database=prod;User Id=app",
                ),
                ("AllowedHosts", "example.com"),
                ("Unrelated", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            out.replaced,
            vec![
                "Logging:LogLevel:Default",
                "ConnectionStrings:DefaultConnection",
                "AllowedHosts"
            ]
        );
        let parsed: Json = serde_json::from_str(&out.text).unwrap();
        assert_eq!(parsed["Logging"]["LogLevel"]["Default"], "Debug");
        assert_eq!(
            parsed["Logging"]["LogLevel"]["Microsoft.AspNetCore"],
            "Warning"
        );
        assert_eq!(
            parsed["ConnectionStrings"]["DefaultConnection"],
            "Server=db;Database=prod;User Id=app"
        );
        assert_eq!(parsed["AllowedHosts"], "example.com");
        // Key order is kept and the output is indented by two spaces, ending with a newline.
        assert!(out.text.starts_with(
            "{\n  \"Logging\": {\n    \"LogLevel\": {\n      \"Default\": \"Debug\",\n"
        ));
        let keys: Vec<&String> = parsed.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            vec![
                "Logging",
                "ConnectionStrings",
                "AllowedHosts",
                "Kestrel",
                "Servers",
                "Features"
            ]
        );
        assert!(out.text.ends_with("}\n"));
    }

    #[test]
    fn json_exact_output_for_a_small_file() {
        let out = replace_json(
            "{\n  \"a\": {\n    \"b\": 1\n  },\n  \"c\": [\n    true\n  ]\n}",
            &v(&[("a:b", "2"), ("c:0", "false")]),
        )
        .unwrap();
        assert_eq!(
            out.text,
            "{\n  \"a\": {\n    \"b\": 2\n  },\n  \"c\": [\n    false\n  ]\n}"
        );
    }

    #[test]
    fn json_arrays_by_index_and_whole_subtrees() {
        let out = replace_json(
            APPSETTINGS,
            &v(&[
                ("Servers:0:Host", "prod-a.example.com"),
                (
                    "Servers:1",
                    r#"{"Host": "c.local", "Port": 443, "Tls": true}"#,
                ),
                ("Features", r#"["only"]"#),
                ("Kestrel", r#"{"Port": 8443}"#),
            ]),
        )
        .unwrap();
        let parsed: Json = serde_json::from_str(&out.text).unwrap();
        assert_eq!(parsed["Servers"][0]["Host"], "prod-a.example.com");
        assert_eq!(parsed["Servers"][0]["Port"], 80);
        assert_eq!(
            parsed["Servers"][1],
            serde_json::json!({"Host": "c.local", "Port": 443, "Tls": true})
        );
        assert_eq!(parsed["Features"], serde_json::json!(["only"]));
        assert_eq!(parsed["Kestrel"], serde_json::json!({"Port": 8443}));
    }

    #[test]
    fn json_keeps_scalar_types_where_it_can() {
        let out = replace_json(
            APPSETTINGS,
            &v(&[
                ("Kestrel:Port", "8443"),
                ("Kestrel:UseHttps", "True"),
                ("Kestrel:Ratio", "0.75"),
                ("Kestrel:Banner", "hello"),
                ("Servers:0:Port", "not-a-number"),
                ("Servers:1:Host", "123"),
            ]),
        )
        .unwrap();
        let parsed: Json = serde_json::from_str(&out.text).unwrap();
        assert_eq!(parsed["Kestrel"]["Port"], serde_json::json!(8443));
        assert_eq!(parsed["Kestrel"]["UseHttps"], serde_json::json!(true));
        assert_eq!(parsed["Kestrel"]["Ratio"], serde_json::json!(0.75));
        assert_eq!(parsed["Kestrel"]["Banner"], serde_json::json!("hello"));
        assert_eq!(
            parsed["Servers"][0]["Port"],
            serde_json::json!("not-a-number")
        );
        assert_eq!(parsed["Servers"][1]["Host"], serde_json::json!("123"));

        let out = replace_json(
            r#"{"on": true, "n": 1}"#,
            &v(&[("on", "yes"), ("n", "2.5")]),
        )
        .unwrap();
        let parsed: Json = serde_json::from_str(&out.text).unwrap();
        assert_eq!(parsed, serde_json::json!({"on": "yes", "n": 2.5}));
    }

    #[test]
    fn json_keys_match_ignoring_case() {
        let out = replace_json(
            APPSETTINGS,
            &v(&[
                ("logging:loglevel:DEFAULT", "Trace"),
                ("servers:0:HOST", "z"),
            ]),
        )
        .unwrap();
        let parsed: Json = serde_json::from_str(&out.text).unwrap();
        assert_eq!(parsed["Logging"]["LogLevel"]["Default"], "Trace");
        assert_eq!(parsed["Servers"][0]["Host"], "z");
        assert_eq!(
            out.replaced,
            vec!["logging:loglevel:DEFAULT", "servers:0:HOST"]
        );
    }

    #[test]
    fn json_octopus_variables_are_ignored_unless_they_are_paths() {
        let text =
            r#"{"Octopus": {"Url": "old"}, "OctopusServer": "old", "Octopus.Action.Name": "old"}"#;
        let out = replace_json(
            text,
            &v(&[
                ("Octopus:Url", "new"),
                ("OctopusServer", "ignored"),
                ("Octopus.Action.Name", "ignored"),
            ]),
        )
        .unwrap();
        let parsed: Json = serde_json::from_str(&out.text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"Octopus": {"Url": "new"}, "OctopusServer": "old", "Octopus.Action.Name": "old"})
        );
    }

    #[test]
    fn json_subtree_value_that_is_not_json_warns_and_leaves_it() {
        let out = replace_json(
            APPSETTINGS,
            &v(&[("Logging", "not json"), ("AllowedHosts", "ok")]),
        )
        .unwrap();
        let parsed: Json = serde_json::from_str(&out.text).unwrap();
        assert_eq!(parsed["Logging"]["LogLevel"]["Default"], "Information");
        assert_eq!(out.replaced, vec!["AllowedHosts"]);
        assert_eq!(out.warnings.len(), 1);
        assert!(out.warnings[0].contains("`Logging`"), "{}", out.warnings[0]);
        assert!(out.warnings[0].contains("object"), "{}", out.warnings[0]);
    }

    #[test]
    fn json_a_replaced_object_wins_over_replacements_inside_it() {
        for vars in [
            v(&[
                ("Logging", r#"{"Level": "Error"}"#),
                ("Logging:LogLevel:Default", "Debug"),
            ]),
            v(&[
                ("Logging:LogLevel:Default", "Debug"),
                ("Logging", r#"{"Level": "Error"}"#),
            ]),
        ] {
            let out = replace_json(APPSETTINGS, &vars).unwrap();
            let parsed: Json = serde_json::from_str(&out.text).unwrap();
            assert_eq!(parsed["Logging"], serde_json::json!({"Level": "Error"}));
            assert_eq!(out.replaced, vec!["Logging"]);
        }
    }

    #[test]
    fn json_later_values_win_and_top_level_arrays_work() {
        let out = replace_json(
            "[{\"Name\": \"a\"}, {\"Name\": \"b\"}]",
            &v(&[("1:Name", "first"), ("1:name", "second")]),
        )
        .unwrap();
        let parsed: Json = serde_json::from_str(&out.text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([{"Name": "a"}, {"Name": "second"}])
        );
        assert_eq!(out.replaced, vec!["1:Name"]);
    }

    #[test]
    fn json_accepts_comments_and_trailing_commas() {
        let text = "{\n  // the port\n  \"Port\": 80, /* inline */\n  \"List\": [1, 2,],\n  \"Url\": \"http://x\",\n}\n";
        let out = replace_json(text, &v(&[("Port", "81")])).unwrap();
        assert_eq!(
            out.text,
            "{\n  \"Port\": 81,\n  \"List\": [\n    1,\n    2\n  ],\n  \"Url\": \"http://x\"\n}\n"
        );
    }

    #[test]
    fn json_keeps_indentation_style_and_line_breaks() {
        let out = replace_json(
            "{\r\n    \"a\": {\r\n        \"b\": 1\r\n    }\r\n}",
            &v(&[("a:b", "2")]),
        )
        .unwrap();
        assert_eq!(
            out.text,
            "{\r\n    \"a\": {\r\n        \"b\": 2\r\n    }\r\n}"
        );
        let out = replace_json("{\n\t\"a\": 1\n}\n", &v(&[("a", "2")])).unwrap();
        assert_eq!(out.text, "{\n\t\"a\": 2\n}\n");
    }

    #[test]
    fn json_unmatched_files_are_not_reformatted() {
        let text = "{ \"a\":1,   \"b\" : [1,2] }";
        let out = replace_json(text, &v(&[("c", "x"), ("a:b", "y")])).unwrap();
        assert_eq!(out.text, text);
        assert!(out.replaced.is_empty());
        assert_eq!(
            replace_json("  \n", &v(&[("a", "b")])).unwrap().text,
            "  \n"
        );
    }

    #[test]
    fn json_that_does_not_parse_is_an_error() {
        let err = replace_json("{\"a\": }", &v(&[("a", "1")])).unwrap_err();
        assert!(err.message.contains("line 1"), "{err}");
    }

    #[test]
    fn json_strings_are_escaped() {
        let out = replace_json(r#"{"a": "x"}"#, &v(&[("a", "quote \" back \\ tab \t é")])).unwrap();
        let parsed: Json = serde_json::from_str(&out.text).unwrap();
        assert_eq!(parsed["a"], "quote \" back \\ tab \t é");
    }

    // --- YAML ------------------------------------------------------------------------------

    const APPLICATION_YML: &str = "\
# Spring Boot settings
spring:
  datasource:
    url: jdbc:h2:mem:test   # in-memory for dev
    username: \"sa\"
    password: ''
  h2:
    console:
      enabled: true
server:
  port: 8080
  ports:
    - 8080
    - 8081
environment: development
loggers:
  - name: console
    level: info
  - name: file   # rolling
    level: debug
empty:
";

    #[test]
    fn yaml_replaces_nested_keys_and_lists_keeping_comments() {
        let out = replace_yaml(
            APPLICATION_YML,
            &v(&[
                ("spring:datasource:url", "jdbc:postgresql://db:5432/app"),
                ("Spring:Datasource:Username", "app"),
                ("spring:datasource:password", "it's secret"),
                ("spring:h2:console:enabled", "false"),
                ("server:ports:0", "9090"),
                ("loggers:1:name", "rolling-file"),
                ("environment", "production"),
                ("empty", "filled"),
            ]),
        )
        .unwrap();
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        assert_eq!(
            out.text,
            "\
# Spring Boot settings
spring:
  datasource:
    url: jdbc:postgresql://db:5432/app   # in-memory for dev
    username: \"app\"
    password: 'it''s secret'
  h2:
    console:
      enabled: false
server:
  port: 8080
  ports:
    - 9090
    - 8081
environment: production
loggers:
  - name: console
    level: info
  - name: rolling-file   # rolling
    level: debug
empty: filled
"
        );
        assert_eq!(out.replaced.len(), 8);
    }

    #[test]
    fn yaml_plain_scalars_take_the_values_type_and_quoted_ones_stay_strings() {
        let text = "a: x\nb: \"x\"\nc: 1\nd: x\ne: x\nf: x\n";
        let out = yaml_in_place(
            text,
            &v(&[
                ("a", "8080"),
                ("b", "8080"),
                ("c", "true"),
                ("d", "needs: quotes"),
                ("e", "line1\nline2"),
                ("f", ""),
            ]),
        );
        assert_eq!(
            out.text,
            "a: 8080\nb: \"8080\"\nc: true\nd: 'needs: quotes'\ne: \"line1\\nline2\"\nf: ''\n"
        );
    }

    #[test]
    fn yaml_structures_are_replaced_by_parsed_values() {
        let out = replace_yaml(
            APPLICATION_YML,
            &v(&[
                (
                    "spring:datasource",
                    r#"{"url": "jdbc:x", "pool": {"size": 5}}"#,
                ),
                ("server:ports", "[80, 443]"),
                ("loggers", "none"),
            ]),
        )
        .unwrap();
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        assert_eq!(
            out.text,
            "\
# Spring Boot settings
spring:
  datasource:
    url: jdbc:x
    pool:
      size: 5
  h2:
    console:
      enabled: true
server:
  port: 8080
  ports:
    - 80
    - 443
environment: development
loggers: none
empty:
"
        );
    }

    #[test]
    fn yaml_replaced_mapping_wins_over_replacements_inside_it() {
        let out = yaml_in_place(
            APPLICATION_YML,
            &v(&[
                ("spring:datasource:url", "x"),
                ("spring:datasource", "none"),
            ]),
        );
        assert!(
            out.text.contains("spring:\n  datasource: none\n  h2:"),
            "{}",
            out.text
        );
        assert_eq!(out.replaced, vec!["spring:datasource"]);
    }

    #[test]
    fn yaml_sequence_items_can_be_replaced_whole() {
        let text =
            "pets:\n- name: Susan\n  species: Cuttlefish\n- name: Craig\n  species: Ray\nlast: 1\n";
        let out = yaml_in_place(
            text,
            &v(&[
                ("pets:0", r#"{"name": "Ann", "species": "Owl"}"#),
                ("pets:1:species", "Manta Ray"),
            ]),
        );
        assert_eq!(
            out.text,
            "pets:\n- name: Ann\n  species: Owl\n- name: Craig\n  species: Manta Ray\nlast: 1\n"
        );
    }

    #[test]
    fn yaml_compact_and_nested_sequences() {
        let text = "matrix:\n- - a\n  - b\n- - c\nkeys:\n- x\n- y\n";
        let out = yaml_in_place(
            text,
            &v(&[("matrix:0:1", "B"), ("matrix:1", "[1, 2]"), ("keys", "[z]")]),
        );
        assert_eq!(
            out.text,
            "matrix:\n- - a\n  - B\n- - 1\n  - 2\nkeys:\n- z\n"
        );
    }

    #[test]
    fn yaml_block_scalars_stay_blocks() {
        let text = "script: |\n  echo one\n  echo two\nafter: 1\n";
        let out = yaml_in_place(text, &v(&[("script", "echo three\necho four\n")]));
        assert_eq!(out.text, "script: |\n  echo three\n  echo four\nafter: 1\n");
        let out = yaml_in_place(text, &v(&[("script", "single")]));
        assert_eq!(out.text, "script: |-\n  single\nafter: 1\n");
    }

    #[test]
    fn yaml_every_document_is_replaced() {
        let text = "kind: Service\nmetadata:\n  name: web\n---\nkind: Deployment\nmetadata:\n  name: web\n";
        let out = yaml_in_place(text, &v(&[("metadata:name", "api")]));
        assert_eq!(
            out.text,
            "kind: Service\nmetadata:\n  name: api\n---\nkind: Deployment\nmetadata:\n  name: api\n"
        );
    }

    #[test]
    fn yaml_keeps_crlf_and_anchors() {
        let text = "base: &b\r\n  x: 1\r\ny: &n 2 # note\r\n";
        let out = yaml_in_place(text, &v(&[("base:x", "3"), ("y", "4")]));
        assert_eq!(out.text, "base: &b\r\n  x: 3\r\ny: &n 4 # note\r\n");
    }

    #[test]
    fn yaml_octopus_names_are_ignored_unless_paths() {
        let text = "Octopus:\n  Section: a\nOctopusRocks: b\n";
        let out = yaml_in_place(
            text,
            &v(&[
                ("Octopus:Section", "new"),
                ("OctopusRocks", "x"),
                ("Octopus", "y"),
            ]),
        );
        assert_eq!(out.text, "Octopus:\n  Section: new\nOctopusRocks: b\n");
    }

    #[test]
    fn yaml_flow_collections_are_rewritten_in_flow_style() {
        let text = "# comment\nports: [80, 443] # web\nargs: {debug: true, name: 'x'}\nname: web\n";
        let out = yaml_in_place(
            text,
            &v(&[
                ("ports:1", "8443"),
                ("args:name", "a, b"),
                ("args:debug", "false"),
            ]),
        );
        assert_eq!(
            out.text,
            "# comment\nports: [80, 8443] # web\nargs: {debug: false, name: \"a, b\"}\nname: web\n"
        );
        assert_eq!(out.replaced, vec!["ports:1", "args:name", "args:debug"]);
        // The whole flow collection can be replaced too (it then wins).
        let out = yaml_in_place(text, &v(&[("ports:0", "1"), ("ports", "[1]")]));
        assert_eq!(
            out.text,
            "# comment\nports:\n  - 1 # web\nargs: {debug: true, name: 'x'}\nname: web\n"
        );
        assert_eq!(out.replaced, vec!["ports"]);
    }

    #[test]
    fn yaml_layouts_the_editor_does_not_model_fall_back_to_a_rewrite() {
        let text = "# comment\nports: [80,\n  443]\nname: web\n";
        let out = replace_yaml(text, &v(&[("ports:1", "8443")])).unwrap();
        assert_eq!(out.text, "ports:\n- 80\n- 8443\nname: web\n");
        assert_eq!(out.replaced, vec!["ports:1"]);
        assert_eq!(out.warnings.len(), 1);
        assert!(out.warnings[0].contains("comments"), "{}", out.warnings[0]);
    }

    #[test]
    fn yaml_aliases_of_replaced_anchors_fall_back_safely() {
        let text = "a: &x 1\nb: *x\n";
        let out = replace_yaml(text, &v(&[("a", "2")])).unwrap();
        let docs: Yaml = serde_yaml::from_str(&out.text).unwrap();
        assert_eq!(docs["a"], Yaml::from(2));
        assert_eq!(out.replaced, vec!["a"]);
    }

    #[test]
    fn yaml_that_does_not_parse_is_an_error() {
        let err = replace_yaml("a: [1, 2\nb: c\n", &v(&[("a", "1")])).unwrap_err();
        assert!(err.message.contains("line"), "{err}");
    }

    #[test]
    fn yaml_without_matches_is_untouched() {
        let out = replace_yaml(
            APPLICATION_YML,
            &v(&[("nope", "x"), ("server:port:x", "y")]),
        )
        .unwrap();
        assert_eq!(out.text, APPLICATION_YML);
        assert!(out.replaced.is_empty());
    }

    use serde_yaml::Value as Yaml;

    // --- Properties ------------------------------------------------------------------------

    const EXAMPLE_PROPERTIES: &str = "key1:old-value1\nkey2 = old-value2\nke\\\n  y3 old-value3\nkey\\n4:old-value4\n\n! We should gracefully handle comments\n# of both types, and\n\n# empty lines.\n\nkey5:\nkey6\n    key7: This is fine\nkey\\\n  \\\n  \\\n  \\\n  8: This is fine too\nOctopus.Release.Id:12";

    #[test]
    fn properties_simple_and_continued_keys() {
        let out = replace_properties(
            EXAMPLE_PROPERTIES,
            &v(&[
                ("key1", "new-value"),
                ("key3", "three"),
                ("key8", "eight"),
                ("key7", "seven"),
            ]),
        );
        assert_eq!(
            out.text,
            "key1:new-value\nkey2 = old-value2\nke\\\n  y3 three\nkey\\n4:old-value4\n\n! We should gracefully handle comments\n# of both types, and\n\n# empty lines.\n\nkey5:\nkey6\n    key7: seven\nkey\\\n  \\\n  \\\n  \\\n  8: eight\nOctopus.Release.Id:12"
        );
        assert_eq!(out.replaced, vec!["key1", "key3", "key8", "key7"]);
    }

    #[test]
    fn properties_empty_values_missing_separators_and_escaped_keys() {
        let out = replace_properties(
            EXAMPLE_PROPERTIES,
            &v(&[
                ("key5", "  new value"),
                ("key6", "  new value"),
                ("key\n4", "four"),
            ]),
        );
        assert!(out.text.contains("\nkey5:\\  new value\n"), "{}", out.text);
        assert!(out.text.contains("\nkey6:\\  new value\n"), "{}", out.text);
        assert!(out.text.contains("\nkey\\n4:four\n"), "{}", out.text);
    }

    #[test]
    fn properties_values_are_escaped() {
        let out = replace_properties(
            "key1:old\n",
            &v(&[("key1", "back\\slash\r\nnew\tline Θctopus 😀")]),
        );
        assert_eq!(
            out.text,
            "key1:back\\\\slash\\r\\nnew\\tline \\u0398ctopus \\uD83D\\uDE00\n"
        );
    }

    #[test]
    fn properties_ignore_octopus_keys_and_match_ignoring_case() {
        let out = replace_properties(
            EXAMPLE_PROPERTIES,
            &v(&[("Octopus.Release.Id", "999"), ("KEY2", "two")]),
        );
        assert!(out.text.contains("key2 = two\n"));
        assert!(out.text.ends_with("Octopus.Release.Id:12"));
        assert_eq!(out.replaced, vec!["KEY2"]);
    }

    #[test]
    fn properties_keys_are_literal_with_unicode_and_colons() {
        let text = "# Spring\nserver.port=8080\nspring.datasource.url = jdbc:h2:mem\na\\:b=1\nk\\u1e1by=old\r\nserver.port=9000\n";
        let out = replace_properties(
            text,
            &v(&[
                ("server.port", "80"),
                ("spring.datasource.url", "jdbc:postgresql://db/app"),
                ("a:b", "2"),
                ("kḛy", "new"),
                ("server", "no"),
            ]),
        );
        assert_eq!(
            out.text,
            "# Spring\nserver.port=80\nspring.datasource.url = jdbc:postgresql://db/app\na\\:b=2\nk\\u1e1by=new\r\nserver.port=80\n"
        );
    }

    #[test]
    fn properties_continued_values_are_replaced_whole() {
        let text = "list = one, \\\n       two, \\\n       three\nnext=1\n";
        let out = replace_properties(text, &v(&[("list", "four")]));
        assert_eq!(out.text, "list = four\nnext=1\n");
    }

    #[test]
    fn properties_without_matches_are_untouched() {
        let out = replace_properties(EXAMPLE_PROPERTIES, &v(&[("nothing", "x")]));
        assert_eq!(out.text, EXAMPLE_PROPERTIES);
        assert!(out.replaced.is_empty());
        assert_eq!(replace_properties("", &v(&[("a", "b")])).text, "");
    }

    // --- Files -----------------------------------------------------------------------------

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

    #[test]
    fn files_matched_by_globs_are_replaced_and_reported() {
        let dir = tree(&[
            ("appsettings.json", APPSETTINGS.as_bytes()),
            (
                "config/app.json",
                b"{\"Logging\": {\"LogLevel\": {\"Default\": \"x\"}}}",
            ),
            ("config/other.json", b"{\"Unrelated\": 1}"),
            ("config/application.yml", APPLICATION_YML.as_bytes()),
        ]);
        let report = replace_structured(
            dir.path(),
            "**/*.json\nconfig/*.yml\nmissing/*.json",
            &v(&[
                ("Logging:LogLevel:Default", "Warning"),
                ("server:port", "80"),
            ]),
            false,
        )
        .unwrap();
        let summary: Vec<(String, StructuredFormat, Vec<String>, bool)> = report
            .files
            .iter()
            .map(|f| {
                (
                    f.path.display().to_string(),
                    f.format,
                    f.replaced.clone(),
                    f.changed,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "appsettings.json".to_string(),
                    StructuredFormat::Json,
                    vec!["Logging:LogLevel:Default".to_string()],
                    true
                ),
                (
                    "config/app.json".to_string(),
                    StructuredFormat::Json,
                    vec!["Logging:LogLevel:Default".to_string()],
                    true
                ),
                (
                    "config/other.json".to_string(),
                    StructuredFormat::Json,
                    vec![],
                    false
                ),
                (
                    "config/application.yml".to_string(),
                    StructuredFormat::Yaml,
                    vec!["server:port".to_string()],
                    true
                ),
            ]
        );
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].contains("missing/*.json"));
        assert_eq!(read(&dir, "config/other.json"), "{\"Unrelated\": 1}");
        assert!(read(&dir, "config/application.yml").contains("\n  port: 80\n"));
        assert!(read(&dir, "config/app.json").contains("\"Default\": \"Warning\""));
    }

    #[test]
    fn files_yaml_that_is_json_is_handled_as_json() {
        let dir = tree(&[("values.yaml", b"{\"a\": 1}")]);
        let report =
            replace_structured(dir.path(), "values.yaml", &v(&[("a", "2")]), false).unwrap();
        assert_eq!(report.files[0].format, StructuredFormat::Json);
        assert_eq!(read(&dir, "values.yaml"), "{\n  \"a\": 2\n}");
    }

    #[test]
    fn files_of_unknown_type_try_json_yaml_then_properties() {
        let dir = tree(&[
            ("a.conf", b"{\"k\": \"v\"}"),
            ("b.conf", b"k: v\n"),
            ("c.conf", b"# props\nk=v\n"),
        ]);
        let report = replace_structured(dir.path(), "*.conf", &v(&[("k", "new")]), false).unwrap();
        let formats: Vec<_> = report.files.iter().map(|f| f.format).collect();
        assert_eq!(
            formats,
            vec![
                StructuredFormat::Json,
                StructuredFormat::Yaml,
                StructuredFormat::Properties
            ]
        );
        assert_eq!(read(&dir, "b.conf"), "k: new\n");
        assert_eq!(read(&dir, "c.conf"), "# props\nk=new\n");
    }

    #[test]
    fn files_properties_extension_and_xml_warning() {
        let dir = tree(&[
            ("app.properties", b"a=1\n"),
            ("web.xml", b"<configuration><a>1</a></configuration>"),
        ]);
        let report = replace_structured(
            dir.path(),
            "app.properties\nweb.xml",
            &v(&[("a", "2")]),
            false,
        )
        .unwrap();
        assert_eq!(report.files.len(), 1);
        assert_eq!(report.files[0].format, StructuredFormat::Properties);
        assert_eq!(read(&dir, "app.properties"), "a=2\n");
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].contains("XML is not supported yet"));
        assert!(report.warnings[0].contains("web.xml"));
    }

    #[test]
    fn files_that_parse_in_no_format_are_errors() {
        let dir = tree(&[("bad.json", b"{ nope"), ("bad.yaml", b"a: [1\n")]);
        let err = replace_structured(dir.path(), "bad.json", &v(&[("a", "1")]), false).unwrap_err();
        assert!(
            matches!(&err, StructuredError::Parse { path, format: StructuredFormat::Json, .. } if path == Path::new("bad.json")),
            "{err}"
        );
        let err = replace_structured(dir.path(), "bad.yaml", &v(&[("a", "1")]), false).unwrap_err();
        assert!(
            matches!(
                &err,
                StructuredError::Parse {
                    format: StructuredFormat::Yaml,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("bad.yaml"));
    }

    #[test]
    fn files_json_only_flag_parses_everything_as_json() {
        let dir = tree(&[("app.yml", b"a: 1\n")]);
        let err = replace_structured(dir.path(), "app.yml", &v(&[("a", "2")]), true).unwrap_err();
        assert!(matches!(
            err,
            StructuredError::Parse {
                format: StructuredFormat::Json,
                ..
            }
        ));
    }

    #[test]
    fn files_keep_their_encoding() {
        let mut utf16 = vec![0xFF, 0xFE];
        for u in "{\r\n  \"a\": \"é\"\r\n}".encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let dir = tree(&[
            ("bom.json", b"\xEF\xBB\xBF{\n  \"a\": 1\n}\n"),
            ("wide.json", &utf16),
            ("latin.properties", b"name=caf\xE9\n"),
        ]);
        let report = replace_structured(
            dir.path(),
            "*.json\n*.properties",
            &v(&[("a", "2"), ("name", "Zoë")]),
            false,
        )
        .unwrap();
        assert_eq!(
            fs::read(dir.path().join("bom.json")).unwrap(),
            b"\xEF\xBB\xBF{\n  \"a\": 2\n}\n"
        );
        let mut expected = vec![0xFF, 0xFE];
        for u in "{\r\n  \"a\": \"2\"\r\n}".encode_utf16() {
            expected.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(fs::read(dir.path().join("wide.json")).unwrap(), expected);
        assert_eq!(
            fs::read(dir.path().join("latin.properties")).unwrap(),
            b"name=Zo\\u00EB\n"
        );
        let encodings: Vec<_> = report.files.iter().map(|f| f.encoding).collect();
        assert_eq!(
            encodings,
            vec![
                TextEncoding::Utf8Bom,
                TextEncoding::Utf16Le,
                TextEncoding::Windows1252
            ]
        );
    }

    #[test]
    fn files_outside_the_root_are_refused() {
        let dir = tree(&[("a.json", b"{}")]);
        let err = replace_structured(dir.path(), "../a.json", &v(&[]), false).unwrap_err();
        assert!(matches!(err, StructuredError::Pattern { .. }));
    }

    #[test]
    fn files_warnings_from_values_name_the_file() {
        let dir = tree(&[("a.json", b"{\"o\": {}}")]);
        let report = replace_structured(dir.path(), "a.json", &v(&[("o", "{bad")]), false).unwrap();
        assert!(
            report.warnings[0].starts_with("`a.json`: unable to set `o`"),
            "{:?}",
            report.warnings
        );
        assert!(!report.files[0].changed);
    }

    // --- Edge cases and properties -------------------------------------------------------------

    #[test]
    fn yaml_alias_bombs_are_refused_not_expanded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        text.push_str("target: 1\n");
        // Either refused as invalid or handled; it must not hang or exhaust memory.
        let _ = replace_yaml(&text, &v(&[("target", "2")]));
    }

    #[test]
    fn yaml_unusual_layouts_are_handled_in_place_or_by_rewrite() {
        let cases = [
            "a:\n  b: 1\n  # trailing comment\nc: 2\n",
            "a: \"multi\n  line\"\nc: 2\n",
            "a: plain\n  continued\nc: 2\n",
            "? complex\n: 1\nc: 2\n",
            "a: {b: 1, c: [2, 3]}\nc: 2\n",
            "%YAML 1.2\n---\nc: 2\n...\n",
            "- c: 2\n  d: 3\n- c: 4\n",
            "c: !!str 2\n",
            "c: !custom 2\n",
            "\"c\": 2\n'd': 3\n",
            "c:    2    # spaced\n",
            "c: >\n  folded\n  text\n\nd: 1\n",
            "c: |2\n   indented\nd: 1\n",
        ];
        for text in cases {
            let out = replace_yaml(text, &v(&[("c", "9"), ("0:c", "9"), ("a:b", "9")]))
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let docs: Vec<Yaml> = serde_yaml::Deserializer::from_str(&out.text)
                .map(|d| <Yaml as serde::Deserialize>::deserialize(d).unwrap())
                .collect();
            assert!(!docs.is_empty(), "{text:?}");
            assert!(!out.replaced.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn yaml_keys_with_colons_and_quotes() {
        let out = yaml_in_place(
            "\"a:b\": 1\nhttp://x: 2\n'it''s': 3\n",
            &v(&[("a:b", "9"), ("http://x", "8"), ("it's", "7")]),
        );
        // Paths are compared as joined text (as in Calamari), so a key containing a colon
        // is reachable by the same text.
        assert_eq!(out.text, "\"a:b\": 9\nhttp://x: 8\n'it''s': 7\n");
    }

    #[test]
    fn yaml_unknown_type_needs_a_structure() {
        assert!(yaml::replace("just a string\n", &v(&[("a", "b")]), true).is_err());
        assert!(yaml::replace("just a string\n", &v(&[("a", "b")]), false).is_ok());
    }

    /// Decodes a properties value as `java.util.Properties` would.
    fn java_unescape(raw: &str) -> String {
        let mut out = String::new();
        let mut units: Vec<u16> = Vec::new();
        let mut chars = raw.chars().peekable();
        let flush = |units: &mut Vec<u16>, out: &mut String| {
            out.push_str(&String::from_utf16_lossy(units));
            units.clear();
        };
        while let Some(c) = chars.next() {
            if c != '\\' {
                flush(&mut units, &mut out);
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    units.push(u16::from_str_radix(&hex, 16).unwrap());
                }
                Some(e) => {
                    flush(&mut units, &mut out);
                    out.push(match e {
                        't' => '\t',
                        'n' => '\n',
                        'r' => '\r',
                        'f' => '\x0c',
                        other => other,
                    });
                }
                None => {}
            }
        }
        flush(&mut units, &mut out);
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn properties_values_read_back(value in "\\PC*", sep in "[=: ]| = |\t") {
            let text = format!("# c\nkey{sep}old\nother=1\n");
            let out = replace_properties(&text, &v(&[("key", &value)]));
            let entries = parse_properties(&out.text);
            proptest::prop_assert_eq!(entries.len(), 2);
            let raw = &out.text[entries[0].value_start..entries[0].value_end];
            proptest::prop_assert_eq!(java_unescape(raw), value);
            proptest::prop_assert!(out.text.ends_with("\nother=1\n"));
        }

        #[test]
        fn properties_parser_never_panics(text in "[a-z=: \\\\\n\r\t#!u0-9é]{0,60}") {
            let _ = replace_properties(&text, &v(&[("a", "b"), ("ab", "c")]));
        }

        #[test]
        fn yaml_scalars_are_edited_in_place_and_read_back(value in "\\PC*|[a-z0-9 :#'\"\\n-]{0,12}") {
            let text = "plain: x\nsingle: 'x'\ndouble: \"x\"\nblock: |\n  x\nlist:\n- x\nnothing:\n";
            let out = replace_yaml(
                text,
                &v(&[("plain", &value), ("single", &value), ("double", &value), ("block", &value), ("list:0", &value), ("nothing", &value)]),
            ).unwrap();
            proptest::prop_assert!(out.warnings.is_empty(), "{:?}", out.warnings);
            let doc: Yaml = serde_yaml::from_str(&out.text).unwrap();
            let text_value = Yaml::String(value.clone());
            proptest::prop_assert_eq!(&doc["single"], &text_value);
            proptest::prop_assert_eq!(&doc["double"], &text_value);
            proptest::prop_assert_eq!(&doc["block"], &text_value);
            let plain = if yaml::plain_ok(&value) { serde_yaml::from_str(&value).unwrap() } else { text_value.clone() };
            proptest::prop_assert_eq!(&doc["plain"], &plain);
            proptest::prop_assert_eq!(&doc["list"][0], &plain);
            proptest::prop_assert_eq!(&doc["nothing"], &plain);
        }

        #[test]
        fn yaml_structures_take_any_value(value in "\\PC{0,20}|\\{\"[a-z]\": [0-9]\\}|\\[[0-9], [a-z]\\]") {
            let text = "map:\n  a: 1\nseq:\n  - 1\nitems:\n- a: 1\n  b: 2\nflow: [1]\n";
            let out = replace_yaml(text, &v(&[("map", &value), ("seq", &value), ("items:0", &value), ("flow", &value)])).unwrap();
            proptest::prop_assert!(out.warnings.is_empty(), "{:?}\n{}", out.warnings, out.text);
            let _: Yaml = serde_yaml::from_str(&out.text).unwrap();
        }

        #[test]
        fn yaml_and_json_never_panic(text in "[a-z:\\- \\n\"'\\[\\]{},#&*!|>0-9]{0,80}") {
            let vars = v(&[("a", "1"), ("a:b", "x: y"), ("0", "[1]"), ("b:0", "{}")]);
            if let Ok(out) = replace_yaml(&text, &vars) {
                if !out.replaced.is_empty() {
                    let docs: Result<Vec<Yaml>, _> = serde_yaml::Deserializer::from_str(&out.text)
                        .map(<Yaml as serde::Deserialize>::deserialize)
                        .collect();
                    proptest::prop_assert!(docs.is_ok(), "{:?} -> {:?}", text, out.text);
                }
            }
            let _ = replace_json(&text, &vars);
        }

        #[test]
        fn json_output_always_parses(value in "\\PC*") {
            let text = r#"{"s": "x", "n": 1, "b": true, "z": null, "o": {"a": 1}, "l": [1]}"#;
            let out = replace_json(text, &v(&[("s", &value), ("n", &value), ("b", &value), ("z", &value), ("o", &value), ("l:0", &value)])).unwrap();
            let parsed: Json = serde_json::from_str(&out.text).unwrap();
            proptest::prop_assert_eq!(&parsed["s"], &Json::from(value.clone()));
            proptest::prop_assert_eq!(&parsed["z"], &Json::from(value.clone()));
        }
    }
}
