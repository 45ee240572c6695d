//! `duplex keys interleave`: what the library's `runner::interleave_keys`
//! did, and what is left for a person (a sequence's owner, my.cnf).

use super::control::connect;

/// Interleave link `link`'s colliding key generators (`dry_run`: only say
/// how). Returns whether nothing is left to do by hand.
pub async fn interleave(control: &str, link: &str, dry_run: bool) -> anyhow::Result<bool> {
    let mut client = connect(control, "duplex keys").await?;
    let lc = super::control::link_config(&mut client, link).await?;
    let steps = duplex::runner::interleave_keys(&lc, !dry_run).await?;
    if steps.is_empty() {
        println!(
            "link {}: no synced table has keys both sites generate from overlapping values",
            lc.link.name
        );
        return Ok(true);
    }
    let mut left = 0;
    for s in &steps {
        let verb = if s.done {
            "done"
        } else if dry_run {
            "would run"
        } else {
            "to run"
        };
        if !s.statement.is_empty() {
            println!("{} on {}: {verb}: {}", s.table, s.site, s.statement);
        }
        if let Some(note) = &s.note {
            println!("{} on {}: {note}", s.table, s.site);
        }
        if !s.done || s.note.is_some() {
            left += 1;
        }
    }
    if left > 0 && !dry_run {
        println!("{left} step(s) left for a person (above); then `duplex config check` says whether the keys still collide");
    }
    Ok(left == 0 || dry_run)
}
