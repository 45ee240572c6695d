-- duplex control schema, MySQL/MariaDB flavour, schema version 10.
--
-- The same tables, views and operations as the PostgreSQL flavour at
-- version 10 (sql/postgresql/0001..0010), in database `duplex`. Installed by
-- `duplex init --control mysql://user@host:port/duplex`; the file also runs
-- as is in the mysql client (it uses DELIMITER for the procedures).
--
-- Differences from the PostgreSQL flavour, all forced by the engine:
--   * times are DATETIME(6) in UTC (duplex's sessions run with time_zone
--     '+00:00'; the defaults use UTC_TIMESTAMP);
--   * links.tombstone_retention_secs (seconds) stands for the interval
--     links.tombstone_retention;
--   * config_status.applied_config is a JSON array instead of text[];
--   * the operations are procedures: CALL duplex.retry_quarantined(id),
--     CALL duplex.discard_quarantined(id), CALL duplex.resolve_conflict(id, 'local'|'incoming');
--   * live reload: triggers on the configuration tables bump
--     duplex.config_version, which duplex polls every second (MySQL has no
--     LISTEN/NOTIFY). TRUNCATE fires no trigger: duplex still re-reads the
--     tables every 5 s.
-- Every statement can run twice (a migration interrupted half way is run
-- again from its start).

CREATE DATABASE IF NOT EXISTS duplex CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- One database that duplex syncs. conninfo WITHOUT a password: passwords
-- never live in configuration tables; name an environment variable or a file.
CREATE TABLE IF NOT EXISTS duplex.sites (
    site_id       INT NOT NULL PRIMARY KEY,
    name          VARCHAR(40) NOT NULL UNIQUE,
    engine        VARCHAR(20) NOT NULL,
    conninfo      VARCHAR(2000) NOT NULL,
    password_env  VARCHAR(200) NULL,
    password_file VARCHAR(1000) NULL,
    tls_mode      VARCHAR(20) NOT NULL DEFAULT 'prefer',
    tls_ca_file   VARCHAR(1000) NULL,
    created_at    DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    CONSTRAINT sites_site_id CHECK (site_id BETWEEN 1 AND 65535),
    CONSTRAINT sites_name CHECK (name REGEXP '^[a-z][a-z0-9_]{0,39}$'),
    CONSTRAINT sites_engine CHECK (engine IN ('postgresql', 'mysql')),
    CONSTRAINT sites_tls_mode CHECK (tls_mode IN ('disable', 'prefer', 'require', 'verify-ca', 'verify-full')),
    CONSTRAINT sites_conninfo_has_no_password
        CHECK (LOWER(conninfo) NOT REGEXP '(^|[[:space:]])password[[:space:]]*='
               AND conninfo NOT REGEXP '^[a-z]+://[^/@]*:[^/@]*@')
) ENGINE = InnoDB COMMENT 'the databases duplex syncs; site_id keys the version vectors, never reuse one';

-- Two sites kept in sync.
CREATE TABLE IF NOT EXISTS duplex.links (
    link_id       INT NOT NULL PRIMARY KEY,
    name          VARCHAR(100) NOT NULL UNIQUE,
    site_a        INT NOT NULL,
    site_b        INT NOT NULL,
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    marker_column VARCHAR(63) NOT NULL DEFAULT '_duplex',
    -- Tombstones of rows duplex deleted are removed from the target sites
    -- after this many seconds; keep it above the largest replication lag.
    tombstone_retention_secs BIGINT NOT NULL DEFAULT 86400,
    created_at    DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    CONSTRAINT links_link_id CHECK (link_id BETWEEN 1 AND 9999),
    CONSTRAINT links_marker_column CHECK (CHAR_LENGTH(marker_column) BETWEEN 1 AND 63),
    CONSTRAINT links_retention CHECK (tombstone_retention_secs >= 0),
    CONSTRAINT links_two_sites CHECK (site_a <> site_b),
    CONSTRAINT links_site_a FOREIGN KEY (site_a) REFERENCES duplex.sites (site_id),
    CONSTRAINT links_site_b FOREIGN KEY (site_b) REFERENCES duplex.sites (site_id)
) ENGINE = InnoDB COMMENT 'two sites kept in sync; enabled = false pauses the link';

