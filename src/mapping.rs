//! Column mappings: the step between a source's canonical record and the
//! peer's sink that renames, drops, transforms and fills columns, and drops
//! the changes of tables that flow the other way only.
//!
//! Configured in `duplex.column_mappings` (one row per site and column) and
//! `duplex.link_tables.direction`. A change leaves the mapping in the target
//! site's column names, so everything after it (conflict detection, the
//! sink's statements, the marker's column tags) speaks the target's names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::canonical::{ColumnSchema, Row, RowChange, TableSchema, Timestamp, Value};

/// The type name of a column the mapping fills on insert (one only the
/// target has). It is the target's own: the row checksum leaves it out, since
/// later changes from the source never carry it.
pub const FILLED_COLUMN_TYPE: &str = "(filled by duplex on insert)";

/// A value transformation, applied on the way from the column's site to the
/// other site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Trim,
    Lower,
    Upper,
    /// Shift timestamps without time zone by this many minutes.
    TzShift(i32),
}

impl Transform {
    /// Parse `trim`, `lower`, `upper` or `tz_shift +HH:MM` / `tz_shift -HH:MM`.
    pub fn parse(text: &str) -> Result<Transform, String> {
        match text {
            "trim" => return Ok(Transform::Trim),
            "lower" => return Ok(Transform::Lower),
            "upper" => return Ok(Transform::Upper),
            _ => {}
        }
        let bad = || {
            format!("unknown transform '{text}' (expected trim, lower, upper or tz_shift +HH:MM)")
        };
        let offset = text.strip_prefix("tz_shift ").ok_or_else(bad)?;
        let (sign, rest) = match offset.split_at_checked(1) {
            Some(("+", r)) => (1, r),
            Some(("-", r)) => (-1, r),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(Transform::TzShift(sign * (h * 60 + m)))
    }

    pub fn describe(&self) -> String {
        match self {
            Transform::Trim => "trim".into(),
            Transform::Lower => "lower".into(),
            Transform::Upper => "upper".into(),
            Transform::TzShift(min) => {
                let sign = if *min < 0 { '-' } else { '+' };
                format!("tz_shift {sign}{:02}:{:02}", min.abs() / 60, min.abs() % 60)
            }
        }
    }

    fn apply(&self, v: Value) -> Value {
        match (self, v) {
            (Transform::Trim, Value::Text(s)) => Value::Text(s.trim().to_string()),
            (Transform::Lower, Value::Text(s)) => Value::Text(s.to_lowercase()),
            (Transform::Upper, Value::Text(s)) => Value::Text(s.to_uppercase()),
            (Transform::TzShift(min), Value::Timestamp(Timestamp::Micros(us))) => Value::Timestamp(
                Timestamp::Micros(us.saturating_add(i64::from(*min) * 60_000_000)),
            ),
            // Other kinds pass unchanged (the check at configuration time
            // names the column's type; a NULL stays NULL).
            (_, other) => other,
        }
    }
}

/// One row of `duplex.column_mappings`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ColumnMapping {
    pub site_id: u32,
    pub column_name: String,
    pub peer_column: Option<String>,
    pub synced: bool,
    pub transform: Option<String>,
    pub default_value: Option<String>,
}

/// Which way a table's changes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableDirection {
    Both,
    AToB,
    BToA,
}

impl TableDirection {
    pub fn parse(s: &str) -> Option<TableDirection> {
        Some(match s {
            "both" => TableDirection::Both,
            "a_to_b" => TableDirection::AToB,
            "b_to_a" => TableDirection::BToA,
            _ => return None,
        })
    }
}

/// What happens to one table's changes in one direction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableMapping {
    /// The table's changes do not flow this way.
    pub skip: bool,
    /// Source column -> target column, for renamed columns.
    rename: HashMap<String, String>,
    /// Source columns never sent.
    drop: HashSet<String>,
    /// Source column -> transform of its values.
    transforms: HashMap<String, Transform>,
    /// Target columns the source lacks, with the value an inserted row takes.
    defaults: Vec<(String, String)>,
    /// Source columns sent in an update only when the update changed them.
    only_if_changed: HashSet<String>,
}

