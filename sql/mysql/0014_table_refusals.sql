-- duplex control schema, MySQL/MariaDB flavour, migration 14: a table that
-- cannot be synced is refused alone, and target triggers (see
-- sql/postgresql/0014_table_refusals.sql).

ALTER TABLE duplex.link_tables
    ADD COLUMN IF NOT EXISTS fire_triggers BOOLEAN NOT NULL DEFAULT FALSE
        COMMENT 'true: the target''s triggers fire for the rows duplex applies; false: a table with triggers that would fire is refused';

CREATE TABLE IF NOT EXISTS duplex.table_config_status (
    link_id     INT NOT NULL,
    schema_name VARCHAR(64) NOT NULL,
    table_name  VARCHAR(128) NOT NULL,
    -- syncing, paused (held changes), refused (not synced: reason says why)
    state       VARCHAR(10) NOT NULL,
    -- refused: why; otherwise why the last change of the table's
    -- configuration was refused (its configuration in force stays), if it was
    reason      TEXT NULL,
    since       DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    updated_at  DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (link_id, schema_name, table_name),
    CONSTRAINT table_config_status_state CHECK (state IN ('syncing', 'paused', 'refused')),
    CONSTRAINT table_config_status_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'per table of each link: syncing, paused or refused, and why (written by duplex)';

CREATE OR REPLACE VIEW duplex.table_overview AS
SELECT ts.link_id, ts.source_site, ts.target_site, ts.table_name,
       ts.inserted, ts.updated, ts.deleted,
       (SELECT COUNT(*) FROM duplex.conflicts c
         WHERE c.link_id = ts.link_id AND c.source_site = ts.source_site
           AND c.table_name = ts.table_name AND c.confirmed) AS conflicts,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
           AND q.table_name = ts.table_name AND q.confirmed AND q.status IN ('pending', 'retry')) AS quarantined,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
           AND q.table_name = ts.table_name AND q.confirmed AND q.status = 'held') AS held,
       ts.updated_at,
       COALESCE(tc.state, 'syncing') AS config_state,
       tc.reason AS config_reason
  FROM duplex.table_status ts
  LEFT JOIN duplex.table_config_status tc
         ON tc.link_id = ts.link_id
        AND RIGHT(ts.table_name, CHAR_LENGTH(tc.table_name) + 1) = CONCAT('.', tc.table_name)
UNION ALL
SELECT tc.link_id, d.source_site, d.target_site, CONCAT(tc.schema_name, '.', tc.table_name),
       0, 0, 0, 0, 0,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = tc.link_id AND q.source_site = d.source_site AND q.status = 'held' AND q.confirmed
           AND RIGHT(q.table_name, CHAR_LENGTH(tc.table_name) + 1) = CONCAT('.', tc.table_name)),
       tc.updated_at, tc.state, tc.reason
  FROM duplex.table_config_status tc
  JOIN (SELECT link_id, site_a AS source_site, site_b AS target_site FROM duplex.links
        UNION ALL
        SELECT link_id, site_b, site_a FROM duplex.links) d ON d.link_id = tc.link_id
 WHERE tc.state = 'refused'
   AND NOT EXISTS (SELECT 1 FROM duplex.table_status ts
                    WHERE ts.link_id = tc.link_id AND ts.source_site = d.source_site
                      AND RIGHT(ts.table_name, CHAR_LENGTH(tc.table_name) + 1) = CONCAT('.', tc.table_name));
