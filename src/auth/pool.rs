//! Threads that hash and verify passwords with argon2id, so the reactor never does.
//!
//! Jobs come in on one channel shared by the threads; each answer goes back through the
//! reactor's completion channel and wakes it.

use crate::id::UserId;
use crate::store::{Completion, Notifier, Outcome, ReplyTo};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug)]
pub struct AuthJob {
    pub reply: ReplyTo,
    pub op: AuthOp,
}

pub enum AuthOp {
    /// Hash a new user's password.
    Hash { username: String, password: String },
    /// Check a password against a stored hash; `None` for an unknown user, which is
    /// checked against a dummy hash so it costs the same time as a wrong password.
    Verify {
        user_id: Option<UserId>,
        password: String,
        phc: Option<String>,
    },
}

impl std::fmt::Debug for AuthOp {
    // Never print a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthOp::Hash { .. } => f.write_str("Hash"),
            AuthOp::Verify { user_id, .. } => write!(f, "Verify({user_id:?})"),
        }
    }
}

/// The error of a job the pool could not take.
pub const POOL_DOWN: &str = "the password pool is not running";

impl AuthOp {
    /// The outcome when the pool could not take the job.
    pub fn failed(&self) -> Outcome {
        let why = POOL_DOWN.to_string();
        match self {
            AuthOp::Hash { username, .. } => Outcome::Hashed {
                username: username.clone(),
                phc: Err(why),
            },
            AuthOp::Verify { .. } => Outcome::Verified(Err(why)),
        }
    }
}

/// Starts `threads` workers.
pub fn start(threads: usize, notify: Notifier) -> (Sender<AuthJob>, Vec<JoinHandle<()>>) {
    let dummy = Arc::new(hash_password("not a real password").expect("argon2 works"));
    crate::pool::start(
        "argon2",
        vec![(); threads],
        move |_: &mut (), job: AuthJob| {
            let outcome = match job.op {
                AuthOp::Hash { username, password } => Outcome::Hashed {
                    username,
                    phc: hash_password(&password),
                },
                AuthOp::Verify {
                    user_id,
                    password,
                    phc,
                } => {
                    let ok = verify_password(&password, phc.as_deref().unwrap_or(&dummy));
                    Outcome::Verified(Ok(user_id.filter(|_| ok)))
                }
            };
            notify.send(Completion {
                reply: Some(job.reply),
                outcome,
            })
        },
    )
    .expect("spawn password threads")
}

/// argon2id with the crate's default cost and a fresh random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salts differ");
        assert!(!verify_password("x", "not a phc string"));
    }
}
