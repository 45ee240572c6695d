//! Checks and prepares the sites of a link: everything duplex owns on a
//! synced database.
//!
//! First, read-only: what each site's catalog says about the link's tables
//! (`pg_site_facts`, `mysql_site_facts`), and whether each table can be synced
//! as configured (`judge_table`); a table that cannot is refused alone (see
//! `runner::resolve_tables`). Then, idempotent, at every start, for the tables
//! that run: on each PostgreSQL site it checks `wal_level`, adds the marker
//! column, sets the replica identity (on every partition too), creates or
//! updates the link's publication (each table ONLY itself, partitioned tables
//! published as themselves), creates the link's replication slot, and creates
//! the replication origin under which the peer's changes are applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio_postgres::Client;

use crate::canonical::TableName;
use crate::control::{Link, LinkTable, ReplicaIdentityMode, Site, SiteEngine};
use crate::pg::{quote_ident, quote_table};

/// duplex's tombstone table on a PostgreSQL site.
pub const PG_TOMBSTONES_DDL: &str = "CREATE TABLE IF NOT EXISTS duplex.site_tombstones (
    table_name text NOT NULL,
    row_key    bytea NOT NULL,
    vv         jsonb NOT NULL,
    site       integer NOT NULL,
    ts         bigint NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, row_key)
)";

/// duplex's journal outbox on a PostgreSQL site: conflict and quarantine
/// records written with the applier's transaction, until shipped to the
/// control schema (see `journal::outbox`).
pub const PG_JOURNAL_DDL: &str = "CREATE TABLE IF NOT EXISTS duplex.site_journal (
    entry_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    link_id     integer NOT NULL,
    source_site integer NOT NULL,
    worker      integer NOT NULL,
    entry       text NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS site_journal_direction ON duplex.site_journal (link_id, source_site, worker, entry_id)";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("site {site}: {context}: {source}")]
    Db {
        site: String,
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("site {site}: {context}: {source}")]
    MysqlDb {
        site: String,
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("site {site}: wal_level is '{found}', duplex needs 'logical': set `wal_level = logical` in postgresql.conf and restart PostgreSQL")]
    WalLevel { site: String, found: String },
    #[error("site {site}: track_commit_timestamp is off; duplex needs it to tell a row's local edits apart in conflicts: set `track_commit_timestamp = on` in postgresql.conf and restart PostgreSQL")]
    CommitTimestamps { site: String },
    #[error("site {site}: server encoding is {found}; duplex needs UTF8 databases")]
    Encoding { site: String, found: String },
    #[error("site {site}: table {table} does not exist; create it on both sites or remove it from duplex.link_tables")]
    NoTable { site: String, table: TableName },
    #[error("site {site}: table {table} has no primary key; duplex syncs only tables with a primary key (add one, or remove the table from duplex.link_tables)")]
    NoPrimaryKey { site: String, table: TableName },
    #[error("site {site}: PostgreSQL {found} is too old; duplex needs PostgreSQL 15 or newer")]
    Version { site: String, found: String },
    #[error(
        "site {site}: replication slot {slot} is gone, but site {peer} has already applied changes from it up to {applied}: \
         a new slot would silently skip every change made on {site} since then. Fix: `duplex resync --link {link}`, which resets {peer}'s progress \
         ({reset}) and has duplex create a new slot and copy the tables both ways, so that what {site} changed before the new slot reaches {peer} \
         (both sites keep their rows; differences are settled by policy)"
    )]
    SlotLost {
        link: String,
        site: String,
        slot: String,
        peer: String,
        /// How the peer's progress is reset by hand.
        reset: String,
        applied: String,
    },
    #[error("site {site}: column {column} of table {table} is part of the primary key: it cannot be excluded or transformed (rows are found by their key on both sites)")]
    KeyColumnMapped {
        site: String,
        table: TableName,
        column: String,
    },
    #[error("site {site}: PostgreSQL {found} has no failover slots (PostgreSQL 17 and later): set links.failover_slots = false for link {link}, or upgrade the site")]
    FailoverSlots {
        site: String,
        link: String,
        found: String,
    },
    /// `duplex resync` cannot go on: `why` says what to do first.
    #[error("link {link}: resync refused: {why}")]
    Resync { link: String, why: String },
    /// `duplex ddl` cannot go on, or stopped: `why` says what was done and
    /// what to do.
    #[error("link {link}: duplex ddl: {why}")]
    Ddl { link: String, why: String },
    /// `column`: the column's name and why the configuration names it.
    #[error("site {site}: table {table} has no column {column}; fix the name in the configuration or add the column")]
    NoColumn {
        site: String,
        table: TableName,
        column: String,
    },
}

/// A trigger or rule on a synced table, as the site's catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerFacts {
    pub name: String,
    /// `trigger` or `rule`.
    pub kind: &'static str,
    /// When it fires: `BEFORE INSERT OR UPDATE`, `ON DELETE DO INSTEAD`, ...
    pub when: String,
    /// The table it is defined on (a partition's own trigger names the partition).
    pub on: String,
    /// PostgreSQL's firing mode: `O` (the default: not in the replica role),
    /// `R` (only in the replica role), `A` (always). MySQL/MariaDB: `A`.
    pub mode: char,
}

impl TriggerFacts {
    /// Fires in a session whose `session_replication_role` is replica (or not).
    pub fn fires(&self, replica_role: bool) -> bool {
        match self.mode {
            'A' => true,
            'R' => replica_role,
            'O' => !replica_role,
            _ => false,
        }
    }
}

/// One synced table on one site, as its catalog describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableFacts {
    /// Every column (name, the site's type name) except duplex's own.
    pub columns: Vec<(String, String)>,
    /// Generated columns: the site computes them, its change stream does not
    /// carry them as written values, and nothing may write them.
    pub generated: Vec<String>,
    /// Primary-key columns, in key order (empty: no primary key).
    pub key: Vec<String>,
    pub triggers: Vec<TriggerFacts>,
    /// A partition: the partitioned table at the root of its tree.
    pub partition_of: Option<TableName>,
}

/// What the checks of a link's tables need to know about one site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteFacts {
    pub site_id: u32,
    pub name: String,
    pub engine: SiteEngine,
    /// The role duplex connects as (named in messages).
    pub role: String,
    /// That role may set `session_replication_role` (a superuser, or
    /// PostgreSQL 15+ `GRANT SET ON PARAMETER`): duplex applies in the
    /// replica role here, where ordinary triggers and rules do not fire.
    pub replica_role: bool,
    /// Per configured table: the site's name for it, and its facts (`None`:
    /// the site has no such table).
    pub tables: BTreeMap<TableName, (TableName, Option<TableFacts>)>,
}

