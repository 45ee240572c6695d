//! The version a source stamps on each row change it passes on, the same for
//! both engines: the marker of a user's write, or of a row duplex itself wrote
//! that the applier flagged to flow back.

use std::collections::HashSet;

use crate::canonical::encode::row_checksum;
use crate::canonical::{Op, Row, SourcePosition, TableSchema};
use crate::marker::{Dot, Marker};

/// The marker of a user's write: `dot` (this site's event) added to the version
/// the row carried (the marker text of its new image, else of its old one), the
/// new row's checksum (0, "no checksum", for a delete or a row not known whole),
/// and for a table under field-level merge (named in `field_merge_tables`) the
/// columns' tags (see `conflict::column_tags`). `after`: the new row, whole.
pub(crate) fn user_write(
    schema: &TableSchema,
    site_id: u32,
    dot: Dot,
    after_text: Option<&str>,
    before_text: Option<&str>,
    after: Option<&Row>,
    field_merge_tables: &HashSet<String>,
) -> Marker {
    let crc = after.and_then(|a| row_checksum(schema, a)).unwrap_or(0);
    // The version is known by its time and its content on its own site (a
    // delete's content: no row).
    let dot = dot.with_crc(if after.is_none() {
        crate::marker::DELETED_ROW_CRC
    } else {
        crc
    });
    let prior_text = after_text.or(before_text);
    let mut marker = Marker::for_user_write(prior_text, None, site_id, dot, crc, &schema.table);
    if field_merge_tables.contains(&schema.table.name) {
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
