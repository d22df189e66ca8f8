//! The watch feed over real sockets: snapshot, timer frames, ticks on whole
//! seconds, clock-sync pings, alerts once (also across reconnects), bye on
//! revocation within a second, re-targeting, and the SSE fallback.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp, User};
use crate::ws_client::WsClient;

/// A live session on a recipe with these step durations.
async fn timed_session(app: &TestApp, host: &User, durations: &[Option<u32>]) -> Uuid {
    let steps: Vec<Value> = durations
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"text": format!("Step {i}"), "duration_s": d, "label": format!("s{i}")}))
        .collect();
    let recipe = app
        .post(
            "/api/v1/recipes",
            Some(&host.token),
            &json!({"title": "Timed", "steps": steps}),
        )
        .await;
    let session = app
        .post(
            "/api/v1/sessions",
            Some(&host.token),
            &json!({"recipe_id": recipe.body["id"], "title": "Timed live"}),
        )
        .await;
    let id: Uuid = session.body["id"].as_str().unwrap().parse().unwrap();
    app.post(
        &format!("/api/v1/sessions/{id}/start"),
        Some(&host.token),
        &json!({}),
    )
    .await;
    id
}

async fn control(app: &TestApp, host: &User, session: Uuid, body: Value) -> Value {
    let reply = app
        .post(
            &format!("/api/v1/sessions/{session}/timer"),
            Some(&host.token),
            &body,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// Reads frames until one of `kind`, checking every frame's size and clock.
async fn next_of(watch: &mut WsClient, kind: &str) -> Value {
    loop {
        let frame = watch.recv().await;
        let size = frame.to_string().len();
        assert!(size < 200, "{size} bytes: {frame}");
        assert!(frame["server_time_ms"].is_i64(), "{frame}");
        if frame["type"] == kind {
            return frame;
        }
    }
}

#[actix_rt::test]
async fn a_watch_follows_the_timer_with_ticks_on_whole_seconds() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = timed_session(&app, &host, &[Some(60), Some(30)]).await;
    let watch = app.pair_watch(&host, session, None).await;
    let mut feed = WsClient::connect_watch(&app.address, &watch.token, "").await;

    let snapshot = next_of(&mut feed, "snapshot").await;
    assert_eq!(snapshot["state"], "idle");
    assert_eq!(snapshot["step_index"], 0);
    assert_eq!(snapshot["step_count"], 2);
    assert_eq!(snapshot["step"]["label"], "s0");
    assert_eq!(snapshot["remaining_ms"], 60_000);
    let listed = app.get("/api/v1/watch/devices", Some(&host.token)).await;
    assert_eq!(listed.body["items"][0]["connected"], true);

    let started = control(&app, &host, session, json!({"action": "start"})).await;
    let timer = next_of(&mut feed, "timer").await;
    assert_eq!(timer["state"], "running");
    assert_eq!(timer["deadline_ms"], started["deadline_ms"]);
    let deadline = timer["deadline_ms"].as_i64().unwrap();

    // Ticks: on whole seconds of remaining time, with the absolute deadline.
    let mut seconds = Vec::new();
    for _ in 0..3 {
        let tick = next_of(&mut feed, "tick").await;
        assert_eq!(tick["deadline_ms"], deadline);
        let remaining = tick["remaining_ms"].as_i64().unwrap();
        let sent = tick["server_time_ms"].as_i64().unwrap();
        assert_eq!(remaining, deadline - sent);
        // On whole seconds (the bound is loose: tests share two cores with a
        // debug build; the benchmark measures the real spread).
        let off_whole = remaining
            .rem_euclid(1000)
            .min(1000 - remaining.rem_euclid(1000));
        assert!(
            off_whole <= 250,
            "tick {off_whole} ms off the whole second: {tick}"
        );
        seconds.push((remaining + 500) / 1000);
    }
    assert_eq!(seconds, vec![59, 58, 57]);

    // Clock sync.
    feed.send(json!({"type": "ping", "client_time_ms": 12345}))
        .await;
    let pong = next_of(&mut feed, "pong").await;
    assert_eq!(pong["client_time_ms"], 12345);

    // Changes arrive as timer frames.
    control(&app, &host, session, json!({"action": "pause"})).await;
    let paused = next_of(&mut feed, "timer").await;
    assert_eq!(paused["state"], "paused");
    assert!(paused.get("deadline_ms").is_none() || paused["deadline_ms"].is_null());
    assert!(
        feed.try_recv(Duration::from_millis(1_300)).await.is_none(),
        "no ticks while paused"
    );
}

#[actix_rt::test]
async fn a_battery_saving_watch_gets_changes_only() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = timed_session(&app, &host, &[Some(60)]).await;
    let watch = app.pair_watch(&host, session, Some(0)).await;
    let mut feed = WsClient::connect_watch(&app.address, &watch.token, "").await;
    next_of(&mut feed, "snapshot").await;
    control(&app, &host, session, json!({"action": "start"})).await;
    next_of(&mut feed, "timer").await;
    assert!(
        feed.try_recv(Duration::from_millis(2_300)).await.is_none(),
        "no ticks for tick_interval_s = 0"
    );
    // The query overrides it per connection: every second, or every other.
    let mut ticking = WsClient::connect_watch(&app.address, &watch.token, "tick=1").await;
    next_of(&mut ticking, "snapshot").await;
    next_of(&mut ticking, "tick").await;
    let mut every_other = WsClient::connect_watch(&app.address, &watch.token, "tick=2").await;
    next_of(&mut every_other, "snapshot").await;
    let mut seconds = Vec::new();
    for _ in 0..2 {
        let tick = next_of(&mut every_other, "tick").await;
        seconds.push((tick["remaining_ms"].as_i64().unwrap() + 500) / 1000);
    }
    assert!(seconds.iter().all(|s| s % 2 == 0), "{seconds:?}");
    assert_eq!(seconds[0] - seconds[1], 2, "{seconds:?}");
}

