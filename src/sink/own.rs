//! The applier's own target transactions, outside the source stream: a DBA's
//! settlement of a parked conflict, and a DBA's retry of a quarantined change.
//! Both run between source transactions, one per transaction, the same way on
//! every engine; an engine provides only the steps ([`Applier`]).

use crate::canonical::SourcePosition;
use crate::canonical::{ChangeOrigin, SourceForm};
use crate::mapping::DirectionMapping;
use crate::marker::now_micros;
use crate::sink::applier::{decide_and_write, read_local_key, write_decided, Applier};
use crate::sink::resolve::KeyRef;

/// Apply the conflicts a DBA settled (see `duplex.resolve_conflict`), each in
/// its own target transaction.
pub(crate) async fn apply_resolutions<S: Applier>(sink: &mut S) -> Result<(), S::Error> {
    if !sink.idle() {
        return Ok(());
    }
    let pending = sink.conflicts().pending_resolutions().await?;
    for p in pending {
        let Some(values) = p.incoming_row.as_ref().and_then(|r| r.key(&p.schema)) else {
            sink.conflicts()
                .finish(
                    p.conflict_id,
                    "open",
                    "the parked version has no key; settle the row by hand",
                )
                .await?;
            continue;
        };
        let key = KeyRef {
            encoded: crate::sink::resolve::encode_key(&values),
            values,
        };
        sink.begin_own().await?;
        let local = read_local_key(sink, &p.schema, key).await?;
        match crate::conflict::resolution_write(sink.site_id(), &p, &local, now_micros()) {
            Ok(change) => {
                // Committed as duplex's own transaction: the reader forwards
                // only the flagged row.
                write_decided(sink, change).await?;
                sink.commit_own().await?;
                sink.conflicts()
                    .finish(p.conflict_id, "resolved", "applied on both sites")
                    .await?;
                tracing::info!(conflict = p.conflict_id, table = %p.schema.table, "applied a DBA's resolution");
            }
            Err(reason) => {
                sink.rollback_own().await?;
                let status = if reason.starts_with("superseded") {
                    "superseded"
                } else {
                    "open"
                };
                sink.conflicts()
                    .finish(p.conflict_id, status, &reason)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Apply the quarantined changes a DBA asked to retry (see
/// `duplex.retry_quarantined`), oldest first, each in its own target
/// transaction and through conflict detection: a change a newer version has
/// overtaken is not written over it. Refused again, it stays quarantined with
/// the new reason.
///
/// The change is mapped with `mapping`, the configuration in force now, from
/// its form at the source: a DBA who excluded or renamed the column the
/// target refused, or changed a transform, retries into the new
/// configuration. (A record of an older duplex holds only the change as it
/// was mapped then: the columns excluded now are taken out of it.)
pub(crate) async fn apply_quarantine_retries<S: Applier>(
    sink: &mut S,
    mapping: &mut DirectionMapping,
) -> Result<usize, S::Error> {
    if !sink.idle() {
        return Ok(0);
    }
    let retries = sink.quarantine().pending_retries().await?;
    let count = retries.len();
    if count > 0 {
        // A retry follows a DBA's fix, which may be a changed column type.
        sink.forget_target_tables();
    }
    let stale_count = |s: &S| s.stats().stale.load(std::sync::atomic::Ordering::Relaxed);
    for r in retries {
        let (recorded, stale) = (sink.quarantine().recorded(), stale_count(sink));
        let table = r.change.table.table.clone();
        let mut origin = r.origin;
        let mapped = match r.source {
            Some(source) => mapping.map_keeping_source(source).map(|(change, source)| {
                origin.source = SourceForm::from_mapping(source);
                change
            }),
            None => {
                origin.source = SourceForm::Unknown;
                mapping.restrict_mapped(r.change)
            }
        };
        let Some(change) = mapped else {
            sink.quarantine()
                .settle(
                    r.quarantine_id,
                    "pending",
                    "not applied: the table no longer flows this way (duplex.link_tables.direction); discard the change, or let the table flow this way and retry",
                )
                .await?;
            continue;
        };
        sink.begin_own().await?;
        if let Err(e) = decide_and_write(sink, change, origin).await {
            // Not a refusal (those are quarantined again): the connection or
            // the control database failed. The record stays 'retry' and the
            // direction restarts.
            let _ = sink.rollback_own().await;
            return Err(e);
        }
        sink.commit_own().await?;
        sink.quarantine().confirm().await?;
        let (status, note) = if sink.quarantine().recorded() > recorded {
            ("pending", "refused again by the target: see reason")
        } else if stale_count(sink) > stale {
            (
                "retried",
                "not written: the target already holds a newer version of the row",
            )
        } else {
            ("retried", "applied")
        };
        sink.quarantine()
            .settle(r.quarantine_id, status, note)
            .await?;
        tracing::info!(quarantined = r.quarantine_id, %table, status, note, "retried a quarantined change");
    }
    Ok(count)
}

/// At the start of a direction, and when stopped tables resume: the changes
/// held for tables that are neither paused nor stopped are applied, in
/// source order, before the stream goes on, mapped with the configuration in
/// force now.
pub(crate) async fn release_held<S: Applier>(
    sink: &mut S,
    mapping: &mut DirectionMapping,
) -> Result<(), S::Error> {
    let active = sink.active_tables();
    let released = sink.quarantine().release_held(&active).await?;
    if released > 0 {
        tracing::info!(released, "table resumed: applying its held changes");
    }
    while apply_quarantine_retries(sink, mapping).await? > 0 {}
    Ok(())
}

/// Between source transactions: the stopped tables a DBA has resumed (by
/// discarding their statement records, after a resync) have their held
/// changes applied, in source order, before the stream goes on; from then
/// on their changes flow again.
pub(crate) async fn resume_stopped<S: Applier>(
    sink: &mut S,
    mapping: &mut DirectionMapping,
) -> Result<(), S::Error> {
    if !sink.idle() {
        return Ok(());
    }
    let resumed = sink.quarantine().resumed().await?;
    if resumed.is_empty() {
        return Ok(());
    }
    tracing::info!(tables = ?resumed, "stopped tables resumed (their statement records were discarded)");
    release_held(sink, mapping).await
}

/// Apply a page of rows copied by the initial sync in one target transaction
/// of duplex's own, through conflict detection (a row the target holds in a
/// newer version is not written over; one it holds concurrently is settled by
/// the policy and recorded).
pub(crate) async fn apply_snapshot_rows<S: Applier>(
    sink: &mut S,
    changes: Vec<(crate::canonical::RowChange, ChangeOrigin)>,
    at: Option<SourcePosition>,
) -> Result<(), S::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    sink.begin_own().await?;
    if let Some(at) = at {
        sink.mark_applied(at).await?;
    }
    sink.foreign_key_checks(false).await?;
    sink.pending_mut().extend(changes);
    if let Err(e) = crate::sink::applier::decide_pending(sink).await {
        let _ = sink.rollback_own().await;
        let _ = sink.foreign_key_checks(true).await;
        return Err(e);
    }
    sink.commit_own().await?;
    sink.stats()
        .target_commits
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    sink.foreign_key_checks(true).await?;
    sink.quarantine().confirm().await?;
    sink.conflicts().confirm().await?;
    Ok(())
}
