//! The applier beside an application that writes the same rows: applying must
//! never hold the application's hot rows for longer than one small
//! transaction would.

use std::time::Duration;

use crate::support::{wait_for, Pair};
use duplex::pipeline::PipelineTuning;

/// A table whose row 0 every source transaction writes (a counter, a
/// balance): the hot row.
const SCHEMA: &str =
    "CREATE TABLE hot (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, note text)";
/// Rows besides the hot one.
const ROWS: i32 = 20_000;
/// Rows each backlog transaction writes besides the hot one.
const ROWS_PER_TXN: i32 = 99;
/// Backlog transactions: more than a default group holds (200 transactions,
/// 20,000 rows), so that the old grouping held the hot row for a whole group.
const BACKLOG_TXNS: i32 = 300;

/// PostgreSQL: the backlog, one source transaction per loop turn, each
/// writing the hot row and `ROWS_PER_TXN` others; at the end, row -1.
fn backlog_sql() -> String {
    format!(
        "DO $$
         BEGIN
           FOR t IN 0 .. {BACKLOG_TXNS} - 1 LOOP
             UPDATE hot SET n = n + 1, note = 'a' WHERE id = 0;
             UPDATE hot SET n = n + 1, note = 'a'
              WHERE id BETWEEN 1 + (t * {ROWS_PER_TXN}) % {ROWS} AND (t * {ROWS_PER_TXN}) % {ROWS} + {ROWS_PER_TXN};
             COMMIT;
           END LOOP;
           INSERT INTO hot (id) VALUES (-1);
           COMMIT;
         END $$"
    )
}

/// While the applier works through a backlog of thousands of source
/// transactions that all write the hot row, the application on the target
/// keeps updating that row with `lock_timeout = 2s`: each of its updates must
/// get the row within that bound. Applying groups of up to 200 source
/// transactions (20,000 rows, each settled as a conflict and recorded) held
/// the row for far longer; the applier now commits as soon as a session
/// waits for it, and then one source transaction at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_gets_a_hot_row_while_a_backlog_is_applied() {
    let pair = Pair::start(SCHEMA, &["hot"]).await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute(&format!(
        "INSERT INTO hot (id) SELECT g FROM generate_series(0, {ROWS}) g"
    ))
    .await
    .unwrap();
    // Both sites hold every row, in a version duplex wrote (the initial copy).
    let run = crate::support::start_synced(&pair.control_url).await;
    wait_for("the copy on b", Duration::from_secs(60), || {
        crate::support::query_bool(&b, format!("SELECT count(*) = {ROWS} + 1 FROM hot"))
    })
    .await;
    run.shutdown().await;

    // The backlog: site a's transactions while duplex is down, each writing
    // the hot row and 99 others; the last one inserts row -1.
    a.batch_execute(&backlog_sql()).await.unwrap();
    // Meanwhile site b's application wrote every row too: each change of the
    // backlog is a conflict, settled and recorded while the applier holds
    // the row.
    b.batch_execute("UPDATE hot SET note = 'b'").await.unwrap();

    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex again");
    // The application on b: the hot row, again and again, never waiting more
    // than 2 s for it.
    let app = pair.client_b().await;
    app.batch_execute("SET lock_timeout = '2s'").await.unwrap();
    let started = std::time::Instant::now();
    let (mut updates, mut longest) = (0u32, Duration::ZERO);
    loop {
        let t = std::time::Instant::now();
        if let Err(e) = app
            .batch_execute("UPDATE hot SET note = 'b app' WHERE id = 0")
            .await
        {
            panic!(
                "the application waited for the hot row longer than its lock_timeout (after {updates} updates, {:.1} s into the backlog): {e}",
                started.elapsed().as_secs_f64()
            );
        }
        updates += 1;
        longest = longest.max(t.elapsed());
        if crate::support::pg_has_row(&b, "hot", -1).await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the backlog was not applied within 300 s"
        );
    }
    println!(
        "backlog applied in {:.1} s; the application updated the hot row {updates} times meanwhile, the longest update took {} ms",
        started.elapsed().as_secs_f64(),
        longest.as_millis()
    );
    // The application did run beside the applier (else this proves nothing).
    assert!(
        updates >= 5,
        "only {updates} updates while the backlog was applied"
    );
    run.shutdown().await;
}

