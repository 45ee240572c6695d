//! Runs every enabled link of the control schema: prepares the sites, starts
//! both directions of each link, and writes their status back to the control
//! schema every second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::canonical::TableName;
use crate::control::SiteEngine;
use std::collections::{BTreeMap, HashMap};

use crate::control::{
    self, ControlDb, ControlEndpoint, DirectionStatus, Link, LinkConfig, LinkTable, Site, Sql, P,
};
use crate::mysql::MysqlEndpoint;
use crate::pg::PgEndpoint;
use crate::pipeline::{error_chain, supervise_direction, DirectionSpec, PipelineTuning};
use crate::setup::{
    check_slot_continuity, judge_table, mysql_site_facts, pg_site_facts, prepare_mysql_site,
    prepare_pg_site,
};
use crate::sink::mysql::MysqlSinkSpec;
use crate::sink::pg::PgSinkSpec;
use crate::sink::quarantine::QuarantineSpec;
use crate::sink::SinkSpec;
use crate::source::mysql::MysqlSourceSpec;
use crate::source::pg::PgSourceSpec;
use crate::source::SourceSpec;
use crate::stats::DirectionStats;

/// One running direction of a link.
#[derive(Debug, Clone)]
pub struct DirectionHandle {
    pub link_id: u32,
    pub source_site: u32,
    pub target_site: u32,
    pub name: String,
    pub stats: Arc<DirectionStats>,
}

/// The directions the process knows of. A direction's stats live as long as
/// its link is configured: a link restarted by a configuration change keeps
/// counting where it was.
#[derive(Default)]
struct Registry {
    directions: std::sync::Mutex<Vec<DirectionHandle>>,
    /// The counters earlier runs wrote, by (link, source site): a direction
    /// this process starts carries on from them.
    totals: std::sync::Mutex<HashMap<(u32, u32), control::StatusTotals>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DirectionHandle>> {
        // A panic while holding the lock cannot leave the list half-written.
        self.directions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn list(&self) -> Vec<DirectionHandle> {
        self.lock().clone()
    }

    fn stats_for(
        &self,
        link_id: u32,
        spec: &DirectionSpec,
        target_site: u32,
    ) -> Arc<DirectionStats> {
        let mut directions = self.lock();
        let source_site = spec.source.site_id();
        if let Some(d) = directions
            .iter_mut()
            .find(|d| d.link_id == link_id && d.source_site == source_site)
        {
            d.name = spec.name.clone();
            d.target_site = target_site;
            return d.stats.clone();
        }
        let stats = Arc::new(DirectionStats::new(spec.source.kind()));
        let earlier = self
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(link_id, source_site));
        if let Some(totals) = earlier {
            stats.seed(&totals);
        }
        directions.push(DirectionHandle {
            link_id,
            source_site,
            target_site,
            name: spec.name.clone(),
            stats: stats.clone(),
        });
        stats
    }

    fn set_link_state(&self, link_id: u32, state: &str) {
        for d in self.lock().iter().filter(|d| d.link_id == link_id) {
            d.stats.set_state(state);
        }
    }

    /// A direction of the link is failing (retrying after an error).
    fn link_failing(&self, link_id: u32) -> bool {
        self.lock().iter().any(|d| {
            d.link_id == link_id && matches!(d.stats.state().as_str(), "retrying" | "error")
        })
    }

    fn remove_link(&self, link_id: u32) {
        self.lock().retain(|d| d.link_id != link_id);
    }

    /// Forget directions of `link_id` that no longer exist (its sites changed).
    fn keep_only(&self, link_id: u32, sources: &[u32]) {
        self.lock()
            .retain(|d| d.link_id != link_id || sources.contains(&d.source_site));
    }
}

