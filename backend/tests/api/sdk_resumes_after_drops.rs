//! The Rust client SDK: acks as futures, an ordered event stream, and
//! automatic reconnect with resume that loses and repeats nothing.

use std::time::Duration;

use mobile_bridge::client::{Client, ClientConfig, Event};
use mobile_bridge::SessionId;

use crate::helpers::spawn_app_with;

#[actix_rt::test]
async fn dropped_connections_lose_and_repeat_nothing() {
    const N: u64 = 30;
    let app = spawn_app_with(|s| {
        s.chat_rate_per_s = 1e6;
        s.chat_burst = 1_000_000;
        s.chat_max_fanout_queue = 0;
    })
    .await;
    let host = app.register().await;
    let viewer = app.register().await;
    let session = SessionId(app.live_session(&host).await);
    let url = format!("{}/ws", app.address.replacen("http", "ws", 1));

    let (sender, _) = Client::connect(ClientConfig::new(&url, &host.token))
        .await
        .unwrap();
    let (reader, mut events) = Client::connect(ClientConfig::new(&url, &viewer.token))
        .await
        .unwrap();
    let snapshot = sender.join(session).await.unwrap();
    assert_eq!(snapshot.last_seq, 0);
    reader.join(session).await.unwrap();

    let mut acked = Vec::new();
    for i in 0..N {
        if i % 7 == 3 {
            reader.drop_connection().await;
        }
        if i % 11 == 5 {
            sender.drop_connection().await;
        }
        let ack = tokio::time::timeout(
            Duration::from_secs(20),
            sender.send_chat(session, format!("m{i}")),
        )
        .await
        .expect("ack in time")
        .unwrap();
        acked.push(ack.seq);
    }
    assert_eq!(acked, (1..=N).collect::<Vec<_>>());

    let mut seen = Vec::new();
    let mut reconnects = 0;
    while (seen.len() as u64) < N {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("events in time")
            .expect("client open");
        match event {
            Event::Chat(m) => {
                assert_eq!(m.text, format!("m{}", m.seq - 1));
                seen.push(m.seq);
            }
            Event::Reconnected => reconnects += 1,
            _ => {}
        }
    }
    assert_eq!(seen, (1..=N).collect::<Vec<_>>(), "in order, each once");
    assert!(reconnects >= 1, "the reader really reconnected");
    reader.close().await;
    sender.close().await;
}

#[actix_rt::test]
async fn server_errors_come_back_as_typed_errors() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.register().await;
    let url = format!("{}/ws", app.address.replacen("http", "ws", 1));
    let (client, _) = Client::connect(ClientConfig::new(&url, &user.token))
        .await
        .unwrap();
    let missing = SessionId(uuid::Uuid::now_v7());
    match client.join(missing).await {
        Err(mobile_bridge::client::ClientError::Server { code, .. }) => {
            assert_eq!(code, mobile_bridge::ErrorCode::NotFound)
        }
        other => panic!("{other:?}"),
    }
    // A refused handshake says why, with the server's code.
    match Client::connect(ClientConfig::new(&url, "bad-token")).await {
        Err(mobile_bridge::client::ClientError::Refused { status, code, .. }) => {
            assert_eq!(status, 401);
            assert_eq!(code, Some(mobile_bridge::ErrorCode::Unauthorized));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Nothing listening: a network failure, not a refusal.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("ws://{}/ws", closed.local_addr().unwrap());
    drop(closed);
    assert!(matches!(
        Client::connect(ClientConfig::new(&nowhere, &user.token)).await,
        Err(mobile_bridge::client::ClientError::Connect(_))
    ));
}
