//! Live sessions and their state machine: scheduled -> live -> ended.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use simmer_entity::session;
use uuid::Uuid;
use watch_sync::TimerRecord;

use super::recipes::StoredStep;
use super::{keyset, split_page, Keyset};

/// A session's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Scheduled,
    Live,
    Ended,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Scheduled => "scheduled",
            SessionState::Live => "live",
            SessionState::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scheduled" => Some(SessionState::Scheduled),
            "live" => Some(SessionState::Live),
            "ended" => Some(SessionState::Ended),
            _ => None,
        }
    }
}

/// The copy of its recipe that a session keeps (the `recipe` JSON column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeCopy {
    pub id: Option<Uuid>,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub servings: Option<u32>,
    pub steps: Vec<StoredStep>,
}

impl RecipeCopy {
    /// Copies a stored recipe.
    pub fn of(model: &simmer_entity::recipe::Model) -> Result<Self, DbErr> {
        Ok(Self {
            id: Some(model.id),
            title: model.title.clone(),
            description: model.description.clone(),
            servings: model.servings.and_then(|s| u32::try_from(s).ok()),
            steps: super::recipes::steps_of(model)?,
        })
    }
}

/// Reads a session's state and recipe copy.
pub fn decode(model: &session::Model) -> Result<(SessionState, RecipeCopy), DbErr> {
    let state = SessionState::parse(&model.state).ok_or_else(|| {
        DbErr::Custom(format!(
            "session {} has unknown state {:?}",
            model.id, model.state
        ))
    })?;
    let recipe = serde_json::from_value(model.recipe.clone())
        .map_err(|e| DbErr::Custom(format!("session {} recipe unreadable: {e}", model.id)))?;
    Ok((state, recipe))
}

/// What a new session needs.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub host_id: Uuid,
    pub title: String,
    pub allow_guests: bool,
    pub auto_advance: bool,
    pub recipe: RecipeCopy,
}

pub async fn insert(db: &DatabaseConnection, new: NewSession) -> Result<session::Model, DbErr> {
    let now = Utc::now();
    let recipe = serde_json::to_value(&new.recipe).map_err(|e| DbErr::Custom(e.to_string()))?;
    session::ActiveModel {
        id: Set(Uuid::now_v7()),
        host_id: Set(new.host_id),
        recipe_id: Set(new.recipe.id),
        title: Set(new.title),
        allow_guests: Set(new.allow_guests),
        state: Set(SessionState::Scheduled.as_str().to_owned()),
        recipe: Set(recipe),
        created_at: Set(now),
        started_at: Set(None),
        ended_at: Set(None),
        updated_at: Set(now),
        timer: Set(None),
        auto_advance: Set(new.auto_advance),
        fence: Set(0),
    }
    .insert(db)
    .await
}

pub async fn find(db: &DatabaseConnection, id: Uuid) -> Result<Option<session::Model>, DbErr> {
    session::Entity::find_by_id(id).one(db).await
}

/// A session and its host, in one query.
pub async fn find_with_host(
    db: &DatabaseConnection,
    id: Uuid,
) -> Result<Option<(session::Model, Option<simmer_entity::user::Model>)>, DbErr> {
    session::Entity::find_by_id(id)
        .find_also_related(simmer_entity::user::Entity)
        .one(db)
        .await
}

/// Every live session (to re-create their actors at start-up).
pub async fn live_ids(db: &DatabaseConnection) -> Result<Vec<Uuid>, DbErr> {
    Ok(session::Entity::find()
        .filter(session::Column::State.eq(SessionState::Live.as_str()))
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect())
}

/// A page of sessions, newest first, optionally in one state.
pub async fn list(
    db: &DatabaseConnection,
    state: Option<SessionState>,
    page: Keyset,
) -> Result<(Vec<session::Model>, bool), DbErr> {
    let mut query = session::Entity::find();
    if let Some(state) = state {
        query = query.filter(session::Column::State.eq(state.as_str()));
    }
    let rows = keyset(query, session::Column::Id, page).all(db).await?;
    Ok(split_page(rows, page))
}

