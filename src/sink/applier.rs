//! The applier: one loop for every target engine. It takes the canonical
//! events of one direction in source commit order, groups whole source
//! transactions into target transactions, decides each batch of incoming
//! changes against the target's rows (`resolve`, `conflict::decide`),
//! journals conflicts and refused rows, and writes the outcome in batched
//! statements through the engine's steps ([`Target`]). The applied source
//! position is committed with the data (exactly once).
//!
//! The applier's own transactions outside the stream (a DBA's settlements
//! and retries, held changes, the initial sync's pages) are in `own.rs`.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::canonical::{ChangeEvent, ChangeOrigin, Op, RowChange, SourceForm, SourcePosition};
use crate::canonical::{TableName, TableSchema};
use crate::conflict::{Local, TablePolicy};
use crate::journal::conflicts::ConflictStore;
use crate::journal::outbox::Shipper;
use crate::journal::quarantine::Quarantine;
use crate::marker::now_micros;
use crate::sink::plan::{self, StatementPlan};
use crate::sink::resolve::{encode_key, keys_by_table, misdescribed, resolve, Carry, KeyRef};
use crate::sink::target::{Batch, Target, Unapplied};
use crate::sink::{describe_key, seeded, shape_of, ApplierSpec, SinkError, TxnGroup};
use crate::stats::DirectionStats;

/// The rows whose decided write the target refused (quarantined), among the
/// writes of one decided batch. The batch's later writes of such a row were
/// decided on the state the refused write was to leave, which the target
/// does not have: the row as it was before a refused update, or a row a
/// user inserted meanwhile (a key found free is not locked, so an incoming
/// insert can meet a user's insert of the same key). A later write that
/// sets every column stands on its own (its marker describes what it
/// writes) and is written as before. One that sets only some columns (a
/// version kept here records its marker with the key alone) would leave
/// the target's other columns under a marker whose checksum is the decided
/// row's: the site would later take the row for one changed behind
/// duplex's back (`unsynced_local_edit`). Such a write is quarantined with
/// the refused one.
#[derive(Debug, Default)]
pub(crate) struct Refused(HashSet<(TableName, Vec<u8>)>);

impl Refused {
    /// The keys a write touches: the row it finds and, for a key change,
    /// the one it leaves.
    fn keys(change: &RowChange) -> impl Iterator<Item = (TableName, Vec<u8>)> + '_ {
        [change.before.as_ref(), change.after.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|image| image.key(&change.table))
            .map(|k| (change.table.table.clone(), encode_key(&k)))
    }

    /// `change` was refused (or quarantined as following a refused one).
    pub(crate) fn record(&mut self, change: &RowChange) {
        self.0.extend(Self::keys(change));
    }

    /// Must `change` not be written: an update of a row whose write was
    /// refused earlier in the batch that either sets only some columns of it
    /// (see [`Refused`]) or is a version flowing back to the source
    /// (`Carry::finish`: the carried row was decided on the state the refused
    /// write was to leave, and would go over the row the target has)?
    pub(crate) fn follows(&self, change: &RowChange) -> bool {
        !self.0.is_empty()
            && change.op == Op::Update
            && (change.marker.resolution == crate::marker::Resolution::Forward
                || change
                    .after
                    .as_ref()
                    .is_some_and(|a| a.0.iter().any(Option::is_none)))
            && Self::keys(change).any(|k| self.0.contains(&k))
    }

    /// The batch's writes are all written: its next writes are decided on
    /// the rows read back.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Why a write that follows a refused one is quarantined.
pub(crate) const FOLLOWS_REFUSED: &str = "not written: the target refused an earlier change of this row in the same batch (see that record), and this write (only some of the row's columns, or a version flowing back) was decided on the row that change was to leave, not the row the target has; retry both once the cause is fixed";

