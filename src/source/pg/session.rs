//! The replication session: connects to the slot with the settings the decoder
//! relies on, receives messages while confirming applied positions, and opens and
//! closes transactions (dropping duplex's own).

use super::pgoutput::PG_EPOCH_OFFSET_US;
use super::{OpenTxn, PgSource, PgSourceSpec};
use crate::canonical::{ChangeEvent, SourcePosition, TableName, TxnMeta};
use crate::source::ready::Ready;
use crate::source::ConfirmedPosition;
use crate::source::SourceError;
use crate::stats::DirectionStats;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use std::collections::HashMap;
use std::sync::Arc;

/// Under a lease (`duplex run --ha`): end the session that still streams
/// from `slot` for an earlier holder of the link, and wait (5 s at most) for
/// the slot to be free. Same role, so no privilege beyond duplex's own is
/// needed. Best effort: if the slot stays busy, connecting says so.
async fn end_earlier_holder(catalog: &tokio_postgres::Client, site: &str, slot: &str) {
    let Ok(Some(Some(pid))) = crate::setup::slot_state(catalog, site, slot).await else {
        return;
    };
    match catalog
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
    {
        Ok(_) => tracing::warn!(slot, pid, "ended the session an earlier holder of the link's lease still streamed from the slot with"),
        Err(e) => {
            tracing::warn!(slot, error = %e, "cannot end the session that streams from the slot");
            return;
        }
    }
    let _ =
        crate::setup::slot_when_free(catalog, site, slot, std::time::Duration::from_secs(5)).await;
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
            .replication_config(&spec.slot, &spec.publication)
            .await?;
        config = config
            .with_start_lsn(start)
            .with_ack_lsn(start)
            .with_buffer_size(spec.buffer_events)
            .with_status_interval(std::time::Duration::from_secs(1))
            .with_wakeup_interval(std::time::Duration::from_secs(5))
            .with_application_name(format!("duplex {}", spec.slot))
            // Pin how the walsender renders values, so the decoder sees one format.
            .with_options("-c DateStyle=ISO,MDY -c IntervalStyle=iso_8601 -c TimeZone=UTC -c extra_float_digits=1 -c bytea_output=hex");
        if spec.take_over {
            end_earlier_holder(&catalog, &spec.endpoint.site_name, &spec.slot).await;
        }
        // The synced tables as the catalog names them now, by oid: a
        // table renamed while the direction runs is known by its oid. One
        // query for all of them.
        let tables: Vec<&TableName> = spec.tables.iter().collect();
        let quoted: Vec<String> = tables.iter().map(|t| crate::pg::quote_table(t)).collect();
        let oids = catalog
            .query(
                "SELECT to_regclass(q)::oid FROM unnest($1::text[]) WITH ORDINALITY AS u(q, n) ORDER BY n",
                &[&quoted],
            )
            .await
            .map_err(|source| {
                crate::Error::source_error(
                    &spec.endpoint.site_name,
                    SourceError::Catalog {
                        what: "the oids of the synced tables".into(),
                        source,
                    },
                )
            })?;
        let synced_oids: HashMap<u32, TableName> = oids
            .iter()
            .zip(&tables)
            .filter_map(|(r, t)| r.get::<_, Option<u32>>(0).map(|oid| (oid, (*t).clone())))
            .collect();
        let client = ReplicationClient::connect(config).await.map_err(|e| {
            crate::Error::source_error(&spec.endpoint.site_name, SourceError::PgStream(e))
        })?;
        Ok(PgSource {
            spec,
            client,
            catalog,
            relations: HashMap::new(),
            synced_oids,
            skipped: std::collections::HashSet::new(),
            types: HashMap::new(),
            txn: None,
            ready: Ready::default(),
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
            if let Some(ev) = self.ready.pop() {
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
}
