//! Password guessing is throttled per (username, address) and per address,
//! so that nobody can lock a host out from elsewhere; what the throttle
//! keeps is bounded whatever names clients send; unknown HTTP methods do not
//! become metric labels.

use reqwest::Method;
use serde_json::json;
use simmer::client_addr::TrustedProxies;

use crate::helpers::{read, spawn_app_with, Reply, TestApp};

/// Logs in as if from `from` (the test app trusts 127.0.0.1 as its proxy).
async fn login_from(app: &TestApp, from: &str, username: &str, password: &str) -> Reply {
    let resp = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("X-Forwarded-For", from)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    read(resp).await
}

#[actix_rt::test]
async fn an_attacker_cannot_lock_the_host_out_from_another_address() {
    let app = spawn_app_with(|s| {
        s.login_max_failures = 3;
        s.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    let host = app.register().await;
    let attacker = "203.0.113.9";
    for _ in 0..3 {
        login_from(&app, attacker, &host.username, "wrong password")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    login_from(&app, attacker, &host.username, "correct horse battery")
        .await
        .assert_problem(429, "rate_limited");
    // The host, from home, signs in as usual.
    let home = login_from(
        &app,
        "198.51.100.7",
        &host.username,
        "correct horse battery",
    )
    .await;
    assert_eq!(home.status, 200, "{}", home.body);
}

#[actix_rt::test]
async fn one_address_guessing_across_usernames_is_locked_out() {
    let app = spawn_app_with(|s| {
        s.login_max_failures = 3;
        s.login_max_failures_per_address = 6;
        s.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    let user = app.register().await;
    let attacker = "203.0.113.9";
    for i in 0..6 {
        login_from(&app, attacker, &format!("victim{i}"), "guess guess")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let limited = login_from(&app, attacker, &user.username, "correct horse battery").await;
    limited.assert_problem(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    // Other addresses are not affected.
    let other = login_from(
        &app,
        "198.51.100.7",
        &user.username,
        "correct horse battery",
    )
    .await;
    assert_eq!(other.status, 200, "{}", other.body);
}

#[actix_rt::test]
async fn forwarded_for_is_ignored_unless_the_proxy_is_trusted() {
    let app = spawn_app_with(|s| s.login_max_failures = 3).await;
    let host = app.register().await;
    // An attacker rotating X-Forwarded-For is still one address.
    for i in 0..3 {
        login_from(&app, &format!("203.0.113.{i}"), &host.username, "wrong")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    login_from(&app, "203.0.113.77", &host.username, "wrong")
        .await
        .assert_problem(429, "rate_limited");
}

#[actix_rt::test]
async fn huge_and_impossible_usernames_are_not_kept() {
    let app = spawn_app_with(|s| s.login_max_failures_per_address = 1_000).await;
    let huge = "x".repeat(200_000);
    for i in 0..20 {
        let reply = app
            .post(
                "/api/v1/auth/login",
                None,
                &json!({"username": format!("{huge}{i}"), "password": "whatever"}),
            )
            .await;
        reply.assert_problem(401, "invalid_credentials");
        app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": format!("no such name {i}"), "password": "whatever"}),
        )
        .await
        .assert_problem(401, "invalid_credentials");
    }
    // Only the address is counted: one entry, not forty (nor 4 MB of names).
    assert_eq!(app.state.throttles.logins.entries(), 1);
}

#[actix_rt::test]
async fn unknown_methods_share_one_metric_label() {
    let app = spawn_app_with(|_| {}).await;
    for method in ["FOOBAR", "X-MADE-UP-1", "X-MADE-UP-2"] {
        let reply = app
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                "/api/v1/recipes",
                None,
                None,
            )
            .await;
        assert!(reply.status.is_client_error(), "{method}: {}", reply.status);
    }
    let metrics = app.get("/metrics", None).await;
    let text = metrics.body.as_str().unwrap();
    assert!(!text.contains("FOOBAR"), "{text}");
    assert!(!text.contains("MADE-UP"), "{text}");
    assert!(text.contains("method=\"OTHER\""), "{text}");
}
