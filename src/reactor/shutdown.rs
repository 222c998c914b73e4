//! Stopping: a handle another thread uses to ask for it, and the graceful stop itself —
//! every WebSocket closed with 4002, the writer left to commit what is queued, the last
//! bytes flushed for a moment, then the worker threads joined.

use super::conn::{ConnState, Phase};
use super::{Server, FIRST_CONN};
use crate::store::{StoreCmd, StoreOp};
use mio::{Events, Token, Waker};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long shutdown waits for close frames to drain.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(1500);

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

/// Lets another thread (the signal thread on SIGHUP) swap the TLS settings: new
/// handshakes use them, open connections keep theirs.
#[derive(Clone)]
pub struct TlsReload {
    slot: Arc<std::sync::Mutex<Option<Arc<rustls::ServerConfig>>>>,
}

impl TlsReload {
    pub fn replace(&self, cfg: Arc<rustls::ServerConfig>) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(cfg);
    }
}

impl Server {
    /// Serves TLS on the listener from now on (before `run`), with the handshake
    /// workers.
    pub fn use_tls(&mut self, cfg: Arc<rustls::ServerConfig>) -> Result<(), String> {
        if self.handshakes.is_none() {
            let threads = crate::config::TLS_HANDSHAKE_THREADS;
            let h = super::handshake::start(threads, Arc::clone(&self.waker))
                .map_err(|e| format!("cannot start the TLS handshake threads: {e}"))?;
            self.handshakes = Some(h);
        }
        self.tls_reload().replace(cfg);
        Ok(())
    }

    pub fn tls_reload(&self) -> TlsReload {
        TlsReload {
            slot: Arc::clone(&self.tls),
        }
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown {
            flag: Arc::clone(&self.shutdown),
            waker: Arc::clone(&self.waker),
        }
    }

    pub(super) fn graceful_stop(&mut self) {
        log::info!("shutting down");
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        // Thousands of sockets closing at once must not tell each other who went
        // offline (quadratic, and nobody is left to care).
        self.hub.begin_shutdown();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            match &self.conns[key].state {
                ConnState::Ws(_) => self.close_ws(key, 4002, "server shutting down"),
                ConnState::Http(h) if h.phase != Phase::Waiting => self.close_after_flush(key),
                _ => {}
            }
        }
        // Let the writer commit everything queued, and answer what it can.
        let _ = self.store.send(StoreCmd {
            reply: None,
            op: StoreOp::Shutdown,
        });
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.drain_completions();
        self.flush_dirty();
        self.reap();
        // What the last commits published reaches the other nodes.
        if let Some(bus) = self.bus.take() {
            bus.stop();
        }
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        let mut events = Events::with_capacity(256);
        while !self.conns.is_empty() && Instant::now() < deadline {
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(50)));
            self.now = crate::time::Now::read();
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
        // Dropping the job senders ends the pools once their queues are empty.
        let (tx, _) = std::sync::mpsc::channel();
        self.auth = tx;
        let (tx, _) = std::sync::mpsc::channel();
        self.reads = tx;
        let (tx, _) = std::sync::mpsc::channel();
        self.files = tx;
        if let Some(h) = self.handshakes.take() {
            self.threads.extend(h.threads);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
