-- duplex control schema, migration 20: retention guardrails.
--
-- While a direction cannot apply (its target down, a long error), its
-- source keeps what it has not applied only so long: a PostgreSQL slot's WAL
-- until max_slot_wal_keep_size invalidates the slot, a MySQL server's
-- binlogs until they are purged. Then the changes are gone. duplex reads
-- every source every few seconds, whatever the direction's state, and warns
-- before that happens.

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS retention_warn_bytes bigint NOT NULL DEFAULT 1073741824
        CHECK (retention_warn_bytes > 0);

COMMENT ON COLUMN duplex.links.retention_warn_bytes IS
    'warn (link_overview.retention_warning) when a source slot of the link is this close to being invalidated (safe_wal_size), or a source keeps this much the peer has not applied (WAL where nothing bounds it, binlog)';

ALTER TABLE duplex.link_status
    ADD COLUMN IF NOT EXISTS retained_bytes bigint,
    ADD COLUMN IF NOT EXISTS wal_status text,
    ADD COLUMN IF NOT EXISTS safe_wal_bytes bigint,
    ADD COLUMN IF NOT EXISTS oldest_binlog text,
    ADD COLUMN IF NOT EXISTS binlog_headroom_files bigint,
    ADD COLUMN IF NOT EXISTS retention_warning text,
    ADD COLUMN IF NOT EXISTS retention_checked_at timestamptz;

-- Appended: how long the source keeps what the direction has not applied.
CREATE OR REPLACE VIEW duplex.link_overview AS
SELECT l.link_id, l.name AS link, s.name AS source, t.name AS target,
       coalesce(st.state, CASE WHEN l.enabled THEN cs.state ELSE 'paused' END, 'not started') AS state,
       st.source_position, st.applied_position, st.lag_seconds, st.lag_bytes, st.queued_events,
       st.applied_txns, st.applied_rows, st.inserted, st.updated, st.deleted,
       st.conflicts, st.quarantined,
       (SELECT count(*) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.status = 'held' AND q.confirmed) AS held,
       st.echo_txns_skipped, st.last_applied_commit_at, st.last_error, st.last_error_at,
       cs.state AS config_state, cs.message AS config_message, st.updated_at,
       CASE WHEN st.error_since IS NOT NULL THEN st.last_error END AS error,
       st.error_since,
       (SELECT count(DISTINCT q.table_name) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.op = 'statement'
           AND q.status IN ('pending', 'retry') AND q.confirmed) AS stopped_tables,
       st.retained_bytes, st.wal_status, st.safe_wal_bytes, st.oldest_binlog, st.binlog_headroom_files,
       st.retention_warning, st.retention_checked_at
  FROM duplex.links l
  LEFT JOIN duplex.link_status st USING (link_id)
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs USING (link_id);

COMMENT ON COLUMN duplex.link_status.retained_bytes IS
    'what the source keeps that the direction has not applied: a slot''s WAL (pg_current_wal_lsn() - restart_lsn), or the binlog from the applied position on';
COMMENT ON COLUMN duplex.link_status.binlog_headroom_files IS
    'MySQL sources: binlog files older than the one holding the applied position (0: the next purge removes what the direction still needs)';
COMMENT ON COLUMN duplex.link_status.retention_warning IS
    'set while what the direction has not applied is at risk (a slot near invalidation, a binlog about to be purged): what and what to do';
