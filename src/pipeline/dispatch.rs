//! Parallel apply: the dispatcher hands whole source transactions to the
//! direction's apply workers (`worker.rs`, one target connection each) and
//! keeps the target's commits in source order.
//!
//! Consecutive source transactions form a *group*, one target transaction
//! on one worker. Groups are numbered in source order and a worker commits
//! its group only when every group before it has committed (its *turn*), so
//! the highest applied position any worker records is one below which every
//! source transaction is committed: each worker records its own (its own
//! replication origin or marker-table row), the direction resumes from the
//! highest (exactly once).
//!
//! Groups in flight at once never touch the same row: a transaction that
//! touches a row of an earlier group not yet committed waits for that
//! group's commit (on PostgreSQL a read of a row another transaction
//! inserted and has not committed finds nothing, so the two must not
//! overlap). Rows are known by table and key; a table where one row's write
//! can wait for another's (a unique index besides the key, triggers that
//! fire, foreign keys checked: [`crate::sink::Target::spans_rows`]) has its
//! transactions kept to one group in flight, like a table the dispatcher
//! knows nothing about yet. Truncates and statements that stop a table wait
//! for every group and go alone; so does a transaction too big to hold
//! (it streams to its worker, and the next waits for its commit).
//!
//! A group's worker gets the next transactions while nothing else is free;
//! when a worker is idle, the group is handed over once it holds a few
//! statements' worth of rows, and it is closed (committed) as soon as the
//! source has nothing more waiting, so latency stays low under light load.
//! Should a later group still hold a lock an earlier one waits for (rows
//! tied in a way the dispatcher cannot see), the later worker notices while
//! waiting for its turn, the direction restarts, and it applies with one
//! worker past that point ([`crate::stats::DirectionStats::serial_until`]).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::Hasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::canonical::{ChangeEvent, RowChange, SourceForm, SourcePosition, TableName};
use crate::mapping::DirectionMapping;
use crate::sink::SinkError;
use crate::source::ConfirmedPosition;
use crate::stats::DirectionStats;

use super::worker::{Job, Report, Tick};
use super::PipelineTuning;

/// Rows of one source transaction held before it is handed to a worker;
/// a bigger one streams to its worker alone.
const HELD_TXN_ROWS: usize = 5_000;

/// Jobs (mostly row changes) queued for one worker at most.
pub(super) const JOBS_QUEUED: usize = 1_024;

/// The direction's workers, as the dispatcher sees them.
pub(super) struct Workers {
    pub jobs: Vec<mpsc::Sender<Job>>,
    /// Each worker's target session id.
    pub sessions: Vec<u64>,
    pub reports: mpsc::UnboundedReceiver<Report>,
    pub in_flight: Arc<Mutex<BTreeMap<u64, u64>>>,
    pub handles: Vec<JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        // A worker still writing rolls back with its connection.
        for h in &self.handles {
            h.abort();
        }
    }
}

/// A source transaction being read, held until its commit.
#[derive(Default)]
struct Txn {
    jobs: Vec<Job>,
    /// The rows it touches (see [`row_id`]).
    keys: Vec<u64>,
    /// It writes a table whose rows are tied to others (or unknown yet).
    spans: bool,
    /// It truncates, or stops a table: it waits for every group, alone.
    barrier: bool,
    rows: usize,
}

/// A group of whole source transactions: one target transaction.
struct Group {
    seq: u64,
    worker: usize,
    keys: FxHashSet<u64>,
    spans: bool,
    /// Nothing may be in flight beside it (a barrier, a streamed transaction).
    exclusive: bool,
    txns: u64,
    rows: u64,
    closed: bool,
}

impl Group {
    fn touches(&self, txn: &Txn) -> bool {
        self.exclusive
            || (self.spans && txn.spans)
            || txn.keys.iter().any(|k| self.keys.contains(k))
    }
}

/// Why the dispatcher stopped.
pub(super) enum Ended {
    /// Shut down as asked.
    Shutdown,
    /// The source's stream ended.
    SourceClosed,
}

