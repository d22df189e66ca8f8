//! One device token holds at most `watch_max_feeds_per_device` feeds (2 by
//! default): a new one replaces the oldest, which gets `bye {reason:
//! "replaced"}` and is closed (1008); the others keep working.

use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;
use crate::ws_client::WsClient;

/// Whether the feed still answers a clock-sync `ping`.
async fn answers(feed: &mut WsClient) -> bool {
    feed.send(json!({"type": "ping", "client_time_ms": 1}))
        .await;
    while let Some(frame) = feed.try_recv(Duration::from_secs(5)).await {
        if frame["type"] == "pong" {
            return true;
        }
    }
    false
}

#[actix_rt::test]
async fn a_third_feed_replaces_the_oldest() {
    let app = spawn_app().await;
    assert_eq!(app.state.settings.watch_max_feeds_per_device, 2);
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let watch = app.pair_watch(&host, session, None).await;

    let mut feeds = Vec::new();
    for _ in 0..3 {
        let mut feed = WsClient::connect_watch(&app.address, &watch.token, "").await;
        assert_eq!(feed.recv().await["type"], "snapshot");
        feeds.push(feed);
    }
    let mut first = feeds.remove(0);
    let (bye, _) = first.recv_type("bye").await;
    assert_eq!(bye["reason"], "replaced", "{bye}");
    assert_eq!(first.close_code().await, Some(1008));
    for feed in &mut feeds {
        assert!(answers(feed).await, "a newer feed was closed too");
    }

    // The SSE feed counts the same way: it replaces the oldest WebSocket.
    let sse = app
        .client
        .get(app.url("/watch/events"))
        .bearer_auth(&watch.token)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let (bye, _) = feeds[0].recv_type("bye").await;
    assert_eq!(bye["reason"], "replaced", "{bye}");
    assert!(answers(&mut feeds[1]).await);
}
