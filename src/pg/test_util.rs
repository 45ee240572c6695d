//! Helpers for the PostgreSQL codec's unit tests: classes, values and decoding or
//! encoding that panics with the input in the message.

use crate::canonical::value::{
    days_from_civil, Date, Decimal, Interval, Timestamp, Value, MICROS_PER_DAY,
};
use crate::pg::limits::{MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SECOND};
use crate::pg::text_decode::decode_text;
use crate::pg::text_encode::encode_text;
use crate::pg::type_class::PgTypeClass as C;
use crate::pg::type_class::PgTypeClass;

pub(super) fn arr(c: PgTypeClass) -> PgTypeClass {
    C::Array(Box::new(c))
}

pub(super) fn dec(class: &PgTypeClass, text: &str) -> Value {
    match decode_text(class, text) {
        Ok(v) => v,
        Err(e) => panic!("decode {class:?} {text:?}: {e}"),
    }
}

pub(super) fn enc(v: &Value) -> String {
    match encode_text(v) {
        Ok(s) => s,
        Err(e) => panic!("encode {v:?}: {e}"),
    }
}

pub(super) fn ymd(y: i64, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d)
}

pub(super) fn date(y: i64, m: u32, d: u32) -> Value {
    Value::Date(Date::Days(ymd(y, m, d) as i32))
}

pub(super) fn micros(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> i64 {
    ymd(y, mo, d) * MICROS_PER_DAY
        + h * MICROS_PER_HOUR
        + mi * MICROS_PER_MINUTE
        + s * MICROS_PER_SECOND
        + us
}

pub(super) fn ts(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> Value {
    Value::Timestamp(Timestamp::Micros(micros(y, mo, d, h, mi, s, us)))
}

pub(super) fn tstz(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> Value {
    Value::TimestampTz(Timestamp::Micros(micros(y, mo, d, h, mi, s, us)))
}

pub(super) fn iv(months: i32, days: i32, micros: i64) -> Value {
    Value::Interval(Interval {
        months,
        days,
        micros,
    })
}

pub(super) fn text(s: &str) -> Value {
    Value::Text(s.into())
}

pub(super) fn fin(s: &str) -> Value {
    Value::Decimal(Decimal::Finite(s.into()))
}

/// Equality with floats compared by bits (any NaN equals any NaN) and decimals by
/// their normal form.
pub(super) fn same(a: &Value, b: &Value) -> bool {
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
