-- duplex control schema, migration 18: parallel apply.
--
-- Each direction applies independent source transactions (no row in common)
-- on several connections to its target at once, and commits them in the
-- source's commit order; each worker records its own applied position (a
-- replication origin on PostgreSQL, a row of _duplex_applied on MySQL), and
-- the direction resumes from the highest, below which every transaction is
-- committed. 1 applies one transaction group at a time.

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS apply_workers integer NOT NULL DEFAULT 4
        CHECK (apply_workers BETWEEN 1 AND 16);

COMMENT ON COLUMN duplex.links.apply_workers IS
    'connections each direction applies on at once (1-16): independent source transactions in parallel, committed in source order';
