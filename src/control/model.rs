//! Typed rows of the control schema.

use std::path::PathBuf;

use super::db::TextRow;
use super::ControlError;
use crate::canonical::TableName;

/// Column `name` of a `duplex.{table}` row, parsed; errors name both.
fn col<T: std::str::FromStr>(row: &TextRow, table: &str, name: &str) -> Result<T, ControlError>
where
    T::Err: std::fmt::Display,
{
    row.parse(name)
        .map_err(|e| ControlError::Invalid(format!("duplex.{table}: {e}")))
}

fn opt_col(row: &TextRow, table: &str, name: &str) -> Result<Option<String>, ControlError> {
    row.opt(name)
        .map_err(|e| ControlError::Invalid(format!("duplex.{table}: {e}")))
}

fn bool_col(row: &TextRow, table: &str, name: &str) -> Result<bool, ControlError> {
    row.bool(name)
        .map_err(|e| ControlError::Invalid(format!("duplex.{table}: {e}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteEngine {
    Postgres,
    Mysql,
}

/// TLS mode, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// TLS if the server offers it, without certificate verification.
    Prefer,
    /// TLS always, without certificate verification.
    Require,
    /// TLS always, certificate chain verified, host name not.
    VerifyCa,
    /// TLS always, certificate chain and host name verified.
    VerifyFull,
}

impl TlsMode {
    pub fn parse(s: &str) -> Option<TlsMode> {
        Some(match s {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A row of `duplex.sites`.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub site_id: u32,
    pub name: String,
    pub engine: SiteEngine,
    /// Connection string without password.
    pub conninfo: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls_mode: TlsMode,
    pub tls_ca_file: Option<PathBuf>,
}

impl Site {
    pub(super) fn from_row(row: &TextRow) -> Result<Site, ControlError> {
        let site_id: i32 = col(row, "sites", "site_id")?;
        let name: String = col(row, "sites", "name")?;
        let engine = match col::<String>(row, "sites", "engine")?.as_str() {
            "postgresql" => SiteEngine::Postgres,
            "mysql" => SiteEngine::Mysql,
            other => {
                return Err(ControlError::Invalid(format!(
                    "site {name}: unknown engine '{other}' (expected postgresql or mysql)"
                )))
            }
        };
        let tls: String = col(row, "sites", "tls_mode")?;
        let tls_mode = TlsMode::parse(&tls).ok_or_else(|| {
            ControlError::Invalid(format!(
                "site {name}: unknown tls_mode '{tls}' (expected disable, prefer, require, verify-ca or verify-full)"
            ))
        })?;
        Ok(Site {
            site_id: u32::try_from(site_id).map_err(|_| {
                ControlError::Invalid(format!("site {name}: site_id {site_id} is negative"))
            })?,
            name,
            engine,
            conninfo: col(row, "sites", "conninfo")?,
            password_env: opt_col(row, "sites", "password_env")?,
            password_file: opt_col(row, "sites", "password_file")?.map(PathBuf::from),
            tls_mode,
            tls_ca_file: opt_col(row, "sites", "tls_ca_file")?.map(PathBuf::from),
        })
    }
}

/// A row of `duplex.links`.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub link_id: u32,
    pub name: String,
    pub site_a: u32,
    pub site_b: u32,
    pub enabled: bool,
    pub marker_column: String,
    /// How long tombstones of applied deletes are kept on the target sites.
    pub tombstone_retention: std::time::Duration,
    /// Most rows per second each direction copies in an initial sync (0: no limit).
    pub snapshot_rows_per_second: u32,
    /// Connections each direction applies on at once (see `pipeline::dispatch`).
    pub apply_workers: u32,
    /// Warn this close to a source slot's invalidation (see
    /// `runner::retention_watch`).
    pub retention_warn_bytes: u64,
    /// `duplex resync` requests so far: a new one restarts the running link,
    /// whose directions then re-create what was reset and copy the tables.
    pub resync_requests: i64,
    /// PostgreSQL 17+ sites: the link's slots are failover slots, kept on a
    /// physical standby (`links.failover_slots`).
    pub failover_slots: bool,
}

impl Link {
    pub(super) fn from_row(row: &TextRow) -> Result<Link, ControlError> {
        let id: i32 = col(row, "links", "link_id")?;
        let a: i32 = col(row, "links", "site_a")?;
        let b: i32 = col(row, "links", "site_b")?;
        let positive = |v: i32, what: &str| {
            u32::try_from(v)
                .map_err(|_| ControlError::Invalid(format!("link {id}: {what} {v} is negative")))
        };
        Ok(Link {
            link_id: positive(id, "link_id")?,
            name: col(row, "links", "name")?,
            site_a: positive(a, "site_a")?,
            site_b: positive(b, "site_b")?,
            enabled: bool_col(row, "links", "enabled")?,
            marker_column: col(row, "links", "marker_column")?,
            snapshot_rows_per_second: col(row, "links", "snapshot_rows_per_second")?,
            resync_requests: col(row, "links", "resync_requests")?,
            failover_slots: bool_col(row, "links", "failover_slots")?,
            retention_warn_bytes: {
                let n: i64 = col(row, "links", "retention_warn_bytes")?;
                u64::try_from(n).map_err(|_| {
                    ControlError::Invalid(format!(
                        "link {id}: retention_warn_bytes {n} is negative"
                    ))
                })?
            },
            apply_workers: {
                let n: i32 = col(row, "links", "apply_workers")?;
                u32::try_from(n)
                    .ok()
                    .filter(|n| (1..=crate::sink::MAX_APPLY_WORKERS).contains(n))
                    .ok_or_else(|| {
                        ControlError::Invalid(format!(
                            "link {id}: apply_workers {n} is outside 1-{}",
                            crate::sink::MAX_APPLY_WORKERS
                        ))
                    })?
            },
            tombstone_retention: {
                let secs: f64 = col(row, "links", "tombstone_retention_secs")?;
                std::time::Duration::try_from_secs_f64(secs).map_err(|_| {
                    ControlError::Invalid(format!(
                        "link {id}: tombstone_retention must be a non-negative interval"
                    ))
                })?
            },
        })
    }

    /// Logical replication slot on `site` for this link. Only `[a-z0-9_]`: the
    /// replication client does not quote slot names.
    pub fn slot_name(&self, site: u32) -> String {
        format!("duplex_l{}_s{}", self.link_id, site)
    }

    /// Publication of this link's tables (same name on both sites).
    pub fn publication_name(&self) -> String {
        format!("duplex_l{}", self.link_id)
    }

    /// MySQL/MariaDB sites: the invisible column the server stamps with the
    /// time of each write (`ON UPDATE CURRENT_TIMESTAMP(6)`), next to the marker.
    pub fn stamp_column(&self) -> String {
        format!("{}_ts", self.marker_column)
    }

    /// Replication origin under which changes from `source_site` are applied.
    pub fn origin_name(&self, source_site: u32) -> String {
        format!(
            "{}l{}_from_s{}",
            DUPLEX_ORIGIN_PREFIX, self.link_id, source_site
        )
    }
}

/// Every replication origin duplex creates starts with this; the reader drops
/// transactions applied under any of them (loop prevention).
pub const DUPLEX_ORIGIN_PREFIX: &str = "duplex_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentityMode {
    Full,
    Key,
}

/// A row of `duplex.link_tables`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkTable {
    pub link_id: u32,
    pub table: TableName,
    pub enabled: bool,
    /// Changes are held until the table is resumed.
    pub paused: bool,
    /// Copy the rows each site already holds when the table joins the link.
    pub initial_sync: bool,
    /// Compare both sites this often while duplex runs (`None`: on demand only).
    pub check_interval: Option<std::time::Duration>,
    /// Which way its changes flow.
    pub direction: crate::mapping::TableDirection,
    /// Renamed, excluded, transformed and one-side-only columns.
    pub mappings: Vec<crate::mapping::ColumnMapping>,
    pub replica_identity: ReplicaIdentityMode,
    /// Conflict policy and owned columns.
    pub policy: crate::conflict::TablePolicy,
    /// The target's triggers fire for the rows duplex applies. Otherwise
    /// duplex applies in the replica role where it may (triggers do not
    /// fire) and refuses the table where a trigger would fire.
    pub fire_triggers: bool,
}

impl LinkTable {
    /// A `duplex.link_tables` row with its `column_owners` (column -> site)
    /// and `column_mappings` rows.
    pub(super) fn from_row(
        row: &TextRow,
        owners: std::collections::BTreeMap<String, u32>,
        mappings: Vec<crate::mapping::ColumnMapping>,
    ) -> Result<LinkTable, ControlError> {
        let id: i32 = col(row, "link_tables", "link_id")?;
        let table = TableName::new(
            col::<String>(row, "link_tables", "schema_name")?,
            col::<String>(row, "link_tables", "table_name")?,
        );
        let replica_identity = match col::<String>(row, "link_tables", "replica_identity")?.as_str() {
            "full" => ReplicaIdentityMode::Full,
            "key" => ReplicaIdentityMode::Key,
            other => {
                return Err(ControlError::Invalid(format!("link {id} table {table}: unknown replica_identity '{other}' (expected full or key)")))
            }
        };
        let priority_site: Option<i32> = row
            .opt_parse("priority_site")
            .map_err(|e| ControlError::Invalid(format!("duplex.link_tables: {e}")))?;
        let merge_tie: String = col(row, "link_tables", "merge_tie")?;
        let policy = crate::conflict::Policy::from_config(
            &col::<String>(row, "link_tables", "conflict_policy")?,
            priority_site.and_then(|s| u32::try_from(s).ok()),
            Some(&merge_tie),
        )
        .map_err(|e| ControlError::Invalid(format!("link {id} table {table}: {e}")))?;
        let d: String = col(row, "link_tables", "direction")?;
        let direction = crate::mapping::TableDirection::parse(&d).ok_or_else(|| {
            ControlError::Invalid(format!(
                "link {id} table {table}: unknown direction '{d}' (expected both, a_to_b or b_to_a)"
            ))
        })?;
        Ok(LinkTable {
            link_id: u32::try_from(id).map_err(|_| {
                ControlError::Invalid(format!("link_tables: link_id {id} is negative"))
            })?,
            table,
            enabled: bool_col(row, "link_tables", "enabled")?,
            paused: bool_col(row, "link_tables", "paused")?,
            initial_sync: bool_col(row, "link_tables", "initial_sync")?,
            check_interval: row
                .opt_parse::<u64>("check_interval_secs")
                .map_err(|e| ControlError::Invalid(format!("duplex.link_tables: {e}")))?
                .map(std::time::Duration::from_secs),
            direction,
            mappings,
            replica_identity,
            policy: crate::conflict::TablePolicy { policy, owners },
            fire_triggers: bool_col(row, "link_tables", "fire_triggers")?,
        })
    }
}

impl LinkTable {
    /// The mapping of this table's changes from `source` to the other site
    /// of `link`.
    pub fn mapping(
        &self,
        link: &Link,
        source: u32,
    ) -> Result<crate::mapping::TableMapping, String> {
        let target = if source == link.site_a {
            link.site_b
        } else {
            link.site_a
        };
        crate::mapping::TableMapping::build(
            &self.mappings,
            self.direction,
            source,
            target,
            source == link.site_a,
        )
    }

    /// Column owners in the names of site `site` (configured in site_a's).
    pub fn owners_on(&self, link: &Link, site: u32) -> std::collections::BTreeMap<String, u32> {
        if site == link.site_a {
            return self.policy.owners.clone();
        }
        match self.mapping(link, link.site_a) {
            Ok(m) => self
                .policy
                .owners
                .iter()
                .map(|(c, s)| (m.target_name(c).to_string(), *s))
                .collect(),
            Err(_) => self.policy.owners.clone(),
        }
    }

    /// The columns the configuration names on site `site`, each with why.
    pub fn required_columns(&self, link: &Link, site: u32) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .owners_on(link, site)
            .into_iter()
            .map(|(c, s)| (c, format!("owned by site {s}")))
            .collect();
        for m in &self.mappings {
            if m.site_id == site {
                out.push((
                    m.column_name.clone(),
                    "named in duplex.column_mappings".into(),
                ));
            } else if let (true, Some(peer)) = (m.synced, &m.peer_column) {
                out.push((
                    peer.clone(),
                    format!(
                        "site {}'s column {} is mapped to it",
                        m.site_id, m.column_name
                    ),
                ));
            }
        }
        out
    }
}

/// The whole configuration read from the control schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlConfig {
    pub sites: Vec<Site>,
    pub links: Vec<Link>,
    pub tables: Vec<LinkTable>,
    pub patterns: Vec<TablePattern>,
    /// Rows of a link that could not be read (link id, why): the link's
    /// configuration is invalid until they are fixed.
    pub invalid_rows: Vec<(u32, String)>,
}

