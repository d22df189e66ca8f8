//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use super::{admin, auth, chat, cluster, guests, health, media, models, recipes, sessions, watch};
use crate::error::{FieldError, Problem};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Simmer API",
        description = "REST API of Simmer, the backend of live cooking streams. \
Errors are `application/problem+json` (RFC 9457) with a stable `code`. \
Authenticate with `Authorization: Bearer <access_token>`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        auth::register,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::me,
        recipes::create,
        recipes::list,
        recipes::get,
        recipes::replace,
        recipes::delete,
        sessions::create,
        sessions::list,
        sessions::get,
        sessions::start,
        sessions::end,
        guests::update,
        guests::guest_token,
        sessions::get_timer,
        sessions::control_timer,
        media::stats,
        watch::create_pairing,
        watch::claim,
        watch::poll_pairing,
        watch::list_devices,
        watch::delete_device,
        watch::retarget,
        chat::list,
        chat::post_message,
        chat::delete_message,
        chat::mute,
        health::healthz,
        health::readyz,
        health::metrics,
        cluster::view,
        admin::drain,
    ),
    components(schemas(
        Problem,
        FieldError,
        crate::cluster::NodeRecord,
        cluster::ClusterView,
        admin::DrainStatus,
        mobile_bridge::ErrorCode,
        models::User,
        models::UserSummary,
        watch_sync::TimerView,
        watch_sync::TimerState,
        watch_sync::TimerStep,
        sessions::TimerRequest,
        mobile_bridge::protocol::ChatMessage,
        mobile_bridge::protocol::Author,
        mobile_bridge::protocol::Role,
    )),
    modifiers(&BearerAuth, &StandardErrors),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "recipes", description = "Recipes and their steps"),
        (name = "sessions", description = "Live cooking sessions"),
        (name = "chat", description = "Chat history, posting and moderation (live delivery is over `/ws`)"),
        (name = "watch", description = "Smartwatch pairing and devices (the timer feed itself is `/watch/ws` or `/watch/events`, see docs/watch.md)"),
        (name = "operations", description = "Health and metrics for operators"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme (JWT access tokens).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        // Operators' own token (`SIMMER_ADMIN_TOKEN`), for the admin endpoints.
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Adds the error responses every operation can give, so each handler only
/// lists its own (404, 409, a more precise 403): 400 for malformed input,
/// 401 and 403 where a token is read (a guest's token may be refused),
/// 413/415/422 where a body is read, 503 when the database is down.
struct StandardErrors;

const STANDARD: [(&str, &str, &str); 7] = [
    ("400", "BadRequest", "Malformed path, query or body (`invalid_path`, `invalid_query`, `invalid_cursor`, `invalid_body`)"),
    ("401", "Unauthorized", "Missing, malformed, forged or expired token (`unauthorized`), or wrong credentials"),
    ("403", "Forbidden", "Not allowed with this token (`forbidden`): a guest token where an account is needed or for another session, or not the owner"),
    ("413", "PayloadTooLarge", "Body over the configured limit (`payload_too_large`)"),
    ("415", "UnsupportedMediaType", "Body is not `application/json` (`unsupported_media_type`)"),
    ("422", "ValidationFailed", "A field breaks a rule (`validation_failed`; `errors` lists them)"),
    ("503", "Unavailable", "The database (or, in a cluster, Redis or the session's node) is unavailable (`unavailable`); retry later"),
];

/// A response header clients read, declared as a string.
fn header(description: &str, schema_type: Type) -> Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(schema_type))
        .description(Some(description))
        .build()
}

/// `Retry-After` in whole seconds, on every 429 and 503.
fn retry_after() -> Header {
    header("Seconds to wait before trying again", Type::Integer)
}

/// `WWW-Authenticate` on every 401.
fn www_authenticate() -> Header {
    header("`Bearer realm=\"simmer\"`", Type::String)
}

fn problem_response(status: &str, description: &str) -> Response {
    let builder = match status {
        "401" => builder_with("WWW-Authenticate", www_authenticate()),
        "429" | "503" => builder_with("Retry-After", retry_after()),
        _ => ResponseBuilder::new(),
    };
    builder
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn add_standard(op: &mut Operation, is_operations_endpoint: bool) {
    let has_body = op.request_body.is_some();
    let has_auth = op.security.as_ref().is_some_and(|reqs| !reqs.is_empty());
    let login_like = op
        .operation_id
        .as_deref()
        .is_some_and(|id| matches!(id, "login" | "refreshTokens"));
    for (status, name, _) in STANDARD {
        let wanted = match status {
            "400" => !is_operations_endpoint,
            "401" => has_auth || login_like,
            // Every route that reads a bearer token can meet a guest's.
            "403" => has_auth,
            "413" | "415" | "422" => has_body,
            "503" => !is_operations_endpoint || op.operation_id.as_deref() == Some("readyz"),
            _ => false,
        };
        if wanted {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
        }
    }
}

fn builder_with(name: &str, header: Header) -> ResponseBuilder {
    ResponseBuilder::new().header(name, header)
}

/// What a handler documents inline gets the headers its status comes with.
fn add_headers(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let (name, header) = match status.as_str() {
            "429" | "503" => ("Retry-After", retry_after()),
            "401" => ("WWW-Authenticate", www_authenticate()),
            _ => continue,
        };
        response.headers.entry(name.to_owned()).or_insert(header);
    }
}

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (status, name, description) in STANDARD {
            components.responses.insert(
                name.to_owned(),
                RefOr::T(problem_response(status, description)),
            );
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops_endpoint = !path.starts_with("/api/");
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_standard(op, ops_endpoint);
                add_headers(op);
            }
        }
    }
}

/// The document as pretty JSON (what `simmer openapi` prints and
/// `docs/openapi.json` holds).
pub fn json() -> Result<String, serde_json::Error> {
    ApiDoc::openapi().to_pretty_json()
}
