-- duplex control schema, migration 17: tables stopped by writes logged as
-- statements.
--
-- A MySQL/MariaDB write logged as a statement (a session with binlog_format
-- STATEMENT or MIXED) carries no rows, so duplex cannot replicate it. It is
-- kept in duplex.quarantine with op 'statement' (one record per synced table
-- it may have changed: row_key holds the statement, reason the fix), and the
-- table stops in that direction: its later changes are held (status 'held')
-- while the other tables flow on. Once the DBA has resynced the table
-- (duplex repair), discarding its statement records resumes it: duplex
-- applies the held changes in source order within seconds.

ALTER TABLE duplex.quarantine DROP CONSTRAINT IF EXISTS quarantine_op_check;
ALTER TABLE duplex.quarantine ADD CONSTRAINT quarantine_op_check
    CHECK (op IN ('insert', 'update', 'delete', 'statement'));

CREATE INDEX IF NOT EXISTS quarantine_statements ON duplex.quarantine (link_id, source_site)
    WHERE op = 'statement' AND status IN ('pending', 'retry');

CREATE OR REPLACE FUNCTION duplex.retry_quarantined(p_quarantine_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    q duplex.quarantine%ROWTYPE;
BEGIN
    SELECT * INTO q FROM duplex.quarantine WHERE quarantine_id = p_quarantine_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'quarantined change % does not exist', p_quarantine_id;
    END IF;
    IF q.status <> 'pending' THEN
        RAISE EXCEPTION 'quarantined change % is %, not pending', p_quarantine_id, q.status;
    END IF;
    IF q.op = 'statement' THEN
        RAISE EXCEPTION 'quarantined change % is a write logged as a statement: its rows are not in the binlog, so it cannot be applied again. Resync table % (duplex repair), then discard this record (duplex quarantine discard %) to resume the table', p_quarantine_id, q.table_name, p_quarantine_id;
    END IF;
    IF q.change_exact IS NULL THEN
        RAISE EXCEPTION 'quarantined change % was recorded without the exact change (an older duplex, or a change the control database could not store); repair the row from the source site (duplex repair) and discard it', p_quarantine_id;
    END IF;
    UPDATE duplex.quarantine SET status = 'retry', note = NULL WHERE quarantine_id = p_quarantine_id;
    RETURN format('change %s will be applied again within seconds (while duplex runs); see duplex.quarantine.status', p_quarantine_id);
END;
$$;

CREATE OR REPLACE FUNCTION duplex.discard_quarantined(p_quarantine_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    q duplex.quarantine%ROWTYPE;
BEGIN
    SELECT * INTO q FROM duplex.quarantine WHERE quarantine_id = p_quarantine_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'quarantined change % does not exist', p_quarantine_id;
    END IF;
    IF q.status = 'retry' THEN
        RAISE EXCEPTION 'quarantined change % is being retried; wait for the retry to settle (status back to pending, or retried)', p_quarantine_id;
    END IF;
    IF q.status <> 'pending' THEN
        RAISE EXCEPTION 'quarantined change % is %, not pending', p_quarantine_id, q.status;
    END IF;
    UPDATE duplex.quarantine SET status = 'discarded', settled_at = now(), note = 'discarded by ' || current_user
     WHERE quarantine_id = p_quarantine_id;
    IF q.op = 'statement' THEN
        RETURN format('change %s discarded; table %s resumes within seconds once none of its statement records is pending (while duplex runs)', p_quarantine_id, q.table_name);
    END IF;
    RETURN format('change %s discarded', p_quarantine_id);
END;
$$;

-- Appended columns: how many tables of the direction are stopped.
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
           AND q.status IN ('pending', 'retry') AND q.confirmed) AS stopped_tables
  FROM duplex.links l
  LEFT JOIN duplex.link_status st USING (link_id)
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs USING (link_id);

-- Appended columns: stopped (a write to the table was logged as a statement)
-- and why, with the fix (the oldest pending statement record's reason).
-- The columns of 0014 (config_state, config_reason, refused tables) stay.
CREATE OR REPLACE VIEW duplex.table_overview AS
SELECT ts.link_id, ts.source_site, ts.target_site, ts.table_name,
       ts.inserted, ts.updated, ts.deleted,
       coalesce(c.conflicts, 0) AS conflicts,
       coalesce(q.quarantined, 0) AS quarantined,
       coalesce(q.held, 0) AS held,
       ts.updated_at,
       coalesce(tc.state, 'syncing') AS config_state,
       tc.reason AS config_reason,
       stop.reason IS NOT NULL AS stopped,
       stop.reason AS stop_reason
  FROM duplex.table_status ts
  LEFT JOIN (SELECT link_id, source_site, table_name, count(*) AS conflicts
               FROM duplex.conflicts WHERE confirmed GROUP BY 1, 2, 3) c
         USING (link_id, source_site, table_name)
  LEFT JOIN (SELECT link_id, source_site, table_name,
                    count(*) FILTER (WHERE status IN ('pending', 'retry')) AS quarantined,
                    count(*) FILTER (WHERE status = 'held') AS held
               FROM duplex.quarantine WHERE confirmed GROUP BY 1, 2, 3) q
         USING (link_id, source_site, table_name)
  -- table_status names a table as its source site does (a MySQL site's
  -- database is its schema): matched by the bare name.
  LEFT JOIN duplex.table_config_status tc
         ON tc.link_id = ts.link_id AND right(ts.table_name, length(tc.table_name) + 1) = '.' || tc.table_name
  LEFT JOIN LATERAL (SELECT s.reason FROM duplex.quarantine s
                      WHERE s.link_id = ts.link_id AND s.source_site = ts.source_site
                        AND s.table_name = ts.table_name AND s.op = 'statement'
                        AND s.status IN ('pending', 'retry') AND s.confirmed
                      ORDER BY s.quarantine_id LIMIT 1) stop ON true
UNION ALL
SELECT tc.link_id, d.source_site, d.target_site, tc.schema_name || '.' || tc.table_name,
       0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
       (SELECT count(*) FROM duplex.quarantine q
         WHERE q.link_id = tc.link_id AND q.source_site = d.source_site AND q.status = 'held' AND q.confirmed
           AND right(q.table_name, length(tc.table_name) + 1) = '.' || tc.table_name),
       tc.updated_at, tc.state, tc.reason, false, NULL::text
  FROM duplex.table_config_status tc
  JOIN duplex.links l USING (link_id)
  CROSS JOIN LATERAL (VALUES (l.site_a, l.site_b), (l.site_b, l.site_a)) AS d(source_site, target_site)
 WHERE tc.state = 'refused'
   AND NOT EXISTS (SELECT 1 FROM duplex.table_status ts
                    WHERE ts.link_id = tc.link_id AND ts.source_site = d.source_site
                      AND right(ts.table_name, length(tc.table_name) + 1) = '.' || tc.table_name);

COMMENT ON VIEW duplex.table_overview IS 'per direction and table: rows applied by operation, conflicts, quarantined and held changes, whether the table syncs or is refused (and why), and whether it is stopped (a write logged as a statement) and why';
