//! The conflicts table: every detected conflict is recorded in the control
//! schema's `duplex.conflicts` with both versions, its kind, the policy and the
//! outcome. Like quarantine records, a record is written before the target
//! transaction that settled the conflict commits and confirmed after it did;
//! at start, records of transactions the target never committed are removed
//! (the transaction is replayed and records them again).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use tokio_postgres::Client;

use super::{Conflict, Outcome, VersionInfo};
use crate::canonical::TableSchema;
use crate::pg::PgEndpoint;
use crate::sink::quarantine::{image_json, ChangeOrigin};
use crate::stats::DirectionStats;

#[derive(Debug, thiserror::Error)]
pub enum ConflictStoreError {
    #[error("cannot reach the control database to record a conflict: {0}")]
    Connect(#[from] crate::pg::ConnectError),
    #[error("cannot record a conflict in duplex.conflicts: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Where the conflicts of one direction are recorded.
#[derive(Debug, Clone)]
pub struct ConflictStoreSpec {
    pub control: PgEndpoint,
    pub link_id: u32,
    pub source_site: u32,
    pub target_site: u32,
}

pub struct ConflictStore {
    spec: ConflictStoreSpec,
    client: Option<Client>,
    stats: Arc<DirectionStats>,
    unconfirmed: Vec<i64>,
}

fn version_json(schema: &TableSchema, v: &VersionInfo) -> serde_json::Value {
    json!({
        "row": v.row.as_ref().map(|r| image_json(schema, r)),
        "vv": serde_json::to_value(&v.vv).unwrap_or_default(),
        "site": v.site,
        "ts": v.ts,
    })
}

impl ConflictStore {
    pub fn new(spec: ConflictStoreSpec, stats: Arc<DirectionStats>) -> ConflictStore {
        ConflictStore {
            spec,
            client: None,
            stats,
            unconfirmed: Vec::new(),
        }
    }

    async fn client(&mut self) -> Result<&Client, ConflictStoreError> {
        let client = match self.client.take() {
            Some(c) => c,
            None => self.spec.control.connect("duplex conflicts").await?,
        };
        Ok(self.client.insert(client))
    }

    /// See `Quarantine::reconcile`: the same rule, for conflict records.
    pub async fn reconcile(
        &mut self,
        resume_counter: Option<u64>,
    ) -> Result<(), ConflictStoreError> {
        let (link, site) = (self.spec.link_id as i32, self.spec.source_site as i32);
        let resume = resume_counter.unwrap_or(0).to_string();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE duplex.conflicts SET confirmed = true
                  WHERE link_id = $1 AND source_site = $2 AND NOT confirmed AND position_counter < $3::text::numeric",
                &[&link, &site, &resume],
            )
            .await?;
        client
            .execute(
                "DELETE FROM duplex.conflicts
                  WHERE link_id = $1 AND source_site = $2 AND NOT confirmed AND position_counter >= $3::text::numeric",
                &[&link, &site, &resume],
            )
            .await?;
        // The counter duplex reports is the direction's whole history, not
        // just this run's.
        let total: i64 = client
            .query_one(
                "SELECT count(*) FROM duplex.conflicts WHERE link_id = $1 AND source_site = $2",
                &[&link, &site],
            )
            .await?
            .get(0);
        self.stats
            .conflicts
            .store(u64::try_from(total).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    /// The target transaction that settled the recorded conflicts committed.
    pub async fn confirm(&mut self) -> Result<(), ConflictStoreError> {
        if self.unconfirmed.is_empty() {
            return Ok(());
        }
        let ids = std::mem::take(&mut self.unconfirmed);
        let client = self.client().await?;
        client
            .execute(
                "UPDATE duplex.conflicts SET confirmed = true WHERE conflict_id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(())
    }

    /// Record `conflict`, detected on the change at `origin`.
    pub async fn record(
        &mut self,
        schema: &TableSchema,
        conflict: &Conflict,
        origin: ChangeOrigin,
        key: &str,
    ) -> Result<(), ConflictStoreError> {
        let status = if conflict.outcome == Outcome::Parked {
            "open"
        } else {
            "settled"
        };
        let (link, source, target) = (
            self.spec.link_id as i32,
            self.spec.source_site as i32,
            self.spec.target_site as i32,
        );
        let local = version_json(schema, &conflict.local).to_string();
        let incoming = version_json(schema, &conflict.incoming).to_string();
        let client = self.client().await?;
        let result = client
            .query_opt(
                "INSERT INTO duplex.conflicts (link_id, source_site, target_site, table_name, row_key, kind, policy, outcome,
                                               local_version, incoming_version, source_position, position_counter,
                                               change_index, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10::text::jsonb, $11, $12::text::numeric, $13, $14)
                 ON CONFLICT (link_id, source_site, position_counter, change_index, kind)
                 DO UPDATE SET outcome = EXCLUDED.outcome, local_version = EXCLUDED.local_version,
                               incoming_version = EXCLUDED.incoming_version, status = EXCLUDED.status
                 RETURNING conflict_id, (xmax = 0) AS inserted",
                &[
                    &link,
                    &source,
                    &target,
                    &schema.table.to_string(),
                    &key,
                    &conflict.kind.as_str(),
                    &conflict.policy,
                    &conflict.outcome.as_str(),
                    &local,
                    &incoming,
                    &origin.position.to_string(),
                    &origin.position.counter().to_string(),
                    &(origin.index as i32),
                    &status,
                ],
            )
            .await;
        match result {
            Ok(row) => {
                if let Some(row) = row {
                    self.unconfirmed.push(row.get(0));
                    if row.get::<_, bool>(1) {
                        self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tracing::info!(table = %schema.table, key, kind = conflict.kind.as_str(),
                    outcome = conflict.outcome.as_str(), policy = conflict.policy, "conflict");
                Ok(())
            }
            Err(e) => {
                self.client = None;
                Err(e.into())
            }
        }
    }
}
