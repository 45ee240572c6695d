//! Rows events to canonical row changes: table maps (which also mark duplex's own
//! transactions), the table's description from the catalog, and each row image
//! decoded and stamped with its version.

use super::binlog::table_map_column_names;
use super::MysqlSource;
use crate::canonical::{ColumnSchema, Op, Row, SourcePosition, TableName, TableSchema, Value};
use crate::mysql::column::MysqlColumn;
use crate::mysql::decode::decode_binlog_value;
use crate::mysql::rows_event::{read_rows_event, BinlogImage};
use crate::source::{stamp, SourceError};
use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_async::prelude::Queryable;
use std::sync::Arc;

pub(super) struct TableInfo {
    pub(super) schema: Arc<TableSchema>,
    pub(super) columns: Vec<MysqlColumn>,
    /// Binlog column index -> canonical row index (`None` for the marker column).
    pub(super) row_index: Vec<Option<usize>>,
    pub(super) marker_index: Option<usize>,
    pub(super) stamp_index: Option<usize>,
}

impl MysqlSource {
    pub(super) fn table_map(&mut self, t: &TableMapEvent<'_>) {
        let is_marker = t.database_name() == self.spec.endpoint.database()
            && t.table_name() == self.spec.marker_table;
        if let Some(txn) = self.txn.as_mut() {
            if is_marker && !txn.seen_table {
                txn.echo = true;
            }
            txn.seen_table = true;
        }
    }

