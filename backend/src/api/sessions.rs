//! Live sessions: create, list, get, start, end; guest tokens; the timer.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use simmer_entity::session;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use watch_sync::{TimerAction, TimerView, MAX_ADD_TIME_S};

use super::models::UserSummary;
use super::pagination;
use super::recipes::{steps_view, Step};
use super::validate::Checks;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::live::timer_actor::TimerError;
use crate::live::{self, SessionError};
use crate::state::AppState;
use crate::store::sessions::{self as store, NewSession, RecipeCopy, SessionState};
use crate::store::{recipes, users};

/// A new session.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateSessionRequest {
    /// The recipe to cook (any recipe; the session keeps a copy).
    pub recipe_id: Uuid,
    /// 1–200 characters.
    #[schema(
        example = "Sunday soup, live",
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*\S[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub title: String,
    /// Whether viewers without an account may get guest tokens (default true).
    pub allow_guests: Option<bool>,
    /// Whether the recipe timer moves to the next step by itself when a
    /// countdown ends (default false: the host moves on).
    pub auto_advance: Option<bool>,
}

/// The recipe a session cooks, as copied into it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionRecipe {
    /// The recipe it was copied from; `null` once that recipe was deleted.
    pub id: Option<Uuid>,
    pub title: String,
    pub description: Option<String>,
    pub servings: Option<u32>,
    pub steps: Vec<Step>,
}

/// A live cooking session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub title: String,
    pub state: SessionState,
    pub allow_guests: bool,
    /// The timer moves to the next step by itself when a countdown ends.
    pub auto_advance: bool,
    pub host: UserSummary,
    pub recipe: SessionRecipe,
    /// Viewers connected now (0 unless live).
    pub viewer_count: u32,
    pub timer: TimerView,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A page of sessions, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionPage {
    pub items: Vec<Session>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Filters and paging of the session list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSessionsQuery {
    /// Only sessions in this state.
    pub state: Option<SessionState>,
    /// `next_cursor` of the previous page (empty or absent: the first page).
    #[param(pattern = r"^([A-Za-z0-9_-]{22})?$")]
    pub cursor: Option<String>,
    /// Page size, 1 to the configured maximum (default 20, max 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// What is live about a session now: from its actor when live, else at rest.
async fn live_part(
    state: &AppState,
    model: &session::Model,
    session_state: SessionState,
    recipe: &RecipeCopy,
) -> Result<(u32, TimerView), ApiError> {
    let at_rest = || {
        let now = Utc::now().timestamp_millis();
        (0, live::timer_at_rest(model, session_state, recipe, now))
    };
    if session_state != SessionState::Live {
        return Ok(at_rest());
    }
    match state.sessions.snapshot(model.id).await {
        Ok(snap) => Ok((snap.viewer_count, snap.timer)),
        // Ended between the read and the ask.
        Err(SessionError::NotLive) => Ok(at_rest()),
        Err(SessionError::Unavailable) => Err(ApiError::Unavailable(anyhow::anyhow!(
            "session {} actor did not answer",
            model.id
        ))),
    }
}

async fn view(
    state: &AppState,
    model: &session::Model,
    host: UserSummary,
) -> Result<Session, ApiError> {
    let (session_state, recipe) = store::decode(model)?;
    let (viewer_count, timer) = live_part(state, model, session_state, &recipe).await?;
    Ok(Session {
        id: model.id,
        title: model.title.clone(),
        state: session_state,
        allow_guests: model.allow_guests,
        auto_advance: model.auto_advance,
        host,
        recipe: SessionRecipe {
            // The column, not the copy: it is nulled when the recipe is deleted.
            id: model.recipe_id,
            title: recipe.title.clone(),
            description: recipe.description.clone(),
            servings: recipe.servings,
            steps: steps_view(&recipe.steps),
        },
        viewer_count,
        timer,
        created_at: model.created_at,
        started_at: model.started_at,
        ended_at: model.ended_at,
    })
}

pub(super) async fn view_one(
    state: &AppState,
    model: &session::Model,
) -> Result<Session, ApiError> {
    let host = users::by_id(&state.db, model.host_id).await?;
    view(state, model, host_summary(model, host.as_ref())).await
}

fn host_summary(model: &session::Model, host: Option<&simmer_entity::user::Model>) -> UserSummary {
    host.map(UserSummary::from)
        .unwrap_or_else(|| UserSummary::deleted(model.host_id))
}

pub(super) async fn find(state: &AppState, id: Uuid) -> Result<session::Model, ApiError> {
    store::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))
}

