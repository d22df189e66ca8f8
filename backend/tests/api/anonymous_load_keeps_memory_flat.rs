//! What anonymous clients can make a node hold is bounded: 500 concurrent
//! logins and registrations (each password hash takes 19 MiB while it runs)
//! leave the real `simmer` process's memory flat, and every one of them gets
//! an answer: signed in, refused, or 503 with `Retry-After`.

use std::time::Duration;

use serde_json::json;

use crate::simmer_process::Simmer;

/// A `/proc/<pid>/status` field, in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing in /proc/{pid}/status"))
}

#[actix_rt::test]
async fn five_hundred_concurrent_anonymous_logins_and_registrations_keep_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let server = Simmer::start(
        dir.path(),
        &[
            ("SIMMER_PASSWORD_HASH_THREADS", "2"),
            // Every attempt comes from 127.0.0.1: keep the per-address
            // lockout out of the way so that each one reaches the hash.
            ("SIMMER_LOGIN_MAX_FAILURES_PER_ADDRESS", "100000"),
            ("RUST_LOG", "warn,simmer=info"),
        ],
    );
    let pid = server.pid();
    let base = server.address.clone();
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
