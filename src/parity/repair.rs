//! Repair: make the rows `duplex check` found different equal again, from a
//! chosen site or by the table's policy.
//!
//! A repair is a write on the losing site, in an ordinary session, that
//! sets its row to the winning site's content (or deletes it, or inserts it)
//! and sets the row's marker column to the winning version's vector. duplex
//! captures it like any user write: the change carries that vector plus the
//! losing site's new dot, so on the winning site it has seen the local
//! version and is applied (same content, merged vector), and both sites end
//! with the same row and the same version history. Nothing bypasses the
//! normal path: marker, vectors and origin tags stay right.

use crate::canonical::Value;
use crate::conflict::Policy;
use crate::control::{LinkConfig, LinkTable};
use crate::marker::{Dot, Marker};

use super::{DiffKind, Difference, Pair};
use crate::table_reader::{UserWrite, VersionedRow};

/// Which version wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Winner {
    /// This site's (by name).
    Site(String),
    /// The table's policy: last_writer_wins (later version time; a row
    /// present on one site only is kept) or site_priority.
    Policy,
}

/// One row put right (or to put right, in a dry run).
#[derive(Debug, Clone)]
pub struct RepairAction {
    pub key: String,
    pub kind: DiffKind,
    /// The site written.
    pub site: String,
    /// `update`, `insert` or `delete`.
    pub action: &'static str,
    pub statement: String,
}

/// The version time of a row for last-writer-wins: the marker's for a row
/// duplex wrote, the write's own for a user's.
fn version_time(v: &VersionedRow) -> i64 {
    if v.synced {
        if let Some(m) = Marker::parse(v.marker.as_deref()).ok().flatten() {
            return m.ts;
        }
    }
    v.version_us.unwrap_or(0)
}

/// The marker JSON that makes the winner's version known on the loser: the
/// version the winner holds, its own entry given a counter above every one
/// of its commits so far (its version time stays, so it recognises it).
fn winner_marker(v: &VersionedRow, site: u32, counter: u64) -> String {
    if v.synced {
        if let Some(m) = Marker::parse(v.marker.as_deref()).ok().flatten() {
            return m.to_json();
        }
    }
    let dot = Dot::at(counter.max(1), v.version_us.unwrap_or(0));
    Marker::for_user_write(v.marker.as_deref(), None, site, dot, 0, &"repair").to_json()
}

