//! Canonical values to MySQL statement parameters for a column ([`encode_param`]),
//! and what a column stores of a value ([`as_stored`]). A value the column cannot
//! hold exactly is an error naming the column, never a guess.
//!
//! Parameters assume the writing session uses the `utf8mb4` connection character set
//! (mysql_async's default) and `time_zone = '+00:00'` (TIMESTAMP parameters are read
//! in the session's zone).

use crate::canonical::value::{civil_from_days, Date, Decimal, Timestamp, Value, MICROS_PER_DAY};
use crate::mysql::charset::{charset_len, charset_of, charset_refusal, Charset};
use crate::mysql::codec_error::{show, MysqlEncodeError};
use crate::mysql::column::{lob_byte_limit, paren_numbers, MysqlColumn};
use crate::mysql::decode::decode_query_value;
use crate::mysql::time::{
    datetime_max_days, datetime_min_days, my_time, push_timestamp, show_date, show_time,
    MICROS_PER_SECOND, TIMESTAMP_MAX_MICROS, TIMESTAMP_MIN_MICROS, TIME_MAX_MICROS,
};
use mysql_async::Value as MyValue;
use std::borrow::Cow;
use std::fmt::Write as _;

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

/// The placeholder for a value of `col` compared with the column (a key
/// in `WHERE`, `IN`, `CASE WHEN` or a keyset bound). A DECIMAL goes as text
/// ([`encode_param`]), and MySQL compares a decimal with a string as
/// floating-point numbers: keys that differ only past 15 digits would match
/// each other (another row read, updated or deleted) or, as keyset bounds,
/// skip each other. Cast to the column's own DECIMAL, they compare exactly.
pub fn compared_placeholder(col: &MysqlColumn) -> String {
    match col.data_type.as_str() {
        "decimal" | "numeric" => {
            // `decimal(20,0) unsigned`: the precision and scale.
            let digits = col
                .column_type
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(inside, _)| inside.replace(' ', ""))
                .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit() || c == ','))
                .unwrap_or_else(|| "65,30".to_string());
            format!("CAST(? AS DECIMAL({digits}))")
        }
        _ => "?".to_string(),
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
pub(super) fn json_valid(s: &str) -> bool {
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

fn check_precision(t: &Target, micros: i64) -> Result<(), MysqlEncodeError> {
    let fsp = t.col.fsp();
    let need = crate::canonical::value::fraction_digits(micros);
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
    use crate::mysql::codec_error::MysqlEncodeError;
    use crate::mysql::column::MysqlColumn;
    use crate::mysql::test_util::*;
    use crate::mysql::time::{MICROS_PER_SECOND, TIMESTAMP_MAX_MICROS, TIME_MAX_MICROS};
    use proptest::prelude::*;

    #[test]
    fn a_decimal_is_compared_as_its_own_decimal() {
        let p = |t: &str| compared_placeholder(&col("k", t, None));
        assert_eq!(p("decimal(20,0)"), "CAST(? AS DECIMAL(20,0))");
        assert_eq!(p("decimal(20,4) unsigned"), "CAST(? AS DECIMAL(20,4))");
        assert_eq!(p("bigint(20) unsigned"), "?");
        assert_eq!(p("varchar(10)"), "?");
    }

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

    proptest! {
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

    }
}
