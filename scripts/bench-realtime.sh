#!/usr/bin/env bash
# Realtime benchmarks: boots a release `simmer` (SQLite, temporary data
# directory, loopback, limits raised for load) and runs a simmer-bench
# scenario against it. Bounded: each scenario stops by itself; the server is
# stopped by PID at the end.
#
#   ./scripts/bench-realtime.sh fanout --viewers 10000 --rate 20 --duration 60
#   ./scripts/bench-realtime.sh fanout --viewers 10000 --rate 0 --duration 20
#   ./scripts/bench-realtime.sh idle --viewers 100000 --source-ips 4 --hold 10
#   ./scripts/bench-realtime.sh watch --sessions 1000 --watches 18000 --duration 30
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
cargo build --release -p backend -p simmer-bench --locked --quiet
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG=warn \
    SIMMER_CHAT_RATE_PER_S=1000000 SIMMER_CHAT_BURST=1000000 \
    SIMMER_WS_MAX_FRAMES_PER_S=1000000 SIMMER_WS_MAX_CONNECTIONS_PER_USER=1000000 \
    SIMMER_GUEST_TOKENS_PER_ADDRESS=100000000 \
    SIMMER_WATCH_PAIRINGS_PER_WINDOW=100000000 \
    "$CARGO_TARGET_DIR/release/simmer" serve >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; server: release simmer (SQLite) pid $PID"
scenario="$1"; shift
"$CARGO_TARGET_DIR/release/simmer-bench" "$scenario" --url "http://127.0.0.1:$PORT" --server-pid "$PID" "$@"
if grep -q "panicked" "$WORK/server.log"; then echo "server panicked" >&2; exit 1; fi
