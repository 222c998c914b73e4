//! The event loop: one thread, one `mio::Poll`, owning every connection and the Hub.
//!
//! Each pass: poll (timeout = the next deadline), accept, read and parse, hand requests
//! to the Hub, take completions from the worker threads, fire timers, then flush every
//! connection that got output. Nothing here blocks: SQLite, argon2 and deep reads run on
//! other threads and answer through the completion channel, which wakes the poll. The
//! Hub decides; this module carries out its `Effect`s. Connections are never removed
//! mid-pass: they are doomed, and the end of the pass removes them.
//!
//! - `accept`: the listener, connection limits, running out of descriptors.
//! - `http_conn`: reading, parsing and answering HTTP requests; the upgrade.
//! - `ws_conn`: reading WebSocket frames; closing a WebSocket.
//! - `output`: the one place bytes leave: enqueue, flush, doom, reap.
//! - `timers`: deadlines, pings, timeouts.
//! - `shutdown`: the graceful stop.

mod accept;
pub mod conn;
mod files;
mod handshake;
mod http_conn;
mod output;
pub mod outq;
mod shutdown;
mod stream;
mod timers;
mod ws_conn;

use crate::auth::pool::AuthJob;
use crate::chat::{Effect, Except, Hub};
use crate::config::Config;
use crate::id::{ConnId, RoomId};
use crate::metrics::{Gauges, Metrics};
use crate::store::{load, reader, writer, Completion, Notifier, Outcome, ReadJob, StoreCmd};
use crate::time::Now;
use conn::Conn;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use outq::{Chunk, Counted};
use serde_json::Value;
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use accept::bind_shared;
pub use shutdown::Shutdown;

/// Slab keys are offset by this so the listener and waker tokens stay reserved.
const FIRST_CONN: usize = 2;
const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Reader threads for history pages and search.
const READER_THREADS: usize = 2;

pub struct Server {
    config: Config,
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
    conns: Slab<Conn>,
    next_serial: u64,
    max_conns: usize,
    /// Kept open so that on EMFILE one descriptor can be freed to accept and refuse.
    spare_fd: Option<std::fs::File>,
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    accept_pending: bool,
    accept_retry_at: Option<Instant>,
    dirty: Vec<usize>,
    doomed: Vec<usize>,
    again: Vec<usize>,
    /// WebSockets not read while all queued output is past its limit.
    held: Vec<usize>,
    now: Now,

    store: Sender<StoreCmd>,
    auth: Sender<AuthJob>,
    reads: Sender<ReadJob>,
    files: Sender<crate::files::FileJob>,
    done: Receiver<Completion>,
    threads: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    /// Cluster mode: the Redis bus to the other nodes.
    bus: Option<crate::bus::Bus>,
    storage_ok: bool,

    /// The TLS handshake workers, started with TLS (`use_tls`).
    handshakes: Option<handshake::Handshakes>,
    /// TLS settings for new connections (`None`: plain HTTP); replaced on reload.
    tls: Arc<std::sync::Mutex<Option<Arc<rustls::ServerConfig>>>>,
    /// Connections per address that are not WebSockets (yet): the per-IP cap.
    pending_by_ip: HashMap<IpAddr, usize>,
    hub: Hub,
    metrics: Metrics,
}

