//! The served OpenAPI document is the committed one, and Swagger UI works
//! with no internet.

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn served_spec_matches_the_committed_one() {
    let app = spawn_app().await;
    let served = app.get("/api-docs/openapi.json", None).await;
    assert_eq!(served.status, 200);
    assert!(served.body["openapi"].as_str().unwrap().starts_with("3.1"));

    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(committed_path).expect("docs/openapi.json exists"),
    )
    .unwrap();
    assert!(
        served.body == committed,
        "docs/openapi.json is stale: run `cargo run -p backend -- openapi > docs/openapi.json`"
    );

    // Every contract path is documented.
    let paths = served.body["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/recipes",
        "/api/v1/recipes/{id}",
        "/api/v1/sessions",
        "/api/v1/sessions/{id}",
        "/api/v1/sessions/{id}/start",
        "/api/v1/sessions/{id}/end",
        "/api/v1/sessions/{id}/guest-tokens",
        "/api/v1/sessions/{id}/timer",
    ] {
        assert!(paths.contains_key(path), "{path} undocumented");
    }
    assert_eq!(
        served.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[actix_rt::test]
async fn swagger_ui_is_served_locally() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "Swagger UI must not load assets from a CDN"
    );
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
    let init = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert!(init
        .text()
        .await
        .unwrap()
        .contains("/api-docs/openapi.json"));
    let redirect = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(redirect.status(), 200, "redirected to /docs/");
}
