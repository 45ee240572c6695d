//! What a target engine supplies to the applier: the steps that differ
//! between PostgreSQL and MySQL/MariaDB (transactions and where the applied
//! position is kept, reading rows back, executing a batch of statements,
//! tombstones). Everything else (batching, deciding, journaling, the
//! applier's own transactions) is the applier's, the same for every engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::canonical::{ChangeOrigin, Op, RowChange, SourcePosition, TableName, TableSchema};
use crate::conflict::{LocalRow, TablePolicy, Tombstone};
use crate::sink::plan::WriteRules;
use crate::sink::resolve::{KeyRef, Resolved};
use crate::sink::SinkError;

/// Per table: whether it may have tombstones on the target. Shared by a
/// direction's apply workers: the table's tombstones are written by all of
/// them, and one worker's delete leaves a tombstone another worker's later
/// insert of the key must find. Most tables have none at all: asked once,
/// then known, until tombstones are removed.
#[derive(Debug, Clone, Default)]
pub struct TombstoneTables(Arc<std::sync::Mutex<HashMap<String, bool>>>);

impl TombstoneTables {
    pub(crate) fn get(&self, table: &str) -> Option<bool> {
        self.0.lock().ok()?.get(table).copied()
    }

    pub(crate) fn insert(&self, table: String, possible: bool) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(table, possible);
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

/// The target's tables as described by a direction's apply workers: each
/// table is described once per run of the direction, by the first worker
/// that needs it, while the others wait for that description instead of
/// asking the catalog again (at a start under load, every worker's first
/// group meets the same tables at once, and each description is several
/// catalog queries). Forgotten together, when a DBA's fix may have changed
/// a table. One describing lock for all tables: a worker may wait for the
/// description of another table than its own, only at a table's first use.
pub struct DescribedTables<T> {
    known: Arc<std::sync::Mutex<FxHashMap<TableName, Arc<T>>>>,
    describing: Arc<tokio::sync::Mutex<()>>,
}

impl<T> Clone for DescribedTables<T> {
    fn clone(&self) -> Self {
        DescribedTables {
            known: self.known.clone(),
            describing: self.describing.clone(),
        }
    }
}

impl<T> Default for DescribedTables<T> {
    fn default() -> Self {
        DescribedTables {
            known: Default::default(),
            describing: Default::default(),
        }
    }
}

impl<T> std::fmt::Debug for DescribedTables<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.known.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "DescribedTables({n} known)")
    }
}

impl<T> DescribedTables<T> {
    pub(crate) fn get(&self, table: &TableName) -> Option<Arc<T>> {
        self.known.lock().ok()?.get(table).cloned()
    }

    /// The table's description, made by `describe` unless another worker
    /// has made it (or is making it: then it is waited for).
    pub(crate) async fn get_or_describe<E, F>(
        &self,
        table: &TableName,
        describe: F,
    ) -> Result<Arc<T>, E>
    where
        F: std::future::Future<Output = Result<T, E>>,
    {
        if let Some(t) = self.get(table) {
            return Ok(t);
        }
        let _describing = self.describing.lock().await;
        if let Some(t) = self.get(table) {
            return Ok(t);
        }
        let started = std::time::Instant::now();
        let t = Arc::new(describe.await?);
        tracing::debug!(%table, took = ?started.elapsed(), "table described");
        if let Ok(mut m) = self.known.lock() {
            m.insert(table.clone(), t.clone());
        }
        Ok(t)
    }

    /// Called between groups only (worker 0's periodic work runs with every
    /// group committed, and held changes are released before the workers
    /// start), so no worker is describing meanwhile.
    pub(crate) fn forget(&self) {
        if let Ok(mut m) = self.known.lock() {
            m.clear();
        }
    }

    /// Forget one table's description: its shape may have changed (a
    /// change's columns did not all fit it). A worker still using the old
    /// description keeps its copy until it is done with it.
    pub(crate) fn forget_table(&self, table: &TableName) {
        if let Ok(mut m) = self.known.lock() {
            m.remove(table);
        }
    }
}

/// Decided writes of one table, one operation and one column shape: one
/// statement on the target (see `plan`).
pub(crate) struct Batch {
    pub table: Arc<TableSchema>,
    pub op: Op,
    /// Indexes of the columns written (after image columns present).
    pub shape: Vec<usize>,
    pub rows: Vec<RowChange>,
    /// An update that changes the primary key (always alone in its batch).
    pub key_changed: bool,
    /// Where each row's change sits in the source stream (for quarantine).
    pub origins: Vec<ChangeOrigin>,
    /// Per row, what to quarantine if the target refuses it, when not the
    /// row's change itself (see `Resolved::fallbacks`).
    pub fallbacks: Vec<Option<RowChange>>,
    /// Per row, its place among the round's decided writes.
    pub seq: Vec<usize>,
}

