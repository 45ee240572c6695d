//! The PostgreSQL value codec (`duplex::pg::types`) against a real server: values
//! encoded to text, cast by PostgreSQL through `::text::<type>` and printed under the
//! replication session's settings, decode back to the original value.

use duplex::canonical::value::{
    days_from_civil, Date, Decimal, Interval, Timestamp, Value, MICROS_PER_DAY,
};
use duplex::localdb::pg::LocalPostgres;
use duplex::pg::text_decode::decode_text;
use duplex::pg::text_encode::encode_text;
use duplex::pg::type_class::PgTypeClass;
use proptest::prelude::*;
use PgTypeClass as C;

/// PostgreSQL's date and timestamp range ends (first date 4714-11-24 BC and last
/// 5874897-12-31, in days since 1970-01-01), as the codec's own limits.
const PG_DATE_MIN_DAYS: i64 = -2_440_588;
const PG_DATE_MAX_DAYS: i64 = 2_145_042_905;
const PG_TS_MIN_MICROS: i64 = PG_DATE_MIN_DAYS * MICROS_PER_DAY;

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

/// Midnight of a date, in microseconds since 1970.
fn micros_at(y: i64, mo: u32, d: u32) -> i64 {
    ymd(y, mo, d) * MICROS_PER_DAY
}

