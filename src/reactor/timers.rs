//! Deadlines: one live timer entry per connection (request, keep-alive, ping, idle and
//! linger timeouts), the accept retry after running out of descriptors, and what each
//! does when it fires. The poll timeout is the nearest deadline.

use super::conn::{ConnState, Phase};
use super::outq::Chunk;
use super::Server;
use crate::http::Response;
use std::cmp::Reverse;
use std::time::Instant;
use tungstenite::protocol::frame::Frame;

/// When a timeout changed nothing (a bug), how long until it is looked at again.
const TIMEOUT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

impl Server {
    pub(super) fn arm_timer(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let at = conn.deadline(&self.config);
        conn.timer_at = at;
        self.timers.push(Reverse((at, conn.id)));
    }

    /// Moves a connection's timer entry earlier when its deadline did (a state change);
    /// later deadlines need nothing, the entry is pushed back when it fires early.
    pub(super) fn rearm(&mut self, key: usize) {
        if let Some(conn) = self.conns.get(key) {
            if !conn.doomed && conn.deadline(&self.config) < conn.timer_at {
                self.arm_timer(key);
            }
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let conn = self.timers.peek().map(|Reverse((at, _))| *at);
        // Once a second for the dashboard's samples (an idle server wakes for it too).
        let sample = self.metrics.next_sample();
        [conn, self.accept_retry_at, self.hub.next_deadline(), sample]
            .into_iter()
            .flatten()
            .min()
    }

    /// Each connection has one live entry in the heap (the one at `timer_at`; older
    /// ones are skipped). Activity only moves the connection's own deadline, and a
    /// popped entry that is early is pushed back.
    pub(super) fn fire_timers(&mut self) {
        let now = self.now.mono;
        if self.accept_retry_at.is_some_and(|t| t <= now) {
            self.accept_retry_at = None;
            self.accept_all();
        }
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let live = self
                .live(id)
                .is_some_and(|key| self.conns[key].timer_at == at);
            if !live {
                continue;
            }
            if self.conns[id.key].deadline(&self.config) <= now {
                self.on_timeout(id.key);
            }
            if self.live(id).is_some() {
                if self.conns[id.key].deadline(&self.config) <= now {
                    // A timeout that changed nothing would fire again at once, forever:
                    // look again a little later instead (and say so: it is a bug).
                    log::warn!("conn {}: a timeout changed nothing", id.key);
                    let conn = &mut self.conns[id.key];
                    conn.timer_at = now + TIMEOUT_RETRY;
                    self.timers.push(Reverse((conn.timer_at, conn.id)));
                } else {
                    self.arm_timer(id.key);
                }
            }
        }
        self.hub.prune(self.now);
        let fx = self.hub.tick(self.now);
        self.apply(fx);
    }

    fn on_timeout(&mut self, key: usize) {
        enum Act {
            Resume,
            Close,
            RequestTimeout,
            Ws(u16, &'static str),
            Ping,
            Nothing,
        }
        let now = self.now.mono;
        let conn = &self.conns[key];
        if conn.stalled(now, &self.config) && !matches!(conn.state, ConnState::Closing { .. }) {
            // Queued output has not moved for the stall timeout: a reader that stopped.
            return self.slow_consumer(key);
        }
        let act = match &conn.state {
            ConnState::Http(http) => match http.phase {
                Phase::Idle => Act::Close,
                Phase::Reading => Act::RequestTimeout,
                Phase::Waiting | Phase::Done => Act::Nothing,
            },
            ConnState::Ws(ws) if ws.resume_at.is_some_and(|r| r <= now) => Act::Resume,
            ConnState::Ws(ws) => {
                if !self.hub.socket_token_valid(conn.id, self.now) {
                    Act::Ws(4001, "token expired")
                } else if now.saturating_duration_since(ws.last_rx) >= self.config.ws_idle_timeout
                    && !conn.paused
                {
                    // (Not while the server itself stopped reading it: its silence
                    // would be ours.)
                    Act::Ws(1001, "idle timeout")
                } else {
                    Act::Ping
                }
            }
            ConnState::Closing { .. } => return self.doom(key),
        };
        match act {
            Act::Nothing => {}
            Act::Resume => {
                if let ConnState::Ws(ws) = &mut self.conns[key].state {
                    ws.resume_at = None;
                }
                self.again.push(key);
            }
            Act::Close => self.close_after_flush(key),
            Act::RequestTimeout => {
                self.metrics.request_timeouts += 1;
                if let ConnState::Http(http) = &mut self.conns[key].state {
                    http.keep_alive = false;
                    http.buf.clear();
                }
                let r = Response::error(408, "timeout", "request not completed in time");
                self.respond(key, r);
            }
            Act::Ws(code, reason) => {
                if code == 1001 {
                    self.metrics.idle_closed += 1;
                }
                self.close_ws(key, code, reason);
            }
            Act::Ping => {
                if let ConnState::Ws(ws) = &mut self.conns[key].state {
                    ws.last_ping = now;
                }
                let mut ping = Vec::new();
                let _ = Frame::ping(Vec::<u8>::new()).format(&mut ping);
                self.enqueue(key, Chunk::owned(ping));
            }
        }
    }
}
