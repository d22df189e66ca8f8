//! A client that loses its node reconnects to another and resumes with
//! `last_seq`: it gets exactly the messages it missed, once, in order.

use std::time::Duration;

use crate::harness::Cluster;
use crate::nodes_act_as_one::seqs_until;
use crate::ws_client::WsClient;

#[tokio::test]
async fn resume_with_last_seq_works_on_another_node() {
    let cluster = Cluster::start(3).await;
    let host = cluster.rest(0).register().await;
    let session = cluster.rest(0).live_session(&host).await;
    let sid = session.to_string();
    let viewer = cluster.rest(1).register().await;
    let within = Duration::from_secs(10);

    let mut first = WsClient::connect(&cluster.node(1).address, &viewer).await;
    assert_eq!(first.join(&sid, None).await["status"], "ok");
    for n in 1..=5 {
        cluster.post_chat(0, &host, session, n, within).await;
    }
    assert_eq!(seqs_until(&mut first, Vec::new(), 5).await, [1, 2, 3, 4, 5]);
    drop(first);

    // Meanwhile the chat goes on.
    for n in 6..=12 {
        cluster.post_chat(2, &host, session, n, within).await;
    }
    let mut again = WsClient::connect(&cluster.node(2).address, &viewer).await;
    let (reply, before) = again
        .request(serde_json::json!({"type": "join", "session_id": sid, "last_seq": 5}))
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["body"]["last_seq"], 12);
    let replayed = crate::nodes_act_as_one::chat_seqs(&before);
    let all = seqs_until(&mut again, replayed, 12).await;
    assert_eq!(all, (6..=12).collect::<Vec<_>>(), "exactly the missed ones");
    cluster.post_chat(1, &host, session, 13, within).await;
    assert_eq!(seqs_until(&mut again, Vec::new(), 13).await, [13]);
}
