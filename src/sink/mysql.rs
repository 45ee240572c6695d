//! MySQL/MariaDB sink.
//!
//! Every applied transaction starts by upserting duplex's marker-table row for
//! this direction, and ends by recording the applied source position in that
//! same row, inside the same transaction. The first write makes the whole
//! transaction recognisable in this server's binlog (the reader drops any
//! transaction whose first table is the marker table: no echo); the last one is
//! the resume point (exactly once). Session: strict SQL mode (a value the column
//! cannot hold is an error, never a truncation) and UTC.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::canonical::{
    ChangeEvent, Op, Row, RowChange, SourcePosition, TableName, TableSchema, Timestamp, Value,
};
use crate::canonical::{ChangeOrigin, SourceForm};
use crate::conflict::{Local, LocalRow, Stamp, TablePolicy, Tombstone};
use crate::journal::conflicts::{ConflictStore, ConflictStoreSpec};
use crate::journal::quarantine::{Quarantine, QuarantineSpec};
use crate::marker::Marker;
use crate::mysql::types::{decode_query_value, encode_param, MysqlColumn};
use crate::mysql::{quote_ident, MysqlEndpoint};
use crate::sink::resolve::{KeyRef, Resolved};
use crate::sink::{describe_key, encoded_key, shape_of, TxnGroup};
use crate::stats::DirectionStats;

