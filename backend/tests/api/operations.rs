//! Health, readiness and metrics.

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["status"], "ok");
    let expected = if app.database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(ready.body["database"], expected);
}

#[actix_rt::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.state.db.clone().close().await.unwrap();
    let ready = app.get("/readyz", None).await;
    ready.assert_problem(503, "unavailable");
}

#[actix_rt::test]
async fn metrics_count_requests_by_route_and_live_sessions() {
    let app = spawn_app().await;
    let host = app.register().await;
    let id = app.live_session(&host).await;
    for _ in 0..3 {
        app.get(&format!("/api/v1/sessions/{id}"), None).await;
    }
    let reply = app.get("/metrics", None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.starts_with("text/plain"));
    let text = reply.body.as_str().unwrap();
    assert!(
        text.contains(
            r#"simmer_http_requests_total{method="GET",route="/api/v1/sessions/{id}",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(text.contains("simmer_http_request_duration_seconds_bucket"));
    assert!(text.contains("simmer_live_sessions 1"), "{text}");
}

/// The chat latency breakdown: every message's time to durable, and for one
/// message in eight (the eighth here) the time to its first and its last
/// member's socket, observed as soon as every member has it.
#[actix_rt::test]
async fn metrics_break_chat_latency_down() {
    let app = spawn_app().await;
    let host = app.register().await;
    let viewer = app.register().await;
    let session = app.live_session(&host).await.to_string();
    let mut h = crate::ws_client::WsClient::connect(&app.address, &host.token).await;
    let mut v = crate::ws_client::WsClient::connect(&app.address, &viewer.token).await;
    h.join(&session, None).await;
    v.join(&session, None).await;
    for n in 1..=8 {
        let ack = h
            .chat(&session, &format!("step {n}"), &format!("m-{n}"))
            .await;
        assert_eq!(ack["status"], "ok", "{ack}");
    }
    // Both members have the eighth message once the viewer reads it.
    loop {
        let (frame, _) = v.recv_type("chat.message").await;
        if frame["seq"] == 8 {
            break;
        }
    }
    let mut text = String::new();
    for _ in 0..50 {
        text = app
            .get("/metrics", None)
            .await
            .body
            .as_str()
            .unwrap()
            .to_owned();
        if text.contains(r#"simmer_chat_fanout_seconds_count{edge="last"} 1"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        text.contains("simmer_chat_durable_seconds_count 8"),
        "{text}"
    );
    assert!(
        text.contains(r#"simmer_chat_fanout_seconds_count{edge="first"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"simmer_chat_fanout_seconds_count{edge="last"} 1"#),
        "{text}"
    );
}
