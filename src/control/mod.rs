//! The control schema: duplex's configuration and status, as SQL tables.
//!
//! Everything `duplex run` needs (sites, links, tables) is read from here, so a
//! DBA configures and observes duplex with psql. The schema is installed and
//! upgraded by numbered migrations under `sql/`.

pub mod db;
pub mod model;

use tokio_postgres::Client;

pub use db::{ControlDb, ControlEndpoint, Sql, TextRow, P};

pub use model::{
    ControlConfig, Link, LinkConfig, LinkTable, ReplicaIdentityMode, Site, SiteEngine, TlsMode,
};

/// Migrations of the PostgreSQL flavour of the control schema, in order.
pub const PG_MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "control schema: sites, links, link_tables, link_status",
        include_str!("../../sql/postgresql/0001_control_schema.sql"),
    ),
    (
        2,
        "quarantine of changes that cannot be applied",
        include_str!("../../sql/postgresql/0002_quarantine.sql"),
    ),
    (
        3,
        "conflict policies, column owners, the conflicts table",
        include_str!("../../sql/postgresql/0003_conflicts.sql"),
    ),
    (
        4,
        "tombstone retention per link",
        include_str!("../../sql/postgresql/0004_tombstone_retention.sql"),
    ),
    (
        5,
        "live configuration: change notifications, config_status",
        include_str!("../../sql/postgresql/0005_live_config.sql"),
    ),
    (
        6,
        "quarantine retry and discard",
        include_str!("../../sql/postgresql/0006_quarantine_retry.sql"),
    ),
    (
        7,
        "pause and resume one table",
        include_str!("../../sql/postgresql/0007_table_pause.sql"),
    ),
    (
        8,
        "column mappings, one-way tables",
        include_str!("../../sql/postgresql/0008_column_mappings.sql"),
    ),
    (
        9,
        "status views: link_overview, table_overview",
        include_str!("../../sql/postgresql/0009_status_views.sql"),
    ),
    (
        10,
        "tables by name pattern",
        include_str!("../../sql/postgresql/0010_table_patterns.sql"),
    ),
    (
        11,
        "parity checks",
        include_str!("../../sql/postgresql/0011_parity.sql"),
    ),
    (
        12,
        "initial sync of existing rows",
        include_str!("../../sql/postgresql/0012_initial_sync.sql"),
    ),
    (
        13,
        "scheduled parity checks",
        include_str!("../../sql/postgresql/0013_scheduled_checks.sql"),
    ),
    (
        14,
        "tables refused alone, target triggers",
        include_str!("../../sql/postgresql/0014_table_refusals.sql"),
    ),
    (
        15,
        "status: counters over the whole history, current and past errors",
        include_str!("../../sql/postgresql/0015_status_history.sql"),
    ),
    (
        16,
        "when each site's changes began to be captured",
        include_str!("../../sql/postgresql/0016_capture_starts.sql"),
    ),
    (
        17,
        "tables stopped by writes logged as statements",
        include_str!("../../sql/postgresql/0017_statement_stops.sql"),
    ),
    (
        18,
        "parallel apply: apply workers per direction",
        include_str!("../../sql/postgresql/0018_apply_workers.sql"),
    ),
    (
        19,
        "no password in a site's conninfo, in any form",
        include_str!("../../sql/postgresql/0019_conninfo_secrets.sql"),
    ),
    (
        20,
        "slot guardrails: retained WAL, wal_status, safe_wal_size, warnings",
        include_str!("../../sql/postgresql/0020_retention_guardrails.sql"),
    ),
    (
        21,
        "duplex resync: a request counter that restarts the running link",
        include_str!("../../sql/postgresql/0021_resync.sql"),
    ),
    (
        22,
        "HA: link leases with fencing terms, live processes; failover slots",
        include_str!("../../sql/postgresql/0022_ha_leases.sql"),
    ),
    (
        23,
        "status: a direction nobody reports on shows as unknown",
        include_str!("../../sql/postgresql/0023_stale_status.sql"),
    ),
    (
        24,
        "tables held for their shape: quarantine op 'schema', status views",
        include_str!("../../sql/postgresql/0024_schema_holds.sql"),
    ),
];

