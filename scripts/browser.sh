#!/usr/bin/env bash
# A real browser against a real `simmer`: Debian's headless Chromium (fake
# camera and microphone) driven by playwright-core, running one of the
# scripts in scripts/browser/:
#
#   ./scripts/browser.sh media-interop.mjs   # WHIP/WHEP interop
#   ./scripts/browser.sh e2e.mjs             # the pages, end to end
#   ./scripts/browser.sh e2e-upgrade.mjs     # the pages through an upgrade
#   UDP_LOSS=10 ./scripts/browser.sh media-interop.mjs   # one UDP datagram
#                                  # in 10 dropped (nftables; needs `nft`)
#
# Everything (server, browser) runs inside a private network namespace with
# only loopback, so no packet can leave it. Failing steps leave screenshots
# in $SIMMER_SCREENSHOTS (default ~/.cache/simmer/screenshots).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
# shellcheck source=lib/cargo.sh
. "$ROOT/scripts/lib/cargo.sh"
NODE_DIR="$HOME/.cache/simmer/browser"
is_root() { [ "$(id -u)" = 0 ]; }
install() {
    is_root || { echo "missing $*; install it (needs root)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v chromium >/dev/null || install chromium
command -v node >/dev/null || install nodejs npm
mkdir -p "$NODE_DIR"
# Install again whenever the package list changed (or nothing is installed).
if ! cmp -s scripts/browser/package.json "$NODE_DIR/package.json" ||
    ! [ -d "$NODE_DIR/node_modules/playwright-core" ]; then
    cp scripts/browser/package.json "$NODE_DIR/package.json"
    # Only the driver (and axe-core, the accessibility rules): the browser is
    # Debian's; nothing is downloaded at run time.
    (cd "$NODE_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund)
fi
SCRIPT="${1:?which script in scripts/browser/ (e.g. e2e.mjs)}"
cp scripts/browser/*.mjs "$NODE_DIR/"
SHOTS="${SIMMER_SCREENSHOTS:-$HOME/.cache/simmer/screenshots}"
mkdir -p "$SHOTS"
build_all

# shellcheck source=lib/netns.sh
. "$ROOT/scripts/lib/netns.sh"
SIMMER_KEEP_WORK="${SIMMER_KEEP_WORK:-}" UDP_LOSS="${UDP_LOSS:-}" "${NETNS[@]}" bash -s "$CARGO_TARGET_DIR/debug/simmer" "$NODE_DIR" "$SCRIPT" "$SHOTS" "$ROOT" <<'INNER'
set -euo pipefail
ip link set lo up
SIMMER="$1"; NODE_DIR="$2"; SCRIPT="$3"; export SIMMER_SCREENSHOTS="$4"; ROOT="$5"
if [ -n "${UDP_LOSS:-}" ]; then
    # shellcheck source=lib/udp-loss.sh
    . "$ROOT/scripts/lib/udp-loss.sh"
    drop_one_udp_datagram_in "$UDP_LOSS"
    echo "one UDP datagram in $UDP_LOSS is dropped"
fi
WORK="$(mktemp -d)"
PORT=18080
PID=""
stop_all() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    [ -f "$WORK/successor.pid" ] && kill "$(cat "$WORK/successor.pid")" 2>/dev/null || true
    [ -f "$WORK/extra.pids" ] && xargs kill <"$WORK/extra.pids" 2>/dev/null || true
    [ -n "$PID" ] && wait "$PID" 2>/dev/null || true
    if [ -n "${SIMMER_KEEP_WORK:-}" ]; then cp -r "$WORK" "$SIMMER_KEEP_WORK"; fi
    rm -rf "$WORK"
}
trap stop_all EXIT
# A suite may shape the namespace first (scripts/browser/NAME.setup.sh:
# firewall rules, a TURN server, settings for the server); processes it
# starts are listed in $WORK/extra.pids and stopped with the server.
SETUP="$ROOT/scripts/browser/${SCRIPT%.mjs}.setup.sh"
# shellcheck source=/dev/null
[ -f "$SETUP" ] && . "$SETUP"
# The server shares its port with a successor (e2e-upgrade.mjs starts one);
# queued connections move over when the old socket closes.
echo 1 >/proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || true
SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" SIMMER_REUSE_PORT=true RUST_LOG=warn \
    "$SIMMER" serve >"$WORK/server.log" 2>&1 &
PID=$!
export SIMMER_BIN="$SIMMER" SIMMER_WORK="$WORK" SIMMER_BIND="127.0.0.1:$PORT"
for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
    sleep 0.2
done
node "$NODE_DIR/$SCRIPT" "http://127.0.0.1:$PORT"
if grep -q "panicked" "$WORK"/*.log; then echo "server panicked" >&2; cat "$WORK"/*.log >&2; exit 1; fi
INNER
