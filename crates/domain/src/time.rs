//! Timestamps. The store keeps milliseconds since the Unix epoch; the API shows RFC 3339 with an
//! explicit offset, which the Go client requires.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Formats epoch milliseconds as `2025-05-01T10:00:00.000+00:00`.
pub fn format_ms(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => format_time(&t),
        None => "1970-01-01T00:00:00.000+00:00".to_string(),
    }
}

/// Formats a UTC time as RFC 3339 with milliseconds and a `+00:00` offset.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// Parses an RFC 3339 / ISO 8601 timestamp (with offset, or `Z`) into epoch milliseconds.
pub fn parse_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A human duration like Octopus shows for tasks: "4 seconds", "2 minutes".
pub fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 1 {
        return "less than a second".to_string();
    }
    if s < 60 {
        return plural(s, "second");
    }
    if s < 3600 {
        return plural(s / 60, "minute");
    }
    if s < 86_400 {
        return plural(s / 3600, "hour");
    }
    plural(s / 86_400, "day")
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = format_ms(1_746_093_600_000);
        assert_eq!(s, "2025-05-01T10:00:00.000+00:00");
        assert_eq!(parse_ms(&s), Some(1_746_093_600_000));
        assert_eq!(parse_ms("2025-05-01T10:00:00Z"), Some(1_746_093_600_000));
        assert_eq!(
            parse_ms("2025-05-01T20:00:00+10:00"),
            Some(1_746_093_600_000)
        );
        assert_eq!(parse_ms("yesterday"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(400), "less than a second");
        assert_eq!(human_duration(4_000), "4 seconds");
        assert_eq!(human_duration(61_000), "1 minute");
        assert_eq!(human_duration(7_300_000), "2 hours");
    }
}
