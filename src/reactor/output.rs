//! Output: the one place where bytes leave. Everything a connection is sent is queued
//! here (`enqueue`, or `push` for a broadcast), bounded, and written with vectored writes
//! at the end of the pass; WRITABLE interest is registered only while a socket is stuck.
//! Closing and removing connections lives here too, since a connection closes once its
//! last bytes are out.

use super::conn::{Conn, ConnState};
use super::outq::{queued_total, Chunk};
use super::{Server, FIRST_CONN};
use crate::config::{MAX_TOTAL_OUTPUT_BYTES, RESUME_OUTPUT_BYTES};
use mio::{Interest, Token};
use std::io::{self, Read};
use std::time::Instant;

/// Queues `chunk` on `conn` and lists it for flushing. Returns true if the connection is
/// now past the bound `max` of output queued for it alone (a slow consumer, for the
/// caller to close).
pub(super) fn push(
    conn: &mut Conn,
    chunk: Chunk,
    dirty: &mut Vec<usize>,
    max: usize,
    now: Instant,
) -> bool {
    // Nothing may follow a close frame or a final response (a late completion for a
    // closing connection is dropped).
    if conn.doomed || matches!(conn.state, ConnState::Closing { .. }) {
        return false;
    }
    if conn.out.is_empty() {
        // The stall clock runs only while something waits to be written.
        conn.last_progress = now;
    }
    conn.out.push(chunk);
    mark_dirty(conn, dirty);
    conn.out.unshared() > max
}

/// Whether all output queued in the process is past the point where senders wait.
pub(super) fn overloaded() -> bool {
    queued_total() > MAX_TOTAL_OUTPUT_BYTES
}

fn mark_dirty(conn: &mut Conn, dirty: &mut Vec<usize>) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(conn.id.key);
    }
}

impl Server {
    /// Appends output and schedules a flush; a WebSocket past its output bound is
    /// closed as a slow consumer.
    pub(super) fn enqueue(&mut self, key: usize, chunk: Chunk) {
        let max = self.config.max_output_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if push(conn, chunk, &mut self.dirty, max, self.now.mono) {
            self.slow_consumer(key);
        }
    }

    /// Part of a chunked response; asks the Hub for more once the output is low.
    pub(super) fn chunk(&mut self, key: usize, bytes: &[u8], last: bool) {
        if !bytes.is_empty() {
            self.enqueue(key, Chunk::owned(crate::http::response::chunk(bytes)));
        }
        if last {
            self.enqueue(key, Chunk::owned(crate::http::response::chunk(&[])));
            if let ConnState::Http(h) = &mut self.conns[key].state {
                h.chunked = false;
                h.phase = super::conn::Phase::Done;
            }
            self.close_after_flush(key);
            return;
        }
        self.pull_chunks(key);
    }

    /// A chunked response whose output is under `EXPORT_LOW_WATER` gets its next part.
    fn pull_chunks(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let low = conn.out.len() < crate::config::EXPORT_LOW_WATER;
        let id = conn.id;
        let ConnState::Http(h) = &mut conn.state else {
            return;
        };
        if !h.chunked || conn.doomed {
            return;
        }
        h.wants_more = !low;
        if low {
            let fx = self.hub.export_more(id);
            self.apply(fx);
        }
    }

    pub(super) fn slow_consumer(&mut self, key: usize) {
        self.metrics.slow_consumers += 1;
        log::info!("conn {key}: slow consumer, closing");
        let conn = &mut self.conns[key];
        conn.out.truncate_to_front();
        if conn.is_ws() {
            self.close_ws(key, 1008, "slow consumer");
        } else {
            self.close_after_flush(key);
        }
    }

    /// Output that tungstenite wrote into the queue itself (pongs, close replies).
    pub(super) fn queued_directly(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.out.is_empty() || conn.stream.wants_write() {
            mark_dirty(conn, &mut self.dirty);
        }
    }

    pub(super) fn queued_directly_if_live(&mut self, key: usize) {
        if self.conns.get(key).is_some_and(|c| !c.doomed) {
            self.queued_directly(key);
        }
    }

