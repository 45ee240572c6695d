//! `duplex resync`: bring a link back from a lost source position (an
//! invalidated or dropped slot, a purged binlog) or a table back to equal,
//! by the initial sync's machinery.
//!
//! What it does, site work only (the copying is the running duplex's):
//! 1. per direction, whether the source can still send what the peer has
//!    not applied (`lost_position`); where it cannot (or `new_position` asks
//!    it), the lost slot is dropped and the peer's recorded progress reset,
//!    so that the next start takes a new position instead of refusing to
//!    skip the gap (`setup::check_slot_continuity`);
//! 2. the tables' copies in both directions are marked to be made again
//!    (`duplex.snapshot_progress` state `copying` from the first key), even
//!    for tables whose `initial_sync` is off: both sites keep their rows, a
//!    row that differs is settled by the table's policy and recorded, as in
//!    an initial sync;
//! 3. `links.resync_requests` is counted up: a running duplex sees a new
//!    configuration and restarts the link, which re-creates the slot (or
//!    takes the binlog's current position) before it copies, so every change
//!    made during or after the copy streams after it.
//!
//! A lost position loses changes of every table: then every table of the
//! link is copied, and a `--table` resync is refused.

use std::time::{Duration, Instant};

use super::prepare::{peer_applied_counter, peer_has_position};
use super::site_conn::{mysql_error, setup_conn, SetupConn};
use crate::canonical::{SourceKind, SourcePosition};
use crate::control::{ControlDb, Link, LinkConfig, Site, Sql, P};
use crate::setup::SetupError;
use crate::source::mysql::binlog_file_seq;

/// What `duplex resync` did.
#[derive(Debug, Clone, Default)]
pub struct ResyncReport {
    /// One line per direction whose position was lost and reset.
    pub reset: Vec<String>,
    /// The tables (as configured) each direction copies again.
    pub tables: Vec<String>,
    /// Of those, the paused ones: copied once resumed.
    pub paused: Vec<String>,
}

/// Resync link `lc`: every table, or only `table` (name or schema.name).
/// `new_position`: take a new source position even where the current one
/// looks readable (a publication dropped and created again, a binlog reset:
/// cases the sites' catalogs do not show).
pub async fn resync_link(
    control: &mut ControlDb,
    lc: &LinkConfig,
    table: Option<&str>,
    new_position: bool,
) -> Result<ResyncReport, crate::Error> {
    let link = &lc.link;
    let refuse = |why: String| {
        crate::Error::from(SetupError::Resync {
            link: link.name.clone(),
            why,
        })
    };
    let (a, b) = (&lc.site_a, &lc.site_b);
    let mut conn_a = setup_conn(a).await?;
    let mut conn_b = setup_conn(b).await?;
    let mut lost = Vec::new();
    for (src, dst) in [(a, b), (b, a)] {
        let (src_conn, dst_conn) = source_first(src.site_id == a.site_id, &mut conn_a, &mut conn_b);
        let why = match lost_position(src_conn, src, dst_conn, link).await? {
            Some(why) => Some(why),
            None if new_position => Some("a new position was asked for (--new-position)".into()),
            None => None,
        };
        if let Some(why) = why {
            lost.push((src, dst, why));
        }
    }
    let chosen: Vec<&crate::control::LinkTable> = lc
        .tables
        .iter()
        .filter(|t| t.enabled)
        .filter(|t| table.is_none_or(|want| want == t.table.name || want == t.table.to_string()))
        .collect();
    if let (Some(want), Some(t)) = (table, chosen.iter().find(|t| t.paused)) {
        return Err(refuse(format!(
            "table {want} ({}) is paused (duplex.link_tables.paused): its copy would wait until it is resumed. Resume it first",
            t.table
        )));
    }
    let tables: Vec<String> = chosen.iter().map(|t| t.table.to_string()).collect();
    let paused: Vec<String> = chosen
        .iter()
        .filter(|t| t.paused)
        .map(|t| t.table.to_string())
        .collect();
    if let Some(want) = table {
        if let Some((src, _, why)) = lost.first() {
            return Err(refuse(format!(
                "{}'s position is lost ({why}): changes of every table of the link are gone with it, so every table must be copied again. Run `duplex resync --link {}` without --table",
                src.name, link.name
            )));
        }
        if tables.is_empty() {
            return Err(refuse(format!(
                "no enabled table {want} in the link (see duplex.link_tables)"
            )));
        }
    }
    let mut report = ResyncReport {
        tables: tables.clone(),
        paused,
        ..ResyncReport::default()
    };
    // Nothing is changed unless every reset can be made: a half-made one
    // (a slot dropped, its peer's progress not reset) would let the next
    // start skip the gap.
    for (src, dst, _) in &lost {
        let (src_conn, dst_conn) = source_first(src.site_id == a.site_id, &mut conn_a, &mut conn_b);
        can_reset(src_conn, src, dst_conn, dst, link).await?;
    }
    // The copies first: whatever happens next, they are asked for (a copy
    // never runs from a lost position: `snapshot::check_resumable`). Each
    // in the directions its table flows.
    for (src, dst) in [(a, b), (b, a)] {
        let from_a = src.site_id == a.site_id;
        let flowing: Vec<String> = chosen
            .iter()
            .filter(|t| match t.direction {
                crate::mapping::TableDirection::Both => true,
                crate::mapping::TableDirection::AToB => from_a,
                crate::mapping::TableDirection::BToA => !from_a,
            })
            .map(|t| t.table.to_string())
            .collect();
        request_copies(control, link, src.site_id, dst.site_id, &flowing).await?;
    }
    for (src, dst, why) in lost {
        let (src_conn, dst_conn) = source_first(src.site_id == a.site_id, &mut conn_a, &mut conn_b);
        let done = reset_position(src_conn, src, dst_conn, dst, link).await?;
        report
            .reset
            .push(format!("{} -> {}: {why}; {done}", src.name, dst.name));
    }
    control
        .exec(Sql::new(
            "count a resync request",
            "UPDATE duplex.links SET resync_requests = resync_requests + 1 WHERE link_id = $1",
            "UPDATE duplex.links SET resync_requests = resync_requests + 1 WHERE link_id = ?",
            &[P::I32(link.link_id as i32)],
        ))
        .await?;
    Ok(report)
}

