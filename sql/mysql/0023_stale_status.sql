-- A direction whose status nobody has written for 30 s (no duplex process
-- runs it: stopped by kill -9, a host lost, every --ha process down) shows
-- state 'unknown' and says so in `error`, instead of its last state
-- ('streaming' with no lag, for ever). A clean stop writes 'stopped'.
CREATE OR REPLACE VIEW duplex.link_overview AS
SELECT l.link_id, l.name AS link, s.name AS source, t.name AS target,
       CASE WHEN st.updated_at < UTC_TIMESTAMP(6) - INTERVAL 30 SECOND AND st.state <> 'stopped' THEN 'unknown'
            ELSE COALESCE(st.state, CASE WHEN l.enabled THEN cs.state ELSE 'paused' END, 'not started') END AS state,
       st.source_position, st.applied_position, st.lag_seconds, st.lag_bytes, st.queued_events,
       st.applied_txns, st.applied_rows, st.inserted, st.updated, st.deleted,
       st.conflicts, st.quarantined,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.status = 'held' AND q.confirmed) AS held,
       st.echo_txns_skipped, st.last_applied_commit_at, st.last_error, st.last_error_at,
       cs.state AS config_state, cs.message AS config_message, st.updated_at,
       CASE WHEN st.updated_at < UTC_TIMESTAMP(6) - INTERVAL 30 SECOND AND st.state <> 'stopped'
            THEN CONCAT('no duplex process has written this direction''s status since ', DATE_FORMAT(st.updated_at, '%Y-%m-%d %H:%i:%s UTC'),
                        ' (it was ', st.state, '): is duplex run running (with --ha: the process holding the link''s lease, duplex.lease_overview)?')
            WHEN st.error_since IS NOT NULL THEN st.last_error END AS error,
       st.error_since,
       (SELECT COUNT(DISTINCT q.table_name) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.op = 'statement'
           AND q.status IN ('pending', 'retry') AND q.confirmed) AS stopped_tables,
       st.retained_bytes, st.wal_status, st.safe_wal_bytes, st.oldest_binlog, st.binlog_headroom_files,
       st.retention_warning, st.retention_checked_at
  FROM duplex.links l
  LEFT JOIN duplex.link_status st ON st.link_id = l.link_id
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs ON cs.link_id = l.link_id;
