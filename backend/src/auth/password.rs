//! Argon2id password hashing, off the async executor.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Argon2, PasswordVerifier};

use crate::error::ApiError;

/// Hashes and verifies passwords; holds a dummy hash so that a login for an
/// unknown user costs as much as one for a known user (no user enumeration by
/// timing).
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new() -> Result<Self, ApiError> {
        Ok(Self {
            dummy_hash: hash_password_blocking("simmer-dummy-password")?,
        })
    }

    /// A hash to verify against when the user does not exist.
    pub fn dummy_hash(&self) -> &str {
        &self.dummy_hash
    }
}

fn hash_password_blocking(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing password: {e}")))
}

/// Hashes a password with Argon2id (OWASP parameters: 19 MiB, 2 passes) on the
/// blocking pool.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    actix_web::web::block(move || hash_password_blocking(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
}

/// Checks a password against a stored PHC string on the blocking pool.
pub async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    actix_web::web::block(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored hash unreadable: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
}