#[derive(Debug, thiserror::Error)]
pub enum MysqlSinkError {
    #[error("{context}: {source}")]
    Db {
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("table {table} does not exist on the target; create it there or remove it from duplex.link_tables")]
    MissingTable { table: TableName },
    #[error(
        "table {table}: column {column} does not exist on the target; add it there or exclude it"
    )]
    MissingColumn { table: TableName, column: String },
    #[error("table {table}: primary key differs between the sites (source: {source_key}; target: {target_key})")]
    KeyMismatch {
        table: TableName,
        source_key: String,
        target_key: String,
    },
    #[error("table {table} key {key} column {column}: {reason}")]
    Value {
        table: TableName,
        key: String,
        column: String,
        reason: String,
    },
    #[error(transparent)]
    Quarantine(#[from] crate::journal::quarantine::QuarantineError),
    #[error(transparent)]
    Conflicts(#[from] crate::journal::conflicts::ConflictStoreError),
    #[error("table {table}: cannot read the target row's column {column}: {reason}")]
    LocalValue {
        table: TableName,
        column: String,
        reason: String,
    },
}

/// Server errors that mean "this row's data": quarantine the row, go on.
const MYSQL_DATA_ERRORS: &[u16] = &[
    1048, // column cannot be null
    1062, // duplicate entry
    1216, 1217, 1451, 1452, // foreign key
    1264, // out of range
    1265, // data truncated
    1292, // incorrect value
    1366, // incorrect string value
    1406, // data too long
    3819, // check constraint (MySQL)
    4025, // check constraint (MariaDB)
];

impl MysqlSinkError {
    /// The target refused this row's data, or duplex refused a value the
    /// column cannot hold exactly: quarantine the row, the stream goes on.
    pub fn is_data_error(&self) -> bool {
        match self {
            MysqlSinkError::Value { .. } => true,
            MysqlSinkError::Db {
                source: mysql_async::Error::Server(e),
                ..
            } => MYSQL_DATA_ERRORS.contains(&e.code),
            _ => false,
        }
    }
}

fn db(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> MysqlSinkError {
    let context = context.into();
    move |source| MysqlSinkError::Db { context, source }
}

#[derive(Debug, Clone)]
pub struct MysqlSinkSpec {
    pub endpoint: MysqlEndpoint,
    pub link_id: u32,
    /// The site whose changes this sink applies.
    pub source_site: u32,
    pub marker_column: String,
    pub max_batch_rows: usize,
    /// Where changes the target refuses are kept.
    pub quarantine: QuarantineSpec,
    /// The server-maintained stamp column next to the marker (see `setup`).
    pub stamp_column: String,
    /// The target site's id (its entry in version vectors).
    pub site_id: u32,
    /// Conflict policy per configured table (absent: last-writer-wins).
    pub policies: HashMap<String, TablePolicy>,
    /// Where conflicts are recorded.
    pub conflicts: ConflictStoreSpec,
    /// Paused tables (bare names): their changes are held, not applied.
    pub held_tables: HashSet<String>,
    /// Per table (bare name): when this site's changes to it began to be
    /// captured for the link (this site's clock, µs since the epoch), where
    /// known (`duplex.capture_starts`).
    pub capture_starts: HashMap<String, i64>,
}

struct TargetTable {
    quoted: String,
    columns: HashMap<String, MysqlColumn>,
    key: Vec<String>,
}

struct Batch {
    table: Arc<TableSchema>,
    op: Op,
    shape: Vec<usize>,
    rows: Vec<RowChange>,
    keys: HashSet<Vec<u8>>,
    origins: Vec<ChangeOrigin>,
    /// Per row, what to quarantine if the target refuses it, when not the
    /// row's change itself (see `Resolved::fallbacks`).
    fallbacks: Vec<Option<RowChange>>,
}

pub struct MysqlSink {
    spec: MysqlSinkSpec,
    conn: mysql_async::Conn,
    marker_table: String,
    tables: HashMap<TableName, Arc<TargetTable>>,
    batch: Option<Batch>,
    group: TxnGroup,
    quarantine: Quarantine,
    stats: Arc<DirectionStats>,
    pending: Vec<(RowChange, ChangeOrigin)>,
    /// Rows of the source transaction at hand that met a conflict.
    carry: crate::sink::resolve::Carry,
    conflicts: ConflictStore,
    tombstone_table: String,
    /// Per table: whether it may have tombstones on this site.
    tombstones_exist: HashMap<String, bool>,
    /// The account may not read InnoDB's lock waits (see `sessions_waiting`).
    lock_waits_unreadable: bool,
}

impl MysqlSink {
    pub async fn connect(
        spec: MysqlSinkSpec,
        stats: Arc<DirectionStats>,
    ) -> Result<MysqlSink, crate::Error> {
        let site = spec.endpoint.site_name.clone();
        let mut conn = spec.endpoint.connect_found_rows().await?;
        conn.query_drop(
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION',
                 SESSION time_zone = '+00:00', NAMES utf8mb4",
        )
        .await
        .map_err(|e| crate::Error::mysql_sink_error(&site, db("configure the applier session")(e)))?;
        let marker_table = format!(
            "{}.{}",
            quote_ident(spec.endpoint.database()),
            quote_ident(crate::marker::MYSQL_MARKER_TABLE)
        );
        let quarantine = Quarantine::new(spec.quarantine.clone(), stats.clone());
        let conflicts = ConflictStore::new(spec.conflicts.clone(), stats.clone());
        let tombstone_table = format!(
            "{}.{}",
            quote_ident(spec.endpoint.database()),
            quote_ident(crate::marker::MYSQL_TOMBSTONES_TABLE)
        );
        Ok(MysqlSink {
            quarantine,
            spec,
            conn,
            marker_table,
            tables: HashMap::new(),
            batch: None,
            group: TxnGroup::default(),
            stats,
            pending: Vec::new(),
            carry: Default::default(),
            conflicts,
            tombstone_table,
            tombstones_exist: HashMap::new(),
            lock_waits_unreadable: false,
        })
    }

    /// Begin a target transaction whose first statement tags it as duplex's
    /// in the binlog (the marker table), so the reader drops it as an echo.
    async fn begin_tagged(&mut self) -> Result<(), MysqlSinkError> {
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(db("begin target transaction"))?;
        let sql = format!(
            "INSERT INTO {} (link_id, source_site, position, applied_txns) VALUES (?, ?, 0, 1)
             ON DUPLICATE KEY UPDATE applied_txns = applied_txns + 1",
            self.marker_table
        );
        self.conn
            .exec_drop(sql, (self.spec.link_id, self.spec.source_site))
            .await
            .map_err(db("tag the transaction in the marker table"))
    }

    /// Settle quarantine records left by a previous run (see `Quarantine::reconcile`).
    pub async fn reconcile_quarantine(
        &mut self,
        resume_counter: Option<u64>,
    ) -> Result<(), MysqlSinkError> {
        self.quarantine
            .reconcile(resume_counter)
            .await
            .map_err(MysqlSinkError::Quarantine)?;
        self.quarantine
            .load_stopped()
            .await
            .map_err(MysqlSinkError::Quarantine)?;
        self.conflicts
            .reconcile(resume_counter)
            .await
            .map_err(MysqlSinkError::Conflicts)
    }

    pub fn site_name(&self) -> &str {
        &self.spec.endpoint.site_name
    }

    pub async fn resume_position(&mut self) -> Result<Option<u64>, MysqlSinkError> {
        let sql = format!(
            "SELECT position FROM {} WHERE link_id = ? AND source_site = ?",
            self.marker_table
        );
        let pos: Option<u64> = self
            .conn
            .exec_first(sql, (self.spec.link_id, self.spec.source_site))
            .await
            .map_err(db("read the applied position"))?;
        Ok(pos.filter(|&p| p > 0))
    }

    pub fn has_uncommitted(&self) -> bool {
        self.group.open && !self.group.in_source_txn
    }

    pub fn group_rows(&self) -> u64 {
        self.group.rows
    }

    pub fn group_txns(&self) -> u64 {
        self.group.txns
    }

    pub async fn apply(
        &mut self,
        event: ChangeEvent,
    ) -> Result<Option<SourcePosition>, MysqlSinkError> {
        match event {
            ChangeEvent::Begin(meta) => {
                if !self.group.open {
                    self.begin_tagged().await?;
                    self.group.open = true;
                }
                self.group.begin_source_txn(&meta);
                Ok(None)
            }
            ChangeEvent::Change(change) => {
                self.add(change, SourceForm::Unchanged).await?;
                Ok(None)
            }
            ChangeEvent::Truncate(tables) => {
                self.flush_pending().await?;
                self.flush().await?;
                // The rows carried for the transaction's later batches are gone.
                for t in &tables {
                    self.carry.forget(&t.table);
                }
                let paused: Vec<String> = tables
                    .iter()
                    .map(|t| t.table.name.clone())
                    .filter(|n| self.spec.held_tables.contains(n) || self.quarantine.is_stopped(n))
                    .collect();
                if !paused.is_empty() {
                    self.quarantine.discard_held(&paused).await?;
                }
                // TRUNCATE would commit implicitly in MySQL: delete instead, inside the transaction.
                for t in tables {
                    let target = self.target_table(&t.table).await?;
                    self.conn
                        .query_drop(format!("DELETE FROM {}", target.quoted))
                        .await
                        .map_err(db(format!("empty {}", t.table)))?;
                }
                Ok(None)
            }
            ChangeEvent::Commit { end_position } => {
                self.group.end_source_txn(end_position);
                Ok(None)
            }
            ChangeEvent::Progress { position } => Ok(self.group.progress(position)),
            ChangeEvent::Unreplicable(u) => {
                // Each stopped table's record takes the change's place in
                // the transaction; the table's later changes are held.
                for table in &u.tables {
                    let origin = self.group.next_origin();
                    self.quarantine.stop(table, origin, &u).await?;
                }
                Ok(None)
            }
        }
    }

    pub async fn commit(&mut self) -> Result<Option<SourcePosition>, MysqlSinkError> {
        if !self.group.open {
            return Ok(self.group.take_idle_progress());
        }
        self.flush_pending().await?;
        self.flush().await?;
        if let Some(end) = self.group.last_end {
            let sql = format!("UPDATE {} SET position = ?, position_text = ?, commit_time_us = ? WHERE link_id = ? AND source_site = ?", self.marker_table);
            self.conn
                .exec_drop(
                    sql,
                    (
                        end.counter(),
                        end.to_string(),
                        self.group.last_commit_time_us,
                        self.spec.link_id,
                        self.spec.source_site,
                    ),
                )
                .await
                .map_err(db("record the applied source position"))?;
        }
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(db("commit target transaction"))?;
        tracing::debug!(
            txns = self.group.txns,
            rows = self.group.rows,
            "committed target transaction"
        );
        if let Err(e) = self.quarantine.confirm().await {
            // Still unconfirmed records are confirmed at the next start.
            tracing::warn!(error = %e, "cannot confirm quarantined changes now; they are confirmed at the next start");
        }
        if let Err(e) = self.conflicts.confirm().await {
            tracing::warn!(error = %e, "cannot confirm conflict records now; they are confirmed at the next start");
        }
        Ok(self.group.committed(&self.stats))
    }

    /// Take an incoming change: it is decided (conflicts) together with the
    /// changes around it, once enough are pending or at the end.
    /// The link's tables (bare names).
    fn table_names(&self) -> Vec<String> {
        self.spec.policies.keys().cloned().collect()
    }

    /// A change of the current source transaction, mapped; `source`: its
    /// form before the mapping (kept if the target refuses it).
    pub async fn apply_change(
        &mut self,
        change: RowChange,
        source: SourceForm,
    ) -> Result<(), MysqlSinkError> {
        self.add(change, source).await
    }

    async fn add(&mut self, change: RowChange, source: SourceForm) -> Result<(), MysqlSinkError> {
        let name = &change.table.table.name;
        if self.spec.held_tables.contains(name) || self.quarantine.is_stopped(name) {
            let mut origin = self.group.next_origin();
            origin.source = source;
            // Held in the control database, confirmed with this target
            // transaction like a refused change: exactly once.
            let key = describe_key(&change);
            return Ok(self.quarantine.hold(&change, &origin, &key).await?);
        }
        let mut origin = self.group.count_change(&change);
        origin.source = source;
        self.pending.push((change, origin));
        if self.pending.len() >= self.spec.max_batch_rows.max(1) {
            self.flush_pending().await?;
        }
        Ok(())
    }

    /// Decide the pending changes against the target's rows (read with FOR
    /// UPDATE) and apply what is to be written.
    async fn flush_pending(&mut self) -> Result<(), MysqlSinkError> {
        crate::sink::applier::decide_pending(self).await
    }

    /// See `Sink::write_pending`.
    pub async fn write_pending(&mut self) -> Result<(), MysqlSinkError> {
        self.flush_pending().await
    }

    /// When the open target transaction began.
    pub fn opened_at(&self) -> Option<std::time::Instant> {
        self.group.opened_at
    }

    /// Does a session wait for a lock this applier's session holds? InnoDB's
    /// lock waits (MariaDB and MySQL 5.7: `information_schema`; MySQL 8:
    /// `performance_schema`) need the PROCESS privilege or more: without it,
    /// or on a server that has neither table, the applier cannot tell, says
    /// no, and groups as before (logged once).
    pub async fn sessions_waiting(&mut self) -> Result<bool, MysqlSinkError> {
        if self.lock_waits_unreadable {
            return Ok(false);
        }
        let queries = [
            "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS w
               JOIN information_schema.INNODB_TRX t ON t.trx_id = w.blocking_trx_id
              WHERE t.trx_mysql_thread_id = CONNECTION_ID()",
            "SELECT COUNT(*) FROM performance_schema.data_lock_waits w
               JOIN performance_schema.threads t ON t.THREAD_ID = w.BLOCKING_THREAD_ID
              WHERE t.PROCESSLIST_ID = CONNECTION_ID()",
        ];
        let mut last_error = None;
        for q in queries {
            match self.conn.query_first::<i64, _>(q).await {
                Ok(n) => return Ok(n.unwrap_or(0) > 0),
                Err(mysql_async::Error::Server(e)) => last_error = Some(e.message),
                Err(e) => return Err(db("look for sessions waiting for the applier's locks")(e)),
            }
        }
        self.lock_waits_unreadable = true;
        tracing::warn!(site = %self.spec.endpoint.site_name, error = last_error.unwrap_or_default(),
            "cannot read InnoDB's lock waits (grant PROCESS to duplex's account): the applier cannot tell when the application waits for it, and groups source transactions regardless");
        Ok(false)
    }

    /// Record the tombstones of applied deletes; drop those of revived keys.
    async fn write_tombstones(&mut self, resolved: &Resolved) -> Result<(), MysqlSinkError> {
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
    /// thousand per call, so a backlog never holds locks for long). Between
    /// source transactions only. Returns how many were removed.
    pub async fn purge_tombstones(&mut self, retention: Duration) -> Result<u64, MysqlSinkError> {
        if self.group.open || self.spec.policies.is_empty() {
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
    ) -> Result<Vec<(Vec<u8>, Local)>, MysqlSinkError> {
        let target = self.target_table(&schema.table).await?;
        let column = |name: &str| {
            target
                .columns
                .get(name)
                .cloned()
                .ok_or_else(|| MysqlSinkError::MissingColumn {
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
        let mut out = Vec::with_capacity(keys.len());
        let mut found: HashSet<Vec<u8>> = HashSet::new();
        let per_key = schema.key.len().max(1);
        for chunk in keys.chunks((60_000 / per_key).clamp(1, self.spec.max_batch_rows.max(1))) {
            let mut params = Vec::with_capacity(chunk.len() * per_key);
            for k in chunk {
                for (j, v) in k.values.iter().enumerate() {
                    let col = &cols[schema.key[j]];
                    params.push(encode_param(col, v).map_err(|e| MysqlSinkError::Value {
                        table: schema.table.clone(),
                        key: String::new(),
                        column: col.name.clone(),
                        reason: e.to_string(),
                    })?);
                }
            }
            let tuple = format!("({})", vec!["?"; per_key].join(", "));
            let sql = format!(
                "SELECT {} FROM {} WHERE ({}) IN ({}) FOR UPDATE",
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
                    let v =
                        decode_query_value(col, raw).map_err(|e| MysqlSinkError::LocalValue {
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
                let capture_start = self.spec.capture_starts.get(&schema.table.name).copied();
                let stamp = crate::sink::seeded(stamp, marker.is_some(), capture_start);
                let Some(key) = row
                    .key(schema)
                    .map(|k| crate::sink::resolve::encode_key(&k))
                else {
                    continue;
                };
                found.insert(key.clone());
                out.push((key, Local::Present(LocalRow { row, marker, stamp })));
            }
        }
        let missing: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| !found.contains(&k.encoded))
            .map(|k| k.encoded.clone())
            .collect();
        let mut tombstones = HashMap::new();
        // Most tables have no tombstones at all: ask once, then know (this
        // sink is the only writer of this table's tombstones on this site).
        let possible = match self.tombstones_exist.get(&schema.table.name) {
            Some(&p) => p,
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
        let lookup: &[Vec<u8>] = if possible { &missing } else { &[] };
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
        for key in missing {
            let t = tombstones.remove(&key);
            out.push((key, Local::Absent(t)));
        }
        Ok(out)
    }

    /// Queue one decided write.
    async fn add_write(
        &mut self,
        change: RowChange,
        origin: ChangeOrigin,
        fallback: Option<RowChange>,
    ) -> Result<(), MysqlSinkError> {
        // Updates and deletes go one row per statement (MySQL has no
        // UPDATE ... FROM VALUES); inserts are batched.
        if change.op != Op::Insert {
            self.flush().await?;
            self.batch = Some(Batch {
                table: change.table.clone(),
                op: change.op,
                shape: shape_of(&change),
                rows: vec![change],
                keys: HashSet::new(),
                origins: vec![origin],
                fallbacks: vec![fallback],
            });
            return self.flush().await;
        }
        let shape = shape_of(&change);
        let key = encoded_key(&change);
        let max = (60_000 / (shape.len() + 1).max(1)).clamp(1, self.spec.max_batch_rows.max(1));
        let fits = match &self.batch {
            Some(b) => {
                Arc::ptr_eq(&b.table, &change.table)
                    && b.op == change.op
                    && b.shape == shape
                    && !b.keys.contains(&key)
                    && b.rows.len() < max
            }
            None => false,
        };
        if !fits {
            self.flush().await?;
        }
        let batch = self.batch.get_or_insert_with(|| Batch {
            table: change.table.clone(),
            op: change.op,
            shape,
            rows: Vec::new(),
            keys: HashSet::new(),
            origins: Vec::new(),
            fallbacks: Vec::new(),
        });
        batch.keys.insert(key);
        batch.rows.push(change);
        batch.origins.push(origin);
        batch.fallbacks.push(fallback);
        Ok(())
    }

    async fn target_table(
        &mut self,
        table: &TableName,
    ) -> Result<Arc<TargetTable>, MysqlSinkError> {
        if let Some(t) = self.tables.get(table) {
            return Ok(t.clone());
        }
        // The target's own database, whatever schema the source called it.
        let db_name = self.spec.endpoint.database().to_string();
        let columns = MysqlColumn::load_table(&mut self.conn, &db_name, &table.name)
            .await
            .map_err(db(format!("read the columns of {table}")))?;
        if columns.is_empty() {
            return Err(MysqlSinkError::MissingTable {
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
        let t = Arc::new(TargetTable {
            quoted: format!("{}.{}", quote_ident(&db_name), quote_ident(&table.name)),
            columns: columns.into_iter().map(|c| (c.name.clone(), c)).collect(),
            key,
        });
        self.tables.insert(table.clone(), t.clone());
        Ok(t)
    }

    fn param(
        &self,
        target: &TargetTable,
        schema: &TableSchema,
        change: &RowChange,
        column: usize,
        v: &Value,
    ) -> Result<mysql_async::Value, MysqlSinkError> {
        let name = &schema.columns[column].name;
        let col = target
            .columns
            .get(name)
            .ok_or_else(|| MysqlSinkError::MissingColumn {
                table: schema.table.clone(),
                column: name.clone(),
            })?;
        if v.is_null() {
            return Ok(mysql_async::Value::NULL);
        }
        encode_param(col, v).map_err(|e| MysqlSinkError::Value {
            table: schema.table.clone(),
            key: describe_key(change),
            column: name.clone(),
            reason: e.to_string(),
        })
    }

    /// Apply the pending batch. On a data error (InnoDB rolls back just the
    /// failed statement) the rows are retried one by one and the ones the
    /// target refuses are quarantined; the stream goes on.
    async fn flush(&mut self) -> Result<(), MysqlSinkError> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        match self.execute_batch(&batch).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_data_error() => {
                for ((row, origin), fallback) in
                    batch.rows.iter().zip(&batch.origins).zip(&batch.fallbacks)
                {
                    let single = Batch {
                        table: batch.table.clone(),
                        op: batch.op,
                        shape: batch.shape.clone(),
                        rows: vec![row.clone()],
                        keys: HashSet::new(),
                        origins: vec![origin.clone()],
                        fallbacks: vec![None],
                    };
                    match self.execute_batch(&single).await {
                        Ok(()) => {}
                        Err(e) if e.is_data_error() => {
                            let reason = crate::error_chain::error_chain(&e);
                            let record = fallback.as_ref().unwrap_or(row);
                            // The net row is kept in the target's terms: the
                            // statement's source form would bring back the
                            // statement on retry.
                            let mut origin = origin.clone();
                            if fallback.is_some() {
                                origin.source = crate::canonical::SourceForm::Unknown;
                            }
                            self.quarantine
                                .record(record, &origin, &describe_key(record), &reason)
                                .await
                                .map_err(MysqlSinkError::Quarantine)?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn execute_batch(&mut self, batch: &Batch) -> Result<(), MysqlSinkError> {
        let schema = batch.table.clone();
        let target = self.target_table(&schema.table).await?;
        if !target.columns.contains_key(&self.spec.marker_column) {
            return Err(MysqlSinkError::MissingColumn {
                table: schema.table.clone(),
                column: self.spec.marker_column.clone(),
            });
        }
        let source_key: Vec<&str> = schema
            .key
            .iter()
            .map(|&i| schema.columns[i].name.as_str())
            .collect();
        if source_key != target.key.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(MysqlSinkError::KeyMismatch {
                table: schema.table.clone(),
                source_key: source_key.join(", "),
                target_key: target.key.join(", "),
            });
        }
        let marker = quote_ident(&self.spec.marker_column);
        let mut params: Vec<mysql_async::Value> = Vec::new();
        let sql = match batch.op {
            Op::Insert => {
                let mut cols: Vec<String> = batch
                    .shape
                    .iter()
                    .map(|&i| quote_ident(&schema.columns[i].name))
                    .collect();
                cols.push(marker);
                cols.push(quote_ident(&self.spec.stamp_column));
                for change in &batch.rows {
                    let after = change.after.as_ref();
                    for &i in &batch.shape {
                        let v = after
                            .and_then(|a| a.0.get(i))
                            .and_then(|v| v.as_ref())
                            .unwrap_or(&Value::Null);
                        params.push(self.param(&target, &schema, change, i, v)?);
                    }
                    params.push(mysql_async::Value::Bytes(
                        change.marker.to_json().into_bytes(),
                    ));
                    params.push(self.stamp_param(&target, &schema, change)?);
                }
                let row = format!("({})", vec!["?"; cols.len()].join(", "));
                format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    target.quoted,
                    cols.join(", "),
                    vec![row; batch.rows.len()].join(", ")
                )
            }
            Op::Update => {
                let change = &batch.rows[0];
                let after = change.after.as_ref();
                let mut sets = Vec::new();
                for &i in &batch.shape {
                    sets.push(format!("{} = ?", quote_ident(&schema.columns[i].name)));
                    let v = after
                        .and_then(|a| a.0.get(i))
                        .and_then(|v| v.as_ref())
                        .unwrap_or(&Value::Null);
                    params.push(self.param(&target, &schema, change, i, v)?);
                }
                sets.push(format!("{marker} = ?"));
                params.push(mysql_async::Value::Bytes(
                    change.marker.to_json().into_bytes(),
                ));
                // Set explicitly: ON UPDATE would stamp the applier's own time.
                sets.push(format!("{} = ?", quote_ident(&self.spec.stamp_column)));
                params.push(self.stamp_param(&target, &schema, change)?);
                let wheres = self.key_params(&target, &schema, change, &mut params)?;
                format!(
                    "UPDATE {} SET {} WHERE {}",
                    target.quoted,
                    sets.join(", "),
                    wheres
                )
            }
            Op::Delete => {
                let change = &batch.rows[0];
                let wheres = self.key_params(&target, &schema, change, &mut params)?;
                format!("DELETE FROM {} WHERE {}", target.quoted, wheres)
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

    /// The stamp column's value for a written version: the marker's time, so
    /// that the row reads back as written by duplex until a user changes it.
    fn stamp_param(
        &self,
        target: &TargetTable,
        schema: &TableSchema,
        change: &RowChange,
    ) -> Result<mysql_async::Value, MysqlSinkError> {
        let col = target.columns.get(&self.spec.stamp_column).ok_or_else(|| {
            MysqlSinkError::MissingColumn {
                table: schema.table.clone(),
                column: self.spec.stamp_column.clone(),
            }
        })?;
        encode_param(
            col,
            &Value::TimestampTz(Timestamp::Micros(change.marker.ts)),
        )
        .map_err(|e| MysqlSinkError::Value {
            table: schema.table.clone(),
            key: describe_key(change),
            column: self.spec.stamp_column.clone(),
            reason: format!("the version time does not fit the stamp column: {e}"),
        })
    }

    fn key_params(
        &self,
        target: &TargetTable,
        schema: &TableSchema,
        change: &RowChange,
        params: &mut Vec<mysql_async::Value>,
    ) -> Result<String, MysqlSinkError> {
        let image = change.before.as_ref().or(change.after.as_ref());
        let mut wheres = Vec::new();
        for &i in &schema.key {
            let v = match image.and_then(|r| r.0.get(i)).and_then(|v| v.as_ref()) {
                Some(v) if !v.is_null() => v,
                _ => {
                    return Err(MysqlSinkError::Value {
                        table: schema.table.clone(),
                        key: describe_key(change),
                        column: schema.columns[i].name.clone(),
                        reason: "the change carries no value for this primary-key column".into(),
                    })
                }
            };
            wheres.push(format!("{} = ?", quote_ident(&schema.columns[i].name)));
            params.push(self.param(target, schema, change, i, v)?);
        }
        Ok(wheres.join(" AND "))
    }
}

impl crate::sink::applier::Applier for MysqlSink {
    type Error = MysqlSinkError;

    crate::sink::applier::applier_accessors!();

    fn policy_for(&self, table: &TableName) -> TablePolicy {
        self.spec
            .policies
            .get(&table.name)
            .cloned()
            .unwrap_or_default()
    }

    // Tagged as duplex's own transaction, like every applied one: the reader
    // then passes on only flagged rows. No source position moves.
    async fn begin_own(&mut self) -> Result<(), MysqlSinkError> {
        self.begin_tagged().await
    }

    async fn commit_own(&mut self) -> Result<(), MysqlSinkError> {
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(db("commit an own transaction"))
    }

    async fn mark_applied(&mut self, _position: SourcePosition) -> Result<(), MysqlSinkError> {
        // The applied position lives in the marker table, written by the
        // stream's commits; the copy leaves it alone.
        Ok(())
    }

    async fn foreign_key_checks(&mut self, on: bool) -> Result<(), MysqlSinkError> {
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

    async fn rollback_own(&mut self) -> Result<(), MysqlSinkError> {
        self.conn
            .query_drop("ROLLBACK")
            .await
            .map_err(db("roll back an own transaction"))
    }

    async fn normalize(&mut self, change: &mut RowChange) -> Result<(), MysqlSinkError> {
        let target = self.target_table(&change.table.table).await?;
        let columns: Vec<Option<&MysqlColumn>> = change
            .table
            .columns
            .iter()
            .map(|c| target.columns.get(&c.name))
            .collect();
        for image in [change.before.as_mut(), change.after.as_mut()]
            .into_iter()
            .flatten()
        {
            for (slot, col) in image.0.iter_mut().zip(&columns) {
                if let (Some(v), Some(col)) = (slot.as_mut(), col) {
                    if let Ok(stored) = crate::mysql::types::as_stored(col, v) {
                        *v = stored;
                    }
                }
            }
        }
        Ok(())
    }

    async fn read_rows(
        &mut self,
        schema: &Arc<TableSchema>,
        keys: &[KeyRef],
    ) -> Result<Vec<(Vec<u8>, Local)>, MysqlSinkError> {
        self.read_local(schema, keys).await
    }

    async fn queue_write(
        &mut self,
        change: RowChange,
        origin: ChangeOrigin,
        fallback: Option<RowChange>,
    ) -> Result<(), MysqlSinkError> {
        self.add_write(change, origin, fallback).await
    }

    async fn flush_writes(&mut self) -> Result<(), MysqlSinkError> {
        self.flush().await
    }

    async fn store_tombstones(&mut self, resolved: &Resolved) -> Result<(), MysqlSinkError> {
        self.write_tombstones(resolved).await
    }
}
