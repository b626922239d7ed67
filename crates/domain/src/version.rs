//! Release and package versions: SemVer 2 and NuGet-style (up to four numeric parts), with an
//! ordering that compares numbers numerically and pre-release labels case-insensitively.
//!
//! The rules, as NuGet and Octopus apply them:
//! - one to four numeric parts (`1`, `1.2`, `1.2.3`, `1.2.3.4`); leading zeros do not matter
//!   (`01.2` is `1.2`) and missing parts count as zero (`1.0` equals `1.0.0.0`);
//! - an optional `-prerelease` label of dot-separated identifiers (letters, digits, `-`); a
//!   version with a label sorts before the same version without one; identifiers compare
//!   numerically when both are numbers, numbers sort before words, and words compare
//!   ignoring case;
//! - optional `+metadata`, kept for display but ignored by ordering and equality.
//!
//! Equality and hashing agree with the ordering, so versions can be used as map keys.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A parsed version. Equality, hashing and ordering follow the module rules: missing parts
/// are zero, pre-release labels compare case-insensitively and metadata is ignored.
#[derive(Clone, Debug)]
pub struct Version {
    /// One to four numeric parts.
    pub parts: Vec<u64>,
    pub pre_release: String,
    pub metadata: String,
}

/// The error of [`Version::from_str`](std::str::FromStr::from_str): says what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a valid version: expected 1 to 4 numbers separated by dots, optionally followed by -prerelease and +metadata (e.g. 1.2.3 or 2.0.0-beta.1)"
)]
pub struct VersionParseError(pub String);

/// At most this many significant digits per numeric part, so that adding one never overflows.
const MAX_DIGITS: usize = 18;

impl Version {
    /// Parses `1.2.3`, `1.2.3.4`, `1.2`, `1`, with optional `-prerelease` and `+metadata`.
    /// Surrounding whitespace is ignored; leading zeros in numeric parts are accepted.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let (rest, metadata) = match s.split_once('+') {
            Some((a, b)) => (a, b),
            None => (s, ""),
        };
        let (nums, pre) = match rest.split_once('-') {
            Some((a, b)) => (a, b),
            None => (rest, ""),
        };
        if nums.is_empty() {
            return None;
        }
        let mut parts = Vec::with_capacity(4);
        for p in nums.split('.') {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let significant = p.trim_start_matches('0');
            if significant.len() > MAX_DIGITS {
                return None;
            }
            parts.push(if significant.is_empty() {
                0
            } else {
                significant.parse().ok()?
            });
            if parts.len() > 4 {
                return None;
            }
        }
        if (rest.contains('-') && !label_ok(pre)) || (s.contains('+') && !label_ok(metadata)) {
            return None;
        }
        Some(Version {
            parts,
            pre_release: pre.to_string(),
            metadata: metadata.to_string(),
        })
    }

    pub fn part(&self, i: usize) -> u64 {
        self.parts.get(i).copied().unwrap_or(0)
    }

    pub fn is_pre_release(&self) -> bool {
        !self.pre_release.is_empty()
    }

    /// The NuGet normalised form: at least three parts, the fourth only when it is not zero,
    /// no leading zeros (also in numeric pre-release identifiers), no metadata. The
    /// pre-release label keeps its case. Two versions are equal exactly when their
    /// normalised forms are equal ignoring case.
    pub fn normalized(&self) -> String {
        let mut out = format!("{}.{}.{}", self.part(0), self.part(1), self.part(2));
        if self.part(3) != 0 {
            out.push_str(&format!(".{}", self.part(3)));
        }
        if self.is_pre_release() {
            out.push('-');
            let ids: Vec<&str> = self
                .pre_release
                .split('.')
                .map(|id| if is_numeric(id) { trim_zeros(id) } else { id })
                .collect();
            out.push_str(&ids.join("."));
        }
        out
    }
}

