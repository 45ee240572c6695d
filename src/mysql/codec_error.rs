//! The errors of the MySQL value codec ([`MysqlDecodeError`], [`MysqlEncodeError`])
//! and how values are shown in them: abbreviated, binary as hex.

use crate::canonical::value::Value;
use crate::mysql::time::{show_date, show_time, show_timestamp};
use mysql_async::Value as MyValue;
use std::fmt::Write as _;

/// A binlog value that does not decode into a canonical value.
#[derive(Debug, thiserror::Error)]
pub enum MysqlDecodeError {
    #[error("column {column} ({column_type}): cannot decode binlog value {value}: {reason}")]
    Invalid {
        column: String,
        column_type: String,
        /// The binlog value, abbreviated.
        value: String,
        reason: String,
    },
    #[error(
        "column {column} ({column_type}): duplex cannot read MySQL type {data_type}: {reason}"
    )]
    UnsupportedType {
        column: String,
        column_type: String,
        data_type: String,
        reason: &'static str,
    },
    #[error(
        "column {column} ({column_type}): character set {charset:?} is not supported \
         (supported: utf8mb4, utf8mb3, ascii, latin1, ucs2, utf16, utf16le, utf32, binary)"
    )]
    UnsupportedCharset {
        column: String,
        column_type: String,
        charset: String,
    },
    #[error("rows event of table {table}: {reason}")]
    RowsEvent { table: String, reason: String },
}

/// A canonical value that a MySQL column cannot hold exactly.
#[derive(Debug, thiserror::Error)]
pub enum MysqlEncodeError {
    /// The value is of a kind the column takes, but this value does not fit.
    #[error("column {column} ({column_type}): {value} {reason}")]
    Refused {
        column: String,
        column_type: String,
        /// The offending value, abbreviated.
        value: String,
        reason: String,
    },
    /// The column type does not take values of this kind.
    #[error("column {column} ({column_type}): {value} is a {kind} value, which {reason}")]
    WrongKind {
        column: String,
        column_type: String,
        value: String,
        kind: &'static str,
        reason: String,
    },
    #[error(
        "column {column} ({column_type}): duplex cannot write MySQL type {data_type}: {reason}"
    )]
    UnsupportedType {
        column: String,
        column_type: String,
        data_type: String,
        reason: &'static str,
    },
    #[error(
        "column {column} ({column_type}): character set {charset:?} is not supported \
         (supported: utf8mb4, utf8mb3, ascii, latin1, ucs2, utf16, utf16le, utf32, binary)"
    )]
    UnsupportedCharset {
        column: String,
        column_type: String,
        charset: String,
    },
}

fn abbreviate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

pub(super) fn hex(bytes: &[u8], max: usize) -> String {
    let mut out = String::from("0x");
    for b in bytes.iter().take(max) {
        let _ = write!(out, "{b:02x}");
    }
    if bytes.len() > max {
        out.push_str("...");
    }
    out
}

/// A binlog value for an error message.
pub(super) fn show_binlog(value: &MyValue) -> String {
    match value {
        MyValue::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("{:?}", abbreviate(s, 60)),
            Err(_) => hex(b, 24),
        },
        other => abbreviate(&format!("{other:?}"), 60),
    }
}

/// A canonical value for an error message, abbreviated.
pub(super) fn show(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(v) => v.to_string(),
        Value::UInt(v) => v.to_string(),
        Value::Decimal(d) => abbreviate(&d.to_string(), 80),
        Value::Float32(v) => format!("{v:?}"),
        Value::Float64(v) => format!("{v:?}"),
        Value::Text(s) | Value::Enum(s) | Value::Json(s) => format!("{:?}", abbreviate(s, 60)),
        Value::Bytes(b) => hex(b, 24),
        Value::Date(d) => show_date(*d),
        Value::Time(t) => show_time(*t),
        Value::Timestamp(ts) => show_timestamp(*ts, false),
        Value::TimestampTz(ts) => show_timestamp(*ts, true),
        Value::Interval(iv) => format!(
            "interval {} months {} days {} microseconds",
            iv.months, iv.days, iv.micros
        ),
        Value::Uuid(b) => uuid::Uuid::from_bytes(*b).hyphenated().to_string(),
        Value::Array(items) => format!("an array of {} elements", items.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::test_util::*;

    #[test]
    fn messages_abbreviate_values() {
        let v5 = col("v", "varchar(5)", Some("utf8mb4"));
        let msg = refusal(&v5, &Value::Text("x".repeat(500)));
        assert!(msg.len() < 200, "{msg}");
    }
}
