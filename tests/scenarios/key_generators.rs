//! Key generators that collide: both sites generate a synced table's key
//! from the same values (the defaults of a sequence or of auto_increment).
//! `duplex config check` finds it and says what to do; once each site has
//! its own values, inserts on both sites meet no conflict.

use crate::support::site::{wait_same, Db, Engines, Sites};
use crate::support::{connect, duplex_cli, query_i64};

const PG: &str = "CREATE TABLE t (id serial PRIMARY KEY, note text);";
const MY: &str = "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT);";

/// Give each site its own values: odd keys on the first, even on the
/// second, above what either holds.
async fn interleave(db: &mut Db, first: bool) {
    let start = if first { 1001 } else { 1002 };
    if db.is_pg() {
        db.exec(&format!(
            "ALTER SEQUENCE t_id_seq INCREMENT BY 2 RESTART WITH {start}"
        ))
        .await;
    } else {
        // Server settings (my.cnf in production), for new sessions.
        db.exec(&format!(
            "SET GLOBAL auto_increment_increment = 2, GLOBAL auto_increment_offset = {}",
            if first { 1 } else { 2 }
        ))
        .await;
        db.exec(&format!("ALTER TABLE t AUTO_INCREMENT = {start}"))
            .await;
    }
}

async fn run(engines: Engines) {
    let sites = Sites::start(engines, PG, MY, &["t"]).await;
    let (ok, out) = duplex_cli(&sites.control_url, &["config", "check"]);
    assert!(ok, "config check: {out}");
    assert!(
        out.contains("both sites generate key id from overlapping values"),
        "the collision is found: {out}"
    );
    assert!(
        out.contains("give each site its own values"),
        "and what to do: {out}"
    );

    let (mut a, mut b) = sites.connect().await;
    interleave(&mut a, true).await;
    interleave(&mut b, false).await;
    let (ok, out) = duplex_cli(&sites.control_url, &["config", "check"]);
    assert!(ok, "config check: {out}");
    assert!(
        !out.contains("overlapping values"),
        "interleaved: no collision left: {out}"
    );

    // Inserts on both sites at once, each taking its site's next key.
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    for i in 0..20 {
        let (ia, ib) = (
            format!("INSERT INTO t (note) VALUES ('a{i}')"),
            format!("INSERT INTO t (note) VALUES ('b{i}')"),
        );
        let (ra, rb) = tokio::join!(a.try_exec(&ia), b.try_exec(&ib));
        ra.expect("insert on a");
        rb.expect("insert on b");
    }
    wait_same::<(i32, Option<String>)>(
        &mut a,
        &mut b,
        "the rows of both sites",
        &[["SELECT id, note FROM t ORDER BY id"; 2]],
    )
    .await;
    assert_eq!(a.count("SELECT count(*) FROM t").await, 40);
    let control = connect(&sites.control_url).await;
    assert_eq!(
        query_i64(&control, "SELECT count(*) FROM duplex.conflicts").await,
        0,
        "no key taken twice"
    );
    run.shutdown().await;
}

crate::support::scenario_tests! {
    run:
    colliding_sequences_are_found_and_interleaved_postgresql(Engines::PgPg);
    colliding_key_generators_are_found_across_engines(Engines::PgMariaDb);
}
