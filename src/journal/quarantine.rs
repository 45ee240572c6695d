//! Quarantine: a change the target cannot take (a value the column cannot
//! hold, a constraint the target enforces) is recorded in the control schema's
//! `duplex.quarantine` with its reason and source position, and the stream
//! goes on. Nothing is dropped silently (design invariant 8).
//!
//! The record is written in the target transaction that skipped the change,
//! into the target's outbox, and shipped from there (see `journal::outbox`);
//! it is keyed by (link, source site, position, index in the source
//! transaction).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use crate::canonical::{
    ChangeOrigin, Op, Row, RowChange, SourceForm, SourcePosition, TableName, TableSchema,
    Unreplicable,
};
use crate::control::{Sql, P};
use crate::journal::images::{abridge, image_json, readable, storable_text};
use crate::journal::outbox::{Entry, QuarantineEntry};
use crate::journal::protocol::{JournalConn, JournalSpec, JournalTable};
use crate::journal::schema_holds::SchemaHolds;
use crate::journal::JournalError;
use crate::stats::DirectionStats;

pub struct Quarantine {
    journal: JournalConn,
    stats: Arc<DirectionStats>,
    recorded: usize,
    /// Tables stopped in this direction (bare source names): a write to
    /// them was logged as a statement, without its rows. Their changes are
    /// held until a DBA has resynced them and discarded those records.
    stopped: HashSet<String>,
    /// Tables held because their shape differs on the target, shared by
    /// the direction's apply workers (see `journal::schema_holds`).
    schema: SchemaHolds,
}

/// A quarantined change a DBA asked to apply again.
pub struct Retry {
    pub quarantine_id: i64,
    /// The change as the target refused it (mapped with the configuration of
    /// its time).
    pub change: RowChange,
    /// The change in the source's terms, to be mapped with the configuration
    /// in force now; `None` for a record of an older duplex, which kept only
    /// the mapped change (see `DirectionMapping::restrict_mapped`).
    pub source: Option<RowChange>,
    /// Where it was in the source's stream (it keys the record).
    pub origin: ChangeOrigin,
    /// A held change released (not a DBA's retry).
    pub released: bool,
}

/// Version of the `change_exact` layout that keeps the change in the
/// source's terms (absent in records of older versions).
const EXACT_VERSION: u64 = 2;

/// A change exactly: typed images, the table's shape, and the version marker.
fn change_json(change: &RowChange) -> serde_json::Value {
    json!({
        "schema": &*change.table,
        "op": change.op.to_string(),
        "before": change.before,
        "after": change.after,
        "marker": change.marker.to_json(),
    })
}

/// The record's `change_exact`: the change as the target refused it, and
/// the change as it came from the source (`"source"`, only when the mapping
/// changed it; otherwise the two are the same). A record kept in the form of
/// an older duplex stays in it (`SourceForm::Unknown`).
fn exact_json(change: &RowChange, source: &SourceForm) -> String {
    let mut v = change_json(change);
    if let serde_json::Value::Object(map) = &mut v {
        match source {
            SourceForm::Unchanged => {
                map.insert("v".into(), json!(EXACT_VERSION));
            }
            SourceForm::Mapped(s) => {
                map.insert("v".into(), json!(EXACT_VERSION));
                map.insert("source".into(), change_json(s));
            }
            SourceForm::Unknown => {}
        }
    }
    v.to_string()
}

/// A record's `change_exact`: the change as refused, and in the source's
/// terms when the record has that form.
fn change_from_exact(text: &str) -> Option<(RowChange, Option<RowChange>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let change = change_from_value(&v)?;
    let source = match v.get("v").and_then(|n| n.as_u64()) {
        None => None,
        Some(_) => match v.get("source") {
            Some(s) => Some(change_from_value(s)?),
            None => Some(change.clone()),
        },
    };
    Some((change, source))
}

fn change_from_value(v: &serde_json::Value) -> Option<RowChange> {
    let table: TableSchema = serde_json::from_value(v.get("schema")?.clone()).ok()?;
    let op = match v.get("op")?.as_str()? {
        "insert" => Op::Insert,
        "update" => Op::Update,
        "delete" => Op::Delete,
        _ => return None,
    };
    let before: Option<Row> = serde_json::from_value(v.get("before")?.clone()).ok()?;
    let after: Option<Row> = serde_json::from_value(v.get("after")?.clone()).ok()?;
    let marker = crate::marker::Marker::parse(Some(v.get("marker")?.as_str()?)).ok()??;
    Some(RowChange {
        table: Arc::new(table),
        op,
        before,
        after,
        marker,
    })
}

