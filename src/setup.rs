//! Prepares the sites of a link: everything duplex owns on a synced database.
//!
//! Idempotent; run at every start. On each PostgreSQL site of a link it checks
//! `wal_level`, checks every synced table exists with a primary key, adds the
//! marker column, sets the replica identity, creates or updates the link's
//! publication, creates the link's replication slot, and creates the replication
//! origin under which the peer's changes are applied.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use crate::canonical::TableName;
use crate::control::{Link, LinkTable, ReplicaIdentityMode};
use crate::pg::{quote_ident, quote_table};

/// duplex's tombstone table on a PostgreSQL site.
pub const PG_TOMBSTONES_DDL: &str = "CREATE TABLE IF NOT EXISTS duplex.site_tombstones (
    table_name text NOT NULL,
    row_key    bytea NOT NULL,
    vv         jsonb NOT NULL,
    site       integer NOT NULL,
    ts         bigint NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, row_key)
)";

/// duplex's tombstone table on a MySQL/MariaDB site (in the synced schema).
pub const MYSQL_TOMBSTONES_TABLE: &str = "_duplex_tombstones";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("site {site}: {context}: {source}")]
    Db {
        site: String,
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("site {site}: wal_level is '{found}', duplex needs 'logical': set `wal_level = logical` in postgresql.conf and restart PostgreSQL")]
    WalLevel { site: String, found: String },
    #[error("site {site}: track_commit_timestamp is off; duplex needs it to tell a row's local edits apart in conflicts: set `track_commit_timestamp = on` in postgresql.conf and restart PostgreSQL")]
    CommitTimestamps { site: String },
    #[error("site {site}: server encoding is {found}; duplex needs UTF8 databases")]
    Encoding { site: String, found: String },
    #[error("site {site}: table {table} does not exist; create it on both sites or remove it from duplex.link_tables")]
    NoTable { site: String, table: TableName },
    #[error("site {site}: table {table} has no primary key; duplex syncs only tables with a primary key (add one, or remove the table from duplex.link_tables)")]
    NoPrimaryKey { site: String, table: TableName },
    #[error("site {site}: PostgreSQL {found} is too old; duplex needs PostgreSQL 15 or newer")]
    Version { site: String, found: String },
    #[error(
        "site {site}: replication slot {slot} is gone, but site {peer} has already applied changes from it up to {applied}: \
         a new slot would silently skip every change made on {site} since then. Resync the link's tables first, \
         then reset the peer's progress with SELECT pg_replication_origin_drop('{origin}') on {peer} and start duplex again"
    )]
    SlotLost {
        site: String,
        slot: String,
        peer: String,
        origin: String,
        applied: String,
    },
    #[error("site {site}: column {column} of table {table} is part of the primary key: it cannot be excluded or transformed (rows are found by their key on both sites)")]
    KeyColumnMapped {
        site: String,
        table: TableName,
        column: String,
    },
    /// `column`: the column's name and why the configuration names it.
    #[error("site {site}: table {table} has no column {column}; fix the name in the configuration or add the column")]
    NoColumn {
        site: String,
        table: TableName,
        column: String,
    },
}

