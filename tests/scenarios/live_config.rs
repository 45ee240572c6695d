//! Live configuration: everything is driven through SQL on the control schema
//! while duplex runs (no restart, no config file). A table is added to a running
//! link, the link is paused and resumed, invalid changes are rejected with their
//! reason in duplex.config_status while the configuration in force keeps working,
//! and identifiers from configuration rows are quoted, never executed: on
//! PostgreSQL sites, and with a MariaDB site (a table whose name holds a backtick,
//! a double quote, a semicolon and a comment; a link whose site is down).

use std::time::{Duration, Instant};

use crate::support::{connect, query_bool, query_i64, wait_for, Pair};
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

/// The odd table's name: quotes, a semicolon and a comment in one identifier.
const ODD: &str = "odd\"name; DROP TABLE t1; --";

fn schema() -> String {
    format!(
        "CREATE TABLE t1 (id int PRIMARY KEY, v text);
         CREATE TABLE t2 (id int PRIMARY KEY, v text);
         CREATE TABLE {} (id int PRIMARY KEY, v text);",
        duplex::pg::quote_ident(ODD)
    )
}

async fn has_row(c: &tokio_postgres::Client, table: &str, id: i32) -> bool {
    crate::support::pg_has_row(c, table, id).await
}

async fn config_state(control: &tokio_postgres::Client) -> (String, Option<String>, Vec<String>) {
    let r = control
        .query_one(
            "SELECT state, message, applied_config FROM duplex.config_status WHERE link_id = 1",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_take_effect_live_and_invalid_ones_are_rejected() {
    let pair = Pair::start(&schema(), &["t1"]).await;
    let control = connect(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let t = Duration::from_secs(30);
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both directions streaming", t, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    let (state, _, applied) = config_state(&control).await;
    assert_eq!(state, "running");
    assert!(
        applied.iter().any(|l| l.starts_with("table public.t1:")),
        "{applied:?}"
    );
    assert!(!applied.iter().any(|l| l.contains("public.t2")));

    // Add a table to the running link.
    let started = Instant::now();
    control
        .batch_execute("INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 't2')")
        .await
        .unwrap();
    wait_for("t2 in the configuration in force", t, || async {
        config_state(&control)
            .await
            .2
            .iter()
            .any(|l| l.starts_with("table public.t2:"))
    })
    .await;
    let took = started.elapsed();
    eprintln!("adding a table took effect in {} ms", took.as_millis());
    b.batch_execute("INSERT INTO t2 VALUES (1, 'from b')")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO t2 VALUES (2, 'from a')")
        .await
        .unwrap();
    wait_for("t2 rows flow both ways", t, || async {
        has_row(&a, "t2", 1).await && has_row(&b, "t2", 2).await
    })
    .await;

    // Pause the link: nothing is read from the sites; resume: what was
    // written meanwhile arrives.
    control
        .batch_execute("UPDATE duplex.links SET enabled = false WHERE link_id = 1")
        .await
        .unwrap();
    wait_for("link paused", t, || async {
        config_state(&control).await.0 == "paused"
            && query_i64(
                &control,
                "SELECT count(*) FROM duplex.link_status WHERE link_id = 1 AND state = 'paused'",
            )
            .await
                == 2
    })
    .await;
    a.batch_execute("INSERT INTO t1 VALUES (10, 'written while paused')")
        .await
        .unwrap();
    // No reader holds either slot: nothing can flow.
    for c in [&a, &b] {
        assert!(
            query_bool(
                c,
                "SELECT NOT bool_or(active) FROM pg_replication_slots WHERE slot_name LIKE 'duplex_l1_%'"
            )
            .await
        );
    }
    assert!(!has_row(&b, "t1", 10).await);
    control
        .batch_execute("UPDATE duplex.links SET enabled = true WHERE link_id = 1")
        .await
        .unwrap();
    wait_for("the paused write arrives after resume", t, || {
        has_row(&b, "t1", 10)
    })
    .await;
    assert_eq!(config_state(&control).await.0, "running");

    // Pause one table: its changes are held while the rest of the link
    // flows; resumed, they arrive in order.
    control
        .batch_execute("UPDATE duplex.link_tables SET paused = true WHERE table_name = 't1'")
        .await
        .unwrap();
    wait_for("t1 paused", t, || async {
        let (state, _, applied) = config_state(&control).await;
        state == "running"
            && applied
                .iter()
                .any(|l| l.starts_with("table public.t1:") && l.ends_with("paused"))
    })
    .await;
    wait_for("streaming after the change", t, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    a.batch_execute("INSERT INTO t1 VALUES (50, 'held'); UPDATE t1 SET v = 'held, then changed' WHERE id = 50; INSERT INTO t2 VALUES (51, 'flows')")
        .await
        .unwrap();
    wait_for("t2 flows while t1 is paused", t, || has_row(&b, "t2", 51)).await;
    wait_for("t1's changes held", t, || {
        query_bool(
            &control,
            "SELECT count(*) = 2 FROM duplex.quarantine WHERE status = 'held' AND confirmed AND table_name = 'public.t1'",
        )
    })
    .await;
    assert!(!has_row(&b, "t1", 50).await);
    control
        .batch_execute("UPDATE duplex.link_tables SET paused = false WHERE table_name = 't1'")
        .await
        .unwrap();
    wait_for("t1's held changes applied in order", t, || {
        query_bool(
            &b,
            "SELECT EXISTS (SELECT 1 FROM t1 WHERE id = 50 AND v = 'held, then changed')",
        )
    })
    .await;
    wait_for("the held records settled", t, || {
        query_bool(
            &control,
            "SELECT count(*) = 2 AND bool_and(status = 'retried') FROM duplex.quarantine WHERE table_name = 'public.t1'",
        )
    })
    .await;

    // Invalid changes: each is refused with its reason, alone: a table whose
    // new configuration cannot be synced stays on its configuration in
    // force, a table that cannot be synced at all is refused, and the rest
    // of the link keeps syncing.
    control
        .batch_execute(
            "INSERT INTO duplex.sites (site_id, name, engine, conninfo) VALUES (3, 'c', 'postgresql', 'host=127.0.0.1 port=1 dbname=x')",
        )
        .await
        .unwrap();
    let cases: [(&str, &str, &str); 7] = [
        (
            "INSERT INTO duplex.column_mappings (link_id, table_name, site_id, column_name, synced) VALUES (1, 't1', 1, 'id', false)",
            "DELETE FROM duplex.column_mappings",
            "part of the primary key",
        ),
        (
            "INSERT INTO duplex.column_mappings (link_id, table_name, site_id, column_name, peer_column) VALUES (1, 't1', 1, 'v', 'no_such')",
            "DELETE FROM duplex.column_mappings",
            "has no column no_such",
        ),
        (
            "INSERT INTO duplex.column_mappings (link_id, table_name, site_id, column_name, transform) VALUES (1, 't1', 1, 'v', 'tz_shift +01:00')",
            "DELETE FROM duplex.column_mappings",
            "does not apply",
        ),
        (
            "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 'missing_table')",
            "DELETE FROM duplex.link_tables WHERE table_name = 'missing_table'",
            "public.missing_table does not exist",
        ),
        (
            "INSERT INTO duplex.column_owners VALUES (1, 'public', 't1', 'no_such_column', 2)",
            "DELETE FROM duplex.column_owners",
            "has no column no_such_column",
        ),
        (
            "INSERT INTO duplex.column_owners VALUES (1, 'public', 't1', 'v', 3)",
            "DELETE FROM duplex.column_owners",
            "owned by site 3, which is not one of the link's sites",
        ),
        (
            // Configuration is input too: a name made to break out of quoting.
            "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 'x\"; DROP TABLE t2; --')",
            "DELETE FROM duplex.link_tables WHERE table_name LIKE 'x%'",
            "does not exist",
        ),
    ];
    for (i, (change, undo, reason)) in cases.iter().enumerate() {
        control.batch_execute(change).await.unwrap();
        // The dry run says the same as the running process, on its own.
        let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["config", "check"]);
        assert!(
            !ok && out.contains("would be REFUSED") && out.contains(reason),
            "{out}"
        );
        wait_for(&format!("change {i} rejected"), t, || async {
            let (state, message, _) = config_state(&control).await;
            state == "rejected" && message.is_some_and(|m| m.contains(reason))
        })
        .await;
        // The table's own status says why, too.
        assert!(
            query_bool(
                &control,
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM duplex.table_config_status WHERE link_id = 1 AND reason LIKE '%{}%')",
                    reason.replace('\'', "''")
                )
            )
            .await,
            "{reason}"
        );
        let id = 100 + i as i32;
        a.execute("INSERT INTO t1 VALUES ($1, 'still syncing')", &[&id])
            .await
            .unwrap();
        wait_for(&format!("t1 still syncs after rejection {i}"), t, || {
            has_row(&b, "t1", id)
        })
        .await;
        control.batch_execute(undo).await.unwrap();
        wait_for(&format!("change {i} undone"), t, || async {
            config_state(&control).await.0 == "running"
        })
        .await;
    }
    // Refused because of the sites' state, not the configuration: a table
    // configured before it is created. Checked again by itself, it joins once
    // it exists on both sites.
    control
        .batch_execute("INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 'late')")
        .await
        .unwrap();
    wait_for("the missing table rejected", t, || async {
        let (state, message, _) = config_state(&control).await;
        state == "rejected" && message.is_some_and(|m| m.contains("public.late does not exist"))
    })
    .await;
    for c in [&a, &b] {
        c.batch_execute("CREATE TABLE late (id int PRIMARY KEY, v text)")
            .await
            .unwrap();
    }
    wait_for("the late table in force", t, || async {
        let (state, _, applied) = config_state(&control).await;
        state == "running" && applied.iter().any(|l| l.starts_with("table public.late:"))
    })
    .await;

    // The database itself refuses a policy that does not exist.
    let err = control
        .batch_execute(
            "UPDATE duplex.link_tables SET conflict_policy = 'newest_wins' WHERE table_name = 't1'",
        )
        .await
        .unwrap_err();
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("check constraint"), "{message}");
    for c in [&a, &b] {
        assert!(query_bool(c, "SELECT to_regclass('public.t2') IS NOT NULL").await);
    }

    // A table whose name holds quotes, a semicolon and a comment syncs like
    // any other: quoted everywhere, executed nowhere.
    control
        .execute(
            "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, $1)",
            &[&ODD],
        )
        .await
        .unwrap();
    wait_for("the odd table in force", t, || async {
        let (state, _, applied) = config_state(&control).await;
        state == "running" && applied.iter().any(|l| l.contains("odd\"name"))
    })
    .await;
    a.execute(
        &format!(
            "INSERT INTO {} VALUES (1, 'odd')",
            duplex::pg::quote_ident(ODD)
        ),
        &[],
    )
    .await
    .unwrap();
    wait_for("the odd table's row on B", t, || has_row(&b, ODD, 1)).await;
    for c in [&a, &b] {
        assert!(query_bool(c, "SELECT to_regclass('public.t1') IS NOT NULL").await);
    }
    run.shutdown().await;

    // With duplex stopped, the dry run shows what a pending change would do.
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["config", "check"]);
    assert!(ok && out.contains("no change pending"), "{out}");
    control
        .batch_execute(
            "UPDATE duplex.link_tables SET conflict_policy = 'manual' WHERE table_name = 't1'",
        )
        .await
        .unwrap();
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["config", "check"]);
    assert!(ok, "{out}");
    assert!(out.contains("would be applied"), "{out}");
    assert!(out.contains("- table public.t1: last_writer_wins"), "{out}");
    assert!(out.contains("+ table public.t1: manual"), "{out}");
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["upgrade"]);
    assert!(ok && out.contains("up to date"), "{out}");
}

