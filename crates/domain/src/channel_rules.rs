//! Channel version rules: which package versions a channel's releases may use.
//!
//! A rule (`ChannelRule`) names the packages it applies to (`ActionPackages`: a deployment
//! action and one of its package references, `""` for the primary package) and constrains their
//! versions with a [`VersionRange`] (empty: any version) and a pre-release `Tag` pattern. The tag
//! is a regular expression (with look-around and back-references, as .NET's) matched against the
//! version's pre-release label followed by `+` and the build metadata when there is any, as
//! Octopus does: `2.0.0-beta.1+sha.5` is tested as `beta.1+sha.5`, `1.0.0` as ``, `1.0.0+abc`
//! as `+abc`. An empty tag admits any label; `^$` admits only stable versions without metadata;
//! `^beta` admits labels starting with `beta`; `^(?!beta).+` any label but `beta…`. A match
//! anywhere counts (like .NET's `Regex.IsMatch`), and case matters.
//!
//! Pure: patterns are compiled with size and backtracking limits, and a pattern that exceeds its
//! backtracking limit on some label simply does not match it.

use fancy_regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::version::Version;
use crate::version_range::{RangeParseError, VersionRange};

/// At most this many characters in a tag pattern.
pub const MAX_TAG_LEN: usize = 500;
/// The compiled size limit of a tag pattern (bytes of the underlying automaton).
const TAG_SIZE_LIMIT: usize = 1 << 20;
/// Backtracking steps allowed per match.
const TAG_BACKTRACK_LIMIT: usize = 100_000;

/// A compiled pre-release tag pattern.
#[derive(Clone, Debug)]
pub struct TagPattern {
    pub source: String,
    re: Regex,
}

impl TagPattern {
    /// Compiles a tag pattern; `Ok(None)` for an empty (blank) one, which admits anything.
    pub fn compile(pattern: &str) -> Result<Option<TagPattern>, String> {
        if pattern.trim().is_empty() {
            return Ok(None);
        }
        if pattern.chars().count() > MAX_TAG_LEN {
            return Err(format!(
                "the pattern is longer than {MAX_TAG_LEN} characters"
            ));
        }
        let re = RegexBuilder::new(pattern)
            .delegate_size_limit(TAG_SIZE_LIMIT)
            .backtrack_limit(TAG_BACKTRACK_LIMIT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Some(TagPattern {
            source: pattern.to_string(),
            re,
        }))
    }

    /// Whether the pattern matches the version's tag text ([`tag_text`]).
    pub fn matches(&self, v: &Version) -> bool {
        self.re.is_match(&tag_text(v)).unwrap_or(false)
    }
}

/// What a tag pattern is matched against: the pre-release label, then `+metadata` if any.
pub fn tag_text(v: &Version) -> String {
    if v.metadata.is_empty() {
        v.pre_release.clone()
    } else {
        format!("{}+{}", v.pre_release, v.metadata)
    }
}

/// Why a rule did not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{0}")]
    Range(#[from] RangeParseError),
    #[error("'{pattern}' is not a valid pre-release tag pattern: {message}")]
    Tag { pattern: String, message: String },
}

/// A rule's range and tag, compiled.
#[derive(Clone, Debug)]
pub struct RuleMatcher {
    pub range: Option<VersionRange>,
    pub tag: Option<TagPattern>,
    pub range_text: String,
    pub tag_text: String,
}

impl RuleMatcher {
    pub fn compile(range: &str, tag: &str) -> Result<RuleMatcher, RuleError> {
        let range_parsed = if range.trim().is_empty() {
            None
        } else {
            Some(VersionRange::parse(range)?)
        };
        let tag_parsed = TagPattern::compile(tag).map_err(|message| RuleError::Tag {
            pattern: tag.to_string(),
            message,
        })?;
        Ok(RuleMatcher {
            range: range_parsed,
            tag: tag_parsed,
            range_text: range.trim().to_string(),
            tag_text: tag.to_string(),
        })
    }

