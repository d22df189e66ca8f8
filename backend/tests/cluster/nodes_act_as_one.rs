//! Three nodes act as one: a session runs on the node it went live on, and
//! clients on every node chat with it, follow it and drive its timer, each
//! getting every message once, in order.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::Cluster;
use crate::ws_client::WsClient;

/// The `seq`s of the `chat.message` frames among `frames`.
pub fn chat_seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "chat.message")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect()
}

/// Reads `chat.message` frames until `last` has come; their `seq`s after
/// `seen` (those read already).
pub async fn seqs_until(ws: &mut WsClient, seen: Vec<u64>, last: u64) -> Vec<u64> {
    let mut seqs = seen;
    while seqs.last() != Some(&last) {
        // What came so far shows in the failed assertion.
        let Some(frame) = ws.try_recv(Duration::from_secs(10)).await else {
            break;
        };
        if frame["type"] == "chat.message" {
            seqs.push(frame["seq"].as_u64().unwrap());
        }
    }
    seqs
}

#[tokio::test]
async fn chat_and_timer_work_from_any_node() {
    let cluster = Cluster::start(3).await;
    let host = cluster.rest(0).register().await;
    let session = cluster.rest(0).live_session(&host).await;
    let sid = session.to_string();
    assert_eq!(
        cluster
            .owner(1, &host, session, Duration::from_secs(5))
            .await,
        0
    );

    // Viewers on the two other nodes.
    let mut viewers = Vec::new();
    for node in [1, 2] {
        let token = cluster.rest(node).register().await;
        let mut ws = WsClient::connect(&cluster.node(node).address, &token).await;
        let joined = ws.join(&sid, None).await;
        assert_eq!(joined["status"], "ok", "{joined}");
        viewers.push(ws);
    }

    // The host posts through node 2: the owner (node 0) answers.
    let rest = cluster.rest(2);
    for n in 1..=20u64 {
        let stored = rest
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/sessions/{session}/messages"),
                Some(&host),
                Some(json!({"text": format!("step {n}"), "client_msg_id": format!("h{n}")})),
            )
            .await;
        assert_eq!(stored["seq"], n);
    }
    // A viewer sends over /ws on node 1 (the frames before its ack count).
    let (ack, before) = viewers[0]
        .request(json!({"type": "chat.send", "session_id": sid, "text": "looks great", "client_msg_id": "v1"}))
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(ack["body"]["seq"], 21);
    let mut seen = vec![chat_seqs(&before), Vec::new()];
    for (ws, seen) in viewers.iter_mut().zip(seen.drain(..)) {
        let seqs = seqs_until(ws, seen, 21).await;
        assert_eq!(seqs, (1..=21).collect::<Vec<_>>(), "each once, in order");
    }

    // The timer, driven through node 1, read through node 2.
    let started = cluster.start_timer(1, &host, session).await;
    assert_eq!(started["state"], "running");
    let read: Value = cluster.timer(2, session).await;
    assert_eq!(read["deadline_ms"], started["deadline_ms"]);

    // History is the same from every node.
    for node in 0..3 {
        let history = cluster
            .rest(node)
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{session}/messages?limit=50"),
                Some(&host),
                None,
            )
            .await;
        assert_eq!(history["items"].as_array().unwrap().len(), 21);
    }
    // The readiness of a cluster node names it.
    let ready = cluster
        .rest(1)
        .call(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(ready["node_id"], "n1");
}
