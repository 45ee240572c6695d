//! `duplex resync`: what the library's `runner::resync_link` did, and the
//! copies it asked for followed until they are done (`--wait`).

use std::time::{Duration, Instant};

use duplex::control::{Sql, P};

use super::control::connect;

/// Resync link `link` (id or name): every table, or `table`. `wait`: how
/// long to follow the copies (0: not at all). Once they are done, rows the
/// copies cannot carry (a row one site deleted while its position was lost
/// is still on the other, and a copy never deletes) are found by a parity
/// check and restored by policy (`duplex repair --by-policy`): both sites
/// keep every row either still holds. Returns whether the tables ended
/// equal (true without `wait`: not known yet).
pub async fn resync(
    control: &str,
    link: &str,
    table: Option<&str>,
    new_position: bool,
    wait: u64,
) -> anyhow::Result<bool> {
    let mut client = connect(control, "duplex resync").await?;
    let lc = super::control::link_config(&mut client, link).await?;
    let report = duplex::runner::resync_link(&mut client, &lc, table, new_position).await?;
    for line in &report.reset {
        println!("position reset: {line}");
    }
    if report.reset.is_empty() {
        println!("positions: both directions can still read their source (nothing reset)");
    }
    println!(
        "copies requested both ways for {} table(s): {}",
        report.tables.len(),
        report.tables.join(", ")
    );
    println!(
        "a running duplex restarts link {} now and copies them (rows on both sites are kept; rows that differ are settled by each table's policy and recorded in duplex.conflicts); \
         follow it in duplex.snapshot_overview or `duplex status`",
        lc.link.name
    );
    let repair_advice = format!(
        "once the copies are done: `duplex repair --link {} --by-policy` restores rows one site deleted while its position was lost (a copy never deletes)",
        lc.link.name
    );
    if !report.paused.is_empty() {
        println!(
            "paused, copied once resumed (not waited for): {}",
            report.paused.join(", ")
        );
    }
    if wait == 0 {
        println!("{repair_advice}");
        return Ok(true);
    }
    let waited: Vec<&String> = report
        .tables
        .iter()
        .filter(|t| !report.paused.contains(t))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut last = String::new();
    loop {
        // Waiting only makes sense while a duplex applies the link: its
        // status is written every second.
        if !lc.link.enabled || !applied_now(&mut client, lc.link.link_id).await? {
            let why = if lc.link.enabled {
                "no `duplex run` applies it now (duplex.link_status not updated for 15 s)"
            } else {
                "it is paused (duplex.links.enabled = false)"
            };
            println!(
                "not waiting for the copies of link {}: {why}; they run when it does. {repair_advice}",
                lc.link.name
            );
            return Ok(true);
        }
        let rows = client
            .rows(Sql::new(
                "read duplex.snapshot_progress",
                "SELECT table_name, source_site, state, rows_done FROM duplex.snapshot_progress
                  WHERE link_id = $1 ORDER BY source_site, table_name",
                "SELECT table_name, source_site, state, rows_done FROM duplex.snapshot_progress
                  WHERE link_id = ? ORDER BY source_site, table_name",
                &[P::I32(lc.link.link_id as i32)],
            ))
            .await?;
        let mut copying = Vec::new();
        for r in &rows {
            if waited.contains(&&r.text("table_name")?) && r.text("state")? == "copying" {
                copying.push(format!(
                    "{} from site {} ({} rows so far)",
                    r.text("table_name")?,
                    r.text("source_site")?,
                    r.text("rows_done")?
                ));
            }
        }
        if copying.is_empty() {
            println!("every copy is done; checking for rows a copy cannot carry");
            let options = duplex::parity::CheckOptions {
                chunk: 1000,
                settle: Duration::from_secs(30),
                progress: false,
            };
            let link_id = lc.link.link_id.to_string();
            return super::parity::repair(
                control,
                Some(&link_id),
                table,
                &duplex::parity::repair::Winner::Policy,
                false,
                &options,
            )
            .await;
        }
        let now = copying.join(", ");
        if now != last {
            println!("copying: {now}");
            last = now;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "the copies are not done after {wait} s (see duplex.snapshot_overview and duplex.link_overview); {repair_advice}"
            );
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a `duplex run` wrote link `link_id`'s status in the last 15 s.
async fn applied_now(
    client: &mut duplex::control::ControlDb,
    link_id: u32,
) -> anyhow::Result<bool> {
    Ok(client
        .row(Sql::new(
            "is the link applied now",
            "SELECT count(*) AS n FROM duplex.link_status
              WHERE link_id = $1 AND updated_at > now() - interval '15 seconds'",
            "SELECT COUNT(*) AS n FROM duplex.link_status
              WHERE link_id = ? AND updated_at > UTC_TIMESTAMP(6) - INTERVAL 15 SECOND",
            &[P::I32(link_id as i32)],
        ))
        .await?
        .map(|r| r.parse::<i64>("n"))
        .transpose()?
        .unwrap_or(0)
        > 0)
}