/// Column mappings and a one-way table, added to a running link in one
/// transaction on the control schema: a renamed and lower-cased column, a
/// column only site A syncs nowhere, a column only site B has (filled with a
/// configured value), and a table that flows from A to B only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_mappings_and_one_way_tables_apply_live() {
    let pair = Pair::start(
        "CREATE TABLE t1 (id int PRIMARY KEY, v text);
         CREATE TABLE audit (id int PRIMARY KEY, v text);",
        &["t1"],
    )
    .await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute("CREATE TABLE people (id int PRIMARY KEY, email text, note text, secret text)")
        .await
        .unwrap();
    b.batch_execute(
        "CREATE TABLE people (id int PRIMARY KEY, mail text, note text, region text NOT NULL)",
    )
    .await
    .unwrap();
    let control = connect(&pair.control_url).await;
    let t = Duration::from_secs(30);
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both directions streaming", t, || {
        crate::support::streaming(&control, 1)
    })
    .await;

    control
        .batch_execute(
            "BEGIN;
             INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 'people');
             INSERT INTO duplex.link_tables (link_id, table_name, direction) VALUES (1, 'audit', 'a_to_b');
             INSERT INTO duplex.column_mappings (link_id, table_name, site_id, column_name, peer_column, transform)
                  VALUES (1, 'people', 1, 'email', 'mail', 'lower');
             INSERT INTO duplex.column_mappings (link_id, table_name, site_id, column_name, synced)
                  VALUES (1, 'people', 1, 'secret', false);
             INSERT INTO duplex.column_mappings (link_id, table_name, site_id, column_name, synced, default_value)
                  VALUES (1, 'people', 2, 'region', false, 'EU');
             COMMIT;",
        )
        .await
        .unwrap();
    wait_for("the mappings in force", t, || async {
        let (state, _, applied) = config_state(&control).await;
        state == "running"
            && applied
                .iter()
                .any(|l| l.starts_with("table public.people:") && l.contains("as mail lower"))
    })
    .await;
    wait_for("streaming with the mappings", t, || {
        crate::support::streaming(&control, 1)
    })
    .await;

    a.batch_execute("INSERT INTO people VALUES (1, 'Ann@Example.ORG', 'from a', 'only on a')")
        .await
        .unwrap();
    wait_for("the mapped row on B", t, || {
        query_bool(
            &b,
            "SELECT EXISTS (SELECT 1 FROM people WHERE id = 1 AND mail = 'ann@example.org' AND note = 'from a' AND region = 'EU')",
        )
    })
    .await;
    // A's next change reaches B's row, which duplex wrote with the filled
    // column: no false "unsynced local edit" (the filled column is B's own).
    a.batch_execute("UPDATE people SET note = 'from a, again' WHERE id = 1")
        .await
        .unwrap();
    wait_for("A's update on B", t, || {
        query_bool(&b, "SELECT note = 'from a, again' FROM people WHERE id = 1")
    })
    .await;
    // B changes another column: the lower-cased copy does not flow back over
    // A's original.
    b.batch_execute("UPDATE people SET note = 'from b', region = 'US' WHERE id = 1")
        .await
        .unwrap();
    wait_for("B's note on A", t, || {
        query_bool(&a, "SELECT note = 'from b' FROM people WHERE id = 1")
    })
    .await;
    assert!(
        query_bool(
            &a,
            "SELECT email = 'Ann@Example.ORG' FROM people WHERE id = 1"
        )
        .await
    );
    // B changes the mapped column itself: that does flow, to A's name.
    b.batch_execute("UPDATE people SET mail = 'ann@b.example' WHERE id = 1")
        .await
        .unwrap();
    wait_for("B's update on A, mapped back", t, || {
        query_bool(
            &a,
            "SELECT EXISTS (SELECT 1 FROM people WHERE id = 1 AND email = 'ann@b.example' AND note = 'from b' AND secret = 'only on a')",
        )
    })
    .await;
    // Each site's own column stayed its own.
    assert!(query_bool(&b, "SELECT region = 'US' FROM people WHERE id = 1").await);

    // The one-way table: A's rows reach B, B's never reach A.
    b.batch_execute("INSERT INTO audit VALUES (2, 'from b')")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO audit VALUES (1, 'from a')")
        .await
        .unwrap();
    wait_for("A's audit row on B", t, || {
        query_bool(&b, "SELECT EXISTS (SELECT 1 FROM audit WHERE id = 1)")
    })
    .await;
    // A later row of B's in another table arrives on A: everything before it
    // (B's audit row) has been read and passed over.
    b.batch_execute("INSERT INTO t1 VALUES (3, 'fence')")
        .await
        .unwrap();
    wait_for("the fence on A", t, || {
        query_bool(&a, "SELECT EXISTS (SELECT 1 FROM t1 WHERE id = 3)")
    })
    .await;
    assert!(query_bool(&a, "SELECT NOT EXISTS (SELECT 1 FROM audit WHERE id = 2)").await);
    assert_eq!(
        query_i64(&control, "SELECT count(*) FROM duplex.conflicts").await
            + query_i64(&control, "SELECT count(*) FROM duplex.quarantine").await,
        0
    );
    run.shutdown().await;
}

