//! Helpers for the MySQL codec's unit tests: columns from a COLUMN_TYPE string,
//! and decoding/encoding that panics with the column in the message.

use crate::canonical::value::{days_from_civil, Value, MICROS_PER_DAY};
use crate::mysql::column::{lob_byte_limit, paren_numbers, MysqlColumn, BINARY_TYPES, TEXT_TYPES};
use crate::mysql::decode::decode_binlog_value;
use crate::mysql::param::encode_param;
use crate::mysql::time::MICROS_PER_SECOND;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::Value as MyValue;

/// A column as information_schema would describe it, from a COLUMN_TYPE string.
pub(super) fn col(name: &str, column_type: &str, charset: Option<&str>) -> MysqlColumn {
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

pub(super) fn dec(c: &MysqlColumn, v: MyValue) -> Value {
    match decode_binlog_value(c, &BinlogValue::Value(v.clone())) {
        Ok(x) => x,
        Err(e) => panic!("decode {v:?} for {}: {e}", c.column_type),
    }
}

pub(super) fn enc(c: &MysqlColumn, v: &Value) -> MyValue {
    match encode_param(c, v) {
        Ok(x) => x,
        Err(e) => panic!("encode {v:?} for {}: {e}", c.column_type),
    }
}

pub(super) fn refusal(c: &MysqlColumn, v: &Value) -> String {
    match encode_param(c, v) {
        Ok(x) => panic!("{v:?} into {} was accepted as {x:?}", c.column_type),
        Err(e) => e.to_string(),
    }
}

pub(super) fn days(y: i64, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d)
}

pub(super) fn ts_micros(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> i64 {
    days(y, mo, d) * MICROS_PER_DAY + ((h * 60 + mi) * 60 + s) * MICROS_PER_SECOND + us
}
