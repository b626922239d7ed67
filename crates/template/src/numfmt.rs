//! Number parsing and .NET-style number formatting (`Format` filter, `calc` results).
//!
//! Numbers are kept as decimal digits, never as binary floats, so `2.675 | Format F2` rounds
//! the way .NET's `decimal` does (half away from zero) instead of through a double. The culture
//! is en-US: `.` decimal point, `,` group separator, `$` currency, as in Octopus's docs.

/// A decimal number: `digits × 10^-scale`, with a sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dec {
    negative: bool,
    /// Base-10 digits, most significant first; may have leading zeros.
    digits: Vec<u8>,
    /// How many of `digits` are after the decimal point (negative shifts left).
    scale: i32,
}

/// Which .NET numeric type the value was parsed as; it decides which formats are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumKind {
    Int,
    Decimal,
    Double,
}

const MAX_DIGITS: usize = 400;
const MAX_PRECISION: usize = 100;

impl Dec {
    /// Parses like .NET `TryParse` with the styles used for `kind` (en-US): surrounding
    /// spaces and a leading sign; `,` group separators and fractions unless `Int`; exponents
    /// only for `Double`.
    pub(crate) fn parse(text: &str, kind: NumKind) -> Option<Dec> {
        let s = text.trim();
        let (negative, s) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(i) if kind == NumKind::Double => {
                let exp: i32 = s[i + 1..].parse().ok()?;
                (&s[..i], exp)
            }
            _ => (s, 0),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(i) if kind != NumKind::Int => (&mantissa[..i], &mantissa[i + 1..]),
            Some(_) => return None,
            None => (mantissa, ""),
        };
        if int_part.starts_with(',') || (kind == NumKind::Int && int_part.contains(',')) {
            return None;
        }
        let int_digits: Vec<u8> = int_part.bytes().filter(|&b| b != b',').collect();
        if int_digits.is_empty() && frac_part.is_empty() {
            return None;
        }
        if !int_digits
            .iter()
            .chain(frac_part.as_bytes())
            .all(u8::is_ascii_digit)
        {
            return None;
        }
        if int_digits.len() + frac_part.len() > MAX_DIGITS
            || exponent.unsigned_abs() > MAX_DIGITS as u32
        {
            return None;
        }
        let digits: Vec<u8> = int_digits
            .iter()
            .chain(frac_part.as_bytes())
            .map(|b| b - b'0')
            .collect();
        let scale = i32::try_from(frac_part.len()).ok()? - exponent;
        Some(Dec {
            negative,
            digits,
            scale,
        })
    }

    fn is_zero(&self) -> bool {
        self.digits.iter().all(|&d| d == 0)
    }

    /// Multiplies by `10^power`.
    fn shift(&mut self, power: i32) {
        self.scale -= power;
    }

    /// Integer and fraction digit strings, without sign; the integer part is at least "0".
    fn split(&self) -> (String, String) {
        let mut digits: Vec<u8> = self.digits.clone();
        let mut scale = self.scale;
        while scale < 0 {
            digits.push(0);
            scale += 1;
        }
        let scale = usize::try_from(scale).unwrap_or(0);
        while digits.len() < scale {
            digits.insert(0, 0);
        }
        let (int, frac) = digits.split_at(digits.len() - scale);
        let int: String = int
            .iter()
            .skip_while(|&&d| d == 0)
            .map(|&d| char::from(b'0' + d))
            .collect();
        let frac: String = frac.iter().map(|&d| char::from(b'0' + d)).collect();
        (if int.is_empty() { "0".to_string() } else { int }, frac)
    }

    /// Rounds half away from zero to `places` fraction digits.
    fn round_to(&mut self, places: i32) {
        if self.scale <= places {
            return;
        }
        let drop = usize::try_from(self.scale - places).unwrap_or(0);
        if drop > self.digits.len() {
            self.digits = vec![0];
            self.scale = places;
            return;
        }
        let keep = self.digits.len() - drop;
        let round_up = self.digits[keep] >= 5;
        self.digits.truncate(keep);
        self.scale = places;
        if round_up {
            self.increment_last();
        }
        if self.digits.is_empty() {
            self.digits.push(0);
        }
    }

    fn increment_last(&mut self) {
        for d in self.digits.iter_mut().rev() {
            if *d == 9 {
                *d = 0;
            } else {
                *d += 1;
                return;
            }
        }
        self.digits.insert(0, 1);
    }

    /// Position of the most significant digit: `d.ddd × 10^exp`; `None` for zero.
    fn exponent(&self) -> Option<i32> {
        let first = self.digits.iter().position(|&d| d != 0)?;
        let len = i32::try_from(self.digits.len()).ok()?;
        let first = i32::try_from(first).ok()?;
        Some(len - first - 1 - self.scale)
    }

    /// Rounds to `significant` significant digits.
    fn round_significant(&mut self, significant: i32) {
        if let Some(exp) = self.exponent() {
            self.round_to(significant - 1 - exp);
        }
    }

    fn trim_fraction_zeros(&mut self) {
        while self.scale > 0 && self.digits.last() == Some(&0) && self.digits.len() > 1 {
            self.digits.pop();
            self.scale -= 1;
        }
    }

    fn as_i128(&self) -> Option<i128> {
        let (int, frac) = self.split();
        if frac.bytes().any(|b| b != b'0') {
            return None;
        }
        let value: i128 = int.parse().ok()?;
        Some(if self.negative { -value } else { value })
    }
}

