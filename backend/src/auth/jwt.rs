//! Short-lived signed access tokens (JWT, HS256).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use uuid::Uuid;

use crate::error::ApiError;

const ISSUER: &str = "simmer";
/// Seconds a token is still accepted after its `exp` (clock skew between
/// nodes); a `/ws` connection is closed after the same grace.
pub const CLOCK_LEEWAY_S: i64 = 5;

/// What a token lets its bearer be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A registered user.
    User,
    /// A viewer of exactly one session, without an account.
    Guest,
}

/// The claims of an access token: who the bearer is, and for a guest, the one
/// session the token is good for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id (a guest's ephemeral id for guests).
    pub sub: Uuid,
    pub kind: TokenKind,
    /// The display name, so realtime services need no database look-up.
    pub name: String,
    /// For guests: the session this token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
}

/// Signing and verification keys, built once from the configured secret.
#[derive(Clone)]
pub struct TokenKeys {
    /// Keys the hash in guest ids (`auth::guest`), derived from the secret.
    guest_key: [u8; 32],
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys([redacted])")
    }
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = CLOCK_LEEWAY_S.unsigned_abs();
        let guest_key = sha2::Sha256::new()
            .chain_update(b"simmer guest networks\0")
            .chain_update(secret)
            .finalize()
            .into();
        Self {
            guest_key,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A new guest id for `session_id` from `addr` (see `auth::guest`).
    pub fn new_guest_id(&self, session_id: Uuid, addr: std::net::IpAddr) -> Uuid {
        super::guest::new_guest_id(&self.guest_key, session_id, addr)
    }

    /// Signs a token for `sub` that expires after `ttl`.
    pub fn issue(
        &self,
        sub: Uuid,
        kind: TokenKind,
        name: &str,
        sid: Option<Uuid>,
        ttl: Duration,
    ) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub,
            kind,
            name: name.to_owned(),
            sid,
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// Verifies signature, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "access token expired",
                    ErrorKind::InvalidSignature => "access token signature is invalid",
                    _ => "access token is malformed",
                };
                ApiError::unauthorized(why)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let id = Uuid::new_v4();
        let token = keys
            .issue(id, TokenKind::User, "Ann", None, Duration::from_secs(60))
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.sub, id);
        assert_eq!(claims.kind, TokenKind::User);

        let other = TokenKeys::new(b"another-secret-another-secret-!!");
        assert!(other.verify(&token).is_err());
    }
}
