//! Chat over `/ws`: join, send with durable acks, fan-out, presence, errors.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{read, spawn_app, spawn_app_with};
use crate::ws_client::WsClient;

#[actix_rt::test]
async fn the_upgrade_needs_a_valid_token() {
    let app = spawn_app().await;
    let plain = app.client.get(app.url("/ws")).send().await.unwrap();
    read(plain).await.assert_problem(401, "unauthorized");
    let bad = app
        .client
        .get(app.url("/ws?token=not-a-token"))
        .send()
        .await
        .unwrap();
    read(bad).await.assert_problem(401, "unauthorized");
    let user = app.register().await;
    let wrong_version = app
        .client
        .get(app.url(&format!("/ws?token={}&protocol=9", user.token)))
        .send()
        .await
        .unwrap();
    read(wrong_version)
        .await
        .assert_problem(400, "unsupported_protocol");
}

#[actix_rt::test]
async fn messages_are_acknowledged_then_delivered_to_every_member() {
    let app = spawn_app().await;
    let host = app.register().await;
    let viewer = app.register().await;
    let session = app.live_session(&host).await.to_string();

    let mut h = WsClient::connect(&app.address, &host.token).await;
    let mut v = WsClient::connect(&app.address, &viewer.token).await;
    let joined = h.join(&session, None).await;
    assert_eq!(joined["status"], "ok", "{joined}");
    assert_eq!(joined["body"]["role"], "host");
    assert_eq!(joined["body"]["last_seq"], 0);
    assert_eq!(joined["body"]["timer"]["state"], "idle");
    let joined = v.join(&session, None).await;
    assert_eq!(joined["body"]["role"], "viewer");

    let (ack, v_before) = v
        .request(json!({"type": "chat.send", "session_id": session, "text": "  hello chef  ", "client_msg_id": "m-1"}))
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(ack["body"]["seq"], 1);
    assert_eq!(ack["body"]["client_msg_id"], "m-1");

    let mut h_skipped = Vec::new();
    // The sender may see its message before or after the ack.
    let v_early = v_before.into_iter().find(|f| f["type"] == "chat.message");
    for (i, client) in [&mut h, &mut v].into_iter().enumerate() {
        let msg = match (i, &v_early) {
            (1, Some(early)) => early.clone(),
            _ => {
                let (msg, skipped) = client.recv_type("chat.message").await;
                if i == 0 {
                    h_skipped = skipped;
                }
                msg
            }
        };
        assert_eq!(msg["seq"], 1);
        assert_eq!(msg["text"], "hello chef");
        assert_eq!(msg["author"]["id"], viewer.id.to_string());
        assert_eq!(msg["author"]["role"], "viewer");
        assert_eq!(msg["session_id"], session);
        assert!(msg["sent_at"].as_str().unwrap().ends_with('Z'));
    }

    // Presence: one viewer (the host does not count), coalesced.
    let mut presence = h_skipped
        .into_iter()
        .rev()
        .find(|f| f["type"] == "presence");
    while presence.as_ref().is_none_or(|p| p["viewer_count"] != 1) {
        presence = Some(h.recv_type("presence").await.0);
    }
    let got = app.get(&format!("/api/v1/sessions/{session}"), None).await;
    assert_eq!(got.body["viewer_count"], 1);

    let ack = h.chat(&session, "welcome!", "h-1").await;
    assert_eq!(ack["body"]["seq"], 2);
}

#[actix_rt::test]
async fn resending_a_client_msg_id_returns_the_first_ack() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await.to_string();
    let mut h = WsClient::connect(&app.address, &host.token).await;
    h.join(&session, None).await;
    let first = h.chat(&session, "once", "dup").await;
    let again = h.chat(&session, "once", "dup").await;
    assert_eq!(first["body"], again["body"]);
    let next = h.chat(&session, "twice", "other").await;
    assert_eq!(next["body"]["seq"], 2);
}