    pub(super) async fn table_info(&mut self, table: &str) -> Result<Arc<TableInfo>, SourceError> {
        if let Some(t) = self.tables.get(table) {
            return Ok(t.clone());
        }
        let db = self.spec.endpoint.database().to_string();
        let name = TableName::new(db.clone(), table);
        let columns = MysqlColumn::load_table(&mut self.meta, &db, table).await?;
        let key_names: Vec<String> = self
            .meta
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (db.as_str(), table),
            )
            .await?;
        let info = Arc::new(self.layout(name, columns, &key_names, &[])?);
        self.tables.insert(table.to_string(), info.clone());
        Ok(info)
    }

    /// A table's description for the columns `columns`, in binlog order;
    /// those `dropped` names are read past, not kept (see
    /// [`Self::earlier_layout`]).
    fn layout(
        &self,
        name: TableName,
        columns: Vec<MysqlColumn>,
        key_names: &[String],
        dropped: &[String],
    ) -> Result<TableInfo, SourceError> {
        let mut schema_columns = Vec::new();
        let mut row_index = Vec::new();
        let mut marker_index = None;
        let mut stamp_index = None;
        for (i, c) in columns.iter().enumerate() {
            if dropped.contains(&c.name) {
                row_index.push(None);
            } else if c.name == self.spec.marker_column {
                marker_index = Some(i);
                row_index.push(None);
            } else if c.name == self.spec.stamp_column {
                stamp_index = Some(i);
                row_index.push(None);
            } else {
                row_index.push(Some(schema_columns.len()));
                schema_columns.push(ColumnSchema {
                    name: c.name.clone(),
                    type_name: c.column_type.clone(),
                });
            }
        }
        let key = key_names
            .iter()
            .map(|k| schema_columns.iter().position(|c| &c.name == k))
            .collect::<Option<Vec<_>>>()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| SourceError::Table {
                table: name.clone(),
                reason: "has no primary key; duplex syncs only tables with a primary key".into(),
            })?;
        Ok(TableInfo {
            schema: Arc::new(TableSchema {
                table: name,
                columns: schema_columns,
                key,
            }),
            columns,
            row_index,
            marker_index,
            stamp_index,
        })
    }

    /// The table as an event written before a DDL since has it: the
    /// columns the table map names, each as the catalog describes it now.
    /// A column gone from the catalog since (dropped) is read past: its
    /// type is not known any more, and the table no longer has it. `None`
    /// when the key is among those.
    fn earlier_layout(&self, now: &TableInfo, names: &[String]) -> Option<TableInfo> {
        let mut dropped = Vec::new();
        let columns = names
            .iter()
            .map(|n| match now.columns.iter().find(|c| &c.name == n) {
                Some(c) => c.clone(),
                None => {
                    dropped.push(n.clone());
                    MysqlColumn {
                        name: n.clone(),
                        ..now.columns.first().cloned().unwrap_or_default()
                    }
                }
            })
            .collect::<Vec<_>>();
        let key: Vec<String> = now
            .schema
            .key
            .iter()
            .map(|&k| now.schema.columns[k].name.clone())
            .collect();
        // Columns both gone and new since: perhaps one renamed, whose
        // values must not be dropped. The table waits for an operator.
        if !dropped.is_empty() && now.columns.iter().any(|c| !names.contains(&c.name)) {
            return None;
        }
        if !dropped.is_empty() {
            tracing::warn!(table = %now.schema.table, dropped = ?dropped, "rows written before columns were dropped are read without them");
        }
        self.layout(now.schema.table.clone(), columns, &key, &dropped)
            .ok()
    }

    pub(super) async fn rows(
        &mut self,
        rows: &RowsEventData<'_>,
        log_pos: u32,
    ) -> Result<(), SourceError> {
        let Some(txn) = self.txn.as_ref() else {
            // Rows outside any transaction would be applied nowhere: refuse.
            return Err(SourceError::Event {
                position: self.position(log_pos),
                source: std::io::Error::other(
                    "a rows event outside a transaction (no GTID/BEGIN before it)",
                ),
            });
        };
        let (echo, position, commit_time_us) =
            (txn.echo, txn.meta.commit_position, txn.meta.commit_time_us);
        let Some(tme) = self
            .stream
            .get_tme(rows.table_id())
            .map(|t| t.clone().into_owned())
        else {
            return Err(SourceError::Event {
                position: self.position(log_pos),
                source: std::io::Error::other(format!(
                    "rows event for unknown table id {}",
                    rows.table_id()
                )),
            });
        };
        let table = tme.table_name().to_string();
        if tme.database_name() != self.spec.endpoint.database()
            || !self.spec.tables.contains(&table)
        {
            return Ok(());
        }
        if echo {
            if let Some(t) = self.txn.as_mut() {
                t.echo_rows = true;
            }
        }
        let mut info = self.table_info(&table).await?;
        // Values are matched to columns by position: the layout duplex holds
        // must be the one the event was written with, or values would land in
        // the wrong columns. The table map names its columns (full metadata).
        let binlog_names = table_map_column_names(&tme);
        let layout_matches = |info: &TableInfo| match &binlog_names {
            Some(names) => {
                names.len() == info.columns.len()
                    && names.iter().zip(&info.columns).all(|(n, c)| n == &c.name)
            }
            None => usize::try_from(tme.columns_count()).ok() == Some(info.columns.len()),
        };
        if !layout_matches(&info) {
            self.tables.remove(&table);
            info = self.table_info(&table).await?;
            // An event from before a column was added (the reader is behind
            // the DDL: a restart, a lag): read it with the columns it has.
            let earlier = binlog_names
                .as_deref()
                .and_then(|names| self.earlier_layout(&info, names));
            if let Some(earlier) = earlier {
                info = Arc::new(earlier);
            }
            if !layout_matches(&info) {
                return Err(SourceError::Table {
                    table: info.schema.table.clone(),
                    reason: format!(
                        "the binlog at {position} has columns {:?} but the table now has {:?} (DDL since then); duplex will not guess which value belongs where: resync the table",
                        binlog_names.unwrap_or_default(),
                        info.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>()
                    ),
                });
            }
        }
        let op = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Insert,
            RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => Op::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(SourceError::Table {
                    table: info.schema.table.clone(),
                    reason: "partial JSON update events (binlog_row_value_options=PARTIAL_JSON) are not supported; turn that option off".into(),
                })
            }
        };
        // Through the codec's reader: it works around mysql_common's decoding of
        // negative fractional TIME values.
        let images = read_rows_event(&tme, rows).map_err(|e| SourceError::BadValue {
            table: info.schema.table.clone(),
            column: String::new(),
            position,
            reason: e.to_string(),
        })?;
        for (before, after) in images {
            if echo {
                // duplex's own write: almost always it stays here. Only its
                // marker is read to tell; the row is decoded only for one
                // that flows back.
                let text = |image: &Option<BinlogImage>| {
                    image
                        .as_ref()
                        .and_then(|r| self.marker_of(&info, r, position).transpose())
                        .transpose()
                };
                let (after_text, before_text) = (text(&after)?, text(&before)?);
                if stamp::forwarded(
                    op,
                    after_text.as_deref(),
                    before_text.as_deref(),
                    self.spec.site_id,
                    position,
                )
                .is_none()
                {
                    continue;
                }
            }
            let before = before
                .map(|r| self.decode_row(&info, &r, position))
                .transpose()?;
            let after = after
                .map(|r| self.decode_row(&info, &r, position))
                .transpose()?;
            let after_text = after.as_ref().and_then(|a| a.1.as_deref());
            let before_text = before.as_ref().and_then(|b| b.1.as_deref());
            let marker = if echo {
                // duplex's own write: passed on only when the applier flagged
                // it to flow back.
                match stamp::forwarded(op, after_text, before_text, self.spec.site_id, position) {
                    Some(m) => m,
                    None => continue,
                }
            } else {
                // The version time: the stamp column the server set on this
                // write (what the site reads back from the row). A delete has
                // no new row: it takes the event's time, which the binlog
                // keeps in whole seconds, but never before the version it
                // deletes (its stamp, in microseconds). Else a row written
                // and deleted within one second would be deleted by a
                // version older than itself: the peer would keep the row
                // (a stale change) without a word.
                let t = match (&after, &before) {
                    (Some(a), _) => a.2.unwrap_or(commit_time_us),
                    (None, Some(b)) => {
                        b.2.map_or(commit_time_us, |s| commit_time_us.max(s.saturating_add(1)))
                    }
                    (None, None) => commit_time_us,
                };
                let dot = crate::marker::Dot::at(position.counter(), t);
                stamp::user_write(
                    &info.schema,
                    self.spec.site_id,
                    dot,
                    after_text,
                    before_text,
                    after.as_ref().map(|a| &a.0),
                    &self.spec.stamping,
                )
            };
            if let Some(t) = self.txn.as_mut() {
                if self.ready.begin_once(&mut t.begun, &t.meta) {
                    tracing::debug!(position = %t.meta.commit_position, table = %info.schema.table, "transaction from the binlog");
                }
            }
            self.ready.change(
                info.schema.clone(),
                op,
                before.map(|b| b.0),
                after.map(|a| a.0),
                marker,
            );
        }
        Ok(())
    }

    /// The marker column's text in a row image, the rest left undecoded.
    fn marker_of(
        &self,
        info: &TableInfo,
        row: &BinlogImage,
        position: SourcePosition,
    ) -> Result<Option<String>, SourceError> {
        let Some(i) = info.marker_index else {
            return Ok(None);
        };
        let (Some(col), Some(Some(raw))) = (info.columns.get(i), row.get(i)) else {
            return Ok(None);
        };
        Ok(marker_text(decode_column(info, col, raw, position)?))
    }

    fn decode_row(
        &self,
        info: &TableInfo,
        row: &BinlogImage,
        position: SourcePosition,
    ) -> Result<(Row, Option<String>, Option<i64>), SourceError> {
        let mut values: Vec<Option<Value>> = vec![None; info.schema.columns.len()];
        let mut marker = None;
        let mut stamp = None;
        for (i, col) in info.columns.iter().enumerate() {
            let Some(Some(raw)) = row.get(i) else {
                continue;
            };
            let kept = info.row_index.get(i).copied().flatten().is_some()
                || Some(i) == info.marker_index
                || Some(i) == info.stamp_index;
            if !kept {
                // A column dropped since the event was written.
                continue;
            }
            let value = decode_column(info, col, raw, position)?;
            match info.row_index.get(i).copied().flatten() {
                Some(j) => values[j] = Some(value),
                None if Some(i) == info.marker_index => marker = marker_text(value),
                None if Some(i) == info.stamp_index => {
                    stamp = match value {
                        Value::TimestampTz(crate::canonical::Timestamp::Micros(us))
                        | Value::Timestamp(crate::canonical::Timestamp::Micros(us)) => Some(us),
                        _ => None,
                    }
                }
                None => {}
            }
        }
        Ok((Row(values), marker, stamp))
    }
}

/// One column of a binlog row image, decoded; a value it cannot hold names
/// the table, column and position.
fn decode_column(
    info: &TableInfo,
    col: &MysqlColumn,
    raw: &mysql_async::binlog::value::BinlogValue<'_>,
    position: SourcePosition,
) -> Result<Value, SourceError> {
    decode_binlog_value(col, raw).map_err(|e| SourceError::BadValue {
        table: info.schema.table.clone(),
        column: col.name.clone(),
        position,
        reason: e.to_string(),
    })
}

/// The marker column's value as its JSON text.
fn marker_text(value: Value) -> Option<String> {
    match value {
        Value::Json(t) | Value::Text(t) => Some(t),
        _ => None,
    }
}
