//! `duplex bench`: duplex against each engine's own replication on the
//! same machine, the same workloads, in interleaved rounds; prints each
//! round and then the medians with duplex's ratio to the native figure.
//! Two pairs: PostgreSQL (against logical replication: large and small
//! transactions, OLTP, pgbench on B during the apply, a backlog, the
//! initial sync and the parity check) and MariaDB (against its replica:
//! OLTP and a backlog, in [`mariadb`]).
//!
//! Each replicator's run gets two fresh servers (durable commits), so
//! neither inherits the other's WAL, binlog, slots or cache. Each workload
//! is measured from the first user commit until the last row is visible on
//! the peer (waited for by key, then the counts checked), so a replicator
//! that applies while the load is still running gets credit for it;
//! alongside, the CPU seconds of the replicator's own process and of both
//! servers (the servers' figure includes the load's own sessions, the same
//! for both replicators) and duplex's peak resident memory. Run it in
//! release mode (`scripts/bench.sh`); debug builds measure the compiler,
//! not duplex.

mod cross;
mod db;
mod load;
mod mariadb;
mod meter;
mod pgbench;
mod replicator;
mod report;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_postgres::Client;

use duplex::localdb::pg::{LocalPgOptions, LocalPostgres};
use duplex::pg::PgEndpoint;

use db::{Db, SiteAddr};
use meter::CpuReading;
pub use pgbench::{PgbenchOptions, PgbenchScript};
use replicator::{Kind, Native, PgNative, Replicator};

/// Sizes of the workloads, and which of them run.
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
    /// Whether the MariaDB pair runs too (its OLTP load and backlog).
    pub mariadb: bool,
    /// Whether the cross-engine pairs run too (duplex only: see `cross`).
    pub cross_engine: bool,
    /// pgbench on the PostgreSQL pair's B (`secs` 0: none).
    pub pgbench: PgbenchOptions,
    /// duplex's apply workers per direction (`links.apply_workers`).
    pub apply_workers: u32,
}

/// One workload through one replicator.
struct Measurement {
    workload: String,
    replicator: Kind,
    /// The replicator's name in the tables.
    by: &'static str,
    rows: i64,
    load_secs: f64,
    total_secs: f64,
    cpu: CpuReading,
    /// duplex's peak resident memory during the workload.
    rss_mib: Option<f64>,
    oltp: Option<load::OltpOutcome>,
    pgbench: Option<pgbench::PgbenchOutcome>,
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

/// When and at what CPU readings a workload started.
struct Started {
    at: Instant,
    cpu: CpuReading,
}

impl Meter {
    fn read<N: Native>(&self, r: &Replicator<N>) -> CpuReading {
        CpuReading {
            replicator: r.pid().map(meter::process_cpu).unwrap_or(0.0),
            servers: self.servers.iter().map(|&p| meter::server_cpu(p)).sum(),
        }
    }

    /// Start measuring a workload.
    fn start<N: Native>(&self, r: &Replicator<N>) -> Started {
        if let Some(pid) = r.pid() {
            meter::reset_peak_rss(pid);
        }
        Started {
            at: Instant::now(),
            cpu: self.read(r),
        }
    }

