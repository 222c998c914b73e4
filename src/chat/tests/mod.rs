//! Unit tests of the Hub, without sockets or threads: a `World` plays the reactor and the
//! workers. It feeds requests to the Hub, runs the store, reader and password effects
//! against a small in-memory fake, feeds their completions back, and records what each
//! connection would have been sent.

mod account_rules;
mod cluster_rules;
mod confirm_rules;
mod fake_reads;
mod file_rules;
mod http_rules;
mod limits_rules;
mod lookup_rules;
mod nodes_rules;
mod order_rules;
mod reaction_rules;
mod receipt_rules;
mod resync_rules;
mod rooms_http_rules;
mod rooms_rules;
mod snapshot_rules;
mod ws_rules;

use super::{Effect, Hub};
use crate::auth::pool::AuthOp;
use crate::config::Config;
use crate::http::{Request, Response, Route};
use crate::id::ConnId;
use crate::store::load::{RoomRow, Snapshot};
use crate::store::{Completion, MessageRow, Outcome, StoreError, StoreOp};
use crate::time::Now;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

pub(super) struct World {
    pub hub: Hub,
    pub now: Now,
    /// What each WebSocket was sent, in order.
    pub sent: HashMap<ConnId, Vec<Value>>,
    /// Sockets the Hub asked to close, with the code.
    pub closed: Vec<(ConnId, u16)>,
    /// The last HTTP response to each connection.
    pub responses: HashMap<ConnId, Response>,
    /// Store commands applied, in order.
    pub writes: Vec<StoreOp>,
    /// The fake database's messages and users.
    messages: Vec<MessageRow>,
    next_user: i64,
    next_serial: u64,
    /// When false, store commands fail as if the disk were full.
    pub storage_ok: bool,
    /// While `Some`, store commands wait here (a slow disk) until `release_writes`.
    pub held_writes: Option<Vec<crate::store::StoreCmd>>,
    /// Gap reads (`ReadOp::Seqs`) made, in cluster mode.
    pub seq_reads: usize,
    /// Sockets the Hub said may be read again.
    pub resumed: Vec<ConnId>,
    /// Rooms the fake database has.
    rooms_on_disk: std::collections::HashSet<i64>,
    /// Downloads the Hub allowed, by connection.
    pub downloads: HashMap<ConnId, crate::chat::Download>,
    /// Jobs the Hub gave the file worker.
    pub file_jobs: Vec<crate::files::FileJob>,
    /// The fake database's reactions: (message, user, emoji), in the order added.
    pub(super) reactions: Vec<(i64, i64, String)>,
    /// While `Some`, the password pool fails every job with this error.
    pub auth_error: Option<String>,
    /// The address HTTP requests come from.
    pub client_ip: IpAddr,
    /// Events published for other nodes (cluster mode), in order.
    pub published: Vec<crate::store::event::Envelope>,
    /// Upgrades the Hub said to try again (a token was looked up).
    pub upgrades: Vec<ConnId>,
    /// Tokens only the fake database knows (issued by another node): account, expiry.
    pub db_tokens: HashMap<crate::auth::TokenHash, (crate::store::load::UserRow, i64)>,
}

pub(super) fn config() -> Config {
    Config {
        ring_size: 8,
        join_history: 5,
        ..Config::default()
    }
}

/// The database of a fresh install: no users, the room `general`.
pub(super) fn snapshot() -> Snapshot {
    Snapshot {
        users: Vec::new(),
        tokens: Vec::new(),
        rooms: vec![RoomRow {
            id: 1,
            name: "general".into(),
            private: false,
            owner: None,
            recent: Vec::new(),
        }],
        members: Vec::new(),
        invitations: Vec::new(),
        delivered: Vec::new(),
        audit: Vec::new(),
        files: Vec::new(),
    }
}

impl World {
    pub fn new() -> World {
        World::with_config(config())
    }

    pub fn with_config(cfg: Config) -> World {
        World::restarted(snapshot(), cfg)
    }

