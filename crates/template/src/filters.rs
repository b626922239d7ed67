//! The built-in filters (`#{Name | Filter args}`).
//!
//! Each filter takes the value (or `None` when the variable is undefined) and the evaluated
//! arguments, and returns `None` when it cannot produce a result — for example an unknown
//! filter, a missing or invalid argument, or input it cannot read. `None` makes the engine
//! echo the whole token unchanged, as Octostache does.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{Duration, FixedOffset, Months, NaiveDateTime, Utc};
use regex::{Captures, Regex, RegexBuilder};

use crate::Clock;
use crate::datefmt::{self, DateVal, Kind};
use crate::numfmt::{self, Dec, NumKind};

const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// State shared by filters during one render.
pub(crate) struct FilterEnv<'a> {
    pub clock: &'a dyn Clock,
    regexes: HashMap<String, Option<Regex>>,
}

impl<'a> FilterEnv<'a> {
    pub(crate) fn new(clock: &'a dyn Clock) -> Self {
        FilterEnv {
            clock,
            regexes: HashMap::new(),
        }
    }

    fn local_offset(&self) -> FixedOffset {
        *self.clock.now().offset()
    }

    /// Compiles a pattern once per render; invalid or too large patterns give `None`.
    fn regex(&mut self, pattern: &str) -> Option<Regex> {
        if let Some(cached) = self.regexes.get(pattern) {
            return cached.clone();
        }
        let compiled = RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .ok();
        self.regexes.insert(pattern.to_string(), compiled.clone());
        compiled
    }
}

/// Names of all filters this engine knows, lower-cased.
pub(crate) const NAMES: &[&str] = &[
    "tolower",
    "toupper",
    "tobase64",
    "frombase64",
    "htmlescape",
    "xmlescape",
    "jsonescape",
    "yamlsinglequoteescape",
    "yamldoublequoteescape",
    "propertieskeyescape",
    "propertiesvalueescape",
    "uriescape",
    "uridataescape",
    "nowdate",
    "nowdateutc",
    "format",
    "replace",
    "match",
    "startswith",
    "endswith",
    "contains",
    "substring",
    "truncate",
    "trim",
    "indent",
    "append",
    "prepend",
    "uripart",
    "md5",
    "sha1",
    "sha256",
    "sha384",
    "sha512",
    "versionmajor",
    "versionminor",
    "versionpatch",
    "versionrevision",
    "versionprerelease",
    "versionprereleaseprefix",
    "versionprereleasecounter",
    "versionmetadata",
    "adddays",
    "addhours",
    "addminutes",
    "addseconds",
    "addmonths",
    "addyears",
    "null",
];

/// Applies the filter `name` (lower-cased).
pub(crate) fn apply(
    name: &str,
    input: Option<&str>,
    args: &[String],
    env: &mut FilterEnv<'_>,
) -> Option<String> {
    match name {
        "tolower" => input.map(str::to_lowercase),
        "toupper" => input.map(str::to_uppercase),
        "tobase64" => to_base64(input?, args),
        "frombase64" => from_base64(input?, args),
        "htmlescape" => escaped(input, args, |s| html_escape(s, true)),
        "xmlescape" => escaped(input, args, |s| html_escape(s, false)),
        "jsonescape" => escaped(input, args, json_escape),
        "yamlsinglequoteescape" => escaped(input, args, yaml_single),
        "yamldoublequoteescape" => escaped(input, args, yaml_double),
        "propertieskeyescape" => escaped(input, args, |s| properties(s, true)),
        "propertiesvalueescape" => escaped(input, args, |s| properties(s, false)),
        "uriescape" => escaped(input, args, |s| uri_escape(s, false)),
        "uridataescape" => escaped(input, args, |s| uri_escape(s, true)),
        "nowdate" => now_date(input, args, env, false),
        "nowdateutc" => now_date(input, args, env, true),
        "format" => format(input?, args, env),
        "replace" => replace(input?, args, env),
        "match" => {
            let [pattern] = args else { return None };
            Some(bool_text(env.regex(pattern)?.is_match(input?)))
        }
        "startswith" => compare(input?, args, |s, a| s.starts_with(a)),
        "endswith" => compare(input?, args, |s, a| s.ends_with(a)),
        "contains" => compare(input?, args, |s, a| s.contains(a)),
        "substring" => substring(input?, args),
        "truncate" => truncate(input?, args),
        "trim" => trim(input?, args),
        "indent" => indent(input?, args),
        "append" | "prepend" => {
            if args.is_empty() {
                return None;
            }
            let joined = args.concat();
            let input = input.unwrap_or("");
            Some(if name == "append" {
                format!("{input}{joined}")
            } else {
                format!("{joined}{input}")
            })
        }
        "uripart" => Some(crate::uri::part(input?, args)),
        "md5" | "sha1" | "sha256" | "sha384" | "sha512" => hash(name, input?, args),
        "versionmajor"
        | "versionminor"
        | "versionpatch"
        | "versionrevision"
        | "versionprerelease"
        | "versionprereleaseprefix"
        | "versionprereleasecounter"
        | "versionmetadata" => version(name, input?, env),
        "adddays" | "addhours" | "addminutes" | "addseconds" | "addmonths" | "addyears" => {
            add_time(name, input?, args)
        }
        _ => None,
    }
}

