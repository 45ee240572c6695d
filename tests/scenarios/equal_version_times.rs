//! Two versions of one row with the same version time. A MariaDB site's
//! version time is the stamp column its server sets on each user write
//! (`ON UPDATE CURRENT_TIMESTAMP(6)`): the statement's start time, which two
//! sessions updating a row at once can share (about 1 in 6,000 updates of a
//! contended row on this machine), and which a session that `SET TIMESTAMP`
//! (a replayed binlog, an application pinning its clock) gives to all its
//! writes. duplex tells a site's own versions apart by time where it cannot
//! know their log positions; here two of them share it.
//!
//! The concurrency is made deterministic: site 2 (MariaDB) updates a row
//! with a pinned time and the update reaches site 1; the link stops; site 2
//! updates the row again with the same pinned time while site 1 updates it
//! too, on top of the first version; the link starts again. The second
//! version must count as concurrent with site 1's, never as one of them
//! having seen the other: under field merge both edits survive, under
//! last-writer-wins the two versions are recorded as a conflict. Before the
//! fix both sites silently settled on site 1's row, losing site 2's edit
//! (the field-merge convergence test caught it about once in eight runs).

use crate::support::site::{self, Db, Engines, Sites};
use crate::support::{query_i64, wait_for};
use std::time::Duration;

const TABLES: [&str; 3] = ["t_merge", "t_lww", "sentinel"];

fn pg_schema() -> String {
    TABLES
        .iter()
        .map(|t| format!("CREATE TABLE {t} (id integer PRIMARY KEY, a integer, b integer);"))
        .collect()
}

fn my_schema() -> String {
    TABLES
        .iter()
        .map(|t| format!("CREATE TABLE {t} (id INT PRIMARY KEY, a INT NULL, b INT NULL);"))
        .collect()
}

/// (id, a, b)
type Abc = (i32, Option<i32>, Option<i32>);

fn abc_sql(table: &str) -> [String; 2] {
    [
        format!("SELECT id, a, b FROM {table} ORDER BY id"),
        format!("SELECT id, a, b FROM {table} ORDER BY id"),
    ]
}

async fn rows(db: &mut Db, table: &str) -> Vec<Abc> {
    let [pg, my] = abc_sql(table);
    db.rows(&pg, &my).await
}

async fn wait_same(a: &mut Db, b: &mut Db, table: &str, what: &str) {
    let [pg, my] = abc_sql(table);
    site::wait_same::<Abc>(a, b, what, &[[&pg, &my]]).await;
}

/// Both directions have applied everything written before: a row written on
/// each site after the rest has reached the other one.
async fn drain(a: &mut Db, b: &mut Db, round: i32) {
    a.exec(&format!(
        "INSERT INTO sentinel (id, a, b) VALUES ({}, 0, 0)",
        2 * round
    ))
    .await;
    b.exec(&format!(
        "INSERT INTO sentinel (id, a, b) VALUES ({}, 0, 0)",
        2 * round + 1
    ))
    .await;
    wait_same(a, b, "sentinel", "both directions drained").await;
}

async fn run_equal_times(engines: Engines) {
    let sites = Sites::start(engines, &pg_schema(), &my_schema(), &TABLES).await;
    let control_url = sites.control_url.as_str();
    let control = crate::support::connect(control_url).await;
    control
        .batch_execute(
            "UPDATE duplex.link_tables SET conflict_policy = 'field_merge' WHERE table_name = 't_merge'",
        )
        .await
        .unwrap();
    let (mut a, mut b) = sites.connect().await;
    assert!(!b.is_pg(), "site 2 is the MariaDB site");
    let run = crate::support::start_synced(control_url).await;
    for table in ["t_merge", "t_lww"] {
        a.exec(&format!("INSERT INTO {table} (id, a, b) VALUES (1, 0, 0)"))
            .await;
    }
    // A row inserted under field merge comes back to its creator once.
    drain(&mut a, &mut b, 1).await;
    drain(&mut a, &mut b, 2).await;

    // Site 2's session pins its clock: each of its writes gets the same
    // stamp, as two statements started in the same microsecond do.
    let pinned = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        - 1_000_000) as f64
        / 1e6;
    b.exec(&format!("SET TIMESTAMP = {pinned:.6}")).await;
    for table in ["t_merge", "t_lww"] {
        b.exec(&format!("UPDATE {table} SET b = 1 WHERE id = 1"))
            .await;
    }
    for table in ["t_merge", "t_lww"] {
        wait_same(&mut a, &mut b, table, "site 2's first edit on site 1").await;
    }
    drain(&mut a, &mut b, 3).await;
    run.shutdown().await;

    // Concurrent: site 2's second edit (the same stamp as its first) and
    // site 1's edit, made on top of site 2's first.
    for table in ["t_merge", "t_lww"] {
        b.exec(&format!("UPDATE {table} SET b = 2 WHERE id = 1"))
            .await;
        a.exec(&format!("UPDATE {table} SET a = 1 WHERE id = 1"))
            .await;
    }
    let run = crate::support::start_synced(control_url).await;
    wait_same(&mut a, &mut b, "t_merge", "t_merge converges").await;
    wait_same(&mut a, &mut b, "t_lww", "t_lww converges").await;
    assert_eq!(
        rows(&mut a, "t_merge").await,
        vec![(1, Some(1), Some(2))],
        "field merge keeps both sites' edits"
    );
    // Last writer wins: site 1's edit is the later one (site 2's clock was
    // pinned a second back), and the lost edit is on record, on both sites.
    assert_eq!(rows(&mut a, "t_lww").await, vec![(1, Some(1), Some(1))]);
    wait_for(
        "the concurrent versions recorded as conflicts on both sites",
        Duration::from_secs(60),
        || async {
            query_i64(
                &control,
                "SELECT count(DISTINCT target_site) FROM duplex.conflicts
                  WHERE table_name LIKE '%.t_lww' AND kind = 'update_update' AND confirmed",
            )
            .await
                == 2
        },
    )
    .await;
    run.shutdown().await;
}

crate::support::scenario_tests! {
    run_equal_times:
    equal_stamps_on_mariadb_stay_apart_postgresql_and_mariadb(Engines::PgMariaDb);
    equal_stamps_on_mariadb_stay_apart_mariadb_pair(Engines::MariaDbMariaDb);
}
