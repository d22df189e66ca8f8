#!/usr/bin/env bash
# Simmer against the floor (`simmer-bench floor`) in one sitting: PAIRS
# pairs of `bench-realtime.sh fanout` runs with the same arguments, the order
# alternating (Simmer first in odd pairs, the floor first in even ones) so
# that a machine growing slower or faster during the sitting favours
# neither. Prints each pair's send → receive p50 / p99, Simmer's durable
# write and fan-out, both servers' CPU, and at the end in how many pairs
# Simmer's p99 was at most the floor's and the median difference. Bounded:
# PAIRS × 2 runs, each stopping by itself.
#
#   PAIRS=9 ./scripts/bench-against-floor.sh --raw-members --viewers 1000 --rate 20 --duration 20
#   PIN=1 PAIRS=3 ./scripts/bench-against-floor.sh --raw-members --viewers 1000 --rate 20 --duration 20
#
# Environment: PAIRS (default 5), and whatever bench-realtime.sh takes (PIN,
# SIMMER_BIN, BENCH_BIN, DATABASE_URL). Each run's whole output is kept in
# OUT (default: a new temporary directory, printed at the end).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PAIRS="${PAIRS:-5}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
if [ -z "${BENCH_BIN:-}" ]; then
    # Built once here, not before every run.
    (cd "$ROOT" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}" \
        cargo build --release -p backend -p simmer-bench --locked --quiet)
    export BENCH_BIN="${CARGO_TARGET_DIR:-$HOME/.cache/simmer/target}/release/simmer-bench"
fi

# field LOG PATTERN N: the Nth number on the first line of LOG matching
# PATTERN (not counting those inside a word: the 50 of p50).
field() {
    grep -m1 -- "$2" "$1" | perl -ne 'print "$1\n" while /(?<![\w.])(\d+(?:\.\d+)?)/g' | sed -n "${3}p"
}

run() { # run PAIR FLOOR ARGS...
    local pair=$1 floor=$2 name=simmer
    shift 2
    if [ "$floor" = 1 ]; then name=floor; fi
    local log="$OUT/pair$pair-$name.log"
    if ! FLOOR=$floor "$ROOT/scripts/bench-realtime.sh" fanout "$@" >"$log" 2>&1; then
        echo "run failed ($log):" >&2
        tail -20 "$log" >&2
        exit 1
    fi
}

printf '%-5s %-21s %-21s %-9s %-13s %-13s %s\n' pair "simmer p50 / p99" "floor p50 / p99" met \
    "durable p50" "last sock p50" "server CPU simmer / floor"
met=0
diffs=()
for pair in $(seq 1 "$PAIRS"); do
    if [ $((pair % 2)) = 1 ]; then order="0 1"; else order="1 0"; fi
    for floor in $order; do run "$pair" "$floor" "$@"; done
    s="$OUT/pair$pair-simmer.log"
    f="$OUT/pair$pair-floor.log"
    sp99=$(field "$s" "latency send->receive" 3)
    fp99=$(field "$f" "latency send->receive" 3)
    ok=$(awk -v s="$sp99" -v f="$fp99" 'BEGIN { print (s <= f) ? "yes" : "no" }')
    if [ "$ok" = yes ]; then met=$((met + 1)); fi
    diffs+=("$(awk -v s="$sp99" -v f="$fp99" 'BEGIN { printf "%.2f", s - f }')")
    printf '%-5s %-21s %-21s %-9s %-13s %-13s %s\n' "$pair" \
        "$(field "$s" "latency send->receive" 1) / $sp99" \
        "$(field "$f" "latency send->receive" 1) / $fp99" "$ok" \
        "$(field "$s" "accepted -> durable" 1)" \
        "$(field "$s" "published -> last" 3)" \
        "$(field "$s" "CPU while" 5) % / $(field "$f" "CPU while" 5) %"
done
median=$(printf '%s\n' "${diffs[@]}" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "Simmer's p99 at most the floor's in $met of $PAIRS pairs; median difference (Simmer - floor) $median ms"
echo "logs: $OUT"
