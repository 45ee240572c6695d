//! Runs every enabled link of the control schema: prepares the sites, starts
//! both directions of each link, and writes their status back to the control
//! schema every second.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::control::SiteEngine;
use crate::control::{self, ControlConfig, DirectionStatus, Link, Site};
use crate::mysql::MysqlEndpoint;
use crate::pg::PgEndpoint;
use crate::pipeline::{error_chain, supervise_direction, DirectionSpec, PipelineTuning};
use crate::setup::{check_slot_continuity, prepare_mysql_site, prepare_pg_site};
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

/// The running process: every direction of every enabled link.
pub struct RunHandle {
    pub directions: Vec<DirectionHandle>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunHandle {
    /// Stats of the direction reading `source_site` on `link_id`.
    pub fn stats(&self, link_id: u32, source_site: u32) -> Option<Arc<DirectionStats>> {
        self.directions
            .iter()
            .find(|d| d.link_id == link_id && d.source_site == source_site)
            .map(|d| d.stats.clone())
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
async fn record_initial_binlog_position(
    source: &mut SetupConn,
    source_name: &str,
    source_id: u32,
    peer: &mut SetupConn,
    link: &Link,
) -> Result<(), crate::Error> {
    use mysql_async::prelude::Queryable;
    let SetupConn::Mysql(conn, _) = source else {
        return Ok(());
    };
    let position = crate::source::mysql::current_position(conn)
        .await
        .map_err(|e| crate::Error::mysql_source_error(source_name, e))?;
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
            .map_err(|e| {
                crate::Error::mysql_sink_error(
                    source_name,
                    crate::sink::mysql::MysqlSinkError::Db {
                        context: "record the initial binlog position".into(),
                        source: e,
                    },
                )
            })?;
        }
    }
    Ok(())
}

/// Prepare both sites of a link and build its two directions.
async fn prepare_link(
    config: &ControlConfig,
    link: &Link,
    tuning: &PipelineTuning,
    control: &PgEndpoint,
) -> Result<Vec<DirectionSpec>, crate::Error> {
    let tables = config.link_tables(link.link_id);
    let site = |id: u32| {
        config.site(id).ok_or_else(|| {
            crate::Error::Control(control::ControlError::Invalid(format!(
                "link {}: site {id} does not exist",
                link.name
            )))
        })
    };
    let (a, b) = (site(link.site_a)?, site(link.site_b)?);
    let mut conn_a = setup_conn(a).await?;
    let mut conn_b = setup_conn(b).await?;
    // Each site in turn (a PostgreSQL site checks its slot against the peer's progress).
    for (this, peer) in [(a, b), (b, a)] {
        let (this_conn, peer_conn) = if this.site_id == a.site_id {
            (&mut conn_a, &conn_b)
        } else {
            (&mut conn_b, &conn_a)
        };
        match this_conn {
            SetupConn::Pg(client) => {
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
    record_initial_binlog_position(&mut conn_a, &a.name, a.site_id, &mut conn_b, link).await?;
    record_initial_binlog_position(&mut conn_b, &b.name, b.site_id, &mut conn_a, link).await?;

    let mut specs = Vec::new();
    for (src, dst) in [(a, b), (b, a)] {
        let field_merge_tables: std::collections::HashSet<String> = tables
            .iter()
            .filter(|t| matches!(t.policy.policy, crate::conflict::Policy::FieldMerge { .. }))
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
                    .map(|t| (t.table.clone(), t.policy.clone()))
                    .collect(),
                conflicts: crate::conflict::store::ConflictStoreSpec {
                    control: control.clone(),
                    link_id: link.link_id,
                    source_site: src.site_id,
                    target_site: dst.site_id,
                },
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
                    .map(|t| (t.table.name.clone(), t.policy.clone()))
                    .collect(),
                conflicts: crate::conflict::store::ConflictStoreSpec {
                    control: control.clone(),
                    link_id: link.link_id,
                    source_site: src.site_id,
                    target_site: dst.site_id,
                },
            }),
        };
        specs.push(DirectionSpec {
            name: format!("{}:{}->{}", link.name, src.name, dst.name),
            source,
            sink,
            tuning: tuning.clone(),
            tombstone_retention: link.tombstone_retention,
        });
    }
    Ok(specs)
}

/// Read the configuration from the control database and start every enabled link.
pub async fn start(control_url: &str, tuning: PipelineTuning) -> Result<RunHandle, crate::Error> {
    crate::install_crypto_provider();
    let control_ep = PgEndpoint::from_url("control", control_url)?;
    let control_client = control_ep.connect("duplex control").await?;
    let config = control::load(&control_client).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut directions = Vec::new();
    for link in config.links.iter().filter(|l| l.enabled) {
        let specs = prepare_link(&config, link, &tuning, &control_ep).await?;
        for spec in specs {
            let stats = Arc::new(DirectionStats::new(spec.source.kind()));
            stats.set_state("starting");
            directions.push(DirectionHandle {
                link_id: link.link_id,
                source_site: spec.source.site_id(),
                target_site: if spec.source.site_id() == link.site_a {
                    link.site_b
                } else {
                    link.site_a
                },
                name: spec.name.clone(),
                stats: stats.clone(),
            });
            tasks.spawn(supervise_direction(spec, stats, shutdown_rx.clone()));
        }
    }
    if directions.is_empty() {
        tracing::warn!("no enabled link in the control schema: nothing to do (add rows to duplex.links and duplex.link_tables)");
    }
    tasks.spawn(status_writer(control_ep, directions.clone(), shutdown_rx));
    Ok(RunHandle {
        directions,
        shutdown,
        tasks,
    })
}

/// Writes every direction's counters to `duplex.link_status` once a second and
/// once more at shutdown. Losing the control connection never stops replication.
async fn status_writer(
    control: PgEndpoint,
    directions: Vec<DirectionHandle>,
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
        if let Some(c) = &client {
            for d in &directions {
                let s = &d.stats;
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
