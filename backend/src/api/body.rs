//! The JSON body of a request, read the way the OpenAPI document says:
//! an object (serde alone would also take a struct written as an array),
//! whose integers may be written as JSON allows (`60` or `60.0`: one number
//! to JSON and to every generated client). Size, content type and syntax
//! are checked by actix's `web::Json` with the app's `JsonConfig`, so their
//! problems stay the same.

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use mobile_bridge::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

use crate::error::ApiError;

/// A JSON object body as `T`; an extractor (use it instead of `web::Json`).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T> Body<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Body<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            Ok(Body(from_object(value)?))
        })
    }
}

/// `T` from a JSON value that must be an object.
pub fn from_object<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::client(
            ErrorCode::InvalidBody,
            "invalid JSON body: the body must be a JSON object",
        ));
    }
    serde_json::from_value(integral(value))
        .map_err(|e| ApiError::client(ErrorCode::InvalidBody, format!("invalid JSON body: {e}")))
}

/// Largest integer an `f64` holds exactly.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Numbers with no fraction written with one (`60.0`) as integers, so that
/// integer fields take them; other values unchanged.
fn integral(value: Value) -> Value {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            // In range and whole: exactly an `i64`.
            #[allow(clippy::cast_possible_truncation)]
            Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => {
                Value::Number(Number::from(f as i64))
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, integral(v))).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Step {
        text: String,
        duration_s: Option<u32>,
    }

    #[test]
    fn an_object_with_whole_numbers_in_any_notation() {
        let step: Step =
            from_object(serde_json::json!({"text": "Boil", "duration_s": 60.0})).unwrap();
        assert_eq!(step.duration_s, Some(60));
        assert!(
            from_object::<Step>(serde_json::json!({"text": "Boil", "duration_s": 60.5})).is_err()
        );
        assert!(from_object::<Step>(serde_json::json!(["Boil", 60])).is_err());
        assert!(from_object::<Step>(serde_json::json!(null)).is_err());
    }
}