impl TableMapping {
    /// The mapping of changes from site `source` to site `target` of a table
    /// with `mappings` flowing `direction` (`source_is_a`: the source is the
    /// link's site_a). Errors name the inconsistent rows.
    pub fn build(
        mappings: &[ColumnMapping],
        direction: TableDirection,
        source: u32,
        target: u32,
        source_is_a: bool,
    ) -> Result<TableMapping, String> {
        let mut m = TableMapping {
            skip: match direction {
                TableDirection::Both => false,
                TableDirection::AToB => !source_is_a,
                TableDirection::BToA => source_is_a,
            },
            ..TableMapping::default()
        };
        for row in mappings {
            let transform = row.transform.as_deref().map(Transform::parse).transpose()?;
            if row.site_id == source {
                if !row.synced {
                    m.drop.insert(row.column_name.clone());
                    continue;
                }
                if let Some(peer) = &row.peer_column {
                    m.rename.insert(row.column_name.clone(), peer.clone());
                }
                if let Some(t) = transform {
                    m.transforms.insert(row.column_name.clone(), t);
                }
            } else if row.site_id == target {
                if !row.synced {
                    // Not synced on the target either way: a source column of
                    // that name is not sent; a target-only column is filled
                    // on insert.
                    m.drop.insert(row.column_name.clone());
                    if let Some(v) = &row.default_value {
                        m.defaults.push((row.column_name.clone(), v.clone()));
                    }
                    continue;
                }
                if let Some(t) = transform {
                    // The column's values were transformed on their way to
                    // the source site. Coming back, the shift is undone; a
                    // value the source did not change in this write is not
                    // sent at all, so the transform never feeds on itself
                    // (lower/upper/trim cannot be undone, and an unchanged
                    // value must not overwrite the original here).
                    let source_name = row.peer_column.clone().unwrap_or(row.column_name.clone());
                    if let Transform::TzShift(min) = t {
                        m.transforms
                            .insert(source_name.clone(), Transform::TzShift(-min));
                    }
                    m.only_if_changed.insert(source_name);
                }
                if let Some(peer) = &row.peer_column {
                    // The target's column `column_name` is the source's `peer`.
                    match m.rename.get(peer) {
                        Some(existing) if existing != &row.column_name => {
                            return Err(format!(
                            "column {peer} is mapped to both {existing} and {} on site {target}",
                            row.column_name
                        ))
                        }
                        _ => {
                            m.rename.insert(peer.clone(), row.column_name.clone());
                        }
                    }
                }
            } else {
                return Err(format!(
                    "a column mapping names site {}, which is not one of the link's sites",
                    row.site_id
                ));
            }
        }
        Ok(m)
    }

    fn is_identity(&self) -> bool {
        !self.skip
            && self.rename.is_empty()
            && self.drop.is_empty()
            && self.transforms.is_empty()
            && self.defaults.is_empty()
            && self.only_if_changed.is_empty()
    }

    /// The source's name of the target column `target` (inverse rename).
    pub fn source_name<'a>(&'a self, target: &'a str) -> &'a str {
        self.rename
            .iter()
            .find(|(_, t)| t.as_str() == target)
            .map(|(s, _)| s.as_str())
            .unwrap_or(target)
    }

    /// For a parity check from this mapping's source: the target's name of
    /// source column `source` when its values are comparable as they are
    /// (synced, and transformed in neither direction).
    pub fn compared_column<'a>(&'a self, source: &'a str) -> Option<&'a str> {
        if self.drop.contains(source)
            || self.transforms.contains_key(source)
            || self.only_if_changed.contains(source)
        {
            return None;
        }
        Some(self.target_name(source))
    }

    /// The source column `source` is never sent (excluded).
    pub fn drops(&self, source: &str) -> bool {
        self.drop.contains(source)
    }

    /// The source columns never sent.
    pub fn dropped_columns(&self) -> &HashSet<String> {
        &self.drop
    }

    /// The target's name of the source column `source`.
    pub fn target_name<'a>(&'a self, source: &'a str) -> &'a str {
        self.rename
            .get(source)
            .map(String::as_str)
            .unwrap_or(source)
    }

    /// The target column a source column's values go to (`None`: the table
    /// does not flow this way, or the column is not sent).
    pub fn target_column<'a>(&'a self, source: &'a str) -> Option<&'a str> {
        if self.skip || self.drop.contains(source) {
            return None;
        }
        Some(self.target_name(source))
    }
}

