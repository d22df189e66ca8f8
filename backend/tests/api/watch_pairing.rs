//! Pairing a watch: a code on the watch, claimed from the phone, a device
//! token collected by polling; codes expire, are single use, and guessing is
//! rate-limited. Users list, re-target and revoke their watches.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_with};

const ALPHABET: &str = "ACDEFGHJKMNPQRTUVWXY34679";

#[actix_rt::test]
async fn a_watch_pairs_with_a_code_and_collects_its_token() {
    let app = spawn_app().await;
    let user = app.register().await;
    let session = app.live_session(&user).await;

    // The watch asks (an empty body is fine) and shows the code.
    let resp = app
        .client
        .post(app.url("/api/v1/watch/pairings"))
        .send()
        .await
        .unwrap();
    let pairing = crate::helpers::read(resp).await;
    assert_eq!(pairing.status, 201, "{}", pairing.body);
    let code = pairing.body["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 6);
    assert!(code.chars().all(|c| ALPHABET.contains(c)), "{code}");
    assert!(pairing.body["poll_secret"].as_str().unwrap().len() >= 32);
    let polled = app.poll_pairing(&pairing.body).await;
    assert_eq!(polled.status, 200);
    assert_eq!(polled.body["status"], "pending");
    assert!(polled.body["device_token"].is_null());

    // The user types it loosely on the phone.
    let typed = format!("{}-{}", &code[..3], &code[3..]).to_lowercase();
    let claimed = app
        .post(
            "/api/v1/watch/pairings/claim",
            Some(&user.token),
            &json!({"code": typed, "session_id": session}),
        )
        .await;
    assert_eq!(claimed.status, 200, "{}", claimed.body);
    let device_id = claimed.body["device_id"].as_str().unwrap().to_owned();

    let polled = app.poll_pairing(&pairing.body).await;
    assert_eq!(polled.body["status"], "claimed");
    assert_eq!(polled.body["device_id"], device_id);
    assert_eq!(polled.body["session_id"], session.to_string());
    let first_token = polled.body["device_token"].as_str().unwrap().to_owned();

    // Single use.
    let again = app
        .post(
            "/api/v1/watch/pairings/claim",
            Some(&user.token),
            &json!({"code": code, "session_id": session}),
        )
        .await;
    again.assert_problem(409, "pairing_used");

    // A lost answer is harmless: polling again issues a new token, and only
    // the newest one works.
    let polled = app.poll_pairing(&pairing.body).await;
    let token = polled.body["device_token"].as_str().unwrap().to_owned();
    assert_ne!(token, first_token);
    let old = app
        .client
        .get(app.url("/watch/events"))
        .bearer_auth(&first_token)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);

    let list = app.get("/api/v1/watch/devices", Some(&user.token)).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], device_id);
    assert_eq!(items[0]["name"], "Watch");
    assert_eq!(items[0]["session_id"], session.to_string());
    assert_eq!(items[0]["tick_interval_s"], 1);
    assert_eq!(items[0]["connected"], false);
    // Someone else's list does not show it.
    let other = app.register().await;
    let theirs = app.get("/api/v1/watch/devices", Some(&other.token)).await;
    assert_eq!(theirs.body["items"].as_array().unwrap().len(), 0);
}

#[actix_rt::test]
async fn an_expired_code_gets_a_clear_error() {
    let app = spawn_app_with(|s| s.watch_pairing_ttl = Duration::from_secs(1)).await;
    let user = app.register().await;
    let session = app.live_session(&user).await;
    let pairing = app.post("/api/v1/watch/pairings", None, &json!({})).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let claimed = app
        .post(
            "/api/v1/watch/pairings/claim",
            Some(&user.token),
            &json!({"code": pairing.body["code"], "session_id": session}),
        )
        .await;
    claimed.assert_problem(410, "pairing_expired");
    let polled = app.poll_pairing(&pairing.body).await;
    assert_eq!(polled.body["status"], "expired");
}

