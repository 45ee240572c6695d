//! `duplex resync` (`runner::resync`): a link back from a source position
//! that is gone (a purged binlog; the invalidated slot is in
//! `operator_errors`), and a table back to equal, with nothing lost that
//! either site still holds. The running duplex does the copying.

use std::time::Duration;

use crate::support::site::{Db, Engines, Sites};
use crate::support::{connect, duplex_cli, start_synced, texts, wait_for};

const SCHEMA: &str = "CREATE TABLE item (id int PRIMARY KEY, note text);";
const T: Duration = Duration::from_secs(120);

/// The MariaDB site purges the binlog holding its peer's position while
/// duplex is stopped: the direction waits for an operator, and
/// `duplex resync` brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_binlog_is_resynced_into_a_mariadb_peer() {
    purged_binlog(Engines::MariaDbMariaDb, 0).await;
}

/// The same into a PostgreSQL peer, whose position is its replication
/// origin's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_binlog_is_resynced_into_a_postgres_peer() {
    purged_binlog(Engines::PgMariaDb, 1).await;
}

/// `binlog_site`: the index of the MariaDB site whose binlog is purged.
async fn purged_binlog(engines: Engines, binlog_site: usize) {
    let sites = Sites::start(engines, SCHEMA, SCHEMA, &["item"]).await;
    let control = connect(&sites.control_url).await;
    let connect_pair = || async {
        let (a, b) = sites.connect().await;
        if binlog_site == 0 {
            (a, b)
        } else {
            (b, a)
        }
    };
    // `src`: the MariaDB site; `dst`: its peer.
    let (mut src, mut dst) = connect_pair().await;
    let source_name = texts(
        &control,
        &format!(
            "SELECT name FROM duplex.sites WHERE site_id = {}",
            binlog_site + 1
        ),
    )
    .await
    .concat();

    let run = start_synced(&sites.control_url).await;
    src.exec("INSERT INTO item VALUES (1, 'before'), (5, 'deleted while lost')")
        .await;
    wait_for("rows 1 and 5 on the peer", T, || async {
        let (_, mut dst) = connect_pair().await;
        dst.count("SELECT count(*) FROM item").await == 2
    })
    .await;
    run.shutdown().await;

    // Stopped: the source writes, then purges every binlog but the newest.
    src.exec("UPDATE item SET note = 'changed while lost' WHERE id = 1")
        .await;
    src.exec("DELETE FROM item WHERE id = 5").await;
    src.exec("INSERT INTO item VALUES (10, 'while lost'), (11, 'while lost')")
        .await;
    src.exec("FLUSH BINARY LOGS").await;
    let newest: Vec<(String, i64)> = src.query("SHOW BINARY LOGS").await;
    let newest = newest.last().expect("a binlog").0.clone();
    // A file a replica's dump thread still reads is not purged: the one
    // duplex read from goes once the server has noticed it left.
    wait_for("every older binlog purged", T, || async {
        let (mut src, _) = connect_pair().await;
        src.exec(&format!("PURGE BINARY LOGS TO '{newest}'")).await;
        let logs: Vec<(String, i64)> = src.query("SHOW BINARY LOGS").await;
        logs.len() == 1
    })
    .await;

    let run = duplex::runner::start(
        &sites.control_url,
        duplex::pipeline::PipelineTuning::default(),
    )
    .await
    .expect("start duplex");
    let from_src = format!(
        "SELECT state, coalesce(error, '') FROM duplex.link_overview WHERE source = '{source_name}'"
    );
    wait_for("the direction needs an operator", T, || async {
        let row = control.query_one(&from_src, &[]).await.unwrap();
        row.get::<_, String>(0) == "needs_operator"
    })
    .await;
    let error: String = control.query_one(&from_src, &[]).await.unwrap().get(1);
    assert!(
        error.contains("`duplex resync --link l`"),
        "the fix names the resync: {error}"
    );

    let (ok, out) = duplex_cli(
        &sites.control_url,
        &["resync", "--link", "l", "--wait", "120"],
    );
    assert!(
        ok && out.contains("position reset") && out.contains("every copy is done"),
        "duplex resync: {out}"
    );
    wait_for("the direction streams again", T, || async {
        let row = control.query_one(&from_src, &[]).await.unwrap();
        row.get::<_, String>(0) == "streaming"
    })
    .await;
    src.exec("INSERT INTO item VALUES (3, 'after the resync')")
        .await;
    wait_for("row 3 on the peer", T, || async {
        let (_, mut dst) = connect_pair().await;
        dst.count("SELECT count(*) FROM item WHERE id = 3").await == 1
    })
    .await;
    run.shutdown().await;

    // Rows 1 (changed), 3, 10, 11, and row 5: deleted on the source while
    // its position was lost, still on the peer, so kept on both.
    for db in [&mut src, &mut dst] {
        assert_eq!(
            ids_and_notes(db).await,
            vec![
                "1 changed while lost".to_string(),
                "3 after the resync".into(),
                "5 deleted while lost".into(),
                "10 while lost".into(),
                "11 while lost".into(),
            ]
        );
    }
    let (ok, out) = duplex_cli(&sites.control_url, &["check"]);
    assert!(ok, "duplex check after the resync: {out}");
}