/// The connections to a direction's source and target, `a`'s first when it
/// is the source.
fn source_first<'c>(
    source_is_a: bool,
    a: &'c mut SetupConn,
    b: &'c mut SetupConn,
) -> (&'c mut SetupConn, &'c mut SetupConn) {
    if source_is_a {
        (a, b)
    } else {
        (b, a)
    }
}

/// Why `src` can no longer send what `dst` has not applied; `None` when it
/// can, or when nothing was applied from it yet (the next start takes a
/// position of its own).
async fn lost_position(
    src_conn: &mut SetupConn,
    src: &Site,
    dst_conn: &mut SetupConn,
    link: &Link,
) -> Result<Option<String>, crate::Error> {
    use mysql_async::prelude::Queryable;
    match src_conn {
        SetupConn::Pg(client) => {
            let slot = link.slot_name(src.site_id);
            let db = |context: &'static str| {
                let site = src.name.clone();
                move |source| {
                    crate::Error::from(SetupError::Db {
                        site,
                        context: context.into(),
                        source,
                    })
                }
            };
            // invalidation_reason is PostgreSQL 17's; wal_status 'lost' says
            // the same on 15 and 16.
            let row = client
                .query_opt(
                    "SELECT s.wal_status, to_jsonb(s) ->> 'invalidation_reason',
                            EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $2)
                       FROM pg_replication_slots s WHERE s.slot_name = $1",
                    &[&slot, &link.publication_name()],
                )
                .await
                .map_err(db("read the replication slot"))?;
            Ok(match row {
                None if peer_has_position(dst_conn, &src.name, src.site_id, link).await? => {
                    Some(format!("replication slot {slot} is gone"))
                }
                None => None,
                Some(r) => {
                    let (status, reason, publication): (Option<String>, Option<String>, bool) =
                        (r.get(0), r.get(1), r.get(2));
                    if let Some(reason) = reason {
                        Some(format!(
                            "replication slot {slot} was invalidated ({reason})"
                        ))
                    } else if status.as_deref() == Some("lost") {
                        Some(format!(
                            "replication slot {slot} was invalidated (wal_status lost)"
                        ))
                    } else if !publication {
                        Some(format!(
                            "publication {} was dropped: the slot cannot be read past that point",
                            link.publication_name()
                        ))
                    } else {
                        None
                    }
                }
            })
        }
        SetupConn::Mysql(conn, _) => {
            let Some(counter) =
                peer_applied_counter(dst_conn, &src.name, src.site_id, link).await?
            else {
                return Ok(None);
            };
            let applied = SourcePosition::from_counter(SourceKind::Binlog, counter);
            let SourcePosition::Binlog { file_seq, .. } = applied else {
                return Ok(None);
            };
            let logs: Vec<String> = conn
                .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
                    row.get::<String, _>(0).unwrap_or_default()
                })
                .await
                .map_err(mysql_error(
                    &src.name,
                    "list the binlogs (SHOW BINARY LOGS)",
                ))?;
            let has = logs
                .iter()
                .any(|name| binlog_file_seq(name) == Some(file_seq));
            Ok((!has).then(|| {
                format!(
                    "the binlog file of {} is gone from {} (purged or reset); its oldest is {}",
                    applied,
                    src.name,
                    logs.first().map(String::as_str).unwrap_or("none")
                )
            }))
        }
    }
}