pub(super) struct Dispatcher<'a> {
    workers: Workers,
    busy: Vec<bool>,
    /// Workers given groups now: all, or one after workers waited for each
    /// other (until `serial_until` is committed).
    in_use: usize,
    serial_until: u64,
    groups: VecDeque<Group>,
    next_seq: u64,
    spanning: FxHashMap<TableName, bool>,
    /// A position with nothing to apply, confirmed once group `.0` commits.
    progress: Option<(u64, SourcePosition)>,
    /// End of the last source transaction handed to a worker.
    last_dispatched: Option<SourcePosition>,
    /// The tables stopped in the direction, as the workers were last told.
    stopped: HashSet<String>,
    /// Worker 0's stopped tables when the stream began, to share first.
    stopped_at_start: Option<HashSet<String>>,
    /// Reports that came while a job waited for room in a worker's queue.
    deferred: VecDeque<Report>,
    /// A worker's failure seen then: the run ends at the next report taken.
    failure: Option<DispatchError>,
    tuning: &'a PipelineTuning,
    stats: &'a Arc<DirectionStats>,
    confirmed: &'a ConfirmedPosition,
    key_buf: Vec<u8>,
}

impl<'a> Dispatcher<'a> {
    pub(super) fn new(
        workers: Workers,
        stopped: HashSet<String>,
        resume: Option<SourcePosition>,
        tuning: &'a PipelineTuning,
        stats: &'a Arc<DirectionStats>,
        confirmed: &'a ConfirmedPosition,
    ) -> Dispatcher<'a> {
        let n = workers.jobs.len();
        let serial_until = stats.serial_until.load(Ordering::Relaxed);
        let serial = serial_until > resume.map_or(0, |p| p.counter());
        if serial {
            tracing::info!(
                until = serial_until,
                "applying with one worker up to where apply workers last waited for each other"
            );
        }
        Dispatcher {
            busy: vec![false; n],
            in_use: if serial { 1 } else { n },
            serial_until,
            groups: VecDeque::new(),
            next_seq: 1,
            spanning: FxHashMap::default(),
            progress: None,
            last_dispatched: None,
            stopped: HashSet::new(),
            stopped_at_start: Some(stopped),
            deferred: VecDeque::new(),
            failure: None,
            tuning,
            stats,
            confirmed,
            key_buf: Vec::new(),
            workers,
        }
    }

    /// Run until shutdown or the end of the source's stream.
    pub(super) async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Result<ChangeEvent, crate::Error>>,
        mapping: &mut DirectionMapping,
        shutdown: &mut watch::Receiver<bool>,
        tombstone_retention: Duration,
    ) -> Result<Ended, DispatchError> {
        if let Some(stopped) = self.stopped_at_start.take() {
            self.share_stopped(stopped).await;
        }
        // Conflicts a DBA settles and quarantined changes a DBA retries are
        // picked up at this pace, between groups.
        let mut resolutions = tokio::time::interval(Duration::from_secs(1));
        resolutions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Expired tombstones are removed at a pace that follows the
        // retention (a short retention is for tests and small meshes).
        let mut tombstone_gc = tokio::time::interval(
            (tombstone_retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        );
        tombstone_gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut txn: Option<Txn> = None;
        // The transaction at hand goes straight to its group (too big to hold).
        let mut streaming = false;
        let ended = loop {
            if *shutdown.borrow() {
                break Ended::Shutdown;
            }
            self.take_deferred().await?;
            // Nothing more waiting: the open group commits now (it holds
            // whole source transactions only, unless one streams).
            if !streaming && rx.is_empty() {
                self.close_open().await;
            }
            tokio::select! {
                biased;
                report = self.workers.reports.recv() => {
                    self.handle(report).await?;
                }
                _ = shutdown.changed() => {}
                _ = resolutions.tick(), if txn.is_none() => self.tick(Tick::Resolutions).await?,
                _ = tombstone_gc.tick(), if txn.is_none() => self.tick(Tick::Tombstones).await?,
                event = rx.recv() => {
                    let Some(event) = event else { break Ended::SourceClosed };
                    self.stats.queued_events.store(rx.len() as u64, Ordering::Relaxed);
                    let event = event.map_err(DispatchError::Source)?;
                    self.on_event(event, &mut txn, &mut streaming, mapping).await?;
                }
            }
        };
        // Whole source transactions already handed over are committed; a
        // streamed one is not whole, and rolls back with its connection (it
        // is read again from the applied position at the next start).
        if !streaming {
            self.drain().await?;
        }
        Ok(ended)
    }

    async fn on_event(
        &mut self,
        event: ChangeEvent,
        txn: &mut Option<Txn>,
        streaming: &mut bool,
        mapping: &mut DirectionMapping,
    ) -> Result<(), DispatchError> {
        let job = match event {
            ChangeEvent::Begin(meta) => {
                *txn = Some(Txn::default());
                Job::Event(ChangeEvent::Begin(meta))
            }
            ChangeEvent::Change(change) => {
                // `None`: a table that flows the other way only.
                let Some((change, source)) = mapping.map_keeping_source(change) else {
                    return Ok(());
                };
                let t = txn.as_mut().ok_or_else(outside_txn)?;
                self.note_change(t, &change);
                if *streaming {
                    // Nothing goes beside a streamed transaction.
                    t.keys.clear();
                }
                Job::Change(change, SourceForm::from_mapping(source))
            }
            ChangeEvent::Truncate(tables) => {
                let t = txn.as_mut().ok_or_else(outside_txn)?;
                t.barrier = true;
                Job::Event(ChangeEvent::Truncate(
                    tables
                        .into_iter()
                        .filter(|t| !mapping.skips(&t.table.name))
                        .collect(),
                ))
            }
            ChangeEvent::Unreplicable(mut u) => {
                // A table that flows the other way only is not stopped here.
                u.tables.retain(|t| !mapping.skips(&t.name));
                if u.tables.is_empty() {
                    return Ok(());
                }
                let t = txn.as_mut().ok_or_else(outside_txn)?;
                t.barrier = true;
                Job::Event(ChangeEvent::Unreplicable(u))
            }
            ChangeEvent::Commit { end_position } => {
                let mut t = txn.take().ok_or_else(outside_txn)?;
                t.jobs
                    .push(Job::Event(ChangeEvent::Commit { end_position }));
                self.last_dispatched = Some(end_position);
                if std::mem::take(streaming) {
                    self.send_held(&mut t).await;
                    self.close_open().await;
                    if t.barrier {
                        self.tick(Tick::Share).await?;
                    }
                    return Ok(());
                }
                return self.dispatch(t).await;
            }
            ChangeEvent::Progress { position } => {
                match self.groups.back() {
                    None => self.confirm(position),
                    Some(g) => self.progress = Some((g.seq, position)),
                }
                return Ok(());
            }
        };
        let t = txn.as_mut().ok_or_else(outside_txn)?;
        t.jobs.push(job);
        if *streaming {
            self.send_held(t).await;
        } else if t.rows > HELD_TXN_ROWS {
            // Too big to hold: it goes alone, as it comes.
            self.drain().await?;
            self.open_group(0, true).await;
            *streaming = true;
            self.send_held(t).await;
        }
        Ok(())
    }

    /// Note a change's rows and tables in its transaction.
    fn note_change(&mut self, t: &mut Txn, change: &RowChange) {
        t.rows += 1;
        let table = &change.table.table;
        if self.spanning.get(table).copied().unwrap_or(true) {
            t.spans = true;
        }
        for image in [change.before.as_ref(), change.after.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(id) = row_id(image, &change.table, &mut self.key_buf) {
                t.keys.push(id);
            }
        }
    }

    /// Hand a whole source transaction to a worker.
    async fn dispatch(&mut self, t: Txn) -> Result<(), DispatchError> {
        tracing::trace!(
            rows = t.rows,
            barrier = t.barrier,
            spans = t.spans,
            "dispatching a source transaction"
        );
        if t.barrier {
            self.drain().await?;
            self.open_group(0, true).await;
            self.hand_over(t).await;
            self.close_open().await;
            return self.tick(Tick::Share).await;
        }
        // A full open group is closed first: the check below then counts it
        // among the groups the transaction may have to wait for.
        if let Some(open) = self.groups.back().filter(|g| !g.closed) {
            if open.txns >= self.tuning.max_group_txns || open.rows >= self.tuning.max_group_rows {
                self.close_open().await;
            }
        }
        // Rows of an earlier group not yet committed: wait for it. The open
        // group is closed first: its worker may hold a lock the earlier one
        // waits for, which it only finds out while waiting for its turn.
        if self.groups.iter().any(|g| g.closed && g.touches(&t)) {
            let started = std::time::Instant::now();
            self.close_open().await;
            while self.groups.iter().any(|g| g.closed && g.touches(&t)) {
                self.next_report().await?;
            }
            slow_wait("an earlier group's rows", started, || {
                format!("spans {}, rows {}", t.spans, t.rows)
            });
        }
        if self.groups.back().is_none_or(|g| g.closed) {
            let started = std::time::Instant::now();
            let worker = loop {
                if let Some(w) = self.idle_worker() {
                    break w;
                }
                self.next_report().await?;
            };
            slow_wait("an idle worker", started, String::new);
            self.open_group(worker, false).await;
        }
        self.hand_over(t).await;
        let split_rows = (self.tuning.max_batch_rows / 4).max(1) as u64;
        let hand_on = self
            .groups
            .back()
            .is_some_and(|g| g.rows >= split_rows && self.idle_worker().is_some());
        if hand_on {
            self.close_open().await;
        }
        Ok(())
    }

    /// Add a whole transaction to the open group and send it to its worker.
    async fn hand_over(&mut self, mut t: Txn) {
        let Some(open) = self.groups.back_mut() else {
            return;
        };
        open.keys.extend(t.keys.iter().copied());
        open.spans |= t.spans;
        open.txns += 1;
        open.rows += t.rows as u64;
        self.send_held(&mut t).await;
    }

    /// Send the jobs held in `t` to the open group's worker.
    async fn send_held(&mut self, t: &mut Txn) {
        let Some(worker) = self.groups.back().map(|g| g.worker) else {
            return;
        };
        for job in t.jobs.drain(..) {
            self.send(worker, job).await;
        }
    }

    /// Queue a job for `worker`, waiting while its queue is full (what
    /// bounds memory: a worker's queue holds at most [`JOBS_QUEUED`]). A
    /// full queue never waits on the dispatcher: only the last group is
    /// open, and every group before it is closed and commits on its own.
    /// Reports that come meanwhile are kept for later; a worker's failure
    /// ends the run at the next report taken (a worker that waits for a
    /// failed one never empties its queue).
    async fn send(&mut self, worker: usize, job: Job) {
        if self.failure.is_some() {
            return;
        }
        let jobs = self.workers.jobs[worker].clone();
        let mut sending = std::pin::pin!(jobs.send(job));
        loop {
            tokio::select! {
                biased;
                // A worker that is gone has reported why.
                _ = &mut sending => return,
                report = self.workers.reports.recv() => match report {
                    Some(Report::Failed { error }) => {
                        self.failure = Some(self.failed(error));
                        return;
                    }
                    Some(other) => self.deferred.push_back(other),
                    None => return,
                },
            }
        }
    }

    async fn open_group(&mut self, worker: usize, exclusive: bool) {
        let seq = self.next_seq;
        tracing::trace!(seq, worker, exclusive, "group opened");
        self.next_seq += 1;
        self.busy[worker] = true;
        if let Ok(mut m) = self.workers.in_flight.lock() {
            m.insert(seq, self.workers.sessions[worker]);
        }
        self.send(worker, Job::Open { seq }).await;
        self.groups.push_back(Group {
            seq,
            worker,
            keys: FxHashSet::default(),
            spans: false,
            exclusive,
            txns: 0,
            rows: 0,
            closed: false,
        });
    }

    /// The open group is complete: its worker commits it in its turn.
    async fn close_open(&mut self) {
        let Some(open) = self.groups.back_mut().filter(|g| !g.closed) else {
            return;
        };
        open.closed = true;
        let (worker, seq) = (open.worker, open.seq);
        self.send(worker, Job::Close { seq }).await;
    }

    /// Close the open group and wait until every group has committed.
    async fn drain(&mut self) -> Result<(), DispatchError> {
        self.close_open().await;
        while !self.groups.is_empty() {
            self.next_report().await?;
        }
        Ok(())
    }

    fn idle_worker(&self) -> Option<usize> {
        (0..self.in_use).find(|&w| !self.busy[w])
    }

    async fn next_report(&mut self) -> Result<(), DispatchError> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        let report = match self.deferred.pop_front() {
            Some(r) => Some(r),
            None => self.workers.reports.recv().await,
        };
        self.handle(report).await
    }

    /// Reports kept while a job waited for room, and a failure seen then.
    async fn take_deferred(&mut self) -> Result<(), DispatchError> {
        loop {
            if let Some(failure) = self.failure.take() {
                return Err(failure);
            }
            let Some(report) = self.deferred.pop_front() else {
                return Ok(());
            };
            self.handle(Some(report)).await?;
        }
    }

    /// A worker failed: why the run ends.
    fn failed(&mut self, error: SinkError) -> DispatchError {
        // Workers waiting for each other, seen (`WorkersDeadlocked`) or not
        // (the account may not read lock waits: the earlier one's wait
        // times out): one worker past this point.
        if error.is_lock_wait() && self.groups.len() > 1 {
            let until = self.last_dispatched.map_or(0, |p| p.counter());
            self.stats.serial_until.fetch_max(until, Ordering::Relaxed);
        }
        DispatchError::Sink(error)
    }

    async fn handle(&mut self, report: Option<Report>) -> Result<(), DispatchError> {
        // The dispatcher holds a sender of its own: reports never end.
        let Some(report) = report else {
            return Err(DispatchError::Sink(SinkError::WorkerGone { worker: 0 }));
        };
        match report {
            Report::Committed {
                seq,
                worker,
                confirm,
            } => {
                if self.groups.front().map(|g| g.seq) == Some(seq) {
                    self.groups.pop_front();
                }
                self.busy[worker] = false;
                if let Ok(mut m) = self.workers.in_flight.lock() {
                    m.remove(&seq);
                }
                if let Some(p) = confirm {
                    self.confirm(p);
                }
                if let Some((after, p)) = self.progress {
                    if after <= seq {
                        self.progress = None;
                        self.confirm(p);
                    }
                }
            }
            Report::Contended { seq } => {
                if self.groups.back().is_some_and(|g| g.seq == seq) {
                    self.close_open().await;
                }
            }
            Report::Spans { table, spans } => {
                self.spanning.insert(table, spans);
            }
            Report::Failed { error } => return Err(self.failed(error)),
        }
        Ok(())
    }

    /// Committed on the target up to `p`: the source may be told.
    fn confirm(&mut self, p: SourcePosition) {
        self.confirmed.advance(p);
        // Includes positions with nothing to apply (echoes, idle stream):
        // the target is caught up to there.
        self.stats.set_applied_position(p);
        if self.in_use < self.busy.len() && p.counter() >= self.serial_until {
            tracing::info!(
                "past where apply workers waited for each other: applying with every worker again"
            );
            self.in_use = self.busy.len();
            self.stats.serial_until.store(0, Ordering::Relaxed);
        }
    }

    /// Worker 0's periodic work, with every group committed; after it
    /// (and after a truncate or a stopped table, `Tick::Share`) every
    /// worker knows the tables stopped.
    async fn tick(&mut self, tick: Tick) -> Result<(), DispatchError> {
        let started = std::time::Instant::now();
        self.drain().await?;
        let drained = started.elapsed();
        let (reply, answer) = oneshot::channel();
        self.send(0, Job::Tick(tick, reply)).await;
        let stopped = self.answer(answer).await?;
        self.share_stopped(stopped).await;
        slow_wait("periodic work", started, || {
            format!("{tick:?}, drained in {drained:?}")
        });
        Ok(())
    }

    /// Worker 0's answer; if it fails instead, its report.
    async fn answer(
        &mut self,
        answer: oneshot::Receiver<HashSet<String>>,
    ) -> Result<HashSet<String>, DispatchError> {
        match answer.await {
            Ok(stopped) => Ok(stopped),
            Err(_) => loop {
                self.next_report().await?;
            },
        }
    }

    /// Tell workers other than 0 the tables stopped in the direction.
    async fn share_stopped(&mut self, stopped: HashSet<String>) {
        if stopped == self.stopped {
            return;
        }
        for w in 1..self.workers.jobs.len() {
            self.send(w, Job::Stopped(stopped.clone())).await;
        }
        self.stopped = stopped;
    }
}

