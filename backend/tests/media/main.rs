//! Media relay tests: WHIP and WHEP against the real server with real WebRTC
//! peers (the `webrtc` crate on the other end). They set up peer connections,
//! so they run only inside a private network namespace with nothing but
//! loopback (`scripts/test.sh` does it: `unshare --net`), and only with the
//! `media-tests` feature.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "cluster-tests")]
#[path = "../cluster/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[cfg(feature = "cluster-tests")]
#[path = "../api/simmer_process.rs"]
#[allow(dead_code)]
mod simmer_process;
#[path = "../api/ws_client.rs"]
#[allow(dead_code)]
mod ws_client;

mod concurrent_signalling_has_one_outcome;
mod guests_turned_away_stop_playing;
mod handshakes_that_never_finish_free_the_publish;
mod nacks_cannot_make_the_relay_flood_a_viewer;
mod peers;
#[cfg(feature = "cluster-tests")]
mod rolling_restart;
#[cfg(feature = "cluster-tests")]
mod signalling_at_any_node;
mod viewer_slots_cannot_be_hoarded;
mod viewers_who_come_and_go_leave_nothing_behind;

use std::time::{Duration, Instant};

use serde_json::json;
use simmer::live::Fault;

use helpers::{spawn_app, TestApp, User};
use peers::LossyLink;
use ws_client::WsClient;

/// Which of these UDP ports have an open socket in this network namespace.
fn open_ports(ports: &[u16]) -> Vec<u16> {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let open: Vec<u16> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.split(':').nth(1))
        .filter_map(|hex| u16::from_str_radix(hex, 16).ok())
        .collect();
    ports.iter().copied().filter(|p| open.contains(p)).collect()
}

async fn live(app: &TestApp) -> (User, uuid::Uuid) {
    let host = app.register().await;
    let session = app.live_session(&host).await;
    (host, session)
}

/// `user` on `/ws`, joined to `session` (to hear its `media` frames).
async fn member(app: &TestApp, user: &User, session: uuid::Uuid) -> WsClient {
    let mut client = WsClient::connect(&app.address, &user.token).await;
    client.join(&session.to_string(), None).await;
    client
}

