//! What a client may hold or try is bounded for the whole cluster, not per
//! node: connections per user, failed logins; and a watch follows its
//! session from any node, and is revoked from any node.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::Cluster;
use crate::ws_client::{Socket, WsClient};

/// Opens `/ws` on `address`; the HTTP status of a refused upgrade.
async fn open(address: &str, token: &str) -> Result<Socket, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/ws", address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn connections_per_user_are_counted_across_nodes() {
    let cluster = Cluster::start(3).await;
    let token = cluster.rest(0).register().await;
    // The default: 10 per user. Spread over the three nodes.
    let mut sockets = Vec::new();
    for n in 0..10 {
        sockets.push(open(&cluster.node(n % 3).address, &token).await.unwrap());
    }
    for node in 0..3 {
        let refused = open(&cluster.node(node).address, &token).await;
        assert_eq!(refused.err(), Some(429), "node {node}");
    }
    // One closes: a slot is free again, on any node.
    drop(sockets.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match open(&cluster.node(2).address, &token).await {
            Ok(ws) => {
                sockets.push(ws);
                break;
            }
            Err(429) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(status) => panic!("{status}"),
        }
    }
}

#[tokio::test]
async fn failed_logins_count_on_every_node() {
    let cluster = Cluster::start(3).await;
    let rest = cluster.rest(0);
    let username = crate::helpers::username();
    rest.call(
        reqwest::Method::POST,
        "/api/v1/auth/register",
        None,
        Some(json!({"username": username, "password": "correct horse battery"})),
    )
    .await;
    let wrong = json!({"username": username, "password": "wrong wrong wrong"});
    let mut statuses = Vec::new();
    // The default: 10 failures per (username, address), spread over nodes.
    for n in 0..11 {
        let node = cluster.rest(n % 3);
        let resp = node
            .client
            .post(format!("{}/api/v1/auth/login", node.address))
            .json(&wrong)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(statuses[10], 429, "the 11th try is refused on any node");
}

/// Reads watch frames until one of `kind`.
async fn next_of(feed: &mut WsClient, kind: &str) -> Value {
    loop {
        let frame = feed.recv().await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_watch_follows_and_is_revoked_from_any_node() {
    let cluster = Cluster::start(3).await;
    let host = cluster.rest(0).register().await;
    let session = cluster.rest(0).live_session(&host).await;
    let device_token = cluster.rest(1).pair_watch(&host, session).await;
    let mut feed = WsClient::connect_watch(&cluster.node(2).address, &device_token, "").await;
    let snapshot = next_of(&mut feed, "snapshot").await;
    assert_eq!(snapshot["state"], "idle");

    // The timer, started through node 1 on node 0, reaches the watch on 2.
    let started = cluster.start_timer(1, &host, session).await;
    let timer = next_of(&mut feed, "timer").await;
    assert_eq!(timer["deadline_ms"], started["deadline_ms"]);
    let tick = next_of(&mut feed, "tick").await;
    assert_eq!(tick["deadline_ms"], started["deadline_ms"]);

    // Revoked through node 0: the feed on node 2 says bye at once.
    let devices = cluster
        .rest(0)
        .call(
            reqwest::Method::GET,
            "/api/v1/watch/devices",
            Some(&host),
            None,
        )
        .await;
    let device = devices["items"][0]["id"].as_str().unwrap().to_owned();
    let revoked_at = Instant::now();
    let rest = cluster.rest(0);
    let resp = rest
        .client
        .delete(format!("{}/api/v1/watch/devices/{device}", rest.address))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let bye = next_of(&mut feed, "bye").await;
    assert_eq!(bye["reason"], "revoked");
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
}