/// Migrations of the MySQL/MariaDB flavour. The flavour was introduced at
/// schema version 10: its first migration creates everything the PostgreSQL
/// flavour has at that version, and later versions come in both flavours
/// under the same number.
pub const MYSQL_MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        10,
        "control schema, MySQL/MariaDB flavour (as PostgreSQL version 10)",
        include_str!("../../sql/mysql/0010_control_schema.sql"),
    ),
    (
        11,
        "parity checks",
        include_str!("../../sql/mysql/0011_parity.sql"),
    ),
    (
        12,
        "initial sync of existing rows",
        include_str!("../../sql/mysql/0012_initial_sync.sql"),
    ),
    (
        13,
        "scheduled parity checks",
        include_str!("../../sql/mysql/0013_scheduled_checks.sql"),
    ),
    (
        14,
        "tables refused alone, target triggers",
        include_str!("../../sql/mysql/0014_table_refusals.sql"),
    ),
    (
        15,
        "status: counters over the whole history, current and past errors",
        include_str!("../../sql/mysql/0015_status_history.sql"),
    ),
    (
        16,
        "when each site's changes began to be captured",
        include_str!("../../sql/mysql/0016_capture_starts.sql"),
    ),
    (
        17,
        "tables stopped by writes logged as statements",
        include_str!("../../sql/mysql/0017_statement_stops.sql"),
    ),
    (
        18,
        "parallel apply: apply workers per direction",
        include_str!("../../sql/mysql/0018_apply_workers.sql"),
    ),
    (
        19,
        "no password in a site's conninfo, in any form",
        include_str!("../../sql/mysql/0019_conninfo_secrets.sql"),
    ),
    (
        20,
        "slot guardrails: retained WAL, wal_status, safe_wal_size, warnings",
        include_str!("../../sql/mysql/0020_retention_guardrails.sql"),
    ),
    (
        21,
        "duplex resync: a request counter that restarts the running link",
        include_str!("../../sql/mysql/0021_resync.sql"),
    ),
    (
        22,
        "HA: link leases with fencing terms, live processes; failover slots",
        include_str!("../../sql/mysql/0022_ha_leases.sql"),
    ),
    (
        23,
        "status: a direction nobody reports on shows as unknown",
        include_str!("../../sql/mysql/0023_stale_status.sql"),
    ),
    (
        24,
        "tables held for their shape: quarantine op 'schema', status views",
        include_str!("../../sql/mysql/0024_schema_holds.sql"),
    ),
];

/// Newest control-schema version this build understands.
pub fn latest_version() -> i32 {
    PG_MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    #[error("control database: {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    // The server's message is in the text; not chained as a source, since
    // mysql_async's own error repeats it in its source.
    #[error("control database: {context}: {source}")]
    Mysql {
        context: String,
        source: mysql_async::Error,
    },
    #[error("the control schema is at version {found}, newer than this duplex understands ({supported}); upgrade duplex")]
    TooNew { found: i32, supported: i32 },
    #[error("the control schema is not installed (no duplex.schema_migrations table); run `duplex init --control <url>` first")]
    NotInstalled,
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ControlError {
    let context = context.into();
    move |source| ControlError::Db { context, source }
}

fn my(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> ControlError {
    let context = context.into();
    move |source| ControlError::Mysql { context, source }
}

/// Install or upgrade the control schema, on either engine. Returns the
/// versions applied.
pub async fn migrate(db: &mut ControlDb) -> Result<Vec<i32>, ControlError> {
    match db {
        ControlDb::Pg(c) => migrate_pg(c).await,
        ControlDb::Mysql(c) => migrate_mysql(c).await,
    }
}

/// Install or upgrade the PostgreSQL flavour: applies every migration not yet
/// applied, each in its own transaction, under an advisory lock so two
/// processes cannot migrate at once. Returns the versions applied.
pub async fn migrate_pg(client: &mut Client) -> Result<Vec<i32>, ControlError> {
    let tx = client.transaction().await.map_err(db("begin migration"))?;
    // Serialise concurrent `duplex init`: the lock is released at commit.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('duplex.migrate'))",
        &[],
    )
    .await
    .map_err(db("take the migration lock"))?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS duplex;
         CREATE TABLE IF NOT EXISTS duplex.schema_migrations (
             version     integer PRIMARY KEY,
             description text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db("create duplex.schema_migrations"))?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM duplex.schema_migrations",
            &[],
        )
        .await
        .map_err(db("read the control schema version"))?
        .get(0);
    if current > latest_version() {
        return Err(ControlError::TooNew {
            found: current,
            supported: latest_version(),
        });
    }
    let mut applied = Vec::new();
    for &(version, description, sql) in PG_MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await.map_err(db(format!(
            "apply control-schema migration {version} ({description})"
        )))?;
        tx.execute(
            "INSERT INTO duplex.schema_migrations (version, description) VALUES ($1, $2)",
            &[&version, &description],
        )
        .await
        .map_err(db("record the migration"))?;
        applied.push(version);
    }
    tx.commit().await.map_err(db("commit migration"))?;
    Ok(applied)
}

