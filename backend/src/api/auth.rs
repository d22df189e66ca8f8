//! Accounts: register, login, refresh, logout, `GET /me`.

use actix_web::{get, post, web, HttpResponse};
use mobile_bridge::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::models::User;
use super::validate::Checks;
use crate::auth::{AuthUser, Lockout, RotateOutcome, TokenKind};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::users::{self, CreateUserError};

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// 3–32 characters: letters, digits, `_`, `.`, `-`. Case-insensitive
    /// (stored lower-case).
    #[schema(
        example = "chef_anna",
        min_length = 3,
        max_length = 32,
        pattern = r"^[A-Za-z0-9_.-]+$"
    )]
    pub username: String,
    /// 8–128 characters.
    #[schema(example = "correct horse battery", min_length = 8, max_length = 128)]
    pub password: String,
    /// 1–64 characters; defaults to the username.
    #[schema(
        example = "Anna",
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*\S[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub display_name: Option<String>,
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// A refresh token to exchange or revoke.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// A signed-in user and their tokens.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuthResponse {
    pub user: User,
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Exchange at `/auth/refresh` before the access token expires; single use.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

const USERNAME_CHARS: &str = "letters, digits, `_`, `.` and `-`";

fn normalise_username(raw: &str) -> String {
    raw.trim().to_lowercase()
}

async fn signed_in(
    state: &AppState,
    user: &simmer_entity::user::Model,
) -> Result<AuthResponse, ApiError> {
    let refresh_token = state.refresh_tokens.issue(user.id).await?;
    token_pair(state, user, refresh_token)
}

fn token_pair(
    state: &AppState,
    user: &simmer_entity::user::Model,
    refresh_token: String,
) -> Result<AuthResponse, ApiError> {
    let ttl = state.settings.access_token_ttl;
    let access_token = state
        .keys
        .issue(user.id, TokenKind::User, &user.display_name, None, ttl)?;
    Ok(AuthResponse {
        user: User::from(user),
        access_token,
        refresh_token,
        token_type: "Bearer".into(),
        expires_in: ttl.as_secs(),
    })
}

/// Creates an account and signs it in.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    operation_id = "register",
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created and signed in", body = AuthResponse),
        (status = 409, description = "Username taken (`username_taken`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many passwords being checked right now (`unavailable`); see `Retry-After`", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/register")]
#[tracing::instrument(skip_all, fields(username = %body.username))]
pub async fn register(
    state: web::Data<AppState>,
    body: super::body::Body<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::new();
    let username = normalise_username(&body.username);
    let len = username.chars().count();
    if !(3..=32).contains(&len) {
        checks.fail("username", "must be 3 to 32 characters");
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        checks.fail("username", format!("may contain only {USERNAME_CHARS}"));
    }
    let password_len = body.password.chars().count();
    if !(8..=128).contains(&password_len) {
        checks.fail("password", "must be 8 to 128 characters");
    }
    let display_name = match body.display_name.as_deref() {
        Some(name) => checks.display_text("display_name", name, 1, 64),
        None => username.clone(),
    };
    checks.finish()?;

    let hash = state.passwords.hash(body.password).await?;
    let user = match users::create(&state.db, &username, &display_name, hash).await {
        Ok(user) => user,
        Err(CreateUserError::UsernameTaken) => {
            return Err(ApiError::client(
                ErrorCode::UsernameTaken,
                format!("username {username:?} is taken"),
            ))
        }
        Err(CreateUserError::Db(e)) => return Err(e.into()),
    };
    tracing::info!(user_id = %user.id, "account created");
    Ok(HttpResponse::Created().json(signed_in(&state, &user).await?))
}

/// Signs in with username and password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 429, description = "Too many failed logins for this username from this address, or from this address (`rate_limited`); see `Retry-After`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many passwords being checked right now (`unavailable`); see `Retry-After`", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/login")]
#[tracing::instrument(skip_all, fields(username = %body.username.chars().take(64).collect::<String>(), %addr))]
pub async fn login(
    state: web::Data<AppState>,
    addr: ClientAddr,
    body: super::body::Body<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let username = normalise_username(&body.username);
    let now = std::time::Instant::now();
    if let Some(lockout) = state.throttles.logins.check(&username, addr.0, now).await {
        let (whom, wait) = match lockout {
            Lockout::User(wait) => ("this username from this address", wait),
            Lockout::Address(wait) => ("this address", wait),
        };
        return Err(ApiError::rate_limited(
            format!(
                "too many failed logins for {whom}; retry in {} s",
                wait.as_secs().max(1)
            ),
            wait,
        ));
    }
    let user = if username.len() <= 64 {
        users::by_username(&state.db, &username).await?
    } else {
        None
    };
    // Verify against a dummy hash for unknown users, so that timing does not
    // tell which usernames exist.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.passwords.dummy_hash().to_owned());
    let password_ok =
        body.password.len() <= 1024 && state.passwords.verify(body.password, hash).await?;
    let Some(user) = user.filter(|_| password_ok) else {
        state.throttles.logins.failed(&username, addr.0, now).await;
        return Err(ApiError::client(
            ErrorCode::InvalidCredentials,
            "username or password is wrong",
        ));
    };
    state.throttles.logins.succeeded(&username, addr.0).await;
    Ok(HttpResponse::Ok().json(signed_in(&state, &user).await?))
}

/// Exchanges a refresh token for a new pair. The old refresh token stops
/// working; presenting it again revokes every token of that sign-in.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    operation_id = "refreshTokens",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = AuthResponse),
    )
)]
#[post("/auth/refresh")]
#[tracing::instrument(skip_all)]
pub async fn refresh(
    state: web::Data<AppState>,
    body: super::body::Body<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let rejected = || {
        ApiError::client(
            ErrorCode::InvalidRefreshToken,
            "refresh token is unknown, expired, revoked or already used; sign in again",
        )
    };
    if body.refresh_token.len() > 256 {
        return Err(rejected());
    }
    let (user_id, token) = match state.refresh_tokens.rotate(&body.refresh_token).await? {
        RotateOutcome::Rotated { user_id, token } => (user_id, token),
        RotateOutcome::Rejected => return Err(rejected()),
    };
    let user = users::by_id(&state.db, user_id)
        .await?
        .ok_or_else(rejected)?;
    Ok(HttpResponse::Ok().json(token_pair(&state, &user, token)?))
}

/// Signs out: revokes the refresh token and every token rotated from it.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    operation_id = "logout",
    tag = "auth",
    request_body = RefreshRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "Guest tokens cannot sign out", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/logout")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn logout(
    state: web::Data<AppState>,
    user: AuthUser,
    body: super::body::Body<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    if body.refresh_token.len() <= 256 {
        state
            .refresh_tokens
            .revoke(user.id, &body.refresh_token)
            .await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The signed-in user.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "getMe",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = User),
        (status = 403, description = "Guest tokens have no account", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account was deleted", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let user = users::by_id(&state.db, user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    Ok(HttpResponse::Ok().json(User::from(&user)))
}
