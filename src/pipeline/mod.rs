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
    pub name: String,
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
        stats.set_state("connecting");
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

/// Run one direction forever, restarting after errors with capped backoff,
/// until `shutdown` turns true.
pub async fn supervise_direction(
    spec: DirectionSpec,
    stats: Arc<DirectionStats>,
    shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match run_direction(spec.clone(), stats.clone(), shutdown.clone()).await {
            Ok(()) if *shutdown.borrow() => return,
            Ok(()) => {
                // Backoff keeps growing: a stream that keeps ending must not spin.
                tracing::warn!(direction = %spec.name, retry_in_ms = backoff.as_millis() as u64, "replication stream ended; reconnecting");
            }
            Err(e) => {
                let msg = crate::error_chain::error_chain(&e);
                tracing::error!(direction = %spec.name, error = %msg, retry_in_ms = backoff.as_millis() as u64, "direction failed");
                stats.set_error(Some(msg));
                stats.set_state("retrying");
            }
        }
        let mut sd = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = sd.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