/// Drop `src`'s lost slot (PostgreSQL) and reset `dst`'s recorded progress
/// from it; says what was done.
async fn reset_position(
    src_conn: &mut SetupConn,
    src: &Site,
    dst_conn: &mut SetupConn,
    dst: &Site,
    link: &Link,
) -> Result<String, crate::Error> {
    use mysql_async::prelude::Queryable;
    let mut done = Vec::new();
    if let SetupConn::Pg(client) = src_conn {
        let slot = link.slot_name(src.site_id);
        if drop_slot(client, &src.name, &slot, &link.name).await? {
            done.push(format!("dropped slot {slot} on {}", src.name));
        }
    }
    match dst_conn {
        SetupConn::Pg(client) => {
            let origins = crate::sink::pg::worker_origins(&link.origin_name(src.site_id));
            let dropped = client
                .query_one(
                    "SELECT count(pg_replication_origin_drop(roname))
                       FROM pg_replication_origin WHERE roname = ANY($1)",
                    &[&origins],
                )
                .await
                .map_err(|source| {
                    crate::Error::from(SetupError::Resync {
                        link: link.name.clone(),
                        why: format!(
                            "site {}: cannot reset the progress applied from {} (its replication origins): {}. \
                             If a duplex process is applying this direction there, its direction must be failing \
                             (state needs_operator) for a resync; otherwise stop the link first",
                            dst.name,
                            src.name,
                            crate::error_chain::error_chain(&source)
                        ),
                    })
                })?
                .get::<_, i64>(0);
            done.push(format!(
                "reset {}'s progress from {} ({dropped} replication origins)",
                dst.name, src.name
            ));
        }
        SetupConn::Mysql(conn, ep) => {
            let sql = format!(
                "DELETE FROM {}.{} WHERE link_id = ? AND source_site = ?",
                crate::mysql::quote_ident(ep.database()),
                crate::mysql::quote_ident(crate::marker::MYSQL_MARKER_TABLE)
            );
            conn.exec_drop(sql, (link.link_id, src.site_id))
                .await
                .map_err(mysql_error(&dst.name, "reset the recorded position"))?;
            done.push(format!(
                "reset {}'s recorded position from {}",
                dst.name, src.name
            ));
        }
    }
    Ok(done.join("; "))
}

