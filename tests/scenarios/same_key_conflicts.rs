//! A source transaction that changes one row several times (delete and
//! re-insert, update twice, update then delete, insert then update, a key
//! moved and then updated) while the other site changes the same rows
//! concurrently: the link is stopped (`run.shutdown()`), both sites write,
//! and it starts again, so the concurrency is deterministic. Under every
//! policy both sites must converge (manual: each keeps its own version until
//! a DBA decides), and each site records one conflict per row and source
//! transaction whose incoming row is the transaction's final row. Rows are
//! read with plain SQL, not duplex's code. On PG<->PG, MariaDB<->MariaDB and
//! PG<->MariaDB (same_key_txn.rs has the same shapes without
//! concurrency).

use std::time::Duration;

use crate::support::site::{self, Db, Engines, Sites};
use crate::support::{query_i64, wait_for};
use duplex::pipeline::PipelineTuning;

/// The tables under test, and `sentinel`: a row written on one site after
/// the others has arrived on the peer once they have.
const TABLES: [&str; 6] = [
    "t_lww", "t_prio", "t_merge", "t_manual", "t_own", "sentinel",
];

fn pg_schema() -> String {
    TABLES
        .iter()
        .map(|t| {
            format!("CREATE TABLE {t} (id integer PRIMARY KEY, v varchar(40), w varchar(40));")
        })
        .collect()
}

fn my_schema() -> String {
    TABLES
        .iter()
        .map(|t| {
            format!(
                "CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(40) NULL, w VARCHAR(40) NULL) \
                 CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;"
            )
        })
        .collect()
}

/// (id, v, w)
type Kv = (i64, Option<String>, Option<String>);

/// `table`'s rows as [`Kv`], [on PostgreSQL, on MariaDB].
fn kv_sql(table: &str) -> [String; 2] {
    [
        format!("SELECT id::int8, v::text, w::text FROM {table} ORDER BY id"),
        format!("SELECT CAST(id AS SIGNED), v, w FROM {table} ORDER BY id"),
    ]
}

async fn rows(db: &mut Db, table: &str) -> Vec<Kv> {
    let [pg, my] = kv_sql(table);
    db.rows(&pg, &my).await
}

/// Poll until `table` holds the same rows on both sites.
async fn wait_same(a: &mut Db, b: &mut Db, table: &str, what: &str) {
    let [pg, my] = kv_sql(table);
    site::wait_same::<Kv>(a, b, what, &[[&pg, &my]]).await;
}

fn kv(id: i64, v: &str, w: &str) -> Kv {
    (id, Some(v.into()), Some(w.into()))
}

/// Site A's transaction on `table`: every shape on its own row.
fn a_transaction(table: &str) -> Vec<String> {
    vec![
        // delete + insert of the same key (sysbench oltp_read_write)
        format!("DELETE FROM {table} WHERE id = 1"),
        format!("INSERT INTO {table} (id, v, w) VALUES (1, 'a1', 'w1')"),
        // update + update
        format!("UPDATE {table} SET v = 'a2x' WHERE id = 2"),
        format!("UPDATE {table} SET v = 'a2' WHERE id = 2"),
        // update + delete
        format!("UPDATE {table} SET v = 'a3' WHERE id = 3"),
        format!("DELETE FROM {table} WHERE id = 3"),
        // insert + update of a new key
        format!("INSERT INTO {table} (id, v, w) VALUES (10, 'a10', 'a')"),
        format!("UPDATE {table} SET v = 'a10x' WHERE id = 10"),
        // a key moved, then the moved row updated
        format!("UPDATE {table} SET id = 14 WHERE id = 4"),
        format!("UPDATE {table} SET v = 'a14' WHERE id = 14"),
        // update + update of a row the other site deletes
        format!("UPDATE {table} SET v = 'a6x' WHERE id = 6"),
        format!("UPDATE {table} SET v = 'a6' WHERE id = 6"),
    ]
}

