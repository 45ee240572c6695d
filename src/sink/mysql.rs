//! The MySQL/MariaDB target: the applier's steps on a MySQL/MariaDB site.
//!
//! Every applied transaction starts by upserting duplex's marker-table row for
//! this direction, and ends by recording the applied source position in that
//! same row, inside the same transaction. The first write makes the whole
//! transaction recognisable in this server's binlog (the reader drops any
//! transaction whose first table is the marker table: no echo); the last one is
//! the resume point (exactly once). Session: strict SQL mode (a value the column
//! cannot hold is an error, never a truncation) and UTC.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::canonical::{
    Op, Row, RowChange, SourcePosition, TableName, TableSchema, Timestamp, Value,
};
use crate::conflict::{LocalRow, Stamp, TablePolicy, Tombstone};
use crate::marker::Marker;
use crate::mysql::column::MysqlColumn;
use crate::mysql::decode::decode_query_value;
use crate::mysql::param::{compared_placeholder, encode_param};
use crate::mysql::{quote_ident, MysqlEndpoint};
use crate::sink::error::mysql as db;
use crate::sink::plan::WriteRules;
use crate::sink::resolve::{KeyRef, Resolved};
use crate::sink::target::{Batch, DescribedTables, OutboxScope, Target};
use crate::sink::{describe_key, identifying_key, same_key, store_values, SinkError};
use crate::stats::DirectionStats;

/// What the MySQL/MariaDB target must know to apply one direction of a link.
#[derive(Debug, Clone)]
pub struct MysqlTargetSpec {
    pub endpoint: MysqlEndpoint,
    pub link_id: u32,
    /// The site whose changes this sink applies.
    pub source_site: u32,
    pub marker_column: String,
    /// The server-maintained stamp column next to the marker (see `setup`).
    pub stamp_column: String,
    /// Conflict policy per configured table (absent: last-writer-wins).
    pub policies: HashMap<String, TablePolicy>,
    /// Per table (bare name): when this site's changes to it began to be
    /// captured for the link (this site's clock, µs since the epoch), where
    /// known (`duplex.capture_starts`).
    pub capture_starts: HashMap<String, i64>,
    /// Which of the direction's apply workers this target is: each keeps its
    /// own marker-table row (see `pipeline::dispatch`).
    pub worker: u32,
    /// The server's lock waits, read for all of the direction's workers.
    pub lock_waits: LockWaits,
    /// What the direction's workers know of the tables' tombstones.
    pub tombstone_tables: crate::sink::target::TombstoneTables,
    /// With `duplex run --ha`: the term of the lease under which this
    /// process applies the link. Every applied transaction checks it against
    /// the marker rows' (fencing): a process that lost its lease while
    /// paused (SIGSTOP, a long GC-like stall, a network partition) cannot
    /// commit after its successor has started.
    pub lease_term: Option<i64>,
    /// The tables as the direction's workers described them (made anew for
    /// each run of the direction).
    pub(crate) described: DescribedTables<TargetTable>,
}

/// InnoDB's lock waits as last read, shared by a direction's apply workers.
///
/// MariaDB and MySQL 5.7 fill `information_schema.INNODB_TRX` and
/// `INNODB_LOCK_WAITS` from a cache that is refreshed only once it has not
/// been read for 100 ms: sessions asking more often than that (several
/// workers, each looking for sessions waiting on it) would all read the
/// same stale snapshot forever. So the direction reads the waits at most
/// every [`LOCK_WAITS_MAX_AGE`], and each worker answers from that list.
#[derive(Debug, Clone, Default)]
pub struct LockWaits(Arc<tokio::sync::Mutex<Option<LockWaitList>>>);

/// When the lock waits were read, and each as (waiting, holding) connection ids.
type LockWaitList = (std::time::Instant, Vec<(u64, u64)>);

/// How old the lock waits a worker answers from may be.
const LOCK_WAITS_MAX_AGE: Duration = Duration::from_millis(150);

pub(crate) struct TargetTable {
    quoted: String,
    columns: HashMap<String, MysqlColumn>,
    key: Vec<String>,
    /// What ties the table's rows to each other or to other tables, so that
    /// its writes keep their order (see `write_rules`): triggers (they fire
    /// for applied rows on MySQL, and may write other tables), foreign keys
    /// to or from it (checked), a unique index besides the primary key.
    triggers: bool,
    foreign_keys: bool,
    other_unique: bool,
    /// A BIT column: its values go as bytes or as a number (`encode_param`),
    /// which one `CASE` of a multi-row UPDATE cannot mix.
    bit_columns: bool,
}

impl TargetTable {
    /// The target's column for the source's column `i` of `schema`.
    fn column(&self, schema: &TableSchema, i: usize) -> Result<&MysqlColumn, SinkError> {
        let name = &schema.columns[i].name;
        self.columns
            .get(name)
            .ok_or_else(|| SinkError::MissingColumn {
                table: schema.table.clone(),
                column: name.clone(),
            })
    }

    /// A write to one row may wait for, or be refused because of, another
    /// row's write: its writes keep their order, and apply workers never
    /// write it side by side.
    fn spans_rows(&self) -> bool {
        self.triggers || self.foreign_keys || self.other_unique
    }
}

pub struct MysqlTarget {
    spec: MysqlTargetSpec,
    conn: mysql_async::Conn,
    /// Most rows in one multi-row statement.
    max_batch_rows: usize,
    stats: Arc<DirectionStats>,
    marker_table: String,
    tombstone_table: String,
    /// duplex's journal outbox here (see `journal::outbox`).
    journal_table: String,
    /// Per table: whether it may have tombstones on this site.
    tombstones_exist: crate::sink::target::TombstoneTables,
    /// The account may not read InnoDB's lock waits (see `sessions_waiting`).
    lock_waits_unreadable: bool,
    /// The session's connection id.
    session_id: u64,
}

