//! Correct on real workloads (issue 12): no false conflicts, no silent
//! truncation.
//!
//! * CHAR(n) padding (PostgreSQL keeps it, MySQL strips it) and a MySQL
//!   TIMESTAMP paired with a PostgreSQL `timestamp` checksum alike on both
//!   sides, so applied rows never look locally edited; a real edit behind
//!   duplex's back still does.
//! * An initial sync of rows already identical on both sites merges them
//!   silently and fast; only rows that differ are conflicts.
//! * Rows seeded alike with `initial_sync = false` take their first
//!   replicated updates without a conflict.
//! * A MariaDB DATETIME paired with a PostgreSQL `date` (PostgreSQL's cast
//!   would drop the time of day) is refused when the configuration is
//!   checked.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::{connect, query_i64, wait_for, wait_mysql, Pair};
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const T: Duration = Duration::from_secs(120);

/// Every conflict recorded: (kind, table, key, target site), ordered.
async fn conflicts(control: &tokio_postgres::Client) -> Vec<(String, String, String, i32)> {
    control
        .query(
            "SELECT kind, table_name, row_key, target_site FROM duplex.conflicts
              ORDER BY kind, table_name, row_key, target_site",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The (kind, key) pairs recorded, on either site.
async fn conflict_keys(control: &tokio_postgres::Client) -> BTreeSet<(String, String)> {
    conflicts(control)
        .await
        .into_iter()
        .map(|(kind, _, key, _)| (kind, key))
        .collect()
}

async fn my_i64(m: &duplex::localdb::mysql::LocalMariaDb, sql: &str) -> i64 {
    let mut c = crate::support::mysql_conn(m).await;
    let v: Option<i64> = c.query_first(sql).await.expect(sql);
    v.unwrap_or(-1)
}

/// pgbench's tables, keyed and padded as pgbench makes them (`filler`
/// CHAR(n), '' on accounts).
const PG_BENCH: &str = "
CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int NOT NULL, filler char(88));
CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84));";
const MARIA_BENCH: &str = "
CREATE TABLE pgbench_branches (bid INT PRIMARY KEY, bbalance INT NOT NULL, filler CHAR(88));
CREATE TABLE pgbench_accounts (aid INT PRIMARY KEY, bid INT NOT NULL, abalance INT NOT NULL, filler CHAR(84));";

