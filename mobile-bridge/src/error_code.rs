use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code.
///
/// Clients branch on these, never on human-readable text; a code once shipped
/// keeps its meaning. The same code is used over HTTP (the `code` field of a
/// problem document) and over the WebSocket (`error` frames and error replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body is not valid JSON or not of the expected shape.
    InvalidBody,
    /// A path parameter is malformed (for example an id that is not a UUID).
    InvalidPath,
    /// A query parameter is malformed or out of range.
    InvalidQuery,
    /// A pagination cursor was not issued by this server.
    InvalidCursor,
    /// The body parsed but a field breaks a rule (length, range, format).
    ValidationFailed,
    /// No valid credentials: missing, expired, malformed or forged token.
    Unauthorized,
    /// Username or password is wrong.
    InvalidCredentials,
    /// A refresh token is unknown, expired, revoked or was reused.
    InvalidRefreshToken,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// No such resource.
    NotFound,
    /// The HTTP method is not supported by this resource.
    MethodNotAllowed,
    /// The request conflicts with the resource's current state.
    Conflict,
    /// The username is already taken.
    UsernameTaken,
    /// Too many requests; retry later.
    RateLimited,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The body's content type is not accepted here.
    UnsupportedMediaType,
    /// A dependency (database, session actor) is temporarily unavailable.
    Unavailable,
    /// A realtime frame is not valid JSON, has an unknown `type`, or lacks a
    /// field.
    InvalidFrame,
    /// A realtime frame names a session this connection has not joined.
    NotJoined,
    /// The client asked for a protocol version this server does not speak.
    UnsupportedProtocol,
    /// `start` applies to an idle timer only.
    TimerNotIdle,
    /// `pause` applies to a running timer only.
    TimerNotRunning,
    /// `resume` applies to a paused timer only.
    TimerNotPaused,
    /// The timer is finished: `reset` it or `goto` a step.
    TimerFinished,
    /// `previous` on the first step.
    TimerFirstStep,
    /// `goto` a step the recipe does not have.
    TimerNoSuchStep,
    /// `add_time` on a step without a countdown.
    TimerManualStep,
    /// The recipe has no steps to time.
    TimerNoSteps,
    /// `add_time` with zero seconds or more than a day either way.
    TimerBadSeconds,
    /// The watch pairing code expired: ask the watch for a new one.
    PairingExpired,
    /// The watch pairing code was already claimed (codes are single use).
    PairingUsed,
    /// The session's media room has as many viewers as it takes.
    RoomFull,
    /// An unexpected server-side failure; details are in the server's logs.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order (for documentation and tests).
    pub const ALL: [ErrorCode; 33] = [
        ErrorCode::InvalidBody,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidCursor,
        ErrorCode::ValidationFailed,
        ErrorCode::Unauthorized,
        ErrorCode::InvalidCredentials,
        ErrorCode::InvalidRefreshToken,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::UsernameTaken,
        ErrorCode::RateLimited,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unavailable,
        ErrorCode::InvalidFrame,
        ErrorCode::NotJoined,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::TimerNotIdle,
        ErrorCode::TimerNotRunning,
        ErrorCode::TimerNotPaused,
        ErrorCode::TimerFinished,
        ErrorCode::TimerFirstStep,
        ErrorCode::TimerNoSuchStep,
        ErrorCode::TimerManualStep,
        ErrorCode::TimerNoSteps,
        ErrorCode::TimerBadSeconds,
        ErrorCode::PairingExpired,
        ErrorCode::PairingUsed,
        ErrorCode::RoomFull,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidCursor => "invalid_cursor",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidRefreshToken => "invalid_refresh_token",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::TimerNotIdle => "timer_not_idle",
            ErrorCode::TimerNotRunning => "timer_not_running",
            ErrorCode::TimerNotPaused => "timer_not_paused",
            ErrorCode::TimerFinished => "timer_finished",
            ErrorCode::TimerFirstStep => "timer_first_step",
            ErrorCode::TimerNoSuchStep => "timer_no_such_step",
            ErrorCode::TimerManualStep => "timer_manual_step",
            ErrorCode::TimerNoSteps => "timer_no_steps",
            ErrorCode::TimerBadSeconds => "timer_bad_seconds",
            ErrorCode::PairingExpired => "pairing_expired",
            ErrorCode::PairingUsed => "pairing_used",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::Internal => "internal",
        }
    }
}

impl From<watch_sync::RefusalCode> for ErrorCode {
    fn from(code: watch_sync::RefusalCode) -> Self {
        use watch_sync::RefusalCode as R;
        match code {
            R::TimerNotIdle => ErrorCode::TimerNotIdle,
            R::TimerNotRunning => ErrorCode::TimerNotRunning,
            R::TimerNotPaused => ErrorCode::TimerNotPaused,
            R::TimerFinished => ErrorCode::TimerFinished,
            R::TimerFirstStep => ErrorCode::TimerFirstStep,
            R::TimerNoSuchStep => ErrorCode::TimerNoSuchStep,
            R::TimerManualStep => ErrorCode::TimerManualStep,
            R::TimerNoSteps => ErrorCode::TimerNoSteps,
            R::TimerBadSeconds => ErrorCode::TimerBadSeconds,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn wire_name_matches_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }
}