/// Plan (and unless `dry_run`, apply) the repair of `differences` found in
/// one table of `lc`.
pub async fn repair_table(
    lc: &LinkConfig,
    table: &LinkTable,
    differences: &[Difference],
    winner: &Winner,
    dry_run: bool,
) -> Result<Vec<RepairAction>, crate::Error> {
    let (mut pair, _) = super::open_pair(lc, table).await?;
    let link = &lc.link;
    let (marker_col, stamp_col) = (link.marker_column.clone(), link.stamp_column());
    let fixed_winner_is_a = match winner {
        Winner::Site(name) if *name == lc.site_a.name => Some(true),
        Winner::Site(name) if *name == lc.site_b.name => Some(false),
        Winner::Site(name) => {
            return Err(crate::Error::Internal(format!(
                "--from {name}: not a site of link {} (its sites are {} and {})",
                link.name, lc.site_a.name, lc.site_b.name
            )))
        }
        Winner::Policy => match &table.policy.policy {
            Policy::LastWriterWins => None,
            Policy::SitePriority(site) => Some(*site == lc.site_a.site_id),
            other => {
                return Err(crate::Error::Internal(format!(
                    "table {} has policy {}, which names no winner for a whole row: choose a site with --from",
                    table.table,
                    other.name()
                )))
            }
        },
    };
    let counter_a = pair.a.current_counter().await?;
    let counter_b = pair.b.current_counter().await?;
    let mut writes_a: Vec<UserWrite> = Vec::new();
    let mut writes_b: Vec<UserWrite> = Vec::new();
    let mut actions = Vec::new();
    for d in differences {
        let Some(a_key) = d.a_key.clone() else {
            tracing::warn!(key = %d.key, "a key site {} cannot hold: repair it by hand", lc.site_a.name);
            continue;
        };
        let b_key = pair.to_b_key(&a_key);
        let va = pair
            .a
            .fetch_versions(std::slice::from_ref(&a_key), &marker_col, &stamp_col)
            .await?
            .into_iter()
            .next();
        let vb = match &b_key {
            Some(k) => pair
                .b
                .fetch_versions(std::slice::from_ref(k), &marker_col, &stamp_col)
                .await?
                .into_iter()
                .next(),
            None => None,
        };
        if va.is_none() && vb.is_none() {
            continue; // equal again since the check
        }
        let a_wins = match fixed_winner_is_a {
            Some(w) => w,
            // Last writer wins; a row on one site only is kept (a write
            // beats a delete, as in the stream).
            None => match (&va, &vb) {
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(ra), Some(rb)) => {
                    let (ta, tb) = (version_time(ra), version_time(rb));
                    ta > tb || (ta == tb && lc.site_a.site_id > lc.site_b.site_id)
                }
                (None, None) => continue,
            },
        };
        let (win, lose_exists, win_site, win_counter) = if a_wins {
            (&va, vb.is_some(), lc.site_a.site_id, counter_a)
        } else {
            (&vb, va.is_some(), lc.site_b.site_id, counter_b)
        };
        let (statement, action, site) = match win {
            Some(w) => {
                let marker = winner_marker(w, win_site, win_counter);
                // The winner's values in the loser's columns and representation.
                let (loser, values) = if a_wins {
                    let mut values = vec![None; pair.b.columns.len()];
                    for &(ia, ib) in &pair.pairs {
                        let v = w.row.0.get(ia).cloned().flatten().unwrap_or(Value::Null);
                        values[ib] = Some(pair.b.columns[ib].normalize(&v).map_err(|e| {
                            crate::Error::Internal(format!(
                                "{}: column {} cannot hold {}'s value: {e}",
                                d.key,
                                pair.b.columns[ib].name(),
                                lc.site_a.name
                            ))
                        })?);
                    }
                    (&pair.b, values)
                } else {
                    let mut values = vec![None; pair.a.columns.len()];
                    for &(ia, ib) in &pair.pairs {
                        let v = w.row.0.get(ib).cloned().flatten().unwrap_or(Value::Null);
                        values[ia] = Some(pair.a.columns[ia].normalize(&v).map_err(|e| {
                            crate::Error::Internal(format!(
                                "{}: column {} cannot hold {}'s value: {e}",
                                d.key,
                                pair.a.columns[ia].name(),
                                lc.site_b.name
                            ))
                        })?);
                    }
                    (&pair.a, values)
                };
                let key = if a_wins {
                    match &b_key {
                        Some(k) => k.clone(),
                        None => continue,
                    }
                } else {
                    a_key.clone()
                };
                let st = loser.repair_statement(
                    &key,
                    Some(&values),
                    lose_exists,
                    &marker_col,
                    &marker,
                )?;
                (
                    st,
                    if lose_exists { "update" } else { "insert" },
                    if a_wins {
                        &lc.site_b.name
                    } else {
                        &lc.site_a.name
                    },
                )
            }
            None => {
                // The winner has no such row: delete the loser's.
                let (loser, key) = if a_wins {
                    match &b_key {
                        Some(k) => (&pair.b, k.clone()),
                        None => continue,
                    }
                } else {
                    (&pair.a, a_key.clone())
                };
                let st = loser.repair_statement(&key, None, true, &marker_col, "")?;
                (
                    st,
                    "delete",
                    if a_wins {
                        &lc.site_b.name
                    } else {
                        &lc.site_a.name
                    },
                )
            }
        };
        actions.push(RepairAction {
            key: d.key.clone(),
            kind: d.kind,
            site: site.clone(),
            action,
            statement: statement.sql().to_string(),
        });
        if a_wins {
            writes_b.push(statement);
        } else {
            writes_a.push(statement);
        }
    }
    if !dry_run {
        apply_writes(&mut pair, writes_a, writes_b).await?;
    }
    Ok(actions)
}

async fn apply_writes(
    pair: &mut Pair,
    writes_a: Vec<UserWrite>,
    writes_b: Vec<UserWrite>,
) -> Result<(), crate::Error> {
    for chunk in writes_a.chunks(500) {
        pair.a.write_as_user(chunk.to_vec()).await?;
    }
    for chunk in writes_b.chunks(500) {
        pair.b.write_as_user(chunk.to_vec()).await?;
    }
    Ok(())
}
