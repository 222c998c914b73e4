//! Accounts over HTTP: register, login, logout. Passwords are hashed and checked on the
//! password pool (an `Auth` effect), accounts and tokens stored by the writer; the Hub
//! answers when those come back.

use super::hub::{storage_unavailable, unauthorized, Effect, Hub, TokenInfo};
use crate::auth::pool::{AuthJob, AuthOp, POOL_DOWN};
use crate::auth::{hash_token, new_token, valid_password, valid_username};
use crate::config::Registration;
use crate::http::{Request, Response};
use crate::id::{ConnId, UserId};
use crate::ratelimit::Bucket;
use crate::store::event::Event;
use crate::store::{ReplyTo, StoreError, StoreOp, Via};
use crate::time::{rfc3339_ms, Now};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::IpAddr;

impl Hub {
    /// Takes one login/register attempt from the client's IP budget.
    pub(super) fn ip_limited(&mut self, ip: IpAddr, now: Now) -> Option<Response> {
        let (rate, burst) = self.auth_rate();
        let bucket = self
            .ip_buckets
            .entry(ip)
            .or_insert_with(|| Bucket::new(burst, now.mono));
        let wait = bucket.take(rate, burst, now.mono).err()?;
        self.stats.rate_limited += 1;
        let ms = wait.as_millis() as u64 + 1;
        let body = json!({
            "error": "rate_limited",
            "message": "too many attempts; slow down",
            "retry_after_ms": ms,
        });
        Some(Response::json(429, &body).with_header("Retry-After", ms.div_ceil(1000).to_string()))
    }

    fn auth_job(&mut self, conn: ConnId, op: AuthOp) {
        self.fx.push(Effect::Auth(AuthJob {
            reply: ReplyTo {
                conn,
                via: Via::Http,
            },
            op,
        }));
    }

    pub(super) fn register(&mut self, conn: ConnId, ip: IpAddr, req: &Request, now: Now) {
        if let Some(r) = self.ip_limited(ip, now) {
            return self.respond(conn, r);
        }
        let invite = match self.cfg.registration {
            Registration::Open => None,
            Registration::Closed => {
                let r = Response::error(
                    403,
                    "registration_closed",
                    "accounts are created by an admin here",
                );
                return self.respond(conn, r);
            }
            Registration::Invite => {
                let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                match body["invite"].as_str() {
                    Some(code) if !code.is_empty() && code.len() <= 128 => Some(hash_token(code)),
                    _ => {
                        let r = Response::error(
                            403,
                            "invite_required",
                            "registering here needs an invite code (\"invite\")",
                        );
                        return self.respond(conn, r);
                    }
                }
            }
        };
        let (username, password) = match credentials(req) {
            Ok(c) => c,
            Err(r) => return self.respond(conn, r),
        };
        if !valid_username(&username) {
            return self.respond(
                conn,
                Response::error(
                    400,
                    "invalid_username",
                    "usernames are 3-32 characters of letters, digits, '_', '.' and '-'",
                ),
            );
        }
        if !valid_password(&password) {
            return self.respond(
                conn,
                Response::error(400, "invalid_password", "passwords are 8 to 1024 bytes"),
            );
        }
        let lc = username.to_ascii_lowercase();
        let held = self
            .user_by_name
            .get(&lc)
            .and_then(|id| self.users.get(id))
            .is_some_and(|u| {
                // A deleted account's name is free after the quarantine, not before.
                u.deleted_at
                    .is_none_or(|at| now.wall_ms - at < crate::config::NAME_QUARANTINE_MS)
            });
        if held || self.pending_names.contains(&lc) {
            return self.respond(
                conn,
                Response::error(409, "username_taken", "that username is taken"),
            );
        }
        if let Some(h) = invite {
            self.invite_of.insert(lc.clone(), h);
        }
        self.pending_names.insert(lc);
        self.auth_job(conn, AuthOp::Hash { username, password });
    }

    pub(super) fn login(&mut self, conn: ConnId, ip: IpAddr, req: &Request, now: Now) {
        if let Some(r) = self.ip_limited(ip, now) {
            return self.respond(conn, r);
        }
        let (username, password) = match credentials(req) {
            Ok(c) => c,
            Err(r) => return self.respond(conn, r),
        };
        let user_agent = super::sessions::user_agent(req);
        if self.clustered() {
            // Another node may have registered the name an instant ago, or changed its
            // password, suspended or deleted it: the database decides, not memory.
            return self.look_up_login(conn, ip, username, password, user_agent);
        }
        self.login_as(conn, ip, username, password, user_agent, now);
    }

    /// The password check of a login, once the account is known here (or surely not).
    pub(super) fn login_as(
        &mut self,
        conn: ConnId,
        ip: IpAddr,
        username: String,
        password: String,
        user_agent: String,
        now: Now,
    ) {
        let user = self
            .user_by_name(&username)
            .and_then(|id| self.users.get(&id));
        let (user_id, phc) = match user {
            Some(u) => (Some(u.id), Some(u.pw_hash.clone())),
            None => (None, None),
        };
        if let Some(r) = user_id.and_then(|u| self.account_throttled(u, now)) {
            return self.respond(conn, r);
        }
        let attempt = super::sessions::LoginAttempt {
            user: user_id,
            ip,
            user_agent,
        };
        self.logins.insert(conn, attempt);
        self.auth_job(
            conn,
            AuthOp::Verify {
                user_id,
                password,
                phc,
            },
        );
    }

