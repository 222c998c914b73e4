//! Storage: the commands the reactor sends, the completions it gets back, the writer
//! thread, read-only reader threads, and the schema, on SQLite (the default, a file) or
//! PostgreSQL (`--db postgres://…`, for several nodes on one database).
//!
//! The reactor never touches the database. Writes go to one writer thread as `StoreCmd`s, in
//! order; it commits everything queued in one transaction (group commit) and only then
//! answers, so whatever the reactor broadcasts is already on disk. Deep reads (older
//! history, search) go to reader threads with their own read-only connections.
//! `StoreCmd` and `Completion` are the seam; behind it, the same code runs on both engines
//! through `sql::Db`, branching on the dialect only where they differ.

mod accounts;
pub mod event;
pub mod load;
pub mod messages;
pub mod reader;
mod rows;
pub mod schema;
pub mod sql;
pub mod sqltext;
pub mod watch;
pub mod writer;

pub use rows::{FileRef, FileRow, MessageRow, Reacted, Reaction, ReactorsPage};

use crate::id::{ConnId, RoomId, TokenHash, UserId};
use serde::{Deserialize, Serialize};
use std::sync::mpsc::Sender;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Why the file worker could not write or read a file.
pub enum FileError {
    /// Less than `MIN_FREE_DISK_BYTES` would be left.
    NoSpace,
    Io,
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
    /// A limit on the row's contents (distinct reactions on a message).
    Limit,
}

/// Where the answer to a job goes: a connection, and how it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub conn: ConnId,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An HTTP request waiting for its response.
    Http,
    /// A WebSocket request, with the client's `ref` to echo.
    Ws { req: Option<String> },
}

/// A write for the writer thread. Writes run in the order sent; those with a `reply`
/// are answered with a `Completion` after their transaction commits.
#[derive(Debug)]
pub struct StoreCmd {
    pub reply: Option<ReplyTo>,
    pub op: StoreOp,
}

#[derive(Debug)]
pub enum StoreOp {
    CreateUser {
        username: String,
        phc: String,
        /// With `--registration invite`: the invite code's hash, used up by this.
        invite: Option<TokenHash>,
    },
    /// Deletes an account: its tokens, memberships and invitations go, its messages stay
    /// as empty placeholders, its name is held (`NAME_QUARANTINE_MS`).
    DeleteAccount {
        user_id: UserId,
    },
    /// An invite code for `--registration invite`.
    CreateInvite {
        hash: TokenHash,
        uses: u32,
        expires_at: i64,
        by: UserId,
    },
    CreateToken {
        token: String,
        hash: TokenHash,
        user_id: UserId,
        expires_at: i64,
        /// Where the login came from, for the sessions list.
        ip: String,
        user_agent: String,
    },
    RevokeToken {
        hash: TokenHash,
    },
    /// Every token of a user but `keep` (logout everywhere).
    RevokeUserTokens {
        user_id: UserId,
        keep: Option<TokenHash>,
    },
    /// A token was used (written at most every `TOKEN_TOUCH_MS`).
    TouchToken {
        hash: TokenHash,
        at: i64,
    },
    /// A new password hash; every token of the user but `keep` is revoked with it. With
    /// `code`, a reset code that must be unused and unexpired is used up first.
    SetPassword {
        user_id: UserId,
        phc: String,
        keep: Option<TokenHash>,
        code: Option<TokenHash>,
    },
    /// Makes `users` members of `room_id` (dropping their pending invitations to it),
    /// first creating the room when `create` is set, all or nothing. The Hub changes its
    /// memory only when this commits, then carries on with `after`.
    Join {
        create: Option<NewRoom>,
        room_id: RoomId,
        users: Vec<UserId>,
        after: AfterJoin,
    },
    RemoveMember {
        room_id: RoomId,
        user_id: UserId,
    },
    /// A pending invitation (joining the room accepts it: `AddMember` removes it).
    Invite {
        room_id: RoomId,
        user_id: UserId,
        by: UserId,
    },
    Decline {
        room_id: RoomId,
        user_id: UserId,
    },
    Insert {
        room_id: RoomId,
        user_id: UserId,
        text: String,
        client_id: Option<String>,
        /// Ids of files (the author's own, checked by the Hub) attached to it.
        attachments: Vec<String>,
    },
    /// A file fully written to disk: its record.
    AddFile {
        file: FileRef,
        uploader: UserId,
        sha256: String,
        at: i64,
    },
    /// Forgets files attached to no message: those once attached (their messages were
    /// deleted) and those never attached, uploaded before `before`. Answers the ids.
    SweepFiles {
        before: i64,
    },
    /// Replace a message's text; refused unless `author` wrote it.
    Edit {
        id: i64,
        author: UserId,
        text: String,
    },
    /// Empty a message; `author: None` is an admin, who may delete anything.
    Delete {
        id: i64,
        author: Option<UserId>,
    },
    /// Add (`on`) or take back `user`'s reaction to message `id`.
    React {
        id: i64,
        user: UserId,
        emoji: String,
        on: bool,
    },
    SetCursor {
        room_id: RoomId,
        user_id: UserId,
        id: i64,
    },
    SetDelivered {
        room_id: RoomId,
        user_id: UserId,
        id: i64,
    },
    SetLastSeen {
        user_id: UserId,
        at: i64,
    },
    /// Suspends an account (and revokes all its tokens) or lifts the suspension.
    Suspend {
        user_id: UserId,
        on: bool,
    },
    /// One entry of the moderation log.
    Audit {
        at: i64,
        actor: Option<UserId>,
        action: String,
        target: String,
    },
    /// Commit what came before, then stop the thread.
    Shutdown,
}

