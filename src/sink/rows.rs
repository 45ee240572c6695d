//! Small facts about a row change that every target needs: which columns it
//! writes, its key's identity and how to name it, and how a target row with
//! no change stream behind it counts (seeded).

use crate::canonical::{RowChange, Value};
use crate::sink::SinkError;

/// How a target row was last written, given when the target's changes to
/// the table began to be captured for the link (`capture_start`, the site's
/// clock in µs; `None`: not known, as for links set up before duplex
/// recorded it). A row a user wrote before then, that duplex never wrote
/// here (no marker), is a seeded version that no change stream carries.
pub(crate) fn seeded(
    stamp: crate::conflict::Stamp,
    has_marker: bool,
    capture_start: Option<i64>,
) -> crate::conflict::Stamp {
    use crate::conflict::Stamp;
    match (stamp, capture_start) {
        // No version time: written before commit timestamps were on (a
        // PostgreSQL site needs them on while duplex captures it).
        (Stamp::User { t }, Some(start)) if !has_marker && t.is_none_or(|t| t < start) => {
            Stamp::Seed { t }
        }
        (stamp, _) => stamp,
    }
}

/// Indexes of the columns a change writes: those present in its after image
/// (an unchanged TOAST value is absent and must not be written).
pub(crate) fn shape_of(change: &RowChange) -> Vec<usize> {
    match &change.after {
        Some(after) => after
            .0
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    }
}

/// The row's key for messages: `id=7` or `(a=1, b=x)`.
pub(crate) fn describe_key(change: &RowChange) -> String {
    let image = change.before.as_ref().or(change.after.as_ref());
    let parts: Vec<String> = change
        .table
        .key
        .iter()
        .map(|&i| {
            let v = image.and_then(|r| r.0.get(i)).and_then(|v| v.as_ref());
            // Stored in the control schema's text columns: no NUL character.
            let shown = v
                .map(|v| match v {
                    crate::canonical::Value::Text(s) => {
                        crate::journal::images::storable_text(s).into_owned()
                    }
                    v => crate::pg::text_encode::encode_text(v)
                        .unwrap_or_else(|_| format!("<{}>", v.kind_name())),
                })
                .unwrap_or_else(|| "?".into());
            format!("{}={}", change.table.columns[i].name, shown)
        })
        .collect();
    parts.join(", ")
}

/// The values of the row's primary key that identify it on the target:
/// the old key (without an old image the key did not change), each with its
/// column index. A key value that is missing or NULL would match no row: the
/// change would silently not happen, so it is refused instead.
pub(crate) fn identifying_key(change: &RowChange) -> Result<Vec<(usize, &Value)>, SinkError> {
    let schema = &change.table;
    let image = change.before.as_ref().or(change.after.as_ref());
    schema
        .key
        .iter()
        .map(|&i| match image.and_then(|r| r.0.get(i)).and_then(|v| v.as_ref()) {
            Some(v) if !v.is_null() => Ok((i, v)),
            _ => Err(SinkError::Value {
                table: schema.table.clone(),
                key: describe_key(change),
                column: schema.columns[i].name.clone(),
                reason: "the change carries no value for this primary-key column (check the source table's replica identity, or its binlog row image)".into(),
            }),
        })
        .collect()
}

/// Replace each value of the change's images by `stored(column index,
/// value)` where that gives one (the target's own representation; see
/// `Target::normalize`).
pub(crate) fn store_values(
    change: &mut RowChange,
    stored: impl Fn(usize, &Value) -> Option<Value>,
) {
    for image in [change.before.as_mut(), change.after.as_mut()]
        .into_iter()
        .flatten()
    {
        for (i, slot) in image.0.iter_mut().enumerate() {
            if let Some(v) = slot.as_mut() {
                if let Some(s) = stored(i, v) {
                    *v = s;
                }
            }
        }
    }
}

/// Rows are matched by the source's key columns: the target's primary key
/// (`target_key`, its column names in order) must be the same.
pub(crate) fn same_key(
    schema: &crate::canonical::TableSchema,
    target_key: &[String],
) -> Result<(), SinkError> {
    let source_key: Vec<&str> = schema
        .key
        .iter()
        .map(|&i| schema.columns[i].name.as_str())
        .collect();
    if source_key != target_key.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(SinkError::KeyMismatch {
            table: schema.table.clone(),
            source_key: source_key.join(", "),
            target_key: target_key.join(", "),
        });
    }
    Ok(())
}
