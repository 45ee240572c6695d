//! Retention guardrails: how long each source keeps what its direction has
//! not applied, read every few seconds whatever the direction is doing. A
//! direction that cannot apply (its target down, an error waiting for an
//! operator) is exactly when that matters:
//! - a PostgreSQL slot keeps more and more WAL, and past the source's
//!   `max_slot_wal_keep_size` PostgreSQL invalidates it;
//! - a MySQL/MariaDB server purges its oldest binlogs (by age, or a DBA's
//!   `PURGE BINARY LOGS`), whether duplex has read them or not.
//!
//! Either way the changes are gone. The figures, and a warning in time, go
//! to the direction's status (`link_overview`: `retained_bytes`,
//! `wal_status`, `safe_wal_bytes`, `oldest_binlog`, `binlog_headroom_files`,
//! `retention_warning`) and the metrics.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::canonical::SourcePosition;
use crate::error_chain::error_chain;
use crate::mysql::MysqlEndpoint;
use crate::pg::PgEndpoint;
use crate::stats::{DirectionStats, SourceRetention};

/// How often the source is read.
const EVERY: Duration = Duration::from_secs(5);

/// The source a watcher reads.
pub(super) enum Source {
    /// A PostgreSQL source and the direction's slot on it (boxed: the
    /// endpoint is large).
    Slot {
        endpoint: Box<PgEndpoint>,
        slot: String,
    },
    /// A MySQL/MariaDB source's binlogs.
    Binlog { endpoint: MysqlEndpoint },
}

/// What one watcher watches.
pub(super) struct Watched {
    pub source: Source,
    /// The source site's name.
    pub site: String,
    /// The direction's target: the site whose applying frees the source.
    pub peer: String,
    /// `links.retention_warn_bytes`.
    pub warn_bytes: u64,
}

/// Read the source every [`EVERY`] into `stats` until `stop` turns true.
/// Never fails: a source it cannot reach is the direction's error to show.
pub(super) async fn watch_retention(
    w: Watched,
    stats: Arc<DirectionStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pg = None;
    let mut my: Option<mysql_async::Conn> = None;
    let mut warned = false;
    loop {
        if *stop.borrow() {
            // Not read any more: no figures rather than old ones.
            stats.set_retention(None);
            return;
        }
        let read = match &w.source {
            Source::Slot { endpoint, slot } => read_slot(&w, endpoint, slot, &mut pg).await,
            Source::Binlog { endpoint } => read_binlogs(&w, endpoint, &stats, &mut my).await,
        };
        if let Some(retention) = read {
            match (retention.warning.as_deref(), warned) {
                (Some(text), false) => tracing::warn!(site = %w.site, "{text}"),
                (None, true) => {
                    tracing::info!(site = %w.site, "what the direction has not applied is kept again without risk")
                }
                _ => {}
            }
            warned = retention.warning.is_some();
            stats.set_retention(Some(retention));
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The slot's figures; `None` when the source cannot be read now.
async fn read_slot(
    w: &Watched,
    endpoint: &PgEndpoint,
    slot: &str,
    client: &mut Option<tokio_postgres::Client>,
) -> Option<SourceRetention> {
    if client.is_none() {
        match endpoint.connect("duplex retention watch").await {
            Ok(c) => *client = Some(c),
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "retention watch: cannot reach the source");
                return None;
            }
        }
    }
    let row = client
        .as_ref()?
        .query_opt(
            "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint, wal_status, safe_wal_size
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await;
    match row {
        Ok(Some(r)) => {
            let (retained, status, safe): (Option<i64>, Option<String>, Option<i64>) =
                (r.get(0), r.get(1), r.get(2));
            Some(SourceRetention {
                warning: slot_warning(w, slot, retained, status.as_deref(), safe),
                retained_bytes: retained,
                wal_status: status,
                safe_bytes: safe,
                checked_us: crate::marker::now_micros(),
                ..SourceRetention::default()
            })
        }
        // No slot (yet, or dropped): the direction says why.
        Ok(None) => Some(SourceRetention {
            checked_us: crate::marker::now_micros(),
            ..SourceRetention::default()
        }),
        Err(e) => {
            tracing::debug!(error = %e, "retention watch: cannot read the slot");
            *client = None;
            None
        }
    }
}

/// The binlogs' figures against the direction's applied position; `None`
/// when the source cannot be read now.
async fn read_binlogs(
    w: &Watched,
    endpoint: &MysqlEndpoint,
    stats: &DirectionStats,
    conn: &mut Option<mysql_async::Conn>,
) -> Option<SourceRetention> {
    use mysql_async::prelude::Queryable;
    if conn.is_none() {
        match endpoint.connect().await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "retention watch: cannot reach the source");
                return None;
            }
        }
    }
    let c = conn.as_mut()?;
    let logs: Result<Vec<mysql_async::Row>, _> = c.query("SHOW BINARY LOGS").await;
    let expire: Option<u64> = c
        .query_first("SELECT @@binlog_expire_logs_seconds")
        .await
        .ok()
        .flatten();
    let logs = match logs {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|r| {
                let name: String = r.get(0)?;
                let size: u64 = r.get(1)?;
                let seq = name.rsplit('.').next()?.parse::<u32>().ok()?;
                Some(Binlog { name, seq, size })
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            // Without REPLICATION CLIENT (BINLOG MONITOR on MariaDB) there is
            // nothing to show; the grants in sql/roles give it.
            tracing::debug!(error = %e, "retention watch: cannot list the binlogs");
            *conn = None;
            return None;
        }
    };
    let applied = match stats.applied_position() {
        Some(SourcePosition::Binlog { file_seq, pos }) => Some((file_seq, u64::from(pos))),
        _ => None,
    };
    let failing = matches!(stats.state().as_str(), "retrying" | "needs_operator");
    Some(binlog_retention(w, &logs, applied, failing, expire))
}

