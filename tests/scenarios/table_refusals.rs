//! Real workloads (issue 12): a table that cannot be synced is refused alone,
//! with its reason, while the rest of its link runs; duplex never makes an
//! application's statement fail; partitioned tables sync as one table; the
//! target's triggers do not re-stamp the rows duplex applies.

use std::time::Duration;

use crate::support::{connect, query_bool, query_i64, table_rows, texts, wait_for, Pair};
use duplex::localdb::pg::LocalPostgres;
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const T: Duration = Duration::from_secs(60);

/// `(state, reason)` of a table in duplex.table_config_status.
async fn table_state(
    control: &tokio_postgres::Client,
    table: &str,
) -> Option<(String, Option<String>)> {
    control
        .query_opt(
            "SELECT state, reason FROM duplex.table_config_status WHERE link_id = 1 AND table_name = $1",
            &[&table],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

async fn refused_with(control: &tokio_postgres::Client, table: &str, words: &[&str]) -> bool {
    matches!(table_state(control, table).await,
        Some((state, Some(reason))) if state == "refused" && words.iter().all(|w| reason.contains(w)))
}

/// The control schema in `pg`'s `postgres` database, with link 1 between
/// `sites` syncing `tables`.
async fn control_on(
    pg: &LocalPostgres,
    sites: &[(i32, &str, &str, String)],
    tables: &[&str],
) -> String {
    let url = pg.conninfo("postgres");
    let mut c = connect(&url).await;
    duplex::control::migrate_pg(&mut c).await.unwrap();
    for (id, name, engine, conninfo) in sites {
        c.execute(
            "INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES ($1, $2, $3, $4, 'disable')",
            &[id, name, engine, conninfo],
        )
        .await
        .unwrap();
    }
    c.batch_execute(
        "INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'l', 1, 2)",
    )
    .await
    .unwrap();
    for t in tables {
        c.execute(
            "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, $1)",
            &[t],
        )
        .await
        .unwrap();
    }
    url
}

/// Legacy partitioning: rows go to an inheritance child (no primary key) by
/// a trigger on the parent. Only the parent is configured: the application's
/// UPDATE and DELETE on the parent keep working on both sites while the link
/// runs, a row routed to the child is not synced and holds nothing up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inheritance_parent_syncs_alone_and_application_writes_keep_working() {
    let schema = "
        CREATE TABLE measurements (id int PRIMARY KEY, city text, v int);
        CREATE TABLE measurements_old () INHERITS (measurements);
        CREATE FUNCTION route_old() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id >= 1000 THEN
                INSERT INTO measurements_old VALUES (NEW.*);
                RETURN NULL;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER route_old BEFORE INSERT ON measurements FOR EACH ROW EXECUTE FUNCTION route_old();
        CREATE TABLE other (id int PRIMARY KEY, v text);";
    let pair = Pair::start(schema, &["measurements", "other"]).await;
    let control = connect(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both directions streaming", T, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    crate::support::wait_initial_sync_all(&pair.control_url).await;
    a.batch_execute(
        "INSERT INTO measurements VALUES (1, 'oslo', 1), (1001, 'old oslo', 5), (3, 'oslo', 0)",
    )
    .await
    .unwrap();
    b.batch_execute(
        "INSERT INTO measurements VALUES (2, 'lima', 2), (1002, 'old lima', 6), (4, 'lima', 0)",
    )
    .await
    .unwrap();
    // The application's UPDATE and DELETE on the parent, which reach the
    // child's rows too, work on both sites (each site its own rows).
    for (c, city, gone) in [(&a, "oslo", 3), (&b, "lima", 4)] {
        c.execute(
            "UPDATE measurements SET v = v + 10 WHERE city LIKE '%' || $1",
            &[&city],
        )
        .await
        .expect("the application's UPDATE on the parent");
        c.execute("DELETE FROM measurements WHERE id = $1", &[&gone])
            .await
            .expect("the application's DELETE on the parent");
    }
    // The child is in no publication: the application's statements on the
    // parent (which reach the child's rows) need no replica identity there.
    for c in [&a, &b] {
        assert!(
            query_bool(
                c,
                "SELECT NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE tablename = 'measurements_old')"
            )
            .await
        );
    }

    a.batch_execute("INSERT INTO other VALUES (1, 'after the child rows')")
        .await
        .unwrap();
    wait_for(
        "the parent's rows and the next table's row flow",
        T,
        || async {
            crate::support::pg_has_row(&b, "other", 1).await
                && query_bool(
                    &b,
                    "SELECT count(*) = 2 AND sum(v) = 23 FROM ONLY measurements",
                )
                .await
                && query_bool(
                    &a,
                    "SELECT count(*) = 2 AND sum(v) = 23 FROM ONLY measurements",
                )
                .await
        },
    )
    .await;
    const ONLY: &str =
        "SELECT id::text || ' ' || city || ' ' || v::text FROM ONLY measurements ORDER BY id";
    assert_eq!(texts(&a, ONLY).await, texts(&b, ONLY).await);
    // Each site's child rows stay its own (the child is not configured).
    assert!(query_bool(&a, "SELECT array_agg(id) = '{1001}' FROM measurements_old").await);
    assert!(query_bool(&b, "SELECT array_agg(id) = '{1002}' FROM measurements_old").await);
    assert_eq!(
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.link_overview WHERE last_error IS NOT NULL"
        )
        .await,
        0
    );
    run.shutdown().await;
}

const EVENTS_PG: &str = "
    CREATE TABLE events (id int, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
    CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');";

/// A declaratively partitioned table syncs as one table, PostgreSQL <->
/// PostgreSQL: rows in every partition, the initial copy, an update that
/// moves a row to another partition, deletes, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_table_syncs_as_one_table_between_postgresql_sites() {
    let pair = Pair::start(EVENTS_PG, &["events"]).await;
    let control = connect(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    // Rows before the link starts: copied by the initial sync.
    a.batch_execute("INSERT INTO events VALUES (1, '2024-03-01', 'before, a')")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO events VALUES (2, '2025-03-01', 'before, b')")
        .await
        .unwrap();
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both directions streaming", T, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    crate::support::wait_initial_sync_all(&pair.control_url).await;
    a.batch_execute(
        "INSERT INTO events VALUES (3, '2024-05-01', 'a, 2024'), (4, '2025-05-01', 'a, 2025');
         UPDATE events SET v = 'a, changed' WHERE id = 1;",
    )
    .await
    .unwrap();
    b.batch_execute(
        "INSERT INTO events VALUES (5, '2025-07-01', 'b, 2025');
         UPDATE events SET day = '2024-07-01', v = 'b, moved to 2024' WHERE id = 2;",
    )
    .await
    .unwrap();
    wait_for("b's writes on a", T, || {
        query_bool(&a, "SELECT EXISTS (SELECT 1 FROM events WHERE id = 2 AND day = '2024-07-01') AND EXISTS (SELECT 1 FROM events WHERE id = 5)")
    })
    .await;
    a.batch_execute("DELETE FROM events WHERE id = 4")
        .await
        .unwrap();
    const ROWS: &str = "SELECT tableoid::regclass::text || ' ' || id::text || ' ' || day::text || ' ' || v FROM events ORDER BY id";
    wait_for("both sites equal, partition by partition", T, || async {
        let (ra, rb) = (texts(&a, ROWS).await, texts(&b, ROWS).await);
        ra.len() == 4 && ra == rb
    })
    .await;
    assert_eq!(
        texts(&b, ROWS).await,
        vec![
            "events_2024 1 2024-03-01 a, changed",
            "events_2024 2 2024-07-01 b, moved to 2024",
            "events_2024 3 2024-05-01 a, 2024",
            "events_2025 5 2025-07-01 b, 2025",
        ]
    );
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["check"]);
    assert!(ok, "{out}");
    assert_eq!(
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.link_overview WHERE last_error IS NOT NULL"
        )
        .await,
        0
    );
    // One table: its changes are counted as the partitioned table's, and
    // every partition logs whole old rows (as the stream says it does).
    wait_for("the changes counted as the partitioned table's, both ways", T, || {
        query_bool(
            &control,
            "SELECT count(*) = 2 AND bool_and(table_name = 'public.events') FROM duplex.table_status",
        )
    })
    .await;
    for c in [&a, &b] {
        assert!(
            query_bool(
                c,
                "SELECT bool_and(relreplident = 'f') FROM pg_class
                  WHERE oid IN (SELECT relid FROM pg_partition_tree('events'))"
            )
            .await
        );
    }
    run.shutdown().await;
}

