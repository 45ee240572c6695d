//! The control database is off the data path: while it is down, changes
//! keep flowing both ways, and the conflicts and refused changes met
//! meanwhile wait in the targets' outboxes; once it is back, status is
//! written again and every record arrives in the control schema, once.

use std::time::Duration;

use crate::support::site::{wait_same, Engines, Sites};
use crate::support::{connect, query_bool, wait_for};

const PG: &str = "CREATE TABLE item (id int PRIMARY KEY, note text);";
const MY: &str = "CREATE TABLE item (id int PRIMARY KEY, note text);";
const T: Duration = Duration::from_secs(60);
/// How long the control database stays down, under writes on both sites.
const OUTAGE: Duration = Duration::from_secs(60);

/// The entries waiting in a site's journal outbox, by kind
/// ("conflict:<table>:<key>:<kind>", "quarantine:<key>:<status>"), sorted.
async fn outbox(site: &mut crate::support::site::Db) -> Vec<String> {
    let mut v: Vec<String> = site
        .rows(
            "SELECT CASE e->>'entry' WHEN 'conflict' THEN 'conflict:' || (e->>'row_key') || ':' || (e->>'kind')
                                     WHEN 'quarantine' THEN 'quarantine:' || (e->>'row_key') || ':' || (e->>'status')
                                     ELSE e->>'entry' END
               FROM (SELECT entry::jsonb AS e FROM duplex.site_journal) j",
            "SELECT CASE JSON_VALUE(entry, '$.entry')
                      WHEN 'conflict' THEN CONCAT('conflict:', JSON_VALUE(entry, '$.row_key'), ':', JSON_VALUE(entry, '$.kind'))
                      WHEN 'quarantine' THEN CONCAT('quarantine:', JSON_VALUE(entry, '$.row_key'), ':', JSON_VALUE(entry, '$.status'))
                      ELSE JSON_VALUE(entry, '$.entry') END
               FROM _duplex_journal",
        )
        .await;
    v.sort();
    v
}

