-- duplex control schema, migration 20: slot guardrails.
--
-- While a direction cannot apply (its target down, a long error), its
-- source's slot keeps the WAL it has not confirmed; past the source's
-- max_slot_wal_keep_size PostgreSQL invalidates the slot, and the changes it
-- held are gone. duplex reads the slot of every PostgreSQL source every few
-- seconds, whatever the direction's state, and warns before that happens.

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS slot_warn_bytes bigint NOT NULL DEFAULT 1073741824
        CHECK (slot_warn_bytes > 0);

COMMENT ON COLUMN duplex.links.slot_warn_bytes IS
    'warn (link_overview.slot_warning) when a source slot of the link is this close to being invalidated (safe_wal_size), or keeps this much WAL where nothing bounds it (max_slot_wal_keep_size = -1)';

ALTER TABLE duplex.link_status
    ADD COLUMN IF NOT EXISTS retained_wal_bytes bigint,
    ADD COLUMN IF NOT EXISTS wal_status text,
    ADD COLUMN IF NOT EXISTS safe_wal_bytes bigint,
    ADD COLUMN IF NOT EXISTS slot_warning text,
    ADD COLUMN IF NOT EXISTS slot_checked_at timestamptz;

-- Appended: the source slot's health (PostgreSQL sources).
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
       st.retained_wal_bytes, st.wal_status, st.safe_wal_bytes, st.slot_warning, st.slot_checked_at
  FROM duplex.links l
  LEFT JOIN duplex.link_status st USING (link_id)
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs USING (link_id);

COMMENT ON COLUMN duplex.link_status.retained_wal_bytes IS
    'WAL the source keeps for the direction''s slot (pg_current_wal_lsn() - restart_lsn)';
COMMENT ON COLUMN duplex.link_status.slot_warning IS
    'set while the slot nears invalidation (or keeps more WAL than links.slot_warn_bytes where nothing bounds it): what is at risk and what to do';