pub(super) async fn hosted(
    state: &AppState,
    id: Uuid,
    user: &AuthUser,
) -> Result<session::Model, ApiError> {
    let model = find(state, id).await?;
    if model.host_id != user.id {
        return Err(ApiError::forbidden("only the session's host may do this"));
    }
    Ok(model)
}

/// Creates a scheduled session; the caller is its host.
#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    operation_id = "createSession",
    tag = "sessions",
    request_body = CreateSessionRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created, `state: scheduled`", body = Session, headers(("Location" = String, description = "The new resource: `/api/v1/sessions/{id}`"))),
        (status = 403, description = "Guest tokens cannot host", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such recipe", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sessions")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: super::body::Body<CreateSessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::new();
    let title = checks.text("title", &body.title, 1, 200, false);
    checks.finish()?;
    let recipe = recipes::find(&state.db, body.recipe_id)
        .await?
        .ok_or_else(|| ApiError::not_found("recipe"))?;
    let model = store::insert(
        &state.db,
        NewSession {
            host_id: user.id,
            title,
            allow_guests: body.allow_guests.unwrap_or(true),
            auto_advance: body.auto_advance.unwrap_or(false),
            recipe: RecipeCopy::of(&recipe)?,
        },
    )
    .await?;
    tracing::info!(session_id = %model.id, "session scheduled");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/sessions/{}", model.id)))
        .json(view_one(&state, &model).await?))
}

/// Lists sessions, newest first; `state=live` for what is on now.
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    operation_id = "listSessions",
    tag = "sessions",
    params(ListSessionsQuery),
    responses(
        (status = 200, description = "A page of sessions", body = SessionPage),
    )
)]
#[get("/sessions")]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListSessionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = pagination::keyset(query.cursor.as_deref(), query.limit, &state.settings)?;
    let (rows, more) = store::list(&state.db, query.state, page).await?;
    let hosts = users::by_ids(&state.db, rows.iter().map(|r| r.host_id)).await?;
    let views = rows.iter().map(|row| {
        let host = hosts
            .get(&row.host_id)
            .map(UserSummary::from)
            .unwrap_or_else(|| UserSummary::deleted(row.host_id));
        view(&state, row, host)
    });
    let items = futures_util::future::try_join_all(views).await?;
    let next_cursor = pagination::next_cursor(rows.last().map(|r| r.id), more);
    Ok(HttpResponse::Ok().json(SessionPage { items, next_cursor }))
}

/// One session, with its viewer count and timer.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}",
    operation_id = "getSession",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/sessions/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (model, host) = store::find_with_host(&state.db, id.into_inner())
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    let host = host_summary(&model, host.as_ref());
    Ok(HttpResponse::Ok().json(view(&state, &model, host).await?))
}

/// Goes live (host only; the session must be scheduled). The recipe copy is
/// refreshed from the recipe if it still exists.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/start",
    operation_id = "startSession",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Live", body = Session),
        (status = 403, description = "Not the host", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not scheduled", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sessions/{id}/start")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn start(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let model = hosted(&state, id.into_inner(), &user).await?;
    let fresh = match model.recipe_id {
        Some(recipe_id) => match recipes::find(&state.db, recipe_id).await? {
            Some(recipe) => Some(RecipeCopy::of(&recipe)?),
            None => None,
        },
        None => None,
    };
    let moved = store::transition(
        &state.db,
        model.id,
        SessionState::Scheduled,
        SessionState::Live,
        fresh.as_ref(),
    )
    .await?;
    if !moved {
        return Err(ApiError::conflict(format!(
            "session is {}; only a scheduled session can start",
            current_state(&state, model.id).await?
        )));
    }
    state.sessions.activate(model.id).await?;
    tracing::info!(session_id = %model.id, "session live");
    let model = find(&state, model.id).await?;
    Ok(HttpResponse::Ok().json(view_one(&state, &model).await?))
}

