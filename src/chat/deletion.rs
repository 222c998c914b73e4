//! Deleting an account: the password checked off the reactor, the account anonymised by
//! the writer, then forgotten here (and, in cluster mode, on every node).

use super::hub::{storage_unavailable, Effect, Hub};
use super::sessions::http;
use crate::auth::pool::{AuthJob, AuthOp};
use crate::http::{Request, Response};
use crate::id::{ConnId, UserId};
use crate::store::event::Event;
use crate::store::{ReplyTo, StoreError, StoreOp};
use crate::time::Now;
use serde_json::Value;

impl Hub {
    /// `DELETE /account {password}`: the password is checked off the reactor, then the
    /// account goes (see `StoreOp::DeleteAccount`).
    pub(super) fn delete_account(&mut self, conn: ConnId, req: &Request, now: Now) {
        let Some((user, _)) = self.session_user(conn, req, now) else {
            return;
        };
        if let Some(r) = self.account_throttled(user, now) {
            return self.respond(conn, r);
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let Some(password) = body["password"].as_str() else {
            let r = Response::error(400, "bad_json", "expected {\"password\": ...}");
            return self.respond(conn, r);
        };
        let phc = self.users.get(&user).map(|u| u.pw_hash.clone());
        self.deletions.insert(conn, (user, false));
        self.fx.push(Effect::Auth(AuthJob {
            reply: http(conn),
            op: AuthOp::Verify {
                user_id: Some(user),
                password: password.to_string(),
                phc,
            },
        }));
    }

    pub(super) fn deletion_checked(
        &mut self,
        to: ReplyTo,
        result: Result<Option<UserId>, String>,
        now: Now,
    ) {
        let Some(&(user, _)) = self.deletions.get(&to.conn) else {
            return;
        };
        match result {
            Ok(Some(_)) => {
                self.deletions.insert(to.conn, (user, true));
                self.store(Some(to), StoreOp::DeleteAccount { user_id: user });
            }
            Ok(None) => {
                self.deletions.remove(&to.conn);
                self.login_failed(user, now);
                let r = Response::error(403, "invalid_credentials", "the password is wrong");
                self.respond(to.conn, r);
            }
            Err(e) => {
                self.deletions.remove(&to.conn);
                log::error!("password could not be checked: {e}");
                self.respond(to.conn, storage_unavailable());
            }
        }
    }

    /// The store deleted the account: memory follows. Every session ends, memberships and
    /// invitations go, messages in memory become placeholders, owned rooms lose their
    /// owner. The name stays held (`NAME_QUARANTINE_MS`).
    pub(super) fn account_deleted(
        &mut self,
        to: ReplyTo,
        result: Result<(), StoreError>,
        now: Now,
    ) {
        let Some((user, _)) = self.deletions.remove(&to.conn) else {
            return;
        };
        if result.is_err() {
            return self.respond(to.conn, storage_unavailable());
        }
        self.end_sessions(user, |_| true);
        self.forget_account(user, now);
        self.publish(Event::AccountDeleted { user_id: user });
        let name = self.user_name(user).to_string();
        log::info!("user {user} deleted their account");
        self.audit(Some(user), "delete_account", name, now);
        self.respond(to.conn, Response::no_content());
    }

    /// A deleted account (here or on another node) leaves memory: memberships,
    /// invitations, ownerships and its words go, its name stays held.
    pub(super) fn forget_account(&mut self, user: UserId, now: Now) {
        let rooms: Vec<_> = self
            .users
            .get(&user)
            .map(|u| u.rooms.iter().copied().collect())
            .unwrap_or_default();
        for &id in &rooms {
            if self.online_elsewhere(user) {
                self.room_elsewhere(id, user, false, now);
            }
        }
        self.elsewhere.remove(&user);
        for id in rooms {
            if let Some(room) = self.rooms.get_mut(&id) {
                room.members.remove(&user);
                room.delivered.remove(&user);
            }
        }
        for room in self.rooms.values_mut() {
            if room.owner == Some(user) {
                room.owner = None;
            }
            room.blank_messages_of(user);
        }
        // Files on their messages are attached to nothing now: forget them at once.
        self.next_sweep = None;
        self.invites.remove(&user);
        for list in self.invites.values_mut() {
            list.retain(|i| i.by != user);
        }
        if let Some(u) = self.users.get_mut(&user) {
            u.rooms.clear();
            u.pw_hash.clear();
            u.admin = false;
            u.deleted_at = Some(now.wall_ms);
        }
    }
}
