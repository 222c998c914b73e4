//! Accounts and sessions: validation of names and passwords, session tokens, and the pool
//! of threads that runs argon2 off the reactor.
//!
//! Tokens are 256 random bits from the OS, shown to the client once as hex and stored
//! (in SQLite and in the reactor's cache) only as their BLAKE2b-256 hash, so a copy of the
//! database does not let anyone log in.

pub mod pool;

use blake2::{Blake2b, Digest};

/// BLAKE2b with a 32-byte output.
type Blake2b256 = Blake2b<blake2::digest::consts::U32>;

pub use crate::id::TokenHash;

/// A new random session token (64 hex characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    hex(&bytes)
}

/// The hash under which a token is stored and looked up.
pub fn hash_token(token: &str) -> TokenHash {
    Blake2b256::digest(token.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Usernames: 3–32 of `[A-Za-z0-9_.-]`.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Passwords: 8–1024 bytes.
pub fn valid_password(password: &str) -> bool {
    (8..=1024).contains(&password.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        // BLAKE2b-256 of the empty string.
        assert_eq!(
            hex(&hash_token("")),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
        );
    }

    #[test]
    fn username_and_password_rules() {
        assert!(valid_username("alice"));
        assert!(valid_username("a.b-c_9"));
        assert!(!valid_username("ab"));
        assert!(!valid_username(&"a".repeat(33)));
        assert!(!valid_username("al ice"));
        assert!(!valid_username("ålice"));
        assert!(valid_password("12345678"));
        assert!(!valid_password("1234567"));
        assert!(!valid_password(&"x".repeat(1025)));
    }
}