impl MysqlTarget {
    pub async fn connect(
        spec: MysqlTargetSpec,
        max_batch_rows: usize,
        stats: Arc<DirectionStats>,
    ) -> Result<MysqlTarget, SinkError> {
        let mut conn = spec.endpoint.connect_found_rows().await?;
        conn.query_drop(
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION',
                 SESSION time_zone = '+00:00', NAMES utf8mb4",
        )
        .await
        .map_err(db("configure the applier session"))?;
        // READ COMMITTED: reading a missing key back FOR UPDATE takes no gap
        // lock. Under REPEATABLE READ it locks the gap up to the next key,
        // so a worker reading new keys at a table's end would block an
        // earlier worker's inserts there while it waits for that worker to
        // commit first: a deadlock InnoDB cannot see. PostgreSQL never locks
        // gaps; the applier's decisions hold either way (it reads rows
        // locked, and an insert that meets a user's new row is refused).
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(db("configure the applier session's isolation"))?;
        let session_id: u64 = conn
            .query_first("SELECT CONNECTION_ID()")
            .await
            .map_err(db("read the applier session's connection id"))?
            .unwrap_or_default();
        let marker_table = format!(
            "{}.{}",
            quote_ident(spec.endpoint.database()),
            quote_ident(crate::marker::MYSQL_MARKER_TABLE)
        );
        let tombstone_table = format!(
            "{}.{}",
            quote_ident(spec.endpoint.database()),
            quote_ident(crate::marker::MYSQL_TOMBSTONES_TABLE)
        );
        let journal_table = format!(
            "{}.{}",
            quote_ident(spec.endpoint.database()),
            quote_ident(crate::marker::MYSQL_JOURNAL_TABLE)
        );
        let tombstones_exist = spec.tombstone_tables.clone();
        let mut target = MysqlTarget {
            spec,
            conn,
            max_batch_rows,
            stats,
            marker_table,
            tombstone_table,
            journal_table,
            tombstones_exist,
            lock_waits_unreadable: false,
            session_id,
        };
        target.fence().await?;
        Ok(target)
    }

    /// Begin a target transaction whose first statement tags it as duplex's
    /// in the binlog (the marker table), so the reader drops it as an echo.
    async fn begin_tagged(&mut self) -> Result<(), SinkError> {
        // One round trip for both statements (their values are numbers
        // duplex owns, written into the text). Under a lease, the marker
        // row (locked by this statement until the commit) must not carry a
        // later term: then a successor fenced this process out, and the
        // division by zero (refused in the applier's strict sql_mode, and
        // evaluated only on that branch) stops the transaction.
        // Without a lease the column is not named: a site whose marker
        // table predates it (ALTER revoked after setup) still works.
        let (column, value, check) = match self.spec.lease_term {
            Some(t) => (
                ", lease_term",
                format!(", {t}"),
                format!(", lease_term = IF(lease_term > {t}, lease_term DIV 0, {t})"),
            ),
            None => ("", String::new(), String::new()),
        };
        let sql = format!(
            "START TRANSACTION;
             INSERT INTO {} (link_id, source_site, worker, position, applied_txns{column}) VALUES ({}, {}, {}, 0, 1{value})
             ON DUPLICATE KEY UPDATE applied_txns = applied_txns + 1{check}",
            self.marker_table, self.spec.link_id, self.spec.source_site, self.spec.worker
        );
        match self.conn.query_drop(sql).await {
            Err(mysql_async::Error::Server(e))
                if e.code == 1365 && self.spec.lease_term.is_some() =>
            {
                let _ = self.conn.query_drop("ROLLBACK").await;
                Err(SinkError::Fenced {
                    term: self.spec.lease_term.unwrap_or(0),
                })
            }
            r => r.map_err(db("begin a target transaction tagged in the marker table")),
        }
    }

    /// Under a lease: write this process's term into the direction's marker
    /// rows before anything is read from them (the resume position), so
    /// that a transaction a previous holder still has open commits first
    /// (this waits for its lock) and no later one can (see `begin_tagged`).
    async fn fence(&mut self) -> Result<(), SinkError> {
        let Some(term) = self.spec.lease_term else {
            return Ok(());
        };
        self.take_over_worker_lock().await?;
        self.conn
            .exec_drop(
                format!(
                    "UPDATE {} SET lease_term = ? WHERE link_id = ? AND source_site = ? AND lease_term <= ?",
                    self.marker_table
                ),
                (term, self.spec.link_id, self.spec.source_site, term),
            )
            .await
            .map_err(db("write the lease term into the marker table"))?;
        let later: Option<i64> = self
            .conn
            .exec_first(
                format!(
                    "SELECT MAX(lease_term) FROM {} WHERE link_id = ? AND source_site = ? AND lease_term > ?",
                    self.marker_table
                ),
                (self.spec.link_id, self.spec.source_site, term),
            )
            .await
            .map_err(db("read the marker table's lease term"))?
            .flatten();
        match later {
            Some(_) => Err(SinkError::Fenced { term }),
            None => Ok(()),
        }
    }

    /// Under a lease: hold this worker's named lock for the session's life,
    /// ending the session an earlier holder of the link left with it (a
    /// process paused, a host cut off: the server keeps its connection, and
    /// any transaction it has open, until its timeouts) (same account: no
    /// privilege beyond duplex's own is needed).
    async fn take_over_worker_lock(&mut self) -> Result<(), SinkError> {
        // Lock names are server-wide and at most 64 characters.
        let database = self.spec.endpoint.database();
        let lock = format!(
            "duplex {:08x} l{} s{} w{}",
            crc32fast::hash(database.as_bytes()),
            self.spec.link_id,
            self.spec.source_site,
            self.spec.worker
        );
        let holder: Option<Option<u64>> = self
            .conn
            .exec_first("SELECT IS_USED_LOCK(?)", (lock.as_str(),))
            .await
            .map_err(db("look for the session holding the apply worker's lock"))?;
        if let Some(Some(id)) = holder.filter(|h| *h != Some(self.session_id)) {
            match self.conn.query_drop(format!("KILL CONNECTION {id}")).await {
                Ok(()) => tracing::warn!(
                    connection = id,
                    "ended the session an earlier holder of the link's lease still applied with"
                ),
                Err(e) => {
                    tracing::warn!(connection = id, error = %e, "cannot end the session an earlier holder left")
                }
            }
        }
        let got: Option<Option<i64>> = self
            .conn
            .exec_first("SELECT GET_LOCK(?, 10)", (lock.as_str(),))
            .await
            .map_err(db("take the apply worker's lock"))?;
        if got != Some(Some(1)) {
            return Err(SinkError::SessionBusy { lock });
        }
        Ok(())
    }

