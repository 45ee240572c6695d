-- duplex's control database on MySQL/MariaDB, least privilege.
--
-- Run as an administrator:
--
--   mariadb -u root < sql/roles/mysql-control.sql      (or: mysql -u root < ...)
--
-- Then set the passwords yourself (ALTER USER 'duplex_control'@'%'
-- IDENTIFIED BY '...'): they never go into a script or into duplex's
-- configuration. Narrow '%' to the hosts involved.
--
-- duplex_control runs `duplex init`, `duplex upgrade` and `duplex run`
-- (--control mysql://duplex_control@host:port/duplex): everything on
-- database `duplex` and nothing else. DBAs who configure and watch duplex
-- get the role duplex_admin: read everything, change the configuration
-- tables, and CALL the procedures that settle conflicts and quarantined
-- changes (they run with their definer's rights).
--
-- With binary logging on and log_bin_trust_function_creators off (the
-- default), MySQL/MariaDB let only a SUPER account create triggers: there,
-- run `duplex init` and `duplex upgrade` as an administrator, and `duplex
-- run` as duplex_control (which then needs only SELECT, INSERT, UPDATE and
-- DELETE on duplex.*). The triggers only update duplex.config_version.

CREATE DATABASE IF NOT EXISTS duplex CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

CREATE USER IF NOT EXISTS 'duplex_control'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES,
      CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, ALTER ROUTINE, EXECUTE
   ON duplex.* TO 'duplex_control'@'%';

CREATE ROLE IF NOT EXISTS duplex_admin;
GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE, SHOW VIEW ON duplex.* TO duplex_admin;

-- For each DBA:
--   GRANT duplex_admin TO 'alice'@'%';
--   SET DEFAULT ROLE duplex_admin FOR 'alice'@'%';
