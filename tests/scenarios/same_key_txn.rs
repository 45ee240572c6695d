//! Several statements on one key inside one source transaction, the shapes
//! real applications write (sysbench's `oltp_read_write` deletes a row and
//! inserts the same key again in every transaction; upserts; key updates),
//! on every engine pair and in both directions. Each shape runs on its own
//! keys, so nothing is concurrent: both sites must end with the same rows,
//! compared by plain SQL (not duplex's code), with no conflict and nothing
//! quarantined.

use std::time::Duration;

use crate::support::site::{Db, Engines, Sites};
use duplex::pipeline::PipelineTuning;

const PG_SCHEMA: &str =
    "CREATE TABLE kv (id integer PRIMARY KEY, v integer, note varchar(40) NOT NULL DEFAULT '')";
const MY_SCHEMA: &str = "CREATE TABLE kv (id INT PRIMARY KEY, v INT NULL, note VARCHAR(40) NOT NULL DEFAULT '') CHARACTER SET utf8mb4 COLLATE utf8mb4_bin";

async fn rows(db: &mut Db) -> Vec<(i64, Option<i64>, String)> {
    db.rows(
        "SELECT id::int8, v::int8, note::text FROM kv ORDER BY id",
        "SELECT CAST(id AS SIGNED), CAST(v AS SIGNED), note FROM kv ORDER BY id",
    )
    .await
}

async fn has(db: &mut Db, id: i64) -> bool {
    db.count(&format!("SELECT count(*) FROM kv WHERE id = {id}"))
        .await
        == 1
}

/// The transactions of every shape, on keys from `base` (each shape its own
/// ten keys). The rows the shapes start from are inserted first, in their
/// own transactions.
fn shapes(base: i64, pg: bool) -> (Vec<String>, Vec<Vec<String>>) {
    let k = |i: i64| base + i;
    let seed: Vec<String> = [0, 10, 20, 30, 40, 50, 60, 70, 90, 100, 110]
        .iter()
        .map(|&i| format!("INSERT INTO kv (id, v, note) VALUES ({}, 0, 'seed')", k(i)))
        .collect();
    let upsert = |id: i64, v: i64| {
        if pg {
            format!("INSERT INTO kv (id, v, note) VALUES ({id}, {v}, 'upsert') ON CONFLICT (id) DO UPDATE SET v = excluded.v, note = 'upserted'")
        } else {
            format!("INSERT INTO kv (id, v, note) VALUES ({id}, {v}, 'upsert') ON DUPLICATE KEY UPDATE v = VALUES(v), note = 'upserted'")
        }
    };
    let mut txns = vec![
        // delete + insert of the same key (sysbench oltp_read_write)
        vec![
            format!("DELETE FROM kv WHERE id = {}", k(0)),
            format!(
                "INSERT INTO kv (id, v, note) VALUES ({}, 1, 'reinserted')",
                k(0)
            ),
        ],
        // insert + delete
        vec![
            format!("INSERT INTO kv (id, v, note) VALUES ({}, 1, 'gone')", k(1)),
            format!("DELETE FROM kv WHERE id = {}", k(1)),
        ],
        // insert + update
        vec![
            format!("INSERT INTO kv (id, v, note) VALUES ({}, 1, 'new')", k(2)),
            format!(
                "UPDATE kv SET v = 2, note = 'new then updated' WHERE id = {}",
                k(2)
            ),
        ],
        // update + update
        vec![
            format!("UPDATE kv SET v = 1 WHERE id = {}", k(10)),
            format!(
                "UPDATE kv SET v = v + 1, note = 'twice' WHERE id = {}",
                k(10)
            ),
        ],
        // update, another key, update again (not adjacent)
        vec![
            format!("UPDATE kv SET v = 1 WHERE id = {}", k(20)),
            format!("UPDATE kv SET v = 7 WHERE id = {}", k(30)),
            format!(
                "UPDATE kv SET v = v + 1, note = 'apart' WHERE id = {}",
                k(20)
            ),
        ],
        // update of the primary key, then of the moved row
        vec![
            format!("UPDATE kv SET id = {} WHERE id = {}", k(41), k(40)),
            format!("UPDATE kv SET v = 5, note = 'moved' WHERE id = {}", k(41)),
        ],
        // delete + insert + update + delete + insert
        vec![
            format!("DELETE FROM kv WHERE id = {}", k(50)),
            format!("INSERT INTO kv (id, v, note) VALUES ({}, 1, 'x')", k(50)),
            format!("UPDATE kv SET v = 2 WHERE id = {}", k(50)),
            format!("DELETE FROM kv WHERE id = {}", k(50)),
            format!("INSERT INTO kv (id, v, note) VALUES ({}, 3, 'last')", k(50)),
        ],
        // update then delete
        vec![
            format!("UPDATE kv SET v = 9 WHERE id = {}", k(60)),
            format!("DELETE FROM kv WHERE id = {}", k(60)),
        ],
        // upsert of a new key, then of the same key (the engine's own kind)
        vec![upsert(k(3), 1), upsert(k(3), 2)],
        // upsert over an existing row, twice
        vec![upsert(k(70), 4), upsert(k(70), 5)],
        // a key moved away and another row moved into it
        vec![
            format!("UPDATE kv SET id = {} WHERE id = {}", k(91), k(90)),
            format!("UPDATE kv SET id = {} WHERE id = {}", k(90), k(100)),
            format!("UPDATE kv SET note = 'took the key' WHERE id = {}", k(90)),
        ],
        // delete + insert of the same key, several keys in one transaction
        (0..4)
            .flat_map(|i| {
                [
                    format!("DELETE FROM kv WHERE id = {}", k(110)),
                    format!(
                        "INSERT INTO kv (id, v, note) VALUES ({}, {i}, 'round {i}')",
                        k(110)
                    ),
                ]
            })
            .collect(),
    ];
    if !pg {
        // REPLACE: a new key, then over the existing row (logged as a delete
        // and an insert, or an update).
        txns.push(vec![
            format!("REPLACE INTO kv (id, v, note) VALUES ({}, 1, 'r1')", k(4)),
            format!("REPLACE INTO kv (id, v, note) VALUES ({}, 2, 'r2')", k(4)),
        ]);
    }
    (seed, txns)
}

