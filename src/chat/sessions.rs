//! An account's sessions and password: the sessions list, ending one session or all of
//! them, changing the password (which ends every other session), and the per-account
//! throttle on failed logins that stands beside the per-address one.

use super::hub::{storage_unavailable, unauthorized, Effect, Hub};
use crate::auth::pool::{AuthJob, AuthOp};
use crate::auth::{hash_token, valid_password, TokenHash};
use crate::config::{MAX_USER_AGENT_BYTES, TOKEN_TOUCH_MS};
use crate::http::{Request, Response};
use crate::id::{ConnId, UserId};
use crate::ratelimit::Bucket;
use crate::store::event::Event;
use crate::store::{session_id, ReadJob, ReadOp, ReplyTo, SessionRow, StoreError, StoreOp, Via};
use crate::time::{rfc3339_ms, Now};
use serde_json::{json, Value};
use std::net::IpAddr;

/// A login the password pool is checking.
pub(super) struct LoginAttempt {
    /// The account it names, if there is one.
    pub user: Option<UserId>,
    pub ip: IpAddr,
    pub user_agent: String,
}

/// A password change: first the old password is checked, then the new one hashed.
pub(super) struct PasswordChange {
    pub user: UserId,
    /// The token that asked: it stays valid, every other one ends.
    pub keep: TokenHash,
    pub new: String,
    pub old_checked: bool,
}

fn bad_reset_code() -> Response {
    Response::error(
        403,
        "invalid_code",
        "that reset code is wrong, used or expired; ask an admin for a new one",
    )
}

pub(super) fn http(conn: ConnId) -> ReplyTo {
    ReplyTo {
        conn,
        via: Via::Http,
    }
}

/// The request's `User-Agent`, cut to `MAX_USER_AGENT_BYTES` on a character boundary.
pub(super) fn user_agent(req: &Request) -> String {
    let ua = req.header("user-agent").unwrap_or("");
    let mut end = ua.len().min(MAX_USER_AGENT_BYTES);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].to_string()
}

impl Hub {
    fn failure_rate(&self) -> (f64, f64) {
        let per_hour = self.cfg.login_failures_per_hour;
        (per_hour / 3600.0, per_hour)
    }

    /// 429 when this account has used up its failed logins (whoever tries, from wherever).
    pub(super) fn account_throttled(&self, user: UserId, now: Now) -> Option<Response> {
        let (rate, burst) = self.failure_rate();
        let wait = self
            .login_failures
            .get(&user)?
            .wait(rate, burst, now.mono)?;
        let ms = wait.as_millis() as u64 + 1;
        let body = json!({
            "error": "rate_limited",
            "message": "too many failed logins for this account; try again later",
            "retry_after_ms": ms,
        });
        Some(Response::json(429, &body).with_header("Retry-After", ms.div_ceil(1000).to_string()))
    }

    /// Counts one failed login against the account.
    pub(super) fn login_failed(&mut self, user: UserId, now: Now) {
        let (rate, burst) = self.failure_rate();
        let b = self
            .login_failures
            .entry(user)
            .or_insert_with(|| Bucket::new(burst, now.mono));
        let _ = b.take(rate, burst, now.mono);
    }

    /// Notes that a token was used; the store hears of it at most every `TOKEN_TOUCH_MS`.
    pub(super) fn touch_token(&mut self, hash: TokenHash, now: Now) {
        let Some(info) = self.tokens.get_mut(&hash) else {
            return;
        };
        if now.wall_ms - info.last_used >= TOKEN_TOUCH_MS {
            info.last_used = now.wall_ms;
            self.store(
                None,
                StoreOp::TouchToken {
                    hash,
                    at: now.wall_ms,
                },
            );
        }
    }

    /// Ends sessions of `user` in memory (those `which` picks): their sockets close with
    /// 4001 now. Returns how many ended.
    pub(super) fn end_sessions(
        &mut self,
        user: UserId,
        which: impl Fn(&TokenHash) -> bool,
    ) -> usize {
        let ended = self.drop_sessions(user, which);
        if !ended.is_empty() {
            let hashes = ended.iter().map(super::remote::hex).collect();
            self.publish(Event::Revoked {
                user_id: user,
                hashes,
            });
        }
        ended.len()
    }