    /// Switches a connection to Closing: it is removed once its output is flushed (or
    /// after the linger time).
    pub(super) fn close_after_flush(&mut self, key: usize) {
        self.forget_ws(key);
        self.upload_ended(key);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(&conn.state, ConnState::Http(h) if h.chunked) {
            // An export cut short (slow reader, peer gone): the Hub forgets it.
            self.hub.export_gone(conn.id);
        }
        if !matches!(conn.state, ConnState::Closing { .. }) {
            conn.state = ConnState::Closing {
                since: self.now.mono,
            };
        }
        // TLS ends with close_notify, after the last output (`flush_conn`).
        if conn.out.is_empty() && !conn.stream.is_tls() {
            self.doom(key);
        } else {
            mark_dirty(conn, &mut self.dirty);
        }
        self.rearm(key);
    }

    /// If the connection is a WebSocket, tells the Hub it is gone (once).
    pub(super) fn forget_ws(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.is_ws() {
            let fx = self.hub.socket_closed(conn.id, self.now);
            self.apply(fx);
        }
    }

    pub(super) fn doom(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.doomed {
                conn.doomed = true;
                self.doomed.push(key);
            }
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for key in dirty {
                if let Some(c) = self.conns.get_mut(key) {
                    c.dirty = false;
                }
                self.flush_conn(key);
            }
        }
        if !self.held.is_empty() && queued_total() < RESUME_OUTPUT_BYTES {
            // Enough went out: the senders held back are read again.
            log::info!("output back under the limit; reading senders again");
            self.again.append(&mut self.held);
        }
    }

    pub(super) fn flush_conn(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.doomed {
            return;
        }
        let before = conn.out.len();
        let written = conn
            .out
            .write_to(&mut conn.stream, &mut self.metrics.socket_writes);
        let closing = matches!(conn.state, ConnState::Closing { .. });
        // TLS records (a handshake message, an alert) may wait with the queue empty.
        let written = written.and_then(|done| {
            if done && closing {
                conn.stream.close_notify();
            }
            Ok(done && conn.stream.flush_tls()?)
        });
        match written {
            Ok(done) => {
                if conn.out.len() < before {
                    conn.last_progress = self.now.mono;
                }
                if done && matches!(conn.state, ConnState::Closing { .. }) {
                    if std::mem::take(&mut conn.linger) {
                        // Reading goes on (`drain_closing`) until EOF or the linger time.
                        let _ = conn.stream.tcp.shutdown(std::net::Shutdown::Write);
                        return;
                    }
                    self.doom(key);
                    return;
                }
                if conn.paused && !conn.backed_up() {
                    conn.paused = false;
                    self.again.push(key);
                }
                let more = matches!(&conn.state, ConnState::Http(h) if h.wants_more)
                    && conn.out.len() < crate::config::EXPORT_LOW_WATER;
                // Interest follows the queue: WRITABLE only while bytes are stuck.
                let stuck_now = !done && !conn.want_write;
                if conn.want_write == done {
                    conn.want_write = !done;
                    let interest = if done {
                        Interest::READABLE
                    } else {
                        Interest::READABLE | Interest::WRITABLE
                    };
                    let token = Token(key + FIRST_CONN);
                    let _ = self
                        .poll
                        .registry()
                        .reregister(&mut conn.stream.tcp, token, interest);
                }
                if stuck_now {
                    // The stall clock now matters: make sure the timer will look.
                    self.rearm(key);
                }
                if more {
                    self.pull_chunks(key);
                }
                self.pull_file(key);
            }
            Err(_) => self.doom(key),
        }
    }

    /// A closing connection's input is read and dropped, so that the peer's close reply
    /// does not turn into a reset; end of input ends it.
    pub(super) fn drain_closing(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let mut scratch = [0u8; 4096];
        loop {
            match conn.stream.read(&mut scratch) {
                Ok(0) => return self.doom(key),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.doom(key),
            }
        }
    }

    /// Removes doomed connections.
    pub(super) fn reap(&mut self) {
        while let Some(key) = self.doomed.pop() {
            if !self.conns.contains(key) {
                continue;
            }
            self.forget_ws(key);
            self.upload_ended(key);
            let mut conn = self.conns.remove(key);
            if matches!(&conn.state, ConnState::Http(h) if h.chunked) {
                self.hub.export_gone(conn.id);
            }
            if conn.unauthenticated {
                self.release_pending(conn.ip);
            }
            let _ = self.poll.registry().deregister(&mut conn.stream.tcp);
            log::trace!("conn {key}: closed");
        }
    }
}
