//! `docs/protocol/client-frame.schema.json` and `server-frame.schema.json`
//! are generated from the protocol types; this fails when they drift.
//! Regenerate with `SIMMER_BLESS=1 cargo test -p mobile-bridge --test
//! protocol_schema`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mobile_bridge::protocol::{client_frame_schema, server_frame_schema};

#[test]
fn committed_schemas_match_the_types() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol");
    for (name, schema) in [
        ("client-frame.schema.json", client_frame_schema()),
        ("server-frame.schema.json", server_frame_schema()),
    ] {
        let path = format!("{dir}/{name}");
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if std::env::var_os("SIMMER_BLESS").is_some() {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/protocol/{name} is stale: run `SIMMER_BLESS=1 cargo test -p mobile-bridge --test protocol_schema`"
        );
        // A schema, not a wrapper: a generator takes the file as it is.
        assert!(
            schema.get("$schema").is_some() && schema.get("title").is_some(),
            "{name}"
        );
    }
}
