//! The host drives the recipe timer over REST and `/ws`; every member sees
//! each change; actions that do not apply are refused with a clear code.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp, User};
use crate::ws_client::WsClient;

async fn control(app: &TestApp, host: &User, session: Uuid, body: Value) -> crate::helpers::Reply {
    app.post(
        &format!("/api/v1/sessions/{session}/timer"),
        Some(&host.token),
        &body,
    )
    .await
}

/// A live session on a recipe with these step durations (`None`: manual).
async fn live_with_steps(
    app: &TestApp,
    host: &User,
    durations: &[Option<u32>],
    auto: bool,
) -> Uuid {
    let steps: Vec<Value> = durations
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"text": format!("Step {i}"), "duration_s": d}))
        .collect();
    let recipe = app
        .post(
            "/api/v1/recipes",
            Some(&host.token),
            &json!({"title": "Timed", "steps": steps}),
        )
        .await;
    assert_eq!(recipe.status, 201, "{}", recipe.body);
    let session = app
        .post(
            "/api/v1/sessions",
            Some(&host.token),
            &json!({"recipe_id": recipe.body["id"], "title": "Timed live", "auto_advance": auto}),
        )
        .await;
    assert_eq!(session.status, 201, "{}", session.body);
    assert_eq!(session.body["auto_advance"], auto);
    let id: Uuid = session.body["id"].as_str().unwrap().parse().unwrap();
    let started = app
        .post(
            &format!("/api/v1/sessions/{id}/start"),
            Some(&host.token),
            &json!({}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    id
}

#[actix_rt::test]
async fn the_host_drives_the_timer_over_rest_with_absolute_deadlines() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = live_with_steps(&app, &host, &[Some(60), None, Some(120)], false).await;

    let idle = app
        .get(&format!("/api/v1/sessions/{session}/timer"), None)
        .await;
    assert_eq!(idle.body["state"], "idle");
    assert_eq!(idle.body["remaining_ms"], 60_000);
    assert_eq!(idle.body["deadline_ms"], Value::Null);

    let started = control(&app, &host, session, json!({"action": "start"})).await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!(started.body["state"], "running");
    let deadline = started.body["deadline_ms"].as_i64().unwrap();
    let server_time = started.body["server_time_ms"].as_i64().unwrap();
    assert_eq!(deadline - server_time, 60_000);

    // Asked later, the same deadline, less time left.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = app
        .get(&format!("/api/v1/sessions/{session}/timer"), None)
        .await;
    assert_eq!(later.body["deadline_ms"], deadline);
    let t = later.body["server_time_ms"].as_i64().unwrap();
    assert_eq!(later.body["remaining_ms"].as_i64().unwrap(), deadline - t);
    // The session view carries the same timer.
    let view = app.get(&format!("/api/v1/sessions/{session}"), None).await;
    assert_eq!(view.body["timer"]["deadline_ms"], deadline);

    let paused = control(&app, &host, session, json!({"action": "pause"})).await;
    assert_eq!(paused.body["state"], "paused");
    let left = paused.body["remaining_ms"].as_i64().unwrap();
    assert!(left <= 60_000 && left > 50_000, "{left}");
    let resumed = control(&app, &host, session, json!({"action": "resume"})).await;
    assert_eq!(
        resumed.body["deadline_ms"].as_i64().unwrap()
            - resumed.body["server_time_ms"].as_i64().unwrap(),
        left
    );
    let more = control(
        &app,
        &host,
        session,
        json!({"action": "add_time", "seconds": 30}),
    )
    .await;
    assert_eq!(
        more.body["deadline_ms"].as_i64().unwrap(),
        resumed.body["deadline_ms"].as_i64().unwrap() + 30_000
    );

    let next = control(&app, &host, session, json!({"action": "next"})).await;
    assert_eq!(next.body["step_index"], 1);
    assert_eq!(next.body["state"], "running");
    assert_eq!(next.body["remaining_ms"], Value::Null, "a manual step");
    assert_eq!(next.body["step"]["text"], "Step 1");
    let goto = control(&app, &host, session, json!({"action": "goto", "step": 2})).await;
    assert_eq!(goto.body["step_index"], 2);
    assert_eq!(
        goto.body["deadline_ms"].as_i64().unwrap() - goto.body["server_time_ms"].as_i64().unwrap(),
        120_000
    );
    let done = control(&app, &host, session, json!({"action": "next"})).await;
    assert_eq!(done.body["state"], "finished");
    let back = control(&app, &host, session, json!({"action": "previous"})).await;
    assert_eq!(back.body["state"], "paused");
    let reset = control(&app, &host, session, json!({"action": "reset"})).await;
    assert_eq!(reset.body["state"], "idle");
    assert_eq!(reset.body["step_index"], 0);
}

