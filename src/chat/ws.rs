//! The Hub's handling of each WebSocket request: validation, access rules and budgets
//! inline; writes become store commands and are broadcast only once committed (see
//! `done.rs`). Every request that fails is answered with an `error` carrying its `ref`;
//! the socket stays open.

use super::hub::{fail, Budget, Effect, Except, Fail, Hub};
use super::protocol::{
    decode, dm_room_name, error_json, with_ref, ClientMsg, ErrorCode, MAX_REF_LEN,
};
use crate::id::{ConnId, RoomId, UserId};
use crate::store::event::Event;
use crate::store::{AfterJoin, ReplyTo, StoreOp, Via};
use crate::time::Now;
use serde_json::json;

pub(super) const BAD_ROOM_NAME: &str = "room names are 1-64 characters of a-z, 0-9, '_' and '-'";
/// The one answer for a conversation that does not exist and one the user is not in.
pub(super) const NO_SUCH_DM: &str = "no such conversation";

pub(super) fn is_dm(room: &str) -> bool {
    room.starts_with("dm:")
}

/// One request being handled: who sent it, and its `ref`.
pub(super) struct Ctx {
    pub conn: ConnId,
    pub user: UserId,
    pub req: Option<String>,
    pub now: Now,
}

impl Ctx {
    pub fn reply_to(&self) -> ReplyTo {
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
        match self.sockets.get_mut(&conn) {
            Some(s) if s.waiting > 0 => s.held.push_back(text.to_string()),
            Some(_) => self.handle_text(conn, text, now),
            None => {}
        }
        self.take_fx()
    }

    /// Whether a socket waits for the store to confirm a join: the reactor reads no more
    /// of it until an `Effect::Resume` (what it already read is held, in order).
    pub fn waiting(&self, conn: ConnId) -> bool {
        self.sockets.get(&conn).is_some_and(|s| s.waiting > 0)
    }

    /// A join this socket waited on was answered: handle what it sent meanwhile, in
    /// order, until another join makes it wait again.
    pub(super) fn resume(&mut self, conn: ConnId, now: Now) {
        loop {
            let Some(s) = self.sockets.get_mut(&conn) else {
                return;
            };
            if s.waiting > 0 {
                return;
            }
            let Some(text) = s.held.pop_front() else {
                break;
            };
            self.handle_text(conn, &text, now);
        }
        self.fx.push(Effect::Resume { conn });
    }

    fn handle_text(&mut self, conn: ConnId, text: &str, now: Now) {
        let Some(socket) = self.sockets.get(&conn) else {
            return;
        };
        let user = socket.user;
        if !self.socket_token_valid(conn, now) {
            // The token expired or was revoked since the upgrade: no more actions.
            self.fx.push(Effect::Close {
                conn,
                code: 4001,
                reason: "token expired",
            });
            return;
        }
        let (msg, req) = match decode(text) {
            Ok(d) => d,
            Err(e) => {
                self.send(conn, error_json(e.code, &e.message, e.req.as_deref()));
                return;
            }
        };
        let cx = Ctx {
            conn,
            user,
            req,
            now,
        };
        // Everything that changes rooms or reads the store is budgeted; messages and
        // typing are budgeted in their handlers, after validation.
        let budget = match &msg {
            ClientMsg::Seen { .. } | ClientMsg::Delivered { .. } => Some(Budget::Seen),
            ClientMsg::Send { .. }
            | ClientMsg::Dm { .. }
            | ClientMsg::Edit { .. }
            | ClientMsg::Delete { .. }
            | ClientMsg::Typing { .. } => None,
            _ => Some(Budget::Action),
        };
        let result = match budget.map_or(Ok(()), |b| self.rate(user, b, now)) {
            Err(e) => Err(e),
            Ok(()) => self.dispatch(&cx, msg),
        };
        if let Err((code, message)) = result {
            let status = super::queries::status_of(code);
            self.answer_error(&cx.reply_to(), code, &message, status);
        }
    }

