//! The one HTTP error type: every failure leaves the server as an RFC 9457
//! `application/problem+json` document with a stable `code`. Internal details
//! (SQL, I/O) are logged here and never sent to clients.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use mobile_bridge::ErrorCode;
use sea_orm::DbErr;
use serde::Serialize;
use utoipa::ToSchema;

/// A problem document (RFC 9457), as every error response carries it.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:simmer:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem (the same for every `code`).
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for people.
    pub detail: String,
    /// The stable machine-readable code; clients branch on this.
    pub code: ErrorCode,
    /// For `validation_failed`: every field that broke a rule.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
}

/// One field that broke a validation rule.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as a JSON path such as `steps[2].text`.
    pub field: String,
    /// The rule it broke.
    pub message: String,
}

/// The status and title of every code: the single table from code to HTTP.
pub fn status_of(code: ErrorCode) -> (StatusCode, &'static str) {
    match code {
        ErrorCode::InvalidBody => (StatusCode::BAD_REQUEST, "Malformed request body"),
        ErrorCode::InvalidPath => (StatusCode::BAD_REQUEST, "Malformed path parameter"),
        ErrorCode::InvalidQuery => (StatusCode::BAD_REQUEST, "Malformed query parameter"),
        ErrorCode::InvalidCursor => (StatusCode::BAD_REQUEST, "Invalid pagination cursor"),
        ErrorCode::ValidationFailed => (StatusCode::UNPROCESSABLE_ENTITY, "Validation failed"),
        ErrorCode::Unauthorized => (StatusCode::UNAUTHORIZED, "Authentication required"),
        ErrorCode::InvalidCredentials => (StatusCode::UNAUTHORIZED, "Invalid credentials"),
        ErrorCode::InvalidRefreshToken => (StatusCode::UNAUTHORIZED, "Invalid refresh token"),
        ErrorCode::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        ErrorCode::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
        ErrorCode::Conflict => (StatusCode::CONFLICT, "Conflict"),
        ErrorCode::UsernameTaken => (StatusCode::CONFLICT, "Username taken"),
        ErrorCode::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
        ErrorCode::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large"),
        ErrorCode::UnsupportedMediaType => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type")
        }
        ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
        ErrorCode::InvalidFrame => (StatusCode::BAD_REQUEST, "Invalid frame"),
        ErrorCode::NotJoined => (StatusCode::FORBIDDEN, "Not joined"),
        ErrorCode::UnsupportedProtocol => (StatusCode::BAD_REQUEST, "Unsupported protocol version"),
        ErrorCode::TimerNotIdle
        | ErrorCode::TimerNotRunning
        | ErrorCode::TimerNotPaused
        | ErrorCode::TimerFinished
        | ErrorCode::TimerFirstStep
        | ErrorCode::TimerNoSuchStep
        | ErrorCode::TimerManualStep
        | ErrorCode::TimerNoSteps => (StatusCode::CONFLICT, "Timer action does not apply"),
        ErrorCode::TimerBadSeconds => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid timer seconds"),
        ErrorCode::PairingExpired => (StatusCode::GONE, "Pairing code expired"),
        ErrorCode::PairingUsed => (StatusCode::CONFLICT, "Pairing code already used"),
        ErrorCode::RoomFull => (StatusCode::SERVICE_UNAVAILABLE, "Room full"),
        ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
    }
}

/// An error at the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client's fault (4xx): the detail is safe to send.
    #[error("{code}: {detail}")]
    Client {
        code: ErrorCode,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 429: slow down; retry after this long.
    #[error("rate limited: {detail}")]
    RateLimited {
        detail: String,
        retry_after: std::time::Duration,
    },
    /// A dependency is down; retrying later may work (503).
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Our fault (500): logged with its cause chain, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 4xx error with a detail for people.
    pub fn client(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError::Client {
            code,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 422 with every broken rule.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::Client {
            code: ErrorCode::ValidationFailed,
            detail,
            errors,
        }
    }

    /// 429 with a `Retry-After`.
    pub fn rate_limited(detail: impl Into<String>, retry_after: std::time::Duration) -> Self {
        ApiError::RateLimited {
            detail: detail.into(),
            retry_after,
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::client(ErrorCode::Unauthorized, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::client(ErrorCode::Forbidden, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::client(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::client(ErrorCode::Conflict, detail)
    }

    /// The code this error is sent with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Client { code, .. } => *code,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn problem(&self) -> Problem {
        let code = self.code();
        let (status, title) = status_of(code);
        let (detail, errors) = match self {
            ApiError::Client { detail, errors, .. } => (detail.clone(), errors.clone()),
            ApiError::RateLimited { detail, .. } => (detail.clone(), Vec::new()),
            ApiError::Unavailable(_) => (
                "a dependency is temporarily unavailable; retry later".to_owned(),
                Vec::new(),
            ),
            ApiError::Internal(_) => (
                "unexpected server error; it has been logged".to_owned(),
                Vec::new(),
            ),
        };
        Problem {
            kind: format!("urn:simmer:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code,
            errors,
        }
    }
}

impl From<DbErr> for ApiError {
    fn from(e: DbErr) -> Self {
        if unavailable(&e) {
            ApiError::Unavailable(e.into())
        } else {
            ApiError::Internal(e.into())
        }
    }
}

/// Whether a database error says the database was out of reach or busy, not
/// that the query was wrong: no connection to be had, SQLite's lock held
/// too long by another write, or the connection in use broke
/// (PostgreSQL restarted or ended it: SQLSTATE classes 08 and 57). The pool
/// drops a broken connection, so a retry gets a good one.
fn unavailable(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::RuntimeErr;
    let sqlx = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(sqlx)) | DbErr::Query(RuntimeErr::SqlxError(sqlx)) => {
            sqlx
        }
        _ => return false,
    };
    match sqlx {
        Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed => true,
        Sqlx::Database(db) => {
            db.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some_and(sqlite_busy)
                || db
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57"))
        }
        _ => false,
    }
}

/// SQLite's `SQLITE_BUSY` or `SQLITE_LOCKED` (any extended code of them):
/// another connection's write held the lock for longer than the node waits
/// (`db_busy_timeout`). Retrying later may work.
fn sqlite_busy(e: &sea_orm::sqlx::sqlite::SqliteError) -> bool {
    use sea_orm::sqlx::error::DatabaseError as _;
    e.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.code()).0
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(e) => {
                tracing::error!(error.cause_chain = ?e, error.message = %e, "request failed");
            }
            ApiError::Unavailable(e) => {
                tracing::warn!(error.cause_chain = ?e, error.message = %e, "dependency unavailable");
            }
            ApiError::Client { .. } | ApiError::RateLimited { .. } => {}
        }
        let mut response = problem_response(&self.problem());
        if let ApiError::RateLimited { retry_after, .. } = self {
            let secs = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = header::HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// Serialises a problem with its content type (and the headers its status
/// asks for).
pub fn problem_response(problem: &Problem) -> HttpResponse {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    builder.content_type("application/problem+json");
    if status == StatusCode::UNAUTHORIZED {
        builder.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"simmer\""));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        // A rate limit that knows better replaces it (`error_response`).
        builder.insert_header((header::RETRY_AFTER, "1"));
    }
    builder.json(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_an_error_status() {
        for code in ErrorCode::ALL {
            let (status, title) = status_of(code);
            assert!(status.is_client_error() || status.is_server_error());
            assert!(!title.is_empty());
        }
    }

    #[test]
    fn internal_details_are_not_sent() {
        let err = ApiError::Internal(anyhow::anyhow!("SELECT secret FROM users"));
        let problem = err.problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("SELECT"));
    }
}
