#!/usr/bin/env bash
# The mobile SDK (mobile-ffi) as apps get it, through UniFFI:
#
#   1. the committed Kotlin and Swift bindings are what the code generates
#      (scripts/mobile/bindings.sh --check); they are not compiled here: no
#      Android or iOS toolchain on this machine;
#   2. Python bindings generated from the same library (the same C ABI,
#      buffers and async futures that Kotlin and Swift call), and
#      scripts/mobile/ffi_test.py driving the whole API through them against
#      a booted simmer (SQLite, a temporary data directory, a free loopback
#      port): sign-in, guests, chat with acks and resume, timer events, watch
#      pairing and the displayed countdown, and the same over TLS (a CA made
#      with openssl, passed as `tls_roots`).
#
# Called by scripts/test.sh; runnable alone. Needs python3 (stdlib only) and
# openssl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
# shellcheck source=lib/cargo.sh
. "$ROOT/scripts/lib/cargo.sh"
START=$SECONDS
command -v openssl >/dev/null || { echo "mobile-ffi-test needs openssl" >&2; exit 1; }

scripts/mobile/bindings.sh --check

build_all
BIN="$CARGO_TARGET_DIR/debug/simmer"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG="warn" \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
PID=$!
# A second server whose access tokens live 1 s: an app away past the expiry.
SHORT_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$WORK/short"
SIMMER_BIND="127.0.0.1:$SHORT_PORT" SIMMER_DATA_DIR="$WORK/short" SIMMER_ACCESS_TOKEN_TTL_S=1 RUST_LOG="warn" \
    "$BIN" serve >"$WORK/server-short.log" 2>&1 &
SHORT_PID=$!
cleanup() {
    kill "$PID" "$SHORT_PID" 2>/dev/null || true
    wait "$PID" "$SHORT_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

scripts/mobile/bindings.sh --python "$WORK/py"
echo "built and generated in $((SECONDS - START)) s"

for _ in $(seq 1 100); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$SHORT_PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/server.log"; echo "simmer exited" >&2; exit 1; }
    kill -0 "$SHORT_PID" 2>/dev/null || { cat "$WORK/server-short.log"; echo "simmer (short TTL) exited" >&2; exit 1; }
    sleep 0.2
done

status=0
python3 scripts/mobile/ffi_test.py "$BASE" "$WORK/py" "http://127.0.0.1:$SHORT_PORT" || status=$?

if grep -q "panicked" "$WORK"/server*.log; then
    echo "simmer panicked:" >&2
    grep -A5 "panicked" "$WORK"/server*.log >&2
    status=1
fi
echo "mobile-ffi test: $((SECONDS - START)) s in all"
exit "$status"
