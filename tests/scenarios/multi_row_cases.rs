//! Cases for the multi-row UPDATE / DELETE of a MySQL/MariaDB target,
//! written by an outside tester (who saw only the code and the first
//! scenario): many rows of one source transaction, of types, keys and tables
//! the first scenario (`multi_row_writes`) does not cover. After each case
//! both sites hold the same rows (every column as text), and nothing is
//! quarantined or recorded as a conflict unless the case expects it.

use crate::support::site::{self, Db, Engines, Sites};
use crate::support::{query_i64, texts, wait_for};
use std::time::Duration;

/// A text literal for the site's engine (MariaDB reads backslashes as escapes).
fn lit(db: &Db, s: &str) -> String {
    if db.is_pg() {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    }
}

/// Bytes as a literal.
fn bytes(db: &Db, b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if db.is_pg() {
        format!("decode('{hex}', 'hex')")
    } else {
        format!("X'{hex}'")
    }
}

/// Nothing quarantined or in conflict beyond what the case expects, and no
/// direction failed.
async fn check_clean(control_url: &str, quarantined: i64, conflicts: i64) {
    let control = crate::support::connect(control_url).await;
    crate::support::assert_no_direction_failed(&control).await;
    let q = texts(
        &control,
        "SELECT op || ' ' || table_name || ' ' || row_key || ': ' || reason FROM duplex.quarantine ORDER BY quarantine_id",
    )
    .await;
    assert_eq!(q.len() as i64, quarantined, "quarantined: {q:#?}");
    let c = texts(
        &control,
        "SELECT kind || ' ' || table_name || ' ' || row_key FROM duplex.conflicts ORDER BY 1",
    )
    .await;
    assert_eq!(c.len() as i64, conflicts, "conflicts: {c:#?}");
}

/// `UPDATE` statements a MariaDB site has run so far.
async fn com_update(db: &mut Db) -> i64 {
    let v: Vec<(String, String)> = db.query("SHOW GLOBAL STATUS LIKE 'Com_update'").await;
    v[0].1.parse().expect("Com_update is a number")
}

// ---------------------------------------------------------------- types

const TY_PG: &str = "
    CREATE TYPE en_t AS ENUM ('a', 'b', 'c d');
    CREATE TABLE ty (id numeric(20,0) PRIMARY KEY, dt timestamp(6), tm time(6), yr smallint, dd date,
                     en en_t, st text, js json, bl bytea, tx text, fl real, db double precision,
                     vc varchar(40));";
const TY_MY: &str = "
    CREATE TABLE ty (id BIGINT UNSIGNED PRIMARY KEY, dt DATETIME(6) NULL, tm TIME(6) NULL, yr YEAR NULL,
                     dd DATE NULL, en ENUM('a','b','c d') NULL, st SET('x','y','z') NULL, js JSON NULL,
                     bl BLOB NULL, tx TEXT NULL, fl FLOAT NULL, db DOUBLE NULL, vc VARCHAR(40) NULL)
      CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;";
const TY_ROWS: [&str; 2] = [
    "SELECT concat_ws('|', id, coalesce(to_char(dt, 'YYYY-MM-DD HH24:MI:SS.US'), '-'),
            coalesce(to_char(tm::interval, 'HH24:MI:SS.US'), '-'), coalesce(yr::text, '-'),
            coalesce(dd::text, '-'), coalesce(en::text, '-'), coalesce('[' || st || ']', '-'),
            coalesce(js::text, '-'), coalesce('[' || upper(encode(bl, 'hex')) || ']', '-'),
            coalesce('[' || tx || ']', '-'), coalesce(round(fl::numeric, 4)::text, '-'),
            coalesce(round(db::numeric, 4)::text, '-'), coalesce('[' || vc || ']', '-'))
       FROM ty ORDER BY id",
    "SELECT CONCAT_WS('|', id, COALESCE(DATE_FORMAT(dt, '%Y-%m-%d %H:%i:%s.%f'), '-'),
            COALESCE(TIME_FORMAT(tm, '%H:%i:%s.%f'), '-'), COALESCE(CAST(yr AS CHAR), '-'),
            COALESCE(CAST(dd AS CHAR), '-'), COALESCE(CAST(en AS CHAR), '-'), COALESCE(CONCAT('[', st, ']'), '-'),
            COALESCE(js, '-'), COALESCE(CONCAT('[', HEX(bl), ']'), '-'),
            COALESCE(CONCAT('[', tx, ']'), '-'), COALESCE(CAST(CAST(fl AS DECIMAL(30,4)) AS CHAR), '-'),
            COALESCE(CAST(CAST(db AS DECIMAL(30,4)) AS CHAR), '-'), COALESCE(CONCAT('[', vc, ']'), '-'))
       FROM ty ORDER BY id",
];
/// Exact doubles and floats, same engine only (MariaDB both sides).
const TY_EXACT: [&str; 2] = [
    "SELECT concat_ws('|', id, fl::text, db::text) FROM ty ORDER BY id",
    "SELECT CONCAT_WS('|', id, HEX(CAST(fl AS CHAR)), CAST(db AS CHAR), HEX(bl), HEX(tx), HEX(vc)) FROM ty ORDER BY id",
];