/// One direction's applier on its target.
pub(crate) struct Applier<T: Target> {
    pub(crate) target: T,
    pub(crate) spec: ApplierSpec,
    pub(crate) group: TxnGroup,
    pub(crate) quarantine: Quarantine,
    pub(crate) conflicts: ConflictStore,
    /// Ships the records the target's outbox holds (see `outbox.rs`).
    pub(crate) shipper: Shipper,
    /// What the records written in the open target transaction's outbox
    /// add to the counters once it commits.
    pub(crate) written: crate::sink::outbox::WrittenRecords,
    /// Held while shipping the outbox: the direction's workers ship its
    /// entries one at a time, in order (a record and the later entry that
    /// settles it may sit in different workers' transactions).
    pub(crate) ship_lock: Arc<tokio::sync::Mutex<()>>,
    /// Outbox entries that could not be read, already reported.
    pub(crate) unreadable: std::collections::HashSet<i64>,
    pub(crate) stats: Arc<DirectionStats>,
    /// Incoming changes not yet decided (see `decide_pending`).
    pending: Vec<(RowChange, ChangeOrigin)>,
    /// The rows of the source transaction at hand that met a conflict in an
    /// earlier batch (see `resolve::Carry`).
    carry: Carry,
    /// Rows whose write the target refused in the decided batch at hand.
    refused: Refused,
    /// The last shape of each table found to fit the target (see
    /// `schema_hold`): a change of the same shape is not checked again.
    pub(crate) fitting: HashMap<TableName, Arc<TableSchema>>,
    /// The source's catalog: which columns its tables have now.
    pub(crate) source_catalog: crate::sink::source_catalog::SourceCatalog,
}

impl<T: Target> Applier<T> {
    pub fn new(spec: ApplierSpec, target: T, stats: Arc<DirectionStats>) -> Applier<T> {
        let source_catalog =
            crate::sink::source_catalog::SourceCatalog::new(spec.source_catalog.clone());
        Applier {
            target,
            quarantine: Quarantine::new(
                spec.journal.clone(),
                stats.clone(),
                spec.schema_holds.clone(),
            ),
            conflicts: ConflictStore::new(spec.journal.clone(), stats.clone()),
            shipper: Shipper::new(spec.journal.clone()),
            written: Default::default(),
            ship_lock: Default::default(),
            unreadable: Default::default(),
            spec,
            group: TxnGroup::default(),
            stats,
            pending: Vec::new(),
            carry: Carry::default(),
            refused: Refused::default(),
            fitting: HashMap::default(),
            source_catalog,
        }
    }

    pub fn site_name(&self) -> &str {
        self.target.site_name()
    }

    /// The applied source position's counter: where the source resumes.
    pub async fn resume_position(&mut self) -> Result<Option<u64>, SinkError> {
        self.target.resume_position().await
    }

    /// Ship the records the target's outbox still holds (an outage of the
    /// control database, a crash), settle those an older duplex left
    /// unconfirmed (see `Quarantine::reconcile`), and learn which tables are
    /// stopped. Needs the control database.
    pub async fn reconcile_journal(
        &mut self,
        resume_counter: Option<u64>,
    ) -> Result<(), SinkError> {
        // All of it: the stopped tables are read from the control schema.
        self.ship_outbox(None).await?;
        self.quarantine.reconcile(resume_counter).await?;
        self.quarantine.load_stopped().await?;
        self.quarantine.load_schema_holds().await?;
        self.conflicts.reconcile(resume_counter).await?;
        Ok(())
    }

    /// How long the open target transaction has been open, if one is.
    pub fn group_age(&self) -> Option<Duration> {
        self.group.opened_at.map(|t| t.elapsed())
    }

    /// No target transaction is open.
    pub(crate) fn idle(&self) -> bool {
        !self.group.open
    }

    /// Inside a source transaction (its changes go on).
    fn in_source_txn(&self) -> bool {
        self.group.open && self.group.in_source_txn
    }

    pub(crate) fn site_id(&self) -> u32 {
        self.spec.site_id
    }

    /// The link's tables that are synced now, neither paused nor stopped
    /// (bare names).
    pub(crate) fn active_tables(&self) -> Vec<String> {
        self.target
            .table_names()
            .into_iter()
            .filter(|t| !self.held(t))
            .collect()
    }

    /// The table's changes are held: paused, stopped by a statement, or
    /// held for its shape.
    pub(crate) fn held(&self, table: &str) -> bool {
        self.spec.held_tables.contains(table)
            || self.quarantine.is_stopped(table)
            || self.spec.schema_holds.contains(table)
    }

    /// Apply one event. Returns a source position that may be confirmed now
    /// (only when nothing is uncommitted).
    pub async fn apply(&mut self, event: ChangeEvent) -> Result<Option<SourcePosition>, SinkError> {
        match event {
            ChangeEvent::Begin(meta) => {
                if !self.group.open {
                    self.target.begin().await?;
                    self.group.open = true;
                }
                self.group.begin_source_txn(&meta);
                Ok(None)
            }
            ChangeEvent::Change(change) => {
                self.apply_change(change, SourceForm::Unchanged).await?;
                Ok(None)
            }
            ChangeEvent::Truncate(tables) => {
                self.decide_pending().await?;
                // The rows carried for the transaction's later batches are gone.
                for t in &tables {
                    self.carry.forget(&t.table);
                }
                let paused: Vec<String> = tables
                    .iter()
                    .map(|t| t.table.name.clone())
                    .filter(|n| self.held(n))
                    .collect();
                if !paused.is_empty() {
                    let origin = self.group.next_origin();
                    self.quarantine.discard_held(&paused, &origin);
                }
                let tables = self.truncatable(tables).await?;
                if !tables.is_empty() {
                    self.target.truncate(&tables).await?;
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
                    self.quarantine.stop(table, origin, &u);
                }
                Ok(None)
            }
        }
    }

