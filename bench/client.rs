//! A fleet of WebSocket clients on one mio poll: non-blocking connects (optionally from a
//! chosen source address), the upgrade, masked client frames out, server frames in.

use crate::tls::Conn;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `message` event's text, as received by connection `conn` at `at`.
pub struct Event<'a> {
    pub conn: usize,
    pub text: &'a str,
    pub at: Instant,
}

enum State {
    Handshake,
    /// Upgraded; `hello` tells whether the greeting arrived.
    Open {
        hello: bool,
    },
    Closed,
}

struct Client {
    stream: Conn,
    state: State,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    writable: bool,
    /// When the TCP connect was started (for the time to `hello`).
    dialed: Instant,
}

pub struct Fleet {
    poll: Poll,
    events: Events,
    conns: Vec<Client>,
    /// Where socket i connects: `servers[i % len]` (cluster nodes; one for one server).
    servers: Vec<SocketAddr>,
    source: Option<IpAddr>,
    /// TLS settings when the server speaks TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `error` replies and failed connections.
    pub errors: u64,
    /// Upgraded sockets that the server closed (or that broke) while we still held them:
    /// a server that sheds slow readers shows up here.
    pub disconnected: u64,
    /// Microseconds from dial to `hello`, one entry per greeted socket.
    pub hello_us: Vec<u32>,
    /// Sockets closed or refused since the caller last took this list (`storm` redials them).
    pub closed: Vec<usize>,
    /// Sockets greeted since the caller last took this list.
    pub greeted: Vec<usize>,
    /// Read buffer shared by every socket (allocated and zeroed once).
    scratch: Vec<u8>,
}

