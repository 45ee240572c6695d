//! DBA commands on the control schema that wrap its SQL functions, tables and
//! views: `duplex status`, `duplex conflicts list|show|resolve` and
//! `duplex quarantine list|show|retry|discard`.

use anyhow::Context;
use tokio_postgres::Client;

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
    let client = connect(control, "duplex conflicts").await?;
    match action {
        ConflictsAction::List { open, table, limit } => {
            let rows = client
                .query(
                    "SELECT conflict_id, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), link_id, source_site, target_site,
                            table_name, row_key, kind, policy, outcome, status
                       FROM duplex.conflicts
                      WHERE confirmed AND (NOT $1 OR status = 'open') AND ($2::text IS NULL OR table_name = $2)
                      ORDER BY conflict_id DESC LIMIT $3",
                    &[&open, &table, &limit],
                )
                .await?;
            println!(
                "{:>8}  {:<19} {:>4} {:>9}  {:<24} {:<20} {:<20} {:<17} {:<17} status",
                "id", "at", "link", "direction", "table", "key", "kind", "policy", "outcome"
            );
            for r in rows {
                println!(
                    "{:>8}  {:<19} {:>4} {:>9}  {:<24} {:<20} {:<20} {:<17} {:<17} {}",
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i32>(2),
                    format!("{}->{}", r.get::<_, i32>(3), r.get::<_, i32>(4)),
                    r.get::<_, String>(5),
                    r.get::<_, String>(6),
                    r.get::<_, String>(7),
                    r.get::<_, String>(8),
                    r.get::<_, String>(9),
                    r.get::<_, String>(10)
                );
            }
        }
        ConflictsAction::Show { id } => {
            let row = client
                .query_opt(
                    "SELECT table_name, row_key, kind, policy, outcome, status, coalesce(resolution, '-'),
                            coalesce(resolution_note, ''), source_position,
                            jsonb_pretty(local_version), jsonb_pretty(incoming_version)
                       FROM duplex.conflicts WHERE conflict_id = $1",
                    &[&id],
                )
                .await?
                .with_context(|| format!("no conflict {id} in duplex.conflicts"))?;
            println!(
                "conflict {id}: {} {}",
                row.get::<_, String>(0),
                row.get::<_, String>(1)
            );
            println!(
                "  kind {}, policy {}, outcome {}",
                row.get::<_, String>(2),
                row.get::<_, String>(3),
                row.get::<_, String>(4)
            );
            println!(
                "  status {}, resolution {} {}",
                row.get::<_, String>(5),
                row.get::<_, String>(6),
                row.get::<_, String>(7)
            );
            println!(
                "  incoming change at source position {}",
                row.get::<_, String>(8)
            );
            println!("local version (target site):\n{}", row.get::<_, String>(9));
            println!("incoming version:\n{}", row.get::<_, String>(10));
        }
        ConflictsAction::Resolve { id, take } => {
            client
                .execute("SELECT duplex.resolve_conflict($1, $2)", &[&id, &take])
                .await
                .with_context(|| format!("settle conflict {id}"))?;
            println!("conflict {id}: taking the {take} version; the running duplex applies it within seconds (status becomes 'resolved')");
        }
    }
    Ok(())
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

async fn connect(control: &str, application_name: &str) -> anyhow::Result<Client> {
    let ep = crate::pg::PgEndpoint::from_url("control", control)?;
    let client = ep
        .connect(application_name)
        .await
        .context("connect to the control database")?;
    crate::control::check_version(&client).await?;
    Ok(client)
}

/// The server's own message for a database error, else the error.
fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

pub async fn quarantine(control: &str, action: QuarantineAction) -> anyhow::Result<()> {
    let client = connect(control, "duplex quarantine").await?;
    match action {
        QuarantineAction::List { all, table, limit } => {
            let rows = client
                .query(
                    "SELECT quarantine_id, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), link_id, source_site, target_site,
                            table_name, op, row_key, status, left(reason, 80)
                       FROM duplex.quarantine
                      WHERE confirmed AND ($1 OR status IN ('pending', 'retry')) AND ($2::text IS NULL OR table_name = $2)
                      ORDER BY quarantine_id DESC LIMIT $3",
                    &[&all, &table, &limit],
                )
                .await?;
            println!(
                "{:>8}  {:<19} {:>4} {:>9}  {:<24} {:<6} {:<20} {:<9} reason",
                "id", "at", "link", "direction", "table", "op", "key", "status"
            );
            for r in rows {
                println!(
                    "{:>8}  {:<19} {:>4} {:>9}  {:<24} {:<6} {:<20} {:<9} {}",
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i32>(2),
                    format!("{}->{}", r.get::<_, i32>(3), r.get::<_, i32>(4)),
                    r.get::<_, String>(5),
                    r.get::<_, String>(6),
                    r.get::<_, String>(7),
                    r.get::<_, String>(8),
                    r.get::<_, String>(9)
                );
            }
        }
        QuarantineAction::Show { id } => {
            let r = client
                .query_opt(
                    "SELECT table_name, op, row_key, status, reason, coalesce(note, ''), source_position,
                            change_index, jsonb_pretty(change)
                       FROM duplex.quarantine WHERE quarantine_id = $1",
                    &[&id],
                )
                .await?
                .with_context(|| format!("no change {id} in duplex.quarantine"))?;
            println!(
                "quarantined change {id}: {} {} {}",
                r.get::<_, String>(1),
                r.get::<_, String>(0),
                r.get::<_, String>(2)
            );
            println!(
                "  status {} {}",
                r.get::<_, String>(3),
                r.get::<_, String>(5)
            );
            println!("  reason: {}", r.get::<_, String>(4));
            println!(
                "  source position {} (change {} of its transaction)",
                r.get::<_, String>(6),
                r.get::<_, i32>(7)
            );
            println!("{}", r.get::<_, String>(8));
        }
        QuarantineAction::Retry { ids } => {
            for id in ids {
                let r = client
                    .query_one("SELECT duplex.retry_quarantined($1)", &[&id])
                    .await
                    .map_err(|e| anyhow::anyhow!("retry change {id}: {}", db_message(&e)))?;
                println!("{}", r.get::<_, String>(0));
            }
        }
        QuarantineAction::Discard { ids } => {
            for id in ids {
                let r = client
                    .query_one("SELECT duplex.discard_quarantined($1)", &[&id])
                    .await
                    .map_err(|e| anyhow::anyhow!("discard change {id}: {}", db_message(&e)))?;
                println!("{}", r.get::<_, String>(0));
            }
        }
    }
    Ok(())
}

