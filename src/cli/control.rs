//! The control database from the command line: connecting to it, and
//! `duplex init`, `duplex upgrade` and `duplex config check`.

use anyhow::Context;
use duplex::control::ControlDb;

/// The control database, its schema at this version of duplex.
pub async fn connect(control: &str, application_name: &str) -> anyhow::Result<ControlDb> {
    let mut client = open(control, application_name).await?;
    duplex::control::check_version(&mut client).await?;
    Ok(client)
}

/// Link `link` (id or name) as configured, its table patterns expanded.
pub async fn link_config(
    client: &mut ControlDb,
    link: &str,
) -> anyhow::Result<duplex::control::LinkConfig> {
    use anyhow::Context;
    let config = duplex::control::load_unchecked(client).await?;
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
    Ok(lc)
}

/// The control database, whatever its schema's version (for `init` and
/// `upgrade`, which change it).
async fn open(control: &str, application_name: &str) -> anyhow::Result<ControlDb> {
    let ep = duplex::control::ControlEndpoint::from_url(control)?;
    ep.connect(application_name)
        .await
        .context("connect to the control database")
}

/// `duplex init`: install or upgrade the control schema.
pub async fn init(control: &str) -> anyhow::Result<()> {
    let mut client = open(control, "duplex init").await?;
    let applied = duplex::control::migrate(&mut client).await?;
    if applied.is_empty() {
        println!(
            "control schema is up to date (version {})",
            duplex::control::latest_version()
        );
    } else {
        println!("control schema installed: applied migration(s) {applied:?}");
    }
    Ok(())
}

/// `duplex upgrade`: migrate an installed control schema.
pub async fn upgrade(control: &str) -> anyhow::Result<()> {
    let mut client = open(control, "duplex upgrade").await?;
    let from = duplex::control::check_version(&mut client).await?;
    let applied = duplex::control::migrate(&mut client).await?;
    if applied.is_empty() {
        println!("control schema is up to date (version {from})");
    } else {
        println!(
            "control schema upgraded from version {from} to {}: applied migration(s) {applied:?}",
            duplex::control::latest_version()
        );
    }
    Ok(())
}

/// `duplex config check`: per link, what differs from the configuration in
/// force and whether a running duplex would accept it.
pub async fn config_check(control: &str) -> anyhow::Result<()> {
    let checks = duplex::runner::check_config(control).await?;
    let mut refused = 0;
    let mut tables_refused = 0;
    for c in &checks {
        match &c.verdict {
            Ok(()) if c.added.is_empty() && c.removed.is_empty() => {
                println!("link {} ({}): no change pending", c.link_id, c.name)
            }
            Ok(()) => println!("link {} ({}): would be applied", c.link_id, c.name),
            Err(why) => {
                refused += 1;
                println!("link {} ({}): would be REJECTED: {why}", c.link_id, c.name)
            }
        }
        for l in &c.removed {
            println!("  - {l}");
        }
        for l in &c.added {
            println!("  + {l}");
        }
        for (table, why) in &c.key_collisions {
            println!("  ! table {table}: {why}");
        }
        for (table, why) in &c.refused {
            tables_refused += 1;
            println!("  table {table} would be REFUSED (the link's other tables run): {why}");
        }
    }
    if refused > 0 {
        anyhow::bail!("{refused} link(s) have a configuration a running duplex would reject");
    }
    if tables_refused > 0 {
        anyhow::bail!(
            "{tables_refused} table(s) cannot be synced as configured; each is refused alone (the reasons above say what to do)"
        );
    }
    Ok(())
}
