#!/usr/bin/env bash
# duplex against PostgreSQL's own logical replication, on throwaway local
# clusters, in release mode. Extra arguments go to `duplex bench`
# (e.g. --bulk-rows 1000000 --small-txns 50000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh
exec cargo run --release --quiet -- bench "$@"
