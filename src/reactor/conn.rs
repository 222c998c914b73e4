//! One connection: its socket, its output queue, and its state (HTTP, WebSocket or
//! closing), each state changed as a whole rather than through flags.

use super::outq::{Chunk, OutQueue};
use super::stream::Stream;
use crate::config::Config;
use crate::id::ConnId;
use crate::ratelimit::Bucket;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

/// Bytes tungstenite reads per call, and the buffer every WebSocket holds while idle.
/// Small, because almost every socket is idle almost always (19,000 × 2 KiB was most of
/// the server's memory): a chat message of a few hundred bytes takes one or two reads,
/// and a rare 64 KiB frame just takes more.
pub const WS_READ_BUFFER: usize = 256;
/// "Never", for a state with no clock of its own (an `Instant` cannot be infinite).
const NO_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a closing connection may take to flush its last bytes.
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);

pub struct Conn {
    pub stream: Stream,
    pub id: ConnId,
    pub ip: IpAddr,
    pub state: ConnState,
    pub out: OutQueue,
    /// WRITABLE interest is registered (only while output is stuck).
    pub want_write: bool,
    /// Listed in the reactor's dirty list for this pass.
    pub dirty: bool,
    /// Listed for removal at the end of this pass.
    pub doomed: bool,
    /// Reading stopped because output is backed up; resumed when it drains.
    pub paused: bool,
    /// Counted against its address's cap of unauthenticated connections.
    pub unauthenticated: bool,
    /// The deadline of this connection's live entry in the reactor's timer heap.
    pub timer_at: Instant,
    /// When the socket last took bytes, or output started queueing on an empty queue.
    pub last_progress: Instant,
    /// The peer may still be sending a request body we refused: once the response is
    /// out, shut down writing and read (dropping) until it closes or `CLOSE_LINGER`, so
    /// that its unread bytes do not make the kernel reset the connection and lose the
    /// response.
    pub linger: bool,
}

pub enum ConnState {
    Http(HttpConn),
    Ws(Box<WsConn>),
    Closing { since: Instant },
}

/// Where an HTTP connection is in its request/response cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Between requests: the keep-alive timeout applies.
    Idle,
    /// Bytes of a request have arrived: the request timeout applies.
    Reading,
    /// A worker has the request; nothing more is parsed until it is answered.
    Waiting,
    /// The last response is queued; the connection closes once it is sent.
    Done,
}

pub struct HttpConn {
    pub buf: Vec<u8>,
    pub phase: Phase,
    /// When the current phase started.
    pub since: Instant,
    /// The request being answered allows another after it.
    pub keep_alive: bool,
    /// A chunked response (an export) is being written.
    pub chunked: bool,
    /// ...and the Hub has more for it once the output drains.
    pub wants_more: bool,
    /// An upload's body is being streamed to the file worker.
    pub upload: Option<super::files::UploadState>,
    /// A file is being sent from disk.
    pub download: Option<super::files::DownloadState>,
    /// A WebSocket upgrade waiting for its token to be looked up (cluster mode):
    /// (`Sec-WebSocket-Accept`, token).
    pub upgrade: Option<(String, String)>,
    /// A request waiting for its bearer token to be looked up (cluster mode: a token
    /// issued on another node an instant ago); answered when the look-up comes back.
    pub looking_up: Option<Box<crate::http::Request>>,
    /// The request being handled had its token looked up already: no second look-up.
    pub looked_up: bool,
}

pub struct WsConn {
    pub ctx: WebSocketContext,
    pub last_rx: Instant,
    pub last_ping: Instant,
    /// Frames this connection may still send now (`Config::ws_frame_rate`).
    pub frames: Bucket,
    /// Out of frame budget: not read again before this.
    pub resume_at: Option<Instant>,
}

impl WsConn {
    pub fn new(leftover: Vec<u8>, now: Instant, max_frame: usize, frame_burst: f64) -> WsConn {
        let mut cfg = WebSocketConfig::default();
        cfg.read_buffer_size = WS_READ_BUFFER;
        cfg.write_buffer_size = 0;
        cfg.max_frame_size = Some(max_frame);
        cfg.max_message_size = Some(max_frame);
        WsConn {
            ctx: WebSocketContext::from_partially_read(leftover, Role::Server, Some(cfg)),
            last_rx: now,
            last_ping: now,
            frames: Bucket::new(frame_burst, now),
            resume_at: None,
        }
    }
}

impl Conn {
    pub fn new(stream: Stream, id: ConnId, ip: IpAddr, now: Instant) -> Conn {
        Conn {
            stream,
            id,
            ip,
            state: ConnState::Http(HttpConn {
                buf: Vec::new(),
                phase: Phase::Reading,
                since: now,
                keep_alive: true,
                chunked: false,
                wants_more: false,
                upload: None,
                download: None,
                upgrade: None,
                looking_up: None,
                looked_up: false,
            }),
            out: OutQueue::default(),
            want_write: false,
            dirty: false,
            doomed: false,
            last_progress: now,
            paused: false,
            unauthenticated: true,
            timer_at: now,
            linger: false,
        }
    }

    /// When this connection next needs the timer's attention.
    pub fn deadline(&self, cfg: &Config) -> Instant {
        let own = self.state_deadline(cfg);
        if self.out.is_empty() {
            own
        } else {
            own.min(self.last_progress + cfg.stall_timeout)
        }
    }

    /// Whether queued output has not moved for the stall timeout.
    pub fn stalled(&self, now: Instant, cfg: &Config) -> bool {
        !self.out.is_empty() && now >= self.last_progress + cfg.stall_timeout
    }

    fn state_deadline(&self, cfg: &Config) -> Instant {
        match &self.state {
            ConnState::Http(h) => match h.phase {
                Phase::Idle => h.since + cfg.keepalive_timeout,
                Phase::Reading => {
                    let t = h.since + cfg.request_timeout;
                    h.upload.as_ref().map_or(t, |u| t.min(u.deadline))
                }
                // With the Hub or a worker, or sending its response (a download can take
                // long): no clock of its own; output that stops moving is the stall
                // timeout's (`deadline`).
                Phase::Waiting | Phase::Done => h.since + NO_DEADLINE,
            },
            ConnState::Ws(ws) => {
                let own = (ws.last_rx + cfg.ws_idle_timeout).min(ws.last_ping + cfg.ping_interval);
                ws.resume_at.map_or(own, |r| own.min(r))
            }
            ConnState::Closing { since } => *since + CLOSE_LINGER,
        }
    }

    /// Whether this connection's input must wait for its own output (replies, pongs) to
    /// drain. Broadcast frames do not count: a busy room must not silence its readers.
    pub fn backed_up(&self) -> bool {
        self.out.unshared() > crate::config::OUTPUT_PAUSE_BYTES
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.state, ConnState::Ws(_))
    }
}

/// What tungstenite reads from and writes to: the socket for input, the connection's
/// output queue for output. Writes never block, so tungstenite always hands over whole
/// frames (pongs, close replies) and they interleave cleanly with broadcast frames.
pub struct WsIo<'a> {
    pub stream: &'a mut Stream,
    pub out: &'a mut OutQueue,
}

impl Read for WsIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for WsIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.push(Chunk::owned(buf.to_vec()));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
