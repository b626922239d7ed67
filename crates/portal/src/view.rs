//! Small helpers the templates use: states with icons, times, URLs.

use serde_json::Value;

/// `s` percent-encoded for a URL query value or path segment.
pub fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// (Id, Name) of each object of a JSON array, or of a page's `Items`.
pub fn pairs(v: &Value) -> Vec<(String, String)> {
    let items = match v {
        Value::Array(a) => a.as_slice(),
        other => arr(other, "Items"),
    };
    items.iter().map(|x| (s(x, "Id"), s(x, "Name"))).collect()
}

/// Where to go after a form or sign-in: `next` when it is a portal path (never another site),
/// else `fallback`.
pub fn safe_next(next: &str, fallback: &str) -> String {
    if next.starts_with("/app") && !next.starts_with("//") && !next.contains("://") {
        next.to_string()
    } else {
        fallback.to_string()
    }
}

/// A string field of a JSON object ("" when absent or not a string).
pub fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// A boolean field of a JSON object.
pub fn b(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// An integer field of a JSON object.
pub fn n(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// An array field of a JSON object (empty when absent).
pub fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The strings of an array field.
pub fn strs(v: &Value, key: &str) -> Vec<String> {
    arr(v, key)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// A task or deployment state, shown with an icon and a word (never colour alone).
#[derive(Clone, Debug, Default)]
pub struct StateView {
    /// Octopus's state name (`Success`, `Failed`, …).
    pub name: String,
    /// The CSS class (colour).
    pub class: &'static str,
    /// The icon (a character, with `aria-hidden`).
    pub icon: &'static str,
    /// The word shown and read out.
    pub label: String,
}

impl StateView {
    pub fn of(state: &str, has_warnings: bool, pending_interruptions: bool) -> StateView {
        let (class, icon, label) = match state {
            _ if pending_interruptions => ("st-waiting", "‖", "Waiting for input"),
            "Success" if has_warnings => ("st-warning", "⚠", "Succeeded with warnings"),
            "Success" => ("st-success", "✓", "Succeeded"),
            "Failed" => ("st-failed", "✗", "Failed"),
            "TimedOut" => ("st-failed", "✗", "Timed out"),
            "Canceled" => ("st-canceled", "⊘", "Cancelled"),
            "Cancelling" => ("st-canceled", "⊘", "Cancelling"),
            "Executing" => ("st-running", "▶", "Running"),
            "Queued" => ("st-queued", "◷", "Queued"),
            "" => ("st-none", "·", "Not deployed"),
            _ => ("st-queued", "•", state),
        };
        StateView {
            name: state.to_string(),
            class,
            icon,
            label: label.to_string(),
        }
    }

    /// Whether the task has not finished.
    pub fn is_active(&self) -> bool {
        matches!(self.name.as_str(), "Executing" | "Queued" | "Cancelling")
    }
}

/// An ISO time shown briefly: `2026-11-29 11:40` (UTC).
pub fn short_time(iso: &str) -> String {
    if iso.len() >= 16 {
        format!("{} {}", &iso[..10], &iso[11..16])
    } else {
        iso.to_string()
    }
}

/// A duration in milliseconds as `1m 05s`.
pub fn duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_words_and_icons() {
        let s = StateView::of("Failed", false, false);
        assert_eq!(s.label, "Failed");
        assert_eq!(s.icon, "✗");
        assert_eq!(
            StateView::of("Success", true, false).label,
            "Succeeded with warnings"
        );
        assert_eq!(
            StateView::of("Executing", false, true).label,
            "Waiting for input"
        );
        assert!(StateView::of("Queued", false, false).is_active());
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(
            short_time("2026-11-29T11:40:12.000+00:00"),
            "2026-11-29 11:40"
        );
        assert_eq!(duration(65_000), "1m 05s");
        assert_eq!(duration(3_700_000), "1h 01m");
        assert_eq!(url_encode("a b/c"), "a%20b%2Fc");
    }
}

#[cfg(test)]
mod field_tests {
    use crate::ctx::ApiFailure;

    #[test]
    fn errors_find_their_field() {
        let f = ApiFailure {
            status: 400,
            message: "There was a problem with your request.".into(),
            errors: vec!["Please provide a value for the account Name".into()],
        };
        assert!(f.for_field("Name").is_some());
        assert!(f.for_field("Username").is_none());
        let g = ApiFailure {
            status: 400,
            message: "x".into(),
            errors: vec!["Please provide a Username".into()],
        };
        assert!(g.for_field("Username").is_some());
        assert!(g.for_field("Name").is_none());
    }
}