/// A partitioned PostgreSQL table and a plain MariaDB table sync as one
/// table, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_postgresql_table_syncs_with_a_plain_mariadb_table() {
    let m = crate::support::start_mariadb(
        "CREATE TABLE events (id INT, day DATE, v TEXT, PRIMARY KEY (id, day)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;",
    )
    .await;
    let p = crate::support::start_postgres(EVENTS_PG).await;
    let url = control_on(
        &p,
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["events"],
    )
    .await;
    let control = connect(&url).await;
    let pgc = connect(&p.conninfo("app")).await;
    let mut mc = crate::support::mysql_conn(&m).await;
    pgc.batch_execute("INSERT INTO events VALUES (1, '2024-03-01', 'before')")
        .await
        .unwrap();
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both directions streaming", T, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    crate::support::wait_initial_sync_all(&url).await;
    pgc.batch_execute(
        "INSERT INTO events VALUES (2, '2025-02-01', 'pg, 2025');
         UPDATE events SET day = '2025-03-01', v = 'moved' WHERE id = 1;",
    )
    .await
    .unwrap();
    mc.query_drop("INSERT INTO events VALUES (3, '2024-09-09', 'maria')")
        .await
        .unwrap();
    crate::support::wait_mysql(
        &mut mc,
        "PostgreSQL's rows on MariaDB",
        "SELECT COUNT(*) = 3 AND SUM(day = '2025-03-01' AND v = 'moved') = 1 FROM events",
        T,
    )
    .await;
    wait_for("MariaDB's row in its partition", T, || {
        query_bool(
            &pgc,
            "SELECT EXISTS (SELECT 1 FROM events_2024 WHERE id = 3 AND v = 'maria')",
        )
    })
    .await;
    mc.query_drop("DELETE FROM events WHERE id = 2")
        .await
        .unwrap();
    wait_for("the delete on PostgreSQL", T, || {
        query_bool(&pgc, "SELECT count(*) = 2 FROM events")
    })
    .await;
    let on_pg = crate::support::texts(
        &pgc,
        "SELECT id || ' ' || day || ' ' || v FROM events ORDER BY id",
    )
    .await;
    let on_maria: Vec<String> = mc
        .query("SELECT CONCAT_WS(' ', id, day, v) FROM events ORDER BY id")
        .await
        .unwrap();
    assert_eq!(on_pg, on_maria);
    assert_eq!(
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.link_overview WHERE last_error IS NOT NULL"
        )
        .await,
        0
    );
    run.shutdown().await;
}

