//! The binlog's raw pieces mysql_common does not read for duplex: event type
//! numbers (MariaDB's GTID, heartbeats, compressed events), MariaDB's GTID event
//! body, binlog file sequence numbers and the column names of a table map.

use mysql_async::binlog::events::{OptionalMetadataField, TableMapEvent};

/// MariaDB's GTID event (not in mysql_common's event list).
pub(super) const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB GTID flag: no COMMIT or XID event follows the transaction's
/// one statement (DDL and the like).
pub(super) const MARIADB_FL_STANDALONE: u8 = 1;
/// MariaDB's compressed query and rows events (`log_bin_compress = ON`),
/// which mysql_common cannot read: 165 query, 166-171 rows.
pub(super) const MARIADB_COMPRESSED_EVENTS: std::ops::RangeInclusive<u8> = 165..=171;
/// Heartbeats the server sends on an idle stream (MySQL and MariaDB; MariaDB 11's v2).
pub(super) const HEARTBEAT_EVENT: u8 = 27;
pub(super) const MARIADB_HEARTBEAT_V2_EVENT: u8 = 164;
/// Three missed heartbeats and more: the connection is presumed dead.
pub(super) const BINLOG_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A MariaDB GTID (`domain-server-sequence`), parsed from the raw GTID event:
/// mysql_common does not know MariaDB's event type 162.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaGtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq_no: u64,
    /// FL_STANDALONE and friends; bit 0 set means no BEGIN/COMMIT pair follows.
    pub flags: u8,
}

impl MariaGtid {
    /// Parse the event body: seq_no (u64 LE), domain id (u32 LE), flags (u8).
    pub fn parse(body: &[u8], server_id: u32) -> Option<MariaGtid> {
        let seq_no = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
        let domain = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
        let flags = *body.get(12)?;
        Some(MariaGtid {
            domain,
            server_id,
            seq_no,
            flags,
        })
    }
}

impl std::fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq_no)
    }
}

/// The sequence number in a binlog file name (`mysql-bin.000042` -> 42).
pub fn binlog_file_seq(name: &str) -> Option<u32> {
    name.rsplit('.').next()?.parse().ok()
}

/// Column names from the table map's optional metadata, when present.
pub(super) fn table_map_column_names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    for field in tme.iter_optional_meta() {
        if let Ok(OptionalMetadataField::ColumnName(names)) = field {
            return names
                .iter_names()
                .map(|n| n.ok().map(|n| n.name().to_string()))
                .collect();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gtid_event_body() {
        let mut body = Vec::new();
        body.extend_from_slice(&42u64.to_le_bytes());
        body.extend_from_slice(&7u32.to_le_bytes());
        body.push(0x01);
        let gtid = MariaGtid::parse(&body, 3).unwrap_or_else(|| panic!("parse"));
        assert_eq!(
            gtid,
            MariaGtid {
                domain: 7,
                server_id: 3,
                seq_no: 42,
                flags: 1
            }
        );
        assert_eq!(gtid.to_string(), "7-3-42");
        assert_eq!(MariaGtid::parse(&body[..10], 3), None);
    }

    #[test]
    fn binlog_file_numbers() {
        assert_eq!(binlog_file_seq("mysql-bin.000042"), Some(42));
        assert_eq!(
            binlog_file_seq("/var/lib/mysql/binlog.123456"),
            Some(123456)
        );
        assert_eq!(binlog_file_seq("nonumber"), None);
    }
}
