-- duplex control schema, migration 4: how long tombstones are kept.
--
-- When duplex applies a delete it keeps the deleted version's vector as a
-- tombstone on the target site (duplex.site_tombstones on PostgreSQL,
-- _duplex_tombstones on MySQL/MariaDB). On a two-site link no older version
-- of the row can arrive once the delete is applied (each direction is applied
-- in source order and resumes exactly where it committed), so a tombstone
-- only names a later concurrent update (update_delete rather than
-- update_missing) and, where sites form a full mesh of links, stops a stale
-- version that travels through a third site from bringing the row back. It
-- must outlive the largest replication lag between any two sites.

ALTER TABLE duplex.links
    ADD COLUMN IF NOT EXISTS tombstone_retention interval NOT NULL DEFAULT '1 day'
        CHECK (tombstone_retention >= interval '0');

COMMENT ON COLUMN duplex.links.tombstone_retention IS
    'tombstones of rows duplex deleted are removed from the target sites after this long; keep it above the largest replication lag between any two sites';
