//! Recipes: anyone reads them, the owner changes them.

use actix_web::{delete, get, post, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use simmer_entity::recipe;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::models::UserSummary;
use super::pagination;
use super::validate::Checks;
use crate::auth::{AuthUser, MaybePrincipal, Principal};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::recipes::{self as store, RecipeContent, StoredStep};
use crate::store::users;

/// Limits of a recipe (documented in the schema and enforced here).
pub const TITLE_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 5000;
pub const SERVINGS_MAX: u32 = 100;
pub const STEPS_MAX: usize = 100;
pub const STEP_TEXT_MAX: usize = 2000;
pub const STEP_LABEL_MAX: usize = 60;
pub const STEP_DURATION_MAX_S: u32 = 24 * 3600;

/// One step of a new or replaced recipe.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StepInput {
    /// 1–2000 characters.
    #[schema(
        example = "Bring the water to a boil",
        min_length = 1,
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*\S[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    pub text: String,
    /// The step's countdown, 1 s – 24 h; omit for a manual step.
    #[schema(example = 600, minimum = 1, maximum = 86400)]
    pub duration_s: Option<u32>,
    /// A short name for small screens, up to 60 characters.
    #[schema(
        example = "Boil",
        max_length = 60,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub label: Option<String>,
}

/// A new recipe, or the full replacement of one.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecipeInput {
    /// 1–200 characters.
    #[schema(
        example = "Tomato soup",
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*\S[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub title: String,
    /// Up to 5000 characters.
    #[schema(
        max_length = 5000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    pub description: Option<String>,
    /// 1–100.
    #[schema(minimum = 1, maximum = 100)]
    pub servings: Option<u32>,
    /// 1–100 steps, in order.
    #[schema(min_items = 1, max_items = 100)]
    pub steps: Vec<StepInput>,
}

/// A recipe step.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// Position in the recipe, from 0.
    pub index: u32,
    pub text: String,
    pub duration_s: Option<u32>,
    pub label: Option<String>,
}

/// A recipe.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recipe {
    pub id: Uuid,
    pub owner: UserSummary,
    pub title: String,
    pub description: Option<String>,
    pub servings: Option<u32>,
    pub steps: Vec<Step>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of recipes, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecipePage {
    pub items: Vec<Recipe>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Filters and paging of the recipe list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListRecipesQuery {
    /// Only the caller's own recipes (needs a token).
    pub mine: Option<bool>,
    /// `next_cursor` of the previous page (empty or absent: the first page).
    #[param(pattern = r"^([A-Za-z0-9_-]{22})?$")]
    pub cursor: Option<String>,
    /// Page size, 1 to the configured maximum (default 20, max 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Numbers the stored steps for the wire.
pub fn steps_view(steps: &[StoredStep]) -> Vec<Step> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| Step {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            text: s.text.clone(),
            duration_s: s.duration_s,
            label: s.label.clone(),
        })
        .collect()
}

fn view(model: &recipe::Model, owner: UserSummary) -> Result<Recipe, ApiError> {
    Ok(Recipe {
        id: model.id,
        owner,
        title: model.title.clone(),
        description: model.description.clone(),
        servings: model.servings.and_then(|s| u32::try_from(s).ok()),
        steps: steps_view(&store::steps_of(model)?),
        created_at: model.created_at,
        updated_at: model.updated_at,
    })
}

fn validate(input: RecipeInput) -> Result<RecipeContent, ApiError> {
    let mut checks = Checks::new();
    let title = checks.text("title", &input.title, 1, TITLE_MAX, false);
    let description = checks.optional_text(
        "description",
        input.description.as_deref(),
        DESCRIPTION_MAX,
        true,
    );
    if let Some(servings) = input.servings {
        checks.range("servings", u64::from(servings), 1, u64::from(SERVINGS_MAX));
    }
    if input.steps.is_empty() || input.steps.len() > STEPS_MAX {
        checks.fail("steps", format!("must have 1 to {STEPS_MAX} steps"));
    }
    let steps = input
        .steps
        .iter()
        .take(STEPS_MAX)
        .enumerate()
        .map(|(i, step)| {
            let text = checks.text(
                &format!("steps[{i}].text"),
                &step.text,
                1,
                STEP_TEXT_MAX,
                true,
            );
            let label = checks.optional_text(
                &format!("steps[{i}].label"),
                step.label.as_deref(),
                STEP_LABEL_MAX,
                false,
            );
            if let Some(d) = step.duration_s {
                checks.range(
                    &format!("steps[{i}].duration_s"),
                    u64::from(d),
                    1,
                    u64::from(STEP_DURATION_MAX_S),
                );
            }
            StoredStep {
                text,
                duration_s: step.duration_s,
                label,
            }
        })
        .collect();
    checks.finish()?;
    Ok(RecipeContent {
        title,
        description,
        servings: input.servings,
        steps,
    })
}

