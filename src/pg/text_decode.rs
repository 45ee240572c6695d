//! PostgreSQL text output to canonical values ([`decode_text`]).
//!
//! duplex reads pgoutput in text format, so every value crosses the wire in
//! PostgreSQL's text syntax. The source session pins `DateStyle=ISO, MDY`,
//! `IntervalStyle=iso_8601`, `TimeZone=UTC`, `extra_float_digits=1` and
//! `bytea_output=hex`; the decoder reads exactly what PostgreSQL prints under those
//! settings and is lenient where that is cheap and unambiguous (any UTC offset on
//! `timestamptz`, the `postgres` interval style, the legacy `escape` bytea format,
//! `boolin`'s spellings). Anything it cannot read exactly is an error rather than a
//! guess. Arrays are read by [`text_array`](super::text_array).

use crate::canonical::value::{
    days_from_civil, days_in_month, Date, Interval, Timestamp, Value, MICROS_PER_DAY,
};
use crate::pg::limits::{
    INTERVAL_NEG_INFINITY, INTERVAL_POS_INFINITY, MICROS_PER_HOUR, MICROS_PER_MINUTE,
    MICROS_PER_SECOND, PG_DATE_MAX_DAYS, PG_DATE_MIN_DAYS, PG_TS_END_DAYS, PG_TS_MIN_MICROS,
};
use crate::pg::text_array::decode_array;
use crate::pg::type_class::PgTypeClass;

/// A PostgreSQL text value that does not decode into the expected canonical value.
#[derive(Debug, thiserror::Error)]
pub enum PgDecodeError {
    #[error("invalid {type_name} value {text:?}: {reason}")]
    Invalid {
        type_name: &'static str,
        /// The offending text, truncated to about 80 characters.
        text: String,
        reason: &'static str,
    },
    #[error("{type_name} value {text:?} is out of range: {reason}")]
    OutOfRange {
        type_name: &'static str,
        text: String,
        reason: &'static str,
    },
    #[error("malformed array literal {text:?}: {reason}")]
    MalformedArray { text: String, reason: &'static str },
    #[error(
        "array literal {text:?} has explicit bounds ('[lo:hi]=' prefix), which duplex does not carry"
    )]
    ArrayBounds { text: String },
}

/// Why a piece of text failed to decode; turned into a [`PgDecodeError`] with the
/// type name and the text by [`decode_text`].
enum Bad {
    Syntax(&'static str),
    Range(&'static str),
}

type Parsed<T> = Result<T, Bad>;

pub(super) fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX - 3).collect();
    out.push_str("...");
    out
}

/// Decode PostgreSQL's text output for a value of the given class.
pub fn decode_text(class: &PgTypeClass, text: &str) -> Result<Value, PgDecodeError> {
    if let PgTypeClass::Array(elem) = class {
        return decode_array(elem, text);
    }
    decode_scalar(class, text).map_err(|bad| match bad {
        Bad::Syntax(reason) => PgDecodeError::Invalid {
            type_name: class.type_name(),
            text: excerpt(text),
            reason,
        },
        Bad::Range(reason) => PgDecodeError::OutOfRange {
            type_name: class.type_name(),
            text: excerpt(text),
            reason,
        },
    })
}

fn decode_scalar(class: &PgTypeClass, text: &str) -> Parsed<Value> {
    use crate::canonical::value::{Decimal, Value};
    use crate::pg::type_class::PgTypeClass as C;
    Ok(match class {
        C::Bool => Value::Bool(decode_bool(text)?),
        C::Int2 => Value::Int(decode_int(text, i16::MIN.into(), i16::MAX.into())?),
        C::Int4 => Value::Int(decode_int(text, i32::MIN.into(), i32::MAX.into())?),
        C::Int8 => Value::Int(decode_int(text, i64::MIN, i64::MAX)?),
        C::Oid => Value::Int(decode_int(text, 0, u32::MAX.into())?),
        C::Numeric => Value::Decimal(Decimal::parse(text).ok_or(Bad::Syntax("not a number"))?),
        C::Float4 => Value::Float32(decode_f32(text)?),
        C::Float8 => Value::Float64(decode_f64(text)?),
        C::Text | C::Other => Value::Text(text.to_string()),
        C::Bpchar => Value::Text(text.trim_end_matches(' ').to_string()),
        C::Bytea => Value::Bytes(decode_bytea(text)?),
        C::Date => Value::Date(decode_date(text)?),
        C::Time => Value::Time(decode_time(text)?),
        C::Timestamp => Value::Timestamp(decode_timestamp(text, false)?),
        C::Timestamptz => Value::TimestampTz(decode_timestamp(text, true)?),
        C::Interval => Value::Interval(decode_interval(text)?),
        C::Uuid => Value::Uuid(
            *uuid::Uuid::parse_str(text.trim())
                .map_err(|_| Bad::Syntax("not a UUID"))?
                .as_bytes(),
        ),
        C::Json | C::Jsonb => Value::Json(text.to_string()),
        C::Enum => Value::Enum(text.to_string()),
        C::Array(_) => return Err(Bad::Syntax("nested array class")),
    })
}

fn decode_bool(text: &str) -> Parsed<bool> {
    // boolin's spellings (PostgreSQL itself prints only 't' and 'f').
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Ok(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Ok(false),
        _ => Err(Bad::Syntax("expected 't' or 'f'")),
    }
}

fn decode_int(text: &str, min: i64, max: i64) -> Parsed<i64> {
    let t = text.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bad::Syntax("not an integer"));
    }
    let v: i64 = t.parse().map_err(|_| Bad::Range("does not fit"))?;
    if v < min || v > max {
        return Err(Bad::Range("does not fit"));
    }
    Ok(v)
}