/// One binlog file the server has.
#[derive(Debug, Clone)]
struct Binlog {
    name: String,
    seq: u32,
    size: u64,
}

/// The retention figures and warning for `logs` (oldest first) against the
/// applied position (`file_seq`, `pos`); `failing`: the direction does not
/// apply now.
fn binlog_retention(
    w: &Watched,
    logs: &[Binlog],
    applied: Option<(u32, u64)>,
    failing: bool,
    expire_seconds: Option<u64>,
) -> SourceRetention {
    let (site, peer) = (&w.site, &w.peer);
    let oldest = logs.first();
    let mut r = SourceRetention {
        oldest_binlog: oldest.map(|b| b.name.clone()),
        checked_us: crate::marker::now_micros(),
        ..SourceRetention::default()
    };
    let (Some((seq, pos)), Some(oldest)) = (applied, oldest) else {
        return r;
    };
    let retained: u64 = logs
        .iter()
        .filter(|b| b.seq >= seq)
        .map(|b| b.size)
        .sum::<u64>()
        .saturating_sub(pos);
    r.retained_bytes = i64::try_from(retained).ok();
    r.headroom_files = Some(logs.iter().filter(|b| b.seq < seq).count() as i64);
    let expiry = match expire_seconds {
        Some(s) if s > 0 => format!("binlog_expire_logs_seconds = {s}"),
        _ => "by a DBA's PURGE BINARY LOGS".to_string(),
    };
    r.warning = if seq < oldest.seq {
        Some(format!(
            "the binlog holding the direction's applied position (file number {seq}) is gone from {site}: the changes in it were purged before {peer} applied them (the direction says what to do)"
        ))
    } else if seq == oldest.seq && failing && logs.len() > 1 {
        Some(format!(
            "{} is the oldest binlog {site} keeps, and it holds changes {peer} has not applied: the next purge ({expiry}) removes it and they are lost. Get the direction applying on {peer}, or keep binlogs longer on {site}",
            oldest.name
        ))
    } else if retained >= w.warn_bytes {
        Some(format!(
            "{site} keeps {} of binlog that {peer} has not applied; it is lost if purged ({expiry}) before {peer} applies it",
            human_bytes(i64::try_from(retained).unwrap_or(i64::MAX))
        ))
    } else {
        None
    };
    r
}

