//! The journal's outbox: every write a direction makes to the control
//! schema's journal (a conflict or quarantine record, a parked conflict made
//! moot, held changes overtaken by a TRUNCATE) is first staged with the open
//! target transaction and written in it, into the target site's own outbox
//! table (`duplex.site_journal` / `_duplex_journal`). It is shipped to the
//! control schema after the commit, or whenever the control database can be
//! reached again.
//!
//! So the control database is off the data path (an outage delays the
//! records, never the data), and a record exists exactly when the target
//! transaction that made it committed: no confirm step, no reconciliation.
//! Shipping is idempotent (a record is keyed by its place in the source
//! stream), so a crash between shipping and removing from the outbox ships
//! it again harmlessly.

use serde::{Deserialize, Serialize};

use crate::control::{ControlDb, Sql, P};
use crate::journal::images::{abridge, storable_text};
use crate::journal::protocol::{JournalConn, JournalSpec, JournalTable};
use crate::journal::JournalError;

/// One conflict record (`duplex.conflicts`' columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictEntry {
    pub table_name: String,
    pub row_key: String,
    pub kind: String,
    pub policy: String,
    pub outcome: String,
    pub local_version: String,
    pub incoming_version: String,
    pub source_position: String,
    pub position_counter: String,
    pub change_index: u32,
    pub status: String,
    pub incoming_change: Option<String>,
}

/// One quarantine record (`duplex.quarantine`'s columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub table_name: String,
    pub op: String,
    pub row_key: String,
    pub source_position: String,
    pub position_counter: String,
    pub change_index: u32,
    pub change: String,
    pub reason: String,
    pub change_exact: Option<String>,
    pub status: String,
}

/// One staged journal write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    Conflict(ConflictEntry),
    Quarantine(QuarantineEntry),
    /// The parked conflicts of a row, recorded before the change at
    /// (`position_counter`, `change_index`), are moot: that change, which
    /// has seen both versions, was applied.
    Supersede {
        table_name: String,
        row_key: String,
        position_counter: String,
        change_index: u32,
    },
    /// The changes of paused `tables` held before the TRUNCATE at
    /// (`position_counter`, `change_index`) are moot: their rows are gone.
    DiscardHeld {
        tables: Vec<String>,
        position_counter: String,
        change_index: u32,
    },
}

impl Entry {
    /// Where the change the entry belongs to sits in the source stream: the
    /// order the control schema gets entries in. The direction's workers
    /// write their outbox rows side by side, in their own order, but commit
    /// in source order; an entry that settles others (a supersede, a
    /// discard) always sits after them.
    pub fn source_order(&self) -> (u64, u32) {
        let (counter, index) = match self {
            Entry::Conflict(c) => (&c.position_counter, c.change_index),
            Entry::Quarantine(q) => (&q.position_counter, q.change_index),
            Entry::Supersede {
                position_counter,
                change_index,
                ..
            }
            | Entry::DiscardHeld {
                position_counter,
                change_index,
                ..
            } => (position_counter, *change_index),
        };
        (counter.parse().unwrap_or(u64::MAX), index)
    }

    /// What makes two records the same record (a later decision of the same
    /// change replaces an earlier one in the same transaction); `None` for
    /// the writes that are not records.
    fn record_key(&self) -> Option<(&'static str, &str, u32, &str)> {
        match self {
            Entry::Conflict(c) => Some(("c", &c.position_counter, c.change_index, &c.kind)),
            Entry::Quarantine(q) => Some(("q", &q.position_counter, q.change_index, "")),
            _ => None,
        }
    }
}

