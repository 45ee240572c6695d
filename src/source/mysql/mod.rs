//! MySQL/MariaDB source: reads the binlog (ROW format, full images, full
//! metadata) as a replica through mysql_async and turns it into the canonical
//! event stream.
//!
//! A transaction starts at MariaDB's GTID event (MySQL 8: GTID or a `BEGIN`
//! query) and ends at its XID event. Loop prevention: duplex's MySQL applier
//! writes its marker-table row as the *first* statement of every transaction,
//! so the first table map of an applied transaction names that table, and the
//! reader drops the whole transaction before any change of it is passed on.

pub mod statement;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures_util::StreamExt;
use mysql_async::binlog::events::{EventData, OptionalMetadataField, RowsEventData, TableMapEvent};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest};

use self::statement::{classify, Control, QualifiedName};
use crate::canonical::encode::row_checksum;
use crate::canonical::{
    ChangeEvent, ColumnSchema, Op, Row, RowChange, SourcePosition, TableName, TableSchema, TxnMeta,
    Unreplicable, Value,
};
use crate::marker::Marker;
use crate::mysql::types::{decode_binlog_value, read_rows_event, BinlogImage, MysqlColumn};
use crate::mysql::MysqlEndpoint;
use crate::stats::DirectionStats;

/// MariaDB's GTID event (not in mysql_common's event list).
const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB GTID flag: no COMMIT or XID event follows the transaction's
/// one statement (DDL and the like).
const MARIADB_FL_STANDALONE: u8 = 1;
/// MariaDB's compressed query and rows events (`log_bin_compress = ON`),
/// which mysql_common cannot read: 165 query, 166-171 rows.
const MARIADB_COMPRESSED_EVENTS: std::ops::RangeInclusive<u8> = 165..=171;
/// Heartbeats the server sends on an idle stream (MySQL and MariaDB; MariaDB 11's v2).
const HEARTBEAT_EVENT: u8 = 27;
const MARIADB_HEARTBEAT_V2_EVENT: u8 = 164;
/// Three missed heartbeats and more: the connection is presumed dead.
const BINLOG_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MysqlSourceError {
    #[error("binlog stream: {0}")]
    Stream(#[from] mysql_async::Error),
    #[error("binlog event at {position}: {source}")]
    Event {
        position: SourcePosition,
        #[source]
        source: std::io::Error,
    },
    #[error("table {table} column {column} at {position}: {reason}")]
    BadValue {
        table: TableName,
        column: String,
        position: SourcePosition,
        reason: String,
    },
    #[error("table {table}: {reason}")]
    Table { table: TableName, reason: String },
    #[error("binlog file for position {position} is gone from the server (purged?); the link needs a resync")]
    Purged { position: SourcePosition },
    #[error(
        "the server is not set up for duplex's binlog reader:\n{problems}\nfix these lines in the [mysqld] section of my.cnf and restart the server"
    )]
    Settings { problems: String },
}

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
    /// Tables under field-level merge: their versions carry column tags.
    pub field_merge_tables: HashSet<String>,
}

