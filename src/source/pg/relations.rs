//! What a Relation message describes, completed from the catalog: each column's
//! type class, the primary key, and where the marker column is.

use super::{pgoutput, PgSource};
use crate::canonical::{ColumnSchema, TableName, TableSchema};
use crate::pg::type_class::PgTypeClass;
use crate::source::SourceError;
use std::sync::Arc;

pub(super) struct ColumnInfo {
    pub(super) class: PgTypeClass,
    /// Index in the canonical row, or `None` for the marker column.
    pub(super) row_index: Option<usize>,
}

pub(super) struct RelationInfo {
    pub(super) schema: Arc<TableSchema>,
    pub(super) columns: Vec<ColumnInfo>,
    pub(super) marker_index: Option<usize>,
}

impl PgSource {
    async fn type_class(&mut self, oid: u32) -> Result<PgTypeClass, SourceError> {
        crate::pg::catalog::resolve_type_class(&self.catalog, oid, &mut self.types)
            .await
            .map_err(|source| SourceError::Catalog {
                what: format!("type oid {oid}"),
                source,
            })
    }

    pub(super) async fn describe_relation(
        &mut self,
        oid: u32,
        table: TableName,
        columns: &[pgoutput::RelationColumn],
    ) -> Result<RelationInfo, SourceError> {
        let key_names = crate::pg::primary_key_columns(&self.catalog, oid)
            .await
            .map_err(|source| SourceError::Catalog {
                what: format!("primary key of {table}"),
                source,
            })?;
        // The columns' type names as the catalog spells them, for messages
        // (a column the target lacks is named with its type).
        let type_names: std::collections::HashMap<String, String> = self
            .catalog
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
                &[&oid],
            )
            .await
            .map_err(|source| SourceError::Catalog {
                what: format!("column types of {table}"),
                source,
            })?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut infos = Vec::with_capacity(columns.len());
        let mut schema_columns = Vec::with_capacity(columns.len());
        let mut marker_index = None;
        for (i, c) in columns.iter().enumerate() {
            let class = self.type_class(c.type_oid).await?;
            if c.name == self.spec.marker_column {
                marker_index = Some(i);
                infos.push(ColumnInfo {
                    class,
                    row_index: None,
                });
                continue;
            }
            infos.push(ColumnInfo {
                class,
                row_index: Some(schema_columns.len()),
            });
            schema_columns.push(ColumnSchema {
                name: c.name.clone(),
                type_name: type_names
                    .get(&c.name)
                    .cloned()
                    .unwrap_or_else(|| format!("oid {}", c.type_oid)),
            });
        }
        let key = key_names
            .iter()
            .map(|k| {
                schema_columns
                    .iter()
                    .position(|c| &c.name == k)
                    .ok_or_else(|| SourceError::Table {
                        table: table.clone(),
                        reason: format!("primary key column {k} is not in the replication stream"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if key.is_empty() {
            return Err(SourceError::Table {
                table,
                reason: "has no primary key; duplex syncs only tables with a primary key".into(),
            });
        }
        Ok(RelationInfo {
            schema: Arc::new(TableSchema {
                table,
                columns: schema_columns,
                key,
            }),
            columns: infos,
            marker_index,
        })
    }
}
