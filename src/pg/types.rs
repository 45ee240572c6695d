//! PostgreSQL text codec for canonical values.
//!
//! duplex reads pgoutput in text format and writes to PostgreSQL through text
//! parameters cast to the column type (`$1::text::<type>`), so every value crosses
//! the wire in PostgreSQL's text syntax. This module maps that syntax to and from
//! [`Value`].
//!
//! The source session pins `DateStyle=ISO, MDY`, `IntervalStyle=iso_8601`,
//! `TimeZone=UTC`, `extra_float_digits=1` and `bytea_output=hex`; the decoder reads
//! exactly what PostgreSQL prints under those settings and is lenient where that is
//! cheap and unambiguous (any UTC offset on `timestamptz`, the `postgres` interval
//! style, the legacy `escape` bytea format, `boolin`'s spellings). Anything it cannot
//! read exactly is an error rather than a guess.

use std::fmt::Write as _;

use crate::canonical::value::{
    civil_from_days, days_from_civil, days_in_month, Date, Decimal, Interval, Timestamp, Value,
    MICROS_PER_DAY,
};

/// How a PostgreSQL type's values map into the canonical record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTypeClass {
    Bool,
    Int2,
    Int4,
    Int8,
    /// Unsigned 32-bit `oid`, carried as [`Value::Int`].
    Oid,
    Numeric,
    Float4,
    Float8,
    /// text, varchar, name, "char", citext, xml, and any type carried as text.
    Text,
    /// `character(n)`: text whose trailing spaces are padding, not content
    /// (PostgreSQL ignores them in comparisons and drops them on a cast to
    /// text; MySQL's CHAR strips them). Decoded without them, so a padded
    /// value from pgoutput and the same value read back through `::text` or
    /// from MySQL are one canonical value.
    Bpchar,
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Interval,
    Uuid,
    Json,
    Jsonb,
    Enum,
    Array(Box<PgTypeClass>),
    /// A type duplex has no typed mapping for (inet, money, timetz, ranges, geometric ...):
    /// carried as its PostgreSQL text, which PG->PG round-trips exactly.
    Other,
}

impl PgTypeClass {
    /// The PostgreSQL name of the class, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            PgTypeClass::Bool => "boolean",
            PgTypeClass::Int2 => "smallint",
            PgTypeClass::Int4 => "integer",
            PgTypeClass::Int8 => "bigint",
            PgTypeClass::Oid => "oid",
            PgTypeClass::Numeric => "numeric",
            PgTypeClass::Float4 => "real",
            PgTypeClass::Float8 => "double precision",
            PgTypeClass::Text => "text",
            PgTypeClass::Bpchar => "character",
            PgTypeClass::Bytea => "bytea",
            PgTypeClass::Date => "date",
            PgTypeClass::Time => "time",
            PgTypeClass::Timestamp => "timestamp",
            PgTypeClass::Timestamptz => "timestamptz",
            PgTypeClass::Interval => "interval",
            PgTypeClass::Uuid => "uuid",
            PgTypeClass::Json => "json",
            PgTypeClass::Jsonb => "jsonb",
            PgTypeClass::Enum => "enum",
            PgTypeClass::Array(_) => "array",
            PgTypeClass::Other => "text-carried type",
        }
    }
}

/// Classify a builtin type by OID (as in `pg_type.dat`, checked against a PostgreSQL 15
/// catalog). Returns `None` for anything else, in particular user-defined types
/// (enums, domains, extension types such as citext): the caller looks those up in
/// `pg_type`.
pub fn classify_builtin(type_oid: u32) -> Option<PgTypeClass> {
    use PgTypeClass as C;
    let arr = |c: PgTypeClass| Some(C::Array(Box::new(c)));
    match type_oid {
        16 => Some(C::Bool),
        17 => Some(C::Bytea),
        18 | 19 | 25 | 142 | 1043 => Some(C::Text), // char, name, text, xml, varchar
        1042 => Some(C::Bpchar),
        20 => Some(C::Int8),
        21 => Some(C::Int2),
        23 => Some(C::Int4),
        26 => Some(C::Oid),
        114 => Some(C::Json),
        700 => Some(C::Float4),
        701 => Some(C::Float8),
        1082 => Some(C::Date),
        1083 => Some(C::Time),
        1114 => Some(C::Timestamp),
        1184 => Some(C::Timestamptz),
        1186 => Some(C::Interval),
        1700 => Some(C::Numeric),
        2950 => Some(C::Uuid),
        3802 => Some(C::Jsonb),

        1000 => arr(C::Bool),
        1001 => arr(C::Bytea),
        // _char _name _text _xml _varchar
        1002 | 1003 | 1009 | 143 | 1015 => arr(C::Text),
        1014 => arr(C::Bpchar),
        1005 => arr(C::Int2),
        1007 => arr(C::Int4),
        1016 => arr(C::Int8),
        1028 => arr(C::Oid),
        1021 => arr(C::Float4),
        1022 => arr(C::Float8),
        1182 => arr(C::Date),
        1183 => arr(C::Time),
        1115 => arr(C::Timestamp),
        1185 => arr(C::Timestamptz),
        1187 => arr(C::Interval),
        1231 => arr(C::Numeric),
        2951 => arr(C::Uuid),
        199 => arr(C::Json),
        3807 => arr(C::Jsonb),

        // Builtins without a typed mapping, carried as text. box (603) uses ';' as its
        // array delimiter, so its array (1020) is carried whole as text too.
        22 | 24 | 27 | 28 | 29 | 30 | 600 | 601 | 602 | 603 | 604 | 628 | 650 | 718 | 774 | 790
        | 829 | 869 | 1020 | 1033 | 1266 | 1560 | 1562 | 1790 | 2202 | 2203 | 2204 | 2205
        | 2206 | 2970 | 3220 | 3614 | 3615 | 3642 | 3734 | 3769 | 3904 | 3906 | 3908 | 3910
        | 3912 | 3926 | 4072 | 4089 | 4096 | 4191 | 4451 | 4532 | 4533 | 4534 | 4535 | 4536
        | 5038 | 5069 => Some(C::Other),
        // Their arrays (all with ',' as delimiter).
        271 | 629 | 651 | 719 | 775 | 791 | 1006 | 1008 | 1010 | 1011 | 1012 | 1013 | 1017
        | 1018 | 1019 | 1027 | 1034 | 1040 | 1041 | 1270 | 1561 | 1563 | 2201 | 2207 | 2208
        | 2209 | 2210 | 2211 | 2949 | 3221 | 3643 | 3644 | 3645 | 3735 | 3770 | 3905 | 3907
        | 3909 | 3911 | 3913 | 3927 | 4073 | 4090 | 4097 | 4192 | 5039 | 6150 | 6151 | 6152
        | 6153 | 6155 | 6157 => arr(C::Other),
        _ => None,
    }
}

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

