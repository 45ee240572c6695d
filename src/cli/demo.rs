//! `duplex demo`: a throwaway PostgreSQL "crm" database and a throwaway
//! "support" database (PostgreSQL, or MariaDB with `--support mariadb`), a
//! small schema, duplex syncing them, and writes on each side shown arriving
//! on the other.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mysql_async::prelude::Queryable;

use duplex::localdb::mysql::{LocalMariaDb, LocalMariaDbOptions};
use duplex::localdb::pg::{LocalPgOptions, LocalPostgres};
use duplex::pg::PgEndpoint;
use duplex::pipeline::PipelineTuning;

const PG_SCHEMA: &str = "
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text, tier text NOT NULL DEFAULT 'standard');
CREATE TABLE tickets (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, subject text NOT NULL, status text NOT NULL DEFAULT 'open');";

const MARIADB_SCHEMA: &str = "
CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, email VARCHAR(200) NULL, tier VARCHAR(20) NOT NULL DEFAULT 'standard');
CREATE TABLE tickets (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, subject VARCHAR(200) NOT NULL, status VARCHAR(20) NOT NULL DEFAULT 'open',
                      FOREIGN KEY (customer_id) REFERENCES customers (id));";

/// Which engine the demo's "support" database runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SupportEngine {
    Postgres,
    Mariadb,
}

/// A demo database of either engine: a connection and the server behind it.
enum DemoDb {
    Pg(tokio_postgres::Client),
    Maria(mysql_async::Conn),
}

