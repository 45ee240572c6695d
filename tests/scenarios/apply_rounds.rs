//! A round of the applier: the decided writes of many statements (and
//! source transactions) arranged into a few multi-row statements, each
//! row's writes in order (`sink::plan`), executed together (on PostgreSQL
//! in one pipeline under one savepoint). When the target refuses one of
//! them, the round's writes it did not apply are applied one by one in the
//! order they were decided: the refused row is quarantined, every other
//! write lands exactly once, in its row's order.

use crate::support::site::{self, Engines, Sites};
use crate::support::{query_i64, wait_for};
use std::time::Duration;

const PG_SCHEMA: &str = "CREATE TABLE t (id integer PRIMARY KEY, note varchar(20));
                         CREATE TABLE sentinel (id integer PRIMARY KEY, note varchar(20));";
const MY_SCHEMA: &str = "CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(20) NULL);
                         CREATE TABLE sentinel (id INT PRIMARY KEY, note VARCHAR(20) NULL);";

type Note = (i32, Option<String>);

const ROWS: &str = "SELECT id, note FROM t ORDER BY id";

async fn refused_write_in_a_round(engines: Engines) {
    let sites = Sites::start(engines, PG_SCHEMA, MY_SCHEMA, &["t", "sentinel"]).await;
    let control = crate::support::connect(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    a.exec("INSERT INTO t (id, note) VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    site::wait_same::<Note>(&mut a, &mut b, "the first rows", &[[ROWS, ROWS]]).await;
    // A constraint only site 2 has.
    b.exec("ALTER TABLE t ADD CONSTRAINT note_not_bad CHECK (note <> 'bad')")
        .await;
    // Updates and inserts of different rows alternate (two statements in a
    // round, in the planner's arrangement), one row is written three times,
    // one is deleted and inserted again, and the target refuses one insert.
    // On MySQL (statements in order) the insert of 12 is applied before the
    // refused one: applied again, it would be refused (its key taken).
    a.txn(&[
        "INSERT INTO t (id, note) VALUES (12, 'twelve')".into(),
        "UPDATE t SET note = 'one b' WHERE id = 1".into(),
        "INSERT INTO t (id, note) VALUES (10, 'bad')".into(),
        "UPDATE t SET note = 'two b' WHERE id = 2".into(),
        "INSERT INTO t (id, note) VALUES (11, 'eleven')".into(),
        "UPDATE t SET note = 'one c' WHERE id = 1".into(),
        "DELETE FROM t WHERE id = 3".into(),
        "INSERT INTO t (id, note) VALUES (3, 'three b')".into(),
        "UPDATE t SET note = 'one d' WHERE id = 1".into(),
    ])
    .await;
    // And the stream goes on after it.
    a.exec("INSERT INTO sentinel (id, note) VALUES (1, 'after')")
        .await;
    let sentinel = "SELECT id, note FROM sentinel ORDER BY id";
    site::wait_same::<Note>(
        &mut a,
        &mut b,
        "the next transaction",
        &[[sentinel, sentinel]],
    )
    .await;
    let on_b: Vec<Note> = b.query(ROWS).await;
    let note = |s: &str| Some(s.to_string());
    assert_eq!(
        on_b,
        vec![
            (1, note("one d")),
            (2, note("two b")),
            (3, note("three b")),
            (11, note("eleven")),
            (12, note("twelve")),
        ],
        "every write but the refused one, each once, in its row's order"
    );
    crate::support::wait_only_quarantined(&control, "id=10").await;
    run.shutdown().await;
}

crate::support::scenario_tests! {
    refused_write_in_a_round:
    a_refused_write_leaves_the_rounds_other_writes_applied_once_postgresql(Engines::PgPg);
    a_refused_write_leaves_the_rounds_other_writes_applied_once_mariadb(Engines::PgMariaDb);
}

/// A parent table whose triggers fire for applied rows (`fire_triggers`:
/// applied in the origin role, where its foreign-key actions run too). One
/// source transaction inserts a child, deletes and re-inserts a parent (the
/// delete cascades to its child on the source, and the cascade is streamed),
/// then inserts a child of the re-inserted parent. The last insert must not
/// join the round's earlier child-insert statement: run before the parent's
/// delete, the cascade would delete it on the target, silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_never_moves_before_a_statement_whose_triggers_fire() {
    const SCHEMA: &str = "
        CREATE TABLE parent (id integer PRIMARY KEY, note text);
        CREATE TABLE child (id integer PRIMARY KEY,
                            parent_id integer NOT NULL REFERENCES parent (id) ON DELETE CASCADE,
                            note text);
        INSERT INTO parent VALUES (1, 'one'), (5, 'five');
        INSERT INTO child VALUES (1, 5, 'of five');";
    let sites = Sites::start(Engines::PgPg, SCHEMA, "", &["parent", "child"]).await;
    let control = crate::support::connect(&sites.control_url).await;
    control
        .batch_execute(
            "UPDATE duplex.link_tables SET fire_triggers = true WHERE table_name = 'parent'",
        )
        .await
        .unwrap();
    let (mut a, mut b) = sites.connect().await;
    let run = crate::support::start_synced(&sites.control_url).await;
    a.txn(&[
        "INSERT INTO child VALUES (9, 1, 'of one')".into(),
        "DELETE FROM parent WHERE id = 5".into(),
        "INSERT INTO parent VALUES (5, 'five again')".into(),
        "INSERT INTO child VALUES (7, 5, 'of five again')".into(),
    ])
    .await;
    let children = "SELECT id, note FROM child ORDER BY id";
    let parents = "SELECT id, note FROM parent ORDER BY id";
    site::wait_same::<Note>(
        &mut a,
        &mut b,
        "both tables",
        &[[children, children], [parents, parents]],
    )
    .await;
    let on_b: Vec<Note> = b.query(children).await;
    assert_eq!(
        on_b,
        vec![
            (7, Some("of five again".into())),
            (9, Some("of one".into()))
        ]
    );
    run.shutdown().await;
}

/// Inserts of many rows go by `COPY` on a PostgreSQL target: texts with
/// the characters COPY's text format escapes (tab, newline, carriage
/// return, backslash, a literal `\N`) and NULLs arrive as written, into a
/// `GENERATED ALWAYS` identity column and a partitioned table too (a
/// trigger on site 2, fired for applied rows, notes which statement wrote
/// each row: the copies must be `COPY`s). A transaction whose round the target
/// refuses (a row of a copied batch, and an update before a copy) is
/// applied one by one: only the refused rows are quarantined, every other
/// row lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_inserts_go_by_copy_and_a_refused_round_quarantines_only_its_refused_rows() {
    const SCHEMA: &str = "
        CREATE TABLE t (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
        CREATE TABLE p (id integer PRIMARY KEY, note text) PARTITION BY RANGE (id);
        CREATE TABLE p_low PARTITION OF p FOR VALUES FROM (0) TO (100);
        CREATE TABLE p_high PARTITION OF p FOR VALUES FROM (100) TO (10000);";
    let sites = Sites::start(Engines::PgPg, SCHEMA, "", &["t", "p"]).await;
    let control = crate::support::connect(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    b.exec(
        "CREATE TABLE written_by (tbl text, id integer, stmt text);
         CREATE FUNCTION note_statement() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO written_by VALUES (TG_TABLE_NAME, NEW.id, split_part(ltrim(current_query()), ' ', 1));
           RETURN NEW;
         END $$;
         CREATE TRIGGER t_written_by AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION note_statement();
         CREATE TRIGGER p_written_by AFTER INSERT ON p FOR EACH ROW EXECUTE FUNCTION note_statement();",
    )
    .await;
    control
        .batch_execute("UPDATE duplex.link_tables SET fire_triggers = true")
        .await
        .unwrap();
    let run = crate::support::start_synced(&sites.control_url).await;
    // One transaction of 200 rows per table: texts that need escaping, and
    // NULLs.
    a.exec(
        "INSERT INTO t (note)
         SELECT CASE WHEN g % 5 = 0 THEN NULL
                     ELSE format(E'row %s\\ttab\\nnewline\\rreturn\\\\back\\\\N', g) END
           FROM generate_series(1, 200) g;
         INSERT INTO p SELECT 100 + g * 4, CASE WHEN g % 3 = 0 THEN E'\\\\N' ELSE format(E'p\\t%s', g) END
           FROM generate_series(1, 200) g;",
    )
    .await;
    let t_rows = "SELECT id, note FROM t ORDER BY id";
    let p_rows = "SELECT id, note FROM p ORDER BY id";
    site::wait_same::<Note>(
        &mut a,
        &mut b,
        "the copied rows",
        &[[t_rows, t_rows], [p_rows, p_rows]],
    )
    .await;
    let on_b: Vec<Note> = b.query(t_rows).await;
    assert_eq!(on_b.len(), 200);
    assert_eq!(
        on_b[0].1.as_deref(),
        Some("row 1\ttab\nnewline\rreturn\\back\\N"),
        "the text arrives as written"
    );
    assert_eq!(
        (on_b[4].0, on_b[4].1.clone()),
        (5, None),
        "a NULL stays NULL"
    );
    let on_b_p: Vec<Note> = b.query(p_rows).await;
    assert_eq!(
        on_b_p[2].1.as_deref(),
        Some("\\N"),
        "a literal \\N is no NULL"
    );
    let copied: Vec<(String, i64)> = b
        .query("SELECT tbl || ' ' || stmt, count(*) FROM written_by GROUP BY 1 ORDER BY 1")
        .await;
    assert_eq!(
        copied,
        vec![
            ("p_high COPY".to_string(), 200),
            ("t COPY".to_string(), 200)
        ],
        "both tables' rows were copied (the trigger names the partition)"
    );

    // The target refuses rows of the next transaction: an update before
    // the copies, and one row of a copied batch.
    b.exec("ALTER TABLE t ADD CONSTRAINT note_not_bad CHECK (note <> 'bad')")
        .await;
    a.exec(
        "UPDATE t SET note = 'bad' WHERE id = 3;
         INSERT INTO t (note)
         SELECT CASE WHEN g = 77 THEN 'bad' ELSE format('second %s', g) END
           FROM generate_series(1, 100) g;
         INSERT INTO p SELECT 2000 + g, 'second' FROM generate_series(1, 100) g;",
    )
    .await;
    a.exec("INSERT INTO p VALUES (9999, 'after')").await;
    let t_good = "SELECT id, note FROM t WHERE id <> 3 AND note IS DISTINCT FROM 'bad' ORDER BY id";
    site::wait_same::<Note>(
        &mut a,
        &mut b,
        "the next transactions",
        &[[t_good, t_good], [p_rows, p_rows]],
    )
    .await;
    // 300 rows on A, less the one the update made bad and the refused one.
    assert_eq!(b.query::<Note>(t_good).await.len(), 298);
    wait_for(
        "the refused writes quarantined",
        Duration::from_secs(30),
        || async {
            query_i64(
                &control,
                "SELECT count(*) FROM duplex.quarantine WHERE confirmed",
            )
            .await
                == 2
        },
    )
    .await;
    let keys: Vec<String> = {
        let rows = control
            .query(
                "SELECT row_key FROM duplex.quarantine ORDER BY row_key",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    };
    assert_eq!(
        keys,
        vec!["id=277".to_string(), "id=3".to_string()],
        "only the refused writes are quarantined"
    );
    assert_eq!(
        b.query::<Note>("SELECT id, note FROM t WHERE id = 3").await,
        vec![(3, Some("row 3\ttab\nnewline\rreturn\\back\\N".to_string()))],
        "the refused update left the row as it was"
    );
    run.shutdown().await;
}

/// A transaction creates a parent, points a child at it, points the child
/// elsewhere and removes the parent again: the parent, created and removed
/// again, is never written, so the child's statements as the source made
/// them rest on a row the target never has, and MariaDB's foreign key
/// refuses the first. The child's net change for the transaction is written
/// in its place: nothing is quarantined, the sites end equal (found by an
/// outside test: the child was quarantined and missing on the target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_resting_on_a_row_its_transaction_removes_again_is_applied_as_its_net_change() {
    const PG: &str = "
        CREATE TABLE parent (id integer PRIMARY KEY, note varchar(20));
        CREATE TABLE child (id integer PRIMARY KEY,
                            pid integer NOT NULL REFERENCES parent (id), note varchar(20));";
    const MY: &str = "
        CREATE TABLE parent (id INT PRIMARY KEY, note VARCHAR(20) NULL) ENGINE=InnoDB;
        CREATE TABLE child (id INT PRIMARY KEY, pid INT NOT NULL, note VARCHAR(20) NULL,
                            FOREIGN KEY (pid) REFERENCES parent (id)) ENGINE=InnoDB;";
    let sites = Sites::start(Engines::PgMariaDb, PG, MY, &["parent", "child"]).await;
    let control = crate::support::connect(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    let run = crate::support::start_synced(&sites.control_url).await;
    a.exec("INSERT INTO parent VALUES (1, 'one'), (2, 'two')")
        .await;
    a.exec("INSERT INTO child VALUES (9100, 1, 'moves')").await;
    let children = "SELECT id, note FROM child ORDER BY id";
    site::wait_same::<Note>(&mut a, &mut b, "the first rows", &[[children, children]]).await;
    a.txn(&[
        "INSERT INTO parent VALUES (900, 'brief')".into(),
        "INSERT INTO child VALUES (9000, 900, 'x')".into(),
        "UPDATE child SET pid = 1 WHERE id = 9000".into(),
        "DELETE FROM parent WHERE id = 900".into(),
    ])
    .await;
    a.txn(&[
        "INSERT INTO parent VALUES (910, 'brief')".into(),
        "UPDATE child SET pid = 910 WHERE id = 9100".into(),
        "UPDATE child SET pid = 2, note = 'back' WHERE id = 9100".into(),
        "DELETE FROM parent WHERE id = 910".into(),
    ])
    .await;
    let full = "SELECT id * 100000 + pid, note FROM child ORDER BY id";
    let parents = "SELECT id, note FROM parent ORDER BY id";
    site::wait_same::<Note>(
        &mut a,
        &mut b,
        "the children",
        &[[full, full], [parents, parents]],
    )
    .await;
    let on_b: Vec<Note> = b.query(full).await;
    assert_eq!(
        on_b,
        vec![
            (9000 * 100000 + 1, Some("x".into())),
            (9100 * 100000 + 2, Some("back".into()))
        ]
    );
    assert_eq!(
        query_i64(&control, "SELECT count(*) FROM duplex.quarantine").await,
        0,
        "nothing quarantined"
    );
    run.shutdown().await;
}