    fn finish<N: Native>(
        &self,
        r: &Replicator<N>,
        started: Started,
        workload: String,
        rows: i64,
        load: Duration,
    ) -> Measurement {
        Measurement {
            workload,
            replicator: r.kind(),
            by: r.name(),
            rows,
            load_secs: load.as_secs_f64(),
            total_secs: started.at.elapsed().as_secs_f64(),
            cpu: self.read(r).since(started.cpu),
            rss_mib: r.pid().and_then(meter::peak_rss_mib),
            oltp: None,
            pgbench: None,
        }
    }
}

/// Start the replicator and wait until a heartbeat written on A arrives on
/// B: it streams. A new probe goes out every 200 ms until one arrives: a
/// replicator starts reading where A is when it has set itself up, so a
/// probe written before then never arrives.
async fn start_streaming<N: Native>(
    rep: &mut Replicator<N>,
    a: &mut Db,
    b: &mut Db,
) -> anyhow::Result<()> {
    rep.start().await?;
    // Probes count down from -1, below every load's heartbeats.
    let mut probe = 0;
    let mut sent = Instant::now();
    let deadline = sent + Duration::from_secs(120);
    loop {
        if probe == 0 || sent.elapsed() > Duration::from_millis(200) {
            probe -= 1;
            a.heartbeat(probe).await?;
            sent = Instant::now();
        }
        // Any probe: the one that arrives may be older than the last sent.
        if b.any("heartbeat", "WHERE id < 0").await? {
            return Ok(());
        }
        rep.check_alive()
            .with_context(|| format!("{} before it streamed", rep.name()))?;
        if Instant::now() > deadline {
            bail!("{} did not stream within 2 minutes", rep.name());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The OLTP load with its heartbeat (`label`: the pair's prefix of the
/// workload's name).
async fn oltp_step<N: Native>(
    meter: &Meter,
    rep: &mut Replicator<N>,
    a: &SiteAddr,
    b: &mut Db,
    sizes: &BenchSizes,
    label: &str,
) -> anyhow::Result<Measurement> {
    let started = meter.start(rep);
    let o = load::oltp(
        a,
        b,
        load::OltpLoad {
            sessions: sizes.oltp_threads,
            secs: sizes.oltp_secs,
            rate: None,
            run: 0,
        },
    )
    .await?;
    let mut m = meter.finish(
        rep,
        started,
        format!(
            "{label}oltp {} sessions {} s",
            sizes.oltp_threads, sizes.oltp_secs
        ),
        o.txns * 2,
        o.load,
    );
    m.oltp = Some(o);
    Ok(m)
}

/// The backlog: `rows` rows into `bench` after id `after`, written while
/// the replicator is stopped, timed from its start until the last row is
/// on B.
async fn backlog_step<N: Native>(
    meter: &Meter,
    rep: &mut Replicator<N>,
    a: &mut Db,
    b: &mut Db,
    after: i64,
    rows: i64,
    label: &str,
) -> anyhow::Result<Measurement> {
    rep.stop().await?;
    let written = Instant::now();
    load::backlog(a, after, rows).await?;
    let loaded = written.elapsed();
    let start = Instant::now();
    rep.start().await?;
    // Timed from the replicator's start; the meter starts once duplex's
    // process exists, to read its CPU and memory.
    let started = Started {
        at: start,
        ..meter.start(rep)
    };
    load::wait_row(b, "bench", after + rows).await?;
    Ok(meter.finish(
        rep,
        started,
        format!("{label}backlog {rows} rows"),
        rows,
        loaded,
    ))
}

/// The OLTP load and the backlog on a running pair (the MariaDB and the
/// cross-engine pairs' workloads; `label`: the pair's prefix of the
/// workloads' names), then the check that every row arrived once, and the
/// replicator stopped.
async fn oltp_and_backlog<N: Native>(
    meter: &Meter,
    rep: &mut Replicator<N>,
    a_addr: &SiteAddr,
    a: &mut Db,
    b: &mut Db,
    sizes: &BenchSizes,
    label: &str,
) -> anyhow::Result<Vec<Measurement>> {
    start_streaming(rep, a, b).await?;
    let mut out = Vec::new();
    if sizes.oltp_secs > 0 {
        out.push(oltp_step(meter, rep, a_addr, b, sizes, label).await?);
    }
    if sizes.backlog_rows > 0 {
        out.push(backlog_step(meter, rep, a, b, 0, sizes.backlog_rows, label).await?);
    }
    load::expect_count(b, "bench", "", sizes.backlog_rows.max(0)).await?;
    rep.stop().await?;
    Ok(out)
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

/// The PostgreSQL pair's workloads through one replicator, on two fresh
/// clusters.
async fn run_pg(kind: Kind, sizes: &BenchSizes, round: usize) -> anyhow::Result<Vec<Measurement>> {
    let (a_pg, b_pg) = (cluster().await?, cluster().await?);
    for (pg, is_b) in [(&a_pg, false), (&b_pg, true)] {
        pg.create_database("app").context("create database")?;
        pg.psql("app", &load::pg_schema(is_b))
            .context("create tables")?;
    }
    let a_addr = SiteAddr::Pg(a_pg.conninfo("app"));
    let (mut a, mut b) = (
        a_addr.connect().await?,
        SiteAddr::Pg(b_pg.conninfo("app")).connect().await?,
    );
    // Rows that exist before their table joins: the initial sync's workload.
    a.exec(&format!(
        "INSERT INTO seed SELECT g, md5(g::text), now() FROM generate_series(1, {}) g",
        sizes.bulk_rows
    ))
    .await?;
    let servers = [
        meter::postmaster_pid(a_pg.data_dir()).context("site A's postmaster pid")?,
        meter::postmaster_pid(b_pg.data_dir()).context("site B's postmaster pid")?,
    ];
    let meter = Meter { servers };
    let mut rep = match kind {
        Kind::Duplex => {
            let sites = [a_pg.conninfo("app"), b_pg.conninfo("app")];
            Replicator::duplex(
                a_pg.conninfo("postgres"),
                ["postgresql", "postgresql"],
                sites,
                round,
                sizes.apply_workers,
            )
            .await?
        }
        Kind::Native => Replicator::Native(
            PgNative::configure(
                client(&a_pg, "app").await?,
                client(&b_pg, "app").await?,
                a_pg.conninfo("app"),
            )
            .await?,
        ),
    };
    start_streaming(&mut rep, &mut a, &mut b).await?;
    let mut out = Vec::new();

    // One large transaction.
    let m = meter.start(&rep);
    a.bulk(0, sizes.bulk_rows).await?;
    let loaded = m.at.elapsed();
    load::wait_row(&mut b, "bench", sizes.bulk_rows).await?;
    out.push(meter.finish(
        &rep,
        m,
        format!("1 txn x {} rows", sizes.bulk_rows),
        sizes.bulk_rows,
        loaded,
    ));

    // Many one-row transactions.
    let m = meter.start(&rep);
    load::small(a.pg()?, sizes.bulk_rows, sizes.small_txns).await?;
    let loaded = m.at.elapsed();
    load::wait_row(&mut b, "bench", sizes.bulk_rows + sizes.small_txns).await?;
    out.push(meter.finish(
        &rep,
        m,
        format!("{} txns x 1 row", sizes.small_txns),
        sizes.small_txns,
        loaded,
    ));

    if sizes.oltp_secs > 0 {
        out.push(oltp_step(&meter, &mut rep, &a_addr, &mut b, sizes, "").await?);
    }
    if sizes.pgbench.secs > 0 {
        out.push(
            pgbench::step(
                &meter,
                &mut rep,
                &b_pg,
                &a_addr,
                &mut b,
                sizes.pgbench,
                round,
            )
            .await?,
        );
    }
    let after = sizes.bulk_rows + sizes.small_txns;
    if sizes.backlog_rows > 0 {
        out.push(
            backlog_step(
                &meter,
                &mut rep,
                &mut a,
                &mut b,
                after,
                sizes.backlog_rows,
                "",
            )
            .await?,
        );
    }

    // Initial sync: the seeded table joins the running link.
    let m = meter.start(&rep);
    rep.add_table("seed").await?;
    load::wait_row(&mut b, "seed", sizes.bulk_rows).await?;
    out.push(meter.finish(
        &rep,
        m,
        format!("initial sync {} rows", sizes.bulk_rows),
        sizes.bulk_rows,
        Duration::ZERO,
    ));

    // duplex's parity check of it (both sites read in full).
    if kind == Kind::Duplex {
        out.extend(check_seed(&a_pg, sizes.bulk_rows).await?);
    }
    // Every row arrived, once.
    load::expect_count(&mut b, "bench", "", after + sizes.backlog_rows.max(0)).await?;
    load::expect_count(&mut b, "seed", "", sizes.bulk_rows).await?;
    rep.stop().await?;
    Ok(out)
}

/// `duplex check` of the seeded table after its initial sync, timed.
async fn check_seed(a_pg: &LocalPostgres, rows: i64) -> anyhow::Result<Option<Measurement>> {
    let control = client(a_pg, "postgres").await?;
    let mut db = duplex::control::ControlDb::Pg(control);
    let config = duplex::control::load_unchecked(&mut db).await?;
    let Some(Ok(lc)) = config.link_config(1) else {
        return Ok(None);
    };
    let Some(t) = lc.tables.iter().find(|t| t.table.name == "seed") else {
        return Ok(None);
    };
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
    Ok(Some(Measurement {
        workload: format!("check {rows} rows"),
        replicator: Kind::Duplex,
        by: "duplex",
        rows,
        load_secs: 0.0,
        total_secs: report.elapsed.as_secs_f64(),
        cpu: CpuReading::default(),
        rss_mib: None,
        oltp: None,
        pgbench: None,
    }))
}

pub async fn run(sizes: BenchSizes) -> anyhow::Result<()> {
    let rounds = sizes.rounds.max(1);
    let mut all: Vec<(usize, Measurement)> = Vec::new();
    for round in 1..=rounds {
        // Interleaved: each round starts with the replicator the last ended with.
        let order = if round % 2 == 1 {
            [Kind::Duplex, Kind::Native]
        } else {
            [Kind::Native, Kind::Duplex]
        };
        for kind in order {
            let ms = run_pg(kind, &sizes, round)
                .await
                .with_context(|| format!("round {round}, PostgreSQL pair"))?;
            report::print_run(round, "PostgreSQL pair", &ms);
            all.extend(ms.into_iter().map(|m| (round, m)));
        }
        if sizes.mariadb {
            for kind in order {
                let ms = mariadb::run_one(kind, &sizes, round)
                    .await
                    .with_context(|| format!("round {round}, MariaDB pair"))?;
                report::print_run(round, "MariaDB pair", &ms);
                all.extend(ms.into_iter().map(|m| (round, m)));
            }
        }
        if sizes.cross_engine {
            for from in [cross::Engine::Postgres, cross::Engine::MariaDb] {
                let pair = cross::pair_name(from);
                let ms = cross::run_one(from, &sizes, round)
                    .await
                    .with_context(|| format!("round {round}, {pair}"))?;
                report::print_run(round, pair, &ms);
                all.extend(ms.into_iter().map(|m| (round, m)));
            }
        }
    }
    report::print_summary(&all, rounds);
    if sizes.cross_engine {
        report::print_cross_engine(&all, rounds);
    }
    Ok(())
}
