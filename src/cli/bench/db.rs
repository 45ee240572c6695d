//! One connection to a site of the bench, PostgreSQL or MariaDB. Every
//! statement the workloads send is written here once per engine, so that
//! the workloads themselves ([`super::load`]) and the steps that time them
//! are one piece of code for both pairs.

use std::collections::HashMap;

use anyhow::{bail, Context};
use mysql_async::prelude::Queryable;
use tokio_postgres::{Client, Statement};

use duplex::pg::PgEndpoint;

/// How to reach a site's `app` database: cloned into each session of a load.
#[derive(Debug, Clone)]
pub enum SiteAddr {
    /// A libpq conninfo.
    Pg(String),
    /// A `mysql://` URL.
    My(String),
}

impl SiteAddr {
    pub async fn connect(&self) -> anyhow::Result<Db> {
        match self {
            SiteAddr::Pg(conninfo) => Ok(Db::Pg {
                client: PgEndpoint::from_url("app", conninfo)?
                    .connect("duplex bench")
                    .await?,
                prepared: HashMap::new(),
            }),
            SiteAddr::My(url) => {
                // Over TCP: mysql_async would otherwise switch a loopback
                // connection to the unix socket, which logs in as another
                // account.
                let opts = mysql_async::OptsBuilder::from_opts(
                    mysql_async::Opts::from_url(url).with_context(|| format!("parse {url}"))?,
                )
                .prefer_socket(false);
                Ok(Db::My(
                    mysql_async::Conn::new(opts)
                        .await
                        .with_context(|| format!("connect to {url}"))?,
                ))
            }
        }
    }
}

/// One new row of the OLTP table, with the existing row its transaction
/// updates.
pub struct OltpTxn {
    pub update_id: i64,
    pub new_id: i64,
    pub k: i32,
    pub c: String,
    pub pad: String,
}

/// An open connection to a site's `app` database.
pub enum Db {
    Pg {
        client: Client,
        /// Statements prepared on this connection, by their text: a
        /// statement sent as text is parsed in a round trip of its own
        /// every time, which would slow the load and the polling.
        prepared: HashMap<String, Statement>,
    },
    My(mysql_async::Conn),
}

/// Prepare `sql` once per connection.
async fn prepared(
    client: &Client,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
) -> anyhow::Result<Statement> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = client
        .prepare(sql)
        .await
        .with_context(|| format!("prepare {sql}"))?;
    cache.insert(sql.to_string(), s.clone());
    Ok(s)
}

impl Db {
    /// The PostgreSQL client, for the workloads only the PostgreSQL pair runs.
    pub fn pg(&self) -> anyhow::Result<&Client> {
        match self {
            Db::Pg { client, .. } => Ok(client),
            Db::My(_) => bail!("a PostgreSQL-only workload was given a MariaDB site"),
        }
    }