/// Statements of a round the target did not apply: `executed` of them
/// (the first ones) are applied, the rest not at all; `error` is why.
#[derive(Debug)]
pub(crate) struct Unapplied {
    pub executed: usize,
    pub error: SinkError,
}

impl Batch {
    /// A batch of the one row `i` of `self`, to retry it alone.
    pub(crate) fn single(&self, i: usize) -> Batch {
        Batch {
            table: self.table.clone(),
            op: self.op,
            shape: self.shape.clone(),
            rows: vec![self.rows[i].clone()],
            key_changed: self.key_changed,
            origins: vec![self.origins[i].clone()],
            fallbacks: vec![None],
            seq: vec![self.seq[i]],
        }
    }
}

/// Whose entries of a target's journal outbox (see `journal::outbox`): one
/// direction's, written by one apply worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutboxScope {
    pub link_id: u32,
    pub source_site: u32,
    pub worker: u32,
}

/// A target engine's steps. Used with static dispatch only (the applier is
/// generic over it), so the futures' `Send` bounds are those of each engine.
#[allow(async_fn_in_trait)]
pub(crate) trait Target {
    /// The target site's name, for messages.
    fn site_name(&self) -> &str;
    /// The link's tables on this site (bare names).
    fn table_names(&self) -> Vec<String>;
    /// The conflict policy of a source table, as configured for this target.
    fn policy_for(&self, table: &TableName) -> TablePolicy;
    /// Read the target tables' columns again before their next use (a DBA
    /// may have changed a column so that a quarantined change fits).
    fn forget_tables(&mut self);
    /// duplex's own columns on the target's tables (the marker column; on
    /// MySQL/MariaDB also the stamp column): every synced table needs them.
    fn own_columns(&self) -> Vec<&str>;
    /// Of `columns` (the target's names for them) and duplex's own columns
    /// ([`Target::own_columns`]), those the target's table
    /// does not have; `fresh`: its description is read again first (the
    /// table may have changed since it was described). A table the target
    /// does not have at all: [`SinkError::MissingTable`].
    async fn missing_columns(
        &mut self,
        table: &TableName,
        columns: &[&str],
        fresh: bool,
    ) -> Result<Vec<String>, SinkError>;

