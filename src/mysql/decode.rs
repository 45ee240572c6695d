//! MySQL values to canonical values: a binlog row image's values
//! ([`decode_binlog_value`]) and a query result's ([`decode_query_value`]). Anything
//! that cannot be read exactly is an error naming the column, never a guess.
//!
//! What the binlog carries (checked against MariaDB 10.11; MySQL 8 paths are marked):
//!
//! * integers arrive signed unless the table map's optional metadata says otherwise;
//!   the column's `unsigned` flag from information_schema decides here, by width;
//! * DECIMAL arrives as decimal text with the column's scale (`1.50`);
//! * TIMESTAMP(n) arrives as epoch text `secs[.ffffff]`, DATETIME(n) and DATE as
//!   broken-down dates, ENUM as its 1-based index and SET as a little-endian bitmask;
//! * CHAR and BINARY arrive with their padding stripped (trailing spaces, trailing
//!   zero bytes): BINARY(n) is padded back to n bytes here;
//! * MariaDB's UUID type arrives like BINARY(16): RFC 4122 byte order, trailing zero
//!   bytes stripped (padded back here);
//! * MariaDB's JSON is LONGTEXT with a `json_valid` check: the text;
//!   MySQL 8's JSON is binary JSONB, converted to text by mysql_common;
//! * TIME(n) arrives raw from [`RowsEventReader`](super::rows_event::RowsEventReader).

use crate::canonical::value::{
    days_from_civil, days_in_month, Date, Decimal, Timestamp, Value, MICROS_PER_DAY,
};
use crate::mysql::charset::{charset_of, decode_charset, Charset};
use crate::mysql::codec_error::{hex, show_binlog, MysqlDecodeError};
use crate::mysql::column::MysqlColumn;
use crate::mysql::time::MICROS_PER_SECOND;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::Value as MyValue;

/// A value read with an ordinary query (binary protocol) -> canonical value,
/// the same value [`decode_binlog_value`] gives for the binlog's form of it.
/// The forms differ for ENUM (label, not index), SET (labels, not bitmask)
/// and TIMESTAMP (a date-time in the session's zone, which duplex's sessions
/// set to UTC, not epoch seconds); the rest is shared.
pub fn decode_query_value(col: &MysqlColumn, value: MyValue) -> Result<Value, MysqlDecodeError> {
    if matches!(value, MyValue::NULL) {
        return Ok(Value::Null);
    }
    let invalid = |value: String, reason: String| MysqlDecodeError::Invalid {
        column: col.name.clone(),
        column_type: col.column_type.clone(),
        value,
        reason,
    };
    match (col.data_type.as_str(), &value) {
        ("enum", MyValue::Bytes(b)) => {
            let label = String::from_utf8_lossy(b).into_owned();
            if col.enum_values.contains(&label) {
                Ok(Value::Enum(label))
            } else {
                Err(invalid(label, "not one of the ENUM's labels".into()))
            }
        }
        ("set", MyValue::Bytes(b)) => Ok(Value::Text(String::from_utf8_lossy(b).into_owned())),
        ("timestamp", MyValue::Date(y, mo, d, h, mi, s, us)) => {
            let days = ymd_days(*y, *mo, *d).map_err(|r| invalid(show_binlog(&value), r))?;
            let micros = days * MICROS_PER_DAY
                + (i64::from(*h) * 3600 + i64::from(*mi) * 60 + i64::from(*s)) * MICROS_PER_SECOND
                + i64::from(*us);
            Ok(Value::TimestampTz(Timestamp::Micros(micros)))
        }
        // A query's text arrives in the session's character set, utf8mb4
        // (mysql_async's default, which every duplex session keeps), not in
        // the column's own as in the binlog: decoded as the column's, a
        // latin1 'é' read back as 'Ã©'.
        (
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext",
            MyValue::Bytes(b),
        ) if charset_of(col.charset_name()).is_some_and(|cs| cs != Charset::Binary) => {
            String::from_utf8(b.clone()).map(Value::Text).map_err(|_| {
                invalid(
                    String::from_utf8_lossy(b).into_owned(),
                    "not valid UTF-8 (the session's character set)".into(),
                )
            })
        }
        _ => decode_binlog_value(col, &BinlogValue::Value(value)),
    }
}

