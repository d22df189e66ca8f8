//! Watch pairing and device management. A watch asks for a pairing and shows
//! its code; a signed-in user claims the code for a session from the phone;
//! the watch, polling with its secret, collects a device token bound to that
//! user, and follows the session's timer on the watch feed.

use std::time::Instant;

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use mobile_bridge::ErrorCode;
use serde::{Deserialize, Serialize};
use simmer_entity::watch_device;
use utoipa::ToSchema;
use uuid::Uuid;

use super::validate::Checks;
use crate::auth::{new_secret, secret_hash, AuthUser};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::store::sessions::{self, SessionState};
use crate::store::watch::{self as store, NewPairing};
use crate::watch::DeviceControl;

/// Longest tick interval, in seconds.
const TICK_MAX_S: u32 = 3600;
/// How often a watch should poll its pairing, in milliseconds.
const POLL_INTERVAL_MS: u64 = 2000;

/// A watch asking to be paired.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PairingRequest {
    /// Shown in the user's list of watches (1–64 characters; default "Watch").
    #[schema(min_length = 1, max_length = 64)]
    pub device_name: Option<String>,
    /// Seconds between `tick` frames on the feed, 0 (changes only, for
    /// watches that count down themselves) to 3600 (default 1).
    #[schema(minimum = 0, maximum = 3600)]
    pub tick_interval_s: Option<u32>,
}

/// A new pairing: show `code` on the watch; poll with `poll_secret`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Pairing {
    pub pairing_id: Uuid,
    /// Six characters without look-alikes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B);
    /// case and dashes do not matter when typed.
    #[schema(example = "K7QX4M")]
    pub code: String,
    /// Send as `X-Poll-Secret` when polling; shown once.
    pub poll_secret: String,
    pub expires_at: DateTime<Utc>,
    /// How often to poll, in milliseconds.
    pub poll_interval_ms: u64,
}

/// A user claims a watch's code for a session.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClaimRequest {
    /// The 6 characters shown on the watch, in any case, spaces and dashes
    /// ignored.
    #[schema(
        example = "K7QX4M",
        pattern = r"^[\s-]*([ACDEFGHJKMNPQRTUVWXY34679acdefghjkmnpqrtuvwxy][\s-]*){6}$"
    )]
    pub code: String,
    /// The session the watch follows.
    pub session_id: Uuid,
}

/// The claimed watch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Claimed {
    pub device_id: Uuid,
}

/// Where a pairing stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PairingStatus {
    Pending,
    Claimed,
    Expired,
}

/// A pairing as its watch sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PairingState {
    pub status: PairingStatus,
    /// Once claimed: the token for the watch feed (`Authorization: Bearer`).
    /// Each poll of a claimed pairing issues a new one (the previous stops
    /// working), so a lost answer is harmless: poll again.
    pub device_token: Option<String>,
    pub device_id: Option<Uuid>,
    /// The session the watch follows, once claimed.
    pub session_id: Option<Uuid>,
}

/// A paired watch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub id: Uuid,
    pub name: String,
    /// The session whose timer it shows.
    pub session_id: Uuid,
    pub tick_interval_s: u32,
    /// Whether it has a feed open now (on this node).
    pub connected: bool,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A user's watches.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    pub items: Vec<Device>,
}

/// Where a watch should point.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RetargetRequest {
    pub session_id: Uuid,
}

fn device_view(state: &AppState, model: watch_device::Model) -> Device {
    Device {
        connected: state.sessions.watch_hub().connected(model.id),
        id: model.id,
        name: model.name,
        session_id: model.session_id,
        tick_interval_s: u32::try_from(model.tick_interval_s).unwrap_or(0),
        created_at: model.created_at,
        last_seen_at: model.last_seen_at,
    }
}

fn address(req: &HttpRequest, state: &AppState) -> crate::client_addr::ClientAddr {
    crate::client_addr::ClientAddr::of(req, state)
}

