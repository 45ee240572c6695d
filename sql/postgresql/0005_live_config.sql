-- duplex control schema, migration 5: live configuration.
--
-- A running duplex picks up changes to the configuration tables within a few
-- seconds, without a restart: a statement trigger on each of them sends a
-- notification on channel 'duplex_config' (and duplex also re-reads the
-- tables every few seconds, so a missed notification only delays a change).
-- A change is checked before it takes effect, against the control schema and
-- against both sites' catalogs; an invalid one is rejected with its reason in
-- duplex.config_status and the link keeps running on its last good
-- configuration.

CREATE OR REPLACE FUNCTION duplex.notify_config_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('duplex_config', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sites', 'links', 'link_tables', 'column_owners'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS duplex_config_changed ON duplex.%I', t);
        EXECUTE format(
            'CREATE TRIGGER duplex_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duplex.%I
                 FOR EACH STATEMENT EXECUTE FUNCTION duplex.notify_config_change()', t);
    END LOOP;
END;
$$;

-- Written by the running process: per link, the configuration in force and
-- the fate of the last change.
CREATE TABLE IF NOT EXISTS duplex.config_status (
    link_id        integer PRIMARY KEY,
    -- 'running' (the configuration below is in force), 'paused' (the link is
    -- disabled), 'rejected' (the last change was refused; the configuration
    -- below stays in force), 'error' (the link could not be started).
    state          text NOT NULL CHECK (state IN ('running', 'paused', 'rejected', 'error')),
    -- What is in force, one line per setting (what `duplex config check`
    -- compares the tables against).
    applied_config text[] NOT NULL DEFAULT '{}',
    applied_at     timestamptz,
    -- Why the last change was refused, and when.
    message        text,
    rejected_at    timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE duplex.config_status IS
    'per link: the configuration in force and why the last change was rejected (written by duplex)';