/// The running process: every direction of every enabled link, and the task
/// that applies configuration changes.
pub struct RunHandle {
    registry: Arc<Registry>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunHandle {
    /// Every direction of every configured link (paused ones too).
    pub fn directions(&self) -> Vec<DirectionHandle> {
        self.registry.list()
    }

    /// Stats of the direction reading `source_site` on `link_id`.
    pub fn stats(&self, link_id: u32, source_site: u32) -> Option<Arc<DirectionStats>> {
        self.registry
            .list()
            .into_iter()
            .find(|d| d.link_id == link_id && d.source_site == source_site)
            .map(|d| d.stats)
    }

    /// Stop every direction, committing whole transactions already applied.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Wait until every task ended (they end only on shutdown).
    pub async fn wait(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// A sender that stops everything when `true` is sent.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

fn endpoint(site: &Site) -> Result<PgEndpoint, crate::Error> {
    Ok(PgEndpoint::from_site(site)?)
}

/// Has the peer recorded a position of `source_id`'s binlog for this link
/// (so its changes are captured already)?
async fn peer_has_position(
    peer: &mut SetupConn,
    source_name: &str,
    source_id: u32,
    link: &Link,
) -> Result<bool, crate::Error> {
    use mysql_async::prelude::Queryable;
    match peer {
        SetupConn::Pg(client) => {
            let origin = link.origin_name(source_id);
            let row = client
                .query_opt(
                    "SELECT coalesce(pg_replication_origin_progress($1, true), '0/0') <> '0/0'
                       FROM pg_replication_origin WHERE roname = $1",
                    &[&origin],
                )
                .await
                .map_err(|e| {
                    crate::Error::sink_error(
                        source_name,
                        crate::sink::pg::SinkError::Db {
                            context: "read the recorded binlog position".into(),
                            source: e,
                        },
                    )
                })?;
            Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
        }
        SetupConn::Mysql(conn, ep) => {
            let sql = format!(
                "SELECT position FROM {}.{} WHERE link_id = ? AND source_site = ?",
                crate::mysql::quote_ident(ep.database()),
                crate::mysql::quote_ident(crate::sink::mysql::MARKER_TABLE)
            );
            let position: Option<u64> = conn
                .exec_first(sql, (link.link_id, source_id))
                .await
                .map_err(mysql_error(
                    source_name,
                    "read the recorded binlog position",
                ))?;
            Ok(position.is_some_and(|p| p != 0))
        }
    }
}

/// A MySQL/MariaDB site's error during setup, with what duplex was doing.
fn mysql_error<'a>(
    site: &'a str,
    context: &'a str,
) -> impl FnOnce(mysql_async::Error) -> crate::Error + 'a {
    move |e| {
        crate::Error::mysql_sink_error(
            site,
            crate::sink::mysql::MysqlSinkError::Db {
                context: context.into(),
                source: e,
            },
        )
    }
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
                crate::sink::pg::SinkError::Db {
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
            crate::sink::pg::SinkError::Db {
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

/// Prepare both sites of a link and build its two directions.
/// A connection for setup, by engine.
enum SetupConn {
    Pg(tokio_postgres::Client),
    Mysql(mysql_async::Conn, MysqlEndpoint),
}

async fn setup_conn(site: &Site) -> Result<SetupConn, crate::Error> {
    Ok(match site.engine {
        SiteEngine::Postgres => SetupConn::Pg(endpoint(site)?.connect("duplex setup").await?),
        SiteEngine::Mysql => {
            let ep = MysqlEndpoint::from_site(site)?;
            SetupConn::Mysql(ep.connect().await?, ep)
        }
    })
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
                        crate::sink::pg::SinkError::Db {
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
                crate::mysql::quote_ident(crate::sink::mysql::MARKER_TABLE)
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
async fn prepare_link(
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
                if let SetupConn::Pg(peer_client) = peer_conn {
                    check_slot_continuity(
                        client,
                        &this.name,
                        peer_client,
                        &peer.name,
                        this.site_id,
                        link,
                    )
                    .await?;
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
                prepare_mysql_site(conn, &this.name, &database, link, &tables).await?;
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
                field_merge_tables: field_merge_tables.clone(),
                tables: tables.iter().map(|t| t.table.clone()).collect(),
            }),
            SiteEngine::Mysql => SourceSpec::Mysql(MysqlSourceSpec {
                site_id: src.site_id,
                endpoint: MysqlEndpoint::from_site(src)?,
                replica_server_id: replica_server_id(link, src.site_id)?,
                marker_column: link.marker_column.clone(),
                stamp_column: link.stamp_column(),
                marker_table: crate::sink::mysql::MARKER_TABLE.to_string(),
                tables: tables.iter().map(|t| t.table.name.clone()).collect(),
                start: None,
                field_merge_tables: field_merge_tables.clone(),
            }),
        };
        let sink = match dst.engine {
            SiteEngine::Postgres => SinkSpec::Pg(PgSinkSpec {
                endpoint: endpoint(dst)?,
                origin: link.origin_name(src.site_id),
                marker_column: link.marker_column.clone(),
                max_batch_rows: tuning.max_batch_rows,
                tables: tables.iter().map(|t| t.table.clone()).collect(),
                quarantine: QuarantineSpec {
                    control: control.clone(),
                    link_id: link.link_id,
                    source_site: src.site_id,
                    target_site: dst.site_id,
                },
                site_id: dst.site_id,
                policies: tables
                    .iter()
                    .map(|t| (t.table.clone(), target_policy(t)))
                    .collect(),
                conflicts: crate::conflict::store::ConflictStoreSpec {
                    control: control.clone(),
                    link_id: link.link_id,
                    source_site: src.site_id,
                    target_site: dst.site_id,
                },
                held_tables: held_tables.clone(),
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
            }),
            SiteEngine::Mysql => SinkSpec::Mysql(MysqlSinkSpec {
                endpoint: MysqlEndpoint::from_site(dst)?,
                link_id: link.link_id,
                source_site: src.site_id,
                marker_column: link.marker_column.clone(),
                max_batch_rows: tuning.max_batch_rows,
                quarantine: QuarantineSpec {
                    control: control.clone(),
                    link_id: link.link_id,
                    source_site: src.site_id,
                    target_site: dst.site_id,
                },
                stamp_column: link.stamp_column(),
                site_id: dst.site_id,
                policies: tables
                    .iter()
                    .map(|t| (t.table.name.clone(), target_policy(t)))
                    .collect(),
                conflicts: crate::conflict::store::ConflictStoreSpec {
                    control: control.clone(),
                    link_id: link.link_id,
                    source_site: src.site_id,
                    target_site: dst.site_id,
                },
                held_tables: held_tables.clone(),
                capture_starts: tables
                    .iter()
                    .filter_map(|t| {
                        Some((t.table.name.clone(), capture_start(dst.site_id, &t.table)?))
                    })
                    .collect(),
            }),
        };
        specs.push(DirectionSpec {
            name: format!("{}:{}->{}", link.name, src.name, dst.name),
            source,
            sink,
            tuning: tuning.clone(),
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
                    })
                    .collect(),
                marker_column: link.marker_column.clone(),
                stamp_column: link.stamp_column(),
                slot_name: link.slot_name(src.site_id),
                control: control.clone(),
                rows_per_second: link.snapshot_rows_per_second,
                page_rows: tuning.max_batch_rows.max(100) * 2,
            }),
        });
    }
    Ok(specs)
}

/// How one table of a link stands: what `duplex.table_config_status` says.
#[derive(Debug, Clone, PartialEq)]
pub struct TableVerdict {
    pub table: crate::canonical::TableName,
    /// `syncing`, `paused` or `refused`.
    pub state: &'static str,
    /// Refused: why, and what to do. Syncing or paused: why the last change
    /// of its configuration was refused (its configuration in force stays).
    pub reason: Option<String>,
}

/// A link's configuration checked table by table against both sites.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The link as it runs: the tables that can be synced, each on the
    /// configuration it is synced by.
    pub effective: LinkConfig,
    /// Every configured table: syncing, paused or refused, and why.
    pub tables: Vec<TableVerdict>,
    /// Per site: duplex applies in the replica role there (see `setup::SiteFacts`).
    pub replica_role: BTreeMap<u32, bool>,
}

impl Resolved {
    /// A configuration in force without checks against the sites (a paused link).
    fn unchecked(lc: &LinkConfig) -> Resolved {
        Resolved {
            effective: lc.clone(),
            tables: Vec::new(),
            replica_role: BTreeMap::new(),
        }
    }

    /// Tables refused, or kept on an older configuration.
    pub fn refusals(&self) -> Vec<String> {
        self.tables
            .iter()
            .filter_map(|t| {
                t.reason.as_ref().map(|r| match t.state {
                    "refused" => format!("table {} refused: {r}", t.table),
                    _ => format!("table {}: {r}", t.table),
                })
            })
            .collect()
    }
}

