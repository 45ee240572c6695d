//! The `duplex` command line: its arguments, and the dispatch of each command
//! to its implementation under `cli/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "duplex",
    version,
    about = "Two-way change-data-capture between PostgreSQL and MySQL/MariaDB databases"
)]
struct Cli {
    /// Log lines as text (coloured on a terminal only) or one JSON object a
    /// line, for log collectors. Logs go to stderr; DUPLEX_LOG sets the levels.
    #[arg(
        long,
        global = true,
        env = "DUPLEX_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Install or upgrade duplex's control schema (idempotent).
    Init {
        /// Control database: a PostgreSQL connection string (libpq key=value or URL),
        /// or mysql://user@host:port/duplex for a MySQL/MariaDB control schema.
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
    },
    /// Migrate an installed control schema to this version of duplex (idempotent).
    Upgrade {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
    },
    /// Check the configuration in the control tables without changing anything.
    Config {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Change a synced table on both sites in a safe order: the table is
    /// paused (its changes held both ways), the ALTER TABLE runs on each site
    /// (translated between PostgreSQL and MySQL/MariaDB for added and dropped
    /// columns), the two tables are compared, and the table is resumed (the
    /// held changes are applied in order). Needs `duplex run` running the link.
    Ddl {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        /// The link (id or name).
        #[arg(long)]
        link: String,
        /// The statement for the PostgreSQL sites, instead of the one given.
        #[arg(long)]
        postgresql: Option<String>,
        /// The statement for the MySQL/MariaDB sites, instead of the one given.
        #[arg(long)]
        mysql: Option<String>,
        /// Only say what would be run on each site.
        #[arg(long)]
        dry_run: bool,
        /// Seconds each wait may take (the pause in force, the held changes applied).
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// The ALTER TABLE statement, in either engine's dialect.
        statement: String,
    },
    /// Key generators of synced tables (sequences, identity, auto_increment).
    Keys {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Replicate every enabled link of the control schema until interrupted.
    Run {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        /// Most rows per multi-row statement.
        #[arg(long, default_value_t = 500)]
        batch_rows: usize,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9187).
        #[arg(long, env = "DUPLEX_METRICS_LISTEN", value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// One of several processes sharing the control schema (start every
        /// one with --ha): each link runs in the process holding its lease,
        /// and another takes it over when that one dies (duplex.lease_overview).
        #[arg(long, env = "DUPLEX_HA")]
        ha: bool,
        /// With --ha: seconds a lease lasts without renewal; a dead process's
        /// links are taken over after about this long.
        #[arg(long, value_name = "SECONDS", default_value_t = 10, requires = "ha",
              value_parser = clap::value_parser!(u64).range(2..=600))]
        lease_seconds: u64,
    },
    /// Compare both sites of every synced table, row by row (duplex.parity_checks).
    /// Exits 1 when a difference persists.
    Check {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        /// Only this link (id or name).
        #[arg(long)]
        link: Option<String>,
        /// Only this table (name, or schema.name).
        #[arg(long)]
        table: Option<String>,
        /// Rows read per page.
        #[arg(long, default_value_t = 1000)]
        chunk: usize,
        /// Longest wait, in seconds, for a running link to catch up before rows
        /// that differed are read again.
        #[arg(long, default_value_t = 30)]
        settle: u64,
    },
    /// Make the rows `duplex check` finds different equal again, through the
    /// normal replication path. Checks first; then checks again.
    Repair {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        /// Only this link (id or name).
        #[arg(long)]
        link: Option<String>,
        /// Only this table (name, or schema.name).
        #[arg(long)]
        table: Option<String>,
        /// The site whose rows win (its name in duplex.sites).
        #[arg(
            long,
            value_name = "SITE",
            required_unless_present = "by_policy",
            conflicts_with = "by_policy"
        )]
        from: Option<String>,
        /// Let each table's conflict policy pick the winner (last_writer_wins or site_priority).
        #[arg(long)]
        by_policy: bool,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Longest wait, in seconds, for a running link to catch up before rows
        /// that differed are read again.
        #[arg(long, default_value_t = 30)]
        settle: u64,
    },
    /// Bring a link back after its source position was lost (an invalidated
    /// or dropped slot, a purged binlog), or a table back to equal: resets
    /// what is lost and has the running duplex copy the tables both ways
    /// again (both sites keep their rows; differences settled by policy).
    Resync {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        /// The link (id or name).
        #[arg(long)]
        link: String,
        /// Only this table (name, or schema.name); refused when a position is
        /// lost, as every table's changes are.
        #[arg(long)]
        table: Option<String>,
        /// Take a new source position even where the current one looks
        /// readable (a publication dropped and created again, a binlog reset).
        #[arg(long)]
        new_position: bool,
        /// Follow the copies this many seconds, then check the tables and
        /// restore by policy what a copy cannot carry; exit 1 if they are
        /// not done or not equal by then (0: do not wait).
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        wait: u64,
    },
    /// Show each link direction's status (duplex.link_overview).
    Status {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        /// Also per table: rows applied by operation, conflicts, quarantined, held.
        #[arg(long)]
        tables: bool,
        /// Refresh every this many seconds until interrupted.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<u64>,
    },
    /// List, show and settle conflicts (duplex.conflicts).
    Conflicts {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        #[command(subcommand)]
        action: ConflictsAction,
    },
    /// List, show, retry and discard changes the target refused (duplex.quarantine).
    Quarantine {
        #[arg(long, env = "DUPLEX_CONTROL", hide_env_values = true)]
        control: String,
        #[command(subcommand)]
        action: QuarantineCommand,
    },
    /// Measure duplex against PostgreSQL's and MariaDB's own replication on throwaway servers.
    #[cfg(feature = "localdb")]
    Bench {
        /// Rows in the single large transaction.
        #[arg(long, default_value_t = 200_000)]
        bulk_rows: i64,
        /// Number of one-row transactions.
        #[arg(long, default_value_t = 20_000)]
        small_txns: i64,
        /// Rows of the backlog (written in 1,000-row transactions while the
        /// replicator is stopped, then applied when it starts); 0: none.
        #[arg(long, default_value_t = 1_000_000)]
        backlog_rows: i64,
        /// Seconds of the OLTP load (sessions committing one UPDATE and one
        /// INSERT per transaction, with a 10 Hz heartbeat); 0: none.
        #[arg(long, default_value_t = 60)]
        oltp_secs: u64,
        /// Sessions of the OLTP load.
        #[arg(long, default_value_t = 4)]
        oltp_threads: usize,
        /// Rounds (each runs every workload through both replicators, on
        /// fresh clusters); the summary gives medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Leave out the MariaDB pair (duplex against MariaDB's own
        /// replication under the OLTP load and with the backlog).
        #[arg(long = "no-mariadb", action = clap::ArgAction::SetFalse)]
        mariadb: bool,
        /// Leave out the cross-engine pairs (duplex alone, PostgreSQL ->
        /// MariaDB and MariaDB -> PostgreSQL, under the OLTP load and with
        /// the backlog, against the same-engine pairs' figures)
        #[arg(long = "no-cross-engine", action = clap::ArgAction::SetFalse)]
        cross_engine: bool,
        /// Seconds of each pgbench run on the PostgreSQL pair's site B,
        /// alone and while the replicator applies a steady stream from A;
        /// 0: none.
        #[arg(long, default_value_t = 20)]
        pgbench_secs: u64,
        /// pgbench's clients (its scale: one branch per client).
        #[arg(long, default_value_t = 4)]
        pgbench_clients: usize,
        /// pgbench's built-in script.
        #[arg(long, value_enum, default_value = "tpcb-like")]
        pgbench_script: cli::bench::PgbenchScript,
        /// Transactions a second of the stream A -> B during pgbench (the
        /// OLTP load's transaction: one UPDATE and one INSERT).
        #[arg(long, default_value_t = 500)]
        pgbench_stream_tps: u32,
        /// duplex's apply workers per direction (`links.apply_workers`).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
        apply_workers: u32,
    },
    /// Start two throwaway PostgreSQL clusters and show duplex syncing them both ways.
    #[cfg(feature = "localdb")]
    Demo {
        /// Rounds of writes on each side before the demo ends.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Engine of the "support" database (the "crm" one is PostgreSQL).
        #[arg(long, value_enum, default_value = "postgres")]
        support: cli::demo::SupportEngine,
    },
    /// `demo` and `bench` in a build without the `localdb` feature: they say
    /// how to get them instead of clap's "unrecognized subcommand".
    #[cfg(not(feature = "localdb"))]
    #[command(name = "demo", alias = "bench", hide = true)]
    WithoutLocaldb {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Changes waiting for a DBA, newest first.
    List {
        /// Retried and discarded ones too.
        #[arg(long)]
        all: bool,
        /// Only this table (schema.table as recorded).
        #[arg(long)]
        table: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One change with its reason and both images.
    Show { id: i64 },
    /// Apply changes again once the target is fixed (the running duplex does it within seconds).
    Retry {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Give changes up.
    Discard {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Dry run: per link, what differs from the configuration in force and
    /// whether a running duplex would accept it (exit status 1 if not).
    Check,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Give each site its own key values (odd on one, even on the other,
    /// above the largest key either holds) wherever both sites generate a
    /// synced table's key from overlapping values.
    Interleave {
        /// The link (id or name).
        #[arg(long)]
        link: String,
        /// Only say what would be done.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ConflictsAction {
    /// The latest conflicts, newest first.
    List {
        /// Only parked conflicts waiting for a decision.
        #[arg(long)]
        open: bool,
        /// Only this table (schema.table as recorded).
        #[arg(long)]
        table: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One conflict with both versions.
    Show { id: i64 },
    /// Settle a parked conflict: keep the target's version or take the incoming one.
    Resolve {
        id: i64,
        #[arg(long, value_parser = ["local", "incoming"])]
        take: String,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DUPLEX_LOG")
        // The replication client library logs an ERROR whenever its stream
        // ends, including on every clean stop of a direction (a pause, a
        // configuration change); duplex reports the stream's real failures
        // itself, with context. tokio-postgres logs every NOTICE a server
        // sends at INFO ("schema ... already exists, skipping" at each
        // `duplex init`); its warnings stay. DUPLEX_LOG overrides this.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,pgwire_replication=off,tokio_postgres=warn")
        });
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => fmt.json().with_current_span(true).init(),
        // No colour codes in a file or a journal.
        LogFormat::Text => fmt
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { control } => cli::control::init(&control).await?,
        Command::Upgrade { control } => cli::control::upgrade(&control).await?,
        Command::Config {
            control,
            action: ConfigAction::Check,
        } => cli::control::config_check(&control).await?,
        Command::Ddl {
            control,
            link,
            postgresql,
            mysql,
            dry_run,
            timeout,
            statement,
        } => {
            cli::ddl::ddl(
                &control,
                &link,
                duplex::runner::DdlRequest {
                    statement: &statement,
                    postgresql: postgresql.as_deref(),
                    mysql: mysql.as_deref(),
                    dry_run,
                    timeout: std::time::Duration::from_secs(timeout),
                },
            )
            .await?
        }
        Command::Keys {
            control,
            action: KeysAction::Interleave { link, dry_run },
        } => {
            if !cli::keys::interleave(&control, &link, dry_run).await? {
                std::process::exit(1);
            }
        }
        Command::Run {
            control,
            batch_rows,
            metrics_listen,
            ha,
            lease_seconds,
        } => {
            let ha = ha.then(|| duplex::runner::HaOptions {
                lease: std::time::Duration::from_secs(lease_seconds),
            });
            cli::run::run(&control, batch_rows, metrics_listen, ha).await?
        }
        Command::Quarantine { control, action } => {
            use cli::journal::QuarantineAction as A;
            let action = match action {
                QuarantineCommand::List { all, table, limit } => A::List { all, table, limit },
                QuarantineCommand::Show { id } => A::Show { id },
                QuarantineCommand::Retry { ids } => A::Retry { ids },
                QuarantineCommand::Discard { ids } => A::Discard { ids },
            };
            cli::journal::quarantine(&control, action).await?;
        }
        Command::Conflicts { control, action } => {
            use cli::journal::ConflictsAction as A;
            let action = match action {
                ConflictsAction::List { open, table, limit } => A::List { open, table, limit },
                ConflictsAction::Show { id } => A::Show { id },
                ConflictsAction::Resolve { id, take } => A::Resolve { id, take },
            };
            cli::journal::conflicts(&control, action).await?;
        }
        Command::Status {
            control,
            tables,
            watch,
        } => cli::status::status(&control, tables, watch).await?,
        Command::Repair {
            control,
            link,
            table,
            from,
            by_policy: _,
            dry_run,
            settle,
        } => {
            let options = duplex::parity::CheckOptions {
                chunk: 1000,
                settle: std::time::Duration::from_secs(settle),
                progress: true,
            };
            let winner = match from {
                Some(site) => duplex::parity::repair::Winner::Site(site),
                None => duplex::parity::repair::Winner::Policy,
            };
            if !cli::parity::repair(
                &control,
                link.as_deref(),
                table.as_deref(),
                &winner,
                dry_run,
                &options,
            )
            .await?
            {
                std::process::exit(1);
            }
        }
        Command::Resync {
            control,
            link,
            table,
            new_position,
            wait,
        } => {
            if !cli::resync::resync(&control, &link, table.as_deref(), new_position, wait).await? {
                std::process::exit(1);
            }
        }
        Command::Check {
            control,
            link,
            table,
            chunk,
            settle,
        } => {
            let options = duplex::parity::CheckOptions {
                chunk,
                settle: std::time::Duration::from_secs(settle),
                progress: true,
            };
            if !cli::parity::check(&control, link.as_deref(), table.as_deref(), &options).await? {
                std::process::exit(1);
            }
        }
        #[cfg(feature = "localdb")]
        Command::Demo { rounds, support } => cli::demo::run(rounds, support).await?,
        #[cfg(not(feature = "localdb"))]
        Command::WithoutLocaldb { .. } => anyhow::bail!(
            "this duplex was built without the `localdb` feature, which `duplex demo` and \
             `duplex bench` need (they start throwaway local servers): build it with the \
             default features (`cargo build`, or `--features localdb`)"
        ),
        #[cfg(feature = "localdb")]
        Command::Bench {
            bulk_rows,
            small_txns,
            backlog_rows,
            oltp_secs,
            oltp_threads,
            rounds,
            mariadb,
            cross_engine,
            pgbench_secs,
            pgbench_clients,
            pgbench_script,
            pgbench_stream_tps,
            apply_workers,
        } => {
            cli::bench::run(cli::bench::BenchSizes {
                bulk_rows,
                small_txns,
                backlog_rows,
                oltp_secs,
                oltp_threads,
                rounds,
                mariadb,
                cross_engine,
                pgbench: cli::bench::PgbenchOptions {
                    secs: pgbench_secs,
                    clients: pgbench_clients,
                    script: pgbench_script,
                    stream_tps: pgbench_stream_tps,
                },
                apply_workers,
            })
            .await?
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    duplex::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("duplex: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("duplex: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
