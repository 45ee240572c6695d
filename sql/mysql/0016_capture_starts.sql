-- duplex control schema, MySQL/MariaDB flavour, migration 16: when each
-- site's changes to a table began to be captured for a link (see
-- sql/postgresql/0016_capture_starts.sql).

CREATE TABLE IF NOT EXISTS duplex.capture_starts (
    link_id     INT NOT NULL,
    site_id     INT NOT NULL,
    table_name  VARCHAR(300) NOT NULL,
    started_us  BIGINT NOT NULL,
    recorded_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (link_id, site_id, table_name),
    CONSTRAINT capture_starts_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'per link, site and table: the site clock (us since the epoch) just before duplex began capturing its changes (written by duplex)';
