//! CORS: pages on origins named in `SIMMER_CORS_ORIGINS` may call the REST
//! API and WHIP/WHEP (preflight answered, the headers clients read
//! exposed); other origins get no CORS headers (the browser withholds the
//! answer) but are not refused; with nothing configured there is no CORS
//! at all.

use reqwest::Method;
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const PLAYER: &str = "https://player.example.com";

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

#[actix_rt::test]
async fn an_allowed_origin_may_call_the_api_and_whip_whep() {
    let app = spawn_app_with(|s| {
        s.cors_origins =
            simmer::api::cors::CorsOrigins::parse(&format!("{PLAYER}, http://localhost:3000"))
                .unwrap();
    })
    .await;
    let session = Uuid::now_v7();
    for (path, method) in [
        ("/api/v1/sessions".to_owned(), "POST"),
        (format!("/api/v1/sessions/{session}/messages"), "POST"),
        (format!("/whep/{session}"), "POST"),
        (format!("/whip/{session}"), "POST"),
        (format!("/whep/{session}/{}", Uuid::now_v7()), "DELETE"),
    ] {
        let resp = preflight(&app, &path, PLAYER, method).await;
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        assert_eq!(
            header(&resp, "access-control-allow-origin"),
            Some(PLAYER),
            "{path}"
        );
        let methods = header(&resp, "access-control-allow-methods").unwrap();
        assert!(methods.contains(method), "{path}: {methods}");
        let headers = header(&resp, "access-control-allow-headers")
            .unwrap()
            .to_lowercase();
        assert!(
            headers.contains("authorization") && headers.contains("content-type"),
            "{path}: {headers}"
        );
        assert!(header(&resp, "access-control-max-age").is_some(), "{path}");
        assert!(header(&resp, "access-control-allow-credentials").is_none());
    }
    // The answer itself names the origin and exposes what clients read.
    let user = app.register().await;
    let resp = app
        .client
        .post(app.url("/api/v1/recipes"))
        .header("origin", PLAYER)
        .bearer_auth(&user.token)
        .json(&serde_json::json!({"title": "Soup", "steps": [{"text": "Boil"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(header(&resp, "access-control-allow-origin"), Some(PLAYER));
    let exposed = header(&resp, "access-control-expose-headers")
        .unwrap()
        .to_lowercase();
    for name in [
        "location",
        "link",
        "etag",
        "retry-after",
        "www-authenticate",
    ] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    // An origin not on the list: served, without CORS headers.
    let other = app
        .client
        .get(app.url("/api/v1/sessions"))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert!(header(&other, "access-control-allow-origin").is_none());
    let other = preflight(&app, "/api/v1/sessions", "https://evil.example.net", "POST").await;
    assert!(header(&other, "access-control-allow-origin").is_none());
}

#[actix_rt::test]
async fn without_configured_origins_there_is_no_cors() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/v1/sessions"))
        .header("origin", PLAYER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "access-control-allow-origin").is_none());
    let resp = preflight(&app, "/api/v1/sessions", PLAYER, "POST").await;
    assert!(header(&resp, "access-control-allow-origin").is_none());
    assert!(resp.status().is_client_error(), "{}", resp.status());
}

#[actix_rt::test]
async fn any_origin_with_a_star() {
    let app = spawn_app_with(|s| {
        s.cors_origins = simmer::api::cors::CorsOrigins::Any;
    })
    .await;
    let resp = preflight(
        &app,
        "/api/v1/sessions",
        "http://anywhere.test:8000",
        "POST",
    )
    .await;
    assert!(resp.status().is_success());
    assert_eq!(header(&resp, "access-control-allow-origin"), Some("*"));
}
