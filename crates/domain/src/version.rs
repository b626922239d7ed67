//! Release and package versions: SemVer 2 and NuGet-style (up to four numeric parts), with an
//! ordering that compares numbers numerically and pre-release labels case-insensitively.

use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// One to four numeric parts.
    pub parts: Vec<u64>,
    pub pre_release: String,
    pub metadata: String,
}

impl Version {
    /// Parses `1.2.3`, `1.2.3.4`, `1.2`, `1`, with optional `-prerelease` and `+metadata`.
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
            if p.is_empty() || p.len() > 18 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parts.push(p.parse().ok()?);
        }
        if parts.len() > 4 {
            return None;
        }
        let label_ok = |l: &str| {
            l.split('.').all(|seg| {
                !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        };
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

fn compare_labels(a: &str, b: &str) -> Ordering {
    let mut ai = a.split('.');
    let mut bi = b.split('.');
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.to_lowercase().cmp(&y.to_lowercase()),
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
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
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
}
