//! Simmer's realtime protocol, shared by the server and every client.
//!
//! This crate owns the wire types that apps speak: the frames of the
//! WebSocket protocol (`/ws`), the stable error codes that both the REST API
//! (`application/problem+json`) and the gateway send, and the identifiers that
//! appear in frames. It depends on nothing server-side, so a client can depend
//! on it alone.

#[cfg(feature = "client")]
pub mod client;
mod error_code;
mod ids;
pub mod protocol;
#[cfg(feature = "client")]
pub mod tls;
#[cfg(feature = "client")]
pub mod watch_client;

pub use error_code::ErrorCode;
pub use ids::{RecipeId, SessionId, UserId};
