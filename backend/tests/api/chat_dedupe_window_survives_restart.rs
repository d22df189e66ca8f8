//! The chat's idempotency window (`chat_dedupe_window`, 10,000 sends per
//! session) survives a restart: after one, a retry of a message older than
//! the in-memory ring (1,000) still answers with the stored message instead
//! of posting it twice.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::helpers::{boot, spawn_app_with, test_settings};

/// More messages than the ring holds (1,000 by default).
const SENT: usize = 1_100;

fn unlimited(settings: &mut simmer::Settings) {
    settings.chat_rate_per_s = 1_000_000.0;
    settings.chat_burst = 1_000_000;
    settings.chat_max_fanout_queue = 0;
}

#[actix_rt::test]
async fn a_retry_of_an_old_message_after_a_restart_is_not_posted_twice() {
    let first = spawn_app_with(unlimited).await;
    assert_eq!(first.state.settings.chat_history, 1_000);
    assert_eq!(first.state.settings.chat_dedupe_window, 10_000);
    let host = first.register().await;
    let session = first.live_session(&host).await;
    let path = format!("/api/v1/sessions/{session}/messages");

    // Sixteen in flight at a time, as a busy room would.
    let stored: HashMap<String, Value> = futures_util::stream::iter(0..SENT)
        .map(|i| {
            let (app, path, token) = (&first, &path, &host.token);
            async move {
                let id = format!("m-{i}");
                let reply = app
                    .post(
                        path,
                        Some(token),
                        &json!({"text": format!("message {i}"), "client_msg_id": id}),
                    )
                    .await;
                assert_eq!(reply.status, 201, "{}", reply.body);
                (id, reply.body)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let oldest = stored
        .values()
        .min_by_key(|m| m["seq"].as_u64().unwrap())
        .unwrap()
        .clone();
    assert_eq!(oldest["seq"], 1);

    first.handle.stop(true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut settings = test_settings(&first.data_dir, &first.database_url);
    unlimited(&mut settings);
    let second = boot(settings).await;

    // The oldest message, retried with other text: the stored one answers.
    let retried = second
        .post(
            &path,
            Some(&host.token),
            &json!({"text": "posted twice?", "client_msg_id": oldest["client_msg_id"]}),
        )
        .await;
    assert_eq!(retried.status, 201, "{}", retried.body);
    assert_eq!(
        retried.body, oldest,
        "the stored message, as first answered"
    );
    // One just inside the ring, too.
    let recent = &stored[&format!("m-{}", SENT - 1)];
    let again = second
        .post(
            &path,
            Some(&host.token),
            &json!({"text": "again", "client_msg_id": recent["client_msg_id"]}),
        )
        .await;
    assert_eq!(again.body, *recent);

    // Nothing was posted twice: the newest is still number 1,100, and the
    // next new message is 1,101.
    let newest = second
        .get(&format!("{path}?limit=1"), Some(&host.token))
        .await;
    assert_eq!(
        newest.body["items"][0]["seq"], SENT as u64,
        "{}",
        newest.body
    );
    let next = second
        .post(
            &path,
            Some(&host.token),
            &json!({"text": "a new one", "client_msg_id": "m-new"}),
        )
        .await;
    assert_eq!(next.body["seq"], SENT as u64 + 1, "{}", next.body);
    second.handle.stop(true).await;
}
