//! A live cooking session: scheduled, then live, then ended.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub host_id: Uuid,
    /// The recipe it was created from; `None` once that recipe is deleted
    /// (the session keeps its own copy in `recipe`).
    pub recipe_id: Option<Uuid>,
    pub title: String,
    pub allow_guests: bool,
    /// `scheduled`, `live` or `ended`.
    pub state: String,
    /// A copy of the recipe (`{id,title,description,servings,steps}`), taken at
    /// creation and refreshed at start, so edits never move a live timer.
    pub recipe: Json,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub ended_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    /// The recipe timer's record (`watch_sync::TimerRecord`); `null` until
    /// the host first touches the timer.
    pub timer: Option<Json>,
    /// The timer moves to the next step by itself when a countdown ends.
    pub auto_advance: bool,
    /// The fencing token of the node that runs the session: raised at every
    /// take-over; a chat or timer write with an older one is refused.
    pub fence: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::HostId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    Host,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Host.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
