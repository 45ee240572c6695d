//! One direction of a link: source site -> canonical events -> target site.
//!
//! A reader task decodes the source's stream into a bounded channel; the
//! dispatcher (`dispatch.rs`) takes whole source transactions from it and
//! hands them, in groups, to the direction's apply workers (`worker.rs`),
//! each an applier on its own target connection. Groups that share no row
//! are applied side by side and committed in source order. A group takes
//! consecutive small transactions while more are waiting and commits as soon
//! as the channel runs dry, so latency stays low under light load and
//! throughput high under heavy load. After each commit the applied position
//! is handed back to the reader, which confirms it to the source: the slot
//! never advances past what the peer has committed (exactly once).

use crate::error_class::ErrorClass;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

mod dispatch;
mod worker;

use crate::canonical::{ChangeEvent, SourcePosition};
use crate::sink::mysql::{MysqlTarget, MysqlTargetSpec};
use crate::sink::pg::{PgTarget, PgTargetSpec};
use crate::sink::{
    Applier, ApplierSpec, SinkError, SinkSpec, Target, TargetSpec, MAX_APPLY_WORKERS,
};
use crate::source::{ConfirmedPosition, Source, SourceSpec};
use crate::stats::DirectionStats;
use worker::WorkerCtx;

/// Tuning of one direction.
#[derive(Debug, Clone)]
pub struct PipelineTuning {
    /// Events buffered between reader and applier.
    pub channel_events: usize,
    /// Most rows per multi-row statement.
    pub max_batch_rows: usize,
    /// Commit the target transaction after this many source transactions even
    /// if more are waiting.
    pub max_group_txns: u64,
    /// ... or after this many rows (a single large source transaction is never split).
    pub max_group_rows: u64,
    /// Once the open target transaction has been open this long, the applier
    /// asks the target, at each source-transaction boundary (at most once per
    /// this interval), whether an application session waits for one of its
    /// row locks; if one does, it commits there.
    pub contention_check_after: Duration,
    /// After an application session was seen waiting for the applier, each
    /// source transaction is committed on its own for this long (extended
    /// while sessions keep waiting), so the applier holds a hot row no longer
    /// than one source transaction takes.
    pub contended_for: Duration,
    /// Connections the direction applies on at once (`links.apply_workers`;
    /// see `dispatch`).
    pub apply_workers: u32,
}

impl Default for PipelineTuning {
    fn default() -> Self {
        PipelineTuning {
            channel_events: 4096,
            max_batch_rows: 500,
            max_group_txns: 200,
            max_group_rows: 20_000,
            contention_check_after: Duration::from_millis(5),
            contended_for: Duration::from_secs(2),
            apply_workers: 4,
        }
    }
}

/// Everything one direction needs.
#[derive(Debug, Clone)]
pub struct DirectionSpec {
    /// `link:source->target`, in logs.
    pub name: String,
    /// The link's name (`duplex.links.name`), in the fixes the direction's
    /// errors name and in the metrics' labels.
    pub link_name: String,
    /// The source and target sites' names (`duplex.sites.name`).
    pub source_name: String,
    pub target_name: String,
    pub source: SourceSpec,
    pub sink: SinkSpec,
    pub tuning: PipelineTuning,
    /// Tombstones of applied deletes older than this are removed from the
    /// target (the link's `tombstone_retention`).
    pub tombstone_retention: Duration,
    /// Column mappings and one-way tables (see `mapping`).
    pub mapping: crate::mapping::DirectionMapping,
    /// Copying the source's existing rows of tables that joined the link.
    pub snapshot: Option<crate::snapshot::SnapshotSpec>,
}