#[actix_rt::test]
async fn an_alert_is_sent_once_even_across_reconnects() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = timed_session(&app, &host, &[Some(1), Some(60)]).await;
    let watch = app.pair_watch(&host, session, Some(0)).await;
    let mut feed = WsClient::connect_watch(&app.address, &watch.token, "").await;
    next_of(&mut feed, "snapshot").await;
    control(&app, &host, session, json!({"action": "start"})).await;
    let alert = next_of(&mut feed, "alert").await;
    assert_eq!(alert["step_index"], 0);
    assert_eq!(alert["alert_seq"], 1);
    drop(feed);

    // Reconnecting while the step is still due: no second buzz.
    let mut again = WsClient::connect_watch(&app.address, &watch.token, "").await;
    let snapshot = next_of(&mut again, "snapshot").await;
    assert_eq!(snapshot["remaining_ms"], 0);
    assert!(again.try_recv(Duration::from_millis(500)).await.is_none());

    // A second watch that was not connected when it came due buzzes once on
    // connect, and not again after that.
    let late = app.pair_watch(&host, session, Some(0)).await;
    let mut late_feed = WsClient::connect_watch(&app.address, &late.token, "").await;
    next_of(&mut late_feed, "snapshot").await;
    let alert = next_of(&mut late_feed, "alert").await;
    assert_eq!(alert["alert_seq"], 1);
    drop(late_feed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late_again = WsClient::connect_watch(&app.address, &late.token, "").await;
    next_of(&mut late_again, "snapshot").await;
    assert!(late_again
        .try_recv(Duration::from_millis(500))
        .await
        .is_none());
}

#[actix_rt::test]
async fn revoking_a_watch_closes_its_feed_within_a_second() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = timed_session(&app, &host, &[Some(60)]).await;
    let watch = app.pair_watch(&host, session, None).await;
    let mut feed = WsClient::connect_watch(&app.address, &watch.token, "").await;
    next_of(&mut feed, "snapshot").await;
    let started = Instant::now();
    let reply = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/watch/devices/{}", watch.device_id),
            Some(&host.token),
            None,
        )
        .await;
    assert_eq!(reply.status, 204);
    let bye = next_of(&mut feed, "bye").await;
    assert_eq!(bye["reason"], "revoked");
    assert_eq!(feed.close_code().await, Some(1008));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[actix_rt::test]
