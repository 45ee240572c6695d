//! Quarantine: a change the target cannot take (a value the column cannot
//! hold, a constraint the target enforces) is recorded in the control schema's
//! `duplex.quarantine` with its reason and source position, and the stream
//! goes on. Nothing is dropped silently (design invariant 8).
//!
//! The record is written before the target transaction that skipped the change
//! commits, and keyed by (link, source site, position, index in the source
//! transaction), so a replay after a crash finds it already there.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use tokio_postgres::Client;

use crate::canonical::{Row, RowChange, SourcePosition, TableSchema, Value};
use crate::pg::PgEndpoint;
use crate::stats::DirectionStats;

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("cannot reach the control database to quarantine a change: {0}")]
    Connect(#[from] crate::pg::ConnectError),
    #[error("cannot record a quarantined change in duplex.quarantine: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Where quarantined changes of one direction go.
#[derive(Debug, Clone)]
pub struct QuarantineSpec {
    pub control: PgEndpoint,
    pub link_id: u32,
    pub source_site: u32,
    pub target_site: u32,
}

pub struct Quarantine {
    spec: QuarantineSpec,
    client: Option<Client>,
    stats: Arc<DirectionStats>,
    /// Records written in the open target transaction, confirmed after it commits.
    unconfirmed: Vec<i64>,
}

/// Where a change sits in the source's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeOrigin {
    pub position: SourcePosition,
    /// Index of the change inside its source transaction (from 1).
    pub index: u32,
}

impl Quarantine {
    pub fn new(spec: QuarantineSpec, stats: Arc<DirectionStats>) -> Quarantine {
        Quarantine {
            spec,
            client: None,
            stats,
            unconfirmed: Vec::new(),
        }
    }

    async fn client(&mut self) -> Result<&Client, QuarantineError> {
        let client = match self.client.take() {
            Some(c) => c,
            None => self.spec.control.connect("duplex quarantine").await?,
        };
        Ok(self.client.insert(client))
    }

    /// At start, given the target's resume position (the end of the last
    /// applied source transaction): unconfirmed records of transactions that
    /// start before it were committed with the target (confirm them); the others
    /// belong to a transaction that rolled back and is about to be replayed
    /// (delete them: the replay records the change again if it still fails).
    /// A record's position is its transaction's start, strictly below that
    /// transaction's end.
    pub async fn reconcile(&mut self, resume_counter: Option<u64>) -> Result<(), QuarantineError> {
        let (link, site) = (self.spec.link_id as i32, self.spec.source_site as i32);
        let client = self.client().await?;
        reconcile_unconfirmed(client, "duplex.quarantine", link, site, resume_counter).await?;
        Ok(())
    }

    /// The target transaction holding the recorded skips committed.
    pub async fn confirm(&mut self) -> Result<(), QuarantineError> {
        if self.unconfirmed.is_empty() {
            return Ok(());
        }
        let ids = std::mem::take(&mut self.unconfirmed);
        let client = self.client().await?;
        client
            .execute(
                "UPDATE duplex.quarantine SET confirmed = true WHERE quarantine_id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(())
    }

    /// Keep `change` with `reason`. Unconfirmed until [`Quarantine::confirm`].
    pub async fn record(
        &mut self,
        change: &RowChange,
        origin: ChangeOrigin,
        key: &str,
        reason: &str,
    ) -> Result<(), QuarantineError> {
        let body = json!({
            "before": change.before.as_ref().map(|r| image_json(&change.table, r)),
            "after": change.after.as_ref().map(|r| image_json(&change.table, r)),
            "marker": serde_json::from_str::<serde_json::Value>(&change.marker.to_json()).unwrap_or_default(),
        });
        let (link, source, target) = (
            self.spec.link_id as i32,
            self.spec.source_site as i32,
            self.spec.target_site as i32,
        );
        let client = self.client().await?;
        let result = client
            .query_opt(
                "INSERT INTO duplex.quarantine (link_id, source_site, target_site, table_name, op, row_key, source_position,
                                                position_counter, change_index, change, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::numeric, $9, $10::text::jsonb, $11)
                 ON CONFLICT (link_id, source_site, position_counter, change_index)
                 DO UPDATE SET reason = EXCLUDED.reason, change = EXCLUDED.change
                 RETURNING quarantine_id, (xmax = 0) AS inserted",
                &[
                    &link,
                    &source,
                    &target,
                    &change.table.table.to_string(),
                    &change.op.to_string(),
                    &key,
                    &origin.position.to_string(),
                    &origin.position.counter().to_string(),
                    &(origin.index as i32),
                    &body.to_string(),
                    &reason,
                ],
            )
            .await;
        match result {
            Ok(row) => {
                if let Some(row) = row {
                    self.unconfirmed.push(row.get(0));
                    if row.get::<_, bool>(1) {
                        self.stats.quarantined.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tracing::warn!(table = %change.table.table, key, reason, position = %origin.position, "change quarantined");
                Ok(())
            }
            Err(e) => {
                // Reconnect next time: the connection may be gone.
                self.client = None;
                Err(e.into())
            }
        }
    }
}

/// Records of one direction (`link`, `source site`) in `table` written before
/// a target commit that a crash may have prevented: those of transactions
/// before the target's resume point committed (confirm them), the others are
/// replayed and recorded again (delete them). A record's position is its
/// transaction's start, strictly below that transaction's end. `table` is one
/// of duplex's own tables, never configuration.
pub(crate) async fn reconcile_unconfirmed(
    client: &Client,
    table: &str,
    link: i32,
    site: i32,
    resume_counter: Option<u64>,
) -> Result<(), tokio_postgres::Error> {
    let resume = resume_counter.unwrap_or(0).to_string();
    client
        .execute(
            &format!(
                "UPDATE {table} SET confirmed = true
                  WHERE link_id = $1 AND source_site = $2 AND NOT confirmed AND position_counter < $3::text::numeric"
            ),
            &[&link, &site, &resume],
        )
        .await?;
    client
        .execute(
            &format!(
                "DELETE FROM {table}
                  WHERE link_id = $1 AND source_site = $2 AND NOT confirmed AND position_counter >= $3::text::numeric"
            ),
            &[&link, &site, &resume],
        )
        .await?;
    Ok(())
}

/// A row image as `{column: {"type": kind, "value": ...}}`; columns the source
/// did not send (unchanged TOAST) are left out.
pub(crate) fn image_json(schema: &TableSchema, row: &Row) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (i, v) in row.0.iter().enumerate() {
        if let (Some(col), Some(v)) = (schema.columns.get(i), v) {
            map.insert(
                col.name.clone(),
                json!({ "type": v.kind_name(), "value": value_json(v) }),
            );
        }
    }
    serde_json::Value::Object(map)
}

/// A value for a DBA to read: numbers as numbers where JSON can hold them
/// exactly, everything else as its PostgreSQL text form.
fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Text(s) | Value::Enum(s) => json!(s),
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(value_json).collect()),
        Value::Time(us) => json!(us),
        other => match crate::pg::types::encode_text(other) {
            Ok(text) => json!(text),
            Err(_) => json!(format!("{other:?}")),
        },
    }
}
