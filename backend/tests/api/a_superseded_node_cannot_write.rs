//! Fencing: a node whose session was taken over by another (here: a second
//! node on the same database, which takes every live session at start) can
//! no longer write that session's chat or timer. Its writes are refused, not
//! acknowledged, and it stops the session's actors; the new holder carries
//! on from what is durable, with no gap in `seq`.

use std::time::Duration;

use chrono::Utc;
use mobile_bridge::protocol::{Author, ChatMessage, Role};
use mobile_bridge::{SessionId, UserId};
use serde_json::json;
use simmer::store;

use crate::helpers::{boot, spawn_app, take_over_held, test_settings};

#[actix_rt::test]
async fn the_old_holder_is_refused_and_the_new_one_carries_on() {
    let first = spawn_app().await;
    let host = first.register().await;
    let session = first.live_session(&host).await;
    let messages = format!("/api/v1/sessions/{session}/messages");
    let timer = format!("/api/v1/sessions/{session}/timer");
    let sent = first
        .post(&messages, Some(&host.token), &json!({"text": "before"}))
        .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_eq!(sent.body["seq"], 1);

    // A second node on the same database takes the session over.
    let second = boot(test_settings(&first.data_dir, &first.database_url)).await;
    assert_eq!(second.state.sessions.live_count(), 1);

    // The first node's next writes are refused (503: retry), never acked.
    let refused = first
        .post(&messages, Some(&host.token), &json!({"text": "stale"}))
        .await;
    refused.assert_problem(503, "unavailable");
    let started = first
        .post(&timer, Some(&host.token), &json!({"action": "start"}))
        .await;
    assert_eq!(started.status, 503, "{}", started.body);
    // ...and it lets the session's actors go.
    for _ in 0..40 {
        if first.state.sessions.live_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first.state.sessions.live_count(), 0);

    // The new holder goes on from what is durable: no gap, no stale message.
    let sent = second
        .post(&messages, Some(&host.token), &json!({"text": "after"}))
        .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_eq!(sent.body["seq"], 2);
    let started = second
        .post(&timer, Some(&host.token), &json!({"action": "start"}))
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let history = second.get(&messages, Some(&host.token)).await;
    let texts: Vec<_> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["after", "before"], "newest first, nothing stale");

    first.handle.stop(true).await;
    second.handle.stop(true).await;
}

/// The fence holds inside the one statement that writes a chat batch: a
/// take-over under way (fence raised, not yet committed) makes a write with
/// the old fence wait for it, then refuse. Nothing lands behind the back of
/// the new holder, which reads what is durable right after its commit.
#[actix_rt::test]
async fn a_write_waits_for_a_take_over_under_way_then_is_refused() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let db = app.state.db.clone();
    let old = store::sessions::find(&db, session)
        .await
        .unwrap()
        .unwrap()
        .fence;

    // Another node's take-over, held open in its own connection.
    let take_over = take_over_held(&app.database_url, session).await;

    let message = ChatMessage {
        session_id: SessionId(session),
        seq: 1,
        author: Author {
            id: UserId(host.id),
            name: host.username.clone(),
            role: Role::Host,
        },
        text: "behind the new holder's back".into(),
        sent_at: store::chat::rfc3339(Utc::now()),
        client_msg_id: None,
        deleted: false,
    };
    let write = tokio::spawn(async move {
        store::chat::insert_batch(&db, session, old, &[(message, Utc::now())]).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "the write waits for the take-over");
    take_over.commit().await.unwrap();
    let written = write.await.unwrap().unwrap();
    assert!(!written, "the raised fence refuses the write");
    let stored = store::chat::by_seq(&app.state.db, session, 1)
        .await
        .unwrap();
    assert!(stored.is_none(), "nothing was written: {stored:?}");
    app.handle.stop(true).await;
}
