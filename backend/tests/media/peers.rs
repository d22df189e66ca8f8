//! The test kit's WebRTC peers (`simmer_testkit::peers`, shared with
//! `simmer-bench`), bound to a `TestApp` the way the tests use them: a
//! failure to set one up fails the test.

use uuid::Uuid;

pub use simmer_testkit::peers::{LossyLink, Publisher, Viewer, ViewerOptions};

use crate::helpers::{self, Reply, TestApp};

/// A host publishing VP8 to `session` on `app`.
pub async fn publish(app: &TestApp, token: &str, session: Uuid) -> Publisher {
    publish_at(&app.address, token, session).await
}

/// A host publishing VP8 to the server at `address` (from any runtime: the
/// signalling client is its own).
pub async fn publish_at(address: &str, token: &str, session: Uuid) -> Publisher {
    publish_codec(
        address,
        token,
        session,
        simmer_testkit::peers::MIME_TYPE_VP8,
    )
    .await
}

/// A host publishing video in the codec `mime_type` (e.g. `video/VP9`).
pub async fn publish_codec(
    address: &str,
    token: &str,
    session: Uuid,
    mime_type: &str,
) -> Publisher {
    Publisher::publish_codec(&reqwest::Client::new(), address, token, session, mime_type)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A viewer of `session` on `app`, a browser with a clean link.
pub async fn play(app: &TestApp, token: &str, session: Uuid) -> Viewer {
    play_behind(app, token, session, None).await
}

/// A viewer whose incoming video goes through `link` first.
pub async fn play_behind(
    app: &TestApp,
    token: &str,
    session: Uuid,
    link: Option<LossyLink>,
) -> Viewer {
    let options = ViewerOptions {
        link,
        ..ViewerOptions::default()
    };
    Viewer::play(
        &reqwest::Client::new(),
        &app.address,
        token,
        session,
        options,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Ends `publisher`'s publication on `app` (`DELETE`, 200 expected), as a
/// host's app does.
pub async fn unpublish(app: &TestApp, publisher: &Publisher, token: &str) {
    publisher
        .end(&app.client, token)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// An offer that the server would accept (for error tests).
pub async fn sample_offer() -> String {
    simmer_testkit::peers::sample_offer().await.unwrap()
}

/// Posts a WHIP offer for `session`; the reply, whatever it is.
pub async fn whip(app: &TestApp, token: &str, session: Uuid, offer: &str) -> Reply {
    post_offer(app, &format!("/whip/{session}"), token, offer).await
}

/// Posts a WHEP offer for `session`; the reply, whatever it is.
pub async fn whep(app: &TestApp, token: &str, session: Uuid, offer: &str) -> Reply {
    post_offer(app, &format!("/whep/{session}"), token, offer).await
}

async fn post_offer(app: &TestApp, path: &str, token: &str, offer: &str) -> Reply {
    let resp = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer.to_owned())
        .send()
        .await
        .unwrap();
    helpers::read(resp).await
}
