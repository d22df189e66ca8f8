//! The realtime WebSocket protocol (`GET /ws`): every frame is a JSON text
//! message with a `type`. A client frame may carry `ref`, which the server
//! echoes in the `reply` to it. See `docs/protocol.md` for the rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use watch_sync::{TimerActionName, TimerView};

use crate::{ErrorCode, SessionId, UserId};

/// The protocol version this crate speaks. A client asks for it with the
/// WebSocket subprotocol `simmer.v1` or the query `?protocol=1`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The WebSocket subprotocol name of [`PROTOCOL_VERSION`].
pub const SUBPROTOCOL: &str = "simmer.v1";

/// A client's correlation id, echoed in the reply: a string or a number, as
/// the client chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Ref {
    Number(u64),
    Text(String),
}

/// A frame from client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientFrame {
    /// Echoed by the reply to this frame.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Ref>,
    #[serde(flatten)]
    pub msg: ClientMsg,
}

/// What a client can ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum ClientMsg {
    /// Join a session's live channel. With `last_seq`, every chat message
    /// after it is delivered first, exactly once and in order.
    #[serde(rename = "join")]
    Join {
        session_id: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seq: Option<u64>,
    },
    /// Leave a joined session.
    #[serde(rename = "leave")]
    Leave { session_id: SessionId },
    /// Send a chat message to a joined session. `client_msg_id` makes the
    /// send idempotent: resending it returns the first acknowledgement.
    #[serde(rename = "chat.send")]
    ChatSend {
        session_id: SessionId,
        text: String,
        client_msg_id: String,
    },
    /// The host drives the recipe timer of a joined session (the same
    /// actions as `POST /sessions/{id}/timer`); the reply carries the timer.
    #[serde(rename = "timer.control")]
    TimerControl {
        session_id: SessionId,
        action: TimerActionName,
        /// For `goto`: the step, counted from 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<u32>,
        /// For `add_time`: seconds to add (negative to remove).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<i64>,
    },
    /// Application-level keep-alive; answered by `pong`.
    #[serde(rename = "ping")]
    Ping,
    /// Swaps the connection's access token for a fresh one of the same user
    /// (after a refresh), so the connection outlives the old token's expiry.
    /// The reply's body is `{expires_at}` (unix seconds).
    #[serde(rename = "auth")]
    Auth { token: String },
}

/// The state of a session's live video, as `media` frames tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// The host's video is flowing: WHEP players receive it.
    Publishing,
    /// The host is not publishing (stopped, or its connection was lost);
    /// players stay connected and resume when it comes back.
    NotPublishing,
    /// The relay restarted: set up WHIP/WHEP again.
    Reconnect,
}

/// Who wrote a chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Author {
    pub id: UserId,
    pub name: String,
    pub role: Role,
}

/// A participant's role in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The session's host.
    Host,
    /// A signed-in viewer.
    Viewer,
    /// A viewer with a guest token.
    Guest,
}

/// A chat message as delivered (`chat.message`) and as listed over REST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatMessage {
    pub session_id: SessionId,
    /// Gap-free per session, from 1.
    pub seq: u64,
    pub author: Author,
    pub text: String,
    /// RFC 3339, server time.
    #[schemars(extend("format" = "date-time"))]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub sent_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// The host deleted it: `text` is empty. Sent only when true.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether a request worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStatus {
    Ok,
    Error,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// The body of a successful `join` reply: everything needed to render the
/// session without another request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JoinSnapshot {
    pub session_id: SessionId,
    pub title: String,
    pub state: String,
    pub role: Role,
    pub viewer_count: u32,
    pub timer: TimerView,
    /// The newest chat sequence number at the time of the join (0: none yet).
    pub last_seq: u64,
}

/// The body of a successful `chat.send` reply: the message is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatAck {
    pub session_id: SessionId,
    pub seq: u64,
    /// RFC 3339, server time.
    #[schemars(extend("format" = "date-time"))]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub sent_at: String,
    pub client_msg_id: String,
}

