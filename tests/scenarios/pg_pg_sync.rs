//! PostgreSQL <-> PostgreSQL: changes flow both ways, in order, atomically,
//! exactly once and without echo.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{query_bool, query_i64, table_rows, wait_for, Pair};
use duplex::pipeline::PipelineTuning;

const SCHEMA: &str = "
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, total numeric(12,2), note text);
CREATE TABLE items (id bigint PRIMARY KEY, batch int NOT NULL, payload text);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_update_delete_flow_both_ways() {
    let pair = Pair::start(SCHEMA, &["customers", "orders", "items"]).await;
    let run = crate::support::start_synced(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let t = Duration::from_secs(20);

    a.execute(
        "INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com')",
        &[],
    )
    .await
    .unwrap();
    wait_for("insert A->B", t, || {
        query_bool(
            &b,
            "SELECT EXISTS (SELECT 1 FROM customers WHERE id = 1 AND name = 'Ada')",
        )
    })
    .await;

    b.execute(
        "UPDATE customers SET email = 'ada@b.example' WHERE id = 1",
        &[],
    )
    .await
    .unwrap();
    wait_for("update B->A", t, || {
        query_bool(
            &a,
            "SELECT email = 'ada@b.example' FROM customers WHERE id = 1",
        )
    })
    .await;

    b.execute("INSERT INTO customers VALUES (2, 'Grace', NULL)", &[])
        .await
        .unwrap();
    wait_for("insert B->A", t, || {
        query_bool(&a, "SELECT EXISTS (SELECT 1 FROM customers WHERE id = 2)")
    })
    .await;

    a.execute("DELETE FROM customers WHERE id = 2", &[])
        .await
        .unwrap();
    wait_for("delete A->B", t, || {
        query_bool(
            &b,
            "SELECT NOT EXISTS (SELECT 1 FROM customers WHERE id = 2)",
        )
    })
    .await;

    // A primary-key change is an update of the old key.
    a.execute("UPDATE customers SET id = 10 WHERE id = 1", &[])
        .await
        .unwrap();
    wait_for("key change A->B", t, || query_bool(&b, "SELECT EXISTS (SELECT 1 FROM customers WHERE id = 10) AND NOT EXISTS (SELECT 1 FROM customers WHERE id = 1)")).await;

    // Several statements, parent before child (FK), in one transaction; then
    // changes to the same row inside one transaction, applied in order.
    b.batch_execute(
        "BEGIN;
         INSERT INTO customers VALUES (3, 'Edsger', 'ewd@example.com');
         INSERT INTO orders VALUES (30, 3, 12.50, 'first');
         UPDATE orders SET total = total + 1, note = 'second' WHERE id = 30;
         UPDATE orders SET note = 'third' WHERE id = 30;
         INSERT INTO orders VALUES (31, 3, 1.00, NULL);
         DELETE FROM orders WHERE id = 31;
         COMMIT;",
    )
    .await
    .unwrap();
    wait_for("multi-statement txn B->A", t, || {
        query_bool(
            &a,
            "SELECT EXISTS (SELECT 1 FROM orders WHERE id = 30 AND note = 'third')",
        )
    })
    .await;
    assert!(query_bool(&a, "SELECT total = 13.50 FROM orders WHERE id = 30").await);
    assert!(query_bool(&a, "SELECT NOT EXISTS (SELECT 1 FROM orders WHERE id = 31)").await);

    for table in ["customers", "orders", "items"] {
        assert_eq!(
            table_rows(&a, table).await,
            table_rows(&b, table).await,
            "table {table} differs"
        );
    }
    let ab = run.stats(1, 1).expect("a->b stats");
    let ba = run.stats(1, 2).expect("b->a stats");
    assert_eq!(
        ab.applied_txns.load(Ordering::Relaxed),
        3,
        "A->B applied transactions"
    );
    assert_eq!(
        ba.applied_txns.load(Ordering::Relaxed),
        3,
        "B->A applied transactions"
    );
    assert_eq!(
        ab.missing_rows.load(Ordering::Relaxed) + ba.missing_rows.load(Ordering::Relaxed),
        0
    );
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_arrives_whole() {
    let pair = Pair::start(SCHEMA, &["customers", "orders", "items"]).await;
    // Small statements, so the 3,000-row transaction spans several of them.
    let tuning = PipelineTuning {
        max_batch_rows: 100,
        ..PipelineTuning::default()
    };
    let run = duplex::runner::start(&pair.control_url, tuning)
        .await
        .expect("start duplex");
    // Rows written from here reach the peer through the stream alone.
    crate::support::wait_initial_sync_all(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute("INSERT INTO items SELECT g, 7, md5(g::text) FROM generate_series(1, 3000) g; UPDATE items SET payload = 'last' WHERE id = 3000;")
        .await
        .unwrap();
    // Every snapshot of B sees none of the transaction or all of it.
    let mut seen_partial = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = b.query_one("SELECT count(*), count(*) FILTER (WHERE payload = 'last') FROM items WHERE batch = 7", &[]).await.unwrap();
        let (n, last): (i64, i64) = (row.get(0), row.get(1));
        if !(n == 0 || (n == 3000 && last == 1)) {
            seen_partial.push((n, last));
        }
        if n == 3000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "3,000-row transaction did not arrive on B within 30 s"
        );
        // Poll as fast as the server answers: the point is to catch a partial state.
    }
    assert!(
        seen_partial.is_empty(),
        "partial transaction visible on B: {seen_partial:?}"
    );
    assert_eq!(table_rows(&a, "items").await, table_rows(&b, "items").await);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_both_sides_converge_without_echo() {
    const TXNS: i64 = 5_000;
    let pair = Pair::start(SCHEMA, &["customers", "orders", "items"]).await;
    let run = crate::support::start_synced(&pair.control_url).await;

    // Each side commits TXNS transactions on its own keys, both at once.
    let writer = |client: tokio_postgres::Client, base: i64, batch: i32| async move {
        let insert = client
            .prepare("INSERT INTO items (id, batch, payload) VALUES ($1, $2, $3)")
            .await
            .unwrap();
        let update = client
            .prepare("UPDATE items SET payload = payload || '+' WHERE id = $1")
            .await
            .unwrap();
        for i in 0..TXNS {
            if i % 5 == 4 {
                // Every fifth transaction updates an earlier row instead.
                client.execute(&update, &[&(base + i - 1)]).await.unwrap();
            } else {
                client
                    .execute(&insert, &[&(base + i), &batch, &format!("row {i}")])
                    .await
                    .unwrap();
            }
        }
    };
    let wa = tokio::spawn(writer(pair.client_a().await, 1_000_000, 1));
    let wb = tokio::spawn(writer(pair.client_b().await, 2_000_000, 2));
    wa.await.unwrap();
    wb.await.unwrap();

    crate::support::wait_applied_exactly_once(&run, TXNS as u64, Duration::from_secs(180)).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM items").await,
        TXNS / 5 * 4 * 2
    );
    assert_eq!(
        table_rows(&a, "items").await,
        table_rows(&b, "items").await,
        "sides differ"
    );
    // The appliers' own commits on each site equal what that site's reader skipped.
    let commits_b: i64 = query_i64(
        &b,
        "SELECT count(*) FROM items WHERE _duplex IS NOT NULL AND (_duplex->>'site')::int = 1",
    )
    .await;
    assert_eq!(
        commits_b,
        TXNS / 5 * 4,
        "rows on B written by the A->B applier"
    );
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_flows_both_ways() {
    let pair = Pair::start(SCHEMA, &["customers", "orders", "items"]).await;
    let run = crate::support::start_synced(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let t = Duration::from_secs(20);
    a.batch_execute("INSERT INTO items SELECT g, 1, 'x' FROM generate_series(1, 100) g")
        .await
        .unwrap();
    wait_for("rows on B", t, || {
        query_bool(&b, "SELECT count(*) = 100 FROM items")
    })
    .await;
    // TRUNCATE and new rows in one transaction: order matters.
    a.batch_execute("BEGIN; TRUNCATE items; INSERT INTO items VALUES (500, 2, 'after'); COMMIT;")
        .await
        .unwrap();
    wait_for("truncate A->B", t, || {
        query_bool(&b, "SELECT count(*) = 1 AND min(id) = 500 FROM items")
    })
    .await;
    b.batch_execute("TRUNCATE items").await.unwrap();
    wait_for("truncate B->A", t, || {
        query_bool(&a, "SELECT count(*) = 0 FROM items")
    })
    .await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_only_replica_identity_still_syncs() {
    let pair = Pair::start(SCHEMA, &["customers", "orders", "items"]).await;
    let control = crate::support::connect(&pair.control_url).await;
    control
        .batch_execute(
            "UPDATE duplex.link_tables SET replica_identity = 'key' WHERE table_name = 'items'",
        )
        .await
        .unwrap();
    let run = crate::support::start_synced(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    assert!(
        query_bool(
            &a,
            "SELECT relreplident = 'd' FROM pg_class WHERE relname = 'items'"
        )
        .await,
        "identity not set to key"
    );
    assert!(
        query_bool(
            &a,
            "SELECT relreplident = 'f' FROM pg_class WHERE relname = 'customers'"
        )
        .await,
        "identity not FULL"
    );
    let t = Duration::from_secs(20);
    a.batch_execute("INSERT INTO items VALUES (1, 1, repeat('y', 100000)), (2, 1, 'short')")
        .await
        .unwrap();
    wait_for("insert", t, || {
        query_bool(&b, "SELECT count(*) = 2 FROM items")
    })
    .await;
    // Without an old image, the key comes from the new image; the unchanged
    // TOASTed payload is not sent and must stay.
    a.batch_execute("UPDATE items SET batch = 9 WHERE id = 1; DELETE FROM items WHERE id = 2;")
        .await
        .unwrap();
    wait_for("update and delete", t, || {
        query_bool(&b, "SELECT count(*) = 1 AND min(batch) = 9 FROM items")
    })
    .await;
    assert!(
        query_bool(
            &b,
            "SELECT payload = repeat('y', 100000) FROM items WHERE id = 1"
        )
        .await,
        "TOASTed payload lost"
    );
    assert_eq!(table_rows(&a, "items").await, table_rows(&b, "items").await);
    run.shutdown().await;
}
