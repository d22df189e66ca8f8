//! The timer's deadline survives an actor crash and a server restart: the
//! remaining time after recovery matches to within 10 ms.

use std::time::Duration;

use serde_json::{json, Value};
use simmer::live::Fault;

use crate::helpers::{boot, spawn_app, test_settings, TestApp};

/// The remaining time the server reports, and when it said it.
async fn remaining(app: &TestApp, session: uuid::Uuid) -> (i64, i64, Value) {
    let reply = app
        .get(&format!("/api/v1/sessions/{session}/timer"), None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    (
        reply.body["remaining_ms"].as_i64().unwrap(),
        reply.body["server_time_ms"].as_i64().unwrap(),
        reply.body,
    )
}

fn assert_continues(before: (i64, i64), after: (i64, i64)) {
    let (r1, t1) = before;
    let (r2, t2) = after;
    let expected = r1 - (t2 - t1);
    assert!(
        (expected - r2).abs() <= 10,
        "remaining {r2} ms after recovery, expected {expected} ms"
    );
}

#[actix_rt::test]
async fn the_countdown_continues_after_a_server_restart() {
    let first = spawn_app().await;
    let host = first.register().await;
    let session = first.live_session(&host).await;
    let started = first
        .post(
            &format!("/api/v1/sessions/{session}/timer"),
            Some(&host.token),
            &json!({"action": "start"}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let (r1, t1, before) = remaining(&first, session).await;
    first.handle.stop(true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = boot(test_settings(&first.data_dir, &first.database_url)).await;
    let (r2, t2, after) = remaining(&second, session).await;
    assert_eq!(after["state"], "running");
    assert_eq!(after["deadline_ms"], before["deadline_ms"]);
    assert_continues((r1, t1), (r2, t2));
    second.handle.stop(true).await;
}

#[actix_rt::test]
async fn the_countdown_continues_after_the_timer_actor_crashes() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    app.post(
        &format!("/api/v1/sessions/{session}/timer"),
        Some(&host.token),
        &json!({"action": "start"}),
    )
    .await;
    let paused_session = app.live_session(&host).await;
    app.post(
        &format!("/api/v1/sessions/{paused_session}/timer"),
        Some(&host.token),
        &json!({"action": "start"}),
    )
    .await;
    let paused = app
        .post(
            &format!("/api/v1/sessions/{paused_session}/timer"),
            Some(&host.token),
            &json!({"action": "pause"}),
        )
        .await;

    for fault in [Fault::Panic, Fault::Stop] {
        let (r1, t1, before) = remaining(&app, session).await;
        assert!(
            app.state
                .sessions
                .inject_fault(session, "timer", fault)
                .await
        );
        app.state
            .sessions
            .inject_fault(paused_session, "timer", fault)
            .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (r2, t2, after) = remaining(&app, session).await;
        assert_eq!(after["deadline_ms"], before["deadline_ms"], "{fault:?}");
        assert_continues((r1, t1), (r2, t2));
        let (left, _, _) = remaining(&app, paused_session).await;
        assert_eq!(
            left,
            paused.body["remaining_ms"].as_i64().unwrap(),
            "{fault:?}"
        );
    }
    // And it still takes actions.
    let next = app
        .post(
            &format!("/api/v1/sessions/{session}/timer"),
            Some(&host.token),
            &json!({"action": "next"}),
        )
        .await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body["step_index"], 1);
}
