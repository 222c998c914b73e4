//! The records the store hands the Hub: messages with their reactions and attachments,
//! files, reactions as stored.

use crate::id::{RoomId, UserId};
use serde::{Deserialize, Serialize};

/// One stored message, as the store returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: i64,
    /// The room's sequence number: contiguous from 1 per room, in commit order.
    pub seq: i64,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub text: String,
    /// Milliseconds since the epoch.
    pub ts: i64,
    pub client_id: Option<String>,
    pub edited_at: Option<i64>,
    pub deleted: bool,
    /// Reactions, by emoji in the order first used.
    pub reactions: Vec<Reaction>,
    /// Files attached to it, in the order given.
    pub attachments: Vec<FileRef>,
}

/// A shared file as a message shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileRef {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub mime: String,
}

/// A stored file as the Hub keeps it: who uploaded it and the rooms it was posted in
/// (who may download it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRow {
    pub file: FileRef,
    pub uploader: UserId,
    pub created_at: i64,
    /// Rooms it was posted in (for the record; downloads ask the database, which also
    /// knows of messages deleted since).
    pub rooms: Vec<RoomId>,
}

/// One emoji's reactions to a message: how many, and who. The Hub's ring keeps every
/// reactor; a page read for one person lists only that person, when they are one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    pub count: u32,
    pub users: Vec<UserId>,
}

/// A page of who reacted: the message's room, the names, and whether more follow.
pub type ReactorsPage = (RoomId, Vec<String>, bool);

/// A reaction as stored: the emoji's new count, and whether anything changed (saying
/// the same twice does not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reacted {
    pub room_id: RoomId,
    pub id: i64,
    pub user: UserId,
    pub emoji: String,
    pub on: bool,
    pub count: u32,
    pub changed: bool,
}