    /// Each apply worker keeps its own row, and workers commit in source
    /// order: the highest position among them is where every earlier
    /// source transaction is committed too.
    async fn resume_position(&mut self) -> Result<Option<u64>, SinkError> {
        let sql = format!(
            "SELECT MAX(position) FROM {} WHERE link_id = ? AND source_site = ?",
            self.marker_table
        );
        let pos: Option<Option<u64>> = self
            .conn
            .exec_first(sql, (self.spec.link_id, self.spec.source_site))
            .await
            .map_err(db("read the applied position"))?;
        Ok(pos.flatten().filter(|&p| p > 0))
    }

    /// Does a session wait for a lock this applier's session holds? InnoDB's
    /// lock waits (MariaDB and MySQL 5.7: `information_schema`; MySQL 8:
    /// `performance_schema`) need the PROCESS privilege or more: without it,
    /// or on a server that has neither table, the applier cannot tell, says
    /// no, and groups as before (logged once).
    async fn sessions_waiting(&mut self) -> Result<bool, SinkError> {
        self.lock_waiters(None).await
    }

    /// Does one of `sessions` (connection ids) wait for a lock this session
    /// holds? Direct waits only: InnoDB's tables show no more.
    async fn blocks_sessions(&mut self, sessions: &[u64]) -> Result<bool, SinkError> {
        if sessions.is_empty() {
            return Ok(false);
        }
        self.lock_waiters(Some(sessions)).await
    }

