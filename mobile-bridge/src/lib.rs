//! Simmer's realtime protocol, shared by the server and every client.
//!
//! This crate owns the wire types that apps speak: the stable error codes that
//! both the REST API (`application/problem+json`) and the WebSocket gateway
//! send, and the identifiers that appear in frames. It depends on nothing
//! server-side, so a client can depend on it alone.

mod error_code;
mod ids;

pub use error_code::ErrorCode;
pub use ids::{RecipeId, SessionId, UserId};
