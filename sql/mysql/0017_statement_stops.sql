-- duplex control schema, MySQL/MariaDB flavour, migration 17: tables stopped
-- by writes logged as statements (see sql/postgresql/0017_statement_stops.sql).

ALTER TABLE duplex.quarantine DROP CONSTRAINT IF EXISTS quarantine_op;
ALTER TABLE duplex.quarantine ADD CONSTRAINT IF NOT EXISTS quarantine_op
    CHECK (op IN ('insert', 'update', 'delete', 'statement'));

CREATE INDEX IF NOT EXISTS quarantine_statements ON duplex.quarantine (link_id, source_site, op, status);

-- Per direction of each link; appended: how many of its tables are stopped.
CREATE OR REPLACE VIEW duplex.link_overview AS
SELECT l.link_id, l.name AS link, s.name AS source, t.name AS target,
       COALESCE(st.state, CASE WHEN l.enabled THEN cs.state ELSE 'paused' END, 'not started') AS state,
       st.source_position, st.applied_position, st.lag_seconds, st.lag_bytes, st.queued_events,
       st.applied_txns, st.applied_rows, st.inserted, st.updated, st.deleted,
       st.conflicts, st.quarantined,
       (SELECT COUNT(*) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.status = 'held' AND q.confirmed) AS held,
       st.echo_txns_skipped, st.last_applied_commit_at, st.last_error, st.last_error_at,
       cs.state AS config_state, cs.message AS config_message, st.updated_at,
       CASE WHEN st.error_since IS NOT NULL THEN st.last_error END AS error,
       st.error_since,
       (SELECT COUNT(DISTINCT q.table_name) FROM duplex.quarantine q
         WHERE q.link_id = l.link_id AND q.source_site = st.source_site AND q.op = 'statement'
           AND q.status IN ('pending', 'retry') AND q.confirmed) AS stopped_tables
  FROM duplex.links l
  LEFT JOIN duplex.link_status st ON st.link_id = l.link_id
  LEFT JOIN duplex.sites s ON s.site_id = st.source_site
  LEFT JOIN duplex.sites t ON t.site_id = st.target_site
  LEFT JOIN duplex.config_status cs ON cs.link_id = l.link_id;

-- Per direction and table; appended: stopped (a write to the table was
-- logged as a statement) and why, with the fix.
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
       tc.reason AS config_reason,
       EXISTS (SELECT 1 FROM duplex.quarantine q
                WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
                  AND q.table_name = ts.table_name AND q.op = 'statement'
                  AND q.status IN ('pending', 'retry') AND q.confirmed) AS stopped,
       (SELECT q.reason FROM duplex.quarantine q
         WHERE q.link_id = ts.link_id AND q.source_site = ts.source_site
           AND q.table_name = ts.table_name AND q.op = 'statement'
           AND q.status IN ('pending', 'retry') AND q.confirmed
         ORDER BY q.quarantine_id LIMIT 1) AS stop_reason
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
       tc.updated_at, tc.state, tc.reason, FALSE, NULL
  FROM duplex.table_config_status tc
  JOIN (SELECT link_id, site_a AS source_site, site_b AS target_site FROM duplex.links
        UNION ALL
        SELECT link_id, site_b, site_a FROM duplex.links) d ON d.link_id = tc.link_id
 WHERE tc.state = 'refused'
   AND NOT EXISTS (SELECT 1 FROM duplex.table_status ts
                    WHERE ts.link_id = tc.link_id AND ts.source_site = d.source_site
                      AND RIGHT(ts.table_name, CHAR_LENGTH(tc.table_name) + 1) = CONCAT('.', tc.table_name));

DROP PROCEDURE IF EXISTS duplex.retry_quarantined;
DROP PROCEDURE IF EXISTS duplex.discard_quarantined;

DELIMITER $$

-- Ask the running duplex to apply a quarantined change again.
CREATE PROCEDURE duplex.retry_quarantined(IN p_quarantine_id BIGINT)
    MODIFIES SQL DATA
BEGIN
    DECLARE v_status VARCHAR(10);
    DECLARE v_op VARCHAR(10);
    DECLARE v_table VARCHAR(300);
    DECLARE v_exact INT;
    DECLARE msg TEXT;
    SELECT status, op, table_name, change_exact IS NOT NULL INTO v_status, v_op, v_table, v_exact
      FROM duplex.quarantine WHERE quarantine_id = p_quarantine_id FOR UPDATE;
    IF v_status IS NULL THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id, ' does not exist');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF v_status <> 'pending' THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id, ' is ', v_status, ', not pending');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF v_op = 'statement' THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id,
                         ' is a write logged as a statement: its rows are not in the binlog, so it cannot be applied again. Resync table ',
                         v_table, ' (duplex repair), then discard this record (duplex quarantine discard ', p_quarantine_id,
                         ') to resume the table');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    IF NOT v_exact THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id,
                         ' was recorded without the exact change (an older duplex, or a change the control database could not store); repair the row from the source site (duplex repair) and discard it');
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
    END IF;
    UPDATE duplex.quarantine SET status = 'retry', note = NULL WHERE quarantine_id = p_quarantine_id;
    SELECT CONCAT('change ', p_quarantine_id,
                  ' will be applied again within seconds (while duplex runs); see duplex.quarantine.status') AS message;
END $$

-- Give a quarantined change up (a statement record: resume its table).
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
    IF v_status <> 'pending' THEN
        SET msg = CONCAT('quarantined change ', p_quarantine_id, ' is ', v_status, ', not pending');
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
