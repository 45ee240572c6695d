-- duplex control schema, MySQL/MariaDB flavour, migration 15: status a DBA
-- can read at face value (see sql/postgresql/0015_status_history.sql).
-- Counters are the direction's whole history; error_since is when the
-- current error began, NULL once the direction is healthy again (last_error
-- and last_error_at then describe a past error).

ALTER TABLE duplex.link_status
    ADD COLUMN IF NOT EXISTS error_since DATETIME(6) NULL
        COMMENT 'UTC; when the current error began; NULL when the direction is healthy (last_error is then past)';

CREATE OR REPLACE VIEW duplex.link_overview AS
SELECT l.link_id, l.name AS link, s.name AS source, t.name AS target,
       COALESCE(st.state, CASE WHEN l.enabled THEN cs.state ELSE 'paused' END, 'not started') AS state,
       st.source_position, st.applied_position, st.lag_seconds, st.lag_bytes, st.queued_events,
       st.applied_txns, st.applied_rows, st.inserted, st.updated, st.deleted,
       st.conflicts, st.quarantined,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.status = 'held' AND q.confirmed) AS held,
       st.echo_txns_skipped, st.last_applied_commit_at, st.last_error, st.last_error_at,
       cs.state AS config_state, cs.message AS config_message, st.updated_at,
       CASE WHEN st.error_since IS NOT NULL THEN st.last_error END AS error,
       st.error_since
  FROM duplex.links l
  LEFT JOIN duplex.link_status st ON st.link_id = l.link_id
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs ON cs.link_id = l.link_id;
