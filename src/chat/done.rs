//! The Hub's side of completions: a write committed (or failed), a read or a password
//! check came back. Only now are messages broadcast, so whatever a client sees is on disk.

use super::hub::{storage_unavailable, Effect, Except, Hub};
use super::protocol::{with_ref, ErrorCode};
use super::room::Room;
use crate::http::Response;
use crate::id::{RoomId, UserId};
use crate::store::event::Event;
use crate::store::{AfterJoin, Completion, MessageRow, NewRoom, Outcome, ReplyTo, StoreError, Via};
use crate::time::{rfc3339_ms, Now};
use serde_json::{json, Value};

impl Hub {
    /// One answer from the writer, a reader or the password pool.
    pub fn completed(&mut self, c: Completion, now: Now) -> Vec<Effect> {
        if let Outcome::Flags(flags) = &c.outcome {
            self.account_flags(flags, now);
            return self.take_fx();
        }
        let c = match c.outcome {
            Outcome::NewUsers(rows) => {
                self.users_added(rows);
                return self.take_fx();
            }
            Outcome::FilesSwept(ids) => {
                self.files_swept(ids);
                return self.take_fx();
            }
            Outcome::Remote(env) => {
                self.remote(env, now);
                return self.take_fx();
            }
            Outcome::BusUp => {
                self.bus_up();
                return self.take_fx();
            }
            Outcome::State(result) => {
                self.reconcile(result, now);
                return self.take_fx();
            }
            Outcome::Seqs { room, result } => {
                self.seqs_read(room, result);
                return self.take_fx();
            }
            outcome => Completion { outcome, ..c },
        };
        let outcome = match c.outcome {
            Outcome::Joined {
                create,
                room_id,
                users,
                after,
                result,
            } => {
                // Applied even when the socket that asked is gone: it is on disk.
                self.joined(c.reply, create, room_id, users, after, result, now);
                return self.take_fx();
            }
            other => other,
        };
        let Some(to) = c.reply else {
            return Vec::new();
        };
        match outcome {
            Outcome::UserCreated {
                username,
                phc,
                result,
            } => self.user_created(to, username, phc, result),
            Outcome::TokenCreated {
                token,
                user_id,
                expires_at,
                result,
            } => self.token_created(to, token, user_id, expires_at, result, now),
            Outcome::Inserted(result) => self.inserted(to, result),
            Outcome::Changed(result) => self.changed(to, result, now),
            // A socket's write acknowledged only once committed (an invitation).
            Outcome::Written(result) if matches!(to.via, Via::Ws { .. }) => self.acked(to, result),
            Outcome::Written(result) if self.deletions.contains_key(&to.conn) => {
                self.account_deleted(to, result, now)
            }
            // Otherwise a write answered over HTTP without a body: a logout, an ended
            // session.
            Outcome::Written(result) => {
                let resp = match result {
                    Ok(()) => Response::no_content(),
                    Err(_) => storage_unavailable(),
                };
                self.respond(to.conn, resp);
            }
            Outcome::History {
                room,
                forward,
                reader,
                result,
            } => self.history_read(to, room, forward, reader, result),
            Outcome::Search { reader, result } => self.search_read(to, reader, result),
            Outcome::Reacted(result) => self.reacted(to, result),
            Outcome::Uploaded { id, result } => self.uploaded(to, id, result, now),
            Outcome::FileAdded { result, .. } => self.file_added(to, result, now),
            Outcome::FileAccess { id, range, result } => {
                self.file_access_read(to, id, range, result)
            }
            Outcome::Reactors { id, emoji, result } => self.reactors_read(to, id, emoji, result),
            Outcome::TokenFound { hash, result } => self.token_found(to, hash, result, now),
            Outcome::UserFound(result) => self.user_found(to, result, now),
            Outcome::Sessions(result) => self.sessions_read(to, result),
            Outcome::ExportPage(result) => self.export_page(to, result),
            Outcome::PasswordSet {
                user_id,
                phc,
                keep,
                result,
            } => self.password_set(to, user_id, phc, keep, result),
            Outcome::Hashed { phc, .. } if self.resets.contains_key(&to.conn) => {
                self.reset_hashed(to, phc)
            }
            Outcome::Hashed { phc, .. } if self.changing_password(to.conn) == Some(true) => {
                self.new_password_hashed(to, phc)
            }
            Outcome::Hashed { username, phc } => self.hashed(to, username, phc),
            Outcome::Verified(result) if self.deletions.contains_key(&to.conn) => {
                self.deletion_checked(to, result, now)
            }
            Outcome::Verified(result) if self.changing_password(to.conn) == Some(false) => {
                self.old_password_checked(to, result, now)
            }
            Outcome::Verified(result) => self.verified(to, result, now),
            // Gap filling is the cluster bus's; nothing asks for it yet.
            Outcome::Health(_)
            | Outcome::Seqs { .. }
            | Outcome::FilesSwept(_)
            | Outcome::UploadAck(_)
            | Outcome::FileChunk(_)
            | Outcome::Flags(_)
            | Outcome::NewUsers(_)
            | Outcome::Remote(_)
            | Outcome::BusUp
            | Outcome::State(_)
            | Outcome::Joined { .. } => {}
        }
        self.take_fx()
    }

