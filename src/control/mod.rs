//! The control schema: duplex's configuration and status, as SQL tables.
//!
//! Everything `duplex run` needs (sites, links, tables) is read from here, so a
//! DBA configures and observes duplex with psql. The schema is installed and
//! upgraded by numbered migrations under `sql/`.

pub mod model;

use tokio_postgres::Client;

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
];

/// Newest control-schema version this build understands.
pub fn latest_version() -> i32 {
    PG_MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control database: {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: tokio_postgres::Error,
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

/// Install or upgrade the control schema: applies every migration not yet
/// applied, each in its own transaction, under an advisory lock so two
/// processes cannot migrate at once. Returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, ControlError> {
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

/// The installed control-schema version; refuses one newer than this build.
pub async fn check_version(client: &Client) -> Result<i32, ControlError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('duplex.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db("look for the control schema"))?
        .get(0);
    if !exists {
        return Err(ControlError::NotInstalled);
    }
    let version: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM duplex.schema_migrations",
            &[],
        )
        .await
        .map_err(db("read the control schema version"))?
        .get(0);
    if version > latest_version() {
        return Err(ControlError::TooNew {
            found: version,
            supported: latest_version(),
        });
    }
    Ok(version)
}

/// Read the whole configuration; a link's rows that cannot be read are kept
/// in `invalid_rows` (see [`ControlConfig::link_config`]).
pub async fn load_unchecked(client: &Client) -> Result<ControlConfig, ControlError> {
    check_version(client).await?;
    let sites = client
        .query(
            "SELECT site_id, name, engine, conninfo, password_env, password_file, tls_mode, tls_ca_file
               FROM duplex.sites ORDER BY site_id",
            &[],
        )
        .await
        .map_err(db("read duplex.sites"))?
        .iter()
        .map(Site::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let links = client
        .query(
            "SELECT link_id, name, site_a, site_b, enabled, marker_column,
                    extract(epoch FROM tombstone_retention)::float8 AS tombstone_retention_secs
               FROM duplex.links ORDER BY link_id",
            &[],
        )
        .await
        .map_err(db("read duplex.links"))?
        .iter()
        .map(Link::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let table_rows = client
        .query(
            "SELECT link_id, schema_name, table_name, enabled, paused, direction, replica_identity,
                    conflict_policy, priority_site, merge_tie,
                    coalesce((SELECT jsonb_object_agg(o.column_name, o.site_id)
                                FROM duplex.column_owners o
                               WHERE (o.link_id, o.schema_name, o.table_name) = (t.link_id, t.schema_name, t.table_name)),
                             '{}')::text AS owners,
                    coalesce((SELECT jsonb_agg(jsonb_build_object(
                                         'site_id', m.site_id, 'column_name', m.column_name, 'peer_column', m.peer_column,
                                         'synced', m.synced, 'transform', m.transform, 'default_value', m.default_value)
                                       ORDER BY m.site_id, m.column_name)
                                FROM duplex.column_mappings m
                               WHERE (m.link_id, m.schema_name, m.table_name) = (t.link_id, t.schema_name, t.table_name)),
                             '[]')::text AS mappings
               FROM duplex.link_tables t ORDER BY link_id, schema_name, table_name",
            &[],
        )
        .await
        .map_err(db("read duplex.link_tables"))?;
    // A table row that cannot be read makes its link's configuration invalid,
    // not the whole configuration: other links keep reloading.
    let mut tables = Vec::new();
    let mut invalid_rows = Vec::new();
    for row in &table_rows {
        match LinkTable::from_row(row) {
            Ok(t) => tables.push(t),
            Err(e) => {
                let link_id: i32 = row.try_get("link_id").unwrap_or(0);
                invalid_rows.push((u32::try_from(link_id).unwrap_or(0), e.to_string()));
            }
        }
    }
    let patterns = client
        .query(
            "SELECT link_id, schema_name, pattern, exclude FROM duplex.link_table_patterns
              ORDER BY link_id, schema_name, exclude, pattern",
            &[],
        )
        .await
        .map_err(db("read duplex.link_table_patterns"))?
        .iter()
        .map(|r| {
            Ok(model::TablePattern {
                link_id: u32::try_from(r.get::<_, i32>(0)).map_err(|_| {
                    ControlError::Invalid("link_table_patterns: negative link_id".into())
                })?,
                schema_name: r.get(1),
                pattern: r.get(2),
                exclude: r.get(3),
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
pub async fn load(client: &Client) -> Result<ControlConfig, ControlError> {
    let config = load_unchecked(client).await?;
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
    pub last_error: Option<String>,
    pub lag_seconds: Option<f64>,
    pub lag_bytes: Option<i64>,
    pub queued_events: i64,
    pub by_op: [i64; 3],
    /// Commit time of the newest applied source transaction (µs since the epoch, 0: none).
    pub applied_commit_us: i64,
    /// Per source table: [inserted, updated, deleted].
    pub tables: Vec<(String, [i64; 3])>,
}

/// Upsert one direction's status row.
pub async fn write_status(client: &Client, s: &DirectionStatus) -> Result<(), ControlError> {
    client
        .execute(
            "INSERT INTO duplex.link_status AS ls
                 (link_id, source_site, target_site, state, source_position, applied_position,
                  applied_txns, applied_rows, echo_txns_skipped, last_error, last_error_at, updated_at, quarantined, conflicts,
                  lag_seconds, lag_bytes, queued_events, inserted, updated, deleted, last_applied_commit_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text, CASE WHEN $10::text IS NULL THEN NULL ELSE now() END, now(), $11, $12,
                     $13, $14, $15, $16, $17, $18,
                     CASE WHEN $19::bigint > 0 THEN to_timestamp($19::bigint / 1e6) END)
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
                 updated_at = now()",
            &[
                &s.link_id,
                &s.source_site,
                &s.target_site,
                &s.state,
                &s.source_position,
                &s.applied_position,
                &s.applied_txns,
                &s.applied_rows,
                &s.echo_txns_skipped,
                &s.last_error,
                &s.quarantined,
                &s.conflicts,
                &s.lag_seconds,
                &s.lag_bytes,
                &s.queued_events,
                &s.by_op[0],
                &s.by_op[1],
                &s.by_op[2],
                &s.applied_commit_us,
            ],
        )
        .await
        .map_err(db("write duplex.link_status"))?;
    for (table, [ins, upd, del]) in &s.tables {
        client
            .execute(
                "INSERT INTO duplex.table_status (link_id, source_site, target_site, table_name, inserted, updated, deleted, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                 ON CONFLICT (link_id, source_site, table_name) DO UPDATE SET
                     target_site = EXCLUDED.target_site, inserted = EXCLUDED.inserted, updated = EXCLUDED.updated,
                     deleted = EXCLUDED.deleted, updated_at = now()
                 WHERE (duplex.table_status.inserted, duplex.table_status.updated, duplex.table_status.deleted)
                       IS DISTINCT FROM (EXCLUDED.inserted, EXCLUDED.updated, EXCLUDED.deleted)",
                &[&s.link_id, &s.source_site, &s.target_site, table, ins, upd, del],
            )
            .await
            .map_err(db("write duplex.table_status"))?;
    }
    Ok(())
}
