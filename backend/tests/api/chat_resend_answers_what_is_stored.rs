//! A resend of a `client_msg_id` answers with the message first stored
//! under it (its text, author and `sent_at`), over REST and `/ws` alike, and
//! posts nothing new, even when the resend carries other text.

use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;
use crate::ws_client::WsClient;

#[actix_rt::test]
async fn a_rest_resend_with_other_text_answers_with_the_stored_message() {
    let app = spawn_app().await;
    let host = app.register().await;
    let viewer = app.register().await;
    let session = app.live_session(&host).await;
    let path = format!("/api/v1/sessions/{session}/messages");

    let first = app
        .post(
            &path,
            Some(&viewer.token),
            &json!({"text": "first words", "client_msg_id": "c-1"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["text"], "first words");

    let resent = app
        .post(
            &path,
            Some(&viewer.token),
            &json!({"text": "something else entirely", "client_msg_id": "c-1"}),
        )
        .await;
    assert_eq!(resent.status, 201, "{}", resent.body);
    assert_eq!(resent.body, first.body, "the stored message, unchanged");

    // Another user's same id is their own message.
    let other = app
        .post(
            &path,
            Some(&host.token),
            &json!({"text": "host here", "client_msg_id": "c-1"}),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.body);
    assert_eq!(other.body["seq"], 2);
    assert_eq!(other.body["author"]["role"], "host");

    let history = app.get(&path, Some(&viewer.token)).await;
    let texts: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["host here", "first words"]);
    assert_eq!(history.body["items"][1]["sent_at"], first.body["sent_at"]);
}

#[actix_rt::test]
async fn a_ws_resend_with_other_text_answers_with_the_stored_message() {
    let app = spawn_app().await;
    let host = app.register().await;
    let viewer = app.register().await;
    let session = app.live_session(&host).await.to_string();
    let mut v = WsClient::connect(&app.address, &viewer.token).await;
    assert_eq!(v.join(&session, None).await["status"], "ok");

    // Every chat frame the viewer receives, wherever it falls around the
    // replies.
    let mut seen = Vec::new();
    let mut send = async |text: &str, id: &str| {
        let (reply, before) = v
            .request(json!({"type": "chat.send", "session_id": session, "text": text, "client_msg_id": id}))
            .await;
        seen.extend(before.into_iter().filter(|f| f["type"] == "chat.message"));
        reply
    };
    let first = send("first words", "c-1").await;
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["body"]["seq"], 1);
    assert_eq!(first["body"]["text"], "first words");

    let resent = send("something else entirely", "c-1").await;
    assert_eq!(resent["status"], "ok", "{resent}");
    assert_eq!(
        resent["body"], first["body"],
        "the stored message, unchanged"
    );
    for key in ["seq", "sent_at", "client_msg_id", "session_id"] {
        assert!(!resent["body"][key].is_null(), "the ack's {key} is kept");
    }

    // Nothing new was posted or broadcast: the next message is number 2,
    // and the only chat frames are 1 and 2, with the first text.
    let next = send("second", "c-2").await;
    assert_eq!(next["body"]["seq"], 2, "{next}");
    while seen.len() < 2 {
        let frame = v.recv().await;
        if frame["type"] == "chat.message" {
            seen.push(frame);
        }
    }
    while let Some(frame) = v.try_recv(Duration::from_millis(300)).await {
        if frame["type"] == "chat.message" {
            seen.push(frame);
        }
    }
    let seen: Vec<_> = seen
        .iter()
        .map(|f| (f["seq"].clone(), f["text"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (json!(1), json!("first words")),
            (json!(2), json!("second"))
        ]
    );
}
