//! DBA commands on the control schema that wrap its SQL functions, tables and
//! views: `duplex status`, `duplex conflicts list|show|resolve` and
//! `duplex quarantine list|show|retry|discard`.

use anyhow::Context;
use duplex::control::{ControlDb, LinkConfig, LinkTable, Sql, TextRow, P};

/// What to do with conflicts.
#[derive(Debug, Clone)]
pub enum ConflictsAction {
    /// The latest, newest first (`open`: only parked ones).
    List {
        open: bool,
        table: Option<String>,
        limit: i64,
    },
    Show {
        id: i64,
    },
    /// Settle a parked conflict: `take` is `local` or `incoming`.
    Resolve {
        id: i64,
        take: String,
    },
}

pub async fn conflicts(control: &str, action: ConflictsAction) -> anyhow::Result<()> {
    let mut client = connect(control, "duplex conflicts").await?;
    match action {
        ConflictsAction::List { open, table, limit } => {
            let rows = client
                .rows(
                    Sql::new(
                        "list conflicts",
                        "SELECT conflict_id, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), link_id, source_site, target_site,
                                table_name, row_key, kind, policy, outcome, status
                           FROM duplex.conflicts
                          WHERE confirmed AND (NOT $1 OR status = 'open') AND ($2::text IS NULL OR table_name = $2)
                          ORDER BY conflict_id DESC LIMIT $3",
                        "SELECT conflict_id, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'), link_id, source_site, target_site,
                                table_name, row_key, kind, policy, outcome, status
                           FROM duplex.conflicts
                          WHERE confirmed AND (NOT ? OR status = 'open') AND (? IS NULL OR table_name = ?)
                          ORDER BY conflict_id DESC LIMIT ?",
                        &[P::Bool(open), P::Text(table.as_deref()), P::I64(limit)],
                    )
                    .mysql_order(&[0, 1, 1, 2]),
                )
                .await?;
            println!(
                "{:>8}  {:<19} {:>4} {:>9}  {:<24} {:<20} {:<20} {:<17} {:<17} status",
                "id", "at", "link", "direction", "table", "key", "kind", "policy", "outcome"
            );
            for r in rows {
                println!(
                    "{:>8}  {:<19} {:>4} {:>9}  {:<24} {:<20} {:<20} {:<17} {:<17} {}",
                    r.at(0),
                    r.at(1),
                    r.at(2),
                    format!("{}->{}", r.at(3), r.at(4)),
                    r.at(5),
                    r.at(6),
                    r.at(7),
                    r.at(8),
                    r.at(9),
                    r.at(10)
                );
            }
        }
        ConflictsAction::Show { id } => {
            let row = client
                .row(Sql::new(
                    "read a conflict",
                    "SELECT table_name, row_key, kind, policy, outcome, status, coalesce(resolution, '-'),
                            coalesce(resolution_note, ''), source_position,
                            local_version::text, incoming_version::text
                       FROM duplex.conflicts WHERE conflict_id = $1",
                    "SELECT table_name, row_key, kind, policy, outcome, status, COALESCE(resolution, '-'),
                            COALESCE(resolution_note, ''), source_position,
                            local_version, incoming_version
                       FROM duplex.conflicts WHERE conflict_id = ?",
                    &[P::I64(id)],
                ))
                .await?
                .with_context(|| format!("no conflict {id} in duplex.conflicts"))?;
            println!("conflict {id}: {} {}", row.at(0), row.at(1));
            println!(
                "  kind {}, policy {}, outcome {}",
                row.at(2),
                row.at(3),
                row.at(4)
            );
            println!(
                "  status {}, resolution {} {}",
                row.at(5),
                row.at(6),
                row.at(7)
            );
            println!("  incoming change at source position {}", row.at(8));
            println!("local version (target site):\n{}", pretty_json(&row.at(9)));
            println!("incoming version:\n{}", pretty_json(&row.at(10)));
        }
        ConflictsAction::Resolve { id, take } => {
            let params = [P::I64(id), P::Text(Some(&take))];
            let result = match &mut client {
                ControlDb::Pg(_) => client
                    .rows(Sql::new(
                        "settle a conflict",
                        "SELECT duplex.resolve_conflict($1, $2)",
                        "",
                        &params,
                    ))
                    .await
                    .map(|_| ()),
                ControlDb::Mysql(c) => call_mysql(
                    c,
                    "CALL duplex.resolve_conflict(?, ?)",
                    &params,
                    "settle a conflict",
                )
                .await
                .map(|_| ()),
            };
            result.map_err(|e| {
                anyhow::anyhow!(
                    "settle conflict {id}: {}",
                    duplex::control::db::server_message(&e)
                )
            })?;
            println!("conflict {id}: taking the {take} version; the running duplex applies it within seconds (status becomes 'resolved')");
        }
    }
    Ok(())
}

