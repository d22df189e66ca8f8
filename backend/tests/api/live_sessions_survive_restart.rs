//! After a server restart, every live session has its actor again.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{boot, spawn_app, test_settings};

#[actix_rt::test]
async fn live_sessions_come_back_after_a_restart() {
    let first = spawn_app().await;
    let host = first.register().await;
    let live = first.live_session(&host).await;
    let ended = first.live_session(&host).await;
    first
        .post(
            &format!("/api/v1/sessions/{ended}/end"),
            Some(&host.token),
            &json!({}),
        )
        .await;
    let scheduled = first.create_session(&host).await;
    first.handle.stop(true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let second = boot(test_settings(&first.data_dir, &first.database_url)).await;
    assert_eq!(second.state.sessions.live_count(), 1);
    let reply = second.get(&format!("/api/v1/sessions/{live}"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["state"], "live");
    assert_eq!(reply.body["timer"]["state"], "idle");
    // Tokens signed before the restart still work (same secret).
    let me = second.get("/api/v1/me", Some(&host.token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(
        second
            .get(&format!("/api/v1/sessions/{scheduled}"), None)
            .await
            .body["state"],
        "scheduled"
    );
    second.handle.stop(true).await;
}
