//! `duplex check`: both sites compared row by row while the link runs.
//! Identical copies check clean (also across engines, where a PostgreSQL row
//! and a MariaDB row are equal when they mean the same thing); drift made on
//! purpose, with replication of the drifting change suppressed, is found
//! with its keys and recorded in duplex.parity_checks / parity_differences.

use std::time::Duration;

use crate::support::{connect, duplex_cli, query_i64, wait_for, Pair};
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const T: Duration = Duration::from_secs(60);

const SCHEMA_PG: &str = "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamp, flag boolean);
     CREATE TABLE pair_key (a int, b varchar(20), v int, PRIMARY KEY (a, b));";

async fn row_count(c: &tokio_postgres::Client, table: &str) -> i64 {
    query_i64(c, &format!("SELECT count(*) FROM {table}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_drift_between_two_postgresql_sites() {
    let pair = Pair::start(SCHEMA_PG, &["t", "pair_key"]).await;
    let a = pair.client_a().await;
    let b = pair.client_b().await;
    let control = connect(&pair.control_url).await;
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    a.batch_execute(
        "INSERT INTO t SELECT g, 'name ' || g, g * 1.25, timestamp '2026-01-01' + g * interval '1 minute', g % 2 = 0
           FROM generate_series(1, 2500) g;
         INSERT INTO pair_key SELECT g % 7, 'k' || g, g FROM generate_series(1, 300) g;",
    )
    .await
    .unwrap();
    wait_for("the rows on site b", T, || async {
        row_count(&b, "t").await == 2500 && row_count(&b, "pair_key").await == 300
    })
    .await;

    let (ok, out) = duplex_cli(&pair.control_url, &["check", "--chunk", "400"]);
    assert!(ok, "check of identical sites: {out}");
    assert!(
        out.contains("table public.t: identical (2500 rows on a, 2500 on b"),
        "{out}"
    );
    assert!(
        out.contains("table public.pair_key: identical (300 rows"),
        "{out}"
    );

    // Drift on site b that duplex never sees: a session under a replication
    // origin of duplex's own is dropped by its reader like an echo.
    // (Each call its own transaction: the origin must still be set when the
    // drifting transaction commits.)
    for sql in [
        "SELECT pg_replication_origin_create('duplex_drift')",
        "SELECT pg_replication_origin_session_setup('duplex_drift')",
        "BEGIN;
         UPDATE t SET name = 'drifted' WHERE id = 7;
         UPDATE t SET amount = 0.01 WHERE id = 8;
         DELETE FROM t WHERE id = 9;
         INSERT INTO t VALUES (9001, 'only on b', 1, now(), true);
         UPDATE pair_key SET v = -1 WHERE a = 3 AND b = 'k10';
         COMMIT;",
        "SELECT pg_replication_origin_session_reset()",
    ] {
        b.batch_execute(sql).await.unwrap();
    }
    // Writes keep flowing meanwhile: they are not differences.
    a.batch_execute("UPDATE t SET name = 'live' WHERE id BETWEEN 100 AND 120")
        .await
        .unwrap();
    let (ok, out) = duplex_cli(&pair.control_url, &["check", "--table", "t"]);
    assert!(!ok, "check must exit 1 on drift: {out}");
    assert!(out.contains("table public.t: 4 difference(s)"), "{out}");
    assert!(out.contains("differs: id=7 (columns name)"), "{out}");
    assert!(out.contains("differs: id=8 (columns amount)"), "{out}");
    assert!(out.contains("missing on b: id=9"), "{out}");
    assert!(out.contains("only on b: id=9001"), "{out}");
    assert!(!out.contains("pair_key"), "--table limits the check: {out}");
    let (ok, out) = duplex_cli(&pair.control_url, &["check", "--table", "pair_key"]);
    assert!(!ok, "{out}");
    assert!(out.contains("differs: a=3, b=k10 (columns v)"), "{out}");

    // Recorded where a DBA looks.
    assert_eq!(
        query_i64(
            &control,
            "SELECT missing * 100 + extra * 10 + differing FROM duplex.parity_overview WHERE table_name = 'public.t'"
        )
        .await,
        112
    );
    assert_eq!(
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.parity_differences d JOIN duplex.parity_overview o USING (check_id)
              WHERE o.table_name = 'public.t'"
        )
        .await,
        4
    );
    assert_eq!(
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.parity_checks WHERE table_name = 'public.t' AND status = 'clean'"
        )
        .await,
        1,
        "the earlier clean run stays as history"
    );

    // Repair from site a: a dry run changes nothing, then b is put right
    // through ordinary writes that duplex replicates like a user's.
    let (ok, out) = duplex_cli(
        &pair.control_url,
        &["repair", "--from", "a", "--table", "t", "--dry-run"],
    );
    assert!(!ok, "a dry run leaves the differences: {out}");
    assert!(out.contains("would write 4 row(s)"), "{out}");
    assert!(out.contains("update id=7 on b (differs)"), "{out}");
    assert!(out.contains("insert id=9 on b (missing)"), "{out}");
    assert!(out.contains("delete id=9001 on b (extra)"), "{out}");
    assert_eq!(
        query_i64(&b, "SELECT count(*) FROM t WHERE id = 9001").await,
        1,
        "a dry run wrote"
    );
    let (ok, out) = duplex_cli(&pair.control_url, &["repair", "--from", "a"]);
    assert!(ok, "repair: {out}");
    assert!(out.contains("did write 4 row(s)"), "{out}");
    assert!(out.contains("table public.t: identical"), "{out}");
    assert!(out.contains("table public.pair_key: identical"), "{out}");
    // The repair flowed back through duplex without a conflict or a change
    // on a, and the rows keep syncing both ways afterwards.
    b.batch_execute("UPDATE t SET name = 'after repair' WHERE id = 7")
        .await
        .unwrap();
    wait_for("a change of a repaired row on a", T, || async {
        query_i64(
            &a,
            "SELECT count(*) FROM t WHERE id = 7 AND name = 'after repair'",
        )
        .await
            == 1
    })
    .await;
    let (ok, out) = duplex_cli(&pair.control_url, &["check"]);
    assert!(ok, "a second check: {out}");
    assert_eq!(
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.conflicts WHERE row_key IN ('id=7', 'id=8', 'id=9', 'id=9001')
                AND NOT (row_key = 'id=9001' AND kind = 'delete_delete' AND outcome = 'already_deleted')"
        )
        .await,
        0,
        "a repair must not look like a conflict (the delete of a row site a never had arrives there as already deleted)"
    );
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_compares_postgresql_and_mariadb_rows_by_meaning() {
    crate::support::init_tracing();
    let pg = crate::support::start_postgres(
        "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamp, flag boolean);",
    )
    .await;
    let my = crate::support::start_mariadb(
        "CREATE TABLE t (id INT PRIMARY KEY, name TEXT NULL, amount DECIMAL(12,2) NULL, at DATETIME(6) NULL, flag BOOLEAN NULL)
             CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;",
    )
    .await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", pg.conninfo("app")),
            (2, "maria", "mysql", my.url("app")),
        ],
        &["t"],
    )
    .await;
    let a = connect(&pg.conninfo("app")).await;
    let mut b = crate::support::mysql_conn(&my).await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    a.batch_execute(
        "INSERT INTO t SELECT g, 'name ' || g, g * 1.25, timestamp '2026-01-01' + g * interval '1 second', g % 2 = 0
           FROM generate_series(1, 1500) g;",
    )
    .await
    .unwrap();
    b.query_drop(
        "INSERT INTO t VALUES (5000, 'from maria', 2.50, '2026-02-03 04:05:06.789', TRUE)",
    )
    .await
    .unwrap();
    wait_for("the rows on both sites", T, || async {
        let n: Option<i64> = crate::support::mysql_conn(&my)
            .await
            .query_first("SELECT COUNT(*) FROM t")
            .await
            .unwrap();
        n == Some(1501) && row_count(&a, "t").await == 1501
    })
    .await;
    let (ok, out) = duplex_cli(&url, &["check"]);
    assert!(ok, "check across engines: {out}");
    assert!(
        out.contains("identical (1501 rows on pg, 1501 on maria"),
        "{out}"
    );

    // Drift on MariaDB with the binlog off for the session: never replicated.
    b.query_drop(
        "SET SESSION sql_log_bin = 0;
         UPDATE t SET at = '2030-01-01 00:00:00' WHERE id = 11;
         UPDATE t SET flag = NOT flag WHERE id = 12;
         SET SESSION sql_log_bin = 1;",
    )
    .await
    .unwrap();
    let (ok, out) = duplex_cli(&url, &["check"]);
    assert!(!ok, "{out}");
    assert!(out.contains("2 difference(s)"), "{out}");
    assert!(out.contains("differs: id=11 (columns at)"), "{out}");
    assert!(out.contains("differs: id=12 (columns flag)"), "{out}");
    // By policy (last writer wins): MariaDB's later drift wins, and
    // PostgreSQL is written.
    let (ok, out) = duplex_cli(&url, &["repair", "--by-policy"]);
    assert!(ok, "repair by policy: {out}");
    assert!(out.contains("update id=11 on pg (differs)"), "{out}");
    assert!(
        out.contains("identical (1501 rows on pg, 1501 on maria"),
        "{out}"
    );
    assert_eq!(
        query_i64(
            &a,
            "SELECT count(*) FROM t WHERE id = 11 AND at = '2030-01-01'"
        )
        .await,
        1
    );
    run.shutdown().await;
}
