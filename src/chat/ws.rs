//! The Hub's handling of each WebSocket request: validation, access rules and budgets
//! inline; writes become store commands and are broadcast only once committed (see
//! `done.rs`). Every request that fails is answered with an `error` carrying its `ref`;
//! the socket stays open.

use super::hub::{fail, Effect, Except, Fail, Hub};
use super::protocol::{
    decode, dm_room_name, error_json, valid_room_name, with_ref, ClientMsg, ErrorCode, MAX_REF_LEN,
};
use crate::config::{CATCH_UP_MAX, GENERAL_ID, HISTORY_DEFAULT, HISTORY_MAX, MAX_PENDING_READS};
use crate::id::{ConnId, RoomId, UserId};
use crate::store::{MessageRow, ReadJob, ReadOp, ReplyTo, StoreOp, Via};
use crate::time::{rfc3339_ms, Now};
use serde_json::{json, Value};

const BAD_ROOM_NAME: &str = "room names are 1-64 characters of a-z, 0-9, '_' and '-'";
/// The one answer for a conversation that does not exist and one the user is not in.
pub(super) const NO_SUCH_DM: &str = "no such conversation";

pub(super) fn is_dm(room: &str) -> bool {
    room.starts_with("dm:")
}

/// One request being handled: who sent it, and its `ref`.
struct Ctx {
    conn: ConnId,
    user: UserId,
    req: Option<String>,
    now: Now,
}

impl Ctx {
    fn reply_to(&self) -> ReplyTo {
        ReplyTo {
            conn: self.conn,
            via: Via::Ws {
                req: self.req.clone(),
            },
        }
    }
}

impl Hub {
    /// One text frame from a WebSocket.
    pub fn handle_ws(&mut self, conn: ConnId, text: &str, now: Now) -> Vec<Effect> {
        let Some(socket) = self.sockets.get(&conn) else {
            return Vec::new();
        };
        let user = socket.user;
        if !self.socket_token_valid(conn, now) {
            // The token expired or was revoked since the upgrade: no more actions.
            self.fx.push(Effect::Close {
                conn,
                code: 4001,
                reason: "token expired",
            });
            return self.take_fx();
        }
        let (msg, req) = match decode(text) {
            Ok(d) => d,
            Err(e) => {
                self.send(conn, error_json(e.code, &e.message, e.req.as_deref()));
                return self.take_fx();
            }
        };
        let cx = Ctx {
            conn,
            user,
            req,
            now,
        };
        let result = match msg {
            ClientMsg::Join { room, since } => self.join(&cx, &room, since),
            ClientMsg::Leave { room } => self.leave(&cx, &room),
            ClientMsg::CreateRoom { room, private } => self.create_room(&cx, &room, private),
            ClientMsg::Invite { room, user: who } => self.invite(&cx, &room, &who),
            ClientMsg::Send {
                room,
                text,
                client_id,
            } => self.send_msg(&cx, &room, &text, client_id),
            ClientMsg::Dm {
                to,
                text,
                client_id,
            } => self.dm(&cx, &to, &text, client_id),
            ClientMsg::Edit { id, text } => self.edit(&cx, id, &text),
            ClientMsg::Delete { id } => self.delete(&cx, id),
            ClientMsg::Typing { room, active } => self.typing(&cx, &room, active),
            ClientMsg::Seen { room, id } => self.seen(&cx, &room, id),
            ClientMsg::History {
                room,
                before,
                limit,
            } => self.ws_history(&cx, &room, before, limit),
        };
        if let Err((code, message)) = result {
            if code == ErrorCode::RateLimited {
                self.stats.rate_limited += 1;
            }
            self.send(conn, error_json(code, &message, cx.req.as_deref()));
        }
        self.take_fx()
    }

    /// A room the user may use: it exists and they are a member.
    fn member_room(&self, name: &str, user: UserId) -> Result<RoomId, Fail> {
        let Some(&id) = self.room_by_name.get(name) else {
            if is_dm(name) {
                return fail(ErrorCode::NoSuchRoom, NO_SUCH_DM);
            }
            return fail(ErrorCode::NoSuchRoom, format!("no room named {name:?}"));
        };
        let room = &self.rooms[&id];
        if !room.is_member(user) && is_dm(name) {
            // Whether two other people talk to each other is none of this user's business.
            return fail(ErrorCode::NoSuchRoom, NO_SUCH_DM);
        }
        if !room.is_member(user) {
            let why = if room.private {
                "this room is private"
            } else {
                "join the room first"
            };
            return fail(ErrorCode::Forbidden, why);
        }
        Ok(id)
    }

    fn check_text(&self, text: &str) -> Result<String, Fail> {
        let t = text.trim();
        if t.is_empty() {
            return fail(ErrorCode::BadRequest, "text is empty");
        }
        let max = self.cfg.max_text_chars;
        if t.chars().count() > max {
            return fail(ErrorCode::TooLong, format!("text is over {max} characters"));
        }
        Ok(t.to_string())
    }

