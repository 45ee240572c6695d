//! Parallel apply: a direction applies independent source transactions on
//! several target connections at once (`links.apply_workers`, 4 by
//! default) and commits them in source order.

use std::time::Duration;

use crate::support::scenario_tests;
use crate::support::site::{wait_same, Db, Engines, Sites};
use crate::support::wait_for;

const PG_SCHEMA: &str = "
    CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL, note text);
    CREATE TABLE tally (id int PRIMARY KEY, n int NOT NULL);
    CREATE TABLE tagged (id int PRIMARY KEY, tag text NOT NULL UNIQUE);";
const MY_SCHEMA: &str = "
    CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL, note text);
    CREATE TABLE tally (id int PRIMARY KEY, n int NOT NULL);
    CREATE TABLE tagged (id int PRIMARY KEY, tag varchar(20) NOT NULL UNIQUE);";

/// Independent transactions, then transactions that all share rows.
const INDEPENDENT_TXNS: i32 = 1_200;
const SHARED_TXNS: i32 = 300;
const TALLIES: i32 = 8;

scenario_tests! { a_backlog_is_applied_by_several_workers_in_source_order:
    postgresql_pair(Engines::PgPg);
    pg18_and_pg15(Engines::Pg18Pg);
    postgresql_and_mariadb(Engines::PgMariaDb);
    mariadb_pair(Engines::MariaDbMariaDb);
}

/// A backlog written while duplex is down: independent one-row
/// transactions (applied side by side by several workers), then
/// transactions that each bump one of a few tally rows, every one of which
/// an earlier transaction wrote too, and swap two values of a column with a
/// unique index besides the key (rows tied beyond their keys). Both sites
/// end with the same rows (a tally applied out of source order would keep
/// an older count), and more than one worker committed on the target.
async fn a_backlog_is_applied_by_several_workers_in_source_order(engines: Engines) {
    let sites = Sites::start(engines, PG_SCHEMA, MY_SCHEMA, &["item", "tally", "tagged"]).await;
    let (mut a, mut b) = sites.connect().await;
    let tallies: Vec<String> = (0..TALLIES).map(|i| format!("({i}, 0)")).collect();
    a.exec(&format!(
        "INSERT INTO tally (id, n) VALUES {}",
        tallies.join(", ")
    ))
    .await;
    a.exec("INSERT INTO tagged (id, tag) VALUES (1, 'x'), (2, 'y')")
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    wait_same::<(i32, i32)>(
        &mut a,
        &mut b,
        "the tallies on both sites",
        &[["SELECT id, n FROM tally ORDER BY id"; 2]],
    )
    .await;
    run.shutdown().await;

    for i in 0..INDEPENDENT_TXNS {
        a.exec(&format!(
            "INSERT INTO item (id, n, note) VALUES ({i}, {i}, 'independent')"
        ))
        .await;
    }
    for i in 0..SHARED_TXNS {
        let id = INDEPENDENT_TXNS + i;
        let mut statements = vec![
            format!("INSERT INTO item (id, n, note) VALUES ({id}, {i}, 'shared')"),
            format!("UPDATE tally SET n = n + 1 WHERE id = {}", i % TALLIES),
        ];
        if i % 10 == 0 {
            statements.extend([
                "UPDATE tagged SET tag = 'swap' WHERE id = 1".to_string(),
                format!(
                    "UPDATE tagged SET tag = '{}' WHERE id = 2",
                    if i % 20 == 0 { "x" } else { "y" }
                ),
                format!(
                    "UPDATE tagged SET tag = '{}' WHERE id = 1",
                    if i % 20 == 0 { "y" } else { "x" }
                ),
            ]);
        }
        a.txn(&statements).await;
    }

    let run = duplex::runner::start(
        &sites.control_url,
        duplex::pipeline::PipelineTuning::default(),
    )
    .await
    .expect("start duplex again");
    wait_same::<(i32, i32, Option<String>)>(
        &mut a,
        &mut b,
        "the backlog on both sites",
        &[
            ["SELECT id, n, note FROM item ORDER BY id"; 2],
            ["SELECT id, n, NULL FROM tally ORDER BY id"; 2],
            ["SELECT id, id, tag FROM tagged ORDER BY id"; 2],
        ],
    )
    .await;
    let sum = b
        .pick(
            "SELECT sum(n)::bigint FROM tally",
            "SELECT CAST(SUM(n) AS SIGNED) FROM tally",
        )
        .to_string();
    let total = b.count(&sum).await;
    assert_eq!(total, i64::from(SHARED_TXNS), "every bump applied once");
    let workers = committed_workers(&mut b).await;
    assert!(
        workers > 1,
        "the backlog was applied by {workers} worker(s); several were expected"
    );
    // Independent transactions never made workers wait for each other (on
    // MariaDB a worker's first tag once inserted its marker-table row into
    // a gap another worker's tag held).
    let control = crate::support::connect(&sites.control_url).await;
    let errors: Vec<String> = control
        .query(
            "SELECT last_error FROM duplex.link_status WHERE last_error IS NOT NULL",
            &[],
        )
        .await
        .expect("read link_status")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        errors.is_empty(),
        "the directions failed on the way: {errors:?}"
    );
    run.shutdown().await;
}

/// How many of direction 1 -> 2's apply workers have committed on site 2.
async fn committed_workers(b: &mut Db) -> i64 {
    let sql = b
        .pick(
            "SELECT count(*) FROM pg_replication_origin
              WHERE roname LIKE 'duplex\\_l1\\_from\\_s1%'
                AND pg_replication_origin_progress(roname, true) <> '0/0'",
            "SELECT COUNT(*) FROM _duplex_applied
              WHERE link_id = 1 AND source_site = 1 AND position > 0",
        )
        .to_string();
    b.count(&sql).await
}

