//! Reading one site's copy of a synced table as canonical rows, for the
//! parity check (`parity`) and the initial sync (`snapshot`): pages in
//! primary-key order, rows by key, and each value
//! brought into this site's own representation of a column (so a value read
//! on the other engine compares equal exactly when this site would store the
//! same thing).

use std::collections::HashMap;

use mysql_async::prelude::Queryable;

use crate::canonical::{Row, TableName, Value};
use crate::control::{Site, SiteEngine};
use crate::mysql::column::MysqlColumn;
use crate::pg::type_class::PgTypeClass;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("site {site}: {context}: {source}")]
    Pg {
        site: String,
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("site {site}: {context}: {source}")]
    Mysql {
        site: String,
        context: String,
        source: mysql_async::Error,
    },
    #[error("site {site}: table {table}: {reason}")]
    Table {
        site: String,
        table: String,
        reason: String,
    },
}

/// One column of the table as this site has it.
#[derive(Debug, Clone)]
pub enum SideColumn {
    /// Name, catalog type (quoted, for casts), value class.
    Pg(String, String, PgTypeClass),
    Mysql(MysqlColumn),
}

impl SideColumn {
    pub fn name(&self) -> &str {
        match self {
            SideColumn::Pg(name, _, _) => name,
            SideColumn::Mysql(c) => &c.name,
        }
    }

    /// `v` (read on either site) as this column holds it; `Err` when it
    /// cannot hold it exactly.
    pub fn normalize(&self, v: &Value) -> Result<Value, String> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        // The same normalisation as the appliers' (the marker checksum).
        match self {
            SideColumn::Pg(_, _, class) => crate::pg::stored::as_stored(class, v),
            SideColumn::Mysql(col) => crate::mysql::param::as_stored(col, v),
        }
    }
}

type PgParams = Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>;

enum Conn {
    Pg(tokio_postgres::Client),
    Mysql(Box<mysql_async::Conn>),
}

/// One site's copy of a table, open for reading.
pub struct SideReader {
    site: String,
    conn: Conn,
    /// Quoted table name.
    quoted: String,
    pub columns: Vec<SideColumn>,
    /// Indexes into `columns` of the primary key, in key order.
    pub key: Vec<usize>,
}

impl SideReader {
    /// Open `table` on `site`; `skip` names duplex's own columns (marker,
    /// stamp), which are not compared.
    pub async fn open(
        site: &Site,
        table: &TableName,
        skip: &[String],
    ) -> Result<SideReader, crate::Error> {
        match site.engine {
            SiteEngine::Postgres => {
                let ep = crate::pg::PgEndpoint::from_site(site)?;
                let client = ep.connect("duplex check").await?;
                Ok(Self::open_pg(site, client, table, skip).await?)
            }
            SiteEngine::Mysql => {
                let ep = crate::mysql::MysqlEndpoint::from_site(site)?;
                let mut conn = ep.connect().await?;
                let err = |context: &str| {
                    let (site, context) = (site.name.clone(), context.to_string());
                    move |source| ReadError::Mysql {
                        site,
                        context,
                        source,
                    }
                };
                // Values are read as duplex's sessions read them: UTC.
                conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4")
                    .await
                    .map_err(err("set up the session"))?;
                let db = ep.database().to_string();
                Ok(Self::open_mysql(site, conn, &db, table, skip).await?)
            }
        }
    }