/// Install or upgrade the MySQL/MariaDB flavour, in database `duplex`. MySQL
/// DDL is not transactional: a named lock keeps two processes apart, every
/// statement of a migration is written to be run again (IF NOT EXISTS, DROP
/// ... IF EXISTS before CREATE), and a migration is recorded once all of its
/// statements ran, so an interrupted one is simply run again.
async fn migrate_mysql(conn: &mut mysql_async::Conn) -> Result<Vec<i32>, ControlError> {
    use mysql_async::prelude::Queryable;
    let got: Option<i64> = conn
        .query_first("SELECT GET_LOCK('duplex.migrate', 60)")
        .await
        .map_err(my("take the migration lock"))?;
    if got != Some(1) {
        return Err(ControlError::Invalid(
            "another process has held the migration lock (GET_LOCK('duplex.migrate')) for 60 s; try again when it is done".into(),
        ));
    }
    let result = async {
        conn.query_drop(
            "CREATE DATABASE IF NOT EXISTS duplex CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        )
        .await
        .map_err(my("create database duplex"))?;
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS duplex.schema_migrations (
                 version     INT PRIMARY KEY,
                 description VARCHAR(200) NOT NULL,
                 applied_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
             ) ENGINE = InnoDB",
        )
        .await
        .map_err(my("create duplex.schema_migrations"))?;
        let current: i32 = conn
            .query_first::<Option<i32>, _>("SELECT MAX(version) FROM duplex.schema_migrations")
            .await
            .map_err(my("read the control schema version"))?
            .flatten()
            .unwrap_or(0);
        if current > latest_version() {
            return Err(ControlError::TooNew {
                found: current,
                supported: latest_version(),
            });
        }
        let mut applied = Vec::new();
        for &(version, description, sql) in MYSQL_MIGRATIONS.iter().filter(|m| m.0 > current) {
            for statement in db::split_mysql_script(sql) {
                conn.query_drop(statement.as_str())
                    .await
                    .map_err(my(format!(
                        "apply control-schema migration {version} ({description}), statement: {}",
                        statement.lines().next().unwrap_or_default()
                    )))?;
            }
            conn.exec_drop(
                "INSERT INTO duplex.schema_migrations (version, description) VALUES (?, ?)",
                (version, description),
            )
            .await
            .map_err(my("record the migration"))?;
            applied.push(version);
        }
        Ok(applied)
    }
    .await;
    let _ = conn.query_drop("DO RELEASE_LOCK('duplex.migrate')").await;
    result
}

