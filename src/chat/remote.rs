//! Cluster mode: another node's events applied here. Messages go through the per-room
//! order (`cluster.rs`); accounts, sessions, memberships, invitations, files, typing and
//! presence are learnt as they come, and a session ended here is not brought back by a
//! late event.

use super::hub::Hub;
use crate::id::{RoomId, UserId};
use crate::store::event::{Envelope, Event};
use crate::store::NewRoom;
use crate::time::Now;

impl Hub {
    /// Another node's event.
    pub(super) fn remote(&mut self, env: Envelope, now: Now) {
        match env.event {
            Event::Presence { user_id, online } => {
                self.remote_presence(&env.node, user_id, online, now)
            }
            Event::Alive { users, stats } => self.node_alive(&env.node, users, stats, now),
            Event::Message { row } => self.sequence(row, None),
            Event::Changed { row } => self.apply_change(row, None, now),
            Event::Reacted { reacted } => self.apply_reaction_event(reacted, None),
            Event::Joined {
                create,
                room_id,
                users,
            } => self.remote_joined(create, room_id, users, now),
            Event::Left { room_id, user_id } => self.remote_left(room_id, user_id, now),
            Event::Invited {
                room_id,
                user_id,
                by,
            } => self.remote_invited(room_id, user_id, by),
            Event::Suspended { user_id, on } => {
                if self.users.get(&user_id).is_some_and(|u| u.suspended != on) {
                    self.set_suspended(user_id, on);
                }
            }
            Event::Disconnected { user_id } => {
                self.disconnect_here(user_id);
            }
            Event::AccountDeleted { user_id } => {
                self.drop_sessions(user_id, |_| true);
                self.forget_account(user_id, now);
            }
            Event::File { row } => {
                self.files.entry(row.file.id.clone()).or_insert(row);
            }
            Event::Declined { room_id, user_id } => {
                if let Some(list) = self.invites.get_mut(&user_id) {
                    list.retain(|i| i.room != room_id);
                }
            }
            Event::Typing {
                room_id,
                user_id,
                active,
            } => self.broadcast_typing(room_id, user_id, active),
            Event::User { id, username } => self.remote_user(id, username),
            Event::Token {
                hash,
                user_id,
                expires_at,
            } => {
                // A session may end before the news of its start arrives (two publishers).
                if let Some(h) = unhex(&hash).filter(|h| !self.revoked.contains(h)) {
                    self.note_token(h);
                    self.not_found.remove(&h);
                    self.tokens.insert(
                        h,
                        super::hub::TokenInfo {
                            user_id,
                            expires_at,
                            last_used: now.wall_ms,
                        },
                    );
                }
            }
            Event::Revoked { user_id, hashes } => {
                let hashes: Vec<_> = hashes.iter().filter_map(|h| unhex(h)).collect();
                self.drop_sessions(user_id, |h| hashes.contains(h));
            }
        }
    }

    fn remote_joined(
        &mut self,
        create: Option<NewRoom>,
        room_id: RoomId,
        users: Vec<UserId>,
        now: Now,
    ) {
        if let Some(r) = create {
            if !self.rooms.contains_key(&room_id) {
                if let Some(u) = r.owner.and_then(|o| self.users.get_mut(&o)) {
                    u.owned += 1;
                }
                self.room_by_name.insert(r.name.clone(), room_id);
                let room = super::room::Room::new(room_id, r.name, r.private, r.owner);
                self.rooms.insert(room_id, room);
            }
        }
        if !self.rooms.contains_key(&room_id) {
            log::warn!("bus: members for room {room_id}, which this node does not know");
            return;
        }
        for u in users {
            if !self.rooms[&room_id].is_member(u) {
                self.add_member(room_id, u, now);
            }
        }
    }

    fn remote_left(&mut self, room_id: RoomId, user: UserId, now: Now) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        if !room.is_member(user) {
            return;
        }
        let v = serde_json::json!({ "type": "left", "room": room.name });
        for c in self.drop_member(room_id, user, now) {
            self.send(c, v.clone());
        }
    }

    /// Another node stored an invitation: the invitee's sockets here hear of it.
    fn remote_invited(&mut self, room_id: RoomId, user: UserId, by: UserId) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        if room.is_member(user) {
            return;
        }
        let list = self.invites.entry(user).or_default();
        if list.iter().any(|i| i.room == room_id) {
            return;
        }
        // The inviting node dropped the oldest past the cap (and stored that).
        if list.len() >= crate::config::MAX_INVITATIONS {
            list.remove(0);
        }
        list.push(super::room::Invite { room: room_id, by });
        let v = serde_json::json!({
            "type": "invited",
            "room": room.name,
            "by": self.user_name(by),
            "user": self.user_name(user),
        });
        let conns = self
            .users
            .get(&user)
            .map(|u| u.conns.clone())
            .unwrap_or_default();
        for c in conns {
            self.send(c, v.clone());
        }
    }

    /// What the database says of an account replaces what this node remembers of its
    /// password and flags (another node may have changed them).
    pub(super) fn account_as_stored(&mut self, row: crate::store::load::UserRow) {
        match self.users.get_mut(&row.id) {
            Some(u) => {
                u.pw_hash = row.pw_hash;
                u.suspended = row.suspended;
                u.admin = row.admin;
            }
            None => self.users_added(vec![row]),
        }
    }

    fn remote_user(&mut self, id: UserId, username: String) {
        // No password hash crosses the bus: logins in cluster mode read it from the
        // database (`look_up_login`).
        let row = crate::store::load::UserRow {
            id,
            username,
            pw_hash: String::new(),
            last_seen: None,
            admin: false,
            suspended: false,
            deleted_at: None,
        };
        self.users_added(vec![row]);
    }
}

pub fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
