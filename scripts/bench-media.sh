#!/usr/bin/env bash
# The media relay benchmark: a release `simmer` and `simmer-bench media`
# (one WHIP publisher, N WHEP subscribers, all on the webrtc crate), both
# inside a private network namespace with only loopback. Bounded: the
# scenario stops by itself; the server is stopped by PID.
#
#   ./scripts/bench-media.sh --subscribers 200 --duration 20
#   ./scripts/bench-media.sh --viewer-mode plain --subscribers 200
#   ./scripts/bench-media.sh --churn 5000 --concurrency 4   # viewers who come and go
#
# Environment:
#   SIMMER_BIN=PATH, BENCH_BIN=PATH  run these binaries (both given: build
#            nothing), e.g. copies that a build in a shared target directory
#            cannot replace halfway through a long run.
#   PIN=1    the server on CPU 0 and the load tool on CPU 1 (taskset): the
#            relay gets one core whatever the tool needs (its lanes then
#            share that core).
#   SIMMER_MEDIA_LANES, SIMMER_MEDIA_MAX_QUEUE_MS, SIMMER_MEDIA_EDGE  passed to the server.
#   UDP_LOSS=N  one UDP datagram in N is dropped inside the namespace (an
#            nftables rule on loopback, so each direction loses 1/N):
#            handshakes and streams over a lossy network. Needs `nft`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
SIMMER="${SIMMER_BIN:-$CARGO_TARGET_DIR/release/simmer}"
BENCH="${BENCH_BIN:-$CARGO_TARGET_DIR/release/simmer-bench}"
if [ -z "${SIMMER_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
    cargo build --release -p backend -p simmer-bench --locked --quiet
fi
# shellcheck source=lib/netns.sh
. "$ROOT/scripts/lib/netns.sh"
"${NETNS[@]}" bash -s "$ROOT" "${PIN:-0}" "$SIMMER" "$BENCH" "$@" <<'INNER'
set -euo pipefail
ip link set lo up
ROOT="$1"; PIN="$2"; SIMMER="$3"; BENCH="$4"; shift 4
LOSS=""
if [ -n "${UDP_LOSS:-}" ]; then
    # shellcheck source=lib/udp-loss.sh
    . "$ROOT/scripts/lib/udp-loss.sh"
    drop_one_udp_datagram_in "$UDP_LOSS"
    LOSS="; one UDP datagram in $UDP_LOSS dropped"
fi
SERVER_ON=(); TOOL_ON=(); PINNED=""
if [ "$PIN" = 1 ]; then
    SERVER_ON=(taskset -c 0); TOOL_ON=(taskset -c 1)
    PINNED="; pinned: server on CPU 0, load tool on CPU 1"
fi
WORK="$(mktemp -d)"
PORT=18081
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG=warn \
    SIMMER_MEDIA_MAX_SUBSCRIBERS=100000 SIMMER_MEDIA_MAX_SUBSCRIPTIONS_PER_VIEWER=100000 \
    SIMMER_MEDIA_MAX_SUBSCRIPTIONS_PER_ADDRESS=100000 SIMMER_MEDIA_CONNECT_TIMEOUT_S=120 \
    "${SERVER_ON[@]}" "$SIMMER" serve >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; server: release simmer (SQLite) pid $PID, in a network namespace$PINNED; lanes ${SIMMER_MEDIA_LANES:-default}, max queue ${SIMMER_MEDIA_MAX_QUEUE_MS:-default} ms, edge ${SIMMER_MEDIA_EDGE:-default (true)}$LOSS"
"${TOOL_ON[@]}" "$BENCH" media --url "http://127.0.0.1:$PORT" --server-pid "$PID" "$@"
if grep -q "panicked" "$WORK/server.log"; then echo "server panicked" >&2; exit 1; fi
INNER