/// Print `duplex.link_overview` (and `duplex.table_overview` with `tables`)
/// once, or every `watch` seconds until interrupted.
pub async fn status(control: &str, tables: bool, watch: Option<u64>) -> anyhow::Result<()> {
    let client = connect(control, "duplex status").await?;
    loop {
        let mut out = String::new();
        render_status(&client, tables, &mut out).await?;
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

async fn render_status(client: &Client, tables: bool, out: &mut String) -> anyhow::Result<()> {
    use std::fmt::Write;
    let rows = client
        .query(
            "SELECT link, coalesce(source || '->' || target, '-'), state,
                    coalesce(to_char(lag_seconds, 'FM999999990.0'), '-'), coalesce(lag_bytes::text, '-'),
                    coalesce(queued_events, 0), coalesce(applied_txns, 0), coalesce(applied_rows, 0),
                    coalesce(conflicts, 0), coalesce(quarantined, 0), held,
                    coalesce(config_state, '-'), coalesce(config_message, ''), coalesce(last_error, ''),
                    coalesce(to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS'), '-'),
                    coalesce(source_position, '-'), coalesce(applied_position, '-')
               FROM duplex.link_overview ORDER BY link, source NULLS FIRST",
            &[],
        )
        .await?;
    writeln!(
        out,
        "{:<12} {:<18} {:<10} {:>8} {:>10} {:>6} {:>9} {:>10} {:>9} {:>6} {:>6}  {:<9} {:<19} last error / config",
        "link", "direction", "state", "lag s", "lag bytes", "queue", "txns", "rows", "conflicts", "quar.", "held", "config", "updated"
    )?;
    for r in rows {
        let note = [r.get::<_, String>(13), r.get::<_, String>(12)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
        writeln!(
            out,
            "{:<12} {:<18} {:<10} {:>8} {:>10} {:>6} {:>9} {:>10} {:>9} {:>6} {:>6}  {:<9} {:<19} {}",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3),
            r.get::<_, String>(4),
            r.get::<_, i64>(5),
            r.get::<_, i64>(6),
            r.get::<_, i64>(7),
            r.get::<_, i64>(8),
            r.get::<_, i64>(9),
            r.get::<_, i64>(10),
            r.get::<_, String>(11),
            r.get::<_, String>(14),
            note
        )?;
        writeln!(
            out,
            "{:<12} {:<18} read {} applied {}",
            "",
            "",
            r.get::<_, String>(15),
            r.get::<_, String>(16)
        )?;
    }
    if tables {
        let rows = client
            .query(
                "SELECT l.name, s.name || '->' || t.name, o.table_name, o.inserted, o.updated, o.deleted,
                        o.conflicts, o.quarantined, o.held
                   FROM duplex.table_overview o
                   JOIN duplex.links l USING (link_id)
                   JOIN duplex.sites s ON s.site_id = o.source_site
                   JOIN duplex.sites t ON t.site_id = o.target_site
                  ORDER BY 1, 2, 3",
                &[],
            )
            .await?;
        writeln!(out)?;
        writeln!(
            out,
            "{:<12} {:<18} {:<30} {:>10} {:>10} {:>10} {:>9} {:>6} {:>6}",
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
                "{:<12} {:<18} {:<30} {:>10} {:>10} {:>10} {:>9} {:>6} {:>6}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, i64>(3),
                r.get::<_, i64>(4),
                r.get::<_, i64>(5),
                r.get::<_, i64>(6),
                r.get::<_, i64>(7),
                r.get::<_, i64>(8)
            )?;
        }
    }
    Ok(())
}
