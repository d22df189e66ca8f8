//! Admin endpoints for operators and orchestrators, behind their own token
//! (`SIMMER_ADMIN_TOKEN`, never a user's): `POST /api/v1/admin/drain` starts
//! the same drain as SIGTERM (a Kubernetes `preStop` calls it through
//! `simmer drain`).

use actix_web::{post, web, HttpRequest, HttpResponse};
use mobile_bridge::ErrorCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// What a drain request started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DrainStatus {
    /// Always `draining`: the node is not ready any more, hands its sessions
    /// over and tells its clients to reconnect, then exits.
    pub state: String,
    /// Whether this request started the drain (`false`: one was under way).
    pub started: bool,
    /// Connections open when it was asked.
    pub open_connections: usize,
    /// Live sessions this node ran when it was asked.
    pub live_sessions: usize,
    /// The longest the drain takes before the process exits, in seconds.
    pub shutdown_timeout_s: u64,
}

/// How to ask.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DrainQuery {
    /// Answer only once the drain is done (every client gone), at most the
    /// shutdown timeout: what a Kubernetes `preStop` wants.
    #[serde(default)]
    pub wait: bool,
}

/// Drains this node and stops it: readiness goes false at once, new
/// connections are refused, its live sessions go to other nodes (in a
/// cluster), every client is told to reconnect within the spread window,
/// pending writes finish, and the process exits 0 within
/// `SIMMER_SHUTDOWN_TIMEOUT_S`. Asking again is harmless.
#[utoipa::path(
    post,
    path = "/api/v1/admin/drain",
    operation_id = "drainNode",
    tag = "operations",
    params(DrainQuery),
    security(("admin" = [])),
    responses(
        (status = 202, description = "The drain started (or was under way)", body = DrainStatus),
        (status = 200, description = "With `wait=true`: the drain is done", body = DrainStatus),
        (status = 403, description = "Admin endpoints are off: `SIMMER_ADMIN_TOKEN` is not set (`forbidden`)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/admin/drain")]
pub async fn drain(
    req: HttpRequest,
    query: web::Query<DrainQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let status = |started| DrainStatus {
        state: "draining".into(),
        started,
        open_connections: state.shutdown.open_connections(),
        live_sessions: state.sessions.live_count(),
        shutdown_timeout_s: state.settings.shutdown_timeout.as_secs(),
    };
    let started = state.shutdown.request_drain("admin");
    if started {
        tracing::info!("drain asked for through the admin endpoint");
    }
    if !query.wait {
        return Ok(HttpResponse::Accepted().json(status(started)));
    }
    let grace = state.settings.shutdown_timeout;
    if tokio::time::timeout(grace, state.shutdown.drained())
        .await
        .is_err()
    {
        return Ok(HttpResponse::Accepted().json(status(started)));
    }
    Ok(HttpResponse::Ok().json(status(started)))
}

/// The request carries the admin token.
fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(expected) = &state.settings.admin_token else {
        return Err(ApiError::client(
            ErrorCode::Forbidden,
            "admin endpoints are off: set SIMMER_ADMIN_TOKEN to use them",
        ));
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Digests are compared, so the time taken says nothing about the token.
    if Sha256::digest(given.as_bytes()) == Sha256::digest(expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::client(
            ErrorCode::Unauthorized,
            "missing or wrong admin token",
        ))
    }
}
