//! Live video signalling: WHIP (RFC 9725) for the host's publishing, WHEP for
//! viewers' playback, and the room's numbers. The SDP goes to the session's
//! media room; everything here is HTTP: who may, which session, which limits.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{get, web, HttpRequest, HttpResponse};
use mobile_bridge::ErrorCode;
use simmer_entity::session;
use uuid::Uuid;

use crate::api::raw_body::RawBody;
use crate::auth::{MaybePrincipal, Principal};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::live::{Call, SessionError};
use crate::media::room::{
    Answer, EndResource, GetMediaStats, Holder, MediaError, MediaStats, Publish, Subscribe,
};
use crate::media::turn::TurnAuth;
use crate::media::MediaSettings;
use crate::state::AppState;
use crate::store::sessions::{self, SessionState};

/// Routes of WHIP and WHEP (outside `/api/v1`: their paths are the contract).
pub fn configure(cfg: &mut web::ServiceConfig, cors: &super::cors::CorsOrigins) {
    cfg.service(
        web::scope("/whip")
            .wrap(cors.middleware())
            .route("/{session_id}", web::post().to(whip))
            .route(
                "/{session_id}",
                web::method(Method::OPTIONS).to(ice_servers),
            )
            .route("/{session_id}/{resource}", web::delete().to(end_whip))
            .route("/{session_id}/{resource}", web::patch().to(no_trickle)),
    )
    .service(
        web::scope("/whep")
            .wrap(cors.middleware())
            .route("/{session_id}", web::post().to(whep))
            .route(
                "/{session_id}",
                web::method(Method::OPTIONS).to(ice_servers),
            )
            .route("/{session_id}/{resource}", web::delete().to(end_whep))
            .route("/{session_id}/{resource}", web::patch().to(no_trickle)),
    );
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::BadOffer(why) => ApiError::client(ErrorCode::InvalidBody, why),
            MediaError::Conflict(why) => ApiError::conflict(why),
            MediaError::Full(max) => ApiError::client(
                ErrorCode::RoomFull,
                format!("the room has its {max} viewers; try again later"),
            ),
            MediaError::TooMany {
                detail,
                retry_after,
            } => ApiError::rate_limited(detail, retry_after),
            MediaError::NotFound => ApiError::not_found("media session"),
            MediaError::Forbidden => ApiError::forbidden("not your media session"),
            MediaError::Unavailable(why) => ApiError::Unavailable(anyhow::anyhow!(why)),
        }
    }
}

/// The offer of a request: `application/sdp`, within the size limit, UTF-8.
fn offer(req: &HttpRequest, body: &[u8], limits: &MediaSettings) -> Result<String, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    {
        return Err(ApiError::client(
            ErrorCode::UnsupportedMediaType,
            "the offer must be sent as `Content-Type: application/sdp`",
        ));
    }
    if body.len() > limits.max_sdp_bytes {
        return Err(ApiError::client(
            ErrorCode::PayloadTooLarge,
            format!("the offer is larger than {} bytes", limits.max_sdp_bytes),
        ));
    }
    std::str::from_utf8(body)
        .map(str::to_owned)
        .map_err(|_| ApiError::client(ErrorCode::InvalidBody, "the offer is not UTF-8 text"))
}

/// A live session's host id; 404 when there is no such session, 409 when it
/// is not live.
async fn live_host(state: &AppState, id: Uuid) -> Result<Uuid, ApiError> {
    live_session(state, id).await.map(|model| model.host_id)
}

/// A live session; 404 when there is no such session, 409 when it is not
/// live.
async fn live_session(state: &AppState, id: Uuid) -> Result<session::Model, ApiError> {
    let model = sessions::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    let (session_state, _) = sessions::decode(&model)?;
    if session_state != SessionState::Live {
        return Err(ApiError::conflict(format!(
            "the session is {}; video flows while it is live",
            session_state.as_str()
        )));
    }
    Ok(model)
}

/// Checks that `principal` may watch a live session.
async fn check_viewable(
    state: &AppState,
    principal: &Principal,
    session: Uuid,
) -> Result<(), ApiError> {
    if !principal.may_view(session) {
        return Err(ApiError::forbidden(
            "a guest token is good for its own session only",
        ));
    }
    let model = live_session(state, session).await?;
    if !principal.may_view_session(&model) {
        return Err(ApiError::forbidden("this session does not let guests in"));
    }
    Ok(())
}

/// Asks the session's media room.
async fn ask<C: Call>(state: &AppState, session: Uuid, call: C) -> Result<C::Output, ApiError> {
    state
        .sessions
        .ask(session, call)
        .await
        .map_err(|e| match e {
            SessionError::NotLive => ApiError::conflict("the session is not live"),
            SessionError::Unavailable => {
                ApiError::Unavailable(anyhow::anyhow!("media room of {session} did not answer"))
            }
        })
}

/// `Link` headers announcing the ICE servers (RFC 9725 section 4.4), with
/// `who`'s own TURN credential. Without a `who` (no token), a TURN server
/// that needs a credential is not announced: it would only refuse.
fn ice_links(settings: &MediaSettings, who: Option<Uuid>) -> Vec<HeaderValue> {
    let credential = who.and_then(|who| settings.turn.credential_for(who));
    let anonymous_turn_ok = settings.turn == TurnAuth::None;
    settings
        .ice_servers
        .iter()
        .filter_map(|url| {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if url.starts_with("turn") {
                match &credential {
                    Some(c) => link.push_str(&format!(
                        "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                        c.username, c.credential
                    )),
                    None if !anonymous_turn_ok => return None,
                    None => {}
                }
            }
            HeaderValue::from_str(&link).ok()
        })
        .collect()
}

