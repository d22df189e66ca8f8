//! Routes that read a raw body (WHIP and WHEP offers, the watch pairing
//! request) answer a body over `max_body_bytes`, one cut short, one of the
//! wrong type or not UTF-8 with problem+json like every other route, never
//! actix's `text/plain`. No WebRTC here: every request is refused before
//! the relay sees an offer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{read, spawn_app_with, Reply, TestApp};

const LIMIT: usize = 4096;

async fn post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Reply {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    read(req.send().await.unwrap()).await
}

#[actix_rt::test]
async fn oversized_raw_bodies_get_413_problem_json() {
    let app = spawn_app_with(|s| s.max_body_bytes = LIMIT).await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let big = vec![b'v'; 2 * LIMIT];
    for path in [format!("/whip/{session}"), format!("/whep/{session}")] {
        let reply = post(
            &app,
            &path,
            Some(&host.token),
            "application/sdp",
            big.clone(),
        )
        .await;
        reply.assert_problem(413, "payload_too_large");
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains(&LIMIT.to_string()), "{detail}");
    }
    // The pairing request needs no token.
    post(
        &app,
        "/api/v1/watch/pairings",
        None,
        "application/json",
        big.clone(),
    )
    .await
    .assert_problem(413, "payload_too_large");
}

/// A chunked body has no length to check up front: it is refused when it
/// passes the limit, with the same problem document.
#[actix_rt::test]
async fn an_oversized_chunked_offer_gets_413_problem_json() {
    let app = spawn_app_with(|s| s.max_body_bytes = LIMIT).await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunk = vec![b'v'; 1024];
    let mut request = format!(
        "POST /whep/{session} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/sdp\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        host.token
    )
    .into_bytes();
    for _ in 0..(2 * LIMIT / chunk.len()) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer before it has read everything: a failed write
    // after that is fine, the answer is what counts.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(
        response.contains(r#""code":"payload_too_large""#),
        "{response}"
    );
}

#[actix_rt::test]
async fn offers_of_the_wrong_type_or_not_utf8_get_problem_json() {
    let app = spawn_app_with(|s| s.max_body_bytes = LIMIT).await;
    let host = app.register().await;
    let session = app.live_session(&host).await;
    for path in [format!("/whip/{session}"), format!("/whep/{session}")] {
        let token = Some(host.token.as_str());
        post(&app, &path, token, "text/plain", b"v=0\r\n".to_vec())
            .await
            .assert_problem(415, "unsupported_media_type");
        post(
            &app,
            &path,
            token,
            "application/sdp",
            vec![b'v', b'=', 0xff, 0xfe],
        )
        .await
        .assert_problem(400, "invalid_body");
    }
}
