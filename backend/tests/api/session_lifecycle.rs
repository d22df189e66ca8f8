//! Sessions: scheduled -> live -> ended, enforced; hosts only; guests.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn a_session_goes_scheduled_live_ended() {
    let app = spawn_app().await;
    let host = app.register().await;
    let recipe = app.create_recipe(&host, 3).await;
    let created = app
        .post(
            "/api/v1/sessions",
            Some(&host.token),
            &json!({"recipe_id": recipe, "title": "Soup night"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["state"], "scheduled");
    assert_eq!(created.body["host"]["id"], host.id.to_string());
    assert_eq!(created.body["recipe"]["id"], recipe.to_string());
    assert_eq!(created.body["recipe"]["steps"].as_array().unwrap().len(), 3);
    assert_eq!(created.body["viewer_count"], 0);
    assert_eq!(created.body["allow_guests"], true);
    let timer = &created.body["timer"];
    assert_eq!(timer["state"], "idle");
    assert_eq!(timer["step_index"], 0);
    assert_eq!(timer["step_count"], 3);
    assert_eq!(timer["step"]["text"], "Step 0");
    assert_eq!(timer["deadline_ms"], serde_json::Value::Null);
    assert_eq!(timer["remaining_ms"], 60_000);
    assert!(timer["server_time_ms"].as_i64().unwrap() > 1_700_000_000_000);

    // Ending a scheduled session is a conflict.
    app.post(
        &format!("/api/v1/sessions/{id}/end"),
        Some(&host.token),
        &json!({}),
    )
    .await
    .assert_problem(409, "conflict");

    let live = app
        .post(
            &format!("/api/v1/sessions/{id}/start"),
            Some(&host.token),
            &json!({}),
        )
        .await;
    assert_eq!(live.status, 200, "{}", live.body);
    assert_eq!(live.body["state"], "live");
    assert!(live.body["started_at"].is_string());
    assert_eq!(app.state.sessions.live_count(), 1);

    let got = app.get(&format!("/api/v1/sessions/{id}"), None).await;
    assert_eq!(got.body["state"], "live");
    assert_eq!(got.body["viewer_count"], 0);
    assert_eq!(got.body["timer"]["state"], "idle");

    // Starting twice is a conflict.
    app.post(
        &format!("/api/v1/sessions/{id}/start"),
        Some(&host.token),
        &json!({}),
    )
    .await
    .assert_problem(409, "conflict");

    let ended = app
        .post(
            &format!("/api/v1/sessions/{id}/end"),
            Some(&host.token),
            &json!({}),
        )
        .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(ended.body["state"], "ended");
    assert!(ended.body["ended_at"].is_string());
    assert_eq!(app.state.sessions.live_count(), 0);

    for action in ["start", "end"] {
        app.post(
            &format!("/api/v1/sessions/{id}/{action}"),
            Some(&host.token),
            &json!({}),
        )
        .await
        .assert_problem(409, "conflict");
    }
}

#[actix_rt::test]
async fn only_the_host_starts_and_ends() {
    let app = spawn_app().await;
    let host = app.register().await;
    let other = app.register().await;
    let id = app.create_session(&host).await;
    app.post(
        &format!("/api/v1/sessions/{id}/start"),
        Some(&other.token),
        &json!({}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(&format!("/api/v1/sessions/{id}/start"), None, &json!({}))
        .await
        .assert_problem(401, "unauthorized");
    let missing = uuid::Uuid::now_v7();
    app.post(
        &format!("/api/v1/sessions/{missing}/start"),
        Some(&host.token),
        &json!({}),
    )
    .await
    .assert_problem(404, "not_found");
}

#[actix_rt::test]
async fn racing_starts_let_exactly_one_win() {
    let app = spawn_app().await;
    let host = app.register().await;
    let id = app.create_session(&host).await;
    let path = format!("/api/v1/sessions/{id}/start");
    let empty = json!({});
    let (a, b) = tokio::join!(
        app.post(&path, Some(&host.token), &empty),
        app.post(&path, Some(&host.token), &empty)
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
}

#[actix_rt::test]
async fn listing_filters_by_state_and_pages() {
    let app = spawn_app().await;
    let host = app.register().await;
    let scheduled = app.create_session(&host).await;
    let live_a = app.live_session(&host).await;
    let live_b = app.live_session(&host).await;

    let live = app.get("/api/v1/sessions?state=live", None).await;
    assert_eq!(live.status, 200, "{}", live.body);
    let ids: Vec<&str> = live.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [live_b.to_string(), live_a.to_string()]);
    for item in live.body["items"].as_array().unwrap() {
        assert_eq!(item["state"], "live");
        assert_eq!(item["viewer_count"], 0);
        assert_eq!(item["timer"]["state"], "idle");
        assert_eq!(item["host"]["username"], host.username);
    }

    let first = app.get("/api/v1/sessions?limit=2", None).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("/api/v1/sessions?limit=2&cursor={cursor}"), None)
        .await;
    assert_eq!(second.body["items"][0]["id"], scheduled.to_string());
    assert_eq!(second.body["next_cursor"], serde_json::Value::Null);

    app.get("/api/v1/sessions?state=cooking", None)
        .await
        .assert_problem(400, "invalid_query");
}

#[actix_rt::test]
async fn a_session_keeps_its_recipe_when_the_recipe_is_deleted() {
    let app = spawn_app().await;
    let host = app.register().await;
    let recipe = app.create_recipe(&host, 2).await;
    let created = app
        .post(
            "/api/v1/sessions",
            Some(&host.token),
            &json!({"recipe_id": recipe, "title": "Soup"}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap();
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/api/v1/recipes/{recipe}"),
            Some(&host.token),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    let started = app
        .post(
            &format!("/api/v1/sessions/{id}/start"),
            Some(&host.token),
            &json!({}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!(started.body["recipe"]["id"], serde_json::Value::Null);
    assert_eq!(started.body["recipe"]["steps"].as_array().unwrap().len(), 2);

    let missing = uuid::Uuid::now_v7();
    app.post(
        "/api/v1/sessions",
        Some(&host.token),
        &json!({"recipe_id": missing, "title": "Nothing"}),
    )
    .await
    .assert_problem(404, "not_found");
}

#[actix_rt::test]
async fn guest_tokens_are_viewer_only_and_bound_to_one_session() {
    let app = spawn_app().await;
    let host = app.register().await;
    let id = app.live_session(&host).await;
    let reply = app
        .post(
            &format!("/api/v1/sessions/{id}/guest-tokens"),
            None,
            &json!({"display_name": "Hungry"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["session_id"], id.to_string());
    assert_eq!(reply.body["expires_in"], 4 * 3600);
    let guest = reply.body["access_token"].as_str().unwrap();

    // A guest can view, but not act as a user.
    let got = app
        .get(&format!("/api/v1/sessions/{id}"), Some(guest))
        .await;
    assert_eq!(got.status, 200);
    app.post(
        "/api/v1/recipes",
        Some(guest),
        &crate::helpers::recipe_body("x", 1),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(
        &format!("/api/v1/sessions/{id}/end"),
        Some(guest),
        &json!({}),
    )
    .await
    .assert_problem(403, "forbidden");

    // The claims say which session.
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        guest,
        &jsonwebtoken::DecodingKey::from_secret(crate::helpers::TEST_JWT_SECRET.as_bytes()),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .unwrap()
    .claims;
    assert_eq!(claims["kind"], "guest");
    assert_eq!(claims["sid"], id.to_string());
    assert_eq!(claims["name"], "Hungry");

    // Sessions may refuse guests; ended sessions take no new guests.
    let recipe = app.create_recipe(&host, 1).await;
    let closed = app
        .post(
            "/api/v1/sessions",
            Some(&host.token),
            &json!({"recipe_id": recipe, "title": "Members only", "allow_guests": false}),
        )
        .await;
    let closed_id = closed.body["id"].as_str().unwrap();
    app.post(
        &format!("/api/v1/sessions/{closed_id}/guest-tokens"),
        None,
        &json!({"display_name": "Hungry"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(
        &format!("/api/v1/sessions/{id}/end"),
        Some(&host.token),
        &json!({}),
    )
    .await;
    app.post(
        &format!("/api/v1/sessions/{id}/guest-tokens"),
        None,
        &json!({"display_name": "Late"}),
    )
    .await
    .assert_problem(409, "conflict");
    app.post(
        &format!("/api/v1/sessions/{closed_id}/guest-tokens"),
        None,
        &json!({"display_name": ""}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

#[actix_rt::test]
async fn the_timer_endpoint_shows_the_timer_object() {
    let app = spawn_app().await;
    let host = app.register().await;
    let id = app.live_session(&host).await;
    let timer = app.get(&format!("/api/v1/sessions/{id}/timer"), None).await;
    assert_eq!(timer.status, 200, "{}", timer.body);
    for field in [
        "state",
        "step_index",
        "step_count",
        "step",
        "deadline_ms",
        "remaining_ms",
        "server_time_ms",
    ] {
        assert!(
            timer.body.get(field).is_some(),
            "timer lacks {field}: {}",
            timer.body
        );
    }
    assert_eq!(timer.body["step"]["label"], "s0");
    assert_eq!(timer.body["step"]["duration_s"], 60);
}