/// Waits of the dispatcher long enough to show in the lag, for whoever
/// looks into it (debug level).
fn slow_wait(what: &str, started: std::time::Instant, detail: impl FnOnce() -> String) {
    let waited = started.elapsed();
    if waited >= Duration::from_millis(50) {
        tracing::debug!(
            waited_ms = waited.as_millis() as u64,
            detail = detail(),
            "the dispatcher waited for {what}"
        );
    }
}

/// Why dispatching stopped.
pub(super) enum DispatchError {
    /// The source's reader failed.
    Source(crate::Error),
    /// A worker failed.
    Sink(SinkError),
}

fn outside_txn() -> DispatchError {
    DispatchError::Source(crate::Error::Internal(
        "the source sent a change outside a transaction".into(),
    ))
}

/// A row's identity among the groups in flight: a hash of its table and
/// key (a collision only makes a transaction wait).
fn row_id(
    image: &crate::canonical::Row,
    schema: &crate::canonical::TableSchema,
    buf: &mut Vec<u8>,
) -> Option<u64> {
    buf.clear();
    image.encode_key_into(schema, buf)?;
    let table = &schema.table;
    let mut h = FxHasher::default();
    h.write(table.schema.as_bytes());
    h.write_u8(0);
    h.write(table.name.as_bytes());
    h.write_u8(0);
    h.write(buf);
    Some(h.finish())
}
