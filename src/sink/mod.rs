//! Sinks: apply the canonical event stream to a peer database, in source commit
//! order, recording the applied source position atomically with the data.
//!
//! [`Sink`] is the engine-independent face the pipeline drives.

pub(crate) mod applier;
pub mod mysql;
pub(crate) mod own;
pub mod pg;
pub(crate) mod resolve;

use std::sync::Arc;

use crate::canonical::encode::encode_value;
use crate::canonical::{ChangeEvent, Op, RowChange, SourcePosition};
use crate::stats::DirectionStats;

/// How to apply one direction of a link to its target site.
// Built once per direction start; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SinkSpec {
    Pg(pg::PgSinkSpec),
    Mysql(mysql::MysqlSinkSpec),
}

impl SinkSpec {
    pub fn site_name(&self) -> &str {
        match self {
            SinkSpec::Pg(s) => &s.endpoint.site_name,
            SinkSpec::Mysql(s) => &s.endpoint.site_name,
        }
    }
}

/// A connected sink.
pub enum Sink {
    Pg(Box<pg::PgSink>),
    Mysql(Box<mysql::MysqlSink>),
}

impl Sink {
    pub async fn connect(spec: SinkSpec, stats: Arc<DirectionStats>) -> Result<Sink, crate::Error> {
        match spec {
            SinkSpec::Pg(s) => Ok(Sink::Pg(Box::new(pg::PgSink::connect(s, stats).await?))),
            SinkSpec::Mysql(s) => Ok(Sink::Mysql(Box::new(
                mysql::MysqlSink::connect(s, stats).await?,
            ))),
        }
    }

    fn site(&self) -> String {
        match self {
            Sink::Pg(s) => s.site_name().to_string(),
            Sink::Mysql(s) => s.site_name().to_string(),
        }
    }

