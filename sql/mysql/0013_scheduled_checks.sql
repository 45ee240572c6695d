-- duplex control schema, MySQL/MariaDB flavour, migration 13: scheduled
-- parity checks (see sql/postgresql/0013_scheduled_checks.sql).

ALTER TABLE duplex.link_tables
    ADD COLUMN IF NOT EXISTS check_interval_secs INT NULL
        COMMENT 'compare both sites of this table this often while duplex runs (NULL: only on demand)';