const BASE: u64 = 9_223_372_036_854_775_700; // 2^63 - 108: keys straddle 2^63

const TEXTS: [&str; 7] = [
    "",
    "it's",
    "back\\slash \\' \\\\",
    "emoji 😀🎉 ünï",
    "quote \" dq \\n",
    "tab\tnl\nend",
    "%_ like; -- x",
];

/// Column values of row `i` in version `ver`, as literals for `db`.
fn ty_values(db: &Db, i: u64, ver: u64) -> Vec<String> {
    let n = i + ver * 7;
    let null = |every: u64| n % every == 0;
    let pg = db.is_pg();
    let or_null = |c: bool, v: String| if c { "NULL".to_string() } else { v };
    let micros = if n % 4 == 0 {
        0
    } else {
        (n * 123_457) % 1_000_000
    };
    vec![
        or_null(
            null(7),
            format!(
                "{}'20{:02}-{:02}-15 {:02}:30:45.{micros:06}'",
                if pg { "timestamp " } else { "TIMESTAMP " },
                30 + n % 60,
                1 + n % 12,
                n % 24
            ),
        ),
        or_null(
            null(11),
            format!(
                "'{:02}:{:02}:{:02}.{micros:06}'",
                n % 24,
                n % 60,
                (n * 7) % 60
            ),
        ),
        or_null(null(5), format!("{}", 1901 + n % 255)),
        or_null(
            null(13),
            if pg {
                format!("date '1999-12-31' + {}", n * 37)
            } else {
                format!("DATE '1999-12-31' + INTERVAL {} DAY", n * 37)
            },
        ),
        or_null(
            null(3) && n % 2 == 0,
            lit(db, ["a", "b", "c d"][(n % 3) as usize]),
        ),
        or_null(
            null(17),
            lit(db, ["", "x", "x,z", "x,y,z", "y"][(n % 5) as usize]),
        ),
        or_null(
            null(19),
            lit(
                db,
                &format!(
                    "{{\"k\": \"it's \\\"q\\\" \\\\ {}\", \"n\": {n}, \"e\": \"😀\"}}",
                    TEXTS[(n % 7) as usize].replace(['\\', '"', '\n', '\t'], "")
                ),
            ),
        ),
        or_null(
            null(23),
            bytes(
                db,
                &(0..(n % 9) as u8)
                    .map(|b| b.wrapping_mul(37).wrapping_add(n as u8))
                    .collect::<Vec<_>>(),
            ),
        ),
        or_null(
            null(29),
            lit(
                db,
                &format!(
                    "{}{}",
                    TEXTS[(n % 7) as usize],
                    if n % 3 == 0 {
                        String::new()
                    } else {
                        n.to_string()
                    }
                ),
            ),
        ),
        or_null(null(9), format!("{}", (n as f64) * 0.25 - 10.0)),
        or_null(
            null(31),
            // 0.1 * n: not exact in binary; the exact query compares it on MariaDB.
            format!("{:e}", (n as f64) * 0.1 + 1024.0),
        ),
        or_null(null(37), lit(db, TEXTS[((n + 3) % 7) as usize])),
    ]
}

const TY_COLS: [&str; 12] = [
    "dt", "tm", "yr", "dd", "en", "st", "js", "bl", "tx", "fl", "db", "vc",
];

fn ty_insert(db: &Db, i: u64, ver: u64) -> String {
    format!(
        "INSERT INTO ty (id, {}) VALUES ({}, {})",
        TY_COLS.join(", "),
        BASE + i,
        ty_values(db, i, ver).join(", ")
    )
}

fn ty_update(db: &Db, i: u64, ver: u64) -> String {
    let sets: Vec<String> = TY_COLS
        .iter()
        .zip(ty_values(db, i, ver))
        .map(|(c, v)| format!("{c} = {v}"))
        .collect();
    format!("UPDATE ty SET {} WHERE id = {}", sets.join(", "), BASE + i)
}

