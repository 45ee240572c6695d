//! The engine-independent part of an applier: deciding a batch of incoming
//! changes against the target's rows and queueing the outcome, on the steps
//! each engine's sink provides ([`Applier`]). The drivers of the applier's
//! own transactions (`own`) run on the same steps.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::canonical::ChangeOrigin;
use crate::canonical::{RowChange, SourcePosition, TableName, TableSchema};
use crate::conflict::{Local, TablePolicy};
use crate::journal::conflicts::{ConflictStore, ConflictStoreError};
use crate::journal::quarantine::{Quarantine, QuarantineError};
use crate::marker::now_micros;
use crate::sink::describe_key;
use crate::sink::resolve::{keys_by_table, resolve, Carry, KeyRef, Resolved};
use crate::stats::DirectionStats;

/// What an engine's sink provides.
// Used only inside the crate, with static dispatch: the futures' Send bounds
// are those of the implementing sinks.
#[allow(async_fn_in_trait)]
pub(crate) trait Applier {
    type Error: From<QuarantineError> + From<ConflictStoreError>;

    /// No group of source transactions is open.
    fn idle(&self) -> bool;
    /// A source transaction is open (its changes go on).
    fn in_source_txn(&self) -> bool;
    /// The target site's id.
    fn site_id(&self) -> u32;
    fn quarantine(&mut self) -> &mut Quarantine;
    fn conflicts(&mut self) -> &mut ConflictStore;
    fn stats(&self) -> &DirectionStats;
    /// Incoming changes not yet decided.
    fn pending_mut(&mut self) -> &mut Vec<(RowChange, ChangeOrigin)>;
    /// The rows of the source transaction at hand that met a conflict in an
    /// earlier batch (see `resolve::Carry`).
    fn carry_mut(&mut self) -> &mut Carry;
    /// The link's tables that are synced now, neither paused nor stopped
    /// (bare names).
    fn active_tables(&self) -> Vec<String>;
    /// Read the target tables' columns again before their next use (a DBA
    /// may have changed a column so that a quarantined change fits).
    fn forget_target_tables(&mut self);
    /// The conflict policy of a source table, as configured for this target.
    fn policy_for(&self, table: &TableName) -> TablePolicy;

    /// Begin a target transaction that the source of this site recognises as
    /// duplex's own (no echo), outside the source stream.
    async fn begin_own(&mut self) -> Result<(), Self::Error>;
    async fn commit_own(&mut self) -> Result<(), Self::Error>;
    /// Turn the target's foreign-key checks off (`on` false) for the rest of
    /// the own transaction just begun, where the session may; back on after
    /// it (`on` true). The initial sync copies tables one after another, so a
    /// child row can arrive before its parent.
    async fn foreign_key_checks(&mut self, on: bool) -> Result<(), Self::Error>;
    /// Record, with the own transaction just begun, that the target holds the
    /// source's state as of `position` (the initial sync's copy: the stream
    /// resumes there). Only where the engine keeps it with the transaction.
    async fn mark_applied(&mut self, position: SourcePosition) -> Result<(), Self::Error>;
    async fn rollback_own(&mut self) -> Result<(), Self::Error>;
    /// Bring the change's images into the target's own representation of
    /// each column (what the target stores and reads back: `as_stored` of
    /// `pg::types` / `mysql::types`), so that the checksum a marker records
    /// is the one the row reads back with, and incoming rows compare with
    /// the target's rows value for value. A value the column cannot take is
    /// left as it came: writing it is refused, with the reason.
    async fn normalize(&mut self, change: &mut RowChange) -> Result<(), Self::Error>;
    /// The target's rows (or tombstones) of `keys`, locked.
    async fn read_rows(
        &mut self,
        schema: &Arc<TableSchema>,
        keys: &[KeyRef],
    ) -> Result<Vec<(Vec<u8>, Local)>, Self::Error>;
    /// Queue a decided write into the batched statements. `fallback`: what
    /// to quarantine if the target refuses the write, when not the write
    /// itself (see `Resolved::fallbacks`).
    async fn queue_write(
        &mut self,
        change: RowChange,
        origin: ChangeOrigin,
        fallback: Option<RowChange>,
    ) -> Result<(), Self::Error>;
    /// Execute the queued statements.
    async fn flush_writes(&mut self) -> Result<(), Self::Error>;
    /// Record the tombstones of applied deletes and drop those of revived keys.
    async fn store_tombstones(&mut self, resolved: &Resolved) -> Result<(), Self::Error>;
}

