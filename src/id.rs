//! Small value types every layer shares: who a reply goes to and what a token is stored
//! as. A leaf module, so that the reactor, the Hub, the store and the worker pools can all
//! name a connection without importing one another.

/// One connection: its slab key and the serial number it was accepted with. The reactor
/// reuses slab keys, so the serial tells a late answer for a closed connection from one
/// for the connection that now holds the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub key: usize,
    pub serial: u64,
}

/// A user's database id.
pub type UserId = i64;
/// A room's database id.
pub type RoomId = i64;
/// A session token's stored form (BLAKE2b-256 of the token).
pub type TokenHash = [u8; 32];
