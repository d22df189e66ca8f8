//! Guests: viewers without an account. Anyone may ask for a guest token, so
//! asking is limited per client address, a guest's id carries its network
//! (see `auth::guest`: mutes and limits hold across new tokens), and the host
//! can turn guests away on a live session (`PATCH /sessions/{id}`).

use actix_web::{patch, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::sessions::{find, hosted, view_one, Session};
use super::validate::Checks;
use crate::auth::{guest, AuthUser, TokenKind};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::sessions::{self as store, SessionState};

/// A viewer's name for a guest token.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GuestTokenRequest {
    /// 1–64 characters, shown in chat.
    #[schema(
        example = "Hungry viewer",
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*\S[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub display_name: String,
}

/// A viewer-only token for one session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GuestToken {
    /// Send as `Authorization: Bearer <access_token>`; good for this session only.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires (there is no refresh: ask for a new one).
    pub expires_in: u64,
    /// The guest's ephemeral id, as it appears in chat.
    pub guest_id: Uuid,
    pub session_id: Uuid,
}

/// What a host may change on a session; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSessionRequest {
    /// Whether viewers without an account may get guest tokens and watch.
    /// Turning it off on a live session also sends connected guests away:
    /// their `/ws` gets an `error` frame (`forbidden`) and close 4003, their
    /// WHEP playback ends, and their tokens stop working for it.
    pub allow_guests: Option<bool>,
}

/// Issues a viewer-only token bound to this session, for viewers without an
/// account.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/guest-tokens",
    operation_id = "createGuestToken",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    request_body = GuestTokenRequest,
    responses(
        (status = 201, description = "A guest token", body = GuestToken),
        (status = 403, description = "The session does not allow guests", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session has ended", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many guest tokens for this address (`rate_limited`); see `Retry-After`", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sessions/{id}/guest-tokens")]
#[tracing::instrument(skip_all, fields(%addr))]
pub async fn guest_token(
    state: web::Data<AppState>,
    addr: ClientAddr,
    id: web::Path<Uuid>,
    body: super::body::Body<GuestTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut checks = Checks::new();
    let display_name = checks.display_text("display_name", &body.display_name, 1, 64);
    checks.finish()?;
    let network = guest::network(addr.0).to_string();
    let now = std::time::Instant::now();
    if let Some(wait) = state.throttles.guest_tokens.check(&network, now).await {
        return Err(ApiError::rate_limited(
            "too many guest tokens for this address; sign in, or retry later",
            wait,
        ));
    }
    let model = find(&state, id.into_inner()).await?;
    if !model.allow_guests {
        return Err(ApiError::forbidden("this session does not allow guests"));
    }
    if store::decode(&model)?.0 == SessionState::Ended {
        return Err(ApiError::conflict("the session has ended"));
    }
    state.throttles.guest_tokens.failed(&network, now).await;
    let guest_id = state.keys.new_guest_id(model.id, addr.0);
    let ttl = state.settings.guest_token_ttl;
    let access_token = state.keys.issue(
        guest_id,
        TokenKind::Guest,
        &display_name,
        Some(model.id),
        ttl,
    )?;
    Ok(HttpResponse::Created().json(GuestToken {
        access_token,
        token_type: "Bearer".into(),
        expires_in: ttl.as_secs(),
        guest_id,
        session_id: model.id,
    }))
}

/// Changes a session's settings (host only; not once it has ended).
#[utoipa::path(
    patch,
    path = "/api/v1/sessions/{id}",
    operation_id = "updateSession",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    request_body = UpdateSessionRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The session as it is now", body = Session),
        (status = 403, description = "Not the host", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session has ended", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/sessions/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: super::body::Body<UpdateSessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let model = hosted(&state, id.into_inner(), &user).await?;
    if let Some(allow) = body.allow_guests {
        if !store::set_allow_guests(&state.db, model.id, allow).await? {
            return Err(ApiError::conflict("the session has ended"));
        }
        if !allow && store::decode(&model)?.0 == SessionState::Live {
            state.sessions.guests_revoked(model.id).await;
            tracing::info!(session_id = %model.id, "guests turned away");
        }
    }
    let model = find(&state, model.id).await?;
    Ok(HttpResponse::Ok().json(view_one(&state, &model).await?))
}