    /// Does a session (one of `among`, where given) wait for a lock this
    /// session holds? Unreadable lock waits (see `sessions_waiting`) say no.
    async fn lock_waiters(&mut self, among: Option<&[u64]>) -> Result<bool, SinkError> {
        if self.lock_waits_unreadable {
            return Ok(false);
        }
        let board = self.spec.lock_waits.clone();
        let mut waits = board.0.lock().await;
        let fresh = waits
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < LOCK_WAITS_MAX_AGE);
        if !fresh {
            match self.read_lock_waits().await? {
                Some(list) => *waits = Some((std::time::Instant::now(), list)),
                None => return Ok(false),
            }
        }
        let me = self.session_id;
        Ok(waits.as_ref().is_some_and(|(_, list)| {
            list.iter().any(|&(waiting, holding)| {
                holding == me && among.is_none_or(|ids| ids.contains(&waiting))
            })
        }))
    }

    /// Every lock wait on the server: (waiting, holding) connection ids;
    /// `None` when the account may not read them (logged once).
    async fn read_lock_waits(&mut self) -> Result<Option<Vec<(u64, u64)>>, SinkError> {
        let queries = [
            "SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id
               FROM information_schema.INNODB_LOCK_WAITS w
               JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id
               JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id",
            "SELECT rt.PROCESSLIST_ID, bt.PROCESSLIST_ID
               FROM performance_schema.data_lock_waits w
               JOIN performance_schema.threads bt ON bt.THREAD_ID = w.BLOCKING_THREAD_ID
               JOIN performance_schema.threads rt ON rt.THREAD_ID = w.REQUESTING_THREAD_ID",
        ];
        let mut last_error = None;
        for q in queries {
            match self.conn.query::<(Option<u64>, Option<u64>), _>(q).await {
                Ok(rows) => {
                    return Ok(Some(
                        rows.into_iter()
                            .filter_map(|(w, h)| Some((w?, h?)))
                            .collect(),
                    ))
                }
                Err(mysql_async::Error::Server(e)) => last_error = Some(e.message),
                Err(e) => return Err(db("look for sessions waiting for the applier's locks")(e)),
            }
        }
        self.lock_waits_unreadable = true;
        tracing::warn!(site = %self.spec.endpoint.site_name, error = last_error.unwrap_or_default(),
            "cannot read InnoDB's lock waits (grant PROCESS to duplex's account): the applier cannot tell when the application or another apply worker waits for it; it groups source transactions regardless, and a wait between apply workers ends at innodb_lock_wait_timeout");
        Ok(None)
    }

    /// Record the tombstones of applied deletes; drop those of revived keys.
    async fn write_tombstones(&mut self, resolved: &Resolved) -> Result<(), SinkError> {
        for (schema, key, t) in &resolved.tombstones {
            self.tombstones_exist
                .insert(schema.table.name.clone(), true);
            let sql = format!(
                "INSERT INTO {} (table_name, row_key, vv, site, ts) VALUES (?, ?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE vv = VALUES(vv), site = VALUES(site), ts = VALUES(ts), deleted_at = CURRENT_TIMESTAMP(6)",
                self.tombstone_table
            );
            let vv = serde_json::to_string(&t.vv).unwrap_or_default();
            self.conn
                .exec_drop(
                    sql,
                    (schema.table.name.as_str(), key.as_slice(), vv, t.site, t.ts),
                )
                .await
                .map_err(db("record a tombstone"))?;
        }
        for (schema, key) in &resolved.revived {
            let sql = format!(
                "DELETE FROM {} WHERE table_name = ? AND row_key = ?",
                self.tombstone_table
            );
            self.conn
                .exec_drop(sql, (schema.table.name.as_str(), key.as_slice()))
                .await
                .map_err(db("remove a tombstone"))?;
        }
        Ok(())
    }

    /// Remove this link's tombstones older than `retention` (at most a few
    /// thousand per call, so a backlog never holds locks for long). The applier
    /// calls it between source transactions only. Returns how many were
    /// removed.
    async fn purge_tombstones(&mut self, retention: Duration) -> Result<u64, SinkError> {
        if self.spec.policies.is_empty() {
            return Ok(0);
        }
        let names: Vec<mysql_async::Value> = self
            .spec
            .policies
            .keys()
            .map(|n| n.as_str().into())
            .collect();
        let sql = format!(
            "DELETE FROM {} WHERE table_name IN ({}) AND deleted_at < NOW(6) - INTERVAL ? MICROSECOND LIMIT 5000",
            self.tombstone_table,
            vec!["?"; names.len()].join(", ")
        );
        let mut params = names;
        params.push(
            u64::try_from(retention.as_micros())
                .unwrap_or(u64::MAX)
                .into(),
        );
        self.conn
            .exec_drop(sql, params)
            .await
            .map_err(db("remove expired tombstones"))?;
        let removed = self.conn.affected_rows();
        if removed > 0 {
            // Some table may have none left: ask again on the next lookup.
            self.tombstones_exist.clear();
        }
        Ok(removed)
    }

    /// The target's state for `keys` of `schema`: the row (with how it was
    /// last written, from the stamp column) or its tombstone.
    async fn read_local(
        &mut self,
        schema: &Arc<TableSchema>,
        keys: &[KeyRef],
    ) -> Result<Vec<LocalRow>, SinkError> {
        let target = self.target_table(&schema.table).await?;
        let column = |name: &str| {
            target
                .columns
                .get(name)
                .cloned()
                .ok_or_else(|| SinkError::MissingColumn {
                    table: schema.table.clone(),
                    column: name.to_string(),
                })
        };
        let mut cols = Vec::with_capacity(schema.columns.len());
        for c in &schema.columns {
            cols.push(column(&c.name)?);
        }
        let stamp_col = column(&self.spec.stamp_column)?;
        column(&self.spec.marker_column)?;
        let mut select: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
        select.push(quote_ident(&self.spec.marker_column));
        select.push(quote_ident(&self.spec.stamp_column));
        let key_cols: Vec<String> = schema
            .key
            .iter()
            .map(|&i| quote_ident(&schema.columns[i].name))
            .collect();
        // DECIMAL keys compared as decimals (`key_placeholder`).
        let placeholders = key_placeholders(schema, &target)?;
        let mut out = Vec::with_capacity(keys.len());
        let per_key = schema.key.len().max(1);
        for chunk in keys.chunks((60_000 / per_key).clamp(1, self.max_batch_rows.max(1))) {
            let mut params = Vec::with_capacity(chunk.len() * per_key);
            for k in chunk {
                for (j, v) in k.values.iter().enumerate() {
                    let col = &cols[schema.key[j]];
                    params.push(encode_param(col, v).map_err(|e| SinkError::Value {
                        table: schema.table.clone(),
                        key: String::new(),
                        column: col.name.clone(),
                        reason: e.to_string(),
                    })?);
                }
            }
            let tuple = format!("({})", placeholders.join(", "));
            // By the primary key, whatever the optimizer's statistics say:
            // for a small (or just emptied) table it would rather scan it
            // whole, locking every row it passes (and, with parallel apply,
            // waiting for rows other workers inserted and have not
            // committed) instead of only the rows asked for.
            let sql = format!(
                "SELECT {} FROM {} FORCE INDEX (PRIMARY) WHERE ({}) IN ({}) FOR UPDATE",
                select.join(", "),
                target.quoted,
                key_cols.join(", "),
                vec![tuple; chunk.len()].join(", ")
            );
            let rows: Vec<mysql_async::Row> = self
                .conn
                .exec(sql, params)
                .await
                .map_err(db(format!("read the target rows of {}", schema.table)))?;
            for mut r in rows {
                let mut values = Vec::with_capacity(cols.len());
                for (i, col) in cols.iter().enumerate() {
                    let raw: mysql_async::Value = r.take(i).unwrap_or(mysql_async::Value::NULL);
                    let v = decode_query_value(col, raw).map_err(|e| SinkError::LocalValue {
                        table: schema.table.clone(),
                        column: col.name.clone(),
                        reason: e.to_string(),
                    })?;
                    values.push(Some(v));
                }
                let row = Row(values);
                let marker_raw: mysql_async::Value =
                    r.take(cols.len()).unwrap_or(mysql_async::Value::NULL);
                let marker_text = match marker_raw {
                    mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    _ => None,
                };
                let marker = Marker::parse_lenient(marker_text.as_deref(), &schema.table);
                let stamp_raw: mysql_async::Value =
                    r.take(cols.len() + 1).unwrap_or(mysql_async::Value::NULL);
                let stamp_us = match decode_query_value(&stamp_col, stamp_raw) {
                    Ok(Value::TimestampTz(Timestamp::Micros(us))) => Some(us),
                    _ => None,
                };
                // The applier writes the stamp with the marker's time; a user
                // write moves it (ON UPDATE CURRENT_TIMESTAMP).
                let stamp = match (&marker, stamp_us) {
                    (Some(m), Some(us)) if m.ts == us => Stamp::Synced,
                    (_, t) => Stamp::User { t },
                };
                out.push(LocalRow { row, marker, stamp });
            }
        }
        Ok(out)
    }

    /// The tombstones of `missing` keys of `schema`'s table.
    async fn find_tombstones(
        &mut self,
        schema: &TableSchema,
        missing: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Tombstone>, SinkError> {
        let mut tombstones = HashMap::new();
        // Most tables have no tombstones at all: ask once, then know (the
        // direction's workers share what they know: `TombstoneTables`).
        let possible = match self.tombstones_exist.get(&schema.table.name) {
            Some(p) => p,
            None => {
                let sql = format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE table_name = ?)",
                    self.tombstone_table
                );
                let p: Option<i64> = self
                    .conn
                    .exec_first(sql, (schema.table.name.as_str(),))
                    .await
                    .map_err(db("look for tombstones"))?;
                let p = p == Some(1);
                self.tombstones_exist.insert(schema.table.name.clone(), p);
                p
            }
        };
        let lookup: &[Vec<u8>] = if possible { missing } else { &[] };
        for chunk in lookup.chunks(500) {
            let sql = format!(
                "SELECT row_key, vv, site, ts FROM {} WHERE table_name = ? AND row_key IN ({})",
                self.tombstone_table,
                vec!["?"; chunk.len()].join(", ")
            );
            let mut params: Vec<mysql_async::Value> = vec![schema.table.name.as_str().into()];
            params.extend(chunk.iter().map(|k| mysql_async::Value::Bytes(k.clone())));
            let rows: Vec<(Vec<u8>, String, u32, i64)> = self
                .conn
                .exec(sql, params)
                .await
                .map_err(db("read tombstones"))?;
            for (key, vv, site, ts) in rows {
                if let Ok(vv) = serde_json::from_str(&vv) {
                    tombstones.insert(key, Tombstone { vv, site, ts });
                }
            }
        }
        Ok(tombstones)
    }

    async fn target_table(&mut self, table: &TableName) -> Result<Arc<TargetTable>, SinkError> {
        // Known by the target's table, whatever schema the source names
        // (named so already, as from a MySQL source of the same database,
        // it is not copied: this runs for every write).
        let own;
        let key = if table.schema == self.spec.endpoint.database() {
            table
        } else {
            own = TableName::new(self.spec.endpoint.database(), &table.name);
            &own
        };
        let described = self.spec.described.clone();
        described
            .get_or_describe(key, self.describe_table(table))
            .await
    }

    /// Read the table's facts from the target's catalog.
    async fn describe_table(&mut self, table: &TableName) -> Result<TargetTable, SinkError> {
        // The target's own database, whatever schema the source called it.
        let db_name = self.spec.endpoint.database().to_string();
        let columns = MysqlColumn::load_table(&mut self.conn, &db_name, &table.name)
            .await
            .map_err(db(format!("read the columns of {table}")))?;
        if columns.is_empty() {
            return Err(SinkError::MissingTable {
                table: table.clone(),
            });
        }
        let key: Vec<String> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (db_name.as_str(), table.name.as_str()),
            )
            .await
            .map_err(db(format!("read the primary key of {table}")))?;
        let ties: Option<(i64, i64, i64)> = self
            .conn
            .exec_first(
                "SELECT
                   (SELECT COUNT(*) FROM information_schema.TRIGGERS
                     WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?),
                   (SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS
                     WHERE (CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?)
                        OR (UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?)),
                   (SELECT COUNT(*) FROM information_schema.STATISTICS
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY')",
                (
                    db_name.as_str(),
                    table.name.as_str(),
                    db_name.as_str(),
                    table.name.as_str(),
                    db_name.as_str(),
                    table.name.as_str(),
                    db_name.as_str(),
                    table.name.as_str(),
                ),
            )
            .await
            .map_err(db(format!(
                "read the triggers, foreign keys and unique indexes of {table}"
            )))?;
        let (triggers, foreign_keys, other_unique) = ties.unwrap_or((1, 1, 1));
        let bit_columns = columns.iter().any(|c| c.data_type == "bit");
        Ok(TargetTable {
            quoted: format!("{}.{}", quote_ident(&db_name), quote_ident(&table.name)),
            columns: columns.into_iter().map(|c| (c.name.clone(), c)).collect(),
            key,
            triggers: triggers > 0,
            foreign_keys: foreign_keys > 0,
            other_unique: other_unique > 0,
            bit_columns,
        })
    }

    fn param(
        &self,
        target: &TargetTable,
        schema: &TableSchema,
        change: &RowChange,
        column: usize,
        v: &Value,
    ) -> Result<mysql_async::Value, SinkError> {
        let col = target.column(schema, column)?;
        if v.is_null() {
            return Ok(mysql_async::Value::NULL);
        }
        encode_param(col, v).map_err(|e| SinkError::Value {
            table: schema.table.clone(),
            key: describe_key(change),
            column: schema.columns[column].name.clone(),
            reason: e.to_string(),
        })
    }

    /// Execute one batch as one statement (as many rows as `write_rules`
    /// let it hold). A refused statement is rolled back alone by InnoDB;
    /// the applier then retries its rows one by one.
    async fn execute_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let schema = batch.table.clone();
        let target = self.target_table(&schema.table).await?;
        if !target.columns.contains_key(&self.spec.marker_column) {
            return Err(SinkError::MissingColumn {
                table: schema.table.clone(),
                column: self.spec.marker_column.clone(),
            });
        }
        same_key(&schema, &target.key)?;
        let mut params: Vec<mysql_async::Value> = Vec::new();
        let sql = match batch.op {
            Op::Insert => {
                let cols = self.written_columns(&schema, &batch.shape);
                for change in &batch.rows {
                    params.extend(self.written_values(&target, &schema, &batch.shape, change)?);
                }
                let row = format!("({})", vec!["?"; cols.len()].join(", "));
                format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    target.quoted,
                    cols.join(", "),
                    vec![row; batch.rows.len()].join(", ")
                )
            }
            Op::Update if batch.rows.len() > 1 => {
                self.update_many(&target, &schema, batch, &mut params)?
            }
            Op::Update => {
                let change = &batch.rows[0];
                let sets: Vec<String> = self
                    .written_columns(&schema, &batch.shape)
                    .iter()
                    .map(|c| format!("{c} = ?"))
                    .collect();
                params.extend(self.written_values(&target, &schema, &batch.shape, change)?);
                let wheres = key_condition(&schema, &target)?;
                for (i, v) in identifying_key(change)? {
                    params.push(self.param(&target, &schema, change, i, v)?);
                }
                format!(
                    "UPDATE {} SET {} WHERE {}",
                    target.quoted,
                    sets.join(", "),
                    wheres
                )
            }
            Op::Delete => {
                let keys = self.padded_keys(&target, &schema, batch)?;
                let wheres = key_matches(&schema, &target, &keys, &mut params)?;
                // The multi-table form: the single-table DELETE takes no
                // index hint. On a small table the optimizer may prefer a
                // scan, which waits for every row another worker holds.
                format!(
                    "DELETE d FROM {} AS d FORCE INDEX (PRIMARY) WHERE {}",
                    target.quoted, wheres
                )
            }
        };
        let n = batch.rows.len();
        self.conn.exec_drop(&sql, params).await.map_err(db(format!(
            "apply {n} {} row(s) to {}",
            batch.op, schema.table
        )))?;
        if batch.op != Op::Insert && self.conn.affected_rows() < n as u64 {
            self.stats
                .missing_rows
                .fetch_add(n as u64 - self.conn.affected_rows(), Ordering::Relaxed);
            tracing::warn!(table = %schema.table, op = %batch.op, "row to change was not on the target");
        }
        Ok(())
    }

    /// The key values of each row of a multi-row UPDATE or DELETE, as
    /// parameters, padded to a power of two rows by repeating the last row
    /// (written twice with the same values, a row is still written once):
    /// a few statement texts per table and shape, each prepared once.
    fn padded_keys(
        &self,
        target: &TargetTable,
        schema: &TableSchema,
        batch: &Batch,
    ) -> Result<Vec<Vec<mysql_async::Value>>, SinkError> {
        let mut keys = Vec::with_capacity(batch.rows.len().next_power_of_two());
        for change in &batch.rows {
            let mut key = Vec::with_capacity(schema.key.len());
            for (i, v) in identifying_key(change)? {
                key.push(self.param(target, schema, change, i, v)?);
            }
            keys.push(key);
        }
        pad_to_power_of_two(&mut keys);
        Ok(keys)
    }

    /// One UPDATE of many rows (MySQL has no UPDATE ... FROM VALUES): each
    /// column set to a `CASE` over the rows' keys, the rows found by their
    /// keys (`WHERE`). The rows' writes were decided and their rows locked
    /// (read back FOR UPDATE), so rows of one statement never depend on
    /// each other unless the table ties them (`write_rules`: a unique index
    /// besides the key makes a refused statement, whose writes the applier
    /// then applies one by one, in order). The cases list the rows last
    /// first: keys equal only under the column's collation are one row to
    /// the server, and the last write of it wins, as one by one.
    fn update_many(
        &self,
        target: &TargetTable,
        schema: &TableSchema,
        batch: &Batch,
        params: &mut Vec<mysql_async::Value>,
    ) -> Result<String, SinkError> {
        let keys = self.padded_keys(target, schema, batch)?;
        // Per row: the values the statement sets, in the order of `columns`.
        let mut values: Vec<Vec<mysql_async::Value>> = Vec::with_capacity(keys.len());
        for change in &batch.rows {
            values.push(self.written_values(target, schema, &batch.shape, change)?);
        }
        pad_to_power_of_two(&mut values);
        let columns = self.written_columns(schema, &batch.shape);
        let row_matches = key_condition(schema, target)?;
        let mut sets = Vec::with_capacity(columns.len());
        for (c, column) in columns.iter().enumerate() {
            let mut case = format!("{column} = CASE");
            for (key, row) in keys.iter().zip(&values).rev() {
                case.push_str(" WHEN ");
                case.push_str(&row_matches);
                case.push_str(" THEN ?");
                params.extend(key.iter().cloned());
                params.push(row[c].clone());
            }
            case.push_str(" END");
            sets.push(case);
        }
        let wheres = key_matches(schema, target, &keys, params)?;
        // The primary key, as for the read-back: a scan would wait for
        // every row another worker holds.
        Ok(format!(
            "UPDATE {} FORCE INDEX (PRIMARY) SET {} WHERE {}",
            target.quoted,
            sets.join(", "),
            wheres
        ))
    }

    /// The columns a write of `shape` sets: those of the shape, then the
    /// marker and the stamp (quoted).
    fn written_columns(&self, schema: &TableSchema, shape: &[usize]) -> Vec<String> {
        shape
            .iter()
            .map(|&i| quote_ident(&schema.columns[i].name))
            .chain([
                quote_ident(&self.spec.marker_column),
                quote_ident(&self.spec.stamp_column),
            ])
            .collect()
    }

    /// The values of `change` for [`Self::written_columns`], as parameters.
    /// The stamp is set explicitly: ON UPDATE would stamp the applier's own
    /// time.
    fn written_values(
        &self,
        target: &TargetTable,
        schema: &TableSchema,
        shape: &[usize],
        change: &RowChange,
    ) -> Result<Vec<mysql_async::Value>, SinkError> {
        let after = change.after.as_ref();
        let mut row = Vec::with_capacity(shape.len() + 2);
        for &i in shape {
            let v = after
                .and_then(|a| a.0.get(i))
                .and_then(|v| v.as_ref())
                .unwrap_or(&Value::Null);
            row.push(self.param(target, schema, change, i, v)?);
        }
        row.push(mysql_async::Value::Bytes(
            change.marker.to_json().into_bytes(),
        ));
        row.push(self.stamp_param(target, schema, change)?);
        Ok(row)
    }

    /// The stamp column's value for a written version: the marker's time, so
    /// that the row reads back as written by duplex until a user changes it.
    fn stamp_param(
        &self,
        target: &TargetTable,
        schema: &TableSchema,
        change: &RowChange,
    ) -> Result<mysql_async::Value, SinkError> {
        let col = target.columns.get(&self.spec.stamp_column).ok_or_else(|| {
            SinkError::MissingColumn {
                table: schema.table.clone(),
                column: self.spec.stamp_column.clone(),
            }
        })?;
        encode_param(
            col,
            &Value::TimestampTz(Timestamp::Micros(change.marker.ts)),
        )
        .map_err(|e| SinkError::Value {
            table: schema.table.clone(),
            key: describe_key(change),
            column: self.spec.stamp_column.clone(),
            reason: format!("the version time does not fit the stamp column: {e}"),
        })
    }
}

