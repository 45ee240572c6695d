//! The MariaDB pair: duplex against MariaDB's own replication (B a replica
//! of A, by GTID, applying with one SQL thread), on two fresh servers per
//! replicator and round, under the OLTP load and with a backlog. Both
//! servers commit durably (`innodb_flush_log_at_trx_commit=1`,
//! `sync_binlog=1`) and are configured alike whichever replicator runs.

use anyhow::Context;
use mysql_async::prelude::Queryable;

use duplex::localdb::mysql::{LocalMariaDb, LocalMariaDbOptions};

use super::db::{Db, SiteAddr};
use super::load;
use super::replicator::{Kind, Native, Replicator};
use super::{BenchSizes, Measurement, Meter};

/// The workloads' names start with it, apart from the PostgreSQL pair's.
pub(super) const LABEL: &str = "mariadb ";

/// A throwaway server as both runs' sites are.
pub(super) async fn server() -> anyhow::Result<LocalMariaDb> {
    let conf = [
        // Durable commits: each commit is on disk, redo log and binlog.
        ("innodb_flush_log_at_trx_commit", "1"),
        ("sync_binlog", "1"),
        // The native replica applies with one SQL thread, as duplex applies
        // a direction on one connection.
        ("slave_parallel_threads", "0"),
        // B's heartbeat trigger stamps the rows the replica applies too
        // (row events otherwise skip triggers), as it does duplex's.
        ("slave_run_triggers_for_rbr", "YES"),
    ];
    let opts = LocalMariaDbOptions {
        extra_conf: conf
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..LocalMariaDbOptions::default()
    };
    Ok(tokio::task::spawn_blocking(move || LocalMariaDb::start(opts)).await??)
}

/// MariaDB's replication: B replicates A from where A's binlog is when it
/// is configured (the schema and seeded rows are on both sites already).
pub struct MariaNative {
    b: mysql_async::Conn,
}

impl MariaNative {
    async fn configure(a_port: u16, a: &mut Db, b: Db) -> anyhow::Result<MariaNative> {
        let (Db::My(a), Db::My(mut b)) = (a, b) else {
            anyhow::bail!("MariaDB's replication between sites that are not MariaDB");
        };
        let pos: String = a
            .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
            .await?
            .unwrap_or_default();
        b.query_drop(format!(
            "SET GLOBAL gtid_slave_pos = '{pos}';
             CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {a_port},
               MASTER_USER = 'root', MASTER_USE_GTID = slave_pos"
        ))
        .await
        .context("make B a replica of A")?;
        Ok(MariaNative { b })
    }
}

impl Native for MariaNative {
    const NAME: &'static str = "mariadb";

    async fn start(&mut self) -> anyhow::Result<()> {
        self.b.query_drop("START SLAVE").await?;
        Ok(())
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        self.b.query_drop("STOP SLAVE").await?;
        Ok(())
    }
}

/// The MariaDB pair's workloads through one replicator, on two fresh servers.
pub async fn run_one(
    kind: Kind,
    sizes: &BenchSizes,
    round: usize,
) -> anyhow::Result<Vec<Measurement>> {
    let (a_my, b_my) = (server().await?, server().await?);
    for (m, is_b) in [(&a_my, false), (&b_my, true)] {
        m.create_database("app").context("create database")?;
        m.sql(Some("app"), &load::mariadb_schema(is_b))
            .context("create tables")?;
    }
    let a_addr = SiteAddr::My(a_my.url("app"));
    let b_addr = SiteAddr::My(b_my.url("app"));
    let (mut a, mut b) = (a_addr.connect().await?, b_addr.connect().await?);
    let meter = Meter {
        servers: [
            a_my.pid().context("site A's mariadbd pid")?,
            b_my.pid().context("site B's mariadbd pid")?,
        ],
    };
    let mut rep = match kind {
        // The control schema on A, as the PostgreSQL pair keeps it in A's
        // cluster: its writes cost the measured servers too.
        Kind::Duplex => {
            let sites = [a_my.url("app"), b_my.url("app")];
            Replicator::duplex(
                a_my.url("duplex"),
                ["mysql", "mysql"],
                sites,
                round,
                sizes.apply_workers,
            )
            .await?
        }
        Kind::Native => Replicator::Native(
            MariaNative::configure(a_my.port(), &mut a, b_addr.connect().await?).await?,
        ),
    };
    super::oltp_and_backlog(&meter, &mut rep, &a_addr, &mut a, &mut b, sizes, LABEL).await
}
