//! Every mapped type round-trips PostgreSQL -> MariaDB -> PostgreSQL and
//! MariaDB -> PostgreSQL -> MariaDB unchanged where the mapping is lossless,
//! and a value the target cannot hold is refused with a message naming the
//! link, table, key and column (visible in duplex.link_status).

use std::time::Duration;

use duplex::localdb::pg::LocalPostgres;
use duplex::pipeline::PipelineTuning;
use mysql_async::prelude::Queryable;

const PG_SCHEMA: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE xt (id int PRIMARY KEY, touch int NOT NULL DEFAULT 0, b boolean, i2 smallint, i4 integer, i8 bigint,
  u8 numeric(20,0), n numeric(65,30), d2 numeric(10,2), f4 real, f8 double precision, t text, vc varchar(20), c char(5),
  bin bytea, u uuid, j jsonb, dt date, ts timestamp(6), tstz timestamptz(6), tm time(6), m mood);";

const MARIA_SCHEMA: &str = "
CREATE TABLE xt (id INT PRIMARY KEY, touch INT NOT NULL DEFAULT 0, b TINYINT(1), i2 SMALLINT, i4 INT, i8 BIGINT,
  u8 BIGINT UNSIGNED, n DECIMAL(65,30), d2 DECIMAL(10,2), f4 FLOAT, f8 DOUBLE, t TEXT, vc VARCHAR(20), c CHAR(5),
  bin VARBINARY(100), u UUID, j JSON, dt DATE, ts DATETIME(6), tstz TIMESTAMP(6) NULL, tm TIME(6), m ENUM('sad', 'ok', 'happy'))
  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;";

const COLS: &str = "id, b, i2, i4, i8, u8, n, d2, f4, f8, t, vc, c, bin, u, j, dt, ts, tstz, tm, m";

