//! `add_time` with seconds outside ±86,400 (down to `i64::MIN`, whose
//! absolute value overflows) is refused with 422 `timer_bad_seconds`, over
//! REST and `/ws`, and the timer keeps working.

use serde_json::json;

use crate::helpers::spawn_app;
use crate::ws_client::WsClient;

const OUT_OF_RANGE: [i64; 6] = [i64::MIN, i64::MIN + 1, -86_401, 86_401, i64::MAX, 0];

#[actix_rt::test]
async fn out_of_range_seconds_are_refused_over_rest() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let path = format!("/api/v1/sessions/{session}/timer");
    let started = app
        .post(&path, Some(&host.token), &json!({"action": "start"}))
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let deadline = started.body["deadline_ms"].as_i64().unwrap();

    for seconds in OUT_OF_RANGE {
        let reply = app
            .post(
                &path,
                Some(&host.token),
                &json!({"action": "add_time", "seconds": seconds}),
            )
            .await;
        reply.assert_problem(422, "timer_bad_seconds");
    }
    // The timer is untouched and still answers.
    let timer = app.get(&path, None).await;
    assert_eq!(timer.body["deadline_ms"], deadline, "{}", timer.body);
    let added = app
        .post(
            &path,
            Some(&host.token),
            &json!({"action": "add_time", "seconds": -86_400}),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.body["remaining_ms"], 0);
}

#[actix_rt::test]
async fn out_of_range_seconds_are_refused_over_ws() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.live_session(&host).await.to_string();
    let mut h = WsClient::connect(&app.address, &host.token).await;
    assert_eq!(h.join(&session, None).await["status"], "ok");
    let control = |action: &str, seconds: Option<i64>| {
        let mut frame = json!({"type": "timer.control", "session_id": session, "action": action});
        if let Some(seconds) = seconds {
            frame["seconds"] = json!(seconds);
        }
        frame
    };
    let (started, _) = h.request(control("start", None)).await;
    assert_eq!(started["status"], "ok", "{started}");

    for seconds in OUT_OF_RANGE {
        let (reply, _) = h.request(control("add_time", Some(seconds))).await;
        assert_eq!(reply["status"], "error", "{seconds}: {reply}");
        assert_eq!(reply["error"]["code"], "timer_bad_seconds", "{reply}");
    }
    let (added, _) = h.request(control("add_time", Some(30))).await;
    assert_eq!(added["status"], "ok", "{added}");
    assert_eq!(
        added["body"]["deadline_ms"].as_i64().unwrap(),
        started["body"]["deadline_ms"].as_i64().unwrap() + 30_000
    );
}
