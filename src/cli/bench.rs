//! `duplex bench`: duplex against PostgreSQL's own logical replication, same
//! machine, same clusters, same workloads, one after the other; prints a table.
//!
//! Each workload is measured from the first user commit to the moment the last
//! row is visible on the peer, so a replicator that applies while the load is
//! still running gets credit for it. Run it in release mode
//! (`scripts/bench.sh`); debug builds measure the compiler, not duplex.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_postgres::Client;

use duplex::localdb::pg::{LocalPgOptions, LocalPostgres};
use duplex::pg::PgEndpoint;
use duplex::pipeline::PipelineTuning;

/// Sizes of the workloads.
#[derive(Debug, Clone, Copy)]
pub struct BenchSizes {
    /// Rows in the single large transaction.
    pub bulk_rows: i64,
    /// Number of one-row transactions.
    pub small_txns: i64,
    /// Rows of the backlog, in 1,000-row transactions (0: no backlog run).
    pub backlog_rows: i64,
}

/// Rows per transaction of the backlog.
const BACKLOG_TXN_ROWS: i64 = 1_000;

/// Write the backlog to `table` on A (ids after `after`), in
/// [`BACKLOG_TXN_ROWS`]-row transactions, while no replicator applies it.
async fn write_backlog(a: &Client, table: &str, after: i64, rows: i64) -> anyhow::Result<()> {
    let mut done = 0;
    while done < rows {
        let n = BACKLOG_TXN_ROWS.min(rows - done);
        a.batch_execute(&format!(
            "INSERT INTO {table} SELECT g, md5(g::text), now() FROM generate_series({}, {}) g",
            after + done + 1,
            after + done + n
        ))
        .await?;
        done += n;
    }
    Ok(())
}

/// The backlog's measurement: from the replicator's start until its last row
/// is visible on B.
fn backlog_measurement(
    replicator: &'static str,
    rows: i64,
    load: Duration,
    start: Instant,
) -> Measurement {
    Measurement {
        workload: format!("backlog {rows} rows"),
        replicator,
        rows,
        load_secs: load.as_secs_f64(),
        total_secs: start.elapsed().as_secs_f64(),
    }
}

struct Measurement {
    workload: String,
    replicator: &'static str,
    rows: i64,
    load_secs: f64,
    total_secs: f64,
}

async fn client(pg: &LocalPostgres, db: &str) -> anyhow::Result<Client> {
    Ok(PgEndpoint::from_url(db, &pg.conninfo(db))?
        .connect("duplex bench")
        .await?)
}

