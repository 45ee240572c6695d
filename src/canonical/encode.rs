//! The one canonical byte encoding of values and rows.
//!
//! Two values encode to the same bytes exactly when they mean the same thing,
//! whichever engine they came from: a decimal is encoded in its normal form, an
//! unsigned integer that fits `i64` as a signed one, every NaN alike, JSON with its
//! object keys sorted. The marker checksum, conflict comparison and the parity check
//! are all crc32 over this encoding, so they agree with each other by construction.

use super::record::{Row, TableSchema};
use super::value::{Date, Timestamp, Value};

mod tag {
    pub const NULL: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const INT: u8 = 2;
    pub const UINT: u8 = 3;
    pub const DECIMAL: u8 = 4;
    pub const FLOAT32: u8 = 5;
    pub const FLOAT64: u8 = 6;
    pub const TEXT: u8 = 7;
    pub const BYTES: u8 = 8;
    pub const DATE: u8 = 9;
    pub const TIME: u8 = 10;
    pub const TIMESTAMP: u8 = 11;
    pub const TIMESTAMPTZ: u8 = 12;
    pub const INTERVAL: u8 = 13;
    pub const UUID: u8 = 14;
    pub const JSON: u8 = 15;
    pub const ARRAY: u8 = 16;
    pub const ENUM: u8 = 17;
}

fn put_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths above u32::MAX cannot occur for a database value (PG caps a value at 1 GB).
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn timestamp_bits(ts: &Timestamp) -> i64 {
    match ts {
        Timestamp::NegInfinity => i64::MIN,
        Timestamp::Micros(us) => *us,
        Timestamp::PosInfinity => i64::MAX,
    }
}

/// JSON in a form independent of whitespace and key order. Text that is not valid
/// JSON is kept as it is, so that a bad document still has a stable encoding.
fn normalized_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        // serde_json's map is ordered by key (no `preserve_order` feature), so
        // serialising sorts the keys of every object.
        Ok(v) => v.to_string(),
        Err(_) => text.to_string(),
    }
}

/// Append the canonical encoding of `value` to `out`.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(tag::NULL),
        Value::Bool(b) => {
            out.push(tag::BOOL);
            out.push(u8::from(*b));
        }
        Value::Int(i) => {
            out.push(tag::INT);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::UInt(u) => match i64::try_from(*u) {
            Ok(i) => {
                out.push(tag::INT);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Err(_) => {
                out.push(tag::UINT);
                out.extend_from_slice(&u.to_be_bytes());
            }
        },
        Value::Decimal(d) => {
            out.push(tag::DECIMAL);
            put_len_prefixed(out, d.normalized().as_bytes());
        }
        Value::Float32(f) => {
            out.push(tag::FLOAT32);
            let bits = if f.is_nan() {
                f32::NAN.to_bits()
            } else {
                f.to_bits()
            };
            out.extend_from_slice(&bits.to_be_bytes());
        }
        Value::Float64(f) => {
            out.push(tag::FLOAT64);
            let bits = if f.is_nan() {
                f64::NAN.to_bits()
            } else {
                f.to_bits()
            };
            out.extend_from_slice(&bits.to_be_bytes());
        }
        Value::Text(s) => {
            out.push(tag::TEXT);
            put_len_prefixed(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(tag::BYTES);
            put_len_prefixed(out, b);
        }
        Value::Date(d) => {
            out.push(tag::DATE);
            let days = match d {
                Date::NegInfinity => i32::MIN,
                Date::Days(n) => *n,
                Date::PosInfinity => i32::MAX,
            };
            out.extend_from_slice(&days.to_be_bytes());
        }
        Value::Time(us) => {
            out.push(tag::TIME);
            out.extend_from_slice(&us.to_be_bytes());
        }
        Value::Timestamp(ts) => {
            out.push(tag::TIMESTAMP);
            out.extend_from_slice(&timestamp_bits(ts).to_be_bytes());
        }
        Value::TimestampTz(ts) => {
            out.push(tag::TIMESTAMPTZ);
            out.extend_from_slice(&timestamp_bits(ts).to_be_bytes());
        }
        Value::Interval(iv) => {
            out.push(tag::INTERVAL);
            out.extend_from_slice(&iv.months.to_be_bytes());
            out.extend_from_slice(&iv.days.to_be_bytes());
            out.extend_from_slice(&iv.micros.to_be_bytes());
        }
        Value::Uuid(u) => {
            out.push(tag::UUID);
            out.extend_from_slice(u);
        }
        Value::Json(j) => {
            out.push(tag::JSON);
            put_len_prefixed(out, normalized_json(j).as_bytes());
        }
        Value::Array(items) => {
            out.push(tag::ARRAY);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                encode_value(item, out);
            }
        }
        Value::Enum(label) => {
            out.push(tag::ENUM);
            put_len_prefixed(out, label.as_bytes());
        }
    }
}

