//! The version a source stamps on each row change it passes on, the same for
//! both engines: the marker of a user's write, or of a row duplex itself wrote
//! that the applier flagged to flow back.

use std::collections::{HashMap, HashSet};

use crate::canonical::encode::row_checksum;
use crate::canonical::{Op, Row, SourcePosition, TableSchema};
use crate::marker::{Dot, Marker};

/// What a source needs to know of each table to stamp the versions it
/// captures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stamping {
    /// Tables under field-level merge: their versions carry column tags
    /// (see `conflict::column_tags`).
    pub field_merge_tables: HashSet<String>,
    /// Per table, the columns the mapping never sends to the peer. They are
    /// left out of the checksum that names a version on its own site, which
    /// the site's applier computes from the row it reads back: the synced
    /// columns only (see `marker::Dot`).
    pub unsynced_columns: HashMap<String, HashSet<String>>,
}

impl Stamping {
    /// The columns of `schema`'s table the mapping never sends.
    pub fn unsynced(&self, schema: &TableSchema) -> Option<&HashSet<String>> {
        self.unsynced_columns.get(&schema.table.name)
    }
}

/// The checksum that names a version of `row` on its own site: the row as its
/// applier reads it back, without the `unsynced` columns. `full` is the whole
/// row's checksum, already computed (0: not known whole), taken as it is
/// when no column is left out.
pub(crate) fn version_crc(
    full: u32,
    schema: &TableSchema,
    row: &Row,
    unsynced: Option<&HashSet<String>>,
) -> u32 {
    match unsynced {
        Some(u) if full != 0 && !u.is_empty() => synced_checksum(schema, row, u),
        _ => full,
    }
}

/// The checksum of `row` without the columns named in `unsynced`.
fn synced_checksum(schema: &TableSchema, row: &Row, unsynced: &HashSet<String>) -> u32 {
    let keep: Vec<usize> = (0..schema.columns.len())
        .filter(|&i| !unsynced.contains(&schema.columns[i].name))
        .collect();
    let narrowed = TableSchema {
        table: schema.table.clone(),
        columns: keep.iter().map(|&i| schema.columns[i].clone()).collect(),
        key: Vec::new(),
    };
    let values = Row(keep
        .iter()
        .map(|&i| row.0.get(i).cloned().flatten())
        .collect());
    row_checksum(&narrowed, &values).unwrap_or(0)
}

/// The marker of a user's write: `dot` (this site's event) added to the version
/// the row carried (the marker text of its new image, else of its old one), the
/// new row's checksum (0, "no checksum", for a delete or a row not known whole),
/// and for a table under field-level merge (named in `stamping`) the columns'
/// tags (see `conflict::column_tags`). `after`: the new row, whole.
pub(crate) fn user_write(
    schema: &TableSchema,
    site_id: u32,
    dot: Dot,
    after_text: Option<&str>,
    before_text: Option<&str>,
    after: Option<&Row>,
    stamping: &Stamping,
) -> Marker {
    let crc = after.and_then(|a| row_checksum(schema, a)).unwrap_or(0);
    // The version is known by its time and its content on its own site (a
    // delete's content: no row).
    let dot = dot.with_crc(match after {
        Some(a) => version_crc(crc, schema, a, stamping.unsynced(schema)),
        None => crate::marker::DELETED_ROW_CRC,
    });
    let prior_text = after_text.or(before_text);
    let mut marker = Marker::for_user_write(prior_text, None, site_id, dot, crc, &schema.table);
    if stamping.field_merge_tables.contains(&schema.table.name) {
        if let Some(a) = after {
            let prior = Marker::parse_lenient(prior_text, &schema.table);
            marker.cols = crate::conflict::column_tags(schema, a, prior.as_ref(), site_id, dot);
        }
    }
    marker
}

/// The marker of a row duplex itself wrote (an echo), read from the image that
/// holds the row's version (the old one for a delete): `Some` only when the
/// applier flagged it to flow back (see `marker::Resolution`); an echo without
/// the flag is dropped.
pub(crate) fn forwarded(
    op: Op,
    after_text: Option<&str>,
    before_text: Option<&str>,
    site_id: u32,
    position: SourcePosition,
) -> Option<Marker> {
    let text = match op {
        Op::Delete => before_text,
        _ => after_text,
    };
    Marker::forwarded(text, site_id, position.counter(), op == Op::Delete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{ColumnSchema, TableName, Value};

    /// A version is named on its own site by the row its applier reads back,
    /// which holds only the synced columns: a column the mapping never sends
    /// is left out, so the site's own reading and the source's agree.
    #[test]
    fn a_versions_checksum_leaves_out_the_columns_never_sent() {
        let column = |n: &str| ColumnSchema {
            name: n.into(),
            type_name: "text".into(),
        };
        let full = TableSchema {
            table: TableName::new("public", "people"),
            columns: vec![column("id"), column("secret"), column("email")],
            key: vec![0],
        };
        let read_back = TableSchema {
            table: full.table.clone(),
            columns: vec![column("email"), column("id")],
            key: vec![1],
        };
        let text = |s: &str| Some(Value::Text(s.into()));
        let row = Row(vec![text("1"), text("only here"), text("Ann@Example.ORG")]);
        let local = Row(vec![text("Ann@Example.ORG"), text("1")]);
        let whole = row_checksum(&full, &row).unwrap();
        let mut stamping = Stamping::default();
        let crc = |s: &Stamping| version_crc(whole, &full, &row, s.unsynced(&full));
        assert_eq!(crc(&stamping), whole);
        assert_ne!(crc(&stamping), row_checksum(&read_back, &local).unwrap());
        stamping.unsynced_columns.insert(
            "people".into(),
            ["secret".to_string()].into_iter().collect(),
        );
        assert_eq!(crc(&stamping), row_checksum(&read_back, &local).unwrap());
    }
}
