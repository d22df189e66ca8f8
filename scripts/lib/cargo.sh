# shellcheck shell=bash
# Sourced by every script that builds or tests (scripts/test.sh and the
# scripts it calls): each cargo run names the whole workspace with every
# feature. Cargo unifies a dependency's features over the packages it
# builds, so `-p backend` alone would give tokio and friends other features
# than `--workspace` and compile most of the tree a second time; one set
# means each dependency is compiled once (cold CI: ~10 minutes saved). Keep
# dev-dependencies from adding features to shared crates (check with
# `cargo tree --workspace --all-features -e normal,build,dev -e features`).
CARGO_ALL=(--workspace --all-features --locked)

# Builds every package (the `simmer` binary, the load tool, the mobile
# library and its bindings generator) with that one feature set.
build_all() {
    cargo build "${CARGO_ALL[@]}" --quiet "$@"
}

# `--test NAME` for each integration test that needs no feature of its own
# (the cluster and media suites run in their own steps).
plain_test_targets() {
    cargo metadata --format-version 1 --no-deps --locked --offline | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        if "test" in target["kind"] and not target.get("required-features"):
            print("--test", target["name"])
'
}
