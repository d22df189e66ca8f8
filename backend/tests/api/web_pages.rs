//! The browser pages are served by `simmer` itself, from the binary.

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn pages_and_assets_are_served_from_the_binary() {
    let app = spawn_app().await;
    let id = uuid::Uuid::now_v7();
    for (path, marker) in [
        ("/", "dashboard.js"),
        ("/live", "live.js"),
        ("/watch", "watch.js"),
        (&*format!("/s/{id}"), "viewer.js"),
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(kind, "text/html; charset=utf-8", "{path}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(marker), "{path} loads {marker}");
    }

    let resp = app
        .client
        .get(app.url("/assets/js/api.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    // Revalidation: same bytes, no body.
    let again = app
        .client
        .get(app.url("/assets/js/api.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

#[actix_rt::test]
async fn unknown_assets_are_problem_json_not_files_from_disk() {
    let app = spawn_app().await;
    for path in [
        "/assets/js/nope.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/src/main.rs",
        "/assets/index.html",
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        let status = resp.status();
        let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(status, 404, "{path}");
        assert_eq!(kind, "application/problem+json", "{path}");
    }
}

#[actix_rt::test]
async fn pages_and_assets_cannot_be_framed_or_sniffed() {
    let app = spawn_app().await;
    let id = uuid::Uuid::now_v7();
    for path in [
        "/",
        "/live",
        "/watch",
        &*format!("/s/{id}"),
        "/assets/js/api.js",
        "/assets/css/simmer.css",
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let csp = header("content-security-policy");
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        for directive in [
            "frame-ancestors 'none'",
            "default-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(directives.contains(&directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
    // API answers, errors included, are never sniffed into another type.
    for path in ["/api/v1/sessions", "/api/v1/nope", "/healthz"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path}"
        );
    }
}
