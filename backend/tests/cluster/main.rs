//! Cluster tests: several real `simmer` processes (the release binary's code,
//! ports 0) on one PostgreSQL database and one Redis, with clients spread
//! over the nodes, as in production. Faults are real too: kill -9, SIGSTOP,
//! Redis restarted, a node's link to Redis cut.
//!
//! Needs PostgreSQL (SIMMER_TEST_POSTGRES_URL) and the `redis-server`
//! binary: each test starts a Redis of its own on a free port and ends it
//! (`scripts/test.sh` makes sure both are there).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../api/simmer_process.rs"]
mod simmer_process;
#[allow(dead_code)]
#[path = "../api/ws_client.rs"]
mod ws_client;

mod harness;

mod admission_spans_nodes;
mod clients_follow_the_drain;
mod drain_hands_over;
mod limits_span_nodes;
mod nodes_act_as_one;
mod owner_killed;
mod owner_paused;
mod presence_spans_nodes;
mod redis_trouble;
mod resume_elsewhere;
mod sqlite_is_refused;
