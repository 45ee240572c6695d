//! `duplex bench`: duplex against PostgreSQL's own logical replication on
//! the same machine, the same workloads, in interleaved rounds; prints each
//! round and then the medians with duplex's ratio to the native figure.
//!
//! Each replicator's run gets two fresh clusters (durable commits), so
//! neither inherits the other's WAL, slots or cache. Each workload is
//! measured from the first user commit until the last row is visible on
//! the peer, so a replicator that applies while the load is still running
//! gets credit for it; alongside, the CPU seconds of the replicator's own
//! process and of both servers (the servers' figure includes the load's
//! own backends, the same for both replicators) and duplex's peak resident
//! memory. Run it in release mode (`scripts/bench.sh`); debug builds
//! measure the compiler, not duplex.

mod load;
mod meter;
mod replicator;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_postgres::Client;

use duplex::localdb::pg::{LocalPgOptions, LocalPostgres};
use duplex::pg::PgEndpoint;

use meter::CpuReading;
use replicator::{Kind, Replicator};

/// Sizes of the workloads.
#[derive(Debug, Clone, Copy)]
pub struct BenchSizes {
    /// Rows in the single large transaction.
    pub bulk_rows: i64,
    /// Number of one-row transactions.
    pub small_txns: i64,
    /// Rows of the backlog, in 1,000-row transactions (0: no backlog run).
    pub backlog_rows: i64,
    /// Seconds of the OLTP load (0: none).
    pub oltp_secs: u64,
    /// Sessions of the OLTP load.
    pub oltp_threads: usize,
    /// Rounds, each running every workload through both replicators.
    pub rounds: usize,
}

/// One workload through one replicator.
struct Measurement {
    workload: String,
    replicator: Kind,
    rows: i64,
    load_secs: f64,
    total_secs: f64,
    cpu: CpuReading,
    /// duplex's peak resident memory during the workload.
    rss_mib: Option<f64>,
    oltp: Option<load::OltpOutcome>,
}

impl Measurement {
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.total_secs
    }

    /// CPU seconds (replicator and both servers) per million rows.
    fn cpu_per_million(&self) -> f64 {
        (self.cpu.replicator + self.cpu.servers) / self.rows.max(1) as f64 * 1e6
    }
}

async fn client(pg: &LocalPostgres, db: &str) -> anyhow::Result<Client> {
    Ok(PgEndpoint::from_url(db, &pg.conninfo(db))?
        .connect("duplex bench")
        .await?)
}

/// The processes a run's workloads cost: the replicator's own (duplex) and
/// both servers'.
struct Meter {
    servers: [u32; 2],
}

impl Meter {
    fn read(&self, r: &Replicator) -> CpuReading {
        CpuReading {
            replicator: r.pid().map(meter::process_cpu).unwrap_or(0.0),
            servers: self.servers.iter().map(|&p| meter::server_cpu(p)).sum(),
        }
    }

    /// Start measuring a workload.
    fn start(&self, r: &Replicator) -> (Instant, CpuReading) {
        if let Some(pid) = r.pid() {
            meter::reset_peak_rss(pid);
        }
        (Instant::now(), self.read(r))
    }

    fn finish(
        &self,
        r: &Replicator,
        started: (Instant, CpuReading),
        workload: String,
        rows: i64,
        load: Duration,
    ) -> Measurement {
        Measurement {
            workload,
            replicator: r.kind,
            rows,
            load_secs: load.as_secs_f64(),
            total_secs: started.0.elapsed().as_secs_f64(),
            cpu: self.read(r).since(started.1),
            rss_mib: r.pid().and_then(meter::peak_rss_mib),
            oltp: None,
        }
    }
}

