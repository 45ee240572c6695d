//! The conflicts table: every detected conflict is recorded in the control
//! schema's `duplex.conflicts` with both versions, its kind, the policy and the
//! outcome. Like quarantine records, a record is written before the target
//! transaction that settled the conflict commits and confirmed after it did;
//! at start, records of transactions the target never committed are removed
//! (the transaction is replayed and records them again).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;

use crate::canonical::ChangeOrigin;
use crate::canonical::TableSchema;
use crate::conflict::{Conflict, Outcome, PendingResolution, VersionInfo};
use crate::control::{ControlDb, Sql, P};
use crate::journal::images::{image_json, readable, storable_text};
use crate::journal::protocol::{refusal_reason, JournalConn, JournalSpec, JournalTable};
use crate::journal::JournalError;
use crate::stats::DirectionStats;

pub struct ConflictStore {
    journal: JournalConn,
    stats: Arc<DirectionStats>,
    /// Keys with parked conflicts on this target: (table, key). Loaded at
    /// start; a version applied later for one of them makes them moot.
    /// Shared by the direction's apply workers (see [`ConflictStore::share_parked`]).
    open: Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
}

/// A version for a DBA to read (and, without its row, for duplex to read
/// back): values abridged and NUL characters shown, so that any control
/// schema can store it; the exact parked row is in `incoming_change`.
fn version_json(schema: &TableSchema, v: &VersionInfo, with_row: bool) -> serde_json::Value {
    readable(json!({
        "row": v.row.as_ref().filter(|_| with_row).map(|r| image_json(schema, r)),
        "vv": serde_json::to_value(&v.vv).unwrap_or_default(),
        "site": v.site,
        "ts": v.ts,
    }))
}

/// A parked version must be applicable later, exactly: kept typed.
fn parked_change(schema: &TableSchema, conflict: &Conflict) -> Option<serde_json::Value> {
    (conflict.outcome == Outcome::Parked)
        .then(|| {
            serde_json::to_value(json!({ "schema": schema, "row": conflict.incoming.row })).ok()
        })
        .flatten()
}

/// The conflicts' table.
static CONFLICTS: JournalTable = JournalTable {
    name: "duplex.conflicts",
    id_column: "conflict_id",
    note_column: "resolution_note",
    settled_column: "resolved_at",
    open_status: "open",
    what: "a conflict",
    application_name: "duplex conflicts",
};

impl ConflictStore {
    /// Can the control database be reached now?
    pub async fn control_reachable(&mut self) -> bool {
        self.journal.reachable().await
    }

    pub fn new(spec: JournalSpec, stats: Arc<DirectionStats>) -> ConflictStore {
        ConflictStore {
            journal: JournalConn::new(spec, &CONFLICTS),
            stats,
            open: Default::default(),
        }
    }