/// Check every table of `lc` against both sites' catalogs, read-only: each
/// table that can be synced as configured runs; one whose configuration
/// cannot, but that runs on an older one (`previous`, the configuration in
/// force) that still can, stays on that; every other table is refused alone,
/// with its reason. Fails only for what concerns the whole link (a site
/// that cannot be reached or read).
pub async fn resolve_tables(
    lc: &LinkConfig,
    previous: Option<&LinkConfig>,
) -> Result<Resolved, crate::Error> {
    let wanted: Vec<(&LinkTable, Option<&String>)> = lc
        .tables
        .iter()
        .map(|t| (t, None))
        .chain(lc.invalid_tables.iter().map(|(t, why)| (t, Some(why))))
        .collect();
    let names: Vec<&crate::canonical::TableName> = wanted.iter().map(|(t, _)| &t.table).collect();
    let mut facts = Vec::new();
    for site in [&lc.site_a, &lc.site_b] {
        facts.push(match setup_conn(site).await? {
            SetupConn::Pg(client) => pg_site_facts(&client, site, &lc.link, &names).await?,
            SetupConn::Mysql(mut conn, ep) => {
                let database = ep.database().to_string();
                mysql_site_facts(&mut conn, site, &lc.link, &database, &names).await?
            }
        });
    }
    let sites = [&facts[0], &facts[1]];
    let judge =
        |t: &LinkTable| judge_table(&lc.link, t, sites, &names).map_err(|why| why.join("; "));
    let mut effective = lc.clone();
    effective.tables.clear();
    effective.invalid_tables.clear();
    let mut tables = Vec::new();
    for (t, invalid) in wanted {
        let verdict = match invalid.cloned().map_or_else(|| judge(t), Err) {
            Ok(()) => {
                effective.tables.push(t.clone());
                None
            }
            Err(why) => Some(why),
        };
        let Some(why) = verdict else {
            tables.push(TableVerdict {
                table: t.table.clone(),
                state: if t.paused { "paused" } else { "syncing" },
                reason: None,
            });
            continue;
        };
        let kept = previous
            .and_then(|p| p.tables.iter().find(|o| o.table == t.table))
            .filter(|old| *old != t && judge(old).is_ok());
        match kept {
            Some(old) => {
                effective.tables.push(old.clone());
                tables.push(TableVerdict {
                    table: t.table.clone(),
                    state: if old.paused { "paused" } else { "syncing" },
                    reason: Some(format!(
                        "the change of its configuration was refused (its configuration in force stays): {why}"
                    )),
                });
            }
            None => tables.push(TableVerdict {
                table: t.table.clone(),
                state: "refused",
                reason: Some(why),
            }),
        }
    }
    for verdict in tables.iter().filter(|v| v.reason.is_some()) {
        tracing::warn!(link = %lc.link.name, table = %verdict.table, state = verdict.state,
            reason = verdict.reason.as_deref().unwrap_or_default(), "table not synced as configured");
    }
    Ok(Resolved {
        effective,
        tables,
        replica_role: facts.iter().map(|f| (f.site_id, f.replica_role)).collect(),
    })
}

/// Add the tables a link's patterns match on both sites (explicit
/// `link_tables` rows take precedence). Reads the sites' catalogs only.
pub(crate) async fn expand_patterns(lc: &mut LinkConfig) -> Result<(), crate::Error> {
    if !lc.patterns.iter().any(|p| !p.exclude) {
        return Ok(());
    }
    let schemas: std::collections::BTreeSet<String> =
        lc.patterns.iter().map(|p| p.schema_name.clone()).collect();
    let mut matched: Vec<std::collections::BTreeSet<(String, String)>> = Vec::new();
    for site in [&lc.site_a, &lc.site_b] {
        let mut found = std::collections::BTreeSet::new();
        let mut conn = setup_conn(site).await?;
        for schema in &schemas {
            let like = |exclude: bool| -> Vec<String> {
                lc.patterns
                    .iter()
                    .filter(|p| &p.schema_name == schema && p.exclude == exclude)
                    .map(|p| p.pattern.clone())
                    .collect()
            };
            let (include, exclude) = (like(false), like(true));
            if include.is_empty() {
                continue;
            }
            let names: Vec<String> = match &mut conn {
                SetupConn::Pg(client) => client
                    .query(
                        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
                            AND c.relname LIKE ANY($2) AND NOT (c.relname LIKE ANY($3))
                            AND NOT c.relispartition
                            AND c.relname NOT LIKE '\\_duplex%'",
                        &[schema, &include, &exclude],
                    )
                    .await
                    .map_err(|e| {
                        crate::Error::Setup(crate::setup::SetupError::Db {
                            site: site.name.clone(),
                            context: "list the tables a pattern matches".into(),
                            source: e,
                        })
                    })?
                    .iter()
                    .map(|r| r.get(0))
                    .collect(),
                SetupConn::Mysql(conn, ep) => {
                    use mysql_async::prelude::Queryable;
                    let any = |n: usize| vec!["TABLE_NAME LIKE ?"; n].join(" OR ");
                    let sql = format!(
                        "SELECT TABLE_NAME FROM information_schema.TABLES
                          WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'
                            AND ({}) AND NOT ({}) AND TABLE_NAME NOT LIKE '\\_duplex%'",
                        any(include.len()),
                        if exclude.is_empty() { "FALSE".to_string() } else { any(exclude.len()) }
                    );
                    let mut params: Vec<mysql_async::Value> = vec![ep.database().into()];
                    params.extend(include.iter().chain(&exclude).map(|p| p.as_str().into()));
                    conn.exec(sql, params).await.map_err(mysql_error(&site.name, "list the tables a pattern matches"))?
                }
            };
            found.extend(names.into_iter().map(|n| (schema.clone(), n)));
        }
        matched.push(found);
    }
    // Tables on both sites only: one side alone cannot be synced.
    let both: Vec<(String, String)> = matched[0]
        .intersection(matched.get(1).unwrap_or(&Default::default()))
        .cloned()
        .collect();
    for (schema, name) in both {
        // An explicit row, enabled or not, takes precedence.
        if lc.tables.iter().any(|t| t.table.name == name) || lc.disabled_tables.contains(&name) {
            continue;
        }
        lc.tables.push(LinkTable {
            link_id: lc.link.link_id,
            table: crate::canonical::TableName::new(schema, name),
            enabled: true,
            paused: false,
            initial_sync: true,
            check_interval: None,
            direction: crate::mapping::TableDirection::Both,
            mappings: Vec::new(),
            replica_identity: control::ReplicaIdentityMode::Full,
            policy: crate::conflict::TablePolicy::default(),
            fire_triggers: false,
        });
    }
    Ok(())
}

