//! Many rows of a MySQL/MariaDB target changed by one statement each way:
//! MySQL has no `UPDATE ... FROM VALUES`, so the applier writes the updates
//! of a round as one `UPDATE` whose columns are `CASE`s over the rows' keys,
//! and its deletes as one `DELETE ... WHERE key IN (...)`. Every value type
//! must arrive as a single-row statement would write it (binary strings
//! that are no UTF-8, times, decimals, NULLs, a composite key), and a
//! statement the target refuses leaves its other rows applied once.
//!
//! On MariaDB a transaction changes the rows in the second their versions
//! were written: a delete's binlog time (whole seconds) is then earlier
//! than the version it deletes, which must not make the delete stale.

use crate::support::site::{self, Db, Engines, Sites};

const PG_SCHEMA: &str = "
    CREATE TABLE m (a integer, b varchar(10), bin bytea, at timestamp(6), amount numeric(12,3),
                    note varchar(40), PRIMARY KEY (a, b));
    CREATE TABLE s (id integer PRIMARY KEY, v integer, note varchar(20));
    CREATE TABLE d (id numeric(20,0) PRIMARY KEY, note varchar(20));";
const MY_SCHEMA: &str = "
    CREATE TABLE m (a INT, b VARCHAR(10), bin VARBINARY(8) NULL, at DATETIME(6) NULL,
                    amount DECIMAL(12,3) NULL, note VARCHAR(40) NULL, PRIMARY KEY (a, b));
    CREATE TABLE s (id INT PRIMARY KEY, v INT NULL, note VARCHAR(20) NULL);
    CREATE TABLE d (id DECIMAL(20,0) PRIMARY KEY, note VARCHAR(20) NULL);";

/// Each row of `m` as one comparable text, the same on either engine.
const M_ROWS: [&str; 2] = [
    "SELECT concat_ws('|', a, b, coalesce(upper(encode(bin, 'hex')), '-'),
            coalesce(to_char(at, 'YYYY-MM-DD HH24:MI:SS.US'), '-'), coalesce(amount::text, '-'),
            coalesce(note, '-')) FROM m ORDER BY a, b",
    "SELECT CONCAT_WS('|', a, b, COALESCE(HEX(bin), '-'),
            COALESCE(DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'), '-'), COALESCE(CAST(amount AS CHAR), '-'),
            COALESCE(note, '-')) FROM m ORDER BY a, b",
];
/// Keys that differ only past 15 digits (one double to MySQL).
const D_ROWS: [&str; 2] = [
    "SELECT concat_ws('|', id, note) FROM d ORDER BY id",
    "SELECT CONCAT_WS('|', id, note) FROM d ORDER BY id",
];
const S_ROWS: [&str; 2] = [
    "SELECT concat_ws('|', id, coalesce(v::text, '-'), coalesce(note, '-')) FROM s ORDER BY id",
    "SELECT CONCAT_WS('|', id, COALESCE(v, '-'), COALESCE(note, '-')) FROM s ORDER BY id",
];

/// `UPDATE` and `DELETE` statements the MariaDB site has run so far.
async fn statements_run(db: &mut Db) -> (i64, i64) {
    let status: Vec<(String, String)> = db
        .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_update', 'Com_delete')")
        .await;
    let get = |name: &str| {
        status
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status:?}"))
    };
    (get("Com_update"), get("Com_delete"))
}

