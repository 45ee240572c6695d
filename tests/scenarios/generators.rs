//! Real workload generators through a link, as a new user would try duplex:
//! sysbench `oltp_read_write` on MariaDB (it deletes a row and inserts the
//! same key again in every transaction, and keeps `CHAR` columns) and pgbench
//! on PostgreSQL, both writing at once through a PostgreSQL <-> MariaDB link,
//! each on its own tables; then pgbench on both sites of a PostgreSQL <->
//! PostgreSQL link on the same tables. At quiescence the sites are compared
//! row by row by plain SQL on each server (not duplex's code).
//!
//! `DUPLEX_GENERATOR_SECS` sets how long the generators run (default 20 s,
//! 15 s for the shared-table run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use duplex::localdb::mysql::LocalMariaDb;
use duplex::localdb::pg::LocalPostgres;
use mysql_async::prelude::Queryable;

fn secs(default: u64) -> u64 {
    std::env::var("DUPLEX_GENERATOR_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// sysbench from the PATH: required (scripts/install-servers.sh installs it).
fn sysbench() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("sysbench");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "sysbench not found: install it (apt-get install sysbench, or scripts/install-servers.sh)"
    );
}

fn pgbench(pg: &LocalPostgres) -> PathBuf {
    let p = pg.bindir().join("pgbench");
    assert!(
        p.exists(),
        "pgbench not found beside the server in {}",
        pg.bindir().display()
    );
    p
}

fn sysbench_cmd(m: &LocalMariaDb, args: &[&str]) -> Command {
    let mut c = Command::new(sysbench());
    c.arg("oltp_read_write")
        .arg("--db-driver=mysql")
        .arg(format!("--mysql-host={}", m.host()))
        .arg(format!("--mysql-port={}", m.port()))
        .arg("--mysql-user=root")
        .arg("--mysql-db=app")
        .arg("--tables=1")
        .arg("--table-size=1000")
        .args(args);
    if let Some(p) = m.root_password() {
        c.arg(format!("--mysql-password={p}"));
    }
    c
}

fn pgbench_cmd(pg: &LocalPostgres, args: &[&str]) -> Command {
    let mut c = Command::new(pgbench(pg));
    c.arg("-h")
        .arg(pg.host())
        .arg("-p")
        .arg(pg.port().to_string())
        .arg("-U")
        .arg(pg.superuser())
        .args(args)
        .arg("app");
    if let Some(p) = pg.password() {
        c.env("PGPASSWORD", p);
    }
    c
}