#[actix_rt::test]
async fn viewers_who_come_before_and_after_the_host_receive_its_video() {
    let app = spawn_app().await;
    let (host, session) = live(&app).await;
    let mut members = member(&app, &host, session).await;

    // A viewer who is there before the host publishes.
    let early = peers::play(&app, &host.token, session).await;
    let publisher = peers::publish(&app, &host.token, session).await;
    publisher.wait_connected().await.unwrap();
    let (event, _) = members.recv_type("media").await;
    assert_eq!(event["state"], "publishing");

    let sending = publisher.send_for(Duration::from_secs(4));
    // A viewer who comes in mid-stream.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let late = peers::play(&app, &host.token, session).await;
    sending.await.unwrap();

    for viewer in [&early, &late] {
        let (video, audio) = viewer.received();
        assert!(video > 20, "video packets received: {video}");
        assert!(audio > 20, "audio packets received: {audio}");
        assert!(viewer.sequence_is_continuous(), "gaps: {:?}", viewer.gaps());
    }
    assert!(
        publisher.keyframe_requests() >= 1,
        "a viewer's arrival asks the host for a keyframe"
    );

    let stats = media_stats(&app, &host, session).await;
    assert_eq!(stats["publisher"], "publishing");
    assert_eq!(stats["subscribers"], 2);
    assert!(stats["packets_in"].as_u64().unwrap() > 100);
    assert!(stats["packets_out"].as_u64().unwrap() > 100);
    // Spelled as browsers' getStats spell them.
    assert_eq!(
        stats["codecs"],
        serde_json::json!(["audio/opus", "video/VP8"])
    );
    assert!(stats["bitrate_in"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["bitrate_out"].as_u64().unwrap() > 0, "{stats}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("simmer_media_packets_out_total"));

    // The host stops: viewers are told, and stay connected for the next time.
    peers::unpublish(&app, &publisher, &host.token).await;
    let (event, _) = members.recv_type("media").await;
    assert_eq!(event["state"], "not_publishing");
    // The rates are of the last few seconds: nothing flows, so they fall to
    // zero (the byte counters stay).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stopped = media_stats(&app, &host, session).await;
    assert_eq!(
        (
            stopped["bitrate_in"].as_u64(),
            stopped["bitrate_out"].as_u64()
        ),
        (Some(0), Some(0)),
        "{stopped}"
    );
    assert!(
        stopped["bytes_in"].as_u64() >= stats["bytes_in"].as_u64(),
        "{stopped}"
    );

    // The host comes back: the same viewers receive again, with no new offer.
    let before = early.received().0;
    let again = peers::publish(&app, &host.token, session).await;
    again.wait_connected().await.unwrap();
    again.send_for(Duration::from_secs(2)).await.unwrap();
    let after = early.received().0;
    assert!(
        after > before + 10,
        "video after republishing: {before} -> {after}"
    );
    assert!(early.sequence_is_continuous(), "gaps: {:?}", early.gaps());
}

/// The fallback (`SIMMER_MEDIA_EDGE=false`): each viewer a peer connection
/// of the `webrtc` crate, bound to its lane's tracks.
#[actix_rt::test]
async fn viewers_on_crate_peer_connections_receive_the_hosts_video() {
    let app = helpers::spawn_app_with(|s| s.media.relay.edge = false).await;
    assert!(app.state.sessions.media_edge().is_none());
    let (host, session) = live(&app).await;
    let viewer = peers::play(&app, &host.token, session).await;
    let publisher = peers::publish(&app, &host.token, session).await;
    publisher.wait_connected().await.unwrap();
    publisher.send_for(Duration::from_secs(2)).await.unwrap();
    let (video, audio) = viewer.received();
    assert!(video > 20, "video packets received: {video}");
    assert!(audio > 20, "audio packets received: {audio}");
    assert!(viewer.sequence_is_continuous(), "gaps: {:?}", viewer.gaps());
    assert!(
        !viewer.server_ports.is_empty() && open_ports(&viewer.server_ports) == viewer.server_ports,
        "the viewer has a port of its own"
    );
}

async fn media_stats(app: &TestApp, host: &User, session: uuid::Uuid) -> serde_json::Value {
    let stats = app
        .get(
            &format!("/api/v1/sessions/{session}/media"),
            Some(&host.token),
        )
        .await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    stats.body
}

#[actix_rt::test]
async fn lost_video_is_sent_again_and_loss_is_reported() {
    let app = spawn_app().await;
    let (host, session) = live(&app).await;
    let publisher = peers::publish(&app, &host.token, session).await;
    publisher.wait_connected().await.unwrap();
    // Two viewers on links that lose every 20th video packet: one gets the
    // retransmissions, the other loses those too.
    let recovering_link = LossyLink::new(20, false);
    let recovering =
        peers::play_behind(&app, &host.token, session, Some(recovering_link.clone())).await;
    let unlucky_link = LossyLink::new(20, true);
    let unlucky = peers::play_behind(&app, &host.token, session, Some(unlucky_link.clone())).await;
    publisher.send_for(Duration::from_secs(4)).await.unwrap();
    // Retransmissions and the next receiver reports (one a second).
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let dropped = recovering_link.dropped();
    assert!(dropped >= 5, "the link dropped {dropped} packets");
    assert!(
        recovering.sequence_is_continuous(),
        "every lost packet came again (NACK): gaps {:?}",
        recovering.gaps()
    );
    assert!(unlucky_link.dropped() >= 5);
    assert!(unlucky.gaps()[0] > 0, "the unlucky viewer's loss stays");

    let stats = media_stats(&app, &host, session).await;
    let number = |key: &str| stats[key].as_u64().unwrap();
    assert!(
        number("nack_requests") >= dropped as u64,
        "NACKed packets: {stats}"
    );
    assert!(number("packets_lost_out") >= 1, "reported loss: {stats}");
    assert_eq!(number("packets_lost_in"), 0, "{stats}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("simmer_media_nack_packets_total"), "{text}");
    assert!(
        text.contains(r#"simmer_media_packets_lost_total{direction="out"}"#),
        "{text}"
    );
}

#[actix_rt::test]
async fn a_relay_that_falls_behind_drops_what_is_late_and_goes_on_live() {
    let app = helpers::spawn_app_with(|s| {
        s.media.relay.lanes = 2;
        s.media.relay.max_queue = Duration::from_millis(100);
    })
    .await;
    let (host, session) = live(&app).await;
    let publisher = peers::publish(&app, &host.token, session).await;
    publisher.wait_connected().await.unwrap();
    // Two viewers: one per lane.
    let viewers = [
        peers::play(&app, &host.token, session).await,
        peers::play(&app, &host.token, session).await,
    ];
    for viewer in &viewers {
        viewer.wait_connected().await.unwrap();
    }
    let sending = publisher.send_for(Duration::from_secs(4));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = publisher.keyframe_requests();
    // The lanes hold their packets for 1.5 s, as a relay short of CPU would.
    assert!(
        app.state
            .sessions
            .inject_fault(session, "media", Fault::Stall(Duration::from_millis(1_500)))
            .await
    );
    sending.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    for viewer in &viewers {
        let (video, audio) = viewer.received();
        assert!(
            video > 40 && audio > 40,
            "received {video} video, {audio} audio"
        );
        // Sent late, every packet held would arrive ~1.5 s behind.
        let late = viewer.most_late();
        assert!(
            late < Duration::from_millis(900),
            "a packet came {late:?} late"
        );
        // What was dropped left no gap for the viewer to ask for again.
        assert!(viewer.sequence_is_continuous(), "gaps: {:?}", viewer.gaps());
    }
    assert!(
        publisher.keyframe_requests() > asked,
        "once caught up, the relay asks the host for a keyframe"
    );
    let stats = media_stats(&app, &host, session).await;
    // ~1.4 s of 66 video and 50 audio packets a second, for two viewers.
    let dropped = stats["packets_dropped"].as_u64().unwrap();
    assert!(dropped >= 200, "{stats}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(r#"simmer_media_packets_lost_total{direction="dropped"}"#),
        "{text}"
    );
}

#[actix_rt::test]
async fn the_relay_carries_vp9_and_av1() {
    let app = spawn_app().await;
    let (host, session) = live(&app).await;
    let early = peers::play(&app, &host.token, session).await;
    let mut late = None;
    let mut seen = 0;
    for codec in ["video/VP9", "video/AV1"] {
        let publisher = peers::publish_codec(&app.address, &host.token, session, codec).await;
        publisher.wait_connected().await.unwrap();
        let sending = publisher.send_for(Duration::from_secs(2));
        if late.is_none() {
            tokio::time::sleep(Duration::from_millis(700)).await;
            late = Some(peers::play(&app, &host.token, session).await);
        }
        sending.await.unwrap();
        for viewer in [&early, late.as_ref().unwrap()] {
            assert_eq!(viewer.video_codec().as_deref(), Some(codec));
        }
        let now = early.received().0;
        assert!(now > seen + 20, "{codec}: video packets {seen} -> {now}");
        seen = now;
        peers::unpublish(&app, &publisher, &host.token).await;
    }
    assert!(early.sequence_is_continuous(), "gaps: {:?}", early.gaps());
    let codecs = media_stats(&app, &host, session).await["codecs"].to_string();
    assert!(
        codecs.contains("video/VP9") && codecs.contains("video/AV1"),
        "{codecs}"
    );
}

#[actix_rt::test]
async fn bad_signalling_gets_problem_json() {
    let app = spawn_app().await;
    let (host, session) = live(&app).await;
    let viewer = app.register().await;
    let offer = peers::sample_offer().await;
    let post = |path: String, token: Option<String>, content_type: &'static str, body: String| {
        let app = &app;
        async move {
            let mut req = app
                .client
                .post(app.url(&path))
                .header("content-type", content_type)
                .body(body);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            helpers::read(req.send().await.unwrap()).await
        }
    };
    let whip = format!("/whip/{session}");
    post(
        whip.clone(),
        Some(host.token.clone()),
        "application/json",
        offer.clone(),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    post(
        whip.clone(),
        Some(host.token.clone()),
        "application/sdp",
        "hello".into(),
    )
    .await
    .assert_problem(400, "invalid_body");
    post(
        whip.clone(),
        Some(host.token.clone()),
        "application/sdp",
        "x".repeat(40_000),
    )
    .await
    .assert_problem(413, "payload_too_large");
    post(whip.clone(), None, "application/sdp", offer.clone())
        .await
        .assert_problem(401, "unauthorized");
    post(
        whip.clone(),
        Some(viewer.token.clone()),
        "application/sdp",
        offer.clone(),
    )
    .await
    .assert_problem(403, "forbidden");
    let scheduled = app.create_session(&host).await;
    post(
        format!("/whip/{scheduled}"),
        Some(host.token.clone()),
        "application/sdp",
        offer.clone(),
    )
    .await
    .assert_problem(409, "conflict");
    post(
        format!("/whep/{}", uuid::Uuid::now_v7()),
        Some(viewer.token.clone()),
        "application/sdp",
        offer.clone(),
    )
    .await
    .assert_problem(404, "not_found");

    // One publisher at a time.
    let first = peers::publish(&app, &host.token, session).await;
    first.wait_connected().await.unwrap();
    let second = post(
        whip.clone(),
        Some(host.token.clone()),
        "application/sdp",
        peers::sample_offer().await,
    )
    .await;
    second.assert_problem(409, "conflict");

    // No trickle: 405 with Allow.
    let resp = app
        .client
        .patch(app.url(&first.resource))
        .bearer_auth(&host.token)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body("a=ice-ufrag:x\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "DELETE");
    // Someone else's resource, an unknown one.
    let reply = app
        .request(
            reqwest::Method::DELETE,
            &first.resource,
            Some(&viewer.token),
            None,
        )
        .await;
    reply.assert_problem(403, "forbidden");
    let reply = app
        .request(
            reqwest::Method::DELETE,
            &format!("/whep/{session}/{}", uuid::Uuid::now_v7()),
            Some(&viewer.token),
            None,
        )
        .await;
    reply.assert_problem(404, "not_found");
}

#[actix_rt::test]
async fn ending_the_session_closes_every_peer_connection() {
    let app = spawn_app().await;
    // The media runtime is the process's: tasks of earlier tests' nodes
    // (their edges) may still be ending. None are this session's.
    let tasks_idle = app.state.sessions.media_tasks();
    eprintln!("media tasks before the session: {tasks_idle}");
    let (host, session) = live(&app).await;
    let publisher = peers::publish(&app, &host.token, session).await;
    let viewers = [
        peers::play(&app, &host.token, session).await,
        peers::play(&app, &host.token, session).await,
    ];
    publisher.wait_connected().await.unwrap();
    publisher
        .send_for(Duration::from_millis(500))
        .await
        .unwrap();
    // The node's edge (if viewers play from it) keeps its port and tasks:
    // it is the node's, not the session's.
    let edge = app.state.sessions.media_edge();
    let edge_ports = edge.as_ref().map(|e| e.ports()).unwrap_or_default();
    let server_ports: Vec<u16> = publisher
        .server_ports
        .iter()
        .chain(viewers.iter().flat_map(|v| v.server_ports.iter()))
        .copied()
        .filter(|p| !edge_ports.contains(p))
        .collect();
    assert!(
        !open_ports(&server_ports).is_empty(),
        "the server holds sockets for them"
    );
    let tasks_live = app.state.sessions.media_tasks();
    assert!(tasks_live > 0);

    app.post(
        &format!("/api/v1/sessions/{session}/end"),
        Some(&host.token),
        &json!({}),
    )
    .await;
    // The server closes every connection: its peers see it, its sockets and
    // tasks are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let closed = publisher.closed_by_server() && viewers.iter().all(|v| v.closed_by_server());
        let sockets = open_ports(&server_ports);
        let tasks = app.state.sessions.media_tasks();
        let on_edge = edge.as_ref().map_or((0, 0), |e| e.viewers());
        if closed && sockets.is_empty() && tasks <= tasks_idle && on_edge == (0, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the end: peers closed {closed}, server sockets {sockets:?}, media tasks {tasks} \
             (of {tasks_live}, {tasks_idle} before the session), viewers and addresses on the edge {on_edge:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.close().await;
    for viewer in &viewers {
        viewer.close().await;
    }
}

#[actix_rt::test]
async fn a_media_room_crash_leaves_chat_and_timer_alone() {
    let app = spawn_app().await;
    let (host, session) = live(&app).await;
    let mut members = member(&app, &host, session).await;
    let publisher = peers::publish(&app, &host.token, session).await;
    publisher.wait_connected().await.unwrap();
    app.post(
        &format!("/api/v1/sessions/{session}/timer"),
        Some(&host.token),
        &json!({"action": "start"}),
    )
    .await;

    for fault in [Fault::Stop, Fault::Panic] {
        assert!(
            app.state
                .sessions
                .inject_fault(session, "media", fault)
                .await
        );
        // Restarted (Stop) or re-created (Panic) by the watchdog: clients
        // are told to set up WHIP/WHEP again.
        let (event, _) = members.recv_type("media").await;
        let mut event = event;
        while event["state"] != "reconnect" {
            event = members.recv_type("media").await.0;
        }
        // Chat and the timer never noticed.
        let ack = members
            .chat(&session.to_string(), "still here", &format!("{fault:?}"))
            .await;
        assert_eq!(ack["status"], "ok", "{ack}");
        let timer = app
            .get(&format!("/api/v1/sessions/{session}/timer"), None)
            .await;
        assert_eq!(timer.body["state"], "running");
        // And video can be set up again.
        let again = peers::publish(&app, &host.token, session).await;
        again.wait_connected().await.unwrap();
        again.close().await;
    }
}

#[actix_rt::test]
async fn a_host_that_vanishes_is_detected_and_viewers_are_told() {
    let app = helpers::spawn_app_with(|s| s.media.ice_timeout = Duration::from_secs(2)).await;
    let (host, session) = live(&app).await;
    let mut members = member(&app, &host, session).await;
    let viewer = peers::play(&app, &host.token, session).await;

    // The host's peer runs on a runtime of its own, which then disappears at
    // once: no DTLS close, no ICE, nothing (a phone that lost its network).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (address, token) = (app.address.clone(), host.token.clone());
    let publisher = runtime
        .spawn(async move { peers::publish_at(&address, &token, session).await })
        .await
        .unwrap();
    let (event, _) = members.recv_type("media").await;
    assert_eq!(event["state"], "publishing");
    let sending = publisher.send_for(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(10);
    while viewer.received().0 == 0 {
        assert!(
            Instant::now() < deadline,
            "no video before the host vanished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let vanished = Instant::now();
    drop(sending);
    std::mem::forget(publisher);
    runtime.shutdown_background();

    let (event, _) = members.recv_type("media").await;
    assert_eq!(event["state"], "not_publishing");
    assert!(
        vanished.elapsed() < Duration::from_secs(8),
        "detected after {:?}",
        vanished.elapsed()
    );
    let stats = media_stats(&app, &host, session).await;
    assert_eq!(stats["publisher"], "not_publishing");
    // The host may publish again (its old connection is dead).
    let again = peers::publish(&app, &host.token, session).await;
    again.wait_connected().await.unwrap();
}

/// A server that announces `ice_servers` and mints each client's TURN
/// credential from the secret it shares with coturn, `shared-with-coturn`.
async fn minting_app(ice_servers: &[&str]) -> TestApp {
    let ice_servers: Vec<String> = ice_servers.iter().map(|s| (*s).to_owned()).collect();
    helpers::spawn_app_with(move |s| {
        s.media.ice_servers = ice_servers;
        s.media.turn = simmer::media::turn::TurnAuth::Minted {
            secret: "shared-with-coturn".parse().unwrap(),
            ttl: Duration::from_secs(3600),
        };
    })
    .await
}

/// A guest of `session`: (token, guest id).
async fn guest_of(app: &TestApp, session: uuid::Uuid) -> (String, String) {
    let guest = app
        .post(
            &format!("/api/v1/sessions/{session}/guest-tokens"),
            None,
            &serde_json::json!({"display_name": "Guest"}),
        )
        .await;
    assert_eq!(guest.status, 201, "{}", guest.body);
    (
        guest.body["access_token"].as_str().unwrap().to_owned(),
        guest.body["guest_id"].as_str().unwrap().to_owned(),
    )
}

/// The `turn:` link of a WHEP answer for `token`: (username, credential).
async fn turn_credential(app: &TestApp, token: &str, session: uuid::Uuid) -> (String, String) {
    let resp = app
        .client
        .post(app.url(&format!("/whep/{session}")))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(peers::sample_offer().await)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let link = resp
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|l| l.starts_with("<turn:"))
        .expect("a turn: link");
    let param = |name: &str| {
        let start = link.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let end = start + link[start..].find('"').unwrap();
        link[start..end].to_owned()
    };
    assert!(link.contains("credential-type=\"password\""), "{link}");
    (param("username"), param("credential"))
}

#[actix_rt::test]
async fn every_viewer_gets_its_own_turn_credential_that_expires() {
    use base64::Engine;
    use hmac::Mac;
    let app = minting_app(&["turn:turn.example.org:3478?transport=udp"]).await;
    let (host, session) = live(&app).await;
    let (guest_token, _) = guest_of(&app, session).await;
    let guest_token = guest_token.as_str();
    let mut seen = Vec::new();
    for token in [host.token.as_str(), guest_token] {
        let (username, credential) = turn_credential(&app, token, session).await;
        // What coturn checks with `use-auth-secret`: the username is
        // `<expiry>:<who>`, the credential its HMAC-SHA1 under the secret.
        let (expiry, who) = username.split_once(':').unwrap();
        let expiry: u64 = expiry.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!((now + 3500..=now + 3700).contains(&expiry), "{username}");
        uuid::Uuid::parse_str(who).unwrap();
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"shared-with-coturn").unwrap();
        mac.update(username.as_bytes());
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&credential)
            .unwrap();
        mac.verify_slice(&raw)
            .expect("credential = HMAC-SHA1(secret, username)");
        seen.push(who.to_owned());
    }
    assert_ne!(seen[0], seen[1], "host and guest share a TURN identity");
}

/// `OPTIONS` on a WHIP/WHEP endpoint: (status, `Link` values, `Allow`).
async fn ask_ice_servers(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> (u16, Vec<String>, String) {
    let mut req = app.client.request(reqwest::Method::OPTIONS, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let links = resp
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let allow = resp
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status().as_u16(), links, allow)
}

#[actix_rt::test]
async fn ice_servers_can_be_asked_before_the_offer() {
    let app = minting_app(&[
        "stun:stun.example.org:3478",
        "turn:turn.example.org:3478?transport=tcp",
    ])
    .await;
    let (host, session) = live(&app).await;
    let stun = r#"<stun:stun.example.org:3478>; rel="ice-server""#;

    // Without a token: the STUN server only; a TURN server that checks
    // credentials is no use without one.
    let (status, links, allow) = ask_ice_servers(&app, &format!("/whep/{session}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(links, vec![stun.to_owned()]);
    assert_eq!(allow, "OPTIONS, POST");

    // The host before publishing, a guest before playing: each its own
    // credential, the same one the answer would carry.
    let (guest_token, guest_id) = guest_of(&app, session).await;
    let guest_token = guest_token.as_str();
    for (path, token, who) in [
        (
            format!("/whip/{session}"),
            host.token.as_str(),
            host.id.to_string(),
        ),
        (format!("/whep/{session}"), guest_token, guest_id),
    ] {
        let (status, links, _) = ask_ice_servers(&app, &path, Some(token)).await;
        assert_eq!(status, 204, "{path}");
        assert_eq!(links.len(), 2, "{links:?}");
        assert_eq!(links[0], stun);
        let turn = &links[1];
        assert!(
            turn.starts_with(
                r#"<turn:turn.example.org:3478?transport=tcp>; rel="ice-server"; username=""#
            ),
            "{turn}"
        );
        assert!(turn.ends_with(r#"; credential-type="password""#), "{turn}");
        assert!(turn.contains(&format!(":{who}\"")), "{turn} is not {who}'s");
    }

    // A guest token is for its own session; a bad token is refused.
    let (_, other) = live(&app).await;
    let (status, _, _) = ask_ice_servers(&app, &format!("/whep/{other}"), Some(guest_token)).await;
    assert_eq!(status, 403);
    let (status, _, _) =
        ask_ice_servers(&app, &format!("/whep/{session}"), Some("not-a-token")).await;
    assert_eq!(status, 401);
}

#[actix_rt::test]
async fn ice_servers_are_announced_and_a_room_has_a_viewer_limit() {
    let app = helpers::spawn_app_with(|s| {
        s.media.ice_servers = vec![
            "stun:stun.example.org:3478".into(),
            "turn:turn.example.org:3478?transport=udp".into(),
        ];
        s.media.turn = simmer::media::turn::TurnAuth::Static {
            username: "simmer".into(),
            credential: "s3cret".parse().unwrap(),
        };
        s.media.max_subscribers = 1;
    })
    .await;
    let (host, session) = live(&app).await;
    let resp = app
        .client
        .post(app.url(&format!("/whep/{session}")))
        .bearer_auth(&host.token)
        .header("content-type", "application/sdp")
        .body(peers::sample_offer().await)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let links: Vec<String> = resp
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        links,
        vec![
            r#"<stun:stun.example.org:3478>; rel="ice-server""#.to_owned(),
            r#"<turn:turn.example.org:3478?transport=udp>; rel="ice-server"; username="simmer"; credential="s3cret"; credential-type="password""#.to_owned(),
        ]
    );
    // The room takes one viewer.
    let second = app
        .client
        .post(app.url(&format!("/whep/{session}")))
        .bearer_auth(&host.token)
        .header("content-type", "application/sdp")
        .body(peers::sample_offer().await)
        .send()
        .await
        .unwrap();
    helpers::read(second).await.assert_problem(503, "room_full");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("simmer_media_subscribers 1"), "{text}");
}
