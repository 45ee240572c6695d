//! Link planning: which tables of a link run, table by table, after their
//! patterns are expanded and each is checked against both sites' catalogs.

use std::collections::BTreeMap;

use super::site_conn::{mysql_error, setup_conn, SetupConn};
use crate::control::{self, LinkConfig, LinkTable};
use crate::setup::{judge_table, mysql_site_facts, pg_site_facts};

/// How one table of a link stands: what `duplex.table_config_status` says.
#[derive(Debug, Clone, PartialEq)]
pub struct TableVerdict {
    pub table: crate::canonical::TableName,
    /// `syncing`, `paused` or `refused`.
    pub state: &'static str,
    /// Refused: why, and what to do. Syncing or paused: why the last change
    /// of its configuration was refused (its configuration in force stays).
    pub reason: Option<String>,
}

/// A link's configuration checked table by table against both sites.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The link as it runs: the tables that can be synced, each on the
    /// configuration it is synced by.
    pub effective: LinkConfig,
    /// Every configured table: syncing, paused or refused, and why.
    pub tables: Vec<TableVerdict>,
    /// Per site: duplex applies in the replica role there (see `setup::SiteFacts`).
    pub replica_role: BTreeMap<u32, bool>,
}

impl Resolved {
    /// A configuration in force without checks against the sites (a paused link).
    pub(super) fn unchecked(lc: &LinkConfig) -> Resolved {
        Resolved {
            effective: lc.clone(),
            tables: Vec::new(),
            replica_role: BTreeMap::new(),
        }
    }

    /// Tables refused, or kept on an older configuration.
    pub fn refusals(&self) -> Vec<String> {
        self.tables
            .iter()
            .filter_map(|t| {
                t.reason.as_ref().map(|r| match t.state {
                    "refused" => format!("table {} refused: {r}", t.table),
                    _ => format!("table {}: {r}", t.table),
                })
            })
            .collect()
    }
}

/// Check every table of `lc` against both sites' catalogs, read-only: each
/// table that can be synced as configured runs; one whose configuration
/// cannot, but that runs on an older one (`previous`, the configuration in
/// force) that still can, stays on that; every other table is refused alone,
/// with its reason. Fails only for what concerns the whole link (a site
/// that cannot be reached or read).
///
/// `held`: the link's tables whose changes a direction holds for their
/// shape (bare names): they sync already, like the tables of `previous`
/// (see `setup::judge_table`).
pub async fn resolve_tables(
    lc: &LinkConfig,
    previous: Option<&LinkConfig>,
    held: &std::collections::BTreeSet<String>,
) -> Result<Resolved, crate::Error> {
    let wanted: Vec<(&LinkTable, Option<&String>)> = lc
        .tables
        .iter()
        .map(|t| (t, None))
        .chain(lc.invalid_tables.iter().map(|(t, why)| (t, Some(why))))
        .collect();
    let names: Vec<&crate::canonical::TableName> = wanted.iter().map(|(t, _)| &t.table).collect();
    let facts = site_facts(lc, &names).await?;
    let sites = [&facts[0], &facts[1]];
    let synced = |t: &LinkTable| {
        held.contains(&t.table.name)
            || previous.is_some_and(|p| p.tables.iter().any(|o| o.table == t.table))
    };
    let judge = |t: &LinkTable| {
        judge_table(&lc.link, t, sites, &names, synced(t)).map_err(|why| why.join("; "))
    };
    let mut effective = lc.clone();
    effective.tables.clear();
    effective.invalid_tables.clear();
    let mut tables = Vec::new();
    for (t, invalid) in wanted {
        let verdict = match invalid.cloned().map_or_else(|| judge(t), Err) {
            Ok(()) => {
                effective.tables.push(t.clone());
                None
            }
            Err(why) => Some(why),
        };
        let Some(why) = verdict else {
            tables.push(TableVerdict {
                table: t.table.clone(),
                state: if t.paused { "paused" } else { "syncing" },
                reason: None,
            });
            continue;
        };
        let kept = previous
            .and_then(|p| p.tables.iter().find(|o| o.table == t.table))
            .filter(|old| *old != t && judge(old).is_ok());
        match kept {
            Some(old) => {
                effective.tables.push(old.clone());
                tables.push(TableVerdict {
                    table: t.table.clone(),
                    state: if old.paused { "paused" } else { "syncing" },
                    reason: Some(format!(
                        "the change of its configuration was refused (its configuration in force stays): {why}"
                    )),
                });
            }
            None => tables.push(TableVerdict {
                table: t.table.clone(),
                state: "refused",
                reason: Some(why),
            }),
        }
    }
    for verdict in tables.iter().filter(|v| v.reason.is_some()) {
        tracing::warn!(link = %lc.link.name, table = %verdict.table, state = verdict.state,
            reason = verdict.reason.as_deref().unwrap_or_default(), "table not synced as configured");
    }
    Ok(Resolved {
        effective,
        tables,
        replica_role: facts.iter().map(|f| (f.site_id, f.replica_role)).collect(),
    })
}

