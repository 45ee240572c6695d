//! Cases found in review: constraints the source kept must hold in the order
//! the target applies rows, identity columns, and a lost slot never silently
//! skips changes.

use std::time::Duration;

use crate::support::{query_bool, table_rows, wait_for, Pair};
use duplex::pipeline::PipelineTuning;

const SCHEMA: &str = "
CREATE TABLE codes (id int PRIMARY KEY, code text NOT NULL UNIQUE, note text);
CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_keep_a_secondary_unique_constraint_in_source_order() {
    let pair = Pair::start(SCHEMA, &["codes", "ident"]).await;
    let run = crate::support::start_synced(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute("INSERT INTO codes SELECT g, 'c' || g, NULL FROM generate_series(1, 2000) g")
        .await
        .unwrap();
    let t = Duration::from_secs(30);
    wait_for("rows on B", t, || {
        query_bool(&b, "SELECT count(*) = 2000 FROM codes")
    })
    .await;
    // Statistics make the target plan a multi-row UPDATE as a hash join, which
    // visits rows in physical order (ascending id), not in the batch's order.
    b.batch_execute("ANALYZE codes").await.unwrap();
    // Shift every code up by one in descending id order: unique at every step
    // on the source, a collision at the first row if applied in ascending order.
    let mut sql = String::from("BEGIN; UPDATE codes SET code = 'tmp' WHERE id = 2000;");
    for i in (1..2000).rev() {
        sql.push_str(&format!(
            "UPDATE codes SET code = 'c{}' WHERE id = {i};",
            i + 1
        ));
    }
    sql.push_str("UPDATE codes SET code = 'c1' WHERE id = 2000; COMMIT;");
    a.batch_execute(&sql).await.unwrap();
    wait_for("shifted codes on B", t, || {
        query_bool(&b, "SELECT code = 'c1' FROM codes WHERE id = 2000")
    })
    .await;
    assert_eq!(table_rows(&a, "codes").await, table_rows(&b, "codes").await);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_always_identity_columns_sync_both_ways() {
    let pair = Pair::start(SCHEMA, &["codes", "ident"]).await;
    // Each side hands out its own identity range.
    pair.b
        .psql(
            "app",
            "ALTER TABLE ident ALTER COLUMN id RESTART WITH 1000000",
        )
        .unwrap();
    let run = crate::support::start_synced(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute("INSERT INTO ident (v) VALUES ('from a')")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO ident (v) VALUES ('from b')")
        .await
        .unwrap();
    let t = Duration::from_secs(30);
    wait_for("both rows on both sides", t, || async {
        query_bool(&a, "SELECT count(*) = 2 FROM ident").await
            && query_bool(&b, "SELECT count(*) = 2 FROM ident").await
    })
    .await;
    b.batch_execute("UPDATE ident SET v = 'changed on b' WHERE id = 1")
        .await
        .unwrap();
    wait_for("update on A", t, || {
        query_bool(&a, "SELECT v = 'changed on b' FROM ident WHERE id = 1")
    })
    .await;
    assert_eq!(table_rows(&a, "ident").await, table_rows(&b, "ident").await);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_is_refused_instead_of_silently_recreated() {
    let pair = Pair::start(SCHEMA, &["codes", "ident"]).await;
    let run = crate::support::start_synced(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute("INSERT INTO codes VALUES (1, 'x', NULL)")
        .await
        .unwrap();
    wait_for("row on B", Duration::from_secs(30), || {
        query_bool(&b, "SELECT count(*) = 1 FROM codes")
    })
    .await;
    run.shutdown().await;
    // The DBA (or a failover) loses A's slot; changes keep happening on A.
    drop_released_slot(&a).await;
    a.batch_execute("INSERT INTO codes VALUES (2, 'y', NULL)")
        .await
        .unwrap();
    let err = match duplex::runner::start(&pair.control_url, PipelineTuning::default()).await {
        Ok(_) => panic!("duplex recreated a lost slot and would have skipped changes"),
        Err(e) => duplex::error::error_chain(&e),
    };
    assert!(
        err.contains("duplex_l1_s1") && err.contains("pg_replication_origin_drop"),
        "unclear error: {err}"
    );
}

/// The same after a history of the initial copy alone: the copy records
/// the position it reflects, so a lost slot is still noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_after_an_initial_copy_is_refused() {
    let pair = Pair::start(SCHEMA, &["codes"]).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute("INSERT INTO codes VALUES (1, 'x', NULL), (2, 'y', NULL)")
        .await
        .unwrap();
    let run = crate::support::start_synced(&pair.control_url).await;
    wait_for("the copied rows on B", Duration::from_secs(30), || {
        query_bool(&b, "SELECT count(*) = 2 FROM codes")
    })
    .await;
    run.shutdown().await;
    drop_released_slot(&a).await;
    a.batch_execute("INSERT INTO codes VALUES (3, 'z', NULL)")
        .await
        .unwrap();
    let err = match duplex::runner::start(&pair.control_url, PipelineTuning::default()).await {
        Ok(_) => panic!("duplex recreated a lost slot after a copy-only history"),
        Err(e) => duplex::error::error_chain(&e),
    };
    assert!(err.contains("duplex_l1_s1"), "unclear error: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_target_refuses_is_quarantined_and_the_stream_goes_on() {
    let pair = Pair::start(SCHEMA, &["codes", "ident"]).await;
    // A constraint only B has.
    pair.b
        .psql(
            "app",
            "ALTER TABLE codes ADD CONSTRAINT note_not_bad CHECK (note IS DISTINCT FROM 'bad')",
        )
        .unwrap();
    let run = crate::support::start_synced(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    // One transaction, one multi-row statement on B: the middle row is refused.
    a.batch_execute("INSERT INTO codes VALUES (1, 'a', 'ok'), (2, 'b', 'bad'), (3, 'c', 'ok')")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO codes VALUES (4, 'd', 'later')")
        .await
        .unwrap();
    let t = Duration::from_secs(30);
    wait_for("the rows B accepts", t, || {
        query_bool(
            &b,
            "SELECT count(*) = 3 AND NOT EXISTS (SELECT 1 FROM codes WHERE id = 2) FROM codes",
        )
    })
    .await;
    let control = crate::support::connect(&pair.control_url).await;
    // Confirmed once the target transaction that skipped it committed.
    crate::support::wait_one_quarantined(&control).await;
    let row = control
        .query_one("SELECT row_key, reason, change->'after'->'note'->>'value' FROM duplex.quarantine WHERE link_id = 1 AND source_site = 1", &[])
        .await
        .expect("one quarantined change");
    let (key, reason, note): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((key.as_str(), note.as_str()), ("id=2", "bad"));
    assert!(reason.contains("note_not_bad"), "{reason}");
    let id: i64 = control
        .query_one("SELECT quarantine_id FROM duplex.quarantine", &[])
        .await
        .unwrap()
        .get(0);

    // Retried before the target is fixed: refused again, kept, still pending.
    let (ok, out) =
        crate::support::duplex_cli(&pair.control_url, &["quarantine", "retry", &id.to_string()]);
    assert!(ok, "{out}");
    wait_for("the retry refused again", t, || {
        query_bool(
            &control,
            "SELECT status = 'pending' AND note LIKE 'refused again%' FROM duplex.quarantine",
        )
    })
    .await;
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["quarantine", "list"]);
    assert!(
        ok && out.contains("id=2") && out.contains("pending"),
        "{out}"
    );

    // The DBA fixes the target, then retries in SQL: the row arrives, both
    // sides are equal, the record says so.
    b.batch_execute("ALTER TABLE codes DROP CONSTRAINT note_not_bad")
        .await
        .unwrap();
    control
        .execute("SELECT duplex.retry_quarantined($1)", &[&id])
        .await
        .unwrap();
    wait_for("the retried change applied", t, || {
        query_bool(
            &b,
            "SELECT EXISTS (SELECT 1 FROM codes WHERE id = 2 AND note = 'bad')",
        )
    })
    .await;
    wait_for("the record settled", t, || {
        query_bool(
            &control,
            "SELECT status = 'retried' AND note = 'applied' FROM duplex.quarantine",
        )
    })
    .await;
    assert_eq!(
        crate::support::table_rows(&a, "codes").await,
        crate::support::table_rows(&b, "codes").await
    );
    // A settled record cannot be retried again.
    let (ok, out) =
        crate::support::duplex_cli(&pair.control_url, &["quarantine", "retry", &id.to_string()]);
    assert!(!ok && out.contains("not pending"), "{out}");

    // Another refusal, given up by the DBA: it stays out of the target.
    b.batch_execute(
        "ALTER TABLE codes ADD CONSTRAINT note_not_worse CHECK (note IS DISTINCT FROM 'worse')",
    )
    .await
    .unwrap();
    a.batch_execute("INSERT INTO codes VALUES (5, 'e', 'worse')")
        .await
        .unwrap();
    wait_for("the second refusal recorded", t, || {
        query_bool(
            &control,
            "SELECT count(*) = 1 FROM duplex.quarantine WHERE confirmed AND status = 'pending' AND row_key = 'id=5'",
        )
    })
    .await;
    let second: i64 = control
        .query_one(
            "SELECT quarantine_id FROM duplex.quarantine WHERE row_key = 'id=5'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (ok, out) = crate::support::duplex_cli(
        &pair.control_url,
        &["quarantine", "discard", &second.to_string()],
    );
    assert!(ok && out.contains("discarded"), "{out}");
    assert!(
        query_bool(
            &control,
            "SELECT status = 'discarded' FROM duplex.quarantine WHERE row_key = 'id=5'"
        )
        .await
    );
    assert!(query_bool(&b, "SELECT NOT EXISTS (SELECT 1 FROM codes WHERE id = 5)").await);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_records_left_by_a_crash_are_reconciled_at_start() {
    let pair = Pair::start(SCHEMA, &["codes", "ident"]).await;
    let run = crate::support::start_synced(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute("INSERT INTO codes VALUES (1, 'x', NULL)")
        .await
        .unwrap();
    wait_for("row on B", Duration::from_secs(30), || {
        query_bool(&b, "SELECT count(*) = 1 FROM codes")
    })
    .await;
    run.shutdown().await;
    // What a crash between "quarantine recorded" and "target committed" (or
    // between the commit and the confirmation) leaves behind.
    let control = crate::support::connect(&pair.control_url).await;
    control
        .batch_execute(
            "INSERT INTO duplex.quarantine (link_id, source_site, target_site, table_name, op, row_key, source_position, position_counter, change_index, change, reason)
             VALUES (1, 1, 2, 'public.codes', 'insert', 'id=8', '0/1', 1, 1, '{}', 'committed before the crash'),
                    (1, 1, 2, 'public.codes', 'insert', 'id=9', 'FFFFFFF/0', 1152921504606846976, 1, '{}', 'its transaction rolled back')",
        )
        .await
        .unwrap();
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("restart duplex");
    wait_for("reconciled records", Duration::from_secs(30), || {
        query_bool(&control, "SELECT array_agg(row_key || ':' || confirmed ORDER BY row_key) = ARRAY['id=8:true'] FROM duplex.quarantine")
    })
    .await;
    run.shutdown().await;
}

/// A retry applies the configuration in force when it runs: the target
/// refused a column's values, the DBA excluded that column from the link,
/// and retrying the quarantined changes brings them in without it. One table
/// was not mapped at all when its changes were refused, the other had a
/// renamed column (its records keep the change as the source sent it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_maps_the_change_with_the_configuration_in_force() {
    let pair = Pair::start("", &[]).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute(
        "CREATE TABLE people (id int PRIMARY KEY, name text, secret text);
         CREATE TABLE staff (id int PRIMARY KEY, name text, secret text);",
    )
    .await
    .unwrap();
    // B must never hold the secrets; its staff table names the column otherwise.
    b.batch_execute(
        "CREATE TABLE people (id int PRIMARY KEY, name text, secret text CHECK (secret IS NULL));
         CREATE TABLE staff (id int PRIMARY KEY, full_name text, secret text CHECK (secret IS NULL));",
    )
    .await
    .unwrap();
    let control = crate::support::connect(&pair.control_url).await;
    control
        .batch_execute(
            "INSERT INTO duplex.link_tables (link_id, table_name) VALUES (1, 'people'), (1, 'staff');
             INSERT INTO duplex.column_mappings (link_id, table_name, site_id, column_name, peer_column)
                  VALUES (1, 'staff', 1, 'name', 'full_name');",
        )
        .await
        .unwrap();
    let run = crate::support::start_synced(&pair.control_url).await;
    let t = Duration::from_secs(60);
    for table in ["people", "staff"] {
        a.batch_execute(&format!(
            "INSERT INTO {table} SELECT g, 'name ' || g, 'secret ' || g FROM generate_series(1, 50) g"
        ))
        .await
        .unwrap();
    }
    wait_for("100 refused changes quarantined", t, || {
        query_bool(
            &control,
            "SELECT count(*) = 100 FROM duplex.quarantine WHERE confirmed AND status = 'pending' AND reason LIKE '%secret_check%'",
        )
    })
    .await;

    // The DBA excludes the column B refuses, and retries everything.
    control
        .batch_execute(
            "INSERT INTO duplex.column_mappings (link_id, table_name, site_id, column_name, synced)
                  VALUES (1, 'people', 1, 'secret', false), (1, 'staff', 1, 'secret', false)",
        )
        .await
        .unwrap();
    wait_for("the exclusion in force", t, || async {
        let applied: Vec<String> = control
            .query_one(
                "SELECT applied_config FROM duplex.config_status WHERE link_id = 1",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        applied
            .iter()
            .filter(|l| l.contains("column secret not synced"))
            .count()
            == 2
    })
    .await;
    control
        .batch_execute(
            "SELECT duplex.retry_quarantined(quarantine_id) FROM duplex.quarantine WHERE status = 'pending'",
        )
        .await
        .unwrap();
    wait_for("every retry applied", t, || {
        query_bool(
            &control,
            "SELECT count(*) = 100 AND bool_and(status = 'retried' AND note = 'applied') FROM duplex.quarantine",
        )
    })
    .await;
    assert!(
        query_bool(
            &b,
            "SELECT (SELECT count(*) FROM people WHERE name LIKE 'name %' AND secret IS NULL) = 50
                AND (SELECT count(*) FROM staff WHERE full_name LIKE 'name %' AND secret IS NULL) = 50"
        )
        .await
    );
    run.shutdown().await;
}

/// Drop duplex's slot on `a` once no session holds it. Under load the
/// walsender of a stopped duplex can show the slot active for a moment
/// after it first showed it released (seen once in CI, not understood yet),
/// so the drop is retried while the slot is busy.
async fn drop_released_slot(a: &tokio_postgres::Client) {
    let started = std::time::Instant::now();
    loop {
        wait_for("slot released", Duration::from_secs(30), || {
            query_bool(
                a,
                "SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'duplex_l1_s1'",
            )
        })
        .await;
        match a
            .batch_execute("SELECT pg_drop_replication_slot('duplex_l1_s1')")
            .await
        {
            Ok(()) => return,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    && started.elapsed() < Duration::from_secs(30) => {}
            Err(e) => panic!("drop the slot: {e}"),
        }
    }
}
