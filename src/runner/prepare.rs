//! Site work for a link: prepares both sites (slots, publications, binlog
//! positions, capture starts) and builds the link's two directions.

use crate::canonical::TableName;
use crate::control::SiteEngine;

use super::plan::Resolved;
use super::site_conn::{endpoint, mysql_error, setup_conn, SetupConn};
use crate::control::{self, ControlDb, ControlEndpoint, Link, LinkTable, Sql, P};
use crate::journal::JournalSpec;
use crate::mysql::MysqlEndpoint;
use crate::pipeline::{DirectionSpec, PipelineTuning};
use crate::setup::{check_slot_continuity, prepare_mysql_site, prepare_pg_site};
use crate::sink::mysql::MysqlTargetSpec;
use crate::sink::pg::PgTargetSpec;
use crate::sink::{ApplierSpec, SinkSpec, TargetSpec};
use crate::source::mysql::MysqlSourceSpec;
use crate::source::pg::PgSourceSpec;
use crate::source::SourceSpec;

/// The initial sync's pages hold up to this many of the link's batches:
/// each page is one target transaction and one progress write, so larger
/// pages copy faster (5,000-row pages copied 200,000 rows 25-30% faster than
/// 1,000-row ones in `duplex bench`); wide rows make smaller pages
/// (`snapshot::next_page_rows`).
const SNAPSHOT_PAGE_BATCHES: usize = 10;

/// Whether `peer` has applied changes from site `source_id` on `link`.
pub(super) async fn peer_has_position(
    peer: &mut SetupConn,
    source_name: &str,
    source_id: u32,
    link: &Link,
) -> Result<bool, crate::Error> {
    Ok(peer_applied_counter(peer, source_name, source_id, link)
        .await?
        .is_some())
}

/// The furthest source position (its counter) `peer` has applied from site
/// `source_id` on `link`: the highest of the direction's apply workers'
/// (`sink::pg::worker_origins`, or the marker table's rows); `None` when
/// nothing was applied.
pub(super) async fn peer_applied_counter(
    peer: &mut SetupConn,
    source_name: &str,
    source_id: u32,
    link: &Link,
) -> Result<Option<u64>, crate::Error> {
    use mysql_async::prelude::Queryable;
    let counter = match peer {
        SetupConn::Pg(client) => {
            let origins = crate::sink::pg::worker_origins(&link.origin_name(source_id));
            let row = client
                .query_one(
                    "SELECT max(pg_replication_origin_progress(roname, true))::text
                       FROM pg_replication_origin WHERE roname = ANY($1)",
                    &[&origins],
                )
                .await
                .map_err(|e| {
                    crate::Error::sink_error(
                        source_name,
                        crate::sink::SinkError::Pg {
                            context: "read the recorded source position".into(),
                            source: e,
                        },
                    )
                })?;
            row.get::<_, Option<String>>(0)
                .and_then(|t| crate::sink::pg::parse_lsn(&t))
        }
        SetupConn::Mysql(conn, ep) => {
            let sql = format!(
                "SELECT MAX(position) FROM {}.{} WHERE link_id = ? AND source_site = ?",
                crate::mysql::quote_ident(ep.database()),
                crate::mysql::quote_ident(crate::marker::MYSQL_MARKER_TABLE)
            );
            conn.exec_first::<Option<u64>, _, _>(sql, (link.link_id, source_id))
                .await
                .map_err(mysql_error(
                    source_name,
                    "read the recorded source position",
                ))?
                .flatten()
        }
    };
    Ok(counter.filter(|c| *c != 0))
}

/// The site's clock now, in µs since the Unix epoch: the clock of its
/// commit timestamps (PostgreSQL) and stamp columns (MySQL).
async fn site_clock_us(conn: &mut SetupConn, site_name: &str) -> Result<i64, crate::Error> {
    use mysql_async::prelude::Queryable;
    match conn {
        SetupConn::Pg(client) => pg_clock_us(client, site_name).await,
        SetupConn::Mysql(conn, _) => {
            let us: Option<i64> = conn
                .query_first(
                    "SELECT CAST(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(6)) * 1000000 AS SIGNED)",
                )
                .await
                .map_err(mysql_error(site_name, "read the site's clock"))?;
            us.ok_or_else(|| crate::Error::Internal(format!("site {site_name}: no clock reading")))
        }
    }
}