/// pgbench-like rows (CHAR(n) padded by PostgreSQL, stripped by MariaDB)
/// created on one side and updated many times on each side in turn: every
/// applied row reads back with the checksum its marker carries, so no
/// update is taken for a local edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn char_padding_is_no_local_edit_postgres_mariadb() {
    let m = crate::support::start_mariadb(MARIA_BENCH).await;
    let p = crate::support::start_postgres(PG_BENCH).await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["pgbench_branches", "pgbench_accounts"],
    )
    .await;
    let control = connect(&url).await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 4).await;
    let pg = connect(&p.conninfo("app")).await;
    let mut my = crate::support::mysql_conn(&m).await;
    // Accounts are created on PostgreSQL (filler '' is 84 spaces there),
    // branches on MariaDB.
    pg.batch_execute(
        "INSERT INTO pgbench_accounts SELECT g, (g - 1) / 50 + 1, 0, '' FROM generate_series(1, 200) g;
         INSERT INTO pgbench_accounts VALUES (201, 1, 0, 'padded');",
    )
    .await
    .unwrap();
    my.query_drop(
        "INSERT INTO pgbench_branches VALUES (1, 0, NULL), (2, 0, ''), (3, 0, 'x'), (4, 0, 'branch four')",
    )
    .await
    .unwrap();
    wait_mysql(
        &mut my,
        "accounts on MariaDB",
        "SELECT COUNT(*) = 201 FROM pgbench_accounts",
        T,
    )
    .await;
    wait_for("branches on PostgreSQL", T, || async {
        query_i64(&pg, "SELECT count(*) FROM pgbench_branches").await == 4
    })
    .await;
    // pgbench's transaction, on each side in turn: every row is updated on
    // both sites, rows each site created and rows it received.
    for round in 1..=5i64 {
        pg.batch_execute(&format!(
            "UPDATE pgbench_accounts SET abalance = abalance + {round} WHERE aid % 5 = {};
             UPDATE pgbench_branches SET bbalance = bbalance + {round};",
            round % 5
        ))
        .await
        .unwrap();
        let want = query_i64(
            &pg,
            "SELECT (sum(abalance) * 1000 + (SELECT sum(bbalance) FROM pgbench_branches))::bigint FROM pgbench_accounts",
        )
        .await;
        let check = format!(
            "SELECT (SELECT SUM(abalance) FROM pgbench_accounts) * 1000 + (SELECT SUM(bbalance) FROM pgbench_branches) = {want}"
        );
        wait_mysql(&mut my, "PostgreSQL's round on MariaDB", &check, T).await;
        my.query_drop(format!(
            "UPDATE pgbench_accounts SET abalance = abalance - {round} WHERE aid % 7 = {};
             UPDATE pgbench_branches SET bbalance = bbalance * 2;",
            round % 7
        ))
        .await
        .unwrap();
        let want = my_i64(
            &m,
            "SELECT CAST((SELECT SUM(abalance) FROM pgbench_accounts) * 1000 + (SELECT SUM(bbalance) FROM pgbench_branches) AS SIGNED)",
        )
        .await;
        wait_for("MariaDB's round on PostgreSQL", T, || async {
            query_i64(
                &pg,
                "SELECT coalesce(sum(abalance) * 1000 + (SELECT sum(bbalance) FROM pgbench_branches), -1)::bigint FROM pgbench_accounts",
            )
            .await
                == want
        })
        .await;
    }
    assert_eq!(
        conflicts(&control).await,
        vec![],
        "updates of rows nobody else edited are no conflicts"
    );
    let (ok, out) = crate::support::duplex_cli(&url, &["check"]);
    assert!(ok, "both sites hold the same rows: {out}");
    run.shutdown().await;
}

/// The same between two PostgreSQL sites: pgoutput sends CHAR(n) padded,
/// and the target reads it back through `::text`, which strips the padding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn char_padding_is_no_local_edit_postgres_postgres() {
    let pair = Pair::start(PG_BENCH, &["pgbench_branches", "pgbench_accounts"]).await;
    let control = connect(&pair.control_url).await;
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 4).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute(
        "INSERT INTO pgbench_accounts SELECT g, 1, 0, '' FROM generate_series(1, 100) g;
         INSERT INTO pgbench_branches VALUES (1, 0, 'x'), (2, 0, NULL);",
    )
    .await
    .unwrap();
    let sums = "SELECT coalesce(sum(abalance) * 1000 + (SELECT sum(bbalance) FROM pgbench_branches), -1)::bigint FROM pgbench_accounts";
    for round in 1..=4i64 {
        let (from, to) = if round % 2 == 1 { (&a, &b) } else { (&b, &a) };
        from.batch_execute(&format!(
            "UPDATE pgbench_accounts SET abalance = abalance + {round};
             UPDATE pgbench_branches SET bbalance = bbalance + {round};"
        ))
        .await
        .unwrap();
        let want = query_i64(from, sums).await;
        wait_for("the round on the other site", T, || async {
            query_i64(to, sums).await == want
        })
        .await;
    }
    assert_eq!(conflicts(&control).await, vec![]);
    run.shutdown().await;
}

const PG_EVENTS: &str = "CREATE TABLE ev (id int PRIMARY KEY, n int NOT NULL, at timestamp(6));";
const MARIA_EVENTS: &str =
    "CREATE TABLE ev (id INT PRIMARY KEY, n INT NOT NULL, at TIMESTAMP(6) NULL DEFAULT NULL);";

