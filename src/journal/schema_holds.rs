//! Tables held because their shape differs between the sites: a change
//! carries a column the target's table does not have (added on the source
//! only, dropped on the target only, renamed on one site), or the target has
//! no such table. The table's changes are held in order (quarantine status
//! 'held') while the rest of the link flows, and applied by themselves once
//! the target's table fits (see `sink::schema_hold`).
//!
//! Each hold is recorded in `duplex.quarantine` as op 'schema', status
//! 'held': what differs and how to fix it, where a DBA looks. Like every
//! record, it is staged with the target transaction that holds the table's
//! first change and shipped from the target's outbox. A newer shape seen
//! while the table is held is recorded again (the newest one is what the
//! target must fit). Once the table fits, its records become 'retried'.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::canonical::{ChangeOrigin, TableName};
use crate::control::{Sql, P};
use crate::journal::images::{abridge, storable_text};
use crate::journal::outbox::{Entry, QuarantineEntry};
use crate::journal::quarantine::Quarantine;
use crate::journal::JournalError;

/// One table held for its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaHold {
    /// The table as the source names it.
    pub table: TableName,
    /// The columns of the newest change seen, as the source names them:
    /// what the target's table must have (through the mapping in force).
    pub source_columns: Vec<String>,
    /// What differs and how to fix it.
    pub reason: String,
    /// Where in the source's stream that change is (position counter,
    /// index): of two workers' holds, the later one says what the target
    /// must fit.
    pub at: (u64, u32),
}

/// The tables of one direction held for their shape (by bare name), shared
/// by its apply workers: once one worker holds a table, every later change
/// of it is held, whichever worker applies it (a change must not overtake
/// an earlier one held). Rebuilt from the control schema at each start.
#[derive(Debug, Clone, Default)]
pub struct SchemaHolds(Arc<Mutex<BTreeMap<String, SchemaHold>>>);

impl SchemaHolds {
    pub fn get(&self, table: &str) -> Option<SchemaHold> {
        self.0.lock().ok()?.get(table).cloned()
    }

    pub fn contains(&self, table: &str) -> bool {
        self.0.lock().is_ok_and(|m| m.contains_key(table))
    }

    pub fn all(&self) -> Vec<SchemaHold> {
        self.0
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Hold a table, or record a newer shape of a held one (an earlier
    /// change a worker decides after a later one does not replace it).
    pub(crate) fn insert(&self, hold: SchemaHold) {
        if let Ok(mut m) = self.0.lock() {
            if m.get(&hold.table.name).is_none_or(|h| h.at < hold.at) {
                m.insert(hold.table.name.clone(), hold);
            }
        }
    }

    pub(crate) fn remove(&self, table: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(table);
        }
    }

    fn replace(&self, holds: Vec<SchemaHold>) {
        if let Ok(mut m) = self.0.lock() {
            *m = holds
                .into_iter()
                .map(|h| (h.table.name.clone(), h))
                .collect();
        }
    }
}

impl Quarantine {
    /// Record that `table` is held from `origin` on, its changes there
    /// having `source_columns`, for `reason` (or, for a table already held,
    /// that its changes now have a newer shape). Staged with the open target
    /// transaction; the shared set knows it at once.
    pub fn hold_for_schema(
        &mut self,
        table: TableName,
        source_columns: Vec<String>,
        reason: String,
        origin: &ChangeOrigin,
    ) {
        let hold = SchemaHold {
            table,
            source_columns,
            reason,
            at: (origin.position.counter(), origin.index),
        };
        let first = !self.schema_holds().contains(&hold.table.name);
        let reason = storable_text(&hold.reason);
        self.stage(Entry::Quarantine(QuarantineEntry {
            table_name: hold.table.to_string(),
            op: "schema".into(),
            row_key: abridge(&reason, 200),
            source_position: origin.position.to_string(),
            position_counter: origin.position.counter().to_string(),
            change_index: origin.index,
            change: json!({ "columns": &hold.source_columns }).to_string(),
            reason: reason.to_string(),
            change_exact: Some(
                json!({ "schema_held": &hold.table, "columns": &hold.source_columns }).to_string(),
            ),
            status: "held".into(),
        }));
        if first {
            tracing::warn!(table = %hold.table, reason = %hold.reason, position = %origin.position, "table held: its shape differs on the target");
        } else {
            tracing::info!(table = %hold.table, columns = ?hold.source_columns, "held table: its changes have a new shape");
        }
        // A table with no change applied yet still shows in table_status.
        self.stats()
            .add_table_counts([(hold.table.to_string(), [0, 0, 0])]);
        self.schema_holds().insert(hold);
        self.show_holds();
    }

