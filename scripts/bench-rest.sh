#!/usr/bin/env bash
# REST benchmark: boots a release `simmer` (SQLite, temporary data directory,
# loopback), seeds live sessions, and drives GET /api/v1/sessions/{id} and
# GET /api/v1/sessions?state=live with wrk. Bounded: each run lasts
# SIMMER_BENCH_SECONDS (default 20) and the server is stopped by PID at the end.
#
#   ./scripts/bench-rest.sh            # SQLite
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/simmer_bench ./scripts/bench-rest.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
SECONDS_PER_RUN="${SIMMER_BENCH_SECONDS:-20}"
CONNECTIONS="${SIMMER_BENCH_CONNECTIONS:-64}"
LIVE_SESSIONS="${SIMMER_BENCH_LIVE_SESSIONS:-50}"

command -v wrk >/dev/null || {
    [ "$(id -u)" = 0 ] || { echo "install wrk" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
cargo build --release -p backend --locked --quiet
BIN="$CARGO_TARGET_DIR/release/simmer"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG=warn "$BIN" serve >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
TOKEN="$(curl -fsS -X POST "$BASE/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"username":"bench","password":"bench-password"}' | json access_token)"
RECIPE="$(curl -fsS -X POST "$BASE/api/v1/recipes" -H 'content-type: application/json' \
    -H "authorization: Bearer $TOKEN" \
    -d '{"title":"Tomato soup","servings":2,"steps":[{"text":"Chop","duration_s":120,"label":"Chop"},{"text":"Simmer","duration_s":900},{"text":"Blend and serve"}]}' | json id)"
for i in $(seq 1 "$LIVE_SESSIONS"); do
    SESSION="$(curl -fsS -X POST "$BASE/api/v1/sessions" -H 'content-type: application/json' \
        -H "authorization: Bearer $TOKEN" -d "{\"recipe_id\":\"$RECIPE\",\"title\":\"Live $i\"}" | json id)"
    curl -fsS -X POST "$BASE/api/v1/sessions/$SESSION/start" -H "authorization: Bearer $TOKEN" >/dev/null
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)"
echo "server: release simmer, database=${DATABASE_URL:-embedded SQLite}, $LIVE_SESSIONS live sessions; wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s on loopback"
for path in "/api/v1/sessions/$SESSION" "/api/v1/sessions?state=live"; do
    echo
    echo "### GET $path"
    wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$BASE$path"
done
if grep -q "panicked" "$WORK/server.log"; then echo "server panicked" >&2; exit 1; fi
