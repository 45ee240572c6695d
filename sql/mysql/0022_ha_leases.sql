-- duplex control schema, MySQL/MariaDB flavour, migration 22: leases of
-- `duplex run --ha` processes (see sql/postgresql/0022_ha_leases.sql).

CREATE TABLE IF NOT EXISTS duplex.link_leases (
    link_id     INT NOT NULL PRIMARY KEY,
    holder      VARCHAR(255) NOT NULL,
    term        BIGINT NOT NULL,
    expires_at  DATETIME(6) NOT NULL,
    acquired_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    renewed_at  DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    CONSTRAINT link_leases_link FOREIGN KEY (link_id) REFERENCES duplex.links (link_id) ON DELETE CASCADE
) ENGINE = InnoDB COMMENT = 'which duplex run --ha process applies each link, under which fencing term, until when (written by duplex)';

CREATE TABLE IF NOT EXISTS duplex.run_processes (
    holder     VARCHAR(255) NOT NULL PRIMARY KEY,
    started_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    expires_at DATETIME(6) NOT NULL
) ENGINE = InnoDB COMMENT = 'the live duplex run --ha processes (written by duplex): links spread across them';

CREATE OR REPLACE VIEW duplex.lease_overview AS
SELECT l.link_id, l.name AS link, ls.holder, ls.term,
       ls.expires_at > UTC_TIMESTAMP(6) AS held,
       ls.acquired_at, ls.renewed_at, ls.expires_at
  FROM duplex.links l
  LEFT JOIN duplex.link_leases ls ON ls.link_id = l.link_id;

-- PostgreSQL 17+ sites: failover slots (see the PostgreSQL flavour).
ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS failover_slots BOOLEAN NOT NULL DEFAULT FALSE
        COMMENT 'create the link''s replication slots as failover slots (PostgreSQL 17+), kept on a physical standby for a failover';
