-- duplex control schema, MySQL/MariaDB flavour, migration 11: parity checks
-- (see sql/postgresql/0011_parity.sql).

CREATE TABLE IF NOT EXISTS duplex.parity_checks (
    check_id    BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    link_id     INT NOT NULL,
    table_name  VARCHAR(300) NOT NULL,
    started_at  DATETIME(6) NOT NULL,
    finished_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    elapsed_ms  BIGINT NOT NULL DEFAULT 0,
    rows_a      BIGINT NOT NULL DEFAULT 0,
    rows_b      BIGINT NOT NULL DEFAULT 0,
    -- on site_a only / on site_b only / on both with different values
    missing     BIGINT NOT NULL DEFAULT 0,
    extra       BIGINT NOT NULL DEFAULT 0,
    differing   BIGINT NOT NULL DEFAULT 0,
    status      VARCHAR(12) NOT NULL,
    message     TEXT NULL,
    KEY parity_checks_table (link_id, table_name, check_id),
    CONSTRAINT parity_checks_status CHECK (status IN ('clean', 'differences', 'error')),
    CONSTRAINT parity_checks_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'one row per table and run of duplex check: rows compared and differences found';

CREATE TABLE IF NOT EXISTS duplex.parity_differences (
    check_id BIGINT NOT NULL,
    kind     VARCHAR(10) NOT NULL,
    row_key  TEXT NOT NULL,
    columns  TEXT NOT NULL,
    KEY parity_differences_check (check_id),
    CONSTRAINT parity_differences_kind CHECK (kind IN ('missing', 'extra', 'differs')),
    CONSTRAINT parity_differences_parent FOREIGN KEY (check_id)
        REFERENCES duplex.parity_checks (check_id) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'the rows each parity check found different, by key';

-- The latest check of each table.
CREATE OR REPLACE VIEW duplex.parity_overview AS
SELECT p.link_id, l.name AS link, p.table_name, p.status, p.rows_a, p.rows_b,
       p.missing, p.extra, p.differing, p.finished_at, p.elapsed_ms, p.check_id
  FROM duplex.parity_checks p
  JOIN duplex.links l ON l.link_id = p.link_id
 WHERE p.check_id = (SELECT MAX(q.check_id) FROM duplex.parity_checks q
                      WHERE q.link_id = p.link_id AND q.table_name = p.table_name);
