//! Reactions: a member adds or takes back an emoji on a message; once stored, the room
//! hears `reacted` with that emoji's new count (one encoding for every receiver), and the
//! Hub's ring keeps who reacted so that pages and catch-up can mark each reader's own.

use super::effect::Except;
use super::hub::{fail, Effect, Fail, Hub};
use super::protocol::{valid_emoji, with_ref, ErrorCode, MAX_EMOJI_BYTES};
use super::room::Room;
use super::ws::Ctx;
use crate::config::{MAX_PENDING_READS, REACTORS_PAGE};
use crate::store::event::Event;
use crate::store::{
    Reacted, Reaction, ReactorsPage, ReadJob, ReadOp, ReplyTo, StoreError, StoreOp, Via,
};
use serde_json::json;

/// What a member reacting outside the message's room is told.
const NOT_IN_ROOM: &str = "you are not a member of this message's room";

impl Hub {
    pub(super) fn react(&mut self, cx: &Ctx, id: i64, emoji: &str, on: bool) -> Result<(), Fail> {
        check_emoji(emoji)?;
        // The store checks the message and the membership (in one transaction with the
        // write); memory may not hold a message older than the ring.
        let op = StoreOp::React {
            id,
            user: cx.user,
            emoji: emoji.to_string(),
            on,
        };
        self.store(Some(cx.reply_to()), op);
        Ok(())
    }

    pub(super) fn reactors(
        &mut self,
        cx: &Ctx,
        id: i64,
        emoji: &str,
        after: Option<&str>,
    ) -> Result<(), Fail> {
        check_emoji(emoji)?;
        let socket = self.sockets.get_mut(&cx.conn).expect("handle_ws checked");
        if socket.pending_reads >= MAX_PENDING_READS {
            return fail(ErrorCode::RateLimited, "too many reads in flight");
        }
        socket.pending_reads += 1;
        self.fx.push(Effect::Read(ReadJob {
            reply: cx.reply_to(),
            op: ReadOp::Reactors {
                id,
                emoji: emoji.to_string(),
                after: after.unwrap_or("").to_string(),
                limit: REACTORS_PAGE,
            },
        }));
        Ok(())
    }

    /// A reaction was stored (or refused): the ring learns it, the room hears it when it
    /// changed anything, and the requester is answered either way.
    pub(super) fn reacted(&mut self, to: ReplyTo, result: Result<Reacted, StoreError>) {
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                let (code, msg) = match e {
                    StoreError::NotFound => (ErrorCode::NoSuchMessage, "no such message"),
                    StoreError::Forbidden => (ErrorCode::Forbidden, NOT_IN_ROOM),
                    StoreError::Limit => (
                        ErrorCode::BadRequest,
                        "this message has as many different reactions as it can take",
                    ),
                    _ => (ErrorCode::Overloaded, "storage is unavailable; try again"),
                };
                return self.answer_error(&to, code, msg, 503);
            }
        };
        if r.changed {
            self.publish(Event::Reacted { reacted: r.clone() });
        }
        self.apply_reaction_event(r, Some(&to));
    }

    /// A reaction stored here (`to`: who asked) or on another node.
    pub(super) fn apply_reaction_event(&mut self, r: Reacted, to: Option<&ReplyTo>) {
        let user = self.user_name(r.user).to_string();
        let Some(room) = self.rooms.get_mut(&r.room_id) else {
            return;
        };
        apply_reaction(room, &r);
        let v = json!({
            "type": "reacted",
            "room": room.name,
            "id": r.id,
            "emoji": r.emoji,
            "count": r.count,
            "user": user,
            "on": r.on,
        });
        match to {
            Some(to) if r.changed => self.deliver_committed(r.room_id, v, to),
            Some(to) => self.answer_sender(v, to),
            None => self.fx.push(Effect::Broadcast {
                room: r.room_id,
                msg: v,
                except: Except::Nobody,
                ephemeral: false,
            }),
        }
    }

    /// A page of who reacted came back; it is shown only to members of the room.
    pub(super) fn reactors_read(
        &mut self,
        to: ReplyTo,
        id: i64,
        emoji: String,
        result: Result<ReactorsPage, StoreError>,
    ) {
        let reader = match self.sockets.get_mut(&to.conn) {
            Some(s) => {
                s.pending_reads = s.pending_reads.saturating_sub(1);
                s.user
            }
            None => return,
        };
        let (room_id, names, more) = match result {
            Ok(r) => r,
            Err(StoreError::NotFound) => {
                return self.answer_error(&to, ErrorCode::NoSuchMessage, "no such message", 404)
            }
            Err(_) => return self.answer_unavailable(&to, "storage is unavailable; try again"),
        };
        let Some(room) = self.rooms.get(&room_id).filter(|r| r.is_member(reader)) else {
            return self.answer_error(&to, ErrorCode::Forbidden, NOT_IN_ROOM, 403);
        };
        let v = json!({
            "type": "reactors",
            "room": room.name,
            "id": id,
            "emoji": emoji,
            "users": names,
            "more": more,
        });
        let req = match &to.via {
            Via::Ws { req } => req.as_deref(),
            Via::Http => None,
        };
        self.send(to.conn, with_ref(v, req));
    }
}

fn check_emoji(emoji: &str) -> Result<(), Fail> {
    if valid_emoji(emoji) {
        return Ok(());
    }
    fail(
        ErrorCode::BadRequest,
        format!("emoji must be a single emoji of at most {MAX_EMOJI_BYTES} bytes"),
    )
}

/// Keeps the ring's copy of a message in step with a stored reaction.
pub(super) fn apply_reaction(room: &mut Room, r: &Reacted) {
    let Some(m) = room.get_mut(r.id) else {
        return;
    };
    let pos = m.reactions.iter().position(|x| x.emoji == r.emoji);
    match (pos, r.on) {
        (Some(p), true) => {
            let x = &mut m.reactions[p];
            if !x.users.contains(&r.user) {
                x.users.push(r.user);
            }
            x.count = r.count;
        }
        (None, true) => m.reactions.push(Reaction {
            emoji: r.emoji.clone(),
            count: r.count,
            users: vec![r.user],
        }),
        (Some(p), false) => {
            let x = &mut m.reactions[p];
            x.users.retain(|u| *u != r.user);
            x.count = r.count;
            if x.count == 0 {
                m.reactions.remove(p);
            }
        }
        (None, false) => {}
    }
}
