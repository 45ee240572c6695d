-- duplex control schema, migration 22: several `duplex run --ha` processes
-- share one control schema.
--
-- Each link is applied by one process at a time: the holder of its lease.
-- A holder renews its leases every few seconds; a lease not renewed by
-- expires_at is free, and another process takes it with a higher term (the
-- fencing term: a process that finds its term gone stops the link at once,
-- and one that cannot renew stops it before its lease can expire). The
-- times are the control database's clock, so the processes' clocks need
-- not agree. Processes register in run_processes, so that links spread
-- across the live ones.

CREATE TABLE IF NOT EXISTS duplex.link_leases (
    link_id     integer PRIMARY KEY REFERENCES duplex.links ON DELETE CASCADE,
    -- host:pid:nonce of the process that holds (or last held) the lease
    holder      text NOT NULL,
    term        bigint NOT NULL,
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE duplex.link_leases IS
    'which `duplex run --ha` process applies each link, under which fencing term, until when (written by duplex)';

CREATE TABLE IF NOT EXISTS duplex.run_processes (
    holder     text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

COMMENT ON TABLE duplex.run_processes IS
    'the live `duplex run --ha` processes (written by duplex): links spread across them';

CREATE OR REPLACE VIEW duplex.lease_overview AS
SELECT l.link_id, l.name AS link, ls.holder, ls.term,
       ls.expires_at > now() AS held,
       ls.acquired_at, ls.renewed_at, ls.expires_at
  FROM duplex.links l
  LEFT JOIN duplex.link_leases ls USING (link_id);

COMMENT ON VIEW duplex.lease_overview IS 'per link: the process applying it (duplex run --ha), its term, and whether the lease is live';

-- PostgreSQL 17+: duplex's slots on the link's PostgreSQL sites are created
-- as failover slots, which a physical standby keeps in sync (with
-- sync_replication_slots on the standby and synchronized_standby_slots on
-- the primary), so that duplex goes on from the standby after a failover.
ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS failover_slots boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN duplex.links.failover_slots IS
    'create the link''s replication slots as failover slots (PostgreSQL 17+), kept on a physical standby for a failover';