/// A row of `duplex.link_table_patterns`.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePattern {
    pub link_id: u32,
    pub schema_name: String,
    /// SQL LIKE pattern on the table name.
    pub pattern: String,
    pub exclude: bool,
}

/// Everything one link is built from: what a change to the configuration is
/// compared by, link by link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    pub link: Link,
    pub site_a: Site,
    pub site_b: Site,
    /// The link's enabled tables: the explicit ones, then those its patterns
    /// matched (see `runner::expand_patterns`).
    pub tables: Vec<LinkTable>,
    pub patterns: Vec<TablePattern>,
    /// Tables with a `link_tables` row that is disabled: never added by a pattern.
    pub disabled_tables: Vec<String>,
    /// Enabled tables whose configuration is invalid in itself (a policy
    /// naming a site outside the link, inconsistent mappings), with why:
    /// refused alone, the link's other tables run (see `runner`).
    pub invalid_tables: Vec<(LinkTable, String)>,
}

impl LinkConfig {
    pub fn site(&self, id: u32) -> Option<&Site> {
        [&self.site_a, &self.site_b]
            .into_iter()
            .find(|s| s.site_id == id)
    }

    /// One line per setting, for `duplex.config_status.applied_config` and for
    /// showing what a pending change would do. No secrets: a site's conninfo
    /// never holds a password.
    pub fn describe(&self) -> Vec<String> {
        let l = &self.link;
        let mut out = vec![format!(
            "link {} ({}): {}, sites {} and {}, marker column {}, tombstones kept {}s{}",
            l.link_id,
            l.name,
            if l.enabled { "enabled" } else { "paused" },
            l.site_a,
            l.site_b,
            l.marker_column,
            l.tombstone_retention.as_secs(),
            if l.snapshot_rows_per_second > 0 {
                format!(
                    ", initial sync at most {} rows/s",
                    l.snapshot_rows_per_second
                )
            } else {
                String::new()
            }
        )];
        for s in [&self.site_a, &self.site_b] {
            out.push(format!(
                "site {} ({}): {:?} {} tls {:?}",
                s.site_id, s.name, s.engine, s.conninfo, s.tls_mode
            ));
        }
        for p in &self.patterns {
            out.push(format!(
                "pattern {}: {}.{}",
                if p.exclude { "exclude" } else { "include" },
                p.schema_name,
                p.pattern
            ));
        }
        for t in &self.tables {
            let mut line = format!(
                "table {}: {}, replica identity {:?}{}",
                t.table,
                t.policy.policy.describe(),
                t.replica_identity,
                if t.paused { ", paused" } else { "" }
            );
            if !t.initial_sync {
                line.push_str(", no initial sync");
            }
            if t.fire_triggers {
                line.push_str(", target triggers fire");
            }
            if let Some(every) = t.check_interval {
                line.push_str(&format!(", checked every {}s", every.as_secs()));
            }
            if t.direction != crate::mapping::TableDirection::Both {
                line.push_str(&format!(", direction {:?}", t.direction));
            }
            for (column, site) in &t.policy.owners {
                line.push_str(&format!(", column {column} owned by site {site}"));
            }
            for m in &t.mappings {
                line.push_str(&format!(", site {} column {}", m.site_id, m.column_name));
                if !m.synced {
                    line.push_str(" not synced");
                }
                if let Some(p) = &m.peer_column {
                    line.push_str(&format!(" as {p}"));
                }
                if let Some(tr) = &m.transform {
                    line.push_str(&format!(" {tr}"));
                }
                if let Some(d) = &m.default_value {
                    line.push_str(&format!(" default {d:?}"));
                }
            }
            out.push(line);
        }
        out
    }
}

