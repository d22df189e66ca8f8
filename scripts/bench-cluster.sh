#!/usr/bin/env bash
# Cluster benchmarks: N release `simmer` nodes (default 3) on one fresh
# PostgreSQL database and a redis-server of their own, all on loopback, and
# a simmer-bench scenario against them. Bounded: scenarios stop by
# themselves; nodes and Redis are stopped by PID; the database is dropped.
#
#   ./scripts/bench-cluster.sh fanout --viewers 1000 --rate 20 --duration 30
#       the host on node 0, viewers spread evenly over the nodes
#   NODES=1 ./scripts/bench-cluster.sh fanout --viewers 1000 --rate 20 --duration 30
#       the same load on one node (with Redis), for comparison
#   ./scripts/bench-cluster.sh takeover 20
#       kill -9 of a session's owner, 20 trials: time until it answers again
#   ./scripts/bench-cluster.sh drain --members 5000 --sessions 50
#       SIGTERM to node 0 holding 5,000 members: hand-over per session,
#       reconnect storm, SIGTERM to exit, no message lost
#
# Environment: NODES (3), LEASE_TTL_MS (5000), SIMMER_TEST_POSTGRES_URL,
# PIN=1 to pin the nodes and Redis to core 0 and the load tool to core 1,
# KEEP_LOGS=DIR to keep the nodes' logs there, BIN=DIR to run the `simmer`
# and `simmer-bench` binaries in DIR (an A/B of two builds) and build nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
if [ -z "${BIN:-}" ]; then
    cargo build --release -p backend -p simmer-bench --locked --quiet
    BIN="$CARGO_TARGET_DIR/release"
fi
NODES="${NODES:-3}"
LEASE_TTL_MS="${LEASE_TTL_MS:-5000}"
ADMIN="${SIMMER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
WORK="$(mktemp -d)"
DB="simmer_bench_$(date +%s)_$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [ "${PIN:-0}" = 1 ]; then SERVER_CPU=(taskset -c 0); LOAD_CPU=(taskset -c 1); else SERVER_CPU=(); LOAD_CPU=(); fi

