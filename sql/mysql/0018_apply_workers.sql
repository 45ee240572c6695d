-- duplex control schema, MySQL/MariaDB flavour, migration 18: parallel apply
-- (see sql/postgresql/0018_apply_workers.sql).

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS apply_workers INT NOT NULL DEFAULT 4
        COMMENT 'connections each direction applies on at once (1-16): independent source transactions in parallel, committed in source order'
        CHECK (apply_workers BETWEEN 1 AND 16);