async fn ids_and_notes(db: &mut Db) -> Vec<String> {
    db.rows(
        "SELECT id::text || ' ' || note FROM item ORDER BY id",
        "SELECT CONCAT(id, ' ', note) FROM item ORDER BY id",
    )
    .await
}

/// A healthy link: a row one site held before the link, which was told the
/// sites start equal (`initial_sync` off), reaches the peer
/// by `duplex resync --table`, without touching the link's positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_resync_copies_what_no_stream_carried() {
    let sites = Sites::start(
        Engines::PgPg,
        &format!("{SCHEMA} CREATE TABLE other (id int PRIMARY KEY);"),
        "",
        &["item", "other"],
    )
    .await;
    let control = connect(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    // B held row 2 before the link, which was told the sites start equal
    // (no initial sync): no stream or copy carries it.
    control
        .batch_execute(
            "UPDATE duplex.link_tables SET initial_sync = false WHERE table_name = 'item'",
        )
        .await
        .expect("no initial sync of item");
    b.exec("INSERT INTO item VALUES (2, 'held before the link')")
        .await;
    let run = start_synced(&sites.control_url).await;
    a.exec("INSERT INTO item VALUES (1, 'streamed')").await;
    b.exec("INSERT INTO item VALUES (3, 'streamed')").await;
    wait_for("rows 1 and 3 on both", T, || async {
        let (mut a, mut b) = sites.connect().await;
        a.count("SELECT count(*) FROM item WHERE id IN (1, 3)")
            .await
            == 2
            && b.count("SELECT count(*) FROM item WHERE id IN (1, 3)")
                .await
                == 2
    })
    .await;
    assert_eq!(a.count("SELECT count(*) FROM item WHERE id = 2").await, 0);
    let b_pg = connect(&sites.servers[1].url()).await;
    let other_copies = "SELECT started_at::text FROM duplex.snapshot_progress WHERE table_name = 'public.other' ORDER BY source_site";
    let others_before = texts(&control, other_copies).await;
    let slots_before = texts(
        &b_pg,
        "SELECT slot_name || ' ' || restart_lsn FROM pg_replication_slots ORDER BY 1",
    )
    .await;

    let (ok, out) = duplex_cli(
        &sites.control_url,
        &["resync", "--link", "l", "--table", "item", "--wait", "120"],
    );
    assert!(
        ok && out.contains("nothing reset") && out.contains("every copy is done"),
        "duplex resync --table: {out}"
    );
    assert_eq!(a.count("SELECT count(*) FROM item WHERE id = 2").await, 1);
    // Only the table asked for was copied again; the slot is the same one.
    assert_eq!(texts(&control, other_copies).await, others_before);
    let slots_after = texts(
        &b_pg,
        "SELECT slot_name || ' ' || restart_lsn FROM pg_replication_slots ORDER BY 1",
    )
    .await;
    assert_eq!(
        slots_before
            .iter()
            .map(|s| s.split(' ').next())
            .collect::<Vec<_>>(),
        slots_after
            .iter()
            .map(|s| s.split(' ').next())
            .collect::<Vec<_>>(),
        "the slot is kept"
    );
    assert!(!slots_after.is_empty());
    // Streaming goes on.
    b.exec("INSERT INTO item VALUES (4, 'streamed after the resync')")
        .await;
    wait_for("row 4 on a", T, || async {
        let (mut a, _) = sites.connect().await;
        a.count("SELECT count(*) FROM item WHERE id = 4").await == 1
    })
    .await;
    run.shutdown().await;
    let (ok, out) = duplex_cli(&sites.control_url, &["check"]);
    assert!(ok, "duplex check after the resync: {out}");
}