    async fn open_pg(
        site: &Site,
        client: tokio_postgres::Client,
        table: &TableName,
        skip: &[String],
    ) -> Result<SideReader, ReadError> {
        let err = |context: &str| {
            let (site, context) = (site.name.clone(), context.to_string());
            move |source| ReadError::Pg {
                site,
                context,
                source,
            }
        };
        let quoted = crate::pg::quote_table(table);
        let oid: Option<u32> = client
            .query_one("SELECT to_regclass($1)::oid", &[&quoted])
            .await
            .map_err(err("look up the table"))?
            .get(0);
        let oid = oid.ok_or_else(|| ReadError::Table {
            site: site.name.clone(),
            table: table.to_string(),
            reason: "does not exist".into(),
        })?;
        let rows = client
            .query(
                "SELECT a.attname::text, format('%I.%I', n.nspname, t.typname), a.atttypid,
                        coalesce((SELECT k.ord::int4
                                    FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                                   WHERE i.indrelid = a.attrelid AND i.indisprimary AND k.attnum = a.attnum), 0)
                   FROM pg_attribute a
                   JOIN pg_type t ON t.oid = a.atttypid
                   JOIN pg_namespace n ON n.oid = t.typnamespace
                  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .map_err(err("read the columns"))?;
        let mut cache = HashMap::new();
        let mut columns = Vec::new();
        let mut key: Vec<(i32, usize)> = Vec::new();
        for r in rows {
            let name: String = r.get(0);
            if skip.contains(&name) {
                continue;
            }
            let class = crate::pg::catalog::resolve_type_class(&client, r.get(2), &mut cache)
                .await
                .map_err(err("read the column types"))?;
            let position: i32 = r.get(3);
            if position > 0 {
                key.push((position, columns.len()));
            }
            columns.push(SideColumn::Pg(name, r.get(1), class));
        }
        key.sort_unstable();
        if key.is_empty() {
            return Err(ReadError::Table {
                site: site.name.clone(),
                table: table.to_string(),
                reason: "has no primary key".into(),
            });
        }
        Ok(SideReader {
            site: site.name.clone(),
            conn: Conn::Pg(client),
            quoted,
            columns,
            key: key.into_iter().map(|(_, i)| i).collect(),
        })
    }

    async fn open_mysql(
        site: &Site,
        mut conn: mysql_async::Conn,
        db: &str,
        table: &TableName,
        skip: &[String],
    ) -> Result<SideReader, ReadError> {
        let err = |context: &str| {
            let (site, context) = (site.name.clone(), context.to_string());
            move |source| ReadError::Mysql {
                site,
                context,
                source,
            }
        };
        let all = MysqlColumn::load_table(&mut conn, db, &table.name)
            .await
            .map_err(err("read the columns"))?;
        if all.is_empty() {
            return Err(ReadError::Table {
                site: site.name.clone(),
                table: format!("{db}.{}", table.name),
                reason: "does not exist".into(),
            });
        }
        let key_names: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY'
                  ORDER BY ORDINAL_POSITION",
                (db, &table.name),
            )
            .await
            .map_err(err("read the primary key"))?;
        let columns: Vec<SideColumn> = all
            .into_iter()
            .filter(|c| !skip.contains(&c.name))
            .map(SideColumn::Mysql)
            .collect();
        let key = key_names
            .iter()
            .filter_map(|k| columns.iter().position(|c| c.name() == k))
            .collect::<Vec<_>>();
        if key.is_empty() || key.len() != key_names.len() {
            return Err(ReadError::Table {
                site: site.name.clone(),
                table: format!("{db}.{}", table.name),
                reason: "has no primary key".into(),
            });
        }
        Ok(SideReader {
            site: site.name.clone(),
            conn: Conn::Mysql(Box::new(conn)),
            quoted: format!(
                "{}.{}",
                crate::mysql::quote_ident(db),
                crate::mysql::quote_ident(&table.name)
            ),
            columns,
            key,
        })
    }

    /// The server's estimate of the table's row count (for progress only).
    pub async fn estimated_rows(&mut self) -> u64 {
        let quoted = self.quoted.clone();
        match &mut self.conn {
            Conn::Pg(c) => c
                .query_one(
                    // A partitioned table holds no rows itself: its partitions' count.
                    "SELECT coalesce(sum(greatest(reltuples, 0)), 0)::bigint FROM pg_class
                      WHERE oid = to_regclass($1)
                         OR oid IN (SELECT relid FROM pg_partition_tree(to_regclass($1)) WHERE isleaf)",
                    &[&quoted],
                )
                .await
                .map(|r| r.get::<_, i64>(0).max(0) as u64)
                .unwrap_or(0),
            Conn::Mysql(c) => c
                .query_first::<Option<u64>, _>(format!("SELECT COUNT(*) FROM {quoted}"))
                .await
                .ok()
                .flatten()
                .flatten()
                .unwrap_or(0),
        }
    }

    fn key_names(&self) -> Vec<&str> {
        self.key.iter().map(|&i| self.columns[i].name()).collect()
    }