/// A MariaDB TIMESTAMP paired with a PostgreSQL `timestamp` (without time
/// zone): rows applied on either side and updated again are no local edits.
/// A real edit behind duplex's back still is one, on either engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_timestamp_with_postgres_timestamp_checksums_alike() {
    let m = crate::support::start_mariadb(MARIA_EVENTS).await;
    let p = crate::support::start_postgres(PG_EVENTS).await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["ev"],
    )
    .await;
    let control = connect(&url).await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 2).await;
    let pg = connect(&p.conninfo("app")).await;
    let mut my = crate::support::mysql_conn(&m).await;
    // Rows 1..20 from MariaDB, 101..120 from PostgreSQL.
    my.query_drop(
        "INSERT INTO ev SELECT seq, 0, TIMESTAMP '2024-01-02 13:45:00.123456' + INTERVAL seq HOUR FROM seq_1_to_20",
    )
    .await
    .unwrap();
    pg.batch_execute(
        "INSERT INTO ev SELECT g, 0, timestamp '2025-06-07 08:09:10.5' + g * interval '1 minute' FROM generate_series(101, 120) g;
         INSERT INTO ev VALUES (121, 0, NULL);",
    )
    .await
    .unwrap();
    let pg_sum = || async { query_i64(&pg, "SELECT count(*) * 1000000 + sum(n) FROM ev").await };
    wait_for("rows on PostgreSQL", T, || async {
        pg_sum().await == 41_000_000
    })
    .await;
    wait_mysql(
        &mut my,
        "rows on MariaDB",
        "SELECT COUNT(*) * 1000000 + SUM(n) = 41000000 FROM ev",
        T,
    )
    .await;
    // Each side updates every row (its own and the ones it received), in turn.
    for round in 1..=3i64 {
        my.query_drop("UPDATE ev SET n = n + 1").await.unwrap();
        let want = 41_000_000 + 41 * (2 * round - 1);
        wait_for("MariaDB's updates on PostgreSQL", T, || async {
            pg_sum().await == want
        })
        .await;
        pg.batch_execute("UPDATE ev SET n = n + 1").await.unwrap();
        wait_mysql(
            &mut my,
            "PostgreSQL's updates on MariaDB",
            &format!("SELECT COUNT(*) * 1000000 + SUM(n) = {} FROM ev", want + 41),
            T,
        )
        .await;
    }
    assert_eq!(
        conflicts(&control).await,
        vec![],
        "no update was concurrent"
    );
    let (ok, out) = crate::support::duplex_cli(&url, &["check"]);
    assert!(ok, "{out}");

    // A real edit behind duplex's back on PostgreSQL (under a replication
    // origin of duplex's own, so it is never captured) of row 3, last
    // written there by duplex. The next update from MariaDB finds it.
    my.query_drop("UPDATE ev SET n = n + 1 WHERE id = 3")
        .await
        .unwrap();
    let want = 41_000_000 + 41 * 6 + 1;
    wait_for("row 3 on PostgreSQL", T, || async {
        pg_sum().await == want
    })
    .await;
    for sql in [
        "SELECT pg_replication_origin_create('duplex_drift')",
        "SELECT pg_replication_origin_session_setup('duplex_drift')",
        "UPDATE ev SET at = at + interval '1 second' WHERE id = 3",
        "SELECT pg_replication_origin_session_reset()",
    ] {
        pg.batch_execute(sql).await.unwrap();
    }
    // And on MariaDB, with the binlog off and the stamp column left alone:
    // row 104 was last written by duplex there.
    my.query_drop(
        "SET SESSION sql_log_bin = 0;
         UPDATE ev SET n = n + 1000, _duplex_ts = _duplex_ts WHERE id = 104;
         SET SESSION sql_log_bin = 1;",
    )
    .await
    .unwrap();
    my.query_drop("UPDATE ev SET n = -1 WHERE id = 3")
        .await
        .unwrap();
    pg.batch_execute("UPDATE ev SET n = -1 WHERE id = 104")
        .await
        .unwrap();
    wait_for("both edits recorded", T, || async {
        conflicts(&control).await.len() >= 2
    })
    .await;
    assert_eq!(
        conflicts(&control).await,
        vec![
            (
                "unsynced_local_edit".to_string(),
                "app.ev".to_string(),
                "id=3".to_string(),
                1
            ),
            (
                "unsynced_local_edit".to_string(),
                "public.ev".to_string(),
                "id=104".to_string(),
                2
            ),
        ]
    );
    run.shutdown().await;
}

