//! duplex runs with the roles of sql/roles/ and nothing more: a PostgreSQL
//! site and a MariaDB site prepared by their scripts, a control database
//! prepared by its script and configured by a DBA who only holds
//! duplex_admin. Rows flow both ways.

use std::time::Duration;

use crate::support::{connect, query_i64, wait_for};
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const PG_SITE_SCRIPT: &str = include_str!("../../sql/roles/postgresql-site.sql");
const MYSQL_SITE_SCRIPT: &str = include_str!("../../sql/roles/mysql-site.sql");
const CONTROL_SCRIPT: &str = include_str!("../../sql/roles/postgresql-control.sql");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_runs_with_the_least_privilege_roles() {
    crate::support::init_tracing();
    let pg =
        crate::support::start_postgres("CREATE TABLE t (id serial PRIMARY KEY, v varchar(50))")
            .await;
    pg.create_database("duplex_control").unwrap();
    // The site script, as the tables' owner.
    pg.psql(
        "app",
        &format!("\\set link 1\n\\set tables 'public.t'\n{PG_SITE_SCRIPT}"),
    )
    .expect("postgresql-site.sql");
    // Where the key's sequence stands is readable (the key-collision check).
    assert!(
        crate::support::query_bool(
            &crate::support::connect(&pg.conninfo("app")).await,
            "SELECT has_sequence_privilege('duplex', 'public.t_id_seq', 'SELECT')"
        )
        .await,
        "the site script grants SELECT on the key's sequence"
    );
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

    let my = crate::support::start_mariadb(
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
    let mut b = crate::support::mysql_conn(&my).await;
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

/// A PostgreSQL role without the right to set `session_replication_role`
/// cannot apply in the replica role, so a target trigger would re-stamp the
/// rows duplex applies: that table is refused (naming the trigger and the
/// grant that fixes it) while the link's other table flows. Granted the
/// right, duplex applies in the replica role and the table syncs without
/// its rows being re-stamped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_refuses_its_table_until_the_role_may_apply_in_the_replica_role() {
    crate::support::init_tracing();
    let pg = crate::support::start_postgres(
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(50));
         CREATE TABLE stamped (id int PRIMARY KEY, v varchar(50), last_update timestamp(6));
         CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.last_update := clock_timestamp(); RETURN NEW; END $$;
         CREATE TRIGGER stamp_last_update BEFORE INSERT OR UPDATE ON stamped
             FOR EACH ROW EXECUTE FUNCTION stamp();",
    )
    .await;
    pg.psql(
        "app",
        &format!("\\set link 1\n\\set tables 'public.t,public.stamped'\n{PG_SITE_SCRIPT}"),
    )
    .expect("postgresql-site.sql");
    pg.psql("app", "ALTER ROLE duplex PASSWORD 'site-a-secret'")
        .unwrap();
    let my = crate::support::start_mariadb(
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
         CREATE TABLE stamped (id INT PRIMARY KEY, v VARCHAR(50) NULL, last_update DATETIME(6) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;",
    )
    .await;
    my.sql(None, MYSQL_SITE_SCRIPT).expect("mysql-site.sql");
    my.sql(
        None,
        "ALTER USER 'duplex'@'%' IDENTIFIED BY 'site-b-secret'; FLUSH PRIVILEGES;",
    )
    .unwrap();
    std::env::set_var("LP2_SITE_A_PASSWORD", "site-a-secret");
    std::env::set_var("LP2_SITE_B_PASSWORD", "site-b-secret");
    let control_url = pg.conninfo("postgres");
    let mut control = connect(&control_url).await;
    duplex::control::migrate_pg(&mut control).await.unwrap();
    control
        .execute(
            "INSERT INTO duplex.sites (site_id, name, engine, conninfo, password_env, tls_mode) VALUES
               (1, 'pg', 'postgresql', $1, 'LP2_SITE_A_PASSWORD', 'disable'),
               (2, 'maria', 'mysql', $2, 'LP2_SITE_B_PASSWORD', 'disable')",
            &[
                &format!("host=127.0.0.1 port={} user=duplex dbname=app", pg.port()),
                &format!("mysql://duplex@127.0.0.1:{}/app", my.port()),
            ],
        )
        .await
        .unwrap();
    control
        .batch_execute(
            "INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'l', 1, 2);
             INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 't'), (1, 'stamped');",
        )
        .await
        .unwrap();
    let run = duplex::runner::start(&control_url, PipelineTuning::default())
        .await
        .expect("duplex starts: one table's trigger does not stop the link");
    let t = Duration::from_secs(60);
    let refused = || async {
        crate::support::query_bool(
            &control,
            "SELECT state = 'refused'
                    AND reason LIKE '%trigger stamp_last_update (BEFORE INSERT OR UPDATE FOR EACH ROW) on stamped%'
                    AND reason LIKE '%GRANT SET ON PARAMETER session_replication_role TO duplex%'
                    AND reason LIKE '%fire_triggers = true%'
               FROM duplex.table_config_status WHERE table_name = 'stamped'",
        )
        .await
    };
    wait_for(
        "stamped refused, naming the trigger and the grant",
        t,
        refused,
    )
    .await;
    let a = connect(&pg.conninfo("app")).await;
    let mut b = crate::support::mysql_conn(&my).await;
    b.query_drop("INSERT INTO t VALUES (1, 'from mariadb')")
        .await
        .unwrap();
    wait_for("t flows meanwhile", t, || {
        crate::support::pg_has_row(&a, "t", 1)
    })
    .await;

    // A superuser grants the right: the next check against the sites
    // accepts the table, and the applier runs in the replica role.
    pg.psql(
        "app",
        "GRANT SET ON PARAMETER session_replication_role TO duplex",
    )
    .unwrap();
    wait_for("stamped syncing", Duration::from_secs(90), || {
        crate::support::query_bool(
            &control,
            "SELECT state = 'syncing' AND reason IS NULL FROM duplex.table_config_status WHERE table_name = 'stamped'",
        )
    })
    .await;
    wait_for("both directions streaming", t, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.link_overview WHERE state = 'streaming'",
        )
        .await
            == 2
    })
    .await;
    b.query_drop("INSERT INTO stamped VALUES (7, 'from mariadb', '2020-01-02 03:04:05.123456')")
        .await
        .unwrap();
    wait_for("the row on PostgreSQL, not re-stamped", t, || {
        crate::support::query_bool(
            &a,
            "SELECT EXISTS (SELECT 1 FROM stamped WHERE id = 7 AND last_update = '2020-01-02 03:04:05.123456')",
        )
    })
    .await;
    // The application's own writes are still stamped there.
    a.batch_execute("INSERT INTO stamped (id, v) VALUES (8, 'from postgres')")
        .await
        .unwrap();
    assert!(
        crate::support::query_bool(
            &a,
            "SELECT last_update IS NOT NULL FROM stamped WHERE id = 8"
        )
        .await
    );
    crate::support::wait_mysql(
        &mut b,
        "PostgreSQL's stamp on MariaDB",
        "SELECT COUNT(*) FROM stamped WHERE id = 8 AND last_update IS NOT NULL",
        t,
    )
    .await;
    run.shutdown().await;
}