    pub(super) fn joined_value(
        &self,
        room_id: RoomId,
        history: Vec<&MessageRow>,
        complete: bool,
    ) -> Value {
        let room = &self.rooms[&room_id];
        let names = |ids: &mut dyn Iterator<Item = &UserId>| {
            let mut v: Vec<&str> = ids
                .filter_map(|u| self.users.get(u).map(|u| u.name.as_str()))
                .collect();
            v.sort_unstable();
            v
        };
        let members = names(&mut room.members.keys());
        let online = names(&mut room.online.keys());
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

    fn join(&mut self, cx: &Ctx, name: &str, since: Option<i64>) -> Result<(), Fail> {
        let room_id = match self.room_by_name.get(name) {
            Some(&id) => id,
            None if valid_room_name(name) => {
                self.create_room_record(name.to_string(), false, Some(cx.user))
            }
            None if is_dm(name) => return fail(ErrorCode::NoSuchRoom, NO_SUCH_DM),
            None => return fail(ErrorCode::BadRequest, BAD_ROOM_NAME),
        };
        let room = &self.rooms[&room_id];
        if room.private && !room.is_member(cx.user) && is_dm(name) {
            return fail(ErrorCode::NoSuchRoom, NO_SUCH_DM);
        }
        if room.private && !room.is_member(cx.user) {
            return fail(
                ErrorCode::Forbidden,
                "this room is private; ask its owner for an invite",
            );
        }
        self.add_member(room_id, cx.user, cx.now);
        // This socket may have left the room earlier while staying a member elsewhere.
        self.attach(cx.conn, cx.user, room_id, cx.now);
        let room = &self.rooms[&room_id];
        let (history, complete) = match since {
            Some(s) => room.since(s, CATCH_UP_MAX),
            None => (room.recent(self.cfg.join_history).collect(), true),
        };
        let v = with_ref(
            self.joined_value(room_id, history, complete),
            cx.req.as_deref(),
        );
        self.send(cx.conn, v);
        Ok(())
    }

    fn leave(&mut self, cx: &Ctx, name: &str) -> Result<(), Fail> {
        let room_id = self.member_room(name, cx.user)?;
        if room_id == GENERAL_ID {
            return fail(ErrorCode::BadRequest, "everyone stays in general");
        }
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.remove(&cx.user);
        }
        self.store(
            None,
            StoreOp::RemoveMember {
                room_id,
                user_id: cx.user,
            },
        );
        if let Some(u) = self.users.get_mut(&cx.user) {
            u.rooms.remove(&room_id);
            for c in u.conns.clone() {
                self.detach(c, cx.user, room_id, cx.now);
            }
        }
        let v = with_ref(json!({ "type": "left", "room": name }), cx.req.as_deref());
        self.send(cx.conn, v);
        Ok(())
    }

    fn create_room(&mut self, cx: &Ctx, name: &str, private: bool) -> Result<(), Fail> {
        if !valid_room_name(name) {
            return fail(ErrorCode::BadRequest, BAD_ROOM_NAME);
        }
        if self.room_by_name.contains_key(name) {
            return fail(
                ErrorCode::BadRequest,
                "a room with that name already exists",
            );
        }
        let id = self.create_room_record(name.to_string(), private, Some(cx.user));
        self.add_member(id, cx.user, cx.now);
        let v = with_ref(self.joined_value(id, Vec::new(), true), cx.req.as_deref());
        self.send(cx.conn, v);
        Ok(())
    }

    fn invite(&mut self, cx: &Ctx, name: &str, who: &str) -> Result<(), Fail> {
        let room_id = self.member_room(name, cx.user)?;
        if self.rooms[&room_id].owner != Some(cx.user) {
            return fail(ErrorCode::Forbidden, "only the room's owner can invite");
        }
        let Some(invitee) = self.user_by_name(who) else {
            return fail(ErrorCode::BadRequest, format!("no user named {who:?}"));
        };
        self.add_member(room_id, invitee, cx.now);
        let v = json!({
            "type": "invited",
            "room": name,
            "by": self.user_name(cx.user),
            "user": self.user_name(invitee),
        });
        for c in self.users[&invitee].conns.clone() {
            self.send(c, v.clone());
        }
        self.send(cx.conn, with_ref(v, cx.req.as_deref()));
        Ok(())
    }

    fn send_msg(
        &mut self,
        cx: &Ctx,
        room: &str,
        text: &str,
        client_id: Option<String>,
    ) -> Result<(), Fail> {
        let room_id = self.member_room(room, cx.user)?;
        let text = self.check_text(text)?;
        check_client_id(&client_id)?;
        self.rate(cx.user, false, cx.now)?;
        self.insert(cx, room_id, text, client_id);
        Ok(())
    }

    fn insert(&mut self, cx: &Ctx, room_id: RoomId, text: String, client_id: Option<String>) {
        let op = StoreOp::Insert {
            room_id,
            user_id: cx.user,
            text,
            client_id,
        };
        self.store(Some(cx.reply_to()), op);
    }