/// A canonical value that has no PostgreSQL text form.
#[derive(Debug, thiserror::Error)]
pub enum PgEncodeError {
    #[error("SQL NULL has no text form; bind it as a NULL parameter")]
    Null,
    #[error("{kind} value {value} is out of range for PostgreSQL {pg_type}")]
    OutOfRange {
        kind: &'static str,
        pg_type: &'static str,
        value: String,
    },
    #[error("{kind} value contains a NUL character, which PostgreSQL text cannot hold")]
    NulCharacter { kind: &'static str },
    #[error("array cannot be written as a PostgreSQL array: {reason}")]
    Array { reason: &'static str },
}

// ---------------------------------------------------------------------------------
// Ranges.

/// First PostgreSQL date, 4714-11-24 BC (Julian day 0), in days since 1970-01-01.
const PG_DATE_MIN_DAYS: i64 = -2_440_588;
/// Last PostgreSQL date, 5874897-12-31, in days since 1970-01-01.
const PG_DATE_MAX_DAYS: i64 = 2_145_042_905;
/// First PostgreSQL timestamp, 4714-11-24 00:00:00 BC, in microseconds since 1970.
const PG_TS_MIN_MICROS: i64 = PG_DATE_MIN_DAYS * MICROS_PER_DAY;
/// Days from 1970-01-01 to 294277-01-01, the first instant past PostgreSQL's
/// timestamp range. That range ends about 30 years after `i64::MAX` microseconds
/// since 1970 (294247-01-10 04:00:54.775807), the end of [`Timestamp::Micros`].
const PG_TS_END_DAYS: i64 = 106_762_940;

/// PostgreSQL 17's infinite intervals (`INTERVAL_NOEND` / `INTERVAL_NOBEGIN`).
const INTERVAL_POS_INFINITY: Interval = Interval {
    months: i32::MAX,
    days: i32::MAX,
    micros: i64::MAX,
};
const INTERVAL_NEG_INFINITY: Interval = Interval {
    months: i32::MIN,
    days: i32::MIN,
    micros: i64::MIN,
};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;

// ---------------------------------------------------------------------------------
// Decoding.

/// Why a piece of text failed to decode; turned into a [`PgDecodeError`] with the
/// type name and the text by [`decode_text`].
enum Bad {
    Syntax(&'static str),
    Range(&'static str),
}

type Parsed<T> = Result<T, Bad>;

fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX - 3).collect();
    out.push_str("...");
    out
}

/// The class of a type from the catalog: built-in types directly, domains
/// followed to their base type, arrays to their element type, enums by kind.
/// Results are cached in `cache`.
pub async fn resolve_type_class(
    client: &tokio_postgres::Client,
    oid: u32,
    cache: &mut std::collections::HashMap<u32, PgTypeClass>,
) -> Result<PgTypeClass, tokio_postgres::Error> {
    if let Some(c) = classify_builtin(oid) {
        return Ok(c);
    }
    if let Some(c) = cache.get(&oid) {
        return Ok(c.clone());
    }
    let mut current = oid;
    let mut array_depth = 0usize;
    let class = loop {
        if let Some(c) = classify_builtin(current) {
            break c;
        }
        let row = client
            .query_opt(
                "SELECT typtype::text, typelem, typbasetype, typcategory::text FROM pg_type WHERE oid = $1",
                &[&current],
            )
            .await?;
        let Some(row) = row else {
            break PgTypeClass::Other;
        };
        let typtype: String = row.get(0);
        let elem: u32 = row.get(1);
        let base: u32 = row.get(2);
        let category: String = row.get(3);
        match (typtype.as_str(), category.as_str()) {
            ("e", _) => break PgTypeClass::Enum,
            ("d", _) => current = base,
            (_, "A") if elem != 0 => {
                array_depth += 1;
                current = elem;
            }
            _ => break PgTypeClass::Other,
        }
    };
    let mut class = class;
    for _ in 0..array_depth {
        class = PgTypeClass::Array(Box::new(class));
    }
    cache.insert(oid, class.clone());
    Ok(class)
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
    use PgTypeClass as C;
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
fn infinity(t: &str) -> Option<bool> {
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

// ----- arrays

/// Whitespace as PostgreSQL's array parser sees it (`scanner_isspace`).
fn is_array_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

enum Node {
    List(Vec<Node>),
    /// An element's text; None for an unquoted NULL.
    Item(Option<String>),
}

struct ArrayParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_array_space) {
            self.i += 1;
        }
    }

    fn list(&mut self, depth: usize) -> Result<Node, &'static str> {
        if depth > 6 {
            return Err("more than 6 dimensions");
        }
        if self.peek() != Some(b'{') {
            return Err("expected '{'");
        }
        self.i += 1;
        self.skip_space();
        let mut items = Vec::new();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Node::List(items));
        }
        loop {
            self.skip_space();
            let node = if self.peek() == Some(b'{') {
                self.list(depth + 1)?
            } else {
                self.item()?
            };
            items.push(node);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Node::List(items));
                }
                None => return Err("unexpected end of input"),
                Some(_) => return Err("expected ',' or '}'"),
            }
        }
    }

    fn item(&mut self) -> Result<Node, &'static str> {
        let mut buf = Vec::new();
        if self.peek() == Some(b'"') {
            self.i += 1;
            loop {
                match self.peek() {
                    None => return Err("unterminated quoted element"),
                    Some(b'"') => {
                        self.i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let c = *self.b.get(self.i + 1).ok_or("unexpected end of input")?;
                        buf.push(c);
                        self.i += 2;
                    }
                    Some(c) => {
                        buf.push(c);
                        self.i += 1;
                    }
                }
            }
            return String::from_utf8(buf)
                .map(|s| Node::Item(Some(s)))
                .map_err(|_| "invalid UTF-8");
        }
        // Unquoted: up to ',' or '}', trailing unescaped whitespace dropped.
        let mut keep = 0;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err("unexpected end of input"),
                Some(b',' | b'}') => break,
                Some(b'{' | b'"') => return Err("unexpected '{' or '\"' in an unquoted element"),
                Some(b'\\') => {
                    let c = *self.b.get(self.i + 1).ok_or("unexpected end of input")?;
                    buf.push(c);
                    keep = buf.len();
                    escaped = true;
                    self.i += 2;
                }
                Some(c) => {
                    buf.push(c);
                    if !is_array_space(c) {
                        keep = buf.len();
                    }
                    self.i += 1;
                }
            }
        }
        buf.truncate(keep);
        if buf.is_empty() && !escaped {
            return Err("empty unquoted element");
        }
        if !escaped && buf.eq_ignore_ascii_case(b"NULL") {
            return Ok(Node::Item(None));
        }
        String::from_utf8(buf)
            .map(|s| Node::Item(Some(s)))
            .map_err(|_| "invalid UTF-8")
    }
}

/// The dimensions of a list, checking that it is rectangular (PostgreSQL arrays are).
/// Only the outermost list may be empty.
fn node_shape(items: &[Node]) -> Result<Vec<usize>, &'static str> {
    let lists: Vec<&Vec<Node>> = items
        .iter()
        .filter_map(|n| match n {
            Node::List(l) => Some(l),
            Node::Item(_) => None,
        })
        .collect();
    if lists.is_empty() {
        return Ok(vec![items.len()]);
    }
    if lists.len() != items.len() {
        return Err("elements and sub-arrays mixed at one level");
    }
    let mut sub: Option<Vec<usize>> = None;
    for l in lists {
        if l.is_empty() {
            return Err("empty sub-array");
        }
        let s = node_shape(l)?;
        match &sub {
            None => sub = Some(s),
            Some(prev) if *prev != s => return Err("sub-arrays with different dimensions"),
            Some(_) => {}
        }
    }
    let mut shape = vec![items.len()];
    shape.extend(sub.unwrap_or_default());
    Ok(shape)
}

