# Sourced by test.sh and stack.sh: a throwaway PostgreSQL server from Debian's postgresql (installed
# with apt-get as root when missing; data and socket in a temporary directory, no TCP, run as a
# non-root user). `start_postgres [DB]` starts it and sets PG_URL (a SQLAlchemy URL to database DB,
# default alliance_test); `stop_postgres` stops it and removes its directory.
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
  local db="${1:-alliance_test}"
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
  (cd "$PG_TMP" && "${PG_AS[@]+"${PG_AS[@]}"}" "$PG_BIN/createdb" -h "$PG_TMP" -U alliance "$db") || return 1
  PG_URL="postgresql+psycopg://alliance@/$db?host=$PG_TMP"
  echo "PostgreSQL server: $("$PG_BIN/postgres" --version), socket in $PG_TMP, database $db"
}
