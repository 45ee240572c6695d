//! Engine-independent typed values.
//!
//! Every row change that duplex moves is expressed in these values, so that the
//! PostgreSQL and MySQL sources and sinks meet in one vocabulary. A value keeps
//! enough information to be written back exactly (for example a decimal keeps the
//! digits it arrived with), while [`super::encode`] defines when two values *mean*
//! the same thing.

use std::fmt;

/// Microseconds per day, for time and timestamp arithmetic.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// One column value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    /// Signed integers of every width (smallint, int, bigint, MySQL TINYINT..BIGINT).
    Int(i64),
    /// Unsigned integers that may exceed `i64` (MySQL BIGINT UNSIGNED).
    UInt(u64),
    /// Exact decimal.
    Decimal(Decimal),
    /// Single precision float (PG `real`, MySQL `FLOAT`).
    Float32(#[serde(with = "exact::float32")] f32),
    /// Double precision float (PG `double precision`, MySQL `DOUBLE`).
    Float64(#[serde(with = "exact::float64")] f64),
    Text(#[serde(with = "exact::text")] String),
    Bytes(#[serde(with = "exact::bytes")] Vec<u8>),
    Date(Date),
    /// Time of day, or a MySQL duration: microseconds, may be negative or exceed 24 h.
    Time(i64),
    /// Timestamp without time zone: microseconds since 1970-01-01 00:00:00.
    Timestamp(Timestamp),
    /// Timestamp with time zone, canonical in UTC: microseconds since the Unix epoch.
    TimestampTz(Timestamp),
    Interval(Interval),
    Uuid([u8; 16]),
    /// JSON document as text (PG json/jsonb, MySQL JSON).
    Json(#[serde(with = "exact::text")] String),
    /// One-dimensional array of scalars; nested arrays carry further dimensions.
    Array(Vec<Value>),
    /// Enum label.
    Enum(#[serde(with = "exact::text")] String),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// About how many bytes the value holds in memory: for sizing pages of
    /// rows read in bulk, not an exact figure.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Value>()
            + match self {
                Value::Text(s) | Value::Json(s) | Value::Enum(s) => s.len(),
                Value::Decimal(Decimal::Finite(s)) => s.len(),
                Value::Bytes(b) => b.len(),
                Value::Array(items) => items.iter().map(Value::approx_bytes).sum(),
                _ => 0,
            }
    }

    /// Short name of the value's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::UInt(_) => "uint",
            Value::Decimal(_) => "decimal",
            Value::Float32(_) => "float32",
            Value::Float64(_) => "float64",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Interval(_) => "interval",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "json",
            Value::Array(_) => "array",
            Value::Enum(_) => "enum",
        }
    }
}

/// An exact decimal number kept as text, plus the special values PostgreSQL's
/// `numeric` knows. DECIMAL(65, s) does not fit any fixed-width Rust decimal, and
/// keeping the digits as they arrived means a value is written back exactly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Decimal {
    /// Validated `[-]digits[.digits]` (no exponent, no leading `+`).
    Finite(String),
    NaN,
    PosInfinity,
    NegInfinity,
}

impl Decimal {
    /// Parse a decimal written as `[+-]digits[.digits]` or with an exponent
    /// (`1.5e3`), or one of `NaN`, `Infinity`, `-Infinity`.
    pub fn parse(s: &str) -> Option<Decimal> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "nan" => return Some(Decimal::NaN),
            "infinity" | "+infinity" | "inf" => return Some(Decimal::PosInfinity),
            "-infinity" | "-inf" => return Some(Decimal::NegInfinity),
            _ => {}
        }
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], t[i + 1..].parse::<i64>().ok()?),
            None => (t, 0),
        };
        let (negative, digits) = match mantissa.as_bytes().first()? {
            b'-' => (true, &mantissa[1..]),
            b'+' => (false, &mantissa[1..]),
            _ => (false, mantissa),
        };
        let (int_part, frac_part) = match digits.find('.') {
            Some(i) => (&digits[..i], &digits[i + 1..]),
            None => (digits, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        if exponent == 0 {
            let int_part = if int_part.is_empty() { "0" } else { int_part };
            let mut out = String::with_capacity(t.len() + 1);
            if negative {
                out.push('-');
            }
            out.push_str(int_part);
            if !frac_part.is_empty() {
                out.push('.');
                out.push_str(frac_part);
            }
            return Some(Decimal::Finite(out));
        }
        // Shift the decimal point by the exponent.
        if exponent.unsigned_abs() > 100_000 {
            return None;
        }
        let all: String = format!("{int_part}{frac_part}");
        let point = int_part.len() as i64 + exponent;
        let (i, f) = if point <= 0 {
            (
                "0".to_string(),
                format!("{}{}", "0".repeat((-point) as usize), all),
            )
        } else if point as usize >= all.len() {
            (
                format!("{}{}", all, "0".repeat(point as usize - all.len())),
                String::new(),
            )
        } else {
            (
                all[..point as usize].to_string(),
                all[point as usize..].to_string(),
            )
        };
        let mut out = String::new();
        if negative {
            out.push('-');
        }
        out.push_str(&i);
        if !f.is_empty() {
            out.push('.');
            out.push_str(&f);
        }
        Some(Decimal::Finite(out))
    }

    /// The value with leading integer zeros and trailing fraction zeros removed and
    /// `-0` folded to `0`: two decimals are equal exactly when their normal forms are.
    pub fn normalized(&self) -> String {
        match self {
            Decimal::NaN => "NaN".into(),
            Decimal::PosInfinity => "Infinity".into(),
            Decimal::NegInfinity => "-Infinity".into(),
            Decimal::Finite(s) => {
                let (negative, body) = match s.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, s.as_str()),
                };
                let (int_part, frac_part) = match body.find('.') {
                    Some(i) => (&body[..i], &body[i + 1..]),
                    None => (body, ""),
                };
                let int_part = int_part.trim_start_matches('0');
                let frac_part = frac_part.trim_end_matches('0');
                let int_part = if int_part.is_empty() { "0" } else { int_part };
                let is_zero = int_part == "0" && frac_part.is_empty();
                let mut out = String::new();
                if negative && !is_zero {
                    out.push('-');
                }
                out.push_str(int_part);
                if !frac_part.is_empty() {
                    out.push('.');
                    out.push_str(frac_part);
                }
                out
            }
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decimal::Finite(s) => f.write_str(s),
            Decimal::NaN => f.write_str("NaN"),
            Decimal::PosInfinity => f.write_str("Infinity"),
            Decimal::NegInfinity => f.write_str("-Infinity"),
        }
    }
}