/// Moves a session from `from` to `to` atomically (a conditional update, so
/// of two racing requests exactly one wins). Returns whether it moved. On
/// start, the recipe copy is refreshed when `recipe` is given.
pub async fn transition(
    db: &DatabaseConnection,
    id: Uuid,
    from: SessionState,
    to: SessionState,
    recipe: Option<&RecipeCopy>,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let mut update = session::Entity::update_many()
        .col_expr(session::Column::State, Expr::value(to.as_str()))
        .col_expr(session::Column::UpdatedAt, Expr::value(now));
    update = match to {
        // Going live starts a fresh timer on the (refreshed) recipe.
        SessionState::Live => update
            .col_expr(session::Column::StartedAt, Expr::value(now))
            .col_expr(
                session::Column::Timer,
                Expr::value(Option::<serde_json::Value>::None),
            ),
        SessionState::Ended => update.col_expr(session::Column::EndedAt, Expr::value(now)),
        SessionState::Scheduled => update,
    };
    if let Some(recipe) = recipe {
        let json = serde_json::to_value(recipe).map_err(|e| DbErr::Custom(e.to_string()))?;
        update = update.col_expr(session::Column::Recipe, Expr::value(json));
    }
    let result = update
        .filter(session::Column::Id.eq(id))
        .filter(session::Column::State.eq(from.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Lets guests in or keeps them out of a session that has not ended.
/// Returns whether a session was changed.
pub async fn set_allow_guests(
    db: &DatabaseConnection,
    id: Uuid,
    allow: bool,
) -> Result<bool, DbErr> {
    let result = session::Entity::update_many()
        .col_expr(session::Column::AllowGuests, Expr::value(allow))
        .col_expr(session::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(session::Column::Id.eq(id))
        .filter(session::Column::State.ne(SessionState::Ended.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The stored timer record of a session, if the timer was ever touched. A
/// record that does not parse is treated as absent (and logged).
pub fn timer_record(model: &session::Model) -> Option<TimerRecord> {
    let json = model.timer.as_ref()?;
    match serde_json::from_value(json.clone()) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(session_id = %model.id, error = %e, "unreadable timer record; starting idle");
            None
        }
    }
}

/// What became of a fenced write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    Written,
    /// The session is not live any more: nothing was written.
    NotLive,
    /// Another node took the session over (a newer fencing token): nothing
    /// was written.
    Superseded,
}

/// Takes a live session over: raises its fencing token and returns the new
/// one, or `None` when the session is not live. Every write by the previous
/// holder fails from now on; the caller reads the session's state after this,
/// so it sees everything the previous holder wrote.
pub async fn take_over(db: &DatabaseConnection, id: Uuid) -> Result<Option<i64>, DbErr> {
    let txn = db.begin().await?;
    let raised = session::Entity::update_many()
        .col_expr(
            session::Column::Fence,
            Expr::col(session::Column::Fence).add(1),
        )
        .filter(session::Column::Id.eq(id))
        .filter(session::Column::State.eq(SessionState::Live.as_str()))
        .exec(&txn)
        .await?;
    if raised.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    // In the same transaction: the row stays locked until the commit, so no
    // other node raises it in between.
    let fence = session::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .map(|m| m.fence);
    txn.commit().await?;
    Ok(fence)
}

/// Stores a live session's timer record, if `fence` still holds it.
pub async fn save_timer(
    db: &DatabaseConnection,
    id: Uuid,
    fence: i64,
    record: &TimerRecord,
) -> Result<Fenced, DbErr> {
    let json = serde_json::to_value(record).map_err(|e| DbErr::Custom(e.to_string()))?;
    let result = session::Entity::update_many()
        .col_expr(session::Column::Timer, Expr::value(json))
        .filter(session::Column::Id.eq(id))
        .filter(session::Column::State.eq(SessionState::Live.as_str()))
        .filter(session::Column::Fence.eq(fence))
        .exec(db)
        .await?;
    if result.rows_affected == 1 {
        return Ok(Fenced::Written);
    }
    let live = find(db, id)
        .await?
        .is_some_and(|m| m.state == SessionState::Live.as_str());
    Ok(if live {
        Fenced::Superseded
    } else {
        Fenced::NotLive
    })
}