    fn dm(
        &mut self,
        cx: &Ctx,
        to: &str,
        text: &str,
        client_id: Option<String>,
    ) -> Result<(), Fail> {
        let Some(peer) = self.user_by_name(to) else {
            return fail(ErrorCode::BadRequest, format!("no user named {to:?}"));
        };
        if peer == cx.user {
            return fail(
                ErrorCode::BadRequest,
                "you cannot send a direct message to yourself",
            );
        }
        let text = self.check_text(text)?;
        check_client_id(&client_id)?;
        self.rate(cx.user, false, cx.now)?;
        let name = dm_room_name(self.user_name(cx.user), self.user_name(peer));
        let room_id = match self.room_by_name.get(&name) {
            Some(&id) => id,
            None => self.create_room_record(name, true, None),
        };
        self.add_member(room_id, cx.user, cx.now);
        self.add_member(room_id, peer, cx.now);
        self.insert(cx, room_id, text, client_id);
        Ok(())
    }

    fn edit(&mut self, cx: &Ctx, id: i64, text: &str) -> Result<(), Fail> {
        let text = self.check_text(text)?;
        self.rate(cx.user, false, cx.now)?;
        let op = StoreOp::Edit {
            id,
            author: cx.user,
            text,
        };
        self.store(Some(cx.reply_to()), op);
        Ok(())
    }

    fn delete(&mut self, cx: &Ctx, id: i64) -> Result<(), Fail> {
        self.rate(cx.user, false, cx.now)?;
        let author = (!self.is_admin(cx.user)).then_some(cx.user);
        self.store(Some(cx.reply_to()), StoreOp::Delete { id, author });
        Ok(())
    }

    fn typing(&mut self, cx: &Ctx, room: &str, active: bool) -> Result<(), Fail> {
        let room_id = self.member_room(room, cx.user)?;
        self.rate(cx.user, true, cx.now)?;
        let msg = json!({
            "type": "typing",
            "room": room,
            "user": self.user_name(cx.user),
            "active": active,
        });
        self.fx.push(Effect::Broadcast {
            room: room_id,
            msg,
            except: Except::User(cx.user),
        });
        Ok(())
    }

    fn seen(&mut self, cx: &Ctx, room: &str, id: i64) -> Result<(), Fail> {
        let room_id = self.member_room(room, cx.user)?;
        let name = self.user_name(cx.user).to_string();
        let rm = self.rooms.get_mut(&room_id).expect("member_room checked");
        if rm.has_message(id) == Some(false) {
            return fail(
                ErrorCode::NoSuchMessage,
                "no message with that id in this room",
            );
        }
        let cursor = rm.members.get(&cx.user).copied().unwrap_or(0);
        if id <= cursor {
            let v = json!({ "type": "seen", "room": room, "user": name, "id": cursor });
            self.send(cx.conn, with_ref(v, cx.req.as_deref()));
            return Ok(());
        }
        rm.members.insert(cx.user, id);
        self.store(
            None,
            StoreOp::SetCursor {
                room_id,
                user_id: cx.user,
                id,
            },
        );
        let v = json!({ "type": "seen", "room": room, "user": name, "id": id });
        self.fx.push(Effect::Broadcast {
            room: room_id,
            msg: v.clone(),
            except: Except::Conn(cx.conn),
        });
        self.send(cx.conn, with_ref(v, cx.req.as_deref()));
        Ok(())
    }

    fn ws_history(
        &mut self,
        cx: &Ctx,
        room: &str,
        before: Option<i64>,
        limit: Option<usize>,
    ) -> Result<(), Fail> {
        // A public room's history is readable without joining it.
        let room_id = match self.member_room(room, cx.user) {
            Ok(id) => id,
            Err((ErrorCode::Forbidden, _)) if !self.rooms[&self.room_by_name[room]].private => {
                self.room_by_name[room]
            }
            Err(e) => return Err(e),
        };
        let before = before.unwrap_or(i64::MAX);
        let limit = limit.unwrap_or(HISTORY_DEFAULT).clamp(1, HISTORY_MAX);
        if let Some((msgs, has_more)) = self.rooms[&room_id].page_before(before, limit) {
            let messages: Vec<Value> = msgs.iter().map(|m| self.message_value(m)).collect();
            let v = json!({ "type": "history", "room": room, "messages": messages, "has_more": has_more });
            self.send(cx.conn, with_ref(v, cx.req.as_deref()));
            return Ok(());
        }
        // Deep reads cost a reader thread real work: bound what one socket can queue.
        let socket = self.sockets.get_mut(&cx.conn).expect("handle_ws checked");
        if socket.pending_reads >= MAX_PENDING_READS {
            return fail(
                ErrorCode::RateLimited,
                "too many history requests in flight",
            );
        }
        socket.pending_reads += 1;
        self.fx.push(Effect::Read(ReadJob {
            reply: cx.reply_to(),
            op: ReadOp::History {
                room: room.to_string(),
                room_id,
                before,
                limit,
            },
        }));
        Ok(())
    }
}

fn check_client_id(client_id: &Option<String>) -> Result<(), Fail> {
    match client_id {
        Some(c) if c.len() > MAX_REF_LEN || c.is_empty() => {
            fail(ErrorCode::BadRequest, "client_id must be 1 to 64 bytes")
        }
        _ => Ok(()),
    }
}
