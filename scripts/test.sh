#!/usr/bin/env bash
# The whole test suite: unit tests, property tests and end-to-end tests against
# real throwaway PostgreSQL clusters (started and removed by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh --with-pg18
# Two test threads: every end-to-end test starts two clusters, and the
# machines this runs on have two cores.
exec cargo test --all-targets --no-fail-fast -- --test-threads "${DUPLEX_TEST_THREADS:-2}" "$@"
