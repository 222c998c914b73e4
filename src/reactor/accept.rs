//! Accepting: drain the listener each pass (bounded), refuse past the connection limit
//! with a 503, and survive running out of file descriptors.

use super::conn::Conn;
use super::stream::Stream;
use super::{Server, FIRST_CONN};
use crate::id::ConnId;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// Accepts per pass, so a connection storm cannot starve established clients.
const ACCEPT_BUDGET: usize = 512;
/// Pause before accepting again after running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

impl Server {
    pub(super) fn accept_all(&mut self) {
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
            self.accept_retry_at = Some(self.now.mono + ACCEPT_RETRY);
        }
    }

    fn admit(&mut self, mut stream: TcpStream, addr: SocketAddr) {
        let tls = self.tls.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if tls.is_some() && (self.conns.len() >= self.max_conns || self.over_ip_cap(addr)) {
            // A plain 503 means nothing to a TLS client: just close.
            self.metrics.refused += 1;
            return;
        }
        if self.conns.len() >= self.max_conns {
            self.metrics.refused += 1;
            refuse_overloaded(&mut stream);
            return;
        }
        if self.over_ip_cap(addr) {
            // One address holding idle sockets must not deny everyone else.
            self.metrics.refused += 1;
            refuse_overloaded(&mut stream);
            return;
        }
        *self.pending_by_ip.entry(addr.ip()).or_insert(0) += 1;
        let _ = stream.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let token = Token(key + FIRST_CONN);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            log::warn!("register failed: {e}");
            self.release_pending(addr.ip());
            return;
        }
        let id = ConnId {
            key,
            serial: self.next_serial,
        };
        let stream = match tls.map(rustls::ServerConnection::new) {
            None => Stream::plain(stream),
            Some(Ok(t)) => Stream::tls(stream, t),
            Some(Err(e)) => {
                log::warn!("TLS session not created: {e}");
                let _ = self.poll.registry().deregister(&mut stream);
                self.release_pending(addr.ip());
                return;
            }
        };
        self.next_serial += 1;
        entry.insert(Conn::new(stream, id, addr.ip(), self.now.mono));
        self.metrics.accepted += 1;
        log::trace!("conn {key}: accepted from {addr}");
        self.arm_timer(key);
    }
}

impl Server {
    fn over_ip_cap(&self, addr: SocketAddr) -> bool {
        self.pending_by_ip.get(&addr.ip()).copied().unwrap_or(0) >= self.config.max_pending_per_ip
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Best-effort 503 to a connection we will not serve; it is never read again.
fn refuse_overloaded(stream: &mut TcpStream) {
    let resp = crate::http::Response::error(503, "overloaded", "too many connections");
    let _ = stream.write(&resp.to_bytes(false));
}

/// Connections the kernel may hold for us between passes. The standard library listens
/// with a backlog of 128: a burst of thousands of connects overflows it and the rest
/// wait for SYN retransmits (1 s, 3 s, …). The kernel caps this at net.core.somaxconn.
pub const LISTEN_BACKLOG: i32 = 8192;

/// Raises the listen backlog of a bound listener (listen(2) again only changes it).
pub(super) fn widen_backlog(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen on a descriptor this listener owns; it is already listening.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) };
    if rc != 0 {
        log::warn!(
            "cannot widen the listen backlog: {}",
            io::Error::last_os_error()
        );
    }
    let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(cap) = cap.filter(|c| *c < LISTEN_BACKLOG) {
        log::info!("listen backlog capped at {cap} by net.core.somaxconn");
    }
}

/// The open-file limit minus a margin for SQLite, workers and the spare descriptor.
pub(super) fn default_max_connections() -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    limit.saturating_sub(crate::config::FD_MARGIN).max(16)
}