fn node_value(elem: &PgTypeClass, node: Node) -> Result<Value, PgDecodeError> {
    match node {
        Node::List(items) => items
            .into_iter()
            .map(|n| node_value(elem, n))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Item(None) => Ok(Value::Null),
        Node::Item(Some(s)) => decode_text(elem, &s),
    }
}

fn decode_array(elem: &PgTypeClass, text: &str) -> Result<Value, PgDecodeError> {
    let malformed = |reason| PgDecodeError::MalformedArray {
        text: excerpt(text),
        reason,
    };
    let mut p = ArrayParser {
        b: text.as_bytes(),
        i: 0,
    };
    p.skip_space();
    if p.peek() == Some(b'[') {
        return Err(PgDecodeError::ArrayBounds {
            text: excerpt(text),
        });
    }
    let root = p.list(1).map_err(malformed)?;
    p.skip_space();
    if p.i != p.b.len() {
        return Err(malformed("unexpected text after the closing '}'"));
    }
    if let Node::List(items) = &root {
        node_shape(items).map_err(malformed)?;
    }
    node_value(elem, root)
}

// ---------------------------------------------------------------------------------
// Encoding.

/// Write a value in PostgreSQL input syntax, for a text parameter cast to the column
/// type (`$n::text::<type>`). The result is the raw parameter text: no SQL quoting.
pub fn encode_text(value: &Value) -> Result<String, PgEncodeError> {
    let mut out = String::new();
    match value {
        Value::Array(items) => {
            array_shape(items, 1)?;
            write_array(&mut out, items)?;
        }
        _ => write_scalar(&mut out, value)?,
    }
    Ok(out)
}

/// Why a column of `class` cannot take `v` without losing part of it where
/// PostgreSQL's input function would take the text and drop that part
/// silently: a timestamp into `date` (its time of day) or into `time` (its
/// date). `None` when nothing is lost. MySQL's encoder refuses the same
/// values, as values of the wrong kind.
pub fn lossy_into(class: &PgTypeClass, v: &Value) -> Option<&'static str> {
    match (class, v) {
        (PgTypeClass::Date, Value::Timestamp(_) | Value::TimestampTz(_)) => Some(
            "a timestamp into a PostgreSQL date column would lose its time of day (PostgreSQL's cast keeps the date only)",
        ),
        (PgTypeClass::Time, Value::Timestamp(_) | Value::TimestampTz(_)) => Some(
            "a timestamp into a PostgreSQL time column would lose its date (PostgreSQL's cast keeps the time of day only)",
        ),
        _ => None,
    }
}

/// Fractional-second digits a number of microseconds needs (0..=6).
fn fraction_digits(micros: i64) -> i32 {
    let mut frac = micros.rem_euclid(MICROS_PER_SECOND);
    if frac == 0 {
        return 0;
    }
    let mut digits = 6;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    digits
}

/// Why a PostgreSQL column of `class` with type modifier `typmod` (-1: none)
/// would round `v` on assignment, which PostgreSQL does without an error:
/// `numeric(p,s)` keeps s fractional digits, `timestamp(p)`, `timestamptz(p)`
/// and `time(p)` keep p fractional-second digits, `real` and `double
/// precision` keep what their binary precision holds. `None`: stored
/// exactly. MySQL's encoder refuses the same values.
pub fn rounded_by(class: &PgTypeClass, typmod: i32, v: &Value) -> Option<String> {
    use PgTypeClass as C;
    match (class, v) {
        (
            C::Numeric,
            Value::Decimal(_)
            | Value::Int(_)
            | Value::UInt(_)
            | Value::Float32(_)
            | Value::Float64(_),
        ) if typmod >= 4 => {
            // typmod - 4 is (precision << 16) | scale, the scale 11 bits
            // and signed (PostgreSQL 15 allows negative scales).
            let precision = ((typmod - 4) >> 16) & 0xffff;
            let scale = (((typmod - 4) & 0x7ff) ^ 0x400) - 0x400;
            if scale < 0 {
                return None;
            }
            let norm = Decimal::parse(&encode_text(v).ok()?)?.normalized();
            let frac = norm.split_once('.').map_or(0, |(_, f)| f.len());
            (frac > scale as usize).then(|| {
                format!(
                    "has {frac} fractional digits; numeric({precision},{scale}) keeps {scale} and would round"
                )
            })
        }
        (C::Timestamp | C::Timestamptz | C::Time, _) if (0..6).contains(&typmod) => {
            let micros = match v {
                Value::Timestamp(Timestamp::Micros(m))
                | Value::TimestampTz(Timestamp::Micros(m))
                | Value::Time(m) => *m,
                _ => return None,
            };
            let need = fraction_digits(micros);
            (need > typmod).then(|| {
                format!(
                    "has {need} fractional-second digits; {}({typmod}) keeps {typmod} and would round",
                    class.type_name()
                )
            })
        }
        (C::Float4, _) => {
            let exact = match v {
                Value::Float64(f) => !f.is_finite() || f64::from(*f as f32) == *f,
                Value::Int(i) => (*i as f32) as i64 == *i,
                Value::UInt(u) => (*u as f32) as u64 == *u,
                Value::Decimal(Decimal::Finite(_)) => {
                    let d = Decimal::parse(&encode_text(v).ok()?)?;
                    let f: f32 = d.normalized().parse().ok()?;
                    Decimal::parse(&format!("{f}")).map(|x| x.normalized()) == Some(d.normalized())
                }
                _ => true,
            };
            (!exact).then(|| {
                "is not exactly representable in real (single precision) and would be rounded"
                    .to_string()
            })
        }
        (C::Float8, _) => {
            let exact = match v {
                Value::Int(i) => (*i as f64) as i64 == *i,
                Value::UInt(u) => (*u as f64) as u64 == *u,
                Value::Decimal(Decimal::Finite(_)) => {
                    let d = Decimal::parse(&encode_text(v).ok()?)?;
                    let f: f64 = d.normalized().parse().ok()?;
                    Decimal::parse(&format!("{f}")).map(|x| x.normalized()) == Some(d.normalized())
                }
                _ => true,
            };
            (!exact).then(|| {
                "has more digits than double precision carries and would be rounded".to_string()
            })
        }
        _ => None,
    }
}

/// Midnight of a date, as a timestamp (PostgreSQL's cast of a date).
fn midnight(d: Date) -> Result<Timestamp, String> {
    match d {
        Date::NegInfinity => Ok(Timestamp::NegInfinity),
        Date::PosInfinity => Ok(Timestamp::PosInfinity),
        Date::Days(n) => i64::from(n)
            .checked_mul(MICROS_PER_DAY)
            .map(Timestamp::Micros)
            .ok_or_else(|| "out of range for a timestamp".to_string()),
    }
}

