//! A write MariaDB logs as a statement (a session with `binlog_format =
//! STATEMENT`) carries no rows: duplex cannot replicate it, and must never
//! pass it for DDL. However it is disguised (another default database and a
//! qualified name, a comment first, plain), the table it writes stops in that
//! direction, visibly, with the statement, its position and the fix; its later
//! changes are held, the other tables keep flowing, and nothing is dropped.
//! Once the DBA has resynced the table and discarded the statement records,
//! the held changes are applied and the table flows again. A statement whose
//! reach cannot be told (a write through a trigger) stops every table; DDL
//! and writes elsewhere keep passing.

use std::time::Duration;

use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const MARIA_SCHEMA: &str = "
CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40));
CREATE TABLE u (id INT PRIMARY KEY, v VARCHAR(40));";

const PG_SCHEMA: &str = "
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, v text);";

const T: Duration = Duration::from_secs(30);

async fn pg_ids(c: &tokio_postgres::Client, table: &str) -> Vec<i32> {
    crate::support::query_rows(c, &format!("SELECT id FROM {table} ORDER BY id")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_logged_as_statements_stop_their_table_visibly() {
    let m = crate::support::start_mariadb(MARIA_SCHEMA).await;
    m.create_database("other").unwrap();
    m.sql(
        Some("other"),
        "CREATE TABLE plain (id INT PRIMARY KEY);
         CREATE TABLE audit (id INT PRIMARY KEY);
         CREATE TRIGGER audit_to_u AFTER INSERT ON audit FOR EACH ROW INSERT INTO app.u VALUES (NEW.id, 'by trigger');",
    )
    .unwrap();
    let p = crate::support::start_postgres(PG_SCHEMA).await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["t", "u"],
    )
    .await;
    let run = crate::support::start_synced(&url).await;
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    let control = crate::support::connect(&url).await;
    let mut rows = crate::support::mysql_conn(&m).await;
    rows.query_drop("INSERT INTO t VALUES (1, 'one'); INSERT INTO u VALUES (1, 'one')")
        .await
        .unwrap();
    crate::support::wait_for("the first rows on PostgreSQL", T, || async {
        pg_ids(&pgc, "t").await == [1] && pg_ids(&pgc, "u").await == [1]
    })
    .await;

    // The writes, each logged as a statement.
    let mut stmt = crate::support::mysql_conn(&m).await;
    for q in [
        "SET SESSION binlog_format = STATEMENT",
        "USE other",
        "INSERT INTO app.t VALUES (10, 'qualified, other default database')",
        "USE app",
        "/* app */ INSERT INTO t VALUES (11, 'comment first')",
        "INSERT INTO t VALUES (12, 'plain')",
        // Harmless ones pass: a write elsewhere, DDL of another table.
        "INSERT INTO other.plain VALUES (1)",
        "CREATE TABLE other.made_later (id INT PRIMARY KEY)",
    ] {
        stmt.query_drop(q).await.unwrap();
    }
    // Later row changes: t's are held, u's flow.
    rows.query_drop("UPDATE t SET v = 'changed after' WHERE id = 1")
        .await
        .unwrap();
    rows.query_drop("INSERT INTO u VALUES (2, 'flows')")
        .await
        .unwrap();
    crate::support::wait_for("u's later row on PostgreSQL", T, || async {
        pg_ids(&pgc, "u").await == [1, 2]
    })
    .await;

    // t is stopped, visibly: three statement records, with the statement,
    // its position and the fix, and the held update.
    crate::support::wait_for("the statement records", T, || {
        crate::support::query_bool(
            &control,
            "SELECT count(*) = 3 FROM duplex.quarantine
              WHERE op = 'statement' AND table_name = 'app.t' AND status = 'pending' AND confirmed",
        )
    })
    .await;
    let records = control
        .query(
            "SELECT quarantine_id, row_key, reason FROM duplex.quarantine
              WHERE op = 'statement' ORDER BY quarantine_id",
            &[],
        )
        .await
        .unwrap();
    let ids: Vec<String> = records
        .iter()
        .map(|r| r.get::<_, i64>(0).to_string())
        .collect();
    let statements: Vec<String> = records.iter().map(|r| r.get(1)).collect();
    assert!(
        statements[0].contains("INSERT INTO app.t VALUES (10"),
        "{statements:?}"
    );
    assert!(
        statements[1].contains("/* app */ INSERT INTO t VALUES (11"),
        "{statements:?}"
    );
    assert!(
        statements[2].contains("INSERT INTO t VALUES (12"),
        "{statements:?}"
    );
    for r in &records {
        let reason: String = r.get(2);
        for needle in [
            "logged as a statement",
            "binlog 000",
            "table t stops",
            "binlog_format = ROW",
            "duplex repair --from maria --table t",
            "duplex quarantine discard",
        ] {
            assert!(reason.contains(needle), "{needle:?} not in {reason}");
        }
    }
    assert!(records[0]
        .get::<_, String>(2)
        .contains("default database other"));
    crate::support::wait_for("the held update", T, || {
        crate::support::query_bool(
            &control,
            "SELECT count(*) = 1 FROM duplex.quarantine WHERE table_name = 'app.t' AND status = 'held' AND confirmed",
        )
    })
    .await;
    crate::support::wait_for("the stop in the status views", T, || {
        crate::support::query_bool(
            &control,
            "SELECT (SELECT stopped AND stop_reason LIKE '%INSERT INTO app.t%' AND held = 1
                       FROM duplex.table_overview WHERE source_site = 2 AND table_name = 'app.t')
                AND (SELECT NOT stopped FROM duplex.table_overview WHERE source_site = 2 AND table_name = 'app.u')
                AND (SELECT stopped_tables = 1 AND last_error LIKE '%app.t stopped%'
                       FROM duplex.link_overview WHERE source = 'maria')",
        )
    })
    .await;
    let (ok, status) = crate::support::duplex_cli(&url, &["status", "--tables"]);
    assert!(ok, "{status}");
    assert!(
        status.contains("1 table(s) STOPPED")
            && status.contains("STOPPED")
            && status.contains("duplex repair --from maria --table t"),
        "{status}"
    );
    // Nothing was applied behind the stop, and the direction never failed.
    assert_eq!(pg_ids(&pgc, "t").await, [1]);
    let v: String = pgc
        .query_one("SELECT v FROM t WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "one");
    assert!(
        crate::support::query_bool(
            &control,
            "SELECT state = 'streaming' FROM duplex.link_status WHERE source_site = 2"
        )
        .await
    );
    // A statement record cannot be retried: it says what to do instead.
    let (ok, out) = crate::support::duplex_cli(&url, &["quarantine", "retry", &ids[0]]);
    assert!(!ok && out.contains("Resync table app.t"), "{out}");

    // The fix: the session logs rows again, the table is resynced, the
    // records discarded; the held update is applied and t flows again.
    stmt.query_drop("SET SESSION binlog_format = ROW")
        .await
        .unwrap();
    let (ok, out) =
        crate::support::duplex_cli(&url, &["repair", "--from", "maria", "--table", "t"]);
    assert!(ok, "repair: {out}");
    let mut args = vec!["quarantine", "discard"];
    args.extend(ids.iter().map(String::as_str));
    let (ok, out) = crate::support::duplex_cli(&url, &args);
    assert!(ok && out.contains("resumes"), "{out}");
    crate::support::wait_for("the held change released", T, || {
        crate::support::query_bool(
            &control,
            "SELECT count(*) = 0 FROM duplex.quarantine WHERE status IN ('held', 'retry')",
        )
    })
    .await;
    rows.query_drop("INSERT INTO t VALUES (13, 'after the fix')")
        .await
        .unwrap();
    crate::support::wait_for("t flowing again", T, || async {
        pg_ids(&pgc, "t").await == [1, 10, 11, 12, 13]
    })
    .await;
    let v: String = pgc
        .query_one("SELECT v FROM t WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "changed after");
    assert!(crate::support::query_bool(
        &control,
        "SELECT NOT stopped FROM duplex.table_overview WHERE source_site = 2 AND table_name = 'app.t'"
    )
    .await);

    // A statement write through a trigger (other.audit writes app.u):
    // which tables it reached cannot be told from the statement, so every
    // table of the direction stops.
    stmt.query_drop("SET SESSION binlog_format = STATEMENT")
        .await
        .unwrap();
    stmt.query_drop("INSERT INTO other.audit VALUES (7)")
        .await
        .unwrap();
    crate::support::wait_for("every table stopped", T, || {
        crate::support::query_bool(
            &control,
            "SELECT count(DISTINCT table_name) = 2 FROM duplex.quarantine
              WHERE op = 'statement' AND status = 'pending' AND confirmed
                AND reason LIKE '%other.audit has triggers%every table of this direction stops%'",
        )
    })
    .await;
    rows.query_drop("INSERT INTO u VALUES (3, 'held now')")
        .await
        .unwrap();
    crate::support::wait_for("u's change held", T, || {
        crate::support::query_bool(
            &control,
            "SELECT count(*) = 1 FROM duplex.quarantine WHERE table_name = 'app.u' AND status = 'held' AND confirmed",
        )
    })
    .await;
    assert_eq!(pg_ids(&pgc, "u").await, [1, 2]);
    run.shutdown().await;
}

/// The same stop and resume with the control schema on MariaDB (its
/// procedures, views and JSON functions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_write_stops_its_table_with_a_mariadb_control_schema() {
    crate::support::init_tracing();
    let m = crate::support::start_mariadb(MARIA_SCHEMA).await;
    let p = crate::support::start_postgres(PG_SCHEMA).await;
    let url = m.url("duplex");
    let (ok, out) = crate::support::duplex_cli(&url, &["init"]);
    assert!(ok, "duplex init on MariaDB: {out}");
    let mut ctl = crate::support::mysql_conn(&m).await;
    crate::support::describe_link_on_mariadb(
        &mut ctl,
        p.conninfo("app"),
        m.url("app"),
        &["t", "u"],
    )
    .await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    crate::support::wait_mysql(
        &mut ctl,
        "the initial sync",
        "SELECT COUNT(*) = 4 FROM duplex.snapshot_progress WHERE state IN ('done', 'skipped')",
        T,
    )
    .await;
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    let mut stmt = crate::support::mysql_conn(&m).await;
    stmt.query_drop("SET SESSION binlog_format = STATEMENT; INSERT INTO t VALUES (1, 'statement')")
        .await
        .unwrap();
    let mut rows = crate::support::mysql_conn(&m).await;
    rows.query_drop("INSERT INTO t VALUES (2, 'held'); INSERT INTO u VALUES (1, 'flows')")
        .await
        .unwrap();
    crate::support::wait_for("u's row on PostgreSQL", T, || async {
        pg_ids(&pgc, "u").await == [1]
    })
    .await;
    crate::support::wait_mysql(
        &mut ctl,
        "t stopped, its row held",
        "SELECT COALESCE((SELECT stopped AND held = 1 AND stop_reason LIKE '%INSERT INTO t VALUES (1%'
                   FROM duplex.table_overview WHERE source_site = 2 AND table_name = 'app.t')
            AND (SELECT stopped_tables = 1 FROM duplex.link_overview WHERE source = 'maria'), 0)",
        T,
    )
    .await;
    assert!(pg_ids(&pgc, "t").await.is_empty());
    let id: i64 = ctl
        .query_first("SELECT quarantine_id FROM duplex.quarantine WHERE op = 'statement'")
        .await
        .unwrap()
        .unwrap();
    let (ok, out) = crate::support::duplex_cli(&url, &["quarantine", "retry", &id.to_string()]);
    assert!(!ok && out.contains("Resync table app.t"), "{out}");
    let (ok, out) =
        crate::support::duplex_cli(&url, &["repair", "--from", "maria", "--table", "t"]);
    assert!(ok, "repair: {out}");
    let (ok, out) = crate::support::duplex_cli(&url, &["quarantine", "discard", &id.to_string()]);
    assert!(ok && out.contains("resumes"), "{out}");
    crate::support::wait_mysql(
        &mut ctl,
        "the held row released",
        "SELECT COUNT(*) = 0 FROM duplex.quarantine WHERE status IN ('held', 'retry')",
        T,
    )
    .await;
    rows.query_drop("INSERT INTO t VALUES (3, 'flows again')")
        .await
        .unwrap();
    crate::support::wait_for("t flowing again", T, || async {
        pg_ids(&pgc, "t").await == [1, 2, 3]
    })
    .await;
    run.shutdown().await;
}