/// Read-only check of a link's tables on a PostgreSQL site, before a
/// configuration change takes effect: each exists, has a primary key and has
/// the columns the configuration names. Names are passed as parameters or
/// quoted, never spliced into SQL.
pub async fn check_pg_tables(
    client: &Client,
    site_name: &str,
    site_id: u32,
    link: &Link,
    tables: &[&LinkTable],
) -> Result<ColumnTypes, SetupError> {
    let mut types = ColumnTypes::new();
    for t in tables {
        let rows = client
            .query(
                "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = r.oid AND i.indisprimary),
                        array(SELECT attname::text FROM pg_attribute
                               WHERE attrelid = r.oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum),
                        array(SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                               WHERE attrelid = r.oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum),
                        array(SELECT a.attname::text FROM pg_index i
                                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                               WHERE i.indrelid = r.oid AND i.indisprimary)
                   FROM (SELECT to_regclass($1) AS oid) r WHERE r.oid IS NOT NULL",
                &[&quote_table(&t.table)],
            )
            .await
            .map_err(|source| SetupError::Db {
                site: site_name.into(),
                context: format!("look up table {}", t.table),
                source,
            })?;
        let Some(row) = rows.first() else {
            return Err(SetupError::NoTable {
                site: site_name.into(),
                table: t.table.clone(),
            });
        };
        if !row.get::<_, bool>(0) {
            return Err(SetupError::NoPrimaryKey {
                site: site_name.into(),
                table: t.table.clone(),
            });
        }
        let columns: Vec<String> = row.get(1);
        let type_names: Vec<String> = row.get(2);
        let key: Vec<String> = row.get(3);
        if let Some(column) = mapped_key_column(t, site_id, &key) {
            return Err(SetupError::KeyColumnMapped {
                site: site_name.into(),
                table: t.table.clone(),
                column,
            });
        }
        for (column, why) in t.required_columns(link, site_id) {
            if !columns.contains(&column) {
                return Err(SetupError::NoColumn {
                    site: site_name.into(),
                    table: t.table.clone(),
                    column: format!("{column} ({why})"),
                });
            }
        }
        types.insert(
            t.table.name.clone(),
            columns.into_iter().zip(type_names).collect(),
        );
    }
    Ok(types)
}

/// Per checked table (bare name): column -> the site's type name.
pub type ColumnTypes = std::collections::HashMap<String, std::collections::HashMap<String, String>>;

/// [`check_pg_tables`] for a MySQL/MariaDB site (tables in `database`).
pub async fn check_mysql_tables(
    conn: &mut mysql_async::Conn,
    site_name: &str,
    site_id: u32,
    link: &Link,
    database: &str,
    tables: &[&LinkTable],
) -> Result<ColumnTypes, crate::Error> {
    use mysql_async::prelude::Queryable;
    let mut types = ColumnTypes::new();
    for t in tables {
        let table = TableName::new(database, t.table.name.clone());
        let db_err = |e| {
            crate::Error::mysql_sink_error(
                site_name,
                crate::sink::mysql::MysqlSinkError::Db {
                    context: format!("look up table {table}"),
                    source: e,
                },
            )
        };
        let has_pk: Option<u8> = conn
            .exec_first(
                "SELECT EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS
                                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_TYPE = 'PRIMARY KEY')
                   FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (database, t.table.name.as_str(), database, t.table.name.as_str()),
            )
            .await
            .map_err(db_err)?;
        match has_pk {
            None => {
                return Err(SetupError::NoTable {
                    site: site_name.into(),
                    table,
                }
                .into())
            }
            Some(0) => {
                return Err(SetupError::NoPrimaryKey {
                    site: site_name.into(),
                    table,
                }
                .into())
            }
            Some(_) => {}
        }
        let columns: Vec<(String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (database, t.table.name.as_str()),
            )
            .await
            .map_err(db_err)?;
        for (column, why) in t.required_columns(link, site_id) {
            if !columns.iter().any(|(c, _)| c == &column) {
                return Err(SetupError::NoColumn {
                    site: site_name.into(),
                    table: table.clone(),
                    column: format!("{column} ({why})"),
                }
                .into());
            }
        }
        let key: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY'",
                (database, t.table.name.as_str()),
            )
            .await
            .map_err(db_err)?;
        if let Some(column) = mapped_key_column(t, site_id, &key) {
            return Err(SetupError::KeyColumnMapped {
                site: site_name.into(),
                table,
                column,
            }
            .into());
        }
        types.insert(t.table.name.clone(), columns.into_iter().collect());
    }
    Ok(types)
}

/// A primary-key column of `site` that a mapping excludes or transforms.
fn mapped_key_column(t: &LinkTable, site_id: u32, key: &[String]) -> Option<String> {
    t.mappings
        .iter()
        .find(|m| {
            m.site_id == site_id
                && (!m.synced || m.transform.is_some())
                && key.contains(&m.column_name)
        })
        .map(|m| m.column_name.clone())
}

