//! Schema changes made while the application writes on both sites: a column
//! added on both sites (in either order), added on one site only, dropped on
//! one site. A change both sites can take is picked up by itself; a
//! one-sided one holds only its table's changes, in order, and the rest of
//! the link flows; once the other site matches, the held changes are
//! applied by themselves. Nothing is lost: the sites are compared row by
//! row at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::site::{wait_same, Db, Endpoint, Engines, Sites};
use crate::support::{connect, query_i64, wait_for};

const PG: &str = "CREATE TABLE t (id int PRIMARY KEY, note text);
    CREATE TABLE u (id int PRIMARY KEY, note text);";
const MY: &str = "CREATE TABLE t (id int PRIMARY KEY, note text);
    CREATE TABLE u (id int PRIMARY KEY, note text);";
const T: Duration = Duration::from_secs(60);

/// An application writing on one site until told to stop: each transaction
/// inserts a row of `t`, updates it in the same transaction (two statements
/// on one key), and inserts a row of `u`. Keys `base + 2i`: the two sites'
/// writers never meet on a key. Returns how many transactions committed.
struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<i64>,
}

impl Writer {
    fn start(site: Endpoint, base: i64) -> Writer {
        Writer::start_on(site, base, "t")
    }

    /// The same, with `t` under the name `table` (renamed).
    fn start_on(site: Endpoint, base: i64, table: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut db = site.connect().await;
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                let id = base + 2 * i;
                db.txn(&[
                    format!("INSERT INTO {table} (id, note) VALUES ({id}, 'w{id}')"),
                    format!("UPDATE {table} SET note = 'w{id}+' WHERE id = {id}"),
                    format!("INSERT INTO u (id, note) VALUES ({id}, 'w{id}')"),
                ])
                .await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            i
        });
        Writer { stop, task }
    }

    async fn stop(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer")
    }
}

/// Both sites' rows of `t` (with its column `extra`) and `u`, equal.
async fn wait_equal(a: &mut Db, b: &mut Db) {
    wait_same::<(i32, Option<String>, Option<i32>)>(
        a,
        b,
        "both sites' rows of t",
        &[["SELECT id, note, extra FROM t ORDER BY id"; 2]],
    )
    .await;
    wait_same::<(i32, Option<String>)>(
        a,
        b,
        "both sites' rows of u",
        &[["SELECT id, note FROM u ORDER BY id"; 2]],
    )
    .await;
}

