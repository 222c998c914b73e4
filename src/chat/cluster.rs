//! Cluster mode in the Hub: what this node publishes after a commit, and the per-room
//! order (other nodes' events are applied in `remote.rs`; look-ups in `lookups.rs`).
//!
//! Every node shares one database and hears every other node's committed changes on the
//! bus. Order comes from the database: each message has its room's `seq`, contiguous and
//! in commit order. A node delivers a room's messages only in `seq` order, its own
//! included: a message whose predecessors it has not seen yet waits while the gap is read
//! from the database (`ReadOp::Seqs`), so every socket on every node sees one order and
//! the ring (which answers catch-up) has no holes. Within a room ids also increase with
//! `seq` (the id is taken while the room's counter row is locked), so the ring's id-based
//! paging holds.

use super::effect::{Effect, Except};
use super::hub::Hub;
use crate::id::{ConnId, RoomId, UserId};
use crate::store::event::{Envelope, Event};
use crate::store::{MessageRow, ReadJob, ReadOp, ReplyTo, StoreError, Via};
use crate::time::Now;
use std::collections::{BTreeMap, HashMap};

/// How many missing messages one gap read asks for.
pub const GAP_READ: usize = 256;

/// A room's delivery order on this node.
#[derive(Debug, Default)]
pub struct RoomOrder {
    /// The `seq` this node delivers next.
    pub next: i64,
    /// Messages that came early (a predecessor is missing), by `seq`, with the sender's
    /// request when it was this node's.
    pub pending: BTreeMap<i64, (MessageRow, Option<ReplyTo>)>,
    /// A gap read is on its way.
    pub filling: bool,
    /// ...and another is wanted once it is back (the bus reconnected meanwhile, so the
    /// one on its way may have read too early).
    pub again: bool,
    /// Edits and deletions (the stored rows) of messages not delivered here yet, by seq:
    /// applied when they are, so the message goes out as it now is.
    pub changed: HashMap<i64, MessageRow>,
    /// This node's inserts into the room not answered by the writer yet, per author. A
    /// gap read may return one of them before its own answer arrives; delivered then,
    /// its sender would get it twice (once without its `ref`). So a row read by an
    /// author with inserts in flight waits for them.
    pub inflight: HashMap<UserId, u32>,
}

/// What changed while a state read was on its way (`Hub::resync`).
#[derive(Debug, Default)]
pub struct Resync {
    pub joins: std::collections::HashSet<(RoomId, UserId)>,
    pub tokens: std::collections::HashSet<crate::auth::TokenHash>,
}

/// Gap reads answer no connection; this one is never a socket's.
const NOBODY: ConnId = ConnId {
    key: usize::MAX,
    serial: 0,
};

impl Hub {
    pub(super) fn clustered(&self) -> bool {
        self.cfg.bus.is_some()
    }

    /// Tells the other nodes (in cluster mode; otherwise nothing to do).
    pub(super) fn publish(&mut self, event: Event) {
        if self.clustered() {
            self.fx.push(Effect::Publish(Envelope {
                node: self.cfg.node.clone(),
                event,
            }));
        }
    }

    /// An insert is on its way to the writer (answers come back in the order sent).
    pub(super) fn insert_started(&mut self, room_id: RoomId, user: UserId) {
        if self.clustered() {
            self.inserting.push_back((room_id, user));
            let order = self.order.entry(room_id).or_default();
            *order.inflight.entry(user).or_default() += 1;
        }
    }

