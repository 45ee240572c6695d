//! pgoutput messages to canonical events: relations, row changes decoded and
//! stamped with their version, truncates; a change of duplex's own transaction
//! passes only when the applier flagged it to flow back.

use super::pgoutput::{OldImageKind, PgOutputMessage, TupleValue};
use super::relations::RelationInfo;
use super::{pgoutput, PgSource};
use crate::canonical::{ChangeEvent, Op, Row, SourcePosition, TableName, Value};
use crate::control::model::DUPLEX_ORIGIN_PREFIX;
use crate::pg::text_decode::decode_text;
use crate::source::{stamp, SourceError};
use bytes::Bytes;

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

/// The marker column's text in a tuple, without decoding the rest.
fn marker_text<'t>(rel: &RelationInfo, tuple: &'t [TupleValue]) -> Option<&'t str> {
    match tuple.get(rel.marker_index?)? {
        TupleValue::Text(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    }
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

impl PgSource {
    pub(super) async fn handle_message(&mut self, data: &Bytes) -> Result<(), SourceError> {
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
                // A synced table renamed on this site: its changes under the
                // new name are not the configured table's to the link (a
                // table swapped in under the old name would not be in the
                // publication, a renamed-away one would be written into the
                // peer's). The table stops in this direction, with the way
                // back; the peer's changes of it wait while the name is
                // missing here (`sink::schema_hold`).
                if !self.spec.tables.contains(&table) {
                    let known = self.relations.get(&oid).map(|r| r.schema.table.clone());
                    if let Some(known) = known.or_else(|| self.synced_oids.get(&oid).cloned()) {
                        self.renamed_away(known, &table);
                    }
                }
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
                    self.ready.push(ChangeEvent::Truncate(tables));
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

    /// Synced table `known` is named `now` on this site since: it stops in
    /// this direction (see the Relation message above).
    fn renamed_away(&mut self, known: TableName, now: &TableName) {
        if !self.accept_change() {
            return;
        }
        let Some(position) = self.txn.as_ref().map(|t| t.meta.commit_position) else {
            return;
        };
        let site = &self.spec.endpoint.site_name;
        let reason = format!(
            "table {known} was renamed to {now} on site {site}: its changes under another name are not replicated, so table {known} stops in this direction (its later changes are held, nothing else is lost). \
             Fix: give site {site} the table under its name again (ALTER TABLE {now} RENAME TO {}), or rename it on every site and in duplex.link_tables; \
             resync it (duplex repair --from {site} --table {}), as the changes made under the other name were not replicated; \
             then discard this record (duplex quarantine list; duplex quarantine discard ID): the held changes are then applied",
            crate::pg::quote_ident(&known.name),
            known.name,
        );
        tracing::error!(table = %known, renamed_to = %now, "a synced table was renamed on the source site: it stops in this direction");
        self.ready
            .push(ChangeEvent::Unreplicable(crate::canonical::Unreplicable {
                tables: vec![known],
                statement: format!("renamed to {now}"),
                position,
                reason,
            }));
    }

    /// True when the current transaction's changes are to be passed on; emits
    /// the deferred `Begin` on the first one.
    fn accept_change(&mut self) -> bool {
        match self.txn.as_mut() {
            Some(t) if t.echo => false,
            Some(t) => {
                self.ready.begin_once(&mut t.begun, &t.meta);
                true
            }
            // A change outside Begin/Commit cannot happen in protocol v1.
            None => false,
        }
    }

    pub(super) fn change(
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

        // Unchanged TOAST columns are absent from the new image; with REPLICA
        // IDENTITY FULL the old image has them. Otherwise the row is not known
        // whole: no checksum.
        let filled = after
            .as_ref()
            .map(|(a, _)| fill_unchanged(&a.0, before.as_ref().map(|b| &b.0 .0)));
        // The version this change carries (see `Marker::for_user_write`).
        let dot = crate::marker::Dot::at(position.counter(), commit_time_us);
        let marker = stamp::user_write(
            &rel.schema,
            self.spec.site_id,
            dot,
            after.as_ref().and_then(|a| a.1.as_deref()),
            before.as_ref().and_then(|b| b.1.as_deref()),
            filled.as_ref(),
            &self.spec.stamping,
        );
        self.ready.change(
            rel.schema.clone(),
            op,
            before.map(|b| b.0),
            after.map(|a| a.0),
            marker,
        );
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
        // Almost every change of duplex's own transactions stays here: only
        // its marker is read to tell, the row is decoded only for one that
        // flows back.
        let Some(marker) = stamp::forwarded(
            op,
            new.as_deref().and_then(|t| marker_text(rel, t)),
            old.as_ref().and_then(|(_, t)| marker_text(rel, t)),
            self.spec.site_id,
            position,
        ) else {
            return Ok(());
        };
        let before = old
            .map(|(_, t)| decode_tuple(rel, &t, position))
            .transpose()?;
        let after = new.map(|t| decode_tuple(rel, &t, position)).transpose()?;
        let schema = rel.schema.clone();
        if let Some(t) = self.txn.as_mut() {
            self.ready.begin_once(&mut t.begun, &t.meta);
        }
        self.ready
            .change(schema, op, before.map(|b| b.0), after.map(|a| a.0), marker);
        Ok(())
    }
}
