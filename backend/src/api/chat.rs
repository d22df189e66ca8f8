//! Chat over REST: history, posting (the same path as `/ws`), and the host's
//! moderation (delete a message, mute a user).

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{Duration as ChronoDuration, Utc};
use mobile_bridge::protocol::ChatMessage;
use mobile_bridge::ErrorCode;
use serde::{Deserialize, Serialize};
use simmer_entity::session;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{AuthUser, Principal};
use crate::error::ApiError;
use crate::live::chat_actor::{ChatError, DeleteChat, MuteUser, PostChat};
use crate::live::SessionError;
use crate::state::AppState;
use crate::store::chat as store;
use crate::store::sessions::{self, SessionState};

/// A guest of a session that no longer lets guests in.
fn guests_off() -> ApiError {
    ApiError::forbidden("this session does not let guests in")
}

/// Longest mute, in seconds (7 days).
const MUTE_MAX_S: u32 = 7 * 24 * 3600;

/// A page of chat history, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<ChatMessage>,
    /// Pass as `before_seq` for older messages; `null` at the beginning.
    pub next_before_seq: Option<u64>,
}

/// Paging of the history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only messages older than this sequence number.
    #[param(minimum = 1)]
    pub before_seq: Option<u64>,
    /// Page size, 1 to the configured maximum (default 20, max 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// A message to post.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PostMessage {
    /// 1–1000 characters (configurable) after trimming.
    #[schema(min_length = 1, max_length = 1000)]
    pub text: String,
    /// Makes the post idempotent: posting the same id again returns the
    /// message first stored under it (its text, author and `sent_at`, even if
    /// the resend's text differs) without posting again. 1–64 characters; a
    /// random one is used when omitted.
    #[schema(min_length = 1, max_length = 64)]
    pub client_msg_id: Option<String>,
}

/// A mute.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MuteRequest {
    /// The user (or guest id) to mute.
    pub user_id: Uuid,
    /// How long, 1 s – 7 days; omit to mute for the rest of the session.
    #[schema(minimum = 1, maximum = 604800)]
    pub duration_s: Option<u32>,
}

async fn session_for(state: &AppState, id: Uuid) -> Result<session::Model, ApiError> {
    sessions::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))
}

fn chat_error(e: ChatError) -> ApiError {
    match e {
        ChatError::Rejected(r) => ApiError::client(r.code, r.message),
        ChatError::Unavailable => ApiError::Unavailable(anyhow::anyhow!("chat actor unavailable")),
    }
}

fn not_live() -> ApiError {
    ApiError::conflict("the session is not live")
}

fn session_error(e: SessionError) -> ApiError {
    match e {
        SessionError::NotLive => not_live(),
        SessionError::Unavailable => chat_error(ChatError::Unavailable),
    }
}

/// Chat history of a session, newest first (deleted messages have empty
/// `text` and `deleted: true`).
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/messages",
    operation_id = "listSessionMessages",
    tag = "chat",
    params(("id" = Uuid, Path, description = "Session id"), HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 403, description = "A guest token for another session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/sessions/{id}/messages")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Principal,
    id: web::Path<Uuid>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !caller.may_view(id) {
        return Err(ApiError::forbidden(
            "a guest token is good for its own session only",
        ));
    }
    let page = crate::api::pagination::keyset(None, query.limit, &state.settings)?;
    if query
        .before_seq
        .is_some_and(|seq| seq == 0 || i64::try_from(seq).is_err())
    {
        return Err(ApiError::client(
            ErrorCode::InvalidQuery,
            "invalid query: before_seq must be a sequence number, from 1",
        ));
    }
    let model = session_for(&state, id).await?;
    if !caller.may_view_session(&model) {
        return Err(guests_off());
    }
    let mut items = store::page_before(
        &state.db,
        id,
        query.before_seq,
        page.limit.saturating_add(1),
    )
    .await?;
    let more = items.len() as u64 > page.limit;
    items.truncate(usize::try_from(page.limit).unwrap_or(usize::MAX));
    let next_before_seq = if more {
        items.last().map(|m| m.seq)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(MessagePage {
        items,
        next_before_seq,
    }))
}

