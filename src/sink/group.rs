//! The applier's books on the target transaction it has open, which may
//! hold several whole source transactions: what to record and confirm at
//! commit, and when committing is allowed at all.

use crate::canonical::{ChangeOrigin, Op, RowChange, SourcePosition};
use crate::stats::DirectionStats;

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
    pub fn count_change(&mut self, change: &RowChange) -> ChangeOrigin {
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
    pub fn next_origin(&mut self) -> ChangeOrigin {
        self.change_index += 1;
        ChangeOrigin::at(
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