fn iv(months: i32, days: i32, micros: i64) -> Value {
    Value::Interval(Interval {
        months,
        days,
        micros,
    })
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

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> String {
    let bytes: Vec<u8> = (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    String::from_utf8(bytes).unwrap_or_default()
}

fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    (0..n)
        .filter_map(|_| strategy.new_tree(&mut runner).ok().map(|t| t.current()))
        .collect()
}

/// Encode values, have PostgreSQL cast each through `::text::<type>` and print it
/// under the replication session's settings, and decode what it printed: the
/// result must be the original value. Starts a throwaway PostgreSQL (and
/// fails, never skips, when the server binaries are missing).
#[test]
fn live_postgres_round_trip() {
    let pg = match LocalPostgres::start(Default::default()) {
        Ok(pg) => pg,
        Err(e) => panic!("this test needs PostgreSQL: {e}"),
    };
    let n = 300;
    let mut sets: Vec<(&str, PgTypeClass, Vec<Value>)> = vec![
        (
            "bigint",
            C::Int8,
            sample(any::<i64>(), n)
                .into_iter()
                .map(Value::Int)
                .collect(),
        ),
        (
            "double precision",
            C::Float8,
            sample(proptest::num::f64::ANY, n)
                .into_iter()
                .map(Value::Float64)
                .collect(),
        ),
        (
            "double precision",
            C::Float8,
            sample(any::<u64>(), n)
                .into_iter()
                .map(|b| Value::Float64(f64::from_bits(b)))
                .collect(),
        ),
        (
            "real",
            C::Float4,
            sample(any::<u32>(), n)
                .into_iter()
                .map(|b| Value::Float32(f32::from_bits(b)))
                .collect(),
        ),
        (
            "text",
            C::Text,
            sample(tricky_string(), n)
                .into_iter()
                .map(Value::Text)
                .collect(),
        ),
        (
            "bytea",
            C::Bytea,
            sample(proptest::collection::vec(any::<u8>(), 0..40), n)
                .into_iter()
                .map(Value::Bytes)
                .collect(),
        ),
        (
            "date",
            C::Date,
            sample(pg_days(), n)
                .into_iter()
                .map(|d| Value::Date(Date::Days(d)))
                .collect(),
        ),
        (
            "time",
            C::Time,
            sample(0..=MICROS_PER_DAY, n)
                .into_iter()
                .map(Value::Time)
                .collect(),
        ),
        (
            "timestamp",
            C::Timestamp,
            sample(pg_micros(), n)
                .into_iter()
                .map(|m| Value::Timestamp(Timestamp::Micros(m)))
                .collect(),
        ),
        (
            "timestamptz",
            C::Timestamptz,
            sample(pg_micros(), n)
                .into_iter()
                .map(|m| Value::TimestampTz(Timestamp::Micros(m)))
                .collect(),
        ),
        (
            "interval",
            C::Interval,
            sample((any::<i32>(), any::<i32>(), any::<i64>()), n)
                .into_iter()
                .map(|(a, b, c)| iv(a, b, c))
                .collect(),
        ),
        (
            "interval",
            C::Interval,
            sample(
                (-30i32..30, -40i32..40, -100_000_000_000i64..100_000_000_000),
                n,
            )
            .into_iter()
            .map(|(a, b, c)| iv(a, b, c))
            .collect(),
        ),
        (
            "uuid",
            C::Uuid,
            sample(any::<[u8; 16]>(), n)
                .into_iter()
                .map(Value::Uuid)
                .collect(),
        ),
        (
            "text[]",
            arr(C::Text),
            sample(proptest::collection::vec(text_elem(), 0..8), n)
                .into_iter()
                .map(Value::Array)
                .collect(),
        ),
        (
            "text[]",
            arr(C::Text),
            sample(proptest::collection::vec(text_elem(), 6), n)
                .into_iter()
                .map(|v| {
                    Value::Array(vec![
                        Value::Array(v[..3].to_vec()),
                        Value::Array(v[3..].to_vec()),
                    ])
                })
                .collect(),
        ),
        (
            "timestamptz[]",
            arr(C::Timestamptz),
            sample(proptest::collection::vec(pg_micros(), 0..4), n)
                .into_iter()
                .map(|v| {
                    Value::Array(
                        v.into_iter()
                            .map(|m| Value::TimestampTz(Timestamp::Micros(m)))
                            .collect(),
                    )
                })
                .collect(),
        ),
        (
            "date[]",
            arr(C::Date),
            sample(proptest::collection::vec(pg_days(), 0..4), n)
                .into_iter()
                .map(|v| Value::Array(v.into_iter().map(|d| Value::Date(Date::Days(d))).collect()))
                .collect(),
        ),
        (
            "interval[]",
            arr(C::Interval),
            sample(
                proptest::collection::vec((any::<i32>(), any::<i32>(), any::<i64>()), 0..4),
                n,
            )
            .into_iter()
            .map(|v| Value::Array(v.into_iter().map(|(a, b, c)| iv(a, b, c)).collect()))
            .collect(),
        ),
        (
            "float8[]",
            arr(C::Float8),
            sample(proptest::collection::vec(proptest::num::f64::ANY, 0..4), n)
                .into_iter()
                .map(|v| Value::Array(v.into_iter().map(Value::Float64).collect()))
                .collect(),
        ),
        (
            "bytea[]",
            arr(C::Bytea),
            sample(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 0..4),
                n,
            )
            .into_iter()
            .map(|v| Value::Array(v.into_iter().map(Value::Bytes).collect()))
            .collect(),
        ),
    ];
    let edge_days = [
        PG_DATE_MIN_DAYS as i32,
        PG_DATE_MAX_DAYS as i32,
        ymd(0, 2, 29) as i32,
        ymd(-1, 12, 31) as i32,
        -1,
        0,
    ];
    sets.push((
        "date",
        C::Date,
        edge_days
            .iter()
            .map(|d| Value::Date(Date::Days(*d)))
            .chain([
                Value::Date(Date::PosInfinity),
                Value::Date(Date::NegInfinity),
            ])
            .collect(),
    ));
    let edge_ts = [PG_TS_MIN_MICROS, i64::MAX, -1, 0, micros_at(0, 1, 1) - 1];
    sets.push((
        "timestamptz",
        C::Timestamptz,
        edge_ts
            .iter()
            .map(|m| Value::TimestampTz(Timestamp::Micros(*m)))
            .chain([Value::TimestampTz(Timestamp::PosInfinity)])
            .collect(),
    ));
    sets.push((
        "timestamp",
        C::Timestamp,
        edge_ts
            .iter()
            .map(|m| Value::Timestamp(Timestamp::Micros(*m)))
            .chain([Value::Timestamp(Timestamp::NegInfinity)])
            .collect(),
    ));
    sets.push((
        "interval",
        C::Interval,
        vec![
            iv(0, 0, i64::MIN),
            iv(0, 0, i64::MAX),
            iv(i32::MIN, i32::MIN, i64::MIN + 1),
            iv(i32::MAX, i32::MAX, i64::MAX - 1),
            iv(14, 3, -1),
            iv(0, 0, 0),
        ],
    ));
    sets.push((
        "double precision",
        C::Float8,
        [
            0.0,
            -0.0,
            1e30,
            1e-7,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e15,
            1e16,
            0.1,
        ]
        .into_iter()
        .map(Value::Float64)
        .collect(),
    ));
    sets.push((
        "real",
        C::Float4,
        [
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::NAN,
            16_777_217.0,
            0.1,
        ]
        .into_iter()
        .map(Value::Float32)
        .collect(),
    ));
    sets.push((
        "numeric",
        C::Numeric,
        [
            "0",
            "-0.00",
            "00012.3400",
            "-99999999999999999999999999.000001",
            "NaN",
            "Infinity",
            "-Infinity",
        ]
        .into_iter()
        .filter_map(Decimal::parse)
        .map(Value::Decimal)
        .collect(),
    ));
    sets.push((
        "boolean",
        C::Bool,
        vec![Value::Bool(true), Value::Bool(false)],
    ));
    sets.push((
        "time",
        C::Time,
        vec![Value::Time(0), Value::Time(MICROS_PER_DAY), Value::Time(1)],
    ));
    sets.push((
        "json",
        C::Json,
        vec![
            Value::Json("{\"a\": [1, \"x\\\"\"]}".into()),
            Value::Json("null".into()),
        ],
    ));

    let mut sql = String::from(
        "SET DateStyle='ISO, MDY'; SET IntervalStyle='iso_8601'; SET TimeZone='UTC'; \
         SET extra_float_digits=1; SET bytea_output=hex;\n",
    );
    let mut expected = Vec::new();
    for (ty, class, values) in &sets {
        for v in values {
            sql.push_str(&format!(
                "select encode(convert_to(convert_from(decode('{}','hex'),'UTF8')::{ty}::text,'UTF8'),'hex');\n",
                hex(&enc(v))
            ));
            expected.push((class.clone(), v.clone()));
        }
    }
    let stdout = match pg.psql("postgres", &sql) {
        Ok(out) => out,
        Err(e) => panic!("psql: {e}"),
    };
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len());
    for ((class, v), line) in expected.iter().zip(&lines) {
        let pg = unhex(line);
        let back = dec(class, &pg);
        assert!(
            same(&back, v),
            "{v:?} -> {:?} -> PG {pg:?} -> {back:?}",
            enc(v)
        );
    }
    eprintln!("live check: {} values", expected.len());
}