    /// Up to `limit` rows after key `after` (all columns, or the key columns
    /// only with `keys_only`), in primary-key order. Key values of `after`
    /// are in this site's representation.
    pub async fn page(
        &mut self,
        after: Option<&[Value]>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Vec<Row>, ReadError> {
        let wanted = self.wanted(keys_only);
        if matches!(self.conn, Conn::Pg(_)) {
            let (tail, params) = self.pg_after(after, limit)?;
            let sql = format!(
                "SELECT {} FROM {} AS t {tail}",
                self.pg_select(&wanted),
                self.quoted
            );
            self.pg_rows(&sql, params, &wanted).await
        } else {
            let (tail, params) = self.mysql_after(after, limit)?;
            let sql = format!(
                "SELECT {} FROM {} {tail}",
                self.mysql_select(&wanted),
                self.quoted
            );
            self.mysql_rows(&sql, params, &wanted).await
        }
    }

    /// The rows with these keys (in this site's representation), by key.
    pub async fn fetch(
        &mut self,
        keys: &[Vec<Value>],
        keys_only: bool,
    ) -> Result<Vec<Row>, ReadError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = self.wanted(keys_only);
        if matches!(self.conn, Conn::Pg(_)) {
            let (tail, params) = self.pg_with_keys(keys)?;
            let sql = format!(
                "SELECT {} FROM {} AS t {tail}",
                self.pg_select(&wanted),
                self.quoted
            );
            self.pg_rows(&sql, params, &wanted).await
        } else {
            let (tail, params) = self.mysql_with_keys(keys)?;
            let sql = format!(
                "SELECT {} FROM {} {tail}",
                self.mysql_select(&wanted),
                self.quoted
            );
            self.mysql_rows(&sql, params, &wanted).await
        }
    }

    /// The columns read: all, or the key only.
    fn wanted(&self, keys_only: bool) -> Vec<usize> {
        if keys_only {
            self.key.clone()
        } else {
            (0..self.columns.len()).collect()
        }
    }

