//! Reading a binlog rows event into row images ([`RowsEventReader`]), with duplex's
//! own decoding of TIME columns.
//!
//! TIME(n) is decoded here, not by mysql_common: its decoder overflows (panics in
//! debug builds, wraps in release builds) on negative TIME(1) and TIME(2) values
//! with a fraction, and reads the legacy TIME type as unsigned. Read rows events
//! through [`RowsEventReader`], which hands TIME columns over raw and decodes them.

use crate::canonical::value::Value;
use crate::mysql::codec_error::{hex, MysqlDecodeError};
use crate::mysql::column::MysqlColumn;
use crate::mysql::decode::decode_binlog_value;
use crate::mysql::time::{my_time, MICROS_PER_SECOND};
use mysql_async::binlog::events::{Event, FormatDescriptionEvent, RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::binlog::{BinlogVersion, EventType};
use mysql_async::consts::ColumnType;
use mysql_async::Value as MyValue;

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
        // Taken, not cloned: the row owns its values already.
        let mut row = row;
        let mut owned = Vec::with_capacity(row.len());
        for j in 0..row.len() {
            owned.push(row.take(j).map(BinlogValue::into_owned));
        }
        let mut values = owned.into_iter();
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mysql::time::MICROS_PER_SECOND;
    use proptest::prelude::*;

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

    }
}