    /// The writer answered the oldest insert in flight (stored, a retry, or failed).
    /// Answers its room, whose held rows the caller lets go (`drain`) once the answered
    /// row, if any, has its place.
    pub(super) fn insert_answered(&mut self) -> Option<RoomId> {
        let (room_id, user) = self.inserting.pop_front()?;
        if let Some(order) = self.order.get_mut(&room_id) {
            if let Some(n) = order.inflight.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    order.inflight.remove(&user);
                }
            }
        }
        Some(room_id)
    }

    /// A message committed here (`to`: its sender's request) or elsewhere: delivered now
    /// if it is the room's next, else kept until the gap before it is filled.
    pub(super) fn sequence(&mut self, row: MessageRow, to: Option<ReplyTo>) {
        let room_id = row.room_id;
        let Some(next) = self.next_seq(room_id) else {
            return;
        };
        if row.seq < next {
            // Already delivered (a gap read got there before the event): the sender still
            // gets its answer.
            if let Some(to) = to {
                let v = self.message_value(&row);
                self.answer_sender(v, &to);
            }
            return;
        }
        let order = self.order.entry(room_id).or_default();
        let slot = order.pending.entry(row.seq).or_insert((row, None));
        if to.is_some() {
            slot.1 = to;
        }
        self.drain(room_id);
    }

    /// The room's next `seq`, set up from the ring the first time.
    fn next_seq(&mut self, room_id: RoomId) -> Option<i64> {
        let room = self.rooms.get(&room_id)?;
        let from_ring = room.ring.back().map_or(0, |m| m.seq) + 1;
        let order = self.order.entry(room_id).or_default();
        if order.next == 0 {
            order.next = from_ring;
        }
        Some(order.next)
    }

    /// Delivers what is next in order; asks the database for a gap that remains.
    pub(super) fn drain(&mut self, room_id: RoomId) {
        loop {
            let Some(order) = self.order.get_mut(&room_id) else {
                return;
            };
            let next = order.next;
            let held = match order.pending.get(&next) {
                None => break,
                Some((row, None)) => order.inflight.contains_key(&row.user_id),
                Some((_, Some(_))) => false,
            };
            if held {
                return;
            }
            let (mut row, to) = order.pending.remove(&next).expect("looked at");
            if let Some(change) = order.changed.remove(&row.seq) {
                patch(&mut row, &change);
            }
            order.next += 1;
            self.commit_message(row, to);
        }
        let Some(order) = self.order.get_mut(&room_id) else {
            return;
        };
        if !order.pending.is_empty() && !order.filling {
            order.filling = true;
            let after_seq = order.next - 1;
            self.read_seqs(room_id, after_seq);
        }
    }

    fn read_seqs(&mut self, room_id: RoomId, after_seq: i64) {
        self.fx.push(Effect::Read(ReadJob {
            reply: ReplyTo {
                conn: NOBODY,
                via: Via::Http,
            },
            op: ReadOp::Seqs {
                room: room_id,
                after_seq,
                limit: GAP_READ,
            },
        }));
    }

    /// Another node's edit or deletion of a message this node has not delivered yet (its
    /// event, or a predecessor's, is still on the way): kept with the message, which then
    /// goes out as it now is. False when the message was delivered (change it as usual).
    pub(super) fn change_before_delivery(&mut self, row: &MessageRow) -> bool {
        if !self.clustered() {
            return false;
        }
        let Some(next) = self.next_seq(row.room_id) else {
            return false;
        };
        if row.seq < next {
            return false;
        }
        let order = self
            .order
            .get_mut(&row.room_id)
            .expect("set up by next_seq");
        match order.pending.get_mut(&row.seq) {
            Some((pending, _)) => patch(pending, row),
            None => {
                order.changed.insert(row.seq, row.clone());
            }
        }
        true
    }

    /// A gap read came back: what it found is delivered in order.
    pub(super) fn seqs_read(
        &mut self,
        room_id: RoomId,
        result: Result<(Vec<MessageRow>, bool), StoreError>,
    ) {
        let Some(order) = self.order.get_mut(&room_id) else {
            return;
        };
        order.filling = false;
        let (rows, more) = match result {
            Ok(r) => r,
            Err(_) => {
                // Tried again when the room's next event arrives or the bus reconnects.
                log::warn!("cannot read room {room_id}'s missing messages");
                return;
            }
        };
        for row in rows {
            if row.seq >= order.next {
                // The database's row wins over one from the bus (which any client of
                // Redis could have published); a sender waiting for it stays.
                let to = order.pending.remove(&row.seq).and_then(|(_, to)| to);
                order.pending.insert(row.seq, (row, to));
            }
        }
        self.drain(room_id);
        let order = self.order.get_mut(&room_id).expect("drained, not removed");
        let again = std::mem::take(&mut order.again);
        if (more || again) && !order.filling {
            order.filling = true;
            let after_seq = order.next - 1;
            self.read_seqs(room_id, after_seq);
        }
    }

    /// The bus (re)connected: whatever was published while it was down is lost, so every
    /// room reads the messages it may have missed, and the rest of the state (accounts,
    /// sessions, rooms, memberships, invitations) is read again and followed.
    pub(super) fn bus_up(&mut self) {
        self.resync = Some(Resync::default());
        self.fx.push(Effect::Read(ReadJob {
            reply: ReplyTo {
                conn: NOBODY,
                via: Via::Http,
            },
            op: ReadOp::State,
        }));
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for room_id in rooms {
            let Some(next) = self.next_seq(room_id) else {
                continue;
            };
            let order = self.order.get_mut(&room_id).expect("set up by next_seq");
            if order.filling {
                order.again = true;
            } else {
                order.filling = true;
                self.read_seqs(room_id, next - 1);
            }
        }
    }

    /// The database's state after a bus outage (or at start): what this node missed is
    /// applied. Sessions the database no longer has are ended here (their sockets
    /// closed), memberships it no longer has are dropped, new accounts, sessions, rooms,
    /// memberships and invitations are learnt.
    pub(super) fn reconcile(
        &mut self,
        result: Result<Box<crate::store::load::Snapshot>, StoreError>,
        now: Now,
    ) {
        let learnt = self.resync.take().unwrap_or_default();
        let snap = match result {
            Ok(s) => *s,
            Err(_) => {
                log::warn!("cluster: cannot read the state after the bus reconnected");
                return;
            }
        };
        let known: Vec<_> = snap
            .users
            .iter()
            .filter(|u| !self.users.contains_key(&u.id))
            .cloned()
            .collect();
        self.users_added(known);
        let stored: std::collections::HashSet<crate::auth::TokenHash> =
            snap.tokens.iter().map(|t| t.0).collect();
        let gone: Vec<(UserId, crate::auth::TokenHash)> = self
            .tokens
            .iter()
            .filter(|(h, t)| {
                !stored.contains(*h) && !learnt.tokens.contains(*h) && t.expires_at > now.wall_ms
            })
            .map(|(h, t)| (t.user_id, *h))
            .collect();
        for (user, hash) in gone {
            self.drop_sessions(user, |h| *h == hash);
        }
        for (hash, user_id, expires_at, last_used) in snap.tokens {
            if self.revoked.contains(&hash) {
                // Ended here after the read was made.
                continue;
            }
            self.tokens.entry(hash).or_insert(super::hub::TokenInfo {
                user_id,
                expires_at,
                last_used,
            });
        }
        for r in snap.rooms {
            if !self.rooms.contains_key(&r.id) && !self.room_by_name.contains_key(&r.name) {
                self.room_by_name.insert(r.name.clone(), r.id);
                let room = super::room::Room::new(r.id, r.name, r.private, r.owner);
                self.rooms.insert(r.id, room);
            }
        }
        let members: std::collections::HashSet<(RoomId, UserId)> =
            snap.members.iter().map(|m| (m.0, m.1)).collect();
        for &(room_id, user) in &members {
            if self.rooms.get(&room_id).is_some_and(|r| !r.is_member(user)) {
                self.add_member(room_id, user, now);
            }
        }
        let dropped: Vec<(RoomId, UserId)> = self
            .rooms
            .values()
            .flat_map(|r| r.members.keys().map(move |u| (r.id, *u)))
            .filter(|m| !members.contains(m) && !learnt.joins.contains(m))
            .collect();
        for (room_id, user) in dropped {
            // Memberships this node has not stored yet are still on their way to the
            // writer; only what the database has dropped goes.
            if self
                .joining
                .get(&user)
                .is_some_and(|s| s.contains(&room_id))
            {
                continue;
            }
            let name = self.rooms[&room_id].name.clone();
            let v = serde_json::json!({ "type": "left", "room": name });
            for c in self.drop_member(room_id, user, now) {
                self.send(c, v.clone());
            }
        }
        let mut invites: HashMap<UserId, Vec<super::room::Invite>> = HashMap::new();
        for (room, user, by) in snap.invitations {
            invites
                .entry(user)
                .or_default()
                .push(super::room::Invite { room, by });
        }
        self.invites = invites;
        for f in snap.files {
            self.files.entry(f.file.id.clone()).or_insert(f);
        }
    }

    /// A session learnt while a state read is on its way must survive it.
    pub(super) fn note_token(&mut self, hash: crate::auth::TokenHash) {
        if let Some(r) = &mut self.resync {
            r.tokens.insert(hash);
        }
    }

    /// A message takes its place: the ring, every socket of the room here, its sender.
    pub(super) fn commit_message(&mut self, row: MessageRow, to: Option<ReplyTo>) {
        let v = self.message_value(&row);
        let room_id = row.room_id;
        // A message ends its author's typing there: receivers take it so, unasked.
        self.typing.remove(&(room_id, row.user_id));
        let files: Vec<String> = row.attachments.iter().map(|f| f.id.clone()).collect();
        self.posted_files(room_id, files);
        let cap = self.cfg.ring_size;
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.push(row, cap);
            match &to {
                Some(to) => self.deliver_committed(room_id, v, to),
                None => self.fx.push(Effect::Broadcast {
                    room: room_id,
                    msg: v,
                    except: Except::Nobody,
                    ephemeral: false,
                }),
            }
        } else if let Some(to) = to {
            self.answer_sender(v, &to);
        }
    }
}

/// A message as an edit or deletion left it.
fn patch(row: &mut MessageRow, change: &MessageRow) {
    row.text.clone_from(&change.text);
    row.edited_at = change.edited_at;
    row.deleted = change.deleted;
    if change.deleted {
        row.reactions.clear();
        row.attachments.clear();
    }
}

/// Where this node numbers the rooms it creates, in cluster mode: the Hub picks a room's
/// id before the store sees it, so nodes counting up from the same maximum would collide.
/// Each start takes a random block of `ROOM_ID_BLOCK` ids above 2^32 (two nodes pick the
/// same block with odds of 1 in 2^30; all below 2^53, so JavaScript reads them exactly).
pub fn room_id_block() -> RoomId {
    let mut b = [0u8; 4];
    let r = getrandom::fill(&mut b).map_or(1, |_| u32::from_le_bytes(b));
    block_of(r)
}

const ROOM_ID_BLOCK: i64 = 1 << 16;

/// The block a random `r` picks: one of 2^30 blocks starting at 2^32.
pub(super) fn block_of(r: u32) -> RoomId {
    (1i64 << 32) + (r as i64 % (1 << 30)) * ROOM_ID_BLOCK
}
