-- duplex control schema, migration 24: tables held for their shape.
--
-- When a table's changes carry a column the target's table does not have
-- (added on one site only, dropped or renamed on the other), or the target
-- has no such table, the direction holds that table's changes in order
-- (duplex.quarantine status 'held') and the rest of the link flows. The
-- hold itself is recorded as op 'schema', status 'held': reason says what
-- differs and how to fix it. Once the target's table fits, duplex applies
-- the held changes by themselves and the record becomes 'retried'.

ALTER TABLE duplex.quarantine DROP CONSTRAINT IF EXISTS quarantine_op_check;
ALTER TABLE duplex.quarantine ADD CONSTRAINT quarantine_op_check
    CHECK (op IN ('insert', 'update', 'delete', 'statement', 'schema'));

-- Appended: the tables held for their shape and the first one's reason;
-- held counts held changes only (not the hold records).
CREATE OR REPLACE VIEW duplex.link_overview AS
SELECT l.link_id, l.name AS link, s.name AS source, t.name AS target,
       CASE WHEN st.updated_at < now() - interval '30 seconds' AND st.state <> 'stopped' THEN 'unknown'
            ELSE coalesce(st.state, CASE WHEN l.enabled THEN cs.state ELSE 'paused' END, 'not started') END AS state,
       st.source_position, st.applied_position, st.lag_seconds, st.lag_bytes, st.queued_events,
       st.applied_txns, st.applied_rows, st.inserted, st.updated, st.deleted,
       st.conflicts, st.quarantined,
       (SELECT count(*) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.status = 'held' AND q.op <> 'schema' AND q.confirmed) AS held,
       st.echo_txns_skipped, st.last_applied_commit_at, st.last_error, st.last_error_at,
       cs.state AS config_state, cs.message AS config_message, st.updated_at,
       CASE WHEN st.updated_at < now() - interval '30 seconds' AND st.state <> 'stopped'
            THEN 'no duplex process has written this direction''s status since ' || to_char(st.updated_at, 'YYYY-MM-DD HH24:MI:SS TZ')
                 || ' (it was ' || st.state || '): is duplex run running (with --ha: the process holding the link''s lease, duplex.lease_overview)?'
            WHEN st.error_since IS NOT NULL THEN st.last_error END AS error,
       st.error_since,
       (SELECT count(DISTINCT q.table_name) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.op = 'statement'
           AND q.status IN ('pending', 'retry') AND q.confirmed) AS stopped_tables,
       st.retained_bytes, st.wal_status, st.safe_wal_bytes, st.oldest_binlog, st.binlog_headroom_files,
       st.retention_warning, st.retention_checked_at,
       (SELECT count(DISTINCT q.table_name) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.op = 'schema'
           AND q.status = 'held' AND q.confirmed) AS held_tables,
       (SELECT q.table_name || ': ' || q.reason FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.op = 'schema'
           AND q.status = 'held' AND q.confirmed
         ORDER BY q.quarantine_id DESC LIMIT 1) AS held_reason
  FROM duplex.links l
  LEFT JOIN duplex.link_status st USING (link_id)
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs USING (link_id);

-- Appended: held_for_shape and shape_difference (the newest hold record's
-- reason); quarantined and held count changes only.
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
       stop.reason AS stop_reason,
       shape.reason IS NOT NULL AS held_for_shape,
       shape.reason AS shape_difference
  FROM duplex.table_status ts
  LEFT JOIN (SELECT link_id, source_site, table_name, count(*) AS conflicts
               FROM duplex.conflicts WHERE confirmed GROUP BY 1, 2, 3) c
         USING (link_id, source_site, table_name)
  LEFT JOIN (SELECT link_id, source_site, table_name,
                    count(*) FILTER (WHERE status IN ('pending', 'retry') AND op <> 'schema') AS quarantined,
                    count(*) FILTER (WHERE status = 'held' AND op <> 'schema') AS held
               FROM duplex.quarantine WHERE confirmed GROUP BY 1, 2, 3) q
         USING (link_id, source_site, table_name)
  LEFT JOIN duplex.table_config_status tc
         ON tc.link_id = ts.link_id AND right(ts.table_name, length(tc.table_name) + 1) = '.' || tc.table_name
  LEFT JOIN LATERAL (SELECT s.reason FROM duplex.quarantine s
                      WHERE s.link_id = ts.link_id AND s.source_site = ts.source_site
                        AND s.table_name = ts.table_name AND s.op = 'statement'
                        AND s.status IN ('pending', 'retry') AND s.confirmed
                      ORDER BY s.quarantine_id LIMIT 1) stop ON true
  LEFT JOIN LATERAL (SELECT s.reason FROM duplex.quarantine s
                      WHERE s.link_id = ts.link_id AND s.source_site = ts.source_site
                        AND s.table_name = ts.table_name AND s.op = 'schema'
                        AND s.status = 'held' AND s.confirmed
                      ORDER BY s.quarantine_id DESC LIMIT 1) shape ON true