-- The tables a link syncs (the same name on both sites).
CREATE TABLE IF NOT EXISTS duplex.link_tables (
    link_id          INT NOT NULL,
    -- PostgreSQL sites: the schema; MySQL sites sync their own database.
    schema_name      VARCHAR(64) NOT NULL DEFAULT 'public',
    table_name       VARCHAR(128) NOT NULL,
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    -- true: hold this table's changes (duplex.quarantine, status held) until
    -- it is set back to false; the rest of the link keeps flowing.
    paused           BOOLEAN NOT NULL DEFAULT FALSE,
    -- both, a_to_b (site_a to site_b only), b_to_a
    direction        VARCHAR(10) NOT NULL DEFAULT 'both',
    replica_identity VARCHAR(10) NOT NULL DEFAULT 'full',
    -- last_writer_wins, site_priority (priority_site wins), field_merge,
    -- manual (parked in duplex.conflicts until settled)
    conflict_policy  VARCHAR(20) NOT NULL DEFAULT 'last_writer_wins',
    priority_site    INT NULL,
    merge_tie        VARCHAR(20) NOT NULL DEFAULT 'last_writer_wins',
    PRIMARY KEY (link_id, schema_name, table_name),
    CONSTRAINT link_tables_direction CHECK (direction IN ('both', 'a_to_b', 'b_to_a')),
    CONSTRAINT link_tables_replica_identity CHECK (replica_identity IN ('full', 'key')),
    CONSTRAINT link_tables_policy CHECK (conflict_policy IN ('last_writer_wins', 'site_priority', 'field_merge', 'manual')),
    CONSTRAINT link_tables_merge_tie CHECK (merge_tie IN ('last_writer_wins', 'site_priority')),
    CONSTRAINT link_tables_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE,
    CONSTRAINT link_tables_priority_site FOREIGN KEY (priority_site) REFERENCES duplex.sites (site_id)
) ENGINE = InnoDB COMMENT 'the tables each link syncs, with direction, pause and conflict policy';

