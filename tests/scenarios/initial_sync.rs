//! Initial sync: rows that exist before a table joins a link are copied, so
//! both sites hold the union; overlapping rows go through the policy; a copy
//! killed half way goes on from its last page; writes on both sites during
//! the copy are neither missed nor doubled. `duplex check` is the judge.

use std::time::Duration;

use crate::support::{connect, duplex_cli, query_i64, wait_for, DuplexProcess, Pair};
use duplex::pipeline::PipelineTuning;

const T: Duration = Duration::from_secs(120);

const SCHEMA: &str = "CREATE TABLE item (id int PRIMARY KEY, name text, qty int, note text);";

async fn all_done(control: &tokio_postgres::Client, directions: i64) -> bool {
    query_i64(
        control,
        "SELECT count(*) FROM duplex.snapshot_progress WHERE state = 'done'",
    )
    .await
        == directions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_rows_on_both_sites_end_as_the_union() {
    let pair = Pair::start(SCHEMA, &["item"]).await;
    let a = pair.client_a().await;
    let b = pair.client_b().await;
    let control = connect(&pair.control_url).await;
    // Site a: 1..3000. Site b: 2901..3500, where 2901..3000 overlap; of those,
    // the even ones have the same content on both sites and the odd ones
    // differ (written later on b, so last-writer-wins keeps b's).
    a.batch_execute("INSERT INTO item SELECT g, 'a' || g, g, NULL FROM generate_series(1, 3000) g")
        .await
        .unwrap();
    b.batch_execute(
        "INSERT INTO item SELECT g, CASE WHEN g % 2 = 0 AND g <= 3000 THEN 'a' || g ELSE 'b' || g END, g, NULL
           FROM generate_series(2901, 3500) g",
    )
    .await
    .unwrap();
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    wait_for("both copies done", T, || all_done(&control, 2)).await;
    wait_for("the union on both sites", T, || async {
        query_i64(&a, "SELECT count(*) FROM item").await == 3500
            && query_i64(&b, "SELECT count(*) FROM item").await == 3500
    })
    .await;
    let (ok, out) = duplex_cli(&pair.control_url, &["check"]);
    assert!(ok, "check after the initial sync: {out}");
    assert!(
        out.contains("identical (3500 rows on a, 3500 on b"),
        "{out}"
    );
    // The overlapping rows that differed were settled by the policy: b's
    // later write won on both sites, and each was recorded as a conflict.
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM item WHERE id BETWEEN 2901 AND 3000 AND id % 2 = 1 AND name = 'b' || id").await,
        50
    );
    assert!(
        query_i64(
            &control,
            "SELECT count(DISTINCT row_key) FROM duplex.conflicts WHERE kind = 'insert_insert' AND confirmed"
        )
        .await
            >= 50
    );
    // Progress is visible to the DBA.
    assert_eq!(
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.snapshot_overview WHERE state = 'done' AND percent = 100"
        )
        .await,
        2
    );
    // And the link streams afterwards.
    a.batch_execute("UPDATE item SET qty = -1 WHERE id = 1")
        .await
        .unwrap();
    wait_for("a change after the copy", T, || async {
        query_i64(&b, "SELECT qty::bigint FROM item WHERE id = 1").await == -1
    })
    .await;
    // Scheduled checks record parity over time.
    control
        .batch_execute("UPDATE duplex.link_tables SET check_interval = '1 second'")
        .await
        .unwrap();
    wait_for("scheduled checks recorded", T, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.parity_checks WHERE table_name = 'public.item' AND status = 'clean'",
        )
        .await
            >= 3
    })
    .await;
    // A table that leaves the link and comes back is copied again: what was
    // written meanwhile (not streamed) arrives too.
    control
        .batch_execute("UPDATE duplex.link_tables SET enabled = false WHERE table_name = 'item'")
        .await
        .unwrap();
    wait_for("the table out of the link", T, || async {
        query_i64(&control, "SELECT count(*) FROM duplex.snapshot_progress").await == 0
            || !crate::support::query_bool(
                &control,
                "SELECT bool_or(c LIKE '%public.item%') FROM duplex.config_status, unnest(applied_config) c",
            )
            .await
    })
    .await;
    a.batch_execute("INSERT INTO item VALUES (9999, 'while out', 0, NULL)")
        .await
        .unwrap();
    control
        .batch_execute("UPDATE duplex.link_tables SET enabled = true WHERE table_name = 'item'")
        .await
        .unwrap();
    wait_for(
        "the row written while out, copied on rejoining",
        T,
        || async { query_i64(&b, "SELECT count(*) FROM item WHERE id = 9999").await == 1 },
    )
    .await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_killed_half_way_resumes_and_writes_during_it_are_kept() {
    let pair = Pair::start(SCHEMA, &["item"]).await;
    let a = pair.client_a().await;
    let b = pair.client_b().await;
    let control = connect(&pair.control_url).await;
    a.batch_execute(
        "INSERT INTO item SELECT g, 'a' || g, 0, repeat('x', 50) FROM generate_series(1, 20000) g",
    )
    .await
    .unwrap();
    // Slow enough to be killed half way: 4000 rows a second.
    control
        .batch_execute("UPDATE duplex.links SET snapshot_rows_per_second = 4000")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("duplex.log");
    let mut duplex = DuplexProcess::spawn(&pair.control_url, &log);

    // Writers on both sites while the copy runs: updates and deletes of rows
    // not copied yet and already copied, and new rows on each side.
    let writer = {
        let url_a = pair.a.conninfo("app");
        let url_b = pair.b.conninfo("app");
        tokio::spawn(async move {
            let a = connect(&url_a).await;
            let b = connect(&url_b).await;
            for i in 0..200 {
                a.batch_execute(&format!(
                    "UPDATE item SET qty = qty + 1 WHERE id = {};
                     DELETE FROM item WHERE id = {};
                     INSERT INTO item VALUES ({}, 'new on a', 1, NULL);",
                    (i * 97) % 20000 + 1,
                    (i * 89) % 20000 + 2,
                    100_000 + i
                ))
                .await
                .unwrap();
                b.batch_execute(&format!(
                    "INSERT INTO item VALUES ({}, 'new on b', 2, NULL)",
                    200_000 + i
                ))
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };

    wait_for("the copy under way", T, || async {
        query_i64(
            &control,
            "SELECT coalesce(max(rows_done), 0) FROM duplex.snapshot_progress WHERE state = 'copying' AND source_site = 1",
        )
        .await
            >= 4000
    })
    .await;
    let (ok, out) = duplex_cli(&pair.control_url, &["status"]);
    assert!(
        ok && out.contains("initial sync under way") && out.contains("public.item"),
        "status during the copy: {out}"
    );
    duplex.kill9();
    let done_at_kill = query_i64(
        &control,
        "SELECT rows_done FROM duplex.snapshot_progress WHERE source_site = 1",
    )
    .await;
    assert!(done_at_kill < 20000, "the copy finished before the kill");
    let mut duplex = DuplexProcess::spawn(&pair.control_url, &log);
    writer.await.unwrap();
    wait_for("both copies done", T, || all_done(&control, 2)).await;
    assert!(
        duplex.log_text().contains("resumed=true"),
        "the second run must go on from the saved page"
    );
    // Caught up: the last row each writer wrote is on the other site.
    wait_for("the writers' last rows on the other sites", T, || async {
        query_i64(&b, "SELECT count(*) FROM item WHERE id = 100199").await == 1
            && query_i64(&a, "SELECT count(*) FROM item WHERE id = 200199").await == 1
    })
    .await;
    let (ok, out) = duplex_cli(&pair.control_url, &["check"]);
    assert!(
        ok,
        "check after a killed and resumed copy with writes: {out}"
    );
    let rows = query_i64(&a, "SELECT count(*) FROM item").await;
    assert_eq!(rows, query_i64(&b, "SELECT count(*) FROM item").await);
    assert_eq!(
        query_i64(&b, "SELECT sum(qty) FROM item WHERE id <= 20000").await,
        query_i64(&a, "SELECT sum(qty) FROM item WHERE id <= 20000").await
    );
    duplex.stop();
}
