//! Every bad input gets a clear 4xx problem document, never a 500.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{read, spawn_app, spawn_app_with, TEST_JWT_SECRET};

#[actix_rt::test]
async fn malformed_bodies() {
    let app = spawn_app().await;
    let user = app.register().await;
    let send = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/recipes"))
            .bearer_auth(&user.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    read(send("{not json", "application/json").await.unwrap())
        .await
        .assert_problem(400, "invalid_body");
    read(
        send(r#"{"title": 5, "steps": []}"#, "application/json")
            .await
            .unwrap(),
    )
    .await
    .assert_problem(400, "invalid_body");
    read(
        send(r#"{"steps": [{"text": "a"}]}"#, "application/json")
            .await
            .unwrap(),
    )
    .await
    .assert_problem(400, "invalid_body");
    read(
        send(r#"{"title": "a", "steps": [{"text": "a"}]}"#, "text/plain")
            .await
            .unwrap(),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    read(send("", "application/json").await.unwrap())
        .await
        .assert_problem(400, "invalid_body");
    read(
        send(
            r#"{"title": "a", "servings": -1, "steps": [{"text": "a"}]}"#,
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await
    .assert_problem(400, "invalid_body");
}

#[actix_rt::test]
async fn bodies_over_the_limit_get_413() {
    let app = spawn_app_with(|s| s.max_body_bytes = 4096).await;
    let user = app.register().await;
    let big = json!({"title": "big", "steps": [{"text": "x".repeat(10_000)}]});
    app.post("/api/v1/recipes", Some(&user.token), &big)
        .await
        .assert_problem(413, "payload_too_large");
}

#[actix_rt::test]
async fn malformed_ids_and_queries() {
    let app = spawn_app().await;
    app.get("/api/v1/recipes/not-a-uuid", None)
        .await
        .assert_problem(400, "invalid_path");
    app.get("/api/v1/sessions/123", None)
        .await
        .assert_problem(400, "invalid_path");
    app.get("/api/v1/sessions?limit=lots", None)
        .await
        .assert_problem(400, "invalid_query");
    app.get("/api/v1/recipes?mine=perhaps", None)
        .await
        .assert_problem(400, "invalid_query");
    app.get(&format!("/api/v1/sessions/{}", uuid::Uuid::now_v7()), None)
        .await
        .assert_problem(404, "not_found");
    app.get("/api/v1/no-such-thing", None)
        .await
        .assert_problem(404, "not_found");
    app.get("/nowhere", None)
        .await
        .assert_problem(404, "not_found");
}

#[actix_rt::test]
async fn missing_malformed_forged_and_expired_tokens_get_401() {
    let app = spawn_app().await;
    let body = crate::helpers::recipe_body("x", 1);

    let no_token = app.post("/api/v1/recipes", None, &body).await;
    no_token.assert_problem(401, "unauthorized");
    assert!(no_token.headers.contains_key("www-authenticate"));

    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt", "token"] {
        let resp = app
            .client
            .post(app.url("/api/v1/recipes"))
            .header("authorization", header)
            .json(&body)
            .send()
            .await
            .unwrap();
        read(resp).await.assert_problem(401, "unauthorized");
    }

    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64| json!({"sub": uuid::Uuid::now_v7(), "kind": "user", "name": "Mallory", "iss": "simmer", "iat": now, "exp": exp});
    let sign = |claims: &serde_json::Value, secret: &[u8]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let forged = sign(
        &claims(now + 600),
        b"not-the-server-secret-not-the-server-secret",
    );
    app.post("/api/v1/recipes", Some(&forged), &body)
        .await
        .assert_problem(401, "unauthorized");
    let expired = sign(&claims(now - 3600), TEST_JWT_SECRET.as_bytes());
    let reply = app.post("/api/v1/recipes", Some(&expired), &body).await;
    reply.assert_problem(401, "unauthorized");
    assert!(reply.body["detail"].as_str().unwrap().contains("expired"));
    let mut unsigned = claims(now + 600);
    unsigned["kind"] = json!("admin");
    let odd_kind = sign(&unsigned, TEST_JWT_SECRET.as_bytes());
    app.post("/api/v1/recipes", Some(&odd_kind), &body)
        .await
        .assert_problem(401, "unauthorized");
}

#[actix_rt::test]
async fn unsupported_methods_get_405_with_allow() {
    let app = spawn_app().await;
    let reply = app
        .request(Method::PATCH, "/api/v1/recipes", None, Some(&json!({})))
        .await;
    reply.assert_problem(405, "method_not_allowed");
    assert_eq!(reply.headers["allow"], "GET, POST");
    let id = uuid::Uuid::now_v7();
    let reply = app
        .request(
            Method::POST,
            &format!("/api/v1/recipes/{id}"),
            None,
            Some(&json!({})),
        )
        .await;
    reply.assert_problem(405, "method_not_allowed");
    assert_eq!(reply.headers["allow"], "GET, PUT, DELETE");
    let reply = app.request(Method::DELETE, "/healthz", None, None).await;
    reply.assert_problem(405, "method_not_allowed");
    // Unknown paths stay 404, whatever the method.
    app.request(Method::PATCH, "/api/v1/nothing/here", None, None)
        .await
        .assert_problem(404, "not_found");
}