async fn typed_bulk(engines: Engines) {
    let sites = Sites::start(engines, TY_PG, TY_MY, &["ty"]).await;
    let (mut a, mut b) = sites.connect().await;
    let mut first = Vec::new();
    for i in 0..260 {
        first.push(ty_insert(&a, i, 0));
    }
    a.txn(&first).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let checks: Vec<[&str; 2]> = if engines == Engines::MariaDbMariaDb {
        vec![TY_ROWS, TY_EXACT]
    } else {
        vec![TY_ROWS]
    };
    site::wait_same::<String>(&mut a, &mut b, "the copied rows", &checks).await;

    // One transaction: every row updated (each column to a new value, NULLs,
    // empty strings, quotes, backslashes, emoji), a tenth deleted, a tenth
    // updated then deleted, a tenth deleted and inserted again with new
    // values then updated, a tenth updated twice.
    let mut txn = Vec::new();
    for i in 0..260 {
        match i % 10 {
            3 => txn.push(format!("DELETE FROM ty WHERE id = {}", BASE + i)),
            4 => {
                txn.push(ty_update(&a, i, 1));
                txn.push(format!("DELETE FROM ty WHERE id = {}", BASE + i));
            }
            5 => {
                txn.push(format!("DELETE FROM ty WHERE id = {}", BASE + i));
                txn.push(ty_insert(&a, i, 2));
                txn.push(ty_update(&a, i, 3));
            }
            6 => {
                txn.push(ty_update(&a, i, 1));
                txn.push(ty_update(&a, i, 4));
            }
            _ => txn.push(ty_update(&a, i, 1)),
        }
    }
    let before = com_update(&mut b).await;
    a.txn(&txn).await;
    site::wait_same::<String>(&mut a, &mut b, "the bulk transaction", &checks).await;
    let ran = com_update(&mut b).await - before;
    assert!(ran < 60, "230 row updates in few statements, not {ran}");
    let n = b.count("SELECT count(*) FROM ty").await;
    assert_eq!(n, 208, "rows left");
    // And back: site 2 updates every row in one transaction.
    let mut back = Vec::new();
    for i in 0..260 {
        if i % 10 != 3 && i % 10 != 4 {
            back.push(ty_update(&b, i, 5));
        }
    }
    back.push(format!("DELETE FROM ty WHERE id >= {}", BASE + 250));
    b.txn(&back).await;
    site::wait_same::<String>(&mut a, &mut b, "site 2's bulk transaction", &checks).await;
    check_clean(&sites.control_url, 0, 0).await;
    run.shutdown().await;
}

// ------------------------------------- composite key, case-insensitive text

const CK_PG: &str = "
    CREATE TABLE ck (a integer, b varchar(20), v integer, note varchar(20), PRIMARY KEY (a, b));";
const CK_MY: &str = "
    CREATE TABLE ck (a INT, b VARCHAR(20) COLLATE utf8mb4_general_ci, v INT NULL, note VARCHAR(20) NULL,
                     PRIMARY KEY (a, b)) CHARACTER SET utf8mb4;";
const CK_ROWS: [&str; 2] = [
    "SELECT concat_ws('|', a, b, coalesce(v::text, '-'), coalesce(note, '-')) FROM ck ORDER BY a, b COLLATE \"C\"",
    "SELECT CONCAT_WS('|', a, b, COALESCE(v, '-'), COALESCE(note, '-')) FROM ck ORDER BY a, BINARY b",
];