/// The special float spellings PostgreSQL accepts: Some(value) for them.
fn float_special(t: &str) -> Option<f64> {
    match t.to_ascii_lowercase().as_str() {
        "nan" | "+nan" | "-nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Check that `t` is a plain decimal float literal (`[+-]digits[.digits][e[+-]digits]`)
/// and report whether its mantissa has a non-zero digit.
fn float_literal(t: &str) -> Parsed<bool> {
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !digits_ok(int_part)
        || !digits_ok(frac_part)
    {
        return Err(Bad::Syntax("not a floating-point number"));
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        if e.is_empty() || !digits_ok(e) {
            return Err(Bad::Syntax("bad exponent"));
        }
    }
    Ok(int_part.bytes().chain(frac_part.bytes()).any(|b| b != b'0'))
}

fn decode_f64(text: &str) -> Parsed<f64> {
    let t = text.trim();
    if let Some(v) = float_special(t) {
        return Ok(v);
    }
    let nonzero = float_literal(t)?;
    let v: f64 = t
        .parse()
        .map_err(|_| Bad::Syntax("not a floating-point number"))?;
    if v.is_infinite() || (v == 0.0 && nonzero) {
        return Err(Bad::Range("outside double precision"));
    }
    Ok(v)
}

fn decode_f32(text: &str) -> Parsed<f32> {
    let t = text.trim();
    if let Some(v) = float_special(t) {
        return Ok(v as f32);
    }
    let nonzero = float_literal(t)?;
    // Parse directly as f32: going through f64 would round twice.
    let v: f32 = t
        .parse()
        .map_err(|_| Bad::Syntax("not a floating-point number"))?;
    if v.is_infinite() || (v == 0.0 && nonzero) {
        return Err(Bad::Range("outside real"));
    }
    Ok(v)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_bytea(text: &str) -> Parsed<Vec<u8>> {
    let b = text.as_bytes();
    if let Some(hex) = text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("\\X"))
    {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut it = hex.bytes().filter(|c| !c.is_ascii_whitespace());
        while let Some(hi) = it.next() {
            let lo = it.next().ok_or(Bad::Syntax("odd number of hex digits"))?;
            match (hex_value(hi), hex_value(lo)) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(Bad::Syntax("invalid hex digit")),
            }
        }
        return Ok(out);
    }
    // Legacy escape format: `\\` is a backslash, `\ooo` an octal byte, anything else
    // stands for itself.
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4).ok_or(Bad::Syntax("invalid escape"))?;
            if !(b'0'..=b'3').contains(&oct[0])
                || !oct[1..].iter().all(|c| (b'0'..=b'7').contains(c))
            {
                return Err(Bad::Syntax("invalid escape"));
            }
            out.push((oct[0] - b'0') << 6 | (oct[1] - b'0') << 3 | (oct[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

/// A byte cursor for the date/time grammars (all ASCII).
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn new(s: &'a str) -> Self {
        Cur {
            b: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Parsed<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(Bad::Syntax(what))
        }
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.i;
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        self.i - start
    }

    fn done(&self) -> bool {
        self.i >= self.b.len()
    }

    /// A run of ASCII digits: (value, count). Runs too long for the caller's field
    /// are reported as out of range.
    fn digits(&mut self, what: &'static str) -> Parsed<(i64, usize)> {
        let start = self.i;
        let mut v: i64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(c - b'0')))
                .ok_or(Bad::Range("number too large"))?;
            self.i += 1;
        }
        if self.i == start {
            return Err(Bad::Syntax(what));
        }
        Ok((v, self.i - start))
    }

    /// Exactly `n` digits.
    fn fixed(&mut self, n: usize, what: &'static str) -> Parsed<i64> {
        let (v, len) = self.digits(what)?;
        if len != n {
            return Err(Bad::Syntax(what));
        }
        Ok(v)
    }

    /// Digits after a decimal point, as microseconds (at most 6 digits).
    fn fraction_micros(&mut self) -> Parsed<i64> {
        let (v, len) = self.digits("missing fraction digits")?;
        if len > 6 {
            return Err(Bad::Syntax("more than 6 fractional digits"));
        }
        Ok(v * 10i64.pow((6 - len) as u32))
    }
}

/// `infinity` / `-infinity` spellings: Some(true) for +, Some(false) for -.
pub(super) fn infinity(t: &str) -> Option<bool> {
    if t.eq_ignore_ascii_case("infinity") || t.eq_ignore_ascii_case("+infinity") {
        Some(true)
    } else if t.eq_ignore_ascii_case("-infinity") {
        Some(false)
    } else {
        None
    }
}

/// Split a trailing ` BC` era marker off.
fn strip_bc(t: &str) -> (&str, bool) {
    let b = t.as_bytes();
    if b.len() > 3
        && b[b.len() - 2..].eq_ignore_ascii_case(b"BC")
        && b[b.len() - 3].is_ascii_whitespace()
    {
        (t[..t.len() - 2].trim_end(), true)
    } else {
        (t, false)
    }
}

/// `YYYY-MM-DD` (year at least 4 digits) as written, before the era is applied.
fn parse_ymd(c: &mut Cur) -> Parsed<(i64, u32, u32)> {
    let (year, len) = c.digits("expected a year")?;
    if len < 4 {
        return Err(Bad::Syntax("year must have at least 4 digits"));
    }
    c.expect(b'-', "expected '-' after the year")?;
    let month = c.fixed(2, "expected a 2-digit month")?;
    c.expect(b'-', "expected '-' after the month")?;
    let day = c.fixed(2, "expected a 2-digit day")?;
    Ok((year, month as u32, day as u32))
}