    /// A `Join` came back. Only now does memory change: the room exists, the users are
    /// members; then the request goes on (`joined`, or the first direct message).
    #[allow(clippy::too_many_arguments)]
    fn joined(
        &mut self,
        to: Option<ReplyTo>,
        create: Option<NewRoom>,
        room_id: RoomId,
        users: Vec<UserId>,
        after: AfterJoin,
        result: Result<(), StoreError>,
        now: Now,
    ) {
        if let Some(r) = &create {
            self.creating.remove(&r.name);
            if let Some(u) = r.owner.and_then(|o| self.users.get_mut(&o)) {
                u.creating = u.creating.saturating_sub(1);
            }
        }
        for u in &users {
            if let Some(set) = self.joining.get_mut(u) {
                set.remove(&room_id);
                if set.is_empty() {
                    self.joining.remove(u);
                }
            }
        }
        if let Some(to) = &to {
            if let Some(s) = self.sockets.get_mut(&to.conn) {
                s.waiting = s.waiting.saturating_sub(1);
            }
        }
        match (result, to) {
            (Ok(()), to) => {
                self.publish(Event::Joined {
                    create: create.clone(),
                    room_id,
                    users: users.clone(),
                });
                if let Some(r) = create {
                    if let Some(u) = r.owner.and_then(|o| self.users.get_mut(&o)) {
                        u.owned += 1;
                    }
                    self.room_by_name.insert(r.name.clone(), room_id);
                    let room = Room::new(room_id, r.name, r.private, r.owner);
                    self.rooms.insert(room_id, room);
                }
                for u in users {
                    self.add_member(room_id, u, now);
                }
                match (after, to) {
                    (AfterJoin::Joined { user, since }, Some(to)) => {
                        if self.sockets.contains_key(&to.conn) {
                            self.attach(to.conn, user, room_id, now);
                            let req = match &to.via {
                                Via::Ws { req } => req.clone(),
                                Via::Http => None,
                            };
                            self.answer_join(to.conn, req.as_deref(), room_id, since);
                        }
                        self.resume(to.conn, now);
                    }
                    (
                        AfterJoin::Send {
                            user,
                            text,
                            client_id,
                            attachments,
                        },
                        Some(to),
                    ) => {
                        let conn = to.conn;
                        self.insert(to, room_id, user, text, client_id, attachments);
                        self.resume(conn, now);
                    }
                    (_, None) => {}
                }
            }
            (Err(_), Some(to)) => {
                let msg = match after {
                    AfterJoin::Send { .. } => "storage is unavailable; the message was not stored",
                    AfterJoin::Joined { .. } => "storage is unavailable; try again",
                };
                self.answer_unavailable(&to, msg);
                self.resume(to.conn, now);
            }
            (Err(_), None) => {}
        }
    }

    fn inserted(&mut self, to: ReplyTo, result: Result<(MessageRow, bool), StoreError>) {
        let answered = self.insert_answered();
        self.inserted_row(to, result);
        if let Some(room_id) = answered {
            self.drain(room_id);
        }
    }

