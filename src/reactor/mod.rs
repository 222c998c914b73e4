//! The event loop: one thread, one `mio::Poll`, owning every connection and all chat state.
//!
//! Each pass: poll (timeout = the next deadline), accept, read and parse, handle requests,
//! take completions from the worker threads, fire timers, then flush every connection that
//! got output. Nothing here blocks: SQLite, argon2 and deep reads run on other threads and
//! answer through the completion channel, which wakes the poll. Handlers never remove a
//! connection themselves; they mark it, and the end of the pass removes it, so a broadcast
//! can never remove the connection it is iterating over.

pub mod conn;
pub mod outq;
pub(crate) mod routes;

use crate::auth::pool::{AuthJob, ConnRef};
use crate::auth::TokenHash;
use crate::chat::state::{Room, User};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::ratelimit::Bucket;
use crate::store::reader::ReadJob;
use crate::store::{load, reader, writer, Completion, MessageRow, Notifier, StoreCmd};
use crate::time::now_ms;
use conn::{Conn, ConnState};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use outq::Chunk;
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Frame};

/// Slab keys are offset by this so the listener and waker tokens stay reserved.
const FIRST_CONN: usize = 2;
const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Accepts per pass, so a connection storm cannot starve established clients.
const ACCEPT_BUDGET: usize = 512;
/// WebSocket messages handled per connection per pass; the rest wait for the next pass.
pub const READ_BUDGET: usize = 64;
/// Pause before accepting again after running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// How long a closing connection may take to flush its last bytes.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// How long shutdown waits for close frames to drain.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(1500);
/// Reader threads for history pages and search.
const READER_THREADS: usize = 2;

/// A cached session token.
#[derive(Clone, Copy)]
pub struct TokenInfo {
    pub user_id: i64,
    pub expires_at: i64,
}

/// Per-user rate limit buckets.
pub struct UserBuckets {
    pub msg: Bucket,
    pub typing: Bucket,
}

/// Lets another thread (a signal handler thread, a test) stop the server.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Shutdown {
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

pub struct Server {
    pub(crate) config: Config,
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
    pub(crate) conns: Slab<Conn>,
    next_serial: u64,
    max_conns: usize,
    /// Kept open so that on EMFILE one descriptor can be freed to accept and refuse.
    spare_fd: Option<std::fs::File>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    accept_pending: bool,
    accept_retry_at: Option<Instant>,
    dirty: Vec<usize>,
    doomed: Vec<usize>,
    again: Vec<usize>,
    pub(crate) now: Instant,

    pub(crate) store: Sender<StoreCmd>,
    pub(crate) auth: Sender<AuthJob>,
    pub(crate) reads: Sender<ReadJob>,
    done: Receiver<Completion>,
    threads: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    pub(crate) storage_ok: bool,

    pub(crate) users: HashMap<i64, User>,
    pub(crate) user_by_name: HashMap<String, i64>,
    pub(crate) pending_names: HashSet<String>,
    pub(crate) tokens: HashMap<TokenHash, TokenInfo>,
    pub(crate) rooms: HashMap<i64, Room>,
    pub(crate) room_by_name: HashMap<String, i64>,
    pub(crate) next_room_id: i64,
    pub(crate) user_buckets: HashMap<i64, UserBuckets>,
    pub(crate) ip_buckets: HashMap<IpAddr, Bucket>,
    pub(crate) metrics: Metrics,
}

