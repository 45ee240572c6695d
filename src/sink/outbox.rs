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
/// Longest a batch's shipping may take.
const SHIP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// withdraw a staged record), so that the commit does not write them
    /// all at once while the transaction holds its row locks.
    pub(crate) async fn write_staged(&mut self) -> Result<(), SinkError> {
        let mut entries = self.quarantine.take_staged();
        entries.extend(self.conflicts.take_staged());
        if entries.is_empty() {
            return Ok(());
        }
        let encoded: Vec<String> = entries.iter().map(encode).collect();
        let scope = self.outbox_scope();
        self.target.write_outbox(scope, &encoded).await?;
        self.written.extend(entries);
        Ok(())
    }

    /// Commit the open target transaction, with `applied` (see
    /// `Target::commit`) and the journal records staged since it began;
    /// then ship them. `count`: the records are new (a retry refused again
    /// records its change once more, already counted).
    pub(crate) async fn commit_target(
        &mut self,
        applied: Option<(SourcePosition, i64)>,
        count: bool,
    ) -> Result<(), SinkError> {
        self.write_staged().await?;
        self.target.commit(applied).await?;
        let entries = std::mem::take(&mut self.written);
        if entries.is_empty() {
            return Ok(());
        }
        if count {
            self.count_records(&entries);
        }
        self.outbox_pending = true;
        // The records are safe in the target: shipping them now is for the
        // DBA's sake, and a failure only delays them.
        if let Err(e) = self.ship_reachable(false).await {
            tracing::warn!(error = %e, "cannot ship conflict and quarantine records to the control schema now; they wait in the target's outbox");
        }
        Ok(())
    }

    /// Roll the open target transaction back, with the records staged in it.
    pub(crate) async fn rollback_target(&mut self) -> Result<(), SinkError> {
        self.quarantine.drop_staged();
        self.conflicts.drop_staged();
        self.written.clear();
        self.target.rollback().await
    }

    fn count_records(&self, entries: &[Entry]) {
        for e in entries {
            match e {
                Entry::Conflict(c) => {
                    self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .count_conflict(&c.table_name, &c.kind, &c.outcome);
                }
                Entry::Quarantine(q) if q.status == "pending" => {
                    self.stats.quarantined.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    /// Ship what waits in the target's outbox (this worker's entries, or
    /// the direction's with `all_workers`) to the control schema, in order,
    /// if the control database can be reached. Returns whether the outbox is
    /// empty now. Between target transactions only.
    pub(crate) async fn ship_journal(&mut self, all_workers: bool) -> Result<bool, SinkError> {
        if !self.idle() {
            return Ok(false);
        }
        self.ship_reachable(all_workers).await
    }

    /// [`Applier::ship_journal`], where no target transaction is open
    /// (right after a commit, before the group is closed).
    async fn ship_reachable(&mut self, all_workers: bool) -> Result<bool, SinkError> {
        if !self.outbox_pending && !all_workers {
            return Ok(true);
        }
        if !self.shipper.reachable().await {
            return Ok(false);
        }
        match self.ship_outbox(all_workers).await {
            Ok(()) => Ok(true),
            // The control database went away meanwhile: the records wait.
            Err(SinkError::Journal(e)) => {
                tracing::warn!(error = %e, "cannot ship conflict and quarantine records now; they wait in the target's outbox");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Ship the outbox (see [`Applier::ship_journal`]); an unreachable
    /// control database is an error.
    pub(crate) async fn ship_outbox(&mut self, all_workers: bool) -> Result<(), SinkError> {
        let scope = self.outbox_scope();
        let mut after = 0;
        let mut unreadable = false;
        loop {
            let rows = self
                .target
                .read_outbox(scope, all_workers, after, SHIP_BATCH)
                .await?;
            let Some(&(last, _)) = rows.last() else {
                self.outbox_pending = unreadable;
                return Ok(());
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
                        unreadable = true;
                        tracing::error!(entry_id = id, entry = %text, "an entry of the target's journal outbox cannot be read; it stays there (duplex.site_journal / _duplex_journal)");
                    }
                }
            }
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
        }
    }
}
