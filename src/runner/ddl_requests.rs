//! `duplex ddl` from SQL: the statements DBAs ask for with
//! `duplex.request_ddl(link, statement)` (`duplex.ddl_requests`), run by the
//! process that runs the link, one at a time, as `duplex ddl` runs them
//! (`runner::ddl`). Each request is claimed before it runs (state
//! `running`), so that of several `--ha` processes only one takes it, and
//! ends `done` or `failed` with what was done, or why not.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use super::ddl::{coordinated_ddl, DdlRequest};
use super::live_config::CONFIG_POLL;
use super::plan::expand_patterns;
use crate::control::{self, ControlDb, ControlEndpoint, Sql, P};
use crate::error_chain::error_chain;

/// How long each wait of a requested change may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A request read from `duplex.ddl_requests`.
struct Pending {
    id: i64,
    link_id: u32,
    statement: String,
    postgresql: Option<String>,
    mysql: Option<String>,
}

/// Runs the pending requests of the links this process runs
/// (`held_by_others`: those it does not, with `--ha`) until shutdown.
pub(super) async fn ddl_request_runner(
    control: ControlEndpoint,
    held_by_others: Arc<dyn Fn(u32) -> bool + Send + Sync>,
    mut shutdown: watch::Receiver<bool>,
) {
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
            None => match control.connect("duplex ddl requests").await {
                Ok(db) => db,
                Err(_) => continue,
            },
        };
        match run_pending(&mut db, held_by_others.as_ref()).await {
            Ok(()) => conn = Some(db),
            // Connected again at the next tick.
            Err(e) => tracing::debug!(error = %error_chain(&e), "cannot read duplex.ddl_requests"),
        }
    }
}

async fn run_pending(
    db: &mut ControlDb,
    held_by_others: &(dyn Fn(u32) -> bool + Send + Sync),
) -> Result<(), control::ControlError> {
    let rows = db
        .rows(Sql::new(
            "read the pending ddl requests",
            "SELECT request_id::text AS id, link_id, statement, postgresql, mysql
               FROM duplex.ddl_requests WHERE state = 'pending' ORDER BY request_id",
            "SELECT CAST(request_id AS CHAR) AS id, link_id, statement, postgresql, mysql
               FROM duplex.ddl_requests WHERE state = 'pending' ORDER BY request_id",
            &[],
        ))
        .await?;
    let mut pending = Vec::new();
    for r in rows {
        pending.push(Pending {
            id: r.parse("id")?,
            link_id: r.parse("link_id")?,
            statement: r.text("statement")?,
            postgresql: r.opt("postgresql")?,
            mysql: r.opt("mysql")?,
        });
    }
    for p in pending {
        if held_by_others(p.link_id) {
            continue;
        }
        let claimed = db
            .exec(Sql::new(
                "claim a ddl request",
                "UPDATE duplex.ddl_requests SET state = 'running' WHERE request_id = $1 AND state = 'pending'",
                "UPDATE duplex.ddl_requests SET state = 'running' WHERE request_id = ? AND state = 'pending'",
                &[P::I64(p.id)],
            ))
            .await?;
        if claimed != 1 {
            continue;
        }
        let (state, result) = match run_one(db, &p).await {
            Ok(lines) => ("done", lines.join("\n")),
            Err(e) => ("failed", error_chain(&e)),
        };
        tracing::info!(request = p.id, state, "ddl request finished");
        db.exec(Sql::new(
            "record a ddl request's outcome",
            "UPDATE duplex.ddl_requests SET state = $1, result = $2, finished_at = now() WHERE request_id = $3",
            "UPDATE duplex.ddl_requests SET state = ?, result = ?, finished_at = UTC_TIMESTAMP(6) WHERE request_id = ?",
            &[P::Text(Some(state)), P::Text(Some(&result)), P::I64(p.id)],
        ))
        .await?;
    }
    Ok(())
}

/// One request, as `duplex ddl` runs it; the lines it would print.
async fn run_one(db: &mut ControlDb, p: &Pending) -> Result<Vec<String>, crate::Error> {
    let config = control::load_unchecked(db).await?;
    let mut lc = config
        .link_config(p.link_id)
        .ok_or_else(|| crate::Error::Internal(format!("link {} is gone", p.link_id)))??;
    expand_patterns(&mut lc).await?;
    let mut lines = Vec::new();
    let span = tracing::info_span!("ddl request", request = p.id, link = %lc.link.name);
    tracing::info!(parent: &span, statement = %p.statement, "running a ddl request");
    coordinated_ddl(
        db,
        &lc,
        DdlRequest {
            statement: &p.statement,
            postgresql: p.postgresql.as_deref(),
            mysql: p.mysql.as_deref(),
            dry_run: false,
            timeout: REQUEST_TIMEOUT,
        },
        &mut |line| lines.push(line.to_string()),
    )
    .instrument(span)
    .await?;
    Ok(lines)
}
