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

/// MariaDB compares these keys without regard to case: 'a' and 'A' are one
/// row on the target, two keys to the dispatcher, which then lets two
/// workers at them at once. An application session on the target holds row
/// '0' so that the earlier transaction (update '0', delete 'a') waits while
/// the later one (insert 'A') locks row 'a' and waits for its turn to
/// commit; once the application lets go, the earlier one waits for the
/// later's lock: a wait no database sees as a deadlock. The later worker
/// notices, the direction restarts and applies with one worker past that
/// point, and nothing is lost or recorded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_waiting_for_each_other_restart_and_go_on_one_at_a_time() {
    const SCHEMA: &str =
        "CREATE TABLE ci (k varchar(20) COLLATE utf8mb4_general_ci PRIMARY KEY, v int NOT NULL)";
    let sites = Sites::start(Engines::MariaDbMariaDb, "", SCHEMA, &["ci"]).await;
    let (mut a, mut b) = sites.connect().await;
    a.exec("INSERT INTO ci (k, v) VALUES ('0', 0), ('a', 1)")
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let rows = ["SELECT k, v FROM ci ORDER BY k"; 2];
    wait_same::<(String, i32)>(&mut a, &mut b, "the rows on both sites", &[rows]).await;

    let mut app = sites.servers[1].connect().await;
    let app_id = app.count("SELECT CONNECTION_ID()").await;
    app.exec("START TRANSACTION").await;
    app.exec("SELECT v FROM ci WHERE k = '0' FOR UPDATE").await;
    a.txn(&[
        "UPDATE ci SET v = v + 1 WHERE k = '0'".to_string(),
        "DELETE FROM ci WHERE k = 'a'".to_string(),
    ])
    .await;
    let mut probe = sites.servers[1].connect().await;
    until(
        &mut probe,
        "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS",
        "the earlier transaction waiting for the application",
    )
    .await;
    a.exec("INSERT INTO ci (k, v) VALUES ('A', 7)").await;
    let later_holds = format!(
        "SELECT COUNT(*) FROM information_schema.INNODB_TRX
          WHERE trx_state = 'RUNNING' AND trx_rows_locked > 0
            AND trx_mysql_thread_id NOT IN ({app_id}, CONNECTION_ID())"
    );
    until(
        &mut probe,
        &later_holds,
        "the later transaction holding row 'a' on another worker",
    )
    .await;
    app.exec("COMMIT").await;

    wait_same::<(String, i32)>(&mut a, &mut b, "the rows after the restart", &[rows]).await;
    let control = crate::support::connect(&sites.control_url).await;
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
    let conflicts =
        crate::support::query_i64(&control, "SELECT count(*) FROM duplex.conflicts").await;
    assert_eq!(
        conflicts, 0,
        "the rolled-back attempt's records are gone; in source order there is no conflict"
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
