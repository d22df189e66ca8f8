//! What anonymous clients can make a node hold is bounded: 500 concurrent
//! logins and registrations (each password hash takes 19 MiB while it runs)
//! leave the real `simmer` process's memory flat, and every one of them gets
//! an answer: signed in, refused, or 503 with `Retry-After`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `/proc/<pid>/status` field, in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing in /proc/{pid}/status"))
}

/// Starts the binary on a free port; returns it and its address.
fn start(dir: &std::path::Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_simmer"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SIMMER_BIND", "127.0.0.1:0")
        .env("SIMMER_LOG_FORMAT", "json")
        .env("SIMMER_WORKERS", "2")
        .env("SIMMER_PASSWORD_HASH_THREADS", "2")
        // Every attempt comes from 127.0.0.1: keep the per-address lockout
        // out of the way so that each one reaches the password hash.
        .env("SIMMER_LOGIN_MAX_FAILURES_PER_ADDRESS", "100000")
        .env("RUST_LOG", "warn,simmer=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if json["message"] == "simmer listening" {
                let _ = tx.send(json["addr"].as_str().unwrap_or_default().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("simmer listening");
    (Server(child), format!("http://{addr}"))
}

#[actix_rt::test]
async fn five_hundred_concurrent_anonymous_logins_and_registrations_keep_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = start(dir.path());
    let pid = server.0.id();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // Warm up: an account, a login, so that baseline includes one hash.
    let reply = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"username": "warmup_user", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let baseline = proc_kib(pid, "VmRSS:");

    let attempts = (0..500).map(|i| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let (path, body) = if i % 2 == 0 {
                (
                    "login",
                    json!({"username": format!("nobody{i}"), "password": "guess guess"}),
                )
            } else {
                (
                    "register",
                    json!({"username": format!("newbie{i}"), "password": "correct horse battery"}),
                )
            };
            let resp = client
                .post(format!("{base}/api/v1/auth/{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (path, status, retry_after, content_type)
        }
    });
    let results = futures_util::future::join_all(attempts).await;

    let peak = proc_kib(pid, "VmHWM:");
    let after = proc_kib(pid, "VmRSS:");
    let mut busy = 0;
    for (path, status, retry_after, content_type) in &results {
        match (*path, *status) {
            ("login", 401) | ("register", 201) => {}
            (_, 503) => {
                busy += 1;
                assert!(retry_after, "503 without Retry-After");
                assert_eq!(content_type, "application/problem+json");
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    eprintln!(
        "baseline {baseline} KiB, peak {peak} KiB, after {after} KiB, {busy} of 500 told to retry"
    );
    assert!(busy > 0, "500 at once should overflow a 2-thread pool");
    let limit_kib = 100 * 1024;
    assert!(
        peak.saturating_sub(baseline) < limit_kib,
        "peak RSS grew by {} KiB (baseline {baseline} KiB)",
        peak - baseline
    );
    // The server still serves: a sign-in works once the burst is over.
    let reply = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "warmup_user", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}