    pub(super) fn logout(&mut self, conn: ConnId, req: &Request) {
        let Some(token) = req.bearer() else {
            return self.respond(conn, unauthorized());
        };
        let hash = hash_token(token);
        let Some(user) = self.tokens.get(&hash).map(|t| t.user_id) else {
            return self.respond(conn, unauthorized());
        };
        // Revoked at once: every socket opened with this token goes now.
        self.end_sessions(user, |h| *h == hash);
        let reply = ReplyTo {
            conn,
            via: Via::Http,
        };
        self.store(Some(reply), StoreOp::RevokeToken { hash });
    }

    /// The password pool hashed a new user's password: store the account.
    pub(super) fn hashed(&mut self, to: ReplyTo, username: String, phc: Result<String, String>) {
        match phc {
            Ok(phc) => {
                let invite = self.invite_of.remove(&username.to_ascii_lowercase());
                let op = StoreOp::CreateUser {
                    username,
                    phc,
                    invite,
                };
                self.store(Some(to), op)
            }
            Err(e) => {
                log::error!("password hashing failed: {e}");
                self.invite_of.remove(&username.to_ascii_lowercase());
                self.pending_names.remove(&username.to_ascii_lowercase());
                let resp = if e == POOL_DOWN {
                    storage_unavailable()
                } else {
                    Response::error(500, "internal", "could not hash the password")
                };
                self.respond(to.conn, resp);
            }
        }
    }

    /// The password pool checked a login: on success, mint and store a token.
    pub(super) fn verified(
        &mut self,
        to: ReplyTo,
        result: Result<Option<UserId>, String>,
        now: Now,
    ) {
        let attempt = self.logins.remove(&to.conn);
        let user_id = match result {
            // Checked after the password, so a wrong one says nothing about the account.
            Ok(Some(u)) if self.users.get(&u).is_some_and(|u| u.suspended) => {
                return self.respond(
                    to.conn,
                    Response::error(403, "suspended", "this account is suspended"),
                )
            }
            Ok(Some(u)) => u,
            Ok(None) => {
                if let Some(u) = attempt.as_ref().and_then(|a| a.user) {
                    self.login_failed(u, now);
                }
                return self.respond(
                    to.conn,
                    Response::error(401, "invalid_credentials", "wrong username or password"),
                );
            }
            Err(e) => {
                log::error!("login could not be checked: {e}");
                return self.respond(to.conn, storage_unavailable());
            }
        };
        let token = new_token();
        let hash = hash_token(&token);
        let expires_at = now.wall_ms + self.cfg.token_ttl.as_millis() as i64;
        let op = StoreOp::CreateToken {
            token,
            hash,
            user_id,
            expires_at,
            ip: attempt
                .as_ref()
                .map(|a| a.ip.to_string())
                .unwrap_or_default(),
            user_agent: attempt.map(|a| a.user_agent).unwrap_or_default(),
        };
        self.store(Some(to), op);
    }

    pub(super) fn user_created(
        &mut self,
        to: ReplyTo,
        username: String,
        phc: String,
        result: Result<UserId, StoreError>,
    ) {
        let lc = username.to_ascii_lowercase();
        self.pending_names.remove(&lc);
        let resp = match result {
            Ok(id) => {
                self.user_by_name.insert(lc, id);
                self.users.insert(
                    id,
                    super::room::User {
                        id,
                        name: username.clone(),
                        pw_hash: phc,
                        last_seen: None,
                        conns: Vec::new(),
                        rooms: HashSet::new(),
                        owned: 0,
                        creating: 0,
                        admin: false,
                        suspended: false,
                        deleted_at: None,
                    },
                );
                self.join_general(id);
                self.publish(Event::User {
                    id,
                    username: username.clone(),
                });
                log::info!("user {id} registered");
                Response::json(201, &json!({ "id": id, "username": username }))
            }
            Err(StoreError::Conflict) => {
                Response::error(409, "username_taken", "that username is taken")
            }
            Err(StoreError::Forbidden) => Response::error(
                403,
                "invalid_invite",
                "that invite code is unknown, used up or expired",
            ),
            Err(_) => storage_unavailable(),
        };
        self.respond(to.conn, resp);
    }

    pub(super) fn token_created(
        &mut self,
        to: ReplyTo,
        token: String,
        user_id: UserId,
        expires_at: i64,
        result: Result<(), StoreError>,
        now: Now,
    ) {
        if result.is_err() {
            return self.respond(to.conn, storage_unavailable());
        }
        let hash = hash_token(&token);
        self.note_token(hash);
        self.tokens.insert(
            hash,
            TokenInfo {
                user_id,
                expires_at,
                last_used: now.wall_ms,
            },
        );
        self.publish(Event::Token {
            hash: super::remote::hex(&hash),
            user_id,
            expires_at,
        });
        let body = json!({
            "token": token,
            "username": self.user_name(user_id),
            "expires_at": rfc3339_ms(expires_at),
        });
        self.respond(to.conn, Response::json(200, &body));
    }
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