/// Run one direction until `shutdown` turns true or an error occurs. The caller
/// restarts it after an error: nothing is lost, the target's origin progress
/// says where to resume.
pub async fn run_direction(
    spec: DirectionSpec,
    stats: Arc<DirectionStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), crate::Error> {
    let span = tracing::info_span!("direction", name = %spec.name);
    async move {
        // A direction waiting for an operator stays so while it looks
        // again: its state changes when the look succeeds.
        if stats.state() != "needs_operator" {
            stats.set_state("connecting");
        }
        let site = spec.sink.site_name().to_string();
        let at_sink = |e: SinkError| crate::Error::sink_error(&site, e);
        let batch_rows = spec.sink.applier.max_batch_rows;
        let workers = spec.tuning.apply_workers.clamp(1, MAX_APPLY_WORKERS);
        // The one place the target's engine is chosen: the rest of the
        // direction is the same code for every engine.
        match spec.sink.target.clone() {
            TargetSpec::Pg(t) => {
                // Described anew in each run: a restart may follow a change.
                let t = PgTargetSpec {
                    described: Default::default(),
                    ..t
                };
                let appliers = connect_workers(workers, &spec.sink.applier, &stats, |worker| {
                    let t = PgTargetSpec {
                        worker,
                        ..t.clone()
                    };
                    PgTarget::connect(t, batch_rows, stats.clone())
                })
                .await
                .map_err(at_sink)?;
                stream(spec, appliers, stats, shutdown, |a, ctx| {
                    let span = tracing::info_span!("worker", n = ctx.index);
                    tokio::spawn(worker::run(a, ctx).instrument(span))
                })
                .await
            }
            TargetSpec::Mysql(t) => {
                let t = MysqlTargetSpec {
                    described: Default::default(),
                    ..t
                };
                let appliers = connect_workers(workers, &spec.sink.applier, &stats, |worker| {
                    let t = MysqlTargetSpec {
                        worker,
                        ..t.clone()
                    };
                    MysqlTarget::connect(t, batch_rows, stats.clone())
                })
                .await
                .map_err(at_sink)?;
                stream(spec, appliers, stats, shutdown, |a, ctx| {
                    let span = tracing::info_span!("worker", n = ctx.index);
                    tokio::spawn(worker::run(a, ctx).instrument(span))
                })
                .await
            }
        }
    }
    .instrument(span)
    .await
}

