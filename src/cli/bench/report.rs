//! What `duplex bench` prints: each run's rows as it ends, then the medians
//! of the rounds with duplex's ratios to the native replicator.

use super::load::OltpOutcome;
use super::pgbench::PgbenchOutcome;
use super::replicator::Kind;
use super::Measurement;

/// One replicator's run on one pair: a header and a row per workload.
pub fn print_run(round: usize, pair: &str, ms: &[Measurement]) {
    let by = ms.first().map(|m| m.by).unwrap_or("-");
    println!("== round {round}: {by} ({pair})");
    println!(
        "{:<34} {:<9} {:>8} {:>9} {:>10} {:>10} {:>9} {:>9} {:>8}",
        "workload", "by", "rows", "load (s)", "peer (s)", "rows/s", "cpu dup", "cpu srv", "rss MiB"
    );
    for m in ms {
        print_row(m);
    }
}

fn print_row(m: &Measurement) {
    println!(
        "{:<34} {:<9} {:>8} {:>9.2} {:>10.2} {:>10.0} {:>9.2} {:>9.2} {:>8}",
        m.workload,
        m.by,
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
            tps(o),
            o.applied_during_load,
            applied_pct(o),
            o.catch_up.as_secs_f64(),
            o.lag_p50_ms,
            o.lag_p99_ms,
            o.lag_max_ms,
        );
    }
    if let Some(p) = &m.pgbench {
        println!(
            "  pgbench on B: {:.0} tps alone, {:.0} tps during {}'s apply: {:.1}% lost",
            p.alone_tps,
            p.during_tps,
            m.by,
            p.loss_pct(),
        );
    }
}

fn tps(o: &OltpOutcome) -> f64 {
    o.txns as f64 / o.load.as_secs_f64()
}

fn applied_pct(o: &OltpOutcome) -> f64 {
    100.0 * o.applied_during_load as f64 / o.txns.max(1) as f64
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
pub fn print_summary(all: &[(usize, Measurement)], rounds: usize) {
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
    println!("== medians of {rounds} round(s); ratio = duplex / native (postgres or mariadb) within each round, then the median");
    println!(
        "{:<34} {:>11} {:>11} {:>7} {:>12} {:>12} {:>7} {:>8}",
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
        let in_rounds =
            |k: Kind| -> Vec<&Measurement> { (1..=rounds).filter_map(|r| find(r, w, k)).collect() };
        let (duplex, native) = (in_rounds(Kind::Duplex), in_rounds(Kind::Native));
        let med = |ms: &[&Measurement], f: &dyn Fn(&Measurement) -> f64| {
            median(ms.iter().map(|m| f(m)).collect())
        };
        let ratio = |f: &dyn Fn(&Measurement) -> f64| -> f64 {
            median(
                (1..=rounds)
                    .filter_map(|r| {
                        Some(f(find(r, w, Kind::Duplex)?) / f(find(r, w, Kind::Native)?))
                    })
                    .collect(),
            )
        };
        let rss = duplex
            .iter()
            .filter_map(|m| m.rss_mib)
            .fold(f64::NAN, f64::max);
        println!(
            "{:<34} {:>11.0} {:>11.0} {:>7.2} {:>12.1} {:>12.1} {:>7.2} {:>8}",
            w,
            med(&duplex, &Measurement::rows_per_sec),
            med(&native, &Measurement::rows_per_sec),
            ratio(&Measurement::rows_per_sec),
            med(&duplex, &Measurement::cpu_per_million),
            med(&native, &Measurement::cpu_per_million),
            ratio(&Measurement::cpu_per_million),
            if rss.is_nan() {
                "-".into()
            } else {
                format!("{rss:.0}")
            },
        );
        for ms in [&duplex, &native] {
            print_outcomes(ms);
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
    println!(
        "pgbench: tps on B alone and while the replicator applied the stream from A, in the same run;"
    );
    println!("lost = 1 - during / alone within each round, then the median.");
}

/// The cross-engine pairs' figures against duplex's own on the
/// same-engine pairs: each ratio taken within a round, then the median.
pub fn print_cross_engine(all: &[(usize, Measurement)], rounds: usize) {
    let mut workloads: Vec<&str> = Vec::new();
    for (_, m) in all {
        if super::cross::same_engine_name(&m.workload).is_some()
            && !workloads.contains(&m.workload.as_str())
        {
            workloads.push(&m.workload);
        }
    }
    if workloads.is_empty() {
        return;
    }
    let duplex_in = |round: usize, w: &str| {
        all.iter()
            .find(|(r, m)| *r == round && m.workload == w && m.replicator == Kind::Duplex)
            .map(|(_, m)| m)
    };
    println!();
    println!("== cross-engine pairs against duplex on the same-engine pairs (rows/s ratio within each round, then the median)");
    println!(
        "{:<34} {:>11} {:>11} {:>11} {:>9} {:>9}",
        "workload", "r/s", "pg pair", "maria pair", "/ pg", "/ maria"
    );
    for w in workloads {
        let Some(same) = super::cross::same_engine_name(w) else {
            continue;
        };
        let maria = format!("{}{same}", super::mariadb::LABEL);
        let rate = |name: &str| {
            median(
                (1..=rounds)
                    .filter_map(|r| duplex_in(r, name).map(Measurement::rows_per_sec))
                    .collect(),
            )
        };
        let ratio = |name: &str| {
            median(
                (1..=rounds)
                    .filter_map(|r| {
                        Some(duplex_in(r, w)?.rows_per_sec() / duplex_in(r, name)?.rows_per_sec())
                    })
                    .collect(),
            )
        };
        println!(
            "{:<34} {:>11.0} {:>11.0} {:>11.0} {:>9.2} {:>9.2}",
            w,
            rate(w),
            rate(same),
            rate(&maria),
            ratio(same),
            ratio(&maria),
        );
    }
    println!("\nThe OLTP rows/s follow the load's rate, which is its source engine's: compare the");
    println!(
        "share applied during the load and the lag (above) instead. The PostgreSQL pair's backlog"
    );
    println!("goes into a table that already holds the earlier workloads' rows; the others' into an empty one.");
}

/// One replicator's OLTP and pgbench figures of a workload, medians over
/// the rounds.
fn print_outcomes(ms: &[&Measurement]) {
    let Some(by) = ms.first().map(|m| m.by) else {
        return;
    };
    let oltp: Vec<&OltpOutcome> = ms.iter().filter_map(|m| m.oltp.as_ref()).collect();
    if !oltp.is_empty() {
        let pick = |f: &dyn Fn(&OltpOutcome) -> f64| median(oltp.iter().map(|o| f(o)).collect());
        println!(
            "  {by:<9} load {:.0} tps, applied during the load {:.0}%, caught up {:.2} s after, heartbeat lag p50 {:.1} ms, p99 {:.1} ms",
            pick(&tps),
            pick(&applied_pct),
            pick(&|o| o.catch_up.as_secs_f64()),
            pick(&|o| o.lag_p50_ms),
            pick(&|o| o.lag_p99_ms),
        );
    }
    let pgbench: Vec<&PgbenchOutcome> = ms.iter().filter_map(|m| m.pgbench.as_ref()).collect();
    if !pgbench.is_empty() {
        let pick =
            |f: &dyn Fn(&PgbenchOutcome) -> f64| median(pgbench.iter().map(|p| f(p)).collect());
        println!(
            "  {by:<9} pgbench on B {:.0} tps alone, {:.0} tps during the apply: {:.1}% lost",
            pick(&|p| p.alone_tps),
            pick(&|p| p.during_tps),
            pick(&PgbenchOutcome::loss_pct),
        );
    }
}