/// Site B's concurrent changes of the same rows (another column).
fn b_changes(table: &str) -> Vec<String> {
    vec![
        format!("UPDATE {table} SET w = 'b1' WHERE id = 1"),
        format!("UPDATE {table} SET w = 'b2' WHERE id = 2"),
        format!("UPDATE {table} SET w = 'b3' WHERE id = 3"),
        format!("INSERT INTO {table} (id, v, w) VALUES (10, 'b10', 'b')"),
        format!("UPDATE {table} SET w = 'b4' WHERE id = 4"),
        format!("DELETE FROM {table} WHERE id = 6"),
    ]
}

/// (target site, row key, kind, outcome, incoming row as text or null),
/// confirmed records of `table`.
type Record = (i32, String, String, String, Option<String>);

async fn records(control: &tokio_postgres::Client, table: &str) -> Vec<Record> {
    control
        .query(
            "SELECT target_site, row_key, kind, outcome,
                    (incoming_version->'row'->'id'->>'value') || ',' ||
                    coalesce(incoming_version->'row'->'v'->>'value', '') || ',' ||
                    coalesce(incoming_version->'row'->'w'->>'value', '')
               FROM duplex.conflicts
              WHERE table_name LIKE '%.' || $1 AND confirmed
              ORDER BY target_site, row_key, kind",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

fn rec(target: i32, id: i64, kind: &str, outcome: &str, incoming: Option<&str>) -> Record {
    (
        target,
        format!("id={id}"),
        kind.into(),
        outcome.into(),
        incoming.map(String::from),
    )
}

/// A's transaction's final rows, as recorded incoming on B (site 2).
const A1: Option<&str> = Some("1,a1,w1");
const A2: Option<&str> = Some("2,a2,w2");
const A10: Option<&str> = Some("10,a10x,a");

/// `batch_rows`: the applier decides this many changes at a time (1: every
/// statement of a transaction alone, the path of a row changed again more
/// than a batch later in one long transaction).
async fn run_policies(engines: Engines, batch_rows: usize) {
    let sites = Sites::start(engines, &pg_schema(), &my_schema(), &TABLES).await;
    let control_url = sites.control_url.as_str();
    let (mut a, mut b) = sites.connect().await;
    let t = Duration::from_secs(60);
    let control = crate::support::connect(control_url).await;
    crate::support::set_conflict_policies(&control, "w").await;
    let run = crate::support::start_synced(control_url).await;
    // Baseline rows written on A, synced to B.
    for table in &TABLES[..5] {
        a.txn(
            &(1..=6)
                .map(|i| format!("INSERT INTO {table} (id, v, w) VALUES ({i}, 'v{i}', 'w{i}')"))
                .collect::<Vec<_>>(),
        )
        .await;
    }
    for table in TABLES {
        wait_same(&mut a, &mut b, table, &format!("{table} baseline on B")).await;
    }
    // Rows inserted under field merge come back to their creator once: the
    // baseline is settled when a later write of B has reached A.
    b.txn(&["INSERT INTO sentinel (id, v, w) VALUES (1, 'b', 'b')".into()])
        .await;
    wait_same(&mut a, &mut b, "sentinel", "B's sentinel on A").await;
    run.shutdown().await;

    // Concurrent changes while the link is stopped: A's transaction first,
    // B's later (B's versions are the later ones), except on t_own, where B
    // writes first (so that A's transaction wins and meets B's column).
    for table in ["t_lww", "t_prio", "t_merge", "t_manual"] {
        a.txn(&a_transaction(table)).await;
        for s in b_changes(table) {
            b.txn(&[s]).await;
        }
    }
    // Ownership: B owns column w. B changes v of row 1; then A deletes and
    // re-inserts row 1 writing w too, and changes row 2 twice, w included
    // (no concurrent change on row 2: the net change applies, but w stays
    // B's and flows back), and inserts and updates a new row 30.
    b.txn(&["UPDATE t_own SET v = 'bv1' WHERE id = 1".into()])
        .await;
    a.txn(&[
        "DELETE FROM t_own WHERE id = 1".into(),
        "INSERT INTO t_own (id, v, w) VALUES (1, 'a1', 'aw1')".into(),
        "UPDATE t_own SET w = 'aw2' WHERE id = 2".into(),
        "UPDATE t_own SET v = 'a2' WHERE id = 2".into(),
        "INSERT INTO t_own (id, v, w) VALUES (30, 'a30', 'aw30')".into(),
        "UPDATE t_own SET v = 'a30x' WHERE id = 30".into(),
    ])
    .await;

    let tuning = PipelineTuning {
        max_batch_rows: batch_rows,
        ..PipelineTuning::default()
    };
    let run = duplex::runner::start(control_url, tuning)
        .await
        .expect("restart duplex");
    for table in ["t_lww", "t_prio", "t_merge", "t_own"] {
        wait_same(&mut a, &mut b, table, &format!("{table} converges")).await;
    }
    wait_for("manual conflicts parked on both sites", t, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.conflicts WHERE table_name LIKE '%.t_manual' AND status = 'open' AND confirmed",
        )
        .await
            == 12
    })
    .await;
    // Both directions idle: everything was applied.
    let (ra, rb) = (rows(&mut a, "t_lww").await, rows(&mut b, "t_lww").await);
    assert_eq!(ra, rb);

    let unchanged = kv(5, "v5", "w5");
    // Deletes never win against a concurrent write (either way); the moved
    // row is at its new key and B's change kept the old key's row.
    let deleted_and_moved = |r: &[Kv]| {
        assert!(r.contains(&kv(3, "v3", "b3")), "{r:?}");
        assert!(r.contains(&kv(4, "v4", "b4")), "{r:?}");
        assert!(r.contains(&kv(14, "a14", "w4")), "{r:?}");
        assert!(r.contains(&kv(6, "a6", "w6")), "{r:?}");
        assert!(r.contains(&unchanged), "{r:?}");
        assert_eq!(r.len(), 8, "{r:?}");
    };
    // Last writer (B) wins the rows both changed.
    let r = rows(&mut a, "t_lww").await;
    deleted_and_moved(&r);
    for want in [kv(1, "v1", "b1"), kv(2, "v2", "b2"), kv(10, "b10", "b")] {
        assert!(r.contains(&want), "t_lww: {want:?} in {r:?}");
    }
    // Site priority: A's transaction wins.
    let r = rows(&mut a, "t_prio").await;
    deleted_and_moved(&r);
    for want in [kv(1, "a1", "w1"), kv(2, "a2", "w2"), kv(10, "a10x", "a")] {
        assert!(r.contains(&want), "t_prio: {want:?} in {r:?}");
    }
    // Field merge: A's v and B's w both survive; the insert of row 10 on
    // both sites set every column, the later (B's) wins each.
    let r = rows(&mut a, "t_merge").await;
    deleted_and_moved(&r);
    for want in [kv(1, "a1", "b1"), kv(2, "a2", "b2"), kv(10, "b10", "b")] {
        assert!(r.contains(&want), "t_merge: {want:?} in {r:?}");
    }
    // Ownership: w is B's on every row A changed.
    assert_eq!(
        rows(&mut a, "t_own").await,
        vec![
            kv(1, "a1", "w1"),
            kv(2, "a2", "w2"),
            kv(3, "v3", "w3"),
            kv(4, "v4", "w4"),
            unchanged.clone(),
            kv(6, "v6", "w6"),
            kv(30, "a30x", "aw30"),
        ]
    );
    // Manual: each site keeps its own versions.
    assert_eq!(
        rows(&mut a, "t_manual").await,
        vec![
            kv(1, "a1", "w1"),
            kv(2, "a2", "w2"),
            unchanged.clone(),
            kv(6, "a6", "w6"),
            kv(10, "a10x", "a"),
            kv(14, "a14", "w4"),
        ]
    );
    assert_eq!(
        rows(&mut b, "t_manual").await,
        vec![
            kv(1, "v1", "b1"),
            kv(2, "v2", "b2"),
            kv(3, "v3", "b3"),
            kv(4, "v4", "b4"),
            unchanged.clone(),
            kv(10, "b10", "b"),
            kv(14, "a14", "w4"),
        ]
    );

    // One record per row and source transaction on each site; on B (site
    // 2) the incoming row is A's transaction's final row.
    // `kind_b`: B's row 6 has no sign of ever having been on B (missing),
    // except under field merge, where A's insert came back to A once and A's
    // transaction has seen B's version of it (deleted there).
    let both = |kind_a: &str, kind_b: &str, out: [&str; 6]| {
        vec![
            rec(1, 1, "update_update", out[0], Some("1,v1,b1")),
            rec(1, 10, "insert_insert", out[1], Some("10,b10,b")),
            rec(1, 2, "update_update", out[0], Some("2,v2,b2")),
            rec(1, 3, kind_a, out[2], Some("3,v3,b3")),
            rec(1, 4, kind_a, out[2], Some("4,v4,b4")),
            rec(1, 6, "delete_update", out[5], None),
            rec(2, 1, "update_update", out[3], A1),
            rec(2, 10, "insert_insert", out[4], A10),
            rec(2, 2, "update_update", out[3], A2),
            rec(2, 3, "delete_update", out[5], None),
            rec(2, 4, "delete_update", out[5], None),
            rec(2, 6, kind_b, out[2], Some("6,a6,w6")),
        ]
    };
    assert_eq!(
        records(&control, "t_lww").await,
        both(
            "update_delete",
            "update_missing",
            [
                "incoming_applied",
                "incoming_applied",
                "recreated",
                "local_kept",
                "local_kept",
                "local_kept"
            ]
        )
    );
    assert_eq!(
        records(&control, "t_prio").await,
        both(
            "update_delete",
            "update_missing",
            [
                "local_kept",
                "local_kept",
                "recreated",
                "incoming_applied",
                "incoming_applied",
                "local_kept"
            ]
        )
    );
    assert_eq!(
        records(&control, "t_merge").await,
        both(
            "update_delete",
            "update_delete",
            [
                "merged",
                "incoming_applied",
                "recreated",
                "merged",
                "local_kept",
                "local_kept"
            ]
        )
    );
    assert_eq!(
        records(&control, "t_manual").await,
        both("update_delete", "update_missing", ["parked"; 6])
    );
    assert_eq!(
        records(&control, "t_own").await,
        vec![
            rec(1, 1, "update_update", "local_kept", Some("1,bv1,w1")),
            rec(2, 1, "update_update", "incoming_applied", Some("1,a1,aw1")),
        ]
    );

    // A DBA takes A's version of row 2 on B's record: the parked change is
    // A's transaction's net row, and both sites end with it.
    control
        .batch_execute(
            "SELECT duplex.resolve_conflict(conflict_id, 'incoming') FROM duplex.conflicts
              WHERE table_name LIKE '%.t_manual' AND target_site = 2 AND row_key = 'id=2'",
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + t;
    loop {
        let (x, y) = (
            rows(&mut a, "t_manual").await,
            rows(&mut b, "t_manual").await,
        );
        if x.contains(&kv(2, "a2", "w2")) && y.contains(&kv(2, "a2", "w2")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the resolution never applied on both sites: {x:?} {y:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What duplex counts agrees with the records (a record withdrawn when a
    // later batch decided its row again is not counted).
    crate::support::assert_conflicts_counted(&control, &run).await;
    assert_eq!(
        query_i64(&control, "SELECT count(*) FROM duplex.quarantine").await,
        0,
        "changes quarantined"
    );
    run.shutdown().await;
}

crate::support::scenario_tests! {
    run_policies:
    same_key_transactions_meet_concurrent_changes_pg_pg(Engines::PgPg, 500);
    same_key_transactions_meet_concurrent_changes_pg18_pg(Engines::Pg18Pg, 500);
    /// Every change decided alone: a row's conflict is carried to its
    /// transaction's later changes (it was followed by them: a delete won over a
    /// concurrent write, a priority choice was made on part of the transaction,
    /// a forwarded version flowed back before the transaction's last word, and
    /// the sites parted).
    same_key_transactions_meet_concurrent_changes_pg_pg_batch_of_one(Engines::PgPg, 1);
    same_key_transactions_meet_concurrent_changes_mariadb_mariadb(Engines::MariaDbMariaDb, 500);
    /// As `..._pg_pg_batch_of_one`; on MySQL each statement also has its own
    /// version time.
    same_key_transactions_meet_concurrent_changes_mariadb_mariadb_batch_of_one(Engines::MariaDbMariaDb, 1);
    same_key_transactions_meet_concurrent_changes_pg_mariadb(Engines::PgMariaDb, 500);
}

/// The rows of `docs`, the payload by its digest (100 kB do not belong in a
/// message).
async fn docs(c: &tokio_postgres::Client) -> Vec<String> {
    crate::support::query_rows(
        c,
        "SELECT format('%s,%s,%s', id, v, md5(payload)) FROM docs ORDER BY id",
    )
    .await
}

/// Replica identity 'key' (an update sends no old image, a delete only the
/// key, an unchanged TOASTed value is not sent): an update and then a delete
/// of a row in one transaction deletes it on the peer (the delete was lost:
/// the net change looked like a row created and removed again), a delete and
/// re-insert of a row that holds both sites' versions is no conflict (it was
/// compared by the insert's vector alone and parked under manual), and two
/// updates that leave a TOASTed value alone keep it. Manual policy: any
/// false conflict would leave the sites apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_identity_transactions_pg_pg() {
    let pair = crate::support::Pair::start(
        "CREATE TABLE docs (id integer PRIMARY KEY, v integer, payload text);
         CREATE TABLE sentinel (id integer PRIMARY KEY);",
        &["docs", "sentinel"],
    )
    .await;
    let control = crate::support::connect(&pair.control_url).await;
    control
        .batch_execute(
            "UPDATE duplex.link_tables SET replica_identity = 'key', conflict_policy = 'manual'
              WHERE table_name = 'docs'",
        )
        .await
        .unwrap();
    let run = crate::support::start_synced(&pair.control_url).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let t = Duration::from_secs(30);
    a.batch_execute(
        "INSERT INTO docs VALUES (1, 1, repeat('y', 100000)), (2, 2, 'two'), (3, 3, 'three')",
    )
    .await
    .unwrap();
    wait_for("the rows on B", t, || {
        crate::support::query_bool(&b, "SELECT count(*) = 3 FROM docs")
    })
    .await;
    // Row 3 holds a version of each site.
    b.batch_execute("UPDATE docs SET v = 30 WHERE id = 3")
        .await
        .unwrap();
    wait_for("B's update on A", t, || {
        crate::support::query_bool(&a, "SELECT v = 30 FROM docs WHERE id = 3")
    })
    .await;
    for txn in [
        "UPDATE docs SET v = 11 WHERE id = 1; UPDATE docs SET v = 12 WHERE id = 1",
        "UPDATE docs SET v = 21 WHERE id = 2; DELETE FROM docs WHERE id = 2",
        "DELETE FROM docs WHERE id = 3; INSERT INTO docs VALUES (3, 33, 'again')",
    ] {
        a.batch_execute(&format!("BEGIN; {txn}; COMMIT"))
            .await
            .unwrap();
    }
    a.batch_execute("INSERT INTO sentinel VALUES (1)")
        .await
        .unwrap();
    wait_for("A's sentinel on B", t, || {
        crate::support::query_bool(&b, "SELECT count(*) = 1 FROM sentinel")
    })
    .await;
    let on_b = docs(&b).await;
    assert_eq!(docs(&a).await, on_b);
    assert!(
        crate::support::query_bool(
            &b,
            "SELECT array_agg(format('%s,%s,%s', id, v, payload) ORDER BY id)
                    = ARRAY['1,12,' || repeat('y', 100000), '3,33,again']
               FROM docs"
        )
        .await,
        "B's rows: {on_b:?}"
    );
    let conflicts = crate::support::texts(
        &control,
        "SELECT kind || ' ' || row_key || ' ' || outcome FROM duplex.conflicts ORDER BY 1",
    )
    .await;
    assert!(conflicts.is_empty(), "false conflicts: {conflicts:?}");
    run.shutdown().await;
}

/// A transaction replaces a parent row and its children (children deleted,
/// the parent deleted and inserted again, the children inserted again)
/// while the other site changes a child: the child's net change meets a
/// conflict. The target must apply it in an order its foreign key takes
/// (the child written in place of its delete kept referencing the parent
/// the transaction deletes next: the parent's delete and re-insert were
/// refused and quarantined, the sites apart).
async fn replace_parent_and_children(engines: Engines) {
    let sites = Sites::start(engines, PG_FK, MY_FK, &["parent", "child"]).await;
    let control_url = sites.control_url.as_str();
    let (mut a, mut b) = sites.connect().await;
    let control = crate::support::connect(control_url).await;
    let run = crate::support::start_synced(control_url).await;
    a.txn(&[
        "INSERT INTO parent (id, v) VALUES (1, 'p')".into(),
        "INSERT INTO child (id, parent_id, v) VALUES (1, 1, 'c1'), (2, 1, 'c2')".into(),
    ])
    .await;
    wait_same_fk(&mut a, &mut b, "the baseline on B").await;
    run.shutdown().await;

    a.txn(&[
        "DELETE FROM child WHERE parent_id = 1".into(),
        "DELETE FROM parent WHERE id = 1".into(),
        "INSERT INTO parent (id, v) VALUES (1, 'pa')".into(),
        "INSERT INTO child (id, parent_id, v) VALUES (1, 1, 'ca1'), (2, 1, 'ca2')".into(),
    ])
    .await;
    // Later: B's version of child 1 wins under last-writer-wins.
    b.txn(&["UPDATE child SET v = 'cb1' WHERE id = 1".into()])
        .await;

    let run = duplex::runner::start(control_url, PipelineTuning::default())
        .await
        .expect("restart duplex");
    wait_same_fk(&mut a, &mut b, "the sites converge").await;
    assert_eq!(
        fk_rows(&mut a).await,
        (
            vec![kv(1, "pa", "")],
            vec![kv(1, "1", "cb1"), kv(2, "1", "ca2")]
        )
    );
    let quarantined = crate::support::texts(
        &control,
        "SELECT table_name || ' ' || row_key || ': ' || reason FROM duplex.quarantine",
    )
    .await;
    assert!(quarantined.is_empty(), "quarantined: {quarantined:?}");
    let kinds: Vec<String> = control
        .query(
            "SELECT target_site || ' ' || table_name || ' ' || row_key || ' ' || kind || ' ' || outcome
               FROM duplex.conflicts WHERE confirmed ORDER BY target_site",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            // Without the schema (public on PostgreSQL, app on MariaDB).
            let s: String = r.get(0);
            s.replace("public.", "").replace("app.", "")
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "1 child id=1 update_update incoming_applied",
            "2 child id=1 update_update local_kept"
        ]
    );
    run.shutdown().await;
}

/// parent as (id, v, ""), child as (id, parent_id, v), [on PostgreSQL, on MariaDB].
const FK_ROWS: [[&str; 2]; 2] = [
    [
        "SELECT id::int8, v::text, ''::text FROM parent ORDER BY id",
        "SELECT CAST(id AS SIGNED), v, '' FROM parent ORDER BY id",
    ],
    [
        "SELECT id::int8, parent_id::text, v::text FROM child ORDER BY id",
        "SELECT CAST(id AS SIGNED), CAST(parent_id AS CHAR), v FROM child ORDER BY id",
    ],
];

async fn fk_rows(db: &mut Db) -> (Vec<Kv>, Vec<Kv>) {
    let [[pp, pm], [cp, cm]] = FK_ROWS;
    (db.rows(pp, pm).await, db.rows(cp, cm).await)
}

/// Poll until parent and child hold the same rows on both sites.
async fn wait_same_fk(a: &mut Db, b: &mut Db, what: &str) {
    site::wait_same::<Kv>(a, b, what, &FK_ROWS).await;
}

const PG_FK: &str = "CREATE TABLE parent (id integer PRIMARY KEY, v varchar(20));
    CREATE TABLE child (id integer PRIMARY KEY, parent_id integer NOT NULL REFERENCES parent (id), v varchar(20));";
const MY_FK: &str = "CREATE TABLE parent (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
    CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL, v VARCHAR(20),
                        FOREIGN KEY (parent_id) REFERENCES parent (id)) ENGINE=InnoDB;";

crate::support::scenario_tests! {
    replace_parent_and_children:
    parent_and_children_replaced_meet_a_child_change_pg_pg(Engines::PgPg);
    parent_and_children_replaced_meet_a_child_change_mariadb_mariadb(Engines::MariaDbMariaDb);
}

/// A statement the target refuses inside a transaction that changes its row
/// again (a value a constraint of the target refuses, set and then changed
/// in one transaction): the transaction's net row is written in its place
/// (row 2); where the target refuses that too (row 1), the quarantine
/// record holds the net row, so that the DBA's retry writes what the source
/// holds (the record was the refused statement's intermediate row, and the
/// retry wrote it over the transaction's last word: the sites parted after
/// the DBA's fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_statement_of_a_row_changed_again_is_retried_as_the_net_row() {
    let pair = crate::support::Pair::start(
        "CREATE TABLE codes (id integer PRIMARY KEY, note text);
         CREATE TABLE sentinel (id integer PRIMARY KEY);",
        &["codes", "sentinel"],
    )
    .await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    b.batch_execute(
        "ALTER TABLE codes ADD CONSTRAINT note_not_bad CHECK (note NOT IN ('bad', 'good'))",
    )
    .await
    .unwrap();
    let control = crate::support::connect(&pair.control_url).await;
    let run = crate::support::start_synced(&pair.control_url).await;
    let t = Duration::from_secs(30);
    a.batch_execute("INSERT INTO codes VALUES (2, 'two')")
        .await
        .unwrap();
    wait_for("row 2 on B", t, || {
        crate::support::query_bool(&b, "SELECT count(*) = 1 FROM codes")
    })
    .await;
    for txn in [
        "INSERT INTO codes VALUES (1, 'bad'); UPDATE codes SET note = 'good' WHERE id = 1",
        "UPDATE codes SET note = 'bad' WHERE id = 2; UPDATE codes SET note = 'fine' WHERE id = 2",
    ] {
        a.batch_execute(&format!("BEGIN; {txn}; COMMIT"))
            .await
            .unwrap();
    }
    a.batch_execute("INSERT INTO sentinel VALUES (1)")
        .await
        .unwrap();
    wait_for("A's sentinel on B", t, || {
        crate::support::query_bool(&b, "SELECT count(*) = 1 FROM sentinel")
    })
    .await;
    // Row 2 took its net row; row 1 waits in the quarantine, and the DBA
    // fixes the target and retries every record.
    assert!(
        !crate::support::query_bool(&b, "SELECT EXISTS (SELECT 1 FROM codes WHERE id = 1)").await
    );
    assert!(
        crate::support::query_bool(
            &b,
            "SELECT EXISTS (SELECT 1 FROM codes WHERE id = 2 AND note = 'fine')"
        )
        .await
    );
    b.batch_execute("ALTER TABLE codes DROP CONSTRAINT note_not_bad")
        .await
        .unwrap();
    control
        .batch_execute("SELECT duplex.retry_quarantined(quarantine_id) FROM duplex.quarantine")
        .await
        .unwrap();
    wait_for("the records retried", t, || {
        crate::support::query_bool(
            &control,
            "SELECT bool_and(status = 'retried') FROM duplex.quarantine",
        )
    })
    .await;
    assert_eq!(
        crate::support::table_rows(&a, "codes").await,
        crate::support::table_rows(&b, "codes").await
    );
    // What the records hold: the transactions' final rows.
    let records: Vec<(String, String)> = control
        .query(
            "SELECT row_key, change->'after'->'note'->>'value' FROM duplex.quarantine ORDER BY row_key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default()))
        .collect();
    assert_eq!(records, vec![("id=1".to_string(), "good".to_string())]);
    run.shutdown().await;
}