/// Most parameters of one statement (a prepared statement takes 65,535).
const MAX_PARAMS: usize = 60_000;

/// Most rows of a multi-row UPDATE or DELETE: `fits` rows fit its
/// parameters; a power of two, so that padding (`pad_to_power_of_two`)
/// never passes it.
fn multi_row_cap(fits: usize) -> usize {
    let cap = fits.clamp(1, MULTI_ROW_UPDATE_ROWS);
    1 << cap.ilog2()
}

/// Most rows of a multi-row UPDATE or DELETE (a power of two).
const MULTI_ROW_UPDATE_ROWS: usize = 128;

/// Repeat the last item until there are a power of two.
fn pad_to_power_of_two<T: Clone>(items: &mut Vec<T>) {
    if let Some(last) = items.last().cloned() {
        items.resize(items.len().next_power_of_two(), last);
    }
}

/// A key value's placeholder (`compared_placeholder`: DECIMAL keys are
/// compared as decimals, not floating-point numbers).
fn key_placeholder(
    schema: &TableSchema,
    target: &TargetTable,
    column: usize,
) -> Result<String, SinkError> {
    Ok(compared_placeholder(target.column(schema, column)?))
}

/// The key columns' placeholders, in key order.
fn key_placeholders(schema: &TableSchema, target: &TargetTable) -> Result<Vec<String>, SinkError> {
    schema
        .key
        .iter()
        .map(|&i| key_placeholder(schema, target, i))
        .collect()
}