/// The same on a MariaDB target (the application waits with
/// `innodb_lock_wait_timeout = 2`): the applier sees its waits in InnoDB's
/// lock-wait table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_gets_a_hot_row_on_mariadb_while_a_backlog_is_applied() {
    use mysql_async::prelude::Queryable;
    let m = crate::support::start_mariadb(
        "CREATE TABLE hot (id INT PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0, note VARCHAR(20)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    )
    .await;
    let p = crate::support::start_postgres(SCHEMA).await;
    let (_ctl, url) = crate::support::control_db(
        &[
            (1, "pg", "postgresql", p.conninfo("app")),
            (2, "maria", "mysql", m.url("app")),
        ],
        &["hot"],
    )
    .await;
    let pg = crate::support::connect(&p.conninfo("app")).await;
    pg.batch_execute(&format!(
        "INSERT INTO hot (id) SELECT g FROM generate_series(0, {ROWS}) g"
    ))
    .await
    .unwrap();
    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex");
    let mut maria = crate::support::mysql_conn(&m).await;
    crate::support::wait_mysql(
        &mut maria,
        "the copy on MariaDB",
        &format!("SELECT COUNT(*) = {ROWS} + 1 FROM hot"),
        Duration::from_secs(120),
    )
    .await;
    crate::support::wait_initial_sync(&crate::support::connect(&url).await, 2).await;
    run.shutdown().await;
    pg.batch_execute(&backlog_sql()).await.unwrap();
    maria.query_drop("UPDATE hot SET note = 'b'").await.unwrap();

    let run = duplex::runner::start(&url, PipelineTuning::default())
        .await
        .expect("start duplex again");
    let mut app = crate::support::mysql_conn(&m).await;
    app.query_drop("SET SESSION innodb_lock_wait_timeout = 2")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (mut updates, mut longest) = (0u32, Duration::ZERO);
    loop {
        let t = std::time::Instant::now();
        if let Err(e) = app
            .query_drop("UPDATE hot SET note = 'b app' WHERE id = 0")
            .await
        {
            panic!(
                "the application waited for the hot row longer than innodb_lock_wait_timeout (after {updates} updates, {:.1} s into the backlog): {e}",
                started.elapsed().as_secs_f64()
            );
        }
        updates += 1;
        longest = longest.max(t.elapsed());
        let done: Option<i64> = maria
            .query_first("SELECT COUNT(*) FROM hot WHERE id = -1")
            .await
            .unwrap();
        if done == Some(1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the backlog was not applied within 300 s"
        );
    }
    println!(
        "backlog applied in {:.1} s; the application updated the hot row {updates} times meanwhile, the longest update took {} ms",
        started.elapsed().as_secs_f64(),
        longest.as_millis()
    );
    assert!(
        updates >= 5,
        "only {updates} updates while the backlog was applied"
    );
    run.shutdown().await;
}

const PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";

/// pgbench's tables, synced (pgbench_history has no primary key: left out).
const PGBENCH_TABLES: &[&str] = &["pgbench_accounts", "pgbench_branches", "pgbench_tellers"];

fn pgbench(pg: &duplex::localdb::pg::LocalPostgres, args: &[&str]) -> String {
    let out = std::process::Command::new(PGBENCH)
        .args([
            "-h",
            pg.host(),
            "-p",
            &pg.port().to_string(),
            "-U",
            pg.superuser(),
        ])
        .args(args)
        .arg("app")
        .env("PGPASSWORD", pg.password().unwrap_or_default())
        .output()
        .expect("run pgbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?} failed: {text}");
    text
}

fn tps(out: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench output: {out}"))
}

/// pgbench on both sites at once for `secs`: (tps on a, tps on b).
async fn pgbench_both(pair: &Pair, clients: u32, secs: u32) -> (f64, f64) {
    let (c, t) = (clients.to_string(), secs.to_string());
    let args = ["-n", "-c", c.as_str(), "-j", "1", "-T", t.as_str()];
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| pgbench(&pair.a, &args));
        let b = s.spawn(|| pgbench(&pair.b, &args));
        (a.join().unwrap(), b.join().unwrap())
    });
    (tps(&a), tps(&b))
}