    /// Know the parked conflicts `other` knows, and those found later, as
    /// one (apply workers of a direction: a conflict parked by one may be
    /// made moot by a later version another applies).
    pub fn share_parked(&mut self, other: &ConflictStore) {
        self.open = other.open.clone();
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(String, String)>> {
        // A panic elsewhere cannot leave the set half-changed: take it as is.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See `Quarantine::reconcile`: the same rule, for conflict records.
    pub async fn reconcile(&mut self, resume_counter: Option<u64>) -> Result<(), JournalError> {
        self.journal.reconcile(resume_counter).await?;
        let (link, site) = (
            self.journal.spec.link_id as i32,
            self.journal.spec.source_site as i32,
        );
        let client = self.journal.client().await?;
        // The counter duplex reports is the direction's whole history, not
        // just this run's.
        let total: i64 = client
            .row(Sql::new(
                "count the conflicts",
                "SELECT count(*) AS n FROM duplex.conflicts WHERE link_id = $1 AND source_site = $2",
                "SELECT COUNT(*) AS n FROM duplex.conflicts WHERE link_id = ? AND source_site = ?",
                &[P::I32(link), P::I32(site)],
            ))
            .await?
            .map(|r| r.parse("n"))
            .transpose()?
            .unwrap_or(0);
        self.stats
            .conflicts
            .store(u64::try_from(total).unwrap_or(0), Ordering::Relaxed);
        let keys = self.open_keys().await?;
        *self.parked() = keys;
        Ok(())
    }

    /// The target transaction that settled the recorded conflicts committed.
    pub async fn confirm(&mut self) -> Result<(), JournalError> {
        self.journal.confirm().await
    }

    /// Record the conflicts detected in one decided batch. They are written
    /// while the target transaction holds the batch's row locks, so on a
    /// PostgreSQL control schema they go in one statement, not one round trip
    /// each (a batch of hot rows can hold hundreds).
    pub async fn record_all(
        &mut self,
        conflicts: &[(Arc<TableSchema>, Conflict, ChangeOrigin, String)],
    ) -> Result<(), JournalError> {
        if conflicts.len() < 2 || !matches!(self.journal.client().await?, ControlDb::Pg(_)) {
            for (schema, conflict, origin, key) in conflicts {
                self.record(schema, conflict, origin, key).await?;
            }
            return Ok(());
        }
        // One record per (position, index, kind): ON CONFLICT may not touch a
        // row twice in one statement.
        let mut seen = std::collections::HashSet::new();
        let mut records = Vec::with_capacity(conflicts.len());
        for (schema, conflict, origin, key) in conflicts.iter().rev() {
            let id = (
                origin.position.counter(),
                origin.index,
                conflict.kind.as_str(),
            );
            if !seen.insert(id) {
                continue;
            }
            records.push(json!({
                "table_name": schema.table.to_string(),
                "row_key": storable_text(key),
                "kind": conflict.kind.as_str(),
                "policy": conflict.policy,
                "outcome": conflict.outcome.as_str(),
                "local_version": version_json(schema, &conflict.local, true),
                "incoming_version": version_json(schema, &conflict.incoming, true),
                "source_position": origin.position.to_string(),
                "position_counter": origin.position.counter().to_string(),
                "change_index": origin.index,
                "status": if conflict.outcome == Outcome::Parked { "open" } else { "settled" },
                "incoming_change": parked_change(schema, conflict),
            }));
        }
        records.reverse();
        let records = serde_json::Value::Array(records).to_string();
        let (link, source, target) = (
            self.journal.spec.link_id as i32,
            self.journal.spec.source_site as i32,
            self.journal.spec.target_site as i32,
        );
        let client = self.journal.client().await?;
        let result = client
            .rows(Sql::new(
                "record conflicts",
                "INSERT INTO duplex.conflicts (link_id, source_site, target_site, table_name, row_key, kind, policy, outcome,
                                               local_version, incoming_version, source_position, position_counter,
                                               change_index, status, incoming_change)
                 SELECT $1, $2, $3, r.table_name, r.row_key, r.kind, r.policy, r.outcome, r.local_version, r.incoming_version,
                        r.source_position, r.position_counter::numeric, r.change_index, r.status, r.incoming_change
                   FROM jsonb_to_recordset($4::text::jsonb) AS r(table_name text, row_key text, kind text, policy text,
                        outcome text, local_version jsonb, incoming_version jsonb, source_position text,
                        position_counter text, change_index integer, status text, incoming_change jsonb)
                 ON CONFLICT (link_id, source_site, position_counter, change_index, kind)
                 DO UPDATE SET outcome = EXCLUDED.outcome, local_version = EXCLUDED.local_version,
                               incoming_version = EXCLUDED.incoming_version, status = EXCLUDED.status
                 RETURNING conflict_id, (xmax = 0) AS inserted, table_name, kind, outcome",
                // Not used: a MySQL control schema takes the loop above.
                "",
                &[P::I32(link), P::I32(source), P::I32(target), P::Text(Some(&records))],
            ))
            .await;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                // One record at a time instead: each keeps what it can (see
                // `record`), so one refused record does not stop the batch.
                tracing::warn!(error = %e, "cannot record the batch's conflicts in one statement; recording them one by one");
                self.journal.drop_client();
                for (schema, conflict, origin, key) in conflicts {
                    self.record(schema, conflict, origin, key).await?;
                }
                return Ok(());
            }
        };
        for r in rows {
            self.journal.written(r.parse("conflict_id")?);
            if r.bool("inserted")? {
                self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                self.stats.count_conflict(
                    &r.text("table_name")?,
                    &r.text("kind")?,
                    &r.text("outcome")?,
                );
            }
        }
        for (schema, conflict, _, key) in conflicts {
            if conflict.outcome == Outcome::Parked {
                self.parked()
                    .insert((schema.table.to_string(), key.to_string()));
            }
            tracing::info!(table = %schema.table, key, kind = conflict.kind.as_str(),
                outcome = conflict.outcome.as_str(), policy = conflict.policy, "conflict");
        }
        Ok(())
    }

    /// Record `conflict`, detected on the change at `origin`.
    pub async fn record(
        &mut self,
        schema: &TableSchema,
        conflict: &Conflict,
        origin: &ChangeOrigin,
        key: &str,
    ) -> Result<(), JournalError> {
        let status = if conflict.outcome == Outcome::Parked {
            "open"
        } else {
            "settled"
        };
        let key = storable_text(key);
        let full = ConflictRecord {
            local: version_json(schema, &conflict.local, true).to_string(),
            incoming: version_json(schema, &conflict.incoming, true).to_string(),
            // A parked version must be applicable later, exactly: kept typed
            // (in a form every control schema stores, see `canonical::value`).
            change: (conflict.outcome == Outcome::Parked)
                .then(|| {
                    serde_json::to_string(
                        &json!({ "schema": schema, "row": conflict.incoming.row }),
                    )
                    .ok()
                })
                .flatten(),
        };
        // Twice: a connection lost in between is not the record's fault.
        let mut result = self
            .insert(schema, conflict, origin, &key, status, &full)
            .await;
        if result.is_err() {
            result = self
                .insert(schema, conflict, origin, &key, status, &full)
                .await;
        }
        let (id, inserted) = match result {
            Ok(r) => r,
            Err(e) => {
                // The rows cannot be stored (too large for the control
                // database, a constraint a DBA added): record the conflict
                // with both versions' vectors but without their rows, so
                // that the stream goes on and the conflict is on record.
                let why = refusal_reason(e)?;
                tracing::error!(table = %schema.table, key = %key, error = %why,
                    "cannot record the conflict's rows in duplex.conflicts; recording it without them");
                let minimal = ConflictRecord {
                    local: version_json(schema, &conflict.local, false).to_string(),
                    incoming: version_json(schema, &conflict.incoming, false).to_string(),
                    change: None,
                };
                self.insert(schema, conflict, origin, &key, status, &minimal)
                    .await?
            }
        };
        self.journal.written(id);
        if inserted {
            self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
            self.stats.count_conflict(
                &schema.table.to_string(),
                conflict.kind.as_str(),
                conflict.outcome.as_str(),
            );
        }
        if conflict.outcome == Outcome::Parked {
            self.parked()
                .insert((schema.table.to_string(), key.to_string()));
        }
        tracing::info!(table = %schema.table, key = %key, kind = conflict.kind.as_str(),
            outcome = conflict.outcome.as_str(), policy = conflict.policy, "conflict");
        Ok(())
    }

    /// Remove the record of `kind` detected on the change at `origin` by the
    /// target transaction now open (not yet confirmed): a later batch of the
    /// same source transaction decided the row again, without that conflict
    /// (sink::resolve, `Carry`). The records the new decision found are
    /// upserted over the same change.
    pub async fn withdraw(
        &mut self,
        origin: ChangeOrigin,
        kind: crate::conflict::ConflictKind,
    ) -> Result<(), JournalError> {
        let (link, source) = (
            self.journal.spec.link_id as i32,
            self.journal.spec.source_site as i32,
        );
        let counter = origin.position.counter().to_string();
        let client = self.journal.client().await?;
        let removed = client
            .exec(Sql::new(
                "withdraw a conflict record",
                "DELETE FROM duplex.conflicts
                  WHERE link_id = $1 AND source_site = $2 AND position_counter = $3::text::numeric
                    AND change_index = $4 AND kind = $5 AND NOT confirmed",
                "DELETE FROM duplex.conflicts
                  WHERE link_id = ? AND source_site = ? AND position_counter = CAST(? AS DECIMAL(20, 0))
                    AND change_index = ? AND kind = ? AND NOT confirmed",
                &[
                    P::I32(link),
                    P::I32(source),
                    P::Text(Some(&counter)),
                    P::I32(origin.index as i32),
                    P::Text(Some(kind.as_str())),
                ],
            ))
            .await?;
        if removed > 0 {
            let _ = self
                .stats
                .conflicts
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(removed))
                });
        }
        Ok(())
    }

    /// Upsert one conflict record; returns its id and whether it is new.
    async fn insert(
        &mut self,
        schema: &TableSchema,
        conflict: &Conflict,
        origin: &ChangeOrigin,
        key: &str,
        status: &str,
        r: &ConflictRecord,
    ) -> Result<(i64, bool), JournalError> {
        let (link, source, target) = (
            self.journal.spec.link_id as i32,
            self.journal.spec.source_site as i32,
            self.journal.spec.target_site as i32,
        );
        let (table, position, counter) = (
            schema.table.to_string(),
            origin.position.to_string(),
            origin.position.counter().to_string(),
        );
        let client = self.journal.client().await?;
        let result = client
            .upsert_returning_id(Sql::new(
                "record a conflict",
                "INSERT INTO duplex.conflicts (link_id, source_site, target_site, table_name, row_key, kind, policy, outcome,
                                               local_version, incoming_version, source_position, position_counter,
                                               change_index, status, incoming_change)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10::text::jsonb, $11, $12::text::numeric, $13, $14, $15::text::jsonb)
                 ON CONFLICT (link_id, source_site, position_counter, change_index, kind)
                 DO UPDATE SET outcome = EXCLUDED.outcome, local_version = EXCLUDED.local_version,
                               incoming_version = EXCLUDED.incoming_version, status = EXCLUDED.status,
                               incoming_change = EXCLUDED.incoming_change
                 RETURNING conflict_id, (xmax = 0) AS inserted",
                "INSERT INTO duplex.conflicts (link_id, source_site, target_site, table_name, row_key, kind, policy, outcome,
                                               local_version, incoming_version, source_position, position_counter,
                                               change_index, status, incoming_change)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS DECIMAL(20, 0)), ?, ?, ?)
                 ON DUPLICATE KEY UPDATE conflict_id = LAST_INSERT_ID(conflict_id), outcome = VALUES(outcome),
                                         local_version = VALUES(local_version),
                                         incoming_version = VALUES(incoming_version), status = VALUES(status),
                                         incoming_change = VALUES(incoming_change)",
                &[
                    P::I32(link),
                    P::I32(source),
                    P::I32(target),
                    P::Text(Some(&table)),
                    P::Text(Some(key)),
                    P::Text(Some(conflict.kind.as_str())),
                    P::Text(Some(conflict.policy)),
                    P::Text(Some(conflict.outcome.as_str())),
                    P::Text(Some(&r.local)),
                    P::Text(Some(&r.incoming)),
                    P::Text(Some(&position)),
                    P::Text(Some(&counter)),
                    P::I32(origin.index as i32),
                    P::Text(Some(status)),
                    P::Text(r.change.as_deref()),
                ],
            ))
            .await;
        if result.is_err() {
            // Reconnect next time: the connection may be gone.
            self.journal.drop_client();
        }
        Ok(result?)
    }
}