/// What keys a record in [`Staged`].
type RecordKey = (&'static str, String, u32, String);

/// The entries staged with the open target transaction, in order.
#[derive(Debug, Default)]
pub struct Staged {
    entries: Vec<Entry>,
    /// Where each record is in `entries` (a transaction may hold millions of
    /// held changes: looked up, never scanned).
    index: std::collections::HashMap<RecordKey, usize>,
}

fn owned_key(k: (&'static str, &str, u32, &str)) -> RecordKey {
    (k.0, k.1.to_string(), k.2, k.3.to_string())
}

impl Staged {
    /// Stage `entry`; a record of the same change replaces the staged one
    /// (as the control schema's upsert did).
    pub fn stage(&mut self, entry: Entry) {
        if let Some(key) = entry.record_key().map(owned_key) {
            if let Some(&i) = self.index.get(&key) {
                self.entries[i] = entry;
                return;
            }
            self.index.insert(key, self.entries.len());
        }
        self.entries.push(entry);
    }

    /// Remove the staged record of `kind` for the change at (`counter`,
    /// `index`); whether there was one.
    pub fn withdraw_conflict(&mut self, counter: &str, index: u32, kind: &str) -> bool {
        let Some(i) = self
            .index
            .remove(&("c", counter.to_string(), index, kind.to_string()))
        else {
            return false;
        };
        self.entries.remove(i);
        // Rare (a later batch of the same source transaction decided the
        // row again): the positions after it are indexed anew.
        self.reindex();
        true
    }

    fn reindex(&mut self) {
        self.index = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.record_key().map(|k| (owned_key(k), i)))
            .collect();
    }

    /// The staged held changes of `tables` become discarded (a TRUNCATE
    /// overtook them in the same transaction).
    pub fn discard_held(&mut self, tables: &[String]) {
        for e in &mut self.entries {
            if let Entry::Quarantine(q) = e {
                if q.status == "held" && held_table(q).is_some_and(|t| tables.contains(&t)) {
                    q.status = "discarded".into();
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn take(&mut self) -> Vec<Entry> {
        self.index.clear();
        std::mem::take(&mut self.entries)
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
    }
}

/// The bare table name a held change's exact form names.
fn held_table(q: &QuarantineEntry) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(q.change_exact.as_deref()?).ok()?;
    Some(
        v.get("schema")?
            .get("table")?
            .get("name")?
            .as_str()?
            .to_string(),
    )
}

/// The largest entry the outbox takes whole (a quarantined row of a few
/// hundred MiB is kept by key and position only, as when the control
/// database refuses it): MySQL's default `max_allowed_packet` is 16 MiB.
const MAX_ENTRY_BYTES: usize = 8 << 20;

/// An entry as the outbox stores it (JSON text).
pub fn encode(entry: &Entry) -> String {
    let text = serde_json::to_string(entry).unwrap_or_default();
    if text.len() <= MAX_ENTRY_BYTES {
        return text;
    }
    let why = format!(
        "the record is {} bytes, more than duplex keeps in the target's outbox ({MAX_ENTRY_BYTES})",
        text.len()
    );
    serde_json::to_string(&minimal(entry, &why)).unwrap_or_default()
}

/// An entry read back from the outbox.
pub fn decode(text: &str) -> Option<Entry> {
    serde_json::from_str(text).ok()
}

/// What is kept of a record that cannot be stored whole (`why`): what
/// identifies it, so that the loss is on record, never silent.
fn minimal(entry: &Entry, why: &str) -> Entry {
    match entry {
        Entry::Conflict(c) => {
            let without_row = |v: &str| -> String {
                let mut v: serde_json::Value = serde_json::from_str(v).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("row".into(), serde_json::Value::Null);
                }
                v.to_string()
            };
            Entry::Conflict(ConflictEntry {
                local_version: without_row(&c.local_version),
                incoming_version: without_row(&c.incoming_version),
                incoming_change: None,
                ..c.clone()
            })
        }
        Entry::Quarantine(q) => {
            let why = abridge(&storable_text(why), 500);
            Entry::Quarantine(QuarantineEntry {
                change: serde_json::json!({ "not_recorded": why }).to_string(),
                reason: format!(
                    "{} -- the change itself could not be recorded ({why}); only its key and source position are kept: once the cause is fixed, repair the row from the source site (duplex repair --table {}) and discard this record",
                    q.reason, q.table_name
                ),
                change_exact: None,
                ..q.clone()
            })
        }
        other => other.clone(),
    }
}

/// The outbox's side of the control connection (no settlements: only
/// shipping).
static SHIPPING: JournalTable = JournalTable {
    name: "duplex.site_journal",
    id_column: "entry_id",
    note_column: "",
    settled_column: "",
    open_status: "",
    what: "conflict and quarantine records",
    application_name: "duplex journal",
};

/// Ships a direction's outbox entries to the control schema.
pub struct Shipper {
    journal: JournalConn,
}

impl Shipper {
    pub fn new(spec: JournalSpec) -> Shipper {
        Shipper {
            journal: JournalConn::new(spec, &SHIPPING),
        }
    }

    /// Can the control database be reached now? With a connection that
    /// last worked, yes (shipping fails fast otherwise, and then drops it);
    /// without one, a probe says (not tried again for a while after a
    /// failure: see `JournalConn::reachable`).
    pub async fn reachable(&mut self) -> bool {
        self.journal.connected() || self.journal.reachable().await
    }

    /// The control database did not answer: drop the connection, and do
    /// not try again for a while.
    pub fn unreachable(&mut self) {
        self.journal.mark_unreachable();
    }

    /// Write `entries` to the control schema, in order (see [`ship`]).
    pub async fn ship(&mut self, entries: &[Entry]) -> Result<(), JournalError> {
        let spec = self.journal.spec.clone();
        let client = self.journal.client().await?;
        let result = ship(client, &spec, entries).await;
        if result.is_err() {
            // Reconnect next time: the connection may be gone.
            self.journal.drop_client();
        }
        result
    }
}

/// Write `entries` (shipped from the outbox, in order) to the control
/// schema. A record the control database refuses (too large, a constraint
/// a DBA added) is written in its minimal form instead; any other error (an
/// unreachable control database, a deadlock) fails the call, and the
/// entries stay in the outbox.
pub async fn ship(
    client: &mut ControlDb,
    spec: &JournalSpec,
    entries: &[Entry],
) -> Result<(), JournalError> {
    let mut rest = entries;
    while !rest.is_empty() {
        // A run of conflict records goes in one statement where the control
        // schema is PostgreSQL (a batch of hot rows can hold hundreds).
        let run = rest
            .iter()
            .take_while(|e| matches!(e, Entry::Conflict(_)))
            .count();
        if run > 1 && matches!(client, ControlDb::Pg(_)) {
            let (conflicts, after) = rest.split_at(run);
            match write_conflicts_pg(client, spec, conflicts).await {
                Ok(()) => {
                    rest = after;
                    continue;
                }
                // One at a time instead: each keeps what it can.
                Err(JournalError::Db(e)) if crate::control::db::refused_the_data(&e) => {
                    tracing::warn!(error = %e, "cannot record a batch of conflicts in one statement; recording them one by one");
                }
                Err(e) => return Err(e),
            }
        }
        let (first, after) = rest.split_at(run.max(1));
        ship_one_by_one(client, spec, first).await?;
        rest = after;
    }
    Ok(())
}

/// Conflict records in one statement (PostgreSQL control schema). A record
/// shipped again after a crash leaves a DBA's settlement of it as it is.
async fn write_conflicts_pg(
    client: &mut ControlDb,
    spec: &JournalSpec,
    conflicts: &[Entry],
) -> Result<(), JournalError> {
    let records: Vec<&ConflictEntry> = conflicts
        .iter()
        .filter_map(|e| match e {
            Entry::Conflict(c) => Some(c),
            _ => None,
        })
        .collect();
    let json = serde_json::to_string(&records).unwrap_or_default();
    let (link, source, target) = (
        spec.link_id as i32,
        spec.source_site as i32,
        spec.target_site as i32,
    );
    client
        .exec(Sql::new(
            "record conflicts",
            "INSERT INTO duplex.conflicts (link_id, source_site, target_site, table_name, row_key, kind, policy, outcome,
                                           local_version, incoming_version, source_position, position_counter,
                                           change_index, status, incoming_change, confirmed)
             SELECT $1, $2, $3, r.table_name, r.row_key, r.kind, r.policy, r.outcome, r.local_version::jsonb,
                    r.incoming_version::jsonb, r.source_position, r.position_counter::numeric, r.change_index, r.status,
                    r.incoming_change::jsonb, true
               FROM jsonb_to_recordset($4::text::jsonb) AS r(table_name text, row_key text, kind text, policy text,
                    outcome text, local_version text, incoming_version text, source_position text,
                    position_counter text, change_index integer, status text, incoming_change text)
             ON CONFLICT (link_id, source_site, position_counter, change_index, kind)
             DO UPDATE SET outcome = EXCLUDED.outcome, local_version = EXCLUDED.local_version,
                           incoming_version = EXCLUDED.incoming_version, incoming_change = EXCLUDED.incoming_change,
                           status = CASE WHEN duplex.conflicts.status IN ('open', 'settled')
                                         THEN EXCLUDED.status ELSE duplex.conflicts.status END,
                           confirmed = true",
            // Not used: a MySQL control schema takes them one by one.
            "",
            &[P::I32(link), P::I32(source), P::I32(target), P::Text(Some(&json))],
        ))
        .await?;
    Ok(())
}

/// `entries` one statement each; a refused one in its minimal form.
async fn ship_one_by_one(
    client: &mut ControlDb,
    spec: &JournalSpec,
    entries: &[Entry],
) -> Result<(), JournalError> {
    for entry in entries {
        match write(client, spec, entry).await {
            Ok(()) => {}
            Err(JournalError::Db(e)) if crate::control::db::refused_the_data(&e) => {
                let why = crate::control::db::server_message(&e);
                tracing::error!(error = %why, "the control schema refused a journal record; recording what identifies it");
                write(client, spec, &minimal(entry, &why)).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One entry's write in the control schema.
async fn write(
    client: &mut ControlDb,
    spec: &JournalSpec,
    entry: &Entry,
) -> Result<(), JournalError> {
    let (link, source, target) = (
        spec.link_id as i32,
        spec.source_site as i32,
        spec.target_site as i32,
    );
    match entry {
        // PostgreSQL: the batch statement, for one.
        Entry::Conflict(_) if matches!(client, ControlDb::Pg(_)) => {
            write_conflicts_pg(client, spec, std::slice::from_ref(entry)).await?;
        }
        Entry::Conflict(c) => {
            client
                .exec(Sql::new(
                    "record a conflict",
                    // Not used: see above.
                    "",
                    // A record shipped again after a crash leaves a DBA's
                    // settlement of it as it is.
                    "INSERT INTO duplex.conflicts (link_id, source_site, target_site, table_name, row_key, kind, policy, outcome,
                                                   local_version, incoming_version, source_position, position_counter,
                                                   change_index, status, incoming_change, confirmed)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS DECIMAL(20, 0)), ?, ?, ?, TRUE)
                     ON DUPLICATE KEY UPDATE outcome = VALUES(outcome), local_version = VALUES(local_version),
                                             incoming_version = VALUES(incoming_version),
                                             incoming_change = VALUES(incoming_change),
                                             status = IF(status IN ('open', 'settled'), VALUES(status), status),
                                             confirmed = TRUE",
                    &[
                        P::I32(link),
                        P::I32(source),
                        P::I32(target),
                        P::Text(Some(&c.table_name)),
                        P::Text(Some(&c.row_key)),
                        P::Text(Some(&c.kind)),
                        P::Text(Some(&c.policy)),
                        P::Text(Some(&c.outcome)),
                        P::Text(Some(&c.local_version)),
                        P::Text(Some(&c.incoming_version)),
                        P::Text(Some(&c.source_position)),
                        P::Text(Some(&c.position_counter)),
                        P::I32(c.change_index as i32),
                        P::Text(Some(&c.status)),
                        P::Text(c.incoming_change.as_deref()),
                    ],
                ))
                .await?;
        }
        Entry::Quarantine(q) => {
            client
                .exec(Sql::new(
                    "record a quarantined change",
                    // Recorded again (a retry refused again): the new reason;
                    // the status is the retry's to settle.
                    "INSERT INTO duplex.quarantine (link_id, source_site, target_site, table_name, op, row_key, source_position,
                                                    position_counter, change_index, change, reason, change_exact, status, confirmed)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::numeric, $9, $10::text::jsonb, $11, $12::text::jsonb, $13, true)
                     ON CONFLICT (link_id, source_site, position_counter, change_index)
                     DO UPDATE SET reason = EXCLUDED.reason, change = EXCLUDED.change,
                                   change_exact = EXCLUDED.change_exact, confirmed = true",
                    "INSERT INTO duplex.quarantine (link_id, source_site, target_site, table_name, op, row_key, source_position,
                                                    position_counter, change_index, `change`, reason, change_exact, status, confirmed)
                     VALUES (?, ?, ?, ?, ?, ?, ?, CAST(? AS DECIMAL(20, 0)), ?, ?, ?, ?, ?, TRUE)
                     ON DUPLICATE KEY UPDATE reason = VALUES(reason), `change` = VALUES(`change`),
                                             change_exact = VALUES(change_exact), confirmed = TRUE",
                    &[
                        P::I32(link),
                        P::I32(source),
                        P::I32(target),
                        P::Text(Some(&q.table_name)),
                        P::Text(Some(&q.op)),
                        P::Text(Some(&q.row_key)),
                        P::Text(Some(&q.source_position)),
                        P::Text(Some(&q.position_counter)),
                        P::I32(q.change_index as i32),
                        P::Text(Some(&q.change)),
                        P::Text(Some(&q.reason)),
                        P::Text(q.change_exact.as_deref()),
                        P::Text(Some(&q.status)),
                    ],
                ))
                .await?;
            if q.status == "discarded" {
                // Held, then overtaken by a TRUNCATE in the same transaction.
                client
                    .exec(Sql::new(
                        "note a held change overtaken by a TRUNCATE",
                        "UPDATE duplex.quarantine SET status = 'discarded', settled_at = now(),
                                note = 'overtaken by a TRUNCATE of the paused table'
                          WHERE link_id = $1 AND source_site = $2 AND position_counter = $3::text::numeric
                            AND change_index = $4 AND status IN ('held', 'discarded')",
                        "UPDATE duplex.quarantine SET status = 'discarded', settled_at = UTC_TIMESTAMP(6),
                                note = 'overtaken by a TRUNCATE of the paused table'
                          WHERE link_id = ? AND source_site = ? AND position_counter = CAST(? AS DECIMAL(20, 0))
                            AND change_index = ? AND status IN ('held', 'discarded')",
                        &[
                            P::I32(link),
                            P::I32(source),
                            P::Text(Some(&q.position_counter)),
                            P::I32(q.change_index as i32),
                        ],
                    ))
                    .await?;
            }
        }
        Entry::Supersede {
            table_name,
            row_key,
            position_counter,
            change_index,
        } => {
            // Bounded by the applied change's place: shipped again after a
            // crash, it never reaches a conflict parked after it.
            client
                .exec(Sql::new(
                    "supersede parked conflicts",
                    "UPDATE duplex.conflicts SET status = 'superseded', resolved_at = now(),
                            resolution_note = 'a later version that has seen both was applied'
                      WHERE link_id = $1 AND source_site = $2 AND target_site = $3 AND table_name = $4 AND row_key = $5
                        AND status = 'open'
                        AND (position_counter, change_index) < ($6::text::numeric, $7)",
                    "UPDATE duplex.conflicts SET status = 'superseded', resolved_at = UTC_TIMESTAMP(6),
                            resolution_note = 'a later version that has seen both was applied'
                      WHERE link_id = ? AND source_site = ? AND target_site = ? AND table_name = ? AND row_key = ?
                        AND status = 'open'
                        AND (position_counter, change_index) < (CAST(? AS DECIMAL(20, 0)), ?)",
                    &[
                        P::I32(link),
                        P::I32(source),
                        P::I32(target),
                        P::Text(Some(table_name)),
                        P::Text(Some(row_key)),
                        P::Text(Some(position_counter)),
                        P::I32(*change_index as i32),
                    ],
                ))
                .await?;
        }
        Entry::DiscardHeld {
            tables,
            position_counter,
            change_index,
        } => {
            client
                .exec(Sql::new(
                    "discard held changes overtaken by a TRUNCATE",
                    "UPDATE duplex.quarantine SET status = 'discarded', settled_at = now(),
                            note = 'overtaken by a TRUNCATE of the paused table'
                      WHERE link_id = $1 AND source_site = $2 AND target_site = $3 AND status = 'held'
                        AND change_exact->'schema'->'table'->>'name' = ANY($4)
                        AND (position_counter, change_index) < ($5::text::numeric, $6)",
                    "UPDATE duplex.quarantine SET status = 'discarded', settled_at = UTC_TIMESTAMP(6),
                            note = 'overtaken by a TRUNCATE of the paused table'
                      WHERE link_id = ? AND source_site = ? AND target_site = ? AND status = 'held'
                        AND JSON_CONTAINS(?, JSON_QUOTE(JSON_UNQUOTE(JSON_EXTRACT(change_exact, '$.schema.table.name'))))
                        AND (position_counter, change_index) < (CAST(? AS DECIMAL(20, 0)), ?)",
                    &[
                        P::I32(link),
                        P::I32(source),
                        P::I32(target),
                        P::TextList(tables),
                        P::Text(Some(position_counter)),
                        P::I32(*change_index as i32),
                    ],
                ))
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(counter: &str, index: u32, kind: &str, outcome: &str) -> Entry {
        Entry::Conflict(ConflictEntry {
            table_name: "public.t".into(),
            row_key: "1".into(),
            kind: kind.into(),
            policy: "lww".into(),
            outcome: outcome.into(),
            local_version: r#"{"row":{"id":1},"vv":{}}"#.into(),
            incoming_version: r#"{"row":{"id":1},"vv":{}}"#.into(),
            source_position: counter.into(),
            position_counter: counter.into(),
            change_index: index,
            status: "settled".into(),
            incoming_change: None,
        })
    }

    #[test]
    fn a_record_of_the_same_change_replaces_the_staged_one_and_can_be_withdrawn() {
        let mut s = Staged::default();
        s.stage(conflict("10", 1, "update_update", "incoming"));
        s.stage(conflict("10", 2, "update_update", "incoming"));
        s.stage(conflict("10", 1, "update_update", "local"));
        s.stage(Entry::Supersede {
            table_name: "public.t".into(),
            row_key: "1".into(),
            position_counter: "10".into(),
            change_index: 3,
        });
        assert_eq!(s.entries.len(), 3, "the same change's record replaced");
        assert_eq!(s.entries[0], conflict("10", 1, "update_update", "local"));
        assert!(s.withdraw_conflict("10", 2, "update_update"));
        assert!(!s.withdraw_conflict("10", 2, "update_update"));
        assert_eq!(s.take().len(), 2);
        assert!(s.is_empty());
    }

    #[test]
    fn entries_ship_in_source_order_whatever_order_workers_wrote_them() {
        // Worker 2 wrote its (later) record first; a supersede settles the
        // conflict before it; a counter above 2^53 still orders exactly.
        let mut entries = [
            conflict("20", 1, "update_update", "incoming"),
            Entry::Supersede {
                table_name: "public.t".into(),
                row_key: "1".into(),
                position_counter: "10".into(),
                change_index: 5,
            },
            conflict("10", 2, "update_update", "parked"),
            conflict("18446744073709551614", 1, "insert_insert", "incoming"),
        ];
        entries.sort_by_key(Entry::source_order);
        let order: Vec<(u64, u32)> = entries.iter().map(Entry::source_order).collect();
        assert_eq!(
            order,
            [(10, 2), (10, 5), (20, 1), (18446744073709551614, 1)]
        );
    }

    #[test]
    fn entries_survive_the_outbox_and_oversized_ones_keep_what_identifies_them() {
        let e = conflict("42", 7, "insert_insert", "incoming");
        assert_eq!(decode(&encode(&e)), Some(e));
        let big = Entry::Quarantine(QuarantineEntry {
            table_name: "public.t".into(),
            op: "insert".into(),
            row_key: "9".into(),
            source_position: "0/2A".into(),
            position_counter: "42".into(),
            change_index: 1,
            change: "x".repeat(MAX_ENTRY_BYTES + 1),
            reason: "value too long".into(),
            change_exact: Some("{}".into()),
            status: "pending".into(),
        });
        let kept = decode(&encode(&big)).expect("decodes");
        let Entry::Quarantine(q) = kept else {
            panic!("a quarantine record")
        };
        assert!(q.change.len() < 1000, "the change is left out");
        assert!(q.change_exact.is_none());
        assert!(q
            .reason
            .starts_with("value too long -- the change itself could not be recorded"));
        assert_eq!((q.row_key.as_str(), q.change_index), ("9", 1));
    }

    #[test]
    fn held_changes_staged_before_a_truncate_are_discarded() {
        let held = |table: &str| {
            Entry::Quarantine(QuarantineEntry {
                table_name: format!("public.{table}"),
                op: "update".into(),
                row_key: "1".into(),
                source_position: "0/1".into(),
                position_counter: "1".into(),
                change_index: 1,
                change: "{}".into(),
                reason: "paused".into(),
                change_exact: Some(
                    serde_json::json!({"schema": {"table": {"schema": "public", "name": table}}})
                        .to_string(),
                ),
                status: "held".into(),
            })
        };
        let mut s = Staged::default();
        s.stage(held("a"));
        let mut other = held("b");
        if let Entry::Quarantine(q) = &mut other {
            q.change_index = 2;
        }
        s.stage(other);
        s.discard_held(&["a".to_string()]);
        let statuses: Vec<String> = s
            .take()
            .into_iter()
            .map(|e| match e {
                Entry::Quarantine(q) => q.status,
                _ => String::new(),
            })
            .collect();
        assert_eq!(statuses, ["discarded", "held"]);
    }
}
