//! Rooms from a member's side: join (and catch-up), leave, create, invite, decline, the
//! member list, and history pages. Every reply is bounded: at most `MEMBERS_PAGE` names
//! and `REPLY_MAX_BYTES` of messages, with a way to ask for the rest.

use super::hub::{fail, Effect, Fail, Hub};
use super::protocol::{valid_room_name, with_ref, ErrorCode};
use super::room::{Invite, Room};
use super::ws::{is_dm, Ctx, BAD_ROOM_NAME, NO_SUCH_DM};
use crate::config::{
    CATCH_UP_MAX, GENERAL_ID, HISTORY_DEFAULT, HISTORY_MAX, MAX_INVITATIONS, MAX_PENDING_READS,
    MEMBERS_PAGE, REPLY_MAX_BYTES,
};
use crate::id::{ConnId, RoomId, UserId};
use crate::store::event::Event;
use crate::store::{AfterJoin, MessageRow, ReadJob, ReadOp, StoreOp};
use crate::time::{rfc3339_ms, Now};
use serde_json::{json, Value};

const PRIVATE_ROOM: &str = "this room is private; ask its owner for an invite";

/// What `retry_after_ms` says when a socket has too many history reads in flight.
const PENDING_READ_RETRY_MS: u64 = 100;

/// A message's share of a reply: its text as JSON encodes it (a control character takes
/// six bytes, a quote or backslash two), plus the other fields.
fn reply_bytes(m: &MessageRow) -> usize {
    let text: usize = m
        .text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum();
    // A reaction costs its emoji twice (the counts, and `mine`) and its count.
    let reactions: usize = m.reactions.iter().map(|r| 2 * r.emoji.len() + 16).sum();
    text + 200 + m.client_id.as_ref().map_or(0, |c| c.len() * 6) + reactions
}

/// The longest run of `msgs` from the start (or, `from_end`, from the end) that stays
/// within `REPLY_MAX_BYTES`; at least one message, so a reply always moves forward.
pub(super) fn within_reply_bytes(msgs: &[&MessageRow], from_end: bool) -> usize {
    let mut total = 0;
    let mut n = 0;
    let iter: Box<dyn Iterator<Item = &&MessageRow>> = if from_end {
        Box::new(msgs.iter().rev())
    } else {
        Box::new(msgs.iter())
    };
    for m in iter {
        total += reply_bytes(m);
        if n > 0 && total > REPLY_MAX_BYTES {
            break;
        }
        n += 1;
    }
    n
}

