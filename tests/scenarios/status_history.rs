//! What `duplex.link_overview` and `duplex status` say must be true at face
//! value: counters are the direction's whole history (not since the last
//! restart), and an error the direction recovered from shows as past.

use std::time::Duration;

use crate::support::{query_bool, wait_for, Pair};
use duplex::pipeline::PipelineTuning;

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_carry_on_across_restarts() {
    let pair = Pair::start(SCHEMA, &["t"]).await;
    let control = crate::support::connect(&pair.control_url).await;
    let a = pair.client_a().await;
    let t = Duration::from_secs(30);
    let counted = |txns: i64| {
        format!(
            "SELECT (SELECT applied_txns = {txns} AND applied_rows = {txns} AND inserted = {txns}
                       FROM duplex.link_status WHERE link_id = 1 AND source_site = 1)
                AND (SELECT inserted = {txns} FROM duplex.table_status
                      WHERE link_id = 1 AND source_site = 1 AND table_name = 'public.t')"
        )
    };

    let run = crate::support::start_synced(&pair.control_url).await;
    for id in 1..=3 {
        a.execute("INSERT INTO t VALUES ($1, 'first run')", &[&id])
            .await
            .unwrap();
    }
    wait_for("3 transactions counted", t, || {
        query_bool(&control, counted(3))
    })
    .await;
    run.shutdown().await;

    // A new process carries on from the totals.
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex again");
    for id in 4..=5 {
        a.execute("INSERT INTO t VALUES ($1, 'second run')", &[&id])
            .await
            .unwrap();
    }
    wait_for("5 transactions counted over both runs", t, || {
        query_bool(&control, counted(5))
    })
    .await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_shows_as_past_once_the_direction_recovered() {
    let pair = Pair::start(SCHEMA, &["t"]).await;
    let control = crate::support::connect(&pair.control_url).await;
    let a = pair.client_a().await;
    let b_admin =
        crate::support::connect(&crate::support::url_with_password(&pair.b, "postgres")).await;
    let t = Duration::from_secs(60);
    let run = crate::support::start_synced(&pair.control_url).await;
    let a_to_b = "FROM duplex.link_overview WHERE link_id = 1 AND source = 'a'";

    // B goes away for the applier: its session ends and it cannot reconnect.
    b_admin
        .batch_execute(
            "ALTER DATABASE app ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = 'app' AND application_name LIKE 'duplex applier%';",
        )
        .await
        .unwrap();
    a.batch_execute("INSERT INTO t VALUES (1, 'while b is away')")
        .await
        .unwrap();
    wait_for("the error shown as current", t, || {
        query_bool(
            &control,
            format!("SELECT error IS NOT NULL AND error_since IS NOT NULL AND error = last_error {a_to_b}"),
        )
    })
    .await;
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["status"]);
    assert!(
        ok && out.contains("error: ") && !out.contains("recovered ("),
        "{out}"
    );

    // B is back: the direction reconnects, applies the row, and the error
    // is history.
    b_admin
        .batch_execute("ALTER DATABASE app ALLOW_CONNECTIONS true")
        .await
        .unwrap();
    let b = pair.client_b().await;
    wait_for("the row on b", t, || crate::support::pg_has_row(&b, "t", 1)).await;
    wait_for("the error shown as past", t, || {
        query_bool(
            &control,
            format!(
                "SELECT state = 'streaming' AND error IS NULL AND error_since IS NULL
                        AND last_error IS NOT NULL AND last_error_at IS NOT NULL {a_to_b}"
            ),
        )
    })
    .await;
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["status"]);
    assert!(ok && out.contains("recovered (last error"), "{out}");
    run.shutdown().await;
}
