//! Threads that hash and verify passwords with argon2id, so the reactor never does.
//!
//! Jobs come in on one channel shared by the threads; each answer goes back through the
//! reactor's completion channel and wakes it.

use crate::store::{Completion, Notifier};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Who asked: the reactor's connection key and its serial number.
pub type ConnRef = (usize, u64);

pub enum AuthJob {
    /// Hash a new user's password.
    Hash {
        conn: ConnRef,
        username: String,
        password: String,
    },
    /// Check a password against a stored hash; `None` for an unknown user, which is
    /// checked against a dummy hash so it costs the same time as a wrong password.
    Verify {
        conn: ConnRef,
        user_id: Option<i64>,
        password: String,
        phc: Option<String>,
    },
}

pub enum AuthDone {
    Hashed {
        conn: ConnRef,
        username: String,
        phc: Result<String, String>,
    },
    Verified {
        conn: ConnRef,
        user_id: Option<i64>,
        ok: bool,
    },
}

/// Starts `threads` workers.
pub fn start(threads: usize, notify: Notifier) -> (Sender<AuthJob>, Vec<JoinHandle<()>>) {
    let (tx, rx) = std::sync::mpsc::channel::<AuthJob>();
    let rx = Arc::new(Mutex::new(rx));
    let dummy = Arc::new(hash_password("not a real password").expect("argon2 works"));
    let handles = (0..threads)
        .map(|i| {
            let rx = Arc::clone(&rx);
            let notify = notify.clone();
            let dummy = Arc::clone(&dummy);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(rx, notify, dummy))
                .expect("spawn password thread")
        })
        .collect();
    (tx, handles)
}

fn worker(rx: Arc<Mutex<Receiver<AuthJob>>>, notify: Notifier, dummy: Arc<String>) {
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let done = match job {
            AuthJob::Hash {
                conn,
                username,
                password,
            } => AuthDone::Hashed {
                conn,
                username,
                phc: hash_password(&password),
            },
            AuthJob::Verify {
                conn,
                user_id,
                password,
                phc,
            } => {
                let ok = verify_password(&password, phc.as_deref().unwrap_or(&dummy));
                AuthDone::Verified {
                    conn,
                    user_id,
                    ok: ok && user_id.is_some(),
                }
            }
        };
        if !notify.send(Completion::Auth(done)) {
            return;
        }
    }
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
