//! The replication session: connects as a replica, reads the binlog stream event
//! by event, and keeps the open transaction (begin, commit, positions), handing
//! rows and statements to their event layers.

use super::binlog::{
    binlog_file_seq, MariaGtid, BINLOG_READ_TIMEOUT, HEARTBEAT_EVENT, MARIADB_COMPRESSED_EVENTS,
    MARIADB_FL_STANDALONE, MARIADB_GTID_EVENT, MARIADB_HEARTBEAT_V2_EVENT,
};
use super::server::{check_binlog_settings, current_position};
use super::{MysqlSource, MysqlSourceSpec, OpenTxn};
use crate::canonical::{ChangeEvent, SourcePosition, TxnMeta};
use crate::source::ready::Ready;
use crate::source::SourceError;
use crate::stats::DirectionStats;
use futures_util::StreamExt;
use mysql_async::binlog::events::EventData;
use mysql_async::prelude::Queryable;
use mysql_async::BinlogStreamRequest;
use std::collections::HashMap;
use std::sync::Arc;

impl MysqlSource {
    pub async fn connect(
        spec: MysqlSourceSpec,
        stats: Arc<DirectionStats>,
    ) -> Result<MysqlSource, crate::Error> {
        let site = spec.endpoint.site_name.clone();
        let err = |e: SourceError| crate::Error::source_error(&site, e);
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
            .ok_or_else(|| err(SourceError::Purged { position: start }))?;
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
            ready: Ready::default(),
            stats,
            catalog: HashMap::new(),
        })
    }

    pub fn site_name(&self) -> &str {
        &self.spec.endpoint.site_name
    }

    pub(super) fn position(&self, pos: u32) -> SourcePosition {
        SourcePosition::Binlog {
            file_seq: self.file_seq,
            pos,
        }
    }

    pub(super) fn begin(&mut self, log_pos: u32, timestamp: u32) {
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

    pub(super) fn commit(&mut self, log_pos: u32) -> ChangeEvent {
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
    pub async fn next_event(&mut self) -> Result<Option<ChangeEvent>, SourceError> {
        loop {
            if let Some(ev) = self.ready.pop() {
                return Ok(Some(ev));
            }
            let next = tokio::time::timeout(BINLOG_READ_TIMEOUT, self.stream.next())
                .await
                .map_err(|_| SourceError::Event {
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
                if let Some(ev) = self.ready.pop() {
                    return Ok(Some(ev));
                }
                continue;
            }
            let data = match event.read_data() {
                Ok(Some(d)) => d,
                // MariaDB-only events (annotate rows, checkpoints, GTID lists).
                Ok(None) => continue,
                Err(e) => {
                    return Err(SourceError::Event {
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
                    if let Some(ev) = self.ready.pop() {
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
}