/// 20,000 rows identical on both sites, 3 that differ and one only on each
/// site: the initial sync merges the identical ones silently (no conflict
/// records) and records the 3 differing rows (each on both sites).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_merges_identical_rows_silently() {
    const N: i64 = 20_000;
    let schema = "CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL, qty int, code char(8), at timestamp);";
    let pair = Pair::start(schema, &["item"]).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let control = connect(&pair.control_url).await;
    let fill = format!(
        "INSERT INTO item SELECT g, 'item ' || g, g % 100, 'c' || (g % 7), timestamp '2024-01-01' + g * interval '1 second'
           FROM generate_series(1, {N}) g"
    );
    a.batch_execute(&fill).await.unwrap();
    b.batch_execute(&fill).await.unwrap();
    a.batch_execute(&format!(
        "UPDATE item SET qty = -1 WHERE id IN (5, 500, 5000); INSERT INTO item VALUES ({}, 'only a', 1, NULL, NULL)",
        N + 1
    ))
    .await
    .unwrap();
    b.batch_execute(&format!(
        "INSERT INTO item VALUES ({}, 'only b', 2, NULL, NULL)",
        N + 2
    ))
    .await
    .unwrap();
    let started = Instant::now();
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both copies", T, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.snapshot_progress WHERE state = 'done'",
        )
        .await
            == 2
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let per_direction: Vec<(i32, f64)> = crate::support::query_rows(&control, "SELECT source_site, rows_done / greatest(extract(epoch FROM finished_at - started_at), 0.001)::float8
               FROM duplex.snapshot_progress ORDER BY source_site").await;
    eprintln!(
        "initial sync of {N} identical rows each way: {elapsed:.1} s from start to both copies done; \
         rows/s per direction (source site, rows/s): {per_direction:?}"
    );
    // Each differing row is a conflict on the site that meets it
    // concurrently: both, or only one when the other direction's copy
    // already read the version the first one wrote. Nothing else is one.
    assert_eq!(
        conflict_keys(&control).await,
        [
            ("insert_insert", "id=5"),
            ("insert_insert", "id=500"),
            ("insert_insert", "id=5000")
        ]
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .into_iter()
        .collect::<BTreeSet<_>>()
    );
    let recorded = conflicts(&control).await.len();
    assert!((3..=6).contains(&recorded), "{recorded} records");
    wait_for("the union on both sites", T, || async {
        query_i64(&a, "SELECT count(*) FROM item").await == N + 2
            && query_i64(&b, "SELECT count(*) FROM item").await == N + 2
    })
    .await;
    // The settled version of each conflicting row flows back to the other
    // site after both copies are done: the check compares once it has.
    let settled =
        "SELECT string_agg(id || ':' || qty, ',' ORDER BY id) FROM item WHERE id IN (5, 500, 5000)";
    let deadline = Instant::now() + T;
    loop {
        let x: Option<String> = a.query_one(settled, &[]).await.unwrap().get(0);
        let y: Option<String> = b.query_one(settled, &[]).await.unwrap().get(0);
        if x == y {
            break;
        }
        if Instant::now() >= deadline {
            let records: Vec<String> = crate::support::texts(
                &control,
                "SELECT concat_ws(' ', target_site, row_key, kind, outcome, local_version::text, incoming_version::text)
                   FROM duplex.conflicts ORDER BY conflict_id",
            )
            .await;
            let markers = "SELECT string_agg(id || ':' || qty || ' ' || coalesce(_duplex::text, 'null'), E'\n' ORDER BY id) FROM item WHERE id IN (5, 500, 5000)";
            let mx: Option<String> = a.query_one(markers, &[]).await.unwrap().get(0);
            let my: Option<String> = b.query_one(markers, &[]).await.unwrap().get(0);
            panic!(
                "the conflicting rows did not settle alike: site 1 {x:?}, site 2 {y:?}\nrows on site 1:\n{}\nrows on site 2:\n{}\nconflicts:\n{}",
                mx.unwrap_or_default(),
                my.unwrap_or_default(),
                records.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["check"]);
    assert!(ok, "{out}");
    // The merged rows are synced: an update after the copy is no conflict.
    let sum = "SELECT sum(qty)::bigint FROM item WHERE id <= 200";
    let before = query_i64(&a, sum).await;
    a.batch_execute("UPDATE item SET qty = qty + 1 WHERE id <= 100")
        .await
        .unwrap();
    b.batch_execute("UPDATE item SET qty = qty + 1 WHERE id > 100 AND id <= 200")
        .await
        .unwrap();
    wait_for("the updates on both sites", T, || async {
        query_i64(&a, sum).await == before + 200 && query_i64(&b, sum).await == before + 200
    })
    .await;
    assert_eq!(conflicts(&control).await.len(), recorded);
    run.shutdown().await;
}

/// The same across engines, where rows compare equal only after
/// normalisation: CHAR(n) padding, MariaDB TIMESTAMP against PostgreSQL
/// `timestamp`, DECIMAL scale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_merges_identical_rows_across_engines() {
    let p = crate::support::start_postgres(
        "CREATE TABLE item (id int PRIMARY KEY, code char(8), at timestamp(6), price numeric(10,2), note text);",
    )
    .await;
    let m = crate::support::start_mariadb(
        "CREATE TABLE item (id INT PRIMARY KEY, code CHAR(8), at TIMESTAMP(6) NULL DEFAULT NULL, price DECIMAL(10,2), note TEXT);",
    )
    .await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["item"],
    )
    .await;
    let control = connect(&url).await;
    let pg = connect(&p.conninfo("app")).await;
    let mut my = crate::support::mysql_conn(&m).await;
    pg.batch_execute(
        "INSERT INTO item SELECT g, 'c' || (g % 7), timestamp '2024-01-01 12:00:00.25' + g * interval '1 second', g * 1.5, 'note ' || g
           FROM generate_series(1, 1000) g;
         UPDATE item SET note = 'pg' WHERE id IN (7, 700);",
    )
    .await
    .unwrap();
    my.query_drop(
        "INSERT INTO item SELECT seq, CONCAT('c', seq % 7), TIMESTAMP '2024-01-01 12:00:00.25' + INTERVAL seq SECOND, seq * 1.5, CONCAT('note ', seq)
           FROM seq_1_to_1000",
    )
    .await
    .unwrap();
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 2).await;
    // The copies are done: every record is written.
    assert_eq!(
        conflict_keys(&control).await,
        [("insert_insert", "id=7"), ("insert_insert", "id=700")]
            .map(|(k, r)| (k.to_string(), r.to_string()))
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    // The settled versions flow back after the copies: compare once they have.
    let deadline = Instant::now() + T;
    loop {
        let x: Option<String> = pg
            .query_one(
                "SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM item WHERE id IN (7, 700)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let y: Option<String> = my
            .query_first(
                "SELECT GROUP_CONCAT(CONCAT(id, ':', note) ORDER BY id) FROM item WHERE id IN (7, 700)",
            )
            .await
            .unwrap()
            .flatten();
        if x == y {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the conflicting rows did not settle alike: {x:?} on PostgreSQL, {y:?} on MariaDB"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (ok, out) = crate::support::duplex_cli(&url, &["check"]);
    assert!(ok, "{out}");
    run.shutdown().await;
}

/// Rows seeded alike on both sites before the link starts, with
/// `initial_sync = false`: each side's updates reach the other without a
/// conflict (the target's row is the update's old image, never changed
/// since the seed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_rows_take_updates_without_conflicts() {
    let schema = "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL, label text);";
    let pair = Pair::start(schema, &["counters"]).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let control = connect(&pair.control_url).await;
    for c in [&a, &b] {
        c.batch_execute(
            "INSERT INTO counters SELECT g, 0, 'counter ' || g FROM generate_series(1, 50) g",
        )
        .await
        .unwrap();
    }
    control
        .batch_execute("UPDATE duplex.link_tables SET initial_sync = false")
        .await
        .unwrap();
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 2).await;
    let sum = "SELECT sum(n)::bigint FROM counters";
    // Site a updates half the rows, site b the other half, then each side
    // updates rows the other one changed.
    a.batch_execute("UPDATE counters SET n = n + 1 WHERE id <= 25")
        .await
        .unwrap();
    b.batch_execute("UPDATE counters SET n = n + 10 WHERE id > 25")
        .await
        .unwrap();
    wait_for("both halves on both sites", T, || async {
        query_i64(&a, sum).await == 25 + 250 && query_i64(&b, sum).await == 25 + 250
    })
    .await;
    a.batch_execute("UPDATE counters SET n = n + 100 WHERE id > 40")
        .await
        .unwrap();
    wait_for("a's second update on b", T, || async {
        query_i64(&b, sum).await == 275 + 1000
    })
    .await;
    b.batch_execute("UPDATE counters SET n = n + 100 WHERE id <= 10")
        .await
        .unwrap();
    wait_for("b's second update on a", T, || async {
        query_i64(&a, sum).await == 1275 + 1000
    })
    .await;
    // The same site changes a row again (a applied its first change over
    // the seed), and deletes one.
    b.batch_execute(
        "UPDATE counters SET n = n + 1 WHERE id = 26; DELETE FROM counters WHERE id = 27",
    )
    .await
    .unwrap();
    wait_for("b's third change on a", T, || async {
        query_i64(&a, sum).await == 2275 + 1 - 10
            && query_i64(&a, "SELECT count(*) FROM counters").await == 49
    })
    .await;
    assert_eq!(conflicts(&control).await, vec![]);
    assert_eq!(
        crate::support::table_rows(&a, "counters").await,
        crate::support::table_rows(&b, "counters").await
    );
    run.shutdown().await;
}

/// A seeded row that a site changed after the link began capturing it is
/// no longer the seed, even when it is changed back to the seeded content:
/// that site's versions are in its stream, so an update from the peer is
/// concurrent with them and settled by the policy on both sides alike.
/// (Taking it for the seed would apply the peer's older update on one side
/// while the other side keeps the later version: the sites would diverge.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_row_changed_after_the_link_started_is_no_seed() {
    let schema = "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL, label text);";
    let pair = Pair::start(schema, &["counters"]).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let control = connect(&pair.control_url).await;
    for c in [&a, &b] {
        c.batch_execute("INSERT INTO counters SELECT g, 0, 'c' || g FROM generate_series(1, 5) g")
            .await
            .unwrap();
    }
    control
        .batch_execute("UPDATE duplex.link_tables SET initial_sync = false")
        .await
        .unwrap();
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 2).await;
    run.shutdown().await;
    // While duplex is stopped (both sites keep capturing): a writes first,
    // then b changes the row and changes it back to the seeded content.
    a.batch_execute("UPDATE counters SET n = 7 WHERE id = 3")
        .await
        .unwrap();
    b.batch_execute("UPDATE counters SET n = 5 WHERE id = 3")
        .await
        .unwrap();
    b.batch_execute("UPDATE counters SET n = 0 WHERE id = 3")
        .await
        .unwrap();
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex again");
    // Last writer wins: b's last version (n = 0) on both sites.
    let row3 = "SELECT n::bigint FROM counters WHERE id = 3";
    wait_for("every change applied", T, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.conflicts WHERE row_key = 'id=3' AND kind = 'update_update'",
        )
        .await
            >= 2
    })
    .await;
    wait_for("row 3 settled alike", T, || async {
        query_i64(&a, row3).await == 0 && query_i64(&b, row3).await == 0
    })
    .await;
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["check"]);
    assert!(ok, "{out}");
    run.shutdown().await;
}