async fn owned(state: &AppState, id: Uuid, user: &AuthUser) -> Result<recipe::Model, ApiError> {
    let model = store::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("recipe"))?;
    if model.owner_id != user.id {
        return Err(ApiError::forbidden("only the recipe's owner may change it"));
    }
    Ok(model)
}

async fn owner_of(state: &AppState, model: &recipe::Model) -> Result<UserSummary, ApiError> {
    Ok(users::by_id(&state.db, model.owner_id)
        .await?
        .map(|u| UserSummary::from(&u))
        .unwrap_or_else(|| UserSummary::deleted(model.owner_id)))
}

/// Creates a recipe owned by the caller.
#[utoipa::path(
    post,
    path = "/api/v1/recipes",
    operation_id = "createRecipe",
    tag = "recipes",
    request_body = RecipeInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Recipe, headers(("Location" = String, description = "The new resource: `/api/v1/recipes/{id}`"))),
        (status = 403, description = "Guest tokens cannot create recipes", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/recipes")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: super::body::Body<RecipeInput>,
) -> Result<HttpResponse, ApiError> {
    let content = validate(body.into_inner())?;
    let model = store::insert(&state.db, user.id, content).await?;
    let owner = owner_of(&state, &model).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/recipes/{}", model.id)))
        .json(view(&model, owner)?))
}

/// Lists recipes, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/recipes",
    operation_id = "listRecipes",
    tag = "recipes",
    params(ListRecipesQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of recipes", body = RecipePage),
        (status = 403, description = "`mine=true` with a guest token", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/recipes")]
pub async fn list(
    state: web::Data<AppState>,
    caller: MaybePrincipal,
    query: web::Query<ListRecipesQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = pagination::keyset(query.cursor.as_deref(), query.limit, &state.settings)?;
    let owner = if query.mine.unwrap_or(false) {
        match caller.0 {
            Some(Principal::User { id, .. }) => Some(id),
            Some(Principal::Guest { .. }) => {
                return Err(ApiError::forbidden("guest tokens own no recipes"))
            }
            None => return Err(ApiError::unauthorized("`mine=true` needs a bearer token")),
        }
    } else {
        None
    };
    let (rows, more) = store::list(&state.db, owner, page).await?;
    let owners = users::by_ids(&state.db, rows.iter().map(|r| r.owner_id)).await?;
    let items = rows
        .iter()
        .map(|r| {
            let owner = owners
                .get(&r.owner_id)
                .map(UserSummary::from)
                .unwrap_or_else(|| UserSummary::deleted(r.owner_id));
            view(r, owner)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = pagination::next_cursor(rows.last().map(|r| r.id), more);
    Ok(HttpResponse::Ok().json(RecipePage { items, next_cursor }))
}

/// One recipe.
#[utoipa::path(
    get,
    path = "/api/v1/recipes/{id}",
    operation_id = "getRecipe",
    tag = "recipes",
    params(("id" = Uuid, Path, description = "Recipe id")),
    responses(
        (status = 200, description = "The recipe", body = Recipe),
        (status = 404, description = "No such recipe", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/recipes/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let model = store::find(&state.db, id.into_inner())
        .await?
        .ok_or_else(|| ApiError::not_found("recipe"))?;
    let owner = owner_of(&state, &model).await?;
    Ok(HttpResponse::Ok().json(view(&model, owner)?))
}

/// Replaces a recipe's content (owner only). Sessions keep the copy they
/// took; a scheduled session picks up the change when it starts.
#[utoipa::path(
    put,
    path = "/api/v1/recipes/{id}",
    operation_id = "replaceRecipe",
    tag = "recipes",
    params(("id" = Uuid, Path, description = "Recipe id")),
    request_body = RecipeInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced", body = Recipe),
        (status = 403, description = "Not the owner", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such recipe", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[put("/recipes/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn replace(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: super::body::Body<RecipeInput>,
) -> Result<HttpResponse, ApiError> {
    let existing = owned(&state, id.into_inner(), &user).await?;
    let content = validate(body.into_inner())?;
    let model = store::replace(&state.db, existing, content).await?;
    let owner = owner_of(&state, &model).await?;
    Ok(HttpResponse::Ok().json(view(&model, owner)?))
}

/// Deletes a recipe (owner only). Sessions made from it keep their copy.
#[utoipa::path(
    delete,
    path = "/api/v1/recipes/{id}",
    operation_id = "deleteRecipe",
    tag = "recipes",
    params(("id" = Uuid, Path, description = "Recipe id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not the owner", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such recipe", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/recipes/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let existing = owned(&state, id.into_inner(), &user).await?;
    store::delete(&state.db, existing.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
