-- duplex control schema, migration 19: no secret in a site's conninfo.
--
-- The check of migration 1 refused `password=` and `user:pw@host` URLs, but
-- let a password through as a URL parameter (`...?password=x`), as
-- `sslpassword=x`, and in a URL given as `dbname=` (libpq expands it). A
-- site whose conninfo holds one must have it removed before this migration
-- applies; it names them.

DO $$
DECLARE
    holding text;
BEGIN
    SELECT string_agg(name, ', ' ORDER BY site_id) INTO holding
      FROM duplex.sites
     WHERE conninfo ~* 'password\s*=' OR conninfo ~ '://[^/@\s]*:[^/@\s]*@';
    IF holding IS NOT NULL THEN
        RAISE EXCEPTION 'the conninfo of duplex.sites % holds a password: remove it (duplex reads passwords from password_env or password_file), then run duplex upgrade again', holding;
    END IF;
END $$;

ALTER TABLE duplex.sites DROP CONSTRAINT sites_conninfo_has_no_password;
ALTER TABLE duplex.sites ADD CONSTRAINT sites_conninfo_has_no_password
    CHECK (conninfo !~* 'password\s*=' AND conninfo !~ '://[^/@\s]*:[^/@\s]*@');