impl Server {
    /// Opens the database, loads the Hub, starts the worker threads and takes over
    /// `listener`. Nothing is served until `run`.
    pub fn new(config: Config, listener: std::net::TcpListener) -> Result<Server, String> {
        config.validate()?;
        let db = load::open_writer(&config.db, config.sync == crate::config::Sync::Full)?;
        // `--admin NAME` marks accounts that exist now; a name registered later is not
        // an admin (that would let anyone claim it).
        for name in &config.admins {
            match load::set_admin(db.db(), name, true) {
                Ok(true) => log::info!("admin rights granted to an existing account"),
                Ok(false) => log::warn!("--admin names no existing account; ignored"),
                Err(e) => return Err(format!("cannot grant admin rights: {e}")),
            }
        }
        let snap = load::snapshot(db.db(), config.ring_size).map_err(|e| e.to_string())?;
        let flags = snap
            .users
            .iter()
            .filter(|u| u.admin || u.suspended)
            .map(|u| (u.id, u.admin, u.suspended))
            .collect();

        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        accept::widen_backlog(&listener);
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
        let (reads, reader_threads) = reader::start(&config.db, READER_THREADS, notify.clone())?;
        let files_dir = config.files_dir();
        let (files, files_thread) = crate::files::start(files_dir, notify.clone())?;
        threads.push(files_thread);
        let bus = match &config.bus {
            Some(url) => Some(crate::bus::Bus::start(
                url,
                &config.cluster,
                config.node.clone(),
                notify.clone(),
            )?),
            None => None,
        };
        // Not joined at shutdown: it sleeps between looks and ends with the reactor.
        crate::store::watch::start(&config.db, flags, notify)?;
        threads.extend(reader_threads);

        let max_conns = config
            .max_connections
            .unwrap_or_else(accept::default_max_connections);
        let hub = Hub::from_snapshot(snap, config.clone());
        log::info!(
            "loaded {} users, {} rooms; at most {} connections",
            hub.user_count(),
            hub.room_count(),
            max_conns
        );
        Ok(Server {
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
            held: Vec::new(),
            now: Now::read(),
            store,
            auth,
            reads,
            files,
            done,
            threads,
            writer: Some(writer),
            bus,
            storage_ok: true,
            pending_by_ip: HashMap::new(),
            tls: Arc::default(),
            handshakes: None,
            hub,
            metrics: Metrics::new(),
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until shut down; then closes every WebSocket with 4002, lets the writer
    /// commit what is queued, and returns.
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        log::info!("listening on {}", self.local_addr);
        while !self.shutdown.load(Ordering::SeqCst) {
            let idle = self.again.is_empty() && self.dirty.is_empty() && !self.accept_pending;
            let timeout = if idle {
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
            self.now = Now::read();
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
            let took = self.now.mono.elapsed().as_micros();
            self.metrics.pass(took.min(u64::MAX as u128) as u64);
        }
        self.graceful_stop();
        Ok(())
    }

    /// Work common to the end of every pass.
    fn finish_pass(&mut self) {
        if std::mem::take(&mut self.accept_pending) {
            self.accept_all();
        }
        self.handshakes_done();
        let again = std::mem::take(&mut self.again);
        for key in again {
            self.read_conn(key);
        }
        self.drain_completions();
        if self.metrics.sample_due(self.now.mono) {
            self.metrics.absorb(self.hub.stats);
            let g = self.gauges();
            self.metrics.sample(self.now.mono, self.now.wall_ms, &g);
        }
        self.fire_timers();
        self.flush_dirty();
        self.reap();
    }

    /// Takes back the rustls states the handshake workers are done with: the answer
    /// goes out, and the connection reads again (what arrived meanwhile raised no new
    /// readiness). A failed handshake closes after its alert.
    fn handshakes_done(&mut self) {
        let Some(h) = &self.handshakes else {
            return;
        };
        let done: Vec<handshake::Done> = h.done.try_iter().collect();
        for d in done {
            let Some(key) = self.live(d.conn) else {
                continue;
            };
            self.conns[key].stream.restore(d.tls);
            match d.result {
                Ok(()) => self.again.push(key),
                Err(e) => {
                    log::debug!("TLS handshake failed: {e}");
                    self.close_after_flush(key);
                }
            }
            self.queued_directly_if_live(key);
        }
    }

    /// Sends a connection's handshake records to a worker, if it has some waiting.
    fn hand_off_handshake(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key).filter(|c| !c.doomed) else {
            return;
        };
        let Some(tls) = conn.stream.take_handshake() else {
            return;
        };
        let job = handshake::Job {
            conn: conn.id,
            tls,
            deadline: conn.deadline(&self.config),
        };
        let sent = self.handshakes.as_ref().map(|h| h.jobs.send(job));
        if !matches!(sent, Some(Ok(()))) {
            log::error!("the TLS handshake threads are gone");
            self.doom(key);
        }
    }

    fn drain_completions(&mut self) {
        while let Ok(c) = self.done.try_recv() {
            if let Outcome::Health(ok) = c.outcome {
                self.storage_ok = ok;
            }
            // The file worker's progress is the reactor's business alone.
            let Completion { reply, outcome } = c;
            let outcome = match (outcome, reply.as_ref().map(|r| r.conn)) {
                (Outcome::UploadAck(n), Some(conn)) => {
                    self.upload_acked(conn, n);
                    continue;
                }
                (Outcome::FileChunk(r), Some(conn)) => {
                    self.file_chunk(conn, r);
                    continue;
                }
                (o, _) => o,
            };
            let c = Completion { reply, outcome };
            let fx = self.hub.completed(c, self.now);
            self.apply(fx);
        }
    }

    /// Reads what the socket has and acts on it.
    fn read_conn(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.doomed {
            return;
        }
        if conn.backed_up() && !matches!(conn.state, conn::ConnState::Closing { .. }) {
            // Edge-triggered readiness will not repeat: flush_conn reads again once the
            // output drains.
            conn.paused = true;
            return;
        }
        if conn.is_ws() && output::overloaded() {
            // Everyone's queues are full: push back on senders rather than drop what
            // is committed or close readers; flush_dirty reads them again.
            if !conn.paused {
                conn.paused = true;
                self.metrics.senders_held += 1;
                self.held.push(key);
            }
            return;
        }
        match conn.state {
            conn::ConnState::Http(_) => self.read_http(key),
            conn::ConnState::Ws(_) => self.read_ws(key),
            conn::ConnState::Closing { .. } => self.drain_closing(key),
        }
        self.hand_off_handshake(key);
        // Reading TLS records can make records to send (alerts, key updates).
        self.queued_directly_if_live(key);
    }

    /// The live connection with this id, if it is still open.
    fn live(&self, id: ConnId) -> Option<usize> {
        self.conns
            .get(id.key)
            .is_some_and(|c| c.id == id && !c.doomed)
            .then_some(id.key)
    }

    // ---- carrying out the Hub's effects ------------------------------------------

    fn apply(&mut self, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::ChunkedStart { conn, resp } => {
                    if let Some(key) = self.live(conn) {
                        self.metrics.count_status(resp.status);
                        if let conn::ConnState::Http(h) = &mut self.conns[key].state {
                            h.chunked = true;
                            h.keep_alive = false;
                        }
                        self.enqueue(key, Chunk::owned(resp.chunked_head()));
                    }
                }
                Effect::Chunk { conn, bytes, last } => {
                    if let Some(key) = self.live(conn) {
                        self.chunk(key, &bytes, last);
                    }
                }
                Effect::ChunkedAbort { conn } => {
                    if let Some(key) = self.live(conn) {
                        if let conn::ConnState::Http(h) = &mut self.conns[key].state {
                            h.chunked = false;
                        }
                        self.doom(key);
                    }
                }
                Effect::Download {
                    conn,
                    resp,
                    download,
                } => {
                    if let Some(key) = self.live(conn) {
                        self.start_download(key, resp, download);
                    }
                }
                Effect::File(job) => {
                    let _ = self.files.send(job);
                }
                Effect::Resume { conn } => {
                    if let Some(key) = self.live(conn) {
                        self.again.push(key);
                    }
                }
                Effect::Send { conn, msg } => {
                    if let Some(key) = self.live(conn) {
                        self.metrics.frames_delivered += 1;
                        let frame = crate::ws::text_frame(msg.to_string());
                        self.enqueue(key, Chunk::owned(frame));
                    }
                }
                Effect::Broadcast {
                    room,
                    msg,
                    except,
                    ephemeral,
                } => self.broadcast(room, &msg, except, ephemeral),
                Effect::Respond { conn, resp } => {
                    if let Some(key) = self.live(conn) {
                        self.respond(key, resp);
                    }
                }
                Effect::Close { conn, code, reason } => {
                    if let Some(key) = self.live(conn) {
                        self.close_ws(key, code, reason);
                    }
                }
                Effect::Store(cmd) => self.store_cmd(cmd),
                Effect::Upgrade { conn, refusal } => {
                    if let Some(key) = self.live(conn) {
                        self.retry_upgrade(key, refusal);
                    }
                }
                Effect::Publish(env) => {
                    if let Some(bus) = &self.bus {
                        bus.publish(env);
                    }
                }
                Effect::Read(job) => {
                    if let Err(e) = self.reads.send(job) {
                        log::error!("the reader threads are gone");
                        self.fail_job(e.0.reply, e.0.op.failed());
                    }
                }
                Effect::Auth(job) => {
                    if let Err(e) = self.auth.send(job) {
                        log::error!("the password threads are gone");
                        self.fail_job(e.0.reply, e.0.op.failed());
                    }
                }
            }
        }
    }

