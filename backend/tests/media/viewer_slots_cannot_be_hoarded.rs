//! No one client can keep real viewers out of a room: an answered WHEP
//! offer that never connects gives its slot back after
//! `media_connect_timeout_s`, and each viewer and each client address hold
//! a bounded number of a room's slots (more: 429 with `Retry-After`).

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{spawn_app_with, TestApp, User};
use crate::peers::{self, whep};
use crate::{live, media_stats};

async fn subscribers_gauge(app: &TestApp) -> String {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("simmer_media_subscribers "))
        .unwrap_or_default()
        .to_owned()
}

#[actix_rt::test]
async fn offers_that_never_connect_give_their_slots_back() {
    // The ICE timeout is long, so only the connect timeout can free a slot
    // within this test.
    let app = spawn_app_with(|s| {
        s.media.max_subscribers = 2;
        s.media.ice_timeout = Duration::from_secs(60);
        s.media.viewer_limits.connect_timeout = Duration::from_secs(2);
    })
    .await;
    let (host, session) = live(&app).await;
    let squatter = app.register().await;

    // Offers of a real peer that is gone before the answer comes: they are
    // answered, and then never connect.
    for _ in 0..2 {
        let offer = peers::sample_offer().await;
        let reply = whep(&app, &squatter.token, session, &offer).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    whep(&app, &host.token, session, &peers::sample_offer().await)
        .await
        .assert_problem(503, "room_full");
    assert_eq!(media_stats(&app, &host, session).await["subscribers"], 2);

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = media_stats(&app, &host, session).await;
        let gauge = subscribers_gauge(&app).await;
        if stats["subscribers"] == 0 && gauge == "simmer_media_subscribers 0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slots still held: {stats}; {gauge}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A real viewer gets in now, and keeps its slot past the connect
    // timeout because it connected.
    let viewer = peers::play(&app, &host.token, session).await;
    viewer.wait_connected().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!viewer.closed_by_server());
    assert_eq!(media_stats(&app, &host, session).await["subscribers"], 1);
    viewer.close().await;
}

async fn guest(app: &TestApp, session: Uuid) -> String {
    let reply = app
        .post(
            &format!("/api/v1/sessions/{session}/guest-tokens"),
            None,
            &json!({"display_name": "Guest"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn a_viewer_and_an_address_hold_a_bounded_number_of_slots() {
    let app = spawn_app_with(|s| {
        s.media.viewer_limits.per_viewer = 2;
        s.media.viewer_limits.per_address = 4;
        s.media.viewer_limits.connect_timeout = Duration::from_secs(60);
    })
    .await;
    let (_host, session) = live(&app).await;
    let offer = peers::sample_offer().await;

    // A guest is a viewer like any other.
    let guest = guest(&app, session).await;
    for _ in 0..2 {
        assert_eq!(whep(&app, &guest, session, &offer).await.status, 201);
    }
    let refused = whep(&app, &guest, session, &offer).await;
    refused.assert_problem(429, "rate_limited");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After: {retry}");

    // Every test client is at 127.0.0.1: two more viewers fill the
    // address's four slots, the next one is refused though it has none.
    let users: Vec<User> = vec![
        app.register().await,
        app.register().await,
        app.register().await,
    ];
    for user in &users[..2] {
        assert_eq!(whep(&app, &user.token, session, &offer).await.status, 201);
    }
    whep(&app, &users[2].token, session, &offer)
        .await
        .assert_problem(429, "rate_limited");
    assert_eq!(subscribers_gauge(&app).await, "simmer_media_subscribers 4");
}