impl Server {
    /// Opens the database, loads the in-memory state, starts the worker threads and
    /// takes over `listener`. Nothing is served until `run`.
    pub fn new(config: Config, listener: std::net::TcpListener) -> Result<Server, String> {
        config.validate()?;
        let db = load::open_writer(&config.db, config.sync == crate::config::Sync::Full)?;
        let snap = load::snapshot(&db, config.ring_size).map_err(|e| e.to_string())?;

        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new().map_err(|e| e.to_string())?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| e.to_string())?);

        let (done_tx, done) = std::sync::mpsc::channel();
        let notify = Notifier::new(done_tx, Arc::clone(&waker));
        let (store, store_rx) = std::sync::mpsc::channel();
        let writer = writer::start(db, store_rx, notify.clone());
        let (auth, mut threads) = crate::auth::pool::start(config.password_threads, notify.clone());
        let (reads, reader_threads) = reader::start(config.db.clone(), READER_THREADS, notify)?;
        threads.extend(reader_threads);

        let max_conns = config
            .max_connections
            .unwrap_or_else(default_max_connections);
        let now = Instant::now();
        let mut server = Server {
            poll,
            listener: Some(listener),
            local_addr,
            waker,
            shutdown: Arc::new(AtomicBool::new(false)),
            conns: Slab::new(),
            next_serial: 1,
            max_conns,
            spare_fd: std::fs::File::open("/dev/null").ok(),
            timers: BinaryHeap::new(),
            accept_pending: false,
            accept_retry_at: None,
            dirty: Vec::new(),
            doomed: Vec::new(),
            again: Vec::new(),
            now,
            store,
            auth,
            reads,
            done,
            threads,
            writer: Some(writer),
            storage_ok: true,
            users: HashMap::new(),
            user_by_name: HashMap::new(),
            pending_names: HashSet::new(),
            tokens: HashMap::new(),
            rooms: HashMap::new(),
            room_by_name: HashMap::new(),
            next_room_id: 1,
            user_buckets: HashMap::new(),
            ip_buckets: HashMap::new(),
            metrics: Metrics::new(),
            config,
        };
        server.install(snap);
        log::info!(
            "loaded {} users, {} rooms; at most {} connections",
            server.users.len(),
            server.rooms.len(),
            server.max_conns
        );
        Ok(server)
    }

    fn install(&mut self, snap: load::Snapshot) {
        for u in snap.users {
            self.user_by_name
                .insert(u.username.to_ascii_lowercase(), u.id);
            self.users.insert(
                u.id,
                User {
                    id: u.id,
                    name: u.username,
                    pw_hash: u.pw_hash,
                    last_seen: u.last_seen,
                    conns: Vec::new(),
                    rooms: HashSet::new(),
                },
            );
        }
        for (hash, user_id, expires_at) in snap.tokens {
            self.tokens.insert(
                hash,
                TokenInfo {
                    user_id,
                    expires_at,
                },
            );
        }
        for r in snap.rooms {
            let mut room = Room::new(r.id, r.name.clone(), r.private, r.owner);
            let full = r.recent.len() < self.config.ring_size;
            for m in r.recent {
                room.push(m, self.config.ring_size);
            }
            if !full {
                // The ring was filled to the brim: older messages may exist.
                room.evicted_max = room.ring.front().map_or(0, |m| m.id - 1).max(1);
            }
            self.next_room_id = self.next_room_id.max(r.id + 1);
            self.room_by_name.insert(r.name, r.id);
            self.rooms.insert(r.id, room);
        }
        for (room_id, user_id, cursor) in snap.members {
            if let Some(room) = self.rooms.get_mut(&room_id) {
                room.members.insert(user_id, cursor);
            }
            if let Some(u) = self.users.get_mut(&user_id) {
                u.rooms.insert(room_id);
            }
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown {
            flag: Arc::clone(&self.shutdown),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Serves until shut down; then closes every WebSocket with 4002, lets the writer
    /// commit what is queued, and returns.
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        log::info!("listening on {}", self.local_addr);
        while !self.shutdown.load(Ordering::SeqCst) {
            let timeout = if self.again.is_empty() && !self.accept_pending {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll failed: {e}"));
            }
            self.now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(t) => {
                        let key = t - FIRST_CONN;
                        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                            self.flush_conn(key);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read_conn(key);
                        }
                    }
                }
            }
            self.finish_pass();
        }
        self.graceful_stop();
        Ok(())
    }

    /// Work common to the end of every pass.
    fn finish_pass(&mut self) {
        if std::mem::take(&mut self.accept_pending) {
            self.accept_all();
        }
        let again = std::mem::take(&mut self.again);
        for key in again {
            self.read_conn(key);
        }
        self.drain_completions();
        self.fire_timers();
        self.flush_dirty();
        self.reap();
    }

    fn drain_completions(&mut self) {
        while let Ok(c) = self.done.try_recv() {
            self.complete(c);
        }
    }

    // ---- connections -------------------------------------------------------------

    fn accept_all(&mut self) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => self.admit(stream, addr),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fd_exhaustion(&e) => {
                    // Readiness is edge-triggered: connections left in the backlog would
                    // never be seen again. Free the spare descriptor and use it to take
                    // each one off the queue and refuse it with a 503.
                    log::warn!("out of file descriptors; refusing queued connections");
                    self.refuse_backlog();
                    return;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
        // Budget spent: readiness is edge-triggered, so no new event will come for the
        // connections still queued; accept again at the end of the pass.
        self.accept_pending = true;
    }

    fn refuse_backlog(&mut self) {
        self.spare_fd = None;
        let mut drained = false;
        if let Some(l) = self.listener.as_ref() {
            for _ in 0..ACCEPT_BUDGET {
                match l.accept() {
                    Ok((mut s, _)) => {
                        self.metrics.refused += 1;
                        refuse_overloaded(&mut s);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        self.spare_fd = std::fs::File::open("/dev/null").ok();
        if !drained {
            // Still out of descriptors: try again shortly rather than spin.
            self.accept_retry_at = Some(self.now + ACCEPT_RETRY);
        }
    }

    fn admit(&mut self, mut stream: TcpStream, addr: SocketAddr) {
        if self.conns.len() >= self.max_conns {
            self.metrics.refused += 1;
            refuse_overloaded(&mut stream);
            return;
        }
        let _ = stream.set_nodelay(true);
        let serial = self.next_serial;
        self.next_serial += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, Token(key + FIRST_CONN), Interest::READABLE)
        {
            log::warn!("register failed: {e}");
            return;
        }
        entry.insert(Conn::new(stream, serial, addr.ip(), self.now));
        self.metrics.accepted += 1;
        log::trace!("conn {key}: accepted from {addr}");
        self.arm_timer(key);
    }

    /// Reads what the socket has and acts on it.
    fn read_conn(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.doomed {
            return;
        }
        match &mut conn.state {
            ConnState::Http(_) => {
                self.read_http(key);
                self.rearm(key);
            }
            ConnState::Ws(_) => self.read_ws(key),
            ConnState::Closing { .. } => {
                // Discard input so the peer's close reply does not turn into a reset.
                let mut scratch = [0u8; 4096];
                loop {
                    match conn.stream.read(&mut scratch) {
                        Ok(0) => {
                            self.doom(key);
                            return;
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(_) => {
                            self.doom(key);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn read_http(&mut self, key: usize) {
        let limit = self.config.max_header_bytes + self.config.max_body_bytes + 1;
        let conn = &mut self.conns[key];
        let ConnState::Http(http) = &mut conn.state else {
            return;
        };
        let mut eof = false;
        let mut chunk = [0u8; 8192];
        while http.buf.len() < limit {
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    if http.buf.is_empty() && http.idle {
                        http.idle = false;
                        http.phase_started = self.now;
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
        if http.buf.len() >= limit && !http.waiting {
            // Bytes may remain in the socket, and no new readiness edge will say so:
            // come back after these requests are answered.
            self.again.push(key);
        }
        self.process_http(key);
        if eof {
            let conn = &mut self.conns[key];
            let busy = matches!(&conn.state, ConnState::Http(h) if h.waiting);
            if !busy {
                self.close_after_flush(key);
            } else if let ConnState::Http(h) = &mut conn.state {
                h.keep_alive = false;
            }
        }
    }

    /// Parses and answers requests in the buffer, in order, one at a time.
    pub(crate) fn process_http(&mut self, key: usize) {
        let limits = crate::http::Limits {
            max_header_bytes: self.config.max_header_bytes,
            max_headers: self.config.max_headers,
            max_body_bytes: self.config.max_body_bytes,
        };
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
            if http.waiting || http.closing || http.buf.is_empty() {
                return;
            }
            match crate::http::parse(&http.buf, &limits) {
                Ok(None) => return,
                Ok(Some((n, req))) => {
                    http.buf.drain(..n);
                    http.keep_alive = req.keep_alive;
                    self.route(key, req);
                }
                Err(e) => {
                    http.buf.clear();
                    http.keep_alive = false;
                    let resp = crate::http::Response::error(e.status(), "bad_request", e.message());
                    self.respond(key, resp);
                    return;
                }
            }
        }
    }

    /// Queues an HTTP response on a connection waiting for one.
    pub(crate) fn respond(&mut self, key: usize, resp: crate::http::Response) {
        self.metrics.count_status(resp.status);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let ConnState::Http(http) = &mut conn.state else {
            return;
        };
        http.waiting = false;
        let keep_alive = http.keep_alive && !self.shutdown.load(Ordering::Relaxed);
        let bytes = resp.to_bytes(keep_alive);
        http.idle = true;
        http.phase_started = self.now;
        if !keep_alive {
            http.closing = true;
        }
        self.enqueue(key, Chunk::Owned(bytes));
        if !keep_alive {
            self.close_after_flush(key);
        } else if !self.conns[key].doomed {
            // A pipelined request may already be buffered.
            self.again.push(key);
        }
    }

    /// Answers a request whose result arrives later, for a connection that may be gone.
    pub(crate) fn respond_to(&mut self, conn: ConnRef, resp: crate::http::Response) {
        if self.is_live(conn) {
            self.respond(conn.0, resp);
        }
    }

    pub(crate) fn is_live(&self, (key, serial): ConnRef) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| c.serial == serial && !c.doomed)
    }

    pub(crate) fn conn_ref(&self, key: usize) -> ConnRef {
        (key, self.conns[key].serial)
    }

    /// Appends output and schedules a flush; a connection past its output bound is
    /// closed as a slow consumer.
    pub(crate) fn enqueue(&mut self, key: usize, chunk: Chunk) {
        let max = self.config.max_output_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        // Nothing may follow a close frame or a final response (a late completion for a
        // closing connection is dropped).
        if conn.doomed || matches!(conn.state, ConnState::Closing { .. }) {
            return;
        }
        conn.out.push(chunk);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
        if conn.out.len() > max && matches!(conn.state, ConnState::Ws(_)) {
            self.metrics.slow_consumers += 1;
            log::info!("conn {key}: slow consumer, closing");
            conn.out.truncate_to_front();
            self.close_ws(key, 1008, "slow consumer");
        }
    }

    /// Sends a close frame and stops reading messages from a WebSocket.
    pub(crate) fn close_ws(&mut self, key: usize, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !matches!(conn.state, ConnState::Ws(_)) {
            return;
        }
        let frame = Frame::close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        }));
        let mut bytes = Vec::with_capacity(frame.len());
        let _ = frame.format(&mut bytes);
        conn.out.push(Chunk::Owned(bytes));
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
        self.detach_ws(key);
        self.close_after_flush(key);
    }

    /// Switches a connection to Closing: it is removed once its output is flushed (or
    /// after `CLOSE_LINGER`).
    pub(crate) fn close_after_flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(conn.state, ConnState::Ws(_)) {
            self.detach_ws(key);
        }
        let conn = &mut self.conns[key];
        if !matches!(conn.state, ConnState::Closing { .. }) {
            conn.state = ConnState::Closing { since: self.now };
        }
        if conn.out.is_empty() {
            self.doom(key);
        } else if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
        self.rearm(key);
    }

    pub(crate) fn doom(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.doomed {
                conn.doomed = true;
                self.doomed.push(key);
            }
        }
    }

    fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for key in dirty {
                if let Some(c) = self.conns.get_mut(key) {
                    c.dirty = false;
                }
                self.flush_conn(key);
            }
        }
    }

    fn flush_conn(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.doomed {
            return;
        }
        match conn.out.write_to(&mut conn.stream) {
            Ok(true) => {
                if conn.want_write {
                    conn.want_write = false;
                    let _ = self.poll.registry().reregister(
                        &mut conn.stream,
                        Token(key + FIRST_CONN),
                        Interest::READABLE,
                    );
                }
                if matches!(conn.state, ConnState::Closing { .. }) {
                    self.doom(key);
                }
            }
            Ok(false) => {
                if !conn.want_write {
                    conn.want_write = true;
                    let _ = self.poll.registry().reregister(
                        &mut conn.stream,
                        Token(key + FIRST_CONN),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                }
            }
            Err(_) => self.doom(key),
        }
    }

    /// Removes doomed connections.
    fn reap(&mut self) {
        while let Some(key) = self.doomed.pop() {
            if !self.conns.contains(key) {
                continue;
            }
            if matches!(self.conns[key].state, ConnState::Ws(_)) {
                self.detach_ws(key);
            }
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            log::trace!("conn {key}: closed");
        }
    }

    // ---- timers ------------------------------------------------------------------

    fn arm_timer(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let at = conn.deadline(&self.config);
        conn.timer_at = at;
        self.timers.push(Reverse((at, key, conn.serial)));
    }

    /// Moves a connection's timer entry earlier when its deadline did (a state change);
    /// later deadlines need nothing, the entry is pushed back when it fires early.
    pub(crate) fn rearm(&mut self, key: usize) {
        if let Some(conn) = self.conns.get(key) {
            if !conn.doomed && conn.deadline(&self.config) < conn.timer_at {
                self.arm_timer(key);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let conn = self.timers.peek().map(|Reverse((at, _, _))| *at);
        match (conn, self.accept_retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Each connection has one live entry in the heap (the one at `timer_at`; older
    /// ones are skipped). Activity only moves the connection's own deadline, and a
    /// popped entry that is early is pushed back.
    fn fire_timers(&mut self) {
        let now = self.now;
        if self.accept_retry_at.is_some_and(|t| t <= now) {
            self.accept_retry_at = None;
            self.accept_all();
        }
        while let Some(Reverse((at, key, serial))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let live = self
                .conns
                .get(key)
                .is_some_and(|c| c.serial == serial && !c.doomed && c.timer_at == at);
            if !live {
                continue;
            }
            if self.conns[key].deadline(&self.config) <= now {
                self.on_timeout(key);
            }
            if self.conns.get(key).is_some_and(|c| !c.doomed) {
                self.arm_timer(key);
            }
        }
        self.prune_ip_buckets();
    }

    fn on_timeout(&mut self, key: usize) {
        enum Act {
            Close,
            RequestTimeout,
            Ws(u16, &'static str),
            Ping,
        }
        let now = self.now;
        let act = match &self.conns[key].state {
            ConnState::Http(http) if http.buf.is_empty() && http.idle => Act::Close,
            ConnState::Http(http) if http.waiting => return,
            ConnState::Http(_) => Act::RequestTimeout,
            ConnState::Ws(ws) => {
                let expired = self
                    .tokens
                    .get(&ws.token)
                    .is_none_or(|t| t.expires_at <= now_ms());
                if expired {
                    Act::Ws(4001, "token expired")
                } else if now.saturating_duration_since(ws.last_rx) >= self.config.ws_idle_timeout {
                    Act::Ws(1001, "idle timeout")
                } else {
                    Act::Ping
                }
            }
            ConnState::Closing { .. } => {
                self.doom(key);
                return;
            }
        };
        match act {
            Act::Close => self.close_after_flush(key),
            Act::RequestTimeout => {
                self.metrics.request_timeouts += 1;
                if let ConnState::Http(http) = &mut self.conns[key].state {
                    http.keep_alive = false;
                    http.buf.clear();
                }
                self.respond(
                    key,
                    crate::http::Response::error(408, "timeout", "request not completed in time"),
                );
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
                self.enqueue(key, Chunk::Owned(ping));
            }
        }
    }

    fn prune_ip_buckets(&mut self) {
        if self.ip_buckets.len() > 10_000 {
            let (rate, burst) = self.auth_rate();
            let now = self.now;
            self.ip_buckets.retain(|_, b| !b.is_full(rate, burst, now));
        }
    }

    pub(crate) fn auth_rate(&self) -> (f64, f64) {
        (
            self.config.auth_per_minute / 60.0,
            self.config.auth_per_minute,
        )
    }

    // ---- WebSocket ---------------------------------------------------------------

    fn read_ws(&mut self, key: usize) {
        let mut texts = Vec::new();
        let mut close: Option<(u16, &'static str)> = None;
        let mut gone = false;
        let mut more = false;
        {
            let conn = &mut self.conns[key];
            let ConnState::Ws(ws) = &mut conn.state else {
                return;
            };
            let mut io = conn::WsIo {
                stream: &mut conn.stream,
                out: &mut conn.out,
            };
            loop {
                if texts.len() >= READ_BUDGET {
                    more = true;
                    break;
                }
                match ws.ctx.read(&mut io) {
                    Ok(msg) => {
                        ws.last_rx = self.now;
                        match msg {
                            tungstenite::Message::Text(t) => texts.push(t),
                            tungstenite::Message::Binary(_) => {
                                // The protocol is JSON text; the contract names 1007 (invalid
                                // data) for binary frames.
                                close = Some((1007, "binary frames are not accepted"));
                                break;
                            }
                            tungstenite::Message::Close(_) => {
                                // tungstenite queued the close reply into our output.
                                gone = true;
                                break;
                            }
                            _ => {}
                        }
                    }
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break;
                    }
                    Err(e) => {
                        close = ws_error_close(&e);
                        if close.is_none() {
                            gone = true;
                        }
                        break;
                    }
                }
            }
            // Pongs and the reply to a close frame wait inside tungstenite until the next
            // read or flush; hand them to our output queue now.
            let _ = ws.ctx.flush(&mut io);
            if !conn.out.is_empty() && !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
        let n = texts.len();
        for text in texts {
            if !self.is_live(self.conn_ref(key))
                || !matches!(self.conns[key].state, ConnState::Ws(_))
            {
                break;
            }
            self.handle_ws_text(key, &text);
        }
        self.metrics.ws_received += n as u64;
        if let Some((code, reason)) = close {
            log::debug!("conn {key}: protocol violation, closing with {code}");
            self.close_ws(key, code, reason);
        } else if gone {
            self.close_after_flush(key);
        } else if more {
            self.again.push(key);
        }
    }

    /// Turns an upgraded HTTP connection into a WebSocket of `user_id`.
    pub(crate) fn open_ws(&mut self, key: usize, user_id: i64, token: TokenHash, accept: String) {
        let conn = &mut self.conns[key];
        let ConnState::Http(http) = &mut conn.state else {
            return;
        };
        let leftover = std::mem::take(&mut http.buf);
        conn.out
            .push(Chunk::Owned(crate::ws::upgrade_response(&accept)));
        conn.state = ConnState::Ws(Box::new(conn::WsConn::new(
            leftover,
            user_id,
            token,
            self.now,
            self.config.max_frame_bytes,
        )));
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
        self.metrics.count_status(101);
        self.metrics.ws_opened += 1;
        self.on_ws_open(key, user_id);
        self.rearm(key);
        // Frames may have arrived with the upgrade request.
        self.again.push(key);
    }

    /// Sends one JSON value to one connection.
    pub(crate) fn send_json(&mut self, key: usize, value: &serde_json::Value) {
        let frame = crate::ws::text_frame(value.to_string());
        self.metrics.frames_delivered += 1;
        self.enqueue(key, Chunk::Owned(frame));
    }

    /// Encodes once and queues the same bytes on every listed connection.
    pub(crate) fn broadcast(&mut self, keys: &[usize], value: &serde_json::Value) {
        if keys.is_empty() {
            return;
        }
        let frame: Rc<[u8]> = Rc::from(crate::ws::text_frame(value.to_string()));
        for &key in keys {
            self.metrics.frames_delivered += 1;
            self.enqueue(key, Chunk::Shared(Rc::clone(&frame)));
        }
    }

    /// Broadcasts to every connection in a room, optionally skipping one user's.
    pub(crate) fn broadcast_room(
        &mut self,
        room_id: i64,
        value: &serde_json::Value,
        skip_user: Option<i64>,
    ) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let keys: Vec<usize> = match skip_user {
            None => room.conns.iter().copied().collect(),
            Some(u) => {
                let skip = self
                    .users
                    .get(&u)
                    .map(|u| u.conns.as_slice())
                    .unwrap_or(&[]);
                room.conns
                    .iter()
                    .copied()
                    .filter(|k| !skip.contains(k))
                    .collect()
            }
        };
        self.broadcast(&keys, value);
    }

    // ---- completions -------------------------------------------------------------

    fn complete(&mut self, c: Completion) {
        match c {
            Completion::Auth(done) => self.auth_done(done),
            Completion::UserCreated {
                conn,
                username,
                phc,
                result,
            } => self.user_created(conn, username, phc, result),
            Completion::TokenCreated {
                conn,
                token,
                user_id,
                expires_at,
                result,
            } => self.token_created(conn, token, user_id, expires_at, result),
            Completion::TokenRevoked { conn, result } => {
                let resp = match result {
                    Ok(()) => crate::http::Response::no_content(),
                    Err(_) => storage_unavailable(),
                };
                self.respond_to(conn, resp);
            }
            Completion::Inserted { conn, req, result } => self.inserted(conn, req, result),
            Completion::Changed { conn, req, result } => self.changed(conn, req, result),
            Completion::Read(done) => self.read_done(done),
            Completion::Health(ok) => self.storage_ok = ok,
        }
    }

    /// Sends a write to the writer thread; false if the writer is gone.
    pub(crate) fn store_cmd(&mut self, cmd: StoreCmd) -> bool {
        if self.store.send(cmd).is_err() {
            self.storage_ok = false;
            return false;
        }
        true
    }

    // ---- shutdown ----------------------------------------------------------------

    fn graceful_stop(&mut self) {
        log::info!("shutting down");
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.conns[key].state {
                ConnState::Ws(_) => self.close_ws(key, 4002, "server shutting down"),
                ConnState::Http(ref h) if !h.waiting => self.close_after_flush(key),
                _ => {}
            }
        }
        // Let the writer commit everything queued, and answer what it can.
        let _ = self.store.send(StoreCmd::Shutdown);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.drain_completions();
        self.flush_dirty();
        self.reap();
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        let mut events = Events::with_capacity(256);
        while !self.conns.is_empty() && Instant::now() < deadline {
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(50)));
            self.now = Instant::now();
            for ev in events.iter() {
                let Token(t) = ev.token();
                if t >= FIRST_CONN {
                    self.flush_conn(t - FIRST_CONN);
                    self.read_conn(t - FIRST_CONN);
                }
            }
            self.flush_dirty();
            self.reap();
        }
        log::info!("stopped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let (tx, _) = std::sync::mpsc::channel();
        self.auth = tx;
        let (tx, _) = std::sync::mpsc::channel();
        self.reads = tx;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Maps a tungstenite read error to the close code to send (`None`: the peer is gone).
fn ws_error_close(e: &tungstenite::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::{CapacityError, Error};
    match e {
        Error::Capacity(CapacityError::MessageTooLong { .. }) => Some((1009, "message too big")),
        Error::Capacity(_) => Some((1009, "message too big")),
        Error::Utf8(_) => Some((1007, "invalid UTF-8")),
        Error::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

/// Best-effort 503 to a connection we will not serve.
fn refuse_overloaded(stream: &mut TcpStream) {
    use std::io::Write;
    let resp = crate::http::Response::error(503, "overloaded", "too many connections");
    let _ = stream.write(&resp.to_bytes(false));
}

pub(crate) fn storage_unavailable() -> crate::http::Response {
    crate::http::Response::error(503, "overloaded", "storage is unavailable; try again")
}

/// The open-file limit minus a margin for SQLite, workers and the spare descriptor.
fn default_max_connections() -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(3)
                        .and_then(|v| v.parse::<usize>().ok())
                })
        })
        .unwrap_or(1024);
    limit.saturating_sub(crate::config::FD_MARGIN).max(16)
}

impl Server {
    /// A message row rendered as the protocol's `message` object.
    pub(crate) fn message_value(&self, row: &MessageRow) -> serde_json::Value {
        let room = self.rooms.get(&row.room_id).map_or("", |r| r.name.as_str());
        let user = self.users.get(&row.user_id).map_or("", |u| u.name.as_str());
        crate::chat::protocol::message_json(row, room, user)
    }

    pub(crate) fn now_ms(&self) -> i64 {
        now_ms()
    }
}