/// How .NET (Core 3.0+) prints a double by default: shortest round-trip digits, in
/// exponent form when the exponent is 15 or more, or less than -5.
pub(crate) fn dotnet_double(value: f64) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{value:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..15).contains(&exp) {
        return format!("{value}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}E{sign}{:02}", exp.unsigned_abs())
}

fn group(int: &str) -> String {
    let mut out = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fixed(value: &Dec, places: usize, grouped: bool) -> (bool, String) {
    let mut v = value.clone();
    v.round_to(i32::try_from(places).unwrap_or(0));
    let (int, mut frac) = v.split();
    while frac.len() < places {
        frac.push('0');
    }
    let int = if grouped { group(&int) } else { int };
    let text = if places > 0 {
        format!("{int}.{frac}")
    } else {
        int
    };
    (value.negative && !v.is_zero(), text)
}

fn signed(negative: bool, text: String) -> String {
    if negative { format!("-{text}") } else { text }
}

/// Formats like .NET `ToString(format)` for the given numeric type; `None` when .NET
/// would throw `FormatException`.
pub(crate) fn format_number(value: &Dec, kind: NumKind, format: &str) -> Option<String> {
    let bytes = format.as_bytes();
    let is_standard = bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes[1..].iter().all(u8::is_ascii_digit)
        && bytes.len() <= 10;
    if !is_standard {
        return Some(format_custom(value, format));
    }
    let precision: Option<usize> = if bytes.len() > 1 {
        Some(format[1..].parse::<usize>().ok()?.min(MAX_PRECISION))
    } else {
        None
    };
    let letter = bytes[0].to_ascii_uppercase();
    let out = match letter {
        b'C' => {
            let (neg, text) = fixed(value, precision.unwrap_or(2), true);
            signed(neg, format!("${text}"))
        }
        b'F' => {
            let (neg, text) = fixed(value, precision.unwrap_or(2), false);
            signed(neg, text)
        }
        b'N' => {
            let (neg, text) = fixed(value, precision.unwrap_or(2), true);
            signed(neg, text)
        }
        b'P' => {
            let mut v = value.clone();
            v.shift(2);
            let (neg, text) = fixed(&v, precision.unwrap_or(2), true);
            signed(neg, format!("{text}%"))
        }
        b'E' => format_exponential(value, precision.unwrap_or(6), bytes[0] == b'e', 3, true),
        b'D' if kind == NumKind::Int => {
            let n = value.as_i128()?;
            let digits = n.unsigned_abs().to_string();
            let width = precision.unwrap_or(0);
            let padded = format!("{digits:0>width$}");
            signed(n < 0, padded)
        }
        b'X' if kind == NumKind::Int => {
            let n = value.as_i128()?;
            let bits = i32::try_from(n).map_or(n as u64, |small| u64::from(small as u32));
            let hex = if bytes[0] == b'x' {
                format!("{bits:x}")
            } else {
                format!("{bits:X}")
            };
            let width = precision.unwrap_or(0);
            format!("{hex:0>width$}")
        }
        b'G' => format_general(value, kind, precision, bytes[0] == b'g'),
        b'R' if kind == NumKind::Double => format_general(value, kind, None, false),
        _ => return None,
    };
    Some(out)
}

fn format_exponential(
    value: &Dec,
    places: usize,
    lower: bool,
    min_exp_digits: usize,
    plus: bool,
) -> String {
    let mut v = value.clone();
    let places_i = i32::try_from(places).unwrap_or(0);
    v.round_significant(places_i + 1);
    let exp = v.exponent().unwrap_or(0);
    v.shift(-exp);
    let (int, mut frac) = v.split();
    frac.truncate(places);
    while frac.len() < places {
        frac.push('0');
    }
    let mantissa = if places > 0 {
        format!("{int}.{frac}")
    } else {
        int
    };
    let e = if lower { 'e' } else { 'E' };
    let sign = if exp < 0 {
        "-"
    } else if plus {
        "+"
    } else {
        ""
    };
    let digits = format!("{:0>min_exp_digits$}", exp.unsigned_abs());
    signed(
        value.negative && !value.is_zero(),
        format!("{mantissa}{e}{sign}{digits}"),
    )
}

fn format_general(value: &Dec, kind: NumKind, precision: Option<usize>, lower: bool) -> String {
    let mut v = value.clone();
    let significant = match (precision, kind) {
        (Some(p), _) if p > 0 => p,
        (_, NumKind::Double) => 17,
        (_, NumKind::Int) => 40,
        (_, NumKind::Decimal) => {
            // `decimal.ToString()` keeps the digits it was written with, trailing zeros too.
            let (int, frac) = v.split();
            let text = if frac.is_empty() {
                int
            } else {
                format!("{int}.{frac}")
            };
            return signed(value.negative && !value.is_zero(), text);
        }
    };
    if kind == NumKind::Double && precision.is_none() {
        let text: String = {
            let (int, frac) = v.split();
            if frac.is_empty() {
                int
            } else {
                format!("{int}.{frac}")
            }
        };
        return match text.parse::<f64>() {
            Ok(f) => signed(value.negative && f != 0.0, dotnet_double(f)),
            Err(_) => text,
        };
    }
    let significant_i = i32::try_from(significant).unwrap_or(40);
    v.round_significant(significant_i);
    let exp = v.exponent().unwrap_or(0);
    if exp >= significant_i || exp < -4 {
        let mut mantissa = v.clone();
        mantissa.shift(-exp);
        mantissa.trim_fraction_zeros();
        let (int, frac) = mantissa.split();
        let m = if frac.is_empty() {
            int
        } else {
            format!("{int}.{frac}")
        };
        let e = if lower { 'e' } else { 'E' };
        let sign = if exp < 0 { '-' } else { '+' };
        return signed(
            value.negative && !v.is_zero(),
            format!("{m}{e}{sign}{:02}", exp.unsigned_abs()),
        );
    }
    v.trim_fraction_zeros();
    let (int, frac) = v.split();
    let text = if frac.is_empty() || frac.bytes().all(|b| b == b'0') {
        int
    } else {
        format!("{int}.{frac}")
    };
    signed(value.negative && !v.is_zero(), text)
}

/// One section of a custom numeric format such as `#,##0.00;(#,##0.00)`.
#[derive(Default)]
struct Section {
    tokens: Vec<Tok>,
    int_placeholders: usize,
    /// Placeholders from the first `0` to the decimal point.
    int_min: usize,
    frac_max: usize,
    /// Position of the last `0` after the decimal point.
    frac_min: usize,
    grouping: bool,
    scale_thousands: i32,
    percent: i32,
    has_point: bool,
}

enum Tok {
    Digit,
    Point,
    Literal(String),
}

fn parse_section(format: &str) -> Section {
    let mut s = Section::default();
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    let mut seen_zero_int = false;
    let mut pending_commas = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '0' | '#' => {
                if pending_commas > 0 && !s.has_point && s.int_placeholders > 0 {
                    s.grouping = true;
                }
                pending_commas = 0;
                if s.has_point {
                    s.frac_max += 1;
                    if c == '0' {
                        s.frac_min = s.frac_max;
                    }
                } else {
                    s.int_placeholders += 1;
                    if c == '0' {
                        seen_zero_int = true;
                    }
                    if seen_zero_int {
                        s.int_min += 1;
                    }
                }
                s.tokens.push(Tok::Digit);
            }
            '.' if !s.has_point => {
                s.scale_thousands += pending_commas;
                pending_commas = 0;
                s.has_point = true;
                s.tokens.push(Tok::Point);
            }
            ',' => {
                if !s.has_point {
                    pending_commas += 1;
                }
            }
            '%' => {
                s.percent += 1;
                s.tokens.push(Tok::Literal("%".to_string()));
            }
            '\u{2030}' => {
                s.percent += 10;
                s.tokens.push(Tok::Literal("\u{2030}".to_string()));
            }
            '\\' => {
                i += 1;
                if let Some(&next) = chars.get(i) {
                    s.tokens.push(Tok::Literal(next.to_string()));
                }
            }
            '\'' | '"' => {
                let mut lit = String::new();
                i += 1;
                while i < chars.len() && chars[i] != c {
                    lit.push(chars[i]);
                    i += 1;
                }
                s.tokens.push(Tok::Literal(lit));
            }
            other => s.tokens.push(Tok::Literal(other.to_string())),
        }
        i += 1;
    }
    if !s.has_point {
        s.scale_thousands += pending_commas;
    }
    s
}

