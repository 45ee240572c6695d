-- duplex control schema, migration 10: tables by pattern.
--
-- A pattern row adds every table of the schema whose name matches (SQL LIKE:
-- % any run of characters, _ one character) and that exists on both sites of
-- the link, with default settings; an explicit duplex.link_tables row for a
-- table takes precedence over a pattern. An exclude pattern removes matches.
-- Patterns are re-evaluated whenever the configuration is re-read (every few
-- seconds), so a table created later on both sites joins the link by itself.

CREATE TABLE IF NOT EXISTS duplex.link_table_patterns (
    link_id     integer NOT NULL REFERENCES duplex.links ON DELETE CASCADE,
    -- PostgreSQL sites: the schema searched; MySQL sites: their database.
    schema_name text NOT NULL DEFAULT 'public',
    pattern     text NOT NULL CHECK (length(pattern) BETWEEN 1 AND 200),
    exclude     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (link_id, schema_name, pattern, exclude)
);

COMMENT ON TABLE duplex.link_table_patterns IS
    'tables of a link by name pattern (LIKE), included or excluded; explicit link_tables rows take precedence';

DROP TRIGGER IF EXISTS duplex_config_changed ON duplex.link_table_patterns;
CREATE TRIGGER duplex_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duplex.link_table_patterns
    FOR EACH STATEMENT EXECUTE FUNCTION duplex.notify_config_change();
