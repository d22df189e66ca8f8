//! Redis trouble: Redis restarted (empty) in the middle of a session, and one
//! node cut off from Redis while the others go on. No panic, no acknowledged
//! message lost or repeated, `/readyz` says why while it lasts, and the
//! cluster recovers by itself.

use std::time::Duration;

use crate::harness::{fresh_postgres, Cluster, Proxy, RedisServer, LEASE_TTL_MS};
use crate::nodes_act_as_one::seqs_until;
use crate::ws_client::WsClient;

#[tokio::test]
async fn redis_restarted_mid_session() {
    let mut redis = RedisServer::start().await;
    let cluster = Cluster::start_on(3, fresh_postgres().await, redis.url()).await;
    let host = cluster.rest(1).register().await;
    let session = cluster.rest(1).live_session(&host).await;
    let viewer = cluster.rest(2).register().await;
    let mut watching = WsClient::connect(&cluster.node(2).address, &viewer).await;
    assert_eq!(
        watching.join(&session.to_string(), None).await["status"],
        "ok"
    );
    let within = Duration::from_secs(20);
    for n in 1..=10 {
        assert_eq!(cluster.post_chat(0, &host, session, n, within).await, n);
    }

    redis.kill();
    let not_ready = cluster.ready(0, 503, Duration::from_secs(3)).await;
    let detail = not_ready["detail"].as_str().unwrap();
    assert!(detail.contains("redis"), "{detail}");
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        redis.restart().await;
        redis
    });
    // Sends during and after the outage: refused (503, retried) until the
    // cluster is back, never lost.
    for n in 11..=30 {
        assert_eq!(cluster.post_chat(0, &host, session, n, within).await, n);
    }
    let _redis = restart.await.unwrap();
    for node in 0..3 {
        cluster.ready(node, 200, Duration::from_secs(10)).await;
    }
    let expected: Vec<(u64, String)> = (1..=30).map(|n| (n, format!("m{n}"))).collect();
    assert_eq!(cluster.history(2, &host, session).await, expected);
    let seen = tokio::time::timeout(within, seqs_until(&mut watching, Vec::new(), 30))
        .await
        .unwrap();
    assert_eq!(
        seen,
        (1..=30).collect::<Vec<_>>(),
        "gaps filled from history"
    );
}

#[tokio::test]
async fn a_node_cut_off_from_redis_lets_its_sessions_go() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(&format!("127.0.0.1:{}", redis.port)).await;
    let urls = [proxy.url(""), redis.url(), redis.url()];
    let cluster = Cluster::start_each(fresh_postgres().await, &urls);
    let host = cluster.rest(0).register().await;
    let session = cluster.rest(0).live_session(&host).await;
    assert_eq!(
        cluster
            .owner(1, &host, session, Duration::from_secs(5))
            .await,
        0
    );
    let viewer = cluster.rest(2).register().await;
    let mut watching = WsClient::connect(&cluster.node(2).address, &viewer).await;
    assert_eq!(
        watching.join(&session.to_string(), None).await["status"],
        "ok"
    );
    let within = Duration::from_millis(LEASE_TTL_MS + 5000);
    for n in 1..=10 {
        assert_eq!(cluster.post_chat(1, &host, session, n, within).await, n);
    }

    proxy.cut();
    let not_ready = cluster.ready(0, 503, Duration::from_secs(3)).await;
    assert!(not_ready["detail"].as_str().unwrap().contains("redis"));
    // The others take the session over and go on.
    for n in 11..=20 {
        assert_eq!(cluster.post_chat(1, &host, session, n, within).await, n);
    }
    let owner = cluster.owner(1, &host, session, within).await;
    assert_ne!(owner, 0);
    assert!(cluster.node(0).stderr().contains("lost the session"));

    proxy.restore();
    cluster.ready(0, 200, Duration::from_secs(10)).await;
    for n in 21..=25 {
        assert_eq!(cluster.post_chat(0, &host, session, n, within).await, n);
    }
    let expected: Vec<(u64, String)> = (1..=25).map(|n| (n, format!("m{n}"))).collect();
    assert_eq!(cluster.history(2, &host, session).await, expected);
    let seen = tokio::time::timeout(within, seqs_until(&mut watching, Vec::new(), 25))
        .await
        .unwrap();
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
}
