//! `duplex ddl`: one `ALTER TABLE` applied to both sites of a link in a safe
//! order, while duplex runs the link and the applications write:
//!
//! 1. refused up front when it cannot be done safely: not an ALTER TABLE of
//!    a table the link syncs (by an explicit `duplex.link_tables` row), a
//!    statement that does not translate between the engines, the link not
//!    streaming both ways, or duplex's role not owning the table on a
//!    PostgreSQL site;
//! 2. the table is paused (`link_tables.paused`): once the running duplex
//!    has it in force, its changes in both directions are held in order,
//!    so none crosses while the two sites' tables differ;
//! 3. the statement runs on each site, MySQL/MariaDB sites first (their
//!    privileges cannot be checked up front; PostgreSQL's were);
//! 4. the two sites' tables are compared as a starting link would (every
//!    column on both sites, or excluded or mapped);
//! 5. the table is resumed: the held changes are applied in order (those
//!    that carry a column dropped since, without it), and it flows again.
//!
//! A step that fails leaves a clear state: before any site changed, the
//! table is resumed; after one did, it stays paused, and the error says
//! what was done and what to do.

use std::time::{Duration, Instant};

use super::ddl_statement::DdlStatement;
use super::site_conn::{mysql_error, setup_conn, SetupConn};
use crate::control::{ControlDb, LinkConfig, LinkTable, Site, SiteEngine, Sql, P};
use crate::setup::SetupError;

/// What to run.
#[derive(Debug, Clone)]
pub struct DdlRequest<'a> {
    /// The statement, in either engine's dialect (translated for the other).
    pub statement: &'a str,
    /// The statements for each engine's sites, when given by the DBA.
    pub postgresql: Option<&'a str>,
    pub mysql: Option<&'a str>,
    /// Only say what would be run.
    pub dry_run: bool,
    /// How long each wait (the pause, the release) may take.
    pub timeout: Duration,
}

/// What `duplex ddl` did, step by step (`say` hears each as it happens).
#[derive(Debug, Clone, Default)]
pub struct DdlReport {
    pub steps: Vec<String>,
    /// From the pause in force to the held changes applied.
    pub held_for: Option<Duration>,
}

