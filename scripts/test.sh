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
# Database tests run against SQLite and a real PostgreSQL: a throwaway server (Debian's
# postgresql; data and socket in a temp dir, no TCP, run as a non-root user), stopped at exit.
# An ALLIANCE_TEST_POSTGRES_URL already set is used as it is.
PG_TMP=""
PG_BIN=""
PG_AS=()
stop_postgres() {
  if [ -n "$PG_TMP" ] && [ -f "$PG_TMP/data/postmaster.pid" ]; then
    (cd "$PG_TMP" && "${PG_AS[@]+"${PG_AS[@]}"}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m fast -w stop >/dev/null 2>&1) \
      || (cd "$PG_TMP" && "${PG_AS[@]+"${PG_AS[@]}"}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1) || true
    echo "PostgreSQL test server stopped."
  fi
  if [ -n "$PG_TMP" ]; then rm -rf "$PG_TMP"; fi
}
start_postgres() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    if [ "$(id -u)" != "0" ]; then
      echo "NOTE: PostgreSQL is missing; install Debian's 'postgresql' package (sudo apt-get install postgresql)"
      return 1
    fi
    echo "Installing Debian's postgresql for the database tests ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || return 1
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || return 1
  fi
  PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/alliance-pg.XXXXXX")
  if [ "$(id -u)" = "0" ]; then  # PostgreSQL refuses to run as root
    local owner=postgres
    if ! id -u "$owner" >/dev/null 2>&1; then
      owner=alliance-pg
      id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$owner" || return 1
    fi
    chown "$owner" "$PG_TMP"
    PG_AS=(runuser -u "$owner" --)
  fi
  chmod 700 "$PG_TMP"
  (cd "$PG_TMP" && "${PG_AS[@]+"${PG_AS[@]}"}" "$PG_BIN/initdb" -D "$PG_TMP/data" -U alliance -A trust -E UTF8 \
      --locale=C.UTF-8 >"$PG_TMP/initdb.log" 2>&1) || { cat "$PG_TMP/initdb.log" >&2; return 1; }
  (cd "$PG_TMP" && "${PG_AS[@]+"${PG_AS[@]}"}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w -t 60 \
      -o "-c listen_addresses='' -k $PG_TMP -c fsync=off -c max_connections=100" start >/dev/null) \
    || { cat "$PG_TMP/server.log" >&2; return 1; }
  (cd "$PG_TMP" && "${PG_AS[@]+"${PG_AS[@]}"}" "$PG_BIN/createdb" -h "$PG_TMP" -U alliance alliance_test) || return 1
  export ALLIANCE_TEST_POSTGRES_URL="postgresql+psycopg://alliance@/alliance_test?host=$PG_TMP"
  echo "PostgreSQL test server: $("$PG_BIN/postgres" --version), socket in $PG_TMP"
}
if [ -z "${ALLIANCE_TEST_POSTGRES_URL:-}" ]; then
  trap stop_postgres EXIT
  trap 'exit 130' INT TERM
  if ! start_postgres; then
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
