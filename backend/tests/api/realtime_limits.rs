//! Limits of the realtime gateway: send rate, connections per user, floods,
//! and slow readers that must not hold anyone else back.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{read, spawn_app_with, Reply};
use crate::ws_client::WsClient;

#[actix_rt::test]
async fn a_fast_sender_is_rate_limited_not_disconnected() {
    let app = spawn_app_with(|s| {
        s.chat_burst = 3;
        s.chat_rate_per_s = 0.5;
    })
    .await;
    let host = app.register().await;
    let sid = app.live_session(&host).await.to_string();
    let mut h = WsClient::connect(&app.address, &host.token).await;
    h.join(&sid, None).await;
    for i in 0..3 {
        assert_eq!(h.chat(&sid, "hi", &format!("m{i}")).await["status"], "ok");
    }
    let limited = h.chat(&sid, "hi", "m3").await;
    assert_eq!(limited["error"]["code"], "rate_limited", "{limited}");
    h.send(json!({"type": "ping"})).await;
    assert_eq!(h.recv_type("pong").await.0["type"], "pong");
}

#[actix_rt::test]
async fn while_the_fanout_is_behind_new_chat_is_refused_except_the_hosts() {
    let app = spawn_app_with(|s| s.chat_max_fanout_queue = 3).await;
    let host = app.register().await;
    let viewer = app.register().await;
    let session = app.live_session(&host).await;
    let sid = session.to_string();
    let mut h = WsClient::connect(&app.address, &host.token).await;
    h.join(&sid, None).await;
    let mut v = WsClient::connect(&app.address, &viewer.token).await;
    v.join(&sid, None).await;
    // The fan-out keeps up: more sends than the queue's bound go through.
    for i in 0..6 {
        let reply = v.chat(&sid, "hi", &format!("ok{i}")).await;
        assert_eq!(reply["status"], "ok", "{reply}");
    }

    // A follower of the session's events on this node that takes none: to
    // the chat, this node's fan-out is as far behind as it is.
    let stuck = app
        .state
        .sessions
        .subscribe(simmer::bus::Topic::Members(session));
    let mut accepted = Vec::new();
    let refused = loop {
        let id = format!("m{}", accepted.len());
        let reply = v.chat(&sid, "hi", &id).await;
        if reply["status"] != "ok" {
            break reply;
        }
        accepted.push((id, reply["body"]["seq"].clone()));
        assert!(accepted.len() <= 3, "never refused");
    };
    assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("busier")),
        "{refused}"
    );
    // The host is heard; a resend of an acknowledged message is answered
    // with what is stored; the connection stays.
    assert_eq!(h.chat(&sid, "from the host", "h1").await["status"], "ok");
    if let Some((id, seq)) = accepted.first() {
        let resend = v.chat(&sid, "hi", id).await;
        assert_eq!(resend["status"], "ok", "{resend}");
        assert_eq!(&resend["body"]["seq"], seq, "{resend}");
    }
    assert_eq!(
        v.chat(&sid, "hi", "late").await["error"]["code"],
        "rate_limited"
    );

    // Caught up again: the same send goes through.
    drop(stuck);
    let reply = v.chat(&sid, "hi", "late").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let metrics = app.get("/metrics", None).await;
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(text.contains("simmer_chat_refused_busy_total 2"), "{text}");
}

#[actix_rt::test]
async fn connections_per_user_are_limited() {
    let app = spawn_app_with(|s| s.ws_max_connections_per_user = 2).await;
    let user = app.register().await;
    let a = WsClient::connect(&app.address, &user.token).await;
    let _b = WsClient::connect(&app.address, &user.token).await;
    let third = app
        .client
        .get(app.url(&format!("/ws?token={}", user.token)))
        .send()
        .await
        .unwrap();
    let third = read(third).await;
    third.assert_problem(429, "rate_limited");
    assert!(third.headers.contains_key("retry-after"));
    // Closing one frees its slot.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = format!("{}/ws", app.address.replacen("http", "ws", 1));
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", user.token).parse().unwrap(),
        );
        if tokio_tungstenite::connect_async(request).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebSocket handshake sent as a plain HTTP request: the answer as it is.
async fn handshake(request: reqwest::RequestBuilder) -> Reply {
    let sent = request
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    read(sent).await
}