/// Run `req` on both sites of link `lc` (see the module's doc).
pub async fn coordinated_ddl(
    control: &mut ControlDb,
    lc: &LinkConfig,
    req: DdlRequest<'_>,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<DdlReport, crate::Error> {
    let link = lc.link.name.clone();
    let refuse = |why: String| {
        crate::Error::from(SetupError::Ddl {
            link: link.clone(),
            why,
        })
    };
    let parsed = DdlStatement::parse(req.statement).map_err(&refuse)?;
    let table = find_table(lc, &parsed).map_err(&refuse)?;
    // Per site, in the order they are changed: MySQL/MariaDB first.
    let mut sites: Vec<&Site> = vec![&lc.site_a, &lc.site_b];
    sites.sort_by_key(|s| s.engine == SiteEngine::Postgres);
    let cross_engine = lc.site_a.engine != lc.site_b.engine;
    let mut plan = Vec::new();
    for site in &sites {
        let statement = match (site.engine, req.postgresql, req.mysql) {
            (SiteEngine::Postgres, Some(s), _) | (SiteEngine::Mysql, _, Some(s)) => s.to_string(),
            (engine, _, _) => parsed
                .for_engine(engine, &site_table(site, &table.table), cross_engine)
                .map_err(|why| refuse(format!("site {}: {why}", site.name)))?,
        };
        plan.push((*site, statement));
    }
    let mut report = DdlReport::default();
    let mut step = |report: &mut DdlReport, line: String| {
        say(&line);
        report.steps.push(line);
    };
    if req.dry_run {
        for (site, statement) in &plan {
            step(
                &mut report,
                format!("would run on {}: {statement}", site.name),
            );
        }
        return Ok(report);
    }
    let deadline = Instant::now() + req.timeout.min(Duration::from_secs(30));
    while let Err(why) = streaming_both_ways(control, lc).await {
        if Instant::now() >= deadline {
            return Err(refuse(why));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut conns = Vec::new();
    for (site, _) in &plan {
        let mut conn = setup_conn(site).await?;
        if let SetupConn::Pg(client) = &mut conn {
            may_alter(client, site, &table.table).await?;
        }
        conns.push(conn);
    }

    // Hold the table both ways.
    let was_paused = table.paused;
    let since = control_now(control).await?;
    if !set_paused(control, lc, table, true).await? {
        return Err(refuse(format!(
            "table {} is synced through a pattern: give it a row of its own in duplex.link_tables (INSERT INTO duplex.link_tables (link_id, schema_name, table_name) VALUES ({}, '{}', '{}')), then run this again",
            table.table, lc.link.link_id, table.table.schema, table.table.name
        )));
    }
    step(
        &mut report,
        format!(
            "table {} paused: its changes are held both ways",
            table.table
        ),
    );
    // A table paused already: its pause is in force (the configuration did
    // not change, so nothing is applied again).
    let since = if was_paused { String::new() } else { since };
    if let Err(e) = wait_paused_in_force(control, lc, table, &since, req.timeout).await {
        if !was_paused {
            set_paused(control, lc, table, false).await?;
        }
        let state = if was_paused {
            "stays paused as it was"
        } else {
            "is resumed"
        };
        return Err(refuse(format!(
            "{e}; nothing was changed, the table {state}"
        )));
    }
    let held_from = Instant::now();

    // The statement on each site.
    let mut done: Vec<String> = Vec::new();
    for ((site, statement), conn) in plan.iter().zip(conns.iter_mut()) {
        let ran = match conn {
            SetupConn::Pg(client) => client
                .batch_execute(statement)
                .await
                .map_err(|e| crate::error_chain::error_chain(&e)),
            SetupConn::Mysql(c, _) => {
                use mysql_async::prelude::Queryable;
                c.query_drop(statement.as_str())
                    .await
                    .map_err(|e| mysql_error(&site.name, "run the statement")(e).to_string())
            }
        };
        match ran {
            Ok(()) => {
                step(&mut report, format!("ran on {}: {statement}", site.name));
                done.push(site.name.clone());
            }
            Err(e) if done.is_empty() => {
                if !was_paused {
                    set_paused(control, lc, table, false).await?;
                }
                return Err(refuse(format!(
                    "site {} refused the statement ({e}); nothing was changed, the table is resumed",
                    site.name
                )));
            }
            Err(e) => {
                return Err(refuse(format!(
                    "site {} refused the statement ({e}) after it ran on {}; table {} stays paused (its changes are held, nothing is lost): \
                     make site {} match by hand (or undo the change on {}), then resume it: {}",
                    site.name,
                    done.join(", "),
                    table.table,
                    site.name,
                    done.join(", "),
                    resume_sql(lc, table)
                )));
            }
        }
    }

    // The two tables as a starting link would judge them.
    let stays_paused = |e: crate::Error| {
        refuse(format!(
            "the statement ran on both sites, then: {}. Table {} stays paused (its changes are held): check that the two tables match, then resume it: {}",
            crate::error_chain::error_chain(&e),
            table.table,
            resume_sql(lc, table)
        ))
    };
    if let Err(why) = same_shape(lc, table).await.map_err(stays_paused)? {
        return Err(refuse(format!(
            "the statement ran on both sites, but their tables still differ: {why}. Table {} stays paused (its changes are held): make them match, then resume it: {}",
            table.table,
            resume_sql(lc, table)
        )));
    }
    step(
        &mut report,
        format!("table {} has the same columns on both sites", table.table),
    );
    if was_paused {
        step(
            &mut report,
            format!("table {} was paused before: it stays paused", table.table),
        );
        return Ok(report);
    }
    set_paused(control, lc, table, false)
        .await
        .map_err(stays_paused)?;
    wait_released(control, lc, table, req.timeout)
        .await
        .map_err(&refuse)?;
    report.held_for = Some(held_from.elapsed());
    step(
        &mut report,
        format!(
            "table {} resumed: the changes held meanwhile are applied, and it flows again ({:.1} s held)",
            table.table,
            held_from.elapsed().as_secs_f64()
        ),
    );
    Ok(report)
}

/// The link's table the statement alters, with an explicit
/// `duplex.link_tables` row (its pause is set there).
fn find_table<'l>(lc: &'l LinkConfig, s: &DdlStatement) -> Result<&'l LinkTable, String> {
    let database_names: Vec<String> = [&lc.site_a, &lc.site_b]
        .into_iter()
        .filter_map(|site| {
            crate::mysql::MysqlEndpoint::from_site(site)
                .ok()
                .map(|e| e.database().to_string())
        })
        .collect();
    let table = lc
        .tables
        .iter()
        .find(|t| {
            t.table.name == s.table
                && s.schema.as_ref().is_none_or(|schema| {
                    *schema == t.table.schema || database_names.contains(schema)
                })
        })
        .ok_or_else(|| {
            format!(
                "link {} does not sync a table {}{}",
                lc.link.name,
                s.schema
                    .as_ref()
                    .map(|s| format!("{s}."))
                    .unwrap_or_default(),
                s.table
            )
        })?;
    Ok(table)
}

