//! A viewer's NACKs are answered from the relay's history, but no more than
//! 512 packets a second per viewer: a viewer (or someone who took its
//! address) that asks for everything again and again cannot turn the relay
//! into an amplifier.

use std::time::{Duration, Instant};

use crate::helpers::spawn_app;
use crate::peers;
use crate::{live, media_stats};

/// The relay's cap on packets sent again per viewer and second.
const RESEND_PER_SECOND: u64 = 512;

#[actix_rt::test]
async fn a_viewer_asking_for_everything_again_gets_at_most_the_cap() {
    let app = spawn_app().await;
    assert!(app.state.sessions.media_edge().is_some(), "edge viewers");
    let (host, session) = live(&app).await;
    let publisher = peers::publish(&app, &host.token, session).await;
    publisher.wait_connected().await.unwrap();
    let greedy = peers::play(&app, &host.token, session).await;
    let bystander = peers::play(&app, &host.token, session).await;
    let sending = publisher.send_for(Duration::from_secs(5));
    greedy.wait_connected().await.unwrap();
    while greedy.received().0 < 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 272 packets asked every 10 ms for 2.5 s: ~68,000 asked, 54 times the
    // cap's worth.
    let flood = Duration::from_millis(2_500);
    let started = Instant::now();
    let mut nacks = 0u64;
    while started.elapsed() < flood {
        assert!(greedy.ask_again().await, "the NACK went out");
        nacks += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before_end = greedy.received().0;
    sending.await.unwrap();
    // The last NACKs' answers.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stats = media_stats(&app, &host, session).await;
    let number = |key: &str| stats[key].as_u64().unwrap();
    let asked = number("nack_requests");
    let resent = number("packets_resent");
    assert!(
        asked >= nacks * 272 / 2,
        "asked {asked} in {nacks} NACKs: {stats}"
    );
    // The budget renews each second from the first resend: within 2.5 s
    // (and the answers in flight) at most three budgets are spent.
    assert!(
        resent <= 3 * RESEND_PER_SECOND,
        "resent {resent} of {asked} asked: {stats}"
    );
    // The cap was reached: NACKs are answered, just not without bound.
    assert!(
        resent >= RESEND_PER_SECOND,
        "resent {resent} of {asked} asked: {stats}"
    );
    // The stream itself went on, for the greedy viewer and the other.
    assert!(greedy.received().0 > before_end, "{stats}");
    assert!(
        bystander.sequence_is_continuous(),
        "gaps: {:?}",
        bystander.gaps()
    );
    assert!(bystander.received().0 > 100, "{:?}", bystander.received());
}
