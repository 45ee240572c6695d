//! `duplex config check`: a read-only dry run of the configuration in the
//! control tables against the configuration in force.

use std::collections::BTreeMap;

use super::plan::{expand_patterns, resolve_tables};
use crate::control::{self, ControlEndpoint, Sql};
use crate::error_chain::error_chain;

/// What a pending configuration change of one link would do (see
/// [`check_config`]).
#[derive(Debug, Clone)]
pub struct LinkCheck {
    pub link_id: u32,
    pub name: String,
    /// Settings the change adds and removes, against the configuration in
    /// force (`duplex.config_status`); everything when none is recorded.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// `Ok` when the change would take effect, else why it would be refused.
    pub verdict: Result<(), String>,
    /// Tables that cannot be synced as configured, each with why and what
    /// to do: refused alone, the link's other tables would run.
    pub refused: Vec<(String, String)>,
    /// Synced tables whose key both sites generate from overlapping values
    /// (see `key_generators`), each with what to do: they run, and each
    /// key both sites take is a conflict.
    pub key_collisions: Vec<(String, String)>,
}

/// Dry run of the configuration in the control tables: per link, what differs
/// from the configuration in force and whether it would be accepted. Reads
/// only: nothing is changed on the control database or the sites.
pub async fn check_config(control_url: &str) -> Result<Vec<LinkCheck>, crate::Error> {
    crate::install_crypto_provider();
    let control_ep = ControlEndpoint::from_url(control_url)?;
    let mut client = control_ep.connect("duplex config check").await?;
    let config = control::load_unchecked(&mut client).await?;
    let mut in_force: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for r in client
        .rows(Sql::new(
            "read duplex.config_status",
            "SELECT link_id, applied_config FROM duplex.config_status WHERE applied_at IS NOT NULL",
            "SELECT link_id, applied_config FROM duplex.config_status WHERE applied_at IS NOT NULL",
            &[],
        ))
        .await?
    {
        // A text[] on PostgreSQL and a JSON array on MySQL: both arrive as JSON.
        let lines: Vec<String> = serde_json::from_str(&r.text("applied_config")?).map_err(|e| {
            control::ControlError::Invalid(format!("duplex.config_status.applied_config: {e}"))
        })?;
        in_force.insert(r.parse("link_id")?, lines);
    }
    let mut out = Vec::new();
    for link in &config.links {
        let mut refused = Vec::new();
        let mut key_collisions = Vec::new();
        let (lines, verdict) = match config.link_config(link.link_id) {
            Some(Ok(mut lc)) if lc.link.enabled => {
                // As the running duplex would: patterns expanded, every
                // table checked against both sites.
                let held = super::plan::tables_held_for_shape(&mut client, link.link_id).await?;
                let resolved = match expand_patterns(&mut lc).await {
                    Ok(()) => resolve_tables(&lc, None, &held).await,
                    Err(e) => Err(e),
                };
                match resolved {
                    Ok(r) => {
                        refused = r
                            .tables
                            .iter()
                            .filter_map(|t| Some((t.table.to_string(), t.reason.clone()?)))
                            .collect();
                        key_collisions = super::key_generators::collisions(&r.effective).await;
                        let mut lines = r.effective.describe();
                        // Refused tables show as refused, not as removed.
                        lines.extend(old_lines_of(
                            in_force.get(&link.link_id),
                            refused.iter().map(|(t, _)| t.as_str()),
                        ));
                        (lines, Ok(()))
                    }
                    Err(e) => (lc.describe(), Err(error_chain(&e))),
                }
            }
            Some(Ok(lc)) => (lc.describe(), Ok(())),
            Some(Err(e)) => (Vec::new(), Err(e.to_string())),
            None => continue,
        };
        let old = in_force.get(&link.link_id).cloned().unwrap_or_default();
        let (added, removed) = if verdict.is_ok() || !lines.is_empty() {
            (
                lines.iter().filter(|l| !old.contains(l)).cloned().collect(),
                old.iter().filter(|l| !lines.contains(l)).cloned().collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        out.push(LinkCheck {
            link_id: link.link_id,
            name: link.name.clone(),
            added,
            removed,
            verdict,
            refused,
            key_collisions,
        });
    }
    Ok(out)
}

/// The lines of the configuration in force (`old`) that describe `tables`.
fn old_lines_of<'a>(
    old: Option<&Vec<String>>,
    tables: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    let prefixes: Vec<String> = tables.map(|t| format!("table {t}:")).collect();
    old.into_iter()
        .flatten()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p.as_str())))
        .cloned()
        .collect()
}
