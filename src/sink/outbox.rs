//! The applier's side of the journal outbox (see `journal::outbox`): the
//! records staged during a target transaction are written in it just before
//! it commits, and shipped to the control schema after, or later by worker
//! 0 when the control database could not be reached.

use std::sync::atomic::Ordering;

use crate::canonical::SourcePosition;
use crate::journal::outbox::{decode, encode, Entry};
use crate::journal::JournalError;
use crate::sink::target::{OutboxScope, Target};
use crate::sink::{Applier, SinkError};

/// Most entries read from the outbox and shipped at a time.
const SHIP_BATCH: usize = 500;
/// Most batches shipped after a commit or on a tick (the rest waits for
/// the next).
const SHIP_BATCHES: usize = 4;
/// Quarantine records staged in one target transaction before they are
/// written to the outbox ahead of its commit.
const STAGED_LIMIT: usize = 1000;
/// Longest a batch's shipping may take.
const SHIP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the records written in the open target transaction's outbox add
/// to the direction's counters once it commits. Only the tally is kept: the
/// records themselves are in the outbox (a big transaction's held changes
/// are not kept in memory).
#[derive(Debug, Default)]
pub(crate) struct WrittenRecords {
    /// Any record at all (then the outbox is shipped after the commit).
    any: bool,
    /// Conflicts by (table, kind, outcome).
    conflicts: std::collections::HashMap<(String, String, String), u64>,
    /// New quarantine records (status pending).
    quarantined: u64,
}

impl WrittenRecords {
    fn add(&mut self, entries: &[Entry]) {
        self.any |= !entries.is_empty();
        for e in entries {
            match e {
                Entry::Conflict(c) => {
                    *self
                        .conflicts
                        .entry((c.table_name.clone(), c.kind.clone(), c.outcome.clone()))
                        .or_default() += 1;
                }
                Entry::Quarantine(q) if q.status == "pending" => self.quarantined += 1,
                _ => {}
            }
        }
    }
}

impl<T: Target> Applier<T> {
    fn outbox_scope(&self) -> OutboxScope {
        OutboxScope {
            link_id: self.spec.journal.link_id,
            source_site: self.spec.journal.source_site,
            worker: self.target.worker(),
        }
    }

    /// Write the journal records staged so far into the open target
    /// transaction's outbox. Called once a source transaction's changes are
    /// all decided (a later batch of the same source transaction may still
    /// withdraw a staged conflict record), so that the commit does not write
    /// them all at once while the transaction holds its row locks; and for
    /// quarantine records alone (never withdrawn) whenever many are staged
    /// (a big transaction on a paused table holds each of its changes).
    pub(crate) async fn write_staged(&mut self, conflicts_too: bool) -> Result<(), SinkError> {
        let mut entries = self.quarantine.take_staged();
        if conflicts_too {
            entries.extend(self.conflicts.take_staged());
        }
        if entries.is_empty() {
            return Ok(());
        }
        let encoded: Vec<String> = entries.iter().map(encode).collect();
        let scope = self.outbox_scope();
        self.target.write_outbox(scope, &encoded).await?;
        self.written.add(&entries);
        Ok(())
    }

    /// Quarantine records staged beyond [`STAGED_LIMIT`] are written now.
    pub(crate) async fn write_staged_if_many(&mut self) -> Result<(), SinkError> {
        if self.quarantine.staged_len() >= STAGED_LIMIT {
            self.write_staged(false).await?;
        }
        Ok(())
    }

    /// Commit the open target transaction, with `applied` (see
    /// `Target::commit`) and the journal records staged since it began;
    /// then ship them. `new_quarantine`: its quarantine records are new (a
    /// retry refused again records its change once more, already counted).
    pub(crate) async fn commit_target(
        &mut self,
        applied: Option<(SourcePosition, i64)>,
        new_quarantine: bool,
    ) -> Result<(), SinkError> {
        self.write_staged(true).await?;
        self.target.commit(applied).await?;
        let written = std::mem::take(&mut self.written);
        if !written.any {
            return Ok(());
        }
        self.count_records(written, new_quarantine);
        // The records are safe in the target: shipping them now is for the
        // DBA's sake, and a failure only delays them.
        if let Err(e) = self.ship_reachable().await {
            tracing::warn!(error = %e, "cannot ship conflict and quarantine records to the control schema now; they wait in the target's outbox");
        }
        Ok(())
    }

