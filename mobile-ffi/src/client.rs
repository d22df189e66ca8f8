//! `SimmerClient`: sign in (an account or a guest), join sessions, chat with
//! acknowledgements, and read the server's events in order. A thin shell on
//! `mobile_bridge::client`, which reconnects and resumes by itself.

use std::sync::Arc;

use mobile_bridge::client::{Client, ClientConfig, Events};
use mobile_bridge::SessionId;
use serde_json::json;

use crate::error::SimmerError;
use crate::rest::{AuthResponse, GuestToken, Server};
use crate::types::{Account, ChatAck, Credentials, JoinSnapshot, SimmerEvent};
use crate::{lock, now_ms};

/// A signed-in connection to Simmer: one WebSocket, shared by every joined
/// session, kept alive and resumed after network changes without losing or
/// repeating a message. Sign in with `sign_in` or `sign_in_as_guest`, then
/// `join`, `send_chat`, and read `next_event` in a loop.
#[derive(uniffi::Object)]
pub struct SimmerClient {
    client: Client,
    events: tokio::sync::Mutex<Events>,
    account: Account,
    server: Server,
    tokens: std::sync::Mutex<Tokens>,
    /// Held during a refresh: refresh tokens are single use, and the server
    /// treats a second use as theft.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SimmerClient {
    // Without the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimmerClient")
            .field("account", &self.account)
            .field("server", &self.server.http)
            .finish_non_exhaustive()
    }
}

struct Tokens {
    credentials: Credentials,
    /// `None` for a guest.
    refresh_token: Option<String>,
}

