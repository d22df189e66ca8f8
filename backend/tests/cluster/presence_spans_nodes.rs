//! Presence is one count for the whole cluster: viewers on every node are
//! counted once each, and the members of a node that dies disappear within
//! the lease TTL.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Cluster, LEASE_TTL_MS};
use crate::ws_client::WsClient;

/// Reads `presence` frames until one says `count` viewers (or gives up).
async fn until_count(ws: &mut WsClient, count: u64, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut frames = Vec::new();
    while Instant::now() < deadline {
        let Some(frame) = ws.try_recv(Duration::from_millis(200)).await else {
            continue;
        };
        if frame["type"] == "presence" {
            frames.push(frame.clone());
            if frame["viewer_count"] == count {
                return frames;
            }
        }
    }
    panic!("no presence frame with {count} viewers; got {frames:?}");
}

#[tokio::test]
async fn viewers_on_every_node_count_once_and_a_dead_node_leaves() {
    let mut cluster = Cluster::start(3).await;
    let host = cluster.rest(0).register().await;
    let session = cluster.rest(0).live_session(&host).await;
    let sid = session.to_string();
    let mut host_ws = WsClient::connect(&cluster.node(0).address, &host).await;
    assert_eq!(host_ws.join(&sid, None).await["status"], "ok");

    // One viewer on node 1 with two connections (one to node 2 as well),
    // and another viewer on node 2.
    let first = cluster.rest(1).register().await;
    let second = cluster.rest(2).register().await;
    let mut sockets = Vec::new();
    for (node, token) in [(1, &first), (2, &first), (2, &second)] {
        let mut ws = WsClient::connect(&cluster.node(node).address, token).await;
        assert_eq!(ws.join(&sid, None).await["status"], "ok");
        sockets.push(ws);
    }
    let seen = until_count(&mut host_ws, 2, Duration::from_secs(5)).await;
    let names: usize = seen
        .iter()
        // `joined` and `left` are left out of a frame when empty.
        .map(|f| f["joined"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(names, 3, "host and two viewers joined, each once: {seen:?}");
    assert!(
        seen.iter().all(|f| f.get("left").is_none()),
        "nobody left: {seen:?}"
    );
    let view = cluster
        .rest(1)
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/sessions/{session}"),
            None,
            None,
        )
        .await;
    assert_eq!(view["viewer_count"], 2, "any node tells the whole count");

    // Node 2 dies: the second viewer (only there) leaves; the first stays.
    cluster.signal(2, "KILL");
    drop(cluster.nodes[2].take());
    let frames = until_count(&mut host_ws, 1, Duration::from_millis(LEASE_TTL_MS + 2000)).await;
    let left = &frames.last().unwrap()["left"];
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
}
