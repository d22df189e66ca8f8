//! Recipes.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, Set,
};
use serde::{Deserialize, Serialize};
use simmer_entity::recipe;
use uuid::Uuid;

use super::{keyset, split_page, Keyset};

/// A step as stored in the `steps` JSON column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStep {
    pub text: String,
    #[serde(default)]
    pub duration_s: Option<u32>,
    #[serde(default)]
    pub label: Option<String>,
}

/// The validated content of a recipe (create and full replace).
#[derive(Debug, Clone)]
pub struct RecipeContent {
    pub title: String,
    pub description: Option<String>,
    pub servings: Option<u32>,
    pub steps: Vec<StoredStep>,
}

/// Reads the steps column.
pub fn steps_of(model: &recipe::Model) -> Result<Vec<StoredStep>, DbErr> {
    serde_json::from_value(model.steps.clone())
        .map_err(|e| DbErr::Custom(format!("recipe {} has unreadable steps: {e}", model.id)))
}

fn steps_json(steps: &[StoredStep]) -> Result<serde_json::Value, DbErr> {
    serde_json::to_value(steps).map_err(|e| DbErr::Custom(e.to_string()))
}

fn servings(content: &RecipeContent) -> Option<i32> {
    content.servings.and_then(|s| i32::try_from(s).ok())
}

pub async fn insert(
    db: &DatabaseConnection,
    owner_id: Uuid,
    content: RecipeContent,
) -> Result<recipe::Model, DbErr> {
    let now = Utc::now();
    recipe::ActiveModel {
        id: Set(Uuid::now_v7()),
        owner_id: Set(owner_id),
        title: Set(content.title.clone()),
        description: Set(content.description.clone()),
        servings: Set(servings(&content)),
        steps: Set(steps_json(&content.steps)?),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

/// Replaces a recipe's content.
pub async fn replace(
    db: &DatabaseConnection,
    existing: recipe::Model,
    content: RecipeContent,
) -> Result<recipe::Model, DbErr> {
    let mut active = existing.into_active_model();
    active.title = Set(content.title.clone());
    active.description = Set(content.description.clone());
    active.servings = Set(servings(&content));
    active.steps = Set(steps_json(&content.steps)?);
    active.updated_at = Set(Utc::now());
    active.update(db).await
}

pub async fn delete(db: &DatabaseConnection, id: Uuid) -> Result<(), DbErr> {
    recipe::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

pub async fn find(db: &DatabaseConnection, id: Uuid) -> Result<Option<recipe::Model>, DbErr> {
    recipe::Entity::find_by_id(id).one(db).await
}

/// A page of recipes, newest first, optionally only `owner`'s.
pub async fn list(
    db: &DatabaseConnection,
    owner: Option<Uuid>,
    page: Keyset,
) -> Result<(Vec<recipe::Model>, bool), DbErr> {
    let mut query = recipe::Entity::find();
    if let Some(owner) = owner {
        query = query.filter(recipe::Column::OwnerId.eq(owner));
    }
    let rows = keyset(query, recipe::Column::Id, page).all(db).await?;
    Ok(split_page(rows, page))
}
