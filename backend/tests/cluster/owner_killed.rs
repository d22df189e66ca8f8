//! kill -9 of the node that runs a session, in the middle of a burst of chat
//! sends and with its timer running: another node takes the session over
//! within the lease TTL plus 2 s; every acknowledged message is in history
//! exactly once with no gap in `seq`, and reaches a viewer on a surviving node
//! once, in order; the timer's deadline is the same to the millisecond.

use std::time::{Duration, Instant};

use crate::harness::{Cluster, LEASE_TTL_MS};
use crate::nodes_act_as_one::seqs_until;
use crate::ws_client::WsClient;

const SENDS: u64 = 100;
const KILL_AFTER: u64 = 40;

#[tokio::test]
async fn the_session_moves_and_nothing_acknowledged_is_lost() {
    let mut cluster = Cluster::start(3).await;
    let host = cluster.rest(0).register().await;
    let session = cluster.rest(0).live_session(&host).await;
    let sid = session.to_string();
    assert_eq!(
        cluster
            .owner(1, &host, session, Duration::from_secs(5))
            .await,
        0
    );
    let started = cluster.start_timer(1, &host, session).await;
    let deadline = started["deadline_ms"].as_i64().unwrap();

    let viewer = cluster.rest(2).register().await;
    let mut watching = WsClient::connect(&cluster.node(2).address, &viewer).await;
    assert_eq!(watching.join(&sid, None).await["status"], "ok");
    let mut sender = WsClient::connect(&cluster.node(1).address, &host).await;
    assert_eq!(sender.join(&sid, None).await["status"], "ok");

    let mut acked = Vec::new();
    let mut killed_at = None;
    let mut takeover = None;
    let mut retries = 0;
    for n in 1..=SENDS {
        if n == KILL_AFTER {
            cluster.signal(0, "KILL");
            killed_at = Some(Instant::now());
        }
        loop {
            let reply = sender.chat(&sid, &format!("m{n}"), &format!("c{n}")).await;
            if reply["status"] == "ok" {
                acked.push((n, reply["body"]["seq"].as_u64().unwrap()));
                if let (Some(at), None) = (killed_at, takeover) {
                    takeover = Some(at.elapsed());
                }
                break;
            }
            assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
            retries += 1;
            assert!(retries < 2000, "the session never came back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let takeover = takeover.unwrap();
    assert!(
        takeover < Duration::from_millis(LEASE_TTL_MS + 2000),
        "take-over took {takeover:?}"
    );
    let new_owner = cluster
        .owner(1, &host, session, Duration::from_secs(5))
        .await;
    assert_ne!(new_owner, 0);

    // Every acknowledged message exactly once, no gap.
    let seqs: Vec<u64> = acked.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=SENDS).collect::<Vec<_>>(),
        "acks in order, no gap"
    );
    let stored = cluster.history(2, &host, session).await;
    let expected: Vec<(u64, String)> = acked
        .iter()
        .map(|(n, seq)| (*seq, format!("m{n}")))
        .collect();
    assert_eq!(stored, expected);

    // The viewer on a surviving node got each once, in order.
    let delivered = tokio::time::timeout(
        Duration::from_secs(20),
        seqs_until(&mut watching, Vec::new(), SENDS),
    )
    .await
    .expect("the viewer got every message");
    assert_eq!(delivered, (1..=SENDS).collect::<Vec<_>>());

    // The timer's deadline did not move.
    let timer = cluster.timer(2, session).await;
    assert_eq!(timer["state"], "running");
    assert_eq!(timer["deadline_ms"].as_i64().unwrap(), deadline);
    let remaining = timer["remaining_ms"].as_i64().unwrap();
    let truth = deadline - timer["server_time_ms"].as_i64().unwrap();
    assert!((remaining - truth).abs() <= 10, "{remaining} vs {truth}");

    // Counted once, as a session found without a holder.
    assert_eq!(cluster.takeovers(&[1, 2]).await, (0, 1));
    eprintln!("take-over after kill -9: {takeover:?}, {retries} retried sends");
    drop(cluster.nodes[0].take());
}
