//! MySQL/MariaDB source: reads the binlog (ROW format, full images, full
//! metadata) as a replica through mysql_async and turns it into the canonical
//! event stream.
//!
//! A transaction starts at MariaDB's GTID event (MySQL 8: GTID or a `BEGIN`
//! query) and ends at its XID event. Loop prevention: duplex's MySQL applier
//! writes its marker-table row as the *first* statement of every transaction,
//! so the first table map of an applied transaction names that table, and the
//! reader drops the whole transaction before any change of it is passed on.
//!
//! Three layers: the binlog's raw pieces and a statement's text (`binlog`,
//! [`statement`]); the typed events they become (`row_events`,
//! `statement_events`); the replication session that reads the stream and
//! keeps the transaction (`session`), after `server` checked the server's
//! settings. This file holds what they share: the spec and the reader's state.

mod binlog;
mod row_events;
mod server;
mod session;
pub mod statement;
mod statement_events;

pub use binlog::{binlog_file_seq, MariaGtid};
pub use server::{check_binlog_settings, current_position};

use self::row_events::TableInfo;
use self::statement::QualifiedName;
use crate::canonical::{SourcePosition, TxnMeta};
use crate::mysql::MysqlEndpoint;
use crate::source::ready::Ready;
use crate::stats::DirectionStats;
use mysql_async::BinlogStream;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the source must know to read one site's binlog for one link.
#[derive(Debug, Clone)]
pub struct MysqlSourceSpec {
    pub site_id: u32,
    pub endpoint: MysqlEndpoint,
    /// server_id this reader registers with; unique per direction.
    pub replica_server_id: u32,
    pub marker_column: String,
    /// The server-maintained version stamp column (`<marker>_ts`): the time of
    /// the row's last user write, which identifies the version (see `conflict`).
    pub stamp_column: String,
    /// duplex's marker table in the site's database (see the MySQL sink).
    pub marker_table: String,
    /// Synced tables (in the endpoint's database).
    pub tables: HashSet<String>,
    pub start: Option<SourcePosition>,
    /// How the versions of each table are stamped (field merge, unsynced
    /// columns).
    pub stamping: crate::source::Stamping,
}

struct OpenTxn {
    meta: TxnMeta,
    echo: bool,
    begun: bool,
    /// A table map has been seen: the marker table must come first to mark an echo.
    seen_table: bool,
    /// An echo that carried rows of synced tables (a duplex write that only
    /// touched the marker table, e.g. at setup, is not counted as an echo).
    echo_rows: bool,
    /// Opened by a MariaDB GTID event, which says whether a COMMIT or XID
    /// follows (`standalone`: no, the one statement is the transaction, as
    /// for DDL). Without it (MySQL), a DDL statement ends the transaction.
    mariadb_gtid: bool,
    standalone: bool,
    /// Every table was stopped in this transaction already: a further event
    /// of the same kind adds nothing.
    stopped_all: bool,
}

/// Reads one site's binlog and yields [`ChangeEvent`](crate::canonical::ChangeEvent)s.
pub struct MysqlSource {
    spec: MysqlSourceSpec,
    stream: BinlogStream,
    meta: mysql_async::Conn,
    tables: HashMap<String, Arc<TableInfo>>,
    file_seq: u32,
    /// Last non-zero end position seen (see `commit`).
    last_pos: u32,
    txn: Option<OpenTxn>,
    ready: Ready,
    stats: Arc<DirectionStats>,
    /// Whether a table has triggers or is a view, and whether a name is a
    /// stored function, as the catalog said (until the next DDL).
    catalog: HashMap<(bool, QualifiedName), bool>,
}
