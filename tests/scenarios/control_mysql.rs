//! The control schema's MySQL/MariaDB flavour: a DBA who keeps duplex's
//! configuration on MariaDB installs it with `duplex init`, configures a
//! PostgreSQL <-> MariaDB link with SQL on it alone, and changes it live
//! (tables, pause, mappings, owners, invalid changes, quarantine retry), with
//! `duplex run`, `duplex status`, `duplex quarantine` and `duplex config
//! check` all pointed at `mysql://.../duplex`.

use std::time::{Duration, Instant};

use crate::support::{connect, duplex_cli, wait_for, wait_mysql, DuplexProcess};
use mysql_async::prelude::Queryable;

const T: Duration = Duration::from_secs(60);

async fn my_value(c: &mut mysql_async::Conn, sql: &str) -> Option<String> {
    c.query_first::<Option<String>, _>(sql)
        .await
        .expect(sql)
        .flatten()
}

async fn pg_value(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    c.query_opt(sql, &[])
        .await
        .expect(sql)
        .and_then(|r| r.get::<_, Option<String>>(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_configured_and_changed_live_through_a_mariadb_control_schema() {
    crate::support::init_tracing();
    let schema_pg = "CREATE TABLE t1 (id int PRIMARY KEY, v varchar(50));
         CREATE TABLE t2 (id int PRIMARY KEY, v varchar(50), w varchar(50));
         CREATE TABLE t3 (id int PRIMARY KEY, name varchar(50));";
    let schema_my = "CREATE TABLE t1 (id INT PRIMARY KEY, v VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
         CREATE TABLE t2 (id INT PRIMARY KEY, v VARCHAR(50) NULL, w VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
         CREATE TABLE t3 (id INT PRIMARY KEY, full_name VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;";
    let pg = crate::support::start_postgres(schema_pg).await;
    let my = crate::support::start_mariadb(schema_my).await;
    // Least privilege: duplex runs as duplex_control (sql/roles/mysql-control.sql),
    // the DBA as alice with the role duplex_admin.
    my.sql(None, include_str!("../../sql/roles/mysql-control.sql"))
        .expect("run sql/roles/mysql-control.sql");
    my.sql(
        None,
        "ALTER USER 'duplex_control'@'%' IDENTIFIED BY 'ctl-secret';
         CREATE USER 'alice'@'%' IDENTIFIED BY 'alice-secret';
         GRANT duplex_admin TO 'alice'@'%';
         SET DEFAULT ROLE duplex_admin FOR 'alice'@'%';",
    )
    .expect("create the accounts");
    let control_url = my
        .url("duplex")
        .replacen("root@", "duplex_control:ctl-secret@", 1);
    let admin_url = my.url("duplex").replacen("root@", "alice:alice-secret@", 1);

    // Install, twice: the second run finds nothing to do. With the binlog on,
    // only an administrator may create the triggers: duplex_control is told so.
    let (ok, out) = duplex_cli(&control_url, &["init"]);
    assert!(
        !ok && out.contains("SUPER privilege") && out.contains("sites_ins"),
        "init as duplex_control on a binlogged server: {out}"
    );
    let root_url = my.url("duplex");
    let (ok, out) = duplex_cli(&root_url, &["init"]);
    assert!(ok, "duplex init on MariaDB: {out}");
    assert!(out.contains("installed"), "{out}");
    let (ok, out) = duplex_cli(&control_url, &["init"]);
    assert!(ok && out.contains("up to date"), "second init: {out}");

    let mut ctl = {
        let opts =
            mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&admin_url).unwrap())
                .prefer_socket(false);
        mysql_async::Conn::new(opts).await.unwrap()
    };
    // A password in conninfo is refused by the schema itself, in any form.
    for conninfo in [
        "mysql://u:secret@h/db",
        "postgresql://u@h/db?password=secret",
        "host=h sslpassword=secret dbname=db",
        "host=h dbname=postgresql://u:secret@h/db",
        "postgresql://u:sec#ret@h/db",
    ] {
        let refused = ctl
            .exec_drop(
                "INSERT INTO duplex.sites (site_id, name, engine, conninfo) VALUES (9, 'x', 'mysql', ?)",
                (conninfo,),
            )
            .await;
        let Err(mysql_async::Error::Server(e)) = refused else {
            panic!("a password in conninfo must be refused: {conninfo}: {refused:?}");
        };
        assert!(
            e.message.contains("sites_conninfo_has_no_password"),
            "{conninfo}: {e:?}"
        );
    }
    crate::support::describe_link_on_mariadb(&mut ctl, pg.conninfo("app"), my.url("app"), &["t1"])
        .await;
    let (ok, out) = duplex_cli(&control_url, &["config", "check"]);
    assert!(ok, "config check: {out}");
    assert!(out.contains("t1"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let mut duplex = DuplexProcess::spawn(&control_url, &dir.path().join("duplex.log"));
    let a = connect(&pg.conninfo("app")).await;
    let mut b = crate::support::mysql_conn(&my).await;
    wait_mysql(
        &mut ctl,
        "both directions streaming",
        "SELECT COUNT(*) = 2 FROM duplex.link_status WHERE state = 'streaming'",
        T,
    )
    .await;

    // Both ways.
    a.batch_execute("INSERT INTO t1 VALUES (1, 'from pg')")
        .await
        .unwrap();
    b.query_drop("INSERT INTO t1 VALUES (2, 'from maria')")
        .await
        .unwrap();
    wait_mysql(
        &mut b,
        "row 1 on MariaDB",
        "SELECT COUNT(*) FROM t1 WHERE id = 1",
        T,
    )
    .await;
    wait_for("row 2 on PostgreSQL", T, || {
        crate::support::pg_has_row(&a, "t1", 2)
    })
    .await;

    // Add a table to the running link, with a column owned by PostgreSQL:
    // a trigger bumps duplex.config_version, which duplex polls.
    let added = Instant::now();
    ctl.query_drop(
        "START TRANSACTION;
         INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 't2');
         INSERT INTO duplex.column_owners (link_id, schema_name, table_name, column_name, site_id) VALUES (1, 'public', 't2', 'v', 1);
         COMMIT;",
    )
    .await
    .unwrap();
    wait_mysql(
        &mut ctl,
        "t2 in force",
        "SELECT state = 'running' AND JSON_SEARCH(applied_config, 'one', '%t2%') IS NOT NULL FROM duplex.config_status WHERE link_id = 1",
        T,
    )
    .await;
    let took = added.elapsed();
    eprintln!("a table added on the MariaDB control schema took effect after {took:?}");
    wait_mysql(
        &mut ctl,
        "both directions streaming again",
        "SELECT COUNT(*) = 2 FROM duplex.link_status WHERE state = 'streaming'",
        T,
    )
    .await;
    a.batch_execute("INSERT INTO t2 VALUES (1, 'pg owns v', 'w from pg')")
        .await
        .unwrap();
    wait_mysql(
        &mut b,
        "t2 row on MariaDB",
        "SELECT COUNT(*) FROM t2 WHERE id = 1",
        T,
    )
    .await;
    // MariaDB changes both columns: w flows, v (owned by PostgreSQL) never does.
    b.query_drop("UPDATE t2 SET v = 'maria tried', w = 'w from maria' WHERE id = 1")
        .await
        .unwrap();
    wait_for("w from MariaDB on PostgreSQL", T, || async {
        pg_value(&a, "SELECT w FROM t2 WHERE id = 1")
            .await
            .as_deref()
            == Some("w from maria")
    })
    .await;
    assert_eq!(
        pg_value(&a, "SELECT v FROM t2 WHERE id = 1")
            .await
            .as_deref(),
        Some("pg owns v"),
        "an owned column was overwritten from the other site"
    );

    // Rename a column through a mapping: PostgreSQL t3.name is MariaDB t3.full_name.
    ctl.query_drop(
        "START TRANSACTION;
         INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 't3');
         INSERT INTO duplex.column_mappings (link_id, schema_name, table_name, site_id, column_name, peer_column)
              VALUES (1, 'public', 't3', 1, 'name', 'full_name');
         COMMIT;",
    )
    .await
    .unwrap();
    wait_mysql(
        &mut ctl,
        "t3 in force",
        "SELECT state = 'running' AND JSON_SEARCH(applied_config, 'one', '%t3%') IS NOT NULL FROM duplex.config_status WHERE link_id = 1",
        T,
    )
    .await;
    wait_mysql(
        &mut ctl,
        "streaming with t3",
        "SELECT COUNT(*) = 2 FROM duplex.link_status WHERE state = 'streaming'",
        T,
    )
    .await;
    a.batch_execute("INSERT INTO t3 VALUES (1, 'Ada')")
        .await
        .unwrap();
    wait_mysql(
        &mut b,
        "the renamed column on MariaDB",
        "SELECT COUNT(*) FROM t3 WHERE id = 1 AND full_name = 'Ada'",
        T,
    )
    .await;
    b.query_drop("UPDATE t3 SET full_name = 'Ada L.' WHERE id = 1")
        .await
        .unwrap();
    wait_for("the renamed column back on PostgreSQL", T, || async {
        pg_value(&a, "SELECT name FROM t3 WHERE id = 1")
            .await
            .as_deref()
            == Some("Ada L.")
    })
    .await;

    // An invalid change (a table that does not exist, with a hostile name) is
    // rejected with its reason; the configuration in force keeps working.
    ctl.exec_drop(
        "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, ?)",
        ("x`; DROP TABLE t1; -- \"'",),
    )
    .await
    .unwrap();
    wait_mysql(
        &mut ctl,
        "the invalid change rejected",
        "SELECT state = 'rejected' AND message LIKE '%does not exist%' FROM duplex.config_status WHERE link_id = 1",
        T,
    )
    .await;
    let (ok, out) = duplex_cli(&control_url, &["config", "check"]);
    assert!(!ok, "config check must fail on a rejected change: {out}");
    let (ok, out) = duplex_cli(&control_url, &["status"]);
    assert!(ok, "status: {out}");
    assert!(
        out.contains("rejected") && out.contains("does not exist"),
        "{out}"
    );
    a.batch_execute("INSERT INTO t1 VALUES (3, 'still flowing')")
        .await
        .unwrap();
    wait_mysql(
        &mut b,
        "t1 still syncs",
        "SELECT COUNT(*) FROM t1 WHERE id = 3",
        T,
    )
    .await;
    ctl.query_drop("DELETE FROM duplex.link_tables WHERE table_name LIKE 'x%'")
        .await
        .unwrap();
    wait_mysql(
        &mut ctl,
        "back to running",
        "SELECT state = 'running' FROM duplex.config_status WHERE link_id = 1",
        T,
    )
    .await;

    // Pause and resume one table: its changes are held, then applied in order.
    ctl.query_drop("UPDATE duplex.link_tables SET paused = TRUE WHERE table_name = 't1'")
        .await
        .unwrap();
    wait_mysql(
        &mut ctl,
        "t1 paused in force",
        "SELECT JSON_SEARCH(applied_config, 'one', '%t1%paused%') IS NOT NULL FROM duplex.config_status WHERE link_id = 1",
        T,
    )
    .await;
    wait_mysql(
        &mut ctl,
        "streaming with t1 paused",
        "SELECT COUNT(*) = 2 FROM duplex.link_status WHERE state = 'streaming'",
        T,
    )
    .await;
    a.batch_execute("INSERT INTO t1 VALUES (4, 'held')")
        .await
        .unwrap();
    wait_mysql(
        &mut ctl,
        "the change held",
        "SELECT COUNT(*) = 1 FROM duplex.quarantine WHERE status = 'held' AND confirmed AND row_key = 'id=4'",
        T,
    )
    .await;
    assert_eq!(
        my_value(&mut b, "SELECT CAST(COUNT(*) AS CHAR) FROM t1 WHERE id = 4")
            .await
            .as_deref(),
        Some("0"),
        "a held change was applied"
    );
    let (ok, out) = duplex_cli(&control_url, &["status", "--tables"]);
    assert!(ok && out.contains("pg->maria"), "status --tables: {out}");
    ctl.query_drop("UPDATE duplex.link_tables SET paused = FALSE WHERE table_name = 't1'")
        .await
        .unwrap();
    wait_mysql(
        &mut b,
        "the held change applied",
        "SELECT COUNT(*) FROM t1 WHERE id = 4",
        T,
    )
    .await;

    // Pause and resume the whole link.
    ctl.query_drop("UPDATE duplex.links SET enabled = FALSE WHERE link_id = 1")
        .await
        .unwrap();
    wait_mysql(
        &mut ctl,
        "the link paused",
        "SELECT state = 'paused' FROM duplex.config_status WHERE link_id = 1",
        T,
    )
    .await;
    a.batch_execute("INSERT INTO t1 VALUES (5, 'while paused')")
        .await
        .unwrap();
    ctl.query_drop("UPDATE duplex.links SET enabled = TRUE WHERE link_id = 1")
        .await
        .unwrap();
    wait_mysql(
        &mut b,
        "the paused-time change after resume",
        "SELECT COUNT(*) FROM t1 WHERE id = 5",
        T,
    )
    .await;

    // A change MariaDB refuses is quarantined in the MariaDB control schema;
    // the DBA fixes the target and retries it with the procedure.
    b.query_drop("ALTER TABLE t1 ADD CONSTRAINT v_not_bad CHECK (v <> 'bad')")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO t1 VALUES (6, 'bad'); INSERT INTO t1 VALUES (7, 'fine')")
        .await
        .unwrap();
    wait_mysql(
        &mut b,
        "the stream goes on",
        "SELECT COUNT(*) FROM t1 WHERE id = 7",
        T,
    )
    .await;
    wait_mysql(
        &mut ctl,
        "the refused change quarantined",
        "SELECT COUNT(*) = 1 FROM duplex.quarantine WHERE status = 'pending' AND confirmed AND row_key = 'id=6'",
        T,
    )
    .await;
    let id = my_value(
        &mut ctl,
        "SELECT CAST(quarantine_id AS CHAR) FROM duplex.quarantine WHERE row_key = 'id=6'",
    )
    .await
    .unwrap();
    let (ok, out) = duplex_cli(&control_url, &["quarantine", "list"]);
    assert!(ok && out.contains("id=6"), "quarantine list: {out}");
    let (ok, out) = duplex_cli(&control_url, &["quarantine", "show", &id]);
    assert!(ok && out.contains("v_not_bad"), "quarantine show: {out}");
    // Discarding a missing change is refused by the procedure, with its message.
    let (ok, out) = duplex_cli(&control_url, &["quarantine", "discard", "999999"]);
    assert!(!ok && out.contains("does not exist"), "{out}");
    b.query_drop("ALTER TABLE t1 DROP CONSTRAINT v_not_bad")
        .await
        .unwrap();
    let (ok, out) = duplex_cli(&control_url, &["quarantine", "retry", &id]);
    assert!(
        ok && out.contains("applied again"),
        "quarantine retry: {out}"
    );
    wait_mysql(
        &mut b,
        "the retried change on MariaDB",
        "SELECT COUNT(*) FROM t1 WHERE id = 6",
        T,
    )
    .await;
    wait_mysql(
        &mut ctl,
        "the record settled",
        "SELECT status = 'retried' FROM duplex.quarantine WHERE row_key = 'id=6'",
        T,
    )
    .await;
    // A conflict that is not open cannot be settled: the procedure says so.
    let (ok, out) = duplex_cli(
        &control_url,
        &["conflicts", "resolve", "424242", "--take", "local"],
    );
    assert!(!ok && out.contains("is not open"), "{out}");

    // Counters in the overview views.
    wait_mysql(
        &mut ctl,
        "counters in link_overview",
        "SELECT applied_rows >= 5 AND lag_seconds IS NOT NULL FROM duplex.link_overview WHERE source = 'pg'",
        T,
    )
    .await;
    wait_mysql(
        &mut ctl,
        "per-table counters",
        "SELECT inserted >= 5 FROM duplex.table_overview WHERE source_site = 1 AND table_name LIKE '%t1%'",
        T,
    )
    .await;

    // A conflict parked by the manual policy, recorded in the MariaDB control
    // schema and settled with the CLI (a procedure underneath).
    duplex.stop();
    ctl.query_drop(
        "UPDATE duplex.link_tables SET conflict_policy = 'manual' WHERE table_name = 't1'",
    )
    .await
    .unwrap();
    a.batch_execute("UPDATE t1 SET v = 'a1' WHERE id = 1")
        .await
        .unwrap();
    b.query_drop("UPDATE t1 SET v = 'b1' WHERE id = 1")
        .await
        .unwrap();
    duplex = DuplexProcess::spawn(&control_url, &dir.path().join("duplex.log"));
    wait_mysql(
        &mut ctl,
        "the conflict parked on both sides",
        "SELECT COUNT(*) = 2 FROM duplex.conflicts WHERE status = 'open' AND confirmed AND kind = 'update_update'",
        T,
    )
    .await;
    let (ok, listed) = duplex_cli(&control_url, &["conflicts", "list", "--open"]);
    assert!(ok && listed.contains("parked"), "conflicts list: {listed}");
    let id = my_value(
        &mut ctl,
        "SELECT CAST(conflict_id AS CHAR) FROM duplex.conflicts WHERE status = 'open' AND target_site = 2",
    )
    .await
    .unwrap();
    let (ok, shown) = duplex_cli(&control_url, &["conflicts", "show", &id]);
    assert!(
        ok && shown.contains("update_update")
            && shown.contains("\"a1\"")
            && shown.contains("\"b1\""),
        "conflicts show: {shown}"
    );
    let (ok, out) = duplex_cli(
        &control_url,
        &["conflicts", "resolve", &id, "--take", "local"],
    );
    assert!(ok, "conflicts resolve: {out}");
    wait_for("site 2's version on PostgreSQL", T, || async {
        pg_value(&a, "SELECT v FROM t1 WHERE id = 1")
            .await
            .as_deref()
            == Some("b1")
    })
    .await;
    wait_mysql(
        &mut ctl,
        "both records settled",
        "SELECT COUNT(*) = 2 FROM duplex.conflicts WHERE status IN ('resolved', 'superseded')",
        T,
    )
    .await;

    // Whole tables still equal on both sides.
    for (table, col) in [("t1", "v"), ("t2", "w"), ("t3", "name")] {
        let my_col = if table == "t3" { "full_name" } else { col };
        let pg_rows = crate::support::texts(
            &a,
            &format!("SELECT id::text || ':' || coalesce({col}, '') FROM {table} ORDER BY id"),
        )
        .await;
        let my_rows: Vec<String> = b
            .query(format!(
                "SELECT CONCAT(id, ':', COALESCE({my_col}, '')) FROM {table} ORDER BY id"
            ))
            .await
            .unwrap();
        assert_eq!(pg_rows, my_rows, "{table} differs");
    }
    // duplex check agrees, through the mapping, and records it in MariaDB.
    let (ok, out) = duplex_cli(&control_url, &["check"]);
    assert!(ok, "check: {out}");
    assert!(out.contains("table public.t3: identical"), "{out}");
    wait_mysql(
        &mut ctl,
        "the clean checks recorded",
        "SELECT COUNT(*) = 3 FROM duplex.parity_overview WHERE status = 'clean'",
        T,
    )
    .await;
    duplex.stop();
    // Every write to the MariaDB control schema (status, config_status,
    // quarantine and conflict records) went through.
    let log = duplex.log_text();
    for failure in [
        "cannot write duplex.",
        "cannot confirm",
        "cannot record",
        "ctl-secret",
    ] {
        assert!(!log.contains(failure), "'{failure}' in the log:\n{log}");
    }

    // A control schema newer than this duplex: refused with a clear message.
    ctl.query_drop("INSERT INTO duplex.schema_migrations (version, description) VALUES (999, 'from the future')")
        .await
        .unwrap();
    let (ok, out) = duplex_cli(&control_url, &["upgrade"]);
    assert!(
        !ok && out.contains("newer than this duplex understands"),
        "{out}"
    );
    let (ok, out) = duplex_cli(&control_url, &["status"]);
    assert!(
        !ok && out.contains("newer than this duplex understands"),
        "{out}"
    );
}