    /// Sends a write to the writer thread; if it is gone, storage is down and the write
    /// is answered as failed.
    fn store_cmd(&mut self, cmd: StoreCmd) {
        if let Err(e) = self.store.send(cmd) {
            if self.storage_ok {
                log::error!("the storage writer is gone");
            }
            self.storage_ok = false;
            let cmd = e.0;
            if let Some(reply) = cmd.reply {
                self.fail_job(reply, cmd.op.failed());
            }
        }
    }

    /// Answers a job no worker could take as if it had failed there.
    fn fail_job(&mut self, reply: crate::store::ReplyTo, outcome: Outcome) {
        let c = Completion {
            reply: Some(reply),
            outcome,
        };
        let fx = self.hub.completed(c, self.now);
        self.apply(fx);
    }

    /// Encodes once and queues the same bytes on every socket of the room. Ephemeral
    /// news (typing, presence) skips sockets whose output is backed up: it is the first
    /// thing shed, and stale by the time they would read it.
    fn broadcast(&mut self, room: RoomId, msg: &Value, except: Except, ephemeral: bool) {
        let frame = Rc::new(Counted::new(crate::ws::text_frame(msg.to_string())));
        let max = self.config.max_output_bytes;
        let now = self.now.mono;
        let mut slow = Vec::new();
        for id in self.hub.audience(room, except) {
            let Some(conn) = self.conns.get_mut(id.key) else {
                continue;
            };
            if conn.id != id || conn.doomed {
                continue;
            }
            if ephemeral && conn.out.len() > crate::config::OUTPUT_PAUSE_BYTES {
                self.metrics.ephemeral_shed += 1;
                continue;
            }
            self.metrics.frames_delivered += 1;
            let chunk = Chunk::Shared(Rc::clone(&frame));
            if output::push(conn, chunk, &mut self.dirty, max, now) {
                slow.push(id.key);
            }
        }
        for key in slow {
            self.slow_consumer(key);
        }
    }

    /// One fewer unauthenticated connection from `ip` (it upgraded, or it is gone).
    fn release_pending(&mut self, ip: IpAddr) {
        if let Some(n) = self.pending_by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.pending_by_ip.remove(&ip);
            }
        }
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            connections: self.conns.len(),
            websockets: self.conns.iter().filter(|(_, c)| c.is_ws()).count(),
            users_online: self.hub.users_online(),
            rooms: self.hub.room_count(),
            storage_ok: self.storage_ok,
        }
    }
}
