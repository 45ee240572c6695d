//! The status writer: every direction's counters to `duplex.link_status`
//! once a second.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::registry::Registry;
use crate::control::{self, ControlEndpoint, DirectionStatus};
use crate::error_chain::error_chain;
use crate::stats::DirectionStats;

/// Writes every direction's counters to `duplex.link_status` once a second and
/// once more at shutdown. Losing the control connection never stops replication.
pub(super) async fn status_writer(
    control: ControlEndpoint,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client = None;
    loop {
        let stopping = *shutdown.borrow();
        if client.is_none() {
            match control.connect("duplex status").await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot reach the control database to write status")
                }
            }
        }
        if let Some(c) = client.as_mut() {
            for d in registry.list() {
                let s = &d.stats;
                let (lag_seconds, lag_bytes) = s.lag(crate::marker::now_micros());
                let status = DirectionStatus {
                    link_id: d.link_id as i32,
                    source_site: d.source_site as i32,
                    target_site: d.target_site as i32,
                    state: s.state(),
                    source_position: s.source_position().map(|p| p.to_string()),
                    applied_position: s.applied_position().map(|p| p.to_string()),
                    applied_txns: DirectionStats::get(&s.applied_txns) as i64,
                    applied_rows: DirectionStats::get(&s.applied_rows) as i64,
                    echo_txns_skipped: DirectionStats::get(&s.echo_txns_skipped) as i64,
                    quarantined: DirectionStats::get(&s.quarantined) as i64,
                    conflicts: DirectionStats::get(&s.conflicts) as i64,
                    last_error: s.take_error(),
                    error_since_us: s.error_since(),
                    lag_seconds,
                    lag_bytes,
                    queued_events: DirectionStats::get(&s.queued_events) as i64,
                    by_op: [
                        DirectionStats::get(&s.inserted) as i64,
                        DirectionStats::get(&s.updated) as i64,
                        DirectionStats::get(&s.deleted) as i64,
                    ],
                    applied_commit_us: s
                        .applied_commit_us
                        .load(std::sync::atomic::Ordering::Relaxed),
                    tables: s
                        .table_counts()
                        .into_iter()
                        .map(|(t, c)| (t, c.map(|n| n as i64)))
                        .collect(),
                    retention: s.retention(),
                };
                if let Err(e) = control::write_status(c, &status).await {
                    tracing::warn!(error = %error_chain(&e), "cannot write duplex.link_status");
                    client = None;
                    break;
                }
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
