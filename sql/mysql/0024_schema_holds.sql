-- duplex control schema, MySQL/MariaDB flavour, migration 24: tables held
-- for their shape (see sql/postgresql/0024_schema_holds.sql).

ALTER TABLE duplex.quarantine DROP CONSTRAINT IF EXISTS quarantine_op;
ALTER TABLE duplex.quarantine ADD CONSTRAINT IF NOT EXISTS quarantine_op
    CHECK (op IN ('insert', 'update', 'delete', 'statement', 'schema'));

CREATE OR REPLACE VIEW duplex.link_overview AS
SELECT l.link_id, l.name AS link, s.name AS source, t.name AS target,
       CASE WHEN st.updated_at < UTC_TIMESTAMP(6) - INTERVAL 30 SECOND AND st.state <> 'stopped' THEN 'unknown'
            ELSE COALESCE(st.state, CASE WHEN l.enabled THEN cs.state ELSE 'paused' END, 'not started') END AS state,
       st.source_position, st.applied_position, st.lag_seconds, st.lag_bytes, st.queued_events,
       st.applied_txns, st.applied_rows, st.inserted, st.updated, st.deleted,
       st.conflicts, st.quarantined,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.status = 'held' AND q.op <> 'schema' AND q.confirmed) AS held,
       st.echo_txns_skipped, st.last_applied_commit_at, st.last_error, st.last_error_at,
       cs.state AS config_state, cs.message AS config_message, st.updated_at,
       CASE WHEN st.updated_at < UTC_TIMESTAMP(6) - INTERVAL 30 SECOND AND st.state <> 'stopped'
            THEN CONCAT('no duplex process has written this direction''s status since ', DATE_FORMAT(st.updated_at, '%Y-%m-%d %H:%i:%s UTC'),
                        ' (it was ', st.state, '): is duplex run running (with --ha: the process holding the link''s lease, duplex.lease_overview)?')
            WHEN st.error_since IS NOT NULL THEN st.last_error END AS error,
       st.error_since,
       (SELECT COUNT(DISTINCT q.table_name) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.op = 'statement'
           AND q.status IN ('pending', 'retry') AND q.confirmed) AS stopped_tables,
       st.retained_bytes, st.wal_status, st.safe_wal_bytes, st.oldest_binlog, st.binlog_headroom_files,
       st.retention_warning, st.retention_checked_at,
       (SELECT COUNT(DISTINCT q.table_name) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.op = 'schema'
           AND q.status = 'held' AND q.confirmed) AS held_tables,
       (SELECT CONCAT(q.table_name, ': ', q.reason) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.op = 'schema'
           AND q.status = 'held' AND q.confirmed
         ORDER BY q.quarantine_id DESC LIMIT 1) AS held_reason
  FROM duplex.links l
  LEFT JOIN duplex.link_status st ON st.link_id = l.link_id
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs ON cs.link_id = l.link_id;

CREATE OR REPLACE VIEW duplex.table_overview AS
SELECT ts.link_id, ts.source_site, ts.target_site, ts.table_name,
       ts.inserted, ts.updated, ts.deleted,
       (SELECT COUNT(*) FROM duplex.conflicts c
         WHERE c.link_id = ts.link_id AND c.source_site = ts.source_site
           AND c.table_name = ts.table_name AND c.confirmed) AS conflicts,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
           AND q.table_name = ts.table_name AND q.confirmed AND q.status IN ('pending', 'retry') AND q.op <> 'schema') AS quarantined,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
           AND q.table_name = ts.table_name AND q.confirmed AND q.status = 'held' AND q.op <> 'schema') AS held,
       ts.updated_at,
       COALESCE(tc.state, 'syncing') AS config_state,
       tc.reason AS config_reason,
       EXISTS (SELECT 1 FROM duplex.quarantine q
                WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
                  AND q.table_name = ts.table_name AND q.op = 'statement'
                  AND q.status IN ('pending', 'retry') AND q.confirmed) AS stopped,
       (SELECT q.reason FROM duplex.quarantine q
         WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
           AND q.table_name = ts.table_name AND q.op = 'statement'
           AND q.status IN ('pending', 'retry') AND q.confirmed
         ORDER BY q.quarantine_id LIMIT 1) AS stop_reason,
       EXISTS (SELECT 1 FROM duplex.quarantine q
                WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
                  AND q.table_name = ts.table_name AND q.op = 'schema'
                  AND q.status = 'held' AND q.confirmed) AS held_for_shape,
       (SELECT q.reason FROM duplex.quarantine q
         WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
           AND q.table_name = ts.table_name AND q.op = 'schema'
           AND q.status = 'held' AND q.confirmed
         ORDER BY q.quarantine_id DESC LIMIT 1) AS shape_difference
  FROM duplex.table_status ts
  LEFT JOIN duplex.table_config_status tc
         ON tc.link_id = ts.link_id
        AND RIGHT(ts.table_name, CHAR_LENGTH(tc.table_name) + 1) = CONCAT('.', tc.table_name)