struct TableInfo {
    schema: Arc<TableSchema>,
    columns: Vec<MysqlColumn>,
    /// Binlog column index -> canonical row index (`None` for the marker column).
    row_index: Vec<Option<usize>>,
    marker_index: Option<usize>,
    stamp_index: Option<usize>,
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

pub struct MysqlSource {
    spec: MysqlSourceSpec,
    stream: BinlogStream,
    meta: mysql_async::Conn,
    tables: HashMap<String, Arc<TableInfo>>,
    file_seq: u32,
    /// Last non-zero end position seen (see `commit`).
    last_pos: u32,
    txn: Option<OpenTxn>,
    ready: VecDeque<ChangeEvent>,
    stats: Arc<DirectionStats>,
    /// Whether a table has triggers or is a view, and whether a name is a
    /// stored function, as the catalog said (until the next DDL).
    catalog: HashMap<(bool, QualifiedName), bool>,
}

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

/// Check every server setting the reader depends on; one error lists them all.
pub async fn check_binlog_settings(conn: &mut mysql_async::Conn) -> Result<(), MysqlSourceError> {
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await?
        .unwrap_or_default();
    let mariadb = version.to_lowercase().contains("mariadb");
    let get = |name: &'static str| format!("SELECT CAST(@@GLOBAL.{name} AS CHAR)");
    let mut problems = Vec::new();
    let want = |problems: &mut Vec<String>,
                name: &str,
                current: Option<String>,
                expected: &str,
                fix: &str| {
        let cur = current.unwrap_or_else(|| "(unset)".into());
        if !cur.eq_ignore_ascii_case(expected) {
            problems.push(format!("  {name} is {cur}, needs {expected}:  {fix}"));
        }
    };
    let on_off = |v: Option<String>| {
        v.map(|v| match v.as_str() {
            "1" => "ON".to_string(),
            "0" => "OFF".to_string(),
            _ => v,
        })
    };
    let log_bin: Option<String> = conn.query_first(get("log_bin")).await?;
    want(
        &mut problems,
        "log_bin",
        on_off(log_bin),
        "ON",
        "log_bin = mysql-bin",
    );
    let format: Option<String> = conn.query_first(get("binlog_format")).await?;
    want(
        &mut problems,
        "binlog_format",
        format,
        "ROW",
        "binlog_format = ROW",
    );
    let image: Option<String> = conn.query_first(get("binlog_row_image")).await?;
    want(
        &mut problems,
        "binlog_row_image",
        image,
        "FULL",
        "binlog_row_image = FULL",
    );
    let meta: Option<String> = conn.query_first(get("binlog_row_metadata")).await?;
    want(
        &mut problems,
        "binlog_row_metadata",
        meta,
        "FULL",
        "binlog_row_metadata = FULL",
    );
    let server_id: Option<String> = conn.query_first(get("server_id")).await?;
    if server_id.as_deref() == Some("0") || server_id.is_none() {
        problems.push(format!(
            "  server_id is {}, needs a unique non-zero value:  server_id = 1",
            server_id.unwrap_or_default()
        ));
    }
    if !mariadb {
        // MySQL 8: compressed transaction payloads carry log_pos 0 inside and
        // are unpacked whole in memory: positions and bounded memory break.
        let compress: Option<String> = conn
            .query_first("SELECT CAST(@@GLOBAL.binlog_transaction_compression AS CHAR)")
            .await
            .unwrap_or(None);
        if let Some(c) = compress {
            want(
                &mut problems,
                "binlog_transaction_compression",
                on_off(Some(c)),
                "OFF",
                "binlog_transaction_compression = OFF",
            );
        }
    }
    if mariadb {
        let compress: Option<String> = conn.query_first(get("log_bin_compress")).await?;
        want(
            &mut problems,
            "log_bin_compress",
            on_off(compress),
            "OFF",
            "log_bin_compress = OFF",
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(MysqlSourceError::Settings {
            problems: problems.join("\n"),
        })
    }
}

/// The server's current binlog position (where a new link starts reading).
pub async fn current_position(
    conn: &mut mysql_async::Conn,
) -> Result<SourcePosition, MysqlSourceError> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        // MySQL 8.4 renamed it.
        Err(_) => conn.query_first("SHOW BINARY LOG STATUS").await?,
    };
    let (file, pos) = row
        .and_then(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .ok_or_else(|| MysqlSourceError::Settings {
            problems: "  log_bin is OFF (SHOW MASTER STATUS is empty):  log_bin = mysql-bin".into(),
        })?;
    let file_seq = binlog_file_seq(&file).ok_or_else(|| MysqlSourceError::Settings {
        problems: format!("  binlog file name {file} has no numeric suffix"),
    })?;
    let pos = u32::try_from(pos).map_err(|_| MysqlSourceError::Settings {
        problems: format!(
            "  binlog offset {pos} in {file} is beyond 4 GiB, which duplex cannot address"
        ),
    })?;
    Ok(SourcePosition::Binlog { file_seq, pos })
}

impl MysqlSource {
    pub async fn connect(
        spec: MysqlSourceSpec,
        stats: Arc<DirectionStats>,
    ) -> Result<MysqlSource, crate::Error> {
        let site = spec.endpoint.site_name.clone();
        let err = |e: MysqlSourceError| crate::Error::mysql_source_error(&site, e);
        let mut meta = spec.endpoint.connect().await?;
        check_binlog_settings(&mut meta).await.map_err(err)?;
        let start = match spec.start {
            Some(p) => p,
            None => current_position(&mut meta).await.map_err(err)?,
        };
        let SourcePosition::Binlog { file_seq, pos } = start else {
            return Err(crate::Error::Internal(format!(
                "a binlog source was asked to start at {start}"
            )));
        };
        // Find the file of that sequence number.
        let logs: Vec<(String, u64)> = meta
            .query("SHOW BINARY LOGS")
            .await
            .map_err(|e| err(e.into()))?;
        let file = logs
            .iter()
            .map(|(name, _)| name)
            .find(|name| binlog_file_seq(name) == Some(file_seq))
            .cloned()
            .ok_or_else(|| err(MysqlSourceError::Purged { position: start }))?;
        let mut conn = spec.endpoint.connect().await?;
        // Without this MariaDB rewrites its GTID events as BEGIN queries.
        // A heartbeat every 5 s on an idle stream lets the reader tell a quiet
        // server from a dead connection (see the read timeout in next_event).
        conn.query_drop("SET @master_heartbeat_period = 5000000000")
            .await
            .map_err(|e| err(e.into()))?;
        conn.query_drop("SET @mariadb_slave_capability = 4")
            .await
            .map_err(|e| err(e.into()))?;
        let request = BinlogStreamRequest::new(spec.replica_server_id)
            .with_filename(file.as_bytes())
            .with_pos(u64::from(pos.max(4)));
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| err(e.into()))?;
        Ok(MysqlSource {
            spec,
            stream,
            meta,
            tables: HashMap::new(),
            file_seq,
            last_pos: pos,
            txn: None,
            ready: VecDeque::new(),
            stats,
            catalog: HashMap::new(),
        })
    }