async fn a_retargeted_watch_gets_the_other_session_at_once() {
    let app = spawn_app().await;
    let host = app.register().await;
    let first = timed_session(&app, &host, &[Some(60)]).await;
    let second = timed_session(&app, &host, &[Some(90), None]).await;
    let watch = app.pair_watch(&host, first, Some(0)).await;
    let mut feed = WsClient::connect_watch(&app.address, &watch.token, "").await;
    assert_eq!(next_of(&mut feed, "snapshot").await["remaining_ms"], 60_000);
    app.request(
        reqwest::Method::PUT,
        &format!("/api/v1/watch/devices/{}/session", watch.device_id),
        Some(&host.token),
        Some(&json!({"session_id": second})),
    )
    .await;
    let snapshot = next_of(&mut feed, "snapshot").await;
    assert_eq!(snapshot["remaining_ms"], 90_000);
    assert_eq!(snapshot["step_count"], 2);
    // It follows the new session, not the old one.
    control(&app, &host, first, json!({"action": "start"})).await;
    control(&app, &host, second, json!({"action": "start"})).await;
    let timer = next_of(&mut feed, "timer").await;
    assert_eq!(timer["step_count"], 2);
}

#[actix_rt::test]
async fn the_feed_says_bye_when_the_session_ends() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = timed_session(&app, &host, &[Some(60)]).await;
    let watch = app.pair_watch(&host, session, None).await;
    let mut feed = WsClient::connect_watch(&app.address, &watch.token, "").await;
    next_of(&mut feed, "snapshot").await;
    app.post(
        &format!("/api/v1/sessions/{session}/end"),
        Some(&host.token),
        &json!({}),
    )
    .await;
    let bye = next_of(&mut feed, "bye").await;
    assert_eq!(bye["reason"], "session_ended");
    assert_eq!(feed.close_code().await, Some(1000));
    // Reconnecting to an ended session: the last timer, then bye.
    let mut again = WsClient::connect_watch(&app.address, &watch.token, "").await;
    next_of(&mut again, "snapshot").await;
    assert_eq!(next_of(&mut again, "bye").await["reason"], "session_ended");
}

#[actix_rt::test]
async fn a_bad_token_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    for auth in [None, Some("not-a-device-token")] {
        let mut req = app.client.get(app.url("/watch/ws"));
        if let Some(token) = auth {
            req = req.bearer_auth(token);
        }
        let reply = crate::helpers::read(req.send().await.unwrap()).await;
        reply.assert_problem(401, "unauthorized");
    }
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let watch = app.pair_watch(&host, session, None).await;
    // A user's access token is not a device token.
    let reply = crate::helpers::read(
        app.client
            .get(app.url(&format!("/watch/events?token={}", host.token)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_problem(401, "unauthorized");
    let reply = crate::helpers::read(
        app.client
            .get(app.url(&format!("/watch/events?token={}&tick=99999", watch.token)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_problem(400, "invalid_query");
}

#[actix_rt::test]
async fn watches_without_websockets_follow_over_server_sent_events() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = timed_session(&app, &host, &[Some(60)]).await;
    let watch = app.pair_watch(&host, session, None).await;
    let resp = app
        .client
        .get(app.url(&format!("/watch/events?token={}", watch.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut resp = resp;
    let mut buffer = String::new();
    let mut frames: Vec<Value> = Vec::new();
    let mut started = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !frames.iter().any(|f| f["type"] == "tick") {
        assert!(Instant::now() < deadline, "no tick over SSE: {frames:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.strip_prefix("data: ") {
                frames.push(serde_json::from_str(data.trim()).unwrap());
            }
        }
        if !started && frames.iter().any(|f| f["type"] == "snapshot") {
            started = true;
            control(&app, &host, session, json!({"action": "start"})).await;
        }
    }
    let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(&kinds[..2], ["snapshot", "timer"], "{kinds:?}");
}