    /// The applied source position's counter: where the source resumes.
    pub async fn resume_position(&mut self) -> Result<Option<u64>, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .resume_position()
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .resume_position()
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Settle quarantine records a previous run left unconfirmed.
    pub async fn reconcile_quarantine(
        &mut self,
        resume_counter: Option<u64>,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .reconcile_quarantine(resume_counter)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .reconcile_quarantine(resume_counter)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply one event; returns a position that may be confirmed now.
    pub async fn apply(
        &mut self,
        event: ChangeEvent,
    ) -> Result<Option<SourcePosition>, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .apply(event)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .apply(event)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply one mapped row change of the current source transaction;
    /// `source`: the change before the mapping, when it changed it.
    pub async fn apply_change(
        &mut self,
        change: RowChange,
        source: Option<Arc<RowChange>>,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        let source = crate::canonical::SourceForm::from_mapping(source);
        match self {
            Sink::Pg(s) => s
                .apply_change(change, source)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .apply_change(change, source)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply conflicts a DBA settled since the last call (between source
    /// transactions only).
    pub async fn apply_resolutions(&mut self) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::apply_resolutions(&mut **s)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::apply_resolutions(&mut **s)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply quarantined changes a DBA asked to retry (between source
    /// transactions only).
    pub async fn apply_quarantine_retries(
        &mut self,
        mapping: &mut crate::mapping::DirectionMapping,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::apply_quarantine_retries(&mut **s, mapping)
                .await
                .map(drop)
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::apply_quarantine_retries(&mut **s, mapping)
                .await
                .map(drop)
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Resume the stopped tables a DBA has resumed since the last call
    /// (between source transactions only).
    pub async fn resume_stopped(
        &mut self,
        mapping: &mut crate::mapping::DirectionMapping,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::resume_stopped(&mut **s, mapping)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::resume_stopped(&mut **s, mapping)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply rows copied by the initial sync (one target transaction).
    pub async fn apply_snapshot_rows(
        &mut self,
        changes: Vec<(RowChange, crate::canonical::ChangeOrigin)>,
        at: Option<crate::canonical::SourcePosition>,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::apply_snapshot_rows(&mut **s, changes, at)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::apply_snapshot_rows(&mut **s, changes, at)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply, in order, the changes held for tables resumed since (before the
    /// stream goes on).
    pub async fn release_held(
        &mut self,
        mapping: &mut crate::mapping::DirectionMapping,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::release_held(&mut **s, mapping)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::release_held(&mut **s, mapping)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Remove tombstones older than `retention` (between source transactions).
    pub async fn purge_tombstones(
        &mut self,
        retention: std::time::Duration,
    ) -> Result<u64, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .purge_tombstones(retention)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .purge_tombstones(retention)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Commit the open target transaction; returns the position to confirm.
    pub async fn commit(&mut self) -> Result<Option<SourcePosition>, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .commit()
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .commit()
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// A target transaction holding only whole source transactions is open.
    pub fn has_uncommitted(&self) -> bool {
        match self {
            Sink::Pg(s) => s.has_uncommitted(),
            Sink::Mysql(s) => s.has_uncommitted(),
        }
    }

    pub fn group_rows(&self) -> u64 {
        match self {
            Sink::Pg(s) => s.group_rows(),
            Sink::Mysql(s) => s.group_rows(),
        }
    }

    /// How long the open target transaction has been open, if one is.
    pub fn group_age(&self) -> Option<std::time::Duration> {
        let since = match self {
            Sink::Pg(s) => s.opened_at(),
            Sink::Mysql(s) => s.opened_at(),
        };
        since.map(|t| t.elapsed())
    }

    /// Decide and write the changes taken so far (they are otherwise
    /// gathered into larger batches), so the open target transaction holds
    /// the locks of all its rows.
    pub async fn write_pending(&mut self) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .write_pending()
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .write_pending()
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Does a session on the target wait for a lock the applier holds?
    pub async fn sessions_waiting(&mut self) -> Result<bool, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .sessions_waiting()
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .sessions_waiting()
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    pub fn group_txns(&self) -> u64 {
        match self {
            Sink::Pg(s) => s.group_txns(),
            Sink::Mysql(s) => s.group_txns(),
        }
    }
}

/// The target transaction a sink has open, which may hold several whole source
/// transactions. Both sinks keep the same books: what to record and confirm at
/// commit, and when committing is allowed at all.
#[derive(Debug, Default)]
pub(crate) struct TxnGroup {
    pub open: bool,
    /// Inside a source transaction (Begin seen, Commit not yet): never commit here.
    pub in_source_txn: bool,
    pub txns: u64,
    pub rows: u64,
    by_op: [u64; 3],
    /// The same per source table.
    by_table: std::collections::HashMap<crate::canonical::TableName, [u64; 3]>,
    /// End position of the last whole source transaction in the group.
    pub last_end: Option<SourcePosition>,
    pub last_commit_time_us: i64,
    /// A later position with nothing to apply (idle stream, skipped echo).
    progress: Option<SourcePosition>,
    /// The source transaction being applied, and how many changes of it so far.
    current: Option<SourcePosition>,
    change_index: u32,
    /// When the open target transaction began (it holds the locks of the
    /// rows it has read back or written until it ends).
    pub opened_at: Option<std::time::Instant>,
}

impl TxnGroup {
    /// A source transaction begins inside the open target transaction.
    pub fn begin_source_txn(&mut self, meta: &crate::canonical::TxnMeta) {
        self.in_source_txn = true;
        self.opened_at.get_or_insert_with(std::time::Instant::now);
        self.last_commit_time_us = meta.commit_time_us;
        self.current = Some(meta.commit_position);
        self.change_index = 0;
    }

    /// Count a change of the current source transaction; returns where it sits
    /// in the source's stream.
    pub fn count_change(&mut self, change: &RowChange) -> crate::canonical::ChangeOrigin {
        let origin = self.next_origin();
        self.rows += 1;
        let op = match change.op {
            Op::Insert => 0,
            Op::Update => 1,
            Op::Delete => 2,
        };
        self.by_op[op] += 1;
        // Looked up without allocating: this runs for every row.
        match self.by_table.get_mut(&change.table.table) {
            Some(t) => t[op] += 1,
            None => {
                let mut t = [0; 3];
                t[op] = 1;
                self.by_table.insert(change.table.table.clone(), t);
            }
        }
        origin
    }

    /// Where the next change of the current source transaction sits, without
    /// counting it as applied (a held change).
    pub fn next_origin(&mut self) -> crate::canonical::ChangeOrigin {
        self.change_index += 1;
        crate::canonical::ChangeOrigin::at(
            self.current.unwrap_or(SourcePosition::PgLsn(0)),
            self.change_index,
        )
    }

    pub fn end_source_txn(&mut self, end_position: SourcePosition) {
        self.txns += 1;
        self.in_source_txn = false;
        self.last_end = Some(end_position);
    }

    /// Nothing to apply up to `position`: confirm it now when no target
    /// transaction is open, else once the open one commits.
    pub fn progress(&mut self, position: SourcePosition) -> Option<SourcePosition> {
        if self.open {
            self.progress = Some(position);
            None
        } else {
            Some(position)
        }
    }

    /// With no target transaction open: a pending progress position.
    pub fn take_idle_progress(&mut self) -> Option<SourcePosition> {
        self.progress.take()
    }

    /// Account a committed target transaction and reset; returns the position
    /// that may now be confirmed to the source.
    pub fn committed(&mut self, stats: &DirectionStats) -> Option<SourcePosition> {
        use std::sync::atomic::Ordering::Relaxed;
        let g = std::mem::take(self);
        stats.applied_txns.fetch_add(g.txns, Relaxed);
        stats.applied_rows.fetch_add(g.rows, Relaxed);
        stats.inserted.fetch_add(g.by_op[0], Relaxed);
        stats.updated.fetch_add(g.by_op[1], Relaxed);
        stats.deleted.fetch_add(g.by_op[2], Relaxed);
        stats.target_commits.fetch_add(1, Relaxed);
        stats.add_table_counts(g.by_table.into_iter().map(|(t, c)| (t.to_string(), c)));
        if let Some(p) = g.last_end {
            stats.set_applied_position(p);
            stats
                .applied_commit_us
                .fetch_max(g.last_commit_time_us, Relaxed);
        }
        g.last_end.max(g.progress)
    }
}

/// How a target row was last written, given when the target's changes to
/// the table began to be captured for the link (`capture_start`, the site's
/// clock in µs; `None`: not known, as for links set up before duplex
/// recorded it). A row a user wrote before then, that duplex never wrote
/// here (no marker), is a seeded version that no change stream carries.
pub(crate) fn seeded(
    stamp: crate::conflict::Stamp,
    has_marker: bool,
    capture_start: Option<i64>,
) -> crate::conflict::Stamp {
    use crate::conflict::Stamp;
    match (stamp, capture_start) {
        // No version time: written before commit timestamps were on (a
        // PostgreSQL site needs them on while duplex captures it).
        (Stamp::User { t }, Some(start)) if !has_marker && t.is_none_or(|t| t < start) => {
            Stamp::Seed { t }
        }
        (stamp, _) => stamp,
    }
}

/// Indexes of the columns a change writes: those present in its after image
/// (an unchanged TOAST value is absent and must not be written).
pub(crate) fn shape_of(change: &RowChange) -> Vec<usize> {
    match &change.after {
        Some(after) => after
            .0
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    }
}

/// The canonical encoding of the row's key: the identity batching uses to keep
/// a second change of a row after the first. An insert is keyed by its new
/// image, anything else by the row it changes.
pub(crate) fn encoded_key(change: &RowChange) -> Vec<u8> {
    let image = match change.op {
        Op::Insert => change.after.as_ref(),
        _ => change.before.as_ref().or(change.after.as_ref()),
    };
    let mut out = Vec::new();
    if let Some(key) = image.and_then(|r| r.key(&change.table)) {
        for v in key {
            encode_value(&v, &mut out);
        }
    }
    out
}

/// The row's key for messages: `id=7` or `(a=1, b=x)`.
pub(crate) fn describe_key(change: &RowChange) -> String {
    let image = change.before.as_ref().or(change.after.as_ref());
    let parts: Vec<String> = change
        .table
        .key
        .iter()
        .map(|&i| {
            let v = image.and_then(|r| r.0.get(i)).and_then(|v| v.as_ref());
            // Stored in the control schema's text columns: no NUL character.
            let shown = v
                .map(|v| match v {
                    crate::canonical::Value::Text(s) => {
                        crate::journal::images::storable_text(s).into_owned()
                    }
                    v => crate::pg::types::encode_text(v)
                        .unwrap_or_else(|_| format!("<{}>", v.kind_name())),
                })
                .unwrap_or_else(|| "?".into());
            format!("{}={}", change.table.columns[i].name, shown)
        })
        .collect();
    parts.join(", ")
}
