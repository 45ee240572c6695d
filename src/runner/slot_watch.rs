//! Slot guardrails: the slot of every PostgreSQL source is read every few
//! seconds, whatever its direction is doing. A direction that cannot apply
//! (its target down, an error waiting for an operator) is exactly when its
//! source's slot keeps more and more WAL, and past the source's
//! `max_slot_wal_keep_size` PostgreSQL invalidates the slot: the changes it
//! held are gone. The figures and a warning in time go to the direction's
//! status (`link_overview`: `retained_wal_bytes`, `wal_status`,
//! `safe_wal_bytes`, `slot_warning`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::error_chain::error_chain;
use crate::pg::PgEndpoint;
use crate::stats::{DirectionStats, SlotHealth};

/// How often a slot is read.
const EVERY: Duration = Duration::from_secs(5);

/// What one watcher watches.
pub(super) struct WatchedSlot {
    pub endpoint: PgEndpoint,
    pub slot: String,
    /// The direction's target: the site whose applying frees the WAL.
    pub peer: String,
    /// `links.slot_warn_bytes`.
    pub warn_bytes: u64,
}

/// Read the slot every [`EVERY`] into `stats` until `stop` turns true.
/// Never fails: a source it cannot reach is the direction's error to show.
pub(super) async fn watch_slot(
    w: WatchedSlot,
    stats: Arc<DirectionStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut client = None;
    let mut warned = false;
    loop {
        if *stop.borrow() {
            return;
        }
        if client.is_none() {
            match w.endpoint.connect("duplex slot watch").await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::debug!(error = %error_chain(&e), "slot watch: cannot reach the source")
                }
            }
        }
        if let Some(c) = client.as_ref() {
            match c
                .query_opt(
                    "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint, wal_status, safe_wal_size
                       FROM pg_replication_slots WHERE slot_name = $1",
                    &[&w.slot],
                )
                .await
            {
                Ok(row) => {
                    let health = row.map(|r| {
                        let (retained, status, safe): (Option<i64>, Option<String>, Option<i64>) =
                            (r.get(0), r.get(1), r.get(2));
                        let warning = slot_warning(&w, retained, status.as_deref(), safe);
                        SlotHealth {
                            retained_bytes: retained,
                            wal_status: status,
                            safe_bytes: safe,
                            warning,
                            checked_us: crate::marker::now_micros(),
                        }
                    });
                    let warning = health.as_ref().and_then(|h| h.warning.as_deref());
                    match (warning, warned) {
                        (Some(text), false) => tracing::warn!(slot = %w.slot, "{text}"),
                        (None, true) => tracing::info!(slot = %w.slot, "the slot is out of danger"),
                        _ => {}
                    }
                    warned = warning.is_some();
                    stats.set_slot(health);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "slot watch: cannot read the slot");
                    client = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The warning for a slot in these figures, if it is at risk.
fn slot_warning(
    w: &WatchedSlot,
    retained: Option<i64>,
    wal_status: Option<&str>,
    safe: Option<i64>,
) -> Option<String> {
    let (slot, site, peer) = (&w.slot, &w.endpoint.site_name, &w.peer);
    let kept = retained.map(human_bytes).unwrap_or_else(|| "?".into());
    let warn = i64::try_from(w.warn_bytes).unwrap_or(i64::MAX);
    match (wal_status, safe) {
        (Some("lost"), _) => Some(format!(
            "slot {slot} on {site} was invalidated: the changes it held are gone (the direction's error says what to do)"
        )),
        (Some("unreserved"), _) => Some(format!(
            "slot {slot} on {site} keeps {kept} of WAL, more than max_slot_wal_keep_size allows: the next checkpoint invalidates it and the changes it holds are lost. \
             Get the direction applying on {peer} now, or raise max_slot_wal_keep_size on {site}"
        )),
        (_, Some(safe)) if safe < warn => Some(format!(
            "slot {slot} on {site} keeps {kept} of WAL; after {} more, PostgreSQL invalidates it (max_slot_wal_keep_size) and the changes it holds are lost. \
             Get the direction applying on {peer}, or raise max_slot_wal_keep_size on {site}",
            human_bytes(safe.max(0))
        )),
        (_, None) if retained.is_some_and(|r| r > warn) => Some(format!(
            "slot {slot} on {site} keeps {kept} of WAL and nothing bounds it (max_slot_wal_keep_size = -1): {site}'s disk fills until the direction applies on {peer} again"
        )),
        _ => None,
    }
}

/// `n` bytes for a person: 1.5 GiB, 64.0 MiB, 512 B.
fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(warn_bytes: u64) -> WatchedSlot {
        WatchedSlot {
            endpoint: PgEndpoint::from_url("a", "host=127.0.0.1 dbname=app").unwrap(),
            slot: "duplex_l1_s1".into(),
            peer: "b".into(),
            warn_bytes,
        }
    }

    #[test]
    fn a_slot_is_at_risk_near_its_limit_or_unbounded_and_large() {
        let w = watched(64 << 20);
        // Far from the limit.
        assert_eq!(
            slot_warning(&w, Some(1 << 20), Some("reserved"), Some(1 << 30)),
            None
        );
        // Within the threshold of being invalidated.
        let near = slot_warning(&w, Some(900 << 20), Some("extended"), Some(10 << 20)).unwrap();
        assert!(
            near.contains("10.0 MiB more") && near.contains("900.0 MiB"),
            "{near}"
        );
        // Past the limit: the next checkpoint invalidates it.
        let past = slot_warning(&w, Some(2 << 30), Some("unreserved"), Some(0)).unwrap();
        assert!(past.contains("next checkpoint"), "{past}");
        assert!(slot_warning(&w, None, Some("lost"), None)
            .unwrap()
            .contains("invalidated"));
        // Unbounded: only its size warns.
        assert_eq!(
            slot_warning(&w, Some(1 << 20), Some("reserved"), None),
            None
        );
        let big = slot_warning(&w, Some(5 << 30), Some("reserved"), None).unwrap();
        assert!(
            big.contains("nothing bounds it") && big.contains("5.0 GiB"),
            "{big}"
        );
    }

    #[test]
    fn bytes_for_a_person() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }
}
