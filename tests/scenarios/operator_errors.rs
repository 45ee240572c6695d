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
    a.batch_execute("INSERT INTO item VALUES (1, 'before'), (5, 'deleted while lost')")
        .await
        .unwrap();
    wait_for("rows 1 and 5 on b", T, || async {
        query_i64(&b, "SELECT count(*) FROM item WHERE id IN (1, 5)").await == 2
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
    a.batch_execute(
        "UPDATE item SET note = 'changed while lost' WHERE id = 1; DELETE FROM item WHERE id = 5",
    )
    .await
    .unwrap();
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
            && error.contains(&slot)
            && error.contains("`duplex resync --link ab`"),
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
        out.contains("needs_operator") && out.contains("duplex resync --link ab"),
        "duplex status: {out}"
    );
    // A table resync cannot mend a lost position: every table lost changes.
    let (ok, out) = duplex_cli(
        &pair.control_url,
        &["resync", "--link", "ab", "--table", "item"],
    );
    assert!(
        !ok && out.contains("without --table"),
        "a table resync of a lost position is refused: {out}"
    );

    // The fix, as the message gives it, while duplex runs; A writes on.
    a.batch_execute("INSERT INTO item VALUES (4, 'during the resync')")
        .await
        .unwrap();
    let (ok, out) = duplex_cli(
        &pair.control_url,
        &["resync", "--link", "ab", "--wait", "120"],
    );
    assert!(
        ok && out.contains(&format!("dropped slot {slot}")) && out.contains("every copy is done"),
        "duplex resync: {out}"
    );
    wait_for("a -> b streams again", T, || async {
        let row = control.query_one(a_to_b, &[]).await.unwrap();
        row.get::<_, String>(0) == "streaming"
    })
    .await;
    a.batch_execute("INSERT INTO item VALUES (3, 'after the fix')")
        .await
        .unwrap();
    wait_for("row 3 on b", T, || async {
        query_i64(&b, "SELECT count(*) FROM item WHERE id = 3").await == 1
    })
    .await;
    run.shutdown().await;
    assert_eq!(
        query_i64(&b, "SELECT count(*) FROM item").await,
        written_on_a + 4,
        "every row A wrote while its slot was lost, rows 2, 3 and 4, and row 5, on B"
    );
    // Row 5, deleted on A while its slot was lost, is still on B: both
    // sites keep what either still holds, and the resync restored it on A.
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM item WHERE id = 5").await,
        1
    );
    assert_eq!(
        texts(&b, "SELECT note FROM item WHERE id = 1").await,
        vec!["changed while lost".to_string()]
    );
    let (ok, out) = duplex_cli(&pair.control_url, &["check"]);
    assert!(ok, "duplex check after the fix: {out}");
}