/// What the checks of `tables` need to know about each of `lc`'s two
/// sites, site_a's first (read-only).
pub(super) async fn site_facts(
    lc: &LinkConfig,
    tables: &[&crate::canonical::TableName],
) -> Result<[crate::setup::SiteFacts; 2], crate::Error> {
    let mut facts = Vec::with_capacity(2);
    for site in [&lc.site_a, &lc.site_b] {
        facts.push(match setup_conn(site).await? {
            SetupConn::Pg(client) => pg_site_facts(&client, site, &lc.link, tables).await?,
            SetupConn::Mysql(mut conn, ep) => {
                let database = ep.database().to_string();
                mysql_site_facts(&mut conn, site, &lc.link, &database, tables).await?
            }
        });
    }
    let [a, b]: [crate::setup::SiteFacts; 2] = facts
        .try_into()
        .map_err(|_| crate::Error::Internal("a link has two sites".into()))?;
    Ok([a, b])
}

/// The link's tables that sync already (bare names): those whose changes a
/// direction holds for their shape (`journal::schema_holds`), and those
/// copied (or whose copy was skipped) when they joined. A column found on
/// one site only in one of them was added or dropped while it synced (or
/// while duplex was down): the table stays in the link and waits, instead
/// of leaving it (see `setup::judge_table`).
pub async fn tables_held_for_shape(
    control: &mut control::ControlDb,
    link_id: u32,
) -> Result<std::collections::BTreeSet<String>, control::ControlError> {
    let rows = control
        .rows(control::Sql::new(
            "read the tables held for their shape",
            "SELECT table_name FROM duplex.quarantine
              WHERE link_id = $1 AND op = 'schema' AND status = 'held'
             UNION
             SELECT table_name FROM duplex.snapshot_progress
              WHERE link_id = $2 AND state <> 'copying'",
            "SELECT table_name FROM duplex.quarantine
              WHERE link_id = ? AND op = 'schema' AND status = 'held'
             UNION
             SELECT table_name FROM duplex.snapshot_progress
              WHERE link_id = ? AND state <> 'copying'",
            &[
                control::P::I32(link_id as i32),
                control::P::I32(link_id as i32),
            ],
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.text("table_name").ok())
        .map(|t| t.rsplit('.').next().unwrap_or(&t).to_string())
        .collect())
}

/// Add the tables a link's patterns match on both sites (explicit
/// `link_tables` rows take precedence). Reads the sites' catalogs only.
pub async fn expand_patterns(lc: &mut LinkConfig) -> Result<(), crate::Error> {
    if !lc.patterns.iter().any(|p| !p.exclude) {
        return Ok(());
    }
    let schemas: std::collections::BTreeSet<String> =
        lc.patterns.iter().map(|p| p.schema_name.clone()).collect();
    let mut matched: Vec<std::collections::BTreeSet<(String, String)>> = Vec::new();
    for site in [&lc.site_a, &lc.site_b] {
        let mut found = std::collections::BTreeSet::new();
        let mut conn = setup_conn(site).await?;
        for schema in &schemas {
            let like = |exclude: bool| -> Vec<String> {
                lc.patterns
                    .iter()
                    .filter(|p| &p.schema_name == schema && p.exclude == exclude)
                    .map(|p| p.pattern.clone())
                    .collect()
            };
            let (include, exclude) = (like(false), like(true));
            if include.is_empty() {
                continue;
            }
            let names: Vec<String> = match &mut conn {
                SetupConn::Pg(client) => client
                    .query(
                        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
                            AND c.relname LIKE ANY($2) AND NOT (c.relname LIKE ANY($3))
                            AND NOT c.relispartition
                            AND c.relname NOT LIKE '\\_duplex%'",
                        &[schema, &include, &exclude],
                    )
                    .await
                    .map_err(|e| {
                        crate::Error::from(crate::setup::SetupError::Db {
                            site: site.name.clone(),
                            context: "list the tables a pattern matches".into(),
                            source: e,
                        })
                    })?
                    .iter()
                    .map(|r| r.get(0))
                    .collect(),
                SetupConn::Mysql(conn, ep) => {
                    use mysql_async::prelude::Queryable;
                    let any = |n: usize| vec!["TABLE_NAME LIKE ?"; n].join(" OR ");
                    let sql = format!(
                        "SELECT TABLE_NAME FROM information_schema.TABLES
                          WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'
                            AND ({}) AND NOT ({}) AND TABLE_NAME NOT LIKE '\\_duplex%'",
                        any(include.len()),
                        if exclude.is_empty() { "FALSE".to_string() } else { any(exclude.len()) }
                    );
                    let mut params: Vec<mysql_async::Value> = vec![ep.database().into()];
                    params.extend(include.iter().chain(&exclude).map(|p| p.as_str().into()));
                    conn.exec(sql, params).await.map_err(mysql_error(&site.name, "list the tables a pattern matches"))?
                }
            };
            found.extend(names.into_iter().map(|n| (schema.clone(), n)));
        }
        matched.push(found);
    }
    // Tables on both sites only: one side alone cannot be synced.
    let both: Vec<(String, String)> = matched[0]
        .intersection(matched.get(1).unwrap_or(&Default::default()))
        .cloned()
        .collect();
    for (schema, name) in both {
        // An explicit row, enabled or not, takes precedence.
        if lc.tables.iter().any(|t| t.table.name == name) || lc.disabled_tables.contains(&name) {
            continue;
        }
        lc.tables.push(LinkTable {
            link_id: lc.link.link_id,
            table: crate::canonical::TableName::new(schema, name),
            enabled: true,
            paused: false,
            initial_sync: true,
            check_interval: None,
            direction: crate::mapping::TableDirection::Both,
            mappings: Vec::new(),
            replica_identity: control::ReplicaIdentityMode::Full,
            policy: crate::conflict::TablePolicy::default(),
            fire_triggers: false,
        });
    }
    Ok(())
}
