//! On the embedded default (a SQLite file), a chat message acknowledged to
//! its sender is in the database, not in the process: after `kill -9`, a
//! process started again on the same directory has every acknowledged
//! message in the session's history, and numbers the next one after them
//! (no number handed out twice). The chat's batches are written on a
//! connection of the chat writer's own (`live::chat_writer`), beside the
//! pool the history is read through. (That the log was synced before the
//! ack, against a power cut, is SQLite's `synchronous` setting, which a
//! process kill cannot show.)

use std::time::Duration;

use crate::simmer_process::Simmer;
use crate::ws_client::WsClient;

const MESSAGES: u64 = 60;

#[actix_rt::test]
async fn every_acknowledged_message_is_there_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let env = crate::simmer_process::UNTHROTTLED_CHAT;
    let mut simmer = Simmer::start(dir.path(), &env);
    let rest = simmer.rest();
    let host = rest.register().await;
    let session = rest.live_session(&host).await;
    let mut sender = WsClient::connect(&simmer.address, &host).await;
    assert_eq!(
        sender.join(&session.to_string(), None).await["status"],
        "ok"
    );
    for n in 1..=MESSAGES {
        let ack = sender
            .chat(
                &session.to_string(),
                &format!("step {n}"),
                &format!("m-{n}"),
            )
            .await;
        assert_eq!(ack["status"], "ok", "{ack}");
        assert_eq!(ack["body"]["seq"], n, "{ack}");
    }

    simmer.signal("KILL");
    let (status, _) = simmer.wait_exit(Duration::from_secs(10)).await;
    assert!(!status.success(), "killed: {status:?}");

    let again = Simmer::start(dir.path(), &env);
    let rest = again.rest();
    let page = rest
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/sessions/{session}/messages?limit=100"),
            Some(&host),
            None,
        )
        .await;
    let items = page["items"].as_array().unwrap();
    let seqs: Vec<u64> = items.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (1..=MESSAGES).rev().collect();
    assert_eq!(seqs, expected, "newest first: {page}");
    for item in items {
        let seq = item["seq"].as_u64().unwrap();
        assert_eq!(item["text"], format!("step {seq}"));
    }

    let mut sender = WsClient::connect(&again.address, &host).await;
    assert_eq!(
        sender.join(&session.to_string(), None).await["status"],
        "ok"
    );
    let ack = sender.chat(&session.to_string(), "after", "m-after").await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(ack["body"]["seq"], MESSAGES + 1, "{ack}");
    // A resend of an acknowledged message is answered with the stored one,
    // not posted again.
    let resend = sender.chat(&session.to_string(), "step 1", "m-1").await;
    assert_eq!(resend["body"]["seq"], 1, "{resend}");
    assert!(!again.stderr().contains("panicked"), "{}", again.stderr());
}
