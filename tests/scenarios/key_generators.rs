//! Key generators that collide: both sites generate a synced table's key
//! from the same values (the defaults of a sequence or of auto_increment).
//! `duplex config check` finds it and says what to do, `duplex keys
//! interleave` does it (or says what a person must: MySQL's settings are
//! the server's), and then inserts on both sites meet no conflict.

use crate::support::site::{wait_same, Engines, Sites};
use crate::support::{connect, duplex_cli, query_i64};

// `u`'s sequence is only named in its default (not OWNED BY the column),
// as in older and converted schemas.
const PG: &str = "CREATE TABLE t (id serial PRIMARY KEY, note text);
    CREATE SEQUENCE u_seq;
    CREATE TABLE u (id bigint PRIMARY KEY DEFAULT nextval('u_seq'), note text);";
const MY: &str = "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT);
    CREATE TABLE u (id BIGINT AUTO_INCREMENT PRIMARY KEY, note TEXT);";

async fn run(engines: Engines) {
    let sites = Sites::start(engines, PG, MY, &["t", "u"]).await;
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
    assert!(
        out.contains("table public.u: both sites generate key id"),
        "a sequence named only in the key's default counts too: {out}"
    );

    // Rows already there on both sites: the new values start above them.
    let (mut a, mut b) = sites.connect().await;
    a.exec("INSERT INTO t (note) VALUES ('a before'), ('a before')")
        .await;
    b.exec("INSERT INTO t (id, note) VALUES (900, 'b before')")
        .await;

    let (_, out) = duplex_cli(
        &sites.control_url,
        &["keys", "interleave", "--link", "l", "--dry-run"],
    );
    assert!(
        out.contains("would run: ALTER SEQUENCE"),
        "the dry run says what it would do: {out}"
    );
    let (ok, out) = duplex_cli(&sites.control_url, &["keys", "interleave", "--link", "l"]);
    if b.is_pg() {
        assert!(ok, "both sequences altered: {out}");
        assert!(
            out.contains("done: ALTER SEQUENCE public.t_id_seq INCREMENT BY 2 RESTART WITH 901"),
            "{out}"
        );
        assert!(
            out.contains("done: ALTER SEQUENCE public.t_id_seq INCREMENT BY 2 RESTART WITH 902"),
            "{out}"
        );
    } else {
        // The server settings are the DBA's (my.cnf): what to put there is said.
        assert!(!ok, "a step is left for a person: {out}");
        assert!(out.contains("auto_increment_increment = 2"), "{out}");
        assert!(out.contains("auto_increment_offset = 2"), "{out}");
        b.exec("SET GLOBAL auto_increment_increment = 2, GLOBAL auto_increment_offset = 2")
            .await;
    }
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
    assert_eq!(a.count("SELECT count(*) FROM t").await, 43);
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
