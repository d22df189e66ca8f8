//! The realtime gateway: `GET /ws`. Authenticates before the upgrade (401 on
//! a missing or bad token), negotiates the protocol version, then runs one
//! connection loop per socket (see [`connection`]).

mod connection;
mod fanout;

pub use connection::RECONNECT_AFTER_MS;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use mobile_bridge::protocol::{PROTOCOL_VERSION, SUBPROTOCOL};
use mobile_bridge::ErrorCode;
use serde::Deserialize;

use crate::auth::{guest, principal_for_token, request_token, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// Connection ids, unique per process.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Open connections per user, to enforce the per-user limit: on this node,
/// and in a cluster on every node together (counted in Redis; while Redis
/// does not answer, each node's own count still holds).
#[derive(Debug, Clone, Default)]
pub struct UserConnections {
    open: Arc<Mutex<HashMap<Uuid, u32>>>,
    cluster: Option<crate::cluster::Cluster>,
}

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    users: UserConnections,
    user: Uuid,
    /// Counted in the cluster too.
    shared: bool,
    /// A guest's second slot, counted for its whole network.
    network: Option<Box<ConnectionSlot>>,
}

impl UserConnections {
    /// Counted per node, or (with `cluster`) across the cluster too.
    pub fn new(cluster: Option<crate::cluster::Cluster>) -> Self {
        Self {
            open: Arc::default(),
            cluster,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, u32>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a new connection of `user`, unless it has `max` already.
    pub async fn acquire(&self, user: Uuid, max: u32) -> Option<ConnectionSlot> {
        {
            let mut map = self.map();
            let open = map.entry(user).or_insert(0);
            if *open >= max {
                return None;
            }
            *open += 1;
        }
        let mut slot = ConnectionSlot {
            users: self.clone(),
            user,
            shared: false,
            network: None,
        };
        if let Some(cluster) = &self.cluster {
            match cluster.acquire_connection(user, max).await {
                Ok(true) => slot.shared = true,
                Ok(false) => return None,
                Err(_) => {} // Redis is away: this node's count holds.
            }
        }
        Some(slot)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        {
            let mut map = self.users.map();
            if let Some(open) = map.get_mut(&self.user) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    map.remove(&self.user);
                }
            }
        }
        if let (true, Some(cluster)) = (self.shared, self.users.cluster.clone()) {
            let user = self.user;
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = cluster.release_connection(user).await;
                });
            }
        }
    }
}

/// Query parameters of `/ws`.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// The access token, for clients that cannot set headers (browsers).
    pub token: Option<String>,
    /// The protocol version the client speaks (default: the current one).
    pub protocol: Option<u32>,
}

/// `GET /ws`: upgrade to the realtime protocol.
pub async fn ws(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    let token = match request_token(&req)? {
        Some(token) => token,
        None => query.token.clone().ok_or_else(|| {
            ApiError::unauthorized("send the access token as `Authorization: Bearer` or `?token=`")
        })?,
    };
    let principal = principal_for_token(&state, &token)?;
    let expires_at_s = state.keys.verify(&token)?.exp;
    let max = state.settings.ws_max_connections_per_user;
    let mut slot = state
        .ws_users
        .acquire(principal.id(), max)
        .await
        .ok_or_else(|| {
            ApiError::rate_limited(
                format!("at most {max} open connections per user; close one first"),
                std::time::Duration::from_secs(1),
            )
        })?;
    if let Principal::Guest { id, .. } = &principal {
        // New guest tokens from the same place are the same network.
        let max = max.saturating_mul(guest::NETWORK_SHARE);
        let network = state
            .ws_users
            .acquire(guest::net_key(*id), max)
            .await
            .ok_or_else(|| {
                ApiError::rate_limited(
                    format!("at most {max} open guest connections per address; close one first"),
                    std::time::Duration::from_secs(1),
                )
            })?;
        slot.network = Some(Box::new(network));
    }

    if let Some(version) = query.protocol {
        if version != PROTOCOL_VERSION {
            return Err(ApiError::client(
                ErrorCode::UnsupportedProtocol,
                format!("this server speaks protocol {PROTOCOL_VERSION}, not {version}"),
            ));
        }
    }
    let offered = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(str::trim).collect::<Vec<_>>());
    let subprotocol = match &offered {
        Some(list) if list.contains(&SUBPROTOCOL) => Some(SUBPROTOCOL),
        Some(list) => {
            return Err(ApiError::client(
                ErrorCode::UnsupportedProtocol,
                format!("offered subprotocols {list:?}; this server speaks {SUBPROTOCOL}"),
            ))
        }
        None => None,
    };

    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let credentials = connection::Credentials {
        principal,
        expires_at_s,
    };
    let limits = crate::websocket::Limits {
        max_message: state.settings.ws_max_frame_bytes,
        max_backlog: state.settings.ws_max_backlog_bytes,
        send_buffer: state.settings.ws_send_buffer_bytes,
    };
    let shutdown = state.shutdown.listen();
    let sockets = state.websockets.clone();
    crate::websocket::accept(&req, &sockets, subprotocol, limits, move |ws| {
        connection::run(id, slot, credentials, state, ws, shutdown)
    })
}
