//! WebSockets on the raw TCP stream: the HTTP server hands an upgrade
//! request's connection to its handler ([`accept`], [`server`]), and
//! [`WebSocket`] speaks RFC 6455 on it without per-connection buffers while
//! idle, writing each outbound frame straight from its shared payload. The
//! realtime gateway (`/ws`) and the watch feed (`/watch/ws`) run on it.

pub mod batch;
pub mod conn;
pub mod frame;
pub mod server;
mod sockets;
mod upgrade;

pub use conn::{Limits, LocalFrame, Message, Outlet, WebSocket, WsError};
pub use sockets::{SocketSlot, Sockets};
pub use upgrade::accept;
