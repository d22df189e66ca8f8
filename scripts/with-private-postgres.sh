#!/usr/bin/env bash
# Runs a command with a PostgreSQL of its own on 127.0.0.1:5432, for tests in
# a private network namespace (where the host's PostgreSQL is out of reach):
# a fresh cluster in a temporary directory (trust auth), started as the
# `postgres` user, stopped and removed afterwards. Sets SIMMER_TEST_DATABASE
# and SIMMER_TEST_POSTGRES_URL for the command.
#
#   unshare --net sh -c 'ip link set lo up && exec scripts/with-private-postgres.sh cargo test ...'
set -euo pipefail
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
DIR="$(mktemp -d)"
# PostgreSQL refuses to run as root: as `postgres` when we are root, else as
# ourselves.
if [ "$(id -u)" = 0 ] && su postgres -s /bin/sh -c true 2>/dev/null; then
    chown postgres "$DIR"
    as_postgres() { su postgres -s /bin/sh -c "$*"; }
else
    as_postgres() { sh -c "$*"; }
fi
as_postgres "'$BIN/initdb' -D '$DIR/data' -A trust -U postgres >'$DIR/initdb.log' 2>&1"
as_postgres "'$BIN/pg_ctl' -D '$DIR/data' -l '$DIR/server.log' -w \
    -o \"-c listen_addresses=127.0.0.1 -p 5432 -k '$DIR' -c fsync=off\" start >/dev/null"
trap 'as_postgres "\"$BIN/pg_ctl\" -D \"$DIR/data\" -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
export SIMMER_TEST_DATABASE=postgres
export SIMMER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
"$@"