    pub fn accepts(&self, v: &Version) -> bool {
        self.range.as_ref().is_none_or(|r| r.contains(v))
            && self.tag.as_ref().is_none_or(|t| t.matches(v))
    }

    /// `version range '[1.0,2.0)' and pre-release tag '^$'`; an empty part reads "any".
    pub fn describe(&self) -> String {
        let range = if self.range_text.is_empty() {
            "any version range".to_string()
        } else {
            format!("version range '{}'", self.range_text)
        };
        let tag = if self.tag.is_none() {
            "any pre-release tag".to_string()
        } else {
            format!("pre-release tag '{}'", self.tag_text)
        };
        format!("{range} and {tag}")
    }
}

/// The `(DeploymentAction, PackageReference)` pairs of a rule's `ActionPackages`; entries
/// without an action are skipped.
pub fn action_packages(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter_map(|e| {
            let get = |k: &str| {
                e.as_object().and_then(|o| {
                    o.iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(k))
                        .and_then(|(_, v)| v.as_str())
                        .map(|s| s.trim().to_string())
                })
            };
            let action = get("DeploymentAction").filter(|a| !a.is_empty())?;
            Some((action, get("PackageReference").unwrap_or_default()))
        })
        .collect()
}

/// Whether a rule's `ActionPackages` names this action's package reference (`""`: primary).
pub fn applies_to(entries: &[Value], action: &str, package_reference: &str) -> bool {
    action_packages(entries)
        .iter()
        .any(|(a, r)| a.eq_ignore_ascii_case(action) && r.eq_ignore_ascii_case(package_reference))
}