impl Hub {
    /// `joined`: the room, up to `MEMBERS_PAGE` member and online names with the counts
    /// (`members_more` when the list goes on: page it with `members`), cursors and
    /// last-seen times of the listed members, and `history`.
    pub(super) fn joined_value(
        &self,
        room_id: RoomId,
        history: &[&MessageRow],
        complete: bool,
        reader: Option<UserId>,
    ) -> Value {
        let room = &self.rooms[&room_id];
        let members = self.first_names(room.members.keys());
        let online = self.first_names(room.online.keys());
        let history: Vec<Value> = history
            .iter()
            .map(|m| self.message_value_for(m, reader))
            .collect();
        let mut cursors = serde_json::Map::new();
        let mut delivered = serde_json::Map::new();
        let mut last_seen = serde_json::Map::new();
        for (name, uid) in members.iter().chain(online.iter()) {
            let cursor = room.members.get(uid).copied().unwrap_or(0);
            cursors.insert(name.to_string(), json!(cursor));
            let got = room.delivered.get(uid).copied().unwrap_or(0);
            delivered.insert(name.to_string(), json!(got.max(cursor)));
            if let Some(at) = self.users.get(uid).and_then(|u| u.last_seen) {
                last_seen.insert(name.to_string(), json!(rfc3339_ms(at)));
            }
        }
        fn names<'a>(v: &[(&'a str, UserId)]) -> Vec<&'a str> {
            v.iter().map(|(n, _)| *n).collect()
        }
        json!({
            "type": "joined",
            "room": room.name,
            "private": room.private,
            "owner": room.owner.map(|o| self.user_name(o)),
            "members": names(&members),
            "online": names(&online),
            "member_count": room.members.len(),
            "online_count": room.online.len(),
            "members_more": room.members.len() > members.len() || room.online.len() > online.len(),
            "cursors": cursors,
            "delivered": delivered,
            "last_seen": last_seen,
            "history": history,
            "complete": complete,
        })
    }

    /// The first `MEMBERS_PAGE` names of `ids`, in name order, without sorting them all.
    fn first_names<'a>(&'a self, ids: impl Iterator<Item = &'a UserId>) -> Vec<(&'a str, UserId)> {
        let mut v: Vec<(&str, UserId)> = ids
            .filter_map(|u| self.users.get(u).map(|x| (x.name.as_str(), *u)))
            .collect();
        if v.len() > MEMBERS_PAGE {
            v.select_nth_unstable(MEMBERS_PAGE);
            v.truncate(MEMBERS_PAGE);
        }
        v.sort_unstable();
        v
    }

    pub(super) fn join(&mut self, cx: &Ctx, name: &str, since: Option<i64>) -> Result<(), Fail> {
        let after = AfterJoin::Joined {
            user: cx.user,
            since,
        };
        let room_id = match self.room_by_name.get(name) {
            Some(&id) => id,
            None => {
                if let Some((id, r)) = self.creating.get(name) {
                    // Someone is creating it right now: join behind the creation (the
                    // store applies both in order); a private one is its owner's alone.
                    let id = *id;
                    if is_dm(name) {
                        return fail(ErrorCode::NoSuchRoom, NO_SUCH_DM);
                    }
                    if r.private && r.owner != Some(cx.user) {
                        return fail(ErrorCode::Forbidden, PRIVATE_ROOM);
                    }
                    self.room_cap(cx.user)?;
                    self.request_join(cx, None, id, vec![cx.user], after);
                    return Ok(());
                }
                if is_dm(name) {
                    return fail(ErrorCode::NoSuchRoom, NO_SUCH_DM);
                }
                if !valid_room_name(name) {
                    return fail(ErrorCode::BadRequest, BAD_ROOM_NAME);
                }
                self.owned_cap(cx.user)?;
                self.room_cap(cx.user)?;
                let (id, room) = self.new_room(name, false, Some(cx.user));
                self.request_join(cx, Some(room), id, vec![cx.user], after);
                return Ok(());
            }
        };
        let room = &self.rooms[&room_id];
        if room.is_member(cx.user) {
            // This socket may have left the room earlier while staying a member elsewhere.
            self.attach(cx.conn, cx.user, room_id, cx.now);
            self.answer_join(cx.conn, cx.req.as_deref(), room_id, since);
            return Ok(());
        }
        if room.private {
            if is_dm(name) {
                return fail(ErrorCode::NoSuchRoom, NO_SUCH_DM);
            }
            // Joining a private room is how an invitation is accepted; its owner may
            // always come back.
            let invited = room.owner == Some(cx.user)
                || self
                    .invites
                    .get(&cx.user)
                    .is_some_and(|l| l.iter().any(|i| i.room == room_id));
            if !invited {
                return fail(ErrorCode::Forbidden, PRIVATE_ROOM);
            }
        }
        self.room_cap(cx.user)?;
        self.request_join(cx, None, room_id, vec![cx.user], after);
        Ok(())
    }

    /// The `joined` answer: the room, its first members, and recent history (or the
    /// catch-up from `since`), bounded in size.
    pub(super) fn answer_join(
        &mut self,
        conn: ConnId,
        req: Option<&str>,
        room_id: RoomId,
        since: Option<i64>,
    ) {
        let room = &self.rooms[&room_id];
        let (history, complete, next) = match since {
            Some(s) => catch_up(room, s),
            None => {
                let recent: Vec<&MessageRow> = room.recent(self.cfg.join_history).collect();
                let n = within_reply_bytes(&recent, true);
                (recent[recent.len() - n..].to_vec(), true, None)
            }
        };
        // Whether anything older than this history exists (page it with `history`).
        let has_more = history.first().is_some_and(|first| {
            room.evicted_max > 0 || room.ring.front().is_some_and(|m| m.id < first.id)
        });
        let reader = self.sockets.get(&conn).map(|s| s.user);
        let mut v = self.joined_value(room_id, &history, complete, reader);
        v["has_more"] = json!(has_more);
        if let Some(after) = next {
            v["continue_after"] = json!(after);
        }
        self.send(conn, with_ref(v, req));
    }

    fn owned_cap(&self, user: UserId) -> Result<(), Fail> {
        let max = self.cfg.max_rooms_owned;
        if self
            .users
            .get(&user)
            .is_some_and(|u| u.owned + u.creating >= max)
        {
            let msg = format!("you own {max} rooms, the most one account may create");
            return fail(ErrorCode::Forbidden, msg);
        }
        Ok(())
    }

    /// Ends `user`'s membership of `name` (over WebSocket or HTTP). Returns the user's
    /// sockets, for the caller to tell with `left`.
    pub(super) fn leave(
        &mut self,
        user: UserId,
        name: &str,
        now: Now,
    ) -> Result<Vec<ConnId>, Fail> {
        let room_id = self.member_room(name, user)?;
        if room_id == GENERAL_ID {
            return fail(ErrorCode::BadRequest, "everyone stays in general");
        }
        let op = StoreOp::RemoveMember {
            room_id,
            user_id: user,
        };
        self.store(None, op);
        self.publish(Event::Left {
            room_id,
            user_id: user,
        });
        Ok(self.drop_member(room_id, user, now))
    }

    /// `user` is no longer a member (here or on another node): their sockets here leave
    /// the room. Answers those sockets, to be told.
    pub(super) fn drop_member(&mut self, room_id: RoomId, user: UserId, now: Now) -> Vec<ConnId> {
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.remove(&user);
            room.delivered.remove(&user);
        }
        let sockets = self
            .users
            .get(&user)
            .map(|u| u.conns.clone())
            .unwrap_or_default();
        if let Some(u) = self.users.get_mut(&user) {
            u.rooms.remove(&room_id);
        }
        for &c in &sockets {
            self.detach(c, user, room_id, now);
        }
        if self.online_elsewhere(user) {
            self.room_elsewhere(room_id, user, false, now);
        }
        sockets
    }

    pub(super) fn create_room(&mut self, cx: &Ctx, name: &str, private: bool) -> Result<(), Fail> {
        if !valid_room_name(name) {
            return fail(ErrorCode::BadRequest, BAD_ROOM_NAME);
        }
        if self.room_by_name.contains_key(name) || self.creating.contains_key(name) {
            return fail(
                ErrorCode::BadRequest,
                "a room with that name already exists",
            );
        }
        self.owned_cap(cx.user)?;
        self.room_cap(cx.user)?;
        let (id, room) = self.new_room(name, private, Some(cx.user));
        let after = AfterJoin::Joined {
            user: cx.user,
            since: None,
        };
        self.request_join(cx, Some(room), id, vec![cx.user], after);
        Ok(())
    }

    /// The owner invites someone into a private room: a pending invitation, which the
    /// invitee accepts by joining or turns down with `decline`. It is not a membership
    /// and does not count toward the invitee's cap.
    pub(super) fn invite(&mut self, cx: &Ctx, name: &str, who: &str) -> Result<(), Fail> {
        let room_id = self.member_room(name, cx.user)?;
        if self.rooms[&room_id].owner != Some(cx.user) {
            return fail(ErrorCode::Forbidden, "only the room's owner can invite");
        }
        let Some(invitee) = self.user_by_name(who) else {
            return fail(ErrorCode::BadRequest, format!("no user named {who:?}"));
        };
        let v = json!({
            "type": "invited",
            "room": name,
            "by": self.user_name(cx.user),
            "user": self.user_name(invitee),
        });
        let member = self.rooms[&room_id].is_member(invitee);
        let list = self.invites.entry(invitee).or_default();
        if !member && !list.iter().any(|i| i.room == room_id) {
            if list.len() >= MAX_INVITATIONS {
                let old = list.remove(0);
                let op = StoreOp::Decline {
                    room_id: old.room,
                    user_id: invitee,
                };
                self.store(None, op);
            }
            let list = self.invites.entry(invitee).or_default();
            list.push(Invite {
                room: room_id,
                by: cx.user,
            });
            let op = StoreOp::Invite {
                room_id,
                user_id: invitee,
                by: cx.user,
            };
            // Said to anyone only once it is on disk (`done::acked`).
            self.store(Some(cx.reply_to()), op);
            let mut sends: Vec<(ConnId, Value)> = self.users[&invitee]
                .conns
                .iter()
                .map(|c| (*c, v.clone()))
                .collect();
            sends.push((cx.conn, with_ref(v, cx.req.as_deref())));
            let event = Event::Invited {
                room_id,
                user_id: invitee,
                by: cx.user,
            };
            self.acks
                .entry(cx.conn)
                .or_default()
                .push_back((sends, Some(event)));
            return Ok(());
        }
        // Nothing to store (already invited, or a member): answered at once.
        self.send(cx.conn, with_ref(v, cx.req.as_deref()));
        Ok(())
    }

    pub(super) fn decline(&mut self, cx: &Ctx, name: &str) -> Result<(), Fail> {
        let Some(&room_id) = self.room_by_name.get(name) else {
            return fail(ErrorCode::NoSuchRoom, "no such invitation");
        };
        let list = self.invites.entry(cx.user).or_default();
        let before = list.len();
        list.retain(|i| i.room != room_id);
        if list.len() == before {
            return fail(ErrorCode::NoSuchRoom, "no such invitation");
        }
        let op = StoreOp::Decline {
            room_id,
            user_id: cx.user,
        };
        self.store(None, op);
        self.publish(Event::Declined {
            room_id,
            user_id: cx.user,
        });
        let v = json!({ "type": "declined", "room": name });
        self.send(cx.conn, with_ref(v, cx.req.as_deref()));
        Ok(())
    }

    /// `members`: the next page of a room's members (or only those online), by name.
    pub(super) fn members_page(
        &mut self,
        cx: &Ctx,
        name: &str,
        after: Option<&str>,
        online_only: bool,
    ) -> Result<(), Fail> {
        let room_id = self.readable(name, cx.user)?;
        let room = &self.rooms[&room_id];
        let after = after.unwrap_or("");
        let ids: Box<dyn Iterator<Item = &UserId>> = if online_only {
            Box::new(room.online.keys())
        } else {
            Box::new(room.members.keys())
        };
        let rest: Vec<&UserId> = ids.filter(|u| self.user_name(**u) > after).collect();
        let more = rest.len() > MEMBERS_PAGE;
        let page = self.first_names(rest.into_iter());
        let members: Vec<Value> = page
            .iter()
            .map(|(n, u)| {
                let last_seen = self.users[u].last_seen.map(rfc3339_ms);
                json!({
                    "name": n,
                    "online": room.online.contains_key(u),
                    "cursor": room.members.get(u).copied().unwrap_or(0),
                    "last_seen": last_seen,
                })
            })
            .collect();
        let v = json!({ "type": "members", "room": name, "members": members, "more": more });
        self.send(cx.conn, with_ref(v, cx.req.as_deref()));
        Ok(())
    }

    /// A room `user` may read: a member's, or any public one.
    fn readable(&self, name: &str, user: UserId) -> Result<RoomId, Fail> {
        match self.member_room(name, user) {
            Ok(id) => Ok(id),
            Err((ErrorCode::Forbidden, _)) if !self.rooms[&self.room_by_name[name]].private => {
                Ok(self.room_by_name[name])
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn ws_history(
        &mut self,
        cx: &Ctx,
        room: &str,
        before: Option<i64>,
        after: Option<i64>,
        limit: Option<usize>,
    ) -> Result<(), Fail> {
        let room_id = self.readable(room, cx.user)?;
        let limit = limit.unwrap_or(HISTORY_DEFAULT).clamp(1, HISTORY_MAX);
        let r = &self.rooms[&room_id];
        let page = match after {
            Some(a) => r.page_after(a, limit),
            None => r.page_before(before.unwrap_or(i64::MAX), limit),
        };
        if let Some((msgs, has_more)) = page {
            let n = within_reply_bytes(&msgs, after.is_none());
            let cut = n < msgs.len();
            let msgs = if after.is_none() {
                &msgs[msgs.len() - n..]
            } else {
                &msgs[..n]
            };
            let messages = self.messages(msgs.iter().copied(), cx.user);
            let v = json!({ "type": "history", "room": room, "messages": messages, "has_more": has_more || cut });
            self.send(cx.conn, with_ref(v, cx.req.as_deref()));
            return Ok(());
        }
        // Deep reads cost a reader thread real work: bound what one socket can queue.
        let socket = self.sockets.get_mut(&cx.conn).expect("handle_ws checked");
        if socket.pending_reads >= MAX_PENDING_READS {
            // A reader answers in milliseconds; ask again shortly.
            self.retry_ms = PENDING_READ_RETRY_MS;
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
                before: before.unwrap_or(i64::MAX),
                after,
                limit,
                reader: cx.user,
            },
        }));
        Ok(())
    }
}