/// A source schema's mapped forms.
#[derive(Debug, Clone)]
struct MappedSchema {
    /// Keeps the source schema alive, so its address (the cache key) is not
    /// reused while cached.
    _source: Arc<TableSchema>,
    /// For inserts: with the target-only columns that have a default.
    insert: Arc<TableSchema>,
    insert_sources: Vec<Option<usize>>,
    /// For updates and deletes: without them (an image must be complete for
    /// conflict detection, and those columns are the target's own).
    other: Arc<TableSchema>,
    other_sources: Vec<Option<usize>>,
}

/// The mappings of one direction of a link, by bare table name.
#[derive(Debug, Clone, Default)]
pub struct DirectionMapping {
    tables: HashMap<String, TableMapping>,
    /// Mapped schemas, by the address of the source schema they came from.
    schemas: HashMap<usize, MappedSchema>,
}

impl DirectionMapping {
    pub fn new(tables: HashMap<String, TableMapping>) -> DirectionMapping {
        DirectionMapping {
            tables: tables
                .into_iter()
                .filter(|(_, m)| !m.is_identity())
                .collect(),
            schemas: HashMap::new(),
        }
    }

    /// The target's names of `columns` (a table's source columns) that are
    /// sent this way.
    pub fn target_columns(&self, table: &str, columns: &[String]) -> Vec<String> {
        match self.tables.get(table) {
            None => columns.to_vec(),
            Some(m) => columns
                .iter()
                .filter_map(|c| m.target_column(c))
                .map(str::to_string)
                .collect(),
        }
    }

    /// The target's columns the mapping fills on insert for a table (its
    /// site-only columns with a `default_value`).
    pub fn filled_columns(&self, table: &str) -> Vec<String> {
        self.tables
            .get(table)
            .map(|m| m.defaults.iter().map(|(c, _)| c.clone()).collect())
            .unwrap_or_default()
    }

    /// The table's changes do not flow this way.
    pub fn skips(&self, table: &str) -> bool {
        self.tables.get(table).is_some_and(|m| m.skip)
    }

    /// `change` in the target's terms, or `None` when the table does not
    /// flow this way.
    pub fn map(&mut self, change: RowChange) -> Option<RowChange> {
        self.map_keeping_source(change).map(|(mapped, _)| mapped)
    }

    /// [`DirectionMapping::map`], and the change as it came from the source
    /// when the mapping changed it (`None`: the mapped change is the source's
    /// own). A change the target refuses is kept in the source's terms, so
    /// that a retry maps it with the configuration in force then.
    pub fn map_keeping_source(
        &mut self,
        change: RowChange,
    ) -> Option<(RowChange, Option<Arc<RowChange>>)> {
        let Some(m) = self.tables.get(&change.table.table.name) else {
            return Some((change, None));
        };
        if m.skip {
            return None;
        }
        let key = Arc::as_ptr(&change.table) as usize;
        let mapped = match self.schemas.get(&key) {
            Some(mapped) => mapped.clone(),
            None => {
                let (insert, insert_sources) = map_schema(m, &change.table, true);
                let (other, other_sources) = map_schema(m, &change.table, false);
                let mapped = MappedSchema {
                    _source: change.table.clone(),
                    insert: Arc::new(insert),
                    insert_sources,
                    other: Arc::new(other),
                    other_sources,
                };
                if self.schemas.len() > 1024 {
                    self.schemas.clear();
                }
                self.schemas.insert(key, mapped.clone());
                mapped
            }
        };
        let insert = change.op == crate::canonical::Op::Insert;
        let (schema, sources) = if insert {
            (mapped.insert, mapped.insert_sources)
        } else {
            (mapped.other, mapped.other_sources)
        };
        let source_schema = change.table.clone();
        let map_row = |row: &Row| -> Row {
            Row(sources
                .iter()
                .enumerate()
                .map(|(i, src)| match src {
                    Some(j) => {
                        let v = row.0.get(*j).cloned().flatten();
                        let name = &source_schema.columns[*j].name;
                        match (v, m.transforms.get(name)) {
                            (Some(v), Some(t)) => Some(t.apply(v)),
                            (v, _) => v,
                        }
                    }
                    None => {
                        // A target-only column (inserts only): its default.
                        let name = &schema.columns[i].name;
                        m.defaults
                            .iter()
                            .find(|(c, _)| c == name)
                            .map(|(_, v)| Value::Text(v.clone()))
                    }
                })
                .collect())
        };
        let mut marker = change.marker.clone();
        if !marker.cols.is_empty() {
            let cols = std::mem::take(&mut marker.cols);
            marker.cols = cols
                .into_iter()
                .filter(|(c, _)| !m.drop.contains(c))
                .map(|(c, tag)| (m.target_name(&c).to_string(), tag))
                .collect::<BTreeMap<_, _>>();
        }
        let before = change.before.as_ref().map(map_row);
        let mut after = change.after.as_ref().map(map_row);
        if change.op == crate::canonical::Op::Update && !m.only_if_changed.is_empty() {
            if let (Some(b), Some(a)) = (&before, &mut after) {
                for (i, src) in sources.iter().enumerate() {
                    let Some(j) = src else { continue };
                    if m.only_if_changed.contains(&source_schema.columns[*j].name)
                        && b.0.get(i) == a.0.get(i)
                        && !schema.key.contains(&i)
                    {
                        // Absent: "leave the target's value as it is".
                        a.0[i] = None;
                    }
                }
            }
        }
        let mapped = RowChange {
            op: change.op,
            before,
            after,
            table: schema,
            marker,
        };
        // The source form may be written on the target (a quarantine
        // record, in the target's outbox): never with the columns the
        // configuration keeps on their site.
        let source = if m.drop.is_empty() {
            change
        } else {
            without_columns(change, |name| m.drop.contains(name))
        };
        Some((mapped, Some(Arc::new(source))))
    }

