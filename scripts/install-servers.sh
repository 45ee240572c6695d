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
