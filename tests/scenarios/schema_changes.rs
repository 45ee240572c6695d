//! Schema changes made while the application writes on both sites: a column
//! added on both sites (in either order), added on one site only, dropped on
//! one site. A change both sites can take is picked up by itself; a
//! one-sided one holds only its table's changes, in order, and the rest of
//! the link flows; once the other site matches, the held changes are
//! applied by themselves. Nothing is lost: the sites are compared row by
//! row at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};


use crate::support::site::{wait_same, Db, Endpoint, Engines, Sites};
use crate::support::{connect, query_i64, wait_for};

const PG: &str = "CREATE TABLE t (id int PRIMARY KEY, note text);
    CREATE TABLE u (id int PRIMARY KEY, note text);";
const MY: &str = "CREATE TABLE t (id int PRIMARY KEY, note text);
    CREATE TABLE u (id int PRIMARY KEY, note text);";
const T: Duration = Duration::from_secs(60);

/// An application writing on one site until told to stop: each transaction
/// inserts a row of `t`, updates it in the same transaction (two statements
/// on one key), and inserts a row of `u`. Keys `base + 2i`: the two sites'
/// writers never meet on a key. Returns how many transactions committed.
struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<i64>,
}

impl Writer {
    fn start(site: Endpoint, base: i64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut db = site.connect().await;
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                let id = base + 2 * i;
                db.txn(&[
                    format!("INSERT INTO t (id, note) VALUES ({id}, 'w{id}')"),
                    format!("UPDATE t SET note = 'w{id}+' WHERE id = {id}"),
                    format!("INSERT INTO u (id, note) VALUES ({id}, 'w{id}')"),
                ])
                .await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            i
        });
        Writer { stop, task }
    }

    async fn stop(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer")
    }
}

/// Both sites' rows of `t` (with its column `extra`) and `u`, equal.
async fn wait_equal(a: &mut Db, b: &mut Db) {
    wait_same::<(i32, Option<String>, Option<i32>)>(
        a,
        b,
        "both sites' rows of t",
        &[["SELECT id, note, extra FROM t ORDER BY id"; 2]],
    )
    .await;
    wait_same::<(i32, Option<String>)>(
        a,
        b,
        "both sites' rows of u",
        &[["SELECT id, note FROM u ORDER BY id"; 2]],
    )
    .await;
}

/// A row written on `from` reaches `to`.
async fn flows(from: &mut Db, to: &mut Db, table: &str, id: i64) -> Duration {
    let started = Instant::now();
    from.exec(&format!("INSERT INTO {table} (id, note) VALUES ({id}, 'probe')"))
        .await;
    let sql = format!("SELECT count(*) FROM {table} WHERE id = {id}");
    let deadline = Instant::now() + T;
    while to.count(&sql).await == 0 {
        assert!(Instant::now() < deadline, "row {id} of {table} did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// A column added on one site, written there, then added on the other:
/// `t`'s changes from the first site wait for it, in order, while `u`
/// flows; then they are applied by themselves.
async fn added_on_one_then_the_other(engines: Engines) {
    let sites = Sites::start(engines, PG, MY, &["t", "u"]).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    let wa = Writer::start(sites.servers[0].endpoint(), 1_000);
    let wb = Writer::start(sites.servers[1].endpoint(), 1_001);
    tokio::time::sleep(Duration::from_millis(500)).await;

    a.exec("ALTER TABLE t ADD COLUMN extra int").await;
    a.exec("INSERT INTO t (id, note, extra) VALUES (1, 'one', 11)").await;
    a.exec("UPDATE t SET extra = 7 WHERE id = 1000").await;
    // The rest of the link flows, both ways.
    let took = flows(&mut a, &mut b, "u", 1).await;
    eprintln!("u flows a -> b while t waits: {took:?}");
    flows(&mut b, &mut a, "u", 2).await;
    flows(&mut b, &mut a, "t", 2).await;
    assert_eq!(b.count("SELECT count(*) FROM t WHERE id = 1").await, 0);

    let control = connect(&sites.control_url).await;
    wait_for("the held table shown", T, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.table_overview WHERE table_name LIKE '%.t' AND held_for_shape
                AND shape_difference LIKE '%column extra%'",
        )
        .await
            == 1
    })
    .await;

    let altered = Instant::now();
    b.exec("ALTER TABLE t ADD COLUMN extra int").await;
    wait_for("row 1 with its new column on b", T, || async {
        let (_, mut b) = sites.connect().await;
        b.count("SELECT count(*) FROM t WHERE id = 1 AND extra = 11").await == 1
    })
    .await;
    eprintln!("t streams again {:?} after the second ALTER", altered.elapsed());
    let (na, nb) = (wa.stop().await, wb.stop().await);
    wait_equal(&mut a, &mut b).await;
    assert_eq!(
        a.count("SELECT count(*) FROM u").await,
        na + nb + 2,
        "every row of both writers, once"
    );
    assert_eq!(
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.quarantine WHERE status IN ('pending', 'held', 'retry')"
        )
        .await,
        0,
        "nothing quarantined row by row, nothing held any more"
    );
    let conflicts = crate::support::texts(
        &control,
        "SELECT concat_ws(' ', source_site, table_name, row_key, kind, outcome, local_version, incoming_version) FROM duplex.conflicts",
    )
    .await;
    assert!(conflicts.is_empty(), "no conflict: {conflicts:?}");
    run.shutdown().await;
}

crate::support::scenario_tests! {
    added_on_one_then_the_other:
    a_column_added_on_one_site_then_the_other_postgresql(Engines::PgPg);
    a_column_added_on_one_site_then_the_other_across_engines(Engines::PgMariaDb);
}
