//! Sockets and presence: opening a WebSocket (`hello`, attaching it to its user's
//! rooms), closing one, and announcing who is online in a room, at most once a second
//! per user and room.

use super::hub::{unauthorized, Effect, Except, Hub, Socket};
use super::room::Room;
use crate::auth::hash_token;
use crate::config::{HELLO_ROOMS_MAX, PRESENCE_INTERVAL, PRESENCE_MAX_MEMBERS};
use crate::http::Response;
use crate::id::{ConnId, RoomId, UserId};
use crate::store::StoreOp;
use crate::time::{rfc3339_ms, Now};
use serde_json::{json, Value};
use std::time::Instant;

/// What was last said of a user's presence in a room, and whether it changed since.
#[derive(Clone, Copy, Debug)]
pub struct Announced {
    pub online: bool,
    pub at: Instant,
    /// The state changed since: announce it when the interval is up.
    pub changed: bool,
}

impl Hub {
    /// A WebSocket upgrade with `token`: registers the socket, greets it and attaches it
    /// to every room of its user; or the response refusing it.
    pub fn open_socket(
        &mut self,
        conn: ConnId,
        token: &str,
        now: Now,
    ) -> Result<Vec<Effect>, Response> {
        let hash = hash_token(token);
        let Some(info) = self.token_info(&hash, now) else {
            return Err(unauthorized());
        };
        let user_id = info.user_id;
        let Some(user) = self.users.get_mut(&user_id).filter(|u| !u.suspended) else {
            return Err(unauthorized());
        };
        if user.conns.len() >= self.cfg.max_sockets_per_user {
            let max = self.cfg.max_sockets_per_user;
            let body = json!({
                "error": "rate_limited",
                "message": format!("this account already has {max} WebSockets open; close one"),
                // Nothing frees on its own: try again once another socket has closed.
                "retry_after_ms": 1000,
            });
            return Err(Response::json(429, &body).with_header("Retry-After", "1"));
        }
        user.conns.push(conn);
        let first = user.conns.len() == 1;
        let mut room_ids: Vec<RoomId> = user.rooms.iter().copied().collect();
        room_ids.sort_unstable();
        let hello = self.hello(user_id, &room_ids);
        self.fx.push(Effect::Send { conn, msg: hello });
        self.sockets.insert(
            conn,
            Socket {
                user: user_id,
                token: hash,
                rooms: Vec::new(),
                pending_reads: 0,
                waiting: 0,
                held: Default::default(),
            },
        );
        for id in room_ids {
            self.attach(conn, user_id, id, now);
        }
        if first {
            self.local_presence(user_id, true);
        }
        Ok(self.take_fx())
    }

    /// `hello`: the user's rooms, most recently active first, at most `HELLO_ROOMS_MAX`
    /// (`rooms_more` says the rest are in `GET /rooms`), and pending invitations.
    fn hello(&self, user_id: UserId, room_ids: &[RoomId]) -> Value {
        let mut rooms: Vec<&Room> = room_ids
            .iter()
            .filter_map(|id| self.rooms.get(id))
            .collect();
        let more = rooms.len() > HELLO_ROOMS_MAX;
        if more {
            rooms.select_nth_unstable_by_key(HELLO_ROOMS_MAX, |r| std::cmp::Reverse(r.last_id));
            rooms.truncate(HELLO_ROOMS_MAX);
        }
        rooms.sort_unstable_by_key(|r| r.id);
        let names: Vec<&str> = rooms.iter().map(|r| r.name.as_str()).collect();
        let mut hello = json!({
            "type": "hello",
            "user": self.user_name(user_id),
            "rooms": names,
            "invitations": self.invitations_json(user_id),
            // So that a client refuses a file too big before uploading it.
            "max_file_bytes": self.cfg.max_file_bytes,
        });
        if more {
            hello["rooms_more"] = json!(true);
        }
        if self.is_admin(user_id) {
            // So a client can offer moderation (the server checks every action anyway).
            hello["admin"] = json!(true);
        }
        hello
    }

    /// A user's pending invitations as `[{"room","by"}]`, oldest first.
    pub(super) fn invitations_json(&self, user: UserId) -> Value {
        let list = self.invites.get(&user).map_or(&[][..], |v| v.as_slice());
        let items: Vec<Value> = list
            .iter()
            .filter_map(|i| {
                let room = self.rooms.get(&i.room)?;
                Some(json!({ "room": room.name, "by": self.user_name(i.by) }))
            })
            .collect();
        Value::Array(items)
    }

