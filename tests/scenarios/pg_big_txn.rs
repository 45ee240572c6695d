//! One 1,000,000-row transaction replicates with duplex's peak RSS under 300 MB:
//! the transaction streams through a bounded pipeline into one open target
//! transaction instead of being held in memory.

use std::time::{Duration, Instant};

use crate::support::{query_bool, DuplexProcess, Pair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_row_transaction_in_bounded_memory() {
    const ROWS: i64 = 1_000_000;
    let pair = Pair::start(
        "CREATE TABLE items (id bigint PRIMARY KEY, batch int NOT NULL, payload text);",
        &["items"],
    )
    .await;
    let logdir = tempfile::tempdir().expect("tempdir");
    let duplex = DuplexProcess::spawn(&pair.control_url, &logdir.path().join("run.log"));
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    crate::support::wait_for("duplex streaming", Duration::from_secs(30), || {
        query_bool(&a, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'duplex_l1_s1' AND active)")
    })
    .await;
    let rss_before = duplex.peak_rss_bytes();
    a.batch_execute(&format!(
        "INSERT INTO items SELECT g, 1, md5(g::text) FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .expect("load");
    let committed = Instant::now();
    crate::support::wait_for("1,000,000 rows on B", Duration::from_secs(900), || {
        query_bool(&b, format!("SELECT count(*) = {ROWS} FROM items"))
    })
    .await;
    let elapsed = committed.elapsed();
    let peak = duplex.peak_rss_bytes();
    println!(
        "1,000,000-row transaction: {:.1} s after commit, {:.0} rows/s, duplex peak RSS {:.1} MB (before the load {:.1} MB)",
        elapsed.as_secs_f64(),
        ROWS as f64 / elapsed.as_secs_f64(),
        peak as f64 / 1048576.0,
        rss_before as f64 / 1048576.0
    );
    assert!(
        peak < 300 * 1024 * 1024,
        "peak RSS {peak} bytes exceeds 300 MB"
    );
    let digest = "SELECT md5(string_agg(id::text || payload, ',' ORDER BY id)) FROM items";
    let da: String = a.query_one(digest, &[]).await.unwrap().get(0);
    let db: String = b.query_one(digest, &[]).await.unwrap().get(0);
    assert_eq!(da, db, "contents differ");
}
