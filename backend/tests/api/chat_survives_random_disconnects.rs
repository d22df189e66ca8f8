//! The promise of the chat: whatever connections die, at whatever point,
//! every client ends with the same gap-free, duplicate-free sequence, and
//! every acknowledged message is in it exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app, TestApp, User};
use crate::ws_client::WsClient;

const SENDERS: usize = 3;
const READERS: usize = 3;
const PER_SENDER: usize = 40;
const TOTAL: u64 = (SENDERS * PER_SENDER) as u64;

/// A small deterministic generator (xorshift), one per task.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, one_in: u64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.is_multiple_of(one_in)
    }
}

async fn sender(app: &TestApp, user: User, session: String, n: usize) -> BTreeSet<String> {
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1));
    let mut acked = BTreeSet::new();
    let mut next = 0;
    while next < PER_SENDER {
        let mut ws = WsClient::connect(&app.address, &user.token).await;
        assert_eq!(ws.join(&session, None).await["status"], "ok");
        while next < PER_SENDER {
            let id = format!("s{n}-{next}");
            let frame = json!({"type": "chat.send", "session_id": session, "text": format!("message {id}"), "client_msg_id": id, "ref": next});
            ws.send(frame).await;
            if dice.roll(6) {
                // Die right after sending, before the ack: the next
                // connection resends the same client_msg_id.
                break;
            }
            let ack = loop {
                let f = ws.recv().await;
                if f["type"] == "reply" && f["ref"] == next {
                    break f;
                }
            };
            assert_eq!(ack["status"], "ok", "{ack}");
            acked.insert(id);
            next += 1;
            if dice.roll(9) {
                break; // die between messages
            }
        }
    }
    acked
}

async fn reader(app: &TestApp, user: User, session: String, n: usize) -> Vec<(u64, String)> {
    let mut dice = Dice(0xD1B5_4A32_D192_ED03 ^ (n as u64 + 7));
    let mut seen: Vec<(u64, String)> = Vec::new();
    while (seen.len() as u64) < TOTAL {
        let mut ws = WsClient::connect(&app.address, &user.token).await;
        let last = seen.last().map(|(s, _)| *s);
        let reply = ws.join(&session, Some(last.unwrap_or(0))).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        loop {
            let Some(frame) = ws.try_recv(Duration::from_secs(20)).await else {
                panic!("reader {n} stalled at {:?}", seen.last());
            };
            if frame["type"] != "chat.message" {
                continue;
            }
            let seq = frame["seq"].as_u64().unwrap();
            let expected = seen.last().map_or(1, |(s, _)| s + 1);
            assert_eq!(seq, expected, "reader {n}: gap or duplicate");
            seen.push((seq, frame["client_msg_id"].as_str().unwrap().to_owned()));
            if seen.len() as u64 == TOTAL || dice.roll(15) {
                break; // done, or die mid-stream
            }
        }
    }
    seen
}

#[actix_rt::test]
async fn every_client_ends_with_the_same_complete_sequence() {
    // Delivery is under test here, not the send rate.
    let app = crate::helpers::spawn_app_with(|s| {
        s.chat_rate_per_s = 1e6;
        s.chat_burst = 1_000_000;
        s.chat_max_fanout_queue = 0;
    })
    .await;
    let host = app.register().await;
    let session = app.live_session(&host).await.to_string();
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        senders.push(app.register().await);
    }
    let mut readers = Vec::new();
    for _ in 0..READERS {
        readers.push(app.register().await);
    }

    let sending = futures_util::future::join_all(
        senders
            .into_iter()
            .enumerate()
            .map(|(n, u)| sender(&app, u, session.clone(), n)),
    );
    let reading = futures_util::future::join_all(
        readers
            .into_iter()
            .enumerate()
            .map(|(n, u)| reader(&app, u, session.clone(), n)),
    );
    let (acked, seen) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(sending, reading)
    })
    .await
    .expect("chaos run finishes");

    let acked: BTreeSet<String> = acked.into_iter().flatten().collect();
    assert_eq!(acked.len() as u64, TOTAL);
    let first: BTreeMap<u64, String> = seen[0].iter().cloned().collect();
    for log in &seen {
        let log: BTreeMap<u64, String> = log.iter().cloned().collect();
        assert_eq!(log, first, "readers disagree");
    }
    let delivered: BTreeSet<String> = first.values().cloned().collect();
    assert_eq!(
        delivered.len() as u64,
        TOTAL,
        "a message was delivered twice"
    );
    assert_eq!(delivered, acked, "every acknowledged message, exactly once");
}

#[actix_rt::test]
async fn a_crashed_chat_actor_comes_back_without_gaps() {
    use simmer::live::Fault;
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let sid = session.to_string();
    let mut ws = WsClient::connect(&app.address, &host.token).await;
    ws.join(&sid, None).await;
    for i in 1..=3 {
        assert_eq!(
            ws.chat(&sid, "before", &format!("b{i}")).await["body"]["seq"],
            i
        );
    }
    for fault in [Fault::Panic, Fault::Stop] {
        assert!(
            app.state
                .sessions
                .inject_fault(session, "chat", fault)
                .await
        );
        // The next send may meet the restart; a retry with the same id is safe.
        let mut reply = ws.chat(&sid, "after", &format!("{fault:?}")).await;
        for _ in 0..50 {
            if reply["status"] == "ok" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            reply = ws.chat(&sid, "after", &format!("{fault:?}")).await;
        }
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    let last = ws.chat(&sid, "last", "z").await;
    assert_eq!(last["body"]["seq"], 6, "gap-free across both restarts");
    // An id sent before the crashes is still recognised.
    assert_eq!(ws.chat(&sid, "before", "b2").await["body"]["seq"], 2);
}