scenario_tests! { workers_waiting_for_each_other_restart_and_go_on_one_at_a_time:
    waiting_postgresql_pair(Engines::PgPg);
    waiting_mariadb_pair(Engines::MariaDbMariaDb);
}

/// Rows tied in a way the dispatcher cannot see: a unique index made on the
/// target while the direction runs, after its workers described the table
/// (a table is described once per run). An application session on the
/// target holds row 0 so that the earlier transaction (row 0, then row 1's
/// code to 7) waits, while the later one (row 2's code to 7, a row of its
/// own) takes code 7 in the new index and waits for its turn to commit;
/// once the application lets go, the earlier one waits for the later's
/// index entry: a wait no database sees as a deadlock. The later worker
/// notices, the direction restarts and applies with one worker past that
/// point: in source order row 1 takes code 7, and row 2's change, which the
/// target's index refuses, is quarantined. Nothing is lost or recorded
/// twice.
async fn workers_waiting_for_each_other_restart_and_go_on_one_at_a_time(engines: Engines) {
    const SCHEMA: &str = "CREATE TABLE u (id int PRIMARY KEY, code int NOT NULL)";
    let sites = Sites::start(engines, SCHEMA, SCHEMA, &["u"]).await;
    let (mut a, mut b) = sites.connect().await;
    a.exec("INSERT INTO u (id, code) VALUES (0, 0), (1, 1), (2, 2)")
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    // A change through the stream: the workers describe the table (no
    // unique index besides the key yet).
    a.exec("INSERT INTO u (id, code) VALUES (3, 3)").await;
    let rows = ["SELECT id, code FROM u ORDER BY id"; 2];
    wait_same::<(i32, i32)>(&mut a, &mut b, "the rows on both sites", &[rows]).await;
    b.exec("CREATE UNIQUE INDEX u_code ON u (code)").await;

    let mut app = sites.servers[1].connect().await;
    let app_id = app
        .count(app.pick("SELECT pg_backend_pid()::bigint", "SELECT CONNECTION_ID()"))
        .await;
    app.exec(app.pick("BEGIN", "START TRANSACTION")).await;
    app.exec("SELECT code FROM u WHERE id = 0 FOR UPDATE").await;
    a.txn(&[
        "UPDATE u SET code = 100 WHERE id = 0".to_string(),
        "UPDATE u SET code = 7 WHERE id = 1".to_string(),
    ])
    .await;
    let mut probe = sites.servers[1].connect().await;
    let waiting = probe
        .pick(
            "SELECT count(*) FROM pg_locks WHERE NOT granted",
            "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS",
        )
        .to_string();
    until(
        &mut probe,
        &waiting,
        "the earlier transaction waiting for the application",
    )
    .await;
    a.exec("UPDATE u SET code = 7 WHERE id = 2").await;
    let later_holds = match probe.is_pg() {
        // Its group written, the worker waits for its turn: on PostgreSQL
        // its session's last statement is then the check for earlier
        // workers waiting on it (its read-back alone takes an xid too); on
        // MariaDB it has changed its marker-table row and the row.
        true => format!(
            "SELECT count(*) FROM pg_stat_activity
              WHERE state = 'idle in transaction' AND query LIKE '%pg_blocking_pids%'
                AND pid NOT IN ({app_id}, pg_backend_pid())"
        ),
        false => format!(
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX
              WHERE trx_state = 'RUNNING' AND trx_rows_modified >= 2
                AND trx_mysql_thread_id NOT IN ({app_id}, CONNECTION_ID())"
        ),
    };
    until(
        &mut probe,
        &later_holds,
        "the later transaction holding code 7 on another worker",
    )
    .await;
    app.exec("COMMIT").await;

    let control = crate::support::connect(&sites.control_url).await;
    wait_for(
        "row 2's change quarantined",
        Duration::from_secs(60),
        || {
            crate::support::query_bool(
                &control,
                "SELECT count(*) = 1 FROM duplex.quarantine WHERE confirmed AND row_key = 'id=2'",
            )
        },
    )
    .await;
    let on_b: Vec<(i32, i32)> = b.query("SELECT id, code FROM u ORDER BY id").await;
    assert_eq!(
        on_b,
        vec![(0, 100), (1, 7), (2, 2), (3, 3)],
        "the target took the source's changes in order, but for the one its index refuses"
    );
    wait_for(
        "the workers' wait recorded as the direction's last error",
        Duration::from_secs(30),
        || {
            crate::support::query_bool(
                &control,
                "SELECT bool_or(last_error LIKE '%apply workers waited for each other%')
                   FROM duplex.link_overview WHERE source = 'a'",
            )
        },
    )
    .await;
    let records = crate::support::query_i64(
        &control,
        "SELECT (SELECT count(*) FROM duplex.conflicts) + (SELECT count(*) FROM duplex.quarantine)",
    )
    .await;
    assert_eq!(
        records, 1,
        "the rolled-back attempt's records are gone: only row 2's refusal is kept"
    );
    run.shutdown().await;
}

/// Poll `count_sql` on `db` until it counts something (30 s at most).
/// InnoDB's lock tables are refreshed only after 100 ms without a read:
/// polled faster, they would never change.
async fn until(db: &mut Db, count_sql: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while db.count(count_sql).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
