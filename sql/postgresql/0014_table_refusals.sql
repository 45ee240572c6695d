-- duplex control schema, migration 14: a table that cannot be synced is
-- refused alone, and target triggers.
--
-- duplex checks every table of a link against both sites before the link
-- (re)starts: the table exists with a primary key, every column one site
-- sends exists on the other (or is excluded, mapped or filled), the columns
-- the configuration names exist, and no trigger or rule on the target would
-- change the rows duplex applies. A table that fails is refused, alone, with
-- its reason in duplex.table_config_status (and duplex.table_overview); the
-- link's other tables run. A change to a table's configuration that fails
-- leaves the table on its configuration in force.
--
-- Triggers: duplex applies in the replica role where its role may set
-- session_replication_role (a superuser, or PostgreSQL 15+
-- GRANT SET ON PARAMETER session_replication_role), where ordinary triggers
-- and rules do not fire, as with PostgreSQL's own logical replication.
-- Where they would fire (MySQL/MariaDB targets, a role without that right,
-- ENABLE ALWAYS / ENABLE REPLICA triggers) the table is refused unless
-- fire_triggers says they should fire for replicated rows.

ALTER TABLE duplex.link_tables
    ADD COLUMN IF NOT EXISTS fire_triggers boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN duplex.link_tables.fire_triggers IS
    'true: the target''s triggers fire for the rows duplex applies (what they change there stays there); false: duplex applies in the replica role where triggers do not fire, and refuses the table where they would';

-- Written by the running process when it applies a link's configuration.
CREATE TABLE IF NOT EXISTS duplex.table_config_status (
    link_id     integer NOT NULL REFERENCES duplex.links ON DELETE CASCADE,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    -- syncing, paused (held changes), refused (not synced: reason says why
    -- and what to do)
    state       text NOT NULL CHECK (state IN ('syncing', 'paused', 'refused')),
    -- refused: why; syncing or paused: why the last change of the table's
    -- configuration was refused (its configuration in force stays), if it was
    reason      text,
    since       timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, schema_name, table_name)
);

COMMENT ON TABLE duplex.table_config_status IS
    'per table of each link: syncing, paused or refused, and why (written by duplex)';

-- A refused table appears too, in both directions, with its reason (a
-- table appears otherwise once a change of it was applied).
CREATE OR REPLACE VIEW duplex.table_overview AS
SELECT ts.link_id, ts.source_site, ts.target_site, ts.table_name,
       ts.inserted, ts.updated, ts.deleted,
       coalesce(c.conflicts, 0) AS conflicts,
       coalesce(q.quarantined, 0) AS quarantined,
       coalesce(q.held, 0) AS held,
       ts.updated_at,
       coalesce(tc.state, 'syncing') AS config_state,
       tc.reason AS config_reason
  FROM duplex.table_status ts
  LEFT JOIN (SELECT link_id, source_site, table_name, count(*) AS conflicts
               FROM duplex.conflicts WHERE confirmed GROUP BY 1, 2, 3) c
         USING (link_id, source_site, table_name)
  LEFT JOIN (SELECT link_id, source_site, table_name,
                    count(*) FILTER (WHERE status IN ('pending', 'retry')) AS quarantined,
                    count(*) FILTER (WHERE status = 'held') AS held
               FROM duplex.quarantine WHERE confirmed GROUP BY 1, 2, 3) q
         USING (link_id, source_site, table_name)
  -- table_status names a table as its source site does (a MySQL site's
  -- database is its schema): matched by the bare name.
  LEFT JOIN duplex.table_config_status tc
         ON tc.link_id = ts.link_id AND right(ts.table_name, length(tc.table_name) + 1) = '.' || tc.table_name
UNION ALL
SELECT tc.link_id, d.source_site, d.target_site, tc.schema_name || '.' || tc.table_name,
       0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
       (SELECT count(*) FROM duplex.quarantine q
         WHERE q.link_id = tc.link_id AND q.source_site = d.source_site AND q.status = 'held' AND q.confirmed
           AND right(q.table_name, length(tc.table_name) + 1) = '.' || tc.table_name),
       tc.updated_at, tc.state, tc.reason
  FROM duplex.table_config_status tc
  JOIN duplex.links l USING (link_id)
  CROSS JOIN LATERAL (VALUES (l.site_a, l.site_b), (l.site_b, l.site_a)) AS d(source_site, target_site)
 WHERE tc.state = 'refused'
   AND NOT EXISTS (SELECT 1 FROM duplex.table_status ts
                    WHERE ts.link_id = tc.link_id AND ts.source_site = d.source_site
                      AND right(ts.table_name, length(tc.table_name) + 1) = '.' || tc.table_name);

COMMENT ON VIEW duplex.table_overview IS
    'per direction and table: rows applied by operation, conflicts, quarantined and held changes, and whether the table syncs or is refused (and why)';