/// Before a site's slot is (re)created: if the peer already applied changes
/// from an earlier slot of this link, a new slot would start at the current
/// position and silently lose everything in between. Refuse instead.
pub async fn check_slot_continuity(
    site: &Client,
    site_name: &str,
    peer: &Client,
    peer_name: &str,
    site_id: u32,
    link: &Link,
) -> Result<(), SetupError> {
    let slot = link.slot_name(site_id);
    let slot_exists: bool = site
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(|source| SetupError::Db {
            site: site_name.into(),
            context: "look up replication slot".into(),
            source,
        })?
        .get(0);
    if slot_exists {
        return Ok(());
    }
    let origin = link.origin_name(site_id);
    let applied: Option<String> = peer
        .query_one(
            "SELECT pg_replication_origin_progress(roname, true)::text FROM pg_replication_origin WHERE roname = $1
             UNION ALL SELECT NULL LIMIT 1",
            &[&origin],
        )
        .await
        .map_err(|source| SetupError::Db { site: peer_name.into(), context: "read replication origin progress".into(), source })?
        .get(0);
    match applied {
        Some(applied) if applied != "0/0" => Err(SetupError::SlotLost {
            site: site_name.into(),
            slot,
            peer: peer_name.into(),
            origin,
            applied,
        }),
        _ => Ok(()),
    }
}

