//! TURN credentials for WHIP/WHEP clients (the `Link` headers of RFC 9725).
//!
//! With a shared secret (`SIMMER_MEDIA_TURN_SECRET`, coturn's
//! `use-auth-secret` + `static-auth-secret`), every answer carries its own
//! short-lived credential, the "TURN REST API" scheme coturn, Janus and
//! LiveKit use: username `<expiry unix seconds>:<user or guest id>`,
//! credential `base64(HMAC-SHA1(secret, username))`. The TURN server checks
//! it without asking anybody, and a credential copied out of one page stops
//! working at its expiry. A static username and password (one for
//! everybody) is still accepted, for TURN servers without the scheme.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use uuid::Uuid;

use crate::config::Secret;

/// How TURN clients authenticate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TurnAuth {
    /// No TURN credentials announced (STUN only, or an open TURN server).
    #[default]
    None,
    /// One username and password for everybody.
    Static {
        username: String,
        credential: Secret,
    },
    /// A credential per answer, valid for `ttl`.
    Minted { secret: Secret, ttl: Duration },
}

/// A credential for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub credential: String,
}

impl TurnAuth {
    /// The credential to hand `who` now (`None`: none configured).
    pub fn credential_for(&self, who: Uuid) -> Option<TurnCredential> {
        match self {
            Self::None => None,
            Self::Static {
                username,
                credential,
            } => Some(TurnCredential {
                username: username.clone(),
                credential: credential.expose().to_owned(),
            }),
            Self::Minted { secret, ttl } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                mint(secret.expose().as_bytes(), now + *ttl, who)
            }
        }
    }
}

/// The TURN REST credential of `who`, valid until `expiry` (since the epoch).
/// (`None` never happens: HMAC takes a key of any length.)
pub fn mint(secret: &[u8], expiry: Duration, who: Uuid) -> Option<TurnCredential> {
    let username = format!("{}:{who}", expiry.as_secs());
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).ok()?;
    mac.update(username.as_bytes());
    Some(TurnCredential {
        credential: STANDARD.encode(mac.finalize().into_bytes()),
        username,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_credentials_follow_the_turn_rest_scheme() {
        let who = Uuid::nil();
        let cred = mint(b"north", Duration::from_secs(1_700_000_000), who).unwrap();
        assert_eq!(cred.username, format!("1700000000:{who}"));
        // What coturn computes for this username with static-auth-secret
        // "north": base64(HMAC-SHA1(secret, username)), 20 bytes.
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"north").unwrap();
        mac.update(cred.username.as_bytes());
        mac.verify_slice(&STANDARD.decode(&cred.credential).unwrap())
            .unwrap();
        assert_eq!(STANDARD.decode(&cred.credential).unwrap().len(), 20);
    }

    #[test]
    fn each_client_gets_its_own_credential_that_expires() {
        let auth = TurnAuth::Minted {
            secret: "north".parse().unwrap(),
            ttl: Duration::from_secs(600),
        };
        let a = auth.credential_for(Uuid::from_u128(1)).unwrap();
        let b = auth.credential_for(Uuid::from_u128(2)).unwrap();
        assert_ne!(a, b);
        let expiry: u64 = a.username.split(':').next().unwrap().parse().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            (now + 590..=now + 610).contains(&expiry),
            "{expiry} vs {now}"
        );
    }
}
