-- duplex control schema, migration 7: pause and resume one table of a link.
--
-- While link_tables.paused is true, the table's changes are not applied to
-- the peer: they are held in duplex.quarantine (status 'held', in source
-- order) and the rest of the link keeps flowing. When the table is resumed,
-- duplex applies the held changes in order before the link's stream goes on.
-- A TRUNCATE of a paused table is applied at once and the changes held before
-- it are discarded (it would have removed their rows anyway).

ALTER TABLE duplex.link_tables
    ADD COLUMN IF NOT EXISTS paused boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN duplex.link_tables.paused IS
    'true: hold this table''s changes (duplex.quarantine, status held) until it is set back to false; the rest of the link keeps flowing';

ALTER TABLE duplex.quarantine DROP CONSTRAINT IF EXISTS quarantine_status_check;
ALTER TABLE duplex.quarantine ADD CONSTRAINT quarantine_status_check
    CHECK (status IN ('pending', 'retry', 'retried', 'discarded', 'held'));

CREATE INDEX IF NOT EXISTS quarantine_held ON duplex.quarantine (link_id, source_site) WHERE status = 'held';
