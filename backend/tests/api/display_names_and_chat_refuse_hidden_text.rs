//! Display names (accounts, guests) and chat (REST, `/ws`) refuse Unicode
//! bidirectional controls and text that shows nothing (zero-width and
//! format characters, Hangul fillers, ...): 422 `validation_failed`. Emoji
//! sequences, which hold a zero-width joiner, stay valid.

use serde_json::json;

use crate::helpers::{spawn_app, username};
use crate::ws_client::WsClient;

/// Names and messages that must be refused: a right-to-left override that
/// makes "Anna" read backwards, each bidi control, and invisible-only text.
const HIDDEN: [&str; 10] = [
    "\u{202E}annA",
    "Chef \u{2067}Anna\u{2069}",
    "\u{200F}Anna",
    "Anna\u{061C}",
    "\u{200B}",
    "\u{200B}\u{200D}\u{2060}\u{FEFF}",
    "\u{3164}",
    "\u{115F}\u{1160}",
    "\u{FE0F}",
    "\u{200B} \u{200C}",
];

#[actix_rt::test]
async fn display_names_with_bidi_controls_or_nothing_visible_are_refused() {
    let app = spawn_app().await;
    for name in HIDDEN {
        let reply = app
            .post(
                "/api/v1/auth/register",
                None,
                &json!({"username": username(), "password": "correct horse battery", "display_name": name}),
            )
            .await;
        reply.assert_problem(422, "validation_failed");
        assert_eq!(reply.body["errors"][0]["field"], "display_name", "{name:?}");
    }
    let chef = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"username": username(), "password": "correct horse battery", "display_name": "👩‍🍳 Anna"}),
        )
        .await;
    assert_eq!(chef.status, 201, "{}", chef.body);
    assert_eq!(chef.body["user"]["display_name"], "👩‍🍳 Anna");

    let host = app.register().await;
    let session = app.live_session(&host).await;
    let path = format!("/api/v1/sessions/{session}/guest-tokens");
    // A few only: minting guest tokens is rate-limited per address.
    for name in [HIDDEN[0], HIDDEN[4], HIDDEN[6]] {
        let reply = app.post(&path, None, &json!({"display_name": name})).await;
        reply.assert_problem(422, "validation_failed");
        assert_eq!(reply.body["errors"][0]["field"], "display_name", "{name:?}");
    }
    let guest = app.post(&path, None, &json!({"display_name": "🧑‍🍳"})).await;
    assert_eq!(guest.status, 201, "{}", guest.body);
}

#[actix_rt::test]
async fn chat_with_bidi_controls_or_nothing_visible_is_refused_over_rest_and_ws() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let path = format!("/api/v1/sessions/{session}/messages");
    let mut ws = WsClient::connect(&app.address, &host.token).await;
    assert_eq!(ws.join(&session.to_string(), None).await["status"], "ok");

    for (i, text) in HIDDEN.iter().enumerate() {
        let reply = app
            .post(
                &path,
                Some(&host.token),
                &json!({"text": text, "client_msg_id": format!("rest-{i}")}),
            )
            .await;
        reply.assert_problem(422, "validation_failed");
        assert!(
            reply.body["detail"].as_str().unwrap().starts_with("text "),
            "{}",
            reply.body
        );
        let reply = ws
            .chat(&session.to_string(), text, &format!("ws-{i}"))
            .await;
        assert_eq!(reply["status"], "error", "{text:?}: {reply}");
        assert_eq!(reply["error"]["code"], "validation_failed", "{reply}");
    }

    // Emoji sequences (with U+200D inside) are chat; no number was used up.
    let chef = app
        .post(
            &path,
            Some(&host.token),
            &json!({"text": "👩‍🍳", "client_msg_id": "rest-ok"}),
        )
        .await;
    assert_eq!(chef.status, 201, "{}", chef.body);
    assert_eq!(chef.body["seq"], 1);
    assert_eq!(chef.body["text"], "👩‍🍳");
    let reply = ws
        .chat(&session.to_string(), "🏳️‍🌈 a\u{200B}b", "ws-ok")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["body"]["seq"], 2);
}
