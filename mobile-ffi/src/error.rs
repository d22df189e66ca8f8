//! The one error type of the bindings: a Kotlin `SimmerException`, a Swift
//! `SimmerError`, a Python `SimmerError`.

use mobile_bridge::client::ClientError;
use mobile_bridge::watch_client::WatchError;

/// Why a call failed. Branch on `Server.code`: the server's stable error
/// codes (`invalid_credentials`, `forbidden`, `not_found`, `not_joined`,
/// `rate_limited`, `pairing_expired`, ...) as listed in `docs/api.md`.
// No field is called `message`: in Kotlin it would clash with
// `Throwable.message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum SimmerError {
    /// The server refused the request.
    #[error("{code}: {detail}")]
    Server {
        /// The stable, machine-readable code (snake_case).
        code: String,
        /// What went wrong, for people (not to branch on).
        detail: String,
    },
    /// The server could not be reached, the TLS handshake failed, or
    /// something between answered instead of Simmer (a proxy's error page).
    #[error("network: {reason}")]
    Network {
        /// What failed, for logs.
        reason: String,
    },
    /// A watch pairing expired (or `wait_claimed` ran out of time) before
    /// anyone claimed the code: request a new one.
    #[error("the pairing expired")]
    PairingExpired,
    /// The watch feed ended. `reason` is the server's (`revoked`: the user
    /// removed the watch; `replaced`: a newer feed of the same watch took
    /// over; `session_ended`), or what happened to the connection.
    #[error("watch feed ended: {reason}")]
    FeedClosed {
        /// The server's `bye` reason, or a description of the failure.
        reason: String,
    },
    /// An argument cannot be used: a malformed id or URL, a TLS root that is
    /// not PEM, a refresh asked of a guest.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// Which argument and why.
        reason: String,
    },
    /// The client (or the watch feed) was disconnected by the app.
    #[error("closed")]
    Closed,
}

impl SimmerError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        SimmerError::InvalidArgument {
            reason: reason.into(),
        }
    }

    pub(crate) fn network(reason: impl std::fmt::Display) -> Self {
        SimmerError::Network {
            reason: reason.to_string(),
        }
    }
}

impl From<ClientError> for SimmerError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Server { code, message } => SimmerError::Server {
                code: code.as_str().to_owned(),
                detail: message,
            },
            // A refused handshake: Simmer's code when it sent one (a
            // proxy's page has none), `http_<status>` otherwise.
            ClientError::Refused {
                status,
                code,
                message,
            } => SimmerError::Server {
                code: code.map_or_else(|| format!("http_{status}"), |c| c.as_str().to_owned()),
                detail: message,
            },
            ClientError::Connect(why) => SimmerError::Network { reason: why },
            ClientError::Closed => SimmerError::Closed,
        }
    }
}

impl From<WatchError> for SimmerError {
    fn from(e: WatchError) -> Self {
        match e {
            // The SDK keeps only the status line and body as text: recover
            // the problem document's code when the body is one.
            WatchError::Http(text) => {
                problem_in(&text).unwrap_or(SimmerError::Network { reason: text })
            }
            WatchError::Expired => SimmerError::PairingExpired,
            WatchError::Feed(why) => SimmerError::FeedClosed {
                reason: why.strip_prefix("bye: ").unwrap_or(&why).to_owned(),
            },
        }
    }
}

/// The `code` and `detail` of a problem document (`application/problem+json`).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Problem {
    code: String,
    #[serde(default)]
    detail: String,
}

impl From<Problem> for SimmerError {
    fn from(p: Problem) -> Self {
        SimmerError::Server {
            code: p.code,
            detail: p.detail,
        }
    }
}

/// A problem document inside `text` ("409 Conflict: {...}"), if any.
fn problem_in(text: &str) -> Option<SimmerError> {
    let json = &text[text.find('{')?..];
    serde_json::from_str::<Problem>(json).ok().map(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobile_bridge::ErrorCode;

    #[test]
    fn server_codes_cross_as_their_wire_names() {
        let e = SimmerError::from(ClientError::Server {
            code: ErrorCode::NotJoined,
            message: "join first".into(),
        });
        assert_eq!(
            e,
            SimmerError::Server {
                code: "not_joined".into(),
                detail: "join first".into()
            }
        );
    }

    #[test]
    fn watch_errors_keep_the_code_and_the_bye_reason() {
        let http = WatchError::Http(
            r#"429 Too Many Requests: {"type":"urn:simmer:problem:rate_limited","title":"Too many requests","status":429,"detail":"slow down","code":"rate_limited"}"#.into(),
        );
        assert_eq!(
            SimmerError::from(http),
            SimmerError::Server {
                code: "rate_limited".into(),
                detail: "slow down".into()
            }
        );
        assert_eq!(
            SimmerError::from(WatchError::Http("502 Bad Gateway: <html>".into())),
            SimmerError::Network {
                reason: "502 Bad Gateway: <html>".into()
            }
        );
        assert_eq!(
            SimmerError::from(WatchError::Feed("bye: revoked".into())),
            SimmerError::FeedClosed {
                reason: "revoked".into()
            }
        );
    }
}
