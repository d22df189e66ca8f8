//! Browsers on other origins (CORS): a page served elsewhere (a player, a
//! partner's site, a dashboard on its own domain) may call the REST API and
//! WHIP/WHEP when its origin is allowed (`SIMMER_CORS_ORIGINS`; none by
//! default). Tokens travel in `Authorization`, never in cookies, so no
//! credentials are allowed. A request from an origin that is not allowed is
//! still served; the browser withholds the answer from the page.

use actix_cors::Cors;
use actix_web::http::{header, Method};
use actix_web::middleware::Condition;

/// How long a browser may keep a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE_S: usize = 3600;

/// The origins whose pages may call the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Same origin only (the default).
    #[default]
    None,
    /// Any origin (`*`): tokens are never sent by the browser on its own.
    Any,
    /// These exact origins (`https://app.example.com:8443`).
    Only(Vec<String>),
}

impl CorsOrigins {
    /// Comma-separated origins, or `*`; empty for none.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(Self::None);
        }
        if items == ["*"] {
            return Ok(Self::Any);
        }
        let mut origins = Vec::with_capacity(items.len());
        for item in items {
            origins.push(origin(item)?);
        }
        Ok(Self::Only(origins))
    }

    /// The middleware for a scope: does nothing when no origin is allowed.
    pub fn middleware(&self) -> Condition<Cors> {
        let mut cors = Cors::default()
            .allowed_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                // A WHIP/WHEP player asks for its ICE servers with a token.
                Method::OPTIONS,
            ])
            .allowed_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::IF_MATCH,
            ])
            // What clients must read: where a resource was created (and a
            // WHIP/WHEP resource's ETag and ICE servers), when to retry, why
            // a token was refused.
            .expose_headers([
                header::LOCATION,
                header::LINK,
                header::ETAG,
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
                header::HeaderName::from_static("accept-patch"),
            ])
            .max_age(PREFLIGHT_MAX_AGE_S)
            .block_on_origin_mismatch(false);
        match self {
            Self::None => {}
            Self::Any => cors = cors.allow_any_origin().send_wildcard(),
            Self::Only(origins) => {
                for origin in origins {
                    cors = cors.allowed_origin(origin);
                }
            }
        }
        Condition::new(*self != Self::None, cors)
    }
}

/// `scheme://host[:port]`, lower-cased, as a browser sends it in `Origin`.
fn origin(text: &str) -> anyhow::Result<String> {
    let lower = text.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| {
            anyhow::anyhow!("CORS origin {text:?} must start with https:// or http://")
        })?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    anyhow::ensure!(
        !rest.is_empty()
            && !rest.contains(['/', '?', '#', '@', '*', ' '])
            && header::HeaderValue::from_str(&lower).is_ok(),
        "CORS origin {text:?} must be scheme://host[:port], without a path"
    );
    Ok(lower.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_checked() {
        assert_eq!(CorsOrigins::parse("").unwrap(), CorsOrigins::None);
        assert_eq!(CorsOrigins::parse(" * ").unwrap(), CorsOrigins::Any);
        assert_eq!(
            CorsOrigins::parse("https://App.example.com/, http://localhost:3000").unwrap(),
            CorsOrigins::Only(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
        for bad in [
            "app.example.com",
            "https://example.com/path",
            "https://*.example.com",
            "ftp://example.com",
            "https://",
            "*, https://example.com",
        ] {
            assert!(CorsOrigins::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
