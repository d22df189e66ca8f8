//! Integration tests: each boots the real `simmer` on port 0 with its own
//! database (SQLite by default; PostgreSQL when SIMMER_TEST_DATABASE=postgres)
//! and talks to it over real sockets.

// The harness and helpers are test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;
mod simmer_process;
mod ws_client;

mod a_superseded_node_cannot_write;
mod a_write_held_up_too_long;
mod accounts;
mod acknowledged_chat_survives_kill_9;
mod anonymous_load_keeps_memory_flat;
mod bad_input_gets_problem_json;
mod bad_values_name_their_source;
mod binary_runs_embedded_default;
mod browsers_on_other_origins;
mod chat_dedupe_window_survives_restart;
mod chat_moderation_and_rest;
mod chat_of_many_sessions_at_once;
mod chat_reaches_members_either_way_of_writing;
mod chat_resend_answers_what_is_stored;
mod chat_survives_random_disconnects;
mod database_connections_that_break;
mod database_errors_name_the_database;
mod display_names_and_chat_refuse_hidden_text;
mod guests_cannot_mint_their_way_around_limits;
mod live_sessions_survive_restart;
mod login_lockout_per_address;
mod openapi_spec;
mod operations;
mod output_into_a_closed_pipe_ends_quietly;
mod raw_bodies_get_problem_json;
mod realtime_chat;
mod realtime_limits;
mod recipes_crud;
mod refresh_token_rotation;
mod sdk_over_tls;
mod sdk_resumes_after_drops;
mod sdk_watch_client;
mod session_actor_survives_panic;
mod session_lifecycle;
mod stopping_drains_connections;
mod timer_control;
mod timer_refuses_out_of_range_seconds;
mod timer_survives_restart;
mod upgrade_without_refusing;
mod watch_feed;
mod watch_feeds_per_device_are_capped;
mod watch_pairing;
mod web_pages;
mod websocket_on_the_raw_socket;
mod ws_closes_when_token_expires;
