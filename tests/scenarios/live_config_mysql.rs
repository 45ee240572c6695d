//! Live configuration with a MariaDB site (PostgreSQL site 1, MariaDB site 2):
//! a table whose name holds a backtick, a double quote, a semicolon and a
//! comment is added to the running link and syncs both ways; a made-up name
//! of the same kind is rejected; nothing in either name is ever executed.

use std::time::Duration;

use crate::support::{connect, query_bool, query_i64, wait_for};
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

/// Backtick, double quote, semicolon, comment: hostile to either engine's quoting.
const ODD: &str = "odd`name\"; DROP TABLE t1; --";

fn my_quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

async fn my_has(c: &mut mysql_async::Conn, table: &str, id: i32) -> bool {
    let n: Option<i64> = c
        .exec_first(
            format!("SELECT COUNT(*) FROM {} WHERE id = ?", my_quote(table)),
            (id,),
        )
        .await
        .unwrap();
    n == Some(1)
}

async fn pg_has(c: &tokio_postgres::Client, table: &str, id: i32) -> bool {
    crate::support::pg_has_row(c, table, id).await
}

/// Wait until MariaDB's `table` has row `id`.
async fn wait_my_row(c: &mut mysql_async::Conn, table: &str, id: i32, what: &str) {
    let start = std::time::Instant::now();
    while !my_has(c, table, id).await {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn config_state(control: &tokio_postgres::Client) -> (String, Option<String>) {
    let r = control
        .query_one(
            "SELECT state, message FROM duplex.config_status WHERE link_id = 1",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_table_names_are_quoted_on_mariadb_and_postgresql() {
    crate::support::init_tracing();
    let pg = crate::support::start_postgres(&format!(
        "CREATE TABLE t1 (id int PRIMARY KEY, v varchar(50));
         CREATE TABLE {} (id int PRIMARY KEY, v varchar(50));",
        duplex::pg::quote_ident(ODD)
    ))
    .await;
    let my = crate::support::start_mariadb(&format!(
        "CREATE TABLE t1 (id INT PRIMARY KEY, v VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
         CREATE TABLE {} (id INT PRIMARY KEY, v VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;",
        my_quote(ODD)
    ))
    .await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", pg.conninfo("app")),
            (2, "maria", "mysql", my.url("app")),
        ],
        &["t1"],
    )
    .await;
    let control = connect(&url).await;
    let a = connect(&pg.conninfo("app")).await;
    let mut b = crate::support::mysql_conn(&my).await;
    let t = Duration::from_secs(30);
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both directions streaming", t, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.link_status WHERE state = 'streaming'",
        )
        .await
            == 2
    })
    .await;

    // A made-up hostile name: rejected, and nothing of it runs anywhere.
    control
        .execute(
            "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, $1)",
            &[&"x`; DROP TABLE t1; -- \"'"],
        )
        .await
        .unwrap();
    wait_for("the made-up table rejected", t, || async {
        let (state, message) = config_state(&control).await;
        state == "rejected" && message.is_some_and(|m| m.contains("does not exist"))
    })
    .await;
    control
        .batch_execute("DELETE FROM duplex.link_tables WHERE table_name LIKE 'x%'")
        .await
        .unwrap();
    wait_for("back to running", t, || async {
        config_state(&control).await.0 == "running"
    })
    .await;

    // The real hostile name: added live, synced both ways.
    control
        .execute(
            "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, $1)",
            &[&ODD],
        )
        .await
        .unwrap();
    wait_for("the odd table in force", t, || async {
        let r = control
            .query_one(
                "SELECT state, array_to_string(applied_config, E'\\n') FROM duplex.config_status WHERE link_id = 1",
                &[],
            )
            .await
            .unwrap();
        r.get::<_, String>(0) == "running" && r.get::<_, String>(1).contains("odd`name")
    })
    .await;
    wait_for("both directions streaming again", t, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.link_status WHERE state = 'streaming'",
        )
        .await
            == 2
    })
    .await;
    a.batch_execute(&format!(
        "INSERT INTO {} VALUES (1, 'from postgres')",
        duplex::pg::quote_ident(ODD)
    ))
    .await
    .unwrap();
    b.query_drop(format!(
        "INSERT INTO {} VALUES (2, 'from mariadb')",
        my_quote(ODD)
    ))
    .await
    .unwrap();
    wait_my_row(&mut b, ODD, 1, "the odd table's row on MariaDB").await;
    wait_for("the odd table's row on PostgreSQL", t, || {
        pg_has(&a, ODD, 2)
    })
    .await;
    // t1 is still there on both, and still syncs.
    assert!(query_bool(&a, "SELECT to_regclass('public.t1') IS NOT NULL").await);
    b.query_drop("INSERT INTO t1 VALUES (1, 'still here')")
        .await
        .unwrap();
    wait_for("t1 syncs", t, || pg_has(&a, "t1", 1)).await;

    // A change MariaDB refuses (a constraint only it has) is quarantined, the
    // stream goes on, and a retry after the fix applies it there.
    b.query_drop("ALTER TABLE t1 ADD CONSTRAINT v_not_bad CHECK (v <> 'bad')")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO t1 VALUES (5, 'bad'); INSERT INTO t1 VALUES (6, 'fine')")
        .await
        .unwrap();
    wait_my_row(&mut b, "t1", 6, "the stream to go on past the refused row").await;
    wait_for("the refused row quarantined", t, || {
        query_bool(
            &control,
            "SELECT count(*) = 1 FROM duplex.quarantine WHERE confirmed AND status = 'pending' AND row_key = 'id=5'",
        )
    })
    .await;
    assert!(!my_has(&mut b, "t1", 5).await);
    b.query_drop("ALTER TABLE t1 DROP CONSTRAINT v_not_bad")
        .await
        .unwrap();
    control
        .batch_execute("SELECT duplex.retry_quarantined(quarantine_id) FROM duplex.quarantine WHERE row_key = 'id=5'")
        .await
        .unwrap();
    wait_my_row(&mut b, "t1", 5, "the retried row on MariaDB").await;
    wait_for("the record settled", t, || {
        query_bool(
            &control,
            "SELECT status = 'retried' AND note = 'applied' FROM duplex.quarantine WHERE row_key = 'id=5'",
        )
    })
    .await;
    // The retried row is duplex's own write on MariaDB: it does not come back
    // to PostgreSQL as a change (no echo, no conflict).
    b.query_drop("INSERT INTO t1 VALUES (7, 'fence')")
        .await
        .unwrap();
    wait_for("the fence on PostgreSQL", t, || pg_has(&a, "t1", 7)).await;
    assert_eq!(
        query_i64(&control, "SELECT count(*) FROM duplex.conflicts").await,
        0
    );
    run.shutdown().await;
}

