//! The browser pages, embedded in the binary (see `build.rs`): the host
//! dashboard at `/`, the viewer page at `/s/{session_id}`, the watch
//! simulator at `/watch`, live sessions at `/live`, their scripts and
//! styles under `/assets/`, and the icon at `/favicon.svg`. Plain files, no build step; they talk to the same
//! public API as every other client.

use actix_web::http::header::{self, CacheControl, CacheDirective, EntityTag};
use actix_web::{web, HttpRequest, HttpResponse};

/// What the pages may load and who may frame them. They are plain files:
/// module scripts and style sheets from `/assets/`, no inline script or
/// style; `fetch` and WebSockets to the same origin (`'self'` covers
/// `ws:`/`wss:` there); the icon `/favicon.svg`; video from a `MediaStream`
/// (`srcObject`, which CSP does not govern, nor WebRTC). No page may be
/// framed (clickjacking of the host's controls), no plugin, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers every page and asset carries.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    // For browsers without `frame-ancestors`.
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    // Viewer links hold session ids: never send them to another site.
    ("Referrer-Policy", "no-referrer"),
];

/// Every file under `backend/web/`, by its path there.
static ASSETS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

fn find(name: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A strong validator from the bytes (FNV-1a): cheap revalidation, and a
/// new binary with changed pages never serves stale ones.
fn etag(bytes: &[u8]) -> EntityTag {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    EntityTag::new_strong(format!("{hash:016x}"))
}

/// Serves one embedded file, or `None` if there is no such file.
fn serve(req: &HttpRequest, name: &str) -> Option<HttpResponse> {
    let bytes = find(name)?;
    let tag = etag(bytes);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag.to_string()));
    // Pages and assets change together with the binary: revalidate each
    // time (a 304 is one round trip, no body).
    let mut resp = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header(header::ETag(tag))
        .insert_header(CacheControl(vec![CacheDirective::NoCache]));
    for pair in SECURITY_HEADERS {
        resp.insert_header(pair);
    }
    Some(if fresh {
        resp.finish()
    } else {
        resp.content_type(content_type(name)).body(bytes)
    })
}

async fn page(req: HttpRequest, name: &'static str) -> HttpResponse {
    match serve(&req, name) {
        Some(resp) => resp,
        None => crate::api::not_found(req).await,
    }
}

async fn asset(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let name = path.into_inner();
    // Only files that exist in the table are served: no path is ever
    // looked up on disk, so `..` cannot escape.
    match serve(&req, &name).filter(|_| !name.ends_with(".html")) {
        Some(resp) => resp,
        None => crate::api::not_found(req).await,
    }
}

/// Browsers ask for `/favicon.ico` on anything without an icon link (a JSON
/// endpoint opened in a tab): send them to the one icon, not a 404.
async fn favicon_ico() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/favicon.svg"))
        .finish()
}

/// Mounts the pages, their icon and `/assets/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|r| page(r, "index.html")))
        .route("/live", web::get().to(|r| page(r, "live.html")))
        .route("/watch", web::get().to(|r| page(r, "watch.html")))
        .route("/s/{session_id}", web::get().to(|r| page(r, "viewer.html")))
        .route("/favicon.svg", web::get().to(|r| page(r, "favicon.svg")))
        .route("/favicon.ico", web::get().to(favicon_ico))
        .route("/assets/{path:.*}", web::get().to(asset));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_and_the_shared_client_are_embedded() {
        for name in ["js/api.js", "css/simmer.css"] {
            assert!(find(name).is_some(), "{name}");
        }
        assert_eq!(content_type("js/api.js"), "text/javascript; charset=utf-8");
    }

    #[test]
    fn the_icon_every_page_links_is_embedded_as_svg() {
        assert!(find("favicon.svg").is_some_and(|svg| svg.starts_with(b"<svg")));
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
    }
}
