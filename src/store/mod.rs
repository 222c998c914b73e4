//! Storage: the commands the reactor sends, the completions it gets back, the SQLite
//! writer thread, read-only reader threads, and the schema.
//!
//! The reactor never touches SQLite. Writes go to one writer thread as `StoreCmd`s, in
//! order; it commits everything queued in one transaction (group commit) and only then
//! answers, so whatever the reactor broadcasts is already on disk. Deep reads (older
//! history, search) go to reader threads with their own read-only connections.
//! `StoreCmd` and `Completion` are the seam where another store (PostgreSQL) would plug in.

pub mod load;
pub mod reader;
pub mod schema;
pub mod writer;

use crate::auth::pool::{AuthDone, ConnRef};
use crate::auth::TokenHash;
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// One stored message, as the store returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: i64,
    pub room_id: i64,
    pub user_id: i64,
    pub text: String,
    /// Milliseconds since the epoch.
    pub ts: i64,
    pub client_id: Option<String>,
    pub edited_at: Option<i64>,
    pub deleted: bool,
}

/// Why a write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness rule said no (a taken username).
    Conflict,
    /// The database could not commit (disk full, read-only file, I/O error).
    Unavailable,
    /// The row to change does not exist.
    NotFound,
    /// The row exists but belongs to someone else.
    Forbidden,
}

/// Writes, in the order the reactor sent them.
#[derive(Debug)]
pub enum StoreCmd {
    CreateUser {
        conn: ConnRef,
        username: String,
        phc: String,
    },
    CreateToken {
        conn: ConnRef,
        token: String,
        hash: TokenHash,
        user_id: i64,
        expires_at: i64,
    },
    RevokeToken {
        conn: ConnRef,
        hash: TokenHash,
    },
    CreateRoom {
        id: i64,
        name: String,
        private: bool,
        owner: Option<i64>,
    },
    AddMember {
        room_id: i64,
        user_id: i64,
    },
    RemoveMember {
        room_id: i64,
        user_id: i64,
    },
    Insert {
        conn: ConnRef,
        req: Option<String>,
        room_id: i64,
        user_id: i64,
        text: String,
        client_id: Option<String>,
    },
    /// Replace a message's text; refused unless `author` wrote it.
    Edit {
        conn: ConnRef,
        req: Option<String>,
        id: i64,
        author: i64,
        text: String,
    },
    /// Empty a message; `author: None` is an admin, who may delete anything.
    Delete {
        conn: ConnRef,
        req: Option<String>,
        id: i64,
        author: Option<i64>,
    },
    SetCursor {
        room_id: i64,
        user_id: i64,
        id: i64,
    },
    SetLastSeen {
        user_id: i64,
        at: i64,
    },
    /// Commit what came before, then stop the thread.
    Shutdown,
}

/// Answers to the reactor, from the writer, the readers and the password pool.
#[derive(Debug)]
pub enum Completion {
    Auth(AuthDone),
    UserCreated {
        conn: ConnRef,
        username: String,
        phc: String,
        result: Result<i64, StoreError>,
    },
    TokenCreated {
        conn: ConnRef,
        token: String,
        user_id: i64,
        expires_at: i64,
        result: Result<(), StoreError>,
    },
    TokenRevoked {
        conn: ConnRef,
        result: Result<(), StoreError>,
    },
    /// A message insert: the row, and whether it was already stored (a retry).
    Inserted {
        conn: ConnRef,
        req: Option<String>,
        result: Result<(MessageRow, bool), StoreError>,
    },
    /// An edit or delete: the row as it now is.
    Changed {
        conn: ConnRef,
        req: Option<String>,
        result: Result<MessageRow, StoreError>,
    },
    Read(reader::ReadDone),
    /// The writer's view of storage health changed.
    Health(bool),
}

/// The way back to the reactor: a completion channel plus the waker of its poll.
#[derive(Clone)]
pub struct Notifier {
    tx: Sender<Completion>,
    waker: Arc<mio::Waker>,
}

impl Notifier {
    pub fn new(tx: Sender<Completion>, waker: Arc<mio::Waker>) -> Notifier {
        Notifier { tx, waker }
    }

    /// Sends one completion and wakes the reactor; false once the reactor is gone.
    pub fn send(&self, c: Completion) -> bool {
        self.send_all(std::iter::once(c))
    }

    /// Sends several completions with a single wake-up.
    pub fn send_all(&self, cs: impl IntoIterator<Item = Completion>) -> bool {
        for c in cs {
            if self.tx.send(c).is_err() {
                return false;
            }
        }
        let _ = self.waker.wake();
        true
    }
}

impl std::fmt::Debug for AuthDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthDone::Hashed { conn, .. } => write!(f, "Hashed({conn:?})"),
            AuthDone::Verified { conn, ok, .. } => write!(f, "Verified({conn:?}, {ok})"),
        }
    }
}