/// The appliers of `workers` apply workers, each on the target `connect`
/// makes for it. A worker beyond the first that cannot connect (a
/// connection or, on PostgreSQL before 18, a replication-origin entry too
/// few on the target) is left out: the direction runs with the workers it
/// has.
async fn connect_workers<T: Target, F, Fut>(
    workers: u32,
    spec: &ApplierSpec,
    stats: &Arc<DirectionStats>,
    mut connect: F,
) -> Result<Vec<Applier<T>>, SinkError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, SinkError>>,
{
    let mut appliers = Vec::new();
    for worker in 0..workers {
        match connect(worker).await {
            Ok(target) => appliers.push(Applier::new(spec.clone(), target, stats.clone())),
            Err(e) if worker > 0 => {
                tracing::warn!(
                    workers = worker,
                    error = %crate::error_chain::error_chain(&e),
                    "an apply worker cannot connect: applying with fewer workers (raise max_connections, or on PostgreSQL before 18 max_replication_slots, on the target; or lower links.apply_workers)"
                );
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(appliers)
}

/// Run one direction on its connected appliers (one per apply worker): the
/// initial sync's copies (worker 0's), then the stream, dispatched to the
/// workers. `spawn` starts a worker's task (where the engine is known, so
/// that its futures are known to be `Send`).
async fn stream<T: Target>(
    spec: DirectionSpec,
    mut appliers: Vec<Applier<T>>,
    stats: Arc<DirectionStats>,
    mut shutdown: watch::Receiver<bool>,
    spawn: impl Fn(Applier<T>, WorkerCtx) -> tokio::task::JoinHandle<()>,
) -> Result<(), crate::Error> {
    if appliers.is_empty() {
        return Err(crate::Error::Internal(
            "a direction without apply workers".into(),
        ));
    }
    let mut sink = appliers.remove(0);
    let site = sink.site_name().to_string();
    let at_sink = |e: SinkError| crate::Error::sink_error(&site, e);
    let resume_counter = sink.resume_position().await.map_err(at_sink)?;
    sink.reconcile_journal(resume_counter)
        .await
        .map_err(at_sink)?;
    // Held changes are mapped with the configuration in force now.
    let mut mapping = spec.mapping.clone();
    sink.release_fitting_tables(&mut mapping)
        .await
        .map_err(at_sink)?;
    sink.release_held(&mut mapping).await.map_err(at_sink)?;
    let resume = resume_counter.map(|c| SourcePosition::from_counter(spec.source.kind(), c));
    // Existing rows first; the stream then goes on from `resume`, before the copy.
    let snapshot_start = match &spec.snapshot {
        Some(s) => {
            crate::snapshot::run_pending(s, &mut sink, &mut mapping, resume, &stats, &shutdown)
                .await?
        }
        None => None,
    };
    // For every worker, before the first changes wait for it (a shutdown
    // meanwhile stops it: nothing is open, and nothing half-described is kept).
    tokio::select! {
        _ = sink.target.describe_tables() => {}
        _ = shutdown.changed() => {}
    }
    if *shutdown.borrow() {
        stats.set_state("stopped");
        return Ok(());
    }
    let mut source_spec = spec.source.clone();
    source_spec.set_start(resume.or(snapshot_start));
    if let Some(p) = resume {
        stats.set_applied_position(p);
    }
    tracing::info!(resume = %resume.map(|p| p.to_string()).unwrap_or_else(|| "the source's own position".into()), workers = appliers.len() + 1, "starting");
    let confirmed = Arc::new(ConfirmedPosition::default());
    let mut source = Source::connect(source_spec, stats.clone(), confirmed.clone()).await?;
    stats.set_state("streaming");

    let (tx, mut rx) =
        mpsc::channel::<Result<ChangeEvent, crate::Error>>(spec.tuning.channel_events.max(16));

    // Reader: decode the stream (it confirms committed positions itself).
    let reader_stats = stats.clone();
    let reader = tokio::spawn(
        async move {
            loop {
                let ev = match source.next_event().await {
                    Ok(Some(ev)) => {
                        if let ChangeEvent::Begin(meta) = &ev {
                            reader_stats.note_read(meta.commit_position, meta.commit_time_us);
                        }
                        Ok(ev)
                    }
                    Ok(None) => break,
                    Err(e) => Err(e),
                };
                let failed = ev.is_err();
                if tx.send(ev).await.is_err() || failed {
                    break;
                }
            }
        }
        .in_current_span(),
    );

    // The workers: worker 0 (which did the copies) and the others, which
    // know its parked conflicts as one set.
    let stopped = sink.quarantine.stopped().clone();
    for applier in appliers.iter_mut() {
        applier.conflicts.share_parked(&sink.conflicts);
        applier.ship_lock = sink.ship_lock.clone();
    }
    appliers.insert(0, sink);
    let (report_tx, reports) = mpsc::unbounded_channel();
    let (turn_tx, turn) = watch::channel(0u64);
    let turn_tx = Arc::new(turn_tx);
    let in_flight = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let mut workers = dispatch::Workers {
        jobs: Vec::new(),
        sessions: Vec::new(),
        reports,
        in_flight: in_flight.clone(),
        handles: Vec::new(),
    };
    for (index, applier) in appliers.into_iter().enumerate() {
        let (jobs_tx, jobs) = mpsc::channel(dispatch::JOBS_QUEUED);
        workers.jobs.push(jobs_tx);
        workers.sessions.push(applier.target.session_id());
        let ctx = WorkerCtx {
            index,
            jobs,
            reports: report_tx.clone(),
            turn: turn.clone(),
            turn_tx: turn_tx.clone(),
            in_flight: in_flight.clone(),
            tuning: spec.tuning.clone(),
            mapping: (index == 0).then(|| mapping.clone()),
            tombstone_retention: spec.tombstone_retention,
        };
        workers.handles.push(spawn(applier, ctx));
    }
    let mut dispatcher =
        dispatch::Dispatcher::new(workers, stopped, resume, &spec.tuning, &stats, &confirmed);
    let result = dispatcher
        .run(
            &mut rx,
            &mut mapping,
            &mut shutdown,
            spec.tombstone_retention,
        )
        .await;
    drop(dispatcher);
    // The reader ended on its own: a panic there must surface as an error,
    // not look like a stream that ended and is quietly reconnected.
    let result = match result {
        Ok(dispatch::Ended::SourceClosed) => match reader.await {
            Err(e) if e.is_panic() => Err(crate::Error::Internal(format!(
                "the reader task panicked: {e}"
            ))),
            _ => Ok(()),
        },
        Ok(dispatch::Ended::Shutdown) => {
            reader.abort();
            Ok(())
        }
        Err(e) => {
            reader.abort();
            Err(match e {
                dispatch::DispatchError::Source(e) => e,
                dispatch::DispatchError::Sink(e) => at_sink(e),
            })
        }
    };
    stats.set_state(if result.is_ok() { "stopped" } else { "error" });
    result
}

/// Whether the application on the target waits for the applier's row locks.
///
/// Grouping many source transactions into one target transaction is what
/// makes a backlog fast, but every row the group has written stays locked
/// until it commits: an application writing the same (hot) rows waits for the
/// whole group. So at each source-transaction boundary of a group open for
/// [`PipelineTuning::contention_check_after`] (at most once per that
/// interval) the applier writes what it has gathered and asks the target
/// whether a session waits for one of its locks, and commits as soon as one
/// does. For [`PipelineTuning::contended_for`] after that (extended while
/// sessions keep waiting) every source transaction commits on its own: one
/// source transaction is never split, so that is the least the applier can
/// hold. A group of one transaction also locks rows in that transaction's own
/// order, which the application's transactions on the same rows followed on
/// the source: no deadlock between them.
struct Contention {
    check_after: Duration,
    hold: Duration,
    /// Until when every source transaction commits on its own.
    busy_until: Option<std::time::Instant>,
    last_probe: Option<std::time::Instant>,
}

impl Contention {
    fn new(tuning: &PipelineTuning) -> Contention {
        Contention {
            check_after: tuning.contention_check_after,
            hold: tuning.contended_for,
            busy_until: None,
            last_probe: None,
        }
    }

    /// At a source-transaction boundary: commit the open group now?
    async fn commit_now<T: Target>(&mut self, sink: &mut Applier<T>) -> Result<bool, SinkError> {
        let Some(age) = sink.group_age() else {
            return Ok(false);
        };
        let now = std::time::Instant::now();
        let busy = self.busy_until.is_some_and(|t| now < t);
        // Probed while busy too (less often), so that busy mode lasts as long
        // as sessions keep waiting.
        let interval = if busy {
            self.hold / 8
        } else {
            self.check_after
        };
        let due = (busy || age >= self.check_after)
            && self
                .last_probe
                .is_none_or(|t| now.duration_since(t) >= interval);
        if due {
            self.last_probe = Some(now);
            // Only the rows already written are locked; the pending ones are
            // written (and locked) with the next round, and a session that
            // then waits for one shows at the next probe. Writing them here
            // would cut the group into a round per probe.
            if sink.sessions_waiting().await? {
                if !busy {
                    tracing::debug!(hold_ms = self.hold.as_millis() as u64, "application sessions wait for the applier's row locks: committing each source transaction on its own");
                }
                self.busy_until = Some(now + self.hold);
                return Ok(true);
            }
        }
        Ok(busy)
    }
}

/// The first wait before a failed direction starts again.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The longest wait between a failing direction's attempts.
const LONGEST_RETRY: Duration = Duration::from_secs(30);
/// A direction that ran this long without an error starts its retries from
/// [`FIRST_RETRY`] again: a server restarted an hour after the last one is
/// reconnected to within a second, not after the long waits of the first.
/// (Longer than `stats::HEALTHY_AFTER`, after which the status stops
/// showing the error: a backoff forgets only after a healthy minute.)
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);
/// How often a direction waiting for an operator looks again by itself: the
/// fix is often made on the site (a setting, a privilege, a table), which
/// nothing else reports. A change of the link's configuration restarts it at
/// once.
const OPERATOR_RECHECK: Duration = Duration::from_secs(60);

/// The waits between a failing direction's attempts: doubling from
/// [`FIRST_RETRY`] up to [`LONGEST_RETRY`], from the first again after a
/// healthy run.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: FIRST_RETRY }
    }

    /// The wait after an attempt that ran for `ran_for`.
    fn after(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= BACKOFF_RESET_AFTER {
            self.next = FIRST_RETRY;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(LONGEST_RETRY);
        wait
    }

    /// Start from the first wait again (an operator's fix was taken).
    fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

/// Run one direction forever, restarting after errors, until `shutdown`
/// turns true. A transient error (a connection cut, a server restarting) is
/// retried with a [`Backoff`]; one that needs a person (a lost slot, a purged
/// binlog, wrong settings or credentials: `crate::error_class`) leaves the
/// direction in state `needs_operator` with what to do, looked at again
/// every [`OPERATOR_RECHECK`].
pub async fn supervise_direction(
    spec: DirectionSpec,
    stats: Arc<DirectionStats>,
    shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    // The operator error last reported, so that it is logged once, not at
    // every look.
    let mut waiting_for: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = std::time::Instant::now();
        let wait = match run_direction(spec.clone(), stats.clone(), shutdown.clone()).await {
            Ok(()) if *shutdown.borrow() => return,
            Ok(()) => {
                // A stream that keeps ending must not spin: the backoff grows.
                let wait = backoff.after(started.elapsed());
                tracing::warn!(direction = %spec.name, retry_in_ms = wait.as_millis() as u64, "replication stream ended; reconnecting");
                waiting_for = None;
                wait
            }
            Err(e) => {
                let msg = crate::error_chain::error_chain(&e);
                match e.class() {
                    ErrorClass::Transient => {
                        stats
                            .errors_transient
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let wait = backoff.after(started.elapsed());
                        tracing::error!(direction = %spec.name, error = %msg, retry_in_ms = wait.as_millis() as u64, "direction failed");
                        stats.set_error(Some(msg));
                        stats.set_state("retrying");
                        waiting_for = None;
                        wait
                    }
                    ErrorClass::Operator { fix } => {
                        stats
                            .errors_operator
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let text = match fix {
                            Some(fix) => {
                                let slot = match &spec.source {
                                    crate::source::SourceSpec::Pg(pg) => Some(pg.slot.as_str()),
                                    crate::source::SourceSpec::Mysql(_) => None,
                                };
                                let fix = crate::error_class::fix_for(&fix, &spec.link_name, slot);
                                format!("{msg}. Fix: {fix}")
                            }
                            None => msg,
                        };
                        if waiting_for.as_deref() != Some(text.as_str()) {
                            tracing::error!(direction = %spec.name, error = %text, look_again_in_s = OPERATOR_RECHECK.as_secs(), "direction needs an operator");
                        } else {
                            tracing::debug!(direction = %spec.name, "direction still needs an operator");
                        }
                        stats.set_error(Some(text.clone()));
                        stats.set_state("needs_operator");
                        waiting_for = Some(text);
                        // Once fixed, a later transient error starts from
                        // the first wait.
                        backoff.reset();
                        OPERATOR_RECHECK
                    }
                }
            }
        };
        let mut sd = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sd.changed() => {}
        }
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_longest_and_start_again_after_a_healthy_run() {
        let mut b = Backoff::new();
        let quick = Duration::from_millis(10);
        let waits: Vec<Duration> = (0..10).map(|_| b.after(quick)).collect();
        assert_eq!(waits[0], FIRST_RETRY);
        assert_eq!(waits[1], FIRST_RETRY * 2);
        assert_eq!(*waits.last().unwrap(), LONGEST_RETRY);
        // An hour of health: the next failure is retried at once again.
        assert_eq!(b.after(Duration::from_secs(3600)), FIRST_RETRY);
        assert_eq!(b.after(quick), FIRST_RETRY * 2);
        // A run shorter than healthy keeps the backoff growing.
        assert_eq!(b.after(BACKOFF_RESET_AFTER / 2), FIRST_RETRY * 4);
        b.reset();
        assert_eq!(b.after(quick), FIRST_RETRY);
    }
}