    /// A change quarantined by a duplex that kept only its mapped form (the
    /// target's terms under the configuration of its time): the columns the
    /// configuration in force excludes are taken out, so that excluding the
    /// column a target refused lets the change through. Renames and
    /// transforms of its time stay as they were. `None` when the table no
    /// longer flows this way.
    pub fn restrict_mapped(&self, change: RowChange) -> Option<RowChange> {
        let Some(m) = self.tables.get(&change.table.table.name) else {
            return Some(change);
        };
        if m.skip {
            return None;
        }
        Some(without_columns(change, |name| {
            m.drop.contains(name) || m.drop.contains(m.source_name(name))
        }))
    }
}

/// The target schema for `source` under `m`, and for each target column the
/// index of its source column (`None`: a target-only column with a default).
fn map_schema(
    m: &TableMapping,
    source: &TableSchema,
    with_defaults: bool,
) -> (TableSchema, Vec<Option<usize>>) {
    let mut columns = Vec::new();
    let mut sources = Vec::new();
    let mut key = Vec::new();
    for (j, c) in source.columns.iter().enumerate() {
        if m.drop.contains(&c.name) {
            continue;
        }
        if source.key.contains(&j) {
            key.push((source.key.iter().position(|&k| k == j), columns.len()));
        }
        columns.push(ColumnSchema {
            name: m.target_name(&c.name).to_string(),
            type_name: c.type_name.clone(),
        });
        sources.push(Some(j));
    }
    for (name, _) in m.defaults.iter().filter(|_| with_defaults) {
        if !columns.iter().any(|c| &c.name == name) {
            columns.push(ColumnSchema {
                name: name.clone(),
                type_name: FILLED_COLUMN_TYPE.into(),
            });
            sources.push(None);
        }
    }
    key.sort();
    (
        TableSchema {
            table: source.table.clone(),
            columns,
            key: key.into_iter().map(|(_, i)| i).collect(),
        },
        sources,
    )
}

/// Broad families of column types, to refuse a mapping between columns that
/// cannot hold each other's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeFamily {
    Text,
    Number,
    Bool,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Json,
    Binary,
    Other,
}