impl Fleet {
    pub fn new(
        server: SocketAddr,
        source: Option<IpAddr>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Fleet, String> {
        Ok(Fleet {
            poll: Poll::new().map_err(|e| e.to_string())?,
            events: Events::with_capacity(4096),
            conns: Vec::new(),
            servers: vec![server],
            source,
            tls,
            errors: 0,
            disconnected: 0,
            hello_us: Vec::new(),
            closed: Vec::new(),
            greeted: Vec::new(),
            scratch: vec![0; 65536],
        })
    }

    /// Spreads the sockets over several servers (cluster nodes), round robin.
    pub fn spread_over(&mut self, servers: &[SocketAddr]) {
        if !servers.is_empty() {
            self.servers = servers.to_vec();
        }
    }

    fn dial(&self, server: SocketAddr) -> std::io::Result<TcpStream> {
        let Some(IpAddr::V4(src)) = self.source else {
            return TcpStream::connect(server);
        };
        let SocketAddr::V4(dst) = server else {
            return TcpStream::connect(server);
        };
        // SAFETY: plain socket calls on a descriptor we own; it is handed to TcpStream.
        unsafe {
            let fd = libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let sa = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(ip.octets()),
                },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // Pick the port at connect time, per destination: a port bound with port 0
            // is otherwise held against every destination, and the TIME_WAIT sockets of an
            // earlier run on this address would leave too few for the next one.
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let local = sa(src, 0);
            if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                return Err(e);
            }
            let remote = sa(*dst.ip(), dst.port());
            if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINPROGRESS) {
                    libc::close(fd);
                    return Err(e);
                }
            }
            Ok(TcpStream::from_std(std::net::TcpStream::from_raw_fd(fd)))
        }
    }

    /// Opens `n` more sockets at `rate` per second, spreading `tokens`; returns how many
    /// got their `hello` before `timeout`.
    pub fn open_paced(
        &mut self,
        n: usize,
        rate: f64,
        tokens: &[String],
        timeout: Duration,
    ) -> Result<usize, String> {
        let first = self.conns.len();
        let start = Instant::now();
        let step = Duration::from_secs_f64(1.0 / rate.max(1.0));
        let mut next = start;
        let mut made = 0;
        while made < n {
            let now = Instant::now();
            while made < n && next <= now {
                let i = self.conns.len();
                let server = self.servers[i % self.servers.len()];
                let client = self.start(i, server, &tokens[i % tokens.len()])?;
                self.conns.push(client);
                made += 1;
                next += step;
            }
            self.poll_once(Duration::from_millis(1), |_| {});
        }
        let deadline = start + timeout;
        loop {
            let ready = self.conns[first..]
                .iter()
                .filter(|c| matches!(c.state, State::Open { hello: true }))
                .count();
            if ready == n || Instant::now() >= deadline {
                return Ok(ready);
            }
            self.poll_once(Duration::from_millis(10), |_| {});
        }
    }

    /// Dials `server` for socket slot `i` and queues its upgrade request.
    fn start(&mut self, i: usize, server: SocketAddr, token: &str) -> Result<Client, String> {
        let mut stream = self.dial(server).map_err(|e| format!("connect: {e}"))?;
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| e.to_string())?;
        let tls = match &self.tls {
            Some(cfg) => Some(chatterbox::tls::client_connection(
                cfg,
                &server.ip().to_string(),
            )?),
            None => None,
        };
        let req = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        Ok(Client {
            stream: Conn::new(stream, tls),
            state: State::Handshake,
            rbuf: Vec::new(),
            wbuf: req.into_bytes(),
            writable: false,
            dialed: Instant::now(),
        })
    }

    /// Replaces socket `i` (closed) by a new one to `server`. A dial that fails at once
    /// (no free port, refused before the handshake) counts as closed again.
    pub fn redial(&mut self, i: usize, server: SocketAddr, token: &str) {
        let _ = self
            .poll
            .registry()
            .deregister(&mut self.conns[i].stream.tcp);
        match self.start(i, server, token) {
            Ok(c) => self.conns[i] = c,
            Err(_) => {
                self.errors += 1;
                self.closed.push(i);
            }
        }
    }

    /// Whether socket `i` is open and greeted.
    pub fn is_greeted(&self, i: usize) -> bool {
        matches!(self.conns[i].state, State::Open { hello: true })
    }

    /// Queues a text frame on connection `i`.
    pub fn send_text(&mut self, i: usize, text: &str) {
        let c = &mut self.conns[i];
        encode_masked(0x81, text.as_bytes(), &mut c.wbuf);
        flush(c);
    }

    /// Sends a close frame on every socket and drops them all.
    pub fn close_all(&mut self) {
        for c in &mut self.conns {
            if matches!(c.state, State::Open { .. }) {
                encode_masked(0x88, &1000u16.to_be_bytes(), &mut c.wbuf);
                flush(c);
            }
        }
        self.conns.clear();
    }

    pub fn run_for(&mut self, d: Duration, mut f: impl FnMut(Event)) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.poll_once(left.min(Duration::from_millis(50)), &mut f);
        }
    }

    /// One poll: reads everything ready and reports `message` texts.
    pub fn poll_once(&mut self, timeout: Duration, mut f: impl FnMut(Event)) {
        if self.poll.poll(&mut self.events, Some(timeout)).is_err() {
            return;
        }
        let at = Instant::now();
        for e in self.events.iter() {
            let (i, readable, writable) = (
                e.token().0,
                e.is_readable() || e.is_read_closed(),
                e.is_writable(),
            );
            let Some(c) = self.conns.get_mut(i) else {
                continue;
            };
            if writable {
                c.writable = true;
                flush(c);
            }
            if readable {
                let was_open = matches!(c.state, State::Open { .. });
                let chunk = &mut self.scratch[..];
                loop {
                    match c.stream.read(chunk) {
                        Ok(0) => {
                            c.state = State::Closed;
                            break;
                        }
                        Ok(k) => {
                            c.rbuf.extend_from_slice(&chunk[..k]);
                            // A short read emptied the socket; more data raises a new
                            // edge, so skip the read that would only say WouldBlock.
                            // (Not over TLS: a read returns one record at most.)
                            if k < chunk.len() && !c.stream.is_tls() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => {
                            c.state = State::Closed;
                            break;
                        }
                    }
                }
                let greeted = matches!(c.state, State::Open { hello: true });
                self.errors += process(i, c, at, &mut f);
                if matches!(c.state, State::Closed) {
                    if was_open {
                        self.disconnected += 1;
                    }
                    self.closed.push(i);
                    // Closed for good: no more events from this socket.
                    let _ = self.poll.registry().deregister(&mut c.stream.tcp);
                }
                if !greeted && matches!(c.state, State::Open { hello: true }) {
                    let us = at.duration_since(c.dialed).as_micros();
                    self.hello_us.push(us.min(u32::MAX as u128) as u32);
                    self.greeted.push(i);
                }
            }
        }
    }
}

