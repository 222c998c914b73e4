//! What crosses the cluster bus: a change one node committed (or, for typing, merely
//! saw), as every other node applies it to its Hub. Defined beside the store because
//! most events are committed rows; the bus thread hands them to the reactor as
//! `Outcome::Remote`.

use super::{FileRow, MessageRow, NewRoom, Reacted};
use crate::id::{RoomId, UserId};
use serde::{Deserialize, Serialize};

/// One event and the node it came from (a node ignores its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub node: String,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A message committed, with its room's `seq`.
    Message { row: MessageRow },
    /// A message edited or deleted.
    Changed { row: MessageRow },
    /// A reaction added or taken back.
    Reacted { reacted: Reacted },
    /// Users became members of a room (created with them when `create` is set).
    Joined {
        create: Option<NewRoom>,
        room_id: RoomId,
        users: Vec<UserId>,
    },
    /// A shared file stored (its bytes are in the directory every node shares).
    File { row: FileRow },
    /// A pending invitation to a private room (stored).
    Invited {
        room_id: RoomId,
        user_id: UserId,
        by: UserId,
    },
    /// An invitation declined.
    Declined { room_id: RoomId, user_id: UserId },
    /// A member left a room.
    Left { room_id: RoomId, user_id: UserId },
    /// Someone started or stopped typing (not stored).
    Typing {
        room_id: RoomId,
        user_id: UserId,
        active: bool,
    },
    /// An account was created.
    User { id: UserId, username: String },
    /// A session token was issued (its hash, hex).
    Token {
        hash: String,
        user_id: UserId,
        expires_at: i64,
    },
    /// Sessions ended (logout, password change, suspension): their sockets close.
    Revoked {
        user_id: UserId,
        hashes: Vec<String>,
    },
    /// An account deleted: its sessions end, its memberships go, its words are blanked.
    AccountDeleted { user_id: UserId },
    /// An admin suspended an account or lifted it: a suspension closes its sockets on
    /// every node at once (the database watcher would take up to a second).
    Suspended { user_id: UserId, on: bool },
    /// An admin disconnected a user: their sockets close on every node (4003).
    Disconnected { user_id: UserId },
    /// A user's first socket on the sending node opened, or its last one closed.
    Presence { user_id: UserId, online: bool },
    /// The sending node is alive, with every user it has a socket of (a heartbeat: a
    /// node not heard from for a while is taken for dead, its users offline).
    Alive {
        users: Vec<UserId>,
        #[serde(default)]
        stats: NodeStats,
    },
}

/// What a node's heartbeat says of it, for `/admin/stats?scope=cluster`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    pub websockets: u64,
    pub users_online: u64,
    pub messages_stored: u64,
}

impl Event {
    /// The room an event belongs to, if any: room events go on the room's channel.
    pub fn room(&self) -> Option<RoomId> {
        match self {
            Event::Message { row } | Event::Changed { row } => Some(row.room_id),
            Event::Reacted { reacted } => Some(reacted.room_id),
            Event::Typing { room_id, .. } | Event::Left { room_id, .. } => Some(*room_id),
            Event::Joined { .. } | Event::User { .. } | Event::Token { .. } => None,
            Event::Invited { .. } | Event::Declined { .. } | Event::File { .. } => None,
            Event::Revoked { .. } | Event::Presence { .. } | Event::Alive { .. } => None,
            Event::AccountDeleted { .. } | Event::Suspended { .. } => None,
            Event::Disconnected { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_survives_the_wire() {
        let e = Envelope {
            node: "n1".into(),
            event: Event::Message {
                row: MessageRow {
                    id: 7,
                    seq: 3,
                    room_id: 2,
                    user_id: 1,
                    text: "hi ☃".into(),
                    ..Default::default()
                },
            },
        };
        let wire = serde_json::to_string(&e).unwrap();
        assert!(wire.contains(r#""kind":"message""#), "{wire}");
        assert_eq!(serde_json::from_str::<Envelope>(&wire).unwrap(), e);
        assert_eq!(e.event.room(), Some(2));
    }
}
