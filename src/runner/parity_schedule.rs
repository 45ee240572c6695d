//! The parity scheduler: runs the checks `link_tables.check_interval` asks
//! for and records them in `duplex.parity_checks`.

use tokio::sync::watch;
use tracing::Instrument;

use std::sync::Arc;

use super::live_config::CONFIG_POLL;
use super::registry::{ParityResult, Registry};
use crate::control::{self, ControlDb, ControlEndpoint, Sql, P};
use crate::error_chain::error_chain;

/// Runs the scheduled parity checks (`link_tables.check_interval`): every
/// few seconds, each enabled table whose last check is older than its
/// interval is compared (one at a time, as `duplex check` does) and the result
/// recorded in `duplex.parity_checks`. A failed check is logged, never fatal.
/// With `--ha`, only the links this process holds (`held_by_others` says
/// which it does not).
pub(super) async fn parity_scheduler(
    control: ControlEndpoint,
    registry: Arc<Registry>,
    held_by_others: Arc<dyn Fn(u32) -> bool + Send + Sync>,
    mut shutdown: watch::Receiver<bool>,
) {
    let options = crate::parity::CheckOptions {
        progress: false,
        ..crate::parity::CheckOptions::default()
    };
    let mut tick = tokio::time::interval(CONFIG_POLL);
    let mut conn: Option<ControlDb> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let mut db = match conn.take() {
            Some(db) => db,
            None => match control.connect("duplex scheduled check").await {
                Ok(db) => db,
                Err(_) => continue,
            },
        };
        let Ok(config) = control::load_unchecked(&mut db).await else {
            // Reconnect next time: the connection may be gone.
            continue;
        };
        // Every table's latest result, whoever checked it, for the metrics.
        match latest_results(&mut db).await {
            Ok(results) => *registry.parity.lock().unwrap_or_else(|e| e.into_inner()) = results,
            Err(e) => tracing::debug!(error = %e, "cannot read duplex.parity_overview"),
        }
        for link in &config.links {
            let Some(Ok(lc)) = config.link_config(link.link_id) else {
                continue;
            };
            if !lc.link.enabled || held_by_others(link.link_id) {
                continue;
            }
            for t in lc.tables.iter().filter(|t| t.enabled) {
                let Some(every) = t.check_interval else {
                    continue;
                };
                let name = t.table.to_string();
                let age = db
                    .row(Sql::new(
                        "read the last parity check",
                        "SELECT extract(epoch FROM now() - max(finished_at))::float8 AS age
                           FROM duplex.parity_checks WHERE link_id = $1 AND table_name = $2",
                        "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(finished_at), UTC_TIMESTAMP(6)) / 1e6 AS age
                           FROM duplex.parity_checks WHERE link_id = ? AND table_name = ?",
                        &[P::I32(link.link_id as i32), P::Text(Some(&name))],
                    ))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|r| r.opt_parse::<f64>("age").ok().flatten());
                if age.is_some_and(|a| a < every.as_secs_f64()) {
                    continue;
                }
                let span =
                    tracing::info_span!("scheduled check", link = link.link_id, table = %t.table);
                let result = async {
                    let report =
                        crate::parity::check_table(&lc, t, &options, Some(&mut db)).await?;
                    crate::parity::record(&mut db, &report).await?;
                    Ok::<_, crate::Error>(report)
                }
                .instrument(span)
                .await;
                match result {
                    Ok(r) if r.differences.is_empty() => {
                        tracing::debug!(table = %t.table, rows = r.rows_a, "scheduled check: identical")
                    }
                    Ok(r) => tracing::warn!(table = %t.table, differences = r.differences.len(),
                        "scheduled check found differences (duplex.parity_differences)"),
                    Err(e) => {
                        tracing::warn!(table = %t.table, error = %error_chain(&e), "scheduled check failed")
                    }
                }
                if *shutdown.borrow() {
                    return;
                }
            }
        }
        conn = Some(db);
    }
}

/// The latest parity check of each table (`duplex.parity_overview`).
async fn latest_results(db: &mut ControlDb) -> Result<Vec<ParityResult>, control::ControlError> {
    let rows = db
        .rows(Sql::new(
            "read duplex.parity_overview",
            "SELECT link, table_name, (missing + extra + differing)::bigint AS differences,
                    extract(epoch FROM finished_at)::float8 AS finished_s
               FROM duplex.parity_overview WHERE finished_at IS NOT NULL",
            "SELECT link, table_name, CAST(missing + extra + differing AS SIGNED) AS differences,
                    CAST(UNIX_TIMESTAMP(finished_at) AS DOUBLE) AS finished_s
               FROM duplex.parity_overview WHERE finished_at IS NOT NULL",
            &[],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ParityResult {
                link: r.text("link")?,
                table: r.text("table_name")?,
                differences: r.parse("differences")?,
                finished_s: r.parse("finished_s")?,
            })
        })
        .collect()
}