fn flush(c: &mut Client) {
    let _ = c.stream.flush_tls();
    while !c.wbuf.is_empty() {
        match c.stream.write(&c.wbuf) {
            Ok(k) => {
                c.wbuf.drain(..k);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Handles buffered input; returns the number of errors seen.
fn process(i: usize, c: &mut Client, at: Instant, f: &mut impl FnMut(Event)) -> u64 {
    let mut errors = 0;
    if matches!(c.state, State::Handshake) {
        let Some(end) = c.rbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return 0;
        };
        if !c.rbuf.starts_with(b"HTTP/1.1 101") {
            c.state = State::Closed;
            return 1;
        }
        c.rbuf.drain(..end + 4);
        c.state = State::Open { hello: false };
    }
    let mut pos = 0;
    while let Some((op, payload, used)) = parse_frame(&c.rbuf[pos..]) {
        let (lo, hi) = (pos + payload.0, pos + payload.1);
        pos += used;
        match op {
            1 => {
                let text = std::str::from_utf8(&c.rbuf[lo..hi]).unwrap_or("");
                let kind = field(text, "\"type\":\"").unwrap_or("");
                if let State::Open { hello } = &mut c.state {
                    if !*hello {
                        *hello = kind == "hello";
                        continue;
                    }
                }
                if kind == "error" {
                    errors += 1;
                } else if kind == "message" {
                    if let Some(t) = field(text, "\"text\":\"") {
                        f(Event {
                            conn: i,
                            text: t,
                            at,
                        });
                    }
                }
            }
            9 => {
                let p = c.rbuf[lo..hi].to_vec();
                encode_masked(0x8a, &p, &mut c.wbuf);
            }
            8 => c.state = State::Closed,
            _ => {}
        }
    }
    c.rbuf.drain(..pos);
    if !c.wbuf.is_empty() {
        flush(c);
    }
    errors
}

/// The string after `key` up to the next quote (bench texts carry no escapes).
fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(key)? + key.len();
    let len = json[start..].find('"')?;
    Some(&json[start..start + len])
}

/// Parses one unmasked server frame: (opcode, payload range, bytes used).
fn parse_frame(b: &[u8]) -> Option<(u8, (usize, usize), usize)> {
    if b.len() < 2 {
        return None;
    }
    let op = b[0] & 0x0f;
    let (hlen, len) = match b[1] & 0x7f {
        126 => (4, u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize),
        127 => (
            10,
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    (b.len() >= hlen + len).then_some((op, (hlen, hlen + len), hlen + len))
}

/// Appends a masked client frame (the mask is fixed: the server only unmasks).
fn encode_masked(first: u8, payload: &[u8], out: &mut Vec<u8>) {
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    out.push(first);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        encode_masked(0x81, b"hello", &mut out);
        assert_eq!(out[1], 0x80 | 5);
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ out[2 + i % 4])
            .collect();
        assert_eq!(unmasked, b"hello");
        let server = [0x81, 3, b'a', b'b', b'c', 0x89];
        assert_eq!(parse_frame(&server), Some((1, (2, 5), 5)));
        assert_eq!(parse_frame(&server[5..]), None);
        assert_eq!(
            field(r#"{"text":"b 1 2 3","type":"message"}"#, "\"text\":\""),
            Some("b 1 2 3")
        );
    }
}
