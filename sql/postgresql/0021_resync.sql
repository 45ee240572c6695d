-- duplex control schema, migration 21: `duplex resync`.
--
-- `duplex resync --link L [--table T]` resets what is lost (a source's
-- invalidated or dropped slot, a purged binlog position: the peer's recorded
-- progress with it), marks the tables to be copied again by the initial
-- sync's machinery, and counts one more request here. A running duplex sees
-- the change of configuration and restarts the link, which then re-creates
-- the slot (or takes the binlog's current position) and copies.

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS resync_requests bigint NOT NULL DEFAULT 0;

COMMENT ON COLUMN duplex.links.resync_requests IS
    'resyncs requested by `duplex resync` (written by duplex; a change restarts the running link)';