    /// At start: the tables held for their shape in this direction, from
    /// the newest record of each (the caller ships the outbox first).
    pub async fn load_schema_holds(&mut self) -> Result<(), JournalError> {
        let (link, source, target) = self.ids();
        let client = self.journal_client().await?;
        let rows = client
            .rows(Sql::new(
                "read the tables held for their shape",
                "SELECT change_exact::text AS exact, reason, position_counter::text AS counter, change_index FROM duplex.quarantine
                  WHERE link_id = $1 AND source_site = $2 AND target_site = $3
                    AND op = 'schema' AND status = 'held'
                  ORDER BY position_counter, change_index",
                "SELECT change_exact AS exact, reason, CAST(position_counter AS CHAR) AS counter, change_index FROM duplex.quarantine
                  WHERE link_id = ? AND source_site = ? AND target_site = ?
                    AND op = 'schema' AND status = 'held'
                  ORDER BY position_counter, change_index",
                &[P::I32(link), P::I32(source), P::I32(target)],
            ))
            .await;
        if rows.is_err() {
            self.drop_journal_client();
        }
        let mut holds: BTreeMap<String, SchemaHold> = BTreeMap::new();
        for r in rows? {
            let exact: Option<String> = r.opt("exact").ok().flatten();
            let parsed = exact.and_then(|e| {
                let v: serde_json::Value = serde_json::from_str(&e).ok()?;
                let table: TableName =
                    serde_json::from_value(v.get("schema_held")?.clone()).ok()?;
                let source_columns: Vec<String> =
                    serde_json::from_value(v.get("columns")?.clone()).ok()?;
                Some((table, source_columns))
            });
            let Some((table, source_columns)) = parsed else {
                tracing::warn!("a quarantine record of op 'schema' cannot be read; its table is not held by it (see duplex.quarantine)");
                continue;
            };
            let reason: String = r.opt("reason").ok().flatten().unwrap_or_default();
            let at = (
                r.parse::<u64>("counter").unwrap_or(0),
                r.parse::<u32>("change_index").unwrap_or(0),
            );
            // The newest record of a table wins (ordered by position).
            holds.insert(
                table.name.clone(),
                SchemaHold {
                    table,
                    source_columns,
                    reason,
                    at,
                },
            );
        }
        let holds: Vec<SchemaHold> = holds.into_values().collect();
        for h in &holds {
            tracing::warn!(table = %h.table, reason = %h.reason, "table held: its shape differs on the target");
        }
        self.schema_holds().replace(holds);
        self.show_holds();
        Ok(())
    }

    /// The table fits the target now: its hold records are settled (its
    /// held changes are released by the caller).
    pub async fn end_schema_hold(&mut self, table: &TableName) -> Result<(), JournalError> {
        let (link, source, target) = self.ids();
        let name = table.to_string();
        let client = self.journal_client().await?;
        let settled = client
            .exec(Sql::new(
                "settle the records of a table held for its shape",
                "UPDATE duplex.quarantine SET status = 'retried', settled_at = now(),
                        note = 'the target''s table fits the changes now: the held changes were applied'
                  WHERE link_id = $1 AND source_site = $2 AND target_site = $3
                    AND op = 'schema' AND status = 'held' AND table_name = $4",
                "UPDATE duplex.quarantine SET status = 'retried', settled_at = UTC_TIMESTAMP(6),
                        note = 'the target''s table fits the changes now: the held changes were applied'
                  WHERE link_id = ? AND source_site = ? AND target_site = ?
                    AND op = 'schema' AND status = 'held' AND table_name = ?",
                &[P::I32(link), P::I32(source), P::I32(target), P::Text(Some(&name))],
            ))
            .await;
        if settled.is_err() {
            self.drop_journal_client();
        }
        settled?;
        self.schema_holds().remove(&table.name);
        self.show_holds();
        Ok(())
    }

    /// The direction's held tables as its metrics show them.
    fn show_holds(&self) {
        self.stats().set_schema_held(
            self.schema_holds()
                .all()
                .into_iter()
                .map(|h| h.table.to_string())
                .collect(),
        );
    }
}