    /// A server started on a database that already holds `snap`.
    pub fn restarted(snap: Snapshot, cfg: Config) -> World {
        let next_user = snap.users.iter().map(|u| u.id + 1).max().unwrap_or(1);
        let rooms_on_disk = snap.rooms.iter().map(|r| r.id).collect();
        let messages = snap.rooms.iter().flat_map(|r| r.recent.clone()).collect();
        World {
            hub: Hub::from_snapshot(snap, cfg),
            now: Now {
                mono: Instant::now(),
                wall_ms: 1_800_000_000_000,
            },
            sent: HashMap::new(),
            closed: Vec::new(),
            responses: HashMap::new(),
            writes: Vec::new(),
            messages,
            next_user,
            next_serial: 1,
            storage_ok: true,
            held_writes: None,
            seq_reads: 0,
            resumed: Vec::new(),
            rooms_on_disk,
            reactions: Vec::new(),
            downloads: HashMap::new(),
            file_jobs: Vec::new(),
            auth_error: None,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            published: Vec::new(),
            upgrades: Vec::new(),
            db_tokens: HashMap::new(),
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now.mono += Duration::from_millis(ms);
        self.now.wall_ms += ms as i64;
    }

    /// Lets time pass and runs what the Hub held back (coalesced presence).
    pub fn tick(&mut self, ms: u64) {
        self.advance(ms);
        let fx = self.hub.tick(self.now);
        self.run(fx);
    }

    pub fn conn(&mut self) -> ConnId {
        let id = ConnId {
            key: self.next_serial as usize,
            serial: self.next_serial,
        };
        self.next_serial += 1;
        id
    }

    /// Carries out effects the way the reactor and the workers would.
    pub fn run(&mut self, fx: Vec<Effect>) {
        let mut queue: std::collections::VecDeque<Effect> = fx.into();
        while let Some(e) = queue.pop_front() {
            match e {
                Effect::Send { conn, msg } => self.sent.entry(conn).or_default().push(msg),
                Effect::Broadcast {
                    room, msg, except, ..
                } => {
                    let to: Vec<ConnId> = self.hub.audience(room, except).collect();
                    for c in to {
                        self.sent.entry(c).or_default().push(msg.clone());
                    }
                }
                Effect::Respond { conn, resp } => {
                    self.responses.insert(conn, resp);
                }
                Effect::Resume { conn } => self.resumed.push(conn),
                Effect::Download {
                    conn,
                    resp,
                    download,
                } => {
                    self.responses.insert(conn, resp);
                    self.downloads.insert(conn, download);
                }
                Effect::File(job) => self.file_jobs.push(job),
                Effect::Publish(env) => self.published.push(env),
                Effect::Upgrade { conn, refusal } => {
                    self.upgrades.push(conn);
                    if let Some(resp) = refusal {
                        self.responses.insert(conn, resp);
                    }
                }
                Effect::ChunkedStart { conn, resp } => {
                    self.responses.insert(conn, resp);
                }
                Effect::Chunk { conn, bytes, last } => {
                    // The reactor asks for more at once (its output is never full here).
                    let resp = self.responses.get_mut(&conn).expect("a started response");
                    resp.body.extend_from_slice(&bytes);
                    if !last {
                        queue.extend(self.hub.export_more(conn));
                    }
                }
                Effect::ChunkedAbort { conn } => {
                    self.responses.remove(&conn);
                }
                Effect::Store(cmd) if self.held_writes.is_some() => {
                    self.held_writes.as_mut().unwrap().push(cmd);
                }
                Effect::Close { conn, code, .. } => {
                    self.closed.push((conn, code));
                    let more = self.hub.socket_closed(conn, self.now);
                    queue.extend(more);
                }
                Effect::Store(cmd) => queue.extend(self.write_now(cmd)),
                // The state read after a reconnect stays on its way: tests hand the Hub a
                // state of their own (`Outcome::State`) after what happens meanwhile.
                Effect::Read(job) if matches!(job.op, crate::store::ReadOp::State) => {}
                Effect::Read(job) => {
                    if matches!(job.op, crate::store::ReadOp::Seqs { .. }) {
                        self.seq_reads += 1;
                    }
                    let outcome = self.read(&job.op);
                    let c = Completion {
                        reply: Some(job.reply),
                        outcome,
                    };
                    queue.extend(self.hub.completed(c, self.now));
                }
                Effect::Auth(job) => {
                    let failed = self.auth_error.clone();
                    let outcome = match job.op {
                        AuthOp::Hash { username, password } => Outcome::Hashed {
                            username,
                            phc: match failed {
                                Some(e) => Err(e),
                                None => Ok(format!("fake${password}")),
                            },
                        },
                        AuthOp::Verify { .. } if failed.is_some() => {
                            Outcome::Verified(Err(failed.unwrap()))
                        }
                        AuthOp::Verify {
                            user_id,
                            password,
                            phc,
                        } => Outcome::Verified(Ok(
                            user_id.filter(|_| phc == Some(format!("fake${password}")))
                        )),
                    };
                    let c = Completion {
                        reply: Some(job.reply),
                        outcome,
                    };
                    queue.extend(self.hub.completed(c, self.now));
                }
            }
        }
    }

    /// Runs the oldest held store command only; what follows from it is held in turn.
    pub fn release_one(&mut self) {
        let cmd = self.held_writes.as_mut().expect("holding writes").remove(0);
        let fx = self.write_now(cmd);
        self.run(fx);
    }

    /// Applies a store command to the fake database: the Hub's answer to its completion.
    fn write_now(&mut self, cmd: crate::store::StoreCmd) -> Vec<Effect> {
        let outcome = self.write(&cmd.op);
        self.writes.push(cmd.op);
        let Some(reply) = cmd.reply else {
            return Vec::new();
        };
        let c = Completion {
            reply: Some(reply),
            outcome,
        };
        self.hub.completed(c, self.now)
    }

    /// Stops holding store commands and runs the held ones, in order; those listed in
    /// `fail` (by position) fail as if the disk were full.
    pub fn release_writes(&mut self, fail: &[usize]) {
        let cmds = self.held_writes.take().unwrap_or_default();
        for (i, cmd) in cmds.into_iter().enumerate() {
            let ok = self.storage_ok;
            self.storage_ok = ok && !fail.contains(&i);
            self.run(vec![Effect::Store(cmd)]);
            self.storage_ok = ok;
        }
    }

    fn write(&mut self, op: &StoreOp) -> Outcome {
        if !self.storage_ok {
            return op.failed();
        }
        match op {
            StoreOp::CreateUser { username, phc, .. } => {
                let id = self.next_user;
                self.next_user += 1;
                Outcome::UserCreated {
                    username: username.clone(),
                    phc: phc.clone(),
                    result: Ok(id),
                }
            }
            StoreOp::CreateToken {
                token,
                user_id,
                expires_at,
                ..
            } => Outcome::TokenCreated {
                token: token.clone(),
                user_id: *user_id,
                expires_at: *expires_at,
                result: Ok(()),
            },
            StoreOp::Insert {
                room_id,
                user_id,
                text,
                client_id,
                attachments,
            } => {
                if let Some(cid) = client_id {
                    let old = self.messages.iter().find(|m| {
                        m.user_id == *user_id && m.client_id.as_deref() == Some(cid.as_str())
                    });
                    if let Some(m) = old {
                        return Outcome::Inserted(Ok((m.clone(), true)));
                    }
                }
                let seq = 1 + self
                    .messages
                    .iter()
                    .filter(|m| m.room_id == *room_id)
                    .count();
                let row = MessageRow {
                    id: self.messages.len() as i64 + 1,
                    seq: seq as i64,
                    room_id: *room_id,
                    user_id: *user_id,
                    text: text.clone(),
                    ts: self.now.wall_ms,
                    client_id: client_id.clone(),
                    edited_at: None,
                    deleted: false,
                    reactions: Vec::new(),
                    attachments: attachments
                        .iter()
                        .filter_map(|id| self.hub.files.get(id).map(|f| f.file.clone()))
                        .collect(),
                };
                self.messages.push(row.clone());
                Outcome::Inserted(Ok((row, false)))
            }
            StoreOp::Join {
                create,
                room_id,
                users,
                after,
            } => {
                let result = if create.is_some() {
                    self.rooms_on_disk.insert(*room_id);
                    Ok(())
                } else if self.rooms_on_disk.contains(room_id) {
                    Ok(())
                } else {
                    Err(StoreError::NotFound)
                };
                Outcome::Joined {
                    create: create.clone(),
                    room_id: *room_id,
                    users: users.clone(),
                    after: after.clone(),
                    result,
                }
            }
            StoreOp::SetPassword {
                user_id, phc, keep, ..
            } => Outcome::PasswordSet {
                user_id: *user_id,
                phc: phc.clone(),
                keep: *keep,
                result: Ok(()),
            },
            StoreOp::Edit { id, author, text } => self.change(*id, Some(*author), Some(text)),
            StoreOp::Delete { id, author } => self.change(*id, *author, None),
            StoreOp::AddFile { file, .. } => Outcome::FileAdded {
                id: file.id.clone(),
                result: Ok(()),
            },
            StoreOp::React {
                id,
                user,
                emoji,
                on,
            } => Outcome::Reacted(self.react(*id, *user, emoji, *on)),
            _ => Outcome::Written(Ok(())),
        }
    }

    fn change(&mut self, id: i64, author: Option<i64>, text: Option<&str>) -> Outcome {
        let now = self.now.wall_ms;
        let Some(m) = self.messages.iter_mut().find(|m| m.id == id && !m.deleted) else {
            return Outcome::Changed(Err(StoreError::NotFound));
        };
        if author.is_some_and(|a| a != m.user_id) {
            return Outcome::Changed(Err(StoreError::Forbidden));
        }
        match text {
            Some(t) => {
                m.text = t.to_string();
                m.edited_at = Some(now);
            }
            None => {
                m.text.clear();
                m.deleted = true;
                self.reactions.retain(|r| r.0 != id);
            }
        }
        Outcome::Changed(Ok(m.clone()))
    }

    // ---- requests ------------------------------------------------------------------

    pub fn http(
        &mut self,
        route: Route,
        method: &str,
        path_query: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let resp = self.http_response(route, method, path_query, token, body);
        let body = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        (resp.status, body)
    }

    /// Like `http`, with the whole response (its headers too).
    pub fn http_response(
        &mut self,
        route: Route,
        method: &str,
        path_query: &str,
        token: Option<&str>,
        body: Value,
    ) -> Response {
        let conn = self.conn();
        let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
        let mut headers = Vec::new();
        if let Some(t) = token {
            headers.push(("authorization".to_string(), format!("Bearer {t}")));
        }
        let req = Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers,
            body: if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            },
            keep_alive: true,
            upload: None,
        };
        let fx = self
            .hub
            .handle_http(conn, self.client_ip, &route, &req, self.now);
        self.run(fx);
        self.responses.remove(&conn).expect("an HTTP answer")
    }

    pub fn register(&mut self, name: &str) -> (u16, Value) {
        let body = json!({"username": name, "password": "password1"});
        self.http(Route::Register, "POST", "/register", None, body)
    }

    /// Registers (if needed) and logs in; returns the token.
    pub fn login(&mut self, name: &str) -> String {
        if self.hub.user_by_name(name).is_none() {
            assert_eq!(self.register(name).0, 201);
        }
        let body = json!({"username": name, "password": "password1"});
        let (status, v) = self.http(Route::Login, "POST", "/login", None, body);
        assert_eq!(status, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// Logs `name` in and opens a WebSocket; returns it with its `hello` consumed.
    pub fn socket(&mut self, name: &str) -> ConnId {
        let token = self.login(name);
        self.socket_with(&token)
    }

    pub fn socket_with(&mut self, token: &str) -> ConnId {
        let conn = self.conn();
        let fx = self
            .hub
            .open_socket(conn, token, self.now)
            .expect("token accepted");
        self.run(fx);
        let hello = self.take(conn);
        assert_eq!(hello[0]["type"], "hello");
        conn
    }

    /// Sends one request frame; returns what this socket was sent because of it.
    pub fn ws(&mut self, conn: ConnId, msg: Value) -> Vec<Value> {
        let fx = self.hub.handle_ws(conn, &msg.to_string(), self.now);
        self.run(fx);
        self.take(conn)
    }

    /// Everything sent to `conn` since the last take.
    pub fn take(&mut self, conn: ConnId) -> Vec<Value> {
        self.sent.remove(&conn).unwrap_or_default()
    }

    /// The one frame of `kind` among `frames`.
    pub fn one<'a>(frames: &'a [Value], kind: &str) -> &'a Value {
        let found: Vec<&Value> = frames.iter().filter(|f| f["type"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind} in {frames:?}");
        found[0]
    }

    pub fn error_code(frames: &[Value]) -> String {
        World::one(frames, "error")["code"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Makes `name` an admin the way the database watcher would report it.
    pub fn make_admin(&mut self, name: &str) {
        let id = self.hub.user_by_name(name).unwrap();
        self.db_flags(vec![(id, true, false)]);
    }

    /// Reports accounts' (admin, suspended) flags as changed in the database by
    /// `chatterbox admin`, the way the database watcher does.
    pub fn db_flags(&mut self, flags: Vec<(i64, bool, bool)>) {
        let c = Completion {
            reply: None,
            outcome: Outcome::Flags(flags),
        };
        let fx = self.hub.completed(c, self.now);
        self.run(fx);
    }

    pub fn admin(&mut self, route: Route, path: &str, token: &str, body: Value) -> (u16, Value) {
        let conn = self.conn();
        let mut headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
        headers.push(("content-type".to_string(), "application/json".to_string()));
        let req = Request {
            method: "POST".into(),
            path: path.into(),
            query: String::new(),
            headers,
            body: body.to_string().into_bytes(),
            keep_alive: true,
            upload: None,
        };
        let fx = self.hub.handle_admin(conn, &route, &req, self.now);
        self.run(fx);
        let resp = self.responses.remove(&conn).expect("an HTTP answer");
        (
            resp.status,
            serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
        )
    }

    pub fn send(&mut self, conn: ConnId, room: &str, text: &str) -> Value {
        let got = self.ws(conn, json!({"type": "send", "room": room, "text": text}));
        World::one(&got, "message").clone()
    }
}
