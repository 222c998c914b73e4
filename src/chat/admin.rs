//! Moderation: admin rights come from the account's flag in the database (granted with
//! `chatterbox admin grant NAME`, picked up by a running server within a second), never
//! from a name someone could register. Admins delete any message, remove a user from a
//! room and suspend accounts; each action goes to the audit log.

use super::hub::{unauthorized, Effect, Hub};
use crate::http::{Request, Response, Route};
use crate::id::{ConnId, UserId};
use crate::store::event::Event;
use crate::store::load::{AuditRow, AUDIT_KEPT};
use crate::store::StoreOp;
use crate::time::{rfc3339_ms, Now};
use serde_json::{json, Value};

impl Hub {
    /// One admin endpoint: the caller must hold a valid token of an admin account.
    pub fn handle_admin(
        &mut self,
        conn: ConnId,
        route: &Route,
        req: &Request,
        now: Now,
    ) -> Vec<Effect> {
        let admin = match self.authenticate(req, now) {
            None => Err(unauthorized()),
            Some(u) if !self.is_admin(u) => Err(Response::error(403, "forbidden", "admins only")),
            Some(u) => Ok(u),
        };
        let resp = admin.and_then(|admin| match route {
            Route::AdminAudit => Ok(self.audit_page()),
            Route::AdminSuspend { user, on } => self.suspend(admin, user, *on, now),
            Route::AdminRemove { room } => self.remove_from_room(admin, room, req, now),
            Route::AdminInvite => Ok(self.create_invite(admin, req, now)),
            Route::AdminDisconnect { user } => self.disconnect(admin, user, now),
            _ => Err(Response::error(404, "not_found", "no such page")),
        });
        self.respond(conn, resp.unwrap_or_else(|r| r));
        self.take_fx()
    }

    /// Records a moderation action, in memory and in the store.
    pub(super) fn audit(&mut self, actor: Option<UserId>, action: &str, target: String, now: Now) {
        let row = AuditRow {
            at: now.wall_ms,
            actor,
            action: action.to_string(),
            target,
        };
        self.store(
            None,
            StoreOp::Audit {
                at: row.at,
                actor,
                action: row.action.clone(),
                target: row.target.clone(),
            },
        );
        if self.audit.len() >= AUDIT_KEPT {
            self.audit.pop_front();
        }
        self.audit.push_back(row);
    }

    /// `GET /admin/audit`: newest first.
    fn audit_page(&self) -> Response {
        let entries: Vec<Value> = self
            .audit
            .iter()
            .rev()
            .map(|a| {
                json!({
                    "at": rfc3339_ms(a.at),
                    "actor": a.actor.map(|u| self.user_name(u)),
                    "action": a.action,
                    "target": a.target,
                })
            })
            .collect();
        Response::json(200, &json!({ "entries": entries }))
    }

    /// `POST /admin/users/{name}/suspend` (or `unsuspend`).
    fn suspend(
        &mut self,
        admin: UserId,
        name: &str,
        on: bool,
        now: Now,
    ) -> Result<Response, Response> {
        let Some(user) = self.user_by_name(name) else {
            return Err(Response::error(404, "no_such_user", "no such user"));
        };
        if user == admin {
            return Err(Response::error(
                400,
                "bad_request",
                "admins cannot suspend themselves",
            ));
        }
        self.store(None, StoreOp::Suspend { user_id: user, on });
        self.set_suspended(user, on);
        self.publish(Event::Suspended { user_id: user, on });
        let action = if on { "suspend" } else { "unsuspend" };
        let target = self.user_name(user).to_string();
        self.audit(Some(admin), action, target, now);
        Ok(Response::no_content())
    }

    /// Closes every socket of a user now (4003); they may come back (suspend keeps them out).
    fn disconnect(&mut self, admin: UserId, name: &str, now: Now) -> Result<Response, Response> {
        let Some(user) = self.user_by_name(name) else {
            return Err(Response::error(404, "no_such_user", "no such user"));
        };
        self.publish(Event::Disconnected { user_id: user });
        let conns = self.disconnect_here(user);
        let target = format!("{} ({} sockets)", self.user_name(user), conns.len());
        self.audit(Some(admin), "disconnect", target, now);
        Ok(Response::no_content())
    }

    /// Closes a user's sockets on this node (4003); returns them.
    pub(super) fn disconnect_here(&mut self, user: UserId) -> Vec<ConnId> {
        let conns = self
            .users
            .get(&user)
            .map(|u| u.conns.clone())
            .unwrap_or_default();
        for conn in &conns {
            self.fx.push(Effect::Close {
                conn: *conn,
                code: 4003,
                reason: "disconnected by an admin",
            });
        }
        conns
    }

    /// Suspends (every token dropped, every socket closed) or lifts it, in memory.
    pub(super) fn set_suspended(&mut self, user: UserId, on: bool) {
        let Some(u) = self.users.get_mut(&user) else {
            return;
        };
        u.suspended = on;
        if on {
            let revoked = &mut self.revoked;
            self.tokens.retain(|h, t| {
                let keep = t.user_id != user;
                if !keep {
                    revoked.insert(*h);
                }
                keep
            });
            for conn in u.conns.clone() {
                self.fx.push(Effect::Close {
                    conn,
                    code: 4001,
                    reason: "account suspended",
                });
            }
        }
    }

    /// `POST /admin/rooms/{room}/remove` with `{"user": NAME}`.
    fn remove_from_room(
        &mut self,
        admin: UserId,
        room: &str,
        req: &Request,
        now: Now,
    ) -> Result<Response, Response> {
        let name = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v["user"].as_str().map(str::to_string))
            .ok_or_else(|| Response::error(400, "bad_json", "expected {\"user\": NAME}"))?;
        let user = self
            .user_by_name(&name)
            .ok_or_else(|| Response::error(404, "no_such_user", "no such user"))?;
        let sockets = self.leave(user, room, now).map_err(|(code, msg)| {
            Response::error(super::queries::status_of(code), code.as_str(), &msg)
        })?;
        let v = json!({ "type": "left", "room": room, "removed_by": self.user_name(admin) });
        for c in sockets {
            self.send(c, v.clone());
        }
        self.audit(
            Some(admin),
            "remove_from_room",
            format!("{name} from {room}"),
            now,
        );
        Ok(Response::no_content())
    }

    /// Accounts whose flags changed in the database (`chatterbox admin`, another node):
    /// follow them.
    pub(super) fn account_flags(&mut self, flags: &[(UserId, bool, bool)], now: Now) {
        for &(id, admin, suspended) in flags {
            let Some(u) = self.users.get_mut(&id) else {
                continue;
            };
            if u.admin != admin {
                u.admin = admin;
                // Changed outside this process (`chatterbox admin`), which wrote its own
                // audit row: show it here too.
                let row = AuditRow {
                    at: now.wall_ms,
                    actor: None,
                    action: if admin { "grant_admin" } else { "revoke_admin" }.into(),
                    target: u.name.clone(),
                };
                if self.audit.len() >= AUDIT_KEPT {
                    self.audit.pop_front();
                }
                self.audit.push_back(row);
            }
            if self.users[&id].suspended != suspended {
                self.set_suspended(id, suspended);
            }
        }
    }
}
