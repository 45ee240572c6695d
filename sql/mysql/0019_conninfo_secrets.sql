-- duplex control schema, MySQL/MariaDB flavour, migration 19: no secret in a
-- site's conninfo (see sql/postgresql/0019_conninfo_secrets.sql). A site
-- whose conninfo holds a password fails the new check: remove it (duplex
-- reads passwords from password_env or password_file), then upgrade again:
-- the statements can be run again after a failure.

ALTER TABLE duplex.sites DROP CONSTRAINT IF EXISTS sites_conninfo_has_no_password;

ALTER TABLE duplex.sites ADD CONSTRAINT IF NOT EXISTS sites_conninfo_has_no_password
    CHECK (LOWER(conninfo) NOT REGEXP 'password[[:space:]]*='
           AND conninfo NOT REGEXP '://[^/@[:space:]]*:[^/@[:space:]]*@');
