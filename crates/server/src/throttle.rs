//! Sign-in throttling: failed sign-ins are counted per account and per client address in a
//! sliding window; past the limit, sign-in answers 429 with `Retry-After` whether or not the
//! account exists. Account names are normalised first ([`account_key`]), so variants of one
//! name (case, whitespace, null bytes, full-width letters, Cyrillic look-alikes) share a limit
//! (CVE-2022-2778 bypassed Octopus's limit with null bytes).
//!
//! The counters live in this process: several server nodes each count their own failures.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use unicode_normalization::UnicodeNormalization;

/// Failures per account within [`WINDOW_MS`] before sign-in is refused.
pub const ACCOUNT_LIMIT: usize = 5;
/// Failures per client address within [`WINDOW_MS`] before sign-in is refused.
pub const ADDRESS_LIMIT: usize = 20;
/// The sliding window.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Counters kept at most (oldest dropped first), so a flood of names cannot exhaust memory.
const MAX_KEYS: usize = 100_000;

/// The key an account name is counted and looked up under: NFKC (full-width and other
/// compatibility forms), without control, format (zero-width) or whitespace characters,
/// lower-cased, with Cyrillic and Greek letters that look Latin replaced by the Latin letter.
pub fn account_key(name: &str) -> String {
    let folded: String = name
        .nfkc()
        .filter(|c| !c.is_control() && !c.is_whitespace() && !is_format(*c))
        .flat_map(char::to_lowercase)
        .map(confusable)
        .collect();
    // Mapping can produce new compatibility forms only in theory; normalise once more.
    folded.nfkc().collect()
}

/// Unicode format characters that render as nothing (zero-width space and joiners, BOM, …).
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

/// Lower-case Cyrillic and Greek letters (and a few Latin ones) that look like a Latin letter.
fn confusable(c: char) -> char {
    match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' => 'e',
        'һ' => 'h',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'ӏ' => 'l',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' => 't',
        'ѵ' => 'v',
        'ԝ' => 'w',
        'х' => 'x',
        'у' => 'y',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'γ' => 'y',
        'ζ' => 'z',
        // Latin look-alikes
        'ı' => 'i',
        'ȷ' => 'j',
        'ɡ' => 'g',
        'ɑ' => 'a',
        other => other,
    }
}

/// What a sign-in attempt may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused for this many more seconds.
    Throttled {
        retry_after_secs: u64,
    },
}

#[derive(Default)]
struct Counters {
    /// Failure times per key (`a:` account key, `ip:` address), oldest first.
    failures: HashMap<String, Vec<i64>>,
}

static COUNTERS: LazyLock<Mutex<Counters>> = LazyLock::new(Default::default);

fn counters() -> std::sync::MutexGuard<'static, Counters> {
    COUNTERS.lock().unwrap_or_else(|e| e.into_inner())
}

impl Counters {
    fn recent(&mut self, key: &str, now: i64) -> Option<&Vec<i64>> {
        let v = self.failures.get_mut(key)?;
        v.retain(|t| *t > now - WINDOW_MS);
        if v.is_empty() {
            self.failures.remove(key);
            return None;
        }
        self.failures.get(key)
    }

    /// Seconds until the failure that must age out before another attempt is allowed.
    fn over(&mut self, key: &str, limit: usize, now: i64) -> Option<u64> {
        let times = self.recent(key, now)?;
        if times.len() < limit {
            return None;
        }
        let release = times[times.len() - limit] + WINDOW_MS;
        Some(((release - now).max(1000) + 999) as u64 / 1000)
    }
}

/// Whether a sign-in for `account` (already an [`account_key`]) from `address` may be tried.
pub fn check(account: &str, address: &str, now: i64) -> Verdict {
    let mut c = counters();
    let a = c.over(&format!("a:{account}"), ACCOUNT_LIMIT, now);
    let i = c.over(&format!("ip:{address}"), ADDRESS_LIMIT, now);
    match a.max(i) {
        Some(retry_after_secs) => Verdict::Throttled { retry_after_secs },
        None => Verdict::Allowed,
    }
}

/// Counts a failed sign-in.
pub fn record_failure(account: &str, address: &str, now: i64) {
    let mut c = counters();
    if c.failures.len() >= MAX_KEYS {
        let cutoff = now - WINDOW_MS;
        c.failures
            .retain(|_, v| v.last().is_some_and(|t| *t > cutoff));
        if c.failures.len() >= MAX_KEYS {
            c.failures.clear();
        }
    }
    for key in [format!("a:{account}"), format!("ip:{address}")] {
        let v = c.failures.entry(key).or_default();
        v.push(now);
        // Only the most recent failures matter for the limits.
        let keep = ADDRESS_LIMIT.max(ACCOUNT_LIMIT);
        if v.len() > keep {
            let drop = v.len() - keep;
            v.drain(..drop);
        }
    }
}

/// Forgets an account's failures after a successful sign-in (the address keeps its count).
pub fn record_success(account: &str) {
    counters().failures.remove(&format!("a:{account}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_share_one_key() {
        let k = account_key("admin");
        for v in [
            "Admin",
            " admin ",
            "ad\u{0}min",
            "ad min",
            "ＡＤＭＩＮ",
            "\u{0430}dmin",
            "adm\u{0456}n",
            "ad\u{200B}min",
            "\u{03B1}dmin",
            "ADMIN\t",
        ] {
            assert_eq!(account_key(v), k, "{v:?}");
        }
        assert_ne!(account_key("admin2"), k);
    }

    #[test]
    fn limit_and_retry_after() {
        let acct = "throttle-test-account";
        let now = 1_000_000_000;
        for i in 0..ACCOUNT_LIMIT {
            assert_eq!(check(acct, "192.0.2.1", now), Verdict::Allowed);
            record_failure(acct, "192.0.2.1", now + i as i64);
        }
        let v = check(acct, "192.0.2.99", now + 10);
        assert!(
            matches!(v, Verdict::Throttled { retry_after_secs } if retry_after_secs > 0 && retry_after_secs <= 900),
            "{v:?}"
        );
        assert_eq!(
            check(acct, "192.0.2.1", now + WINDOW_MS + 10),
            Verdict::Allowed
        );
    }
}
