#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, then
# runs formatting and lint checks (Rust and these scripts), the tests on
# SQLite and on PostgreSQL, the cluster tests (several nodes on one PostgreSQL
# and one Redis), the media relay (WebRTC) tests and headless Chromium
# publishing and playing video, both in a private network namespace, an
# OpenAPI-driven fuzz run (schemathesis) against a booted server, and
# independent Python chat and watch clients against another.
#
#   ./scripts/test.sh
#
# Environment:
#   SIMMER_TEST_POSTGRES_URL  admin URL of a PostgreSQL server to create test
#                             databases on (default postgres://postgres@127.0.0.1:5432/postgres)
#   CARGO_TARGET_DIR          build directory (default ~/.cache/simmer/target,
#                             outside the clone so repeated runs reuse it)
#   SIMMER_FUZZ_EXAMPLES      schemathesis examples per operation (default 40;
#                             SIMMER_FUZZ_GUEST_EXAMPLES for the guest run, 10)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export SIMMER_TEST_POSTGRES_URL="${SIMMER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
CACHE="$HOME/.cache/simmer"
mkdir -p "$CACHE"
# shellcheck source=lib/cargo.sh
. "$ROOT/scripts/lib/cargo.sh"

step() { printf '\n==> [%s, %d s] %s\n' "$(date +%T)" "$SECONDS" "$*"; }
is_root() { [ "$(id -u)" = 0 ]; }

APT_UPDATED=0
apt_install() {
    is_root || { echo "missing $*; install it (needs root)" >&2; return 1; }
    if [ "$APT_UPDATED" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# A server package (nginx, coturn) installed without starting Debian's own
# service of it (policy-rc.d): the tests start their own.
apt_install_server() {
    if [ ! -e /usr/sbin/policy-rc.d ] && is_root; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        apt_install "$@" || { rm -f /usr/sbin/policy-rc.d; return 1; }
        rm -f /usr/sbin/policy-rc.d
    else
        apt_install "$@"
    fi
}

# --- toolchain -------------------------------------------------------------
step "toolchain"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup)" >&2; exit 1; }
cargo --version
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
command -v curl >/dev/null || apt_install curl
command -v python3 >/dev/null || apt_install python3 python3-venv

# --- PostgreSQL ------------------------------------------------------------
pg_host_port() {
    # host and port of SIMMER_TEST_POSTGRES_URL
    python3 - "$SIMMER_TEST_POSTGRES_URL" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or 5432)
PY
}
ensure_postgres() {
    read -r PG_HOST PG_PORT < <(pg_host_port)
    if command -v pg_isready >/dev/null && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
        return 0
    fi
    step "starting PostgreSQL"
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        apt_install postgresql
    fi
    local version
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    local conf="/etc/postgresql/$version/main"
    # trust auth on loopback for the test user, as on the CI machine kind
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
        sed -i '1i host all all ::1/128 trust' "$conf/pg_hba.conf"
        sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && return 0
        sleep 0.5
    done
    echo "PostgreSQL did not start on $PG_HOST:$PG_PORT" >&2
    return 1
}
drop_test_databases() {
    psql "$SIMMER_TEST_POSTGRES_URL" -Atqc \
        "select datname from pg_database where datname like 'simmer\_t\_%' or datname like 'simmer\_fuzz\_%'" 2>/dev/null |
        while read -r db; do
            [ -n "$db" ] && psql "$SIMMER_TEST_POSTGRES_URL" -qc "drop database if exists \"$db\"" >/dev/null 2>&1 || true
        done
}

# --- Redis -----------------------------------------------------------------
# Each cluster test starts a redis-server of its own on a free port (nothing
# kept on disk) and ends it; only the binary is needed.
ensure_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
    redis-server --version
}

# --- checks ----------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy "${CARGO_ALL[@]}" --all-targets -- -D warnings

step "shellcheck (the scripts: warnings and errors)"
command -v shellcheck >/dev/null || apt_install shellcheck
mapfile -t SCRIPTS < <(find scripts -name '*.sh' | sort)
shellcheck -x -P SCRIPTDIR -S warning "${SCRIPTS[@]}" .ci/run

step "tests on SQLite"
# shellcheck disable=SC2046 # one word per flag
{
    cargo test "${CARGO_ALL[@]}" --no-fail-fast --lib --bins $(plain_test_targets) &&
        cargo test "${CARGO_ALL[@]}" --no-fail-fast --doc
} 2>&1 | tee "$CACHE/test-sqlite.log"

step "tests on PostgreSQL"
ensure_postgres
drop_test_databases
SIMMER_TEST_DATABASE=postgres cargo test "${CARGO_ALL[@]}" --test api --no-fail-fast 2>&1 |
    tee "$CACHE/test-postgres.log"
drop_test_databases

step "cluster tests: several simmer processes on one PostgreSQL and one Redis"
ensure_redis
SIMMER_TEST_DATABASE=postgres cargo test "${CARGO_ALL[@]}" --test cluster \
    --no-fail-fast -- --test-threads=1 2>&1 | tee "$CACHE/test-cluster.log"
drop_test_databases

step "media relay tests (WebRTC) in a private network namespace with only loopback"
command -v ip >/dev/null || apt_install iproute2
command -v unshare >/dev/null || apt_install util-linux
cargo test "${CARGO_ALL[@]}" --test media --no-run
# shellcheck source=lib/netns.sh
. "$ROOT/scripts/lib/netns.sh"
"${NETNS[@]}" sh -c 'ip link set lo up && exec "$@"' sh \
    cargo test "${CARGO_ALL[@]}" --test media --offline -- --test-threads=1 \
    --skip signalling_at_any_node --skip rolling_restart 2>&1 | tee "$CACHE/test-media.log"