/// Days since 1970-01-01 of a written date; `bc` years count back from 1 BC = year 0.
fn written_date_days(year: i64, month: u32, day: u32, bc: bool) -> Parsed<i64> {
    if year == 0 || year > 10_000_000 {
        return Err(Bad::Range("year out of range"));
    }
    let year = if bc { 1 - year } else { year };
    if !(1..=12).contains(&month) {
        return Err(Bad::Range("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(Bad::Range("day out of range"));
    }
    Ok(days_from_civil(year, month, day))
}

fn decode_date(text: &str) -> Parsed<Date> {
    let t = text.trim();
    if let Some(positive) = infinity(t) {
        return Ok(if positive {
            Date::PosInfinity
        } else {
            Date::NegInfinity
        });
    }
    let (body, bc) = strip_bc(t);
    let mut c = Cur::new(body);
    let (y, m, d) = parse_ymd(&mut c)?;
    if !c.done() {
        return Err(Bad::Syntax("unexpected text after the date"));
    }
    let days = written_date_days(y, m, d, bc)?;
    if !(PG_DATE_MIN_DAYS..=PG_DATE_MAX_DAYS).contains(&days) {
        return Err(Bad::Range("outside 4714-11-24 BC .. 5874897-12-31"));
    }
    i32::try_from(days)
        .map(Date::Days)
        .map_err(|_| Bad::Range("outside the date range"))
}

/// `HH:MM[:SS[.ffffff]]`, at most 24:00:00, as microseconds.
fn parse_hms(c: &mut Cur) -> Parsed<i64> {
    let (h, len) = c.digits("expected hours")?;
    if len > 2 {
        return Err(Bad::Syntax("expected 2-digit hours"));
    }
    c.expect(b':', "expected ':' after the hours")?;
    let m = c.fixed(2, "expected 2-digit minutes")?;
    let mut s = 0;
    let mut frac = 0;
    if c.eat(b':') {
        s = c.fixed(2, "expected 2-digit seconds")?;
        if c.eat(b'.') {
            frac = c.fraction_micros()?;
        }
    }
    // A leap second (:60) carries into the next minute, as PostgreSQL does.
    if h > 24 || m > 59 || s > 60 {
        return Err(Bad::Range("time field out of range"));
    }
    let micros = h * MICROS_PER_HOUR + m * MICROS_PER_MINUTE + s * MICROS_PER_SECOND + frac;
    if micros > MICROS_PER_DAY {
        return Err(Bad::Range("time of day past 24:00:00"));
    }
    Ok(micros)
}

fn decode_time(text: &str) -> Parsed<i64> {
    let mut c = Cur::new(text.trim());
    let micros = parse_hms(&mut c)?;
    if !c.done() {
        return Err(Bad::Syntax("unexpected text after the time"));
    }
    Ok(micros)
}

/// A UTC offset `Z`, `+HH`, `+HH:MM`, `+HH:MM:SS`, `+HHMM` or `+HHMMSS`, in seconds.
fn parse_offset(c: &mut Cur) -> Parsed<i64> {
    if c.eat(b'Z') || c.eat(b'z') {
        return Ok(0);
    }
    let sign = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return Err(Bad::Syntax("expected a UTC offset"));
    };
    let (run, len) = c.digits("expected offset hours")?;
    let (h, m, s) = if c.eat(b':') {
        if len > 2 {
            return Err(Bad::Syntax("bad UTC offset"));
        }
        let m = c.fixed(2, "bad UTC offset minutes")?;
        let s = if c.eat(b':') {
            c.fixed(2, "bad UTC offset seconds")?
        } else {
            0
        };
        (run, m, s)
    } else {
        match len {
            1 | 2 => (run, 0, 0),
            4 => (run / 100, run % 100, 0),
            6 => (run / 10_000, run / 100 % 100, run % 100),
            _ => return Err(Bad::Syntax("bad UTC offset")),
        }
    };
    if h > 15 || m > 59 || s > 59 {
        return Err(Bad::Range("UTC offset out of range"));
    }
    Ok(sign * (h * 3600 + m * 60 + s))
}

fn decode_timestamp(text: &str, with_tz: bool) -> Parsed<Timestamp> {
    let t = text.trim();
    if let Some(positive) = infinity(t) {
        return Ok(if positive {
            Timestamp::PosInfinity
        } else {
            Timestamp::NegInfinity
        });
    }
    let (body, bc) = strip_bc(t);
    let mut c = Cur::new(body);
    let (y, m, d) = parse_ymd(&mut c)?;
    if !c.eat(b'T') && c.skip_spaces() == 0 {
        return Err(Bad::Syntax("expected ' ' between date and time"));
    }
    let tod = parse_hms(&mut c)?;
    let offset_secs = if with_tz {
        c.skip_spaces();
        parse_offset(&mut c)?
    } else {
        0
    };
    if !c.done() {
        return Err(Bad::Syntax("unexpected text after the time"));
    }
    let days = written_date_days(y, m, d, bc)?;
    let micros = i128::from(days) * i128::from(MICROS_PER_DAY) + i128::from(tod)
        - i128::from(offset_secs) * i128::from(MICROS_PER_SECOND);
    if micros < i128::from(PG_TS_MIN_MICROS)
        || micros >= i128::from(PG_TS_END_DAYS) * i128::from(MICROS_PER_DAY)
    {
        return Err(Bad::Range(
            "outside 4714-11-24 00:00:00 BC .. 294276-12-31 23:59:59.999999",
        ));
    }
    i64::try_from(micros).map(Timestamp::Micros).map_err(|_| {
        Bad::Range("after 294247-01-10 04:00:54.775807, the end of duplex's timestamp range")
    })
}

/// Interval parts summed wide, then narrowed with a range check.
#[derive(Default)]
struct IntervalSum {
    months: i128,
    days: i128,
    micros: i128,
}

impl IntervalSum {
    fn finish(self) -> Parsed<Interval> {
        let range = |_| Bad::Range("interval field out of range");
        Ok(Interval {
            months: i32::try_from(self.months).map_err(range)?,
            days: i32::try_from(self.days).map_err(range)?,
            micros: i64::try_from(self.micros).map_err(range)?,
        })
    }
}

/// A signed number `[+-]digits[.digits]`: (negative, integer part, fraction as micros,
/// had a fraction).
fn parse_signed_number(c: &mut Cur) -> Parsed<(bool, i64, i64, bool)> {
    let negative = if c.eat(b'-') {
        true
    } else {
        c.eat(b'+');
        false
    };
    let (int, _) = c.digits("expected a number")?;
    if c.eat(b'.') {
        let frac = c.fraction_micros()?;
        Ok((negative, int, frac, true))
    } else {
        Ok((negative, int, 0, false))
    }
}

fn decode_interval(text: &str) -> Parsed<Interval> {
    let t = text.trim();
    // PostgreSQL 17 infinite intervals, kept as its own sentinel values.
    if let Some(positive) = infinity(t) {
        return Ok(if positive {
            INTERVAL_POS_INFINITY
        } else {
            INTERVAL_NEG_INFINITY
        });
    }
    if let Some(rest) = t.strip_prefix('P') {
        decode_iso_interval(rest)
    } else {
        decode_postgres_interval(t)
    }
}

/// ISO 8601 with designators: `P[nY][nM][nW][nD][T[nH][nM][n[.f]S]]`, each number
/// signed (IntervalStyle=iso_8601 output).
fn decode_iso_interval(body: &str) -> Parsed<Interval> {
    let mut sum = IntervalSum::default();
    let mut c = Cur::new(body);
    let mut in_time = false;
    let mut any = false;
    while !c.done() {
        if c.eat(b'T') {
            if in_time {
                return Err(Bad::Syntax("second 'T'"));
            }
            in_time = true;
            if c.done() {
                return Err(Bad::Syntax("nothing after 'T'"));
            }
            continue;
        }
        let (negative, int, frac, has_frac) = parse_signed_number(&mut c)?;
        let sign: i128 = if negative { -1 } else { 1 };
        let int = i128::from(int);
        let designator = c.peek().ok_or(Bad::Syntax("number without a designator"))?;
        c.i += 1;
        if has_frac && !(in_time && designator == b'S') {
            return Err(Bad::Syntax("fractions are only supported on seconds"));
        }
        match (in_time, designator) {
            (false, b'Y') => sum.months += sign * int * 12,
            (false, b'M') => sum.months += sign * int,
            (false, b'W') => sum.days += sign * int * 7,
            (false, b'D') => sum.days += sign * int,
            (true, b'H') => sum.micros += sign * int * i128::from(MICROS_PER_HOUR),
            (true, b'M') => sum.micros += sign * int * i128::from(MICROS_PER_MINUTE),
            (true, b'S') => {
                sum.micros += sign * (int * i128::from(MICROS_PER_SECOND) + i128::from(frac))
            }
            _ => return Err(Bad::Syntax("unknown designator")),
        }
        any = true;
    }
    if !any {
        return Err(Bad::Syntax("empty interval"));
    }
    sum.finish()
}

/// The `postgres` (and `postgres_verbose`) style: `1 year 2 mons -3 days +04:05:06.5`,
/// `-00:00:01.5`, `@ 1 day 2 hours ago`.
fn decode_postgres_interval(t: &str) -> Parsed<Interval> {
    let mut sum = IntervalSum::default();
    let t = t.strip_prefix('@').unwrap_or(t);
    let mut tokens = t.split_ascii_whitespace().peekable();
    let mut any = false;
    let mut ago = false;
    while let Some(tok) = tokens.next() {
        if ago {
            return Err(Bad::Syntax("text after 'ago'"));
        }
        if tok.eq_ignore_ascii_case("ago") {
            ago = true;
            continue;
        }
        any = true;
        if tok.contains(':') {
            // [+-]H+:MM[:SS[.ffffff]], the sign covering the whole field.
            let mut c = Cur::new(tok);
            let negative = if c.eat(b'-') {
                true
            } else {
                c.eat(b'+');
                false
            };
            let (h, _) = c.digits("expected hours")?;
            c.expect(b':', "expected ':'")?;
            let m = c.fixed(2, "expected 2-digit minutes")?;
            let (mut s, mut frac) = (0, 0);
            if c.eat(b':') {
                s = c.fixed(2, "expected 2-digit seconds")?;
                if c.eat(b'.') {
                    frac = c.fraction_micros()?;
                }
            }
            if !c.done() {
                return Err(Bad::Syntax("bad time field"));
            }
            if m > 59 || s > 59 {
                return Err(Bad::Range("time field out of range"));
            }
            let v = i128::from(h) * i128::from(MICROS_PER_HOUR)
                + i128::from(m * MICROS_PER_MINUTE + s * MICROS_PER_SECOND + frac);
            sum.micros += if negative { -v } else { v };
            continue;
        }
        let mut c = Cur::new(tok);
        let (negative, int, frac, has_frac) = parse_signed_number(&mut c)?;
        // The unit is either glued on (`1day`) or the next token.
        let unit = if c.done() {
            tokens.next().ok_or(Bad::Syntax("number without a unit"))?
        } else {
            &tok[c.i..]
        };
        let sign: i128 = if negative { -1 } else { 1 };
        let int = i128::from(int);
        let unit = unit.to_ascii_lowercase();
        let is_seconds = matches!(unit.as_str(), "s" | "sec" | "secs" | "second" | "seconds");
        if has_frac && !is_seconds {
            return Err(Bad::Syntax("fractions are only supported on seconds"));
        }
        match unit.as_str() {
            "y" | "yr" | "yrs" | "year" | "years" => sum.months += sign * int * 12,
            "mon" | "mons" | "month" | "months" => sum.months += sign * int,
            "w" | "week" | "weeks" => sum.days += sign * int * 7,
            "d" | "day" | "days" => sum.days += sign * int,
            "h" | "hr" | "hrs" | "hour" | "hours" => {
                sum.micros += sign * int * i128::from(MICROS_PER_HOUR)
            }
            "m" | "min" | "mins" | "minute" | "minutes" => {
                sum.micros += sign * int * i128::from(MICROS_PER_MINUTE)
            }
            _ if is_seconds => {
                sum.micros += sign * (int * i128::from(MICROS_PER_SECOND) + i128::from(frac))
            }
            _ => return Err(Bad::Syntax("unknown interval unit")),
        }
    }
    if !any {
        return Err(Bad::Syntax("empty interval"));
    }
    if ago {
        sum.months = -sum.months;
        sum.days = -sum.days;
        sum.micros = -sum.micros;
    }
    sum.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_util::*;

    use crate::canonical::value::{Date, Decimal, Timestamp, Value, MICROS_PER_DAY};
    use crate::pg::limits::{
        INTERVAL_NEG_INFINITY, INTERVAL_POS_INFINITY, MICROS_PER_HOUR, MICROS_PER_MINUTE,
        PG_TS_MIN_MICROS,
    };
    use crate::pg::type_class::PgTypeClass as C;
    use crate::pg::type_class::{classify_builtin, PgTypeClass};

    #[test]
    fn character_decodes_without_its_padding() {
        assert_eq!(classify_builtin(1042), Some(C::Bpchar));
        assert_eq!(classify_builtin(1014), Some(arr(C::Bpchar)));
        // pgoutput sends char(n) padded; `::text` reads it back stripped.
        assert_eq!(dec(&C::Bpchar, "ab   "), Value::Text("ab".into()));
        assert_eq!(dec(&C::Bpchar, "ab"), Value::Text("ab".into()));
        assert_eq!(dec(&C::Bpchar, "    "), Value::Text(String::new()));
        // Leading spaces and other trailing whitespace are content.
        assert_eq!(dec(&C::Bpchar, " a\t "), Value::Text(" a\t".into()));
        assert_eq!(
            dec(&arr(C::Bpchar), "{\"x  \",\"y  \"}"),
            Value::Array(vec![Value::Text("x".into()), Value::Text("y".into())])
        );
        // Text keeps its trailing spaces.
        assert_eq!(dec(&C::Text, "ab  "), Value::Text("ab  ".into()));
    }

    /// Exact text PostgreSQL 15 printed (DateStyle ISO, MDY; IntervalStyle iso_8601 or
    /// postgres; TimeZone UTC unless noted; extra_float_digits 1; bytea_output hex
    /// unless noted) and the value it must decode to.
    #[test]
    fn decode_pg_output() {
        let f8 = |v: f64| Value::Float64(v);
        let f4 = |v: f32| Value::Float32(v);
        let i64max = i64::MAX;
        let cases: Vec<(PgTypeClass, &str, Value)> = vec![
            (C::Bool, "t", Value::Bool(true)),
            (C::Bool, "f", Value::Bool(false)),
            (C::Int2, "-32768", Value::Int(-32768)),
            (C::Int4, "2147483647", Value::Int(2_147_483_647)),
            (C::Int8, "-9223372036854775808", Value::Int(i64::MIN)),
            (C::Oid, "4294967295", Value::Int(4_294_967_295)),
            (C::Numeric, "-12.3400", fin("-12.3400")),
            (C::Numeric, "NaN", Value::Decimal(Decimal::NaN)),
            (C::Numeric, "-Infinity", Value::Decimal(Decimal::NegInfinity)),
            (C::Float8, "1e+30", f8(1e30)),
            (C::Float8, "1e-07", f8(1e-7)),
            (C::Float8, "-0", f8(-0.0)),
            (C::Float8, "NaN", f8(f64::NAN)),
            (C::Float8, "-Infinity", f8(f64::NEG_INFINITY)),
            (C::Float8, "Infinity", f8(f64::INFINITY)),
            (C::Float8, "1.7976931348623157e+308", f8(f64::MAX)),
            (C::Float8, "5e-324", f8(5e-324)),
            (C::Float8, "2.2250738585072014e-308", f8(f64::MIN_POSITIVE)),
            (C::Float8, "0.1", f8(0.1)),
            (C::Float8, "1.2345678901234568e+17", f8(123_456_789_012_345_680.0)),
            (C::Float8, "1e+15", f8(1e15)),
            (C::Float8, "0.0001", f8(0.0001)),
            (C::Float8, "1e-05", f8(1e-5)),
            (C::Float4, "3.4028235e+38", f4(f32::MAX)),
            (C::Float4, "1e-45", f4(f32::from_bits(1))),
            (C::Float4, "-0", f4(-0.0)),
            (C::Float4, "0.1", f4(0.1)),
            (C::Float4, "1.6777216e+07", f4(16_777_216.0)),
            (C::Text, " a\tb ", text(" a\tb ")),
            (C::Other, "192.168.0.1/24", text("192.168.0.1/24")),
            (C::Enum, "happy", Value::Enum("happy".into())),
            (C::Json, "{\"a\": [1, \"x\"]}", Value::Json("{\"a\": [1, \"x\"]}".into())),
            (C::Bytea, "\\x00ff10", Value::Bytes(vec![0, 255, 16])),
            (C::Bytea, "\\x615c6200", Value::Bytes(b"a\\b\0".to_vec())),
            (C::Bytea, "\\x", Value::Bytes(vec![])),
            // bytea_output=escape
            (
                C::Bytea,
                "\\000\\377\\020'\\\\\\177\\200",
                Value::Bytes(vec![0, 255, 16, b'\'', b'\\', 0x7f, 0x80]),
            ),
            (C::Bytea, "abc", Value::Bytes(b"abc".to_vec())),
            (
                C::Uuid,
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                Value::Uuid([
                    0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd,
                    0x38, 0x0a, 0x11,
                ]),
            ),
            (C::Date, "4714-11-24 BC", Value::Date(Date::Days(-2_440_588))),
            (C::Date, "5874897-12-31", Value::Date(Date::Days(2_145_042_905))),
            (C::Date, "0001-01-01 BC", date(0, 1, 1)),
            (C::Date, "0044-03-15 BC", date(-43, 3, 15)),
            (C::Date, "infinity", Value::Date(Date::PosInfinity)),
            (C::Date, "-infinity", Value::Date(Date::NegInfinity)),
            (C::Date, "0099-01-01", date(99, 1, 1)),
            (C::Date, "2000-02-29", Value::Date(Date::Days(11_016))),
            (C::Date, "10000-01-01", date(10_000, 1, 1)),
            (C::Time, "24:00:00", Value::Time(MICROS_PER_DAY)),
            (C::Time, "23:59:59.999999", Value::Time(MICROS_PER_DAY - 1)),
            (C::Time, "00:00:00", Value::Time(0)),
            (C::Time, "12:34:56.5", Value::Time(45_296_500_000)),
            (C::Time, "12:34", Value::Time(45_240_000_000)),
            (
                C::Timestamp,
                "4714-11-24 00:00:00 BC",
                Value::Timestamp(Timestamp::Micros(PG_TS_MIN_MICROS)),
            ),
            (
                C::Timestamp,
                "0001-01-01 00:00:00.5 BC",
                ts(0, 1, 1, 0, 0, 0, 500_000),
            ),
            (
                C::Timestamp,
                "2024-01-02 03:04:05.123",
                ts(2024, 1, 2, 3, 4, 5, 123_000),
            ),
            (
                C::Timestamp,
                "2024-01-02T03:04:05.123",
                ts(2024, 1, 2, 3, 4, 5, 123_000),
            ),
            (C::Timestamp, "2020-01-01 24:00:00", ts(2020, 1, 2, 0, 0, 0, 0)),
            (C::Timestamp, "infinity", Value::Timestamp(Timestamp::PosInfinity)),
            (
                C::Timestamp,
                "294247-01-10 04:00:54.775807",
                Value::Timestamp(Timestamp::Micros(i64max)),
            ),
            (
                C::Timestamptz,
                "4714-11-24 00:00:00+00 BC",
                Value::TimestampTz(Timestamp::Micros(PG_TS_MIN_MICROS)),
            ),
            (
                C::Timestamptz,
                "2024-01-01 21:34:05.123+00",
                tstz(2024, 1, 1, 21, 34, 5, 123_000),
            ),
            (
                C::Timestamptz,
                "-infinity",
                Value::TimestampTz(Timestamp::NegInfinity),
            ),
            (
                C::Timestamptz,
                "2024-01-02 11:04:05+00",
                tstz(2024, 1, 2, 11, 4, 5, 0),
            ),
            // TimeZone='Asia/Kolkata'
            (
                C::Timestamptz,
                "2024-01-02 08:34:05.123+05:30",
                tstz(2024, 1, 2, 3, 4, 5, 123_000),
            ),
            (
                C::Timestamptz,
                "1900-01-01 05:21:10+05:21:10",
                tstz(1900, 1, 1, 0, 0, 0, 0),
            ),
            (
                C::Timestamptz,
                "0001-01-01 05:53:28+05:53:28 BC",
                tstz(0, 1, 1, 0, 0, 0, 0),
            ),
            // TimeZone='America/St_Johns'
            (
                C::Timestamptz,
                "2024-01-01 23:34:05.123-03:30",
                tstz(2024, 1, 2, 3, 4, 5, 123_000),
            ),
            (
                C::Timestamptz,
                "1799-12-31 20:29:08-03:30:52",
                tstz(1800, 1, 1, 0, 0, 0, 0),
            ),
            // Accepted input spellings.
            (
                C::Timestamptz,
                "2020-01-01 00:00:00-08",
                tstz(2020, 1, 1, 8, 0, 0, 0),
            ),
            (
                C::Timestamptz,
                "2020-01-01 00:00:00Z",
                tstz(2020, 1, 1, 0, 0, 0, 0),
            ),
            (
                C::Timestamptz,
                "2020-01-01 00:00:00+0530",
                tstz(2019, 12, 31, 18, 30, 0, 0),
            ),
            (
                C::Timestamptz,
                "2020-01-01 00:00:00+15:59:59",
                tstz(2019, 12, 31, 8, 0, 1, 0),
            ),
            // IntervalStyle=iso_8601
            (
                C::Interval,
                "P1Y2M3DT4H5M6.5S",
                iv(14, 3, 4 * MICROS_PER_HOUR + 5 * MICROS_PER_MINUTE + 6_500_000),
            ),
            (C::Interval, "PT-1.5S", iv(0, 0, -1_500_000)),
            (C::Interval, "P-1Y-2M", iv(-14, 0, 0)),
            (C::Interval, "PT0S", iv(0, 0, 0)),
            (C::Interval, "P1DT-0.000001S", iv(0, 1, -1)),
            (C::Interval, "P-1DT0.000001S", iv(0, -1, 1)),
            (C::Interval, "P1M-1D", iv(1, -1, 0)),
            (C::Interval, "P178000000Y", iv(2_136_000_000, 0, 0)),
            (C::Interval, "P-178000000Y", iv(-2_136_000_000, 0, 0)),
            (C::Interval, "PT2562047788H54.775807S", iv(0, 0, i64::MAX)),
            (C::Interval, "PT-2562047788H-54.775807S", iv(0, 0, -i64::MAX)),
            (C::Interval, "PT-2562047788H-54.775808S", iv(0, 0, i64::MIN)),
            (C::Interval, "P2147483647D", iv(0, i32::MAX, 0)),
            (C::Interval, "P-2147483648D", iv(0, i32::MIN, 0)),
            (C::Interval, "P178956970Y7M", iv(i32::MAX, 0, 0)),
            (C::Interval, "P-178956970Y-8M", iv(i32::MIN, 0, 0)),
            (C::Interval, "PT1M30S", iv(0, 0, 90_000_000)),
            (C::Interval, "P1DT12H", iv(0, 1, 12 * MICROS_PER_HOUR)),
            (C::Interval, "P7D", iv(0, 7, 0)),
            (C::Interval, "P1W", iv(0, 7, 0)),
            // IntervalStyle=postgres
            (
                C::Interval,
                "1 year 2 mons 3 days 04:05:06.5",
                iv(14, 3, 4 * MICROS_PER_HOUR + 5 * MICROS_PER_MINUTE + 6_500_000),
            ),
            (C::Interval, "-00:00:01.5", iv(0, 0, -1_500_000)),
            (C::Interval, "-1 years -2 mons", iv(-14, 0, 0)),
            (C::Interval, "00:00:00", iv(0, 0, 0)),
            (C::Interval, "1 day -00:00:00.000001", iv(0, 1, -1)),
            (C::Interval, "-1 days +00:00:00.000001", iv(0, -1, 1)),
            (C::Interval, "1 mon -1 days", iv(1, -1, 0)),
            (C::Interval, "178000000 years", iv(2_136_000_000, 0, 0)),
            (C::Interval, "2562047788:00:54.775807", iv(0, 0, i64::MAX)),
            (C::Interval, "-2562047788:00:54.775807", iv(0, 0, -i64::MAX)),
            (C::Interval, "178956970 years 7 mons", iv(i32::MAX, 0, 0)),
            (C::Interval, "-178956970 years -8 mons", iv(i32::MIN, 0, 0)),
            (C::Interval, "-11 mons -1 days +00:00:01", iv(-11, -1, 1_000_000)),
            (C::Interval, "2147483647 days", iv(0, i32::MAX, 0)),
            (C::Interval, "11 mons", iv(11, 0, 0)),
            // postgres_verbose
            (
                C::Interval,
                "@ 1 year 2 mons -3 days 4 hours 5 mins 6.5 secs ago",
                iv(-14, 3, -(4 * MICROS_PER_HOUR + 5 * MICROS_PER_MINUTE + 6_500_000)),
            ),
            // PostgreSQL 17's infinite intervals.
            (C::Interval, "infinity", Value::Interval(INTERVAL_POS_INFINITY)),
            (C::Interval, "-infinity", Value::Interval(INTERVAL_NEG_INFINITY)),
            // Arrays.
            (arr(C::Int4), "{}", Value::Array(vec![])),
            (
                arr(C::Text),
                "{\"a b\",\"x\\\"y\\\\z\",NULL,\"NULL\",\"null\",\"\",\" lead\",\"{}\",\"a,b\",é,\"tab\there\",\"nl\nx\",ab}",
                Value::Array(vec![
                    text("a b"),
                    text("x\"y\\z"),
                    Value::Null,
                    text("NULL"),
                    text("null"),
                    text(""),
                    text(" lead"),
                    text("{}"),
                    text("a,b"),
                    text("é"),
                    text("tab\there"),
                    text("nl\nx"),
                    text("ab"),
                ]),
            ),
            (
                arr(C::Int4),
                "{{1,2},{3,4}}",
                Value::Array(vec![
                    Value::Array(vec![Value::Int(1), Value::Int(2)]),
                    Value::Array(vec![Value::Int(3), Value::Int(4)]),
                ]),
            ),
            (
                arr(C::Int4),
                "{ 1 , 2 }",
                Value::Array(vec![Value::Int(1), Value::Int(2)]),
            ),
            (
                arr(C::Int4),
                "{\"1\" ,  \"2\"}",
                Value::Array(vec![Value::Int(1), Value::Int(2)]),
            ),
            (
                arr(C::Text),
                "{a\\ b, c d }",
                Value::Array(vec![text("a b"), text("c d")]),
            ),
            (
                arr(C::Text),
                "{NuLl,\"NULL\",\\NULL}",
                Value::Array(vec![Value::Null, text("NULL"), text("NULL")]),
            ),
            (
                arr(C::Text),
                "{{a,b},{c,d}}",
                Value::Array(vec![
                    Value::Array(vec![text("a"), text("b")]),
                    Value::Array(vec![text("c"), text("d")]),
                ]),
            ),
            (
                arr(C::Numeric),
                "{1.5,NULL}",
                Value::Array(vec![fin("1.5"), Value::Null]),
            ),
            (
                arr(C::Bytea),
                "{\"\\\\x00ff\",NULL}",
                Value::Array(vec![Value::Bytes(vec![0, 255]), Value::Null]),
            ),
            (
                arr(C::Timestamp),
                "{\"2020-01-01 00:00:00\"}",
                Value::Array(vec![ts(2020, 1, 1, 0, 0, 0, 0)]),
            ),
            (
                arr(C::Timestamptz),
                "{\"2020-01-01 00:00:00+00\",\"0001-01-01 00:00:00+00 BC\"}",
                Value::Array(vec![
                    tstz(2020, 1, 1, 0, 0, 0, 0),
                    tstz(0, 1, 1, 0, 0, 0, 0),
                ]),
            ),
            (
                arr(C::Interval),
                "{P1D,PT-1S}",
                Value::Array(vec![iv(0, 1, 0), iv(0, 0, -1_000_000)]),
            ),
            (
                arr(C::Jsonb),
                "{\"{\\\"a\\\": [1, \\\"x\\\"]}\"}",
                Value::Array(vec![Value::Json("{\"a\": [1, \"x\"]}".into())]),
            ),
            (
                arr(C::Bool),
                "{t,f}",
                Value::Array(vec![Value::Bool(true), Value::Bool(false)]),
            ),
            (
                arr(C::Float8),
                "{NaN,-0,1e+30}",
                Value::Array(vec![f8(f64::NAN), f8(-0.0), f8(1e30)]),
            ),
            (
                arr(C::Date),
                "{2020-01-01,\"0044-03-15 BC\"}",
                Value::Array(vec![date(2020, 1, 1), date(-43, 3, 15)]),
            ),
            (
                arr(C::Uuid),
                "{00000000-0000-0000-0000-000000000001}",
                Value::Array(vec![Value::Uuid([
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                ])]),
            ),
            (arr(C::Oid), "{1}", Value::Array(vec![Value::Int(1)])),
            // A "char" array and a lone backslash.
            (
                arr(C::Text),
                "{a,b}",
                Value::Array(vec![text("a"), text("b")]),
            ),
            (arr(C::Text), "{\"\\\\\"}", Value::Array(vec![text("\\")])),
            // U+00A0 is not array whitespace for PostgreSQL.
            (arr(C::Text), "{\u{a0}}", Value::Array(vec![text("\u{a0}")])),
        ];
        for (class, input, want) in &cases {
            let got = dec(class, input);
            assert!(
                same(&got, want),
                "{class:?} {input:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn decode_rejects() {
        let cases: Vec<(PgTypeClass, &str)> = vec![
            (C::Bool, "maybe"),
            (C::Int2, "32768"),
            (C::Int4, "0x10"),
            (C::Int4, ""),
            (C::Int8, "9223372036854775808"),
            (C::Oid, "-1"),
            (C::Numeric, "1.2.3"),
            (C::Float8, "1e400"),
            (C::Float8, "1e-400"),
            (C::Float8, "abc"),
            (C::Float8, "1e"),
            (C::Float4, "1e39"),
            (C::Float4, "1e-46"),
            (C::Uuid, "xyz"),
            (C::Bytea, "\\x0"),
            (C::Bytea, "\\x0g"),
            (C::Bytea, "\\9"),
            (C::Bytea, "a\\"),
            (C::Date, "0000-01-01"),
            (C::Date, "4714-11-23 BC"),
            (C::Date, "2023-02-29"),
            (C::Date, "99-01-01"),
            (C::Date, "2023-13-01"),
            (C::Date, "2023-01-01 junk"),
            (C::Time, "24:00:00.000001"),
            (C::Time, "0"),
            (C::Time, "12:00:00.1234567"),
            (C::Timestamp, "294277-01-01 00:00:00"),
            (C::Timestamp, "4714-11-23 23:59:59.999999 BC"),
            // In PostgreSQL's range, beyond i64 microseconds since 1970.
            (C::Timestamp, "294276-12-31 23:59:59.999999"),
            (C::Timestamp, "294247-01-10 04:00:54.775808"),
            (C::Timestamp, "2020-01-01 00:00:00+00"),
            (C::Timestamptz, "294276-12-31 23:59:59.999999+00"),
            (C::Timestamptz, "4714-11-24 00:00:00+01 BC"),
            (C::Timestamptz, "2020-01-01 00:00:00+16"),
            (C::Timestamptz, "2020-01-01 00:00:00"),
            (C::Timestamptz, "2020-01-01 00:00:00+5:3"),
            (C::Interval, "P1.5D"),
            (C::Interval, "P"),
            (C::Interval, "PT"),
            (C::Interval, "P1X"),
            (C::Interval, "garbage"),
            (C::Interval, "5"),
            (C::Interval, ""),
            (C::Interval, "P2147483648M"),
            (C::Interval, "PT2562047788H54.775808S"),
            (C::Interval, "1.5 days"),
            (arr(C::Int4), "[0:1]={1,2}"),
            (arr(C::Int4), "{{}}"),
            (arr(C::Int4), "{{1,2},{3}}"),
            (arr(C::Int4), "{{1,2},3}"),
            (arr(C::Int4), "{1,,2}"),
            (arr(C::Int4), "{1,2"),
            (arr(C::Int4), "{1}x"),
            (arr(C::Int4), "1,2"),
            (arr(C::Text), "{\"a\"b}"),
            (arr(C::Text), "{\"a}"),
            (arr(C::Int4), "{1,x}"),
        ];
        for (class, input) in &cases {
            if let Ok(v) = decode_text(class, input) {
                panic!("{class:?} {input:?} decoded to {v:?}");
            }
        }
        let err = decode_text(&C::Int2, "99999").map(|_| ()).err();
        assert!(matches!(
            err,
            Some(PgDecodeError::OutOfRange {
                type_name: "smallint",
                ..
            })
        ));
        let err = decode_text(&arr(C::Int4), "[0:1]={1,2}").map(|_| ()).err();
        assert!(matches!(err, Some(PgDecodeError::ArrayBounds { .. })));
        let long = "x".repeat(500);
        match decode_text(&C::Date, &long) {
            Err(PgDecodeError::Invalid {
                type_name, text, ..
            }) => {
                assert_eq!(type_name, "date");
                assert_eq!(text.chars().count(), 80);
                assert!(text.ends_with("..."));
            }
            other => panic!("{other:?}"),
        }
    }
}