/// JSON text indented for reading (as it is when it is not JSON).
fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

/// CALL a MySQL procedure; the message it returns (its one row).
async fn call_mysql(
    conn: &mut mysql_async::Conn,
    sql: &str,
    params: &[P<'_>],
    what: &str,
) -> Result<String, duplex::control::ControlError> {
    use mysql_async::prelude::Queryable;
    let values: Vec<mysql_async::Value> = params
        .iter()
        .map(|p| match p {
            P::I64(v) => mysql_async::Value::Int(*v),
            P::Text(Some(t)) => mysql_async::Value::Bytes(t.as_bytes().to_vec()),
            _ => mysql_async::Value::NULL,
        })
        .collect();
    let message: Option<String> = conn
        .exec_first(sql, mysql_async::Params::Positional(values))
        .await
        .map_err(|source| duplex::control::ControlError::Mysql {
            context: what.to_string(),
            source,
        })?;
    Ok(message.unwrap_or_default())
}

/// What to do with quarantined changes.
#[derive(Debug, Clone)]
pub enum QuarantineAction {
    /// The latest records, newest first (`all`: settled ones too).
    List {
        all: bool,
        table: Option<String>,
        limit: i64,
    },
    Show {
        id: i64,
    },
    /// Ask the running duplex to apply these again (`duplex.retry_quarantined`).
    Retry {
        ids: Vec<i64>,
    },
    /// Give these up (`duplex.discard_quarantined`).
    Discard {
        ids: Vec<i64>,
    },
}

async fn connect(control: &str, application_name: &str) -> anyhow::Result<ControlDb> {
    let ep = duplex::control::ControlEndpoint::from_url(control)?;
    let mut client = ep
        .connect(application_name)
        .await
        .context("connect to the control database")?;
    duplex::control::check_version(&mut client).await?;
    Ok(client)
}

/// Run a control operation that returns a message: a PostgreSQL function
/// (`pg`, one text column) or a MySQL procedure (`mysql`, one row).
async fn operation(
    client: &mut ControlDb,
    pg: &str,
    mysql: &str,
    params: &[P<'_>],
    what: &str,
) -> anyhow::Result<String> {
    let result = match client {
        ControlDb::Pg(_) => client
            .row(Sql::new(what, pg, "", params))
            .await
            .map(|r| r.map(|r| r.at(0)).unwrap_or_default()),
        ControlDb::Mysql(c) => call_mysql(c, mysql, params, what).await,
    };
    result.map_err(|e| anyhow::anyhow!("{what}: {}", duplex::control::db::server_message(&e)))
}

pub async fn quarantine(control: &str, action: QuarantineAction) -> anyhow::Result<()> {
    let mut client = connect(control, "duplex quarantine").await?;
    match action {
        QuarantineAction::List { all, table, limit } => {
            let rows = client
                .rows(
                    Sql::new(
                        "list quarantined changes",
                        "SELECT quarantine_id, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), link_id, source_site, target_site,
                                table_name, op, row_key, status, left(reason, 80)
                           FROM duplex.quarantine
                          WHERE confirmed AND ($1 OR status IN ('pending', 'retry')) AND ($2::text IS NULL OR table_name = $2)
                          ORDER BY quarantine_id DESC LIMIT $3",
                        "SELECT quarantine_id, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'), link_id, source_site, target_site,
                                table_name, op, row_key, status, LEFT(reason, 80)
                           FROM duplex.quarantine
                          WHERE confirmed AND (? OR status IN ('pending', 'retry')) AND (? IS NULL OR table_name = ?)
                          ORDER BY quarantine_id DESC LIMIT ?",
                        &[P::Bool(all), P::Text(table.as_deref()), P::I64(limit)],
                    )
                    .mysql_order(&[0, 1, 1, 2]),
                )
                .await?;
            println!(
                "{:>8}  {:<19} {:>4} {:>9}  {:<24} {:<6} {:<20} {:<9} reason",
                "id", "at", "link", "direction", "table", "op", "key", "status"
            );
            for r in rows {
                println!(
                    "{:>8}  {:<19} {:>4} {:>9}  {:<24} {:<6} {:<20} {:<9} {}",
                    r.at(0),
                    r.at(1),
                    r.at(2),
                    format!("{}->{}", r.at(3), r.at(4)),
                    r.at(5),
                    r.at(6),
                    r.at(7),
                    r.at(8),
                    r.at(9)
                );
            }
        }
        QuarantineAction::Show { id } => {
            let r = client
                .row(Sql::new(
                    "read a quarantined change",
                    "SELECT table_name, op, row_key, status, reason, coalesce(note, ''), source_position,
                            change_index, change::text
                       FROM duplex.quarantine WHERE quarantine_id = $1",
                    "SELECT table_name, op, row_key, status, reason, COALESCE(note, ''), source_position,
                            change_index, `change`
                       FROM duplex.quarantine WHERE quarantine_id = ?",
                    &[P::I64(id)],
                ))
                .await?
                .with_context(|| format!("no change {id} in duplex.quarantine"))?;
            println!(
                "quarantined change {id}: {} {} {}",
                r.at(1),
                r.at(0),
                r.at(2)
            );
            println!("  status {} {}", r.at(3), r.at(5));
            println!("  reason: {}", r.at(4));
            println!(
                "  source position {} (change {} of its transaction)",
                r.at(6),
                r.at(7)
            );
            println!("{}", pretty_json(&r.at(8)));
        }
        QuarantineAction::Retry { ids } => {
            for id in ids {
                let message = operation(
                    &mut client,
                    "SELECT duplex.retry_quarantined($1)",
                    "CALL duplex.retry_quarantined(?)",
                    &[P::I64(id)],
                    &format!("retry change {id}"),
                )
                .await?;
                println!("{message}");
            }
        }
        QuarantineAction::Discard { ids } => {
            for id in ids {
                let message = operation(
                    &mut client,
                    "SELECT duplex.discard_quarantined($1)",
                    "CALL duplex.discard_quarantined(?)",
                    &[P::I64(id)],
                    &format!("discard change {id}"),
                )
                .await?;
                println!("{message}");
            }
        }
    }
    Ok(())
}

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
                    coalesce(stopped_tables, 0)
               FROM duplex.link_overview ORDER BY link, source NULLS FIRST",
            "SELECT link, COALESCE(CONCAT(source, '->', target), '-'), state,
                    lag_seconds, COALESCE(CAST(lag_bytes AS CHAR), '-'),
                    COALESCE(queued_events, 0), COALESCE(applied_txns, 0), COALESCE(applied_rows, 0),
                    COALESCE(conflicts, 0), COALESCE(quarantined, 0), held,
                    COALESCE(config_state, '-'), COALESCE(config_message, ''), COALESCE(error, ''),
                    COALESCE(DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s'), '-'),
                    COALESCE(source_position, '-'), COALESCE(applied_position, '-'),
                    COALESCE(last_error, ''), COALESCE(DATE_FORMAT(last_error_at, '%Y-%m-%d %H:%i:%s'), ''),
                    COALESCE(stopped_tables, 0)
               FROM duplex.link_overview ORDER BY link, source",
            &[],
        ))
        .await?;
    writeln!(
        out,
        "{:<12} {:<18} {:<10} {:>8} {:>10} {:>6} {:>9} {:>10} {:>9} {:>6} {:>6}  {:<9} {:<19} error / config",
        "link", "direction", "state", "lag s", "lag bytes", "queue", "txns", "rows", "conflicts", "quar.", "held", "config", "updated"
    )?;
    for r in rows {
        let stopped = match r.at(19).parse::<i64>().unwrap_or(0) {
            0 => String::new(),
            n => format!(
                "{n} table(s) STOPPED by writes logged as statements (duplex status --tables)"
            ),
        };
        // A current error as such; one the direction recovered from, as past.
        let error = match (r.at(13), r.at(17)) {
            (current, _) if !current.is_empty() => format!("error: {current}"),
            (_, past) if !past.is_empty() => format!("recovered (last error {}: {past})", r.at(18)),
            _ => String::new(),
        };
        let note = [stopped, error, r.at(12)]
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
            "{:<12} {:<18} {:<10} {:>8} {:>10} {:>6} {:>9} {:>10} {:>9} {:>6} {:>6}  {:<9} {:<19} {}",
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
        writeln!(
            out,
            "{:<12} {:<18} read {} applied {}",
            "",
            "",
            r.at(15),
            r.at(16)
        )?;
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
                        CASE WHEN o.stopped THEN 'STOPPED' ELSE coalesce(o.config_state, '') END,
                        coalesce(o.stop_reason, o.config_reason, '')
                   FROM duplex.table_overview o
                   JOIN duplex.links l USING (link_id)
                   JOIN duplex.sites s ON s.site_id = o.source_site
                   JOIN duplex.sites t ON t.site_id = o.target_site
                  ORDER BY 1, 2, 3",
                "SELECT l.name, CONCAT(s.name, '->', t.name), o.table_name, o.inserted, o.updated, o.deleted,
                        o.conflicts, o.quarantined, o.held,
                        IF(o.stopped, 'STOPPED', COALESCE(o.config_state, '')),
                        COALESCE(o.stop_reason, o.config_reason, '')
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

/// `duplex check`: compare both sites of every enabled table of the links
/// (`link`: id or name; `table`: name or schema.name), print what differs,
/// and record each result in `duplex.parity_checks`. Returns whether every
/// table was clean.
pub async fn check(
    control: &str,
    link: Option<&str>,
    table: Option<&str>,
    options: &duplex::parity::CheckOptions,
) -> anyhow::Result<bool> {
    duplex::install_crypto_provider();
    let mut client = connect(control, "duplex check").await?;
    let (selected, invalid) = selected_tables(&mut client, link, table).await?;
    for why in &invalid {
        eprintln!("{why}, not checked");
    }
    let mut clean = invalid.is_empty();
    for (lc, t) in &selected {
        let report = duplex::parity::check_table(lc, t, options, Some(&mut client))
            .await
            .with_context(|| format!("link {} table {}", lc.link.name, t.table))?;
        let id = duplex::parity::record(&mut client, &report).await?;
        print_report(&lc.link.name, &report, id);
        clean &= report.differences.is_empty();
    }
    if let Some(kib) = peak_memory_kib() {
        println!("peak memory of this check: {:.1} MiB", kib as f64 / 1024.0);
    }
    Ok(clean)
}

/// The enabled tables of the links selected by `link` (id or name) and
/// `table` (name or schema.name), patterns expanded; and why a selected
/// link's configuration cannot be read. Fails when nothing matched.
async fn selected_tables(
    client: &mut ControlDb,
    link: Option<&str>,
    table: Option<&str>,
) -> anyhow::Result<(Vec<(LinkConfig, LinkTable)>, Vec<String>)> {
    let config = duplex::control::load_unchecked(client).await?;
    let mut selected = Vec::new();
    let mut invalid = Vec::new();
    for l in &config.links {
        if link.is_some_and(|want| want != l.name && want != l.link_id.to_string()) {
            continue;
        }
        let mut lc = match config.link_config(l.link_id) {
            Some(Ok(lc)) => lc,
            Some(Err(e)) => {
                invalid.push(format!("link {}: configuration invalid ({e})", l.name));
                continue;
            }
            None => continue,
        };
        duplex::runner::expand_patterns(&mut lc)
            .await
            .with_context(|| format!("link {}: expand its table patterns", l.name))?;
        let wanted = |t: &LinkTable| {
            t.enabled
                && !table.is_some_and(|want| want != t.table.name && want != t.table.to_string())
        };
        for (t, why) in lc.invalid_tables.iter().filter(|(t, _)| wanted(t)) {
            invalid.push(format!(
                "link {} table {}: configuration invalid ({why})",
                l.name, t.table
            ));
        }
        // Tables the running duplex refused are not synced: nothing to compare.
        let refused = client
            .rows(Sql::new(
                "read duplex.table_config_status",
                "SELECT schema_name, table_name, reason FROM duplex.table_config_status
                  WHERE link_id = $1 AND state = 'refused'",
                "SELECT schema_name, table_name, reason FROM duplex.table_config_status
                  WHERE link_id = ? AND state = 'refused'",
                &[P::I32(l.link_id as i32)],
            ))
            .await?;
        for t in lc.tables.clone() {
            if !wanted(&t) {
                continue;
            }
            let why = refused.iter().find(|r| {
                r.text("schema_name").is_ok_and(|s| s == t.table.schema)
                    && r.text("table_name").is_ok_and(|n| n == t.table.name)
            });
            match why {
                Some(r) => invalid.push(format!(
                    "link {} table {}: refused by duplex ({})",
                    l.name,
                    t.table,
                    r.opt("reason").ok().flatten().unwrap_or_default()
                )),
                None => selected.push((lc.clone(), t)),
            }
        }
    }
    if selected.is_empty() && invalid.is_empty() {
        anyhow::bail!(
            "no enabled table matched{}{}",
            link.map(|l| format!(" link {l}")).unwrap_or_default(),
            table.map(|t| format!(" table {t}")).unwrap_or_default()
        );
    }
    Ok((selected, invalid))
}

/// This process's peak resident memory (Linux: VmHWM), in KiB.
fn peak_memory_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn print_report(link: &str, r: &duplex::parity::TableReport, check_id: i64) {
    let verdict = if r.differences.is_empty() {
        "identical".to_string()
    } else {
        format!("{} difference(s)", r.differences.len())
    };
    let secs = r.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        (r.rows_a + r.rows_b) as f64 / secs
    } else {
        0.0
    };
    println!(
        "link {link} table {}: {verdict} ({} rows on {}, {} on {}; {:.1} s, {:.0} rows/s; check {check_id})",
        r.table, r.rows_a, r.site_a, r.rows_b, r.site_b, secs, rate
    );
    for d in r.differences.iter().take(50) {
        match d.kind {
            duplex::parity::DiffKind::Missing => {
                println!("  missing on {}: {}", r.site_b, d.key)
            }
            duplex::parity::DiffKind::Extra => println!("  only on {}: {}", r.site_b, d.key),
            duplex::parity::DiffKind::Differs => {
                println!("  differs: {} (columns {})", d.key, d.columns.join(", "))
            }
        }
    }
    if r.differences.len() > 50 {
        println!(
            "  ... and {} more (SELECT * FROM duplex.parity_differences WHERE check_id = {check_id})",
            r.differences.len() - 50
        );
    }
    if !r.skipped_columns.is_empty() {
        println!("  not compared: {}", r.skipped_columns.join(", "));
    }
}

/// `duplex repair`: check each table, make the differing rows equal from
/// `winner` through the normal replication path (`dry_run`: only print the
/// plan), then check again. Returns whether every table ended clean.
pub async fn repair(
    control: &str,
    link: Option<&str>,
    table: Option<&str>,
    winner: &duplex::parity::repair::Winner,
    dry_run: bool,
    options: &duplex::parity::CheckOptions,
) -> anyhow::Result<bool> {
    duplex::install_crypto_provider();
    let mut client = connect(control, "duplex repair").await?;
    let (selected, _) = selected_tables(&mut client, link, table).await?;
    let mut clean = true;
    for (lc, t) in &selected {
        let l = &lc.link;
        let report = duplex::parity::check_table(lc, t, options, Some(&mut client))
            .await
            .with_context(|| format!("link {} table {}", l.name, t.table))?;
        if report.differences.is_empty() {
            println!(
                "link {} table {}: identical, nothing to repair",
                l.name, t.table
            );
            continue;
        }
        let actions =
            duplex::parity::repair::repair_table(lc, t, &report.differences, winner, dry_run)
                .await
                .with_context(|| format!("repair link {} table {}", l.name, t.table))?;
        let verb = if dry_run { "would" } else { "did" };
        println!(
            "link {} table {}: {} difference(s); {verb} write {} row(s):",
            l.name,
            t.table,
            report.differences.len(),
            actions.len()
        );
        for a in &actions {
            println!(
                "  {} {} on {} ({}): {}",
                a.action,
                a.key,
                a.site,
                a.kind.as_str(),
                a.statement
            );
        }
        if dry_run {
            clean = false;
            continue;
        }
        let after = duplex::parity::check_table(lc, t, options, Some(&mut client)).await?;
        let id = duplex::parity::record(&mut client, &after).await?;
        print_report(&l.name, &after, id);
        clean &= after.differences.is_empty();
    }
    Ok(clean)
}