/// Ends a live session (host only).
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/end",
    operation_id = "endSession",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Ended", body = Session),
        (status = 403, description = "Not the host", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not live", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sessions/{id}/end")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn end(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let model = hosted(&state, id.into_inner(), &user).await?;
    let moved = store::transition(
        &state.db,
        model.id,
        SessionState::Live,
        SessionState::Ended,
        None,
    )
    .await?;
    if !moved {
        return Err(ApiError::conflict(format!(
            "session is {}; only a live session can end",
            current_state(&state, model.id).await?
        )));
    }
    state.sessions.deactivate(model.id);
    tracing::info!(session_id = %model.id, "session ended");
    let model = find(&state, model.id).await?;
    Ok(HttpResponse::Ok().json(view_one(&state, &model).await?))
}

async fn current_state(state: &AppState, id: Uuid) -> Result<&'static str, ApiError> {
    let model = find(state, id).await?;
    Ok(store::decode(&model)?.0.as_str())
}

/// The session's recipe timer now.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/timer",
    operation_id = "getSessionTimer",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 200, description = "The timer", body = TimerView),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/sessions/{id}/timer")]
pub async fn get_timer(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let model = find(&state, id.into_inner()).await?;
    let (session_state, recipe) = store::decode(&model)?;
    let (_, timer) = live_part(&state, &model, session_state, &recipe).await?;
    Ok(HttpResponse::Ok().json(timer))
}

/// A host's timer action: what each action carries is required with it
/// (the same actions as `timer.control` over `/ws`).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TimerRequest {
    /// Start the current step's countdown.
    Start,
    Pause,
    Resume,
    /// The next step (the timer finishes after the last).
    Next,
    Previous,
    /// Back to the first step, idle.
    Reset,
    /// Go to a step.
    Goto {
        /// Counted from 0; at most the recipe's last step.
        #[schema(minimum = 0, maximum = 99)]
        step: u32,
    },
    /// Change the current countdown.
    AddTime {
        /// Seconds to add (negative to remove), non-zero, at most a day
        /// either way.
        #[schema(minimum = -86400, maximum = 86400)]
        seconds: i64,
    },
}

impl From<TimerRequest> for TimerAction {
    fn from(request: TimerRequest) -> Self {
        match request {
            TimerRequest::Start => TimerAction::Start,
            TimerRequest::Pause => TimerAction::Pause,
            TimerRequest::Resume => TimerAction::Resume,
            TimerRequest::Next => TimerAction::Next,
            TimerRequest::Previous => TimerAction::Previous,
            TimerRequest::Reset => TimerAction::Reset,
            TimerRequest::Goto { step } => TimerAction::Goto { step },
            TimerRequest::AddTime { seconds } => TimerAction::AddTime { seconds },
        }
    }
}

// The bounds as the schema says them.
const _: () = assert!(MAX_ADD_TIME_S == 86_400 && super::recipes::STEPS_MAX == 100);

/// Drives the recipe timer (host only, live sessions): `start`, `pause`,
/// `resume`, `next`, `previous`, `goto` (with `step`), `add_time` (with
/// `seconds`), `reset`. Answered once the change is durable; every viewer and
/// paired watch gets the new timer.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/timer",
    operation_id = "controlSessionTimer",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    request_body = TimerRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The timer after the action", body = TimerView),
        (status = 403, description = "Not the host", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The action does not apply to the timer as it is (`code` says why: `timer_not_running`, `timer_finished`, ...), or the session is not live", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`add_time` with `seconds` zero or beyond a day", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sessions/{id}/timer")]
#[tracing::instrument(skip_all, fields(user_id = %user.id, session_id))]
pub async fn control_timer(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: super::body::Body<TimerRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    tracing::Span::current().record("session_id", tracing::field::display(id));
    let action = TimerAction::from(body.into_inner());
    let model = hosted(&state, id, &user).await?;
    if store::decode(&model)?.0 != SessionState::Live {
        return Err(ApiError::conflict(
            "the timer runs while the session is live",
        ));
    }
    let timer = state
        .sessions
        .control_timer(id, action)
        .await
        .map_err(|e| match e {
            TimerError::Refused(refusal) => ApiError::client(refusal.code.into(), refusal.message),
            TimerError::Session(SessionError::NotLive) => {
                ApiError::conflict("the session is not live any more")
            }
            TimerError::Session(SessionError::Unavailable) => {
                ApiError::Unavailable(anyhow::anyhow!("session {id} timer did not answer"))
            }
        })?;
    Ok(HttpResponse::Ok().json(timer))
}