/// A frame from server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum ServerMsg {
    /// First frame on every connection: the negotiated version and the
    /// connection's limits.
    #[serde(rename = "hello")]
    Hello {
        protocol: u32,
        server_time_ms: i64,
        /// Send something (a `ping` will do) at least this often.
        heartbeat_interval_ms: u64,
        max_frame_bytes: usize,
        max_message_chars: usize,
    },
    /// The answer to a client frame that carried a `ref` (or to any
    /// `join`/`leave`/`chat.send`).
    #[serde(rename = "reply")]
    Reply {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        status: ReplyStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
    },
    /// A chat message (live, or replayed after a `join` with `last_seq`).
    #[serde(rename = "chat.message")]
    ChatMessage(ChatMessage),
    /// The host deleted a message.
    #[serde(rename = "chat.deleted")]
    ChatDeleted { session_id: SessionId, seq: u64 },
    /// Who is watching, coalesced (a few per second at most).
    #[serde(rename = "presence")]
    Presence {
        session_id: SessionId,
        viewer_count: u32,
        /// Who arrived since the previous `presence` (at most 50 names; a
        /// user with several connections arrives once).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        joined: Vec<Author>,
        /// Who left since the previous `presence` (at most 50 names).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        left: Vec<Author>,
    },
    /// The session's live video changed: the host started or stopped
    /// publishing, or (`reconnect`) the relay restarted and WHIP/WHEP
    /// sessions must be set up again.
    #[serde(rename = "media")]
    Media {
        session_id: SessionId,
        state: MediaState,
    },
    /// The recipe timer changed.
    #[serde(rename = "timer")]
    Timer {
        session_id: SessionId,
        #[serde(flatten)]
        timer: TimerView,
    },
    /// The host ended the session; the server leaves it for the client.
    #[serde(rename = "session.ended")]
    SessionEnded { session_id: SessionId },
    /// The answer to `ping`.
    #[serde(rename = "pong")]
    Pong { server_time_ms: i64 },
    /// A frame that could not be handled and had no `ref` to reply to.
    #[serde(rename = "error")]
    Error { code: ErrorCode, message: String },
    /// Reconnect (with `last_seq`) after `after_ms`: the server is shutting
    /// down, or this client fell too far behind.
    #[serde(rename = "reconnect")]
    Reconnect { reason: String, after_ms: u64 },
}

impl ServerMsg {
    /// A successful reply with a body.
    pub fn ok(reference: Option<Ref>, body: serde_json::Value) -> Self {
        ServerMsg::Reply {
            reference,
            status: ReplyStatus::Ok,
            body: Some(body),
            error: None,
        }
    }

    /// A failed reply.
    pub fn err(reference: Option<Ref>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMsg::Reply {
            reference,
            status: ReplyStatus::Error,
            body: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }

    /// The frame as JSON text.
    pub fn encode(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys,
        // no custom serialisers that error.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","code":"internal","message":"encode: {e}"}}"#)
        })
    }
}

/// The JSON Schema of what a client sends, one file per direction so that
/// generators (quicktype, datamodel-codegen) take it as it is (committed as
/// `docs/protocol/client-frame.schema.json`).
pub fn client_frame_schema() -> serde_json::Value {
    generated(schemars::schema_for!(ClientFrame))
}

/// The JSON Schema of what the server sends (committed as
/// `docs/protocol/server-frame.schema.json`).
pub fn server_frame_schema() -> serde_json::Value {
    generated(schemars::schema_for!(ServerMsg))
}

fn generated(schema: schemars::Schema) -> serde_json::Value {
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "$comment".into(),
            "Generated from mobile-bridge's types; do not edit.".into(),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn client_frames_parse_with_and_without_ref() {
        let id = Uuid::now_v7();
        let frame: ClientFrame = serde_json::from_str(&format!(
            r#"{{"type":"join","session_id":"{id}","last_seq":7,"ref":"a1"}}"#
        ))
        .unwrap();
        assert_eq!(frame.reference, Some(Ref::Text("a1".into())));
        assert_eq!(
            frame.msg,
            ClientMsg::Join {
                session_id: SessionId(id),
                last_seq: Some(7)
            }
        );
        let ping: ClientFrame = serde_json::from_str(r#"{"type":"ping","ref":3}"#).unwrap();
        assert_eq!(ping.reference, Some(Ref::Number(3)));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"dance"}"#).is_err());
    }

    #[test]
    fn server_frames_carry_their_type() {
        let json: serde_json::Value = serde_json::from_str(
            &ServerMsg::err(Some(Ref::Number(1)), ErrorCode::NotJoined, "join first").encode(),
        )
        .unwrap();
        assert_eq!(json["type"], "reply");
        assert_eq!(json["ref"], 1);
        assert_eq!(json["status"], "error");
        assert_eq!(json["error"]["code"], "not_joined");
        let pong: serde_json::Value =
            serde_json::from_str(&ServerMsg::Pong { server_time_ms: 5 }.encode()).unwrap();
        assert_eq!(
            pong,
            serde_json::json!({"type": "pong", "server_time_ms": 5})
        );
    }

    #[test]
    fn the_schema_names_every_frame_type() {
        let schema = format!("{}{}", client_frame_schema(), server_frame_schema());
        for t in [
            "join",
            "leave",
            "chat.send",
            "ping",
            "auth",
            "hello",
            "reply",
            "chat.message",
            "chat.deleted",
            "presence",
            "timer",
            "session.ended",
            "pong",
            "error",
            "reconnect",
        ] {
            assert!(schema.contains(&format!("\"{t}\"")), "{t} missing");
        }
    }
}
