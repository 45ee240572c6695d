//! `duplex conflicts list|show|resolve` and `duplex quarantine
//! list|show|retry|discard`: the records of conflicts and refused changes,
//! through the control schema's SQL functions, tables and views.

use anyhow::Context;
use duplex::control::{ControlDb, Sql, P};

use super::control::connect;

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