/// A row written on `from` reaches `to`.
async fn flows(from: &mut Db, to: &mut Db, table: &str, id: i64) -> Duration {
    let started = Instant::now();
    from.exec(&format!(
        "INSERT INTO {table} (id, note) VALUES ({id}, 'probe')"
    ))
    .await;
    let sql = format!("SELECT count(*) FROM {table} WHERE id = {id}");
    let deadline = Instant::now() + T;
    while to.count(&sql).await == 0 {
        assert!(
            Instant::now() < deadline,
            "row {id} of {table} did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Site `first` (0 or 1) and the other, as test connections.
async fn sites_from(sites: &Sites, first: usize) -> (Db, Db) {
    let (a, b) = sites.connect().await;
    if first == 0 {
        (a, b)
    } else {
        (b, a)
    }
}

/// Wait until `table_overview` shows `t` held for its shape, coming from
/// `source` (any direction: `None`), with `also` (more SQL conditions).
async fn wait_held(control: &tokio_postgres::Client, source: Option<i64>, also: &str) {
    let from = source.map_or(String::new(), |s| format!(" AND source_site = {s}"));
    let sql = format!(
        "SELECT count(*) = 1 FROM duplex.table_overview
          WHERE table_name LIKE '%.t' AND held_for_shape{from} {also}"
    );
    wait_for(&format!("t held for its shape ({sql})"), T, || {
        crate::support::query_bool(control, &sql)
    })
    .await;
}

/// Nothing left quarantined or held, and no conflict recorded.
async fn nothing_held_nor_conflicting(control: &tokio_postgres::Client) {
    let left = crate::support::texts(
        control,
        "SELECT concat_ws(' ', op, status, table_name, row_key, reason) FROM duplex.quarantine
          WHERE status IN ('pending', 'held', 'retry')",
    )
    .await;
    assert!(
        left.is_empty(),
        "nothing quarantined row by row, nothing held any more: {left:?}"
    );
    let conflicts = crate::support::texts(
        control,
        "SELECT concat_ws(' ', source_site, table_name, row_key, kind, outcome, local_version, incoming_version) FROM duplex.conflicts",
    )
    .await;
    assert!(conflicts.is_empty(), "no conflict: {conflicts:?}");
}

/// A column added on site `first`, written there, then added on the other:
/// `t`'s changes from the first site wait for it, in order, while `u`
/// flows both ways; then they are applied by themselves. Both sites'
/// applications write all along.
async fn added_on_one_then_the_other(engines: Engines, first: usize) {
    let sites = Sites::start(engines, PG, MY, &["t", "u"]).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut x, mut y) = sites_from(&sites, first).await;
    let wa = Writer::start(sites.servers[0].endpoint(), 1_000);
    let wb = Writer::start(sites.servers[1].endpoint(), 1_001);
    tokio::time::sleep(Duration::from_millis(500)).await;

    x.exec("ALTER TABLE t ADD COLUMN extra int").await;
    x.exec("INSERT INTO t (id, note, extra) VALUES (1, 'one', 11)")
        .await;
    x.exec("UPDATE t SET extra = 7 WHERE id = 1000").await;
    // The rest of the link flows, both ways, and so does t from the other site.
    let took = flows(&mut x, &mut y, "u", 1).await;
    eprintln!("u flows while t waits: {took:?}");
    flows(&mut y, &mut x, "u", 2).await;
    flows(&mut y, &mut x, "t", 2).await;
    assert_eq!(y.count("SELECT count(*) FROM t WHERE id = 1").await, 0);

    let control = connect(&sites.control_url).await;
    wait_held(
        &control,
        None,
        "AND shape_difference LIKE '%carry column extra that site%'",
    )
    .await;
    let (_, status) = crate::support::duplex_cli(&sites.control_url, &["status"]);
    assert!(
        status.contains("HELD") && status.contains("column extra"),
        "{status}"
    );
    // duplex restarts meanwhile: the table stays in the link, still held.
    run.shutdown().await;
    let run = crate::support::start_synced(&sites.control_url).await;
    x.exec("UPDATE t SET extra = 8 WHERE id = 1").await;
    flows(&mut x, &mut y, "u", 3).await;
    assert_eq!(y.count("SELECT count(*) FROM t WHERE id = 1").await, 0);

    let altered = Instant::now();
    y.exec("ALTER TABLE t ADD COLUMN extra int").await;
    wait_for("row 1 with its new column on the other site", T, || async {
        let (_, mut y) = sites_from(&sites, first).await;
        y.count("SELECT count(*) FROM t WHERE id = 1 AND extra = 8")
            .await
            == 1
    })
    .await;
    eprintln!(
        "t streams again {:?} after the second ALTER",
        altered.elapsed()
    );
    let (na, nb) = (wa.stop().await, wb.stop().await);
    let (mut a, mut b) = sites.connect().await;
    wait_equal(&mut a, &mut b).await;
    assert_eq!(
        a.count("SELECT count(*) FROM u").await,
        na + nb + 3,
        "every row of both writers, once"
    );
    assert_eq!(
        a.count("SELECT count(*) FROM t WHERE id = 1000 AND extra = 7")
            .await,
        1
    );
    nothing_held_nor_conflicting(&control).await;
    run.shutdown().await;
}

/// A column dropped on site a while both sites write: b's changes of `t`
/// still carry it, so they wait (a's flow to b, where the column stays
/// NULL). The DBA then makes the sites match: drops it on b too
/// (`exclude` false), or keeps it on b only through the configuration;
/// the held changes are applied by themselves, without the column.
async fn dropped_on_one_site(engines: Engines, exclude: bool) {
    let pg = "CREATE TABLE t (id int PRIMARY KEY, note text, extra int);
        CREATE TABLE u (id int PRIMARY KEY, note text);";
    let my = pg;
    let sites = Sites::start(engines, pg, my, &["t", "u"]).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    b.exec("INSERT INTO t (id, note, extra) VALUES (1, 'one', 1)")
        .await;
    wait_same::<(i32, Option<String>)>(
        &mut a,
        &mut b,
        "row 1",
        &[["SELECT id, note FROM t ORDER BY id"; 2]],
    )
    .await;
    let wa = Writer::start(sites.servers[0].endpoint(), 1_000);
    let wb = Writer::start(sites.servers[1].endpoint(), 1_001);
    tokio::time::sleep(Duration::from_millis(500)).await;

    a.exec("ALTER TABLE t DROP COLUMN extra").await;
    b.exec("UPDATE t SET note = 'changed on b', extra = 2 WHERE id = 1")
        .await;
    flows(&mut b, &mut a, "u", 2).await;
    flows(&mut a, &mut b, "t", 3).await;
    let control = connect(&sites.control_url).await;
    wait_held(
        &control,
        Some(2),
        "AND shape_difference LIKE '%carry column extra that site%'",
    )
    .await;
    assert_eq!(
        a.count("SELECT count(*) FROM t WHERE note = 'changed on b'")
            .await,
        0,
        "held"
    );

    // b writes t no more: the fix alone must release the held changes
    // (the source's catalog is read again, not only its next change).
    let nb = wb.stop().await;
    let fixed = Instant::now();
    if exclude {
        control
            .batch_execute(
                "INSERT INTO duplex.column_mappings (link_id, schema_name, table_name, site_id, column_name, synced)
                 VALUES (1, 'public', 't', 2, 'extra', false)",
            )
            .await
            .expect("keep the column on b only");
    } else {
        b.exec("ALTER TABLE t DROP COLUMN extra").await;
    }
    wait_for("b's held changes applied on a", T, || async {
        let (mut a, _) = sites.connect().await;
        a.count("SELECT count(*) FROM t WHERE note = 'changed on b'")
            .await
            == 1
    })
    .await;
    eprintln!("t streams again {:?} after the fix", fixed.elapsed());
    let na = wa.stop().await;
    wait_same::<(i32, Option<String>)>(
        &mut a,
        &mut b,
        "both sites' rows",
        &[
            ["SELECT id, note FROM t ORDER BY id"; 2],
            ["SELECT id, note FROM u ORDER BY id"; 2],
        ],
    )
    .await;
    assert_eq!(
        a.count("SELECT count(*) FROM u").await,
        na + nb + 1,
        "every row of both writers, once"
    );
    nothing_held_nor_conflicting(&control).await;
    run.shutdown().await;
}

/// `t` renamed on one site while both sites write (that site's application
/// then writes under the new name): its rows under the other name are not
/// the configured table's, so the table stops in that direction with the
/// way back, and the other site's changes of `t` wait for the name; `u`
/// flows all along. The DBA renames it back, resyncs the table and
/// discards the record, and everything is equal.
async fn renamed(engines: Engines, site: usize, rename: &str, back: &str) {
    let sites = Sites::start(engines, PG, MY, &["t", "u"]).await;
    let name = match (engines, site) {
        (Engines::PgMariaDb, 0) => "pg",
        (Engines::PgMariaDb, _) => "maria",
        (_, 0) => "a",
        _ => "b",
    };
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    let writers = |base: i64, table: &'static str| {
        (0..2)
            .map(|i| {
                let t = if i == site { table } else { "t" };
                Writer::start_on(sites.servers[i].endpoint(), base + i as i64, t)
            })
            .collect::<Vec<_>>()
    };
    let stop = |ws: Vec<Writer>| async move {
        let mut n = 0;
        for w in ws {
            n += w.stop().await;
        }
        n
    };
    // The link streams both ways before the rename.
    let ws = writers(1_000, "t");
    tokio::time::sleep(Duration::from_millis(500)).await;
    flows(&mut a, &mut b, "t", 1).await;
    flows(&mut b, &mut a, "t", 4).await;
    let mut written = stop(ws).await;
    if site == 0 {
        a.exec(rename).await;
    } else {
        b.exec(rename).await;
    }
    let ws = writers(100_000, "t_renamed");
    flows(&mut a, &mut b, "u", 2).await;
    flows(&mut b, &mut a, "u", 3).await;
    let control = connect(&sites.control_url).await;
    let (renamed_from, other) = ((site + 1) as i64, (2 - site) as i64);
    wait_for("t stopped from the renaming site, saying why and what to do", T, || async {
        query_i64(
            &control,
            &format!(
                "SELECT count(*) FROM duplex.table_overview WHERE table_name LIKE '%.t' AND source_site = {renamed_from}
                    AND stopped AND stop_reason LIKE '%renamed%on site {name}%' AND stop_reason LIKE '%duplex repair --from {name} --table t%'"
            ),
        )
        .await
            == 1
    })
    .await;
    let why = format!("AND shape_difference LIKE '%does not exist on site {name}%'");
    wait_held(&control, Some(other), &why).await;

    // The way back the record gives: the name back, a resync of the table
    // (rows written under the other name were not replicated), the record
    // discarded.
    written += stop(ws).await;
    if site == 0 {
        a.exec(back).await;
    } else {
        b.exec(back).await;
    }
    let (ok, out) = crate::support::duplex_cli(
        &sites.control_url,
        &["repair", "--from", name, "--table", "t"],
    );
    assert!(ok, "repair: {out}");
    let ids = crate::support::texts(
        &control,
        "SELECT quarantine_id::text FROM duplex.quarantine WHERE op = 'statement' AND status = 'pending'",
    )
    .await;
    let mut args = vec!["quarantine", "discard"];
    args.extend(ids.iter().map(String::as_str));
    let (ok, out) = crate::support::duplex_cli(&sites.control_url, &args);
    assert!(ok, "discard: {out}");
    written += stop(writers(200_000, "t")).await;
    wait_same::<(i32, Option<String>)>(
        &mut a,
        &mut b,
        "both sites' rows",
        &[
            ["SELECT id, note FROM t ORDER BY id"; 2],
            ["SELECT id, note FROM u ORDER BY id"; 2],
        ],
    )
    .await;
    assert_eq!(a.count("SELECT count(*) FROM t").await, written + 2);
    assert_eq!(a.count("SELECT count(*) FROM u").await, written + 2);
    let left = crate::support::texts(
        &control,
        "SELECT concat_ws(' ', op, status, table_name, row_key) FROM duplex.quarantine
          WHERE status IN ('pending', 'held', 'retry')",
    )
    .await;
    assert!(left.is_empty(), "nothing left held: {left:?}");
    run.shutdown().await;
}

crate::support::scenario_tests! {
    renamed:
    a_table_renamed_on_postgresql_stops_with_the_way_back(
        Engines::PgPg, 0, "ALTER TABLE t RENAME TO t_renamed", "ALTER TABLE t_renamed RENAME TO t");
    a_table_renamed_on_mariadb_stops_with_the_way_back(
        Engines::PgMariaDb, 1, "RENAME TABLE t TO t_renamed", "RENAME TABLE t_renamed TO t");
}

/// `duplex ddl` run while both sites write (in a blocking task: the CLI
/// waits for the running duplex, which runs in this process).
async fn ddl(control_url: &str, statement: &str) -> String {
    let (url, owned) = (control_url.to_string(), statement.to_string());
    let (ok, out) = tokio::task::spawn_blocking(move || {
        crate::support::duplex_cli(&url, &["ddl", "--link", "l", &owned])
    })
    .await
    .expect("duplex ddl");
    assert!(ok, "duplex ddl {statement}: {out}");
    out
}

/// Ask the running duplex for `statement` through the control schema
/// (`duplex.request_ddl`), and wait until the request ends in `state` with
/// a result that says `says`.
async fn request_ddl(control: &tokio_postgres::Client, statement: &str, state: &str, says: &str) {
    let id = query_i64(
        control,
        &format!("SELECT duplex.request_ddl('l', '{statement}')"),
    )
    .await;
    let check = format!(
        "SELECT state = '{state}' AND result LIKE '%{says}%' FROM duplex.ddl_requests WHERE request_id = {id}"
    );
    wait_for(&format!("request {statement} {state}"), T, || {
        crate::support::query_bool(control, &check)
    })
    .await;
}

/// A coordinated change under load: `duplex ddl` adds a column to both
/// sites (translated for MariaDB), then drops it, while both sites write;
/// the table's changes meanwhile are held and applied after, nothing is
/// lost, no conflict.
async fn coordinated_ddl_under_load(engines: Engines) {
    let sites = Sites::start(engines, PG, MY, &["t", "u"]).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    let wa = Writer::start(sites.servers[0].endpoint(), 1_000);
    let wb = Writer::start(sites.servers[1].endpoint(), 1_001);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (_, dry) = crate::support::duplex_cli(
        &sites.control_url,
        &[
            "ddl",
            "--link",
            "l",
            "--dry-run",
            "ALTER TABLE public.t ADD COLUMN extra integer",
        ],
    );
    assert!(dry.contains("would run on"), "{dry}");
    let started = Instant::now();
    let out = ddl(
        &sites.control_url,
        "ALTER TABLE public.t ADD COLUMN extra integer",
    )
    .await;
    eprintln!(
        "duplex ddl ADD COLUMN under load took {:?}:\n{out}",
        started.elapsed()
    );
    assert!(
        out.contains("has the same columns on both sites") && out.contains("resumed"),
        "{out}"
    );
    a.exec("INSERT INTO t (id, note, extra) VALUES (1, 'a', 1)")
        .await;
    b.exec("INSERT INTO t (id, note, extra) VALUES (2, 'b', 2)")
        .await;
    b.exec("UPDATE t SET extra = 3 WHERE id = 1000").await;
    wait_equal(&mut a, &mut b).await;

    let started = Instant::now();
    let out = ddl(&sites.control_url, "ALTER TABLE t DROP COLUMN extra").await;
    eprintln!(
        "duplex ddl DROP COLUMN under load took {:?}:\n{out}",
        started.elapsed()
    );
    let (na, nb) = (wa.stop().await, wb.stop().await);
    wait_same::<(i32, Option<String>)>(
        &mut a,
        &mut b,
        "both sites' rows",
        &[
            ["SELECT id, note FROM t ORDER BY id"; 2],
            ["SELECT id, note FROM u ORDER BY id"; 2],
        ],
    )
    .await;
    assert_eq!(a.count("SELECT count(*) FROM u").await, na + nb);
    assert_eq!(a.count("SELECT count(*) FROM t").await, na + nb + 2);
    let control = connect(&sites.control_url).await;
    nothing_held_nor_conflicting(&control).await;
    // The same from SQL: a request the running duplex carries out.
    request_ddl(
        &control,
        "ALTER TABLE t ADD COLUMN label text",
        "done",
        "resumed",
    )
    .await;
    a.exec("UPDATE t SET label = 'from a' WHERE id = 1").await;
    wait_for("the new column flowing", T, || async {
        let (_, mut b) = sites.connect().await;
        b.count("SELECT count(*) FROM t WHERE label = 'from a'")
            .await
            == 1
    })
    .await;
    request_ddl(
        &control,
        "ALTER TABLE nope ADD COLUMN c int",
        "failed",
        "does not sync a table nope",
    )
    .await;
    // Refused up front, with why: not a synced table, and a rename.
    let (ok, out) = crate::support::duplex_cli(
        &sites.control_url,
        &["ddl", "--link", "l", "ALTER TABLE nope ADD COLUMN c int"],
    );
    assert!(!ok && out.contains("does not sync a table nope"), "{out}");
    let (ok, out) = crate::support::duplex_cli(
        &sites.control_url,
        &["ddl", "--link", "l", "ALTER TABLE t RENAME TO t2"],
    );
    assert!(!ok && out.contains("duplex.link_tables"), "{out}");
    run.shutdown().await;
}

crate::support::scenario_tests! {
    coordinated_ddl_under_load:
    a_coordinated_ddl_under_load_postgresql(Engines::PgPg);
    a_coordinated_ddl_under_load_across_engines(Engines::PgMariaDb);
}

crate::support::scenario_tests! {
    dropped_on_one_site:
    a_column_dropped_on_one_site_then_the_other_postgresql(Engines::PgPg, false);
    a_column_dropped_on_one_site_and_excluded_across_engines(Engines::PgMariaDb, true);
}

/// Rows each site's application wrote, then a column with a default added
/// on both sites, then dropped on both: each site's later updates of the
/// other's rows are no conflict (the peer's change started from the very
/// row this site has, though the content its version was named by had
/// other columns).
async fn changed_on_both_sites_no_false_conflicts(engines: Engines) {
    let sites = Sites::start(engines, PG, MY, &["t", "u"]).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    a.exec("INSERT INTO t (id, note) VALUES (1, 'a1'), (2, 'a2')")
        .await;
    b.exec("INSERT INTO t (id, note) VALUES (11, 'b1'), (12, 'b2')")
        .await;
    let rows = [["SELECT id, note FROM t ORDER BY id"; 2]];
    wait_same::<(i32, Option<String>)>(&mut a, &mut b, "the seeded rows", &rows).await;
    let add = "ALTER TABLE t ADD COLUMN extra int NOT NULL DEFAULT 7";
    a.exec(add).await;
    b.exec(add).await;
    a.exec("UPDATE t SET note = 'by a' WHERE id IN (11, 12)")
        .await;
    b.exec("UPDATE t SET note = 'by b' WHERE id IN (1, 2)")
        .await;
    wait_same::<(i32, Option<String>)>(&mut a, &mut b, "the updates", &rows).await;
    let drop = "ALTER TABLE t DROP COLUMN extra";
    a.exec(drop).await;
    b.exec(drop).await;
    a.exec("UPDATE t SET note = 'again a' WHERE id IN (11, 12)")
        .await;
    b.exec("UPDATE t SET note = 'again b' WHERE id IN (1, 2)")
        .await;
    wait_same::<(i32, Option<String>)>(&mut a, &mut b, "the updates", &rows).await;
    assert_eq!(
        a.count("SELECT count(*) FROM t WHERE note LIKE 'again%'")
            .await,
        4
    );
    let control = connect(&sites.control_url).await;
    nothing_held_nor_conflicting(&control).await;
    run.shutdown().await;
}

crate::support::scenario_tests! {
    changed_on_both_sites_no_false_conflicts:
    columns_changed_on_both_sites_make_no_false_conflicts_postgresql(Engines::PgPg);
    columns_changed_on_both_sites_make_no_false_conflicts_across_engines(Engines::PgMariaDb);
}

/// A column added on one site while its table is paused: once resumed, the
/// first held change that carries it holds the table again (in order, the
/// later ones behind it), and all of them are applied once the other site
/// has the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_on_one_site_while_the_table_is_paused() {
    let sites = Sites::start(Engines::PgPg, PG, MY, &["t", "u"]).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    a.exec("INSERT INTO t (id, note) VALUES (1, 'one'), (2, 'two')")
        .await;
    let rows = [["SELECT id, note FROM t ORDER BY id"; 2]];
    wait_same::<(i32, Option<String>)>(&mut a, &mut b, "the first rows", &rows).await;
    let control = connect(&sites.control_url).await;
    let pause =
        |on: bool| format!("UPDATE duplex.link_tables SET paused = {on} WHERE table_name = 't'");
    control.batch_execute(&pause(true)).await.expect("pause");
    wait_for("t paused", T, || async {
        query_i64(
            &control,
            "SELECT count(*) FROM duplex.table_config_status WHERE table_name = 't' AND state = 'paused'",
        )
        .await
            == 1
    })
    .await;
    a.exec("ALTER TABLE t ADD COLUMN extra int").await;
    a.exec("UPDATE t SET note = 'p1', extra = 1 WHERE id = 1")
        .await;
    a.exec("DELETE FROM t WHERE id = 2").await;
    b.exec("INSERT INTO t (id, note) VALUES (3, 'from b')")
        .await;
    control.batch_execute(&pause(false)).await.expect("resume");
    wait_held(&control, Some(1), "").await;
    assert_eq!(
        b.count("SELECT count(*) FROM t WHERE id = 2").await,
        1,
        "the delete waits behind the update"
    );
    b.exec("ALTER TABLE t ADD COLUMN extra int").await;
    wait_equal(&mut a, &mut b).await;
    assert_eq!(
        b.count("SELECT count(*) FROM t WHERE note = 'p1' AND extra = 1")
            .await,
        1
    );
    nothing_held_nor_conflicting(&control).await;
    run.shutdown().await;
}