const STAMPED_PG: &str = "
    CREATE TABLE items (id int PRIMARY KEY, v text, last_update timestamptz);
    CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN NEW.last_update := clock_timestamp(); RETURN NEW; END $$;
    CREATE TRIGGER stamp_last_update BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION stamp();";

/// A `last_update := now()` trigger on both PostgreSQL sites: the rows duplex
/// applies keep the stamp their site wrote (duplex applies in the replica
/// role), so the sites stay identical row by row; the application's own
/// writes are still stamped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_triggers_do_not_restamp_applied_rows_on_postgresql() {
    let pair = Pair::start(STAMPED_PG, &["items"]).await;
    let control = connect(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both directions streaming", T, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    crate::support::wait_initial_sync_all(&pair.control_url).await;
    a.batch_execute("INSERT INTO items (id, v) SELECT g, 'a' FROM generate_series(1, 20) g")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO items (id, v) SELECT g, 'b' FROM generate_series(21, 40) g")
        .await
        .unwrap();
    a.batch_execute("UPDATE items SET v = 'a again' WHERE id <= 20 AND id % 3 = 0")
        .await
        .unwrap();
    wait_for("every row on both sites", T, || async {
        query_i64(&a, "SELECT count(*) FROM items").await == 40
            && query_i64(&b, "SELECT count(*) FROM items WHERE v = 'a again'").await == 6
    })
    .await;
    // The application's writes are stamped by its site's trigger.
    assert!(query_bool(&a, "SELECT bool_and(last_update IS NOT NULL) FROM items").await);
    wait_for("identical row by row, stamps included", T, || async {
        table_rows(&a, "items").await == table_rows(&b, "items").await
    })
    .await;
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["check"]);
    assert!(ok, "{out}");
    // ... and stay so: nothing re-stamped flows or lingers.
    b.batch_execute("UPDATE items SET v = 'b again' WHERE id = 40")
        .await
        .unwrap();
    wait_for("b's update on a", T, || {
        query_bool(&a, "SELECT v = 'b again' FROM items WHERE id = 40")
    })
    .await;
    assert_eq!(table_rows(&a, "items").await, table_rows(&b, "items").await);
    assert!(matches!(table_state(&control, "items").await, Some((s, None)) if s == "syncing"));
    run.shutdown().await;
}

