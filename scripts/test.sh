#!/usr/bin/env bash
# Install the test tools (once) and run every test. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh requirements-dev.txt
# Browser tests drive Debian's Chromium (Playwright's own browser download is not used).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "Installing Debian's chromium for the browser tests ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "WARNING: could not install chromium; browser tests will fail"
  else
    echo "NOTE: /usr/bin/chromium is missing; install Debian's 'chromium' package (sudo apt-get install chromium)"
  fi
fi
# Database tests run against SQLite and a real PostgreSQL: a throwaway server (scripts/postgres.sh),
# stopped at exit. An ALLIANCE_TEST_POSTGRES_URL already set is used as it is.
. scripts/postgres.sh
if [ -z "${ALLIANCE_TEST_POSTGRES_URL:-}" ]; then
  trap stop_postgres EXIT
  trap 'exit 130' INT TERM
  if start_postgres alliance_test; then
    export ALLIANCE_TEST_POSTGRES_URL="$PG_URL"
  else
    if [ -n "${CI:-}" ]; then
      echo "ERROR: could not start PostgreSQL for the database tests" >&2
      exit 1
    fi
    echo "WARNING: no PostgreSQL server; the PostgreSQL database tests will be skipped" >&2
  fi
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