-- A column owned by a site only ever takes that site's values. Column
-- names are the names on the link's site_a.
CREATE TABLE IF NOT EXISTS duplex.column_owners (
    link_id     INT NOT NULL,
    schema_name VARCHAR(64) NOT NULL,
    table_name  VARCHAR(128) NOT NULL,
    column_name VARCHAR(64) NOT NULL,
    site_id     INT NOT NULL,
    PRIMARY KEY (link_id, schema_name, table_name, column_name),
    CONSTRAINT column_owners_site FOREIGN KEY (site_id) REFERENCES duplex.sites (site_id),
    CONSTRAINT column_owners_table FOREIGN KEY (link_id, schema_name, table_name)
        REFERENCES duplex.link_tables (link_id, schema_name, table_name) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'columns only one site may set';

-- Per table and site: renamed (peer_column), excluded (synced = false),
-- transformed (trim, lower, upper, tz_shift +HH:MM) and one-side-only
-- columns (default_value: written when a row arrives from the other site).
CREATE TABLE IF NOT EXISTS duplex.column_mappings (
    link_id       INT NOT NULL,
    schema_name   VARCHAR(64) NOT NULL DEFAULT 'public',
    table_name    VARCHAR(128) NOT NULL,
    site_id       INT NOT NULL,
    column_name   VARCHAR(64) NOT NULL,
    peer_column   VARCHAR(64) NULL,
    synced        BOOLEAN NOT NULL DEFAULT TRUE,
    transform     VARCHAR(20) NULL,
    default_value TEXT NULL,
    PRIMARY KEY (link_id, schema_name, table_name, site_id, column_name),
    CONSTRAINT column_mappings_transform
        CHECK (transform IS NULL OR transform REGEXP '^(trim|lower|upper|tz_shift [+-][0-9]{2}:[0-9]{2})$'),
    CONSTRAINT column_mappings_excluded CHECK (synced OR (peer_column IS NULL AND transform IS NULL)),
    CONSTRAINT column_mappings_default CHECK (default_value IS NULL OR NOT synced),
    CONSTRAINT column_mappings_site FOREIGN KEY (site_id) REFERENCES duplex.sites (site_id),
    CONSTRAINT column_mappings_table FOREIGN KEY (link_id, schema_name, table_name)
        REFERENCES duplex.link_tables (link_id, schema_name, table_name) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'per table and site: renamed, excluded, transformed and one-side-only columns';

-- Tables of a link by name pattern (LIKE), included or excluded; explicit
-- link_tables rows take precedence. Re-evaluated at every re-read.
CREATE TABLE IF NOT EXISTS duplex.link_table_patterns (
    link_id     INT NOT NULL,
    schema_name VARCHAR(64) NOT NULL DEFAULT 'public',
    pattern     VARCHAR(200) NOT NULL,
    exclude     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (link_id, schema_name, pattern, exclude),
    CONSTRAINT link_table_patterns_pattern CHECK (CHAR_LENGTH(pattern) BETWEEN 1 AND 200),
    CONSTRAINT link_table_patterns_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'tables of a link by name pattern (LIKE), included or excluded';

-- Written by the running process: one row per direction of each link.
CREATE TABLE IF NOT EXISTS duplex.link_status (
    link_id            INT NOT NULL,
    source_site        INT NOT NULL,
    target_site        INT NOT NULL,
    state              VARCHAR(40) NOT NULL,
    source_position    VARCHAR(200) NULL,
    applied_position   VARCHAR(200) NULL,
    applied_txns       BIGINT NOT NULL DEFAULT 0,
    applied_rows       BIGINT NOT NULL DEFAULT 0,
    echo_txns_skipped  BIGINT NOT NULL DEFAULT 0,
    last_error         TEXT NULL,
    last_error_at      DATETIME(6) NULL,
    updated_at         DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    quarantined        BIGINT NOT NULL DEFAULT 0,
    conflicts          BIGINT NOT NULL DEFAULT 0,
    -- seconds since the oldest source commit read but not yet applied
    lag_seconds        DOUBLE NULL,
    -- source log bytes read but not yet applied
    lag_bytes          BIGINT NULL,
    -- events read from the source and waiting for the applier
    queued_events      BIGINT NOT NULL DEFAULT 0,
    inserted           BIGINT NOT NULL DEFAULT 0,
    updated            BIGINT NOT NULL DEFAULT 0,
    deleted            BIGINT NOT NULL DEFAULT 0,
    last_applied_commit_at DATETIME(6) NULL,
    PRIMARY KEY (link_id, source_site),
    CONSTRAINT link_status_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'per direction of each link: positions, lag, counters (written by duplex)';

-- Written by the running process: changes applied per direction and table.
CREATE TABLE IF NOT EXISTS duplex.table_status (
    link_id     INT NOT NULL,
    source_site INT NOT NULL,
    target_site INT NOT NULL,
    table_name  VARCHAR(300) NOT NULL,
    inserted    BIGINT NOT NULL DEFAULT 0,
    updated     BIGINT NOT NULL DEFAULT 0,
    deleted     BIGINT NOT NULL DEFAULT 0,
    updated_at  DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (link_id, source_site, table_name),
    CONSTRAINT table_status_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT 'per direction and table: rows applied by operation (written by duplex)';

-- Changes the target could not take, and changes held for a paused table.
CREATE TABLE IF NOT EXISTS duplex.quarantine (
    quarantine_id    BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    link_id          INT NOT NULL,
    source_site      INT NOT NULL,
    target_site      INT NOT NULL,
    table_name       VARCHAR(300) NOT NULL,
    op               VARCHAR(10) NOT NULL,
    row_key          TEXT NOT NULL,
    -- The change's transaction position in the source's stream and its index
    -- in that transaction: together they identify it.
    source_position  VARCHAR(200) NOT NULL,
    position_counter DECIMAL(20, 0) NOT NULL,
    change_index     INT NOT NULL,
    -- before and after images (column -> {type, value}) and the version marker
    `change`         JSON NOT NULL,
    reason           TEXT NOT NULL,
    -- pending (kept, waiting for a DBA), retry (a DBA asked for a retry),
    -- retried (applied), discarded (given up), held (table paused)
    status           VARCHAR(10) NOT NULL DEFAULT 'pending',
    -- written before the target transaction commits, confirmed after it did
    confirmed        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    -- the change exactly as it came (typed values, the marker), for a retry
    change_exact     JSON NULL,
    note             TEXT NULL,
    settled_at       DATETIME(6) NULL,
    UNIQUE KEY quarantine_origin (link_id, source_site, position_counter, change_index),
    KEY quarantine_status (link_id, source_site, status),
    KEY quarantine_unconfirmed (link_id, source_site, confirmed),
    CONSTRAINT quarantine_op CHECK (op IN ('insert', 'update', 'delete')),
    CONSTRAINT quarantine_status_check CHECK (status IN ('pending', 'retry', 'retried', 'discarded', 'held'))
) ENGINE = InnoDB COMMENT 'changes that could not be applied, and held changes of paused tables';

-- Every detected conflict, with both versions.
CREATE TABLE IF NOT EXISTS duplex.conflicts (
    conflict_id      BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    link_id          INT NOT NULL,
    source_site      INT NOT NULL,
    target_site      INT NOT NULL,
    table_name       VARCHAR(300) NOT NULL,
    row_key          TEXT NOT NULL,
    -- insert_insert, update_update, update_delete, delete_update,
    -- delete_delete, update_missing, unsynced_local_edit
    kind             VARCHAR(40) NOT NULL,
    policy           VARCHAR(40) NOT NULL,
    -- incoming_applied, local_kept, merged, parked, recreated, already_deleted
    outcome          VARCHAR(40) NOT NULL,
    local_version    JSON NOT NULL,
    incoming_version JSON NOT NULL,
    incoming_change  JSON NULL,
    source_position  VARCHAR(200) NOT NULL,
    position_counter DECIMAL(20, 0) NOT NULL,
    change_index     INT NOT NULL,
    -- settled (by the policy), open (parked until a DBA settles it),
    -- resolving (settled by a DBA, being applied), resolved, superseded
    status           VARCHAR(12) NOT NULL DEFAULT 'settled',
    resolution       VARCHAR(10) NULL,
    resolved_at      DATETIME(6) NULL,
    resolution_note  TEXT NULL,
    confirmed        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    UNIQUE KEY conflicts_origin (link_id, source_site, position_counter, change_index, kind),
    KEY conflicts_open (link_id, target_site, status),
    KEY conflicts_unconfirmed (link_id, source_site, confirmed),
    CONSTRAINT conflicts_status CHECK (status IN ('settled', 'open', 'resolving', 'resolved', 'superseded')),
    CONSTRAINT conflicts_resolution CHECK (resolution IS NULL OR resolution IN ('local', 'incoming'))
) ENGINE = InnoDB COMMENT 'every detected conflict with both versions; settle open ones with CALL duplex.resolve_conflict';

-- Written by the running process: per link, the configuration in force and
-- the fate of the last change.
CREATE TABLE IF NOT EXISTS duplex.config_status (
    link_id        INT NOT NULL PRIMARY KEY,
    -- running, paused, rejected (the last change was refused; the
    -- configuration below stays in force), error (the link could not start)
    state          VARCHAR(10) NOT NULL,
    -- what is in force, one JSON string per setting
    applied_config JSON NOT NULL DEFAULT ('[]'),
    applied_at     DATETIME(6) NULL,
    message        TEXT NULL,
    rejected_at    DATETIME(6) NULL,
    updated_at     DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    CONSTRAINT config_status_state CHECK (state IN ('running', 'paused', 'rejected', 'error'))
) ENGINE = InnoDB COMMENT 'per link: the configuration in force and why the last change was rejected (written by duplex)';

-- Bumped by the triggers below at every change of the configuration
-- tables; duplex polls it every second.
CREATE TABLE IF NOT EXISTS duplex.config_version (
    id         TINYINT NOT NULL PRIMARY KEY DEFAULT 1,
    version    BIGINT NOT NULL DEFAULT 0,
    changed_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    CONSTRAINT config_version_one_row CHECK (id = 1)
) ENGINE = InnoDB COMMENT 'configuration change counter, polled by duplex for live reload';

INSERT IGNORE INTO duplex.config_version (id, version) VALUES (1, 0);

DROP TRIGGER IF EXISTS duplex.sites_ins;
DROP TRIGGER IF EXISTS duplex.sites_upd;
DROP TRIGGER IF EXISTS duplex.sites_del;
DROP TRIGGER IF EXISTS duplex.links_ins;
DROP TRIGGER IF EXISTS duplex.links_upd;
DROP TRIGGER IF EXISTS duplex.links_del;
DROP TRIGGER IF EXISTS duplex.link_tables_ins;
DROP TRIGGER IF EXISTS duplex.link_tables_upd;
DROP TRIGGER IF EXISTS duplex.link_tables_del;
DROP TRIGGER IF EXISTS duplex.column_owners_ins;
DROP TRIGGER IF EXISTS duplex.column_owners_upd;
DROP TRIGGER IF EXISTS duplex.column_owners_del;
DROP TRIGGER IF EXISTS duplex.column_mappings_ins;
DROP TRIGGER IF EXISTS duplex.column_mappings_upd;
DROP TRIGGER IF EXISTS duplex.column_mappings_del;
DROP TRIGGER IF EXISTS duplex.link_table_patterns_ins;
DROP TRIGGER IF EXISTS duplex.link_table_patterns_upd;
DROP TRIGGER IF EXISTS duplex.link_table_patterns_del;

CREATE TRIGGER duplex.sites_ins AFTER INSERT ON duplex.sites FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.sites_upd AFTER UPDATE ON duplex.sites FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.sites_del AFTER DELETE ON duplex.sites FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.links_ins AFTER INSERT ON duplex.links FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.links_upd AFTER UPDATE ON duplex.links FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.links_del AFTER DELETE ON duplex.links FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.link_tables_ins AFTER INSERT ON duplex.link_tables FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.link_tables_upd AFTER UPDATE ON duplex.link_tables FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.link_tables_del AFTER DELETE ON duplex.link_tables FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.column_owners_ins AFTER INSERT ON duplex.column_owners FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.column_owners_upd AFTER UPDATE ON duplex.column_owners FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.column_owners_del AFTER DELETE ON duplex.column_owners FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.column_mappings_ins AFTER INSERT ON duplex.column_mappings FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.column_mappings_upd AFTER UPDATE ON duplex.column_mappings FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.column_mappings_del AFTER DELETE ON duplex.column_mappings FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.link_table_patterns_ins AFTER INSERT ON duplex.link_table_patterns FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.link_table_patterns_upd AFTER UPDATE ON duplex.link_table_patterns FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;
CREATE TRIGGER duplex.link_table_patterns_del AFTER DELETE ON duplex.link_table_patterns FOR EACH ROW
    UPDATE duplex.config_version SET version = version + 1, changed_at = UTC_TIMESTAMP(6) WHERE id = 1;

-- Counters of conflicts by link, table and kind.
CREATE OR REPLACE VIEW duplex.conflict_counts AS
SELECT link_id, target_site, table_name, kind, COUNT(*) AS conflicts,
       SUM(status = 'open') AS open, MAX(created_at) AS last_at
  FROM duplex.conflicts
 WHERE confirmed
 GROUP BY link_id, target_site, table_name, kind;

-- Per direction of each link: state, positions, lag, counters, errors.
-- Every link appears, also one whose directions never ran.
CREATE OR REPLACE VIEW duplex.link_overview AS
SELECT l.link_id, l.name AS link, s.name AS source, t.name AS target,
       COALESCE(st.state, CASE WHEN l.enabled THEN cs.state ELSE 'paused' END, 'not started') AS state,
       st.source_position, st.applied_position, st.lag_seconds, st.lag_bytes, st.queued_events,
       st.applied_txns, st.applied_rows, st.inserted, st.updated, st.deleted,
       st.conflicts, st.quarantined,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.status = 'held' AND q.confirmed) AS held,
       st.echo_txns_skipped, st.last_applied_commit_at, st.last_error, st.last_error_at,
       cs.state AS config_state, cs.message AS config_message, st.updated_at
  FROM duplex.links l
  LEFT JOIN duplex.link_status st ON st.link_id = l.link_id
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs ON cs.link_id = l.link_id;

-- Per direction and table: rows applied by operation, conflicts, quarantined
-- and held changes.
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
       ts.updated_at
  FROM duplex.table_status ts;

DROP PROCEDURE IF EXISTS duplex.resolve_conflict;
DROP PROCEDURE IF EXISTS duplex.retry_quarantined;
DROP PROCEDURE IF EXISTS duplex.discard_quarantined;

DELIMITER $$

-- Settle a parked (manual) conflict: 'incoming' applies the parked version,
-- 'local' keeps the target's; either way both sites end with the chosen one.
-- The running duplex applies it within seconds and sets status 'resolved'.
CREATE PROCEDURE duplex.resolve_conflict(IN p_conflict_id BIGINT, IN p_choice VARCHAR(20))
    MODIFIES SQL DATA
BEGIN
    DECLARE msg TEXT;
    IF p_choice IS NULL OR p_choice NOT IN ('local', 'incoming') THEN
        SET msg = CONCAT('choice must be ''local'' or ''incoming'', not ', QUOTE(p_choice));
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    UPDATE duplex.conflicts
       SET status = 'resolving', resolution = p_choice
     WHERE conflict_id = p_conflict_id AND status = 'open';
    IF ROW_COUNT() = 0 THEN
        SET msg = CONCAT('conflict ', p_conflict_id, ' is not open (see duplex.conflicts.status)');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    SELECT CONCAT('conflict ', p_conflict_id, ': taking the ', p_choice,
                  ' version; the running duplex applies it within seconds') AS message;
END $$

-- Ask the running duplex to apply a quarantined change again (after the
-- target was fixed). Success: status 'retried'; refused again: 'pending'
-- with the new reason.
CREATE PROCEDURE duplex.retry_quarantined(IN p_quarantine_id BIGINT)
    MODIFIES SQL DATA
BEGIN
    DECLARE v_status VARCHAR(10);
    DECLARE v_exact INT;
    DECLARE msg TEXT;
    SELECT status, change_exact IS NOT NULL INTO v_status, v_exact
      FROM duplex.quarantine WHERE quarantine_id = p_quarantine_id FOR UPDATE;
    IF v_status IS NULL THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id, ' does not exist');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF v_status <> 'pending' THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id, ' is ', v_status, ', not pending');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF NOT v_exact THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id,
                         ' was recorded without the exact change; apply it by hand from duplex.quarantine.change and discard it');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    UPDATE duplex.quarantine SET status = 'retry', note = NULL WHERE quarantine_id = p_quarantine_id;
    SELECT CONCAT('change ', p_quarantine_id,
                  ' will be applied again within seconds (while duplex runs); see duplex.quarantine.status') AS message;
END $$

-- Give a quarantined change up.
CREATE PROCEDURE duplex.discard_quarantined(IN p_quarantine_id BIGINT)
    MODIFIES SQL DATA
BEGIN
    DECLARE v_status VARCHAR(10);
    DECLARE msg TEXT;
    SELECT status INTO v_status FROM duplex.quarantine WHERE quarantine_id = p_quarantine_id FOR UPDATE;
    IF v_status IS NULL THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id, ' does not exist');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF v_status = 'retry' THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id,
                         ' is being retried; wait for the retry to settle (status back to pending, or retried)');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF v_status <> 'pending' THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id, ' is ', v_status, ', not pending');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    UPDATE duplex.quarantine
       SET status = 'discarded', settled_at = UTC_TIMESTAMP(6), note = CONCAT('discarded by ', SESSION_USER())
     WHERE quarantine_id = p_quarantine_id;
    SELECT CONCAT('change ', p_quarantine_id, ' discarded') AS message;
END $$

DELIMITER ;
