//! Argon2id password hashing on a small pool of its own threads.
//!
//! Every hash takes a 19 MiB buffer (OWASP parameters), so hashes in flight
//! are memory a client can make the server hold: anyone can ask for a login
//! or a registration. Measured before this pool: 2 bursts of 32 concurrent
//! failed logins took the server from 22 MiB to ~1.1 GiB, never given back
//! (each blocking-pool thread kept its own malloc arena with a buffer in it).
//! Now a fixed number of threads hash (about one per core), a short queue
//! waits for them, and everything beyond is refused at once with 503 and
//! `Retry-After`, before any memory is taken.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use mobile_bridge::ErrorCode;
use tokio::sync::oneshot;

use crate::error::ApiError;

/// How long a queued hash may wait for a thread before it is answered
/// "busy": a client that waited longer would rather retry than hang.
const QUEUE_WAIT: Duration = Duration::from_secs(2);

enum Work {
    Hash(String),
    Verify { password: String, hash: String },
}

/// What a job gives back.
enum Done {
    Hashed(String),
    Verified(bool),
}

struct Job {
    work: Work,
    queued: Instant,
    reply: oneshot::Sender<Result<Done, ApiError>>,
}

/// Hashes and verifies passwords on its own threads; holds a dummy hash so
/// that a login for an unknown user costs as much as one for a known user
/// (no user enumeration by timing). Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: SyncSender<Job>,
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Starts `threads` hashing threads with room for `queue` waiting hashes.
    /// The threads end when the last clone of the hasher is dropped.
    pub fn new(threads: usize, queue: usize) -> Result<Self, ApiError> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("simmer-argon2-{n}"))
                .spawn(move || work(&rx))
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("starting hash thread: {e}")))?;
        }
        Ok(Self {
            jobs,
            dummy_hash: hash_with(
                &mut vec![Block::default(); Params::default().block_count()],
                "simmer-dummy-password",
            )?
            .into(),
        })
    }

    /// A hash to verify against when the user does not exist.
    pub fn dummy_hash(&self) -> &str {
        &self.dummy_hash
    }

    /// Hashes a password with Argon2id (19 MiB, 2 passes).
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        match self.run(Work::Hash(password)).await? {
            Done::Hashed(hash) => Ok(hash),
            Done::Verified(_) => Err(mixed_up()),
        }
    }

    /// Checks a password against a stored PHC string.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, ApiError> {
        match self.run(Work::Verify { password, hash }).await? {
            Done::Verified(ok) => Ok(ok),
            Done::Hashed(_) => Err(mixed_up()),
        }
    }

    async fn run(&self, work: Work) -> Result<Done, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            queued: Instant::now(),
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(busy()),
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "password hashing threads are gone"
                )))
            }
        }
        answer
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("password hashing thread died")))?
    }
}

fn mixed_up() -> ApiError {
    ApiError::Internal(anyhow::anyhow!("a hashing job got another job's answer"))
}

/// 503 `unavailable` (with `Retry-After: 1`): the server, not this client,
/// is the bottleneck.
fn busy() -> ApiError {
    ApiError::client(
        ErrorCode::Unavailable,
        "the server is busy checking other passwords; retry in a second",
    )
}

/// One hashing thread: takes jobs until every sender is gone. It owns the
/// Argon2 working memory and reuses it for every hash, so the pool holds
/// `threads` × 19 MiB for good and nothing more (allocating per hash let
/// glibc keep a freed 19 MiB buffer in each of many malloc arenas).
fn work(jobs: &Mutex<Receiver<Job>>) {
    let mut memory = vec![Block::default(); Params::default().block_count()];
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if job.reply.is_closed() {
            continue; // the client went away while queued
        }
        let result = if job.queued.elapsed() > QUEUE_WAIT {
            Err(busy())
        } else {
            match job.work {
                Work::Hash(password) => hash_with(&mut memory, &password).map(Done::Hashed),
                Work::Verify { password, hash } => {
                    verify_with(&mut memory, &password, &hash).map(Done::Verified)
                }
            }
        };
        let _ = job.reply.send(result);
    }
}

fn hashing_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("hashing password: {e}"))
}

/// Argon2id with the default (OWASP) parameters, as a PHC string.
fn hash_with(memory: &mut [Block], password: &str) -> Result<String, ApiError> {
    let argon2 = Argon2::default();
    let params = argon2.params().clone();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(hashing_failed)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, memory)
        .map_err(hashing_failed)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(hashing_failed)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(hashing_failed)?),
    };
    Ok(hash.to_string())
}

/// Checks `password` against a stored PHC string, in `memory` when the
/// stored parameters fit in it (they do for every hash we made).
fn verify_with(memory: &mut [Block], password: &str, hash: &str) -> Result<bool, ApiError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        ApiError::Internal(anyhow::anyhow!("stored hash unreadable: {e}"))
    };
    let parsed = PasswordHash::new(hash).map_err(|e| unreadable(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| unreadable(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| unreadable(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| unreadable(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(unreadable(&"no salt or no hash"));
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| unreadable(&e))?;
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = out
        .get_mut(..expected.len())
        .ok_or_else(|| unreadable(&"hash too long"))?;
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = match memory.get_mut(..blocks) {
        Some(memory) => {
            argon2.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, memory)
        }
        None => argon2.hash_password_into(password.as_bytes(), salt_bytes, out),
    };
    computed.map_err(hashing_failed)?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(out).map_err(hashing_failed)? == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_and_verifies() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hasher
            .verify("correct horse".into(), hash.clone())
            .await
            .unwrap());
        assert!(!hasher.verify("wrong horse".into(), hash).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new(1, 4).unwrap();
        // Ours verify with the crate's own verifier...
        let ours = hasher.hash("correct horse".into()).await.unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        // ...and the crate's (other parameters too) verify with ours.
        let salt = SaltString::generate(&mut OsRng);
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let theirs = small
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(hasher
            .verify("correct horse".into(), theirs.clone())
            .await
            .unwrap());
        assert!(!hasher.verify("wrong".into(), theirs).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let hasher = PasswordHasher::new(1, 2).unwrap();
        let attempts = (0..20).map(|_| hasher.hash("correct horse".into()));
        let results = futures_util::future::join_all(attempts).await;
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(e) if e.code() == ErrorCode::Unavailable))
            .count();
        let hashed = results.iter().filter(|r| r.is_ok()).count();
        // One on the thread, two queued (one more if the thread took a job
        // while the others were being queued); the rest refused at once.
        assert!(refused >= 16, "refused {refused}");
        assert_eq!(hashed + refused, 20);
    }
}
