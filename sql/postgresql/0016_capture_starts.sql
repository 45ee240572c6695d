-- duplex control schema, migration 16: when each site's changes to a table
-- began to be captured for a link.
--
-- A row a site held before then, and that duplex never wrote there, is in no
-- change stream: it is the state both sites started from when they were
-- seeded alike (link_tables.initial_sync = false). An update or delete from
-- the peer whose old image is exactly that row has seen it, and applies
-- without a conflict (docs/architecture.md, "Seeded rows"). Written by
-- duplex when it creates the site's replication slot, adds the table to the
-- site's publication, or records a binlog site's first position; the time
-- is read from the site's own clock just before, in microseconds since the
-- Unix epoch (the clock its commit timestamps and stamp columns use).

CREATE TABLE IF NOT EXISTS duplex.capture_starts (
    link_id     integer NOT NULL REFERENCES duplex.links ON DELETE CASCADE,
    site_id     integer NOT NULL,
    -- the table as configured (schema.table)
    table_name  text NOT NULL,
    started_us  bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, site_id, table_name)
);

COMMENT ON TABLE duplex.capture_starts IS
    'per link, site and table: the site clock (us since the epoch) just before duplex began capturing its changes (written by duplex)';