/// The version a release takes from `candidates` under `rules` (those that apply to the
/// package): the highest version every rule accepts. Without rules, or when no rule has a tag
/// pattern, a stable version wins over any pre-release (the feed's "latest"); once some rule has
/// a tag pattern, the versions its tag admits compete on equal terms by version order.
pub fn select_latest<'a>(
    candidates: impl IntoIterator<Item = &'a Version>,
    rules: &[&RuleMatcher],
) -> Option<&'a Version> {
    let accepted: Vec<&Version> = candidates
        .into_iter()
        .filter(|v| rules.iter().all(|r| r.accepts(v)))
        .collect();
    let tags_decide = rules.iter().any(|r| r.tag.is_some());
    if !tags_decide {
        if let Some(stable) = accepted.iter().filter(|v| !v.is_pre_release()).max() {
            return Some(stable);
        }
    }
    accepted.into_iter().max()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn rule(range: &str, tag: &str) -> RuleMatcher {
        RuleMatcher::compile(range, tag).unwrap_or_else(|e| panic!("{range} {tag}: {e}"))
    }

    #[test]
    fn tag_text_includes_metadata() {
        assert_eq!(tag_text(&v("1.0.0")), "");
        assert_eq!(tag_text(&v("1.0.0-beta.1")), "beta.1");
        assert_eq!(tag_text(&v("1.0.0-beta.1+sha.5")), "beta.1+sha.5");
        assert_eq!(tag_text(&v("1.0.0+abc")), "+abc");
    }

    #[test]
    fn tags() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("", &["1.0", "1.0-beta", "1.0+x"], &[]),
            (
                "^$",
                &["1.0", "2.0.0.1"],
                &["1.0-beta", "1.0+x", "1.0-rc+x"],
            ),
            (
                "^beta",
                &["1.0-beta", "1.0-beta.2", "1.0-beta+x"],
                &["1.0", "1.0-alpha", "1.0-Beta"],
            ),
            (
                "^(?!beta).+",
                &["1.0-alpha", "1.0-rc.1", "1.0+meta"],
                &["1.0", "1.0-beta", "1.0-beta.1"],
            ),
            (".+", &["1.0-x"], &["1.0"]),
            ("rc", &["1.0-pre-rc.1"], &["1.0-beta"]),
            ("\\+linux$", &["1.0+linux", "1.0-rc+linux"], &["1.0+win"]),
        ];
        for (tag, yes, no) in cases {
            let r = rule("", tag);
            for x in *yes {
                assert!(r.accepts(&v(x)), "{tag} accepts {x}");
            }
            for x in *no {
                assert!(!r.accepts(&v(x)), "{tag} refuses {x}");
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_a_message() {
        for bad in ["(", "[a-", "(?<n>a)\\k<m>", "a{99999999}"] {
            let e = RuleMatcher::compile("", bad).unwrap_err();
            assert!(
                e.to_string()
                    .contains("is not a valid pre-release tag pattern"),
                "{bad}: {e}"
            );
        }
        let e = RuleMatcher::compile("", &"a".repeat(MAX_TAG_LEN + 1)).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let e = RuleMatcher::compile("[1.0", "").unwrap_err();
        assert!(e.to_string().contains("missing ']' or ')'"), "{e}");
        // Catastrophic backtracking does not hang or panic: it does not match.
        let r = rule("", "^(a+)+\\1b$");
        assert!(!r.accepts(&v(&format!("1.0-{}", "a".repeat(40)))));
    }

    #[test]
    fn range_and_tag_together() {
        let r = rule("[1.0,2.0)", "^$");
        assert!(r.accepts(&v("1.2.3")));
        assert!(!r.accepts(&v("2.0.0-beta")));
        assert!(!r.accepts(&v("1.5.0-beta")));
        assert!(!r.accepts(&v("2.0.0")));
        assert_eq!(
            r.describe(),
            "version range '[1.0,2.0)' and pre-release tag '^$'"
        );
        assert_eq!(
            rule("", "").describe(),
            "any version range and any pre-release tag"
        );
    }

    #[test]
    fn selection() {
        let feed = [v("1.0.0"), v("1.2.3"), v("2.0.0-beta"), v("1.3.0-rc.1")];
        // No rules: stable first.
        assert_eq!(select_latest(&feed, &[]), Some(&v("1.2.3")));
        // The default channel of the brief's scenario.
        let default = rule("[1.0,2.0)", "^$");
        assert_eq!(select_latest(&feed, &[&default]), Some(&v("1.2.3")));
        // The beta channel: pre-releases compete.
        let beta = rule("", "^beta");
        assert_eq!(select_latest(&feed, &[&beta]), Some(&v("2.0.0-beta")));
        let any_pre = rule("", ".*");
        assert_eq!(select_latest(&feed, &[&any_pre]), Some(&v("2.0.0-beta")));
        // A range alone keeps stable first.
        let range = rule("[1.0,3.0)", "");
        assert_eq!(select_latest(&feed, &[&range]), Some(&v("1.2.3")));
        // Only pre-releases inside the range: the latest of them.
        let pre_only = rule("[1.3.0-a,1.4)", "");
        assert_eq!(select_latest(&feed, &[&pre_only]), Some(&v("1.3.0-rc.1")));
        // Nothing satisfies both.
        let never = rule("[3.0,)", "^$");
        assert_eq!(select_latest(&feed, &[&default, &never]), None);
    }

    #[test]
    fn action_package_entries() {
        let entries = vec![
            json!({"DeploymentAction": "Deploy web", "PackageReference": ""}),
            json!({"deploymentAction": "Deploy api", "packageReference": "sidecar"}),
            json!({"PackageReference": "orphan"}),
            json!("junk"),
        ];
        assert_eq!(
            action_packages(&entries),
            vec![
                ("Deploy web".to_string(), String::new()),
                ("Deploy api".to_string(), "sidecar".to_string()),
            ]
        );
        assert!(applies_to(&entries, "deploy WEB", ""));
        assert!(!applies_to(&entries, "Deploy web", "other"));
        assert!(applies_to(&entries, "Deploy api", "Sidecar"));
        assert!(!applies_to(&entries, "Deploy api", ""));
    }
}
