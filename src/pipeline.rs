//! One direction of a link: source site -> canonical events -> target site.
//!
//! Two tasks joined by a bounded channel. The reader decodes the source's
//! stream; the applier applies it. The applier groups consecutive small source
//! transactions into one target transaction while more are already waiting, and
//! commits as soon as the channel runs dry, so latency stays low under light
//! load and throughput high under heavy load. After each commit the applied
//! position is handed back to the reader, which confirms it to the source: the
//! slot never advances past what the peer has committed (exactly once).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::canonical::{ChangeEvent, SourcePosition};
use crate::sink::mysql::MysqlTarget;
use crate::sink::pg::PgTarget;
use crate::sink::{Applier, SinkError, SinkSpec, Target, TargetSpec};
use crate::source::{ConfirmedPosition, Source, SourceSpec};
use crate::stats::DirectionStats;

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
        // The one place the target's engine is chosen: the rest of the
        // direction is the same code for every engine.
        match spec.sink.target.clone() {
            TargetSpec::Pg(t) => {
                let target = PgTarget::connect(t, batch_rows, stats.clone())
                    .await
                    .map_err(at_sink)?;
                let sink = Applier::new(spec.sink.applier.clone(), target, stats.clone());
                stream(spec, sink, stats, shutdown).await
            }
            TargetSpec::Mysql(t) => {
                let target = MysqlTarget::connect(t, batch_rows, stats.clone())
                    .await
                    .map_err(at_sink)?;
                let sink = Applier::new(spec.sink.applier.clone(), target, stats.clone());
                stream(spec, sink, stats, shutdown).await
            }
        }
    }
    .instrument(span)
    .await
}

/// Run one direction on a connected applier: the initial sync's copies,
/// then the stream.
async fn stream<T: Target>(
    spec: DirectionSpec,
    mut sink: Applier<T>,
    stats: Arc<DirectionStats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), crate::Error> {
    let site = sink.site_name().to_string();
    let at_sink = |e: SinkError| crate::Error::sink_error(&site, e);
    {
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
        if *shutdown.borrow() {
            stats.set_state("stopped");
            return Ok(());
        }
        let mut source_spec = spec.source.clone();
        source_spec.set_start(resume.or(snapshot_start));
        if let Some(p) = resume {
            stats.set_applied_position(p);
        }
        tracing::info!(resume = %resume.map(|p| p.to_string()).unwrap_or_else(|| "the source's own position".into()), "starting");
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

        let confirm = |p: Option<SourcePosition>| {
            if let Some(p) = p {
                confirmed.advance(p);
                // Includes positions with nothing to apply (echoes, idle
                // stream): the target is caught up to there.
                stats.set_applied_position(p);
            }
        };

        let mut reader_closed = false;
        // Conflicts a DBA settles and quarantined changes a DBA retries are
        // picked up at this pace, between source transactions.
        let mut resolutions = tokio::time::interval(std::time::Duration::from_secs(1));
        resolutions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Expired tombstones are removed while idle, at a pace that follows
        // the retention (a short retention is for tests and small meshes).
        let mut tombstone_gc = tokio::time::interval(
            (spec.tombstone_retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        );
        let mut contention = Contention::new(&spec.tuning);
        tombstone_gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result: Result<(), crate::Error> = async {
            let mut stopping = false;
            loop {
                if stopping || *shutdown.borrow() {
                    // Commit whole source transactions already applied; a partly
                    // applied one is rolled back with the connection and re-read
                    // from the origin progress on the next start.
                    if sink.has_uncommitted() {
                        confirm(sink.commit().await.map_err(at_sink)?);
                    }
                    break;
                }
                let next = if sink.has_uncommitted() {
                    match rx.try_recv() {
                        Ok(ev) => Some(ev),
                        Err(mpsc::error::TryRecvError::Empty) => {
                            // Nothing waiting: commit what we have before blocking.
                            confirm(sink.commit().await.map_err(at_sink)?);
                            continue;
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                    }
                } else {
                    tokio::select! {
                        ev = rx.recv() => ev,
                        _ = shutdown.changed() => {
                            stopping = true;
                            continue;
                        }
                        _ = resolutions.tick() => {
                            sink.apply_resolutions().await.map_err(at_sink)?;
                            sink.apply_quarantine_retries(&mut mapping).await.map_err(at_sink)?;
                            sink.resume_stopped(&mut mapping).await.map_err(at_sink)?;
                            continue;
                        }
                        _ = tombstone_gc.tick() => {
                            let removed = sink.purge_tombstones(spec.tombstone_retention).await.map_err(at_sink)?;
                            if removed > 0 {
                                tracing::debug!(removed, "expired tombstones removed");
                            }
                            continue;
                        }
                    }
                };
                let Some(ev) = next else {
                    if sink.has_uncommitted() {
                        confirm(sink.commit().await.map_err(at_sink)?);
                    }
                    reader_closed = true;
                    break;
                };
                stats.queued_events.store(rx.len() as u64, std::sync::atomic::Ordering::Relaxed);
                let ev = match ev? {
                    ChangeEvent::Change(change) => {
                        // `None`: a table that flows the other way only.
                        if let Some((change, source)) = mapping.map_keeping_source(change) {
                            sink.apply_change(change, crate::canonical::SourceForm::from_mapping(source)).await.map_err(at_sink)?;
                        }
                        continue;
                    }
                    ChangeEvent::Truncate(tables) => {
                        ChangeEvent::Truncate(tables.into_iter().filter(|t| !mapping.skips(&t.table.name)).collect())
                    }
                    ChangeEvent::Unreplicable(mut u) => {
                        // A table that flows the other way only is not stopped here.
                        u.tables.retain(|t| !mapping.skips(&t.name));
                        if u.tables.is_empty() {
                            continue;
                        }
                        ChangeEvent::Unreplicable(u)
                    }
                    other => other,
                };
                let is_commit = matches!(ev, ChangeEvent::Commit { .. });
                confirm(sink.apply(ev).await.map_err(at_sink)?);
                if is_commit
                    && (sink.group_txns() >= spec.tuning.max_group_txns
                        || sink.group_rows() >= spec.tuning.max_group_rows
                        || contention.commit_now(&mut sink).await.map_err(at_sink)?)
                {
                    confirm(sink.commit().await.map_err(at_sink)?);
                }
            }
            Ok(())
        }
        .await;
        // The reader ended on its own: a panic there must surface as an error,
        // not look like a stream that ended and is quietly reconnected.
        let result = match (result, reader_closed) {
            (Ok(()), true) => match reader.await {
                Err(e) if e.is_panic() => Err(crate::Error::Internal(format!(
                    "the reader task panicked: {e}"
                ))),
                _ => Ok(()),
            },
            (other, _) => {
                reader.abort();
                other
            }
        };
        stats.set_state(if result.is_ok() { "stopped" } else { "error" });
        result
    }
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
