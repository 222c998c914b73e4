//! Cluster mode in the Hub: what this node publishes after a commit, how it applies
//! other nodes' events, and the per-room order.
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
use crate::store::{MessageRow, NewRoom, ReadJob, ReadOp, ReplyTo, StoreError, Via};
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

/// Token hashes to remember, newest last, at most `RECENT_TOKENS` of them.
#[derive(Debug, Default)]
pub struct Recent {
    set: std::collections::HashSet<crate::auth::TokenHash>,
    order: std::collections::VecDeque<crate::auth::TokenHash>,
}

/// How many ended (or unknown) tokens a node remembers. The race they guard against (a
/// look-up or a late event against the writer's delete) lasts milliseconds, so this is
/// far more than enough; the bound keeps a flood of logouts from growing memory.
pub const RECENT_TOKENS: usize = 10_000;

impl Recent {
    pub fn insert(&mut self, h: crate::auth::TokenHash) {
        if self.set.insert(h) {
            self.order.push_back(h);
            if self.order.len() > RECENT_TOKENS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn contains(&self, h: &crate::auth::TokenHash) -> bool {
        self.set.contains(h)
    }

    pub fn remove(&mut self, h: &crate::auth::TokenHash) {
        if self.set.remove(h) {
            self.order.retain(|x| x != h);
        }
    }
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
    fn account_as_stored(&mut self, row: crate::store::load::UserRow) {
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

impl Hub {
    /// A WebSocket upgrade with a token this node does not know. In cluster mode the token
    /// may have been issued by another node an instant ago, before its event arrived:
    /// the database is asked (off the reactor) before the upgrade is refused. Each look-up
    /// takes from the address's login budget, so unknown tokens cannot flood the readers.
    /// `None`: refuse now.
    pub fn look_up_token(
        &mut self,
        conn: ConnId,
        ip: std::net::IpAddr,
        token: &str,
        now: Now,
    ) -> Option<Vec<Effect>> {
        if !self.token_unknown(token) || self.ip_limited(ip, now).is_some() {
            return None;
        }
        self.fx.push(Effect::Read(ReadJob {
            reply: ReplyTo {
                conn,
                via: Via::Http,
            },
            op: ReadOp::Token {
                hash: crate::auth::hash_token(token),
            },
        }));
        Some(self.take_fx())
    }

    /// Whether a request's token is one to ask the database about before refusing it:
    /// in cluster mode, one this node has not heard of.
    pub fn token_unknown(&self, token: &str) -> bool {
        if !self.clustered() || token.is_empty() {
            return false;
        }
        let h = crate::auth::hash_token(token);
        !self.tokens.contains_key(&h) && !self.revoked.contains(&h) && !self.not_found.contains(&h)
    }

    /// A login for a name this node does not know: the database is asked first (the
    /// account may come from another node an instant ago); `user_found` goes on.
    pub(super) fn look_up_login(
        &mut self,
        conn: ConnId,
        ip: std::net::IpAddr,
        username: String,
        password: String,
        user_agent: String,
    ) {
        let name = username.clone();
        self.login_lookups
            .insert(conn, (ip, username, password, user_agent));
        self.fx.push(Effect::Read(ReadJob {
            reply: ReplyTo {
                conn,
                via: Via::Http,
            },
            op: ReadOp::User { name },
        }));
    }

    /// The account looked up for a login (if the database has it) is learnt; the login
    /// goes on with the password check.
    pub(super) fn user_found(
        &mut self,
        to: ReplyTo,
        result: Result<Option<crate::store::load::UserRow>, StoreError>,
        now: Now,
    ) {
        let Some((ip, username, password, user_agent)) = self.login_lookups.remove(&to.conn) else {
            return;
        };
        match result {
            Ok(row) => {
                if let Some(row) = row {
                    self.account_as_stored(row);
                } else if let Some(id) = self.user_by_name(&username) {
                    // Deleted (or renamed away) elsewhere: this node must not let it in.
                    if let Some(u) = self.users.get_mut(&id) {
                        u.pw_hash.clear();
                    }
                }
                self.login_as(to.conn, ip, username, password, user_agent, now);
            }
            Err(_) => self.respond(to.conn, super::hub::storage_unavailable()),
        }
    }

    /// The look-up came back: what the database knows is learnt, and the upgrade tried
    /// again (`Effect::Upgrade`).
    pub(super) fn token_found(
        &mut self,
        to: ReplyTo,
        hash: crate::auth::TokenHash,
        result: Result<Option<(crate::store::load::UserRow, i64)>, StoreError>,
        now: Now,
    ) {
        // A session ended here, or an account suspended or deleted, while its row was
        // still there to read (the writer deletes after the Hub forgets) stays ended.
        let usable = |u: &crate::store::load::UserRow| u.deleted_at.is_none() && !u.suspended;
        match result {
            Ok(None) => self.not_found.insert(hash),
            Ok(Some((user, expires_at))) if usable(&user) && !self.revoked.contains(&hash) => {
                self.not_found.remove(&hash);
                let user_id = user.id;
                self.note_token(hash);
                self.users_added(vec![user]);
                self.tokens.entry(hash).or_insert(super::hub::TokenInfo {
                    user_id,
                    expires_at,
                    last_used: now.wall_ms,
                });
            }
            _ => {}
        }
        self.fx.push(Effect::Upgrade { conn: to.conn });
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
    const ROOM_ID_BLOCK: i64 = 1 << 16;
    let mut b = [0u8; 4];
    let r = getrandom::fill(&mut b).map_or(1, |_| u32::from_le_bytes(b));
    (1i64 << 32) + (r as i64 % (1 << 30)) * ROOM_ID_BLOCK
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