/// The warning for a slot in these figures, if it is at risk.
fn slot_warning(
    w: &Watched,
    slot: &str,
    retained: Option<i64>,
    wal_status: Option<&str>,
    safe: Option<i64>,
) -> Option<String> {
    let (site, peer) = (&w.site, &w.peer);
    let kept = retained.map(human_bytes).unwrap_or_else(|| "?".into());
    let warn = i64::try_from(w.warn_bytes).unwrap_or(i64::MAX);
    // Within the link's threshold of the limit, or past half of it where the
    // limit is small (a slot under a 1 GiB limit would warn for ever).
    let near = |safe: i64| safe < warn.min((safe + retained.unwrap_or(0)) / 2);
    match (wal_status, safe) {
        (Some("lost"), _) => Some(format!(
            "slot {slot} on {site} was invalidated: the changes it held are gone (the direction's error says what to do)"
        )),
        (Some("unreserved"), _) => Some(format!(
            "slot {slot} on {site} keeps {kept} of WAL, more than max_slot_wal_keep_size allows: the next checkpoint invalidates it and the changes it holds are lost. \
             Get the direction applying on {peer} now, or raise max_slot_wal_keep_size on {site}"
        )),
        (_, Some(safe)) if near(safe) => Some(format!(
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

    fn watched(warn_bytes: u64) -> Watched {
        Watched {
            source: Source::Slot {
                endpoint: Box::new(PgEndpoint::from_url("a", "host=127.0.0.1 dbname=app").unwrap()),
                slot: "duplex_l1_s1".into(),
            },
            site: "a".into(),
            peer: "b".into(),
            warn_bytes,
        }
    }

    #[test]
    fn a_slot_is_at_risk_near_its_limit_or_unbounded_and_large() {
        let w = watched(64 << 20);
        let slot = "duplex_l1_s1";
        // Far from the limit.
        assert_eq!(
            slot_warning(&w, slot, Some(1 << 20), Some("reserved"), Some(1 << 30)),
            None
        );
        // A small limit: only past half of it.
        assert_eq!(
            slot_warning(&w, slot, Some(1 << 20), Some("reserved"), Some(15 << 20)),
            None
        );
        assert!(slot_warning(&w, slot, Some(9 << 20), Some("reserved"), Some(7 << 20)).is_some());
        // Within the threshold of being invalidated.
        let near =
            slot_warning(&w, slot, Some(900 << 20), Some("extended"), Some(10 << 20)).unwrap();
        assert!(
            near.contains("10.0 MiB more") && near.contains("900.0 MiB"),
            "{near}"
        );
        // Past the limit: the next checkpoint invalidates it.
        let past = slot_warning(&w, slot, Some(2 << 30), Some("unreserved"), Some(0)).unwrap();
        assert!(past.contains("next checkpoint"), "{past}");
        assert!(slot_warning(&w, slot, None, Some("lost"), None)
            .unwrap()
            .contains("invalidated"));
        // Unbounded: only its size warns.
        assert_eq!(
            slot_warning(&w, slot, Some(1 << 20), Some("reserved"), None),
            None
        );
        let big = slot_warning(&w, slot, Some(5 << 30), Some("reserved"), None).unwrap();
        assert!(
            big.contains("nothing bounds it") && big.contains("5.0 GiB"),
            "{big}"
        );
    }

    #[test]
    fn binlogs_are_at_risk_when_the_oldest_holds_what_is_not_applied() {
        let w = watched(64 << 20);
        let logs: Vec<Binlog> = (3..=5)
            .map(|seq| Binlog {
                name: format!("mysql-bin.{seq:06}"),
                seq,
                size: 1000,
            })
            .collect();
        // Applied in the newest file: two older files, nothing at risk.
        let r = binlog_retention(&w, &logs, Some((5, 400)), false, Some(86400));
        assert_eq!(
            (r.headroom_files, r.retained_bytes, r.warning.as_deref()),
            (Some(2), Some(600), None)
        );
        assert_eq!(r.oldest_binlog.as_deref(), Some("mysql-bin.000003"));
        // The direction fails with its position in the oldest file.
        let r = binlog_retention(&w, &logs, Some((3, 100)), true, Some(86400));
        let warning = r.warning.unwrap();
        assert_eq!((r.headroom_files, r.retained_bytes), (Some(0), Some(2900)));
        assert!(
            warning.contains("mysql-bin.000003 is the oldest binlog")
                && warning.contains("binlog_expire_logs_seconds = 86400"),
            "{warning}"
        );
        // A server with one binlog, the one being written: nothing to purge.
        assert_eq!(
            binlog_retention(&w, &logs[..1], Some((3, 100)), true, None).warning,
            None
        );
        // Applying from the oldest file while it works: no alarm yet.
        assert_eq!(
            binlog_retention(&w, &logs, Some((3, 100)), false, None).warning,
            None
        );
        // Purged already.
        let gone = binlog_retention(&w, &logs, Some((2, 100)), true, None)
            .warning
            .unwrap();
        assert!(gone.contains("is gone from a"), "{gone}");
        // A lot kept unapplied.
        let big = watched(1000);
        assert!(binlog_retention(&big, &logs, Some((4, 0)), false, None)
            .warning
            .unwrap()
            .contains("keeps 2.0 KiB of binlog"));
    }

    #[test]
    fn bytes_for_a_person() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }
}