impl SiteFacts {
    fn table(&self, t: &TableName) -> Option<(&TableName, Option<&TableFacts>)> {
        self.tables
            .get(t)
            .map(|(name, facts)| (name, facts.as_ref()))
    }
}

/// Read what the checks need about `tables` on a PostgreSQL site. Reads
/// only; names are bound as parameters, never spliced into SQL.
pub async fn pg_site_facts(
    client: &Client,
    site: &Site,
    link: &Link,
    tables: &[&TableName],
) -> Result<SiteFacts, SetupError> {
    let err = |context: String| {
        let site = site.name.clone();
        move |source| SetupError::Db {
            site,
            context,
            source,
        }
    };
    let row = client
        .query_one(
            "SELECT current_user::text, has_parameter_privilege('session_replication_role', 'SET')",
            &[],
        )
        .await
        .map_err(err("read the role's privileges".into()))?;
    let mut facts = SiteFacts {
        site_id: site.site_id,
        name: site.name.clone(),
        engine: SiteEngine::Postgres,
        role: row.get(0),
        replica_role: row.get(1),
        tables: BTreeMap::new(),
    };
    for &t in tables {
        let rows = client
            .query(
                "SELECT c.oid,
                        array(SELECT attname::text FROM pg_attribute
                               WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped AND attname <> $2
                               ORDER BY attnum),
                        array(SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                               WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped AND attname <> $2
                               ORDER BY attnum),
                        array(SELECT attname::text FROM pg_attribute
                               WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped AND attgenerated <> ''),
                        array(SELECT a.attname::text FROM pg_index i
                                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                               WHERE i.indrelid = c.oid AND i.indisprimary
                               ORDER BY array_position(i.indkey::int2[], a.attnum)),
                        (SELECT n.nspname::text FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
                          WHERE c.relispartition AND r.oid = pg_partition_root(c.oid)),
                        (SELECT r.relname::text FROM pg_class r
                          WHERE c.relispartition AND r.oid = pg_partition_root(c.oid))
                   FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
                &[&quote_table(t), &link.marker_column],
            )
            .await
            .map_err(err(format!("look up table {t}")))?;
        let Some(row) = rows.first() else {
            facts.tables.insert(t.clone(), (t.clone(), None));
            continue;
        };
        let oid: u32 = row.get(0);
        let names: Vec<String> = row.get(1);
        let types: Vec<String> = row.get(2);
        let root = match (
            row.get::<_, Option<String>>(5),
            row.get::<_, Option<String>>(6),
        ) {
            (Some(schema), Some(name)) => Some(TableName::new(schema, name)),
            _ => None,
        };
        // Triggers and rules on the table, and on its partitions (a
        // trigger a partition inherits from the partitioned table is
        // listed once, as the partitioned table's).
        let triggers = client
            .query(
                "WITH rel AS (SELECT $1::oid AS oid UNION SELECT relid FROM pg_partition_tree($1::oid::regclass))
                 SELECT t.tgname::text,
                        'trigger',
                        CASE WHEN t.tgtype & 2 <> 0 THEN 'BEFORE' WHEN t.tgtype & 64 <> 0 THEN 'INSTEAD OF' ELSE 'AFTER' END
                        || ' ' || array_to_string(array_remove(ARRAY[
                               CASE WHEN t.tgtype & 4 <> 0 THEN 'INSERT' END,
                               CASE WHEN t.tgtype & 16 <> 0 THEN 'UPDATE' END,
                               CASE WHEN t.tgtype & 8 <> 0 THEN 'DELETE' END,
                               CASE WHEN t.tgtype & 32 <> 0 THEN 'TRUNCATE' END], NULL), ' OR ')
                        || CASE WHEN t.tgtype & 1 <> 0 THEN ' FOR EACH ROW' ELSE ' FOR EACH STATEMENT' END,
                        t.tgrelid::regclass::text,
                        t.tgenabled::text
                   FROM pg_trigger t
                  WHERE t.tgrelid IN (SELECT oid FROM rel) AND NOT t.tgisinternal AND t.tgparentid = 0
                    AND t.tgenabled <> 'D'
                 UNION ALL
                 SELECT r.rulename::text,
                        'rule',
                        CASE r.ev_type WHEN '2' THEN 'ON UPDATE' WHEN '3' THEN 'ON INSERT' ELSE 'ON DELETE' END
                        || CASE WHEN r.is_instead THEN ' DO INSTEAD' ELSE ' DO ALSO' END,
                        r.ev_class::regclass::text,
                        r.ev_enabled::text
                   FROM pg_rewrite r
                  WHERE r.ev_class IN (SELECT oid FROM rel) AND r.ev_type IN ('2', '3', '4') AND r.ev_enabled <> 'D'
                  ORDER BY 1",
                &[&oid],
            )
            .await
            .map_err(err(format!("look up the triggers of {t}")))?
            .iter()
            .map(|r| TriggerFacts {
                name: r.get(0),
                kind: if r.get::<_, String>(1) == "rule" {
                    "rule"
                } else {
                    "trigger"
                },
                when: r.get(2),
                on: r.get(3),
                mode: r.get::<_, String>(4).chars().next().unwrap_or('O'),
            })
            .collect();
        facts.tables.insert(
            t.clone(),
            (
                t.clone(),
                Some(TableFacts {
                    columns: names.into_iter().zip(types).collect(),
                    generated: row.get(3),
                    key: row.get(4),
                    triggers,
                    partition_of: root,
                }),
            ),
        );
    }
    Ok(facts)
}

