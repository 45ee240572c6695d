//! `duplex keys interleave`: what the library's `runner::interleave_keys`
//! did, and what is left for a person (a sequence's owner, my.cnf).

use anyhow::Context;

use super::control::connect;

/// Interleave link `link`'s colliding key generators (`dry_run`: only say
/// how). Returns whether nothing is left to do by hand.
pub async fn interleave(control: &str, link: &str, dry_run: bool) -> anyhow::Result<bool> {
    let mut client = connect(control, "duplex keys").await?;
    let config = duplex::control::load_unchecked(&mut client).await?;
    let found = config
        .links
        .iter()
        .find(|l| l.name == link || l.link_id.to_string() == link)
        .with_context(|| format!("no link {link} in duplex.links"))?;
    let mut lc = match config.link_config(found.link_id) {
        Some(Ok(lc)) => lc,
        Some(Err(e)) => {
            anyhow::bail!("link {link}: its configuration is invalid ({e}): fix it first")
        }
        None => anyhow::bail!("no link {link} in duplex.links"),
    };
    duplex::runner::expand_patterns(&mut lc)
        .await
        .with_context(|| format!("link {link}: expand its table patterns"))?;
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
