#!/usr/bin/env bash
# Clients nobody on this team wrote: a Python WebSocket client, written from
# docs/protocol.md, drives a booted simmer (SQLite, loopback) and validates
# every server frame against docs/protocol/server-frame.schema.json; a Python smartwatch
# client, written from docs/watch.md, pairs and follows the watch feed
# (WebSocket and SSE), validating frames against docs/watch.schema.json; and
# aiortc (Python's own WebRTC stack) publishes over WHIP and plays over WHEP.
# Server and clients run in a private network namespace with only loopback
# (127.0.0.2 added: aiortc's ICE leaves 127.0.0.1 out), so no packet leaves it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
# shellcheck source=lib/cargo.sh
. "$ROOT/scripts/lib/cargo.sh"
VENV="$HOME/.cache/simmer/interop-venv"
if ! "$VENV/bin/python" -c 'import websockets, jsonschema, aiortc' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "websockets==15.0.1" "jsonschema==4.26.0" "aiortc==1.16.0"
fi
build_all
# shellcheck source=lib/netns.sh
. "$ROOT/scripts/lib/netns.sh"
"${NETNS[@]}" bash -s "$CARGO_TARGET_DIR/debug/simmer" "$VENV" <<'INNER'
set -euo pipefail
ip link set lo up
ip addr add 127.0.0.2/32 dev lo
SIMMER="$1"; VENV="$2"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG=warn \
    "$SIMMER" serve >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
"$VENV/bin/python" scripts/interop/ws_chat_client.py "http://127.0.0.1:$PORT" docs/protocol/server-frame.schema.json
"$VENV/bin/python" scripts/interop/watch_client.py "http://127.0.0.1:$PORT" docs/watch.schema.json
"$VENV/bin/python" scripts/interop/whip_client.py "http://127.0.0.1:$PORT"
INNER
