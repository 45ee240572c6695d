//! The two replicators the bench compares, each started, stopped and
//! extended the same way: duplex as its own process (`duplex run`, so its
//! CPU time and memory are its own), and PostgreSQL's logical replication
//! (a publication on A, a subscription on B).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_postgres::Client;

use duplex::localdb::pg::LocalPostgres;

/// Which replicator a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Duplex,
    Postgres,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Duplex => "duplex",
            Kind::Postgres => "postgres",
        }
    }
}

/// The tables replicated from the start of a run (the seeded table joins
/// later: the initial sync).
const STREAMED: [&str; 3] = ["bench", "oltp", "heartbeat"];

/// A replicator between sites A and B of one run.
pub struct Replicator {
    pub kind: Kind,
    /// duplex's control database (on A) and its conninfo.
    control: Option<(Client, String)>,
    /// The running `duplex run` process.
    child: Option<tokio::process::Child>,
    log: PathBuf,
    a_conninfo: String,
}

impl Replicator {
    /// Configure the replicator for the run's tables (not started).
    pub async fn configure(
        kind: Kind,
        a_pg: &LocalPostgres,
        b_pg: &LocalPostgres,
        a: &Client,
        log: PathBuf,
    ) -> anyhow::Result<Replicator> {
        let mut r = Replicator {
            kind,
            control: None,
            child: None,
            log,
            a_conninfo: a_pg.conninfo("app"),
        };
        match kind {
            Kind::Duplex => {
                let conninfo = a_pg.conninfo("postgres");
                let mut control = super::client(a_pg, "postgres").await?;
                duplex::control::migrate_pg(&mut control).await?;
                control
                    .execute(
                        "INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES (1, 'a', 'postgresql', $1, 'disable'), (2, 'b', 'postgresql', $2, 'disable')",
                        &[&a_pg.conninfo("app"), &b_pg.conninfo("app")],
                    )
                    .await?;
                control
                    .batch_execute("INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'bench', 1, 2)")
                    .await?;
                for t in STREAMED {
                    // The heartbeat's arrival trigger is meant to fire for
                    // replicated rows.
                    control
                        .execute(
                            "INSERT INTO duplex.link_tables (link_id, table_name, fire_triggers) VALUES (1, $1, $2)",
                            &[&t, &(t == "heartbeat")],
                        )
                        .await?;
                }
                r.control = Some((control, conninfo));
            }
            Kind::Postgres => {
                a.batch_execute(&format!(
                    "CREATE PUBLICATION bench_pub FOR TABLE {}",
                    STREAMED.join(", ")
                ))
                .await?;
            }
        }
        Ok(r)
    }

    /// Start replicating (the first time, or again after [`stop`]).
    pub async fn start(&mut self, b: &Client) -> anyhow::Result<()> {
        match self.kind {
            Kind::Duplex => {
                let (_, conninfo) = self.control.as_ref().context("duplex is not configured")?;
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .with_context(|| format!("open {}", self.log.display()))?;
                let exe = std::env::current_exe().context("find the duplex binary")?;
                let child = tokio::process::Command::new(exe)
                    .args(["run", "--control", conninfo])
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .context("start `duplex run`")?;
                self.child = Some(child);
            }
            Kind::Postgres => {
                let exists: bool = b
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = 'bench_sub')",
                        &[],
                    )
                    .await?
                    .get(0);
                if exists {
                    b.batch_execute("ALTER SUBSCRIPTION bench_sub ENABLE")
                        .await?;
                } else {
                    b.batch_execute(&format!(
                        "CREATE SUBSCRIPTION bench_sub CONNECTION '{}' PUBLICATION bench_pub WITH (copy_data = false)",
                        self.a_conninfo.replace('\'', "''")
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Wait until a row written on A now is on B: the replicator streams.
    pub async fn wait_streaming(
        &mut self,
        a: &Client,
        b: &Client,
        probe: i64,
    ) -> anyhow::Result<()> {
        a.execute(
            "INSERT INTO heartbeat (id, sent_at) VALUES ($1, clock_timestamp())",
            &[&probe],
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let there: bool = b
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM heartbeat WHERE id = $1)",
                    &[&probe],
                )
                .await?
                .get(0);
            if there {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "`duplex run` exited ({status}) before it streamed; its log: {}",
                        self.log.display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not stream within 2 minutes (its log: {})",
                    self.kind.name(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop replicating: duplex commits what it applied and exits; the
    /// subscription is disabled.
    pub async fn stop(&mut self, b: &Client) -> anyhow::Result<()> {
        match self.kind {
            Kind::Duplex => {
                let Some(mut child) = self.child.take() else {
                    return Ok(());
                };
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status();
                }
                match tokio::time::timeout(Duration::from_secs(120), child.wait()).await {
                    Ok(status) => {
                        status?;
                    }
                    Err(_) => {
                        child.kill().await?;
                        bail!("`duplex run` did not stop within 2 minutes of SIGTERM");
                    }
                }
            }
            Kind::Postgres => {
                b.batch_execute("ALTER SUBSCRIPTION bench_sub DISABLE")
                    .await?;
            }
        }
        Ok(())
    }

    /// `table` (with rows on A only) joins: the initial sync starts.
    pub async fn add_table(&mut self, a: &Client, b: &Client, table: &str) -> anyhow::Result<()> {
        match self.kind {
            Kind::Duplex => {
                let (control, _) = self.control.as_ref().context("duplex is not configured")?;
                control
                    .execute(
                        "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, $1)",
                        &[&table],
                    )
                    .await?;
            }
            Kind::Postgres => {
                a.batch_execute(&format!("CREATE PUBLICATION {table}_pub FOR TABLE {table}"))
                    .await?;
                b.batch_execute(&format!(
                    "CREATE SUBSCRIPTION {table}_sub CONNECTION '{}' PUBLICATION {table}_pub WITH (copy_data = true)",
                    self.a_conninfo.replace('\'', "''")
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// The replicator's own process, where it has one.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }
}
