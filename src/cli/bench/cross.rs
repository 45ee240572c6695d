//! The cross-engine pairs: duplex alone from a PostgreSQL site to a MariaDB
//! site and back the other way, under the OLTP load and with the backlog.
//! No native replicator spans the two engines; the summary sets each
//! figure against duplex's own on the same-engine pairs of the same round
//! (`report::print_cross_engine`). The servers are the same-engine pairs'
//! (`cluster`, `mariadb::server`), and the control schema is in the
//! PostgreSQL site's cluster, as the PostgreSQL pair keeps it.

use anyhow::Context;

use super::db::SiteAddr;
use super::replicator::{Kind, PgNative, Replicator};
use super::{load, mariadb, meter, BenchSizes, Measurement, Meter};

/// The engine of a cross-engine pair's site A (the load's site).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MariaDb,
}

/// The pair's workloads' names start with it.
pub fn label(from: Engine) -> &'static str {
    match from {
        Engine::Postgres => "pg->mariadb ",
        Engine::MariaDb => "mariadb->pg ",
    }
}

/// The pair's name in the run's header.
pub fn pair_name(from: Engine) -> String {
    match from {
        Engine::Postgres => "PostgreSQL -> MariaDB pair".into(),
        Engine::MariaDb => "MariaDB -> PostgreSQL pair".into(),
    }
}

/// A cross-engine workload's name without its pair's label: the
/// PostgreSQL pair's name of the same workload (the MariaDB pair's has
/// [`mariadb::LABEL`] before it).
pub fn same_engine_name(workload: &str) -> Option<&str> {
    [Engine::Postgres, Engine::MariaDb]
        .into_iter()
        .find_map(|e| workload.strip_prefix(label(e)))
}

/// One cross-engine pair's workloads through duplex, on fresh servers.
pub async fn run_one(
    from: Engine,
    sizes: &BenchSizes,
    round: usize,
) -> anyhow::Result<Vec<Measurement>> {
    let pg = super::cluster().await?;
    let my = mariadb::server().await?;
    let pg_is_b = from == Engine::MariaDb;
    pg.create_database("app").context("create database")?;
    pg.psql("app", &load::pg_schema(pg_is_b))
        .context("create tables")?;
    my.create_database("app").context("create database")?;
    my.sql(Some("app"), &load::mariadb_schema(!pg_is_b))
        .context("create tables")?;
    let pg_pid = meter::postmaster_pid(pg.data_dir()).context("the postmaster's pid")?;
    let my_pid = my.pid().context("mariadbd's pid")?;
    let (pg_site, my_site) = (pg.conninfo("app"), my.url("app"));
    let (sites, engines, servers, a_addr, b_addr) = match from {
        Engine::Postgres => (
            [pg_site.clone(), my_site.clone()],
            ["postgresql", "mysql"],
            [pg_pid, my_pid],
            SiteAddr::Pg(pg_site),
            SiteAddr::My(my_site),
        ),
        Engine::MariaDb => (
            [my_site.clone(), pg_site.clone()],
            ["mysql", "postgresql"],
            [my_pid, pg_pid],
            SiteAddr::My(my_site),
            SiteAddr::Pg(pg_site),
        ),
    };
    let (mut a, mut b) = (a_addr.connect().await?, b_addr.connect().await?);
    let meter = Meter { servers };
    let mut rep: Replicator<PgNative> = Replicator::duplex(
        pg.conninfo("postgres"),
        engines,
        sites,
        round,
        sizes.apply_workers,
    )
    .await?;
    debug_assert_eq!(rep.kind(), Kind::Duplex);
    super::start_streaming(&mut rep, &mut a, &mut b).await?;
    let label = label(from);
    let mut out = Vec::new();
    if sizes.oltp_secs > 0 {
        out.push(super::oltp_step(&meter, &mut rep, &a_addr, &mut b, sizes, label).await?);
    }
    if sizes.backlog_rows > 0 {
        out.push(
            super::backlog_step(
                &meter,
                &mut rep,
                &mut a,
                &mut b,
                0,
                sizes.backlog_rows,
                label,
            )
            .await?,
        );
    }
    // Every row arrived, once.
    load::expect_count(&mut b, "bench", "", sizes.backlog_rows.max(0)).await?;
    rep.stop().await?;
    Ok(out)
}
