//! Several `duplex run --ha` processes sharing one control schema
//! (`runner::lease`): each link is applied by the process holding its
//! lease, links spread across the processes, and when the holder is killed
//! (kill -9) under load the other takes its links over within 30 s, with
//! every row applied once.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{connect, duplex_cli, query_i64, texts, wait_for, Pair};

const T: Duration = Duration::from_secs(90);
const LEASE_SECONDS: &str = "6";

/// Where a child process's log named `name` goes: per test run, so that
/// two runs of the suite on one machine never share one.
fn log_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}-{name}", std::process::id()))
}

/// A `duplex run --ha` child process, killed when dropped.
struct Process(Child);

impl Process {
    fn start(control_url: &str, log: &str) -> Process {
        let log = std::fs::File::create(log_path(log)).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_duplex"))
            .args(["run", "--ha", "--lease-seconds", LEASE_SECONDS])
            .env("DUPLEX_CONTROL", control_url)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start duplex run --ha");
        Process(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// kill -9.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The live lease holders, per link id, as the pid in their holder name.
async fn holders(control: &tokio_postgres::Client) -> Vec<(i32, u32, i64)> {
    control
        .query(
            "SELECT link_id, split_part(holder, ':', 2)::int, term FROM duplex.lease_overview
              WHERE held ORDER BY link_id",
            &[],
        )
        .await
        .expect("read duplex.lease_overview")
        .iter()
        .map(|r| (r.get(0), r.get::<_, i32>(1) as u32, r.get(2)))
        .collect()
}

/// Two `duplex run --ha` processes on a one-link control schema (logs
/// `<logs>-1.log`, `<logs>-2.log`): the first holds the link, the second
/// stands by, and both directions stream.
async fn holder_and_standby(
    control_url: &str,
    control: &tokio_postgres::Client,
    logs: &str,
) -> (Process, Process) {
    let first = Process::start(control_url, &format!("{logs}-1.log"));
    wait_for("the first process holds the link", T, || async {
        holders(control).await.first().map(|h| h.1) == Some(first.pid())
    })
    .await;
    let second = Process::start(control_url, &format!("{logs}-2.log"));
    let streaming = "SELECT count(*) FROM duplex.link_overview WHERE state = 'streaming'";
    wait_for("both directions streaming", T, || async {
        query_i64(control, streaming).await == 2
    })
    .await;
    (first, second)
}

/// Send `sig` (`-STOP`, `-CONT`) to process `pid`.
fn signal(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Every row applied once: nothing recorded (a second application of a row
/// would be met as a conflict or refused as a duplicate key), and once the
/// `processes` are stopped, `duplex check` finds the sites equal.
async fn ends_applied_once(
    control: &tokio_postgres::Client,
    control_url: &str,
    processes: [Process; 2],
) {
    assert_eq!(
        texts(
            control,
            "SELECT count(*)::text FROM duplex.conflicts UNION ALL SELECT count(*)::text FROM duplex.quarantine"
        )
        .await,
        vec!["0".to_string(), "0".to_string()]
    );
    drop(processes);
    let (ok, out) = duplex_cli(control_url, &["check"]);
    assert!(ok, "duplex check after the takeover: {out}");
}

/// Rows inserted one transaction each, on one site, until stopped.
fn writer(
    conninfo: String,
    table: &'static str,
    first_id: i64,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicI64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = connect(&conninfo).await;
        let mut id = first_id;
        while !stop.load(Ordering::Relaxed) {
            c.execute(&format!("INSERT INTO {table} VALUES ($1, 'ha')"), &[&id])
                .await
                .expect("insert");
            id += 1;
            written.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_links_and_one_takes_over_when_the_other_is_killed() {
    let pair = Pair::start(
        "CREATE TABLE item (id bigint PRIMARY KEY, note text);
         CREATE TABLE other (id bigint PRIMARY KEY, note text);",
        &["item"],
    )
    .await;
    let control = connect(&pair.control_url).await;
    control
        .batch_execute(
            "INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (2, 'ab2', 1, 2);
             INSERT INTO duplex.link_tables (link_id, schema_name, table_name) VALUES (2, 'public', 'other');",
        )
        .await
        .expect("a second link");

    // The first process takes both links; the second gets its share.
    let mut first = Process::start(&pair.control_url, "duplex-ha-1.log");
    wait_for("both links held by the first process", T, || async {
        let h = holders(&control).await;
        h.len() == 2 && h.iter().all(|(_, pid, _)| *pid == first.pid())
    })
    .await;
    let mut second = Process::start(&pair.control_url, "duplex-ha-2.log");
    wait_for("one link each", T, || async {
        let h = holders(&control).await;
        h.len() == 2 && h[0].1 != h[1].1
    })
    .await;
    let streaming = "SELECT count(*) FROM duplex.link_overview WHERE state = 'streaming'";
    wait_for("four directions streaming", T, || async {
        query_i64(&control, streaming).await == 4
    })
    .await;

    // Writers on both sites, both tables.
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicI64>> = (0..4).map(|_| Arc::new(AtomicI64::new(0))).collect();
    let (a, b) = (pair.a.conninfo("app"), pair.b.conninfo("app"));
    let writers = vec![
        writer(
            a.clone(),
            "item",
            1_000_000,
            stop.clone(),
            counts[0].clone(),
        ),
        writer(
            b.clone(),
            "item",
            2_000_000,
            stop.clone(),
            counts[1].clone(),
        ),
        writer(a, "other", 1_000_000, stop.clone(), counts[2].clone()),
        writer(b, "other", 2_000_000, stop.clone(), counts[3].clone()),
    ];
    tokio::time::sleep(Duration::from_secs(3)).await;

    // kill -9 the holder of link 1, under load.
    let before = holders(&control).await;
    let (_, victim, term) = before[0];
    let killed_at = Instant::now();
    let survivor_pid = if victim == first.pid() {
        first.kill();
        second.pid()
    } else {
        second.kill();
        first.pid()
    };
    wait_for("the survivor holds both links", T, || async {
        let h = holders(&control).await;
        h.len() == 2 && h.iter().all(|(_, pid, _)| *pid == survivor_pid)
    })
    .await;
    let taken_over = holders(&control).await;
    assert!(
        taken_over[0].2 > term,
        "the lease was taken under a later term: {taken_over:?} after {before:?}"
    );
    wait_for("four directions streaming again", T, || async {
        query_i64(&control, streaming).await == 4
    })
    .await;
    let takeover = killed_at.elapsed();
    eprintln!("takeover after kill -9: {:.1} s", takeover.as_secs_f64());
    assert!(
        takeover < Duration::from_secs(30),
        "takeover took {takeover:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }

    // Every row on both sites, once.
    let a = pair.client_a().await;
    let b = pair.client_b().await;
    let item = counts[0].load(Ordering::Relaxed) + counts[1].load(Ordering::Relaxed);
    let other = counts[2].load(Ordering::Relaxed) + counts[3].load(Ordering::Relaxed);
    wait_for("every row on both sites", T, || async {
        query_i64(&a, "SELECT count(*) FROM item").await == item
            && query_i64(&b, "SELECT count(*) FROM item").await == item
            && query_i64(&a, "SELECT count(*) FROM other").await == other
            && query_i64(&b, "SELECT count(*) FROM other").await == other
    })
    .await;
    ends_applied_once(&control, &pair.control_url, [first, second]).await;
}

/// `links.failover_slots` on PostgreSQL 18: duplex's slots are failover
/// slots, which a physical standby keeps for a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_slots_on_pg18() {
    let opts = duplex::localdb::pg::LocalPgOptions {
        bindir: Some(crate::support::pg18_bindir()),
        ..Default::default()
    };
    let pair = Pair::start_with(
        "CREATE TABLE item (id bigint PRIMARY KEY, note text);",
        &["item"],
        opts,
        crate::support::SiteSecurity::default(),
    )
    .await;
    let control = connect(&pair.control_url).await;
    control
        .batch_execute("UPDATE duplex.links SET failover_slots = true")
        .await
        .expect("failover slots");
    let run = crate::support::start_synced(&pair.control_url).await;
    let a = pair.client_a().await;
    let b = pair.client_b().await;
    for site in [&a, &b] {
        assert_eq!(
            texts(
                site,
                "SELECT failover::text FROM pg_replication_slots WHERE slot_name LIKE 'duplex%'"
            )
            .await,
            vec!["true".to_string()]
        );
    }
    a.batch_execute("INSERT INTO item VALUES (1, 'through a failover slot')")
        .await
        .expect("insert");
    wait_for("row 1 on b", T, || async {
        query_i64(&b, "SELECT count(*) FROM item").await == 1
    })
    .await;
    run.shutdown().await;
}

/// On PostgreSQL 15 the setting is refused with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_slots_are_refused_before_pg17() {
    let pair = Pair::start("CREATE TABLE item (id bigint PRIMARY KEY);", &["item"]).await;
    let control = connect(&pair.control_url).await;
    control
        .batch_execute("UPDATE duplex.links SET failover_slots = true")
        .await
        .expect("failover slots");
    let why = match duplex::runner::start(
        &pair.control_url,
        duplex::pipeline::PipelineTuning::default(),
    )
    .await
    {
        Ok(run) => {
            run.shutdown().await;
            panic!("started with failover slots on PostgreSQL 15")
        }
        Err(e) => duplex::error_chain::error_chain(&e),
    };
    assert!(
        why.contains("PostgreSQL 17") && why.contains("links.failover_slots = false"),
        "{why}"
    );
}

/// With `--ha` the control database is the arbiter: a holder that cannot
/// renew its lease (the control database stopped) stops its links within
/// the lease, before another process could take them; once the database is
/// back it takes them again and they stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_cannot_renew_stops_its_links_within_the_lease() {
    use crate::support::site::{Engines, Sites};
    let mut sites = Sites::start(
        Engines::PgPg,
        "CREATE TABLE item (id bigint PRIMARY KEY, note text);",
        "",
        &["item"],
    )
    .await;
    let control = connect(&sites.control_url).await;
    let _process = Process::start(&sites.control_url, "duplex-ha-renew.log");
    let slot_active =
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'duplex_l1_s1' AND active";
    // Streaming: both directions say so (a slot is also active for a
    // moment while it is created).
    wait_for("the link held and streaming", T, || async {
        let (mut a, _) = sites.connect().await;
        holders(&control).await.len() == 1
            && query_i64(
                &control,
                "SELECT count(*) FROM duplex.link_overview WHERE state = 'streaming'",
            )
            .await
                == 2
            && a.count(slot_active).await == 1
    })
    .await;

    control
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    drop(control);
    sites
        .control_server
        .stop()
        .expect("stop the control database");
    let stopped_at = Instant::now();
    let lease = Duration::from_secs(LEASE_SECONDS.parse().unwrap());
    wait_for("the link stopped", T, || async {
        let (mut a, _) = sites.connect().await;
        a.count(slot_active).await == 0
    })
    .await;
    assert!(
        stopped_at.elapsed() < lease,
        "the link ran {:?} without its lease renewed (lease {lease:?})",
        stopped_at.elapsed()
    );

    sites
        .control_server
        .start_again()
        .expect("start the control database again");
    wait_for("the link taken again and streaming", T, || async {
        let (mut a, _) = sites.connect().await;
        a.count(slot_active).await == 1
    })
    .await;
}

/// A holder paused (SIGSTOP) past its lease on a MariaDB pair: the other
/// process takes the link over under a later term and fences the targets
/// with it (their marker rows carry the term, and a transaction under an
/// earlier one is refused). The paused one, resumed, stops applying; every
/// row arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_is_fenced_out_of_mariadb_targets() {
    use crate::support::site::{Engines, Sites};
    let sites = Sites::start(
        Engines::MariaDbMariaDb,
        "",
        "CREATE TABLE item (id BIGINT PRIMARY KEY, note TEXT);",
        &["item"],
    )
    .await;
    let control = connect(&sites.control_url).await;
    let (first, second) = holder_and_standby(&sites.control_url, &control, "duplex-fence").await;
    let term = holders(&control).await[0].2;
    let marker_terms = |term: i64| {
        let sites = &sites;
        async move {
            let (mut a, mut b) = sites.connect().await;
            let sql = format!(
                "SELECT COUNT(*) FROM _duplex_applied WHERE link_id = 1 AND lease_term <> {term}"
            );
            a.count(&sql).await == 0 && b.count(&sql).await == 0
        }
    };
    wait_for("the targets fenced with the first term", T, || {
        marker_terms(term)
    })
    .await;

    // Writes on both sites throughout.
    let (mut a, mut b) = sites.connect().await;
    let mut next = 0i64;
    let mut write = async |a: &mut crate::support::site::Db, b: &mut crate::support::site::Db| {
        next += 1;
        a.exec(&format!("INSERT INTO item VALUES ({}, 'a')", next))
            .await;
        b.exec(&format!(
            "INSERT INTO item VALUES ({}, 'b')",
            1_000_000 + next
        ))
        .await;
    };
    for _ in 0..20 {
        write(&mut a, &mut b).await;
    }
    signal("-STOP", first.pid());
    let paused_at = Instant::now();
    while holders(&control).await.first().map(|h| h.1) != Some(second.pid()) {
        write(&mut a, &mut b).await;
        assert!(paused_at.elapsed() < T, "no takeover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_term = holders(&control).await[0].2;
    assert!(new_term > term, "taken over under a later term");
    for _ in 0..20 {
        write(&mut a, &mut b).await;
    }
    wait_for("the targets fenced with the new term", T, || {
        marker_terms(new_term)
    })
    .await;
    // The paused holder's sessions were ended, not waited for.
    let second_log = log_path("duplex-fence-2.log");
    assert!(
        std::fs::read_to_string(&second_log)
            .unwrap_or_default()
            .contains("ended the session an earlier holder"),
        "the new holder ended the paused one's sessions"
    );

    // Resumed, the paused holder finds its lease gone (or its term fenced
    // out) and stops applying; the marker rows keep the new term.
    signal("-CONT", first.pid());
    for _ in 0..40 {
        write(&mut a, &mut b).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = log_path("duplex-fence-1.log");
    wait_for("the resumed process stops applying the link", T, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("lease") && text.contains("lost")
            || text.contains("another duplex process took this link over")
    })
    .await;
    let rows = 2 * next;
    wait_for("every row on both sites", T, || async {
        let (mut a, mut b) = sites.connect().await;
        a.count("SELECT COUNT(*) FROM item").await == rows
            && b.count("SELECT COUNT(*) FROM item").await == rows
    })
    .await;
    assert!(marker_terms(new_term).await, "the new term stays");

    // A later term in b's marker rows (what a successor's fence writes):
    // the holder's next transaction there is refused, and nothing it
    // applies lands on b until the term is its own again.
    let (mut a, mut b) = sites.connect().await;
    b.exec(&format!(
        "UPDATE _duplex_applied SET lease_term = {} WHERE link_id = 1",
        new_term + 10
    ))
    .await;
    a.exec("INSERT INTO item VALUES (-1, 'under a later term')")
        .await;
    wait_for("the holder fenced out of b", T, || async {
        std::fs::read_to_string(&second_log)
            .unwrap_or_default()
            .contains("another duplex process took this link over")
    })
    .await;
    assert_eq!(
        b.count("SELECT COUNT(*) FROM item WHERE id = -1").await,
        0,
        "nothing applied under an earlier term"
    );
    b.exec(&format!(
        "UPDATE _duplex_applied SET lease_term = {new_term} WHERE link_id = 1"
    ))
    .await;
    wait_for("the row once the term is the holder's again", T, || async {
        let (_, mut b) = sites.connect().await;
        b.count("SELECT COUNT(*) FROM item WHERE id = -1").await == 1
    })
    .await;
    ends_applied_once(&control, &sites.control_url, [first, second]).await;
}

/// A holder paused (SIGSTOP) on a PostgreSQL pair: its sessions stay open
/// on the sites (its slot's walsender, its replication origins), and the
/// server would keep them until TCP gives up. The process that takes the
/// lease over ends them, so rows written while the holder is paused reach
/// the other site while it is still paused; resumed, it stops applying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_does_not_hold_up_a_postgresql_takeover() {
    let pair = Pair::start(
        "CREATE TABLE item (id bigint PRIMARY KEY, note text);",
        &["item"],
    )
    .await;
    let control = connect(&pair.control_url).await;
    let (first, second) = holder_and_standby(&pair.control_url, &control, "duplex-pause").await;
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.batch_execute("INSERT INTO item VALUES (1, 'before')")
        .await
        .expect("insert");
    wait_for("row 1 on b", T, || async {
        query_i64(&b, "SELECT count(*) FROM item").await == 1
    })
    .await;

    signal("-STOP", first.pid());
    let paused_at = Instant::now();
    a.batch_execute("INSERT INTO item VALUES (2, 'a while paused')")
        .await
        .expect("insert");
    b.batch_execute("INSERT INTO item VALUES (3, 'b while paused')")
        .await
        .expect("insert");
    wait_for(
        "the rows written during the pause on both sites",
        T,
        || async {
            query_i64(&a, "SELECT count(*) FROM item").await == 3
                && query_i64(&b, "SELECT count(*) FROM item").await == 3
        },
    )
    .await;
    let took = paused_at.elapsed();
    eprintln!("takeover from a paused holder: {:.1} s", took.as_secs_f64());
    assert_eq!(
        holders(&control).await.first().map(|h| h.1),
        Some(second.pid()),
        "the second process holds the link"
    );
    assert!(took < Duration::from_secs(30), "takeover took {took:?}");

    signal("-CONT", first.pid());
    a.batch_execute("INSERT INTO item VALUES (4, 'after')")
        .await
        .expect("insert");
    wait_for("row 4 on b", T, || async {
        query_i64(&b, "SELECT count(*) FROM item").await == 4
    })
    .await;
    let log = log_path("duplex-pause-1.log");
    wait_for("the resumed process stops applying the link", T, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("lease lost")
    })
    .await;
    ends_applied_once(&control, &pair.control_url, [first, second]).await;
}
