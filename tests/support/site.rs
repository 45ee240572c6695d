//! One engine-neutral client for a site in a scenario, PostgreSQL or MariaDB, so that
//! a scenario body is written once and runs for every engine pair: statements,
//! transactions and typed row reads with the same calls on either engine.

use mysql_async::prelude::{FromValue, Queryable};
use tokio_postgres::types::FromSql;

/// A connection to one site of a test, whatever its engine.
pub enum Db {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

/// A row read the same way from either engine: a single column or a tuple of
/// up to five.
pub trait SiteRow: Sized {
    fn from_pg(row: &tokio_postgres::Row) -> Self;
    fn from_mysql(row: mysql_async::Row) -> Self;
}

/// A column value both clients can read.
pub trait Column: for<'a> FromSql<'a> + FromValue {}
impl<T: for<'a> FromSql<'a> + FromValue> Column for T {}

macro_rules! site_row_scalar {
    ($($t:ty),*) => {$(
        impl SiteRow for $t {
            fn from_pg(row: &tokio_postgres::Row) -> Self {
                row.get(0)
            }
            fn from_mysql(row: mysql_async::Row) -> Self {
                mysql_async::from_row(row)
            }
        }
    )*};
}
site_row_scalar!(
    String,
    Option<String>,
    i32,
    i64,
    Option<i32>,
    Option<i64>,
    bool
);

macro_rules! site_row_tuple {
    ($($t:ident $i:tt),*) => {
        impl<$($t: Column),*> SiteRow for ($($t,)*) {
            fn from_pg(row: &tokio_postgres::Row) -> Self {
                ($(row.get::<_, $t>($i),)*)
            }
            fn from_mysql(mut row: mysql_async::Row) -> Self {
                ($(row.take::<$t, _>($i).expect("a column of the row"),)*)
            }
        }
    };
}
site_row_tuple!(A 0, B 1);
site_row_tuple!(A 0, B 1, C 2);
site_row_tuple!(A 0, B 1, C 2, D 3);
site_row_tuple!(A 0, B 1, C 2, D 3, E 4);

impl Db {
    /// A PostgreSQL site.
    pub async fn pg(conninfo: &str) -> Db {
        Db::Pg(super::connect(conninfo).await)
    }

    /// A MariaDB site by URL, over TCP (never the unix socket, which logs in as
    /// another account).
    pub async fn mysql_url(url: &str) -> Db {
        let opts =
            mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url).expect("url"))
                .prefer_socket(false);
        Db::My(
            mysql_async::Conn::new(opts)
                .await
                .expect("connect to MariaDB"),
        )
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }

    /// Run statements (several, separated by `;`), failing the test on an error.
    pub async fn exec(&mut self, sql: &str) {
        if let Err(e) = self.try_exec(sql).await {
            panic!("{sql}: {e}");
        }
    }

    /// Run statements; the error as text (races between writers are expected in
    /// some scenarios).
    pub async fn try_exec(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Db::Pg(c) => c.batch_execute(sql).await.map_err(|e| e.to_string()),
            Db::My(c) => c.query_drop(sql).await.map_err(|e| e.to_string()),
        }
    }

    /// Run one statement; the rows it changed (0 on an error: races between
    /// writers are expected in some scenarios).
    pub async fn execute_counting(&mut self, sql: &str) -> u64 {
        match self {
            Db::Pg(c) => c.execute(sql, &[]).await.unwrap_or(0),
            Db::My(c) => match c.query_drop(sql).await {
                Ok(()) => c.affected_rows(),
                Err(_) => 0,
            },
        }
    }

    /// Run statements in one transaction, failing the test on an error.
    pub async fn txn(&mut self, statements: &[String]) {
        let body = statements.join("; ");
        if let Err(e) = self.try_exec(&self.in_txn(&body)).await {
            panic!("the application's statement failed: {body}: {e}");
        }
    }

    /// Run statements in one transaction; on an error (a race between writers)
    /// it is rolled back whole and false returned.
    pub async fn try_txn(&mut self, statements: &[String]) -> bool {
        let body = statements.join("; ");
        let ok = self.try_exec(&self.in_txn(&body)).await.is_ok();
        if !ok {
            let _ = self.try_exec("ROLLBACK").await;
        }
        ok
    }

    fn in_txn(&self, body: &str) -> String {
        match self {
            Db::Pg(_) => format!("BEGIN; {body}; COMMIT"),
            Db::My(_) => format!("START TRANSACTION; {body}; COMMIT"),
        }
    }

    /// Every row of a query, typed.
    pub async fn query<R: SiteRow>(&mut self, sql: &str) -> Vec<R> {
        match self {
            Db::Pg(c) => c
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(R::from_pg)
                .collect(),
            Db::My(c) => c
                .query::<mysql_async::Row, _>(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .into_iter()
                .map(R::from_mysql)
                .collect(),
        }
    }

    /// The first row of a query, if any.
    pub async fn query_first<R: SiteRow>(&mut self, sql: &str) -> Option<R> {
        self.query(sql).await.into_iter().next()
    }

    /// A count (or any one bigint) from a query.
    pub async fn count(&mut self, sql: &str) -> i64 {
        self.query_first::<i64>(sql).await.unwrap_or(0)
    }

    /// The statement for this site's engine.
    pub fn pick<'s>(&self, pg: &'s str, my: &'s str) -> &'s str {
        match self {
            Db::Pg(_) => pg,
            Db::My(_) => my,
        }
    }

    /// Every row of `pg_sql` on a PostgreSQL site, of `my_sql` on a MariaDB one.
    pub async fn rows<R: SiteRow>(&mut self, pg_sql: &str, my_sql: &str) -> Vec<R> {
        let sql = self.pick(pg_sql, my_sql).to_string();
        self.query(&sql).await
    }

    /// Conflict and quarantine records waiting in duplex's journal outbox
    /// on this site (committed with the data they belong to, shipped to
    /// the control schema right after): 0 once every record is there.
    pub async fn records_waiting(&mut self) -> i64 {
        // 0 where the outbox does not exist (yet).
        match self {
            Db::Pg(c) => c
                .query_one("SELECT count(*) FROM duplex.site_journal", &[])
                .await
                .map(|r| r.get(0))
                .unwrap_or(0),
            Db::My(c) => c
                .query_first::<i64, _>("SELECT COUNT(*) FROM _duplex_journal")
                .await
                .ok()
                .flatten()
                .unwrap_or(0),
        }
    }

    /// Tombstones duplex keeps on this site.
    pub async fn tombstones(&mut self) -> i64 {
        let sql = match self {
            Db::Pg(_) => "SELECT count(*) FROM duplex.site_tombstones",
            Db::My(_) => "SELECT COUNT(*) FROM _duplex_tombstones",
        };
        self.count(sql).await
    }
}