    /// The source position the target has durably applied, as its counter
    /// (see [`SourcePosition::counter`]): where to resume.
    async fn resume_position(&mut self) -> Result<Option<u64>, SinkError>;
    /// Begin a target transaction that the source of this site recognises as
    /// duplex's own (no echo).
    async fn begin(&mut self) -> Result<(), SinkError>;
    /// Commit the open target transaction; with `applied` (the end position
    /// of its last source transaction and that transaction's commit time,
    /// µs), record it atomically with the data: where the stream resumes.
    async fn commit(&mut self, applied: Option<(SourcePosition, i64)>) -> Result<(), SinkError>;
    async fn rollback(&mut self) -> Result<(), SinkError>;
    /// Record, with the transaction just begun, that the target holds the
    /// source's state as of `position` (the initial sync's copy: the stream
    /// resumes there). Only where the engine keeps it with the transaction.
    async fn mark_applied(&mut self, position: SourcePosition) -> Result<(), SinkError>;
    /// Turn the target's foreign-key checks off (`on` false) for the rest of
    /// the transaction just begun, where the session may; back on after it
    /// (`on` true). The initial sync copies tables one after another, so a
    /// child row can arrive before its parent.
    async fn foreign_key_checks(&mut self, on: bool) -> Result<(), SinkError>;
    /// Empty `tables` inside the open transaction, as the source did.
    async fn truncate(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError>;

    /// Bring the change's images into the target's own representation of
    /// each column (what the target stores and reads back: `as_stored` of
    /// `pg::stored` / `mysql::param`), so that the checksum a marker records
    /// is the one the row reads back with, and incoming rows compare with
    /// the target's rows value for value. A value the column cannot take is
    /// left as it came: writing it is refused, with the reason.
    async fn normalize(&mut self, change: &mut RowChange) -> Result<(), SinkError>;
    /// For each table's `keys`, the target's rows that exist, locked, each
    /// with how it was last written (as the engine tells: not yet judged
    /// seeded); one list per request, in order.
    async fn read_rows(
        &mut self,
        requests: &[(Arc<TableSchema>, Vec<KeyRef>)],
    ) -> Result<Vec<Vec<LocalRow>>, SinkError>;
    /// When this site's changes to `table` began to be captured for the link
    /// (this site's clock, µs), where known (`duplex.capture_starts`).
    fn capture_start(&self, table: &TableName) -> Option<i64>;
    /// The tombstones of `keys` (encoded) of `schema`'s table, where any.
    async fn read_tombstones(
        &mut self,
        schema: &TableSchema,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Tombstone>, SinkError>;
    /// How many rows like `change` (writing `shape_len` columns) one
    /// statement may carry (1: it goes alone), and whether its table's
    /// writes must keep their order (see `plan`).
    async fn write_rules(
        &mut self,
        change: &RowChange,
        shape_len: usize,
    ) -> Result<WriteRules, SinkError>;
    /// Execute one batch as one statement. A statement the target refuses
    /// leaves the transaction as it was before it (a savepoint where the
    /// engine needs one), so its rows can be retried one by one.
    async fn execute(&mut self, batch: &Batch) -> Result<(), SinkError>;
    /// Execute a round's statements, in order. When the target refuses
    /// one, the statements it did not apply are reported ([`Unapplied`]),
    /// and the transaction is left as it was after the applied ones. This
    /// default runs them one after another; an engine whose statements can
    /// share round trips does better.
    async fn execute_all(&mut self, batches: &[Batch]) -> Result<(), Unapplied> {
        for (executed, batch) in batches.iter().enumerate() {
            if let Err(error) = self.execute(batch).await {
                return Err(Unapplied { executed, error });
            }
        }
        Ok(())
    }
    /// Record the tombstones of applied deletes and drop those of revived keys.
    async fn store_tombstones(&mut self, resolved: &Resolved) -> Result<(), SinkError>;
    /// Remove this link's tombstones older than `retention` (at most a few
    /// thousand per call, so a backlog never holds locks for long), outside
    /// any transaction. Returns how many were removed.
    async fn purge_tombstones(&mut self, retention: Duration) -> Result<u64, SinkError>;
    /// Does a session on the target wait for a lock the applier holds?
    async fn sessions_waiting(&mut self) -> Result<bool, SinkError>;

    /// The target session's id (PostgreSQL: its backend's pid; MySQL: its
    /// connection id), as [`Target::blocks_sessions`] takes it.
    fn session_id(&self) -> u64;
    /// Does this session hold a lock one of `sessions` waits for (through
    /// other sessions' waits too, where the engine tells)? An apply worker
    /// waiting for its turn to commit asks it about the workers before it:
    /// a wait no database can see as a deadlock.
    async fn blocks_sessions(&mut self, sessions: &[u64]) -> Result<bool, SinkError>;
    /// Can a write to `table` wait for, or be refused because of, another
    /// row's uncommitted write on the target (a unique index besides the
    /// key, triggers that fire for applied rows, foreign keys checked)?
    /// Apply workers never write such tables side by side.
    async fn spans_rows(&mut self, table: &TableName) -> Result<bool, SinkError>;

    /// Which of the direction's apply workers this target is.
    fn worker(&self) -> u32;
    /// Write journal entries (encoded, see `journal::outbox`) into the
    /// target's outbox, in order, in the open transaction: they commit with it.
    async fn write_outbox(
        &mut self,
        scope: OutboxScope,
        entries: &[String],
    ) -> Result<(), SinkError>;
    /// Up to `limit` of the outbox's entries of `scope`'s direction (every
    /// worker's) after entry `after`, oldest first, as (id, entry).
    /// Outside any transaction.
    async fn read_outbox(
        &mut self,
        scope: OutboxScope,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, SinkError>;
    /// Remove shipped entries, outside any transaction.
    async fn remove_outbox(&mut self, ids: &[i64]) -> Result<(), SinkError>;

    /// Describe the link's tables before the stream starts, so that the
    /// first changes of each do not wait for its catalog queries. A table
    /// that cannot be described is left to its first write, which fails
    /// with the reason.
    async fn describe_tables(&mut self);
}

#[cfg(test)]
mod tests {
    use super::DescribedTables;
    use crate::canonical::TableName;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Workers meeting a table at once describe it once; after `forget`, the
    /// next one describes it again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_is_described_once_for_every_worker() {
        let described: DescribedTables<String> = DescribedTables::default();
        let table = TableName::new("public", "t");
        let calls = Arc::new(AtomicUsize::new(0));
        // The first description is held until the other workers have asked.
        let release = Arc::new(tokio::sync::Notify::new());
        let describe = |calls: Arc<AtomicUsize>, release: Option<Arc<tokio::sync::Notify>>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if let Some(r) = release {
                r.notified().await;
            }
            Ok::<_, std::convert::Infallible>("t described".to_string())
        };
        let first = {
            let (d, t, c, r) = (
                described.clone(),
                table.clone(),
                calls.clone(),
                release.clone(),
            );
            tokio::spawn(async move { d.get_or_describe(&t, describe(c, Some(r))).await })
        };
        // The first has started describing before the others ask.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let others: Vec<_> = (0..3)
            .map(|_| {
                let (d, t, c) = (described.clone(), table.clone(), calls.clone());
                tokio::spawn(async move { d.get_or_describe(&t, describe(c, None)).await })
            })
            .collect();
        release.notify_one();
        let first = first.await.expect("first worker").expect("described");
        for o in others {
            let got = o.await.expect("worker").expect("described");
            assert!(
                Arc::ptr_eq(&got, &first),
                "every worker has the one description"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "described once");

        described.forget();
        described
            .get_or_describe(&table, describe(calls.clone(), None))
            .await
            .expect("described again");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "described again after forget"
        );
    }
}