async fn composite_ci_keys(engines: Engines) {
    let sites = Sites::start(engines, CK_PG, CK_MY, &["ck"]).await;
    let (mut a, mut b) = sites.connect().await;
    let names = ["abc", "Abd", "xyz-é", "q"];
    let mut rows = Vec::new();
    for i in 0..240 {
        rows.push(format!("({}, '{}', {i}, 'n{i}')", i / 4, names[i % 4]));
    }
    a.exec(&format!("INSERT INTO ck VALUES {}", rows.join(", ")))
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    site::wait_same::<String>(&mut a, &mut b, "the copied rows", &[CK_ROWS]).await;

    let upper = a.pick("upper(b)", "UPPER(b)").to_string();
    a.txn(&[
        // An insert first: later inserts of the transaction may join it.
        "INSERT INTO ck VALUES (1000, 'new', 1, 'new')".into(),
        "UPDATE ck SET v = v + 1, note = 'u1' WHERE a < 1000".into(),
        // The same key again, its case changed: deleted and inserted.
        "DELETE FROM ck WHERE a % 5 = 0 AND b = 'abc'".into(),
        "INSERT INTO ck SELECT a, 'ABC', 77, 'again' FROM ck WHERE a % 5 = 0 AND b = 'Abd'".into(),
        // A key changed in case only.
        format!("UPDATE ck SET b = {upper} WHERE a % 3 = 0 AND b = 'xyz-é'"),
        "UPDATE ck SET v = v * 10, note = 'u2' WHERE a % 2 = 0".into(),
        "DELETE FROM ck WHERE a % 7 = 1 AND b = 'q'".into(),
    ])
    .await;
    site::wait_same::<String>(&mut a, &mut b, "the transaction", &[CK_ROWS]).await;
    // Back from site 2: every row in one statement.
    b.exec("UPDATE ck SET v = v + 1000, note = CONCAT(b, '!')")
        .await;
    site::wait_same::<String>(&mut a, &mut b, "site 2's update", &[CK_ROWS]).await;
    check_clean(&sites.control_url, 0, 0).await;
    run.shutdown().await;
}

// ----------------------------------------------------- unique index swaps

const UQ_PG: &str =
    "CREATE TABLE uq (id integer PRIMARY KEY, code integer NOT NULL UNIQUE, v integer);";
const UQ_MY: &str = "CREATE TABLE uq (id INT PRIMARY KEY, code INT NOT NULL UNIQUE, v INT NULL);";
const UQ_ROWS: [&str; 2] = [
    "SELECT concat_ws('|', id, code, coalesce(v::text, '-')) FROM uq ORDER BY id",
    "SELECT CONCAT_WS('|', id, code, COALESCE(v, '-')) FROM uq ORDER BY id",
];

async fn unique_swaps(engines: Engines) {
    let sites = Sites::start(engines, UQ_PG, UQ_MY, &["uq"]).await;
    let (mut a, mut b) = sites.connect().await;
    let rows: Vec<String> = (1..=200).map(|i| format!("({i}, {i}, 0)")).collect();
    a.exec(&format!("INSERT INTO uq VALUES {}", rows.join(", ")))
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    site::wait_same::<String>(&mut a, &mut b, "the copied rows", &[UQ_ROWS]).await;

    // Pairs (2k-1, 2k) swap codes through a negative value; the row with the
    // lower id takes the higher id's code first (in key order the second
    // row still holds it).
    let mut txn = Vec::new();
    for k in 1..=100 {
        let (lo, hi) = (2 * k - 1, 2 * k);
        txn.push(format!(
            "UPDATE uq SET code = -{hi}, v = v + 1 WHERE id = {hi}"
        ));
        txn.push(format!(
            "UPDATE uq SET code = {hi}, v = v + 1 WHERE id = {lo}"
        ));
        txn.push(format!(
            "UPDATE uq SET code = {lo}, v = v + 1 WHERE id = {hi}"
        ));
    }
    a.txn(&txn).await;
    site::wait_same::<String>(&mut a, &mut b, "the swaps", &[UQ_ROWS]).await;
    // A rotation by one, in one statement ordered so the source accepts it.
    a.exec(a.pick(
        "UPDATE uq SET code = code + 1000, v = v + 1; UPDATE uq SET code = code - 999",
        "UPDATE uq SET code = code + 1 ORDER BY code DESC",
    ))
    .await;
    site::wait_same::<String>(&mut a, &mut b, "the rotation", &[UQ_ROWS]).await;
    // Another rotation the other way, on site 2.
    b.exec("UPDATE uq SET code = code - 1, v = v + 5 ORDER BY code ASC")
        .await;
    site::wait_same::<String>(&mut a, &mut b, "site 2's rotation", &[UQ_ROWS]).await;
    check_clean(&sites.control_url, 0, 0).await;
    run.shutdown().await;
}

// ------------------------------------------------------------ foreign keys

const FK_PG: &str = "
    CREATE TABLE par (id integer PRIMARY KEY, note varchar(20));
    CREATE TABLE chi (id integer PRIMARY KEY, par_id integer NOT NULL REFERENCES par(id) ON DELETE CASCADE,
                      note varchar(20));
    CREATE TABLE tree (id integer PRIMARY KEY, up integer REFERENCES tree(id) ON DELETE CASCADE, note varchar(20));";