/// Canonical encoding of a row: its columns ordered by name, each as its name
/// followed by its value. Ordering by name makes the encoding independent of the
/// physical column order, which differs between the two sides of a link.
///
/// Returns `None` when a column's value is not in the image (unchanged TOAST).
pub fn encode_row(schema: &TableSchema, row: &Row) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(16 * schema.columns.len());
    encode_row_in_parts(schema, row, |part| out.extend_from_slice(part))?;
    Some(out)
}

/// [`encode_row`] handed out a column at a time (its name and value), so a
/// checksum needs no buffer for the whole row.
fn encode_row_in_parts(schema: &TableSchema, row: &Row, part: impl FnMut(&[u8])) -> Option<()> {
    encode_columns_in_parts(schema, row, |_| true, part)
}

/// [`encode_row_in_parts`] over the columns `keep` accepts.
fn encode_columns_in_parts(
    schema: &TableSchema,
    row: &Row,
    keep: impl Fn(usize) -> bool,
    mut part: impl FnMut(&[u8]),
) -> Option<()> {
    // A column a mapping fills on insert belongs to the target alone: later
    // changes never carry it, so it is not part of the synced content.
    let mut order: Vec<usize> = (0..schema.columns.len())
        .filter(|&i| schema.columns[i].type_name != crate::mapping::FILLED_COLUMN_TYPE && keep(i))
        .collect();
    order.sort_unstable_by(|&a, &b| schema.columns[a].name.cmp(&schema.columns[b].name));
    let mut column = Vec::with_capacity(64);
    for i in order {
        let value = row.0.get(i)?.as_ref()?;
        column.clear();
        put_len_prefixed(&mut column, schema.columns[i].name.as_bytes());
        encode_value(value, &mut column);
        part(&column);
    }
    Some(())
}

/// crc32 over [`encode_row`]: the row's content checksum. Computed for
/// every row a few times on its way (the source's version, the decided
/// write, its check), so it streams the encoding instead of building it.
pub fn row_checksum(schema: &TableSchema, row: &Row) -> Option<u32> {
    let mut crc = crc32fast::Hasher::new();
    encode_row_in_parts(schema, row, |part| crc.update(part))?;
    Some(crc.finalize())
}

/// Which columns a row checksum covers ([`row_checksum`]): crc32 over
/// their names, sorted (a marker records it beside the row's checksum).
pub fn shape_checksum(schema: &TableSchema) -> u32 {
    let mut names: Vec<&str> = schema
        .columns
        .iter()
        .filter(|c| c.type_name != crate::mapping::FILLED_COLUMN_TYPE)
        .map(|c| c.name.as_str())
        .collect();
    names.sort_unstable();
    let mut crc = crc32fast::Hasher::new();
    let mut buf = Vec::with_capacity(64);
    for n in names {
        buf.clear();
        put_len_prefixed(&mut buf, n.as_bytes());
        crc.update(&buf);
    }
    crc.finalize()
}

