//! One apply worker: an [`Applier`] on its own connection to the target,
//! fed whole source transactions by the dispatcher (`dispatch.rs`) in
//! groups. A group is one target transaction; the worker writes it as its
//! jobs arrive, and when the dispatcher closes it, waits for its turn (every
//! group before it committed) and commits it with its last source position.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashSet;
use tokio::sync::{mpsc, oneshot, watch};

use crate::canonical::{ChangeEvent, RowChange, SourceForm, SourcePosition, TableName};
use crate::mapping::DirectionMapping;
use crate::sink::{Applier, SinkError, Target};

use super::{Contention, PipelineTuning};

/// What the dispatcher asks of a worker, in order.
pub(super) enum Job {
    /// A group begins: its sequence number (groups commit in this order).
    Open { seq: u64 },
    /// An event of a source transaction of the open group (not `Change`).
    Event(ChangeEvent),
    /// A mapped change, with its form before the mapping.
    Change(RowChange, SourceForm),
    /// The open group is complete: write what is pending, wait for the
    /// turn, commit.
    Close { seq: u64 },
    /// Worker 0, every worker idle: the direction's own periodic work. The
    /// reply carries the tables stopped in the direction afterwards.
    Tick(Tick, oneshot::Sender<HashSet<String>>),
    /// The tables stopped in the direction, as worker 0 knows them.
    Stopped(HashSet<String>),
}

/// Periodic work outside the stream (worker 0, between groups).
#[derive(Debug, Clone, Copy)]
pub(super) enum Tick {
    /// A DBA's settlements, quarantine retries, stopped tables resumed.
    Resolutions,
    /// Expired tombstones removed.
    Tombstones,
    /// Nothing: only the stopped tables, after a table was stopped.
    Share,
}

/// What a worker tells the dispatcher.
pub(super) enum Report {
    /// Group `seq` committed; `confirm`: the position the source may now
    /// be told.
    Committed {
        seq: u64,
        worker: usize,
        confirm: Option<SourcePosition>,
    },
    /// Application sessions wait for the open group's row locks: close it.
    Contended { seq: u64 },
    /// Whether writes to `table` can wait for other rows' uncommitted writes.
    Spans { table: TableName, spans: bool },
    /// The worker stopped on an error; the direction restarts.
    Failed { error: SinkError },
}

/// What one worker shares with the dispatcher and the other workers.
pub(super) struct WorkerCtx {
    pub index: usize,
    pub jobs: mpsc::Receiver<Job>,
    pub reports: mpsc::UnboundedSender<Report>,
    /// The last group committed (groups are numbered from 1).
    pub turn: watch::Receiver<u64>,
    pub turn_tx: Arc<watch::Sender<u64>>,
    /// Groups not yet committed -> the session id of the worker applying
    /// each (see [`wait_turn`]).
    pub in_flight: Arc<Mutex<BTreeMap<u64, u64>>>,
    pub tuning: PipelineTuning,
    /// Worker 0's: the mapping held and retried changes are mapped with.
    pub mapping: Option<DirectionMapping>,
    pub tombstone_retention: Duration,
}

/// How often a worker waiting for its turn looks for an earlier worker
/// waiting for one of its locks.
const DEADLOCK_PROBE: Duration = Duration::from_millis(200);

/// Run a worker until its jobs end or it fails (reported).
pub(super) async fn run<T: Target>(mut applier: Applier<T>, mut ctx: WorkerCtx) {
    // A panic unwinds through this guard, which then reports the worker
    // gone: the dispatcher never waits for a worker that is no more.
    let mut guard = GoneGuard {
        reports: ctx.reports.clone(),
        worker: ctx.index,
        armed: true,
    };
    let result = work(&mut applier, &mut ctx).await;
    guard.armed = false;
    if let Err(error) = result {
        let _ = ctx.reports.send(Report::Failed { error });
    }
}

struct GoneGuard {
    reports: mpsc::UnboundedSender<Report>,
    worker: usize,
    armed: bool,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.reports.send(Report::Failed {
                error: SinkError::WorkerGone {
                    worker: self.worker,
                },
            });
        }
    }
}

