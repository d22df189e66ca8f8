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

/// What generators refuse or clients must know: unique, meaningful
/// operation ids, a license identifier, and the headers that come with a
/// status (`Retry-After` on 429/503, `WWW-Authenticate` on 401, `Location`
/// on a created resource).
#[test]
fn the_spec_says_what_generated_clients_need() {
    let spec: serde_json::Value =
        serde_json::from_str(&simmer::api::openapi::json().unwrap()).unwrap();
    assert_eq!(spec["info"]["license"]["identifier"], "Apache-2.0");
    let components = &spec["components"]["responses"];
    let resolve = |response: &serde_json::Value| -> serde_json::Value {
        match response["$ref"].as_str() {
            Some(name) => components[name.rsplit('/').next().unwrap()].clone(),
            None => response.clone(),
        }
    };
    let mut ids = std::collections::HashSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} repeated");
            assert!(
                id.chars().next().unwrap().is_ascii_lowercase()
                    && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{method} {path}: operationId {id} is not camelCase"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                let headers = resolve(response)["headers"].clone();
                let wanted = match status.as_str() {
                    "429" | "503" => Some("Retry-After"),
                    "401" => Some("WWW-Authenticate"),
                    _ => None,
                };
                if let Some(header) = wanted {
                    assert!(
                        headers.get(header).is_some(),
                        "{method} {path} {status}: {header} undeclared"
                    );
                }
            }
        }
    }
    for path in [
        "/api/v1/recipes",
        "/api/v1/sessions",
        "/api/v1/watch/pairings",
    ] {
        assert!(
            spec["paths"][path]["post"]["responses"]["201"]["headers"]
                .get("Location")
                .is_some(),
            "POST {path} 201: Location undeclared"
        );
    }
    let sent_at = &spec["components"]["schemas"]["ChatMessage"]["properties"]["sent_at"];
    assert_eq!(sent_at["format"], "date-time");
    let publisher = &spec["components"]["schemas"]["PublisherState"];
    assert_eq!(
        publisher["enum"],
        serde_json::json!(["publishing", "connecting", "not_publishing"])
    );
    // The code's pattern names the alphabet codes are drawn from.
    let pattern = spec["components"]["schemas"]["ClaimRequest"]["properties"]["code"]["pattern"]
        .as_str()
        .unwrap();
    for c in simmer::store::watch::CODE_ALPHABET {
        let c = char::from(*c);
        assert!(
            pattern.contains(c) && pattern.contains(c.to_ascii_lowercase()),
            "{c} missing from {pattern}"
        );
    }
    // What each timer action carries is in the schema.
    let timer = spec["components"]["schemas"]["TimerRequest"]["oneOf"]
        .as_array()
        .unwrap();
    assert_eq!(timer.len(), 8);
    let pairing = &spec["paths"]["/api/v1/watch/pairings"]["post"]["requestBody"];
    assert_ne!(pairing["required"], true, "the pairing body is optional");
}
