//! The SDK's reference watch client against the real server: it pairs the
//! way a watch does, syncs its skewed clock over a delayed link, and shows
//! the server's countdown to within 50 ms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mobile_bridge::watch_client::{request_pairing, WatchClient, WatchConfig};
use serde_json::json;
use watch_sync::WatchFrame;

use crate::helpers::spawn_app;

fn real_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[actix_rt::test]
async fn a_skewed_watch_shows_the_servers_countdown() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    app.post(
        &format!("/api/v1/sessions/{session}/timer"),
        Some(&host.token),
        &json!({"action": "start"}),
    )
    .await;

    let http = reqwest::Client::new();
    let pairing = request_pairing(&http, &app.address, "Wrist", Some(1))
        .await
        .unwrap();
    assert_eq!(pairing.code.len(), 6);
    let claim = app
        .post(
            "/api/v1/watch/pairings/claim",
            Some(&host.token),
            &json!({"code": pairing.code, "session_id": session}),
        )
        .await;
    assert_eq!(claim.status, 200, "{}", claim.body);
    let device = pairing
        .wait_claimed(&http, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(device.session_id, session);

    for skew_ms in [-5_000, 5_000] {
        let mut config = WatchConfig::new(&app.address, &device.token);
        config.skew_ms = skew_ms;
        config.link_delay = Duration::from_millis(20);
        let mut watch = WatchClient::connect(config).await.unwrap();
        let sample = watch.sync_clock(8).await.unwrap();
        assert!(
            (sample.offset_ms + skew_ms).abs() < 20,
            "offset {} for skew {skew_ms}",
            sample.offset_ms
        );
        let mut ticks = 0;
        while ticks < 2 {
            let frame = tokio::time::timeout(Duration::from_secs(5), watch.next_frame())
                .await
                .unwrap()
                .unwrap();
            if let WatchFrame::Tick { deadline_ms, .. } = frame {
                let shown = watch.displayed_remaining_ms().unwrap();
                let truth = deadline_ms - real_now_ms();
                assert!(
                    (shown - truth).abs() <= 50,
                    "shows {shown} ms, server {truth} ms (skew {skew_ms})"
                );
                ticks += 1;
            }
        }
    }
}
