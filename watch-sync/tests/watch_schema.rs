//! `docs/watch.schema.json` is generated from the watch feed's types; this
//! fails when it drifts. Regenerate with
//! `SIMMER_BLESS=1 cargo test -p watch-sync --test watch_schema`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn committed_schema_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/watch.schema.json");
    let generated = serde_json::to_string_pretty(&watch_sync::json_schema()).unwrap() + "\n";
    if std::env::var_os("SIMMER_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/watch.schema.json is stale: run `SIMMER_BLESS=1 cargo test -p watch-sync --test watch_schema`"
    );
}
