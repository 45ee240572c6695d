#!/usr/bin/env bash
# Two throwaway PostgreSQL clusters kept in sync by duplex, with writes on each
# side shown arriving on the other. Everything is removed when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh
exec cargo run --quiet -- demo "$@"