impl StoreOp {
    /// The outcome of this write when it did not happen (storage failed, or the writer
    /// is gone): the same shape of answer as a success, carrying the error.
    pub fn failed(&self) -> Outcome {
        let err = StoreError::Unavailable;
        match self {
            StoreOp::CreateUser { username, phc, .. } => Outcome::UserCreated {
                username: username.clone(),
                phc: phc.clone(),
                result: Err(err),
            },
            StoreOp::CreateToken {
                token,
                user_id,
                expires_at,
                ..
            } => Outcome::TokenCreated {
                token: token.clone(),
                user_id: *user_id,
                expires_at: *expires_at,
                result: Err(err),
            },
            StoreOp::Join {
                create,
                room_id,
                users,
                after,
            } => Outcome::Joined {
                create: create.clone(),
                room_id: *room_id,
                users: users.clone(),
                after: after.clone(),
                result: Err(err),
            },
            StoreOp::SetPassword {
                user_id, phc, keep, ..
            } => Outcome::PasswordSet {
                user_id: *user_id,
                phc: phc.clone(),
                keep: *keep,
                result: Err(err),
            },
            StoreOp::Insert { .. } => Outcome::Inserted(Err(err)),
            StoreOp::Edit { .. } | StoreOp::Delete { .. } => Outcome::Changed(Err(err)),
            StoreOp::React { .. } => Outcome::Reacted(Err(err)),
            StoreOp::AddFile { file, .. } => Outcome::FileAdded {
                id: file.id.clone(),
                result: Err(err),
            },
            StoreOp::SweepFiles { .. } => Outcome::FilesSwept(Vec::new()),
            _ => Outcome::Written(Err(err)),
        }
    }
}

/// One session (token) as the sessions list shows it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The first 8 bytes of the token's hash, in hex: names the session.
    pub id: String,
    pub created_at: Option<i64>,
    pub last_used: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