/// MariaDB fires triggers for every session: a target table with a
/// `last_update` trigger is refused (the message names the trigger and the
/// fix) while the link's other table flows both ways; with
/// `fire_triggers = true` it syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_trigger_refuses_its_table_until_fire_triggers() {
    let m = crate::support::start_mariadb(
        "CREATE TABLE items (id INT PRIMARY KEY, v TEXT, last_update DATETIME(6) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
         CREATE TRIGGER stamp_last_update BEFORE INSERT ON items FOR EACH ROW SET NEW.last_update = NOW(6);
         CREATE TABLE plain (id INT PRIMARY KEY, v TEXT) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;",
    )
    .await;
    let p = crate::support::start_postgres(
        "CREATE TABLE items (id int PRIMARY KEY, v text, last_update timestamp(6));
         CREATE TABLE plain (id int PRIMARY KEY, v text);",
    )
    .await;
    let url = control_on(
        &p,
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["items", "plain"],
    )
    .await;
    let control = connect(&url).await;
    let pgc = connect(&p.conninfo("app")).await;
    let mut mc = crate::support::mysql_conn(&m).await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("duplex starts: one table's triggers do not stop the link");
    wait_for("both directions streaming", T, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    wait_for("items refused, naming the trigger and the fix", T, || {
        refused_with(
            &control,
            "items",
            &["stamp_last_update", "fire_triggers", "maria"],
        )
    })
    .await;
    let (ok, out) = crate::support::duplex_cli(&url, &["config", "check"]);
    assert!(
        !ok && out.contains("table public.items would be REFUSED")
            && out.contains("stamp_last_update"),
        "{out}"
    );
    let (_, status) = crate::support::duplex_cli(&url, &["status", "--tables"]);
    assert!(
        status.contains("public.items")
            && status.contains("refused")
            && status.contains("stamp_last_update"),
        "{status}"
    );
    // The other table flows both ways meanwhile.
    pgc.batch_execute("INSERT INTO plain VALUES (1, 'from pg'); INSERT INTO items (id, v) VALUES (1, 'not synced')")
        .await
        .unwrap();
    mc.query_drop("INSERT INTO plain VALUES (2, 'from maria')")
        .await
        .unwrap();
    crate::support::wait_mysql(
        &mut mc,
        "plain pg->maria",
        "SELECT COUNT(*) FROM plain WHERE id = 1",
        T,
    )
    .await;
    wait_for("plain maria->pg", T, || {
        crate::support::pg_has_row(&pgc, "plain", 2)
    })
    .await;
    let on_maria: Option<i64> = mc.query_first("SELECT COUNT(*) FROM items").await.unwrap();
    assert_eq!(on_maria, Some(0), "a refused table is not synced");

    // Said explicitly: the trigger fires for applied rows, and the table syncs.
    control
        .batch_execute(
            "UPDATE duplex.link_tables SET fire_triggers = true WHERE table_name = 'items'",
        )
        .await
        .unwrap();
    wait_for("items syncing", T, || async {
        matches!(table_state(&control, "items").await, Some((s, None)) if s == "syncing")
    })
    .await;
    crate::support::wait_mysql(
        &mut mc,
        "items pg->maria, stamped by MariaDB's trigger",
        "SELECT COUNT(*) FROM items WHERE id = 1 AND last_update IS NOT NULL",
        T,
    )
    .await;
    pgc.batch_execute("INSERT INTO items (id, v) VALUES (2, 'after')")
        .await
        .unwrap();
    crate::support::wait_mysql(
        &mut mc,
        "a new items row",
        "SELECT COUNT(*) FROM items WHERE id = 2",
        T,
    )
    .await;
    assert!(
        query_bool(
            &control,
            "SELECT state = 'running' FROM duplex.config_status WHERE link_id = 1"
        )
        .await
    );
    run.shutdown().await;
}