impl ControlConfig {
    pub fn site(&self, id: u32) -> Option<&Site> {
        self.sites.iter().find(|s| s.site_id == id)
    }

    /// Enabled tables of a link.
    pub fn link_tables(&self, link_id: u32) -> Vec<&LinkTable> {
        self.tables
            .iter()
            .filter(|t| t.link_id == link_id && t.enabled)
            .collect()
    }

    /// Link `link_id` as configured, checked for what the database
    /// constraints cannot express (not against the sites: see
    /// `setup::check_link_against_sites`).
    pub fn link_config(&self, link_id: u32) -> Option<Result<LinkConfig, ControlError>> {
        let link = self.links.iter().find(|l| l.link_id == link_id)?;
        Some(self.check_link(link))
    }

    fn check_link(&self, link: &Link) -> Result<LinkConfig, ControlError> {
        if let Some((_, why)) = self.invalid_rows.iter().find(|(id, _)| *id == link.link_id) {
            return Err(ControlError::Invalid(why.clone()));
        }
        let site = |s: u32| {
            self.site(s).cloned().ok_or_else(|| {
                ControlError::Invalid(format!(
                    "link {}: site {s} does not exist in duplex.sites",
                    link.name
                ))
            })
        };
        let (site_a, site_b) = (site(link.site_a)?, site(link.site_b)?);
        let mut tables = Vec::new();
        let mut invalid_tables = Vec::new();
        for t in self.link_tables(link.link_id) {
            match Self::check_table(link, t) {
                Ok(()) => tables.push(t.clone()),
                Err(why) => invalid_tables.push((t.clone(), why)),
            }
        }
        if link.marker_column.contains('\0') {
            return Err(ControlError::Invalid(format!(
                "link {}: marker_column contains a NUL byte",
                link.name
            )));
        }
        Ok(LinkConfig {
            link: link.clone(),
            site_a,
            site_b,
            tables,
            patterns: self
                .patterns
                .iter()
                .filter(|p| p.link_id == link.link_id)
                .cloned()
                .collect(),
            disabled_tables: self
                .tables
                .iter()
                .filter(|t| t.link_id == link.link_id && !t.enabled)
                .map(|t| t.table.name.clone())
                .collect(),
            invalid_tables,
        })
    }