/// [`pg_site_facts`] for a MySQL/MariaDB site (tables in `database`).
pub async fn mysql_site_facts(
    conn: &mut mysql_async::Conn,
    site: &Site,
    link: &Link,
    database: &str,
    tables: &[&TableName],
) -> Result<SiteFacts, crate::Error> {
    use mysql_async::prelude::Queryable;
    let role: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(|e| mysql_db_error(&site.name, "read the account".into(), e))?;
    let mut facts = SiteFacts {
        site_id: site.site_id,
        name: site.name.clone(),
        engine: SiteEngine::Mysql,
        role: role.unwrap_or_default(),
        // MySQL and MariaDB have no replica role: triggers fire for every session.
        replica_role: false,
        tables: BTreeMap::new(),
    };
    let own = [link.marker_column.clone(), link.stamp_column()];
    for &t in tables {
        let name = TableName::new(database, t.name.clone());
        let db_err = |e| mysql_db_error(&site.name, format!("look up table {name}"), e);
        let exists: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND TABLE_TYPE = 'BASE TABLE'",
                (database, t.name.as_str()),
            )
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            facts.tables.insert(t.clone(), (name, None));
            continue;
        }
        let columns: Vec<(String, String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE, EXTRA FROM information_schema.COLUMNS
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (database, t.name.as_str()),
            )
            .await
            .map_err(db_err)?;
        let key: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY'
                  ORDER BY ORDINAL_POSITION",
                (database, t.name.as_str()),
            )
            .await
            .map_err(db_err)?;
        let triggers: Vec<(String, String, String)> = conn
            .exec(
                "SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION FROM information_schema.TRIGGERS
                  WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? ORDER BY TRIGGER_NAME",
                (database, t.name.as_str()),
            )
            .await
            .map_err(db_err)?;
        let mut merged: Vec<TriggerFacts> = Vec::new();
        for (trigger, timing, event) in triggers {
            match merged.iter_mut().find(|m| m.name == trigger) {
                // A trigger for several events is one row per event.
                Some(m) => m.when.push_str(&format!(" OR {event}")),
                None => merged.push(TriggerFacts {
                    name: trigger,
                    kind: "trigger",
                    when: format!("{timing} {event}"),
                    on: name.to_string(),
                    mode: 'A',
                }),
            }
        }
        facts.tables.insert(
            t.clone(),
            (
                name.clone(),
                Some(TableFacts {
                    generated: columns
                        .iter()
                        .filter(|(_, _, extra)| extra.to_ascii_uppercase().contains("GENERATED"))
                        .map(|(c, _, _)| c.clone())
                        .collect(),
                    columns: columns
                        .into_iter()
                        .filter(|(c, _, _)| !own.contains(c))
                        .map(|(c, ty, _)| (c, ty))
                        .collect(),
                    key,
                    triggers: merged,
                    partition_of: None,
                }),
            ),
        );
    }
    Ok(facts)
}

pub(crate) fn mysql_db_error(site: &str, context: String, e: mysql_async::Error) -> crate::Error {
    crate::Error::from(SetupError::MysqlDb {
        site: site.to_string(),
        context,
        source: e,
    })
}

/// Whether table `t` of `link` can be synced between the two sites as
/// configured, from what their catalogs say (`sites`: site_a's, then
/// site_b's). `configured` is every table the link syncs. The reasons, each
/// with what to do, when it cannot.
///
/// `synced`: the table already syncs (it runs, or its changes are held for
/// its shape). A column then found on one site only is a schema change made
/// while it ran: the table keeps running, and the direction that cannot
/// apply the column holds the table's changes until the sites match (see
/// `sink::schema_hold`). Refused instead, the table would leave the link and
/// its changes meanwhile would not be streamed.
pub fn judge_table(
    link: &Link,
    t: &LinkTable,
    sites: [&SiteFacts; 2],
    configured: &[&TableName],
    synced: bool,
) -> Result<(), Vec<String>> {
    let mut why: Vec<String> = Vec::new();
    let mut found: Vec<(&SiteFacts, &TableName, &TableFacts)> = Vec::new();
    for s in sites {
        let Some((name, facts)) = s.table(&t.table) else {
            why.push(format!(
                "site {}: table {} was not looked up",
                s.name, t.table
            ));
            continue;
        };
        let Some(facts) = facts else {
            why.push(
                SetupError::NoTable {
                    site: s.name.clone(),
                    table: name.clone(),
                }
                .to_string(),
            );
            continue;
        };
        if facts.key.is_empty() {
            why.push(
                SetupError::NoPrimaryKey {
                    site: s.name.clone(),
                    table: name.clone(),
                }
                .to_string(),
            );
        }
        if let Some(root) = &facts.partition_of {
            if configured.contains(&root) {
                why.push(format!(
                    "site {}: table {name} is a partition of {root}, which the link syncs whole (with all its partitions, as one table): remove {name} from duplex.link_tables",
                    s.name
                ));
            }
        }
        if let Some(column) = mapped_key_column(t, s.site_id, &facts.key) {
            why.push(
                SetupError::KeyColumnMapped {
                    site: s.name.clone(),
                    table: name.clone(),
                    column,
                }
                .to_string(),
            );
        }
        for (column, reason) in t.required_columns(link, s.site_id) {
            if !facts.columns.iter().any(|(c, _)| c == &column) {
                why.push(
                    SetupError::NoColumn {
                        site: s.name.clone(),
                        table: name.clone(),
                        column: format!("{column} ({reason})"),
                    }
                    .to_string(),
                );
            }
        }
        found.push((s, name, facts));
    }
    if !why.is_empty() {
        // The rest compares the two sites' tables: both must be there.
        return Err(why);
    }
    let [(sa, _, fa), (sb, _, fb)] = [found[0], found[1]];
    let types = |id: u32| -> Option<HashMap<String, String>> {
        let f = if id == sa.site_id { fa } else { fb };
        Some(f.columns.iter().cloned().collect())
    };
    if let Err(e) = crate::mapping::check_mapping_types(
        &t.mappings,
        link.site_a,
        link.site_b,
        types,
    )
    .and_then(|()| {
        // A pair of columns that would lose part of each value
        // (a timestamp into a date).
        crate::mapping::check_lossy_pairs([link.site_a, link.site_b], |s| t.mapping(link, s), types)
    }) {
        why.push(format!("link {} table {}: {e}", link.name, t.table));
    }
    // Each direction the table flows: every column the source sends exists
    // on the target, and the key is the same.
    for ((src, src_name, sf), (dst, dst_name, df)) in [(found[0], found[1]), (found[1], found[0])] {
        let Ok(m) = t.mapping(link, src.site_id) else {
            continue;
        };
        let key: Vec<&str> = sf.key.iter().map(|k| m.target_name(k)).collect();
        let mut sorted_key = key.clone();
        sorted_key.sort_unstable();
        let mut target_key: Vec<&str> = df.key.iter().map(String::as_str).collect();
        target_key.sort_unstable();
        if src.site_id == link.site_a && sorted_key != target_key {
            why.push(format!(
                "table {}: the primary key differs between the sites (site {}: ({}); site {}: ({})); both sides need the same key",
                t.table,
                src.name,
                key.join(", "),
                dst.name,
                df.key.join(", ")
            ));
        }
        if m.skip {
            continue;
        }
        for (column, _) in &sf.columns {
            if sf.generated.contains(column) || m.drops(column) {
                continue;
            }
            let target = m.target_name(column);
            if df.columns.iter().any(|(c, _)| c == target) || (synced && target == column) {
                continue;
            }
            let (l, schema, table) = (
                link.link_id,
                sql_text(&t.table.schema),
                sql_text(&t.table.name),
            );
            why.push(if target == column {
                format!(
                    "table {}: column {column} exists on site {} only (not excluded, not mapped), so the changes of {src_name} cannot be applied to {dst_name}: \
                     add the column on site {}, or map it to a column of site {} \
                     (INSERT INTO duplex.column_mappings (link_id, schema_name, table_name, site_id, column_name, peer_column) VALUES ({l}, {schema}, {table}, {}, {}, '<column on site {}>')), \
                     or keep it on site {} only \
                     (INSERT INTO duplex.column_mappings (link_id, schema_name, table_name, site_id, column_name, synced, default_value) VALUES ({l}, {schema}, {table}, {}, {}, false, NULL); \
                     a default_value fills it for rows that arrive from site {})",
                    t.table,
                    src.name,
                    dst.name,
                    dst.name,
                    src.site_id,
                    sql_text(column),
                    dst.name,
                    src.name,
                    src.site_id,
                    sql_text(column),
                    dst.name,
                )
            } else {
                format!(
                    "table {}: site {}'s column {column} is mapped to {target}, which site {} does not have: add it there or fix peer_column in duplex.column_mappings",
                    t.table, src.name, dst.name
                )
            });
        }
    }
    // Triggers and rules on a target would change the rows duplex applies
    // there, and what they change never flows back: the sites drift.
    if !t.fire_triggers {
        for (target, flows_in) in [
            (found[1], t.mapping(link, sa.site_id).is_ok_and(|m| !m.skip)),
            (found[0], t.mapping(link, sb.site_id).is_ok_and(|m| !m.skip)),
        ] {
            let (site, _, facts) = target;
            if !flows_in {
                continue;
            }
            for tr in facts
                .triggers
                .iter()
                .filter(|tr| tr.fires(site.replica_role))
            {
                why.push(trigger_refusal(link, t, site, tr));
            }
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why)
    }
}

