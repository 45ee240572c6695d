//! Counters of one direction of a link, shared by its source, sink and the
//! status writer. Plain atomics: read often, written on the hot path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::canonical::{SourceKind, SourcePosition};

#[derive(Debug, Default)]
pub struct DirectionStats {
    /// Source transactions applied and committed on the target.
    pub applied_txns: AtomicU64,
    /// Row changes applied and committed on the target.
    pub applied_rows: AtomicU64,
    pub inserted: AtomicU64,
    pub updated: AtomicU64,
    pub deleted: AtomicU64,
    /// Target transactions committed (several source transactions may share one).
    pub target_commits: AtomicU64,
    /// Source transactions dropped because duplex itself wrote them (no echo).
    pub echo_txns_skipped: AtomicU64,
    /// Updates or deletes whose row the target did not have.
    pub missing_rows: AtomicU64,
    /// Changes the target could not take, kept in duplex.quarantine.
    pub quarantined: AtomicU64,
    /// Conflicts detected (recorded in duplex.conflicts).
    pub conflicts: AtomicU64,
    /// Incoming changes older than the target's row (already seen there).
    pub stale: AtomicU64,
    /// Errors that stopped the direction, by class (`crate::error_class`).
    pub errors_transient: AtomicU64,
    pub errors_operator: AtomicU64,
    /// Commit time (µs since the epoch) of the newest source transaction read.
    pub read_commit_us: AtomicI64,
    /// Commit time of the newest source transaction committed on the target.
    pub applied_commit_us: AtomicI64,
    /// Events read from the source and waiting for the applier.
    pub queued_events: AtomicU64,
    /// After the direction's apply workers waited for each other (see
    /// `pipeline::dispatch`), it applies with one worker until the source
    /// position with this counter is committed (0: no such wait).
    pub serial_until: AtomicU64,
    /// Per source table (`schema.table`): changes applied [inserts, updates, deletes].
    tables: Mutex<BTreeMap<String, [u64; 3]>>,
    /// Source tables (`schema.table`) whose changes are held because their
    /// shape differs on the target (see `journal::schema_holds`).
    schema_held: Mutex<std::collections::BTreeSet<String>>,
    /// Conflicts recorded by this process, per (table, kind, outcome).
    conflict_counts: Mutex<BTreeMap<(String, String, String), u64>>,
    /// Initial syncs of this process, per table: rows copied, the source's
    /// estimate of its rows, and whether the copy is done.
    copies: Mutex<BTreeMap<String, CopyProgress>>,
    /// Source transactions read and not yet applied, oldest first: (commit
    /// position's counter, commit time in µs). Bounded; what lag is measured on.
    unapplied: Mutex<std::collections::VecDeque<(u64, i64)>>,
    /// The kind of stream the positions below belong to.
    pub kind: SourceKind,
    source_position: AtomicU64,
    applied_position: AtomicU64,
    state: Mutex<String>,
    last_error: Mutex<Option<String>>,
    /// When the current error began (µs since the epoch); cleared once the
    /// direction is healthy again (see [`DirectionStats::error_since`]).
    error_since_us: Mutex<Option<i64>>,
    /// Since when the direction has been working (streaming or copying),
    /// and its target commits then.
    working_since: Mutex<Option<(std::time::Instant, u64)>>,
    /// How long the source keeps what the direction has not applied, as
    /// last read (see `runner::retention_watch`).
    retention: Mutex<Option<SourceRetention>>,
}

/// How long a source keeps what its direction has not applied: a
/// PostgreSQL slot's WAL (until `max_slot_wal_keep_size` invalidates the
/// slot), a MySQL server's binlogs (until they are purged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceRetention {
    /// PostgreSQL: `pg_current_wal_lsn() - restart_lsn`. MySQL: the binlog
    /// from the applied position to the end.
    pub retained_bytes: Option<i64>,
    /// PostgreSQL: `pg_replication_slots.wal_status` (reserved, extended,
    /// unreserved, lost).
    pub wal_status: Option<String>,
    /// PostgreSQL: `safe_wal_size`, the WAL that may still be written before
    /// the slot is invalidated; `None` where nothing bounds it.
    pub safe_bytes: Option<i64>,
    /// MySQL: the oldest binlog file the server still has.
    pub oldest_binlog: Option<String>,
    /// MySQL: binlog files older than the one holding the applied position
    /// (0: the next purge removes what the direction still needs).
    pub headroom_files: Option<i64>,
    /// What is at risk and what to do, while it is.
    pub warning: Option<String>,
    /// When it was read (µs since the epoch).
    pub checked_us: i64,
}