    fn pg_select(&self, wanted: &[usize]) -> String {
        wanted
            .iter()
            .map(|&i| format!("t.{}::text", crate::pg::quote_ident(self.columns[i].name())))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn mysql_select(&self, wanted: &[usize]) -> String {
        wanted
            .iter()
            .map(|&i| crate::mysql::quote_ident(self.columns[i].name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// PostgreSQL: the statement's tail for the rows after key `after`, in
    /// key order, at most `limit`; and its parameters.
    fn pg_after(
        &self,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<(String, PgParams), ReadError> {
        let keys = self.pg_key_list();
        let mut params: PgParams = Vec::new();
        let condition = match after {
            None => "true".to_string(),
            Some(after) => {
                let mut casts = Vec::new();
                for (j, v) in after.iter().enumerate() {
                    let SideColumn::Pg(_, ty, _) = &self.columns[self.key[j]] else {
                        continue;
                    };
                    casts.push(format!("${}::text::{ty}", j + 1));
                    params.push(Box::new(Some(self.key_text(v)?)));
                }
                format!("({keys}) > ({})", casts.join(", "))
            }
        };
        Ok((
            format!("WHERE {condition} ORDER BY {keys} LIMIT {limit}"),
            params,
        ))
    }

    /// PostgreSQL: the statement's tail for the rows of these keys (one text
    /// array per key column: a fixed statement whatever the number of keys).
    fn pg_with_keys(&self, keys: &[Vec<Value>]) -> Result<(String, PgParams), ReadError> {
        let mut arrays = Vec::new();
        let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); self.key.len()];
        for (j, &i) in self.key.iter().enumerate() {
            if let SideColumn::Pg(_, ty, _) = &self.columns[i] {
                arrays.push(format!("${}::text[]::{ty}[]", j + 1));
            }
        }
        for k in keys {
            for (j, v) in k.iter().enumerate() {
                values[j].push(Some(self.key_text(v)?));
            }
        }
        let tail = format!(
            "WHERE ({}) IN (SELECT * FROM unnest({}))",
            self.pg_key_list(),
            arrays.join(", ")
        );
        let params = values
            .into_iter()
            .map(|v| Box::new(v) as Box<dyn tokio_postgres::types::ToSql + Sync + Send>)
            .collect();
        Ok((tail, params))
    }

    /// MySQL: as [`SideReader::pg_after`].
    fn mysql_after(
        &self,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<(String, Vec<mysql_async::Value>), ReadError> {
        let keys = self.mysql_key_list();
        let mut params = Vec::new();
        let condition = match after {
            None => "TRUE".to_string(),
            Some(after) => {
                for (j, v) in after.iter().enumerate() {
                    params.push(self.mysql_param(self.key[j], v)?);
                }
                format!("({keys}) > ({})", self.mysql_placeholders(after.len()))
            }
        };
        Ok((
            format!("WHERE {condition} ORDER BY {keys} LIMIT {limit}"),
            params,
        ))
    }

    /// MySQL: as [`SideReader::pg_with_keys`], one tuple per key.
    fn mysql_with_keys(
        &self,
        keys: &[Vec<Value>],
    ) -> Result<(String, Vec<mysql_async::Value>), ReadError> {
        let tuple = format!("({})", self.mysql_placeholders(self.key.len()));
        let mut params = Vec::new();
        for k in keys {
            for (j, v) in k.iter().enumerate() {
                params.push(self.mysql_param(self.key[j], v)?);
            }
        }
        let tail = format!(
            "WHERE ({}) IN ({})",
            self.mysql_key_list(),
            vec![tuple; keys.len()].join(", ")
        );
        Ok((tail, params))
    }

    fn key_text(&self, v: &Value) -> Result<String, ReadError> {
        crate::pg::text_encode::encode_text(v).map_err(|e| ReadError::Table {
            site: self.site.clone(),
            table: self.quoted.clone(),
            reason: format!("a key value cannot be written as text: {e}"),
        })
    }

    fn mysql_param(&self, column: usize, v: &Value) -> Result<mysql_async::Value, ReadError> {
        let SideColumn::Mysql(col) = &self.columns[column] else {
            return Err(ReadError::Table {
                site: self.site.clone(),
                table: self.quoted.clone(),
                reason: "internal: a PostgreSQL column on a MySQL site".into(),
            });
        };
        crate::mysql::param::encode_param(col, v).map_err(|e| ReadError::Table {
            site: self.site.clone(),
            table: self.quoted.clone(),
            reason: format!("key column {}: {e}", col.name),
        })
    }

    async fn pg_rows(
        &self,
        sql: &str,
        params: PgParams,
        wanted: &[usize],
    ) -> Result<Vec<Row>, ReadError> {
        let Conn::Pg(client) = &self.conn else {
            return Ok(Vec::new());
        };
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let rows = client
            .query(sql, &refs)
            .await
            .map_err(|source| ReadError::Pg {
                site: self.site.clone(),
                context: format!("read rows of {}", self.quoted),
                source,
            })?;
        rows.iter().map(|r| self.pg_row(r, wanted)).collect()
    }

    /// A row with the `wanted` columns set (the others `None`).
    fn pg_row(&self, r: &tokio_postgres::Row, wanted: &[usize]) -> Result<Row, ReadError> {
        let mut values = vec![None; self.columns.len()];
        for (j, &i) in wanted.iter().enumerate() {
            let SideColumn::Pg(name, _, class) = &self.columns[i] else {
                continue;
            };
            let text: Option<String> = r.get(j);
            values[i] = Some(match text {
                None => Value::Null,
                Some(t) => crate::pg::text_decode::decode_text(class, &t).map_err(|e| {
                    ReadError::Table {
                        site: self.site.clone(),
                        table: self.quoted.clone(),
                        reason: format!("column {name}: {e}"),
                    }
                })?,
            });
        }
        Ok(Row(values))
    }

    async fn mysql_rows(
        &mut self,
        sql: &str,
        params: Vec<mysql_async::Value>,
        wanted: &[usize],
    ) -> Result<Vec<Row>, ReadError> {
        self.mysql_query(sql, params)
            .await?
            .into_iter()
            .map(|r| self.mysql_row(r.unwrap(), wanted))
            .collect()
    }

    async fn mysql_query(
        &mut self,
        sql: &str,
        params: Vec<mysql_async::Value>,
    ) -> Result<Vec<mysql_async::Row>, ReadError> {
        let Conn::Mysql(conn) = &mut self.conn else {
            return Ok(Vec::new());
        };
        conn.exec(sql, mysql_async::Params::Positional(params))
            .await
            .map_err(|source| ReadError::Mysql {
                site: self.site.clone(),
                context: format!("read rows of {}", self.quoted),
                source,
            })
    }

    /// A row with the `wanted` columns set from `raw` (in that order; values
    /// past them are ignored).
    fn mysql_row(&self, raw: Vec<mysql_async::Value>, wanted: &[usize]) -> Result<Row, ReadError> {
        let mut values = vec![None; self.columns.len()];
        for (j, v) in raw.into_iter().enumerate() {
            let Some(&i) = wanted.get(j) else { continue };
            let SideColumn::Mysql(col) = &self.columns[i] else {
                continue;
            };
            values[i] = Some(
                crate::mysql::decode::decode_query_value(col, v).map_err(|e| ReadError::Table {
                    site: self.site.clone(),
                    table: self.quoted.clone(),
                    reason: format!("column {}: {e}", col.name),
                })?,
            );
        }
        Ok(Row(values))
    }
}

/// A source row for the initial sync, with what tells its version.
#[derive(Debug, Clone)]
pub struct VersionedRow {
    pub row: Row,
    /// The marker column's text.
    pub marker: Option<String>,
    /// Last written by duplex's applier (the marker describes it).
    pub synced: bool,
    /// The version time of the last write (PostgreSQL: the commit timestamp of
    /// xmin; MySQL: the stamp column), µs.
    pub version_us: Option<i64>,
}

impl SideReader {
    /// The column schema of this copy, for changes built from its rows.
    pub fn table_schema(&self, table: TableName) -> crate::canonical::TableSchema {
        crate::canonical::TableSchema {
            table,
            columns: self
                .columns
                .iter()
                .map(|c| crate::canonical::ColumnSchema {
                    name: c.name().to_string(),
                    type_name: match c {
                        SideColumn::Pg(_, ty, _) => ty.clone(),
                        SideColumn::Mysql(col) => col.column_type.clone(),
                    },
                })
                .collect(),
            key: self.key.clone(),
        }
    }

    /// A page of whole rows after `after`, in key order, each with its
    /// marker and what tells who wrote it last.
    pub async fn page_versions(
        &mut self,
        after: Option<&[Value]>,
        limit: usize,
        marker_column: &str,
        stamp_column: &str,
    ) -> Result<Vec<VersionedRow>, ReadError> {
        if matches!(self.conn, Conn::Pg(_)) {
            let (tail, params) = self.pg_after(after, limit)?;
            self.pg_versions(&tail, params, marker_column).await
        } else {
            let (tail, params) = self.mysql_after(after, limit)?;
            self.mysql_versions(&tail, params, marker_column, stamp_column)
                .await
        }
    }

    /// The rows of these keys (this site's representation), with versions.
    pub async fn fetch_versions(
        &mut self,
        keys: &[Vec<Value>],
        marker_column: &str,
        stamp_column: &str,
    ) -> Result<Vec<VersionedRow>, ReadError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if matches!(self.conn, Conn::Pg(_)) {
            let (tail, params) = self.pg_with_keys(keys)?;
            self.pg_versions(&tail, params, marker_column).await
        } else {
            let (tail, params) = self.mysql_with_keys(keys)?;
            self.mysql_versions(&tail, params, marker_column, stamp_column)
                .await
        }
    }

    fn pg_key_list(&self) -> String {
        self.key_names()
            .into_iter()
            .map(|k| format!("t.{}", crate::pg::quote_ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The placeholder comparing a value with column `column` (a DECIMAL
    /// as a decimal: `compared_placeholder`).
    fn mysql_placeholder(&self, column: usize) -> String {
        match &self.columns[column] {
            SideColumn::Mysql(col) => crate::mysql::param::compared_placeholder(col),
            _ => "?".to_string(),
        }
    }

    /// The placeholders of the first `n` key columns, comma-separated.
    fn mysql_placeholders(&self, n: usize) -> String {
        self.key[..n.min(self.key.len())]
            .iter()
            .map(|&i| self.mysql_placeholder(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn mysql_key_list(&self) -> String {
        self.key_names()
            .into_iter()
            .map(crate::mysql::quote_ident)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whole rows with their marker, commit time and origin (PostgreSQL).
    async fn pg_versions(
        &self,
        tail: &str,
        params: PgParams,
        marker_column: &str,
    ) -> Result<Vec<VersionedRow>, ReadError> {
        let wanted = self.wanted(false);
        let n = wanted.len();
        let mut select = vec![self.pg_select(&wanted)];
        select.push(format!("t.{}::text", crate::pg::quote_ident(marker_column)));
        // The row's commit time (µs) and replication origin, as `µs name`
        // (`µs ` without an origin): one call of the commit-timestamp lookup
        // per row, and the origin's name looked up only for rows written
        // under one (it was two calls and a catalog lookup for every row).
        select.push(
            "(SELECT (extract(epoch FROM c.timestamp) * 1000000)::bigint::text || ' ' ||
                     CASE WHEN c.roident = 0 THEN ''
                          ELSE coalesce((SELECT o.roname::text FROM pg_replication_origin o
                                          WHERE o.roident = c.roident), '') END
               FROM pg_xact_commit_timestamp_origin(t.xmin) c)"
                .into(),
        );
        let sql = format!(
            "SELECT {} FROM {} AS t {tail}",
            select.join(", "),
            self.quoted
        );
        let Conn::Pg(client) = &self.conn else {
            return Ok(Vec::new());
        };
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let rows = client
            .query(&sql, &refs)
            .await
            .map_err(|source| ReadError::Pg {
                site: self.site.clone(),
                context: format!("read rows of {}", self.quoted),
                source,
            })?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let row = self.pg_row(r, &wanted)?;
            let marker: Option<String> = r.get(n);
            let version: Option<&str> = r.get(n + 1);
            let (commit_us, origin) = parse_version(version);
            let synced = match (commit_us, &origin) {
                (Some(_), Some(o)) => o.starts_with(crate::control::model::DUPLEX_ORIGIN_PREFIX),
                (Some(_), None) => false,
                // No commit timestamp (written before they were on): the
                // checksum in the marker decides.
                (None, _) => {
                    let schema = self.table_schema(TableName::new("", ""));
                    crate::marker::Marker::parse(marker.as_deref())
                        .ok()
                        .flatten()
                        .is_some_and(|m| {
                            m.crc != 0
                                && crate::canonical::encode::row_checksum(&schema, &row)
                                    == Some(m.crc)
                        })
                }
            };
            out.push(VersionedRow {
                row,
                marker,
                synced,
                version_us: commit_us,
            });
        }
        Ok(out)
    }

    /// Whole rows with their marker and stamp column (MySQL).
    async fn mysql_versions(
        &mut self,
        tail: &str,
        params: Vec<mysql_async::Value>,
        marker_column: &str,
        stamp_column: &str,
    ) -> Result<Vec<VersionedRow>, ReadError> {
        let quote = crate::mysql::quote_ident;
        let wanted = self.wanted(false);
        let mut select = vec![self.mysql_select(&wanted)];
        select.push(format!("CAST({} AS CHAR)", quote(marker_column)));
        select.push(format!(
            "CAST(UNIX_TIMESTAMP({}) * 1000000 AS SIGNED)",
            quote(stamp_column)
        ));
        let sql = format!("SELECT {} FROM {} {tail}", select.join(", "), self.quoted);
        let rows = self.mysql_query(&sql, params).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut raw = r.unwrap();
            let stamp = raw.pop().unwrap_or(mysql_async::Value::NULL);
            let marker = raw.pop().unwrap_or(mysql_async::Value::NULL);
            let row = self.mysql_row(raw, &wanted)?;
            let marker: Option<String> = match marker {
                mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            };
            let version_us: Option<i64> = match stamp {
                mysql_async::Value::Int(i) => Some(i),
                mysql_async::Value::UInt(u) => i64::try_from(u).ok(),
                mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).parse().ok(),
                _ => None,
            };
            // The applier writes the stamp column with the marker's version
            // time; a user's write moves it.
            let synced = crate::marker::Marker::parse(marker.as_deref())
                .ok()
                .flatten()
                .is_some_and(|m| Some(m.ts) == version_us);
            out.push(VersionedRow {
                row,
                marker,
                synced,
                version_us,
            });
        }
        Ok(out)
    }

    /// The site's current log position counter (PostgreSQL: the WAL insert
    /// position; MySQL: the binlog position): every later commit is above it.
    pub async fn current_counter(&mut self) -> Result<u64, ReadError> {
        let site = self.site.clone();
        match &mut self.conn {
            Conn::Pg(c) => {
                let text: String = c
                    .query_one("SELECT pg_current_wal_lsn()::text", &[])
                    .await
                    .map_err(|source| ReadError::Pg {
                        site: site.clone(),
                        context: "read the WAL position".into(),
                        source,
                    })?
                    .get(0);
                let (hi, lo) = text.split_once('/').unwrap_or(("0", "0"));
                Ok((u64::from_str_radix(hi, 16).unwrap_or(0) << 32)
                    | u64::from_str_radix(lo, 16).unwrap_or(0))
            }
            Conn::Mysql(c) => crate::source::mysql::current_position(c)
                .await
                .map(|p| p.counter())
                .map_err(|e| ReadError::Table {
                    site,
                    table: String::new(),
                    reason: e.to_string(),
                }),
        }
    }

    /// Run `statements` (with their parameters) in one transaction of an
    /// ordinary session: writes duplex captures and replicates like a user's.
    pub async fn write_as_user(&mut self, statements: Vec<UserWrite>) -> Result<(), ReadError> {
        let site = self.site.clone();
        match &mut self.conn {
            Conn::Pg(c) => {
                let tx = c.transaction().await.map_err(|source| ReadError::Pg {
                    site: site.clone(),
                    context: "begin a repair".into(),
                    source,
                })?;
                for w in &statements {
                    let UserWrite::Pg(sql, params) = w else {
                        continue;
                    };
                    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                        .iter()
                        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                        .collect();
                    tx.execute(sql.as_str(), &refs)
                        .await
                        .map_err(|source| ReadError::Pg {
                            site: site.clone(),
                            context: format!("repair: {sql}"),
                            source,
                        })?;
                }
                tx.commit().await.map_err(|source| ReadError::Pg {
                    site,
                    context: "commit a repair".into(),
                    source,
                })
            }
            Conn::Mysql(c) => {
                let err = |context: String| {
                    let site = site.clone();
                    move |source| ReadError::Mysql {
                        site,
                        context,
                        source,
                    }
                };
                let mut tx = c
                    .start_transaction(mysql_async::TxOpts::default())
                    .await
                    .map_err(err("begin a repair".into()))?;
                for w in statements {
                    let UserWrite::Mysql(sql, params) = w else {
                        continue;
                    };
                    tx.exec_drop(sql.as_str(), mysql_async::Params::Positional(params))
                        .await
                        .map_err(err(format!("repair: {sql}")))?;
                }
                tx.commit().await.map_err(err("commit a repair".into()))
            }
        }
    }

    /// The statement that makes this site's row of `key` (this site's
    /// representation) hold `values` (by column index; `None`: left as it
    /// is) and `marker`, inserting it when `exists` is false; or deletes it
    /// when `values` is `None`.
    pub fn repair_statement(
        &self,
        key: &[Value],
        values: Option<&[Option<Value>]>,
        exists: bool,
        marker_column: &str,
        marker: &str,
    ) -> Result<UserWrite, ReadError> {
        match &self.conn {
            Conn::Pg(_) => {
                let quote = crate::pg::quote_ident;
                let mut params: Vec<Option<String>> = Vec::new();
                let arg = |params: &mut Vec<Option<String>>, v: Option<String>| {
                    params.push(v);
                    format!("${}", params.len())
                };
                let mut cols = Vec::new();
                let mut exprs = Vec::new();
                if let Some(values) = values {
                    for (i, v) in values.iter().enumerate() {
                        let (Some(v), Some(SideColumn::Pg(name, ty, _))) = (v, self.columns.get(i))
                        else {
                            continue;
                        };
                        let text = if v.is_null() {
                            None
                        } else {
                            Some(self.key_text(v)?)
                        };
                        let p = arg(&mut params, text);
                        cols.push(quote(name));
                        exprs.push(format!("{p}::text::{ty}"));
                    }
                    let m = arg(&mut params, Some(marker.to_string()));
                    cols.push(quote(marker_column));
                    exprs.push(format!("{m}::text::jsonb"));
                }
                if values.is_some() && !exists {
                    return Ok(UserWrite::Pg(
                        format!(
                            "INSERT INTO {} ({}) VALUES ({})",
                            self.quoted,
                            cols.join(", "),
                            exprs.join(", ")
                        ),
                        params,
                    ));
                }
                let mut wheres = Vec::new();
                for (j, &i) in self.key.iter().enumerate() {
                    let SideColumn::Pg(name, ty, _) = &self.columns[i] else {
                        continue;
                    };
                    let p = arg(&mut params, Some(self.key_text(&key[j])?));
                    wheres.push(format!("{} = {p}::text::{ty}", quote(name)));
                }
                let sql = if values.is_none() {
                    format!("DELETE FROM {} WHERE {}", self.quoted, wheres.join(" AND "))
                } else {
                    let sets: Vec<String> = cols
                        .iter()
                        .zip(&exprs)
                        .map(|(c, e)| format!("{c} = {e}"))
                        .collect();
                    format!(
                        "UPDATE {} SET {} WHERE {}",
                        self.quoted,
                        sets.join(", "),
                        wheres.join(" AND ")
                    )
                };
                Ok(UserWrite::Pg(sql, params))
            }
            Conn::Mysql(_) => {
                let quote = crate::mysql::quote_ident;
                let mut key_params = Vec::new();
                let mut wheres = Vec::new();
                for (j, &i) in self.key.iter().enumerate() {
                    key_params.push(self.mysql_param(i, &key[j])?);
                    wheres.push(format!(
                        "{} = {}",
                        quote(self.columns[i].name()),
                        self.mysql_placeholder(i)
                    ));
                }
                let Some(values) = values else {
                    return Ok(UserWrite::Mysql(
                        format!("DELETE FROM {} WHERE {}", self.quoted, wheres.join(" AND ")),
                        key_params,
                    ));
                };
                let mut cols = Vec::new();
                let mut params = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    let Some(v) = v else { continue };
                    params.push(self.mysql_param(i, v)?);
                    cols.push(quote(self.columns[i].name()));
                }
                params.push(mysql_async::Value::Bytes(marker.as_bytes().to_vec()));
                cols.push(quote(marker_column));
                let sql = if exists {
                    params.extend(key_params);
                    let sets: Vec<String> = cols.iter().map(|c| format!("{c} = ?")).collect();
                    format!(
                        "UPDATE {} SET {} WHERE {}",
                        self.quoted,
                        sets.join(", "),
                        wheres.join(" AND ")
                    )
                } else {
                    format!(
                        "INSERT INTO {} ({}) VALUES ({})",
                        self.quoted,
                        cols.join(", "),
                        vec!["?"; cols.len()].join(", ")
                    )
                };
                Ok(UserWrite::Mysql(sql, params))
            }
        }
    }
}

/// One repair statement, for the engine of the site it runs on.
#[derive(Debug, Clone)]
pub enum UserWrite {
    Pg(String, Vec<Option<String>>),
    Mysql(String, Vec<mysql_async::Value>),
}

impl UserWrite {
    pub fn sql(&self) -> &str {
        match self {
            UserWrite::Pg(sql, _) | UserWrite::Mysql(sql, _) => sql,
        }
    }
}

/// The `µs origin` text of a row's version (see `pg_versions`): its commit
/// time, and the name of the replication origin it was written under.
fn parse_version(text: Option<&str>) -> (Option<i64>, Option<String>) {
    let Some(text) = text else {
        return (None, None);
    };
    let (us, origin) = text.split_once(' ').unwrap_or((text, ""));
    let origin = (!origin.is_empty()).then(|| origin.to_string());
    (us.parse().ok(), origin)
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn a_versions_text_gives_its_time_and_origin() {
        assert_eq!(
            parse_version(Some("1733389000000000 duplex_l1_s2")),
            (Some(1_733_389_000_000_000), Some("duplex_l1_s2".into()))
        );
        // Written under no origin.
        assert_eq!(parse_version(Some("17 ")), (Some(17), None));
        // No commit timestamp: the lookup gives NULL.
        assert_eq!(parse_version(None), (None, None));
    }
}