/// Start a throwaway cluster as both runs' sites are: durable commits, and
/// a warm launcher (PostgreSQL's logical replication launcher otherwise
/// waits up to `wal_retrieve_retry_interval`, 5 s, before it starts the
/// workers of a new subscription, and the native initial sync would be
/// timed with that wait).
async fn cluster() -> anyhow::Result<LocalPostgres> {
    let opts = LocalPgOptions {
        extra_conf: vec![
            // A synchronous_commit=off source only flushes WAL (and so only
            // sends it to any replicator) every 200 ms.
            ("synchronous_commit".into(), "on".into()),
            ("wal_retrieve_retry_interval".into(), "50ms".into()),
        ],
        ..LocalPgOptions::default()
    };
    Ok(tokio::task::spawn_blocking(move || LocalPostgres::start(opts)).await??)
}

/// Every workload through one replicator, on two fresh clusters.
async fn run_one(kind: Kind, sizes: BenchSizes, round: usize) -> anyhow::Result<Vec<Measurement>> {
    let (a_pg, b_pg) = (cluster().await?, cluster().await?);
    for (pg, is_b) in [(&a_pg, false), (&b_pg, true)] {
        pg.create_database("app").context("create database")?;
        pg.psql("app", &load::schema(is_b))
            .context("create tables")?;
    }
    let (a, b) = (client(&a_pg, "app").await?, client(&b_pg, "app").await?);
    // Rows that exist before their table joins: the initial sync's workload.
    a.batch_execute(&format!(
        "INSERT INTO seed SELECT g, md5(g::text), now() FROM generate_series(1, {}) g",
        sizes.bulk_rows
    ))
    .await?;
    let servers = [
        meter::postmaster_pid(a_pg.data_dir()).context("site A's postmaster pid")?,
        meter::postmaster_pid(b_pg.data_dir()).context("site B's postmaster pid")?,
    ];
    let meter = Meter { servers };
    let log = std::env::temp_dir().join(format!("duplex-bench-round{round}.log"));
    let mut rep = Replicator::configure(kind, &a_pg, &b_pg, &a, log).await?;
    rep.start(&b).await?;
    rep.wait_streaming(&a, &b, -1).await?;
    let mut out = Vec::new();

    // One large transaction.
    let m = meter.start(&rep);
    load::bulk(&a, 0, sizes.bulk_rows).await?;
    let loaded = m.0.elapsed();
    load::wait_row(&b, "bench", sizes.bulk_rows).await?;
    out.push(meter.finish(
        &rep,
        m,
        format!("1 txn x {} rows", sizes.bulk_rows),
        sizes.bulk_rows,
        loaded,
    ));

    // Many one-row transactions.
    let m = meter.start(&rep);
    load::small(&a, sizes.bulk_rows, sizes.small_txns).await?;
    let loaded = m.0.elapsed();
    load::wait_row(&b, "bench", sizes.bulk_rows + sizes.small_txns).await?;
    out.push(meter.finish(
        &rep,
        m,
        format!("{} txns x 1 row", sizes.small_txns),
        sizes.small_txns,
        loaded,
    ));

    // The OLTP load with its heartbeat.
    if sizes.oltp_secs > 0 {
        let m = meter.start(&rep);
        let a_conninfo = a_pg.conninfo("app");
        let connect = move || {
            let conninfo = a_conninfo.clone();
            Box::pin(async move {
                Ok(PgEndpoint::from_url("app", &conninfo)?
                    .connect("duplex bench oltp")
                    .await?)
            }) as futures_util::future::BoxFuture<'static, anyhow::Result<Client>>
        };
        let o = load::oltp(connect, &b, sizes.oltp_threads, sizes.oltp_secs).await?;
        let mut meas = meter.finish(
            &rep,
            m,
            format!("oltp {} sessions {} s", sizes.oltp_threads, sizes.oltp_secs),
            o.txns * 2,
            o.load,
        );
        meas.oltp = Some(o);
        out.push(meas);
    }

    // The backlog: written while the replicator is stopped.
    if sizes.backlog_rows > 0 {
        rep.stop(&b).await?;
        let after = sizes.bulk_rows + sizes.small_txns;
        let written = Instant::now();
        load::backlog(&a, after, sizes.backlog_rows).await?;
        let loaded = written.elapsed();
        // Timed from the replicator's start.
        let start = Instant::now();
        rep.start(&b).await?;
        let m = (start, meter.start(&rep).1);
        load::wait_row(&b, "bench", after + sizes.backlog_rows).await?;
        out.push(meter.finish(
            &rep,
            m,
            format!("backlog {} rows", sizes.backlog_rows),
            sizes.backlog_rows,
            loaded,
        ));
    }

    // Initial sync: the seeded table joins the running link.
    let m = meter.start(&rep);
    rep.add_table(&a, &b, "seed").await?;
    load::wait_row(&b, "seed", sizes.bulk_rows).await?;
    out.push(meter.finish(
        &rep,
        m,
        format!("initial sync {} rows", sizes.bulk_rows),
        sizes.bulk_rows,
        Duration::ZERO,
    ));

    // duplex's parity check of it (both sites read in full).
    if kind == Kind::Duplex {
        let control = client(&a_pg, "postgres").await?;
        let mut db = duplex::control::ControlDb::Pg(control);
        let config = duplex::control::load_unchecked(&mut db).await?;
        if let Some(Ok(lc)) = config.link_config(1) {
            if let Some(t) = lc.tables.iter().find(|t| t.table.name == "seed") {
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
                out.push(Measurement {
                    workload: format!("check {} rows", sizes.bulk_rows),
                    replicator: kind,
                    rows: sizes.bulk_rows,
                    load_secs: 0.0,
                    total_secs: report.elapsed.as_secs_f64(),
                    cpu: CpuReading::default(),
                    rss_mib: None,
                    oltp: None,
                });
            }
        }
    }
    // Every row arrived, once.
    let backlog = sizes.backlog_rows.max(0);
    load::expect_count(
        &b,
        "bench",
        "",
        sizes.bulk_rows + sizes.small_txns + backlog,
    )
    .await?;
    load::expect_count(&b, "seed", "", sizes.bulk_rows).await?;
    rep.stop(&b).await?;
    drop((a, b));
    Ok(out)
}