    fn dispatch(&mut self, cx: &Ctx, msg: ClientMsg) -> Result<(), Fail> {
        match msg {
            ClientMsg::Join { room, since } => self.join(cx, &room, since),
            ClientMsg::Leave { room } => self.leave(cx.user, &room, cx.now).map(|sockets| {
                // Every socket of the user hears it; the one that asked, with its ref.
                let v = json!({ "type": "left", "room": room });
                for c in sockets.into_iter().filter(|c| *c != cx.conn) {
                    self.send(c, v.clone());
                }
                self.send(cx.conn, with_ref(v, cx.req.as_deref()));
            }),
            ClientMsg::CreateRoom { room, private } => self.create_room(cx, &room, private),
            ClientMsg::Invite { room, user } => self.invite(cx, &room, &user),
            ClientMsg::Decline { room } => self.decline(cx, &room),
            ClientMsg::Members {
                room,
                after,
                online,
            } => self.members_page(cx, &room, after.as_deref(), online),
            ClientMsg::Send {
                room,
                text,
                client_id,
                attachments,
            } => self.send_msg(cx, &room, &text, client_id, attachments),
            ClientMsg::Dm {
                to,
                text,
                client_id,
                attachments,
            } => self.dm(cx, &to, &text, client_id, attachments),
            ClientMsg::Edit { id, text } => self.edit(cx, id, &text),
            ClientMsg::Delete { id } => self.delete(cx, id),
            ClientMsg::React { id, emoji, on } => self.react(cx, id, &emoji, on),
            ClientMsg::Reactors { id, emoji, after } => {
                self.reactors(cx, id, &emoji, after.as_deref())
            }
            ClientMsg::Typing { room, active } => self.typing(cx, &room, active),
            ClientMsg::Seen { room, id } => self.seen(cx, &room, id),
            ClientMsg::Delivered { room, id } => self.delivered(cx, &room, id),
            ClientMsg::History {
                room,
                before,
                after,
                limit,
            } => self.ws_history(cx, &room, before, after, limit),
        }
    }

    /// A room the user may use: it exists and they are a member.
    pub(super) fn member_room(&self, name: &str, user: UserId) -> Result<RoomId, Fail> {
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
        self.check_len(t)
    }

    /// A new message: text, or files, or both.
    fn check_body(&self, text: &str, user: UserId, files: &[String]) -> Result<String, Fail> {
        self.check_attachments(user, files)?;
        let t = text.trim();
        if t.is_empty() && !files.is_empty() {
            return Ok(String::new());
        }
        self.check_text(t)
    }

    fn check_len(&self, t: &str) -> Result<String, Fail> {
        let max = self.cfg.max_text_chars;
        if t.chars().count() > max {
            return fail(ErrorCode::TooLong, format!("text is over {max} characters"));
        }
        Ok(t.to_string())
    }

    fn send_msg(
        &mut self,
        cx: &Ctx,
        room: &str,
        text: &str,
        client_id: Option<String>,
        attachments: Vec<String>,
    ) -> Result<(), Fail> {
        let room_id = self.member_room(room, cx.user)?;
        let text = self.check_body(text, cx.user, &attachments)?;
        check_client_id(&client_id)?;
        self.rate(cx.user, Budget::Message, cx.now)?;
        self.insert(
            cx.reply_to(),
            room_id,
            cx.user,
            text,
            client_id,
            attachments,
        );
        Ok(())
    }

    pub(super) fn insert(
        &mut self,
        to: ReplyTo,
        room_id: RoomId,
        user: UserId,
        text: String,
        client_id: Option<String>,
        attachments: Vec<String>,
    ) {
        let op = StoreOp::Insert {
            room_id,
            user_id: user,
            text,
            client_id,
            attachments,
        };
        self.insert_started(room_id, user);
        self.store(Some(to), op);
    }

    fn dm(
        &mut self,
        cx: &Ctx,
        to: &str,
        text: &str,
        client_id: Option<String>,
        attachments: Vec<String>,
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
        let text = self.check_body(text, cx.user, &attachments)?;
        check_client_id(&client_id)?;
        self.rate(cx.user, Budget::Message, cx.now)?;
        let name = dm_room_name(self.user_name(cx.user), self.user_name(peer));
        let (create, room_id) = match self.room_by_name.get(&name) {
            Some(&id) => (None, id),
            None => match self.creating.get(&name) {
                Some((id, _)) => (None, *id),
                None => {
                    let (id, room) = self.new_room(&name, true, None);
                    (Some(room), id)
                }
            },
        };
        let room = self.rooms.get(&room_id);
        let missing: Vec<UserId> = [cx.user, peer]
            .into_iter()
            .filter(|u| !room.is_some_and(|r| r.is_member(*u)))
            .collect();
        if missing.is_empty() {
            self.insert(
                cx.reply_to(),
                room_id,
                cx.user,
                text,
                client_id,
                attachments,
            );
        } else {
            // The conversation (or one side's membership) first; the message once the
            // store confirms it (`done::joined`).
            let after = AfterJoin::Send {
                user: cx.user,
                text,
                client_id,
                attachments,
            };
            self.request_join(cx, create, room_id, missing, after);
        }
        Ok(())
    }