/// Prepare one PostgreSQL site of `link`. `peer_site` is the other site's id:
/// its changes are applied here under the origin `link.origin_name(peer_site)`.
pub async fn prepare_pg_site(
    client: &Client,
    site_name: &str,
    site_id: u32,
    peer_site: u32,
    link: &Link,
    tables: &[&LinkTable],
) -> Result<(), SetupError> {
    let err = |context: &str| {
        let site = site_name.to_string();
        let context = context.to_string();
        move |source| SetupError::Db {
            site,
            context,
            source,
        }
    };
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(err("read server_version_num"))?
        .get(0);
    if version < 150_000 {
        return Err(SetupError::Version {
            site: site_name.into(),
            found: version.to_string(),
        });
    }
    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(err("read wal_level"))?
        .get(0);
    if wal_level != "logical" {
        return Err(SetupError::WalLevel {
            site: site_name.into(),
            found: wal_level,
        });
    }
    let commit_ts: String = client
        .query_one("SHOW track_commit_timestamp", &[])
        .await
        .map_err(err("read track_commit_timestamp"))?
        .get(0);
    if commit_ts != "on" {
        return Err(SetupError::CommitTimestamps {
            site: site_name.into(),
        });
    }
    // Tombstones of rows duplex deleted here (see `conflict`): written by the
    // applier inside its own transactions, never published.
    // Checked first: the DDL needs privileges a least-privilege role has only
    // where duplex must create something (sql/roles/postgresql-site.sql gives
    // it the schema).
    let (has_schema, has_table): (bool, bool) = {
        let r = client
            .query_one(
                "SELECT to_regnamespace('duplex') IS NOT NULL, to_regclass('duplex.site_tombstones') IS NOT NULL",
                &[],
            )
            .await
            .map_err(err("look for duplex.site_tombstones"))?;
        (r.get(0), r.get(1))
    };
    if !has_schema {
        client
            .batch_execute("CREATE SCHEMA IF NOT EXISTS duplex")
            .await
            .map_err(err("create schema duplex"))?;
    }
    if !has_table {
        client
            .batch_execute(PG_TOMBSTONES_DDL)
            .await
            .map_err(err("create duplex.site_tombstones"))?;
    }
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .await
        .map_err(err("read server_encoding"))?
        .get(0);
    if encoding != "UTF8" {
        return Err(SetupError::Encoding {
            site: site_name.into(),
            found: encoding,
        });
    }

    for t in tables {
        let quoted = quote_table(&t.table);
        let row = client
            .query_one(
                "SELECT c.oid, c.relreplident::text,
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
                   FROM (SELECT to_regclass($1)::oid AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid",
                &[&quoted],
            )
            .await
            .map_err(err(&format!("look up table {}", t.table)))?;
        let oid: Option<u32> = row.get(0);
        if oid.is_none() {
            return Err(SetupError::NoTable {
                site: site_name.into(),
                table: t.table.clone(),
            });
        }
        let replident: String = row.get(1);
        let has_pk: bool = row.get(2);
        if !has_pk {
            return Err(SetupError::NoPrimaryKey {
                site: site_name.into(),
                table: t.table.clone(),
            });
        }
        // Checked first: ALTER TABLE needs ownership even when there is
        // nothing to add, and the table's owner may have added it already.
        let has_marker: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped)",
                &[&oid, &link.marker_column],
            )
            .await
            .map_err(err(&format!("look for the marker column of {}", t.table)))?
            .get(0);
        if !has_marker {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {quoted} ADD COLUMN IF NOT EXISTS {} jsonb",
                    quote_ident(&link.marker_column)
                ))
                .await
                .map_err(err(&format!(
                    "add marker column {} to {}",
                    link.marker_column, t.table
                )))?;
        }
        // Only ALTER when needed: it takes an exclusive lock on the table.
        let (wanted, clause) = match t.replica_identity {
            ReplicaIdentityMode::Full => ("f", "FULL"),
            ReplicaIdentityMode::Key => ("d", "DEFAULT"),
        };
        if replident != wanted {
            client
                .batch_execute(&format!("ALTER TABLE {quoted} REPLICA IDENTITY {clause}"))
                .await
                .map_err(err(&format!("set replica identity of {}", t.table)))?;
        }
    }

    // Publication: exactly the link's tables.
    let publication = link.publication_name();
    let wanted: BTreeSet<TableName> = tables.iter().map(|t| t.table.clone()).collect();
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&publication],
        )
        .await
        .map_err(err("look up publication"))?
        .get(0);
    let list = wanted
        .iter()
        .map(quote_table)
        .collect::<Vec<_>>()
        .join(", ");
    if !exists {
        let sql = if wanted.is_empty() {
            format!("CREATE PUBLICATION {}", quote_ident(&publication))
        } else {
            format!(
                "CREATE PUBLICATION {} FOR TABLE {list}",
                quote_ident(&publication)
            )
        };
        client
            .batch_execute(&sql)
            .await
            .map_err(err("create publication"))?;
    } else {
        let current: BTreeSet<TableName> = client
            .query("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", &[&publication])
            .await
            .map_err(err("read publication tables"))?
            .iter()
            .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        if current != wanted {
            let sql = if wanted.is_empty() {
                // SET TABLE needs at least one table; drop the ones there instead.
                let drop = current
                    .iter()
                    .map(quote_table)
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "ALTER PUBLICATION {} DROP TABLE {drop}",
                    quote_ident(&publication)
                )
            } else {
                format!(
                    "ALTER PUBLICATION {} SET TABLE {list}",
                    quote_ident(&publication)
                )
            };
            client
                .batch_execute(&sql)
                .await
                .map_err(err("update publication tables"))?;
        }
    }

    // The slot this site's changes are read from.
    let slot = link.slot_name(site_id);
    let slot_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(err("look up replication slot"))?
        .get(0);
    if !slot_exists {
        client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&slot],
            )
            .await
            .map_err(err(&format!("create replication slot {slot}")))?;
        tracing::info!(site = site_name, slot = %slot, "created replication slot");
    }

    // The origin the peer's changes are applied under here.
    let origin = link.origin_name(peer_site);
    let origin_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)",
            &[&origin],
        )
        .await
        .map_err(err("look up replication origin"))?
        .get(0);
    if !origin_exists {
        client
            .execute("SELECT pg_replication_origin_create($1)", &[&origin])
            .await
            .map_err(err(&format!("create replication origin {origin}")))?;
    }
    Ok(())
}