const FK_MY: &str = "
    CREATE TABLE par (id INT PRIMARY KEY, note VARCHAR(20) NULL);
    CREATE TABLE chi (id INT PRIMARY KEY, par_id INT NOT NULL, note VARCHAR(20) NULL,
                      FOREIGN KEY (par_id) REFERENCES par(id) ON DELETE CASCADE);
    CREATE TABLE tree (id INT PRIMARY KEY, up INT NULL, note VARCHAR(20) NULL,
                       FOREIGN KEY (up) REFERENCES tree(id) ON DELETE CASCADE);";
const FK_ROWS: [[&str; 2]; 3] = [
    [
        "SELECT concat_ws('|', id, coalesce(note, '-')) FROM par ORDER BY id",
        "SELECT CONCAT_WS('|', id, COALESCE(note, '-')) FROM par ORDER BY id",
    ],
    [
        "SELECT concat_ws('|', id, par_id, coalesce(note, '-')) FROM chi ORDER BY id",
        "SELECT CONCAT_WS('|', id, par_id, COALESCE(note, '-')) FROM chi ORDER BY id",
    ],
    [
        "SELECT concat_ws('|', id, coalesce(up::text, '-'), coalesce(note, '-')) FROM tree ORDER BY id",
        "SELECT CONCAT_WS('|', id, COALESCE(up, '-'), COALESCE(note, '-')) FROM tree ORDER BY id",
    ],
];

async fn cascades(engines: Engines) {
    let sites = Sites::start(engines, FK_PG, FK_MY, &["par", "chi", "tree"]).await;
    let (mut a, mut b) = sites.connect().await;
    let par: Vec<String> = (1..=100).map(|i| format!("({i}, 'p{i}')")).collect();
    let chi: Vec<String> = (1..=300)
        .map(|i| format!("({i}, {}, 'c{i}')", 1 + i % 100))
        .collect();
    // A tree: node i's parent is i / 2 (node 1 the root).
    let tree: Vec<String> = (1..=255)
        .map(|i| {
            let up = if i == 1 {
                "NULL".to_string()
            } else {
                (i / 2).to_string()
            };
            format!("({i}, {up}, 't{i}')")
        })
        .collect();
    a.exec(&format!(
        "INSERT INTO par VALUES {}; INSERT INTO chi VALUES {}; INSERT INTO tree VALUES {}",
        par.join(", "),
        chi.join(", "),
        tree.join(", ")
    ))
    .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    site::wait_same::<String>(&mut a, &mut b, "the copied rows", &FK_ROWS).await;

    a.txn(&[
        "UPDATE chi SET note = 'u' WHERE id % 2 = 0".into(),
        "UPDATE par SET note = 'u' WHERE id % 3 = 0".into(),
        // Half the parents go, their children by cascade.
        "DELETE FROM par WHERE id % 2 = 1".into(),
        "UPDATE chi SET note = 'v'".into(),
        // Subtrees 2 and 6 go, the rest of the tree changes.
        "UPDATE tree SET note = 'x'".into(),
        "DELETE FROM tree WHERE id IN (2, 6)".into(),
        "UPDATE tree SET note = 'y' WHERE id % 3 = 0".into(),
    ])
    .await;
    site::wait_same::<String>(&mut a, &mut b, "the cascades", &FK_ROWS).await;
    // Leaves first, one statement per level, from site 2.
    b.txn(&[
        "DELETE FROM tree WHERE id >= 128".into(),
        "DELETE FROM tree WHERE id >= 64".into(),
        "UPDATE tree SET note = 'z'".into(),
    ])
    .await;
    site::wait_same::<String>(&mut a, &mut b, "site 2's deletes", &FK_ROWS).await;
    check_clean(&sites.control_url, 0, 0).await;
    run.shutdown().await;
}

// ------------------------------------------- a target-only child refuses one

