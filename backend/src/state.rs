//! What every handler can reach: built once per app in `startup`.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::{PasswordHasher, RefreshTokens, Throttles, TokenKeys};
use crate::config::Settings;
use crate::live::Sessions;
use crate::metrics::Metrics;

/// Shared application state (cheap to clone: handles and `Arc`s).
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub keys: Arc<TokenKeys>,
    pub passwords: PasswordHasher,
    pub refresh_tokens: RefreshTokens,
    /// What guessing and anonymous clients may try, per address and user.
    pub throttles: Throttles,
    /// The live sessions: every command to one goes through this handle.
    pub sessions: Sessions,
    pub metrics: Metrics,
    /// Open WebSocket connections per user.
    pub ws_users: crate::gateway::UserConnections,
    /// Upgraded sockets on this node (`/ws` and watch feeds), bounded.
    pub websockets: crate::websocket::Sockets,
    /// Tells connection tasks that the node is stopping.
    pub shutdown: crate::shutdown::Shutdown,
}