    fn inserted_row(&mut self, to: ReplyTo, result: Result<(MessageRow, bool), StoreError>) {
        let (row, duplicate) = match result {
            Ok(r) => r,
            // An attached file was forgotten (swept) between the check and the write.
            Err(StoreError::Conflict) => {
                let msg = "a file of this message is no longer available; attach it again";
                return self.answer_error(&to, ErrorCode::BadRequest, msg, 400);
            }
            Err(_) => {
                return self
                    .answer_unavailable(&to, "storage is unavailable; the message was not stored")
            }
        };
        if duplicate {
            if self.clustered() {
                // A retry of a message stored earlier, perhaps through another node and
                // not delivered here yet: answered in its place in the room's order
                // (at once if it was delivered), so its sender does not get it twice.
                return self.sequence(row, Some(to));
            }
            let v = self.message_value(&row);
            return self.answer_sender(v, &to);
        }
        self.stats.messages_stored += 1;
        if self.clustered() {
            self.publish(Event::Message { row: row.clone() });
            self.sequence(row, Some(to));
        } else {
            // One writer: commits come back in order, nothing to wait for.
            self.commit_message(row, Some(to));
        }
    }

    /// A committed change goes to everyone in the room; the sender's copy answers its
    /// request, so it carries the ref.
    pub(super) fn deliver_committed(&mut self, room: RoomId, v: Value, to: &ReplyTo) {
        self.fx.push(Effect::Broadcast {
            room,
            msg: v.clone(),
            except: Except::Conn(to.conn),
            ephemeral: false,
        });
        self.answer_sender(v, to);
    }

    pub(super) fn answer_sender(&mut self, v: Value, to: &ReplyTo) {
        let req = match &to.via {
            Via::Ws { req } => req.as_deref(),
            Via::Http => None,
        };
        self.send(to.conn, with_ref(v, req));
    }

    fn changed(&mut self, to: ReplyTo, result: Result<MessageRow, StoreError>, now: Now) {
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
                return self.answer_error(&to, code, msg, 503);
            }
        };
        self.publish(Event::Changed { row: row.clone() });
        self.apply_change(row, Some(&to), now);
    }

    /// An edit or deletion committed here (`to`: who asked) or on another node.
    pub(super) fn apply_change(&mut self, row: MessageRow, to: Option<&ReplyTo>, now: Now) {
        if to.is_none() && self.change_before_delivery(&row) {
            return;
        }
        if row.deleted {
            // Its files go unless another message has them: look now, not in a minute.
            self.next_sweep = None;
        }
        let actor = self.moderating.remove(&row.id);
        if row.deleted && actor.is_some_and(|a| a != row.user_id) {
            // Only an admin deletes someone else's message: that is moderation.
            let target = format!("message {} by {}", row.id, self.user_name(row.user_id));
            self.audit(actor, "delete_message", target, now);
        }
        let Some(room) = self.rooms.get_mut(&row.room_id) else {
            return;
        };
        if let Some(m) = room.get_mut(row.id) {
            // An edit keeps the reactions the ring knows (the store's row has none);
            // a deletion drops them, as the store did.
            let reactions = std::mem::take(&mut m.reactions);
            let attachments = std::mem::take(&mut m.attachments);
            *m = row.clone();
            if !row.deleted {
                m.reactions = reactions;
                m.attachments = attachments;
            }
        }
        let v = if row.deleted {
            json!({ "type": "deleted", "id": row.id, "room": room.name })
        } else {
            json!({
                "type": "edited",
                "id": row.id,
                "room": room.name,
                "text": row.text,
                "edited_at": rfc3339_ms(row.edited_at.unwrap_or(row.ts)),
            })
        };
        match to {
            Some(to) => self.deliver_committed(row.room_id, v, to),
            None => self.fx.push(Effect::Broadcast {
                room: row.room_id,
                msg: v,
                except: Except::Nobody,
                ephemeral: false,
            }),
        }
    }

    /// A write a socket asked for committed (or failed): what waited for it goes out.
    fn acked(&mut self, to: ReplyTo, result: Result<(), StoreError>) {
        let sends = self.acks.get_mut(&to.conn).and_then(|q| q.pop_front());
        if self.acks.get(&to.conn).is_some_and(|q| q.is_empty()) {
            self.acks.remove(&to.conn);
        }
        match (result, sends) {
            (Ok(()), Some((sends, event))) => {
                for (conn, v) in sends {
                    self.send(conn, v);
                }
                if let Some(e) = event {
                    self.publish(e);
                }
            }
            (Err(_), _) => self.answer_unavailable(&to, "storage is unavailable; try again"),
            (Ok(()), None) => {}
        }
    }
}