/// An initial sync's progress on one table (see `snapshot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyProgress {
    pub rows_done: i64,
    /// The source's estimate when the copy started.
    pub rows_estimated: i64,
    pub done: bool,
}

/// A direction that has been working this long since its last error, even
/// without committing anything (an idle stream), is healthy again.
pub const HEALTHY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl DirectionStats {
    pub fn new(kind: SourceKind) -> DirectionStats {
        DirectionStats {
            kind,
            ..DirectionStats::default()
        }
    }

    pub fn set_retention(&self, health: Option<SourceRetention>) {
        if let Ok(mut s) = self.retention.lock() {
            *s = health;
        }
    }

    pub fn retention(&self) -> Option<SourceRetention> {
        self.retention.lock().ok().and_then(|s| s.clone())
    }

    pub fn set_source_position(&self, p: SourcePosition) {
        self.source_position
            .fetch_max(p.counter(), Ordering::Relaxed);
    }

    pub fn set_applied_position(&self, p: SourcePosition) {
        self.applied_position
            .fetch_max(p.counter(), Ordering::Relaxed);
        if let Ok(mut q) = self.unapplied.lock() {
            while q.front().is_some_and(|(c, _)| *c <= p.counter()) {
                q.pop_front();
            }
        }
    }

    /// A source transaction was read (`commit` is its commit position).
    pub fn note_read(&self, commit: SourcePosition, commit_time_us: i64) {
        self.read_commit_us
            .fetch_max(commit_time_us, Ordering::Relaxed);
        if let Ok(mut q) = self.unapplied.lock() {
            // Beyond this many, the oldest entries already say how far behind.
            if q.len() < 100_000 {
                q.push_back((commit.counter(), commit_time_us));
            }
        }
    }

    pub fn source_position(&self) -> Option<SourcePosition> {
        match self.source_position.load(Ordering::Relaxed) {
            0 => None,
            v => Some(SourcePosition::from_counter(self.kind, v)),
        }
    }

    pub fn applied_position(&self) -> Option<SourcePosition> {
        match self.applied_position.load(Ordering::Relaxed) {
            0 => None,
            v => Some(SourcePosition::from_counter(self.kind, v)),
        }
    }

    pub fn set_state(&self, state: &str) {
        if let Ok(mut s) = self.state.lock() {
            if *s == state {
                return;
            }
            state.clone_into(&mut s);
        }
        if let Ok(mut w) = self.working_since.lock() {
            *w = matches!(state, "streaming" | "initial sync").then(|| {
                (
                    std::time::Instant::now(),
                    self.target_commits.load(Ordering::Relaxed),
                )
            });
        }
    }

    pub fn state(&self) -> String {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The direction failed with `error` (kept for the status table's
    /// `last_error`); it is current until the direction is healthy again.
    pub fn set_error(&self, error: Option<String>) {
        if error.is_some() {
            if let Ok(mut since) = self.error_since_us.lock() {
                since.get_or_insert_with(crate::marker::now_micros);
            }
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = error;
        }
    }

    /// When the current error began, or `None` when the direction is
    /// healthy: it has not failed, or since it last did it has been working
    /// and either committed a target transaction or kept working for
    /// [`HEALTHY_AFTER`].
    pub fn error_since(&self) -> Option<i64> {
        let mut since = self.error_since_us.lock().ok()?;
        (*since)?;
        let working = self.working_since.lock().ok().and_then(|w| *w);
        if let Some((at, commits)) = working {
            if at.elapsed() >= HEALTHY_AFTER
                || self.target_commits.load(Ordering::Relaxed) > commits
            {
                *since = None;
            }
        }
        *since
    }

    /// Carry on from the totals an earlier run wrote: the counters are the
    /// direction's whole history. Before the direction starts.
    pub fn seed(&self, totals: &crate::control::StatusTotals) {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        self.applied_txns
            .store(n(totals.applied_txns), Ordering::Relaxed);
        self.applied_rows
            .store(n(totals.applied_rows), Ordering::Relaxed);
        self.echo_txns_skipped
            .store(n(totals.echo_txns_skipped), Ordering::Relaxed);
        self.quarantined
            .store(n(totals.quarantined), Ordering::Relaxed);
        self.conflicts.store(n(totals.conflicts), Ordering::Relaxed);
        self.inserted.store(n(totals.by_op[0]), Ordering::Relaxed);
        self.updated.store(n(totals.by_op[1]), Ordering::Relaxed);
        self.deleted.store(n(totals.by_op[2]), Ordering::Relaxed);
        self.add_table_counts(totals.tables.iter().map(|(t, c)| (t.clone(), c.map(n))));
    }

    /// The last error, cleared by reading it (the status table keeps it).
    pub fn take_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }

    /// Add a committed target transaction's changes per table.
    pub fn add_table_counts(&self, counts: impl IntoIterator<Item = (String, [u64; 3])>) {
        if let Ok(mut tables) = self.tables.lock() {
            for (table, by_op) in counts {
                let entry = tables.entry(table).or_default();
                for (total, n) in entry.iter_mut().zip(by_op) {
                    *total += n;
                }
            }
        }
    }

    /// `n` conflicts of `kind` with `outcome` recorded on `table`.
    pub fn count_conflicts(&self, table: &str, kind: &str, outcome: &str, n: u64) {
        if let Ok(mut c) = self.conflict_counts.lock() {
            *c.entry((table.to_string(), kind.to_string(), outcome.to_string()))
                .or_default() += n;
        }
    }

    /// Conflicts recorded by this process: (table, kind, outcome) and count.
    pub fn conflict_counts(&self) -> Vec<((String, String, String), u64)> {
        self.conflict_counts
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Where the initial sync of `table` is.
    pub fn set_copy_progress(&self, table: &str, progress: CopyProgress) {
        if let Ok(mut c) = self.copies.lock() {
            c.insert(table.to_string(), progress);
        }
    }

    pub fn copy_progress(&self) -> Vec<(String, CopyProgress)> {
        self.copies
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// The tables held for their shape now.
    pub fn set_schema_held(&self, tables: std::collections::BTreeSet<String>) {
        if let Ok(mut held) = self.schema_held.lock() {
            *held = tables;
        }
    }

    pub fn schema_held(&self) -> Vec<String> {
        self.schema_held
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn table_counts(&self) -> Vec<(String, [u64; 3])> {
        self.tables
            .lock()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// How far the target is behind what was read: seconds since the commit
    /// of the oldest source transaction read and not yet applied (0 when
    /// caught up), and bytes of the source's log between the read and the
    /// applied position (the same binlog file only).
    pub fn lag(&self, now_us: i64) -> (Option<f64>, Option<i64>) {
        let (read, applied) = (self.source_position(), self.applied_position());
        let oldest = self
            .unapplied
            .lock()
            .ok()
            .and_then(|q| q.front().map(|(_, t)| *t));
        let seconds = Some(oldest.map_or(0.0, |t| (now_us - t).max(0) as f64 / 1e6));
        let bytes = match (read, applied) {
            (Some(SourcePosition::PgLsn(r)), Some(SourcePosition::PgLsn(a))) => {
                i64::try_from(r.saturating_sub(a)).ok()
            }
            (
                Some(SourcePosition::Binlog {
                    file_seq: rf,
                    pos: rp,
                }),
                Some(SourcePosition::Binlog {
                    file_seq: af,
                    pos: ap,
                }),
            ) if rf == af => Some(i64::from(rp.saturating_sub(ap))),
            (Some(_), Some(_)) => None,
            _ => Some(0),
        };
        (seconds, bytes)
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
