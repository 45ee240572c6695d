//! Conflicts between PostgreSQL (site 1) and MariaDB (site 2), and between two
//! MariaDB sites: concurrent edits made while the link is stopped, settled by
//! each table's policy when it runs again. Final rows on both sides and the
//! conflicts-table rows are asserted.

use std::time::Duration;

use crate::support::{connect, query_i64, wait_for};
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const TABLES: [&str; 5] = ["t_lww", "t_own", "t_manual", "t_prio", "t_merge"];

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

/// One site of the test, whatever its engine.
enum Side {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

type Rows = Vec<(i32, Option<String>, Option<String>)>;

impl Side {
    async fn exec(&mut self, sql: &str) {
        match self {
            Side::Pg(c) => c.batch_execute(sql).await.unwrap(),
            Side::My(c) => c.query_drop(sql).await.unwrap(),
        }
    }

    async fn rows(&mut self, table: &str) -> Rows {
        let sql = format!("SELECT id, v, w FROM {table} ORDER BY id");
        match self {
            Side::Pg(c) => c
                .query(&sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
            Side::My(c) => c.query(sql).await.unwrap(),
        }
    }

    /// Tombstones duplex keeps on this site.
    async fn tombstones(&mut self) -> i64 {
        match self {
            Side::Pg(c) => c
                .query_one("SELECT count(*) FROM duplex.site_tombstones", &[])
                .await
                .unwrap()
                .get(0),
            Side::My(c) => c
                .query_first("SELECT COUNT(*) FROM _duplex_tombstones")
                .await
                .unwrap()
                .unwrap_or(0),
        }
    }

    async fn value(&mut self, table: &str, id: i32, col: usize) -> Option<String> {
        let rows = self.rows(table).await;
        let row = rows.into_iter().find(|r| r.0 == id)?;
        Some(if col == 1 { row.1 } else { row.2 }.unwrap_or_default())
    }
}

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

/// The scenario, for any pair of sites: baseline synced, link stopped,
/// concurrent edits (site 1 first, site 2 later), link started again.
async fn run_scenario(control_url: &str, a: &mut Side, b: &mut Side) {
    let control = connect(control_url).await;
    control
        .batch_execute(
            "UPDATE duplex.link_tables SET conflict_policy = 'manual' WHERE table_name = 't_manual';
             UPDATE duplex.link_tables SET conflict_policy = 'site_priority', priority_site = 1 WHERE table_name = 't_prio';
             UPDATE duplex.link_tables SET conflict_policy = 'field_merge' WHERE table_name = 't_merge';
             INSERT INTO duplex.column_owners VALUES (1, 'public', 't_own', 'w', 2);",
        )
        .await
        .unwrap();
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
        while a.rows(table).await != b.rows(table).await {
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
        while a.rows(table).await != b.rows(table).await {
            assert!(
                start.elapsed() < t,
                "{table} did not converge: {:?} vs {:?}",
                a.rows(table).await,
                b.rows(table).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_for("manual conflicts parked on both sides", t, || async {
        query_i64(&control, "SELECT count(*) FROM duplex.conflicts WHERE table_name LIKE '%.t_manual' AND status = 'open' AND confirmed").await == 2
    })
    .await;

    for side in [&mut *a, &mut *b] {
        assert_eq!(side.value("t_lww", 1, 1).await.as_deref(), Some("b1"));
        assert_eq!(side.value("t_lww", 100, 1).await.as_deref(), Some("b100"));
        assert_eq!(side.value("t_lww", 2, 1).await.as_deref(), Some("b2"));
        assert_eq!(side.value("t_lww", 3, 1).await, None);
        assert_eq!(side.value("t_lww", 7, 1).await.as_deref(), Some("b7"));
        assert_eq!(side.value("t_own", 4, 2).await.as_deref(), Some("w4"));
        assert_eq!(side.value("t_own", 4, 1).await.as_deref(), Some("a4"));
        assert_eq!(
            side.value("t_own", 5, 2).await.as_deref(),
            Some("site 2 owns this")
        );
    }
    assert_eq!(a.value("t_manual", 1, 1).await.as_deref(), Some("a1"));
    assert_eq!(b.value("t_manual", 1, 1).await.as_deref(), Some("b1"));
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
    while a.value("t_manual", 1, 1).await.as_deref() != Some("b1")
        || query_i64(&control, "SELECT count(*) FROM duplex.conflicts WHERE table_name LIKE '%.t_manual' AND status IN ('resolved', 'superseded')").await != 2
    {
        assert!(start.elapsed() < t, "the resolution was not applied on both sides");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.rows("t_manual").await, b.rows("t_manual").await);

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
    let recorded = query_i64(
        &control,
        "SELECT count(*) FROM duplex.conflicts WHERE confirmed",
    )
    .await;
    let reported: u64 = [1u32, 2]
        .iter()
        .map(|&s| {
            run.stats(1, s)
                .map(|st| st.conflicts.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(reported as i64, recorded);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_and_mariadb_settle_conflicts_alike() {
    crate::support::init_tracing();
    let pg = crate::support::start_postgres(&pg_schema()).await;
    let my = crate::support::start_mariadb(&mysql_schema()).await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", pg.conninfo("app")),
            (2, "maria", "mysql", my.url("app")),
        ],
        &TABLES,
    )
    .await;
    let mut a = Side::Pg(connect(&pg.conninfo("app")).await);
    let mut b = Side::My(crate::support::mysql_conn(&my).await);
    run_scenario(&url, &mut a, &mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mariadb_sites_settle_conflicts() {
    let (m1, m2) = (
        crate::support::start_mariadb(&mysql_schema()).await,
        crate::support::start_mariadb(&mysql_schema()).await,
    );
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "a", "mysql", m1.url("app")),
            (2, "b", "mysql", m2.url("app")),
        ],
        &TABLES,
    )
    .await;
    let mut a = Side::My(crate::support::mysql_conn(&m1).await);
    let mut b = Side::My(crate::support::mysql_conn(&m2).await);
    run_scenario(&url, &mut a, &mut b).await;
}