/// The same between PostgreSQL and MariaDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_rows_take_updates_without_conflicts_across_engines() {
    let p = crate::support::start_postgres(
        "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL, code char(6), at timestamp);",
    )
    .await;
    let m = crate::support::start_mariadb(
        "CREATE TABLE counters (id INT PRIMARY KEY, n INT NOT NULL, code CHAR(6), at TIMESTAMP NULL DEFAULT NULL);",
    )
    .await;
    let pg = connect(&p.conninfo("app")).await;
    let mut my = crate::support::mysql_conn(&m).await;
    pg.batch_execute(
        "INSERT INTO counters SELECT g, 0, 'c' || g, timestamp '2024-05-06 07:08:09' FROM generate_series(1, 30) g",
    )
    .await
    .unwrap();
    my.query_drop(
        "INSERT INTO counters SELECT seq, 0, CONCAT('c', seq), TIMESTAMP '2024-05-06 07:08:09' FROM seq_1_to_30",
    )
    .await
    .unwrap();
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["counters"],
    )
    .await;
    let control = connect(&url).await;
    control
        .batch_execute("UPDATE duplex.link_tables SET initial_sync = false")
        .await
        .unwrap();
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 2).await;
    pg.batch_execute("UPDATE counters SET n = n + 1 WHERE id <= 15")
        .await
        .unwrap();
    my.query_drop("UPDATE counters SET n = n + 10 WHERE id > 15")
        .await
        .unwrap();
    wait_mysql(
        &mut my,
        "PostgreSQL's updates on MariaDB",
        "SELECT SUM(n) = 165 FROM counters",
        T,
    )
    .await;
    wait_for("MariaDB's updates on PostgreSQL", T, || async {
        query_i64(&pg, "SELECT sum(n)::bigint FROM counters").await == 165
    })
    .await;
    assert_eq!(conflicts(&control).await, vec![]);
    let (ok, out) = crate::support::duplex_cli(&url, &["check"]);
    assert!(ok, "{out}");
    run.shutdown().await;
}

