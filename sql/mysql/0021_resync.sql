-- duplex control schema, MySQL/MariaDB flavour, migration 21: `duplex resync`
-- (see sql/postgresql/0021_resync.sql).

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS resync_requests BIGINT NOT NULL DEFAULT 0
        COMMENT 'resyncs requested by `duplex resync` (written by duplex; a change restarts the running link)';
