//! Extractors: handlers say who may call them by the type they take.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use mobile_bridge::protocol::{Author, Role};
use mobile_bridge::UserId;
use uuid::Uuid;

use super::jwt::TokenKind;
use crate::error::ApiError;
use crate::state::AppState;

/// Any caller with a valid access token: a user or a guest.
#[derive(Debug, Clone)]
pub enum Principal {
    User {
        id: Uuid,
        name: String,
    },
    Guest {
        id: Uuid,
        name: String,
        session_id: Uuid,
    },
}

impl Principal {
    pub fn id(&self) -> Uuid {
        match self {
            Principal::User { id, .. } | Principal::Guest { id, .. } => *id,
        }
    }

    /// The display name from the token.
    pub fn name(&self) -> &str {
        match self {
            Principal::User { name, .. } | Principal::Guest { name, .. } => name,
        }
    }

    /// This caller as a chat author in a session hosted by `host_id`.
    pub fn author_in(&self, host_id: Uuid) -> Author {
        let role = match self {
            Principal::Guest { .. } => Role::Guest,
            Principal::User { id, .. } if *id == host_id => Role::Host,
            Principal::User { .. } => Role::Viewer,
        };
        Author {
            id: UserId(self.id()),
            name: self.name().to_owned(),
            role,
        }
    }

    /// Whether this caller may view `session_id` (users: any; guests: theirs).
    pub fn may_view(&self, session_id: Uuid) -> bool {
        match self {
            Principal::User { .. } => true,
            Principal::Guest {
                session_id: own, ..
            } => *own == session_id,
        }
    }
}

impl Principal {
    /// Whether this caller may view the session as it is now: users any,
    /// guests their own, while it lets guests in.
    pub fn may_view_session(&self, session: &simmer_entity::session::Model) -> bool {
        match self {
            Principal::User { .. } => true,
            Principal::Guest { session_id, .. } => {
                *session_id == session.id && session.allow_guests
            }
        }
    }
}

/// A registered user (guest tokens get 403).
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub name: String,
}

/// The caller if it sent a token, `None` if it sent none; a bad token is
/// still a 401 (a client that sends one expects it to count).
#[derive(Debug, Clone)]
pub struct MaybePrincipal(pub Option<Principal>);

fn bearer_token(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not valid text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(Some(token.trim()))
}

fn principal(req: &HttpRequest) -> Result<Option<Principal>, ApiError> {
    let Some(token) = bearer_token(req)? else {
        return Ok(None);
    };
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing")))?;
    principal_for_token(state, token).map(Some)
}

/// The caller a token names (for clients that pass it outside the header,
/// like `/ws?token=`).
pub fn principal_for_token(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let claims = state.keys.verify(token)?;
    Ok(match (claims.kind, claims.sid) {
        (TokenKind::User, _) => Principal::User {
            id: claims.sub,
            name: claims.name,
        },
        (TokenKind::Guest, Some(session_id)) => Principal::Guest {
            id: claims.sub,
            name: claims.name,
            session_id,
        },
        (TokenKind::Guest, None) => {
            return Err(ApiError::unauthorized("guest token names no session"))
        }
    })
}

/// The bearer token of a request, if it sent one (for `/ws`).
pub fn request_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    Ok(bearer_token(req)?.map(str::to_owned))
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(principal(req).and_then(|p| {
            p.ok_or_else(|| ApiError::unauthorized("this endpoint needs a bearer token"))
        }))
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        ready(
            Principal::from_request(req, payload)
                .into_inner()
                .and_then(|p| match p {
                    Principal::User { id, name } => Ok(AuthUser { id, name }),
                    Principal::Guest { .. } => Err(ApiError::forbidden(
                        "guest tokens can only view their session; sign in for this",
                    )),
                }),
        )
    }
}

impl FromRequest for MaybePrincipal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(principal(req).map(MaybePrincipal))
    }
}
