//! Version ranges of channel rules, in NuGet/Maven interval notation, over [`Version`] ordering:
//!
//! | Written | Means |
//! |---|---|
//! | `1.0` | `1.0` or later (a bare version is a minimum, as in NuGet) |
//! | `[1.0]` | exactly `1.0` |
//! | `[1.0,2.0)` | `1.0` or later, before `2.0` |
//! | `(1.0,)` | after `1.0` |
//! | `(,2.0]` | `2.0` or earlier |
//! | `[1.0,2.0),[3.0,)` | a union (Maven): either interval |
//!
//! Whitespace around versions, brackets and commas is ignored. Membership uses the version
//! ordering, so pre-releases sit before their release: `[1.0,2.0)` contains `2.0.0-beta`
//! (channel rules keep pre-releases out with their tag pattern, e.g. `^$`). Build metadata
//! plays no part.

use std::fmt;

use crate::version::Version;

/// One bound of an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    pub version: Version,
    pub inclusive: bool,
}

/// An interval; `None` is unbounded on that side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interval {
    pub min: Option<Bound>,
    pub max: Option<Bound>,
}

impl Interval {
    pub fn contains(&self, v: &Version) -> bool {
        let above = match &self.min {
            None => true,
            Some(b) if b.inclusive => v >= &b.version,
            Some(b) => v > &b.version,
        };
        let below = match &self.max {
            None => true,
            Some(b) if b.inclusive => v <= &b.version,
            Some(b) => v < &b.version,
        };
        above && below
    }
}

/// A parsed range: one interval, or a union of several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRange {
    pub intervals: Vec<Interval>,
}

/// Why a range did not parse: the range as written, the 1-based character position and what
/// was wrong there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{range}' is not a valid version range: {problem} at position {position}")]
pub struct RangeParseError {
    pub range: String,
    pub position: usize,
    pub problem: String,
}

/// At most this many characters in a range, and this many intervals in a union.
pub const MAX_RANGE_LEN: usize = 1000;
const MAX_INTERVALS: usize = 50;

impl VersionRange {
    /// Parses NuGet/Maven interval notation (see the module documentation).
    pub fn parse(text: &str) -> Result<VersionRange, RangeParseError> {
        Parser::new(text).parse()
    }

    pub fn contains(&self, v: &Version) -> bool {
        self.intervals.iter().any(|i| i.contains(v))
    }
}

impl std::str::FromStr for VersionRange {
    type Err = RangeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VersionRange::parse(s)
    }
}

