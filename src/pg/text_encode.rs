//! Canonical values to PostgreSQL input text ([`encode_text`]).
//!
//! duplex writes to PostgreSQL through text parameters cast to the column type
//! (`$1::text::<type>`), so every value crosses the wire in PostgreSQL's text
//! syntax. The tests here also hold encoding and decoding to each other: every value
//! written reads back as itself (property tests here; the live check against a
//! server is a scenario of the test binary, `tests/scenarios/pg_codec.rs`).

use crate::canonical::value::{civil_from_days, Date, Interval, Timestamp, Value, MICROS_PER_DAY};
use crate::canonical::value::{write_fraction, write_hms};
use crate::pg::limits::{
    INTERVAL_NEG_INFINITY, INTERVAL_POS_INFINITY, MICROS_PER_HOUR, MICROS_PER_MINUTE,
    MICROS_PER_SECOND, PG_DATE_MAX_DAYS, PG_DATE_MIN_DAYS, PG_TS_MIN_MICROS,
};
use crate::pg::text_array::{array_shape, write_array};
use std::fmt::Write as _;

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

fn no_nul<'a>(s: &'a str, kind: &'static str) -> Result<&'a str, PgEncodeError> {
    if s.contains('\0') {
        Err(PgEncodeError::NulCharacter { kind })
    } else {
        Ok(s)
    }
}

pub(super) fn write_scalar(out: &mut String, value: &Value) -> Result<(), PgEncodeError> {
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
    write_hms(out, secs.unsigned_abs());
    write_fraction(out, frac.unsigned_abs());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::value::{Date, Decimal, Timestamp, Value, MICROS_PER_DAY};
    use crate::pg::limits::{
        INTERVAL_NEG_INFINITY, INTERVAL_POS_INFINITY, MICROS_PER_HOUR, MICROS_PER_SECOND,
        PG_DATE_MAX_DAYS, PG_DATE_MIN_DAYS, PG_TS_MIN_MICROS,
    };
    use crate::pg::test_util::*;
    use crate::pg::text_decode::decode_text;
    use crate::pg::type_class::PgTypeClass as C;
    use crate::pg::type_class::PgTypeClass;
    use proptest::prelude::*;

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