/// A session a watch may follow: it exists and has not ended.
async fn followable(state: &AppState, session_id: Uuid) -> Result<(), ApiError> {
    let model = sessions::find(&state.db, session_id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    if sessions::decode(&model)?.0 == SessionState::Ended {
        return Err(ApiError::conflict("the session has ended"));
    }
    Ok(())
}

/// A watch asks to be paired (no sign-in: the watch has no account). Show
/// the code to the user, then poll the pairing until it is claimed.
#[utoipa::path(
    post,
    path = "/api/v1/watch/pairings",
    operation_id = "createWatchPairing",
    tag = "watch",
    request_body(content = Option<PairingRequest>, description = "Optional: an empty body is fine"),
    responses(
        (status = 201, description = "Show `code`; poll with `poll_secret`", body = Pairing, headers(("Location" = String, description = "The new resource: `/api/v1/watch/pairings/{pairing_id}`"))),
        (status = 429, description = "Too many pairings from this address", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/watch/pairings")]
pub async fn create_pairing(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: super::raw_body::RawBody,
) -> Result<HttpResponse, ApiError> {
    // The body is optional (a watch may send nothing), but when there is one
    // it must be a valid request.
    let body: PairingRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PairingRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(serde_json::Value::Null) => PairingRequest::default(),
            Ok(value) => super::body::from_object(value)?,
            Err(e) => {
                return Err(ApiError::client(
                    ErrorCode::InvalidBody,
                    format!("invalid JSON body: {e}"),
                ))
            }
        }
    };
    let mut checks = Checks::new();
    let device_name = body
        .device_name
        .as_deref()
        .map(|name| checks.text("device_name", name, 1, 64, false));
    let tick = body.tick_interval_s.unwrap_or(1);
    checks.range("tick_interval_s", u64::from(tick), 0, u64::from(TICK_MAX_S));
    checks.finish()?;
    let key = format!("pair:{}", address(&req, &state));
    let now = Instant::now();
    if let Some(wait) = state.throttles.pairings.check(&key, now).await {
        return Err(ApiError::rate_limited(
            "too many pairings from this address; try again later",
            wait,
        ));
    }
    state.throttles.pairings.failed(&key, now).await;
    let ttl = chrono::Duration::from_std(state.settings.watch_pairing_ttl)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("pairing ttl: {e}")))?;
    let poll_secret = new_secret();
    let pairing = store::create_pairing(
        &state.db,
        NewPairing {
            poll_secret_hash: secret_hash(&poll_secret),
            device_name,
            tick_interval_s: i32::try_from(tick).unwrap_or(1),
            ttl,
        },
    )
    .await?;
    tracing::info!(pairing_id = %pairing.id, "watch pairing created");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/watch/pairings/{}", pairing.id)))
        .json(Pairing {
            pairing_id: pairing.id,
            code: pairing.code,
            poll_secret,
            expires_at: pairing.expires_at,
            poll_interval_ms: POLL_INTERVAL_MS,
        }))
}

/// A signed-in user claims a watch's code for a session. Wrong codes are
/// counted per user and per address; too many answer 429.
#[utoipa::path(
    post,
    path = "/api/v1/watch/pairings/claim",
    operation_id = "claimWatchPairing",
    tag = "watch",
    request_body = ClaimRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Claimed; the watch collects its token on its next poll", body = Claimed),
        (status = 404, description = "No such code (`not_found`), or no such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The code was already used (`pairing_used`), or the session has ended (`conflict`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 410, description = "The code expired (`pairing_expired`): ask the watch for a new one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a code (6 characters of the code alphabet)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong codes", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn claim(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    body: super::body::Body<ClaimRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = Instant::now();
    let keys = [
        format!("claim-user:{}", user.id),
        format!("claim-addr:{}", address(&req, &state)),
    ];
    let mut locked = None;
    for key in &keys {
        locked = locked.max(state.throttles.claims.check(key, now).await);
    }
    if let Some(wait) = locked {
        return Err(ApiError::rate_limited(
            "too many wrong pairing codes; try again later",
            wait,
        ));
    }
    let Some(code) = store::normalise_code(&body.code) else {
        return Err(ApiError::validation(vec![FieldError {
            field: "code".into(),
            message: "must be the 6 characters shown on the watch".into(),
        }]));
    };
    let wrong = |reason: &'static str| {
        let (state, keys, req) = (&state, &keys, &req);
        async move {
            for key in keys {
                state.throttles.claims.failed(key, now).await;
            }
            tracing::warn!(user_id = %user.id, address = %address(req, state), reason, "wrong watch pairing code");
        }
    };
    let Some(pairing) = store::pairing_by_code(&state.db, &code).await? else {
        wrong("unknown").await;
        return Err(ApiError::client(
            ErrorCode::NotFound,
            "no watch is showing that code; check it, or ask the watch for a new one",
        ));
    };
    let at = Utc::now();
    if pairing.claimed_at.is_some() {
        wrong("used").await;
        return Err(ApiError::client(
            ErrorCode::PairingUsed,
            "that code was already used; ask the watch for a new one",
        ));
    }
    if pairing.expires_at <= at {
        wrong("expired").await;
        return Err(ApiError::client(
            ErrorCode::PairingExpired,
            "that code expired; ask the watch for a new one",
        ));
    }
    followable(&state, body.session_id).await?;
    let device = store::claim(&state.db, &pairing, user.id, body.session_id, at)
        .await?
        .ok_or_else(|| {
            ApiError::client(
                ErrorCode::PairingUsed,
                "that code was just used or expired; ask the watch for a new one",
            )
        })?;
    tracing::info!(device_id = %device.id, session_id = %body.session_id, "watch paired");
    Ok(HttpResponse::Ok().json(Claimed {
        device_id: device.id,
    }))
}

