//! The clients we ship follow a drain's hints, through a load balancer as in
//! production: the Rust SDK gets `reconnect {after_ms}`, comes back through
//! the same URL to a node that is ready and resumes from `last_seq` (every
//! message once, in order); the reference watch client gets `bye
//! {reason: "unavailable", after_ms}`, opens its feed again and shows the
//! same countdown, within 50 ms of the server's.

use std::time::{Duration, Instant};

use mobile_bridge::client::{Client, ClientConfig, Event};
use mobile_bridge::watch_client::{WatchClient, WatchConfig};
use mobile_bridge::SessionId;
use watch_sync::WatchFrame;

use crate::harness::{Balancer, Cluster};

const SENDS: u64 = 30;

#[tokio::test]
async fn the_sdk_and_the_watch_client_come_back_through_the_balancer() {
    let mut cluster = Cluster::start(2).await;
    let nodes: Vec<String> = (0..2)
        .map(|i| {
            cluster
                .node(i)
                .address
                .trim_start_matches("http://")
                .to_owned()
        })
        .collect();
    let balancer = Balancer::start(nodes).await;
    balancer.prefer(0);
    let host = cluster.rest(1).register().await;
    let session = cluster.rest(1).live_session(&host).await;
    let started = cluster.start_timer(1, &host, session).await;
    let deadline = started["deadline_ms"].as_i64().unwrap();
    let device = cluster.rest(1).pair_watch(&host, session).await;

    // Both clients land on node 0 (the balancer's first choice).
    let viewer = cluster.rest(1).register().await;
    let ws_url = format!("{}/ws", balancer.url().replacen("http", "ws", 1));
    let (sdk, mut events) = Client::connect(ClientConfig::new(ws_url, viewer))
        .await
        .unwrap();
    sdk.join(SessionId(session)).await.unwrap();
    let mut watch = WatchClient::connect(WatchConfig::new(&balancer.url(), &device))
        .await
        .unwrap();
    let first = watch.next_frame().await.unwrap();
    assert_eq!(first.kind(), "snapshot");

    // Chat goes on through node 1 while node 0 drains.
    let sender = tokio::spawn({
        let (rest, host) = (cluster.rest(1), host.clone());
        async move {
            let mut seqs = Vec::new();
            for n in 1..=SENDS {
                let url = format!("{}/api/v1/sessions/{session}/messages", rest.address);
                let body =
                    serde_json::json!({"text": format!("m{n}"), "client_msg_id": format!("c{n}")});
                loop {
                    let resp = rest
                        .client
                        .post(&url)
                        .bearer_auth(&host)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    if resp.status() == 201 {
                        let reply: serde_json::Value = resp.json().await.unwrap();
                        seqs.push(reply["seq"].as_u64().unwrap());
                        break;
                    }
                    assert_eq!(resp.status(), 503);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seqs
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    balancer.prefer(1);
    cluster.signal(0, "TERM");

    // The watch: `bye unavailable`, then a new feed and its snapshot.
    let resumed_at = Instant::now() + Duration::from_secs(20);
    let snapshot = loop {
        let left = resumed_at.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, watch.next_frame())
            .await
            .expect("the watch came back")
            .expect("the watch client follows the drain");
        if watch.reconnects() == 1 && frame.kind() == "snapshot" {
            break frame;
        }
    };
    let WatchFrame::Snapshot { timer, .. } = &snapshot else {
        unreachable!()
    };
    assert_eq!(timer.deadline_ms, Some(deadline));
    let shown = watch.displayed_remaining_ms().unwrap();
    let truth = deadline - chrono::Utc::now().timestamp_millis();
    assert!(
        (shown - truth).abs() <= 50,
        "shows {shown} ms, truth {truth} ms"
    );

    // The SDK: reconnected once, every message once and in order.
    let acked = sender.await.unwrap();
    assert_eq!(acked, (1..=SENDS).collect::<Vec<_>>());
    let mut seen = Vec::new();
    let mut reconnected = false;
    let until = Instant::now() + Duration::from_secs(20);
    while seen.last() != Some(&SENDS) {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(Event::Chat(m))) => seen.push(m.seq),
            Ok(Some(Event::Reconnected)) => reconnected = true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert!(reconnected, "the SDK reconnected");
    assert_eq!(seen, (1..=SENDS).collect::<Vec<_>>(), "each once, in order");
    let (status, _) = cluster.nodes[0]
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(20))
        .await;
    assert!(status.success());
    sdk.close().await;
}
