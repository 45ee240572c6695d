//! The replicators the bench compares, each started, stopped and waited on
//! the same way: duplex as its own process (`duplex run`, so its CPU time
//! and memory are its own), and a pair's native replication
//! ([`Native`]: PostgreSQL's publication and subscription here, MariaDB's
//! replica in [`super::mariadb`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_postgres::Client;

use duplex::control::{ControlDb, ControlEndpoint, Sql, P};

/// Which replicator a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Duplex,
    /// The pair's own replication.
    Native,
}

/// The tables replicated from the start of a run (PostgreSQL's seeded
/// table joins later: the initial sync).
const STREAMED: [&str; 3] = ["bench", "oltp", "heartbeat"];

/// `duplex run` against a control schema describing link 1 between the
/// run's two sites.
pub struct DuplexProcess {
    control_url: String,
    log: PathBuf,
    child: Option<tokio::process::Child>,
}

impl DuplexProcess {
    /// Install duplex's control schema at `control_url` (a PostgreSQL
    /// conninfo or a `mysql://` URL) and describe link 1 between two sites
    /// of `engines` (as `duplex.sites.engine` spells them), syncing the
    /// streamed tables; not started.
    async fn configure(
        control_url: String,
        engines: [&str; 2],
        sites: [String; 2],
        log: PathBuf,
        apply_workers: u32,
    ) -> anyhow::Result<DuplexProcess> {
        let mut control = connect_control(&control_url).await?;
        duplex::control::migrate(&mut control)
            .await
            .context("install duplex's control schema")?;
        control
            .exec(Sql::new(
                "describe the sites",
                "INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES (1, 'a', $1, $2, 'disable'), (2, 'b', $3, $4, 'disable')",
                "INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES (1, 'a', ?, ?, 'disable'), (2, 'b', ?, ?, 'disable')",
                &[
                    P::Text(Some(engines[0])),
                    P::Text(Some(&sites[0])),
                    P::Text(Some(engines[1])),
                    P::Text(Some(&sites[1])),
                ],
            ))
            .await?;
        control
            .exec(Sql::new(
                "describe the link",
                "INSERT INTO duplex.links (link_id, name, site_a, site_b, apply_workers) VALUES (1, 'bench', 1, 2, $1::bigint)",
                "INSERT INTO duplex.links (link_id, name, site_a, site_b, apply_workers) VALUES (1, 'bench', 1, 2, ?)",
                &[P::I64(i64::from(apply_workers))],
            ))
            .await?;
        for t in STREAMED {
            // The heartbeat's arrival trigger is meant to fire for
            // replicated rows (duplex refuses a table with a trigger that
            // would change the rows it applies, unless told so). No initial
            // sync: the tables start alike on both sites, as the native
            // replicators are told (copy_data = false, the replica starting
            // at A's current position); a copy of the seeded rows would
            // still run when the first load starts, and the probe row that
            // says the replicator streams could arrive by it.
            control
                .exec(Sql::new(
                    "add a table to the link",
                    "INSERT INTO duplex.link_tables (link_id, table_name, fire_triggers, initial_sync) VALUES (1, $1, $2, false)",
                    "INSERT INTO duplex.link_tables (link_id, table_name, fire_triggers, initial_sync) VALUES (1, ?, ?, false)",
                    &[P::Text(Some(t)), P::Bool(t == "heartbeat")],
                ))
                .await?;
        }
        Ok(DuplexProcess {
            control_url,
            log,
            child: None,
        })
    }

    /// `table` (with rows on A only) joins the running link: its initial
    /// sync starts.
    pub async fn add_table(&self, table: &str) -> anyhow::Result<()> {
        connect_control(&self.control_url)
            .await?
            .exec(Sql::new(
                "add a table to the link",
                "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, $1)",
                "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, ?)",
                &[P::Text(Some(table))],
            ))
            .await?;
        Ok(())
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let exe = std::env::current_exe().context("find the duplex binary")?;
        let child = tokio::process::Command::new(exe)
            .args(["run", "--control", &self.control_url])
            // Warnings only (duplex reads DUPLEX_LOG, not RUST_LOG): at
            // its default level every conflict is a line, written while
            // the workload is timed. The replication client's ERROR at
            // every stream end stays off, as duplex's default has it.
            // DUPLEX_BENCH_LOG overrides it, to look into a run.
            .env(
                "DUPLEX_LOG",
                std::env::var("DUPLEX_BENCH_LOG")
                    .unwrap_or_else(|_| "warn,pgwire_replication=off".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("start `duplex run`")?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM: duplex commits what it applied and exits.
    async fn stop(&mut self) -> anyhow::Result<()> {
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
                Ok(())
            }
            Err(_) => {
                child.kill().await?;
                bail!("`duplex run` did not stop within 2 minutes of SIGTERM");
            }
        }
    }

    /// An error once the process has exited (it would never catch up).
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "`duplex run` exited ({status}); its log: {}",
                    self.log.display()
                );
            }
        }
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }
}

