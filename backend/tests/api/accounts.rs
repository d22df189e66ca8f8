//! Register, log in, `GET /me`, and the rules of usernames and passwords.

use serde_json::json;

use crate::helpers::{spawn_app, username};

#[actix_rt::test]
async fn register_login_and_me() {
    let app = spawn_app().await;
    let name = username();
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"username": name.to_uppercase(), "password": "s3cret-enough", "display_name": "  Anna  "}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["user"]["username"], name, "stored lower-case");
    assert_eq!(reply.body["user"]["display_name"], "Anna", "trimmed");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    assert!(reply.body["refresh_token"].as_str().unwrap().len() >= 40);
    assert!(reply.body["user"].get("password_hash").is_none());

    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"username": name, "password": "s3cret-enough"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.body["access_token"].as_str().unwrap();

    let me = app.get("/api/v1/me", Some(token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["username"], name);
    assert_eq!(me.body["id"], reply.body["user"]["id"]);
}

#[actix_rt::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = spawn_app().await;
    let user = app.register().await;
    let wrong = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"username": user.username, "password": "not the password"}),
        )
        .await;
    wrong.assert_problem(401, "invalid_credentials");
    let unknown = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"username": "nobody-here", "password": "not the password"}),
        )
        .await;
    unknown.assert_problem(401, "invalid_credentials");
    assert_eq!(wrong.body["detail"], unknown.body["detail"]);
}

#[actix_rt::test]
async fn usernames_are_unique_case_insensitively() {
    let app = spawn_app().await;
    let user = app.register().await;
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"username": user.username.to_uppercase(), "password": "another password"}),
        )
        .await;
    reply.assert_problem(409, "username_taken");
}

#[actix_rt::test]
async fn registration_rules_are_reported_together() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"username": "a b", "password": "short", "display_name": ""}),
        )
        .await;
    reply.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"username"), "{fields:?}");
    assert!(fields.contains(&"password"), "{fields:?}");
    assert!(fields.contains(&"display_name"), "{fields:?}");
}

#[actix_rt::test]
async fn me_needs_a_user_token() {
    let app = spawn_app().await;
    app.get("/api/v1/me", None)
        .await
        .assert_problem(401, "unauthorized");
    let host = app.register().await;
    let session = app.create_session(&host).await;
    let guest = app
        .post(
            &format!("/api/v1/sessions/{session}/guest-tokens"),
            None,
            &json!({"display_name": "Guest"}),
        )
        .await;
    let token = guest.body["access_token"].as_str().unwrap();
    app.get("/api/v1/me", Some(token))
        .await
        .assert_problem(403, "forbidden");
}

#[actix_rt::test]
async fn repeated_failed_logins_are_rate_limited() {
    let app = crate::helpers::spawn_app_with(|s| s.login_max_failures = 3).await;
    let user = app.register().await;
    let attempt = |password: &'static str| {
        let body = json!({"username": user.username, "password": password});
        let app = &app;
        async move { app.post("/api/v1/auth/login", None, &body).await }
    };
    for _ in 0..3 {
        attempt("wrong password")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let limited = attempt("wrong password").await;
    limited.assert_problem(429, "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);
    // Even the right password waits: the lockout protects the account.
    attempt("correct horse battery")
        .await
        .assert_problem(429, "rate_limited");
}