UNION ALL
SELECT tc.link_id, d.source_site, d.target_site, CONCAT(tc.schema_name, '.', tc.table_name),
       0, 0, 0, 0, 0,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = tc.link_id AND q.source_site = d.source_site AND q.status = 'held' AND q.op <> 'schema' AND q.confirmed
           AND RIGHT(q.table_name, CHAR_LENGTH(tc.table_name) + 1) = CONCAT('.', tc.table_name)),
       tc.updated_at, tc.state, tc.reason, FALSE, NULL, FALSE, NULL
  FROM duplex.table_config_status tc
  JOIN (SELECT link_id, site_a AS source_site, site_b AS target_site FROM duplex.links
        UNION ALL
        SELECT link_id, site_b, site_a FROM duplex.links) d ON d.link_id = tc.link_id
 WHERE tc.state = 'refused'
   AND NOT EXISTS (SELECT 1 FROM duplex.table_status ts
                    WHERE ts.link_id = tc.link_id AND ts.source_site = d.source_site
                      AND RIGHT(ts.table_name, CHAR_LENGTH(tc.table_name) + 1) = CONCAT('.', tc.table_name));

-- duplex ddl from SQL (see sql/postgresql/0024_schema_holds.sql):
-- CALL duplex.request_ddl(link, statement, NULL, NULL).
CREATE TABLE IF NOT EXISTS duplex.ddl_requests (
    request_id   BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    link_id      INT NOT NULL,
    statement    TEXT NOT NULL,
    postgresql   TEXT NULL,
    mysql        TEXT NULL,
    state        VARCHAR(10) NOT NULL DEFAULT 'pending',
    result       TEXT NULL,
    requested_by VARCHAR(300) NOT NULL DEFAULT '',
    requested_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    finished_at  DATETIME(6) NULL,
    CONSTRAINT ddl_requests_state CHECK (state IN ('pending', 'running', 'done', 'failed')),
    CONSTRAINT ddl_requests_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE
) ENGINE = InnoDB;

DROP PROCEDURE IF EXISTS duplex.request_ddl;

DELIMITER $$

CREATE PROCEDURE duplex.request_ddl(IN p_link VARCHAR(300), IN p_statement TEXT,
                                    IN p_postgresql TEXT, IN p_mysql TEXT)
    MODIFIES SQL DATA
BEGIN
    DECLARE v_link INT;
    DECLARE msg TEXT;
    SELECT link_id INTO v_link FROM duplex.links WHERE name = p_link OR CAST(link_id AS CHAR) = p_link LIMIT 1;
    IF v_link IS NULL THEN
        SET msg = CONCAT('no link ', p_link, ' in duplex.links');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    INSERT INTO duplex.ddl_requests (link_id, statement, postgresql, mysql, requested_by)
    VALUES (v_link, p_statement, p_postgresql, p_mysql, SESSION_USER());
    SELECT LAST_INSERT_ID() AS request_id;
END$$

DELIMITER ;

-- A held change may be given up too, not the record of a hold itself.
DROP PROCEDURE IF EXISTS duplex.discard_quarantined;

DELIMITER $$

CREATE PROCEDURE duplex.discard_quarantined(IN p_quarantine_id BIGINT)
    MODIFIES SQL DATA
BEGIN
    DECLARE v_status VARCHAR(10);
    DECLARE v_op VARCHAR(10);
    DECLARE v_table VARCHAR(300);
    DECLARE msg TEXT;
    SELECT status, op, table_name INTO v_status, v_op, v_table
      FROM duplex.quarantine WHERE quarantine_id = p_quarantine_id FOR UPDATE;
    IF v_status IS NULL THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id, ' does not exist');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF v_status = 'retry' THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id,
                         ' is being retried; wait for the retry to settle (status back to pending, or retried)');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF v_op = 'schema' THEN
        SET msg = CONCAT('record ', p_quarantine_id, ' says why table ', v_table,
                         ' is held (its shape differs between the sites); it ends by itself once the sites match (see its reason)');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF v_status NOT IN ('pending', 'held') THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id, ' is ', v_status, ', not pending or held');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    UPDATE duplex.quarantine
       SET status = 'discarded', settled_at = UTC_TIMESTAMP(6), note = CONCAT('discarded by ', SESSION_USER())
     WHERE quarantine_id = p_quarantine_id;
    IF v_op = 'statement' THEN
        SELECT CONCAT('change ', p_quarantine_id, ' discarded; table ', v_table,
                      ' resumes within seconds once none of its statement records is pending (while duplex runs)') AS message;
    ELSE
        SELECT CONCAT('change ', p_quarantine_id, ' discarded') AS message;
    END IF;
END $$

DELIMITER ;
