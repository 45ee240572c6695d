//! MySQL/MariaDB value codec for canonical values.
//!
//! duplex reads MariaDB's (and MySQL's) binlog in ROW format through mysql_async's
//! `BinlogStream`; mysql_common turns each column of a rows event into a
//! [`BinlogValue`] using the table map. This module maps those values to [`Value`]
//! ([`decode_binlog_value`]), and canonical values to statement parameters for a
//! MySQL column ([`encode_param`]). It mirrors `pg::types`: anything that cannot be
//! read or written exactly is an error naming the column, never a guess.
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
//! * TIME(n) is decoded here, not by mysql_common: its decoder overflows (panics in
//!   debug builds, wraps in release builds) on negative TIME(1) and TIME(2) values
//!   with a fraction, and reads the legacy TIME type as unsigned. Read rows events
//!   through [`RowsEventReader`], which hands TIME columns over raw and decodes them.
//!
//! Parameters produced by [`encode_param`] assume the writing session uses the
//! `utf8mb4` connection character set (mysql_async's default) and
//! `time_zone = '+00:00'` (TIMESTAMP parameters are read in the session's zone).

use std::borrow::Cow;
use std::fmt::Write as _;

use mysql_async::binlog::events::{Event, FormatDescriptionEvent, RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::binlog::{BinlogVersion, EventType};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::Value as MyValue;

use crate::canonical::value::{
    civil_from_days, days_from_civil, days_in_month, Date, Decimal, Timestamp, Value,
    MICROS_PER_DAY,
};

// ---------------------------------------------------------------------------------
// Columns.

/// What duplex knows about one column of a MySQL table: from the binlog table map
/// (with FULL optional metadata) and from information_schema.COLUMNS.
#[derive(Debug, Clone, PartialEq)]
pub struct MysqlColumn {
    pub name: String,
    /// information_schema DATA_TYPE, lower case: "tinyint", "bigint", "decimal",
    /// "varchar", "json", "uuid", "enum", "set", "time", "datetime", "timestamp",
    /// "blob", "binary", ... MariaDB reports JSON columns as "longtext";
    /// [`MysqlColumn::load_table`] turns those into "json".
    pub data_type: String,
    /// information_schema COLUMN_TYPE: "tinyint(1)", "bigint(20) unsigned",
    /// "decimal(65,30)", "varchar(20)", "enum('a','b')", "time(3)", "binary(16)" ...
    pub column_type: String,
    pub unsigned: bool,
    /// CHARACTER_MAXIMUM_LENGTH (characters; bytes for binary strings and for the
    /// TEXT types, whose limit is in bytes).
    pub char_max_len: Option<u64>,
    /// CHARACTER_SET_NAME: "utf8mb4", "utf8mb3", "latin1", ...; "binary" for the
    /// binary string types (for which information_schema says NULL).
    pub charset: Option<String>,
    pub numeric_precision: Option<u64>,
    pub numeric_scale: Option<u64>,
    pub datetime_precision: Option<u64>,
    /// For enum and set, in definition order.
    pub enum_values: Vec<String>,
}

/// The column list of a table. A column is JSON when its DATA_TYPE says so (MySQL 8)
/// or when it is a text column with a `json_valid(col)` CHECK constraint (MariaDB's
/// JSON alias). `/*M! ... */` is run by MariaDB only: MySQL 8's CHECK_CONSTRAINTS has
/// no TABLE_NAME column, but there constraint names are unique per schema.
const LOAD_TABLE_SQL: &str = "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, \
    c.CHARACTER_MAXIMUM_LENGTH, c.CHARACTER_SET_NAME, c.NUMERIC_PRECISION, c.NUMERIC_SCALE, \
    c.DATETIME_PRECISION, \
    EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS tc \
        JOIN information_schema.CHECK_CONSTRAINTS cc \
          ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA \
         AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME /*M! AND cc.TABLE_NAME = tc.TABLE_NAME */ \
        WHERE tc.TABLE_SCHEMA = c.TABLE_SCHEMA AND tc.TABLE_NAME = c.TABLE_NAME \
          AND tc.CONSTRAINT_TYPE = 'CHECK' \
          AND cc.CHECK_CLAUSE = CONCAT('json_valid(`', REPLACE(c.COLUMN_NAME, '`', '``'), '`)')) \
    FROM information_schema.COLUMNS c \
    WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? \
    ORDER BY c.ORDINAL_POSITION";

type ColumnRow = (
    String,
    String,
    String,
    Option<u64>,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    i64,
);

impl MysqlColumn {
    /// Build the column list of a table from information_schema (one query; order by
    /// ORDINAL_POSITION). An unknown table gives an empty list.
    pub async fn load_table(
        conn: &mut mysql_async::Conn,
        schema: &str,
        table: &str,
    ) -> Result<Vec<MysqlColumn>, mysql_async::Error> {
        let rows: Vec<mysql_async::Row> = conn.exec(LOAD_TABLE_SQL, (schema, table)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (name, data_type, column_type, char_max_len, charset, prec, scale, dt_prec, json): ColumnRow =
                mysql_async::from_row_opt(row)
                    .map_err(|e| mysql_async::Error::Other(Box::new(e)))?;
            out.push(MysqlColumn::from_catalog(
                name,
                &data_type,
                column_type,
                char_max_len,
                charset,
                prec,
                scale,
                dt_prec,
                json != 0,
            ));
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn from_catalog(
        name: String,
        data_type: &str,
        column_type: String,
        char_max_len: Option<u64>,
        charset: Option<String>,
        numeric_precision: Option<u64>,
        numeric_scale: Option<u64>,
        datetime_precision: Option<u64>,
        json_check: bool,
    ) -> MysqlColumn {
        let mut data_type = data_type.to_ascii_lowercase();
        if json_check && TEXT_TYPES.contains(&data_type.as_str()) {
            data_type = "json".to_string();
        }
        let lower = column_type.to_ascii_lowercase();
        let unsigned = lower.contains(" unsigned");
        let enum_values = if data_type == "enum" || data_type == "set" {
            parse_enum_values(&column_type)
        } else {
            Vec::new()
        };
        let charset = match charset {
            Some(c) => Some(c.to_ascii_lowercase()),
            None if BINARY_TYPES.contains(&data_type.as_str()) => Some("binary".to_string()),
            None => None,
        };
        MysqlColumn {
            name,
            data_type,
            column_type,
            unsigned,
            char_max_len,
            charset,
            numeric_precision,
            numeric_scale,
            datetime_precision,
            enum_values,
        }
    }

    /// Fractional-second digits of a temporal column (0..=6).
    fn fsp(&self) -> u32 {
        self.datetime_precision.map_or(0, |p| p.min(6) as u32)
    }

    /// Width in bits of an integer column.
    fn int_bits(&self) -> Option<u32> {
        Some(match self.data_type.as_str() {
            "tinyint" => 8,
            "smallint" => 16,
            "mediumint" => 24,
            "int" | "integer" => 32,
            "bigint" => 64,
            _ => return None,
        })
    }

    /// Number of bits of a BIT(n) column.
    fn bit_width(&self) -> u32 {
        self.numeric_precision
            .map(|p| p as u32)
            .or_else(|| paren_numbers(&self.column_type).first().map(|&n| n as u32))
            .unwrap_or(1)
    }

    fn charset_name(&self) -> &str {
        self.charset.as_deref().unwrap_or("")
    }
}

const TEXT_TYPES: [&str; 6] = [
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
];
const BINARY_TYPES: [&str; 6] = [
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
];

/// Byte limit of the TEXT and BLOB types.
fn lob_byte_limit(data_type: &str) -> Option<u64> {
    Some(match data_type {
        "tinytext" | "tinyblob" => 255,
        "text" | "blob" => 65_535,
        "mediumtext" | "mediumblob" => 16_777_215,
        "longtext" | "longblob" | "json" => 4_294_967_295,
        _ => return None,
    })
}

/// The values of `enum('a','it''s')` / `set(...)` as COLUMN_TYPE prints them: single
/// quoted, `''` for a quote, and backslash escapes (`\\`, `\0`, `\n`, `\r`, `\Z`).
fn parse_enum_values(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = column_type[open + 1..].chars().peekable();
    loop {
        match chars.next() {
            Some('\'') => {}
            Some(',') | Some(' ') => continue,
            _ => break,
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    value.push('\'');
                }
                '\'' => break,
                '\\' => match chars.next() {
                    Some('0') => value.push('\0'),
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some('Z') => value.push('\u{1a}'),
                    Some(other) => value.push(other),
                    None => break,
                },
                _ => value.push(c),
            }
        }
        out.push(value);
    }
    out
}

/// The numbers inside the first parentheses of a COLUMN_TYPE: `decimal(10,2)` -> [10, 2].
fn paren_numbers(column_type: &str) -> Vec<u64> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let rest = &column_type[open + 1..];
    let inner = rest.split(')').next().unwrap_or("");
    inner
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------------
// Errors.

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

fn hex(bytes: &[u8], max: usize) -> String {
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
fn show_binlog(value: &MyValue) -> String {
    match value {
        MyValue::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("{:?}", abbreviate(s, 60)),
            Err(_) => hex(b, 24),
        },
        other => abbreviate(&format!("{other:?}"), 60),
    }
}

// ---------------------------------------------------------------------------------
// Date and time helpers.

const MICROS_PER_SECOND: i64 = 1_000_000;
/// 838:59:59.999999, the largest MySQL TIME.
const TIME_MAX_MICROS: i64 = (838 * 3600 + 59 * 60 + 59) * MICROS_PER_SECOND + 999_999;
/// 1000-01-01, the start of DATE's and DATETIME's documented range.
fn datetime_min_days() -> i64 {
    days_from_civil(1000, 1, 1)
}
/// 9999-12-31, the end of DATE's and DATETIME's range.
fn datetime_max_days() -> i64 {
    days_from_civil(9999, 12, 31)
}
/// 1970-01-01 00:00:01 UTC, the start of TIMESTAMP's range.
const TIMESTAMP_MIN_MICROS: i64 = MICROS_PER_SECOND;
/// 2038-01-19 03:14:07.999999 UTC, the end of TIMESTAMP's range.
const TIMESTAMP_MAX_MICROS: i64 = (i32::MAX as i64) * MICROS_PER_SECOND + 999_999;

/// `.ffffff` without trailing zeros; nothing for 0.
fn push_fraction(out: &mut String, frac_micros: u64) {
    if frac_micros != 0 {
        let digits = format!("{frac_micros:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

fn push_ymd(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if y <= 0 {
        let _ = write!(out, "{:04}-{m:02}-{d:02} BC", 1 - y);
    } else {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    }
}

fn show_date(d: Date) -> String {
    match d {
        Date::PosInfinity => "infinity".into(),
        Date::NegInfinity => "-infinity".into(),
        Date::Days(days) => {
            let mut out = String::new();
            push_ymd(&mut out, i64::from(days));
            out
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (sep ' ') or with 'T'.
fn push_timestamp(out: &mut String, micros: i64, sep: char) {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let tod = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = tod / MICROS_PER_SECOND;
    let _ = write!(
        out,
        "{:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        if y <= 0 { 1 - y } else { y },
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    push_fraction(out, (tod % MICROS_PER_SECOND) as u64);
    if y <= 0 {
        out.push_str(" BC");
    }
}

fn show_timestamp(ts: Timestamp, tz: bool) -> String {
    match ts {
        Timestamp::PosInfinity => "infinity".into(),
        Timestamp::NegInfinity => "-infinity".into(),
        Timestamp::Micros(m) => {
            let mut out = String::new();
            push_timestamp(&mut out, m, ' ');
            if tz {
                out.push_str("+00");
            }
            out
        }
    }
}

/// `[-]HH:MM:SS[.ffffff]`, hours unbounded (MySQL TIME style).
fn show_time(micros: i64) -> String {
    let mut out = String::new();
    if micros < 0 {
        out.push('-');
    }
    let a = micros.unsigned_abs();
    let secs = a / 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    push_fraction(&mut out, a % 1_000_000);
    out
}

/// A canonical value for an error message, abbreviated.
fn show(value: &Value) -> String {
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

// ---------------------------------------------------------------------------------
// Character sets.

/// MySQL's `latin1` is Windows-1252, with the five bytes cp1252 leaves undefined
/// (0x81, 0x8D, 0x8F, 0x90, 0x9D) mapped to the C1 controls of the same number.
const LATIN1_80_9F: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

fn latin1_char(b: u8) -> char {
    match b {
        0x80..=0x9F => LATIN1_80_9F[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

fn latin1_representable(c: char) -> bool {
    let u = u32::from(c);
    u < 0x80 || (0xA0..=0xFF).contains(&u) || LATIN1_80_9F.contains(&c)
}

/// How a supported character set stores text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8mb4,
    /// utf8mb3 (MySQL's `utf8` before 8.0.30): the Basic Multilingual Plane only.
    Utf8mb3,
    Ascii,
    Latin1,
    /// UCS-2, big-endian: the BMP only.
    Ucs2,
    Utf16,
    Utf16le,
    Utf32,
    Binary,
}

fn charset_of(name: &str) -> Option<Charset> {
    Some(match name {
        "utf8mb4" => Charset::Utf8mb4,
        "utf8mb3" | "utf8" => Charset::Utf8mb3,
        "ascii" => Charset::Ascii,
        "latin1" => Charset::Latin1,
        "ucs2" => Charset::Ucs2,
        "utf16" => Charset::Utf16,
        "utf16le" => Charset::Utf16le,
        "utf32" => Charset::Utf32,
        "binary" => Charset::Binary,
        _ => return None,
    })
}

/// Decode column bytes in a character set; `Err` carries the reason.
fn decode_charset(cs: Charset, bytes: &[u8]) -> Result<String, String> {
    let utf16 = |big_endian: bool| -> Result<String, String> {
        if bytes.len() % 2 != 0 {
            return Err("odd number of bytes for a UTF-16 string".into());
        }
        let units = bytes.chunks_exact(2).map(|c| {
            if big_endian {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| "invalid UTF-16".to_string())
    };
    match cs {
        Charset::Utf8mb4 | Charset::Utf8mb3 => String::from_utf8(bytes.to_vec())
            .map_err(|_| "not valid UTF-8 (the column's character set)".to_string()),
        Charset::Ascii => {
            if bytes.is_ascii() {
                Ok(bytes.iter().map(|&b| char::from(b)).collect())
            } else {
                Err("byte outside ASCII in an ascii column".into())
            }
        }
        Charset::Latin1 => Ok(bytes.iter().map(|&b| latin1_char(b)).collect()),
        Charset::Ucs2 | Charset::Utf16 => utf16(true),
        Charset::Utf16le => utf16(false),
        Charset::Utf32 => {
            if bytes.len() % 4 != 0 {
                return Err("byte count not a multiple of 4 for a UTF-32 string".into());
            }
            bytes
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or_else(|| "invalid UTF-32".to_string())
        }
        Charset::Binary => Err("binary data in a text column".into()),
    }
}

/// The first character a character set cannot store, with the reason.
fn charset_refusal(cs: Charset, name: &str, s: &str) -> Option<String> {
    let bad = |c: char, why: &str| Some(format!("contains U+{:04X} ({c:?}), {why}", u32::from(c)));
    match cs {
        Charset::Utf8mb4 | Charset::Utf16 | Charset::Utf16le | Charset::Utf32 | Charset::Binary => {
            None
        }
        Charset::Utf8mb3 | Charset::Ucs2 => s.chars().find(|&c| u32::from(c) > 0xFFFF).and_then(|c| {
            bad(
                c,
                &format!("outside the Basic Multilingual Plane, which {name} cannot store (use utf8mb4)"),
            )
        }),
        Charset::Ascii => s
            .chars()
            .find(|c| !c.is_ascii())
            .and_then(|c| bad(c, "which an ascii column cannot store")),
        Charset::Latin1 => s
            .chars()
            .find(|&c| !latin1_representable(c))
            .and_then(|c| bad(c, "which latin1 cannot store")),
    }
}

/// Bytes a string takes in a character set.
fn charset_len(cs: Charset, s: &str) -> u64 {
    match cs {
        Charset::Utf8mb4 | Charset::Utf8mb3 | Charset::Binary => s.len() as u64,
        Charset::Ascii | Charset::Latin1 => s.chars().count() as u64,
        Charset::Ucs2 => 2 * s.chars().count() as u64,
        Charset::Utf16 | Charset::Utf16le => s.chars().map(|c| c.len_utf16() as u64 * 2).sum(),
        Charset::Utf32 => 4 * s.chars().count() as u64,
    }
}

// ---------------------------------------------------------------------------------
// TIME from raw binlog bytes.

/// How a TIME column is stored in the row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawTime {
    /// MYSQL_TYPE_TIME2 (MySQL 5.6+ and MariaDB with mysql56_temporal_format, the
    /// default): big-endian, offset binary, `dec` fractional digits.
    Time2 { dec: u8 },
    /// MYSQL_TYPE_TIME, the legacy format (MariaDB with
    /// mysql56_temporal_format=OFF): 3 bytes little-endian, signed `±HHMMSS`.
    Legacy,
}

impl RawTime {
    fn len(self) -> u8 {
        match self {
            RawTime::Time2 { dec } => 3 + dec.min(6).div_ceil(2),
            RawTime::Legacy => 3,
        }
    }
}

/// Decode a TIME2 image (`3 + (dec+1)/2` bytes) into microseconds.
///
/// The bytes read as one big-endian integer minus half its range give a signed count
/// `±(hms << f | frac)`, where `f` is 8 bits per fraction byte, `hms` packs hours
/// (10 bits), minutes (6) and seconds (6), and `frac` counts hundredths,
/// ten-thousandths or microseconds for 1, 2 or 3 fraction bytes. (The format is
/// built so that the bytes sort like the values; a negative value's integer and
/// fraction parts borrow from each other, which is what mysql_common gets wrong.)
fn decode_time2(raw: &[u8], dec: u8) -> Result<i64, String> {
    let frac_len = usize::from(dec.min(6).div_ceil(2));
    if raw.len() != 3 + frac_len {
        return Err(format!(
            "TIME({dec}) image has {} bytes, expected {}",
            raw.len(),
            3 + frac_len
        ));
    }
    let bits = 8 * raw.len() as u32;
    let v = raw.iter().fold(0i64, |acc, &b| acc << 8 | i64::from(b));
    let signed = v - (1i64 << (bits - 1));
    let a = signed.unsigned_abs();
    let frac_bits = 8 * frac_len as u32;
    let hms = a >> frac_bits;
    let frac = a & ((1u64 << frac_bits) - 1);
    let (frac_limit, frac_scale) = match frac_len {
        0 => (1, 1),
        1 => (100, 10_000),
        2 => (10_000, 100),
        _ => (1_000_000, 1),
    };
    let (h, m, s) = ((hms >> 12) & 0x3FF, (hms >> 6) & 0x3F, hms & 0x3F);
    if hms >> 22 != 0 || m > 59 || s > 59 || frac >= frac_limit {
        return Err(format!("malformed TIME({dec}) image {}", hex(raw, 8)));
    }
    let micros = ((h * 60 + m) * 60 + s) as i64 * MICROS_PER_SECOND + (frac * frac_scale) as i64;
    Ok(if signed < 0 { -micros } else { micros })
}

/// Decode a legacy TIME image: 3 bytes little-endian, signed `±(H*10000 + M*100 + S)`.
fn decode_legacy_time(raw: &[u8]) -> Result<i64, String> {
    let [b0, b1, b2] = raw else {
        return Err(format!(
            "legacy TIME image has {} bytes, expected 3",
            raw.len()
        ));
    };
    let v = i32::from_le_bytes([*b0, *b1, *b2, if b2 & 0x80 != 0 { 0xFF } else { 0 }]);
    let a = i64::from(v.unsigned_abs());
    let (h, m, s) = (a / 10_000, a / 100 % 100, a % 100);
    if m > 59 || s > 59 {
        return Err(format!("malformed legacy TIME image {}", hex(raw, 8)));
    }
    let micros = ((h * 60 + m) * 60 + s) * MICROS_PER_SECOND;
    Ok(if v < 0 { -micros } else { micros })
}

/// Microseconds as mysql_common's TIME value.
fn my_time(micros: i64) -> MyValue {
    let a = micros.unsigned_abs();
    let us = (a % 1_000_000) as u32;
    let secs = a / 1_000_000;
    let hours = secs / 3600;
    MyValue::Time(
        micros < 0,
        (hours / 24) as u32,
        (hours % 24) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
        us,
    )
}

// ---------------------------------------------------------------------------------
// Reading rows events.

/// One row image: one entry per table column, `None` when the column is not in the
/// image (binlog_row_image MINIMAL or NOBLOB); SQL NULL is `Some(Value(NULL))`.
pub type BinlogImage = Vec<Option<BinlogValue<'static>>>;

/// The (before, after) images of one row of a rows event.
pub type BinlogRowImages = (Option<BinlogImage>, Option<BinlogImage>);

/// Reads rows events of one table map with the TIME fix: build it once per table map
/// (the binlog repeats the table map before each statement's rows events) and read
/// every rows event of that table with it.
///
/// mysql_common decodes every column but TIME. For tables with TIME columns the
/// reader gives mysql_common a copy of the table map in which each TIME column is a
/// BIT column of the same byte length, so the raw bytes come through unchanged, and
/// decodes them itself into `Value::Time`. The copy drops the optional metadata
/// (signedness, charsets, names): [`decode_binlog_value`] takes those from
/// [`MysqlColumn`] anyway.
#[derive(Debug, Clone)]
pub struct RowsEventReader {
    table: String,
    time_columns: Vec<Option<RawTime>>,
    /// The patched table map, as an event to read it from; `None` when the table has
    /// no TIME column and the original table map is used.
    patched: Option<Event>,
}

impl RowsEventReader {
    pub fn new(tme: &TableMapEvent<'_>) -> Result<RowsEventReader, MysqlDecodeError> {
        let table = format!("{}.{}", tme.database_name(), tme.table_name());
        let err = |reason: String| MysqlDecodeError::RowsEvent {
            table: table.clone(),
            reason,
        };
        let n = usize::try_from(tme.columns_count()).map_err(|_| err("too many columns".into()))?;
        let mut time_columns = Vec::with_capacity(n);
        for i in 0..n {
            let ty = tme
                .get_raw_column_type(i)
                .map_err(|e| err(format!("column {i}: {e}")))?
                .ok_or_else(|| err(format!("table map lacks column {i}")))?;
            time_columns.push(match ty {
                ColumnType::MYSQL_TYPE_TIME2 => {
                    let dec = tme
                        .get_column_metadata(i)
                        .and_then(|m| m.first().copied())
                        .ok_or_else(|| err(format!("column {i}: TIME2 without metadata")))?;
                    if dec > 6 {
                        return Err(err(format!(
                            "column {i}: TIME2 with {dec} fractional digits"
                        )));
                    }
                    Some(RawTime::Time2 { dec })
                }
                ColumnType::MYSQL_TYPE_TIME => Some(RawTime::Legacy),
                _ => None,
            });
        }
        let patched = if time_columns.iter().any(Option::is_some) {
            Some(patched_table_map(tme, &time_columns).map_err(err)?)
        } else {
            None
        };
        Ok(RowsEventReader {
            table,
            time_columns,
            patched,
        })
    }

    /// The rows of a rows event of this reader's table (`tme` is the table map the
    /// reader was built from).
    pub fn read(
        &self,
        tme: &TableMapEvent<'_>,
        rows: &RowsEventData<'_>,
    ) -> Result<Vec<BinlogRowImages>, MysqlDecodeError> {
        match &self.patched {
            None => self.collect(tme, rows),
            Some(event) => {
                let patched: TableMapEvent<'_> =
                    event
                        .read_event()
                        .map_err(|e| MysqlDecodeError::RowsEvent {
                            table: self.table.clone(),
                            reason: format!("patched table map does not parse: {e}"),
                        })?;
                self.collect(&patched, rows)
            }
        }
    }

    fn collect(
        &self,
        tme: &TableMapEvent<'_>,
        rows: &RowsEventData<'_>,
    ) -> Result<Vec<BinlogRowImages>, MysqlDecodeError> {
        let err = |reason: String| MysqlDecodeError::RowsEvent {
            table: self.table.clone(),
            reason,
        };
        let n = usize::try_from(rows.num_columns()).map_err(|_| err("too many columns".into()))?;
        if n != self.time_columns.len() {
            return Err(err(format!(
                "rows event has {n} columns, its table map {}",
                self.time_columns.len()
            )));
        }
        let before_cols: Option<Vec<bool>> = rows
            .columns_before_image()
            .map(|b| (0..n).map(|i| b.get(i).is_some_and(|x| *x)).collect());
        let after_cols: Option<Vec<bool>> = rows
            .columns_after_image()
            .map(|b| (0..n).map(|i| b.get(i).is_some_and(|x| *x)).collect());
        let mut out = Vec::new();
        for item in rows.rows(tme) {
            let (before, after) = item.map_err(|e| err(e.to_string()))?;
            let before = self.image(before, before_cols.as_deref())?;
            let after = self.image(after, after_cols.as_deref())?;
            out.push((before, after));
        }
        Ok(out)
    }

    fn image(
        &self,
        row: Option<mysql_async::binlog::row::BinlogRow>,
        present: Option<&[bool]>,
    ) -> Result<Option<BinlogImage>, MysqlDecodeError> {
        let (Some(row), Some(present)) = (row, present) else {
            return Ok(None);
        };
        let err = |reason: String| MysqlDecodeError::RowsEvent {
            table: self.table.clone(),
            reason,
        };
        let mut values =
            (0..row.len()).map(|j| row.as_ref(j).cloned().map(BinlogValue::into_owned));
        let mut out = Vec::with_capacity(present.len());
        for (i, &here) in present.iter().enumerate() {
            if !here {
                out.push(None);
                continue;
            }
            let value = values
                .next()
                .flatten()
                .ok_or_else(|| err(format!("row image lacks column {i}")))?;
            let value = match (self.time_columns[i], value) {
                (None, v) => v,
                (Some(_), BinlogValue::Value(MyValue::NULL)) => BinlogValue::Value(MyValue::NULL),
                (Some(kind), BinlogValue::Value(MyValue::Bytes(raw))) => {
                    let micros = match kind {
                        RawTime::Time2 { dec } => decode_time2(&raw, dec),
                        RawTime::Legacy => decode_legacy_time(&raw),
                    }
                    .map_err(|e| err(format!("column {i}: {e}")))?;
                    BinlogValue::Value(my_time(micros))
                }
                (Some(_), other) => {
                    return Err(err(format!("column {i}: unexpected TIME image {other:?}")))
                }
            };
            out.push(Some(value));
        }
        Ok(Some(out))
    }
}

/// Read all rows of a rows event with the TIME fix; see [`RowsEventReader`].
pub fn read_rows_event(
    tme: &TableMapEvent<'_>,
    rows: &RowsEventData<'_>,
) -> Result<Vec<BinlogRowImages>, MysqlDecodeError> {
    RowsEventReader::new(tme)?.read(tme, rows)
}

/// Decode a row image with the table's columns (in table order).
pub fn decode_image(
    columns: &[MysqlColumn],
    image: &[Option<BinlogValue<'_>>],
) -> Result<Vec<Option<Value>>, MysqlDecodeError> {
    if columns.len() != image.len() {
        return Err(MysqlDecodeError::RowsEvent {
            table: String::new(),
            reason: format!(
                "row image has {} columns, the table {}",
                image.len(),
                columns.len()
            ),
        });
    }
    columns
        .iter()
        .zip(image)
        .map(|(col, v)| v.as_ref().map(|v| decode_binlog_value(col, v)).transpose())
        .collect()
}

fn push_lenenc(out: &mut Vec<u8>, n: u64) {
    if n < 251 {
        out.push(n as u8);
    } else if n < 1 << 16 {
        out.push(0xFC);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n < 1 << 24 {
        out.push(0xFD);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xFE);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// A TABLE_MAP event equal to `tme` except that TIME columns are BIT columns of the
/// same byte length, without optional metadata, read back through mysql_common.
fn patched_table_map(
    tme: &TableMapEvent<'_>,
    time_columns: &[Option<RawTime>],
) -> Result<Event, String> {
    let n = time_columns.len();
    let mut types = Vec::with_capacity(n);
    let mut meta = Vec::new();
    for (i, kind) in time_columns.iter().enumerate() {
        match kind {
            Some(kind) => {
                types.push(ColumnType::MYSQL_TYPE_BIT as u8);
                meta.extend_from_slice(&[0, kind.len()]);
            }
            None => {
                let ty = tme
                    .get_raw_column_type(i)
                    .map_err(|e| format!("column {i}: {e}"))?
                    .ok_or_else(|| format!("table map lacks column {i}"))?;
                if ty == ColumnType::MYSQL_TYPE_TYPED_ARRAY {
                    return Err(format!("column {i}: typed arrays are not supported"));
                }
                types.push(ty as u8);
                meta.extend_from_slice(
                    tme.get_column_metadata(i)
                        .ok_or_else(|| format!("column {i}: no metadata"))?,
                );
            }
        }
    }
    let mut data = Vec::new();
    data.extend_from_slice(&tme.table_id().to_le_bytes()[..6]);
    data.extend_from_slice(&[0, 0]);
    for name in [tme.database_name_raw(), tme.table_name_raw()] {
        let len = u8::try_from(name.len()).map_err(|_| "name longer than 255 bytes".to_string())?;
        data.push(len);
        data.extend_from_slice(name);
        data.push(0);
    }
    push_lenenc(&mut data, n as u64);
    data.extend_from_slice(&types);
    push_lenenc(&mut data, meta.len() as u64);
    data.extend_from_slice(&meta);
    data.extend(std::iter::repeat_n(0xFF, n.div_ceil(8)));

    const HEADER_LEN: usize = 19;
    let size =
        u32::try_from(HEADER_LEN + data.len()).map_err(|_| "table map too large".to_string())?;
    let mut event = Vec::with_capacity(HEADER_LEN + data.len());
    event.extend_from_slice(&0u32.to_le_bytes()); // timestamp
    event.push(EventType::TABLE_MAP_EVENT as u8);
    event.extend_from_slice(&0u32.to_le_bytes()); // server_id
    event.extend_from_slice(&size.to_le_bytes());
    event.extend_from_slice(&0u32.to_le_bytes()); // log_pos
    event.extend_from_slice(&0u16.to_le_bytes()); // flags
    event.extend_from_slice(&data);
    // A v4 format description without checksums: Event::read keeps every byte.
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    Event::read(&fde, &event[..]).map_err(|e| format!("patched table map: {e}"))
}

// ---------------------------------------------------------------------------------
// Decoding.

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
        _ => decode_binlog_value(col, &BinlogValue::Value(value)),
    }
}

/// Binlog value (as decoded by mysql_common with the table map) -> canonical value.
/// `col` gives signedness, charset and enum/set values; the binlog's own signedness
/// handling is not relied on. Read rows through [`RowsEventReader`] so that TIME
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

// ---------------------------------------------------------------------------------
// Encoding.

struct Target<'a> {
    col: &'a MysqlColumn,
    value: &'a Value,
}

impl Target<'_> {
    fn refuse(&self, reason: impl Into<String>) -> MysqlEncodeError {
        MysqlEncodeError::Refused {
            column: self.col.name.clone(),
            column_type: self.col.column_type.clone(),
            value: show(self.value),
            reason: reason.into(),
        }
    }

    fn wrong_kind(&self) -> MysqlEncodeError {
        let reason = match self.value {
            Value::Array(_) => "MySQL has no array type: only a JSON column takes an array \
                                (written as a JSON array)"
                .to_string(),
            _ => format!("a {} column cannot hold", self.col.data_type),
        };
        MysqlEncodeError::WrongKind {
            column: self.col.name.clone(),
            column_type: self.col.column_type.clone(),
            value: show(self.value),
            kind: self.value.kind_name(),
            reason,
        }
    }

    fn unsupported(&self, reason: &'static str) -> MysqlEncodeError {
        MysqlEncodeError::UnsupportedType {
            column: self.col.name.clone(),
            column_type: self.col.column_type.clone(),
            data_type: self.col.data_type.clone(),
            reason,
        }
    }

    fn charset(&self) -> Result<Charset, MysqlEncodeError> {
        let name = self.col.charset_name();
        charset_of(name).ok_or_else(|| MysqlEncodeError::UnsupportedCharset {
            column: self.col.name.clone(),
            column_type: self.col.column_type.clone(),
            charset: name.to_string(),
        })
    }
}

/// Canonical value -> parameter for a MySQL column of type `col` (the TARGET
/// column). Refuses anything the column cannot hold exactly: never truncates, zeroes
/// or drops. NULL becomes a NULL parameter (NOT NULL is the server's to enforce).
pub fn encode_param(col: &MysqlColumn, value: &Value) -> Result<MyValue, MysqlEncodeError> {
    if value.is_null() {
        return Ok(MyValue::NULL);
    }
    let t = Target { col, value };
    match col.data_type.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => encode_int(&t),
        "year" => encode_year(&t),
        "bit" => encode_bit(&t),
        "decimal" | "numeric" => encode_decimal(&t),
        "float" | "double" | "real" => encode_float(&t),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => encode_text(&t),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            encode_binary(&t)
        }
        "json" => encode_json(&t),
        "uuid" => encode_uuid(&t),
        "enum" => encode_enum(&t),
        "set" => encode_set(&t),
        "date" => encode_date(&t),
        "datetime" | "timestamp" => encode_datetime(&t),
        "time" => encode_time(&t),
        _ => Err(t.unsupported("no canonical mapping for this type")),
    }
}

/// `v` as the MySQL column `col` holds it and reads it back (as the
/// applier reads target rows): the form the marker's checksum, conflict
/// detection and the parity check compare. `Err` with the reason when the
/// column cannot take the value (writing it is then refused too).
pub fn as_stored(col: &MysqlColumn, v: &Value) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let param = encode_param(col, v).map_err(|e| e.to_string())?;
    Ok(
        match decode_query_value(col, param).map_err(|e| e.to_string())? {
            // CHAR reads back without its trailing spaces (its padding).
            Value::Text(s) if col.data_type == "char" => {
                Value::Text(s.trim_end_matches(' ').to_string())
            }
            other => other,
        },
    )
}

/// The integer value of a decimal with no fractional part.
fn decimal_integer(t: &Target, d: &Decimal) -> Result<i128, MysqlEncodeError> {
    let Decimal::Finite(_) = d else {
        return Err(t.refuse("has no integer value"));
    };
    let norm = d.normalized();
    if norm.contains('.') {
        return Err(t.refuse("has a fractional part, which an integer column would round away"));
    }
    norm.parse::<i128>()
        .map_err(|_| t.refuse(format!("is outside the range of {}", t.col.column_type)))
}

fn int_param(n: i128) -> MyValue {
    match i64::try_from(n) {
        Ok(i) => MyValue::Int(i),
        Err(_) => MyValue::UInt(n as u64),
    }
}

fn encode_int(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let bits = t.col.int_bits().unwrap_or(64);
    let (min, max): (i128, i128) = if t.col.unsigned {
        (0, (1i128 << bits) - 1)
    } else {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    };
    let n: i128 = match t.value {
        Value::Int(v) => i128::from(*v),
        Value::UInt(v) => i128::from(*v),
        Value::Bool(b) => i128::from(*b),
        Value::Decimal(d) => decimal_integer(t, d)?,
        _ => return Err(t.wrong_kind()),
    };
    if n < min || n > max {
        return Err(t.refuse(format!(
            "is outside the range of {} ({min}..{max})",
            t.col.column_type
        )));
    }
    Ok(int_param(n))
}

fn encode_year(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let n: i128 = match t.value {
        Value::Int(v) => i128::from(*v),
        Value::UInt(v) => i128::from(*v),
        Value::Decimal(d) => decimal_integer(t, d)?,
        _ => return Err(t.wrong_kind()),
    };
    if paren_numbers(&t.col.column_type).first() == Some(&2) {
        return Err(t.unsupported("YEAR(2) keeps only two digits"));
    }
    if n != 0 && !(1901..=2155).contains(&n) {
        return Err(t.refuse("is outside YEAR's range (1901..2155, or 0)"));
    }
    Ok(int_param(n))
}

fn encode_bit(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let width = t.col.bit_width().clamp(1, 64);
    let bytes = width.div_ceil(8) as usize;
    match t.value {
        Value::Bytes(b) => {
            if b.len() != bytes {
                return Err(t.refuse(format!(
                    "has {} bytes; {} is read back as {bytes}",
                    b.len(),
                    t.col.column_type
                )));
            }
            let spare = 8 * bytes as u32 - width;
            if spare > 0 && b[0] >> (8 - spare) != 0 {
                return Err(t.refuse(format!("has more than {width} significant bits")));
            }
            Ok(MyValue::Bytes(b.clone()))
        }
        Value::Int(_) | Value::UInt(_) | Value::Bool(_) => {
            let n: i128 = match t.value {
                Value::Int(v) => i128::from(*v),
                Value::UInt(v) => i128::from(*v),
                Value::Bool(b) => i128::from(*b),
                _ => 0,
            };
            if n < 0 || n >= 1i128 << width {
                return Err(t.refuse(format!("does not fit {width} bits")));
            }
            Ok(MyValue::UInt(n as u64))
        }
        _ => Err(t.wrong_kind()),
    }
}

/// (integer digits, fraction digits) of a normalised finite decimal.
fn decimal_digits(norm: &str) -> (usize, usize) {
    let body = norm.strip_prefix('-').unwrap_or(norm);
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    let int_digits = if int_part == "0" { 0 } else { int_part.len() };
    (int_digits, frac_part.len())
}

fn encode_decimal(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let nums = paren_numbers(&t.col.column_type);
    let p = t
        .col
        .numeric_precision
        .or_else(|| nums.first().copied())
        .unwrap_or(10) as usize;
    let s = t
        .col
        .numeric_scale
        .or_else(|| nums.get(1).copied())
        .unwrap_or(0) as usize;
    let norm = match t.value {
        Value::Decimal(d @ Decimal::Finite(_)) => d.normalized(),
        Value::Decimal(Decimal::NaN) => {
            return Err(t.refuse("cannot be stored: MySQL DECIMAL has no NaN"))
        }
        Value::Decimal(_) => {
            return Err(t.refuse("cannot be stored: MySQL DECIMAL has no infinity"))
        }
        Value::Int(v) => v.to_string(),
        Value::UInt(v) => v.to_string(),
        _ => return Err(t.wrong_kind()),
    };
    if t.col.unsigned && norm.starts_with('-') {
        return Err(t.refuse("is negative; the column is unsigned"));
    }
    let (int_digits, frac_digits) = decimal_digits(&norm);
    if int_digits > p.saturating_sub(s) {
        return Err(t.refuse(format!(
            "has {int_digits} integer digits; {} holds at most {}",
            t.col.column_type,
            p.saturating_sub(s)
        )));
    }
    if frac_digits > s {
        return Err(t.refuse(format!(
            "has {frac_digits} fractional digits; {} keeps {s} and would round",
            t.col.column_type
        )));
    }
    Ok(MyValue::Bytes(norm.into_bytes()))
}

fn encode_float(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    if t.col.numeric_scale.is_some() {
        return Err(t.unsupported("FLOAT(M,D) and DOUBLE(M,D) round every value to D decimals"));
    }
    let single = t.col.data_type == "float";
    let v: f64 = match t.value {
        Value::Float32(f) => f64::from(*f),
        Value::Float64(f) => *f,
        Value::Int(i) => {
            let f = *i as f64;
            if f as i128 != i128::from(*i) || f.abs() >= 9.3e18 {
                return Err(t.refuse("is not exactly representable as a double"));
            }
            f
        }
        Value::UInt(u) => {
            let f = *u as f64;
            if f >= 1.8e19 || f as u128 != u128::from(*u) {
                return Err(t.refuse("is not exactly representable as a double"));
            }
            f
        }
        // Accepted when the double's shortest decimal form is this decimal, so that
        // it reads back as the same digits: 0.1 is taken, 0.10000000000000000001 not.
        Value::Decimal(d @ Decimal::Finite(_)) => {
            let norm = d.normalized();
            let f: f64 = norm.parse().map_err(|_| t.refuse("is not a number"))?;
            let back = Decimal::parse(&format!("{f:?}")).map(|d| d.normalized());
            if !f.is_finite() || back.as_deref() != Some(norm.as_str()) {
                return Err(t.refuse("has more digits than a double carries and would be rounded"));
            }
            f
        }
        Value::Decimal(_) => {
            return Err(t.refuse("cannot be stored: MySQL FLOAT/DOUBLE has no NaN or infinity"))
        }
        _ => return Err(t.wrong_kind()),
    };
    if !v.is_finite() {
        return Err(t.refuse("cannot be stored: MySQL FLOAT/DOUBLE has no NaN or infinity"));
    }
    if single {
        let f = v as f32;
        if f64::from(f) != v {
            return Err(t.refuse(
                "is not exactly representable in FLOAT (single precision) and would be rounded",
            ));
        }
        Ok(MyValue::Float(f))
    } else {
        Ok(MyValue::Double(v))
    }
}

fn encode_text(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let s: Cow<str> = match t.value {
        Value::Text(s) | Value::Enum(s) | Value::Json(s) => Cow::Borrowed(s),
        Value::Uuid(b) => Cow::Owned(uuid::Uuid::from_bytes(*b).hyphenated().to_string()),
        _ => return Err(t.wrong_kind()),
    };
    let cs = t.charset()?;
    if cs == Charset::Binary {
        return Err(t.unsupported("a text column with the binary character set"));
    }
    if let Some(reason) = charset_refusal(cs, t.col.charset_name(), &s) {
        return Err(t.refuse(reason));
    }
    let dt = t.col.data_type.as_str();
    if let Some(limit) = lob_byte_limit(dt) {
        let len = charset_len(cs, &s);
        if len > limit {
            return Err(t.refuse(format!(
                "takes {len} bytes in {}; {} holds {limit}",
                t.col.charset_name(),
                t.col.column_type
            )));
        }
    } else if let Some(limit) = t.col.char_max_len {
        // CHAR pads with spaces and reads back without them: its trailing spaces are
        // not part of the value (as in PostgreSQL's character(n)).
        let counted = if dt == "char" {
            s.trim_end_matches(' ')
        } else {
            &s
        };
        let len = counted.chars().count() as u64;
        if len > limit {
            return Err(t.refuse(format!(
                "has {len} characters, more than {} holds",
                t.col.column_type
            )));
        }
    }
    Ok(MyValue::Bytes(s.into_owned().into_bytes()))
}

fn encode_binary(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let bytes: Vec<u8> = match t.value {
        Value::Bytes(b) => b.clone(),
        Value::Uuid(b) => b.to_vec(),
        Value::Text(s) => match uuid::Uuid::parse_str(s) {
            Ok(u) => u.as_bytes().to_vec(),
            Err(_) => {
                return Err(MysqlEncodeError::WrongKind {
                    column: t.col.name.clone(),
                    column_type: t.col.column_type.clone(),
                    value: show(t.value),
                    kind: "text",
                    reason:
                        "a binary column takes only when it is a UUID (written as its 16 bytes)"
                            .into(),
                })
            }
        },
        _ => return Err(t.wrong_kind()),
    };
    let dt = t.col.data_type.as_str();
    let len = bytes.len() as u64;
    if dt == "binary" {
        let n = t.col.char_max_len.unwrap_or(0);
        if len != n {
            return Err(t.refuse(format!(
                "has {len} bytes; {} holds exactly {n} (shorter values are padded with zero bytes)",
                t.col.column_type
            )));
        }
    } else if let Some(limit) = lob_byte_limit(dt).or(t.col.char_max_len) {
        if len > limit {
            return Err(t.refuse(format!(
                "has {len} bytes, more than {} holds",
                t.col.column_type
            )));
        }
    }
    Ok(MyValue::Bytes(bytes))
}

/// Check that text is one JSON document.
fn json_valid(s: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

fn encode_json(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let text = match t.value {
        Value::Json(s) | Value::Text(s) => {
            if !json_valid(s) {
                return Err(t.refuse("is not valid JSON"));
            }
            s.clone()
        }
        Value::Array(items) => {
            let mut out = String::new();
            push_json_array(&mut out, items).map_err(|reason| t.refuse(reason))?;
            out
        }
        _ => return Err(t.wrong_kind()),
    };
    if let Some(reason) = charset_of(t.col.charset_name())
        .and_then(|cs| charset_refusal(cs, t.col.charset_name(), &text))
    {
        return Err(t.refuse(reason));
    }
    Ok(MyValue::Bytes(text.into_bytes()))
}

/// An array as JSON, elements written as PostgreSQL's `to_json` writes them.
fn push_json_array(out: &mut String, items: &[Value]) -> Result<(), String> {
    out.push('[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_value(out, v)?;
    }
    out.push(']');
    Ok(())
}

fn push_json_string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

fn push_json_value(out: &mut String, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Decimal(d @ Decimal::Finite(_)) => out.push_str(&d.normalized()),
        Value::Decimal(d) => return Err(format!("holds {d}, which JSON cannot represent")),
        Value::Float32(f) if f.is_finite() => {
            let _ = write!(out, "{f:?}");
        }
        Value::Float64(f) if f.is_finite() => {
            let _ = write!(out, "{f:?}");
        }
        Value::Float32(_) | Value::Float64(_) => {
            return Err("holds a NaN or infinite float, which JSON cannot represent".into())
        }
        Value::Text(s) | Value::Enum(s) => push_json_string(out, s),
        Value::Json(s) => {
            if !json_valid(s) {
                return Err("holds an invalid JSON element".into());
            }
            out.push_str(s);
        }
        Value::Uuid(b) => {
            push_json_string(out, &uuid::Uuid::from_bytes(*b).hyphenated().to_string())
        }
        Value::Bytes(b) => {
            let mut s = String::from("\\x");
            for byte in b {
                let _ = write!(s, "{byte:02x}");
            }
            push_json_string(out, &s);
        }
        Value::Date(d) => push_json_string(out, &show_date(*d)),
        Value::Time(us) => push_json_string(out, &show_time(*us)),
        Value::Timestamp(ts) | Value::TimestampTz(ts) => {
            let s = match ts {
                Timestamp::Micros(m) => {
                    let mut s = String::new();
                    push_timestamp(&mut s, *m, 'T');
                    if matches!(v, Value::TimestampTz(_)) {
                        s.push_str("+00:00");
                    }
                    s
                }
                Timestamp::PosInfinity => "infinity".into(),
                Timestamp::NegInfinity => "-infinity".into(),
            };
            push_json_string(out, &s);
        }
        Value::Interval(_) => return Err("holds an interval, which has no JSON form here".into()),
        Value::Array(inner) => push_json_array(out, inner)?,
    }
    Ok(())
}

fn encode_uuid(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let u = match t.value {
        Value::Uuid(b) => uuid::Uuid::from_bytes(*b),
        Value::Text(s) => uuid::Uuid::parse_str(s).map_err(|_| t.refuse("is not a UUID"))?,
        _ => return Err(t.wrong_kind()),
    };
    Ok(MyValue::Bytes(u.hyphenated().to_string().into_bytes()))
}

fn encode_enum(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let (Value::Enum(s) | Value::Text(s)) = t.value else {
        return Err(t.wrong_kind());
    };
    if !t.col.enum_values.iter().any(|v| v == s) {
        return Err(t.refuse(format!("is not one of the labels of {}", t.col.column_type)));
    }
    Ok(MyValue::Bytes(s.clone().into_bytes()))
}

fn encode_set(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let (Value::Enum(s) | Value::Text(s)) = t.value else {
        return Err(t.wrong_kind());
    };
    let mut chosen = vec![false; t.col.enum_values.len()];
    if !s.is_empty() {
        for part in s.split(',') {
            let i = t
                .col
                .enum_values
                .iter()
                .position(|v| v == part)
                .ok_or_else(|| {
                    t.refuse(format!(
                        "names {part:?}, which is not a member of {}",
                        t.col.column_type
                    ))
                })?;
            if chosen[i] {
                return Err(t.refuse(format!("names {part:?} twice; a SET keeps it once")));
            }
            chosen[i] = true;
        }
    }
    // MySQL stores a bitmask and reads members back in definition order.
    let joined: Vec<&str> = t
        .col
        .enum_values
        .iter()
        .zip(&chosen)
        .filter(|(_, &c)| c)
        .map(|(v, _)| v.as_str())
        .collect();
    Ok(MyValue::Bytes(joined.join(",").into_bytes()))
}

fn my_date(days: i64, tod_micros: i64) -> MyValue {
    let (y, m, d) = civil_from_days(days);
    let secs = tod_micros / MICROS_PER_SECOND;
    MyValue::Date(
        y as u16,
        m as u8,
        d as u8,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
        (tod_micros % MICROS_PER_SECOND) as u32,
    )
}

fn encode_date(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let days = match t.value {
        Value::Date(Date::Days(d)) => i64::from(*d),
        Value::Date(_) => return Err(t.refuse("has no MySQL DATE equivalent (no infinite dates)")),
        _ => return Err(t.wrong_kind()),
    };
    if days < datetime_min_days() {
        return Err(t.refuse("is before 1000-01-01, the start of DATE's range"));
    }
    if days > datetime_max_days() {
        return Err(t.refuse("is after 9999-12-31, the end of DATE's range"));
    }
    Ok(my_date(days, 0))
}

/// Fractional digits a number of microseconds needs (0..=6).
fn fraction_digits(micros: i64) -> u32 {
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

fn check_precision(t: &Target, micros: i64) -> Result<(), MysqlEncodeError> {
    let fsp = t.col.fsp();
    let need = fraction_digits(micros);
    if need > fsp {
        return Err(t.refuse(format!(
            "has {need} fractional-second digits; {} keeps {fsp} and would round",
            t.col.column_type
        )));
    }
    Ok(())
}

fn encode_datetime(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let is_timestamp = t.col.data_type == "timestamp";
    let micros = match t.value {
        Value::Timestamp(Timestamp::Micros(m)) | Value::TimestampTz(Timestamp::Micros(m)) => *m,
        Value::Date(Date::Days(d)) if !is_timestamp => i64::from(*d) * MICROS_PER_DAY,
        Value::Timestamp(_) | Value::TimestampTz(_) | Value::Date(_) => {
            let name = if is_timestamp {
                "TIMESTAMP"
            } else {
                "DATETIME"
            };
            return Err(t.refuse(format!(
                "has no MySQL {name} equivalent (no infinite values)"
            )));
        }
        _ => return Err(t.wrong_kind()),
    };
    if is_timestamp {
        if micros < TIMESTAMP_MIN_MICROS {
            return Err(
                t.refuse("is before 1970-01-01 00:00:01 UTC, the start of TIMESTAMP's range")
            );
        }
        if micros > TIMESTAMP_MAX_MICROS {
            return Err(
                t.refuse("is after 2038-01-19 03:14:07.999999 UTC, the end of TIMESTAMP's range")
            );
        }
    } else {
        if micros < datetime_min_days() * MICROS_PER_DAY {
            return Err(t.refuse("is before 1000-01-01, the start of DATETIME's range"));
        }
        if micros >= (datetime_max_days() + 1) * MICROS_PER_DAY {
            return Err(
                t.refuse("is after 9999-12-31 23:59:59.999999, the end of DATETIME's range")
            );
        }
    }
    check_precision(t, micros)?;
    Ok(my_date(
        micros.div_euclid(MICROS_PER_DAY),
        micros.rem_euclid(MICROS_PER_DAY),
    ))
}

fn encode_time(t: &Target) -> Result<MyValue, MysqlEncodeError> {
    let micros: i128 = match t.value {
        Value::Time(us) => i128::from(*us),
        Value::Interval(iv) => {
            if iv.months != 0 {
                return Err(
                    t.refuse("has months, which have no fixed length; TIME holds only a duration")
                );
            }
            i128::from(iv.days) * i128::from(MICROS_PER_DAY) + i128::from(iv.micros)
        }
        _ => return Err(t.wrong_kind()),
    };
    if micros.abs() > i128::from(TIME_MAX_MICROS) {
        return Err(t.refuse("is outside TIME's range -838:59:59.999999..838:59:59.999999"));
    }
    let micros = micros as i64;
    check_precision(t, micros)?;
    Ok(my_time(micros))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::value::Interval;
    use proptest::prelude::*;

    #[test]
    fn as_stored_is_what_the_column_reads_back() {
        let c = col("c", "char(8)", Some("utf8mb4"));
        let v = col("v", "varchar(8)", Some("utf8mb4"));
        let stored = |c: &MysqlColumn, x: &Value| as_stored(c, x).unwrap_or(Value::Null);
        // CHAR reads back without its padding; VARCHAR keeps trailing spaces.
        assert_eq!(
            stored(&c, &Value::Text("ab      ".into())),
            Value::Text("ab".into())
        );
        assert_eq!(
            stored(&v, &Value::Text("ab  ".into())),
            Value::Text("ab  ".into())
        );
        // A naive timestamp into TIMESTAMP reads back as an aware one (UTC),
        // an aware one into DATETIME as a naive one.
        let ts = Timestamp::Micros(1_704_203_100_000_000);
        let t = col("t", "timestamp(6)", None);
        let d = col("d", "datetime(6)", None);
        assert_eq!(stored(&t, &Value::Timestamp(ts)), Value::TimestampTz(ts));
        assert_eq!(stored(&d, &Value::TimestampTz(ts)), Value::Timestamp(ts));
        // What the column cannot take is an error (the write refuses it).
        let day = col("day", "date", None);
        assert!(as_stored(&day, &Value::Timestamp(ts)).is_err());
        assert_eq!(stored(&day, &Value::Null), Value::Null);
    }

    /// A column as information_schema would describe it, from a COLUMN_TYPE string.
    fn col(name: &str, column_type: &str, charset: Option<&str>) -> MysqlColumn {
        let lower = column_type.to_ascii_lowercase();
        let data_type: String = lower
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let nums = paren_numbers(&lower);
        let is_text = TEXT_TYPES.contains(&data_type.as_str());
        let is_bin = BINARY_TYPES.contains(&data_type.as_str());
        let char_max_len = if is_text || is_bin {
            nums.first()
                .copied()
                .or_else(|| lob_byte_limit(&data_type))
                .or(Some(1))
        } else {
            None
        };
        let (prec, scale) = match data_type.as_str() {
            "decimal" | "float" | "double" => (nums.first().copied(), nums.get(1).copied()),
            "bit" => (nums.first().copied(), None),
            _ => (None, None),
        };
        let dtp = match data_type.as_str() {
            "time" | "datetime" | "timestamp" => Some(nums.first().copied().unwrap_or(0)),
            _ => None,
        };
        MysqlColumn::from_catalog(
            name.into(),
            &data_type,
            column_type.into(),
            char_max_len,
            charset
                .map(str::to_string)
                .or_else(|| is_text.then(|| "utf8mb4".into())),
            prec,
            scale,
            dtp,
            false,
        )
    }

    fn dec(c: &MysqlColumn, v: MyValue) -> Value {
        match decode_binlog_value(c, &BinlogValue::Value(v.clone())) {
            Ok(x) => x,
            Err(e) => panic!("decode {v:?} for {}: {e}", c.column_type),
        }
    }

    fn enc(c: &MysqlColumn, v: &Value) -> MyValue {
        match encode_param(c, v) {
            Ok(x) => x,
            Err(e) => panic!("encode {v:?} for {}: {e}", c.column_type),
        }
    }

    fn refusal(c: &MysqlColumn, v: &Value) -> String {
        match encode_param(c, v) {
            Ok(x) => panic!("{v:?} into {} was accepted as {x:?}", c.column_type),
            Err(e) => e.to_string(),
        }
    }

    fn days(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d)
    }

    fn ts_micros(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> i64 {
        days(y, mo, d) * MICROS_PER_DAY + ((h * 60 + mi) * 60 + s) * MICROS_PER_SECOND + us
    }

    /// A TIME2 image the way the server writes it (MySQL's my_time_packed_to_binary:
    /// integer part by floor division, fraction by truncation).
    fn time2_image(micros: i64, dec: u8) -> Vec<u8> {
        let a = micros.unsigned_abs();
        let secs = a / 1_000_000;
        let hms = ((secs / 3600) << 12 | (secs / 60 % 60) << 6 | (secs % 60)) as i64;
        let frac = (a % 1_000_000) as i64;
        let packed = {
            let p = hms << 24 | frac;
            if micros < 0 {
                -p
            } else {
                p
            }
        };
        let int_part = packed >> 24;
        let frac_part = packed % (1 << 24);
        let mut out = ((int_part + 0x80_0000) as u32).to_be_bytes()[1..].to_vec();
        match dec {
            1 | 2 => out.push((frac_part / 10_000) as i8 as u8),
            3 | 4 => out.extend_from_slice(&((frac_part / 100) as i16).to_be_bytes()),
            5 | 6 => {
                // 48-bit form: the whole packed value plus the offset.
                let v = (packed + 0x8000_0000_0000) as u64;
                return v.to_be_bytes()[2..].to_vec();
            }
            _ => {}
        }
        out
    }

    #[test]
    fn enum_values_from_column_type() {
        assert_eq!(parse_enum_values("enum('a','b')"), vec!["a", "b"]);
        assert_eq!(
            parse_enum_values(r"enum('it''s','a\\b','x,y','','Ü')"),
            vec!["it's", r"a\b", "x,y", "", "Ü"]
        );
        assert_eq!(parse_enum_values("set('p','q')"), vec!["p", "q"]);
        assert_eq!(paren_numbers("decimal(65,30) unsigned"), vec![65, 30]);
    }

    #[test]
    fn time2_known_images() {
        // '-00:00:01.5' in TIME(1): integer part -2 (floor), fraction byte 0xCE (-50).
        assert_eq!(decode_time2(&[0x7F, 0xFF, 0xFE, 0xCE], 1), Ok(-1_500_000));
        assert_eq!(time2_image(-1_500_000, 1), vec![0x7F, 0xFF, 0xFE, 0xCE]);
        assert_eq!(decode_time2(&[0x80, 0x00, 0x00], 0), Ok(0));
        assert_eq!(
            decode_time2(&[0x80, 0x10, 0x00], 0),
            Ok(3600 * MICROS_PER_SECOND)
        );
        // 838:59:59 = hms 838<<12 | 59<<6 | 59.
        let max = (838i64 << 12 | 59 << 6 | 59) + 0x80_0000;
        assert_eq!(
            decode_time2(&(max as u32).to_be_bytes()[1..], 0),
            Ok(838 * 3_600_000_000 + 3_599_000_000)
        );
        assert!(decode_time2(&[0x80, 0x00], 0).is_err());
        assert!(decode_time2(&[0x80, 0x00, 0x3F], 0).is_err()); // 63 seconds
        assert_eq!(
            decode_legacy_time(&[0xC0, 0x1D, 0xFE]),
            Ok(-(12 * 3600 + 34 * 60 + 56) * MICROS_PER_SECOND)
        );
        assert_eq!(
            decode_legacy_time(&[0x40, 0xE2, 0x01]),
            Ok((12 * 3600 + 34 * 60 + 56) * MICROS_PER_SECOND)
        );
    }

    proptest! {
        #[test]
        fn time2_round_trip(
            hours in 0i64..=838,
            minutes in 0i64..60,
            seconds in 0i64..60,
            frac in 0i64..1_000_000,
            negative: bool,
            dec in 0u8..=6,
        ) {
            let step = 10i64.pow(6 - u32::from(dec));
            let frac = frac / step * step;
            let a = ((hours * 60 + minutes) * 60 + seconds) * MICROS_PER_SECOND + frac;
            let micros = if negative { -a } else { a };
            let image = time2_image(micros, dec);
            prop_assert_eq!(image.len(), usize::from(RawTime::Time2 { dec }.len()));
            prop_assert_eq!(decode_time2(&image, dec), Ok(micros));
        }

        #[test]
        fn time_param_round_trip(micros in -TIME_MAX_MICROS..=TIME_MAX_MICROS) {
            let c = col("t", "time(6)", None);
            let p = enc(&c, &Value::Time(micros));
            prop_assert_eq!(dec(&c, p), Value::Time(micros));
        }

        #[test]
        fn datetime_param_round_trip(m in -30_610_224_000_000_000i64..253_402_300_799_999_999) {
            let c = col("dt", "datetime(6)", None);
            let p = enc(&c, &Value::Timestamp(Timestamp::Micros(m)));
            prop_assert_eq!(dec(&c, p), Value::Timestamp(Timestamp::Micros(m)));
        }

        #[test]
        fn latin1_decode_encode_agree(b in any::<u8>()) {
            let s = decode_charset(Charset::Latin1, &[b]).unwrap_or_default();
            prop_assert_eq!(s.chars().count(), 1);
            prop_assert!(charset_refusal(Charset::Latin1, "latin1", &s).is_none());
        }
    }

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
    fn integer_encoding() {
        let s = col("s", "smallint(6)", None);
        assert_eq!(enc(&s, &Value::Int(-32768)), MyValue::Int(-32768));
        assert_eq!(
            refusal(&s, &Value::Int(70000)),
            "column s (smallint(6)): 70000 is outside the range of smallint(6) (-32768..32767)"
        );
        let bu = col("b", "bigint(20) unsigned", None);
        assert_eq!(enc(&bu, &Value::UInt(u64::MAX)), MyValue::UInt(u64::MAX));
        assert!(encode_param(&bu, &Value::Int(-1)).is_err());
        let t = col("t", "tinyint(1)", None);
        assert_eq!(enc(&t, &Value::Bool(true)), MyValue::Int(1));
        assert_eq!(
            enc(&t, &Value::Decimal(Decimal::Finite("5.000".into()))),
            MyValue::Int(5)
        );
        assert!(encode_param(&t, &Value::Decimal(Decimal::Finite("5.5".into()))).is_err());
        assert!(encode_param(&t, &Value::Text("5".into())).is_err());
    }

    #[test]
    fn decimal_encoding() {
        let d = col("d", "decimal(10,2)", None);
        let fin = |s: &str| Value::Decimal(Decimal::Finite(s.into()));
        assert_eq!(
            enc(&d, &fin("12345678.90")),
            MyValue::Bytes(b"12345678.9".to_vec())
        );
        assert_eq!(enc(&d, &fin("-0.010")), MyValue::Bytes(b"-0.01".to_vec()));
        assert_eq!(enc(&d, &Value::Int(-5)), MyValue::Bytes(b"-5".to_vec()));
        assert_eq!(
            refusal(&d, &fin("1.005")),
            "column d (decimal(10,2)): 1.005 has 3 fractional digits; decimal(10,2) keeps 2 and would round"
        );
        assert_eq!(
            refusal(&d, &fin("123456789")),
            "column d (decimal(10,2)): 123456789 has 9 integer digits; decimal(10,2) holds at most 8"
        );
        assert_eq!(
            refusal(&d, &Value::Decimal(Decimal::NaN)),
            "column d (decimal(10,2)): NaN cannot be stored: MySQL DECIMAL has no NaN"
        );
        assert!(encode_param(&d, &Value::Decimal(Decimal::PosInfinity)).is_err());
        let wide = col("w", "decimal(65,30)", None);
        let big = format!("{}.{}", "9".repeat(35), "9".repeat(30));
        assert_eq!(
            enc(&wide, &fin(&big)),
            MyValue::Bytes(big.clone().into_bytes())
        );
    }

    #[test]
    fn float_encoding() {
        let f = col("f", "float", None);
        let d = col("d", "double", None);
        assert_eq!(enc(&f, &Value::Float32(f32::MAX)), MyValue::Float(f32::MAX));
        assert_eq!(enc(&f, &Value::Float64(0.5)), MyValue::Float(0.5));
        assert!(encode_param(&f, &Value::Float64(0.1)).is_err());
        assert_eq!(
            enc(&d, &Value::Float32(0.1)),
            MyValue::Double(f64::from(0.1f32))
        );
        assert!(encode_param(&d, &Value::Float64(f64::NAN)).is_err());
        assert!(encode_param(&d, &Value::Float64(f64::INFINITY)).is_err());
        assert_eq!(
            enc(&d, &Value::Decimal(Decimal::Finite("0.1".into()))),
            MyValue::Double(0.1)
        );
        assert!(encode_param(
            &d,
            &Value::Decimal(Decimal::Finite("0.10000000000000000001".into()))
        )
        .is_err());
        assert_eq!(
            enc(&d, &Value::Int(1 << 53)),
            MyValue::Double(9_007_199_254_740_992.0)
        );
        assert!(encode_param(&d, &Value::Int((1 << 53) + 1)).is_err());
        assert!(encode_param(&col("f", "float(7,3)", None), &Value::Float32(1.0)).is_err());
    }

    #[test]
    fn text_encoding() {
        let v5 = col("v", "varchar(5)", Some("utf8mb4"));
        assert_eq!(
            enc(&v5, &Value::Text("héllo".into())),
            MyValue::Bytes("héllo".as_bytes().to_vec())
        );
        assert_eq!(
            refusal(&v5, &Value::Text("abcdef".into())),
            "column v (varchar(5)): \"abcdef\" has 6 characters, more than varchar(5) holds"
        );
        assert!(encode_param(&v5, &Value::Text("abcd ".into())).is_ok());
        assert!(encode_param(&v5, &Value::Text("abcde ".into())).is_err());
        let c5 = col("c", "char(5)", Some("utf8mb4"));
        assert!(encode_param(&c5, &Value::Text("abcde   ".into())).is_ok());
        let m3 = col("m", "varchar(10)", Some("utf8mb3"));
        assert!(encode_param(&m3, &Value::Text("日本".into())).is_ok());
        let msg = refusal(&m3, &Value::Text("a😀".into()));
        assert!(msg.contains("U+1F600") && msg.contains("utf8mb3"), "{msg}");
        let l1 = col("l", "text", Some("latin1"));
        assert!(encode_param(&l1, &Value::Text("café €‚ƒ„".into())).is_ok());
        let msg = refusal(&l1, &Value::Text("Ā".into()));
        assert!(msg.contains("U+0100") && msg.contains("latin1"), "{msg}");
        assert!(encode_param(&l1, &Value::Text("\u{85}".into())).is_err());
        let tiny = col("t", "tinytext", Some("utf8mb4"));
        assert!(encode_param(&tiny, &Value::Text("é".repeat(127))).is_ok());
        assert!(encode_param(&tiny, &Value::Text("é".repeat(128))).is_err());
        let greek = col("g", "text", Some("greek"));
        assert!(matches!(
            encode_param(&greek, &Value::Text("a".into())),
            Err(MysqlEncodeError::UnsupportedCharset { .. })
        ));
        assert!(encode_param(&v5, &Value::Int(1)).is_err());
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

    #[test]
    fn temporal_encoding() {
        let dt = col("ts", "datetime(6)", None);
        let before = Value::Timestamp(Timestamp::Micros(ts_micros(999, 12, 31, 23, 0, 0, 0)));
        assert_eq!(
            refusal(&dt, &before),
            "column ts (datetime(6)): 0999-12-31 23:00:00 is before 1000-01-01, the start of DATETIME's range"
        );
        assert_eq!(
            enc(
                &dt,
                &Value::TimestampTz(Timestamp::Micros(ts_micros(
                    9999, 12, 31, 23, 59, 59, 999_999
                )))
            ),
            MyValue::Date(9999, 12, 31, 23, 59, 59, 999_999)
        );
        assert!(encode_param(&dt, &Value::Timestamp(Timestamp::PosInfinity)).is_err());
        let dt0 = col("d0", "datetime", None);
        assert_eq!(
            refusal(&dt0, &Value::Timestamp(Timestamp::Micros(ts_micros(2020, 1, 1, 0, 0, 0, 500_000)))),
            "column d0 (datetime): 2020-01-01 00:00:00.5 has 1 fractional-second digits; datetime keeps 0 and would round"
        );
        assert_eq!(
            enc(&dt0, &Value::Date(Date::Days(0))),
            MyValue::Date(1970, 1, 1, 0, 0, 0, 0)
        );
        let ts = col("ts", "timestamp(6)", None);
        assert!(encode_param(&ts, &Value::TimestampTz(Timestamp::Micros(1_000_000))).is_ok());
        assert!(encode_param(&ts, &Value::TimestampTz(Timestamp::Micros(999_999))).is_err());
        assert!(encode_param(
            &ts,
            &Value::TimestampTz(Timestamp::Micros(TIMESTAMP_MAX_MICROS))
        )
        .is_ok());
        assert!(encode_param(
            &ts,
            &Value::TimestampTz(Timestamp::Micros(TIMESTAMP_MAX_MICROS + 1))
        )
        .is_err());
        let d = col("d", "date", None);
        assert!(encode_param(&d, &Value::Date(Date::Days(days(999, 12, 31) as i32))).is_err());
        assert!(encode_param(&d, &Value::Date(Date::NegInfinity)).is_err());
        let t0 = col("t", "time", None);
        assert_eq!(
            enc(&t0, &Value::Time(-(838 * 3600 + 3599) * MICROS_PER_SECOND)),
            MyValue::Time(true, 34, 22, 59, 59, 0)
        );
        assert!(encode_param(&t0, &Value::Time(1)).is_err());
        let t6 = col("t", "time(6)", None);
        assert!(encode_param(&t6, &Value::Time(TIME_MAX_MICROS + 1)).is_err());
        assert_eq!(
            enc(
                &t6,
                &Value::Interval(Interval {
                    months: 0,
                    days: 1,
                    micros: -1
                })
            ),
            MyValue::Time(false, 0, 23, 59, 59, 999_999)
        );
        assert!(encode_param(
            &t6,
            &Value::Interval(Interval {
                months: 1,
                days: 0,
                micros: 0
            })
        )
        .is_err());
    }

    #[test]
    fn json_encoding() {
        let j = col("j", "json", Some("utf8mb4"));
        assert!(encode_param(&j, &Value::Json("{\"a\": [1, 2]}".into())).is_ok());
        assert!(encode_param(&j, &Value::Json("{".into())).is_err());
        let arr = Value::Array(vec![
            Value::Int(1),
            Value::Null,
            Value::Text("a\"b".into()),
            Value::Decimal(Decimal::Finite("1.50".into())),
            Value::Array(vec![Value::Bool(true)]),
            Value::TimestampTz(Timestamp::Micros(0)),
        ]);
        assert_eq!(
            enc(&j, &arr),
            MyValue::Bytes(br#"[1,null,"a\"b",1.5,[true],"1970-01-01T00:00:00+00:00"]"#.to_vec())
        );
        let msg = refusal(&col("t", "text", Some("utf8mb4")), &arr);
        assert!(msg.contains("no array type"), "{msg}");
    }

    #[test]
    fn messages_abbreviate_values() {
        let v5 = col("v", "varchar(5)", Some("utf8mb4"));
        let msg = refusal(&v5, &Value::Text("x".repeat(500)));
        assert!(msg.len() < 200, "{msg}");
    }
}