async fn wait_count(b: &Client, table: &str, n: i64) -> anyhow::Result<()> {
    let sql = format!("SELECT count(*) FROM {table}");
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let c: i64 = b.query_one(&sql, &[]).await?.get(0);
        if c >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{table}: only {c} of {n} rows arrived within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Run the workloads against `table` on A, measuring arrival on B.
async fn workloads(
    a: &Client,
    b: &Client,
    table: &str,
    replicator: &'static str,
    sizes: BenchSizes,
    out: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    // One large transaction.
    let start = Instant::now();
    a.batch_execute(&format!(
        "INSERT INTO {table} SELECT g, md5(g::text), now() FROM generate_series(1, {}) g",
        sizes.bulk_rows
    ))
    .await?;
    let load = start.elapsed();
    wait_count(b, table, sizes.bulk_rows).await?;
    out.push(Measurement {
        workload: format!("1 txn x {} rows", sizes.bulk_rows),
        replicator,
        rows: sizes.bulk_rows,
        load_secs: load.as_secs_f64(),
        total_secs: start.elapsed().as_secs_f64(),
    });
    // Many one-row transactions from one client, pipelined as an application would.
    let base = sizes.bulk_rows;
    let insert = a
        .prepare(&format!("INSERT INTO {table} VALUES ($1, 'small', now())"))
        .await?;
    let start = Instant::now();
    let mut pending = futures_util::stream::FuturesOrdered::new();
    for i in 1..=sizes.small_txns {
        let id = base + i;
        let stmt = insert.clone();
        pending.push_back(async move { a.execute(&stmt, &[&id]).await });
        if pending.len() >= 16 {
            use futures_util::StreamExt;
            if let Some(r) = pending.next().await {
                r?;
            }
        }
    }
    {
        use futures_util::StreamExt;
        while let Some(r) = pending.next().await {
            r?;
        }
    }
    let load = start.elapsed();
    wait_count(b, table, base + sizes.small_txns).await?;
    out.push(Measurement {
        workload: format!("{} txns x 1 row", sizes.small_txns),
        replicator,
        rows: sizes.small_txns,
        load_secs: load.as_secs_f64(),
        total_secs: start.elapsed().as_secs_f64(),
    });
    Ok(())
}

pub async fn run(sizes: BenchSizes) -> anyhow::Result<()> {
    println!("== duplex bench: starting two throwaway PostgreSQL clusters");
    // Durable commits, as in production: a synchronous_commit=off source only
    // flushes WAL (and so only sends it to any replicator) every 200 ms.
    // A warm launcher: PostgreSQL's logical replication launcher otherwise
    // waits up to `wal_retrieve_retry_interval` (5 s by default) before it
    // starts the workers of a subscription created right after another was
    // dropped, and the native initial sync would be timed with that wait.
    let opts = LocalPgOptions {
        extra_conf: vec![
            ("synchronous_commit".into(), "on".into()),
            ("wal_retrieve_retry_interval".into(), "50ms".into()),
        ],
        ..LocalPgOptions::default()
    };
    let (o1, o2) = (opts.clone(), opts);
    let a_pg = tokio::task::spawn_blocking(move || LocalPostgres::start(o1)).await??;
    let b_pg = tokio::task::spawn_blocking(move || LocalPostgres::start(o2)).await??;
    let schema = "CREATE TABLE bench_duplex (id bigint PRIMARY KEY, payload text, at timestamptz);
                  CREATE TABLE bench_native (id bigint PRIMARY KEY, payload text, at timestamptz);
                  CREATE TABLE seed_duplex (id bigint PRIMARY KEY, payload text, at timestamptz);
                  CREATE TABLE seed_native (id bigint PRIMARY KEY, payload text, at timestamptz);";
    for pg in [&a_pg, &b_pg] {
        pg.create_database("app").context("create database")?;
        pg.psql("app", schema).context("create tables")?;
    }
    let (a, b) = (client(&a_pg, "app").await?, client(&b_pg, "app").await?);
    let mut results = Vec::new();
    // Rows that exist before their table joins: the initial sync's workload.
    for table in ["seed_duplex", "seed_native"] {
        a.batch_execute(&format!(
            "INSERT INTO {table} SELECT g, md5(g::text), now() FROM generate_series(1, {}) g",
            sizes.bulk_rows
        ))
        .await?;
    }

    // duplex, both directions running (as in production), load on A.
    let mut control = client(&a_pg, "postgres").await?;
    duplex::control::migrate_pg(&mut control).await?;
    control
        .execute(
            "INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES (1, 'a', 'postgresql', $1, 'disable'), (2, 'b', 'postgresql', $2, 'disable')",
            &[&a_pg.conninfo("app"), &b_pg.conninfo("app")],
        )
        .await?;
    control
        .batch_execute(
            "INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'bench', 1, 2);
             INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 'bench_duplex');",
        )
        .await?;
    let handle =
        duplex::runner::start(&a_pg.conninfo("postgres"), PipelineTuning::default()).await?;
    println!("== duplex: running workloads");
    workloads(&a, &b, "bench_duplex", "duplex", sizes, &mut results).await?;
    // The backlog: written while duplex is stopped, applied when it starts.
    let handle = if sizes.backlog_rows > 0 {
        handle.shutdown().await;
        let after = sizes.bulk_rows + sizes.small_txns;
        let load = Instant::now();
        write_backlog(&a, "bench_duplex", after, sizes.backlog_rows).await?;
        let load = load.elapsed();
        let start = Instant::now();
        let handle =
            duplex::runner::start(&a_pg.conninfo("postgres"), PipelineTuning::default()).await?;
        wait_count(&b, "bench_duplex", after + sizes.backlog_rows).await?;
        results.push(backlog_measurement(
            "duplex",
            sizes.backlog_rows,
            load,
            start,
        ));
        handle
    } else {
        handle
    };
    // Initial sync: the seeded table joins the running link.
    let start = Instant::now();
    control
        .batch_execute(
            "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 'seed_duplex')",
        )
        .await?;
    wait_count(&b, "seed_duplex", sizes.bulk_rows).await?;
    results.push(Measurement {
        workload: format!("initial sync {} rows", sizes.bulk_rows),
        replicator: "duplex",
        rows: sizes.bulk_rows,
        load_secs: 0.0,
        total_secs: start.elapsed().as_secs_f64(),
    });
    // And the parity check of it (both sites read in full).
    let mut db = duplex::control::ControlDb::Pg(client(&a_pg, "postgres").await?);
    let config = duplex::control::load_unchecked(&mut db).await?;
    if let Some(Ok(lc)) = config.link_config(1) {
        if let Some(t) = lc.tables.iter().find(|t| t.table.name == "seed_duplex") {
            let options = duplex::parity::CheckOptions {
                progress: false,
                ..duplex::parity::CheckOptions::default()
            };
            let report = duplex::parity::check_table(&lc, t, &options, Some(&mut db)).await?;
            if !report.differences.is_empty() {
                bail!(
                    "the initial sync left {} differences",
                    report.differences.len()
                );
            }
            results.push(Measurement {
                workload: format!("check {} rows", sizes.bulk_rows),
                replicator: "duplex",
                rows: sizes.bulk_rows,
                load_secs: 0.0,
                total_secs: report.elapsed.as_secs_f64(),
            });
        }
    }
    handle.shutdown().await;
    // Its slots would otherwise decode the native run's WAL too. A walsender
    // lets go of its slot a moment after the client disconnects.
    for pg in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Drops the inactive ones; an active one is retried on the next round.
            pg.batch_execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'duplex\\_%' AND NOT active")
                .await?;
            let remaining: i64 = pg
                .query_one(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'duplex\\_%'",
                    &[],
                )
                .await?
                .get(0);
            if remaining == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("duplex's replication slots stayed active after shutdown");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // PostgreSQL's built-in logical replication, A -> B.
    println!("== PostgreSQL logical replication: running workloads");
    a.batch_execute("CREATE PUBLICATION bench_native_pub FOR TABLE bench_native")
        .await?;
    b.batch_execute(&format!(
        "CREATE SUBSCRIPTION bench_native_sub CONNECTION '{}' PUBLICATION bench_native_pub WITH (copy_data = false)",
        a_pg.conninfo("app").replace('\'', "''")
    ))
    .await?;
    // Wait until the subscription's apply worker streams.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active: bool = a.query_one("SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'bench_native_sub' AND active)", &[]).await?.get(0);
        if active {
            break;
        }
        if Instant::now() > deadline {
            bail!("the native subscription did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    workloads(&a, &b, "bench_native", "postgres", sizes, &mut results).await?;
    if sizes.backlog_rows > 0 {
        // The same backlog, written while the subscription is disabled.
        b.batch_execute("ALTER SUBSCRIPTION bench_native_sub DISABLE")
            .await?;
        let after = sizes.bulk_rows + sizes.small_txns;
        let load = Instant::now();
        write_backlog(&a, "bench_native", after, sizes.backlog_rows).await?;
        let load = load.elapsed();
        let start = Instant::now();
        b.batch_execute("ALTER SUBSCRIPTION bench_native_sub ENABLE")
            .await?;
        wait_count(&b, "bench_native", after + sizes.backlog_rows).await?;
        results.push(backlog_measurement(
            "postgres",
            sizes.backlog_rows,
            load,
            start,
        ));
    }
    b.batch_execute("DROP SUBSCRIPTION bench_native_sub")
        .await?;
    // Its initial table copy (copy_data), for the initial sync.
    a.batch_execute("CREATE PUBLICATION seed_native_pub FOR TABLE seed_native")
        .await?;
    let start = Instant::now();
    b.batch_execute(&format!(
        "CREATE SUBSCRIPTION seed_native_sub CONNECTION '{}' PUBLICATION seed_native_pub WITH (copy_data = true)",
        a_pg.conninfo("app").replace('\'', "''")
    ))
    .await?;
    wait_count(&b, "seed_native", sizes.bulk_rows).await?;
    results.push(Measurement {
        workload: format!("initial sync {} rows", sizes.bulk_rows),
        replicator: "postgres",
        rows: sizes.bulk_rows,
        load_secs: 0.0,
        total_secs: start.elapsed().as_secs_f64(),
    });
    b.batch_execute("DROP SUBSCRIPTION seed_native_sub").await?;

    println!();
    println!(
        "{:<24} {:<10} {:>10} {:>12} {:>14} {:>12}",
        "workload", "replicator", "rows", "load (s)", "to peer (s)", "rows/s"
    );
    for m in &results {
        println!(
            "{:<24} {:<10} {:>10} {:>12.2} {:>14.2} {:>12.0}",
            m.workload,
            m.replicator,
            m.rows,
            m.load_secs,
            m.total_secs,
            m.rows as f64 / m.total_secs
        );
    }
    println!("\nto peer: from the start of the load on A until the last row is visible on B;");
    println!("for the backlog, from the replicator's start (duplex started, or the subscription");
    println!("enabled) until its last row is visible on B.");
    Ok(())
}
