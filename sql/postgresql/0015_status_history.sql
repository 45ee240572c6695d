-- duplex control schema, migration 15: status a DBA can read at face value.
--
-- Counters in duplex.link_status and duplex.table_status are the direction's
-- whole history: a starting duplex carries on from the totals written before
-- (a crash loses at most the last second's increments).
--
-- An error is current only while the direction has not recovered from it:
-- link_status.error_since is when the current trouble began, and is cleared
-- once the direction is healthy again (streaming, and it committed a
-- transaction or ran ten seconds without a new error). last_error and
-- last_error_at stay as the history of the most recent error.

ALTER TABLE duplex.link_status ADD COLUMN IF NOT EXISTS error_since timestamptz;

COMMENT ON COLUMN duplex.link_status.error_since IS
    'when the direction''s current error began; NULL when it is healthy (last_error is then past)';
COMMENT ON COLUMN duplex.link_status.last_error IS
    'the most recent error, kept after the direction recovered (see error_since for whether it is current)';
COMMENT ON COLUMN duplex.link_status.applied_txns IS
    'source transactions applied, over the direction''s whole history (carried across restarts)';
COMMENT ON TABLE duplex.table_status IS
    'changes applied per direction and table (source table name), over the direction''s whole history';

-- New columns go last: CREATE OR REPLACE VIEW keeps the existing ones (and
-- the grants on the view).
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
       st.error_since
  FROM duplex.links l
  LEFT JOIN duplex.link_status st USING (link_id)
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs USING (link_id);

COMMENT ON VIEW duplex.link_overview IS
    'per direction of each link: state, positions, lag, counters (whole history), the current error (error, error_since; NULL when healthy) and the most recent one (last_error, last_error_at)';