/// Binlog value (as decoded by mysql_common with the table map) -> canonical value.
/// `col` gives signedness, charset and enum/set values; the binlog's own signedness
/// handling is not relied on. Read rows through [`RowsEventReader`](crate::mysql::rows_event::RowsEventReader) so that TIME
/// values are right.
pub fn decode_binlog_value(
    col: &MysqlColumn,
    value: &BinlogValue<'_>,
) -> Result<Value, MysqlDecodeError> {
    let invalid = |value: String, reason: String| MysqlDecodeError::Invalid {
        column: col.name.clone(),
        column_type: col.column_type.clone(),
        value,
        reason,
    };
    let dt = col.data_type.as_str();
    if matches!(dt, "time" | "datetime" | "timestamp")
        && col.column_type.contains("mariadb-5.3")
        && col.fsp() > 0
    {
        // MariaDB's pre-10.1 high-resolution TIME(n)/DATETIME(n)/TIMESTAMP(n): the table
        // map gives the legacy type without its length, so no binlog reader can find
        // the value's bytes (nor those of the columns after it).
        return Err(MysqlDecodeError::UnsupportedType {
            column: col.name.clone(),
            column_type: col.column_type.clone(),
            data_type: col.data_type.clone(),
            reason: "MariaDB 5.3's high-resolution temporal format cannot be read from the \
                     binlog; convert the table with ALTER TABLE ... FORCE while \
                     mysql56_temporal_format=ON",
        });
    }
    let v = match value {
        BinlogValue::Value(v) => v,
        // MySQL 8 only: JSON columns are binary JSONB in the binlog.
        BinlogValue::Jsonb(_) => {
            if col.data_type != "json" {
                return Err(invalid(
                    "<binary JSON>".into(),
                    format!("a {} column does not carry JSON", col.data_type),
                ));
            }
            return match MyValue::try_from(value.clone()) {
                Ok(MyValue::Bytes(b)) => String::from_utf8(b)
                    .map(Value::Json)
                    .map_err(|_| invalid("<binary JSON>".into(), "not UTF-8".into())),
                Ok(other) => Err(invalid(show_binlog(&other), "not JSON text".into())),
                Err(e) => Err(invalid("<binary JSON>".into(), e.to_string())),
            };
        }
        // MySQL 8 only (binlog_row_value_options=PARTIAL_JSON).
        BinlogValue::JsonDiff(_) => {
            return Err(invalid(
                "<partial JSON update>".into(),
                "partial JSON updates carry only the changed paths; turn \
                 binlog_row_value_options=PARTIAL_JSON off"
                    .into(),
            ))
        }
    };
    if matches!(v, MyValue::NULL) {
        return Ok(Value::Null);
    }
    let unexpected = |what: &str| invalid(show_binlog(v), format!("expected {what}"));
    match dt {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => {
            let width = col.int_bits().unwrap_or(64);
            let fits = match *v {
                MyValue::Int(i) => {
                    width == 64 || (i >= -(1i64 << (width - 1)) && i < (1i64 << width))
                }
                MyValue::UInt(u) => width == 64 || u < (1u64 << width),
                _ => return Err(unexpected("an integer")),
            };
            if !fits {
                return Err(invalid(
                    show_binlog(v),
                    format!("does not fit {width} bits"),
                ));
            }
            let bits = match *v {
                MyValue::Int(i) => i as u64,
                MyValue::UInt(u) => u,
                _ => 0,
            };
            let shift = 64 - width;
            Ok(if col.unsigned {
                Value::UInt((bits << shift) >> shift)
            } else {
                Value::Int(((bits << shift) as i64) >> shift)
            })
        }
        "year" => {
            let year = match v {
                MyValue::Int(i) => *i,
                MyValue::UInt(u) => i64::try_from(*u).unwrap_or(-1),
                MyValue::Bytes(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| unexpected("a year"))?,
                _ => return Err(unexpected("a year")),
            };
            // The binlog stores YEAR as year - 1900 with 0 for the zero year 0000,
            // which mysql_common prints as 1900 (not itself a valid YEAR).
            match year {
                1900 | 0 => Ok(Value::Int(0)),
                1901..=2155 => Ok(Value::Int(year)),
                _ => Err(invalid(show_binlog(v), "outside YEAR's range".into())),
            }
        }
        "bit" => match v {
            MyValue::Bytes(b) => Ok(Value::Bytes(b.clone())),
            _ => Err(unexpected("the bytes of a BIT value")),
        },
        "decimal" | "numeric" => match v {
            MyValue::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .and_then(Decimal::parse)
                .filter(|d| matches!(d, Decimal::Finite(_)))
                .map(Value::Decimal)
                .ok_or_else(|| unexpected("decimal text")),
            _ => Err(unexpected("decimal text")),
        },
        "float" => match v {
            MyValue::Float(f) => Ok(Value::Float32(*f)),
            _ => Err(unexpected("a FLOAT")),
        },
        "double" | "real" => match v {
            MyValue::Double(f) => Ok(Value::Float64(*f)),
            _ => Err(unexpected("a DOUBLE")),
        },
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "json" => {
            let MyValue::Bytes(b) = v else {
                return Err(unexpected("string bytes"));
            };
            let cs_name = col.charset_name();
            let cs = charset_of(cs_name).ok_or_else(|| MysqlDecodeError::UnsupportedCharset {
                column: col.name.clone(),
                column_type: col.column_type.clone(),
                charset: cs_name.to_string(),
            })?;
            if cs == Charset::Binary {
                return Ok(Value::Bytes(b.clone()));
            }
            let s = decode_charset(cs, b).map_err(|reason| invalid(show_binlog(v), reason))?;
            Ok(if dt == "json" {
                Value::Json(s)
            } else {
                Value::Text(s)
            })
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            let MyValue::Bytes(b) = v else {
                return Err(unexpected("bytes"));
            };
            let mut b = b.clone();
            if dt == "binary" {
                // The binlog strips BINARY(n)'s trailing zero bytes; the column holds n.
                let n = col.char_max_len.unwrap_or(0) as usize;
                if b.len() > n {
                    return Err(invalid(show_binlog(v), format!("longer than {n} bytes")));
                }
                b.resize(n, 0);
            }
            Ok(Value::Bytes(b))
        }
        // MariaDB 10.7+ UUID: 16 bytes in RFC 4122 order in the row image.
        "uuid" => match v {
            MyValue::Bytes(b) if b.len() <= 16 => {
                let mut raw = [0u8; 16];
                raw[..b.len()].copy_from_slice(b);
                Ok(Value::Uuid(raw))
            }
            MyValue::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .map(|u| Value::Uuid(*u.as_bytes()))
                .ok_or_else(|| unexpected("16 UUID bytes")),
            _ => Err(unexpected("16 UUID bytes")),
        },
        "enum" => {
            let index = match *v {
                MyValue::Int(i) => i,
                MyValue::UInt(u) => i64::try_from(u).unwrap_or(-1),
                _ => return Err(unexpected("an ENUM index")),
            };
            if index == 0 {
                return Err(invalid(
                    show_binlog(v),
                    "ENUM index 0 is the '' error value MySQL stores for an invalid \
                     label outside strict mode"
                        .into(),
                ));
            }
            usize::try_from(index - 1)
                .ok()
                .and_then(|i| col.enum_values.get(i))
                .map(|label| Value::Enum(label.clone()))
                .ok_or_else(|| {
                    invalid(
                        show_binlog(v),
                        format!("ENUM index beyond the {} labels", col.enum_values.len()),
                    )
                })
        }
        "set" => {
            let MyValue::Bytes(mask) = v else {
                return Err(unexpected("a SET bitmask"));
            };
            let mut labels = Vec::new();
            for (byte_index, byte) in mask.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) != 0 {
                        let i = byte_index * 8 + bit;
                        let label = col.enum_values.get(i).ok_or_else(|| {
                            invalid(
                                hex(mask, 8),
                                format!("SET bit {i} beyond the {} members", col.enum_values.len()),
                            )
                        })?;
                        labels.push(label.as_str());
                    }
                }
            }
            Ok(Value::Text(labels.join(",")))
        }
        "date" => match *v {
            MyValue::Date(y, m, d, 0, 0, 0, 0) => ymd_days(y, m, d)
                .and_then(|days| i32::try_from(days).map_err(|_| "out of range".to_string()))
                .map(|days| Value::Date(Date::Days(days)))
                .map_err(|reason| invalid(show_binlog(v), reason)),
            _ => Err(unexpected("a DATE")),
        },
        "datetime" => match *v {
            MyValue::Date(y, mo, d, h, mi, s, us) => {
                let days = ymd_days(y, mo, d).map_err(|r| invalid(show_binlog(v), r))?;
                if h > 23 || mi > 59 || s > 59 || us > 999_999 {
                    return Err(invalid(show_binlog(v), "time of day out of range".into()));
                }
                let micros = days * MICROS_PER_DAY
                    + (i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)) * MICROS_PER_SECOND
                    + i64::from(us);
                Ok(Value::Timestamp(Timestamp::Micros(micros)))
            }
            _ => Err(unexpected("a DATETIME")),
        },
        "timestamp" => {
            let micros = match v {
                // TIMESTAMP2: epoch seconds as text, `secs` or `secs.ffffff`.
                MyValue::Bytes(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(parse_epoch_text)
                    .ok_or_else(|| unexpected("epoch seconds"))?,
                // The pre-5.6 TIMESTAMP type: epoch seconds as an integer.
                MyValue::Int(secs) => secs * MICROS_PER_SECOND,
                MyValue::UInt(secs) => i64::try_from(*secs)
                    .ok()
                    .and_then(|s| s.checked_mul(MICROS_PER_SECOND))
                    .ok_or_else(|| unexpected("epoch seconds"))?,
                _ => return Err(unexpected("epoch seconds")),
            };
            if micros == 0 {
                return Err(invalid(
                    show_binlog(v),
                    "the zero TIMESTAMP '0000-00-00 00:00:00' has no canonical value \
                     (strict mode with NO_ZERO_DATE keeps it out)"
                        .into(),
                ));
            }
            Ok(Value::TimestampTz(Timestamp::Micros(micros)))
        }
        "time" => match *v {
            MyValue::Time(neg, days, h, m, s, us) => {
                let micros = ((i64::from(days) * 24 + i64::from(h)) * 3600
                    + i64::from(m) * 60
                    + i64::from(s))
                    * MICROS_PER_SECOND
                    + i64::from(us);
                Ok(Value::Time(if neg { -micros } else { micros }))
            }
            _ => Err(unexpected("a TIME")),
        },
        _ => Err(MysqlDecodeError::UnsupportedType {
            column: col.name.clone(),
            column_type: col.column_type.clone(),
            data_type: col.data_type.clone(),
            reason: "no canonical mapping for this type",
        }),
    }
}