pub async fn run(sizes: BenchSizes) -> anyhow::Result<()> {
    let mut all: Vec<(usize, Measurement)> = Vec::new();
    for round in 1..=sizes.rounds.max(1) {
        // Interleaved: each round starts with the replicator the last ended with.
        let order = if round % 2 == 1 {
            [Kind::Duplex, Kind::Postgres]
        } else {
            [Kind::Postgres, Kind::Duplex]
        };
        for kind in order {
            println!("== round {round}: {}", kind.name());
            header();
            for m in run_one(kind, sizes, round).await? {
                print_row(&m);
                all.push((round, m));
            }
        }
    }
    print_summary(&all, sizes.rounds.max(1));
    Ok(())
}

fn header() {
    println!(
        "{:<26} {:<9} {:>8} {:>9} {:>10} {:>10} {:>9} {:>9} {:>8}",
        "workload", "by", "rows", "load (s)", "peer (s)", "rows/s", "cpu dup", "cpu srv", "rss MiB"
    );
}

fn print_row(m: &Measurement) {
    println!(
        "{:<26} {:<9} {:>8} {:>9.2} {:>10.2} {:>10.0} {:>9.2} {:>9.2} {:>8}",
        m.workload,
        m.replicator.name(),
        m.rows,
        m.load_secs,
        m.total_secs,
        m.rows_per_sec(),
        m.cpu.replicator,
        m.cpu.servers,
        m.rss_mib
            .map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(o) = &m.oltp {
        println!(
            "  oltp: {} txns ({:.0} tps), {} applied during the load ({:.0}%), caught up {:.2} s after; heartbeat lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            o.txns,
            o.txns as f64 / o.load.as_secs_f64(),
            o.applied_during_load,
            100.0 * o.applied_during_load as f64 / o.txns.max(1) as f64,
            o.catch_up.as_secs_f64(),
            o.lag_p50_ms,
            o.lag_p99_ms,
            o.lag_max_ms,
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians over the rounds, and each figure's ratio duplex / native taken
/// within a round (the machine's speed drifts between rounds) and then the
/// median of those.
fn print_summary(all: &[(usize, Measurement)], rounds: usize) {
    let mut workloads: Vec<&str> = Vec::new();
    for (_, m) in all {
        if !workloads.contains(&m.workload.as_str()) {
            workloads.push(&m.workload);
        }
    }
    let find = |round: usize, w: &str, k: Kind| {
        all.iter()
            .find(|(r, m)| *r == round && m.workload == w && m.replicator == k)
            .map(|(_, m)| m)
    };
    println!();
    println!("== medians of {rounds} round(s); ratio = duplex / postgres within each round, then the median");
    println!(
        "{:<26} {:>11} {:>11} {:>7} {:>12} {:>12} {:>7} {:>8}",
        "workload",
        "duplex r/s",
        "native r/s",
        "ratio",
        "dup cpu/1M",
        "nat cpu/1M",
        "ratio",
        "rss MiB"
    );
    for w in workloads {
        let series = |k: Kind, f: &dyn Fn(&Measurement) -> f64| -> Vec<f64> {
            (1..=rounds).filter_map(|r| find(r, w, k).map(f)).collect()
        };
        let ratio = |f: &dyn Fn(&Measurement) -> f64| -> f64 {
            median(
                (1..=rounds)
                    .filter_map(|r| {
                        Some(f(find(r, w, Kind::Duplex)?) / f(find(r, w, Kind::Postgres)?))
                    })
                    .collect(),
            )
        };
        let rss = all
            .iter()
            .filter(|(_, m)| m.workload == w)
            .filter_map(|(_, m)| m.rss_mib)
            .fold(f64::NAN, f64::max);
        println!(
            "{:<26} {:>11.0} {:>11.0} {:>7.2} {:>12.1} {:>12.1} {:>7.2} {:>8}",
            w,
            median(series(Kind::Duplex, &Measurement::rows_per_sec)),
            median(series(Kind::Postgres, &Measurement::rows_per_sec)),
            ratio(&Measurement::rows_per_sec),
            median(series(Kind::Duplex, &Measurement::cpu_per_million)),
            median(series(Kind::Postgres, &Measurement::cpu_per_million)),
            ratio(&Measurement::cpu_per_million),
            if rss.is_nan() {
                "-".into()
            } else {
                format!("{rss:.0}")
            },
        );
        for k in [Kind::Duplex, Kind::Postgres] {
            let oltp: Vec<&load::OltpOutcome> = (1..=rounds)
                .filter_map(|r| find(r, w, k).and_then(|m| m.oltp.as_ref()))
                .collect();
            if oltp.is_empty() {
                continue;
            }
            let pick =
                |f: &dyn Fn(&load::OltpOutcome) -> f64| median(oltp.iter().map(|o| f(o)).collect());
            println!(
                "  {:<9} load {:.0} tps, applied during the load {:.0}%, caught up {:.2} s after, heartbeat lag p50 {:.1} ms, p99 {:.1} ms",
                k.name(),
                pick(&|o| o.txns as f64 / o.load.as_secs_f64()),
                pick(&|o| 100.0 * o.applied_during_load as f64 / o.txns.max(1) as f64),
                pick(&|o| o.catch_up.as_secs_f64()),
                pick(&|o| o.lag_p50_ms),
                pick(&|o| o.lag_p99_ms),
            );
        }
    }
    println!(
        "\npeer (s): from the start of the load on A until its last row is visible on B (for the"
    );
    println!(
        "backlog, from the replicator's start). cpu: seconds of duplex's process (dup) and of both"
    );
    println!(
        "servers (srv, which includes the load's own sessions, the same for both replicators)."
    );
}
