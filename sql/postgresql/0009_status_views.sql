-- duplex control schema, migration 9: what a DBA watches.
--
-- duplex.link_overview: one row per direction of each link: state, positions,
-- lag, counters, last error, and the configuration's state.
-- duplex.table_overview: one row per direction and table: rows applied by
-- operation, conflicts, changes quarantined and held.

ALTER TABLE duplex.link_status
    ADD COLUMN IF NOT EXISTS lag_seconds double precision,
    ADD COLUMN IF NOT EXISTS lag_bytes bigint,
    ADD COLUMN IF NOT EXISTS queued_events bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS inserted bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS updated bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS deleted bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_applied_commit_at timestamptz;

COMMENT ON COLUMN duplex.link_status.lag_seconds IS
    'seconds since the oldest source commit read but not yet applied (0: caught up with what was read)';
COMMENT ON COLUMN duplex.link_status.lag_bytes IS
    'source log bytes read but not yet applied (PostgreSQL WAL; MySQL binlog within one file)';
COMMENT ON COLUMN duplex.link_status.queued_events IS
    'events read from the source and waiting for the applier';

-- Written by the running process: changes applied per direction and table
-- (source table name), counted since the process started (like
-- link_status.applied_rows).
CREATE TABLE IF NOT EXISTS duplex.table_status (
    link_id     integer NOT NULL REFERENCES duplex.links ON DELETE CASCADE,
    source_site integer NOT NULL,
    target_site integer NOT NULL,
    table_name  text NOT NULL,
    inserted    bigint NOT NULL DEFAULT 0,
    updated     bigint NOT NULL DEFAULT 0,
    deleted     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, source_site, table_name)
);

-- Every link appears, also one whose directions never ran (paused from the
-- start, or unable to start: config_state and config_message say why).
CREATE OR REPLACE VIEW duplex.link_overview AS
SELECT l.link_id, l.name AS link, s.name AS source, t.name AS target,
       coalesce(st.state, CASE WHEN l.enabled THEN cs.state ELSE 'paused' END, 'not started') AS state,
       st.source_position, st.applied_position, st.lag_seconds, st.lag_bytes, st.queued_events,
       st.applied_txns, st.applied_rows, st.inserted, st.updated, st.deleted,
       st.conflicts, st.quarantined,
       (SELECT count(*) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.status = 'held' AND q.confirmed) AS held,
       st.echo_txns_skipped, st.last_applied_commit_at, st.last_error, st.last_error_at,
       cs.state AS config_state, cs.message AS config_message, st.updated_at
  FROM duplex.links l
  LEFT JOIN duplex.link_status st USING (link_id)
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs USING (link_id);

COMMENT ON VIEW duplex.link_overview IS 'per direction of each link: state, positions, lag, counters, errors';

CREATE OR REPLACE VIEW duplex.table_overview AS
SELECT ts.link_id, ts.source_site, ts.target_site, ts.table_name,
       ts.inserted, ts.updated, ts.deleted,
       coalesce(c.conflicts, 0) AS conflicts,
       coalesce(q.quarantined, 0) AS quarantined,
       coalesce(q.held, 0) AS held,
       ts.updated_at
  FROM duplex.table_status ts
  LEFT JOIN (SELECT link_id, source_site, table_name, count(*) AS conflicts
               FROM duplex.conflicts WHERE confirmed GROUP BY 1, 2, 3) c
         USING (link_id, source_site, table_name)
  LEFT JOIN (SELECT link_id, source_site, table_name,
                    count(*) FILTER (WHERE status IN ('pending', 'retry')) AS quarantined,
                    count(*) FILTER (WHERE status = 'held') AS held
               FROM duplex.quarantine WHERE confirmed GROUP BY 1, 2, 3) q
         USING (link_id, source_site, table_name);

COMMENT ON VIEW duplex.table_overview IS 'per direction and table: rows applied by operation, conflicts, quarantined and held changes';
