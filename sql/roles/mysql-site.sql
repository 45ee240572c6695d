-- duplex on a MySQL/MariaDB site, least privilege.
--
-- Run as an administrator, after setting the database name below:
--
--   mariadb -u root < sql/roles/mysql-site.sql        (or: mysql -u root < ...)
--
-- Then set the account's password yourself
-- (ALTER USER 'duplex'@'%' IDENTIFIED BY '...'): it never goes into a script
-- or into duplex's configuration. Narrow '%' to the host duplex runs on.
--
-- What duplex gets:
--   * REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR): read the
--     binlog as a replica and its position.
--   * SELECT, INSERT, UPDATE, DELETE on the synced database.
--   * CREATE and ALTER on it: duplex creates its own tables there
--     (_duplex_applied, _duplex_tombstones, _duplex_journal) and adds its two invisible columns
--     to each synced table the first time. Once they exist, ALTER can be
--     revoked; duplex checks before it alters.

SET @db = 'app';  -- the synced database

CREATE USER IF NOT EXISTS 'duplex'@'%';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'duplex'@'%';
-- Optional: lets the applier read InnoDB's lock waits, so that it commits as
-- soon as the application waits for a row it holds (without it, duplex groups
-- source transactions regardless; see README, Limits). PROCESS also shows
-- every session's statement text: grant it where that is acceptable.
-- GRANT PROCESS ON *.* TO 'duplex'@'%';
SET @grant = CONCAT('GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER ON `',
                    REPLACE(@db, '`', '``'), '`.* TO ''duplex''@''%''');
PREPARE grant_stmt FROM @grant;
EXECUTE grant_stmt;
DEALLOCATE PREPARE grant_stmt;
