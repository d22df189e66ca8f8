#!/usr/bin/env bash
# Boots simmer (SQLite, a temporary data directory, a free loopback port) and
# runs schemathesis against its own OpenAPI document: no 5xx, and every
# response must match the documented status codes, content types and schemas.
# Called by scripts/test.sh; runnable alone after `cargo build -p backend`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
CACHE="$HOME/.cache/simmer"
VENV="$CACHE/venv"
SCHEMATHESIS_VERSION="4.32.5"
EXAMPLES="${SIMMER_FUZZ_EXAMPLES:-40}"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV" 2>/dev/null || {
        [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    }
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -p backend --locked --quiet
BIN="$CARGO_TARGET_DIR/debug/simmer"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG="warn" \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
PID=$!
cleanup() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/server.log"; echo "simmer exited" >&2; exit 1; }
    sleep 0.2
done

# A user whose token authenticates the fuzzer's requests, and some data for
# it to find.
TOKEN="$(curl -fsS -X POST "$BASE/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"username":"fuzzer","password":"fuzzer-password"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
RECIPE="$(curl -fsS -X POST "$BASE/api/v1/recipes" -H 'content-type: application/json' \
    -H "authorization: Bearer $TOKEN" \
    -d '{"title":"Soup","steps":[{"text":"Chop","duration_s":60},{"text":"Boil"}]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
SESSION="$(curl -fsS -X POST "$BASE/api/v1/sessions" -H 'content-type: application/json' \
    -H "authorization: Bearer $TOKEN" -d "{\"recipe_id\":\"$RECIPE\",\"title\":\"Live\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
curl -fsS -X POST "$BASE/api/v1/sessions/$SESSION/start" -H "authorization: Bearer $TOKEN" >/dev/null

status=0
"$VENV/bin/schemathesis" run "$BASE/api-docs/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --header "Authorization: Bearer $TOKEN" \
    --max-examples "$EXAMPLES" \
    --phases examples,coverage,fuzzing \
    --workers 1 \
    --seed 20261126 \
    --generation-database none \
    --suppress-health-check all \
    --request-timeout 20 \
    --no-color || status=$?

if grep -q "panicked" "$WORK/server.log"; then
    echo "simmer panicked during fuzzing:" >&2
    grep -A5 "panicked" "$WORK/server.log" >&2
    status=1
fi
if ! kill -0 "$PID" 2>/dev/null; then
    echo "simmer died during fuzzing" >&2
    tail -50 "$WORK/server.log" >&2
    status=1
fi
exit "$status"