/// A calendar date: days since 1970-01-01 (proleptic Gregorian), or ±infinity
/// (PostgreSQL's `infinity` / `-infinity`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Date {
    NegInfinity,
    Days(i32),
    PosInfinity,
}

/// A point in time: microseconds since 1970-01-01 00:00:00, or ±infinity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Timestamp {
    NegInfinity,
    Micros(i64),
    PosInfinity,
}

/// A PostgreSQL-style interval: months, days and microseconds are kept apart
/// because they do not convert into each other exactly.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

/// Convert days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// Year 0 is 1 BC. Howard Hinnant's `civil_from_days`, valid for every i32 day.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Microseconds in a second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// Fractional-second digits a number of microseconds needs (0..=6).
pub fn fraction_digits(micros: i64) -> u32 {
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

/// Write `HH:MM:SS` for `secs` seconds (hours unbounded, at least two digits).
pub fn write_hms(out: &mut String, secs: u64) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// Write `.ffffff` without trailing zeros; nothing for 0.
pub fn write_fraction(out: &mut String, frac_micros: u64) {
    if frac_micros != 0 {
        let digits = format!("{frac_micros:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// Inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in a month of the proleptic Gregorian calendar.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// The serialized form of values (quarantined changes, parked conflicts,
/// initial-sync progress): exact, and storable in any JSON column, including
/// PostgreSQL's `jsonb`, which refuses `\u0000` in strings.
///
/// - text holding a NUL character: `{"b64": "<base64 of its UTF-8>"}`
///   (any other text: a plain JSON string);
/// - bytes: a base64 string (a quarter of the size of an array of numbers;
///   a 1 MB value stays well inside jsonb's limits);
/// - NaN and infinite floats: the strings `"NaN"`, `"Infinity"`, `"-Infinity"`
///   (serde_json writes them as `null`, which would read back as nothing).
///
/// Reading accepts the older plain forms too (text always a string, bytes an
/// array of numbers), so records written before stay readable.
mod exact {
    use base64::Engine;
    use serde::de::{self, MapAccess, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub mod text {
        use super::*;

        pub fn serialize<S: Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
            if s.contains('\0') {
                use serde::ser::SerializeMap;
                let mut m = ser.serialize_map(Some(1))?;
                m.serialize_entry("b64", &B64.encode(s.as_bytes()))?;
                m.end()
            } else {
                ser.serialize_str(s)
            }
        }

        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = String;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a string or {"b64": base64}"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
                Ok(v)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
                let mut out = None;
                while let Some(k) = map.next_key::<String>()? {
                    if k == "b64" {
                        let encoded: String = map.next_value()?;
                        let bytes = B64.decode(encoded.as_bytes()).map_err(de::Error::custom)?;
                        out = Some(String::from_utf8(bytes).map_err(de::Error::custom)?);
                    } else {
                        return Err(de::Error::unknown_field(&k, &["b64"]));
                    }
                }
                out.ok_or_else(|| de::Error::missing_field("b64"))
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
            d.deserialize_any(TextVisitor)
        }
    }

    pub mod bytes {
        use super::*;

        pub fn serialize<S: Serializer>(b: &[u8], ser: S) -> Result<S::Ok, S::Error> {
            ser.serialize_str(&B64.encode(b))
        }

        struct BytesVisitor;

        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string or an array of bytes")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                B64.decode(v.as_bytes()).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            d.deserialize_any(BytesVisitor)
        }
    }

    fn special(v: f64) -> Option<&'static str> {
        if v.is_nan() {
            Some("NaN")
        } else if v == f64::INFINITY {
            Some("Infinity")
        } else if v == f64::NEG_INFINITY {
            Some("-Infinity")
        } else {
            None
        }
    }

    struct FloatVisitor;

    impl<'de> Visitor<'de> for FloatVisitor {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a number, "NaN", "Infinity" or "-Infinity""#)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            match v {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
            }
        }
    }

    pub mod float64 {
        use super::*;

        pub fn serialize<S: Serializer>(v: &f64, ser: S) -> Result<S::Ok, S::Error> {
            match special(*v) {
                Some(s) => ser.serialize_str(s),
                None => ser.serialize_f64(*v),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            d.deserialize_any(FloatVisitor)
        }
    }

    pub mod float32 {
        use super::*;

        pub fn serialize<S: Serializer>(v: &f32, ser: S) -> Result<S::Ok, S::Error> {
            match special(f64::from(*v)) {
                Some(s) => ser.serialize_str(s),
                None => ser.serialize_f32(*v),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
            // serde_json reads an f32 written as its shortest digits back
            // through f64 exactly: the nearest f32 of that f64 is the original.
            d.deserialize_any(FloatVisitor).map(|v| v as f32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_values_round_trip_and_fit_jsonb() {
        let values = vec![
            Value::Text("a\0b\0".into()),
            Value::Text("plain".into()),
            Value::Text(String::new()),
            Value::Json(r#"{"k": "x\u0000"}"#.into()),
            Value::Enum("\0".into()),
            Value::Bytes(vec![0, 1, 255, 0]),
            Value::Bytes(Vec::new()),
            Value::Float64(f64::INFINITY),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(-0.0),
            Value::Float64(5e-324),
            Value::Float32(f32::INFINITY),
            Value::Float32(-3.402_823_5e38),
            Value::Float32(0.1),
            Value::Array(vec![Value::Text("x\0".into()), Value::Null]),
        ];
        for v in values {
            let json = serde_json::to_string(&v).unwrap_or_default();
            // jsonb refuses a string holding NUL; nothing else in JSON text.
            let tree: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            assert!(!holds_nul(&tree), "{v:?} -> {json}");
            let back: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            match (&v, &back) {
                (Value::Float64(a), Value::Float64(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                (Value::Float32(a), Value::Float32(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                _ => assert_eq!(v, back, "{json}"),
            }
        }
        let nan: Value = serde_json::from_str(
            &serde_json::to_string(&Value::Float64(f64::NAN)).unwrap_or_default(),
        )
        .unwrap_or(Value::Null);
        assert!(matches!(nan, Value::Float64(f) if f.is_nan()));
        // A 1 MB text with a NUL character: base64, a third bigger, no escape.
        let big = format!("{}\0", "é".repeat(500_000));
        let json = serde_json::to_string(&Value::Text(big.clone())).unwrap_or_default();
        assert!(json.len() < big.len() * 3 / 2, "{}", json.len());
        assert_eq!(
            serde_json::from_str::<Value>(&json).ok(),
            Some(Value::Text(big))
        );
    }

    fn holds_nul(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(a) => a.iter().any(holds_nul),
            serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
            _ => false,
        }
    }

    #[test]
    fn older_serialized_forms_still_read() {
        let old: Value = serde_json::from_str(r#"{"Bytes":[0,1,255]}"#).unwrap_or(Value::Null);
        assert_eq!(old, Value::Bytes(vec![0, 1, 255]));
        let old: Value = serde_json::from_str(r#"{"Text":"x"}"#).unwrap_or(Value::Null);
        assert_eq!(old, Value::Text("x".into()));
        let old: Value = serde_json::from_str(r#"{"Float64":1.5}"#).unwrap_or(Value::Null);
        assert_eq!(old, Value::Float64(1.5));
        let old: Value = serde_json::from_str(r#"{"Float64":2}"#).unwrap_or(Value::Null);
        assert_eq!(old, Value::Float64(2.0));
    }

    #[test]
    fn civil_round_trip() {
        for days in [-719_528i64, -1, 0, 1, 10_957, 2_932_896, -2_451_545] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{days} -> {y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(10_957), (2000, 1, 1));
    }

    #[test]
    fn decimal_parse_and_normalize() {
        let d = Decimal::parse("001.500").unwrap_or(Decimal::NaN);
        assert_eq!(d, Decimal::Finite("001.500".into()));
        assert_eq!(d.normalized(), "1.5");
        assert_eq!(
            Decimal::parse("-0.000").map(|d| d.normalized()),
            Some("0".into())
        );
        assert_eq!(
            Decimal::parse("1.5e3").map(|d| d.normalized()),
            Some("1500".into())
        );
        assert_eq!(
            Decimal::parse("15e-3").map(|d| d.normalized()),
            Some("0.015".into())
        );
        assert_eq!(Decimal::parse("NaN"), Some(Decimal::NaN));
        assert_eq!(Decimal::parse("-Infinity"), Some(Decimal::NegInfinity));
        assert_eq!(Decimal::parse("1.2.3"), None);
        assert_eq!(Decimal::parse(""), None);
        assert_eq!(Decimal::parse("abc"), None);
    }
}
