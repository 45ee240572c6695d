-- duplex control schema, MySQL/MariaDB flavour, migration 20: retention
-- guardrails (see sql/postgresql/0020_retention_guardrails.sql).

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS retention_warn_bytes BIGINT NOT NULL DEFAULT 1073741824
        COMMENT 'warn (link_overview.retention_warning) when a source slot of the link is this close to being invalidated (safe_wal_size), or a source keeps this much the peer has not applied'
        CHECK (retention_warn_bytes > 0);

ALTER TABLE duplex.link_status
    ADD COLUMN IF NOT EXISTS retained_bytes BIGINT NULL,
    ADD COLUMN IF NOT EXISTS wal_status VARCHAR(32) NULL,
    ADD COLUMN IF NOT EXISTS safe_wal_bytes BIGINT NULL,
    ADD COLUMN IF NOT EXISTS oldest_binlog VARCHAR(255) NULL,
    ADD COLUMN IF NOT EXISTS binlog_headroom_files BIGINT NULL,
    ADD COLUMN IF NOT EXISTS retention_warning TEXT NULL,
    ADD COLUMN IF NOT EXISTS retention_checked_at DATETIME(6) NULL;

-- Appended: how long the source keeps what the direction has not applied.
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
