//! Retention guardrails (`runner::retention_watch`): while a site is down,
//! its peer keeps what the direction has not applied only so long (a
//! PostgreSQL slot's WAL, a MariaDB server's binlogs). `link_overview` shows
//! how much, and how close it is to being lost, and warns in time; once the
//! site is back and the direction has caught up, the warning goes.

use std::time::Duration;

use duplex::localdb::pg::LocalPgOptions;

use crate::support::site::{Engines, Server, Sites};
use crate::support::{
    connect, duplex_cli, query_bool, query_i64, start_synced, texts, wait_for, Pair, SiteSecurity,
};

const SCHEMA: &str = "CREATE TABLE item (id int PRIMARY KEY, note text);";
const T: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_down_shows_its_peers_slot_filling_and_warns_before_it_is_lost() {
    let opts = LocalPgOptions {
        extra_conf: vec![("max_slot_wal_keep_size".into(), "160MB".into())],
        ..LocalPgOptions::default()
    };
    let mut pair = Pair::start_with(SCHEMA, &["item"], opts, SiteSecurity::default()).await;
    let a = pair.client_a().await;
    let control = connect(&pair.control_url).await;
    // Warn 150 MB before the limit, which under a 160 MB limit means past
    // half of it: once the slot keeps about 80 MB.
    control
        .batch_execute("UPDATE duplex.links SET retention_warn_bytes = 150 * 1024 * 1024")
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
                "retained_bytes < 16 * 1024 * 1024 AND wal_status = 'reserved'
                 AND safe_wal_bytes > 96 * 1024 * 1024 AND retention_warning IS NULL",
            ),
        )
        .await
    })
    .await;

    // B goes down; A goes on writing, about 100 MB of WAL.
    pair.b.stop().expect("stop b");
    a.batch_execute(
        "INSERT INTO item SELECT g, repeat(md5(g::text), 30) FROM generate_series(2, 90001) g",
    )
    .await
    .unwrap();
    wait_for("the warning while b is down", T, || async {
        query_bool(
            &control,
            a_to_b(
                "retained_bytes > 80 * 1024 * 1024 AND safe_wal_bytes < 80 * 1024 * 1024
                 AND retention_warning LIKE '%PostgreSQL invalidates it%' AND retention_warning LIKE '%on b%'",
            ),
        )
        .await
    })
    .await;
    let (_, out) = duplex_cli(&pair.control_url, &["status"]);
    assert!(
        out.contains("WARNING: slot duplex_l1_s1 on a keeps")
            && (out.contains("unapplied (slot reserved)")
                || out.contains("unapplied (slot extended)")),
        "duplex status: {out}"
    );

    // B is back: the direction catches up, the slot lets its WAL go (at the
    // source's next checkpoints), and the warning goes.
    pair.b.start_again().expect("start b again");
    let b = pair.client_b().await;
    wait_for("b caught up", T, || async {
        query_i64(&b, "SELECT count(*) FROM item").await == 90001
    })
    .await;
    wait_for("the warning gone", T, || async {
        let _ = a.batch_execute("CHECKPOINT").await;
        query_bool(
            &control,
            a_to_b("retention_warning IS NULL AND retained_bytes < 16 * 1024 * 1024"),
        )
        .await
    })
    .await;
    run.shutdown().await;
}

/// A MariaDB source: the binlog holding the position B has applied to
/// becomes the oldest one A keeps while B is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_down_shows_its_peers_binlogs_at_risk_before_a_purge() {
    let mut sites = Sites::start(Engines::MariaDbMariaDb, "", SCHEMA, &["item"]).await;
    let control = connect(&sites.control_url).await;
    let run = start_synced(&sites.control_url).await;
    let (mut a, _) = sites.connect().await;
    // Older binlogs on A, then a row in the newest one, applied on B.
    a.exec("FLUSH BINARY LOGS").await;
    a.exec("FLUSH BINARY LOGS").await;
    a.exec("INSERT INTO item VALUES (1, 'first')").await;
    wait_for("row 1 on b", T, || async {
        let (_, mut b) = sites.connect().await;
        b.count("SELECT count(*) FROM item").await == 1
    })
    .await;
    let a_to_b = |cond: &str| {
        format!("SELECT coalesce(({cond}), false) FROM duplex.link_overview WHERE source = 'a'")
    };
    wait_for("a's binlogs read, nothing at risk", T, || async {
        query_bool(
            &control,
            a_to_b("oldest_binlog IS NOT NULL AND binlog_headroom_files >= 2 AND retained_bytes >= 0 AND retention_warning IS NULL"),
        )
        .await
    })
    .await;
    let logs: Vec<(String, i64)> = a.query("SHOW BINARY LOGS").await;
    let applied_file = logs.last().expect("a binlog").0.clone();

    // B goes down; A moves to a new binlog and purges those before the one
    // B has applied to: that one is now the oldest A keeps.
    if let Server::My(b) = &mut sites.servers[1] {
        b.stop().expect("stop b");
    }
    a.exec("FLUSH BINARY LOGS").await;
    a.exec("INSERT INTO item VALUES (2, 'while b is down')")
        .await;
    a.exec(&format!("PURGE BINARY LOGS TO '{applied_file}'"))
        .await;
    wait_for("the warning while b is down", T, || async {
        query_bool(
            &control,
            a_to_b(&format!(
                "binlog_headroom_files = 0 AND oldest_binlog = '{applied_file}'
                 AND retention_warning LIKE '%is the oldest binlog a keeps%' AND state = 'retrying'"
            )),
        )
        .await
    })
    .await;
    let warning = texts(
        &control,
        "SELECT retention_warning FROM duplex.link_overview WHERE source = 'a'",
    )
    .await
    .concat();
    assert!(
        warning.contains(&applied_file) && warning.contains("on b"),
        "{warning}"
    );

    // B is back: the direction catches up and the warning goes.
    if let Server::My(b) = &mut sites.servers[1] {
        b.restart().expect("start b again");
    }
    wait_for("row 2 on b", T, || async {
        let (_, mut b) = sites.connect().await;
        b.count("SELECT count(*) FROM item").await == 2
    })
    .await;
    wait_for("the warning gone", T, || async {
        query_bool(
            &control,
            a_to_b("retention_warning IS NULL AND state = 'streaming'"),
        )
        .await
    })
    .await;
    run.shutdown().await;
}
