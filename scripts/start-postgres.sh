#!/usr/bin/env bash
# Starts a throw-away PostgreSQL 15 cluster for the tests, as the `postgres` OS user, listening
# on 127.0.0.1:${PGPORT:-55432} with trust authentication (loopback only). Prints the admin URL.
# Usage: scripts/start-postgres.sh [DIR]    (default /tmp/infrapilot-pg; stop: pg_ctl -D DIR/data stop)
set -euo pipefail
dir=${1:-/tmp/infrapilot-pg}
port=${PGPORT:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "start-postgres: installing PostgreSQL (Debian package postgresql)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
as_postgres() { su postgres -s /bin/bash -c "$*"; }
if [ -f "$dir/data/postmaster.pid" ] && as_postgres "$bin/pg_ctl -D $dir/data status" >/dev/null 2>&1; then
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"
chown postgres:postgres "$dir"
as_postgres "$bin/initdb -D $dir/data -U postgres --auth=trust -E UTF8 --no-locale" >/dev/null
as_postgres "$bin/pg_ctl -D $dir/data -l $dir/server.log -w -o \"-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off\" start" >/dev/null
echo "postgres://postgres@127.0.0.1:$port/postgres"
