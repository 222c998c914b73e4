//! The handler of each client message, and of the completions that finish them.
//!
//! Validation, access rules and rate limits run inline on the reactor; writes go to the
//! store and are broadcast only when committed. Every request that fails gets an `error`
//! with the request's `ref`; the connection stays open.

use super::protocol::{
    decode, dm_room_name, error_json, valid_room_name, with_ref, ClientMsg, ErrorCode,
};
use super::state::Room;
use crate::auth::pool::ConnRef;
use crate::ratelimit::Bucket;
use crate::reactor::conn::ConnState;
use crate::reactor::{Server, UserBuckets};
use crate::store::reader::{ReadDone, ReadJob, ReplyVia};
use crate::store::{MessageRow, StoreCmd, StoreError};
use crate::time::rfc3339_ms;
use serde_json::{json, Value};

/// `general` is created by the first migration with this id.
pub const GENERAL_ID: i64 = 1;
/// History requests one socket may have waiting on the reader threads.
pub const MAX_PENDING_READS: u8 = 4;
/// Most messages a `join` with `since` returns.
pub const CATCH_UP_MAX: usize = 1000;

type Reply = Result<(), (ErrorCode, String)>;

fn fail(code: ErrorCode, msg: impl Into<String>) -> Reply {
    Err((code, msg.into()))
}

impl Server {
    fn ws_user(&self, key: usize) -> Option<i64> {
        match &self.conns.get(key)?.state {
            ConnState::Ws(ws) => Some(ws.user_id),
            _ => None,
        }
    }

    fn user_name(&self, id: i64) -> String {
        self.users
            .get(&id)
            .map_or_else(String::new, |u| u.name.clone())
    }

    /// Greets a new WebSocket and attaches it to every room of its user.
    pub(crate) fn on_ws_open(&mut self, key: usize, user_id: i64) {
        let Some(user) = self.users.get_mut(&user_id) else {
            return;
        };
        user.conns.push(key);
        let mut room_ids: Vec<i64> = user.rooms.iter().copied().collect();
        room_ids.sort_unstable();
        let names: Vec<String> = room_ids
            .iter()
            .filter_map(|id| self.rooms.get(id).map(|r| r.name.clone()))
            .collect();
        let hello = json!({ "type": "hello", "user": user.name, "rooms": names });
        self.send_json(key, &hello);
        for id in room_ids {
            self.attach(key, user_id, id);
        }
    }

