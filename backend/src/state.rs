//! What every handler can reach: built once per app in `startup`.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::{LoginGuard, LoginThrottle, PasswordHasher, RefreshTokens, TokenKeys};
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
    /// Failed logins per (username, address) and per address.
    pub logins: LoginGuard,
    pub registry: SessionRegistry,
    pub metrics: Metrics,
    /// Open WebSocket connections per user.
    pub ws_users: crate::gateway::UserConnections,
    /// Open watch feeds on this node, per device.
    pub watch_hub: crate::watch::WatchHub,
    /// Wrong pairing codes per user and per address.
    pub claim_throttle: LoginThrottle,
    /// Guest tokens minted per address.
    pub guest_throttle: LoginThrottle,
    /// Pairings asked for per address.
    pub pairing_throttle: LoginThrottle,
    /// Tells connection tasks that the node is stopping.
    pub shutdown: crate::shutdown::Shutdown,
}