/// Measurement, not a check (run by hand, release build):
/// `cargo test --release --test main apply_contention -- --ignored --nocapture`
/// pgbench (TPC-B-like, scale 1, `DUPLEX_PGBENCH_CLIENTS` clients, default 4)
/// on both sites of a PG <-> PG link for `DUPLEX_PGBENCH_SECS` (default 30)
/// each: once without duplex, once with duplex running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run by hand"]
async fn pgbench_on_both_sites() {
    let secs: u32 = std::env::var("DUPLEX_PGBENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let clients: u32 = std::env::var("DUPLEX_PGBENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let pair = Pair::start("", &[]).await;
    for pg in [&pair.a, &pair.b] {
        pgbench(pg, &["-i", "-s", "1", "-q"]);
    }
    let control = crate::support::connect(&pair.control_url).await;
    for t in PGBENCH_TABLES {
        control
            .execute(
                "INSERT INTO duplex.link_tables (link_id, schema_name, table_name, initial_sync) VALUES (1, 'public', $1, false)",
                &[t],
            )
            .await
            .unwrap();
    }
    let (a, b) = pgbench_both(&pair, clients, secs).await;
    println!("without duplex: site a {a:.0} tps, site b {b:.0} tps");
    // The same starting rows on both sites again (the run above wrote each
    // site on its own).
    for pg in [&pair.a, &pair.b] {
        pgbench(pg, &["-i", "-s", "1", "-q"]);
    }

    let dir = tempfile::tempdir().unwrap();
    let mut duplex =
        crate::support::DuplexProcess::spawn(&pair.control_url, &dir.path().join("duplex.log"));
    wait_for("both directions streaming", Duration::from_secs(60), || {
        crate::support::query_bool(
            &control,
            "SELECT count(*) = 2 FROM duplex.link_status WHERE state = 'streaming'",
        )
    })
    .await;
    let sampling = std::env::var("DUPLEX_PGBENCH_SAMPLE").is_ok();
    let samplers = if sampling {
        let mut v = Vec::new();
        for (name, pg) in [("a", &pair.a), ("b", &pair.b)] {
            let c = crate::support::connect(&crate::support::url_with_password(pg, "app")).await;
            v.push(tokio::spawn(sample_waits(name, c, secs)));
        }
        v
    } else {
        Vec::new()
    };
    let (a, b) = pgbench_both(&pair, clients, secs).await;
    for s in samplers {
        s.await.unwrap();
    }
    println!("with duplex:    site a {a:.0} tps, site b {b:.0} tps");
    // How far behind duplex was when the load stopped, and how it caught up.
    let started = std::time::Instant::now();
    wait_for("duplex caught up", Duration::from_secs(600), || {
        crate::support::query_bool(
            &control,
            "SELECT count(*) = 2 FROM duplex.link_status WHERE lag_seconds = 0 AND queued_events = 0 AND updated_at > now() - interval '2 s'",
        )
    })
    .await;
    println!(
        "caught up {:.1} s after the load stopped",
        started.elapsed().as_secs_f64()
    );
    let status = control
        .query(
            "SELECT source_site, applied_txns, conflicts, last_error FROM duplex.link_status ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    for r in status {
        println!(
            "direction from site {}: {} txns applied, {} conflicts, last error {:?}",
            r.get::<_, i32>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, Option<String>>(3)
        );
    }
    let kinds = control
        .query(
            "SELECT source_site, table_name, kind, outcome, count(*) FROM duplex.conflicts GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            &[],
        )
        .await
        .unwrap();
    for r in kinds {
        println!(
            "conflicts from site {} on {}: {} {} x{}",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3),
            r.get::<_, i64>(4)
        );
    }
    duplex.stop();
    let (ta, tb) = (pair.client_a().await, pair.client_b().await);
    let sums = "SELECT (SELECT sum(abalance) FROM pgbench_accounts)::text || '/' || (SELECT sum(tbalance) FROM pgbench_tellers)::text || '/' || (SELECT sum(bbalance) FROM pgbench_branches)::text";
    let (sa, sb): (String, String) = (
        ta.query_one(sums, &[]).await.unwrap().get(0),
        tb.query_one(sums, &[]).await.unwrap().get(0),
    );
    if sa != sb {
        let rows = "SELECT aid::text || ' ' || abalance::text || ' ' || coalesce(_duplex::text, '-') FROM pgbench_accounts WHERE abalance <> 0 ORDER BY aid";
        let (ra, rb) = (
            ta.query(rows, &[]).await.unwrap(),
            tb.query(rows, &[]).await.unwrap(),
        );
        let ra: Vec<String> = ra.iter().map(|r| r.get(0)).collect();
        let rb: Vec<String> = rb.iter().map(|r| r.get(0)).collect();
        println!("rows: a {} b {}", ra.len(), rb.len());
        let only_a: Vec<_> = ra.iter().filter(|r| !rb.contains(r)).take(5).collect();
        let only_b: Vec<_> = rb.iter().filter(|r| !ra.contains(r)).take(5).collect();
        println!("only a: {only_a:#?}\nonly b: {only_b:#?}");
    }
    assert_eq!(sa, sb, "both sites converge");
}

/// Every 50 ms for `secs`: what each session of the site waits for, and who
/// blocks the ones waiting for a lock; printed as counts.
async fn sample_waits(site: &'static str, c: tokio_postgres::Client, secs: u32) {
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    let end = std::time::Instant::now() + Duration::from_secs(u64::from(secs));
    let mut samples = 0;
    while std::time::Instant::now() < end {
        samples += 1;
        let rows = c
            .query(
                "SELECT a.application_name || ': ' || coalesce(a.wait_event_type || '/' || a.wait_event, a.state)
                        || coalesce(' blocked by ' || (SELECT string_agg(DISTINCT b.application_name, ',')
                                                        FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(a.pid))), '')
                   FROM pg_stat_activity a
                  WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() AND a.datname = 'app'",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            *counts.entry(r.get(0)).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (what, n) in counts {
        println!(
            "site {site}: {what}: {:.1}%",
            100.0 * n as f64 / samples as f64
        );
    }
}
