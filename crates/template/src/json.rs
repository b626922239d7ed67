//! A lenient JSON reader and compact writer for navigating JSON-valued variables.
//!
//! Octostache parses with Newtonsoft.Json, which accepts more than strict JSON; this reader
//! accepts the same common extras: unquoted property names (`{Name: "x"}`), single-quoted
//! strings, comments and trailing commas. Values render the way Octostache renders them.

const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// The number as written, validated.
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Parses `text` when it holds a JSON array or object; scalars and invalid text give `None`.
pub(crate) fn parse_container(text: &str) -> Option<Json> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    parse(text)
}

/// Parses a whole JSON document.
pub(crate) fn parse(text: &str) -> Option<Json> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        text,
        pos: 0,
    };
    let value = reader.value(0)?;
    reader.skip_ws()?;
    (reader.pos == reader.bytes.len()).then_some(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips whitespace and comments; `None` on an unterminated comment.
    fn skip_ws(&mut self) -> Option<()> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                Some(b'/') => match self.bytes.get(self.pos + 1) {
                    Some(b'/') => {
                        while !matches!(self.peek(), None | Some(b'\n')) {
                            self.pos += 1;
                        }
                    }
                    Some(b'*') => {
                        let rest = self.text.get(self.pos + 2..)?;
                        let end = rest.find("*/")?;
                        self.pos += 2 + end + 2;
                    }
                    _ => return Some(()),
                },
                _ => return Some(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws()?;
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' | b'\'' => self.string().map(Json::Str),
            b'-' | b'0'..=b'9' => self.number(),
            _ => {
                let word = self.word();
                match word {
                    "true" => Some(Json::Bool(true)),
                    "false" => Some(Json::Bool(false)),
                    "null" | "undefined" => Some(Json::Null),
                    _ => None,
                }
            }
        }
    }

    fn word(&mut self) -> &str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        {
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    fn object(&mut self, depth: usize) -> Option<Json> {
        self.pos += 1;
        let mut members = Vec::new();
        loop {
            self.skip_ws()?;
            match self.peek()? {
                b'}' => {
                    self.pos += 1;
                    return Some(Json::Object(members));
                }
                b'"' | b'\'' => {
                    let key = self.string()?;
                    members.push((key, self.member_value(depth)?));
                }
                _ => {
                    let key = self.unquoted_key()?;
                    members.push((key, self.member_value(depth)?));
                }
            }
            self.skip_ws()?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {}
                _ => return None,
            }
        }
    }

    fn unquoted_key(&mut self) -> Option<String> {
        let start = self.pos;
        let rest = self.text.get(start..)?;
        let len = rest
            .char_indices()
            .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(rest[..len].to_string())
    }

    fn member_value(&mut self, depth: usize) -> Option<Json> {
        self.skip_ws()?;
        if self.peek()? != b':' {
            return None;
        }
        self.pos += 1;
        self.value(depth + 1)
    }

    fn array(&mut self, depth: usize) -> Option<Json> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws()?;
            if self.peek()? == b']' {
                self.pos += 1;
                return Some(Json::Array(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws()?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {}
                _ => return None,
            }
        }
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |r: &mut Self| {
            let s = r.pos;
            while r.peek().is_some_and(|b| b.is_ascii_digit()) {
                r.pos += 1;
            }
            r.pos > s
        };
        let int_digits = digits(self);
        let mut frac_digits = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            frac_digits = digits(self);
        }
        if !int_digits && !frac_digits {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(Json::Number(self.text.get(start..self.pos)?.to_string()))
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = self.text.get(self.pos..)?;
            let stop = rest.find([quote as char, '\\'])?;
            out.push_str(&rest[..stop]);
            self.pos += stop;
            if self.peek()? == quote {
                self.pos += 1;
                return Some(out);
            }
            self.pos += 1;
            let escaped = self.peek()?;
            self.pos += 1;
            match escaped {
                b'"' => out.push('"'),
                b'\'' => out.push('\''),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let unit = self.hex4()?;
                    out.push(self.utf16_char(unit));
                }
                _ => return None,
            }
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let digits = self.text.get(self.pos..self.pos + 4)?;
        let unit = u16::from_str_radix(digits, 16).ok()?;
        self.pos += 4;
        Some(unit)
    }

    /// Joins a surrogate pair when one follows; a lone surrogate becomes U+FFFD.
    fn utf16_char(&mut self, unit: u16) -> char {
        if (0xD800..0xDC00).contains(&unit) && self.text.get(self.pos..self.pos + 2) == Some("\\u")
        {
            let save = self.pos;
            self.pos += 2;
            if let Some(low) = self.hex4().filter(|low| (0xDC00..0xE000).contains(low)) {
                let code = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                return char::from_u32(code).unwrap_or('\u{FFFD}');
            }
            self.pos = save;
        }
        char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}')
    }
}

impl Json {
    /// The value as Octostache prints it: strings bare, `null` empty, booleans `True`/`False`,
    /// containers as compact JSON.
    pub(crate) fn to_text(&self) -> String {
        match self {
            Json::Null => String::new(),
            Json::Bool(true) => "True".to_string(),
            Json::Bool(false) => "False".to_string(),
            Json::Number(raw) => number_text(raw, false),
            Json::Str(s) => s.clone(),
            Json::Array(_) | Json::Object(_) => {
                let mut out = String::new();
                self.write(&mut out);
                out
            }
        }
    }

    /// Compact JSON, as Newtonsoft's `SerializeObject` writes it.
    pub(crate) fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(raw) => out.push_str(&number_text(raw, true)),
            Json::Str(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// The member called `key`: an exact match wins, otherwise the first case-insensitive one.
    pub(crate) fn member(&self, key: &str) -> Option<&Json> {
        let Json::Object(members) = self else {
            return None;
        };
        members
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .or_else(|| members.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
            .map(|(_, v)| v)
    }
}

/// Integers print as written; other numbers print as .NET prints a double.
fn number_text(raw: &str, as_json: bool) -> String {
    let is_integer = !raw.contains(['.', 'e', 'E']);
    if is_integer {
        return raw.to_string();
    }
    match raw.parse::<f64>() {
        Ok(value) if value.is_finite() => {
            let text = crate::numfmt::dotnet_double(value);
            if as_json && !text.contains(['.', 'E']) {
                format!("{text}.0")
            } else {
                text
            }
        }
        _ => raw.to_string(),
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn reads_newtonsoft_style_json_and_writes_it_compactly() {
        let json = parse(
            "{Name: 't-shirt', // comment\n Sizes: [{size: \"small\", price: 15.00},], ok: true}",
        )
        .unwrap();
        assert_eq!(
            json.to_text(),
            r#"{"Name":"t-shirt","Sizes":[{"size":"small","price":15.0}],"ok":true}"#
        );
        assert_eq!(json.member("name").unwrap().to_text(), "t-shirt");
        assert_eq!(parse("{Name: NoComma}"), None);
        assert_eq!(parse("[1] x"), None);
        assert_eq!(parse("\"\\ud83d\\ude00\"").unwrap().to_text(), "\u{1F600}");
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep), None);
    }
}