fn created(
    kind: &str,
    session: Uuid,
    answer: Answer,
    settings: &MediaSettings,
    who: Uuid,
) -> HttpResponse {
    let mut resp = HttpResponse::Created();
    resp.insert_header((
        header::LOCATION,
        format!("/{kind}/{session}/{}", answer.resource),
    ))
    .insert_header((header::ETAG, format!("\"{}\"", answer.resource)))
    .insert_header((header::CONTENT_TYPE, "application/sdp"));
    for link in ice_links(settings, Some(who)) {
        resp.append_header((header::LINK, link));
    }
    resp.body(answer.sdp)
}

/// `OPTIONS /whip/{session_id}` and `OPTIONS /whep/{session_id}`: the ICE
/// servers to configure before the offer is made (what MediaMTX and other
/// WHIP/WHEP clients ask; RFC 9725 only announces them with the answer, too
/// late for a browser that cannot restart ICE). With a token that may use
/// the session, the `turn:` servers come with that client's own credential;
/// without one, only the `stun:` servers are announced.
pub async fn ice_servers(
    state: web::Data<AppState>,
    principal: MaybePrincipal,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let session = path.into_inner();
    let settings = &state.settings.media;
    let mut resp = HttpResponse::NoContent();
    resp.insert_header((header::ALLOW, "OPTIONS, POST"))
        .insert_header(("accept-post", "application/sdp"));
    let links = match principal.0 {
        Some(principal) if !principal.may_view(session) => {
            return Err(ApiError::forbidden(
                "a guest token is good for its own session only",
            ))
        }
        Some(principal) => ice_links(settings, Some(principal.id())),
        None => ice_links(settings, None),
    };
    for link in links {
        resp.append_header((header::LINK, link));
    }
    Ok(resp.finish())
}

/// `POST /whip/{session_id}`: the host publishes.
pub async fn whip(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let session = path.into_inner();
    let settings = &state.settings.media;
    let offer = offer(&req, &body, settings)?;
    let host = live_host(&state, session).await?;
    let user = match principal {
        Principal::User { id, .. } if id == host => id,
        _ => return Err(ApiError::forbidden("only the session's host publishes")),
    };
    let answer = ask(&state, session, Publish { user, offer }).await??;
    Ok(created("whip", session, answer, settings, user))
}

/// `POST /whep/{session_id}`: a viewer (or guest) plays. Each viewer and
/// each client address holds a bounded number of the room's slots.
pub async fn whep(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientAddr,
    path: web::Path<Uuid>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let session = path.into_inner();
    let settings = &state.settings.media;
    let offer = offer(&req, &body, settings)?;
    check_viewable(&state, &principal, session).await?;
    let viewer = Holder::new(principal.id(), client.0);
    let guest = matches!(principal, Principal::Guest { .. });
    let answer = ask(
        &state,
        session,
        Subscribe {
            viewer,
            guest,
            offer,
        },
    )
    .await??;
    Ok(created("whep", session, answer, settings, principal.id()))
}

async fn end(
    state: &AppState,
    principal: &Principal,
    session: Uuid,
    resource: Uuid,
    publisher: bool,
) -> Result<HttpResponse, ApiError> {
    let end = EndResource {
        resource,
        user: principal.id(),
        publisher,
    };
    match state.sessions.ask(session, end).await {
        Ok(ended) => ended?,
        Err(SessionError::NotLive) => return Err(ApiError::not_found("media session")),
        Err(SessionError::Unavailable) => {
            return Err(ApiError::Unavailable(anyhow::anyhow!(
                "media room of {session} did not answer"
            )))
        }
    }
    Ok(HttpResponse::Ok().finish())
}

/// `DELETE /whip/{session_id}/{resource}`: publishing stops.
pub async fn end_whip(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (session, resource) = path.into_inner();
    end(&state, &principal, session, resource, true).await
}

/// `DELETE /whep/{session_id}/{resource}`: that viewer's playback ends.
pub async fn end_whep(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (session, resource) = path.into_inner();
    end(&state, &principal, session, resource, false).await
}

/// `PATCH` on a WHIP/WHEP resource: trickle ICE and ICE restarts are not
/// supported (the answer carries every candidate); RFC 9725 says 405.
pub async fn no_trickle() -> HttpResponse {
    use actix_web::ResponseError;
    let mut resp = ApiError::client(
        ErrorCode::MethodNotAllowed,
        "trickle ICE and ICE restarts are not supported: the answer has every candidate; \
         to restart, DELETE the resource and POST a new offer",
    )
    .error_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE"));
    resp
}

/// The session's live video now: publisher state, codecs, viewers, packets
/// and bitrates, keyframe requests.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/media",
    operation_id = "getSessionMediaStats",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The media room's numbers", body = MediaStats),
        (status = 404, description = "No such session", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session is not live", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/sessions/{id}/media")]
pub async fn stats(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let session = id.into_inner();
    check_viewable(&state, &principal, session).await?;
    let stats = ask(&state, session, GetMediaStats).await?;
    Ok(HttpResponse::Ok().json(stats))
}