    fn edit(&mut self, cx: &Ctx, id: i64, text: &str) -> Result<(), Fail> {
        let text = self.check_text(text)?;
        self.rate(cx.user, Budget::Message, cx.now)?;
        let op = StoreOp::Edit {
            id,
            author: cx.user,
            text,
        };
        self.store(Some(cx.reply_to()), op);
        Ok(())
    }

    fn delete(&mut self, cx: &Ctx, id: i64) -> Result<(), Fail> {
        self.rate(cx.user, Budget::Message, cx.now)?;
        let admin = self.is_admin(cx.user);
        if admin {
            // Known here, not when the store answers (the socket may be gone by then).
            self.moderating.insert(id, cx.user);
        }
        let author = (!admin).then_some(cx.user);
        self.store(Some(cx.reply_to()), StoreOp::Delete { id, author });
        Ok(())
    }

    /// Typing news. The state is kept per (room, user) so that only changes cost: `true`
    /// takes from the typing budget (and refreshes receivers while typing goes on);
    /// `false` after `true` is free, and `false` when not typing (a message committed
    /// meanwhile, or said twice) is dropped without a broadcast.
    fn typing(&mut self, cx: &Ctx, room: &str, active: bool) -> Result<(), Fail> {
        let room_id = self.member_room(room, cx.user)?;
        let key = (room_id, cx.user);
        if active {
            self.rate(cx.user, Budget::Typing, cx.now)?;
            // Only users with a socket in the room are kept, so the state is bounded by
            // the sockets open and ends with them (`typing_gone`).
            if self.rooms[&room_id].online.contains_key(&cx.user) {
                self.typing.insert(key);
            }
        } else if !self.typing.remove(&key) {
            return Ok(());
        }
        self.broadcast_typing(room_id, cx.user, active);
        self.publish(Event::Typing {
            room_id,
            user_id: cx.user,
            active,
        });
        Ok(())
    }

    pub(super) fn broadcast_typing(&mut self, room_id: RoomId, user: UserId, active: bool) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let msg = json!({
            "type": "typing",
            "room": room.name,
            "user": self.user_name(user),
            "active": active,
        });
        self.fx.push(Effect::Broadcast {
            room: room_id,
            msg,
            except: Except::User(user),
            ephemeral: true,
        });
    }

    /// The user's last socket left the room (leave, removal, disconnect): if they were
    /// typing there, the others hear that they stopped.
    pub(super) fn typing_gone(&mut self, room_id: RoomId, user: UserId) {
        if self.typing.remove(&(room_id, user)) && !self.quiet {
            self.broadcast_typing(room_id, user, false);
            self.publish(Event::Typing {
                room_id,
                user_id: user,
                active: false,
            });
        }
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
            ephemeral: false,
        });
        self.send(cx.conn, with_ref(v, cx.req.as_deref()));
        Ok(())
    }
}

impl Hub {
    /// `delivered`: the user has received the room up to `id` (cumulative). Told to the
    /// room only where receipts are shown (`RECEIPTS_MAX_MEMBERS`); kept and stored always.
    fn delivered(&mut self, cx: &Ctx, room: &str, id: i64) -> Result<(), Fail> {
        let room_id = self.member_room(room, cx.user)?;
        let name = self.user_name(cx.user).to_string();
        let rm = self.rooms.get_mut(&room_id).expect("member_room checked");
        if rm.has_message(id) == Some(false) {
            return fail(
                ErrorCode::NoSuchMessage,
                "no message with that id in this room",
            );
        }
        let cursor = rm.delivered.get(&cx.user).copied().unwrap_or(0);
        if id <= cursor {
            let v = json!({ "type": "delivered", "room": room, "user": name, "id": cursor });
            self.send(cx.conn, with_ref(v, cx.req.as_deref()));
            return Ok(());
        }
        rm.delivered.insert(cx.user, id);
        let small = rm.members.len() <= crate::config::RECEIPTS_MAX_MEMBERS;
        self.store(
            None,
            StoreOp::SetDelivered {
                room_id,
                user_id: cx.user,
                id,
            },
        );
        let v = json!({ "type": "delivered", "room": room, "user": name, "id": id });
        if small {
            self.fx.push(Effect::Broadcast {
                room: room_id,
                msg: v.clone(),
                except: Except::Conn(cx.conn),
                ephemeral: false,
            });
        }
        self.send(cx.conn, with_ref(v, cx.req.as_deref()));
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