#[actix_rt::test]
async fn join_with_last_seq_replays_exactly_the_missed_messages_first() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await.to_string();
    let mut h = WsClient::connect(&app.address, &host.token).await;
    h.join(&session, None).await;
    for i in 1..=5 {
        h.chat(&session, &format!("m{i}"), &format!("c{i}")).await;
    }
    let viewer = app.register().await;
    let mut v = WsClient::connect(&app.address, &viewer.token).await;
    let joined = v.join(&session, Some(2)).await;
    assert_eq!(joined["body"]["last_seq"], 5);
    h.chat(&session, "m6", "c6").await;
    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        let (msg, _) = v.recv_type("chat.message").await;
        seqs.push(msg["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, [3, 4, 5, 6]);
    assert!(
        v.try_recv(Duration::from_millis(300))
            .await
            .is_none_or(|f| f["type"] != "chat.message"),
        "no duplicates"
    );
}

#[actix_rt::test]
async fn bad_frames_get_error_frames_not_disconnects() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await.to_string();
    let mut h = WsClient::connect(&app.address, &host.token).await;

    h.send_raw("{not json").await;
    let err = h.recv().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "invalid_frame");

    let (reply, _) = h.request(json!({"type": "dance"})).await;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["error"]["code"], "invalid_frame");

    let (reply, _) = h
        .request(
            json!({"type": "chat.send", "session_id": session, "text": "hi", "client_msg_id": "x"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "not_joined");

    let (reply, _) = h
        .request(json!({"type": "join", "session_id": uuid::Uuid::now_v7()}))
        .await;
    assert_eq!(reply["error"]["code"], "not_found");

    h.join(&session, None).await;
    let too_long = "x".repeat(1001);
    let reply = h.chat(&session, &too_long, "long").await;
    assert_eq!(reply["error"]["code"], "validation_failed");
    let reply = h.chat(&session, "   ", "blank").await;
    assert_eq!(reply["error"]["code"], "validation_failed");

    // Still connected and answering.
    h.send(json!({"type": "ping"})).await;
    let (pong, _) = h.recv_type("pong").await;
    assert!(pong["server_time_ms"].as_i64().unwrap() > 0);
}

#[actix_rt::test]
async fn an_oversized_frame_closes_the_connection_with_a_size_code() {
    let app = spawn_app().await;
    let host = app.register().await;
    let mut h = WsClient::connect(&app.address, &host.token).await;
    h.send_raw(&"x".repeat(64 * 1024)).await;
    let closed = h.close_code().await;
    assert_eq!(closed, Some(1009));
}

#[actix_rt::test]
async fn guests_join_only_their_session_and_ended_sessions_refuse_joins() {
    let app = spawn_app().await;
    let host = app.register().await;
    let mine = app.live_session(&host).await.to_string();
    let other = app.live_session(&host).await.to_string();
    let guest = app
        .post(
            &format!("/api/v1/sessions/{mine}/guest-tokens"),
            None,
            &json!({"display_name": "Guest"}),
        )
        .await;
    let token = guest.body["access_token"].as_str().unwrap();
    let mut g = WsClient::connect(&app.address, token).await;
    assert_eq!(g.join(&other, None).await["error"]["code"], "forbidden");
    let joined = g.join(&mine, None).await;
    assert_eq!(joined["body"]["role"], "guest");
    let ack = g.chat(&mine, "hi from a guest", "g1").await;
    assert_eq!(ack["status"], "ok");

    // The host ends the session: members are told, new joins refused.
    app.post(
        &format!("/api/v1/sessions/{mine}/end"),
        Some(&host.token),
        &json!({}),
    )
    .await;
    let (ended, _) = g.recv_type("session.ended").await;
    assert_eq!(ended["session_id"], mine);
    let mut h = WsClient::connect(&app.address, &host.token).await;
    assert_eq!(h.join(&mine, None).await["error"]["code"], "conflict");
}

#[actix_rt::test]
async fn chat_survives_a_server_restart() {
    let first = spawn_app().await;
    let host = first.register().await;
    let session = first.live_session(&host).await.to_string();
    let mut h = WsClient::connect(&first.address, &host.token).await;
    h.join(&session, None).await;
    for i in 1..=3 {
        assert_eq!(
            h.chat(&session, &format!("m{i}"), &format!("c{i}")).await["status"],
            "ok"
        );
    }
    drop(h);
    first.handle.stop(true).await;

    let second = crate::helpers::boot(crate::helpers::test_settings(
        &first.data_dir,
        &first.database_url,
    ))
    .await;
    let mut h = WsClient::connect(&second.address, &host.token).await;
    let joined = h.join(&session, Some(0)).await;
    assert_eq!(joined["body"]["last_seq"], 3);
    let mut texts = Vec::new();
    while texts.len() < 3 {
        let (m, _) = h.recv_type("chat.message").await;
        texts.push(m["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(texts, ["m1", "m2", "m3"]);
    // Numbering continues, and an old client_msg_id is still recognised.
    assert_eq!(h.chat(&session, "m4", "c4").await["body"]["seq"], 4);
    assert_eq!(h.chat(&session, "m1", "c1").await["body"]["seq"], 1);
    second.handle.stop(true).await;
}

#[actix_rt::test]
async fn presence_announces_who_joined_and_left_once_per_user() {
    let app = spawn_app().await;
    let host = app.register().await;
    let viewer = app.register().await;
    let sid = app.live_session(&host).await.to_string();
    let mut h = WsClient::connect(&app.address, &host.token).await;
    h.join(&sid, None).await;
    // The viewer opens two connections: one arrival.
    let mut v1 = WsClient::connect(&app.address, &viewer.token).await;
    let mut v2 = WsClient::connect(&app.address, &viewer.token).await;
    v1.join(&sid, None).await;
    v2.join(&sid, None).await;
    let mut arrivals = Vec::new();
    let mut count = 0;
    while count != 1
        || !arrivals
            .iter()
            .any(|a: &serde_json::Value| a["id"] == viewer.id.to_string())
    {
        let (p, _) = h.recv_type("presence").await;
        count = p["viewer_count"].as_u64().unwrap();
        arrivals.extend(p["joined"].as_array().cloned().unwrap_or_default());
    }
    let viewer_arrivals = arrivals
        .iter()
        .filter(|a| a["id"] == viewer.id.to_string())
        .count();
    assert_eq!(viewer_arrivals, 1);
    let arrival = arrivals
        .iter()
        .find(|a| a["id"] == viewer.id.to_string())
        .unwrap();
    assert_eq!(arrival["role"], "viewer");
    assert_eq!(arrival["name"], viewer.username);

    // Leaving on one connection is not a departure; closing the last is.
    let (left, _) = v1
        .request(json!({"type": "leave", "session_id": sid}))
        .await;
    assert_eq!(left["status"], "ok");
    drop(v2);
    loop {
        let (p, _) = h.recv_type("presence").await;
        if let Some(gone) = p["left"].as_array() {
            assert_eq!(gone.len(), 1);
            assert_eq!(gone[0]["id"], viewer.id.to_string());
            assert_eq!(p["viewer_count"], 0);
            break;
        }
    }
}

/// On one node the sender's ack goes out before its worker's fan-out of
/// the same message (the fan-out is published once the ack is on its way),
/// so a host with thousands of viewers on its worker is not acknowledged
/// only after a flush to every one of them. Its own `chat.message` follows
/// the reply.
///
/// That holds when the worker's fan-out is idle as the message is
/// published. One already in a round for another event (a `presence`)
/// takes the message in the same round, before the sender's connection has
/// run, and the message goes first; the protocol allows that ("possibly
/// before the reply"). So the test waits for the host's own arrival to be
/// announced first: nothing else is published while it sends.
#[actix_rt::test]
async fn the_sender_is_acknowledged_before_its_worker_fans_the_message_out() {
    let app = spawn_app_with(|s| {
        s.chat_rate_per_s = 1e6;
        s.chat_burst = 1_000_000;
    })
    .await;
    let host = app.register().await;
    let session = app.live_session(&host).await.to_string();
    let mut sender = WsClient::connect(&app.address, &host.token).await;
    let (joined, before) = sender
        .request(json!({"type": "join", "session_id": session}))
        .await;
    assert_eq!(joined["status"], "ok");
    if !before.iter().any(|f| f["type"] == "presence") {
        let (arrival, _) = sender.recv_type("presence").await;
        assert_eq!(arrival["joined"][0]["id"], host.id.to_string());
    }
    for n in 0..20 {
        let (reply, before) = sender
            .request(json!({"type": "chat.send", "session_id": session, "text": format!("m{n}"), "client_msg_id": format!("c{n}")}))
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
        let seq = reply["body"]["seq"].as_u64().unwrap();
        assert!(
            !before
                .iter()
                .any(|f| f["type"] == "chat.message" && f["seq"] == seq),
            "message {seq} was delivered before its ack: {before:?}"
        );
        let (own, _) = sender.recv_type("chat.message").await;
        assert_eq!(own["seq"], seq);
    }
}
