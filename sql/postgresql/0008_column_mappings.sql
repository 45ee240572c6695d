-- duplex control schema, migration 8: column mappings and one-way tables.
--
-- Column names elsewhere in the configuration (column_owners) are the names on
-- the link's site_a. A mapping row describes one column of one site:
--   peer_column    its name on the other site (a rename; NULL: the same name)
--   synced         false: never synced in either direction (excluded), or a
--                  column only this site has
--   transform      applied to this column's values on their way from this
--                  site to the other: trim, lower, upper, or
--                  'tz_shift +HH:MM' / 'tz_shift -HH:MM' (timestamps without
--                  time zone are shifted by that much)
--   default_value  for a column only this site has (synced = false): the
--                  value written when a row arrives from the other site
--                  (text, cast to the column's type); NULL leaves it to the
--                  column's own DEFAULT

CREATE TABLE IF NOT EXISTS duplex.column_mappings (
    link_id       integer NOT NULL,
    schema_name   text NOT NULL DEFAULT 'public',
    table_name    text NOT NULL,
    site_id       integer NOT NULL REFERENCES duplex.sites,
    column_name   text NOT NULL,
    peer_column   text,
    synced        boolean NOT NULL DEFAULT true,
    transform     text CHECK (transform ~ '^(trim|lower|upper|tz_shift [+-][0-9]{2}:[0-9]{2})$'),
    default_value text,
    PRIMARY KEY (link_id, schema_name, table_name, site_id, column_name),
    FOREIGN KEY (link_id, schema_name, table_name)
        REFERENCES duplex.link_tables ON DELETE CASCADE,
    CHECK (synced OR (peer_column IS NULL AND transform IS NULL)),
    CHECK (default_value IS NULL OR NOT synced)
);

COMMENT ON TABLE duplex.column_mappings IS
    'per table and site: renamed, excluded, transformed and one-side-only columns';

ALTER TABLE duplex.link_tables
    ADD COLUMN IF NOT EXISTS direction text NOT NULL DEFAULT 'both'
        CHECK (direction IN ('both', 'a_to_b', 'b_to_a'));

COMMENT ON COLUMN duplex.link_tables.direction IS
    'both (two-way), a_to_b (changes flow from the link''s site_a to site_b only), b_to_a';

DROP TRIGGER IF EXISTS duplex_config_changed ON duplex.column_mappings;
CREATE TRIGGER duplex_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duplex.column_mappings
    FOR EACH STATEMENT EXECUTE FUNCTION duplex.notify_config_change();