/// Prints the canonical interval form: `[1.0,2.0)`, `[1.0,)`, `[1.0]`, unions joined by `,`.
impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, i) in self.intervals.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            match (&i.min, &i.max) {
                (Some(a), Some(b)) if a.inclusive && b.inclusive && a.version == b.version => {
                    write!(f, "[{}]", a.version)?
                }
                _ => {
                    match &i.min {
                        Some(b) => {
                            write!(f, "{}{}", if b.inclusive { "[" } else { "(" }, b.version)?
                        }
                        None => f.write_str("(")?,
                    }
                    f.write_str(",")?;
                    match &i.max {
                        Some(b) => {
                            write!(f, "{}{}", b.version, if b.inclusive { "]" } else { ")" })?
                        }
                        None => f.write_str(")")?,
                    }
                }
            }
        }
        Ok(())
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    fn err<T>(&self, position: usize, problem: impl Into<String>) -> Result<T, RangeParseError> {
        Err(RangeParseError {
            range: self.text.to_string(),
            position: position + 1,
            problem: problem.into(),
        })
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn parse(mut self) -> Result<VersionRange, RangeParseError> {
        if self.chars.len() > MAX_RANGE_LEN {
            return self.err(
                MAX_RANGE_LEN,
                format!("a range is at most {MAX_RANGE_LEN} characters"),
            );
        }
        self.skip_ws();
        match self.peek() {
            None => self.err(0, "the range is empty"),
            Some('[') | Some('(') => {
                let mut intervals = Vec::new();
                loop {
                    intervals.push(self.interval()?);
                    if intervals.len() > MAX_INTERVALS {
                        return self.err(
                            self.pos,
                            format!("a union has at most {MAX_INTERVALS} intervals"),
                        );
                    }
                    self.skip_ws();
                    match self.peek() {
                        None => break,
                        Some(',') => {
                            self.pos += 1;
                            self.skip_ws();
                            match self.peek() {
                                Some('[') | Some('(') => {}
                                None => {
                                    return self
                                        .err(self.pos, "expected another interval after ','");
                                }
                                Some(c) => {
                                    return self.err(
                                        self.pos,
                                        format!(
                                            "expected '[' or '(' to start an interval, found '{c}'"
                                        ),
                                    );
                                }
                            }
                        }
                        Some(c) => {
                            return self.err(
                                self.pos,
                                format!(
                                    "unexpected '{c}' after an interval (join intervals with ',')"
                                ),
                            );
                        }
                    }
                }
                Ok(VersionRange { intervals })
            }
            Some(_) => {
                // A bare version: a minimum, inclusive.
                let start = self.pos;
                let word: String = self.chars[start..].iter().collect();
                let word = word.trim_end();
                if let Some(off) = word.find(['[', ']', '(', ')', ',']) {
                    let at = start + word[..off].chars().count();
                    let c = self.chars[at];
                    return self.err(
                        at,
                        format!("unexpected '{c}' (an interval starts with '[' or '(')"),
                    );
                }
                let version = self.version(word, start)?;
                Ok(VersionRange {
                    intervals: vec![Interval {
                        min: Some(Bound {
                            version,
                            inclusive: true,
                        }),
                        max: None,
                    }],
                })
            }
        }
    }

    fn version(&self, word: &str, at: usize) -> Result<Version, RangeParseError> {
        match Version::parse(word) {
            Some(v) => Ok(v),
            None => self.err(
                at,
                format!("'{word}' is not a version (expected e.g. 1.2.3 or 2.0.0-beta.1)"),
            ),
        }
    }

    /// Reads up to (not including) the next `,`, `]` or `)`; returns the trimmed text and where
    /// it starts (or where it would have started).
    fn item(&mut self) -> Result<(String, usize), RangeParseError> {
        self.skip_ws();
        let start = self.pos;
        while let Some(c) = self.peek() {
            match c {
                ',' | ']' | ')' => break,
                '[' | '(' => {
                    return self.err(self.pos, format!("unexpected '{c}' inside an interval"));
                }
                _ => self.pos += 1,
            }
        }
        let s: String = self.chars[start..self.pos].iter().collect();
        Ok((s.trim().to_string(), start))
    }

    fn interval(&mut self) -> Result<Interval, RangeParseError> {
        let open_at = self.pos;
        let min_inclusive = self.peek() == Some('[');
        self.pos += 1;
        let (first, first_at) = self.item()?;
        match self.peek() {
            None => self.err(self.pos, "missing ']' or ')' to close the interval"),
            Some(close @ (']' | ')')) => {
                // A single version: only `[x]`.
                self.pos += 1;
                if first.is_empty() {
                    return self.err(open_at, "an interval needs at least one version");
                }
                if !(min_inclusive && close == ']') {
                    return self.err(
                        open_at,
                        format!(
                            "an exact version is written [{first}]; use a ',' for an open interval"
                        ),
                    );
                }
                let v = self.version(&first, first_at)?;
                Ok(Interval {
                    min: Some(Bound {
                        version: v.clone(),
                        inclusive: true,
                    }),
                    max: Some(Bound {
                        version: v,
                        inclusive: true,
                    }),
                })
            }
            Some(_) => {
                // ','
                self.pos += 1;
                let (second, second_at) = self.item()?;
                let max_inclusive = match self.peek() {
                    Some(']') => true,
                    Some(')') => false,
                    Some(_) => {
                        return self.err(self.pos, "an interval has at most two versions");
                    }
                    None => {
                        return self.err(self.pos, "missing ']' or ')' to close the interval");
                    }
                };
                self.pos += 1;
                if first.is_empty() && second.is_empty() {
                    return self.err(open_at, "an interval needs at least one version");
                }
                let min = if first.is_empty() {
                    None
                } else {
                    Some(Bound {
                        version: self.version(&first, first_at)?,
                        inclusive: min_inclusive,
                    })
                };
                let max = if second.is_empty() {
                    None
                } else {
                    Some(Bound {
                        version: self.version(&second, second_at)?,
                        inclusive: max_inclusive,
                    })
                };
                if let (Some(a), Some(b)) = (&min, &max) {
                    let empty = a.version > b.version
                        || (a.version == b.version && !(a.inclusive && b.inclusive));
                    if empty {
                        return self.err(
                            open_at,
                            format!(
                                "the interval contains no version (its minimum {} is not below its maximum {})",
                                a.version, b.version
                            ),
                        );
                    }
                }
                Ok(Interval { min, max })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn r(s: &str) -> VersionRange {
        match VersionRange::parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn contains(range: &str, version: &str) -> bool {
        r(range).contains(&v(version))
    }

    #[test]
    fn bare_version_is_a_minimum() {
        assert!(contains("1.0", "1.0.0"));
        assert!(contains("1.0", "1.0.0.0"));
        assert!(contains("1.0", "7.3"));
        assert!(!contains("1.0", "0.9.9"));
        assert!(!contains("1.0", "1.0.0-beta"));
        assert!(contains(" 1.0 ", "1.0.1"));
        assert_eq!(r("1.0").to_string(), "[1.0,)");
    }

    #[test]
    fn exact() {
        assert!(contains("[1.0]", "1.0.0"));
        assert!(contains("[ 1.0 ]", "1.0"));
        assert!(!contains("[1.0]", "1.0.1"));
        assert!(!contains("[1.0]", "1.0.0-rc"));
        assert_eq!(r("[1.0]").to_string(), "[1.0]");
    }

    #[test]
    fn intervals() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "[1.0,2.0)",
                &["1.0", "1.5", "1.9.9.9", "2.0.0-beta", "1.2.3"],
                &["0.9", "2.0", "2.0.0", "1.0.0-rc", "2.1"],
            ),
            (
                "(1.0,)",
                &["1.0.1", "1.0.0.1", "99"],
                &["1.0", "0.1", "1.0.0-z"],
            ),
            (
                "(,2.0]",
                &["0.0.1", "2.0", "2.0.0-rc", "1.0.0-a"],
                &["2.0.1", "3"],
            ),
            ("[1.0,2.0]", &["1.0", "2.0", "1.5"], &["2.0.1", "0.9"]),
            ("(1.0,2.0)", &["1.0.1", "1.99"], &["1.0", "2.0"]),
            (
                "[2.0.0-alpha.1,2.0.0)",
                &["2.0.0-alpha.1", "2.0.0-beta", "2.0.0-rc.2"],
                &["2.0.0-alpha", "2.0.0", "1.9"],
            ),
            (" [ 1.0 , 2.0 ) ", &["1.5"], &["2.0"]),
        ];
        for (range, inside, outside) in cases {
            for x in *inside {
                assert!(contains(range, x), "{x} in {range}");
            }
            for x in *outside {
                assert!(!contains(range, x), "{x} not in {range}");
            }
        }
    }

    #[test]
    fn unions() {
        let u = r("[1.0,2.0),[3.0,)");
        assert_eq!(u.intervals.len(), 2);
        for x in ["1.0", "1.9", "3.0", "4.1"] {
            assert!(u.contains(&v(x)), "{x}");
        }
        for x in ["0.9", "2.0", "2.5", "3.0.0-beta"] {
            assert!(!u.contains(&v(x)), "{x}");
        }
        assert!(r(" [1.0] , (2.0,3.0) ,[5.0]").contains(&v("5.0")));
        assert_eq!(r("[1.0,2.0) , [3.0,)").to_string(), "[1.0,2.0),[3.0,)");
    }

    #[test]
    fn prints_canonically() {
        for (input, out) in [
            ("(,2.0]", "(,2.0]"),
            ("(1.0,)", "(1.0,)"),
            ("[1.0, 2.0 ]", "[1.0,2.0]"),
            ("[1.0.0-beta,1.0.0]", "[1.0.0-beta,1.0.0]"),
        ] {
            assert_eq!(r(input).to_string(), out);
            assert_eq!(r(out), r(input));
        }
    }

    #[test]
    fn errors_name_position_and_problem() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "the range is empty"),
            ("   ", 1, "the range is empty"),
            ("[1.0,2.0", 9, "missing ']' or ')'"),
            ("[1.0", 5, "missing ']' or ')'"),
            ("(1.0)", 1, "an exact version is written [1.0]"),
            ("[1.0)", 1, "an exact version is written"),
            ("[]", 1, "at least one version"),
            ("(,)", 1, "at least one version"),
            ("[,]", 1, "at least one version"),
            ("[2.0,1.0]", 1, "contains no version"),
            ("[1.0,1.0)", 1, "contains no version"),
            ("[1.0,x]", 6, "'x' is not a version"),
            ("[a.b,2.0]", 2, "'a.b' is not a version"),
            ("[1.0,2.0,3.0]", 9, "at most two versions"),
            ("[1.0,2.0)[3.0,)", 10, "unexpected '['"),
            ("[1.0,2.0),", 11, "expected another interval"),
            ("[1.0,2.0),3.0", 11, "expected '[' or '('"),
            ("[1.0,2.0) x", 11, "unexpected 'x'"),
            ("1.0,2.0", 4, "unexpected ','"),
            ("1.0]", 4, "unexpected ']'"),
            ("v1", 1, "'v1' is not a version"),
            ("[1.0,(2.0]", 6, "unexpected '(' inside"),
        ];
        for (input, position, problem) in cases {
            match VersionRange::parse(input) {
                Ok(x) => panic!("{input:?} parsed as {x}"),
                Err(e) => {
                    assert_eq!(e.position, *position, "{input:?}: {e}");
                    assert!(e.problem.contains(problem), "{input:?}: {e}");
                    assert!(e.to_string().contains(&format!("'{input}'")), "{e}");
                }
            }
        }
        let long = "1".repeat(MAX_RANGE_LEN + 1);
        assert!(VersionRange::parse(&long).is_err());
        let many = vec!["[1.0]"; MAX_INTERVALS + 1].join(",");
        assert!(VersionRange::parse(&many).is_err());
    }

    #[test]
    fn metadata_is_ignored() {
        assert!(contains("[1.0,2.0)", "1.2.3+build.5"));
        assert!(contains("[1.2.3+a]", "1.2.3+b"));
    }
}
