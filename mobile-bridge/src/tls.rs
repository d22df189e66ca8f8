//! TLS for `wss://` and `https://` (feature `client`): rustls with the web's
//! roots (the Mozilla list of `webpki-roots`, the same on every platform:
//! Android, iOS, desktop), plus any roots the app adds for a private CA or a
//! test server. No platform TLS library, no OpenSSL.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_tungstenite::Connector;

/// The trusted roots: the web's, and `extra_roots_pem` (PEM certificates).
fn root_store(extra_roots_pem: &[String]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra_roots_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("a trusted root is not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("a trusted root cannot be used: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("a trusted root holds no PEM certificate".into());
        }
    }
    Ok(roots)
}

/// The WebSocket connector for `wss://` URLs.
pub(crate) fn ws_connector(extra_roots_pem: &[String]) -> Result<Connector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(root_store(extra_roots_pem)?)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// An HTTP client for the REST calls of the SDK (watch pairing, say) that
/// reaches `https://` servers, trusting `extra_roots_pem` too.
pub fn http_client(extra_roots_pem: &[String]) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    for pem in extra_roots_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("a trusted root is not PEM: {e}"))?;
        // The same rule as the WebSocket connector's: text without a
        // certificate is a mistake, not an empty list of roots.
        if certs.is_empty() {
            return Err("a trusted root holds no PEM certificate".into());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_a_certificate_is_refused_by_both_clients() {
        for pem in [
            "",
            "hello",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let roots = [pem.to_owned()];
            assert!(http_client(&roots).is_err(), "http_client took {pem:?}");
            assert!(ws_connector(&roots).is_err(), "ws_connector took {pem:?}");
        }
        assert!(http_client(&[]).is_ok());
    }
}