/// Write WAL on `pg` until `slot` is invalidated (`max_slot_wal_keep_size`
/// of 1MB), each round inserting one row of `item`.
async fn invalidate_slot(pg: &tokio_postgres::Client, slot: &str) {
    let lost =
        format!("SELECT wal_status = 'lost' FROM pg_replication_slots WHERE slot_name = '{slot}'");
    for i in 0..40 {
        pg.batch_execute(&format!(
            "INSERT INTO item VALUES ({}, 'filler'); SELECT pg_switch_wal(); CHECKPOINT;",
            100 + i
        ))
        .await
        .expect("write WAL");
        if crate::support::query_bool(pg, &lost).await {
            return;
        }
    }
    panic!("slot {slot} was not invalidated");
}

fn small_wal() -> duplex::localdb::pg::LocalPgOptions {
    duplex::localdb::pg::LocalPgOptions {
        extra_conf: vec![("max_slot_wal_keep_size".into(), "1MB".into())],
        ..Default::default()
    }
}

/// A resync that cannot make every reset (here `--new-position` while the
/// other direction streams from its slot) changes nothing: a half-made one
/// (A's lost slot dropped and B's progress reset, nothing copied) would let
/// the next start skip what A wrote meanwhile. The plain resync then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resync_changes_nothing() {
    let pair = crate::support::Pair::start_with(
        SCHEMA,
        &["item"],
        small_wal(),
        crate::support::SiteSecurity::default(),
    )
    .await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    let control = connect(&pair.control_url).await;
    let run = start_synced(&pair.control_url).await;
    a.batch_execute("INSERT INTO item VALUES (1, 'before')")
        .await
        .unwrap();
    wait_for("row 1 on b", T, || async {
        crate::support::query_i64(&b, "SELECT count(*) FROM item").await == 1
    })
    .await;
    run.shutdown().await;
    a.batch_execute("INSERT INTO item VALUES (10, 'while lost')")
        .await
        .unwrap();
    invalidate_slot(&a, "duplex_l1_s1").await;
    let run = duplex::runner::start(
        &pair.control_url,
        duplex::pipeline::PipelineTuning::default(),
    )
    .await
    .expect("start duplex");
    let state = |source: &'static str| {
        let control = &control;
        async move {
            texts(
                control,
                &format!("SELECT state FROM duplex.link_overview WHERE source = '{source}'"),
            )
            .await
            .concat()
        }
    };
    wait_for("a -> b needs an operator, b -> a streams", T, || async {
        state("a").await == "needs_operator" && state("b").await == "streaming"
    })
    .await;
    let slots = "SELECT string_agg(slot_name, ' ' ORDER BY slot_name) FROM pg_replication_slots";
    // Names and progress: a drop rolled back would keep the names only.
    let origins = "SELECT string_agg(roname || ' ' || coalesce(pg_replication_origin_progress(roname, false)::text, 'none'), ' ' ORDER BY roname) FROM pg_replication_origin";
    let before = (texts(&a, slots).await, texts(&b, origins).await);

    let (ok, out) = duplex_cli(
        &pair.control_url,
        &["resync", "--link", "ab", "--new-position", "--wait", "30"],
    );
    assert!(
        !ok && out.contains("is in use") && out.contains("Nothing was changed"),
        "refused, saying why: {out}"
    );
    assert_eq!(
        (texts(&a, slots).await, texts(&b, origins).await),
        before,
        "the refused resync dropped a slot or reset an origin"
    );
    assert_eq!(
        texts(
            &control,
            "SELECT resync_requests::text || ' ' || (SELECT count(*) FROM duplex.snapshot_progress WHERE state = 'copying')::text FROM duplex.links"
        )
        .await,
        vec!["0 0".to_string()]
    );

    let (ok, out) = duplex_cli(
        &pair.control_url,
        &["resync", "--link", "ab", "--wait", "120"],
    );
    assert!(ok && out.contains("every copy is done"), "{out}");
    wait_for("row 10 on b", T, || async {
        crate::support::query_i64(&b, "SELECT count(*) FROM item WHERE id = 10").await == 1
    })
    .await;
    run.shutdown().await;
}

