//! HTTP routes: accounts, rooms, history, search, health, metrics, the web UI and the
//! WebSocket upgrade. Anything slow (argon2, SQLite) is handed to a worker and the
//! connection waits, parsing nothing more, until the completion answers it.

use super::conn::ConnState;
use super::{storage_unavailable, Server, TokenInfo};
use crate::auth::pool::{AuthDone, AuthJob, ConnRef};
use crate::auth::{hash_token, new_token, valid_password, valid_username};
use crate::chat::state::User;
use crate::http::{Request, Response};
use crate::metrics::Gauges;
use crate::ratelimit::Bucket;
use crate::store::reader::{ReadJob, ReplyVia};
use crate::store::{StoreCmd, StoreError};
use crate::time::rfc3339_ms;
use serde_json::{json, Value};
use std::collections::HashSet;

/// Paths and the methods they answer, for 405 with `Allow`.
const ROUTES: &[(&str, &str)] = &[
    ("/register", "POST"),
    ("/login", "POST"),
    ("/logout", "POST"),
    ("/rooms", "GET"),
    ("/search", "GET"),
    ("/healthz", "GET"),
    ("/metrics", "GET"),
    ("/admin/stats", "GET"),
    ("/ws", "GET"),
];

/// Default and largest page of history over HTTP and WebSocket.
pub const HISTORY_DEFAULT: usize = 50;
pub const HISTORY_MAX: usize = 200;
/// Default and largest number of search results.
pub const SEARCH_DEFAULT: usize = 20;
pub const SEARCH_MAX: usize = 100;

