//! Offers that arrive together are decided as if they came one by one: a
//! room never takes more viewers than `media_max_subscribers`, and of two
//! publishes by the host at once one wins, the other gets 409.

use futures_util::future::join_all;

use crate::helpers::spawn_app_with;
use crate::peers::{self, whep, whip};
use crate::{live, media_stats};

#[actix_rt::test]
async fn concurrent_viewer_offers_never_pass_the_room_cap() {
    const CAP: usize = 3;
    let app = spawn_app_with(|s| {
        s.media.max_subscribers = CAP;
        s.media.viewer_limits.per_viewer = 100;
        s.media.viewer_limits.per_address = 100;
    })
    .await;
    let (host, session) = live(&app).await;
    let offer = peers::sample_offer().await;

    let replies = join_all((0..12).map(|_| whep(&app, &host.token, session, &offer))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    for reply in replies.iter().filter(|r| r.status != 201) {
        reply.assert_problem(503, "room_full");
    }
    assert_eq!(created, CAP, "viewers let in at once");
    assert_eq!(media_stats(&app, &host, session).await["subscribers"], CAP);
}

#[actix_rt::test]
async fn concurrent_publishes_by_the_host_have_one_winner() {
    let app = spawn_app_with(|_| {}).await;
    let (host, session) = live(&app).await;
    let offer = peers::sample_offer().await;
    let replies = join_all((0..6).map(|_| whip(&app, &host.token, session, &offer))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    for reply in replies.iter().filter(|r| r.status != 201) {
        reply.assert_problem(409, "conflict");
    }
    assert_eq!(created, 1, "publishes answered 201 at once");
}
