//! The foundation's hard cases with MariaDB in the link: concurrent writers on
//! both sides (no echo, no duplicate), and kill -9 mid-load (exactly once).

use std::time::Duration;

use crate::support::DuplexProcess;
use duplex::localdb::pg::{LocalPgOptions, LocalPostgres};
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const MYSQL_ITEMS: &str = "CREATE TABLE items (id BIGINT PRIMARY KEY, batch INT NOT NULL, payload VARCHAR(200) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE TABLE counters (id INT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO counters VALUES (1, 0);";
const PG_ITEMS: &str =
    "CREATE TABLE items (id bigint PRIMARY KEY, batch int NOT NULL, payload varchar(200));
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counters VALUES (1, 0);";

async fn mysql_items(c: &mut mysql_async::Conn) -> Vec<(i64, i32, Option<String>)> {
    c.query("SELECT id, batch, payload FROM items ORDER BY id")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_concurrent_writers_on_both_sides_converge_without_echo() {
    const TXNS: i64 = 5_000;
    let (a, b) = (
        crate::support::start_mariadb(MYSQL_ITEMS).await,
        crate::support::start_mariadb(MYSQL_ITEMS).await,
    );
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "a", "mysql", a.url("app")),
            (2, "b", "mysql", b.url("app")),
        ],
        &["items", "counters"],
    )
    .await;
    // The counter row is seeded alike on both sites: already in sync, so
    // no initial copy (the counts below are the stream's alone).
    crate::support::connect(&url)
        .await
        .batch_execute(
            "UPDATE duplex.link_tables SET initial_sync = false WHERE table_name = 'counters'",
        )
        .await
        .unwrap();
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    // The counts below are the stream's: let the (empty) initial copy end first.
    crate::support::wait_initial_sync(&crate::support::connect(&url).await, 4).await;
    let writer = |mut c: mysql_async::Conn, base: i64, batch: i32| async move {
        for i in 0..TXNS {
            if i % 5 == 4 {
                c.exec_drop(
                    "UPDATE items SET payload = CONCAT(payload, '+') WHERE id = ?",
                    (base + i - 1,),
                )
                .await
                .unwrap();
            } else {
                c.exec_drop(
                    "INSERT INTO items (id, batch, payload) VALUES (?, ?, ?)",
                    (base + i, batch, format!("row {i}")),
                )
                .await
                .unwrap();
            }
        }
    };
    let wa = tokio::spawn(writer(crate::support::mysql_conn(&a).await, 1_000_000, 1));
    let wb = tokio::spawn(writer(crate::support::mysql_conn(&b).await, 2_000_000, 2));
    wa.await.unwrap();
    wb.await.unwrap();
    crate::support::wait_applied_exactly_once(&run, TXNS as u64, Duration::from_secs(300)).await;
    let (mut ca, mut cb) = (
        crate::support::mysql_conn(&a).await,
        crate::support::mysql_conn(&b).await,
    );
    let rows_a = mysql_items(&mut ca).await;
    assert_eq!(rows_a.len() as i64, TXNS / 5 * 4 * 2);
    assert_eq!(rows_a, mysql_items(&mut cb).await, "sides differ");
    run.shutdown().await;
}