async fn wait_row(db: &mut Db, id: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !has(db, id).await {
        assert!(
            std::time::Instant::now() < deadline,
            "row {id} never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `batch_rows`: the applier decides this many changes at a time (1: every
/// statement of a transaction alone, as in a transaction longer than a batch).
async fn run_pair(engines: Engines, batch_rows: usize) {
    let sites = Sites::start(engines, PG_SCHEMA, MY_SCHEMA, &["kv"]).await;
    let control_url = sites.control_url.as_str();
    let (a, b) = sites.connect().await;
    let (mut a2, mut b2) = sites.connect().await;
    let tuning = PipelineTuning {
        max_batch_rows: batch_rows,
        ..PipelineTuning::default()
    };
    let run = duplex::runner::start(control_url, tuning)
        .await
        .expect("start duplex");
    crate::support::wait_initial_sync_all(control_url).await;
    let (mut a, mut b) = (a, b);
    // Site a writes keys from 1000, site b from 2000: nothing concurrent.
    // The rows the shapes start from were written on both sites (their
    // versions carry both sites' entries, as rows of a running link do).
    for (db, peer, base) in [(&mut a, &mut b2, 1000), (&mut b, &mut a2, 2000)] {
        let (seed, _) = shapes(base, db.is_pg());
        for s in seed {
            db.txn(&[s]).await;
        }
        db.txn(&[format!(
            "INSERT INTO kv (id, v, note) VALUES ({}, 0, 'seeded')",
            base + 997
        )])
        .await;
        wait_row(peer, base + 997).await;
        peer.txn(&[
            format!(
                "UPDATE kv SET v = v WHERE id BETWEEN {base} AND {}",
                base + 200
            ),
            format!(
                "INSERT INTO kv (id, v, note) VALUES ({}, 0, 'touched')",
                base + 998
            ),
        ])
        .await;
    }
    for (db, base) in [(&mut a, 1000), (&mut b, 2000)] {
        wait_row(db, base + 998).await;
        let (_, txns) = shapes(base, db.is_pg());
        for t in txns {
            db.txn(&t).await;
        }
        // The last transaction's sentinel: everything before it has arrived
        // once it has.
        db.txn(&[format!(
            "INSERT INTO kv (id, v, note) VALUES ({}, 0, 'sentinel')",
            base + 999
        )])
        .await;
    }
    for (db, id) in [(&mut b2, 1999), (&mut a2, 2999)] {
        wait_row(db, id).await;
    }
    let (ra, rb) = (rows(&mut a).await, rows(&mut b).await);
    assert_eq!(ra, rb, "the sites differ");
    // What each shape must leave (checked on site a's own keys and b's).
    for base in [1000, 2000] {
        let row = |id: i64| ra.iter().find(|r| r.0 == id).cloned();
        assert_eq!(row(base), Some((base, Some(1), "reinserted".into())));
        assert_eq!(row(base + 1), None);
        assert_eq!(
            row(base + 2),
            Some((base + 2, Some(2), "new then updated".into()))
        );
        assert_eq!(row(base + 10), Some((base + 10, Some(2), "twice".into())));
        assert_eq!(row(base + 20), Some((base + 20, Some(2), "apart".into())));
        assert_eq!(row(base + 40), None);
        assert_eq!(row(base + 41), Some((base + 41, Some(5), "moved".into())));
        assert_eq!(row(base + 50), Some((base + 50, Some(3), "last".into())));
        assert_eq!(row(base + 60), None);
        assert_eq!(row(base + 3), Some((base + 3, Some(2), "upserted".into())));
        assert_eq!(
            row(base + 70),
            Some((base + 70, Some(5), "upserted".into()))
        );
        assert_eq!(
            row(base + 90),
            Some((base + 90, Some(0), "took the key".into()))
        );
        assert_eq!(row(base + 91), Some((base + 91, Some(0), "seed".into())));
        assert_eq!(row(base + 100), None);
        assert_eq!(
            row(base + 110),
            Some((base + 110, Some(3), "round 3".into()))
        );
    }
    let control = crate::support::connect(control_url).await;
    let conflicts = crate::support::texts(
        &control,
        "SELECT kind || ' ' || table_name || ' ' || row_key FROM duplex.conflicts ORDER BY 1",
    )
    .await;
    assert!(conflicts.is_empty(), "false conflicts: {conflicts:?}");
    let quarantined =
        crate::support::query_i64(&control, "SELECT count(*) FROM duplex.quarantine").await;
    assert_eq!(quarantined, 0, "changes quarantined");
    run.shutdown().await;
}

crate::support::scenario_tests! {
    run_pair:
    same_key_statements_pg_pg(Engines::PgPg, 500);
    same_key_statements_pg18_pg(Engines::Pg18Pg, 500);
    same_key_statements_mariadb_mariadb(Engines::MariaDbMariaDb, 500);
    /// Every statement decided alone: the path of a row changed again after
    /// more than a batch of other changes in one long transaction.
    same_key_statements_mariadb_mariadb_batch_of_one(Engines::MariaDbMariaDb, 1);
    same_key_statements_pg_mariadb(Engines::PgMariaDb, 500);
}