/// `v` as a PostgreSQL column of `class` holds it and reads it back (its
/// text output, decoded as the applier reads target rows): the form the
/// marker's checksum, conflict detection and the parity check compare.
/// `Err` with the reason when the column cannot take the value (writing it
/// is then refused too).
pub fn as_stored(class: &PgTypeClass, v: &Value) -> Result<Value, String> {
    Ok(stored_form(class, -1, v)?.unwrap_or_else(|| v.clone()))
}

/// [`as_stored`] for a column with type modifier `typmod` (-1: none), with
/// `None` for a value that reads back as it is.
pub fn stored_form(class: &PgTypeClass, typmod: i32, v: &Value) -> Result<Option<Value>, String> {
    use PgTypeClass as C;
    if let Some(reason) = lossy_into(class, v) {
        return Err(reason.into());
    }
    if let Some(reason) = rounded_by(class, typmod, v) {
        return Err(reason);
    }
    Ok(Some(match (class, v) {
        (_, Value::Null) => return Ok(None),
        // The applier's session runs in UTC: a naive timestamp is taken as
        // UTC, and an aware one is stored as its UTC wall time.
        (C::Timestamp, Value::TimestampTz(t)) => Value::Timestamp(*t),
        (C::Timestamptz, Value::Timestamp(t)) => Value::TimestampTz(*t),
        (C::Timestamp, Value::Date(d)) => Value::Timestamp(midnight(*d)?),
        (C::Timestamptz, Value::Date(d)) => Value::TimestampTz(midnight(*d)?),
        (C::Bpchar, Value::Text(s)) => Value::Text(s.trim_end_matches(' ').to_string()),
        // A value of the column's own kind reads back as it is (this is
        // every value between two PostgreSQL sites with the same types).
        (C::Bool, Value::Bool(_))
        | (C::Int2 | C::Int4 | C::Int8 | C::Oid, Value::Int(_))
        | (C::Numeric, Value::Decimal(_))
        | (C::Float4, Value::Float32(_))
        | (C::Float8, Value::Float64(_))
        | (C::Text | C::Other, Value::Text(_))
        | (C::Bytea, Value::Bytes(_))
        | (C::Date, Value::Date(_))
        | (C::Time, Value::Time(_))
        | (C::Timestamp, Value::Timestamp(_))
        | (C::Timestamptz, Value::TimestampTz(_))
        | (C::Interval, Value::Interval(_))
        | (C::Uuid, Value::Uuid(_))
        | (C::Json | C::Jsonb, Value::Json(_))
        | (C::Enum, Value::Enum(_)) => return Ok(None),
        // Anything else goes through PostgreSQL's text form, as the write does.
        _ => {
            let text = encode_text(v).map_err(|e| e.to_string())?;
            decode_text(class, &text).map_err(|e| e.to_string())?
        }
    }))
}

fn no_nul<'a>(s: &'a str, kind: &'static str) -> Result<&'a str, PgEncodeError> {
    if s.contains('\0') {
        Err(PgEncodeError::NulCharacter { kind })
    } else {
        Ok(s)
    }
}