async fn target_only_child(engines: Engines) {
    let sites = Sites::start(engines, FK_PG, FK_MY, &["par"]).await;
    let (mut a, mut b) = sites.connect().await;
    let par: Vec<String> = (1..=100).map(|i| format!("({i}, 'p{i}')")).collect();
    a.exec(&format!("INSERT INTO par VALUES {}", par.join(", ")))
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    site::wait_same::<String>(&mut a, &mut b, "the copied rows", &[FK_ROWS[0]]).await;
    // Site 2 alone has a child of parent 41 (chi is not synced; no cascade).
    b.exec("CREATE TABLE keep (id INT PRIMARY KEY, par_id INT NOT NULL, FOREIGN KEY (par_id) REFERENCES par(id));
            INSERT INTO keep VALUES (1, 41)")
        .await;
    a.txn(&[
        "UPDATE par SET note = 'before'".into(),
        "DELETE FROM par WHERE id BETWEEN 21 AND 60".into(),
        "UPDATE par SET note = 'after' WHERE id > 60".into(),
    ])
    .await;
    let after = [
        "SELECT count(*) FROM par WHERE note = 'after'",
        "SELECT count(*) FROM par WHERE note = 'after'",
    ];
    site::wait_same::<i64>(&mut a, &mut b, "the transaction", &[after]).await;
    let on_b: Vec<String> = b
        .query("SELECT CONCAT_WS('|', id, note) FROM par ORDER BY id")
        .await;
    let mut expected: Vec<String> = (1..=20).map(|i| format!("{i}|before")).collect();
    expected.push("41|before".into());
    expected.extend((61..=100).map(|i| format!("{i}|after")));
    assert_eq!(on_b, expected, "every delete but the refused one applied");
    let control = crate::support::connect(&sites.control_url).await;
    wait_for(
        "the refused delete quarantined",
        Duration::from_secs(30),
        || async {
            query_i64(
                &control,
                "SELECT count(*) FROM duplex.quarantine WHERE confirmed",
            )
            .await
                >= 1
        },
    )
    .await;
    check_clean(&sites.control_url, 1, 0).await;
    let key = texts(
        &control,
        "SELECT op || ' ' || row_key FROM duplex.quarantine",
    )
    .await;
    assert_eq!(key, vec!["delete id=41".to_string()]);
    run.shutdown().await;
}

// --------------------------------- triggers, BIT, and a CHECK refusing one

const TB_PG: &str = "
    CREATE TABLE trg (id integer PRIMARY KEY, v integer, note varchar(20));
    CREATE TABLE bits (id integer PRIMARY KEY, flags bytea, v integer);
    CREATE TABLE chk (id integer PRIMARY KEY, v integer, note varchar(20));";
const TB_MY: &str = "
    CREATE TABLE trg (id INT PRIMARY KEY, v INT NULL, note VARCHAR(20) NULL);
    CREATE TABLE trg_log (n INT AUTO_INCREMENT PRIMARY KEY, id INT, old_v INT NULL, new_v INT NULL);
    CREATE TRIGGER trg_up AFTER UPDATE ON trg FOR EACH ROW INSERT INTO trg_log (id, old_v, new_v) VALUES (NEW.id, OLD.v, NEW.v);
    CREATE TRIGGER trg_del AFTER DELETE ON trg FOR EACH ROW INSERT INTO trg_log (id, old_v, new_v) VALUES (OLD.id, OLD.v, NULL);
    CREATE TABLE bits (id INT PRIMARY KEY, flags BIT(12) NULL, v INT NULL);
    CREATE TABLE chk (id INT PRIMARY KEY, v INT NULL, note VARCHAR(20) NULL);";
const TB_ROWS: [[&str; 2]; 2] = [
    [
        "SELECT concat_ws('|', id, coalesce(v::text, '-'), coalesce(note, '-')) FROM trg ORDER BY id",
        "SELECT CONCAT_WS('|', id, COALESCE(v, '-'), COALESCE(note, '-')) FROM trg ORDER BY id",
    ],
    [
        "SELECT concat_ws('|', id, coalesce(v::text, '-'), coalesce(note, '-')) FROM chk ORDER BY id",
        "SELECT CONCAT_WS('|', id, COALESCE(v, '-'), COALESCE(note, '-')) FROM chk ORDER BY id",
    ],
];
const BITS_ROWS: [&str; 2] = [
    "SELECT concat_ws('|', id, coalesce(upper(encode(flags, 'hex')), '-'), coalesce(v::text, '-')) FROM bits ORDER BY id",
    "SELECT CONCAT_WS('|', id, COALESCE(HEX(flags), '-'), COALESCE(v, '-')) FROM bits ORDER BY id",
];

async fn triggers_bits_checks(engines: Engines) {
    let sites = Sites::start(engines, TB_PG, TB_MY, &["trg", "bits", "chk"]).await;
    let (mut a, mut b) = sites.connect().await;
    let pg = a.is_pg();
    let rows: Vec<String> = (1..=150).map(|i| format!("({i}, {i}, 'n{i}')")).collect();
    let bits: Vec<String> = (1..=150)
        .map(|i| {
            if pg {
                format!("({i}, decode('{:04x}', 'hex'), {i})", i * 23 % 4096)
            } else {
                format!("({i}, b'{:b}', {i})", i * 23 % 4096)
            }
        })
        .collect();
    a.exec(&format!(
        "INSERT INTO trg VALUES {r}; INSERT INTO chk VALUES {r}; INSERT INTO bits VALUES {}",
        bits.join(", "),
        r = rows.join(", ")
    ))
    .await;
    crate::support::connect(&sites.control_url)
        .await
        .batch_execute(
            "UPDATE duplex.link_tables SET fire_triggers = true WHERE table_name = 'trg'",
        )
        .await
        .expect("fire_triggers");
    let run = crate::support::start_synced(&sites.control_url).await;
    site::wait_same::<String>(&mut a, &mut b, "the copied rows", &TB_ROWS).await;
    if !pg {
        site::wait_same::<String>(&mut a, &mut b, "the copied bits", &[BITS_ROWS]).await;
    }
    b.exec("ALTER TABLE chk ADD CONSTRAINT chk_v CHECK (v <> 56000)")
        .await;
    b.exec("DELETE FROM trg_log").await;

    let bit_update = if pg {
        "UPDATE bits SET flags = CASE WHEN id % 4 = 0 THEN NULL ELSE decode(lpad(to_hex((id * 31) % 4096), 4, '0'), 'hex') END, v = v + 1"
    } else {
        "UPDATE bits SET flags = CASE WHEN id % 4 = 0 THEN NULL ELSE (id * 31) % 4096 END, v = v + 1"
    };
    a.txn(&[
        "UPDATE trg SET v = v * 1000, note = 'u1'".into(),
        "DELETE FROM trg WHERE id % 10 = 0".into(),
        "UPDATE trg SET v = v + 1 WHERE id % 3 = 0".into(),
        bit_update.into(),
        // Row 56 is refused by site 2's CHECK; it and others change again.
        "UPDATE chk SET v = v * 1000, note = 'u1'".into(),
        "UPDATE chk SET v = v + 1, note = 'u2' WHERE id % 7 = 0".into(),
        "DELETE FROM chk WHERE id % 11 = 0".into(),
    ])
    .await;
    let done = [
        "SELECT count(*) FROM trg WHERE note = 'u1'",
        "SELECT count(*) FROM trg WHERE note = 'u1'",
    ];
    site::wait_same::<i64>(&mut a, &mut b, "the transaction", &[done]).await;
    site::wait_same::<String>(&mut a, &mut b, "the trigger table", &[TB_ROWS[0]]).await;
    if !pg {
        site::wait_same::<String>(&mut a, &mut b, "the bits", &[BITS_ROWS]).await;
    } else {
        let got: Vec<String> = b
            .query("SELECT CONCAT_WS('|', id, COALESCE(HEX(flags), '-'), v) FROM bits WHERE id <= 5 ORDER BY id")
            .await;
        assert_eq!(
            got,
            vec!["1|1F|2", "2|3E|3", "3|5D|4", "4|-|5", "5|9B|6"],
            "bits on site 2"
        );
    }
    // The trigger fired once per applied update (two for the rows updated
    // twice, and one per delete), in the source's order per row.
    let log: Vec<String> = b
        .query("SELECT CONCAT_WS('|', id, COALESCE(old_v, '-'), COALESCE(new_v, '-')) FROM trg_log WHERE id IN (3, 10, 30) ORDER BY n")
        .await;
    assert_eq!(
        log,
        vec![
            "3|3|3000",
            "10|10|10000",
            "30|30|30000",
            "10|10000|-",
            "30|30000|-",
            "3|3000|3001"
        ],
        "trigger log"
    );
    let trg_log = b.count("SELECT count(*) FROM trg_log").await;
    assert_eq!(trg_log, 150 + 15 + 45, "trigger firings");
    // chk: as site 1 has it: row 56's first update is refused (quarantined),
    // its second, a whole row, applies.
    let on_b: Vec<String> = b
        .query("SELECT CONCAT_WS('|', id, v, note) FROM chk ORDER BY id")
        .await;
    let expected: Vec<String> = (1..=150)
        .filter(|i| i % 11 != 0)
        .map(|i| match i {
            i if i % 7 == 0 => format!("{i}|{}|u2", i * 1000 + 1),
            i => format!("{i}|{}|u1", i * 1000),
        })
        .collect();
    assert_eq!(on_b, expected, "chk on site 2");
    let control = crate::support::connect(&sites.control_url).await;
    wait_for("row 56 quarantined", Duration::from_secs(30), || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.quarantine WHERE confirmed",
        )
        .await
            >= 1
    })
    .await;
    let q = texts(
        &control,
        "SELECT op || ' ' || table_name || ' ' || row_key FROM duplex.quarantine ORDER BY quarantine_id",
    )
    .await;
    assert!(
        q.iter().all(|r| r.ends_with("chk id=56")),
        "only row 56 quarantined: {q:?}"
    );
    check_clean(&sites.control_url, 1, 0).await;
    run.shutdown().await;
}

