-- duplex control schema, PostgreSQL flavour, migration 1.
--
-- Installed by `duplex init --control <url>` (idempotent). The running process
-- reads sites, links and tables from here and writes its status back. Later
-- migrations add to it; never edit a released migration, add a new file.

CREATE SCHEMA IF NOT EXISTS duplex;

COMMENT ON SCHEMA duplex IS 'duplex two-way replication: configuration and status';

-- One database that duplex syncs.
CREATE TABLE IF NOT EXISTS duplex.sites (
    site_id       integer PRIMARY KEY CHECK (site_id BETWEEN 1 AND 65535),
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    engine        text NOT NULL CHECK (engine IN ('postgresql', 'mysql')),
    -- libpq key=value string or URL, WITHOUT a password: passwords never live
    -- in configuration tables. Name an environment variable or a file instead.
    conninfo      text NOT NULL,
    password_env  text,
    password_file text,
    tls_mode      text NOT NULL DEFAULT 'prefer'
                  CHECK (tls_mode IN ('disable', 'prefer', 'require', 'verify-ca', 'verify-full')),
    tls_ca_file   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sites_conninfo_has_no_password
        CHECK (conninfo !~* '(^|\s)password\s*=' AND conninfo !~ '^[a-z]+://[^/@]*:[^/@]*@')
);

COMMENT ON COLUMN duplex.sites.site_id IS 'stable small id; it keys the version vectors in every synced row, never reuse one';
COMMENT ON COLUMN duplex.sites.password_env IS 'name of the environment variable that holds the password';
COMMENT ON COLUMN duplex.sites.password_file IS 'path of a file that holds the password (first line)';

-- Two sites kept in sync.
CREATE TABLE IF NOT EXISTS duplex.links (
    link_id       integer PRIMARY KEY CHECK (link_id BETWEEN 1 AND 9999),
    name          text NOT NULL UNIQUE,
    site_a        integer NOT NULL REFERENCES duplex.sites,
    site_b        integer NOT NULL REFERENCES duplex.sites,
    enabled       boolean NOT NULL DEFAULT true,
    marker_column text NOT NULL DEFAULT '_duplex' CHECK (length(marker_column) BETWEEN 1 AND 63),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (site_a <> site_b)
);

-- The tables a link syncs. The same schema and table name on both sites.
CREATE TABLE IF NOT EXISTS duplex.link_tables (
    link_id          integer NOT NULL REFERENCES duplex.links ON DELETE CASCADE,
    schema_name      text NOT NULL DEFAULT 'public',
    table_name       text NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    -- 'full': REPLICA IDENTITY FULL, complete before images (needed for field-level
    -- merge and for unchanged-TOAST checksums). 'key': primary key only, less WAL.
    replica_identity text NOT NULL DEFAULT 'full' CHECK (replica_identity IN ('full', 'key')),
    PRIMARY KEY (link_id, schema_name, table_name)
);

-- Written by the running process: one row per direction of each link.
CREATE TABLE IF NOT EXISTS duplex.link_status (
    link_id            integer NOT NULL REFERENCES duplex.links ON DELETE CASCADE,
    source_site        integer NOT NULL,
    target_site        integer NOT NULL,
    state              text NOT NULL,
    source_position    text,
    applied_position   text,
    applied_txns       bigint NOT NULL DEFAULT 0,
    applied_rows       bigint NOT NULL DEFAULT 0,
    echo_txns_skipped  bigint NOT NULL DEFAULT 0,
    last_error         text,
    last_error_at      timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, source_site)
);
