//! The ranges PostgreSQL's date and time types hold, shared by decoding and
//! encoding.

use crate::canonical::value::{Interval, MICROS_PER_DAY};

/// First PostgreSQL date, 4714-11-24 BC (Julian day 0), in days since 1970-01-01.
pub(super) const PG_DATE_MIN_DAYS: i64 = -2_440_588;
/// Last PostgreSQL date, 5874897-12-31, in days since 1970-01-01.
pub(super) const PG_DATE_MAX_DAYS: i64 = 2_145_042_905;
/// First PostgreSQL timestamp, 4714-11-24 00:00:00 BC, in microseconds since 1970.
pub(super) const PG_TS_MIN_MICROS: i64 = PG_DATE_MIN_DAYS * MICROS_PER_DAY;
/// Days from 1970-01-01 to 294277-01-01, the first instant past PostgreSQL's
/// timestamp range. That range ends about 30 years after `i64::MAX` microseconds
/// since 1970 (294247-01-10 04:00:54.775807), the end of [`Timestamp::Micros`].
pub(super) const PG_TS_END_DAYS: i64 = 106_762_940;

/// PostgreSQL 17's infinite intervals (`INTERVAL_NOEND` / `INTERVAL_NOBEGIN`).
pub(super) const INTERVAL_POS_INFINITY: Interval = Interval {
    months: i32::MAX,
    days: i32::MAX,
    micros: i64::MAX,
};
pub(super) const INTERVAL_NEG_INFINITY: Interval = Interval {
    months: i32::MIN,
    days: i32::MIN,
    micros: i64::MIN,
};

pub(super) const MICROS_PER_SECOND: i64 = 1_000_000;
pub(super) const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
pub(super) const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_util::*;

    use crate::canonical::value::{Timestamp, Value};

    #[test]
    fn range_constants() {
        assert_eq!(ymd(-4713, 11, 24), PG_DATE_MIN_DAYS);
        assert_eq!(ymd(5_874_897, 12, 31), PG_DATE_MAX_DAYS);
        assert_eq!(ymd(294_277, 1, 1), PG_TS_END_DAYS);
        assert!(PG_DATE_MAX_DAYS <= i64::from(i32::MAX));
        // i64::MAX microseconds since 1970 is short of PostgreSQL's last timestamp.
        assert_eq!(
            enc(&Value::Timestamp(Timestamp::Micros(i64::MAX))),
            "294247-01-10 04:00:54.775807"
        );
    }
}
