//! The conflicts table: every detected conflict is recorded in the control
//! schema's `duplex.conflicts` with both versions, its kind, the policy and the
//! outcome. Like quarantine records, a record is written in the target
//! transaction that settled the conflict, into the target's outbox, and
//! shipped to the control schema from there (see `journal::outbox`): it
//! exists exactly when that transaction committed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;

use crate::canonical::ChangeOrigin;
use crate::canonical::TableSchema;
use crate::conflict::{Conflict, Outcome, PendingResolution, VersionInfo};
use crate::control::{Sql, P};
use crate::journal::images::{image_json, readable, storable_text};
use crate::journal::outbox::{ConflictEntry, Entry};
use crate::journal::protocol::{JournalConn, JournalSpec, JournalTable};
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
/// back: `journal::outbox` drops the row where the control schema refuses
/// it): values abridged and NUL characters shown, so that any control
/// schema can store it; the exact parked row is in `incoming_change`.
fn version_json(schema: &TableSchema, v: &VersionInfo) -> serde_json::Value {
    readable(json!({
        "row": v.row.as_ref().map(|r| image_json(schema, r)),
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

    /// Stage the conflicts detected in one decided batch, with the open
    /// target transaction (see `journal::outbox`).
    pub fn record_all(&mut self, conflicts: &[(Arc<TableSchema>, Conflict, ChangeOrigin, String)]) {
        for (schema, conflict, origin, key) in conflicts {
            self.record(schema, conflict, origin, key);
        }
    }

    /// Stage the record of `conflict`, detected on the change at `origin`.
    pub fn record(
        &mut self,
        schema: &TableSchema,
        conflict: &Conflict,
        origin: &ChangeOrigin,
        key: &str,
    ) {
        let status = if conflict.outcome == Outcome::Parked {
            "open"
        } else {
            "settled"
        };
        let key = storable_text(key);
        self.journal.staged.stage(Entry::Conflict(ConflictEntry {
            table_name: schema.table.to_string(),
            row_key: key.to_string(),
            kind: conflict.kind.as_str().into(),
            policy: conflict.policy.into(),
            outcome: conflict.outcome.as_str().into(),
            local_version: version_json(schema, &conflict.local).to_string(),
            incoming_version: version_json(schema, &conflict.incoming).to_string(),
            source_position: origin.position.to_string(),
            position_counter: origin.position.counter().to_string(),
            change_index: origin.index,
            status: status.into(),
            // A parked version must be applicable later, exactly: kept typed
            // (in a form every control schema stores, see `canonical::value`).
            incoming_change: parked_change(schema, conflict).map(|v| v.to_string()),
        }));
        if conflict.outcome == Outcome::Parked {
            self.parked()
                .insert((schema.table.to_string(), key.to_string()));
        }
        // At debug: a busy two-way workload meets thousands a second, each
        // in duplex.conflicts and the metrics.
        tracing::debug!(table = %schema.table, key = %key, kind = conflict.kind.as_str(),
            outcome = conflict.outcome.as_str(), policy = conflict.policy, "conflict");
    }

    /// Remove the record of `kind` detected on the change at `origin`,
    /// staged with the target transaction now open: a later batch of the
    /// same source transaction decided the row again, without that conflict
    /// (sink::resolve, `Carry`). The records the new decision found replace
    /// those of the same change.
    pub fn withdraw(&mut self, origin: ChangeOrigin, kind: crate::conflict::ConflictKind) {
        self.journal.staged.withdraw_conflict(
            &origin.position.counter().to_string(),
            origin.index,
            kind.as_str(),
        );
    }

    /// The entries staged with the open target transaction, taken to be
    /// written in it.
    pub fn take_staged(&mut self) -> Vec<Entry> {
        self.journal.staged.take()
    }

    /// The open target transaction rolled back: so did its records.
    pub fn drop_staged(&mut self) {
        self.journal.staged.clear();
    }
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

    /// A version was applied to `table`/`key` without a conflict, by the
    /// change at `origin` (`None`: by a transaction of duplex's own, a copy
    /// or a retry, whose origin is no place in the stream): parked conflicts
    /// of that row are moot (staged with the target transaction).
    pub fn applied(&mut self, table: &str, key: &str, origin: Option<&ChangeOrigin>) {
        let removed = self.parked().remove(&(table.to_string(), key.to_string()));
        if removed {
            let (counter, index) = match origin {
                Some(o) => (o.position.counter(), o.index),
                None => (u64::MAX, u32::MAX),
            };
            self.journal.staged.stage(Entry::Supersede {
                table_name: table.to_string(),
                row_key: key.to_string(),
                position_counter: counter.to_string(),
                change_index: index,
            });
        }
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
