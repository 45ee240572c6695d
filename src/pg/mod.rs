//! PostgreSQL knowledge shared by the source and the sink.

pub mod connect;
pub mod types;

pub use connect::{quote_ident, quote_table, ConnectError, PgEndpoint};

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