    /// A WebSocket is gone (closed by either side): detaches it, and announces its user
    /// offline where this was their last socket.
    pub fn socket_closed(&mut self, conn: ConnId, now: Now) -> Vec<Effect> {
        let Some(socket) = self.sockets.remove(&conn) else {
            return Vec::new();
        };
        let user_id = socket.user;
        if let Some(user) = self.users.get_mut(&user_id) {
            user.conns.retain(|c| *c != conn);
            if user.conns.is_empty() {
                user.last_seen = Some(now.wall_ms);
                self.store(
                    None,
                    StoreOp::SetLastSeen {
                        user_id,
                        at: now.wall_ms,
                    },
                );
                self.local_presence(user_id, false);
            }
        }
        for room_id in socket.rooms {
            if let Some(room) = self.rooms.get_mut(&room_id) {
                if room.detach(conn, user_id) {
                    self.typing_gone(room_id, user_id);
                    self.presence_changed(room_id, user_id, now);
                }
            }
        }
        self.take_fx()
    }

    /// Subscribes one socket to a room, announcing its user if they just came online.
    pub(super) fn attach(&mut self, conn: ConnId, user_id: UserId, room_id: RoomId, now: Now) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let first = room.attach(conn, user_id);
        if let Some(s) = self.sockets.get_mut(&conn) {
            if !s.rooms.contains(&room_id) {
                s.rooms.push(room_id);
            }
        }
        if first {
            self.presence_changed(room_id, user_id, now);
        }
    }

    pub(super) fn detach(&mut self, conn: ConnId, user_id: UserId, room_id: RoomId, now: Now) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let last = room.detach(conn, user_id);
        if let Some(s) = self.sockets.get_mut(&conn) {
            s.rooms.retain(|r| *r != room_id);
        }
        if last {
            self.typing_gone(room_id, user_id);
            self.presence_changed(room_id, user_id, now);
        }
    }

    /// A user came online or went offline in a room. Announced at once unless it was
    /// announced less than `PRESENCE_INTERVAL` ago; then the latest state follows when
    /// the interval is up (`tick`), and flapping in between costs nothing. Rooms past
    /// `PRESENCE_MAX_MEMBERS` get no per-user presence at all.
    pub(super) fn presence_changed(&mut self, room_id: RoomId, user_id: UserId, now: Now) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        if self.quiet || room.members.len() > PRESENCE_MAX_MEMBERS {
            return;
        }
        let online = room.online.contains_key(&user_id);
        match self.announced.get_mut(&(room_id, user_id)) {
            Some(a) if now.mono < a.at + PRESENCE_INTERVAL => a.changed = a.online != online,
            _ => self.announce(room_id, user_id, online, now),
        }
    }

    fn announce(&mut self, room_id: RoomId, user_id: UserId, online: bool, now: Now) {
        let (Some(room), Some(user)) = (self.rooms.get(&room_id), self.users.get(&user_id)) else {
            return;
        };
        let at = match (online, user.last_seen) {
            (false, Some(at)) => at,
            _ => now.wall_ms,
        };
        let msg = json!({
            "type": "presence",
            "room": room.name,
            "user": user.name,
            "status": if online { "online" } else { "offline" },
            "last_seen": rfc3339_ms(at),
        });
        self.fx.push(Effect::Broadcast {
            room: room_id,
            msg,
            except: Except::User(user_id),
            ephemeral: true,
        });
        let a = Announced {
            online,
            at: now.mono,
            changed: false,
        };
        self.announced.insert((room_id, user_id), a);
        self.presence_due
            .insert((now.mono + PRESENCE_INTERVAL, room_id, user_id));
    }

    /// Announces presence held back by the interval. Called by the reactor each pass.
    pub fn tick(&mut self, now: Now) -> Vec<Effect> {
        self.sweep_files(now);
        self.node_tick(now);
        while let Some(&(at, room_id, user_id)) = self.presence_due.first() {
            if at > now.mono {
                break;
            }
            self.presence_due.pop_first();
            let key = (room_id, user_id);
            // An entry announced anew since this one was scheduled has its own.
            let Some(a) = self.announced.get(&key).copied() else {
                continue;
            };
            if a.at + PRESENCE_INTERVAL != at {
                continue;
            }
            self.announced.remove(&key);
            let online = self
                .rooms
                .get(&room_id)
                .is_some_and(|r| r.online.contains_key(&user_id));
            if a.changed && online != a.online && !self.quiet {
                self.announce(room_id, user_id, online, now);
            }
        }
        self.take_fx()
    }

    /// When `tick` next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        let presence = self.presence_due.first().map(|(at, _, _)| *at);
        match (presence, self.node_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