    /// Take a change of the current source transaction, mapped; `source`:
    /// its form before the mapping (kept if the target refuses it). It is
    /// decided (conflicts) together with the changes around it, once enough
    /// are pending or at the end.
    pub async fn apply_change(
        &mut self,
        change: RowChange,
        source: SourceForm,
    ) -> Result<(), SinkError> {
        let name = &change.table.table.name;
        if self.spec.schema_holds.contains(name) || !self.held(name) {
            // A table held for its shape is checked too: a newer shape is
            // what the target must fit before its changes flow again.
            self.check_shape(&change, &source).await?;
        }
        if self.held(&change.table.table.name) {
            let mut origin = self.group.next_origin();
            origin.source = source;
            // Recorded with this target transaction like a refused change:
            // exactly once.
            let key = describe_key(&change);
            self.quarantine.hold(&change, &origin, &key);
            return self.write_staged_if_many().await;
        }
        let mut origin = self.group.count_change(&change);
        origin.source = source;
        self.pending.push((change, origin));
        if self.pending.len() >= self.spec.max_batch_rows.max(1) {
            self.decide_pending().await?;
        }
        Ok(())
    }

    /// Commit the open target transaction with the applied source position.
    /// Returns the position that may now be confirmed to the source.
    pub async fn commit(&mut self) -> Result<Option<SourcePosition>, SinkError> {
        if !self.group.open {
            return Ok(self.group.take_idle_progress());
        }
        debug_assert!(
            !self.group.in_source_txn,
            "commit inside a source transaction"
        );
        self.decide_pending().await?;
        let applied = self
            .group
            .last_end
            .map(|end| (end, self.group.last_commit_time_us));
        self.commit_target(applied, true).await?;
        tracing::debug!(
            txns = self.group.txns,
            rows = self.group.rows,
            "committed target transaction"
        );
        Ok(self.group.committed(&self.stats))
    }

    /// Does a session on the target wait for a lock the applier holds?
    pub async fn sessions_waiting(&mut self) -> Result<bool, SinkError> {
        self.target.sessions_waiting().await
    }

    /// Remove tombstones older than `retention` (between source transactions
    /// only). Returns how many were removed.
    pub async fn purge_tombstones(&mut self, retention: Duration) -> Result<u64, SinkError> {
        if self.group.open {
            return Ok(0);
        }
        self.target.purge_tombstones(retention).await
    }

    /// Decide the pending changes against the target's rows (read locked, in
    /// one statement per table), record the conflicts, and write the outcome.
    pub(crate) async fn decide_pending(&mut self) -> Result<(), SinkError> {
        let mut pending = std::mem::take(&mut self.pending);
        // Nothing to decide, unless a source transaction just ended with rows
        // whose versions wait to flow back (`resolve::Carry::finish`).
        if pending.is_empty() && (self.idle() || self.in_source_txn() || !self.carry.owes()) {
            return Ok(());
        }
        for (change, _) in pending.iter_mut() {
            self.target.normalize(change).await?;
        }
        let states = self.read_states(keys_by_table(&pending)).await?;
        let policies: HashMap<TableName, TablePolicy> = pending
            .iter()
            .map(|(c, _)| {
                (
                    c.table.table.clone(),
                    self.target.policy_for(&c.table.table),
                )
            })
            .collect();
        // A transaction of duplex's own (a retry, a settlement, a copied page)
        // is no part of the source transaction the carried rows belong to.
        let own = self.idle();
        // The source transaction at hand goes on in a later batch.
        let complete = !self.in_source_txn();
        let mut carry = if own {
            Carry::default()
        } else {
            std::mem::take(&mut self.carry)
        };
        let mut resolved = resolve(
            self.spec.site_id,
            |t| policies.get(t).cloned().unwrap_or_default(),
            pending,
            states,
            now_micros(),
            &mut carry,
            complete,
        );
        if !own {
            self.carry = carry;
        }
        self.stats
            .stale
            .fetch_add(resolved.stale, Ordering::Relaxed);
        for (origin, kind) in std::mem::take(&mut resolved.withdrawn) {
            self.conflicts.withdraw(origin, kind);
        }
        self.conflicts.record_all(&resolved.conflicts);
        let mut fallbacks: HashMap<usize, RowChange> = std::mem::take(&mut resolved.fallbacks)
            .into_iter()
            .collect();
        let mut plan = StatementPlan::default();
        for (i, (write, origin)) in std::mem::take(&mut resolved.writes).into_iter().enumerate() {
            if let Some(why) = misdescribed(&write) {
                // A defect of the decision: written so, the row would later
                // count as changed behind duplex's back. Loud in unit tests.
                tracing::error!(marker = ?write.marker, before = ?write.before, "marker invariant broken: {why}");
                #[cfg(test)]
                panic!("marker invariant broken: {why}");
            }
            if self.conflicts.has_open() {
                self.conflicts.applied(
                    &write.table.table.to_string(),
                    &describe_key(&write),
                    (!own).then_some(&origin),
                );
            }
            self.plan_write(&mut plan, write, origin, fallbacks.remove(&i))
                .await?;
        }
        self.execute_plan(plan).await?;
        self.target.store_tombstones(&resolved).await?;
        if complete && !own {
            self.write_staged(true).await?;
        }
        Ok(())
    }

