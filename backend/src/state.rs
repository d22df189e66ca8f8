//! What every handler can reach: built once per app in `startup`.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::{LoginThrottle, PasswordHasher, RefreshTokens, TokenKeys};
use crate::config::Settings;
use crate::live::SessionRegistry;
use crate::metrics::Metrics;

/// Shared application state (cheap to clone: handles and `Arc`s).
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub keys: Arc<TokenKeys>,
    pub passwords: PasswordHasher,
    pub refresh_tokens: RefreshTokens,
    pub login_throttle: LoginThrottle,
    pub registry: SessionRegistry,
    pub metrics: Metrics,
    /// Open WebSocket connections per user.
    pub ws_users: crate::gateway::UserConnections,
    /// Open watch feeds on this node, per device.
    pub watch_hub: crate::watch::WatchHub,
    /// Wrong pairing codes per user and per address.
    pub claim_throttle: LoginThrottle,
    /// Pairings asked for per address.
    pub pairing_throttle: LoginThrottle,
    /// Tells connection tasks that the node is stopping.
    pub shutdown: crate::shutdown::Shutdown,
}