async fn work<T: Target>(a: &mut Applier<T>, ctx: &mut WorkerCtx) -> Result<(), SinkError> {
    let mut seq = 0;
    // The group this worker has open (not yet closed by the dispatcher).
    let mut open = false;
    let mut contention = Contention::new(&ctx.tuning);
    let mut known: FxHashSet<TableName> = FxHashSet::default();
    let mut opened = std::time::Instant::now();
    loop {
        let job = if open {
            // Between jobs of an open group the worker holds its rows'
            // locks: an earlier worker waiting for one of them would wait
            // for ever (this group commits after it), so it is looked for
            // as in `wait_turn`.
            match tokio::time::timeout(DEADLOCK_PROBE, ctx.jobs.recv()).await {
                Ok(job) => job,
                Err(_) => {
                    blocks_earlier(a, ctx, seq).await?;
                    continue;
                }
            }
        } else {
            ctx.jobs.recv().await
        };
        let Some(job) = job else { break };
        match job {
            Job::Open { seq: s } => {
                seq = s;
                open = true;
                opened = std::time::Instant::now();
            }
            Job::Change(change, source) => {
                if !known.contains(&change.table.table) {
                    let table = change.table.table.clone();
                    // A table the target cannot describe fails its writes
                    // with the reason; meanwhile it counts as tied to others.
                    let spans = a.target.spans_rows(&table).await.unwrap_or(true);
                    known.insert(table.clone());
                    let _ = ctx.reports.send(Report::Spans { table, spans });
                }
                a.apply_change(change, source).await?;
            }
            Job::Event(event) => {
                let source_commit = matches!(event, ChangeEvent::Commit { .. });
                a.apply(event).await?;
                if source_commit && contention.commit_now(a).await? {
                    let _ = ctx.reports.send(Report::Contended { seq });
                }
            }
            Job::Close { seq } => {
                open = false;
                let started = std::time::Instant::now();
                let open_for = opened.elapsed();
                a.decide_pending().await?;
                let decided = started.elapsed();
                wait_turn(a, ctx, seq).await?;
                let turn = started.elapsed();
                let confirm = a.commit().await?;
                let done = started.elapsed();
                // Where a group's time went, for whoever looks into lag.
                if done + open_for >= Duration::from_millis(50) {
                    tracing::debug!(seq, ?open_for, written = ?decided, turn_at = ?turn, committed_at = ?done, "a slow group");
                }
                // Reported before the turn passes on, so reports arrive in
                // commit order.
                let _ = ctx.reports.send(Report::Committed {
                    seq,
                    worker: ctx.index,
                    confirm,
                });
                ctx.turn_tx.send_replace(seq);
            }
            Job::Tick(tick, reply) => {
                // On an error the reply is dropped; the dispatcher then
                // takes the worker's report.
                periodic(a, ctx, tick).await?;
                let _ = reply.send(a.quarantine.stopped().clone());
            }
            Job::Stopped(tables) => a.quarantine.set_stopped(tables),
        }
    }
    Ok(())
}

/// Worker 0's periodic work, the same as an applier's between transactions.
async fn periodic<T: Target>(
    a: &mut Applier<T>,
    ctx: &mut WorkerCtx,
    tick: Tick,
) -> Result<(), SinkError> {
    match tick {
        Tick::Resolutions => {
            let Some(mapping) = ctx.mapping.as_mut() else {
                return Ok(());
            };
            // The control database is off the data path: while it cannot be
            // reached, the records waiting in the target's outbox, the DBA's
            // settlements, retries and resumed tables (each read from it
            // before anything is written) wait for it, and the stream goes on.
            if !a.conflicts.control_reachable().await
                || !a.quarantine.control_reachable().await
                || !a.ship_journal().await?
            {
                tracing::debug!(
                    "the control database cannot be reached: records, settlements and retries wait for it"
                );
                return Ok(());
            }
            a.apply_resolutions().await?;
            a.apply_quarantine_retries(mapping).await?;
            a.resume_stopped(mapping).await?;
            a.release_fitting_tables(mapping).await?;
        }
        Tick::Tombstones => {
            let removed = a.purge_tombstones(ctx.tombstone_retention).await?;
            if removed > 0 {
                tracing::debug!(removed, "expired tombstones removed");
            }
        }
        Tick::Share => {}
    }
    Ok(())
}

/// Wait until every group before `seq` has committed. Meanwhile, now and
/// then: does a worker of an earlier group wait for a lock this one holds?
/// Then neither could ever go on (its commit waits for theirs); the
/// direction stops with [`SinkError::WorkersDeadlocked`] and both roll back.
async fn wait_turn<T: Target>(
    a: &mut Applier<T>,
    ctx: &mut WorkerCtx,
    seq: u64,
) -> Result<(), SinkError> {
    loop {
        if *ctx.turn.borrow_and_update() + 1 >= seq {
            return Ok(());
        }
        tokio::select! {
            changed = ctx.turn.changed() => {
                if changed.is_err() {
                    return Err(SinkError::WorkerGone { worker: ctx.index });
                }
            }
            _ = tokio::time::sleep(DEADLOCK_PROBE) => blocks_earlier(a, ctx, seq).await?,
        }
    }
}

/// Fails with [`SinkError::WorkersDeadlocked`] when a worker of a group
/// before `seq` waits for a lock this worker holds.
async fn blocks_earlier<T: Target>(
    a: &mut Applier<T>,
    ctx: &WorkerCtx,
    seq: u64,
) -> Result<(), SinkError> {
    let earlier: Vec<u64> = match ctx.in_flight.lock() {
        Ok(m) => m.range(..seq).map(|(_, &s)| s).collect(),
        Err(_) => Vec::new(),
    };
    if !earlier.is_empty() && a.target.blocks_sessions(&earlier).await? {
        tracing::warn!(worker = ctx.index, group = seq, "an earlier apply worker waits for a lock this one holds until its turn to commit: restarting the direction");
        return Err(SinkError::WorkersDeadlocked);
    }
    Ok(())
}