async fn pg_clock_us(
    client: &tokio_postgres::Client,
    site_name: &str,
) -> Result<i64, crate::Error> {
    client
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| {
            crate::Error::sink_error(
                site_name,
                crate::sink::SinkError::Pg {
                    context: "read the site's clock".into(),
                    source: e,
                },
            )
        })
}

/// The configured tables whose changes on this PostgreSQL site begin to be
/// captured by the coming setup: all of them when the site's slot is not
/// there yet, else those not yet in the link's publication.
async fn pg_capture_starting(
    client: &tokio_postgres::Client,
    site_name: &str,
    site_id: u32,
    link: &Link,
    tables: &[&LinkTable],
) -> Result<Vec<TableName>, crate::Error> {
    let err = |e| {
        crate::Error::sink_error(
            site_name,
            crate::sink::SinkError::Pg {
                context: "read the replication slot and publication".into(),
                source: e,
            },
        )
    };
    let slot_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&link.slot_name(site_id)],
        )
        .await
        .map_err(err)?
        .get(0);
    let published: std::collections::HashSet<TableName> = if slot_exists {
        client
            .query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
                &[&link.publication_name()],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect()
    } else {
        Default::default()
    };
    Ok(tables
        .iter()
        .map(|t| t.table.clone())
        .filter(|t| !published.contains(t))
        .collect())
}

/// Record that a site's changes to `tables` begin to be captured for the
/// link; `started_us` is the site's clock read before the capture starts.
async fn record_capture_start(
    control: &mut ControlDb,
    link: &Link,
    site_id: u32,
    tables: &[TableName],
    started_us: i64,
) -> Result<(), crate::Error> {
    for t in tables {
        let name = t.to_string();
        control
            .exec(Sql::new(
                "record when a site's changes began to be captured",
                "INSERT INTO duplex.capture_starts (link_id, site_id, table_name, started_us)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (link_id, site_id, table_name)
                 DO UPDATE SET started_us = EXCLUDED.started_us, recorded_at = now()",
                "INSERT INTO duplex.capture_starts (link_id, site_id, table_name, started_us)
                 VALUES (?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE started_us = VALUES(started_us), recorded_at = UTC_TIMESTAMP(6)",
                &[
                    P::I32(link.link_id as i32),
                    P::I32(site_id as i32),
                    P::Text(Some(&name)),
                    P::I64(started_us),
                ],
            ))
            .await?;
    }
    Ok(())
}

/// Per (site, configured table): when the site's changes to it began to be
/// captured for the link, where duplex recorded it.
async fn capture_starts(
    control: &mut ControlDb,
    link: &Link,
) -> Result<std::collections::HashMap<(u32, String), i64>, crate::Error> {
    let rows = control
        .rows(Sql::new(
            "read duplex.capture_starts",
            "SELECT site_id, table_name, started_us FROM duplex.capture_starts WHERE link_id = $1",
            "SELECT site_id, table_name, started_us FROM duplex.capture_starts WHERE link_id = ?",
            &[P::I32(link.link_id as i32)],
        ))
        .await?;
    let mut out = std::collections::HashMap::new();
    for r in rows {
        out.insert(
            (r.parse("site_id")?, r.text("table_name")?),
            r.parse("started_us")?,
        );
    }
    Ok(out)
}

/// The binlog reader's server_id: unique per direction, far from real servers' ids.
fn replica_server_id(link: &Link, source_site: u32) -> Result<u32, crate::Error> {
    // The control schema bounds link ids (1..=9999) and site ids (1..=65535),
    // so this never overflows or collides; checked all the same.
    u64::from(link.link_id)
        .checked_mul(65_536)
        .and_then(|v| v.checked_add(0x4000_0000 + u64::from(source_site.min(65_535))))
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            crate::Error::Internal(format!(
                "link {} site {source_site}: no binlog replica server_id fits",
                link.link_id
            ))
        })
}

