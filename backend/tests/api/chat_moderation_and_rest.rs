//! Chat over REST (history, posting) and the host's moderation.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;
use crate::ws_client::WsClient;

#[actix_rt::test]
async fn rest_posts_reach_websocket_members_and_history_pages_newest_first() {
    let app = spawn_app().await;
    let host = app.register().await;
    let viewer = app.register().await;
    let session = app.live_session(&host).await;
    let mut h = WsClient::connect(&app.address, &host.token).await;
    h.join(&session.to_string(), None).await;

    let path = format!("/api/v1/sessions/{session}/messages");
    for i in 1..=5 {
        let posted = app
            .post(
                &path,
                Some(&viewer.token),
                &json!({"text": format!("m{i}"), "client_msg_id": format!("r{i}")}),
            )
            .await;
        assert_eq!(posted.status, 201, "{}", posted.body);
        assert_eq!(posted.body["seq"], i);
        assert_eq!(posted.body["author"]["role"], "viewer");
    }
    // Idempotent over REST too.
    let again = app
        .post(
            &path,
            Some(&viewer.token),
            &json!({"text": "m1", "client_msg_id": "r1"}),
        )
        .await;
    assert_eq!(again.body["seq"], 1);
    let (live, _) = h.recv_type("chat.message").await;
    assert_eq!(live["text"], "m1");

    let page = app
        .get(&format!("{path}?limit=2"), Some(&viewer.token))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let seqs: Vec<u64> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [5, 4]);
    assert_eq!(page.body["next_before_seq"], 4);
    let older = app
        .get(
            &format!("{path}?limit=10&before_seq=4"),
            Some(&viewer.token),
        )
        .await;
    let seqs: Vec<u64> = older.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2, 1]);
    assert_eq!(older.body["next_before_seq"], serde_json::Value::Null);

    app.get(&path, None)
        .await
        .assert_problem(401, "unauthorized");
    app.post(&path, Some(&viewer.token), &json!({"text": ""}))
        .await
        .assert_problem(422, "validation_failed");
}

#[actix_rt::test]
async fn the_host_deletes_a_message_for_everyone() {
    let app = spawn_app().await;
    let host = app.register().await;
    let viewer = app.register().await;
    let session = app.live_session(&host).await;
    let sid = session.to_string();
    let mut v = WsClient::connect(&app.address, &viewer.token).await;
    v.join(&sid, None).await;
    v.chat(&sid, "something rude", "rude").await;
    v.chat(&sid, "something nice", "nice").await;

    let path = format!("/api/v1/sessions/{session}/messages/1");
    app.request(Method::DELETE, &path, Some(&viewer.token), None)
        .await
        .assert_problem(403, "forbidden");
    let deleted = app
        .request(Method::DELETE, &path, Some(&host.token), None)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let (notice, _) = v.recv_type("chat.deleted").await;
    assert_eq!(notice["seq"], 1);
    assert_eq!(notice["session_id"], sid);
    app.request(
        Method::DELETE,
        &format!("/api/v1/sessions/{session}/messages/99"),
        Some(&host.token),
        None,
    )
    .await
    .assert_problem(404, "not_found");

    let history = app
        .get(
            &format!("/api/v1/sessions/{session}/messages"),
            Some(&host.token),
        )
        .await;
    let items = history.body["items"].as_array().unwrap();
    assert_eq!(items[1]["seq"], 1);
    assert_eq!(items[1]["deleted"], true);
    assert_eq!(items[1]["text"], "");
    assert_eq!(items[0]["text"], "something nice");

    // A late joiner replaying from the start sees the gap-free sequence with
    // the deleted text gone.
    let mut late = WsClient::connect(&app.address, &host.token).await;
    late.join(&sid, Some(0)).await;
    let (first, _) = late.recv_type("chat.message").await;
    assert_eq!(first["seq"], 1);
    assert_eq!(first["deleted"], true);
    assert_eq!(first["text"], "");
}

#[actix_rt::test]
async fn a_muted_user_cannot_post_until_the_mute_ends_even_after_a_restart() {
    let app = spawn_app().await;
    let host = app.register().await;
    let loud = app.register().await;
    let quiet = app.register().await;
    let session = app.live_session(&host).await;
    let sid = session.to_string();
    let mutes = format!("/api/v1/sessions/{session}/mutes");

    app.post(&mutes, Some(&loud.token), &json!({"user_id": quiet.id}))
        .await
        .assert_problem(403, "forbidden");
    app.post(&mutes, Some(&host.token), &json!({"user_id": host.id}))
        .await
        .assert_problem(422, "validation_failed");
    let muted = app
        .post(
            &mutes,
            Some(&host.token),
            &json!({"user_id": loud.id, "duration_s": 600}),
        )
        .await;
    assert_eq!(muted.status, 204, "{}", muted.body);

    let mut l = WsClient::connect(&app.address, &loud.token).await;
    l.join(&sid, None).await;
    let reply = l.chat(&sid, "LOUD", "l1").await;
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    app.post(
        &format!("/api/v1/sessions/{session}/messages"),
        Some(&loud.token),
        &json!({"text": "LOUD"}),
    )
    .await
    .assert_problem(403, "forbidden");
    let mut q = WsClient::connect(&app.address, &quiet.token).await;
    q.join(&sid, None).await;
    assert_eq!(q.chat(&sid, "hello", "q1").await["status"], "ok");

    // The mute is durable: it holds after the chat actor restarts.
    app.state
        .sessions
        .inject_fault(session, "chat", simmer::live::Fault::Stop)
        .await;
    let mut reply = l.chat(&sid, "LOUD", "l2").await;
    for _ in 0..50 {
        if reply["error"]["code"] != "unavailable" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        reply = l.chat(&sid, "LOUD", "l2").await;
    }
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
}
