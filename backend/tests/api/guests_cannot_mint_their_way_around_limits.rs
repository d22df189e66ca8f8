//! Guest tokens are free to ask for, so asking is limited per address, and a
//! guest's mute, chat rate and connection cap hold for every guest token
//! from the same address. The host can turn guests away mid-session.

use serde_json::{json, Value};
use simmer::client_addr::TrustedProxies;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use crate::helpers::{read, spawn_app_with, Reply, TestApp};
use crate::ws_client::WsClient;

/// Asks for a guest token as if from `from` (the app trusts 127.0.0.1 as its
/// proxy).
async fn guest_from(app: &TestApp, session: Uuid, from: &str) -> Reply {
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/sessions/{session}/guest-tokens")))
        .header("X-Forwarded-For", from)
        .json(&json!({"display_name": "Guest"}))
        .send()
        .await
        .unwrap();
    read(resp).await
}

async fn guest_token(app: &TestApp, session: Uuid, from: &str) -> String {
    let reply = guest_from(app, session, from).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn post_chat(app: &TestApp, session: Uuid, token: &str, text: &str) -> Reply {
    app.post(
        &format!("/api/v1/sessions/{session}/messages"),
        Some(token),
        &json!({"text": text}),
    )
    .await
}

fn behind_proxy(s: &mut simmer::Settings) {
    s.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
}

#[actix_rt::test]
async fn guest_tokens_are_limited_per_address() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.guest_tokens_per_address = 3;
    })
    .await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    for _ in 0..3 {
        guest_token(&app, session, "203.0.113.9").await;
    }
    let limited = guest_from(&app, session, "203.0.113.9").await;
    limited.assert_problem(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    // IPv6: one /64 is one address.
    for i in 0..3 {
        guest_token(&app, session, &format!("2001:db8:0:1::{i}")).await;
    }
    guest_from(&app, session, "2001:db8:0:1:ffff::1")
        .await
        .assert_problem(429, "rate_limited");
    // Somebody else is not affected.
    guest_token(&app, session, "198.51.100.7").await;
}

#[actix_rt::test]
async fn a_muted_guest_stays_muted_with_a_new_token() {
    let app = spawn_app_with(behind_proxy).await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let first = guest_from(&app, session, "203.0.113.9").await;
    let first_token = first.body["access_token"].as_str().unwrap();
    let posted = post_chat(&app, session, first_token, "spam").await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    let muted = app
        .post(
            &format!("/api/v1/sessions/{session}/mutes"),
            Some(&host.token),
            &json!({"user_id": first.body["guest_id"]}),
        )
        .await;
    assert!(muted.status.is_success(), "{}", muted.body);

    // A fresh token from the same address is still muted...
    let second = guest_token(&app, session, "203.0.113.9").await;
    post_chat(&app, session, &second, "more spam")
        .await
        .assert_problem(403, "forbidden");
    // ...over /ws as well...
    let mut ws = WsClient::connect(&app.address, &second).await;
    ws.join(&session.to_string(), None).await;
    let reply = ws.chat(&session.to_string(), "and more", "c1").await;
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    // ...while a guest elsewhere can talk.
    let other = guest_token(&app, session, "198.51.100.7").await;
    let posted = post_chat(&app, session, &other, "hello").await;
    assert_eq!(posted.status, 201, "{}", posted.body);
}

#[actix_rt::test]
async fn new_guest_tokens_do_not_buy_more_chat_or_sockets() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.chat_rate_per_s = 0.01;
        s.chat_burst = 1;
        s.ws_max_connections_per_user = 1;
    })
    .await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    // Four guests' worth of sends for the address, then no more, whatever
    // the token.
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(guest_token(&app, session, "203.0.113.9").await);
    }
    for (i, token) in tokens.iter().take(4).enumerate() {
        let posted = post_chat(&app, session, token, &format!("hi {i}")).await;
        assert_eq!(posted.status, 201, "{}", posted.body);
    }
    post_chat(&app, session, &tokens[4], "one more")
        .await
        .assert_problem(429, "rate_limited");

    // Sockets: one per guest, four per address.
    let mut open = Vec::new();
    for token in tokens.iter().take(4) {
        open.push(WsClient::connect(&app.address, token).await);
    }
    let url = format!("{}/ws", app.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", tokens[4]).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
        }
        other => panic!("a fifth guest socket from one address was let in: {other:?}"),
    }
    drop(open);
}

#[actix_rt::test]
async fn the_host_turns_guests_away_mid_session() {
    let app = spawn_app_with(|_| {}).await;
    let host = app.register().await;
    let viewer = app.register().await;
    let session = app.live_session(&host).await;
    let sid = session.to_string();
    let guest = guest_token(&app, session, "127.0.0.1").await;
    let mut guest_ws = WsClient::connect(&app.address, &guest).await;
    assert_eq!(guest_ws.join(&sid, None).await["status"], "ok");
    let mut viewer_ws = WsClient::connect(&app.address, &viewer.token).await;
    assert_eq!(viewer_ws.join(&sid, None).await["status"], "ok");

    let path = format!("/api/v1/sessions/{session}");
    let patch = |token: String, body: Value| {
        let app = &app;
        let path = path.clone();
        async move {
            app.request(reqwest::Method::PATCH, &path, Some(&token), Some(&body))
                .await
        }
    };
    patch(viewer.token.clone(), json!({"allow_guests": false}))
        .await
        .assert_problem(403, "forbidden");
    patch(host.token.clone(), json!({"allow_gusts": false}))
        .await
        .assert_problem(400, "invalid_body");
    let changed = patch(host.token.clone(), json!({"allow_guests": false})).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["allow_guests"], false);

    // The connected guest is told why and disconnected.
    let (error, _) = guest_ws.recv_type("error").await;
    assert_eq!(error["code"], "forbidden", "{error}");
    assert_eq!(guest_ws.close_code().await, Some(4003));
    // Its token works no more for this session; no new ones are issued.
    post_chat(&app, session, &guest, "hello?")
        .await
        .assert_problem(403, "forbidden");
    let mut again = WsClient::connect(&app.address, &guest).await;
    assert_eq!(again.join(&sid, None).await["error"]["code"], "forbidden");
    guest_from(&app, session, "127.0.0.1")
        .await
        .assert_problem(403, "forbidden");
    // Members carry on.
    let reply = viewer_ws.chat(&sid, "still here", "v1").await;
    assert_eq!(reply["status"], "ok", "{reply}");

    // Guests back in: the same token works again.
    let changed = patch(host.token.clone(), json!({"allow_guests": true})).await;
    assert_eq!(changed.body["allow_guests"], true);
    let posted = post_chat(&app, session, &guest, "back").await;
    assert_eq!(posted.status, 201, "{}", posted.body);

    // Not once the session is over.
    app.post(
        &format!("/api/v1/sessions/{session}/end"),
        Some(&host.token),
        &json!({}),
    )
    .await;
    patch(host.token.clone(), json!({"allow_guests": false}))
        .await
        .assert_problem(409, "conflict");
}