    /// Plan `write` into `plan`'s statements, as far as the target allows
    /// (within the link's `max_batch_rows`).
    async fn plan_write(
        &mut self,
        plan: &mut StatementPlan,
        write: RowChange,
        origin: ChangeOrigin,
        fallback: Option<RowChange>,
    ) -> Result<(), SinkError> {
        let shape = shape_of(&write);
        let mut rules = self.target.write_rules(&write, shape.len()).await?;
        rules.max_rows = rules.max_rows.clamp(1, self.spec.max_batch_rows.max(1));
        plan.push(write, shape, origin, fallback, rules);
        Ok(())
    }

    /// Execute a round's statements. The target runs them together (one
    /// savepoint for the round, where the engine needs one); when it refuses
    /// one (a value or constraint: a data error), the writes it did not
    /// apply are applied one by one in the order they were decided, and
    /// those it refuses are quarantined: the stream goes on.
    async fn execute_plan(&mut self, plan: StatementPlan) -> Result<(), SinkError> {
        if plan.is_empty() {
            return Ok(());
        }
        let batches = plan.into_batches();
        let result = match self.target.execute_all(&batches).await {
            Ok(()) => Ok(()),
            Err(Unapplied { executed, error }) if error.is_data_error() => {
                tracing::debug!(error = %error, "the target refused a statement of the round: applying its writes one by one");
                self.execute_one_by_one(&batches, executed).await
            }
            Err(Unapplied { error, .. }) => Err(error),
        };
        // The round's writes are all written: its rows' later writes are
        // decided on the rows read back again.
        self.refused.clear();
        result
    }

