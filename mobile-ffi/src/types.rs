//! The records and enums of accounts, chat and events, each built from the
//! SDK's own type (the timer's are in `timer.rs`). The conversions take
//! every field by name (no `..`), so a field added to a wire type breaks this
//! build instead of going missing in apps.
//!
//! Names avoid clashes in the target languages: `RecipeTimer`, not `Timer`
//! (Foundation's `Timer` in Swift); a variant is never named like the type of
//! its field (`TimerChanged { timer }`: a Kotlin variant class would shadow
//! the type).

use mobile_bridge::client::Event;
use mobile_bridge::protocol;

use crate::timer::RecipeTimer;

/// Who is signed in.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Account {
    /// The user's id; for a guest, its ephemeral id. Chat messages carry it
    /// as `author.user_id`.
    pub user_id: String,
    /// The username; `None` for a guest.
    pub username: Option<String>,
    /// The name shown in chat.
    pub display_name: String,
    /// A guest: a viewer of one session only, whose token cannot be
    /// refreshed (ask for a new one).
    pub guest: bool,
}

/// The access token the client uses, for REST calls the SDK does not make
/// (`Authorization: Bearer <access_token>`), and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Credentials {
    /// The bearer token.
    pub access_token: String,
    /// When it expires, milliseconds since the Unix epoch (device clock):
    /// call `refresh()` before then.
    pub expires_at_ms: i64,
}

/// A participant's role in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    /// The session's host.
    Host,
    /// A signed-in viewer.
    Viewer,
    /// A viewer with a guest token.
    Guest,
}

impl From<protocol::Role> for Role {
    fn from(role: protocol::Role) -> Self {
        match role {
            protocol::Role::Host => Role::Host,
            protocol::Role::Viewer => Role::Viewer,
            protocol::Role::Guest => Role::Guest,
        }
    }
}

/// Who wrote a chat message.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Author {
    /// The author's user id (a guest's ephemeral id for a guest).
    pub user_id: String,
    /// The author's display name.
    pub name: String,
    /// The author's role in the session.
    pub role: Role,
}

/// A chat message, as delivered: in order, each once, also across
/// reconnects.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChatMessage {
    /// The session it was sent to.
    pub session_id: String,
    /// Gap-free per session, from 1.
    pub seq: u64,
    /// Who wrote it.
    pub author: Author,
    /// The text; empty when `deleted`.
    pub text: String,
    /// RFC 3339, server time.
    pub sent_at: String,
    /// The sender's idempotency key (set on messages sent through the SDK).
    pub client_msg_id: Option<String>,
    /// The host deleted it.
    pub deleted: bool,
}

impl From<protocol::ChatMessage> for ChatMessage {
    fn from(m: protocol::ChatMessage) -> Self {
        let protocol::ChatMessage {
            session_id,
            seq,
            author,
            text,
            sent_at,
            client_msg_id,
            deleted,
        } = m;
        let protocol::Author { id, name, role } = author;
        Self {
            session_id: session_id.to_string(),
            seq,
            author: Author {
                user_id: id.to_string(),
                name,
                role: role.into(),
            },
            text,
            sent_at,
            client_msg_id,
            deleted,
        }
    }
}

/// The acknowledgement of a sent message: it is durable and has its place.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChatAck {
    /// The session it was sent to.
    pub session_id: String,
    /// Its sequence number (the same as in the `Chat` event every member gets).
    pub seq: u64,
    /// RFC 3339, server time.
    pub sent_at: String,
    /// The idempotency key the SDK sent it with (kept across resends).
    pub client_msg_id: String,
}

impl From<protocol::ChatAck> for ChatAck {
    fn from(a: protocol::ChatAck) -> Self {
        let protocol::ChatAck {
            session_id,
            seq,
            sent_at,
            client_msg_id,
        } = a;
        Self {
            session_id: session_id.to_string(),
            seq,
            sent_at,
            client_msg_id,
        }
    }
}

/// Everything needed to render a session just joined.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct JoinSnapshot {
    /// The session joined.
    pub session_id: String,
    /// Its title.
    pub title: String,
    /// `scheduled`, `live` or `ended`.
    pub state: String,
    /// This client's role in it.
    pub role: Role,
    /// Viewers now.
    pub viewer_count: u32,
    /// The recipe timer now.
    pub timer: RecipeTimer,
    /// The newest chat sequence number at the join (0: none yet); every
    /// message after it arrives as a `Chat` event.
    pub last_seq: u64,
}

