//! `GET /account/export`: one JSON document of the user's profile, memberships and every
//! message they wrote, streamed as a chunked response. Pages come from a reader thread
//! one at a time, and the next is asked for only when the reactor says the connection's
//! output has drained (`export_more`), so a slow reader holds one page, never the export.

use super::hub::{Effect, Hub};
use crate::config::EXPORT_PAGE;
use crate::http::{Request, Response};
use crate::id::{ConnId, UserId};
use crate::store::{MessageRow, ReadJob, ReadOp, ReplyTo, StoreError, Via};
use crate::time::Now;
use serde_json::json;

/// One export in progress.
pub(super) struct Export {
    pub user: UserId,
    /// The highest message id sent so far.
    pub after: i64,
    /// A page is being read.
    pub reading: bool,
    /// No message has been written yet (no comma before the next).
    pub first: bool,
}

impl Hub {
    pub(super) fn export_start(&mut self, conn: ConnId, req: &Request, now: Now) {
        let Some(user) = self.http_user(conn, req, now) else {
            return;
        };
        if self.exports.values().any(|e| e.user == user) {
            let r = Response::error(
                429,
                "rate_limited",
                "an export of this account is already running",
            )
            .with_header("Retry-After", "5");
            return self.respond(conn, r);
        }
        let Some(u) = self.users.get(&user) else {
            return self.respond(conn, super::hub::unauthorized());
        };
        let mut rooms: Vec<&str> = u
            .rooms
            .iter()
            .filter_map(|r| self.rooms.get(r).map(|r| r.name.as_str()))
            .collect();
        rooms.sort_unstable();
        let head = json!({
            "user": { "username": u.name, "admin": u.admin },
            "rooms": rooms,
        })
        .to_string();
        // The document is this object with "messages" added: open the array, and the
        // pages fill it.
        let opening = format!("{},\"messages\":[", &head[..head.len() - 1]);
        let resp = Response::new(200, "application/json", Vec::new()).with_header(
            "Content-Disposition",
            "attachment; filename=\"chatterbox-export.json\"",
        );
        self.fx.push(Effect::ChunkedStart { conn, resp });
        self.fx.push(Effect::Chunk {
            conn,
            bytes: opening.into_bytes(),
            last: false,
        });
        self.exports.insert(
            conn,
            Export {
                user,
                after: 0,
                reading: false,
                first: true,
            },
        );
    }

    /// The reactor has room for more of this connection's export.
    pub fn export_more(&mut self, conn: ConnId) -> Vec<Effect> {
        if let Some(e) = self.exports.get_mut(&conn) {
            if !e.reading {
                e.reading = true;
                let op = ReadOp::ExportPage {
                    user_id: e.user,
                    after: e.after,
                    limit: EXPORT_PAGE,
                };
                let reply = ReplyTo {
                    conn,
                    via: Via::Http,
                };
                self.fx.push(Effect::Read(ReadJob { reply, op }));
            }
        }
        self.take_fx()
    }

    /// The connection of an export went away.
    pub fn export_gone(&mut self, conn: ConnId) {
        self.exports.remove(&conn);
    }

    pub(super) fn export_page(
        &mut self,
        to: ReplyTo,
        result: Result<(Vec<MessageRow>, bool), StoreError>,
    ) {
        let conn = to.conn;
        let Some(e) = self.exports.get_mut(&conn) else {
            return;
        };
        e.reading = false;
        let (rows, last) = match result {
            Ok(r) => r,
            Err(_) => {
                // Half a document must not look whole: end without the last chunk.
                self.exports.remove(&conn);
                self.fx.push(Effect::ChunkedAbort { conn });
                return;
            }
        };
        let mut first = e.first;
        if let Some(m) = rows.last() {
            e.after = m.id;
        }
        let mut text = String::new();
        for m in &rows {
            if !first {
                text.push(',');
            }
            first = false;
            text.push_str(&self.message_value(m).to_string());
        }
        if let Some(e) = self.exports.get_mut(&conn) {
            e.first = first;
        }
        if last {
            text.push_str("]}");
            self.exports.remove(&conn);
        }
        self.fx.push(Effect::Chunk {
            conn,
            bytes: text.into_bytes(),
            last,
        });
    }
}
