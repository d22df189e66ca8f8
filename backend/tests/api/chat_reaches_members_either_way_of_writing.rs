//! The fan-out writes a chat message to its members' sockets through
//! io_uring, many sockets in one system call, or one `sendmsg` at a time
//! (`SIMMER_WS_IO_URING=false`, as on a system without io_uring): members
//! get every message once, in order, either way. A process of its own for
//! each, since the setting is the process's.

use crate::simmer_process::Simmer;
use crate::ws_client::WsClient;

const MEMBERS: usize = 12;
const MESSAGES: u64 = 40;

async fn members_get_every_message_in_order(io_uring: &str) {
    let dir = tempfile::tempdir().unwrap();
    let [rate, burst] = crate::simmer_process::UNTHROTTLED_CHAT;
    let env = [("SIMMER_WS_IO_URING", io_uring), rate, burst];
    let simmer = Simmer::start(dir.path(), &env);
    let rest = simmer.rest();
    let host = rest.register().await;
    let session = rest.live_session(&host).await.to_string();
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        let token = rest.register().await;
        let mut ws = WsClient::connect(&simmer.address, &token).await;
        assert_eq!(ws.join(&session, None).await["status"], "ok");
        members.push(ws);
    }
    let mut sender = WsClient::connect(&simmer.address, &host).await;
    assert_eq!(sender.join(&session, None).await["status"], "ok");
    for n in 1..=MESSAGES {
        let ack = sender
            .chat(&session, &format!("step {n}"), &format!("m-{n}"))
            .await;
        assert_eq!(ack["status"], "ok", "{ack}");
    }
    for (m, member) in members.iter_mut().enumerate() {
        for n in 1..=MESSAGES {
            let (message, _) = member.recv_type("chat.message").await;
            assert_eq!(message["seq"], n, "member {m}, io_uring {io_uring}");
            assert_eq!(message["text"], format!("step {n}"));
        }
    }
    // Each worker that wrote said how (this machine has io_uring).
    let said = if io_uring == "true" {
        "fan-out writes through io_uring"
    } else {
        "fan-out writes one sendmsg per socket"
    };
    let line = simmer.wait_for(said);
    let stderr = simmer.stderr();
    if io_uring == "false" {
        assert_eq!(line["reason"], "SIMMER_WS_IO_URING=false", "{line}");
    } else {
        assert!(!stderr.contains("sendmsg per socket"), "stderr:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
}

#[actix_rt::test]
async fn through_io_uring() {
    members_get_every_message_in_order("true").await;
}

#[actix_rt::test]
async fn one_sendmsg_at_a_time() {
    members_get_every_message_in_order("false").await;
}