/// The note of a held change released (status 'retry').
const RELEASED_NOTE: &str = "table resumed";

/// The quarantine's table.
static QUARANTINE: JournalTable = JournalTable {
    name: "duplex.quarantine",
    id_column: "quarantine_id",
    note_column: "note",
    settled_column: "settled_at",
    open_status: "pending",
    what: "a quarantined change",
    application_name: "duplex quarantine",
};

impl Quarantine {
    /// Can the control database be reached now?
    pub async fn control_reachable(&mut self) -> bool {
        self.journal.reachable().await
    }

    pub fn new(spec: JournalSpec, stats: Arc<DirectionStats>, schema: SchemaHolds) -> Quarantine {
        Quarantine {
            journal: JournalConn::new(spec, &QUARANTINE),
            stats,
            recorded: 0,
            stopped: HashSet::new(),
            schema,
        }
    }

    /// At start, given the target's resume position (the end of the last
    /// applied source transaction): unconfirmed records of transactions that
    /// start before it were committed with the target (confirm them); the others
    /// belong to a transaction that rolled back and is about to be replayed
    /// (delete them: the replay records the change again if it still fails).
    /// A record's position is its transaction's start, strictly below that
    /// transaction's end.
    pub async fn reconcile(&mut self, resume_counter: Option<u64>) -> Result<(), JournalError> {
        self.journal.reconcile(resume_counter).await
    }

    /// Changes a DBA asked to retry (`duplex.retry_quarantined`), oldest
    /// first. A record whose change cannot be read back goes back to pending
    /// with a note.
    pub async fn pending_retries(&mut self) -> Result<Vec<Retry>, JournalError> {
        let (link, source, target) = (
            self.journal.spec.link_id as i32,
            self.journal.spec.source_site as i32,
            self.journal.spec.target_site as i32,
        );
        let client = self.journal.client().await?;
        let rows = client
            .rows(Sql::new(
                "read the changes to retry",
                "SELECT quarantine_id, op, position_counter::text AS position_counter, change_index, change_exact::text AS change_exact, note
                   FROM duplex.quarantine
                  WHERE link_id = $1 AND source_site = $2 AND target_site = $3 AND status = 'retry' AND confirmed
                  ORDER BY position_counter, change_index LIMIT 100",
                "SELECT quarantine_id, op, CAST(position_counter AS CHAR) AS position_counter, change_index, change_exact, note
                   FROM duplex.quarantine
                  WHERE link_id = ? AND source_site = ? AND target_site = ? AND status = 'retry' AND confirmed
                  ORDER BY position_counter, change_index LIMIT 100",
                &[P::I32(link), P::I32(source), P::I32(target)],
            ))
            .await?;
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        let mut statements = Vec::new();
        for r in rows {
            let id: i64 = r.parse("quarantine_id")?;
            if r.text("op")? == "statement" {
                statements.push(id);
                continue;
            }
            let parsed = (|| {
                let counter: u64 = r.parse("position_counter").ok()?;
                let index: u32 = r.parse("change_index").ok()?;
                let (change, source) = change_from_exact(&r.opt("change_exact").ok()??)?;
                let note: Option<String> = r.opt("note").ok().flatten();
                Some(Retry {
                    released: note.as_deref() == Some(RELEASED_NOTE),
                    quarantine_id: id,
                    change,
                    source,
                    // Only the counter matters: it keys the record. The
                    // source form is set when the change is mapped again.
                    origin: ChangeOrigin::at(
                        SourcePosition::from_counter(Default::default(), counter),
                        index,
                    ),
                })
            })();
            match parsed {
                Some(retry) => out.push(retry),
                None => unreadable.push(id),
            }
        }
        for id in unreadable {
            self.settle(
                id,
                "pending",
                "duplex could not read this change back; apply it by hand from the change column and discard it",
            )
            .await?;
        }
        for id in statements {
            self.settle(
                id,
                "pending",
                "a write logged as a statement has no rows to apply again: resync the table, then discard this record",
            )
            .await?;
        }
        Ok(out)
    }

