-- duplex control schema, migration 11: parity checks.
--
-- `duplex check` compares both sites of each table of a link (rows looked up
-- by primary key, every synced column compared in canonical form) and
-- records the result here: one row per table and run, and the keys that
-- differ.

CREATE TABLE IF NOT EXISTS duplex.parity_checks (
    check_id    bigserial PRIMARY KEY,
    link_id     integer NOT NULL REFERENCES duplex.links ON DELETE CASCADE,
    table_name  text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    elapsed_ms  bigint NOT NULL DEFAULT 0,
    rows_a      bigint NOT NULL DEFAULT 0,
    rows_b      bigint NOT NULL DEFAULT 0,
    -- on site_a only / on site_b only / on both with different values
    missing     bigint NOT NULL DEFAULT 0,
    extra       bigint NOT NULL DEFAULT 0,
    differing   bigint NOT NULL DEFAULT 0,
    status      text NOT NULL CHECK (status IN ('clean', 'differences', 'error')),
    message     text
);

CREATE INDEX IF NOT EXISTS parity_checks_table ON duplex.parity_checks (link_id, table_name, check_id);

COMMENT ON TABLE duplex.parity_checks IS 'one row per table and run of duplex check: rows compared and differences found';

CREATE TABLE IF NOT EXISTS duplex.parity_differences (
    check_id bigint NOT NULL REFERENCES duplex.parity_checks ON DELETE CASCADE,
    -- missing (on site_a only), extra (on site_b only), differs
    kind     text NOT NULL CHECK (kind IN ('missing', 'extra', 'differs')),
    row_key  text NOT NULL,
    -- site_a's names of the columns that differ
    columns  text NOT NULL DEFAULT ''
);

CREATE INDEX IF NOT EXISTS parity_differences_check ON duplex.parity_differences (check_id);

COMMENT ON TABLE duplex.parity_differences IS 'the rows each parity check found different, by key';

-- The latest check of each table: parity over time is duplex.parity_checks.
CREATE OR REPLACE VIEW duplex.parity_overview AS
SELECT DISTINCT ON (p.link_id, p.table_name)
       p.link_id, l.name AS link, p.table_name, p.status, p.rows_a, p.rows_b,
       p.missing, p.extra, p.differing, p.finished_at, p.elapsed_ms, p.check_id
  FROM duplex.parity_checks p
  JOIN duplex.links l USING (link_id)
 ORDER BY p.link_id, p.table_name, p.check_id DESC;

COMMENT ON VIEW duplex.parity_overview IS 'the latest parity check of each table';
