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
