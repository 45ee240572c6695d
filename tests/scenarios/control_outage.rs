//! The control database is off the data path: while it is down, changes
//! keep flowing both ways; once it is back, status is written again.

use std::time::Duration;

use crate::support::site::{Engines, Sites};
use crate::support::{connect, query_bool, wait_for};

const PG: &str = "CREATE TABLE item (id int PRIMARY KEY, note text);";
const MY: &str = "CREATE TABLE item (id int PRIMARY KEY, note text);";
const T: Duration = Duration::from_secs(60);

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
    // Writes on both sites, while the control database is down, for longer
    // than a status write, a periodic look at the settlements and a
    // direction's restart would take.
    for i in 0..40 {
        a.exec(&format!(
            "INSERT INTO item VALUES ({}, 'a while control is down')",
            100 + i
        ))
        .await;
        b.exec(&format!(
            "INSERT INTO item VALUES ({}, 'b while control is down')",
            200 + i
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(
        "every row on the other site, control still down",
        T,
        || async {
            let (mut a, mut b) = sites.connect().await;
            a.count("SELECT count(*) FROM item WHERE id BETWEEN 200 AND 239")
                .await
                == 40
                && b.count("SELECT count(*) FROM item WHERE id BETWEEN 100 AND 139")
                    .await
                    == 40
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
    b.exec("INSERT INTO item VALUES (3, 'after')").await;
    wait_for("row 3 on a", T, || async {
        let (mut a, _) = sites.connect().await;
        a.count("SELECT count(*) FROM item WHERE id = 3").await == 1
    })
    .await;
    run.shutdown().await;
}

crate::support::scenario_tests! {
    run:
    a_control_outage_leaves_postgresql_replicating(Engines::PgPg);
    a_control_outage_leaves_mariadb_replicating(Engines::MariaDbMariaDb);
}
