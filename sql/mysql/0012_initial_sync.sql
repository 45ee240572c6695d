-- duplex control schema, MySQL/MariaDB flavour, migration 12: initial sync
-- of existing rows (see sql/postgresql/0012_initial_sync.sql).

ALTER TABLE duplex.link_tables
    ADD COLUMN IF NOT EXISTS initial_sync BOOLEAN NOT NULL DEFAULT TRUE
        COMMENT 'true: copy the rows each site already holds when the table joins the link';

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS snapshot_rows_per_second INT NOT NULL DEFAULT 0
        COMMENT 'most rows per second each direction copies during an initial sync (0: unlimited)';

CREATE TABLE IF NOT EXISTS duplex.snapshot_progress (
    link_id     INT NOT NULL,
    source_site INT NOT NULL,
    target_site INT NOT NULL,
    table_name  VARCHAR(300) NOT NULL,
    -- copying (under way or interrupted), done, skipped (initial_sync false)
    state       VARCHAR(10) NOT NULL,
    snapshot_id BIGINT NOT NULL DEFAULT 0,
    last_key    TEXT NULL,
    rows_done   BIGINT NOT NULL DEFAULT 0,
    rows_total  BIGINT NOT NULL DEFAULT 0,
    started_at  DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    finished_at DATETIME(6) NULL,
    updated_at  DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (link_id, source_site, table_name),
    CONSTRAINT snapshot_progress_state CHECK (state IN ('copying', 'done', 'skipped')),
    CONSTRAINT snapshot_progress_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'initial sync per direction and table (written by duplex)';

CREATE OR REPLACE VIEW duplex.snapshot_overview AS
SELECT p.link_id, l.name AS link, s.name AS source, t.name AS target, p.table_name, p.state,
       p.rows_done, p.rows_total,
       CASE WHEN p.state = 'done' THEN 100.0
            WHEN p.rows_total > 0 THEN ROUND(LEAST(100.0, 100.0 * p.rows_done / p.rows_total), 1) END AS percent,
       p.started_at, p.finished_at, p.updated_at
  FROM duplex.snapshot_progress p
  JOIN duplex.links l ON l.link_id = p.link_id
  LEFT JOIN duplex.sites s ON s.site_id = p.source_site
  LEFT JOIN duplex.sites t ON t.site_id = p.target_site;
