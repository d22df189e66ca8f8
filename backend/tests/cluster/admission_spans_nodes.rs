//! The chat holds new sends back while the session's fan-out is behind on
//! any node, not only on the node that runs the session: in a cluster, most
//! of a session's members are on the other nodes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::Cluster;
use crate::ws_client::WsClient;

/// Posts a chat message through `address`; its status and body.
async fn post(client: &reqwest::Client, address: &str, token: &str, sid: &str) -> (u16, Value) {
    let reply = client
        .post(format!("{address}/api/v1/sessions/{sid}/messages"))
        .bearer_auth(token)
        .json(&json!({"text": "y".repeat(1000)}))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_crowd_behind_on_another_node_holds_new_chat_back() {
    // Small kernel send buffers: a member that reads nothing backs up soon.
    let cluster = Cluster::start_with(2, &[("SIMMER_WS_SEND_BUFFER_BYTES", "4096")]).await;
    let host = cluster.rest(0).register().await;
    let session = cluster.rest(0).live_session(&host).await;
    let sid = session.to_string();
    let owner = cluster
        .owner(0, &host, session, Duration::from_secs(5))
        .await;
    let other = 1 - owner;

    // A crowd (simmer::bus::CROWD members) on the other node that
    // reads nothing; nobody is a member on the owner's node.
    let crowd_user = cluster.rest(other).register().await;
    let mut crowd = Vec::new();
    for _ in 0..simmer::bus::CROWD {
        let mut ws = WsClient::connect(&cluster.node(other).address, &crowd_user).await;
        assert_eq!(ws.join(&sid, None).await["status"], "ok");
        crowd.push(ws);
    }

    // A viewer sends through the owner: accepted until the crowd's sockets
    // back up and the owner hears of it from the other node.
    let client = reqwest::Client::new();
    let sender = cluster.rest(owner).register().await;
    let owner_address = cluster.node(owner).address.clone();
    let mut accepted = 0;
    let refused = loop {
        let (status, body) = post(&client, &owner_address, &sender, &sid).await;
        if status != 201 {
            break (status, body);
        }
        accepted += 1;
        assert!(accepted < 3_000, "never refused");
    };
    assert_eq!(refused.0, 429, "{}", refused.1);
    assert!(
        refused.1["detail"]
            .as_str()
            .is_some_and(|d| d.contains("busier")),
        "{}",
        refused.1
    );
    assert!(accepted > 0, "the crowd kept up at first");
    // The host is heard all the same.
    let (status, body) = post(&client, &owner_address, &host, &sid).await;
    assert_eq!(status, 201, "{body}");

    // The crowd leaves: the other node tells the owner, sends go through.
    drop(crowd);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = post(&client, &owner_address, &sender, &sid).await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(Instant::now() < deadline, "still refused: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