async fn run(engines: Engines) {
    let mut sites = Sites::start(engines, PG, MY, &["item"]).await;
    let run = crate::support::start_synced(&sites.control_url).await;
    let (mut a, mut b) = sites.connect().await;
    a.exec("INSERT INTO item VALUES (1, 'before')").await;
    wait_for("row 1 on b", T, || async {
        let (_, mut b) = sites.connect().await;
        b.count("SELECT count(*) FROM item WHERE id = 1").await == 1
    })
    .await;

    // Refused on b only: a change from a carrying it is quarantined there.
    b.exec("ALTER TABLE item ADD CONSTRAINT no_refused CHECK (note <> 'refused')")
        .await;

    // The throwaway clusters commit asynchronously and stop at once: the
    // configuration is made durable first, as a production database's
    // commits are (CI lost the link's row once without this).
    connect(&sites.control_url)
        .await
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint the control database");
    sites
        .control_server
        .stop()
        .expect("stop the control database");
    // Writes on both sites while the control database is down, for longer
    // than a status write, a periodic look at the settlements, the probe's
    // backoff and a direction's restart would take: new rows on each side,
    // and the same keys written on both at once (conflicts, recorded on
    // both targets).
    let started = std::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < OUTAGE {
        a.exec(&format!(
            "INSERT INTO item VALUES ({}, 'a while control is down')",
            1000 + i
        ))
        .await;
        b.exec(&format!(
            "INSERT INTO item VALUES ({}, 'b while control is down')",
            100_000 + i
        ))
        .await;
        if i % 10 == 0 {
            // The same new key on both sites, as close together as two
            // sessions can: usually a conflict (an insert may also arrive
            // first, then the other site's insert is skipped).
            let key = 500_000 + i;
            let (ia, ib) = (
                a.pick(
                    &format!("INSERT INTO item VALUES ({key}, 'a') ON CONFLICT DO NOTHING"),
                    &format!("INSERT IGNORE INTO item VALUES ({key}, 'a')"),
                )
                .to_string(),
                b.pick(
                    &format!("INSERT INTO item VALUES ({key}, 'b') ON CONFLICT DO NOTHING"),
                    &format!("INSERT IGNORE INTO item VALUES ({key}, 'b')"),
                )
                .to_string(),
            );
            let (ra, rb) = tokio::join!(a.try_exec(&ia), b.try_exec(&ib));
            ra.expect("same key on a");
            rb.expect("same key on b");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        i += 1;
    }
    let rows = i;
    a.exec("INSERT INTO item VALUES (400, 'refused')").await;
    a.exec("INSERT INTO item VALUES (401, 'after the refused one')")
        .await;
    // Written last on b: once it is on a, so is everything before it.
    b.exec("INSERT INTO item VALUES (402, 'b last')").await;
    wait_for(
        "every row on the other site, control still down",
        T,
        || async {
            let (mut a, mut b) = sites.connect().await;
            a.count(&format!(
                "SELECT count(*) FROM item WHERE id BETWEEN 100000 AND {}",
                100_000 + rows - 1
            ))
            .await
                == rows
                && b.count(&format!(
                    "SELECT count(*) FROM item WHERE id BETWEEN 1000 AND {} OR id = 401",
                    1000 + rows - 1
                ))
                .await
                    == rows + 1
                && a.count("SELECT count(*) FROM item WHERE id = 402").await == 1
        },
    )
    .await;
    let applied: Vec<(String, String)> = run
        .directions()
        .iter()
        .map(|d| (d.name.clone(), d.stats.state()))
        .collect();
    assert!(
        applied.iter().all(|(_, state)| state == "streaming"),
        "the directions while the control database is down: {applied:?}"
    );
    // What was met during the outage waits in the targets' outboxes.
    let (waiting_a, waiting_b) = (outbox(&mut a).await, outbox(&mut b).await);
    assert!(
        waiting_b.contains(&"quarantine:id=400:pending".to_string()),
        "the refused change waits in b's outbox: {waiting_b:?}"
    );
    let conflicts_waiting: Vec<&String> = waiting_a
        .iter()
        .chain(&waiting_b)
        .filter(|e| e.starts_with("conflict:"))
        .collect();
    assert!(
        !conflicts_waiting.is_empty(),
        "the same keys written on both sites met conflicts: {waiting_a:?} {waiting_b:?}"
    );
    let reported: u64 = run
        .directions()
        .iter()
        .map(|d| d.stats.conflicts.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(
        reported,
        conflicts_waiting.len() as u64,
        "every conflict met is counted once"
    );

    sites
        .control_server
        .start_again()
        .expect("start the control database again");
    let control = connect(&sites.control_url).await;
    wait_for("status written again", T, || async {
        query_bool(
            &control,
            "SELECT count(*) = 2 AND bool_and(state = 'streaming' AND updated_at > now() - interval '3 seconds')
               FROM duplex.link_status",
        )
        .await
    })
    .await;
    // Every record arrives, once, and the outboxes empty.
    wait_for("the outboxes shipped", T, || async {
        let (mut a, mut b) = sites.connect().await;
        outbox(&mut a).await.is_empty() && outbox(&mut b).await.is_empty()
    })
    .await;
    let mut recorded: Vec<String> = crate::support::query_rows(
        &control,
        "SELECT 'conflict:' || row_key || ':' || kind FROM duplex.conflicts WHERE confirmed
          UNION ALL
         SELECT 'quarantine:' || row_key || ':' || status FROM duplex.quarantine WHERE confirmed",
    )
    .await;
    recorded.sort();
    let mut expected: Vec<String> = waiting_a.iter().chain(&waiting_b).cloned().collect();
    expected.sort();
    assert_eq!(
        recorded, expected,
        "the control schema holds what the outboxes held"
    );
    b.exec("INSERT INTO item VALUES (3, 'after')").await;
    wait_for("row 3 on a", T, || async {
        let (mut a, _) = sites.connect().await;
        a.count("SELECT count(*) FROM item WHERE id = 3").await == 1
    })
    .await;
    // The sites agree, but for the refused row (the quarantine's to settle).
    wait_same::<(i32, Option<String>)>(
        &mut a,
        &mut b,
        "the rows of both sites",
        &[["SELECT id, note FROM item WHERE id <> 400 ORDER BY id"; 2]],
    )
    .await;
    run.shutdown().await;
}

crate::support::scenario_tests! {
    run:
    a_control_outage_leaves_postgresql_replicating(Engines::PgPg);
    a_control_outage_leaves_mariadb_replicating(Engines::MariaDbMariaDb);
}
