//! `/ws` and `/watch/ws` run on the TCP stream taken at the upgrade: what
//! HTTP/1.1 allows around it must still work (a keep-alive connection that
//! upgrades after a request, as a proxy's pooled connection does; a refused
//! handshake answered in full; an `Upgrade` header on a plain route), and
//! what RFC 6455 forbids gets its close code. Raw bytes on a real socket,
//! as a client that is not ours would send them.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::helpers::spawn_app;

/// A masked client frame.
fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x0F, 0x1E, 0x2D, 0x3C];
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// An HTTP answer: status, headers (lower-case names), body.
async fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.unwrap();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// One server frame: first byte and payload.
async fn read_frame(reader: &mut BufReader<TcpStream>) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7F {
        126 => usize::from(reader.read_u16().await.unwrap()),
        127 => usize::try_from(reader.read_u64().await.unwrap()).unwrap(),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

/// The next frame that is not the server's heartbeat ping (it may come at
/// any moment, the first one at once).
async fn read_reply(reader: &mut BufReader<TcpStream>) -> (u8, Vec<u8>) {
    loop {
        let frame = read_frame(reader).await;
        if frame.0 != 0x89 {
            return frame;
        }
    }
}

/// The close code of the next close frame, skipping other frames.
async fn close_code(reader: &mut BufReader<TcpStream>) -> u16 {
    loop {
        let (first, payload) = read_frame(reader).await;
        if first == 0x88 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

fn handshake(path: &str, token: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: simmer.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    )
}

async fn connect(address: &str) -> BufReader<TcpStream> {
    let addr = address.trim_start_matches("http://");
    BufReader::new(TcpStream::connect(addr).await.unwrap())
}

/// Reads to the end: the server closed its side.
async fn closed(reader: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut rest)).await,
        Ok(Ok(0))
    )
}

#[actix_rt::test]
async fn a_kept_alive_connection_upgrades_after_a_request() {
    let app = spawn_app().await;
    let user = app.register().await;
    let mut conn = connect(&app.address).await;
    // A plain request first, as a proxy's pooled connection carries.
    conn.get_mut()
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: simmer.test\r\n\r\n")
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut conn).await;
    assert_eq!(status, 200);
    conn.get_mut()
        .write_all(handshake("/ws", &user.token).as_bytes())
        .await
        .unwrap();
    let (status, headers, _) = read_response(&mut conn).await;
    assert_eq!(status, 101);
    assert_eq!(
        header(&headers, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let (first, hello) = read_reply(&mut conn).await;
    assert_eq!(first, 0x81);
    let hello: Value = serde_json::from_slice(&hello).unwrap();
    assert_eq!(hello["type"], "hello");

    // A ping in two fragments, sent with the one that follows it.
    let mut bytes = masked(false, 0x1, br#"{"type":"#);
    bytes.extend(masked(true, 0x0, br#""ping"}"#));
    bytes.extend(masked(true, 0x9, b"are you there"));
    conn.get_mut().write_all(&bytes).await.unwrap();
    let (first, pong) = read_reply(&mut conn).await;
    assert_eq!(first, 0x81);
    let pong: Value = serde_json::from_slice(&pong).unwrap();
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_eq!(
        read_reply(&mut conn).await,
        (0x8A, b"are you there".to_vec())
    );

    // The client closes; the server answers with its own close.
    let close = masked(true, 0x8, &1000u16.to_be_bytes());
    conn.get_mut().write_all(&close).await.unwrap();
    assert_eq!(close_code(&mut conn).await, 1000);
    assert!(closed(&mut conn).await);
}

#[actix_rt::test]
async fn a_refused_handshake_is_answered_in_full_then_closed() {
    let app = spawn_app().await;
    let mut conn = connect(&app.address).await;
    conn.get_mut()
        .write_all(handshake("/ws", "not-a-token").as_bytes())
        .await
        .unwrap();
    let (status, headers, body) = read_response(&mut conn).await;
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json")
    );
    assert!(
        header(&headers, "www-authenticate").is_some(),
        "{headers:?}"
    );
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "unauthorized");
    assert!(
        closed(&mut conn).await,
        "the connection closes after a refusal"
    );
}

#[actix_rt::test]
async fn an_upgrade_header_on_a_plain_route_gets_the_plain_answer() {
    let app = spawn_app().await;
    for upgrade in ["websocket", "h2c"] {
        let mut conn = connect(&app.address).await;
        let request = format!(
            "GET /api/v1/sessions?state=live HTTP/1.1\r\nHost: simmer.test\r\n\
             Connection: Upgrade\r\nUpgrade: {upgrade}\r\n\r\n"
        );
        conn.get_mut().write_all(request.as_bytes()).await.unwrap();
        let (status, _, body) = read_response(&mut conn).await;
        assert_eq!(status, 200, "{upgrade}: {}", String::from_utf8_lossy(&body));
        let page: Value = serde_json::from_slice(&body).unwrap();
        assert!(page["items"].is_array(), "{upgrade}: {page}");
        assert!(closed(&mut conn).await, "{upgrade}");
    }
}

#[actix_rt::test]
async fn a_large_answer_to_an_upgrade_request_comes_whole() {
    // `curl --http2` on plain HTTP asks `Upgrade: h2c` on every request; the
    // Swagger UI bundle is far larger than any buffer on the way.
    let app = spawn_app().await;
    let path = "/docs/swagger-ui-bundle.js";
    let plain = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    let expected = plain.bytes().await.unwrap();
    assert!(expected.len() > 256 * 1024, "{} bytes", expected.len());

    let mut conn = connect(&app.address).await;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: simmer.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
    );
    conn.get_mut().write_all(request.as_bytes()).await.unwrap();
    let (status, headers, body) = read_response(&mut conn).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-length"),
        Some(expected.len().to_string().as_str()),
        "{headers:?}"
    );
    assert!(body == expected[..], "the body differs from a plain GET's");
    assert!(closed(&mut conn).await);
}

#[actix_rt::test]
async fn frames_rfc_6455_forbids_close_the_socket_with_their_code() {
    let app = spawn_app().await;
    let user = app.register().await;
    let too_long = {
        let mut frame = vec![0x81, 0x80 | 127];
        frame.extend_from_slice(&(1u64 << 30).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        frame
    };
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("unmasked", vec![0x81, 0x02, b'{', b'}'], 1002),
        ("1 GiB declared", too_long, 1009),
        ("not UTF-8", masked(true, 0x1, &[0xC3, 0x28]), 1007),
        (
            "reserved bits",
            {
                let mut f = masked(true, 0x1, b"{}");
                f[0] |= 0x40;
                f
            },
            1002,
        ),
    ];
    for (name, bytes, code) in cases {
        let mut conn = connect(&app.address).await;
        conn.get_mut()
            .write_all(handshake("/ws", &user.token).as_bytes())
            .await
            .unwrap();
        let (status, _, _) = read_response(&mut conn).await;
        assert_eq!(status, 101, "{name}");
        conn.get_mut().write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut conn).await, code, "{name}");
        assert!(closed(&mut conn).await, "{name}");
    }
}
