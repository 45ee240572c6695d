//! Row images as the journal shows them to a DBA: JSON trees every control
//! schema can store (no NUL, long strings abridged), values in their
//! PostgreSQL text form where JSON cannot hold them exactly.

use serde_json::json;

use crate::canonical::{Row, TableSchema, Value};

/// Longest string shown in the readable images (`change`, the conflicts'
/// versions): the exact value, however large, is kept in `change_exact`
/// (`incoming_change`).
const READABLE_MAX_BYTES: usize = 64 * 1024;

/// Text for a control-schema text column: PostgreSQL's `text` refuses the NUL
/// character, shown instead as U+2400 (`␀`).
pub(crate) fn storable_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{2400}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), saying so.
pub(crate) fn abridge(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} bytes in all]", &s[..end], s.len())
}

/// A JSON tree for a DBA to read that every control schema can store: NUL
/// characters (which `jsonb` refuses) shown as `␀`, and strings longer than
/// [`READABLE_MAX_BYTES`] abridged.
pub(crate) fn readable(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::String(s) => J::String(abridge(&storable_text(&s), READABLE_MAX_BYTES)),
        J::Array(items) => J::Array(items.into_iter().map(readable).collect()),
        J::Object(map) => J::Object(
            map.into_iter()
                .map(|(k, v)| (storable_text(&k).into_owned(), readable(v)))
                .collect(),
        ),
        other => other,
    }
}

/// A row image as `{column: {"type": kind, "value": ...}}`; columns the source
/// did not send (unchanged TOAST) are left out.
pub(crate) fn image_json(schema: &TableSchema, row: &Row) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (i, v) in row.0.iter().enumerate() {
        if let (Some(col), Some(v)) = (schema.columns.get(i), v) {
            map.insert(
                col.name.clone(),
                json!({ "type": v.kind_name(), "value": value_json(v) }),
            );
        }
    }
    serde_json::Value::Object(map)
}

/// A value for a DBA to read: numbers as numbers where JSON can hold them
/// exactly, everything else as its PostgreSQL text form.
fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Text(s) | Value::Enum(s) => json!(s),
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(value_json).collect()),
        Value::Time(us) => json!(us),
        other => match crate::pg::text_encode::encode_text(other) {
            Ok(text) => json!(text),
            Err(_) => json!(format!("{other:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{ColumnSchema, TableName};

    #[test]
    fn readable_images_hold_no_nul_and_stay_small() {
        let schema = TableSchema {
            table: TableName::new("app", "t"),
            columns: ["id", "v", "j", "b"]
                .iter()
                .map(|n| ColumnSchema {
                    name: (*n).into(),
                    type_name: "text".into(),
                })
                .collect(),
            key: vec![0],
        };
        let row = Row(vec![
            Some(Value::Text("k\0".into())),
            Some(Value::Text(format!("{}\0", "é".repeat(100_000)))),
            Some(Value::Json(r#"{"a\u0000": "\u0000"}"#.into())),
            Some(Value::Bytes(vec![0; 100_000])),
        ]);
        let text = readable(image_json(&schema, &row)).to_string();
        let tree: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        fn nul(v: &serde_json::Value) -> bool {
            match v {
                serde_json::Value::String(s) => s.contains('\0'),
                serde_json::Value::Array(a) => a.iter().any(nul),
                serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || nul(v)),
                _ => false,
            }
        }
        assert!(!nul(&tree), "{text}");
        assert!(text.len() < 3 * READABLE_MAX_BYTES, "{}", text.len());
        assert!(text.contains("k\u{2400}"), "{text}");
        assert!(text.contains("bytes in all]"), "{text}");
        assert_eq!(storable_text("a\0b"), "a\u{2400}b");
        assert_eq!(abridge("ééé", 3), "é... [6 bytes in all]");
    }
}
