//! Embeds the browser pages (`web/`) in the binary: writes a table of every
//! file under `web/` (path, bytes) for `src/web.rs` to serve. No build step
//! for the pages themselves; a changed or new file rebuilds the table.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // At run time, not `env!`: the compiled build script may be reused from
    // another checkout of the workspace.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("web");
    // Relative to the package, and so are the paths in the table: a build
    // directory shared by two checkouts must not serve the other's pages.
    println!("cargo:rerun-if-changed=web");
    let mut found = Vec::new();
    files(&root, &mut found);
    found.sort();
    let mut table = String::from("&[\n");
    for path in found {
        let Ok(relative) = path.strip_prefix(&root) else {
            continue;
        };
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        table.push_str(&format!(
            "    ({name:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/web/{name}\")).as_slice()),\n"
        ));
    }
    table.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("web_assets.rs"), table)?;
    Ok(())
}