/// Prepare one MySQL/MariaDB site of `link`: check the binlog settings, check
/// every synced table exists with a primary key, add the marker column, and
/// create duplex's marker table.
pub async fn prepare_mysql_site(
    conn: &mut mysql_async::Conn,
    site_name: &str,
    site_id: u32,
    database: &str,
    link: &Link,
    tables: &[&LinkTable],
) -> Result<(), crate::Error> {
    use crate::mysql::quote_ident as q;
    use mysql_async::prelude::Queryable;
    let err = |context: String| {
        let site = site_name.to_string();
        move |e: mysql_async::Error| {
            crate::Error::mysql_sink_error(
                &site,
                crate::sink::mysql::MysqlSinkError::Db { context, source: e },
            )
        }
    };
    crate::source::mysql::check_binlog_settings(conn)
        .await
        .map_err(|e| crate::Error::mysql_source_error(site_name, e))?;
    check_mysql_tables(conn, site_name, site_id, link, database, tables).await?;
    for t in tables {
        let table = TableName::new(database, t.table.name.clone());
        // Checked first: `ADD COLUMN IF NOT EXISTS` is MariaDB-only syntax.
        // Invisible (MariaDB 10.3+, MySQL 8.0.23+), like the stamp column below:
        // applications' `SELECT *` and `INSERT ... VALUES` without a column
        // list keep working.
        let has_marker: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                (database, t.table.name.as_str(), link.marker_column.as_str()),
            )
            .await
            .map_err(err(format!("look for the marker column of {table}")))?;
        if has_marker.is_none() {
            conn.query_drop(format!(
                "ALTER TABLE {}.{} ADD COLUMN {} JSON NULL INVISIBLE",
                q(database),
                q(&t.table.name),
                q(&link.marker_column)
            ))
            .await
            .map_err(err(format!(
                "add marker column {} to {table}",
                link.marker_column
            )))?;
        }
        // The version stamp: the server sets it on every user write, which is
        // how this site tells its own unsynced versions apart (see `conflict`).
        // Invisible, so applications' SELECT * and INSERT without a column
        // list do not see it.
        let stamp = link.stamp_column();
        let has_stamp: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                (database, t.table.name.as_str(), stamp.as_str()),
            )
            .await
            .map_err(err(format!("look for the stamp column of {table}")))?;
        if has_stamp.is_none() {
            conn.query_drop(format!(
                "ALTER TABLE {}.{} ADD COLUMN {} TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6) INVISIBLE",
                q(database),
                q(&t.table.name),
                q(&stamp)
            ))
            .await
            .map_err(err(format!("add stamp column {stamp} to {table}")))?;
        }
    }
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (
             table_name VARCHAR(200) NOT NULL,
             row_key    VARBINARY(2048) NOT NULL,
             vv         TEXT NOT NULL,
             site       INT UNSIGNED NOT NULL,
             ts         BIGINT NOT NULL,
             deleted_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
             PRIMARY KEY (table_name, row_key)
         ) ENGINE = InnoDB COMMENT = 'duplex: tombstones of rows duplex deleted here; written only by duplex'",
        q(database),
        q(MYSQL_TOMBSTONES_TABLE)
    ))
    .await
    .map_err(err("create duplex's tombstone table".into()))?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (
             link_id        INT NOT NULL,
             source_site    INT NOT NULL,
             position       BIGINT UNSIGNED NOT NULL,
             position_text  VARCHAR(64) NULL,
             commit_time_us BIGINT NULL,
             applied_txns   BIGINT UNSIGNED NOT NULL DEFAULT 0,
             PRIMARY KEY (link_id, source_site)
         ) ENGINE = InnoDB COMMENT = 'duplex: applied source positions; written only by duplex'",
        q(database),
        q(crate::sink::mysql::MARKER_TABLE)
    ))
    .await
    .map_err(err("create duplex's marker table".into()))?;
    Ok(())
}
