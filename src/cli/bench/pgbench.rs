//! The application beside the applier: pgbench on site B of the PostgreSQL
//! pair, alone and while the replicator applies a steady stream of changes
//! from A to B, in the same run on the same cluster (issue 14 asks that
//! the application keep its speed: at most 10% of its tps lost to duplex's
//! apply). The stream is the OLTP load's transaction at a fixed rate, so
//! every replicator is given the same work whatever its speed.

use std::time::Duration;

use anyhow::{bail, Context};

use duplex::localdb::pg::LocalPostgres;

use super::db::{Db, SiteAddr};
use super::load::{self, OltpLoad};
use super::replicator::{Native, Replicator};
use super::{Measurement, Meter};

/// pgbench's built-in scripts the bench offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PgbenchScript {
    /// The default TPC-B-like transaction (three UPDATEs, a SELECT, an INSERT).
    TpcbLike,
    /// TPC-B-like without the UPDATEs of tellers and branches.
    SimpleUpdate,
    /// One SELECT by key.
    SelectOnly,
}

impl PgbenchScript {
    fn builtin(self) -> &'static str {
        match self {
            PgbenchScript::TpcbLike => "tpcb-like",
            PgbenchScript::SimpleUpdate => "simple-update",
            PgbenchScript::SelectOnly => "select-only",
        }
    }
}

/// What the pgbench workload runs.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchOptions {
    /// Seconds of each pgbench run (0: no pgbench workload).
    pub secs: u64,
    pub clients: usize,
    pub script: PgbenchScript,
    /// Transactions a second of the stream from A to B during the second run.
    pub stream_tps: u32,
}

/// pgbench's throughput on B, alone and while the replicator applied.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchOutcome {
    pub alone_tps: f64,
    pub during_tps: f64,
}

impl PgbenchOutcome {
    /// The share of its tps the application lost to the apply, in percent.
    pub fn loss_pct(&self) -> f64 {
        100.0 * (1.0 - self.during_tps / self.alone_tps)
    }
}

/// The stream starts this long before pgbench and ends this long after it,
/// so pgbench's whole run meets a replicator already applying.
const RAMP: Duration = Duration::from_secs(1);

/// The OLTP load's second run on the pair's sites (the first is the OLTP
/// workload): its rows and heartbeats have keys of their own.
const STREAM_RUN: i64 = 1;

fn command(pg: &LocalPostgres, args: &[String]) -> tokio::process::Command {
    // The pgbench of the server's own version (the one on the PATH may be
    // a wrapper that picks another); the database named by a conninfo,
    // which libpq expands.
    let mut c = tokio::process::Command::new(pg.bindir().join("pgbench"));
    c.args(args).arg(pg.conninfo("app")).kill_on_drop(true);
    if let Some(p) = pg.password() {
        c.env("PGPASSWORD", p);
    }
    c
}

/// Run pgbench to the end; its output.
async fn pgbench(pg: &LocalPostgres, args: &[String]) -> anyhow::Result<String> {
    let out = command(pg, args)
        .output()
        .await
        .with_context(|| format!("run {}", pg.bindir().join("pgbench").display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "pgbench {} failed ({}):\n{text}",
            args.join(" "),
            out.status
        );
    }
    Ok(text)
}

/// pgbench's tables on B, at a scale of one branch per client, so that
/// TPC-B's clients do not all queue on one branch row.
async fn init(b: &LocalPostgres, clients: usize) -> anyhow::Result<()> {
    pgbench(
        b,
        &[
            "-i".into(),
            "-q".into(),
            "-s".into(),
            clients.max(1).to_string(),
        ],
    )
    .await
    .context("pgbench -i on B")?;
    Ok(())
}

/// One pgbench run on B; its tps (without the connections' setup).
async fn tps(b: &LocalPostgres, opts: PgbenchOptions) -> anyhow::Result<f64> {
    let args: Vec<String> = [
        "-n",
        "-b",
        opts.script.builtin(),
        "-c",
        &opts.clients.max(1).to_string(),
        "-T",
        &opts.secs.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = pgbench(b, &args).await?;
    parse_tps(&out).with_context(|| format!("no tps in pgbench's output:\n{out}"))
}

/// pgbench's `tps = 1234.5 (without initial connection time)`.
fn parse_tps(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// pgbench on B alone and during the apply of the stream, in an order that
/// alternates from round to round (whatever drifts within a run, such as
/// caches and the fresh tables' autovacuum, favours neither). Measured: the
/// stream from its start until its last row is on B, its heartbeat lag,
/// and pgbench's tps both times.
pub async fn step<N: Native>(
    meter: &Meter,
    rep: &mut Replicator<N>,
    b_pg: &LocalPostgres,
    a: &SiteAddr,
    b: &mut Db,
    opts: PgbenchOptions,
    round: usize,
) -> anyhow::Result<Measurement> {
    init(b_pg, opts.clients).await?;
    let alone_first = round % 2 == 1;
    let mut alone = None;
    if alone_first {
        alone = Some(tps(b_pg, opts).await?);
    }
    let started = meter.start(rep);
    let stream = OltpLoad {
        sessions: 1,
        secs: opts.secs + 2 * RAMP.as_secs(),
        rate: Some(opts.stream_tps),
        run: STREAM_RUN,
    };
    let (o, during_tps) = tokio::try_join!(load::oltp(a, b, stream), async {
        tokio::time::sleep(RAMP).await;
        tps(b_pg, opts).await
    })?;
    let mut m = meter.finish(
        rep,
        started,
        format!(
            "pgbench {} x{} on B {} s",
            opts.script.builtin(),
            opts.clients,
            opts.secs
        ),
        o.txns * 2,
        o.load,
    );
    let alone_tps = match alone {
        Some(t) => t,
        None => tps(b_pg, opts).await?,
    };
    m.oltp = Some(o);
    m.pgbench = Some(PgbenchOutcome {
        alone_tps,
        during_tps,
    });
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tps_line() {
        let out = "number of failed transactions: 0 (0.000%)\n\
                   latency average = 1.621 ms\n\
                   initial connection time = 5.349 ms\n\
                   tps = 2467.532171 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(2467.532171));
        assert_eq!(parse_tps("pgbench: error"), None);
    }
}