// ------------------------------------ both sites update the same rows at once

const CB_ROWS: [&str; 2] = [
    "SELECT concat_ws('|', id, coalesce(v::text, '-'), coalesce(note, '-')) FROM s ORDER BY id",
    "SELECT CONCAT_WS('|', id, COALESCE(v, '-'), COALESCE(note, '-')) FROM s ORDER BY id",
];

async fn concurrent_bulk(engines: Engines) {
    let sites = Sites::start(
        engines,
        "CREATE TABLE s (id integer PRIMARY KEY, v integer, note varchar(20));",
        "CREATE TABLE s (id INT PRIMARY KEY, v INT NULL, note VARCHAR(20) NULL);",
        &["s"],
    )
    .await;
    let (mut a, mut b) = sites.connect().await;
    let rows: Vec<String> = (1..=400).map(|i| format!("({i}, {i}, 'n')")).collect();
    a.exec(&format!("INSERT INTO s VALUES {}", rows.join(", ")))
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    site::wait_same::<String>(&mut a, &mut b, "the copied rows", &[CB_ROWS]).await;
    for round in 0..5 {
        let sa = format!("UPDATE s SET v = v + 1, note = 'a{round}' WHERE id % 2 = 0 OR id < 200");
        let sb =
            format!("UPDATE s SET v = v + 100, note = 'b{round}' WHERE id % 3 = 0 OR id > 250");
        let da = format!("DELETE FROM s WHERE id = {}", 300 + round * 7);
        let (ta, tb) = ([sa, da], [sb]);
        let (ra, rb) = tokio::join!(a.try_txn(&ta), b.try_txn(&tb));
        assert!(ra && rb, "both writes ran");
    }
    site::wait_same::<String>(&mut a, &mut b, "the concurrent updates", &[CB_ROWS]).await;
    let control = crate::support::connect(&sites.control_url).await;
    crate::support::assert_no_direction_failed(&control).await;
    assert_eq!(
        query_i64(&control, "SELECT count(*) FROM duplex.quarantine").await,
        0
    );
    // Records are confirmed just after their group commits.
    wait_for(
        "every conflict record confirmed",
        Duration::from_secs(30),
        || async {
            query_i64(
                &control,
                "SELECT count(*) FROM duplex.conflicts WHERE NOT confirmed",
            )
            .await
                == 0
        },
    )
    .await;
    crate::support::assert_conflicts_counted(&control, &run).await;
    run.shutdown().await;
}