/// The same between two MariaDB sites (each records the other's first
/// binlog position, and its own capture start, when the link is set up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_rows_take_updates_without_conflicts_mariadb_pair() {
    let schema = "CREATE TABLE counters (id INT PRIMARY KEY, n INT NOT NULL, code CHAR(6));
                  INSERT INTO counters SELECT seq, 0, CONCAT('c', seq) FROM seq_1_to_30;";
    let (m1, m2) = (
        crate::support::start_mariadb(schema).await,
        crate::support::start_mariadb(schema).await,
    );
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "a", "mysql", m1.url("app")),
            (2, "b", "mysql", m2.url("app")),
        ],
        &["counters"],
    )
    .await;
    let control = connect(&url).await;
    control
        .batch_execute("UPDATE duplex.link_tables SET initial_sync = false")
        .await
        .unwrap();
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 2).await;
    assert_eq!(
        query_i64(&control, "SELECT count(*) FROM duplex.capture_starts").await,
        2,
        "each site's capture start is recorded"
    );
    let (mut a, mut b) = (
        crate::support::mysql_conn(&m1).await,
        crate::support::mysql_conn(&m2).await,
    );
    a.query_drop("UPDATE counters SET n = n + 1 WHERE id <= 15")
        .await
        .unwrap();
    b.query_drop("UPDATE counters SET n = n + 10 WHERE id > 15")
        .await
        .unwrap();
    b.query_drop("DELETE FROM counters WHERE id = 30")
        .await
        .unwrap();
    for (c, what) in [(&mut a, "on a"), (&mut b, "on b")] {
        wait_mysql(
            c,
            what,
            "SELECT SUM(n) = 155 AND COUNT(*) = 29 FROM counters",
            T,
        )
        .await;
    }
    assert_eq!(conflicts(&control).await, vec![]);
    run.shutdown().await;
}