/// A binlog source has no slot that remembers where a new link started: on
/// first start, record the source's current position as the peer's applied
/// position, so that a restart before the first change loses nothing.
#[allow(clippy::too_many_arguments)]
async fn record_initial_binlog_position(
    source: &mut SetupConn,
    source_name: &str,
    source_id: u32,
    peer: &mut SetupConn,
    link: &Link,
    tables: &[&LinkTable],
    control: &mut ControlDb,
) -> Result<(), crate::Error> {
    use mysql_async::prelude::Queryable;
    if !matches!(source, SetupConn::Mysql(..)) {
        return Ok(());
    }
    if !peer_has_position(peer, source_name, source_id, link).await? {
        // The site's changes begin to be captured now: earlier writes are
        // in no stream (the time is read first: earlier is the safe side).
        let started_us = site_clock_us(source, source_name).await?;
        let tables: Vec<TableName> = tables.iter().map(|t| t.table.clone()).collect();
        record_capture_start(control, link, source_id, &tables, started_us).await?;
    }
    let SetupConn::Mysql(conn, _) = source else {
        return Ok(());
    };
    let position = crate::source::mysql::current_position(conn)
        .await
        .map_err(|e| crate::Error::source_error(source_name, e))?;
    match peer {
        SetupConn::Pg(client) => {
            let origin = link.origin_name(source_id);
            client
                .execute(
                    "SELECT pg_replication_origin_advance($1, $2::text::pg_lsn)
                      WHERE coalesce(pg_replication_origin_progress($1, true), '0/0') = '0/0'",
                    &[&origin, &crate::sink::pg::lsn_text(position.counter())],
                )
                .await
                .map_err(|e| {
                    crate::Error::sink_error(
                        source_name,
                        crate::sink::SinkError::Pg {
                            context: "record the initial binlog position".into(),
                            source: e,
                        },
                    )
                })?;
        }
        SetupConn::Mysql(conn, ep) => {
            let sql = format!(
                "INSERT INTO {}.{} (link_id, source_site, position, position_text) VALUES (?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE position = IF(position = 0, VALUES(position), position)",
                crate::mysql::quote_ident(ep.database()),
                crate::mysql::quote_ident(crate::marker::MYSQL_MARKER_TABLE)
            );
            conn.exec_drop(
                sql,
                (
                    link.link_id,
                    source_id,
                    position.counter(),
                    position.to_string(),
                ),
            )
            .await
            .map_err(mysql_error(
                source_name,
                "record the initial binlog position",
            ))?;
        }
    }
    Ok(())
}

