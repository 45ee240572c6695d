-- duplex control schema, migration 12: initial sync of existing rows.
--
-- When a table joins a link, each direction first copies the rows the source
-- site already holds (in primary-key pages, through the normal apply path,
-- so rows present on both sites go through the table's conflict policy),
-- then streams from the position it was at before the copy: a change made
-- during the copy is applied after it, never lost. Progress is kept per
-- direction and table, so a copy interrupted by a crash or a restart goes
-- on from its last page.

ALTER TABLE duplex.link_tables
    ADD COLUMN IF NOT EXISTS initial_sync boolean NOT NULL DEFAULT true;

COMMENT ON COLUMN duplex.link_tables.initial_sync IS
    'true: copy the rows each site already holds when the table joins the link; false: only changes made from then on flow';

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS snapshot_rows_per_second integer NOT NULL DEFAULT 0
        CHECK (snapshot_rows_per_second >= 0);

COMMENT ON COLUMN duplex.links.snapshot_rows_per_second IS
    'most rows per second each direction copies during an initial sync (0: as fast as the sites allow)';

CREATE TABLE IF NOT EXISTS duplex.snapshot_progress (
    link_id     integer NOT NULL REFERENCES duplex.links ON DELETE CASCADE,
    source_site integer NOT NULL,
    target_site integer NOT NULL,
    -- the table's name on the source site
    table_name  text NOT NULL,
    -- copying (under way or interrupted), done, skipped (initial_sync false)
    state       text NOT NULL CHECK (state IN ('copying', 'done', 'skipped')),
    -- numbers this copy's conflict and quarantine records (small: never a
    -- stream position)
    snapshot_id bigint NOT NULL DEFAULT 0,
    -- the primary key of the last row copied (JSON array of text values)
    last_key    text,
    rows_done   bigint NOT NULL DEFAULT 0,
    -- the source's estimate when the copy started
    rows_total  bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, source_site, table_name)
);

COMMENT ON TABLE duplex.snapshot_progress IS
    'initial sync per direction and table: state, last key copied, rows done of total (written by duplex)';

-- Tables of links that already ran before this migration have been synced
-- change by change since they joined: no copy for them.
INSERT INTO duplex.snapshot_progress (link_id, source_site, target_site, table_name, state, finished_at)
SELECT t.link_id, d.source_site, d.target_site, t.schema_name || '.' || t.table_name, 'skipped', now()
  FROM duplex.link_tables t
  JOIN duplex.links l USING (link_id)
  CROSS JOIN LATERAL (VALUES (l.site_a, l.site_b), (l.site_b, l.site_a)) AS d(source_site, target_site)
 WHERE EXISTS (SELECT 1 FROM duplex.link_status s WHERE s.link_id = t.link_id)
ON CONFLICT DO NOTHING;

CREATE OR REPLACE VIEW duplex.snapshot_overview AS
SELECT p.link_id, l.name AS link, s.name AS source, t.name AS target, p.table_name, p.state,
       p.rows_done, p.rows_total,
       CASE WHEN p.state = 'done' THEN 100.0
            WHEN p.rows_total > 0 THEN round(least(100.0, 100.0 * p.rows_done / p.rows_total), 1) END AS percent,
       p.started_at, p.finished_at, p.updated_at
  FROM duplex.snapshot_progress p
  JOIN duplex.links l USING (link_id)
  LEFT JOIN duplex.sites s ON s.site_id = p.source_site
  LEFT JOIN duplex.sites t ON t.site_id = p.target_site;

COMMENT ON VIEW duplex.snapshot_overview IS 'initial sync progress per direction and table';
