-- duplex on a PostgreSQL site, least privilege.
--
-- Run as the owner of the synced tables (or a superuser), in the synced
-- database, once per link:
--
--   psql -d crm -v link=1 -v tables='public.customers,public.tickets' -f sql/roles/postgresql-site.sql
--
-- Optional: -v marker=_duplex (the link's marker_column), -v role=duplex.
-- Then set the role's password yourself (\password duplex): it never goes into
-- a script or into duplex's configuration.
--
-- What duplex gets:
--   * LOGIN REPLICATION: logical replication slots and the streaming protocol.
--   * SELECT, INSERT, UPDATE, DELETE, TRUNCATE on the synced tables only, and
--     SELECT on the sequences that fill their columns (read only: where
--     each stands, for the key-collision check).
--   * Its own schema "duplex" (tombstones of rows it deleted, and conflict and
--     quarantine records until they are shipped to the control schema).
--   * EXECUTE on the replication-origin functions (loop prevention and its
--     applied position), which PostgreSQL grants to no one by default.
-- What it does not get: ownership of your tables. This script does, as their
-- owner, the one-time DDL duplex would otherwise need ownership for: the
-- marker column, REPLICA IDENTITY FULL and the link's publication. duplex
-- finds them in place and changes nothing. (Adding a table to the link later:
-- run this script again with the new list.)

\set ON_ERROR_STOP on
SELECT :'link'::integer AS link_id \gset
\if :{?marker}
\else
  \set marker _duplex
\endif
\if :{?role}
\else
  \set role duplex
\endif

SELECT format('CREATE ROLE %I LOGIN REPLICATION', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN REPLICATION', :'role') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'role') \gexec
SELECT format('CREATE SCHEMA IF NOT EXISTS duplex AUTHORIZATION %I', :'role') \gexec

-- The synced tables: privileges, marker column, replica identity.
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', n.nspname, :'role')
  FROM (SELECT DISTINCT ns.nspname
          FROM unnest(string_to_array(:'tables', ',')) AS t
          JOIN pg_class c ON c.oid = trim(t)::regclass
          JOIN pg_namespace ns ON ns.oid = c.relnamespace) n \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON %s TO %I', trim(t)::regclass, :'role'),
       format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS %I jsonb', trim(t)::regclass, :'marker'),
       format('ALTER TABLE %s REPLICA IDENTITY FULL', trim(t)::regclass)
  FROM unnest(string_to_array(:'tables', ',')) AS t \gexec
-- The sequences that fill the synced tables' columns (serial, identity, or
-- a default naming one): read only, so that `duplex config check` and
-- `duplex keys interleave` know where each stands (two sites handing out the
-- same keys is a conflict per key).
SELECT format('GRANT SELECT ON SEQUENCE %s TO %I', c.oid::regclass, :'role')
  FROM unnest(string_to_array(:'tables', ',')) AS t
  JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = trim(t)::regclass
                  AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
UNION
SELECT format('GRANT SELECT ON SEQUENCE %s TO %I', c.oid::regclass, :'role')
  FROM unnest(string_to_array(:'tables', ',')) AS t
  JOIN pg_attrdef ad ON ad.adrelid = trim(t)::regclass
  JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class c ON c.oid = d.refobjid AND c.relkind = 'S' \gexec
-- A partitioned table's partitions log their own old rows: each needs it too.
SELECT format('ALTER TABLE %s REPLICA IDENTITY FULL', p.relid::regclass)
  FROM unnest(string_to_array(:'tables', ',')) AS t,
       pg_partition_tree(trim(t)::regclass) p
 WHERE p.relid <> trim(t)::regclass \gexec

-- The link's publication, exactly these tables, each ONLY itself (an
-- inheritance parent's children stay out: a child without a replica identity
-- in a publication would refuse the application's UPDATE and DELETE), and a
-- partitioned table published as itself.
SELECT format('CREATE PUBLICATION %I WITH (publish_via_partition_root = true)', 'duplex_l' || :'link')
 WHERE NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'duplex_l' || :'link') \gexec
SELECT format('ALTER PUBLICATION %I SET (publish_via_partition_root = true)', 'duplex_l' || :'link') \gexec
SELECT format('ALTER PUBLICATION %I SET TABLE %s', 'duplex_l' || :'link',
              string_agg('ONLY ' || trim(t)::regclass::text, ', '))
  FROM unnest(string_to_array(:'tables', ',')) AS t \gexec

-- Replication origins: created, set up and advanced by duplex's applier.
SELECT format('GRANT EXECUTE ON FUNCTION %s TO %I', f, :'role')
  FROM unnest(ARRAY[
         'pg_replication_origin_create(text)',
         'pg_replication_origin_drop(text)',
         'pg_replication_origin_session_setup(text)',
         'pg_replication_origin_session_reset()',
         'pg_replication_origin_xact_setup(pg_lsn, timestamp with time zone)',
         'pg_replication_origin_advance(text, pg_lsn)',
         'pg_replication_origin_progress(text, boolean)']) AS f \gexec

-- Recommended, run by a superuser (PostgreSQL 15+): lets duplex apply in the
-- replica role (session_replication_role = replica), as PostgreSQL's own
-- logical replication does: the site's ordinary triggers and rules do not
-- fire for the rows duplex applies (a trigger that stamps last_update would
-- otherwise re-stamp every applied row here only, and the sites would drift),
-- and the initial sync copies tables with foreign keys in any order. Without
-- it, duplex refuses each synced table that has such a trigger (naming it),
-- unless duplex.link_tables.fire_triggers says it should fire, and copies
-- tables parents first.
--   GRANT SET ON PARAMETER session_replication_role TO duplex;
