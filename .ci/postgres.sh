#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster in a temp folder on a free port and exports
# LETHE_TEST_POSTGRES_URL. Source it; call `stop_postgres` (or rely on the EXIT trap).
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
set -euo pipefail

PG_DIR="$(mktemp -d /tmp/lethe-pg.XXXXXX)"
PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres "$PG_DIR"
        su postgres -s /bin/bash -c "$*"
    else
        bash -c "$*"
    fi
}
as_pg "initdb -D '$PG_DIR/data' -U lethe --auth=trust -E UTF8 >'$PG_DIR/initdb.log' 2>&1"
as_pg "pg_ctl -D '$PG_DIR/data' -l '$PG_DIR/server.log' -w -o \"-p $PG_PORT -k '$PG_DIR' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300\" start >/dev/null"
stop_postgres() {
    as_pg "pg_ctl -D '$PG_DIR/data' -m immediate stop >/dev/null 2>&1" || true
    rm -rf "$PG_DIR"
}
export LETHE_TEST_POSTGRES_URL="postgres://lethe@127.0.0.1:$PG_PORT/postgres"
echo "PostgreSQL ready at $LETHE_TEST_POSTGRES_URL (data in $PG_DIR)" >&2