    /// What the database constraints cannot express about one table of
    /// `link`: the reason it cannot be synced as configured.
    fn check_table(link: &Link, t: &LinkTable) -> Result<(), String> {
        let in_link = |s: u32| s == link.site_a || s == link.site_b;
        let priority = match t.policy.policy {
            crate::conflict::Policy::SitePriority(s) => Some(s),
            crate::conflict::Policy::FieldMerge {
                tie: crate::conflict::Tie::SitePriority(s),
            } => Some(s),
            _ => None,
        };
        if let Some(s) = priority.filter(|&s| !in_link(s)) {
            return Err(format!(
                "link {} table {}: priority_site {s} is not one of the link's sites ({} and {})",
                link.name, t.table, link.site_a, link.site_b
            ));
        }
        for source in [link.site_a, link.site_b] {
            t.mapping(link, source)
                .map_err(|e| format!("link {} table {}: {e}", link.name, t.table))?;
        }
        for (column, &s) in &t.policy.owners {
            if !in_link(s) {
                return Err(format!(
                        "link {} table {}: column {column} is owned by site {s}, which is not one of the link's sites ({} and {})",
                        link.name, t.table, link.site_a, link.site_b
                    ));
            }
        }
        Ok(())
    }

    /// Checks the database constraints cannot express, for every link.
    pub fn validate(&self) -> Result<(), ControlError> {
        for link in &self.links {
            self.check_link(link)?;
        }
        Ok(())
    }
}
