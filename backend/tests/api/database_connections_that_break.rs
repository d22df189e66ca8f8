//! Connections the database ended are replaced, not handed to a request.
//! The pool hands out a connection used within the last 500 ms as is (it
//! was checked as it came back) and pings one that sat idle longer; a
//! request that meets a connection broken inside that window is answered
//! 503 `unavailable` (retry), never 500. On PostgreSQL the test ends every
//! connection of the app's database from outside; SQLite's connections
//! cannot be cut from outside, so there it checks the same requests
//! through the same window.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DbBackend};

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn connections_the_database_ended_are_replaced_before_use() {
    let app = spawn_app().await;
    let host = app.register().await;
    let session = app.create_session(&host).await;
    let path = format!("/api/v1/sessions/{session}");
    // Several pooled connections, all used a moment ago.
    for _ in 0..5 {
        assert_eq!(app.get(&path, None).await.status, 200);
    }

    let ended = end_connections(&app.database_url).await;
    // Within the window the connection is not checked: the request may
    // meet the broken one, and then it is told to retry.
    let early = app.get(&path, None).await;
    if early.status != 200 {
        early.assert_problem(503, "unavailable");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for n in 0..5 {
        let reply = app.get(&path, None).await;
        assert_eq!(
            reply.status, 200,
            "request {n} after the window: {}",
            reply.body
        );
    }
    eprintln!(
        "ended {ended} connections; the request right after: {}",
        early.status
    );
}

/// Ends every other connection to the database at `url` (PostgreSQL); how
/// many. 0 on SQLite.
async fn end_connections(url: &str) -> u64 {
    let db = Database::connect(url).await.unwrap();
    if db.get_database_backend() != DbBackend::Postgres {
        return 0;
    }
    let ended = db
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap()
        .rows_affected();
    db.close().await.unwrap();
    assert!(ended > 0, "the app held no connection");
    ended
}
