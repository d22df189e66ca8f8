//! The few REST calls the bindings make themselves (sign-in, guest tokens,
//! refresh), and the server's address in its two forms.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{Problem, SimmerError};

/// Where the server is: `http(s)://host[:port][/prefix]` for REST and the
/// matching `ws(s)://.../ws` for the realtime gateway.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// Without a trailing `/`.
    pub(crate) http: String,
    pub(crate) ws: String,
    pub(crate) client: reqwest::Client,
    pub(crate) tls_roots: Vec<String>,
}

impl Server {
    /// Checks `base_url` and builds the HTTP client (the web's roots and
    /// `tls_roots`, PEM).
    pub(crate) fn new(base_url: &str, tls_roots: Vec<String>) -> Result<Self, SimmerError> {
        let http = http_base(base_url)?;
        let ws = match http.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}/ws"),
            None => format!("ws://{}/ws", http.trim_start_matches("http://")),
        };
        check_roots(&tls_roots)?;
        let client = mobile_bridge::tls::http_client(&tls_roots).map_err(SimmerError::invalid)?;
        Ok(Self {
            http,
            ws,
            client,
            tls_roots,
        })
    }

    /// POSTs `body` to `/api/v1{path}` and reads the answer; an error status
    /// becomes [`SimmerError::Server`] with the problem document's code.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, SimmerError> {
        let resp = self
            .client
            .post(format!("{}/api/v1{path}", self.http))
            .json(body)
            .send()
            .await
            .map_err(SimmerError::network)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(SimmerError::network)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| SimmerError::network(format!("unexpected answer from {path}: {e}")));
        }
        Err(match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => problem.into(),
            // Not Simmer's answer: a proxy or a load balancer spoke.
            Err(_) => SimmerError::network(format!("{path}: HTTP {status}")),
        })
    }
}

/// `base_url` without a trailing `/`, if it is `http://` or `https://`.
pub(crate) fn http_base(base_url: &str) -> Result<String, SimmerError> {
    let http = base_url.trim().trim_end_matches('/');
    if http.starts_with("https://") || http.starts_with("http://") {
        Ok(http.to_owned())
    } else {
        Err(SimmerError::invalid(format!(
            "base_url must start with http:// or https://, not {base_url:?}"
        )))
    }
}

/// Fails unless every extra root holds a PEM certificate. `wss://` checks
/// that when it connects, but `http_client` takes a text without any
/// certificate in it as no roots: an app's mistake would go unnoticed until
/// its first `https://` call failed for want of its CA.
pub(crate) fn check_roots(tls_roots: &[String]) -> Result<(), SimmerError> {
    for (i, pem) in tls_roots.iter().enumerate() {
        match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
            Ok(certs) if !certs.is_empty() => {}
            Ok(_) => {
                return Err(SimmerError::invalid(format!(
                    "tls_roots[{i}] holds no PEM certificate"
                )))
            }
            Err(e) => {
                return Err(SimmerError::invalid(format!(
                    "tls_roots[{i}] is not PEM: {e}"
                )))
            }
        }
    }
    Ok(())
}

/// `POST /auth/login` and `/auth/refresh`: the fields the bindings use.
#[derive(Debug, Deserialize)]
pub(crate) struct AuthResponse {
    pub(crate) user: AuthUser,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) expires_in: u64,
}

/// The signed-in user in an [`AuthResponse`].
#[derive(Debug, Deserialize)]
pub(crate) struct AuthUser {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) display_name: String,
}

/// `POST /sessions/{id}/guest-tokens`: the fields the bindings use.
#[derive(Debug, Deserialize)]
pub(crate) struct GuestToken {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
    pub(crate) guest_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_follows_the_base_urls_scheme() {
        let s = Server::new("https://simmer.example/", vec![]).unwrap();
        assert_eq!(s.http, "https://simmer.example");
        assert_eq!(s.ws, "wss://simmer.example/ws");
        let s = Server::new("http://127.0.0.1:8080", vec![]).unwrap();
        assert_eq!(s.ws, "ws://127.0.0.1:8080/ws");
        assert!(matches!(
            Server::new("127.0.0.1:8080", vec![]),
            Err(SimmerError::InvalidArgument { .. })
        ));
        assert!(matches!(
            Server::new("https://x", vec!["not pem".into()]),
            Err(SimmerError::InvalidArgument { .. })
        ));
    }
}