#[actix_rt::test]
async fn bad_pairing_requests_get_clear_errors() {
    let app = spawn_app().await;
    let user = app.register().await;
    let session = app.live_session(&user).await;
    let pairing = app.post("/api/v1/watch/pairings", None, &json!({})).await;
    let code = pairing.body["code"].clone();
    let claim = |token: Option<String>, body: serde_json::Value| {
        let app = &app;
        async move {
            app.post("/api/v1/watch/pairings/claim", token.as_deref(), &body)
                .await
        }
    };
    let me = Some(user.token.clone());

    claim(me.clone(), json!({"code": "0OIL15", "session_id": session}))
        .await
        .assert_problem(422, "validation_failed");
    claim(me.clone(), json!({"code": "AAAAAA", "session_id": session}))
        .await
        .assert_problem(404, "not_found");
    claim(
        me.clone(),
        json!({"code": code, "session_id": Uuid::now_v7()}),
    )
    .await
    .assert_problem(404, "not_found");
    claim(me.clone(), json!({"code": code}))
        .await
        .assert_problem(400, "invalid_body");
    claim(None, json!({"code": code, "session_id": session}))
        .await
        .assert_problem(401, "unauthorized");
    let guest = app
        .post(
            &format!("/api/v1/sessions/{session}/guest-tokens"),
            None,
            &json!({"display_name": "guest"}),
        )
        .await;
    let guest_token = guest.body["access_token"].as_str().unwrap().to_owned();
    claim(
        Some(guest_token),
        json!({"code": code, "session_id": session}),
    )
    .await
    .assert_problem(403, "forbidden");
    let ended = app.live_session(&user).await;
    app.post(
        &format!("/api/v1/sessions/{ended}/end"),
        Some(&user.token),
        &json!({}),
    )
    .await;
    claim(me.clone(), json!({"code": code, "session_id": ended}))
        .await
        .assert_problem(409, "conflict");

    app.post(
        "/api/v1/watch/pairings",
        None,
        &json!({"tick_interval_s": 99999}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post("/api/v1/watch/pairings", None, &json!({"device_name": ""}))
        .await
        .assert_problem(422, "validation_failed");
    let resp = app
        .client
        .post(app.url("/api/v1/watch/pairings"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    crate::helpers::read(resp)
        .await
        .assert_problem(400, "invalid_body");

    let id = pairing.body["pairing_id"].as_str().unwrap();
    let no_secret = app.get(&format!("/api/v1/watch/pairings/{id}"), None).await;
    no_secret.assert_problem(401, "unauthorized");
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/watch/pairings/{id}")))
        .header("X-Poll-Secret", "guess")
        .send()
        .await
        .unwrap();
    crate::helpers::read(resp)
        .await
        .assert_problem(403, "forbidden");
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/watch/pairings/{}", Uuid::now_v7())))
        .header("X-Poll-Secret", "guess")
        .send()
        .await
        .unwrap();
    crate::helpers::read(resp)
        .await
        .assert_problem(404, "not_found");
}

#[actix_rt::test]
async fn code_guessing_is_rate_limited() {
    let app = spawn_app_with(|s| s.watch_claim_max_failures = 3).await;
    let user = app.register().await;
    let session = app.live_session(&user).await;
    let pairing = app.post("/api/v1/watch/pairings", None, &json!({})).await;
    for guess in ["AAAAAA", "CCCCCC", "DDDDDD"] {
        let reply = app
            .post(
                "/api/v1/watch/pairings/claim",
                Some(&user.token),
                &json!({"code": guess, "session_id": session}),
            )
            .await;
        reply.assert_problem(404, "not_found");
    }
    // Locked out, even with the right code.
    let reply = app
        .post(
            "/api/v1/watch/pairings/claim",
            Some(&user.token),
            &json!({"code": pairing.body["code"], "session_id": session}),
        )
        .await;
    reply.assert_problem(429, "rate_limited");
    assert!(reply.headers.contains_key("retry-after"));
    // The same address counts too: another user from here is locked out.
    let other = app.register().await;
    let reply = app
        .post(
            "/api/v1/watch/pairings/claim",
            Some(&other.token),
            &json!({"code": pairing.body["code"], "session_id": session}),
        )
        .await;
    reply.assert_problem(429, "rate_limited");
}

#[actix_rt::test]
async fn pairing_requests_per_address_are_limited() {
    let app = spawn_app_with(|s| s.watch_pairings_per_window = 2).await;
    for _ in 0..2 {
        let ok = app.post("/api/v1/watch/pairings", None, &json!({})).await;
        assert_eq!(ok.status, 201);
    }
    app.post("/api/v1/watch/pairings", None, &json!({}))
        .await
        .assert_problem(429, "rate_limited");
}

#[actix_rt::test]
async fn users_retarget_and_revoke_only_their_own_watches() {
    let app = spawn_app().await;
    let user = app.register().await;
    let first = app.live_session(&user).await;
    let second = app.create_session(&user).await;
    let watch = app.pair_watch(&user, first, None).await;
    let path = format!("/api/v1/watch/devices/{}", watch.device_id);

    let moved = app
        .request(
            reqwest::Method::PUT,
            &format!("{path}/session"),
            Some(&user.token),
            Some(&json!({"session_id": second})),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.body["session_id"], second.to_string());

    let stranger = app.register().await;
    let reply = app
        .request(
            reqwest::Method::PUT,
            &format!("{path}/session"),
            Some(&stranger.token),
            Some(&json!({"session_id": first})),
        )
        .await;
    reply.assert_problem(404, "not_found");
    let reply = app
        .request(reqwest::Method::DELETE, &path, Some(&stranger.token), None)
        .await;
    reply.assert_problem(404, "not_found");
    let reply = app
        .request(
            reqwest::Method::PUT,
            &format!("{path}/session"),
            Some(&user.token),
            Some(&json!({"session_id": Uuid::now_v7()})),
        )
        .await;
    reply.assert_problem(404, "not_found");

    let gone = app
        .request(reqwest::Method::DELETE, &path, Some(&user.token), None)
        .await;
    assert_eq!(gone.status, 204);
    let resp = app
        .client
        .get(app.url("/watch/events"))
        .bearer_auth(&watch.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a revoked token stops working");
    let list = app.get("/api/v1/watch/devices", Some(&user.token)).await;
    assert!(list.body["items"].as_array().unwrap().is_empty());
}