/// Refuse, before anything is changed, a reset that cannot be made: a slot
/// a running duplex streams from, replication origins an applier holds.
async fn can_reset(
    src_conn: &mut SetupConn,
    src: &Site,
    dst_conn: &mut SetupConn,
    dst: &Site,
    link: &Link,
) -> Result<(), crate::Error> {
    let refuse = |why: String| {
        crate::Error::from(SetupError::Resync {
            link: link.name.clone(),
            why: format!(
                "{why}. Nothing was changed. A lost position is never read by duplex; to take a new position for a direction that streams, \
                 pause the link first (UPDATE duplex.links SET enabled = false WHERE name = '{}'), run the resync, then enable it",
                link.name.replace('\'', "''")
            ),
        })
    };
    if let SetupConn::Pg(client) = src_conn {
        let slot = link.slot_name(src.site_id);
        if let Some(Some(pid)) = slot_when_free(client, &src.name, &slot).await? {
            return Err(refuse(format!(
                "site {}: replication slot {slot} is in use by process {pid}: a duplex process streams from it",
                src.name
            )));
        }
    }
    if let SetupConn::Pg(client) = dst_conn {
        // Whether an applier holds one of the origins: taken for this
        // session and let go at once (55006 when held). Not dropped and
        // rolled back: a drop clears the origin's progress outside the
        // transaction.
        let origins = crate::sink::pg::worker_origins(&link.origin_name(src.site_id));
        let existing: Vec<String> = client
            .query(
                "SELECT roname FROM pg_replication_origin WHERE roname = ANY($1)",
                &[&origins],
            )
            .await
            .map_err(|source| SetupError::Db {
                site: dst.name.clone(),
                context: "list the replication origins".into(),
                source,
            })?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for origin in existing {
            let tried = match client
                .execute("SELECT pg_replication_origin_session_setup($1)", &[&origin])
                .await
            {
                Ok(_) => {
                    client
                        .batch_execute("SELECT pg_replication_origin_session_reset()")
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = tried {
                return Err(refuse(format!(
                    "site {}: the progress applied from {} cannot be reset (replication origin {origin}): {}",
                    dst.name,
                    src.name,
                    crate::error_chain::error_chain(&e)
                )));
            }
        }
    }
    Ok(())
}

/// How long a slot still in use (a failing direction's recheck reading it
/// for a moment) is waited for before the resync gives up.
const SLOT_BUSY_WAIT: Duration = Duration::from_secs(20);

/// Replication slot `slot` once nobody streams from it, waiting up to
/// [`SLOT_BUSY_WAIT`] (a failing direction's recheck holds it for a moment):
/// see `setup::slot_when_free`.
async fn slot_when_free(
    client: &tokio_postgres::Client,
    site: &str,
    slot: &str,
) -> Result<Option<Option<i32>>, crate::Error> {
    Ok(crate::setup::slot_when_free(client, site, slot, SLOT_BUSY_WAIT).await?)
}

/// Drop `slot` if it exists; whether it did.
async fn drop_slot(
    client: &tokio_postgres::Client,
    site: &str,
    slot: &str,
    link: &str,
) -> Result<bool, crate::Error> {
    let started = Instant::now();
    loop {
        match slot_when_free(client, site, slot).await? {
            None => return Ok(false),
            Some(Some(pid)) => {
                return Err(SetupError::Resync {
                    link: link.into(),
                    why: format!(
                        "site {site}: replication slot {slot} is in use by process {pid} and still readable by it: a duplex process streams from it. \
                         A lost slot is never streamed from; to take a new position anyway, stop that duplex first (or pause the link)"
                    ),
                }
                .into())
            }
            Some(None) => match client
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                .await
            {
                Ok(_) => return Ok(true),
                // Taken between the two statements: wait as for a busy slot.
                Err(e) if started.elapsed() < SLOT_BUSY_WAIT => {
                    tracing::debug!(error = %e, "slot busy; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(source) => {
                    return Err(SetupError::Db {
                        site: site.into(),
                        context: format!("drop replication slot {slot}"),
                        source,
                    }
                    .into())
                }
            },
        }
    }
}

/// Mark `tables` of the direction `source` -> `target` to be copied again
/// from their first key.
async fn request_copies(
    control: &mut ControlDb,
    link: &Link,
    source: u32,
    target: u32,
    tables: &[String],
) -> Result<(), crate::Error> {
    for table in tables {
        control
            .exec(Sql::new(
                "request a copy (duplex.snapshot_progress)",
                "INSERT INTO duplex.snapshot_progress (link_id, source_site, target_site, table_name, state)
                 VALUES ($1, $2, $3, $4, 'copying')
                 ON CONFLICT (link_id, source_site, table_name) DO UPDATE SET
                     state = 'copying', rows_done = 0, last_key = NULL, started_at = now(),
                     finished_at = NULL, updated_at = now()",
                "INSERT INTO duplex.snapshot_progress (link_id, source_site, target_site, table_name, state)
                 VALUES (?, ?, ?, ?, 'copying')
                 ON DUPLICATE KEY UPDATE state = 'copying', rows_done = 0, last_key = NULL,
                     started_at = UTC_TIMESTAMP(6), finished_at = NULL, updated_at = UTC_TIMESTAMP(6)",
                &[
                    P::I32(link.link_id as i32),
                    P::I32(source as i32),
                    P::I32(target as i32),
                    P::Text(Some(table)),
                ],
            ))
            .await?;
    }
    Ok(())
}