/// Escaping filters take no arguments.
fn escaped(
    input: Option<&str>,
    args: &[String],
    escape: impl Fn(&str) -> String,
) -> Option<String> {
    if args.is_empty() {
        input.map(escape)
    } else {
        None
    }
}

fn bool_text(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

fn compare(input: &str, args: &[String], test: fn(&str, &str) -> bool) -> Option<String> {
    let [arg] = args else { return None };
    Some(bool_text(test(input, arg)))
}

/// Bytes of `text` in the named encoding: `utf8` (default) or `unicode` (UTF-16LE).
fn encode(text: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding.to_lowercase().as_str() {
        "utf8" | "utf-8" => Some(text.as_bytes().to_vec()),
        "unicode" => Some(text.encode_utf16().flat_map(u16::to_le_bytes).collect()),
        _ => None,
    }
}

fn to_base64(input: &str, args: &[String]) -> Option<String> {
    let encoding = match args {
        [] => "utf8",
        [e] => e,
        _ => return None,
    };
    Some(BASE64.encode(encode(input, encoding)?))
}

fn from_base64(input: &str, args: &[String]) -> Option<String> {
    let encoding = match args {
        [] => "utf8",
        [e] => e.as_str(),
        _ => return None,
    };
    let bytes = BASE64.decode(input.trim()).ok()?;
    match encoding.to_lowercase().as_str() {
        "utf8" | "utf-8" => Some(String::from_utf8_lossy(&bytes).into_owned()),
        "unicode" => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

fn html_escape(input: &str, html: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '/' if html => out.push_str("&#x2F;"),
            c => out.push(c),
        }
    }
    out
}

fn json_escape(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

/// In single-quoted YAML a line break folds to a space, so each run of breaks gets one more.
fn yaml_single(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(c) = rest.chars().next() {
        if c == '\n' || rest.starts_with("\r\n") {
            let run_len = newline_run(rest);
            out.push_str(if rest.starts_with('\r') { "\r\n" } else { "\n" });
            out.push_str(&rest[..run_len]);
            rest = &rest[run_len..];
        } else {
            if c == '\'' {
                out.push_str("''");
            } else {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Length of a run of `\n` / `\r\n` line breaks at the start of `s`.
fn newline_run(s: &str) -> usize {
    let mut len = 0;
    loop {
        let rest = &s[len..];
        if rest.starts_with('\n') {
            len += 1;
        } else if rest.starts_with("\r\n") {
            len += 2;
        } else {
            return len;
        }
    }
}

fn push_utf16_escapes(out: &mut String, c: char) {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        out.push_str(&format!("\\u{unit:04x}"));
    }
}

fn yaml_double(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            ' '..='~' => out.push(c),
            c => push_utf16_escapes(&mut out, c),
        }
    }
    out
}

fn properties(input: &str, key: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for (i, c) in input.chars().enumerate() {
        match c {
            ' ' if key || i == 0 => out.push_str("\\ "),
            ':' if key => out.push_str("\\:"),
            '=' if key => out.push_str("\\="),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0xFF => out.push(c),
            c => push_utf16_escapes(&mut out, c),
        }
    }
    out
}

/// `EscapeDataString` keeps only unreserved characters; `EscapeUriString` also keeps the
/// reserved ones (`:/?#[]@!$&'()*+,;=`).
fn uri_escape(input: &str, data: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        let unreserved = c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        let reserved = matches!(
            c,
            ':' | '/'
                | '?'
                | '#'
                | '['
                | ']'
                | '@'
                | '!'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | ';'
                | '='
        );
        if unreserved || (!data && reserved) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn now_date(
    input: Option<&str>,
    args: &[String],
    env: &FilterEnv<'_>,
    utc: bool,
) -> Option<String> {
    if input.is_some() || args.len() > 1 {
        return None;
    }
    let now = env.clock.now();
    let local = *now.offset();
    let value = if utc {
        DateVal {
            at: now.with_timezone(&Utc).naive_utc(),
            kind: Kind::Utc,
        }
    } else {
        DateVal {
            at: now.naive_local(),
            kind: Kind::Unspecified,
        }
    };
    let pattern = args.first().map_or("O", String::as_str);
    datefmt::format(datefmt::prepare_for(pattern, value, local), pattern, local)
}

fn format(input: &str, args: &[String], env: &FilterEnv<'_>) -> Option<String> {
    let local = env.local_offset();
    let format_date = |value: DateVal, pattern: &str| {
        datefmt::format(datefmt::prepare_for(pattern, value, local), pattern, local)
    };
    match args {
        [pattern] => {
            if let Some(number) = Dec::parse(input, NumKind::Decimal) {
                return numfmt::format_number(&number, NumKind::Decimal, pattern);
            }
            let date = datefmt::parse(input)?;
            format_date(date.as_offset(local), pattern)
        }
        [kind, pattern] => match kind.to_lowercase().as_str() {
            "int32" | "int" => {
                let n = Dec::parse(input, NumKind::Int)?;
                let value = n_in_i32(&n)?;
                numfmt::format_number(&value, NumKind::Int, pattern)
            }
            "double" => {
                let n = Dec::parse(input, NumKind::Double)?;
                numfmt::format_number(&n, NumKind::Double, pattern)
            }
            "decimal" => {
                let n = Dec::parse(input, NumKind::Decimal)?;
                numfmt::format_number(&n, NumKind::Decimal, pattern)
            }
            "date" | "datetime" => format_date(datefmt::parse(input)?.as_date_time(local), pattern),
            "datetimeoffset" => format_date(datefmt::parse(input)?.as_offset(local), pattern),
            _ => None,
        },
        _ => None,
    }
}

/// `int.TryParse` accepts only values that fit in 32 bits.
fn n_in_i32(n: &Dec) -> Option<Dec> {
    let text = numfmt::format_number(n, NumKind::Int, "D")?;
    text.parse::<i32>().ok()?;
    Some(n.clone())
}

fn replace(input: &str, args: &[String], env: &mut FilterEnv<'_>) -> Option<String> {
    let (pattern, replacement) = match args {
        [pattern] => (pattern, ""),
        [pattern, replacement, ..] => (pattern, replacement.as_str()),
        [] => return None,
    };
    let regex = env.regex(pattern)?;
    let mut out = String::with_capacity(input.len());
    let mut last = 0;
    for caps in regex.captures_iter(input) {
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(&input[last..whole.start()]);
        expand_dotnet(&caps, replacement, input, &mut out);
        last = whole.end();
    }
    out.push_str(&input[last..]);
    Some(out)
}

/// Expands a .NET replacement pattern: `$1`, `${name}`, `$$`, `$&`, `` $` ``, `$'`, `$+`, `$_`.
fn expand_dotnet(caps: &Captures<'_>, replacement: &str, input: &str, out: &mut String) {
    let group = |index: usize| caps.get(index).map_or("", |m| m.as_str());
    let mut rest = replacement;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            // The longest prefix of the digits that names an existing group.
            let mut used = 0;
            for len in (1..=digits.min(9)).rev() {
                if let Ok(index) = after[..len].parse::<usize>() {
                    if index < caps.len() {
                        out.push_str(group(index));
                        used = len;
                        break;
                    }
                }
            }
            if used == 0 {
                out.push('$');
                rest = after;
            } else {
                rest = &after[used..];
            }
            continue;
        }
        let whole = caps.get(0);
        match after.chars().next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('&') => {
                out.push_str(group(0));
                rest = &after[1..];
            }
            Some('`') => {
                out.push_str(&input[..whole.map_or(0, |m| m.start())]);
                rest = &after[1..];
            }
            Some('\'') => {
                out.push_str(&input[whole.map_or(input.len(), |m| m.end())..]);
                rest = &after[1..];
            }
            Some('+') => {
                let last = (1..caps.len()).rev().find_map(|i| caps.get(i));
                out.push_str(last.map_or("", |m| m.as_str()));
                rest = &after[1..];
            }
            Some('_') => {
                out.push_str(input);
                rest = &after[1..];
            }
            Some('{') => match after.find('}') {
                Some(close) => {
                    let name = &after[1..close];
                    let value = match name.parse::<usize>() {
                        Ok(index) => caps.get(index),
                        Err(_) => caps.name(name),
                    };
                    match value {
                        Some(m) => out.push_str(m.as_str()),
                        None => out.push_str(&rest[dollar..dollar + 1 + close + 1]),
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            },
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

fn parse_count(text: &str) -> Option<usize> {
    let n: i64 = text.trim().parse().ok()?;
    usize::try_from(n).ok()
}

fn substring(input: &str, args: &[String]) -> Option<String> {
    let chars: Vec<char> = input.chars().collect();
    let (start, len) = match args {
        [len] => (0, parse_count(len)?),
        [start, len] => (parse_count(start)?, parse_count(len)?),
        _ => return None,
    };
    let end = start.checked_add(len)?;
    if end > chars.len() {
        return None;
    }
    Some(chars[start..end].iter().collect())
}

fn truncate(input: &str, args: &[String]) -> Option<String> {
    let len = parse_count(args.first()?)?;
    let suffix = args.get(1).map_or("...", String::as_str);
    let mut chars = input.char_indices();
    match chars.nth(len) {
        Some((cut, _)) => Some(format!("{}{suffix}", &input[..cut])),
        None => Some(input.to_string()),
    }
}

fn trim(input: &str, args: &[String]) -> Option<String> {
    match args.first().map(|a| a.to_lowercase()) {
        None => Some(input.trim().to_string()),
        Some(a) if a == "start" => Some(input.trim_start().to_string()),
        Some(a) if a == "end" => Some(input.trim_end().to_string()),
        Some(_) => None,
    }
}

fn indent(input: &str, args: &[String]) -> Option<String> {
    if input.is_empty() {
        return Some(String::new());
    }
    let spaces = |n: &str| -> Option<String> {
        if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let count: u8 = n.parse().ok()?;
        Some(" ".repeat(usize::from(count)))
    };
    let (first, rest) = match args {
        [] => ("    ".to_string(), "    ".to_string()),
        [one] => {
            let sized = match one.split_once('/') {
                Some((initial, subsequent)) if !subsequent.contains('/') => {
                    let initial = if initial.is_empty() {
                        Some(String::new())
                    } else {
                        spaces(initial)
                    };
                    initial.zip(spaces(subsequent))
                }
                Some(_) => None,
                None => spaces(one).map(|s| (s.clone(), s)),
            };
            sized.unwrap_or_else(|| (one.clone(), one.clone()))
        }
        [initial, subsequent] => (initial.clone(), subsequent.clone()),
        _ => return None,
    };
    let mut out = first;
    out.push_str(&input.replace('\n', &format!("\n{rest}")));
    Some(out)
}

fn hash(name: &str, input: &str, args: &[String]) -> Option<String> {
    use md5::Digest as _;
    let mut size: Option<usize> = None;
    let mut encoding: Option<&str> = None;
    match args {
        [] => {}
        [a] => match a.parse::<i64>() {
            Ok(n) if n > 0 => size = usize::try_from(n).ok(),
            _ => encoding = Some(a),
        },
        [a, b] => match a.parse::<i64>() {
            Ok(n) if n > 0 => {
                size = usize::try_from(n).ok();
                encoding = Some(b);
            }
            _ => {
                encoding = Some(a);
                match b.parse::<i64>() {
                    Ok(n) if n > 0 => size = usize::try_from(n).ok(),
                    _ => return None,
                }
            }
        },
        _ => return None,
    }
    let bytes = match encoding.map(str::to_lowercase).as_deref() {
        None => input.as_bytes().to_vec(),
        Some("base64") => BASE64.decode(input.trim()).ok()?,
        Some(other) => encode(input, other)?,
    };
    let digest: Vec<u8> = match name {
        "md5" => md5::Md5::digest(&bytes).to_vec(),
        "sha1" => sha1::Sha1::digest(&bytes).to_vec(),
        "sha256" => sha2::Sha256::digest(&bytes).to_vec(),
        "sha384" => sha2::Sha384::digest(&bytes).to_vec(),
        _ => sha2::Sha512::digest(&bytes).to_vec(),
    };
    let take = size.unwrap_or(digest.len()).min(digest.len());
    Some(digest[..take].iter().map(|b| format!("{b:02x}")).collect())
}

fn version(name: &str, input: &str, env: &mut FilterEnv<'_>) -> Option<String> {
    // Octopus.Versioning's OctopusVersionParser pattern.
    const PATTERN: &str = r"^(?:(?<prefix>v|V)?(?<major>\d+)(?:\.(?<minor>\d+))?(?:\.(?<patch>\d+))?(?:\.(?<revision>\d+))?)?(?:[.\-_\\])?(?<prerelease>(?<prereleaseprefix>[A-Za-z0-9]*?)([.\-_\\](?<prereleasecounter>[A-Za-z0-9.\-_\\]*?)?)?)?(?:\+(?<buildmetadata>[A-Za-z0-9_\-.\\+]*?))?$";
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return None;
    }
    let regex = env.regex(PATTERN)?;
    let caps = regex.captures(trimmed)?;
    let text = |group: &str| caps.name(group).map_or("", |m| m.as_str()).to_string();
    let number = |group: &str| -> Option<String> {
        match caps.name(group) {
            Some(m) => m.as_str().parse::<i32>().ok().map(|n| n.to_string()),
            None => Some("0".to_string()),
        }
    };
    match name {
        "versionmajor" => number("major"),
        "versionminor" => number("minor"),
        "versionpatch" => number("patch"),
        "versionrevision" => number("revision"),
        "versionprerelease" => Some(text("prerelease")),
        "versionprereleaseprefix" => Some(text("prereleaseprefix")),
        "versionprereleasecounter" => Some(text("prereleasecounter")),
        _ => Some(text("buildmetadata")),
    }
}

/// Ferry's date arithmetic filters (not in Octostache): the result is written in the
/// round-trip `O` format, keeping any offset the input had.
fn add_time(name: &str, input: &str, args: &[String]) -> Option<String> {
    let [amount] = args else { return None };
    let parsed = datefmt::parse(input)?;
    let value = parsed.as_written();
    let amount: f64 = amount.trim().parse().ok().filter(|a: &f64| a.is_finite())?;
    let at = match name {
        "addmonths" | "addyears" => {
            if amount.fract() != 0.0 || amount.abs() > 120_000.0 {
                return None;
            }
            let months = amount as i64 * if name == "addyears" { 12 } else { 1 };
            let magnitude = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
            if months >= 0 {
                value.at.checked_add_months(magnitude)?
            } else {
                value.at.checked_sub_months(magnitude)?
            }
        }
        _ => {
            let unit_seconds = match name {
                "adddays" => 86_400.0,
                "addhours" => 3_600.0,
                "addminutes" => 60.0,
                _ => 1.0,
            };
            let millis = (amount * unit_seconds * 1000.0).round();
            if !millis.is_finite() || millis.abs() > 1e15 {
                return None;
            }
            add_millis(value.at, millis as i64)?
        }
    };
    Some(datefmt::round_trip(
        DateVal {
            at,
            kind: value.kind,
        },
        FixedOffset::east_opt(0)?,
    ))
}

fn add_millis(at: NaiveDateTime, millis: i64) -> Option<NaiveDateTime> {
    at.checked_add_signed(Duration::try_milliseconds(millis)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_listed_filter_is_dispatched() {
        let clock = crate::FixedClock::parse("2024-01-02T03:04:05Z").unwrap();
        let mut env = FilterEnv::new(&clock);
        for name in NAMES {
            let args = match *name {
                "replace" | "match" | "startswith" | "endswith" | "contains" | "append"
                | "prepend" => {
                    vec!["a".to_string()]
                }
                "substring" | "truncate" => vec!["1".to_string()],
                "format" => vec!["0".to_string()],
                "uripart" => vec!["Host".to_string()],
                "adddays" | "addhours" | "addminutes" | "addseconds" | "addmonths" | "addyears" => {
                    vec!["1".to_string()]
                }
                _ => vec![],
            };
            let input = match *name {
                "nowdate" | "nowdateutc" => None,
                "frombase64" => Some("YQ=="),
                "format" => Some("1"),
                "uripart" => Some("https://example.com"),
                n if n.starts_with("add") && n != "append" => Some("2030-01-01"),
                _ => Some("a"),
            };
            let result = apply(name, input, &args, &mut env);
            assert_eq!(result.is_some(), *name != "null", "{name}");
        }
    }
}