    /// Record what a retry came to: `retried`, or `pending` with why.
    pub async fn settle(
        &mut self,
        quarantine_id: i64,
        status: &str,
        note: &str,
    ) -> Result<(), JournalError> {
        self.journal.settle(quarantine_id, status, note).await
    }

    /// How many changes were recorded since this sink started (a retry that
    /// was refused again records its change once more).
    pub fn recorded(&self) -> usize {
        self.recorded
    }

    /// Keep `change` with `reason`, staged with the open target transaction.
    pub fn record(&mut self, change: &RowChange, origin: &ChangeOrigin, key: &str, reason: &str) {
        self.keep(change, origin, key, reason, "pending")
    }

    /// Hold a change of a paused or stopped table (status 'held') until it
    /// is resumed; staged with the open target transaction, like a refused
    /// change.
    pub fn hold(&mut self, change: &RowChange, origin: &ChangeOrigin, key: &str) {
        let name = &change.table.table.name;
        let shape;
        let reason = if self.is_stopped(name) {
            "table stopped by a write logged as a statement (see its quarantine records of op 'statement'): held until it is resynced and those records are discarded"
        } else if let Some(hold) = self.schema.get(name) {
            shape = format!(
                "table held (see its quarantine record of op 'schema'): {}",
                hold.reason
            );
            &shape
        } else {
            "table paused: held until it is resumed"
        };
        self.keep(change, origin, key, reason, "held")
    }

    /// The tables held for their shape in this direction.
    pub fn schema_holds(&self) -> &SchemaHolds {
        &self.schema
    }

    pub(crate) fn stats(&self) -> &DirectionStats {
        &self.stats
    }

    pub(crate) fn stage(&mut self, entry: Entry) {
        self.journal.staged.stage(entry);
    }

    pub(crate) async fn journal_client(
        &mut self,
    ) -> Result<&mut crate::control::ControlDb, JournalError> {
        self.journal.client().await
    }

    /// After a failed call: the next one connects again.
    pub(crate) fn drop_journal_client(&mut self) {
        self.journal.drop_client();
    }

    /// The tables stopped in this direction (bare source names).
    pub fn stopped(&self) -> &HashSet<String> {
        &self.stopped
    }

    /// Take the stopped tables another applier of the direction found
    /// (apply workers share worker 0's: see `pipeline::dispatch`).
    pub fn set_stopped(&mut self, tables: HashSet<String>) {
        self.stopped = tables;
    }

    /// Is `table` (bare source name) stopped in this direction?
    pub fn is_stopped(&self, table: &str) -> bool {
        self.stopped.contains(table)
    }

    /// `u` may have changed `table` without the binlog carrying its rows:
    /// record it (op 'statement', pending, with the advice) and hold the
    /// table's changes from here on. Staged with the open target
    /// transaction, like a refused change.
    pub fn stop(&mut self, table: &TableName, origin: ChangeOrigin, u: &Unreplicable) {
        let statement = storable_text(&u.statement);
        let reason = storable_text(&u.reason);
        let body = readable(json!({
            "statement": &*statement,
            "position": u.position.to_string(),
            "tables": u.tables.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        }))
        .to_string();
        let exact = json!({
            "stopped_table": table,
            "statement": &*statement,
            "position": u.position.to_string(),
        })
        .to_string();
        self.journal
            .staged
            .stage(Entry::Quarantine(QuarantineEntry {
                table_name: table.to_string(),
                op: "statement".into(),
                row_key: abridge(&statement, 200),
                source_position: origin.position.to_string(),
                position_counter: origin.position.counter().to_string(),
                change_index: origin.index,
                change: body,
                reason: reason.to_string(),
                change_exact: Some(exact),
                status: "pending".into(),
            }));
        // A table with no change applied yet still shows in table_status.
        self.stats
            .add_table_counts([(table.to_string(), [0, 0, 0])]);
        self.stats
            .set_error(Some(format!("table {table} stopped: {reason}")));
        if self.stopped.insert(table.name.clone()) {
            tracing::error!(%table, position = %u.position, reason = %reason, "table stopped");
        }
    }

