//! MySQL date and time arithmetic shared by decoding and encoding: the ranges of
//! DATE, DATETIME, TIMESTAMP and TIME, their display in messages, and microseconds as
//! mysql_common's TIME value.

use crate::canonical::value::{civil_from_days, days_from_civil, Date, Timestamp, MICROS_PER_DAY};
use mysql_async::Value as MyValue;
use std::fmt::Write as _;

pub(super) const MICROS_PER_SECOND: i64 = 1_000_000;
/// 838:59:59.999999, the largest MySQL TIME.
pub(super) const TIME_MAX_MICROS: i64 = (838 * 3600 + 59 * 60 + 59) * MICROS_PER_SECOND + 999_999;
/// 1000-01-01, the start of DATE's and DATETIME's documented range.
pub(super) fn datetime_min_days() -> i64 {
    days_from_civil(1000, 1, 1)
}
/// 9999-12-31, the end of DATE's and DATETIME's range.
pub(super) fn datetime_max_days() -> i64 {
    days_from_civil(9999, 12, 31)
}
/// 1970-01-01 00:00:01 UTC, the start of TIMESTAMP's range.
pub(super) const TIMESTAMP_MIN_MICROS: i64 = MICROS_PER_SECOND;
/// 2038-01-19 03:14:07.999999 UTC, the end of TIMESTAMP's range.
pub(super) const TIMESTAMP_MAX_MICROS: i64 = (i32::MAX as i64) * MICROS_PER_SECOND + 999_999;

/// `.ffffff` without trailing zeros; nothing for 0.
fn push_ymd(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if y <= 0 {
        let _ = write!(out, "{:04}-{m:02}-{d:02} BC", 1 - y);
    } else {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    }
}

pub(super) fn show_date(d: Date) -> String {
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
pub(super) fn push_timestamp(out: &mut String, micros: i64, sep: char) {
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
    crate::canonical::value::write_fraction(out, (tod % MICROS_PER_SECOND) as u64);
    if y <= 0 {
        out.push_str(" BC");
    }
}

pub(super) fn show_timestamp(ts: Timestamp, tz: bool) -> String {
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
pub(super) fn show_time(micros: i64) -> String {
    let mut out = String::new();
    if micros < 0 {
        out.push('-');
    }
    let a = micros.unsigned_abs();
    crate::canonical::value::write_hms(&mut out, a / 1_000_000);
    crate::canonical::value::write_fraction(&mut out, a % 1_000_000);
    out
}

/// Microseconds as mysql_common's TIME value.
pub(super) fn my_time(micros: i64) -> MyValue {
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
