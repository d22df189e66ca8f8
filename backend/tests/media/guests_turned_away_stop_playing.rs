//! A host who turns guests off mid-session ends their video too: a guest's
//! WHEP connection is closed by the server, members keep playing, and the
//! guest's token gets no new playback.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::spawn_app;
use crate::peers::{self, sample_offer};
use crate::{live, media_stats};

#[actix_rt::test]
async fn guests_turned_away_stop_playing_and_members_carry_on() {
    let app = spawn_app().await;
    let (host, session) = live(&app).await;
    let member = app.register().await;
    let guest = app
        .post(
            &format!("/api/v1/sessions/{session}/guest-tokens"),
            None,
            &json!({"display_name": "Guest"}),
        )
        .await;
    assert_eq!(guest.status, 201, "{}", guest.body);
    let guest_token = guest.body["access_token"].as_str().unwrap().to_owned();

    let publisher = peers::publish(&app, &host.token, session).await;
    publisher.wait_connected().await.unwrap();
    let sending = publisher.send_for(Duration::from_secs(6));
    let guest_viewer = peers::play(&app, &guest_token, session).await;
    let member_viewer = peers::play(&app, &member.token, session).await;
    guest_viewer.wait_connected().await.unwrap();
    member_viewer.wait_connected().await.unwrap();
    assert_eq!(media_stats(&app, &host, session).await["subscribers"], 2);

    let changed = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/sessions/{session}"),
            Some(&host.token),
            Some(&json!({"allow_guests": false})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !guest_viewer.closed_by_server() {
        assert!(Instant::now() < deadline, "the guest still plays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!member_viewer.closed_by_server());
    assert_eq!(media_stats(&app, &host, session).await["subscribers"], 1);

    // No new playback on the guest's token.
    let refused = app
        .client
        .post(app.url(&format!("/whep/{session}")))
        .bearer_auth(&guest_token)
        .header("content-type", "application/sdp")
        .body(sample_offer().await)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );

    sending.await.unwrap();
    let (video, _) = member_viewer.received();
    assert!(video > 0, "the member kept receiving video");
    publisher.close().await;
    guest_viewer.close().await;
    member_viewer.close().await;
}
