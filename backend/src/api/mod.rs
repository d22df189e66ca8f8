//! The REST API (`/api/v1`), operations endpoints and the OpenAPI document.

pub mod admin;
pub mod auth;
pub mod body;
pub mod chat;
pub mod cluster;
pub mod cors;
pub mod guests;
pub mod health;
pub mod media;
pub mod models;
pub mod openapi;
pub mod pagination;
pub mod raw_body;
pub mod recipes;
pub mod sessions;
mod validate;
pub mod watch;

use std::collections::HashMap;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest, HttpResponse};
use mobile_bridge::ErrorCode;

use crate::error::ApiError;

/// Routes of `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig, cors: &cors::CorsOrigins) {
    cfg.service(
        web::scope("/api/v1")
            .wrap(cors.middleware())
            .service(auth::register)
            .service(auth::login)
            .service(auth::refresh)
            .service(auth::logout)
            .service(auth::me)
            .service(recipes::create)
            .service(recipes::list)
            .service(recipes::get)
            .service(recipes::replace)
            .service(recipes::delete)
            .service(sessions::create)
            .service(sessions::list)
            .service(sessions::get)
            .service(sessions::start)
            .service(sessions::end)
            .service(guests::update)
            .service(guests::guest_token)
            .service(sessions::get_timer)
            .service(sessions::control_timer)
            .service(chat::list)
            .service(chat::post_message)
            .service(chat::delete_message)
            .service(chat::mute)
            .service(media::stats)
            .service(watch::create_pairing)
            // A resource of its own, not a guarded route: another method
            // here is a 405, not a pairing id that fails to parse.
            .service(
                web::resource("/watch/pairings/claim")
                    .route(web::post().to(watch::claim))
                    .default_service(web::to(not_found)),
            )
            .service(watch::poll_pairing)
            .service(watch::list_devices)
            .service(watch::delete_device)
            .service(watch::retarget)
            .service(cluster::view)
            .service(admin::drain)
            .default_service(web::to(not_found)),
    );
}

/// Turns body, path and query extraction failures into problem documents.
pub fn extractor_configs(
    max_body_bytes: usize,
) -> (web::JsonConfig, web::PathConfig, web::QueryConfig) {
    let json = web::JsonConfig::default()
        .limit(max_body_bytes)
        .error_handler(move |err, _req| {
            let api = match &err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => ApiError::client(
                    ErrorCode::PayloadTooLarge,
                    format!("request body is larger than the limit of {max_body_bytes} bytes"),
                ),
                JsonPayloadError::ContentType => ApiError::client(
                    ErrorCode::UnsupportedMediaType,
                    "request body must be JSON (Content-Type: application/json)",
                ),
                JsonPayloadError::Deserialize(e) => {
                    ApiError::client(ErrorCode::InvalidBody, format!("invalid JSON body: {e}"))
                }
                other => ApiError::client(ErrorCode::InvalidBody, format!("invalid body: {other}")),
            };
            api.into()
        });
    let path = web::PathConfig::default().error_handler(|err, _req| {
        let detail = match &err {
            PathError::Deserialize(e) => format!("invalid path parameter: {e}"),
            other => format!("invalid path parameter: {other}"),
        };
        ApiError::client(ErrorCode::InvalidPath, detail).into()
    });
    let query = web::QueryConfig::default().error_handler(|err, _req| {
        let detail = match &err {
            QueryPayloadError::Deserialize(e) => format!("invalid query: {e}"),
            other => format!("invalid query: {other}"),
        };
        ApiError::client(ErrorCode::InvalidQuery, detail).into()
    });
    (json, path, query)
}

/// The methods each documented route answers, for `405` and `Allow`.
#[derive(Debug, Clone, Default)]
pub struct AllowedMethods(HashMap<String, Vec<&'static str>>);

impl AllowedMethods {
    /// Read off the OpenAPI document, so it cannot drift from the routes.
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let map = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, present)| present.then_some(m))
                .collect();
                (path.clone(), methods)
            })
            .collect();
        Self(map)
    }
}

/// The fallback: a known path with another method gets `405` and `Allow`;
/// anything else a `404`. Both as problem documents.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    let allowed = req
        .match_pattern()
        .and_then(|pattern| {
            req.app_data::<web::Data<AllowedMethods>>()
                .and_then(|a| a.0.get(&pattern).cloned())
        })
        .filter(|methods| !methods.is_empty());
    match allowed {
        Some(methods) => {
            let allow = methods.join(", ");
            let mut resp = ApiError::client(
                ErrorCode::MethodNotAllowed,
                format!("{} is not supported here; use {allow}", req.method()),
            )
            .error_response();
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
                resp.headers_mut()
                    .insert(actix_web::http::header::ALLOW, value);
            }
            resp
        }
        None => ApiError::client(
            ErrorCode::NotFound,
            format!("no route for {} {}", req.method(), req.path()),
        )
        .error_response(),
    }
}
