//! Recipes: create, read, replace, delete by the owner; paging; limits.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{recipe_body, spawn_app};

#[actix_rt::test]
async fn owner_creates_reads_replaces_and_deletes() {
    let app = spawn_app().await;
    let owner = app.register().await;
    let created = app
        .post(
            "/api/v1/recipes",
            Some(&owner.token),
            &recipe_body("Soup", 3),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["owner"]["id"], owner.id.to_string());
    let steps = created.body["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["index"], i);
    }
    assert_eq!(steps[1]["duration_s"], 120);
    assert_eq!(
        created.headers["location"].to_str().unwrap(),
        format!("/api/v1/recipes/{id}")
    );

    // Anyone can read it.
    let got = app.get(&format!("/api/v1/recipes/{id}"), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["title"], "Soup");

    let replaced = app
        .request(
            Method::PUT,
            &format!("/api/v1/recipes/{id}"),
            Some(&owner.token),
            Some(&json!({"title": "Stew", "steps": [{"text": "Simmer"}]})),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.body["title"], "Stew");
    assert_eq!(replaced.body["description"], serde_json::Value::Null);
    assert_eq!(
        replaced.body["steps"][0]["duration_s"],
        serde_json::Value::Null
    );
    assert_eq!(replaced.body["created_at"], created.body["created_at"]);

    let deleted = app
        .request(
            Method::DELETE,
            &format!("/api/v1/recipes/{id}"),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    app.get(&format!("/api/v1/recipes/{id}"), None)
        .await
        .assert_problem(404, "not_found");
}

#[actix_rt::test]
async fn only_the_owner_may_change_a_recipe() {
    let app = spawn_app().await;
    let owner = app.register().await;
    let other = app.register().await;
    let id = app.create_recipe(&owner, 2).await;
    app.request(
        Method::PUT,
        &format!("/api/v1/recipes/{id}"),
        Some(&other.token),
        Some(&recipe_body("Mine now", 1)),
    )
    .await
    .assert_problem(403, "forbidden");
    app.request(
        Method::DELETE,
        &format!("/api/v1/recipes/{id}"),
        Some(&other.token),
        None,
    )
    .await
    .assert_problem(403, "forbidden");
    app.request(Method::DELETE, &format!("/api/v1/recipes/{id}"), None, None)
        .await
        .assert_problem(401, "unauthorized");
    assert_eq!(
        app.get(&format!("/api/v1/recipes/{id}"), None).await.body["title"],
        "Soup"
    );
}

#[actix_rt::test]
async fn pages_cover_every_recipe_once_newest_first() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(app.create_recipe(&a, 1).await.to_string());
        app.create_recipe(&b, 1).await;
    }
    mine.reverse();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/recipes?mine=true&limit=2&cursor={c}"),
            None => "/api/v1/recipes?mine=true&limit=2".to_owned(),
        };
        let page = app.get(&path, Some(&a.token)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        pages += 1;
        for item in page.body["items"].as_array().unwrap() {
            assert_eq!(item["owner"]["id"], a.id.to_string());
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, mine);
    assert_eq!(pages, 3);

    let all = app.get("/api/v1/recipes?limit=100", None).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 10);
    assert_eq!(all.body["next_cursor"], serde_json::Value::Null);

    app.get("/api/v1/recipes?mine=true", None)
        .await
        .assert_problem(401, "unauthorized");
    app.get("/api/v1/recipes?limit=0", None)
        .await
        .assert_problem(400, "invalid_query");
    app.get("/api/v1/recipes?limit=101", None)
        .await
        .assert_problem(400, "invalid_query");
    app.get("/api/v1/recipes?cursor=bogus!", None)
        .await
        .assert_problem(400, "invalid_cursor");
}

#[actix_rt::test]
async fn recipe_limits_are_enforced() {
    let app = spawn_app().await;
    let user = app.register().await;
    let too_long_step = "x".repeat(2001);
    let cases = [
        (json!({"title": "", "steps": [{"text": "a"}]}), "title"),
        (
            json!({"title": "t".repeat(201), "steps": [{"text": "a"}]}),
            "title",
        ),
        (json!({"title": "ok", "steps": []}), "steps"),
        (recipe_body("ok", 101), "steps"),
        (
            json!({"title": "ok", "steps": [{"text": too_long_step}]}),
            "steps[0].text",
        ),
        (
            json!({"title": "ok", "steps": [{"text": "a", "duration_s": 0}]}),
            "steps[0].duration_s",
        ),
        (
            json!({"title": "ok", "steps": [{"text": "a", "duration_s": 86401}]}),
            "steps[0].duration_s",
        ),
        (
            json!({"title": "ok", "servings": 0, "steps": [{"text": "a"}]}),
            "servings",
        ),
    ];
    for (body, field) in cases {
        let reply = app.post("/api/v1/recipes", Some(&user.token), &body).await;
        reply.assert_problem(422, "validation_failed");
        let fields: Vec<&str> = reply.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{field} not in {fields:?}");
    }
    // The edges are allowed.
    let edge = json!({
        "title": "t".repeat(200),
        "steps": [{"text": "x".repeat(2000), "duration_s": 86400}, {"text": "y", "duration_s": 1}]
    });
    let reply = app.post("/api/v1/recipes", Some(&user.token), &edge).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let hundred = app
        .post(
            "/api/v1/recipes",
            Some(&user.token),
            &recipe_body("ok", 100),
        )
        .await;
    assert_eq!(hundred.status, 201, "{}", hundred.body);
}