/// Savepoints are statements inside a ROW-format transaction, and harmless:
/// they once passed for DDL, which ended the transaction, and its next rows
/// then stopped the direction for good ("a rows event outside a
/// transaction"). Common with ORMs, which wrap nested work in savepoints.
/// CREATE TABLE ... SELECT likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_and_create_table_select_in_row_format_flow() {
    let m = crate::support::start_mariadb(MARIA_SCHEMA).await;
    let p = crate::support::start_postgres(PG_SCHEMA).await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["t", "u"],
    )
    .await;
    let run = crate::support::start_synced(&url).await;
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    let mut rows = crate::support::mysql_conn(&m).await;
    rows.query_drop(
        "BEGIN; INSERT INTO u VALUES (1, 'kept'); SAVEPOINT s; INSERT INTO u VALUES (2, 'rolled back');
         ROLLBACK TO SAVEPOINT s; INSERT INTO u VALUES (3, 'kept'); RELEASE SAVEPOINT s; COMMIT;
         INSERT INTO t VALUES (1, 'next transaction')",
    )
    .await
    .unwrap();
    crate::support::wait_for(
        "the transaction with a savepoint, and the next",
        T,
        || async { pg_ids(&pgc, "u").await == [1, 3] && pg_ids(&pgc, "t").await == [1] },
    )
    .await;
    // CREATE TABLE ... SELECT in ROW format: the statement (without its
    // SELECT) and the new table's rows, in one transaction that a COMMIT
    // ends; it once ended at the statement, and the rows stopped the
    // direction the same way.
    rows.query_drop(
        "CREATE TABLE copy_of_u SELECT * FROM u; INSERT INTO t VALUES (2, 'after the copy')",
    )
    .await
    .unwrap();
    crate::support::wait_for("the row after CREATE TABLE ... SELECT", T, || async {
        pg_ids(&pgc, "t").await == [1, 2]
    })
    .await;
    run.shutdown().await;
}
