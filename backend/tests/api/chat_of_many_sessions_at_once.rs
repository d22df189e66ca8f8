//! Many sessions chatting at once: their chat channels write at the same
//! time (on SQLite, grouped into shared transactions by the node's
//! `ChatWriter`). Every acknowledged message is stored, numbered without a
//! gap in its own session, and a batch whose fence no longer holds is
//! refused alone, without taking the batches written beside it along.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use mobile_bridge::protocol::{Author, ChatMessage, Role};
use mobile_bridge::{SessionId, UserId};
use serde_json::json;
use simmer::live::chat_writer::ChatWriter;
use simmer::store;
use uuid::Uuid;

use crate::helpers::{spawn_app, take_over_held};

const SESSIONS: usize = 12;
const MESSAGES: usize = 8;

#[actix_rt::test]
async fn every_message_of_many_sessions_sent_at_once_is_stored_in_order() {
    let app = spawn_app().await;
    let host = app.register().await;
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(app.live_session(&host).await);
    }

    // Every message of every session at once, over the REST API.
    let posts = sessions.iter().flat_map(|session| {
        let (app, token) = (&app, &host.token);
        (0..MESSAGES).map(move |n| async move {
            let sent = app
                .post(
                    &format!("/api/v1/sessions/{session}/messages"),
                    Some(token),
                    &json!({"text": format!("{session} {n}")}),
                )
                .await;
            (*session, sent)
        })
    });
    let answers = join_all(posts).await;

    for session in &sessions {
        let seqs: BTreeSet<u64> = answers
            .iter()
            .filter(|(s, _)| s == session)
            .map(|(_, sent)| {
                assert_eq!(sent.status, 201, "{}", sent.body);
                sent.body["seq"].as_u64().expect("seq")
            })
            .collect();
        let expected: BTreeSet<u64> = (1..=MESSAGES as u64).collect();
        assert_eq!(seqs, expected, "session {session}: one number each, no gap");
        let history = app
            .get(
                &format!("/api/v1/sessions/{session}/messages"),
                Some(&host.token),
            )
            .await;
        assert_eq!(history.status, 200, "{}", history.body);
        let stored: BTreeSet<String> = history.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|m| m["text"].as_str().expect("text").to_owned())
            .collect();
        let sent: BTreeSet<String> = (0..MESSAGES).map(|n| format!("{session} {n}")).collect();
        assert_eq!(
            stored, sent,
            "session {session}: every acknowledged message stored"
        );
    }
    app.handle.stop(true).await;
}

/// Three sessions' batches written at once while another node takes the
/// second over. On SQLite the first waits for the database's lock and
/// leads, and the other two queue behind it and are then written together;
/// on PostgreSQL only the second waits (for its session's row). Either way
/// the second is refused, the first and third are written.
#[actix_rt::test]
async fn a_batch_whose_fence_moved_is_refused_alone() {
    let app = spawn_app().await;
    let host = app.register().await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(app.live_session(&host).await);
    }
    let db = app.state.db.clone();
    let mut fences = Vec::new();
    for session in &sessions {
        fences.push(
            store::sessions::find(&db, *session)
                .await
                .unwrap()
                .unwrap()
                .fence,
        );
    }
    // The node's chat channels hold the sessions: a writer of our own
    // writes beside them, under the same fences.
    let writer = ChatWriter::new(db.clone(), None);

    // Another node's take-over of the second session, held open.
    let take_over = take_over_held(&app.database_url, sessions[1]).await;

    let write = |n: usize| {
        let (writer, session, fence) = (writer.clone(), sessions[n], fences[n]);
        let host = Author {
            id: UserId(host.id),
            name: host.username.clone(),
            role: Role::Host,
        };
        tokio::spawn(async move {
            writer
                .write(
                    session,
                    fence,
                    vec![(message(session, 1_000, host), Utc::now())],
                )
                .await
        })
    };
    let first = write(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (second, third) = (write(1), write(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "the second waits for the take-over");
    take_over.commit().await.unwrap();

    let written = [first, second, third].map(|w| async { w.await.unwrap() });
    let written: Vec<_> = join_all(written).await;
    let written: Vec<bool> = written
        .into_iter()
        .map(|w| w.unwrap_or_else(|e| panic!("write failed: {e}")))
        .collect();
    assert_eq!(written, [true, false, true], "only the moved fence refuses");
    for (n, session) in sessions.iter().enumerate() {
        let stored = store::chat::by_seq(&db, *session, 1_000).await.unwrap();
        assert_eq!(stored.is_some(), n != 1, "session {n}: {stored:?}");
    }
    app.handle.stop(true).await;
}

fn message(session: Uuid, seq: u64, author: Author) -> ChatMessage {
    ChatMessage {
        session_id: SessionId(session),
        seq,
        author,
        text: format!("written beside the channels ({seq})"),
        sent_at: store::chat::rfc3339(Utc::now()),
        client_msg_id: None,
        deleted: false,
    }
}