/// Why a trigger (or rule) refuses its table, and the ways out.
fn trigger_refusal(link: &Link, t: &LinkTable, site: &SiteFacts, tr: &TriggerFacts) -> String {
    let what = format!(
        "site {}: {} {} ({}) on {} would fire for every row duplex applies there, and what it changes would stay on site {} (the sites drift)",
        site.name, tr.kind, tr.name, tr.when, tr.on, site.name
    );
    let fire = format!(
        "if it must fire for replicated rows, say so: UPDATE duplex.link_tables SET fire_triggers = true WHERE link_id = {} AND schema_name = {} AND table_name = {}",
        link.link_id,
        sql_text(&t.table.schema),
        sql_text(&t.table.name)
    );
    match site.engine {
        SiteEngine::Mysql => format!(
            "{what}. MySQL and MariaDB fire triggers for every session: drop the trigger on site {} (or make it skip duplex's writes), or, {fire}",
            site.name
        ),
        SiteEngine::Postgres if site.replica_role => format!(
            "{what}: it is enabled {} and fires in the replica role duplex applies in. ALTER TABLE {} ENABLE {} {} (it then fires for the application's writes only), or, {fire}",
            if tr.mode == 'A' { "ALWAYS" } else { "REPLICA" },
            tr.on,
            tr.kind.to_uppercase(),
            plain_or_quoted(&tr.name),
        ),
        SiteEngine::Postgres => format!(
            "{what}. duplex applies in the replica role, where ordinary triggers and rules do not fire (as PostgreSQL's own replication does), only where its role may set session_replication_role: \
             as a superuser on site {}, GRANT SET ON PARAMETER session_replication_role TO {} (or drop the {}); or, {fire}",
            site.name,
            plain_or_quoted(&site.role),
            tr.kind,
        ),
    }
}

/// An identifier for SQL shown in messages: as it is when it needs no
/// quotes, quoted otherwise.
fn plain_or_quoted(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        crate::pg::quote_ident(name)
    }
}

/// A text literal for the SQL shown in messages.
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A primary-key column of `site` that a mapping excludes or transforms.
fn mapped_key_column(t: &LinkTable, site_id: u32, key: &[String]) -> Option<String> {
    t.mappings
        .iter()
        .find(|m| {
            m.site_id == site_id
                && (!m.synced || m.transform.is_some())
                && key.contains(&m.column_name)
        })
        .map(|m| m.column_name.clone())
}