/// One conflict record's versions and parked change.
struct ConflictRecord {
    local: String,
    incoming: String,
    change: Option<String>,
}

fn version_from_json(v: &serde_json::Value) -> Option<VersionInfo> {
    Some(VersionInfo {
        row: None,
        vv: serde_json::from_value(v.get("vv")?.clone()).ok()?,
        site: u32::try_from(v.get("site")?.as_u64()?).ok()?,
        ts: v.get("ts")?.as_i64()?,
    })
}

impl ConflictStore {
    /// Conflicts of this direction a DBA has settled and duplex has not
    /// applied yet. One that cannot be read back is marked with a note.
    pub async fn pending_resolutions(&mut self) -> Result<Vec<PendingResolution>, JournalError> {
        let (link, source, target) = (
            self.journal.spec.link_id as i32,
            self.journal.spec.source_site as i32,
            self.journal.spec.target_site as i32,
        );
        let client = self.journal.client().await?;
        let rows = client
            .rows(Sql::new(
                "read the conflicts a DBA settled",
                "SELECT conflict_id, resolution, local_version::text AS local_version,
                        incoming_version::text AS incoming_version, incoming_change::text AS incoming_change
                   FROM duplex.conflicts
                  WHERE link_id = $1 AND source_site = $2 AND target_site = $3 AND status = 'resolving' AND confirmed
                  ORDER BY conflict_id LIMIT 100",
                "SELECT conflict_id, resolution, local_version, incoming_version, incoming_change
                   FROM duplex.conflicts
                  WHERE link_id = ? AND source_site = ? AND target_site = ? AND status = 'resolving' AND confirmed
                  ORDER BY conflict_id LIMIT 100",
                &[P::I32(link), P::I32(source), P::I32(target)],
            ))
            .await?;
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for r in rows {
            let id: i64 = r.parse("conflict_id")?;
            let parsed = (|| {
                let resolution: String = r.text("resolution").ok()?;
                let local: serde_json::Value =
                    serde_json::from_str(&r.text("local_version").ok()?).ok()?;
                let incoming: serde_json::Value =
                    serde_json::from_str(&r.text("incoming_version").ok()?).ok()?;
                let change: serde_json::Value =
                    serde_json::from_str(&r.opt("incoming_change").ok()??).ok()?;
                let schema: TableSchema =
                    serde_json::from_value(change.get("schema")?.clone()).ok()?;
                let row = serde_json::from_value(change.get("row")?.clone()).ok()?;
                Some(PendingResolution {
                    conflict_id: id,
                    take_incoming: resolution == "incoming",
                    schema: std::sync::Arc::new(schema),
                    incoming_row: row,
                    incoming: version_from_json(&incoming)?,
                    local: version_from_json(&local)?,
                })
            })();
            match parsed {
                Some(p) => out.push(p),
                None => unreadable.push(id),
            }
        }
        for id in unreadable {
            self.finish(
                id,
                "open",
                "duplex could not read this conflict's parked version back; settle the row by hand",
            )
            .await?;
        }
        Ok(out)
    }