/// The installed control-schema version; refuses one newer than this build.
pub async fn check_version(db: &mut ControlDb) -> Result<i32, ControlError> {
    let exists = db
        .row(Sql::new(
            "look for the control schema",
            "SELECT to_regclass('duplex.schema_migrations') IS NOT NULL AS found",
            "SELECT COUNT(*) AS found FROM information_schema.tables
              WHERE table_schema = 'duplex' AND table_name = 'schema_migrations'",
            &[],
        ))
        .await?
        .map(|r| r.bool("found"))
        .transpose()?
        .unwrap_or(false);
    if !exists {
        return Err(ControlError::NotInstalled);
    }
    let version: i32 = db
        .row(Sql::new(
            "read the control schema version",
            "SELECT coalesce(max(version), 0) AS version FROM duplex.schema_migrations",
            "SELECT COALESCE(MAX(version), 0) AS version FROM duplex.schema_migrations",
            &[],
        ))
        .await?
        .map(|r| r.parse("version"))
        .transpose()?
        .unwrap_or(0);
    if version > latest_version() {
        return Err(ControlError::TooNew {
            found: version,
            supported: latest_version(),
        });
    }
    Ok(version)
}

fn link_id_of(row: &TextRow, table: &str) -> Result<u32, ControlError> {
    row.parse::<u32>("link_id")
        .map_err(|e| ControlError::Invalid(format!("duplex.{table}: {e}")))
}