fn type_family(type_name: &str) -> TypeFamily {
    let t = type_name.to_ascii_lowercase();
    let t = t.trim();
    let starts = |p: &[&str]| p.iter().any(|x| t.starts_with(x));
    if t.starts_with("timestamp") && t.contains("with time zone") {
        TypeFamily::TimestampTz
    } else if starts(&["timestamp", "datetime"]) {
        TypeFamily::Timestamp
    } else if starts(&["time"]) {
        TypeFamily::Time
    } else if t == "date" {
        TypeFamily::Date
    } else if starts(&[
        "char",
        "varchar",
        "character",
        "text",
        "tinytext",
        "mediumtext",
        "longtext",
        "citext",
        "enum",
        "set",
        "uuid",
    ]) {
        TypeFamily::Text
    } else if t == "boolean" || t == "bool" || t == "tinyint(1)" {
        TypeFamily::Bool
    } else if starts(&[
        "smallint",
        "integer",
        "int",
        "bigint",
        "tinyint",
        "mediumint",
        "numeric",
        "decimal",
        "real",
        "double",
        "float",
    ]) {
        TypeFamily::Number
    } else if starts(&["json"]) {
        TypeFamily::Json
    } else if starts(&[
        "bytea",
        "blob",
        "binary",
        "varbinary",
        "tinyblob",
        "mediumblob",
        "longblob",
    ]) {
        TypeFamily::Binary
    } else {
        TypeFamily::Other
    }
}

/// Check that no column's values flow into a column that would silently
/// drop part of them: a timestamp (PostgreSQL `timestamp`/`timestamptz`,
/// MySQL `DATETIME`/`TIMESTAMP`) into a `date` (its time of day) or a `time`
/// (its date). PostgreSQL's cast would truncate; MySQL's encoder refuses the
/// values one by one. Refused as a pair whatever the values (midnight
/// included), in the directions the table flows. `mapping_from(site)`: the
/// table's mapping of changes from that site; `types_of(site)`: column ->
/// type name on that site.
pub fn check_lossy_pairs(
    sites: [u32; 2],
    mapping_from: impl Fn(u32) -> Result<TableMapping, String>,
    types_of: impl Fn(u32) -> Option<HashMap<String, String>>,
) -> Result<(), String> {
    for (source, target) in [(sites[0], sites[1]), (sites[1], sites[0])] {
        let m = mapping_from(source)?;
        let (Some(from), Some(to)) = (types_of(source), types_of(target)) else {
            continue;
        };
        let mut columns: Vec<(&String, &String)> = from.iter().collect();
        columns.sort();
        for (column, t_from) in columns {
            let Some(target_column) = m.target_column(column) else {
                continue;
            };
            let Some(t_to) = to.get(target_column) else {
                continue;
            };
            let lost = match (type_family(t_from), type_family(t_to)) {
                (TypeFamily::Timestamp | TypeFamily::TimestampTz, TypeFamily::Date) => {
                    "its time of day"
                }
                (TypeFamily::Timestamp | TypeFamily::TimestampTz, TypeFamily::Time) => "its date",
                _ => continue,
            };
            return Err(format!(
                "site {source}'s column {column} ({t_from}) flows into site {target}'s column \
                 {target_column} ({t_to}), which would lose {lost}: give both columns the same \
                 kind of type, exclude the column (column_mappings.synced = false), or let the \
                 table flow only from the {t_to} side (link_tables.direction)"
            ));
        }
    }
    Ok(())
}

/// Check a table's mappings against the two sites' column types: renamed
/// columns must hold the same kind of value, and a transform must fit its
/// column (trim/lower/upper: text; tz_shift: timestamp without time zone).
/// `types_of(site)`: the table's column -> type name on that site.
pub fn check_mapping_types(
    mappings: &[ColumnMapping],
    site_a: u32,
    site_b: u32,
    types_of: impl Fn(u32) -> Option<HashMap<String, String>>,
) -> Result<(), String> {
    for m in mappings.iter().filter(|m| m.synced) {
        let peer_site = if m.site_id == site_a { site_b } else { site_a };
        let peer_name = m.peer_column.as_deref().unwrap_or(&m.column_name);
        let (Some(here), Some(there)) = (types_of(m.site_id), types_of(peer_site)) else {
            continue;
        };
        let (Some(t_here), Some(t_there)) = (here.get(&m.column_name), there.get(peer_name)) else {
            continue;
        };
        let (f_here, f_there) = (type_family(t_here), type_family(t_there));
        if f_here != f_there && f_here != TypeFamily::Other && f_there != TypeFamily::Other {
            return Err(format!(
                "site {}'s column {} ({t_here}) is mapped to site {peer_site}'s column {peer_name} ({t_there}): incompatible types",
                m.site_id, m.column_name
            ));
        }
        if let Some(tr) = m.transform.as_deref().map(Transform::parse).transpose()? {
            let fits = match tr {
                Transform::Trim | Transform::Lower | Transform::Upper => f_here == TypeFamily::Text,
                Transform::TzShift(_) => f_here == TypeFamily::Timestamp,
            };
            if !fits {
                return Err(format!(
                    "transform {} does not apply to site {}'s column {} ({t_here})",
                    tr.describe(),
                    m.site_id,
                    m.column_name
                ));
            }
        }
    }
    Ok(())
}

