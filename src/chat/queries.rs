//! The Hub's HTTP endpoints: the account flow (see `account.rs`), the room list, history
//! pages and search. Pages the in-memory ring can answer are answered at once; older
//! pages and search become `Read` effects for the reader threads.

use super::hub::{storage_unavailable, unauthorized, Budget, Effect, Hub, DELETED_USER};
use super::protocol::{message_json, with_ref, ErrorCode};
use super::room::Room;
use super::rooms::within_reply_bytes;
use crate::config::{
    HISTORY_DEFAULT, HISTORY_MAX, MAX_QUERY_BYTES, ROOMS_PAGE_DEFAULT, ROOMS_PAGE_MAX,
    SEARCH_DEFAULT, SEARCH_MAX,
};
use crate::http::{Request, Response, Route};
use crate::id::{ConnId, RoomId, UserId};
use crate::store::{MessageRow, ReadJob, ReadOp, ReplyTo, StoreError, Via};
use crate::time::Now;
use serde_json::{json, Value};
use std::net::IpAddr;

impl Hub {
    /// One HTTP request for a chat endpoint. A route that is not the Hub's is a 404.
    pub fn handle_http(
        &mut self,
        conn: ConnId,
        ip: IpAddr,
        route: &Route,
        req: &Request,
        now: Now,
    ) -> Vec<Effect> {
        match route {
            Route::Register => self.register(conn, ip, req, now),
            Route::Login => self.login(conn, ip, req, now),
            Route::Logout if req.query_param("all").as_deref() == Some("1") => {
                self.logout_all(conn, req, now)
            }
            Route::Logout => self.logout(conn, req),
            Route::Sessions => self.list_sessions(conn, req, now),
            Route::EndSession { id } => self.end_session(conn, req, id, now),
            // Each checks a password on the argon2 pool: the per-address login budget
            // applies, as for /login.
            Route::ChangePassword | Route::DeleteAccount if self.ip_refused(conn, ip, now) => {}
            Route::ChangePassword => self.change_password(conn, req, now),
            Route::ResetPassword => self.reset_password(conn, ip, req, now),
            Route::DeleteAccount => self.delete_account(conn, req, now),
            Route::Export => self.export_start(conn, req, now),
            Route::RoomInfo { room } => {
                if let Some(user) = self.http_user(conn, req, now) {
                    let resp = self.room_info(user, room);
                    self.respond(conn, resp);
                }
            }
            Route::Registration => {
                let mode = self.cfg.registration.as_str();
                self.respond(conn, Response::json(200, &json!({ "mode": mode })));
            }
            Route::Rooms => {
                if let Some(user) = self.http_user(conn, req, now) {
                    let resp = self.list_rooms(user, req);
                    self.respond(conn, resp);
                }
            }
            Route::Invitations => {
                if let Some(user) = self.http_user(conn, req, now) {
                    let resp = Response::json(200, &self.invitations_json(user));
                    self.respond(conn, resp);
                }
            }
            Route::Leave { room } => {
                if let Some(user) = self.http_user(conn, req, now) {
                    let resp = match self.leave(user, room, now) {
                        Ok(sockets) => {
                            for c in sockets {
                                self.send(c, json!({ "type": "left", "room": room }));
                            }
                            Response::no_content()
                        }
                        Err((code, msg)) => Response::error(status_of(code), code.as_str(), &msg),
                    };
                    self.respond(conn, resp);
                }
            }
            Route::History { room } => {
                if let Some(user) = self.http_user(conn, req, now) {
                    self.http_history(conn, user, room, req);
                }
            }
            Route::Search => {
                if let Some(user) = self.http_user(conn, req, now) {
                    self.search(conn, user, req);
                }
            }
            Route::File { id } => self.download(conn, req, id, now),
            _ => self.respond(conn, Response::error(404, "not_found", "no such page")),
        }
        self.take_fx()
    }

    /// The user a request's bearer token belongs to.
    pub fn authenticate(&self, req: &Request, now: Now) -> Option<UserId> {
        self.token_user(req.bearer()?, now)
    }

    /// The authenticated user of a chat request, with one action taken from their
    /// budget; or the 401/429 is answered and `None` returned.
    pub(super) fn http_user(&mut self, conn: ConnId, req: &Request, now: Now) -> Option<UserId> {
        let Some(user) = self.authenticate(req, now) else {
            self.respond(conn, unauthorized());
            return None;
        };
        if let Some(t) = req.bearer() {
            self.touch_token(crate::auth::hash_token(t), now);
        }
        if let Err((code, msg)) = self.rate(user, Budget::Action, now) {
            self.stats.rate_limited += 1;
            let ms = self.retry_ms;
            let body = json!({ "error": code.as_str(), "message": msg, "retry_after_ms": ms });
            let resp = Response::json(429, &body)
                .with_header("Retry-After", ms.div_ceil(1000).to_string());
            self.respond(conn, resp);
            return None;
        }
        Some(user)
    }

