#!/usr/bin/env bash
# Realtime benchmarks: boots a release `simmer` (SQLite, temporary data
# directory, loopback, limits raised for load) and runs a simmer-bench
# scenario against it. Bounded: each scenario stops by itself; the server is
# stopped by PID at the end.
#
#   ./scripts/bench-realtime.sh fanout --viewers 10000 --rate 20 --duration 60
#   ./scripts/bench-realtime.sh fanout --viewers 10000 --rate 0 --duration 20
#   ./scripts/bench-realtime.sh fanout --raw-members --viewers 10000 --senders 100 --rate 500
#            (a flood: 100 senders sharing 500 messages/s)
#   ./scripts/bench-realtime.sh idle --viewers 100000 --source-ips 4 --hold 10
#   ./scripts/bench-realtime.sh watch --sessions 1000 --watches 18000 --duration 30
#   PIN=1 ./scripts/bench-realtime.sh fanout --raw-members --viewers 5000 --busy-poll
#            (--busy-poll: the tool never sleeps, so the server does not pay
#            to wake it for each delivery, as members elsewhere would not
#            make it; the tool then takes its whole core)
#   PIN=1 ./scripts/bench-realtime.sh fanout --raw-members --viewers 5000 --busy-poll --uring --settle 2
#            (--uring: the raw members are read through io_uring, no system
#            call or task per delivery, Linux 6.1 or later; --settle 2: the
#            first message two seconds after the joins, once the server's
#            work for the ramp is done)
#
# Environment:
#   FLOOR=1  run `simmer-bench floor` instead of simmer: a minimal tokio
#            WebSocket broadcast server (not the product: no auth, no
#            storage, one session), the floor that Simmer's numbers are
#            given as a ratio to. fanout and idle only (they get --floor).
#            Measure both in the same sitting, with the same arguments:
#              ./scripts/bench-realtime.sh fanout --raw-members --viewers 10000 --duration 20
#              FLOOR=1 ./scripts/bench-realtime.sh fanout --raw-members --viewers 10000 --duration 20
#   SIMMER_BIN=PATH  run this simmer binary instead of the one built here
#            (an older release, to measure a change before and after).
#   SIMMER_CHAT_MAX_FANOUT_QUEUE=N  the server's own default is 256: chat is
#            refused while its fan-out is that far behind (or most members
#            are). Off here (0) unless set, so that the fan-out rows measure
#            what the fan-out can take; set it to 256 to see a flood turned
#            away:
#              SIMMER_CHAT_MAX_FANOUT_QUEUE=256 ./scripts/bench-realtime.sh fanout \
#                --raw-members --viewers 10000 --senders 100 --rate 500 --duration 20
#   BENCH_BIN=PATH   run this simmer-bench binary, and build nothing.
#   ALSO="SCENARIO ARGS..."  a second scenario run at the same time against
#            the same server (its output after the first's, each line
#            prefixed "also: "), started ALSO_AFTER seconds after the
#            first (default 0: a large session's members take a while to
#            join). E.g. small sessions' acks while one large session fans
#            out (PIN=1 puts both tools on CPU 1):
#              ALSO="rooms --sessions 50 --rate 5 --duration 15" ALSO_AFTER=10 PIN=1 \
#                ./scripts/bench-realtime.sh fanout --raw-members --viewers 5000 --rate 20 --duration 20
#   DATABASE_URL=postgres://...  the server on this PostgreSQL database
#            (SQLite in the temporary data directory otherwise).
#   PIN=1    the server on CPU 0 and the load tool on CPU 1 (taskset), so
#            neither takes the other's core. Each then sees one CPU (tokio
#            and actix size their worker pools from the affinity mask).
#   NET=veth server and tool in two network namespaces joined by a veth
#            pair (10.200.0.1 and .2), each side's receive work steered to
#            its own CPU (RPS: the server's to CPU 0, the tool's to CPU 1).
#            On loopback the kernel runs the receiver's TCP work in the
#            sender's context, so the server's core pays for both ends of
#            every write; this is the two-machine shape. Root only; use
#            with PIN=1. The namespaces are removed at the end.
# fanout and idle report the CPU the server and the tool itself used (user +
# system, as a share of one core); with --raw-members the viewers are raw
# sockets, cheap enough that the tool uses less CPU than the server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
FLOOR="${FLOOR:-0}"
PIN="${PIN:-0}"
NET="${NET:-lo}"
scenario="${1:?usage: [FLOOR=1] [PIN=1] $0 SCENARIO [simmer-bench arguments]}"
shift

SCENARIO_ARGS=()
if [ "$FLOOR" = 1 ]; then
    case "$scenario" in
        fanout | idle) SCENARIO_ARGS=(--floor) ;;
        *) echo "FLOOR=1: the floor server speaks enough for fanout and idle only" >&2; exit 2 ;;
    esac
fi
BENCH="${BENCH_BIN:-$CARGO_TARGET_DIR/release/simmer-bench}"
if [ -z "${BENCH_BIN:-}" ]; then
    cargo build --release -p backend -p simmer-bench --locked --quiet