/// The accessors of [`Applier`], the same for every sink: the sinks share
/// field names (`group`, `spec`, `quarantine`, `conflicts`, `stats`,
/// `pending`) and a private `table_names`.
macro_rules! applier_accessors {
    () => {
        fn idle(&self) -> bool {
            !self.group.open
        }

        fn in_source_txn(&self) -> bool {
            self.group.open && self.group.in_source_txn
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

        fn stats(&self) -> &DirectionStats {
            &self.stats
        }

        fn pending_mut(&mut self) -> &mut Vec<(RowChange, ChangeOrigin)> {
            &mut self.pending
        }

        fn carry_mut(&mut self) -> &mut crate::sink::resolve::Carry {
            &mut self.carry
        }

        fn forget_target_tables(&mut self) {
            self.tables.clear();
        }

        fn active_tables(&self) -> Vec<String> {
            self.table_names()
                .into_iter()
                .filter(|t| !self.spec.held_tables.contains(t) && !self.quarantine.is_stopped(t))
                .collect()
        }
    };
}
pub(crate) use applier_accessors;

/// Decide the pending changes against the target's rows (read locked, in one
/// statement per table), record the conflicts, and write the outcome.
pub(crate) async fn decide_pending<S: Applier>(sink: &mut S) -> Result<(), S::Error> {
    let mut pending = std::mem::take(sink.pending_mut());
    // Nothing to decide, unless a source transaction just ended with rows
    // whose versions wait to flow back (`resolve::Carry::finish`).
    if pending.is_empty() && (sink.idle() || sink.in_source_txn() || !sink.carry_mut().owes()) {
        return Ok(());
    }
    for (change, _) in pending.iter_mut() {
        sink.normalize(change).await?;
    }
    let mut states = HashMap::new();
    for (schema, keys) in keys_by_table(&pending) {
        for (key, local) in sink.read_rows(&schema, &keys).await? {
            states.insert((schema.table.clone(), key), local);
        }
    }
    let policies: HashMap<TableName, TablePolicy> = pending
        .iter()
        .map(|(c, _)| (c.table.table.clone(), sink.policy_for(&c.table.table)))
        .collect();
    // A transaction of duplex's own (a retry, a settlement, a copied page)
    // is no part of the source transaction the carried rows belong to.
    let own = sink.idle();
    // The source transaction at hand goes on in a later batch.
    let complete = !sink.in_source_txn();
    let mut carry = if own {
        Carry::default()
    } else {
        std::mem::take(sink.carry_mut())
    };
    let mut resolved = resolve(
        sink.site_id(),
        |t| policies.get(t).cloned().unwrap_or_default(),
        pending,
        states,
        now_micros(),
        &mut carry,
        complete,
    );
    if !own {
        *sink.carry_mut() = carry;
    }
    sink.stats()
        .stale
        .fetch_add(resolved.stale, Ordering::Relaxed);
    for (origin, kind) in std::mem::take(&mut resolved.withdrawn) {
        sink.conflicts().withdraw(origin, kind).await?;
    }
    sink.conflicts().record_all(&resolved.conflicts).await?;
    let mut fallbacks: HashMap<usize, RowChange> = std::mem::take(&mut resolved.fallbacks)
        .into_iter()
        .collect();
    for (i, (write, origin)) in std::mem::take(&mut resolved.writes).into_iter().enumerate() {
        if sink.conflicts().has_open() {
            sink.conflicts()
                .applied(&write.table.table.to_string(), &describe_key(&write))
                .await?;
        }
        sink.queue_write(write, origin, fallbacks.remove(&i))
            .await?;
    }
    sink.flush_writes().await?;
    sink.store_tombstones(&resolved).await
}

/// The target's row (or tombstone) for one key, locked.
pub(crate) async fn read_local_key<S: Applier>(
    sink: &mut S,
    schema: &Arc<TableSchema>,
    key: KeyRef,
) -> Result<Local, S::Error> {
    Ok(sink
        .read_rows(schema, std::slice::from_ref(&key))
        .await?
        .into_iter()
        .next()
        .map(|(_, l)| l)
        .unwrap_or(Local::Absent(None)))
}

/// Decide `change` against the target's row and write the outcome, as for a
/// change from the stream at `origin`.
pub(crate) async fn decide_and_write<S: Applier>(
    sink: &mut S,
    change: RowChange,
    origin: ChangeOrigin,
) -> Result<(), S::Error> {
    sink.pending_mut().push((change, origin));
    decide_pending(sink).await
}

/// Write an already decided change, outside the source stream.
pub(crate) async fn write_decided<S: Applier>(
    sink: &mut S,
    change: RowChange,
) -> Result<(), S::Error> {
    sink.queue_write(
        change,
        crate::canonical::ChangeOrigin::outside_stream(),
        None,
    )
    .await?;
    sink.flush_writes().await
}
