//! An open `/ws` lives no longer than its access token: it is closed with
//! 4001 when the token's `exp` passes (after the 5 s leeway that token
//! checks allow), unless the client sent a fresh token of the same user in an
//! `auth` frame first; the SDK does that when it is given a new token.

use std::time::{Duration, Instant};

use mobile_bridge::client::{Client, ClientConfig, Event};
use mobile_bridge::SessionId;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app_with, TEST_JWT_SECRET};
use crate::ws_client::WsClient;

/// A user token signed with the test secret, expiring `in_s` from now.
fn token_for(user: Uuid, in_s: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": user, "kind": "user", "name": "Ann", "iss": "simmer", "iat": now, "exp": now + in_s});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Whether the socket still answers a `ping`.
async fn answers(ws: &mut WsClient) -> bool {
    ws.send(json!({"type": "ping"})).await;
    while let Some(frame) = ws.try_recv(Duration::from_secs(5)).await {
        if frame["type"] == "pong" {
            return true;
        }
    }
    false
}

#[actix_rt::test]
async fn the_socket_closes_with_4001_when_the_token_expires() {
    let app = spawn_app_with(|s| s.access_token_ttl = Duration::from_secs(2)).await;
    let user = app.register().await;
    let session = app.live_session(&user).await.to_string();
    let mut ws = WsClient::connect(&app.address, &user.token).await;
    assert_eq!(ws.join(&session, None).await["status"], "ok");
    let opened = Instant::now();
    let code = ws.close_code().await;
    assert_eq!(code, Some(4001));
    // Expiry (2 s) plus the leeway (5 s), with room for a busy machine.
    assert!(
        opened.elapsed() < Duration::from_secs(10),
        "{:?}",
        opened.elapsed()
    );
}

#[actix_rt::test]
async fn a_fresh_token_sent_in_band_keeps_the_socket_open() {
    let app = spawn_app_with(|s| s.access_token_ttl = Duration::from_secs(2)).await;
    let user = app.register().await;
    let mut ws = WsClient::connect(&app.address, &user.token).await;

    // Someone else's token does not take over the connection.
    let other = token_for(Uuid::now_v7(), 600);
    let (reply, _) = ws.request(json!({"type": "auth", "token": other})).await;
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    let (reply, _) = ws
        .request(json!({"type": "auth", "token": "not.a.jwt"}))
        .await;
    assert_eq!(reply["error"]["code"], "unauthorized", "{reply}");

    let fresh = token_for(user.id, 600);
    let (reply, _): (Value, _) = ws.request(json!({"type": "auth", "token": fresh})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(reply["body"]["expires_at"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 500);

    // Past the first token's expiry and its leeway (2 + 5 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(answers(&mut ws).await, "closed despite a fresh token");
}

#[actix_rt::test]
async fn the_sdk_sends_a_new_token_on_the_open_connection() {
    let app = spawn_app_with(|s| s.access_token_ttl = Duration::from_secs(2)).await;
    let user = app.register().await;
    let session = SessionId(app.live_session(&user).await);
    let url = format!("{}/ws", app.address.replacen("http", "ws", 1));
    let (client, mut events) = Client::connect(ClientConfig::new(&url, &user.token))
        .await
        .unwrap();
    client.join(session).await.unwrap();
    client.set_token(token_for(user.id, 600)).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    client.send_chat(session, "still here").await.unwrap();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(200), events.recv()).await
    {
        assert!(
            !matches!(event, Event::Reconnecting { .. }),
            "the connection was closed: {event:?}"
        );
    }
}

/// The next event that is not a presence or timer change, within `secs`.
async fn next_event(events: &mut mobile_bridge::client::Events, secs: u64) -> Option<Event> {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(Event::Presence { .. } | Event::Timer { .. })) => continue,
            Ok(event) => return event,
            Err(_) => return None,
        }
    }
}

#[actix_rt::test]
async fn an_sdk_whose_token_expired_while_away_waits_for_a_fresh_one_and_resumes() {
    let app = spawn_app_with(|_| {}).await;
    let host = app.register().await;
    let session = SessionId(app.live_session(&host).await);
    let url = format!("{}/ws", app.address.replacen("http", "ws", 1));
    // A viewer whose token outlives the connect by 1 s (+ the 5 s leeway).
    let viewer = app.register().await;
    let mut config = ClientConfig::new(&url, token_for(viewer.id, 1));
    config.min_backoff = Duration::from_millis(50);
    let (client, mut events) = Client::connect(config).await.unwrap();
    client.join(session).await.unwrap();
    let mut host_ws = WsClient::connect(&app.address, &host.token).await;
    host_ws.join(&session.to_string(), None).await;
    host_ws.chat(&session.to_string(), "before", "m-1").await;
    assert!(matches!(next_event(&mut events, 5).await, Some(Event::Chat(m)) if m.text == "before"));

    // The server closes the socket at the expiry (4001); the reconnect
    // with the same token is refused, and said so, once.
    assert!(matches!(
        next_event(&mut events, 15).await,
        Some(Event::Reconnecting { attempt: 1 })
    ));
    match next_event(&mut events, 5).await {
        Some(Event::TokenRefused { status, code, .. }) => {
            assert_eq!(status, 401);
            assert_eq!(code, Some(mobile_bridge::ErrorCode::Unauthorized));
        }
        other => panic!("{other:?}"),
    }
    // Meanwhile: chat goes on, and the viewer sends one of its own.
    host_ws
        .chat(&session.to_string(), "while away", "m-2")
        .await;
    let sender = client.clone();
    let pending = tokio::spawn(async move { sender.send_chat(session, "queued").await });
    // No hammering with a token that cannot work.
    assert_eq!(next_event(&mut events, 1).await, None);

    // A fresh token: reconnected at once, resumed, the queued send made.
    client.set_token(token_for(viewer.id, 600)).await;
    assert!(matches!(
        next_event(&mut events, 5).await,
        Some(Event::Reconnecting { attempt: 1 })
    ));
    let mut texts = Vec::new();
    while let Some(event) = next_event(&mut events, 3).await {
        match event {
            Event::Reconnected => texts.push("<reconnected>".to_owned()),
            Event::Chat(m) => texts.push(m.text),
            other => panic!("{other:?}"),
        }
    }
    let ack = pending.await.unwrap().unwrap();
    assert_eq!(ack.seq, 3, "{texts:?}");
    assert_eq!(texts, ["<reconnected>", "while away", "queued"]);
}

#[actix_rt::test]
async fn an_sdk_waiting_for_a_token_can_still_be_closed() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.register().await;
    let session = SessionId(app.live_session(&user).await);
    let url = format!("{}/ws", app.address.replacen("http", "ws", 1));
    let (client, mut events) = Client::connect(ClientConfig::new(&url, token_for(user.id, 0)))
        .await
        .unwrap();
    client.join(session).await.unwrap();
    loop {
        match next_event(&mut events, 15).await {
            Some(Event::TokenRefused { .. }) => break,
            Some(Event::Reconnecting { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    let sender = client.clone();
    let pending = tokio::spawn(async move { sender.send_chat(session, "never").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.close().await;
    assert_eq!(next_event(&mut events, 2).await, None, "events end");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(2), pending)
            .await
            .expect("the send is answered")
            .unwrap(),
        Err(mobile_bridge::client::ClientError::Closed)
    );
}