/// Replication slot `slot` on a site: `None` when there is none, else the
/// process streaming from it (`None` inside: nobody).
/// Replication slot `slot`'s state (see [`slot_state`]) once nobody streams
/// from it, waiting up to `wait`: `None` when there is no slot,
/// `Some(Some(pid))` when it is still in use then.
pub(crate) async fn slot_when_free(
    client: &Client,
    site_name: &str,
    slot: &str,
    wait: std::time::Duration,
) -> Result<Option<Option<i32>>, SetupError> {
    let started = std::time::Instant::now();
    loop {
        let state = slot_state(client, site_name, slot).await?;
        if !matches!(state, Some(Some(_))) || started.elapsed() >= wait {
            return Ok(state);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub(crate) async fn slot_state(
    client: &Client,
    site_name: &str,
    slot: &str,
) -> Result<Option<Option<i32>>, SetupError> {
    Ok(client
        .query_opt(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|source| SetupError::Db {
            site: site_name.into(),
            context: "look up replication slot".into(),
            source,
        })?
        .map(|r| r.get(0)))
}

/// Before a site's slot is (re)created: if the peer already applied changes
/// from an earlier slot of this link, a new slot would start at the current
/// position and silently lose everything in between. Refuse instead.
pub async fn check_slot_continuity(
    site: &Client,
    site_name: &str,
    peer: &Client,
    peer_name: &str,
    site_id: u32,
    link: &Link,
) -> Result<(), SetupError> {
    let slot = link.slot_name(site_id);
    if slot_state(site, site_name, &slot).await?.is_some() {
        return Ok(());
    }
    let origin = link.origin_name(site_id);
    // The furthest any of the direction's apply workers got (see
    // `sink::pg::worker_origins`): the point the stream would resume from.
    let applied: Option<String> = peer
        .query_one(
            "SELECT (SELECT pg_replication_origin_progress(roname, true)::text FROM pg_replication_origin
                      WHERE roname = ANY($1)
                      ORDER BY pg_replication_origin_progress(roname, true) DESC NULLS LAST LIMIT 1)",
            &[&crate::sink::pg::worker_origins(&origin)],
        )
        .await
        .map_err(|source| SetupError::Db { site: peer_name.into(), context: "read replication origin progress".into(), source })?
        .get(0);
    match applied {
        Some(applied) if applied != "0/0" => Err(SetupError::SlotLost {
            link: link.name.clone(),
            site: site_name.into(),
            slot,
            peer: peer_name.into(),
            reset: format!(
                "every apply worker's origin: SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname ~ '^{origin}(_w[0-9]+)?$'"
            ),
            applied,
        }),
        _ => Ok(()),
    }
}

/// Prepare one PostgreSQL site of `link`. `peer_site` is the other site's id:
/// its changes are applied here under the origin `link.origin_name(peer_site)`.
pub async fn prepare_pg_site(
    client: &Client,
    site_name: &str,
    site_id: u32,
    peer_site: u32,
    link: &Link,
    tables: &[&LinkTable],
) -> Result<(), SetupError> {
    let err = |context: &str| {
        let site = site_name.to_string();
        let context = context.to_string();
        move |source| SetupError::Db {
            site,
            context,
            source,
        }
    };
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(err("read server_version_num"))?
        .get(0);
    if version < 150_000 {
        return Err(SetupError::Version {
            site: site_name.into(),
            found: version.to_string(),
        });
    }
    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(err("read wal_level"))?
        .get(0);
    if wal_level != "logical" {
        return Err(SetupError::WalLevel {
            site: site_name.into(),
            found: wal_level,
        });
    }
    let commit_ts: String = client
        .query_one("SHOW track_commit_timestamp", &[])
        .await
        .map_err(err("read track_commit_timestamp"))?
        .get(0);
    if commit_ts != "on" {
        return Err(SetupError::CommitTimestamps {
            site: site_name.into(),
        });
    }
    // Tombstones of rows duplex deleted here (see `conflict`): written by the
    // applier inside its own transactions, never published.
    // Checked first: the DDL needs privileges a least-privilege role has only
    // where duplex must create something (sql/roles/postgresql-site.sql gives
    // it the schema).
    let (has_schema, has_table, has_journal): (bool, bool, bool) = {
        let r = client
            .query_one(
                "SELECT to_regnamespace('duplex') IS NOT NULL, to_regclass('duplex.site_tombstones') IS NOT NULL,
                        to_regclass('duplex.site_journal') IS NOT NULL",
                &[],
            )
            .await
            .map_err(err("look for duplex.site_tombstones"))?;
        (r.get(0), r.get(1), r.get(2))
    };
    if !has_schema {
        client
            .batch_execute("CREATE SCHEMA IF NOT EXISTS duplex")
            .await
            .map_err(err("create schema duplex"))?;
    }
    if !has_table {
        client
            .batch_execute(PG_TOMBSTONES_DDL)
            .await
            .map_err(err("create duplex.site_tombstones"))?;
    }
    if !has_journal {
        client
            .batch_execute(PG_JOURNAL_DDL)
            .await
            .map_err(err("create duplex.site_journal"))?;
    }
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .await
        .map_err(err("read server_encoding"))?
        .get(0);
    if encoding != "UTF8" {
        return Err(SetupError::Encoding {
            site: site_name.into(),
            found: encoding,
        });
    }

    let mut any_partitioned = false;
    for t in tables {
        let quoted = quote_table(&t.table);
        let row = client
            .query_one(
                "SELECT c.oid, c.relreplident::text,
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                        c.relkind = 'p'
                   FROM (SELECT to_regclass($1)::oid AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid",
                &[&quoted],
            )
            .await
            .map_err(err(&format!("look up table {}", t.table)))?;
        let oid: Option<u32> = row.get(0);
        if oid.is_none() {
            return Err(SetupError::NoTable {
                site: site_name.into(),
                table: t.table.clone(),
            });
        }
        let has_pk: bool = row.get(2);
        if !has_pk {
            return Err(SetupError::NoPrimaryKey {
                site: site_name.into(),
                table: t.table.clone(),
            });
        }
        let partitioned: bool = row.get(3);
        any_partitioned |= partitioned;
        // Checked first: ALTER TABLE needs ownership even when there is
        // nothing to add, and the table's owner may have added it already.
        let has_marker: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped)",
                &[&oid, &link.marker_column],
            )
            .await
            .map_err(err(&format!("look for the marker column of {}", t.table)))?
            .get(0);
        if !has_marker {
            // On a partitioned table (or an inheritance parent) the column
            // is added to every partition (child) too, as PostgreSQL requires.
            client
                .batch_execute(&format!(
                    "ALTER TABLE {quoted} ADD COLUMN IF NOT EXISTS {} jsonb",
                    quote_ident(&link.marker_column)
                ))
                .await
                .map_err(err(&format!(
                    "add marker column {} to {}",
                    link.marker_column, t.table
                )))?;
        }
        // Only ALTER when needed: it takes an exclusive lock on the table.
        // A partitioned table's partitions too: each logs its own old rows,
        // while the stream describes them with the partitioned table's
        // identity (publish_via_partition_root).
        let (wanted, clause) = match t.replica_identity {
            ReplicaIdentityMode::Full => ("f", "FULL"),
            ReplicaIdentityMode::Key => ("d", "DEFAULT"),
        };
        let members: Vec<String> = client
            .query(
                "SELECT c.oid::regclass::text FROM pg_class c
                  WHERE (c.oid = $1 OR ($2 AND c.oid IN (SELECT relid FROM pg_partition_tree($1::oid::regclass))))
                    AND c.relreplident <> $3::text::\"char\"
                  ORDER BY c.oid = $1 DESC, 1",
                &[&oid, &partitioned, &wanted],
            )
            .await
            .map_err(err(&format!("read the replica identity of {}", t.table)))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for member in members {
            client
                .batch_execute(&format!("ALTER TABLE {member} REPLICA IDENTITY {clause}"))
                .await
                .map_err(err(&format!("set replica identity of {member}")))?;
        }
    }

    // Publication: exactly the link's tables, each ONLY itself: an
    // inheritance parent's children are not published (their own changes
    // are not the link's, and a child without a replica identity in a
    // publication would refuse the application's UPDATE and DELETE). A
    // partitioned table is published whole, as itself
    // (publish_via_partition_root): its partitions' changes arrive as the
    // partitioned table's, and are applied to the peer's table of that name.
    let publication = link.publication_name();
    let wanted: BTreeSet<TableName> = tables.iter().map(|t| t.table.clone()).collect();
    let found = client
        .query(
            "SELECT pubviaroot FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(err("look up publication"))?;
    let list = wanted
        .iter()
        .map(|t| format!("ONLY {}", quote_table(t)))
        .collect::<Vec<_>>()
        .join(", ");
    match found.first() {
        None => {
            let sql = if wanted.is_empty() {
                format!(
                    "CREATE PUBLICATION {} WITH (publish_via_partition_root = true)",
                    quote_ident(&publication)
                )
            } else {
                format!(
                    "CREATE PUBLICATION {} FOR TABLE {list} WITH (publish_via_partition_root = true)",
                    quote_ident(&publication)
                )
            };
            client
                .batch_execute(&sql)
                .await
                .map_err(err("create publication"))?;
        }
        Some(row) => {
            let via_root: bool = row.get(0);
            let current: BTreeSet<TableName> = client
                .query(
                    "SELECT n.nspname::text, c.relname::text
                       FROM pg_publication p
                       JOIN pg_publication_rel pr ON pr.prpubid = p.oid
                       JOIN pg_class c ON c.oid = pr.prrelid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE p.pubname = $1",
                    &[&publication],
                )
                .await
                .map_err(err("read publication tables"))?
                .iter()
                .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect();
            let mut changes = Vec::new();
            if !via_root {
                changes.push(format!(
                    "ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
                    quote_ident(&publication)
                ));
            }
            if current != wanted {
                changes.push(if wanted.is_empty() {
                    // SET TABLE needs at least one table; drop the ones there instead.
                    let drop = current
                        .iter()
                        .map(|t| format!("ONLY {}", quote_table(t)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!(
                        "ALTER PUBLICATION {} DROP TABLE {drop}",
                        quote_ident(&publication)
                    )
                } else {
                    format!(
                        "ALTER PUBLICATION {} SET TABLE {list}",
                        quote_ident(&publication)
                    )
                });
            }
            for sql in changes {
                if let Err(source) = client.batch_execute(&sql).await {
                    // A least-privilege role does not own the publication
                    // (sql/roles/postgresql-site.sql made it). Tables it has
                    // beyond the link's are harmless: their changes are
                    // skipped as they are read.
                    let denied = source.code()
                        == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
                    if denied && wanted.is_subset(&current) && (via_root || !any_partitioned) {
                        let extra: Vec<String> =
                            current.difference(&wanted).map(|t| t.to_string()).collect();
                        tracing::warn!(
                            site = site_name,
                            publication = %publication,
                            extra = %extra.join(", "),
                            "the publication holds tables the link does not sync (not synced; their changes are skipped); its owner can drop them: run sql/roles/postgresql-site.sql again with the link's tables"
                        );
                        break;
                    }
                    return Err(SetupError::Db {
                        site: site_name.into(),
                        context: format!(
                            "update publication {publication} to exactly the link's tables ({}), each ONLY itself, with publish_via_partition_root = true (as its owner: run sql/roles/postgresql-site.sql again with the link's tables)",
                            wanted.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
                        ),
                        source,
                    });
                }
            }
        }
    }

    // The slot this site's changes are read from.
    let slot = link.slot_name(site_id);
    let slot_exists = slot_state(client, site_name, &slot).await?.is_some();
    if link.failover_slots && version < 170_000 {
        return Err(SetupError::FailoverSlots {
            site: site_name.into(),
            link: link.name.clone(),
            found: version.to_string(),
        });
    }
    if !slot_exists {
        // PostgreSQL 17's fifth argument: a failover slot.
        let create = if link.failover_slots {
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)"
        } else {
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')"
        };
        client
            .execute(create, &[&slot])
            .await
            .map_err(err(&format!("create replication slot {slot}")))?;
        tracing::info!(site = site_name, slot = %slot, failover = link.failover_slots, "created replication slot");
    } else if version >= 170_000 {
        let failover: bool = client
            .query_one(
                "SELECT coalesce((to_jsonb(s) ->> 'failover')::boolean, false) FROM pg_replication_slots s WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(err("read the slot's failover setting"))?
            .get(0);
        if failover != link.failover_slots {
            // Only a replication connection can change it (ALTER_REPLICATION_SLOT).
            tracing::warn!(
                site = site_name,
                slot = %slot,
                "slot {slot} has failover = {failover} but links.failover_slots is {}: on {site_name}, ALTER_REPLICATION_SLOT {slot} (FAILOVER {}) over a replication connection (psql \"dbname=... replication=database\"), with duplex stopped",
                link.failover_slots,
                link.failover_slots
            );
        }
    }

    // The origin the peer's changes are applied under here.
    let origin = link.origin_name(peer_site);
    let origin_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)",
            &[&origin],
        )
        .await
        .map_err(err("look up replication origin"))?
        .get(0);
    if !origin_exists {
        client
            .execute("SELECT pg_replication_origin_create($1)", &[&origin])
            .await
            .map_err(err(&format!("create replication origin {origin}")))?;
    }
    Ok(())
}

/// Prepare one MySQL/MariaDB site of `link`: check the binlog settings, check
/// every synced table exists with a primary key, add the marker column, and
/// create duplex's marker table.
pub async fn prepare_mysql_site(
    conn: &mut mysql_async::Conn,
    site_name: &str,
    database: &str,
    peer_site: u32,
    link: &Link,
    tables: &[&LinkTable],
) -> Result<(), crate::Error> {
    use crate::mysql::quote_ident as q;
    use mysql_async::prelude::Queryable;
    let err = |context: String| {
        let site = site_name.to_string();
        move |e: mysql_async::Error| mysql_db_error(&site, context, e)
    };
    crate::source::mysql::check_binlog_settings(conn)
        .await
        .map_err(|e| crate::Error::source_error(site_name, e))?;
    // The tables were checked before (`judge_table`): each exists with a
    // primary key.
    for t in tables {
        let table = TableName::new(database, t.table.name.clone());
        // Checked first: `ADD COLUMN IF NOT EXISTS` is MariaDB-only syntax.
        // Invisible (MariaDB 10.3+, MySQL 8.0.23+), like the stamp column below:
        // applications' `SELECT *` and `INSERT ... VALUES` without a column
        // list keep working.
        let has_marker: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                (database, t.table.name.as_str(), link.marker_column.as_str()),
            )
            .await
            .map_err(err(format!("look for the marker column of {table}")))?;
        if has_marker.is_none() {
            conn.query_drop(format!(
                "ALTER TABLE {}.{} ADD COLUMN {} JSON NULL INVISIBLE",
                q(database),
                q(&t.table.name),
                q(&link.marker_column)
            ))
            .await
            .map_err(err(format!(
                "add marker column {} to {table}",
                link.marker_column
            )))?;
        }
        // The version stamp: the server sets it on every user write, which is
        // how this site tells its own unsynced versions apart (see `conflict`).
        // Invisible, so applications' SELECT * and INSERT without a column
        // list do not see it.
        let stamp = link.stamp_column();
        let has_stamp: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                (database, t.table.name.as_str(), stamp.as_str()),
            )
            .await
            .map_err(err(format!("look for the stamp column of {table}")))?;
        if has_stamp.is_none() {
            conn.query_drop(format!(
                "ALTER TABLE {}.{} ADD COLUMN {} TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6) INVISIBLE",
                q(database),
                q(&t.table.name),
                q(&stamp)
            ))
            .await
            .map_err(err(format!("add stamp column {stamp} to {table}")))?;
        }
    }
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (
             table_name VARCHAR(200) NOT NULL,
             row_key    VARBINARY(2048) NOT NULL,
             vv         TEXT NOT NULL,
             site       INT UNSIGNED NOT NULL,
             ts         BIGINT NOT NULL,
             deleted_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
             PRIMARY KEY (table_name, row_key)
         ) ENGINE = InnoDB COMMENT = 'duplex: tombstones of rows duplex deleted here; written only by duplex'",
        q(database),
        q(crate::marker::MYSQL_TOMBSTONES_TABLE)
    ))
    .await
    .map_err(err("create duplex's tombstone table".into()))?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (
             entry_id    BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
             link_id     INT NOT NULL,
             source_site INT NOT NULL,
             worker      INT NOT NULL,
             entry       LONGTEXT NOT NULL,
             written_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
             KEY direction (link_id, source_site, worker, entry_id)
         ) ENGINE = InnoDB COMMENT = 'duplex: conflict and quarantine records not yet shipped to the control schema; written only by duplex'",
        q(database),
        q(crate::marker::MYSQL_JOURNAL_TABLE)
    ))
    .await
    .map_err(err("create duplex's journal outbox".into()))?;
    // One row per direction and apply worker (see `pipeline::dispatch`).
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (
             link_id        INT NOT NULL,
             source_site    INT NOT NULL,
             worker         INT NOT NULL DEFAULT 0,
             position       BIGINT UNSIGNED NOT NULL,
             position_text  VARCHAR(64) NULL,
             commit_time_us BIGINT NULL,
             applied_txns   BIGINT UNSIGNED NOT NULL DEFAULT 0,
             lease_term     BIGINT NOT NULL DEFAULT 0,
             PRIMARY KEY (link_id, source_site, worker)
         ) ENGINE = InnoDB COMMENT = 'duplex: applied source positions; written only by duplex'",
        q(database),
        q(crate::marker::MYSQL_MARKER_TABLE)
    ))
    .await
    .map_err(err("create duplex's marker table".into()))?;
    // A marker table made before apply workers: one row per direction,
    // which becomes worker 0's.
    let has_worker: Option<u8> = conn
        .exec_first(
            "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = 'worker'",
            (database, crate::marker::MYSQL_MARKER_TABLE),
        )
        .await
        .map_err(err("look for the worker column of duplex's marker table".into()))?;
    if has_worker.is_none() {
        conn.query_drop(format!(
            "ALTER TABLE {}.{} ADD COLUMN worker INT NOT NULL DEFAULT 0 AFTER source_site,
                 DROP PRIMARY KEY, ADD PRIMARY KEY (link_id, source_site, worker)",
            q(database),
            q(crate::marker::MYSQL_MARKER_TABLE)
        ))
        .await
        .map_err(err("add the worker column to duplex's marker table".into()))?;
    }
    // The lease term of the `--ha` process that applies here (see
    // `sink::mysql`, fencing): a marker table made before it has none.
    let has_term: Option<u8> = conn
        .exec_first(
            "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = 'lease_term'",
            (database, crate::marker::MYSQL_MARKER_TABLE),
        )
        .await
        .map_err(err("look for the lease_term column of duplex's marker table".into()))?;
    if has_term.is_none() {
        // Needed by `duplex run --ha` only: without ALTER (revoked once
        // setup was done, as sql/roles/mysql-site.sql allows), the rest
        // works, and --ha's fencing names the missing column.
        if let Err(e) = conn
            .query_drop(format!(
                "ALTER TABLE {}.{} ADD COLUMN lease_term BIGINT NOT NULL DEFAULT 0",
                q(database),
                q(crate::marker::MYSQL_MARKER_TABLE)
            ))
            .await
        {
            tracing::warn!(site = site_name, error = %e, "cannot add the lease_term column to duplex's marker table (it needs ALTER on it, once): duplex run --ha cannot fence this site until it exists");
        }
    }
    // Every apply worker's row, before any stream starts (its start
    // position is recorded after this): a worker's tag then only updates
    // its row. Inserting it there would need InnoDB's insert-intention lock
    // on the gap before the next worker's row, which that worker's tag (a
    // duplicate-key check, gap included even in READ COMMITTED) holds until
    // it commits: with several workers, a wait between them.
    // Only the missing ones, found by a plain read: inserting over an
    // existing row waits for its lock, which a transaction of an earlier
    // holder of the link (paused, its host cut off: `duplex run --ha`)
    // may keep until it is ended (see `sink::mysql`'s worker lock).
    let existing: Vec<u32> = conn
        .exec(
            format!(
                "SELECT worker FROM {}.{} WHERE link_id = ? AND source_site = ?",
                q(database),
                q(crate::marker::MYSQL_MARKER_TABLE)
            ),
            (link.link_id, peer_site),
        )
        .await
        .map_err(err(
            "read the apply workers' rows of duplex's marker table".into()
        ))?;
    let rows: Vec<String> = (0..crate::sink::MAX_APPLY_WORKERS)
        .filter(|w| !existing.contains(w))
        .map(|w| format!("({}, {peer_site}, {w}, 0, 0)", link.link_id))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    conn.query_drop(format!(
        "INSERT IGNORE INTO {}.{} (link_id, source_site, worker, position, applied_txns) VALUES {}",
        q(database),
        q(crate::marker::MYSQL_MARKER_TABLE),
        rows.join(", ")
    ))
    .await
    .map_err(err(
        "create the apply workers' rows of duplex's marker table".into(),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{ColumnMapping, TableDirection};

    fn link() -> Link {
        Link {
            link_id: 1,
            name: "l".into(),
            site_a: 1,
            site_b: 2,
            enabled: true,
            marker_column: "_duplex".into(),
            tombstone_retention: std::time::Duration::from_secs(60),
            snapshot_rows_per_second: 0,
            apply_workers: 1,
            retention_warn_bytes: 1 << 30,
            resync_requests: 0,
            failover_slots: false,
        }
    }

    fn table(mappings: Vec<ColumnMapping>) -> LinkTable {
        LinkTable {
            link_id: 1,
            table: TableName::new("public", "t"),
            enabled: true,
            paused: false,
            initial_sync: true,
            check_interval: None,
            direction: TableDirection::Both,
            mappings,
            replica_identity: ReplicaIdentityMode::Full,
            policy: crate::conflict::TablePolicy::default(),
            fire_triggers: false,
        }
    }

    fn facts(
        site_id: u32,
        engine: SiteEngine,
        columns: &[&str],
        triggers: Vec<TriggerFacts>,
    ) -> SiteFacts {
        let t = TableName::new("public", "t");
        SiteFacts {
            site_id,
            name: format!("s{site_id}"),
            engine,
            role: "duplex".into(),
            replica_role: engine == SiteEngine::Postgres,
            tables: [(
                t.clone(),
                (
                    t,
                    Some(TableFacts {
                        columns: columns
                            .iter()
                            .map(|c| (c.to_string(), "text".into()))
                            .collect(),
                        generated: Vec::new(),
                        key: vec!["id".into()],
                        triggers,
                        partition_of: None,
                    }),
                ),
            )]
            .into_iter()
            .collect(),
        }
    }

    fn stamp(mode: char) -> TriggerFacts {
        TriggerFacts {
            name: "stamp_last_update".into(),
            kind: "trigger",
            when: "BEFORE INSERT OR UPDATE FOR EACH ROW".into(),
            on: "t".into(),
            mode,
        }
    }

    fn judge(t: &LinkTable, a: &SiteFacts, b: &SiteFacts) -> Result<(), Vec<String>> {
        let name = TableName::new("public", "t");
        judge_table(&link(), t, [a, b], &[&name], false)
    }

    #[test]
    fn a_column_on_one_site_only_is_refused_with_the_ways_out() {
        let a = facts(1, SiteEngine::Postgres, &["id", "v"], vec![]);
        let b = facts(2, SiteEngine::Postgres, &["id", "v", "note"], vec![]);
        let why = judge(&table(vec![]), &a, &b).unwrap_err();
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(
            why[0].contains("column note exists on site s2 only"),
            "{}",
            why[0]
        );
        assert!(why[0].contains("add the column on site s1"), "{}", why[0]);
        assert!(
            why[0].contains("VALUES (1, 'public', 't', 2, 'note', false, NULL)"),
            "{}",
            why[0]
        );
        // Kept on site 2 only, or renamed to a column site 1 has: accepted.
        let excluded = ColumnMapping {
            site_id: 2,
            column_name: "note".into(),
            peer_column: None,
            synced: false,
            transform: None,
            default_value: None,
        };
        assert_eq!(judge(&table(vec![excluded]), &a, &b), Ok(()));
        let renamed = ColumnMapping {
            site_id: 2,
            column_name: "note".into(),
            peer_column: Some("v".into()),
            synced: true,
            transform: None,
            default_value: None,
        };
        let a2 = facts(1, SiteEngine::Postgres, &["id", "v"], vec![]);
        let b2 = facts(2, SiteEngine::Postgres, &["id", "note"], vec![]);
        assert_eq!(judge(&table(vec![renamed]), &a2, &b2), Ok(()));
        // A one-way table only needs the columns its source sends.
        let mut one_way = table(vec![]);
        one_way.direction = TableDirection::AToB;
        assert_eq!(judge(&one_way, &a, &b), Ok(()));
    }

    #[test]
    fn no_primary_key_and_a_different_key_are_refused() {
        let a = facts(1, SiteEngine::Postgres, &["id", "v"], vec![]);
        let mut b = facts(2, SiteEngine::Postgres, &["id", "v"], vec![]);
        if let Some((_, Some(f))) = b.tables.values_mut().next() {
            f.key = vec!["id".into(), "v".into()];
        }
        let why = judge(&table(vec![]), &a, &b).unwrap_err();
        assert!(why[0].contains("the primary key differs"), "{why:?}");
        if let Some((_, Some(f))) = b.tables.values_mut().next() {
            f.key.clear();
        }
        let why = judge(&table(vec![]), &a, &b).unwrap_err();
        assert!(
            why[0].contains("site s2: table public.t has no primary key"),
            "{why:?}"
        );
    }

    #[test]
    fn triggers_refuse_where_they_fire_for_applied_rows() {
        let plain = facts(1, SiteEngine::Postgres, &["id", "v"], vec![]);
        // In the replica role an ordinary trigger does not fire; an
        // ENABLE ALWAYS one does.
        let pg = facts(2, SiteEngine::Postgres, &["id", "v"], vec![stamp('O')]);
        assert_eq!(judge(&table(vec![]), &plain, &pg), Ok(()));
        let always = facts(2, SiteEngine::Postgres, &["id", "v"], vec![stamp('A')]);
        let why = judge(&table(vec![]), &plain, &always).unwrap_err();
        assert!(
            why[0].contains("enabled ALWAYS")
                && why[0].contains("ENABLE TRIGGER stamp_last_update"),
            "{why:?}"
        );
        // Without the right to the replica role, the ordinary one fires.
        let mut no_right = pg.clone();
        no_right.replica_role = false;
        let why = judge(&table(vec![]), &plain, &no_right).unwrap_err();
        assert!(
            why[0].contains("GRANT SET ON PARAMETER session_replication_role TO duplex")
                && why[0].contains("fire_triggers = true"),
            "{why:?}"
        );
        // MySQL/MariaDB: every trigger fires.
        let maria = facts(2, SiteEngine::Mysql, &["id", "v"], vec![stamp('A')]);
        let why = judge(&table(vec![]), &plain, &maria).unwrap_err();
        assert!(
            why[0].contains("MySQL and MariaDB fire triggers for every session"),
            "{why:?}"
        );
        // Said to fire, or on a site nothing flows into: accepted.
        let mut fire = table(vec![]);
        fire.fire_triggers = true;
        assert_eq!(judge(&fire, &plain, &maria), Ok(()));
        let mut b_to_a = table(vec![]);
        b_to_a.direction = TableDirection::BToA;
        assert_eq!(judge(&b_to_a, &plain, &maria), Ok(()));
        assert!(stamp('R').fires(true) && !stamp('R').fires(false));
        assert!(!stamp('O').fires(true) && stamp('O').fires(false));
    }
}
