//! The Hub: every piece of chat state, and the rules shared by its entry points.
//!
//! It never sees a socket, a channel or a clock. The reactor calls an entry point with
//! the request and `now`; the Hub changes its records and returns what must happen as
//! `Effect`s, which the reactor carries out (queue output, send to a worker, close).

pub use super::effect::{Effect, Except};
use super::protocol::{error_json, ErrorCode};
use super::room::{Invite, Room, User};
use super::ws::Ctx;
use crate::auth::{hash_token, TokenHash};
use crate::config::{Config, GENERAL_ID, IP_BUCKETS_PRUNE_AT};
use crate::http::Response;
use crate::id::{ConnId, RoomId, UserId};
use crate::ratelimit::Bucket;
use crate::store::load::{AuditRow, Snapshot};
use crate::store::{AfterJoin, NewRoom, ReplyTo, StoreCmd, StoreOp, Via};
use crate::time::Now;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

/// A cached session token.
#[derive(Clone, Copy, Debug)]
pub struct TokenInfo {
    pub user_id: UserId,
    pub expires_at: i64,
    /// When it was last used as far as the store knows (written every `TOKEN_TOUCH_MS`).
    pub last_used: i64,
}

/// One authenticated WebSocket, as the Hub knows it.
pub(super) struct Socket {
    pub user: UserId,
    pub token: TokenHash,
    /// Rooms this socket is attached to.
    pub rooms: Vec<RoomId>,
    /// History reads sent to a reader thread and not yet answered.
    pub pending_reads: u8,
    /// Joins this socket asked for that the store has not confirmed. While any is on
    /// its way, the socket's later requests wait in `held`, in order.
    pub waiting: u32,
    pub held: std::collections::VecDeque<String>,
}

/// The budgets each user has, one bucket each (rates and bursts in `Config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Budget {
    /// send, dm, edit, delete.
    Message = 0,
    Typing = 1,
    /// join, leave, create_room, invite, decline, history, members, search, room lists.
    Action = 2,
    Seen = 3,
    /// `POST /files`.
    Upload = 4,
}

/// Per-user rate limit buckets, indexed by `Budget`.
pub(super) struct UserBuckets {
    pub buckets: [Bucket; 5],
}

/// Counters the Hub keeps for `/metrics`.
#[derive(Default, Debug, Clone, Copy)]
pub struct ChatStats {
    pub messages_stored: u64,
    pub rate_limited: u64,
}