fn label_ok(l: &str) -> bool {
    l.split('.')
        .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn is_numeric(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

/// `007` → `7`, `000` → `0`.
fn trim_zeros(id: &str) -> &str {
    let t = id.trim_start_matches('0');
    if t.is_empty() { "0" } else { t }
}

/// Prints the parts as numbers (so leading zeros are gone), then the label and metadata as
/// written: `Version::parse(&v.to_string())` gives back `v` part for part.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        if !self.pre_release.is_empty() {
            write!(f, "-{}", self.pre_release)?;
        }
        if !self.metadata.is_empty() {
            write!(f, "+{}", self.metadata)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Version {
    type Err = VersionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s).ok_or_else(|| VersionParseError(s.to_string()))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        for i in 0..4 {
            match self.part(i).cmp(&other.part(i)) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match (self.pre_release.is_empty(), other.pre_release.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => compare_labels(&self.pre_release, &other.pre_release),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equal when the ordering says so: `1.0` equals `1.0.0.0`, `1.0.0-RC.01` equals
/// `1.0.0-rc.1`, and `1.0.0+a` equals `1.0.0+b`.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for i in 0..4 {
            self.part(i).hash(state);
        }
        if self.pre_release.is_empty() {
            return;
        }
        for id in self.pre_release.split('.') {
            if is_numeric(id) {
                0u8.hash(state);
                trim_zeros(id).hash(state);
            } else {
                1u8.hash(state);
                id.to_ascii_lowercase().hash(state);
            }
        }
    }
}

fn compare_labels(a: &str, b: &str) -> Ordering {
    let mut ai = a.split('.');
    let mut bi = b.split('.');
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (is_numeric(x), is_numeric(y)) {
                    // Compared as numbers of any size: by length without leading zeros, then
                    // digit by digit.
                    (true, true) => {
                        let (m, n) = (trim_zeros(x), trim_zeros(y));
                        m.len().cmp(&n.len()).then_with(|| m.cmp(n))
                    }
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x
                        .bytes()
                        .map(|c| c.to_ascii_lowercase())
                        .cmp(y.bytes().map(|c| c.to_ascii_lowercase())),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// The next patch version after `v` (`1.2.3` → `1.2.4`), used when a release is created without
/// a version and the project has no template yet.
pub fn next_patch(v: &Version) -> String {
    format!("{}.{}.{}", v.part(0), v.part(1), v.part(2) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or(Version {
            parts: vec![],
            pre_release: "INVALID".into(),
            metadata: String::new(),
        })
    }

    #[test]
    fn parses() {
        for ok in [
            "1",
            "1.2",
            "1.2.3",
            "1.2.3.4",
            "1.0.0-beta.1",
            "1.0.0+build.5",
            "2.0.0-rc-1+x",
            "01.002.0003",
            "0000000000000000000000001.0",
            " 1.2.3 ",
        ] {
            assert!(Version::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "1.2.3.4.5",
            "1..2",
            "1.2-",
            "1.2+",
            "v1.2",
            "1.2.3-be ta",
            "-1",
            "1.2.3-a..b",
            "1.2.3+a+b",
            "1.2.3-é",
            "1234567890123456789.0",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(v("01.002.0003").parts, vec![1, 2, 3]);
        assert_eq!(
            "x".parse::<Version>().map_err(|e| e.to_string()),
            Err("'x' is not a valid version: expected 1 to 4 numbers separated by dots, optionally followed by -prerelease and +metadata (e.g. 1.2.3 or 2.0.0-beta.1)".to_string())
        );
    }

    #[test]
    fn prints_and_normalises() {
        for (input, printed, normalized) in [
            ("1", "1", "1.0.0"),
            ("1.2", "1.2", "1.2.0"),
            ("01.02.03", "1.2.3", "1.2.3"),
            ("1.2.3.0", "1.2.3.0", "1.2.3"),
            ("1.2.3.4", "1.2.3.4", "1.2.3.4"),
            ("1.0.0-Beta.01+sha.5", "1.0.0-Beta.01+sha.5", "1.0.0-Beta.1"),
            ("2.0+meta", "2.0+meta", "2.0.0"),
        ] {
            assert_eq!(v(input).to_string(), printed, "{input}");
            assert_eq!(v(input).normalized(), normalized, "{input}");
        }
    }

    #[test]
    fn orders() {
        let mut list = [
            v("1.0.0"),
            v("1.0.0-beta"),
            v("1.0.0-Alpha"),
            v("0.9.9.9"),
            v("1.0.0-beta.2"),
            v("1.0.0-beta.10"),
            v("1.0.1"),
        ];
        list.sort();
        let s: Vec<String> = list
            .iter()
            .map(|x| format!("{:?}-{}", x.parts, x.pre_release))
            .collect();
        assert_eq!(
            s,
            vec![
                "[0, 9, 9, 9]-",
                "[1, 0, 0]-Alpha",
                "[1, 0, 0]-beta",
                "[1, 0, 0]-beta.2",
                "[1, 0, 0]-beta.10",
                "[1, 0, 0]-",
                "[1, 0, 1]-"
            ]
        );
        assert_eq!(v("1.0").cmp(&v("1.0.0.0")), Ordering::Equal);
        assert_eq!(next_patch(&v("1.2.3")), "1.2.4");
    }

    /// Each row is in strictly increasing order (SemVer 2 §11 plus NuGet's fourth part).
    #[test]
    fn orders_table() {
        let rows: &[&[&str]] = &[
            &[
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-alpha.beta",
                "1.0.0-beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-rc.1",
                "1.0.0",
            ],
            &["1.0.0", "1.0.0.1", "1.0.1", "1.1", "2"],
            &["1.0.0-1", "1.0.0-2", "1.0.0-10", "1.0.0-a"],
            &[
                "1.0.0-99999999999999999999",
                "1.0.0-100000000000000000000",
                "1.0.0-x",
            ],
            &["1.0.0-a.b", "1.0.0-a-b", "1.0.0-a-c"],
        ];
        for row in rows {
            for w in row.windows(2) {
                assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
                assert!(v(w[1]) > v(w[0]), "{} > {}", w[1], w[0]);
            }
        }
    }

    #[test]
    fn equality_ignores_metadata_case_and_padding() {
        let same = [
            ("1.0", "1.0.0.0"),
            ("1.0.0+a", "1.0.0+b"),
            ("1.0.0-RC.1", "1.0.0-rc.1"),
            ("1.0.0-rc.01", "1.0.0-rc.1"),
            ("01.0", "1.0.0"),
        ];
        for (a, b) in same {
            assert_eq!(v(a), v(b), "{a} == {b}");
            let set: HashSet<Version> = [v(a), v(b)].into_iter().collect();
            assert_eq!(set.len(), 1, "{a} and {b} hash alike");
        }
        for (a, b) in [
            ("1.0.0", "1.0.0-rc"),
            ("1.0.0-a", "1.0.0-b"),
            ("1", "1.0.0.1"),
        ] {
            assert_ne!(v(a), v(b), "{a} != {b}");
        }
    }
}
