//! A host whose handshake never finishes (its ICE alive, its DTLS silent)
//! does not hold the session's publish: `media_connect_timeout_s` after its
//! answer the relay closes the connection, and the host can publish again.

use std::time::Duration;

use simmer_testkit::peers::IceOnlyPublisher;

use crate::helpers::spawn_app_with;
use crate::{live, media_stats, open_ports, peers};

#[actix_rt::test]
async fn a_host_whose_handshake_never_finishes_gives_the_publish_back() {
    // The ICE timeout is long and the host keeps ICE alive anyway: only the
    // connect timeout can end this publish.
    let app = spawn_app_with(|s| {
        s.media.ice_timeout = Duration::from_secs(60);
        s.media.viewer_limits.connect_timeout = Duration::from_secs(3);
    })
    .await;
    let (host, session) = live(&app).await;
    let http = reqwest::Client::new();
    let stuck = IceOnlyPublisher::publish(&http, &app.address, &host.token, session)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // The relay is the DTLS client: its first flight comes over the pair
    // ICE nominated, and nothing answers it.
    let flight = stuck.first_datagram().await.unwrap();
    assert_eq!(
        flight.first(),
        Some(&22),
        "a DTLS handshake record: {flight:?}"
    );
    assert_eq!(
        media_stats(&app, &host, session).await["publisher"],
        "connecting"
    );
    assert!(
        !open_ports(&stuck.server_ports).is_empty(),
        "the relay's socket for the host"
    );
    // Meanwhile the publish is held, even against the same host.
    let again = peers::whip(&app, &host.token, session, &peers::sample_offer().await).await;
    again.assert_problem(409, "conflict");

    // Then the relay gives up: it stops answering the host's checks, closes
    // its socket, and the session is not being published.
    let lost = stuck.wait_ice_lost(Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        media_stats(&app, &host, session).await["publisher"],
        "not_publishing"
    );
    assert_eq!(
        open_ports(&stuck.server_ports),
        Vec::<u16>::new(),
        "ICE went {lost}"
    );
    stuck.close().await;

    // A host whose handshake works publishes now.
    let publisher = peers::publish(&app, &host.token, session).await;
    publisher.wait_connected().await.unwrap();
    assert_eq!(
        media_stats(&app, &host, session).await["publisher"],
        "publishing"
    );
    publisher.close().await;
}