/// Tables by pattern: matches on both sites join the link, an exclude pattern
/// and a table on one site only stay out, and a table created later on both
/// sites joins by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_join_a_running_link_by_pattern() {
    let pair = Pair::start(
        "CREATE TABLE t1 (id int PRIMARY KEY, v text);
         CREATE TABLE log_a (id int PRIMARY KEY, v text);
         CREATE TABLE log_b (id int PRIMARY KEY, v text);",
        &["t1"],
    )
    .await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute("CREATE TABLE log_only_a (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let control = connect(&pair.control_url).await;
    let t = Duration::from_secs(30);
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both directions streaming", t, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    control
        .batch_execute(
            "INSERT INTO duplex.link_table_patterns (link_id, pattern) VALUES (1, 'log%');
             INSERT INTO duplex.link_table_patterns (link_id, pattern, exclude) VALUES (1, 'log_b', true);",
        )
        .await
        .unwrap();
    let tables = || async {
        config_state(&control)
            .await
            .2
            .iter()
            .filter_map(|l| l.strip_prefix("table public."))
            .map(|l| l.split(':').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    wait_for("log_a joined", t, || async {
        tables().await == ["t1", "log_a"]
    })
    .await;
    wait_for("streaming again", t, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    // log_b's row first: log_a's arriving on B shows log_b's was passed over.
    for (table, id) in [("log_b", 2), ("log_a", 1)] {
        a.execute(&format!("INSERT INTO {table} VALUES ($1, 'x')"), &[&id])
            .await
            .unwrap();
    }
    wait_for("log_a's row on B", t, || has_row(&b, "log_a", 1)).await;

    // Created later on both sites: joins at the next re-read.
    for c in [&a, &b] {
        c.batch_execute("CREATE TABLE log_c (id int PRIMARY KEY, v text)")
            .await
            .unwrap();
    }
    wait_for("log_c joined", t, || async {
        tables().await == ["t1", "log_a", "log_c"]
    })
    .await;
    wait_for("streaming again", t, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    b.batch_execute("INSERT INTO log_c VALUES (3, 'from b')")
        .await
        .unwrap();
    wait_for("log_c's row on A", t, || has_row(&a, "log_c", 3)).await;
    // The excluded table's write went nowhere.
    assert!(!has_row(&b, "log_b", 2).await);
    run.shutdown().await;
}

// ----- With a MariaDB site.

/// Backtick, double quote, semicolon, comment: hostile to either engine's quoting.
const HOSTILE: &str = "odd`name\"; DROP TABLE t1; --";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_table_names_are_quoted_on_mariadb_and_postgresql() {
    crate::support::init_tracing();
    let pg = crate::support::start_postgres(&format!(
        "CREATE TABLE t1 (id int PRIMARY KEY, v varchar(50));
         CREATE TABLE {} (id int PRIMARY KEY, v varchar(50));",
        duplex::pg::quote_ident(HOSTILE)
    ))
    .await;
    let my = crate::support::start_mariadb(&format!(
        "CREATE TABLE t1 (id INT PRIMARY KEY, v VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
         CREATE TABLE {} (id INT PRIMARY KEY, v VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;",
        my_quote(HOSTILE)
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
    wait_for("both directions streaming", t, || {
        crate::support::streaming(&control, 1)
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
        let (state, message, _) = config_state(&control).await;
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
            &[&HOSTILE],
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
    wait_for("both directions streaming again", t, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    a.batch_execute(&format!(
        "INSERT INTO {} VALUES (1, 'from postgres')",
        duplex::pg::quote_ident(HOSTILE)
    ))
    .await
    .unwrap();
    b.query_drop(format!(
        "INSERT INTO {} VALUES (2, 'from mariadb')",
        my_quote(HOSTILE)
    ))
    .await
    .unwrap();
    wait_my_row(&mut b, HOSTILE, 1, "the odd table's row on MariaDB").await;
    wait_for("the odd table's row on PostgreSQL", t, || {
        has_row(&a, HOSTILE, 2)
    })
    .await;
    // t1 is still there on both, and still syncs.
    assert!(query_bool(&a, "SELECT to_regclass('public.t1') IS NOT NULL").await);
    b.query_drop("INSERT INTO t1 VALUES (1, 'still here')")
        .await
        .unwrap();
    wait_for("t1 syncs", t, || has_row(&a, "t1", 1)).await;

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
    wait_for("the fence on PostgreSQL", t, || has_row(&a, "t1", 7)).await;
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
    wait_for("link 1 streaming", t, || {
        crate::support::streaming(&control, 1)
    })
    .await;
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
        crate::support::streaming(&control, 2)
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