/// Catch-up after `since`: what the ring holds after it, oldest first, within
/// `CATCH_UP_MAX` messages and `REPLY_MAX_BYTES`; complete only if that is everything.
/// Otherwise the third value says where the client continues with `history` + `after`:
/// after the last message sent when the reply was cut at its bound, or after `since`
/// itself when the ring no longer reaches back to it (then the newest part comes).
fn catch_up(room: &Room, since: i64) -> (Vec<&MessageRow>, bool, Option<i64>) {
    let (all, complete) = room.since(since, usize::MAX);
    if since < room.evicted_max {
        let start = all.len().saturating_sub(CATCH_UP_MAX);
        let tail = &all[start..];
        let n = within_reply_bytes(tail, true);
        return (tail[tail.len() - n..].to_vec(), false, Some(since));
    }
    let head = &all[..all.len().min(CATCH_UP_MAX)];
    let n = within_reply_bytes(head, false);
    let whole = complete && n == all.len();
    let next = (!whole).then(|| head[..n].last().map_or(since, |m| m.id));
    (head[..n].to_vec(), whole, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Reaction;

    fn row(text: &str) -> MessageRow {
        MessageRow {
            id: 1,
            text: text.into(),
            ..MessageRow::default()
        }
    }

    /// A message whose share of a reply is exactly `bytes`.
    fn costing(bytes: usize) -> MessageRow {
        row(&"a".repeat(bytes - 200))
    }

    fn fits(msgs: &[MessageRow], from_end: bool) -> usize {
        let refs: Vec<&MessageRow> = msgs.iter().collect();
        within_reply_bytes(&refs, from_end)
    }

    #[test]
    fn a_message_costs_its_text_as_json_escapes_it_and_its_fields() {
        assert_eq!(reply_bytes(&row("abc")), 203);
        // Two bytes for a quote, a backslash and the short escapes; six (\u00XX) for the
        // other control characters.
        assert_eq!(reply_bytes(&row("\"\\\n\r\t\u{8}\u{c}")), 200 + 7 * 2);
        assert_eq!(reply_bytes(&row("\u{1}\u{1f}")), 200 + 2 * 6);
        let mut m = row("a");
        m.client_id = Some("0123456789".into());
        assert_eq!(reply_bytes(&m), 201 + 10 * 6);
        m.reactions = vec![
            Reaction {
                emoji: "👍".into(),
                count: 3,
                users: vec![1, 2, 3],
            },
            Reaction {
                emoji: "🎉".into(),
                count: 1,
                users: vec![2],
            },
        ];
        assert_eq!(reply_bytes(&m), 261 + 2 * (2 * 4 + 16));
    }

    #[test]
    fn a_reply_takes_messages_up_to_exactly_its_budget() {
        let half = REPLY_MAX_BYTES / 2;
        assert_eq!(fits(&[costing(half), costing(half)], false), 2);
        assert_eq!(fits(&[costing(half), costing(half + 1)], false), 1);
        assert_eq!(fits(&[costing(half + 1), costing(half)], true), 1);
        // One message over the whole budget still goes, alone: a reply always moves on.
        let huge = [costing(REPLY_MAX_BYTES + 1), row("b")];
        assert_eq!(fits(&huge, false), 1);
        assert_eq!(fits(&huge[..1], true), 1);
        assert_eq!(fits(&[], false), 0);
    }

    #[test]
    fn a_reply_counts_from_the_end_it_keeps() {
        let tenth = REPLY_MAX_BYTES / 10;
        let msgs = [costing(8 * tenth), costing(3 * tenth), costing(3 * tenth)];
        assert_eq!(fits(&msgs, false), 1);
        assert_eq!(fits(&msgs, true), 2);
    }
}
