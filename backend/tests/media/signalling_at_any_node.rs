//! In a cluster, WHIP and WHEP work at a node that does not own the
//! session: the offer is forwarded to the owner, whose media room answers;
//! the answer (with the owner's candidates) comes back through the node the
//! client asked, and the resource's `DELETE` works there too. Two nodes in
//! this process, on a PostgreSQL and a `redis-server` inside the test's
//! network namespace (`scripts/with-private-postgres.sh`).

use std::time::{Duration, Instant};

use simmer::config::Secret;

use crate::helpers::{boot, spawn_app_with, test_settings, TestApp};
use crate::peers;

/// A `redis-server` of this test's own on a free port, ended on drop.
struct Redis(std::process::Child, u16);

impl Redis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the other node sees the session's owner.
async fn settled(app: &TestApp, token: &str, session: uuid::Uuid) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = app
            .get(&format!("/api/v1/sessions/{session}/media"), Some(token))
            .await;
        if reply.status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn publisher_and_viewer_at_a_node_that_does_not_own_the_session() {
    assert_eq!(
        std::env::var("SIMMER_TEST_DATABASE").as_deref(),
        Ok("postgres"),
        "a cluster needs PostgreSQL (scripts/with-private-postgres.sh)"
    );
    let redis = Redis::start().await;
    let redis_url = format!("redis://127.0.0.1:{}", redis.1);
    let owner = spawn_app_with(|s| {
        s.redis_url = Some(Secret::new(redis_url.clone()));
        s.node_id = "owner".into();
    })
    .await;
    let mut settings = test_settings(&owner.data_dir, &owner.database_url);
    settings.redis_url = Some(Secret::new(redis_url));
    settings.node_id = "other".into();
    let other = boot(settings).await;

    let host = owner.register().await;
    let session = owner.live_session(&host).await;
    assert_eq!(owner.state.sessions.live_count(), 1, "it runs on the owner");
    assert_eq!(other.state.sessions.live_count(), 0);
    settled(&other, &host.token, session).await;

    // The host publishes through the other node, a viewer plays there too.
    let publisher = peers::publish(&other, &host.token, session).await;
    publisher.wait_connected().await.unwrap();
    let viewer_user = other.register().await;
    let viewer = peers::play(&other, &viewer_user.token, session).await;
    viewer.wait_connected().await.unwrap();
    publisher.send_for(Duration::from_secs(3)).await.unwrap();
    let (video, audio) = viewer.received();
    assert!(video > 20, "video packets received: {video}");
    assert!(audio > 20, "audio packets received: {audio}");
    assert!(viewer.sequence_is_continuous(), "gaps: {:?}", viewer.gaps());

    // The room's numbers, asked at the other node, are the owner's.
    let stats = other
        .get(
            &format!("/api/v1/sessions/{session}/media"),
            Some(&host.token),
        )
        .await;
    assert_eq!(stats.body["publisher"], "publishing", "{}", stats.body);
    assert_eq!(stats.body["subscribers"], 1);

    // The resource's DELETE works at the node that answered the offer.
    peers::unpublish(&other, &publisher, &host.token).await;
    let stats = owner
        .get(
            &format!("/api/v1/sessions/{session}/media"),
            Some(&host.token),
        )
        .await;
    assert_ne!(stats.body["publisher"], "publishing", "{}", stats.body);
    drop(redis);
}
