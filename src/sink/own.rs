//! The applier's own target transactions, outside the source stream: a DBA's
//! settlement of a parked conflict, and a DBA's retry of a quarantined change.
//! Both run between source transactions, one per transaction, the same way on
//! every engine; an engine provides only the steps ([`Target`]). Also the
//! held changes of resumed tables, and the initial sync's pages.

use crate::canonical::{ChangeOrigin, RowChange, SourceForm, SourcePosition};
use crate::mapping::DirectionMapping;
use crate::marker::now_micros;
use crate::sink::resolve::KeyRef;
use crate::sink::target::Target;
use crate::sink::{Applier, SinkError};

impl<T: Target> Applier<T> {
    /// Apply the conflicts a DBA settled (see `duplex.resolve_conflict`), each in
    /// its own target transaction.
    pub async fn apply_resolutions(&mut self) -> Result<(), SinkError> {
        if !self.idle() {
            return Ok(());
        }
        let pending = self.conflicts.pending_resolutions().await?;
        for p in pending {
            let Some(values) = p.incoming_row.as_ref().and_then(|r| r.key(&p.schema)) else {
                self.conflicts
                    .finish(
                        p.conflict_id,
                        "open",
                        "the parked version has no key; settle the row by hand",
                    )
                    .await?;
                continue;
            };
            let key = KeyRef {
                encoded: crate::sink::resolve::encode_key(&values),
                values,
            };
            self.target.begin().await?;
            let local = self.read_local_key(&p.schema, key).await?;
            match crate::conflict::resolution_write(self.site_id(), &p, &local, now_micros()) {
                Ok(change) => {
                    // Committed as duplex's own transaction: the reader forwards
                    // only the flagged row.
                    self.write_decided(change).await?;
                    self.commit_target(None, true).await?;
                    self.conflicts
                        .finish(p.conflict_id, "resolved", "applied on both sites")
                        .await?;
                    tracing::info!(conflict = p.conflict_id, table = %p.schema.table, "applied a DBA's resolution");
                }
                Err(reason) => {
                    self.rollback_target().await?;
                    let status = if reason.starts_with("superseded") {
                        "superseded"
                    } else {
                        "open"
                    };
                    self.conflicts
                        .finish(p.conflict_id, status, &reason)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Apply the quarantined changes a DBA asked to retry (see
    /// `duplex.retry_quarantined`), oldest first, each in its own target
    /// transaction and through conflict detection: a change a newer version has
    /// overtaken is not written over it. Refused again, it stays quarantined with
    /// the new reason.
    ///
    /// The change is mapped with `mapping`, the configuration in force now, from
    /// its form at the source: a DBA who excluded or renamed the column the
    /// target refused, or changed a transform, retries into the new
    /// configuration. (A record of an older duplex holds only the change as it
    /// was mapped then: the columns excluded now are taken out of it.)
    pub async fn apply_quarantine_retries(
        &mut self,
        mapping: &mut DirectionMapping,
    ) -> Result<usize, SinkError> {
        if !self.idle() {
            return Ok(0);
        }
        let retries = self.quarantine.pending_retries().await?;
        let count = retries.len();
        if count > 0 {
            // A retry follows a DBA's fix, which may be a changed column type.
            self.target.forget_tables();
        }
        let stale_count = |s: &Self| s.stats.stale.load(std::sync::atomic::Ordering::Relaxed);
        let mut reheld = std::collections::HashSet::new();
        for r in retries {
            let (recorded, stale) = (self.quarantine.recorded(), stale_count(self));
            let table = r.change.table.table.clone();
            let mut origin = r.origin;
            let mapped = match r.source {
                Some(source) => mapping.map_keeping_source(source).map(|(change, source)| {
                    origin.source = SourceForm::from_mapping(source);
                    change
                }),
                None => {
                    origin.source = SourceForm::Unknown;
                    mapping.restrict_mapped(r.change)
                }
            };
            let Some(change) = mapped else {
                self.quarantine
                    .settle(
                        r.quarantine_id,
                        "pending",
                        "not applied: the table no longer flows this way (duplex.link_tables.direction); discard the change, or let the table flow this way and retry",
                    )
                    .await?;
                continue;
            };
            // A table held again below: its later changes wait behind it.
            if reheld.contains(&table.name) {
                self.quarantine
                    .settle(
                        r.quarantine_id,
                        "held",
                        "held again behind an earlier change of its table",
                    )
                    .await?;
                continue;
            }
            let change = match self.fit_retry(change, mapping).await? {
                Ok(change) => change,
                Err((change, differs)) if r.released => {
                    // A held change the target does not fit after all: the
                    // table is held again from it, in order.
                    self.hold_again(&change, origin, differs).await?;
                    self.quarantine
                        .settle(
                            r.quarantine_id,
                            "held",
                            "held again: the target's table does not fit it",
                        )
                        .await?;
                    self.quarantine.hold_back(&table).await?;
                    reheld.insert(table.name.clone());
                    continue;
                }
                Err((_, differs)) => {
                    self.quarantine
                        .settle(
                            r.quarantine_id,
                            "pending",
                            &format!("not applied, the target's table differs: {differs}; retry once the sites match"),
                        )
                        .await?;
                    continue;
                }
            };
            self.target.begin().await?;
            if let Err(e) = self.decide_and_write(change, origin).await {
                // Not a refusal (those are quarantined again): the connection or
                // the control database failed. The record stays 'retry' and the
                // direction restarts.
                let _ = self.rollback_target().await;
                return Err(e);
            }
            self.commit_target(None, false).await?;
            let (status, note) = if self.quarantine.recorded() > recorded {
                ("pending", "refused again by the target: see reason")
            } else if stale_count(self) > stale {
                (
                    "retried",
                    "not written: the target already holds a newer version of the row",
                )
            } else {
                ("retried", "applied")
            };
            self.quarantine
                .settle(r.quarantine_id, status, note)
                .await?;
            tracing::info!(quarantined = r.quarantine_id, %table, status, note, "retried a quarantined change");
        }
        Ok(count)
    }

    /// At the start of a direction, and when stopped tables resume: the changes
    /// held for tables that are neither paused nor stopped are applied, in
    /// source order, before the stream goes on, mapped with the configuration in
    /// force now.
    pub async fn release_held(&mut self, mapping: &mut DirectionMapping) -> Result<(), SinkError> {
        let active = self.active_tables();
        let released = self.quarantine.release_held(&active).await?;
        if released > 0 {
            tracing::info!(released, "table resumed: applying its held changes");
        }
        while self.apply_quarantine_retries(mapping).await? > 0 {}
        Ok(())
    }

    /// Between source transactions: the stopped tables a DBA has resumed (by
    /// discarding their statement records, after a resync) have their held
    /// changes applied, in source order, before the stream goes on; from then
    /// on their changes flow again.
    pub async fn resume_stopped(
        &mut self,
        mapping: &mut DirectionMapping,
    ) -> Result<(), SinkError> {
        // A stopped table's statement record may still wait in the outbox:
        // nothing resumes before the control schema has every record.
        if !self.idle() || !self.ship_journal().await? {
            return Ok(());
        }
        let resumed = self.quarantine.resumed().await?;
        if resumed.is_empty() {
            return Ok(());
        }
        tracing::info!(tables = ?resumed, "stopped tables resumed (their statement records were discarded)");
        self.release_held(mapping).await
    }

    /// Apply a page of rows copied by the initial sync in one target transaction
    /// of duplex's own, through conflict detection (a row the target holds in a
    /// newer version is not written over; one it holds concurrently is settled by
    /// the policy and recorded).
    pub async fn apply_snapshot_rows(
        &mut self,
        changes: Vec<(RowChange, ChangeOrigin)>,
        at: Option<SourcePosition>,
    ) -> Result<(), SinkError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.target.begin().await?;
        if let Some(at) = at {
            self.target.mark_applied(at).await?;
        }
        self.target.foreign_key_checks(false).await?;
        self.take_copied(changes);
        if let Err(e) = self.decide_pending().await {
            let _ = self.rollback_target().await;
            let _ = self.target.foreign_key_checks(true).await;
            return Err(e);
        }
        self.commit_target(None, true).await?;
        self.stats
            .target_commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.target.foreign_key_checks(true).await?;
        Ok(())
    }
}