/// The site's name for the table, quoted for its engine.
fn site_table(site: &Site, table: &crate::canonical::TableName) -> String {
    match site.engine {
        SiteEngine::Postgres => crate::pg::quote_table(table),
        SiteEngine::Mysql => crate::mysql::quote_ident(&table.name),
    }
}

fn resume_sql(lc: &LinkConfig, t: &LinkTable) -> String {
    format!(
        "UPDATE duplex.link_tables SET paused = false WHERE link_id = {} AND schema_name = '{}' AND table_name = '{}'",
        lc.link.link_id,
        t.table.schema.replace('\'', "''"),
        t.table.name.replace('\'', "''")
    )
}

async fn control_now(control: &mut ControlDb) -> Result<String, crate::Error> {
    let rows = control
        .rows(Sql::new(
            "read the control database's clock",
            "SELECT now()::text AS now",
            "SELECT CAST(UTC_TIMESTAMP(6) AS CHAR) AS now",
            &[],
        ))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.text("now").ok())
        .unwrap_or_default())
}

/// Returns whether the table's own `link_tables` row was there to set.
async fn set_paused(
    control: &mut ControlDb,
    lc: &LinkConfig,
    t: &LinkTable,
    paused: bool,
) -> Result<bool, crate::Error> {
    let n = control
        .exec(Sql::new(
            "pause or resume the table",
            "UPDATE duplex.link_tables SET paused = $1 WHERE link_id = $2 AND schema_name = $3 AND table_name = $4",
            "UPDATE duplex.link_tables SET paused = ? WHERE link_id = ? AND schema_name = ? AND table_name = ?",
            &[
                P::Bool(paused),
                P::I32(lc.link.link_id as i32),
                P::Text(Some(&t.table.schema)),
                P::Text(Some(&t.table.name)),
            ],
        ))
        .await?;
    Ok(n == 1)
}

