//! The quarantine keeps any value a source can produce, on a PostgreSQL
//! control schema (`jsonb`, which refuses `\u0000`): MariaDB text holding a
//! NUL character, a latin1 column with bytes that are not UTF-8 (a NUL among
//! them), a ~1 MB value. Each refused change is recorded with its reason,
//! readable, while the other tables keep flowing; once the DBA changes the
//! target column to `bytea`, `duplex quarantine retry` applies the exact
//! value. A conflict on such a row is recorded too. A quarantine or conflict
//! record the control database refuses (here: a size limit a DBA added) is
//! kept without its values, never blocking the direction.

use std::time::Duration;

use mysql_async::prelude::Queryable;

const MARIA_SCHEMA: &str = "
CREATE TABLE tn (id INT PRIMARY KEY, v VARCHAR(100)) CHARACTER SET utf8mb4;
CREATE TABLE tl (id INT PRIMARY KEY, v VARCHAR(100)) CHARACTER SET latin1;
CREATE TABLE tb (id INT PRIMARY KEY, v MEDIUMTEXT) CHARACTER SET utf8mb4;
CREATE TABLE tf (id INT PRIMARY KEY, v MEDIUMTEXT) CHARACTER SET utf8mb4;
CREATE TABLE ok (id INT PRIMARY KEY, v VARCHAR(100));";

const PG_SCHEMA: &str = "
CREATE TABLE tn (id int PRIMARY KEY, v text);
CREATE TABLE tl (id int PRIMARY KEY, v text);
CREATE TABLE tb (id int PRIMARY KEY, v text);
CREATE TABLE tf (id int PRIMARY KEY, v text);
CREATE TABLE ok (id int PRIMARY KEY, v text);";