fi
SERVER_ON=()
TOOL_ON=()
if [ "$PIN" = 1 ]; then
    if [ "$(nproc --all)" -lt 2 ]; then echo "PIN=1 needs two CPUs" >&2; exit 2; fi
    SERVER_ON=(taskset -c 0)
    TOOL_ON=(taskset -c 1)
fi

WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PID=""
HOST=127.0.0.1
IN_SERVER_NET=()
IN_TOOL_NET=()
NS_S="simmer-bench-s-$$"
NS_C="simmer-bench-c-$$"
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    if [ "$NET" = veth ]; then ip netns del "$NS_S" 2>/dev/null || true; ip netns del "$NS_C" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
if [ "$NET" = veth ]; then
    if [ "$(id -u)" != 0 ]; then echo "NET=veth needs root (it makes two network namespaces)" >&2; exit 2; fi
    ip netns add "$NS_S"
    ip netns add "$NS_C"
    ip link add "sb$$s" type veth peer name "sb$$c"
    ip link set "sb$$s" netns "$NS_S"
    ip link set "sb$$c" netns "$NS_C"
    ip -n "$NS_S" addr add 10.200.0.1/30 dev "sb$$s"
    ip -n "$NS_C" addr add 10.200.0.2/30 dev "sb$$c"
    for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up; done
    ip -n "$NS_S" link set "sb$$s" up
    ip -n "$NS_C" link set "sb$$c" up
    ip netns exec "$NS_S" sh -c "echo 1 > /sys/class/net/sb$$s/queues/rx-0/rps_cpus"
    ip netns exec "$NS_C" sh -c "echo 2 > /sys/class/net/sb$$c/queues/rx-0/rps_cpus"
    HOST=10.200.0.1
    IN_SERVER_NET=(ip netns exec "$NS_S")
    IN_TOOL_NET=(ip netns exec "$NS_C")
    SCENARIO_ARGS+=(--source-ips 0)
fi

ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$FLOOR" = 1 ]; then
    SERVER="floor (simmer-bench floor: the reference, not Simmer)"
    "${IN_SERVER_NET[@]}" "${SERVER_ON[@]}" "$BENCH" floor --bind "$HOST:$PORT" \
        >"$WORK/server.log" 2>&1 &
else
    SERVER="release simmer ($(if [ -n "${DATABASE_URL:-}" ]; then echo "PostgreSQL: DATABASE_URL"; else echo SQLite; fi))"
    SIMMER_BIND="$HOST:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG=warn \
        SIMMER_CHAT_RATE_PER_S=1000000 SIMMER_CHAT_BURST=1000000 \
        SIMMER_CHAT_MAX_FANOUT_QUEUE="${SIMMER_CHAT_MAX_FANOUT_QUEUE:-0}" \
        SIMMER_WS_MAX_FRAMES_PER_S=1000000 SIMMER_WS_MAX_IN_FLIGHT=1000000 SIMMER_WS_MAX_CONNECTIONS_PER_USER=1000000 \
        SIMMER_GUEST_TOKENS_PER_ADDRESS=100000000 \
        SIMMER_WATCH_PAIRINGS_PER_WINDOW=100000000 \
        "${IN_SERVER_NET[@]}" "${SERVER_ON[@]}" "${SIMMER_BIN:-$CARGO_TARGET_DIR/release/simmer}" serve >"$WORK/server.log" 2>&1 &
fi
PID=$!
ready() {
    if [ "$FLOOR" = 1 ]; then
        grep -q "floor listening" "$WORK/server.log"
    else
        "${IN_TOOL_NET[@]}" curl -fsS "http://$HOST:$PORT/readyz" >/dev/null 2>&1
    fi
}
for _ in $(seq 1 100); do ready && break; sleep 0.2; done
if ! ready; then echo "server not ready after 20 s:" >&2; cat "$WORK/server.log" >&2; exit 1; fi

PINNED=""
if [ "$PIN" = 1 ]; then PINNED="; pinned: server on CPU 0, load tool on CPU 1"; fi
if [ "$NET" = veth ]; then PINNED="$PINNED; over a veth pair between two network namespaces, receive work on each side's CPU"; fi
echo "machine: $(nproc --all) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; server: $SERVER pid $PID$PINNED"
ALSO_PID=""
if [ -n "${ALSO:-}" ]; then
    read -r -a also_args <<<"$ALSO"
    (
        sleep "${ALSO_AFTER:-0}"
        exec "${IN_TOOL_NET[@]}" "${TOOL_ON[@]}" "$BENCH" "${also_args[@]}" --url "http://$HOST:$PORT" \
            --server-pid "$PID"
    ) >"$WORK/also.log" 2>&1 &
    ALSO_PID=$!
fi
"${IN_TOOL_NET[@]}" "${TOOL_ON[@]}" "$BENCH" "$scenario" --url "http://$HOST:$PORT" \
    --server-pid "$PID" "${SCENARIO_ARGS[@]}" "$@"
if [ -n "$ALSO_PID" ]; then
    also_rc=0
    wait "$ALSO_PID" || also_rc=$?
    sed 's/^/also: /' "$WORK/also.log"
    if [ "$also_rc" != 0 ]; then echo "the second scenario failed ($also_rc)" >&2; exit 1; fi
fi
if grep -q "panicked" "$WORK/server.log"; then echo "server panicked" >&2; exit 1; fi