/// Both directions stream now (a DDL while a direction waits would be
/// applied by nobody: its held changes would wait too). Waited for a
/// while: a link that just started shows it within seconds.
async fn streaming_both_ways(control: &mut ControlDb, lc: &LinkConfig) -> Result<(), String> {
    let rows = control
        .rows(Sql::new(
            "read the link's directions",
            "SELECT coalesce(source || '->' || target, '-') AS direction, state FROM duplex.link_overview WHERE link_id = $1",
            "SELECT COALESCE(CONCAT(source, '->', target), '-') AS direction, state FROM duplex.link_overview WHERE link_id = ?",
            &[P::I32(lc.link.link_id as i32)],
        ))
        .await
        .map_err(|e| e.to_string())?;
    let states: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.text("direction").unwrap_or_default(),
                r.opt("state").ok().flatten().unwrap_or_default(),
            )
        })
        .collect();
    if states.len() == 2 && states.iter().all(|(_, s)| s == "streaming") {
        return Ok(());
    }
    Err(format!(
        "duplex run must be running link {} and streaming both ways, so that the table's held changes are applied after the change (now: {}); see duplex status",
        lc.link.name,
        states
            .iter()
            .map(|(d, s)| format!("{d} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// duplex's role may ALTER the table on this PostgreSQL site (its owner,
/// or a member of the owner's role).
async fn may_alter(
    client: &tokio_postgres::Client,
    site: &Site,
    table: &crate::canonical::TableName,
) -> Result<(), crate::Error> {
    let row = client
        .query_opt(
            "SELECT pg_has_role(current_user, c.relowner, 'USAGE'), pg_get_userbyid(c.relowner)::text, current_user::text
               FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&crate::pg::quote_table(table)],
        )
        .await
        .map_err(|source| SetupError::Db {
            site: site.name.clone(),
            context: format!("read the owner of {table}"),
            source,
        })?;
    match row {
        Some(r) if r.get::<_, bool>(0) => Ok(()),
        Some(r) => Err(SetupError::Ddl {
            link: String::new(),
            why: format!(
                "site {}: duplex's role {} may not alter {table} (its owner is {}): grant it the owner's role (GRANT {} TO {}), or run the change by hand: pause the table, alter it on both sites, resume it",
                site.name,
                r.get::<_, String>(2),
                r.get::<_, String>(1),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
            ),
        }
        .into()),
        None => Err(SetupError::NoTable {
            site: site.name.clone(),
            table: table.clone(),
        }
        .into()),
    }
}

/// Wait until the running duplex has the pause in force (the link
/// restarted with it, so no change of the table is applied any more).
async fn wait_paused_in_force(
    control: &mut ControlDb,
    lc: &LinkConfig,
    t: &LinkTable,
    since: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = control
            .rows(Sql::new(
                "read whether the pause is in force",
                "SELECT count(*)::text AS n FROM duplex.table_config_status tc
                   JOIN duplex.config_status cs USING (link_id)
                  WHERE tc.link_id = $1 AND tc.schema_name = $2 AND tc.table_name = $3
                    AND tc.state = 'paused' AND ($4 = '' OR cs.applied_at >= $5::text::timestamptz)",
                "SELECT CAST(COUNT(*) AS CHAR) AS n FROM duplex.table_config_status tc
                   JOIN duplex.config_status cs ON cs.link_id = tc.link_id
                  WHERE tc.link_id = ? AND tc.schema_name = ? AND tc.table_name = ?
                    AND tc.state = 'paused' AND (? = '' OR cs.applied_at >= ?)",
                &[
                    P::I32(lc.link.link_id as i32),
                    P::Text(Some(&t.table.schema)),
                    P::Text(Some(&t.table.name)),
                    P::Text(Some(since)),
                    P::Text(Some(since)),
                ],
            ))
            .await
            .map_err(|e| e.to_string())?;
        if rows.first().and_then(|r| r.text("n").ok()).as_deref() == Some("1") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the running duplex did not put the pause of {} in force within {timeout:?} (see duplex status and duplex.config_status)",
                t.table
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until the table runs again and its held changes are applied.
async fn wait_released(
    control: &mut ControlDb,
    lc: &LinkConfig,
    t: &LinkTable,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = control
            .rows(Sql::new(
                "read whether the held changes are applied",
                "SELECT (SELECT count(*) FROM duplex.table_config_status
                          WHERE link_id = $1 AND schema_name = $2 AND table_name = $3 AND state = 'syncing')::text AS syncing,
                        (SELECT count(*) FROM duplex.quarantine
                          WHERE link_id = $4 AND status IN ('held', 'retry') AND op <> 'schema'
                            AND right(table_name, length($5) + 1) = '.' || $6)::text AS held",
                "SELECT CAST((SELECT COUNT(*) FROM duplex.table_config_status
                          WHERE link_id = ? AND schema_name = ? AND table_name = ? AND state = 'syncing') AS CHAR) AS syncing,
                        CAST((SELECT COUNT(*) FROM duplex.quarantine
                          WHERE link_id = ? AND status IN ('held', 'retry') AND op <> 'schema'
                            AND RIGHT(table_name, CHAR_LENGTH(?) + 1) = CONCAT('.', ?)) AS CHAR) AS held",
                &[
                    P::I32(lc.link.link_id as i32),
                    P::Text(Some(&t.table.schema)),
                    P::Text(Some(&t.table.name)),
                    P::I32(lc.link.link_id as i32),
                    P::Text(Some(&t.table.name)),
                    P::Text(Some(&t.table.name)),
                ],
            ))
            .await
            .map_err(|e| e.to_string())?;
        let get = |k: &str| rows.first().and_then(|r| r.text(k).ok());
        if get("syncing").as_deref() == Some("1") && get("held").as_deref() == Some("0") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "table {} is resumed, but its held changes were not all applied within {timeout:?} (see duplex status --tables and duplex.quarantine)",
                t.table
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Both sites' tables as a starting link judges them (`Err`: how they
/// differ).
async fn same_shape(lc: &LinkConfig, t: &LinkTable) -> Result<Result<(), String>, crate::Error> {
    let names = [&t.table];
    let facts = super::plan::site_facts(lc, &names).await?;
    Ok(
        crate::setup::judge_table(&lc.link, t, [&facts[0], &facts[1]], &names, false)
            .map_err(|why| why.join("; ")),
    )
}
