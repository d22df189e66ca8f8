//! Output into a pipe whose reader stops early (`simmer openapi | head`)
//! ends quietly: exit status 0 and nothing on stderr, no "Broken pipe".

use std::io::Read;
use std::process::{Child, Command, Stdio};

/// `simmer` with these arguments, stdout and stderr piped.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_simmer"))
        .args(args)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` (its stdout already closed here): exit 0, empty stderr.
#[track_caller]
fn ends_quietly(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what}: {:?}, stderr: {stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{what}: stderr: {stderr}");
}

#[test]
fn openapi_into_a_reader_that_stops_after_a_few_bytes() {
    // Larger than a pipe's buffer (64 KiB on Linux): the writer is still
    // writing when the reader goes, so its next write meets a closed pipe.
    assert!(simmer::api::openapi::json().unwrap().len() > 64 * 1024);
    let mut child = spawn(&["openapi"]);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(first[0], b'{', "{}", String::from_utf8_lossy(&first));
    drop(stdout);
    ends_quietly(child, "openapi | head -c 16");
}

#[test]
fn output_into_a_pipe_closed_before_the_first_byte() {
    for args in [&["openapi"][..], &["serve", "--help"], &["--version"]] {
        let mut child = spawn(args);
        drop(child.stdout.take());
        ends_quietly(child, &args.join(" "));
    }
}