#[actix_rt::test]
async fn actions_that_do_not_apply_get_409_with_a_code() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = live_with_steps(&app, &host, &[Some(60), None], false).await;

    let cases = [
        (json!({"action": "pause"}), 409, "timer_not_running"),
        (json!({"action": "resume"}), 409, "timer_not_paused"),
        (json!({"action": "previous"}), 409, "timer_first_step"),
        (
            json!({"action": "goto", "step": 7}),
            409,
            "timer_no_such_step",
        ),
        // What an action carries is required by the schema, like any field.
        (json!({"action": "goto"}), 400, "invalid_body"),
        (json!({"action": "add_time"}), 400, "invalid_body"),
        (
            json!({"action": "add_time", "seconds": 0}),
            422,
            "timer_bad_seconds",
        ),
        (
            json!({"action": "add_time", "seconds": 100000}),
            422,
            "timer_bad_seconds",
        ),
        (json!({"action": "explode"}), 400, "invalid_body"),
        (json!({"action": "goto", "step": -1}), 400, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let reply = control(&app, &host, session, body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        reply.assert_problem(status, code);
    }
    control(&app, &host, session, json!({"action": "goto", "step": 1})).await;
    control(&app, &host, session, json!({"action": "start"})).await;
    let manual = control(
        &app,
        &host,
        session,
        json!({"action": "add_time", "seconds": 5}),
    )
    .await;
    manual.assert_problem(409, "timer_manual_step");
    let again = control(&app, &host, session, json!({"action": "start"})).await;
    again.assert_problem(409, "timer_not_idle");

    // Only the host, only while live.
    let viewer = app.register().await;
    let reply = control(&app, &viewer, session, json!({"action": "next"})).await;
    reply.assert_problem(403, "forbidden");
    let anonymous = app
        .post(
            &format!("/api/v1/sessions/{session}/timer"),
            None,
            &json!({"action": "next"}),
        )
        .await;
    anonymous.assert_problem(401, "unauthorized");
    let scheduled = app.create_session(&host).await;
    let reply = control(&app, &host, scheduled, json!({"action": "start"})).await;
    reply.assert_problem(409, "conflict");
    let missing = control(&app, &host, Uuid::now_v7(), json!({"action": "start"})).await;
    missing.assert_problem(404, "not_found");
}

#[actix_rt::test]
async fn members_see_every_change_and_the_host_can_drive_over_the_websocket() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = live_with_steps(&app, &host, &[Some(60), Some(30)], false).await;
    let sid = session.to_string();
    let viewer = app.register().await;
    let mut watcher = WsClient::connect(&app.address, &viewer.token).await;
    let joined = watcher.join(&sid, None).await;
    assert_eq!(joined["body"]["timer"]["state"], "idle");
    let mut host_ws = WsClient::connect(&app.address, &host.token).await;
    host_ws.join(&sid, None).await;

    // REST change -> `timer` event.
    control(&app, &host, session, json!({"action": "start"})).await;
    let (event, _) = watcher.recv_type("timer").await;
    assert_eq!(event["session_id"], sid);
    assert_eq!(event["state"], "running");
    assert!(event["deadline_ms"].is_i64());

    // `timer.control` from the host: the reply carries the timer, members get the event.
    let (reply, _) = host_ws
        .request(json!({"type": "timer.control", "session_id": sid, "action": "next"}))
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["body"]["step_index"], 1);
    let (event, _) = watcher.recv_type("timer").await;
    assert_eq!(event["step_index"], 1);

    let (refused, _) = host_ws
        .request(json!({"type": "timer.control", "session_id": sid, "action": "resume"}))
        .await;
    assert_eq!(refused["status"], "error");
    assert_eq!(refused["error"]["code"], "timer_not_paused");
    let (bad, _) = host_ws
        .request(json!({"type": "timer.control", "session_id": sid, "action": "goto"}))
        .await;
    assert_eq!(bad["error"]["code"], "validation_failed");

    // A viewer may not drive it.
    let (forbidden, _) = watcher
        .request(json!({"type": "timer.control", "session_id": sid, "action": "pause"}))
        .await;
    assert_eq!(forbidden["error"]["code"], "forbidden");
    let (not_joined, _) = watcher
        .request(json!({"type": "timer.control", "session_id": Uuid::now_v7(), "action": "pause"}))
        .await;
    assert_eq!(not_joined["error"]["code"], "not_joined");
}

