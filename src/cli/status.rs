//! `duplex status`: `duplex.link_overview` (and `duplex.table_overview`)
//! printed once or refreshed.

use duplex::control::{ControlDb, Sql, TextRow};

use super::control::connect;

/// Print `duplex.link_overview` (and `duplex.table_overview` with `tables`)
/// once, or every `watch` seconds until interrupted.
pub async fn status(control: &str, tables: bool, watch: Option<u64>) -> anyhow::Result<()> {
    let mut client = connect(control, "duplex status").await?;
    loop {
        let mut out = String::new();
        render_status(&mut client, tables, &mut out).await?;
        if watch.is_some() {
            // Clear the screen and start at the top: a refreshing dashboard.
            print!("\x1b[2J\x1b[H");
        }
        print!("{out}");
        let Some(secs) = watch else {
            return Ok(());
        };
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(secs.max(1))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn render_status(
    client: &mut ControlDb,
    tables: bool,
    out: &mut String,
) -> anyhow::Result<()> {
    use std::fmt::Write;
    let rows = client
        .rows(Sql::new(
            "read duplex.link_overview",
            "SELECT link, coalesce(source || '->' || target, '-'), state,
                    lag_seconds, coalesce(lag_bytes::text, '-'),
                    coalesce(queued_events, 0), coalesce(applied_txns, 0), coalesce(applied_rows, 0),
                    coalesce(conflicts, 0), coalesce(quarantined, 0), held,
                    coalesce(config_state, '-'), coalesce(config_message, ''), coalesce(error, ''),
                    coalesce(to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS'), '-'),
                    coalesce(source_position, '-'), coalesce(applied_position, '-'),
                    coalesce(last_error, ''), coalesce(to_char(last_error_at, 'YYYY-MM-DD HH24:MI:SS'), ''),
                    coalesce(stopped_tables, 0),
                    coalesce(pg_size_pretty(retained_bytes), ''),
                    coalesce('slot ' || wal_status, binlog_headroom_files || ' older binlog files', ''),
                    coalesce(retention_warning, ''),
                    coalesce(held_tables, 0), coalesce(held_reason, '')
               FROM duplex.link_overview ORDER BY link, source NULLS FIRST",
            "SELECT link, COALESCE(CONCAT(source, '->', target), '-'), state,
                    lag_seconds, COALESCE(CAST(lag_bytes AS CHAR), '-'),
                    COALESCE(queued_events, 0), COALESCE(applied_txns, 0), COALESCE(applied_rows, 0),
                    COALESCE(conflicts, 0), COALESCE(quarantined, 0), held,
                    COALESCE(config_state, '-'), COALESCE(config_message, ''), COALESCE(error, ''),
                    COALESCE(DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s'), '-'),
                    COALESCE(source_position, '-'), COALESCE(applied_position, '-'),
                    COALESCE(last_error, ''), COALESCE(DATE_FORMAT(last_error_at, '%Y-%m-%d %H:%i:%s'), ''),
                    COALESCE(stopped_tables, 0),
                    COALESCE(CONCAT(ROUND(retained_bytes / 1048576, 1), ' MB'), ''),
                    COALESCE(CONCAT('slot ', wal_status), CONCAT(binlog_headroom_files, ' older binlog files'), ''),
                    COALESCE(retention_warning, ''),
                    COALESCE(held_tables, 0), COALESCE(held_reason, '')
               FROM duplex.link_overview ORDER BY link, source",
            &[],
        ))
        .await?;
    writeln!(
        out,
        "{:<12} {:<18} {:<14} {:>8} {:>10} {:>6} {:>9} {:>10} {:>9} {:>6} {:>6}  {:<9} {:<19} error / config",
        "link", "direction", "state", "lag s", "lag bytes", "queue", "txns", "rows", "conflicts", "quar.", "held", "config", "updated"
    )?;
    for r in rows {
        let stopped = match r.at(19).parse::<i64>().unwrap_or(0) {
            0 => String::new(),
            n => format!(
                "{n} table(s) STOPPED by writes logged as statements (duplex status --tables)"
            ),
        };
        let held = match r.at(23).parse::<i64>().unwrap_or(0) {
            0 => String::new(),
            1 => format!("1 table HELD for its shape, the rest flows: {}", r.at(24)),
            n => format!(
                "{n} tables HELD for their shape, the rest flows (duplex status --tables); the newest: {}",
                r.at(24)
            ),
        };
        // A current error as such; one the direction recovered from, as past.
        let error = match (r.at(13), r.at(17)) {
            (current, _) if !current.is_empty() => format!("error: {current}"),
            (_, past) if !past.is_empty() => format!("recovered (last error {}: {past})", r.at(18)),
            _ => String::new(),
        };
        let note = [stopped, held, error, r.at(12)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
        let lag = r
            .at(3)
            .parse::<f64>()
            .map(|s| format!("{s:.1}"))
            .unwrap_or_else(|_| "-".into());
        writeln!(
            out,
            "{:<12} {:<18} {:<14} {:>8} {:>10} {:>6} {:>9} {:>10} {:>9} {:>6} {:>6}  {:<9} {:<19} {}",
            r.at(0),
            r.at(1),
            r.at(2),
            lag,
            r.at(4),
            r.at(5),
            r.at(6),
            r.at(7),
            r.at(8),
            r.at(9),
            r.at(10),
            r.at(11),
            r.at(14),
            note
        )?;
        // What the source keeps that the direction has not applied (a
        // slot's WAL, binlogs), and its warning.
        let slot = match (r.at(20), r.at(21)) {
            (kept, _) if kept.is_empty() => String::new(),
            (kept, status) => format!(", source keeps {kept} unapplied ({status})"),
        };
        writeln!(
            out,
            "{:<12} {:<18} read {} applied {}{slot}",
            "",
            "",
            r.at(15),
            r.at(16)
        )?;
        if !r.at(22).is_empty() {
            writeln!(out, "{:<12} {:<18} WARNING: {}", "", "", r.at(22))?;
        }
    }
    // Initial syncs under way, with a bar.
    let copies = client
        .rows(Sql::new(
            "read duplex.snapshot_overview",
            "SELECT link, source || '->' || target, table_name, rows_done, rows_total
               FROM duplex.snapshot_overview WHERE state = 'copying' ORDER BY 1, 2, 3",
            "SELECT link, CONCAT(source, '->', target), table_name, rows_done, rows_total
               FROM duplex.snapshot_overview WHERE state = 'copying' ORDER BY 1, 2, 3",
            &[],
        ))
        .await?;
    if !copies.is_empty() {
        writeln!(out)?;
        writeln!(out, "initial sync under way:")?;
        for r in copies {
            let done: u64 = r.at(3).parse().unwrap_or(0);
            let total: u64 = r.at(4).parse::<u64>().unwrap_or(0).max(done).max(1);
            let filled = (done * 30 / total) as usize;
            writeln!(
                out,
                "{:<12} {:<18} {:<30} [{}{}] {done}/{total}",
                r.at(0),
                r.at(1),
                r.at(2),
                "#".repeat(filled.min(30)),
                " ".repeat(30 - filled.min(30))
            )?;
        }
    }
    // Tables refused alone (or kept on their configuration in force), always
    // shown: the rest of their link runs, so nothing else says so.
    let refused = client
        .rows(Sql::new(
            "read duplex.table_config_status",
            "SELECT l.name, s.schema_name || '.' || s.table_name, s.state, s.reason
               FROM duplex.table_config_status s JOIN duplex.links l USING (link_id)
              WHERE s.reason IS NOT NULL ORDER BY 1, 2",
            "SELECT l.name, CONCAT(s.schema_name, '.', s.table_name), s.state, s.reason
               FROM duplex.table_config_status s JOIN duplex.links l ON l.link_id = s.link_id
              WHERE s.reason IS NOT NULL ORDER BY 1, 2",
            &[],
        ))
        .await?;
    if !refused.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "tables not synced as configured (the rest of their link runs):"
        )?;
        for r in refused {
            writeln!(
                out,
                "{:<12} {:<30} {:<8} {}",
                r.at(0),
                r.at(1),
                r.at(2),
                r.at(3)
            )?;
        }
    }
    if tables {
        let rows: Vec<TextRow> = client
            .rows(Sql::new(
                "read duplex.table_overview",
                "SELECT l.name, s.name || '->' || t.name, o.table_name, o.inserted, o.updated, o.deleted,
                        o.conflicts, o.quarantined, o.held,
                        CASE WHEN o.stopped THEN 'STOPPED' WHEN o.held_for_shape THEN 'HELD' ELSE coalesce(o.config_state, '') END,
                        coalesce(o.stop_reason, o.shape_difference, o.config_reason, '')
                   FROM duplex.table_overview o
                   JOIN duplex.links l USING (link_id)
                   JOIN duplex.sites s ON s.site_id = o.source_site
                   JOIN duplex.sites t ON t.site_id = o.target_site
                  ORDER BY 1, 2, 3",
                "SELECT l.name, CONCAT(s.name, '->', t.name), o.table_name, o.inserted, o.updated, o.deleted,
                        o.conflicts, o.quarantined, o.held,
                        IF(o.stopped, 'STOPPED', IF(o.held_for_shape, 'HELD', COALESCE(o.config_state, ''))),
                        COALESCE(o.stop_reason, o.shape_difference, o.config_reason, '')
                   FROM duplex.table_overview o
                   JOIN duplex.links l ON l.link_id = o.link_id
                   JOIN duplex.sites s ON s.site_id = o.source_site
                   JOIN duplex.sites t ON t.site_id = o.target_site
                  ORDER BY 1, 2, 3",
                &[],
            ))
            .await?;
        writeln!(out)?;
        writeln!(
            out,
            "{:<12} {:<18} {:<30} {:>10} {:>10} {:>10} {:>9} {:>6} {:>6}  state",
            "link",
            "direction",
            "table",
            "inserted",
            "updated",
            "deleted",
            "conflicts",
            "quar.",
            "held"
        )?;
        for r in rows {
            writeln!(
                out,
                "{:<12} {:<18} {:<30} {:>10} {:>10} {:>10} {:>9} {:>6} {:>6}  {}",
                r.at(0),
                r.at(1),
                r.at(2),
                r.at(3),
                r.at(4),
                r.at(5),
                r.at(6),
                r.at(7),
                r.at(8),
                r.at(9)
            )?;
            let reason = r.at(10);
            if !reason.is_empty() {
                writeln!(out, "{:<12} {reason}", "")?;
            }
        }
    }
    Ok(())
}