/// Read the whole configuration; a link's rows that cannot be read are kept
/// in `invalid_rows` (see [`ControlConfig::link_config`]).
pub async fn load_unchecked(db: &mut ControlDb) -> Result<ControlConfig, ControlError> {
    check_version(db).await?;
    let sites = db
        .rows(Sql::new(
            "read duplex.sites",
            "SELECT site_id, name, engine, conninfo, password_env, password_file, tls_mode, tls_ca_file
               FROM duplex.sites ORDER BY site_id",
            "SELECT site_id, name, engine, conninfo, password_env, password_file, tls_mode, tls_ca_file
               FROM duplex.sites ORDER BY site_id",
            &[],
        ))
        .await?
        .iter()
        .map(Site::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let links = db
        .rows(Sql::new(
            "read duplex.links",
            "SELECT link_id, name, site_a, site_b, enabled, marker_column,
                    extract(epoch FROM tombstone_retention)::float8 AS tombstone_retention_secs,
                    snapshot_rows_per_second, apply_workers, retention_warn_bytes, resync_requests, failover_slots
               FROM duplex.links ORDER BY link_id",
            "SELECT link_id, name, site_a, site_b, enabled, marker_column,
                    CAST(tombstone_retention_secs AS DOUBLE) AS tombstone_retention_secs,
                    snapshot_rows_per_second, apply_workers, retention_warn_bytes, resync_requests, failover_slots
               FROM duplex.links ORDER BY link_id",
            &[],
        ))
        .await?
        .iter()
        .map(Link::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    // A table row that cannot be read makes its link's configuration invalid,
    // not the whole configuration: other links keep reloading.
    let mut invalid_rows = Vec::new();
    type TableKey = (u32, String, String);
    let mut owners: std::collections::BTreeMap<TableKey, std::collections::BTreeMap<String, u32>> =
        Default::default();
    for r in db
        .rows(Sql::new(
            "read duplex.column_owners",
            "SELECT link_id, schema_name, table_name, column_name, site_id FROM duplex.column_owners",
            "SELECT link_id, schema_name, table_name, column_name, site_id FROM duplex.column_owners",
            &[],
        ))
        .await?
    {
        let link = link_id_of(&r, "column_owners")?;
        let row = (|| {
            Ok::<_, ControlError>((
                (link, r.text("schema_name")?, r.text("table_name")?),
                r.text("column_name")?,
                r.parse::<u32>("site_id")?,
            ))
        })();
        match row {
            Ok((key, column, site)) => {
                owners.entry(key).or_default().insert(column, site);
            }
            Err(e) => invalid_rows.push((link, format!("duplex.column_owners: {e}"))),
        }
    }
    let mut mappings: std::collections::BTreeMap<TableKey, Vec<crate::mapping::ColumnMapping>> =
        Default::default();
    for r in db
        .rows(Sql::new(
            "read duplex.column_mappings",
            "SELECT link_id, schema_name, table_name, site_id, column_name, peer_column, synced, transform, default_value
               FROM duplex.column_mappings ORDER BY site_id, column_name",
            "SELECT link_id, schema_name, table_name, site_id, column_name, peer_column, synced, transform, default_value
               FROM duplex.column_mappings ORDER BY site_id, column_name",
            &[],
        ))
        .await?
    {
        let link = link_id_of(&r, "column_mappings")?;
        let row = (|| {
            Ok::<_, ControlError>((
                (link, r.text("schema_name")?, r.text("table_name")?),
                crate::mapping::ColumnMapping {
                    site_id: r.parse("site_id")?,
                    column_name: r.text("column_name")?,
                    peer_column: r.opt("peer_column")?,
                    synced: r.bool("synced")?,
                    transform: r.opt("transform")?,
                    default_value: r.opt("default_value")?,
                },
            ))
        })();
        match row {
            Ok((key, m)) => mappings.entry(key).or_default().push(m),
            Err(e) => invalid_rows.push((link, format!("duplex.column_mappings: {e}"))),
        }
    }
    let mut tables = Vec::new();
    for row in db
        .rows(Sql::new(
            "read duplex.link_tables",
            "SELECT link_id, schema_name, table_name, enabled, paused, direction, replica_identity,
                    conflict_policy, priority_site, merge_tie, initial_sync, fire_triggers,
                    extract(epoch FROM check_interval)::bigint AS check_interval_secs
               FROM duplex.link_tables ORDER BY link_id, schema_name, table_name",
            "SELECT link_id, schema_name, table_name, enabled, paused, direction, replica_identity,
                    conflict_policy, priority_site, merge_tie, initial_sync, fire_triggers, check_interval_secs
               FROM duplex.link_tables ORDER BY link_id, schema_name, table_name",
            &[],
        ))
        .await?
    {
        let link = link_id_of(&row, "link_tables")?;
        let key = (
            link,
            row.text("schema_name").unwrap_or_default(),
            row.text("table_name").unwrap_or_default(),
        );
        match LinkTable::from_row(
            &row,
            owners.remove(&key).unwrap_or_default(),
            mappings.remove(&key).unwrap_or_default(),
        ) {
            Ok(t) => tables.push(t),
            Err(e) => invalid_rows.push((link, e.to_string())),
        }
    }
    let patterns = db
        .rows(Sql::new(
            "read duplex.link_table_patterns",
            "SELECT link_id, schema_name, pattern, exclude FROM duplex.link_table_patterns
              ORDER BY link_id, schema_name, exclude, pattern",
            "SELECT link_id, schema_name, pattern, exclude FROM duplex.link_table_patterns
              ORDER BY link_id, schema_name, exclude, pattern",
            &[],
        ))
        .await?
        .iter()
        .map(|r| {
            Ok(model::TablePattern {
                link_id: link_id_of(r, "link_table_patterns")?,
                schema_name: r.text("schema_name")?,
                pattern: r.text("pattern")?,
                exclude: r.bool("exclude")?,
            })
        })
        .collect::<Result<Vec<_>, ControlError>>()?;
    Ok(ControlConfig {
        sites,
        links,
        tables,
        patterns,
        invalid_rows,
    })
}

/// Read the whole configuration, every link valid.
pub async fn load(db: &mut ControlDb) -> Result<ControlConfig, ControlError> {
    let config = load_unchecked(db).await?;
    config.validate()?;
    Ok(config)
}

/// One direction's status, as written to `duplex.link_status`.
#[derive(Debug, Clone)]
pub struct DirectionStatus {
    pub link_id: i32,
    pub source_site: i32,
    pub target_site: i32,
    pub state: String,
    pub source_position: Option<String>,
    pub applied_position: Option<String>,
    pub applied_txns: i64,
    pub applied_rows: i64,
    pub echo_txns_skipped: i64,
    pub quarantined: i64,
    pub conflicts: i64,
    /// A new error since the last write (kept as `last_error`).
    pub last_error: Option<String>,
    /// When the current error began (µs since the epoch); `None`: healthy.
    pub error_since_us: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub lag_bytes: Option<i64>,
    pub queued_events: i64,
    pub by_op: [i64; 3],
    /// Commit time of the newest applied source transaction (µs since the epoch, 0: none).
    pub applied_commit_us: i64,
    /// Per source table: [inserted, updated, deleted].
    pub tables: Vec<(String, [i64; 3])>,
    /// The source slot's health (PostgreSQL sources), as last read.
    pub retention: Option<crate::stats::SourceRetention>,
}

/// A direction's counters as the last run wrote them: a starting duplex
/// carries on from them, so the counters are the direction's whole history.
#[derive(Debug, Clone, Default)]
pub struct StatusTotals {
    pub applied_txns: i64,
    pub applied_rows: i64,
    pub echo_txns_skipped: i64,
    pub quarantined: i64,
    pub conflicts: i64,
    pub by_op: [i64; 3],
    /// Per source table: [inserted, updated, deleted].
    pub tables: Vec<(String, [i64; 3])>,
}

/// The counters in `duplex.link_status` and `duplex.table_status`, by (link,
/// source site).
pub async fn load_status_totals(
    db: &mut ControlDb,
) -> Result<std::collections::HashMap<(u32, u32), StatusTotals>, ControlError> {
    let mut out: std::collections::HashMap<(u32, u32), StatusTotals> = Default::default();
    let direction = |r: &TextRow| -> Result<(u32, u32), ControlError> {
        Ok((r.parse("link_id")?, r.parse("source_site")?))
    };
    let counters = "link_id, source_site, applied_txns, applied_rows, echo_txns_skipped, quarantined, conflicts, inserted, updated, deleted";
    let sql = format!("SELECT {counters} FROM duplex.link_status");
    for r in db
        .rows(Sql::new("read the status counters", &sql, &sql, &[]))
        .await?
    {
        let t = out.entry(direction(&r)?).or_default();
        t.applied_txns = r.parse("applied_txns")?;
        t.applied_rows = r.parse("applied_rows")?;
        t.echo_txns_skipped = r.parse("echo_txns_skipped")?;
        t.quarantined = r.parse("quarantined")?;
        t.conflicts = r.parse("conflicts")?;
        t.by_op = [
            r.parse("inserted")?,
            r.parse("updated")?,
            r.parse("deleted")?,
        ];
    }
    let sql = "SELECT link_id, source_site, table_name, inserted, updated, deleted FROM duplex.table_status";
    for r in db
        .rows(Sql::new("read the table counters", sql, sql, &[]))
        .await?
    {
        out.entry(direction(&r)?).or_default().tables.push((
            r.text("table_name")?,
            [
                r.parse("inserted")?,
                r.parse("updated")?,
                r.parse("deleted")?,
            ],
        ));
    }
    Ok(out)
}

/// Upsert one direction's status row.
pub async fn write_status(db: &mut ControlDb, s: &DirectionStatus) -> Result<(), ControlError> {
    let params = [
        P::I32(s.link_id),
        P::I32(s.source_site),
        P::I32(s.target_site),
        P::Text(Some(&s.state)),
        P::Text(s.source_position.as_deref()),
        P::Text(s.applied_position.as_deref()),
        P::I64(s.applied_txns),
        P::I64(s.applied_rows),
        P::I64(s.echo_txns_skipped),
        P::Text(s.last_error.as_deref()),
        P::I64(s.quarantined),
        P::I64(s.conflicts),
        P::F64(s.lag_seconds),
        P::OptI64(s.lag_bytes),
        P::I64(s.queued_events),
        P::I64(s.by_op[0]),
        P::I64(s.by_op[1]),
        P::I64(s.by_op[2]),
        P::I64(s.applied_commit_us),
        P::OptI64(s.error_since_us),
        P::OptI64(s.retention.as_ref().and_then(|h| h.retained_bytes)),
        P::Text(s.retention.as_ref().and_then(|h| h.wal_status.as_deref())),
        P::OptI64(s.retention.as_ref().and_then(|h| h.safe_bytes)),
        P::Text(s.retention.as_ref().and_then(|h| h.warning.as_deref())),
        P::OptI64(s.retention.as_ref().map(|h| h.checked_us)),
        P::Text(
            s.retention
                .as_ref()
                .and_then(|h| h.oldest_binlog.as_deref()),
        ),
        P::OptI64(s.retention.as_ref().and_then(|h| h.headroom_files)),
    ];
    db.exec(
        Sql::new(
            "write duplex.link_status",
            "INSERT INTO duplex.link_status AS ls
                 (link_id, source_site, target_site, state, source_position, applied_position,
                  applied_txns, applied_rows, echo_txns_skipped, last_error, last_error_at, updated_at, quarantined, conflicts,
                  lag_seconds, lag_bytes, queued_events, inserted, updated, deleted, last_applied_commit_at, error_since,
                  retained_bytes, wal_status, safe_wal_bytes, retention_warning, retention_checked_at,
                  oldest_binlog, binlog_headroom_files)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text, CASE WHEN $10::text IS NULL THEN NULL ELSE now() END, now(), $11, $12,
                     $13, $14, $15, $16, $17, $18,
                     CASE WHEN $19::bigint > 0 THEN to_timestamp($19::bigint / 1e6) END,
                     to_timestamp($20::bigint / 1e6),
                     $21, $22, $23, $24, to_timestamp($25::bigint / 1e6), $26, $27)
             ON CONFLICT (link_id, source_site) DO UPDATE SET
                 target_site = EXCLUDED.target_site, state = EXCLUDED.state,
                 source_position = EXCLUDED.source_position, applied_position = EXCLUDED.applied_position,
                 applied_txns = EXCLUDED.applied_txns, applied_rows = EXCLUDED.applied_rows,
                 echo_txns_skipped = EXCLUDED.echo_txns_skipped, quarantined = EXCLUDED.quarantined,
                 conflicts = EXCLUDED.conflicts,
                 last_error = coalesce(EXCLUDED.last_error, ls.last_error),
                 last_error_at = coalesce(EXCLUDED.last_error_at, ls.last_error_at),
                 lag_seconds = EXCLUDED.lag_seconds, lag_bytes = EXCLUDED.lag_bytes,
                 queued_events = EXCLUDED.queued_events, inserted = EXCLUDED.inserted,
                 updated = EXCLUDED.updated, deleted = EXCLUDED.deleted,
                 last_applied_commit_at = coalesce(EXCLUDED.last_applied_commit_at, ls.last_applied_commit_at),
                 error_since = EXCLUDED.error_since,
                 retained_bytes = EXCLUDED.retained_bytes, wal_status = EXCLUDED.wal_status,
                 safe_wal_bytes = EXCLUDED.safe_wal_bytes, retention_warning = EXCLUDED.retention_warning,
                 retention_checked_at = EXCLUDED.retention_checked_at,
                 oldest_binlog = EXCLUDED.oldest_binlog, binlog_headroom_files = EXCLUDED.binlog_headroom_files,
                 updated_at = now()",
            "INSERT INTO duplex.link_status
                 (link_id, source_site, target_site, state, source_position, applied_position,
                  applied_txns, applied_rows, echo_txns_skipped, last_error, last_error_at, updated_at, quarantined, conflicts,
                  lag_seconds, lag_bytes, queued_events, inserted, updated, deleted, last_applied_commit_at, error_since,
                  retained_bytes, wal_status, safe_wal_bytes, retention_warning, retention_checked_at,
                  oldest_binlog, binlog_headroom_files)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, IF(? IS NULL, NULL, UTC_TIMESTAMP(6)), UTC_TIMESTAMP(6), ?, ?,
                     ?, ?, ?, ?, ?, ?,
                     IF(? > 0, TIMESTAMPADD(MICROSECOND, ?, '1970-01-01 00:00:00'), NULL),
                     TIMESTAMPADD(MICROSECOND, ?, '1970-01-01 00:00:00'),
                     ?, ?, ?, ?, TIMESTAMPADD(MICROSECOND, ?, '1970-01-01 00:00:00'), ?, ?)
             ON DUPLICATE KEY UPDATE
                 target_site = VALUES(target_site), state = VALUES(state),
                 source_position = VALUES(source_position), applied_position = VALUES(applied_position),
                 applied_txns = VALUES(applied_txns), applied_rows = VALUES(applied_rows),
                 echo_txns_skipped = VALUES(echo_txns_skipped), quarantined = VALUES(quarantined),
                 conflicts = VALUES(conflicts),
                 last_error = COALESCE(VALUES(last_error), last_error),
                 last_error_at = COALESCE(VALUES(last_error_at), last_error_at),
                 lag_seconds = VALUES(lag_seconds), lag_bytes = VALUES(lag_bytes),
                 queued_events = VALUES(queued_events), inserted = VALUES(inserted),
                 updated = VALUES(updated), deleted = VALUES(deleted),
                 last_applied_commit_at = COALESCE(VALUES(last_applied_commit_at), last_applied_commit_at),
                 error_since = VALUES(error_since),
                 retained_bytes = VALUES(retained_bytes), wal_status = VALUES(wal_status),
                 safe_wal_bytes = VALUES(safe_wal_bytes), retention_warning = VALUES(retention_warning),
                 retention_checked_at = VALUES(retention_checked_at),
                 oldest_binlog = VALUES(oldest_binlog), binlog_headroom_files = VALUES(binlog_headroom_files),
                 updated_at = UTC_TIMESTAMP(6)",
            &params,
        )
        .mysql_order(&[
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 18, 19, 20, 21,
            22, 23, 24, 25, 26,
        ]),
    )
    .await?;
    for (table, [ins, upd, del]) in &s.tables {
        db.exec(Sql::new(
            "write duplex.table_status",
            "INSERT INTO duplex.table_status (link_id, source_site, target_site, table_name, inserted, updated, deleted, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now())
             ON CONFLICT (link_id, source_site, table_name) DO UPDATE SET
                 target_site = EXCLUDED.target_site, inserted = EXCLUDED.inserted, updated = EXCLUDED.updated,
                 deleted = EXCLUDED.deleted, updated_at = now()
             WHERE (duplex.table_status.inserted, duplex.table_status.updated, duplex.table_status.deleted)
                   IS DISTINCT FROM (EXCLUDED.inserted, EXCLUDED.updated, EXCLUDED.deleted)",
            "INSERT INTO duplex.table_status (link_id, source_site, target_site, table_name, inserted, updated, deleted, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE
                 updated_at = IF((inserted, updated, deleted) = (VALUES(inserted), VALUES(updated), VALUES(deleted)),
                                 updated_at, UTC_TIMESTAMP(6)),
                 target_site = VALUES(target_site), inserted = VALUES(inserted), updated = VALUES(updated),
                 deleted = VALUES(deleted)",
            &[
                P::I32(s.link_id),
                P::I32(s.source_site),
                P::I32(s.target_site),
                P::Text(Some(table)),
                P::I64(*ins),
                P::I64(*upd),
                P::I64(*del),
            ],
        ))
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both flavours end at the same version: a version number means the
    /// same schema on either engine.
    #[test]
    fn both_flavours_reach_the_latest_version() {
        assert_eq!(MYSQL_MIGRATIONS.last().map(|m| m.0), Some(latest_version()));
        let mysql_versions: Vec<i32> = MYSQL_MIGRATIONS.iter().map(|m| m.0).collect();
        let mut sorted = mysql_versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(mysql_versions, sorted, "MySQL migrations out of order");
    }

    #[test]
    fn mysql_migrations_split_into_statements() {
        for (version, _, sql) in MYSQL_MIGRATIONS {
            let statements = db::split_mysql_script(sql);
            assert!(!statements.is_empty(), "migration {version}");
            assert!(
                statements.iter().all(|s| !s.starts_with("DELIMITER")),
                "migration {version}"
            );
            // Each procedure arrives whole, ending at its END.
            for s in statements
                .iter()
                .filter(|s| s.starts_with("CREATE PROCEDURE"))
            {
                assert!(s.ends_with("END"), "{s}");
            }
        }
    }
}