fn split_sections(format: &str) -> Vec<String> {
    let mut sections = vec![String::new()];
    let mut quote: Option<char> = None;
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        let current = sections.last_mut();
        let Some(current) = current else { break };
        match c {
            '\\' if quote.is_none() => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '\'' | '"' => {
                if quote == Some(c) {
                    quote = None;
                } else if quote.is_none() {
                    quote = Some(c);
                }
                current.push(c);
            }
            ';' if quote.is_none() => sections.push(String::new()),
            _ => current.push(c),
        }
    }
    sections
}

fn format_custom(value: &Dec, format: &str) -> String {
    let sections = split_sections(format);
    let (section_text, use_sign) = match (sections.len(), value.negative, value.is_zero()) {
        (n, _, true) if n >= 3 && !sections[2].is_empty() => (sections[2].as_str(), false),
        (n, true, false) if n >= 2 && !sections[1].is_empty() => (sections[1].as_str(), false),
        _ => (sections[0].as_str(), true),
    };
    let section = parse_section(section_text);
    let mut v = value.clone();
    v.shift(2 * section.percent - 3 * section.scale_thousands);
    v.round_to(i32::try_from(section.frac_max).unwrap_or(0));
    let (mut int, mut frac) = v.split();
    if int == "0" {
        int.clear();
    }
    while int.len() < section.int_min {
        int.insert(0, '0');
    }
    while frac.len() > section.frac_min && frac.ends_with('0') {
        frac.pop();
    }
    while frac.len() < section.frac_min {
        frac.push('0');
    }
    let int: Vec<char> = int.chars().collect();
    let frac: Vec<char> = frac.chars().collect();
    let len = int.len();
    let placeholders = section.int_placeholders;
    let mut out = String::new();
    if use_sign && value.negative && !v.is_zero() {
        out.push('-');
    }
    let emit_int = |out: &mut String, from: usize, to: usize| {
        for (index, &d) in int.iter().enumerate().take(to).skip(from) {
            out.push(d);
            let from_right = len - index - 1;
            if section.grouping && from_right > 0 && from_right.is_multiple_of(3) {
                out.push(',');
            }
        }
    };
    let mut int_slot = 0usize;
    let mut frac_slot = 0usize;
    let mut after_point = false;
    for tok in &section.tokens {
        match tok {
            Tok::Digit if !after_point => {
                // Digits are right-aligned to the placeholders; the first takes any overflow.
                let end = (int_slot + len + 1).saturating_sub(placeholders);
                let start = if int_slot == 0 {
                    0
                } else {
                    end.saturating_sub(1)
                };
                emit_int(&mut out, start, end);
                int_slot += 1;
            }
            Tok::Digit => {
                if let Some(&d) = frac.get(frac_slot) {
                    out.push(d);
                }
                frac_slot += 1;
            }
            Tok::Point => {
                after_point = true;
                if placeholders == 0 {
                    emit_int(&mut out, 0, len);
                }
                if !frac.is_empty() {
                    out.push('.');
                }
            }
            Tok::Literal(text) => out.push_str(text),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn fmt(value: &str, kind: NumKind, format: &str) -> Option<String> {
        format_number(&Dec::parse(value, kind).unwrap(), kind, format)
    }

    #[test]
    fn standard_formats_follow_en_us() {
        assert_eq!(fmt("4.3", NumKind::Decimal, "C").as_deref(), Some("$4.30"));
        assert_eq!(
            fmt("-1234.5", NumKind::Decimal, "C").as_deref(),
            Some("-$1,234.50")
        );
        assert_eq!(
            fmt("2.675", NumKind::Decimal, "F2").as_deref(),
            Some("2.68")
        );
        assert_eq!(
            fmt("1234567.891", NumKind::Decimal, "N1").as_deref(),
            Some("1,234,567.9")
        );
        assert_eq!(
            fmt("0.1234", NumKind::Decimal, "P1").as_deref(),
            Some("12.3%")
        );
        assert_eq!(
            fmt("1234.5678", NumKind::Decimal, "E").as_deref(),
            Some("1.234568E+003")
        );
        assert_eq!(fmt("4.30", NumKind::Decimal, "G").as_deref(), Some("4.30"));
        assert_eq!(
            fmt("1234.5678", NumKind::Decimal, "G3").as_deref(),
            Some("1.23E+03")
        );
        assert_eq!(fmt("42", NumKind::Int, "D5").as_deref(), Some("00042"));
        assert_eq!(fmt("255", NumKind::Int, "X4").as_deref(), Some("00FF"));
        assert_eq!(fmt("-1", NumKind::Int, "x").as_deref(), Some("ffffffff"));
        assert_eq!(fmt("42", NumKind::Decimal, "D"), None);
        assert_eq!(fmt("42", NumKind::Decimal, "Q"), None);
    }

    #[test]
    fn custom_formats_place_digits() {
        assert_eq!(
            fmt("1234.5", NumKind::Decimal, "#,##0.00").as_deref(),
            Some("1,234.50")
        );
        assert_eq!(fmt("0.5", NumKind::Decimal, "#.##").as_deref(), Some(".5"));
        assert_eq!(fmt("5", NumKind::Decimal, "0000").as_deref(), Some("0005"));
        assert_eq!(
            fmt("123456789", NumKind::Decimal, "000-00-0000").as_deref(),
            Some("123-45-6789")
        );
        assert_eq!(
            fmt("0.256", NumKind::Decimal, "0.0%").as_deref(),
            Some("25.6%")
        );
        assert_eq!(fmt("-5", NumKind::Decimal, "0;(0)").as_deref(), Some("(5)"));
        assert_eq!(
            fmt("1234567", NumKind::Decimal, "#,##0,K").as_deref(),
            Some("1,235K")
        );
    }

    #[test]
    fn doubles_print_like_dotnet() {
        assert_eq!(dotnet_double(1.5), "1.5");
        assert_eq!(dotnet_double(7.0 * 0.2), "1.4000000000000001");
        assert_eq!(dotnet_double(1e15), "1E+15");
        assert_eq!(dotnet_double(0.00001), "1E-05");
        assert_eq!(dotnet_double(-264.0), "-264");
    }
}
