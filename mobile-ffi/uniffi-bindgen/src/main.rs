//! `uniffi-bindgen`: generates the Kotlin, Swift and Python bindings of
//! `mobile-ffi` from the built library (`generate --library ...`); see
//! `mobile-ffi/generate-bindings.sh` and `docs/mobile.md`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