UNION ALL
SELECT tc.link_id, d.source_site, d.target_site, tc.schema_name || '.' || tc.table_name,
       0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
       (SELECT count(*) FROM duplex.quarantine q
         WHERE q.link_id = tc.link_id AND q.source_site = d.source_site AND q.status = 'held' AND q.op <> 'schema' AND q.confirmed
           AND right(q.table_name, length(tc.table_name) + 1) = '.' || tc.table_name),
       tc.updated_at, tc.state, tc.reason, false, NULL::text, false, NULL::text
  FROM duplex.table_config_status tc
  JOIN duplex.links l USING (link_id)
  CROSS JOIN LATERAL (VALUES (l.site_a, l.site_b), (l.site_b, l.site_a)) AS d(source_site, target_site)
 WHERE tc.state = 'refused'
   AND NOT EXISTS (SELECT 1 FROM duplex.table_status ts
                    WHERE ts.link_id = tc.link_id AND ts.source_site = d.source_site
                      AND right(ts.table_name, length(tc.table_name) + 1) = '.' || tc.table_name);

COMMENT ON VIEW duplex.table_overview IS 'per direction and table: rows applied by operation, conflicts, quarantined and held changes, whether the table syncs or is refused (and why), whether it is stopped (a write logged as a statement) and why, and whether its changes are held because its shape differs on the target (and what differs, with the fix)';

-- duplex ddl from SQL: a DBA asks with SELECT duplex.request_ddl(link,
-- statement); the running duplex holding the link runs it as `duplex ddl`
-- does (pause, run on each site, compare, resume) and writes the outcome.
CREATE TABLE IF NOT EXISTS duplex.ddl_requests (
    request_id   bigserial PRIMARY KEY,
    link_id      integer NOT NULL REFERENCES duplex.links ON DELETE CASCADE,
    -- the ALTER TABLE, in either engine's dialect; and each engine's own
    -- statement where given (as duplex ddl --postgresql / --mysql)
    statement    text NOT NULL,
    postgresql   text,
    mysql        text,
    -- pending, running, done, failed (result says what was done and why)
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
    result       text,
    requested_by text NOT NULL DEFAULT current_user,
    requested_at timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

COMMENT ON TABLE duplex.ddl_requests IS
    'ALTER TABLE statements a DBA asked duplex to apply to both sites of a link (duplex.request_ddl); the running duplex writes state and result';

CREATE OR REPLACE FUNCTION duplex.request_ddl(p_link text, p_statement text,
                                              p_postgresql text DEFAULT NULL, p_mysql text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    l integer;
    id bigint;
BEGIN
    SELECT link_id INTO l FROM duplex.links WHERE name = p_link OR link_id::text = p_link;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no link % in duplex.links', p_link;
    END IF;
    INSERT INTO duplex.ddl_requests (link_id, statement, postgresql, mysql)
    VALUES (l, p_statement, p_postgresql, p_mysql)
    RETURNING request_id INTO id;
    RETURN id;
END;
$$;

COMMENT ON FUNCTION duplex.request_ddl(text, text, text, text) IS
    'ask the running duplex to apply an ALTER TABLE to both sites of a link in a safe order (as duplex ddl); follow it in duplex.ddl_requests';

-- A held change may be given up too (a table taken out of the link while
-- its changes were held), not the record of a hold itself.
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
    IF q.op = 'schema' THEN
        RAISE EXCEPTION 'record % says why table % is held (its shape differs between the sites); it ends by itself once the sites match (see its reason)', p_quarantine_id, q.table_name;
    END IF;
    IF q.status NOT IN ('pending', 'held') THEN
        RAISE EXCEPTION 'quarantined change % is %, not pending or held', p_quarantine_id, q.status;
    END IF;
    UPDATE duplex.quarantine SET status = 'discarded', settled_at = now(), note = 'discarded by ' || current_user
     WHERE quarantine_id = p_quarantine_id;
    IF q.op = 'statement' THEN
        RETURN format('change %s discarded; table %s resumes within seconds once none of its statement records is pending (while duplex runs)', p_quarantine_id, q.table_name);
    END IF;
    RETURN format('change %s discarded', p_quarantine_id);
END;
$$;