impl DemoDb {
    async fn exec(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            DemoDb::Pg(c) => c.batch_execute(sql).await?,
            DemoDb::Maria(c) => c.query_drop(sql).await?,
        }
        Ok(())
    }

    /// One condition, written portably (`(SELECT COUNT(*) ...) = 1`).
    async fn check(&mut self, condition: &str) -> anyhow::Result<bool> {
        Ok(match self {
            DemoDb::Pg(c) => c
                .query_one(&format!("SELECT coalesce(({condition}), false)"), &[])
                .await?
                .get(0),
            DemoDb::Maria(c) => {
                c.query_first::<Option<i64>, _>(format!("SELECT ({condition})"))
                    .await?
                    .flatten()
                    == Some(1)
            }
        })
    }

    /// Poll `condition` until true or 15 s pass.
    async fn wait_until(&mut self, condition: &str) -> anyhow::Result<Duration> {
        let start = Instant::now();
        while !self.check(condition).await? {
            if start.elapsed() > Duration::from_secs(15) {
                bail!("the change did not arrive within 15 s; check the log above");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(start.elapsed())
    }

    /// Every row of both tables, as text, for the final comparison.
    async fn contents(&mut self) -> anyhow::Result<Vec<String>> {
        let q1 = "SELECT CONCAT(id, '|', name, '|', COALESCE(email, ''), '|', tier) FROM customers ORDER BY id";
        let q2 = "SELECT CONCAT(id, '|', customer_id, '|', subject, '|', status) FROM tickets ORDER BY id";
        let mut out = Vec::new();
        for q in [q1, q2] {
            match self {
                DemoDb::Pg(c) => {
                    out.extend(c.query(q, &[]).await?.iter().map(|r| r.get::<_, String>(0)))
                }
                DemoDb::Maria(c) => out.extend(c.query::<String, _>(q).await?),
            }
        }
        Ok(out)
    }
}

fn pg_client_url(pg: &LocalPostgres, db: &str) -> anyhow::Result<PgEndpoint> {
    Ok(PgEndpoint::from_url(db, &pg.conninfo(db))?)
}

pub async fn run(rounds: u32, support: SupportEngine) -> anyhow::Result<()> {
    println!("== duplex demo: starting a throwaway PostgreSQL (crm) and a throwaway {support:?} (support) ...");
    // Durable commits, as in production: with synchronous_commit=off the WAL
    // (and so every replicator) waits for the WAL writer's 200 ms flush.
    let opts = LocalPgOptions {
        extra_conf: vec![("synchronous_commit".into(), "on".into())],
        ..LocalPgOptions::default()
    };
    let o1 = opts.clone();
    let crm = tokio::task::spawn_blocking(move || LocalPostgres::start(o1)).await??;
    crm.create_database("app")
        .context("create the crm database")?;
    crm.psql("app", PG_SCHEMA)
        .context("create the crm schema")?;
    // Keep whichever server runs "support" alive until the end.
    let mut _pg_support = None;
    let mut _maria_support = None;
    let (support_conninfo, support_engine, mut b) = match support {
        SupportEngine::Postgres => {
            let pg = tokio::task::spawn_blocking(move || LocalPostgres::start(opts)).await??;
            pg.create_database("app")
                .context("create the support database")?;
            pg.psql("app", PG_SCHEMA)
                .context("create the support schema")?;
            let client = pg_client_url(&pg, "app")?.connect("duplex demo").await?;
            let conninfo = pg.conninfo("app");
            _pg_support = Some(pg);
            (conninfo, "postgresql", DemoDb::Pg(client))
        }
        SupportEngine::Mariadb => {
            let m =
                tokio::task::spawn_blocking(|| LocalMariaDb::start(LocalMariaDbOptions::default()))
                    .await??;
            m.create_database("app")
                .context("create the support database")?;
            m.sql(Some("app"), MARIADB_SCHEMA)
                .context("create the support schema")?;
            let opts =
                mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&m.url("app"))?)
                    .prefer_socket(false);
            let conn = mysql_async::Conn::new(opts).await?;
            let url = m.url("app");
            _maria_support = Some(m);
            (url, "mysql", DemoDb::Maria(conn))
        }
    };
    println!("   crm     = {}", crm.conninfo("app"));
    println!("   support = {support_conninfo}");

    // The control schema lives in the crm cluster's `postgres` database.
    let control_url = crm.conninfo("postgres");
    let mut control = pg_client_url(&crm, "postgres")?
        .connect("duplex demo")
        .await?;
    duplex::control::migrate_pg(&mut control).await?;
    let config_sql = format!(
        "INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES
             (1, 'crm', 'postgresql', '{}', 'disable'),
             (2, 'support', '{support_engine}', '{}', 'disable');
         INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'crm_support', 1, 2);
         INSERT INTO duplex.link_tables (link_id, schema_name, table_name) VALUES
             (1, 'public', 'customers'), (1, 'public', 'tickets');",
        crm.conninfo("app").replace('\'', "''"),
        support_conninfo.replace('\'', "''")
    );
    control.batch_execute(&config_sql).await?;
    println!("== configured through SQL on the control schema:\n{config_sql}\n");

    let handle = duplex::runner::start(&control_url, PipelineTuning::default()).await?;
    let mut a = DemoDb::Pg(pg_client_url(&crm, "app")?.connect("duplex demo").await?);

    let names = [
        "Ada Lovelace",
        "Grace Hopper",
        "Edsger Dijkstra",
        "Barbara Liskov",
        "Donald Knuth",
        "Frances Allen",
        "Ken Thompson",
    ];
    for round in 0..rounds {
        let i = i64::from(round) + 1;
        let name = names[(round as usize) % names.len()];
        a.exec(&format!(
            "INSERT INTO customers (id, name, email) VALUES ({i}, '{name}', 'c{i}@example.com')"
        ))
        .await?;
        let t = b
            .wait_until(&format!(
                "SELECT COUNT(*) = 1 FROM customers WHERE id = {i}"
            ))
            .await?;
        println!(
            "crm     -> support  insert customer {i} '{name}'{:>w$} arrived in {:>4} ms",
            "",
            t.as_millis(),
            w = 18 - name.len().min(18)
        );
        let ticket = 1_000_000 + i;
        b.exec(&format!("INSERT INTO tickets (id, customer_id, subject) VALUES ({ticket}, {i}, 'Question #{i} from {name}')")).await?;
        let t = a
            .wait_until(&format!(
                "SELECT COUNT(*) = 1 FROM tickets WHERE id = {ticket}"
            ))
            .await?;
        println!(
            "support -> crm      insert ticket {ticket} for customer {i}     arrived in {:>4} ms",
            t.as_millis()
        );
        b.exec(&format!(
            "UPDATE customers SET tier = 'gold' WHERE id = {i}"
        ))
        .await?;
        let t = a
            .wait_until(&format!(
                "SELECT COUNT(*) = 1 FROM customers WHERE id = {i} AND tier = 'gold'"
            ))
            .await?;
        println!(
            "support -> crm      update customer {i} tier=gold            arrived in {:>4} ms",
            t.as_millis()
        );
        a.exec(&format!(
            "BEGIN; UPDATE tickets SET status = 'closed' WHERE id = {ticket}; UPDATE customers SET email = 'vip{i}@example.com' WHERE id = {i}; COMMIT;"
        ))
        .await?;
        let t = b
            .wait_until(&format!(
                "SELECT COUNT(*) = 1 FROM tickets WHERE id = {ticket} AND status = 'closed'"
            ))
            .await?;
        println!(
            "crm     -> support  close ticket {ticket} + new email (one txn) arrived in {:>4} ms",
            t.as_millis()
        );
    }
    b.exec("DELETE FROM tickets WHERE id = 1000001").await?;
    let t = a
        .wait_until("SELECT COUNT(*) = 0 FROM tickets WHERE id = 1000001")
        .await?;
    println!(
        "support -> crm      delete ticket 1000001                    arrived in {:>4} ms",
        t.as_millis()
    );

    // The last change must also have reached the support side before comparing.
    b.wait_until("SELECT COUNT(*) = 0 FROM tickets WHERE id = 1000001")
        .await?;
    let (ca, cb) = (a.contents().await?, b.contents().await?);
    println!(
        "\n== crm holds {} rows, support holds {} rows: {}",
        ca.len(),
        cb.len(),
        if ca == cb { "identical" } else { "DIFFERENT" }
    );
    for d in &handle.directions() {
        println!(
            "   {:<26} applied {} txns ({} rows), skipped {} of duplex's own txns",
            d.name,
            d.stats
                .applied_txns
                .load(std::sync::atomic::Ordering::Relaxed),
            d.stats
                .applied_rows
                .load(std::sync::atomic::Ordering::Relaxed),
            d.stats
                .echo_txns_skipped
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    handle.shutdown().await;
    if ca != cb {
        bail!("the two sides differ");
    }
    println!("== in sync. Stopping the servers.");
    Ok(())
}