    /// Subscribes one connection to a room, announcing the user if they just came online.
    fn attach(&mut self, key: usize, user_id: i64, room_id: i64) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let first = room.attach(key, user_id);
        if let Some(ConnState::Ws(ws)) = self.conns.get_mut(key).map(|c| &mut c.state) {
            if !ws.rooms.contains(&room_id) {
                ws.rooms.push(room_id);
            }
        }
        if first {
            self.presence(room_id, user_id, "online");
        }
    }

    fn detach(&mut self, key: usize, user_id: i64, room_id: i64) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let last = room.detach(key, user_id);
        if let Some(ConnState::Ws(ws)) = self.conns.get_mut(key).map(|c| &mut c.state) {
            ws.rooms.retain(|r| *r != room_id);
        }
        if last {
            self.presence(room_id, user_id, "offline");
        }
    }

    fn presence(&mut self, room_id: i64, user_id: i64, status: &str) {
        let (Some(room), Some(user)) = (self.rooms.get(&room_id), self.users.get(&user_id)) else {
            return;
        };
        let v = json!({
            "type": "presence",
            "room": room.name,
            "user": user.name,
            "status": status,
            "last_seen": rfc3339_ms(match (status, user.last_seen) {
                ("offline", Some(at)) => at,
                _ => crate::time::now_ms(),
            }),
        });
        self.broadcast_room(room_id, &v, Some(user_id));
    }

    /// Detaches a closing WebSocket from its rooms and its user (idempotent).
    pub(crate) fn detach_ws(&mut self, key: usize) {
        let Some(ConnState::Ws(ws)) = self.conns.get_mut(key).map(|c| &mut c.state) else {
            return;
        };
        let user_id = ws.user_id;
        let rooms = ws.rooms.clone();
        let Some(user) = self.users.get_mut(&user_id) else {
            return;
        };
        if !user.conns.contains(&key) {
            return;
        }
        user.conns.retain(|k| *k != key);
        let gone = user.conns.is_empty();
        if gone {
            let now = crate::time::now_ms();
            user.last_seen = Some(now);
            self.store_cmd(StoreCmd::SetLastSeen { user_id, at: now });
        }
        for room_id in rooms {
            self.detach(key, user_id, room_id);
        }
    }

    pub(crate) fn handle_ws_text(&mut self, key: usize, text: &str) {
        let Some(user) = self.ws_user(key) else {
            return;
        };
        let (msg, req) = match decode(text) {
            Ok(d) => d,
            Err(e) => {
                let v = error_json(e.code, &e.message, e.req.as_deref());
                return self.send_json(key, &v);
            }
        };
        let r = req.as_deref();
        let result = match msg {
            ClientMsg::Join { room, since } => self.join(key, user, &room, since, r),
            ClientMsg::Leave { room } => self.leave(key, user, &room, r),
            ClientMsg::CreateRoom { room, private } => {
                self.create_room(key, user, &room, private, r)
            }
            ClientMsg::Invite { room, user: who } => self.invite(key, user, &room, &who, r),
            ClientMsg::Send {
                room,
                text,
                client_id,
            } => self.send_msg(key, user, &room, text, client_id, req.clone()),
            ClientMsg::Dm {
                to,
                text,
                client_id,
            } => self.dm(key, user, &to, text, client_id, req.clone()),
            ClientMsg::Edit { id, text } => self.edit(key, user, id, text, req.clone()),
            ClientMsg::Delete { id } => self.delete(key, user, id, req.clone()),
            ClientMsg::Typing { room, active } => self.typing(user, &room, active),
            ClientMsg::Seen { room, id } => self.seen(key, user, &room, id, r),
            ClientMsg::History {
                room,
                before,
                limit,
            } => self.ws_history(key, user, &room, before, limit, req.clone()),
        };
        if let Err((code, message)) = result {
            if code == ErrorCode::RateLimited {
                self.metrics.rate_limited += 1;
            }
            self.send_json(key, &error_json(code, &message, r));
        }
    }

    /// A room the user may use: it exists and, if private, they are a member.
    fn member_room(&self, name: &str, user: i64) -> Result<i64, (ErrorCode, String)> {
        let id = *self
            .room_by_name
            .get(name)
            .ok_or((ErrorCode::NoSuchRoom, format!("no room named {name:?}")))?;
        let room = &self.rooms[&id];
        if !room.is_member(user) {
            let why = if room.private {
                "this room is private"
            } else {
                "join the room first"
            };
            return Err((ErrorCode::Forbidden, why.into()));
        }
        Ok(id)
    }

    fn rate(&mut self, user: i64, typing: bool) -> Reply {
        let now = self.now;
        let c = &self.config;
        let (mr, mb, tr) = (c.msg_rate, c.msg_burst, c.typing_rate);
        let b = self
            .user_buckets
            .entry(user)
            .or_insert_with(|| UserBuckets {
                msg: Bucket::new(mb, now),
                typing: Bucket::new(tr, now),
            });
        let r = if typing {
            b.typing.take(tr, tr, now)
        } else {
            b.msg.take(mr, mb, now)
        };
        r.or_else(|wait| {
            fail(
                ErrorCode::RateLimited,
                format!("slow down; try again in {} ms", wait.as_millis() + 1),
            )
        })
    }

    fn check_text(&self, text: &str) -> Result<String, (ErrorCode, String)> {
        let t = text.trim();
        if t.is_empty() {
            return Err((ErrorCode::BadRequest, "text is empty".into()));
        }
        let max = self.config.max_text_chars;
        if t.chars().count() > max {
            return Err((ErrorCode::TooLong, format!("text is over {max} characters")));
        }
        Ok(t.to_string())
    }

    fn check_client_id(client_id: &Option<String>) -> Reply {
        match client_id {
            Some(c) if c.len() > super::protocol::MAX_REF_LEN || c.is_empty() => {
                fail(ErrorCode::BadRequest, "client_id must be 1 to 64 bytes")
            }
            _ => Ok(()),
        }
    }

    /// Creates a room in memory and in the store.
    fn create_room_record(&mut self, name: String, private: bool, owner: Option<i64>) -> i64 {
        let id = self.next_room_id;
        self.next_room_id += 1;
        self.store_cmd(StoreCmd::CreateRoom {
            id,
            name: name.clone(),
            private,
            owner,
        });
        self.room_by_name.insert(name.clone(), id);
        self.rooms.insert(id, Room::new(id, name, private, owner));
        id
    }

    /// Makes `user` a member and attaches all their open connections.
    fn add_member(&mut self, room_id: i64, user: i64) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if room.members.contains_key(&user) {
            return;
        }
        room.members.insert(user, 0);
        self.store_cmd(StoreCmd::AddMember {
            room_id,
            user_id: user,
        });
        let Some(u) = self.users.get_mut(&user) else {
            return;
        };
        u.rooms.insert(room_id);
        for k in u.conns.clone() {
            self.attach(k, user, room_id);
        }
    }

    fn joined_value(&self, room_id: i64, history: Vec<&MessageRow>, complete: bool) -> Value {
        let room = &self.rooms[&room_id];
        let mut members: Vec<&str> = room
            .members
            .keys()
            .filter_map(|u| self.users.get(u).map(|u| u.name.as_str()))
            .collect();
        members.sort_unstable();
        let mut online: Vec<&str> = room
            .online
            .keys()
            .filter_map(|u| self.users.get(u).map(|u| u.name.as_str()))
            .collect();
        online.sort_unstable();
        let history: Vec<Value> = history.iter().map(|m| self.message_value(m)).collect();
        // Read cursors and last-seen times let a client draw receipts and the member
        // list without asking again.
        let mut cursors = serde_json::Map::new();
        let mut last_seen = serde_json::Map::new();
        for (uid, cursor) in &room.members {
            if let Some(u) = self.users.get(uid) {
                cursors.insert(u.name.clone(), json!(cursor));
                if let Some(at) = u.last_seen {
                    last_seen.insert(u.name.clone(), json!(rfc3339_ms(at)));
                }
            }
        }
        json!({
            "type": "joined",
            "room": room.name,
            "private": room.private,
            "owner": room.owner.map(|o| self.user_name(o)),
            "members": members,
            "online": online,
            "cursors": cursors,
            "last_seen": last_seen,
            "history": history,
            "complete": complete,
        })
    }

    fn join(
        &mut self,
        key: usize,
        user: i64,
        name: &str,
        since: Option<i64>,
        r: Option<&str>,
    ) -> Reply {
        let room_id = match self.room_by_name.get(name) {
            Some(&id) => id,
            None if valid_room_name(name) => {
                self.create_room_record(name.to_string(), false, Some(user))
            }
            None if name.starts_with("dm:") => {
                return fail(ErrorCode::NoSuchRoom, "no such conversation")
            }
            None => {
                return fail(
                    ErrorCode::BadRequest,
                    "room names are 1-64 characters of a-z, 0-9, '_' and '-'",
                )
            }
        };
        let room = &self.rooms[&room_id];
        if room.private && !room.is_member(user) {
            return fail(
                ErrorCode::Forbidden,
                "this room is private; ask its owner for an invite",
            );
        }
        self.add_member(room_id, user);
        // This connection may have left the room earlier while staying a member elsewhere.
        self.attach(key, user, room_id);
        let room = &self.rooms[&room_id];
        let (history, complete) = match since {
            Some(s) => room.since(s, CATCH_UP_MAX),
            None => (room.recent(self.config.join_history).collect(), true),
        };
        let v = with_ref(self.joined_value(room_id, history, complete), r);
        self.send_json(key, &v);
        Ok(())
    }

    fn leave(&mut self, key: usize, user: i64, name: &str, r: Option<&str>) -> Reply {
        let room_id = self.member_room(name, user)?;
        if room_id == GENERAL_ID {
            return fail(ErrorCode::BadRequest, "everyone stays in general");
        }
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.remove(&user);
        }
        self.store_cmd(StoreCmd::RemoveMember {
            room_id,
            user_id: user,
        });
        if let Some(u) = self.users.get_mut(&user) {
            u.rooms.remove(&room_id);
            for k in u.conns.clone() {
                self.detach(k, user, room_id);
            }
        }
        self.send_json(key, &with_ref(json!({ "type": "left", "room": name }), r));
        Ok(())
    }

    fn create_room(
        &mut self,
        key: usize,
        user: i64,
        name: &str,
        private: bool,
        r: Option<&str>,
    ) -> Reply {
        if !valid_room_name(name) {
            return fail(
                ErrorCode::BadRequest,
                "room names are 1-64 characters of a-z, 0-9, '_' and '-'",
            );
        }
        if self.room_by_name.contains_key(name) {
            return fail(
                ErrorCode::BadRequest,
                "a room with that name already exists",
            );
        }
        let id = self.create_room_record(name.to_string(), private, Some(user));
        self.add_member(id, user);
        let v = with_ref(self.joined_value(id, Vec::new(), true), r);
        self.send_json(key, &v);
        Ok(())
    }

    fn invite(&mut self, key: usize, user: i64, name: &str, who: &str, r: Option<&str>) -> Reply {
        let room_id = self.member_room(name, user)?;
        if self.rooms[&room_id].owner != Some(user) {
            return fail(ErrorCode::Forbidden, "only the room's owner can invite");
        }
        let Some(&invitee) = self.user_by_name.get(&who.to_ascii_lowercase()) else {
            return fail(ErrorCode::BadRequest, format!("no user named {who:?}"));
        };
        self.add_member(room_id, invitee);
        let by = self.user_name(user);
        let v =
            json!({ "type": "invited", "room": name, "by": by, "user": self.user_name(invitee) });
        let keys = self
            .users
            .get(&invitee)
            .map(|u| u.conns.clone())
            .unwrap_or_default();
        self.broadcast(&keys, &v);
        self.send_json(key, &with_ref(v, r));
        Ok(())
    }

    fn send_msg(
        &mut self,
        key: usize,
        user: i64,
        room: &str,
        text: String,
        client_id: Option<String>,
        req: Option<String>,
    ) -> Reply {
        let room_id = self.member_room(room, user)?;
        let text = self.check_text(&text)?;
        Self::check_client_id(&client_id)?;
        self.rate(user, false)?;
        self.queue_insert(key, user, room_id, text, client_id, req)
    }

    fn queue_insert(
        &mut self,
        key: usize,
        user: i64,
        room_id: i64,
        text: String,
        client_id: Option<String>,
        req: Option<String>,
    ) -> Reply {
        let conn = self.conn_ref(key);
        let cmd = StoreCmd::Insert {
            conn,
            req,
            room_id,
            user_id: user,
            text,
            client_id,
        };
        if !self.store_cmd(cmd) {
            return fail(ErrorCode::Overloaded, "storage is unavailable; try again");
        }
        Ok(())
    }

    fn dm(
        &mut self,
        key: usize,
        user: i64,
        to: &str,
        text: String,
        client_id: Option<String>,
        req: Option<String>,
    ) -> Reply {
        let Some(&peer) = self.user_by_name.get(&to.to_ascii_lowercase()) else {
            return fail(ErrorCode::BadRequest, format!("no user named {to:?}"));
        };
        if peer == user {
            return fail(
                ErrorCode::BadRequest,
                "you cannot send a direct message to yourself",
            );
        }
        let text = self.check_text(&text)?;
        Self::check_client_id(&client_id)?;
        self.rate(user, false)?;
        let name = dm_room_name(&self.user_name(user), &self.user_name(peer));
        let room_id = match self.room_by_name.get(&name) {
            Some(&id) => id,
            None => self.create_room_record(name, true, None),
        };
        self.add_member(room_id, user);
        self.add_member(room_id, peer);
        self.queue_insert(key, user, room_id, text, client_id, req)
    }

    fn edit(&mut self, key: usize, user: i64, id: i64, text: String, req: Option<String>) -> Reply {
        let text = self.check_text(&text)?;
        self.rate(user, false)?;
        let conn = self.conn_ref(key);
        if !self.store_cmd(StoreCmd::Edit {
            conn,
            req,
            id,
            author: user,
            text,
        }) {
            return fail(ErrorCode::Overloaded, "storage is unavailable; try again");
        }
        Ok(())
    }

    fn delete(&mut self, key: usize, user: i64, id: i64, req: Option<String>) -> Reply {
        self.rate(user, false)?;
        let admin = self.config.is_admin(&self.user_name(user));
        let conn = self.conn_ref(key);
        if !self.store_cmd(StoreCmd::Delete {
            conn,
            req,
            id,
            author: if admin { None } else { Some(user) },
        }) {
            return fail(ErrorCode::Overloaded, "storage is unavailable; try again");
        }
        Ok(())
    }

    fn typing(&mut self, user: i64, room: &str, active: bool) -> Reply {
        let room_id = self.member_room(room, user)?;
        self.rate(user, true)?;
        let v = json!({ "type": "typing", "room": room, "user": self.user_name(user), "active": active });
        self.broadcast_room(room_id, &v, Some(user));
        Ok(())
    }

    fn seen(&mut self, key: usize, user: i64, room: &str, id: i64, r: Option<&str>) -> Reply {
        let room_id = self.member_room(room, user)?;
        let name = self.user_name(user);
        let rm = self.rooms.get_mut(&room_id).expect("member_room checked");
        if rm.has_message(id) == Some(false) {
            return fail(
                ErrorCode::NoSuchMessage,
                "no message with that id in this room",
            );
        }
        let cursor = rm.members.get(&user).copied().unwrap_or(0);
        if id <= cursor {
            let v = json!({ "type": "seen", "room": room, "user": name, "id": cursor });
            self.send_json(key, &with_ref(v, r));
            return Ok(());
        }
        rm.members.insert(user, id);
        self.store_cmd(StoreCmd::SetCursor {
            room_id,
            user_id: user,
            id,
        });
        let v = json!({ "type": "seen", "room": room, "user": name, "id": id });
        let others: Vec<usize> = self.rooms[&room_id]
            .conns
            .iter()
            .copied()
            .filter(|k| *k != key)
            .collect();
        self.broadcast(&others, &v);
        self.send_json(key, &with_ref(v, r));
        Ok(())
    }

    fn ws_history(
        &mut self,
        key: usize,
        user: i64,
        room: &str,
        before: Option<i64>,
        limit: Option<usize>,
        req: Option<String>,
    ) -> Reply {
        let room_id = match self.member_room(room, user) {
            Ok(id) => id,
            Err((ErrorCode::Forbidden, _)) if !self.rooms[&self.room_by_name[room]].private => {
                self.room_by_name[room]
            }
            Err(e) => return Err(e),
        };
        let before = before.unwrap_or(i64::MAX);
        let limit = limit
            .unwrap_or(crate::reactor::routes::HISTORY_DEFAULT)
            .clamp(1, crate::reactor::routes::HISTORY_MAX);
        if let Some((msgs, has_more)) = self.rooms[&room_id].page_before(before, limit) {
            let messages: Vec<Value> = msgs.iter().map(|m| self.message_value(m)).collect();
            let v = json!({ "type": "history", "room": room, "messages": messages, "has_more": has_more });
            self.send_json(key, &with_ref(v, req.as_deref()));
            return Ok(());
        }
        // Deep reads cost a reader thread real work: bound what one socket can queue.
        if let Some(ConnState::Ws(ws)) = self.conns.get_mut(key).map(|c| &mut c.state) {
            if ws.pending_reads >= MAX_PENDING_READS {
                return fail(
                    ErrorCode::RateLimited,
                    "too many history requests in flight",
                );
            }
            ws.pending_reads += 1;
        }
        let conn = self.conn_ref(key);
        let _ = self.reads.send(ReadJob::History {
            conn,
            via: ReplyVia::Ws { req },
            room: room.to_string(),
            room_id,
            before,
            limit,
        });
        Ok(())
    }

    // ---- completions -------------------------------------------------------------

    fn reply_error(&mut self, conn: ConnRef, req: Option<&str>, code: ErrorCode, msg: &str) {
        if self.is_live(conn) {
            self.send_json(conn.0, &error_json(code, msg, req));
        }
    }

    pub(crate) fn inserted(
        &mut self,
        conn: ConnRef,
        req: Option<String>,
        result: Result<(MessageRow, bool), StoreError>,
    ) {
        let (row, duplicate) = match result {
            Ok(r) => r,
            Err(_) => {
                return self.reply_error(
                    conn,
                    req.as_deref(),
                    ErrorCode::Overloaded,
                    "storage is unavailable; the message was not stored",
                )
            }
        };
        let v = self.message_value(&row);
        if !duplicate {
            self.metrics.messages_stored += 1;
            let room_id = row.room_id;
            let cap = self.config.ring_size;
            let live = self.is_live(conn);
            if let Some(room) = self.rooms.get_mut(&room_id) {
                room.push(row, cap);
                let keys: Vec<usize> = room
                    .conns
                    .iter()
                    .copied()
                    .filter(|k| !live || *k != conn.0)
                    .collect();
                self.broadcast(&keys, &v);
            }
        }
        // The sender's copy answers its request, so it carries the ref.
        if self.is_live(conn) {
            self.send_json(conn.0, &with_ref(v, req.as_deref()));
        }
    }

    pub(crate) fn changed(
        &mut self,
        conn: ConnRef,
        req: Option<String>,
        result: Result<MessageRow, StoreError>,
    ) {
        let row = match result {
            Ok(row) => row,
            Err(e) => {
                let (code, msg) = match e {
                    StoreError::NotFound => (ErrorCode::NoSuchMessage, "no such message"),
                    StoreError::Forbidden => (
                        ErrorCode::Forbidden,
                        "only the author can change this message",
                    ),
                    _ => (ErrorCode::Overloaded, "storage is unavailable; try again"),
                };
                return self.reply_error(conn, req.as_deref(), code, msg);
            }
        };
        let room_name = self
            .rooms
            .get(&row.room_id)
            .map_or_else(String::new, |r| r.name.clone());
        if let Some(room) = self.rooms.get_mut(&row.room_id) {
            if let Some(m) = room.get_mut(row.id) {
                *m = row.clone();
            }
        }
        let v = if row.deleted {
            json!({ "type": "deleted", "id": row.id, "room": room_name })
        } else {
            json!({
                "type": "edited",
                "id": row.id,
                "room": room_name,
                "text": row.text,
                "edited_at": rfc3339_ms(row.edited_at.unwrap_or(row.ts)),
            })
        };
        let live = self.is_live(conn);
        let keys: Vec<usize> = self
            .rooms
            .get(&row.room_id)
            .map(|r| {
                r.conns
                    .iter()
                    .copied()
                    .filter(|k| !live || *k != conn.0)
                    .collect()
            })
            .unwrap_or_default();
        self.broadcast(&keys, &v);
        if live {
            self.send_json(conn.0, &with_ref(v, req.as_deref()));
        }
    }

    pub(crate) fn read_done(&mut self, done: ReadDone) {
        match done {
            ReadDone::History {
                conn,
                via,
                room,
                result,
            } => {
                if let (ReplyVia::Ws { .. }, true) = (&via, self.is_live(conn)) {
                    if let ConnState::Ws(ws) = &mut self.conns[conn.0].state {
                        ws.pending_reads = ws.pending_reads.saturating_sub(1);
                    }
                }
                let (msgs, has_more) = match result {
                    Ok(r) => r,
                    Err(_) => {
                        return match via {
                            ReplyVia::Http => {
                                self.respond_to(conn, crate::reactor::storage_unavailable())
                            }
                            ReplyVia::Ws { req } => self.reply_error(
                                conn,
                                req.as_deref(),
                                ErrorCode::Overloaded,
                                "history is unavailable; try again",
                            ),
                        }
                    }
                };
                let messages: Vec<Value> = msgs.iter().map(|m| self.message_value(m)).collect();
                match via {
                    ReplyVia::Http => {
                        let body = json!({ "messages": messages, "has_more": has_more });
                        self.respond_to(conn, crate::http::Response::json(200, &body));
                    }
                    ReplyVia::Ws { req } => {
                        if self.is_live(conn) {
                            let v = json!({ "type": "history", "room": room, "messages": messages, "has_more": has_more });
                            self.send_json(conn.0, &with_ref(v, req.as_deref()));
                        }
                    }
                }
            }
            ReadDone::Search { conn, result } => {
                let resp = match result {
                    Ok(rows) => {
                        let messages: Vec<Value> =
                            rows.iter().map(|m| self.message_value(m)).collect();
                        crate::http::Response::json(200, &json!({ "messages": messages }))
                    }
                    Err(_) => crate::reactor::storage_unavailable(),
                };
                self.respond_to(conn, resp);
            }
        }
    }
}
