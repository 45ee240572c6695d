//! Slot guardrails (`runner::slot_watch`): while a site is down, its peer's
//! slot keeps the WAL the direction has not applied. `link_overview` shows
//! how much, and how close the slot is to being invalidated, and warns in
//! time; once the site is back and the direction has caught up, the warning
//! goes.

use std::time::Duration;

use duplex::localdb::pg::LocalPgOptions;

use crate::support::{
    connect, duplex_cli, query_bool, query_i64, start_synced, wait_for, Pair, SiteSecurity,
};

const SCHEMA: &str = "CREATE TABLE item (id int PRIMARY KEY, note text);";
const T: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_down_shows_its_peers_slot_filling_and_warns_before_it_is_lost() {
    let opts = LocalPgOptions {
        extra_conf: vec![("max_slot_wal_keep_size".into(), "128MB".into())],
        ..LocalPgOptions::default()
    };
    let mut pair = Pair::start_with(SCHEMA, &["item"], opts, SiteSecurity::default()).await;
    let a = pair.client_a().await;
    let control = connect(&pair.control_url).await;
    // Warn 112 MB before the limit: once the slot keeps about 16 MB.
    control
        .batch_execute("UPDATE duplex.links SET slot_warn_bytes = 112 * 1024 * 1024")
        .await
        .unwrap();
    let run = start_synced(&pair.control_url).await;
    a.batch_execute("INSERT INTO item VALUES (1, 'first')")
        .await
        .unwrap();
    let b = pair.client_b().await;
    wait_for("row 1 on b", T, || async {
        query_i64(&b, "SELECT count(*) FROM item").await == 1
    })
    .await;
    drop(b);
    let a_to_b = |cond: &str| {
        format!("SELECT coalesce(({cond}), false) FROM duplex.link_overview WHERE source = 'a'")
    };
    wait_for("a healthy slot read", T, || async {
        query_bool(
            &control,
            a_to_b(
                "retained_wal_bytes < 16 * 1024 * 1024 AND wal_status = 'reserved'
                 AND safe_wal_bytes > 112 * 1024 * 1024 AND slot_warning IS NULL",
            ),
        )
        .await
    })
    .await;

    // B goes down; A goes on writing, about 30 MB of WAL.
    pair.b.stop().expect("stop b");
    a.batch_execute(
        "INSERT INTO item SELECT g, repeat(md5(g::text), 30) FROM generate_series(2, 30001) g",
    )
    .await
    .unwrap();
    wait_for("the warning while b is down", T, || async {
        query_bool(
            &control,
            a_to_b(
                "retained_wal_bytes > 16 * 1024 * 1024 AND safe_wal_bytes < 112 * 1024 * 1024
                 AND slot_warning LIKE '%PostgreSQL invalidates it%' AND slot_warning LIKE '%on b%'",
            ),
        )
        .await
    })
    .await;
    let (_, out) = duplex_cli(&pair.control_url, &["status"]);
    assert!(
        out.contains("WARNING: slot duplex_l1_s1 on a keeps")
            && (out.contains("of WAL (reserved)") || out.contains("of WAL (extended)")),
        "duplex status: {out}"
    );

    // B is back: the direction catches up, the slot lets its WAL go (at the
    // source's next checkpoints), and the warning goes.
    pair.b.start_again().expect("start b again");
    let b = pair.client_b().await;
    wait_for("b caught up", T, || async {
        query_i64(&b, "SELECT count(*) FROM item").await == 30001
    })
    .await;
    wait_for("the warning gone", T, || async {
        let _ = a.batch_execute("CHECKPOINT").await;
        query_bool(
            &control,
            a_to_b("slot_warning IS NULL AND retained_wal_bytes < 16 * 1024 * 1024"),
        )
        .await
    })
    .await;
    run.shutdown().await;
}