/// One enabled link's directions, running.
struct LinkRun {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl LinkRun {
    /// Stop both directions, committing whole transactions already applied.
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Prepare both sites of a link and start its two directions.
async fn start_link(
    resolved: &Resolved,
    tuning: &PipelineTuning,
    control: &ControlEndpoint,
    registry: &Registry,
) -> Result<LinkRun, crate::Error> {
    let lc = &resolved.effective;
    let specs = prepare_link(resolved, tuning, control).await?;
    let sources: Vec<u32> = specs.iter().map(|s| s.source.site_id()).collect();
    registry.keep_only(lc.link.link_id, &sources);
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for spec in specs {
        let target = if spec.source.site_id() == lc.link.site_a {
            lc.link.site_b
        } else {
            lc.link.site_a
        };
        let stats = registry.stats_for(lc.link.link_id, &spec, target);
        stats.set_state("starting");
        tasks.spawn(supervise_direction(spec, stats, stop_rx.clone()));
    }
    Ok(LinkRun { stop, tasks })
}

/// Read the configuration from the control database and start every enabled
/// link; then apply changes to the configuration as they are made.
pub async fn start(control_url: &str, tuning: PipelineTuning) -> Result<RunHandle, crate::Error> {
    crate::install_crypto_provider();
    let control_ep = ControlEndpoint::from_url(control_url)?;
    let mut control_client = control_ep.connect("duplex control").await?;
    // Not `control::load`: a link whose configuration is invalid is refused
    // alone (below), the others run.
    let config = control::load_unchecked(&mut control_client).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let registry = Arc::new(Registry::default());
    match control::load_status_totals(&mut control_client).await {
        Ok(totals) => *registry.totals.lock().unwrap_or_else(|e| e.into_inner()) = totals,
        // Not fatal: the counters then start from zero, as before.
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "cannot read the counters of earlier runs; they start from zero")
        }
    }
    let mut links = LinkSet {
        tuning,
        control: control_ep.clone(),
        registry: registry.clone(),
        running: BTreeMap::new(),
        in_force: BTreeMap::new(),
        rejected: BTreeMap::new(),
        failed: BTreeMap::new(),
        recheck: BTreeMap::new(),
        read_failed: false,
    };
    // A link that cannot start does not keep the others from running: it is
    // retried in the background. Only when no link can start at all does
    // `start` fail, with the first reason (nothing would run). A table that
    // cannot be synced never keeps its link from starting: it is refused
    // alone (see `resolve_tables`).
    let mut first_error = None;
    for link in &config.links {
        let id = link.link_id;
        let started = async {
            let mut lc = match config.link_config(id) {
                Some(Ok(lc)) => lc,
                Some(Err(e)) => return Err((None, crate::Error::from(e))),
                None => return Ok(None),
            };
            if !lc.link.enabled {
                return Ok(Some((lc.clone(), Resolved::unchecked(&lc), None)));
            }
            if let Err(e) = expand_patterns(&mut lc).await {
                return Err((Some(lc), e));
            }
            let resolved = match resolve_tables(&lc, None).await {
                Ok(r) => r,
                Err(e) => return Err((Some(lc), e)),
            };
            match start_link(&resolved, &links.tuning, &control_ep, &registry).await {
                Ok(run) => Ok(Some((lc, resolved, Some(run)))),
                Err(e) => Err((Some(lc), e)),
            }
        }
        .await;
        match started {
            Ok(None) => {}
            Ok(Some((lc, resolved, run))) => {
                if let Some(run) = run {
                    links.running.insert(id, run);
                }
                write_config_status(&mut control_client, &resolved).await;
                if !resolved.refusals().is_empty() {
                    links.schedule_recheck(id);
                }
                links.in_force.insert(
                    id,
                    InForce {
                        wanted: lc,
                        resolved,
                    },
                );
            }
            Err((lc, e)) => {
                let why = error_chain(&e);
                tracing::error!(link = id, error = %why, "the link cannot start; retrying in the background");
                match lc {
                    // Valid, but its sites refused: retried with backoff.
                    Some(lc) => {
                        write_config_rejection(&mut control_client, id, "error", &why).await;
                        links
                            .failed
                            .insert(id, (lc, Instant::now() + CONFIG_POLL, CONFIG_POLL));
                    }
                    // Invalid: waits for a change of its configuration.
                    None => {
                        write_config_rejection(&mut control_client, id, "rejected", &why).await;
                        links.rejected.insert(id, Err(why));
                    }
                }
                first_error.get_or_insert(e);
            }
        }
    }
    if links.running.is_empty() {
        if let Some(e) = first_error {
            links.stop_all().await;
            return Err(e);
        }
        tracing::warn!("no enabled link in the control schema: waiting for one (add rows to duplex.links and duplex.link_tables)");
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(config_watcher(links, shutdown_rx.clone()));
    tasks.spawn(parity_scheduler(control_ep.clone(), shutdown_rx.clone()));
    tasks.spawn(status_writer(control_ep, registry.clone(), shutdown_rx));
    Ok(RunHandle {
        registry,
        shutdown,
        tasks,
    })
}

/// A link's configuration in force: as configured, and as it runs.
#[derive(Debug, Clone)]
struct InForce {
    /// The configuration read from the control tables (patterns expanded).
    wanted: LinkConfig,
    /// What runs of it, table by table.
    resolved: Resolved,
}

/// The links of the process and the configuration each runs on.
struct LinkSet {
    tuning: PipelineTuning,
    control: ControlEndpoint,
    registry: Arc<Registry>,
    running: BTreeMap<u32, LinkRun>,
    /// The configuration in force per link (enabled or paused).
    in_force: BTreeMap<u32, InForce>,
    /// The last configuration refused per link, so that it is reported once,
    /// not at every re-read.
    rejected: BTreeMap<u32, Result<LinkConfig, String>>,
    /// Enabled links with nothing running because their sites refused to
    /// start them: the configuration to retry, when, and the current backoff.
    failed: BTreeMap<u32, (LinkConfig, Instant, Duration)>,
    /// For a configuration refused for the sites' state, or a link running
    /// with tables refused: when to check it against the sites again, and
    /// the current backoff.
    recheck: BTreeMap<u32, (Instant, Duration)>,
    /// The last re-read failed: rewrite every link's status on the next one.
    read_failed: bool,
}

impl LinkSet {
    async fn stop_all(&mut self) {
        for (_, run) in std::mem::take(&mut self.running) {
            run.stop().await;
        }
    }

    fn recheck_due(&self, id: u32) -> bool {
        self.recheck
            .get(&id)
            .is_some_and(|(at, _)| Instant::now() >= *at)
    }

