//! SIGTERM, SIGINT and the admin endpoint drain the real binary: every `/ws`
//! client gets `reconnect` and a going-away close (1001, not a dropped
//! socket), each at its own moment in the spread window, every watch feed
//! (WebSocket and SSE) gets `bye {reason: "unavailable", after_ms}`, new
//! connections are refused, and the process exits 0 as soon as its clients
//! are gone instead of sitting out the 30 s grace period. Chat acknowledged
//! before the signal is in the database afterwards, and nothing panics on
//! the way out.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::simmer_process::Simmer;
use crate::ws_client::WsClient;

/// Far below the 30 s grace period, far above what a drain takes.
const EXITS_WITHIN: Duration = Duration::from_secs(10);

/// Frames until the server closes the socket, and its close code (`None`
/// when the connection just dropped: what a client sees as 1006).
async fn frames_until_close(client: &mut WsClient) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    let read = async {
        while let Some(msg) = client.socket.next().await {
            match msg {
                Ok(Message::Text(text)) => frames.push(serde_json::from_str(&text).unwrap()),
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let code = tokio::time::timeout(EXITS_WITHIN, read)
        .await
        .ok()
        .flatten();
    (frames, code)
}

/// The SSE events until the stream ends.
async fn sse_until_end(mut resp: reqwest::Response) -> Vec<Value> {
    let mut text = String::new();
    let read = async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let _ = tokio::time::timeout(EXITS_WITHIN, read).await;
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

/// Starts the binary with a viewer on `/ws` (joined to a live session) and a
/// watch on both feeds; signals it; checks what each client saw and how it
/// exited.
async fn drains_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut simmer = Simmer::start(
        dir.path(),
        &[
            ("SIMMER_SHUTDOWN_TIMEOUT_S", "30"),
            ("SIMMER_DRAIN_SPREAD_MS", "1000"),
        ],
    );
    let rest = simmer.rest();
    let host = rest.register().await;
    let session = rest.live_session(&host).await;
    let device = rest.pair_watch(&host, session).await;

    let mut viewer = WsClient::connect(&simmer.address, &host).await;
    assert_eq!(
        viewer.join(&session.to_string(), None).await["status"],
        "ok"
    );
    let mut watch = WsClient::connect_watch(&simmer.address, &device, "").await;
    assert_eq!(watch.recv().await["type"], "snapshot");
    let sse = rest
        .client
        .get(format!("{}/watch/events", simmer.address))
        .bearer_auth(&device)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);

    simmer.signal(signal);
    let signalled = Instant::now();
    let (ws_frames, ws_code) = frames_until_close(&mut viewer).await;
    let (watch_frames, watch_code) = frames_until_close(&mut watch).await;
    let sse_frames = sse_until_end(sse).await;
    let (status, _) = simmer.wait_exit(Duration::from_secs(40)).await;
    let took = signalled.elapsed();
    eprintln!("SIG{signal}: exit {status} {took:?} after the signal");

    let reconnect = ws_frames.iter().find(|f| f["type"] == "reconnect");
    let reconnect = reconnect.unwrap_or_else(|| panic!("no reconnect frame: {ws_frames:?}"));
    assert_eq!(reconnect["reason"], "shutdown");
    let after_ms = reconnect["after_ms"].as_u64().unwrap();
    assert!((250..1000).contains(&after_ms), "{reconnect}");
    assert_eq!(ws_code, Some(1001), "/ws close code");
    let bye = watch_frames.last().cloned().unwrap_or_default();
    assert_eq!(bye["type"], "bye", "{watch_frames:?}");
    assert_eq!(bye["reason"], "unavailable");
    assert!(bye["after_ms"].as_u64().is_some(), "{bye}");
    assert_eq!(watch_code, Some(1001), "watch feed close code");
    let sse_bye = sse_frames.last().cloned().unwrap_or_default();
    assert_eq!(sse_bye["type"], "bye", "{sse_frames:?}");
    assert_eq!(sse_bye["reason"], "unavailable");
    assert!(
        status.success(),
        "exit {status:?}; stderr:\n{}",
        simmer.stderr()
    );
    assert!(
        took < EXITS_WITHIN,
        "took {took:?} to exit; stderr:\n{}",
        simmer.stderr()
    );
}

#[actix_rt::test]
async fn sigterm_tells_every_client_to_go_and_exits_at_once() {
    drains_on("TERM").await;
}

#[actix_rt::test]
async fn sigint_drains_like_sigterm() {
    drains_on("INT").await;
}

/// Sends chat on `ws` as fast as acknowledgements come back (a few in
/// flight) until the server goes away; the `client_msg_id`s it acknowledged.
async fn chat_until_gone(mut ws: WsClient, name: String, session: String) -> Vec<String> {
    let mut acked = Vec::new();
    let mut sent = 0u64;
    let frame = |sent: u64| {
        json!({"type": "chat.send", "ref": sent, "session_id": session,
            "text": "hot pan", "client_msg_id": format!("{name}-{sent}")})
    };
    for _ in 0..4 {
        sent += 1;
        ws.send(frame(sent)).await;
    }
    while let Some(reply) = ws.try_recv(Duration::from_secs(10)).await {
        if reply["type"] != "reply" {
            continue;
        }
        if reply["status"] == "ok" {
            acked.push(reply["body"]["client_msg_id"].as_str().unwrap().to_owned());
        }
        sent += 1;
        let text = Message::Text(frame(sent).to_string().into());
        if ws.socket.send(text).await.is_err() {
            break;
        }
    }
    acked
}

#[actix_rt::test]
async fn chat_acknowledged_before_sigterm_is_kept_and_nothing_panics() {
    let dir = tempfile::tempdir().unwrap();
    let env = crate::simmer_process::UNTHROTTLED_CHAT;
    let mut simmer = Simmer::start(dir.path(), &env);
    let rest = simmer.rest();
    let host = rest.register().await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(rest.live_session(&host).await.to_string());
    }
    let mut senders = Vec::new();
    for (i, session) in sessions.iter().enumerate() {
        for j in 0..3 {
            let token = rest.register().await;
            let mut ws = WsClient::connect(&simmer.address, &token).await;
            assert_eq!(ws.join(session, None).await["status"], "ok");
            senders.push(tokio::spawn(chat_until_gone(
                ws,
                format!("c{i}-{j}"),
                session.clone(),
            )));
        }
    }
    // Signal while every socket has sends in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    simmer.signal("TERM");
    let signalled = Instant::now();
    let mut sent = Vec::new();
    for (i, sender) in senders.into_iter().enumerate() {
        sent.push((sender.await.unwrap(), sessions[i / 3].clone()));
    }
    let (status, _) = simmer.wait_exit(Duration::from_secs(40)).await;
    let took = signalled.elapsed();
    let stderr = simmer.stderr();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    assert!(
        took < EXITS_WITHIN,
        "took {took:?} to exit; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    drop(simmer);

    let simmer = Simmer::start(dir.path(), &env);
    let rest = simmer.rest();
    let mut total = 0;
    for (acked, session) in sent {
        assert!(
            !acked.is_empty(),
            "nothing was acknowledged before the signal"
        );
        total += acked.len();
        let mut stored = std::collections::HashSet::new();
        let mut before: Option<u64> = None;
        loop {
            let mut path = format!("/api/v1/sessions/{session}/messages?limit=100");
            if let Some(b) = before {
                path.push_str(&format!("&before_seq={b}"));
            }
            let page = rest
                .call(reqwest::Method::GET, &path, Some(&host), None)
                .await;
            for m in page["items"].as_array().unwrap() {
                stored.insert(m["client_msg_id"].as_str().unwrap().to_owned());
            }
            match page["next_before_seq"].as_u64() {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        for id in &acked {
            assert!(stored.contains(id), "acknowledged {id} is not stored");
        }
    }
    assert!(total > 0);
}

/// Chats every 50 ms until told to reconnect; when each chat was
/// acknowledged.
async fn served_until_told(mut ws: WsClient, session: String, name: String) -> Vec<Instant> {
    let mut acked = Vec::new();
    for n in 0u64.. {
        ws.send(json!({"type": "chat.send", "ref": n, "session_id": session,
            "text": "stir", "client_msg_id": format!("{name}-{n}")}))
            .await;
        loop {
            let frame = ws
                .try_recv(Duration::from_secs(10))
                .await
                .expect("a reply or a reconnect");
            if frame["type"] == "reconnect" {
                return acked;
            }
            if frame["type"] == "reply" && frame["ref"] == n {
                assert_eq!(frame["status"], "ok", "{frame}");
                acked.push(Instant::now());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acked
}

#[actix_rt::test]
async fn clients_are_told_one_by_one_over_the_spread_window() {
    let dir = tempfile::tempdir().unwrap();
    let spread = Duration::from_millis(2000);
    let mut simmer = Simmer::start(dir.path(), &[("SIMMER_DRAIN_SPREAD_MS", "2000")]);
    let rest = simmer.rest();
    let host = rest.register().await;
    let session = rest.live_session(&host).await.to_string();
    let mut clients = Vec::new();
    for _ in 0..30 {
        let token = rest.register().await;
        let mut ws = WsClient::connect(&simmer.address, &token).await;
        assert_eq!(ws.join(&session, None).await["status"], "ok");
        clients.push(ws);
    }
    simmer.signal("TERM");
    let signalled = Instant::now();
    // Each client reads until its `reconnect`; when they came is the spread.
    let told: Vec<Duration> =
        futures_util::future::join_all(clients.into_iter().map(|mut ws| async move {
            loop {
                let frame = ws
                    .try_recv(Duration::from_secs(10))
                    .await
                    .expect("a reconnect frame before the close");
                if frame["type"] == "reconnect" {
                    return signalled.elapsed();
                }
            }
        }))
        .await;
    let first = *told.iter().min().unwrap();
    let last = *told.iter().max().unwrap();
    eprintln!("reconnect frames from {first:?} to {last:?} after SIGTERM");
    assert!(
        last - first > spread / 3,
        "told within {:?} of each other: not spread over {spread:?}",
        last - first
    );
    assert!(
        last < spread + Duration::from_secs(2),
        "last told at {last:?}"
    );
    let (status, _) = simmer.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "stderr:\n{}", simmer.stderr());
}

/// One HTTP/1.1 `GET /healthz` on `stream` (kept alive): the answer's head
/// (lower case), once its body is read, and whether the server then closed
/// the connection.
async fn healthz_on(stream: &mut tokio::net::TcpStream) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: simmer\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let (head, body_len) = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before an answer: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_string();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            break (head, end + 4 + len);
        }
    };
    while answer.len() < body_len {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed in the middle of an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    );
    (head, closed)
}

#[actix_rt::test]
async fn until_told_a_client_is_served_and_new_connections_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut simmer = Simmer::start(
        dir.path(),
        &[
            ("SIMMER_DRAIN_SPREAD_MS", "3000"),
            ("SIMMER_CHAT_RATE_PER_S", "1000"),
            ("SIMMER_CHAT_BURST", "1000"),
        ],
    );
    let rest = simmer.rest();
    let host = rest.register().await;
    let session = rest.live_session(&host).await.to_string();
    let mut clients = Vec::new();
    for i in 0..5 {
        let token = rest.register().await;
        let mut ws = WsClient::connect(&simmer.address, &token).await;
        assert_eq!(ws.join(&session, None).await["status"], "ok");
        clients.push(tokio::spawn(served_until_told(
            ws,
            session.clone(),
            format!("c{i}"),
        )));
    }
    // What a proxy keeps: a connection kept alive between requests.
    let addr = simmer.address.trim_start_matches("http://").to_string();
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (head, closed) = healthz_on(&mut kept).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!closed, "closed before the drain: {head}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    simmer.signal("TERM");
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The listener is closed from the start of the drain: a proxy in front
    // tries another node at once.
    let refused = tokio::net::TcpStream::connect(&addr).await;
    assert!(
        refused.is_err(),
        "a new connection during the drain: {refused:?}"
    );
    // The kept connection is served, and closed after its answer rather
    // than under a request on its way.
    let (head, closed) = healthz_on(&mut kept).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed, "still open after its answer in a drain");
    let mut after = 0;
    for client in clients {
        after += client
            .await
            .unwrap()
            .iter()
            .filter(|at| **at > signalled)
            .count();
    }
    assert!(after > 5, "{after} chats acknowledged during the drain");
    let (status, _) = simmer.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "stderr:\n{}", simmer.stderr());
}

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";

