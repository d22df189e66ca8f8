#!/usr/bin/env bash
# The shipped nginx config (infra/nginx/simmer.conf), tested for real: three
# simmer nodes on a fresh PostgreSQL database and a redis-server of this
# script's own, Debian's nginx terminating TLS in front (a CA and certificate
# made here with openssl), and a Python client written from docs/protocol.md
# that chats and follows the timer through the proxy while every node is
# restarted in turn (scripts/interop/through_proxy.py). Loopback only.
#
# Needs nginx, openssl, redis-server and a PostgreSQL server at
# SIMMER_TEST_POSTGRES_URL (scripts/test.sh makes sure of all four).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
# shellcheck source=lib/cargo.sh
. "$ROOT/scripts/lib/cargo.sh"
ADMIN_URL="${SIMMER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
VENV="$HOME/.cache/simmer/interop-venv"
if ! "$VENV/bin/python" -c 'import websockets, jsonschema' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "websockets==15.0.1" "jsonschema==4.26.0"
fi
build_all
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || { echo "nginx is missing (apt-get install nginx)" >&2; exit 1; }

WORK="$(mktemp -d)"
chmod 755 "$WORK"
DB="simmer_proxy_$(date +%s)_$$"
REDIS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
cleanup() {
    kill "$REDIS_PID" 2>/dev/null || true
    psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
psql -q "$ADMIN_URL" -c "CREATE DATABASE \"$DB\"" >/dev/null
PATH="$(dirname "$NGINX"):$PATH" "$VENV/bin/python" scripts/interop/through_proxy.py \
    "$CARGO_TARGET_DIR/debug/simmer" "${ADMIN_URL%/*}/$DB" "redis://127.0.0.1:$REDIS_PORT" "$WORK" || {
    status=$?
    tail -n 20 "$WORK"/n*.log "$WORK/nginx-error.log" 2>/dev/null || true
    exit "$status"
}