/// `k1 = ? AND k2 = ?`: one row by its key.
fn key_condition(schema: &TableSchema, target: &TargetTable) -> Result<String, SinkError> {
    let placeholders = key_placeholders(schema, target)?;
    Ok(schema
        .key
        .iter()
        .zip(placeholders)
        .map(|(&i, p)| format!("{} = {p}", quote_ident(&schema.columns[i].name)))
        .collect::<Vec<_>>()
        .join(" AND "))
}

/// The rows of `keys` (each a row's key values, in key column order): `k IN
/// (?, ?)` for a one-column key, else `(k1 = ? AND k2 = ?) OR ...`, both
/// ranges of the primary key to the optimizer. Pushes the parameters.
fn key_matches(
    schema: &TableSchema,
    target: &TargetTable,
    keys: &[Vec<mysql_async::Value>],
    params: &mut Vec<mysql_async::Value>,
) -> Result<String, SinkError> {
    for key in keys {
        params.extend(key.iter().cloned());
    }
    Ok(if let [only] = schema.key.as_slice() {
        let one = key_placeholder(schema, target, *only)?;
        format!(
            "{} IN ({})",
            quote_ident(&schema.columns[*only].name),
            vec![one.as_str(); keys.len()].join(", ")
        )
    } else {
        let one = format!("({})", key_condition(schema, target)?);
        vec![one; keys.len()].join(" OR ")
    })
}

