//! Conflicts, for every engine pair: concurrent edits made while the link is
//! stopped, then settled by each table's policy when it runs again. Each case
//! asserts the final rows on both sides and the conflicts-table rows. One body runs
//! per engine pair; the PostgreSQL pair has a scenario of its own besides for what
//! only PostgreSQL can do (a write under duplex's replication origin).

use std::time::Duration;

use crate::support::site::{Db, Engines, Sites};
use crate::support::{connect, query_bool, query_i64, table_rows, wait_for, Pair};
use duplex::pipeline::PipelineTuning;

const SCHEMA: &str = "
CREATE TABLE t_lww (id int PRIMARY KEY, v text, w text);
CREATE TABLE t_prio (id int PRIMARY KEY, v text, w text);
CREATE TABLE t_own (id int PRIMARY KEY, v text, owned_by_b text);
CREATE TABLE t_manual (id int PRIMARY KEY, v text, w text);
CREATE TABLE t_merge (id int PRIMARY KEY, v text, w text);";

const TABLES: [&str; 5] = ["t_lww", "t_prio", "t_own", "t_manual", "t_merge"];

/// The confirmed conflict records of `table` of one kind: (target site, row key,
/// outcome).
async fn conflicts(
    control: &tokio_postgres::Client,
    table: &str,
    kind: &str,
) -> Vec<(i32, String, String)> {
    control
        .query(
            "SELECT target_site, row_key, outcome FROM duplex.conflicts
              WHERE table_name LIKE '%.' || $1 AND kind = $2 AND confirmed ORDER BY target_site, row_key",
            &[&table, &kind],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn value(c: &tokio_postgres::Client, table: &str, id: i32, col: &str) -> Option<String> {
    c.query_opt(&format!("SELECT {col} FROM {table} WHERE id = $1"), &[&id])
        .await
        .unwrap()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_are_settled_by_policy_and_recorded_pg_pg() {
    let pair = Pair::start(SCHEMA, &TABLES).await;
    let control = connect(&pair.control_url).await;
    crate::support::set_conflict_policies(&control, "owned_by_b").await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let t = Duration::from_secs(30);

    // Baseline rows, synced both ways.
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 2 * TABLES.len() as i64).await;
    for table in TABLES {
        a.batch_execute(&format!(
            "INSERT INTO {table} SELECT g, 'v' || g, 'w' || g FROM generate_series(1, 6) g"
        ))
        .await
        .unwrap();
    }
    // A row created on B (site 2).
    for table in ["t_lww", "t_prio"] {
        b.batch_execute(&format!("INSERT INTO {table} VALUES (7, 'v7', 'w7')"))
            .await
            .unwrap();
    }
    for table in TABLES {
        wait_for(&format!("{table} baseline on B"), t, || async {
            table_rows(&a, table).await == table_rows(&b, table).await
        })
        .await;
    }
    run.shutdown().await;

    // Concurrent edits while the link is stopped. Site A writes first, site B
    // later, so B's versions are the later ones.
    for table in ["t_lww", "t_prio"] {
        a.batch_execute(&format!(
            "UPDATE {table} SET v = 'a1' WHERE id = 1;
             INSERT INTO {table} VALUES (100, 'a100', 'a');
             DELETE FROM {table} WHERE id = 2;
             DELETE FROM {table} WHERE id = 3;
             DELETE FROM {table} WHERE id = 7;"
        ))
        .await
        .unwrap();
        b.batch_execute(&format!(
            "UPDATE {table} SET v = 'b1' WHERE id = 1;
             INSERT INTO {table} VALUES (100, 'b100', 'b');
             UPDATE {table} SET v = 'b2' WHERE id = 2;
             DELETE FROM {table} WHERE id = 3;
             UPDATE {table} SET v = 'b7' WHERE id = 7;"
        ))
        .await
        .unwrap();
    }
    // Drift: a change on B that never reaches the change stream (made under
    // duplex's own replication origin, as duplex's writes are), then A updates
    // the row.
    // (Separate statements: the origin must be set when the UPDATE commits.)
    for sql in [
        "SELECT pg_replication_origin_session_setup('duplex_l1_from_s1')",
        "UPDATE t_lww SET w = 'drift' WHERE id = 4",
        "SELECT pg_replication_origin_session_reset()",
    ] {
        b.batch_execute(sql).await.unwrap();
    }
    a.batch_execute("UPDATE t_lww SET v = 'a4' WHERE id = 4")
        .await
        .unwrap();
    // Ownership: A writes B's column (and another column), B writes its own.
    a.batch_execute("UPDATE t_own SET owned_by_b = 'A wrote this', v = 'a5' WHERE id = 5")
        .await
        .unwrap();
    b.batch_execute("UPDATE t_own SET owned_by_b = 'B owns this' WHERE id = 6")
        .await
        .unwrap();
    // Field merge: each side changes another column of the same row; on row 2
    // both change the same column (the later one wins that column).
    a.batch_execute(
        "UPDATE t_merge SET v = 'a1' WHERE id = 1; UPDATE t_merge SET v = 'a2' WHERE id = 2",
    )
    .await
    .unwrap();
    b.batch_execute("UPDATE t_merge SET w = 'b1' WHERE id = 1; UPDATE t_merge SET v = 'b2', w = 'b2' WHERE id = 2").await.unwrap();
    // Manual: both sides change the same row.
    a.batch_execute("UPDATE t_manual SET v = 'a1' WHERE id = 1")
        .await
        .unwrap();
    b.batch_execute("UPDATE t_manual SET v = 'b1' WHERE id = 1")
        .await
        .unwrap();

    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("restart duplex");
    for table in ["t_lww", "t_prio", "t_own", "t_merge"] {
        wait_for(&format!("{table} converges"), t, || async {
            table_rows(&a, table).await == table_rows(&b, table).await
        })
        .await;
    }
    wait_for("manual conflicts parked on both sides", t, || async {
        query_i64(&control, "SELECT count(*) FROM duplex.conflicts WHERE table_name = 'public.t_manual' AND status = 'open' AND confirmed").await == 2
    })
    .await;

    for c in [&a, &b] {
        // Last writer (B) wins the update and the insert under last-writer-wins,
        // site 1 (A) under site priority.
        assert_eq!(value(c, "t_lww", 1, "v").await.as_deref(), Some("b1"));
        assert_eq!(value(c, "t_lww", 100, "v").await.as_deref(), Some("b100"));
        assert_eq!(value(c, "t_prio", 1, "v").await.as_deref(), Some("a1"));
        assert_eq!(value(c, "t_prio", 100, "v").await.as_deref(), Some("a100"));
        // A write beats a concurrent delete; a row both deleted stays deleted.
        for table in ["t_lww", "t_prio"] {
            assert_eq!(value(c, table, 2, "v").await.as_deref(), Some("b2"));
            assert_eq!(value(c, table, 7, "v").await.as_deref(), Some("b7"));
            assert_eq!(value(c, table, 3, "v").await, None);
        }
        // The drifted row takes A's update (and B's drift is gone).
        assert_eq!(value(c, "t_lww", 4, "v").await.as_deref(), Some("a4"));
        assert_eq!(value(c, "t_lww", 4, "w").await.as_deref(), Some("w4"));
        // The owned column keeps B's values only; A's other change stays.
        assert_eq!(
            value(c, "t_own", 5, "owned_by_b").await.as_deref(),
            Some("w5")
        );
        assert_eq!(value(c, "t_own", 5, "v").await.as_deref(), Some("a5"));
        assert_eq!(
            value(c, "t_own", 6, "owned_by_b").await.as_deref(),
            Some("B owns this")
        );
    }
    // Manual: each side keeps its own version until a DBA decides.
    assert_eq!(value(&a, "t_manual", 1, "v").await.as_deref(), Some("a1"));
    assert_eq!(value(&b, "t_manual", 1, "v").await.as_deref(), Some("b1"));
    // The DBA settles it in SQL on site A's record: take the incoming (B's)
    // version. Both sites end with it; B's mirror record becomes moot.
    control
        .batch_execute(
            "SELECT duplex.resolve_conflict(conflict_id, 'incoming') FROM duplex.conflicts
              WHERE table_name = 'public.t_manual' AND target_site = 1 AND status = 'open'",
        )
        .await
        .unwrap();
    wait_for("the resolution applied on both sides", t, || async {
        value(&a, "t_manual", 1, "v").await.as_deref() == Some("b1")
            && query_i64(&control, "SELECT count(*) FROM duplex.conflicts WHERE table_name = 'public.t_manual' AND status = 'superseded'").await == 1
    })
    .await;
    assert_eq!(
        table_rows(&a, "t_manual").await,
        table_rows(&b, "t_manual").await
    );
    assert!(query_bool(&control, "SELECT status = 'resolved' AND resolution = 'incoming' FROM duplex.conflicts WHERE table_name = 'public.t_manual' AND target_site = 1").await);
    // A settled conflict cannot be settled again.
    let again = control
        .batch_execute("SELECT duplex.resolve_conflict(conflict_id, 'local') FROM duplex.conflicts WHERE table_name = 'public.t_manual' AND target_site = 1")
        .await;
    let err = again.unwrap_err();
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("is not open"), "{message}");

    // The conflicts table: every case, on the side that detected it.
    for table in ["t_lww", "t_prio"] {
        let winner = if table == "t_lww" {
            ("incoming_applied", "local_kept")
        } else {
            ("local_kept", "incoming_applied")
        };
        assert_eq!(
            conflicts(&control, table, "update_update").await,
            vec![
                (1, "id=1".into(), winner.0.into()),
                (2, "id=1".into(), winner.1.into())
            ],
            "{table}"
        );
        assert_eq!(
            conflicts(&control, table, "insert_insert").await,
            vec![
                (1, "id=100".into(), winner.0.into()),
                (2, "id=100".into(), winner.1.into())
            ],
            "{table}"
        );
        // Row 2 came from A, so B's update has seen A's version: A deleted
        // it. Row 7 came from B and A never changed it: A cannot tell its
        // user's delete from a row that never arrived.
        assert_eq!(
            conflicts(&control, table, "update_delete").await,
            vec![(1, "id=2".into(), "recreated".into())],
            "{table}"
        );
        assert_eq!(
            conflicts(&control, table, "update_missing").await,
            vec![(1, "id=7".into(), "recreated".into())],
            "{table}"
        );
        assert_eq!(
            conflicts(&control, table, "delete_update").await,
            vec![
                (2, "id=2".into(), "local_kept".into()),
                (2, "id=7".into(), "local_kept".into())
            ],
            "{table}"
        );
        assert_eq!(
            conflicts(&control, table, "delete_delete").await,
            vec![
                (1, "id=3".into(), "already_deleted".into()),
                (2, "id=3".into(), "already_deleted".into())
            ],
            "{table}"
        );
    }
    assert_eq!(
        conflicts(&control, "t_lww", "unsynced_local_edit").await,
        vec![(2, "id=4".into(), "incoming_applied".into())]
    );
    // Both versions are in the record.
    assert!(query_bool(
        &control,
        "SELECT local_version->'row'->'v'->>'value' = 'b1' AND incoming_version->'row'->'v'->>'value' = 'a1'
           FROM duplex.conflicts WHERE table_name = 'public.t_lww' AND kind = 'update_update' AND target_site = 2"
    )
    .await);
    // The counters view agrees with the table, and with what duplex counted.
    let recorded = query_i64(
        &control,
        "SELECT count(*) FROM duplex.conflicts WHERE confirmed",
    )
    .await;
    let counted = query_i64(
        &control,
        "SELECT sum(conflicts)::bigint FROM duplex.conflict_counts",
    )
    .await;
    assert_eq!(recorded, counted);
    crate::support::assert_conflicts_counted(&control, &run).await;
    run.shutdown().await;

    // The deletes applied left tombstones, kept for the link's retention
    // (a day by default). With a retention of zero they go at the next pass.
    let tombstones = || async {
        query_i64(&a, "SELECT count(*) FROM duplex.site_tombstones").await
            + query_i64(&b, "SELECT count(*) FROM duplex.site_tombstones").await
    };
    assert!(tombstones().await > 0);
    control
        .batch_execute("UPDATE duplex.links SET tombstone_retention = '0'")
        .await
        .unwrap();
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("restart duplex");
    wait_for("expired tombstones removed", t, || async {
        tombstones().await == 0
    })
    .await;
    run.shutdown().await;
}

// ----- The same scenario for every engine pair.

fn pg_schema() -> String {
    TABLES
        .iter()
        .map(|t| format!("CREATE TABLE {t} (id int PRIMARY KEY, v varchar(50), w varchar(50));"))
        .collect()
}

fn mysql_schema() -> String {
    TABLES
        .iter()
        .map(|t| {
            format!("CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(50) NULL, w VARCHAR(50) NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;")
        })
        .collect()
}

type Rows = Vec<(i32, Option<String>, Option<String>)>;

async fn rows(db: &mut Db, table: &str) -> Rows {
    db.query(&format!("SELECT id, v, w FROM {table} ORDER BY id"))
        .await
}

/// Column `col` (1: v, 2: w) of row `id`, empty for NULL; None without the row.
async fn cell(db: &mut Db, table: &str, id: i32, col: usize) -> Option<String> {
    let row = rows(db, table).await.into_iter().find(|r| r.0 == id)?;
    Some(if col == 1 { row.1 } else { row.2 }.unwrap_or_default())
}

/// The scenario, for any pair of sites: baseline synced, link stopped,
/// concurrent edits (site 1 first, site 2 later), link started again.
async fn run_scenario(engines: Engines) {
    let sites = Sites::start(engines, &pg_schema(), &mysql_schema(), &TABLES).await;
    let control_url = sites.control_url.as_str();
    let (a, b) = &mut sites.connect().await;
    let control = connect(control_url).await;
    crate::support::set_conflict_policies(&control, "w").await;
    let t = Duration::from_secs(30);
    let run = duplex::runner::start(control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync(&control, 2 * TABLES.len() as i64).await;
    for table in TABLES {
        a.exec(&format!(
            "INSERT INTO {table} VALUES (1, 'v1', 'w1'), (2, 'v2', 'w2'), (3, 'v3', 'w3'), (4, 'v4', 'w4'), (5, 'v5', 'w5')"
        ))
        .await;
    }
    // A row created on site 2.
    b.exec("INSERT INTO t_lww VALUES (7, 'v7', 'w7')").await;
    for table in TABLES {
        let start = std::time::Instant::now();
        while rows(a, table).await != rows(b, table).await {
            assert!(start.elapsed() < t, "baseline of {table} did not sync");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    run.shutdown().await;

    a.exec(
        "UPDATE t_lww SET v = 'a1' WHERE id = 1;
         INSERT INTO t_lww VALUES (100, 'a100', 'a');
         DELETE FROM t_lww WHERE id = 2;
         DELETE FROM t_lww WHERE id = 3;
         DELETE FROM t_lww WHERE id = 7;",
    )
    .await;
    // Later than site 1's writes, whatever the clocks' resolution.
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.exec(
        "UPDATE t_lww SET v = 'b1' WHERE id = 1;
         INSERT INTO t_lww VALUES (100, 'b100', 'b');
         UPDATE t_lww SET v = 'b2' WHERE id = 2;
         DELETE FROM t_lww WHERE id = 3;
         UPDATE t_lww SET v = 'b7' WHERE id = 7;",
    )
    .await;
    a.exec(
        "UPDATE t_prio SET v = 'a1' WHERE id = 1; INSERT INTO t_prio VALUES (100, 'a100', 'a');",
    )
    .await;
    a.exec("UPDATE t_merge SET v = 'a1' WHERE id = 1").await;
    a.exec("UPDATE t_own SET w = 'site 1 wrote this', v = 'a4' WHERE id = 4")
        .await;
    b.exec("UPDATE t_own SET w = 'site 2 owns this' WHERE id = 5")
        .await;
    a.exec("UPDATE t_manual SET v = 'a1' WHERE id = 1").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.exec("UPDATE t_manual SET v = 'b1' WHERE id = 1").await;

    let run = duplex::runner::start(control_url, PipelineTuning::default())
        .await
        .expect("restart duplex");
    for table in ["t_lww", "t_own", "t_prio", "t_merge"] {
        let start = std::time::Instant::now();
        while rows(a, table).await != rows(b, table).await {
            assert!(
                start.elapsed() < t,
                "{table} did not converge: {:?} vs {:?}",
                rows(a, table).await,
                rows(b, table).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_for("manual conflicts parked on both sides", t, || async {
        query_i64(&control, "SELECT count(*) FROM duplex.conflicts WHERE table_name LIKE '%.t_manual' AND status = 'open' AND confirmed").await == 2
    })
    .await;

    for side in [&mut *a, &mut *b] {
        assert_eq!(cell(side, "t_lww", 1, 1).await.as_deref(), Some("b1"));
        assert_eq!(cell(side, "t_lww", 100, 1).await.as_deref(), Some("b100"));
        assert_eq!(cell(side, "t_lww", 2, 1).await.as_deref(), Some("b2"));
        assert_eq!(cell(side, "t_lww", 3, 1).await, None);
        assert_eq!(cell(side, "t_lww", 7, 1).await.as_deref(), Some("b7"));
        assert_eq!(cell(side, "t_own", 4, 2).await.as_deref(), Some("w4"));
        assert_eq!(cell(side, "t_own", 4, 1).await.as_deref(), Some("a4"));
        assert_eq!(
            cell(side, "t_own", 5, 2).await.as_deref(),
            Some("site 2 owns this")
        );
    }
    assert_eq!(cell(a, "t_manual", 1, 1).await.as_deref(), Some("a1"));
    assert_eq!(cell(b, "t_manual", 1, 1).await.as_deref(), Some("b1"));
    // Settled with the CLI on site 2's record, keeping site 2's (local)
    // version: site 1 takes it too.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_duplex"))
            .arg("conflicts")
            .args(["--control", control_url])
            .args(args)
            .output()
            .expect("run duplex conflicts");
        assert!(
            out.status.success(),
            "duplex conflicts {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&["list", "--open"]);
    assert!(
        listed.contains("t_manual") && listed.contains("parked"),
        "{listed}"
    );
    let id = query_i64(
        &control,
        "SELECT conflict_id FROM duplex.conflicts WHERE table_name LIKE '%.t_manual' AND target_site = 2 AND status = 'open'",
    )
    .await;
    let shown = cli(&["show", &id.to_string()]);
    assert!(
        shown.contains("update_update") && shown.contains("\"a1\"") && shown.contains("\"b1\""),
        "{shown}"
    );
    cli(&["resolve", &id.to_string(), "--take", "local"]);
    let start = std::time::Instant::now();
    while cell(a, "t_manual", 1, 1).await.as_deref() != Some("b1")
        || query_i64(&control, "SELECT count(*) FROM duplex.conflicts WHERE table_name LIKE '%.t_manual' AND status IN ('resolved', 'superseded')").await != 2
    {
        assert!(start.elapsed() < t, "the resolution was not applied on both sides");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rows(a, "t_manual").await, rows(b, "t_manual").await);

    assert_eq!(
        conflicts(&control, "t_lww", "update_update").await,
        vec![
            (1, "id=1".into(), "incoming_applied".into()),
            (2, "id=1".into(), "local_kept".into())
        ]
    );
    assert_eq!(
        conflicts(&control, "t_lww", "insert_insert").await,
        vec![
            (1, "id=100".into(), "incoming_applied".into()),
            (2, "id=100".into(), "local_kept".into())
        ]
    );
    // Row 2 came from site 1: site 2's update has seen site 1's version, so
    // site 1 knows it deleted the row. Row 7 came from site 2 and site 1 never
    // changed it: a user's delete looks like a row that never arrived.
    assert_eq!(
        conflicts(&control, "t_lww", "update_delete").await,
        vec![(1, "id=2".into(), "recreated".into())]
    );
    assert_eq!(
        conflicts(&control, "t_lww", "update_missing").await,
        vec![(1, "id=7".into(), "recreated".into())]
    );
    assert_eq!(
        conflicts(&control, "t_lww", "delete_update").await,
        vec![
            (2, "id=2".into(), "local_kept".into()),
            (2, "id=7".into(), "local_kept".into())
        ]
    );
    assert_eq!(
        conflicts(&control, "t_lww", "delete_delete").await,
        vec![
            (1, "id=3".into(), "already_deleted".into()),
            (2, "id=3".into(), "already_deleted".into())
        ]
    );
    crate::support::assert_conflicts_counted(&control, &run).await;
    run.shutdown().await;

    // The deletes applied left tombstones, kept for the link's retention
    // (a day by default). With a retention of zero they go at the next pass.
    assert!(a.tombstones().await + b.tombstones().await > 0);
    control
        .batch_execute("UPDATE duplex.links SET tombstone_retention = '0'")
        .await
        .unwrap();
    let run = duplex::runner::start(control_url, PipelineTuning::default())
        .await
        .expect("restart duplex");
    let start = std::time::Instant::now();
    while a.tombstones().await + b.tombstones().await > 0 {
        assert!(start.elapsed() < t, "expired tombstones were not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.shutdown().await;
}

crate::support::scenario_tests! {
    run_scenario:
    postgresql_and_mariadb_settle_conflicts_alike(Engines::PgMariaDb);
    two_mariadb_sites_settle_conflicts(Engines::MariaDbMariaDb);
}