    /// Tables with a pending statement record in this direction, in the
    /// control schema (the caller ships the outbox first). Also the
    /// unconfirmed ones an older duplex wrote: reconciliation at start
    /// removed those of rolled-back transactions.
    async fn stopped_tables(&mut self) -> Result<HashSet<String>, JournalError> {
        let (link, source, target) = self.ids();
        let client = self.journal.client().await?;
        let rows = client
            .rows(Sql::new(
                "read the stopped tables",
                "SELECT DISTINCT change_exact->'stopped_table'->>'name' AS name
                   FROM duplex.quarantine
                  WHERE link_id = $1 AND source_site = $2 AND target_site = $3
                    AND op = 'statement' AND status IN ('pending', 'retry')",
                "SELECT DISTINCT JSON_UNQUOTE(JSON_EXTRACT(change_exact, '$.stopped_table.name')) AS name
                   FROM duplex.quarantine
                  WHERE link_id = ? AND source_site = ? AND target_site = ?
                    AND op = 'statement' AND status IN ('pending', 'retry')",
                &[P::I32(link), P::I32(source), P::I32(target)],
            ))
            .await;
        if rows.is_err() {
            self.journal.drop_client();
        }
        Ok(rows?
            .iter()
            .filter_map(|r| r.opt("name").ok().flatten())
            .collect())
    }

    /// At start: the tables stopped in this direction.
    pub async fn load_stopped(&mut self) -> Result<(), JournalError> {
        self.stopped = self.stopped_tables().await?;
        if !self.stopped.is_empty() {
            let mut names: Vec<&String> = self.stopped.iter().collect();
            names.sort();
            tracing::warn!(tables = ?names, "tables stopped by writes logged as statements: their changes are held until a DBA resyncs them and discards those records");
        }
        Ok(())
    }

    /// Between source transactions: the stopped tables whose statement
    /// records a DBA has discarded since (resynced). They are no longer
    /// stopped; returns them.
    pub async fn resumed(&mut self) -> Result<Vec<String>, JournalError> {
        if self.stopped.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.stopped_tables().await?;
        let mut resumed: Vec<String> = self.stopped.difference(&now).cloned().collect();
        resumed.sort();
        self.stopped.retain(|t| now.contains(t));
        Ok(resumed)
    }

    /// A TRUNCATE of paused `tables` (bare names) arrived at `origin`: the
    /// changes held before it are moot (their rows are gone with it).
    /// Staged with the open target transaction.
    pub fn discard_held(&mut self, tables: &[String], origin: &ChangeOrigin) {
        self.journal.staged.discard_held(tables);
        self.journal.staged.stage(Entry::DiscardHeld {
            tables: tables.to_vec(),
            position_counter: origin.position.counter().to_string(),
            change_index: origin.index,
        });
    }