    /// Run statements (several, separated by `;`).
    pub async fn exec(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Db::Pg { client, .. } => client.batch_execute(sql).await?,
            Db::My(c) => c.query_drop(sql).await?,
        }
        Ok(())
    }

    /// Whether `table` holds the row of key `id` (an index lookup).
    pub async fn exists(&mut self, table: &str, id: i64) -> anyhow::Result<bool> {
        match self {
            Db::Pg {
                client,
                prepared: p,
            } => {
                let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)");
                let s = prepared(client, p, &sql).await?;
                Ok(client.query_one(&s, &[&id]).await?.get(0))
            }
            Db::My(c) => {
                let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = ?)");
                Ok(c.exec_first::<i64, _, _>(sql, (id,)).await? == Some(1))
            }
        }
    }

    /// Whether any row of `table` passes `filter` (a `WHERE` clause that an
    /// index answers: it stops at the first row).
    pub async fn any(&mut self, table: &str, filter: &str) -> anyhow::Result<bool> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} {filter})");
        match self {
            Db::Pg { client, .. } => Ok(client.query_one(&sql, &[]).await?.get(0)),
            Db::My(c) => Ok(c.query_first::<i64, _>(sql).await? == Some(1)),
        }
    }

    /// The rows of `table` that pass `filter` (a `WHERE` clause, or empty).
    pub async fn count(&mut self, table: &str, filter: &str) -> anyhow::Result<i64> {
        let sql = format!("SELECT count(*) FROM {table} {filter}");
        match self {
            Db::Pg { client, .. } => Ok(client.query_one(&sql, &[]).await?.get(0)),
            Db::My(c) => Ok(c.query_first::<i64, _>(sql).await?.unwrap_or(0)),
        }
    }

    /// One transaction inserting `rows` rows into `bench`, ids after `after`.
    pub async fn bulk(&mut self, after: i64, rows: i64) -> anyhow::Result<()> {
        let (first, last) = (after + 1, after + rows);
        let sql = match self {
            Db::Pg { .. } => format!(
                "INSERT INTO bench SELECT g, md5(g::text), now() FROM generate_series({first}, {last}) g"
            ),
            // MariaDB's sequence engine: a virtual table of the numbers.
            Db::My(_) => format!(
                "INSERT INTO bench SELECT seq, MD5(seq), NOW(6) FROM seq_{first}_to_{last}"
            ),
        };
        self.exec(&sql).await
    }

    /// The OLTP load's transaction: one UPDATE of an existing row and one
    /// INSERT (sysbench's write shape).
    pub async fn oltp_txn(&mut self, t: &OltpTxn) -> anyhow::Result<()> {
        match self {
            Db::Pg {
                client,
                prepared: p,
            } => {
                let update = prepared(client, p, "UPDATE oltp SET k = k + 1 WHERE id = $1").await?;
                let insert = prepared(
                    client,
                    p,
                    "INSERT INTO oltp (id, k, c, pad) VALUES ($1, $2, $3, $4)",
                )
                .await?;
                let txn = client.transaction().await?;
                txn.execute(&update, &[&t.update_id]).await?;
                txn.execute(&insert, &[&t.new_id, &t.k, &t.c, &t.pad])
                    .await?;
                txn.commit().await?;
            }
            Db::My(c) => {
                let mut txn = c.start_transaction(mysql_async::TxOpts::default()).await?;
                txn.exec_drop("UPDATE oltp SET k = k + 1 WHERE id = ?", (t.update_id,))
                    .await?;
                txn.exec_drop(
                    "INSERT INTO oltp (id, k, c, pad) VALUES (?, ?, ?, ?)",
                    (t.new_id, t.k, &t.c, &t.pad),
                )
                .await?;
                txn.commit().await?;
            }
        }
        Ok(())
    }

    /// A heartbeat row stamped with the time it is sent.
    pub async fn heartbeat(&mut self, id: i64) -> anyhow::Result<()> {
        match self {
            Db::Pg {
                client,
                prepared: p,
            } => {
                let s = prepared(
                    client,
                    p,
                    "INSERT INTO heartbeat (id, sent_at) VALUES ($1, clock_timestamp())",
                )
                .await?;
                client.execute(&s, &[&id]).await?;
            }
            // SYSDATE, not NOW: NOW is the statement's start time.
            Db::My(c) => {
                c.exec_drop(
                    "INSERT INTO heartbeat (id, sent_at) VALUES (?, SYSDATE(6))",
                    (id,),
                )
                .await?
            }
        }
        Ok(())
    }

    /// Each heartbeat's lag in ms (arrival on this site minus sending), for
    /// ids in `first..=last`; an error for one without an arrival time (its
    /// arrival trigger did not fire for replicated rows).
    pub async fn lags_ms(&mut self, first: i64, last: i64) -> anyhow::Result<Vec<f64>> {
        let lags: Vec<Option<f64>> = match self {
            Db::Pg { client, .. } => client
                .query(
                    "SELECT extract(epoch FROM arrived_at - sent_at)::float8 * 1000
                       FROM heartbeat WHERE id BETWEEN $1 AND $2",
                    &[&first, &last],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Db::My(c) => c
                .exec::<Option<i64>, _, _>(
                    "SELECT TIMESTAMPDIFF(MICROSECOND, sent_at, arrived_at)
                       FROM heartbeat WHERE id BETWEEN ? AND ?",
                    (first, last),
                )
                .await?
                .into_iter()
                .map(|us| us.map(|us| us as f64 / 1000.0))
                .collect(),
        };
        lags.into_iter()
            .map(|l| l.context("a heartbeat has no arrival time: its trigger did not fire for the replicated row"))
            .collect()
    }
}
