//! The Rust SDK reaches a server behind TLS, the way apps will (a proxy
//! terminating TLS in front of Simmer): `wss://` chat with acks, `https://`
//! watch pairing and the `wss://` watch feed, trusting a test CA given as
//! PEM. Without that root the certificate is refused: the SDK verifies.

use std::sync::Arc;
use std::time::Duration;

use mobile_bridge::client::{Client, ClientConfig};
use mobile_bridge::watch_client::{request_pairing, WatchClient, WatchConfig};
use mobile_bridge::SessionId;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

use crate::helpers::spawn_app;

/// A TLS terminator for `localhost` in front of `upstream` (a port on
/// 127.0.0.1): returns its port and the PEM of its self-signed certificate.
async fn tls_proxy(upstream: u16) -> (u16, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    (port, pem)
}

#[actix_rt::test]
async fn the_sdk_speaks_wss_and_https_to_a_server_behind_tls() {
    let app = spawn_app().await;
    let upstream: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let (port, ca) = tls_proxy(upstream).await;
    let host = app.register().await;
    let session = app.live_session(&host).await;

    // Chat over wss://, with the test root trusted.
    let mut config = ClientConfig::new(format!("wss://localhost:{port}/ws"), &host.token);
    config.tls_roots = vec![ca.clone()];
    let (client, _events) = Client::connect(config).await.unwrap();
    client.join(SessionId(session)).await.unwrap();
    let ack = client
        .send_chat(SessionId(session), "over TLS")
        .await
        .unwrap();
    assert_eq!(ack.seq, 1);

    // Without it, the handshake is refused: the certificate is checked.
    let mut untrusted = ClientConfig::new(format!("wss://localhost:{port}/ws"), &host.token);
    untrusted.max_backoff = Duration::from_millis(100);
    let refused = tokio::time::timeout(Duration::from_secs(10), Client::connect(untrusted))
        .await
        .expect("an answer in time");
    let Err(error) = refused else {
        panic!("an untrusted certificate was accepted");
    };
    let error = format!("{error:?}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    // A watch pairs over https:// and follows the feed over wss://.
    let base = format!("https://localhost:{port}");
    let http = mobile_bridge::tls::http_client(std::slice::from_ref(&ca)).unwrap();
    let pairing = request_pairing(&http, &base, "Wrist", Some(1))
        .await
        .unwrap();
    let claim = app
        .post(
            "/api/v1/watch/pairings/claim",
            Some(&host.token),
            &json!({"code": pairing.code, "session_id": session}),
        )
        .await;
    assert_eq!(claim.status, 200, "{}", claim.body);
    let device = pairing
        .wait_claimed(&http, Duration::from_secs(10))
        .await
        .unwrap();
    let mut watch_config = WatchConfig::new(&base, &device.token);
    watch_config.tls_roots = vec![ca];
    let mut watch = WatchClient::connect(watch_config).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(10), watch.next_frame())
        .await
        .expect("a frame in time")
        .unwrap();
    assert!(
        matches!(frame, watch_sync::WatchFrame::Snapshot { .. }),
        "{frame:?}"
    );
    // Plain reqwest without the root refuses the same server.
    let plain = mobile_bridge::tls::http_client(&[]).unwrap();
    assert!(plain.get(format!("{base}/healthz")).send().await.is_err());
}
