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

/// A listener several processes may bind at once (`SO_REUSEPORT`): in cluster mode the
/// nodes on one machine share the port and the kernel spreads new connections over them.
pub fn bind_shared(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: a fresh descriptor, owned by the listener built from it below (or closed).
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is ours; from here on dropping the listener closes it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: an int option on our socket.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid address of `len` bytes for this family.
    if unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listening on our bound socket.
    if unsafe { libc::listen(fd, LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