impl Target for MysqlTarget {
    fn site_name(&self) -> &str {
        &self.spec.endpoint.site_name
    }

    fn table_names(&self) -> Vec<String> {
        self.spec.policies.keys().cloned().collect()
    }

    fn policy_for(&self, table: &TableName) -> TablePolicy {
        self.spec
            .policies
            .get(&table.name)
            .cloned()
            .unwrap_or_default()
    }

    fn forget_tables(&mut self) {
        self.spec.described.forget();
    }

    async fn missing_columns(
        &mut self,
        table: &TableName,
        columns: &[&str],
        fresh: bool,
    ) -> Result<Vec<String>, SinkError> {
        if fresh {
            let key = TableName::new(self.spec.endpoint.database(), &table.name);
            self.spec.described.forget_table(&key);
        }
        let t = self.target_table(table).await?;
        Ok(columns
            .iter()
            .chain(self.own_columns().iter())
            .filter(|c| !t.columns.contains_key(**c))
            .map(|c| c.to_string())
            .collect())
    }

    fn own_columns(&self) -> Vec<&str> {
        vec![
            self.spec.marker_column.as_str(),
            self.spec.stamp_column.as_str(),
        ]
    }

    async fn resume_position(&mut self) -> Result<Option<u64>, SinkError> {
        MysqlTarget::resume_position(self).await
    }

    // Every transaction of the applier's, in the stream or its own, is tagged
    // as duplex's: the reader then passes on only flagged rows.
    async fn begin(&mut self) -> Result<(), SinkError> {
        self.begin_tagged().await
    }

    async fn commit(&mut self, applied: Option<(SourcePosition, i64)>) -> Result<(), SinkError> {
        if let Some((end, commit_time_us)) = applied {
            // The position and the commit in one round trip: numbers, and
            // the position's text (digits, letters, '/', ':' and spaces).
            let text = end.to_string();
            let sql = format!(
                "UPDATE {} SET position = {}, position_text = '{}', commit_time_us = {}
                  WHERE link_id = {} AND source_site = {} AND worker = {};
                 COMMIT",
                self.marker_table,
                end.counter(),
                text.replace(['\'', '\\'], ""),
                commit_time_us,
                self.spec.link_id,
                self.spec.source_site,
                self.spec.worker
            );
            return self
                .conn
                .query_drop(sql)
                .await
                .map_err(db("record the applied source position and commit"));
        }
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(db("commit target transaction"))
    }

    async fn rollback(&mut self) -> Result<(), SinkError> {
        self.conn
            .query_drop("ROLLBACK")
            .await
            .map_err(db("roll back a target transaction"))
    }

    async fn truncate(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        // TRUNCATE would commit implicitly in MySQL: delete instead, inside
        // the transaction.
        for t in tables {
            let target = self.target_table(&t.table).await?;
            self.conn
                .query_drop(format!("DELETE FROM {}", target.quoted))
                .await
                .map_err(db(format!("empty {}", t.table)))?;
        }
        Ok(())
    }

    async fn write_rules(
        &mut self,
        change: &RowChange,
        shape_len: usize,
    ) -> Result<WriteRules, SinkError> {
        let target = self.target_table(&change.table.table).await?;
        let key_len = change.table.key.len().max(1);
        let max_rows = match change.op {
            // A prepared statement takes at most 65,535 parameters.
            Op::Insert => MAX_PARAMS / (shape_len + 2),
            // Row triggers fire in the statement's row order, which for a
            // multi-row UPDATE or DELETE is the key's, not the decided
            // order: one statement per row keeps the source's order. A
            // BIT column's values cannot share one `CASE` (`bit_columns`).
            _ if target.triggers => 1,
            Op::Update if target.bit_columns => 1,
            // Each row's key is compared once per column set (`CASE`):
            // the statement's work grows with the square of its rows.
            Op::Update => multi_row_cap(MAX_PARAMS / ((shape_len + 2) * (key_len + 1) + key_len)),
            Op::Delete => multi_row_cap(MAX_PARAMS / key_len),
        };
        // Writes of different rows commute unless something spans rows: on
        // MySQL triggers fire for applied rows and foreign keys are
        // checked (both may reach other tables: a barrier), and a unique
        // index besides the key ties rows that give up and take a value.
        // Elsewhere an OLTP load's alternating updates and inserts let the
        // inserts of a round go in one statement.
        Ok(WriteRules {
            max_rows,
            keep_order: target.spans_rows(),
            barrier: target.triggers || target.foreign_keys,
        })
    }

