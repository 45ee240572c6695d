//! Catalog queries the codec and its callers need: a type's class from `pg_type`
//! (domains, arrays, enums) and a table's primary-key columns. The only part of `pg`'s
//! value knowledge that talks to a server.

use crate::pg::type_class::{classify_builtin, PgTypeClass};

/// The class of a type from the catalog: built-in types directly, domains
/// followed to their base type, arrays to their element type, enums by kind.
/// Results are cached in `cache`.
pub async fn resolve_type_class(
    client: &tokio_postgres::Client,
    oid: u32,
    cache: &mut std::collections::HashMap<u32, PgTypeClass>,
) -> Result<PgTypeClass, tokio_postgres::Error> {
    if let Some(c) = classify_builtin(oid) {
        return Ok(c);
    }
    if let Some(c) = cache.get(&oid) {
        return Ok(c.clone());
    }
    let mut current = oid;
    let mut array_depth = 0usize;
    let class = loop {
        if let Some(c) = classify_builtin(current) {
            break c;
        }
        let row = client
            .query_opt(
                "SELECT typtype::text, typelem, typbasetype, typcategory::text FROM pg_type WHERE oid = $1",
                &[&current],
            )
            .await?;
        let Some(row) = row else {
            break PgTypeClass::Other;
        };
        let typtype: String = row.get(0);
        let elem: u32 = row.get(1);
        let base: u32 = row.get(2);
        let category: String = row.get(3);
        match (typtype.as_str(), category.as_str()) {
            ("e", _) => break PgTypeClass::Enum,
            ("d", _) => current = base,
            (_, "A") if elem != 0 => {
                array_depth += 1;
                current = elem;
            }
            _ => break PgTypeClass::Other,
        }
    };
    let mut class = class;
    for _ in 0..array_depth {
        class = PgTypeClass::Array(Box::new(class));
    }
    cache.insert(oid, class.clone());
    Ok(class)
}

/// The primary-key column names of the table with `oid`, in key order; empty
/// when the table has none. Shared by the source (which builds keys from it)
/// and the sink (which checks both sides agree).
pub async fn primary_key_columns(
    client: &tokio_postgres::Client,
    oid: u32,
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT a.attname::text FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
              WHERE i.indrelid = $1 AND i.indisprimary
              ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