/// Prepare both sites of a link and build its two directions.
pub(super) async fn prepare_link(
    resolved: &Resolved,
    tuning: &PipelineTuning,
    control: &ControlEndpoint,
) -> Result<Vec<DirectionSpec>, crate::Error> {
    let lc = &resolved.effective;
    let link = &lc.link;
    let tables: Vec<&LinkTable> = lc.tables.iter().collect();
    let (a, b) = (&lc.site_a, &lc.site_b);
    let mut conn_a = setup_conn(a).await?;
    let mut conn_b = setup_conn(b).await?;
    let mut control_db = control.connect("duplex setup").await?;
    // Whether a MySQL/MariaDB peer has applied changes of a PostgreSQL site
    // (read first: the loop below holds the peer's connection shared).
    let mut mysql_peer_applied = std::collections::HashMap::new();
    for (this, peer) in [(a, b), (b, a)] {
        let peer_conn = if peer.site_id == a.site_id {
            &mut conn_a
        } else {
            &mut conn_b
        };
        if this.engine == control::SiteEngine::Postgres && matches!(peer_conn, SetupConn::Mysql(..))
        {
            let applied = match peer_has_position(peer_conn, &this.name, this.site_id, link).await {
                Ok(applied) => applied,
                // No marker table yet: a new link, nothing applied.
                Err(crate::Error::Setup(e))
                    if matches!(
                        e.as_ref(),
                        crate::setup::SetupError::MysqlDb {
                            source: mysql_async::Error::Server(se),
                            ..
                        } if se.code == 1146
                    ) =>
                {
                    false
                }
                Err(e) => return Err(e),
            };
            mysql_peer_applied.insert(this.site_id, applied);
        }
    }
    // Each site in turn (a PostgreSQL site checks its slot against the peer's progress).
    for (this, peer) in [(a, b), (b, a)] {
        let (this_conn, peer_conn) = if this.site_id == a.site_id {
            (&mut conn_a, &conn_b)
        } else {
            (&mut conn_b, &conn_a)
        };
        match this_conn {
            SetupConn::Pg(client) => {
                let starting =
                    pg_capture_starting(client, &this.name, this.site_id, link, &tables).await?;
                if !starting.is_empty() {
                    // Read before the slot or publication changes: earlier
                    // is the safe side (fewer rows count as seeded).
                    let clock = pg_clock_us(client, &this.name).await?;
                    record_capture_start(&mut control_db, link, this.site_id, &starting, clock)
                        .await?;
                }
                match peer_conn {
                    SetupConn::Pg(peer_client) => {
                        check_slot_continuity(
                            client,
                            &this.name,
                            peer_client,
                            &peer.name,
                            this.site_id,
                            link,
                        )
                        .await?
                    }
                    SetupConn::Mysql(_, ep) => {
                        let applied = mysql_peer_applied
                            .get(&this.site_id)
                            .copied()
                            .unwrap_or(false);
                        mysql_peer_slot_continuity(
                            client,
                            &this.name,
                            applied,
                            &peer.name,
                            ep.database(),
                            this.site_id,
                            link,
                        )
                        .await?;
                    }
                }
                prepare_pg_site(
                    client,
                    &this.name,
                    this.site_id,
                    peer.site_id,
                    link,
                    &tables,
                )
                .await?;
            }
            SetupConn::Mysql(conn, ep) => {
                let database = ep.database().to_string();
                prepare_mysql_site(conn, &this.name, &database, peer.site_id, link, &tables)
                    .await?;
            }
        }
    }
    record_initial_binlog_position(
        &mut conn_a,
        &a.name,
        a.site_id,
        &mut conn_b,
        link,
        &tables,
        &mut control_db,
    )
    .await?;
    record_initial_binlog_position(
        &mut conn_b,
        &b.name,
        b.site_id,
        &mut conn_a,
        link,
        &tables,
        &mut control_db,
    )
    .await?;
    let starts = capture_starts(&mut control_db, link).await?;
    let capture_start = |site: u32, t: &TableName| starts.get(&(site, t.to_string())).copied();

    let mut specs = Vec::new();
    for (src, dst) in [(a, b), (b, a)] {
        // Owned columns in the target's names (they are configured in site_a's).
        let target_policy = |t: &LinkTable| crate::conflict::TablePolicy {
            owners: t.owners_on(link, dst.site_id),
            ..t.policy.clone()
        };
        let mut mapping = std::collections::HashMap::new();
        for t in &tables {
            let m = t.mapping(link, src.site_id).map_err(|e| {
                crate::Error::Control(control::ControlError::Invalid(format!(
                    "link {} table {}: {e}",
                    link.name, t.table
                )))
            })?;
            mapping.insert(t.table.name.clone(), m);
        }
        let held_tables: std::collections::HashSet<String> = tables
            .iter()
            .filter(|t| t.paused)
            .map(|t| t.table.name.clone())
            .collect();
        let field_merge_tables: std::collections::HashSet<String> = tables
            .iter()
            .filter(|t| matches!(t.policy.policy, crate::conflict::Policy::FieldMerge { .. }))
            .map(|t| t.table.name.clone())
            .collect();
        let stamping = crate::source::Stamping {
            field_merge_tables: field_merge_tables.clone(),
            unsynced_columns: mapping
                .iter()
                .filter(|(_, m)| !m.dropped_columns().is_empty())
                .map(|(t, m)| (t.clone(), m.dropped_columns().clone()))
                .collect(),
        };
        // Tables whose target triggers are to fire for applied rows.
        let fire_triggers: std::collections::HashSet<String> = tables
            .iter()
            .filter(|t| t.fire_triggers)
            .map(|t| t.table.name.clone())
            .collect();
        let source = match src.engine {
            SiteEngine::Postgres => SourceSpec::Pg(PgSourceSpec {
                site_id: src.site_id,
                endpoint: endpoint(src)?,
                slot: link.slot_name(src.site_id),
                publication: link.publication_name(),
                marker_column: link.marker_column.clone(),
                start: None,
                buffer_events: tuning.channel_events,
                stamping: stamping.clone(),
                tables: tables.iter().map(|t| t.table.clone()).collect(),
                take_over: false,
            }),
            SiteEngine::Mysql => SourceSpec::Mysql(MysqlSourceSpec {
                site_id: src.site_id,
                endpoint: MysqlEndpoint::from_site(src)?,
                replica_server_id: replica_server_id(link, src.site_id)?,
                marker_column: link.marker_column.clone(),
                stamp_column: link.stamp_column(),
                marker_table: crate::marker::MYSQL_MARKER_TABLE.to_string(),
                tables: tables.iter().map(|t| t.table.name.clone()).collect(),
                start: None,
                stamping: stamping.clone(),
            }),
        };
        let applier = ApplierSpec {
            site_id: dst.site_id,
            max_batch_rows: tuning.max_batch_rows,
            journal: JournalSpec {
                control: control.clone(),
                link_id: link.link_id,
                source_site: src.site_id,
                target_site: dst.site_id,
            },
            held_tables: held_tables.clone(),
            schema_holds: Default::default(),
            link_name: link.name.clone(),
            source_name: src.name.clone(),
            source_catalog: crate::sink::source_catalog::SourceCatalogSpec::of(&source),
        };
        let target = match dst.engine {
            SiteEngine::Postgres => TargetSpec::Pg(PgTargetSpec {
                endpoint: endpoint(dst)?,
                origin: link.origin_name(src.site_id),
                marker_column: link.marker_column.clone(),
                tables: tables.iter().map(|t| t.table.clone()).collect(),
                policies: tables
                    .iter()
                    .map(|t| (t.table.clone(), target_policy(t)))
                    .collect(),
                capture_starts: tables
                    .iter()
                    .filter_map(|t| Some((t.table.clone(), capture_start(dst.site_id, &t.table)?)))
                    .collect(),
                replica_role: resolved
                    .replica_role
                    .get(&dst.site_id)
                    .copied()
                    .unwrap_or(false),
                fire_triggers: fire_triggers.clone(),
                take_over: false,
                worker: 0,
                tombstone_tables: Default::default(),
                described: Default::default(),
            }),
            SiteEngine::Mysql => TargetSpec::Mysql(MysqlTargetSpec {
                endpoint: MysqlEndpoint::from_site(dst)?,
                link_id: link.link_id,
                source_site: src.site_id,
                marker_column: link.marker_column.clone(),
                stamp_column: link.stamp_column(),
                policies: tables
                    .iter()
                    .map(|t| (t.table.name.clone(), target_policy(t)))
                    .collect(),
                capture_starts: tables
                    .iter()
                    .filter_map(|t| {
                        Some((t.table.name.clone(), capture_start(dst.site_id, &t.table)?))
                    })
                    .collect(),
                worker: 0,
                lock_waits: Default::default(),
                tombstone_tables: Default::default(),
                lease_term: None,
                described: Default::default(),
            }),
        };
        let sink = SinkSpec { applier, target };
        specs.push(DirectionSpec {
            name: format!("{}:{}->{}", link.name, src.name, dst.name),
            link_name: link.name.clone(),
            source_name: src.name.clone(),
            target_name: dst.name.clone(),
            source,
            sink,
            tuning: PipelineTuning {
                apply_workers: link.apply_workers,
                ..tuning.clone()
            },
            tombstone_retention: link.tombstone_retention,
            mapping: crate::mapping::DirectionMapping::new(mapping),
            snapshot: Some(crate::snapshot::SnapshotSpec {
                link_id: link.link_id,
                source: src.clone(),
                target_site: dst.site_id,
                tables: tables
                    .iter()
                    .map(|t| crate::snapshot::SnapshotTable {
                        table: t.table.clone(),
                        initial_sync: t.initial_sync,
                        paused: t.paused,
                        field_merge: field_merge_tables.contains(&t.table.name),
                        unsynced_columns: stamping
                            .unsynced_columns
                            .get(&t.table.name)
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect(),
                marker_column: link.marker_column.clone(),
                stamp_column: link.stamp_column(),
                slot_name: link.slot_name(src.site_id),
                control: control.clone(),
                rows_per_second: link.snapshot_rows_per_second,
                page_rows: tuning.max_batch_rows.max(100) * SNAPSHOT_PAGE_BATCHES,
            }),
        });
    }
    Ok(specs)
}

/// [`check_slot_continuity`] against a MySQL/MariaDB peer, whose progress is
/// its `_duplex_applied` rows (`peer_applied`: it has applied changes of this
/// site): a missing slot is refused as lost, not silently created anew.
async fn mysql_peer_slot_continuity(
    client: &tokio_postgres::Client,
    site_name: &str,
    peer_applied: bool,
    peer_name: &str,
    peer_database: &str,
    site_id: u32,
    link: &Link,
) -> Result<(), crate::Error> {
    if !peer_applied {
        return Ok(());
    }
    let slot = link.slot_name(site_id);
    if crate::setup::slot_state(client, site_name, &slot)
        .await?
        .is_some()
    {
        return Ok(());
    }
    Err(crate::setup::SetupError::SlotLost {
        link: link.name.clone(),
        site: site_name.into(),
        slot,
        peer: peer_name.into(),
        reset: format!(
            "its recorded position: DELETE FROM {}.{} WHERE link_id = {} AND source_site = {site_id}",
            crate::mysql::quote_ident(peer_database),
            crate::mysql::quote_ident(crate::marker::MYSQL_MARKER_TABLE),
            link.link_id
        ),
        applied: "its recorded position".into(),
    }
    .into())
}