#[actix_rt::test]
async fn the_admin_endpoint_drains_with_its_own_token_only() {
    // Without a configured token, nobody may drain.
    let dir = tempfile::tempdir().unwrap();
    let mut closed = Simmer::start(dir.path(), &[]);
    let rest = closed.rest();
    let user = rest.register().await;
    let reply = rest
        .client
        .post(format!("{}/api/v1/admin/drain", closed.address))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    assert_eq!(reply.headers()["content-type"], "application/problem+json");
    closed.signal("TERM");
    closed.wait_exit(Duration::from_secs(20)).await;

    let dir = tempfile::tempdir().unwrap();
    let mut simmer = Simmer::start(
        dir.path(),
        &[
            ("SIMMER_ADMIN_TOKEN", ADMIN_TOKEN),
            ("SIMMER_DRAIN_SPREAD_MS", "500"),
        ],
    );
    let rest = simmer.rest();
    let user = rest.register().await;
    let session = rest.live_session(&user).await;
    for wrong in [user.as_str(), "admin-token-for-tests-0123456789abcdeX", ""] {
        let reply = rest
            .client
            .post(format!("{}/api/v1/admin/drain", simmer.address))
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 401, "token {wrong:?}");
    }
    let mut viewer = WsClient::connect(&simmer.address, &user).await;
    assert_eq!(
        viewer.join(&session.to_string(), None).await["status"],
        "ok"
    );
    // `simmer drain --wait`, as a preStop hook runs it.
    let url = simmer.address.clone();
    let drain = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_simmer"))
            .args(["drain", "--wait", "--url", &url])
            .env("SIMMER_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap()
    });
    let (frames, code) = frames_until_close(&mut viewer).await;
    let drain = drain.await.unwrap();
    let out = String::from_utf8_lossy(&drain.stdout);
    assert!(
        drain.status.success(),
        "simmer drain: {out} {}",
        String::from_utf8_lossy(&drain.stderr)
    );
    assert!(
        out.contains(" 200 ") && out.contains("\"started\":true"),
        "{out}"
    );
    assert!(
        frames.iter().any(|f| f["type"] == "reconnect"),
        "{frames:?}"
    );
    assert_eq!(code, Some(1001));
    let (status, took) = simmer.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "stderr:\n{}", simmer.stderr());
    assert!(took < EXITS_WITHIN, "exited {took:?} after the drain");
}
