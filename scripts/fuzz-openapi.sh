#!/usr/bin/env bash
# Boots simmer (SQLite, a temporary data directory, a free loopback port) and
# runs schemathesis against its own OpenAPI document: no 5xx, and every
# response must match the documented status codes, content types and schemas.
# Called by scripts/test.sh; runnable alone after `cargo build --workspace --all-features`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
# shellcheck source=lib/cargo.sh
. "$ROOT/scripts/lib/cargo.sh"
CACHE="$HOME/.cache/simmer"
VENV="$CACHE/venv"
SCHEMATHESIS_VERSION="4.32.5"
EXAMPLES="${SIMMER_FUZZ_EXAMPLES:-40}"
GUEST_EXAMPLES="${SIMMER_FUZZ_GUEST_EXAMPLES:-10}"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV" 2>/dev/null || {
        [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    }
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

build_all
BIN="$CARGO_TARGET_DIR/debug/simmer"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

# An admin token is set (never given to the fuzzer), so the admin endpoint
# answers a missing or wrong token with 401 as documented.
SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG="warn" \
    SIMMER_ADMIN_TOKEN="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
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

# Every check (scripts/schemathesis.toml), the stateful phase too (links
# read off Location headers and shared fields), as the user who owns the
# data; then the same operations with a guest token, which may read and
# chat in its own session only.
fuzz() { # TOKEN EXAMPLES PHASES
    "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" \
        run "$BASE/api-docs/openapi.json" \
        --checks all \
        --header "Authorization: Bearer $1" \
        --max-examples "$2" \
        --phases "$3" \
        --workers 1 \
        --seed 20261126 \
        --generation-database none \
        --suppress-health-check all \
        --request-timeout 20 \
        --no-color
}
# Taken before the fuzzer may end the session.
GUEST="$(curl -fsS -X POST "$BASE/api/v1/sessions/$SESSION/guest-tokens" \
    -H 'content-type: application/json' -d '{"display_name":"Fuzzing guest"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
status=0
fuzz "$TOKEN" "$EXAMPLES" examples,coverage,fuzzing,stateful || status=$?
fuzz "$GUEST" "$GUEST_EXAMPLES" examples,coverage,fuzzing || status=$?

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
