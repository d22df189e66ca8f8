//! Simmer's server: REST API with OpenAPI, persistence, and the live session
//! actors. `main.rs` is a thin shell around [`startup::Application`].

pub mod api;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod client_addr;
pub mod cluster;
pub mod config;
pub mod db;
pub mod error;
#[cfg(feature = "test-hooks")]
pub mod faults;
pub mod gateway;
pub mod handoff;
pub mod live;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod watch;
pub mod web;
pub mod websocket;

pub use config::{ConfigArgs, Settings};
pub use startup::Application;
