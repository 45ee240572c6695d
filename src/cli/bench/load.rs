//! The workloads the bench writes on site A, and how it sees them arrive
//! on site B, one piece of code for both engine pairs (each engine's
//! statements are in [`super::db`]). Every table has the same shape on both
//! sites of a pair; the tables are described in [`pg_schema`] and
//! [`mariadb_schema`].

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use tokio_postgres::Client;

use super::db::{Db, OltpTxn, SiteAddr};

/// Rows per transaction of the backlog.
pub const BACKLOG_TXN_ROWS: i64 = 1_000;
/// Rows of the OLTP table before its load starts (on both sites alike).
pub const OLTP_ROWS: i64 = 10_000;
/// Heartbeats per second during the OLTP load.
const HEARTBEAT_HZ: u64 = 10;

/// The tables of one replicator's run on a PostgreSQL pair. `heartbeat` on
/// B stamps each row's arrival (`arrived_at`) in a trigger that fires for
/// replicated rows too (`ENABLE ALWAYS`), as the measure asks.
pub fn pg_schema(site_b: bool) -> String {
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

/// The same tables on a MariaDB pair (no `seed`: the MariaDB pair runs no
/// initial sync). B's arrival trigger reads `SYSDATE(6)`, the time it runs:
/// `NOW()` in a replica's applier is the source's commit time, which would
/// make every lag zero. MariaDB fires it for the rows its own replica
/// applies only with `slave_run_triggers_for_rbr` (set on the bench's
/// servers); duplex's writes are ordinary sessions, where it always fires.
pub fn mariadb_schema(site_b: bool) -> String {
    let mut sql = format!(
        "CREATE TABLE bench (id BIGINT PRIMARY KEY, payload VARCHAR(64), at DATETIME(6));
         CREATE TABLE oltp (id BIGINT PRIMARY KEY, k INT NOT NULL DEFAULT 0,
                            c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '',
                            KEY oltp_k (k));
         CREATE TABLE heartbeat (id BIGINT PRIMARY KEY, sent_at DATETIME(6) NOT NULL, arrived_at DATETIME(6) NULL);
         INSERT INTO oltp (id, k, c, pad)
           SELECT seq, seq % 1000, CONCAT(MD5(seq), MD5(seq + 1)), MD5(seq + 2)
             FROM seq_1_to_{OLTP_ROWS};"
    );
    if site_b {
        sql.push_str(
            "CREATE TRIGGER heartbeat_arrived BEFORE INSERT ON heartbeat
               FOR EACH ROW SET NEW.arrived_at = SYSDATE(6);",
        );
    }
    sql
}

/// Wait until `table` on `b` holds the row of key `id`: an index lookup
/// every 5 ms, so that waiting costs the servers next to nothing (counting
/// the rows each time scanned the table, and slowed the slower replicator
/// most). Transactions arrive whole and in commit order, so the last row a
/// session wrote stands for all of its rows; [`expect_count`] checks.
pub async fn wait_row(b: &mut Db, table: &str, id: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if b.exists(table, id).await? {
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
pub async fn expect_count(b: &mut Db, table: &str, filter: &str, n: i64) -> anyhow::Result<()> {
    let c = b.count(table, filter).await?;
    if c != n {
        bail!("{table} {filter}: {c} rows arrived, {n} expected");
    }
    Ok(())
}

/// `txns` one-row transactions from one client, pipelined (16 in flight)
/// as an application with a connection pool would send them (PostgreSQL
/// only: MariaDB's protocol has one statement in flight per connection).
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
pub async fn backlog(a: &mut Db, after: i64, rows: i64) -> anyhow::Result<()> {
    let mut done = 0;
    while done < rows {
        let n = BACKLOG_TXN_ROWS.min(rows - done);
        a.bulk(after + done, n).await?;
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

/// Width of a session's (and a run's heartbeats') range of new ids.
const ID_RANGE: i64 = 1_000_000_000;
/// Sessions of one run, so that runs' ranges of ids never meet.
const MAX_SESSIONS: usize = 99;

/// One run of the OLTP load on a pair's sites.
#[derive(Debug, Clone, Copy)]
pub struct OltpLoad {
    pub sessions: usize,
    pub secs: u64,
    /// Transactions per second of each session (`None`: as fast as it
    /// can), for a steady stream that every replicator is given alike.
    pub rate: Option<u32>,
    /// Which run on these sites (0, 1, ...): each run writes new rows and
    /// heartbeats of keys of its own, so that it is counted apart.
    pub run: i64,
}

impl OltpLoad {
    /// The id before session `w`'s first new row.
    fn session_base(&self, w: usize) -> i64 {
        (self.run * 100 + w as i64 + 1) * ID_RANGE
    }

    /// The run's new rows of `oltp`.
    fn new_rows(&self) -> String {
        format!(
            "WHERE id > {} AND id < {}",
            self.session_base(0),
            (self.run * 100 + 100) * ID_RANGE
        )
    }

    /// The id before the run's first heartbeat.
    fn heartbeat_base(&self) -> i64 {
        self.run * ID_RANGE
    }
}

/// A pace of `rate` ticks a second (`None`: none). A session that falls
/// behind goes on at the pace rather than bursting to catch up.
fn pace(rate: Option<u32>) -> Option<tokio::time::Interval> {
    rate.map(|r| {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    })
}

/// `load.sessions` sessions on A, each committing transactions of one
/// UPDATE of a random existing row and one INSERT (sysbench's write shape)
/// for `load.secs`, while a heartbeat row is inserted 10 times a second; B
/// stamps each heartbeat's arrival.
pub async fn oltp(a: &SiteAddr, b: &mut Db, load: OltpLoad) -> anyhow::Result<OltpOutcome> {
    if load.sessions > MAX_SESSIONS {
        bail!(
            "the OLTP load takes at most {MAX_SESSIONS} sessions, not {}",
            load.sessions
        );
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(load.secs);
    let mut workers = Vec::new();
    for w in 0..load.sessions {
        let mut db = a.connect().await?;
        let base = load.session_base(w);
        workers.push(tokio::spawn(async move {
            let mut keys = Keys(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
            let mut tick = pace(load.rate);
            let mut n: i64 = 0;
            while Instant::now() < end {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                n += 1;
                db.oltp_txn(&OltpTxn {
                    update_id: (keys.next() % OLTP_ROWS as u64) as i64 + 1,
                    new_id: base + n,
                    k: (keys.next() % 1000) as i32,
                    c: format!("{:0>119}", keys.next()),
                    pad: format!("{:0>59}", keys.next()),
                })
                .await?;
            }
            anyhow::Ok(n)
        }));
    }
    let heartbeat = {
        let mut db = a.connect().await?;
        let base = load.heartbeat_base();
        tokio::spawn(async move {
            let mut tick = pace(Some(HEARTBEAT_HZ as u32));
            let mut n: i64 = 0;
            while Instant::now() < end {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                n += 1;
                db.heartbeat(base + n).await?;
            }
            anyhow::Ok(n)
        })
    };
    let mut txns = 0;
    // Each session's last row, where it wrote one.
    let mut last_rows = Vec::new();
    for (w, worker) in workers.into_iter().enumerate() {
        let n = worker.await.context("an OLTP session panicked")??;
        txns += n;
        if n > 0 {
            last_rows.push(load.session_base(w) + n);
        }
    }
    let beats = heartbeat.await.context("the heartbeat panicked")??;
    let elapsed = start.elapsed();
    let new_rows = load.new_rows();
    let applied_during_load = b.count("oltp", &new_rows).await?;
    let caught = Instant::now();
    for &last in &last_rows {
        wait_row(b, "oltp", last).await?;
    }
    let first_beat = load.heartbeat_base() + 1;
    let last_beat = load.heartbeat_base() + beats;
    if beats > 0 {
        wait_row(b, "heartbeat", last_beat).await?;
    }
    let catch_up = caught.elapsed();
    expect_count(b, "oltp", &new_rows, txns).await?;
    expect_count(
        b,
        "heartbeat",
        &format!("WHERE id BETWEEN {first_beat} AND {last_beat}"),
        beats,
    )
    .await?;
    let mut lags = b.lags_ms(first_beat, last_beat).await?;
    lags.sort_by(f64::total_cmp);
    Ok(OltpOutcome {
        txns,
        load: elapsed,
        applied_during_load,
        catch_up,
        lag_p50_ms: percentile(&lags, 0.5),
        lag_p99_ms: percentile(&lags, 0.99),
        lag_max_ms: lags.last().copied().unwrap_or(f64::NAN),
    })
}

/// The `q` quantile of sorted values, interpolated between the two nearest
/// as PostgreSQL's `percentile_cont` does; NaN for none.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_percentile_cont() {
        assert!(percentile(&[], 0.5).is_nan());
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(percentile(&[0.0, 10.0], 0.99), 9.9);
    }

    #[test]
    fn runs_write_keys_of_their_own() {
        let load = |run| OltpLoad {
            sessions: MAX_SESSIONS,
            secs: 1,
            rate: None,
            run,
        };
        let (first, second) = (load(0), load(1));
        // The first run's last session stays below the second run's first.
        assert!(first.session_base(MAX_SESSIONS - 1) + ID_RANGE <= second.session_base(0));
        assert!(first.heartbeat_base() + ID_RANGE <= second.heartbeat_base());
        assert!(first.session_base(0) > OLTP_ROWS);
    }
}