step "one machine upgraded without refusing a connection (SO_REUSEPORT hand-off, network namespace with net.ipv4.tcp_migrate_req=1)"
"${NETNS[@]}" sh -c 'ip link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_migrate_req && exec "$@"' sh \
    cargo test "${CARGO_ALL[@]}" --test api --offline upgrade_without_refusing -- --ignored 2>&1 |
    tee "$CACHE/test-handoff.log"

step "the shipped nginx config for real: TLS in front of three nodes, a Python client through it while each node restarts"
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then apt_install_server nginx; fi
command -v openssl >/dev/null || apt_install openssl
ensure_postgres
ensure_redis
"$ROOT/scripts/proxy-test.sh" 2>&1 | tee "$CACHE/proxy.log"

step "cluster with video in a network namespace (own PostgreSQL and Redis): WHIP/WHEP at a node that does not own the session; a rolling restart of three nodes under 200 members, 20 watches, a timer, a publisher and 3 players"
ensure_redis
"${NETNS[@]}" sh -c 'ip link set lo up && exec "$@"' sh "$ROOT/scripts/with-private-postgres.sh" \
    cargo test "${CARGO_ALL[@]}" --test media --offline \
    -- --test-threads=1 signalling_at_any_node rolling_restart 2>&1 | tee "$CACHE/test-media-cluster.log"

step "a real browser: headless Chromium publishes over WHIP and plays over WHEP (network namespace)"
"$ROOT/scripts/browser.sh" media-interop.mjs 2>&1 | tee "$CACHE/browser-media.log"

step "a lost last handshake flight: each UDP flow loses its first DTLS ChangeCipherSpec (nftables); Chromium still goes live over WHIP and plays over WHEP (network namespace)"
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || apt_install nftables
"$ROOT/scripts/browser.sh" media-handshake-loss.mjs 2>&1 | tee "$CACHE/browser-handshake-loss.log"

step "viewers behind firewalls: the browser's UDP dropped (nftables), host and guest through coturn over TCP with minted credentials (network namespace)"
command -v turnserver >/dev/null || apt_install_server coturn
"$ROOT/scripts/browser.sh" media-firewall.mjs 2>&1 | tee "$CACHE/browser-firewall.log"

step "the pages end to end in headless Chromium: dashboard, viewer page, watch simulator, the README's tour as a newcomer takes it, and all three through an upgrade (network namespace)"
for suite in e2e e2e-viewer e2e-dashboard e2e-newcomer e2e-upgrade; do
    "$ROOT/scripts/browser.sh" "$suite.mjs" 2>&1 | tee "$CACHE/browser-$suite.log"
done

step "browsers on other origins: CORS in headless Chromium, the API and WHEP from an allowed origin, nothing for another (network namespace)"
SIMMER_CORS_ORIGINS=http://127.0.0.1:18081 "$ROOT/scripts/browser.sh" e2e-cors.mjs 2>&1 | tee "$CACHE/browser-cors.log"

step "infra: Kubernetes manifests (strict schemas) and compose.yaml (Compose schema) validated"
"$ROOT/scripts/validate-infra.sh"

step "OpenAPI fuzzing (schemathesis)"
"$ROOT/scripts/fuzz-openapi.sh"

step "OpenAPI clients: spec validated, Kotlin/Swift/TypeScript generated (openapi-generator), the README walk-through through the TypeScript client"
"$ROOT/scripts/openapi-clients.sh"

step "the README walk-through (curl, chat, watch) run top to bottom as one script against a fresh server"
"$ROOT/scripts/readme-walkthrough.sh"

step "interop: Python chat and watch clients written from docs/protocol.md and docs/watch.md, and aiortc (Python WebRTC) publishing over WHIP and playing over WHEP (network namespace)"
"$ROOT/scripts/interop.sh" 2>&1 | tee "$CACHE/interop.log"

step "mobile SDK through UniFFI: Kotlin/Swift bindings current, the library driven through its Python bindings against a server (plain and TLS)"
"$ROOT/scripts/mobile-ffi-test.sh" 2>&1 | tee "$CACHE/mobile-ffi.log"

step "all checks passed"
# One closing line for the whole run (every cargo test binary, both databases).
cat "$CACHE/test-sqlite.log" "$CACHE/test-postgres.log" "$CACHE/test-cluster.log" "$CACHE/test-media.log" \
    "$CACHE/test-handoff.log" "$CACHE/test-media-cluster.log" \
    "$CACHE/browser-media.log" "$CACHE/browser-handshake-loss.log" "$CACHE/browser-firewall.log" "$CACHE/browser-e2e.log" "$CACHE/browser-e2e-viewer.log" \
    "$CACHE/browser-e2e-dashboard.log" "$CACHE/browser-e2e-newcomer.log" "$CACHE/browser-e2e-upgrade.log" \
    "$CACHE/browser-cors.log" "$CACHE/interop.log" "$CACHE/proxy.log" "$CACHE/mobile-ffi.log" |
    awk '/^test result:/ || /^[0-9]+ passed, [0-9]+ failed$/ {
             for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
         END { printf "summary: %d passed, %d failed\n", p, f }'