/// The watch polls its pairing with `X-Poll-Secret`. Once claimed, the
/// answer carries its device token (a new one on every poll, until the
/// pairing's collection window closes).
#[utoipa::path(
    get,
    path = "/api/v1/watch/pairings/{pairing_id}",
    operation_id = "getWatchPairing",
    tag = "watch",
    params(
        ("pairing_id" = Uuid, Path, description = "Pairing id"),
        ("X-Poll-Secret" = String, Header, description = "The `poll_secret` of the pairing"),
    ),
    responses(
        (status = 200, description = "Where the pairing stands", body = PairingState),
        (status = 401, description = "No `X-Poll-Secret`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong `X-Poll-Secret`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pairing", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/watch/pairings/{pairing_id}")]
pub async fn poll_pairing(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let secret = req
        .headers()
        .get("X-Poll-Secret")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized("send the pairing's poll secret as `X-Poll-Secret`")
        })?;
    let pairing = store::pairing(&state.db, id.into_inner())
        .await?
        .ok_or_else(|| ApiError::not_found("pairing"))?;
    if secret_hash(secret) != pairing.poll_secret_hash {
        return Err(ApiError::forbidden("wrong poll secret"));
    }
    let now = Utc::now();
    let pending = |status| PairingState {
        status,
        device_token: None,
        device_id: None,
        session_id: None,
    };
    let (Some(claimed_at), Some(device_id)) = (pairing.claimed_at, pairing.device_id) else {
        let status = if pairing.expires_at <= now {
            PairingStatus::Expired
        } else {
            PairingStatus::Pending
        };
        return Ok(HttpResponse::Ok().json(pending(status)));
    };
    let window = chrono::Duration::from_std(state.settings.watch_pairing_ttl)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("pairing ttl: {e}")))?;
    let device = store::device(&state.db, device_id).await?;
    let Some(device) = device.filter(|_| claimed_at + window > now) else {
        // Too late to collect (or the user already removed the watch).
        return Ok(HttpResponse::Ok().json(pending(PairingStatus::Expired)));
    };
    let token = new_secret();
    store::set_token(&state.db, device.id, &secret_hash(&token)).await?;
    Ok(HttpResponse::Ok().json(PairingState {
        status: PairingStatus::Claimed,
        device_token: Some(token),
        device_id: Some(device.id),
        session_id: Some(device.session_id),
    }))
}

/// The caller's watches.
#[utoipa::path(
    get,
    path = "/api/v1/watch/devices",
    operation_id = "listWatchDevices",
    tag = "watch",
    security(("bearer" = [])),
    responses((status = 200, description = "Newest first", body = DeviceList))
)]
#[get("/watch/devices")]
pub async fn list_devices(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let items = store::devices_of(&state.db, user.id)
        .await?
        .into_iter()
        .map(|d| device_view(&state, d))
        .collect();
    Ok(HttpResponse::Ok().json(DeviceList { items }))
}

/// Removes a watch: its token stops working and its open feed gets `bye`
/// and closes at once.
#[utoipa::path(
    delete,
    path = "/api/v1/watch/devices/{id}",
    operation_id = "deleteWatchDevice",
    tag = "watch",
    params(("id" = Uuid, Path, description = "Device id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such watch of yours", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/watch/devices/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn delete_device(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !store::delete_device(&state.db, user.id, id).await? {
        return Err(ApiError::not_found("watch"));
    }
    let feeds = state.sessions.tell_device(id, DeviceControl::Revoked).await;
    tracing::info!(device_id = %id, feeds, "watch revoked");
    Ok(HttpResponse::NoContent().finish())
}

/// Points a watch at another session; its open feed gets that session's
/// snapshot at once.
#[utoipa::path(
    put,
    path = "/api/v1/watch/devices/{id}/session",
    operation_id = "retargetWatchDevice",
    tag = "watch",
    params(("id" = Uuid, Path, description = "Device id")),
    request_body = RetargetRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The watch, now following the session", body = Device),
        (status = 404, description = "No such watch of yours, or no such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session has ended", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[put("/watch/devices/{id}/session")]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn retarget(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: super::body::Body<RetargetRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    followable(&state, body.session_id).await?;
    let device = store::retarget(&state.db, user.id, id, body.session_id)
        .await?
        .ok_or_else(|| ApiError::not_found("watch"))?;
    state
        .sessions
        .tell_device(id, DeviceControl::Retarget(body.session_id))
        .await;
    Ok(HttpResponse::Ok().json(device_view(&state, device)))
}