    /// A released held change that the target does not fit after all:
    /// the later released changes of its table (`table`, as the records
    /// name it) are held again behind it.
    pub async fn hold_back(&mut self, table: &TableName) -> Result<(), JournalError> {
        let (link, source, target) = self.ids();
        let name = table.to_string();
        let client = self.journal.client().await?;
        client
            .exec(Sql::new(
                "hold a table's released changes again",
                "UPDATE duplex.quarantine SET status = 'held', note = NULL
                  WHERE link_id = $1 AND source_site = $2 AND target_site = $3 AND status = 'retry'
                    AND table_name = $4 AND note = $5",
                "UPDATE duplex.quarantine SET status = 'held', note = NULL
                  WHERE link_id = ? AND source_site = ? AND target_site = ? AND status = 'retry'
                    AND table_name = ? AND note = ?",
                &[
                    P::I32(link),
                    P::I32(source),
                    P::I32(target),
                    P::Text(Some(&name)),
                    P::Text(Some(RELEASED_NOTE)),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Tables resumed: their held changes become retries, applied in source
    /// order. `active`: bare names of the link's tables now synced (not
    /// paused); the changes held for a table removed from the link stay held
    /// for a DBA to discard or re-add it.
    /// Returns how many were released.
    pub async fn release_held(&mut self, active: &[String]) -> Result<u64, JournalError> {
        let (link, source, target) = self.ids();
        let client = self.journal.client().await?;
        Ok(client
            .exec(Sql::new(
                "release held changes",
                "UPDATE duplex.quarantine SET status = 'retry', note = 'table resumed'
                  WHERE link_id = $1 AND source_site = $2 AND target_site = $3 AND status = 'held' AND confirmed
                    AND change_exact->'schema'->'table'->>'name' = ANY($4)",
                "UPDATE duplex.quarantine SET status = 'retry', note = 'table resumed'
                  WHERE link_id = ? AND source_site = ? AND target_site = ? AND status = 'held' AND confirmed
                    AND JSON_CONTAINS(?, JSON_QUOTE(JSON_UNQUOTE(JSON_EXTRACT(change_exact, '$.schema.table.name'))))",
                &[P::I32(link), P::I32(source), P::I32(target), P::TextList(active)],
            ))
            .await?)
    }

    pub(crate) fn ids(&self) -> (i32, i32, i32) {
        (
            self.journal.spec.link_id as i32,
            self.journal.spec.source_site as i32,
            self.journal.spec.target_site as i32,
        )
    }

    fn keep(
        &mut self,
        change: &RowChange,
        origin: &ChangeOrigin,
        key: &str,
        reason: &str,
        status: &str,
    ) {
        let body = readable(json!({
            "before": change.before.as_ref().map(|r| image_json(&change.table, r)),
            "after": change.after.as_ref().map(|r| image_json(&change.table, r)),
            "marker": serde_json::from_str::<serde_json::Value>(&change.marker.to_json()).unwrap_or_default(),
        }))
        .to_string();
        let (key, reason) = (storable_text(key), storable_text(reason));
        self.journal
            .staged
            .stage(Entry::Quarantine(QuarantineEntry {
                table_name: change.table.table.to_string(),
                op: change.op.to_string(),
                row_key: key.to_string(),
                source_position: origin.position.to_string(),
                position_counter: origin.position.counter().to_string(),
                change_index: origin.index,
                change: body,
                reason: reason.to_string(),
                change_exact: Some(exact_json(change, &origin.source)),
                status: status.into(),
            }));
        if status == "held" {
            tracing::debug!(table = %change.table.table, key = %key, position = %origin.position, "change held");
        } else {
            self.recorded += 1;
            tracing::warn!(table = %change.table.table, key = %key, reason = %reason, position = %origin.position, "change quarantined");
        }
    }

    /// The entries staged with the open target transaction, taken to be
    /// written in it.
    pub fn take_staged(&mut self) -> Vec<Entry> {
        self.journal.staged.take()
    }

    /// How many records are staged.
    pub fn staged_len(&self) -> usize {
        self.journal.staged.len()
    }

    /// The open target transaction rolled back: so did its records.
    pub fn drop_staged(&mut self) {
        self.journal.staged.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{ColumnSchema, TableName, Value};

    fn change(columns: &[&str], values: &[&str]) -> RowChange {
        RowChange {
            table: Arc::new(TableSchema {
                table: TableName::new("public", "people"),
                columns: columns
                    .iter()
                    .map(|n| ColumnSchema {
                        name: (*n).into(),
                        type_name: "text".into(),
                    })
                    .collect(),
                key: vec![0],
            }),
            op: Op::Insert,
            before: None,
            after: Some(Row(values
                .iter()
                .map(|v| Some(Value::Text((*v).into())))
                .collect())),
            marker: crate::marker::Marker::default(),
        }
    }

    fn names(c: &RowChange) -> Vec<String> {
        c.table.columns.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn records_keep_the_change_in_the_source_terms() {
        let mapped = change(&["id", "mail"], &["1", "a@x.org"]);
        let source = change(&["id", "email", "secret"], &["1", "A@X.ORG", "pw"]);
        // Mapped: both forms.
        let text = exact_json(&mapped, &SourceForm::Mapped(Arc::new(source)));
        let (c, s) = change_from_exact(&text).unwrap();
        assert_eq!(names(&c), ["id", "mail"]);
        assert_eq!(names(&s.unwrap()), ["id", "email", "secret"]);
        // Not mapped: the change is its own source form.
        let text = exact_json(&mapped, &SourceForm::Unchanged);
        let (_, s) = change_from_exact(&text).unwrap();
        assert_eq!(names(&s.unwrap()), ["id", "mail"]);
        // Kept as an older duplex kept it: the mapped form only.
        let text = exact_json(&mapped, &SourceForm::Unknown);
        assert!(!text.contains("\"v\""), "{text}");
        let (c, s) = change_from_exact(&text).unwrap();
        assert_eq!(names(&c), ["id", "mail"]);
        assert!(s.is_none());
    }
}
