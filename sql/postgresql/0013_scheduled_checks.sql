-- duplex control schema, migration 13: scheduled parity checks.
--
-- A table with check_interval set is compared by the running duplex (the
-- same comparison as `duplex check`) whenever its last check is older than
-- that; every result lands in duplex.parity_checks, so parity is recorded
-- over time (duplex.parity_overview: the latest per table).

ALTER TABLE duplex.link_tables
    ADD COLUMN IF NOT EXISTS check_interval interval
        CHECK (check_interval IS NULL OR check_interval >= interval '1 second');

COMMENT ON COLUMN duplex.link_tables.check_interval IS
    'compare both sites of this table this often while duplex runs (NULL: only on demand, duplex check)';