/// Days since 1970 of a binlog date; zero dates and zero parts are refused.
fn ymd_days(y: u16, m: u8, d: u8) -> Result<i64, String> {
    if y == 0 && m == 0 && d == 0 {
        return Err(
            "the zero date '0000-00-00' has no canonical value (strict mode with \
                    NO_ZERO_DATE keeps it out)"
                .into(),
        );
    }
    if !(1..=12).contains(&m) || d == 0 || u32::from(d) > days_in_month(i64::from(y), u32::from(m))
    {
        return Err(format!(
            "{y:04}-{m:02}-{d:02} is not a calendar date (zero month or day?)"
        ));
    }
    Ok(days_from_civil(i64::from(y), u32::from(m), u32::from(d)))
}

/// `secs` or `secs.f{1,6}` as microseconds.
fn parse_epoch_text(s: &str) -> Option<i64> {
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let mut secs: i64 = secs.parse().ok()?;
    if secs < 0 {
        // mysql_common reads the 4 unsigned bytes into an i32; MariaDB 11.5+ extends
        // TIMESTAMP to 2106 with the top bit, which then shows up negative.
        secs += 1 << 32;
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut us: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..6 {
        us *= 10;
    }
    Some(secs * MICROS_PER_SECOND + us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::test_util::*;

    use crate::mysql::codec_error::MysqlDecodeError;
    use crate::mysql::param::encode_param;
    use crate::mysql::time::MICROS_PER_SECOND;

    #[test]
    fn integers_reinterpreted_by_width() {
        let tu = col("a", "tinyint(3) unsigned", None);
        assert_eq!(dec(&tu, MyValue::Int(-1)), Value::UInt(255));
        assert_eq!(dec(&tu, MyValue::Int(200)), Value::UInt(200));
        let ts = col("a", "tinyint(4)", None);
        assert_eq!(dec(&ts, MyValue::Int(-128)), Value::Int(-128));
        assert_eq!(dec(&ts, MyValue::Int(255)), Value::Int(-1));
        let bu = col("a", "bigint(20) unsigned", None);
        assert_eq!(dec(&bu, MyValue::Int(-1)), Value::UInt(u64::MAX));
        assert_eq!(dec(&bu, MyValue::UInt(u64::MAX)), Value::UInt(u64::MAX));
        let mu = col("a", "mediumint(8) unsigned", None);
        assert_eq!(dec(&mu, MyValue::Int(-1)), Value::UInt(16_777_215));
        let bs = col("a", "bigint(20)", None);
        assert_eq!(dec(&bs, MyValue::Int(i64::MIN)), Value::Int(i64::MIN));
        assert!(decode_binlog_value(&ts, &BinlogValue::Value(MyValue::Int(256))).is_err());
        let b1 = col("a", "tinyint(1)", None);
        assert_eq!(dec(&b1, MyValue::Int(1)), Value::Int(1));
    }

    #[test]
    fn text_decoding_by_charset() {
        let l1 = col("l", "text", Some("latin1"));
        assert_eq!(
            dec(&l1, MyValue::Bytes(vec![0x63, 0xE9, 0x80, 0x81])),
            Value::Text("cé€\u{81}".into())
        );
        let m4 = col("m", "varchar(10)", Some("utf8mb4"));
        assert_eq!(
            dec(&m4, MyValue::Bytes("😀".as_bytes().to_vec())),
            Value::Text("😀".into())
        );
        assert!(decode_binlog_value(&m4, &BinlogValue::Value(MyValue::Bytes(vec![0xFF]))).is_err());
        let u16c = col("u", "varchar(10)", Some("utf16"));
        assert_eq!(
            dec(&u16c, MyValue::Bytes(vec![0xD8, 0x3D, 0xDE, 0x00])),
            Value::Text("😀".into())
        );
        let u32c = col("u", "varchar(10)", Some("utf32"));
        assert_eq!(
            dec(&u32c, MyValue::Bytes(vec![0, 0, 0, 0x41])),
            Value::Text("A".into())
        );
        assert!(matches!(
            decode_binlog_value(
                &col("g", "text", Some("greek")),
                &BinlogValue::Value(MyValue::Bytes(vec![0x41]))
            ),
            Err(MysqlDecodeError::UnsupportedCharset { .. })
        ));
    }

    #[test]
    fn binary_and_uuid() {
        let b16 = col("b", "binary(16)", None);
        assert_eq!(b16.charset.as_deref(), Some("binary"));
        assert_eq!(
            dec(&b16, MyValue::Bytes(b"x".to_vec())),
            Value::Bytes({
                let mut v = b"x".to_vec();
                v.resize(16, 0);
                v
            })
        );
        let u = uuid::Uuid::parse_str("6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap_or_default();
        assert_eq!(
            enc(&b16, &Value::Uuid(*u.as_bytes())),
            MyValue::Bytes(u.as_bytes().to_vec())
        );
        assert_eq!(
            enc(
                &b16,
                &Value::Text("6BA7B810-9DAD-11D1-80B4-00C04FD430C8".into())
            ),
            MyValue::Bytes(u.as_bytes().to_vec())
        );
        assert!(encode_param(&b16, &Value::Bytes(vec![1, 2, 3])).is_err());
        assert!(encode_param(&b16, &Value::Text("nope".into())).is_err());
        let vb = col("vb", "varbinary(3)", None);
        assert!(encode_param(&vb, &Value::Bytes(vec![1, 2, 3])).is_ok());
        assert!(encode_param(&vb, &Value::Bytes(vec![1, 2, 3, 4])).is_err());
        let uc = col("u", "uuid", None);
        assert_eq!(
            dec(&uc, MyValue::Bytes(u.as_bytes().to_vec())),
            Value::Uuid(*u.as_bytes())
        );
        assert_eq!(
            enc(&uc, &Value::Uuid(*u.as_bytes())),
            MyValue::Bytes(b"6ba7b810-9dad-11d1-80b4-00c04fd430c8".to_vec())
        );
        let c36 = col("c", "char(36)", Some("ascii"));
        assert_eq!(
            enc(&c36, &Value::Uuid(*u.as_bytes())),
            MyValue::Bytes(b"6ba7b810-9dad-11d1-80b4-00c04fd430c8".to_vec())
        );
    }

    #[test]
    fn enum_set_year_bit() {
        let e = col("e", "enum('a','b')", None);
        assert_eq!(dec(&e, MyValue::Int(2)), Value::Enum("b".into()));
        assert!(decode_binlog_value(&e, &BinlogValue::Value(MyValue::Int(0))).is_err());
        assert!(decode_binlog_value(&e, &BinlogValue::Value(MyValue::Int(3))).is_err());
        assert_eq!(
            refusal(&e, &Value::Text("x".into())),
            "column e (enum('a','b')): \"x\" is not one of the labels of enum('a','b')"
        );
        assert_eq!(
            enc(&e, &Value::Enum("a".into())),
            MyValue::Bytes(b"a".to_vec())
        );
        let s = col("s", "set('p','q','r')", None);
        assert_eq!(dec(&s, MyValue::Bytes(vec![5])), Value::Text("p,r".into()));
        assert_eq!(dec(&s, MyValue::Bytes(vec![0])), Value::Text(String::new()));
        assert!(decode_binlog_value(&s, &BinlogValue::Value(MyValue::Bytes(vec![8]))).is_err());
        assert_eq!(
            enc(&s, &Value::Text("r,p".into())),
            MyValue::Bytes(b"p,r".to_vec())
        );
        assert!(encode_param(&s, &Value::Text("p,p".into())).is_err());
        assert!(encode_param(&s, &Value::Text("p,x".into())).is_err());
        let y = col("y", "year(4)", None);
        assert_eq!(dec(&y, MyValue::Bytes(b"1900".to_vec())), Value::Int(0));
        assert_eq!(dec(&y, MyValue::Bytes(b"2155".to_vec())), Value::Int(2155));
        assert!(encode_param(&y, &Value::Int(1900)).is_err());
        let b = col("b", "bit(8)", None);
        assert_eq!(b.bit_width(), 8);
        assert_eq!(
            enc(&b, &Value::Bytes(vec![0xA5])),
            MyValue::Bytes(vec![0xA5])
        );
        let b3 = col("b", "bit(3)", None);
        assert!(encode_param(&b3, &Value::Bytes(vec![0x08])).is_err());
        assert_eq!(enc(&b3, &Value::Int(7)), MyValue::UInt(7));
        assert!(encode_param(&b3, &Value::Int(8)).is_err());
    }

    #[test]
    fn temporal_decoding() {
        let d = col("d", "date", None);
        assert_eq!(
            dec(&d, MyValue::Date(1000, 1, 1, 0, 0, 0, 0)),
            Value::Date(Date::Days(days(1000, 1, 1) as i32))
        );
        let msg = decode_binlog_value(&d, &BinlogValue::Value(MyValue::Date(0, 0, 0, 0, 0, 0, 0)))
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(msg.contains("zero date"), "{msg}");
        assert!(decode_binlog_value(
            &d,
            &BinlogValue::Value(MyValue::Date(2020, 2, 30, 0, 0, 0, 0))
        )
        .is_err());
        let dt = col("dt", "datetime(6)", None);
        assert_eq!(
            dec(&dt, MyValue::Date(9999, 12, 31, 23, 59, 59, 999_999)),
            Value::Timestamp(Timestamp::Micros(ts_micros(
                9999, 12, 31, 23, 59, 59, 999_999
            )))
        );
        let ts = col("ts", "timestamp(6)", None);
        assert_eq!(
            dec(&ts, MyValue::Bytes(b"2147483647.500000".to_vec())),
            Value::TimestampTz(Timestamp::Micros(2_147_483_647_500_000))
        );
        assert_eq!(
            dec(&ts, MyValue::Bytes(b"1".to_vec())),
            Value::TimestampTz(Timestamp::Micros(1_000_000))
        );
        assert!(
            decode_binlog_value(&ts, &BinlogValue::Value(MyValue::Bytes(b"0".to_vec()))).is_err()
        );
        assert_eq!(
            parse_epoch_text("-2147483648"),
            Some((1i64 << 31) * MICROS_PER_SECOND)
        );
        let t = col("t", "time(6)", None);
        assert_eq!(
            dec(&t, MyValue::Time(true, 34, 22, 59, 59, 1)),
            Value::Time(-(838 * 3600 + 3599) * MICROS_PER_SECOND - 1)
        );
    }
}