    /// Apply what changed in the control tables, link by link. A link whose
    /// new configuration is invalid keeps running on the one in force.
    async fn reload(&mut self, client: &mut ControlDb) {
        let config = match control::load_unchecked(client).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("the configuration could not be read: {}", error_chain(&e));
                tracing::warn!(error = %why, "configuration change rejected");
                for f in self.in_force.values() {
                    write_config_rejection(client, f.wanted.link.link_id, "rejected", &why).await;
                }
                self.read_failed = true;
                return;
            }
        };
        // Once readable again, every link's status is written afresh.
        let rewrite_all = std::mem::take(&mut self.read_failed);
        let ids: std::collections::BTreeSet<u32> = self
            .in_force
            .keys()
            .chain(self.failed.keys())
            .chain(self.rejected.keys())
            .copied()
            .chain(config.links.iter().map(|l| l.link_id))
            .collect();
        for id in ids {
            match config.link_config(id) {
                None => {
                    // The link was deleted.
                    if let Some(run) = self.running.remove(&id) {
                        run.stop().await;
                    }
                    self.in_force.remove(&id);
                    self.rejected.remove(&id);
                    self.recheck.remove(&id);
                    self.failed.remove(&id);
                    self.registry.remove_link(id);
                    tracing::info!(link = id, "link removed from the configuration: stopped");
                    if let Err(e) = client
                        .exec(Sql::new(
                            "remove the link's config_status",
                            "DELETE FROM duplex.config_status WHERE link_id = $1",
                            "DELETE FROM duplex.config_status WHERE link_id = ?",
                            &[P::I32(id as i32)],
                        ))
                        .await
                    {
                        tracing::warn!(error = %e, "cannot write duplex.config_status");
                    }
                }
                Some(Err(e)) => {
                    let why = e.to_string();
                    if self.rejected.get(&id) != Some(&Err(why.clone())) {
                        tracing::warn!(link = id, error = %why, "configuration change rejected; the link keeps its configuration in force");
                        write_config_rejection(client, id, "rejected", &why).await;
                        self.rejected.insert(id, Err(why));
                    }
                }
                Some(Ok(mut lc)) => {
                    if lc.link.enabled {
                        // Bounded: an unreachable site must not hold up the
                        // other links' changes.
                        let expanded =
                            tokio::time::timeout(Duration::from_secs(15), expand_patterns(&mut lc))
                                .await;
                        let failure = match expanded {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(error_chain(&e)),
                            Err(_) => Some("a site did not answer within 15 s".to_string()),
                        };
                        if let Some(e) = failure {
                            if self.failed.contains_key(&id) {
                                // Already reported as not running; the next
                                // re-read tries again.
                                continue;
                            }
                            let why = format!("table patterns: {e}");
                            if self.rejected.get(&id) != Some(&Err(why.clone())) {
                                tracing::warn!(link = id, error = %why, "configuration change rejected; the link keeps its configuration in force");
                                write_config_rejection(client, id, "rejected", &why).await;
                                self.rejected.insert(id, Err(why));
                            }
                            continue;
                        }
                    }
                    if let Some((retry, at, _)) = self.failed.get(&id) {
                        if *retry == lc && Instant::now() < *at {
                            continue;
                        }
                        // Time to retry, or a new configuration to try.
                        self.apply(client, lc).await;
                        continue;
                    }
                    if self.in_force.get(&id).is_some_and(|f| f.wanted == lc) {
                        // The configuration in force: checked against the
                        // sites again now and then while tables are refused
                        // (they may have been fixed there), or while a
                        // direction fails (a table's shape may have changed
                        // on a site: it is then refused alone).
                        let refusals = self
                            .in_force
                            .get(&id)
                            .is_some_and(|f| !f.resolved.refusals().is_empty());
                        let failing =
                            self.running.contains_key(&id) && self.registry.link_failing(id);
                        if (refusals || failing) && lc.link.enabled {
                            if !self.recheck.contains_key(&id) {
                                self.schedule_recheck(id);
                            }
                            if self.recheck_due(id) {
                                self.apply(client, lc).await;
                                continue;
                            }
                        } else if !self.rejected.contains_key(&id) {
                            self.recheck.remove(&id);
                        }
                        if self.rejected.remove(&id).is_some() || rewrite_all {
                            // Back to the configuration in force: nothing to do
                            // but say so.
                            if let Some(f) = self.in_force.get(&id) {
                                write_config_status(client, &f.resolved).await;
                            }
                        }
                        continue;
                    }
                    if self.rejected.get(&id) == Some(&Ok(lc.clone())) && !self.recheck_due(id) {
                        // Refused because of the sites' state (a site down):
                        // checked again later.
                        continue;
                    }
                    self.apply(client, lc).await;
                }
            }
        }
    }

    async fn apply(&mut self, client: &mut ControlDb, lc: LinkConfig) {
        let span = tracing::info_span!("link", name = %lc.link.name);
        self.apply_in_span(client, lc).instrument(span).await
    }

    async fn apply_in_span(&mut self, client: &mut ControlDb, lc: LinkConfig) {
        let id = lc.link.link_id;
        if !lc.link.enabled {
            if let Some(run) = self.running.remove(&id) {
                run.stop().await;
            }
            self.registry.set_link_state(id, "paused");
            tracing::info!("link paused");
            let resolved = Resolved::unchecked(&lc);
            write_config_status(client, &resolved).await;
            self.rejected.remove(&id);
            self.failed.remove(&id);
            self.recheck.remove(&id);
            self.in_force.insert(
                id,
                InForce {
                    wanted: lc,
                    resolved,
                },
            );
            return;
        }
        let known = self.in_force.get(&id).is_some_and(|f| f.wanted == lc)
            || self.rejected.get(&id) == Some(&Ok(lc.clone()));
        if !known {
            // A new configuration: checked again soon if it needs to be.
            self.recheck.remove(&id);
        }
        let previous = self
            .in_force
            .get(&id)
            .filter(|p| p.wanted.link.enabled)
            .map(|p| p.resolved.clone());
        let resolved = match resolve_tables(&lc, previous.as_ref().map(|p| &p.effective)).await {
            Ok(r) => r,
            Err(e) => {
                let why = error_chain(&e);
                if !self.running.contains_key(&id) {
                    // Nothing runs for this link: a site down or not ready yet is
                    // worth retrying, not only a change of the configuration.
                    self.fail(client, id, lc, &why).await;
                    return;
                }
                if self.in_force.get(&id).is_some_and(|f| f.wanted == lc) {
                    // A check of the configuration in force (refused tables,
                    // a failing direction) that could not reach a site: the
                    // directions report that themselves; checked again later.
                    tracing::debug!(error = %why, "cannot check the link's tables now");
                    self.schedule_recheck(id);
                    return;
                }
                tracing::warn!(error = %why, "configuration change rejected; the link keeps its configuration in force");
                write_config_rejection(client, id, "rejected", &why).await;
                self.rejected.insert(id, Ok(lc));
                self.schedule_recheck(id);
                return;
            }
        };
        let refused = !resolved.refusals().is_empty();
        let same_run = previous.as_ref().is_some_and(|p| {
            p.effective == resolved.effective && p.replica_role == resolved.replica_role
        });
        if self.running.contains_key(&id) && same_run {
            // Nothing that runs changes: no restart.
            self.settled(client, id, lc, resolved, refused).await;
            return;
        }
        if let Some(run) = self.running.remove(&id) {
            run.stop().await;
        }
        match start_link(&resolved, &self.tuning, &self.control, &self.registry).await {
            Ok(run) => {
                tracing::info!("configuration applied; the link runs");
                self.running.insert(id, run);
                self.settled(client, id, lc, resolved, refused).await;
            }
            Err(e) => {
                let why = error_chain(&e);
                // The last good configuration goes back in force, if there is
                // one that is not this one.
                match previous.filter(|p| p.effective != resolved.effective) {
                    Some(prev) => {
                        tracing::warn!(error = %why, "configuration change could not be applied; restoring the configuration in force");
                        match start_link(&prev, &self.tuning, &self.control, &self.registry).await {
                            Ok(run) => {
                                self.running.insert(id, run);
                                write_config_rejection(client, id, "rejected", &why).await;
                                self.rejected.insert(id, Ok(lc));
                                self.schedule_recheck(id);
                            }
                            Err(e) => {
                                // Neither runs: keep trying the wanted one.
                                let why = error_chain(&e);
                                self.rejected.remove(&id);
                                self.fail(client, id, lc, &why).await;
                            }
                        }
                    }
                    None => self.fail(client, id, lc, &why).await,
                }
            }
        }
    }

    /// `lc` is in force, running as `resolved`.
    async fn settled(
        &mut self,
        client: &mut ControlDb,
        id: u32,
        lc: LinkConfig,
        resolved: Resolved,
        refused: bool,
    ) {
        let changed = self
            .in_force
            .get(&id)
            .is_none_or(|f| f.resolved != resolved);
        if changed || self.rejected.contains_key(&id) || self.failed.contains_key(&id) {
            write_config_status(client, &resolved).await;
        }
        self.rejected.remove(&id);
        self.failed.remove(&id);
        if refused || self.registry.link_failing(id) {
            // Checked again later, backing off: a refused table may be
            // fixed on the sites meanwhile.
            self.schedule_recheck(id);
        } else {
            self.recheck.remove(&id);
        }
        self.in_force.insert(
            id,
            InForce {
                wanted: lc,
                resolved,
            },
        );
    }

    /// A configuration refused for the sites' state is checked again later,
    /// backing off to a minute.
    fn schedule_recheck(&mut self, id: u32) {
        let backoff = self
            .recheck
            .get(&id)
            .map(|(_, b)| (*b * 2).min(Duration::from_secs(60)))
            .unwrap_or(CONFIG_POLL);
        self.recheck.insert(id, (Instant::now() + backoff, backoff));
    }

    /// Nothing runs for link `id`: retry `lc` later, backing off to a minute.
    async fn fail(&mut self, client: &mut ControlDb, id: u32, lc: LinkConfig, why: &str) {
        let backoff = self
            .failed
            .remove(&id)
            .map(|(_, _, b)| (b * 2).min(Duration::from_secs(60)))
            .unwrap_or(CONFIG_POLL);
        tracing::error!(error = %why, retry_in_s = backoff.as_secs(), "the link cannot start; retrying");
        write_config_rejection(client, id, "error", why).await;
        self.registry.set_link_state(id, "error");
        self.failed
            .insert(id, (lc, Instant::now() + backoff, backoff));
    }
}

