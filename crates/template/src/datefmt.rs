//! Date parsing and .NET-style date formatting (en-US), for `Format`, `NowDate` and `AddDays`.

use chrono::{Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// What .NET knows about a date's time zone, which decides how `z`, `K` and `O` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A `DateTime` without zone: `K` prints nothing, `z` prints the local offset.
    Unspecified,
    /// A UTC `DateTime`: `K` and `O` print `Z`.
    Utc,
    /// A local `DateTime`, or a `DateTimeOffset`, with this offset.
    Offset(FixedOffset),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateVal {
    pub at: NaiveDateTime,
    pub kind: Kind,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A parsed date and the offset written in the text, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parsed {
    pub at: NaiveDateTime,
    pub offset: Option<FixedOffset>,
}

impl Parsed {
    /// As .NET `DateTimeOffset.Parse`: no written offset means the local one.
    pub(crate) fn as_offset(self, local: FixedOffset) -> DateVal {
        DateVal {
            at: self.at,
            kind: Kind::Offset(self.offset.unwrap_or(local)),
        }
    }

    /// As .NET `DateTime.Parse`: a written offset converts the time to local time.
    pub(crate) fn as_date_time(self, local: FixedOffset) -> DateVal {
        match self.offset {
            None => DateVal {
                at: self.at,
                kind: Kind::Unspecified,
            },
            Some(offset) => {
                let shift =
                    i64::from(local.local_minus_utc()) - i64::from(offset.local_minus_utc());
                DateVal {
                    at: self
                        .at
                        .checked_add_signed(Duration::seconds(shift))
                        .unwrap_or(self.at),
                    kind: Kind::Offset(local),
                }
            }
        }
    }

    /// Keeps a written offset, otherwise no zone at all (for `AddDays` and friends).
    pub(crate) fn as_written(self) -> DateVal {
        DateVal {
            at: self.at,
            kind: self.offset.map_or(Kind::Unspecified, Kind::Offset),
        }
    }
}

fn month_from_name(name: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| {
            m.eq_ignore_ascii_case(name) || (name.len() == 3 && m[..3].eq_ignore_ascii_case(name))
        })
        .and_then(|i| u32::try_from(i + 1).ok())
}

fn is_day_name(name: &str) -> bool {
    DAYS.iter().any(|d| {
        d.eq_ignore_ascii_case(name) || (name.len() == 3 && d[..3].eq_ignore_ascii_case(name))
    })
}

/// Splits text into numbers, words and punctuation for the lenient date reader.
#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Num(&'a str),
    Word(&'a str),
    Sym(char),
}

fn tokenize(text: &str) -> Vec<Tok<'_>> {
    let mut toks = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() || c == ',' {
            rest = &rest[c.len_utf8()..];
        } else if c.is_ascii_digit() {
            let len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            toks.push(Tok::Num(&rest[..len]));
            rest = &rest[len..];
        } else if c.is_alphabetic() {
            let len = rest
                .find(|c: char| !c.is_alphabetic())
                .unwrap_or(rest.len());
            toks.push(Tok::Word(&rest[..len]));
            rest = &rest[len..];
        } else {
            toks.push(Tok::Sym(c));
            rest = &rest[c.len_utf8()..];
        }
    }
    toks
}

/// Reads dates the way .NET's lenient `Parse` does for the common cases: ISO 8601
/// (`2030-05-22T09:05:00.123+01:00`), `2030/05/22 09:05:00`, US `5/22/2030 9:05 AM`,
/// `22 May 2030`, `May 22, 2030` and RFC 1123 (`Wed, 22 May 2030 09:05:00 GMT`).
pub(crate) fn parse(text: &str) -> Option<Parsed> {
    let toks = tokenize(text.trim());
    let mut i = 0;
    if let Some(Tok::Word(w)) = toks.first() {
        if is_day_name(w) {
            i = 1;
        }
    }
    let (date, next) = parse_date(&toks, i)?;
    let (time, offset, next) = parse_time(&toks, next)?;
    if next != toks.len() {
        return None;
    }
    Some(Parsed {
        at: date.and_time(time),
        offset,
    })
}

fn num(tok: Option<&Tok<'_>>) -> Option<(u32, usize)> {
    match tok {
        Some(Tok::Num(n)) if n.len() <= 9 => Some((n.parse().ok()?, n.len())),
        _ => None,
    }
}

