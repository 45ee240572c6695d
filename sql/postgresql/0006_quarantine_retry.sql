-- duplex control schema, migration 6: retry and discard quarantined changes.
--
-- A DBA fixes what made the target refuse a change (a constraint, a column
-- too small) and asks duplex to apply it again: SELECT duplex.retry_quarantined(id)
-- or `duplex quarantine retry ID`. The running applier takes the change
-- through the normal path (conflict detection included, so a change that a
-- newer version has overtaken is not applied over it) between source
-- transactions. Success: status 'retried'. Refused again: back to 'pending'
-- with the new reason. duplex.discard_quarantined(id) gives a change up.

ALTER TABLE duplex.quarantine
    -- The change exactly as it came (typed values, the version marker), for a
    -- retry. Records written before this migration have none.
    ADD COLUMN IF NOT EXISTS change_exact jsonb,
    ADD COLUMN IF NOT EXISTS note text,
    ADD COLUMN IF NOT EXISTS settled_at timestamptz;

ALTER TABLE duplex.quarantine DROP CONSTRAINT IF EXISTS quarantine_status_check;
ALTER TABLE duplex.quarantine ADD CONSTRAINT quarantine_status_check
    CHECK (status IN ('pending', 'retry', 'retried', 'discarded'));

COMMENT ON COLUMN duplex.quarantine.status IS
    'pending (kept, waiting for a DBA), retry (a DBA asked for a retry; the applier takes it within a second), retried (applied), discarded (given up by a DBA)';

CREATE INDEX IF NOT EXISTS quarantine_retry ON duplex.quarantine (link_id, source_site) WHERE status = 'retry';

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
    IF q.change_exact IS NULL THEN
        RAISE EXCEPTION 'quarantined change % was recorded by an older duplex without the exact change; apply it by hand from duplex.quarantine.change and discard it', p_quarantine_id;
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
    RETURN format('change %s discarded', p_quarantine_id);
END;
$$;
