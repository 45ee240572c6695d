-- duplex control schema, migration 3: conflict policies and the conflicts table.
--
-- Concurrent edits of the same row on both sites are detected with the
-- per-row version vectors in each synced table's marker column and settled by
-- the table's policy (see docs/architecture.md, "Conflicts"). Every conflict
-- is recorded here, with both versions, where a DBA can see and settle it.

ALTER TABLE duplex.link_tables
    ADD COLUMN IF NOT EXISTS conflict_policy text NOT NULL DEFAULT 'last_writer_wins'
        CHECK (conflict_policy IN ('last_writer_wins', 'site_priority', 'field_merge', 'manual')),
    -- site_priority: the site whose version wins. field_merge with merge_tie
    -- 'site_priority': the site that wins a column both sides changed.
    ADD COLUMN IF NOT EXISTS priority_site integer REFERENCES duplex.sites,
    ADD COLUMN IF NOT EXISTS merge_tie text NOT NULL DEFAULT 'last_writer_wins'
        CHECK (merge_tie IN ('last_writer_wins', 'site_priority'));

COMMENT ON COLUMN duplex.link_tables.conflict_policy IS
    'last_writer_wins (later version time wins, ties to the higher site id), site_priority (priority_site wins), field_merge (concurrent changes to different columns both kept), manual (incoming version parked in duplex.conflicts until settled)';

-- A column owned by a site only ever takes that site's values.
CREATE TABLE IF NOT EXISTS duplex.column_owners (
    link_id     integer NOT NULL,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    column_name text NOT NULL,
    site_id     integer NOT NULL REFERENCES duplex.sites,
    PRIMARY KEY (link_id, schema_name, table_name, column_name),
    FOREIGN KEY (link_id, schema_name, table_name)
        REFERENCES duplex.link_tables ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS duplex.conflicts (
    conflict_id      bigserial PRIMARY KEY,
    link_id          integer NOT NULL,
    -- The incoming change came from source_site and was decided on target_site.
    source_site      integer NOT NULL,
    target_site      integer NOT NULL,
    table_name       text NOT NULL,
    row_key          text NOT NULL,
    -- insert_insert, update_update, update_delete, delete_update, delete_delete,
    -- update_missing, unsynced_local_edit
    kind             text NOT NULL,
    policy           text NOT NULL,
    -- incoming_applied, local_kept, merged, parked, recreated, already_deleted
    outcome          text NOT NULL,
    -- Each version: {"row": {column: {type, value}} or null, "vv": {...}, "site": n, "ts": µs}
    local_version    jsonb NOT NULL,
    incoming_version jsonb NOT NULL,
    -- Parked (manual) conflicts: the incoming row exactly as duplex holds it
    -- (typed values and the table's shape), to apply it if a DBA chooses it.
    incoming_change  jsonb,
    -- The incoming change's place in the source's stream.
    source_position  text NOT NULL,
    position_counter numeric(20, 0) NOT NULL,
    change_index     integer NOT NULL,
    -- settled: decided by the policy. open: parked (manual) until a DBA settles
    -- it with duplex.resolve_conflict(). resolving: settled by a DBA, being
    -- applied. resolved: applied. superseded: a later change made it moot.
    status           text NOT NULL DEFAULT 'settled'
        CHECK (status IN ('settled', 'open', 'resolving', 'resolved', 'superseded')),
    resolution       text CHECK (resolution IN ('local', 'incoming')),
    resolved_at      timestamptz,
    resolution_note  text,
    -- Written before the target transaction that settled the conflict commits;
    -- confirmed once it did (as for duplex.quarantine).
    confirmed        boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (link_id, source_site, position_counter, change_index, kind)
);

CREATE INDEX IF NOT EXISTS conflicts_open ON duplex.conflicts (link_id, target_site, status)
    WHERE status IN ('open', 'resolving');
CREATE INDEX IF NOT EXISTS conflicts_unconfirmed ON duplex.conflicts (link_id, source_site)
    WHERE NOT confirmed;

-- Counters of conflicts by link, table and kind.
CREATE OR REPLACE VIEW duplex.conflict_counts AS
SELECT link_id, target_site, table_name, kind, count(*) AS conflicts,
       count(*) FILTER (WHERE status = 'open') AS open,
       max(created_at) AS last_at
  FROM duplex.conflicts
 WHERE confirmed
 GROUP BY link_id, target_site, table_name, kind;

ALTER TABLE duplex.link_status ADD COLUMN IF NOT EXISTS conflicts bigint NOT NULL DEFAULT 0;

-- Settle a parked (manual) conflict: 'incoming' applies the parked version,
-- 'local' keeps the target's; either way both sites end with the chosen one.
-- The running duplex applies it within seconds and sets status 'resolved'.
CREATE OR REPLACE FUNCTION duplex.resolve_conflict(p_conflict_id bigint, p_choice text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_choice NOT IN ('local', 'incoming') THEN
        RAISE EXCEPTION 'choice must be ''local'' or ''incoming'', not %', quote_literal(p_choice);
    END IF;
    UPDATE duplex.conflicts
       SET status = 'resolving', resolution = p_choice
     WHERE conflict_id = p_conflict_id AND status = 'open';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conflict % is not open (see duplex.conflicts.status)', p_conflict_id;
    END IF;
END $$;
