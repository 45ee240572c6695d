//! kill -9 of duplex in the middle of a 50,000-row load, then restart: the peer
//! ends equal to the source, nothing lost and nothing applied twice.

use std::time::Duration;

use crate::support::{query_bool, query_i64, table_rows, wait_for, DuplexProcess, Pair};

const SCHEMA: &str = "
CREATE TABLE items (id bigint PRIMARY KEY, batch int NOT NULL, payload text);
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counters VALUES (1, 0);";

// Counts every row change duplex applies on B, inside the applying transaction:
// a transaction applied twice would count twice, one rolled back by the kill not at all.
// Append-only (one row per change, counted): an UPDATE of one counter row
// would leave a dead version per change inside a large target transaction,
// and each later UPDATE would scan them all (quadratic in the group size).
const APPLY_AUDIT: &str = "
CREATE TABLE apply_audit (n smallint NOT NULL);
CREATE FUNCTION count_apply() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO apply_audit VALUES (1); RETURN NULL; END $$;
CREATE TRIGGER items_audit AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION count_apply();
CREATE TRIGGER counters_audit AFTER INSERT OR UPDATE OR DELETE ON counters FOR EACH ROW EXECUTE FUNCTION count_apply();";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_then_restart_is_exactly_once() {
    const TXNS: i64 = 1_000;
    const ROWS_PER_TXN: i64 = 50;
    let pair = Pair::start(SCHEMA, &["items", "counters"]).await;
    pair.b.psql("app", APPLY_AUDIT).expect("audit trigger on B");
    crate::support::counters_in_sync_and_triggers_firing(&pair.control_url).await;
    let logdir = tempfile::tempdir().expect("tempdir");
    let mut duplex = DuplexProcess::spawn(&pair.control_url, &logdir.path().join("run1.log"));
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    // duplex has started streaming once the slot is active.
    wait_for("duplex streaming", Duration::from_secs(30), || {
        query_bool(&a, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'duplex_l1_s1' AND active)")
    })
    .await;
    // The audit counts the stream's writes: let the initial copy (of the
    // seeded counter row) end first.
    crate::support::wait_initial_sync_all(&pair.control_url).await;

    let load = tokio::spawn({
        let a = pair.client_a().await;
        async move {
            for t in 0..TXNS {
                let base = t * ROWS_PER_TXN;
                a.batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO items SELECT g, {t}, md5(g::text) FROM generate_series({}, {}) g;
                     UPDATE counters SET n = n + 1 WHERE id = 1;
                     COMMIT;",
                    base + 1,
                    base + ROWS_PER_TXN
                ))
                .await
                .expect("load transaction");
            }
        }
    });

    // Kill duplex once part of the load has arrived on B.
    wait_for("part of the load on B", Duration::from_secs(120), || {
        query_bool(&b, "SELECT count(*) >= 5000 FROM items")
    })
    .await;
    duplex.kill9();
    let at_kill = query_i64(&b, "SELECT count(*) FROM items").await;
    load.await.expect("load");
    assert!(
        at_kill < TXNS * ROWS_PER_TXN,
        "the load had fully arrived before the kill ({at_kill} rows): the test proved nothing"
    );

    let duplex2 = DuplexProcess::spawn(&pair.control_url, &logdir.path().join("run2.log"));
    wait_for("the whole load on B", Duration::from_secs(300), || {
        query_bool(
            &b,
            format!(
                "SELECT (SELECT count(*) FROM items) = {} AND (SELECT n FROM counters) = {TXNS}",
                TXNS * ROWS_PER_TXN
            ),
        )
    })
    .await;
    assert_eq!(
        table_rows(&a, "items").await,
        table_rows(&b, "items").await,
        "items differ"
    );
    assert_eq!(
        table_rows(&a, "counters").await,
        table_rows(&b, "counters").await,
        "counters differ"
    );
    // Exactly once: every row change made on A was applied on B once, across the kill.
    let applied = query_i64(&b, "SELECT count(*) FROM apply_audit").await;
    assert_eq!(
        applied,
        TXNS * ROWS_PER_TXN + TXNS,
        "row changes applied on B (kill at {at_kill} rows)"
    );
    let log = duplex2.log_text();
    assert!(
        !log.contains("duplicate key"),
        "restart re-applied a transaction:\n{log}"
    );
    // And the slot on A is confirmed up to what B applied.
    let origin_lsn: String = b
        .query_one(
            // The furthest of every apply worker's origin: where B resumes.
            "SELECT max(pg_replication_origin_progress(roname, true))::text FROM pg_replication_origin
              WHERE roname ~ '^duplex_l1_from_s1(_w[0-9]+)?$'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    wait_for("slot confirmed to the applied position", Duration::from_secs(30), || {
        query_bool(&a, format!("SELECT confirmed_flush_lsn >= '{origin_lsn}'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'duplex_l1_s1'"))
    })
    .await;
}