/// A table without a primary key and a table with a column on one site only
/// are refused alone, each with its reason and fix in `duplex status`, the
/// control views and `duplex config check`; the other table syncs and
/// `duplex run` keeps running. Fixed in the configuration, the table joins;
/// a column added later to one site only refuses its table as it is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_cannot_be_synced_are_refused_alone_and_duplex_run_keeps_running() {
    let pair = Pair::start(
        "CREATE TABLE good (id int PRIMARY KEY, v text);
         CREATE TABLE nopk (id int, v text);
         CREATE TABLE extra (id int PRIMARY KEY, v text);",
        &["good", "nopk", "extra"],
    )
    .await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    b.batch_execute("ALTER TABLE extra ADD COLUMN note text")
        .await
        .unwrap();
    let control = connect(&pair.control_url).await;
    let dir = tempfile::tempdir().unwrap();
    let mut run =
        crate::support::DuplexProcess::spawn(&pair.control_url, &dir.path().join("duplex.log"));
    wait_for("both directions streaming", T, || {
        crate::support::streaming(&control, 1)
    })
    .await;
    wait_for(
        "nopk and extra refused, each with its reason",
        T,
        || async {
            refused_with(&control, "nopk", &["no primary key"]).await
                && refused_with(
                    &control,
                    "extra",
                    &[
                        "column note exists on site b only",
                        "duplex.column_mappings",
                    ],
                )
                .await
        },
    )
    .await;
    assert!(matches!(table_state(&control, "good").await, Some((s, None)) if s == "syncing"));
    // Where a DBA looks: the link's configuration state and message, the
    // per-table view, `duplex status` and `duplex config check`.
    assert!(
        query_bool(
            &control,
            "SELECT state = 'rejected' AND message LIKE '%public.nopk refused%' AND message LIKE '%public.extra refused%'
               FROM duplex.config_status WHERE link_id = 1"
        )
        .await
    );
    assert!(
        query_bool(
            &control,
            "SELECT count(*) = 2 AND bool_and(config_reason LIKE '%no primary key%')
               FROM duplex.table_overview WHERE table_name = 'public.nopk' AND config_state = 'refused'"
        )
        .await
    );
    let (_, status) = crate::support::duplex_cli(&pair.control_url, &["status"]);
    assert!(
        status.contains("public.nopk")
            && status.contains("no primary key")
            && status.contains("column note exists on site b only"),
        "{status}"
    );
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["config", "check"]);
    assert!(!ok, "{out}");
    assert!(out.contains("table public.nopk would be REFUSED"), "{out}");
    assert!(
        out.contains("table public.extra would be REFUSED")
            && out.contains("add the column on site a")
            && out.contains(
                "synced, default_value) VALUES (1, 'public', 'extra', 2, 'note', false, NULL)"
            ),
        "{out}"
    );
    // The other table syncs; duplex run is still there.
    a.batch_execute("INSERT INTO good VALUES (1, 'a')")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO good VALUES (2, 'b'); INSERT INTO nopk VALUES (1, 'x'); INSERT INTO extra (id, v, note) VALUES (1, 'x', 'n')")
        .await
        .unwrap();
    wait_for("good flows both ways", T, || async {
        crate::support::pg_has_row(&b, "good", 1).await
            && crate::support::pg_has_row(&a, "good", 2).await
    })
    .await;
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "duplex run exited: {}",
        run.log_text()
    );

    // Fixed in the configuration: the column stays on site b only.
    control
        .batch_execute(
            "INSERT INTO duplex.column_mappings (link_id, schema_name, table_name, site_id, column_name, synced)
             VALUES (1, 'public', 'extra', 2, 'note', false)",
        )
        .await
        .unwrap();
    wait_for("extra syncing", T, || async {
        matches!(table_state(&control, "extra").await, Some((s, None)) if s == "syncing")
    })
    .await;
    wait_for("extra's row copied to a", T, || {
        crate::support::pg_has_row(&a, "extra", 1)
    })
    .await;
    a.batch_execute("INSERT INTO extra (id, v) VALUES (2, 'from a')")
        .await
        .unwrap();
    wait_for("extra flows to b", T, || {
        crate::support::pg_has_row(&b, "extra", 2)
    })
    .await;

    // A column added to one site while the link runs: the direction that
    // cannot apply it holds that table alone (it stays in the link: its
    // changes wait in order, see scenarios::schema_changes).
    a.batch_execute(
        "ALTER TABLE good ADD COLUMN drift int; INSERT INTO good (id, v, drift) VALUES (3, 'drifted', 7)",
    )
    .await
    .unwrap();
    wait_for("good held once its shape differs", T, || async {
        query_bool(
            &control,
            "SELECT count(*) = 1 FROM duplex.table_overview
              WHERE table_name = 'public.good' AND held_for_shape AND shape_difference LIKE '%column drift%'",
        )
        .await
    })
    .await;
    assert!(matches!(table_state(&control, "good").await, Some((s, None)) if s == "syncing"));
    a.batch_execute("INSERT INTO extra (id, v) VALUES (3, 'still flowing')")
        .await
        .unwrap();
    wait_for("the other table still flows", T, || {
        crate::support::pg_has_row(&b, "extra", 3)
    })
    .await;
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "duplex run exited: {}",
        run.log_text()
    );
    b.batch_execute("ALTER TABLE good ADD COLUMN drift int")
        .await
        .unwrap();
    wait_for("good's held row applied once b has the column", T, || {
        crate::support::pg_has_row(&b, "good", 3)
    })
    .await;
    run.stop();
}