    /// Forgets the user's sessions that `which` picks and closes their sockets here.
    pub(super) fn drop_sessions(
        &mut self,
        user: UserId,
        which: impl Fn(&TokenHash) -> bool,
    ) -> Vec<TokenHash> {
        let ended: Vec<TokenHash> = self
            .tokens
            .iter()
            .filter(|(h, t)| t.user_id == user && which(h))
            .map(|(h, _)| *h)
            .collect();
        for h in &ended {
            self.tokens.remove(h);
            self.revoked.insert(*h);
        }
        let mut victims: Vec<ConnId> = self
            .sockets
            .iter()
            .filter(|(_, s)| s.user == user && ended.contains(&s.token))
            .map(|(c, _)| *c)
            .collect();
        victims.sort_unstable();
        for c in victims {
            self.fx.push(Effect::Close {
                conn: c,
                code: 4001,
                reason: "token revoked",
            });
        }
        ended
    }

    /// The bearer token's hash and user, with one action taken from the user's budget.
    pub(super) fn session_user(
        &mut self,
        conn: ConnId,
        req: &Request,
        now: Now,
    ) -> Option<(UserId, TokenHash)> {
        let hash = hash_token(req.bearer()?);
        let user = self.http_user(conn, req, now)?;
        Some((user, hash))
    }

    /// `GET /account/sessions`.
    pub(super) fn list_sessions(&mut self, conn: ConnId, req: &Request, now: Now) {
        let Some((user, current)) = self.session_user(conn, req, now) else {
            return;
        };
        self.fx.push(Effect::Read(ReadJob {
            reply: http(conn),
            op: ReadOp::Sessions {
                user_id: user,
                current,
            },
        }));
    }

    pub(super) fn sessions_read(
        &mut self,
        to: ReplyTo,
        result: Result<Vec<SessionRow>, StoreError>,
    ) {
        let resp = match result {
            Ok(rows) => {
                let list: Vec<Value> = rows
                    .iter()
                    .map(|s| {
                        json!({
                            "id": s.id,
                            "created_at": s.created_at.map(rfc3339_ms),
                            "last_used": s.last_used.map(rfc3339_ms),
                            "ip": s.ip,
                            "user_agent": s.user_agent,
                            "current": s.current,
                        })
                    })
                    .collect();
                Response::json(200, &json!({ "sessions": list }))
            }
            Err(_) => storage_unavailable(),
        };
        self.respond(to.conn, resp);
    }

    /// `DELETE /account/sessions/ID`: ends one of the user's sessions.
    pub(super) fn end_session(&mut self, conn: ConnId, req: &Request, id: &str, now: Now) {
        let Some((user, _)) = self.session_user(conn, req, now) else {
            return;
        };
        let target = self
            .tokens
            .iter()
            .find(|(h, t)| t.user_id == user && session_id(h) == id)
            .map(|(h, _)| *h);
        let Some(hash) = target else {
            let r = Response::error(404, "not_found", "no such session");
            return self.respond(conn, r);
        };
        self.end_sessions(user, |h| *h == hash);
        self.store(Some(http(conn)), StoreOp::RevokeToken { hash });
    }

    /// `POST /logout?all=1`: every session of the user ends, this one too.
    pub(super) fn logout_all(&mut self, conn: ConnId, req: &Request, now: Now) {
        let Some(user) = req.bearer().and_then(|t| self.token_user(t, now)) else {
            return self.respond(conn, unauthorized());
        };
        self.end_sessions(user, |_| true);
        let op = StoreOp::RevokeUserTokens {
            user_id: user,
            keep: None,
        };
        self.store(Some(http(conn)), op);
    }

