//! SIGSTOP of the owner past its lease: another node takes the session over;
//! when the paused node resumes it never writes the session again (its
//! actors stop, and the database refuses its fencing token), and its
//! clients' commands reach the new owner.

use std::time::Duration;

use crate::harness::{Cluster, LEASE_TTL_MS};

#[tokio::test]
async fn a_paused_owner_never_writes_after_it_lost_the_session() {
    let cluster = Cluster::start(3).await;
    let host = cluster.rest(0).register().await;
    let session = cluster.rest(0).live_session(&host).await;
    assert_eq!(
        cluster
            .owner(1, &host, session, Duration::from_secs(5))
            .await,
        0
    );
    let started = cluster.start_timer(1, &host, session).await;
    let within = Duration::from_millis(LEASE_TTL_MS + 5000);
    for n in 1..=10 {
        assert_eq!(cluster.post_chat(1, &host, session, n, within).await, n);
    }

    cluster.signal(0, "STOP");
    for n in 11..=20 {
        assert_eq!(cluster.post_chat(1, &host, session, n, within).await, n);
    }
    let owner = cluster.owner(2, &host, session, within).await;
    assert_ne!(owner, 0);

    cluster.signal(0, "CONT");
    // Its clients' writes go to the new owner, in sequence.
    for n in 21..=30 {
        assert_eq!(cluster.post_chat(0, &host, session, n, within).await, n);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let history = cluster.history(2, &host, session).await;
    let expected: Vec<(u64, String)> = (1..=30).map(|n| (n, format!("m{n}"))).collect();
    assert_eq!(
        history, expected,
        "every message once, nothing from the paused node"
    );
    assert!(
        cluster.node(0).stderr().contains("lost the session"),
        "the paused node let the session go"
    );
    let timer = cluster.timer(0, session).await;
    assert_eq!(timer["deadline_ms"], started["deadline_ms"]);
}
