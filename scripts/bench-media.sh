#!/usr/bin/env bash
# The media relay benchmark: a release `simmer` and `simmer-bench media`
# (one WHIP publisher, N WHEP subscribers, all on the webrtc crate), both
# inside a private network namespace with only loopback. Bounded: the
# scenario stops by itself; the server is stopped by PID.
#
#   ./scripts/bench-media.sh --subscribers 200 --duration 20
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
cargo build --release -p backend -p simmer-bench --locked --quiet
if [ "$(id -u)" = 0 ]; then NETNS=(unshare --net); else NETNS=(unshare --map-root-user --net); fi
"${NETNS[@]}" bash -s "$CARGO_TARGET_DIR/release" "$@" <<'INNER'
set -euo pipefail
ip link set lo up
BIN="$1"; shift
WORK="$(mktemp -d)"
PORT=18081
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG=warn \
    SIMMER_MEDIA_MAX_SUBSCRIBERS=100000 SIMMER_MEDIA_MAX_SUBSCRIPTIONS_PER_VIEWER=100000 \
    SIMMER_MEDIA_MAX_SUBSCRIPTIONS_PER_ADDRESS=100000 SIMMER_MEDIA_CONNECT_TIMEOUT_S=120 \
    "$BIN/simmer" serve >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; server: release simmer (SQLite) pid $PID, in a network namespace"
"$BIN/simmer-bench" media --url "http://127.0.0.1:$PORT" --server-pid "$PID" "$@"
if grep -q "panicked" "$WORK/server.log"; then echo "server panicked" >&2; exit 1; fi
INNER