/// How often the configuration is re-read when no notification came (a
/// notification can be missed while the control connection is down).
const CONFIG_POLL: Duration = Duration::from_secs(5);

/// How often a MySQL/MariaDB control database's `duplex.config_version` is
/// polled (MySQL has no LISTEN/NOTIFY).
const VERSION_POLL: Duration = Duration::from_secs(1);

/// A live connection that tells when the configuration changed.
enum ConfigFeed {
    /// PostgreSQL: the control tables' trigger sends NOTIFY duplex_config.
    Notified(ControlDb, tokio::sync::mpsc::UnboundedReceiver<String>),
    /// MySQL/MariaDB: triggers bump `duplex.config_version`; the last seen value.
    Polled(ControlDb, Option<i64>),
}

impl ConfigFeed {
    async fn open(control: &ControlEndpoint) -> Result<ConfigFeed, crate::Error> {
        match control {
            ControlEndpoint::Pg(ep) => {
                let (client, rx) = ep
                    .connect_listening("duplex config", "duplex_config")
                    .await?;
                Ok(ConfigFeed::Notified(ControlDb::Pg(client), rx))
            }
            ControlEndpoint::Mysql(_) => {
                let mut db = control.connect("duplex config").await?;
                let seen = config_version(&mut db).await?;
                Ok(ConfigFeed::Polled(db, Some(seen)))
            }
        }
    }

    /// Wait until the configuration changed (`Ok(true)`), or fail when the
    /// connection is gone. Never returns `Ok(false)`: the caller's poll
    /// interval bounds the wait.
    async fn changed(&mut self) -> Result<bool, crate::Error> {
        match self {
            ConfigFeed::Notified(_, rx) => match rx.recv().await {
                Some(_) => {
                    // One statement notifies once per table: take the burst as one change.
                    while rx.try_recv().is_ok() {}
                    Ok(true)
                }
                None => Err(crate::Error::Internal(
                    "the control connection listening for changes closed".into(),
                )),
            },
            ConfigFeed::Polled(db, seen) => loop {
                tokio::time::sleep(VERSION_POLL).await;
                let now = config_version(db).await?;
                if *seen != Some(now) {
                    *seen = Some(now);
                    return Ok(true);
                }
            },
        }
    }

    fn db(&mut self) -> &mut ControlDb {
        match self {
            ConfigFeed::Notified(db, _) | ConfigFeed::Polled(db, _) => db,
        }
    }
}

async fn config_version(db: &mut ControlDb) -> Result<i64, crate::Error> {
    Ok(db
        .row(Sql::new(
            "read duplex.config_version",
            "SELECT 0::bigint AS version",
            "SELECT version FROM duplex.config_version WHERE id = 1",
            &[],
        ))
        .await?
        .map(|r| r.parse("version"))
        .transpose()?
        .unwrap_or(0))
}

