//! One machine, no cluster: a new `simmer` started beside the running one
//! (`SIMMER_REUSE_PORT=true`, same port and data directory) takes over while
//! clients keep connecting: not one connection is refused or reset; the old
//! process tells its `/ws` client to reconnect and exits 0; the client
//! resumes on the new process from `last_seq` and misses nothing.
//!
//! Needs `net.ipv4.tcp_migrate_req=1` (connections queued on the old socket
//! move to the new one when it closes), a per-namespace setting:
//! `scripts/test.sh` runs it in a network namespace of its own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::simmer_process::Simmer;
use crate::ws_client::WsClient;

/// Connects and asks `/healthz` until told to stop; (answered, failures).
/// Runs on a thread of its own (plain blocking sockets, as a simple client).
#[allow(clippy::disallowed_methods)]
fn keep_connecting(addr: String, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let mut answered = 0;
    let mut failures = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect(&addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: simmer\r\nConnection: close\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })();
        match attempt {
            Ok(response) if response.starts_with("HTTP/1.1 200") => answered += 1,
            Ok(response) => failures.push(response.lines().next().unwrap_or("").to_owned()),
            Err(e) => failures.push(e.to_string()),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (answered, failures)
}

#[actix_rt::test]
#[ignore = "needs net.ipv4.tcp_migrate_req=1: scripts/test.sh runs it in its own network namespace"]
async fn a_new_process_takes_the_port_and_nobody_is_refused() {
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").unwrap();
    assert_eq!(migrate.trim(), "1", "run with net.ipv4.tcp_migrate_req=1");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SIMMER_REUSE_PORT", "true"),
        ("SIMMER_CHAT_RATE_PER_S", "1000"),
        ("SIMMER_CHAT_BURST", "1000"),
    ];
    let mut old = Simmer::start(dir.path(), &env);
    let addr = old.address.trim_start_matches("http://").to_owned();
    let rest = old.rest();
    let host = rest.register().await;
    let session = rest.live_session(&host).await.to_string();
    let mut ws = WsClient::connect(&old.address, &host).await;
    assert_eq!(ws.join(&session, None).await["status"], "ok");
    for n in 1..=5 {
        let reply = ws.chat(&session, &format!("m{n}"), &format!("c{n}")).await;
        assert_eq!(reply["body"]["seq"], n, "{reply}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let hammer = std::thread::spawn({
        let (addr, stop) = (addr.clone(), stop.clone());
        move || keep_connecting(addr, stop)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The upgrade: the new binary on the same port and data directory.
    let dir_path = dir.path().to_path_buf();
    let new_env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([("SIMMER_BIND".to_owned(), addr.clone())])
        .collect();
    let starting = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = new_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Simmer::start(&dir_path, &env)
    });

    // The old process tells its client to go, and exits cleanly.
    let reconnect = loop {
        let frame = ws
            .try_recv(Duration::from_secs(20))
            .await
            .expect("a reconnect frame from the old process");
        if frame["type"] == "reconnect" {
            break frame;
        }
    };
    assert!(reconnect["after_ms"].as_u64().is_some(), "{reconnect}");
    let (status, took) = old.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "old: exit {status:?}\n{}", old.stderr());
    let new = starting.await.unwrap();
    assert_eq!(new.address, format!("http://{addr}"));
    eprintln!("the old process exited {took:?} after its client was told");

    // The client resumes on the new process.
    let mut ws = WsClient::connect(&new.address, &host).await;
    assert_eq!(ws.join(&session, Some(3)).await["status"], "ok");
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        let frame = ws.recv().await;
        if frame["type"] == "chat.message" {
            seqs.push(frame["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs, [4, 5]);
    let reply = ws.chat(&session, "m6", "c6").await;
    assert_eq!(reply["body"]["seq"], 6, "{reply}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (answered, failures) = hammer.join().unwrap();
    eprintln!("{answered} connections answered during the upgrade");
    assert!(
        failures.is_empty(),
        "{} refused or failed: {failures:?}",
        failures.len()
    );
    assert!(answered > 20, "only {answered} connections answered");
}