/// A MariaDB DATETIME paired with a PostgreSQL `date`: PostgreSQL's cast
/// would keep the date and drop the time of day. The pair is refused when
/// the configuration is checked (whatever the values, midnight included),
/// with the columns named; nothing is copied or streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datetime_into_postgres_date_is_refused() {
    let p = crate::support::start_postgres(
        "CREATE TABLE d (id int PRIMARY KEY, day date); CREATE TABLE ok (id int PRIMARY KEY);",
    )
    .await;
    let m = crate::support::start_mariadb(
        "CREATE TABLE d (id INT PRIMARY KEY, day DATETIME); CREATE TABLE ok (id INT PRIMARY KEY);
         INSERT INTO d VALUES (1, '2024-01-02 13:45:00'), (2, '2024-01-03 00:00:00');",
    )
    .await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["d"],
    )
    .await;
    let control = connect(&url).await;
    let (ok, out) = crate::support::duplex_cli(&url, &["config", "check"]);
    assert!(
        !ok && out.contains("day") && out.contains("datetime") && out.contains("date"),
        "config check must refuse the pair: {out}"
    );
    // The table is refused alone, with its reason (the link itself runs).
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("duplex starts; the table is refused alone");
    crate::support::wait_for("the table refused with its reason", T, || async {
        crate::support::query_bool(
            &control,
            "SELECT coalesce(bool_and(state = 'refused' AND reason LIKE '%day%' AND reason LIKE '%time of day%'), false)
               FROM duplex.table_config_status WHERE link_id = 1 AND table_name = 'd'",
        )
        .await
    })
    .await;
    run.shutdown().await;
    let pg = connect(&p.conninfo("app")).await;
    assert_eq!(query_i64(&pg, "SELECT count(*) FROM d").await, 0);

    // One way, a date into a DATETIME loses nothing (midnight): allowed.
    control
        .batch_execute("UPDATE duplex.link_tables SET direction = 'a_to_b'")
        .await
        .unwrap();
    pg.batch_execute("INSERT INTO d VALUES (10, '2024-02-03')")
        .await
        .unwrap();
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("one way, date -> DATETIME starts");
    let mut my = crate::support::mysql_conn(&m).await;
    wait_mysql(
        &mut my,
        "the date on MariaDB",
        "SELECT day = '2024-02-03 00:00:00' FROM d WHERE id = 10",
        T,
    )
    .await;
    run.shutdown().await;
}