    /// Record what became of a settled conflict: `resolved`, `superseded`
    /// (the row changed since), or back to `open` with a note.
    pub async fn finish(
        &mut self,
        conflict_id: i64,
        status: &str,
        note: &str,
    ) -> Result<(), JournalError> {
        self.journal.settle(conflict_id, status, note).await
    }

    /// Any parked conflicts here?
    pub fn has_open(&self) -> bool {
        !self.parked().is_empty()
    }

    /// A version was applied to `table`/`key` without a conflict: parked
    /// conflicts of that row are moot.
    pub async fn applied(&mut self, table: &str, key: &str) -> Result<(), JournalError> {
        let removed = self.parked().remove(&(table.to_string(), key.to_string()));
        if removed {
            self.supersede(table, key).await?;
        }
        Ok(())
    }

    /// Open conflicts on this target for `table`/`key` are moot: a version that
    /// has seen both was applied.
    pub async fn supersede(&mut self, table: &str, key: &str) -> Result<(), JournalError> {
        let (link, target) = (
            self.journal.spec.link_id as i32,
            self.journal.spec.target_site as i32,
        );
        let client = self.journal.client().await?;
        client
            .exec(Sql::new(
                "supersede parked conflicts",
                "UPDATE duplex.conflicts SET status = 'superseded', resolved_at = now(),
                        resolution_note = 'a later version that has seen both was applied'
                  WHERE link_id = $1 AND target_site = $2 AND table_name = $3 AND row_key = $4 AND status = 'open'",
                "UPDATE duplex.conflicts SET status = 'superseded', resolved_at = UTC_TIMESTAMP(6),
                        resolution_note = 'a later version that has seen both was applied'
                  WHERE link_id = ? AND target_site = ? AND table_name = ? AND row_key = ? AND status = 'open'",
                &[P::I32(link), P::I32(target), P::Text(Some(table)), P::Text(Some(key))],
            ))
            .await?;
        Ok(())
    }

    /// Keys with open (parked) conflicts on this target, as (table, key).
    pub async fn open_keys(
        &mut self,
    ) -> Result<std::collections::HashSet<(String, String)>, JournalError> {
        let (link, target) = (
            self.journal.spec.link_id as i32,
            self.journal.spec.target_site as i32,
        );
        let client = self.journal.client().await?;
        client
            .rows(Sql::new(
                "read the parked conflicts",
                "SELECT table_name, row_key FROM duplex.conflicts WHERE link_id = $1 AND target_site = $2 AND status = 'open'",
                "SELECT table_name, row_key FROM duplex.conflicts WHERE link_id = ? AND target_site = ? AND status = 'open'",
                &[P::I32(link), P::I32(target)],
            ))
            .await?
            .iter()
            .map(|r| Ok((r.text("table_name")?, r.text("row_key")?)))
            .collect()
    }
}
