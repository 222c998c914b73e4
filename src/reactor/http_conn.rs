//! HTTP connections: read, parse (one request at a time, pipelining allowed), route,
//! answer. Chat endpoints go to the Hub; the web UI, health and metrics are answered
//! here; `/ws` is upgraded once the Hub accepts its token.

use super::conn::{ConnState, Phase};
use super::outq::Chunk;
use super::Server;
use crate::config::READ_AHEAD_BYTES;
use crate::http::{Request, Response, Route};
use std::io::{self, Read};
use std::sync::atomic::Ordering;

/// Bytes read from a socket per `read` call.
const READ_CHUNK: usize = 8192;

impl Server {
    pub(super) fn read_http(&mut self, key: usize) {
        let limit = self.config.max_header_bytes + self.config.max_body_bytes + 1;
        let limits = self.limits();
        let now = self.now.mono;
        let conn = &mut self.conns[key];
        let ConnState::Http(http) = &mut conn.state else {
            return;
        };
        if http.upload.is_some() {
            self.read_upload(key);
            return self.rearm(key);
        }
        let mut eof = false;
        let mut chunk = [0u8; READ_CHUNK];
        while http.buf.len() < limit {
            let whole = || matches!(crate::http::parse(&http.buf, &limits), Ok(Some(_)));
            if http.buf.len() >= READ_AHEAD_BYTES && whole() {
                // A whole request is here: answer it before taking more.
                self.again.push(key);
                break;
            }
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    if http.phase == Phase::Idle {
                        http.phase = Phase::Reading;
                        http.since = now;
                    }
                    http.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if http.buf.len() >= limit && http.phase != Phase::Waiting {
            // Bytes may remain in the socket, and no new readiness edge will say so:
            // come back after these requests are answered.
            self.again.push(key);
        }
        self.process_http(key);
        if eof {
            match &mut self.conns[key].state {
                ConnState::Http(h) if h.phase == Phase::Waiting => h.keep_alive = false,
                _ => self.close_after_flush(key),
            }
        }
        self.rearm(key);
    }

    /// Parses and answers requests in the buffer, in order, one at a time.
    fn limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            max_header_bytes: self.config.max_header_bytes,
            max_headers: self.config.max_headers,
            max_body_bytes: self.config.max_body_bytes,
            max_upload_bytes: self.config.max_file_bytes as usize,
        }
    }

    pub(super) fn process_http(&mut self, key: usize) {
        let limits = self.limits();
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.doomed {
                return;
            }
            let ConnState::Http(http) = &mut conn.state else {
                return;
            };
            if matches!(http.phase, Phase::Waiting | Phase::Done)
                || http.buf.is_empty()
                || http.upload.is_some()
            {
                return;
            }
            if conn.out.len() > crate::config::OUTPUT_PAUSE_BYTES {
                // Pipelined requests wait until the client reads what it asked for.
                conn.paused = true;
                return;
            }
            match crate::http::parse(&http.buf, &limits) {
                Ok(None) => return,
                Ok(Some((n, req))) => {
                    http.buf.drain(..n);
                    http.keep_alive = req.keep_alive;
                    // Until it is answered, the request holds the connection.
                    http.phase = Phase::Waiting;
                    self.handle_request(key, req);
                }
                Err(e) => {
                    http.buf.clear();
                    http.keep_alive = false;
                    conn.linger = true;
                    let resp = Response::error(e.status(), e.code(), e.message());
                    self.respond(key, resp);
                    return;
                }
            }
        }
    }

    fn handle_request(&mut self, key: usize, req: Request) {
        let route = crate::http::route(&req);
        let resp = match route {
            Route::Upgrade => return self.upgrade(key, &req),
            Route::Upload => {
                // The body waits in the socket meanwhile; `read_upload` takes it after.
                if self.look_up_first(key, &req, &route) {
                    return;
                }
                return self.start_upload(key, &req);
            }
            Route::Healthz => crate::metrics::healthz(self.storage_ok),
            Route::Metrics => {
                let gauges = self.gauges();
                crate::metrics::exposition(&mut self.metrics, &gauges, &self.hub)
            }
            Route::AdminStats => {
                if self.look_up_first(key, &req, &route) {
                    return;
                }
                let gauges = self.gauges();
                crate::metrics::admin_stats(&mut self.metrics, &gauges, &self.hub, &req, self.now)
            }
            Route::Asset => crate::web::asset(&req.path)
                .unwrap_or_else(|| Response::error(404, "not_found", "no such page")),
            Route::MethodNotAllowed { allow } => {
                Response::error(405, "method_not_allowed", "method not allowed here")
                    .with_header("Allow", allow)
            }
            Route::NotFound => Response::error(404, "not_found", "no such page"),
            Route::AdminAudit
            | Route::AdminSuspend { .. }
            | Route::AdminRemove { .. }
            | Route::AdminInvite
            | Route::AdminDisconnect { .. } => {
                if self.look_up_first(key, &req, &route) {
                    return;
                }
                let id = self.conns[key].id;
                let fx = self.hub.handle_admin(id, &route, &req, self.now);
                return self.apply(fx);
            }
            Route::Register
            | Route::Login
            | Route::Logout
            | Route::Rooms
            | Route::History { .. }
            | Route::Leave { .. }
            | Route::Invitations
            | Route::Sessions
            | Route::EndSession { .. }
            | Route::ChangePassword
            | Route::ResetPassword
            | Route::DeleteAccount
            | Route::Export
            | Route::RoomInfo { .. }
            | Route::Registration
            | Route::File { .. }
            | Route::Search => {
                if self.look_up_first(key, &req, &route) {
                    return;
                }
                let (id, ip) = (self.conns[key].id, self.conns[key].ip);
                let fx = self.hub.handle_http(id, ip, &route, &req, self.now);
                return self.apply(fx);
            }
        };
        self.respond(key, resp);
    }

    /// Queues an HTTP response on a connection waiting for one.
    pub(super) fn respond(&mut self, key: usize, resp: Response) {
        self.metrics.count_status(resp.status);
        let stopping = self.shutdown.load(Ordering::Relaxed);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let ConnState::Http(http) = &mut conn.state else {
            return;
        };
        let id = conn.id;
        if let Some(up) = http.upload.take() {
            if up.remaining > 0 {
                // Answered before its body was all here (refused, timed out): the rest
                // is not read, the partial file goes, and the connection ends.
                http.keep_alive = false;
                conn.linger = true;
                let _ = self.files.send(crate::files::FileJob::Abort { conn: id });
            }
            self.hub.upload_gone(id);
        }
        let keep_alive = http.keep_alive && !stopping;
        http.keep_alive = keep_alive;
        let bytes = resp.to_bytes(keep_alive);
        self.enqueue(key, Chunk::owned(bytes));
        self.response_complete(key);
    }

    /// A response is all queued: the connection waits for the next request, or closes.
    pub(super) fn response_complete(&mut self, key: usize) {
        let now = self.now.mono;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let ConnState::Http(http) = &mut conn.state else {
            return;
        };
        let keep_alive = http.keep_alive;
        http.since = now;
        http.phase = match (keep_alive, http.buf.is_empty()) {
            (false, _) => Phase::Done,
            (true, true) => Phase::Idle,
            // A pipelined request is already buffered: its clock starts now.
            (true, false) => Phase::Reading,
        };
        if !keep_alive {
            self.close_after_flush(key);
        } else if !self.conns[key].doomed {
            self.again.push(key);
        }
    }

    fn upgrade(&mut self, key: usize, req: &Request) {
        if let ConnState::Http(h) = &mut self.conns[key].state {
            h.keep_alive = false;
        }
        let accept = match crate::ws::validate_upgrade(req, &self.config.allowed_origins) {
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
            .or_else(|| req.bearer().map(str::to_string))
            .unwrap_or_default();
        let (id, ip) = (self.conns[key].id, self.conns[key].ip);
        match self.hub.open_socket(id, &token, self.now) {
            Ok(fx) => self.open_ws(key, &accept, fx),
            Err(resp) if resp.status == 401 => {
                match self.hub.look_up_token(id, ip, &token, self.now) {
                    Some(fx) => {
                        if let ConnState::Http(h) = &mut self.conns[key].state {
                            h.upgrade = Some((accept, token));
                        }
                        self.apply(fx);
                    }
                    None => self.respond(key, resp),
                }
            }
            Err(resp) => self.respond(key, resp),
        }
    }

    /// In cluster mode, a request whose bearer token this node has not heard of waits
    /// while the database is asked (the token may come from another node's login an
    /// instant ago); true when it waits. Asked once per request, from the per-address
    /// login budget.
    fn look_up_first(&mut self, key: usize, req: &Request, route: &Route) -> bool {
        let (id, ip) = (self.conns[key].id, self.conns[key].ip);
        let ConnState::Http(h) = &mut self.conns[key].state else {
            return false;
        };
        if std::mem::take(&mut h.looked_up) {
            return false;
        }
        // The web UI sends its token with every call: a login or registration carrying a
        // stale one must not spend the address's login budget on it.
        if matches!(route, Route::Login | Route::Register | Route::Registration) {
            return false;
        }
        let token = match req.bearer() {
            Some(t) => std::borrow::Cow::Borrowed(t),
            None => match req.query_param("token") {
                Some(t) => std::borrow::Cow::Owned(t),
                None => return false,
            },
        };
        if !self.hub.token_unknown(&token) {
            return false;
        }
        let Some(fx) = self.hub.look_up_token(id, ip, &token, self.now) else {
            return false;
        };
        h.looking_up = Some(Box::new(req.clone()));
        self.apply(fx);
        true
    }

    /// A token was looked up (`Effect::Upgrade`): the waiting upgrade opens or is refused,
    /// or the waiting request is handled now; `refusal` answers either instead.
    pub(super) fn retry_upgrade(&mut self, key: usize, refusal: Option<Response>) {
        let ConnState::Http(h) = &mut self.conns[key].state else {
            return;
        };
        if let Some(resp) = refusal {
            h.looking_up = None;
            h.upgrade = None;
            return self.respond(key, resp);
        }
        if let Some(req) = h.looking_up.take() {
            h.looked_up = true;
            return self.handle_request(key, *req);
        }
        let Some((accept, token)) = h.upgrade.take() else {
            return;
        };
        let id = self.conns[key].id;
        match self.hub.open_socket(id, &token, self.now) {
            Ok(fx) => self.open_ws(key, &accept, fx),
            Err(resp) => self.respond(key, resp),
        }
    }
}