/// Poll until `queries` read the same rows on both sites, all in one round (each
/// query as `[on PostgreSQL, on MariaDB]`), and the conflict and quarantine
/// records of what was applied have reached the control schema; fail naming
/// `what` and both sides' rows after a minute.
pub async fn wait_same<R>(a: &mut Db, b: &mut Db, what: &str, queries: &[[&str; 2]])
where
    R: SiteRow + PartialEq + std::fmt::Debug,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for [pg, my] in queries {
            x.push(a.rows::<R>(pg, my).await);
            y.push(b.rows::<R>(pg, my).await);
        }
        if x == y && a.records_waiting().await == 0 && b.records_waiting().await == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {x:?} vs {y:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The engines of a link's two sites, in site order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engines {
    PgPg,
    /// Site 1 on PostgreSQL 18, site 2 on the default PostgreSQL (15 here):
    /// both directions between the two versions, as in a migration.
    Pg18Pg,
    PgMariaDb,
    MariaDbMariaDb,
}

/// A throwaway server of either engine (held, not moved around: the size
/// difference between the variants does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Server {
    Pg(duplex::localdb::pg::LocalPostgres),
    My(duplex::localdb::mysql::LocalMariaDb),
}

impl Server {
    /// Engine name as `duplex.sites.engine` spells it.
    fn engine(&self) -> &'static str {
        match self {
            Server::Pg(_) => "postgresql",
            Server::My(_) => "mysql",
        }
    }

    /// How duplex reaches the server's `app` database.
    pub fn url(&self) -> String {
        match self {
            Server::Pg(pg) => pg.conninfo("app"),
            Server::My(m) => m.url("app"),
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        match self {
            Server::Pg(_) => Endpoint::Pg(self.url()),
            Server::My(_) => Endpoint::My(self.url()),
        }
    }

    /// A new test connection to `app`.
    pub async fn connect(&self) -> Db {
        self.endpoint().connect().await
    }
}

/// How to reach a site's `app` database, to be cloned into spawned writers.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Pg(String),
    My(String),
}

impl Endpoint {
    pub async fn connect(&self) -> Db {
        match self {
            Endpoint::Pg(url) => Db::pg(url).await,
            Endpoint::My(url) => Db::mysql_url(url).await,
        }
    }
}

/// Two sites of an engine pair, each database `app` holding the schema for its
/// engine, and a PostgreSQL control database describing link 1 between them
/// (site 1 and site 2), syncing `tables`.
pub struct Sites {
    pub servers: [Server; 2],
    pub control_url: String,
    /// The control database's cluster (stopped and started again by the
    /// tests of a control-database outage).
    pub control_server: duplex::localdb::pg::LocalPostgres,
}

impl Sites {
    pub async fn start(
        engines: Engines,
        pg_schema: &str,
        my_schema: &str,
        tables: &[&str],
    ) -> Sites {
        let pg = || async { Server::Pg(super::start_postgres(pg_schema).await) };
        let pg18 = || async { Server::Pg(super::start_postgres_18(pg_schema).await) };
        let my = || async { Server::My(super::start_mariadb(my_schema).await) };
        let (servers, names) = match engines {
            Engines::PgPg => ([pg().await, pg().await], ["a", "b"]),
            Engines::Pg18Pg => ([pg18().await, pg().await], ["a", "b"]),
            Engines::PgMariaDb => ([pg().await, my().await], ["pg", "maria"]),
            Engines::MariaDbMariaDb => ([my().await, my().await], ["a", "b"]),
        };
        let sites: Vec<(i32, &str, &str, String)> = servers
            .iter()
            .zip(names)
            .enumerate()
            .map(|(i, (s, name))| (i as i32 + 1, name, s.engine(), s.url()))
            .collect();
        let (control, control_url) = super::control_db(&sites, tables).await;
        Sites {
            servers,
            control_url,
            control_server: control,
        }
    }

    /// New test connections to site 1 and site 2.
    pub async fn connect(&self) -> (Db, Db) {
        (
            self.servers[0].connect().await,
            self.servers[1].connect().await,
        )
    }
}
