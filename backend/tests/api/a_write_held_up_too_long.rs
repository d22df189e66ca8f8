//! On SQLite one write holds the database at a time. A request whose write
//! waits longer than `SIMMER_DB_BUSY_TIMEOUT_MS` for another's (here a
//! transaction held open from outside the node) is answered 503
//! `unavailable`, never 500, and the same request goes through once the
//! lock is free. PostgreSQL locks rows, not the database: there the held
//! transaction holds nobody up.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DbBackend, TransactionTrait};

use crate::helpers::{recipe_body, spawn_app_with};

#[actix_rt::test]
async fn a_write_held_up_longer_than_the_timeout_is_told_to_retry() {
    let app = spawn_app_with(|s| s.db_busy_timeout = Duration::from_millis(200)).await;
    let host = app.register().await;

    // Another process's write, held open.
    let other = Database::connect(&app.database_url).await.unwrap();
    let sqlite = other.get_database_backend() == DbBackend::Sqlite;
    let held = other.begin().await.unwrap();
    held.execute_unprepared("CREATE TABLE held_up (x INTEGER)")
        .await
        .unwrap();

    let body = recipe_body("Held up", 1);
    let during = app.post("/api/v1/recipes", Some(&host.token), &body).await;
    if sqlite {
        during.assert_problem(503, "unavailable");
    } else {
        assert_eq!(during.status, 201, "{}", during.body);
    }

    held.commit().await.unwrap();
    let after = app.post("/api/v1/recipes", Some(&host.token), &body).await;
    assert_eq!(after.status, 201, "{}", after.body);
    app.handle.stop(true).await;
}