/// A node holds a bounded number of upgraded sockets, `/ws` and watch feeds
/// together, whoever opens them: past it, 503 with `Retry-After` (a load
/// balancer tries another node), and a closed socket frees its place.
#[actix_rt::test]
async fn a_node_holds_at_most_its_maximum_of_sockets() {
    let app = spawn_app_with(|s| s.ws_max_connections = 3).await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let watch = app.pair_watch(&host, session, None).await;
    let viewer = app.register().await;
    let a = WsClient::connect(&app.address, &host.token).await;
    let _b = WsClient::connect(&app.address, &viewer.token).await;
    let _feed = WsClient::connect_watch(&app.address, &watch.token, "").await;

    let other = app.register().await;
    let refused = handshake(
        app.client
            .get(app.url(&format!("/ws?token={}", other.token))),
    )
    .await;
    refused.assert_problem(503, "unavailable");
    assert!(refused.headers.contains_key("retry-after"));
    assert!(
        refused.body["detail"].as_str().unwrap().contains("3"),
        "{}",
        refused.body
    );
    let watch_refused = handshake(
        app.client
            .get(app.url("/watch/ws"))
            .bearer_auth(&watch.token),
    );
    watch_refused.await.assert_problem(503, "unavailable");
    assert_eq!(app.state.websockets.open(), 3);

    // Closing one frees its place.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.websockets.open() > 2 {
        assert!(
            Instant::now() < deadline,
            "the closed socket kept its place"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = WsClient::connect(&app.address, &other.token).await;
    again.send(json!({"type": "ping"})).await;
    assert_eq!(again.recv_type("pong").await.0["type"], "pong");
}

#[actix_rt::test]
async fn a_flood_closes_the_connection_with_a_policy_code() {
    let app = spawn_app_with(|s| s.ws_max_frames_per_s = 5).await;
    let user = app.register().await;
    let mut ws = WsClient::connect(&app.address, &user.token).await;
    for _ in 0..50 {
        ws.send_raw(r#"{"type":"ping"}"#).await;
    }
    let code = ws.close_code().await;
    assert_eq!(code, Some(1008));
}

#[actix_rt::test]
async fn a_slow_reader_delays_nobody_and_still_gets_every_message() {
    const N: u64 = 2000;
    let app = spawn_app_with(|s| {
        s.fanout_buffer = 16;
        s.chat_rate_per_s = 1e6;
        s.chat_burst = 1_000_000;
        s.ws_max_frames_per_s = 100_000;
        s.ws_max_in_flight = 100_000;
    })
    .await;
    let host = app.register().await;
    let sid = app.live_session(&host).await.to_string();
    let slow_user = app.register().await;
    let fast_user = app.register().await;

    let mut slow = WsClient::connect(&app.address, &slow_user.token).await;
    slow.join(&sid, None).await;
    let mut fast = WsClient::connect(&app.address, &fast_user.token).await;
    fast.join(&sid, None).await;
    let mut sender = WsClient::connect(&app.address, &host.token).await;
    sender.join(&sid, None).await;

    let text = "y".repeat(500);
    let send_all = async {
        for i in 0..N {
            sender
                .send(json!({"type": "chat.send", "session_id": sid, "text": text, "client_msg_id": format!("m{i}")}))
                .await;
        }
    };
    // The fast reader gets everything, in order, while the slow one reads nothing.
    let read_fast = async {
        let mut next = 1;
        while next <= N {
            let f = fast.recv().await;
            if f["type"] == "chat.message" {
                assert_eq!(f["seq"], next);
                next += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(send_all, read_fast)
    })
    .await
    .expect("the fast reader was held back");

    // Now the slow reader catches up: gap-free, no duplicates.
    let mut next = 1;
    while next <= N {
        let f = slow.recv().await;
        if f["type"] == "chat.message" {
            assert_eq!(f["seq"], next, "slow reader: gap or duplicate");
            next += 1;
        }
    }
}

#[actix_rt::test]
async fn requests_waiting_for_their_answer_are_bounded_per_connection() {
    let app = spawn_app_with(|s| s.ws_max_in_flight = 2).await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let sid = session.to_string();
    let mut ws = WsClient::connect(&app.address, &host.token).await;
    assert_eq!(ws.join(&sid, None).await["status"], "ok");

    // The chat actor falls behind: sends wait for their answer meanwhile.
    assert!(
        app.state
            .sessions
            .inject_fault(
                session,
                "chat",
                simmer::live::Fault::Stall(Duration::from_secs(2))
            )
            .await
    );
    for r in ["a", "b", "c"] {
        ws.send(json!({"type": "chat.send", "ref": r, "session_id": sid, "text": r, "client_msg_id": r}))
            .await;
    }
    let mut replies = Vec::new();
    while replies.len() < 3 {
        let frame = ws.recv().await;
        if frame["type"] == "reply" {
            replies.push(frame);
        }
    }
    // The third is refused at once, before the stalled actor answers the
    // two that were waiting; the connection stays.
    assert_eq!(replies[0]["ref"], "c", "{replies:?}");
    assert_eq!(replies[0]["error"]["code"], "rate_limited", "{replies:?}");
    for reply in &replies[1..] {
        assert_eq!(reply["status"], "ok", "{replies:?}");
    }
    // Answered requests free their places.
    assert_eq!(ws.chat(&sid, "again", "d").await["status"], "ok");
}
