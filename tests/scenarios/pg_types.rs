//! Every canonical type round-trips A -> B -> A unchanged, and TOASTed values
//! survive updates that do not touch them.

use std::time::Duration;

use crate::support::{query_bool, table_rows, wait_for, Pair};
use duplex::pipeline::PipelineTuning;

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN positive_int AS int CHECK (VALUE > 0);
CREATE TABLE alltypes (
    id   int PRIMARY KEY,
    b    bool, i2 smallint, i4 int, i8 bigint, n numeric, n2 numeric(65,30), f4 real, f8 double precision,
    t    text, vc varchar(20), c char(5), by bytea, d date, tm time, ts timestamp, tstz timestamptz,
    iv   interval, u uuid, j json, jb jsonb, ai int[], at text[], an numeric[], a2 int[][],
    m    mood, am mood[], dom positive_int, other inet, big text
);"#;

const ROWS: &str = r#"
INSERT INTO alltypes (id) VALUES (1);
INSERT INTO alltypes VALUES (2, true, -32768, 2147483647, -9223372036854775808, 'NaN',
    '12345678901234567890123456789012345.123456789012345678901234567890', 'NaN', 'Infinity',
    '', 'ünïcødé 😀 ✓', 'ab', '\x00ff10', 'infinity', '24:00:00', '-infinity', '2000-01-01 00:00:00+05:30',
    '-1 year 2 mons -3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1,   "a": [1, 2]}',
    '{"z": null, "a": "é"}', '{1,NULL,3}', '{"a b","NULL","",NULL,"x\"y\\z","{}",","}', '{1.50,NaN,-0.001}',
    '{{1,2},{3,4}}', 'it''s "complicated"', '{sad,happy}', 7, '192.168.0.1/24', NULL);
INSERT INTO alltypes VALUES (3, false, 0, -1, 9223372036854775807, '-Infinity', '-0.000000000000000000000000000001',
    '-0', '-Infinity', E'line1\nline2\ttab \\ backslash '' quote', 'x', 'abcde', '\x', '4713-01-01 BC', '00:00:00.000001',
    '294247-01-10 04:00:54.775807', '1970-01-01 00:00:00.000001+00', '0', '00000000-0000-0000-0000-000000000000', '[]',
    '[]', '{}', '{}', '{}', '{}', 'sad', '{}', 1, '::1', NULL);
INSERT INTO alltypes VALUES (4, NULL, 1, 1, 1, '0.000', '0', '3.4028235e38', '1e308', 'NULL', 'null', 'NULL', '\x5c', '2000-02-29',
    '12:34:56.5', '1999-12-31 23:59:59.5 BC', '2038-01-19 03:14:08-08', '178000000 years', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
    '"just a string"', '1.5e3', '{-2147483648}', '{" leading","trailing "}', '{1e-5}', '{{NULL}}', 'ok', '{}', 2147483647,
    '2001:db8::/32', NULL);
INSERT INTO alltypes (id, f4, f8, big) VALUES (5, '1.17549435e-38', '5e-324', 'small'), (6, '0.1', '0.1', NULL);
"#;

const TOAST_VALUE: &str =
    "(SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 6000) g)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_a_to_b_to_a() {
    let pair = Pair::start(SCHEMA, &["alltypes"]).await;
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute(ROWS).await.expect("insert test rows");
    a.batch_execute(&format!(
        "UPDATE alltypes SET big = {TOAST_VALUE} WHERE id IN (5, 6)"
    ))
    .await
    .unwrap();
    let original = table_rows(&a, "alltypes").await;
    assert_eq!(original.len(), 6);
    let t = Duration::from_secs(30);
    wait_for("rows on B", t, || query_bool(&b, "SELECT count(*) = 6 AND bool_and(big IS NOT NULL) FILTER (WHERE id IN (5, 6)) FROM alltypes")).await;
    assert_eq!(
        table_rows(&b, "alltypes").await,
        original,
        "A -> B changed a value"
    );

    // B rewrites every row (all columns but unchanged TOAST come through the
    // stream), and the values return to A, re-decoded and re-encoded.
    b.batch_execute("UPDATE alltypes SET i2 = i2")
        .await
        .unwrap();
    wait_for("rows back on A", t, || {
        query_bool(
            &a,
            "SELECT bool_and(coalesce((_duplex->>'site')::int = 2, false)) FROM alltypes",
        )
    })
    .await;
    assert_eq!(
        table_rows(&a, "alltypes").await,
        original,
        "A -> B -> A changed a value"
    );
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_columns_stay_intact_on_the_peer() {
    let pair = Pair::start(SCHEMA, &["alltypes"]).await;
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute(&format!(
        "INSERT INTO alltypes (id, i4, big) VALUES (10, 1, {TOAST_VALUE})"
    ))
    .await
    .unwrap();
    // The value really is stored out of line (TOASTed), or the test proves nothing.
    assert!(query_bool(&a, "SELECT pg_column_size(big) < octet_length(big) OR octet_length(big) > 100000 FROM alltypes WHERE id = 10").await);
    let t = Duration::from_secs(30);
    wait_for("toasted row on B", t, || {
        query_bool(&b, "SELECT EXISTS (SELECT 1 FROM alltypes WHERE id = 10)")
    })
    .await;

    // An update that leaves the TOASTed column alone: pgoutput sends it as
    // "unchanged", and the peer must keep its value.
    a.execute("UPDATE alltypes SET i4 = 2 WHERE id = 10", &[])
        .await
        .unwrap();
    wait_for("update on B", t, || {
        query_bool(&b, "SELECT i4 = 2 FROM alltypes WHERE id = 10")
    })
    .await;
    let md5 = "SELECT md5(big) FROM alltypes WHERE id = 10";
    let on_a: String = a.query_one(md5, &[]).await.unwrap().get(0);
    let on_b: String = b.query_one(md5, &[]).await.unwrap().get(0);
    assert_eq!(on_a, on_b, "TOASTed column changed on B");

    // And back the other way.
    b.execute("UPDATE alltypes SET i4 = 3 WHERE id = 10", &[])
        .await
        .unwrap();
    wait_for("update on A", t, || {
        query_bool(&a, "SELECT i4 = 3 FROM alltypes WHERE id = 10")
    })
    .await;
    let on_a2: String = a.query_one(md5, &[]).await.unwrap().get(0);
    assert_eq!(on_a, on_a2, "TOASTed column changed on A");
    assert_eq!(
        table_rows(&a, "alltypes").await,
        table_rows(&b, "alltypes").await
    );
    run.shutdown().await;
}