/// `change` without its non-key columns that `drop` names.
pub(crate) fn without_columns(change: RowChange, drop: impl Fn(&str) -> bool) -> RowChange {
    let schema = &change.table;
    let keep: Vec<usize> = (0..schema.columns.len())
        .filter(|&i| schema.key.contains(&i) || !drop(&schema.columns[i].name))
        .collect();
    if keep.len() == schema.columns.len() {
        return change;
    }
    let table = Arc::new(TableSchema {
        table: schema.table.clone(),
        columns: keep.iter().map(|&i| schema.columns[i].clone()).collect(),
        key: schema
            .key
            .iter()
            .filter_map(|k| keep.iter().position(|i| i == k))
            .collect(),
    });
    let pick = |row: Row| {
        Row(keep
            .iter()
            .map(|&i| row.0.get(i).cloned().flatten())
            .collect())
    };
    let mut marker = change.marker;
    marker
        .cols
        .retain(|c, _| table.columns.iter().any(|col| &col.name == c));
    RowChange {
        op: change.op,
        before: change.before.map(pick),
        after: change.after.map(pick),
        table,
        marker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{Op, TableName};
    use crate::marker::Marker;

    fn schema() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            table: TableName::new("public", "people"),
            columns: ["id", "email", "secret", "city"]
                .iter()
                .map(|n| ColumnSchema {
                    name: (*n).into(),
                    type_name: "text".into(),
                })
                .collect(),
            key: vec![0],
        })
    }

    fn mapping(site: u32, column: &str) -> ColumnMapping {
        ColumnMapping {
            site_id: site,
            column_name: column.into(),
            peer_column: None,
            synced: true,
            transform: None,
            default_value: None,
        }
    }

    #[test]
    fn renames_drops_transforms_and_fills() {
        let rows = vec![
            ColumnMapping {
                peer_column: Some("mail".into()),
                transform: Some("lower".into()),
                ..mapping(1, "email")
            },
            ColumnMapping {
                synced: false,
                ..mapping(1, "secret")
            },
            ColumnMapping {
                synced: false,
                default_value: Some("EU".into()),
                ..mapping(2, "region")
            },
        ];
        let m = TableMapping::build(&rows, TableDirection::Both, 1, 2, true).unwrap();
        let mut d = DirectionMapping::new([("people".to_string(), m)].into_iter().collect());
        let text = |s: &str| Some(Value::Text(s.into()));
        let change = RowChange {
            table: schema(),
            op: Op::Insert,
            before: None,
            after: Some(Row(vec![
                text("1"),
                text("A@X.ORG"),
                text("pw"),
                text("Oslo"),
            ])),
            marker: Marker::default(),
        };
        let out = d.map(change).unwrap();
        let names: Vec<&str> = out.table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "mail", "city", "region"]);
        assert_eq!(out.table.key, vec![0]);
        assert_eq!(
            out.after.unwrap(),
            Row(vec![text("1"), text("a@x.org"), text("Oslo"), text("EU")])
        );
        // The other way: the rename is inverted; the lower-cased column is
        // sent back only when an update changed it.
        let m = TableMapping::build(&rows, TableDirection::Both, 2, 1, false).unwrap();
        assert_eq!(m.target_name("mail"), "email");
        assert!(m.transforms.is_empty());
        assert!(m.only_if_changed.contains("mail"));
        let back_schema = Arc::new(TableSchema {
            table: TableName::new("public", "people"),
            columns: ["id", "mail", "city", "region"]
                .iter()
                .map(|n| ColumnSchema {
                    name: (*n).into(),
                    type_name: "text".into(),
                })
                .collect(),
            key: vec![0],
        });
        let mut d = DirectionMapping::new([("people".to_string(), m)].into_iter().collect());
        let update = |mail: &str| RowChange {
            table: back_schema.clone(),
            op: Op::Update,
            before: Some(Row(vec![
                text("1"),
                text("a@x.org"),
                text("Oslo"),
                text("EU"),
            ])),
            after: Some(Row(vec![text("1"), text(mail), text("Bergen"), text("EU")])),
            marker: Marker::default(),
        };
        let out = d.map(update("a@x.org")).unwrap();
        assert_eq!(
            out.after.unwrap().0[1],
            None,
            "unchanged: left alone on site 1"
        );
        let out = d.map(update("b@y.org")).unwrap();
        assert_eq!(out.after.unwrap().0[1], text("b@y.org"));
    }

    #[test]
    fn records_of_older_versions_lose_the_columns_excluded_now() {
        // Kept by an older duplex in the target's terms: `email` renamed to
        // `mail` then; `mail` is now excluded (by its source name `email`).
        let rows = vec![
            ColumnMapping {
                peer_column: Some("mail".into()),
                ..mapping(1, "email")
            },
            ColumnMapping {
                synced: false,
                ..mapping(1, "email")
            },
        ];
        let m = TableMapping::build(&rows, TableDirection::Both, 1, 2, true).unwrap();
        let d = DirectionMapping::new([("people".to_string(), m)].into_iter().collect());
        let kept = Arc::new(TableSchema {
            table: TableName::new("public", "people"),
            columns: ["mail", "id", "city"]
                .iter()
                .map(|n| ColumnSchema {
                    name: (*n).into(),
                    type_name: "text".into(),
                })
                .collect(),
            key: vec![1],
        });
        let text = |s: &str| Some(Value::Text(s.into()));
        let change = RowChange {
            table: kept,
            op: Op::Insert,
            before: None,
            after: Some(Row(vec![text("a@x.org"), text("1"), text("Oslo")])),
            marker: Marker::default(),
        };
        let out = d.restrict_mapped(change).unwrap();
        let names: Vec<&str> = out.table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "city"]);
        assert_eq!(out.table.key, vec![0], "the key follows its column");
        assert_eq!(out.after.unwrap(), Row(vec![text("1"), text("Oslo")]));
        // A table that no longer flows this way: nothing to apply.
        let m = TableMapping::build(&[], TableDirection::BToA, 1, 2, true).unwrap();
        let d = DirectionMapping::new([("people".to_string(), m)].into_iter().collect());
        let change = RowChange {
            table: schema(),
            op: Op::Delete,
            before: Some(Row(vec![text("1"), None, None, None])),
            after: None,
            marker: Marker::default(),
        };
        assert!(d.restrict_mapped(change).is_none());
    }

    #[test]
    fn the_source_form_is_kept_only_when_the_mapping_changes_the_change_and_never_with_site_only_columns(
    ) {
        let rows = [ColumnMapping {
            synced: false,
            ..mapping(1, "secret")
        }];
        let m = TableMapping::build(&rows, TableDirection::Both, 1, 2, true).unwrap();
        let mut d = DirectionMapping::new([("people".to_string(), m)].into_iter().collect());
        let text = |s: &str| Some(Value::Text(s.into()));
        let change = |table: &str| RowChange {
            table: Arc::new(TableSchema {
                table: TableName::new("public", table),
                ..(*schema()).clone()
            }),
            op: Op::Insert,
            before: None,
            after: Some(Row(vec![text("1"), text("e"), text("pw"), text("Oslo")])),
            marker: Marker::default(),
        };
        let (mapped, source) = d.map_keeping_source(change("people")).unwrap();
        assert_eq!(mapped.table.columns.len(), 3);
        let source = source.expect("mapped: the source form is kept");
        // Without the column kept on its site: the source form may be
        // written on the target (a quarantine record in its outbox).
        assert_eq!(source.table.columns.len(), 3);
        assert!(
            !source.after.as_ref().unwrap().0.contains(&text("pw")),
            "the site-only value stays on its site: {source:?}"
        );
        assert!(source.table.columns.iter().all(|c| c.name != "secret"));
        let (_, source) = d.map_keeping_source(change("other")).unwrap();
        assert!(
            source.is_none(),
            "not mapped: the change is its own source form"
        );
    }

    #[test]
    fn one_way_tables_skip_the_other_direction() {
        let m = TableMapping::build(&[], TableDirection::AToB, 2, 1, false).unwrap();
        assert!(m.skip);
        let m = TableMapping::build(&[], TableDirection::AToB, 1, 2, true).unwrap();
        assert!(!m.skip);
    }

    #[test]
    fn a_timestamp_into_a_date_is_refused_where_it_flows() {
        let types = |site: u32| -> Option<HashMap<String, String>> {
            Some(
                match site {
                    1 => [
                        ("id", "integer"),
                        ("day", "date"),
                        ("at", "timestamp(6) with time zone"),
                    ],
                    _ => [
                        ("id", "int(11)"),
                        ("day", "datetime"),
                        ("at", "timestamp(6)"),
                    ],
                }
                .iter()
                .map(|(c, t)| (c.to_string(), t.to_string()))
                .collect(),
            )
        };
        let check = |direction, mappings: &[ColumnMapping]| {
            check_lossy_pairs(
                [1, 2],
                |s| TableMapping::build(mappings, direction, s, 3 - s, s == 1),
                types,
            )
        };
        let err = check(TableDirection::Both, &[]).unwrap_err();
        assert!(
            err.contains("site 2's column day (datetime)")
                && err.contains("site 1's column day (date)")
                && err.contains("time of day"),
            "{err}"
        );
        // One way, from the date: midnight loses nothing.
        assert_eq!(check(TableDirection::AToB, &[]), Ok(()));
        assert!(check(TableDirection::BToA, &[]).is_err());
        // Not sent, or renamed away from the date: nothing flows into it.
        let excluded = [ColumnMapping {
            synced: false,
            ..mapping(2, "day")
        }];
        assert_eq!(check(TableDirection::Both, &excluded), Ok(()));
        // A timestamp into a time loses the date.
        let types_time = |site: u32| -> Option<HashMap<String, String>> {
            let t = if site == 1 {
                "time without time zone"
            } else {
                "datetime(3)"
            };
            Some([("t".to_string(), t.to_string())].into_iter().collect())
        };
        let err = check_lossy_pairs(
            [1, 2],
            |s| TableMapping::build(&[], TableDirection::Both, s, 3 - s, s == 1),
            types_time,
        )
        .unwrap_err();
        assert!(err.contains("lose its date"), "{err}");
    }

    #[test]
    fn incompatible_mappings_are_named() {
        let types = |site: u32| -> Option<HashMap<String, String>> {
            Some(
                match site {
                    1 => [
                        ("email", "text"),
                        ("n", "integer"),
                        ("at", "timestamp without time zone"),
                    ],
                    _ => [
                        ("mail", "varchar(200)"),
                        ("n", "text"),
                        ("at", "datetime(6)"),
                    ],
                }
                .iter()
                .map(|(c, t)| (c.to_string(), t.to_string()))
                .collect(),
            )
        };
        let ok = [
            ColumnMapping {
                peer_column: Some("mail".into()),
                transform: Some("lower".into()),
                ..mapping(1, "email")
            },
            ColumnMapping {
                transform: Some("tz_shift +01:00".into()),
                ..mapping(1, "at")
            },
        ];
        assert_eq!(check_mapping_types(&ok, 1, 2, types), Ok(()));
        let bad = [mapping(1, "n")];
        let err = check_mapping_types(&bad, 1, 2, types).unwrap_err();
        assert!(err.contains("incompatible types"), "{err}");
        let bad = [ColumnMapping {
            transform: Some("upper".into()),
            ..mapping(1, "at")
        }];
        let err = check_mapping_types(&bad, 1, 2, types).unwrap_err();
        assert!(err.contains("does not apply"), "{err}");
    }

    #[test]
    fn transforms_parse_and_shift() {
        assert_eq!(
            Transform::parse("tz_shift -02:30"),
            Ok(Transform::TzShift(-150))
        );
        assert_eq!(Transform::TzShift(-150).describe(), "tz_shift -02:30");
        assert!(Transform::parse("tz_shift 2").is_err());
        assert!(Transform::parse("reverse").is_err());
        // A shift comes back undone.
        let rows = [ColumnMapping {
            transform: Some("tz_shift +01:30".into()),
            ..mapping(1, "at")
        }];
        let back = TableMapping::build(&rows, TableDirection::Both, 2, 1, false).unwrap();
        assert_eq!(back.transforms.get("at"), Some(&Transform::TzShift(-90)));
        let v = Transform::TzShift(60).apply(Value::Timestamp(Timestamp::Micros(0)));
        assert_eq!(v, Value::Timestamp(Timestamp::Micros(3_600_000_000)));
    }
}
