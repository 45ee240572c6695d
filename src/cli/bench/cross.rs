//! The cross-engine pairs: duplex alone from a PostgreSQL site to a MariaDB
//! site and back the other way, under the OLTP load and with the backlog.
//! No native replicator spans the two engines; the summary sets each
//! figure against duplex's own on the same-engine pairs of the same round
//! (`report::print_cross_engine`). The servers are the same-engine pairs'
//! (`cluster`, `mariadb::server`), and the control schema is in the
//! PostgreSQL site's cluster, as the PostgreSQL pair keeps it.

use anyhow::Context;

use super::db::SiteAddr;
use super::replicator::{PgNative, Replicator};
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
pub fn pair_name(from: Engine) -> &'static str {
    match from {
        Engine::Postgres => "PostgreSQL -> MariaDB pair",
        Engine::MariaDb => "MariaDB -> PostgreSQL pair",
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

/// One site of a pair, as the bench and duplex's configuration need it.
struct Site {
    conninfo: String,
    /// As `duplex.sites.engine` spells it.
    engine: &'static str,
    /// Its server's process, for the CPU reading.
    pid: u32,
    addr: SiteAddr,
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
    let pg_site = Site {
        conninfo: pg.conninfo("app"),
        engine: "postgresql",
        pid: meter::postmaster_pid(pg.data_dir()).context("the postmaster's pid")?,
        addr: SiteAddr::Pg(pg.conninfo("app")),
    };
    let my_site = Site {
        conninfo: my.url("app"),
        engine: "mysql",
        pid: my.pid().context("mariadbd's pid")?,
        addr: SiteAddr::My(my.url("app")),
    };
    let (a_site, b_site) = if pg_is_b {
        (my_site, pg_site)
    } else {
        (pg_site, my_site)
    };
    let (mut a, mut b) = (a_site.addr.connect().await?, b_site.addr.connect().await?);
    let meter = Meter {
        servers: [a_site.pid, b_site.pid],
    };
    let mut rep: Replicator<PgNative> = Replicator::duplex(
        pg.conninfo("postgres"),
        [a_site.engine, b_site.engine],
        [a_site.conninfo, b_site.conninfo],
        round,
        sizes.apply_workers,
    )
    .await?;
    super::oltp_and_backlog(
        &meter,
        &mut rep,
        &a_site.addr,
        &mut a,
        &mut b,
        sizes,
        label(from),
    )
    .await
}
