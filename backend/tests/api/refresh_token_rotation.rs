//! Refresh tokens rotate; a reused one revokes its whole family; logout
//! revokes too.

use serde_json::json;

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn refresh_rotates_and_the_old_token_stops_working() {
    let app = spawn_app().await;
    let user = app.register().await;

    let first = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let next = first.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(next, user.refresh_token);
    assert_eq!(first.body["user"]["id"], user.id.to_string());
    let me = app
        .get("/api/v1/me", first.body["access_token"].as_str())
        .await;
    assert_eq!(me.status, 200);

    // The old token is spent.
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": user.refresh_token}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
}

#[actix_rt::test]
async fn reusing_a_spent_token_revokes_the_family() {
    let app = spawn_app().await;
    let user = app.register().await;
    let rotated = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": user.refresh_token}),
        )
        .await;
    let current = rotated.body["refresh_token"].as_str().unwrap().to_owned();

    // An attacker replays the spent token...
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": user.refresh_token}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
    // ...so the legitimate current token is revoked as well.
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": current}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");

    // Another sign-in (another family) is unaffected.
    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"username": user.username, "password": "correct horse battery"}),
        )
        .await;
    let other = login.body["refresh_token"].as_str().unwrap();
    let ok = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": other}),
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[actix_rt::test]
async fn concurrent_refreshes_let_exactly_one_win() {
    let app = spawn_app().await;
    let user = app.register().await;
    let body = json!({"refresh_token": user.refresh_token});
    let (a, b) = tokio::join!(
        app.post("/api/v1/auth/refresh", None, &body),
        app.post("/api/v1/auth/refresh", None, &body)
    );
    let wins = [a.status, b.status].iter().filter(|s| **s == 200).count();
    assert!(wins <= 1, "both refreshes succeeded: {} {}", a.body, b.body);
}

#[actix_rt::test]
async fn logout_revokes_the_refresh_token() {
    let app = spawn_app().await;
    let user = app.register().await;
    let reply = app
        .post(
            "/api/v1/auth/logout",
            Some(&user.token),
            &json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(reply.status, 204);
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": user.refresh_token}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
    // Logging out needs a token.
    app.post("/api/v1/auth/logout", None, &json!({"refresh_token": "x"}))
        .await
        .assert_problem(401, "unauthorized");
}

#[actix_rt::test]
async fn garbage_refresh_tokens_are_rejected() {
    let app = spawn_app().await;
    for token in ["", "nope", &"x".repeat(5000)] {
        app.post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": token}),
        )
        .await
        .assert_problem(401, "invalid_refresh_token");
    }
}
