//! Properties of `ferry_domain::version::Version`: printing and parsing round trips, and an
//! ordering that is a total order agreeing with equality and hashing.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use ferry_domain::version::Version;
use proptest::prelude::*;

/// Version strings from a small alphabet, so that equal and nearly equal versions are common.
fn version_text() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        (0u64..4).prop_map(|n| n.to_string()),
        (0u64..4).prop_map(|n| format!("0{n}")),
        (0u64..1_000_000).prop_map(|n| n.to_string()),
    ];
    let id = prop_oneof![
        Just("alpha".to_string()),
        Just("Alpha".to_string()),
        Just("beta".to_string()),
        Just("rc-1".to_string()),
        Just("RC-1".to_string()),
        Just("1".to_string()),
        Just("01".to_string()),
        Just("2".to_string()),
        Just("10".to_string()),
        "[a-zA-Z0-9-]{1,4}",
    ];
    (
        prop::collection::vec(part, 1..=4),
        prop::option::of(prop::collection::vec(id.clone(), 1..=3)),
        prop::option::of(prop::collection::vec(id, 1..=2)),
    )
        .prop_map(|(parts, pre, meta)| {
            let mut s = parts.join(".");
            if let Some(pre) = pre {
                s.push('-');
                s.push_str(&pre.join("."));
            }
            if let Some(meta) = meta {
                s.push('+');
                s.push_str(&meta.join("."));
            }
            s
        })
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap_or_else(|| panic!("{s:?} should parse"))
}

fn hash(v: &Version) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn same_fields(a: &Version, b: &Version) -> bool {
    a.parts == b.parts && a.pre_release == b.pre_release && a.metadata == b.metadata
}

proptest! {
    #[test]
    fn parse_print_round_trips(s in version_text()) {
        let parsed = v(&s);
        let printed = parsed.to_string();
        let reparsed = v(&printed);
        prop_assert!(same_fields(&parsed, &reparsed), "{s} -> {printed}");
        prop_assert_eq!(reparsed.to_string(), printed.clone());
        // Without leading zeros in the numeric parts, printing gives back the input.
        let canonical = s.split(['-', '+']).next().unwrap_or("").split('.').all(|p| p == "0" || !p.starts_with('0'));
        if canonical {
            prop_assert_eq!(printed, s.clone());
        }
        // The normalised form parses to an equal version.
        prop_assert_eq!(v(&parsed.normalized()), parsed);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,24}", t in "[0-9.+a-zA-Z-]{0,24}") {
        for text in [s, t] {
            if let Some(parsed) = Version::parse(&text) {
                prop_assert!(same_fields(&parsed, &v(&parsed.to_string())));
            }
        }
    }

    #[test]
    fn ordering_is_a_total_order(a in version_text(), b in version_text(), c in version_text()) {
        let (a, b, c) = (v(&a), v(&b), v(&c));
        // Antisymmetric and agreeing with equality and hashing.
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
        if a <= b && b <= a {
            prop_assert_eq!(&a, &b);
        }
        if a == b {
            prop_assert_eq!(hash(&a), hash(&b));
        }
        prop_assert_eq!(
            a == b,
            a.normalized().eq_ignore_ascii_case(&b.normalized())
        );
        // Transitive.
        if a <= b && b <= c {
            prop_assert!(a <= c, "{a} <= {b} <= {c}");
        }
        if a < b && b < c {
            prop_assert!(a < c, "{a} < {b} < {c}");
        }
        // Exactly one of <, == and >.
        let count = [a < b, a == b, a > b].iter().filter(|x| **x).count();
        prop_assert_eq!(count, 1);
    }

    #[test]
    fn sorting_is_consistent(list in prop::collection::vec(version_text(), 0..20)) {
        let mut sorted: Vec<Version> = list.iter().map(|s| v(s)).collect();
        sorted.sort();
        for w in sorted.windows(2) {
            prop_assert!(w[0] <= w[1]);
        }
    }
}