async fn connect_control(url: &str) -> anyhow::Result<ControlDb> {
    ControlEndpoint::from_url(url)?
        .connect("duplex bench")
        .await
        .context("connect to duplex's control schema")
}

/// A pair's own replication from A to B: its engine-specific steps.
pub trait Native {
    /// Its name in the bench's tables.
    const NAME: &'static str;
    /// Start applying (the first time, or again after [`Native::stop`]).
    async fn start(&mut self) -> anyhow::Result<()>;
    /// Stop applying; what A writes meanwhile waits on A.
    async fn stop(&mut self) -> anyhow::Result<()>;
}

/// A replicator between sites A and B of one run (duplex's process boxed:
/// the size clippy weighs a native replicator at is only a bound).
pub enum Replicator<N> {
    Duplex(Box<DuplexProcess>),
    Native(N),
}

impl<N: Native> Replicator<N> {
    /// duplex, configured and not started (see [`DuplexProcess::configure`]),
    /// logging to a file of the engines and round in the temp dir.
    pub async fn duplex(
        control_url: String,
        engines: [&str; 2],
        sites: [String; 2],
        round: usize,
        apply_workers: u32,
    ) -> anyhow::Result<Self> {
        let pair = if engines[0] == engines[1] {
            engines[0].to_string()
        } else {
            engines.join("-")
        };
        let log = std::env::temp_dir().join(format!("duplex-bench-{pair}-round{round}.log"));
        Ok(Replicator::Duplex(Box::new(
            DuplexProcess::configure(control_url, engines, sites, log, apply_workers).await?,
        )))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Replicator::Duplex(_) => Kind::Duplex,
            Replicator::Native(_) => Kind::Native,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Replicator::Duplex(_) => "duplex",
            Replicator::Native(_) => N::NAME,
        }
    }

    pub async fn start(&mut self) -> anyhow::Result<()> {
        match self {
            Replicator::Duplex(d) => d.start(),
            Replicator::Native(n) => n.start().await,
        }
    }

    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            Replicator::Duplex(d) => d.stop().await,
            Replicator::Native(n) => n.stop().await,
        }
    }

    /// An error once the replicator can no longer apply (duplex exited).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self {
            Replicator::Duplex(d) => d.check_alive(),
            Replicator::Native(_) => Ok(()),
        }
    }

    /// The replicator's own process, where it has one (native replication
    /// runs inside the servers, whose CPU the bench counts apart).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Replicator::Duplex(d) => d.pid(),
            Replicator::Native(_) => None,
        }
    }
}

/// PostgreSQL's logical replication: a publication on A, a subscription on
/// B, each with a connection of its own.
pub struct PgNative {
    a: Client,
    b: Client,
    a_conninfo: String,
}

impl PgNative {
    /// Publish the streamed tables on A (the subscription is created on
    /// the first start).
    pub async fn configure(a: Client, b: Client, a_conninfo: String) -> anyhow::Result<PgNative> {
        a.batch_execute(&format!(
            "CREATE PUBLICATION bench_pub FOR TABLE {}",
            STREAMED.join(", ")
        ))
        .await
        .context("create the publication")?;
        Ok(PgNative { a, b, a_conninfo })
    }

    /// `table` (with rows on A only) joins: its own publication and a
    /// subscription that copies its rows.
    pub async fn add_table(&self, table: &str) -> anyhow::Result<()> {
        self.a
            .batch_execute(&format!("CREATE PUBLICATION {table}_pub FOR TABLE {table}"))
            .await?;
        self.b
            .batch_execute(&format!(
                "CREATE SUBSCRIPTION {table}_sub CONNECTION '{}' PUBLICATION {table}_pub WITH (copy_data = true)",
                self.a_conninfo.replace('\'', "''")
            ))
            .await?;
        Ok(())
    }
}

impl Native for PgNative {
    const NAME: &'static str = "postgres";

    async fn start(&mut self) -> anyhow::Result<()> {
        let exists: bool = self
            .b
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = 'bench_sub')",
                &[],
            )
            .await?
            .get(0);
        if exists {
            self.b
                .batch_execute("ALTER SUBSCRIPTION bench_sub ENABLE")
                .await?;
        } else {
            self.b
                .batch_execute(&format!(
                    "CREATE SUBSCRIPTION bench_sub CONNECTION '{}' PUBLICATION bench_pub WITH (copy_data = false)",
                    self.a_conninfo.replace('\'', "''")
                ))
                .await?;
        }
        Ok(())
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        self.b
            .batch_execute("ALTER SUBSCRIPTION bench_sub DISABLE")
            .await?;
        Ok(())
    }
}

impl Replicator<PgNative> {
    /// `table` (with rows on A only) joins: the initial sync starts.
    pub async fn add_table(&self, table: &str) -> anyhow::Result<()> {
        match self {
            Replicator::Duplex(d) => d.add_table(table).await,
            Replicator::Native(n) => n.add_table(table).await,
        }
    }
}
