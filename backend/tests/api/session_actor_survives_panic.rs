//! A crash in one session's actor is contained: the supervisor re-creates it
//! with its state reloaded, and other sessions never notice.

use std::time::{Duration, Instant};

use simmer::live::Fault;

use crate::helpers::spawn_app;

async fn hammer(app: &crate::helpers::TestApp, path: String, until: Instant) -> usize {
    let mut ok = 0;
    while Instant::now() < until {
        let reply = app.get(&path, None).await;
        assert_eq!(
            reply.status, 200,
            "bystander session saw an error: {}",
            reply.body
        );
        assert_eq!(reply.body["state"], "live");
        ok += 1;
    }
    ok
}

async fn restarts(app: &crate::helpers::TestApp, cause: &str) -> u64 {
    let text = app.get("/metrics", None).await.body;
    let text = text.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find(|l| {
            l.starts_with(&format!(
                "simmer_session_actor_restarts_total{{cause=\"{cause}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn recovers(app: &crate::helpers::TestApp, fault: Fault) {
    let host = app.register().await;
    let victim = app.live_session(&host).await;
    let bystander = app.live_session(&host).await;
    let before = app.get(&format!("/api/v1/sessions/{victim}"), None).await;
    assert_eq!(before.status, 200);

    let until = Instant::now() + Duration::from_millis(1500);
    let traffic = hammer(app, format!("/api/v1/sessions/{bystander}"), until);
    let crash = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            app.state
                .sessions
                .inject_fault(victim, "session", fault)
                .await
        );
        let crashed_at = Instant::now();
        // The crashed session answers again, with its state intact.
        loop {
            let reply = app.get(&format!("/api/v1/sessions/{victim}"), None).await;
            if reply.status == 200 {
                assert_eq!(reply.body["state"], "live");
                assert_eq!(reply.body["title"], before.body["title"]);
                assert_eq!(reply.body["recipe"], before.body["recipe"]);
                assert_eq!(reply.body["viewer_count"], before.body["viewer_count"]);
                assert_eq!(
                    reply.body["timer"]["step_count"],
                    before.body["timer"]["step_count"]
                );
                assert_eq!(reply.body["timer"]["state"], before.body["timer"]["state"]);
                break crashed_at.elapsed();
            }
            assert!(
                crashed_at.elapsed() < Duration::from_secs(5),
                "never recovered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (served, recovery) = tokio::join!(traffic, crash);
    assert!(served > 0);
    assert!(
        recovery < Duration::from_secs(1),
        "took {recovery:?} to answer again"
    );
    assert_eq!(app.state.sessions.live_count(), 2);
}

#[actix_rt::test]
async fn a_panicking_session_actor_is_recreated_and_others_carry_on() {
    let app = spawn_app().await;
    recovers(&app, Fault::Panic).await;
    assert_eq!(restarts(&app, "panic").await, 1);
}

#[actix_rt::test]
async fn a_stopped_session_actor_is_restarted_by_its_supervisor() {
    let app = spawn_app().await;
    recovers(&app, Fault::Stop).await;
    assert_eq!(restarts(&app, "stopped").await, 1);
}

#[actix_rt::test]
async fn the_watchdog_recreates_a_dead_actor_without_being_asked() {
    let app = spawn_app().await;
    let host = app.register().await;
    let victim = app.live_session(&host).await;
    app.state
        .sessions
        .inject_fault(victim, "session", Fault::Panic)
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while restarts(&app, "panic").await == 0 {
        assert!(
            Instant::now() < deadline,
            "watchdog never re-created the actor"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