PIDS=()
cleanup() {
    local status=$?
    if [ "$status" != 0 ]; then
        for log in "$WORK"/n*.log; do echo "--- $log" >&2; grep -v '^ ' "$log" | tail -5 >&2; done
    fi
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    psql "$ADMIN" -qc "drop database if exists \"$DB\"" >/dev/null 2>&1 || true
    if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$WORK"/*.log "$KEEP_LOGS"/; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

psql "$ADMIN" -qc "create database \"$DB\"" >/dev/null
DATABASE_URL="${ADMIN%/*}/$DB"
REDIS_PORT="$(free_port)"
"${SERVER_CPU[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
SECRET="bench-cluster-secret-$(head -c 24 /dev/urandom | base64)"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

declare -a PORT NODE_PID
start_node() {
    local i="$1"
    mkdir -p "$WORK/n$i"
    SIMMER_BIND="127.0.0.1:${PORT[$i]}" SIMMER_DATA_DIR="$WORK/n$i" RUST_LOG=${RUST_LOG:-warn} \
        DATABASE_URL="$DATABASE_URL" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        SIMMER_NODE_ID="n$i" SIMMER_JWT_SECRET="$SECRET" SIMMER_LEASE_TTL_MS="$LEASE_TTL_MS" \
        SIMMER_CHAT_RATE_PER_S=1000000 SIMMER_CHAT_BURST=1000000 \
        SIMMER_WS_MAX_FRAMES_PER_S=1000000 SIMMER_WS_MAX_IN_FLIGHT=1000000 SIMMER_GUEST_TOKENS_PER_ADDRESS=100000000 \
        SIMMER_WS_MAX_CONNECTIONS_PER_USER=1000000 \
        "${SERVER_CPU[@]}" "$BIN/simmer" serve >>"$WORK/n$i.log" 2>&1 &
    NODE_PID[$i]=$!
    PIDS+=("${NODE_PID[$i]}")
    for _ in $(seq 1 150); do
        curl -fsS "http://127.0.0.1:${PORT[$i]}/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "node $i did not become ready" >&2
    tail -20 "$WORK/n$i.log" >&2
    return 1
}
for i in $(seq 0 $((NODES - 1))); do
    PORT[$i]="$(free_port)"
    start_node "$i"
done
url() { echo "http://127.0.0.1:${PORT[$1]}"; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # clock ticks (1/100 s)

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $NODES release simmer nodes (PostgreSQL, Redis $(redis-server --version | awk '{print $3}')), lease TTL $LEASE_TTL_MS ms, pinned: ${PIN:-0}"
scenario="$1"; shift
case "$scenario" in
fanout)
    VIEWER_URLS="$(for i in $(seq 0 $((NODES - 1))); do url "$i"; done | paste -sd,)"
    redis_before="$(cpu "$REDIS_PID")"
    nodes_before=0; for i in $(seq 0 $((NODES - 1))); do nodes_before=$((nodes_before + $(cpu "${NODE_PID[$i]}"))); done
    start="$(date +%s.%N)"
    "${LOAD_CPU[@]}" "$BIN/simmer-bench" fanout --url "$(url 0)" --viewer-urls "$VIEWER_URLS" "$@" &
    LOAD=$!
    wait "$LOAD"
    elapsed="$(echo "$(date +%s.%N) - $start" | bc)"
    redis_after="$(cpu "$REDIS_PID")"
    nodes_after=0; for i in $(seq 0 $((NODES - 1))); do nodes_after=$((nodes_after + $(cpu "${NODE_PID[$i]}"))); done
    echo "over ${elapsed%.*} s (connect + send + drain): Redis used $(echo "scale=2; ($redis_after - $redis_before) / 100" | bc) CPU s, the nodes together $(echo "scale=2; ($nodes_after - $nodes_before) / 100" | bc) CPU s"
    ;;
takeover)
    trials="${1:-20}"
    [ "$NODES" -ge 2 ] || { echo "takeover needs NODES >= 2" >&2; exit 1; }
    : >"$WORK/takeover.txt"
    for t in $(seq 1 "$trials"); do
        owner=$(( (t - 1) % NODES )); probe=$(( t % NODES ))
        "$BIN/simmer-bench" takeover --url "$(url $owner)" --probe-url "$(url $probe)" \
            --kill-pid "${NODE_PID[$owner]}" | tee -a "$WORK/takeover.txt"
        wait "${NODE_PID[$owner]}" 2>/dev/null || true
        start_node "$owner"
    done
    sort -n -k2 "$WORK/takeover.txt" | awk -v ttl="$LEASE_TTL_MS" '
        { v[NR] = $2 } END {
            printf "take-over after kill -9 over %d trials (lease TTL %d ms): p50 %d ms, max %d ms, min %d ms\n",
                NR, ttl, v[int((NR + 1) / 2)], v[NR], v[1] }'
    ;;
drain)
    [ "$NODES" -ge 2 ] || { echo "drain needs NODES >= 2" >&2; exit 1; }
    OTHERS="$(for i in $(seq 1 $((NODES - 1))); do url "$i"; done | paste -sd,)"
    "${LOAD_CPU[@]}" "$BIN/simmer-bench" drain --url "$(url 0)" --pid "${NODE_PID[0]}" \
        --other-urls "$OTHERS" "$@"
    wait "${NODE_PID[0]}" 2>/dev/null || true
    grep -h '"message":"\(sessions handed over\|telling connections to reconnect\|connections closed\|shutdown complete\)"' "$WORK/n0.log" || \
        grep -h 'handed over\|telling connections\|connections closed\|shutdown complete' "$WORK/n0.log" || true
    ;;
*)
    echo "unknown scenario $scenario (fanout, takeover, drain)" >&2; exit 1 ;;
esac
for i in $(seq 0 $((NODES - 1))); do
    if grep -q "panicked" "$WORK/n$i.log"; then echo "node $i panicked" >&2; exit 1; fi
done
