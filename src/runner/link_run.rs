//! One enabled link's two directions: started from its resolved
//! configuration, and stopped together.

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::plan::Resolved;
use super::prepare::prepare_link;
use super::registry::Registry;
use super::retention_watch::{watch_retention, Source, Watched};
use crate::control::ControlEndpoint;
use crate::pipeline::{supervise_direction, PipelineTuning};

/// One enabled link's directions, running.
pub(super) struct LinkRun {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl LinkRun {
    /// What stops the link's directions at once, without waiting for them
    /// (`lease`: a lost lease stops the link before the watcher gets to it).
    pub(super) fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Stop both directions, committing whole transactions already applied.
    pub(super) async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Prepare both sites of a link and start its two directions.
pub(super) async fn start_link(
    resolved: &Resolved,
    tuning: &PipelineTuning,
    control: &ControlEndpoint,
    registry: &Registry,
    lease_term: Option<i64>,
) -> Result<LinkRun, crate::Error> {
    let lc = &resolved.effective;
    let mut specs = prepare_link(resolved, tuning, control).await?;
    // `--ha`: a MySQL target fences by the lease's term (a PostgreSQL one
    // by its replication origin, which one session at a time may hold).
    // Both end the sessions a paused or cut-off earlier holder still has
    // open on a PostgreSQL site (the server keeps them until TCP gives up).
    for spec in &mut specs {
        match &mut spec.sink.target {
            crate::sink::TargetSpec::Mysql(t) => t.lease_term = lease_term,
            crate::sink::TargetSpec::Pg(t) => t.take_over = lease_term.is_some(),
        }
        if let crate::source::SourceSpec::Pg(s) = &mut spec.source {
            s.take_over = lease_term.is_some();
        }
    }
    let sources: Vec<u32> = specs.iter().map(|s| s.source.site_id()).collect();
    registry.keep_only(lc.link.link_id, &sources);
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for spec in specs {
        let target = if spec.source.site_id() == lc.link.site_a {
            lc.link.site_b
        } else {
            lc.link.site_a
        };
        let stats = registry.stats_for(lc.link.link_id, &spec, target);
        stats.set_state("starting");
        let source = match &spec.source {
            crate::source::SourceSpec::Pg(pg) => Source::Slot {
                endpoint: Box::new(pg.endpoint.clone()),
                slot: pg.slot.clone(),
            },
            crate::source::SourceSpec::Mysql(my) => Source::Binlog {
                endpoint: my.endpoint.clone(),
            },
        };
        let watched = Watched {
            source,
            site: spec.source_name.clone(),
            peer: spec.target_name.clone(),
            warn_bytes: lc.link.retention_warn_bytes,
        };
        tasks.spawn(watch_retention(watched, stats.clone(), stop_rx.clone()));
        tasks.spawn(supervise_direction(spec, stats, stop_rx.clone()));
    }
    Ok(LinkRun { stop, tasks })
}