/// The public name of a session: the start of its token's hash (not the token).
pub fn session_id(hash: &TokenHash) -> String {
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A room to create with a `Join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRoom {
    pub name: String,
    pub private: bool,
    /// `None` for a direct conversation.
    pub owner: Option<UserId>,
}

/// What the Hub does once a `Join` commits; the writer hands it back untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterJoin {
    /// Answer the requester with `joined` (catching up from `since`).
    Joined { user: UserId, since: Option<i64> },
    /// Store the first message of a direct conversation.
    Send {
        user: UserId,
        text: String,
        client_id: Option<String>,
        attachments: Vec<String>,
    },
}

/// A read for the reader threads.
#[derive(Debug)]
pub struct ReadJob {
    pub reply: ReplyTo,
    pub op: ReadOp,
}

#[derive(Debug)]
pub enum ReadOp {
    /// Messages of `room_id` with id < `before`, newest `limit`, returned oldest first;
    /// or, with `after`, the first `limit` with id > `after`.
    History {
        room: String,
        room_id: RoomId,
        before: i64,
        after: Option<i64>,
        limit: usize,
        /// Whose page it is: their own reactions are marked.
        reader: UserId,
    },
    /// Everything but the rings (cluster mode, after the bus reconnects: what this node
    /// may have missed besides messages).
    State,
    /// An account by name (lowercase match), for a login this node cannot place.
    User { name: String },
    /// A session token this node has not heard of (cluster mode: issued by another node
    /// an instant ago), with its account.
    Token { hash: TokenHash },
    /// Whether `user` is in a room where file `id` is posted on a live message (the
    /// download's `range` header travels along).
    FileAccess {
        id: String,
        user: UserId,
        range: Option<String>,
    },
    /// Who reacted to message `id` with `emoji`, by name after `after`.
    Reactors {
        id: i64,
        emoji: String,
        after: String,
        limit: usize,
    },
    /// The next page of a user's messages for their export: ids above `after`, oldest
    /// first, at most `limit`.
    ExportPage {
        user_id: UserId,
        after: i64,
        limit: usize,
    },
    /// A user's sessions (tokens), newest use first; `current` is marked.
    Sessions { user_id: UserId, current: TokenHash },
    /// Messages of `room` with a seq above `after_seq`, oldest first, at most `limit`:
    /// what a node that missed some of a room's events reads to fill the gap.
    Seqs {
        room: RoomId,
        after_seq: i64,
        limit: usize,
    },
    /// Full-text search over the given rooms, best first.
    Search {
        query: String,
        room_ids: Vec<RoomId>,
        limit: usize,
        reader: UserId,
    },
}

impl ReadOp {
    pub fn failed(&self) -> Outcome {
        match self {
            ReadOp::History {
                room,
                after,
                reader,
                ..
            } => Outcome::History {
                room: room.clone(),
                forward: after.is_some(),
                reader: *reader,
                result: Err(StoreError::Unavailable),
            },
            ReadOp::Search { reader, .. } => Outcome::Search {
                reader: *reader,
                result: Err(StoreError::Unavailable),
            },
            ReadOp::FileAccess { id, range, .. } => Outcome::FileAccess {
                id: id.clone(),
                range: range.clone(),
                result: Err(StoreError::Unavailable),
            },
            ReadOp::Reactors { id, emoji, .. } => Outcome::Reactors {
                id: *id,
                emoji: emoji.clone(),
                result: Err(StoreError::Unavailable),
            },
            ReadOp::Seqs { room, .. } => Outcome::Seqs {
                room: *room,
                result: Err(StoreError::Unavailable),
            },
            ReadOp::Sessions { .. } => Outcome::Sessions(Err(StoreError::Unavailable)),
            ReadOp::ExportPage { .. } => Outcome::ExportPage(Err(StoreError::Unavailable)),
            ReadOp::User { .. } => Outcome::UserFound(Err(StoreError::Unavailable)),
            ReadOp::State => Outcome::State(Err(StoreError::Unavailable)),
            ReadOp::Token { hash } => Outcome::TokenFound {
                hash: *hash,
                result: Err(StoreError::Unavailable),
            },
        }
    }
}

/// An answer to the reactor, from the writer, the readers or the password pool.
#[derive(Debug)]
pub struct Completion {
    pub reply: Option<ReplyTo>,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Outcome {
    UserCreated {
        username: String,
        phc: String,
        result: Result<UserId, StoreError>,
    },
    TokenCreated {
        token: String,
        user_id: UserId,
        expires_at: i64,
        result: Result<(), StoreError>,
    },
    /// A message insert: the row, and whether it was already stored (a retry).
    Inserted(Result<(MessageRow, bool), StoreError>),
    /// An edit or delete: the row as it now is.
    Changed(Result<MessageRow, StoreError>),
    /// A reaction added or taken back.
    Reacted(Result<Reacted, StoreError>),
    /// A file's record was stored (or not).
    FileAdded {
        id: String,
        result: Result<(), StoreError>,
    },
    /// Files forgotten by a sweep, to delete from disk.
    FilesSwept(Vec<String>),
    /// The file worker wrote this many more bytes of an upload (for the reactor).
    UploadAck(usize),
    /// An upload is on disk (its SHA-256 in hex), or could not be written.
    Uploaded {
        id: String,
        result: Result<String, FileError>,
    },
    /// Part of a file being downloaded (for the reactor).
    FileChunk(Result<Vec<u8>, FileError>),
    /// Whether a download may go ahead (`ReadOp::FileAccess`).
    FileAccess {
        id: String,
        range: Option<String>,
        result: Result<bool, StoreError>,
    },
    /// A page of who reacted: the message's room, names, and whether more follow.
    Reactors {
        id: i64,
        emoji: String,
        result: Result<ReactorsPage, StoreError>,
    },
    /// A `Join`, handed back with its outcome.
    Joined {
        create: Option<NewRoom>,
        room_id: RoomId,
        users: Vec<UserId>,
        after: AfterJoin,
        result: Result<(), StoreError>,
    },
    /// A password change, handed back with its outcome.
    PasswordSet {
        user_id: UserId,
        phc: String,
        keep: Option<TokenHash>,
        result: Result<(), StoreError>,
    },
    /// Accounts added outside this process (`chatterbox admin add-user`).
    NewUsers(Vec<load::UserRow>),
    /// Any other write.
    Written(Result<(), StoreError>),
    /// A user's sessions.
    Sessions(Result<Vec<SessionRow>, StoreError>),
    /// A page of an export, and whether it is the last.
    ExportPage(Result<(Vec<MessageRow>, bool), StoreError>),
    /// A history page; `forward` for an `after` page (else it ends at `before`).
    History {
        room: String,
        forward: bool,
        reader: UserId,
        result: Result<(Vec<MessageRow>, bool), StoreError>,
    },
    /// A room's messages after a seq (`ReadOp::Seqs`), oldest first, and whether more
    /// follow.
    Seqs {
        room: RoomId,
        result: Result<(Vec<MessageRow>, bool), StoreError>,
    },
    /// Search results, best first, and whether the search ran out of time (`partial`).
    Search {
        reader: UserId,
        result: Result<(Vec<MessageRow>, bool), StoreError>,
    },
    /// A new user's password hash (from the password pool).
    Hashed {
        username: String,
        phc: Result<String, String>,
    },
    /// A login check: `Ok(Some(user))` if the password matched, `Ok(None)` if not,
    /// `Err` if it could not be checked.
    Verified(Result<Option<UserId>, String>),
    /// The writer's view of storage health changed.
    Health(bool),
    /// Accounts now admin or suspended, as the database says: (user, admin, suspended).
    Flags(Vec<(UserId, bool, bool)>),
    /// Cluster mode: another node's event, from the bus.
    Remote(event::Envelope),
    /// The state the database holds (`ReadOp::State`), rings left out.
    State(Result<Box<load::Snapshot>, StoreError>),
    /// An account looked up by name, if the database has it.
    UserFound(Result<Option<load::UserRow>, StoreError>),
    /// A token looked up: its account and expiry, if the database has it.
    TokenFound {
        hash: TokenHash,
        result: Result<Option<(load::UserRow, i64)>, StoreError>,
    },
    /// Cluster mode: the bus is (again) connected; events may have been missed.
    BusUp,
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
