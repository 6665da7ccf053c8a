//! Password checks: argon2id on a fixed set of worker threads, each with its own 19 MiB of
//! argon2 memory allocated once and reused, behind a short queue. Without the bound, every
//! concurrent login ran its own argon2 on tokio's blocking pool (up to 512 threads), and 250
//! unauthenticated logins took the server from 10 MiB to 4.5 GiB that the allocator never gave
//! back. Now memory is `workers x 19 MiB` whatever the load, and a login that finds the queue full
//! is answered 503 with `Retry-After` at once.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::auth::{PasswordError, hash_password};
use crate::api::ApiError;

/// Checks waiting per worker before more are turned away: at ~25 ms a check, a full queue is
/// under a second of waiting.
const QUEUE_PER_WORKER: usize = 32;

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The worker threads and their queue. Dropping it lets the workers end.
pub(super) struct PasswordWorkers {
    queue: SyncSender<Job>,
}

impl PasswordWorkers {
    pub(super) fn start(workers: usize) -> PasswordWorkers {
        let workers = workers.max(1);
        let (queue, jobs) = sync_channel::<Job>(workers * QUEUE_PER_WORKER);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..workers {
            let jobs = jobs.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{n}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // The lock is held only to take one job, never while hashing.
                        let job = {
                            let jobs = jobs.lock().unwrap_or_else(|p| p.into_inner());
                            jobs.recv()
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password worker");
            }
        }
        PasswordWorkers { queue }
    }

    /// Runs `work` on a worker; `Busy` when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = done.send(work(memory));
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ApiError::Busy { retry_after_s: 1 }),
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::Internal(
                    "no password worker is running".to_owned(),
                ));
            }
        }
        result
            .await
            .map_err(|_| ApiError::Internal("a password check panicked".to_owned()))
    }

    /// Whether `password` matches the PHC string `phc`.
    pub(super) async fn verify(&self, phc: String, password: String) -> Result<bool, ApiError> {
        self.run(move |memory| verify_with_memory(memory, &phc, &password))
            .await
    }

    /// A new PHC string for `password` (admins creating accounts).
    pub(super) async fn hash(
        &self,
        password: String,
    ) -> Result<Result<String, PasswordError>, ApiError> {
        self.run(move |_| hash_password(&password)).await
    }
}

/// `verify_password`, with argon2's working memory taken from (and grown once in) `memory`
/// instead of allocated per call.
pub(super) fn verify_with_memory(memory: &mut Vec<Block>, phc: &str, password: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) =
        (Algorithm::try_from(hash.algorithm), Params::try_from(&hash))
    else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; Salt::MAX_LENGTH];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..blocks])
        .is_ok()
        // Output's equality is constant-time.
        && Output::new(out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_memory_verifies_like_the_crate_does() {
        let phc = hash_password("correct horse battery").unwrap();
        let mut memory = Vec::new();
        assert!(verify_with_memory(
            &mut memory,
            &phc,
            "correct horse battery"
        ));
        let grown = memory.len();
        assert!(!verify_with_memory(
            &mut memory,
            &phc,
            "wrong horse battery"
        ));
        assert!(!verify_with_memory(&mut memory, "not a hash", "x"));
        assert_eq!(memory.len(), grown, "memory is reused, not grown again");
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_not_a_wait() {
        let workers = PasswordWorkers::start(1);
        let phc = hash_password("correct horse battery").unwrap();
        let checks: Vec<_> = (0..QUEUE_PER_WORKER + 20)
            .map(|_| workers.verify(phc.clone(), "wrong horse battery".to_owned()))
            .collect();
        let results = futures_util::future::join_all(checks).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(ApiError::Busy { .. })))
            .count();
        assert!(busy >= 19, "{busy} turned away");
        assert!(results.iter().any(|r| matches!(r, Ok(false))));
    }
}