fn credentials(access_token: String, expires_in_s: u64) -> Credentials {
    let ttl_ms = i64::try_from(expires_in_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    Credentials {
        access_token,
        expires_at_ms: now_ms().saturating_add(ttl_ms),
    }
}

pub(crate) fn session_id(id: &str) -> Result<SessionId, SimmerError> {
    id.trim()
        .parse()
        .map_err(|e| SimmerError::invalid(format!("session id {id:?} is not a UUID: {e}")))
}

#[uniffi::export(async_runtime = "tokio")]
impl SimmerClient {
    /// Signs in with a username and password (`POST /api/v1/auth/login`)
    /// and connects. `base_url` is `https://host` (or `http://` on a test
    /// server); `tls_roots` are extra trusted roots in PEM (a private CA),
    /// usually empty.
    #[uniffi::constructor]
    pub async fn sign_in(
        base_url: String,
        username: String,
        password: String,
        tls_roots: Vec<String>,
    ) -> Result<Arc<Self>, SimmerError> {
        let server = Server::new(&base_url, tls_roots)?;
        let auth: AuthResponse = server
            .post(
                "/auth/login",
                &json!({"username": username, "password": password}),
            )
            .await?;
        let account = Account {
            user_id: auth.user.id,
            username: Some(auth.user.username),
            display_name: auth.user.display_name,
            guest: false,
        };
        let tokens = Tokens {
            credentials: credentials(auth.access_token, auth.expires_in),
            refresh_token: Some(auth.refresh_token),
        };
        Self::connect(server, account, tokens).await
    }

    /// Joins as a guest, without an account (`POST
    /// /api/v1/sessions/{id}/guest-tokens`): a viewer of that one session,
    /// shown in chat as `display_name`. Fails with `forbidden` when the
    /// session does not allow guests.
    #[uniffi::constructor]
    pub async fn sign_in_as_guest(
        base_url: String,
        session_id: String,
        display_name: String,
        tls_roots: Vec<String>,
    ) -> Result<Arc<Self>, SimmerError> {
        let server = Server::new(&base_url, tls_roots)?;
        let session = self::session_id(&session_id)?;
        let token: GuestToken = server
            .post(
                &format!("/sessions/{session}/guest-tokens"),
                &json!({"display_name": display_name}),
            )
            .await?;
        let account = Account {
            user_id: token.guest_id,
            username: None,
            display_name,
            guest: true,
        };
        let tokens = Tokens {
            credentials: credentials(token.access_token, token.expires_in),
            refresh_token: None,
        };
        Self::connect(server, account, tokens).await
    }

    /// Who is signed in.
    pub fn account(&self) -> Account {
        self.account.clone()
    }

    /// The current access token and its expiry, for REST calls of the app's
    /// own (the host's timer controls, say).
    pub fn credentials(&self) -> Credentials {
        lock(&self.tokens).credentials.clone()
    }

    /// Exchanges the refresh token for a fresh pair (`POST
    /// /api/v1/auth/refresh`) and hands the new access token to the open
    /// connection, so it outlives the old one's expiry. Call it before
    /// `credentials().expires_at_ms` (when the app comes to the foreground,
    /// say). Guests cannot refresh (`InvalidArgument`): they ask for a new
    /// guest token.
    pub async fn refresh(&self) -> Result<Credentials, SimmerError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let refresh_token = lock(&self.tokens).refresh_token.clone().ok_or_else(|| {
            SimmerError::invalid("a guest token cannot be refreshed: sign in as a guest again")
        })?;
        let auth: AuthResponse = self
            .server
            .post("/auth/refresh", &json!({"refresh_token": refresh_token}))
            .await?;
        let fresh = credentials(auth.access_token, auth.expires_in);
        {
            let mut tokens = lock(&self.tokens);
            tokens.credentials = fresh.clone();
            tokens.refresh_token = Some(auth.refresh_token);
        }
        self.client.set_token(fresh.access_token.clone()).await;
        Ok(fresh)
    }

    /// Joins a live session: its events arrive from now on, and after any
    /// reconnect it is re-joined and resumed from the last message seen.
    pub async fn join(&self, session_id: String) -> Result<JoinSnapshot, SimmerError> {
        let session = self::session_id(&session_id)?;
        Ok(self.client.join(session).await?.into())
    }

    /// Leaves a joined session.
    pub async fn leave(&self, session_id: String) -> Result<(), SimmerError> {
        let session = self::session_id(&session_id)?;
        Ok(self.client.leave(session).await?)
    }

    /// Sends a chat message to a joined session; returns once the server has
    /// made it durable, with its sequence number. Across a reconnect it is
    /// resent with the same idempotency key: delivered once.
    pub async fn send_chat(
        &self,
        session_id: String,
        text: String,
    ) -> Result<ChatAck, SimmerError> {
        let session = self::session_id(&session_id)?;
        Ok(self.client.send_chat(session, text).await?.into())
    }

    /// The next event, in the order the server sent them; waits until there
    /// is one. `None` once the client is disconnected. Call it in one loop
    /// (one caller at a time gets each event).
    ///
    /// When a reconnect is refused because the access token expired (the
    /// app slept past it), a signed-in client refreshes by itself and goes
    /// on: `CredentialsRefreshed` carries the new pair (the refresh token is
    /// single use: store it). A guest, or a refresh that fails, gets
    /// `TokenRefused`: sign in again.
    pub async fn next_event(&self) -> Option<SimmerEvent> {
        let event = self.events.lock().await.recv().await?;
        if let mobile_bridge::client::Event::TokenRefused { status: 401, .. } = &event {
            if !self.account.guest {
                if let Ok(credentials) = self.refresh().await {
                    return Some(SimmerEvent::CredentialsRefreshed { credentials });
                }
            }
        }
        Some(event.into())
    }

    /// Drops the connection as a network failure would, for tests and demos:
    /// the client reconnects (`Reconnecting`, `Reconnected` events) and
    /// resumes by itself.
    pub async fn drop_connection(&self) {
        self.client.drop_connection().await;
    }

    /// Closes the connection for good: calls waiting for a reply fail with
    /// `Closed`, and `next_event` returns `None` once the events already
    /// received are read.
    pub async fn disconnect(&self) {
        self.client.close().await;
    }
}

impl SimmerClient {
    async fn connect(
        server: Server,
        account: Account,
        tokens: Tokens,
    ) -> Result<Arc<Self>, SimmerError> {
        let mut config =
            ClientConfig::new(server.ws.clone(), tokens.credentials.access_token.clone());
        config.tls_roots.clone_from(&server.tls_roots);
        let (client, events) = Client::connect(config).await?;
        Ok(Arc::new(Self {
            client,
            events: tokio::sync::Mutex::new(events),
            account,
            server,
            tokens: std::sync::Mutex::new(tokens),
            refreshing: tokio::sync::Mutex::new(()),
        }))
    }
}