fn write_scalar(out: &mut String, value: &Value) -> Result<(), PgEncodeError> {
    match value {
        Value::Null => return Err(PgEncodeError::Null),
        Value::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        Value::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Value::UInt(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Decimal(d) => {
            let _ = write!(out, "{d}");
        }
        Value::Float32(v) => write_float(out, f64::from(*v), || format!("{v:?}")),
        Value::Float64(v) => write_float(out, *v, || format!("{v:?}")),
        Value::Text(s) => out.push_str(no_nul(s, "text")?),
        Value::Json(s) => out.push_str(no_nul(s, "json")?),
        Value::Enum(s) => out.push_str(no_nul(s, "enum")?),
        Value::Bytes(b) => {
            out.reserve(2 + 2 * b.len());
            out.push_str("\\x");
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
        Value::Date(d) => write_date(out, *d)?,
        Value::Time(micros) => {
            if !(0..=MICROS_PER_DAY).contains(micros) {
                return Err(PgEncodeError::OutOfRange {
                    kind: "time",
                    pg_type: "time",
                    value: format!("{micros} microseconds"),
                });
            }
            write_time_of_day(out, *micros);
        }
        Value::Timestamp(ts) => write_timestamp(out, *ts, false)?,
        Value::TimestampTz(ts) => write_timestamp(out, *ts, true)?,
        Value::Interval(iv) => write_interval(out, iv),
        Value::Uuid(b) => {
            let _ = write!(out, "{}", uuid::Uuid::from_bytes(*b).hyphenated());
        }
        Value::Array(_) => return Err(PgEncodeError::Array { reason: "nested" }),
    }
    Ok(())
}

/// Floats: Rust's `{:?}` prints the shortest digits that read back to the same bits
/// (`1e30`, `1e-7`, `-0.0`), all of which PostgreSQL's float input accepts.
fn write_float(out: &mut String, v: f64, digits: impl FnOnce() -> String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("Infinity");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Infinity");
    } else {
        out.push_str(&digits());
    }
}

fn write_ymd(out: &mut String, days: i64) -> bool {
    let (y, m, d) = civil_from_days(days);
    let bc = y <= 0;
    let shown = if bc { 1 - y } else { y };
    let _ = write!(out, "{shown:04}-{m:02}-{d:02}");
    bc
}

fn write_date(out: &mut String, d: Date) -> Result<(), PgEncodeError> {
    match d {
        Date::PosInfinity => out.push_str("infinity"),
        Date::NegInfinity => out.push_str("-infinity"),
        Date::Days(days) => {
            if !(PG_DATE_MIN_DAYS..=PG_DATE_MAX_DAYS).contains(&i64::from(days)) {
                return Err(PgEncodeError::OutOfRange {
                    kind: "date",
                    pg_type: "date",
                    value: format!("{days} days from 1970-01-01"),
                });
            }
            if write_ymd(out, i64::from(days)) {
                out.push_str(" BC");
            }
        }
    }
    Ok(())
}

/// `HH:MM:SS[.ffffff]` with the fraction's trailing zeros trimmed.
fn write_time_of_day(out: &mut String, micros: i64) {
    let secs = micros / MICROS_PER_SECOND;
    let frac = micros % MICROS_PER_SECOND;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    write_fraction(out, frac.unsigned_abs());
}

/// `.ffffff` without trailing zeros; nothing for 0.
fn write_fraction(out: &mut String, frac_micros: u64) {
    if frac_micros != 0 {
        let digits = format!("{frac_micros:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

fn write_timestamp(out: &mut String, ts: Timestamp, with_tz: bool) -> Result<(), PgEncodeError> {
    match ts {
        Timestamp::PosInfinity => out.push_str("infinity"),
        Timestamp::NegInfinity => out.push_str("-infinity"),
        Timestamp::Micros(micros) => {
            // The top of PostgreSQL's range lies beyond i64 microseconds since 1970,
            // so only the bottom needs checking.
            if micros < PG_TS_MIN_MICROS {
                return Err(PgEncodeError::OutOfRange {
                    kind: if with_tz { "timestamptz" } else { "timestamp" },
                    pg_type: if with_tz { "timestamptz" } else { "timestamp" },
                    value: format!("{micros} microseconds from 1970-01-01"),
                });
            }
            let bc = write_ymd(out, micros.div_euclid(MICROS_PER_DAY));
            out.push(' ');
            write_time_of_day(out, micros.rem_euclid(MICROS_PER_DAY));
            if with_tz {
                out.push_str("+00");
            }
            if bc {
                out.push_str(" BC");
            }
        }
    }
    Ok(())
}

/// ISO 8601 with designators: months and days as written, the time split into
/// hours, minutes and seconds so that each number stays small. PostgreSQL reads the
/// numbers through a double, so a single seconds figure above 2^53 microseconds
/// would lose digits; hours below 2^32 and seconds below 60 are exact.
fn write_interval(out: &mut String, iv: &Interval) {
    if *iv == INTERVAL_POS_INFINITY {
        out.push_str("infinity");
        return;
    }
    if *iv == INTERVAL_NEG_INFINITY {
        out.push_str("-infinity");
        return;
    }
    out.push('P');
    if iv.months != 0 {
        let _ = write!(out, "{}M", iv.months);
    }
    if iv.days != 0 {
        let _ = write!(out, "{}D", iv.days);
    }
    if iv.micros != 0 {
        let sign = if iv.micros < 0 { "-" } else { "" };
        let abs = iv.micros.unsigned_abs();
        let (per_h, per_m, per_s) = (
            MICROS_PER_HOUR as u64,
            MICROS_PER_MINUTE as u64,
            MICROS_PER_SECOND as u64,
        );
        let (h, m, s, frac) = (
            abs / per_h,
            abs % per_h / per_m,
            abs % per_m / per_s,
            abs % per_s,
        );
        out.push('T');
        if h != 0 {
            let _ = write!(out, "{sign}{h}H");
        }
        if m != 0 {
            let _ = write!(out, "{sign}{m}M");
        }
        if s != 0 || frac != 0 {
            let _ = write!(out, "{sign}{s}");
            write_fraction(out, frac);
            out.push('S');
        }
    }
    if out.ends_with('P') {
        out.push_str("T0S");
    }
}

/// Check that an array is one PostgreSQL can hold: rectangular, at most 6
/// dimensions, no empty sub-arrays.
fn array_shape(items: &[Value], depth: usize) -> Result<Vec<usize>, PgEncodeError> {
    if depth > 6 {
        return Err(PgEncodeError::Array {
            reason: "more than 6 dimensions",
        });
    }
    let nested = items
        .iter()
        .filter(|v| matches!(v, Value::Array(_)))
        .count();
    if nested == 0 {
        return Ok(vec![items.len()]);
    }
    if nested != items.len() {
        return Err(PgEncodeError::Array {
            reason: "elements and sub-arrays mixed at one level",
        });
    }
    let mut sub: Option<Vec<usize>> = None;
    for v in items {
        if let Value::Array(inner) = v {
            if inner.is_empty() {
                return Err(PgEncodeError::Array {
                    reason: "empty sub-array",
                });
            }
            let s = array_shape(inner, depth + 1)?;
            match &sub {
                None => sub = Some(s),
                Some(prev) if *prev != s => {
                    return Err(PgEncodeError::Array {
                        reason: "sub-arrays with different dimensions",
                    })
                }
                Some(_) => {}
            }
        }
    }
    let mut shape = vec![items.len()];
    shape.extend(sub.unwrap_or_default());
    Ok(shape)
}

/// Whether an element must be double-quoted in an array literal (as `array_out`
/// decides, plus any Unicode whitespace, which costs nothing).
fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace())
}

fn write_array(out: &mut String, items: &[Value]) -> Result<(), PgEncodeError> {
    out.push('{');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => write_array(out, inner)?,
            _ => {
                let mut elem = String::new();
                write_scalar(&mut elem, v)?;
                if needs_quotes(&elem) {
                    out.push('"');
                    for c in elem.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                } else {
                    out.push_str(&elem);
                }
            }
        }
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use PgTypeClass as C;

    fn arr(c: PgTypeClass) -> PgTypeClass {
        C::Array(Box::new(c))
    }

    fn dec(class: &PgTypeClass, text: &str) -> Value {
        match decode_text(class, text) {
            Ok(v) => v,
            Err(e) => panic!("decode {class:?} {text:?}: {e}"),
        }
    }

    fn enc(v: &Value) -> String {
        match encode_text(v) {
            Ok(s) => s,
            Err(e) => panic!("encode {v:?}: {e}"),
        }
    }

    fn ymd(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d)
    }

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

    #[test]
    fn values_postgresql_would_round_are_named() {
        let numeric = |p: i32, s: i32| (p << 16 | s) + 4;
        let d = |t: &str| Value::Decimal(Decimal::parse(t).unwrap_or(Decimal::NaN));
        let n = numeric(10, 2);
        assert_eq!(rounded_by(&C::Numeric, n, &d("1.5000")), None);
        assert_eq!(rounded_by(&C::Numeric, n, &d("12.34")), None);
        assert_eq!(rounded_by(&C::Numeric, n, &Value::Int(7)), None);
        let why = rounded_by(&C::Numeric, n, &d("1.2345")).unwrap_or_default();
        assert!(
            why.contains("4 fractional digits") && why.contains("numeric(10,2)"),
            "{why}"
        );
        assert!(rounded_by(&C::Numeric, n, &Value::Float64(0.125)).is_some());
        // No typmod, or a negative scale: not checked here.
        assert_eq!(rounded_by(&C::Numeric, -1, &d("1.23456789")), None);
        assert_eq!(rounded_by(&C::Numeric, numeric(5, 0x7ff), &d("1.5")), None);
        // Fractional seconds beyond the column's precision.
        let ts = |us: i64| Value::Timestamp(Timestamp::Micros(us));
        assert_eq!(rounded_by(&C::Timestamp, 0, &ts(1_000_000)), None);
        let why = rounded_by(&C::Timestamp, 0, &ts(1_250_000)).unwrap_or_default();
        assert!(
            why.contains("2 fractional-second digits") && why.contains("timestamp(0)"),
            "{why}"
        );
        assert_eq!(
            rounded_by(
                &C::Timestamptz,
                3,
                &Value::TimestampTz(Timestamp::Micros(1_250_000))
            ),
            None
        );
        assert!(rounded_by(&C::Time, 3, &Value::Time(1_250_001)).is_some());
        assert_eq!(rounded_by(&C::Timestamp, -1, &ts(1_250_001)), None);
        assert_eq!(rounded_by(&C::Timestamp, 6, &ts(1_250_001)), None);
        // Binary floats: what the column's precision does not hold exactly.
        assert_eq!(rounded_by(&C::Float4, -1, &Value::Float64(0.5)), None);
        assert!(rounded_by(&C::Float4, -1, &Value::Float64(0.1)).is_some());
        assert!(rounded_by(&C::Float4, -1, &Value::Int(16_777_217)).is_some());
        assert_eq!(rounded_by(&C::Float4, -1, &Value::Float32(0.1)), None);
        assert_eq!(rounded_by(&C::Float8, -1, &d("0.1")), None);
        assert!(rounded_by(&C::Float8, -1, &d("0.10000000000000000001")).is_some());
        assert!(rounded_by(&C::Float8, -1, &Value::Int(9_007_199_254_740_993)).is_some());
        // And such a value is not normalised into the rounded one either.
        assert!(stored_form(&C::Float4, -1, &Value::Float64(0.1)).is_err());
        assert!(stored_form(&C::Numeric, n, &d("1.2345")).is_err());
    }

    #[test]
    fn as_stored_is_what_the_column_reads_back() {
        let ts = Timestamp::Micros(1_704_203_100_000_000);
        let stored = |c: &PgTypeClass, v: &Value| as_stored(c, v).unwrap_or(Value::Null);
        assert_eq!(
            stored(&C::Bpchar, &Value::Text("ab   ".into())),
            Value::Text("ab".into())
        );
        assert_eq!(
            stored(&C::Text, &Value::Text("ab ".into())),
            Value::Text("ab ".into())
        );
        // MySQL's TIMESTAMP (aware) into timestamp, and back.
        assert_eq!(
            stored(&C::Timestamp, &Value::TimestampTz(ts)),
            Value::Timestamp(ts)
        );
        assert_eq!(
            stored(&C::Timestamptz, &Value::Timestamp(ts)),
            Value::TimestampTz(ts)
        );
        assert_eq!(
            stored(&C::Timestamp, &Value::Date(Date::Days(19_724))),
            Value::Timestamp(Timestamp::Micros(19_724 * MICROS_PER_DAY))
        );
        // MySQL's tinyint(1) into boolean, numbers into text, text into uuid.
        assert_eq!(stored(&C::Bool, &Value::Int(1)), Value::Bool(true));
        assert_eq!(stored(&C::Text, &Value::Int(7)), Value::Text("7".into()));
        assert_eq!(
            stored(
                &C::Uuid,
                &Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
            ),
            dec(&C::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        assert_eq!(stored(&C::Int4, &Value::Int(5)), Value::Int(5));
        assert_eq!(stored(&C::Int4, &Value::Null), Value::Null);
        // PostgreSQL's cast would drop the time of day, or the date: refused.
        for v in [Value::Timestamp(ts), Value::TimestampTz(ts)] {
            let e = as_stored(&C::Date, &v).err().unwrap_or_default();
            assert!(e.contains("time of day"), "{e}");
            assert!(lossy_into(&C::Date, &v).is_some());
            assert!(lossy_into(&C::Time, &v).is_some());
        }
        // Midnight too: refused by kind, as MySQL's encoder refuses it.
        assert!(as_stored(&C::Date, &Value::Timestamp(Timestamp::Micros(0))).is_err());
        assert!(lossy_into(&C::Date, &Value::Date(Date::Days(1))).is_none());
        assert!(lossy_into(&C::Timestamp, &Value::Date(Date::Days(1))).is_none());
    }

    fn date(y: i64, m: u32, d: u32) -> Value {
        Value::Date(Date::Days(ymd(y, m, d) as i32))
    }

    fn micros(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> i64 {
        ymd(y, mo, d) * MICROS_PER_DAY
            + h * MICROS_PER_HOUR
            + mi * MICROS_PER_MINUTE
            + s * MICROS_PER_SECOND
            + us
    }

    fn ts(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> Value {
        Value::Timestamp(Timestamp::Micros(micros(y, mo, d, h, mi, s, us)))
    }

    fn tstz(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> Value {
        Value::TimestampTz(Timestamp::Micros(micros(y, mo, d, h, mi, s, us)))
    }

    fn iv(months: i32, days: i32, micros: i64) -> Value {
        Value::Interval(Interval {
            months,
            days,
            micros,
        })
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn fin(s: &str) -> Value {
        Value::Decimal(Decimal::Finite(s.into()))
    }

    /// Equality with floats compared by bits (any NaN equals any NaN) and decimals by
    /// their normal form.
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float64(x), Value::Float64(y)) => {
                (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
            }
            (Value::Float32(x), Value::Float32(y)) => {
                (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
            }
            (Value::Decimal(x), Value::Decimal(y)) => x.normalized() == y.normalized(),
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
            }
            _ => a == b,
        }
    }

    #[test]
    fn range_constants() {
        assert_eq!(ymd(-4713, 11, 24), PG_DATE_MIN_DAYS);
        assert_eq!(ymd(5_874_897, 12, 31), PG_DATE_MAX_DAYS);
        assert_eq!(ymd(294_277, 1, 1), PG_TS_END_DAYS);
        assert!(PG_DATE_MAX_DAYS <= i64::from(i32::MAX));
        // i64::MAX microseconds since 1970 is short of PostgreSQL's last timestamp.
        assert_eq!(
            enc(&Value::Timestamp(Timestamp::Micros(i64::MAX))),
            "294247-01-10 04:00:54.775807"
        );
    }

    #[test]
    fn classify() {
        assert_eq!(classify_builtin(16), Some(C::Bool));
        assert_eq!(classify_builtin(26), Some(C::Oid));
        assert_eq!(classify_builtin(142), Some(C::Text));
        assert_eq!(classify_builtin(1043), Some(C::Text));
        assert_eq!(classify_builtin(1184), Some(C::Timestamptz));
        assert_eq!(classify_builtin(3802), Some(C::Jsonb));
        assert_eq!(classify_builtin(1000), Some(arr(C::Bool)));
        assert_eq!(classify_builtin(199), Some(arr(C::Json)));
        assert_eq!(classify_builtin(1028), Some(arr(C::Oid)));
        assert_eq!(classify_builtin(143), Some(arr(C::Text)));
        assert_eq!(classify_builtin(869), Some(C::Other));
        assert_eq!(classify_builtin(1041), Some(arr(C::Other)));
        // box uses ';' between array elements: its array is carried whole.
        assert_eq!(classify_builtin(1020), Some(C::Other));
        assert_eq!(classify_builtin(16_385), None);
        assert_eq!(classify_builtin(0), None);
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

    #[test]
    fn encode_cases() {
        let cases: Vec<(Value, &str)> = vec![
            (Value::Bool(true), "t"),
            (Value::Bool(false), "f"),
            (Value::Int(-5), "-5"),
            (Value::Int(i64::MIN), "-9223372036854775808"),
            (Value::UInt(u64::MAX), "18446744073709551615"),
            (fin("-1.50"), "-1.50"),
            (Value::Decimal(Decimal::NaN), "NaN"),
            (Value::Decimal(Decimal::PosInfinity), "Infinity"),
            (Value::Float64(1e30), "1e30"),
            (Value::Float64(1e-7), "1e-7"),
            (Value::Float64(-0.0), "-0.0"),
            (Value::Float64(f64::NAN), "NaN"),
            (Value::Float64(f64::INFINITY), "Infinity"),
            (Value::Float64(f64::NEG_INFINITY), "-Infinity"),
            (Value::Float64(f64::MAX), "1.7976931348623157e308"),
            (Value::Float64(5e-324), "5e-324"),
            (Value::Float64(0.1), "0.1"),
            (Value::Float64(1e15), "1000000000000000.0"),
            (Value::Float32(f32::MAX), "3.4028235e38"),
            (Value::Float32(f32::from_bits(1)), "1e-45"),
            (Value::Float32(0.1), "0.1"),
            (Value::Float32(-0.0), "-0.0"),
            (text("it's \\ \"q\""), "it's \\ \"q\""),
            (Value::Bytes(vec![0, 0xff, 0x10]), "\\x00ff10"),
            (Value::Bytes(vec![]), "\\x"),
            (date(2000, 2, 29), "2000-02-29"),
            (date(-43, 3, 15), "0044-03-15 BC"),
            (date(0, 1, 1), "0001-01-01 BC"),
            (Value::Date(Date::Days(-2_440_588)), "4714-11-24 BC"),
            (Value::Date(Date::Days(2_145_042_905)), "5874897-12-31"),
            (date(10_000, 1, 1), "10000-01-01"),
            (Value::Date(Date::PosInfinity), "infinity"),
            (Value::Date(Date::NegInfinity), "-infinity"),
            (Value::Time(0), "00:00:00"),
            (Value::Time(MICROS_PER_DAY), "24:00:00"),
            (Value::Time(45_296_500_000), "12:34:56.5"),
            (Value::Time(MICROS_PER_DAY - 1), "23:59:59.999999"),
            (
                Value::Timestamp(Timestamp::Micros(PG_TS_MIN_MICROS)),
                "4714-11-24 00:00:00 BC",
            ),
            (ts(0, 1, 1, 0, 0, 0, 500_000), "0001-01-01 00:00:00.5 BC"),
            (ts(2024, 1, 2, 3, 4, 5, 123_000), "2024-01-02 03:04:05.123"),
            (
                ts(1969, 12, 31, 23, 59, 59, 999_999),
                "1969-12-31 23:59:59.999999",
            ),
            (Value::Timestamp(Timestamp::PosInfinity), "infinity"),
            (
                tstz(2024, 1, 2, 3, 4, 5, 123_000),
                "2024-01-02 03:04:05.123+00",
            ),
            (tstz(0, 1, 1, 0, 0, 0, 0), "0001-01-01 00:00:00+00 BC"),
            (Value::TimestampTz(Timestamp::NegInfinity), "-infinity"),
            (iv(14, 3, -1), "P14M3DT-0.000001S"),
            (iv(0, 0, 0), "PT0S"),
            (iv(0, 0, 90_000_000), "PT1M30S"),
            (iv(0, 0, i64::MIN), "PT-2562047788H-54.775808S"),
            (iv(0, 0, i64::MAX), "PT2562047788H54.775807S"),
            (iv(i32::MIN, i32::MAX, 0), "P-2147483648M2147483647D"),
            (iv(-1, -1, -3_661_000_001), "P-1M-1DT-1H-1M-1.000001S"),
            (iv(0, 0, MICROS_PER_HOUR), "PT1H"),
            (Value::Interval(INTERVAL_POS_INFINITY), "infinity"),
            (Value::Interval(INTERVAL_NEG_INFINITY), "-infinity"),
            (
                Value::Uuid([
                    0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd,
                    0x38, 0x0a, 0x11,
                ]),
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            ),
            (Value::Json("{\"a\": 1}".into()), "{\"a\": 1}"),
            (Value::Enum("sad".into()), "sad"),
            (Value::Array(vec![]), "{}"),
            (
                Value::Array(vec![Value::Int(1), Value::Null, Value::Int(-2)]),
                "{1,NULL,-2}",
            ),
            (
                Value::Array(vec![
                    Value::Array(vec![text("a"), text("")]),
                    Value::Array(vec![text("NuLL"), text("x y")]),
                ]),
                "{{a,\"\"},{\"NuLL\",\"x y\"}}",
            ),
            (
                Value::Array(vec![Value::Bytes(vec![0, 255]), Value::Null]),
                "{\"\\\\x00ff\",NULL}",
            ),
            (
                Value::Array(vec![tstz(2020, 1, 1, 0, 0, 0, 0)]),
                "{\"2020-01-01 00:00:00+00\"}",
            ),
            (
                Value::Array(vec![Value::Float64(1e30), Value::Float64(f64::NAN)]),
                "{1e30,NaN}",
            ),
            (
                Value::Array(vec![text("\u{a0}"), text("\u{2003}")]),
                "{\"\u{a0}\",\"\u{2003}\"}",
            ),
        ];
        for (value, want) in &cases {
            assert_eq!(enc(value), *want, "{value:?}");
        }
    }

    /// PostgreSQL output that encode_text writes back character for character.
    #[test]
    fn encode_reproduces_pg_output() {
        let cases: Vec<(PgTypeClass, &str)> = vec![
            (
                arr(C::Text),
                "{\"a b\",\"x\\\"y\\\\z\",NULL,\"NULL\",\"null\",\"\",\" lead\",\"{}\",\"a,b\",é,\"tab\there\",\"nl\nx\",ab}",
            ),
            (arr(C::Int4), "{{1,2},{3,4}}"),
            (arr(C::Bytea), "{\"\\\\x00ff\",NULL}"),
            (
                arr(C::Timestamptz),
                "{\"2020-01-01 00:00:00+00\",\"0001-01-01 00:00:00+00 BC\"}",
            ),
            (arr(C::Date), "{2020-01-01,\"0044-03-15 BC\"}"),
            (arr(C::Interval), "{P1D,PT-1S}"),
            (C::Date, "4714-11-24 BC"),
            (C::Date, "5874897-12-31"),
            (C::Timestamp, "4714-11-24 00:00:00 BC"),
            (C::Timestamp, "0001-01-01 00:00:00.5 BC"),
            (C::Timestamptz, "2024-01-01 21:34:05.123+00"),
            (C::Time, "24:00:00"),
            (C::Time, "12:34:56.5"),
            (C::Interval, "P1DT-0.000001S"),
            (C::Interval, "PT-1.5S"),
            (C::Interval, "PT0S"),
            (C::Interval, "PT-2562047788H-54.775808S"),
            (C::Bytea, "\\x615c6200"),
            (C::Float8, "NaN"),
            (C::Float8, "-Infinity"),
            (C::Float8, "0.1"),
        ];
        for (class, pg) in &cases {
            assert_eq!(enc(&dec(class, pg)), *pg, "{class:?}");
        }
    }

    #[test]
    fn encode_rejects() {
        let bad = [
            Value::Null,
            Value::Time(-1),
            Value::Time(MICROS_PER_DAY + 1),
            Value::Date(Date::Days(-2_440_589)),
            Value::Date(Date::Days(i32::MAX)),
            Value::Timestamp(Timestamp::Micros(PG_TS_MIN_MICROS - 1)),
            Value::TimestampTz(Timestamp::Micros(i64::MIN)),
            text("a\0b"),
            Value::Json("\0".into()),
            Value::Array(vec![Value::Array(vec![Value::Int(1)]), Value::Int(2)]),
            Value::Array(vec![
                Value::Array(vec![Value::Int(1), Value::Int(2)]),
                Value::Array(vec![Value::Int(3)]),
            ]),
            Value::Array(vec![Value::Array(vec![])]),
            Value::Array(vec![Value::Array(vec![Value::Int(1)]), Value::Null]),
            Value::Array(vec![text("a\0")]),
            Value::Array(vec![Value::Time(-5)]),
        ];
        for v in &bad {
            if let Ok(s) = encode_text(v) {
                panic!("{v:?} encoded to {s:?}");
            }
        }
        let mut deep = Value::Int(1);
        for _ in 0..7 {
            deep = Value::Array(vec![deep]);
        }
        assert!(encode_text(&deep).is_err());
    }

    fn round_trip(class: &PgTypeClass, v: &Value) -> Result<(), TestCaseError> {
        let s = encode_text(v).map_err(|e| TestCaseError::fail(format!("{v:?}: {e}")))?;
        let back =
            decode_text(class, &s).map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
        prop_assert!(same(&back, v), "{:?} -> {:?} -> {:?}", v, s, back);
        Ok(())
    }

    fn pg_days() -> impl Strategy<Value = i32> {
        prop_oneof![
            (PG_DATE_MIN_DAYS as i32)..=(PG_DATE_MAX_DAYS as i32),
            -800_000i32..800_000,
            Just(PG_DATE_MIN_DAYS as i32),
            Just(PG_DATE_MAX_DAYS as i32),
        ]
    }

    fn pg_micros() -> impl Strategy<Value = i64> {
        prop_oneof![
            PG_TS_MIN_MICROS..=i64::MAX,
            -100_000_000_000_000_000i64..100_000_000_000_000_000,
            Just(PG_TS_MIN_MICROS),
            Just(i64::MAX),
            Just(-1i64),
        ]
    }

    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>().prop_map(|s| s.replace('\0', "")),
            "[{}\",\\\\ \\t\\na-zNUL\u{a0}é]{0,12}",
            Just(String::new()),
            Just("NULL".to_string()),
            Just("null".to_string()),
            Just(" ".to_string()),
            Just("\\".to_string()),
            Just("\"".to_string()),
        ]
    }

    fn text_elem() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => tricky_string().prop_map(Value::Text),
            1 => Just(Value::Null),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_int(v in any::<i64>()) {
            round_trip(&C::Int8, &Value::Int(v))?;
        }

        #[test]
        fn prop_f64(v in proptest::num::f64::ANY) {
            round_trip(&C::Float8, &Value::Float64(v))?;
        }

        #[test]
        fn prop_f64_bits(bits in any::<u64>()) {
            round_trip(&C::Float8, &Value::Float64(f64::from_bits(bits)))?;
        }

        #[test]
        fn prop_f32(bits in any::<u32>()) {
            round_trip(&C::Float4, &Value::Float32(f32::from_bits(bits)))?;
        }

        #[test]
        fn prop_decimal(neg in any::<bool>(), i in "[0-9]{1,30}", f in "[0-9]{0,20}") {
            let s = format!("{}{}{}{}", if neg { "-" } else { "" }, i, if f.is_empty() { "" } else { "." }, f);
            round_trip(&C::Numeric, &fin(&s))?;
        }

        #[test]
        fn prop_date(d in pg_days()) {
            round_trip(&C::Date, &Value::Date(Date::Days(d)))?;
        }

        #[test]
        fn prop_time(t in 0..=MICROS_PER_DAY) {
            round_trip(&C::Time, &Value::Time(t))?;
        }

        #[test]
        fn prop_timestamp(m in pg_micros()) {
            round_trip(&C::Timestamp, &Value::Timestamp(Timestamp::Micros(m)))?;
            round_trip(&C::Timestamptz, &Value::TimestampTz(Timestamp::Micros(m)))?;
        }

        #[test]
        fn prop_timestamptz_offset(m in -100_000_000_000_000_000i64..100_000_000_000_000_000, off in -57_599i64..=57_599) {
            // Render in a zone `off` seconds east of UTC, as PostgreSQL would.
            let local = m + off * MICROS_PER_SECOND;
            let mut s = String::new();
            let bc = write_ymd(&mut s, local.div_euclid(MICROS_PER_DAY));
            s.push(' ');
            write_time_of_day(&mut s, local.rem_euclid(MICROS_PER_DAY));
            let a = off.abs();
            let _ = write!(s, "{}{:02}", if off < 0 { '-' } else { '+' }, a / 3600);
            if a % 3600 != 0 {
                let _ = write!(s, ":{:02}", a / 60 % 60);
            }
            if a % 60 != 0 {
                let _ = write!(s, ":{:02}", a % 60);
            }
            if bc {
                s.push_str(" BC");
            }
            let got = decode_text(&C::Timestamptz, &s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got, Value::TimestampTz(Timestamp::Micros(m)), "{}", s);
        }

        #[test]
        fn prop_interval(months in any::<i32>(), days in any::<i32>(), micros in any::<i64>()) {
            round_trip(&C::Interval, &iv(months, days, micros))?;
        }

        #[test]
        fn prop_uuid(b in any::<[u8; 16]>()) {
            round_trip(&C::Uuid, &Value::Uuid(b))?;
        }

        #[test]
        fn prop_bytes(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            round_trip(&C::Bytea, &Value::Bytes(b))?;
        }

        #[test]
        fn prop_text_array(items in proptest::collection::vec(text_elem(), 0..10)) {
            round_trip(&arr(C::Text), &Value::Array(items))?;
        }

        #[test]
        fn prop_text_array_2d(rows in 1usize..4, cols in 1usize..4, pool in proptest::collection::vec(text_elem(), 16)) {
            let v = Value::Array(
                (0..rows)
                    .map(|r| Value::Array((0..cols).map(|c| pool[r * 4 + c].clone()).collect()))
                    .collect(),
            );
            round_trip(&arr(C::Text), &v)?;
        }

        #[test]
        fn prop_other_arrays(ds in proptest::collection::vec(pg_days(), 0..6), ms in proptest::collection::vec(pg_micros(), 0..6), ivs in proptest::collection::vec((any::<i32>(), any::<i32>(), any::<i64>()), 0..6), fs in proptest::collection::vec(proptest::num::f64::ANY, 0..6), bs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..4)) {
            round_trip(&arr(C::Date), &Value::Array(ds.into_iter().map(|d| Value::Date(Date::Days(d))).collect()))?;
            round_trip(&arr(C::Timestamptz), &Value::Array(ms.into_iter().map(|m| Value::TimestampTz(Timestamp::Micros(m))).collect()))?;
            round_trip(&arr(C::Interval), &Value::Array(ivs.into_iter().map(|(a, b, c)| iv(a, b, c)).collect()))?;
            round_trip(&arr(C::Float8), &Value::Array(fs.into_iter().map(Value::Float64).collect()))?;
            round_trip(&arr(C::Bytea), &Value::Array(bs.into_iter().map(Value::Bytes).collect()))?;
        }

        #[test]
        fn prop_decode_never_panics(class_ix in 0usize..19, s in "\\PC{0,40}") {
            let classes = [
                C::Bool, C::Int2, C::Int4, C::Int8, C::Oid, C::Numeric, C::Float4, C::Float8,
                C::Bytea, C::Date, C::Time, C::Timestamp, C::Timestamptz, C::Interval, C::Uuid,
                arr(C::Text), arr(C::Int4), arr(arr(C::Date)), C::Text,
            ];
            let _ = decode_text(&classes[class_ix], &s);
        }
    }
}
