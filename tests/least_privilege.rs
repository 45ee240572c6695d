//! duplex runs with the roles of sql/roles/ and nothing more: a PostgreSQL
//! site and a MariaDB site prepared by their scripts, a control database
//! prepared by its script and configured by a DBA who only holds
//! duplex_admin. Rows flow both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::{connect, query_i64, wait_for};
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const PG_SITE_SCRIPT: &str = include_str!("../sql/roles/postgresql-site.sql");
const MYSQL_SITE_SCRIPT: &str = include_str!("../sql/roles/mysql-site.sql");
const CONTROL_SCRIPT: &str = include_str!("../sql/roles/postgresql-control.sql");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_runs_with_the_least_privilege_roles() {
    common::init_tracing();
    let pg = common::start_postgres("CREATE TABLE t (id int PRIMARY KEY, v varchar(50))").await;
    pg.create_database("duplex_control").unwrap();
    // The site script, as the tables' owner.
    pg.psql(
        "app",
        &format!("\\set link 1\n\\set tables 'public.t'\n{PG_SITE_SCRIPT}"),
    )
    .expect("postgresql-site.sql");
    pg.psql("app", "ALTER ROLE duplex PASSWORD 'site-a-secret'")
        .unwrap();
    // The control script, then a DBA holding only duplex_admin.
    pg.psql("duplex_control", CONTROL_SCRIPT)
        .expect("postgresql-control.sql");
    pg.psql(
        "duplex_control",
        "ALTER ROLE duplex_control PASSWORD 'control-secret';
         CREATE ROLE alice LOGIN PASSWORD 'alice-secret' IN ROLE duplex_admin;",
    )
    .unwrap();

    let my = common::start_mariadb(
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;",
    )
    .await;
    my.sql(None, MYSQL_SITE_SCRIPT).expect("mysql-site.sql");
    my.sql(
        None,
        "ALTER USER 'duplex'@'%' IDENTIFIED BY 'site-b-secret'; FLUSH PRIVILEGES;",
    )
    .unwrap();

    // Passwords reach duplex through the environment, never the tables.
    std::env::set_var("LP_SITE_A_PASSWORD", "site-a-secret");
    std::env::set_var("LP_SITE_B_PASSWORD", "site-b-secret");
    let control_url = format!(
        "host=127.0.0.1 port={} user=duplex_control password=control-secret dbname=duplex_control",
        pg.port()
    );
    let mut owner = connect(&control_url).await;
    duplex::control::migrate_pg(&mut owner)
        .await
        .expect("duplex init as duplex_control");
    let alice = connect(&format!(
        "host=127.0.0.1 port={} user=alice password=alice-secret dbname=duplex_control",
        pg.port()
    ))
    .await;
    alice
        .execute(
            "INSERT INTO duplex.sites (site_id, name, engine, conninfo, password_env, tls_mode) VALUES
               (1, 'pg', 'postgresql', $1, 'LP_SITE_A_PASSWORD', 'disable'),
               (2, 'maria', 'mysql', $2, 'LP_SITE_B_PASSWORD', 'disable')",
            &[
                &format!(
                    "host=127.0.0.1 port={} user=duplex dbname=app",
                    pg.port()
                ),
                &format!("mysql://duplex@127.0.0.1:{}/app", my.port()),
            ],
        )
        .await
        .expect("a duplex_admin configures sites");
    alice
        .batch_execute(
            "INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'l', 1, 2);
             INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 't');",
        )
        .await
        .expect("a duplex_admin configures the link");

    let run = duplex::runner::start(&control_url, PipelineTuning::default())
        .await
        .expect("duplex starts with the least-privilege roles");
    let t = Duration::from_secs(30);
    wait_for("both directions streaming", t, || async {
        query_i64(
            &alice,
            "SELECT count(*) FROM duplex.link_overview WHERE state = 'streaming'",
        )
        .await
            == 2
    })
    .await;
    let a = connect(&pg.conninfo("app")).await;
    let mut b = common::mysql_conn(&my).await;
    a.batch_execute("INSERT INTO t VALUES (1, 'from postgres')")
        .await
        .unwrap();
    b.query_drop("INSERT INTO t VALUES (2, 'from mariadb')")
        .await
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let on_b: Option<i64> = b
            .query_first("SELECT COUNT(*) FROM t WHERE id = 1")
            .await
            .unwrap();
        let on_a = query_i64(&a, "SELECT count(*) FROM t WHERE id = 2").await;
        if on_b == Some(1) && on_a == 1 {
            break;
        }
        assert!(start.elapsed() < t, "rows did not flow both ways");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing failed on the way (a missing privilege shows as an error).
    assert_eq!(
        query_i64(
            &alice,
            "SELECT count(*) FROM duplex.link_overview WHERE last_error IS NOT NULL"
        )
        .await,
        0
    );
    run.shutdown().await;
}