/// A column added on one site while duplex is down: at its start the table
/// (which synced before) is not refused but held, and flows again once the
/// other site has the column; nothing is lost meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_on_one_site_while_duplex_is_down() {
    let sites = Sites::start(Engines::PgPg, PG, MY, &["t", "u"]).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    flows(&mut a, &mut b, "t", 1).await;
    run.shutdown().await;
    a.exec("ALTER TABLE t ADD COLUMN extra int").await;
    a.exec("INSERT INTO t (id, note, extra) VALUES (2, 'while down', 2)")
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    b.exec("INSERT INTO t (id, note) VALUES (3, 'from b')")
        .await;
    flows(&mut a, &mut b, "u", 4).await;
    let control = connect(&sites.control_url).await;
    wait_held(&control, None, "AND config_state = 'syncing'").await;
    b.exec("ALTER TABLE t ADD COLUMN extra int").await;
    wait_equal(&mut a, &mut b).await;
    assert_eq!(a.count("SELECT count(*) FROM t WHERE extra = 2").await, 1);
    nothing_held_nor_conflicting(&control).await;
    run.shutdown().await;
}

/// The MariaDB site's binlog read from before a column was added there, or
/// dropped (duplex was down meanwhile): the earlier rows are read with the
/// columns they were written with (a dropped one read past), not refused for
/// the table's new shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binlog_read_from_before_a_column_was_added_or_dropped() {
    let sites = Sites::start(Engines::PgMariaDb, PG, MY, &["t", "u"]).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    flows(&mut b, &mut a, "t", 1).await;
    run.shutdown().await;
    b.exec("INSERT INTO t (id, note) VALUES (2, 'before the column')")
        .await;
    b.exec("UPDATE t SET note = 'updated before' WHERE id = 1")
        .await;
    for site in [&mut a, &mut b] {
        site.exec("ALTER TABLE t ADD COLUMN extra int").await;
    }
    b.exec("INSERT INTO t (id, note, extra) VALUES (3, 'after', 3)")
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    wait_equal(&mut a, &mut b).await;
    assert_eq!(a.count("SELECT count(*) FROM t").await, 3);
    let control = connect(&sites.control_url).await;
    crate::support::assert_no_direction_failed(&control).await;

    // And from before a column was dropped: read past it.
    run.shutdown().await;
    b.exec("UPDATE t SET note = 'before the drop', extra = 4 WHERE id = 3")
        .await;
    for site in [&mut a, &mut b] {
        site.exec("ALTER TABLE t DROP COLUMN extra").await;
    }
    b.exec("INSERT INTO t (id, note) VALUES (4, 'after the drop')")
        .await;
    let run = crate::support::start_synced(&sites.control_url).await;
    wait_same::<(i32, Option<String>)>(
        &mut a,
        &mut b,
        "both sites' rows",
        &[["SELECT id, note FROM t ORDER BY id"; 2]],
    )
    .await;
    assert_eq!(a.count("SELECT count(*) FROM t").await, 4);
    crate::support::assert_no_direction_failed(&control).await;
    nothing_held_nor_conflicting(&control).await;
    run.shutdown().await;
}

crate::support::scenario_tests! {
    added_on_one_then_the_other:
    a_column_added_on_one_site_then_the_other_postgresql(Engines::PgPg, 0);
    a_column_added_on_one_site_then_the_other_across_engines(Engines::PgMariaDb, 0);
    a_column_added_on_mariadb_then_postgresql(Engines::PgMariaDb, 1);
}