/// Posts a chat message (as `chat.send` over `/ws` does): 201 once it is
/// durable, with the stored message; members receive it as `chat.message`.
/// A resend of a `client_msg_id` answers with the message first stored under
/// it. `text` must not hold bidirectional controls or only invisible
/// characters (422 `validation_failed`).
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/messages",
    operation_id = "postSessionMessage",
    tag = "chat",
    params(("id" = Uuid, Path, description = "Session id")),
    request_body = PostMessage,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Durable", body = ChatMessage),
        (status = 403, description = "Muted, or a guest token for another session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session is not live", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Sending too fast (`rate_limited`): this user, or the guests at this address", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sessions/{id}/messages")]
pub async fn post_message(
    state: web::Data<AppState>,
    caller: Principal,
    id: web::Path<Uuid>,
    body: super::body::Body<PostMessage>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !caller.may_view(id) {
        return Err(ApiError::forbidden(
            "a guest token is good for its own session only",
        ));
    }
    let model = session_for(&state, id).await?;
    if !caller.may_view_session(&model) {
        return Err(guests_off());
    }
    if sessions::decode(&model)?.0 != SessionState::Live {
        return Err(not_live());
    }
    let author = caller.author_in(model.host_id);
    let body = body.into_inner();
    let client_msg_id = body
        .client_msg_id
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let post = PostChat {
        author,
        text: body.text,
        client_msg_id,
    };
    let stored = state
        .sessions
        .ask(id, post)
        .await
        .map_err(session_error)?
        .map_err(chat_error)?;
    Ok(HttpResponse::Created().json(&*stored))
}

/// Deletes a message (host only): members get `chat.deleted`, history keeps
/// its place with the text removed.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}/messages/{seq}",
    operation_id = "deleteSessionMessage",
    tag = "chat",
    params(("id" = Uuid, Path, description = "Session id"), ("seq" = u64, Path, description = "The message's sequence number")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not the host", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session or message", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/sessions/{id}/messages/{seq}")]
pub async fn delete_message(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(Uuid, u64)>,
) -> Result<HttpResponse, ApiError> {
    let (id, seq) = path.into_inner();
    let model = session_for(&state, id).await?;
    if model.host_id != user.id {
        return Err(ApiError::forbidden("only the host moderates the chat"));
    }
    let found = match state.sessions.ask(id, DeleteChat { seq }).await {
        Ok(found) => found.map_err(chat_error)?,
        // Not live: no members to tell; just redact the history.
        Err(SessionError::NotLive) => store::mark_deleted(&state.db, id, seq).await?,
        Err(e) => return Err(session_error(e)),
    };
    if !found {
        return Err(ApiError::not_found("message"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Mutes a user in a live session (host only): their sends get 403
/// `forbidden` until the mute ends.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/mutes",
    operation_id = "muteSessionViewer",
    tag = "chat",
    params(("id" = Uuid, Path, description = "Session id")),
    request_body = MuteRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Muted"),
        (status = 403, description = "Not the host", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session is not live", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sessions/{id}/mutes")]
pub async fn mute(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: super::body::Body<MuteRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let model = session_for(&state, id).await?;
    if model.host_id != user.id {
        return Err(ApiError::forbidden("only the host moderates the chat"));
    }
    let mut checks = super::validate::Checks::new();
    if body.user_id == model.host_id {
        checks.fail("user_id", "the host cannot be muted");
    }
    if let Some(d) = body.duration_s {
        checks.range("duration_s", u64::from(d), 1, u64::from(MUTE_MAX_S));
    }
    checks.finish()?;
    let until = match body.duration_s {
        Some(d) => Utc::now() + ChronoDuration::seconds(i64::from(d)),
        None => Utc::now() + ChronoDuration::days(365 * 100),
    };
    let mute = MuteUser {
        user: body.user_id,
        until,
    };
    state
        .sessions
        .ask(id, mute)
        .await
        .map_err(session_error)?
        .map_err(chat_error)?;
    tracing::info!(session_id = %id, muted = %body.user_id, "user muted");
    Ok(HttpResponse::NoContent().finish())
}
