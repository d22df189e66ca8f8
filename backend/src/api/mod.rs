//! The REST API (`/api/v1`), operations endpoints and the OpenAPI document.

pub mod auth;
pub mod health;
pub mod models;
pub mod openapi;
pub mod pagination;
pub mod recipes;
pub mod sessions;
mod validate;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest, HttpResponse};
use mobile_bridge::ErrorCode;

use crate::error::ApiError;

/// Routes of `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
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
            .service(sessions::guest_token)
            .service(sessions::get_timer)
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

/// The fallback for unknown paths: a problem document, not an empty 404.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::client(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    )
    .error_response()
}
