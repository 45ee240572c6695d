//! `duplex check` and `duplex repair`: compare both sites of the synced
//! tables row by row and make the rows that differ equal again.

use anyhow::Context;
use duplex::control::{ControlDb, LinkConfig, LinkTable, Sql, P};

use super::control::connect;

/// `duplex check`: compare both sites of every enabled table of the links
/// (`link`: id or name; `table`: name or schema.name), print what differs,
/// and record each result in `duplex.parity_checks`. Returns whether every
/// table was clean.
pub async fn check(
    control: &str,
    link: Option<&str>,
    table: Option<&str>,
    options: &duplex::parity::CheckOptions,
) -> anyhow::Result<bool> {
    duplex::install_crypto_provider();
    let mut client = connect(control, "duplex check").await?;
    let (selected, invalid) = selected_tables(&mut client, link, table).await?;
    for why in &invalid {
        eprintln!("{why}, not checked");
    }
    let mut clean = invalid.is_empty();
    for (lc, t) in &selected {
        let report = duplex::parity::check_table(lc, t, options, Some(&mut client))
            .await
            .with_context(|| format!("link {} table {}", lc.link.name, t.table))?;
        let id = duplex::parity::record(&mut client, &report).await?;
        print_report(&lc.link.name, &report, id);
        clean &= report.differences.is_empty();
    }
    if let Some(kib) = peak_memory_kib() {
        println!("peak memory of this check: {:.1} MiB", kib as f64 / 1024.0);
    }
    Ok(clean)
}

/// The enabled tables of the links selected by `link` (id or name) and
/// `table` (name or schema.name), patterns expanded; and why a selected
/// link's configuration cannot be read. Fails when nothing matched.
async fn selected_tables(
    client: &mut ControlDb,
    link: Option<&str>,
    table: Option<&str>,
) -> anyhow::Result<(Vec<(LinkConfig, LinkTable)>, Vec<String>)> {
    let config = duplex::control::load_unchecked(client).await?;
    let mut selected = Vec::new();
    let mut invalid = Vec::new();
    for l in &config.links {
        if link.is_some_and(|want| want != l.name && want != l.link_id.to_string()) {
            continue;
        }
        let mut lc = match config.link_config(l.link_id) {
            Some(Ok(lc)) => lc,
            Some(Err(e)) => {
                invalid.push(format!("link {}: configuration invalid ({e})", l.name));
                continue;
            }
            None => continue,
        };
        duplex::runner::expand_patterns(&mut lc)
            .await
            .with_context(|| format!("link {}: expand its table patterns", l.name))?;
        let wanted = |t: &LinkTable| {
            t.enabled
                && !table.is_some_and(|want| want != t.table.name && want != t.table.to_string())
        };
        for (t, why) in lc.invalid_tables.iter().filter(|(t, _)| wanted(t)) {
            invalid.push(format!(
                "link {} table {}: configuration invalid ({why})",
                l.name, t.table
            ));
        }
        // Tables the running duplex refused are not synced: nothing to compare.
        let refused = client
            .rows(Sql::new(
                "read duplex.table_config_status",
                "SELECT schema_name, table_name, reason FROM duplex.table_config_status
                  WHERE link_id = $1 AND state = 'refused'",
                "SELECT schema_name, table_name, reason FROM duplex.table_config_status
                  WHERE link_id = ? AND state = 'refused'",
                &[P::I32(l.link_id as i32)],
            ))
            .await?;
        for t in lc.tables.clone() {
            if !wanted(&t) {
                continue;
            }
            let why = refused.iter().find(|r| {
                r.text("schema_name").is_ok_and(|s| s == t.table.schema)
                    && r.text("table_name").is_ok_and(|n| n == t.table.name)
            });
            match why {
                Some(r) => invalid.push(format!(
                    "link {} table {}: refused by duplex ({})",
                    l.name,
                    t.table,
                    r.opt("reason").ok().flatten().unwrap_or_default()
                )),
                None => selected.push((lc.clone(), t)),
            }
        }
    }
    if selected.is_empty() && invalid.is_empty() {
        anyhow::bail!(
            "no enabled table matched{}{}",
            link.map(|l| format!(" link {l}")).unwrap_or_default(),
            table.map(|t| format!(" table {t}")).unwrap_or_default()
        );
    }
    Ok((selected, invalid))
}

/// This process's peak resident memory (Linux: VmHWM), in KiB.
fn peak_memory_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn print_report(link: &str, r: &duplex::parity::TableReport, check_id: i64) {
    let verdict = if r.differences.is_empty() {
        "identical".to_string()
    } else {
        format!("{} difference(s)", r.differences.len())
    };
    let secs = r.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        (r.rows_a + r.rows_b) as f64 / secs
    } else {
        0.0
    };
    println!(
        "link {link} table {}: {verdict} ({} rows on {}, {} on {}; {:.1} s, {:.0} rows/s; check {check_id})",
        r.table, r.rows_a, r.site_a, r.rows_b, r.site_b, secs, rate
    );
    for d in r.differences.iter().take(50) {
        match d.kind {
            duplex::parity::DiffKind::Missing => {
                println!("  missing on {}: {}", r.site_b, d.key)
            }
            duplex::parity::DiffKind::Extra => println!("  only on {}: {}", r.site_b, d.key),
            duplex::parity::DiffKind::Differs => {
                println!("  differs: {} (columns {})", d.key, d.columns.join(", "))
            }
        }
    }
    if r.differences.len() > 50 {
        println!(
            "  ... and {} more (SELECT * FROM duplex.parity_differences WHERE check_id = {check_id})",
            r.differences.len() - 50
        );
    }
    if !r.skipped_columns.is_empty() {
        println!("  not compared: {}", r.skipped_columns.join(", "));
    }
}

/// `duplex repair`: check each table, make the differing rows equal from
/// `winner` through the normal replication path (`dry_run`: only print the
/// plan), then check again. Returns whether every table ended clean.
pub async fn repair(
    control: &str,
    link: Option<&str>,
    table: Option<&str>,
    winner: &duplex::parity::repair::Winner,
    dry_run: bool,
    options: &duplex::parity::CheckOptions,
) -> anyhow::Result<bool> {
    duplex::install_crypto_provider();
    let mut client = connect(control, "duplex repair").await?;
    let (selected, _) = selected_tables(&mut client, link, table).await?;
    let mut clean = true;
    for (lc, t) in &selected {
        let l = &lc.link;
        let report = duplex::parity::check_table(lc, t, options, Some(&mut client))
            .await
            .with_context(|| format!("link {} table {}", l.name, t.table))?;
        if report.differences.is_empty() {
            println!(
                "link {} table {}: identical, nothing to repair",
                l.name, t.table
            );
            continue;
        }
        let actions =
            duplex::parity::repair::repair_table(lc, t, &report.differences, winner, dry_run)
                .await
                .with_context(|| format!("repair link {} table {}", l.name, t.table))?;
        let verb = if dry_run { "would" } else { "did" };
        println!(
            "link {} table {}: {} difference(s); {verb} write {} row(s):",
            l.name,
            t.table,
            report.differences.len(),
            actions.len()
        );
        for a in &actions {
            println!(
                "  {} {} on {} ({}): {}",
                a.action,
                a.key,
                a.site,
                a.kind.as_str(),
                a.statement
            );
        }
        if dry_run {
            clean = false;
            continue;
        }
        let after = duplex::parity::check_table(lc, t, options, Some(&mut client)).await?;
        let id = duplex::parity::record(&mut client, &after).await?;
        print_report(&l.name, &after, id);
        clean &= after.differences.is_empty();
    }
    Ok(clean)
}
