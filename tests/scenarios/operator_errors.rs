//! Errors only a person can fix (`duplex::error_class`): the direction waits
//! in state `needs_operator` with the cause and the fix in
//! `duplex.link_overview` and `duplex status`, the link's other direction
//! goes on, and following the fix brings the direction back with nothing
//! lost.

use std::time::Duration;

use duplex::localdb::pg::LocalPgOptions;

use crate::support::{
    connect, duplex_cli, query_bool, query_i64, start_synced, texts, wait_for, Pair, SiteSecurity,
};

const SCHEMA: &str = "CREATE TABLE item (id int PRIMARY KEY, note text);";
const T: Duration = Duration::from_secs(60);

/// Site A's slot invalidated while duplex was stopped (it kept more WAL than
/// `max_slot_wal_keep_size` allows, as when the peer was down for long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_waits_for_an_operator_and_its_fix_loses_nothing() {
    invalidated_slot(None).await;
}

/// The same on PostgreSQL 18, which words the error otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_waits_for_an_operator_on_pg18() {
    invalidated_slot(Some(crate::support::pg18_bindir())).await;
}

async fn invalidated_slot(bindir: Option<std::path::PathBuf>) {
    let opts = LocalPgOptions {
        extra_conf: vec![("max_slot_wal_keep_size".into(), "1MB".into())],
        bindir,
        ..LocalPgOptions::default()
    };
    let pair = Pair::start_with(SCHEMA, &["item"], opts, SiteSecurity::default()).await;
    let a = pair.client_a().await;
    let b = pair.client_b().await;
    let control = connect(&pair.control_url).await;

    let run = start_synced(&pair.control_url).await;
    a.batch_execute("INSERT INTO item VALUES (1, 'before')")
        .await
        .unwrap();
    wait_for("row 1 on b", T, || async {
        query_i64(&b, "SELECT count(*) FROM item WHERE id = 1").await == 1
    })
    .await;
    run.shutdown().await;

    // Duplex stopped: A writes rows, and more WAL than the slot may keep.
    let slot = texts(
        &a,
        "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'duplex%'",
    )
    .await
    .pop()
    .expect("duplex's slot on a");
    for i in 0..20 {
        a.batch_execute(&format!(
            "INSERT INTO item VALUES ({}, 'while stopped'); SELECT pg_switch_wal(); CHECKPOINT;",
            100 + i
        ))
        .await
        .unwrap();
        if query_bool(
            &a,
            format!(
                "SELECT wal_status = 'lost' FROM pg_replication_slots WHERE slot_name = '{slot}'"
            ),
        )
        .await
        {
            break;
        }
    }
    assert!(
        query_bool(
            &a,
            format!(
                "SELECT wal_status = 'lost' FROM pg_replication_slots WHERE slot_name = '{slot}'"
            )
        )
        .await,
        "the slot was not invalidated"
    );
    let written_on_a = query_i64(&a, "SELECT count(*) FROM item").await;

    let run = duplex::runner::start(
        &pair.control_url,
        duplex::pipeline::PipelineTuning::default(),
    )
    .await
    .expect("start duplex");
    let a_to_b = "SELECT state, coalesce(error, '') FROM duplex.link_overview WHERE source = 'a'";
    wait_for("a -> b needs an operator", T, || async {
        let row = control.query_one(a_to_b, &[]).await.unwrap();
        row.get::<_, String>(0) == "needs_operator"
    })
    .await;
    let error: String = control.query_one(a_to_b, &[]).await.unwrap().get(1);
    assert!(
        error.contains("Fix:")
            && error.contains(&format!("pg_drop_replication_slot('{slot}')"))
            && error.contains("duplex repair --link ab --by-policy"),
        "the cause and the fix: {error}"
    );

    // The other direction goes on meanwhile.
    b.batch_execute("INSERT INTO item VALUES (2, 'from b')")
        .await
        .unwrap();
    wait_for("row 2 on a", T, || async {
        query_i64(&a, "SELECT count(*) FROM item WHERE id = 2").await == 1
    })
    .await;
    // Still waiting, not retried as a passing error.
    let state: String = control.query_one(a_to_b, &[]).await.unwrap().get(0);
    assert_eq!(state, "needs_operator");
    let (_, out) = duplex_cli(&pair.control_url, &["status"]);
    assert!(
        out.contains("needs_operator") && out.contains("pg_drop_replication_slot"),
        "duplex status: {out}"
    );
    run.shutdown().await;

    // The fix, as the messages give it: drop the slot; start again, which
    // refuses to make a new slot while B's progress points into the old one
    // and says how to reset it; reset it; start again; repair.
    a.batch_execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
        .await
        .unwrap();
    let refused = duplex::runner::start(
        &pair.control_url,
        duplex::pipeline::PipelineTuning::default(),
    )
    .await;
    let why = match refused {
        Ok(run) => {
            // The link is retried in the background; its reason is recorded.
            let recorded =
                "SELECT coalesce(string_agg(message, ' '), '') FROM duplex.config_status";
            wait_for("the refused start recorded", T, || async {
                texts(&control, recorded)
                    .await
                    .concat()
                    .contains("pg_replication_origin_drop")
            })
            .await;
            run.shutdown().await;
            texts(&control, recorded).await.concat()
        }
        Err(e) => duplex::error_chain::error_chain(&e),
    };
    let reset = why
        .find("SELECT pg_replication_origin_drop")
        .and_then(|at| why[at..].split(" on ").next())
        .unwrap_or_else(|| panic!("the refusal names the reset: {why}"))
        .to_string();
    assert!(
        why.contains("duplex repair --link ab --by-policy"),
        "the refusal names the repair: {why}"
    );
    b.batch_execute(&reset).await.unwrap();

    let run = start_synced(&pair.control_url).await;
    a.batch_execute("INSERT INTO item VALUES (3, 'after the fix')")
        .await
        .unwrap();
    wait_for("row 3 on b", T, || async {
        query_i64(&b, "SELECT count(*) FROM item WHERE id = 3").await == 1
    })
    .await;
    run.shutdown().await;
    let (ok, out) = duplex_cli(
        &pair.control_url,
        &["repair", "--link", "ab", "--by-policy"],
    );
    assert!(ok, "duplex repair: {out}");
    assert_eq!(
        query_i64(&b, "SELECT count(*) FROM item").await,
        written_on_a + 2,
        "every row A wrote, and rows 2 and 3, on B"
    );
    let (ok, out) = duplex_cli(&pair.control_url, &["check"]);
    assert!(ok, "duplex check after the fix: {out}");
}
