-- duplex's control database (PostgreSQL), least privilege.
--
-- Run as a superuser in the control database:
--
--   psql -d duplex_control -f sql/roles/postgresql-control.sql
--
-- Then \password duplex_control, and run `duplex init` as duplex_control: the
-- control schema belongs to it. DBAs who configure and watch duplex get the
-- role duplex_admin (GRANT duplex_admin TO alice): read everything, change
-- the configuration tables, settle conflicts and quarantined changes.

\set ON_ERROR_STOP on
SELECT 'CREATE ROLE duplex_control LOGIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'duplex_control') \gexec
SELECT 'CREATE ROLE duplex_admin NOLOGIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'duplex_admin') \gexec
SELECT format('GRANT CONNECT, CREATE ON DATABASE %I TO duplex_control', current_database()) \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO duplex_admin', current_database()) \gexec
CREATE SCHEMA IF NOT EXISTS duplex AUTHORIZATION duplex_control;
GRANT USAGE ON SCHEMA duplex TO duplex_admin;
-- Tables and functions duplex init creates later: owned by duplex_control,
-- usable by duplex_admin.
ALTER DEFAULT PRIVILEGES FOR ROLE duplex_control IN SCHEMA duplex
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO duplex_admin;
ALTER DEFAULT PRIVILEGES FOR ROLE duplex_control IN SCHEMA duplex
    GRANT EXECUTE ON FUNCTIONS TO duplex_admin;
ALTER DEFAULT PRIVILEGES FOR ROLE duplex_control IN SCHEMA duplex
    GRANT USAGE ON SEQUENCES TO duplex_admin;