fn parse_date(toks: &[Tok<'_>], i: usize) -> Option<(NaiveDate, usize)> {
    match (toks.get(i), toks.get(i + 1)) {
        // 2030-05-22, 2030/05/22, 2030.05.22
        (Some(Tok::Num(y)), Some(Tok::Sym(sep @ ('-' | '/' | '.')))) if y.len() == 4 => {
            let (year, _) = num(toks.get(i))?;
            let (month, _) = num(toks.get(i + 2))?;
            if toks.get(i + 3) != Some(&Tok::Sym(*sep)) {
                return None;
            }
            let (day, _) = num(toks.get(i + 4))?;
            Some((
                NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?,
                i + 5,
            ))
        }
        // 5/22/2030, 5-22-2030
        (Some(Tok::Num(_)), Some(Tok::Sym(sep @ ('-' | '/' | '.')))) => {
            let (month, _) = num(toks.get(i))?;
            let (day, _) = num(toks.get(i + 2))?;
            if toks.get(i + 3) != Some(&Tok::Sym(*sep)) {
                return None;
            }
            let (year, digits) = num(toks.get(i + 4))?;
            let year = if digits <= 2 { 2000 + year } else { year };
            Some((
                NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?,
                i + 5,
            ))
        }
        // 22 May 2030
        (Some(Tok::Num(_)), Some(Tok::Word(m))) => {
            let (day, _) = num(toks.get(i))?;
            let month = month_from_name(m)?;
            let (year, _) = num(toks.get(i + 2))?;
            Some((
                NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?,
                i + 3,
            ))
        }
        // May 22, 2030
        (Some(Tok::Word(m)), Some(Tok::Num(_))) => {
            let month = month_from_name(m)?;
            let (day, _) = num(toks.get(i + 1))?;
            let (year, _) = num(toks.get(i + 2))?;
            Some((
                NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?,
                i + 3,
            ))
        }
        _ => None,
    }
}

fn parse_time(toks: &[Tok<'_>], mut i: usize) -> Option<(NaiveTime, Option<FixedOffset>, usize)> {
    // ISO 8601's `T` separator: "2030-05-22T09:05" reads as ..., Word("T"), Num("09"), ...
    if let Some(Tok::Word(w)) = toks.get(i) {
        if w.eq_ignore_ascii_case("T") {
            i += 1;
        }
    }
    let mut time = NaiveTime::MIN;
    if let Some((hour, _)) = num(toks.get(i)) {
        if toks.get(i + 1) != Some(&Tok::Sym(':')) {
            return None;
        }
        let (minute, _) = num(toks.get(i + 2))?;
        i += 3;
        let mut second = 0;
        let mut nanos = 0;
        if toks.get(i) == Some(&Tok::Sym(':')) {
            second = num(toks.get(i + 1))?.0;
            i += 2;
            if toks.get(i) == Some(&Tok::Sym('.')) {
                let Some(Tok::Num(fraction)) = toks.get(i + 1) else {
                    return None;
                };
                let digits: String = fraction.chars().take(9).collect();
                let padded = format!("{digits:0<9}");
                nanos = padded.parse().ok()?;
                i += 2;
            }
        }
        let mut hour = hour;
        if let Some(Tok::Word(w)) = toks.get(i) {
            if w.eq_ignore_ascii_case("AM") || w.eq_ignore_ascii_case("PM") {
                if hour == 0 || hour > 12 {
                    return None;
                }
                hour = hour % 12 + if w.eq_ignore_ascii_case("PM") { 12 } else { 0 };
                i += 1;
            }
        }
        time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    }
    let (offset, i) = parse_offset(toks, i)?;
    Some((time, offset, i))
}

fn parse_offset(toks: &[Tok<'_>], i: usize) -> Option<(Option<FixedOffset>, usize)> {
    match toks.get(i) {
        None => Some((None, i)),
        Some(Tok::Word(w))
            if ["Z", "GMT", "UTC"]
                .iter()
                .any(|z| w.eq_ignore_ascii_case(z)) =>
        {
            Some((FixedOffset::east_opt(0), i + 1))
        }
        Some(Tok::Sym(sign @ ('+' | '-'))) => {
            let (first, digits) = num(toks.get(i + 1))?;
            let (hours, minutes, next) = if toks.get(i + 2) == Some(&Tok::Sym(':')) {
                (first, num(toks.get(i + 3))?.0, i + 4)
            } else if digits == 4 {
                (first / 100, first % 100, i + 2)
            } else if digits <= 2 {
                (first, 0, i + 2)
            } else {
                return None;
            };
            if hours > 14 || minutes > 59 {
                return None;
            }
            let seconds = i32::try_from(hours * 3600 + minutes * 60).ok()?;
            let seconds = if *sign == '-' { -seconds } else { seconds };
            Some((FixedOffset::east_opt(seconds), next))
        }
        Some(_) => None,
    }
}

fn offset_parts(offset: FixedOffset) -> (char, u32, u32) {
    let total = offset.local_minus_utc();
    let sign = if total < 0 { '-' } else { '+' };
    let abs = total.unsigned_abs();
    (sign, abs / 3600, (abs % 3600) / 60)
}

/// Formats like .NET `ToString(format)` in en-US; `None` when .NET would throw.
pub(crate) fn format(value: DateVal, format: &str, local: FixedOffset) -> Option<String> {
    let mut chars = format.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        let (pattern, value) = standard(c, value)?;
        return Some(custom(value, pattern, local));
    }
    if format.is_empty() {
        return standard('G', value).map(|(p, v)| custom(v, p, local));
    }
    Some(custom(value, format, local))
}

fn to_utc(value: DateVal, local: FixedOffset) -> DateVal {
    let offset = match value.kind {
        Kind::Utc => return value,
        Kind::Offset(o) => o,
        Kind::Unspecified => local,
    };
    DateVal {
        at: value
            .at
            .checked_sub_signed(Duration::seconds(i64::from(offset.local_minus_utc())))
            .unwrap_or(value.at),
        kind: Kind::Utc,
    }
}

/// The pattern behind a one-letter standard format.
fn standard(c: char, value: DateVal) -> Option<(&'static str, DateVal)> {
    let pattern = match c {
        'd' => "M/d/yyyy",
        'D' => "dddd, MMMM d, yyyy",
        'f' => "dddd, MMMM d, yyyy h:mm tt",
        'F' => "dddd, MMMM d, yyyy h:mm:ss tt",
        'g' => "M/d/yyyy h:mm tt",
        'G' => "M/d/yyyy h:mm:ss tt",
        'm' | 'M' => "MMMM d",
        'o' | 'O' => match value.kind {
            Kind::Unspecified => "yyyy'-'MM'-'dd'T'HH':'mm':'ss.fffffff",
            Kind::Utc => "yyyy'-'MM'-'dd'T'HH':'mm':'ss.fffffff'Z'",
            Kind::Offset(_) => "yyyy'-'MM'-'dd'T'HH':'mm':'ss.fffffffzzz",
        },
        'r' | 'R' => "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
        's' => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
        't' => "h:mm tt",
        'T' => "h:mm:ss tt",
        'u' => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
        'U' => "dddd, MMMM d, yyyy h:mm:ss tt",
        'y' | 'Y' => "MMMM yyyy",
        _ => return None,
    };
    Some((pattern, value))
}

fn custom(value: DateVal, format: &str, local: FixedOffset) -> String {
    let chars: Vec<char> = format.chars().collect();
    let at = value.at;
    let offset = match value.kind {
        Kind::Unspecified => local,
        Kind::Utc => FixedOffset::east_opt(0).unwrap_or(local),
        Kind::Offset(o) => o,
    };
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        match c {
            'd' => {
                match run {
                    1 => out.push_str(&at.day().to_string()),
                    2 => out.push_str(&format!("{:02}", at.day())),
                    3 => out.push_str(&DAYS[at.weekday().num_days_from_monday() as usize][..3]),
                    _ => out.push_str(DAYS[at.weekday().num_days_from_monday() as usize]),
                }
                i += run;
            }
            'M' => {
                let month = at.month();
                match run {
                    1 => out.push_str(&month.to_string()),
                    2 => out.push_str(&format!("{month:02}")),
                    3 => out.push_str(&MONTHS[month as usize - 1][..3]),
                    _ => out.push_str(MONTHS[month as usize - 1]),
                }
                i += run;
            }
            'y' => {
                let year = at.year();
                match run {
                    1 => out.push_str(&(year % 100).to_string()),
                    2 => out.push_str(&format!("{:02}", year % 100)),
                    n => out.push_str(&format!("{year:0n$}")),
                }
                i += run;
            }
            'h' => {
                let hour = match at.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                push_num(&mut out, hour, run);
                i += run;
            }
            'H' => {
                push_num(&mut out, at.hour(), run);
                i += run;
            }
            'm' => {
                push_num(&mut out, at.minute(), run);
                i += run;
            }
            's' => {
                push_num(&mut out, at.second(), run);
                i += run;
            }
            'f' | 'F' => {
                let ticks = format!("{:07}", at.nanosecond().min(999_999_999) / 100);
                let digits: String = ticks.chars().take(run.min(7)).collect();
                if c == 'F' {
                    let trimmed = digits.trim_end_matches('0');
                    if trimmed.is_empty() && out.ends_with('.') {
                        out.pop();
                    }
                    out.push_str(trimmed);
                } else {
                    out.push_str(&digits);
                }
                i += run;
            }
            't' => {
                let ampm = if at.hour() < 12 { "AM" } else { "PM" };
                out.push_str(if run == 1 { &ampm[..1] } else { ampm });
                i += run;
            }
            'z' => {
                let (sign, hours, minutes) = offset_parts(offset);
                match run {
                    1 => out.push_str(&format!("{sign}{hours}")),
                    2 => out.push_str(&format!("{sign}{hours:02}")),
                    _ => out.push_str(&format!("{sign}{hours:02}:{minutes:02}")),
                }
                i += run;
            }
            'K' => {
                match value.kind {
                    Kind::Unspecified => {}
                    Kind::Utc => out.push('Z'),
                    Kind::Offset(o) => {
                        let (sign, hours, minutes) = offset_parts(o);
                        out.push_str(&format!("{sign}{hours:02}:{minutes:02}"));
                    }
                }
                i += run;
            }
            'g' => {
                out.push_str("A.D.");
                i += run;
            }
            '\'' | '"' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    out.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '\\' => {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                }
                i += 2;
            }
            '%' => i += 1,
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
}

fn push_num(out: &mut String, value: u32, run: usize) {
    if run == 1 {
        out.push_str(&value.to_string());
    } else {
        out.push_str(&format!("{value:02}"));
    }
}

/// Formats a date as .NET's round-trip `O` does.
pub(crate) fn round_trip(value: DateVal, local: FixedOffset) -> String {
    let (pattern, value) = standard('O', value).unwrap_or(("yyyy'-'MM'-'dd'T'HH':'mm':'ss", value));
    custom(value, pattern, local)
}

/// For `R`, `u` and `U`, .NET converts a `DateTimeOffset` to UTC before formatting.
pub(crate) fn prepare_for(format: &str, value: DateVal, local: FixedOffset) -> DateVal {
    match (format, value.kind) {
        ("U", _) | ("r" | "R" | "u", Kind::Offset(_)) => to_utc(value, local),
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn fmt(text: &str, pattern: &str) -> String {
        let local = FixedOffset::east_opt(3600).unwrap();
        let value = parse(text).unwrap().as_offset(local);
        format(prepare_for(pattern, value, local), pattern, local).unwrap()
    }

    #[test]
    fn reads_common_date_shapes() {
        for text in [
            "2030/05/22 09:05:00",
            "2030-05-22T09:05:00",
            "2030-05-22 09:05",
            "5/22/2030 9:05:00 AM",
            "22 May 2030 09:05",
            "May 22, 2030 9:05 AM",
            "Wed, 22 May 2030 09:05:00 GMT",
        ] {
            assert_eq!(fmt(text, "yyyy-MM-dd HH:mm"), "2030-05-22 09:05", "{text}");
        }
        assert!(parse("hello World").is_none());
        assert!(parse("2030-13-01").is_none());
    }

    #[test]
    fn formats_like_dotnet() {
        assert_eq!(
            fmt("2030/05/22 09:05:00", "HH dd-MMM-yyy"),
            "09 22-May-2030"
        );
        assert_eq!(
            fmt("2030-05-22T21:05:03.25+02:00", "hh:mm:ss tt zz"),
            "09:05:03 PM +02"
        );
        assert_eq!(
            fmt("2030-05-22T21:05:03.25Z", "O"),
            "2030-05-22T21:05:03.2500000+00:00"
        );
        assert_eq!(
            fmt("2030-05-22T21:05:03+02:00", "u"),
            "2030-05-22 19:05:03Z"
        );
        assert_eq!(fmt("2030-05-22", "D"), "Wednesday, May 22, 2030");
        assert_eq!(
            fmt("2030-05-22 10:00", "'Week of' MMMM d"),
            "Week of May 22"
        );
        assert_eq!(fmt("2030-05-22 10:00:00.5", "ss.FFF"), "00.5");
        assert_eq!(fmt("2030-05-22 10:00:00", "ss.FFF"), "00");
    }
}
