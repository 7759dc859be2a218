# A throwaway PostgreSQL server for the tests: sourced by .ci/run (or by hand, then `pg_start`).
#
# pg_start: installs Debian's `postgresql` if its binaries are missing (apt-get, as root or through sudo),
#   initialises a cluster in a temporary directory, starts it on 127.0.0.1 on a free port (initdb refuses
#   root, so as root the server runs as the `postgres` user), creates a database and exports the variables
#   that deploy/postgres/dagster.yaml and tests/test_postgres.py read:
#   DAGSTER_PG_HOST DAGSTER_PG_PORT DAGSTER_PG_USER DAGSTER_PG_PASSWORD DAGSTER_PG_DB.
#   Returns 2 without exporting anything when PostgreSQL is missing and apt-get is not there (the Postgres
#   test then skips, saying why); any other failure returns 1.
# pg_stop: stops the server and removes its directory (safe to call twice).

. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

_pg_say() { echo "[postgres] $*" >&2; }

_pg_bin() {  # the newest installed server's bin directory
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

_pg_install() { apt_install postgres PostgreSQL postgresql; }

_pg_as() {  # run a command as the server's owner, from its directory (the caller's may be closed to it)
  if [ "$(id -u)" -eq 0 ]; then (cd "$PG_TMP" && runuser -u postgres -- "$@"); else (cd "$PG_TMP" && "$@"); fi
}

pg_start() {
  local bin port
  bin=$(_pg_bin) || { _pg_install || return $?; bin=$(_pg_bin) || { _pg_say "no initdb after installing"; return 1; }; }
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres || return 1
  fi
  PG_TMP=$(mktemp -d /tmp/genixer-pg.XXXXXX) || return 1
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || return 1
  PG_PASSWORD_VALUE=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$PG_PASSWORD_VALUE" >"$PG_TMP/pw"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$PG_TMP"
  _pg_as "$bin/initdb" -D "$PG_TMP/data" -U genixer --pwfile="$PG_TMP/pw" --auth=scram-sha-256 -E UTF8 \
    --locale=C --no-instructions >"$PG_TMP/initdb.log" 2>&1 || { cat "$PG_TMP/initdb.log" >&2; return 1; }
  _pg_as "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_TMP" start >/dev/null || { cat "$PG_TMP/server.log" >&2; return 1; }
  PG_BIN=$bin
  PGPASSWORD=$PG_PASSWORD_VALUE "$bin/createdb" -h 127.0.0.1 -p "$port" -U genixer genixer_test || return 1
  export DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_PORT=$port DAGSTER_PG_USER=genixer \
    DAGSTER_PG_PASSWORD=$PG_PASSWORD_VALUE DAGSTER_PG_DB=genixer_test
  _pg_say "PostgreSQL $("$bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$port, database genixer_test (data in $PG_TMP)"
}

pg_stop() {
  [ -n "${PG_TMP:-}" ] || return 0
  if [ -n "${PG_BIN:-}" ] && [ -f "$PG_TMP/data/postmaster.pid" ]; then
    _pg_as "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m fast -w stop >/dev/null 2>&1 || _pg_say "pg_ctl stop failed"
  fi
  rm -rf "$PG_TMP"
  PG_TMP=""
}
