//! What a PostgreSQL column stores of a canonical value: what its input function
//! would drop silently ([`lossy_into`]), round ([`rounded_by`]) or normalise
//! ([`as_stored`], [`stored_form`]).

use crate::canonical::value::{Date, Timestamp, Value, MICROS_PER_DAY};
use crate::pg::text_decode::decode_text;
use crate::pg::text_encode::encode_text;
use crate::pg::type_class::PgTypeClass;

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

/// Why a PostgreSQL column of `class` with type modifier `typmod` (-1: none)
/// would round `v` on assignment, which PostgreSQL does without an error:
/// `numeric(p,s)` keeps s fractional digits, `timestamp(p)`, `timestamptz(p)`
/// and `time(p)` keep p fractional-second digits, `real` and `double
/// precision` keep what their binary precision holds. `None`: stored
/// exactly. MySQL's encoder refuses the same values.
pub fn rounded_by(class: &PgTypeClass, typmod: i32, v: &Value) -> Option<String> {
    use crate::canonical::value::{Decimal, Timestamp, Value};
    use crate::pg::type_class::PgTypeClass as C;
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
            let need = crate::canonical::value::fraction_digits(micros) as i32;
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
    use crate::canonical::value::Value;
    use crate::pg::type_class::PgTypeClass as C;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_util::*;

    use crate::canonical::value::{Date, Decimal, Timestamp, Value, MICROS_PER_DAY};
    use crate::pg::type_class::PgTypeClass as C;
    use crate::pg::type_class::PgTypeClass;

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
}