/// A PostgreSQL site's slot dropped while duplex was stopped, its peer a
/// MariaDB site that had applied changes from it: the link refuses to start
/// on a new slot (which would skip the rows written meanwhile) and names
/// the resync; a resync with duplex stopped says it does not wait and what
/// to do after the copies; once duplex runs, the rows arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_slot_is_noticed_against_a_mariadb_peer() {
    let sites = Sites::start(Engines::PgMariaDb, SCHEMA, SCHEMA, &["item"]).await;
    let (mut pg, _) = sites.connect().await;
    let run = start_synced(&sites.control_url).await;
    pg.exec("INSERT INTO item VALUES (1, 'before')").await;
    wait_for("row 1 on maria", T, || async {
        let (_, mut m) = sites.connect().await;
        m.count("SELECT count(*) FROM item").await == 1
    })
    .await;
    run.shutdown().await;
    pg.exec("INSERT INTO item VALUES (2, 'while stopped')")
        .await;
    pg.exec("SELECT pg_drop_replication_slot('duplex_l1_s1')")
        .await;
    let why = match duplex::runner::start(
        &sites.control_url,
        duplex::pipeline::PipelineTuning::default(),
    )
    .await
    {
        Ok(run) => {
            run.shutdown().await;
            panic!("started on a new slot, skipping row 2")
        }
        Err(e) => duplex::error_class::explained(&e, "l"),
    };
    assert!(
        why.contains("replication slot duplex_l1_s1 is gone")
            && why.contains("_duplex_applied")
            && why.contains("`duplex resync --link l`"),
        "{why}"
    );

    let (ok, out) = duplex_cli(&sites.control_url, &["resync", "--link", "l"]);
    assert!(
        ok && out.contains("not waiting") && out.contains("duplex repair --link l --by-policy"),
        "{out}"
    );
    let run = start_synced(&sites.control_url).await;
    wait_for("row 2 on maria", T, || async {
        let (_, mut m) = sites.connect().await;
        m.count("SELECT count(*) FROM item WHERE id = 2").await == 1
    })
    .await;
    run.shutdown().await;
    let (ok, out) = duplex_cli(&sites.control_url, &["check"]);
    assert!(ok, "{out}");
}

/// A paused table's copy would wait for its resumption: its resync is
/// refused, naming the pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_tables_resync_is_refused() {
    let pair = crate::support::Pair::start(SCHEMA, &["item"]).await;
    let control = connect(&pair.control_url).await;
    control
        .batch_execute("UPDATE duplex.link_tables SET paused = true")
        .await
        .unwrap();
    let (ok, out) = duplex_cli(
        &pair.control_url,
        &["resync", "--link", "ab", "--table", "item"],
    );
    assert!(
        !ok && out.contains("is paused") && out.contains("Resume it first"),
        "{out}"
    );
}
