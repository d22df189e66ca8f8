//! The frames the live side publishes about a session (its actors publish
//! their own chat and timer frames): encoded once, as bus events.

use mobile_bridge::protocol::{Author, MediaState, ServerMsg};
use mobile_bridge::{ErrorCode, SessionId};
use uuid::Uuid;

use crate::bus::{BusEvent, EventKind};

/// The session is over: members stop following it after this frame.
pub(super) fn session_ended(id: Uuid) -> BusEvent {
    let frame = ServerMsg::SessionEnded {
        session_id: SessionId(id),
    }
    .encode();
    BusEvent::new(frame, None).last()
}

/// The session is over: paired watches say goodbye.
pub(super) fn watch_bye(reason: &str) -> BusEvent {
    let bye = watch_sync::WatchFrame::Bye {
        server_time_ms: chrono::Utc::now().timestamp_millis(),
        reason: reason.into(),
        after_ms: None,
    }
    .encode();
    BusEvent::new(bye, None).last()
}

/// The host turned guest access off: for guests only, who must go.
pub(super) fn guests_revoked() -> BusEvent {
    let frame = ServerMsg::Error {
        code: ErrorCode::Forbidden,
        message: "the host turned guest access off for this session".into(),
    }
    .encode();
    BusEvent::new(frame, None).of_kind(EventKind::GuestsRevoked)
}

/// The media room was re-created: publishers and players set up their
/// WHIP/WHEP sessions again.
pub(super) fn media_reconnect(id: Uuid) -> BusEvent {
    let frame = ServerMsg::Media {
        session_id: SessionId(id),
        state: MediaState::Reconnect,
    }
    .encode();
    BusEvent::new(frame, None)
}

/// Who is watching now, and who came and went since the last one.
pub(super) fn presence(
    id: Uuid,
    viewer_count: u32,
    joined: Vec<Author>,
    left: Vec<Author>,
) -> BusEvent {
    let frame = ServerMsg::Presence {
        session_id: SessionId(id),
        viewer_count,
        joined,
        left,
    }
    .encode();
    BusEvent::new(frame, None)
}
