#!/usr/bin/env bash
# The OpenAPI document against standard client generators. Boots simmer
# (SQLite, a temporary data directory, a free loopback port), then:
#
#   1. the spec it serves at /api-docs/openapi.json must equal docs/openapi.json
#      (compared as JSON), and openapi-spec-validator must accept it;
#   2. openapi-generator (the jar in the PyPI wheel, run with `java -jar`:
#      the wheel's wrapper exits 0 even when the generator fails) makes the
#      kotlin, swift6 and typescript-fetch clients with spec validation on,
#      with no network (a private network namespace when one can be made);
#      any error fails, warnings are counted and shown; every operationId
#      must be a method of the TypeScript client;
#   3. tsc --strict compiles the TypeScript client with
#      scripts/openapi/walkthrough.ts, the README's "Walk-through with curl"
#      written against that client only, and node runs it against the server;
#   4. quicktype turns the frame schemas (docs/protocol/*-frame.schema.json)
#      into TypeScript types that compile strictly and check sample frames
#      of both directions at run time (scripts/openapi/frames.ts).
#
# Called by scripts/test.sh; runnable alone (`cargo build --workspace --all-features` first,
# or SKIP_BUILD=1 to use the binary already in $CARGO_TARGET_DIR).
# Tools, installed on first use and reused: a venv in
# ~/.cache/simmer/venv-openapi (PyPI, pinned below), TypeScript in
# and quicktype in ~/.cache/simmer/openapi-ts (npm, scripts/openapi/package.json), Java
# (default-jre-headless from Debian when `java` is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}"
# shellcheck source=lib/cargo.sh
. "$ROOT/scripts/lib/cargo.sh"
CACHE="$HOME/.cache/simmer"
VENV="$CACHE/venv-openapi"
TSDIR="$CACHE/openapi-ts"
PINS=(
    "openapi-generator-cli==7.17.0"
    "openapi-spec-validator==0.9.0"
    # their dependencies, pinned too
    "annotated-types==0.8.0"
    "attrs==26.1.0"
    "jsonschema==4.26.0"
    "jsonschema-path==0.5.0"
    "jsonschema-specifications==2025.9.1"
    "lazy-object-proxy==1.13.0"
    "openapi-schema-validator==0.9.0"
    "pathable==0.6.0"
    "pydantic==2.14.4"
    "pydantic-settings==2.16.3"
    "pydantic_core==2.50.5"
    "python-dotenv==1.2.4"
    "PyYAML==6.0.4"
    "referencing==0.37.0"
    "rfc3339-validator==0.1.4"
    "rpds-py==2026.9.1"
    "six==1.17.0"
    "typing-inspection==0.4.5"
    "typing_extensions==4.16.0"
)
GENERATORS=(kotlin swift6 typescript-fetch)
is_root() { [ "$(id -u)" = 0 ]; }
apt_install() {
    is_root || { echo "missing $*; install it (needs root)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- tools -----------------------------------------------------------------
if ! printf '%s\n' "${PINS[@]}" | cmp -s - "$VENV/pins.txt" 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
    printf '%s\n' "${PINS[@]}" >"$VENV/pins.txt"
fi
JAR="$("$VENV/bin/python" -c 'import importlib.resources as r; print(r.files("openapi_generator_cli") / "openapi-generator.jar")')"
command -v java >/dev/null || apt_install default-jre-headless
command -v node >/dev/null || apt_install nodejs npm
mkdir -p "$TSDIR"
if ! cmp -s scripts/openapi/package.json "$TSDIR/package.json" || ! [ -x "$TSDIR/node_modules/.bin/tsc" ]; then
    cp scripts/openapi/package.json "$TSDIR/package.json"
    (cd "$TSDIR" && npm install --silent --no-audit --no-fund)
fi
TSC="$TSDIR/node_modules/.bin/tsc"
# The generator reads only the file it is given; prove it by leaving it no
# network at all when a namespace can be made (root, or user namespaces).
NONET=()
if unshare --net true 2>/dev/null; then
    NONET=(unshare --net)
elif unshare --map-root-user --net true 2>/dev/null; then
    NONET=(unshare --map-root-user --net)
fi
[ ${#NONET[@]} -gt 0 ] || echo "openapi-clients: no network namespace here; the generator runs with the network"
echo "openapi-generator $(java -jar "$JAR" version), $(java -version 2>&1 | head -1), tsc $("$TSC" --version | cut -d' ' -f2), node $(node --version)"

# --- the server --------------------------------------------------------------
[ "${SKIP_BUILD:-0}" = 1 ] || build_all
BIN="$CARGO_TARGET_DIR/debug/simmer"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

SIMMER_BIND="127.0.0.1:$PORT" SIMMER_DATA_DIR="$WORK" RUST_LOG="warn" \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
PID=$!
cleanup() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
    echo "openapi-clients: $*" >&2
    exit 1
}

for _ in $(seq 1 100); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/server.log"; fail "simmer exited"; }
    sleep 0.2
done

# --- 1. the spec -------------------------------------------------------------
curl -fsS "$BASE/api-docs/openapi.json" -o "$WORK/served.json"
python3 - "$WORK/served.json" docs/openapi.json <<'PY' || fail "docs/openapi.json is not what simmer serves: regenerate it with \`$BIN openapi > docs/openapi.json\`"
import difflib, json, sys
served, committed = (json.load(open(p)) for p in sys.argv[1:])
if served != committed:
    a, b = (json.dumps(d, indent=1, sort_keys=True).splitlines() for d in (served, committed))
    diff = list(difflib.unified_diff(b, a, "docs/openapi.json", "served", lineterm="", n=2))
    print("\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else ""), file=sys.stderr)
    sys.exit(1)
PY
SPEC="$ROOT/docs/openapi.json"
"$VENV/bin/openapi-spec-validator" "$SPEC" || fail "openapi-spec-validator rejects docs/openapi.json"

# --- 2. the generators ---------------------------------------------------------
for gen in "${GENERATORS[@]}"; do
    log="$WORK/$gen.log"
    if ! "${NONET[@]}" java -jar "$JAR" generate -i "$SPEC" -g "$gen" -o "$WORK/clients/$gen" >"$log" 2>&1 ||
        grep -qE '^\[[^]]*\] ERROR|^Exception|Exception in thread' "$log"; then
        grep -v '\bINFO\b' "$log" >&2 || true
        fail "openapi-generator $gen failed (validation is on: fix the spec, never skip it)"
    fi
    warnings="$(grep -c '\bWARN\b' "$log" || true)"
    echo "$gen: generated $(find "$WORK/clients/$gen" -type f | wc -l) files, $warnings warnings"
    { grep '\bWARN\b' "$log" || true; } | sed 's/^.*WARN *//' | sort | uniq -c | sed 's/^/    /'
done
TS_CLIENT="$WORK/clients/typescript-fetch"
python3 - "$SPEC" "$TS_CLIENT/apis" <<'PY' || fail "the TypeScript client lacks operations"
import json, pathlib, re, sys
spec = json.load(open(sys.argv[1]))
ids = [op["operationId"] for item in spec["paths"].values() for m, op in item.items()
       if m in ("get", "put", "post", "delete", "patch", "head", "options", "trace")]
code = "".join(p.read_text() for p in pathlib.Path(sys.argv[2]).glob("*.ts"))
missing = [i for i in ids if not re.search(r"\basync %s\(" % re.escape(i), code)]
if missing:
    print("operations with no method of that name in the TypeScript client:", ", ".join(missing), file=sys.stderr)
    sys.exit(1)
print(f"typescript-fetch: a method for each of the {len(ids)} operations")
PY

# --- 3. compile the TypeScript client and walk through the README with it ---
TS="$WORK/ts"
mkdir -p "$TS"
cp -r "$TS_CLIENT" "$TS/client"
cp scripts/openapi/walkthrough.ts "$TS/walkthrough.ts"
"$TSC" --strict --target ES2022 --lib dom,es2022 --module commonjs --noEmitOnError \
    --outDir "$TS/out" "$TS/client/index.ts" "$TS/walkthrough.ts" || fail "tsc rejects the TypeScript client"
echo "typescript-fetch: compiled with tsc --strict"
node "$TS/out/walkthrough.js" "$BASE" || fail "the walk-through through the generated client failed"

# --- 4. the frame schemas through quicktype, one file per direction ---------
FRAMES="$WORK/frames"
mkdir -p "$FRAMES"
for dir in client server; do
    top="$(tr '[:lower:]' '[:upper:]' <<<"${dir:0:1}")${dir:1}Frame"
    "$TSDIR/node_modules/.bin/quicktype" --src-lang schema --lang typescript --top-level "$top" \
        -o "$FRAMES/$dir.ts" "docs/protocol/$dir-frame.schema.json" ||
        fail "quicktype rejects docs/protocol/$dir-frame.schema.json"
done
cp scripts/openapi/frames.ts "$FRAMES/frames.ts"
"$TSC" --strict --target ES2022 --lib dom,es2022 --module commonjs --noEmitOnError \
    --outDir "$FRAMES/out" "$FRAMES/client.ts" "$FRAMES/server.ts" "$FRAMES/frames.ts" ||
    fail "tsc rejects the quicktype frame types"
node "$FRAMES/out/frames.js" || fail "the quicktype frame types refuse real frames"

if grep -q "panicked" "$WORK/server.log"; then
    grep -A5 "panicked" "$WORK/server.log" >&2
    fail "simmer panicked"
fi