pub struct Hub {
    pub(super) cfg: Config,
    pub(super) users: HashMap<UserId, User>,
    pub(super) user_by_name: HashMap<String, UserId>,
    /// Names being registered (hashing or storing), so two cannot race for one.
    pub(super) pending_names: HashSet<String>,
    pub(super) tokens: HashMap<TokenHash, TokenInfo>,
    pub(super) rooms: HashMap<RoomId, Room>,
    pub(super) room_by_name: HashMap<String, RoomId>,
    pub(super) next_room_id: RoomId,
    pub(super) sockets: HashMap<ConnId, Socket>,
    pub(super) user_buckets: HashMap<UserId, UserBuckets>,
    pub(super) ip_buckets: HashMap<IpAddr, Bucket>,
    /// Deletes by admins waiting for the store: message id → admin.
    pub(super) moderating: HashMap<i64, UserId>,
    /// The newest moderation actions, oldest first (`GET /admin/audit`).
    pub(super) audit: std::collections::VecDeque<AuditRow>,
    /// Pending invitations per invitee, oldest first.
    pub(super) invites: HashMap<UserId, Vec<Invite>>,
    /// Logins being checked by the password pool: who tried, from where.
    pub(super) logins: HashMap<ConnId, super::sessions::LoginAttempt>,
    /// Password changes on their way (check the old, hash the new, store).
    pub(super) password_changes: HashMap<ConnId, super::sessions::PasswordChange>,
    /// What to send once a socket's writes commit, in the order they were asked
    /// (the writer answers in order): each entry is (socket, frame) pairs.
    pub(super) acks: HashMap<ConnId, std::collections::VecDeque<Ack>>,
    /// Every stored file, by id.
    pub(super) files: HashMap<String, crate::store::FileRow>,
    /// Uploads on their way, by connection.
    pub(super) uploads: HashMap<ConnId, super::files::PendingUpload>,
    /// When the store is next asked to forget unattached files.
    pub(super) next_sweep: Option<Instant>,
    /// Exports being streamed, by connection.
    pub(super) exports: HashMap<ConnId, super::export::Export>,
    /// Account deletions on their way: the account, and whether its password was checked.
    pub(super) deletions: HashMap<ConnId, (UserId, bool)>,
    /// Password resets on their way: the account and the code's hash.
    pub(super) resets: HashMap<ConnId, (UserId, TokenHash)>,
    /// Invite codes (hashed) of registrations on their way, by lowercase name.
    pub(super) invite_of: HashMap<String, TokenHash>,
    /// Failed logins per account (`Config::login_failures_per_hour`).
    pub(super) login_failures: HashMap<UserId, Bucket>,
    /// Rooms whose creation the store has not confirmed yet: name → (id, room).
    pub(super) creating: HashMap<String, (RoomId, NewRoom)>,
    /// Memberships on their way to the store, per user (they count toward the cap).
    pub(super) joining: HashMap<UserId, HashSet<RoomId>>,
    /// The last presence announced per (room, user) within the last interval.
    pub(super) announced: HashMap<(RoomId, UserId), super::sockets::Announced>,
    /// When each entry of `announced` is due for a look: (time, room, user).
    pub(super) presence_due: BTreeSet<(Instant, RoomId, UserId)>,
    /// Who is typing where, as last told (`ws::typing`): only users with a socket in the
    /// room, cleared when their message commits and when their last socket leaves it.
    pub(super) typing: HashSet<(RoomId, UserId)>,
    /// Set at shutdown: no presence is announced for sockets closing then.
    pub(super) quiet: bool,
    /// How long the last budget refusal asked to wait, for its error's `retry_after_ms`.
    pub(super) retry_ms: u64,
    pub stats: ChatStats,
    /// Cluster mode: each room's delivery order (`cluster.rs`).
    pub(super) order: HashMap<RoomId, super::cluster::RoomOrder>,
    /// Cluster mode: the other nodes as last heard, and on which of them each user has
    /// sockets (`nodes.rs`); when this node next says it is alive.
    pub(super) nodes: HashMap<String, super::nodes::NodeSeen>,
    pub(super) elsewhere: HashMap<UserId, std::collections::BTreeSet<String>>,
    pub(super) next_heartbeat: Option<Instant>,
    /// Cluster mode: logins waiting for their account to be looked up, by connection:
    /// (address, name, password, user agent).
    pub(super) login_lookups: HashMap<ConnId, (IpAddr, String, String, String)>,
    /// Cluster mode: while a state read (`reconcile`) is on its way, the memberships and
    /// sessions learnt meanwhile, which that read may predate and must not undo.
    pub(super) resync: Option<super::cluster::Resync>,
    /// Cluster mode: sessions that ended here (or were told ended), so that neither a
    /// database look-up racing the writer's delete nor a late event brings one back.
    pub(super) revoked: super::lookups::Recent,
    /// Cluster mode: tokens the database did not have when looked up; refused at once
    /// after that, unless the news of the session arrives.
    pub(super) not_found: super::lookups::Recent,
    /// Cluster mode: this node's inserts the writer has not answered, oldest first.
    pub(super) inserting: std::collections::VecDeque<(RoomId, UserId)>,
    /// Effects of the entry point running now; taken when it returns.
    pub(super) fx: Vec<Effect>,
}

/// What a socket's write releases once committed: frames to send, and (cluster mode) the
/// event that tells the other nodes.
pub(super) type Ack = (Vec<(ConnId, Value)>, Option<crate::store::event::Event>);

/// A failed request: the protocol's error code and a message for people.
pub(super) type Fail = (ErrorCode, String);

pub(super) fn fail<T>(code: ErrorCode, msg: impl Into<String>) -> Result<T, Fail> {
    Err((code, msg.into()))
}

