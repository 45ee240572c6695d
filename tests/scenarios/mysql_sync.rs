//! MariaDB <-> MariaDB and PostgreSQL <-> MariaDB through the same canonical path.

use std::sync::atomic::Ordering;
use std::time::Duration;

use duplex::localdb::mysql::{LocalMariaDb, LocalMariaDbOptions};
use duplex::localdb::pg::{LocalPgOptions, LocalPostgres};
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const MYSQL_SCHEMA: &str = "CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200) NULL, score DECIMAL(10,2) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin";
const PG_SCHEMA: &str = "CREATE TABLE customers (id bigint PRIMARY KEY, name varchar(100) NOT NULL, email varchar(200), score numeric(10,2))";

async fn mysql_rows(
    c: &mut mysql_async::Conn,
) -> Vec<(i64, String, Option<String>, Option<String>)> {
    c.query("SELECT id, name, email, CAST(score AS CHAR) FROM customers ORDER BY id")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_to_mariadb_both_ways_without_echo() {
    let (a, b) = (
        crate::support::start_mariadb(MYSQL_SCHEMA).await,
        crate::support::start_mariadb(MYSQL_SCHEMA).await,
    );
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "a", "mysql", a.url("app")),
            (2, "b", "mysql", b.url("app")),
        ],
        &["customers"],
    )
    .await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    // The counts below are the stream's: let the (empty) initial copy end first.
    crate::support::wait_initial_sync(&crate::support::connect(&url).await, 2).await;
    let (mut ca, mut cb) = (
        crate::support::mysql_conn(&a).await,
        crate::support::mysql_conn(&b).await,
    );
    ca.query_drop("INSERT INTO customers (id, name, email, score) VALUES (1, 'Ada', 'ada@example.com', 12.50)").await.unwrap();
    crate::support::wait_mysql(
        &mut cb,
        "insert a->b",
        "SELECT COUNT(*) FROM customers WHERE id = 1",
        Duration::from_secs(30),
    )
    .await;
    cb.query_drop("UPDATE customers SET email = 'ada@b' WHERE id = 1")
        .await
        .unwrap();
    crate::support::wait_mysql(
        &mut ca,
        "update b->a",
        "SELECT COUNT(*) FROM customers WHERE email = 'ada@b'",
        Duration::from_secs(30),
    )
    .await;
    cb.query_drop("START TRANSACTION; INSERT INTO customers (id, name, email, score) VALUES (2, 'Grace', NULL, NULL); INSERT INTO customers (id, name, email, score) VALUES (3, 'Ken', NULL, 1.00); DELETE FROM customers WHERE id = 1; COMMIT")
        .await
        .unwrap();
    crate::support::wait_mysql(
        &mut ca,
        "transaction b->a",
        "SELECT COUNT(*) = 2 AND MIN(id) = 2 FROM customers",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(mysql_rows(&mut ca).await, mysql_rows(&mut cb).await);
    let ab = run.stats(1, 1).unwrap();
    let ba = run.stats(1, 2).unwrap();
    // Exact counts: each user transaction applied once, each applier commit seen once as an echo.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ab.echo_txns_skipped.load(Ordering::Relaxed) < ba.target_commits.load(Ordering::Relaxed)
        || ba.echo_txns_skipped.load(Ordering::Relaxed) < ab.target_commits.load(Ordering::Relaxed)
    {
        assert!(std::time::Instant::now() < deadline, "echoes not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ab.applied_txns.load(Ordering::Relaxed), 1);
    assert_eq!(ba.applied_txns.load(Ordering::Relaxed), 2);
    assert_eq!(
        ab.echo_txns_skipped.load(Ordering::Relaxed),
        ba.target_commits.load(Ordering::Relaxed)
    );
    assert_eq!(
        ba.echo_txns_skipped.load(Ordering::Relaxed),
        ab.target_commits.load(Ordering::Relaxed)
    );
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_mariadb_both_ways() {
    let m = crate::support::start_mariadb(MYSQL_SCHEMA).await;
    let p = tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default()))
        .await
        .unwrap()
        .unwrap();
    p.create_database("app").unwrap();
    p.psql("app", PG_SCHEMA).unwrap();
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["customers"],
    )
    .await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    let mut mc = crate::support::mysql_conn(&m).await;
    pgc.execute(
        "INSERT INTO customers (id, name, email, score) VALUES (1, 'Ada', 'ada@example.com', 12.5)",
        &[],
    )
    .await
    .unwrap();
    crate::support::wait_mysql(
        &mut mc,
        "insert pg->maria",
        "SELECT COUNT(*) FROM customers WHERE id = 1 AND score = 12.50",
        Duration::from_secs(30),
    )
    .await;
    mc.query_drop("INSERT INTO customers (id, name, email, score) VALUES (2, 'Grace ✓ 😀', NULL, 99999999.99)").await.unwrap();
    crate::support::wait_for("insert maria->pg", Duration::from_secs(30), || {
        crate::support::query_bool(
            &pgc,
            "SELECT EXISTS (SELECT 1 FROM customers WHERE id = 2 AND name = 'Grace ✓ 😀')",
        )
    })
    .await;
    mc.query_drop("UPDATE customers SET email = 'ada@maria' WHERE id = 1")
        .await
        .unwrap();
    crate::support::wait_for("update maria->pg", Duration::from_secs(30), || {
        crate::support::query_bool(
            &pgc,
            "SELECT email = 'ada@maria' FROM customers WHERE id = 1",
        )
    })
    .await;
    pgc.execute("DELETE FROM customers WHERE id = 2", &[])
        .await
        .unwrap();
    crate::support::wait_mysql(
        &mut mc,
        "delete pg->maria",
        "SELECT COUNT(*) = 0 FROM customers WHERE id = 2",
        Duration::from_secs(30),
    )
    .await;
    let pg_rows: Vec<(i64, String, Option<String>, Option<String>)> = pgc
        .query(
            "SELECT id, name, email, score::text FROM customers ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(pg_rows, mysql_rows(&mut mc).await);
    // TRUNCATE is logged as a statement even in ROW format: it must still flow.
    mc.query_drop("TRUNCATE TABLE customers").await.unwrap();
    crate::support::wait_for("truncate maria->pg", Duration::from_secs(30), || {
        crate::support::query_bool(&pgc, "SELECT count(*) = 0 FROM customers")
    })
    .await;
    pgc.execute(
        "INSERT INTO customers (id, name) VALUES (7, 'after truncate')",
        &[],
    )
    .await
    .unwrap();
    crate::support::wait_mysql(
        &mut mc,
        "insert after truncate",
        "SELECT COUNT(*) = 1 FROM customers",
        Duration::from_secs(30),
    )
    .await;
    pgc.batch_execute("TRUNCATE customers").await.unwrap();
    crate::support::wait_mysql(
        &mut mc,
        "truncate pg->maria",
        "SELECT COUNT(*) = 0 FROM customers",
        Duration::from_secs(30),
    )
    .await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_binlog_format_is_refused_with_the_fix() {
    let opts = LocalMariaDbOptions {
        binlog_format: "MIXED".into(),
        ..LocalMariaDbOptions::default()
    };
    let a = tokio::task::spawn_blocking(move || LocalMariaDb::start(opts))
        .await
        .unwrap()
        .unwrap();
    a.create_database("app").unwrap();
    a.sql(Some("app"), MYSQL_SCHEMA).unwrap();
    let b = crate::support::start_mariadb(MYSQL_SCHEMA).await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "a", "mysql", a.url("app")),
            (2, "b", "mysql", b.url("app")),
        ],
        &["customers"],
    )
    .await;
    let err = match duplex::runner::start(&url, PipelineTuning::default()).await {
        Ok(_) => panic!("duplex started on a MIXED binlog"),
        Err(e) => duplex::error::error_chain(&e),
    };
    assert!(
        err.contains("binlog_format is MIXED, needs ROW")
            && err.contains("binlog_format = ROW")
            && err.contains("my.cnf"),
        "{err}"
    );
}