/// Does `row` have the content whose checksum is `crc` (a marker's)? Also
/// when the row has gained columns holding NULL since the checksum was
/// taken: a nullable column added to the table (on both sites) is NULL in
/// every existing row, and those rows are no edit behind duplex's back. An
/// added column comes last in the table, so only trailing NULL columns are
/// left out (a NULL the row held before counts as it did).
pub fn content_matches(schema: &TableSchema, row: &Row, crc: u32) -> bool {
    if row_checksum(schema, row) == Some(crc) {
        return true;
    }
    let n = schema.columns.len().min(row.0.len());
    let is_null = |i: usize| matches!(row.0.get(i), Some(Some(Value::Null)));
    let mut kept = n;
    while kept > 0 && is_null(kept - 1) && !schema.key.contains(&(kept - 1)) {
        kept -= 1;
        let mut without = crc32fast::Hasher::new();
        if encode_columns_in_parts(schema, row, |i| i < kept, |part| without.update(part)).is_some()
            && without.finalize() == crc
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::record::{ColumnSchema, TableName};
    use crate::canonical::value::Decimal;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(v, &mut out);
        out
    }

    #[test]
    fn equal_meaning_encodes_equal() {
        assert_eq!(enc(&Value::UInt(5)), enc(&Value::Int(5)));
        assert_ne!(enc(&Value::UInt(u64::MAX)), enc(&Value::Int(-1)));
        assert_eq!(
            enc(&Value::Decimal(Decimal::Finite("1.50".into()))),
            enc(&Value::Decimal(Decimal::Finite("01.5".into())))
        );
        assert_eq!(
            enc(&Value::Float64(f64::NAN)),
            enc(&Value::Float64(-f64::NAN))
        );
        assert_eq!(
            enc(&Value::Json(r#"{"b":1, "a":[1,2]}"#.into())),
            enc(&Value::Json(r#"{"a":[1,2],"b":1}"#.into()))
        );
    }

    #[test]
    fn different_values_encode_differently() {
        assert_ne!(enc(&Value::Null), enc(&Value::Text(String::new())));
        assert_ne!(
            enc(&Value::Text("a".into())),
            enc(&Value::Bytes(b"a".to_vec()))
        );
        assert_ne!(enc(&Value::Float64(0.0)), enc(&Value::Float64(-0.0)));
        // Length prefixes keep adjacent strings from running into each other.
        assert_ne!(
            enc(&Value::Array(vec![
                Value::Text("ab".into()),
                Value::Text("c".into())
            ])),
            enc(&Value::Array(vec![
                Value::Text("a".into()),
                Value::Text("bc".into())
            ]))
        );
    }

    #[test]
    fn row_checksum_ignores_physical_column_order() {
        let s1 = TableSchema {
            table: TableName::new("public", "t"),
            columns: vec![
                ColumnSchema {
                    name: "id".into(),
                    type_name: "int".into(),
                },
                ColumnSchema {
                    name: "name".into(),
                    type_name: "text".into(),
                },
            ],
            key: vec![0],
        };
        let s2 = TableSchema {
            table: TableName::new("public", "t"),
            columns: vec![s1.columns[1].clone(), s1.columns[0].clone()],
            key: vec![1],
        };
        let r1 = Row(vec![Some(Value::Int(1)), Some(Value::Text("x".into()))]);
        let r2 = Row(vec![Some(Value::Text("x".into())), Some(Value::Int(1))]);
        assert_eq!(row_checksum(&s1, &r1), row_checksum(&s2, &r2));
        let r3 = Row(vec![Some(Value::Int(1)), None]);
        assert_eq!(row_checksum(&s1, &r3), None);
        // The streamed checksum is the checksum of the whole encoding (what
        // markers written before it carry).
        let whole = encode_row(&s1, &r1).map(|bytes| crc32fast::hash(&bytes));
        assert_eq!(row_checksum(&s1, &r1), whole);
        assert_eq!(
            encode_row(&s2, &r2),
            Some(
                [
                    &[0, 0, 0, 2][..],
                    b"id",
                    &{
                        let mut v = Vec::new();
                        encode_value(&Value::Int(1), &mut v);
                        v
                    },
                    &[0, 0, 0, 4],
                    b"name",
                    &{
                        let mut v = Vec::new();
                        encode_value(&Value::Text("x".into()), &mut v);
                        v
                    },
                ]
                .concat()
            ),
            "columns by name, each its name and value"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            // Zero padding and the sign of zero never change what a decimal means.
            #[test]
            fn decimal_padding_keeps_the_encoding(int in "[0-9]{1,40}", frac in "[0-9]{0,30}", lead in 0usize..4, trail in 0usize..4, neg: bool) {
                let sign = if neg { "-" } else { "" };
                let plain = format!("{sign}{int}{}{frac}", if frac.is_empty() { "" } else { "." });
                let padded = format!("{sign}{}{int}.{frac}{}", "0".repeat(lead), "0".repeat(trail));
                let a = Decimal::parse(&plain).map(Value::Decimal);
                let b = Decimal::parse(&padded).map(Value::Decimal);
                prop_assert!(a.is_some() && b.is_some());
                prop_assert_eq!(enc(&a.unwrap_or(Value::Null)), enc(&b.unwrap_or(Value::Null)));
            }

            // Two different numbers never encode alike.
            #[test]
            fn different_integers_encode_differently(x: i64, y: i64) {
                prop_assume!(x != y);
                prop_assert_ne!(enc(&Value::Int(x)), enc(&Value::Int(y)));
            }

            // An unsigned value means the same as the signed one of the same number.
            #[test]
            fn unsigned_and_signed_agree(x in 0i64..=i64::MAX) {
                prop_assert_eq!(enc(&Value::UInt(x as u64)), enc(&Value::Int(x)));
            }

            // Strings are length-prefixed: no two different lists of strings collide.
            #[test]
            fn string_lists_are_unambiguous(a in proptest::collection::vec(".{0,4}", 0..4), b in proptest::collection::vec(".{0,4}", 0..4)) {
                prop_assume!(a != b);
                let va = Value::Array(a.into_iter().map(Value::Text).collect());
                let vb = Value::Array(b.into_iter().map(Value::Text).collect());
                prop_assert_ne!(enc(&va), enc(&vb));
            }
        }
    }

    #[test]
    fn a_column_added_with_nulls_keeps_the_content() {
        let column = |name: &str| ColumnSchema {
            name: name.into(),
            type_name: "int".into(),
        };
        let before = TableSchema {
            table: TableName::new("public", "t"),
            columns: vec![column("id"), column("note")],
            key: vec![0],
        };
        let row = Row(vec![Some(Value::Int(1)), Some(Value::Text("a".into()))]);
        let crc = row_checksum(&before, &row).expect("checksum");
        let mut after = before.clone();
        after.columns.push(column("extra"));
        let mut grown = row.clone();
        grown.0.push(Some(Value::Null));
        assert!(
            content_matches(&after, &grown, crc),
            "a NULL in a new column"
        );
        grown.0[2] = Some(Value::Int(7));
        assert!(
            !content_matches(&after, &grown, crc),
            "a value in it is an edit"
        );
        let mut edited = row.clone();
        edited.0[1] = Some(Value::Null);
        assert!(
            !content_matches(&before, &edited, crc),
            "a value set to NULL is an edit"
        );
        // A NULL the row held before is part of its content.
        let with_null = Row(vec![Some(Value::Int(1)), Some(Value::Null)]);
        let crc = row_checksum(&before, &with_null).expect("checksum");
        let mut grown = with_null.clone();
        grown.0.push(Some(Value::Null));
        assert!(
            content_matches(&after, &grown, crc),
            "its own NULL kept, the new one left out"
        );
    }
}
