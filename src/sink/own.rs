//! The applier's own target transactions, outside the source stream: a DBA's
//! settlement of a parked conflict, and a DBA's retry of a quarantined change.
//! Both run between source transactions, one per transaction, the same way on
//! every engine; an engine provides only the steps ([`OwnTransactions`]).

use crate::canonical::{RowChange, SourcePosition, TableSchema};
use crate::conflict::store::{ConflictStore, ConflictStoreError};
use crate::conflict::Local;
use crate::sink::quarantine::{ChangeOrigin, Quarantine, QuarantineError};
use crate::sink::resolve::{now_micros, KeyRef};

/// What an engine's sink provides for its own transactions.
// Used only inside the crate, with static dispatch: the futures' Send bounds
// are those of the implementing sinks.
#[allow(async_fn_in_trait)]
pub(crate) trait OwnTransactions {
    type Error: From<QuarantineError> + From<ConflictStoreError>;

    /// No group of source transactions is open.
    fn idle(&self) -> bool;
    /// The target site's id.
    fn site_id(&self) -> u32;
    fn quarantine(&mut self) -> &mut Quarantine;
    fn conflicts(&mut self) -> &mut ConflictStore;
    /// Changes found older than the target's row so far (see `DirectionStats`).
    fn stale_count(&self) -> u64;
    /// The link's tables that are synced now, not paused (bare names).
    fn active_tables(&self) -> Vec<String>;

    /// Begin a target transaction that the source of this site recognises as
    /// duplex's own (no echo).
    async fn begin_own(&mut self) -> Result<(), Self::Error>;
    async fn commit_own(&mut self) -> Result<(), Self::Error>;
    async fn rollback_own(&mut self) -> Result<(), Self::Error>;
    /// The target's row (or tombstone) for one key, locked.
    async fn read_local_key(
        &mut self,
        schema: &std::sync::Arc<TableSchema>,
        key: KeyRef,
    ) -> Result<Local, Self::Error>;
    /// Decide `change` against the target's row and write the outcome, as
    /// for a change from the stream at `origin`.
    async fn decide_and_write(
        &mut self,
        change: RowChange,
        origin: ChangeOrigin,
    ) -> Result<(), Self::Error>;
    /// Write an already decided change.
    async fn write_decided(&mut self, change: RowChange) -> Result<(), Self::Error>;
}

/// The methods of [`OwnTransactions`] that are the same for every sink: the
/// sinks share field names (`group`, `spec`, `quarantine`, `conflicts`,
/// `stats`, `pending`) and the private steps `read_local`, `flush_pending`,
/// `add_write`, `flush` and `table_names`, which differ per engine.
macro_rules! own_transactions_common {
    ($err:ty) => {
        fn idle(&self) -> bool {
            !self.group.open
        }

        fn site_id(&self) -> u32 {
            self.spec.site_id
        }

        fn quarantine(&mut self) -> &mut Quarantine {
            &mut self.quarantine
        }

        fn conflicts(&mut self) -> &mut ConflictStore {
            &mut self.conflicts
        }

        fn stale_count(&self) -> u64 {
            self.stats.stale.load(Ordering::Relaxed)
        }

        fn active_tables(&self) -> Vec<String> {
            self.table_names()
                .into_iter()
                .filter(|t| !self.spec.held_tables.contains(t))
                .collect()
        }

        async fn read_local_key(
            &mut self,
            schema: &Arc<TableSchema>,
            key: KeyRef,
        ) -> Result<Local, $err> {
            Ok(self
                .read_local(schema, std::slice::from_ref(&key))
                .await?
                .into_iter()
                .next()
                .map(|(_, l)| l)
                .unwrap_or(Local::Absent(None)))
        }

        async fn decide_and_write(
            &mut self,
            change: RowChange,
            origin: ChangeOrigin,
        ) -> Result<(), $err> {
            self.pending.push((change, origin));
            self.flush_pending().await
        }

        async fn write_decided(&mut self, change: RowChange) -> Result<(), $err> {
            self.add_write(change, crate::sink::own::no_origin())
                .await?;
            self.flush().await
        }
    };
}
pub(crate) use own_transactions_common;

/// Apply the conflicts a DBA settled (see `duplex.resolve_conflict`), each in
/// its own target transaction.
pub(crate) async fn apply_resolutions<S: OwnTransactions>(sink: &mut S) -> Result<(), S::Error> {
    if !sink.idle() {
        return Ok(());
    }
    let pending = sink.conflicts().pending_resolutions().await?;
    for p in pending {
        let Some(values) = p.incoming_row.as_ref().and_then(|r| r.key(&p.schema)) else {
            sink.conflicts()
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
        sink.begin_own().await?;
        let local = sink.read_local_key(&p.schema, key).await?;
        match crate::conflict::resolution_write(sink.site_id(), &p, &local, now_micros()) {
            Ok(change) => {
                // Committed as duplex's own transaction: the reader forwards
                // only the flagged row.
                sink.write_decided(change).await?;
                sink.commit_own().await?;
                sink.conflicts()
                    .finish(p.conflict_id, "resolved", "applied on both sites")
                    .await?;
                tracing::info!(conflict = p.conflict_id, table = %p.schema.table, "applied a DBA's resolution");
            }
            Err(reason) => {
                sink.rollback_own().await?;
                let status = if reason.starts_with("superseded") {
                    "superseded"
                } else {
                    "open"
                };
                sink.conflicts()
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
pub(crate) async fn apply_quarantine_retries<S: OwnTransactions>(
    sink: &mut S,
) -> Result<usize, S::Error> {
    if !sink.idle() {
        return Ok(0);
    }
    let retries = sink.quarantine().pending_retries().await?;
    let count = retries.len();
    for r in retries {
        let (recorded, stale) = (sink.quarantine().recorded(), sink.stale_count());
        let table = r.change.table.table.clone();
        sink.begin_own().await?;
        if let Err(e) = sink.decide_and_write(r.change, r.origin).await {
            // Not a refusal (those are quarantined again): the connection or
            // the control database failed. The record stays 'retry' and the
            // direction restarts.
            let _ = sink.rollback_own().await;
            return Err(e);
        }
        sink.commit_own().await?;
        sink.quarantine().confirm().await?;
        let (status, note) = if sink.quarantine().recorded() > recorded {
            ("pending", "refused again by the target: see reason")
        } else if sink.stale_count() > stale {
            (
                "retried",
                "not written: the target already holds a newer version of the row",
            )
        } else {
            ("retried", "applied")
        };
        sink.quarantine()
            .settle(r.quarantine_id, status, note)
            .await?;
        tracing::info!(quarantined = r.quarantine_id, %table, status, note, "retried a quarantined change");
    }
    Ok(count)
}

/// At the start of a direction: the changes held for tables that are no
/// longer paused are applied, in source order, before the stream goes on.
pub(crate) async fn release_held<S: OwnTransactions>(sink: &mut S) -> Result<(), S::Error> {
    let active = sink.active_tables();
    let released = sink.quarantine().release_held(&active).await?;
    if released > 0 {
        tracing::info!(released, "table resumed: applying its held changes");
    }
    while apply_quarantine_retries(sink).await? > 0 {}
    Ok(())
}

/// The origin of a change written outside the source stream (nothing keys it).
pub(crate) fn no_origin() -> ChangeOrigin {
    ChangeOrigin {
        position: SourcePosition::PgLsn(0),
        index: 0,
    }
}