    pub fn site_name(&self) -> &str {
        &self.spec.endpoint.site_name
    }

    fn position(&self, pos: u32) -> SourcePosition {
        SourcePosition::Binlog {
            file_seq: self.file_seq,
            pos,
        }
    }

    fn begin(&mut self, log_pos: u32, timestamp: u32) {
        if self.txn.is_none() {
            self.txn = Some(OpenTxn {
                meta: TxnMeta {
                    commit_position: self.position(log_pos),
                    commit_time_us: i64::from(timestamp) * 1_000_000,
                    xid: 0,
                },
                echo: false,
                begun: false,
                seen_table: false,
                echo_rows: false,
                mariadb_gtid: false,
                standalone: false,
                stopped_all: false,
            });
        }
    }

    fn commit(&mut self, log_pos: u32) -> ChangeEvent {
        // log_pos 0 (MariaDB 11.4+ inside transactions, MySQL compressed
        // payloads) must never become a resume point: keep the last good one.
        let log_pos = if log_pos == 0 { self.last_pos } else { log_pos };
        self.last_pos = log_pos;
        let position = self.position(log_pos);
        self.stats.set_source_position(position);
        match self.txn.take() {
            Some(t) if t.begun => ChangeEvent::Commit {
                end_position: position,
            },
            Some(t) => {
                if t.echo_rows {
                    tracing::debug!(position = %t.meta.commit_position, "skipped duplex's own transaction");
                    self.stats
                        .echo_txns_skipped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                ChangeEvent::Progress { position }
            }
            None => ChangeEvent::Progress { position },
        }
    }

    /// The next event, or `None` when the stream ended. Not cancel-safe.
    pub async fn next_event(&mut self) -> Result<Option<ChangeEvent>, MysqlSourceError> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(ev));
            }
            let next = tokio::time::timeout(BINLOG_READ_TIMEOUT, self.stream.next())
                .await
                .map_err(|_| MysqlSourceError::Event {
                    position: self.position(self.last_pos),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no binlog event or heartbeat for 30 s: the connection is presumed dead",
                    ),
                })?;
            let Some(event) = next else { return Ok(None) };
            let event = event?;
            let header = event.header();
            let log_pos = header.log_pos();
            if header.event_type_raw() == HEARTBEAT_EVENT
                || header.event_type_raw() == MARIADB_HEARTBEAT_V2_EVENT
            {
                continue;
            }
            if header.event_type_raw() == MARIADB_GTID_EVENT {
                self.begin(log_pos, header.timestamp());
                if let (Some(gtid), Some(t)) = (
                    MariaGtid::parse(event.data(), header.server_id()),
                    self.txn.as_mut(),
                ) {
                    // The sequence number identifies the transaction in messages.
                    t.meta.xid = gtid.seq_no;
                    t.mariadb_gtid = true;
                    t.standalone = gtid.flags & MARIADB_FL_STANDALONE != 0;
                    tracing::trace!(gtid = %gtid, position = %t.meta.commit_position, "transaction");
                }
                continue;
            }
            if MARIADB_COMPRESSED_EVENTS.contains(&header.event_type_raw()) {
                let start = log_pos.saturating_sub(header.event_size());
                let standalone = self.txn.is_none();
                self.unreplicable(
                    None,
                    "a compressed binlog event (log_bin_compress was turned on), which duplex cannot read",
                    "",
                    log_pos,
                    start,
                    header.timestamp(),
                    "set log_bin_compress = OFF",
                    standalone,
                );
                if let Some(ev) = self.ready.pop_front() {
                    return Ok(Some(ev));
                }
                continue;
            }
            let data = match event.read_data() {
                Ok(Some(d)) => d,
                // MariaDB-only events (annotate rows, checkpoints, GTID lists).
                Ok(None) => continue,
                Err(e) => {
                    return Err(MysqlSourceError::Event {
                        position: self.position(log_pos),
                        source: e,
                    })
                }
            };
            match data {
                EventData::RotateEvent(r) => {
                    if let Some(seq) = binlog_file_seq(&r.name()) {
                        self.file_seq = seq;
                    }
                }
                EventData::GtidEvent(_) => self.begin(log_pos, header.timestamp()),
                EventData::QueryEvent(q) => {
                    let start = log_pos.saturating_sub(header.event_size());
                    let (query, db) = (q.query().into_owned(), q.schema().into_owned());
                    if let Some(ev) = self
                        .statement(&query, &db, log_pos, start, header.timestamp())
                        .await?
                    {
                        return Ok(Some(ev));
                    }
                }
                // LOAD DATA logged as a statement: the file's blocks, then
                // the statement that loads them.
                EventData::ExecuteLoadQueryEvent(q) => {
                    let start = log_pos.saturating_sub(header.event_size());
                    let (query, db) = (q.query().into_owned(), q.schema().into_owned());
                    if let Some(ev) = self
                        .statement(&query, &db, log_pos, start, header.timestamp())
                        .await?
                    {
                        return Ok(Some(ev));
                    }
                }
                // Events that change rows duplex cannot see: every table
                // stops rather than silently missing them.
                EventData::IncidentEvent(_)
                | EventData::LoadEvent(_)
                | EventData::NewLoadEvent(_)
                | EventData::ExecLoadEvent(_)
                | EventData::CreateFileEvent(_)
                | EventData::TransactionPayloadEvent(_)
                | EventData::PreGaWriteRowsEvent(_)
                | EventData::PreGaUpdateRowsEvent(_)
                | EventData::PreGaDeleteRowsEvent(_) => {
                    let start = log_pos.saturating_sub(header.event_size());
                    let (what, fix) = match &data {
                        EventData::IncidentEvent(_) => (
                            "an incident event: the server says changes may be missing from the binlog",
                            "find the cause in the server's error log",
                        ),
                        EventData::TransactionPayloadEvent(_) => (
                            "a compressed transaction (binlog_transaction_compression = ON in a session), which duplex cannot read",
                            "set binlog_transaction_compression = OFF",
                        ),
                        _ => (
                            "an old-format LOAD DATA or rows event, which duplex cannot read",
                            "set binlog_format = ROW",
                        ),
                    };
                    let standalone = self.txn.is_none();
                    self.unreplicable(
                        None,
                        what,
                        "",
                        log_pos,
                        start,
                        header.timestamp(),
                        fix,
                        standalone,
                    );
                    if let Some(ev) = self.ready.pop_front() {
                        return Ok(Some(ev));
                    }
                }
                // MySQL's XA PREPARE ends the first part of an XA
                // transaction (its XA START already stopped every table).
                EventData::XaPrepareLogEvent(_) => return Ok(Some(self.commit(log_pos))),
                EventData::TableMapEvent(t) => self.table_map(&t),
                EventData::RowsEvent(rows) => self.rows(&rows, log_pos).await?,
                EventData::XidEvent(_) => return Ok(Some(self.commit(log_pos))),
                _ => {}
            }
        }
    }

    /// A statement event (Query, or Execute_load_query) with default
    /// database `default_db`, ending at `log_pos` (starting at `start`).
    async fn statement(
        &mut self,
        query: &str,
        default_db: &str,
        log_pos: u32,
        start: u32,
        timestamp: u32,
    ) -> Result<Option<ChangeEvent>, MysqlSourceError> {
        let c = classify(query, default_db);
        match &c.control {
            Some(Control::Begin) => {
                self.begin(log_pos, timestamp);
                return Ok(None);
            }
            Some(Control::Commit) => return Ok(Some(self.commit(log_pos))),
            Some(Control::Rollback) => {
                // As before: the transaction's changes are not passed on.
                self.txn = None;
                return Ok(Some(ChangeEvent::Progress {
                    position: self.position(log_pos),
                }));
            }
            Some(Control::Truncate(t)) => {
                // TRUNCATE is logged as a statement even in ROW format.
                self.txn = None;
                if let Some(name) = self.synced_table(t) {
                    let info = self.table_info(&name).await?;
                    let meta = TxnMeta {
                        commit_position: self.position(log_pos),
                        commit_time_us: i64::from(timestamp) * 1_000_000,
                        xid: 0,
                    };
                    self.stats.set_source_position(self.position(log_pos));
                    self.ready.push_back(ChangeEvent::Begin(meta));
                    self.ready
                        .push_back(ChangeEvent::Truncate(vec![info.schema.clone()]));
                    self.ready.push_back(ChangeEvent::Commit {
                        end_position: self.position(log_pos),
                    });
                    return Ok(self.ready.pop_front());
                }
                return Ok(Some(ChangeEvent::Progress {
                    position: self.position(log_pos),
                }));
            }
            None => {}
        }
        // Which synced tables it may have changed: those it writes by name,
        // or every one when that cannot be told (an unknown statement, a
        // trigger or a view on a table it writes, a stored function).
        let mut named: Vec<String> = c
            .writes
            .iter()
            .chain(&c.created)
            .filter_map(|q| self.synced_table(q))
            .collect();
        named.sort();
        named.dedup();
        let mut everything = c.unknown.clone();
        // A name in a character set that did not read as UTF-8 cannot be
        // matched against the synced tables.
        if everything.is_none()
            && c.writes
                .iter()
                .chain(&c.created)
                .chain(&c.calls)
                .any(|q| q.db.contains('\u{FFFD}') || q.name.contains('\u{FFFD}'))
        {
            everything = Some("it names a table in a character set duplex cannot read".to_string());
        }
        if everything.is_none() {
            for w in &c.writes {
                if self.writes_elsewhere(w).await? {
                    everything = Some(format!(
                        "{w} has triggers or is a view, which may have changed other tables"
                    ));
                    break;
                }
            }
        }
        if everything.is_none() {
            for f in &c.calls {
                if self.is_stored_function(f).await? {
                    everything = Some(format!(
                        "it calls the stored function {f}, which may have changed any table"
                    ));
                    break;
                }
            }
        }
        if c.ddl {
            // Table shapes may have changed.
            self.tables.clear();
            self.catalog.clear();
        }
        // Does the statement end its transaction? MariaDB's GTID says (a
        // standalone one has no COMMIT or XID: DDL and the like; CREATE TABLE
        // ... SELECT in ROW format is not standalone). Without it (MySQL),
        // anything but a write commits implicitly. Outside a transaction, the
        // statement is one of its own.
        let dml = !c.writes.is_empty() || !c.created.is_empty() || c.unknown.is_some();
        let ends = match &self.txn {
            None => true,
            Some(t) if t.mariadb_gtid => t.standalone,
            Some(_) => !dml,
        };
        if everything.is_none() && named.is_empty() {
            if c.ddl {
                tracing::info!(site = %self.spec.endpoint.site_name, schema = %default_db, statement = %abbreviate(query), "DDL in the binlog: reloading table definitions");
            } else if !c.writes.is_empty() || !c.created.is_empty() {
                tracing::info!(site = %self.spec.endpoint.site_name, schema = %default_db, statement = %abbreviate(query),
                    "a write logged as a statement changed no synced table");
            }
            if ends {
                return Ok(Some(self.commit(log_pos)));
            }
            return Ok(None);
        }
        let what = format!(
            "a write logged as a statement, not as rows (default database {})",
            if default_db.is_empty() {
                "none"
            } else {
                default_db
            }
        );
        let tables = match &everything {
            Some(why) => {
                let what = match &c.unknown {
                    Some(_) => format!(
                        "a statement that may change rows, logged without them (default database {}): {why}",
                        if default_db.is_empty() { "none" } else { default_db }
                    ),
                    None => format!("{what}: {why}"),
                };
                self.unreplicable(None, &what, query, log_pos, start, timestamp, "", ends);
                return Ok(self.ready.pop_front());
            }
            None => named,
        };
        self.unreplicable(
            Some(tables),
            &what,
            query,
            log_pos,
            start,
            timestamp,
            "",
            ends,
        );
        Ok(self.ready.pop_front())
    }

    /// The synced table `q` names, if any. Names compare without case: with
    /// lower_case_table_names set, `T` is table `t`; elsewhere two tables
    /// differing only in case are rare, and then both count.
    fn synced_table(&self, q: &QualifiedName) -> Option<String> {
        let same = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
        if !same(&q.db, self.spec.endpoint.database()) {
            return None;
        }
        self.spec.tables.iter().find(|t| same(t, &q.name)).cloned()
    }

    /// Stop `tables` (bare names; `None`: every synced table) for an event
    /// whose changes duplex cannot replicate, inside the open transaction
    /// (or one of its own). `fix`: what to set, besides the usual advice.
    #[allow(clippy::too_many_arguments)]
    fn unreplicable(
        &mut self,
        tables: Option<Vec<String>>,
        what: &str,
        statement: &str,
        log_pos: u32,
        start: u32,
        timestamp: u32,
        fix: &str,
        ends: bool,
    ) {
        let site_db = self.spec.endpoint.database().to_string();
        let all = tables.is_none();
        let mut names = tables.unwrap_or_else(|| self.spec.tables.iter().cloned().collect());
        names.sort();
        let position = self.position(start);
        let site = &self.spec.endpoint.site_name;
        let shown = if statement.is_empty() {
            String::new()
        } else {
            format!(": {}", abbreviate(statement))
        };
        let scope = if all {
            "Duplex cannot tell which tables it changed, so every table of this direction stops"
                .to_string()
        } else {
            format!(
                "Its rows are not in the binlog, so duplex cannot replicate them: table{} {} stop{} in this direction",
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                if names.len() == 1 { "s" } else { "" }
            )
        };
        let fix = if fix.is_empty() {
            "make every session log rows (SET GLOBAL binlog_format = ROW, and no SET SESSION binlog_format = STATEMENT or MIXED)".to_string()
        } else {
            fix.to_string()
        };
        let repair = match names.as_slice() {
            _ if all => format!("duplex repair --from {site}"),
            [one] => format!("duplex repair --from {site} --table {one}"),
            _ => format!("duplex repair --from {site} --table T, for each of them"),
        };
        let reason = format!(
            "{what}, at {position}{shown}. {scope} (their later changes are held, nothing is lost). Fix: {fix}; resync ({repair}); then discard these statement records (duplex quarantine list; duplex quarantine discard ID...): the held changes are then applied"
        );
        tracing::error!(site = %site, %position, statement = %abbreviate(statement), "{what}: tables stop");
        if self.txn.is_none() {
            // A transaction of its own, starting where the event starts:
            // its records' position must lie before its end (see
            // `Quarantine::reconcile`).
            self.begin(start, timestamp);
        }
        if let Some(t) = self.txn.as_mut() {
            if all && t.stopped_all && !ends {
                return;
            }
            t.stopped_all |= all;
            if !t.begun {
                t.begun = true;
                self.ready.push_back(ChangeEvent::Begin(t.meta.clone()));
            }
        }
        self.ready
            .push_back(ChangeEvent::Unreplicable(Unreplicable {
                tables: names
                    .into_iter()
                    .map(|n| TableName::new(site_db.clone(), n))
                    .collect(),
                statement: statement.chars().take(4000).collect(),
                position,
                reason,
            }));
        if ends {
            let commit = self.commit(log_pos);
            self.ready.push_back(commit);
        }
    }

    /// May a write to `t` have changed other tables: does it have triggers,
    /// or is it a view? As far as duplex's account can see (triggers need
    /// the TRIGGER privilege to be listed).
    async fn writes_elsewhere(&mut self, t: &QualifiedName) -> Result<bool, MysqlSourceError> {
        if t.db.is_empty() {
            return Ok(false);
        }
        let key = (true, t.clone());
        if let Some(&known) = self.catalog.get(&key) {
            return Ok(known);
        }
        let n: Option<i64> = self
            .meta
            .exec_first(
                "SELECT (SELECT COUNT(*) FROM information_schema.TRIGGERS
                          WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?)
                      + (SELECT COUNT(*) FROM information_schema.VIEWS
                          WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?)",
                (
                    t.db.as_str(),
                    t.name.as_str(),
                    t.db.as_str(),
                    t.name.as_str(),
                ),
            )
            .await?;
        let found = n.unwrap_or(0) > 0;
        self.catalog.insert(key, found);
        Ok(found)
    }

    /// Is `f` a stored function (as far as duplex's account can see)?
    async fn is_stored_function(&mut self, f: &QualifiedName) -> Result<bool, MysqlSourceError> {
        if f.db.is_empty() {
            return Ok(false);
        }
        let key = (false, f.clone());
        if let Some(&known) = self.catalog.get(&key) {
            return Ok(known);
        }
        let n: Option<i64> = self
            .meta
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.ROUTINES
                  WHERE ROUTINE_SCHEMA = ? AND ROUTINE_NAME = ? AND ROUTINE_TYPE = 'FUNCTION'",
                (f.db.as_str(), f.name.as_str()),
            )
            .await?;
        let found = n.unwrap_or(0) > 0;
        self.catalog.insert(key, found);
        Ok(found)
    }

    fn table_map(&mut self, t: &TableMapEvent<'_>) {
        let is_marker = t.database_name() == self.spec.endpoint.database()
            && t.table_name() == self.spec.marker_table;
        if let Some(txn) = self.txn.as_mut() {
            if is_marker && !txn.seen_table {
                txn.echo = true;
            }
            txn.seen_table = true;
        }
    }

    async fn table_info(&mut self, table: &str) -> Result<Arc<TableInfo>, MysqlSourceError> {
        if let Some(t) = self.tables.get(table) {
            return Ok(t.clone());
        }
        let db = self.spec.endpoint.database().to_string();
        let name = TableName::new(db.clone(), table);
        let columns = MysqlColumn::load_table(&mut self.meta, &db, table).await?;
        let key_names: Vec<String> = self
            .meta
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (db.as_str(), table),
            )
            .await?;
        let mut schema_columns = Vec::new();
        let mut row_index = Vec::new();
        let mut marker_index = None;
        let mut stamp_index = None;
        for (i, c) in columns.iter().enumerate() {
            if c.name == self.spec.marker_column {
                marker_index = Some(i);
                row_index.push(None);
            } else if c.name == self.spec.stamp_column {
                stamp_index = Some(i);
                row_index.push(None);
            } else {
                row_index.push(Some(schema_columns.len()));
                schema_columns.push(ColumnSchema {
                    name: c.name.clone(),
                    type_name: c.column_type.clone(),
                });
            }
        }
        let key = key_names
            .iter()
            .map(|k| schema_columns.iter().position(|c| &c.name == k))
            .collect::<Option<Vec<_>>>()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| MysqlSourceError::Table {
                table: name.clone(),
                reason: "has no primary key; duplex syncs only tables with a primary key".into(),
            })?;
        let info = Arc::new(TableInfo {
            schema: Arc::new(TableSchema {
                table: name,
                columns: schema_columns,
                key,
            }),
            columns,
            row_index,
            marker_index,
            stamp_index,
        });
        self.tables.insert(table.to_string(), info.clone());
        Ok(info)
    }

    async fn rows(
        &mut self,
        rows: &RowsEventData<'_>,
        log_pos: u32,
    ) -> Result<(), MysqlSourceError> {
        let Some(txn) = self.txn.as_ref() else {
            // Rows outside any transaction would be applied nowhere: refuse.
            return Err(MysqlSourceError::Event {
                position: self.position(log_pos),
                source: std::io::Error::other(
                    "a rows event outside a transaction (no GTID/BEGIN before it)",
                ),
            });
        };
        let (echo, position, commit_time_us) =
            (txn.echo, txn.meta.commit_position, txn.meta.commit_time_us);
        let Some(tme) = self
            .stream
            .get_tme(rows.table_id())
            .map(|t| t.clone().into_owned())
        else {
            return Err(MysqlSourceError::Event {
                position: self.position(log_pos),
                source: std::io::Error::other(format!(
                    "rows event for unknown table id {}",
                    rows.table_id()
                )),
            });
        };
        let table = tme.table_name().to_string();
        if tme.database_name() != self.spec.endpoint.database()
            || !self.spec.tables.contains(&table)
        {
            return Ok(());
        }
        if echo {
            if let Some(t) = self.txn.as_mut() {
                t.echo_rows = true;
            }
        }
        let mut info = self.table_info(&table).await?;
        // Values are matched to columns by position: the layout duplex holds
        // must be the one the event was written with, or values would land in
        // the wrong columns. The table map names its columns (full metadata).
        let binlog_names = table_map_column_names(&tme);
        let layout_matches = |info: &TableInfo| match &binlog_names {
            Some(names) => {
                names.len() == info.columns.len()
                    && names.iter().zip(&info.columns).all(|(n, c)| n == &c.name)
            }
            None => usize::try_from(tme.columns_count()).ok() == Some(info.columns.len()),
        };
        if !layout_matches(&info) {
            self.tables.remove(&table);
            info = self.table_info(&table).await?;
            if !layout_matches(&info) {
                return Err(MysqlSourceError::Table {
                    table: info.schema.table.clone(),
                    reason: format!(
                        "the binlog at {position} has columns {:?} but the table now has {:?} (DDL since then); duplex will not guess which value belongs where: resync the table",
                        binlog_names.unwrap_or_default(),
                        info.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>()
                    ),
                });
            }
        }
        let op = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Insert,
            RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => Op::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(MysqlSourceError::Table {
                    table: info.schema.table.clone(),
                    reason: "partial JSON update events (binlog_row_value_options=PARTIAL_JSON) are not supported; turn that option off".into(),
                })
            }
        };
        // Through the codec's reader: it works around mysql_common's decoding of
        // negative fractional TIME values.
        let images = read_rows_event(&tme, rows).map_err(|e| MysqlSourceError::BadValue {
            table: info.schema.table.clone(),
            column: String::new(),
            position,
            reason: e.to_string(),
        })?;
        for (before, after) in images {
            let before = before
                .map(|r| self.decode_row(&info, &r, position))
                .transpose()?;
            let after = after
                .map(|r| self.decode_row(&info, &r, position))
                .transpose()?;
            let marker = if echo {
                // duplex's own write: passed on only when the applier flagged
                // it to flow back (see `marker::Resolution`).
                let text = match op {
                    Op::Delete => before.as_ref().and_then(|b| b.1.as_deref()),
                    _ => after.as_ref().and_then(|a| a.1.as_deref()),
                };
                match Marker::forwarded(
                    text,
                    self.spec.site_id,
                    position.counter(),
                    op == Op::Delete,
                ) {
                    Some(m) => m,
                    None => continue,
                }
            } else {
                let crc = after
                    .as_ref()
                    .and_then(|a| row_checksum(&info.schema, &a.0))
                    .unwrap_or(0);
                // The version time: the stamp column the server set on this
                // write (what the site reads back from the row); a delete has
                // no new row, and takes the event's time.
                let t = after.as_ref().and_then(|a| a.2).unwrap_or(commit_time_us);
                let dot = crate::marker::Dot {
                    c: position.counter(),
                    t,
                };
                let prior_text = after
                    .as_ref()
                    .and_then(|a| a.1.as_deref())
                    .or(before.as_ref().and_then(|b| b.1.as_deref()));
                let mut m = Marker::for_user_write(
                    prior_text,
                    None,
                    self.spec.site_id,
                    dot,
                    crc,
                    &info.schema.table,
                );
                if self
                    .spec
                    .field_merge_tables
                    .contains(&info.schema.table.name)
                {
                    if let Some(a) = &after {
                        let prior = Marker::parse_lenient(prior_text, &info.schema.table);
                        m.cols = crate::conflict::column_tags(
                            &info.schema,
                            &a.0,
                            prior.as_ref(),
                            self.spec.site_id,
                            dot,
                        );
                    }
                }
                m
            };
            if let Some(t) = self.txn.as_mut() {
                if !t.begun {
                    t.begun = true;
                    tracing::debug!(position = %t.meta.commit_position, table = %info.schema.table, "transaction from the binlog");
                    self.ready.push_back(ChangeEvent::Begin(t.meta.clone()));
                }
            }
            self.ready.push_back(ChangeEvent::Change(RowChange {
                table: info.schema.clone(),
                op,
                before: before.map(|b| b.0),
                after: after.map(|a| a.0),
                marker,
            }));
        }
        Ok(())
    }

    fn decode_row(
        &self,
        info: &TableInfo,
        row: &BinlogImage,
        position: SourcePosition,
    ) -> Result<(Row, Option<String>, Option<i64>), MysqlSourceError> {
        let mut values: Vec<Option<Value>> = vec![None; info.schema.columns.len()];
        let mut marker = None;
        let mut stamp = None;
        for (i, col) in info.columns.iter().enumerate() {
            let Some(Some(raw)) = row.get(i) else {
                continue;
            };
            let value = decode_binlog_value(col, raw).map_err(|e| MysqlSourceError::BadValue {
                table: info.schema.table.clone(),
                column: col.name.clone(),
                position,
                reason: e.to_string(),
            })?;
            match info.row_index.get(i).copied().flatten() {
                Some(j) => values[j] = Some(value),
                None if Some(i) == info.marker_index => {
                    marker = match value {
                        Value::Json(t) | Value::Text(t) => Some(t),
                        _ => None,
                    }
                }
                None if Some(i) == info.stamp_index => {
                    stamp = match value {
                        Value::TimestampTz(crate::canonical::Timestamp::Micros(us))
                        | Value::Timestamp(crate::canonical::Timestamp::Micros(us)) => Some(us),
                        _ => None,
                    }
                }
                None => {}
            }
        }
        Ok((Row(values), marker, stamp))
    }
}

/// Column names from the table map's optional metadata, when present.
fn table_map_column_names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
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

fn abbreviate(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
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