/// Run to the end; its standard output. Panics with the output on failure.
fn run(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// The number after `label` on the first line holding it.
fn figure(output: &str, label: &str) -> u64 {
    output
        .lines()
        .find_map(|l| {
            let rest = &l[l.find(label)? + label.len()..];
            rest.trim_start_matches([':', ' '])
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no '{label}' in:\n{output}"))
}

/// pgbench's TPC-B-like transaction on a small account range (the rows a
/// short CI run touches more than once).
const PGBENCH_SCRIPT: &str = "\\set aid random(1, 2000)
\\set bid 1
\\set tid random(1, 10)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
";

/// pgbench's tables with 2,000 accounts, and a key on pgbench_history (which
/// has none) from a sequence starting at `first`, stepping by 2 (each site of
/// a two-way link hands out its own keys).
fn pgbench_init(pg: &LocalPostgres, data: bool, first: i64) {
    run(
        pgbench_cmd(
            pg,
            &[
                "-i",
                "-s",
                "1",
                "-I",
                if data { "dtgp" } else { "dtp" },
                "-q",
            ],
        ),
        "pgbench -i",
    );
    pg.psql(
        "app",
        &format!(
            "DELETE FROM pgbench_accounts WHERE aid > 2000;
             CREATE SEQUENCE pgbench_history_hid START {first} INCREMENT 2;
             ALTER TABLE pgbench_history ADD COLUMN hid bigint PRIMARY KEY DEFAULT nextval('pgbench_history_hid');"
        ),
    )
    .expect("shape pgbench's tables");
}

const PG_SBTEST: &str = "CREATE TABLE sbtest1 (id integer PRIMARY KEY, k integer NOT NULL DEFAULT 0, c char(120) NOT NULL DEFAULT '', pad char(60) NOT NULL DEFAULT '');
CREATE INDEX k_1 ON sbtest1 (k);";

const MY_PGBENCH: &str = "CREATE TABLE pgbench_accounts (aid INT PRIMARY KEY, bid INT, abalance INT, filler CHAR(84));
CREATE TABLE pgbench_tellers (tid INT PRIMARY KEY, bid INT, tbalance INT, filler CHAR(84));
CREATE TABLE pgbench_branches (bid INT PRIMARY KEY, bbalance INT, filler CHAR(88));
CREATE TABLE pgbench_history (hid BIGINT PRIMARY KEY, tid INT, bid INT, aid INT, delta INT, mtime DATETIME(6), filler CHAR(22));";

/// Each table's rows as text, on PostgreSQL: trailing blanks of CHAR
/// columns dropped (MariaDB drops them when it reads), NULL as `~`.
const PG_ROWS: &[(&str, &str)] = &[
    ("sbtest1", "SELECT concat_ws('|', id, k, rtrim(c), rtrim(pad)) FROM sbtest1 ORDER BY id"),
    ("pgbench_accounts", "SELECT concat_ws('|', aid, bid, abalance, coalesce(rtrim(filler), '~')) FROM pgbench_accounts ORDER BY aid"),
    ("pgbench_tellers", "SELECT concat_ws('|', tid, bid, tbalance, coalesce(rtrim(filler), '~')) FROM pgbench_tellers ORDER BY tid"),
    ("pgbench_branches", "SELECT concat_ws('|', bid, bbalance, coalesce(rtrim(filler), '~')) FROM pgbench_branches ORDER BY bid"),
    ("pgbench_history", "SELECT concat_ws('|', hid, tid, bid, aid, delta, coalesce(to_char(mtime, 'YYYY-MM-DD HH24:MI:SS.US'), '~'), coalesce(rtrim(filler), '~')) FROM pgbench_history ORDER BY hid"),
];

const MY_ROWS: &[(&str, &str)] = &[
    ("sbtest1", "SELECT CONCAT_WS('|', id, k, c, pad) FROM sbtest1 ORDER BY id"),
    ("pgbench_accounts", "SELECT CONCAT_WS('|', aid, bid, abalance, IFNULL(filler, '~')) FROM pgbench_accounts ORDER BY aid"),
    ("pgbench_tellers", "SELECT CONCAT_WS('|', tid, bid, tbalance, IFNULL(filler, '~')) FROM pgbench_tellers ORDER BY tid"),
    ("pgbench_branches", "SELECT CONCAT_WS('|', bid, bbalance, IFNULL(filler, '~')) FROM pgbench_branches ORDER BY bid"),
    ("pgbench_history", "SELECT CONCAT_WS('|', hid, tid, bid, aid, delta, IFNULL(DATE_FORMAT(mtime, '%Y-%m-%d %H:%i:%s.%f'), '~'), IFNULL(filler, '~')) FROM pgbench_history ORDER BY hid"),
];

async fn my_rows(c: &mut mysql_async::Conn, sql: &str) -> Vec<String> {
    c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The first difference between two sites' copies of a table, if any.
fn first_difference(a: &[String], b: &[String]) -> Option<String> {
    if a == b {
        return None;
    }
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    Some(format!(
        "{} vs {} rows; first difference at row {i}: {:?} vs {:?}",
        a.len(),
        b.len(),
        a.get(i),
        b.get(i)
    ))
}

async fn conflicts_and_quarantine(control_url: &str) -> (Vec<String>, i64) {
    let control = crate::support::connect(control_url).await;
    let kinds = crate::support::texts(
        &control,
        "SELECT kind || ' ' || table_name || ': ' || count(*) FROM duplex.conflicts GROUP BY kind, table_name ORDER BY 1",
    )
    .await;
    let q = crate::support::query_i64(&control, "SELECT count(*) FROM duplex.quarantine").await;
    (kinds, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_on_mariadb_and_pgbench_on_postgres_through_one_link() {
    let p = crate::support::start_postgres("").await;
    let m = crate::support::start_mariadb("").await;
    run(sysbench_cmd(&m, &["prepare"]), "sysbench prepare");
    pgbench_init(&p, true, 1);
    p.psql("app", PG_SBTEST).expect("sbtest1 on PostgreSQL");
    m.sql(Some("app"), MY_PGBENCH)
        .expect("pgbench tables on MariaDB");
    let tables = [
        "sbtest1",
        "pgbench_accounts",
        "pgbench_tellers",
        "pgbench_branches",
        "pgbench_history",
    ];
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &tables,
    )
    .await;
    let run_ = crate::support::start_synced(&url).await;

    let t = secs(20).to_string();
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), PGBENCH_SCRIPT).unwrap();
    let sb = sysbench_cmd(
        &m,
        &[
            "--threads=2",
            &format!("--time={t}"),
            "--report-interval=0",
            "run",
        ],
    );
    let pb = pgbench_cmd(
        &p,
        &[
            "-c",
            "2",
            "-j",
            "1",
            "-T",
            &t,
            "-n",
            "-f",
            script.path().to_str().unwrap(),
        ],
    );
    let sb = tokio::task::spawn_blocking(move || run(sb, "sysbench run"));
    let pb = tokio::task::spawn_blocking(move || run(pb, "pgbench"));
    let (sb, pb) = (sb.await.unwrap(), pb.await.unwrap());
    let sysbench_txns = figure(&sb, "transactions");
    let pgbench_txns = figure(&pb, "number of transactions actually processed");
    assert!(sysbench_txns > 0 && pgbench_txns > 0, "{sb}\n{pb}");

    // A fence row each way: each direction applies in commit order, so all
    // that was written before it has arrived once it has.
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    let mut mc = crate::support::mysql_conn(&m).await;
    mc.query_drop("INSERT INTO sbtest1 (id, k, c, pad) VALUES (100000000, 0, 'fence', '')")
        .await
        .unwrap();
    pgc.batch_execute(
        "INSERT INTO pgbench_history (hid, tid, bid, aid, delta) VALUES (-1, 0, 0, 0, 0)",
    )
    .await
    .unwrap();
    crate::support::wait_for(
        "the fence on PostgreSQL",
        Duration::from_secs(300),
        || async { crate::support::pg_has_row(&pgc, "sbtest1", 100_000_000).await },
    )
    .await;
    crate::support::wait_mysql(
        &mut mc,
        "the fence on MariaDB",
        "SELECT COUNT(*) FROM pgbench_history WHERE hid = -1",
        Duration::from_secs(300),
    )
    .await;

    let mut compared = 0;
    let mut differences = Vec::new();
    for ((table, pg_sql), (_, my_sql)) in PG_ROWS.iter().zip(MY_ROWS) {
        let a = crate::support::texts(&pgc, pg_sql).await;
        let b = my_rows(&mut mc, my_sql).await;
        compared += a.len();
        if let Some(d) = first_difference(&a, &b) {
            differences.push(format!("{table}: {d}"));
        }
    }
    let (conflicts, quarantined) = conflicts_and_quarantine(&url).await;
    println!(
        "generators PG<->MariaDB: sysbench {sysbench_txns} transactions on MariaDB, pgbench {pgbench_txns} on PostgreSQL, {compared} rows compared, conflicts {conflicts:?}, quarantined {quarantined}"
    );
    assert!(differences.is_empty(), "the sites differ: {differences:#?}");
    assert!(conflicts.is_empty(), "conflicts recorded: {conflicts:?}");
    assert_eq!(quarantined, 0, "changes quarantined");
    run_.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_on_both_sites_of_one_table_set_converges() {
    let a = crate::support::start_postgres("").await;
    let b = crate::support::start_postgres("").await;
    pgbench_init(&a, true, 1);
    pgbench_init(&b, false, 2);
    let tables = [
        "pgbench_accounts",
        "pgbench_tellers",
        "pgbench_branches",
        "pgbench_history",
    ];
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "a", "postgresql", a.conninfo("app")),
            (2, "b", "postgresql", b.conninfo("app")),
        ],
        &tables,
    )
    .await;
    let run_ = crate::support::start_synced(&url).await;

    let t = secs(15).to_string();
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), PGBENCH_SCRIPT).unwrap();
    let mut loads = Vec::new();
    for site in [&a, &b] {
        let c = pgbench_cmd(
            site,
            &[
                "-c",
                "2",
                "-j",
                "1",
                "-T",
                &t,
                "-n",
                "-f",
                script.path().to_str().unwrap(),
            ],
        );
        loads.push(tokio::task::spawn_blocking(move || run(c, "pgbench")));
    }
    let mut tps = Vec::new();
    for l in loads {
        tps.push(figure(
            &l.await.unwrap(),
            "number of transactions actually processed",
        ));
    }

    let (ca, cb) = (
        crate::support::connect(&a.conninfo("app")).await,
        crate::support::connect(&b.conninfo("app")).await,
    );
    ca.batch_execute(
        "INSERT INTO pgbench_history (hid, tid, bid, aid, delta) VALUES (-1, 0, 0, 0, 0)",
    )
    .await
    .unwrap();
    cb.batch_execute(
        "INSERT INTO pgbench_history (hid, tid, bid, aid, delta) VALUES (-2, 0, 0, 0, 0)",
    )
    .await
    .unwrap();
    for (c, hid) in [(&cb, -1i64), (&ca, -2)] {
        crate::support::wait_for("the fence", Duration::from_secs(300), || async move {
            c.query_opt("SELECT 1 FROM pgbench_history WHERE hid = $1", &[&hid])
                .await
                .unwrap()
                .is_some()
        })
        .await;
    }
    let mut compared = 0;
    let mut differences = Vec::new();
    for (table, sql) in PG_ROWS.iter().filter(|(t, _)| *t != "sbtest1") {
        let (ra, rb) = (
            crate::support::texts(&ca, sql).await,
            crate::support::texts(&cb, sql).await,
        );
        compared += ra.len();
        if let Some(d) = first_difference(&ra, &rb) {
            differences.push(format!("{table}: {d}"));
        }
    }
    let (conflicts, quarantined) = conflicts_and_quarantine(&url).await;
    println!(
        "pgbench on both PostgreSQL sites: {} and {} transactions, {compared} rows compared, conflicts {conflicts:?}, quarantined {quarantined}",
        tps[0], tps[1]
    );
    assert!(differences.is_empty(), "the sites differ: {differences:#?}");
    assert_eq!(quarantined, 0, "changes quarantined");
    run_.shutdown().await;
}