    /// Roll the open target transaction back, with the records staged in it.
    pub(crate) async fn rollback_target(&mut self) -> Result<(), SinkError> {
        self.quarantine.drop_staged();
        self.conflicts.drop_staged();
        self.written = WrittenRecords::default();
        self.target.rollback().await
    }

    fn count_records(&self, written: WrittenRecords, new_quarantine: bool) {
        for ((table, kind, outcome), n) in written.conflicts {
            self.stats.conflicts.fetch_add(n, Ordering::Relaxed);
            self.stats.count_conflicts(&table, &kind, &outcome, n);
        }
        if new_quarantine {
            self.stats
                .quarantined
                .fetch_add(written.quarantined, Ordering::Relaxed);
        }
    }

    /// Ship what waits in the target's outbox to the control schema, in
    /// order, if the control database can be reached: some of it at most
    /// ([`SHIP_BATCHES`] batches), so that a backlog left by an outage
    /// never holds the stream up for long. Returns whether the outbox is
    /// empty now. Between target transactions only.
    pub(crate) async fn ship_journal(&mut self) -> Result<bool, SinkError> {
        if !self.idle() {
            return Ok(false);
        }
        self.ship_reachable().await
    }

    /// [`Applier::ship_journal`], where no target transaction is open
    /// (right after a commit, before the group is closed).
    async fn ship_reachable(&mut self) -> Result<bool, SinkError> {
        if !self.shipper.reachable().await {
            return Ok(false);
        }
        match self.ship_outbox(Some(SHIP_BATCHES)).await {
            Ok(empty) => Ok(empty),
            // The control database went away meanwhile: the records wait.
            Err(SinkError::Journal(e)) => {
                tracing::warn!(error = %e, "cannot ship conflict and quarantine records now; they wait in the target's outbox");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Ship the direction's outbox (every worker's entries, in the order
    /// they were written: a record and the later entry that settles it may
    /// sit in different workers' transactions), `batches` batches at most;
    /// returns whether it is empty now. An unreachable control database is
    /// an error.
    pub(crate) async fn ship_outbox(&mut self, batches: Option<usize>) -> Result<bool, SinkError> {
        let lock = self.ship_lock.clone();
        let _shipping = lock.lock().await;
        let scope = self.outbox_scope();
        let mut after = 0;
        let mut shipped_batches = 0;
        loop {
            if batches.is_some_and(|most| shipped_batches >= most) {
                return Ok(false);
            }
            let rows = self.target.read_outbox(scope, after, SHIP_BATCH).await?;
            let Some(&(last, _)) = rows.last() else {
                return Ok(true);
            };
            after = last;
            let mut shipped = Vec::with_capacity(rows.len());
            let mut entries = Vec::with_capacity(rows.len());
            for (id, text) in rows {
                match decode(&text) {
                    Some(e) => {
                        entries.push(e);
                        shipped.push(id);
                    }
                    // Written by a newer duplex, or damaged by hand: it
                    // stays for a person to read, and the rest is shipped.
                    None => {
                        if self.unreadable.insert(id) {
                            tracing::error!(entry_id = id, entry = %text, "an entry of the target's journal outbox cannot be read; it stays there (duplex.site_journal / _duplex_journal)");
                        }
                    }
                }
            }
            // In source order (the workers wrote their rows side by side):
            // the control schema's records follow the source, and an entry
            // that settles others comes after them.
            entries.sort_by_key(Entry::source_order);
            // Bounded: a control database that stops answering (a frozen
            // connection) must not hold the direction, which has to stop
            // at once when told (a lost lease).
            match tokio::time::timeout(SHIP_TIMEOUT, self.shipper.ship(&entries)).await {
                Ok(shipped) => shipped?,
                Err(_) => {
                    self.shipper.unreachable();
                    return Err(SinkError::Journal(JournalError::Timeout {
                        what: "ship conflict and quarantine records",
                        after: SHIP_TIMEOUT,
                    }));
                }
            }
            self.target.remove_outbox(&shipped).await?;
            shipped_batches += 1;
        }
    }
}