    /// `GET /rooms/NAME`: whether the name is taken, and what the user may know of it.
    /// Someone else's conversation does not exist for them (as everywhere else).
    fn room_info(&self, user: UserId, name: &str) -> Response {
        let room = self
            .room_by_name
            .get(name)
            .and_then(|id| self.rooms.get(id))
            .filter(|r| !super::ws::is_dm(&r.name) || r.is_member(user));
        let Some(r) = room else {
            if self.creating.contains_key(name) && !super::ws::is_dm(name) {
                return Response::json(200, &json!({ "name": name, "exists": true }));
            }
            return Response::error(404, "no_such_room", "no room by that name");
        };
        let member = r.is_member(user);
        let mut v =
            json!({ "name": r.name, "exists": true, "private": r.private, "member": member });
        if !r.private || member {
            v["members"] = json!(r.members.len());
            v["online_count"] = json!(r.online.len());
        }
        Response::json(200, &v)
    }

    /// `GET /rooms?q=&after=&limit=`: the rooms the user may see, by name, one page.
    fn list_rooms(&self, user: UserId, req: &Request) -> Response {
        let q = req.query_param("q").unwrap_or_default();
        let after = req.query_param("after").unwrap_or_default();
        let limit = match opt_num(req, "limit") {
            Ok(l) => l
                .map_or(ROOMS_PAGE_DEFAULT, |l| {
                    l.min(ROOMS_PAGE_MAX as u64) as usize
                })
                .max(1),
            Err(r) => return r,
        };
        let mut rooms: Vec<&Room> = self
            .rooms
            .values()
            .filter(|r| !r.private || r.is_member(user))
            .filter(|r| r.name.as_str() > after.as_str() && r.name.contains(q.as_str()))
            .collect();
        if rooms.len() > limit {
            rooms.select_nth_unstable_by(limit, |a, b| a.name.cmp(&b.name));
            rooms.truncate(limit);
        }
        rooms.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let rooms: Vec<Value> = rooms
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "private": r.private,
                    "member": r.is_member(user),
                    "members": r.members.len(),
                    "online": r.online.len(),
                    "online_count": r.online.len(),
                    "last_id": r.last_id,
                    "unread": if r.is_member(user) { r.unread(user) } else { 0 },
                })
            })
            .collect();
        Response::json(200, &Value::Array(rooms))
    }

    /// A room `user` may read over HTTP, or the error response.
    fn readable_room(&self, name: &str, user: UserId) -> Result<RoomId, Response> {
        let Some(&id) = self.room_by_name.get(name) else {
            let msg = if super::ws::is_dm(name) {
                super::ws::NO_SUCH_DM
            } else {
                "no such room"
            };
            return Err(Response::error(404, "no_such_room", msg));
        };
        let room = &self.rooms[&id];
        if room.private && !room.is_member(user) && super::ws::is_dm(name) {
            let msg = super::ws::NO_SUCH_DM;
            return Err(Response::error(404, "no_such_room", msg));
        }
        if room.private && !room.is_member(user) {
            return Err(Response::error(
                403,
                "forbidden",
                "you are not a member of this room",
            ));
        }
        Ok(id)
    }

    fn http_history(&mut self, conn: ConnId, user: UserId, name: &str, req: &Request) {
        let checked = self.readable_room(name, user).and_then(|id| {
            let before =
                opt_num(req, "before")?.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
            let limit = opt_num(req, "limit")?
                .map_or(HISTORY_DEFAULT, |l| l.min(HISTORY_MAX as u64) as usize)
                .clamp(1, HISTORY_MAX);
            Ok((id, before, limit))
        });
        let (room_id, before, limit) = match checked {
            Ok(c) => c,
            Err(r) => return self.respond(conn, r),
        };
        if let Some((msgs, has_more)) = self.rooms[&room_id].page_before(before, limit) {
            let n = within_reply_bytes(&msgs, true);
            let messages = self.messages(msgs[msgs.len() - n..].iter().copied(), user);
            let body = json!({ "messages": messages, "has_more": has_more || n < msgs.len() });
            return self.respond(conn, Response::json(200, &body));
        }
        self.read(
            conn,
            ReadOp::History {
                room: name.to_string(),
                room_id,
                before,
                after: None,
                limit,
                reader: user,
            },
        );
    }

    fn search(&mut self, conn: ConnId, user: UserId, req: &Request) {
        let query = req.query_param("q").unwrap_or_default();
        if query.trim().is_empty() {
            let r = Response::error(400, "bad_request", "the q parameter is required");
            return self.respond(conn, r);
        }
        if query.len() > MAX_QUERY_BYTES {
            return self.respond(conn, Response::error(400, "bad_request", "query too long"));
        }
        let limit = match opt_num(req, "limit") {
            Ok(l) => l
                .map_or(SEARCH_DEFAULT, |l| l.min(SEARCH_MAX as u64) as usize)
                .clamp(1, SEARCH_MAX),
            Err(r) => return self.respond(conn, r),
        };
        let room_ids: Vec<RoomId> = match req.query_param("room").filter(|r| !r.is_empty()) {
            Some(name) => match self.readable_room(&name, user) {
                Ok(id) => vec![id],
                Err(r) => return self.respond(conn, r),
            },
            None => self
                .rooms
                .values()
                .filter(|r| !r.private || r.is_member(user))
                .map(|r| r.id)
                .collect(),
        };
        self.read(
            conn,
            ReadOp::Search {
                query,
                room_ids,
                limit,
                reader: user,
            },
        );
    }

    fn read(&mut self, conn: ConnId, op: ReadOp) {
        let reply = ReplyTo {
            conn,
            via: Via::Http,
        };
        self.fx.push(Effect::Read(ReadJob { reply, op }));
    }

    /// A message row rendered as the protocol's `message` object, the same for everyone.
    pub(super) fn message_value(&self, row: &MessageRow) -> Value {
        self.message_value_for(row, None)
    }

    /// A message row as `reader` sees it (their own reactions marked).
    pub(super) fn message_value_for(&self, row: &MessageRow, reader: Option<UserId>) -> Value {
        let room = self.rooms.get(&row.room_id).map_or("", |r| r.name.as_str());
        let gone = self
            .users
            .get(&row.user_id)
            .is_some_and(|u| u.deleted_at.is_some());
        let user = if gone {
            DELETED_USER
        } else {
            self.user_name(row.user_id)
        };
        message_json(row, room, user, reader)
    }

    pub(super) fn messages<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a MessageRow>,
        reader: UserId,
    ) -> Vec<Value> {
        rows.into_iter()
            .map(|m| self.message_value_for(m, Some(reader)))
            .collect()
    }

    /// A history page came back from a reader.
    pub(super) fn history_read(
        &mut self,
        to: ReplyTo,
        room: String,
        forward: bool,
        reader: UserId,
        result: Result<(Vec<MessageRow>, bool), StoreError>,
    ) {
        if let (Via::Ws { .. }, Some(s)) = (&to.via, self.sockets.get_mut(&to.conn)) {
            s.pending_reads = s.pending_reads.saturating_sub(1);
        }
        match result {
            Ok((msgs, has_more)) => {
                // A page of long messages is cut to REPLY_MAX_BYTES, keeping the end
                // nearest to where the reader is going (newest for `before` pages).
                let refs: Vec<&MessageRow> = msgs.iter().collect();
                let n = within_reply_bytes(&refs, !forward);
                let has_more = has_more || n < refs.len();
                let kept = if forward {
                    &refs[..n]
                } else {
                    &refs[refs.len() - n..]
                };
                let messages = self.messages(kept.iter().copied(), reader);
                match to.via {
                    Via::Ws { req } => {
                        let v = json!({ "type": "history", "room": room, "messages": messages, "has_more": has_more });
                        self.send(to.conn, with_ref(v, req.as_deref()));
                    }
                    Via::Http => {
                        let body = json!({ "messages": messages, "has_more": has_more });
                        self.respond(to.conn, Response::json(200, &body));
                    }
                }
            }
            Err(_) => self.answer_unavailable(&to, "history is unavailable; try again"),
        }
    }

    pub(super) fn search_read(
        &mut self,
        to: ReplyTo,
        reader: UserId,
        result: Result<(Vec<MessageRow>, bool), StoreError>,
    ) {
        let resp = match result {
            Ok((rows, partial)) => {
                let mut body = json!({ "messages": self.messages(&rows, reader) });
                if partial {
                    body["partial"] = json!(true);
                }
                Response::json(200, &body)
            }
            Err(_) => storage_unavailable(),
        };
        self.respond(to.conn, resp);
    }

    pub(super) fn answer_unavailable(&mut self, to: &ReplyTo, msg: &str) {
        self.answer_error(to, ErrorCode::Overloaded, msg, 503);
    }
}

/// The HTTP status for a protocol error code.
pub(super) fn status_of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::Forbidden => 403,
        ErrorCode::NoSuchRoom | ErrorCode::NoSuchMessage => 404,
        ErrorCode::RateLimited => 429,
        ErrorCode::Overloaded => 503,
        _ => 400,
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