/// Values a PostgreSQL column would round on assignment (more fractional
/// digits than `numeric(p,s)` or `timestamp(p)` keeps, a double that `real`
/// does not hold exactly) are refused and quarantined with the reason, as
/// the MySQL direction refuses them; exact values of the same columns flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_postgresql_would_round_are_quarantined() {
    let p = crate::support::start_postgres(
        "CREATE TABLE r (id int PRIMARY KEY, price numeric(10,2), at timestamp(0), f real);",
    )
    .await;
    let m = crate::support::start_mariadb(
        "CREATE TABLE r (id INT PRIMARY KEY, price DECIMAL(10,4), at DATETIME(6), f DOUBLE);",
    )
    .await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["r"],
    )
    .await;
    let control = connect(&url).await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 2).await;
    let mut my = crate::support::mysql_conn(&m).await;
    my.query_drop(
        "INSERT INTO r VALUES (1, 1.5, '2024-01-02 13:45:00', 0.5);
         INSERT INTO r VALUES (2, 1.2345, '2024-01-02 13:45:00', 0.5);
         INSERT INTO r VALUES (3, 1.5, '2024-01-02 13:45:00.25', 0.5);
         INSERT INTO r VALUES (4, 1.5, '2024-01-02 13:45:00', 0.1);
         INSERT INTO r VALUES (5, 2.25, '2024-01-03 00:00:00', 0.25);",
    )
    .await
    .unwrap();
    let pg = connect(&p.conninfo("app")).await;
    wait_for("the exact rows on PostgreSQL", T, || async {
        query_i64(&pg, "SELECT count(*) FROM r").await == 2
    })
    .await;
    wait_for("three changes quarantined", T, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.quarantine WHERE confirmed",
        )
        .await
            == 3
    })
    .await;
    let reasons: Vec<(String, String)> = crate::support::query_rows(
        &control,
        "SELECT row_key, reason FROM duplex.quarantine ORDER BY row_key",
    )
    .await;
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].0 == "id=2"
            && reasons[0].1.contains("price")
            && reasons[0]
                .1
                .contains("numeric(10,2) keeps 2 and would round"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == "id=3"
            && reasons[1].1.contains("at")
            && reasons[1]
                .1
                .contains("timestamp(0) keeps 0 and would round"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].0 == "id=4"
            && reasons[2].1.contains(" f:")
            && reasons[2].1.contains("single precision"),
        "{reasons:?}"
    );
    assert_eq!(
        crate::support::table_rows(&pg, "r").await,
        vec![
            "(1,1.50,\"2024-01-02 13:45:00\",0.5)".to_string(),
            "(5,2.25,\"2024-01-03 00:00:00\",0.25)".to_string()
        ]
    );
    run.shutdown().await;
}
