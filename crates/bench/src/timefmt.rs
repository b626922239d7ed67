//! The two calendar conversions the bench needs without a date library: reading the API's
//! RFC 3339 timestamps (`2025-05-01T10:00:00.123+00:00`) into epoch milliseconds, and naming
//! today's date for the report.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `(year, month, day)` of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn number(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]` followed by `Z` or `±HH:MM` into epoch milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year = number(date_parts.next()?)?;
    let month = number(date_parts.next()?)?;
    let day = number(date_parts.next()?)?;
    let (clock, offset_minutes) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let sign_at = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(sign_at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = offset.get(1..)?.split_once(':')?;
        (clock, sign * (number(hours)? * 60 + number(minutes)?))
    };
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = whole.splitn(3, ':');
    let hours = number(clock_parts.next()?)?;
    let minutes = number(clock_parts.next()?)?;
    let seconds = number(clock_parts.next()?)?;
    let millis = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
        number(&digits)?
    };
    let seconds_of_day = hours * 3600 + minutes * 60 + seconds - offset_minutes * 60;
    Some((days_from_civil(year, month, day) * 86_400 + seconds_of_day) * 1000 + millis)
}

/// Today's date in UTC as `YYYY-MM-DD`.
pub fn today_utc() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let days = i64::try_from(seconds / 86_400).unwrap_or_default();
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_timestamp_format() {
        let cases = [
            ("1970-01-01T00:00:00.000+00:00", Some(0)),
            ("1970-01-01T00:00:01.5Z", Some(1500)),
            ("2025-05-01T10:00:00.123+00:00", Some(1_746_093_600_123)),
            ("2025-05-01T12:00:00.123+02:00", Some(1_746_093_600_123)),
            ("2024-02-29T23:59:59.999-01:00", Some(1_709_254_799_999)),
            ("2025-05-01", None),
            ("2025-05-01T10:00:00", None),
            ("nonsense", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_rfc3339_ms(text), expected, "{text}");
        }
    }

    #[test]
    fn days_round_trip() {
        for days in [-1, 0, 59, 60, 365, 11_016, 19_843, 20_000, 100_000] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(civil_from_days(20_209), (2025, 5, 1));
    }
}