/// A link whose site is down when duplex starts does not keep the other
/// links from running; it is retried, and starts once the site is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_with_a_site_down_is_retried_while_the_others_run() {
    let schema_my = "CREATE TABLE t1 (id INT PRIMARY KEY, v VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;";
    let pg = crate::support::start_postgres("CREATE TABLE t1 (id int PRIMARY KEY, v varchar(50));")
        .await;
    let m1 = crate::support::start_mariadb(schema_my).await;
    let mut m2 = crate::support::start_mariadb(schema_my).await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", pg.conninfo("app")),
            (2, "maria1", "mysql", m1.url("app")),
        ],
        &["t1"],
    )
    .await;
    let control = connect(&url).await;
    control
        .execute(
            "INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES (3, 'maria2', 'mysql', $1, 'disable')",
            &[&m2.url("app")],
        )
        .await
        .unwrap();
    control
        .batch_execute(
            "INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (2, 'l2', 1, 3);
             INSERT INTO duplex.link_tables (link_id, table_name) VALUES (2, 't1');",
        )
        .await
        .unwrap();
    m2.stop().unwrap();

    let t = Duration::from_secs(60);
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("duplex starts: link 1 can run");
    let streaming = |link: i32| {
        let control = &control;
        async move {
            query_i64(
                control,
                &format!("SELECT count(*) FROM duplex.link_status WHERE link_id = {link} AND state = 'streaming'"),
            )
            .await
                == 2
        }
    };
    wait_for("link 1 streaming", t, || streaming(1)).await;
    assert!(
        query_bool(
            &control,
            "SELECT state = 'error' AND message LIKE '%maria2%' FROM duplex.config_status WHERE link_id = 2"
        )
        .await
    );
    // The DBA sees the failed link and why, next to the running one.
    let (ok, out) = crate::support::duplex_cli(&url, &["status"]);
    assert!(
        ok && out.contains("l2") && out.contains("error") && out.contains("maria2"),
        "{out}"
    );
    let a = connect(&pg.conninfo("app")).await;
    a.batch_execute("INSERT INTO t1 VALUES (1, 'to maria1')")
        .await
        .unwrap();
    let mut b1 = crate::support::mysql_conn(&m1).await;
    wait_my_row(&mut b1, "t1", 1, "link 1 to sync while link 2 is down").await;

    // The site comes back: link 2 starts on its own.
    m2.restart().unwrap();
    wait_for("link 2 streaming after its site came back", t, || {
        streaming(2)
    })
    .await;
    assert!(
        query_bool(
            &control,
            "SELECT state = 'running' FROM duplex.config_status WHERE link_id = 2"
        )
        .await
    );
    a.batch_execute("INSERT INTO t1 VALUES (2, 'to both')")
        .await
        .unwrap();
    let mut b2 = crate::support::mysql_conn(&m2).await;
    wait_my_row(&mut b2, "t1", 2, "link 2 to sync after its site came back").await;
    wait_my_row(&mut b1, "t1", 2, "link 1 to keep syncing").await;
    run.shutdown().await;
}