    // A statement the server refuses is rolled back on its own (InnoDB's
    // statement rollback): the transaction goes on.
    async fn execute(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.execute_batch(batch).await
    }

    async fn purge_tombstones(&mut self, retention: Duration) -> Result<u64, SinkError> {
        MysqlTarget::purge_tombstones(self, retention).await
    }

    async fn sessions_waiting(&mut self) -> Result<bool, SinkError> {
        MysqlTarget::sessions_waiting(self).await
    }

    fn session_id(&self) -> u64 {
        self.session_id
    }

    async fn blocks_sessions(&mut self, sessions: &[u64]) -> Result<bool, SinkError> {
        MysqlTarget::blocks_sessions(self, sessions).await
    }

    async fn spans_rows(&mut self, table: &TableName) -> Result<bool, SinkError> {
        Ok(self.target_table(table).await?.spans_rows())
    }

    fn worker(&self) -> u32 {
        self.spec.worker
    }

    async fn write_outbox(
        &mut self,
        scope: OutboxScope,
        entries: &[String],
    ) -> Result<(), SinkError> {
        // Statements of a few MiB at most (max_allowed_packet is 16 MiB by
        // default); each entry is at most `outbox::MAX_ENTRY_BYTES`.
        let mut start = 0;
        while start < entries.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < entries.len()
                && end - start < 1000
                && (end == start || bytes + entries[end].len() < 4 << 20)
            {
                bytes += entries[end].len();
                end += 1;
            }
            let chunk = &entries[start..end];
            let sql = format!(
                "INSERT INTO {} (link_id, source_site, worker, entry) VALUES {}",
                self.journal_table,
                vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut params: Vec<mysql_async::Value> = Vec::with_capacity(chunk.len() * 4);
            for e in chunk {
                params.push(scope.link_id.into());
                params.push(scope.source_site.into());
                params.push(scope.worker.into());
                params.push(e.as_str().into());
            }
            self.conn.exec_drop(sql, params).await.map_err(db(
                "write conflict and quarantine records to duplex's journal outbox",
            ))?;
            start = end;
        }
        Ok(())
    }

    async fn read_outbox(
        &mut self,
        scope: OutboxScope,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, SinkError> {
        let sql = format!(
            "SELECT entry_id, entry FROM {} WHERE link_id = ? AND source_site = ?
                AND entry_id > ? ORDER BY entry_id LIMIT ?",
            self.journal_table
        );
        self.conn
            .exec(
                sql,
                (
                    scope.link_id,
                    scope.source_site,
                    after,
                    u64::try_from(limit).unwrap_or(u64::MAX),
                ),
            )
            .await
            .map_err(db("read duplex's journal outbox"))
    }

    async fn remove_outbox(&mut self, ids: &[i64]) -> Result<(), SinkError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Numbers duplex wrote itself: inlined.
        let list = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        self.conn
            .query_drop(format!(
                "DELETE FROM {} WHERE entry_id IN ({list})",
                self.journal_table
            ))
            .await
            .map_err(db("remove shipped records from duplex's journal outbox"))
    }

    async fn describe_tables(&mut self) {
        let db_name = self.spec.endpoint.database().to_string();
        let names: Vec<String> = self.spec.policies.keys().cloned().collect();
        for name in names {
            let table = TableName::new(&db_name, &name);
            if let Err(e) = self.target_table(&table).await {
                tracing::debug!(%table, error = %e, "table not described before the stream");
            }
        }
    }

    async fn mark_applied(&mut self, _position: SourcePosition) -> Result<(), SinkError> {
        // The applied position lives in the marker table, written by the
        // stream's commits; the copy leaves it alone.
        Ok(())
    }

    async fn foreign_key_checks(&mut self, on: bool) -> Result<(), SinkError> {
        // A session variable any account may set.
        self.conn
            .query_drop(if on {
                "SET SESSION foreign_key_checks = 1"
            } else {
                "SET SESSION foreign_key_checks = 0"
            })
            .await
            .map_err(db("set foreign_key_checks"))
    }

    async fn normalize(&mut self, change: &mut RowChange) -> Result<(), SinkError> {
        let target = self.target_table(&change.table.table).await?;
        let columns: Vec<Option<&MysqlColumn>> = change
            .table
            .columns
            .iter()
            .map(|c| target.columns.get(&c.name))
            .collect();
        store_values(change, |i, v| {
            let col = columns.get(i).copied().flatten()?;
            crate::mysql::param::as_stored(col, v).ok()
        });
        Ok(())
    }

    async fn read_rows(
        &mut self,
        requests: &[(Arc<TableSchema>, Vec<KeyRef>)],
    ) -> Result<Vec<Vec<LocalRow>>, SinkError> {
        let mut out = Vec::with_capacity(requests.len());
        for (schema, keys) in requests {
            out.push(self.read_local(schema, keys).await?);
        }
        Ok(out)
    }

    fn capture_start(&self, table: &TableName) -> Option<i64> {
        self.spec.capture_starts.get(&table.name).copied()
    }

    async fn read_tombstones(
        &mut self,
        schema: &TableSchema,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Tombstone>, SinkError> {
        self.find_tombstones(schema, keys).await
    }

    async fn store_tombstones(&mut self, resolved: &Resolved) -> Result<(), SinkError> {
        self.write_tombstones(resolved).await
    }
}