/// 1,000,000 x, a NUL, and an é: 1,000,003 bytes of UTF-8.
fn big_value() -> Vec<u8> {
    let mut v = vec![b'x'; 1_000_000];
    v.push(0);
    v.extend_from_slice("é".as_bytes());
    v
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_jsonb_cannot_hold_are_quarantined_exactly_and_retried() {
    let m = crate::support::start_mariadb(MARIA_SCHEMA).await;
    let p = crate::support::start_postgres(PG_SCHEMA).await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["tn", "tl", "tb", "tf", "ok"],
    )
    .await;
    let run = crate::support::start_synced(&url).await;
    let pgc = crate::support::connect(&p.conninfo("app")).await;
    let control = crate::support::connect(&url).await;
    let mut mc = crate::support::mysql_conn(&m).await;

    mc.query_drop("INSERT INTO tn VALUES (1, CONCAT('a', CHAR(0), 'b'))")
        .await
        .unwrap();
    // Bytes as they are: ÿ, U+0081 (cp1252 leaves 0x81 undefined), NUL, é.
    mc.query_drop("INSERT INTO tl VALUES (1, X'FF8100E9')")
        .await
        .unwrap();
    mc.exec_drop(
        "INSERT INTO tb VALUES (1, CONVERT(? USING utf8mb4))",
        (big_value(),),
    )
    .await
    .unwrap();
    // The row PostgreSQL never got is updated: an update_missing conflict,
    // recorded with both versions (the incoming one holds a NUL), then the
    // update, recreating the row, is refused and quarantined.
    mc.query_drop("UPDATE tn SET v = CONCAT('c', CHAR(0), 'd') WHERE id = 1")
        .await
        .unwrap();
    mc.query_drop("INSERT INTO ok VALUES (1, 'after the refused ones')")
        .await
        .unwrap();

    // The other table keeps flowing and the direction never fails.
    crate::support::wait_for(
        "the next table's row on PostgreSQL",
        Duration::from_secs(30),
        || crate::support::pg_has_row(&pgc, "ok", 1),
    )
    .await;
    crate::support::wait_for(
        "four confirmed quarantine records",
        Duration::from_secs(15),
        || {
            crate::support::query_bool(
                &control,
                "SELECT count(*) = 4 FROM duplex.quarantine WHERE confirmed AND status = 'pending'",
            )
        },
    )
    .await;
    crate::support::assert_no_direction_failed(&control).await;

    // Each record says why, and reads as JSON (NUL shown as U+2400, the big
    // value abridged; the exact one is in change_exact).
    let rows = control
        .query(
            "SELECT quarantine_id, table_name, op, reason, change::text, octet_length(change_exact::text)
               FROM duplex.quarantine ORDER BY quarantine_id",
            &[],
        )
        .await
        .unwrap();
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, i64>(0).to_string())
        .collect();
    let shown: Vec<(String, String)> = rows.iter().map(|r| (r.get(1), r.get(2))).collect();
    assert_eq!(
        shown,
        [
            ("app.tn", "insert"),
            ("app.tl", "insert"),
            ("app.tb", "insert"),
            ("app.tn", "insert")
        ]
        .map(|(t, o)| (t.to_string(), o.to_string()))
    );
    for r in &rows {
        let reason: String = r.get(3);
        assert!(reason.contains("NUL character"), "{reason}");
        let change: serde_json::Value = serde_json::from_str(&r.get::<_, String>(4)).unwrap();
        assert!(change.get("after").is_some(), "{change}");
    }
    let change_tn: String = rows[0].get(4);
    assert!(change_tn.contains("a\u{2400}b"), "{change_tn}");
    let big_change: String = rows[2].get(4);
    assert!(big_change.len() < 100_000, "readable image not abridged");
    let big_exact: i32 = rows[2].get(5);
    assert!(big_exact > 1_000_000, "exact change too small: {big_exact}");
    let (ok, shown) = crate::support::duplex_cli(&url, &["quarantine", "show", &ids[1]]);
    assert!(ok && shown.contains("NUL character"), "{shown}");
    // The conflict is on record, its incoming version readable.
    let incoming: String = control
        .query_one(
            "SELECT incoming_version::text FROM duplex.conflicts
              WHERE table_name = 'app.tn' AND kind = 'update_missing' AND confirmed",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(incoming.contains("c\u{2400}d"), "{incoming}");

    // The DBA makes the columns able to hold the values and retries: the
    // exact values arrive (text as its UTF-8 bytes), in source order.
    pgc.batch_execute(
        "ALTER TABLE tn ALTER v TYPE bytea USING convert_to(v, 'UTF8');
         ALTER TABLE tl ALTER v TYPE bytea USING convert_to(v, 'UTF8');
         ALTER TABLE tb ALTER v TYPE bytea USING convert_to(v, 'UTF8');",
    )
    .await
    .unwrap();
    let mut args = vec!["quarantine", "retry"];
    args.extend(ids.iter().map(String::as_str));
    let (ok, out) = crate::support::duplex_cli(&url, &args);
    assert!(ok, "{out}");
    crate::support::wait_for("the retries", Duration::from_secs(30), || {
        crate::support::query_bool(
            &control,
            "SELECT count(*) = 4 FROM duplex.quarantine WHERE status = 'retried'",
        )
    })
    .await;
    let got = |sql: &'static str| {
        let pgc = &pgc;
        async move { pgc.query_one(sql, &[]).await.unwrap().get::<_, String>(0) }
    };
    assert_eq!(
        got("SELECT encode(v, 'hex') FROM tn WHERE id = 1").await,
        hex(b"c\0d")
    );
    assert_eq!(
        got("SELECT encode(v, 'hex') FROM tl WHERE id = 1").await,
        hex("ÿ\u{81}\0é".as_bytes())
    );
    let maria_md5: String = mc
        .query_first("SELECT MD5(v) FROM tb WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got("SELECT md5(v) FROM tb WHERE id = 1").await, maria_md5);
    let len: i32 = pgc
        .query_one("SELECT octet_length(v) FROM tb WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(len as usize, big_value().len());

    // A record the control database refuses (a DBA's size limit stands for
    // any limit: field size, packet size) is kept without its value, and
    // the direction goes on.
    control
        .batch_execute(
            "ALTER TABLE duplex.quarantine ADD CONSTRAINT small_records
               CHECK (octet_length(change_exact::text) < 100000) NOT VALID",
        )
        .await
        .unwrap();
    mc.exec_drop(
        "INSERT INTO tf VALUES (1, CONVERT(? USING utf8mb4))",
        (big_value(),),
    )
    .await
    .unwrap();
    mc.query_drop("INSERT INTO ok VALUES (2, 'after the unrecordable one')")
        .await
        .unwrap();
    crate::support::wait_for(
        "the next table's row after an unrecordable change",
        Duration::from_secs(30),
        || crate::support::pg_has_row(&pgc, "ok", 2),
    )
    .await;
    crate::support::wait_for(
        "the record kept without its value",
        Duration::from_secs(15),
        || {
            crate::support::query_bool(
                &control,
                "SELECT count(*) = 1 FROM duplex.quarantine
                  WHERE table_name = 'app.tf' AND confirmed AND status = 'pending' AND change_exact IS NULL
                    AND row_key = 'id=1' AND reason LIKE '%could not be recorded%small_records%'",
            )
        },
    )
    .await;
    // A conflict record the control database refuses is kept without the
    // rows (its versions' vectors and times only), and the direction goes on.
    control
        .batch_execute(
            "ALTER TABLE duplex.conflicts ADD CONSTRAINT small_versions
               CHECK (octet_length(incoming_version::text) < 10000) NOT VALID",
        )
        .await
        .unwrap();
    mc.query_drop("UPDATE tf SET v = CONCAT(v, 'more') WHERE id = 1")
        .await
        .unwrap();
    mc.query_drop("INSERT INTO ok VALUES (3, 'after the unrecordable conflict')")
        .await
        .unwrap();
    crate::support::wait_for(
        "the next table's row after an unrecordable conflict",
        Duration::from_secs(30),
        || crate::support::pg_has_row(&pgc, "ok", 3),
    )
    .await;
    crate::support::wait_for(
        "the conflict kept without its rows",
        Duration::from_secs(15),
        || {
            crate::support::query_bool(
                &control,
                "SELECT count(*) = 1 FROM duplex.conflicts
                  WHERE table_name = 'app.tf' AND kind = 'update_missing' AND confirmed
                    AND incoming_version->'row' = 'null'::jsonb AND incoming_version ? 'vv'",
            )
        },
    )
    .await;
    run.shutdown().await;
}