/// Applies configuration changes: woken by the control database (see
/// [`ConfigFeed`]) or by the poll interval.
async fn config_watcher(mut links: LinkSet, mut shutdown: watch::Receiver<bool>) {
    let mut feed: Option<ConfigFeed> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if feed.is_none() {
            match ConfigFeed::open(&links.control).await {
                Ok(f) => feed = Some(f),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot reach the control database to watch the configuration")
                }
            }
        }
        let changed = async {
            match feed.as_mut() {
                Some(f) => f.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => continue,
            result = changed => {
                if let Err(e) = result {
                    tracing::warn!(error = %error_chain(&e), "lost the control connection watching the configuration; reconnecting");
                    feed = None;
                    continue;
                }
            }
            _ = tokio::time::sleep(CONFIG_POLL) => {}
        }
        let Some(f) = feed.as_mut() else {
            continue;
        };
        links.reload(f.db()).await;
    }
    links.stop_all().await;
}

/// Record `resolved` as the configuration in force: state running (every
/// table synced as configured), rejected (some table refused, or kept on its
/// configuration in force: the message says which and why) or paused; and
/// each table's state in `duplex.table_config_status`.
async fn write_config_status(client: &mut ControlDb, resolved: &Resolved) {
    let lc = &resolved.effective;
    let refusals = resolved.refusals();
    let state = if !lc.link.enabled {
        "paused"
    } else if refusals.is_empty() {
        "running"
    } else {
        "rejected"
    };
    let message = (!refusals.is_empty()).then(|| {
        format!(
            "{} table(s) not synced as configured, the others run: {}",
            refusals.len(),
            refusals.join("; ")
        )
    });
    // The tables first: whoever sees the link's state finds its tables'.
    if lc.link.enabled {
        if let Err(e) = write_table_states(client, lc.link.link_id, &resolved.tables).await {
            tracing::warn!(error = %e, "cannot write duplex.table_config_status");
        }
    }
    let lines = lc.describe();
    if let Err(e) = client
        .exec(Sql::new(
            "write duplex.config_status",
            "INSERT INTO duplex.config_status (link_id, state, applied_config, applied_at, message, rejected_at, updated_at)
             VALUES ($1, $2, $3, now(), $4::text, CASE WHEN $4::text IS NULL THEN NULL ELSE now() END, now())
             ON CONFLICT (link_id) DO UPDATE SET state = EXCLUDED.state, applied_config = EXCLUDED.applied_config,
                 applied_at = now(), message = EXCLUDED.message, rejected_at = EXCLUDED.rejected_at, updated_at = now()",
            "INSERT INTO duplex.config_status (link_id, state, applied_config, applied_at, message, rejected_at, updated_at)
             VALUES (?, ?, ?, UTC_TIMESTAMP(6), ?, IF(? IS NULL, NULL, UTC_TIMESTAMP(6)), UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE state = VALUES(state), applied_config = VALUES(applied_config),
                 applied_at = UTC_TIMESTAMP(6), message = VALUES(message), rejected_at = VALUES(rejected_at),
                 updated_at = UTC_TIMESTAMP(6)",
            &[
                P::I32(lc.link.link_id as i32),
                P::Text(Some(state)),
                P::TextList(&lines),
                P::Text(message.as_deref()),
            ],
        )
        .mysql_order(&[0, 1, 2, 3, 3]))
        .await
    {
        tracing::warn!(error = %e, "cannot write duplex.config_status");
    }
}

/// Each table's state (`duplex.table_config_status`): rows of tables the
/// link no longer has are removed; `since` moves only when the state does.
async fn write_table_states(
    client: &mut ControlDb,
    link_id: u32,
    tables: &[TableVerdict],
) -> Result<(), control::ControlError> {
    let link = link_id as i32;
    let present = client
        .rows(Sql::new(
            "read duplex.table_config_status",
            "SELECT schema_name, table_name FROM duplex.table_config_status WHERE link_id = $1",
            "SELECT schema_name, table_name FROM duplex.table_config_status WHERE link_id = ?",
            &[P::I32(link)],
        ))
        .await?;
    for r in present {
        let (schema, name) = (r.text("schema_name")?, r.text("table_name")?);
        if tables
            .iter()
            .any(|t| t.table.schema == schema && t.table.name == name)
        {
            continue;
        }
        client
            .exec(Sql::new(
                "remove a table from duplex.table_config_status",
                "DELETE FROM duplex.table_config_status WHERE link_id = $1 AND schema_name = $2 AND table_name = $3",
                "DELETE FROM duplex.table_config_status WHERE link_id = ? AND schema_name = ? AND table_name = ?",
                &[P::I32(link), P::Text(Some(&schema)), P::Text(Some(&name))],
            ))
            .await?;
    }
    for t in tables {
        client
            .exec(
                Sql::new(
                    "write duplex.table_config_status",
                    "INSERT INTO duplex.table_config_status AS s (link_id, schema_name, table_name, state, reason)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (link_id, schema_name, table_name) DO UPDATE SET
                         since = CASE WHEN s.state = EXCLUDED.state THEN s.since ELSE now() END,
                         state = EXCLUDED.state, reason = EXCLUDED.reason, updated_at = now()",
                    "INSERT INTO duplex.table_config_status (link_id, schema_name, table_name, state, reason)
                     VALUES (?, ?, ?, ?, ?)
                     ON DUPLICATE KEY UPDATE
                         since = IF(state = VALUES(state), since, UTC_TIMESTAMP(6)),
                         state = VALUES(state), reason = VALUES(reason), updated_at = UTC_TIMESTAMP(6)",
                    &[
                        P::I32(link),
                        P::Text(Some(&t.table.schema)),
                        P::Text(Some(&t.table.name)),
                        P::Text(Some(t.state)),
                        P::Text(t.reason.as_deref()),
                    ],
                ),
            )
            .await?;
    }
    Ok(())
}

/// Record why a change of link `link_id` was refused (`state` rejected) or
/// why the link cannot run (`state` error); the configuration in force stays.
async fn write_config_rejection(client: &mut ControlDb, link_id: u32, state: &str, why: &str) {
    if let Err(e) = client
        .exec(Sql::new(
            "write duplex.config_status",
            "INSERT INTO duplex.config_status (link_id, state, message, rejected_at, updated_at)
             VALUES ($1, $2, $3, now(), now())
             ON CONFLICT (link_id) DO UPDATE SET state = EXCLUDED.state, message = EXCLUDED.message,
                 rejected_at = now(), updated_at = now()",
            "INSERT INTO duplex.config_status (link_id, state, message, rejected_at, updated_at)
             VALUES (?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE state = VALUES(state), message = VALUES(message),
                 rejected_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6)",
            &[
                P::I32(link_id as i32),
                P::Text(Some(state)),
                P::Text(Some(why)),
            ],
        ))
        .await
    {
        tracing::warn!(error = %e, "cannot write duplex.config_status");
    }
}

/// Runs the scheduled parity checks (`link_tables.check_interval`): every
/// few seconds, each enabled table whose last check is older than its
/// interval is compared (one at a time, as `duplex check` does) and the result
/// recorded in `duplex.parity_checks`. A failed check is logged, never fatal.
async fn parity_scheduler(control: ControlEndpoint, mut shutdown: watch::Receiver<bool>) {
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
        for link in &config.links {
            let Some(Ok(lc)) = config.link_config(link.link_id) else {
                continue;
            };
            if !lc.link.enabled {
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

/// Writes every direction's counters to `duplex.link_status` once a second and
/// once more at shutdown. Losing the control connection never stops replication.
async fn status_writer(
    control: ControlEndpoint,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client = None;
    loop {
        let stopping = *shutdown.borrow();
        if client.is_none() {
            match control.connect("duplex status").await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot reach the control database to write status")
                }
            }
        }
        if let Some(c) = client.as_mut() {
            for d in registry.list() {
                let s = &d.stats;
                let (lag_seconds, lag_bytes) = s.lag(crate::sink::resolve::now_micros());
                let status = DirectionStatus {
                    link_id: d.link_id as i32,
                    source_site: d.source_site as i32,
                    target_site: d.target_site as i32,
                    state: s.state(),
                    source_position: s.source_position().map(|p| p.to_string()),
                    applied_position: s.applied_position().map(|p| p.to_string()),
                    applied_txns: DirectionStats::get(&s.applied_txns) as i64,
                    applied_rows: DirectionStats::get(&s.applied_rows) as i64,
                    echo_txns_skipped: DirectionStats::get(&s.echo_txns_skipped) as i64,
                    quarantined: DirectionStats::get(&s.quarantined) as i64,
                    conflicts: DirectionStats::get(&s.conflicts) as i64,
                    last_error: s.take_error(),
                    error_since_us: s.error_since(),
                    lag_seconds,
                    lag_bytes,
                    queued_events: DirectionStats::get(&s.queued_events) as i64,
                    by_op: [
                        DirectionStats::get(&s.inserted) as i64,
                        DirectionStats::get(&s.updated) as i64,
                        DirectionStats::get(&s.deleted) as i64,
                    ],
                    applied_commit_us: s
                        .applied_commit_us
                        .load(std::sync::atomic::Ordering::Relaxed),
                    tables: s
                        .table_counts()
                        .into_iter()
                        .map(|(t, c)| (t, c.map(|n| n as i64)))
                        .collect(),
                };
                if let Err(e) = control::write_status(c, &status).await {
                    tracing::warn!(error = %error_chain(&e), "cannot write duplex.link_status");
                    client = None;
                    break;
                }
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// What a pending configuration change of one link would do (see
/// [`check_config`]).
#[derive(Debug, Clone)]
pub struct LinkCheck {
    pub link_id: u32,
    pub name: String,
    /// Settings the change adds and removes, against the configuration in
    /// force (`duplex.config_status`); everything when none is recorded.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// `Ok` when the change would take effect, else why it would be refused.
    pub verdict: Result<(), String>,
    /// Tables that cannot be synced as configured, each with why and what
    /// to do: refused alone, the link's other tables would run.
    pub refused: Vec<(String, String)>,
}

/// Dry run of the configuration in the control tables: per link, what differs
/// from the configuration in force and whether it would be accepted. Reads
/// only: nothing is changed on the control database or the sites.
pub async fn check_config(control_url: &str) -> Result<Vec<LinkCheck>, crate::Error> {
    crate::install_crypto_provider();
    let control_ep = ControlEndpoint::from_url(control_url)?;
    let mut client = control_ep.connect("duplex config check").await?;
    let config = control::load_unchecked(&mut client).await?;
    let mut in_force: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for r in client
        .rows(Sql::new(
            "read duplex.config_status",
            "SELECT link_id, applied_config FROM duplex.config_status WHERE applied_at IS NOT NULL",
            "SELECT link_id, applied_config FROM duplex.config_status WHERE applied_at IS NOT NULL",
            &[],
        ))
        .await?
    {
        // A text[] on PostgreSQL and a JSON array on MySQL: both arrive as JSON.
        let lines: Vec<String> = serde_json::from_str(&r.text("applied_config")?).map_err(|e| {
            control::ControlError::Invalid(format!("duplex.config_status.applied_config: {e}"))
        })?;
        in_force.insert(r.parse("link_id")?, lines);
    }
    let mut out = Vec::new();
    for link in &config.links {
        let mut refused = Vec::new();
        let (lines, verdict) = match config.link_config(link.link_id) {
            Some(Ok(mut lc)) if lc.link.enabled => {
                // As the running duplex would: patterns expanded, every
                // table checked against both sites.
                let resolved = match expand_patterns(&mut lc).await {
                    Ok(()) => resolve_tables(&lc, None).await,
                    Err(e) => Err(e),
                };
                match resolved {
                    Ok(r) => {
                        refused = r
                            .tables
                            .iter()
                            .filter_map(|t| Some((t.table.to_string(), t.reason.clone()?)))
                            .collect();
                        let mut lines = r.effective.describe();
                        // Refused tables show as refused, not as removed.
                        lines.extend(old_lines_of(
                            in_force.get(&link.link_id),
                            refused.iter().map(|(t, _)| t.as_str()),
                        ));
                        (lines, Ok(()))
                    }
                    Err(e) => (lc.describe(), Err(error_chain(&e))),
                }
            }
            Some(Ok(lc)) => (lc.describe(), Ok(())),
            Some(Err(e)) => (Vec::new(), Err(e.to_string())),
            None => continue,
        };
        let old = in_force.get(&link.link_id).cloned().unwrap_or_default();
        let (added, removed) = if verdict.is_ok() || !lines.is_empty() {
            (
                lines.iter().filter(|l| !old.contains(l)).cloned().collect(),
                old.iter().filter(|l| !lines.contains(l)).cloned().collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        out.push(LinkCheck {
            link_id: link.link_id,
            name: link.name.clone(),
            added,
            removed,
            verdict,
            refused,
        });
    }
    Ok(out)
}

/// The lines of the configuration in force (`old`) that describe `tables`.
fn old_lines_of<'a>(
    old: Option<&Vec<String>>,
    tables: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    let prefixes: Vec<String> = tables.map(|t| format!("table {t}:")).collect();
    old.into_iter()
        .flatten()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p.as_str())))
        .cloned()
        .collect()
}
