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