crate::support::scenario_tests! {
    concurrent_bulk:
    multi_row_concurrent_bulk_pg_mariadb(Engines::PgMariaDb);
    multi_row_concurrent_bulk_mariadb_mariadb(Engines::MariaDbMariaDb);
}
crate::support::scenario_tests! {
    typed_bulk:
    multi_row_typed_bulk_pg_mariadb(Engines::PgMariaDb);
    multi_row_typed_bulk_mariadb_mariadb(Engines::MariaDbMariaDb);
}
crate::support::scenario_tests! {
    composite_ci_keys:
    multi_row_composite_ci_keys_pg_mariadb(Engines::PgMariaDb);
    multi_row_composite_ci_keys_mariadb_mariadb(Engines::MariaDbMariaDb);
}
crate::support::scenario_tests! {
    unique_swaps:
    multi_row_unique_swaps_pg_mariadb(Engines::PgMariaDb);
    multi_row_unique_swaps_mariadb_mariadb(Engines::MariaDbMariaDb);
}
crate::support::scenario_tests! {
    cascades:
    multi_row_cascades_pg_mariadb(Engines::PgMariaDb);
    multi_row_cascades_mariadb_mariadb(Engines::MariaDbMariaDb);
}
crate::support::scenario_tests! {
    target_only_child:
    multi_row_target_only_child_pg_mariadb(Engines::PgMariaDb);
    multi_row_target_only_child_mariadb_mariadb(Engines::MariaDbMariaDb);
}
crate::support::scenario_tests! {
    triggers_bits_checks:
    multi_row_triggers_bits_checks_pg_mariadb(Engines::PgMariaDb);
    multi_row_triggers_bits_checks_mariadb_mariadb(Engines::MariaDbMariaDb);
}