/// kill -9 in the middle of a load from `source` into `target`, then restart.
/// An audit trigger on the target counts every row change applied there,
/// inside the applying transaction: exactly once means exactly the number of
/// row changes made on the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_postgres_to_mariadb_and_back_is_exactly_once() {
    const TXNS: i64 = 600;
    const ROWS_PER_TXN: i64 = 50;
    let m = crate::support::start_mariadb(MYSQL_ITEMS).await;
    m.sql(
        Some("app"),
        "CREATE TABLE apply_audit (n BIGINT NOT NULL); INSERT INTO apply_audit VALUES (0);
         CREATE TRIGGER items_audit_i AFTER INSERT ON items FOR EACH ROW UPDATE apply_audit SET n = n + 1;
         CREATE TRIGGER counters_audit_u AFTER UPDATE ON counters FOR EACH ROW UPDATE apply_audit SET n = n + 1;",
    )
    .unwrap();
    let p = tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default()))
        .await
        .unwrap()
        .unwrap();
    p.create_database("app").unwrap();
    p.psql("app", PG_ITEMS).unwrap();
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["items", "counters"],
    )
    .await;
    crate::support::counters_in_sync_and_triggers_firing(&url).await;
    let logdir = tempfile::tempdir().unwrap();
    let mut duplex = DuplexProcess::spawn(&url, &logdir.path().join("run1.log"));
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    crate::support::wait_for("duplex streaming", Duration::from_secs(60), || {
        crate::support::query_bool(&pgc, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'duplex_l1_s1' AND active)")
    })
    .await;
    let load = tokio::spawn({
        let c = crate::support::connect(&p.conninfo("app")).await;
        async move {
            for t in 0..TXNS {
                let base = t * ROWS_PER_TXN;
                c.batch_execute(&format!(
                    "BEGIN; INSERT INTO items SELECT g, {t}, md5(g::text) FROM generate_series({}, {}) g; UPDATE counters SET n = n + 1 WHERE id = 1; COMMIT;",
                    base + 1,
                    base + ROWS_PER_TXN
                ))
                .await
                .unwrap();
            }
        }
    });
    let mut mc = crate::support::mysql_conn(&m).await;
    crate::support::wait_mysql(
        &mut mc,
        "part of the load on MariaDB",
        "SELECT COUNT(*) >= 3000 FROM items",
        Duration::from_secs(120),
    )
    .await;
    duplex.kill9();
    let at_kill: i64 = mc
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .unwrap()
        .unwrap();
    load.await.unwrap();
    assert!(
        at_kill < TXNS * ROWS_PER_TXN,
        "the load had fully arrived before the kill: the test proved nothing"
    );
    let duplex2 = DuplexProcess::spawn(&url, &logdir.path().join("run2.log"));
    crate::support::wait_mysql(
        &mut mc,
        "the whole load",
        &format!(
            "SELECT COUNT(*) = {} AND (SELECT n FROM counters) = {TXNS} FROM items",
            TXNS * ROWS_PER_TXN
        ),
        Duration::from_secs(300),
    )
    .await;
    let applied: i64 = mc
        .query_first("SELECT n FROM apply_audit")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        applied,
        TXNS * ROWS_PER_TXN + TXNS,
        "row changes applied on MariaDB (kill at {at_kill} rows)"
    );
    assert!(
        !duplex2.log_text().contains("Duplicate entry"),
        "a transaction was applied twice"
    );
    let pg_rows: Vec<(i64, i32, Option<String>)> =
        crate::support::query_rows(&pgc, "SELECT id, batch, payload FROM items ORDER BY id").await;
    assert_eq!(pg_rows, mysql_items(&mut mc).await);
    drop(duplex2);

    // And the other way: a load on MariaDB, killed mid-way, into PostgreSQL.
    p.psql(
        "app",
        // Append-only: an UPDATE of one counter row would leave one dead
        // version per applied row inside the (large) target transaction, and
        // every later UPDATE would scan them all: quadratic in the group size.
        "CREATE TABLE apply_audit (n smallint NOT NULL);
         CREATE FUNCTION count_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO apply_audit VALUES (1); RETURN NULL; END $$;
         CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION count_apply();",
    )
    .unwrap();
    let mut duplex3 = DuplexProcess::spawn(&url, &logdir.path().join("run3.log"));
    crate::support::wait_for("duplex streaming again", Duration::from_secs(60), || {
        crate::support::query_bool(&pgc, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'duplex_l1_s1' AND active)")
    })
    .await;
    let load = tokio::spawn({
        let mut c = crate::support::mysql_conn(&m).await;
        async move {
            for t in 0..TXNS {
                let base = 1_000_000 + t * ROWS_PER_TXN;
                let mut tx = c
                    .start_transaction(mysql_async::TxOpts::default())
                    .await
                    .unwrap();
                let rows: Vec<(i64, i64)> = (1..=ROWS_PER_TXN).map(|i| (base + i, t)).collect();
                tx.exec_batch(
                    "INSERT INTO items (id, batch, payload) VALUES (?, ?, 'from maria')",
                    rows,
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        }
    });
    crate::support::wait_for(
        "part of the MariaDB load on PostgreSQL",
        Duration::from_secs(120),
        || {
            crate::support::query_bool(
                &pgc,
                "SELECT count(*) >= 3000 FROM items WHERE id > 1000000",
            )
        },
    )
    .await;
    duplex3.kill9();
    let at_kill =
        crate::support::query_i64(&pgc, "SELECT count(*) FROM items WHERE id > 1000000").await;
    load.await.unwrap();
    assert!(
        at_kill < TXNS * ROWS_PER_TXN,
        "the MariaDB load had fully arrived before the kill"
    );
    let _duplex4 = DuplexProcess::spawn(&url, &logdir.path().join("run4.log"));
    crate::support::wait_for(
        "the whole MariaDB load on PostgreSQL",
        Duration::from_secs(300),
        || {
            crate::support::query_bool(
                &pgc,
                format!(
                    "SELECT count(*) = {} FROM items WHERE id > 1000000",
                    TXNS * ROWS_PER_TXN
                ),
            )
        },
    )
    .await;
    assert_eq!(
        crate::support::query_i64(&pgc, "SELECT count(*) FROM apply_audit").await,
        TXNS * ROWS_PER_TXN,
        "row changes applied on PostgreSQL (kill at {at_kill})"
    );
    let pg_rows: Vec<(i64, i32, Option<String>)> =
        crate::support::query_rows(&pgc, "SELECT id, batch, payload FROM items ORDER BY id").await;
    assert_eq!(pg_rows, mysql_items(&mut mc).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_mariadb_concurrent_writers_converge_without_echo() {
    const TXNS: i64 = 5_000;
    let m = crate::support::start_mariadb(MYSQL_ITEMS).await;
    let p = tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default()))
        .await
        .unwrap()
        .unwrap();
    p.create_database("app").unwrap();
    p.psql("app", PG_ITEMS).unwrap();
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["items", "counters"],
    )
    .await;
    // The counter row is seeded alike on both sites: already in sync, so
    // no initial copy (the counts below are the stream's alone).
    crate::support::connect(&url)
        .await
        .batch_execute(
            "UPDATE duplex.link_tables SET initial_sync = false WHERE table_name = 'counters'",
        )
        .await
        .unwrap();
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    // The counts below are the stream's: let the (empty) initial copy end first.
    crate::support::wait_initial_sync(&crate::support::connect(&url).await, 4).await;
    let pg_writer = {
        let c = crate::support::connect(&p.conninfo("app")).await;
        async move {
            let ins = c
                .prepare("INSERT INTO items (id, batch, payload) VALUES ($1, 1, $2)")
                .await
                .unwrap();
            let upd = c
                .prepare("UPDATE items SET payload = payload || '+' WHERE id = $1")
                .await
                .unwrap();
            for i in 0..TXNS {
                if i % 5 == 4 {
                    c.execute(&upd, &[&(1_000_000 + i - 1)]).await.unwrap();
                } else {
                    c.execute(&ins, &[&(1_000_000 + i), &format!("row {i}")])
                        .await
                        .unwrap();
                }
            }
        }
    };
    let maria_writer = {
        let mut c = crate::support::mysql_conn(&m).await;
        async move {
            for i in 0..TXNS {
                if i % 5 == 4 {
                    c.exec_drop(
                        "UPDATE items SET payload = CONCAT(payload, '+') WHERE id = ?",
                        (2_000_000 + i - 1,),
                    )
                    .await
                    .unwrap();
                } else {
                    c.exec_drop(
                        "INSERT INTO items (id, batch, payload) VALUES (?, 2, ?)",
                        (2_000_000 + i, format!("row {i}")),
                    )
                    .await
                    .unwrap();
                }
            }
        }
    };
    let (w1, w2) = (tokio::spawn(pg_writer), tokio::spawn(maria_writer));
    w1.await.unwrap();
    w2.await.unwrap();
    crate::support::wait_applied_exactly_once(&run, TXNS as u64, Duration::from_secs(300)).await;
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    let mut mc = crate::support::mysql_conn(&m).await;
    let pg_rows: Vec<(i64, i32, Option<String>)> =
        crate::support::query_rows(&pgc, "SELECT id, batch, payload FROM items ORDER BY id").await;
    assert_eq!(pg_rows.len() as i64, TXNS / 5 * 4 * 2);
    assert_eq!(pg_rows, mysql_items(&mut mc).await, "sides differ");
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_mariadb_to_mariadb_is_exactly_once() {
    const TXNS: i64 = 600;
    const ROWS_PER_TXN: i64 = 50;
    let (a, b) = (
        crate::support::start_mariadb(MYSQL_ITEMS).await,
        crate::support::start_mariadb(MYSQL_ITEMS).await,
    );
    b.sql(
        Some("app"),
        "CREATE TABLE apply_audit (n BIGINT NOT NULL); INSERT INTO apply_audit VALUES (0);
         CREATE TRIGGER items_audit_i AFTER INSERT ON items FOR EACH ROW UPDATE apply_audit SET n = n + 1;",
    )
    .unwrap();
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "a", "mysql", a.url("app")),
            (2, "b", "mysql", b.url("app")),
        ],
        &["items", "counters"],
    )
    .await;
    crate::support::counters_in_sync_and_triggers_firing(&url).await;
    let logdir = tempfile::tempdir().unwrap();
    let mut duplex = DuplexProcess::spawn(&url, &logdir.path().join("run1.log"));
    let mut cb = crate::support::mysql_conn(&b).await;
    // duplex has prepared the sites once its marker table exists on both.
    crate::support::wait_mysql(
        &mut cb,
        "duplex set up",
        "SELECT COUNT(*) = 1 FROM information_schema.TABLES WHERE TABLE_NAME = '_duplex_applied'",
        Duration::from_secs(60),
    )
    .await;
    let load = tokio::spawn({
        let mut c = crate::support::mysql_conn(&a).await;
        async move {
            for t in 0..TXNS {
                let base = t * ROWS_PER_TXN;
                let mut tx = c
                    .start_transaction(mysql_async::TxOpts::default())
                    .await
                    .unwrap();
                let rows: Vec<(i64, i64)> = (1..=ROWS_PER_TXN).map(|i| (base + i, t)).collect();
                tx.exec_batch(
                    "INSERT INTO items (id, batch, payload) VALUES (?, ?, 'x')",
                    rows,
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        }
    });
    crate::support::wait_mysql(
        &mut cb,
        "part of the load on B",
        "SELECT COUNT(*) >= 3000 FROM items",
        Duration::from_secs(120),
    )
    .await;
    duplex.kill9();
    let at_kill: i64 = cb
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .unwrap()
        .unwrap();
    load.await.unwrap();
    assert!(
        at_kill < TXNS * ROWS_PER_TXN,
        "the load had fully arrived before the kill: the test proved nothing"
    );
    let duplex2 = DuplexProcess::spawn(&url, &logdir.path().join("run2.log"));
    crate::support::wait_mysql(
        &mut cb,
        "the whole load on B",
        &format!("SELECT COUNT(*) = {} FROM items", TXNS * ROWS_PER_TXN),
        Duration::from_secs(300),
    )
    .await;
    let applied: i64 = cb
        .query_first("SELECT n FROM apply_audit")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        applied,
        TXNS * ROWS_PER_TXN,
        "row changes applied on B (kill at {at_kill} rows)"
    );
    assert!(
        !duplex2.log_text().contains("Duplicate entry"),
        "a transaction was applied twice"
    );
    let mut ca = crate::support::mysql_conn(&a).await;
    assert_eq!(mysql_items(&mut ca).await, mysql_items(&mut cb).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_transaction_arrives_whole_on_mariadb() {
    let m = crate::support::start_mariadb(MYSQL_ITEMS).await;
    let p = tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default()))
        .await
        .unwrap()
        .unwrap();
    p.create_database("app").unwrap();
    p.psql("app", PG_ITEMS).unwrap();
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["items", "counters"],
    )
    .await;
    // The counter row is seeded alike on both sites: already in sync, so
    // no initial copy (the counts below are the stream's alone).
    crate::support::connect(&url)
        .await
        .batch_execute(
            "UPDATE duplex.link_tables SET initial_sync = false WHERE table_name = 'counters'",
        )
        .await
        .unwrap();
    let tuning = PipelineTuning {
        max_batch_rows: 100,
        ..PipelineTuning::default()
    };
    let run = duplex::runner::start(&url, tuning)
        .await
        .expect("start duplex");
    // The stream keeps source transactions whole; the initial copy, in
    // pages, does not: let it finish (on empty tables) first.
    crate::support::wait_initial_sync(&crate::support::connect(&url).await, 4).await;
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    pgc.batch_execute("INSERT INTO items SELECT g, 7, md5(g::text) FROM generate_series(1, 3000) g; UPDATE counters SET n = 1;").await.unwrap();
    let mut mc = crate::support::mysql_conn(&m).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut partial = Vec::new();
    loop {
        // One consistent snapshot per observation.
        let row: Option<(i64, i64)> = mc
            .query_first("SELECT (SELECT COUNT(*) FROM items), (SELECT n FROM counters)")
            .await
            .unwrap();
        let (n, counter) = row.unwrap();
        if !((n == 0 && counter == 0) || (n == 3000 && counter == 1)) {
            partial.push((n, counter));
        }
        if n == 3000 && counter == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the transaction did not arrive within 30 s"
        );
    }
    assert!(
        partial.is_empty(),
        "partial transaction visible on MariaDB: {partial:?}"
    );
    run.shutdown().await;
}