impl Server {
    pub(crate) fn route(&mut self, key: usize, req: Request) {
        let path = req.path.clone();
        let method = req.method.as_str();
        let resp = match (method, path.as_str()) {
            (_, "/ws") => return self.upgrade(key, req),
            ("POST", "/register") => return self.register(key, req),
            ("POST", "/login") => return self.login(key, req),
            ("POST", "/logout") => return self.logout(key, req),
            ("GET", "/healthz") => self.healthz(),
            ("GET", "/metrics") => Response::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(&self.gauges()).into_bytes(),
            ),
            ("GET", "/rooms") => match self.authenticate(&req) {
                Some(user) => self.list_rooms(user),
                None => unauthorized(),
            },
            ("GET", "/search") => return self.search(key, req),
            ("GET", "/admin/stats") => self.admin_stats(&req),
            ("GET", p) if p.starts_with("/rooms/") && p.ends_with("/messages") => {
                return self.http_history(key, req)
            }
            ("GET", p) => match crate::web::asset(p) {
                Some(asset) => asset,
                None => Response::error(404, "not_found", "no such page"),
            },
            (_, p) => match ROUTES.iter().find(|(rp, _)| *rp == p) {
                Some((_, allow)) => {
                    Response::error(405, "method_not_allowed", "method not allowed here")
                        .with_header("Allow", *allow)
                }
                None if p.starts_with("/rooms/") => {
                    Response::error(405, "method_not_allowed", "method not allowed here")
                        .with_header("Allow", "GET")
                }
                None => Response::error(404, "not_found", "no such page"),
            },
        };
        self.respond(key, resp);
    }

    /// Marks the connection as waiting for a worker's answer.
    fn wait(&mut self, key: usize) {
        if let ConnState::Http(h) = &mut self.conns[key].state {
            h.waiting = true;
        }
    }

    /// The user a request's bearer token belongs to.
    pub(crate) fn authenticate(&self, req: &Request) -> Option<i64> {
        self.token_user(req.bearer()?)
    }

    fn token_user(&self, token: &str) -> Option<i64> {
        let info = self.tokens.get(&hash_token(token))?;
        (info.expires_at > self.now_ms()).then_some(info.user_id)
    }

    /// Takes one login/register attempt from the client's IP budget.
    fn ip_limited(&mut self, key: usize) -> Option<Response> {
        let ip = self.conns[key].ip;
        let (rate, burst) = self.auth_rate();
        let now = self.now;
        let bucket = self
            .ip_buckets
            .entry(ip)
            .or_insert_with(|| Bucket::new(burst, now));
        match bucket.take(rate, burst, now) {
            Ok(()) => None,
            Err(wait) => {
                self.metrics.rate_limited += 1;
                Some(
                    Response::error(429, "rate_limited", "too many attempts; slow down")
                        .with_header("Retry-After", (wait.as_secs() + 1).to_string()),
                )
            }
        }
    }

    fn register(&mut self, key: usize, req: Request) {
        if let Some(r) = self.ip_limited(key) {
            return self.respond(key, r);
        }
        let (username, password) = match credentials(&req) {
            Ok(c) => c,
            Err(r) => return self.respond(key, r),
        };
        if !valid_username(&username) {
            return self.respond(
                key,
                Response::error(
                    400,
                    "invalid_username",
                    "usernames are 3-32 characters of letters, digits, '_', '.' and '-'",
                ),
            );
        }
        if !valid_password(&password) {
            return self.respond(
                key,
                Response::error(400, "invalid_password", "passwords are 8 to 1024 bytes"),
            );
        }
        let lc = username.to_ascii_lowercase();
        if self.user_by_name.contains_key(&lc) || self.pending_names.contains(&lc) {
            return self.respond(
                key,
                Response::error(409, "username_taken", "that username is taken"),
            );
        }
        self.pending_names.insert(lc);
        self.wait(key);
        let conn = self.conn_ref(key);
        let _ = self.auth.send(AuthJob::Hash {
            conn,
            username,
            password,
        });
    }

    fn login(&mut self, key: usize, req: Request) {
        if let Some(r) = self.ip_limited(key) {
            return self.respond(key, r);
        }
        let (username, password) = match credentials(&req) {
            Ok(c) => c,
            Err(r) => return self.respond(key, r),
        };
        let user = self
            .user_by_name
            .get(&username.to_ascii_lowercase())
            .and_then(|id| self.users.get(id));
        let (user_id, phc) = match user {
            Some(u) => (Some(u.id), Some(u.pw_hash.clone())),
            None => (None, None),
        };
        self.wait(key);
        let conn = self.conn_ref(key);
        let _ = self.auth.send(AuthJob::Verify {
            conn,
            user_id,
            password,
            phc,
        });
    }

    fn logout(&mut self, key: usize, req: Request) {
        let Some(token) = req.bearer() else {
            return self.respond(key, unauthorized());
        };
        let hash = hash_token(token);
        if self.tokens.remove(&hash).is_none() {
            return self.respond(key, unauthorized());
        }
        // Revoked at once: every socket opened with this token goes now.
        let victims: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(&c.state, ConnState::Ws(ws) if ws.token == hash))
            .map(|(k, _)| k)
            .collect();
        for k in victims {
            self.close_ws(k, 4001, "token revoked");
        }
        self.wait(key);
        let conn = self.conn_ref(key);
        if !self.store_cmd(StoreCmd::RevokeToken { conn, hash }) {
            self.respond(key, storage_unavailable());
        }
    }

    pub(crate) fn auth_done(&mut self, done: AuthDone) {
        match done {
            AuthDone::Hashed {
                conn,
                username,
                phc,
            } => match phc {
                Ok(phc) => {
                    let cmd = StoreCmd::CreateUser {
                        conn,
                        username: username.clone(),
                        phc,
                    };
                    if !self.store_cmd(cmd) {
                        self.pending_names.remove(&username.to_ascii_lowercase());
                        self.respond_to(conn, storage_unavailable());
                    }
                }
                Err(e) => {
                    log::error!("password hashing failed: {e}");
                    self.pending_names.remove(&username.to_ascii_lowercase());
                    self.respond_to(
                        conn,
                        Response::error(500, "internal", "could not hash the password"),
                    );
                }
            },
            AuthDone::Verified { conn, user_id, ok } => {
                let Some(user_id) = user_id.filter(|_| ok) else {
                    return self.respond_to(
                        conn,
                        Response::error(401, "invalid_credentials", "wrong username or password"),
                    );
                };
                let token = new_token();
                let hash = hash_token(&token);
                let expires_at = self.now_ms() + self.config.token_ttl.as_millis() as i64;
                let cmd = StoreCmd::CreateToken {
                    conn,
                    token,
                    hash,
                    user_id,
                    expires_at,
                };
                if !self.store_cmd(cmd) {
                    self.respond_to(conn, storage_unavailable());
                }
            }
        }
    }

    pub(crate) fn user_created(
        &mut self,
        conn: ConnRef,
        username: String,
        phc: String,
        result: Result<i64, StoreError>,
    ) {
        let lc = username.to_ascii_lowercase();
        self.pending_names.remove(&lc);
        let resp = match result {
            Ok(id) => {
                self.user_by_name.insert(lc, id);
                let mut rooms = HashSet::new();
                rooms.insert(crate::chat::handlers::GENERAL_ID);
                self.users.insert(
                    id,
                    User {
                        id,
                        name: username.clone(),
                        pw_hash: phc,
                        last_seen: None,
                        conns: Vec::new(),
                        rooms,
                    },
                );
                if let Some(g) = self.rooms.get_mut(&crate::chat::handlers::GENERAL_ID) {
                    g.members.insert(id, 0);
                }
                log::info!("user {id} registered");
                Response::json(201, &json!({ "id": id, "username": username }))
            }
            Err(StoreError::Conflict) => {
                Response::error(409, "username_taken", "that username is taken")
            }
            Err(_) => storage_unavailable(),
        };
        self.respond_to(conn, resp);
    }

    pub(crate) fn token_created(
        &mut self,
        conn: ConnRef,
        token: String,
        user_id: i64,
        expires_at: i64,
        result: Result<(), StoreError>,
    ) {
        if result.is_err() {
            return self.respond_to(conn, storage_unavailable());
        }
        self.tokens.insert(
            hash_token(&token),
            TokenInfo {
                user_id,
                expires_at,
            },
        );
        let username = self.users.get(&user_id).map_or("", |u| u.name.as_str());
        let body = json!({
            "token": token,
            "username": username,
            "expires_at": rfc3339_ms(expires_at),
        });
        self.respond_to(conn, Response::json(200, &body));
    }

    fn upgrade(&mut self, key: usize, req: Request) {
        if let ConnState::Http(h) = &mut self.conns[key].state {
            h.keep_alive = false;
        }
        let accept = match crate::ws::validate_upgrade(&req, &self.config.allowed_origins) {
            Ok(a) => a,
            Err(e) => {
                let mut r = Response::error(e.status(), e.code(), e.message());
                if e.status() == 426 {
                    r = r
                        .with_header("Sec-WebSocket-Version", "13")
                        .with_header("Upgrade", "websocket");
                }
                return self.respond(key, r);
            }
        };
        let token = req
            .query_param("token")
            .or_else(|| req.bearer().map(str::to_string));
        let Some(token) = token else {
            return self.respond(key, unauthorized());
        };
        let Some(user_id) = self.token_user(&token) else {
            return self.respond(key, unauthorized());
        };
        self.open_ws(key, user_id, hash_token(&token), accept);
    }

    fn healthz(&self) -> Response {
        if self.storage_ok {
            Response::json(200, &json!({ "status": "ok" }))
        } else {
            Response::json(
                503,
                &json!({ "status": "unavailable", "error": "overloaded", "message": "storage is failing" }),
            )
        }
    }

    pub(crate) fn gauges(&self) -> Gauges {
        let websockets = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Ws(_)))
            .count();
        Gauges {
            connections: self.conns.len(),
            websockets,
            users_online: self.users.values().filter(|u| !u.conns.is_empty()).count(),
            rooms: self.rooms.len(),
            storage_ok: self.storage_ok,
        }
    }

    fn list_rooms(&self, user: i64) -> Response {
        let mut rooms: Vec<Value> = self
            .rooms
            .values()
            .filter(|r| !r.private || r.is_member(user))
            .map(|r| {
                json!({
                    "name": r.name,
                    "private": r.private,
                    "member": r.is_member(user),
                    "members": r.members.len(),
                    "online": r.online.len(),
                    "last_id": r.last_id,
                    "unread": if r.is_member(user) { r.unread(user) } else { 0 },
                })
            })
            .collect();
        rooms.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Response::json(200, &Value::Array(rooms))
    }

    fn http_history(&mut self, key: usize, req: Request) {
        let Some(user) = self.authenticate(&req) else {
            return self.respond(key, unauthorized());
        };
        let name = &req.path["/rooms/".len()..req.path.len() - "/messages".len()];
        let name = crate::http::percent_decode(name).unwrap_or_default();
        let room_id = match self.readable_room(&name, user) {
            Ok(id) => id,
            Err(r) => return self.respond(key, r),
        };
        let before = match opt_num(&req, "before") {
            Ok(b) => b.map_or(i64::MAX, |b| b as i64),
            Err(r) => return self.respond(key, r),
        };
        let limit = match opt_num(&req, "limit") {
            Ok(l) => l
                .map_or(HISTORY_DEFAULT, |l| l as usize)
                .clamp(1, HISTORY_MAX),
            Err(r) => return self.respond(key, r),
        };
        let room = &self.rooms[&room_id];
        if let Some((msgs, has_more)) = room.page_before(before, limit) {
            let messages: Vec<Value> = msgs.iter().map(|m| self.message_value(m)).collect();
            let body = json!({ "messages": messages, "has_more": has_more });
            return self.respond(key, Response::json(200, &body));
        }
        self.wait(key);
        let conn = self.conn_ref(key);
        let _ = self.reads.send(ReadJob::History {
            conn,
            via: ReplyVia::Http,
            room: name,
            room_id,
            before,
            limit,
        });
    }

    /// A room `user` may read over HTTP, or the error response.
    fn readable_room(&self, name: &str, user: i64) -> Result<i64, Response> {
        let Some(&id) = self.room_by_name.get(name) else {
            return Err(Response::error(404, "no_such_room", "no such room"));
        };
        let room = &self.rooms[&id];
        if room.private && !room.is_member(user) {
            return Err(Response::error(
                403,
                "forbidden",
                "you are not a member of this room",
            ));
        }
        Ok(id)
    }

    fn search(&mut self, key: usize, req: Request) {
        let Some(user) = self.authenticate(&req) else {
            return self.respond(key, unauthorized());
        };
        let query = req.query_param("q").unwrap_or_default();
        if query.trim().is_empty() {
            return self.respond(
                key,
                Response::error(400, "bad_request", "the q parameter is required"),
            );
        }
        if query.len() > 500 {
            return self.respond(key, Response::error(400, "bad_request", "query too long"));
        }
        let limit = match opt_num(&req, "limit") {
            Ok(l) => l
                .map_or(SEARCH_DEFAULT, |l| l as usize)
                .clamp(1, SEARCH_MAX),
            Err(r) => return self.respond(key, r),
        };
        let room_ids: Vec<i64> = match req.query_param("room").filter(|r| !r.is_empty()) {
            Some(name) => match self.readable_room(&name, user) {
                Ok(id) => vec![id],
                Err(r) => return self.respond(key, r),
            },
            None => self
                .rooms
                .values()
                .filter(|r| !r.private || r.is_member(user))
                .map(|r| r.id)
                .collect(),
        };
        self.wait(key);
        let conn = self.conn_ref(key);
        let _ = self.reads.send(ReadJob::Search {
            conn,
            query,
            room_ids,
            limit,
        });
    }

    fn admin_stats(&mut self, req: &Request) -> Response {
        let Some(user) = self.authenticate(req) else {
            return unauthorized();
        };
        let name = self.users.get(&user).map_or("", |u| u.name.as_str());
        if !self.config.is_admin(name) {
            return Response::error(403, "forbidden", "admins only");
        }
        self.metrics.sample(self.now);
        let (stored, delivered) = self.metrics.rates();
        let g = self.gauges();
        let mut rooms: Vec<Value> = self
            .rooms
            .values()
            .map(|r| json!({ "name": r.name, "private": r.private, "members": r.members.len(), "online": r.online.len() }))
            .collect();
        rooms.sort_by(|a, b| b["online"].as_u64().cmp(&a["online"].as_u64()));
        let online: Vec<&str> = self
            .users
            .values()
            .filter(|u| !u.conns.is_empty())
            .map(|u| u.name.as_str())
            .collect();
        Response::json(
            200,
            &json!({
                "online_users": online,
                "connections": g.connections,
                "websockets": g.websockets,
                "rooms": rooms,
                "messages_stored_per_sec": stored,
                "deliveries_per_sec": delivered,
                "messages_stored_total": self.metrics.messages_stored,
                "deliveries_total": self.metrics.frames_delivered,
                "storage_ok": self.storage_ok,
            }),
        )
    }
}

fn unauthorized() -> Response {
    Response::error(401, "unauthorized", "missing, invalid or expired token")
        .with_header("WWW-Authenticate", "Bearer")
}

/// `{"username","password"}` from a JSON body.
fn credentials(req: &Request) -> Result<(String, String), Response> {
    let bad = || {
        Response::error(
            400,
            "bad_json",
            "expected a JSON object with string fields username and password",
        )
    };
    let v: Value = serde_json::from_slice(&req.body).map_err(|_| bad())?;
    match (v.get("username"), v.get("password")) {
        (Some(Value::String(u)), Some(Value::String(p))) => Ok((u.clone(), p.clone())),
        _ => Err(bad()),
    }
}

/// An optional non-negative integer query parameter.
fn opt_num(req: &Request, name: &str) -> Result<Option<u64>, Response> {
    match req.query_param(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            Response::error(
                400,
                "bad_request",
                &format!("{name} must be a non-negative integer"),
            )
        }),
    }
}