impl Hub {
    /// The Hub as the database left it.
    pub fn from_snapshot(snap: Snapshot, cfg: Config) -> Hub {
        let mut hub = Hub {
            cfg,
            users: HashMap::new(),
            user_by_name: HashMap::new(),
            pending_names: HashSet::new(),
            tokens: HashMap::new(),
            rooms: HashMap::new(),
            room_by_name: HashMap::new(),
            next_room_id: 1,
            sockets: HashMap::new(),
            user_buckets: HashMap::new(),
            ip_buckets: HashMap::new(),
            invites: HashMap::new(),
            audit: std::collections::VecDeque::new(),
            moderating: HashMap::new(),
            creating: HashMap::new(),
            logins: HashMap::new(),
            password_changes: HashMap::new(),
            login_failures: HashMap::new(),
            resets: HashMap::new(),
            deletions: HashMap::new(),
            exports: HashMap::new(),
            files: HashMap::new(),
            acks: HashMap::new(),
            uploads: HashMap::new(),
            next_sweep: None,
            invite_of: HashMap::new(),
            joining: HashMap::new(),
            announced: HashMap::new(),
            presence_due: BTreeSet::new(),
            typing: HashSet::new(),
            quiet: false,
            retry_ms: 0,
            stats: ChatStats::default(),
            order: HashMap::new(),
            inserting: Default::default(),
            nodes: HashMap::new(),
            login_lookups: HashMap::new(),
            resync: None,
            revoked: Default::default(),
            not_found: Default::default(),
            elsewhere: HashMap::new(),
            next_heartbeat: None,
            fx: Vec::new(),
        };
        for u in snap.users {
            hub.user_by_name
                .insert(u.username.to_ascii_lowercase(), u.id);
            hub.users.insert(
                u.id,
                User {
                    id: u.id,
                    name: u.username,
                    pw_hash: u.pw_hash,
                    last_seen: u.last_seen,
                    conns: Vec::new(),
                    rooms: HashSet::new(),
                    owned: 0,
                    creating: 0,
                    admin: u.admin,
                    suspended: u.suspended,
                    deleted_at: u.deleted_at,
                },
            );
        }
        for (hash, user_id, expires_at, last_used) in snap.tokens {
            hub.tokens.insert(
                hash,
                TokenInfo {
                    user_id,
                    expires_at,
                    last_used,
                },
            );
        }
        let ring = hub.cfg.ring_size;
        for r in snap.rooms {
            let mut room = Room::new(r.id, r.name.clone(), r.private, r.owner);
            // The snapshot holds one message more than the ring when older ones exist:
            // pushing it evicts it, and evicted_max says so.
            for m in r.recent {
                room.push(m, ring);
            }
            hub.next_room_id = hub.next_room_id.max(r.id + 1);
            if let Some(owner) = r.owner.and_then(|o| hub.users.get_mut(&o)) {
                owner.owned += 1;
            }
            hub.room_by_name.insert(r.name, r.id);
            hub.rooms.insert(r.id, room);
        }
        for (room_id, user_id, cursor) in snap.members {
            if let Some(room) = hub.rooms.get_mut(&room_id) {
                room.members.insert(user_id, cursor);
            }
            if let Some(u) = hub.users.get_mut(&user_id) {
                u.rooms.insert(room_id);
            }
        }
        for (room_id, user_id, id) in snap.delivered {
            if let Some(room) = hub.rooms.get_mut(&room_id) {
                room.delivered.insert(user_id, id);
            }
        }
        hub.audit.extend(snap.audit);
        hub.files = snap
            .files
            .into_iter()
            .map(|f| (f.file.id.clone(), f))
            .collect();
        for (room, user, by) in snap.invitations {
            hub.invites
                .entry(user)
                .or_default()
                .push(Invite { room, by });
        }
        if hub.clustered() {
            hub.next_room_id = super::cluster::room_id_block();
        }
        hub
    }

