//! The raw body of a request, for the routes that read bytes rather than
//! JSON (WHIP and WHEP offers, the optional pairing request). Read within
//! the app's `PayloadConfig` limit (`max_body_bytes`) like actix's
//! `web::Bytes`, but a body that is too large or cannot be read is a problem
//! document like every other error: actix's own extractor answers `413` in
//! `text/plain`.

use actix_web::error::PayloadError;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use mobile_bridge::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// A request body as bytes; an extractor (use it instead of `web::Bytes`).
#[derive(Debug, Clone)]
pub struct RawBody(pub web::Bytes);

impl std::ops::Deref for RawBody {
    type Target = web::Bytes;

    fn deref(&self) -> &web::Bytes {
        &self.0
    }
}

/// The problem for a body that `web::Bytes` could not read.
fn problem(err: &actix_web::Error, limit: Option<usize>) -> ApiError {
    match err.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ApiError::client(
            ErrorCode::PayloadTooLarge,
            match limit {
                Some(limit) => format!("request body is larger than the limit of {limit} bytes"),
                None => "request body is too large".to_owned(),
            },
        ),
        Some(PayloadError::UnknownLength) => {
            ApiError::client(ErrorCode::InvalidBody, "invalid Content-Length")
        }
        Some(other) => ApiError::client(
            ErrorCode::InvalidBody,
            format!("the request body could not be read: {other}"),
        ),
        None => ApiError::client(ErrorCode::InvalidBody, format!("invalid body: {err}")),
    }
}

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.settings.max_body_bytes);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move { body.await.map(RawBody).map_err(|err| problem(&err, limit)) })
    }
}