    /// Apply the writes of `batches[from..]` one by one, in the order they
    /// were decided; quarantine those the target refuses.
    async fn execute_one_by_one(
        &mut self,
        batches: &[Batch],
        from: usize,
    ) -> Result<(), SinkError> {
        // Rows whose transaction's net change was written in place of a
        // refused statement (by table and key, with their transaction):
        // that transaction's later statements of the row are in it.
        let mut settled: HashSet<(TableName, Vec<u8>, SourcePosition)> = HashSet::default();
        for (b, r) in plan::in_decided_order(batches, from) {
            let batch = &batches[b];
            let row = &batch.rows[r];
            let position = batch.origins[r].position;
            if Refused::keys(row).any(|(t, k)| settled.contains(&(t, k, position))) {
                continue;
            }
            if self.refused.follows(row) {
                self.quarantine_refused(
                    row,
                    batch.origins[r].clone(),
                    batch.fallbacks[r].as_ref(),
                    FOLLOWS_REFUSED,
                )
                .await?;
                continue;
            }
            match self.target.execute(&batch.single(r)).await {
                Ok(()) => {}
                Err(e) if e.is_data_error() => {
                    // A statement of a row its transaction changes again,
                    // applied as the source made it: its state in between
                    // may rest on what the transaction never commits (a
                    // parent it creates and removes again, never written).
                    // The transaction's net change for the row is written
                    // instead; refused too, it is quarantined.
                    if let Some(net) = batch.fallbacks[r].as_ref() {
                        if self.write_alone(net, batch.origins[r].clone()).await? {
                            settled.extend(
                                Refused::keys(row)
                                    .chain(Refused::keys(net))
                                    .map(|(t, k)| (t, k, position)),
                            );
                            continue;
                        }
                    }
                    let reason = crate::error_chain::error_chain(&e);
                    self.quarantine_refused(
                        row,
                        batch.origins[r].clone(),
                        batch.fallbacks[r].as_ref(),
                        &reason,
                    )
                    .await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Write one decided change in a statement of its own; `false` when the
    /// target refuses its data (nothing written).
    async fn write_alone(
        &mut self,
        change: &RowChange,
        origin: ChangeOrigin,
    ) -> Result<bool, SinkError> {
        let mut plan = StatementPlan::default();
        self.plan_write(&mut plan, change.clone(), origin, None)
            .await?;
        for batch in plan.into_batches() {
            match self.target.execute(&batch).await {
                Ok(()) => {}
                Err(e) if e.is_data_error() => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Quarantine a decided write that is not written (`reason`): the row
    /// joins the batch's refused rows and leaves the transaction's carry.
    /// `fallback`: what to record instead of the write (a net row, kept in
    /// the target's terms: the statement's source form would bring back the
    /// statement on retry).
    async fn quarantine_refused(
        &mut self,
        row: &RowChange,
        mut origin: ChangeOrigin,
        fallback: Option<&RowChange>,
        reason: &str,
    ) -> Result<(), SinkError> {
        self.refused.record(row);
        self.carry.forget_row(row);
        let record = fallback.unwrap_or(row);
        if fallback.is_some() {
            origin.source = SourceForm::Unknown;
        }
        self.quarantine
            .record(record, &origin, &describe_key(record), reason);
        Ok(())
    }

    /// The target's state for each key of each table: its row, locked, with
    /// how it was last written, or its tombstone if it has none. Every
    /// table's rows are read at once (`Target::read_rows`).
    async fn read_states(
        &mut self,
        requests: Vec<(Arc<TableSchema>, Vec<KeyRef>)>,
    ) -> Result<HashMap<(TableName, Vec<u8>), Local>, SinkError> {
        let rows = self.target.read_rows(&requests).await?;
        let mut out = HashMap::default();
        for ((schema, keys), rows) in requests.into_iter().zip(rows) {
            let capture_start = self.target.capture_start(&schema.table);
            let mut found: HashSet<Vec<u8>> = HashSet::default();
            for mut lr in rows {
                lr.stamp = seeded(lr.stamp, lr.marker.is_some(), capture_start);
                let Some(key) = lr.row.encoded_key(&schema) else {
                    continue;
                };
                found.insert(key.clone());
                out.insert((schema.table.clone(), key), Local::Present(lr));
            }
            let missing: Vec<Vec<u8>> = keys
                .iter()
                .filter(|k| !found.contains(&k.encoded))
                .map(|k| k.encoded.clone())
                .collect();
            let mut tombstones = self.target.read_tombstones(&schema, &missing).await?;
            for key in missing {
                let t = tombstones.remove(&key);
                out.insert((schema.table.clone(), key), Local::Absent(t));
            }
        }
        Ok(out)
    }

    /// The target's row (or tombstone) for one key, locked.
    pub(crate) async fn read_local_key(
        &mut self,
        schema: &Arc<TableSchema>,
        key: KeyRef,
    ) -> Result<Local, SinkError> {
        let id = (schema.table.clone(), key.encoded.clone());
        Ok(self
            .read_states(vec![(schema.clone(), vec![key])])
            .await?
            .remove(&id)
            .unwrap_or(Local::Absent(None)))
    }

    /// Decide `change` against the target's row and write the outcome, as for
    /// a change from the stream at `origin`.
    pub(crate) async fn decide_and_write(
        &mut self,
        change: RowChange,
        origin: ChangeOrigin,
    ) -> Result<(), SinkError> {
        self.pending.push((change, origin));
        self.decide_pending().await
    }

    /// Write an already decided change, outside the source stream.
    pub(crate) async fn write_decided(&mut self, change: RowChange) -> Result<(), SinkError> {
        let mut plan = StatementPlan::default();
        self.plan_write(&mut plan, change, ChangeOrigin::outside_stream(), None)
            .await?;
        self.execute_plan(plan).await
    }

    /// Queue changes copied by the initial sync, to be decided together.
    pub(crate) fn take_copied(&mut self, changes: Vec<(RowChange, ChangeOrigin)>) {
        self.pending.extend(changes);
    }
}
