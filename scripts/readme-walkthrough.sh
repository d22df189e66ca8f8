#!/usr/bin/env bash
# Runs README.md's walk-through as the reader would: every ```sh block between
# <!-- walkthrough:begin --> and <!-- walkthrough:end -->, top to bottom, as
# one script (`bash -euo pipefail`), against a fresh simmer (SQLite, a
# temporary data directory, a free loopback port), with `simmer` and
# `simmer-bench` on PATH and SIMMER set to the server's URL, as the README
# tells the reader. Any failing command (curl -f, jq -e, ...) fails the run;
# the whole run is bounded in time.
# Called by scripts/test.sh; runnable alone (SIMMER_SKIP_BUILD=1 to use the
# binaries already built in $CARGO_TARGET_DIR/debug).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
# shellcheck source=lib/cargo.sh
. "$ROOT/scripts/lib/cargo.sh"
TIME_LIMIT_S="${SIMMER_WALKTHROUGH_TIMEOUT_S:-180}"
START="$(date +%s)"

if ! command -v jq >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "jq is missing; install it (needs root)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
    }
fi

# One build of the workspace with the features every step uses
# (scripts/lib/cargo.sh): nothing is compiled again.
if [ "${SIMMER_SKIP_BUILD:-0}" != 1 ]; then
    build_all
fi
for bin in simmer simmer-bench; do
    [ -x "$CARGO_TARGET_DIR/debug/$bin" ] || { echo "$CARGO_TARGET_DIR/debug/$bin is missing" >&2; exit 1; }
done

WORK="$(mktemp -d)"
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/bin" "$WORK/cwd" "$WORK/data"
ln -s "$CARGO_TARGET_DIR/debug/simmer" "$WORK/bin/simmer"
ln -s "$CARGO_TARGET_DIR/debug/simmer-bench" "$WORK/bin/simmer-bench"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

# The walk-through: the ```sh blocks between the markers, in order. Every
# other line of README.md becomes an empty line, so that line N of the
# script is line N of README.md (for the message of a failing command).
awk '
    /^<!-- walkthrough:begin -->[[:space:]]*$/ { markers++; inside = 1; print ""; next }
    /^<!-- walkthrough:end -->[[:space:]]*$/   { markers++; inside = 0; print ""; next }
    inside && !fence && /^```sh[[:space:]]*$/  { fence = 1; blocks++; print ""; next }
    inside && fence && /^```[[:space:]]*$/     { fence = 0; print ""; next }
    inside && fence                            { print; lines++; next }
                                               { print "" }
    END {
        if (markers != 2 || inside || fence || blocks == 0) {
            printf "README.md: expected one walkthrough:begin/end pair around closed ```sh blocks (markers %d, blocks %d)\n", markers, blocks > "/dev/stderr"
            exit 1
        }
        printf "walk-through: %d lines in %d sh blocks of README.md\n", lines, blocks > "/dev/stderr"
    }
' README.md >"$WORK/walkthrough.sh"
# Run by a shell that names the README line of a failing command, and ends
# the background jobs the walk-through started (the watch) when it stops.
# shellcheck disable=SC2016
RUNNER='
trap '\''s=$?; echo "README.md:$LINENO: exit $s: $BASH_COMMAND" >&2'\'' ERR
trap '\''exit 143'\'' TERM
trap '\''kill $(jobs -p) 2>/dev/null || true'\'' EXIT
. "$1"
'

SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK/data" RUST_LOG="warn" \
    "$CARGO_TARGET_DIR/debug/simmer" serve >"$WORK/server.log" 2>&1 &
PID=$!

for _ in $(seq 1 100); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/server.log"; echo "simmer exited" >&2; exit 1; }
    sleep 0.2
done

status=0
(
    cd "$WORK/cwd"
    export SIMMER="$BASE" PATH="$WORK/bin:$PATH"
    exec timeout --kill-after=10 "$TIME_LIMIT_S" bash -euo pipefail -c "$RUNNER" walkthrough "$WORK/walkthrough.sh" </dev/null
) 2>&1 | sed 's/^/  | /' || status=$?

if [ "$status" = 124 ]; then
    echo "the walk-through did not finish within ${TIME_LIMIT_S}s" >&2
fi
# It ran against this server, not another one on the README's default port.
if [ "$status" = 0 ] && ! curl -fsS "$BASE/api/v1/sessions?state=ended" | jq -e '.items | length > 0' >/dev/null; then
    echo "the walk-through left no ended session on the test server: did it use \$SIMMER?" >&2
    status=1
fi
if grep -q "panicked" "$WORK/server.log"; then
    echo "simmer panicked during the walk-through:" >&2
    grep -A5 "panicked" "$WORK/server.log" >&2
    status=1
fi
if ! kill -0 "$PID" 2>/dev/null; then
    echo "simmer died during the walk-through" >&2
    status=1
fi
if [ "$status" != 0 ]; then
    echo "--- server log (last 40 lines)" >&2
    tail -40 "$WORK/server.log" >&2
    echo "README walk-through FAILED (exit $status) after $(($(date +%s) - START))s" >&2
else
    echo "README walk-through passed in $(($(date +%s) - START))s"
fi
exit "$status"