    pub(super) fn take_fx(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.fx)
    }

    // ---- what the reactor reads ----------------------------------------------------

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// This node's name in cluster mode.
    pub fn node(&self) -> Option<&str> {
        self.cfg.bus.as_ref().map(|_| self.cfg.node.as_str())
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn users_online(&self) -> usize {
        self.users.values().filter(|u| !u.conns.is_empty()).count()
    }

    pub fn online_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .users
            .values()
            .filter(|u| !u.conns.is_empty())
            .map(|u| u.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// (name, private, members, online) of every room.
    pub fn room_summaries(&self) -> Vec<(&str, bool, usize, usize)> {
        self.rooms
            .values()
            .map(|r| (r.name.as_str(), r.private, r.members.len(), r.online.len()))
            .collect()
    }

    /// The sockets a broadcast to `room` reaches.
    pub fn audience(&self, room: RoomId, except: Except) -> impl Iterator<Item = ConnId> + '_ {
        let skip: &[ConnId] = match except {
            Except::User(u) => self.users.get(&u).map_or(&[], |u| u.conns.as_slice()),
            _ => &[],
        };
        self.rooms
            .get(&room)
            .into_iter()
            .flat_map(|r| r.conns.iter().copied())
            .filter(move |c| except != Except::Conn(*c) && !skip.contains(c))
    }

    /// The user a bearer token belongs to, if it is valid now.
    pub fn token_user(&self, token: &str, now: Now) -> Option<UserId> {
        self.token_info(&hash_token(token), now).map(|t| t.user_id)
    }

    pub(super) fn token_info(&self, hash: &TokenHash, now: Now) -> Option<TokenInfo> {
        let info = self.tokens.get(hash)?;
        (info.expires_at > now.wall_ms).then_some(*info)
    }

    pub fn is_admin(&self, user: UserId) -> bool {
        self.users.get(&user).is_some_and(|u| u.admin)
    }

    /// Whether a socket's token still holds (checked before each ping).
    pub fn socket_token_valid(&self, conn: ConnId, now: Now) -> bool {
        self.sockets
            .get(&conn)
            .is_some_and(|s| self.token_info(&s.token, now).is_some())
    }

    /// Drops per-IP login buckets that have refilled, once there are many.
    pub fn prune(&mut self, now: Now) {
        if self.ip_buckets.len() > IP_BUCKETS_PRUNE_AT {
            let (rate, burst) = self.auth_rate();
            self.ip_buckets
                .retain(|_, b| !b.is_full(rate, burst, now.mono));
        }
    }

    /// From now on, closing sockets announce no presence (the server is stopping).
    pub fn begin_shutdown(&mut self) {
        self.quiet = true;
    }

    // ---- shared rules --------------------------------------------------------------

    pub(super) fn user_name(&self, id: UserId) -> &str {
        self.users.get(&id).map_or("", |u| u.name.as_str())
    }

    /// The live account with this name (a deleted one is nobody).
    pub(super) fn user_by_name(&self, name: &str) -> Option<UserId> {
        let id = self.user_by_name.get(&name.to_ascii_lowercase()).copied()?;
        self.users
            .get(&id)
            .is_some_and(|u| u.deleted_at.is_none())
            .then_some(id)
    }

    pub(super) fn auth_rate(&self) -> (f64, f64) {
        (self.cfg.auth_per_minute / 60.0, self.cfg.auth_per_minute)
    }

    /// Takes one action of `kind` from the user's budget.
    pub(super) fn rate(&mut self, user: UserId, kind: Budget, now: Now) -> Result<(), Fail> {
        let c = &self.cfg;
        let (rate, burst) = match kind {
            Budget::Message => (c.msg_rate, c.msg_burst),
            Budget::Typing => (c.typing_rate, c.typing_rate),
            Budget::Action => (c.action_rate, c.action_burst),
            Budget::Seen => (c.seen_rate, c.seen_burst),
            Budget::Upload => (c.uploads_per_minute / 60.0, c.uploads_per_minute),
        };
        // Cluster mode: with sockets on several nodes, each allows its share.
        let share = self.budget_share(user);
        let (rate, burst) = (rate * share, (burst * share).max(1.0));
        let c = &self.cfg;
        let b = self
            .user_buckets
            .entry(user)
            .or_insert_with(|| UserBuckets {
                buckets: [
                    Bucket::new(c.msg_burst, now.mono),
                    Bucket::new(c.typing_rate, now.mono),
                    Bucket::new(c.action_burst, now.mono),
                    Bucket::new(c.seen_burst, now.mono),
                    Bucket::new(c.uploads_per_minute, now.mono),
                ],
            });
        let result = b.buckets[kind as usize].take(rate, burst, now.mono);
        result.or_else(|wait| {
            let ms = wait.as_millis() as u64 + 1;
            self.retry_ms = ms;
            fail(
                ErrorCode::RateLimited,
                format!("slow down; try again in {ms} ms"),
            )
        })
    }

    /// Reserves a name and an id for a room on its way to the store; it exists in
    /// memory only once the store confirms it (`done::joined`).
    pub(super) fn new_room(
        &mut self,
        name: &str,
        private: bool,
        owner: Option<UserId>,
    ) -> (RoomId, NewRoom) {
        let id = self.next_room_id;
        self.next_room_id += 1;
        let room = NewRoom {
            name: name.to_string(),
            private,
            owner,
        };
        self.creating.insert(room.name.clone(), (id, room.clone()));
        if let Some(u) = owner.and_then(|o| self.users.get_mut(&o)) {
            u.creating += 1;
        }
        (id, room)
    }

    /// Asks the store to add `users` to a room (creating it first with `create`). The
    /// socket that asked handles nothing more until the store answers, so a client's
    /// next request (a `send` right after `join`) sees the membership.
    pub(super) fn request_join(
        &mut self,
        cx: &Ctx,
        create: Option<NewRoom>,
        room_id: RoomId,
        users: Vec<UserId>,
        after: AfterJoin,
    ) {
        if matches!(after, AfterJoin::Joined { .. }) {
            // Counted toward the cap while on their way (direct conversations never are).
            for u in &users {
                self.joining.entry(*u).or_default().insert(room_id);
            }
        }
        if let Some(s) = self.sockets.get_mut(&cx.conn) {
            s.waiting += 1;
        }
        let op = StoreOp::Join {
            create,
            room_id,
            users,
            after,
        };
        self.store(Some(cx.reply_to()), op);
    }

    /// Refuses a membership past the per-user cap.
    /// Direct conversations do not count: others start them, so they must not be able
    /// to fill someone's rooms.
    pub(super) fn room_cap(&self, user: UserId) -> Result<(), Fail> {
        let joining = self.joining.get(&user).map_or(0, HashSet::len);
        let n = joining
            + self.users.get(&user).map_or(0, |u| {
                u.rooms
                    .iter()
                    .filter(|r| {
                        self.rooms
                            .get(r)
                            .is_some_and(|r| !r.name.starts_with("dm:"))
                    })
                    .count()
            });
        let max = self.cfg.max_memberships;
        if n >= max {
            return fail(
                ErrorCode::Forbidden,
                format!("you are in {max} rooms, the most one account may be in; leave one first"),
            );
        }
        Ok(())
    }

    /// Makes `user` a member and attaches all their open sockets (once the store has
    /// confirmed the membership).
    pub(super) fn add_member(&mut self, room_id: RoomId, user: UserId, now: Now) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if room.members.contains_key(&user) {
            return;
        }
        room.members.insert(user, 0);
        if let Some(r) = &mut self.resync {
            r.joins.insert((room_id, user));
        }
        if let Some(list) = self.invites.get_mut(&user) {
            list.retain(|i| i.room != room_id);
        }
        let Some(u) = self.users.get_mut(&user) else {
            return;
        };
        u.rooms.insert(room_id);
        for c in u.conns.clone() {
            self.attach(c, user, room_id, now);
        }
        if self.online_elsewhere(user) {
            self.room_elsewhere(room_id, user, true, now);
        }
    }

    pub(super) fn store(&mut self, reply: Option<ReplyTo>, op: StoreOp) {
        self.fx.push(Effect::Store(StoreCmd { reply, op }));
    }

    pub(super) fn send(&mut self, conn: ConnId, msg: Value) {
        self.fx.push(Effect::Send { conn, msg });
    }

    pub(super) fn respond(&mut self, conn: ConnId, resp: Response) {
        self.fx.push(Effect::Respond { conn, resp });
    }

    /// Answers a failed request in the form it came in.
    pub(super) fn answer_error(&mut self, to: &ReplyTo, code: ErrorCode, msg: &str, status: u16) {
        if code == ErrorCode::RateLimited {
            self.stats.rate_limited += 1;
        }
        match &to.via {
            Via::Ws { req } => {
                let v = self.error_value(code, msg, req.as_deref());
                self.send(to.conn, v)
            }
            Via::Http => self.respond(to.conn, Response::error(status, code.as_str(), msg)),
        }
    }

    /// An `error` event; a `rate_limited` one says how long to wait (`retry_after_ms`).
    pub(super) fn error_value(&self, code: ErrorCode, msg: &str, req: Option<&str>) -> Value {
        let mut v = error_json(code, msg, req);
        if code == ErrorCode::RateLimited {
            v["retry_after_ms"] = json!(self.retry_ms.max(1));
        }
        v
    }

    /// The `general` room's id, for a user who has just registered.
    pub(super) fn join_general(&mut self, user: UserId) {
        if let Some(g) = self.rooms.get_mut(&GENERAL_ID) {
            g.members.insert(user, 0);
        }
        if let Some(u) = self.users.get_mut(&user) {
            u.rooms.insert(GENERAL_ID);
        }
    }
}

/// Who a deleted account's messages are shown as.
pub(super) const DELETED_USER: &str = "deleted user";

pub(super) fn unauthorized() -> Response {
    Response::error(401, "unauthorized", "missing, invalid or expired token")
        .with_header("WWW-Authenticate", "Bearer")
}

pub(super) fn storage_unavailable() -> Response {
    Response::error(503, "overloaded", "storage is unavailable; try again")
}
