//! The workloads the bench writes on site A, and how it sees them arrive
//! on site B. Every table has the same shape on both sites; the OLTP table
//! and heartbeat are described in [`schema`].

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use tokio_postgres::Client;

/// Rows per transaction of the backlog.
pub const BACKLOG_TXN_ROWS: i64 = 1_000;
/// Rows of the OLTP table before its load starts (on both sites alike).
pub const OLTP_ROWS: i64 = 10_000;
/// Heartbeats per second during the OLTP load.
const HEARTBEAT_HZ: u64 = 10;

/// The tables of one replicator's run, on both sites. `heartbeat` on B
/// stamps each row's arrival (`arrived_at`) in a trigger that fires for
/// replicated rows too (`ENABLE ALWAYS`), as the measure asks.
pub fn schema(site_b: bool) -> String {
    let mut sql = String::from(
        "CREATE TABLE bench (id bigint PRIMARY KEY, payload text, at timestamptz);
         CREATE TABLE seed (id bigint PRIMARY KEY, payload text, at timestamptz);
         CREATE TABLE oltp (id bigint PRIMARY KEY, k integer NOT NULL DEFAULT 0,
                            c character(120) NOT NULL DEFAULT '', pad character(60) NOT NULL DEFAULT '');
         CREATE INDEX oltp_k ON oltp (k);
         CREATE TABLE heartbeat (id bigint PRIMARY KEY, sent_at timestamptz NOT NULL, arrived_at timestamptz);",
    );
    sql.push_str(&format!(
        "INSERT INTO oltp (id, k, c, pad)
           SELECT g, g % 1000, md5(g::text) || md5((g + 1)::text), md5((g + 2)::text)
             FROM generate_series(1, {OLTP_ROWS}) g;"
    ));
    if site_b {
        sql.push_str(
            "CREATE FUNCTION heartbeat_arrived() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.arrived_at := clock_timestamp(); RETURN NEW; END $$;
             CREATE TRIGGER heartbeat_arrived BEFORE INSERT ON heartbeat
               FOR EACH ROW EXECUTE FUNCTION heartbeat_arrived();
             ALTER TABLE heartbeat ENABLE ALWAYS TRIGGER heartbeat_arrived;",
        );
    }
    sql
}

