//! The source site's catalog as the applier reads it: which columns a table
//! has there now. A table held for its shape is released once the target
//! fits the source's table as it is now, not only as its last change was:
//! a column dropped on the source since (the DBA made the sites match) is
//! no longer waited for, even before the source writes the table again. A
//! held or retried change that still carries such a column is applied
//! without it.
//!
//! Read on a connection of its own, opened when first needed; a source that
//! cannot be reached only means its catalog is not known (nothing stops).

use crate::canonical::TableName;
use crate::mysql::MysqlEndpoint;
use crate::pg::PgEndpoint;
use crate::source::SourceSpec;

/// How to read the source's catalog, and duplex's own columns there.
// Built once per direction start; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SourceCatalogSpec {
    Pg {
        endpoint: PgEndpoint,
        marker_column: String,
    },
    Mysql {
        endpoint: MysqlEndpoint,
        marker_column: String,
        stamp_column: String,
    },
}

impl SourceCatalogSpec {
    pub fn of(source: &SourceSpec) -> SourceCatalogSpec {
        match source {
            SourceSpec::Pg(s) => SourceCatalogSpec::Pg {
                endpoint: s.endpoint.clone(),
                marker_column: s.marker_column.clone(),
            },
            SourceSpec::Mysql(s) => SourceCatalogSpec::Mysql {
                endpoint: s.endpoint.clone(),
                marker_column: s.marker_column.clone(),
                stamp_column: s.stamp_column.clone(),
            },
        }
    }
}

enum Session {
    Pg(tokio_postgres::Client),
    Mysql(mysql_async::Conn),
}

/// The source's catalog, read on demand.
pub(crate) struct SourceCatalog {
    spec: SourceCatalogSpec,
    session: Option<Session>,
}

impl SourceCatalog {
    pub(crate) fn new(spec: SourceCatalogSpec) -> SourceCatalog {
        SourceCatalog {
            spec,
            session: None,
        }
    }

    /// The columns `table` has on the source now (duplex's own left out);
    /// `Ok(None)` when the source has no such table; `Err` with why when the
    /// catalog cannot be read now.
    pub(crate) async fn columns(
        &mut self,
        table: &TableName,
    ) -> Result<Option<Vec<String>>, String> {
        let read = self.read(table).await;
        if read.is_err() {
            // Connected again at the next call.
            self.session = None;
        }
        read
    }

    async fn read(&mut self, table: &TableName) -> Result<Option<Vec<String>>, String> {
        use mysql_async::prelude::Queryable;
        if self.session.is_none() {
            self.session = Some(match &self.spec {
                SourceCatalogSpec::Pg { endpoint, .. } => Session::Pg(
                    endpoint
                        .connect("duplex source catalog")
                        .await
                        .map_err(|e| e.to_string())?,
                ),
                SourceCatalogSpec::Mysql { endpoint, .. } => {
                    Session::Mysql(endpoint.connect().await.map_err(|e| e.to_string())?)
                }
            });
        }
        match (&self.spec, self.session.as_mut()) {
            (SourceCatalogSpec::Pg { marker_column, .. }, Some(Session::Pg(client))) => {
                let row = client
                    .query_one(
                        "SELECT to_regclass($1) IS NOT NULL,
                                array(SELECT attname::text FROM pg_attribute
                                       WHERE attrelid = to_regclass($1) AND attnum > 0
                                         AND NOT attisdropped AND attname <> $2
                                       ORDER BY attnum)",
                        &[&crate::pg::quote_table(table), marker_column],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(row.get::<_, bool>(0).then(|| row.get(1)))
            }
            (
                SourceCatalogSpec::Mysql {
                    endpoint,
                    marker_column,
                    stamp_column,
                },
                Some(Session::Mysql(conn)),
            ) => {
                let names: Vec<String> = conn
                    .exec(
                        "SELECT COLUMN_NAME FROM information_schema.COLUMNS
                          WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                        (endpoint.database(), table.name.as_str()),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((!names.is_empty()).then(|| {
                    names
                        .into_iter()
                        .filter(|n| n != marker_column && n != stamp_column)
                        .collect()
                }))
            }
            _ => Err("no session".into()),
        }
    }
}
