//! One connection: its socket, its output queue, and its state (HTTP, WebSocket or
//! closing), changed as a whole rather than through flags.

use super::outq::{Chunk, OutQueue};
use crate::auth::TokenHash;
use crate::config::Config;
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::time::Instant;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

/// Bytes tungstenite reads per call; small because most connections are idle and each
/// holds this buffer (a 64 KiB frame just takes more reads).
pub const WS_READ_BUFFER: usize = 2048;

pub struct Conn {
    pub stream: TcpStream,
    pub serial: u64,
    pub ip: IpAddr,
    pub state: ConnState,
    pub out: OutQueue,
    /// WRITABLE interest is registered (only while output is stuck).
    pub want_write: bool,
    /// Listed in the reactor's dirty list for this pass.
    pub dirty: bool,
    /// Listed for removal at the end of this pass.
    pub doomed: bool,
    /// The deadline of this connection's live entry in the reactor's timer heap.
    pub timer_at: Instant,
}

pub enum ConnState {
    Http(HttpConn),
    Ws(Box<WsConn>),
    Closing { since: Instant },
}

pub struct HttpConn {
    pub buf: Vec<u8>,
    /// When the current request (or idle period) started.
    pub phase_started: Instant,
    /// Between requests: the keep-alive timeout applies, not the request timeout.
    pub idle: bool,
    /// A request is being served by another thread; parse nothing more until answered.
    pub waiting: bool,
    pub keep_alive: bool,
    /// The response being sent is the last one.
    pub closing: bool,
}

pub struct WsConn {
    pub ctx: WebSocketContext,
    pub user_id: i64,
    pub token: TokenHash,
    /// Rooms this connection is attached to.
    pub rooms: Vec<i64>,
    pub last_rx: Instant,
    pub last_ping: Instant,
    /// History reads sent to a reader thread and not yet answered.
    pub pending_reads: u8,
}

impl WsConn {
    pub fn new(
        leftover: Vec<u8>,
        user_id: i64,
        token: TokenHash,
        now: Instant,
        max_frame: usize,
    ) -> WsConn {
        let mut cfg = WebSocketConfig::default();
        cfg.read_buffer_size = WS_READ_BUFFER;
        cfg.write_buffer_size = 0;
        cfg.max_frame_size = Some(max_frame);
        cfg.max_message_size = Some(max_frame);
        WsConn {
            ctx: WebSocketContext::from_partially_read(leftover, Role::Server, Some(cfg)),
            user_id,
            token,
            rooms: Vec::new(),
            last_rx: now,
            last_ping: now,
            pending_reads: 0,
        }
    }
}

impl Conn {
    pub fn new(stream: TcpStream, serial: u64, ip: IpAddr, now: Instant) -> Conn {
        Conn {
            stream,
            serial,
            ip,
            state: ConnState::Http(HttpConn {
                buf: Vec::new(),
                phase_started: now,
                idle: false,
                waiting: false,
                keep_alive: true,
                closing: false,
            }),
            out: OutQueue::default(),
            want_write: false,
            dirty: false,
            doomed: false,
            timer_at: now,
        }
    }

    /// When this connection next needs the timer's attention.
    pub fn deadline(&self, cfg: &Config) -> Instant {
        match &self.state {
            ConnState::Http(h) if h.idle && h.buf.is_empty() => {
                h.phase_started + cfg.keepalive_timeout
            }
            ConnState::Http(h) => h.phase_started + cfg.request_timeout,
            ConnState::Ws(ws) => {
                (ws.last_rx + cfg.ws_idle_timeout).min(ws.last_ping + cfg.ping_interval)
            }
            ConnState::Closing { since } => *since + super::CLOSE_LINGER,
        }
    }
}

/// What tungstenite reads from and writes to: the socket for input, the connection's
/// output queue for output. Writes never block, so tungstenite always hands over whole
/// frames (pongs, close replies) and they interleave cleanly with broadcast frames.
pub struct WsIo<'a> {
    pub stream: &'a mut TcpStream,
    pub out: &'a mut OutQueue,
}

impl Read for WsIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for WsIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.push(Chunk::Owned(buf.to_vec()));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