/// Wait until `table` on `b` holds the row of key `id`: an index lookup
/// every 5 ms, so that waiting costs the servers next to nothing (counting
/// the rows each time scanned the table, and slowed the slower replicator
/// most). Transactions arrive whole and in commit order, so the last row a
/// session wrote stands for all of its rows; [`expect_count`] checks.
pub async fn wait_row(b: &Client, table: &str, id: i64) -> anyhow::Result<()> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)");
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let there: bool = b.query_one(&sql, &[&id]).await?.get(0);
        if there {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{table}: row {id} did not arrive within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Check that `table` on `b` holds exactly `n` rows (`filter`: an extra
/// condition, or empty), once they have all arrived.
pub async fn expect_count(b: &Client, table: &str, filter: &str, n: i64) -> anyhow::Result<()> {
    let c: i64 = b
        .query_one(&format!("SELECT count(*) FROM {table} {filter}"), &[])
        .await?
        .get(0);
    if c != n {
        bail!("{table} {filter}: {c} rows arrived, {n} expected");
    }
    Ok(())
}

/// One large transaction of `rows` rows into `bench`, ids after `after`.
pub async fn bulk(a: &Client, after: i64, rows: i64) -> anyhow::Result<()> {
    a.batch_execute(&format!(
        "INSERT INTO bench SELECT g, md5(g::text), now() FROM generate_series({}, {}) g",
        after + 1,
        after + rows
    ))
    .await?;
    Ok(())
}

/// `txns` one-row transactions from one client, pipelined (16 in flight)
/// as an application with a connection pool would send them.
pub async fn small(a: &Client, after: i64, txns: i64) -> anyhow::Result<()> {
    let insert = a
        .prepare("INSERT INTO bench VALUES ($1, 'small', now())")
        .await?;
    let mut pending = futures_util::stream::FuturesOrdered::new();
    for i in 1..=txns {
        let id = after + i;
        let stmt = insert.clone();
        pending.push_back(async move { a.execute(&stmt, &[&id]).await });
        if pending.len() >= 16 {
            if let Some(r) = pending.next().await {
                r?;
            }
        }
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(())
}

/// `rows` rows into `bench` (ids after `after`) in [`BACKLOG_TXN_ROWS`]-row
/// transactions.
pub async fn backlog(a: &Client, after: i64, rows: i64) -> anyhow::Result<()> {
    let mut done = 0;
    while done < rows {
        let n = BACKLOG_TXN_ROWS.min(rows - done);
        bulk(a, after + done, n).await?;
        done += n;
    }
    Ok(())
}

/// What the OLTP load did, and how it arrived.
#[derive(Debug, Clone, Copy)]
pub struct OltpOutcome {
    pub txns: i64,
    pub load: Duration,
    /// Of the load's transactions, how many B held when the load ended.
    pub applied_during_load: i64,
    /// From the load's end until B held every transaction.
    pub catch_up: Duration,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
}

/// A small xorshift generator: the load needs cheap spread-out keys, not
/// good randomness.
struct Keys(u64);

impl Keys {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `threads` sessions on A, each committing transactions of one UPDATE of
/// a random existing row and one INSERT (sysbench's write shape) for
/// `secs`, while a heartbeat row is inserted 10 times a second; B stamps
/// each heartbeat's arrival.
pub async fn oltp(
    connect: impl Fn() -> futures_util::future::BoxFuture<'static, anyhow::Result<Client>>,
    b: &Client,
    threads: usize,
    secs: u64,
) -> anyhow::Result<OltpOutcome> {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for w in 0..threads {
        let mut client = connect().await?;
        workers.push(tokio::spawn(async move {
            let update = client
                .prepare("UPDATE oltp SET k = k + 1 WHERE id = $1")
                .await?;
            let insert = client
                .prepare("INSERT INTO oltp (id, k, c, pad) VALUES ($1, $2, $3, $4)")
                .await?;
            let mut keys = Keys(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
            let mut n: i64 = 0;
            while Instant::now() < end {
                n += 1;
                let id = (keys.next() % OLTP_ROWS as u64) as i64 + 1;
                // New rows: a range of ids per session, after the seeded ones.
                let new_id = 1_000_000_000 * (w as i64 + 1) + n;
                let k = (keys.next() % 1000) as i32;
                let c = format!("{:0>119}", keys.next());
                let pad = format!("{:0>59}", keys.next());
                let txn = client.transaction().await?;
                txn.execute(&update, &[&id]).await?;
                txn.execute(&insert, &[&new_id, &k, &c, &pad]).await?;
                txn.commit().await?;
            }
            // The session's last row.
            anyhow::Ok(1_000_000_000 * (w as i64 + 1) + n)
        }));
    }
    let heartbeat = {
        let client = connect().await?;
        tokio::spawn(async move {
            let insert = client
                .prepare("INSERT INTO heartbeat (id, sent_at) VALUES ($1, clock_timestamp())")
                .await?;
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / HEARTBEAT_HZ));
            let mut id: i64 = 0;
            while Instant::now() < end {
                tick.tick().await;
                id += 1;
                client.execute(&insert, &[&id]).await?;
            }
            anyhow::Ok(id)
        })
    };
    let mut txns = 0;
    let mut last_rows = Vec::new();
    for (w, worker) in workers.into_iter().enumerate() {
        let last = worker.await.context("an OLTP session panicked")??;
        txns += last - 1_000_000_000 * (w as i64 + 1);
        last_rows.push(last);
    }
    let beats = heartbeat.await.context("the heartbeat panicked")??;
    let load = start.elapsed();
    let new_rows = format!("WHERE id > {OLTP_ROWS}");
    let applied_during_load: i64 = b
        .query_one(&format!("SELECT count(*) FROM oltp {new_rows}"), &[])
        .await?
        .get(0);
    let caught = Instant::now();
    for &last in &last_rows {
        // A session that committed nothing has no last row.
        if last % 1_000_000_000 > 0 {
            wait_row(b, "oltp", last).await?;
        }
    }
    if beats > 0 {
        wait_row(b, "heartbeat", beats).await?;
    }
    let catch_up = caught.elapsed();
    expect_count(b, "oltp", &new_rows, txns).await?;
    expect_count(b, "heartbeat", "WHERE id > 0", beats).await?;
    let lag = b
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms)
               FROM (SELECT extract(epoch FROM arrived_at - sent_at)::float8 * 1000 AS ms
                       FROM heartbeat WHERE id > 0) l",
            &[],
        )
        .await?;
    Ok(OltpOutcome {
        txns,
        load,
        applied_during_load,
        catch_up,
        lag_p50_ms: lag.get::<_, Option<f64>>(0).unwrap_or(f64::NAN),
        lag_p99_ms: lag.get::<_, Option<f64>>(1).unwrap_or(f64::NAN),
        lag_max_ms: lag.get::<_, Option<f64>>(2).unwrap_or(f64::NAN),
    })
}