impl From<protocol::JoinSnapshot> for JoinSnapshot {
    fn from(s: protocol::JoinSnapshot) -> Self {
        let protocol::JoinSnapshot {
            session_id,
            title,
            state,
            role,
            viewer_count,
            timer,
            last_seq,
        } = s;
        Self {
            session_id: session_id.to_string(),
            title,
            state,
            role: role.into(),
            viewer_count,
            timer: timer.into(),
            last_seq,
        }
    }
}

/// The state of a session's live video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum MediaState {
    /// The host's video is flowing.
    Publishing,
    /// The host is not publishing; players stay connected.
    NotPublishing,
    /// The relay restarted: set WHEP playback up again.
    Reconnect,
}

impl From<protocol::MediaState> for MediaState {
    fn from(state: protocol::MediaState) -> Self {
        match state {
            protocol::MediaState::Publishing => MediaState::Publishing,
            protocol::MediaState::NotPublishing => MediaState::NotPublishing,
            protocol::MediaState::Reconnect => MediaState::Reconnect,
        }
    }
}

/// What the server tells the app, in order (`SimmerClient.next_event`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SimmerEvent {
    /// A chat message: in order, each once, also across reconnects.
    Chat {
        /// The message.
        message: ChatMessage,
    },
    /// The host deleted a message.
    ChatDeleted {
        /// The session.
        session_id: String,
        /// The deleted message's sequence number.
        seq: u64,
    },
    /// The number of viewers changed.
    Presence {
        /// The session.
        session_id: String,
        /// Viewers now.
        viewer_count: u32,
    },
    /// The recipe timer changed.
    TimerChanged {
        /// The session.
        session_id: String,
        /// The timer now.
        timer: RecipeTimer,
    },
    /// The session's live video changed.
    Media {
        /// The session.
        session_id: String,
        /// The video's state now.
        state: MediaState,
    },
    /// The host ended a joined session (it is left).
    SessionEnded {
        /// The session.
        session_id: String,
    },
    /// The link dropped; the client is reconnecting (attempts count from 1).
    Reconnecting {
        /// This attempt's number.
        attempt: u32,
    },
    /// Connected again: every joined session re-joined and resumed from the
    /// last message seen, unacknowledged sends repeated (never doubled).
    Reconnected,
    /// A reconnect was refused for the token (401: expired or revoked; 403:
    /// it may no longer connect) and it could not be refreshed. The client
    /// waits, joined sessions and unacknowledged sends kept; sign in again
    /// (a guest: ask for a new guest token), or disconnect.
    TokenRefused {
        /// The HTTP status of the refusal.
        status: u16,
        /// The server's error code, when it sent one (`unauthorized`, ...).
        code: Option<String>,
        /// Why, for people.
        detail: String,
    },
    /// The access token expired while the app was away and the client
    /// refreshed it by itself: store the new pair (the old refresh token is
    /// spent).
    CredentialsRefreshed {
        /// The fresh access token and its expiry.
        credentials: Credentials,
    },
}

impl From<Event> for SimmerEvent {
    fn from(event: Event) -> Self {
        match event {
            Event::Chat(message) => SimmerEvent::Chat {
                message: message.into(),
            },
            Event::ChatDeleted { session_id, seq } => SimmerEvent::ChatDeleted {
                session_id: session_id.to_string(),
                seq,
            },
            Event::Presence {
                session_id,
                viewer_count,
            } => SimmerEvent::Presence {
                session_id: session_id.to_string(),
                viewer_count,
            },
            Event::Timer { session_id, timer } => SimmerEvent::TimerChanged {
                session_id: session_id.to_string(),
                timer: timer.into(),
            },
            Event::Media { session_id, state } => SimmerEvent::Media {
                session_id: session_id.to_string(),
                state: state.into(),
            },
            Event::SessionEnded { session_id } => SimmerEvent::SessionEnded {
                session_id: session_id.to_string(),
            },
            Event::Reconnecting { attempt } => SimmerEvent::Reconnecting { attempt },
            Event::Reconnected => SimmerEvent::Reconnected,
            Event::TokenRefused {
                status,
                code,
                message,
            } => SimmerEvent::TokenRefused {
                status,
                code: code.map(|c| c.as_str().to_owned()),
                detail: message,
            },
        }
    }
}