/// Rows as PostgreSQL renders them (text of each column), ordered by id.
async fn pg_rows(c: &tokio_postgres::Client) -> Vec<String> {
    let sql = format!(
        "SELECT ROW({})::text FROM xt ORDER BY id",
        COLS.split(", ")
            .map(|c| format!("xt.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    crate::support::texts(c, &sql).await
}

/// Rows as MariaDB renders them, ordered by id.
async fn maria_rows(c: &mut mysql_async::Conn) -> Vec<String> {
    let cols: Vec<String> = COLS
        .split(", ")
        .map(|c| {
            format!(
                "COALESCE(CAST({} AS CHAR), 'NULL')",
                if c == "bin" { "HEX(bin)" } else { c }
            )
        })
        .collect();
    c.query(format!(
        "SELECT CONCAT_WS('|', {}) FROM xt ORDER BY id",
        cols.join(", ")
    ))
    .await
    .unwrap()
}

async fn setup() -> (
    LocalPostgres,
    duplex::localdb::mysql::LocalMariaDb,
    LocalPostgres,
    String,
) {
    let m = crate::support::start_mariadb(MARIA_SCHEMA).await;
    let p = crate::support::start_postgres(PG_SCHEMA).await;
    let (ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["xt"],
    )
    .await;
    (p, m, ctl, url)
}

const PG_VALUES: &str = r#"
INSERT INTO xt (id) VALUES (1);
INSERT INTO xt (id, b, i2, i4, i8, u8, n, d2, f4, f8, t, vc, c, bin, u, j, dt, ts, tstz, tm, m) VALUES
 (2, true, -32768, 2147483647, -9223372036854775808, 18446744073709551615, '12345678901234567890123456789012345.123456789012345678901234567890',
  -99999999.99, 0.1, 1e308, '', 'ünïcødé 😀 ✓', 'ab', '\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1, "a": [1, 2]}',
  '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999+00', '23:59:59.999999', 'happy'),
 (3, false, 0, -1, 9223372036854775807, 0, '-0.000000000000000000000000000001', 0.01, -3.4028235e38, -5e-324, E'line1\nline2\ttab \\ '' "', 'x', 'abcde', '\x', '00000000-0000-0000-0000-000000000000', '[]',
  '2024-02-29', '1970-01-01 00:00:00', '1970-01-01 00:00:01+00', '00:00:00', 'sad');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_round_trip_postgres_mariadb_postgres() {
    let (p, m, _ctl, url) = setup().await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    let mut mc = crate::support::mysql_conn(&m).await;
    pgc.batch_execute(PG_VALUES).await.unwrap();
    let original = pg_rows(&pgc).await;
    crate::support::wait_mysql(
        &mut mc,
        "rows on MariaDB",
        "SELECT COUNT(*) = 3 FROM xt",
        Duration::from_secs(30),
    )
    .await;
    // MariaDB rewrites every row; the values come back to PostgreSQL through
    // MariaDB's binlog and must be what PostgreSQL started with.
    mc.query_drop("UPDATE xt SET touch = touch + 1")
        .await
        .unwrap();
    crate::support::wait_for("rows back on PostgreSQL", Duration::from_secs(30), || {
        crate::support::query_bool(&pgc, "SELECT bool_and(touch = 1) FROM xt")
    })
    .await;
    assert_eq!(
        pg_rows(&pgc).await,
        original,
        "PG -> MariaDB -> PG changed a value"
    );

    // A value MariaDB cannot hold is refused with table, key and column named,
    // kept in quarantine with its source position, and the stream goes on: the
    // good row of the same transaction and the next transaction arrive.
    pgc.batch_execute("BEGIN; INSERT INTO xt (id, ts) VALUES (99, '0999-12-31 23:00:00'); INSERT INTO xt (id) VALUES (100); COMMIT;").await.unwrap();
    pgc.batch_execute("INSERT INTO xt (id) VALUES (101)")
        .await
        .unwrap();
    crate::support::wait_mysql(
        &mut mc,
        "rows after the refused one",
        "SELECT COUNT(*) = 2 FROM xt WHERE id IN (100, 101)",
        Duration::from_secs(30),
    )
    .await;
    let got: Vec<i64> = mc.query("SELECT id FROM xt WHERE id = 99").await.unwrap();
    assert!(got.is_empty(), "a refused value was written anyway");
    let control = crate::support::connect(&url).await;
    // Confirmed once the target transaction that skipped it committed.
    crate::support::wait_one_quarantined(&control).await;
    let q = control
        .query_one("SELECT table_name, op, row_key, reason, change->'after'->'ts'->>'value', status FROM duplex.quarantine WHERE link_id = 1 AND source_site = 1", &[])
        .await
        .expect("exactly one quarantined change");
    let (table, op, key, reason, ts, status): (String, String, String, String, String, String) =
        (q.get(0), q.get(1), q.get(2), q.get(3), q.get(4), q.get(5));
    assert_eq!(
        (table.as_str(), op.as_str(), key.as_str(), status.as_str()),
        ("public.xt", "insert", "id=99", "pending")
    );
    assert!(
        reason.contains("xt")
            && reason.contains("id=99")
            && reason.contains("ts")
            && reason.contains("before 1000-01-01"),
        "{reason}"
    );
    assert_eq!(ts, "0999-12-31 23:00:00");
    crate::support::wait_for(
        "quarantine count in link_status",
        Duration::from_secs(10),
        || {
            crate::support::query_bool(
                &control,
                "SELECT quarantined = 1 FROM duplex.link_status WHERE source_site = 1",
            )
        },
    )
    .await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_round_trip_mariadb_postgres_mariadb() {
    let (p, m, _ctl, url) = setup().await;
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    let mut mc = crate::support::mysql_conn(&m).await;
    // The JSON document's keys are in the order jsonb keeps them: jsonb
    // normalises key order and whitespace (the canonical encoding already
    // treats such documents as equal; see docs/type-mapping.md).
    mc.query_drop(
        r#"INSERT INTO xt (id) VALUES (1);
           INSERT INTO xt (id, b, i2, i4, i8, u8, n, d2, f4, f8, t, vc, c, bin, u, j, dt, ts, tstz, tm, m) VALUES
           (2, 1, -32768, 2147483647, -9223372036854775808, 18446744073709551615, '12345678901234567890123456789012345.123456789012345678901234567890',
            -99999999.99, 0.5, 1e308, '', 'ünïcødé 😀 ✓', 'ab', X'00FF10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2], "b": 1}',
            '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '23:59:59.999999', 'happy'),
           (3, 0, 0, -1, 9223372036854775807, 0, '-0.000000000000000000000000000001', 0.01, -1.5, -5e-324, 'line1\nline2\ttab \\ '' "', 'x', 'abcde', X'', '00000000-0000-0000-0000-000000000000', '[]',
            '2024-02-29', '1970-01-01 00:00:00', '1970-01-01 00:00:01', '00:00:00', 'sad');"#,
    )
    .await
    .unwrap();
    let original = maria_rows(&mut mc).await;
    crate::support::wait_for("rows on PostgreSQL", Duration::from_secs(30), || {
        crate::support::query_bool(&pgc, "SELECT count(*) = 3 FROM xt")
    })
    .await;
    pgc.batch_execute("UPDATE xt SET touch = touch + 1")
        .await
        .unwrap();
    crate::support::wait_mysql(
        &mut mc,
        "rows back on MariaDB",
        "SELECT MIN(touch) = 1 FROM xt",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        maria_rows(&mut mc).await,
        original,
        "MariaDB -> PG -> MariaDB changed a value"
    );
    run.shutdown().await;
}
