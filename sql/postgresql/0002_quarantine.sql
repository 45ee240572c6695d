-- duplex control schema, migration 2: quarantine.
--
-- A change that cannot be applied to the target (a value the column cannot
-- hold, a constraint the target enforces) is kept here with its reason and its
-- source position, instead of stopping the stream or being dropped. The rest of
-- the stream keeps flowing.

CREATE TABLE IF NOT EXISTS duplex.quarantine (
    quarantine_id    bigserial PRIMARY KEY,
    link_id          integer NOT NULL,
    source_site      integer NOT NULL,
    target_site      integer NOT NULL,
    table_name       text NOT NULL,
    op               text NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    row_key          text NOT NULL,
    -- Where the change is in the source's stream: its transaction's position
    -- and its index inside that transaction (together they identify it, so a
    -- replay after a crash never records it twice).
    source_position  text NOT NULL,
    position_counter numeric(20, 0) NOT NULL,
    change_index     integer NOT NULL,
    -- The change itself: before and after images (column -> {type, value}) and
    -- the version marker it carried.
    change           jsonb NOT NULL,
    reason           text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'retried', 'discarded')),
    -- The record is written before the target transaction that skipped the
    -- change commits; it is confirmed once that commit succeeded. At start,
    -- duplex confirms unconfirmed records its target has applied past, and
    -- deletes the others (their transaction rolled back and is replayed).
    confirmed        boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (link_id, source_site, position_counter, change_index)
);

CREATE INDEX IF NOT EXISTS quarantine_pending ON duplex.quarantine (link_id, status) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS quarantine_unconfirmed ON duplex.quarantine (link_id, source_site) WHERE NOT confirmed;

ALTER TABLE duplex.link_status ADD COLUMN IF NOT EXISTS quarantined bigint NOT NULL DEFAULT 0;