#[actix_rt::test]
async fn a_countdown_that_ends_moves_on_by_itself_with_auto_advance() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = live_with_steps(&app, &host, &[Some(1), Some(1), None], true).await;
    let viewer = app.register().await;
    let mut watcher = WsClient::connect(&app.address, &viewer.token).await;
    watcher.join(&session.to_string(), None).await;

    let started = control(&app, &host, session, json!({"action": "start"})).await;
    let first_deadline = started.body["deadline_ms"].as_i64().unwrap();
    watcher.recv_type("timer").await; // the start
    let (step1, _) = watcher.recv_type("timer").await;
    assert_eq!(step1["step_index"], 1);
    // The next deadline counts from the previous one: no drift.
    assert_eq!(
        step1["deadline_ms"].as_i64().unwrap(),
        first_deadline + 1_000
    );
    let (step2, _) = watcher.recv_type("timer").await;
    assert_eq!(step2["step_index"], 2);
    assert_eq!(step2["state"], "running");
    assert_eq!(step2["remaining_ms"], Value::Null);
    let now = app
        .get(&format!("/api/v1/sessions/{session}/timer"), None)
        .await;
    assert_eq!(now.body["step_index"], 2);
}

#[actix_rt::test]
async fn without_auto_advance_a_due_step_waits_for_the_host_at_zero() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = live_with_steps(&app, &host, &[Some(1), Some(60)], false).await;
    control(&app, &host, session, json!({"action": "start"})).await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let due = app
        .get(&format!("/api/v1/sessions/{session}/timer"), None)
        .await;
    assert_eq!(due.body["state"], "running");
    assert_eq!(due.body["step_index"], 0);
    assert_eq!(due.body["remaining_ms"], 0);
}

#[actix_rt::test]
async fn an_ended_session_keeps_its_timer_as_it_was_left() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = live_with_steps(&app, &host, &[Some(60), Some(60)], false).await;
    control(&app, &host, session, json!({"action": "start"})).await;
    control(&app, &host, session, json!({"action": "next"})).await;
    app.post(
        &format!("/api/v1/sessions/{session}/end"),
        Some(&host.token),
        &json!({}),
    )
    .await;
    let timer = app
        .get(&format!("/api/v1/sessions/{session}/timer"), None)
        .await;
    assert_eq!(timer.body["step_index"], 1);
    assert_eq!(
        timer.body["state"], "paused",
        "nothing counts down after the end"
    );
    assert_eq!(timer.body["deadline_ms"], Value::Null);
    let reply = control(&app, &host, session, json!({"action": "next"})).await;
    reply.assert_problem(409, "conflict");
}