async fn many_rows_in_one_statement(engines: Engines) {
    let sites = Sites::start(engines, PG_SCHEMA, MY_SCHEMA, &["m", "s", "d"]).await;
    let control = crate::support::connect(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    let pg = engines == Engines::PgMariaDb;
    // 300 rows in each table, before the link starts.
    let mut m_rows = Vec::new();
    let mut s_rows = Vec::new();
    for i in 0..300 {
        m_rows.push(format!(
            "({}, 'k{}', NULL, '2024-01-01 00:00:00', 1.5, 'n{i}')",
            i / 3,
            i % 3
        ));
        s_rows.push(format!("({i}, {i}, 's{i}')"));
    }
    a.exec(&format!("INSERT INTO m VALUES {}", m_rows.join(", ")))
        .await;
    a.exec(&format!("INSERT INTO s VALUES {}", s_rows.join(", ")))
        .await;
    // 1,500 keys within a few doubles of each other: the initial sync reads
    // them in two pages, the second after a key of the first.
    let d_rows: Vec<String> = (0..1500)
        .map(|k| format!("({}, 'd')", 12_345_678_901_234_567_890u64 + k))
        .collect();
    a.exec(&format!("INSERT INTO d VALUES {}", d_rows.join(", ")))
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    site::wait_same::<String>(&mut a, &mut b, "the first rows", &[M_ROWS, S_ROWS, D_ROWS]).await;
    let before = statements_run(&mut b).await;

    // One source transaction: every row of m changed in each column (bytes
    // that are no UTF-8, a time with microseconds, a decimal, a NULL for
    // every fifth row), rows of s deleted as they were copied, every other
    // row of s updated, and a third of those deleted after, and the rows
    // of d, whose keys MySQL can tell apart only as decimals.
    let (bin, at) = if pg {
        (
            "decode(lpad(to_hex(a * 7 + length(b)), 4, '0') || 'ff80', 'hex')",
            "timestamp '2025-06-30 23:59:59.000001' + a * interval '1 second'",
        )
    } else {
        (
            "UNHEX(CONCAT(LPAD(HEX(a * 7 + LENGTH(b)), 4, '0'), 'FF80'))",
            "TIMESTAMP '2025-06-30 23:59:59.000001' + INTERVAL a SECOND",
        )
    };
    let mut statements = Vec::new();
    if !pg {
        // The rows' version is their stamp, set when the link added the
        // column (the initial sync copies them with it). The transaction
        // runs 100 µs later by its clock, in the same second: its binlog
        // time (that second, whole) is then before the versions it deletes
        // (unless the stamp is in the second's last 100 µs).
        let stamp: Vec<String> = a
            .query("SELECT CAST(UNIX_TIMESTAMP(MAX(_duplex_ts)) AS CHAR) FROM s")
            .await;
        let stamp: f64 = stamp[0].parse().expect("a stamp");
        statements.push(format!("SET timestamp = {:.6}", stamp + 0.0001));
    }
    statements.extend([
        "DELETE FROM s WHERE id >= 290".into(),
        "UPDATE d SET note = CONCAT('new ', id % 10)".into(),
        format!(
            "UPDATE m SET bin = {bin}, at = {at}, amount = a * 1.25 - 7.125,
                          note = CASE WHEN a % 5 = 0 THEN NULL ELSE CONCAT('changed ', a, b) END"
        ),
        "UPDATE s SET v = v * 2, note = CONCAT('t', id)".into(),
        "DELETE FROM s WHERE id % 3 = 0".into(),
    ]);
    a.txn(&statements).await;
    if !pg {
        a.exec("SET timestamp = DEFAULT").await;
    }
    site::wait_same::<String>(
        &mut a,
        &mut b,
        "the transaction's row changes",
        &[M_ROWS, S_ROWS, D_ROWS],
    )
    .await;
    let s_left: Vec<String> = b.query(S_ROWS[1]).await;
    assert_eq!(s_left.len(), 193, "rows of s deleted");
    assert_eq!(s_left[0], "1|2|t1", "{s_left:?}");
    let after = statements_run(&mut b).await;
    let d_rows: Vec<String> = b.query(D_ROWS[1]).await;
    assert_eq!(d_rows[3], "12345678901234567893|new 3", "{d_rows:?}");
    assert_eq!(d_rows.len(), 1500, "every row of d");
    // One by one: 2,090 UPDATEs and 107 DELETEs. In statements of up to 128
    // rows: a handful (and one per commit for the applied position).
    assert!(
        after.0 - before.0 < 60,
        "2,090 updated rows in few statements, not {}",
        after.0 - before.0
    );
    assert!(
        after.1 - before.1 < 10,
        "107 deleted rows in few statements, not {}",
        after.1 - before.1
    );

    // A constraint only site 2 has refuses one row of a multi-row UPDATE:
    // that row is quarantined, every other row of the statement applied.
    b.exec("ALTER TABLE s ADD CONSTRAINT note_not_bad CHECK (note <> 'bad')")
        .await;
    a.exec("UPDATE s SET note = CASE WHEN id = 50 THEN 'bad' ELSE CONCAT('u', id) END, v = v + 1 WHERE id < 100")
        .await;
    a.exec("UPDATE m SET note = 'after' WHERE a = 0").await;
    let m_after = [
        "SELECT count(*) FROM m WHERE note = 'after'",
        "SELECT count(*) FROM m WHERE note = 'after'",
    ];
    site::wait_same::<i64>(&mut a, &mut b, "the next transaction", &[m_after]).await;
    let on_b: Vec<String> = b
        .query("SELECT CONCAT_WS('|', id, v, note) FROM s WHERE id < 100 ORDER BY id")
        .await;
    let expected: Vec<String> = (1..100)
        .filter(|id| id % 3 != 0)
        .map(|id| {
            if id == 50 {
                // As the earlier transaction left it.
                "50|100|t50".to_string()
            } else {
                format!("{id}|{}|u{id}", id * 2 + 1)
            }
        })
        .collect();
    assert_eq!(
        on_b, expected,
        "every row but the refused one updated, once"
    );
    crate::support::wait_only_quarantined(&control, "id=50").await;
    run.shutdown().await;
}

crate::support::scenario_tests! {
    many_rows_in_one_statement:
    many_updated_and_deleted_rows_reach_mariadb_from_postgresql_in_few_statements(Engines::PgMariaDb);
    many_updated_and_deleted_rows_reach_mariadb_from_mariadb_in_few_statements(Engines::MariaDbMariaDb);
}