    /// `POST /account/password {old, new}`: the old password is checked off the reactor,
    /// then the new one hashed and stored; every other session ends.
    pub(super) fn change_password(&mut self, conn: ConnId, req: &Request, now: Now) {
        let Some((user, keep)) = self.session_user(conn, req, now) else {
            return;
        };
        if let Some(r) = self.account_throttled(user, now) {
            return self.respond(conn, r);
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let (Some(old), Some(new)) = (body["old"].as_str(), body["new"].as_str()) else {
            let r = Response::error(400, "bad_json", "expected {\"old\": ..., \"new\": ...}");
            return self.respond(conn, r);
        };
        if !valid_password(new) {
            let r = Response::error(400, "invalid_password", "passwords are 8 to 1024 bytes");
            return self.respond(conn, r);
        }
        let phc = self.users.get(&user).map(|u| u.pw_hash.clone());
        self.password_changes.insert(
            conn,
            PasswordChange {
                user,
                keep,
                new: new.to_string(),
                old_checked: false,
            },
        );
        self.fx.push(Effect::Auth(AuthJob {
            reply: http(conn),
            op: AuthOp::Verify {
                user_id: Some(user),
                password: old.to_string(),
                phc,
            },
        }));
    }

    /// The password pool checked the old password of a change.
    pub(super) fn old_password_checked(
        &mut self,
        to: ReplyTo,
        result: Result<Option<UserId>, String>,
        now: Now,
    ) {
        let Some(change) = self.password_changes.get_mut(&to.conn) else {
            return;
        };
        let user = change.user;
        match result {
            Ok(Some(_)) => {
                change.old_checked = true;
                let password = std::mem::take(&mut change.new);
                let username = self.user_name(user).to_string();
                self.fx.push(Effect::Auth(AuthJob {
                    reply: to,
                    op: AuthOp::Hash { username, password },
                }));
            }
            Ok(None) => {
                self.password_changes.remove(&to.conn);
                self.login_failed(user, now);
                let r = Response::error(403, "invalid_credentials", "the old password is wrong");
                self.respond(to.conn, r);
            }
            Err(e) => {
                self.password_changes.remove(&to.conn);
                log::error!("password could not be checked: {e}");
                self.respond(to.conn, storage_unavailable());
            }
        }
    }

    /// The new password of a change is hashed: store it.
    pub(super) fn new_password_hashed(&mut self, to: ReplyTo, phc: Result<String, String>) {
        let Some(change) = self.password_changes.remove(&to.conn) else {
            return;
        };
        match phc {
            Ok(phc) => {
                let op = StoreOp::SetPassword {
                    user_id: change.user,
                    phc,
                    keep: Some(change.keep),
                    code: None,
                };
                self.store(Some(to), op);
            }
            Err(e) => {
                log::error!("password hashing failed: {e}");
                self.respond(to.conn, storage_unavailable());
            }
        }
    }

    /// The store has the new password: only now does memory follow, and every other
    /// session of the account ends.
    pub(super) fn password_set(
        &mut self,
        to: ReplyTo,
        user: UserId,
        phc: String,
        keep: Option<TokenHash>,
        result: Result<(), StoreError>,
    ) {
        match result {
            Ok(()) => {}
            Err(StoreError::Forbidden) => return self.respond(to.conn, bad_reset_code()),
            Err(_) => return self.respond(to.conn, storage_unavailable()),
        }
        if let Some(u) = self.users.get_mut(&user) {
            u.pw_hash = phc;
        }
        let ended = self.end_sessions(user, |h| Some(*h) != keep);
        log::info!("user {user} changed their password; {ended} other sessions ended");
        self.respond(to.conn, Response::no_content());
    }

    /// `POST /account/reset {name, code, new}`: a new password with a one-time code an
    /// admin made (`chatterbox admin reset-password NAME`); every session ends.
    pub(super) fn reset_password(&mut self, conn: ConnId, ip: IpAddr, req: &Request, now: Now) {
        if let Some(r) = self.ip_limited(ip, now) {
            return self.respond(conn, r);
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let (Some(name), Some(code), Some(new)) = (
            body["name"].as_str(),
            body["code"].as_str(),
            body["new"].as_str(),
        ) else {
            let r = Response::error(400, "bad_json", "expected {\"name\", \"code\", \"new\"}");
            return self.respond(conn, r);
        };
        if !valid_password(new) {
            let r = Response::error(400, "invalid_password", "passwords are 8 to 1024 bytes");
            return self.respond(conn, r);
        }
        // An unknown name answers like a wrong code.
        let Some(user) = self.user_by_name(name) else {
            return self.respond(conn, bad_reset_code());
        };
        if let Some(r) = self.account_throttled(user, now) {
            return self.respond(conn, r);
        }
        self.resets.insert(conn, (user, hash_token(code)));
        let username = self.user_name(user).to_string();
        self.fx.push(Effect::Auth(AuthJob {
            reply: http(conn),
            op: AuthOp::Hash {
                username,
                password: new.to_string(),
            },
        }));
    }

    /// The new password of a reset is hashed: the store checks and uses up the code.
    pub(super) fn reset_hashed(&mut self, to: ReplyTo, phc: Result<String, String>) {
        let Some((user, code)) = self.resets.remove(&to.conn) else {
            return;
        };
        match phc {
            Ok(phc) => {
                let op = StoreOp::SetPassword {
                    user_id: user,
                    phc,
                    keep: None,
                    code: Some(code),
                };
                self.store(Some(to), op);
            }
            Err(e) => {
                log::error!("password hashing failed: {e}");
                self.respond(to.conn, storage_unavailable());
            }
        }
    }

    /// `POST /admin/invites {uses, expires_days}`: a new invite code, shown once.
    pub(super) fn create_invite(&mut self, admin: UserId, req: &Request, now: Now) -> Response {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let uses = body["uses"].as_u64().unwrap_or(1);
        let days = body["expires_days"].as_u64().unwrap_or(7);
        if !(1..=10_000).contains(&uses) || !(1..=365).contains(&days) {
            return Response::error(400, "bad_request", "uses 1-10000, expires_days 1-365");
        }
        let code = crate::auth::new_token();
        let expires_at = now.wall_ms + days as i64 * 86_400_000;
        let op = StoreOp::CreateInvite {
            hash: hash_token(&code),
            uses: uses as u32,
            expires_at,
            by: admin,
        };
        self.store(None, op);
        self.audit(
            Some(admin),
            "create_invite",
            format!("{uses} uses, {days} days"),
            now,
        );
        Response::json(
            201,
            &json!({ "code": code, "uses": uses, "expires_at": rfc3339_ms(expires_at) }),
        )
    }

    /// Accounts another process added to the database (`chatterbox admin add-user`).
    pub(super) fn users_added(&mut self, rows: Vec<crate::store::load::UserRow>) {
        for u in rows {
            let lc = u.username.to_ascii_lowercase();
            if self.users.contains_key(&u.id) || self.user_by_name.contains_key(&lc) {
                continue;
            }
            self.user_by_name.insert(lc, u.id);
            self.users.insert(
                u.id,
                super::room::User {
                    id: u.id,
                    name: u.username,
                    pw_hash: u.pw_hash,
                    last_seen: u.last_seen,
                    conns: Vec::new(),
                    rooms: Default::default(),
                    owned: 0,
                    creating: 0,
                    admin: u.admin,
                    suspended: u.suspended,
                    deleted_at: u.deleted_at,
                },
            );
            self.join_general(u.id);
        }
    }

    /// Answers 429 when the address has used its login budget (`auth_per_minute`).
    pub(super) fn ip_refused(&mut self, conn: ConnId, ip: IpAddr, now: Now) -> bool {
        match self.ip_limited(ip, now) {
            Some(r) => {
                self.respond(conn, r);
                true
            }
            None => false,
        }
    }

    /// Whether an answer of the password pool belongs to a password change.
    pub(super) fn changing_password(&self, conn: ConnId) -> Option<bool> {
        self.password_changes.get(&conn).map(|c| c.old_checked)
    }
}
