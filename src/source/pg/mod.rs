//! PostgreSQL source: reads a logical replication slot (pgoutput) and turns it
//! into the canonical event stream.
//!
//! Loop prevention happens here: a transaction that carries one of duplex's
//! replication origins (pgoutput's Origin message) was written by duplex's own
//! applier and is dropped whole; only its end position is passed on, so the slot
//! can still advance past it.

pub mod pgoutput;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio_postgres::Client;

use crate::canonical::encode::row_checksum;
use crate::canonical::{
    ChangeEvent, ColumnSchema, Op, Row, RowChange, SourcePosition, TableName, TableSchema, TxnMeta,
    Value,
};
use crate::control::model::DUPLEX_ORIGIN_PREFIX;
use crate::marker::Marker;
use crate::pg::types::{decode_text, PgTypeClass};
use crate::pg::PgEndpoint;
use crate::source::ConfirmedPosition;
use crate::stats::DirectionStats;
use pgoutput::{OldImageKind, PgOutputMessage, TupleValue, PG_EPOCH_OFFSET_US};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("replication stream: {0}")]
    Stream(#[from] pgwire_replication::PgWireError),
    #[error(transparent)]
    Protocol(#[from] pgoutput::PgOutputError),
    #[error("catalog lookup ({what}): {source}")]
    Catalog {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("change for relation oid {0} arrived before its Relation message")]
    UnknownRelation(u32),
    #[error("table {table} column {column} at {position}: {reason}")]
    BadValue {
        table: TableName,
        column: String,
        position: SourcePosition,
        reason: String,
    },
    #[error("table {table}: {reason}")]
    Table { table: TableName, reason: String },
}

/// What the source must know to read one site's slot for one link.
#[derive(Debug, Clone)]
pub struct PgSourceSpec {
    /// This site's id: its entry in every version vector it advances.
    pub site_id: u32,
    pub endpoint: PgEndpoint,
    pub slot: String,
    pub publication: String,
    pub marker_column: String,
    /// Where to start: the position the peer has durably applied (its
    /// replication origin progress), or `None` for the slot's own position.
    pub start: Option<SourcePosition>,
    /// Events buffered between the network reader and the decoder.
    pub buffer_events: usize,
    /// Tables (by name) under field-level merge: their versions carry column
    /// tags (see `conflict::column_tags`).
    pub field_merge_tables: std::collections::HashSet<String>,
    /// The link's tables that are synced. The publication holds exactly
    /// these; a change of any other relation the stream carries all the same
    /// (published before the table was refused or left the link, or a table
    /// a publication duplex may not change holds) is skipped.
    pub tables: std::collections::HashSet<TableName>,
}

struct ColumnInfo {
    class: PgTypeClass,
    /// Index in the canonical row, or `None` for the marker column.
    row_index: Option<usize>,
}

struct RelationInfo {
    schema: Arc<TableSchema>,
    columns: Vec<ColumnInfo>,
    marker_index: Option<usize>,
}

struct OpenTxn {
    meta: TxnMeta,
    /// Written by duplex's applier: drop it.
    echo: bool,
    /// `Begin` was handed on (the transaction has at least one change for us).
    begun: bool,
}

/// Reads a PostgreSQL slot and yields [`ChangeEvent`]s.
pub struct PgSource {
    spec: PgSourceSpec,
    client: ReplicationClient,
    catalog: Client,
    relations: HashMap<u32, RelationInfo>,
    /// Relations the stream described that the link does not sync.
    skipped: std::collections::HashSet<u32>,
    types: HashMap<u32, PgTypeClass>,
    txn: Option<OpenTxn>,
    ready: VecDeque<ChangeEvent>,
    stats: Arc<DirectionStats>,
    confirmed: Arc<ConfirmedPosition>,
}

impl PgSource {
    pub async fn connect(
        spec: PgSourceSpec,
        stats: Arc<DirectionStats>,
        confirmed: Arc<ConfirmedPosition>,
    ) -> Result<PgSource, crate::Error> {
        let catalog = spec.endpoint.connect("duplex catalog").await?;
        let start = spec
            .start
            .map(|p| Lsn::from_u64(p.counter()))
            .unwrap_or(Lsn::ZERO);
        let mut config = spec
            .endpoint
            .replication_config(&spec.slot, &spec.publication);
        config = config
            .with_start_lsn(start)
            .with_ack_lsn(start)
            .with_buffer_size(spec.buffer_events)
            .with_status_interval(std::time::Duration::from_secs(1))
            .with_wakeup_interval(std::time::Duration::from_secs(5))
            .with_application_name(format!("duplex {}", spec.slot))
            // Pin how the walsender renders values, so the decoder sees one format.
            .with_options("-c DateStyle=ISO,MDY -c IntervalStyle=iso_8601 -c TimeZone=UTC -c extra_float_digits=1 -c bytea_output=hex");
        let client = ReplicationClient::connect(config).await.map_err(|e| {
            crate::Error::source_error(&spec.endpoint.site_name, SourceError::Stream(e))
        })?;
        Ok(PgSource {
            spec,
            client,
            catalog,
            relations: HashMap::new(),
            skipped: std::collections::HashSet::new(),
            types: HashMap::new(),
            txn: None,
            ready: VecDeque::new(),
            stats,
            confirmed,
        })
    }

    pub fn site_name(&self) -> &str {
        &self.spec.endpoint.site_name
    }

    /// Wait for the next replication message, confirming committed positions
    /// to the source meanwhile. Only the channel receive is raced: it is
    /// cancel-safe, whereas decoding (which may query the catalog) must never be
    /// interrupted half-way.
    async fn recv(&mut self) -> Result<Option<ReplicationEvent>, SourceError> {
        loop {
            let lsn = self.confirmed.get();
            if lsn > 0 {
                self.client.update_applied_lsn(Lsn::from_u64(lsn));
            }
            if !self.client.is_running() {
                // The stream ended: this receive collects the worker's error,
                // which an interrupted wait would lose.
                return Ok(self.client.recv().await?);
            }
            tokio::select! {
                ev = self.client.recv() => return Ok(ev?),
                _ = self.confirmed.changed.notified() => {}
            }
        }
    }

    /// The next event, or `None` when the stream ended normally. Not
    /// cancel-safe: callers await it to completion.
    pub async fn next_event(&mut self) -> Result<Option<ChangeEvent>, SourceError> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(ev));
            }
            let Some(ev) = self.recv().await? else {
                return Ok(None);
            };
            match ev {
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    if self.txn.is_none() && !wal_end.is_zero() {
                        return Ok(Some(ChangeEvent::Progress {
                            position: SourcePosition::PgLsn(wal_end.as_u64()),
                        }));
                    }
                }
                ReplicationEvent::Begin {
                    final_lsn,
                    xid,
                    commit_time_micros,
                } => {
                    self.txn = Some(OpenTxn {
                        meta: TxnMeta {
                            commit_position: SourcePosition::PgLsn(final_lsn.as_u64()),
                            commit_time_us: commit_time_micros.saturating_add(PG_EPOCH_OFFSET_US),
                            xid: u64::from(xid),
                        },
                        echo: false,
                        begun: false,
                    });
                }
                ReplicationEvent::Commit { end_lsn, .. } => {
                    let position = SourcePosition::PgLsn(end_lsn.as_u64());
                    let txn = self.txn.take();
                    self.stats.set_source_position(position);
                    return Ok(Some(match txn {
                        Some(t) if t.begun => ChangeEvent::Commit {
                            end_position: position,
                        },
                        Some(t) => {
                            if t.echo {
                                self.stats
                                    .echo_txns_skipped
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            ChangeEvent::Progress { position }
                        }
                        None => ChangeEvent::Progress { position },
                    }));
                }
                ReplicationEvent::XLogData { data, .. } => self.handle_message(&data).await?,
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => return Ok(None),
            }
        }
    }

    async fn handle_message(&mut self, data: &Bytes) -> Result<(), SourceError> {
        let Some(msg) = pgoutput::decode(data)? else {
            return Ok(());
        };
        tracing::trace!(message = ?msg, "pgoutput");
        match msg {
            PgOutputMessage::Origin { name, .. } => {
                if let Some(t) = self.txn.as_mut() {
                    if name.starts_with(DUPLEX_ORIGIN_PREFIX) {
                        t.echo = true;
                    }
                }
            }
            PgOutputMessage::Relation {
                oid,
                namespace,
                name,
                columns,
                replica_identity,
            } => {
                let table = TableName::new(namespace, name);
                if !self.spec.tables.contains(&table) {
                    // Not a table of the link (any more): its changes are
                    // skipped, whatever its shape.
                    tracing::debug!(%table, "skipping the changes of a table the link does not sync");
                    self.relations.remove(&oid);
                    self.skipped.insert(oid);
                    return Ok(());
                }
                self.skipped.remove(&oid);
                // Keys come from the old image: it must hold the primary key
                // ('d' = default, the primary key) or the whole row ('f').
                if replica_identity != b'd' && replica_identity != b'f' {
                    return Err(SourceError::Table {
                        table,
                        reason: format!(
                            "replica identity is '{}'; duplex needs FULL or DEFAULT (the primary key): ALTER TABLE ... REPLICA IDENTITY FULL",
                            replica_identity as char
                        ),
                    });
                }
                let info = self.describe_relation(oid, table, &columns).await?;
                self.relations.insert(oid, info);
            }
            PgOutputMessage::Insert { relation, new } => {
                self.change(relation, Op::Insert, None, Some(new))?
            }
            PgOutputMessage::Update { relation, old, new } => {
                self.change(relation, Op::Update, old, Some(new))?
            }
            PgOutputMessage::Delete { relation, old } => {
                self.change(relation, Op::Delete, Some(old), None)?
            }
            PgOutputMessage::Truncate { relations, .. } => {
                let relations: Vec<u32> = relations
                    .into_iter()
                    .filter(|oid| !self.skipped.contains(oid))
                    .collect();
                if !relations.is_empty() && self.accept_change() {
                    let tables = relations
                        .iter()
                        .map(|oid| {
                            self.relations
                                .get(oid)
                                .map(|r| r.schema.clone())
                                .ok_or(SourceError::UnknownRelation(*oid))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    self.ready.push_back(ChangeEvent::Truncate(tables));
                }
            }
            // Begin/Commit arrive pre-parsed; Type is resolved through the catalog.
            PgOutputMessage::Begin { .. }
            | PgOutputMessage::Commit { .. }
            | PgOutputMessage::Type { .. }
            | PgOutputMessage::Message { .. } => {}
        }
        Ok(())
    }

    /// True when the current transaction's changes are to be passed on; emits
    /// the deferred `Begin` on the first one.
    fn accept_change(&mut self) -> bool {
        match self.txn.as_mut() {
            Some(t) if t.echo => false,
            Some(t) => {
                if !t.begun {
                    t.begun = true;
                    self.ready.push_back(ChangeEvent::Begin(t.meta.clone()));
                }
                true
            }
            // A change outside Begin/Commit cannot happen in protocol v1.
            None => false,
        }
    }

    fn change(
        &mut self,
        relation: u32,
        op: Op,
        old: Option<(OldImageKind, Vec<TupleValue>)>,
        new: Option<Vec<TupleValue>>,
    ) -> Result<(), SourceError> {
        let (position, commit_time_us, echo) = match &self.txn {
            Some(t) => (t.meta.commit_position, t.meta.commit_time_us, t.echo),
            None => return Ok(()),
        };
        if self.skipped.contains(&relation) {
            return Ok(());
        }
        if echo {
            return self.forwarded_change(relation, op, old, new, position);
        }
        if !self.accept_change() {
            return Ok(());
        }
        let rel = self
            .relations
            .get(&relation)
            .ok_or(SourceError::UnknownRelation(relation))?;

        let before = old
            .map(|(kind, t)| {
                decode_tuple(rel, &t, position).map(|(mut row, marker)| {
                    if kind == OldImageKind::Key {
                        // A key-only old image sends the other columns as NULL:
                        // they are unknown, not NULL.
                        for (i, v) in row.0.iter_mut().enumerate() {
                            if !rel.schema.key.contains(&i) {
                                *v = None;
                            }
                        }
                    }
                    (row, marker)
                })
            })
            .transpose()?;
        let after = new.map(|t| decode_tuple(rel, &t, position)).transpose()?;

        let crc = match (&after, &before) {
            (Some((a, _)), b) => {
                // Unchanged TOAST columns are absent from the new image; with
                // REPLICA IDENTITY FULL the old image has them. Otherwise the
                // checksum is unknown, written as 0 ("no checksum").
                let filled = fill_unchanged(&a.0, b.as_ref().map(|b| &b.0 .0));
                row_checksum(&rel.schema, &filled).unwrap_or(0)
            }
            (None, _) => 0,
        };
        // The version this change carries (see `Marker::for_user_write`).
        let dot = crate::marker::Dot {
            c: position.counter(),
            t: commit_time_us,
        };
        let prior_text = after
            .as_ref()
            .and_then(|a| a.1.as_deref())
            .or(before.as_ref().and_then(|b| b.1.as_deref()));
        let mut marker = Marker::for_user_write(
            prior_text,
            None,
            self.spec.site_id,
            dot,
            crc,
            &rel.schema.table,
        );
        if self
            .spec
            .field_merge_tables
            .contains(&rel.schema.table.name)
        {
            if let Some((a, _)) = &after {
                let filled = fill_unchanged(&a.0, before.as_ref().map(|b| &b.0 .0));
                let prior = Marker::parse_lenient(prior_text, &rel.schema.table);
                marker.cols = crate::conflict::column_tags(
                    &rel.schema,
                    &filled,
                    prior.as_ref(),
                    self.spec.site_id,
                    dot,
                );
            }
        }
        self.ready.push_back(ChangeEvent::Change(RowChange {
            table: rel.schema.clone(),
            op,
            before: before.map(|b| b.0),
            after: after.map(|a| a.0),
            marker,
        }));
        Ok(())
    }

    /// A row of a transaction duplex itself applied: dropped (no echo) unless
    /// the applier flagged it to flow back (see `marker::Resolution`).
    fn forwarded_change(
        &mut self,
        relation: u32,
        op: Op,
        old: Option<(OldImageKind, Vec<TupleValue>)>,
        new: Option<Vec<TupleValue>>,
        position: SourcePosition,
    ) -> Result<(), SourceError> {
        let rel = self
            .relations
            .get(&relation)
            .ok_or(SourceError::UnknownRelation(relation))?;
        let before = old
            .map(|(_, t)| decode_tuple(rel, &t, position))
            .transpose()?;
        let after = new.map(|t| decode_tuple(rel, &t, position)).transpose()?;
        let text = match op {
            Op::Delete => before.as_ref().and_then(|b| b.1.as_deref()),
            _ => after.as_ref().and_then(|a| a.1.as_deref()),
        };
        let Some(marker) = Marker::forwarded(
            text,
            self.spec.site_id,
            position.counter(),
            op == Op::Delete,
        ) else {
            return Ok(());
        };
        let schema = rel.schema.clone();
        if let Some(t) = self.txn.as_mut() {
            if !t.begun {
                t.begun = true;
                self.ready.push_back(ChangeEvent::Begin(t.meta.clone()));
            }
        }
        self.ready.push_back(ChangeEvent::Change(RowChange {
            table: schema,
            op,
            before: before.map(|b| b.0),
            after: after.map(|a| a.0),
            marker,
        }));
        Ok(())
    }

    async fn type_class(&mut self, oid: u32) -> Result<PgTypeClass, SourceError> {
        crate::pg::types::resolve_type_class(&self.catalog, oid, &mut self.types)
            .await
            .map_err(|source| SourceError::Catalog {
                what: format!("type oid {oid}"),
                source,
            })
    }

    async fn describe_relation(
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
                type_name: format!("oid {}", c.type_oid),
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

/// Decode one tuple into a canonical row plus the marker column's raw text.
fn decode_tuple(
    rel: &RelationInfo,
    tuple: &[TupleValue],
    position: SourcePosition,
) -> Result<(Row, Option<String>), SourceError> {
    let mut values: Vec<Option<Value>> = vec![None; rel.schema.columns.len()];
    let mut marker = None;
    for (i, tv) in tuple.iter().enumerate() {
        let Some(info) = rel.columns.get(i) else {
            break;
        };
        let bad = |reason: String| SourceError::BadValue {
            table: rel.schema.table.clone(),
            column: info
                .row_index
                .map(|j| rel.schema.columns[j].name.clone())
                .unwrap_or_default(),
            position,
            reason,
        };
        let value = match tv {
            TupleValue::Null => Some(Value::Null),
            TupleValue::UnchangedToast => None,
            TupleValue::Text(bytes) => {
                let text =
                    std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
                if Some(i) == rel.marker_index {
                    marker = Some(text.to_string());
                    continue;
                }
                Some(decode_text(&info.class, text).map_err(|e| bad(e.to_string()))?)
            }
            TupleValue::Binary(_) => return Err(bad("binary value in a text-mode stream".into())),
        };
        if let Some(j) = info.row_index {
            values[j] = value;
        }
    }
    Ok((Row(values), marker))
}

/// The new image with columns the source did not send taken from the old image.
fn fill_unchanged(after: &[Option<Value>], before: Option<&Vec<Option<Value>>>) -> Row {
    Row(after
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.clone()
                .or_else(|| before.and_then(|b| b.get(i).cloned().flatten()))
        })
        .collect())
}
